"""Real programs as clients: SQLite in WAL mode and fio --verify.

SQLite's WAL mode is the demanding one: its -shm index is a MAP_SHARED view
that every connection writes under fcntl() byte-range locks, so two
processes writing at once lose rows or corrupt the database unless shared
views, locks and writes all agree.  Each test runs on both data paths.
"""

import hashlib
import json
import os
import select
import shutil
import sqlite3
import subprocess

import pytest

import util
from test_stress import deadline  # noqa: F401 (autouse: bounds each test)

ROWS = 1500         # rows per writer
WRITERS = 2

#: One writer: ROWS transactions, each inserting rows whose payload is a
#: function of (writer, seq), so the checker knows every byte.
_WRITER = r'''
import hashlib, sqlite3, sys, time
db, wid, rows, mmap_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4])
def payload(w, s):
    return hashlib.sha256(b'%d-%d' % (w, s)).digest() * (1 + s % 40)
# No busy timeout: SQLite's own backs off up to 100 ms, which lets one
# writer run alone; retrying at once makes the writers interleave.
con = sqlite3.connect(db, timeout=0, isolation_level=None)
deadline = time.monotonic() + 240
def retry(fn):
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if 'locked' not in str(e) and 'busy' not in str(e):
                raise
            if time.monotonic() > deadline:
                sys.exit('still busy after 240 s: %s' % e)
            time.sleep(0.0002)
retry(lambda: con.execute('PRAGMA synchronous=FULL'))
retry(lambda: con.execute('PRAGMA mmap_size=%d' % mmap_size))
assert retry(lambda: con.execute('PRAGMA journal_mode').fetchone()[0]) == 'wal'
# Both writers connected, then started together by the test.
print('ready', flush=True)
sys.stdin.readline()
seq = 0
while seq < rows:
    n = 1 + seq % 3                 # 1..3 rows per transaction
    end = min(seq + n, rows)
    retry(lambda: con.execute('BEGIN IMMEDIATE'))
    for s in range(seq, end):
        con.execute('INSERT INTO t(writer, seq, payload) VALUES (?, ?, ?)',
                    (wid, s, payload(wid, s)))
    con.execute('UPDATE counters SET n = n + ? WHERE writer = ?',
                (end - seq, wid))
    retry(lambda: con.execute('COMMIT'))
    seq = end
    # Between transactions, read the other writers' latest rows (a read
    # transaction that takes a WAL read mark in the shared -shm view).
    got = retry(lambda: con.execute(
        'SELECT writer, seq, payload FROM t WHERE writer != ? '
        'ORDER BY rowid DESC LIMIT 3', (wid,)).fetchall())
    for w, s, p in got:
        if p != payload(w, s):
            sys.exit('row (%d, %d) of the other writer is wrong' % (w, s))
    if seq % 50 == 0:
        retry(lambda: con.execute('PRAGMA wal_checkpoint(PASSIVE)').fetchall())
    if seq % 97 == 0:
        # A snapshot is consistent: the counter agrees with the rows.
        def snapshot():
            con.execute('BEGIN')
            try:
                return (con.execute('SELECT count(*) FROM t WHERE writer = ?',
                                    (wid,)).fetchone()[0],
                        con.execute('SELECT n FROM counters WHERE writer = ?',
                                    (wid,)).fetchone()[0])
            finally:
                con.execute('COMMIT')
        rows_now, n_now = retry(snapshot)
        if rows_now != n_now:
            sys.exit('snapshot: %d rows but counter %d' % (rows_now, n_now))
con.close()
print('ok')
'''


def payload(w, s):
    return hashlib.sha256(b'%d-%d' % (w, s)).digest() * (1 + s % 40)


