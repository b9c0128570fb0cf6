"""The keeper: a mount outlives the process serving it.

sectionfs runs as a keeper (the process started, which mounts and holds
the connection) and a server (its child, which serves).  When the server
dies, the keeper starts another at once: the mount stays connected, new
names are served, and what the kernel reaches without the daemon (a
passthrough view or fd) keeps working.  A request that kills server
after server is answered EIO; servers that die before serving make the
keeper give up.  The keeper goes when the mount goes.

What the successor adopts of the namespace is test_record.py's; these
tests hold the processes and the connection to their promises.
Processes are handled by PID only.
"""

import errno
import os
import shutil
import signal
import subprocess

import pytest

import util
from util import PAGE, View, pattern, read_file, write_file

pytestmark = pytest.mark.root

#: FUSE opcodes the test hooks are given (<linux/fuse.h>).
FUSE_MKDIR = 9
FUSE_INIT = 26


def hooks_skip_reason():
    """Why the daemon under test has no test hooks, or None."""
    out = subprocess.run([util.daemon_binary(), '-V'], capture_output=True,
                         text=True).stdout
    if "test suite's hooks" not in out:
        return 'needs a daemon built with ./configure --enable-test-hooks'
    return None


def kill_server(m):
    """SIGKILL m's server by PID; returns the PID of the one after it."""
    old = m.pid
    assert old != m.keeper_pid, 'no server apart from the keeper'
    os.kill(old, signal.SIGKILL)
    new = m.server_pid(other_than=old)
    assert new is not None, 'no server took over from %d' % old
    return new


def close_quietly(fd):
    """Close an fd opened before a kill.  Until the record gives the
    successor the handle, the flush on close may fail; the fd is closed
    either way."""
    try:
        os.close(fd)
    except OSError:
        pass


def test_mount_is_kept_by_a_keeper(mnt):
    """The process started keeps the mount; a server, its child, serves."""
    server = mnt.pid
    assert server != mnt.keeper_pid, \
        'the mount is served by the process started, with no keeper'
    write_file(mnt / 'a', b'x')
    assert read_file(mnt / 'a') == b'x'


def test_sigkill_of_the_server_leaves_the_mount_served(mnt):
    """A server killed by SIGKILL: no caller sees ENOTCONN, a new server
    serves new names at once."""
    write_file(mnt / 'before', b'old')
    kill_server(mnt)
    data = os.urandom(3 * PAGE + 5)
    write_file(mnt / 'after', data)
    assert read_file(mnt / 'after') == data
    os.mkdir(mnt / 'dir')
    write_file(mnt / 'dir/f', b'in a directory')
    assert os.listdir(mnt / 'dir') == ['f']
    assert 'after' in os.listdir(mnt.path)
    # And again: every server has a successor.
    kill_server(mnt)
    write_file(mnt / 'third', b'3')
    assert read_file(mnt / 'third') == b'3'


def test_passthrough_fd_and_view_outlive_the_server(pt_mnt):
    """With passthrough the kernel reaches a section's bytes itself: an
    fd and a view made before the kill keep reading and writing them,
    while the next server serves new names."""
    m = pt_mnt
    path = m / 'k'
    write_file(path, pattern(0, 4 * PAGE, 1))
    fd = os.open(path, os.O_RDWR)
    try:
        with View(path, 'shared') as view:
            kill_server(m)
            assert util.pread_all(fd, 4 * PAGE, 0) == pattern(0, 4 * PAGE, 1)
            assert os.pwrite(fd, pattern(0, PAGE, 2), 0) == PAGE
            assert view.verify(0, PAGE, 2).startswith('ok')
            view.write(2 * PAGE, PAGE, 3)
            assert os.pread(fd, PAGE, 2 * PAGE) == pattern(2 * PAGE, PAGE, 3)
            write_file(m / 'new', b'served')
            assert read_file(m / 'new') == b'served'
    finally:
        close_quietly(fd)


