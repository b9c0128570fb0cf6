"""The commit policy, -o commit=lazy|eager, on both data paths, as README
and sectionfs(8) state it.

commit=eager: growth allocates at once, so it fails with ENOSPC at the
cap (or, without a cap, beyond the memory and swap df shows), and what it
did allocate can then be touched with the cap full.  commit=lazy (the
default): growth allocates nothing, so a later fault may find no room.
"""

import os

import util
from util import (MiB, PAGE, View, df, drop_cache, fill, outcome, used,
                  view_cmd)



def growth_refused(fd, size):
    """An eager ftruncate of the empty section fd to size fails with
    ENOSPC and leaves it empty, nothing allocated."""
    assert outcome(os.ftruncate, fd, size) == 'ENOSPC'
    st = os.fstat(fd)
    assert (st.st_size, st.st_blocks) == (0, 0)


def test_commit_eager(mount_factory, datapath):
    """size=8m,commit=eager: growth past the cap fails with ENOSPC and
    changes nothing; growth within it allocates at once; with the rest of
    the cap then taken by another section, a child touching every page of
    the mapping never faults, and the bytes are all stored."""
    mnt = mount_factory(datapath, options=['size=8m', 'commit=eager'])
    path = mnt / 'eager'
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        growth_refused(fd, 16 * MiB)
        assert used(mnt.path) == 0

        os.ftruncate(fd, 4 * MiB)
        st = os.fstat(fd)
        assert st.st_size == 4 * MiB
        assert st.st_blocks * 512 >= 4 * MiB, \
            'eager commit allocated only %d bytes' % (st.st_blocks * 512)
        assert 4 * MiB <= used(mnt.path) <= 4 * MiB + 4 * PAGE
    finally:
        os.close(fd)

    # Nothing is left for anything not yet allocated.
    assert 4 * MiB - 4 * PAGE <= fill(mnt / 'rest') <= 4 * MiB
    assert df(mnt.path)[2] < PAGE

    with View(path, 'shared') as v:
        answer = view_cmd(v, 'write 0 %d 9' % (4 * MiB))
        assert answer.startswith('ok'), answer
        answer = view_cmd(v, 'msync')
        assert answer == 'ok msync', answer
        rc = v.close()
    assert rc == 0, 'the view process ended with %s' % rc
    drop_cache(path)
    assert util.read_file(path) == util.pattern(0, 4 * MiB, 9), \
        'bytes written to committed pages did not all reach the section'
    # Plain writes into committed memory work too, the cap being full.
    fd = os.open(path, os.O_WRONLY)
    try:
        assert outcome(os.pwrite, fd, b'w' * 65536, MiB) == 'ok'
    finally:
        os.close(fd)


def test_commit_eager_without_cap_stops_at_memory(mount_factory, datapath):
    """commit=eager without size=: a growth larger than the memory and
    swap df shows (twice the machine's) fails with ENOSPC at once and
    changes nothing, rather than allocating until the OOM killer strikes;
    a growth that fits still commits."""
    mnt = mount_factory(datapath, options=['commit=eager'])
    st = os.statvfs(mnt.path)
    machine = st.f_blocks * st.f_frsize
    assert st.f_bavail * st.f_frsize <= machine
    path = mnt / 'eager'
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        growth_refused(fd, 2 * machine)
        os.ftruncate(fd, MiB)
        st = os.fstat(fd)
        assert (st.st_size, st.st_blocks * 512) == (MiB, MiB)
    finally:
        os.close(fd)


def test_commit_lazy_contrast(mount_factory, datapath):
    """commit=lazy (the default): the same growth past the cap succeeds and
    allocates nothing; on the passthrough path a later fault then SIGBUSes
    once the cap is taken, which eager commit is there to prevent."""
    mnt = mount_factory(datapath, options=['size=8m', 'commit=lazy'])
    path = mnt / 'lazy'
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, 16 * MiB)
        st = os.fstat(fd)
        assert (st.st_size, st.st_blocks) == (16 * MiB, 0)
        assert used(mnt.path) == 0
        os.ftruncate(fd, 4 * MiB)
        assert os.fstat(fd).st_blocks == 0
    finally:
        os.close(fd)
    if datapath == 'passthrough':
        assert fill(mnt / 'rest') == 8 * MiB
        got, line = util.fault(path, 'shared', 'write', 2 * MiB)
        assert got == 'SIGBUS', line
