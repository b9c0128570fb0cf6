"""One user may not starve the others of the daemon, nor make it hold
more than they are charged for.

- seal storm: uid 65534 asks, from many threads at once and over and
  over, for the write seal of sections it keeps open for writing (the
  cached path waits for writers) or whose pages it pins in a pipe with
  vmsplice (memfd waits for pins); meanwhile root creates, stats and
  unlinks files.  The victim's work finishes within a liveness bound, and
  the attacker's seals are refused EBUSY, nothing else.
"""

import errno
import json
import os
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


@pytest.mark.root
@pytest.mark.other_user
def test_seal_storm_does_not_stall_other_users(shared_mnt):
    mnt = shared_mnt
    if util.setpriv_skip_reason():
        pytest.skip(util.setpriv_skip_reason())
    attacker = subprocess.Popen(
        util.as_user_argv(NOBODY) + [util.PYTHON, '-I', '-c', ATTACKER,
                                     mnt / 'pub', str(ATTACKERS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert attacker.stdout.readline().strip() == 'ready'
        time.sleep(0.5)             # every attacker thread is asking
        took = victim_cycles(mnt)
    finally:
        out, _ = attacker.communicate(timeout=util.PATIENCE)
    outcomes = json.loads(out)
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
