"""Symlink targets one user may aim at a shared mount, and what the
daemon must do with them: answer every call, keep serving everyone.

- a target the kernel cannot pass through (a file on overlayfs, a section
  of another sectionfs mount) is refused at symlink() with EINVAL on a
  passthrough mount, never left to fail at every open;
- a target on any FUSE filesystem is refused with EINVAL on both data
  paths, without sending that filesystem a request: two shared mounts
  whose users make symlinks into each other, and a FUSE daemon that no
  longer answers, must not hang symlink();
- who may change lifetime and seals is decided before the value is
  looked at;
- a backing file replaced by a rename (an editor's save) or moved is
  reported as such by user.sectionfs.backing_now and sectionctl.

Each test that could hang runs under a watchdog that aborts the FUSE
connections involved, so that a regression fails instead of hanging.
"""

import json
import os
import signal
import subprocess
import threading

import pytest

import util
from test_hostile import as_user, make_owned, still_serving
from test_sectionctl import run as sectionctl_run
from test_stress import deadline  # noqa: F401 (autouse: bounds each test)
from util import (BACKING, BACKING_NOW, LIFETIME, SEALS, read_file,
                  write_file)

NOBODY = util.NOBODY
OTHER = 65533

#: How long calls that must return may take before the watchdog aborts
#: the connections (a bound for a hang, not a measure of speed).
WATCHDOG = 60.0 + util.PATIENCE


def symlink_outcome(target, name):
    try:
        os.symlink(target, name)
        return 'ok'
    except OSError as e:
        return util.errno_name(e)


class Watchdog:
    """After seconds, abort the FUSE connections of mounts (by mountinfo,
    never a call into them) so that a hung test ends; .fired says so."""

    def __init__(self, mounts, seconds=WATCHDOG):
        self.mounts = list(mounts)
        self.fired = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self):
        self.fired.append('calls still running after %ds' % WATCHDOG)
        for m in self.mounts:
            why = util.abort_fuse_connection(m.path)
            if why:
                self.fired.append(why)

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()
        return False


# --------------------------------------------------------------------------
# Targets the kernel cannot pass through

@pytest.fixture
def overlay(base_dir):
    """An overlayfs mount with one file, f ("OVERLAY"); unmounted after."""
    if util.root_skip_reason():
        pytest.skip(util.root_skip_reason())
    top = os.path.join(base_dir, 'ovl')
    dirs = {d: os.path.join(top, d) for d in ('lower', 'upper', 'work',
                                              'merged')}
    for d in dirs.values():
        os.makedirs(d)
    write_file(os.path.join(dirs['lower'], 'f'), b'OVERLAY')
    res = subprocess.run(['mount', '-t', 'overlay', 'overlay', '-o',
                          'lowerdir=%(lower)s,upperdir=%(upper)s,'
                          'workdir=%(work)s' % dirs, dirs['merged']],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip('cannot mount overlayfs here: ' + res.stderr.strip())
    try:
        yield dirs['merged']
    finally:
        # A cached section over the file may still hold it: lazily.
        subprocess.run(['umount', '-l', dirs['merged']], capture_output=True)


@pytest.mark.root
@pytest.mark.file_backed
def test_overlay_target(mnt, overlay):
    """overlayfs is a stacked filesystem: the kernel will not pass its
    files through (FUSE stacks at most one level), so a passthrough mount
    refuses it at symlink().  The cached path serves it itself."""
    target = os.path.join(overlay, 'f')
    got = symlink_outcome(target, mnt / 's')
    if mnt.datapath == 'passthrough':
        if got == 'ok':
            # What used to happen: made, then every open failed, and the
            # failed opens crashed the daemon.
            opens = []
            for _ in range(15):
                try:
                    os.close(os.open(mnt / 's', os.O_RDONLY))
                    opens.append('ok')
                except OSError as e:
                    opens.append(util.errno_name(e))
            still_serving(mnt)
            pytest.fail('symlink to an overlayfs file made a section; '
                        'its opens: %s' % opens)
        assert got == 'EINVAL'
        assert os.listdir(mnt.path) == []
        still_serving(mnt)
    else:
        assert got == 'ok'
        assert read_file(mnt / 's') == b'OVERLAY'
        write_file(mnt / 's', b'CHANGED')
        assert read_file(target) == b'CHANGED'
        os.unlink(mnt / 's')


@pytest.mark.root
@pytest.mark.file_backed
def test_section_of_another_mount_target(mount_factory, datapath):
    """A section of a second sectionfs mount is a file on FUSE: EINVAL on
    both data paths, and the second mount is never asked."""
    a = mount_factory(datapath)
    b = mount_factory(datapath)
    write_file(b / 'f', b'IN B')
    with Watchdog([a, b]) as dog:
        got = symlink_outcome(b / 'f', a / 's')
    assert not dog.fired, dog.fired
    assert got == 'EINVAL'
    assert os.listdir(a.path) == []
    still_serving(a)
    still_serving(b)


# --------------------------------------------------------------------------
# FUSE filesystems on the way: never asked

_LINKER = r'''
import errno, json, os, sys, time
target_dir, pub, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
results, n = {}, 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    # A name never looked up before: its lookup reaches the daemon.
    try:
        os.symlink(os.path.join(target_dir, 'f%d.%d' % (os.getpid(), n)),
                   os.path.join(pub, 's%d.%d' % (os.getpid(), n)))
        k = 'ok'
    except OSError as e:
        k = errno.errorcode.get(e.errno, str(e.errno))
    results[k] = results.get(k, 0) + 1
    n += 1
print(json.dumps(results))
'''


def start_linker(uid, target_dir, pub, seconds):
    return subprocess.Popen(util.as_user_argv(uid)
                            + [util.PYTHON, '-I', '-c', _LINKER,
                               str(target_dir), str(pub), str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd='/')


def finish_linkers(procs):
    """Each linker's result; fails if one failed."""
    out = []
    for p in procs:
        # The watchdog ends a hang; this bound is only a backstop.
        stdout, stderr = p.communicate(timeout=2 * WATCHDOG)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout))
    return out


