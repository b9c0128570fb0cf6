/*
 * passthrough.c - kernel FUSE passthrough: whether this mount may have
 * it, backing ids, and passthrough opens.
 *
 * Owns the privilege check passthrough needs, the FUSE_PASSTHROUGH
 * decision at INIT, the backing-file ioctls on the session fd, and the
 * open replies that name a backing id (written through wire.c, since
 * libfuse 3.14 has no API for them).  It must not decide anything per
 * section or per open: the mode is fixed once per mount, and which
 * section gets which backing id is the caller's business.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kabi.h"
#include "log.h"
#include "passthrough.h"
#include "privilege.h"
#include "wire.h"

/*
 * The mount's passthrough state.  mode, privileged and dev_fd are written
 * by pt_setup() before the session loop and only read afterwards; active
 * is written at INIT and read by every open, on any worker thread.
 */
struct pt_state {
	enum pt_mode mode;
	bool privileged;	/* CAP_SYS_ADMIN, initial user namespace */
	int dev_fd;		/* the session fd, for the backing ioctls */
	atomic_bool active;	/* passthrough negotiated for this mount */
};

/* One mount per process: set by pt_setup() before the loop starts. */
static struct pt_state pt = { .mode = PT_OFF, .dev_fd = -1 };

/* Shared mmap of direct_io files granted at INIT (cached mounts only). */
static atomic_bool pt_dio_mmap;

/* The INIT reply could not carry what was asked: take it all back. */
static void pt_unedited(void *userdata)
{
	if (atomic_exchange(&pt.active, false))
		log_err("passthrough off");
	else if (atomic_exchange(&pt_dio_mmap, false))
		log_err("file-backed sections keep the page cache");
}

int pt_setup(struct fuse_session *se, enum pt_mode mode)
{
	pt.mode = mode;
	pt.dev_fd = fuse_session_fd(se);
	pt.privileged = privilege_sys_admin();
	if (mode != PT_OFF && !pt.privileged) {
		if (mode == PT_ON) {
			log_err("passthrough=on needs CAP_SYS_ADMIN in the initial user namespace (the kernel checks it when a backing file is registered)");
			return -EPERM;
		}
		log_info("passthrough needs CAP_SYS_ADMIN; using the cached data path");
	}
	/* Hooked on every mount: INIT asks for HANDLE_KILLPRIV_V2 on both
	 * data paths. */
	return wire_setup(se, pt_unedited);
}

bool pt_negotiate(struct fuse_conn_info *conn)
{
	/*
	 * Without HANDLE_KILLPRIV_V2 the kernel asks the daemon for
	 * security.capability before every write, passthrough or cached
	 * (FUSE clears SB_NOSEC): a round trip per write.  With it, an inode
	 * without set-ID bits is checked once.  What the flag hands to the
	 * daemon is clearing set-ID bits on write, chown and truncate: on
	 * chown the namespace does it; writes cannot run set-ID programs
	 * here, since sectionfs always mounts nosuid; and no
	 * security.capability is ever stored.  libfuse 3.14 cannot ask.
	 */
	if (wire_offered() & FUSE_HANDLE_KILLPRIV_V2)
		wire_ask(FUSE_HANDLE_KILLPRIV_V2, 0, 0, 0);
	if (pt.mode == PT_OFF || !pt.privileged)
		return false;
	if (!(wire_offered() & FUSE_PASSTHROUGH)) {
		if (pt.mode == PT_ON)
			log_err("passthrough=on, but the kernel does not offer FUSE passthrough (needs Linux >= 6.9 with CONFIG_FUSE_PASSTHROUGH)");
		else
			log_info("the kernel does not offer FUSE passthrough; using the cached data path");
		return false;
	}
	/* The kernel turns passthrough off silently under writeback. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* Backing files live on plain filesystems: one level. */
	wire_ask(FUSE_PASSTHROUGH, FUSE_WRITEBACK_CACHE, 0, 1);
	atomic_store(&pt.active, true);
	return true;
}

bool pt_active(void)
{
	return atomic_load(&pt.active);
}

bool pt_allow_direct_io_mmap(struct fuse_conn_info *conn)
{
	if (atomic_load(&pt.active) ||
	    !(wire_offered() & FUSE_DIRECT_IO_ALLOW_MMAP))
		return false;
	wire_ask(FUSE_DIRECT_IO_ALLOW_MMAP, 0, FUSE_AUTO_INVAL_DATA, 0);
	atomic_store(&pt_dio_mmap, true);
	return true;
}

bool pt_direct_io_mmap(void)
{
	return atomic_load(&pt_dio_mmap);
}

bool pt_io_uring_offered(void)
{
	return wire_offered() & FUSE_OVER_IO_URING;
}

int pt_backing_open(int fd)
{
	struct fuse_backing_map map = { .fd = fd };
	int id;

	if (!pt_active())
		return -EOPNOTSUPP;
	id = ioctl(pt.dev_fd, FUSE_DEV_IOC_BACKING_OPEN, &map);
	if (id < 0)
		return -errno;
	return id;
}

void pt_backing_close(int backing_id)
{
	uint32_t id = backing_id;

	if (backing_id <= 0 || pt.dev_fd < 0)
		return;
	if (ioctl(pt.dev_fd, FUSE_DEV_IOC_BACKING_CLOSE, &id) < 0)
		log_err("cannot release backing id %d: %s", backing_id,
			strerror(errno));
}

int pt_reply_open(fuse_req_t req, struct fuse_file_info *fi, int backing_id)
{
	if (!pt_active() || backing_id <= 0)
		return fuse_reply_open(req, fi);
	return wire_reply_open(req, fi, backing_id);
}

int pt_reply_create(fuse_req_t req, const struct fuse_entry_param *e,
		    struct fuse_file_info *fi, int backing_id)
{
	if (!pt_active() || backing_id <= 0)
		return fuse_reply_create(req, e, fi);
	return wire_reply_create(req, e, fi, backing_id);
}
