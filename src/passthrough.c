/*
 * passthrough.c - kernel FUSE passthrough, negotiated at INIT and attached
 * at OPEN/CREATE.
 *
 * This file owns everything sectionfs says to the kernel about
 * passthrough: the FUSE_PASSTHROUGH handshake, the backing-file ioctls on
 * the session fd, and the patched open replies; and, since it edits the
 * INIT reply anyway, the other INIT flags libfuse 3.14 cannot ask for:
 * HANDLE_KILLPRIV_V2 on every mount, DIRECT_IO_ALLOW_MMAP on a cached
 * one, and OVER_IO_URING when uring.c has its rings ready.
 * With libfuse 3.14, which has no passthrough API, it wraps the session
 * fd's read and writev through fuse_session_custom_io() and edits the
 * INIT and OPEN/CREATE replies on their way to the kernel; the same hooks
 * hand a reply to uring.c when it answers a request that came by ring.
 * Where configure found libfuse's own API (>= 3.17) it uses that instead,
 * and requests stay on /dev/fuse.  It must not
 * decide anything per section or per open: the mode is fixed once per
 * mount, and which section gets which backing id is the caller's business.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kabi.h"
#include "log.h"
#include "passthrough.h"
#include "privilege.h"
#include "uring.h"

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

/* -------------------------------------------------------------------- */
/* Backend: libfuse's own passthrough API (>= 3.17)                     */
/* -------------------------------------------------------------------- */
#ifdef HAVE_FUSE_PASSTHROUGH_OPEN
/*
 * Cannot be compiled here: Debian ships libfuse 3.14.  Kept to the four
 * calls the library does for us.  Backing registration stays on our own
 * ioctl in both builds: fuse_passthrough_open() wants a request only to
 * find the session fd, and sections are registered once, not per request.
 */
static int pt_backend_setup(struct fuse_session *se)
{
	return 0;
}

static bool pt_backend_offered(struct fuse_conn_info *conn)
{
	return conn->capable & FUSE_CAP_PASSTHROUGH;
}

/* Every mount: libfuse >= 3.15 can ask for HANDLE_KILLPRIV_V2 itself. */
static void pt_backend_init(struct fuse_conn_info *conn)
{
	if (conn->capable & FUSE_CAP_HANDLE_KILLPRIV_V2)
		conn->want |= FUSE_CAP_HANDLE_KILLPRIV_V2;
}

static bool pt_backend_dio_mmap(struct fuse_conn_info *conn)
{
	if (!(conn->capable & FUSE_CAP_DIRECT_IO_ALLOW_MMAP))
		return false;
	conn->want |= FUSE_CAP_DIRECT_IO_ALLOW_MMAP;
	return true;
}

/* libfuse >= 3.18 serves io_uring itself; sectionfs's rings need the shim. */
static bool pt_backend_uring_offered(void)
{
	return false;
}

static void pt_backend_want(struct fuse_conn_info *conn)
{
	conn->want |= FUSE_CAP_PASSTHROUGH;
	conn->max_backing_stack_depth = 0;	/* backing files are not stacked */
}

/* The kernel refuses passthrough opens that carry any other flag. */
static void pt_backend_fill(struct fuse_file_info *f, int backing_id)
{
	f->direct_io = 0;
	f->keep_cache = 0;
	f->nonseekable = 0;
	f->parallel_direct_writes = 0;
	f->backing_id = backing_id;
}

static int pt_backend_reply_open(fuse_req_t req, struct fuse_file_info *fi,
				 int backing_id)
{
	struct fuse_file_info f = *fi;

	pt_backend_fill(&f, backing_id);
	return fuse_reply_open(req, &f);
}

static int pt_backend_reply_create(fuse_req_t req,
				   const struct fuse_entry_param *e,
				   struct fuse_file_info *fi, int backing_id)
{
	struct fuse_file_info f = *fi;

	pt_backend_fill(&f, backing_id);
	return fuse_reply_create(req, e, &f);
}

#else /* !HAVE_FUSE_PASSTHROUGH_OPEN */
/* -------------------------------------------------------------------- */
/* Backend: wire shim for libfuse 3.14                                  */
/* -------------------------------------------------------------------- */

/*
 * What the hooks learn from INIT.  The kernel holds every other request
 * until INIT is answered, and libfuse reads, handles and answers INIT on
 * one thread, so these are written by one thread at a time; atomics keep
 * the later lock-free peeks by other workers well defined.
 */