def create_db(path):
    con = sqlite3.connect(path, isolation_level=None)
    assert con.execute('PRAGMA journal_mode=WAL').fetchone()[0] == 'wal'
    con.execute('CREATE TABLE t (writer INTEGER, seq INTEGER, '
                'payload BLOB, PRIMARY KEY (writer, seq))')
    con.execute('CREATE TABLE counters (writer INTEGER PRIMARY KEY, n INTEGER)')
    for w in range(WRITERS):
        con.execute('INSERT INTO counters VALUES (?, 0)', (w,))
    con.close()


def check_db(path):
    """integrity_check is clean and every row of every writer is there."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        assert con.execute('PRAGMA integrity_check').fetchall() == [('ok',)]
        for w in range(WRITERS):
            got = con.execute('SELECT seq, payload FROM t WHERE writer = ? '
                              'ORDER BY seq', (w,)).fetchall()
            assert [s for s, _ in got] == list(range(ROWS)), \
                'writer %d: %d rows of %d' % (w, len(got), ROWS)
            bad = [s for s, p in got if p != payload(w, s)]
            assert not bad, 'writer %d: wrong payload in rows %s' % (w, bad[:10])
            assert con.execute('SELECT n FROM counters WHERE writer = ?',
                               (w,)).fetchone()[0] == ROWS
    finally:
        con.close()


def run_together(argvs, what):
    """Start one process per argv; once each has printed 'ready', tell
    them all 'go' on stdin, and fail unless each exits 0 with its last
    word 'ok'."""
    procs = [subprocess.Popen(argv, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd='/')
             for argv in argvs]
    for p in procs:
        ready, _, _ = select.select([p.stdout], [], [], 120)
        line = p.stdout.readline() if ready else '(nothing within 120 s)'
        if line.strip() != 'ready':
            for q in procs:
                q.kill()
                q.wait()
            pytest.fail('%s did not start: %r %s' % (
                what, line, p.stderr.read() if ready else ''))
    for p in procs:
        p.stdin.write('go\n')
        p.stdin.flush()
    problems = []
    for i, p in enumerate(procs):
        try:
            out, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            err += '(killed by the test: still running after 300 s)'
        if p.returncode != 0 or out.split()[-1:] != ['ok']:
            problems.append('%s %d exited %s: %s' % (
                what, i, p.returncode, err.strip()[-2000:]))
    assert not problems, '\n'.join(problems)


def run_writers(db):
    """WRITERS processes at once; one reads the database through mmap."""
    run_together([[util.PYTHON, '-I', '-c', _WRITER, db, str(w), str(ROWS),
                   str((64 << 20) if w == 1 else 0)]
                  for w in range(WRITERS)], 'sqlite writer')


def test_sqlite_wal_two_writers(mnt):
    db = mnt / 'test.db'
    create_db(db)
    run_writers(db)
    # While -wal and -shm are still there, and after a full checkpoint.
    check_db(db)
    con = sqlite3.connect(db, isolation_level=None)
    busy, _, _ = con.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()
    con.close()
    assert busy == 0
    check_db(db)
    # The sqlite3 program agrees.
    if shutil.which('sqlite3'):
        res = subprocess.run(['sqlite3', db, 'PRAGMA integrity_check;',
                              'SELECT count(*) FROM t;'],
                             capture_output=True, text=True, timeout=120)
        assert res.stdout.split() == ['ok', str(WRITERS * ROWS)], res
    # The last close removed the WAL files: only the database is left.
    assert os.listdir(mnt.path) == ['test.db']


@pytest.mark.file_backed
def test_sqlite_wal_file_backed_database(mnt, base_dir):
    """The database is a file-backed section: after unmount the real file
    holds every row (its -wal and -shm are page-file sections)."""
    real = os.path.join(base_dir, 'real.db')
    util.write_file(real, b'')
    os.symlink(real, mnt / 'test.db')
    db = mnt / 'test.db'
    create_db(db)
    run_writers(db)
    check_db(db)
    # Closing the last connection checkpoints into the database file.
    assert sorted(os.listdir(mnt.path)) == ['test.db']
    res = mnt.umount()
    assert res.returncode == 0, res.stderr
    assert mnt.wait_exit() == 0
    check_db(real)


# --------------------------------------------------------------------------
# LMDB: a memory-mapped database, its lock table a shared view

LMDB_TXNS = 1000        # transactions per writer
LMDB_PER_TXN = 3        # keys per transaction
LMDB_WRITERS = 2

#: A writer commits LMDB_TXNS transactions of its own keys and counter; a
#: reader takes snapshots until every writer is done, checking in each
#: that every counter agrees with the keys it counts.
_LMDB = r'''
import hashlib, lmdb, sys
path, role, ident, writemap, txns, per, writers = sys.argv[1], \
    sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1', int(sys.argv[5]), \
    int(sys.argv[6]), int(sys.argv[7])
def value(w, i):
    return hashlib.sha256(b'%d-%d' % (w, i)).digest() * (1 + i % 20)
def count_keys(txn, w):
    prefix, n = b'%d-' % w, 0
    with txn.cursor() as c:
        if c.set_range(prefix):
            for k, v in c:
                if not k.startswith(prefix):
                    break
                if v != value(w, int(k[len(prefix):])):
                    sys.exit('key %r has the wrong value' % k)
                n += 1
    return n
env = lmdb.open(path, map_size=64 << 20, writemap=writemap, max_readers=16)
print('ready', flush=True)
sys.stdin.readline()
if role == 'writer':
    for t in range(txns):
        with env.begin(write=True) as txn:
            for i in range(t * per, (t + 1) * per):
                txn.put(b'%d-%06d' % (ident, i), value(ident, i))
            txn.put(b'count-%d' % ident, b'%d' % ((t + 1) * per))
else:
    done = False
    while not done:
        with env.begin() as txn:
            done = True
            for w in range(writers):
                n = int(txn.get(b'count-%d' % w) or 0)
                if count_keys(txn, w) != n:
                    sys.exit('writer %d: counter %d, keys %d' %
                             (w, n, count_keys(txn, w)))
                done = done and n == txns * per
env.close()
print('ok')
'''


@pytest.mark.parametrize('writemap', [False, True],
                         ids=['pwrite', 'writemap'])
@pytest.mark.parametrize('kind', ['pagefile', 'file'])
@pytest.mark.file_backed
def test_lmdb_writers_and_reader(mnt, base_dir, writemap, kind):
    """Two writers and a reader at once on one environment: data.mdb read
    (and with writemap, written) through shared views, lock.mdb's reader
    table and writer mutex shared between the processes.  Every snapshot
    is consistent, and afterwards every key holds its value.  data.mdb is
    a page-file-backed section, or a file-backed one (written with
    pwrite(2) and read through views of the same pages: direct I/O and the
    page cache on the cached path)."""
    lmdb = pytest.importorskip('lmdb',
                               reason='Debian package python3-lmdb')
    path = str(mnt / 'env')
    if kind == 'file':
        real = os.path.join(base_dir, 'data.mdb')
        util.write_file(real, b'')
        os.mkdir(path)
        os.symlink(real, os.path.join(path, 'data.mdb'))
    argv = [util.PYTHON, '-I', '-c', _LMDB, path]
    tail = [str(int(writemap)), str(LMDB_TXNS), str(LMDB_PER_TXN),
            str(LMDB_WRITERS)]
    # The first open makes the environment, so the rest need not race.
    lmdb.open(path, map_size=64 << 20).close()
    run_together([argv + ['writer', str(w)] + tail
                  for w in range(LMDB_WRITERS)] +
                 [argv + ['reader', '0'] + tail], 'lmdb process')
    env = lmdb.open(path, map_size=64 << 20, readonly=True)
    with env.begin() as txn:
        assert txn.stat()['entries'] == LMDB_WRITERS * (
            LMDB_TXNS * LMDB_PER_TXN + 1)
        for w in range(LMDB_WRITERS):
            assert txn.get(b'count-%d' % w) == b'%d' % (
                LMDB_TXNS * LMDB_PER_TXN)
    env.close()
    assert sorted(os.listdir(path)) == ['data.mdb', 'lock.mdb']
    assert os.getxattr(os.path.join(path, 'data.mdb'), util.KIND) == \
        kind.encode()


# --------------------------------------------------------------------------
# fio

FIO_SIZE = '32m'


def run_fio(argv, what):
    """Run fio (JSON output); fail unless it exits 0 with no job in
    error.  Returns its jobs."""
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                         cwd='/')
    assert res.returncode == 0, 'fio %s exited %d:\n%s\n%s' % (
        what, res.returncode, res.stderr[-3000:], res.stdout[-2000:])
    report = json.loads(res.stdout[res.stdout.index('{'):])
    for job in report['jobs']:
        assert job['error'] == 0, job
    return report['jobs']


def fio(directory, engine, rw, extra=()):
    argv = ['fio', '--name=%s-%s' % (engine, rw), '--directory=%s' % directory,
            '--ioengine=%s' % engine, '--rw=%s' % rw, '--bs=4k',
            '--size=%s' % FIO_SIZE, '--numjobs=2', '--verify=crc32c',
            '--do_verify=1', '--verify_fatal=1', '--verify_dump=1',
            '--verify_state_save=0', '--output-format=json'] + list(extra)
    for job in run_fio(argv, '%s %s' % (engine, rw)):
        # Something was written, and read back by the verify phase.
        assert job['write']['io_bytes'] > 0, job['jobname']
        assert job['read']['io_bytes'] > 0, job['jobname']


@pytest.mark.parametrize('engine', ['psync', 'mmap'])
@pytest.mark.parametrize('rw', ['randwrite', 'write'])
def test_fio_verify(mnt, engine, rw):
    if shutil.which('fio') is None:
        pytest.skip('fio not found (Debian package fio)')
    fio(mnt.path, engine, rw)
    # Verified again with the verify backlog: reads interleaved with writes.
    fio(mnt.path, engine, rw, ['--verify_backlog=256', '--overwrite=1'])
    for name in os.listdir(mnt.path):
        os.unlink(mnt / name)


def fio_jobs(filename, engines, extra=()):
    """One fio run of two jobs on one file, the first on its first half
    and the second on its second, with the given ioengines."""
    half = 16 << 20
    argv = ['fio', '--filename=%s' % filename, '--rw=randwrite', '--bs=4k',
            '--size=%d' % half, '--verify=crc32c', '--do_verify=1',
            '--verify_fatal=1', '--verify_state_save=0',
            '--output-format=json'] + list(extra)
    for i, engine in enumerate(engines):
        argv += ['--name=half%d' % i, '--ioengine=%s' % engine,
                 '--offset=%d' % (i * half)]
    for job in run_fio(argv, ' '.join(engines)):
        assert job['read']['io_bytes'] > 0, job['jobname']


@pytest.mark.file_backed
def test_fio_verify_file_backed(mnt, base_dir):
    """A file-backed section written at once through a shared view and
    through write(2) (direct I/O on the cached path), each on its own
    half; then both halves are verified again through read(2) on the
    section, whose bytes the backing file then holds.  (fio's mmap engine
    takes the first half: with an offset it maps the wrong range.)"""
    if shutil.which('fio') is None:
        pytest.skip('fio not found (Debian package fio)')
    real = os.path.join(base_dir, 'real.dat')
    # Full size already: fio replaces a shorter file (unlink, create),
    # which here would make a page-file section of the name.
    util.write_file(real, bytes(32 << 20))
    os.symlink(real, mnt / 'fb')
    fio_jobs(mnt / 'fb', ['mmap', 'psync'])
    assert os.lstat(mnt / 'fb').st_size == 32 << 20
    assert os.getxattr(mnt / 'fb', util.KIND) == b'file'
    fio_jobs(mnt / 'fb', ['psync', 'psync'], ['--verify_only'])
    assert os.path.getsize(real) == 32 << 20
    assert util.read_file(real) == util.read_file(mnt / 'fb')
