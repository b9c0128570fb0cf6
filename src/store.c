/*
 * store.c - memfd and private-tmpfs stores for page-file-backed sections.
 *
 * Owns the choice of backend, how a store file comes to be and what it is
 * called, each owner's private tmpfs when they have one, the count of
 * bytes the daemon holds against a cap (symbolic links' pages included),
 * and how much room each backend has left.  It does not know what a
 * section is or how its bytes are reached.
 *
 * The private tmpfs mounts outlive a server: the keeper holds them, the
 * record names each (store_each_private), and a successor is handed them
 * back (store_adopt) before it would make a store of its own.
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
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <unistd.h>
#include <linux/magic.h>

#include "keeper.h"
#include "log.h"
#include "privilege.h"
#include "store.h"

/* memfd names are limited to NAME_MAX minus the "memfd:" prefix. */
#define STORE_NAME_MAX	249
#define STORE_PREFIX	"sectionfs:"

enum backend { BACKEND_MEMFD, BACKEND_COUNTED, BACKEND_TMPFS, BACKEND_OWNERS };

/* A private tmpfs: the mount's (tmpfs backend) or one owner's. */
struct private_store {
	struct private_store *next;	/* the one made before; immutable */
	enum store_private_kind kind;	/* immutable */
	uid_t uid;			/* an owner's; immutable */
	int mnt_fd;			/* immutable */
	unsigned int index;		/* stores made before it; immutable */
};

static struct {
	enum backend backend;	/* set once by store_init */
	uint64_t cap;		/* bytes; 0 = none; owners: per owner */
	atomic_int_fast64_t used; /* counted backend: bytes charged */
	int mnt_fd;		/* tmpfs backend: the detached mount; set
				   before serving */
	pthread_mutex_t lock;	/* making a private store, the ballast */
	/* Every private store, newest first: added under store.lock,
	 * read without it (entries are immutable and stay until
	 * store_fini), so that the record can list them under its own
	 * lock. */
	_Atomic(struct private_store *) stores;
	bool chosen;		/* store_init() has run */
	bool adopted;		/* a successor's stores came back */
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

/* Under store.lock: list a private store (the record will name it). */
static int publish(enum store_private_kind kind, uid_t uid, int fd)
{
	struct private_store *head = atomic_load(&store.stores);
	struct private_store *s = malloc(sizeof(*s));

	if (!s)
		return -ENOMEM;
	*s = (struct private_store){ .next = head, .kind = kind, .uid = uid,
				     .mnt_fd = fd,
				     .index = head ? head->index + 1 : 0 };
	atomic_store_explicit(&store.stores, s, memory_order_release);
	return 0;
}

/* The private store of kind (and uid, for an owner's), or NULL. */
static struct private_store *find_private(enum store_private_kind kind,
					  uid_t uid)
{
	struct private_store *s = atomic_load_explicit(&store.stores,
						       memory_order_acquire);

	for (; s; s = s->next)
		if (s->kind == kind &&
		    (kind != STORE_PRIVATE_OWNER || s->uid == uid))
			return s;
	return NULL;
}

/* Under store.lock: make and list a private store of cap bytes. */
static int make_private(enum store_private_kind kind, uid_t uid,
			uint64_t cap)
{
	int fd = tmpfs_mount(cap), err;

	if (fd < 0)
		return fd;
	err = publish(kind, uid, fd);
	if (err) {
		keeper_release(fd);
		close(fd);
		return err;
	}
	return fd;
}

/*
 * Once the backend is chosen and, in a successor, its stores are back:
 * the tmpfs backend's mount is the one adopted, or else a new one.
 */
static int settle(void)
{
	struct private_store *s;
	int fd;

	if (store.backend != BACKEND_TMPFS || store.mnt_fd >= 0)
		return 0;
	s = find_private(STORE_PRIVATE_MOUNT, 0);
	if (s) {
		store.mnt_fd = s->mnt_fd;
		return 0;
	}
	pthread_mutex_lock(&store.lock);
	fd = make_private(STORE_PRIVATE_MOUNT, 0, store.cap);
	pthread_mutex_unlock(&store.lock);
	if (fd < 0) {
		log_err("cannot create a private tmpfs for size=: %s",
			strerror(-fd));
		return fd;
	}
	store.mnt_fd = fd;
	return 0;
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
	} else if (!cap) {
		store.backend = BACKEND_MEMFD;
	} else if (!passthrough) {
		store.backend = BACKEND_COUNTED;
	} else if (!privilege_sys_admin()) {
		/* Passthrough writes never reach the daemon: the kernel
		 * must count. */
		log_err("size= with passthrough needs CAP_SYS_ADMIN for a private tmpfs");
		return -EPERM;
	} else {
		store.backend = BACKEND_TMPFS;
	}
	store.chosen = true;
	/* A successor (or an upgrade's test run) makes no store before
	 * the record has handed back its predecessor's: a second one
	 * would hold the same users to the limit anew. */
	if (keeper_role() != KEEPER_FIRST && !store.adopted)
		return 0;
	return settle();
}

