/*
 * cap.h - counting sections' memory against the mount's cap, each
 * owner's limits and the daemon's descriptors.
 *
 * With size= on the cached path (the counted store, store.h) the daemon
 * sees every write, so it charges each counted section's allocated pages
 * to the store: before an allocation it reserves what the pages it
 * touches still need, and after it settles the charge against what the
 * kernel really allocated.  For an uncounted section (no cap, a
 * file-backed section, or a capped tmpfs store whose kernel counts for
 * itself) every call here is a no-op that lets everything through.
 *
 * Per-owner limits (options.h, struct quota_limits) charge every node to
 * its owner's uid and gid, as tmpfs's inode quotas do: one inode each for
 * a section, from creation to destruction, and for a directory, symbolic
 * link, FIFO, socket or device node, from creation until the namespace
 * frees it; and a section's allocated bytes on the cached path, reserved
 * and settled with the cap's.  Past a limit: -EDQUOT.  Every section also
 * holds one of the daemon's descriptors: creation is refused (-ENOSPC)
 * when too few would be left, keeping a reserve for root and a larger
 * one for everybody else.  All of it runs without the namespace lock.
 */
#ifndef SECTIONFS_CAP_H
#define SECTIONFS_CAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "options.h"	/* struct quota_limits */

struct section;

/*
 * What one allocation reserved, for cap_settle() to return: from the
 * store's cap, and from the limits of the owners it names (the owner at
 * the time of the reservation, whatever a chown does meanwhile).
 * refused says why nothing (more) fit: -ENOSPC or -EDQUOT.
 */
struct cap_hold {
	int64_t bytes;			/* from the cap */
	int64_t quota;			/* from user and group */
	struct cap_owner *user, *group;
	int refused;
};

/*
 * At INIT, once the data path is known: the limits, and whether each
 * owner's bytes live in a store of their own that the kernel holds to
 * the user limit (passthrough).  Also reads the descriptor limit.
 */
void cap_init(const struct quota_limits *lim, bool owner_stores);

/* The daemon counts the bytes of new page-file-backed sections. */
bool cap_counts_bytes(void);

/*
 * A new section for uid and gid is about to take a descriptor: count it
 * (one inode, one fd), or refuse: -ENOSPC when the descriptors left
 * would fall below the reserve of the creator (root's is smaller),
 * -EDQUOT past an inode limit (root is never refused one).  Undone by
 * cap_uncount(), or when the section owning the count is destroyed.
 */
int cap_count(uid_t uid, gid_t gid);
void cap_uncount(uid_t uid, gid_t gid);

/*
 * A node that is no section (directory, symbolic link, FIFO, socket,
 * device node) for uid and gid: one inode and no descriptor, or -EDQUOT
 * past an inode limit (root is never refused one).  The namespace keeps
 * the owner and gives it back with cap_node_uncount() once the node is
 * freed, never with its lock held.
 */
int cap_node_count(uid_t uid, gid_t gid);
void cap_node_uncount(uid_t uid, gid_t gid);

/*
 * A symbolic link's target of len bytes: tmpfs keeps one of 128 bytes or
 * more (its NUL included) in a page of its own, counted against its size
 * and the owner's block quota, so here too.  cap_target_bytes() says how
 * many bytes it counts (0 or a page); cap_target_count() takes them from
 * the cap (-ENOSPC) and from uid's and gid's byte limits (-EDQUOT; root
 * is never refused), all or nothing, or regardless when forced (a
 * successor adopting); cap_target_uncount() gives them back once the
 * node is freed, never with the namespace's lock held.
 */
int64_t cap_target_bytes(size_t len);
int cap_target_count(uid_t uid, gid_t gid, size_t len, bool force);
void cap_target_uncount(uid_t uid, gid_t gid, size_t len);

/*
 * chown of such a node from (ouid, ogid) to (uid, gid) ((uid_t)-1,
 * (gid_t)-1: unchanged): its inode and bytes (a symbolic link's
 * cap_target_bytes()) move, or -EDQUOT as for cap_chown().
 */
