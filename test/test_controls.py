"""Section controls: the size cap, lifetime, commit policy, seals,
residency and the attribute list, on both data paths.

The contract is the one README and sectionfs(8) state for the mount
options and the user.sectionfs.* attributes, exactly:

- size=N[k|m|g|t|%]: statfs shows the cap; used grows with what is written
  and comes back once an unlinked section is destroyed; a write past the cap
  is short (keeping what fit) and the next one ENOSPC; a sparse ftruncate
  past the cap succeeds under commit=lazy; an mmap fault that needs a page
  past the cap is SIGBUS on the passthrough path.  On the cached path the
  kernel's page cache takes mmap writes and the daemon sees them only at
  writeback, so no SIGBUS can be delivered there: what the cached path
  promises is that bytes which did not fit are refused at msync (an error,
  not silence).  A bad size refuses to mount with one line.
- lifetime=handle (option and user.sectionfs.lifetime): a section goes when
  its last handle and its last view are gone; RELEASE is asynchronous to
  close(2), so the tests poll (util.wait_for) for the disappearance.  Set
  by xattr, it counts only handles opened after it.
- commit=eager: growth allocates at once, so it fails with ENOSPC at the
  cap, and what it did allocate can then be touched with the cap full.
- user.sectionfs.seals: grow, shrink, write; only added; canonical order;
  EBUSY for write under a writable shared view (passthrough) or a writer
  (cached); ENODATA/EOPNOTSUPP for file-backed sections; "" and EOPNOTSUPP
  on the capped tmpfs store of a passthrough mount.
- user.sectionfs.resident: bytes of the section in memory.

Where a test needs "nothing happened" after an asynchronous RELEASE, it
waits on a barrier (release_barrier): a sentinel handle-lifetime section
opened and closed afterwards, which the kernel releases after the one under
test.  A RELEASE handled late could only let such a test pass wrongly, never
fail wrongly.  Every wait is bounded; no timing is asserted.
"""

import ctypes
import errno
import mmap
import os
import re
import stat
import subprocess
import threading

import pytest

import util
from util import PAGE, View

KIND = 'user.sectionfs.kind'
BACKING = 'user.sectionfs.backing'
LIFETIME = 'user.sectionfs.lifetime'
SEALS = 'user.sectionfs.seals'
RESIDENT = 'user.sectionfs.resident'
OURS = {KIND, BACKING, LIFETIME, SEALS, RESIDENT}

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

#: How a page-file-backed section comes to be: open(O_CREAT) (the kernel's
#: CREATE, which also opens it) or mknod(2) (MKNOD, then a separate OPEN).
CREATORS = ['create', 'mknod']


# --------------------------------------------------------------------------
# Helpers

def outcome(fn, *args):
    """'ok' or the errno name fn(*args) raised (EOPNOTSUPP, the name the
    contract uses, for Linux's one number of EOPNOTSUPP and ENOTSUP)."""
    try:
        fn(*args)
        return 'ok'
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            return 'EOPNOTSUPP'
        return util.errno_name(e)


def make_section(path, data=b'', how='create', mode=0o644):
    """A page-file-backed section holding data, no handle left open."""
    if how == 'create':
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    else:
        os.mknod(path, stat.S_IFREG | mode)
        if not data:
            return
        fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def df(path):
    """(size, used, available) of the file system at path, in bytes."""
    st = os.statvfs(path)
    return (st.f_blocks * st.f_frsize,
            (st.f_blocks - st.f_bfree) * st.f_frsize,
            st.f_bavail * st.f_frsize)


def used(path):
    return df(path)[1]


def write_until_enospc(fd, chunk=MiB):
    """Write chunks from offset 0 until ENOSPC (more than 64 MiB is a
    failure); returns the bytes written."""
    written = 0
    with pytest.raises(OSError) as e:
        while written <= 64 * MiB:
            written += os.pwrite(fd, b'y' * chunk, written)
    assert e.value.errno == errno.ENOSPC, e.value
    return written


