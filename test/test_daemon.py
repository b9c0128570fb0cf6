"""The daemon as a program: its command line (-h, -V, bad -o options,
umask/uid/gid), mounts that start empty, and what it holds: only memfds
named after their sections, never a disk file, none left once a section is
gone.
"""

import os
import re
import shutil
import signal
import stat
import subprocess

import pytest

import util
from util import PAGE, View, pattern, read_file, write_file


def config_version():
    """PACKAGE_VERSION from the build's config.h, or None."""
    try:
        with open(os.path.join(util.BUILD_DIR, 'config.h')) as f:
            m = re.search(r'#define PACKAGE_VERSION "([^"]+)"', f.read())
            return m.group(1) if m else None
    except OSError:
        return None


# --------------------------------------------------------------------------
# Command line


def test_help():
    res = util.run_daemon(['-h'])
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert 'usage' in out.lower()
    # Our own options are documented beside libfuse's.
    for opt in ('passthrough=', 'size=', 'lifetime=', 'commit=',
                'writeback_cache'):
        assert opt in out, '%s missing from -h' % opt


def test_version():
    res = util.run_daemon(['-V'])
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert 'sectionfs' in out
    version = config_version()
    if version is not None:
        assert version in out


BAD_OPTIONS = [
    ('size=abc', 'size'),
    ('size=12q', 'size'),
    ('passthrough=maybe', 'passthrough'),
    ('nonsense', 'nonsense'),
    ('lifetime=forever', 'lifetime'),
    ('commit=sometimes', 'commit'),
    ('umask=abc', 'umask'),
    ('mode=19', 'mode'),
    ('mode=10000', 'mode'),
    ('mode=1777,umask=022', 'mode'),
    ('uid=abc', 'uid'),
    ('writeback_cache,size=1m', 'writeback_cache'),
    ('writeback_cache,usrquota_block_hardlimit=1m', 'writeback_cache'),
    ('writeback_cache,grpquota_block_hardlimit=1m', 'writeback_cache'),
    ('writeback_cache,passthrough=on', 'writeback_cache'),
    ('subtype=foo', 'subtype'),
    ('max_threads=257', 'max_threads'),
    ('max_idle_threads=0', 'max_idle_threads'),
]


@pytest.mark.parametrize('option,name', BAD_OPTIONS,
                         ids=[o for o, _ in BAD_OPTIONS])
def test_bad_option_refused_before_mounting(mount_factory, option, name):
    m = mount_factory(datapath=None, options=[option], wait=False)
    ended = util.wait_for(lambda: not m.alive() or util.is_mounted(m.path))
    assert ended, 'daemon neither exited nor mounted'
    assert not util.is_mounted(m.path), \
        'daemon mounted despite -o %s' % option
    rc = m.wait_exit()
    m.expect_exit(rc)          # judged here, not by the teardown
    m.expect_stderr('.')       # the message is the point of this test
    assert rc not in (0, None)
    lines = [ln for ln in m.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, 'expected one line, got %r' % lines
    assert name in lines[0]


def test_subtype_sectionfs_accepted(mount_factory):
    """mount.fuse3 passes subtype=sectionfs: the mount's type stays
    fuse.sectionfs, which sectionctl goes by."""
    m = mount_factory('cached', options=['subtype=sectionfs'])
    assert util.fstype_of(m.path) == 'fuse.sectionfs'
    res = subprocess.run([util.SECTIONCTL, 'ls', m.path],
                         capture_output=True, text=True,
                         timeout=util.PATIENCE)
    assert res.returncode == 0, res.stderr


@pytest.mark.root
def test_root_dir_mode_and_owner(mount_factory):
    m = mount_factory('cached')
    st = os.stat(m.path)
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    m = mount_factory('cached', options=['umask=027', 'uid=1234',
                                         'gid=5678'])
    st = os.stat(m.path)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o750
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    m = mount_factory('cached', options=['umask=0'])
    assert stat.S_IMODE(os.stat(m.path).st_mode) == 0o777
    m = mount_factory('cached', options=['mode=1777'])
    assert stat.S_IMODE(os.stat(m.path).st_mode) == 0o1777


@pytest.mark.root
@pytest.mark.other_user
def test_sticky_root_keeps_users_names(mount_factory, datapath):
    """mode=1777 makes a root like /dev/shm's: anyone may create there,
    and only a name's owner (or root) may remove it."""
    m = mount_factory(datapath, options=['allow_other', 'mode=1777'])
    mine = os.path.join(m.path, 'mine')
    assert util.user_op('create', mine) == 'ok'
    assert util.user_op('unlink', mine, uid=util.NOBODY - 1) == 'EPERM'
    assert os.path.exists(mine)
    assert util.user_op('unlink', mine) == 'ok'


def test_fstype(mnt):
    assert util.fstype_of(mnt.path) == 'fuse.sectionfs'


# --------------------------------------------------------------------------
# Lifetime of a mount


def test_remount_starts_empty(mount_factory, datapath, base_dir):
    where = os.path.join(base_dir, 'again')
    first = mount_factory(datapath, mountpoint=where)
    write_file(first / 'a', os.urandom(100000))
    os.makedirs(first / 'd/e')
    write_file(first / 'd/e/f', b'x')
    res = first.umount()
    assert res.returncode == 0, res.stderr
    assert first.wait_exit() == 0
    assert not util.is_mounted(where)
    second = mount_factory(datapath, mountpoint=where)
    assert os.listdir(second.path) == []


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT],
                         ids=['SIGTERM', 'SIGINT'])
