"""sectionfs as an administrator meets it: mounted by mount(8)
and an fstab line through mount.fuse3, by the contrib systemd unit, logging
to syslog when detached, and documented option for option in its man pages.

mount(8) hands its helpers a sanitized environment without PATH, so
mount.fuse3's `sh -c sectionfs ...` searches the shell's default PATH and
the build's binary cannot be slipped in through PATH.  These tests work in
a private mount namespace (unshare -m) held by a holder process, in which a
directory holding the binary is bind-mounted over /usr/local/sbin: the
layout `make install` makes, without installing anything.  The logging
tests give the namespace a private tmpfs /dev whose /dev/log is a datagram
socket the test owns.  The host's mount table, /dev and /etc/fstab are
never touched; everything in the namespace is reached through
/proc/HOLDER/root and nsenter, and every mount in it is unmounted (and
every daemon in it waited for) at teardown, even after a failure.
"""

import os
import re
import select
import shlex
import shutil
import signal
import socket
import stat
import subprocess

import pytest

import util
from util import GiB, read_file, write_file

SRC_DIR = os.path.dirname(util.TEST_DIR)
MAN_SECTIONFS = os.path.join(SRC_DIR, 'man', 'sectionfs.8')
MAN_SECTIONCTL = os.path.join(SRC_DIR, 'man', 'sectionctl.1')
FSTAB_EXAMPLE = os.path.join(SRC_DIR, 'contrib', 'fstab.example')
UNIT = os.path.join(SRC_DIR, 'contrib', 'sectionfs@.service')
SECTIONCTL = util.SECTIONCTL

#: Where the namespace "installs" the daemon: first on sh's default PATH.
INSTALL_DIR = '/usr/local/sbin'


# --------------------------------------------------------------------------
# A private mount namespace

_FUSE_FSTYPE = re.compile(r'^fuse(blk)?(\..*)?$')

# Run first in every namespace: drop its copies of FUSE mounts that
# existed on the host at unshare time (other tests' mounts), so that
# holding a copy cannot keep their connections open after they unmount.
_DROP_FOREIGN_FUSE = r'''
awk '{ for (i = 7; i <= NF; i++) if ($i == "-") {
        if ($(i + 1) ~ /^fuse(blk)?(\..*)?$/) print $5; break } }' \
    /proc/self/mountinfo | while read -r mp; do
        umount -l "$(printf '%b' "$mp")" 2>/dev/null || true
done
'''


def _parse_mountinfo(path):
    """[(mount point, fstype, source, mount options, super options)]."""
    out = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            sep = fields.index('-')
            out.append((util._unescape_mountinfo(fields[4]), fields[sep + 1],
                        util._unescape_mountinfo(fields[sep + 2]),
                        fields[5].split(','), fields[sep + 3].split(',')))
    return out


