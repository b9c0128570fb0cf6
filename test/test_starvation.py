"""One user may not starve the others of the daemon, nor make it hold
more than they are charged for.

- seal storm: uid 65534 asks, from many threads at once and over and
  over, for the write seal of sections it keeps open for writing (the
  cached path waits for writers) or whose pages it pins in a pipe with
  vmsplice (memfd waits for pins); meanwhile root creates, stats and
  unlinks files.  The victim's work finishes within a liveness bound, and
  the attacker's seals are refused EBUSY, nothing else;
- open directories: a thousand handles of a 4,000-entry directory cost
  the daemon a few MiB, not a copy of the listing each;
- listings under change: names that exist throughout a listing appear in
  it exactly once while other names are created, renamed and unlinked
  beside them, with telldir/seekdir too; readdirplus attributes match
  stat.
"""

import ctypes
import errno
import json
import os
import pathlib
import random
import subprocess
import threading
import time

import pytest

import util
from test_stress import deadline  # noqa: F401 (autouse: bounds each test)

NOBODY = util.NOBODY
SEALS = 'user.sectionfs.seals'

#: Attacker threads: well above libfuse's ten workers, and each seal of
#: theirs used to hold a serving thread for up to 200 ms.
ATTACKERS = 32
#: A liveness bound for 20 create/stat/unlink cycles (0.02 s unloaded).
VICTIM_BOUND = 10.0

ATTACKER = r'''
import ctypes, errno, json, mmap, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                      ctypes.c_int, ctypes.c_int, ctypes.c_long]

class iovec(ctypes.Structure):
    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]

libc.vmsplice.argtypes = [ctypes.c_int, ctypes.POINTER(iovec),
                          ctypes.c_size_t, ctypes.c_uint]
libc.vmsplice.restype = ctypes.c_ssize_t
SIZE = 65536
d, n = sys.argv[1], int(sys.argv[2])
stop = threading.Event()
outcomes = {}
lock = threading.Lock()
held = []

def prepare(i):
    p = os.path.join(d, 'a%d' % i)
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b'x' * SIZE)
    # Pages pinned in a pipe: a read-only shared view (which alone does
    # not stop a write seal) vmspliced into a full pipe.
    ro = os.open(p, os.O_RDONLY)
    addr = libc.mmap(None, SIZE, mmap.PROT_READ, mmap.MAP_SHARED, ro, 0)
    r, w = os.pipe()
    io = iovec(addr, SIZE)
    libc.vmsplice(w, ctypes.byref(io), 1, 2)    # SPLICE_F_NONBLOCK
    held.append((fd, ro, r, w))
    return p

def attack(p):
    while not stop.is_set():
        try:
            os.setxattr(p, 'user.sectionfs.seals', b'write')
            what = 'ok'
        except OSError as e:
            what = errno.errorcode.get(e.errno, str(e.errno))
        with lock:
            outcomes[what] = outcomes.get(what, 0) + 1

paths = [prepare(i) for i in range(n)]
threads = [threading.Thread(target=attack, args=(p,)) for p in paths]
for t in threads:
    t.start()
print('ready', flush=True)
sys.stdin.read()
stop.set()
for t in threads:
    t.join()
print(json.dumps(outcomes), flush=True)
'''


def victim_cycles(mnt, count=20):
    """count create/stat/unlink cycles as root; their seconds."""
    start = time.monotonic()
    for i in range(count):
        p = mnt / ('victim%d' % i)
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
        os.stat(p)
        os.unlink(p)
    return time.monotonic() - start


