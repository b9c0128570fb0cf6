/*
 * passthrough.h - backing ids and passthrough opens.
 *
 * With passthrough the kernel reads, writes and maps a section's store or
 * backing file itself; the daemon only names the file when a section is
 * opened, by a backing id it registered on the session fd.  Whether a
 * mount uses passthrough is settled once, at FUSE_INIT, before any file
 * is opened (connection.c): the kernel keeps one io mode per inode, so
 * mixing passthrough and cached opens of one section would fail with EIO.
 * These calls are for a passthrough mount only.
 */
#ifndef SECTIONFS_PASSTHROUGH_H
#define SECTIONFS_PASSTHROUGH_H

#include <fuse_lowlevel.h>

enum pt_mode { PT_OFF, PT_AUTO, PT_ON };

/* Remember a mounted session's fd for the backing ioctls (before the
 * loop). */
void pt_setup(struct fuse_session *se);

/*
 * Register fd as a backing file with the kernel.  Returns a backing id
 * (> 0) or -errno.  The kernel does I/O on it with the daemon's
 * credentials of this call.  The fd stays owned by the caller; the kernel
 * keeps its own reference until pt_backing_close() and the last file
 * opened through the id are gone.  Errors: -EPERM without the privilege
 * or when the mount does not use passthrough, -EBADF, -ELOOP when fd is
 * on a stacked filesystem (overlayfs, another passthrough FUSE mount):
 * we declare a stacking depth of 1 so that sectionfs itself can be
 * stacked under overlayfs.
 */
int pt_backing_open(int fd);

/* Release a backing id from pt_backing_open(); ignores id <= 0. */
void pt_backing_close(int backing_id);

/*
 * Reply to OPEN or CREATE so that the kernel passes the file through to
 * backing_id.  These replace fuse_reply_open()/fuse_reply_create(); the
 * open flags in fi (keep_cache, direct_io...) are dropped, because the
 * kernel fails a passthrough open that carries any.  With backing_id <= 0
 * they are the plain libfuse calls with fi as given.
 */
int pt_reply_open(fuse_req_t req, struct fuse_file_info *fi, int backing_id);
int pt_reply_create(fuse_req_t req, const struct fuse_entry_param *e,
		    struct fuse_file_info *fi, int backing_id);

#endif /* SECTIONFS_PASSTHROUGH_H */