int store_adopt(enum store_private_kind kind, uid_t uid, int fd)
{
	struct statfs sfs;
	struct stat st;
	bool fits;
	int err;

	if (kind != STORE_PRIVATE_MOUNT && kind != STORE_PRIVATE_OWNER)
		return -EINVAL;
	if (fstat(fd, &st) || fstatfs(fd, &sfs) || !S_ISDIR(st.st_mode) ||
	    sfs.f_type != TMPFS_MAGIC)
		return -EINVAL;
	if (find_private(kind, uid))
		return -EEXIST;
	/* Options are the predecessor's, so a store that fits no backend
	 * is unlikely; its sections keep it alive all the same. */
	fits = !store.chosen ||
		(kind == STORE_PRIVATE_MOUNT ? store.backend == BACKEND_TMPFS :
		 store.backend == BACKEND_OWNERS);
	if (!fits) {
		log_warn("a private store the options no longer have is let go");
		keeper_release(fd);
		close(fd);
		return 0;
	}
	pthread_mutex_lock(&store.lock);
	err = publish(kind, uid, fd);
	pthread_mutex_unlock(&store.lock);
	return err;
}

int store_adopted(void)
{
	store.adopted = true;
	return store.chosen ? settle() : 0;
}

unsigned int store_each_private(unsigned int from,
				void (*fn)(void *arg,
					   const struct store_private *p),
				void *arg)
{
	struct private_store *head = atomic_load_explicit(
		&store.stores, memory_order_acquire), *s;

	for (s = head; s && s->index >= from; s = s->next) {
		struct store_private p = { .kind = s->kind, .uid = s->uid,
					   .fd = s->mnt_fd };

		fn(arg, &p);
	}
	return head ? head->index + 1 : 0;
}

void store_fini(void)
{
	struct private_store *s;

	store.mnt_fd = -1;
	if (store.ballast >= 0)
		close(store.ballast);
	store.ballast = -1;
	store.ballast_len = 0;
	while ((s = atomic_load(&store.stores))) {
		atomic_store(&store.stores, s->next);
		keeper_release(s->mnt_fd);
		close(s->mnt_fd);
		free(s);
	}
	store.chosen = store.adopted = false;
}

/* uid's store, made at its first section: its mount fd, or -errno. */
static int owner_mount(uid_t uid, bool make)
{
	struct private_store *s = find_private(STORE_PRIVATE_OWNER, uid);
	int fd;

	if (s)
		return s->mnt_fd;
	if (!make)
		return -ENOENT;
	/* Made under the lock, so two first sections make one store; a
	 * mount is made once per owner, not per section. */
	pthread_mutex_lock(&store.lock);
	s = find_private(STORE_PRIVATE_OWNER, uid);
	fd = s ? s->mnt_fd : make_private(STORE_PRIVATE_OWNER, uid,
					   store.cap);
	pthread_mutex_unlock(&store.lock);
	return fd;
}

unsigned int store_fds(void)
{
	struct private_store *head = atomic_load(&store.stores);

	return head ? head->index + 1 : 0;
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