def test_cached_fd_outlives_the_server(mount_factory):
    """The cached path reads through the daemon: an fd opened before the
    kill works through the next server, which adopted its handle."""
    m = mount_factory('cached')
    write_file(m / 'k', pattern(0, 4 * PAGE, 1))
    fd = os.open(m / 'k', os.O_RDWR)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        kill_server(m)
        assert os.pread(fd, PAGE, 0) == pattern(0, PAGE, 1)
    finally:
        close_quietly(fd)


def test_keeper_and_server_exit_at_unmount(mnt):
    """Unmounting ends the server and the keeper, exit status 0, after a
    restart too, and no process of the mount is left."""
    first = mnt.pid
    second = kill_server(mnt)
    write_file(mnt / 'a', b'a')
    res = mnt.umount()
    assert res.returncode == 0, res.stderr
    assert mnt.wait_exit() == 0
    assert util.wait_for(lambda: not util.pid_alive(second)), \
        'server %d still running after unmount' % second
    assert not util.pid_alive(first)
    assert not util.is_mounted(mnt.path)


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT],
                         ids=['SIGTERM', 'SIGINT'])
def test_signal_to_the_keeper_stops_the_mount(mnt, sig):
    """A service manager stops a mount by signalling the process it
    started, the keeper: it stops the server, unmounts, and exits 0."""
    server = mnt.pid
    write_file(mnt / 'a', b'a')
    os.kill(mnt.keeper_pid, sig)
    rc = mnt.wait_exit()
    mnt.expect_exit(rc)
    assert rc == 0, 'keeper exited with status %s after %s' % (rc, sig.name)
    assert not util.is_mounted(mnt.path)
    assert util.wait_for(lambda: not util.pid_alive(server))


def in_child(m, code, *args):
    """Run code (Python lines, its arguments in sys.argv[1:]) in a child
    process and return what it printed: 'ok' or the errno's name, so that
    a call that never returns fails the test instead of hanging it.  A
    request already handed to a server cannot be interrupted, not even by
    SIGKILL: one that never returns is ended by aborting the mount's
    connection."""
    prog = ('import os, sys, errno\n'
            'try:\n' +
            ''.join('    %s\n' % line for line in code.splitlines()) +
            '    print("ok")\n'
            'except OSError as e:\n'
            '    print(errno.errorcode[e.errno])\n')
    proc = subprocess.Popen([util.PYTHON, '-c', prog] + list(args),
                            stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=util.PATIENCE)
    except subprocess.TimeoutExpired:
        why = util.abort_fuse_connection(m.path)
        proc.kill()
        proc.communicate()
        m.expect_exit(m.proc.wait(util.PATIENCE))
        pytest.fail('%r did not return within %ds; %s' % (
            code, util.PATIENCE, why or 'connection aborted'))
    return out.strip()


def timed_mkdir(m, path):
    """mkdir path in a child process (in_child)."""
    return in_child(m, 'os.mkdir(sys.argv[1])', path)


#: What keeps a test off io_uring when the machine or valgrind cannot.
URING_MARKS = [
    pytest.mark.skipif(util.uring_skip_reason() is not None,
                       reason=util.uring_skip_reason() or ''),
    pytest.mark.skipif(util.VALGRIND, reason='valgrind 3.19 hangs a daemon '
                       'serving io_uring (see util.IO_URING)')]

#: The kernel sends again (FUSE_NOTIFY_RESEND) only the requests a dead
#: server read from /dev/fuse, never those it took from its rings.
NOT_RESENT = pytest.mark.xfail(
    strict=True, reason='Linux 6.18 does not send again a request left '
    'on a dead server\'s ring: its caller waits until the connection is '
    'aborted')


