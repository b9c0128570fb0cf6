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

#include "cap.h"
#include "connection.h"
#include "datapath.h"
#include "kabi.h"
#include "keeper.h"
#include "log.h"
#include "passthrough.h"
#include "privilege.h"
#include "store.h"
#include "uring.h"
#include "wire.h"

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
	if (keeper_on() && m->opts.io_uring == URING_AUTO) {
		/* The kernel sends again to a successor only what a dead
		 * server read from /dev/fuse (FUSE_NOTIFY_RESEND); a request
		 * left on a dead server's ring waits until the connection
		 * is aborted. */
		snprintf(why, sizeof(why), "a request on a ring would not outlive its server (io_uring=on to have the rings all the same)");
	} else if (m->single_thread) {
		snprintf(why, sizeof(why), "-s serves all requests on one thread");
	} else if (!m->notify.running) {
		/* Notices sent inline from a queue's only thread could wait
		 * on requests queued behind it. */
		snprintf(why, sizeof(why), "notices have no thread of their own");
	} else if (!(wire_offered() & FUSE_OVER_IO_URING)) {
		snprintf(why, sizeof(why), "the kernel does not offer it (Linux >= 6.14, with the fuse module's enable_uring set)");
	} else if ((err = uring_prepare(m->se, MAX_WRITE))) {
		snprintf(why, sizeof(why), "cannot set up the rings: %s",
			 err == -EOPNOTSUPP ? "built without liburing" :
			 strerror(-err));
	} else {
		log_info("requests over io_uring, one queue per CPU");
		/* Said once, by the first server. */
		if (keeper_state() && !keeper_state()->generation)
			log_warn("io_uring=on: a request on a ring when its server dies is not sent again to the next server; its caller waits until the connection is aborted (fusectl)");
		return true;
	}
	if (m->opts.io_uring == URING_ON) {
		log_err("io_uring=on, but %s", why);
		return false;
	}
	log_debug("requests over /dev/fuse: %s", why);
	return true;
}

/*
 * Whether this mount passes through: asked for, privileged (conn_setup)
 * and offered by the kernel.  Without HANDLE_KILLPRIV_V2 the kernel asks
 * the daemon for security.capability before every write, passthrough or
 * cached (FUSE clears SB_NOSEC): a round trip per write.  With it, an
 * inode without set-ID bits is checked once.  What the flag hands to the
 * daemon is clearing set-ID bits on write, chown and truncate, which the
 * kernel still asks for (requests.c, kills_setid), passthrough writes
 * included; and no security.capability is ever stored.  So it is asked
 * for on every mount.
 */
static bool negotiate_passthrough(struct sfs_mount *m,
				  struct fuse_conn_info *conn)
{
	uint64_t offered = wire_offered();

	if (offered & FUSE_HANDLE_KILLPRIV_V2)
		wire_ask(FUSE_HANDLE_KILLPRIV_V2, 0, 0, 0);
	if (!m->may_passthrough)
		return false;
	if (!(offered & FUSE_PASSTHROUGH)) {
		if (m->opts.passthrough == PT_ON)
			log_err("passthrough=on, but the kernel does not offer FUSE passthrough (needs Linux >= 6.9 with CONFIG_FUSE_PASSTHROUGH)");
		else
			log_info("the kernel does not offer FUSE passthrough; using the cached data path");
		return false;
	}
	/* The kernel turns passthrough off silently under writeback. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* Backing files live on plain filesystems: one level of stacking. */
	wire_ask(FUSE_PASSTHROUGH, FUSE_WRITEBACK_CACHE, 0, 1);
	return true;
}

/*
 * A cached mount: shared maps of direct_io files where the kernel offers
 * them (DIRECT_IO_ALLOW_MMAP, Linux 6.6), which libfuse 3.14 cannot ask
 * for; the data path says what it gives up for them, and gets it back
 * should the INIT reply not be editable (conn_unedited()).
 */
static void negotiate_cached(struct sfs_mount *m, struct fuse_conn_info *conn)
{
	m->modes.direct_io_mmap =
		(wire_offered() & FUSE_DIRECT_IO_ALLOW_MMAP) != 0;
	if (m->modes.direct_io_mmap)
		wire_ask(FUSE_DIRECT_IO_ALLOW_MMAP, 0, FUSE_AUTO_INVAL_DATA, 0);
	dp_negotiate_cached(conn, m->modes.direct_io_mmap);
	m->modes.writeback = m->opts.writeback &&
		dp_want_writeback(conn, m->modes.direct_io_mmap);
}