static atomic_bool pt_init_seen;	/* the INIT request went by */
static atomic_bool pt_init_replied;	/* ... and so did our answer */
static atomic_uint_fast64_t pt_init_unique;
static atomic_bool pt_offered;		/* kernel offered FUSE_PASSTHROUGH */
static atomic_bool pt_killpriv_offered;	/* ... and HANDLE_KILLPRIV_V2 */
static atomic_bool pt_dio_mmap_offered;	/* ... and DIRECT_IO_ALLOW_MMAP */
static atomic_bool pt_uring_offered;	/* ... and OVER_IO_URING */

/*
 * Set by pt_reply_open()/pt_reply_create() around the libfuse call that
 * writes the reply: fuse_reply_open() calls writev on the calling thread.
 */
struct pt_reply_ctx {
	int backing_id;		/* > 0: patch this reply */
	size_t payload;		/* expected reply payload length */
};
static __thread struct pt_reply_ctx pt_reply;

/*
 * Find [off, off + len) of a message gathered in iov, relative to the
 * start of the message.  Returns NULL when it is out of range or split
 * between two buffers (libfuse never does that for the replies we edit).
 */
static void *pt_iov_at(const struct iovec *iov, int count, size_t off,
		       size_t len)
{
	for (int i = 0; i < count; i++) {
		if (off < iov[i].iov_len) {
			if (len > iov[i].iov_len - off)
				return NULL;
			return (char *)iov[i].iov_base + off;
		}
		off -= iov[i].iov_len;
	}
	return NULL;
}

static size_t pt_iov_len(const struct iovec *iov, int count)
{
	size_t len = 0;

	for (int i = 0; i < count; i++)
		len += iov[i].iov_len;
	return len;
}

/* Remember what the kernel offered in INIT (flags2 needs FUSE_INIT_EXT). */
static void pt_see_request(const void *buf, ssize_t len)
{
	const size_t flags2_end = sizeof(struct fuse_in_header) +
		offsetof(struct fuse_init_in, flags2) + sizeof(uint32_t);
	struct fuse_in_header in;
	struct fuse_init_in init;

	if (len < (ssize_t)sizeof(in))
		return;
	memcpy(&in, buf, sizeof(in));
	if (in.opcode != FUSE_INIT)
		return;

	memset(&init, 0, sizeof(init));
	memcpy(&init, (const char *)buf + sizeof(in),
	       (size_t)len >= flags2_end ? flags2_end - sizeof(in) :
	       (size_t)len - sizeof(in));
	atomic_store(&pt_offered, (init.flags & FUSE_INIT_EXT) &&
		     (init.flags2 & KABI_FLAGS2(FUSE_PASSTHROUGH)));
	atomic_store(&pt_killpriv_offered,
		     !!(init.flags & FUSE_HANDLE_KILLPRIV_V2));
	atomic_store(&pt_dio_mmap_offered, (init.flags & FUSE_INIT_EXT) &&
		     (init.flags2 & KABI_FLAGS2(FUSE_DIRECT_IO_ALLOW_MMAP)));
	atomic_store(&pt_uring_offered, (init.flags & FUSE_INIT_EXT) &&
		     (init.flags2 & KABI_FLAGS2(FUSE_OVER_IO_URING)));
	atomic_store(&pt_init_unique, in.unique);
	atomic_store(&pt_init_seen, true);
	log_debug("kernel FUSE %u.%u %s passthrough", init.major, init.minor,
		  atomic_load(&pt_offered) ? "offers" : "does not offer");
}

/* Put AUTO_INVAL_DATA back into an INIT reply too short to edit whole. */
static void pt_restore_auto_inval(struct iovec *iov, int count)
{
	const size_t at = sizeof(struct fuse_out_header) +
		offsetof(struct fuse_init_out, flags);
	uint32_t flags;
	void *p = pt_iov_at(iov, count, at, sizeof(flags));

	if (!p)
		return;
	memcpy(&flags, p, sizeof(flags));
	flags |= FUSE_AUTO_INVAL_DATA;
	memcpy(p, &flags, sizeof(flags));
}

/*
 * Edit our INIT reply: ask for passthrough when this mount uses it, for
 * DIRECT_IO_ALLOW_MMAP when a cached mount wants it, and for
 * HANDLE_KILLPRIV_V2 when the kernel offers it, and for OVER_IO_URING
 * when the rings are ready.  The payload must be the 7.40 layout or
 * larger; a shorter one means libfuse answered with an old protocol: the
 * mount stays cached, and without DIRECT_IO_ALLOW_MMAP it gets back the
 * AUTO_INVAL_DATA that the data path gave up for it
 * (pt_allow_direct_io_mmap()).  True when the reply asks for io_uring.
 */