def hooked_mount(mount_factory, datapath, transport, monkeypatch,
                 options=(), **env):
    """A mount whose servers have the test hooks env set, with options
    besides the transport's."""
    why = hooks_skip_reason()
    if why:
        pytest.skip(why)
    for name, value in env.items():
        monkeypatch.setenv('SECTIONFS_TEST_' + name, value)
    if transport == 'io_uring':
        with util.enable_uring('Y'):
            return mount_factory(datapath,
                                 options=['io_uring=on', *options])
    return mount_factory(datapath, options=['io_uring=off', *options])


def test_first_server_killed_before_answering_init(mount_factory, datapath,
                                                   monkeypatch):
    """The first server dies as it answers INIT (a test hook): the
    kernel sends INIT again to the next server, and the mount is set up
    and served."""
    m = hooked_mount(mount_factory, datapath, 'dev_fuse', monkeypatch,
                     DIE_OPCODE=str(FUSE_INIT), DIE_TIMES='1')
    write_file(m / 'a', b'served')
    assert read_file(m / 'a') == b'served'
    # The keeper said so before the mount was served; the collector
    # thread may not have read it from the pipe yet.
    assert util.wait_for(lambda: 'starting another' in m.stderr), \
        m.stderr


@pytest.mark.parametrize('transport', [
    'dev_fuse',
    pytest.param('io_uring', marks=URING_MARKS + [NOT_RESENT])])
def test_request_in_flight_at_a_death_is_sent_again(
        mount_factory, datapath, transport, monkeypatch):
    """A server that dies after carrying out a request and before its
    reply (a test hook, once): the kernel sends the request again to the
    next server, and the caller sees it done, never an error."""
    m = hooked_mount(mount_factory, datapath, transport, monkeypatch,
                     DIE_OPCODE=str(FUSE_MKDIR), DIE_TIMES='1')
    first = m.pid
    assert timed_mkdir(m, m / 'd') == 'ok'
    assert m.server_pid(other_than=first) is not None
    assert os.path.isdir(m / 'd')
    write_file(m / 'd/f', b'f')
    assert os.listdir(m / 'd') == ['f']


def test_request_that_kills_every_server_gets_eio(
        mount_factory, datapath, monkeypatch):
    """A request whose server dies before answering it, again and again
    (here: every mkdir, by a test hook), is answered EIO after a few
    servers rather than kill them all; other requests are served."""
    m = hooked_mount(mount_factory, datapath, 'dev_fuse', monkeypatch,
                     DIE_OPCODE=str(FUSE_MKDIR), DIE_TIMES='1000')
    first = m.pid
    write_file(m / 'a', b'a')
    assert timed_mkdir(m, m / 'd') == 'EIO'
    assert m.alive(), 'the keeper gave up'
    assert m.server_pid(other_than=first) is not None
    # The mount serves what does not kill it.
    write_file(m / 'b', b'still served')
    assert read_file(m / 'b') == b'still served'


def test_servers_that_die_at_start_make_the_keeper_give_up(
        mount_factory, datapath, monkeypatch):
    """Successors that die before serving (a test hook) make the keeper
    give up after a few, rather than loop: the mount then answers
    ENOTCONN, as when a daemon dies without a keeper."""
    m = hooked_mount(mount_factory, datapath, 'dev_fuse', monkeypatch,
                     DIE_AT_START='1')
    write_file(m / 'a', b'a')
    os.kill(m.pid, signal.SIGKILL)
    assert m.wait_exit() == 1, 'the keeper did not give up'
    m.expect_exit(1)
    util.expect_errno(errno.ENOTCONN, os.listdir, m.path)


def on_uring(fn):
    for mark in URING_MARKS:
        fn = mark(fn)
    return fn


