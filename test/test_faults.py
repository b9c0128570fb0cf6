"""Faults: the daemon killed under load, out of file descriptors, and out
of space at its cap.

- SIGKILL of the daemon while processes write, fsync, create and map:
  what was fsynced to a file-backed section is in the backing file; every
  process gets an error (ENOTCONN, ECONNABORTED or EIO), none hangs;
  fusermount3 -u frees the mount point and a new mount there works.
- RLIMIT_NOFILE: the daemon started with a low limit (prlimit), sections
  created until that fails: the error is EMFILE (or ENFILE), the daemon
  logs it and keeps serving; freeing a section lets a new one be made.
- ENOSPC at -o size= part way through a copy leaves a section holding
  exactly what fit.

Every wait is bounded; processes are ended by PID only.
"""

import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading

import pytest

import util
from test_stress import deadline  # noqa: F401 (autouse: bounds each test)
from util import MiB, PAGE

#: Errors a process may get from a mount whose daemon died.  Over io_uring
#: the kernel also ends a request it was handing to the dead daemon's ring
#: with ECANCELED.
DEAD_DAEMON = {'ENOTCONN', 'ECONNABORTED', 'EIO', 'ECANCELED'}

REC = 512


def record(i):
    """Record i of the fsync writer's log: 512 bytes that name i."""
    return hashlib.sha256(b'record %d' % i).digest() * (REC // 32)


#: Writes records at their offsets, fsyncs every 4, reports each fsync.
_LOG_WRITER = r'''
import errno, hashlib, os, sys
def record(i):
    return hashlib.sha256(b'record %d' % i).digest() * 16
fd = os.open(sys.argv[1], os.O_WRONLY)
i = 0
try:
    while i < 1000000:
        os.pwrite(fd, record(i), i * 512)
        i += 1
        if i % 4 == 0:
            os.fsync(fd)
            print('synced', i, flush=True)
except OSError as e:
    print('error', errno.errorcode[e.errno], flush=True)
'''

#: Creates, writes, reads back and unlinks sections until an error.
_CHURN = r'''
import errno, os, sys
d, me = sys.argv[1], sys.argv[2]
i = 0
try:
    while i < 1000000:
        p = os.path.join(d, '%s-%d' % (me, i % 8))
        data = os.urandom(65536)
        with open(p, 'wb') as f:
            f.write(data)
        with open(p, 'rb') as f:
            if f.read() != data:
                print('wrong data', flush=True)
                sys.exit(1)
        os.unlink(p)
        i += 1
        if i == 20:
            print('running', flush=True)
except OSError as e:
    print('error', errno.errorcode[e.errno], flush=True)
'''


class Lines:
    """Collects a child's stdout lines in a thread."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def last(self):
        return self.lines[-1] if self.lines else ''

    def synced(self):
        n = [int(x.split()[1]) for x in self.lines if x.startswith('synced')]
        return n[-1] if n else 0

    def finish(self, timeout):
        """Wait for the child; None if it had to be killed."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        self._t.join(10)
        return self.proc.returncode


def spawn(code, *args):
    return Lines(subprocess.Popen([util.PYTHON, '-I', '-c', code]
                                  + [str(a) for a in args],
                                  stdout=subprocess.PIPE, text=True,
                                  cwd='/'))


#: Holds a MAP_SHARED view of a file; for each line OFF LEN on stdin,
#: prints the sha256 of those bytes of the view.  A fault it cannot
#: serve kills it with SIGBUS.  (Python, not mmap_view: under the
#: sanitizer build ASan would turn the SIGBUS into an exit status.)
_MAPPER = r'''
import hashlib, mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, os.fstat(fd).st_size, mmap.MAP_SHARED)
print('ready', flush=True)
for line in sys.stdin:
    off, length = map(int, line.split())
    print(hashlib.sha256(m[off:off + length]).hexdigest(), flush=True)
'''


def ask_within(proc, line, timeout):
    """Send line to proc, return its answer line, '' if it died, or
    None if it did not answer within timeout (then it is killed)."""
    box = []

    def ask():
        try:
            proc.stdin.write(line + '\n')
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        box.append(proc.stdout.readline().strip())
    t = threading.Thread(target=ask, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        proc.kill()
        t.join(10)
        return None
    return box[0]


@pytest.mark.file_backed
def test_sigkill_under_load(mount_factory, datapath, base_dir):
    mnt = mount_factory(datapath)
    backing = os.path.join(base_dir, 'log')
    util.write_file(backing, b'')
    os.symlink(backing, mnt / 'log')
    os.mkdir(mnt / 'churn')
    # A mapped page-file section whose pages are not in the page cache.
    util.write_file(mnt / 'mapped', util.pattern(0, 64 * PAGE, 5))
    fd = os.open(mnt / 'mapped', os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    mapper = subprocess.Popen([util.PYTHON, '-I', '-c', _MAPPER,
                               mnt / 'mapped'], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd='/')
    assert mapper.stdout.readline().strip() == 'ready'

    writer = spawn(_LOG_WRITER, mnt / 'log')
    churners = [spawn(_CHURN, mnt / 'churn', 'c%d' % i) for i in range(2)]
    try:
        assert util.wait_for(lambda: writer.synced() >= 64
                             and all(c.lines for c in churners)), \
            'load did not start: writer %r, churners %r' % (
                writer.lines[-3:], [c.lines for c in churners])
        mnt.kill()
        # Every process gets an error and ends, none hangs.
        rcs = [p.finish(util.PATIENCE) for p in [writer] + churners]
        assert None not in rcs, 'a process hung after the daemon died'
        for p in [writer] + churners:
            kind, _, name = p.last().partition(' ')
            assert kind == 'error' and name in DEAD_DAEMON, \
                'pid %d ended with %r' % (p.proc.pid, p.lines[-3:])
        # The view: a fault on a page not in memory must not hang; it is
        # either served (the kernel holds the store: passthrough) or a
        # SIGBUS; it is never wrong bytes.
        answer = ask_within(mapper, '%d %d' % (10 * PAGE, PAGE),
                            util.PATIENCE)
        assert answer is not None, 'a fault on the view hung'
        if answer:
            assert answer == hashlib.sha256(
                util.pattern(10 * PAGE, PAGE, 5)).hexdigest()
        else:
            assert mapper.wait(util.PATIENCE) == -signal.SIGBUS
    finally:
        if mapper.poll() is None:
            mapper.stdin.close()
        mapper.wait(util.PATIENCE)
        mapper.stdout.close()
        for p in [writer] + churners:
            p.finish(util.PATIENCE)

    # fsynced data is in the backing file, byte for byte.
    synced = writer.synced()
    data = util.read_file(backing)
    assert len(data) >= synced * REC
    for i in range(synced):
        assert data[i * REC:(i + 1) * REC] == record(i), \
            'fsynced record %d of %d is not in the backing file' % (i, synced)

    # New calls that need the daemon get errors at once, then
    # fusermount3 -u recovers the mount point and a new mount there works.
    for what, call in [('listdir', lambda: os.listdir(mnt / 'churn')),
                       ('create', lambda: util.write_file(mnt / 'new', b''))]:
        with pytest.raises(OSError) as e:
            call()
        assert util.errno_name(e.value) in DEAD_DAEMON, (what, e.value)
    res = mnt.umount()
    assert res.returncode == 0, 'fusermount3 -u: %s' % res.stderr
    assert not util.is_mounted(mnt.path)
    again = mount_factory(datapath, mountpoint=mnt.path)
    assert os.listdir(again.path) == []
    util.write_file(again / 'f', b'new mount')
    assert util.read_file(again / 'f') == b'new mount'
    os.symlink(backing, again / 'log')
    assert util.read_file(again / 'log')[:synced * REC] == data[:synced * REC]


# --------------------------------------------------------------------------
# Out of file descriptors

@pytest.fixture
def limited_mount(request, base_dir, datapath):
    made = []

    def mount(nofile):
        if shutil.which('prlimit') is None:
            pytest.skip('prlimit not found (Debian package util-linux)')
        path = os.path.join(base_dir, 'lim%d' % len(made))
        os.mkdir(path)
        m = util.LimitedMount(path, datapath=datapath, nofile=nofile,
                         writeback=util.writeback_allowed(request.node))
        made.append(m)
        return m.start()

    yield mount
    rep = getattr(request.node, 'rep_call', None)
    failed = rep is None or rep.failed
    problems = []
    for m in reversed(made):
        problems += m.finish(test_failed=failed)
    if problems:
        pytest.fail('teardown: ' + '\n'.join(problems), pytrace=False)


#: The daemon's line when a section cannot get an fd.
FD_LOG = r'(?i)too many open files|EMFILE|ENFILE|file descriptors|open file'

NOFILE = 64


@pytest.mark.file_backed
def test_out_of_fds_fails_cleanly_and_recovers(limited_mount, base_dir):
    mnt = limited_mount(NOFILE)
    mnt.expect_stderr(FD_LOG)
    made = []
    failure = None
    for i in range(4 * NOFILE):
        path = mnt / ('s%d' % i)
        try:
            util.write_file(path, b'section %d' % i)
        except OSError as e:
            failure = e
            break
        made.append(path)
    assert failure is not None, \
        'created %d sections under a limit of %d fds' % (len(made), NOFILE)
    # The daemon stops creates while it still has descriptors for its
    # own work (ENOSPC), before the kernel would say EMFILE.
    assert failure.errno == errno.ENOSPC, \
        'creating a section past the fd limit: %s' % failure
    assert 0 < len(made) < NOFILE
    # Nothing half-made is left behind.
    assert sorted(os.listdir(mnt.path)) == sorted(os.path.basename(p)
                                                  for p in made)
    # A file-backed section needs an fd too.
    target = os.path.join(base_dir, 'target')
    util.write_file(target, b'target')
    with pytest.raises(OSError) as e:
        os.symlink(target, mnt / 'fb')
    assert e.value.errno == errno.ENOSPC, e.value

    # The daemon said so, and keeps serving what exists.
    assert util.wait_for(lambda: re.search(FD_LOG, mnt.stderr), timeout=5), \
        'the daemon logged nothing about running out of fds:\n' + mnt.stderr
    assert mnt.alive()
    for i, path in enumerate(made):
        assert util.read_file(path) == b'section %d' % i
    os.mkdir(mnt / 'dir')
    assert os.statvfs(mnt.path).f_bsize > 0

    # Freeing a section gives its fd back (once the kernel forgets it).
    os.unlink(made.pop())

    def create():
        try:
            util.write_file(mnt / 'again', b'again')
            return True
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
            return False
    assert util.wait_for(create), 'no section could be made after unlink'
    assert util.read_file(mnt / 'again') == b'again'
    # Making a file-backed section needs up to three descriptors at once
    # (the caller's groups from /proc, the path walk's current and next
    # directory, the reopen), besides the one it keeps.
    for path in made[:4]:
        os.unlink(path)
    assert util.wait_for(lambda: _try_symlink(target, mnt / 'fb'))
    assert util.read_file(mnt / 'fb') == b'target'


def _try_symlink(target, path):
    try:
        os.symlink(target, path)
        return True
    except OSError as e:
        assert e.errno in (errno.EMFILE, errno.ENFILE), e
        return False


# --------------------------------------------------------------------------
# ENOSPC at the cap (-o size=)

CAP = MiB


def test_enospc_mid_copy_leaves_what_fit(mount_factory, datapath, base_dir):
    mnt = mount_factory(datapath, options=['size=%d' % CAP])
    src = os.path.join(base_dir, 'src')
    data = os.urandom(3 * CAP + 12345)
    util.write_file(src, data)
    keep = os.urandom(PAGE)
    util.write_file(mnt / 'keep', keep)

    # cp: fails with ENOSPC, the section holds a prefix of the source.
    res = subprocess.run(['cp', src, mnt / 'copy'], capture_output=True,
                         text=True, timeout=util.PATIENCE)
    assert res.returncode != 0
    assert 'No space left on device' in res.stderr, res.stderr
    got = util.read_file(mnt / 'copy')
    assert 0 < len(got) <= CAP - PAGE
    assert got == data[:len(got)], 'the section is not a prefix of the copy'
    assert os.stat(mnt / 'copy').st_size == len(got)
    st = os.statvfs(mnt.path)
    assert st.f_blocks * st.f_frsize == CAP
    assert st.f_bavail * st.f_frsize <= CAP - len(got) + PAGE

    # write(): the write that crosses the cap is short, the next ENOSPC;
    # the section holds exactly what the writes reported.
    os.unlink(mnt / 'copy')
    # The unlinked copy gives its space back once the kernel forgets it.
    assert util.wait_for(lambda: os.statvfs(mnt.path).f_bavail
                         * os.statvfs(mnt.path).f_frsize >= CAP - 2 * PAGE), \
        'unlink did not give the space back'
    written = 0
    fd = os.open(mnt / 'w', os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
    try:
        while True:
            n = os.write(fd, data[written:written + 100000])
            assert n > 0
            written += n
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    assert 0 < written <= CAP - PAGE
    assert util.read_file(mnt / 'w') == data[:written]
    # The other section is unharmed and the daemon still serves.
    assert util.read_file(mnt / 'keep') == keep
    os.unlink(mnt / 'w')
    assert util.wait_for(lambda: _try_write(mnt / 'small', b'x' * 1000))
    assert util.read_file(mnt / 'small') == b'x' * 1000


def _try_write(path, data):
    try:
        util.write_file(path, data)
        return True
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
        return False
