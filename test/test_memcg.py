"""Page-file memory is charged to the memory cgroup of the user who makes
it, as on tmpfs, not to the daemon's.

The daemon is moved into a cgroup of its own and uid 65534 writes, or
fallocates, 256 MiB into a section from a cgroup whose limit is 64 MiB
(and no swap).  What a user would check: the section holds no more than
the limit allows, the writer's cgroup hit its limit and holds the pages
that were stored, and the daemon's cgroup did not take them.  The writer
may be refused (ENOMEM, ENOSPC) or, as on tmpfs, killed by the kernel's
OOM killer; either way it stops at its limit.

The daemon allocates for a caller in another cgroup through a charger, a
child process it starts there: one per cgroup, none for a caller in the
daemon's own, a new one when one is killed, gone when unused, and at
most 64.

Both cgroup versions: cgroup v2 where its hierarchy has the memory
controller, else the v1 memory hierarchy (a hybrid machine).  Skipped,
with the reason, where neither can be made.
"""

import errno
import json
import os
import subprocess

import pytest

import util
from test_stress import deadline  # noqa: F401 (autouse: bounds each test)

MiB = 1024 * 1024
LIMIT = 64 * MiB
TOTAL = 256 * MiB
#: Pages the writer's cgroup holds besides the section's (the writer's
#: own memory, page tables, the kernel's page cache of a cached mount).
SLACK = 16 * MiB

pytestmark = [pytest.mark.root, pytest.mark.other_user]

WRITER = r'''
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate64.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                             ctypes.c_int64]
how, path, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
chunk = 1 << 20 if how == 'write' else 16 << 20
buf = b'\xa5' * chunk if how == 'write' else b''
done, err = 0, 0
while done < total:
    try:
        if how == 'write':
            n = os.write(fd, buf)
        elif libc.fallocate64(fd, 0, done, chunk):
            raise OSError(ctypes.get_errno(), 'fallocate')
        else:
            n = chunk
    except OSError as e:
        err = e.errno
        break
    done += n
print(json.dumps({'done': done, 'errno': err}), flush=True)
'''


class Cgroup:
    """One memory cgroup made by the test: v1 or v2 files alike."""

    def __init__(self, root, version, name):
        self.path = os.path.join(root, name)
        self.v2 = version == 2
        os.mkdir(self.path)

    def write(self, name, value):
        with open(os.path.join(self.path, name), 'w') as f:
            f.write(str(value))

    def read(self, name):
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def limit(self, nbytes):
        if self.v2:
            self.write('memory.max', nbytes)
            if os.path.exists(os.path.join(self.path, 'memory.swap.max')):
                self.write('memory.swap.max', 0)
        else:
            self.write('memory.limit_in_bytes', nbytes)
            if os.path.exists(os.path.join(self.path,
                                           'memory.memsw.limit_in_bytes')):
                self.write('memory.memsw.limit_in_bytes', nbytes)

    def usage(self):
        return int(self.read('memory.current' if self.v2
                             else 'memory.usage_in_bytes'))

    def hit_limit(self):
        """Whether a charge met the limit: v2's memory.events say so; v1's
        failcnt is not kept by every kernel, its peak usage is."""
        if not self.v2:
            peak = int(self.read('memory.max_usage_in_bytes'))
            return int(self.read('memory.failcnt')) > 0 or \
                peak >= int(self.read('memory.limit_in_bytes')) - MiB
        events = dict(line.split() for line in
                      self.read('memory.events').splitlines())
        return int(events['max']) > 0

    def procs(self):
        return [int(p) for p in self.read('cgroup.procs').split()]

    def enter(self, pid):
        self.write('cgroup.procs', pid)

    def remove(self):
        """Wait for its processes to go (the daemon's helpers leave with
        the daemon), then remove it; returns the pids that stayed."""
        util.wait_for(lambda: not self.procs(), timeout=util.PATIENCE)
        left = self.procs()
        for pid in left:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        util.wait_for(lambda: not self.procs(), timeout=util.PATIENCE)
        # An exiting task may keep it busy a moment after it left procs.
        util.wait_for(self._rmdir, timeout=util.PATIENCE)
        if os.path.exists(self.path):
            os.rmdir(self.path)     # raises, saying why
        return left

    def _rmdir(self):
        try:
            os.rmdir(self.path)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            return False
        return True


