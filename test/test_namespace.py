"""The namespace works as on tmpfs: create, open, mkdir, rmdir, readdir,
rename (plain, replacing, RENAME_NOREPLACE, RENAME_EXCHANGE), link, chmod,
chown, utimensat, st_nlink and timestamps of directories, the errno of each
mistake, and the mode bits held against another user.

Every test runs on both data paths (the namespace does not depend on the
data path, but a mount is a mount).
"""

import errno
import os
import stat
import subprocess
import time

import pytest

import util
from util import expect_errno, read_file, write_file



def tick(st):
    """Wait until the wall clock is past st's ctime, so a later change
    cannot carry the same timestamp (a deadline, not a timing check)."""
    util.wait_for(lambda: time.time_ns() > st.st_ctime_ns + 10**7)


# --------------------------------------------------------------------------
# Files and directories


def test_create_open_read_write(mnt):
    path = mnt / 'f'
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o640)
    try:
        st = os.fstat(fd)
        assert stat.S_ISREG(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o640 & ~_umask()
        assert st.st_size == 0
        assert st.st_nlink == 1
        assert st.st_uid == os.geteuid()
        assert st.st_gid == os.getegid()
        os.write(fd, b'hello')
    finally:
        os.close(fd)
    assert read_file(path) == b'hello'
    assert os.stat(path).st_ino == st.st_ino
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b'hello'
        expect_errno(errno.EBADF, os.write, fd, b'x')
    finally:
        os.close(fd)
    expect_errno(errno.EEXIST, os.open, path,
                 os.O_CREAT | os.O_EXCL | os.O_WRONLY)


def _umask():
    old = os.umask(0)
    os.umask(old)
    return old


def test_mkdir_rmdir(mnt):
    d = mnt / 'd'
    os.mkdir(d, 0o750)
    st = os.stat(d)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o750 & ~_umask()
    assert st.st_nlink == 2
    os.makedirs(mnt / 'd/e/f/g')
    write_file(mnt / 'd/e/f/g/file', b'deep')
    assert read_file(mnt / 'd/e/f/g/file') == b'deep'
    expect_errno(errno.ENOTEMPTY, os.rmdir, mnt / 'd/e/f/g')
    os.unlink(mnt / 'd/e/f/g/file')
    os.removedirs(mnt / 'd/e/f/g')
    assert not os.path.exists(d)
    assert os.listdir(mnt.path) == []


def test_directory_nlink(mnt):
    root_links = os.stat(mnt.path).st_nlink
    assert root_links == 2
    os.mkdir(mnt / 'top')
    assert os.stat(mnt.path).st_nlink == 3
    for i in range(5):
        os.mkdir(mnt / ('top/sub%d' % i))
    write_file(mnt / 'top/file', b'')
    assert os.stat(mnt / 'top').st_nlink == 2 + 5
    os.rmdir(mnt / 'top/sub0')
    assert os.stat(mnt / 'top').st_nlink == 2 + 4
    os.rename(mnt / 'top/sub1', mnt / 'moved')
    assert os.stat(mnt / 'top').st_nlink == 2 + 3
    assert os.stat(mnt.path).st_nlink == 2 + 2


def test_readdir_names_and_types(mnt):
    os.mkdir(mnt / 'dir')
    write_file(mnt / 'file', b'x')
    os.mkdir(mnt / 'dir/inner')
    write_file(mnt / 'dir/a', b'')
    entries = {e.name: e for e in os.scandir(mnt.path)}
    assert set(entries) == {'dir', 'file'}
    assert entries['dir'].is_dir(follow_symlinks=False)
    assert entries['file'].is_file(follow_symlinks=False)
    assert entries['file'].inode() == os.stat(mnt / 'file').st_ino
    assert entries['dir'].inode() == os.stat(mnt / 'dir').st_ino
    assert sorted(os.listdir(mnt / 'dir')) == ['a', 'inner']
    # '.' and '..' are there for readdir(3) users.
    res = subprocess.run(['ls', '-a', mnt / 'dir'], capture_output=True,
                              text=True, check=True)
    assert res.stdout.split() == ['.', '..', 'a', 'inner']


def test_readdir_many_entries(mnt):
    """2000 entries, every tenth a directory: all listed, once, with the
    right type (from d_type, however the kernel asks: readdir or
    readdirplus)."""
    names = {}
    for i in range(2000):
        name = 'entry-%04d-%s' % (i, 'x' * (i % 50))
        if i % 10 == 0:
            os.mkdir(mnt / name)
        else:
            os.close(os.open(mnt / name, os.O_CREAT | os.O_WRONLY, 0o644))
        names[name] = i % 10 == 0
    listed = os.listdir(mnt.path)
    assert len(listed) == len(names)
    assert set(listed) == set(names)
    with os.scandir(mnt.path) as it:
        types = {e.name: e.is_dir(follow_symlinks=False) for e in it}
    assert types == names
    # Readdir again from a fresh open, after nothing was looked up.
    res = subprocess.run(['find', mnt.path, '-mindepth', '1', '-maxdepth',
                          '1', '-type', 'd'], capture_output=True, text=True,
                         check=True)
    assert len(res.stdout.split()) == 200


def test_readdir_while_removing_each_entry(mnt):
    """rm -r's pattern: remove each entry right after readdir returns it.
    Every entry must still come back exactly once."""
    names = {'n%04d' % i for i in range(1000)}
    for name in names:
        os.close(os.open(mnt / name, os.O_CREAT | os.O_WRONLY, 0o644))
    seen = []
    with os.scandir(mnt.path) as it:
        for e in it:
            seen.append(e.name)
            os.unlink(e.path)
    assert len(seen) == len(set(seen)), 'an entry came back twice'
    assert set(seen) == names
    assert os.listdir(mnt.path) == []


def test_readdir_while_removing_other_entries(mnt):
    """Entries removed ahead of the reader may or may not show up, but
    every entry left in place comes back exactly once."""
    n = 1000
    for i in range(n):
        os.close(os.open(mnt / ('m%04d' % i), os.O_CREAT | os.O_WRONLY))
    seen = []
    removed = set()
    with os.scandir(mnt.path) as it:
        for e in it:
            seen.append(e.name)
            i = int(e.name[1:])
            # Remove an odd-numbered entry further on.
            victim = 'm%04d' % ((i * 7 + 1) % n | 1)
            if victim not in removed and victim != e.name:
                os.unlink(mnt / victim)
                removed.add(victim)
    kept = {'m%04d' % i for i in range(n)} - removed
    assert len(seen) == len(set(seen)), 'an entry came back twice'
    assert kept <= set(seen)
    assert set(seen) <= kept | removed
    assert set(os.listdir(mnt.path)) == kept


# --------------------------------------------------------------------------
# rename


def test_rename_plain(mnt):
    write_file(mnt / 'a', b'data')
    ino = os.stat(mnt / 'a').st_ino
    os.rename(mnt / 'a', mnt / 'b')
    assert not os.path.exists(mnt / 'a')
    assert read_file(mnt / 'b') == b'data'
    assert os.stat(mnt / 'b').st_ino == ino
    # Across directories, and a directory with contents.
    os.makedirs(mnt / 'x/y')
    os.rename(mnt / 'b', mnt / 'x/y/c')
    assert read_file(mnt / 'x/y/c') == b'data'
    os.mkdir(mnt / 'z')
    os.rename(mnt / 'x', mnt / 'z/x')
    assert read_file(mnt / 'z/x/y/c') == b'data'
    assert sorted(os.listdir(mnt.path)) == ['z']
    # Renaming onto itself changes nothing.
    os.rename(mnt / 'z/x/y/c', mnt / 'z/x/y/c')
    assert read_file(mnt / 'z/x/y/c') == b'data'


def test_rename_over_existing_file(mnt):
    write_file(mnt / 'src', b'new')
    write_file(mnt / 'dst', b'old data')
    fd = os.open(mnt / 'dst', os.O_RDONLY)
    try:
        os.rename(mnt / 'src', mnt / 'dst')
        assert read_file(mnt / 'dst') == b'new'
        assert os.listdir(mnt.path) == ['dst']
        # The replaced section lives on for its open handle.
        assert os.pread(fd, 100, 0) == b'old data'
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)


