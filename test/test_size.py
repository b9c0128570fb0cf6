"""The size cap, -o size=N[k|m|g|t|%], on both data paths, as README and
sectionfs(8) state it.

statfs shows the cap; used grows with what is written and comes back once
an unlinked section is destroyed; a write past the cap is short (keeping
what fit) and the next one ENOSPC; a sparse ftruncate past the cap
succeeds under commit=lazy; an mmap fault that needs a page past the cap
is SIGBUS on the passthrough path.  On the cached path the kernel's page
cache takes mmap writes and the daemon sees them only at writeback, so no
SIGBUS can be delivered there: what the cached path promises is that
bytes which did not fit are refused at msync (an error, not silence).  A
bad size refuses to mount with one line.  Every wait is bounded; no
timing is asserted.
"""

import errno
import os
import subprocess

import pytest

import util
from util import (GiB, KiB, MiB, PAGE, TiB, View, df, fill, make_section,
                  outcome, used, view_cmd, write_until_enospc)


# --------------------------------------------------------------------------
# size=: statfs figures

def test_size_df_figures(mount_factory, datapath):
    """statfs shows the cap; used grows with data and comes back once the
    unlinked sections are destroyed."""
    cap = 4 * MiB
    mnt = mount_factory(datapath, options=['size=4m'])
    st = os.statvfs(mnt.path)
    assert st.f_blocks * st.f_frsize == cap
    assert st.f_bfree == st.f_bavail
    assert df(mnt.path) == (cap, 0, cap)

    # df(1) says the same.
    res = subprocess.run(['df', '-B1', '--output=size,used,avail', mnt.path],
                         capture_output=True, text=True,
                         timeout=util.PATIENCE)
    assert res.returncode == 0, res.stderr
    assert [int(x) for x in res.stdout.split('\n')[1].split()] == \
        [cap, 0, cap]

    make_section(mnt / 'a', os.urandom(MiB))
    size, u, avail = df(mnt.path)
    assert size == cap
    assert MiB <= u <= MiB + 4 * PAGE, u
    assert avail == cap - u
    make_section(mnt / 'b', os.urandom(2 * MiB + 100))
    assert 3 * MiB + 100 <= used(mnt.path) <= 3 * MiB + 8 * PAGE

    # Space comes back once each section is destroyed, which follows the
    # kernel's asynchronous RELEASE and FORGET.
    os.unlink(mnt / 'a')
    assert util.wait_for(lambda: used(mnt.path) <= 2 * MiB + 4 * PAGE), \
        'unlink of a 1 MiB section gave no space back: used %d' \
        % used(mnt.path)
    os.unlink(mnt / 'b')
    assert util.wait_for(lambda: used(mnt.path) == 0), \
        'used is %d with every section unlinked' % used(mnt.path)
    assert df(mnt.path) == (cap, 0, cap)


# --------------------------------------------------------------------------
# size=: writes past the cap

