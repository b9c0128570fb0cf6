/*
 * backing.h - open a file-backed section's backing file as its creator.
 *
 * A file-backed section must never give a user a file they could not
 * open themselves, so the backing file is resolved and opened with the
 * credentials of the process that asked (fsuid, fsgid and supplementary
 * groups, switched on the calling thread only).  The path is walked one
 * component at a time without following anything into this mount, so a
 * target inside it is refused (ELOOP) before the daemon could ever wait
 * on itself, nor into any other FUSE filesystem (EINVAL), whose daemon
 * it could wait on forever; and the file that is type-checked is the
 * file that is opened.
 */
#ifndef SECTIONFS_BACKING_H
#define SECTIONFS_BACKING_H

#include <sys/types.h>

/* Who is asking, as the kernel told us (fuse_req_ctx, fuse_req_getgroups). */
struct caller {
	uid_t uid;
	gid_t gid;
	int ngroups;		/* -1: unknown, keep the daemon's */
	gid_t *groups;
};

/*
 * Open target for a new file-backed section.  On success returns an fd
 * (O_RDWR where the caller may write the file, else O_RDONLY; *writable
 * says which) and a malloc'd absolute path of the file in *resolved.
 * self_dev is this mount's device: any route into it is ELOOP.
 * Errors: EINVAL (relative or empty target, not a regular file, a path
 * through a FUSE filesystem), ENOENT,
 * ELOOP, EACCES, ENAMETOOLONG, EMFILE/ENFILE, EPERM (the daemon cannot act
 * as this caller).
 */
int backing_open(const char *target, dev_t self_dev, const struct caller *who,
		 int *writable, char **resolved);

/*
 * The absolute path that names the open file fd now, as the kernel sees
 * it, into buf[size]: another path than it was opened by once the file
 * was moved, "" once it has no name (deleted, or replaced by a rename
 * over it, as editors save).  Returns its length (0 for ""), or -errno.
 * Asks no filesystem: the kernel answers from its own dentries.
 */
int backing_name_now(int fd, char *buf, size_t size);

/*
 * Run fn(arg) with the caller's credentials on this thread; returns fn's
 * result, or -EPERM when the daemon cannot take them on.
 */
int as_caller(const struct caller *who, int (*fn)(void *), void *arg);

/*
 * As as_caller(), and without the daemon's capabilities: the thread's
 * effective set is empty but for keep (a CAP_* number, or -1) while
 * fn(arg) runs, so that the kernel treats what fn does as who's own call
 * (a write clears set-ID bits, root's reserved blocks and disk quotas
 * hold).  Everything is put back exactly afterwards.  A switch that fails
 * is fn's failure (its -errno, never a run as root).
 */
int as_creator(const struct caller *who, int keep, int (*fn)(void *),
	       void *arg);

#endif /* SECTIONFS_BACKING_H */
