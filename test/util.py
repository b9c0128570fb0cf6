"""Helpers for the sectionfs integration suite.

What lives here: where the build is, the attribute names of the public
header (include/sectionfs.h), how a daemon is started, waited for,
unmounted and judged (exit status, stderr), the byte pattern the C helpers
share (pattern_byte() in test/helpers/mmap_view.c), a handle on a
long-lived mmap view held by another process, how sections are made and
the size cap read (df), small wrappers over calls Python's os module lacks
(renameat2, fallocate), how to act as another user (setpriv), what the
daemon holds open (/proc/PID/fd), and how a call's outcome is named.  No
test logic lives here.

Nothing in this file kills a process by name: only the PIDs it started.
"""

import contextlib
import ctypes
import errno
import gc
import mmap
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

# --------------------------------------------------------------------------
# Where things are

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
BUILD_DIR = os.path.abspath(os.environ.get('SECTIONFS_BUILD_DIR')
                            or os.path.join(TEST_DIR, '..'))
DAEMON = os.path.join(BUILD_DIR, 'src', 'sectionfs')
SECTIONCTL = os.path.join(BUILD_DIR, 'sectionctl', 'sectionctl')
HELPER_DIR = os.path.join(BUILD_DIR, 'test', 'helpers')
PYTHON = '/usr/bin/python3'

#: The data paths every data test runs on, and the -o option selecting each.
DATAPATHS = {
    'cached': 'passthrough=off',
    'passthrough': 'passthrough=on',
}

#: SECTIONFS_VALGRIND=1 runs every daemon under valgrind.
VALGRIND = os.environ.get('SECTIONFS_VALGRIND', '').strip().lower() \
    in ('1', 'yes', 'true', 'on')
VALGRIND_CMD = ['valgrind', '-q', '--error-exitcode=99', '--trace-children=yes',
                '--leak-check=full', '--errors-for-leak-kinds=definite']

#: SECTIONFS_IO_URING=on|off mounts every daemon with that io_uring=
#: option (unset: the daemon's default, auto; under valgrind, off: valgrind
#: 3.19 holds its lock across a waiting io_uring_enter, so a second queue
#: thread never registers and the mount waits for ever); for 'on',
#: conftest turns the fuse module's enable_uring on for the session and
#: restores it after.
IO_URING = os.environ.get('SECTIONFS_IO_URING', '').strip().lower() \
    or ('off' if VALGRIND else '')
URING_PARAM = '/sys/module/fuse/parameters/enable_uring'

#: SECTIONFS_WRITEBACK=1 adds writeback_cache to every cached-path mount
#: without a size cap (the daemon refuses the two together) whose test
#: does not make file-backed sections (such a mount makes none).
WRITEBACK = os.environ.get('SECTIONFS_WRITEBACK', '').strip().lower() \
    in ('1', 'yes', 'true', 'on')

#: How long a daemon may take to mount or to exit (valgrind is slow).
PATIENCE = 120.0 if VALGRIND else 20.0

NOBODY = 65534          # uid and gid of the "other user" tests
PAGE = mmap.PAGESIZE
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40


def _header_strings(path):
    """The string macros of a C header, {NAME: value}, read as the
    compiler reads them: each #define a run of string literals and of
    macros defined above it (include/sectionfs.h has no other kind)."""
    with open(path) as f:
        text = re.sub(r'/\*.*?\*/', ' ', f.read(), flags=re.S)
    names = {}
    for m in re.finditer(r'^#define[ \t]+(\w+)[ \t]+(.+)$', text, re.M):
        value = ''
        for literal, macro in re.findall(r'"([^"\\]*)"|(\w+)', m.group(2)):
            value += names[macro] if macro else literal
        names[m.group(1)] = value
    return names


