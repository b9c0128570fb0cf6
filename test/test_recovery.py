"""Recovery: a server's death loses nothing and does nothing twice.

The serving process is killed while callers work (SIGKILL, as a crash or
the OOM killer would end it), or dies by a test hook after carrying out
a request and before its reply.  Its successor adopts the namespace from
the record and the kernel sends it again every request the dead server
had read: each caller sees its call done once, never an error, and every
byte written before is there.  test_keeper.py holds the processes to
their promises, test_record.py the record; this file holds the whole to
what a user would see.  Kept mounts serve over /dev/fuse (the kernel does
not send again what a dead server took from its rings: test_keeper.py).
Processes are handled by PID only.
"""

import contextlib
import errno
import functools
import json
import os
import random
import signal
import stat
import subprocess
import threading
import time

import pytest

import util
from util import LIFETIME, MiB, read_file, write_file
from test_keeper import hooked_mount, hooks_skip_reason, in_child, kill_server

pytestmark = pytest.mark.root

#: FUSE opcodes (<linux/fuse.h>) the death hook is given.
FUSE_SETATTR = 4
FUSE_SYMLINK = 6
FUSE_MKNOD = 8
FUSE_MKDIR = 9
FUSE_UNLINK = 10
FUSE_RMDIR = 11
FUSE_RENAME = 12
FUSE_LINK = 13
FUSE_OPEN = 14
FUSE_WRITE = 16
FUSE_RELEASE = 18
FUSE_SETXATTR = 21
FUSE_CREATE = 35
FUSE_LOOKUP = 1
FUSE_FORGET = 2
FUSE_READDIRPLUS = 44


def dies_once(mount_factory, datapath, monkeypatch, opcode, skip=0):
    """A mount whose first server dies as it answers the first request
    of opcode past skip of them, after carrying it out."""
    m = hooked_mount(mount_factory, datapath, 'dev_fuse', monkeypatch,
                     DIE_OPCODE=str(opcode), DIE_TIMES='1',
                     DIE_SKIP=str(skip))
    return m, m.pid


def died(m, first):
    """The server that carried the request out is gone, and another
    serves."""
    return m.server_pid(other_than=first) is not None


# Each case: opcode, what is there before, the call, and what must hold
# after it ran once (the call's second run would fail or show).
def setup_file(m):
    write_file(m / 'a', b'contents of a')


def setup_dir(m):
    os.mkdir(m / 'd')