def fill(path, chunk=65536):
    """Write to a new section at path until ENOSPC; returns bytes written."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        return write_until_enospc(fd, chunk)
    finally:
        os.close(fd)


def gone(path):
    return lambda: not os.path.lexists(path)


def drop_cache(path):
    """Drop the clean page cache pages of path (a FUSE inode or a file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


_barriers = [0]


def release_barrier(mnt):
    """Open and close a handle-lifetime sentinel and wait until it is gone.

    The kernel sends RELEASEs in the order the files were closed, so once
    the sentinel's has been handled, those of every earlier close have been
    delivered too."""
    _barriers[0] += 1
    path = mnt / ('.barrier%d' % _barriers[0])
    os.mknod(path, stat.S_IFREG | 0o600)
    os.setxattr(path, LIFETIME, b'handle')
    os.close(os.open(path, os.O_RDONLY))
    assert util.wait_for(gone(path)), \
        'the barrier section (mknod, lifetime=handle, open, close) never ' \
        'went: handle lifetime does not work at all'


def view_cmd(view, command):
    """A View command whose helper may have died (a fault): its answer, or
    a description of how it ended."""
    line = view.cmd(command)
    if not line:
        rc = view.close()
        return 'view process ended with status %s (%s)' % (
            rc, 'SIGBUS' if rc == -7 else 'signal %d' % -rc if rc < 0
            else 'exit')
    return line


#: Runs xattr calls as another user; prints one answer per call.
_XATTR_AS = r'''
import errno, os, sys
args = sys.argv[1:]
while args:
    op, path, name = args[:3]
    args = args[3:]
    try:
        if op == 'set':
            os.setxattr(path, name, args.pop(0).encode())
            print('ok')
        else:
            print('=' + os.getxattr(path, name).decode())
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
'''


def xattrs_as(uid, calls):
    """[('get', path, name) or ('set', path, name, value)] as uid; returns
    the answers: 'ok', '=value' or an errno name."""
    argv = util.as_user_argv(uid) + [util.PYTHON, '-I', '-c', _XATTR_AS]
    for call in calls:
        argv += [str(x) for x in call]
    res = subprocess.run(argv, capture_output=True, text=True, cwd='/',
                         timeout=util.PATIENCE)
    assert res.returncode == 0, res.stderr
    return res.stdout.split('\n')[:len(calls)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                       ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def page_cache_bytes(path):
    """Bytes of path in the page cache, by mincore(2) over a mapping that
    is never touched (so measuring changes nothing)."""
    size = os.stat(path).st_size
    if size == 0:
        return 0
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), 'mmap')
    finally:
        os.close(fd)
    try:
        pages = (size + PAGE - 1) // PAGE
        vec = ctypes.create_string_buffer(pages)
        if _libc.mincore(addr, size, vec) != 0:
            raise OSError(ctypes.get_errno(), 'mincore')
        return sum(b & 1 for b in vec.raw[:pages]) * PAGE
    finally:
        _libc.munmap(addr, size)


def resident(path):
    value = os.getxattr(path, RESIDENT)
    assert re.fullmatch(rb'[0-9]+', value), value
    return int(value)


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
         ('1t', 1 << 40)]


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


# --------------------------------------------------------------------------
# lifetime

@pytest.mark.parametrize('creator', CREATORS)
def test_handle_lifetime_gone_after_close(mount_factory, datapath, creator):
    """-o lifetime=handle: a section created, written and closed is
    destroyed shortly after the close: no name, not listed, its memory
    closed by the daemon; the name can be used again."""
    mnt = mount_factory(datapath, options=['lifetime=handle'])
    path = mnt / 's'
    make_section(path, b'short-lived' * 1000, how=creator)
    assert util.wait_for(gone(path)), \
        'a section made by %s, written and closed is still there ' \
        '(lifetime=handle)' % creator
    assert outcome(os.stat, path) == 'ENOENT'
    assert 's' not in os.listdir(mnt.path)
    assert util.wait_for(lambda: '/s' not in util.daemon_memfds(mnt.pid)), \
        'the name went but the daemon still holds the memfd'
    # The name is free again; a new section there starts empty and lives
    # while it is open.
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    try:
        assert os.getxattr(path, LIFETIME) == b'handle'
        assert os.fstat(fd).st_size == 0
        os.write(fd, b'again')
        assert util.read_file(path) == b'again'
    finally:
        os.close(fd)
    assert util.wait_for(gone(path))


#: Makes, writes and closes short-lived sections in one directory, over
#: and over, for a while: each close destroys one (lifetime=handle), and
#: the daemon tells the kernel its name is gone while the other workers'
#: creates wait for the directory.
_CHURN = r'''
import os, sys, time
top, me = sys.argv[1], sys.argv[2]
end = time.monotonic() + 2
n = 0
while time.monotonic() < end:
    fd = os.open(os.path.join(top, '%s-%d' % (me, n % 50)),
                 os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b'x')
    os.close(fd)
    os.listdir(top)
    n += 1
print('ok', n)
'''


def test_handle_lifetime_single_threaded_churn(mount_factory, datapath):
    """With -s the daemon answers one request at a time, so telling the
    kernel that an expired section's name is gone must not wait on the
    directory lock of a create that only that one thread could answer:
    four processes churning sections in one directory all finish."""
    mnt = mount_factory(datapath, options=['lifetime=handle'], flags=['-s'])
    os.mkdir(mnt / 'd')
    procs = [subprocess.Popen([util.PYTHON, '-I', '-c', _CHURN, mnt / 'd',
                               'w%d' % i], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd='/')
             for i in range(4)]
    hung = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=util.PATIENCE)
            assert p.returncode == 0 and out.startswith('ok'), err
        except subprocess.TimeoutExpired:
            hung.append(p)
    for p in hung:
        p.kill()
    assert not hung, '%d of 4 workers still waiting on the daemon after ' \
        '%d s' % (len(hung), util.PATIENCE)
    assert util.wait_for(lambda: os.listdir(mnt / 'd') == [])


