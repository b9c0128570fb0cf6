/*
 * connection.h - what this mount asked the kernel for, and what it
 * reports about itself.
 *
 * The FUSE connection is settled once, at INIT: the data path, the
 * kernel's caches, request sizes, io_uring.  Afterwards the mount only
 * answers questions about itself (statfs).  The request layer hands both
 * here and replies.
 */
#ifndef SECTIONFS_CONNECTION_H
#define SECTIONFS_CONNECTION_H

#include <sys/statvfs.h>

#include <fuse_lowlevel.h>

#include "mount.h"

/*
 * Prepare a mounted session (after fuse_session_mount(), before the
 * loop): check the privilege passthrough needs (CAP_SYS_ADMIN) and hook
 * the session so that INIT can ask for what libfuse cannot (wire.h).
 * Returns 0, or -EPERM when passthrough=on and the daemon lacks the
 * privilege, or -errno when the session cannot be hooked (logged).  With
 * passthrough=auto and no privilege it logs one line; the mount is then
 * cached.
 */
int conn_setup(struct sfs_mount *m);

/*
 * In the keeper (keeper.h), before it detaches: log what conn_setup()
 * will decide about passthrough, and return -EPERM as it would.
 */
int conn_check(struct sfs_mount *m);

/*
 * The init() operation; userdata is the mount.  What cannot be had as
 * the options demand (passthrough=on, io_uring=on, a store) ends the
 * session with init_failed set, after logging why.
 */
void conn_init(void *userdata, struct fuse_conn_info *conn);

/*
 * What statfs reports to uid and gid: the cap, or without one the memory
 * and swap that bound sections, in pages; and as free inodes the
 * sections they may still make, within the daemon's descriptors and
 * their inode limits (cap_sections_left).  Returns 0 or -errno.
 */
int conn_statfs(struct sfs_mount *m, uid_t uid, gid_t gid,
		struct statvfs *st);

#endif /* SECTIONFS_CONNECTION_H */