@on_uring
def test_successor_serves_over_fresh_rings(mount_factory, datapath):
    """A mount served over io_uring (io_uring=on): the successor
    registers queues of its own on the connection and serves new
    requests over them.  (A request made while the successor registers
    may wait on a queue with no entry yet, until another request on it
    is answered, and one made as the dead server's rings are torn down
    may fail ECANCELED: the test starts once every queue registered.)"""
    with util.enable_uring('Y'):
        m = mount_factory(datapath, options=['io_uring=on'])
    write_file(m / 'a', b'a' * 5000)
    assert util.uring_completions(m.pid), 'the first server has no rings'
    queues = len(util.uring_submitted(m.pid))
    new = kill_server(m)

    def registered():
        heads = util.uring_submitted(new)
        return len(heads) == queues and all(heads)
    assert util.wait_for(registered), \
        'the successor did not register %d queues: %s' % (
            queues, util.uring_submitted(new))
    # In a child: a request the kernel put on a dead ring would never be
    # answered, and the test must then fail, not hang (in_child).
    code = ('for i in range(50):\n'
            '    data = bytes([i]) * 5000\n'
            '    path = "%s/f%d" % (sys.argv[1], i)\n'
            '    with open(path, "wb") as f:\n'
            '        f.write(data)\n'
            '    with open(path, "rb") as f:\n'
            '        assert f.read() == data')
    assert in_child(m, code, m.path) == 'ok'
    done = util.uring_completions(new)
    assert done and done >= 100, \
        'the successor served %s requests over its rings' % done


def upgrade(m, user=None):
    """sectionfs --upgrade m; returns the CompletedProcess."""
    argv = [util.daemon_binary(), '--upgrade', m.path]
    if user is not None:
        argv = util.as_user_argv(user) + argv
    return subprocess.run(argv, capture_output=True, text=True,
                          timeout=util.PATIENCE)


def test_upgrade_hands_the_mount_to_a_new_server(mnt):
    """sectionfs --upgrade MOUNTPOINT: the binary installed where the
    mount's was started from takes over; the mount stays, the old server
    exits, the new one serves, and it can be upgraded and killed again."""
    old = mnt.pid
    res = upgrade(mnt)
    assert res.returncode == 0, res.stderr
    assert 'upgraded' in res.stdout
    new = mnt.server_pid(other_than=old)
    assert new is not None
    assert util.wait_for(lambda: not util.pid_alive(old)), \
        'the old server %d is still running' % old
    write_file(mnt / 'after', b'served by the new server')
    assert read_file(mnt / 'after') == b'served by the new server'
    res = upgrade(mnt)
    assert res.returncode == 0, res.stderr
    third = mnt.server_pid(other_than=new)
    kill_server(mnt)
    assert third is not None
    write_file(mnt / 'later', b'l')
    assert read_file(mnt / 'later') == b'l'


def test_upgrade_under_load_loses_nothing(mount_factory, datapath):
    """An upgrade while a writer makes sections: no call fails, and every
    section written, before or after, reads back whole.  Over /dev/fuse,
    as io_uring=auto serves a kept mount: over io_uring, Linux 6.18 ends
    with ECANCELED a request it hands to the rings of a server as that
    server exits, and one it queued as the next server registered its
    rings can wait for ever (README, "If the daemon dies")."""
    import threading
    mnt = mount_factory(datapath, options=['io_uring=off'])
    stop = threading.Event()
    errors, written = [], []

    def load():
        i = 0
        while not stop.is_set():
            data = pattern(0, 3 * PAGE + i, i)
            try:
                write_file(mnt / ('w%d' % i), data)
                written.append((i, data))
            except OSError as e:
                errors.append(e)
            i += 1
    t = threading.Thread(target=load)
    t.start()
    try:
        util.wait_for(lambda: len(written) >= 20)
        res = upgrade(mnt)
        util.wait_for(lambda: len(written) >= 40)
    finally:
        stop.set()
        t.join()
    assert res.returncode == 0, res.stderr
    assert not errors
    for i, data in written:
        assert read_file(mnt / ('w%d' % i)) == data