def test_handle_lifetime_view_outlives_last_fd(mount_factory, datapath):
    """Cached path: a view held by another process keeps a handle-lifetime
    section alive after its last fd is closed; it goes once the view is
    unmapped.  Passthrough: a view maps the store itself and the kernel
    tells the daemon nothing of it, so the name goes with the last handle
    (README, "Lifetime") while the view goes on working on the same pages
    until it is unmapped."""
    mnt = mount_factory(datapath, options=['lifetime=handle'])
    path = mnt / 'viewed'
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    try:
        os.write(fd, util.pattern(0, 4 * PAGE, 1))
        view = View(path, 'shared')
    finally:
        os.close(fd)
    with view:
        release_barrier(mnt)
        if datapath == 'passthrough':
            assert util.wait_for(gone(path)), \
                'name kept after the last handle closed'
            view.write(PAGE, PAGE, 2)
            assert view.verify(0, PAGE, 1).startswith('ok')
            assert view.verify(PAGE, PAGE, 2).startswith('ok')
            return
        assert os.path.exists(path), 'destroyed while a view was mapped'
        assert view.verify(0, 4 * PAGE, 1).startswith('ok')
        view.write(PAGE, PAGE, 2)
        view.msync()
        got = util.read_file(path)      # an open and close by name
        assert got[PAGE:2 * PAGE] == util.pattern(PAGE, PAGE, 2)
        release_barrier(mnt)
        assert os.path.exists(path)
        assert view.verify(0, PAGE, 1).startswith('ok')
    assert util.wait_for(gone(path)), \
        'still there after the last view was unmapped'
    assert util.wait_for(lambda: '/viewed' not in
                         util.daemon_memfds(mnt.pid))


def test_handle_lifetime_two_fds(mount_factory, datapath):
    """With two fds open, a handle-lifetime section goes only after both
    are closed."""
    mnt = mount_factory(datapath, options=['lifetime=handle'])
    path = mnt / 'two'
    fd1 = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    fd2 = os.open(path, os.O_RDONLY)
    try:
        os.write(fd1, b'two handles')
        os.close(fd1)
        fd1 = None
        release_barrier(mnt)
        assert os.path.exists(path), 'destroyed while a handle was open'
        assert os.pread(fd2, 100, 0) == b'two handles'
    finally:
        if fd1 is not None:
            os.close(fd1)
        os.close(fd2)
    assert util.wait_for(gone(path))


def test_lifetime_xattr(mount_factory, datapath):
    """user.sectionfs.lifetime: 'name' by default; 'handle' set on a
    section nobody has open destroys nothing on the spot, but the section
    goes after its next open and close; set back to 'name' it stays; a bad
    value is EINVAL and changes nothing."""
    mnt = mount_factory(datapath)
    a, b = mnt / 'a', mnt / 'b'
    for p in (a, b):
        make_section(p, b'kept ' + p.encode())
        assert os.getxattr(p, LIFETIME) == b'name'

    os.setxattr(a, LIFETIME, b'handle')
    assert os.getxattr(a, LIFETIME) == b'handle'
    release_barrier(mnt)
    assert os.path.exists(a), 'setting lifetime=handle destroyed it at once'
    assert util.read_file(a) == b'kept ' + a.encode()   # open and close
    assert util.wait_for(gone(a)), 'not destroyed after its next close'
    assert 'a' not in os.listdir(mnt.path)

    os.setxattr(b, LIFETIME, b'handle')
    os.setxattr(b, LIFETIME, b'name')
    assert os.getxattr(b, LIFETIME) == b'name'
    assert util.read_file(b) == b'kept ' + b.encode()
    release_barrier(mnt)
    assert util.read_file(b) == b'kept ' + b.encode()

    for bad in (b'forever', b'', b'Handle', b'handle\n', b'name\0',
                b'name,handle'):
        assert outcome(os.setxattr, b, LIFETIME, bad) == 'EINVAL', bad
    assert os.getxattr(b, LIFETIME) == b'name'
    assert util.read_file(b) == b'kept ' + b.encode()


