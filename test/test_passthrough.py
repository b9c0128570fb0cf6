"""The kernel passthrough data path.

Marked "kernel_passthrough".  These hold the daemon to what passthrough promises and
only mean something on that path, so most mount with passthrough=on (the
pt_mnt fixture) and fail, not skip, where passthrough cannot be had:
  - a view of a section is the store's own pages (pagemap PFNs);
  - after SIGKILL of the daemon, passthrough views and fds keep working,
    new opens get ENOTCONN, fusermount3 -u cleans up;
  - no backing id (nor fd) leaks over 10,000 section lifetimes;
  - an unprivileged daemon mounts with passthrough=auto on the cached path,
    and refuses passthrough=on cleanly.
"""

import errno
import os
import subprocess

import pytest

import util
from util import PAGE, NOBODY, View, expect_errno, pattern, write_file

pytestmark = pytest.mark.kernel_passthrough



@pytest.mark.root
def test_views_are_the_store_pages(pt_mnt):
    """In passthrough mode a view's pages are the memfd's own pages: two
    processes' views and a view of the daemon's memfd (opened through
    /proc/DAEMON/fd/N) have the same PFNs."""
    mnt = pt_mnt
    path = mnt / 'pfn'
    write_file(path, pattern(0, 8 * PAGE, 1))
    [fd] = util.daemon_memfds(mnt.pid)['/pfn']
    store = '/proc/%d/fd/%d' % (mnt.pid, fd)
    with View(path, 'shared') as a, View(path, 'readonly') as b, \
            View(store, 'readonly') as s:
        for page in range(8):
            off = page * PAGE
            ps = s.pfn(off)
            assert ps != 0
            assert a.pfn(off) == ps, 'page %d: view is not the store' % page
            assert b.pfn(off) == ps, 'page %d: view is not the store' % page
        # And the bytes agree, written from either side.
        a.write(0, PAGE, 2)
        assert s.verify(0, PAGE, 2).startswith('ok')


def test_sigkill_leaves_passthrough_views_and_fds_working(pt_mnt):
    mnt = pt_mnt
    path = mnt / 'k'
    write_file(path, pattern(0, 4 * PAGE, 1))
    os.mkdir(mnt / 'd')
    fd = os.open(path, os.O_RDWR)
    try:
        with View(path, 'shared') as view:
            mnt.kill()
            assert not mnt.alive()
            # Existing fd: reads and writes reach the section.
            assert util.pread_all(fd, 4 * PAGE, 0) == pattern(0, 4 * PAGE, 1)
            assert os.pwrite(fd, pattern(0, PAGE, 2), 0) == PAGE
            assert os.pread(fd, PAGE, 0) == pattern(0, PAGE, 2)
            # Existing view: sees the fd's write, and writes itself.
            assert view.verify(0, PAGE, 2).startswith('ok')
            assert view.verify(PAGE, 3 * PAGE, 1).startswith('ok')
            view.write(2 * PAGE, PAGE, 3)
            assert os.pread(fd, PAGE, 2 * PAGE) == pattern(2 * PAGE, PAGE, 3)
            # New opens cannot reach the dead daemon: ENOTCONN, or,
            # over io_uring, ECONNABORTED for one the kernel queued as
            # the dead daemon's rings were torn down.
            dead = ('ENOTCONN', 'ECONNABORTED')
            assert util.outcome(os.open, path, os.O_RDONLY) in dead
            assert util.outcome(os.open, mnt / 'new',
                                os.O_CREAT | os.O_WRONLY) in dead
            assert util.outcome(os.listdir, mnt / 'd') in dead
    finally:
        os.close(fd)
    res = mnt.umount()
    assert res.returncode == 0, 'fusermount3 -u: %s' % res.stderr
    assert not util.is_mounted(mnt.path)


