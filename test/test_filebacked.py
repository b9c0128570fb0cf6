"""File-backed sections: symlink(TARGET, MOUNT/name) binds a section to a
real file, as README ("File-backed sections") and sectionfs(8) state it.

Every data test runs on both data paths through the mnt fixture.  The
errno table for symlink targets is held by test_bad_target_* (one test per
row), each checking that nothing is left behind and the daemon still
serves.
"""

import errno
import fcntl
import filecmp
import mmap
import os
import signal
import stat
import subprocess
import time

import pytest

import util
from util import BACKING, KIND, XATTR_PREFIX

# Every test here makes file-backed sections.
pytestmark = pytest.mark.file_backed

PAGE = util.PAGE

#: How long the kernel may keep a file-backed section's size after the
#: backing file changed outside the mount (README, "File-backed
#: sections"): the attribute timeout.
COHERENCE_BOUND = 1.0


@pytest.fixture
def backing(base_dir):
    """Factory for backing files outside the mount."""
    def make(name='backing', data=b'backing data\n', mode=0o644):
        path = os.path.join(base_dir, name)
        with open(path, 'wb') as f:
            f.write(data)
        os.chmod(path, mode)
        return path
    return make


def still_serving(mnt):
    """The daemon answers a create and a read after refusing something."""
    util.write_file(mnt / 'probe', b'alive')
    assert util.read_file(mnt / 'probe') == b'alive'
    os.unlink(mnt / 'probe')


def user_symlink(target, path, uid=util.NOBODY):
    """symlink(target, path) as uid; 'ok' or the errno name."""
    code = ('import errno, os, sys\n'
            'try:\n'
            '    os.symlink(sys.argv[1], sys.argv[2]); print("ok")\n'
            'except OSError as e:\n'
            '    print(errno.errorcode[e.errno])\n')
    res = subprocess.run(util.as_user_argv(uid) + [util.PYTHON, '-I', '-c',
                                                   code, target, path],
                         capture_output=True, text=True, cwd='/',
                         timeout=util.PATIENCE)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


# --------------------------------------------------------------------------
# What a file-backed section is

def test_symlink_creates_regular_file(mnt, backing):
    data = os.urandom(3 * PAGE + 100)
    target = backing(data=data)
    os.symlink(target, mnt / 's')
    # Right away, in the same process: the kernel must already see a file.
    st = os.lstat(mnt / 's')
    assert stat.S_ISREG(st.st_mode), oct(st.st_mode)
    assert st.st_size == len(data)
    assert util.read_file(mnt / 's') == data
    assert os.listdir(mnt.path) == ['s']
    with pytest.raises(OSError) as e:
        os.readlink(mnt / 's')
    assert e.value.errno == errno.EINVAL


def test_mode_and_owner_of_new_section(mnt, backing):
    os.symlink(backing(mode=0o666), mnt / 's')
    st = os.stat(mnt / 's')
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())


def test_kind_and_backing_xattrs(mnt, backing):
    target = backing()
    os.symlink(target, mnt / 'file')
    util.write_file(mnt / 'page', b'x')
    assert os.getxattr(mnt / 'file', KIND) == b'file'
    assert os.getxattr(mnt / 'file', BACKING) == \
        os.path.realpath(target).encode()
    assert set(os.listxattr(mnt / 'file')) >= {KIND, BACKING}
    assert os.getxattr(mnt / 'page', KIND) == b'pagefile'
    assert BACKING not in os.listxattr(mnt / 'page')
    with pytest.raises(OSError) as e:
        os.getxattr(mnt / 'page', BACKING)
    assert e.value.errno == errno.ENODATA


def test_xattr_refusals(mnt, backing):
    os.symlink(backing(), mnt / 'file')
    for name, value, err in [
            (KIND, b'pagefile', errno.EPERM),
            (BACKING, b'/etc/passwd', errno.EPERM),
            (XATTR_PREFIX + 'nonsense', b'1', errno.ENODATA),
            ('user.other', b'1', errno.EOPNOTSUPP)]:
        with pytest.raises(OSError) as e:
            os.setxattr(mnt / 'file', name, value)
        assert e.value.errno == err, name
    with pytest.raises(OSError) as e:
        os.getxattr(mnt / 'file', XATTR_PREFIX + 'nonsense')
    assert e.value.errno == errno.ENODATA
    with pytest.raises(OSError) as e:
        os.removexattr(mnt / 'file', KIND)
    assert e.value.errno == errno.EPERM
    assert os.getxattr(mnt / 'file', KIND) == b'file'