void conn_init(void *userdata, struct fuse_conn_info *conn)
{
	struct sfs_mount *m = userdata;

	conn->time_gran = 1;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	/* Requests are read, not spliced: the session's read hook must see
	 * each one's header (wire.c gives libfuse 3.14 O_TMPFILE as a
	 * CREATE, and notes the request in flight should the server die,
	 * keeper.h), and a spliced WRITE gains nothing, its bytes being
	 * copied into the store either way (shmem has no zero-copy
	 * splice_write). */
	conn->want &= ~FUSE_CAP_SPLICE_READ;
	conn->max_write = MAX_WRITE;
	conn->max_readahead = MAX_WRITE;
	/* A symlink's target never changes: the kernel may keep it rather
	 * than ask again at every walk through the link. */
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/* Writes go through to the daemon unless -o writeback_cache asks
	 * otherwise on the cached path (passthrough forbids the cache). */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;

	m->modes.passthrough = negotiate_passthrough(m, conn);
	if (!m->modes.passthrough && m->opts.passthrough == PT_ON)
		goto fail;
	if (!m->modes.passthrough)
		negotiate_cached(m, conn);
	else if (m->opts.writeback)
		log_info("writeback_cache has no effect with passthrough");
	/* The largest request: a WRITE on the cached path; with
	 * passthrough, a SETXATTR's 64 KiB value and its name. */
	wire_ready(m->modes.passthrough ? 72 * 1024 :
		   MAX_WRITE + 2 * 4096);
	if (store_init(m->opts.size, m->opts.quota.usr_block,
		       m->modes.passthrough))
		goto fail;
	cap_init(&m->opts.quota, store_per_owner());
	if (!start_uring(m))
		goto fail;
	return;
fail:
	m->init_failed = 1;
	fuse_session_exit(m->se);
}

/*
 * The INIT reply could not carry what conn_init() asked for (wire.h):
 * the mount is cached, and the kernel keeps the page cache of file-backed
 * sections as before DIRECT_IO_ALLOW_MMAP.
 */
static void conn_unedited(void *userdata)
{
	struct sfs_mount *m = userdata;

	if (m->modes.passthrough)
		log_err("passthrough off");
	else if (m->modes.direct_io_mmap)
		log_err("file-backed sections keep the page cache");
	m->modes.passthrough = false;
	m->modes.direct_io_mmap = false;
}

/*
 * Whether this mount may pass through, said once: by the keeper, before
 * it detaches (so that a terminal sees it), and by a server only when it
 * has no keeper.
 */
static int decide_passthrough(struct sfs_mount *m, bool say)
{
	enum pt_mode mode = m->opts.passthrough;
	bool privileged = privilege_sys_admin();

	if (mode != PT_OFF && !privileged) {
		if (mode == PT_ON) {
			log_err("passthrough=on needs CAP_SYS_ADMIN in the initial user namespace (the kernel checks it when a backing file is registered)");
			return -EPERM;
		}
		if (say)
			log_info("passthrough needs CAP_SYS_ADMIN; using the cached data path");
	}
	m->may_passthrough = mode != PT_OFF && privileged;
	/* passthrough=on with such limits was refused with the options. */
	if (m->may_passthrough && options_quota_needs_cached(&m->opts)) {
		if (say)
			log_info("%s; using the cached data path",
				 options_quota_needs_cached(&m->opts));
		m->may_passthrough = false;
	}
	return 0;
}

int conn_check(struct sfs_mount *m)
{
	return decide_passthrough(m, true);
}

int conn_setup(struct sfs_mount *m)
{
	int err = decide_passthrough(m, !keeper_on());

	if (err)
		return err;
	pt_setup(m->se);
	/* Hooked on every mount: INIT asks for HANDLE_KILLPRIV_V2 on both
	 * data paths. */
	return wire_setup(m->se, conn_unedited);
}

int conn_statfs(struct sfs_mount *m, uid_t uid, gid_t gid,
		struct statvfs *st)
{
	uint64_t nodes, left, total, avail;
	/* The cap, or without one the memory and swap that bound sections. */
	int err = store_space(&total, &avail);

	if (err)
		return err;
	*st = (struct statvfs){ .f_bsize = 4096, .f_frsize = 4096,
				.f_namemax = NAME_MAX };
	ns_counts(&m->ns, uid, &nodes, &left);
	st->f_blocks = total / st->f_frsize;
	st->f_bfree = st->f_bavail = avail / st->f_frsize;
	/*
	 * Every section holds one of the daemon's descriptors, the caller
	 * may be held to an inode limit, and the mount to nr_inodes: free
	 * inodes are the sections this caller could still make
	 * (cap_sections_left, ns_counts), and the total is those and the
	 * nodes there are.
	 */
	st->f_ffree = st->f_favail = cap_sections_left(uid, gid);
	if (left < st->f_ffree)
		st->f_ffree = st->f_favail = left;
	st->f_files = nodes + st->f_ffree;
	return 0;
}
