/*
 * mount.h - the state of one sectionfs mount.
 *
 * One struct for the whole mount, reached from a request through
 * fuse_req_userdata(), and from the session hooks through their userdata.
 * Its modes (modes.h) are the one record of what the mount is; the
 * namespace reads them through a pointer to it.
 *
 * sectionfs serves one mount per process.  State outside this struct,
 * each for a reason:
 *   log.c          the log's destination and level, set before the mount
 *                  exists and used by every file;
 *   store.c        the store backend and the cap's count: section.c
 *                  creates, charges and measures stores with no mount in
 *                  hand;
 *   cap.c          the owners' ledger, the limits and the descriptor
 *                  budget, charged by section.c and the data path with no
 *                  mount in hand;
 *   passthrough.c  the session fd, for the backing-id ioctls that
 *                  section.c makes when a section is first opened or
 *                  destroyed, with no mount in hand;
 *   wire.c         what the INIT request offered and what the reply adds,
 *                  read by hooks that libfuse calls on any thread; and a
 *                  per-thread slot naming the backing id of the open reply
 *                  the thread is writing (libfuse writes a reply on the
 *                  thread that makes it);
 *   uring.c        the rings and their threads, reached from the same
 *                  hooks, and a per-thread pointer to the ring entry the
 *                  thread is answering.
 */
#ifndef SECTIONFS_MOUNT_H
#define SECTIONFS_MOUNT_H

#include <stdbool.h>

#include <fuse_lowlevel.h>

#include "modes.h"
#include "namespace.h"
#include "notify.h"
#include "options.h"

struct sfs_mount {
	struct sfs_options opts;	/* immutable after start */
	struct sfs_modes modes;		/* see modes.h */
	struct ns ns;
	struct fuse_session *se;	/* immutable after start */
	struct notifier notify;		/* notices to the kernel */
	int init_failed;		/* set by init(); read after the loop */
	bool single_thread;		/* -s: immutable after start */
	bool may_passthrough;		/* asked for, and privileged */
};

static inline struct sfs_mount *mount_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline struct ns *ns_of(fuse_req_t req)
{
	return &mount_of(req)->ns;
}

static inline const struct sfs_modes *modes_of(fuse_req_t req)
{
	return &mount_of(req)->modes;
}

#endif /* SECTIONFS_MOUNT_H */