@pytest.mark.parametrize('hook, why', [
    ('STATE_VERSION', "the mount's state is version 999"),
    ('RECORD_VERSION', "the mount's record is version 999"),
], ids=['state', 'record'])
def test_refused_upgrade_leaves_the_old_server_serving(
        mount_factory, datapath, monkeypatch, hook, why):
    """A binary that cannot read the mount's state or its record (here a
    test hook marks one with a version no sectionfs reads) refuses the
    upgrade in its check: the old server is never stopped and goes on
    serving, with everything it had, and the log says why."""
    m = hooked_mount(mount_factory, datapath, 'dev_fuse', monkeypatch,
                     **{hook: '999'})
    old = m.pid
    write_file(m / 'kept', b'still here')
    res = upgrade(m)
    assert res.returncode == 1, res.stdout
    assert 'refused' in res.stderr, res.stderr
    assert util.wait_for(lambda: why in m.stderr), m.stderr
    assert m.pid == old and util.pid_alive(old)
    assert read_file(m / 'kept') == b'still here'
    write_file(m / 'new', b'n')
    assert read_file(m / 'new') == b'n'


@pytest.mark.other_user
def test_only_root_or_the_owner_may_upgrade(mount_factory, datapath):
    if util.setpriv_skip_reason():
        pytest.skip(util.setpriv_skip_reason())
    m = mount_factory(datapath, options=['allow_other'])
    old = m.pid
    res = upgrade(m, user=util.NOBODY)
    assert res.returncode == 1
    assert 'only root or the mount\'s owner' in res.stderr, res.stderr
    assert m.pid == old