#: The extended attributes, named as the public header names them, so
#: that the suite holds the daemon to what programs compile against.
HEADER = os.path.join(TEST_DIR, '..', 'include', 'sectionfs.h')
_HEADER_STRINGS = _header_strings(HEADER)
XATTR_PREFIX = _HEADER_STRINGS['SECTIONFS_XATTR_PREFIX']
KIND = _HEADER_STRINGS['SECTIONFS_XATTR_KIND']
BACKING = _HEADER_STRINGS['SECTIONFS_XATTR_BACKING']
BACKING_NOW = _HEADER_STRINGS['SECTIONFS_XATTR_BACKING_NOW']
LIFETIME = _HEADER_STRINGS['SECTIONFS_XATTR_LIFETIME']
SEALS = _HEADER_STRINGS['SECTIONFS_XATTR_SEALS']
RESIDENT = _HEADER_STRINGS['SECTIONFS_XATTR_RESIDENT']
#: Every attribute the header names.
XATTRS = frozenset(value for name, value in _HEADER_STRINGS.items()
                   if name.startswith('SECTIONFS_XATTR_')
                   and name != 'SECTIONFS_XATTR_PREFIX')


def uring_param():
    """The fuse module's enable_uring ('Y' or 'N'), or None when this
    kernel has no FUSE over io_uring."""
    try:
        with open(URING_PARAM) as f:
            return f.read().strip()
    except OSError:
        return None


def uring_skip_reason():
    if uring_param() is None:
        return 'needs FUSE over io_uring (Linux >= 6.14, CONFIG_FUSE_IO_URING)'
    if not os.access(URING_PARAM, os.W_OK):
        return 'needs a writable ' + URING_PARAM + ' (root)'
    return None


@contextlib.contextmanager
def enable_uring(value):
    """Set the fuse module's enable_uring to value ('Y' or 'N') for the
    block: it decides what INIT offers to mounts made meanwhile."""
    old = uring_param()
    with open(URING_PARAM, 'w') as f:
        f.write(value)
    try:
        yield
    finally:
        with open(URING_PARAM, 'w') as f:
            f.write(old)


def uring_fdinfo(pid, field):
    """field (a count in /proc/PID/fdinfo) of each of the daemon's io_uring
    instances, in a list."""
    values = []
    fd_dir = '/proc/%d/fd' % pid
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(os.path.join(fd_dir, fd)) != 'anon_inode:[io_uring]':
                continue
            with open('/proc/%d/fdinfo/%s' % (pid, fd)) as f:
                info = f.read()
        except OSError:
            continue
        m = re.search(r'^%s:\s*(\d+)' % field, info, re.M)
        if m:
            values.append(int(m.group(1)))
    return values


def uring_completions(pid):
    """Completions the daemon has taken from its io_uring instances
    (their CqHead); None when it has none."""
    heads = uring_fdinfo(pid, 'CqHead')
    return sum(heads) if heads else None


def uring_submitted(pid):
    """Per io_uring instance of the daemon, the entries the kernel took
    from its submission queue (SqHead): a queue thread submits its
    registrations at once, so none is 0 once every queue has registered."""
    return uring_fdinfo(pid, 'SqHead')


def helper(name):
    """Path of a C helper built by make check; fails the test if missing."""
    import pytest
    path = os.path.join(HELPER_DIR, name)
    if not os.access(path, os.X_OK):
        pytest.fail('test helper %s is not built (run make check, or make '
                    '%s)' % (path, os.path.relpath(path, BUILD_DIR)))
    return path


def daemon_binary():
    """Path of the daemon under test; fails the test if it is not built."""
    import pytest
    if not os.access(DAEMON, os.X_OK):
        pytest.fail('daemon %s is not built (SECTIONFS_BUILD_DIR=%s)'
                    % (DAEMON, BUILD_DIR))
    return DAEMON


# --------------------------------------------------------------------------
# Capability probes: each returns None or the reason a test cannot run.

def fuse_skip_reason():
    """Why this process cannot mount a FUSE filesystem, or None."""
    if not os.path.exists('/dev/fuse'):
        return 'no /dev/fuse: the fuse kernel module is not loaded'
    fusermount = shutil.which('fusermount3')
    if fusermount is None:
        return 'fusermount3 not found on PATH (Debian package fuse3)'
    if os.geteuid() != 0:
        if not os.stat(fusermount).st_mode & stat.S_ISUID:
            return 'not root and fusermount3 is not setuid'
    try:
        os.close(os.open('/dev/fuse', os.O_RDWR))
    except OSError as exc:
        return 'cannot open /dev/fuse: %s' % exc.strerror
    return None


