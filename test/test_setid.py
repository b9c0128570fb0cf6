"""Set-ID bits go as on tmpfs: a write, truncate or truncating open by a
user without CAP_FSETID clears set-user-ID, and set-group-ID where the
group may execute (the kernel's should_remove_suid); root's writes keep
them; opening for writing without writing changes nothing; chown clears
them.  Held against /dev/shm case by case, on both data paths (on
passthrough the writes never reach the daemon: the kernel tells it).
"""

import os
import stat
import subprocess

import pytest

import util

pytestmark = [pytest.mark.root, pytest.mark.other_user]

_OP = r'''
import errno, os, sys
op, path = sys.argv[1], sys.argv[2]
try:
    if op == 'write':
        fd = os.open(path, os.O_WRONLY); os.write(fd, b'x'); os.close(fd)
    elif op == 'append':
        fd = os.open(path, os.O_WRONLY | os.O_APPEND); os.write(fd, b'x')
        os.close(fd)
    elif op == 'open':
        os.close(os.open(path, os.O_WRONLY))
    elif op == 'truncate':
        os.truncate(path, 1)
    elif op == 'otrunc':
        os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))
    elif op == 'chown':
        os.chown(path, -1, -1)
    elif op == 'touch':
        os.utime(path)
    elif op == 'touch-omit':
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        omit = (ctypes.c_long * 4)(0, (1 << 30) - 2, 0, (1 << 30) - 2)
        if libc.utimensat(-100, os.fsencode(path), omit, 0):
            raise OSError(ctypes.get_errno(), 'utimensat')
    else:
        sys.exit('unknown op ' + op)
    print('ok')
except OSError as e:
    print(errno.errorcode[e.errno])
'''

MODES = [0o4777, 0o2777, 0o6777, 0o2767, 0o4755]
OPS = ['write', 'append', 'open', 'truncate', 'otrunc']


def run_op(op, path, uid):
    argv = [util.PYTHON, '-I', '-c', _OP, op, path]
    if uid != 0:
        argv = util.as_user_argv(uid) + argv
    res = subprocess.run(argv, capture_output=True, text=True, cwd='/',
                         timeout=util.PATIENCE)
    assert res.returncode == 0, (op, path, uid, res.stderr)
    return res.stdout.strip()


def try_op(directory, mode, op, uid, gid=0):
    """uid's op on a new file of mode mode and group gid in directory: its
    outcome ('ok' or an errno name) and the file's mode after, as another
    process sees it."""
    path = os.path.join(directory, 'f')
    with open(path, 'wb') as f:
        f.write(b'data')
    os.chown(path, 0, gid)
    os.chmod(path, mode)
    res = run_op(op, path, uid)
    got = stat.S_IMODE(os.stat(path).st_mode)
    os.unlink(path)
    return res, got


def mode_after(directory, mode, op, uid, gid=0):
    res, got = try_op(directory, mode, op, uid, gid)
    assert res == 'ok', (oct(mode), op, uid, res)
    return got


def outcomes(directory, uid):
    ops = OPS + (['chown', 'touch', 'touch-omit'] if uid == 0 else [])
    return {(oct(mode), op, gid): try_op(directory, mode, op, uid, gid)
            for mode in MODES for op in ops for gid in (0, util.NOBODY)}


@pytest.fixture
def shm(shm_dir):
    os.chmod(shm_dir, 0o1777)
    return shm_dir


def test_unprivileged_write_clears_setid(shared_mnt):
    pub = shared_mnt / 'pub'
    # A set-user-ID bit goes; set-group-ID with group execute goes.
    assert mode_after(pub, 0o4777, 'write', util.NOBODY) == 0o777
    assert mode_after(pub, 0o2777, 'write', util.NOBODY) == 0o777
    assert mode_after(pub, 0o6777, 'write', util.NOBODY) == 0o777
    # Set-group-ID without group execute marks no program: it goes only
    # when the writer is outside the file's group.
    assert mode_after(pub, 0o2767, 'write', util.NOBODY) == 0o767
    assert mode_after(pub, 0o6767, 'write', util.NOBODY) == 0o767
    assert mode_after(pub, 0o6767, 'write', util.NOBODY,
                      gid=util.NOBODY) == 0o2767
    assert mode_after(pub, 0o6777, 'write', util.NOBODY,
                      gid=util.NOBODY) == 0o777


def test_unprivileged_truncate_clears_setid(shared_mnt):
    pub = shared_mnt / 'pub'
    assert mode_after(pub, 0o4777, 'truncate', util.NOBODY) == 0o777
    assert mode_after(pub, 0o4777, 'otrunc', util.NOBODY) == 0o777


def test_open_without_writing_and_root_keep_setid(shared_mnt):
    pub = shared_mnt / 'pub'
    assert mode_after(pub, 0o4777, 'open', util.NOBODY) == 0o4777
    assert mode_after(pub, 0o6777, 'write', 0) == 0o6777
    assert mode_after(pub, 0o6777, 'otrunc', 0) == 0o6777


def test_same_as_tmpfs_for_another_user(shared_mnt, shm):
    assert outcomes(shared_mnt / 'pub', util.NOBODY) == \
        outcomes(shm, util.NOBODY)


def test_same_as_tmpfs_for_root(shared_mnt, shm):
    assert outcomes(shared_mnt / 'pub', 0) == outcomes(shm, 0)


def test_directory_keeps_setgid(shared_mnt):
    d = shared_mnt / 'pub/d'
    os.mkdir(d)
    os.chmod(d, 0o2777)
    with open(os.path.join(d, 'f'), 'wb') as f:
        f.write(b'x')
    os.chmod(os.path.join(d, 'f'), 0o666)
    run_op('write', os.path.join(d, 'f'), util.NOBODY)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o2777
