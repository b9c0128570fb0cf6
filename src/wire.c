/*
 * wire.c - the session fd's read and writev hooks, and the replies they
 * edit.
 *
 * Owns the bytes sectionfs changes on their way between libfuse 3.14 and
 * the kernel: it remembers what the INIT request offered, adds to our
 * INIT reply the flags and fields init() asked for through wire_ask(),
 * turns a plain OPEN/CREATE reply into a passthrough one when the
 * replying thread says so, hands a reply to uring.c when it answers
 * a request that came by ring, and gives libfuse an O_TMPFILE request
 * as the CREATE it resembles.  It must not decide what to ask for, nor
 * anything about sections: it only writes what it was told.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kabi.h"
#include "log.h"
#include "uring.h"
#include "wire.h"

/*
 * What the hooks learn from INIT, and what init() asked them to add.  The
 * kernel holds every other request until INIT is answered, and libfuse
 * reads, handles and answers INIT on one thread, so these are written by
 * one thread at a time; atomics keep the later lock-free peeks by other
 * workers well defined.  ask is written by init() and read by the same
 * thread as it answers.
 */
static struct {
	atomic_bool init_seen;		/* the INIT request went by */
	atomic_bool init_replied;	/* ... and so did our answer */
	atomic_uint_fast64_t init_unique;
	atomic_uint_fast64_t offered;	/* flags | flags2 << 32 */
	struct {
		uint64_t set, clear, restore;
		uint32_t max_stack_depth;
	} ask;
	void (*unedited)(void *userdata);
} wire;

/*
 * Set by wire_reply_open()/wire_reply_create() around the libfuse call
 * that writes the reply: fuse_reply_open() calls writev on the calling
 * thread, so a per-thread slot is how the hook knows which reply to edit.
 */
struct wire_reply_ctx {
	int backing_id;		/* > 0: patch this reply */
	size_t payload;		/* expected reply payload length */
};
static __thread struct wire_reply_ctx wire_reply;

/*
 * Whether the request this thread serves came as FUSE_TMPFILE: set by
 * wire_recognise() for every request before libfuse sees it.  libfuse
 * reads a request and handles it on one thread, and so does a ring's
 * queue thread.
 */
static __thread bool wire_tmpfile_req;

/*
 * Find [off, off + len) of a message gathered in iov, relative to the
 * start of the message.  Returns NULL when it is out of range or split
 * between two buffers (libfuse never does that for the replies we edit).
 */