def test_xattr_create_and_replace_flags(mount_factory, datapath):
    """setxattr's XATTR_CREATE and XATTR_REPLACE: a section always has
    its lifetime and seals, so creating them is EEXIST and changes
    nothing, and replacing them works."""
    mnt = mount_factory(datapath)
    path = mnt / 'f'
    make_section(path, b'data')
    assert outcome(os.setxattr, path, LIFETIME, b'handle',
                   os.XATTR_CREATE) == 'EEXIST'
    assert outcome(os.setxattr, path, SEALS, b'grow',
                   os.XATTR_CREATE) == 'EEXIST'
    assert os.getxattr(path, LIFETIME) == b'name'
    assert os.getxattr(path, SEALS) == b''
    os.setxattr(path, SEALS, b'grow', os.XATTR_REPLACE)
    assert os.getxattr(path, SEALS) == b'grow'
    os.setxattr(path, LIFETIME, b'name', os.XATTR_REPLACE)
    assert os.getxattr(path, LIFETIME) == b'name'
    assert util.read_file(path) == b'data'


def test_lifetime_handle_counts_handles_opened_after_it(mount_factory,
                                                       datapath):
    """A handle open when the lifetime becomes 'handle' does not destroy
    the section at its close: the kernel reports closes late, so that
    handle may have been closed before the change (sectionctl create
    --lifetime handle closes, then sets it).  The next open and close
    does."""
    mnt = mount_factory(datapath)
    path = mnt / 'held'
    make_section(path, b'held data')
    fd = os.open(path, os.O_RDONLY)
    os.setxattr(path, LIFETIME, b'handle')
    os.close(fd)
    release_barrier(mnt)
    assert os.path.exists(path), \
        'closing a handle opened before lifetime=handle destroyed it'
    assert util.read_file(path) == b'held data'         # open and close
    assert util.wait_for(gone(path)), 'not destroyed after its next close'


def test_failed_open_ends_no_lifetime(mount_factory, datapath):
    """An open that fails after the section was found (here O_TRUNC of a
    shrink-sealed section: EPERM) changes nothing: it does not end a
    handle lifetime, neither at once nor at the close of a handle that
    was open before the lifetime became 'handle'."""
    mnt = mount_factory(datapath)
    data = util.pattern(0, PAGE, 9)
    names = ['alone', 'held']
    for name in names:
        make_section(mnt / name, data)
        os.setxattr(mnt / name, SEALS, b'shrink')
    fd = os.open(mnt / 'held', os.O_RDONLY)
    for name in names:
        os.setxattr(mnt / name, LIFETIME, b'handle')
        assert outcome(os.open, mnt / name,
                       os.O_RDWR | os.O_TRUNC) == 'EPERM'
    os.close(fd)
    release_barrier(mnt)
    assert sorted(os.listdir(mnt.path)) == names, \
        'a section lost its name after a failed open'
    for name in names:
        assert os.stat(mnt / name).st_nlink == 1
        assert util.read_file(mnt / name) == data     # open and close
        assert util.wait_for(gone(mnt / name)), \
            '%s not destroyed after its next close' % name


@pytest.mark.root
@pytest.mark.other_user
def test_lifetime_and_seals_only_by_owner(mount_factory, datapath):
    """Another user who may write a 0666 section still may not set its
    lifetime or seals (EPERM); reading them is fine; nothing changes."""
    mnt = mount_factory(datapath, options=['allow_other'])
    path = mnt / 'shared'
    make_section(path, b'root owns this', mode=0o666)
    os.chmod(path, 0o666)
    assert util.user_op('write', path) == 'ok'     # its bytes are everyone's
    got = xattrs_as(util.NOBODY, [('set', path, LIFETIME, 'handle'),
                                  ('set', path, SEALS, 'grow'),
                                  ('set', path, SEALS, ''),
                                  ('get', path, LIFETIME),
                                  ('get', path, SEALS)])
    assert got == ['EPERM', 'EPERM', 'EPERM', '=name', '=']
    assert os.getxattr(path, LIFETIME) == b'name'
    assert os.getxattr(path, SEALS) == b''
    release_barrier(mnt)
    assert os.path.exists(path)
    # The owner may.
    os.setxattr(path, SEALS, b'shrink')
    assert os.getxattr(path, SEALS) == b'shrink'


@pytest.mark.file_backed
def test_handle_lifetime_file_backed(mount_factory, datapath, base_dir):
    """A file-backed section with lifetime=handle goes after its close;
    its backing file is untouched (and holds what was written)."""
    mnt = mount_factory(datapath, options=['lifetime=handle'])
    target = os.path.join(base_dir, 'backing')
    util.write_file(target, b'0123456789' * 1000)
    os.chmod(target, 0o640)
    before = os.stat(target)
    os.symlink(target, mnt / 'fb')
    assert os.getxattr(mnt / 'fb', LIFETIME) == b'handle'
    fd = os.open(mnt / 'fb', os.O_RDWR)
    try:
        os.pwrite(fd, b'WRITTEN', 3)
    finally:
        os.close(fd)
    assert util.wait_for(gone(mnt / 'fb')), \
        'file-backed section still there after its close'
    assert 'fb' not in os.listdir(mnt.path)
    assert util.wait_for(lambda: target not in
                         util.daemon_fds(mnt.pid).values()), \
        'the daemon still holds the backing file'
    after = os.stat(target)
    assert (after.st_ino, after.st_size, stat.S_IMODE(after.st_mode),
            after.st_nlink) == (before.st_ino, before.st_size, 0o640, 1)
    want = bytearray(b'0123456789' * 1000)
    want[3:10] = b'WRITTEN'
    assert util.read_file(target) == bytes(want)
    # The same target can be made a section again.
    os.symlink(target, mnt / 'fb')
    assert util.read_file(mnt / 'fb') == bytes(want)