def root_skip_reason():
    if os.geteuid() != 0:
        return 'needs root (uid %d)' % os.geteuid()
    return None


def cached_dio_skip_reason(mnt):
    """Why a test of the cached path's direct I/O for file-backed
    sections (and of its page cache kept across writes) cannot run: the
    daemon uses them only where the kernel offers DIRECT_IO_ALLOW_MMAP,
    from Linux 6.6 on."""
    if mnt.datapath != 'cached':
        return None
    release = re.match(r'(\d+)\.(\d+)', os.uname().release)
    if release and (int(release[1]), int(release[2])) < (6, 6):
        return ('the cached path needs Linux 6.6 (DIRECT_IO_ALLOW_MMAP) '
                'for this; the kernel is %s' % os.uname().release)
    return None


def writeback_allowed(node):
    """Whether the test node's mounts may take SECTIONFS_WRITEBACK's
    writeback_cache: not when it makes file-backed sections (marked
    file_backed), since such a mount makes none."""
    return node.get_closest_marker('file_backed') is None


def writeback_skip_reason(mnt, what):
    """Why a test of what the writeback cache changes cannot hold on mnt
    (a SECTIONFS_WRITEBACK=1 run): what, the README's words for it."""
    if 'writeback_cache' in mnt.options:
        return 'under -o writeback_cache ' + what
    return None


def setpriv_skip_reason():
    if root_skip_reason():
        return root_skip_reason()
    if shutil.which('setpriv') is None:
        return 'setpriv not found (Debian package util-linux)'
    return None


# --------------------------------------------------------------------------
# The mount table

def _unescape_mountinfo(field):
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), field)


def mounts():
    """List of (mount point, fstype) from /proc/self/mountinfo."""
    out = []
    with open('/proc/self/mountinfo') as f:
        for line in f:
            fields = line.split()
            sep = fields.index('-')
            out.append((_unescape_mountinfo(fields[4]), fields[sep + 1]))
    return out


def is_mounted(path):
    path = os.path.realpath(path)
    return any(mp == path for mp, _ in mounts())


def fstype_of(path):
    path = os.path.realpath(path)
    found = [fs for mp, fs in mounts() if mp == path]
    return found[-1] if found else None


def mounts_under(path):
    path = os.path.realpath(path)
    return [mp for mp, _ in mounts() if mp == path
            or mp.startswith(path + '/')]


FUSECTL = '/sys/fs/fuse/connections'


def fuse_connection(path):
    """The FUSE connection number of the mount at path, from mountinfo
    (never a call into the mount itself, which may be what hangs)."""
    with open('/proc/self/mountinfo') as f:
        for line in f:
            fields = line.split()
            if _unescape_mountinfo(fields[4]) == path:
                return int(fields[2].split(':')[1])
    return None


def abort_fuse_connection(path):
    """Abort the FUSE connection of the mount at path through fusectl
    (mounted for the moment if it is not), as root may: every request
    waiting on it ends with ENOTCONN and none is sent again.  Returns
    None, or why it could not."""
    conn = fuse_connection(path)
    if conn is None:
        return 'no FUSE mount at %s' % path
    mounted = os.path.exists(os.path.join(FUSECTL, str(conn)))
    if not mounted:
        subprocess.run(['mount', '-t', 'fusectl', 'none', FUSECTL],
                       capture_output=True)
    try:
        with open(os.path.join(FUSECTL, str(conn), 'abort'), 'w') as f:
            f.write('1')
        return None
    except OSError as e:
        return 'connection %d could not be aborted: %s' % (conn, e)
    finally:
        if not mounted:
            subprocess.run(['umount', FUSECTL], capture_output=True)