def test_symlink_over_existing_name_is_eexist(mnt, backing):
    util.write_file(mnt / 'taken', b'page data')
    with pytest.raises(FileExistsError):
        os.symlink(backing(), mnt / 'taken')
    assert util.read_file(mnt / 'taken') == b'page data'


# --------------------------------------------------------------------------
# Data reaches the backing file, and only what should

def test_writes_land_in_backing_file_after_unmount(mount_factory, datapath,
                                                   backing):
    m = mount_factory(datapath)
    target = backing(data=bytes(4 * PAGE))
    os.symlink(target, m / 's')
    fd = os.open(m / 's', os.O_RDWR)
    os.pwrite(fd, b'written by write()', PAGE)
    os.close(fd)
    with util.View(m / 's', 'shared') as v:
        v.write(2 * PAGE, PAGE, seed=7)
        v.msync()
    res = m.umount()
    assert res.returncode == 0, res.stderr
    assert m.wait_exit() == 0
    with open(target, 'rb') as f:
        data = f.read()
    assert data[PAGE:PAGE + 18] == b'written by write()'
    assert data[2 * PAGE:3 * PAGE] == util.pattern(2 * PAGE, PAGE, 7)
    assert data[:PAGE] == bytes(PAGE)


def test_private_view_never_reaches_backing(mnt, backing):
    original = os.urandom(2 * PAGE)
    target = backing(data=original)
    os.symlink(target, mnt / 's')
    with util.View(mnt / 's', 'private') as v:
        v.write(0, PAGE, seed=3)
        assert v.verify(0, PAGE, 3).startswith('ok')
    assert util.read_file(mnt / 's') == original
    assert util.read_file(target) == original


def test_fsync_and_msync_reach_backing_file(mnt, backing):
    target = backing(data=bytes(2 * PAGE))
    os.symlink(target, mnt / 's')
    fd = os.open(mnt / 's', os.O_RDWR)
    os.pwrite(fd, b'synced', 0)
    os.fsync(fd)
    os.fdatasync(fd)
    os.close(fd)
    assert util.read_file(target)[:6] == b'synced'
    with util.View(mnt / 's', 'shared') as v:
        v.write(PAGE, PAGE, seed=11)
        v.msync()
        assert util.read_file(target)[PAGE:] == util.pattern(PAGE, PAGE, 11)


def test_truncate_and_fallocate_act_on_backing(mnt, backing):
    target = backing(data=b'x' * 100)
    os.symlink(target, mnt / 's')
    os.truncate(mnt / 's', 10)
    assert os.stat(target).st_size == 10
    os.truncate(mnt / 's', 5 * PAGE)
    assert os.stat(target).st_size == 5 * PAGE
    assert util.read_file(target) == b'x' * 10 + bytes(5 * PAGE - 10)
    fd = os.open(mnt / 's', os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, 8 * PAGE)
    finally:
        os.close(fd)
    assert os.stat(target).st_size == 8 * PAGE
    assert os.stat(mnt / 's').st_size == 8 * PAGE


def test_unlink_and_rename_touch_only_the_name(mnt, backing):
    data = b'keep me\n'
    target = backing(data=data)
    os.symlink(target, mnt / 'a')
    os.rename(mnt / 'a', mnt / 'b')
    assert os.getxattr(mnt / 'b', BACKING) == \
        os.path.realpath(target).encode()
    assert util.read_file(target) == data
    os.unlink(mnt / 'b')
    assert util.read_file(target) == data
    assert os.listdir(mnt.path) == []


def test_open_section_survives_unlink(mnt, backing):
    target = backing(data=b'0123456789')
    os.symlink(target, mnt / 's')
    fd = os.open(mnt / 's', os.O_RDWR)
    try:
        os.unlink(mnt / 's')
        os.pwrite(fd, b'AB', 0)
        assert os.pread(fd, 10, 0) == b'AB23456789'
    finally:
        os.close(fd)
    assert util.read_file(target) == b'AB23456789'


def test_cp_100mib_out_is_identical(mnt, backing, base_dir):
    target = os.path.join(base_dir, 'big')
    with open(target, 'wb') as f:
        for _ in range(100):
            f.write(os.urandom(util.MiB))
    os.symlink(target, mnt / 'big')
    out = os.path.join(base_dir, 'copy')
    subprocess.run(['cp', mnt / 'big', out], check=True)
    assert filecmp.cmp(target, out, shallow=False)


