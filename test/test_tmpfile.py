"""O_TMPFILE: open(dir, O_TMPFILE) makes a section with no name, as on
tmpfs.

- The section is page-file-backed, nlink 0, with the mode asked for less
  the umask; it is read, written and mapped through its descriptor on
  both data paths.
- linkat(fd, "", dir, name, AT_EMPTY_PATH) or linkat of
  /proc/self/fd/N with AT_SYMLINK_FOLLOW gives it a name: then it is an
  ordinary section.  With O_EXCL it can never be named (ENOENT).
- Never named, it dies at its last close as an unlinked section does:
  its bytes go back to the size cap and to df.
- It counts against nr_inodes= and usrquota_inode_hardlimit= as tmpfs
  counts it; a directory the caller may not write is EACCES, a
  non-directory ENOTDIR, and a directory already removed still makes
  one, as on tmpfs.

Other users are played with setpriv (util.as_user_argv); every data test
runs on both data paths.
"""

import ctypes
import errno
import json
import mmap
import os
import stat
import subprocess

import pytest

import util

KiB = 1 << 10
MiB = 1 << 20
PAGE = util.PAGE
USER = util.NOBODY

AT_EMPTY_PATH = 0x1000
AT_SYMLINK_FOLLOW = 0x400

_libc = ctypes.CDLL(None, use_errno=True)


def tmpfile(path, flags=os.O_RDWR, mode=0o600):
    return os.open(path, os.O_TMPFILE | flags, mode)


def link_fd(fd, newpath, how):
    """Name the open file fd at newpath, the way `how` says: 'empty'
    (AT_EMPTY_PATH) or 'proc' (/proc/self/fd/N, AT_SYMLINK_FOLLOW).
    os.link cannot: it calls link(2), which does not follow the proc
    link."""
    if how == 'empty':
        res = _libc.linkat(fd, b'', util.AT_FDCWD, os.fsencode(newpath),
                           AT_EMPTY_PATH)
    else:
        res = _libc.linkat(util.AT_FDCWD, b'/proc/self/fd/%d' % fd,
                           util.AT_FDCWD, os.fsencode(newpath),
                           AT_SYMLINK_FOLLOW)
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), newpath)


_PRELUDE = r'''
import errno, json, os, sys, time
def name(e):
    return errno.errorcode.get(e.errno, str(e.errno))
def tmpfile(path):
    return os.open(path, os.O_TMPFILE | os.O_RDWR, 0o600)
def hold(path, most):
    """Open tmpfiles in path until an error or most: (fds, errno name)."""
    fds = []
    while len(fds) < most:
        try:
            fds.append(tmpfile(path))
        except OSError as e:
            return fds, name(e)
    return fds, 'ok'
def again(path, patience=20.0):
    """A tmpfile once the kernel has forgotten a closed one (its FORGET
    comes a moment after the close): 'ok' or the errno name."""
    deadline = time.monotonic() + patience
    while True:
        try:
            os.close(tmpfile(path))
            return 'ok'
        except OSError as e:
            if time.monotonic() > deadline:
                return name(e)
            time.sleep(0.05)
'''


def as_user(uid, code):
    """Run code (with _PRELUDE's helpers) as uid; the JSON of its `out`."""
    res = subprocess.run(util.as_user_argv(uid) +
                         [util.PYTHON, '-I', '-c',
                          _PRELUDE + code + '\nprint(json.dumps(out))'],
                         capture_output=True, text=True, cwd='/',
                         timeout=util.PATIENCE)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def shared(mount_factory, datapath, *options):
    """A mount other users may use, with a sticky world-writable 'pub'."""
    mnt = mount_factory(datapath, options=['allow_other'] + list(options))
    os.mkdir(mnt / 'pub')
    os.chmod(mnt / 'pub', 0o1777)
    return mnt


# --------------------------------------------------------------------------
# The section and its descriptor

