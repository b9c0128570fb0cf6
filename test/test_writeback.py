"""-o writeback_cache: on the cached path the kernel keeps writes in its
page cache and writes them to the section later.  What a user relies on
still holds: every process reads what any wrote, at once; fsync and close
put the bytes in the section; sizes and times follow writes.  What the
daemon could not refuse in time is refused up front (with size=, the
mount; the grow seal).  With SECTIONFS_WRITEBACK=1 the rest of the suite
runs with the option on its cached-path mounts too (see util.py)."""

import errno
import os
import subprocess

import pytest

import util
from util import MiB, PAGE, RESIDENT, SEALS


@pytest.fixture
def wb(mount_factory):
    """A cached-path mount with the writeback cache."""
    return mount_factory('cached', options=['writeback_cache'])


def resident(path):
    return int(os.getxattr(path, RESIDENT))


def read_elsewhere(path, length, off=0):
    """The bytes another process reads at off."""
    code = ('import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); '
            'sys.stdout.buffer.write(os.pread(fd, %d, %d))' % (length, off))
    res = subprocess.run([util.PYTHON, '-I', '-c', code, path],
                         capture_output=True, timeout=util.PATIENCE)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_writes_are_read_at_once_by_every_process(wb):
    path = wb / 'a'
    data = util.pattern(0, 2 * MiB, seed=3)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        # Random-order page writes, then one large write, no fsync.
        order = list(range(0, MiB, PAGE))
        order = order[1::2] + order[::2]
        for off in order:
            assert os.pwrite(fd, data[off:off + PAGE], off) == PAGE
        assert os.pwrite(fd, data[MiB:], MiB) == MiB
        assert os.fstat(fd).st_size == 2 * MiB
        assert read_elsewhere(path, 2 * MiB) == data
        assert util.pread_all(fd, 2 * MiB, 0) == data
    finally:
        os.close(fd)
    assert util.read_file(path) == data


def test_fsync_and_close_put_the_bytes_in_the_section(wb):
    """resident counts the section's own pages: what fsync or close has
    written back, whatever the kernel still caches."""
    fd = os.open(wb / 's', os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, os.urandom(MiB))
        os.fsync(fd)
        assert resident(wb / 's') >= MiB
    finally:
        os.close(fd)
    fd = os.open(wb / 'c', os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, os.urandom(MiB))
    finally:
        os.close(fd)
    assert resident(wb / 'c') >= MiB


def test_views_and_writes_agree(wb):
    path = wb / 'v'
    util.write_file(path, bytes(4 * PAGE))
    with util.View(path, 'shared') as view:
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, util.pattern(PAGE, PAGE, 5), PAGE)
            assert view.verify(PAGE, PAGE, 5).startswith('ok')
            view.write(2 * PAGE, PAGE, 6)
            assert util.pread_all(fd, PAGE, 2 * PAGE) == \
                util.pattern(2 * PAGE, PAGE, 6)
        finally:
            os.close(fd)
    assert read_elsewhere(path, PAGE, 2 * PAGE) == \
        util.pattern(2 * PAGE, PAGE, 6)


def test_size_and_times_follow_writes(wb):
    path = wb / 't'
    util.write_file(path, b'x' * 100)
    before = os.stat(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b'y' * 50)
    finally:
        os.close(fd)
    after = os.stat(path)
    assert after.st_size == 150
    assert after.st_mtime_ns >= before.st_mtime_ns
    assert util.read_file(path) == b'x' * 100 + b'y' * 50
    os.truncate(path, 10)
    assert os.stat(path).st_size == 10
    assert read_elsewhere(path, 100) == b'x' * 10


def test_grow_seal_waits_for_writers_then_holds(wb):
    """The kernel would take a write past the end into its cache before
    sectionfs could refuse it, so a grow seal waits, as a write seal does,
    until the section is not open for writing; after it, the section's
    writes reach the store, which refuses those past the end."""
    path = wb / 'g'
    util.write_file(path, b'z' * PAGE)
    fd = os.open(path, os.O_RDWR)
    try:
        with pytest.raises(OSError) as exc:
            os.setxattr(path, SEALS, b'grow')
        assert exc.value.errno == errno.EBUSY
    finally:
        os.close(fd)
    os.setxattr(path, SEALS, b'grow')
    assert os.getxattr(path, SEALS) == b'grow'
    fd = os.open(path, os.O_RDWR)
    try:
        with pytest.raises(PermissionError):
            os.pwrite(fd, b'past', PAGE)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 2 * PAGE)
        # Across the end: what fits is written, as memfd does.
        assert os.pwrite(fd, b'x' * 20, PAGE - 10) == 10
        assert os.pwrite(fd, b'inside', 10) == 6
        assert os.fstat(fd).st_size == PAGE
    finally:
        os.close(fd)
    want = b'z' * 10 + b'inside' + b'z' * (PAGE - 26) + b'x' * 10
    assert read_elsewhere(path, 2 * PAGE) == want
    assert util.read_file(path) == want


def test_seek_data_counts_the_whole_file_as_data(wb):
    """The section may not hold the newest writes yet, so the kernel
    answers SEEK_DATA and SEEK_HOLE itself: all data up to the end."""
    fd = os.open(wb / 'h', os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.pwrite(fd, b'd' * PAGE, MiB)
        size = MiB + PAGE
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, PAGE, os.SEEK_HOLE) == size
        with pytest.raises(OSError) as exc:
            os.lseek(fd, size, os.SEEK_DATA)
        assert exc.value.errno == errno.ENXIO
        assert util.pread_all(fd, PAGE, MiB) == b'd' * PAGE
    finally:
        os.close(fd)


def test_no_file_backed_sections(wb, base_dir):
    """The kernel would append at a stale end of a backing file changed
    outside the mount, and write its old mtime back: such a mount makes
    no file-backed sections, and says so."""
    target = os.path.join(base_dir, 'target')
    util.write_file(target, b'kept')
    before = os.stat(target)
    with pytest.raises(OSError) as exc:
        os.symlink(target, wb / 'fb')
    assert exc.value.errno == errno.EOPNOTSUPP
    assert not os.path.lexists(wb / 'fb')
    assert util.read_file(target) == b'kept'
    assert os.stat(target).st_mtime_ns == before.st_mtime_ns
    util.write_file(wb / 'still', b'serving')
    assert util.read_file(wb / 'still') == b'serving'


@pytest.mark.root
def test_no_effect_with_passthrough(mount_factory):
    """passthrough=auto picks passthrough where it can, and the writeback
    cache has nothing to cache there: the daemon says so and mounts."""
    m = mount_factory(datapath=None, options=['passthrough=auto',
                                              'writeback_cache'])
    m.expect_stderr('writeback_cache has no effect')
    assert util.wait_for(lambda: 'writeback_cache has no effect' in m.stderr,
                         timeout=5), m.stderr
    util.write_file(m / 'p', b'data')
    assert util.read_file(m / 'p') == b'data'
