/*
 * connection.c - the FUSE connection: INIT negotiation and statfs.
 *
 * Owns what this mount asks the kernel for at INIT (request sizes,
 * splice, the data path, the writeback cache, io_uring), in what order
 * it is decided, and the arithmetic of what statfs reports.  The bytes on
 * the wire are wire.c's; what each mode means is the data path's and the
 * namespace's.  It handles no request but INIT.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "connection.h"
#include "datapath.h"
#include "log.h"
#include "passthrough.h"
#include "store.h"
#include "uring.h"

/* Large requests: fewer round trips on the cached path. */
#define MAX_WRITE		(1024 * 1024)

/*
 * FUSE over io_uring: asked for in the INIT answer when the rings are
 * ready (uring.h).  False only when io_uring=on cannot be had.
 */
static bool start_uring(struct sfs_mount *m)
{
	char why[160];
	int err;

	if (m->opts.io_uring == URING_OFF)
		return true;
	if (m->single_thread) {
		snprintf(why, sizeof(why), "-s serves all requests on one thread");
	} else if (!m->notify.running) {
		/* Notices sent inline from a queue's only thread could wait
		 * on requests queued behind it. */
		snprintf(why, sizeof(why), "notices have no thread of their own");
	} else if (!pt_io_uring_offered()) {
		snprintf(why, sizeof(why), "the kernel does not offer it (Linux >= 6.14, with the fuse module's enable_uring set)");
	} else if ((err = uring_prepare(m->se, MAX_WRITE))) {
		snprintf(why, sizeof(why), "cannot set up the rings: %s",
			 err == -EOPNOTSUPP ? "built without liburing" :
			 strerror(-err));
	} else {
		log_info("requests over io_uring, one queue per CPU");
		return true;
	}
	if (m->opts.io_uring == URING_ON) {
		log_err("io_uring=on, but %s", why);
		return false;
	}
	log_debug("requests over /dev/fuse: %s", why);
	return true;
}

void conn_init(void *userdata, struct fuse_conn_info *conn)
{
	struct sfs_mount *m = userdata;
	bool passthrough;

	conn->time_gran = 1;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	if (conn->capable & FUSE_CAP_SPLICE_READ)
		conn->want |= FUSE_CAP_SPLICE_READ;
	conn->max_write = MAX_WRITE;
	conn->max_readahead = MAX_WRITE;
	/* Writes go through to the daemon unless -o writeback_cache asks
	 * otherwise on the cached path (passthrough forbids the cache). */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;

	passthrough = pt_negotiate(conn);
	m->ns.passthrough = passthrough;
	if (!passthrough && m->opts.passthrough == PT_ON)
		goto fail;
	if (!passthrough) {
		dp_negotiate_cached(conn);
		m->ns.writeback = m->opts.writeback && dp_want_writeback(conn);
	} else if (m->opts.writeback) {
		log_info("writeback_cache has no effect with passthrough");
	}
	if (store_init(m->opts.size, passthrough))
		goto fail;
	if (!start_uring(m))
		goto fail;
	return;
fail:
	m->init_failed = 1;
	fuse_session_exit(m->se);
}

int conn_statfs(struct sfs_mount *m, struct statvfs *st)
{
	uint64_t nodes, total, avail;
	/* The cap, or without one the memory and swap that bound sections. */
	int err = store_space(&total, &avail);

	if (err)
		return err;
	*st = (struct statvfs){ .f_bsize = 4096, .f_frsize = 4096,
				.f_namemax = NAME_MAX };
	ns_counts(&m->ns, &nodes);
	st->f_blocks = total / st->f_frsize;
	st->f_bfree = st->f_bavail = avail / st->f_frsize;
	/* One inode per page, as tmpfs (at least a million with a small cap). */
	st->f_files = st->f_blocks > (1 << 20) ? st->f_blocks : (1 << 20);
	st->f_ffree = st->f_favail = st->f_files > nodes ?
		st->f_files - nodes : 0;
	return 0;
}
