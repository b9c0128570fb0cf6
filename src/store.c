/*
 * store.c - memfd and private-tmpfs stores for page-file-backed sections.
 *
 * Owns the choice of backend, how a store file comes to be and what it is
 * called, each owner's private tmpfs when they have one, the count of
 * bytes the daemon holds against a cap (symbolic links' pages included),
 * and how much room each backend has left.  It does not know what a
 * section is or how its bytes are reached.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "keeper.h"
#include "log.h"
#include "privilege.h"
#include "store.h"

/* memfd names are limited to NAME_MAX minus the "memfd:" prefix. */
#define STORE_NAME_MAX	249
#define STORE_PREFIX	"sectionfs:"

enum backend { BACKEND_MEMFD, BACKEND_COUNTED, BACKEND_TMPFS, BACKEND_OWNERS };

/* Owners backend: one uid's private tmpfs. */
struct owner_store {
	struct owner_store *next;	/* store.lock */
	uid_t uid;			/* immutable */
	int mnt_fd;			/* immutable */
};

static struct {
	enum backend backend;	/* set once by store_init */
	uint64_t cap;		/* bytes; 0 = none; owners: per owner */
	atomic_int_fast64_t used; /* counted backend: bytes charged */
	int mnt_fd;		/* tmpfs backend: the detached mount */
	pthread_mutex_t lock;	/* the owners' list, the ballast */
	struct owner_store *owners; /* store.lock; only ever grows */
	atomic_uint nmounts;	/* descriptors of private mounts */
	int ballast;		/* tmpfs backend: holds store_take()'s
				   pages; store.lock */
	uint64_t ballast_len;	/* bytes it holds; store.lock */
} store = { .mnt_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER,
	    .ballast = -1 };

/* A private tmpfs of cap bytes, in no mount table, owned by this fd. */
static int tmpfs_mount(uint64_t cap)
{
	char size[32];
	int fs, mnt = -1;

	fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
	if (fs < 0)
		return -errno;
	snprintf(size, sizeof(size), "%" PRIu64, cap);
	if (fsconfig(fs, FSCONFIG_SET_STRING, "size", size, 0) ||
	    fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0700", 0) ||
	    fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0))
		goto out;
	mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC |
		      MOUNT_ATTR_NOSUID);
out:
	if (mnt < 0)
		mnt = -errno;
	close(fs);
	/* A successor makes its files in the same mount, under one cap. */
	if (mnt >= 0) {
		int err = keeper_hold(mnt);

		if (err) {
			close(mnt);
			mnt = err;
		}
	}
	return mnt;
}

int store_init(uint64_t cap, uint64_t user_cap, bool passthrough)
{
	store.cap = cap;
	if (user_cap && passthrough) {
		/* Passthrough writes never reach the daemon: the kernel of
		 * each owner's store holds them to the limit. */
		if (!privilege_sys_admin()) {
			log_err("usrquota_block_hardlimit with passthrough needs CAP_SYS_ADMIN for private tmpfs stores");
			return -EPERM;
		}
		store.cap = user_cap;
		store.backend = BACKEND_OWNERS;
		return 0;
	}
	if (!cap) {
		store.backend = BACKEND_MEMFD;
		return 0;
	}
	if (!passthrough) {
		store.backend = BACKEND_COUNTED;
		return 0;
	}
	/* Passthrough writes never reach the daemon: the kernel must count. */
	if (!privilege_sys_admin()) {
		log_err("size= with passthrough needs CAP_SYS_ADMIN for a private tmpfs");
		return -EPERM;
	}
	store.mnt_fd = tmpfs_mount(cap);
	if (store.mnt_fd < 0) {
		log_err("cannot create a private tmpfs for size=: %s",
			strerror(-store.mnt_fd));
		return store.mnt_fd;
	}
	atomic_fetch_add(&store.nmounts, 1);
	store.backend = BACKEND_TMPFS;
	return 0;
}

void store_fini(void)
{
	struct owner_store *o;

	if (store.mnt_fd >= 0) {
		keeper_release(store.mnt_fd);
		close(store.mnt_fd);
	}
	store.mnt_fd = -1;
	if (store.ballast >= 0)
		close(store.ballast);
	store.ballast = -1;
	store.ballast_len = 0;
	while ((o = store.owners)) {
		store.owners = o->next;
		keeper_release(o->mnt_fd);
		close(o->mnt_fd);
		free(o);
	}
}

/* uid's store, made at its first section: its mount fd, or -errno. */
static int owner_mount(uid_t uid, bool make)
{
	struct owner_store *o;
	int fd = -ENOENT;

	/* Made under the lock, so two first sections make one store; a
	 * mount is made once per owner, not per section. */
	pthread_mutex_lock(&store.lock);
	for (o = store.owners; o && o->uid != uid; o = o->next)
		;
	if (o) {
		fd = o->mnt_fd;
	} else if (make) {
		o = malloc(sizeof(*o));
		fd = o ? tmpfs_mount(store.cap) : -ENOMEM;
		if (fd >= 0) {
			o->uid = uid;
			o->mnt_fd = fd;
			o->next = store.owners;
			store.owners = o;
			atomic_fetch_add(&store.nmounts, 1);
		} else {
			free(o);
		}
	}
	pthread_mutex_unlock(&store.lock);
	return fd;
}

unsigned int store_fds(void)
{
	return atomic_load(&store.nmounts);
}

bool store_per_owner(void)
{
	return store.backend == BACKEND_OWNERS;
}

int store_owner_used(uid_t uid, uint64_t *bytes)
{
	struct statvfs st;
	int fd;

	if (store.backend != BACKEND_OWNERS)
		return -ENOSYS;
	fd = owner_mount(uid, false);
	if (fd < 0)
		return fd;
	if (fstatvfs(fd, &st))
		return -errno;
	*bytes = (uint64_t)(st.f_blocks - st.f_bfree) * st.f_frsize;
	return 0;
}

