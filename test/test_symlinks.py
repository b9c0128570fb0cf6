"""Symbolic links with a relative target are ordinary symbolic links, as
on tmpfs: readlink, lstat (S_IFLNK, st_size the target's length), lchown,
utimensat with AT_SYMLINK_NOFOLLOW, O_NOFOLLOW's ELOOP, links through
links up to the kernel's 40, rename, unlink and link of a symlink, and
readdir's DT_LNK.  Only an absolute target binds a file-backed section
(test_filebacked.py).

Every test runs on both data paths; one also on a writeback_cache mount,
which refuses file-backed sections but not symlinks.
"""

import errno
import os
import shutil
import stat
import subprocess
import time

import pytest

import util
from util import expect_errno, read_file, write_file



def listing_elsewhere(path):
    """(name, is a symlink by d_type, target or None), sorted, as another
    process lists path."""
    code = ('import os, sys\n'
            'for e in sorted(os.scandir(sys.argv[1]), key=lambda e: e.name):\n'
            '    t = os.readlink(e.path) if e.is_symlink() else ""\n'
            '    print(e.name, int(e.is_symlink()), t)\n')
    res = subprocess.run([util.PYTHON, '-I', '-c', code, path],
                         capture_output=True, text=True,
                         timeout=util.PATIENCE)
    assert res.returncode == 0, res.stderr
    return [tuple(line.split(' ')) for line in res.stdout.splitlines()]


# --------------------------------------------------------------------------
# What a relative symlink is


