"""Seals, the user.sectionfs.seals attribute, on both data paths, as README
and sectionfs(8) state them.

grow, shrink, write; only added; canonical order; EBUSY for write under a
writable shared view (passthrough) or a writer (cached); ENODATA and
EOPNOTSUPP for file-backed sections; "" and EOPNOTSUPP on the capped tmpfs
store of a passthrough mount.
"""

import mmap
import os
import threading

import pytest

import util
from util import (CREATORS, MiB, PAGE, SEALS, View, make_section, outcome)



def test_seals_empty_at_first(mnt):
    for creator in CREATORS:
        path = mnt / creator
        make_section(path, b'x', how=creator)
        assert os.getxattr(path, SEALS) == b''
        assert SEALS in os.listxattr(path)


def test_seal_grow(mnt):
    """grow: writes past the end and truncation up are EPERM; writes
    within the size and truncation down are fine."""
    path = mnt / 'g'
    data = os.urandom(3 * PAGE)
    make_section(path, data)
    os.setxattr(path, SEALS, b'grow')
    assert os.getxattr(path, SEALS) == b'grow'
    fd = os.open(path, os.O_RDWR)
    try:
        assert outcome(os.pwrite, fd, b'past', 3 * PAGE) == 'EPERM'
        assert outcome(os.pwrite, fd, b'far', 100 * PAGE) == 'EPERM'
        assert outcome(os.ftruncate, fd, 4 * PAGE) == 'EPERM'
        assert os.fstat(fd).st_size == 3 * PAGE
        assert os.pwrite(fd, b'inside', PAGE) == 6
        os.ftruncate(fd, 2 * PAGE)
        assert os.fstat(fd).st_size == 2 * PAGE
    finally:
        os.close(fd)
    assert outcome(os.truncate, path, 3 * PAGE) == 'EPERM'
    want = data[:PAGE] + b'inside' + data[PAGE + 6:2 * PAGE]
    assert util.read_file(path) == want


def test_seal_shrink(mnt):
    """shrink: truncation down is EPERM; growth is fine."""
    path = mnt / 's'
    data = os.urandom(2 * PAGE)
    make_section(path, data)
    os.setxattr(path, SEALS, b'shrink')
    assert outcome(os.truncate, path, PAGE) == 'EPERM'
    assert outcome(os.truncate, path, 0) == 'EPERM'
    fd = os.open(path, os.O_RDWR)
    try:
        assert outcome(os.ftruncate, fd, 10) == 'EPERM'
        assert os.fstat(fd).st_size == 2 * PAGE
        assert os.pwrite(fd, b'more', 2 * PAGE) == 4
        os.ftruncate(fd, 4 * PAGE)
    finally:
        os.close(fd)
    assert util.read_file(path) == data + b'more' + bytes(2 * PAGE - 4)
    assert os.getxattr(path, SEALS) == b'shrink'


def test_seal_write(mnt):
    """write: the section cannot be opened for writing any more (EPERM, on
    both paths: the daemon cannot see the kernel's views, so refusing
    writers is how no writable view can slip past the seal), and the data
    stays as it was."""
    path = mnt / 'w'
    data = os.urandom(2 * PAGE + 7)
    make_section(path, data)
    os.setxattr(path, SEALS, b'write')
    assert os.getxattr(path, SEALS) == b'write'
    assert outcome(os.open, path, os.O_WRONLY) == 'EPERM'
    assert outcome(os.open, path, os.O_RDWR) == 'EPERM'
    with open(path, 'rb') as f:      # reading is unaffected
        assert f.read() == data
    got, line = util.fault(path, 'readonly', 'read', PAGE)
    assert got == 'ok', line
    assert util.read_file(path) == data


def test_seal_write_refuses_new_writable_shared_view(mnt):
    """A write-sealed section cannot get a new writable shared mapping:
    the attempt fails (at open or mmap), no byte changes.  MAP_PRIVATE
    copy-on-write views stay possible and change nothing either."""
    path = mnt / 'w'
    data = util.pattern(0, 2 * PAGE, 4)
    make_section(path, data)
    os.setxattr(path, SEALS, b'write')
    got, line = util.fault(path, 'shared', 'write', 0)
    assert got == 'setup error', \
        'a writable shared view of a write-sealed section: %s; the ' \
        'section now %s' % (line, 'is unchanged' if util.read_file(path)
                            == data else 'differs from what was sealed')
    assert 'Operation not permitted' in line, line
    got, line = util.fault(path, 'private', 'write', 0)
    assert got == 'ok', line
    assert util.read_file(path) == data