# --------------------------------------------------------------------------
# commit

def growth_refused(fd, size):
    """An eager ftruncate of the empty section fd to size fails with
    ENOSPC and leaves it empty, nothing allocated."""
    assert outcome(os.ftruncate, fd, size) == 'ENOSPC'
    st = os.fstat(fd)
    assert (st.st_size, st.st_blocks) == (0, 0)


def test_commit_eager(mount_factory, datapath):
    """size=8m,commit=eager: growth past the cap fails with ENOSPC and
    changes nothing; growth within it allocates at once; with the rest of
    the cap then taken by another section, a child touching every page of
    the mapping never faults, and the bytes are all stored."""
    mnt = mount_factory(datapath, options=['size=8m', 'commit=eager'])
    path = mnt / 'eager'
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        growth_refused(fd, 16 * MiB)
        assert used(mnt.path) == 0

        os.ftruncate(fd, 4 * MiB)
        st = os.fstat(fd)
        assert st.st_size == 4 * MiB
        assert st.st_blocks * 512 >= 4 * MiB, \
            'eager commit allocated only %d bytes' % (st.st_blocks * 512)
        assert 4 * MiB <= used(mnt.path) <= 4 * MiB + 4 * PAGE
    finally:
        os.close(fd)

    # Nothing is left for anything not yet allocated.
    assert 4 * MiB - 4 * PAGE <= fill(mnt / 'rest') <= 4 * MiB
    assert df(mnt.path)[2] < PAGE

    with View(path, 'shared') as v:
        answer = view_cmd(v, 'write 0 %d 9' % (4 * MiB))
        assert answer.startswith('ok'), answer
        answer = view_cmd(v, 'msync')
        assert answer == 'ok msync', answer
        rc = v.close()
    assert rc == 0, 'the view process ended with %s' % rc
    drop_cache(path)
    assert util.read_file(path) == util.pattern(0, 4 * MiB, 9), \
        'bytes written to committed pages did not all reach the section'
    # Plain writes into committed memory work too, the cap being full.
    fd = os.open(path, os.O_WRONLY)
    try:
        assert outcome(os.pwrite, fd, b'w' * 65536, MiB) == 'ok'
    finally:
        os.close(fd)


def test_commit_eager_without_cap_stops_at_memory(mount_factory, datapath):
    """commit=eager without size=: a growth larger than the memory and
    swap df shows (twice the machine's) fails with ENOSPC at once and
    changes nothing, rather than allocating until the OOM killer strikes;
    a growth that fits still commits."""
    mnt = mount_factory(datapath, options=['commit=eager'])
    st = os.statvfs(mnt.path)
    machine = st.f_blocks * st.f_frsize
    assert st.f_bavail * st.f_frsize <= machine
    path = mnt / 'eager'
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        growth_refused(fd, 2 * machine)
        os.ftruncate(fd, MiB)
        st = os.fstat(fd)
        assert (st.st_size, st.st_blocks * 512) == (MiB, MiB)
    finally:
        os.close(fd)


def test_commit_lazy_contrast(mount_factory, datapath):
    """commit=lazy (the default): the same growth past the cap succeeds and
    allocates nothing; on the passthrough path a later fault then SIGBUSes
    once the cap is taken, which eager commit is there to prevent."""
    mnt = mount_factory(datapath, options=['size=8m', 'commit=lazy'])
    path = mnt / 'lazy'
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, 16 * MiB)
        st = os.fstat(fd)
        assert (st.st_size, st.st_blocks) == (16 * MiB, 0)
        assert used(mnt.path) == 0
        os.ftruncate(fd, 4 * MiB)
        assert os.fstat(fd).st_blocks == 0
    finally:
        os.close(fd)
    if datapath == 'passthrough':
        assert fill(mnt / 'rest') == 8 * MiB
        got, line = util.fault(path, 'shared', 'write', 2 * MiB)
        assert got == 'SIGBUS', line


# --------------------------------------------------------------------------
# seals

def test_seals_empty_at_first(mnt):
    for creator in CREATORS:
        path = mnt / creator
        make_section(path, b'x', how=creator)
        assert os.getxattr(path, SEALS) == b''
        assert SEALS in os.listxattr(path)