def wait_for(cond, timeout=PATIENCE, interval=0.02):
    """Poll cond() until true or timeout; returns its last value.

    A deadline for something to happen, never a measure of how fast."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --------------------------------------------------------------------------
# Running the daemon

#: Lines of daemon output that fail a test unless it declared them.
ALARMING = re.compile(
    r'error|AddressSanitizer|LeakSanitizer|runtime error|==ERR'
    r'|^==\d+==|ERROR SUMMARY: [1-9]|Assertion .* failed|Segmentation fault',
    re.IGNORECASE)


def as_user_argv(uid, gid=None):
    """argv prefix that runs a command as uid/gid with no groups."""
    if gid is None:
        gid = uid
    return ['setpriv', '--reuid=%d' % uid, '--regid=%d' % gid,
            '--clear-groups', '--']


class _Collector:
    """Reads a pipe to EOF in a thread, keeping every byte."""

    def __init__(self, fd):
        self._fd = fd
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            with self._lock:
                self._buf += chunk
        os.close(self._fd)

    def text(self):
        with self._lock:
            return self._buf.decode('utf-8', errors='replace')

    def join(self, timeout):
        self._thread.join(timeout)


class Mount:
    """One sectionfs daemon running in the foreground on one mount point.

    Attributes: path (the mount point, str), proc (Popen), keeper_pid
    (the process started: it mounts and keeps the mount), pid (the
    server, the keeper's child, which serves requests and holds the
    sections; it changes when a server dies and another takes over),
    datapath ('cached', 'passthrough' or None when the caller passed its
    own passthrough= option), options (the -o list), user (uid or None).
    mnt / 'a/b' is the str path of a/b inside the mount.
    """

    def __init__(self, mountpoint, datapath=None, options=(), user=None,
                 flags=(), writeback=True):
        self.path = os.path.realpath(str(mountpoint))
        self.datapath = datapath
        self.options = list(options)
        self.flags = list(flags)        # e.g. ['-s']
        if datapath is not None:
            self.options.insert(0, DATAPATHS[datapath])
        # The daemon refuses writeback_cache beside a size cap or a byte
        # limit (writes would be accepted past them).
        if WRITEBACK and writeback and datapath == 'cached' and \
                not any(o.startswith(('size=', 'usrquota_block',
                                      'grpquota_block'))
                        for o in self.options):
            self.options.append('writeback_cache')
        # -s serves on one thread, which io_uring=on refuses.
        if IO_URING in ('on', 'off') and '-s' not in self.flags and \
                not any(o.startswith('io_uring=') for o in self.options):
            self.options.append('io_uring=' + IO_URING)
        self.user = user
        self.proc = None
        self.keeper_pid = None
        self._expected_rc = 0
        self._expected_stderr = []
        self._collector = None
        self._finished = False

    def __truediv__(self, name):
        return os.path.join(self.path, str(name))

    @property
    def pid(self):
        """The serving process: the keeper's only child, or the keeper
        while it has none (before the first server, between two)."""
        if self.keeper_pid is None:
            return None
        kids = server_pids(self.keeper_pid)
        return kids[0] if len(kids) == 1 else self.keeper_pid

    def server_pid(self, other_than=None, timeout=PATIENCE):
        """Wait for a server other than other_than; its PID or None."""
        found = []

        def ready():
            kids = server_pids(self.keeper_pid)
            if len(kids) == 1 and kids[0] != other_than:
                found.append(kids[0])
                return True
            return False
        return found[-1] if wait_for(ready, timeout) else None

    def __repr__(self):
        return '<Mount %s %s pid=%s>' % (self.path, self.datapath, self.pid)

    def argv(self):
        argv = [daemon_binary(), '-f'] + self.flags
        if self.options:
            argv += ['-o', ','.join(self.options)]
        argv.append(self.path)
        if VALGRIND:
            argv = VALGRIND_CMD + argv
        if self.user is not None:
            argv = as_user_argv(self.user) + argv
        return argv

    def start(self, wait=True):
        """Start the daemon; with wait, fail unless it mounts."""
        import pytest
        rfd, wfd = os.pipe()
        try:
            # A suite started in the background has SIGINT ignored, and
            # libfuse leaves an ignored signal alone: give the daemon the
            # default, as an interactive start would.
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=wfd,
                stderr=wfd, cwd='/',
                preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                 signal.SIG_DFL))
        finally:
            os.close(wfd)
        self.keeper_pid = self.proc.pid
        self._collector = _Collector(rfd)
        if not wait:
            return self
        ok = wait_for(lambda: self.proc.poll() is not None
                      or fstype_of(self.path) is not None)
        if self.proc.poll() is not None:
            self._collector.join(5)
            pytest.fail('daemon exited with status %s before mounting %s; '
                        'its output:\n%s' % (self.proc.returncode, self.path,
                                              self.stderr))
        if not ok:
            pytest.fail('daemon did not mount %s within %ds; its output:\n%s'
                        % (self.path, PATIENCE, self.stderr))
        fstype = fstype_of(self.path)
        if not fstype.startswith('fuse'):
            pytest.fail('%s is mounted as %s, not a FUSE filesystem'
                        % (self.path, fstype))
        return self

    @property
    def stderr(self):
        return self._collector.text() if self._collector else ''

    def expect_stderr(self, regex):
        """Declare daemon output lines matching regex as expected."""
        self._expected_stderr.append(re.compile(regex))

    def expect_exit(self, rc):
        """Declare the daemon's expected exit status (default 0)."""
        self._expected_rc = rc

    def alarming_lines(self):
        bad = []
        for line in self.stderr.splitlines():
            if not ALARMING.search(line):
                continue
            if any(r.search(line) for r in self._expected_stderr):
                continue
            bad.append(line)
        return bad

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        """Send sig to the daemon (by PID), the keeper first and then its
        server, and wait for both to die: nothing is left to serve the
        mount."""
        server = self.pid
        os.kill(self.keeper_pid, sig)
        self.proc.wait(PATIENCE)
        if server != self.keeper_pid:
            try:
                os.kill(server, sig)
            except ProcessLookupError:
                pass
            wait_for(lambda: not pid_alive(server))
        self.expect_exit(-sig)

    def umount(self):
        """fusermount3 -u, as the daemon's user; returns CompletedProcess."""
        argv = ['fusermount3', '-u', self.path]
        if self.user is not None:
            argv = as_user_argv(self.user) + argv
        return subprocess.run(argv, capture_output=True, text=True)

    def wait_exit(self, timeout=PATIENCE):
        """Wait for the daemon to exit; returns its status or None.

        Once it has exited, all of its output is in self.stderr."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._collector.join(10)
        return rc

    # -- teardown ----------------------------------------------------------

    def _release_own_holds(self):
        """Neutralise fds and maps this process still has into the mount.

        A test that failed half-way may still hold an fd or an mmap into the
        mount, which would make fusermount3 -u fail with EBUSY.  Open fds
        are pointed at /dev/null (dup2, so whoever owns the number may still
        close it) and maps are replaced by anonymous memory (MAP_FIXED).
        Returns a description of what was found."""
        found = []
        views_closed = close_all_views()
        if views_closed:
            found.append('%d mmap_view helper(s) still running'
                         % views_closed)
        gc.collect()
        prefix = self.path + '/'
        for fd in os.listdir('/proc/self/fd'):
            try:
                target = os.readlink('/proc/self/fd/' + fd)
            except OSError:
                continue
            if target == self.path or target.startswith(prefix):
                found.append('fd %s -> %s' % (fd, target))
                null = os.open('/dev/null', os.O_RDONLY)
                os.dup2(null, int(fd))
                os.close(null)
        with open('/proc/self/maps') as f:
            maps = f.read().splitlines()
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) < 6:
                continue
            target = fields[5].replace(' (deleted)', '')
            if not (target == self.path or target.startswith(prefix)):
                continue
            start, end = (int(x, 16) for x in fields[0].split('-'))
            found.append('mapping %s -> %s' % (fields[0], target))
            _map_anon_fixed(start, end - start)
        return found

    def finish(self, test_failed=False):
        """Unmount (always), wait for the daemon, judge it.

        Returns a list of problems (empty when all is well)."""
        if self._finished:
            return []
        self._finished = True
        problems = []
        if self.proc is None:
            return problems

        leftovers = self._release_own_holds()
        if leftovers and not test_failed:
            problems.append('the test left holds on the mount: '
                            + '; '.join(leftovers))

        if is_mounted(self.path):
            res = self.umount()
            if res.returncode != 0:
                # Something (a helper's child?) may still be leaving.
                for _ in range(20):
                    time.sleep(0.1)
                    res = self.umount()
                    if res.returncode == 0:
                        break
            if res.returncode != 0:
                problems.append('fusermount3 -u %s failed: %s'
                                % (self.path, res.stderr.strip()))
                subprocess.run(['umount', '-l', self.path],
                               capture_output=True)
                if is_mounted(self.path):
                    subprocess.run(['fusermount3', '-u', '-z', self.path],
                                   capture_output=True)

        rc = self.wait_exit()
        if rc is None:
            problems.append('daemon pid %d did not exit after unmount; '
                            'killed it' % self.pid)
            self.proc.kill()
            rc = self.proc.wait()
        self._collector.join(10)

        if rc != self._expected_rc:
            problems.append('daemon exited with status %s, expected %s'
                            % (rc, self._expected_rc))
        bad = self.alarming_lines()
        if bad:
            problems.append('daemon printed alarming output:\n  '
                            + '\n  '.join(bad))
        text = self.stderr
        if text:
            sys.stdout.write('--- daemon %s output ---\n%s--- end ---\n'
                             % (self.path, text if text.endswith('\n')
                                else text + '\n'))
        return problems


class LimitedMount(Mount):
    """A daemon started under prlimit --nofile=N:N (RLIMIT_NOFILE of
    nofile, soft and hard)."""

    def __init__(self, *args, nofile, **kwargs):
        super().__init__(*args, **kwargs)
        self.nofile = nofile

    def argv(self):
        return ['prlimit', '--nofile=%d:%d' % (self.nofile, self.nofile),
                '--'] + super().argv()


def _map_anon_fixed(addr, length):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    MAP_FIXED, MAP_ANON, MAP_PRIVATE = 0x10, 0x20, 0x02
    libc.mmap(addr, length, mmap.PROT_READ | mmap.PROT_WRITE,
              MAP_FIXED | MAP_ANON | MAP_PRIVATE, -1, 0)


def run_daemon(args, timeout=PATIENCE, user=None):
    """Run the daemon to completion with args; returns CompletedProcess.

    For -h, -V and option errors: a daemon that is still running after
    timeout is killed by PID and reported as rc None."""
    argv = [daemon_binary()] + list(args)
    if VALGRIND:
        argv = VALGRIND_CMD + argv
    if user is not None:
        argv = as_user_argv(user) + argv
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd='/')
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        rc = None
    return subprocess.CompletedProcess(argv, rc, out, err)


# --------------------------------------------------------------------------
# The daemon's open files

def server_pids(keeper):
    """The children of the keeper keeper (its servers)."""
    try:
        with open('/proc/%d/task/%d/children' % (keeper, keeper)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def pid_alive(pid):
    """Whether pid is a live process (not a zombie)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rpartition(')')[2].split()[0] != 'Z'
    except OSError:
        return False