def test_seals_canonical_order_and_only_added(mnt):
    path = mnt / 'c'
    make_section(path, b'data')
    assert outcome(os.setxattr, path, SEALS, b'') == 'ok'   # none to none
    assert os.getxattr(path, SEALS) == b''
    os.setxattr(path, SEALS, b'shrink')
    assert os.getxattr(path, SEALS) == b'shrink'
    os.setxattr(path, SEALS, b'write,shrink')
    assert os.getxattr(path, SEALS) == b'shrink,write'
    # Removing one (a list that omits a seal already set) is EPERM.
    for omits in (b'', b'write', b'shrink', b'grow,write', b'grow'):
        assert outcome(os.setxattr, path, SEALS, omits) == 'EPERM', omits
        assert os.getxattr(path, SEALS) == b'shrink,write'
    os.setxattr(path, SEALS, b'write,grow,shrink,grow')
    assert os.getxattr(path, SEALS) == b'grow,shrink,write'
    os.setxattr(path, SEALS, b'shrink,write,grow')      # nothing new: fine
    assert os.getxattr(path, SEALS) == b'grow,shrink,write'
    assert outcome(os.removexattr, path, SEALS) == 'EPERM'
    assert os.getxattr(path, SEALS) == b'grow,shrink,write'


BAD_SEALS = [b'frozen', b'grow,', b',grow', b'grow,,shrink', b'GROW',
             b'grow shrink', b'grow\0', b'grow,seal', b',']


def test_seals_bad_values(mnt):
    path = mnt / 'b'
    make_section(path, b'data')
    for bad in BAD_SEALS:
        assert outcome(os.setxattr, path, SEALS, bad) == 'EINVAL', bad
    assert os.getxattr(path, SEALS) == b''
    os.setxattr(path, SEALS, b'grow')
    for bad in BAD_SEALS:
        assert outcome(os.setxattr, path, SEALS, bad) == 'EINVAL', bad
    assert os.getxattr(path, SEALS) == b'grow'
    # No seal slipped in: shrinking and overwriting still work.
    os.truncate(path, 2)
    util.write_file(path, b'ok', 'r+b')
    assert util.read_file(path) == b'ok'


@pytest.mark.parametrize('creator', CREATORS)
def test_seal_write_busy(mount_factory, datapath, creator):
    """write while another process holds a writable shared view is EBUSY
    (memfd's rule) on both paths; on the cached path also while the
    section is open for writing.  Once they are gone, it can be set; a
    read-only view is no obstacle."""
    mnt = mount_factory(datapath)
    path = mnt / 'busy'
    make_section(path, util.pattern(0, 2 * PAGE, 5), how=creator)
    with View(path, 'shared') as v:
        assert outcome(os.setxattr, path, SEALS, b'write') == 'EBUSY', \
            'write seal set under a writable shared view (section made ' \
            'by %s)' % creator
        assert os.getxattr(path, SEALS) == b''
        v.write(0, PAGE, 6)
        v.msync()
    if datapath == 'cached':
        fd = os.open(path, os.O_WRONLY)
        try:
            assert outcome(os.setxattr, path, SEALS, b'write') == 'EBUSY', \
                'write seal set under an open writer (cached path)'
        finally:
            os.close(fd)
    with View(path, 'readonly') as v:
        # The writers' RELEASEs are asynchronous: poll for the seal.
        assert util.wait_for(lambda: outcome(os.setxattr, path, SEALS,
                                             b'write') == 'ok'), \
            'write seal still refused after every writer went: %s' % \
            outcome(os.setxattr, path, SEALS, b'write')
        assert v.verify(0, PAGE, 6).startswith('ok')
    assert os.getxattr(path, SEALS) == b'write'
    assert util.read_file(path) == util.pattern(0, PAGE, 6) + \
        util.pattern(PAGE, PAGE, 5)


