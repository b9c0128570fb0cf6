"""mmap views of sections, held by separate processes (test/helpers).

MAP_SHARED views of one section see each other's writes and write()s;
MAP_PRIVATE writes stay private; PROT_READ views read and refuse writes;
views outlive the name; views past the end fault like tmpfs.  Every test
runs on both data paths, and views are the same physical pages.
"""

import mmap
import os

import pytest

import util
from util import PAGE, View, fault, pattern, read_file, write_file


def make_section(path, npages, seed=None):
    """A section of npages pages: pattern seed, or zeros."""
    if seed is None:
        write_file(path, b'')
        os.truncate(path, npages * PAGE)
    else:
        write_file(path, pattern(0, npages * PAGE, seed))


def read_at(path, off, length):
    fd = os.open(path, os.O_RDONLY)
    try:
        return util.pread_all(fd, length, off)
    finally:
        os.close(fd)


def test_shared_write_seen_by_other_view_and_read(mnt):
    path = mnt / 'shared'
    make_section(path, 8)
    with View(path, 'shared') as a, View(path, 'shared') as b:
        a.write(100, 5 * PAGE, 11)
        assert b.verify(100, 5 * PAGE, 11).startswith('ok')
        assert b.zero(0, 100).startswith('ok')
        assert b.zero(100 + 5 * PAGE, 3 * PAGE - 100).startswith('ok')
        assert read_at(path, 100, 5 * PAGE) == pattern(100, 5 * PAGE, 11)
        # And back the other way.
        b.write(6 * PAGE, PAGE, 12)
        assert a.verify(6 * PAGE, PAGE, 12).startswith('ok')


def test_write_seen_by_existing_views(mnt):
    path = mnt / 'w2v'
    make_section(path, 4, seed=1)
    with View(path, 'shared') as rw, View(path, 'readonly') as ro:
        assert rw.verify(0, 4 * PAGE, 1).startswith('ok')
        assert ro.verify(0, 4 * PAGE, 1).startswith('ok')
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, pattern(PAGE - 10, 2 * PAGE, 2), PAGE - 10)
        finally:
            os.close(fd)
        assert rw.verify(PAGE - 10, 2 * PAGE, 2).startswith('ok')
        assert ro.verify(PAGE - 10, 2 * PAGE, 2).startswith('ok')
        assert rw.verify(0, PAGE - 10, 1).startswith('ok')


def test_shared_writes_reach_the_section(mnt):
    """What a view wrote is there for later readers, even once the page
    cache of the file is dropped."""
    path = mnt / 'persist'
    make_section(path, 16)
    with View(path, 'shared') as v:
        v.write(0, 16 * PAGE, 3)
        v.msync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert util.pread_all(fd, 16 * PAGE, 0) == pattern(0, 16 * PAGE, 3)
    finally:
        os.close(fd)
    with View(path, 'readonly') as v:
        assert v.verify(0, 16 * PAGE, 3).startswith('ok')


def test_private_writes_stay_private(mnt):
    path = mnt / 'private'
    make_section(path, 4, seed=1)
    with View(path, 'shared') as shared, View(path, 'private') as priv, \
            View(path, 'private') as other:
        priv.write(0, 2 * PAGE, 9)
        assert priv.verify(0, 2 * PAGE, 9).startswith('ok')
        assert shared.verify(0, 4 * PAGE, 1).startswith('ok')
        assert other.verify(0, 4 * PAGE, 1).startswith('ok')
        assert read_at(path, 0, 4 * PAGE) == pattern(0, 4 * PAGE, 1)
    assert read_file(path) == pattern(0, 4 * PAGE, 1)


def test_readonly_view_reads_and_refuses_write(mnt):
    path = mnt / 'ro'
    make_section(path, 2, seed=4)
    with View(path, 'readonly') as v:
        assert v.verify(0, 2 * PAGE, 4).startswith('ok')
    outcome, line = fault(path, 'readonly', 'read', PAGE + 5)
    assert outcome == 'ok', line
    outcome, line = fault(path, 'readonly', 'write', PAGE + 5)
    assert outcome == 'SIGSEGV', line
    assert read_file(path) == pattern(0, 2 * PAGE, 4)
    # The same section mapped shared takes the write.
    outcome, line = fault(path, 'shared', 'write', PAGE + 5)
    assert outcome == 'ok', line
    assert read_file(path) != pattern(0, 2 * PAGE, 4)


def test_python_mmap(mnt):
    path = mnt / 'pymap'
    make_section(path, 2)
    with open(path, 'r+b') as f:
        m = mmap.mmap(f.fileno(), 2 * PAGE)
        try:
            m[10:20] = b'0123456789'
            m.flush()
            assert read_at(path, 10, 10) == b'0123456789'
            # Grow the section, then map the larger size.
            os.ftruncate(f.fileno(), 4 * PAGE)
        finally:
            m.close()
        m = mmap.mmap(f.fileno(), 4 * PAGE)
        try:
            assert m[10:20] == b'0123456789'
            assert m[2 * PAGE:] == bytes(2 * PAGE)
            m[3 * PAGE:3 * PAGE + 3] = b'end'
        finally:
            m.close()
    assert read_file(path)[3 * PAGE:3 * PAGE + 3] == b'end'