def test_rename_directories(mnt):
    os.mkdir(mnt / 'd1')
    write_file(mnt / 'd1/f', b'1')
    os.mkdir(mnt / 'empty')
    os.rename(mnt / 'd1', mnt / 'empty')      # over an empty directory
    assert read_file(mnt / 'empty/f') == b'1'
    assert not os.path.exists(mnt / 'd1')
    os.mkdir(mnt / 'full')
    write_file(mnt / 'full/g', b'')
    expect_errno(errno.ENOTEMPTY, os.rename, mnt / 'empty', mnt / 'full')
    write_file(mnt / 'file', b'')
    expect_errno(errno.EISDIR, os.rename, mnt / 'file', mnt / 'full')
    expect_errno(errno.ENOTDIR, os.rename, mnt / 'full', mnt / 'file')
    expect_errno(errno.EINVAL, os.rename, mnt / 'full', mnt / 'full/sub')
    expect_errno(errno.ENOENT, os.rename, mnt / 'missing', mnt / 'x')
    assert sorted(os.listdir(mnt.path)) == ['empty', 'file', 'full']


def test_rename_noreplace(mnt):
    write_file(mnt / 'a', b'a')
    write_file(mnt / 'b', b'b')
    expect_errno(errno.EEXIST, util.renameat2, mnt / 'a', mnt / 'b',
                 util.RENAME_NOREPLACE)
    assert read_file(mnt / 'a') == b'a'
    assert read_file(mnt / 'b') == b'b'
    util.renameat2(mnt / 'a', mnt / 'c', util.RENAME_NOREPLACE)
    assert sorted(os.listdir(mnt.path)) == ['b', 'c']
    assert read_file(mnt / 'c') == b'a'