def test_tmpfile_read_write_mmap(mnt):
    """Bytes written through the descriptor read back, a shared map of
    it sees and makes changes; fstat says nlink 0 and the mode asked for
    less the umask; it is page-file-backed; no name appears."""
    old = os.umask(0o027)
    try:
        fd = tmpfile(mnt.path, mode=0o666)
    finally:
        os.umask(old)
    try:
        st = os.fstat(fd)
        assert st.st_nlink == 0
        assert stat.S_ISREG(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o640
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
        assert os.getxattr(fd, util.KIND) == b'pagefile'

        data = util.pattern(0, 3 * PAGE + 100, 7)
        assert os.pwrite(fd, data, 0) == len(data)
        assert util.pread_all(fd, len(data), 0) == data
        assert os.fstat(fd).st_size == len(data)

        os.ftruncate(fd, 4 * PAGE)
        with mmap.mmap(fd, 4 * PAGE) as m:
            assert m[:len(data)] == data
            m[PAGE:PAGE + 5] = b'MAPPD'
            os.pwrite(fd, b'WRITE', 2 * PAGE)
            assert m[2 * PAGE:2 * PAGE + 5] == b'WRITE'
        assert util.pread_all(fd, 5, PAGE) == b'MAPPD'
        os.ftruncate(fd, PAGE)
        assert os.fstat(fd).st_size == PAGE
        assert os.listdir(mnt.path) == []
    finally:
        os.close(fd)
    assert os.listdir(mnt.path) == []


@pytest.mark.parametrize('how', ['empty', 'proc'])
def test_tmpfile_linkat_names_it(mnt, how):
    """linkat names the section: the name shows its bytes, both say nlink
    1, writes through the old descriptor show through the name, and the
    name outlives the descriptor."""
    os.mkdir(mnt / 'd')
    fd = tmpfile(mnt / 'd')
    try:
        data = util.pattern(0, 2 * PAGE, 3)
        os.pwrite(fd, data, 0)
        link_fd(fd, mnt / 'd/named', how)
        assert os.fstat(fd).st_nlink == 1
        st = os.stat(mnt / 'd/named')
        assert st.st_nlink == 1
        assert st.st_ino == os.fstat(fd).st_ino
        assert util.read_file(mnt / 'd/named') == data
        os.pwrite(fd, b'later', 0)
        assert util.read_file(mnt / 'd/named')[:5] == b'later'
        assert os.listdir(mnt / 'd') == ['named']
    finally:
        os.close(fd)
    assert util.read_file(mnt / 'd/named') == b'later' + data[5:]
    assert os.getxattr(mnt / 'd/named', util.KIND) == b'pagefile'


def test_tmpfile_linkat_again_and_after_unlink(mnt):
    """A named tmpfile is an ordinary section: a second link adds a name;
    once every name went, linkat is ENOENT again (as on tmpfs), and a
    link over an existing name is EEXIST and leaves it linkable."""
    open(mnt / 'taken', 'wb').close()
    fd = tmpfile(mnt.path)
    try:
        util.expect_errno(errno.EEXIST, link_fd, fd, mnt / 'taken', 'empty')
        assert os.fstat(fd).st_nlink == 0
        link_fd(fd, mnt / 'a', 'empty')
        link_fd(fd, mnt / 'b', 'proc')
        assert os.fstat(fd).st_nlink == 2
        os.unlink(mnt / 'a')
        os.unlink(mnt / 'b')
        assert os.fstat(fd).st_nlink == 0
        util.expect_errno(errno.ENOENT, link_fd, fd, mnt / 'c', 'empty')
        util.expect_errno(errno.ENOENT, link_fd, fd, mnt / 'c', 'proc')
    finally:
        os.close(fd)
    assert sorted(os.listdir(mnt.path)) == ['taken']


def test_tmpfile_excl_refuses_linkat(mnt):
    """O_TMPFILE|O_EXCL: the section can never be named (ENOENT, both
    ways), and still works through its descriptor."""
    fd = tmpfile(mnt.path, os.O_RDWR | os.O_EXCL)
    try:
        os.write(fd, b'private')
        for how in ('empty', 'proc'):
            util.expect_errno(errno.ENOENT, link_fd, fd, mnt / 'x', how)
        assert util.pread_all(fd, 7, 0) == b'private'
    finally:
        os.close(fd)
    assert os.listdir(mnt.path) == []


def test_tmpfile_write_only(mnt):
    """O_TMPFILE|O_WRONLY makes one too; named, it reads back."""
    fd = tmpfile(mnt.path, os.O_WRONLY, 0o644)
    try:
        os.write(fd, b'wronly')
        link_fd(fd, mnt / 'w', 'empty')
    finally:
        os.close(fd)
    assert util.read_file(mnt / 'w') == b'wronly'
    assert stat.S_IMODE(os.stat(mnt / 'w').st_mode) == 0o644


# --------------------------------------------------------------------------
# Lifetime and room

def test_tmpfile_closed_gives_room_back(mount_factory, datapath):
    """Under size=, a tmpfile's bytes count in df and against the cap;
    closed without a name it is gone and they come back; named, they
    stay until the name goes."""
    mnt = mount_factory(datapath, options=['size=8m'])
    base = util.used(mnt.path)
    fd = tmpfile(mnt.path)
    try:
        os.write(fd, b'u' * (6 * MiB))
        assert util.used(mnt.path) >= base + 6 * MiB
        # The cap holds it: 6 MiB of 8 are taken.
        assert util.fill(mnt / 'more') <= 2 * MiB
    finally:
        os.close(fd)
    os.unlink(mnt / 'more')
    assert util.wait_for(lambda: util.used(mnt.path) <= base)

    fd = tmpfile(mnt.path)
    try:
        os.write(fd, b'n' * (4 * MiB))
        link_fd(fd, mnt / 'kept', 'empty')
    finally:
        os.close(fd)
    assert util.used(mnt.path) >= base + 4 * MiB
    os.unlink(mnt / 'kept')
    assert util.wait_for(lambda: util.used(mnt.path) <= base)


def test_tmpfile_counts_against_nr_inodes(mount_factory, datapath):
    """With nr_inodes=12 a user holds as many tmpfiles as statfs said
    were free, then ENOSPC; closing one gives its inode back."""
    mnt = shared(mount_factory, datapath, 'nr_inodes=12')
    pub = str(mnt / 'pub')
    out = as_user(USER, '''
ffree = os.statvfs(%r).f_ffree
fds, res = hold(%r, 40)
held = len(fds)
os.close(fds.pop())
out = [ffree, held, res, again(%r)]
''' % (pub, pub, pub))
    ffree, held, res, after = out
    assert ffree > 0
    assert (held, res) == (ffree, 'ENOSPC'), out
    assert after == 'ok', out


def test_tmpfile_counts_against_inode_quota(mount_factory, datapath):
    """usrquota_inode_hardlimit=3: three tmpfiles, then EDQUOT; naming
    once all are closed the user has three again."""
    mnt = shared(mount_factory, datapath, 'usrquota_inode_hardlimit=3')
    pub = str(mnt / 'pub')
    out = as_user(USER, '''
fds, res = hold(%r, 10)
out = [len(fds), res]
for fd in fds:
    os.close(fd)
''' % pub)
    assert out == [3, 'EDQUOT'], out
    # The three went at their close (the kernel forgets them a moment
    # later): three may be made again.
    assert util.wait_for(lambda: as_user(
        USER, 'fds, res = hold(%r, 3)\nout = [len(fds), res]' % pub)
        == [3, 'ok'])


# --------------------------------------------------------------------------
# Where O_TMPFILE is refused, and where it is not

def test_tmpfile_needs_write_permission(mount_factory, datapath):
    """A directory the caller may not write: EACCES, and nothing is made;
    one it may write: a tmpfile owned by the caller."""
    mnt = shared(mount_factory, datapath)
    os.mkdir(mnt / 'closed', 0o755)
    out = as_user(USER, '''
out = []
for d in (%r, %r):
    try:
        fd = tmpfile(d)
        st = os.fstat(fd)
        out.append([st.st_uid, st.st_nlink])
        os.close(fd)
    except OSError as e:
        out.append(name(e))
''' % (mnt / 'closed', mnt / 'pub'))
    assert out == ['EACCES', [USER, 0]], out


def test_tmpfile_not_a_directory(mnt):
    """O_TMPFILE on a section, or on a missing name: ENOTDIR, ENOENT."""
    open(mnt / 'f', 'wb').close()
    util.expect_errno(errno.ENOTDIR, tmpfile, mnt / 'f')
    util.expect_errno(errno.ENOENT, tmpfile, mnt / 'missing')
    assert os.listdir(mnt.path) == ['f']


@pytest.mark.file_backed
def test_tmpfile_beside_file_backed(mnt, tmp_path):
    """A file-backed section is no directory: ENOTDIR; a tmpfile made
    beside one is page-file-backed and never touches the backing file."""
    backing = tmp_path / 'backing'
    backing.write_bytes(b'backing bytes')
    os.symlink(str(backing), mnt / 'fb')
    util.expect_errno(errno.ENOTDIR, tmpfile, mnt / 'fb')
    fd = tmpfile(mnt.path)
    try:
        os.write(fd, b'page file')
        assert os.getxattr(fd, util.KIND) == b'pagefile'
        link_fd(fd, mnt / 'pf', 'empty')
    finally:
        os.close(fd)
    assert backing.read_bytes() == b'backing bytes'
    assert util.read_file(mnt / 'fb') == b'backing bytes'
    assert util.read_file(mnt / 'pf') == b'page file'


def test_tmpfile_in_removed_directory(mnt):
    """A directory removed while open still makes a tmpfile, as on
    tmpfs; it cannot be named there (ENOENT), but can elsewhere."""
    os.mkdir(mnt / 'gone')
    dfd = os.open(mnt / 'gone', os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rmdir(mnt / 'gone')
        fd = os.open('.', os.O_TMPFILE | os.O_RDWR, 0o600, dir_fd=dfd)
    finally:
        os.close(dfd)
    try:
        assert os.fstat(fd).st_nlink == 0
        os.write(fd, b'orphan')
        link_fd(fd, mnt / 'found', 'empty')
    finally:
        os.close(fd)
    assert util.read_file(mnt / 'found') == b'orphan'


def test_tmpfile_setgid_directory(mnt):
    """In a set-group-ID directory the tmpfile takes its group, as any
    new file there does."""
    os.mkdir(mnt / 'sg')
    os.chown(mnt / 'sg', 0, 4321)
    os.chmod(mnt / 'sg', 0o2777)
    fd = tmpfile(mnt / 'sg')
    try:
        assert os.fstat(fd).st_gid == 4321
    finally:
        os.close(fd)


def test_many_tmpfiles_leave_nothing(mount_factory, datapath):
    """Tmpfiles opened and closed by the hundred leave no name, no
    bytes, and the daemon serving.  (Under a cap df counts the mount's
    own bytes; without one it shows the machine's memory.)"""
    mnt = mount_factory(datapath, options=['size=64m'])
    base = util.used(mnt.path)
    for i in range(200):
        fd = tmpfile(mnt.path)
        try:
            os.write(fd, b't' * PAGE)
        finally:
            os.close(fd)
    assert os.listdir(mnt.path) == []
    assert util.wait_for(lambda: util.used(mnt.path) <= base)
    with open(mnt / 'after', 'wb') as f:
        f.write(b'ok')
    assert util.read_file(mnt / 'after') == b'ok'