def test_direct_writes_to_backing_become_visible(mnt, backing):
    """Reads go to the backing file on both paths (passthrough shares its
    pages; the cached path reads it with direct I/O), so a change made
    outside the mount is read at once, a same-size one included (before
    Linux 6.6, within COHERENCE_BOUND on the cached path).  Sizes are
    attributes: the kernel may keep them for COHERENCE_BOUND."""
    at_once = not util.cached_dio_skip_reason(mnt)
    target = backing(data=b'AAAA')
    os.symlink(target, mnt / 's')
    fd = os.open(mnt / 's', os.O_RDONLY)
    try:
        assert os.pread(fd, 100, 0) == b'AAAA'
        with open(target, 'r+b') as f:
            f.write(b'ZZZZ')
        if at_once:
            assert os.pread(fd, 100, 0) == b'ZZZZ'
        with open(target, 'r+b') as f:
            f.write(b'BBBBCCCC')
        if at_once:
            assert os.pread(fd, 100, 0) == b'BBBBCCCC'
        time.sleep(COHERENCE_BOUND + 0.2)
        assert os.pread(fd, 100, 0) == b'BBBBCCCC'
        assert os.fstat(fd).st_size == 8
        assert os.stat(mnt / 's').st_size == 8
    finally:
        os.close(fd)


def test_append_lands_after_outside_appends(mnt, backing):
    """O_APPEND through a section writes at the backing file's end as it
    is then, after what another writer appended outside the mount, as
    O_APPEND on the file itself would; nothing is overwritten."""
    reason = util.cached_dio_skip_reason(mnt)
    if reason:
        pytest.skip(reason)
    target = backing(data=b'line1\n')
    os.symlink(target, mnt / 'log')
    fd = os.open(mnt / 'log', os.O_WRONLY | os.O_APPEND)
    try:
        assert os.write(fd, b'sec1\n') == 5
        with open(target, 'ab') as f:
            f.write(b'outside\n')
        assert os.write(fd, b'sec2\n') == 5
    finally:
        os.close(fd)
    want = b'line1\nsec1\noutside\nsec2\n'
    assert util.read_file(target) == want
    assert util.read_file(mnt / 'log') == want


def test_new_view_sees_backing_changes(mnt, backing):
    """A shared view made after the backing file changed shows the change;
    what a view writes is read back through the mount, and what is written
    through the mount shows in a view, at once."""
    if util.cached_dio_skip_reason(mnt):
        pytest.skip(util.cached_dio_skip_reason(mnt))
    target = backing(data=b'A' * PAGE)
    os.symlink(target, mnt / 's')
    fd = os.open(mnt / 's', os.O_RDWR)
    try:
        with mmap.mmap(fd, PAGE) as view:
            assert view[:4] == b'AAAA'
        with open(target, 'r+b') as f:
            f.write(b'BBBB')
        with mmap.mmap(fd, PAGE) as view:
            assert view[:4] == b'BBBB'
            view[:4] = b'CCCC'
            view.flush()
            assert os.pread(fd, 4, 0) == b'CCCC'
            os.pwrite(fd, b'DDDD', 0)
            assert view[:4] == b'DDDD'
    finally:
        os.close(fd)
    with open(target, 'rb') as f:
        assert f.read(4) == b'DDDD'


#: Reads one page of a file through a shared view, over and over, until
#: killed: each read faults the page back in whenever it was dropped.
_VIEW_READER = r'''
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
view = mmap.mmap(fd, mmap.PAGESIZE, prot=mmap.PROT_READ)
print('ready', flush=True)
while True:
    view[:8]
'''


def test_view_shows_each_write_at_once(mnt, backing):
    """While another process keeps faulting a page in through its own
    view, each pwrite(2) to that page shows in this process's view as
    soon as it returns.  (On the cached path the kernel drops the range
    before it sends a direct write, and the daemon drops it again once the
    write is done, in case a view faulted the old bytes in meanwhile: a
    narrow race that this test seldom meets.)"""
    target = backing(data=bytes(PAGE))
    os.symlink(target, mnt / 's')
    reader = subprocess.Popen([util.PYTHON, '-I', '-c', _VIEW_READER,
                               mnt / 's'], stdout=subprocess.PIPE, cwd='/')
    fd = os.open(mnt / 's', os.O_RDWR)
    try:
        assert reader.stdout.readline() == b'ready\n'
        with mmap.mmap(fd, PAGE) as view:
            for i in range(1, 3001):
                os.pwrite(fd, i.to_bytes(8, 'little'), 0)
                assert int.from_bytes(view[:8], 'little') == i
    finally:
        os.close(fd)
        reader.kill()
        reader.wait()


