/*
 * section.c - create, resize and destroy sections.
 *
 * Owns a section's fd, its reference count, its size, seals and times.
 * What its pages count against the cap is cap.c's, which this file asks
 * before every allocation it makes.  It never looks at names or
 * directories (that is the namespace) and never replies to the kernel
 * (that is the request layer); the only kernel state it keeps is the
 * passthrough registration, released when the section dies.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cap.h"
#include "charge.h"
#include "keeper.h"
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

/*
 * A section's fd outlives this server: the keeper holds a copy from
 * before the section is named until it is destroyed (keeper.h).
 */
static int hold(int fd)
{
	return keeper_hold(fd);
}

static void drop(int fd, bool held)
{
	if (held)
		keeper_release(fd);
	close(fd);
}

/* Every section holds an fd: when they run out, say so once per failure. */
static int fd_trouble(int err, const char *what, const char *name)
{
	if (err == -EMFILE || err == -ENFILE)
		log_warn("cannot create %s %s: out of file descriptors (%s)",
			 what, name, strerror(-err));
	return err;
}

int section_create_pagefile(const char *path, uid_t uid, gid_t gid,
			    struct section **out)
{
	struct section *sec;
	int fd, err = cap_count(uid, gid);

	if (err)
		return err;
	fd = store_create(path, uid);
	if (fd < 0) {
		cap_uncount(uid, gid);
		return fd_trouble(fd, "section", path);
	}
	err = hold(fd);
	sec = err ? NULL : section_new(fd, SECTION_PAGEFILE);
	if (!sec) {
		drop(fd, !err);
		cap_uncount(uid, gid);
		return err ? err : -ENOMEM;
	}
	sec->counted = cap_counts_bytes();
	sec->uid = uid;
	sec->gid = gid;
	*out = sec;
	return 0;
}

/* A copy of who that the section owns: its groups exactly, no more. */
static int copy_caller(struct caller *to, const struct caller *who)
{
	*to = *who;
	to->groups = NULL;
	if (who->ngroups <= 0)
		return 0;
	to->groups = malloc(who->ngroups * sizeof(gid_t));
	if (!to->groups)
		return -ENOMEM;
	memcpy(to->groups, who->groups, who->ngroups * sizeof(gid_t));
	return 0;
}

int section_adopt(const struct section_state *st, bool borrowed,
		  struct section **out)
{
	struct section_file *file = NULL;
	struct section *sec;

	if (st->kind == SECTION_FILE) {
		file = calloc(1, sizeof(*file));
		if (!file || !st->path || !st->creator ||
		    !(file->path = strdup(st->path)) ||
		    copy_caller(&file->creator, st->creator)) {
			if (file)
				free(file->path);
			free(file);
			return -ENOMEM;
		}
	}
	sec = section_new(st->fd, st->kind);
	if (!sec) {
		if (file) {
			free(file->path);
			free(file->creator.groups);
		}
		free(file);
		return -ENOMEM;
	}
	sec->writable = st->writable;
	sec->counted = st->counted;
	sec->borrowed = borrowed;
	atomic_store(&sec->backing_id, st->backing_id);
	atomic_store(&sec->seals, st->seals);
	sec->uid = st->uid;
	sec->gid = st->gid;
	sec->file = file;
	*out = sec;
	return 0;
}

int section_create_file(const char *target, dev_t self_dev,
			const struct caller *who, struct section **out)
{
	struct section_file *file;
	struct section *sec = NULL;
	int writable, fd, err = cap_count(who->uid, who->gid);

	/* It holds a descriptor and counts as a section, if no bytes. */
	if (err)
		return err;
	file = calloc(1, sizeof(*file));
	if (!file || copy_caller(&file->creator, who)) {
		free(file);
		cap_uncount(who->uid, who->gid);
		return -ENOMEM;
	}
	fd = backing_open(target, self_dev, who, &writable, &file->path);
	if (fd < 0) {
		free(file->creator.groups);
		free(file);
		cap_uncount(who->uid, who->gid);
		return fd_trouble(fd, "a section over", target);
	}
	err = hold(fd);
	sec = err ? NULL : section_new(fd, SECTION_FILE);
	if (!sec) {
		drop(fd, !err);
		free(file->path);
		free(file->creator.groups);
		free(file);
		cap_uncount(who->uid, who->gid);
		return err ? err : -ENOMEM;
	}
	sec->uid = who->uid;
	sec->gid = who->gid;
	sec->writable = writable;
	sec->file = file;
	*out = sec;
	return 0;
}