def daemon_fds(pid):
    """{fd number: readlink of /proc/PID/fd/N} for the daemon."""
    out = {}
    base = '/proc/%d/fd' % pid
    for name in os.listdir(base):
        try:
            out[int(name)] = os.readlink(os.path.join(base, name))
        except FileNotFoundError:
            pass
    return out


def memfd_link(section_path):
    """What /proc/PID/fd/N reads for the memfd of a section at section_path
    (a path inside the mount, starting with '/')."""
    return '/memfd:sectionfs:%s (deleted)' % section_path


def daemon_memfds(pid):
    """{section path: [fd numbers]} of the daemon's sectionfs memfds."""
    out = {}
    rx = re.compile(r'^/memfd:sectionfs:(.*) \(deleted\)$')
    for fd, link in daemon_fds(pid).items():
        m = rx.match(link)
        if m:
            out.setdefault(m.group(1), []).append(fd)
    return out


def file_nr():
    """Struct files allocated in the whole kernel (/proc/sys/fs/file-nr)."""
    with open('/proc/sys/fs/file-nr') as f:
        return int(f.read().split()[0])


def memfd_dev():
    """st_dev shared by every memfd (the kernel's internal shmem mount)."""
    fd = os.memfd_create('sectionfs-test-probe', os.MFD_CLOEXEC)
    try:
        return os.fstat(fd).st_dev
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# Data