# --------------------------------------------------------------------------
# The errno table for symlink targets: one row each, nothing left behind

def refused(mnt, target, err, name='s'):
    before = sorted(os.listdir(mnt.path))
    with pytest.raises(OSError) as e:
        os.symlink(target, mnt / name)
    assert e.value.errno == err, (target, os.strerror(e.value.errno))
    assert sorted(os.listdir(mnt.path)) == before
    still_serving(mnt)


def test_relative_target_binds_no_section(mnt, backing):
    # A relative target makes an ordinary symlink (test_symlinks.py).
    backing()
    for target in ['backing', './backing']:
        os.symlink(target, mnt / 's')
        assert os.readlink(mnt / 's') == target
        with pytest.raises(OSError) as e:
            os.getxattr(mnt / 's', 'user.sectionfs.kind',
                        follow_symlinks=False)
        assert e.value.errno == errno.ENODATA
        os.unlink(mnt / 's')


def test_bad_target_empty_is_refused(mnt):
    # The kernel refuses an empty symlink target (ENOENT) before any
    # filesystem sees it; sectionfs itself answers EINVAL (unit-level
    # rule in src/backing.c) but cannot be reached with "".
    refused(mnt, '', errno.ENOENT)


def test_bad_target_not_regular_is_einval(mnt, base_dir):
    fifo = os.path.join(base_dir, 'fifo')
    os.mkfifo(fifo)
    refused(mnt, base_dir, errno.EINVAL)     # a directory
    refused(mnt, fifo, errno.EINVAL)         # and opening it must not hang
    refused(mnt, '/dev/null', errno.EINVAL)  # a device
    refused(mnt, '/', errno.EINVAL)


#: Kernel filesystems mounted under /sys, beside sysfs itself, by the
#: name `stat -f` gives their type.
KERNEL_FS = ('cgroupfs', 'cgroup2fs', 'tracefs', 'debugfs', 'securityfs',
             'bpf_fs', 'efivarfs', 'pstorefs')


def kernel_fs_files():
    """A few regular files on kernel filesystems under /sys/fs and
    /sys/kernel, one per filesystem type found."""
    found = {}
    for top in ('/sys/fs', '/sys/kernel'):
        for root, dirs, files in os.walk(top):
            if root.count('/') > 5:
                dirs[:] = []
            for name in files:
                path = os.path.join(root, name)
                res = subprocess.run(['stat', '-f', '-c', '%T', path],
                                     capture_output=True, text=True)
                kind = res.stdout.strip()
                if kind in KERNEL_FS and kind not in found and \
                        os.path.isfile(path) and os.access(path, os.R_OK):
                    found[kind] = path
                break           # one file per directory is enough
    return sorted(found.values())


def test_bad_target_kernel_fs_is_einval(mnt):
    """Files of the kernel's filesystems under /sys (cgroup, tracefs, ...)
    are refused as /sys itself is: they describe the daemon."""
    files = kernel_fs_files()
    if not files:
        pytest.skip('no readable file on a kernel filesystem under /sys')
    for path in files:
        refused(mnt, path, errno.EINVAL)


def test_leased_target_is_refused_at_once(mnt, backing):
    """A file whose owner holds a lease and does not release it: the
    symlink fails with EWOULDBLOCK (the lease break is started) rather
    than wait for the lease break time while the kernel holds the
    directory, and nothing is made."""
    target = backing()
    old = signal.signal(signal.SIGIO, signal.SIG_IGN)
    fd = os.open(target, os.O_RDONLY)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        refused(mnt, target, errno.EWOULDBLOCK)
    finally:
        os.close(fd)
        signal.signal(signal.SIGIO, old)
    os.symlink(target, mnt / 'after')
    assert util.read_file(mnt / 'after') == b'backing data\n'


def test_bad_target_missing_is_enoent(mnt, base_dir):
    refused(mnt, os.path.join(base_dir, 'no-such-file'), errno.ENOENT)
    refused(mnt, os.path.join(base_dir, 'no-dir', 'file'), errno.ENOENT)


def test_bad_target_inside_mount_is_eloop(mnt, base_dir):
    util.write_file(mnt / 'inside', b'x')
    refused(mnt, mnt / 'inside', errno.ELOOP, name='direct')
    refused(mnt, mnt.path, errno.ELOOP, name='root')
    # Through a symlink outside the mount that points in.
    hop = os.path.join(base_dir, 'hop')
    os.symlink(mnt.path, hop)
    refused(mnt, os.path.join(hop, 'inside'), errno.ELOOP, name='via_link')
    # Through .. out of and back into the mount's parent.
    back = os.path.join(os.path.dirname(mnt.path), '.',
                        os.path.basename(mnt.path), 'inside')
    refused(mnt, back, errno.ELOOP, name='via_dots')