@pytest.mark.root
@pytest.mark.other_user
@pytest.mark.file_backed
def test_cross_mount_symlinks(mount_factory, datapath):
    """Users of two shared mounts make symlinks into each other, in both
    directions at once, for some seconds: every call returns EINVAL and
    both mounts keep serving.  (A daemon that looked the target up in the
    other mount, while the kernel held the directory of the symlink for
    the whole request, deadlocked with the other daemon doing the same.)"""
    mounts = []
    for _ in range(2):
        m = mount_factory(datapath, options=['allow_other'])
        for d in ('pub', 'files'):
            os.mkdir(m / d)
            os.chmod(m / d, 0o1777 if d == 'pub' else 0o755)
        mounts.append(m)
    a, b = mounts
    with Watchdog(mounts) as dog:
        procs = [start_linker(NOBODY, b / 'files', a / 'pub', 5),
                 start_linker(OTHER, a / 'files', b / 'pub', 5),
                 start_linker(NOBODY, a / 'pub', b / 'pub', 5),
                 start_linker(OTHER, b / 'pub', a / 'pub', 5)]
        results = finish_linkers(procs)
    print('cross-mount symlinks:', results)
    assert not dog.fired, ('symlink() hung; connections aborted: %s'
                           % dog.fired)
    for r in results:
        assert set(r) == {'EINVAL'}, results
    for m in mounts:
        assert os.listdir(m / 'pub') == []
        still_serving(m)


@pytest.mark.root
@pytest.mark.other_user
@pytest.mark.file_backed
def test_target_on_stalled_fuse_mount(mount_factory, datapath):
    """A FUSE daemon that stops answering (here a second sectionfs,
    stopped by SIGSTOP) as a target's prefix: symlink() returns EINVAL,
    and never waits for it."""
    a = mount_factory(datapath, options=['allow_other'])
    b = mount_factory(datapath, options=['allow_other'])
    os.mkdir(a / 'pub')
    os.chmod(a / 'pub', 0o1777)
    os.mkdir(b / 'dir')
    os.kill(b.pid, signal.SIGSTOP)
    try:
        with Watchdog([a, b]) as dog:
            procs = [start_linker(NOBODY, b / 'dir', a / 'pub', 1),
                     start_linker(NOBODY, b.path + '/never', a / 'pub', 1)]
            results = finish_linkers(procs)
    finally:
        os.kill(b.pid, signal.SIGCONT)
    print('stalled target:', results)
    assert not dog.fired, ('symlink() waited on a stopped FUSE daemon; '
                           'connections aborted: %s' % dog.fired)
    for r in results:
        assert set(r) == {'EINVAL'}, results
    assert os.listdir(a / 'pub') == []
    still_serving(a)
    still_serving(b)