def test_no_leak_over_10000_section_lifetimes(mnt):
    """10,000 times: create a section, write, close, open, read, close,
    unlink.  A leaked backing id pins its memfd in the kernel, a leaked fd
    stays in the daemon: so the daemon's fd count must come back to its
    baseline and the kernel's count of open files (/proc/sys/fs/file-nr)
    must not grow by anything like the number of sections (a margin is
    left for other processes on the machine).  Runs on both paths: the
    cached path must not leak fds either."""
    cycles = 10000

    def held():
        # libfuse's worker threads come and go with their splice pipes,
        # and a new one briefly opens /proc/sys/fs/pipe-max-size to size
        # its pipe; what a section could leak is anything else.
        return sorted(link for link in util.daemon_fds(mnt.pid).values()
                      if not link.startswith(('pipe:', '/proc/')))
    base_fds = held()
    base_files = util.file_nr()
    for i in range(cycles):
        path = mnt / ('c%d' % (i % 8))
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.write(fd, b'%d' % i)
        os.close(fd)
        fd = os.open(path, os.O_RDONLY)
        assert os.read(fd, 16) == b'%d' % i
        os.close(fd)
        os.unlink(path)
    assert os.listdir(mnt.path) == []

    assert util.wait_for(lambda: held() == base_fds), \
        'daemon fds: %s at start, now %s' % (base_fds, held())
    grown = util.wait_for(lambda: util.file_nr() - base_files < cycles // 2)
    assert grown, 'kernel open files grew by %d over %d sections' % (
        util.file_nr() - base_files, cycles)


# --------------------------------------------------------------------------
# An unprivileged daemon

_USER_DATA_CHECK = r'''
import mmap, os, sys
d = sys.argv[1]
data = os.urandom(3 << 20)
with open(d + '/u', 'wb') as f:
    f.write(data)
with open(d + '/u', 'rb') as f:
    assert f.read() == data, 'read back differs'
with open(d + '/u', 'r+b') as f:
    m = mmap.mmap(f.fileno(), 0)
    m[:5] = b'hello'
    m.close()
    f.truncate(1 << 20)
with open(d + '/u', 'rb') as f:
    got = f.read()
assert got == b'hello' + data[5:1 << 20], 'view write or truncate lost'
assert os.stat(d + '/u').st_uid == os.getuid()
os.mkdir(d + '/dir')
os.rename(d + '/u', d + '/dir/v')
os.unlink(d + '/dir/v')
os.rmdir(d + '/dir')
assert os.listdir(d) == []
print('data ok')
'''


@pytest.mark.other_user
def test_unprivileged_daemon_auto_uses_cached_path(dev_fuse_for_everyone,
                                                   mount_factory):
    m = mount_factory(datapath=None, options=['passthrough=auto'],
                      user=NOBODY)
    # The one line saying passthrough is off for this mount.
    assert util.wait_for(lambda: 'passthrough' in m.stderr, timeout=5), \
        'no line about passthrough: %r' % m.stderr
    res = subprocess.run(
        util.as_user_argv(NOBODY) + [util.PYTHON, '-I', '-c',
                                     _USER_DATA_CHECK, m.path],
        capture_output=True, text=True, cwd='/', timeout=util.PATIENCE)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == 'data ok'
    # Two processes' views of one section, as that user.
    write_cmd = subprocess.run(
        util.as_user_argv(NOBODY) + ['truncate', '-s', '64K', m / 'v'])
    assert write_cmd.returncode == 0
    with View(m / 'v', 'shared', user=NOBODY) as a, \
            View(m / 'v', 'shared', user=NOBODY) as b:
        a.write(10, 5 * PAGE, 4)
        assert b.verify(10, 5 * PAGE, 4).startswith('ok')
    # Root itself is kept out of a mount without allow_other.
    expect_errno(errno.EACCES, os.stat, m / 'v')


@pytest.mark.other_user
def test_unprivileged_daemon_refuses_passthrough_on(dev_fuse_for_everyone,
                                                    mount_factory):
    m = mount_factory(datapath=None, options=['passthrough=on'],
                      user=NOBODY, wait=False)
    rc = m.wait_exit()
    if rc is None:
        pytest.fail('daemon still running with passthrough=on as uid %d '
                    '(mounted: %s)' % (NOBODY, util.is_mounted(m.path)))
    m.expect_exit(rc)
    m.expect_stderr('passthrough')
    assert rc != 0
    assert 'passthrough' in m.stderr
    assert not util.is_mounted(m.path), 'left a mount behind'