def test_relative_target_makes_a_symlink(mnt):
    os.symlink('../somewhere/else', mnt / 'l')
    st = os.lstat(mnt / 'l')
    assert stat.S_ISLNK(st.st_mode), oct(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o777
    assert st.st_size == len('../somewhere/else')
    assert st.st_nlink == 1
    assert st.st_uid == os.geteuid() and st.st_gid == os.getegid()
    assert os.readlink(mnt / 'l') == '../somewhere/else'
    assert os.readlink(os.fsencode(mnt / 'l')) == b'../somewhere/else'
    # Dangling: following it fails, as on tmpfs; the link stays.
    expect_errno(errno.ENOENT, os.stat, mnt / 'l')
    assert os.listdir(mnt.path) == ['l']
    # Not a section: none of sectionfs's attributes.
    expect_errno(errno.ENODATA, os.getxattr, mnt / 'l',
                 'user.sectionfs.kind', follow_symlinks=False)


def test_symlink_is_followed(mnt):
    write_file(mnt / 'f', b'data')
    os.mkdir(mnt / 'd')
    os.symlink('f', mnt / 'here')
    os.symlink('../f', mnt / 'd/up')
    os.symlink('d', mnt / 'dirlink')
    os.symlink('./d/../f', mnt / 'dots')
    assert read_file(mnt / 'here') == b'data'
    assert read_file(mnt / 'd/up') == b'data'
    assert read_file(mnt / 'dirlink/up') == b'data'
    assert read_file(mnt / 'dots') == b'data'
    assert os.stat(mnt / 'here').st_ino == os.stat(mnt / 'f').st_ino
    # Writing through a link writes the section.
    write_file(mnt / 'here', b'new')
    assert read_file(mnt / 'f') == b'new'
    # A link that leaves the mount goes where it says.
    os.symlink('../' * 40 + 'proc/self/comm', mnt / 'out')
    assert read_file(mnt / 'out').strip()
    # Creating through a dangling link creates its target, as on tmpfs.
    os.symlink('made', mnt / 'to-made')
    write_file(mnt / 'to-made', b'x')
    assert read_file(mnt / 'made') == b'x'


def test_o_nofollow_and_loops(mnt):
    write_file(mnt / 'f', b'data')
    os.symlink('f', mnt / 'l')
    expect_errno(errno.ELOOP, os.open, mnt / 'l', os.O_RDONLY | os.O_NOFOLLOW)
    # O_PATH|O_NOFOLLOW opens the link itself.
    fd = os.open(mnt / 'l', os.O_PATH | os.O_NOFOLLOW)
    try:
        assert stat.S_ISLNK(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    os.symlink('self', mnt / 'self')
    expect_errno(errno.ELOOP, os.stat, mnt / 'self')
    os.symlink('pong', mnt / 'ping')
    os.symlink('ping', mnt / 'pong')
    expect_errno(errno.ELOOP, os.open, mnt / 'ping', os.O_RDONLY)


def test_forty_links_and_no_more(mnt):
    """The kernel follows 40 links in one lookup; the 41st is ELOOP."""
    write_file(mnt / 'f', b'end')
    prev = 'f'
    for i in range(41):
        os.symlink(prev, mnt / ('c%d' % i))
        prev = 'c%d' % i
    assert read_file(mnt / 'c39') == b'end'          # 40 links
    expect_errno(errno.ELOOP, read_file, mnt / 'c40')  # 41


def test_target_length_limits(mnt):
    longest = 'a/' * 2047 + 'b'                 # 4095 bytes
    os.symlink(longest, mnt / 'long')
    assert os.lstat(mnt / 'long').st_size == 4095
    assert os.readlink(mnt / 'long') == longest
    expect_errno(errno.ENAMETOOLONG, os.symlink, longest + 'c', mnt / 'too')
    assert sorted(os.listdir(mnt.path)) == ['long']


def test_symlink_over_a_name_is_eexist(mnt):
    write_file(mnt / 'f', b'keep')
    expect_errno(errno.EEXIST, os.symlink, 'x', mnt / 'f')
    assert read_file(mnt / 'f') == b'keep'


# --------------------------------------------------------------------------
# Changing a symlink and its names


def test_lchown_and_nofollow_times(mnt):
    write_file(mnt / 'f', b'data')
    os.symlink('f', mnt / 'l')
    os.chown(mnt / 'l', 1234, 5678, follow_symlinks=False)
    assert (os.lstat(mnt / 'l').st_uid, os.lstat(mnt / 'l').st_gid) == \
        (1234, 5678)
    assert os.stat(mnt / 'f').st_uid == os.geteuid()
    os.utime(mnt / 'l', ns=(10**9, 2 * 10**9), follow_symlinks=False)
    st = os.lstat(mnt / 'l')
    assert (st.st_atime_ns, st.st_mtime_ns) == (10**9, 2 * 10**9)
    assert os.stat(mnt / 'f').st_mtime_ns != 2 * 10**9
    # The target is not a symlink's to change: chmod follows it.
    os.chmod(mnt / 'l', 0o600)
    assert stat.S_IMODE(os.stat(mnt / 'f').st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(mnt / 'l').st_mode) == 0o777


def test_rename_unlink_link(mnt):
    write_file(mnt / 'f', b'data')
    os.mkdir(mnt / 'd')
    os.symlink('../f', mnt / 'd/l')
    ino = os.lstat(mnt / 'd/l').st_ino
    os.rename(mnt / 'd/l', mnt / 'd/m')
    assert os.readlink(mnt / 'd/m') == '../f'
    assert os.lstat(mnt / 'd/m').st_ino == ino
    # A hard link of the link itself (linkat without AT_SYMLINK_FOLLOW).
    os.link(mnt / 'd/m', mnt / 'd/n', follow_symlinks=False)
    st = os.lstat(mnt / 'd/n')
    assert stat.S_ISLNK(st.st_mode) and st.st_ino == ino and st.st_nlink == 2
    # With AT_SYMLINK_FOLLOW (ln -L) the file it names is linked.
    subprocess.run(['ln', '-L', mnt / 'd/m', mnt / 'g'], check=True,
                   timeout=util.PATIENCE)
    assert os.lstat(mnt / 'g').st_ino == os.stat(mnt / 'f').st_ino
    os.unlink(mnt / 'd/m')
    assert os.lstat(mnt / 'd/n').st_nlink == 1
    assert read_file(mnt / 'd/n') == b'data'
    # A symlink replaces a file by rename, and is replaced by one.
    os.rename(mnt / 'd/n', mnt / 'g')
    assert os.readlink(mnt / 'g') == '../f'  # resolved from the top now
    expect_errno(errno.ENOENT, os.stat, mnt / 'g')
    os.rename(mnt / 'f', mnt / 'g')
    assert read_file(mnt / 'g') == b'data'
    os.symlink('g', mnt / 'l')
    os.unlink(mnt / 'l')
    assert sorted(os.listdir(mnt.path)) == ['d', 'g']
    assert read_file(mnt / 'g') == b'data'


def test_unlinked_open_target_and_rmdir(mnt):
    os.mkdir(mnt / 'd')
    os.symlink('x', mnt / 'd/l')
    expect_errno(errno.ENOTEMPTY, os.rmdir, mnt / 'd')
    # rmdir does not follow a symlink, nor does unlink remove a directory.
    os.symlink('d', mnt / 'dl')
    expect_errno(errno.ENOTDIR, os.rmdir, mnt / 'dl')
    os.unlink(mnt / 'dl')
    assert os.path.isdir(mnt / 'd')
    os.unlink(mnt / 'd/l')
    os.rmdir(mnt / 'd')
    assert os.listdir(mnt.path) == []


def test_times_of_the_directory(mnt):
    os.mkdir(mnt / 'd')
    before = os.stat(mnt / 'd')
    util.wait_for(lambda: time.time_ns() > before.st_mtime_ns + 10**7)
    os.symlink('x', mnt / 'd/l')
    after = os.stat(mnt / 'd')
    assert after.st_mtime_ns > before.st_mtime_ns
    assert after.st_ctime_ns > before.st_ctime_ns
    assert after.st_size > before.st_size


def test_readdir_says_dt_lnk(mnt):
    write_file(mnt / 'f', b'x')
    os.mkdir(mnt / 'd')
    os.symlink('f', mnt / 'l')
    with os.scandir(mnt.path) as it:
        kinds = {e.name: (e.is_symlink(), e.is_dir(follow_symlinks=False))
                 for e in it}
    assert kinds == {'f': (False, False), 'd': (False, True),
                     'l': (True, False)}
    assert listing_elsewhere(mnt.path) == [('d', '0', ''), ('f', '0', ''),
                                           ('l', '1', 'f')]


def test_setgid_directory_gives_its_group(mnt):
    os.mkdir(mnt / 'd')
    os.chown(mnt / 'd', -1, 4321)
    os.chmod(mnt / 'd', 0o2775)
    os.symlink('x', mnt / 'd/l')
    assert os.lstat(mnt / 'd/l').st_gid == 4321


@pytest.mark.root
@pytest.mark.other_user
def test_another_user_follows_and_reads(shared_mnt):
    write_file(shared_mnt / 'pub/f', b'data')
    os.chmod(shared_mnt / 'pub/f', 0o644)
    os.symlink('f', shared_mnt / 'pub/l')
    assert util.user_op('read', shared_mnt / 'pub/l') == 'ok'
    # The sticky directory keeps another user from removing root's link.
    assert util.user_op('unlink', shared_mnt / 'pub/l') == 'EPERM'


# --------------------------------------------------------------------------
# As tmpfs does, program by program


def test_cp_a_and_tar_keep_symlinks(mnt, shm_dir):
    src = os.path.join(shm_dir, 'tree')
    os.makedirs(os.path.join(src, 'sub'))
    write_file(os.path.join(src, 'sub', 'f'), b'data')
    os.symlink('sub/f', os.path.join(src, 'top'))
    os.symlink('../sub', os.path.join(src, 'sub', 'loop'))
    os.symlink('missing', os.path.join(src, 'dangling'))
    subprocess.run(['cp', '-a', src, mnt / 'copy'], check=True,
                   timeout=util.PATIENCE)
    for name, target in [('top', 'sub/f'), ('sub/loop', '../sub'),
                         ('dangling', 'missing')]:
        assert os.readlink(mnt / ('copy/' + name)) == target
    assert read_file(mnt / 'copy/top') == b'data'
    tarball = os.path.join(shm_dir, 't.tar')
    subprocess.run(['tar', '-C', mnt / 'copy', '-cf', tarball, '.'],
                   check=True, timeout=util.PATIENCE)
    os.mkdir(mnt / 'untar')
    subprocess.run(['tar', '-C', mnt / 'untar', '-xf', tarball],
                   check=True, timeout=util.PATIENCE)
    assert os.readlink(mnt / 'untar/sub/loop') == '../sub'
    assert read_file(mnt / 'untar/top') == b'data'
    shutil.rmtree(mnt / 'copy')
    shutil.rmtree(mnt / 'untar')
    assert os.listdir(mnt.path) == []


def _script(root):
    """A run of symlink calls; what each gives, for comparing two
    filesystems."""
    out = []

    def do(fn, *args, **kw):
        try:
            r = fn(*args, **kw)
            out.append(r if isinstance(r, (str, bytes, int)) else 'ok')
        except OSError as e:
            out.append(util.errno_name(e))

    def p(*parts):
        return os.path.join(root, *parts)

    do(os.symlink, 'a', p('l'))
    do(os.symlink, 'b', p('l'))
    do(lambda: os.lstat(p('l')).st_size)
    do(lambda: stat.S_IFMT(os.lstat(p('l')).st_mode))
    do(os.readlink, p('l'))
    do(os.open, p('l'), os.O_RDONLY)
    do(lambda: os.close(os.open(p('l'), os.O_CREAT | os.O_WRONLY, 0o644)))
    do(lambda: os.lstat(p('a')).st_size)
    do(os.open, p('l'), os.O_RDONLY | os.O_NOFOLLOW)
    do(os.open, p('l'), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    do(os.mkdir, p('l'))
    do(os.rmdir, p('l'))
    do(os.readlink, p('a'))
    do(os.symlink, 'x' * 4096, p('long'))
    do(os.symlink, 'l/', p('slash'))
    do(os.stat, p('slash'))
    do(os.rename, p('l'), p('slash'))
    do(os.readlink, p('slash'))
    do(os.symlink, 'x', p('a', 'under-a-file'))
    do(os.unlink, p('slash'))
    do(lambda: sorted(os.listdir(root)) == ['a'])
    return out


def test_same_answers_as_tmpfs(mnt, shm_dir):
    assert _script(mnt.path) == _script(shm_dir)


def test_on_a_writeback_cache_mount(mount_factory):
    """The writeback cache refuses file-backed sections, not symlinks."""
    m = mount_factory('cached', options=['writeback_cache'])
    write_file(m / 'f', b'data')
    os.symlink('f', m / 'l')
    assert os.readlink(m / 'l') == 'f'
    assert read_file(m / 'l') == b'data'
    assert stat.S_ISLNK(os.lstat(m / 'l').st_mode)