def under_attack(script, pub, threads, victim_dir):
    """Run script as uid 65534 with pub and threads; once it says ready,
    time the victim's cycles in victim_dir, then end the attack (closing
    its stdin).  Returns the victim's seconds and the attacker's outcomes
    (the JSON it prints last)."""
    attacker = subprocess.Popen(
        util.as_user_argv(NOBODY) + [util.PYTHON, '-I', '-c', script,
                                     pub, str(threads)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd='/')
    try:
        assert attacker.stdout.readline().strip() == 'ready'
        time.sleep(0.5)             # every attacker thread is asking
        took = victim_cycles(victim_dir)
    finally:
        out, _ = attacker.communicate(timeout=util.PATIENCE)
    return took, json.loads(out)


@pytest.mark.root
@pytest.mark.other_user
def test_seal_storm_does_not_stall_other_users(shared_mnt):
    mnt = shared_mnt
    if util.setpriv_skip_reason():
        pytest.skip(util.setpriv_skip_reason())
    took, outcomes = under_attack(ATTACKER, mnt / 'pub', ATTACKERS, mnt)
    # Under valgrind every request costs the daemon tens of times more,
    # and the victim's requests queue behind the attacker's refusals.
    assert took < VICTIM_BOUND or util.VALGRIND, \
        '20 create/stat/unlink cycles took %.1f s beside %d sealers' % (
            took, ATTACKERS)
    # Refused while the sections are open for writing or pinned; a seal
    # that could be made is fine, anything else is not.
    assert set(outcomes) <= {'EBUSY', 'ok'}, outcomes
    assert outcomes.get('EBUSY', 0) > 0, outcomes
    # The daemon still seals what nobody holds.
    p = mnt / 'free'
    util.write_file(p, b'free')
    os.setxattr(p, SEALS, b'write')
    assert os.getxattr(p, SEALS) == b'write'


def test_seal_waits_for_a_writer_that_closes(mnt):
    """A writer that has just closed (its RELEASE may reach the daemon
    after the seal): the seal is made; a writer that stays makes it
    EBUSY (both unchanged by the wait moving off the serving threads)."""
    p = mnt / 's'
    for i in range(20):
        util.write_file(p, b'data')
        fd = os.open(p, os.O_RDWR)
        os.write(fd, b'x')
        os.close(fd)
        os.setxattr(p, SEALS, b'write')
        assert os.getxattr(p, SEALS) == b'write'
        os.unlink(p)
    q = mnt / 't'
    util.write_file(q, b'data')
    with open(q, 'r+b') as f:
        f.write(b'x')
        if mnt.datapath == 'cached':
            with pytest.raises(OSError) as e:
                os.setxattr(q, SEALS, b'write')
            assert e.value.errno == errno.EBUSY
    os.setxattr(q, SEALS, b'write')
    assert os.getxattr(q, SEALS) == b'write'


# --------------------------------------------------------------------------
# Directory handles

def daemon_rss(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    raise AssertionError('no VmRSS for %d' % pid)


def test_open_directories_cost_o1(mnt):
    if util.VALGRIND:
        pytest.skip('valgrind keeps its own heap: the daemon\'s RSS says '
                    'nothing of what sectionfs holds')
    d = mnt / 'big'
    os.mkdir(d)
    for i in range(4000):
        os.close(os.open(os.path.join(d, 'entry-with-a-longish-name-%05d'
                                      % i), os.O_CREAT | os.O_WRONLY, 0o644))
    fds = [os.open(d, os.O_RDONLY | os.O_DIRECTORY)]
    before = daemon_rss(mnt.pid)
    try:
        for _ in range(999):
            fds.append(os.open(d, os.O_RDONLY | os.O_DIRECTORY))
        grown = daemon_rss(mnt.pid) - before
        # Each handle still lists the whole directory.
        assert len(os.listdir(d)) == 4000
    finally:
        for fd in fds:
            os.close(fd)
    assert grown < 16 << 20, \
        '1,000 open handles of a 4,000-entry directory took %.1f MiB' % (
            grown / 1048576)


# --------------------------------------------------------------------------
# Listings under change

_libc = ctypes.CDLL(None, use_errno=True)


class Dirent(ctypes.Structure):
    _fields_ = [('d_ino', ctypes.c_uint64), ('d_off', ctypes.c_int64),
                ('d_reclen', ctypes.c_ushort), ('d_type', ctypes.c_ubyte),
                ('d_name', ctypes.c_char * 256)]


_libc.opendir.restype = ctypes.c_void_p
_libc.opendir.argtypes = [ctypes.c_char_p]
_libc.readdir.restype = ctypes.POINTER(Dirent)
_libc.readdir.argtypes = [ctypes.c_void_p]
_libc.telldir.restype = ctypes.c_long
_libc.telldir.argtypes = [ctypes.c_void_p]
_libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
_libc.closedir.argtypes = [ctypes.c_void_p]


def read_on(dirp):
    """[(name, telldir after it)] from dirp's position to the end."""
    out = []
    while True:
        ent = _libc.readdir(dirp)
        if not ent:
            return out
        out.append((ent.contents.d_name.decode(), _libc.telldir(dirp)))


class Churn:
    """Creates, renames and unlinks names beside the stable ones until
    stopped."""

    def __init__(self, d):
        self.d = d
        self.stop = threading.Event()
        self.errors = []
        self.thread = threading.Thread(target=self.run)

    def run(self):
        rnd = random.Random(7)
        i = 0
        try:
            while not self.stop.is_set():
                i += 1
                a = os.path.join(self.d, 'tmp-a%d' % (i % 200))
                b = os.path.join(self.d, 'tmp-b%d' % rnd.randrange(200))
                op = rnd.randrange(3)
                if op == 0:
                    os.close(os.open(a, os.O_CREAT | os.O_WRONLY, 0o644))
                elif op == 1:
                    try:
                        os.rename(a, b)
                    except FileNotFoundError:
                        pass
                else:
                    for p in (a, b):
                        try:
                            os.unlink(p)
                        except FileNotFoundError:
                            pass
        except Exception as e:  # reported by the test
            self.errors.append(e)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        assert not self.errors, self.errors


def make_stable(d, count=600):
    names = ['stable%04d' % i for i in range(count)]
    for n in names:
        os.close(os.open(os.path.join(d, n), os.O_CREAT | os.O_WRONLY,
                         0o644))
    return set(names)


def test_listing_under_change(mnt):
    d = mnt / 'busy'
    os.mkdir(d)
    stable = make_stable(d)
    with Churn(d):
        for _ in range(30):
            names = [e.name for e in os.scandir(d)]
            assert len(names) == len(set(names)), 'a name listed twice'
            missing = stable - set(names)
            assert not missing, 'stable names skipped: %s' % sorted(
                missing)[:5]
            # The dots come first, as a reader of getdents sees them.
            dirp = _libc.opendir(d.encode())
            assert dirp
            try:
                first = read_on(dirp)
            finally:
                _libc.closedir(dirp)
            assert [n for n, _ in first[:2]] == ['.', '..']


def test_seekdir_under_change(mnt):
    d = mnt / 'seek'
    os.mkdir(d)
    stable = make_stable(d)
    rnd = random.Random(3)
    with Churn(d):
        for _ in range(10):
            dirp = _libc.opendir(d.encode())
            assert dirp
            try:
                first = read_on(dirp)
                names = [n for n, _ in first]
                assert names[:2] == ['.', '..']
                assert len(names) == len(set(names))
                assert stable <= set(names)
                for _ in range(5):
                    k = rnd.randrange(len(first))
                    _libc.seekdir(dirp, first[k][1])
                    rest = [n for n, _ in read_on(dirp)]
                    assert len(rest) == len(set(rest)), 'a name twice'
                    want = {n for n, _ in first[k + 1:]} & stable
                    assert want <= set(rest), \
                        'after seekdir, stable names skipped: %s' % sorted(
                            want - set(rest))[:5]
                _libc.seekdir(dirp, 0)          # rewinddir
                again = [n for n, _ in read_on(dirp)]
                assert len(again) == len(set(again))
                assert stable <= set(again)
            finally:
                _libc.closedir(dirp)


def test_readdirplus_attributes(mnt):
    d = mnt / 'plus'
    os.mkdir(d)
    os.mkdir(d + '/sub')
    util.write_file(d + '/file', b'12345')
    os.mkfifo(d + '/fifo')
    for e in os.scandir(d):
        st = os.stat(os.path.join(d, e.name), follow_symlinks=False)
        assert e.inode() == st.st_ino
        assert e.stat(follow_symlinks=False).st_mode == st.st_mode
    assert os.stat(d + '/file').st_size == 5
    out = subprocess.run(['ls', '-la', '--time-style=+T', d], check=True,
                         capture_output=True, text=True).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    assert sorted(r[6] for r in rows) == ['.', '..', 'fifo', 'file', 'sub']
    assert [r[4] for r in rows if r[6] == 'file'] == ['5']
    assert [r[0][0] for r in rows if r[6] == 'fifo'] == ['p']


# --------------------------------------------------------------------------
# Symlink walks

#: Threads that each make file-backed sections of a long chain of links.
LINKERS = 8

LINKER = r'''
import errno, json, os, shutil, sys, tempfile, threading
pub, n = sys.argv[1], int(sys.argv[2])
# 40 links (the most a walk follows), each target ~4,000 characters of
# "/proc/.." (a step into another mount and back, twice a pair) ending
# in the next link; the last names a file.
d = tempfile.mkdtemp(prefix='chain-')
with open(os.path.join(d, 'file'), 'wb') as f:
    f.write(b'end of the chain')
for i in range(40):
    nxt = os.path.join(d, 'l%d' % (i + 1) if i < 39 else 'file')
    os.symlink('/proc/..' * ((4000 - len(nxt)) // 8) + nxt,
               os.path.join(d, 'l%d' % i))
stop = threading.Event()
outcomes = {}
lock = threading.Lock()

def link(k):
    i = 0
    while not stop.is_set():
        i += 1
        p = os.path.join(pub, 'chain%d-%d' % (k, i))
        try:
            os.symlink(os.path.join(d, 'l0'), p)
            os.unlink(p)
            what = 'ok'
        except OSError as e:
            what = errno.errorcode.get(e.errno, str(e.errno))
        with lock:
            outcomes[what] = outcomes.get(what, 0) + 1

threads = [threading.Thread(target=link, args=(k,)) for k in range(n)]
for t in threads:
    t.start()
print('ready', flush=True)
sys.stdin.read()
stop.set()
for t in threads:
    t.join()
shutil.rmtree(d)
print(json.dumps(outcomes), flush=True)
'''


@pytest.mark.root
@pytest.mark.other_user
def test_long_symlink_walks_do_not_stall_other_users(shared_mnt):
    """uid 65534 makes file-backed sections of a chain of 40 links, each
    thousands of steps into /proc and back, from many threads; root
    creates and unlinks files in the same directory meanwhile (the kernel
    holds it for the whole of each link's walk).  Each call ends, ELOOP
    or a section, and the victim's work finishes within a liveness
    bound."""
    mnt = shared_mnt
    if util.setpriv_skip_reason():
        pytest.skip(util.setpriv_skip_reason())
    took, outcomes = under_attack(LINKER, mnt / 'pub', LINKERS,
                                  pathlib.Path(mnt / 'pub'))
    assert took < VICTIM_BOUND or util.VALGRIND, \
        '20 create/stat/unlink cycles took %.1f s beside %d linkers' % (
            took, LINKERS)
    assert set(outcomes) <= {'ELOOP', 'ok'}, outcomes
    assert sum(outcomes.values()) > 0, outcomes
    # A short chain still makes a section.
    p = os.path.join(mnt / 'pub', 'short')
    os.symlink('/proc/../proc/../etc/hostname', p)
    with open('/etc/hostname', 'rb') as f:
        assert util.read_file(p) == f.read()


#: Entries of the directory seekers walk, and the seeking threads.
SEEK_ENTRIES = 50000
SEEKERS = 4
#: A liveness bound for one create/stat/unlink cycle beside them.
CYCLE_BOUND = 2.0


def test_seekdir_in_a_big_directory(mnt):
    """Threads seek far into a directory of 50,000 entries over and over
    (each seek walks the directory from its head) while names are
    created, statted and unlinked in it: every seek finds the entry it
    was asked for, and every create/stat/unlink cycle finishes within a
    liveness bound."""
    d = mnt / 'huge'
    os.mkdir(d)
    # FIFOs: names that hold no section (and no descriptor of the
    # daemon's), which a directory listing walks all the same.
    for i in range(SEEK_ENTRIES):
        os.mkfifo(os.path.join(d, 'e%05d' % i))
    dirp = _libc.opendir(d.encode())
    assert dirp
    try:
        listing = read_on(dirp)
    finally:
        _libc.closedir(dirp)
    assert len(listing) == SEEK_ENTRIES + 2
    stop = threading.Event()
    wrong, errors, seeks = [], [], [0]

    def seek():
        rnd = random.Random(threading.get_ident())
        dirp = _libc.opendir(d.encode())
        try:
            while not stop.is_set():
                # Far down the listing: the oldest names come last.
                k = rnd.randrange(len(listing) * 3 // 4, len(listing) - 1)
                _libc.seekdir(dirp, listing[k][1])
                ent = _libc.readdir(dirp)
                got = ent.contents.d_name.decode() if ent else None
                if got != listing[k + 1][0]:
                    wrong.append((listing[k + 1][0], got))
                seeks[0] += 1
        except Exception as e:  # reported by the test
            errors.append(e)
        finally:
            _libc.closedir(dirp)

    threads = [threading.Thread(target=seek) for _ in range(SEEKERS)]
    for t in threads:
        t.start()
    worst = 0.0
    try:
        time.sleep(0.5)             # every seeker is seeking
        for i in range(50):
            start = time.monotonic()
            p = os.path.join(d, 'victim%d' % i)
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
            os.stat(p)
            os.unlink(p)
            worst = max(worst, time.monotonic() - start)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert not wrong, 'seekdir found the wrong entry: %s' % wrong[:5]
    assert seeks[0] > 0
    print('worst cycle %.3f s, %d seeks' % (worst, seeks[0]))
    assert worst < CYCLE_BOUND or util.VALGRIND, \
        'a create/stat/unlink cycle took %.1f s beside %d seekers' % (
            worst, SEEKERS)