def _memory_hierarchy():
    """(root directory, version) of a hierarchy with the memory
    controller in which children get it, or (None, reason)."""
    v1 = None
    with open('/proc/self/mountinfo') as f:
        lines = f.read().splitlines()
    for line in lines:
        fields = line.split()
        sep = fields.index('-')
        where, fstype = fields[4], fields[sep + 1]
        opts = fields[sep + 3].split(',')
        if fstype == 'cgroup2':
            try:
                with open(os.path.join(where, 'cgroup.subtree_control')) as f:
                    if 'memory' in f.read().split():
                        return where, 2
            except OSError:
                pass
        elif fstype == 'cgroup' and 'memory' in opts:
            v1 = where
    if v1 is not None:
        return v1, 1
    return None, 'no memory cgroup controller to make a cgroup with'


@pytest.fixture
def cgroups():
    """make(name, limit=None): a fresh memory cgroup, limited to limit
    bytes without swap when given; all removed at teardown.  Listed
    before the mount in a test's arguments, so that they are removed
    after its daemon (and so its chargers) has exited."""
    root, version = _memory_hierarchy()
    if root is None:
        pytest.skip(version)
    if not os.access(root, os.W_OK):
        pytest.skip('%s is not writable here' % root)
    made = []

    def make(name, limit=None):
        try:
            cg = Cgroup(root, version, 'sectionfs-test-%d-%s'
                        % (os.getpid(), name))
            made.append(cg)
            if limit is not None:
                cg.limit(limit)
        except OSError as e:
            pytest.skip('cannot make a memory cgroup here: %s' % e)
        return cg

    yield make
    left = []
    for cg in reversed(made):
        left += cg.remove()
    assert not left, 'processes left in the test cgroups: %s' % left


@pytest.fixture
def memcgs(cgroups):
    """'user', limited to 64 MiB without swap, and 'daemon', unlimited."""
    return {'user': cgroups('user', LIMIT), 'daemon': cgroups('daemon')}


def _in_cgroup(cg, argv):
    """argv run as uid 65534 inside cg."""
    return ['sh', '-c', 'echo $$ > "$0" && exec "$@"',
            os.path.join(cg.path, 'cgroup.procs')] + \
        util.as_user_argv(util.NOBODY) + argv


def _run_writer(memcgs, how, path, total=TOTAL):
    """Run WRITER as uid 65534 inside the user cgroup; its outcome."""
    argv = _in_cgroup(memcgs['user'], ['/usr/bin/python3', '-c', WRITER,
                                       how, path, str(total)])
    proc = subprocess.run(argv, capture_output=True, text=True,
                          timeout=util.PATIENCE * 6)
    if proc.returncode == -9 or proc.returncode == 128 + 9:
        return {'killed': True}
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _stored(path):
    st = os.stat(path)
    return st.st_blocks * 512