# --------------------------------------------------------------------------
# Section controls: who first, then what

@pytest.mark.root
@pytest.mark.other_user
def test_malformed_control_from_non_owner_is_eperm(shared_mnt):
    """A user who may not change a section's lifetime or seals learns
    EPERM whatever the value; the owner learns EINVAL for a bad one."""
    mnt = shared_mnt
    p = mnt / 'pub'
    make_owned(p + '/r', 0, 0o666)
    assert as_user(NOBODY, [('create', p + '/n', '666')]) == ['ok']
    bad = [('setxattr', p + '/r', SEALS, 'grow,bogus'),
           ('setxattr', p + '/r', SEALS, ''),
           ('setxattr', p + '/r', LIFETIME, 'forever'),
           ('setxattr', p + '/r', LIFETIME, 'name\0')]
    assert as_user(NOBODY, bad) == ['EPERM'] * 4
    assert as_user(OTHER, [(op, p + '/n', name, v)
                           for op, _, name, v in bad]) == ['EPERM'] * 4
    # The owner is told what is wrong with the value.
    assert as_user(NOBODY, [(op, p + '/n', name, v)
                            for op, _, name, v in bad
                            if v]) == ['EINVAL'] * 3
    # Unknown names stay unknown, and nothing changed.
    assert as_user(NOBODY, [('setxattr', p + '/r',
                             'user.sectionfs.nothing', 'x')]) == ['ENODATA']
    assert os.getxattr(p + '/r', LIFETIME) == b'name'
    assert os.getxattr(p + '/n', SEALS) == b''


# --------------------------------------------------------------------------
# A backing file replaced or moved

def ctl_info(path):
    res = sectionctl_run('info', path)
    assert res.returncode == 0, res.stderr
    return dict(line.split(': ', 1) for line in res.stdout.splitlines())


def ctl_json(path):
    res = sectionctl_run('ls', '--json', path)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)[0]


@pytest.mark.root
@pytest.mark.file_backed
def test_backing_replaced_by_rename(mnt, base_dir):
    """An editor saves by writing a new file and renaming it over the
    old: the section keeps the old file, and says so."""
    f = os.path.join(base_dir, 'f')
    write_file(f, b'old')
    os.symlink(f, mnt / 's')
    assert os.getxattr(mnt / 's', BACKING) == f.encode()
    assert os.getxattr(mnt / 's', BACKING_NOW) == f.encode()
    assert ctl_info(mnt / 's')['backing'] == f
    assert ctl_json(mnt / 's')['backing_now'] == f

    write_file(f + '.tmp', b'new')
    os.rename(f + '.tmp', f)
    # The section's writes still go to the old file, which has no name.
    write_file(mnt / 's', b'written')
    assert read_file(f) == b'new'
    assert os.getxattr(mnt / 's', BACKING) == f.encode()
    assert os.getxattr(mnt / 's', BACKING_NOW) == b''
    info = ctl_info(mnt / 's')['backing']
    assert info.startswith(f + ' (replaced'), info
    assert ctl_json(mnt / 's')['backing_now'] == ''
    res = sectionctl_run('ls', mnt.path)
    assert f + ' (replaced)' in res.stdout, res.stdout

    os.unlink(f)
    info = ctl_info(mnt / 's')['backing']
    assert info.startswith(f + ' (deleted'), info


@pytest.mark.root
@pytest.mark.file_backed
def test_backing_moved(mnt, base_dir):
    f = os.path.join(base_dir, 'f')
    g = os.path.join(base_dir, 'g')
    write_file(f, b'data')
    os.symlink(f, mnt / 's')
    os.rename(f, g)
    write_file(mnt / 's', b'moved')
    assert read_file(g) == b'moved'
    assert os.getxattr(mnt / 's', BACKING) == f.encode()
    assert os.getxattr(mnt / 's', BACKING_NOW) == g.encode()
    info = ctl_info(mnt / 's')['backing']
    assert info == '%s (moved: the file is now %s)' % (f, g), info
    os.rename(g, f)
    assert ctl_info(mnt / 's')['backing'] == f