def test_seal_grow(mnt):
    """grow: writes past the end and truncation up are EPERM; writes
    within the size and truncation down are fine."""
    path = mnt / 'g'
    data = os.urandom(3 * PAGE)
    make_section(path, data)
    os.setxattr(path, SEALS, b'grow')
    assert os.getxattr(path, SEALS) == b'grow'
    fd = os.open(path, os.O_RDWR)
    try:
        assert outcome(os.pwrite, fd, b'past', 3 * PAGE) == 'EPERM'
        assert outcome(os.pwrite, fd, b'far', 100 * PAGE) == 'EPERM'
        assert outcome(os.ftruncate, fd, 4 * PAGE) == 'EPERM'
        assert os.fstat(fd).st_size == 3 * PAGE
        assert os.pwrite(fd, b'inside', PAGE) == 6
        os.ftruncate(fd, 2 * PAGE)
        assert os.fstat(fd).st_size == 2 * PAGE
    finally:
        os.close(fd)
    assert outcome(os.truncate, path, 3 * PAGE) == 'EPERM'
    want = data[:PAGE] + b'inside' + data[PAGE + 6:2 * PAGE]
    assert util.read_file(path) == want


def test_seal_shrink(mnt):
    """shrink: truncation down is EPERM; growth is fine."""
    path = mnt / 's'
    data = os.urandom(2 * PAGE)
    make_section(path, data)
    os.setxattr(path, SEALS, b'shrink')
    assert outcome(os.truncate, path, PAGE) == 'EPERM'
    assert outcome(os.truncate, path, 0) == 'EPERM'
    fd = os.open(path, os.O_RDWR)
    try:
        assert outcome(os.ftruncate, fd, 10) == 'EPERM'
        assert os.fstat(fd).st_size == 2 * PAGE
        assert os.pwrite(fd, b'more', 2 * PAGE) == 4
        os.ftruncate(fd, 4 * PAGE)
    finally:
        os.close(fd)
    assert util.read_file(path) == data + b'more' + bytes(2 * PAGE - 4)
    assert os.getxattr(path, SEALS) == b'shrink'


def test_seal_write(mnt):
    """write: the section cannot be opened for writing any more (EPERM, on
    both paths: the daemon cannot see the kernel's views, so refusing
    writers is how no writable view can slip past the seal), and the data
    stays as it was."""
    path = mnt / 'w'
    data = os.urandom(2 * PAGE + 7)
    make_section(path, data)
    os.setxattr(path, SEALS, b'write')
    assert os.getxattr(path, SEALS) == b'write'
    assert outcome(os.open, path, os.O_WRONLY) == 'EPERM'
    assert outcome(os.open, path, os.O_RDWR) == 'EPERM'
    with open(path, 'rb') as f:      # reading is unaffected
        assert f.read() == data
    got, line = util.fault(path, 'readonly', 'read', PAGE)
    assert got == 'ok', line
    assert util.read_file(path) == data


def test_seal_write_refuses_new_writable_shared_view(mnt):
    """A write-sealed section cannot get a new writable shared mapping:
    the attempt fails (at open or mmap), no byte changes.  MAP_PRIVATE
    copy-on-write views stay possible and change nothing either."""
    path = mnt / 'w'
    data = util.pattern(0, 2 * PAGE, 4)
    make_section(path, data)
    os.setxattr(path, SEALS, b'write')
    got, line = util.fault(path, 'shared', 'write', 0)
    assert got == 'setup error', \
        'a writable shared view of a write-sealed section: %s; the ' \
        'section now %s' % (line, 'is unchanged' if util.read_file(path)
                            == data else 'differs from what was sealed')
    assert 'Operation not permitted' in line, line
    got, line = util.fault(path, 'private', 'write', 0)
    assert got == 'ok', line
    assert util.read_file(path) == data


def test_seals_canonical_order_and_only_added(mnt):
    path = mnt / 'c'
    make_section(path, b'data')
    assert outcome(os.setxattr, path, SEALS, b'') == 'ok'   # none to none
    assert os.getxattr(path, SEALS) == b''
    os.setxattr(path, SEALS, b'shrink')
    assert os.getxattr(path, SEALS) == b'shrink'
    os.setxattr(path, SEALS, b'write,shrink')
    assert os.getxattr(path, SEALS) == b'shrink,write'
    # Removing one (a list that omits a seal already set) is EPERM.
    for omits in (b'', b'write', b'shrink', b'grow,write', b'grow'):
        assert outcome(os.setxattr, path, SEALS, omits) == 'EPERM', omits
        assert os.getxattr(path, SEALS) == b'shrink,write'
    os.setxattr(path, SEALS, b'write,grow,shrink,grow')
    assert os.getxattr(path, SEALS) == b'grow,shrink,write'
    os.setxattr(path, SEALS, b'shrink,write,grow')      # nothing new: fine
    assert os.getxattr(path, SEALS) == b'grow,shrink,write'
    assert outcome(os.removexattr, path, SEALS) == 'EPERM'
    assert os.getxattr(path, SEALS) == b'grow,shrink,write'