@pytest.mark.parametrize('how', ['write', 'fallocate'])
def test_pages_charged_to_writer(memcgs, shared_mnt, how):
    if util.VALGRIND:
        pytest.skip('valgrind: the daemon\'s memory is the valgrind '
                    'process\'s, not what this test measures')
    reason = util.writeback_skip_reason(
        shared_mnt, 'the kernel writes pages back as itself, and the '
        'daemon pays for them')
    if how == 'write' and reason:
        pytest.skip(reason)
    memcgs['daemon'].enter(shared_mnt.pid)
    path = shared_mnt / 'pub/f'
    before = memcgs['daemon'].usage()
    user_before = memcgs['user'].usage()
    outcome = _run_writer(memcgs, how, path)
    stored = _stored(path)
    daemon_took = memcgs['daemon'].usage() - before
    user_holds = memcgs['user'].usage() - user_before

    report = ('%s: writer %s; section holds %d MiB; the writer\'s cgroup '
              '%d MiB (limit hit: %s); the daemon\'s cgroup took %d MiB'
              % (how, outcome, stored // MiB, user_holds // MiB,
                 memcgs['user'].hit_limit(), daemon_took // MiB))
    # The writer stopped at its limit, refused or OOM-killed.
    assert stored <= LIMIT, report
    if not outcome.get('killed'):
        assert outcome['done'] < TOTAL, report
        assert outcome['errno'] in (errno.ENOMEM, errno.ENOSPC), report
    assert memcgs['user'].hit_limit(), report
    # What was stored is charged where the writer is, not to the daemon.
    assert user_holds >= stored - SLACK, report
    assert daemon_took < SLACK, report
    os.unlink(path)


def _chargers(m):
    """The daemon's live chargers: its children named sfs-charger."""
    kids = []
    try:
        for tid in os.listdir('/proc/%d/task' % m.pid):
            with open('/proc/%d/task/%s/children' % (m.pid, tid)) as f:
                kids += [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []
    found = []
    for pid in kids:
        try:
            with open('/proc/%d/stat' % pid) as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        # "pid (comm) state ...": a zombie is gone but for its pid.
        comm, state = stat[stat.index('(') + 1:stat.rindex(')')], \
            stat[stat.rindex(')') + 2]
        if comm == 'sfs-charger' and state != 'Z':
            found.append(pid)
    return found


def _fallocate_small(cg, path):
    """path made and 64 KiB of it allocated by uid 65534 from cg (the
    daemon serves fallocate on both data paths); the outcome."""
    return subprocess.run(
        _in_cgroup(cg, ['fallocate', '-l', '64KiB', path]),
        capture_output=True, text=True, timeout=util.PATIENCE)


def test_no_charger_for_the_daemons_cgroup(shared_mnt):
    """A caller in the daemon's own cgroup costs no process."""
    util.user_op('create', shared_mnt / 'pub/own')
    with open(shared_mnt / 'pub/own2', 'wb') as f:
        f.write(b'x' * MiB)
        f.flush()
        util.fallocate(f.fileno(), 0, 0, 4 * MiB)
    assert _chargers(shared_mnt) == []


def test_charger_lives_dies_and_goes(cgroups, shared_mnt):
    """One charger per cgroup, in it; killed, the next write gets
    another and the daemon serves on; unused, it goes."""
    if util.VALGRIND:
        pytest.skip('valgrind runs the daemon\'s children under itself')
    cg = cgroups('one')
    for i in range(3):
        done = _fallocate_small(cg, shared_mnt / ('pub/f%d' % i))
        assert done.returncode == 0, done.stderr
    first = _chargers(shared_mnt)
    assert len(first) == 1, first
    assert first[0] in cg.procs()
    os.kill(first[0], 9)    # the daemon's child, found by its pid
    assert util.wait_for(lambda: first[0] not in _chargers(shared_mnt))
    done = _fallocate_small(cg, shared_mnt / 'pub/again')
    assert done.returncode == 0, done.stderr
    second = _chargers(shared_mnt)
    assert len(second) == 1 and second != first, (first, second)
    assert shared_mnt.alive()
    # Sent away after ten seconds unused (the sweep runs every five).
    assert util.wait_for(lambda: not _chargers(shared_mnt), timeout=40), \
        _chargers(shared_mnt)


def test_chargers_are_bounded(cgroups, shared_mnt):
    """Callers in 70 cgroups get at most 64 chargers, and every write:
    the one unused longest makes room (or, on a slow machine, the first
    ones have gone unused by then)."""
    if util.VALGRIND:
        pytest.skip('valgrind runs the daemon\'s children under itself')
    most = 0
    for i in range(70):
        cg = cgroups('n%d' % i)
        done = _fallocate_small(cg, shared_mnt / ('pub/f%d' % i))
        assert done.returncode == 0, (i, done.stderr)
        # One sent away ends as soon as it reads that it was.
        assert util.wait_for(lambda: len(_chargers(shared_mnt)) <= 64,
                             timeout=10), len(_chargers(shared_mnt))
        most = max(most, len(_chargers(shared_mnt)))
    assert 0 < most <= 64