_SHIFT = [bytes((b + k) & 0xff for b in range(256)) for k in range(256)]


def pattern(off, length, seed):
    """The bytes pattern_byte() (test/helpers/mmap_view.c) gives for file
    offsets [off, off+length) and seed."""
    first = off // PAGE
    last = (off + length + PAGE - 1) // PAGE
    # 4096 * 7 is 0 mod 256, so one page template serves every page,
    # shifted by 13 per page number.
    template = bytes(((seed * 151 + j * 7 + 1) & 0xff)
                     for j in range(256)) * (PAGE // 256)
    out = bytearray()
    for p in range(first, last):
        out += template.translate(_SHIFT[(p * 13) & 0xff])
    skip = off - first * PAGE
    return bytes(out[skip:skip + length])


def read_file(path):
    with open(path, 'rb') as f:
        return f.read()


def write_file(path, data, mode='wb'):
    with open(path, mode) as f:
        f.write(data)


def pread_all(fd, length, off):
    out = bytearray()
    while len(out) < length:
        chunk = os.pread(fd, length - len(out), off + len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


# --------------------------------------------------------------------------
# Views held by another process (test/helpers/mmap_view)

_open_views = []


class View:
    """An mmap view of a file held by a separate mmap_view process
    (run as uid user when given).

    Use as a context manager; commands return mmap_view's answer line."""

    def __init__(self, path, mode='shared', length=None, user=None):
        import pytest
        argv = [helper('mmap_view'), str(path), mode]
        if length is not None:
            argv.append(str(length))
        if user is not None:
            argv = as_user_argv(user) + argv
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     bufsize=1)
        _open_views.append(self)
        line = self.proc.stdout.readline().strip()
        if not line.startswith('ready'):
            self.close()
            pytest.fail('mmap_view %s %s could not map: %r'
                        % (path, mode, line))

    def cmd(self, command):
        self.proc.stdin.write(command + '\n')
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def write(self, off, length, seed):
        line = self.cmd('write %d %d %d' % (off, length, seed))
        assert line.startswith('ok'), line
        return line

    def verify(self, off, length, seed):
        """Answer line; starts with 'ok' when the view holds the pattern."""
        return self.cmd('verify %d %d %d' % (off, length, seed))

    def zero(self, off, length):
        return self.cmd('zero %d %d' % (off, length))

    def msync(self):
        line = self.cmd('msync')
        assert line.startswith('ok'), line

    def pfn(self, off):
        line = self.cmd('pfn %d' % off)
        assert line.startswith('ok pfn'), line
        return int(line.split()[-1], 16)

    def close(self):
        """Unmap and end the helper; returns its exit status."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            rc = self.proc.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        if self in _open_views:
            _open_views.remove(self)
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def close_all_views():
    """End every View still open; returns how many there were."""
    n = len(_open_views)
    for v in list(_open_views):
        v.close()
    return n


def fault(path, mode, access, offset, length=None):
    """Run fault_child; returns (outcome, line) where outcome is 'ok',
    'SIGSEGV', 'SIGBUS', or 'other'."""
    argv = [helper('fault_child'), str(path), mode, access, str(offset)]
    if length is not None:
        argv.append(str(length))
    res = subprocess.run(argv, capture_output=True, text=True,
                         timeout=PATIENCE)
    outcome = {0: 'ok', 10: 'SIGSEGV', 11: 'SIGBUS'}.get(res.returncode,
                                                         'other')
    if res.returncode == 2:
        outcome = 'setup error'
    return outcome, (res.stdout + res.stderr).strip()


# --------------------------------------------------------------------------
# Sections and the size cap

#: How a page-file-backed section comes to be: open(O_CREAT) (the kernel's
#: CREATE, which also opens it) or mknod(2) (MKNOD, then a separate OPEN).
CREATORS = ['create', 'mknod']


def make_section(path, data=b'', how='create', mode=0o644):
    """A page-file-backed section holding data, no handle left open."""
    if how == 'create':
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    else:
        os.mknod(path, stat.S_IFREG | mode)
        if not data:
            return
        fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def df(path):
    """(size, used, available) of the file system at path, in bytes."""
    st = os.statvfs(path)
    return (st.f_blocks * st.f_frsize,
            (st.f_blocks - st.f_bfree) * st.f_frsize,
            st.f_bavail * st.f_frsize)


def used(path):
    return df(path)[1]


def write_until_enospc(fd, chunk=MiB):
    """Write chunks from offset 0 until ENOSPC (more than 64 MiB is a
    failure); returns the bytes written."""
    import pytest
    written = 0
    with pytest.raises(OSError) as e:
        while written <= 64 * MiB:
            written += os.pwrite(fd, b'y' * chunk, written)
    assert e.value.errno == errno.ENOSPC, e.value
    return written


def fill(path, chunk=65536):
    """Write to a new section at path until ENOSPC; returns bytes written."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        return write_until_enospc(fd, chunk)
    finally:
        os.close(fd)


def gone(path):
    return lambda: not os.path.lexists(path)


def drop_cache(path):
    """Drop the clean page cache pages of path (a FUSE inode or a file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def view_cmd(view, command):
    """A View command whose helper may have died (a fault): its answer, or
    a description of how it ended."""
    line = view.cmd(command)
    if not line:
        rc = view.close()
        return 'view process ended with status %s (%s)' % (
            rc, 'SIGBUS' if rc == -7 else 'signal %d' % -rc if rc < 0
            else 'exit')
    return line


# --------------------------------------------------------------------------
# Calls the os module lacks

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2


def renameat2(old, new, flags):
    """renameat2(2); raises OSError like os.rename."""
    fn = getattr(_libc, 'renameat2', None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                       ctypes.c_char_p, ctypes.c_uint]
        rc = fn(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new),
                flags)
    else:
        nr = {'x86_64': 316, 'aarch64': 276}[os.uname().machine]
        rc = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(AT_FDCWD),
                           ctypes.c_char_p(os.fsencode(old)),
                           ctypes.c_int(AT_FDCWD),
                           ctypes.c_char_p(os.fsencode(new)),
                           ctypes.c_uint(flags))
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), old, None, new)


def fallocate(fd, mode, off, length):
    """fallocate(2) with a mode; raises OSError."""
    fn = _libc.fallocate64
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                   ctypes.c_int64]
    if fn(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# --------------------------------------------------------------------------
# Acting as another user

_USER_OP = r'''
import errno, os, sys
op, path = sys.argv[1], sys.argv[2]
try:
    if op == 'read':
        fd = os.open(path, os.O_RDONLY); os.read(fd, 1); os.close(fd)
    elif op == 'write':
        fd = os.open(path, os.O_WRONLY); os.write(fd, b'x'); os.close(fd)
    elif op == 'create':
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, b'created by %d' % os.getuid()); os.close(fd)
    elif op == 'mkdir':
        os.mkdir(path)
    elif op == 'unlink':
        os.unlink(path)
    elif op == 'stat':
        os.stat(path)
    elif op == 'listdir':
        os.listdir(path)
    elif op == 'chmod':
        os.chmod(path, 0o666)
    elif op == 'truncate':
        os.truncate(path, 0)
    else:
        sys.exit('unknown op ' + op)
    print('ok')
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
'''


def user_op(op, path, uid=NOBODY):
    """Do one file operation as uid (gid the same, no groups).

    Returns 'ok' or the errno name, e.g. 'EACCES'."""
    res = subprocess.run(as_user_argv(uid) + [PYTHON, '-I', '-c', _USER_OP,
                                              op, str(path)],
                         capture_output=True, text=True, cwd='/',
                         timeout=PATIENCE)
    if res.returncode != 0:
        raise AssertionError('user_op %s %s as %d failed: %s'
                             % (op, path, uid, res.stderr))
    return res.stdout.strip()


def errno_name(exc):
    return errno.errorcode.get(exc.errno, str(exc.errno))


def expect_errno(code, fn, *args, **kwargs):
    """Call fn and check that it fails with errno code."""
    try:
        fn(*args, **kwargs)
    except OSError as exc:
        assert exc.errno == code, 'expected %s, got %s' % (
            errno.errorcode[code], errno_name(exc))
        return
    raise AssertionError('expected %s, the call succeeded'
                         % errno.errorcode[code])


def outcome(fn, *args):
    """'ok' or the errno name fn(*args) raised (EOPNOTSUPP, the name the
    contract uses, for Linux's one number of EOPNOTSUPP and ENOTSUP)."""
    try:
        fn(*args)
        return 'ok'
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            return 'EOPNOTSUPP'
        return errno_name(e)
