/*
 * cap.c - a section's pages counted against the mount's cap.
 *
 * Owns the arithmetic of the counted store: what an allocation of a range
 * of a section would add (cachestat(2), or SEEK_DATA and the file's
 * blocks on older kernels), reserving it from the store's free bytes
 * before the allocation, and settling each section's charge against what
 * the kernel really allocated after it.  The store keeps the mount's
 * total (store_reserve, store_charge); each section keeps its own charge.
 * It never allocates, writes or resizes a section's file (section.c and
 * the data path do), and a reservation always ends in cap_settle().
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cap.h"
#include "section.h"
#include "store.h"

/* In uint64_t: a write may end within a page of OFF_MAX, where rounding
 * up in off_t would overflow. */
static uint64_t page_down(uint64_t off)
{
	return off & ~(uint64_t)(PAGE_BYTES - 1);
}

static uint64_t page_up(uint64_t off)
{
	return page_down(off + PAGE_BYTES - 1);
}

/* cachestat(2), Linux 6.5: a file's pages in a range, without mapping it. */
struct cachestat_range { uint64_t off, len; };
struct cachestat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted,
		 nr_recently_evicted;
};
#ifndef SYS_cachestat
#define SYS_cachestat 451
#endif

/* A len of 0 means "to the end of the file". */
static int cachestat_of(int fd, uint64_t off, uint64_t len,
			struct cachestat *cs)
{
	struct cachestat_range range = { off, len };

	return syscall(SYS_cachestat, fd, &range, cs, 0) ? -errno : 0;
}

int cap_cachestat(int fd, uint64_t off, uint64_t len, uint64_t *cached,
		  uint64_t *evicted)
{
	struct cachestat cs;
	int err = cachestat_of(fd, off, len, &cs);

	if (err)
		return err;
	if (cached)
		*cached = cs.nr_cache;
	if (evicted)
		*evicted = cs.nr_evicted;
	return 0;
}

/*
 * Bytes of the pages [first, last) the store holds neither in memory nor
 * in swap: what writing them would allocate.  cachestat counts a shmem
 * file's swapped-out pages as evicted, and its fallocated pages as
 * cached.  -ENOSYS before Linux 6.5.
 */
static int64_t unheld_bytes(int fd, uint64_t first, uint64_t last)
{
	struct cachestat cs;
	uint64_t held;
	int err;

	if (last == first)
		return 0;
	err = cachestat_of(fd, first, last - first, &cs);
	if (err)
		return err;
	held = (cs.nr_cache + cs.nr_evicted) * PAGE_BYTES;
	return held < last - first ? (int64_t)(last - first - held) : 0;
}

/* Bytes of the pages [pos, end) that SEEK_DATA calls holes. */
static int64_t hole_bytes(int fd, uint64_t pos, uint64_t end)
{
	int64_t holes = 0;
	uint64_t next;
	off_t found;

	while (pos < end) {
		found = lseek(fd, (off_t)pos, SEEK_DATA);
		if (found < 0 && errno != ENXIO)
			return -errno;
		next = found < 0 || (uint64_t)found > end ? end : (uint64_t)found;
		holes += (int64_t)(next - pos);
		if (next >= end)
			break;
		found = lseek(fd, (off_t)next, SEEK_HOLE);
		if (found < 0)
			return -errno;
		pos = (uint64_t)found;
	}
	return holes;
}

/*
 * What writing [off, end) would allocate, in whole pages.  Without
 * cachestat, SEEK_DATA calls pages that were fallocated but never
 * written holes, so the estimate is bounded by what the section could
 * still allocate at all: every page up to its new end, less what it
 * holds.  That bound is only sound while no page lies past the end,
 * which such a section ensures by refusing fallocate past its end with
 * FALLOC_FL_KEEP_SIZE (cap_blind_past_end()).
 */
static int64_t bytes_to_allocate(int fd, const struct stat *st, uint64_t off,
				 uint64_t end)
{
	uint64_t first = page_down(off), last = page_up(end), held, room;
	int64_t need = unheld_bytes(fd, first, last);

	if (need != -ENOSYS)
		return need;
	need = hole_bytes(fd, first, last);
	if (need <= 0)
		return need;
	held = (uint64_t)st->st_blocks * 512;
	room = page_up(end > (uint64_t)st->st_size ? end :
		       (uint64_t)st->st_size);
	room = room > held ? room - held : 0;
	return (uint64_t)need > room ? (int64_t)room : need;
}

/* What the kernel says the store holds for the section. */
static int64_t allocated(struct section *sec)
{
	struct stat st;

	return fstat(sec->fd, &st) ? -1 : (int64_t)st.st_blocks * 512;
}

void cap_settle(struct section *sec, int64_t reserved)
{
	int64_t now, before;

	if (!sec->counted)
		return;
	now = allocated(sec);
	if (now >= 0) {
		before = atomic_exchange(&sec->charged, now);
		store_charge(now - before);
	}
	store_charge(-reserved);
}

int cap_reserve(struct section *sec, off_t off, off_t len, int64_t *reserved)
{
	struct stat st;
	int64_t need;
	int err;

	*reserved = 0;
	if (!sec->counted)
		return 0;
	if (fstat(sec->fd, &st))
		return -errno;
	need = bytes_to_allocate(sec->fd, &st, (uint64_t)off,
				 (uint64_t)off + (uint64_t)len);
	if (need <= 0)
		return (int)need;
	err = store_reserve(need);
	if (!err)
		*reserved = need;
	return err;
}

size_t cap_write_fit(struct section *sec, off_t off, size_t len,
		     int64_t *reserved)
{
	size_t fit = len;

	/* Halve (on page boundaries) until the rest fits: a short write is
	 * retried by its caller, which so fills the cap to the page. */
	while (cap_reserve(sec, off, (off_t)fit, reserved)) {
		size_t half = (size_t)(page_down((uint64_t)off + fit / 2) -
				       (uint64_t)off);

		if (half == 0 || half >= fit)
			return 0;
		fit = half;
	}
	return fit;
}

/*
 * Without a cap, whether an eager commit of [st_size, size) fits in what
 * the machine has left.  shmem would allocate page after page until the
 * kernel's OOM killer struck, and it picks by resident memory, which a
 * memfd nobody maps is not: some other process would die.  A check, not
 * an account: two commits at once may each fit alone.
 */
int cap_fits_in_memory(struct section *sec, const struct stat *st,
		       off_t size)
{
	uint64_t total, avail;
	int64_t need;

	if (sec->counted)
		return 0;	/* cap_reserve() holds it to the cap */
	need = bytes_to_allocate(sec->fd, st, (uint64_t)st->st_size,
				 (uint64_t)size);
	if (need <= 0 || store_space(&total, &avail))
		return need < 0 ? (int)need : 0;
	return (uint64_t)need > avail ? -ENOSPC : 0;
}

/* Without cachestat, bytes_to_allocate() cannot see pages past the end. */
bool cap_blind_past_end(struct section *sec, int mode, off_t off, off_t len)
{
	struct stat st;

	if (!sec->counted || !(mode & FALLOC_FL_KEEP_SIZE) ||
	    (mode & FALLOC_FL_PUNCH_HOLE) ||
	    cap_cachestat(sec->fd, 0, PAGE_BYTES, NULL, NULL) != -ENOSYS)
		return 0;
	return !fstat(sec->fd, &st) && off + len > st.st_size;
}

void cap_uncharge(struct section *sec)
{
	if (sec->counted)
		store_charge(-atomic_load(&sec->charged));
}