def test_signal_unmounts_and_exits_0(mount_factory, datapath, sig):
    m = mount_factory(datapath)
    write_file(m / 'a', os.urandom(10000))
    fd = os.open(m / 'a', os.O_RDONLY)
    os.close(fd)
    os.kill(m.pid, sig)
    rc = m.wait_exit()
    m.expect_exit(rc)          # judged here, not again by the teardown
    assert not util.is_mounted(m.path)
    assert rc == 0, 'daemon exited with status %s after %s' % (rc, sig.name)


def daemon_pids_for(mountpoint):
    """PIDs of sectionfs daemons (our binary) serving mountpoint."""
    exe = os.path.realpath(util.DAEMON)
    pids = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            if os.path.realpath('/proc/%s/exe' % name) != exe:
                continue
            with open('/proc/%s/cmdline' % name, 'rb') as f:
                args = f.read().split(b'\0')
        except OSError:
            continue
        if os.fsencode(mountpoint) in args:
            pids.append(int(name))
    return pids


@pytest.mark.root
def test_mount_command_and_umount(base_dir, datapath):
    """mount(8) through mount.fuse3, as `mount -t fuse.sectionfs none DIR`
    does once sectionfs is installed: the daemon is started as
    `sectionfs none DIR -o OPTIONS` and daemonizes; plain umount(8) ends
    it.  (The installed form needs sectionfs on the PATH mount.fuse3 uses,
    so the test names the binary the equivalent way, `-t fuse PATH#none`.)"""
    if not (shutil.which('mount.fuse3') or os.path.exists('/sbin/mount.fuse3')):
        pytest.skip('mount.fuse3 not installed (Debian package fuse3)')
    where = os.path.join(base_dir, 'viamount')
    os.mkdir(where)
    res = subprocess.run(['mount', '-t', 'fuse', util.daemon_binary() + '#none',
                          where, '-o', util.DATAPATHS[datapath]],
                         capture_output=True, text=True, timeout=util.PATIENCE)
    pids = []
    try:
        assert res.returncode == 0, 'mount: %s' % res.stderr
        assert util.fstype_of(where) == 'fuse.sectionfs'
        pids = daemon_pids_for(where)
        assert len(pids) == 1, pids
        data = os.urandom(100000)
        write_file(os.path.join(where, 'a'), data)
        assert read_file(os.path.join(where, 'a')) == data
        res = subprocess.run(['umount', where], capture_output=True,
                             text=True)
        assert res.returncode == 0, 'umount: %s' % res.stderr
        assert not util.is_mounted(where)
        assert util.wait_for(lambda: not os.path.exists('/proc/%d' % pids[0])),\
            'daemon %d still running after umount' % pids[0]
    finally:
        if util.is_mounted(where):
            if subprocess.run(['fusermount3', '-u', where]).returncode:
                subprocess.run(['fusermount3', '-u', '-z', where])
        for pid in pids:
            util.wait_for(lambda: not os.path.exists('/proc/%d' % pid))


# --------------------------------------------------------------------------
# What the daemon holds


SPECIAL = re.compile(r'^(pipe|socket|anon_inode):')


