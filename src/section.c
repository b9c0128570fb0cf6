/*
 * section.c - create, resize and destroy sections.
 *
 * Owns a section's fd and its reference count.  It never looks at names
 * or directories (that is the namespace) and never replies to the kernel
 * (that is the request layer); the only kernel state it keeps is the
 * passthrough registration, released when the section dies.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "passthrough.h"
#include "section.h"
#include "store.h"

static struct section *section_new(int fd, enum section_kind kind)
{
	struct section *sec = calloc(1, sizeof(*sec));

	if (!sec)
		return NULL;
	sec->fd = fd;
	sec->kind = kind;
	sec->writable = 1;
	atomic_init(&sec->refs, 1);
	return sec;
}

/* Every section holds an fd: when they run out, say so once per failure. */
static int fd_trouble(int err, const char *what, const char *name)
{
	if (err == -EMFILE || err == -ENFILE)
		log_warn("cannot create %s %s: out of file descriptors (%s)",
			 what, name, strerror(-err));
	return err;
}

int section_create_pagefile(const char *path, struct section **out)
{
	struct section *sec;
	int fd = store_create(path);

	if (fd < 0)
		return fd_trouble(fd, "section", path);
	sec = section_new(fd, SECTION_PAGEFILE);
	if (!sec) {
		close(fd);
		return -ENOMEM;
	}
	sec->counted = store_counts();
	*out = sec;
	return 0;
}

int section_create_file(const char *target, dev_t self_dev,
			const struct caller *who, struct section **out)
{
	struct section *sec;
	char *path;
	int writable;
	int fd = backing_open(target, self_dev, who, &writable, &path);

	if (fd < 0)
		return fd_trouble(fd, "a section over", target);
	sec = section_new(fd, SECTION_FILE);
	if (!sec) {
		close(fd);
		free(path);
		return -ENOMEM;
	}
	sec->writable = writable;
	sec->backing_path = path;
	*out = sec;
	return 0;
}

void section_get(struct section *sec)
{
	atomic_fetch_add_explicit(&sec->refs, 1, memory_order_relaxed);
}

static void section_destroy(struct section *sec)
{
	if (sec->counted)
		store_charge(-atomic_load(&sec->charged));
	pt_backing_close(sec->backing_id);
	close(sec->fd);
	free(sec->backing_path);
	free(sec);
}

void section_put(struct section *sec)
{
	if (atomic_fetch_sub_explicit(&sec->refs, 1, memory_order_acq_rel) == 1)
		section_destroy(sec);
}

int section_stat(struct section *sec, struct stat *st)
{
	return fstat(sec->fd, st) ? -errno : 0;
}

/* ---- counting against a cap ---- */

#define PAGE_BYTES 4096

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
 * FALLOC_FL_KEEP_SIZE (section_fallocate()).
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

void section_settle(struct section *sec, int64_t reserved)
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

/* Reserve the memory [off, off + len) still needs; -ENOSPC if it won't
 * fit. */
static int reserve_range(struct section *sec, off_t off, off_t len,
			 int64_t *reserved)
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

size_t section_write_fit(struct section *sec, off_t off, size_t len,
			 int64_t *reserved)
{
	size_t fit = len;

	/* Halve (on page boundaries) until the rest fits: a short write is
	 * retried by its caller, which so fills the cap to the page. */
	while (reserve_range(sec, off, (off_t)fit, reserved)) {
		size_t half = (size_t)(page_down((uint64_t)off + fit / 2) -
				       (uint64_t)off);

		if (half == 0 || half >= fit)
			return 0;
		fit = half;
	}
	return fit;
}

/* ---- size and space ---- */

/*
 * Without a cap, whether an eager commit of [st_size, size) fits in what
 * the machine has left.  shmem would allocate page after page until the
 * kernel's OOM killer struck, and it picks by resident memory, which a
 * memfd nobody maps is not: some other process would die.  A check, not
 * an account: two commits at once may each fit alone.
 */
static int fits_in_memory(struct section *sec, const struct stat *st,
			  off_t size)
{
	uint64_t total, avail;
	int64_t need;

	if (sec->counted)
		return 0;	/* reserve_range() holds it to the cap */
	need = bytes_to_allocate(sec->fd, st, (uint64_t)st->st_size,
				 (uint64_t)size);
	if (need <= 0 || store_space(&total, &avail))
		return need < 0 ? (int)need : 0;
	return (uint64_t)need > avail ? -ENOSPC : 0;
}