static int memfd_create_named(const char *name)
{
	char label[STORE_NAME_MAX + 1];
	size_t room = STORE_NAME_MAX - strlen(STORE_PREFIX);
	size_t len = strlen(name);
	int fd;

	/* Keep the end of a long path: the section's own name is there. */
	if (len > room)
		name += len - room;
	snprintf(label, sizeof(label), STORE_PREFIX "%s", name);
	fd = memfd_create(label, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	return fd < 0 ? -errno : fd;
}

int store_create(const char *name, uid_t uid)
{
	int mnt = store.mnt_fd, fd;

	/* root is held to no limit: its sections are plain memfds. */
	if (store.backend == BACKEND_OWNERS && uid != 0) {
		mnt = owner_mount(uid, true);
		if (mnt < 0)
			return mnt;
	} else if (store.backend != BACKEND_TMPFS) {
		return memfd_create_named(name);
	}
	fd = openat(mnt, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

bool store_can_seal(void)
{
	return store.backend != BACKEND_TMPFS &&
	       store.backend != BACKEND_OWNERS;
}

bool store_counts(void)
{
	return store.backend == BACKEND_COUNTED;
}

/*
 * memfds are bounded by memory and swap.  What they may still take is
 * what the kernel estimates it can give without swapping (MemAvailable,
 * which counts reclaimable cache) plus free swap.  Without /proc/meminfo,
 * sysinfo(2)'s free memory, a lower bound.
 */
static int memory_space(uint64_t *total, uint64_t *avail)
{
	uint64_t kb, mem = 0, mem_avail = 0, swap = 0, swap_free = 0;
	FILE *f = fopen("/proc/meminfo", "re");
	struct sysinfo si;
	char line[128];
	int seen = 0;

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemTotal: %" SCNu64, &kb) == 1)
			mem = kb, seen |= 1;
		else if (sscanf(line, "MemAvailable: %" SCNu64, &kb) == 1)
			mem_avail = kb, seen |= 2;
		else if (sscanf(line, "SwapTotal: %" SCNu64, &kb) == 1)
			swap = kb, seen |= 4;
		else if (sscanf(line, "SwapFree: %" SCNu64, &kb) == 1)
			swap_free = kb, seen |= 8;
	}
	if (f)
		fclose(f);
	if (seen == 15) {
		*total = (mem + swap) * 1024;
		*avail = (mem_avail + swap_free) * 1024;
		return 0;
	}
	if (sysinfo(&si))
		return -errno;
	*total = ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
	*avail = ((uint64_t)si.freeram + si.bufferram + si.freeswap) *
		 si.mem_unit;
	return 0;
}

int store_space(uint64_t *cap, uint64_t *avail)
{
	struct statvfs st;
	int64_t used;

	switch (store.backend) {
	case BACKEND_MEMFD:
		return memory_space(cap, avail);
	case BACKEND_COUNTED:
		used = atomic_load(&store.used);
		*cap = store.cap;
		*avail = used < (int64_t)store.cap ? store.cap - used : 0;
		return 0;
	case BACKEND_OWNERS:
		/* Each owner's store is its own: the machine bounds them all. */
		return memory_space(cap, avail);
	case BACKEND_TMPFS:
		if (fstatvfs(store.mnt_fd, &st))
			return -errno;
		*cap = (uint64_t)st.f_blocks * st.f_frsize;
		*avail = (uint64_t)st.f_bavail * st.f_frsize;
		return 0;
	}
	return -ENOSYS;
}

int store_reserve(int64_t bytes)
{
	int64_t used = atomic_load(&store.used);

	do {
		if (used + bytes > (int64_t)store.cap)
			return -ENOSPC;
	} while (!atomic_compare_exchange_weak(&store.used, &used,
					       used + bytes));
	return 0;
}

void store_charge(int64_t bytes)
{
	atomic_fetch_add(&store.used, bytes);
}

int store_take(int64_t bytes, bool force)
{
	int err = 0;

	if (bytes <= 0)
		return 0;
	switch (store.backend) {
	case BACKEND_COUNTED:
		if (force)
			store_charge(bytes);
		else
			err = store_reserve(bytes);
		return err;
	case BACKEND_TMPFS:
		/* One unnamed file, grown and shrunk at its end: the pages
		 * are the kernel's to count against the tmpfs's size. */
		pthread_mutex_lock(&store.lock);
		if (store.ballast < 0) {
			store.ballast = openat(store.mnt_fd, ".",
					       O_TMPFILE | O_RDWR | O_CLOEXEC,
					       0600);
			if (store.ballast < 0)
				err = -errno;
		}
		if (!err && fallocate(store.ballast, 0,
				      (off_t)store.ballast_len, bytes))
			err = -errno;
		if (!err || force)
			store.ballast_len += (uint64_t)bytes;
		pthread_mutex_unlock(&store.lock);
		return force ? 0 : err;
	default:
		return 0;
	}
}

void store_give(int64_t bytes)
{
	if (bytes <= 0)
		return;
	switch (store.backend) {
	case BACKEND_COUNTED:
		store_charge(-bytes);
		break;
	case BACKEND_TMPFS:
		pthread_mutex_lock(&store.lock);
		store.ballast_len = store.ballast_len > (uint64_t)bytes ?
			store.ballast_len - (uint64_t)bytes : 0;
		if (store.ballast >= 0 &&
		    ftruncate(store.ballast, (off_t)store.ballast_len))
			log_warn("cannot give back a symbolic link's page: %s",
				 strerror(errno));
		pthread_mutex_unlock(&store.lock);
		break;
	default:
		break;
	}
}
