/*
 * passthrough.c - backing ids and passthrough opens.
 *
 * Owns the backing-file ioctls on the session fd and the open replies
 * that name a backing id (written through wire.c, since libfuse 3.14 has
 * no API for them).  It decides nothing: whether the mount passes
 * through is connection.c's, and which section gets which backing id is
 * the caller's business.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kabi.h"
#include "log.h"
#include "passthrough.h"
#include "wire.h"

/* The session fd, written by pt_setup() before the session loop. */
static int pt_dev_fd = -1;

void pt_setup(struct fuse_session *se)
{
	pt_dev_fd = fuse_session_fd(se);
}

int pt_backing_open(int fd)
{
	struct fuse_backing_map map = { .fd = fd };
	int id;

	id = ioctl(pt_dev_fd, FUSE_DEV_IOC_BACKING_OPEN, &map);
	if (id < 0)
		return -errno;
	return id;
}

void pt_backing_close(int backing_id)
{
	uint32_t id = backing_id;

	if (backing_id <= 0 || pt_dev_fd < 0)
		return;
	if (ioctl(pt_dev_fd, FUSE_DEV_IOC_BACKING_CLOSE, &id) < 0)
		log_err("cannot release backing id %d: %s", backing_id,
			strerror(errno));
}

int pt_reply_open(fuse_req_t req, struct fuse_file_info *fi, int backing_id)
{
	if (backing_id <= 0)
		return fuse_reply_open(req, fi);
	return wire_reply_open(req, fi, backing_id);
}

int pt_reply_create(fuse_req_t req, const struct fuse_entry_param *e,
		    struct fuse_file_info *fi, int backing_id)
{
	if (backing_id <= 0)
		return fuse_reply_create(req, e, fi);
	return wire_reply_create(req, e, fi, backing_id);
}
