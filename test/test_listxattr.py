"""listxattr, on both data paths: a section lists exactly the
user.sectionfs.* attributes getxattr answers, for each kind of section,
for a directory and under size=.
"""

import os

import pytest

import util
from util import (BACKING, BACKING_NOW, KIND, LIFETIME, RESIDENT, SEALS,
                  XATTRS, make_section, outcome)



def ours(path):
    return {n for n in os.listxattr(path) if n.startswith(util.XATTR_PREFIX)}


def assert_list_matches_get(path):
    """Every name of ours is listed exactly when getxattr answers it."""
    listed = ours(path)
    for name in XATTRS:
        got = outcome(os.getxattr, path, name)
        if name in listed:
            assert got == 'ok', (name, got)
        else:
            assert got == 'ENODATA', (name, got)


@pytest.mark.file_backed
def test_listxattr_names(mnt, base_dir):
    make_section(mnt / 'page', b'page')
    assert ours(mnt / 'page') == {KIND, LIFETIME, SEALS, RESIDENT}
    assert_list_matches_get(mnt / 'page')
    assert os.getxattr(mnt / 'page', KIND) == b'pagefile'

    target = os.path.join(base_dir, 'target')
    util.write_file(target, b'file')
    os.symlink(target, mnt / 'file')
    assert ours(mnt / 'file') == {KIND, BACKING, BACKING_NOW, LIFETIME,
                                  RESIDENT}
    assert_list_matches_get(mnt / 'file')
    assert os.getxattr(mnt / 'file', KIND) == b'file'
    assert os.getxattr(mnt / 'file', BACKING) == target.encode()

    os.mkdir(mnt / 'dir')
    assert ours(mnt / 'dir') == set()


def test_listxattr_names_with_size_cap(mount_factory, datapath):
    """Under size= (a private tmpfs store on the passthrough path, counted
    memfds on the cached path) a page-file section lists what getxattr
    answers: seals reads '' on the tmpfs store, so it is listed."""
    mnt = mount_factory(datapath, options=['size=4m'])
    make_section(mnt / 'page', b'page')
    assert ours(mnt / 'page') == {KIND, LIFETIME, SEALS, RESIDENT}
    assert_list_matches_get(mnt / 'page')
