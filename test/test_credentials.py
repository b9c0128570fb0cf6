"""Whose rights a file-backed section's I/O runs with: its creator's.

A root daemon serves an allow_other mount to many users.  Everything it
does to a backing file (write, truncate, fallocate, and with passthrough
the kernel's own I/O through the registered file) must behave exactly as
the creator's own direct call would:

- set-ID bits: a user in a program's group who writes it through a
  section clears its set-user-ID and set-group-ID bits, as a direct write
  does (otherwise anyone who may write a set-ID-root program could plant
  code in it and keep the bits);
- reserved blocks: a section cannot fill the blocks ext4 keeps for root;
- disk quotas: a section cannot write past its creator's hard limit.

Each test compares a section with the same user's direct call on a twin
file, on both data paths.  The filesystem tests make a small ext4 on a
loop device, and skip where mkfs.ext4, losetup or mount cannot.
"""

import contextlib
import ctypes
import json
import os
import stat
import subprocess

import pytest

import util

pytestmark = [pytest.mark.root, pytest.mark.other_user,
              pytest.mark.file_backed]

USER = util.NOBODY          # the unprivileged creator
GROUP = 65533               # a group USER is in, that may write the program
MIB = 1 << 20

_AS_USER = r'''
import errno, json, os, sys

def fill(path):
    """Write until the filesystem says no; the bytes it took."""
    chunk, total = b'\xa5' * 65536, 0
    fd = os.open(path, os.O_WRONLY)
    try:
        while True:
            total += os.write(fd, chunk)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
    finally:
        os.close(fd)
    return total

def run(op, args):
    if op == 'symlink':
        os.symlink(args[0], args[1])
    elif op == 'write':
        fd = os.open(args[0], os.O_WRONLY)
        os.write(fd, b'#!/bin/sh\necho planted\n')
        os.close(fd)
    elif op == 'truncate':
        os.truncate(args[0], args[1])
    elif op == 'fallocate':
        fd = os.open(args[0], os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, args[1])
        finally:
            os.close(fd)
    elif op == 'fill':
        return fill(args[0])
    else:
        raise SystemExit('unknown op ' + op)
    return 'ok'

out = []
for op, *args in json.loads(sys.argv[1]):
    try:
        out.append(run(op, args))
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(out))
'''


def as_user(ops):
    """Run [(op, args...)] as USER, in GROUP; their outcomes."""
    argv = ['setpriv', '--reuid=%d' % USER, '--regid=%d' % USER,
            '--groups=%d' % GROUP, '--', util.PYTHON, '-I', '-c', _AS_USER,
            json.dumps([[str(a) if isinstance(a, os.PathLike) else a
                         for a in op] for op in ops])]
    res = subprocess.run(argv, capture_output=True, text=True, cwd='/',
                         timeout=util.PATIENCE * 3)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def setid_program(path):
    """A root-owned set-user-ID and set-group-ID program GROUP may write
    (0o6775: the group's execute bit makes the set-group-ID bit one a
    write must clear too)."""
    util.write_file(path, b'#!/bin/sh\necho root\n')
    os.chown(path, 0, GROUP)
    os.chmod(path, 0o6775)


# (operation, its arguments after the path)
CHANGES = {
    'write': [],
    'truncate': [4096],
    'fallocate': [8192],
}


@pytest.mark.parametrize('change', sorted(CHANGES))
def test_change_through_section_clears_setid_bits(shared_mnt, base_dir,
                                                  change):
    mnt = shared_mnt
    prog = os.path.join(base_dir, 'prog')
    twin = os.path.join(base_dir, 'twin')
    setid_program(prog)
    setid_program(twin)
    link = mnt / 'pub/p'
    args = CHANGES[change]

    got = as_user([('symlink', prog, link), (change, link, *args),
                   (change, twin, *args)])
    assert got == ['ok', 'ok', 'ok']
    direct = stat.S_IMODE(os.stat(twin).st_mode)
    # The premise: the user's own call clears both bits.
    assert direct & (stat.S_ISUID | stat.S_ISGID) == 0, oct(direct)
    through = stat.S_IMODE(os.stat(prog).st_mode)
    assert through == direct, \
        '%s through a section left mode %o, a direct %s %o' % (
            change, through, change, direct)


# --------------------------------------------------------------------------
# Space a section may take: a small ext4 on a loop device

def _run(argv):
    return subprocess.run(argv, capture_output=True, text=True,
                          timeout=util.PATIENCE)


def ext4_skip_reason():
    for tool in ('mkfs.ext4', 'losetup', 'mount', 'umount'):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in ('/usr/sbin', '/sbin', '/usr/bin', '/bin')):
            return '%s is not installed' % tool
    return None