def test_upgrade_of_something_not_a_sectionfs(base_dir):
    res = subprocess.run([util.daemon_binary(), '--upgrade', base_dir],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert 'no sectionfs keeper' in res.stderr


# -- an upgrade whose binary cannot serve ------------------------------------

def file_id(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def runs(pid, ident):
    """Whether process pid runs the file ident (file_id), once past its
    exec (until then it is a copy of the keeper): its /proc/PID/exe, or under valgrind (whose own tool that names) the
    program valgrind loaded, among the files in /proc/PID/maps."""
    if not util.VALGRIND:
        return file_id('/proc/%d/exe' % pid) == ident
    dev, ino = ident
    want = '%02x:%02x %d ' % (os.major(dev), os.minor(dev), ino)
    with open('/proc/%d/maps' % pid) as f:
        return any(' '.join(line.split()[3:5]) + ' ' == want for line in f)


def daemon_copies(base_dir, monkeypatch):
    """Two copies of the daemon: the one mounts are started from (as if
    installed there), and one whose servers a test hook kills before
    they serve (SECTIONFS_TEST_DIE_AT_START_EXE).  Returns their paths."""
    why = hooks_skip_reason()
    if why:
        pytest.skip(why)
    exe = os.path.join(base_dir, 'sectionfs')
    dies = os.path.join(base_dir, 'sectionfs-that-dies')
    for path in exe, dies:
        shutil.copyfile(util.daemon_binary(), path)
        os.chmod(path, 0o755)
    monkeypatch.setattr(util, 'DAEMON', exe)
    return exe, dies


def install(src, path):
    """Make the file src the one installed at path, as a package manager
    does: a new name for it renamed over the old, whose running copies
    run on.  Under valgrind, which runs an execveat(2) of a file by its
    path, the old file is moved aside first so that it keeps one."""
    if util.VALGRIND:
        os.rename(path, '%s.old.%d' % (path, file_id(path)[1]))
    os.link(src, path + '.new')
    os.rename(path + '.new', path)


def make_sections(m):
    """Sections of several sizes, some in a directory; {name: bytes}."""
    os.mkdir(m / 'd')
    made = {}
    for i in range(12):
        name = 'd/s%d' % i if i % 3 == 0 else 's%d' % i
        made[name] = pattern(0, i * PAGE + 7 * i + 1, i)
        write_file(m / name, made[name])
    return made


def check_sections(m, made):
    for name, data in made.items():
        assert read_file(m / name) == data, name
    assert sorted(os.listdir(m / 'd')) == sorted(
        n[2:] for n in made if n.startswith('d/'))


def test_upgrade_whose_servers_die_at_start_goes_back(
        mount_factory, datapath, base_dir, monkeypatch):
    """An upgrade to a binary that passes its test, then dies before it
    serves (a test hook): the keeper goes back to the binary that served
    before, which it kept though the file was replaced; --upgrade says
    the upgrade failed, and the mount is served by the old binary with
    every section, its bytes and an fd open across it.  A later crash
    restarts the old binary too."""
    exe, dies = daemon_copies(base_dir, monkeypatch)
    m = hooked_mount(mount_factory, datapath, 'dev_fuse', monkeypatch,
                     DIE_AT_START_EXE=dies)
    old = file_id(exe)
    first = m.pid
    made = make_sections(m)
    fd = os.open(m / 's1', os.O_RDONLY)
    try:
        install(dies, exe)
        res = upgrade(m)
        assert res.returncode == 1, res.stdout
        assert 'failed' in res.stderr and 'before' in res.stderr, \
            res.stderr
        server = m.server_pid(other_than=first)
        assert server is not None, 'no server took over'
        # Served: the server is past its exec, no copy of the keeper.
        check_sections(m, made)
        assert runs(server, old), 'the server does not run the old binary'
        assert util.wait_for(lambda: 'going back' in m.stderr), \
            'the keeper did not log that it went back'
        assert os.pread(fd, len(made['s1']), 0) == made['s1']
        write_file(m / 'after', b'served by the old binary')
        assert read_file(m / 'after') == b'served by the old binary'
        again = kill_server(m)
        check_sections(m, made)
        assert runs(again, old), 'a restart runs the installed binary'
    finally:
        close_quietly(fd)


def test_restart_runs_the_binary_that_served(
        mount_factory, datapath, base_dir, monkeypatch):
    """A binary installed over the mount's without --upgrade (here one
    that dies at start) is not what a crashed server is replaced with:
    its successor runs the binary that served, and serves."""
    exe, dies = daemon_copies(base_dir, monkeypatch)
    m = hooked_mount(mount_factory, datapath, 'dev_fuse', monkeypatch,
                     DIE_AT_START_EXE=dies)
    old = file_id(exe)
    made = make_sections(m)
    install(dies, exe)
    for _ in range(2):
        new = kill_server(m)
        check_sections(m, made)
        assert runs(new, old), 'a restart runs the installed binary'
    assert m.alive(), 'the keeper gave up'
    write_file(m / 'after', b'a')
    assert read_file(m / 'after') == b'a'


def test_second_upgrade_goes_back_to_the_binary_that_served_last(
        mount_factory, datapath, base_dir, monkeypatch):
    """After an upgrade that served, the new binary is the one kept:
    a crash restarts it, and a further upgrade whose servers die at
    start goes back to it, not to the binary the mount started with."""
    exe, dies = daemon_copies(base_dir, monkeypatch)
    m = hooked_mount(mount_factory, datapath, 'dev_fuse', monkeypatch,
                     DIE_AT_START_EXE=dies)
    made = make_sections(m)
    second = os.path.join(base_dir, 'sectionfs-2')
    shutil.copyfile(util.daemon_binary(), second)
    os.chmod(second, 0o755)
    served = file_id(second)
    install(second, exe)
    res = upgrade(m)
    assert res.returncode == 0, res.stderr
    assert runs(m.pid, served)
    install(dies, exe)
    new = kill_server(m)
    check_sections(m, made)     # it serves: it may be upgraded
    assert runs(new, served), 'a restart runs the installed binary'
    res = upgrade(m)
    assert res.returncode == 1, res.stdout
    server = m.server_pid(other_than=new)
    assert server is not None
    check_sections(m, made)
    assert runs(server, served), \
        'the upgrade did not go back to the binary that served last'