int section_io(struct section *sec, int (*fn)(void *), void *arg)
{
	if (sec->kind == SECTION_PAGEFILE)
		return fn(arg);
	return as_creator(&sec->file->creator, -1, fn, arg);
}

void section_get(struct section *sec)
{
	atomic_fetch_add_explicit(&sec->refs, 1, memory_order_relaxed);
}

static void section_destroy(struct section *sec)
{
	if (!sec->borrowed) {
		cap_uncharge(sec);
		pt_backing_close(sec->backing_id);
		drop(sec->fd, true);
	}
	if (sec->file) {
		free(sec->file->path);
		free(sec->file->creator.groups);
		free(sec->file);
	}
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

/* ---- what the cap sees (cap.c) ---- */

size_t section_write_fit(struct section *sec, off_t off, size_t len,
			 struct cap_hold *hold)
{
	return cap_write_fit(sec, off, len, hold);
}

void section_settle(struct section *sec, struct cap_hold *hold)
{
	cap_settle(sec, hold);
}

int section_chown(struct section *sec, uid_t uid, gid_t gid, uid_t by)
{
	return cap_chown(sec, uid, gid, by);
}

/* ---- size and space ---- */

struct truncate_args {
	int fd;
	off_t size;
};

static int truncate_fd(void *arg)
{
	struct truncate_args *a = arg;

	return ftruncate(a->fd, a->size) ? -errno : 0;
}

int section_resize(struct section *sec, off_t size, int eager)
{
	struct truncate_args trunc = { sec->fd, size };
	struct stat st;
	struct cap_hold hold = { 0 };
	int err = 0;

	if (!sec->writable)
		return -EACCES;
	if (eager && sec->kind == SECTION_PAGEFILE && !fstat(sec->fd, &st) &&
	    size > st.st_size) {
		/* Allocate first: on failure shmem undoes it, nothing changed. */
		err = cap_reserve(sec, st.st_size, size - st.st_size, &hold);
		if (!err)
			err = cap_fits_in_memory(sec, &st, size);
		if (!err && fallocate(sec->fd, 0, st.st_size, size - st.st_size))
			err = -errno;
	}
	if (!err)
		err = section_io(sec, truncate_fd, &trunc);
	cap_settle(sec, &hold);
	return cap_errno(sec, err);
}

struct fallocate_args {
	int fd, mode;
	off_t off, len;
	pid_t pid;			/* a store's: who pays, else -1 */
};

static int fallocate_fd(void *arg)
{
	struct fallocate_args *a = arg;

	if (a->pid >= 0)
		return charge_fallocate(a->pid, a->fd, a->mode, a->off,
					a->len);
	return fallocate(a->fd, a->mode, a->off, a->len) ? -errno : 0;
}

int section_fallocate(struct section *sec, int mode, off_t off, off_t len,
		      pid_t pid)
{
	struct fallocate_args alloc = {
		sec->fd, mode, off, len,
		sec->kind == SECTION_PAGEFILE ? pid : -1
	};
	struct cap_hold hold = { 0 };
	int err = 0;

	if (!sec->writable)
		return -EACCES;
	if (cap_blind_past_end(sec, mode, off, len))
		return -EOPNOTSUPP;
	if (!(mode & FALLOC_FL_PUNCH_HOLE))
		err = cap_reserve(sec, off, len, &hold);
	if (!err)
		err = section_io(sec, fallocate_fd, &alloc);
	cap_settle(sec, &hold);
	return cap_errno(sec, err);
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
	size_t pages = (size_t)(((uint64_t)size + PAGE_BYTES - 1) /
				PAGE_BYTES), i;
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
	uint64_t cached;
	struct stat st;

	if (cap_cachestat(sec->fd, 0, 0, &cached, NULL) == 0) {
		*bytes = cached * PAGE_BYTES;
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

static int register_fd(void *arg)
{
	return pt_backing_open(*(int *)arg);
}

/*
 * The kernel keeps the credentials of the thread that registers a
 * backing file and does every passthrough read, write and mmap of it with
 * them.  A backing file is registered as its creator, with CAP_SYS_ADMIN
 * alone (which the registration needs, and which no set-ID, reserved
 * block or quota check looks at): the kernel's I/O is then theirs.
 */
static int backing_open_as_creator(struct section *sec)
{
	if (sec->kind == SECTION_PAGEFILE)
		return pt_backing_open(sec->fd);
	return as_creator(&sec->file->creator, CAP_SYS_ADMIN, register_fd,
			  &sec->fd);
}

int section_backing_id(struct section *sec)
{
	int id = atomic_load(&sec->backing_id);
	int none = 0;

	if (id > 0)
		return id;
	id = backing_open_as_creator(sec);
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