class Namespace:
    """A private mount namespace, alive while its holder process runs.

    setup is a /bin/sh script run (with -eu) in the namespace before the
    holder waits; its failure skips the test with the script's output,
    since it only probes what this machine allows (unshare, mknod)."""

    def __init__(self, setup=''):
        script = _DROP_FOREIGN_FUSE + setup + '\necho ready\nexec cat\n'
        argv = ['unshare', '--mount', '--propagation', 'private', '--',
                '/bin/sh', '-euc', script]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     cwd='/')
        self.pid = self.proc.pid
        ready, _, _ = select.select([self.proc.stdout], [], [], util.PATIENCE)
        line = self.proc.stdout.readline().strip() if ready else ''
        if line != 'ready':
            if self.proc.poll() is None:        # hung: ours, end it by PID
                os.kill(self.pid, signal.SIGKILL)
            self.proc.stdin.close()
            self.proc.wait(util.PATIENCE)
            err = self.proc.stderr.read().strip()
            pytest.skip('cannot set up a private mount namespace: %s'
                        % (err or 'holder exited with %s'
                           % self.proc.returncode))
        self.mntns = os.readlink('/proc/%d/ns/mnt' % self.pid)
        self.closed = False

    def path(self, p):
        """p (absolute) as the namespace sees it, reachable from here."""
        return '/proc/%d/root%s' % (self.pid, p)

    def argv(self, argv, user=None):
        prefix = ['nsenter', '-t', str(self.pid), '-m', '--']
        if user is not None:
            prefix += util.as_user_argv(user)
        return prefix + list(argv)

    def run(self, argv, user=None, **kw):
        kw.setdefault('capture_output', True)
        kw.setdefault('text', True)
        kw.setdefault('timeout', util.PATIENCE)
        return subprocess.run(self.argv(argv, user), cwd='/', **kw)

    def mounts(self):
        return _parse_mountinfo('/proc/%d/mountinfo' % self.pid)

    def mount_at(self, where):
        """The top mount at where in the namespace, or None."""
        found = [m for m in self.mounts() if m[0] == where]
        return found[-1] if found else None

    def pids(self):
        """Every process in the namespace but the holder: the daemons,
        once the commands the test ran through nsenter have returned."""
        out = []
        for name in os.listdir('/proc'):
            if not name.isdigit() or int(name) == self.pid:
                continue
            try:
                if os.readlink('/proc/%s/ns/mnt' % name) == self.mntns:
                    out.append(int(name))
            except OSError:
                pass
        return out

    def close(self):
        """Unmount every FUSE mount made in the namespace, wait for its
        processes, end the holder.  Returns a list of problems."""
        if self.closed:
            return []
        self.closed = True
        problems = []
        for mp, fstype, _, _, _ in reversed(self.mounts()):
            if not _FUSE_FSTYPE.match(fstype):
                continue
            problems.append('%s was still mounted at teardown' % mp)
            if self.run(['umount', mp]).returncode != 0:
                self.run(['umount', '-l', mp])
        if not util.wait_for(lambda: not self.pids()):
            for pid in self.pids():
                problems.append('pid %d still in the namespace; killed' % pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            util.wait_for(lambda: not self.pids())
        self.proc.stdin.close()
        try:
            self.proc.wait(util.PATIENCE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return problems


@pytest.fixture
def namespace(request, base_dir):
    """namespace(setup='') -> Namespace; each is closed at teardown, and
    a mount or process a test left in it fails the test."""
    made = []

    def make(setup=''):
        ns = Namespace(setup)
        made.append(ns)
        return ns

    yield make
    problems = []
    for ns in reversed(made):
        problems += ns.close()
    rep = getattr(request.node, 'rep_call', None)
    if problems and rep is not None and rep.passed:
        pytest.fail('teardown: ' + '; '.join(problems), pytrace=False)


def namespace_skip_reason():
    if util.root_skip_reason():
        return util.root_skip_reason()
    for tool in ('unshare', 'nsenter', 'mount', 'umount'):
        if shutil.which(tool) is None:
            return '%s not found (Debian package util-linux)' % tool
    return None


def install_setup(base_dir):
    """Namespace setup putting the daemon at INSTALL_DIR/sectionfs."""
    if not (shutil.which('mount.fuse3')
            or os.path.exists('/sbin/mount.fuse3')):
        pytest.skip('mount.fuse3 not installed (Debian package fuse3)')
    if not os.path.isdir(INSTALL_DIR):
        pytest.skip('no %s to stand in for the install directory'
                    % INSTALL_DIR)
    bindir = os.path.join(base_dir, 'sbin')
    os.mkdir(bindir)
    os.symlink(util.daemon_binary(), os.path.join(bindir, 'sectionfs'))
    return 'mount --bind %s %s\n' % (shlex.quote(bindir), INSTALL_DIR)


def same_file(a, b):
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def parent_of(pid):
    with open('/proc/%d/stat' % pid) as f:
        return int(f.read().rpartition(')')[2].split()[1])


def one_keeper(ns):
    """The daemons in ns are a mount's keeper and its server (the
    keeper's child, which a detached keeper starts after mount(8) has
    returned): the keeper's PID, and all the PIDs."""
    util.wait_for(lambda: len(ns.pids()) >= 2)
    pids = ns.pids()
    keepers = [p for p in pids if parent_of(p) not in pids]
    assert len(pids) == 2 and len(keepers) == 1, \
        'daemons in the namespace: %s (expected a keeper and its server)' \
        % pids
    return keepers[0], pids


def check_mounted(ns, where):
    """where is a sectionfs served by exactly one daemon, the one built
    here, and holds data; returns (mount entry, daemon pid)."""
    entry = ns.mount_at(where)
    assert entry is not None, '%s is not mounted in the namespace' % where
    _, fstype, src, mopts, sopts = entry
    assert fstype == 'fuse.sectionfs', entry
    assert src == 'sectionfs', entry
    assert 'nosuid' in mopts, entry
    keeper, pids = one_keeper(ns)
    for pid in pids:
        assert same_file('/proc/%d/exe' % pid, util.daemon_binary()), \
            'the daemon is not the sectionfs under test'
    # Written through one handle, read through another while the first
    # is open: also right under lifetime=handle.
    path = ns.path(where + '/round-trip')
    data = os.urandom(300000)
    wfd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        assert os.write(wfd, data) == len(data)
        assert read_file(path) == data
    finally:
        os.close(wfd)
    try:
        os.unlink(path)
    except FileNotFoundError:       # lifetime=handle: gone with its handle
        pass
    return entry, keeper


def check_umount(ns, where, pid):
    res = ns.run(['umount', where])
    assert res.returncode == 0, 'umount: %s' % res.stderr
    assert ns.mount_at(where) is None
    assert util.wait_for(lambda: not os.path.exists('/proc/%d' % pid)), \
        'daemon %d still running after umount' % pid


def total_bytes(path):
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


# --------------------------------------------------------------------------
# mount(8) and fstab


@pytest.mark.root
def test_mount_t_fuse_sectionfs(namespace, base_dir):
    """The command of sectionfs(8), by type name, with sectionfs found
    where make install puts it."""
    if namespace_skip_reason():
        pytest.skip(namespace_skip_reason())
    ns = namespace(install_setup(base_dir))
    where = os.path.join(base_dir, 'x')
    os.mkdir(where)
    res = ns.run(['mount', '-t', 'fuse.sectionfs', 'sectionfs', where,
                  '-o', 'size=1g,allow_other'])
    assert res.returncode == 0, 'mount: %s%s' % (res.stdout, res.stderr)
    entry, pid = check_mounted(ns, where)
    assert 'allow_other' in entry[4], entry
    assert total_bytes(ns.path(where)) == GiB
    # allow_other took effect: another user can use the mount.
    res = ns.run([util.PYTHON, '-c', 'import os, sys; '
                  'print(os.listdir(sys.argv[1]))', where], user=util.NOBODY)
    assert res.returncode == 0, res.stderr
    check_umount(ns, where, pid)


def fstab_example_lines():
    """(mount point, options) of every example line in fstab.example,
    commented out or not."""
    out = []
    with open(FSTAB_EXAMPLE) as f:
        for line in f:
            fields = line.lstrip('#').split()
            if len(fields) == 6 and fields[2] == 'fuse.sectionfs':
                out.append((fields[1], fields[3]))
    return out


def parse_size(text):
    m = re.fullmatch(r'(\d+)([kmgt]?)', text.lower())
    assert m, 'cannot read size=%s' % text
    return int(m.group(1)) << (10 * ' kmgt'.index(m.group(2) or ' '))


@pytest.mark.root
def test_fstab_example_lines_mount(namespace, base_dir):
    """Each line of contrib/fstab.example, with its mount point moved
    under base_dir, mounts by `mount --fstab FILE TARGET` and its options
    take effect."""
    if namespace_skip_reason():
        pytest.skip(namespace_skip_reason())
    examples = fstab_example_lines()
    assert len(examples) >= 3, 'expected example lines in %s' % FSTAB_EXAMPLE
    ns = namespace(install_setup(base_dir))
    fstab = os.path.join(base_dir, 'fstab')
    lines = ['# written by test_admin.py', 'tmpfs /nonexistent tmpfs '
             'defaults 0 0']
    targets = []
    for i, (orig, options) in enumerate(examples):
        where = os.path.join(base_dir, 'fstab%d' % i)
        os.mkdir(where)
        lines.append('sectionfs  %s  fuse.sectionfs  %s  0 0'
                     % (where, options))
        targets.append((where, orig, dict(
            (o.split('=', 1) + [None])[:2] for o in options.split(','))))
    write_file(fstab, ('\n'.join(lines) + '\n').encode())

    for where, orig, opts in targets:
        res = ns.run(['mount', '--fstab', fstab, where])
        assert res.returncode == 0, \
            'mount --fstab for the %s example: %s' % (orig, res.stderr)
        entry, pid = check_mounted(ns, where)
        st = os.stat(ns.path(where))
        assert ('allow_other' in entry[4]) == ('allow_other' in opts), entry
        if opts.get('size') and not opts['size'].endswith('%'):
            assert total_bytes(ns.path(where)) == parse_size(opts['size'])
        if 'umask' in opts:
            assert stat.S_IMODE(st.st_mode) == 0o777 & ~int(opts['umask'], 8)
        if 'uid' in opts:
            assert st.st_uid == int(opts['uid'])
        if 'gid' in opts:
            assert st.st_gid == int(opts['gid'])
        check_umount(ns, where, pid)


# --------------------------------------------------------------------------
# The systemd unit


def unit_sections():
    """{section: [(key, value)]} of contrib/sectionfs@.service."""
    out, section = {}, None
    with open(UNIT) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in '#;':
                continue
            if line.startswith('['):
                section = line.strip('[]')
                out.setdefault(section, [])
                continue
            key, _, value = line.partition('=')
            out[section].append((key.strip(), value.strip()))
    return out


def unescape_instance(instance):
    """systemd-escape --unescape --path, in Python."""
    path = instance.replace('-', '/')
    return '/' + re.sub(r'\\x([0-9a-fA-F]{2})',
                        lambda m: chr(int(m.group(1), 16)), path).strip('/')


def escape_path(path):
    """systemd-escape --path, in Python (ASCII paths)."""
    out = []
    for i, ch in enumerate(path.strip('/')):
        if ch == '/':
            out.append('-')
        elif ch.isalnum() or ch in ':_' or (ch == '.' and i > 0):
            out.append(ch)
        else:
            out.append('\\x%02x' % ord(ch))
    return ''.join(out)


def expand_exec(value, instance, env):
    """One Exec*= line as systemd would run it: prefixes stripped,
    specifiers and ${VAR} (one word) / $VAR (split) replaced."""
    ignore_failure = False
    while value[:1] in '-@:+!':
        ignore_failure |= value[0] == '-'
        value = value[1:]
    specifiers = {'i': instance, 'I': unescape_instance(instance),
                  'f': unescape_instance(instance), '%': '%'}
    argv = []
    # systemd splits the line into words first, then expands each.
    for word in shlex.split(value):
        word = re.sub(r'%(.)', lambda m: specifiers[m.group(1)], word)
        m = re.fullmatch(r'\$(\w+)', word)
        if m:
            argv += env.get(m.group(1), '').split()
            continue
        argv.append(re.sub(r'\$\{(\w+)\}', lambda m: env.get(m.group(1), ''),
                           word))
    return argv, ignore_failure


@pytest.mark.root
def test_systemd_unit_commands(namespace, base_dir):
    """What `systemctl start/stop sectionfs@INSTANCE` runs, run here
    without systemd: the instance names the mount point, start mounts it
    (and a forking service is mounted by the time its start command
    returns), stop unmounts it and the daemon exits."""
    if namespace_skip_reason():
        pytest.skip(namespace_skip_reason())
    units = unit_sections()
    service = dict(units['Service'])
    assert service.get('Type') in ('forking', 'simple', 'exec', 'notify')
    ns = namespace(install_setup(base_dir))
    where = os.path.join(base_dir, 'unit mount')     # created by the unit
    instance = escape_path(where)
    assert unescape_instance(instance) == where
    env = {}
    for key, value in units['Service']:
        if key == 'Environment':
            for word in shlex.split(value):
                k, _, v = word.partition('=')
                env[k] = v
    for key, value in units['Service']:
        if key not in ('ExecStartPre', 'ExecStart'):
            continue
        argv, ignore = expand_exec(value, instance, env)
        if key == 'ExecStart' and service['Type'] != 'forking':
            # systemd would keep it running; so does the namespace.
            subprocess.Popen(ns.argv(argv), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd='/')
            assert util.wait_for(lambda: ns.mount_at(where)), \
                '%s did not mount %s' % (argv, where)
            continue
        res = ns.run(argv)
        assert ignore or res.returncode == 0, \
            '%s=%s: %s' % (key, argv, res.stderr)
    _, pid = check_mounted(ns, where)
    stops = [v for k, v in units['Service'] if k == 'ExecStop']
    assert stops, 'the unit has no ExecStop'
    for value in stops:
        argv, ignore = expand_exec(value, instance, env)
        res = ns.run(argv)
        assert ignore or res.returncode == 0, \
            'ExecStop=%s: %s' % (argv, res.stderr)
    assert ns.mount_at(where) is None
    assert util.wait_for(lambda: not os.path.exists('/proc/%d' % pid)), \
        'daemon %d still running after ExecStop' % pid


@pytest.mark.root
def test_systemd_analyze_verify(namespace, base_dir):
    analyze = shutil.which('systemd-analyze')
    if analyze is None:
        pytest.skip('systemd-analyze not found (Debian package systemd)')
    if namespace_skip_reason():
        pytest.skip(namespace_skip_reason())
    # Verified where the unit finds its daemon, as once installed.
    ns = namespace(install_setup(base_dir))
    unitdir = os.path.join(base_dir, 'units')
    os.mkdir(unitdir)
    shutil.copy(UNIT, unitdir)
    res = ns.run([analyze, 'verify', '--man=no',
                  os.path.join(unitdir, 'sectionfs@run-sections.service')],
                 env=dict(os.environ, SYSTEMD_LOG_LEVEL='notice'))
    out = (res.stdout + res.stderr).strip()
    # Complaints about units on this machine (not ours) are not our
    # business; anything naming our unit is.
    ours = [ln for ln in out.splitlines() if 'sectionfs' in ln]
    if res.returncode != 0 and not ours and 'System has not been booted' \
            in out:
        pytest.skip('systemd-analyze cannot verify here: %s' % out)
    assert not ours, out
    assert res.returncode == 0, out


# --------------------------------------------------------------------------
# Logging


def dev_setup(base_dir, sock_path):
    """Namespace setup: a private tmpfs /dev with the usual character
    devices, a /dev/fuse anyone may open (so that an unprivileged daemon
    can mount through fusermount3) and /dev/log bound to sock_path."""
    fuse = os.stat('/dev/fuse').st_rdev
    olddev = os.path.join(base_dir, 'olddev')
    os.mkdir(olddev)
    q = shlex.quote
    return '\n'.join([
        'mount --rbind /dev %s' % q(olddev),
        'mount -t tmpfs -o mode=0755,size=64k sectionfs-test-dev /dev',
        'for n in null zero full random urandom; do',
        '    : > /dev/$n; mount --bind %s/$n /dev/$n' % q(olddev),
        'done',
        'mknod -m 0666 /dev/fuse c %d %d' % (os.major(fuse), os.minor(fuse)),
        ': > /dev/log; mount --bind %s /dev/log' % q(sock_path),
        'umount -l %s' % q(olddev),
        ''])


class SyslogCatcher:
    """A datagram socket standing in for syslogd at /dev/log."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)

    def receive(self, timeout=util.PATIENCE):
        """The next datagram as text, or None after timeout (a deadline
        for something to arrive, not a measure of speed)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536).decode('utf-8', 'replace')
        except socket.timeout:
            return None

    def drain(self):
        out = []
        while True:
            msg = self.receive(timeout=0.2)
            if msg is None:
                return out
            out.append(msg)

    def close(self):
        self.sock.close()


#: glibc's syslog(3) datagram: <PRI>TIMESTAMP TAG[PID]: MESSAGE
SYSLOG_LINE = re.compile(r'^<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d '
                         r'([^\[\s:]+)\[(\d+)\]: (.*)$', re.S)
LOG_DAEMON = 3
LOG_INFO = 6
PT_FALLBACK = 'passthrough needs CAP_SYS_ADMIN'


@pytest.fixture
def log_ns(namespace, base_dir):
    """(Namespace with /dev/log caught, SyslogCatcher, mount point owned
    by the unprivileged user the daemon runs as)."""
    if namespace_skip_reason():
        pytest.skip(namespace_skip_reason())
    if util.setpriv_skip_reason():
        pytest.skip(util.setpriv_skip_reason())
    catcher = SyslogCatcher(os.path.join(base_dir, 'log.sock'))
    try:
        ns = namespace(dev_setup(base_dir, catcher.path))
        where = os.path.join(base_dir, 'logmnt')
        os.mkdir(where)
        os.chown(where, util.NOBODY, util.NOBODY)
        yield ns, catcher, where
    finally:
        catcher.close()


def run_foreground(ns, args, where):
    """Start the daemon as the unprivileged user in the namespace with
    args; wait until it mounts where.  Returns (Popen, output collector)."""
    rfd, wfd = os.pipe()
    try:
        proc = subprocess.Popen(
            ns.argv([util.daemon_binary()] + args + [where], user=util.NOBODY),
            stdin=subprocess.DEVNULL, stdout=wfd, stderr=wfd, cwd='/')
    finally:
        os.close(wfd)
    out = util._Collector(rfd)
    util.wait_for(lambda: proc.poll() is not None or ns.mount_at(where))
    assert proc.poll() is None and ns.mount_at(where), \
        'daemon did not mount %s: %s' % (where, out.text())
    return proc, out


def stop_foreground(ns, proc, out, where):
    res = ns.run(['fusermount3', '-u', where], user=util.NOBODY)
    assert res.returncode == 0, res.stderr
    rc = proc.wait(util.PATIENCE)
    out.join(10)
    assert rc == 0, 'daemon exited with %s: %s' % (rc, out.text())
    return out.text()


@pytest.mark.root
def test_detached_daemon_logs_to_syslog(log_ns):
    """Without -f the daemon's messages reach syslog from the daemon
    facility with the tag sectionfs.  The message is the one-line
    passthrough fallback an unprivileged daemon logs under the default
    passthrough=auto."""
    ns, catcher, where = log_ns
    res = ns.run([util.daemon_binary(), '-o', 'passthrough=auto', where],
                 user=util.NOBODY)
    assert res.returncode == 0, res.stderr
    # Until it detaches, the terminal sees the message too.
    assert 'sectionfs: ' + PT_FALLBACK in res.stderr, res.stderr
    entry = ns.mount_at(where)
    assert entry and entry[1] == 'fuse.sectionfs', entry
    _, pids = one_keeper(ns)
    for pid in pids:
        assert os.stat('/proc/%d' % pid).st_uid == util.NOBODY

    got = []
    while not any(PT_FALLBACK in d for d in got):
        msg = catcher.receive()
        assert msg is not None, 'the passthrough fallback did not reach ' \
            '/dev/log; what did: %s' % got
        got.append(msg)
    for msg in got:
        m = SYSLOG_LINE.match(msg)
        assert m, 'not a syslog datagram: %r' % msg
        pri, tag, _, text = m.groups()
        assert tag == 'sectionfs', msg
        assert int(pri) >> 3 == LOG_DAEMON, msg
        assert not text.startswith('sectionfs:'), \
            'the tag already names the program: %r' % msg
        if PT_FALLBACK in text:
            assert int(pri) & 7 == LOG_INFO, msg

    res = ns.run(['umount', where])
    assert res.returncode == 0, res.stderr
    assert util.wait_for(lambda: not ns.pids()), 'daemon did not exit'
    later = catcher.drain()
    loud = [d for d in later if SYSLOG_LINE.match(d)
            and int(SYSLOG_LINE.match(d).group(1)) & 7 <= 4]
    assert not loud, 'a clean mount and unmount logged %s' % loud


@pytest.mark.root
def test_foreground_logs_to_stderr_only(log_ns):
    ns, catcher, where = log_ns
    proc, out = run_foreground(ns, ['-f', '-o', 'passthrough=auto'], where)
    text = stop_foreground(ns, proc, out, where)
    assert 'sectionfs: ' + PT_FALLBACK in text, text
    bad = [ln for ln in text.splitlines()
           if util.ALARMING.search(ln)]
    assert not bad, text
    assert not re.search(r'unique: \d+', text), \
        'request trace without -d:\n' + text
    assert catcher.drain() == [], 'a foreground daemon used syslog'


@pytest.mark.root
def test_debug_adds_request_trace(log_ns):
    ns, catcher, where = log_ns
    proc, out = run_foreground(ns, ['-d', '-o', 'passthrough=auto'], where)
    res = ns.run(['stat', where + '/nothing-here'], user=util.NOBODY)
    assert res.returncode != 0          # a LOOKUP reached the daemon
    text = stop_foreground(ns, proc, out, where)
    assert re.search(r'unique: \d+, opcode: INIT', text), text
    assert re.search(r'unique: \d+, opcode: LOOKUP', text), text
    assert 'sectionfs: ' + PT_FALLBACK in text, text
    assert catcher.drain() == [], 'a -d daemon used syslog'


# --------------------------------------------------------------------------
# Every option -h prints is in the man page


def help_tokens(text):
    """Options a --help text offers: flags ('-f', '--size') and -o names
    ('size=' for those printed with a value, 'clone_fd' otherwise), read
    from the option column of lines that start with an option."""
    found = []
    for line in text.splitlines():
        words = line.split()
        i = 0
        while i < len(words):
            w = words[i].rstrip(',')
            if w == '-o' and i + 1 < len(words):
                for spec in words[i + 1].split(','):
                    name, eq, _ = spec.partition('=')
                    if re.fullmatch(r'[a-z_]+', name):
                        found.append(name + eq)
                i += 2
            elif re.fullmatch(r'--?[A-Za-z][\w-]*', w):
                found.append(w)
                i += 1
            else:
                break
    return list(dict.fromkeys(found))


def man_text(path):
    """The words of a man(7) or mdoc(7) page, escapes and fonts removed."""
    with open(path) as f:
        src = f.read()
    src = re.sub(r'\\f(\[[^]]*\]|\(..|.)', '', src)
    src = src.replace('\\-', '-').replace('\\&', '').replace('\\e', '\\')
    src = re.sub(r'^\.\s*(Fl|Op Fl|Nm)\s', lambda m: '.' + m.group(1) + ' ',
                 src, flags=re.M)
    src = re.sub(r'\bFl ([\w-]+)', r'-\1', src)      # mdoc: .Fl f -> -f
    # man(7) macros that alternate fonts join their arguments.
    lines = []
    for line in src.splitlines():
        m = re.match(r'^\.(B|I|BI|IB|BR|RB|IR|RI)\s+(.*)$', line)
        if m:
            args = [a or b for a, b in
                    re.findall(r'"([^"]*)"|(\S+)', m.group(2))]
            line = (' ' if len(m.group(1)) == 1 else '').join(args)
        lines.append(line)
    return '\n'.join(lines)


def undocumented(tokens, text):
    missing = []
    for tok in tokens:
        if tok.endswith('='):
            pat = r'(?<![\w-])' + re.escape(tok)
        else:
            pat = r'(?<![\w-])' + re.escape(tok) + r'(?![\w-])'
        if not re.search(pat, text):
            missing.append(tok)
    return missing


def test_help_options_in_man_page():
    res = util.run_daemon(['-h'])
    assert res.returncode == 0, res.stderr
    tokens = help_tokens(res.stdout + res.stderr)
    # The parser must see our own options and libfuse's.
    for expected in ('-f', '-d', 'size=', 'passthrough=', 'allow_other'):
        assert expected in tokens, (expected, tokens)
    missing = undocumented(tokens, man_text(MAN_SECTIONFS))
    assert not missing, 'sectionfs -h offers options man/sectionfs.8 ' \
        'does not document: %s' % ', '.join(missing)


def sectionctl_help(args):
    res = subprocess.run([SECTIONCTL] + args, capture_output=True, text=True,
                         timeout=util.PATIENCE, cwd='/')
    assert res.returncode == 0, '%s %s: %s' % (SECTIONCTL, args, res.stderr)
    return res.stdout + res.stderr


def test_sectionctl_help_options_in_man_page():
    if not os.access(SECTIONCTL, os.X_OK):
        pytest.fail('%s is not built' % SECTIONCTL)
    if not os.path.exists(MAN_SECTIONCTL):
        pytest.fail('%s is missing' % MAN_SECTIONCTL)
    top = sectionctl_help(['-h'])
    commands = re.findall(r'^  ([a-z]+)\s{2,}\S', top, re.M)
    assert commands, 'no commands in sectionctl -h:\n' + top
    text = man_text(MAN_SECTIONCTL)
    missing = ['command ' + c for c in commands
               if not re.search(r'(?<![\w-])%s(?![\w-])' % c, text)]
    missing += undocumented(help_tokens(top), text)
    for c in commands:
        missing += ['%s %s' % (c, t) for t in
                    undocumented(help_tokens(sectionctl_help([c, '--help'])),
                                 text)]
    assert not missing, 'sectionctl offers options man/sectionctl.1 does ' \
        'not document: %s' % ', '.join(missing)


def test_every_test_file_is_distributed():
    """make distcheck runs only the tests the tarball carries: each
    test/test_*.py must be in Makefile.am's PYTEST_FILES."""
    with open(os.path.join(SRC_DIR, 'Makefile.am')) as f:
        am = f.read()
    missing = [name for name in sorted(os.listdir(util.TEST_DIR))
               if re.fullmatch(r'test_\w+\.py', name)
               and not re.search(r'(?<![\w/])test/%s(?![\w.])'
                                 % re.escape(name), am)]
    assert not missing, 'not in PYTEST_FILES, so make distcheck skips ' \
        'them silently: %s' % ', '.join(missing)