static void *iov_at(const struct iovec *iov, int count, size_t off,
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

static size_t iov_len(const struct iovec *iov, int count)
{
	size_t len = 0;

	for (int i = 0; i < count; i++)
		len += iov[i].iov_len;
	return len;
}

/* Remember what the kernel offered in INIT (flags2 needs FUSE_INIT_EXT). */
static void see_request(const void *buf, ssize_t len)
{
	const size_t flags2_end = sizeof(struct fuse_in_header) +
		offsetof(struct fuse_init_in, flags2) + sizeof(uint32_t);
	struct fuse_in_header in;
	struct fuse_init_in init;
	uint64_t offered;

	if (len < (ssize_t)sizeof(in))
		return;
	memcpy(&in, buf, sizeof(in));
	if (in.opcode != FUSE_INIT)
		return;

	memset(&init, 0, sizeof(init));
	memcpy(&init, (const char *)buf + sizeof(in),
	       (size_t)len >= flags2_end ? flags2_end - sizeof(in) :
	       (size_t)len - sizeof(in));
	offered = init.flags;
	if (init.flags & FUSE_INIT_EXT)
		offered |= (uint64_t)init.flags2 << 32;
	atomic_store(&wire.offered, offered);
	atomic_store(&wire.init_unique, in.unique);
	atomic_store(&wire.init_seen, true);
	log_debug("kernel FUSE %u.%u %s passthrough", init.major, init.minor,
		  (offered & FUSE_PASSTHROUGH) ? "offers" : "does not offer");
}

/* Set or clear flags (as wire_offered() has them) in flags and flags2. */
static void edit_flags(struct kabi_init_out *arg, uint64_t set,
		       uint64_t clear)
{
	arg->flags = (arg->flags | (uint32_t)set) & ~(uint32_t)clear;
	arg->flags2 = (arg->flags2 | KABI_FLAGS2(set)) & ~KABI_FLAGS2(clear);
	if (KABI_FLAGS2(set))
		arg->flags |= FUSE_INIT_EXT;	/* flags2 is read only with it */
}

/* Put ask.restore back into an INIT reply too short to edit whole. */
static void restore_flags(struct iovec *iov, int count)
{
	const size_t at = sizeof(struct fuse_out_header) +
		offsetof(struct fuse_init_out, flags);
	uint32_t flags;
	void *p = iov_at(iov, count, at, sizeof(flags));

	if (!p)
		return;
	memcpy(&flags, p, sizeof(flags));
	flags |= (uint32_t)wire.ask.restore;
	memcpy(p, &flags, sizeof(flags));
}

/*
 * Edit our INIT reply as init() asked, and ask for OVER_IO_URING when the
 * rings are ready.  The payload must be the 7.40 layout or larger; a
 * shorter one means libfuse answered with an old protocol: nothing is
 * asked for, what init() gave up comes back (ask.restore), and init()'s
 * owner hears of it.  True when the reply asks for io_uring.
 */
static bool patch_init(struct iovec *iov, int count, void *userdata)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	bool uring = uring_prepared();
	const size_t hdr = sizeof(struct fuse_out_header);
	struct kabi_init_out arg;
	void *p;

	if (out->error)
		goto fail;
	p = iov_at(iov, count, hdr, sizeof(arg));
	if (!p || iov_len(iov, count) < hdr + sizeof(arg))
		goto fail;

	memcpy(&arg, p, sizeof(arg));
	edit_flags(&arg, wire.ask.set | (uring ? FUSE_OVER_IO_URING : 0),
		   wire.ask.clear);
	if (wire.ask.max_stack_depth)
		arg.max_stack_depth = wire.ask.max_stack_depth;
	memcpy(p, &arg, sizeof(arg));
	return uring;
fail:
	log_err("unexpected INIT reply (error %d, %zu bytes)", out->error,
		iov_len(iov, count));
	restore_flags(iov, count);
	if (wire.unedited)
		wire.unedited(userdata);
	return false;
}

/* Turn a plain OPEN/CREATE reply into a passthrough one. */
static void patch_open(struct iovec *iov, int count)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	const size_t hdr = sizeof(struct fuse_out_header);
	size_t len = iov_len(iov, count);
	struct kabi_open_out arg;
	void *p;

	if (out->error)
		return;
	/* fuse_open_out is always the tail of an OPEN or CREATE reply. */
	p = len == hdr + wire_reply.payload ?
		iov_at(iov, count, len - sizeof(arg), sizeof(arg)) : NULL;
	if (!p) {
		log_err("unexpected open reply (%zu bytes); not passed through",
			len);
		return;
	}
	memcpy(&arg, p, sizeof(arg));
	/* Any flag besides FOPEN_PASSTHROUGH makes the kernel fail with EIO. */
	arg.open_flags = FOPEN_PASSTHROUGH;
	arg.backing_id = wire_reply.backing_id;
	memcpy(p, &arg, sizeof(arg));
}

/*
 * The hooks.  Each behaves exactly like the call it wraps (result, errno)
 * because libfuse reads errno after them; userdata is the session's,
 * handed on to the unedited() callback.
 */