@pytest.mark.root
def test_daemon_holds_no_disk_file(mnt):
    os.makedirs(mnt / 'd/e')
    for name in ('a', 'd/b', 'd/e/c'):
        write_file(mnt / name, os.urandom(3 * PAGE + 1))
    held = os.open(mnt / 'a', os.O_RDWR)
    try:
        with View(mnt / 'd/b', 'shared'):
            fds = util.daemon_fds(mnt.pid)
            shm_dev = util.memfd_dev()
            memfds = 0
            for fd, link in sorted(fds.items()):
                proc_path = '/proc/%d/fd/%d' % (mnt.pid, fd)
                if SPECIAL.match(link):
                    continue
                if link == '/dev/null':
                    assert stat.S_ISCHR(os.stat(proc_path).st_mode)
                    continue
                if link == '/dev/fuse':
                    assert os.stat(proc_path).st_rdev == \
                        os.stat('/dev/fuse').st_rdev
                    continue
                assert link.startswith('/memfd:'), \
                    'daemon holds fd %d -> %s' % (fd, link)
                assert os.stat(proc_path).st_dev == shm_dev, \
                    'fd %d (%s) is not on the memfd filesystem' % (fd, link)
                memfds += 1
            assert memfds >= 3, fds
    finally:
        os.close(held)


@pytest.mark.root
def test_memfd_named_after_section(mnt):
    os.makedirs(mnt / 'dir/sub')
    names = ['/a', '/dir/b', '/dir/sub/c', '/with space']
    for name in names:
        write_file(mnt.path + name, name.encode())
    subprocess.run(['cp', mnt / 'a', mnt / 'dir/copied'], check=True)
    names.append('/dir/copied')
    links = set(util.daemon_fds(mnt.pid).values())
    for name in names:
        assert util.memfd_link(name) in links, \
            '%s not among %s' % (util.memfd_link(name), sorted(links))


@pytest.mark.root
def test_store_holds_written_bytes(mnt):
    """What was written (write() and a shared view), once synced, is in
    the section's memfd itself."""
    path = mnt / 'st'
    data = os.urandom(5 * PAGE)
    write_file(path, data)
    with View(path, 'shared') as v:
        v.write(PAGE, PAGE, 9)
        v.msync()
    expect = data[:PAGE] + pattern(PAGE, PAGE, 9) + data[2 * PAGE:]
    [fd] = util.daemon_memfds(mnt.pid)['/st']
    assert read_file('/proc/%d/fd/%d' % (mnt.pid, fd)) == expect


def section_gone(mnt, name):
    return lambda: name not in util.daemon_memfds(mnt.pid)


@pytest.mark.root
def test_section_freed_when_name_handle_and_view_go(mnt):
    """lifetime=name (the default): a section lives until it is unlinked
    and its last handle and view are gone, then its memfd is closed."""
    write_file(mnt / 'closed', b'x' * 10000)
    assert '/closed' in util.daemon_memfds(mnt.pid)
    os.unlink(mnt / 'closed')
    assert util.wait_for(section_gone(mnt, '/closed')), \
        'memfd of an unlinked, closed section still held'

    write_file(mnt / 'open', b'y' * 10000)
    fd = os.open(mnt / 'open', os.O_RDONLY)
    try:
        os.unlink(mnt / 'open')
        assert '/open' in util.daemon_memfds(mnt.pid)
        assert os.pread(fd, 5, 0) == b'yyyyy'
    finally:
        os.close(fd)
    assert util.wait_for(section_gone(mnt, '/open'))

    write_file(mnt / 'mapped', pattern(0, 2 * PAGE, 1))
    with View(mnt / 'mapped', 'shared') as v:
        os.unlink(mnt / 'mapped')
        assert '/mapped' in util.daemon_memfds(mnt.pid)
        assert v.verify(0, 2 * PAGE, 1).startswith('ok')
    assert util.wait_for(section_gone(mnt, '/mapped'))

    # A section replaced by rename goes too.
    write_file(mnt / 'victim', b'old')
    write_file(mnt / 'winner', b'new')
    os.rename(mnt / 'winner', mnt / 'victim')
    assert util.wait_for(section_gone(mnt, '/victim'))
    assert read_file(mnt / 'victim') == b'new'
    assert '/winner' in util.daemon_memfds(mnt.pid)