def test_rename_exchange(mnt):
    write_file(mnt / 'file', b'contents')
    os.mkdir(mnt / 'dir')
    write_file(mnt / 'dir/inner', b'inner')
    os.mkdir(mnt / 'other')
    file_ino = os.stat(mnt / 'file').st_ino
    dir_ino = os.stat(mnt / 'dir').st_ino
    util.renameat2(mnt / 'file', mnt / 'dir', util.RENAME_EXCHANGE)
    assert stat.S_ISDIR(os.stat(mnt / 'file').st_mode)
    assert stat.S_ISREG(os.stat(mnt / 'dir').st_mode)
    assert os.stat(mnt / 'file').st_ino == dir_ino
    assert os.stat(mnt / 'dir').st_ino == file_ino
    assert read_file(mnt / 'dir') == b'contents'
    assert read_file(mnt / 'file/inner') == b'inner'
    # Across directories: the moved directory's parent link follows.
    util.renameat2(mnt / 'file', mnt / 'other', util.RENAME_EXCHANGE)
    write_file(mnt / 'other/inner2', b'')
    os.mkdir(mnt / 'other/sub')
    util.renameat2(mnt / 'dir', mnt / 'other/sub', util.RENAME_EXCHANGE)
    assert read_file(mnt / 'other/sub') == b'contents'
    assert stat.S_ISDIR(os.stat(mnt / 'dir').st_mode)
    assert os.stat(mnt / 'other').st_nlink == 2
    assert os.stat(mnt.path).st_nlink == 2 + 3
    expect_errno(errno.ENOENT, util.renameat2, mnt / 'dir',
                 mnt / 'missing', util.RENAME_EXCHANGE)


# --------------------------------------------------------------------------
# Hard links


def test_link_counts_and_keeps_data(mnt):
    write_file(mnt / 'a', b'shared data')
    os.link(mnt / 'a', mnt / 'b')
    os.mkdir(mnt / 'd')
    os.link(mnt / 'a', mnt / 'd/c')
    for name in ('a', 'b', 'd/c'):
        assert os.stat(mnt / name).st_nlink == 3
    assert os.stat(mnt / 'a').st_ino == os.stat(mnt / 'd/c').st_ino
    write_file(mnt / 'b', b'SHARED', 'r+b')
    assert read_file(mnt / 'd/c') == b'SHARED data'
    os.unlink(mnt / 'a')
    assert os.stat(mnt / 'b').st_nlink == 2
    assert read_file(mnt / 'b') == b'SHARED data'
    os.unlink(mnt / 'b')
    assert os.stat(mnt / 'd/c').st_nlink == 1
    assert read_file(mnt / 'd/c') == b'SHARED data'
    expect_errno(errno.EEXIST, os.link, mnt / 'd/c', mnt / 'd/c')
    expect_errno(errno.EPERM, os.link, mnt / 'd', mnt / 'dlink')
    expect_errno(errno.ENOENT, os.link, mnt / 'missing', mnt / 'x')


