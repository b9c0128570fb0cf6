"""Data through ordinary calls: cp, shell redirection, Python, truncate,
fallocate, fsync, statfs, and the open patterns a user throws at a file.

Every test runs once per data path (the mnt fixture's "cached" and
"passthrough" parameters), and no open pattern may meet EIO.
"""

import errno
import mmap
import os
import subprocess
import time

import pytest

import util
from util import MiB, PAGE, RESIDENT, pattern, read_file, write_file


def test_cp_in_and_out(mnt, tmp_path):
    data = os.urandom(4 * MiB + 12345)
    src = tmp_path / 'src'
    write_file(src, data)
    subprocess.run(['cp', str(src), mnt / 'a'], check=True)
    assert os.stat(mnt / 'a').st_size == len(data)
    subprocess.run(['cp', mnt / 'a', str(tmp_path / 'back')], check=True)
    assert read_file(tmp_path / 'back') == data
    # Within the mount too (copy_file_range or read/write, cp decides).
    subprocess.run(['cp', mnt / 'a', mnt / 'b'], check=True)
    assert read_file(mnt / 'b') == data
    subprocess.run(['cmp', str(src), mnt / 'b'], check=True)


def test_shell_redirection(mnt, tmp_path):
    data = os.urandom(3 * MiB + 7)
    more = os.urandom(4096 + 3)
    write_file(tmp_path / 'src', data)
    write_file(tmp_path / 'more', more)
    sh = 'cat "$1" > "$3" && cat "$2" >> "$3" && cat "$3" > "$4"'
    subprocess.run(['sh', '-c', sh, 'sh', str(tmp_path / 'src'),
                    str(tmp_path / 'more'), mnt / 'r',
                    str(tmp_path / 'back')], check=True)
    assert read_file(mnt / 'r') == data + more
    assert read_file(tmp_path / 'back') == data + more
    # '>' on an existing file truncates it.
    subprocess.run(['sh', '-c', 'echo hello > "$1"', 'sh', mnt / 'r'],
                   check=True)
    assert read_file(mnt / 'r') == b'hello\n'


def test_python_writer(mnt):
    """Odd-sized writes at odd offsets, sequential and positioned."""
    expect = bytearray()
    with open(mnt / 'py', 'wb', buffering=0) as f:
        for i in range(1, 300):
            chunk = os.urandom(i * 37 % 9001 + 1)
            assert f.write(chunk) == len(chunk)
            expect += chunk
    fd = os.open(mnt / 'py', os.O_RDWR)
    try:
        for off in (0, 1, 4095, 4096, 12345, len(expect) - 3):
            chunk = os.urandom(5000)
            assert os.pwrite(fd, chunk, off) == len(chunk)
            end = off + len(chunk)
            if end > len(expect):
                expect.extend(b'\0' * (end - len(expect)))
            expect[off:end] = chunk
        # Read back in chunks that do not line up with the writes.
        got = bytearray()
        while True:
            chunk = os.pread(fd, 6151, len(got))
            if not chunk:
                break
            got += chunk
    finally:
        os.close(fd)
    assert len(got) == len(expect)
    assert got == expect
    assert read_file(mnt / 'py') == expect


def test_write_past_end_leaves_zero_hole(mnt):
    fd = os.open(mnt / 'hole', os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b'end', 3 * MiB)
        assert os.fstat(fd).st_size == 3 * MiB + 3
        assert util.pread_all(fd, 3 * MiB, 0) == bytes(3 * MiB)
        assert os.pread(fd, 10, 3 * MiB) == b'end'
    finally:
        os.close(fd)


