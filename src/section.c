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
#include <sys/stat.h>
#include <unistd.h>

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

int section_create_pagefile(const char *path, struct section **out)
{
	struct section *sec;
	int fd = store_create(path);

	if (fd < 0)
		return fd;
	sec = section_new(fd, SECTION_PAGEFILE);
	if (!sec) {
		close(fd);
		return -ENOMEM;
	}
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
		return fd;
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

int section_resize(struct section *sec, off_t size)
{
	if (!sec->writable)
		return -EACCES;
	return ftruncate(sec->fd, size) ? -errno : 0;
}

int section_fallocate(struct section *sec, int mode, off_t off, off_t len)
{
	if (!sec->writable)
		return -EACCES;
	return fallocate(sec->fd, mode, off, len) ? -errno : 0;
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