static bool pt_patch_init(struct iovec *iov, int count)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	bool uring = uring_prepared();
	const size_t hdr = sizeof(struct fuse_out_header);
	struct kabi_init_out arg;
	void *p;

	if (out->error)
		goto fail;
	p = pt_iov_at(iov, count, hdr, sizeof(arg));
	if (!p || pt_iov_len(iov, count) < hdr + sizeof(arg))
		goto fail;

	memcpy(&arg, p, sizeof(arg));
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
	if (atomic_load(&pt_killpriv_offered))
		arg.flags |= FUSE_HANDLE_KILLPRIV_V2;
	if (atomic_load(&pt_dio_mmap)) {
		arg.flags |= FUSE_INIT_EXT;
		arg.flags2 |= KABI_FLAGS2(FUSE_DIRECT_IO_ALLOW_MMAP);
	}
	if (atomic_load(&pt.active)) {
		arg.flags |= FUSE_INIT_EXT;
		/* The kernel silently drops passthrough under the writeback
		 * cache. */
		arg.flags &= ~FUSE_WRITEBACK_CACHE;
		arg.flags2 |= KABI_FLAGS2(FUSE_PASSTHROUGH);
		/* Backing files live on plain filesystems: one level. */
		arg.max_stack_depth = 1;
	}
	if (uring) {
		arg.flags |= FUSE_INIT_EXT;
		arg.flags2 |= KABI_FLAGS2(FUSE_OVER_IO_URING);
	}
	memcpy(p, &arg, sizeof(arg));
	return uring;
fail:
	log_err("unexpected INIT reply (error %d, %zu bytes); %s",
		out->error, pt_iov_len(iov, count),
		atomic_load(&pt.active) ? "passthrough off" :
		"file-backed sections keep the page cache");
	atomic_store(&pt.active, false);
	if (atomic_exchange(&pt_dio_mmap, false))
		pt_restore_auto_inval(iov, count);
	return false;
}

/* Turn a plain OPEN/CREATE reply into a passthrough one. */
static void pt_patch_open(struct iovec *iov, int count)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	const size_t hdr = sizeof(struct fuse_out_header);
	size_t len = pt_iov_len(iov, count);
	struct kabi_open_out arg;
	void *p;

	if (out->error)
		return;
	/* fuse_open_out is always the tail of an OPEN or CREATE reply. */
	p = len == hdr + pt_reply.payload ?
		pt_iov_at(iov, count, len - sizeof(arg), sizeof(arg)) : NULL;
	if (!p) {
		log_err("unexpected open reply (%zu bytes); not passed through",
			len);
		return;
	}
	memcpy(&arg, p, sizeof(arg));
	/* Any flag besides FOPEN_PASSTHROUGH makes the kernel fail with EIO. */
	arg.open_flags = FOPEN_PASSTHROUGH;
	arg.backing_id = pt_reply.backing_id;
	memcpy(p, &arg, sizeof(arg));
}

/*
 * The hooks.  Each behaves exactly like the call it wraps (result, errno)
 * because libfuse reads errno after them; userdata is the filesystem's,
 * not ours, and unused.
 */
static ssize_t pt_io_read(int fd, void *buf, size_t buf_len, void *userdata)
{
	ssize_t res = read(fd, buf, buf_len);

	/* INIT is the first request; it always comes by read, never by
	 * splice, since libfuse splices only once INIT agreed to it. */
	if (res > 0 && !atomic_load_explicit(&pt_init_seen,
					     memory_order_relaxed)) {
		int saved = errno;

		pt_see_request(buf, res);
		errno = saved;
	}
	return res;
}

static ssize_t pt_io_writev(int fd, struct iovec *iov, int count,
			    void *userdata)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	ssize_t res;

	if (pt_reply.backing_id > 0) {
		pt_patch_open(iov, count);
	} else if (!atomic_load_explicit(&pt_init_replied,
					 memory_order_relaxed) &&
		   atomic_load(&pt_init_seen) &&
		   out->unique == atomic_load(&pt_init_unique)) {
		bool uring_asked = pt_patch_init(iov, count);

		res = writev(fd, iov, count);
		atomic_store(&pt_init_replied, true);
		/* The kernel has taken the answer: the rings may register. */
		uring_start(res >= 0 && uring_asked);
		return res;
	}
	if (uring_answering()) {
		res = uring_take_reply(iov, count);
		if (res >= 0)
			return res;
	}
	return writev(fd, iov, count);
}