def test_data_survives_page_cache_drop(mnt):
    """After fsync and dropping the file's page cache, reads still give
    what was written (the bytes reached the section, not just a cache)."""
    data = os.urandom(2 * MiB + 100)
    fd = os.open(mnt / 'd', os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert util.pread_all(fd, len(data) + 1, 0) == data
    finally:
        os.close(fd)
    # And a fresh open, after the last one was closed.
    assert read_file(mnt / 'd') == data


def resident_bytes(path):
    """Bytes of path in the page cache, as fincore(1) reports them."""
    out = subprocess.run(['fincore', '--bytes', '--noheadings',
                          '--output', 'RES', str(path)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_written_pages_stay_cached_after_stat(mount_factory):
    """On the cached path, what was written to a section stays in the
    kernel's page cache when its attributes are fetched again (a write
    drops them, so the next stat asks the daemon): reading it back costs
    no trip to the daemon.  With auto_inval_data the kernel would drop the
    pages there, seeing the section's mtime moved.  (Passthrough has no
    such cache: its views map the section's own pages.)"""
    mnt = mount_factory('cached')
    if util.cached_dio_skip_reason(mnt):
        pytest.skip(util.cached_dio_skip_reason(mnt))
    data = os.urandom(MiB)
    write_file(mnt / 'warm', data)
    os.stat(mnt / 'warm')
    assert resident_bytes(mnt / 'warm') == MiB
    assert read_file(mnt / 'warm') == data


def test_ftruncate_grow_and_shrink_zero_fill(mnt):
    data = pattern(0, 3 * PAGE + 100, 1)
    fd = os.open(mnt / 't', os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, 10000)
        assert os.fstat(fd).st_size == 10000
        assert os.stat(mnt / 't').st_size == 10000
        assert util.pread_all(fd, 20000, 0) == data[:10000]

        # Growing again must not resurrect the cut bytes.
        os.ftruncate(fd, 5 * PAGE)
        assert os.stat(mnt / 't').st_size == 5 * PAGE
        got = util.pread_all(fd, 5 * PAGE, 0)
        assert got[:10000] == data[:10000]
        assert got[10000:] == bytes(5 * PAGE - 10000)

        os.ftruncate(fd, 0)
        assert os.fstat(fd).st_size == 0
        assert os.pread(fd, 100, 0) == b''
        os.ftruncate(fd, 2 * MiB)
        assert util.pread_all(fd, 2 * MiB, 0) == bytes(2 * MiB)
    finally:
        os.close(fd)


def test_truncate_command(mnt):
    subprocess.run(['truncate', '-s', '1M', mnt / 'tc'], check=True)
    assert os.stat(mnt / 'tc').st_size == MiB
    assert read_file(mnt / 'tc') == bytes(MiB)
    write_file(mnt / 'tc', pattern(0, 50000, 2), 'r+b')
    subprocess.run(['truncate', '-s', '100', mnt / 'tc'], check=True)
    assert read_file(mnt / 'tc') == pattern(0, 100, 2)
    subprocess.run(['truncate', '-s', '+8K', mnt / 'tc'], check=True)
    assert read_file(mnt / 'tc') == pattern(0, 100, 2) + bytes(8192)


def test_open_trunc(mnt):
    write_file(mnt / 'ot', pattern(0, 70000, 3))
    fd = os.open(mnt / 'ot', os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.fstat(fd).st_size == 0
        os.write(fd, b'new')
    finally:
        os.close(fd)
    assert read_file(mnt / 'ot') == b'new'


def test_open_read_only_trunc(mnt):
    """O_RDONLY|O_TRUNC truncates, as on tmpfs (the kernel has checked
    that the caller may write): in the section itself, not only in the
    size the kernel caches."""
    write_file(mnt / 'ro', pattern(0, 70000, 3))
    fd = os.open(mnt / 'ro', os.O_RDONLY | os.O_TRUNC)
    try:
        assert os.fstat(fd).st_size == 0
        assert os.read(fd, 10) == b''
    finally:
        os.close(fd)
    assert os.getxattr(mnt / 'ro', RESIDENT) == b'0'
    assert read_file(mnt / 'ro') == b''


def test_fallocate(mnt):
    fd = os.open(mnt / 'fa', os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.fstat(fd).st_blocks == 0
        os.posix_fallocate(fd, 0, MiB)
        st = os.fstat(fd)
        assert st.st_size == MiB
        assert st.st_blocks * 512 >= MiB
        assert util.pread_all(fd, MiB, 0) == bytes(MiB)

        # KEEP_SIZE: space beyond the end, size unchanged.
        util.fallocate(fd, util.FALLOC_FL_KEEP_SIZE, MiB, 2 * MiB)
        st = os.fstat(fd)
        assert st.st_size == MiB
        assert st.st_blocks * 512 >= 3 * MiB
        assert os.stat(mnt / 'fa').st_size == MiB
    finally:
        os.close(fd)


def test_fallocate_punch_hole(mnt):
    reason = util.writeback_skip_reason(
        mnt, 'st_blocks is kept for the attribute timeout')
    if reason:
        pytest.skip(reason)
    data = pattern(0, 4 * PAGE, 4)
    fd = os.open(mnt / 'ph', os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
        blocks = os.fstat(fd).st_blocks
        util.fallocate(fd, util.FALLOC_FL_PUNCH_HOLE |
                       util.FALLOC_FL_KEEP_SIZE, PAGE, PAGE)
        st = os.fstat(fd)
        assert st.st_size == 4 * PAGE
        assert st.st_blocks < blocks
        got = util.pread_all(fd, 4 * PAGE, 0)
    finally:
        os.close(fd)
    assert got[:PAGE] == data[:PAGE]
    assert got[PAGE:2 * PAGE] == bytes(PAGE)
    assert got[2 * PAGE:] == data[2 * PAGE:]


def test_st_blocks_follow_writes(mnt):
    path = mnt / 'blk'
    write_file(path, b'')
    assert os.stat(path).st_blocks == 0
    write_file(path, os.urandom(MiB))
    assert os.stat(path).st_blocks * 512 >= MiB
    # A sparse grow allocates nothing, as on tmpfs.
    os.truncate(path, 8 * MiB)
    assert os.stat(path).st_blocks * 512 < 2 * MiB
    os.truncate(path, 0)
    assert os.stat(path).st_blocks == 0


def test_seek_data_and_hole(mnt):
    """A sparse section reports its data and holes, as on tmpfs."""
    reason = util.writeback_skip_reason(
        mnt, 'SEEK_DATA and SEEK_HOLE count the whole file as data '
        '(test_writeback.py)')
    if reason:
        pytest.skip(reason)
    fd = os.open(mnt / 'sparse', os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b'a' * PAGE, 0)
        os.pwrite(fd, b'b' * PAGE, MiB)
        os.ftruncate(fd, 2 * MiB)
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, 0, os.SEEK_HOLE) == PAGE
        assert os.lseek(fd, PAGE, os.SEEK_DATA) == MiB
        assert os.lseek(fd, MiB, os.SEEK_HOLE) == MiB + PAGE
        with pytest.raises(OSError) as exc:
            os.lseek(fd, MiB + PAGE, os.SEEK_DATA)
        assert exc.value.errno == errno.ENXIO
    finally:
        os.close(fd)


def test_fsync_and_fdatasync(mnt):
    fd = os.open(mnt / 'fs', os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b'x' * 10000)
        os.fsync(fd)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    dfd = os.open(mnt.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    assert read_file(mnt / 'fs') == b'x' * 10000


def test_statfs(mnt):
    st = os.statvfs(mnt.path)
    assert st.f_bsize > 0
    assert st.f_frsize > 0
    assert st.f_blocks > 0
    assert st.f_bfree <= st.f_blocks
    assert st.f_bavail <= st.f_blocks
    assert st.f_namemax >= 255
    res = subprocess.run(['df', '-P', mnt.path], capture_output=True,
                         text=True, check=True)
    assert mnt.path in res.stdout


def test_write_updates_mtime_and_ctime(mnt):
    path = mnt / 'times'
    write_file(path, b'before')
    old = 1_000_000_000 * 10**9
    os.utime(path, ns=(old, old))
    before = os.stat(path)
    # Give the clock a chance to move past before.st_ctime (not a timing
    # assertion: only later-than is checked).
    util.wait_for(lambda: time.time_ns() > before.st_ctime_ns + 10**7)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b'after')
    finally:
        os.close(fd)
    assert before.st_mtime_ns == old
    after = os.stat(path)
    assert after.st_mtime_ns > before.st_ctime_ns
    assert after.st_ctime_ns > before.st_ctime_ns
    assert after.st_atime_ns == old

    # Truncation is a change of the data too.
    os.utime(path, ns=(old, old))
    before = os.stat(path)
    assert before.st_mtime_ns == old
    util.wait_for(lambda: time.time_ns() > before.st_ctime_ns + 10**7)
    os.truncate(path, 2)
    after = os.stat(path)
    assert after.st_mtime_ns > before.st_ctime_ns
    assert after.st_ctime_ns > before.st_ctime_ns


@pytest.mark.kernel_passthrough
def test_open_patterns_never_fail(mnt):
    """Every open pattern works on a section, whatever opened it before:
    O_RDONLY, O_RDWR, O_WRONLY|O_APPEND, O_TRUNC, O_DIRECT, another process
    holding it open, and an open while a view of it exists (the
    kernel's one-io-mode-per-inode rule must never surface as EIO)."""
    path = mnt / 'op'
    data = pattern(0, 16 * PAGE, 5)
    write_file(path, data)

    fd = os.open(path, os.O_RDONLY)
    try:
        assert util.pread_all(fd, len(data), 0) == data
        fd2 = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd2, b'rw', 0)
            assert os.pread(fd, 2, 0) == b'rw'
        finally:
            os.close(fd2)
    finally:
        os.close(fd)

    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b'tail')
    finally:
        os.close(fd)
    assert read_file(path)[-4:] == b'tail'
    write_file(path, data)

    # O_DIRECT, with page-aligned buffers.
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, 4 * PAGE)
        assert os.preadv(fd, [buf], 0) == 4 * PAGE
        assert bytes(buf) == data[:4 * PAGE]
        buf[:] = pattern(0, 4 * PAGE, 6)
        assert os.pwritev(fd, [buf], 0) == 4 * PAGE
        buf.close()
    finally:
        os.close(fd)
    assert read_file(path)[:4 * PAGE] == pattern(0, 4 * PAGE, 6)
    write_file(path, data)

    # Another process holds it open (and reads) while we write.
    holder = subprocess.Popen(['sh', '-c', 'exec 3<"$1" && echo opened && '
                               'read x && cat <&3', 'sh', path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b'opened\n'
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, b'second', 0)
        finally:
            os.close(fd)
        out, _ = holder.communicate(b'go\n', timeout=util.PATIENCE)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert holder.returncode == 0
    assert out == b'second' + data[6:]

    # Opens while a view exists, with and without O_TRUNC.
    with util.View(path, 'shared') as view:
        assert view.verify(6, len(data) - 6, 5).startswith('ok')
        fd = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(fd, 6, 0) == b'second'
        finally:
            os.close(fd)
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, pattern(0, PAGE, 7), 0)
        finally:
            os.close(fd)
        assert view.verify(0, PAGE, 7).startswith('ok')
    fd = os.open(path, os.O_RDWR | os.O_TRUNC)
    os.close(fd)
    assert os.stat(path).st_size == 0


def go_with_handles_open(m, how):
    if how == 'lazy':
        subprocess.run(['fusermount3', '-u', '-z', m.path], check=True)
        return
    why = util.abort_fuse_connection(m.path)
    assert why is None, why


@pytest.mark.root
@pytest.mark.parametrize('how', ['lazy', 'abort'])
def test_mount_goes_with_handles_open(mount_factory, datapath, how):
    """The mount goes while a directory, a section and a view of it are
    open: detached (fusermount3 -u -z), the handles closed after it, when
    the kernel drops the releases still queued as the mount ends; or its
    connection aborted, when no release is sent at all.  The daemon exits
    0, and what it held for those handles is freed: the suite's valgrind
    and sanitizer runs judge its exit for leaks.  An aborted mount stays
    (ENOTCONN) until it is unmounted, as libfuse leaves it."""
    m = mount_factory(datapath)
    os.mkdir(m / 'd')
    write_file(m / 'd/a', b'a' * PAGE)
    dfd = os.open(m / 'd', os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(m / 'd/a', os.O_RDWR)
    try:
        view = mmap.mmap(fd, PAGE)
        assert os.listdir(dfd) == ['a']
        go_with_handles_open(m, how)
        assert view[:1] == b'a'
        view.close()
    finally:
        os.close(fd)
        os.close(dfd)
    assert m.wait_exit() == 0
    if how == 'lazy':
        assert not util.is_mounted(m.path)
    else:
        with pytest.raises(OSError) as e:
            os.listdir(m.path)
        assert e.value.errno == errno.ENOTCONN
