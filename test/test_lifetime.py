"""Section lifetime, on both data paths: -o lifetime=handle and the
user.sectionfs.lifetime attribute, as README and sectionfs(8) state it,
with who may set a section's lifetime and seals (its owner) and
setxattr's XATTR_CREATE and XATTR_REPLACE on them.

Under lifetime=handle a section goes when its last handle and its last
view are gone; RELEASE is asynchronous to close(2), so the tests poll
(util.wait_for) for the disappearance.  Set by attribute, it counts only
handles opened after it.

Where a test needs "nothing happened" after an asynchronous RELEASE, it
waits on a barrier (release_barrier): a sentinel handle-lifetime section
opened and closed afterwards, which the kernel releases after the one under
test.  A RELEASE handled late could only let such a test pass wrongly, never
fail wrongly.  Every wait is bounded; no timing is asserted.
"""

import os
import stat
import subprocess

import pytest

import util
from util import (CREATORS, LIFETIME, PAGE, SEALS, View, gone, make_section,
                  outcome)


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
