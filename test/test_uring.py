"""FUSE over io_uring: when requests take the rings, and that they still
arrive whole.  The rest of the suite runs over io_uring too when
SECTIONFS_IO_URING=on (see util.py); these tests set the fuse module's
enable_uring themselves, so they need it writable."""

import os

import pytest

import util
from util import MiB

pytestmark = [
    pytest.mark.skipif(util.uring_skip_reason() is not None,
                       reason=util.uring_skip_reason() or ''),
    pytest.mark.skipif(util.VALGRIND, reason='valgrind 3.19 hangs a daemon '
                       'serving io_uring (see util.IO_URING)'),
]


def names_and_data(mnt, count=100):
    """Name operations and a write and read of each section; returns the
    number of requests they made at the least."""
    for i in range(count):
        path = mnt / ('f%d' % i)
        data = util.pattern(0, 4096, seed=i)
        util.write_file(path, data)
        os.stat(path)
        assert util.read_file(path) == data
    assert len(os.listdir(mnt.path)) == count
    for i in range(count):
        os.unlink(mnt / ('f%d' % i))
    return 3 * count        # at least a create, a lookup and an unlink


@pytest.mark.root
def test_requests_come_over_the_rings(mount_factory, datapath):
    with util.enable_uring('Y'):
        mnt = mount_factory(datapath, options=['io_uring=on'])
    before = util.uring_completions(mnt.pid)
    assert before is not None, 'the daemon holds no io_uring'
    made = names_and_data(mnt)
    assert util.uring_completions(mnt.pid) - before >= made


@pytest.mark.root
@pytest.mark.file_backed
def test_payloads_of_every_size_cross_the_rings(mount_factory, datapath):
    """Writes and reads up to max_write (1 MiB) and past it, through the
    rings' payload buffers; a file-backed section on the cached path is
    read by the daemon at every read (direct_io), so its replies are
    spliced through the rings too."""
    with util.enable_uring('Y'):
        mnt = mount_factory(datapath, options=['io_uring=on'])
    backing = os.path.join(os.path.dirname(mnt.path), 'backing')
    data = util.pattern(0, 3 * MiB + 123, seed=7)
    for name, size in (('small', 1), ('page', 4096), ('one', MiB),
                       ('more', len(data))):
        util.write_file(mnt / name, data[:size])
        got = util.read_file(mnt / name)
        assert len(got) == size and got == data[:size], name
    util.write_file(backing, data)
    os.symlink(backing, mnt / 'fb')
    got = util.read_file(mnt / 'fb')
    assert len(got) == len(data) and got == data


@pytest.mark.root
def test_not_offered_means_dev_fuse(mount_factory):
    with util.enable_uring('N'):
        mnt = mount_factory('cached', options=['io_uring=auto'])
        refused = mount_factory('cached', options=['io_uring=on'],
                                wait=False)
        refused.expect_exit(1)
        refused.expect_stderr('io_uring=on, but the kernel does not offer it')
        assert refused.proc.wait(util.PATIENCE) == 1
    assert util.uring_completions(mnt.pid) is None
    names_and_data(mnt, count=10)


@pytest.mark.root
def test_off_and_single_threaded_keep_to_dev_fuse(mount_factory):
    with util.enable_uring('Y'):
        off = mount_factory('cached', options=['io_uring=off'])
        single = mount_factory('cached', options=['io_uring=auto'],
                               flags=['-s'])
        refused = mount_factory('cached', options=['io_uring=on'],
                                flags=['-s'], wait=False)
        refused.expect_exit(1)
        refused.expect_stderr('io_uring=on, but -s serves')
        assert refused.proc.wait(util.PATIENCE) == 1
    for mnt in (off, single):
        assert util.uring_completions(mnt.pid) is None
        names_and_data(mnt, count=10)