@pytest.mark.root
def test_bad_target_through_bind_mount_is_eloop(mnt, base_dir):
    util.write_file(mnt / 'inside', b'x')
    bind = os.path.join(base_dir, 'bind')
    os.mkdir(bind)
    subprocess.run(['mount', '--bind', mnt.path, bind], check=True)
    try:
        refused(mnt, os.path.join(bind, 'inside'), errno.ELOOP)
    finally:
        subprocess.run(['umount', bind], check=True)


def test_bad_target_symlink_loop_is_eloop(mnt, base_dir):
    a = os.path.join(base_dir, 'loop_a')
    b = os.path.join(base_dir, 'loop_b')
    os.symlink(b, a)
    os.symlink(a, b)
    refused(mnt, a, errno.ELOOP)


def test_target_through_outside_symlink_is_followed(mnt, backing, base_dir):
    target = backing(data=b'via a link')
    link = os.path.join(base_dir, 'link')
    os.symlink('backing', link)           # relative, resolved where it is
    os.symlink(link, mnt / 's')
    assert util.read_file(mnt / 's') == b'via a link'
    assert os.getxattr(mnt / 's', BACKING) == \
        os.path.realpath(target).encode()


# --------------------------------------------------------------------------
# The caller's rights are the limit (a security boundary)

@pytest.mark.root
@pytest.mark.other_user
def test_unreadable_target_is_eacces(shared_mnt, backing):
    secret = backing('secret', b'root only', mode=0o600)
    assert user_symlink(secret, shared_mnt / 'pub/s') == 'EACCES'
    assert os.listdir(shared_mnt / 'pub') == []
    still_serving(shared_mnt)


@pytest.mark.root
@pytest.mark.other_user
def test_unsearchable_directory_is_eacces(shared_mnt, base_dir):
    closed = os.path.join(base_dir, 'closed')
    os.mkdir(closed, 0o700)
    with open(os.path.join(closed, 'f'), 'wb') as f:
        f.write(b'x')
    os.chmod(os.path.join(closed, 'f'), 0o644)
    assert user_symlink(os.path.join(closed, 'f'),
                        shared_mnt / 'pub/s') == 'EACCES'
    assert os.listdir(shared_mnt / 'pub') == []


@pytest.mark.root
@pytest.mark.other_user
def test_readable_only_target_gives_read_only_section(shared_mnt, backing):
    data = b'read only for you\n'
    target = backing('ro', data, mode=0o644)
    assert user_symlink(target, shared_mnt / 'pub/s') == 'ok'
    st = os.stat(shared_mnt / 'pub/s')
    assert st.st_uid == util.NOBODY
    assert stat.S_IMODE(st.st_mode) & 0o222 == 0
    assert util.user_op('read', shared_mnt / 'pub/s') == 'ok'
    assert util.user_op('write', shared_mnt / 'pub/s') == 'EACCES'
    assert util.user_op('truncate', shared_mnt / 'pub/s') == 'EACCES'
    # Not even root gets write access through a read-only section: the
    # daemon would write with its own rights, not the creator's.
    with pytest.raises(PermissionError):
        os.open(shared_mnt / 'pub/s', os.O_RDWR)
    assert util.read_file(target) == data


@pytest.mark.root
@pytest.mark.other_user
def test_writable_target_gives_writable_section(shared_mnt, backing):
    target = backing('rw', b'old', mode=0o666)
    assert user_symlink(target, shared_mnt / 'pub/s') == 'ok'
    assert stat.S_IMODE(os.stat(shared_mnt / 'pub/s').st_mode) == 0o600
    assert util.user_op('write', shared_mnt / 'pub/s') == 'ok'
    assert util.read_file(target)[:1] == b'x'


@pytest.mark.root
@pytest.mark.other_user
def test_other_users_section_is_theirs_alone(shared_mnt, backing):
    """Root's section of a root-only file is not reachable by others."""
    secret = backing('secret', b'root only', mode=0o600)
    os.symlink(secret, shared_mnt / 'pub/mine')
    assert util.user_op('read', shared_mnt / 'pub/mine') == 'EACCES'
    assert util.user_op('write', shared_mnt / 'pub/mine') == 'EACCES'