def test_link_bumps_ctime(mnt):
    write_file(mnt / 'a', b'')
    before = os.stat(mnt / 'a')
    tick(before)
    os.link(mnt / 'a', mnt / 'b')
    assert os.stat(mnt / 'a').st_ctime_ns > before.st_ctime_ns


# --------------------------------------------------------------------------
# Attributes


def test_chmod(mnt):
    write_file(mnt / 'f', b'')
    os.mkdir(mnt / 'd')
    for mode in (0o600, 0o4755, 0o2711, 0o1777, 0o000, 0o644):
        os.chmod(mnt / 'f', mode)
        assert stat.S_IMODE(os.stat(mnt / 'f').st_mode) == mode
    before = os.stat(mnt / 'd')
    tick(before)
    os.chmod(mnt / 'd', 0o1733)
    st = os.stat(mnt / 'd')
    assert stat.S_IMODE(st.st_mode) == 0o1733
    assert stat.S_ISDIR(st.st_mode)
    assert st.st_ctime_ns > before.st_ctime_ns
    fd = os.open(mnt / 'f', os.O_RDONLY)
    try:
        os.fchmod(fd, 0o640)
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o640
    finally:
        os.close(fd)


@pytest.mark.root
def test_chown(mnt):
    write_file(mnt / 'f', b'')
    os.mkdir(mnt / 'd')
    before = os.stat(mnt / 'f')
    tick(before)
    os.chown(mnt / 'f', 1234, 5678)
    st = os.stat(mnt / 'f')
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_ctime_ns > before.st_ctime_ns
    os.chown(mnt / 'f', -1, 42)
    assert (os.stat(mnt / 'f').st_uid, os.stat(mnt / 'f').st_gid) == \
        (1234, 42)
    os.chown(mnt / 'd', 4321, -1)
    assert os.stat(mnt / 'd').st_uid == 4321
    assert os.stat(mnt / 'd').st_gid == os.getegid()


def test_utimensat(mnt):
    write_file(mnt / 'f', b'x')
    os.mkdir(mnt / 'd')
    for name in ('f', 'd'):
        path = mnt / name
        before = os.stat(path)
        tick(before)
        atime = 1_234_567_890_123_456_789
        mtime = 987_654_321_987_654_321
        os.utime(path, ns=(atime, mtime))
        st = os.stat(path)
        assert st.st_atime_ns == atime
        assert st.st_mtime_ns == mtime
        assert st.st_ctime_ns > before.st_ctime_ns
        # "now" for both.
        os.utime(path)
        st = os.stat(path)
        assert st.st_mtime_ns > mtime
        assert st.st_atime_ns > atime
    # Through an fd (futimens), and only one of the two (UTIME_OMIT).
    fd = os.open(mnt / 'f', os.O_RDONLY)
    try:
        os.utime(fd, ns=(5 * 10**18, 6 * 10**18))
        assert os.fstat(fd).st_mtime_ns == 6 * 10**18
    finally:
        os.close(fd)
    res = subprocess.run(['touch', '-a', '-d', '@100', mnt / 'f'])
    assert res.returncode == 0
    st = os.stat(mnt / 'f')
    assert st.st_atime_ns == 100 * 10**9
    assert st.st_mtime_ns == 6 * 10**18