int cap_node_chown(uid_t ouid, gid_t ogid, uid_t uid, gid_t gid,
		   int64_t bytes, uid_t by);

/*
 * chown of sec from its owner to uid and gid ((uid_t)-1, (gid_t)-1:
 * unchanged): its count and its counted bytes move.  -EDQUOT when they
 * do not fit the new owner's limits and the caller (by) is not root,
 * as disk quotas refuse it; nothing moves then.
 */
int cap_chown(struct section *sec, uid_t uid, gid_t gid, uid_t by);

/*
 * A successor adopts a node that is no section (cap_adopt_node), or a
 * section (cap_adopt: its descriptor, its inode, and what its store
 * holds, charged to its owner): the ledger is recomputed from them,
 * never refused, since what they hold exists already.
 */
void cap_adopt_node(uid_t uid, gid_t gid);
void cap_adopt(struct section *sec);

/* An -ENOSPC from an owner's own store is the owner's limit: -EDQUOT. */
int cap_errno(struct section *sec, int err);

/*
 * The figures of statfs for uid and gid: how many more sections they
 * may create (descriptors and inode limits together).
 */
uint64_t cap_sections_left(uid_t uid, gid_t gid);

/*
 * The quota report (the mount root's user.sectionfs.quota): a line per
 * owner with a charge, "u|g ID BYTES INODES BYTE-LIMIT INODE-LIMIT",
 * "-" for what is unknown or unlimited.  root sees every owner; others
 * their own uid and gid.  Into buf (size 0: only the length); -ERANGE
 * when buf is too small.
 */
ssize_t cap_report(uid_t uid, gid_t gid, char *buf, size_t size);

/* The unit of memory: a page of shmem. */
#define PAGE_BYTES 4096

/*
 * cachestat(2), Linux 6.5: of fd's pages in [off, off + len) (len 0: to
 * the end of the file), those in memory in *cached and those swapped out
 * or evicted in *evicted; either may be NULL.  -ENOSYS on older kernels.
 */
int cap_cachestat(int fd, uint64_t off, uint64_t len, uint64_t *cached,
		  uint64_t *evicted);

/*
 * Reserve the memory that allocating [off, off + len) of sec still needs
 * in *hold (nothing for an uncounted section or nothing to allocate).
 * -ENOSPC when it does not fit under the cap, -EDQUOT under an owner's
 * limit, with nothing reserved.  Every call, failed or not, is ended by
 * cap_settle().
 */
int cap_reserve(struct section *sec, off_t off, off_t len,
		struct cap_hold *hold);

/*
 * A write of len bytes at off: how many of them fit under the cap and
 * the owner's limits, on page boundaries, with their memory reserved in
 * *hold (end it with cap_settle()).  0 when not even a page fits, and
 * hold->refused says why.  Uncounted: all of len.
 */
size_t cap_write_fit(struct section *sec, off_t off, size_t len,
		     struct cap_hold *hold);

/* After an allocation (or its failure): charge sec with what its store
 * really holds, and return the reservation. */
void cap_settle(struct section *sec, struct cap_hold *hold);

/* sec is destroyed: return everything charged to it, its count and its
 * descriptor included. */
void cap_uncharge(struct section *sec);

/*
 * Without a cap, whether an eager growth of sec from st's size to size
 * fits in what the machine has left: -ENOSPC if not, else 0.  A counted
 * section is held to the cap by cap_reserve() instead (0 here).
 */
int cap_fits_in_memory(struct section *sec, const struct stat *st,
		       off_t size);

/*
 * Whether fallocate(mode, off, len) would keep pages past sec's end that
 * the cap cannot see: a counted section on a kernel without cachestat(2),
 * which the caller refuses (EOPNOTSUPP).
 */
bool cap_blind_past_end(struct section *sec, int mode, off_t off, off_t len);

#endif /* SECTIONFS_CAP_H */
