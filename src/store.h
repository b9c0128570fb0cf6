/*
 * store.h - where page-file-backed sections keep their bytes.
 *
 * A store hands out anonymous, swap-backed files that are never written
 * to disk.  One of three backends is chosen once per mount, at INIT, when
 * the data path is known:
 *
 *   memfd    no cap: memfds (MFD_CLOEXEC|MFD_ALLOW_SEALING), named after
 *            the section's path; bounded by memory and swap.
 *   counted  a cap on the cached path: memfds as above, and the daemon,
 *            which sees every write, counts allocated pages against the
 *            cap (store_reserve / store_charge).
 *   tmpfs    a cap with passthrough, where writes never reach the daemon:
 *            O_TMPFILE files on a private, detached tmpfs of that size,
 *            whose kernel enforces the cap (ENOSPC, SIGBUS).  Such files
 *            cannot be sealed and are not named.
 *   owners   a per-user byte limit with passthrough: as tmpfs, but one
 *            private tmpfs per owner uid, of the limit's size, made at
 *            the owner's first section; its kernel holds that user to
 *            the limit.
 */
#ifndef SECTIONFS_STORE_H
#define SECTIONFS_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Choose the backend: cap 0 means none; user_cap is the per-user byte
 * limit (0: none), which with passthrough gives each owner a store of
 * its own (never together with a cap: options.h refuses it); passthrough
 * says which data path the mount uses.  Returns 0, or -errno after
 * logging why.
 */
int store_init(uint64_t cap, uint64_t user_cap, bool passthrough);
void store_fini(void);

/*
 * Create an empty store file for owner uid, named after name, the
 * section's path (long names keep their end).  Returns an fd owned by
 * the caller, or -errno (EMFILE, ENFILE, ENOMEM, ENOSPC...).
 */
int store_create(const char *name, uid_t uid);

/* Descriptors the store itself holds (its private tmpfs mounts). */
unsigned int store_fds(void);

/*
 * The private tmpfs mounts, which outlive a server (the keeper holds
 * them): the tmpfs backend's one, or an owner's.  The kinds' values are
 * written in the namespace's record: never renumber them.
 */
enum store_private_kind {
	STORE_PRIVATE_MOUNT = 1,	/* the mount's, for size= */
	STORE_PRIVATE_OWNER = 2,	/* uid's, for its byte limit */
};
struct store_private {
	enum store_private_kind kind;
	uid_t uid;			/* an owner's; 0 for the mount's */
	int fd;				/* the mount's fd, held */
};

/*
 * Hand fn each private store made, newest first, down to the from-th
 * made (0: all); returns how many have been made.  Stores are only ever
 * added, never given back before store_fini(), and this takes no lock:
 * it may be called under any other.
 */
unsigned int store_each_private(unsigned int from,
				void (*fn)(void *arg,
					   const struct store_private *p),
				void *arg);

/*
 * A successor, before it serves: store_adopt() takes back a private
 * store its predecessor made (its fd held, at the same number), before
 * or after store_init(); -EINVAL when fd is no tmpfs mount, -EEXIST for
 * a second one of the same kind and owner.  store_adopted() says they
 * are all back: only then, and only when none came back, does the tmpfs
 * backend make its mount (store_init() makes it at once in a first
 * server).  Returns 0 or -errno.
 */
int store_adopt(enum store_private_kind kind, uid_t uid, int fd);
int store_adopted(void);

/* Owners' stores: the bytes uid's store holds; -ENOENT for a uid with
 * no store, -ENOSYS for other backends. */
int store_owner_used(uid_t uid, uint64_t *bytes);

/* Each owner has a store of its own (owners backend). */
bool store_per_owner(void);

/* Store files accept memfd seals (the memfd backends). */
bool store_can_seal(void);

/* The daemon counts this store's bytes against a cap (counted backend). */
bool store_counts(void);

/*
 * The bytes the store may hold and may still take: the cap and what is
 * left of it, or without a cap the machine's memory and swap and what
 * of them is available.
 */
int store_space(uint64_t *cap, uint64_t *avail);

/*
 * Counted backend: take bytes from the free space, all or nothing
 * (-ENOSPC); store_charge adds or returns bytes unconditionally (to
 * settle what was reserved against what the kernel really allocated).
 */
int store_reserve(int64_t bytes);
void store_charge(int64_t bytes);

/*
 * Bytes the namespace keeps outside any section (a long symbolic link's
 * target) counted against the cap, as tmpfs counts them: on the counted
 * backend from the free space, on the tmpfs backend as pages held in
 * the private tmpfs itself, so that its kernel counts them beside the
 * sections.  store_take() is all or nothing (-ENOSPC) unless forced (a
 * successor adopting what exists); store_give() returns them.  Nothing
 * without a cap.
 */
int store_take(int64_t bytes, bool force);
void store_give(int64_t bytes);

#endif /* SECTIONFS_STORE_H */
