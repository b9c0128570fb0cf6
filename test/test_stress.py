"""Concurrency stress: many processes at once on one mount, every byte
checked.

test_workers_share_directories runs WORKERS worker processes and one
prowler for SECONDS (default 20 per data path; SECTIONFS_STRESS_SECONDS
lengthens it, SECTIONFS_STRESS_SEED replays a run).  The protocol that
lets a verifier know what must be there despite everything happening at
once:

- the shared directories d0..d3 hold everybody's entries;
- worker W only ever creates, renames, links and unlinks names that start
  with "wW-" (files "wW-fN", its own subdirectories "wW-sN"), so no other
  process changes what its names mean;
- each worker keeps the exact contents of each of its sections in memory
  and checks every read (read(), pread() on a held fd, mmap, after
  dropping the page cache) against them, and its names against what
  listdir() of the shared directories returns;
- the prowler reads everybody's entries (listdir, stat, open, read,
  getxattr) and may only ever see ENOENT for a name that went away.

One kernel behaviour is tolerated, and counted in the output: Linux's
FUSE client can cache a link count of 0 for a file that still has a name
(under this load it happens with libfuse's own passthrough_ll example
over tmpfs too), so link(2) fails with ENOENT without asking the daemon.
The worker then checks that the daemon's count (statx with
AT_STATX_FORCE_SYNC) is right and that the link works once re-read.

A watchdog thread in the test process stats a probe file in its own
directory; if one stat takes longer than the daemon's patience, the mount
has stopped answering: the watchdog kills the daemon (by its PID), which
turns every blocked call into ENOTCONN, and the test fails.

test_stress_ng runs stress-ng's file stressors (those that take
--temp-path) with --verify on each data path.

Run as a script, this file is the worker and the prowler:
    test_stress.py worker ROOT WID SECONDS SEED
    test_stress.py prowler ROOT SECONDS SEED
each prints one JSON line and exits 0, or 1 with an "error" in it.
"""

import contextlib
import ctypes
import errno
import gc
import json
import mmap
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

import pytest

import util

PAGE = mmap.PAGESIZE
WORKERS = 4
SHARED_DIRS = 4
MAX_FILE = 256 * 1024
MAX_LIVE = 24          # files a worker keeps at most
MAX_HELD = 6           # fds a worker holds open across operations


def stress_seconds(default=20.0):
    value = os.environ.get('SECTIONFS_STRESS_SECONDS', '').strip()
    return float(value) if value else default


# --------------------------------------------------------------------------
# The worker: owns its names and knows the bytes of its sections

class Mismatch(Exception):
    pass


AT_SYMLINK_NOFOLLOW = 0x100
AT_STATX_FORCE_SYNC = 0x2000
STATX_NLINK = 0x4
_libc = ctypes.CDLL(None, use_errno=True)