def race_write_seal(path):
    """Seal path's section for writing while a thread keeps opening it for
    writing and storing a byte through a shared view, a moment after the
    open; returns the errors msync reported for views of handles that
    were opened.  Views, since a write(2) would wait for the kernel's
    inode lock, which the setxattr holds, and so keep in step with it."""
    stop = threading.Event()
    opened, refused_opens, refused_writes = [0], [0], []

    def writer():
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_RDWR)
            except PermissionError:
                refused_opens[0] += 1
                stop.wait(0.001)
                continue
            opened[0] += 1
            try:
                stop.wait(0.004)
                with mmap.mmap(fd, PAGE, mmap.MAP_SHARED) as view:
                    view[0:1] = b'w'
                    view.flush()
            except OSError as e:
                refused_writes.append(util.errno_name(e))
            finally:
                os.close(fd)
            stop.wait(0.002)     # a moment without writers, for the seal

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert util.wait_for(lambda: opened[0] > 0)
        assert util.wait_for(lambda: outcome(os.setxattr, path, SEALS,
                                             b'write') == 'ok'), \
            'write seal never found the section without writers'
        assert util.wait_for(lambda: refused_opens[0] > 0)
    finally:
        stop.set()
        thread.join()
    return refused_writes


def test_seal_write_racing_writers(mount_factory):
    """Cached path: a write seal made while another thread keeps opening
    the section for writing.  Each open comes either before the seal,
    which then waits for its writer or is EBUSY, or after it, and is
    refused (EPERM): never is a handle opened for writing whose writes the
    seal then refuses.  Each section holds 512 MiB, so that making the
    seal (memfd looks at every page) takes long enough for opens to
    arrive while it is made."""
    mnt = mount_factory('cached')
    for i in range(4):
        path = mnt / ('race%d' % i)
        make_section(path)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, 512 * MiB)
        finally:
            os.close(fd)
        refused_writes = race_write_seal(path)
        assert refused_writes == [], \
            'opened for writing, then the write refused: %s' % refused_writes
        assert os.getxattr(path, SEALS) == b'write'
        fd = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(fd, 2, 0) == b'w\0'
        finally:
            os.close(fd)
        os.unlink(path)


@pytest.mark.file_backed
def test_seals_file_backed(mnt, base_dir):
    """File-backed sections have no seals: get ENODATA, set EOPNOTSUPP,
    not listed, and writes still work."""
    target = os.path.join(base_dir, 'target')
    util.write_file(target, b'file-backed')
    os.symlink(target, mnt / 'fb')
    assert outcome(os.getxattr, mnt / 'fb', SEALS) == 'ENODATA'
    for value in (b'grow', b'write', b''):
        assert outcome(os.setxattr, mnt / 'fb', SEALS, value) \
            == 'EOPNOTSUPP', value
    assert SEALS not in os.listxattr(mnt / 'fb')
    util.write_file(mnt / 'fb', b'FILE', 'r+b')
    with open(mnt / 'fb', 'ab') as f:
        f.write(b' grown')
    assert util.read_file(target) == b'FILE-backed grown'


def test_seals_with_size_cap(mount_factory, datapath):
    """With size=, the passthrough store is a private tmpfs, which cannot
    seal: get '' and set EOPNOTSUPP, and nothing is sealed.  The cached
    path keeps memfds under a cap the daemon counts, so seals work."""
    mnt = mount_factory(datapath, options=['size=4m'])
    path = mnt / 'capped'
    make_section(path, b'capped')
    assert os.getxattr(path, SEALS) == b''
    if datapath == 'passthrough':
        for value in (b'grow', b'write', b'shrink,grow'):
            assert outcome(os.setxattr, path, SEALS, value) \
                == 'EOPNOTSUPP', value
        assert os.getxattr(path, SEALS) == b''
        with open(path, 'ab') as f:
            f.write(b' and grown')
        assert util.read_file(path) == b'capped and grown'
    else:
        os.setxattr(path, SEALS, b'grow')
        assert os.getxattr(path, SEALS) == b'grow'
        fd = os.open(path, os.O_WRONLY)
        try:
            assert outcome(os.pwrite, fd, b'x', 6) == 'EPERM'
        finally:
            os.close(fd)
        assert util.read_file(path) == b'capped'
