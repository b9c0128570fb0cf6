/*
 * mount.h - the state of one sectionfs mount.
 *
 * One struct for the whole mount, reached from a request through
 * fuse_req_userdata(); there are no other globals but the log's and the
 * passthrough shim's.
 */
#ifndef SECTIONFS_MOUNT_H
#define SECTIONFS_MOUNT_H

#include <stdbool.h>

#include <fuse_lowlevel.h>

#include "namespace.h"
#include "notify.h"
#include "options.h"

struct sfs_mount {
	struct sfs_options opts;	/* immutable after start */
	struct ns ns;
	struct fuse_session *se;	/* immutable after start */
	struct notifier notify;		/* notices to the kernel */
	int init_failed;		/* set by init(); read after the loop */
	bool single_thread;		/* -s: immutable after start */
};

static inline struct sfs_mount *mount_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline struct ns *ns_of(fuse_req_t req)
{
	return &mount_of(req)->ns;
}

#endif /* SECTIONFS_MOUNT_H */