@contextlib.contextmanager
def small_ext4(where, name, mkfs_args=(), mount_opts=None, size=64 * MIB,
               needs='a loop ext4'):
    """A fresh ext4 of size bytes, mounted at where/name, its root owned by
    USER; yields (mountpoint, loop device).  Always unmounted, detached and
    removed.  Skips, saying it needs `needs`, where it cannot be made."""
    reason = ext4_skip_reason()
    if reason:
        pytest.skip(reason)
    image = os.path.join(where, name + '.img')
    point = os.path.join(where, name)
    with open(image, 'wb') as f:
        f.truncate(size)
    os.mkdir(point)
    loop = None
    mounted = False
    try:
        res = _run(['mkfs.ext4', '-q', '-F', *mkfs_args, image])
        if res.returncode:
            pytest.skip('mkfs.ext4 %s: %s' % (' '.join(mkfs_args),
                                              res.stderr.strip()))
        res = _run(['losetup', '--find', '--show', image])
        if res.returncode:
            pytest.skip('losetup: ' + res.stderr.strip())
        loop = res.stdout.strip()
        argv = ['mount', '-t', 'ext4']
        if mount_opts:
            argv += ['-o', mount_opts]
        res = _run(argv + [loop, point])
        if res.returncode:
            pytest.skip('needs %s; mount says: %s'
                        % (needs, res.stderr.strip().splitlines()[0]))
        mounted = True
        os.chown(point, USER, USER)
        os.chmod(point, 0o755)
        yield point, loop
    finally:
        # A section's backing file is let go when the kernel forgets the
        # section, a moment after its last name went (longer under
        # valgrind): until then the filesystem is busy.
        busy = mounted and not util.wait_for(
            lambda: _run(['umount', point]).returncode == 0, interval=0.2)
        if busy:
            _run(['umount', '--lazy', point])
        if loop:
            subprocess.run(['losetup', '--detach', loop], check=True,
                           timeout=util.PATIENCE)
        os.rmdir(point)
        os.unlink(image)
        assert not busy, 'umount %s: still busy' % point


def direct_and_through_section(mnt, base_dir, **fs):
    """Bytes USER writes into an empty file of a fresh small ext4 until
    the filesystem refuses, directly, then through a section on a second
    fresh one made alike."""
    with small_ext4(base_dir, 'direct', **fs) as (point, _):
        target = os.path.join(point, 'f')
        util.write_file(target, b'')
        os.chown(target, USER, USER)
        [direct] = as_user([('fill', target)])
    with small_ext4(base_dir, 'section', **fs) as (point, _):
        target = os.path.join(point, 'f')
        util.write_file(target, b'')
        os.chown(target, USER, USER)
        link = mnt / 'pub/s'
        got = as_user([('symlink', target, link), ('fill', link)])
        assert got[0] == 'ok'
        through = got[1]
        # The section goes before its filesystem is unmounted.
        os.unlink(link)
    assert isinstance(direct, int) and isinstance(through, int), \
        (direct, through)
    return direct, through


# Metadata blocks (extent tree, directory, delayed-allocation worst-case
# reservations) differ a little between a 64 KiB write(2) and the daemon's
# own writes; whole megabytes of slack would not hide root's reserve, which
# here is half the filesystem.
SLACK = 2 * MIB


def test_section_does_not_fill_reserved_blocks(shared_mnt, base_dir):
    direct, through = direct_and_through_section(
        shared_mnt, base_dir, mkfs_args=['-m', '50'])
    assert direct > 4 * MIB, 'the user could write only %d bytes' % direct
    assert through <= direct + SLACK, \
        'a section took %.1f MiB where its creator may write %.1f MiB' % (
            through / MIB, direct / MIB)


# quotactl(2): the user's block hard limit, in 1 KiB units (<sys/quota.h>).
Q_SETQUOTA = 0x800008
USRQUOTA = 0
QIF_BLIMITS = 1


class IfDqblk(ctypes.Structure):
    _fields_ = [('dqb_bhardlimit', ctypes.c_uint64),
                ('dqb_bsoftlimit', ctypes.c_uint64),
                ('dqb_curspace', ctypes.c_uint64),
                ('dqb_ihardlimit', ctypes.c_uint64),
                ('dqb_isoftlimit', ctypes.c_uint64),
                ('dqb_curinodes', ctypes.c_uint64),
                ('dqb_btime', ctypes.c_uint64),
                ('dqb_itime', ctypes.c_uint64),
                ('dqb_valid', ctypes.c_uint32)]


def set_block_hard_limit(loop, uid, limit):
    libc = ctypes.CDLL(None, use_errno=True)
    dq = IfDqblk(dqb_bhardlimit=limit // 1024, dqb_valid=QIF_BLIMITS)
    if libc.quotactl((Q_SETQUOTA & ~0xff) | USRQUOTA, loop.encode(),
                     uid, ctypes.byref(dq)):
        e = ctypes.get_errno()
        pytest.skip('quotactl(Q_SETQUOTA): %s' % os.strerror(e))


LIMIT = 8 * MIB


@contextlib.contextmanager
def quota_ext4(where, name):
    """small_ext4 with user quotas enforced and USER held to LIMIT."""
    with small_ext4(where, name, mkfs_args=['-m', '0', '-O', 'quota',
                                            '-E', 'quotatype=usrquota'],
                    mount_opts='usrquota',
                    needs='ext4 user quotas (CONFIG_QFMT_V2)') \
            as (point, loop):
        set_block_hard_limit(loop, USER, LIMIT)
        yield point, loop


def test_section_keeps_to_disk_quota(shared_mnt, base_dir):
    counts = []
    for name, through_section in (('direct', False), ('section', True)):
        with quota_ext4(base_dir, name) as (point, _):
            target = os.path.join(point, 'f')
            util.write_file(target, b'')
            os.chown(target, USER, USER)
            if through_section:
                link = shared_mnt / 'pub/q'
                got = as_user([('symlink', target, link), ('fill', link)])
                assert got[0] == 'ok'
                os.unlink(link)
                counts.append(got[1])
            else:
                counts.append(as_user([('fill', target)])[0])
    direct, through = counts
    assert isinstance(direct, int) and isinstance(through, int), counts
    assert direct <= LIMIT, 'the quota held nothing: %d bytes' % direct
    assert through <= direct + SLACK, \
        'a section wrote %.1f MiB past a quota of %.1f MiB' % (
            through / MIB, LIMIT / MIB)