BAD_SEALS = [b'frozen', b'grow,', b',grow', b'grow,,shrink', b'GROW',
             b'grow shrink', b'grow\0', b'grow,seal', b',']


def test_seals_bad_values(mnt):
    path = mnt / 'b'
    make_section(path, b'data')
    for bad in BAD_SEALS:
        assert outcome(os.setxattr, path, SEALS, bad) == 'EINVAL', bad
    assert os.getxattr(path, SEALS) == b''
    os.setxattr(path, SEALS, b'grow')
    for bad in BAD_SEALS:
        assert outcome(os.setxattr, path, SEALS, bad) == 'EINVAL', bad
    assert os.getxattr(path, SEALS) == b'grow'
    # No seal slipped in: shrinking and overwriting still work.
    os.truncate(path, 2)
    util.write_file(path, b'ok', 'r+b')
    assert util.read_file(path) == b'ok'


@pytest.mark.parametrize('creator', CREATORS)
def test_seal_write_busy(mount_factory, datapath, creator):
    """write while another process holds a writable shared view is EBUSY
    (memfd's rule) on both paths; on the cached path also while the
    section is open for writing.  Once they are gone, it can be set; a
    read-only view is no obstacle."""
    mnt = mount_factory(datapath)
    path = mnt / 'busy'
    make_section(path, util.pattern(0, 2 * PAGE, 5), how=creator)
    with View(path, 'shared') as v:
        assert outcome(os.setxattr, path, SEALS, b'write') == 'EBUSY', \
            'write seal set under a writable shared view (section made ' \
            'by %s)' % creator
        assert os.getxattr(path, SEALS) == b''
        v.write(0, PAGE, 6)
        v.msync()
    if datapath == 'cached':
        fd = os.open(path, os.O_WRONLY)
        try:
            assert outcome(os.setxattr, path, SEALS, b'write') == 'EBUSY', \
                'write seal set under an open writer (cached path)'
        finally:
            os.close(fd)
    with View(path, 'readonly') as v:
        # The writers' RELEASEs are asynchronous: poll for the seal.
        assert util.wait_for(lambda: outcome(os.setxattr, path, SEALS,
                                             b'write') == 'ok'), \
            'write seal still refused after every writer went: %s' % \
            outcome(os.setxattr, path, SEALS, b'write')
        assert v.verify(0, PAGE, 6).startswith('ok')
    assert os.getxattr(path, SEALS) == b'write'
    assert util.read_file(path) == util.pattern(0, PAGE, 6) + \
        util.pattern(PAGE, PAGE, 5)


def race_write_seal(path):
    """Seal path's section for writing while a thread keeps opening it for
    writing and storing a byte through a shared view, a moment after the
    open; returns the errors msync reported for views of handles that
    were opened.  Views, since a write(2) would wait for the kernel's
    inode lock, which the setxattr holds, and so keep in step with it."""
    stop = threading.Event()
    opened, refused_opens, refused_writes = [0], [0], []

    def writer():
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_RDWR)
            except PermissionError:
                refused_opens[0] += 1
                stop.wait(0.001)
                continue
            opened[0] += 1
            try:
                stop.wait(0.004)
                with mmap.mmap(fd, PAGE, mmap.MAP_SHARED) as view:
                    view[0:1] = b'w'
                    view.flush()
            except OSError as e:
                refused_writes.append(util.errno_name(e))
            finally:
                os.close(fd)
            stop.wait(0.002)     # a moment without writers, for the seal

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert util.wait_for(lambda: opened[0] > 0)
        assert util.wait_for(lambda: outcome(os.setxattr, path, SEALS,
                                             b'write') == 'ok'), \
            'write seal never found the section without writers'
        assert util.wait_for(lambda: refused_opens[0] > 0)
    finally:
        stop.set()
        thread.join()
    return refused_writes


def test_seal_write_racing_writers(mount_factory):
    """Cached path: a write seal made while another thread keeps opening
    the section for writing.  Each open comes either before the seal,
    which then waits for its writer or is EBUSY, or after it, and is
    refused (EPERM): never is a handle opened for writing whose writes the
    seal then refuses.  Each section holds 512 MiB, so that making the
    seal (memfd looks at every page) takes long enough for opens to
    arrive while it is made."""
    mnt = mount_factory('cached')
    for i in range(4):
        path = mnt / ('race%d' % i)
        make_section(path)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, 512 * MiB)
        finally:
            os.close(fd)
        refused_writes = race_write_seal(path)
        assert refused_writes == [], \
            'opened for writing, then the write refused: %s' % refused_writes
        assert os.getxattr(path, SEALS) == b'write'
        fd = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(fd, 2, 0) == b'w\0'
        finally:
            os.close(fd)
        os.unlink(path)