def statx_nlink(path, sync_flag):
    """st_nlink of path by statx(2); with AT_STATX_FORCE_SYNC, the
    daemon's."""
    buf = ctypes.create_string_buffer(256)
    if _libc.statx(util.AT_FDCWD, os.fsencode(path),
                   AT_SYMLINK_NOFOLLOW | sync_flag, STATX_NLINK, buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return struct.unpack_from('I', buf.raw, 16)[0]    # stx_nlink


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


class Worker:
    def __init__(self, root, wid, seed):
        self.root = root
        self.wid = wid
        self.rng = random.Random(seed)
        self.prefix = 'w%d-' % wid
        self.next_id = 0
        self.content = {}      # fid -> bytearray: what the section holds
        self.names = {}        # relative path -> fid
        self.subdirs = set()   # relative paths of own subdirectories
        self.held = []         # [(fid, fd)]: fds kept open across ops
        self.counts = {}
        self.last = None

    # -- model helpers --

    def path(self, rel):
        return os.path.join(self.root, rel)

    def fresh(self, kind):
        self.next_id += 1
        return '%s%s%d' % (self.prefix, kind, self.next_id)

    def parents(self):
        return ['d%d' % i for i in range(SHARED_DIRS)] + sorted(self.subdirs)

    def names_of(self, fid):
        return [n for n, f in self.names.items() if f == fid]

    def forget_if_gone(self, fid):
        if fid not in self.names.values() and \
                not any(f == fid for f, _ in self.held):
            del self.content[fid]

    def random_name(self):
        return self.rng.choice(sorted(self.names)) if self.names else None

    def random_bytes(self, n):
        return self.rng.randbytes(n)

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    # -- checks --

    def check_bytes(self, fid, got, how):
        want = bytes(self.content[fid])
        if got != want:
            i = first_difference(got, want)
            raise Mismatch('%s of %s: %d bytes, expected %d; first '
                           'difference at offset %d (got %r, want %r)'
                           % (how, self.names_of(fid) or 'unlinked section',
                              len(got), len(want), i, got[i:i + 8],
                              want[i:i + 8]))

    def read_fd(self, fd, length):
        return util.pread_all(fd, length + 1, 0)

    def verify_name(self, rel):
        fid = self.names[rel]
        fd = os.open(self.path(rel), os.O_RDONLY)
        try:
            how = 'read'
            if self.rng.random() < 0.3:
                # Make the next read come from the daemon, not the cache.
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                how = 'read after FADV_DONTNEED'
            st = os.fstat(fd)
            if st.st_size != len(self.content[fid]):
                raise Mismatch('fstat of %s: size %d, expected %d'
                               % (rel, st.st_size, len(self.content[fid])))
            nlink = len(self.names_of(fid))
            if st.st_nlink != nlink:
                # The kernel's cached count can lag (see op_link); what
                # the daemon says is what must be right.
                synced = statx_nlink(self.path(rel), AT_STATX_FORCE_SYNC)
                if synced != nlink:
                    raise Mismatch('stat of %s: nlink %s (cached %d), '
                                   'expected %d' % (rel, synced,
                                                    st.st_nlink, nlink))
                self.count('stale cached nlink')
            self.check_bytes(fid, self.read_fd(fd, len(self.content[fid])),
                             how)
        finally:
            os.close(fd)

    def verify_mmap(self, rel):
        fid = self.names[rel]
        size = len(self.content[fid])
        if size == 0:
            return
        fd = os.open(self.path(rel), os.O_RDONLY)
        try:
            with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as m:
                self.check_bytes(fid, bytes(m), 'mmap read')
        finally:
            os.close(fd)

    def verify_listing(self):
        for parent in self.parents():
            mine = sorted(n for n in os.listdir(self.path(parent))
                          if n.startswith(self.prefix))
            want = sorted(os.path.basename(p) for p in
                          list(self.names) + list(self.subdirs)
                          if os.path.dirname(p) == parent)
            if mine != want:
                raise Mismatch('listdir(%s) shows %s of my names, expected %s'
                               % (parent, mine, want))

    # -- operations --

    def op_create(self):
        if len(self.content) >= MAX_LIVE:
            return self.op_unlink()
        rel = os.path.join(self.rng.choice(self.parents()), self.fresh('f'))
        data = self.random_bytes(self.rng.randrange(MAX_FILE))
        how = self.rng.randrange(3)
        if how == 0:
            fd = os.open(self.path(rel), os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                         0o644)
        elif how == 1:
            os.mknod(self.path(rel), 0o644)
            fd = os.open(self.path(rel), os.O_WRONLY | os.O_TRUNC)
        else:
            fd = os.open(self.path(rel), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            pos = 0
            while pos < len(data):
                n = self.rng.randrange(1, 70000)
                pos += os.write(fd, data[pos:pos + n])
        finally:
            os.close(fd)
        self.content[self.next_id] = bytearray(data)
        self.names[rel] = self.next_id

    @contextlib.contextmanager
    def picked_fd(self):
        """(fid, fd): a held fd, or one opened on a named section for the
        with block and closed after it; (None, None) when there is none."""
        if self.held and self.rng.random() < 0.4:
            yield self.rng.choice(self.held)
            return
        rel = self.random_name()
        if rel is None:
            yield None, None
            return
        fd = os.open(self.path(rel), os.O_RDWR)
        try:
            yield self.names[rel], fd
        finally:
            os.close(fd)

    def op_write(self):
        with self.picked_fd() as (fid, fd):
            if fid is None:
                return self.op_create()
            c = self.content[fid]
            off = self.rng.randrange(len(c) + PAGE)
            data = self.random_bytes(self.rng.randrange(1, 3 * PAGE))
            if os.pwrite(fd, data, off) != len(data):
                raise Mismatch('short pwrite')
            if off > len(c):
                c.extend(bytes(off - len(c)))
            c[off:off + len(data)] = data

    def op_mmap_write(self):
        with self.picked_fd() as (fid, fd):
            if fid is None:
                return self.op_create()
            c = self.content[fid]
            if not c:
                return
            with mmap.mmap(fd, len(c), mmap.MAP_SHARED,
                           mmap.PROT_READ | mmap.PROT_WRITE) as m:
                off = self.rng.randrange(len(c))
                data = self.random_bytes(self.rng.randrange(
                    1, min(len(c) - off, 2 * PAGE) + 1))
                m[off:off + len(data)] = data
                c[off:off + len(data)] = data
                if self.rng.random() < 0.5:
                    m.flush()
                # What the view holds, read through the same view.
                self.check_bytes(fid, bytes(m), 'mmap view after write')
            # And through read(): one page cache, one truth.
            self.check_bytes(fid, self.read_fd(fd, len(c)),
                             'pread after mmap write')

    def op_truncate(self):
        rel = self.random_name()
        if rel is None:
            return self.op_create()
        fid = self.names[rel]
        c = self.content[fid]
        size = self.rng.choice([0, self.rng.randrange(MAX_FILE),
                                max(0, len(c) - self.rng.randrange(PAGE)),
                                len(c) + self.rng.randrange(PAGE)])
        if self.rng.random() < 0.5:
            os.truncate(self.path(rel), size)
        else:
            fd = os.open(self.path(rel), os.O_WRONLY)
            try:
                os.ftruncate(fd, size)
            finally:
                os.close(fd)
        if size < len(c):
            del c[size:]
        else:
            c.extend(bytes(size - len(c)))

    def op_fallocate(self):
        with self.picked_fd() as (fid, fd):
            if fid is None:
                return self.op_create()
            c = self.content[fid]
            off = self.rng.randrange(len(c) + PAGE)
            length = self.rng.randrange(1, 4 * PAGE)
            mode = self.rng.choice([0, util.FALLOC_FL_KEEP_SIZE,
                                    util.FALLOC_FL_PUNCH_HOLE
                                    | util.FALLOC_FL_KEEP_SIZE])
            util.fallocate(fd, mode, off, length)
            if mode & util.FALLOC_FL_PUNCH_HOLE:
                end = min(off + length, len(c))
                if off < end:
                    c[off:end] = bytes(end - off)
            elif not mode & util.FALLOC_FL_KEEP_SIZE and off + length > len(c):
                c.extend(bytes(off + length - len(c)))

    def op_rename(self):
        rel = self.random_name()
        if rel is None:
            return self.op_create()
        fid = self.names[rel]
        choice = self.rng.random()
        others = [n for n in self.names if self.names[n] != fid]
        if choice < 0.2 and others:
            # Over another of my sections: it loses that name.
            dst = self.rng.choice(sorted(others))
            os.rename(self.path(rel), self.path(dst))
            victim = self.names.pop(dst)
            del self.names[rel]
            self.names[dst] = fid
            self.forget_if_gone(victim)
        elif choice < 0.3 and others:
            dst = self.rng.choice(sorted(others))
            try:
                util.renameat2(self.path(rel), self.path(dst),
                               util.RENAME_NOREPLACE)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise
            else:
                raise Mismatch('RENAME_NOREPLACE %s over %s succeeded'
                               % (rel, dst))
        elif choice < 0.45 and others:
            dst = self.rng.choice(sorted(others))
            util.renameat2(self.path(rel), self.path(dst),
                           util.RENAME_EXCHANGE)
            self.names[rel], self.names[dst] = self.names[dst], fid
        else:
            dst = os.path.join(self.rng.choice(self.parents()),
                               self.fresh('f'))
            os.rename(self.path(rel), self.path(dst))
            del self.names[rel]
            self.names[dst] = fid

    def op_link(self):
        rel = self.random_name()
        if rel is None:
            return self.op_create()
        dst = os.path.join(self.rng.choice(self.parents()), self.fresh('f'))
        try:
            os.link(self.path(rel), self.path(dst))
        except FileNotFoundError:
            # Linux's FUSE client can be left with a cached link count of
            # 0 for a file that has a name (seen with libfuse's own
            # passthrough_ll over tmpfs too), and link(2) then fails
            # with ENOENT before the daemon is asked.  Tolerated once: the
            # daemon must say the file has its names, and a link made
            # after the kernel re-reads the count must work.  The cached
            # count itself is no evidence either way: the prowler's stats
            # may have refreshed it since the failed link.
            synced = statx_nlink(self.path(rel), AT_STATX_FORCE_SYNC)
            want = len(self.names_of(self.names[rel]))
            if synced != want:
                raise
            os.link(self.path(rel), self.path(dst))
            self.count('link retried after a stale cached nlink')
        self.names[dst] = self.names[rel]

    def op_unlink(self):
        rel = self.random_name()
        if rel is None:
            return self.op_create()
        fid = self.names.pop(rel)
        os.unlink(self.path(rel))
        self.forget_if_gone(fid)

    def op_hold(self):
        if len(self.held) >= MAX_HELD:
            return self.op_release()
        rel = self.random_name()
        if rel is None:
            return self.op_create()
        fd = os.open(self.path(rel), os.O_RDWR)
        self.held.append((self.names[rel], fd))

    def op_release(self):
        if not self.held:
            return self.op_hold()
        fid, fd = self.held.pop(self.rng.randrange(len(self.held)))
        try:
            self.check_bytes(fid, self.read_fd(fd, len(self.content[fid])),
                             'pread on a held fd')
        finally:
            os.close(fd)
        self.forget_if_gone(fid)

    def op_verify(self):
        rel = self.random_name()
        if rel is None:
            return self.op_create()
        if self.rng.random() < 0.3:
            self.verify_mmap(rel)
        else:
            self.verify_name(rel)

    def op_mkdir(self):
        if len(self.subdirs) >= 3:
            return self.op_rmdir()
        rel = os.path.join('d%d' % self.rng.randrange(SHARED_DIRS),
                           self.fresh('s'))
        os.mkdir(self.path(rel))
        self.subdirs.add(rel)

    def op_rmdir(self):
        empty = sorted(d for d in self.subdirs
                       if not any(os.path.dirname(n) == d
                                  for n in self.names))
        if not empty:
            return self.op_move_dir()
        rel = self.rng.choice(empty)
        os.rmdir(self.path(rel))
        self.subdirs.remove(rel)

    def op_move_dir(self):
        """Rename one of my subdirectories, with what is in it."""
        if not self.subdirs:
            return self.op_mkdir()
        rel = self.rng.choice(sorted(self.subdirs))
        dst = os.path.join('d%d' % self.rng.randrange(SHARED_DIRS),
                           self.fresh('s'))
        os.rename(self.path(rel), self.path(dst))
        self.subdirs.remove(rel)
        self.subdirs.add(dst)
        for n in [n for n in self.names if os.path.dirname(n) == rel]:
            self.names[os.path.join(dst, os.path.basename(n))] = \
                self.names.pop(n)

    def op_burst(self):
        """Many empty sections in one directory, listed, then removed."""
        rel = os.path.join('d%d' % self.rng.randrange(SHARED_DIRS),
                           self.fresh('s'))
        os.mkdir(self.path(rel))
        self.subdirs.add(rel)
        names = ['%s%d' % (self.prefix, i) for i in range(300)]
        for n in names:
            os.close(os.open(os.path.join(self.path(rel), n),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        got = sorted(os.listdir(self.path(rel)))
        if got != sorted(names):
            raise Mismatch('burst directory %s lists %d names, expected %d'
                           % (rel, len(got), len(names)))
        for n in names:
            os.unlink(os.path.join(self.path(rel), n))
        os.rmdir(self.path(rel))
        self.subdirs.remove(rel)

    OPS = [('create', 12), ('write', 14), ('mmap_write', 8), ('truncate', 8),
           ('fallocate', 5), ('rename', 12), ('link', 6), ('unlink', 8),
           ('hold', 4), ('release', 4), ('verify', 14), ('mkdir', 2),
           ('rmdir', 1), ('move_dir', 2), ('listing', 2), ('burst', 0.2)]

    def op_listing(self):
        self.verify_listing()

    def run(self, seconds):
        names = [n for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            op = self.rng.choices(names, weights)[0]
            self.last = op
            getattr(self, 'op_' + op)()
            self.counts[op] = self.counts.get(op, 0) + 1
        # At the end, every byte and every name once more.
        self.last = 'final check'
        for fid, fd in self.held:
            self.check_bytes(fid, self.read_fd(fd, len(self.content[fid])),
                             'final pread on a held fd')
        for rel in sorted(self.names):
            self.verify_name(rel)
        self.verify_listing()
        for _, fd in self.held:
            os.close(fd)
        self.held = []


def nlink_or_errno(fn, *args):
    """'ok, nlink N' for the stat fn(*args) returns, or its errno name."""
    try:
        st = fn(*args)
        return 'ok, nlink %d' % st.st_nlink
    except OSError as e:
        return util.errno_name(e)


def worker_main(root, wid, seconds, seed):
    w = Worker(root, int(wid), int(seed))
    result = {'worker': int(wid), 'seed': int(seed)}
    try:
        w.run(float(seconds))
        rc = 0
    except Mismatch as e:
        result['error'] = 'wrong data or names during %s: %s' % (w.last, e)
        rc = 1
    except OSError as e:
        result['error'] = 'unexpected %s during %s: %s' % (
            util.errno_name(e), w.last, e)
        # What the paths of the failed call are now, to tell a lost name
        # from a lost directory.
        for key, path in (('path', e.filename), ('path2', e.filename2)):
            if path:
                for p in (path, os.path.dirname(path)):
                    result.setdefault('now', {})[p] = nlink_or_errno(
                        os.lstat, p)
        rc = 1
    result['ops'] = w.counts
    result['live_sections'] = len(w.content)
    print(json.dumps(result), flush=True)
    return rc


# --------------------------------------------------------------------------
# The prowler: reads everybody's entries; only ENOENT may be seen

def prowler_main(root, seconds, seed):
    rng = random.Random(int(seed))
    deadline = time.monotonic() + float(seconds)
    seen = {'entries': 0, 'reads': 0, 'vanished': 0}
    result = {'prowler': True, 'seed': int(seed)}
    rc = 0

    def visit(path, name):
        try:
            st = os.lstat(path)
            is_dir = '-s' in name
            if is_dir != (st.st_mode & 0o170000 == 0o040000):
                raise AssertionError('%s has mode %o' % (path, st.st_mode))
            if is_dir:
                for sub in os.listdir(path):
                    os.lstat(os.path.join(path, sub))
                return
            if os.getxattr(path, util.KIND) != b'pagefile':
                raise AssertionError('%s: kind is not pagefile' % path)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.pread(fd, rng.randrange(1, 65536),
                         rng.randrange(max(1, st.st_size)))
                seen['reads'] += 1
            finally:
                os.close(fd)
        except FileNotFoundError:
            seen['vanished'] += 1

    try:
        while time.monotonic() < deadline:
            d = os.path.join(root, 'd%d' % rng.randrange(SHARED_DIRS))
            names = os.listdir(d)
            rng.shuffle(names)
            for name in names[:40]:
                seen['entries'] += 1
                visit(os.path.join(d, name), name)
            os.statvfs(root)
    except (OSError, AssertionError) as e:
        name = util.errno_name(e) if isinstance(e, OSError) else 'wrong'
        result['error'] = 'prowler saw %s: %s' % (name, e)
        rc = 1
    result['ops'] = seen
    print(json.dumps(result), flush=True)
    return rc


# --------------------------------------------------------------------------
# A deadline for every test in the reliability files

#: How long one test may take before its daemons are stopped: a deadline
#: for a hang, never a measure of speed.
DEADLINE = float(os.environ.get('SECTIONFS_TEST_DEADLINE')
                 or max(600.0, 20 * util.PATIENCE))


def stop_daemon(m):
    """SIGKILL a daemon by its PID; when one of its threads is stuck in
    the kernel on its own mount (the deadlock a daemon that calls into
    itself makes), abort the connection through fusectl, which ends every
    call blocked on it with ENOTCONN.  Returns what was done."""
    done = ['killed daemon pid %d' % m.pid]
    os.kill(m.pid, signal.SIGKILL)
    try:
        m.proc.wait(10)
        return done
    except subprocess.TimeoutExpired:
        pass
    if util.fuse_connection(m.path) is None:
        return done
    why = util.abort_fuse_connection(m.path)
    done.append('it was stuck: aborted its FUSE connection' if why is None
                else 'it was stuck and ' + why)
    return done


@pytest.fixture(autouse=True)
def deadline():
    """Fail a test that hangs instead of hanging the suite: after
    DEADLINE seconds, stop (by PID) every daemon this process still runs.
    Used by test_stress, test_clients, test_faults and test_hostile."""
    fired = []

    def fire():
        live = [o for o in gc.get_objects()
                if isinstance(o, util.Mount) and o.alive()]
        fired.append('test still running after %ds' % DEADLINE)
        for m in live:
            fired.extend(stop_daemon(m))

    timer = threading.Timer(DEADLINE, fire)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()
    if fired:
        pytest.fail('deadline: ' + '; '.join(fired), pytrace=False)


# --------------------------------------------------------------------------
# The watchdog

class Watchdog:
    """Fails the test (and kills the daemon) if a stat stops returning."""

    def __init__(self, mnt, probe):
        self.mnt = mnt
        self.probe = probe
        self.fired = None
        self.probes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _stat(self, box):
        try:
            os.stat(self.probe)
            box.append('ok')
        except OSError as e:
            box.append(util.errno_name(e))

    def _loop(self):
        patience = max(30.0, util.PATIENCE)
        while not self._stop.wait(0.5):
            box = []
            t = threading.Thread(target=self._stat, args=(box,), daemon=True)
            t.start()
            t.join(patience)
            if t.is_alive():
                self.fired = ('the mount stopped answering: a stat of %s '
                              'did not return within %ds; daemon killed'
                              % (self.probe, patience))
                self.mnt.kill()
                return
            if box != ['ok']:
                self.fired = 'stat of %s failed: %s' % (self.probe, box)
                return
            self.probes += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(max(30.0, util.PATIENCE) + 10)


def run_bounded(procs, seconds):
    """Wait for every Popen; kill (by PID) those still running long after
    their deadline.  Returns [(proc, stdout, stderr)]."""
    out = []
    deadline = time.monotonic() + seconds + max(60.0, 2 * util.PATIENCE)
    for p in procs:
        try:
            so, se = p.communicate(timeout=max(1.0,
                                               deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            so, se = p.communicate()
            se += '\n(killed: still running long after its deadline)'
        out.append((p, so, se))
    return out


# --------------------------------------------------------------------------
# The tests

def test_workers_share_directories(mnt):
    seconds = stress_seconds()
    seed = int(os.environ.get('SECTIONFS_STRESS_SEED')
               or random.SystemRandom().randrange(1 << 30))
    print('stress: %s path, %g s, seed %d (SECTIONFS_STRESS_SEED replays)'
          % (mnt.datapath, seconds, seed))
    for i in range(SHARED_DIRS):
        os.mkdir(mnt / ('d%d' % i))
        os.chmod(mnt / ('d%d' % i), 0o777)
    os.mkdir(mnt / 'watchdog')
    util.write_file(mnt / 'watchdog/probe', b'probe')

    me = os.path.abspath(__file__)
    argv = [[util.PYTHON, me, 'worker', mnt.path, str(w), str(seconds),
             str(seed + w)] for w in range(WORKERS)]
    argv.append([util.PYTHON, me, 'prowler', mnt.path, str(seconds),
                 str(seed + WORKERS)])
    with Watchdog(mnt, mnt / 'watchdog/probe') as dog:
        procs = [subprocess.Popen(a, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd='/')
                 for a in argv]
        results = run_bounded(procs, seconds)
    assert dog.fired is None, dog.fired

    problems = []
    for p, so, se in results:
        line = so.strip().splitlines()[-1] if so.strip() else ''
        print(line)
        try:
            res = json.loads(line)
        except ValueError:
            problems.append('%s exited %s without a result: %s'
                            % (p.args[2], p.returncode, se.strip()[-2000:]))
            continue
        if p.returncode != 0 or 'error' in res:
            problems.append('%s: %s' % (line, se.strip()[-2000:]))
    assert not problems, '\n'.join(problems)
    assert dog.probes > 0

    # The mount is whole afterwards: every name the workers left can be
    # read, and everything can be removed.
    util.write_file(mnt / 'after', b'after')
    assert util.read_file(mnt / 'after') == b'after'
    for i in range(SHARED_DIRS):
        shutil.rmtree(mnt / ('d%d' % i))
    assert sorted(os.listdir(mnt.path)) == ['after', 'watchdog']


STRESS_NG_SECONDS = 10

#: Stressors that work on files in --temp-path, with what makes each use a
#: file there and keeps its memory modest.  All run at once.
STRESSORS = [
    ['--mmap', '1', '--mmap-file', '--mmap-bytes', '16M'],
    ['--dir', '1'], ['--rename', '1'], ['--fallocate', '1'], ['--seek', '1'],
    ['--hdd', '1', '--hdd-bytes', '16M'], ['--msync', '1'],
    ['--lockf', '1'], ['--link', '1'], ['--dentry', '1'], ['--iomix', '1'],
    ['--copy-file', '1'], ['--readahead', '1'], ['--dirdeep', '1'],
    ['--sync-file', '1'], ['--utime', '1'], ['--chmod', '1'],
]


def test_stress_ng(mnt, base_dir):
    if shutil.which('stress-ng') is None:
        pytest.skip('stress-ng not found (Debian package stress-ng)')
    seconds = stress_seconds(STRESS_NG_SECONDS)
    os.mkdir(mnt / 'watchdog')
    util.write_file(mnt / 'watchdog/probe', b'probe')
    os.mkdir(mnt / 'ng')
    argv = ['stress-ng', '--temp-path', mnt / 'ng', '--verify',
            '--timeout', '%ds' % seconds, '--metrics-brief']
    for s in STRESSORS:
        argv += s
    with Watchdog(mnt, mnt / 'watchdog/probe') as dog:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                cwd=base_dir)
        [(_, out, _)] = run_bounded([proc], seconds)
    print(out)
    assert dog.fired is None, dog.fired
    bad = [line for line in out.splitlines()
           if 'fail' in line.lower() or 'error' in line.lower()]
    assert proc.returncode == 0 and not bad, \
        'stress-ng exited %s:\n%s' % (proc.returncode, '\n'.join(bad or
                                                                [out[-3000:]]))
    assert 'successful run completed' in out
    # stress-ng cleans up after itself; what it left must be removable.
    shutil.rmtree(mnt / 'ng')
    assert os.listdir(mnt.path) == ['watchdog']


if __name__ == '__main__':
    if len(sys.argv) == 6 and sys.argv[1] == 'worker':
        sys.exit(worker_main(*sys.argv[2:]))
    if len(sys.argv) == 5 and sys.argv[1] == 'prowler':
        sys.exit(prowler_main(*sys.argv[2:]))
    sys.exit('usage: test_stress.py worker ROOT WID SECONDS SEED | '
             'prowler ROOT SECONDS SEED')