static ssize_t io_read(int fd, void *buf, size_t buf_len, void *userdata)
{
	ssize_t res = read(fd, buf, buf_len);

	/* Every request comes by read: sectionfs never asks libfuse to
	 * splice them (connection.c), so this hook sees each header. */
	if (res > 0) {
		int saved = errno;

		if (!atomic_load_explicit(&wire.init_seen,
					  memory_order_relaxed))
			see_request(buf, res);
		wire_recognise(buf, res);
		errno = saved;
	}
	return res;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count,
			 void *userdata)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	ssize_t res;

	if (wire_reply.backing_id > 0) {
		patch_open(iov, count);
	} else if (!atomic_load_explicit(&wire.init_replied,
					 memory_order_relaxed) &&
		   atomic_load(&wire.init_seen) &&
		   out->unique == atomic_load(&wire.init_unique)) {
		bool uring_asked = patch_init(iov, count, userdata);

		res = writev(fd, iov, count);
		atomic_store(&wire.init_replied, true);
		/* The kernel has taken the answer: the rings may register. */
		uring_start(res >= 0 && uring_asked);
		return res;
	}
	/* A ring request's answer, or a parked one's from another thread. */
	if (uring_answering() || uring_parked()) {
		res = uring_take_reply(iov, count);
		if (res >= 0)
			return res;
	}
	return writev(fd, iov, count);
}

/* Present so that libfuse keeps splicing (it checks for the hooks). */
static ssize_t io_splice_receive(int fdin, off_t *offin, int fdout,
				 off_t *offout, size_t len,
				 unsigned int flags, void *userdata)
{
	return splice(fdin, offin, fdout, offout, len, flags);
}

static ssize_t io_splice_send(int fdin, off_t *offin, int fdout,
			      off_t *offout, size_t len,
			      unsigned int flags, void *userdata)
{
	if (uring_answering())
		return uring_take_spliced(fdin, len);
	return splice(fdin, offin, fdout, offout, len, flags);
}

int wire_setup(struct fuse_session *se, void (*unedited)(void *userdata))
{
	static const struct fuse_custom_io io = {
		.read = io_read,
		.writev = io_writev,
		.splice_receive = io_splice_receive,
		.splice_send = io_splice_send,
	};
	int res;

	wire.unedited = unedited;
	res = fuse_session_custom_io(se, &io, fuse_session_fd(se));
	if (res < 0)
		log_err("cannot hook the FUSE session for passthrough: %s",
			strerror(-res));
	return res;
}

uint64_t wire_offered(void)
{
	return atomic_load(&wire.offered);
}

void wire_ask(uint64_t set, uint64_t clear, uint64_t restore,
	      uint32_t max_stack_depth)
{
	wire.ask.set |= set;
	wire.ask.clear |= clear;
	wire.ask.restore |= restore;
	if (max_stack_depth > wire.ask.max_stack_depth)
		wire.ask.max_stack_depth = max_stack_depth;
}

int wire_reply_open(fuse_req_t req, struct fuse_file_info *fi, int backing_id)
{
	int res;

	wire_reply.backing_id = backing_id;
	wire_reply.payload = sizeof(struct kabi_open_out);
	res = fuse_reply_open(req, fi);
	wire_reply.backing_id = 0;
	return res;
}

int wire_reply_create(fuse_req_t req, const struct fuse_entry_param *e,
		      struct fuse_file_info *fi, int backing_id)
{
	int res;

	wire_reply.backing_id = backing_id;
	wire_reply.payload = sizeof(struct fuse_entry_out) +
			     sizeof(struct kabi_open_out);
	res = fuse_reply_create(req, e, fi);
	wire_reply.backing_id = 0;
	return res;
}

/*
 * FUSE_TMPFILE (Linux 6.1) is FUSE_CREATE on the wire: fuse_create_in,
 * then a name ("/", which no CREATE can carry), answered with an entry
 * and an open.  libfuse 3.14 answers the opcode ENOSYS, after which the
 * kernel never asks again; as CREATE it reaches the create handler,
 * which asks wire_tmpfile() which of the two it serves.
 */
void wire_recognise(void *buf, size_t len)
{
	const size_t at = offsetof(struct fuse_in_header, opcode);
	uint32_t opcode, create = FUSE_CREATE;

	wire_tmpfile_req = false;
	if (len < sizeof(struct fuse_in_header))
		return;
	memcpy(&opcode, (char *)buf + at, sizeof(opcode));
	if (opcode != FUSE_TMPFILE)
		return;
	memcpy((char *)buf + at, &create, sizeof(create));
	wire_tmpfile_req = true;
}

bool wire_tmpfile(void)
{
	return wire_tmpfile_req;
}