def test_directory_times_follow_namespace_changes(mnt):
    os.mkdir(mnt / 'd')
    old = 1_000_000_000 * 10**9
    steps = [
        ('create', lambda: write_file(mnt / 'd/f', b'')),
        ('mkdir', lambda: os.mkdir(mnt / 'd/sub')),
        ('rename in', lambda: os.rename(mnt / 'd/f', mnt / 'd/g')),
        ('link', lambda: os.link(mnt / 'd/g', mnt / 'd/h')),
        ('unlink', lambda: os.unlink(mnt / 'd/h')),
        ('rmdir', lambda: os.rmdir(mnt / 'd/sub')),
        ('rename out', lambda: os.rename(mnt / 'd/g', mnt / 'g')),
    ]
    for what, step in steps:
        os.utime(mnt / 'd', ns=(old, old))
        before = os.stat(mnt / 'd')
        tick(before)
        step()
        after = os.stat(mnt / 'd')
        assert after.st_mtime_ns > old, what
        assert after.st_ctime_ns > before.st_ctime_ns, what


# --------------------------------------------------------------------------
# Mistakes, and their errno


def test_errno_cases(mnt):
    write_file(mnt / 'file', b'')
    os.mkdir(mnt / 'dir')
    write_file(mnt / 'dir/x', b'')
    os.mkdir(mnt / 'emptydir')

    expect_errno(errno.ENOTEMPTY, os.rmdir, mnt / 'dir')
    expect_errno(errno.EEXIST, os.mkdir, mnt / 'dir')
    expect_errno(errno.EEXIST, os.mkdir, mnt / 'file')
    expect_errno(errno.EEXIST, os.open, mnt / 'file',
                 os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    expect_errno(errno.ENOENT, os.open, mnt / 'missing', os.O_RDONLY)
    expect_errno(errno.ENOENT, os.stat, mnt / 'missing/deeper')
    expect_errno(errno.ENOENT, os.unlink, mnt / 'missing')
    expect_errno(errno.ENOENT, os.rmdir, mnt / 'missing')
    expect_errno(errno.ENOENT, os.open, mnt / 'missing/f',
                 os.O_CREAT | os.O_WRONLY)
    expect_errno(errno.ENOTDIR, os.open, mnt / 'file/x', os.O_RDONLY)
    expect_errno(errno.ENOTDIR, os.mkdir, mnt / 'file/x')
    expect_errno(errno.ENOTDIR, os.rmdir, mnt / 'file')
    expect_errno(errno.ENOTDIR, os.listdir, mnt / 'file')
    expect_errno(errno.ENOTDIR, os.open, mnt / 'file',
                 os.O_RDONLY | os.O_DIRECTORY)
    expect_errno(errno.EISDIR, os.open, mnt / 'dir', os.O_WRONLY)
    expect_errno(errno.EISDIR, os.open, mnt / 'dir', os.O_RDWR)
    expect_errno(errno.EISDIR, os.unlink, mnt / 'emptydir')
    expect_errno(errno.ENAMETOOLONG, os.open, mnt / ('n' * 256),
                 os.O_CREAT | os.O_WRONLY)
    # Nothing changed along the way.
    assert sorted(os.listdir(mnt.path)) == ['dir', 'emptydir', 'file']
    assert os.listdir(mnt / 'dir') == ['x']


def test_exdev_to_and_from_tmpfs(mnt, shm_dir):
    write_file(mnt / 'in', b'in')
    write_file(os.path.join(shm_dir, 'out'), b'out')
    expect_errno(errno.EXDEV, os.rename, mnt / 'in',
                 os.path.join(shm_dir, 'in'))
    expect_errno(errno.EXDEV, os.rename, os.path.join(shm_dir, 'out'),
                 mnt / 'out')
    expect_errno(errno.EXDEV, os.link, mnt / 'in',
                 os.path.join(shm_dir, 'in'))
    expect_errno(errno.EXDEV, os.link, os.path.join(shm_dir, 'out'),
                 mnt / 'out')
    assert os.listdir(mnt.path) == ['in']
    assert sorted(os.listdir(shm_dir)) == ['out']


def test_exdev_across_filesystems(mnt, tmp_path):
    write_file(mnt / 'in', b'in')
    write_file(tmp_path / 'out', b'out')
    expect_errno(errno.EXDEV, os.rename, mnt / 'in', str(tmp_path / 'in'))
    expect_errno(errno.EXDEV, os.rename, str(tmp_path / 'out'), mnt / 'out')
    expect_errno(errno.EXDEV, os.link, mnt / 'in', str(tmp_path / 'in'))
    expect_errno(errno.EXDEV, os.link, str(tmp_path / 'out'), mnt / 'out')
    assert os.listdir(mnt.path) == ['in']
    assert read_file(mnt / 'in') == b'in'
    # mv falls back to copy and delete, as users expect.
    subprocess.run(['mv', mnt / 'in', str(tmp_path / 'moved')],
                        check=True)
    assert read_file(tmp_path / 'moved') == b'in'
    assert os.listdir(mnt.path) == []


# --------------------------------------------------------------------------
# Another user


@pytest.fixture
def allow_other_mnt(mount_factory, datapath):
    """A mount other users may enter (allow_other), root 0755."""
    return mount_factory(datapath, options=['allow_other'])


@pytest.mark.other_user
def test_other_user_held_to_mode_bits(allow_other_mnt):
    mnt = allow_other_mnt
    assert stat.S_IMODE(os.stat(mnt.path).st_mode) == 0o755
    write_file(mnt / 'secret', b'secret')
    os.chmod(mnt / 'secret', 0o600)
    write_file(mnt / 'public', b'public')
    os.chmod(mnt / 'public', 0o644)
    os.mkdir(mnt / 'closed', 0o755)
    os.mkdir(mnt / 'open')
    os.chmod(mnt / 'open', 0o777)
    os.mkdir(mnt / 'private')
    os.chmod(mnt / 'private', 0o700)
    write_file(mnt / 'private/f', b'')

    assert util.user_op('read', mnt / 'secret') == 'EACCES'
    assert util.user_op('write', mnt / 'secret') == 'EACCES'
    assert util.user_op('read', mnt / 'public') == 'ok'
    assert util.user_op('write', mnt / 'public') == 'EACCES'
    assert util.user_op('truncate', mnt / 'public') == 'EACCES'
    assert util.user_op('chmod', mnt / 'public') == 'EPERM'
    assert util.user_op('create', mnt / 'mine') == 'EACCES'
    assert util.user_op('create', mnt / 'closed/mine') == 'EACCES'
    assert util.user_op('mkdir', mnt / 'closed/sub') == 'EACCES'
    assert util.user_op('unlink', mnt / 'public') == 'EACCES'
    assert util.user_op('listdir', mnt / 'private') == 'EACCES'
    assert util.user_op('stat', mnt / 'private/f') == 'EACCES'
    assert util.user_op('listdir', mnt / 'closed') == 'ok'
    # Nothing the refused calls tried happened.
    assert read_file(mnt / 'public') == b'public'
    assert stat.S_IMODE(os.stat(mnt / 'public').st_mode) == 0o644
    assert sorted(os.listdir(mnt.path)) == \
        ['closed', 'open', 'private', 'public', 'secret']
    assert os.listdir(mnt / 'closed') == []

    # Where the bits allow it, the other user creates, and owns the result.
    assert util.user_op('create', mnt / 'open/mine') == 'ok'
    st = os.stat(mnt / 'open/mine')
    assert (st.st_uid, st.st_gid) == (util.NOBODY, util.NOBODY)
    assert read_file(mnt / 'open/mine') == b'created by %d' % util.NOBODY
    assert util.user_op('write', mnt / 'open/mine') == 'ok'
    assert util.user_op('chmod', mnt / 'open/mine') == 'ok'
    assert stat.S_IMODE(os.stat(mnt / 'open/mine').st_mode) == 0o666
    assert util.user_op('unlink', mnt / 'open/mine') == 'ok'
    # Sticky directory: others' files cannot be removed.
    os.chmod(mnt / 'open', 0o1777)
    write_file(mnt / 'open/roots', b'')
    assert util.user_op('unlink', mnt / 'open/roots') == 'EPERM'


@pytest.mark.other_user
def test_other_user_kept_out_without_allow_other(mnt):
    write_file(mnt / 'f', b'')
    os.chmod(mnt / 'f', 0o666)
    assert util.user_op('stat', mnt / 'f') == 'EACCES'
    assert util.user_op('read', mnt / 'f') == 'EACCES'