def test_size_write_past_cap_is_short_then_enospc(mount_factory, datapath):
    """write(2) in a loop: the write that crosses the cap is short and
    keeps what fit, the next gets ENOSPC, and the section holds exactly
    what the writes reported."""
    cap = MiB
    mnt = mount_factory(datapath, options=['size=1m'])
    data = os.urandom(3 * cap)
    chunk = 100000          # not a page multiple: the cap falls mid-chunk
    counts = []
    fd = os.open(mnt / 'big', os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        with pytest.raises(OSError) as e:
            off = 0
            while off < len(data):
                n = os.write(fd, data[off:off + chunk])
                assert n > 0
                counts.append(n)
                off += n
        assert e.value.errno == errno.ENOSPC, e.value
        written = sum(counts)
        assert cap - PAGE < written <= cap, written
        # The crossing write was short; every one before it was whole.
        assert counts[-1] < chunk, counts
        assert all(n == chunk for n in counts[:-1]), counts
        # The refused write changed nothing.
        assert os.fstat(fd).st_size == written
        # Overwriting bytes already stored needs no memory: it still works.
        assert os.pwrite(fd, data[:PAGE], 0) == PAGE
    finally:
        os.close(fd)
    assert os.stat(mnt / 'big').st_size == written
    assert util.read_file(mnt / 'big') == data[:written]
    assert used(mnt.path) <= cap

    # With the cap full, another section is made but cannot take a byte.
    fd = os.open(mnt / 'more', os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        assert outcome(os.write, fd, b'x') == 'ENOSPC'
        assert os.fstat(fd).st_size == 0
    finally:
        os.close(fd)


def held(mnt, names):
    """Bytes of memory the named sections hold (st_blocks)."""
    return sum(os.stat(mnt / n).st_blocks * 512 for n in names)


def test_size_holds_after_fallocate_past_end(mount_factory, datapath):
    """Pages fallocated past a section's end (FALLOC_FL_KEEP_SIZE) count
    against the cap, and so do the writes after them: together the
    sections never hold more than the cap.  On the cached path of a
    kernel without cachestat(2) (before 6.5, or under valgrind) such a
    fallocate is refused (EOPNOTSUPP) instead."""
    cap = MiB
    mnt = mount_factory(datapath, options=['size=1m'])
    fd = os.open(mnt / 'f', os.O_CREAT | os.O_RDWR, 0o644)
    try:
        got = outcome(util.fallocate, fd, util.FALLOC_FL_KEEP_SIZE,
                      GiB, cap // 2)
        assert got in ('ok', 'EOPNOTSUPP'), got
        if got == 'EOPNOTSUPP':
            assert datapath == 'cached'
        written = write_until_enospc(fd)
        assert written <= cap, written
        assert os.fstat(fd).st_size == written
    finally:
        os.close(fd)
    assert held(mnt, ['f']) <= cap
    assert util.read_file(mnt / 'f') == b'y' * written


def test_size_holds_for_writes_at_the_largest_offset(mount_factory,
                                                     datapath):
    """With the cap full, a write in the last page below 2^63 is refused
    like any other: its page is counted (ENOSPC), in every section."""
    cap = MiB
    mnt = mount_factory(datapath, options=['size=1m'])
    fill(mnt / 'full', chunk=PAGE)
    names = ['full']
    for i in range(4):
        names.append('far%d' % i)
        fd = os.open(mnt / names[-1], os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            assert outcome(os.pwrite, fd, b'far', (1 << 63) - 10) == 'ENOSPC'
        finally:
            os.close(fd)
    assert held(mnt, names) <= cap


def test_size_enospc_mid_copy_leaves_a_prefix(mount_factory, datapath,
                                              base_dir):
    """cp of a file bigger than the room left: cp fails with ENOSPC and the
    section is a consistent, smaller copy (a prefix of the source); other
    sections are unharmed."""
    cap = 2 * MiB
    mnt = mount_factory(datapath, options=['size=2m'])
    other = os.urandom(300000)
    make_section(mnt / 'other', other)
    src = os.path.join(base_dir, 'src')
    data = os.urandom(3 * MiB + 12345)
    util.write_file(src, data)

    res = subprocess.run(['cp', src, mnt / 'copy'], capture_output=True,
                         text=True, timeout=util.PATIENCE)
    assert res.returncode != 0
    assert 'No space left on device' in res.stderr, res.stderr
    got = util.read_file(mnt / 'copy')
    assert cap - len(other) - 2 * PAGE < len(got) <= cap - len(other), \
        len(got)
    assert got == data[:len(got)], 'the section is not a prefix of the source'
    assert os.stat(mnt / 'copy').st_size == len(got)
    assert util.read_file(mnt / 'other') == other
    assert used(mnt.path) <= cap


def test_size_sparse_ftruncate_beyond_cap(mount_factory, datapath):
    """Under commit=lazy, ftruncate past the cap succeeds: the section is
    sparse, holds no memory, reads as zeros, and takes data within the cap
    anywhere in its range."""
    mnt = mount_factory(datapath, options=['size=1m', 'commit=lazy'])
    fd = os.open(mnt / 'sparse', os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, 64 * MiB)
        st = os.fstat(fd)
        assert st.st_size == 64 * MiB
        assert st.st_blocks == 0
        assert used(mnt.path) == 0
        assert os.pread(fd, PAGE, 40 * MiB) == bytes(PAGE)
        assert os.pwrite(fd, b'm' * PAGE, 32 * MiB) == PAGE
        assert os.pread(fd, PAGE, 32 * MiB) == b'm' * PAGE
        assert os.fstat(fd).st_size == 64 * MiB
        assert PAGE <= used(mnt.path) <= 2 * PAGE
    finally:
        os.close(fd)


def test_size_mmap_fault_past_cap_sigbus_passthrough(mount_factory):
    """Passthrough: a write fault that needs a page the cap cannot give is
    SIGBUS (in a child); with room again, the same fault succeeds."""
    mnt = mount_factory('passthrough', options=['size=1m'])
    assert fill(mnt / 'full') == MiB
    fd = os.open(mnt / 'm', os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, 16 * PAGE)
    finally:
        os.close(fd)
    got, line = util.fault(mnt / 'm', 'shared', 'write', 5 * PAGE)
    assert got == 'SIGBUS', line
    assert os.stat(mnt / 'm').st_blocks == 0

    os.unlink(mnt / 'full')
    assert util.wait_for(lambda: used(mnt.path) == 0)
    got, line = util.fault(mnt / 'm', 'shared', 'write', 5 * PAGE)
    assert got == 'ok', line


@pytest.mark.parametrize('scenario', ['cap_full', 'one_page_over'])
def test_size_mmap_past_cap_refused_at_msync_cached(mount_factory, scenario):
    """Cached path: mmap writes land in the kernel's page cache and reach
    the daemon only at writeback, so no SIGBUS can be delivered.  What the
    path promises instead: bytes that did not fit are refused at msync (an
    error, not silence).

    cap_full: the cap is already full and a mapped page needs more.
    one_page_over: another section holds one page, and a section the size
    of the cap is filled through a mapping: all of it cannot fit."""
    cap = MiB
    mnt = mount_factory('cached', options=['size=1m'])
    if scenario == 'cap_full':
        assert fill(mnt / 'full') == cap
        length = 16 * PAGE
    else:
        make_section(mnt / 'other', b'o' * PAGE)
        length = cap
    fd = os.open(mnt / 'm', os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, length)
    finally:
        os.close(fd)

    in_use = used(mnt.path)

    # The view is another process, in case something did fault.
    with View(mnt / 'm', 'shared') as v:
        v.write(0, length, 3)
        answer = view_cmd(v, 'msync')
    stored = os.stat(mnt / 'm').st_blocks * 512
    assert answer.startswith('fail msync'), \
        '%d bytes written through a mapping into a %d-byte cap of which ' \
        '%d were in use: msync said %r, yet the section stores only %d ' \
        'of them' % (length, cap, in_use, answer, stored)
    assert 'No space left' in answer or 'Input/output' in answer, answer
    assert used(mnt.path) <= cap
    assert os.stat(mnt / 'm').st_size == length
    # Reads come to show what the section holds (its memfd, read through
    # the daemon's fd), not the refused bytes the kernel's page cache had:
    # the daemon has those pages dropped once it has answered the
    # writeback, that is just after msync hears of it.
    memfd = '/proc/%d/fd/%d' % (mnt.pid, util.daemon_memfds(mnt.pid)['/m'][0])
    held = util.read_file(memfd)
    assert len(held) == length
    assert util.wait_for(lambda: util.read_file(mnt / 'm') == held), \
        'reads through the mount still show bytes the section does not hold'


# --------------------------------------------------------------------------
# size=: values

PERCENT_SIZES = ['100%', '50%']
SIZES = [('64k', 64 * KiB), ('3m', 3 * MiB), ('2G', 2 * GiB),
         ('1t', TiB)]


def total_memory():
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemTotal:'):
                return int(line.split()[1]) * 1024
    raise AssertionError('no MemTotal in /proc/meminfo')


@pytest.mark.parametrize('value', [v for v, _ in SIZES] + PERCENT_SIZES)
def test_size_values_mount_and_show_in_df(mount_factory, datapath, value):
    mnt = mount_factory(datapath, options=['size=' + value])
    size, u, avail = df(mnt.path)
    if value.endswith('%'):
        want = total_memory() // 100 * int(value[:-1])
        assert abs(size - want) < PAGE, (size, want)
    else:
        assert size == dict(SIZES)[value]
    assert u == 0 and avail == size
    make_section(mnt / 'a', b'a' * 10000)
    assert util.read_file(mnt / 'a') == b'a' * 10000


BAD_SIZES = ['', '-1', '1.5m', '101%', '1mb', '12q', '%', 'm',
             '99999999999999999999', '20000000t']


@pytest.mark.parametrize('value', BAD_SIZES)
def test_bad_size_refuses_to_mount(mount_factory, datapath, value):
    m = mount_factory(datapath, options=['size=' + value], wait=False)
    ended = util.wait_for(lambda: not m.alive() or util.is_mounted(m.path))
    assert ended, 'daemon neither exited nor mounted'
    assert not util.is_mounted(m.path), 'mounted with size=%s' % value
    rc = m.wait_exit()
    m.expect_exit(rc)
    m.expect_stderr('.')
    assert rc not in (0, None)
    lines = [ln for ln in m.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, 'expected one line, got %r' % lines
    assert 'size' in lines[0]
