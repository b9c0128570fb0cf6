"""Residency, the user.sectionfs.resident attribute, on both data paths:
the bytes of a section now in memory; for a file-backed section, its
backing file's page cache.
"""

import ctypes
import mmap
import os
import re

import pytest

import util
from util import MiB, PAGE, RESIDENT, drop_cache


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                       ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def page_cache_bytes(path):
    """Bytes of path in the page cache, by mincore(2) over a mapping that
    is never touched (so measuring changes nothing)."""
    size = os.stat(path).st_size
    if size == 0:
        return 0
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), 'mmap')
    finally:
        os.close(fd)
    try:
        pages = (size + PAGE - 1) // PAGE
        vec = ctypes.create_string_buffer(pages)
        if _libc.mincore(addr, size, vec) != 0:
            raise OSError(ctypes.get_errno(), 'mincore')
        return sum(b & 1 for b in vec.raw[:pages]) * PAGE
    finally:
        _libc.munmap(addr, size)


def resident(path):
    value = os.getxattr(path, RESIDENT)
    assert re.fullmatch(rb'[0-9]+', value), value
    return int(value)



def test_resident_page_file(mnt):
    """resident: 0 for a fresh sparse section; grows by about the bytes
    written; rewriting the same bytes adds nothing.  (Under -o
    writeback_cache written bytes reach the section by fsync at the
    latest, so the test syncs before it looks.)"""
    path = mnt / 'r'
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, 8 * MiB)
        r0 = resident(path)
        assert r0 <= 4 * PAGE, r0
        os.pwrite(fd, os.urandom(MiB), 2 * MiB)
        os.fsync(fd)
        r1 = resident(path)
        assert MiB <= r1 - r0 <= MiB + 4 * PAGE, (r0, r1)
        os.pwrite(fd, os.urandom(MiB), 2 * MiB)
        os.fsync(fd)
        assert resident(path) == r1
        os.pwrite(fd, b'y' * (3 * PAGE), 6 * MiB)
        os.fsync(fd)
        r2 = resident(path)
        assert 3 * PAGE <= r2 - r1 <= 5 * PAGE, (r1, r2)
    finally:
        os.close(fd)
    assert resident(path) == r2


@pytest.mark.file_backed
def test_resident_file_backed(mnt, base_dir):
    """A file-backed section's resident is its backing file's page cache:
    it follows the backing file being read (through the mount) and being
    dropped from memory."""
    target = os.path.join(base_dir, 'target')
    size = 4 * MiB
    data = os.urandom(size)
    util.write_file(target, data)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    drop_cache(target)
    if page_cache_bytes(target) > size // 2:
        pytest.skip('the file system under %s keeps %s in memory after '
                    'POSIX_FADV_DONTNEED (tmpfs?)' % (base_dir, target))
    os.symlink(target, mnt / 'fb')
    r0 = resident(mnt / 'fb')
    assert r0 == page_cache_bytes(target), r0
    assert r0 <= size // 2

    assert util.read_file(mnt / 'fb') == data
    r1 = resident(mnt / 'fb')
    assert r1 == page_cache_bytes(target), (r1, page_cache_bytes(target))
    assert r1 >= r0 + size // 2, (r0, r1)

    drop_cache(target)
    r2 = resident(mnt / 'fb')
    assert r2 == page_cache_bytes(target)
    assert r2 <= size // 2, r2