CASES = {
    'create': (FUSE_CREATE, None,
               'fd = os.open(sys.argv[1] + "/n", os.O_CREAT | os.O_EXCL | '
               'os.O_WRONLY, 0o640)\nos.write(fd, b"new")\nos.close(fd)',
               lambda m: read_file(m / 'n') == b'new'),
    'mknod': (FUSE_MKNOD, None, 'os.mkfifo(sys.argv[1] + "/p")',
              lambda m: os.path.exists(m / 'p')),
    'mkdir': (FUSE_MKDIR, None, 'os.mkdir(sys.argv[1] + "/d")',
              lambda m: os.path.isdir(m / 'd')),
    'unlink': (FUSE_UNLINK, setup_file, 'os.unlink(sys.argv[1] + "/a")',
               lambda m: not os.path.lexists(m / 'a')),
    'rmdir': (FUSE_RMDIR, setup_dir, 'os.rmdir(sys.argv[1] + "/d")',
              lambda m: not os.path.lexists(m / 'd')),
    'rename': (FUSE_RENAME, setup_file,
               'os.rename(sys.argv[1] + "/a", sys.argv[1] + "/b")',
               lambda m: not os.path.lexists(m / 'a') and
               read_file(m / 'b') == b'contents of a'),
    'link': (FUSE_LINK, setup_file,
             'os.link(sys.argv[1] + "/a", sys.argv[1] + "/b")',
             lambda m: os.stat(m / 'a').st_nlink == 2 and
             os.path.samefile(m / 'a', m / 'b')),
    'symlink': (FUSE_SYMLINK, None,
                'os.symlink("rel/target", sys.argv[1] + "/s")',
                lambda m: os.readlink(m / 's') == 'rel/target'),
    'setattr': (FUSE_SETATTR, setup_file,
                'os.chmod(sys.argv[1] + "/a", 0o600)',
                lambda m: os.stat(m / 'a').st_mode & 0o7777 == 0o600),
    'setxattr': (FUSE_SETXATTR, setup_file,
                 'os.setxattr(sys.argv[1] + "/a", %r, b"handle")' % LIFETIME,
                 lambda m: os.getxattr(m / 'a', LIFETIME) == b'handle'),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_request_carried_out_before_a_death_is_done_once(
        mount_factory, datapath, monkeypatch, case):
    """The server dies after carrying out the request and before its
    reply: the caller sees it done, once (a second run of these fails:
    EEXIST, ENOENT), and the namespace is as after one run."""
    opcode, setup, code, holds = CASES[case]
    m, first = dies_once(mount_factory, datapath, monkeypatch, opcode)
    if setup:
        setup(m)
    assert in_child(m, code, m.path) == 'ok'
    assert died(m, first), 'the test hook did not end the server'
    assert holds(m)


def test_write_carried_out_before_a_death_is_done_once(
        mount_factory, monkeypatch):
    """A write the daemon carried out (the cached path: passthrough writes
    never reach it) whose reply a death lost: sent again, it leaves the
    bytes once, appended or at an offset."""
    m, first = dies_once(mount_factory, 'cached', monkeypatch, FUSE_WRITE)
    write_file(m / 'a', b'')
    code = ('fd = os.open(sys.argv[1] + "/a", os.O_WRONLY | os.O_APPEND)\n'
            'os.write(fd, b"appended")\n'
            'os.close(fd)')
    assert in_child(m, code, m.path) == 'ok'
    assert died(m, first)
    assert read_file(m / 'a') == b'appended'


CUT_SHORT = {'FAULT': 'append-part', 'FAULT_ERRNO': str(errno.EIO)}


def append_gap_mount(mount_factory, monkeypatch, base_dir, env=None):
    """A cached-path mount whose first server is held at append-written
    (with env's hooks besides): (mount, gap, first server's PID).  Skips
    where the kernel has no direct I/O for file-backed sections."""
    gap = Gap(base_dir)
    m = gap.mount(mount_factory, 'cached', monkeypatch, 'append-written',
                  **(env or {}))
    reason = util.cached_dio_skip_reason(m)
    if reason:
        pytest.skip(reason)
    return m, gap, m.pid


APPEND_DEATHS = {
    'answered': {},
    'recorded': {},
    'cut-short': CUT_SHORT,
}


@pytest.mark.file_backed
@pytest.mark.parametrize('when', sorted(APPEND_DEATHS))
def test_append_to_a_file_backed_section_before_a_death_is_done_once(
        mount_factory, monkeypatch, base_dir, when):
    """An O_APPEND write to a file-backed section, which the daemon
    appends at the backing file's end as it is then (the cached path:
    passthrough writes never reach it), is carried out: the server dies
    as it answers; or before it has recorded what it wrote (a test
    hook); or then, having written only half of it, as a kill in the
    middle of a write leaves it (a second hook).  Sent again, it is in
    the file once, whole."""
    data = bytes(range(256)) * 64
    if when == 'answered':
        m, first = dies_once(mount_factory, 'cached', monkeypatch,
                             FUSE_WRITE)
    else:
        gap = Gap(base_dir)
        m = gap.mount(mount_factory, 'cached', monkeypatch,
                      'append-written', **APPEND_DEATHS[when])
        first = m.pid
    reason = util.cached_dio_skip_reason(m)
    if reason:
        pytest.skip(reason)
    target = os.path.join(base_dir, 'log')
    write_file(target, b'line1\n')
    os.symlink(target, m / 'log')
    got = []

    def append():
        fd = os.open(m / 'log', os.O_WRONLY | os.O_APPEND)
        try:
            got.append(os.write(fd, data))
        finally:
            os.close(fd)
    if when == 'answered':
        append()
    else:
        gap.arm(os.stat(m / 'log').st_ino)
        writer = in_thread(append)
        assert gap.reached(), 'the write did not reach the test hook'
        gap.go()
        writer.join(util.PATIENCE)
    assert got == [len(data)]
    assert died(m, first), 'the test hook did not end the server'
    assert read_file(target) == b'line1\n' + data
    assert read_file(m / 'log') == b'line1\n' + data


def held_append(m, gap, path, data):
    """An O_APPEND write of data to path, started in a thread of its own
    and held by the gap point armed for it, having written half; returns
    the thread and the list its write() result goes into."""
    got = []

    def append():
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            got.append(os.write(fd, data))
        except OSError as e:
            got.append(errno.errorcode[e.errno])
        finally:
            os.close(fd)
    gap.arm(os.stat(path).st_ino)
    writer = in_thread(append)
    assert gap.reached(), 'the write did not reach the test hook'
    return writer, got


@pytest.mark.file_backed
def test_append_left_part_way_is_finished_before_others_to_its_file(
        mount_factory, monkeypatch, base_dir):
    """Two sections name one backing file.  An O_APPEND write to the
    first is cut short (a test hook: half of it written) and held while
    one to the second comes; then the server dies.  The second waited
    for the first, and after the death it waits again, until the first,
    sent again, is finished: each is in the file once, whole, the first
    first."""
    m, gap, first = append_gap_mount(mount_factory, monkeypatch, base_dir,
                                     CUT_SHORT)
    target = os.path.join(base_dir, 'log')
    write_file(target, b'line1\n')
    os.symlink(target, m / 'a')
    os.symlink(target, m / 'b')
    one, two = bytes(range(256)) * 64, b'second\n' * 1000
    writer, got = held_append(m, gap, m / 'a', one)
    fd = os.open(m / 'b', os.O_WRONLY | os.O_APPEND)
    try:
        other = in_thread(lambda: got.append(os.write(fd, two)))
        gap.go()
        writer.join(util.PATIENCE)
        other.join(util.PATIENCE)
    finally:
        os.close(fd)
    assert died(m, first), 'the test hook did not end the server'
    assert sorted(got) == sorted([len(one), len(two)])
    assert read_file(target) == b'line1\n' + one + two


@pytest.mark.file_backed
def test_append_a_successor_answered_holds_up_nothing_after_a_death(
        mount_factory, monkeypatch, base_dir):
    """An O_APPEND write is written whole and its server dies before it
    says so (a test hook); the successor answers the write sent again
    from the bytes it finds.  After another death, a new append to the
    same file goes in at once: nothing takes the one answered for an
    append still to come (its successor would keep the file for it,
    and log that it waited in vain)."""
    m, gap, first = append_gap_mount(mount_factory, monkeypatch, base_dir)
    target = os.path.join(base_dir, 'log')
    write_file(target, b'line1\n')
    os.symlink(target, m / 'log')
    data = bytes(range(256)) * 64
    writer, got = held_append(m, gap, m / 'log', data)
    gap.go()
    writer.join(util.PATIENCE)
    assert got == [len(data)]
    assert died(m, first), 'the test hook did not end the server'
    kill_server(m)
    fd = os.open(m / 'log', os.O_WRONLY | os.O_APPEND)
    try:
        assert os.write(fd, b'after\n') == 6
    finally:
        os.close(fd)
    assert read_file(target) == b'line1\n' + data + b'after\n'
    assert 'was not sent again' not in m.stderr


@pytest.fixture
def small_fs(base_dir):
    """A 64 KiB tmpfs, unmounted (lazily: a section may still hold one
    of its files) after the test."""
    path = os.path.join(base_dir, 'small')
    os.mkdir(path)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'small',
                    path], check=True)
    yield path
    subprocess.run(['umount', '-l', path], check=True)


