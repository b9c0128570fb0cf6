"""The namespace's record: what a successor would adopt, on both data paths.

A build with --enable-test-hooks answers the root's attribute
user.sectionfs.test.record (for root) with "ok" when a namespace rebuilt
from the record inside the daemon is the live one (node ids, names and
their listing order, modes, owners, times, link and lookup counts,
lifetimes, seals, sections' descriptors and backing ids, file-backed
sections' paths and creators, open file and directory handles), or with
what differs; user.sectionfs.test.record_compact compacts the record
first and compares what the compacted record rebuilds;
user.sectionfs.test.record_adopt rebuilds a second namespace from the
record, as a successor would (its sections stand for the live ones), and
compares what it would record.  Each test runs a workload and asks all of
them.  Without the hooks the tests
are skipped.
"""

import errno
import os
import stat

import pytest

import util
from test_tmpfile import link_fd
from util import LIFETIME, SEALS, renameat2, RENAME_EXCHANGE, \
    RENAME_NOREPLACE

CHECK = util.XATTR_PREFIX + 'test.record'


def record_state(mnt, how=''):
    """The daemon's answer: how is '', '_compact' or '_adopt'."""
    try:
        return os.getxattr(mnt.path, CHECK + how).decode()
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.EOPNOTSUPP):
            pytest.skip('the daemon was built without --enable-test-hooks')
        raise


def settled(mnt, how=''):
    """The record's answer once the kernel's releases, sent after close(2)
    returns, have come in (a handle is taken from the table before its
    release is written to the record)."""
    util.wait_for(lambda: record_state(mnt, how) == 'ok')
    return record_state(mnt, how)


def assert_recorded(mnt):
    """The record rebuilds the live namespace: as it is, adopted by a
    second namespace, compacted, and adopted from the compacted record."""
    assert settled(mnt) == 'ok'
    assert settled(mnt, '_adopt') == 'ok'
    assert settled(mnt, '_compact') == 'ok'
    assert settled(mnt) == 'ok'
    assert settled(mnt, '_adopt') == 'ok'


@pytest.fixture
def backing(base_dir):
    path = os.path.join(base_dir, 'backing')
    with open(path, 'wb') as f:
        f.write(b'backing data\n')
    return path


def test_fresh_mount_is_recorded(mnt):
    assert_recorded(mnt)


def test_names(mnt):
    """create, mkdir, mknod, symlink (both kinds), link, unlink, rmdir."""
    os.mkdir(mnt / 'd', 0o750)
    os.mkdir(mnt / 'd/e')
    util.write_file(mnt / 'd/f', b'data')
    os.mknod(mnt / 'fifo', 0o600 | stat.S_IFIFO)
    os.symlink('relative/target', mnt / 'rel')
    os.link(mnt / 'd/f', mnt / 'hard')
    os.link(mnt / 'd/f', mnt / 'd/e/hard2')
    assert_recorded(mnt)
    os.unlink(mnt / 'hard')
    os.unlink(mnt / 'd/e/hard2')
    os.rmdir(mnt / 'd/e')
    os.unlink(mnt / 'fifo')
    os.unlink(mnt / 'rel')
    assert_recorded(mnt)


def test_file_backed(mnt, backing):
    os.symlink(backing, mnt / 'fb')
    assert util.read_file(mnt / 'fb') == b'backing data\n'
    assert_recorded(mnt)


def test_renames(mnt):
    """Plain, over a name, over a directory, NOREPLACE and EXCHANGE."""
    for name in ('a', 'b', 'c'):
        util.write_file(mnt / name, name.encode())
    os.mkdir(mnt / 'd1')
    os.mkdir(mnt / 'd2')
    os.rename(mnt / 'a', mnt / 'a2')
    os.rename(mnt / 'b', mnt / 'c')             # over a section
    os.rename(mnt / 'd1', mnt / 'd2')           # over an empty directory
    renameat2(mnt / 'a2', mnt / 'n', RENAME_NOREPLACE)
    renameat2(mnt / 'n', mnt / 'c', RENAME_EXCHANGE)
    os.rename(mnt / 'c', mnt / 'd2/c')
    assert_recorded(mnt)


def test_attributes(mnt):
    """chmod, chown, utimes, truncate on sections and directories."""
    util.write_file(mnt / 's', b'x' * 5000)
    os.mkdir(mnt / 'd')
    os.chmod(mnt / 's', 0o640)
    os.chown(mnt / 's', 1234, 5678)
    os.chmod(mnt / 'd', 0o1777)
    os.utime(mnt / 'd', ns=(1_000_000_123, 2_000_000_456))
    os.truncate(mnt / 's', 100)
    assert_recorded(mnt)


def test_orphans_and_handles(mnt):
    """Open files and directories, an orphan still open, lookups held."""
    util.write_file(mnt / 'o', b'orphan')
    os.mkdir(mnt / 'd')
    fd = os.open(mnt / 'o', os.O_RDWR)
    ro = os.open(mnt / 'o', os.O_RDONLY)
    dfd = os.open(mnt / 'd', os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.unlink(mnt / 'o')
        assert_recorded(mnt)
        assert os.pread(fd, 6, 0) == b'orphan'
    finally:
        os.close(fd)
        os.close(ro)
        os.close(dfd)
    assert_recorded(mnt)


def test_tmpfiles(mnt):
    """An O_TMPFILE section unnamed and still linkable, one made with
    O_EXCL, and one named since."""
    os.mkdir(mnt / 'd')
    loose = os.open(mnt / 'd', os.O_TMPFILE | os.O_RDWR, 0o600)
    fixed = os.open(mnt / 'd', os.O_TMPFILE | os.O_RDWR | os.O_EXCL, 0o600)
    named = os.open(mnt / 'd', os.O_TMPFILE | os.O_RDWR, 0o640)
    try:
        os.write(named, b'named later')
        link_fd(named, mnt / 'd/n', 'proc')
        assert_recorded(mnt)
    finally:
        for fd in (loose, fixed, named):
            os.close(fd)
    assert_recorded(mnt)


def test_lifetimes_and_seals(mnt):
    util.write_file(mnt / 'h', b'handle')
    util.write_file(mnt / 's', b'sealed')
    os.setxattr(mnt / 'h', LIFETIME, b'handle')
    fd = os.open(mnt / 'h', os.O_RDONLY)
    try:
        assert_recorded(mnt)
    finally:
        os.close(fd)
    # The last handle's release took its name.
    assert util.wait_for(lambda: not os.path.exists(mnt / 'h'))
    try:
        os.setxattr(mnt / 's', SEALS, b'grow,shrink')
    except OSError as e:
        if e.errno != errno.EOPNOTSUPP:     # a capped tmpfs store
            raise
    assert_recorded(mnt)


def test_many_changes_compact(mnt):
    """Enough changes for the record to compact itself on its way."""
    os.mkdir(mnt / 'many')
    for round_ in range(3):
        for i in range(400):
            util.write_file(mnt / ('many/f%d' % i), b'%d' % round_)
        for i in range(0, 400, 2):
            os.rename(mnt / ('many/f%d' % i), mnt / ('many/g%d' % i))
        for i in range(400):
            os.chmod(mnt / ('many/f%d' % i) if i % 2
                     else mnt / ('many/g%d' % i), 0o600)
        assert settled(mnt) == 'ok'
        for name in os.listdir(mnt / 'many'):
            os.unlink(mnt / ('many/' + name))
    assert_recorded(mnt)