/* Present so that libfuse keeps splicing (it checks for the hooks). */
static ssize_t pt_io_splice_receive(int fdin, off_t *offin, int fdout,
				    off_t *offout, size_t len,
				    unsigned int flags, void *userdata)
{
	return splice(fdin, offin, fdout, offout, len, flags);
}

static ssize_t pt_io_splice_send(int fdin, off_t *offin, int fdout,
				 off_t *offout, size_t len,
				 unsigned int flags, void *userdata)
{
	if (uring_answering())
		return uring_take_spliced(fdin, len);
	return splice(fdin, offin, fdout, offout, len, flags);
}

static int pt_backend_setup(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
		.read = pt_io_read,
		.writev = pt_io_writev,
		.splice_receive = pt_io_splice_receive,
		.splice_send = pt_io_splice_send,
	};
	int res;

	res = fuse_session_custom_io(se, &io, fuse_session_fd(se));
	if (res < 0)
		log_err("cannot hook the FUSE session for passthrough: %s",
			strerror(-res));
	return res;
}

static bool pt_backend_offered(struct fuse_conn_info *conn)
{
	return atomic_load(&pt_offered);
}

/* Nothing to ask libfuse for: the writev hook edits the INIT reply. */
static void pt_backend_init(struct fuse_conn_info *conn)
{
}

/* The writev hook asks for it in the INIT reply. */
static bool pt_backend_dio_mmap(struct fuse_conn_info *conn)
{
	return atomic_load(&pt_dio_mmap_offered);
}

static bool pt_backend_uring_offered(void)
{
	return atomic_load(&pt_uring_offered);
}

/* Nothing to ask libfuse for: the writev hook edits the INIT reply. */
static void pt_backend_want(struct fuse_conn_info *conn)
{
}

static int pt_backend_reply_open(fuse_req_t req, struct fuse_file_info *fi,
				 int backing_id)
{
	int res;

	pt_reply.backing_id = backing_id;
	pt_reply.payload = sizeof(struct kabi_open_out);
	res = fuse_reply_open(req, fi);
	pt_reply.backing_id = 0;
	return res;
}

static int pt_backend_reply_create(fuse_req_t req,
				   const struct fuse_entry_param *e,
				   struct fuse_file_info *fi, int backing_id)
{
	int res;

	pt_reply.backing_id = backing_id;
	pt_reply.payload = sizeof(struct fuse_entry_out) +
			   sizeof(struct kabi_open_out);
	res = fuse_reply_create(req, e, fi);
	pt_reply.backing_id = 0;
	return res;
}

#endif /* HAVE_FUSE_PASSTHROUGH_OPEN */

/* -------------------------------------------------------------------- */
/* Interface                                                            */
/* -------------------------------------------------------------------- */

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
	return pt_backend_setup(se);
}

bool pt_negotiate(struct fuse_conn_info *conn)
{
	pt_backend_init(conn);
	if (pt.mode == PT_OFF || !pt.privileged)
		return false;
	if (!pt_backend_offered(conn)) {
		if (pt.mode == PT_ON)
			log_err("passthrough=on, but the kernel does not offer FUSE passthrough (needs Linux >= 6.9 with CONFIG_FUSE_PASSTHROUGH)");
		else
			log_info("the kernel does not offer FUSE passthrough; using the cached data path");
		return false;
	}
	/* The kernel turns passthrough off silently under writeback. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	pt_backend_want(conn);
	atomic_store(&pt.active, true);
	return true;
}

bool pt_active(void)
{
	return atomic_load(&pt.active);
}

bool pt_allow_direct_io_mmap(struct fuse_conn_info *conn)
{
	if (atomic_load(&pt.active) || !pt_backend_dio_mmap(conn))
		return false;
	atomic_store(&pt_dio_mmap, true);
	return true;
}

bool pt_direct_io_mmap(void)
{
	return atomic_load(&pt_dio_mmap);
}

bool pt_io_uring_offered(void)
{
	return pt_backend_uring_offered();
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
	return pt_backend_reply_open(req, fi, backing_id);
}

int pt_reply_create(fuse_req_t req, const struct fuse_entry_param *e,
		    struct fuse_file_info *fi, int backing_id)
{
	if (!pt_active() || backing_id <= 0)
		return fuse_reply_create(req, e, fi);
	return pt_backend_reply_create(req, e, fi, backing_id);
}
