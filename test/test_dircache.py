"""The kernel keeps directory listings (FOPEN_CACHE_DIR), and every change
to a directory's names drops its copy: a listing taken after any kind of
change, by this process or another, shows the change.  Each test lists a
directory (so the kernel has it cached), changes it, and lists it again
from another process and from this one, on both data paths.
"""

import os
import subprocess

import pytest

import util
from util import write_file

LIFETIME = 'user.sectionfs.lifetime'


def listing_elsewhere(path):
    """The names another process lists in path, sorted."""
    code = ('import os, sys\n'
            'print("\\n".join(sorted(os.listdir(sys.argv[1]))))\n')
    res = subprocess.run([util.PYTHON, '-I', '-c', code, path],
                         capture_output=True, text=True,
                         timeout=util.PATIENCE)
    assert res.returncode == 0, res.stderr
    return [n for n in res.stdout.split('\n') if n]


def scandir_kinds(path):
    with os.scandir(path) as it:
        return sorted((e.name, e.is_dir(follow_symlinks=False),
                       e.is_symlink()) for e in it)


def check(path, want):
    """path lists as want (sorted names) everywhere, and twice in a row
    (the second from the kernel's copy)."""
    for _ in range(2):
        assert sorted(os.listdir(path)) == want
        assert listing_elsewhere(path) == want


def changes(mnt):
    """(what, change(), the names of 'd' after it) for every kind of
    change, applied in order to a directory 'd' and its sibling 'e'."""
    d = mnt / 'd'
    e = mnt / 'e'

    def create():
        write_file(os.path.join(d, 'f'), b'x')

    def mkdir():
        os.mkdir(os.path.join(d, 'sub'))

    def symlink():
        os.symlink('f', os.path.join(d, 'l'))

    def link():
        os.link(os.path.join(d, 'f'), os.path.join(d, 'g'))

    def mknod():
        os.mkfifo(os.path.join(d, 'p'))

    def rename_within():
        os.rename(os.path.join(d, 'g'), os.path.join(d, 'h'))

    def rename_out():
        os.rename(os.path.join(d, 'h'), os.path.join(e, 'h'))

    def rename_in():
        os.rename(os.path.join(e, 'h'), os.path.join(d, 'i'))

    def exchange():
        # The names stay; what 'i' names becomes a directory.
        os.mkdir(os.path.join(e, 'x'))
        util.renameat2(os.path.join(d, 'i'), os.path.join(e, 'x'),
                       util.RENAME_EXCHANGE)
        assert ('i', True, False) in scandir_kinds(d)

    def replace():
        write_file(os.path.join(d, 'y'), b'y')
        os.rename(os.path.join(d, 'y'), os.path.join(d, 'f'))

    def unlink():
        os.unlink(os.path.join(d, 'l'))

    def rmdir():
        os.rmdir(os.path.join(d, 'sub'))
        os.rmdir(os.path.join(d, 'i'))

    return [
        ('create', create, ['f']),
        ('mkdir', mkdir, ['f', 'sub']),
        ('symlink', symlink, ['f', 'l', 'sub']),
        ('link', link, ['f', 'g', 'l', 'sub']),
        ('mknod', mknod, ['f', 'g', 'l', 'p', 'sub']),
        ('rename within', rename_within, ['f', 'h', 'l', 'p', 'sub']),
        ('rename out', rename_out, ['f', 'l', 'p', 'sub']),
        ('rename in', rename_in, ['f', 'i', 'l', 'p', 'sub']),
        ('exchange', exchange, ['f', 'i', 'l', 'p', 'sub']),
        ('rename over', replace, ['f', 'i', 'l', 'p', 'sub']),
        ('unlink', unlink, ['f', 'i', 'p', 'sub']),
        ('rmdir', rmdir, ['f', 'p']),
    ]


def test_every_change_shows(mnt):
    os.mkdir(mnt / 'd')
    os.mkdir(mnt / 'e')
    check(mnt / 'd', [])
    for what, change, want in changes(mnt):
        change()
        assert sorted(os.listdir(mnt / 'd')) == want, what
        assert listing_elsewhere(mnt / 'd') == want, what


def test_changes_by_another_process_show(mnt):
    """The change comes from another process while this one lists."""
    os.mkdir(mnt / 'd')
    check(mnt / 'd', [])
    code = ('import os, sys; d = sys.argv[1]\n'
            'open(os.path.join(d, "a"), "w").close()\n'
            'os.mkdir(os.path.join(d, "b"))\n'
            'os.rename(os.path.join(d, "a"), os.path.join(d, "c"))\n')
    subprocess.run([util.PYTHON, '-I', '-c', code, mnt / 'd'], check=True,
                   timeout=util.PATIENCE)
    check(mnt / 'd', ['b', 'c'])
    subprocess.run([util.PYTHON, '-I', '-c',
                    'import os, sys; os.unlink(sys.argv[1])',
                    mnt / 'd/c'], check=True, timeout=util.PATIENCE)
    check(mnt / 'd', ['b'])


def test_kinds_follow_a_replaced_name(mnt):
    """A name that changes kind lists with its new d_type."""
    os.mkdir(mnt / 'd')
    write_file(mnt / 'd/n', b'x')
    assert scandir_kinds(mnt / 'd') == [('n', False, False)]
    os.unlink(mnt / 'd/n')
    os.mkdir(mnt / 'd/n')
    assert scandir_kinds(mnt / 'd') == [('n', True, False)]
    os.rmdir(mnt / 'd/n')
    os.symlink('x', mnt / 'd/n')
    assert scandir_kinds(mnt / 'd') == [('n', False, True)]


def test_handle_lifetime_expiry_shows(mount_factory, datapath):
    """A section whose lifetime ends loses its name in the daemon alone;
    the kernel's listing must lose it too."""
    m = mount_factory(datapath, options=['lifetime=handle'])
    os.mkdir(m / 'd')
    keep = os.open(m / 'd/keep', os.O_CREAT | os.O_RDWR, 0o600)
    os.setxattr(m / 'd/keep', LIFETIME, b'name')
    os.close(keep)
    fd = os.open(m / 'd/s', os.O_CREAT | os.O_RDWR, 0o600)
    check(m / 'd', ['keep', 's'])
    os.close(fd)
    assert util.wait_for(lambda: 's' not in os.listdir(m / 'd')), \
        'an expired section stays listed'
    check(m / 'd', ['keep'])


def test_large_directory_lists_whole_after_changes(mnt):
    os.mkdir(mnt / 'd')
    names = ['n%04d' % i for i in range(1500)]
    for n in names:
        write_file(os.path.join(mnt / 'd', n), b'')
    check(mnt / 'd', names)
    for n in names[::3]:
        os.unlink(os.path.join(mnt / 'd', n))
    left = [n for i, n in enumerate(names) if i % 3]
    check(mnt / 'd', left)


@pytest.mark.root
@pytest.mark.other_user
def test_another_users_change_shows(shared_mnt):
    pub = shared_mnt / 'pub'
    check(pub, [])
    assert util.user_op('create', os.path.join(pub, 'theirs')) == 'ok'
    check(pub, ['theirs'])
    assert util.user_op('unlink', os.path.join(pub, 'theirs')) == 'ok'
    check(pub, [])