@pytest.mark.file_backed
def test_append_finished_by_a_successor_into_a_full_file_is_short(
        small_fs, mount_factory, monkeypatch, base_dir):
    """An O_APPEND write cut short (a test hook: half of it written), the
    server dead, and then no room left for the rest: the write sent
    again says what was written, a short count, rather than fail with
    its first half in the file."""
    m, gap, first = append_gap_mount(mount_factory, monkeypatch, base_dir,
                                     CUT_SHORT)
    target = os.path.join(small_fs, 'log')
    head, data = b'h' * 4096, bytes(range(256)) * 64
    write_file(target, head)
    os.symlink(target, m / 'log')
    writer, got = held_append(m, gap, m / 'log', data)
    filler = os.open(os.path.join(small_fs, 'filler'),
                     os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(filler, b'f' * 4096):
            pass
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(filler)
    gap.go()
    writer.join(util.PATIENCE)
    assert died(m, first), 'the test hook did not end the server'
    assert got == [len(data) // 2]
    assert read_file(target) == head + data[:len(data) // 2]


def lifetime_handle_section(m, name):
    """A section that is destroyed with its last handle."""
    write_file(m / name, b'short-lived')
    os.setxattr(m / name, LIFETIME, b'handle')


def test_open_carried_out_before_a_death_is_one_handle(
        mount_factory, datapath, monkeypatch):
    """An OPEN whose reply a death lost is sent again: the caller has one
    handle, and the section whose lifetime is its handles dies at its
    close, as if there had been no death (a second handle, never
    released, would keep it)."""
    m, first = dies_once(mount_factory, datapath, monkeypatch, FUSE_OPEN)
    lifetime_handle_section(m, 'h')
    code = ('fd = os.open(sys.argv[1] + "/h", os.O_RDONLY)\n'
            'assert os.read(fd, 64) == b"short-lived"\n'
            'os.close(fd)')
    assert in_child(m, code, m.path) == 'ok'
    assert died(m, first)
    assert util.wait_for(lambda: not os.path.lexists(m / 'h')), \
        'a handle the caller never had keeps the section'


def test_release_carried_out_before_a_death_is_done_once(
        mount_factory, datapath, monkeypatch):
    """A RELEASE whose reply a death lost is sent again: it releases its
    own handle once, never another open of the same section."""
    m, first = dies_once(mount_factory, datapath, monkeypatch, FUSE_RELEASE)
    lifetime_handle_section(m, 'h')
    keep = os.open(m / 'h', os.O_RDWR)
    try:
        os.close(os.open(m / 'h', os.O_RDONLY))
        assert died(m, first)
        # Other opens come and go after the death; the one kept stays.
        for _ in range(8):
            os.close(os.open(m / 'h', os.O_RDONLY))
        assert os.pread(keep, 64, 0) == b'short-lived'
        assert os.path.exists(m / 'h')
    finally:
        os.close(keep)
    assert util.wait_for(lambda: not os.path.lexists(m / 'h'))


class Gap:
    """A first server held at a named point of the daemon (the test hook
    keeper_test_gap), once armed for an inode, until go() lets it die."""

    def __init__(self, base_dir):
        self.dir = os.path.join(base_dir, 'gap')
        os.mkdir(self.dir)

    def mount(self, mount_factory, datapath, monkeypatch, point,
              options=(), **env):
        return hooked_mount(mount_factory, datapath, 'dev_fuse', monkeypatch,
                            options, GAP=point, GAP_DIR=self.dir, **env)

    def arm(self, ino):
        with open(os.path.join(self.dir, 'arm'), 'w') as f:
            f.write(str(ino))

    def reached(self):
        """Whether a server stopped at the point."""
        return util.wait_for(
            lambda: os.path.exists(os.path.join(self.dir, 'in')))

    def go(self):
        with open(os.path.join(self.dir, 'go'), 'w'):
            pass


def test_slot_of_a_release_not_yet_recorded_is_not_given_again(
        mount_factory, datapath, monkeypatch, base_dir):
    """The server dies after a RELEASE gave its handle's slot back and
    before the record says so, while other opens went on (a test hook
    holds it there).  The slot went to none of them: the successor
    adopts every handle, the kernel's RELEASE sent again lets the
    released one go, and the opens made meanwhile read and write."""
    gap = Gap(base_dir)
    m = gap.mount(mount_factory, datapath, monkeypatch, 'release')
    first = m.pid
    lifetime_handle_section(m, 'a')
    write_file(m / 'b', b'kept open')
    released = os.open(m / 'a', os.O_RDONLY)
    gap.arm(os.fstat(released).st_ino)
    os.close(released)
    assert gap.reached(), \
        'the RELEASE did not reach the test hook'
    # The slots freed last are given first: one of these would get a's.
    fds = [os.open(m / 'b', os.O_RDWR) for _ in range(8)]
    try:
        gap.go()
        assert died(m, first), 'no server took over'
        assert [os.pread(fd, 64, 0) for fd in fds] == [b'kept open'] * 8
        for k, fd in enumerate(fds):
            os.pwrite(fd, b'%d' % k, k)
    finally:
        for fd in fds:
            os.close(fd)
    assert read_file(m / 'b') == b'01234567n'
    assert util.wait_for(lambda: not os.path.lexists(m / 'a')), \
        'the released handle still holds its section'


def test_release_and_what_it_destroys_are_one_change(
        mount_factory, datapath, monkeypatch, base_dir):
    """The server dies just after a RELEASE's change is in the record (a
    test hook).  That change is the handle's release and the end of the
    section whose lifetime was its handles, together: after the death
    the section is gone from the listing, as it would be without one,
    and the RELEASE the kernel sends again does nothing more."""
    gap = Gap(base_dir)
    m = gap.mount(mount_factory, datapath, monkeypatch, 'release-recorded')
    first = m.pid
    lifetime_handle_section(m, 'a')
    write_file(m / 'b', b'stays')
    fd = os.open(m / 'a', os.O_RDONLY)
    gap.arm(os.fstat(fd).st_ino)
    os.close(fd)
    assert gap.reached(), \
        'the RELEASE did not reach the test hook'
    gap.go()
    assert died(m, first), 'no server took over'
    assert util.wait_for(lambda: os.listdir(m.path) == ['b']), \
        os.listdir(m.path)
    assert read_file(m / 'b') == b'stays'


def forget_everything():
    """Make the kernel drop the dentries and inodes nobody holds, and so
    send FORGET for them: the next walk looks names up again."""
    with open('/proc/sys/vm/drop_caches', 'w') as f:
        f.write('2')


def section_let_go(m, name):
    """The section that was m/name, removed and forgotten by the kernel,
    is held by neither server nor keeper."""
    def gone():
        path = '/' + name
        return path not in util.daemon_memfds(m.pid) and \
            path not in util.daemon_memfds(m.keeper_pid)
    return util.wait_for(gone)


def test_listing_cut_by_a_death_counts_no_entry_short(
        mount_factory, datapath, monkeypatch, base_dir):
    """The server dies while a READDIRPLUS counts its entries, after the
    first (a test hook).  The successor lists them again for the kernel,
    which counts each once: none may be counted short, or a section
    unlinked while open would be freed under its handle, and the next
    successor could not adopt a record of a handle on no node."""
    gap = Gap(base_dir)
    m = gap.mount(mount_factory, datapath, monkeypatch, 'readdirplus-entry')
    first = m.pid
    for name in 'abc':
        write_file(m / name, name.encode())
    inos = {name: os.stat(m / name).st_ino for name in 'abc'}
    forget_everything()
    # The middle one: whichever way the listing runs, one comes after.
    gap.arm(inos['b'])
    names = []
    lister = in_thread(lambda: names.extend(os.listdir(m.path)))
    assert gap.reached(), \
        'no READDIRPLUS reached the test hook'
    gap.go()
    assert died(m, first), 'no server took over'
    lister.join(util.PATIENCE)
    assert sorted(names) == ['a', 'b', 'c']
    # Held open and unlinked: only the kernel's count keeps each node.
    fds = [os.open(m / name, os.O_RDONLY) for name in 'abc']
    try:
        for name in 'abc':
            os.unlink(m / name)
        assert [os.fstat(fd).st_nlink for fd in fds] == [0, 0, 0]
        second = m.pid
        os.kill(second, signal.SIGKILL)
        assert died(m, second), 'the next server could not adopt the mount'
        assert [os.pread(fd, 8, 0) for fd in fds] == [b'a', b'b', b'c']
        assert [os.fstat(fd).st_nlink for fd in fds] == [0, 0, 0]
    finally:
        for fd in fds:
            os.close(fd)


def test_notice_from_an_undone_create_waits_for_nothing(
        mount_factory, datapath, monkeypatch):
    """Under -o lifetime=handle, a successor whose open of a resent
    CREATE fails (a test hook) releases the handle it made, which ends
    the section and so tells the kernel its name is gone, before the
    CREATE is answered.  That notice needs the directory the kernel holds
    for the CREATE.  With no memory for it (a second hook), it still goes
    from the notice thread, not the serving one: the CREATE is answered,
    and the name is gone."""
    why = hooks_skip_reason()
    if why:
        pytest.skip(why)
    for name, value in (('DIE_OPCODE', str(FUSE_CREATE)), ('DIE_TIMES', '1'),
                        ('FAULT', 'answer-create,notice-alloc'),
                        ('FAULT_ERRNO', str(errno.EIO))):
        monkeypatch.setenv('SECTIONFS_TEST_' + name, value)
    m = mount_factory(datapath, options=['io_uring=off', 'lifetime=handle'])
    first = m.pid
    os.mkdir(m / 'd')
    assert in_child(m, 'os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)',
                    m / 'd/f') == 'EIO'
    assert died(m, first), 'no server took over'
    assert os.listdir(m / 'd') == []
    assert section_let_go(m, 'd/f'), 'the undone create keeps a section'


def test_notices_with_no_memory_each_go_once(mount_factory, datapath,
                                             monkeypatch):
    """Every notice to the kernel finds no memory (a test hook), so each
    is one of the few set aside, over and over: each is sent once and
    set aside again, the mount serves on, and the daemon exits cleanly
    at unmount."""
    m = hooked_mount(mount_factory, datapath, 'dev_fuse', monkeypatch,
                     FAULT='notice-alloc', FAULT_ERRNO=str(errno.ENOMEM))
    for i in range(60):
        os.mkdir(m / ('d%d' % i))
    assert len(os.listdir(m.path)) == 60
    write_file(m / 'd0/f', b'served')
    assert read_file(m / 'd0/f') == b'served'
    subprocess.run(['fusermount3', '-u', m.path], check=True)
    assert m.wait_exit() == 0, 'the daemon did not exit at unmount'


@pytest.mark.parametrize('point,deaths', [('mkdir-made', 1),
                                          ('mkdir-made', 2),
                                          ('reply-sending', 1)])
def test_request_outlived_by_many_others_is_still_done_once(
        mount_factory, datapath, monkeypatch, base_dir, point, deaths):
    """A MKDIR is carried out and its thread held before the reply (a
    test hook: just after the change, or as the reply is about to be
    written) while some 2,000 other changes are made and answered; then
    the server dies (and, with two deaths, so does its successor, before
    it reads anything: a second hook).  The MKDIR sent again is still
    known as done, however many requests came after it: the caller sees
    it succeed, not EEXIST from doing it twice."""
    gap = Gap(base_dir)
    if deaths == 2:
        monkeypatch.setenv('SECTIONFS_TEST_DIE_AT_START_UNTIL', '2')
    m = gap.mount(mount_factory, datapath, monkeypatch, point)
    first = m.pid
    outlive_held_mkdir(m, gap, first, point)
    if deaths == 2:
        assert 'a successor dies before serving' in m.stderr


def outlive_held_mkdir(m, gap, first, point):
    """A MKDIR held at the gap point armed for it, outlived by some 2,000
    other changes and then by its server: the caller sees it succeed,
    once."""
    os.mkdir(m / 'held')
    os.mkdir(m / 'busy')
    gap.arm(os.stat(m / 'held').st_ino if point == 'mkdir-made'
            else FUSE_MKDIR)
    got = []

    def mkdir():
        try:
            os.mkdir(m / 'held/d')
            got.append('ok')
        except OSError as e:
            got.append(errno.errorcode[e.errno])
    maker = in_thread(mkdir)
    assert gap.reached(), 'the MKDIR did not reach the test hook'
    for i in range(1000):
        write_file(m / ('busy/%d' % i), b'')
        os.unlink(m / ('busy/%d' % i))
    gap.go()
    assert died(m, first), 'no server took over'
    maker.join(util.PATIENCE)
    assert got == ['ok']
    assert os.listdir(m / 'held') == ['d']


def threads_started(server, lookups, want):
    """Serving threads of server seen (by id) while threads look up
    names never seen before, until want were or PATIENCE passed."""
    seen = set()
    stop = threading.Event()

    def look(i):
        n = 0
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                os.stat('%s/%d-%d' % (lookups, i, n))
            n += 1
    callers = [in_thread(functools.partial(look, i)) for i in range(6)]
    deadline = time.monotonic() + util.PATIENCE
    try:
        while len(seen) < want and time.monotonic() < deadline:
            seen.update(os.listdir('/proc/%d/task' % server))
    finally:
        stop.set()
        for t in callers:
            t.join(util.PATIENCE)
    return len(seen)


def test_threads_ended_when_idle_give_their_slots_back(
        mount_factory, datapath, monkeypatch, base_dir):
    """Under -o max_idle_threads=1 a serving thread ends as soon as
    another is idle, and one is started when a request finds none free:
    lookups from six threads start and end hundreds, more than the
    keeper has slots for.  Each new thread still tells the keeper what
    it carries out: a MKDIR held after its change, outlived by 2,000
    others and then by its server, is answered once (not EEXIST)."""
    gap = Gap(base_dir)
    m = gap.mount(mount_factory, datapath, monkeypatch, 'mkdir-made',
                  options=['max_idle_threads=1'])
    first = m.pid
    started = threads_started(first, m.path, 400)
    assert started >= 300, \
        'idle threads were not ended: %d threads in all' % started
    outlive_held_mkdir(m, gap, first, 'mkdir-made')


def in_thread(fn):
    """fn run in a thread of its own, started."""
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t



CREATE_FAULTS = {
    'first': {'FAULT': 'reply-created'},
    'failed-then-died': {'FAULT': 'reply-created',
                         'DIE_OPCODE': str(FUSE_CREATE), 'DIE_TIMES': '1'},
    'died-then-failed': {'FAULT': 'answer-create',
                         'DIE_OPCODE': str(FUSE_CREATE), 'DIE_TIMES': '1'},
}


@pytest.mark.parametrize('case', sorted(CREATE_FAULTS))
def test_create_whose_open_fails_leaves_nothing(
        mount_factory, datapath, monkeypatch, case):
    """A CREATE whose entry is made and whose open then fails (a test
    hook, EIO): by the first server; by the first server, which dies as
    it answers; or by the successor a death before the answer left it
    to.  Each time the caller sees that error, once, and the create
    leaves nothing: no name (the kernel, answered an error, keeps the
    absence it looked up), and no reference the daemon counts, so the
    section is let go."""
    m = hooked_mount(mount_factory, datapath, 'dev_fuse', monkeypatch,
                     FAULT_ERRNO=str(errno.EIO), **CREATE_FAULTS[case])
    first = m.pid
    os.mkdir(m / 'd')
    util.expect_errno(errno.EIO, os.open, m / 'd/f',
                      os.O_RDWR | os.O_CREAT, 0o600)
    if case != 'first':
        assert died(m, first), 'no server took over'
    assert os.listdir(m / 'd') == []
    assert not os.path.lexists(m / 'd/f')
    assert section_let_go(m, 'd/f'), 'the failed create keeps a section'
    os.rmdir(m / 'd')




@pytest.mark.parametrize('opcode', [FUSE_LOOKUP, FUSE_READDIRPLUS],
                         ids=['lookup', 'readdirplus'])
def test_lookup_carried_out_before_a_death_is_counted_once(
        mount_factory, datapath, monkeypatch, opcode):
    """A LOOKUP (or a READDIRPLUS, which looks its entries up) whose reply
    a death lost is sent again: the kernel's one reference is counted
    once, so that once the name is removed and the kernel forgets it,
    the section is let go (a reference counted twice would keep it until
    unmount)."""
    # The create looks its name up first (and finds none): the server
    # dies at the LOOKUP after that one.
    skip = 1 if opcode == FUSE_LOOKUP else 0
    m, first = dies_once(mount_factory, datapath, monkeypatch, opcode, skip)
    write_file(m / 'a', b'looked up')
    assert m.pid == first, 'the server died before the request under test'
    forget_everything()
    if opcode == FUSE_LOOKUP:
        code = 'os.stat(sys.argv[1] + "/a")'
    else:
        code = 'assert os.listdir(sys.argv[1]) == ["a"]'
    assert in_child(m, code, m.path) == 'ok'
    assert died(m, first), 'the test hook did not end the server'
    assert read_file(m / 'a') == b'looked up'
    os.unlink(m / 'a')
    forget_everything()
    assert section_let_go(m, 'a')


@pytest.mark.parametrize('count', [1, 20], ids=['one', 'twenty'])
def test_forget_read_before_a_death_is_done_by_the_successor(
        mount_factory, datapath, monkeypatch, count):
    """A FORGET has no reply, so the kernel never sends again one that a
    dying server had read: the successor does it, and a removed section
    whose inode the kernel let go is let go too, not held until unmount.
    Twenty removed while open and closed together make the kernel send
    their FORGETs close together, often as one BATCH_FORGET."""
    m, first = dies_once(mount_factory, datapath, monkeypatch, FUSE_FORGET)
    names = ['f%d' % i for i in range(count)]
    files = []
    for name in names:
        write_file(m / name, name.encode())
        files.append(open(m / name, 'rb'))
        os.unlink(m / name)
    assert m.pid == first, 'the server died before the FORGET under test'
    for f in files:
        f.close()
    assert util.wait_for(lambda: died(m, first)), \
        'the test hook did not end the server'
    for name in names:
        assert section_let_go(m, name), \
            '%s is held: %s' % (name, util.daemon_memfds(m.keeper_pid))


def test_removed_section_held_open_outlives_a_death(mount_factory,
                                                   datapath):
    """A removed section the kernel still holds (open here) is kept by
    the successor, which lets go only of those the kernel no longer has:
    its attributes and bytes are there after the death, and it is let go
    once closed."""
    m = mount_factory(datapath)
    write_file(m / 'held', b'still here')
    f = open(m / 'held', 'rb')
    os.unlink(m / 'held')
    kill_server(m)
    assert os.fstat(f.fileno()).st_size == len(b'still here')
    assert f.read() == b'still here'
    assert '/held' in util.daemon_memfds(m.pid)
    f.close()
    assert section_let_go(m, 'held')


# ---- many deaths under load ----

#: One writer: it makes, checks, renames and removes sections, and on
#: its way out prints what it leaves (name -> seed).  Any error ends it
#: with the error printed: a caller must never see one.
WRITER = r'''
import json, os, random, sys
root, me, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rnd = random.Random(me)
def data(seed):
    r = random.Random(seed)
    return bytes(r.getrandbits(8) for _ in range(r.randrange(1, 70000)))
left, i, doing = {}, 0, 'start'
try:
    while not os.path.exists(stop) or i < 50:
        seed = me * 1000003 + i
        tmp, name = '%s/t%d_%d' % (root, me, i), 'f%d_%d' % (me, i)
        doing = 'create ' + tmp
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        want = data(seed)
        doing = 'write ' + tmp
        os.write(fd, want)
        doing = 'close ' + tmp
        os.close(fd)
        doing = 'read ' + tmp
        with open(tmp, 'rb') as f:
            if f.read() != want:
                raise SystemExit('bytes of %s differ' % tmp)
        doing = 'rename %s to %s' % (tmp, name)
        os.rename(tmp, root + '/' + name)
        left[name] = seed
        if i % 3 == 2:
            gone = rnd.choice(sorted(left))
            doing = 'unlink ' + gone
            os.unlink(root + '/' + gone)
            del left[gone]
        i += 1
except OSError as e:
    print(json.dumps({'error': '%s: %s' % (doing, e)}))
    sys.exit(1)
print(json.dumps({'left': left, 'steps': i}))
'''


def expected_bytes(seed):
    r = random.Random(seed)
    return bytes(r.getrandbits(8) for _ in range(r.randrange(1, 70000)))


def test_sigkill_twenty_times_under_load_loses_nothing(mount_factory,
                                                        datapath, base_dir):
    """Writers work while the serving process is killed 20 times: no
    writer sees an error, every section holds its writer's bytes, nothing
    more is left, and once everything is removed neither the server nor
    the keeper holds a section's descriptor."""
    m = mount_factory(datapath, options=['io_uring=off'])
    stop = os.path.join(base_dir, 'stop')
    writers = [subprocess.Popen([util.PYTHON, '-c', WRITER, m.path, str(k),
                                 stop], stdout=subprocess.PIPE, text=True)
               for k in range(3)]
    try:
        for _ in range(20):
            time.sleep(random.uniform(0.1, 0.4))
            old = m.pid
            assert old != m.keeper_pid, 'no server to kill'
            os.kill(old, signal.SIGKILL)
            assert m.server_pid(other_than=old) is not None, \
                'no server took over'
    finally:
        with open(stop, 'w'):
            pass
        outs = []
        for w in writers:
            try:
                out, _ = w.communicate(timeout=util.PATIENCE * 4)
            except subprocess.TimeoutExpired:
                w.kill()
                out, _ = w.communicate()
            outs.append(out)
    results = [json.loads(out) if out.strip() else {'error': 'no output'}
               for out in outs]
    errors = [r['error'] for r in results if 'error' in r]
    assert errors == [], 'a caller saw an error'
    left = {}
    for r in results:
        left.update(r['left'])
    assert sorted(os.listdir(m.path)) == sorted(left)
    for name, seed in left.items():
        assert read_file(m / name) == expected_bytes(seed), name
    for name in left:
        os.unlink(m / name)
    assert util.wait_for(lambda: util.daemon_memfds(m.pid) == {} and
                         util.daemon_memfds(m.keeper_pid) == {}), \
        'descriptors of removed sections are still held: server %s, ' \
        'keeper %s' % (util.daemon_memfds(m.pid),
                       util.daemon_memfds(m.keeper_pid))


# ---- the cap and the byte limits across a death ----

def private_stores(pid):
    """{fd: st_dev} of the private tmpfs mounts pid holds: directories
    that /proc shows as "/" (a detached mount's root) on a device of
    their own."""
    root = os.stat('/').st_dev
    out = {}
    for fd, link in util.daemon_fds(pid).items():
        if link != '/':
            continue
        try:
            st = os.stat('/proc/%d/fd/%d' % (pid, fd))
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_dev != root:
            out[fd] = st.st_dev
    return out


def kill_server(m):
    """SIGKILL the serving process; returns once another serves."""
    old = m.pid
    assert old != m.keeper_pid, 'no server to kill'
    os.kill(old, signal.SIGKILL)
    assert m.server_pid(other_than=old) is not None, 'no server took over'


def skip_fsopen_under_valgrind(datapath):
    if util.VALGRIND and datapath == 'passthrough':
        pytest.skip('valgrind does not implement fsopen(2), which a byte '
                    'limit with passthrough needs')


def test_size_cap_holds_across_a_death(mount_factory, datapath):
    """size=8m, 6 MiB written, the server killed: df still shows them
    used, only what was left fits (ENOSPC past it), and the keeper holds
    the store it held, not a second one."""
    skip_fsopen_under_valgrind(datapath)
    m = mount_factory(datapath, options=['io_uring=off', 'size=8m'])
    data = os.urandom(6 * MiB)
    write_file(m / 'a', data)
    before = util.used(m.path)
    assert 6 * MiB <= before < 7 * MiB
    stores = private_stores(m.keeper_pid)
    kill_server(m)
    assert util.used(m.path) == before
    fd = os.open(m / 'b', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        written = util.write_until_enospc(fd)
    finally:
        os.close(fd)
    assert written <= 8 * MiB - before, 'the cap lost what it held'
    assert read_file(m / 'a') == data
    assert private_stores(m.keeper_pid) == stores


QUOTA = 'user.sectionfs.quota'
USER = util.NOBODY
OTHER = 60001

#: Run as a user: write `total` bytes to a new section at path in
#: chunks; prints [written, 'ok' or the errno's name].
FILL = r'''
import errno, json, os, sys
path, total = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
done, res = 0, 'ok'
try:
    while done < total:
        done += os.write(fd, b'q' * min(65536, total - done))
except OSError as e:
    res = errno.errorcode.get(e.errno, str(e.errno))
os.close(fd)
print(json.dumps([done, res]))
'''


def fill_as(uid, path, total):
    res = subprocess.run(util.as_user_argv(uid) +
                         [util.PYTHON, '-I', '-c', FILL, path, str(total)],
                         capture_output=True, text=True, cwd='/',
                         timeout=util.PATIENCE)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def user_bytes(m, uid):
    """The bytes the mount's quota report charges uid."""
    for line in os.getxattr(m.path, QUOTA).decode().splitlines():
        kind, ident, held = line.split()[:3]
        if kind == 'u' and int(ident) == uid:
            return int(held)
    return 0


@pytest.mark.other_user
def test_user_byte_limit_holds_across_deaths(mount_factory, datapath):
    """usrquota_block_hardlimit=8m: a user's 6 MiB are still charged to
    them after the server is killed, and 4 MiB more are refused; a
    second user's store, made by the new server, is kept by the next
    one as well; and the keeper holds one store per user."""
    skip_fsopen_under_valgrind(datapath)
    refused = {'EDQUOT'} if datapath == 'cached' else {'ENOSPC', 'EDQUOT'}
    m = mount_factory(datapath, options=['io_uring=off', 'allow_other',
                                         'usrquota_block_hardlimit=8m'])
    os.mkdir(m / 'pub')
    os.chmod(m / 'pub', 0o1777)
    assert fill_as(USER, m / 'pub/a', 6 * MiB) == [6 * MiB, 'ok']
    kill_server(m)
    assert user_bytes(m, USER) == 6 * MiB
    done, res = fill_as(USER, m / 'pub/b', 4 * MiB)
    assert res in refused and done <= 2 * MiB, (done, res)
    assert fill_as(OTHER, m / 'pub/c', 6 * MiB) == [6 * MiB, 'ok']
    stores = private_stores(m.keeper_pid)
    kill_server(m)
    assert user_bytes(m, OTHER) == 6 * MiB
    done, res = fill_as(OTHER, m / 'pub/d', 4 * MiB)
    assert res in refused and done <= 2 * MiB, (done, res)
    assert private_stores(m.keeper_pid) == stores
    assert len(stores) == (2 if datapath == 'passthrough' else 0)