@pytest.mark.file_backed
def test_seals_file_backed(mnt, base_dir):
    """File-backed sections have no seals: get ENODATA, set EOPNOTSUPP,
    not listed, and writes still work."""
    target = os.path.join(base_dir, 'target')
    util.write_file(target, b'file-backed')
    os.symlink(target, mnt / 'fb')
    assert outcome(os.getxattr, mnt / 'fb', SEALS) == 'ENODATA'
    for value in (b'grow', b'write', b''):
        assert outcome(os.setxattr, mnt / 'fb', SEALS, value) \
            == 'EOPNOTSUPP', value
    assert SEALS not in os.listxattr(mnt / 'fb')
    util.write_file(mnt / 'fb', b'FILE', 'r+b')
    with open(mnt / 'fb', 'ab') as f:
        f.write(b' grown')
    assert util.read_file(target) == b'FILE-backed grown'


def test_seals_with_size_cap(mount_factory, datapath):
    """With size=, the passthrough store is a private tmpfs, which cannot
    seal: get '' and set EOPNOTSUPP, and nothing is sealed.  The cached
    path keeps memfds under a cap the daemon counts, so seals work."""
    mnt = mount_factory(datapath, options=['size=4m'])
    path = mnt / 'capped'
    make_section(path, b'capped')
    assert os.getxattr(path, SEALS) == b''
    if datapath == 'passthrough':
        for value in (b'grow', b'write', b'shrink,grow'):
            assert outcome(os.setxattr, path, SEALS, value) \
                == 'EOPNOTSUPP', value
        assert os.getxattr(path, SEALS) == b''
        with open(path, 'ab') as f:
            f.write(b' and grown')
        assert util.read_file(path) == b'capped and grown'
    else:
        os.setxattr(path, SEALS, b'grow')
        assert os.getxattr(path, SEALS) == b'grow'
        fd = os.open(path, os.O_WRONLY)
        try:
            assert outcome(os.pwrite, fd, b'x', 6) == 'EPERM'
        finally:
            os.close(fd)
        assert util.read_file(path) == b'capped'


# --------------------------------------------------------------------------
# resident

def test_resident_page_file(mnt):
    """resident: 0 for a fresh sparse section; grows by about the bytes
    written; rewriting the same bytes adds nothing.  (Under -o
    writeback_cache written bytes reach the section by fsync at the
    latest, so the test syncs before it looks.)"""
    path = mnt / 'r'
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, 8 * MiB)
        r0 = resident(path)
        assert r0 <= 4 * PAGE, r0
        os.pwrite(fd, os.urandom(MiB), 2 * MiB)
        os.fsync(fd)
        r1 = resident(path)
        assert MiB <= r1 - r0 <= MiB + 4 * PAGE, (r0, r1)
        os.pwrite(fd, os.urandom(MiB), 2 * MiB)
        os.fsync(fd)
        assert resident(path) == r1
        os.pwrite(fd, b'y' * (3 * PAGE), 6 * MiB)
        os.fsync(fd)
        r2 = resident(path)
        assert 3 * PAGE <= r2 - r1 <= 5 * PAGE, (r1, r2)
    finally:
        os.close(fd)
    assert resident(path) == r2


@pytest.mark.file_backed
def test_resident_file_backed(mnt, base_dir):
    """A file-backed section's resident is its backing file's page cache:
    it follows the backing file being read (through the mount) and being
    dropped from memory."""
    target = os.path.join(base_dir, 'target')
    size = 4 * MiB
    data = os.urandom(size)
    util.write_file(target, data)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    drop_cache(target)
    if page_cache_bytes(target) > size // 2:
        pytest.skip('the file system under %s keeps %s in memory after '
                    'POSIX_FADV_DONTNEED (tmpfs?)' % (base_dir, target))
    os.symlink(target, mnt / 'fb')
    r0 = resident(mnt / 'fb')
    assert r0 == page_cache_bytes(target), r0
    assert r0 <= size // 2

    assert util.read_file(mnt / 'fb') == data
    r1 = resident(mnt / 'fb')
    assert r1 == page_cache_bytes(target), (r1, page_cache_bytes(target))
    assert r1 >= r0 + size // 2, (r0, r1)

    drop_cache(target)
    r2 = resident(mnt / 'fb')
    assert r2 == page_cache_bytes(target)
    assert r2 <= size // 2, r2


# --------------------------------------------------------------------------
# listxattr

def ours(path):
    return {n for n in os.listxattr(path) if n.startswith('user.sectionfs.')}


def assert_list_matches_get(path):
    """Every name of ours is listed exactly when getxattr answers it."""
    listed = ours(path)
    for name in OURS:
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
    assert ours(mnt / 'file') == {KIND, BACKING, LIFETIME, RESIDENT}
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