int section_resize(struct section *sec, off_t size, int eager)
{
	struct stat st;
	int64_t reserved = 0;
	int err = 0;

	if (!sec->writable)
		return -EACCES;
	if (eager && sec->kind == SECTION_PAGEFILE && !fstat(sec->fd, &st) &&
	    size > st.st_size) {
		/* Allocate first: on failure shmem undoes it, nothing changed. */
		err = reserve_range(sec, st.st_size, size - st.st_size, &reserved);
		if (!err)
			err = fits_in_memory(sec, &st, size);
		if (!err && fallocate(sec->fd, 0, st.st_size, size - st.st_size))
			err = -errno;
	}
	if (!err && ftruncate(sec->fd, size))
		err = -errno;
	section_settle(sec, reserved);
	return err;
}

/* Without cachestat, bytes_to_allocate() cannot see pages past the end. */
static int keeps_pages_past_end(struct section *sec, int mode, off_t off,
				off_t len)
{
	struct cachestat cs;
	struct stat st;

	if (!sec->counted || !(mode & FALLOC_FL_KEEP_SIZE) ||
	    (mode & FALLOC_FL_PUNCH_HOLE) ||
	    cachestat_of(sec->fd, 0, PAGE_BYTES, &cs) != -ENOSYS)
		return 0;
	return !fstat(sec->fd, &st) && off + len > st.st_size;
}

int section_fallocate(struct section *sec, int mode, off_t off, off_t len)
{
	int64_t reserved = 0;
	int err = 0;

	if (!sec->writable)
		return -EACCES;
	if (keeps_pages_past_end(sec, mode, off, len))
		return -EOPNOTSUPP;
	if (!(mode & FALLOC_FL_PUNCH_HOLE))
		err = reserve_range(sec, off, len, &reserved);
	if (!err && fallocate(sec->fd, mode, off, len))
		err = -errno;
	section_settle(sec, reserved);
	return err;
}

/* ---- seals and residency ---- */

int section_seals(struct section *sec, unsigned int *seals)
{
	int res;

	if (sec->kind != SECTION_PAGEFILE || !store_can_seal())
		return -EOPNOTSUPP;
	res = fcntl(sec->fd, F_GET_SEALS);
	if (res < 0)
		return -errno;
	*seals = (unsigned int)res;
	return 0;
}

int section_add_seals(struct section *sec, unsigned int seals)
{
	if (sec->kind != SECTION_PAGEFILE || !store_can_seal())
		return -EOPNOTSUPP;
	if (fcntl(sec->fd, F_ADD_SEALS, seals))
		return -errno;
	atomic_fetch_or(&sec->seals, seals);
	return 0;
}

/* Older kernels: map the file and ask mincore(2) page by page. */
static int resident_mincore(int fd, off_t size, uint64_t *bytes)
{
	size_t pages = (size_t)(page_up(size) / PAGE_BYTES), i;
	unsigned char *vec;
	void *map;
	int err = 0;

	*bytes = 0;
	if (!size)
		return 0;
	map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	vec = malloc(pages);
	if (!vec)
		err = -ENOMEM;
	else if (mincore(map, (size_t)size, vec))
		err = -errno;
	for (i = 0; !err && i < pages; i++)
		*bytes += (vec[i] & 1) ? PAGE_BYTES : 0;
	free(vec);
	munmap(map, (size_t)size);
	return err;
}

int section_resident(struct section *sec, uint64_t *bytes)
{
	struct cachestat cs;
	struct stat st;

	if (cachestat_of(sec->fd, 0, 0, &cs) == 0) {
		*bytes = cs.nr_cache * PAGE_BYTES;
		return 0;
	}
	if (fstat(sec->fd, &st))
		return -errno;
	return resident_mincore(sec->fd, st.st_size, bytes);
}

struct times_args {
	int fd;
	const struct timespec *times;
};

static int set_times(void *arg)
{
	struct times_args *a = arg;

	return futimens(a->fd, a->times) ? -errno : 0;
}

int section_set_times(struct section *sec, const struct timespec times[2],
		      const struct caller *who)
{
	struct times_args a = { sec->fd, times };

	if (sec->kind == SECTION_FILE)
		return as_caller(who, set_times, &a);
	return set_times(&a);
}

int section_sync(struct section *sec, int datasync)
{
	if (sec->kind == SECTION_PAGEFILE)
		return 0;
	return (datasync ? fdatasync(sec->fd) : fsync(sec->fd)) ? -errno : 0;
}

int section_backing_id(struct section *sec)
{
	int id = atomic_load(&sec->backing_id);
	int none = 0;

	if (id > 0)
		return id;
	id = pt_backing_open(sec->fd);
	if (id <= 0)
		return id;
	/* Two first opens may race: the loser releases its id. */
	if (!atomic_compare_exchange_strong(&sec->backing_id, &none, id)) {
		pt_backing_close(id);
		id = none;
	}
	return id;
}

off_t section_seek(struct section *sec, off_t off, int whence)
{
	off_t res = lseek(sec->fd, off, whence);

	return res < 0 ? -errno : res;
}