def test_unlink_while_open_and_mapped(mnt):
    path = mnt / 'gone'
    make_section(path, 4, seed=5)
    fd = os.open(path, os.O_RDWR)
    try:
        with View(path, 'shared') as v:
            os.unlink(path)
            assert 'gone' not in os.listdir(mnt.path)
            with pytest.raises(FileNotFoundError):
                os.stat(path)
            assert os.fstat(fd).st_nlink == 0
            # Data still there through both, and each sees the other.
            assert v.verify(0, 4 * PAGE, 5).startswith('ok')
            assert util.pread_all(fd, 4 * PAGE, 0) == pattern(0, 4 * PAGE, 5)
            v.write(0, PAGE, 6)
            assert os.pread(fd, PAGE, 0) == pattern(0, PAGE, 6)
            os.pwrite(fd, pattern(PAGE, PAGE, 7), PAGE)
            assert v.verify(PAGE, PAGE, 7).startswith('ok')
            # The name is free for a new, empty section.
            write_file(path, b'new')
            assert read_file(path) == b'new'
            os.close(fd)
            fd = -1
            # Only the view holds the old section now.
            assert v.verify(2 * PAGE, 2 * PAGE, 5).startswith('ok')
            v.write(2 * PAGE, PAGE, 8)
            assert v.verify(2 * PAGE, PAGE, 8).startswith('ok')
    finally:
        if fd >= 0:
            os.close(fd)
    assert read_file(path) == b'new'


def test_unlink_while_open(mnt):
    path = mnt / 'open'
    write_file(path, b'')
    fd = os.open(path, os.O_RDWR)
    try:
        os.write(fd, pattern(0, 3 * PAGE, 2))
        os.unlink(path)
        assert not os.path.exists(path)
        assert os.fstat(fd).st_nlink == 0
        os.pwrite(fd, b'more', 3 * PAGE)
        assert os.fstat(fd).st_size == 3 * PAGE + 4
        assert util.pread_all(fd, 3 * PAGE + 4, 0) == \
            pattern(0, 3 * PAGE, 2) + b'more'
        os.ftruncate(fd, PAGE)
        assert util.pread_all(fd, 2 * PAGE, 0) == pattern(0, PAGE, 2)
    finally:
        os.close(fd)
    assert os.listdir(mnt.path) == []


def test_view_past_end_faults(mnt):
    """As on tmpfs: touching a view beyond the end of the section's last
    page is SIGBUS, within the last page reads zeros."""
    path = mnt / 'end'
    write_file(path, pattern(0, PAGE + 10, 1))
    outcome, line = fault(path, 'shared', 'read', PAGE + 100, 4 * PAGE)
    assert outcome == 'ok', line
    outcome, line = fault(path, 'shared', 'read', 3 * PAGE, 4 * PAGE)
    assert outcome == 'SIGBUS', line
    outcome, line = fault(path, 'shared', 'write', 2 * PAGE, 4 * PAGE)
    assert outcome == 'SIGBUS', line
    # After a shrink the cut pages fault too.
    os.truncate(path, 10)
    outcome, line = fault(path, 'readonly', 'read', PAGE + 5, 2 * PAGE)
    assert outcome == 'SIGBUS', line
    assert os.stat(path).st_size == 10


def test_truncate_seen_by_views(mnt):
    path = mnt / 'tv'
    make_section(path, 4, seed=3)
    with View(path, 'shared') as v:
        os.truncate(path, 2 * PAGE)
        os.truncate(path, 4 * PAGE)
        assert v.verify(0, 2 * PAGE, 3).startswith('ok')
        assert v.zero(2 * PAGE, 2 * PAGE).startswith('ok')
        v.write(3 * PAGE, PAGE, 4)
    assert read_file(path) == pattern(0, 2 * PAGE, 3) + bytes(PAGE) + \
        pattern(3 * PAGE, PAGE, 4)


@pytest.mark.kernel_passthrough
@pytest.mark.root
def test_two_views_are_the_same_pages(mnt):
    """Two processes mapping one section share physical pages
    (PFNs from /proc/self/pagemap, readable as root)."""
    path = mnt / 'pfn'
    make_section(path, 4, seed=1)
    with View(path, 'shared') as a, View(path, 'readonly') as b:
        for page in range(4):
            pa = a.pfn(page * PAGE)
            pb = b.pfn(page * PAGE)
            assert pa != 0
            assert pa == pb, 'page %d: %#x vs %#x' % (page, pa, pb)
