/*
 * section.h - one memory section: its kind, its file, its lifetime.
 *
 * A section owns one fd: the store file of a page-file-backed section or
 * the backing file of a file-backed one.  It is reference counted: the
 * namespace node that names it holds one reference, every open handle
 * one, and any request working on it one for the duration; the fd is
 * closed (and any passthrough registration released) when the last
 * reference goes.  Sizes and times are always read from the fd, never
 * remembered, because in passthrough mode the kernel changes them without
 * telling the daemon.
 */
#ifndef SECTIONFS_SECTION_H
#define SECTIONFS_SECTION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "backing.h"
#include "cap.h"

enum section_kind { SECTION_PAGEFILE, SECTION_FILE };

/* What only a file-backed section has, apart so that page-file-backed
 * sections do not pay for it. */
struct section_file {
	char *path;			/* the backing file, as resolved */
	struct caller creator;		/* who made it: every change to the
					   file is theirs (section_io()) */
};

struct section {
	int fd;				/* store or backing fd */
	unsigned int kind : 1;		/* enum section_kind */
	unsigned int writable : 1;	/* fd is O_RDWR */
	unsigned int counted : 1;	/* bytes counted against the cap or
					   the owner's limits by the daemon
					   (cap_counts_bytes(), cap.h) */
	unsigned int borrowed : 1;	/* another section owns the fd, the
					   id and the charge (section_adopt) */
	atomic_uint refs;
	atomic_int backing_id;		/* passthrough id; 0 until first open */
	atomic_uint seals;		/* F_SEAL_* added so far; only the
					   daemon can seal, so this is exact */
	atomic_uint charged;		/* counted: pages charged (cap.c) */
	struct section_file *file;	/* file-backed only, else NULL */
	uid_t uid;			/* the owner charged, and its group: */
	gid_t gid;			/* cap.c's lock once made (cap_chown) */
};
/* All but the atomics and the owner are immutable once the section is
 * made.  40 bytes: a 48-byte malloc chunk, counted in what a section
 * costs the daemon. */
_Static_assert(sizeof(struct section) <= 40, "struct section grew");

/*
 * Create a page-file-backed section owned by uid and gid, with an empty
 * store named after path.  Returns 0 and a section with one reference in
 * *out, or -errno: ENOSPC when the daemon's descriptors run low, EDQUOT
 * past the owner's inode limit (cap.h).
 */
int section_create_pagefile(const char *path, uid_t uid, gid_t gid,
			    struct section **out);

/*
 * Create a file-backed section over the file target names, opened with
 * who's credentials (backing.h: errors and the ELOOP rule for self_dev).
 * A file who may not write gives a read-only section.  The section keeps
 * a copy of who (with its groups) as its creator: every write, truncate
 * and fallocate of the file, and its passthrough registration, run as
 * the creator without the daemon's capabilities (section_io()).
 */
int section_create_file(const char *target, dev_t self_dev,
			const struct caller *who, struct section **out);

/* What the record says of a section a predecessor made. */
struct section_state {
	int fd;				/* held by the keeper, or open */
	enum section_kind kind;
	bool writable, counted;
	int backing_id;
	unsigned int seals;
	uid_t uid;
	gid_t gid;
	const char *path;		/* file-backed: the file, */
	const struct caller *creator;	/* and who made it */
};

/*
 * A section over an fd a predecessor made, as the record describes it,
 * with one reference.  Nothing is asked of the kernel or the ledger
 * (cap_adopt() charges it).  A borrowed section stands for one that
 * owns the fd, the backing id and the charge (the test suite's copy of
 * the namespace): destroying it releases none of them.
 */
int section_adopt(const struct section_state *st, bool borrowed,
		  struct section **out);

/*
 * Run fn(arg) on the section's file: for a file-backed section as its
 * creator, without the daemon's capabilities (as_creator(): a failed
 * switch is -errno, never a run as root); for a page-file-backed one,
 * whose file is the daemon's own, directly.  Returns fn's result.
 */
int section_io(struct section *sec, int (*fn)(void *), void *arg);

/* Take and drop references; the last put destroys the section. */
void section_get(struct section *sec);
void section_put(struct section *sec);

/* fstat of the section's file: size, blocks and times are the truth. */
int section_stat(struct section *sec, struct stat *st);

/*
 * ftruncate: grow (zero filled) or shrink the section.  With eager, growth
 * of a page-file-backed section allocates its memory first, so that it
 * fails with ENOSPC (the section unchanged) rather than a later fault.
 * -errno on error; EACCES for a read-only file-backed section (as is
 * section_fallocate).
 */
int section_resize(struct section *sec, off_t size, int eager);

/* fallocate on the section's file with the caller's mode; a store's new
 * pages are charged to the memory cgroup of pid, the caller (charge.h:
 * ENOMEM when it is full).  A counted section on a kernel without
 * cachestat(2) (before 6.5) refuses FALLOC_FL_KEEP_SIZE past its end
 * (EOPNOTSUPP): the cap could not see those pages. */
int section_fallocate(struct section *sec, int mode, off_t off, off_t len,
		      pid_t pid);

/*
 * futimens on the section's file (UTIME_NOW / UTIME_OMIT allowed).  On a
 * backing file this runs with who's rights: setting a file's times is
 * for its owner, or (to now) for those who may write it.
 */
int section_set_times(struct section *sec, const struct timespec times[2],
		      const struct caller *who);

/*
 * Writes to a counted section: how many of len bytes at off fit under the
 * cap and the owner's limits (0: none, hold->refused says ENOSPC or
 * EDQUOT), with the memory they need reserved in *hold; after the write,
 * section_settle() charges what the kernel really allocated and returns
 * the reservation.  Uncounted sections: all of len.
 */
size_t section_write_fit(struct section *sec, off_t off, size_t len,
			 struct cap_hold *hold);
void section_settle(struct section *sec, struct cap_hold *hold);

/* chown: the section's charge moves to its new owner (cap_chown()). */
int section_chown(struct section *sec, uid_t uid, gid_t gid, uid_t by);

/* Seals, as F_*_SEALS masks.  section_add_seals: EOPNOTSUPP where the
 * section's file cannot be sealed (file-backed, tmpfs store). */
int section_seals(struct section *sec, unsigned int *seals);
int section_add_seals(struct section *sec, unsigned int seals);

/* Bytes of the section now in memory (not swapped out, not evicted). */
int section_resident(struct section *sec, uint64_t *bytes);

/* Flush to stable storage; a no-op for page-file-backed sections. */
int section_sync(struct section *sec, int datasync);

/*
 * The section's passthrough backing id, registering the fd with the
 * kernel on first use; one id per section for its whole life (the kernel
 * insists every open of an inode uses the same one).  -errno on error.
 */
int section_backing_id(struct section *sec);

/* lseek(2) on the section's file, for SEEK_DATA and SEEK_HOLE: the
 * offset found, or -errno (ENXIO past the last data). */
off_t section_seek(struct section *sec, off_t off, int whence);

#endif /* SECTIONFS_SECTION_H */
