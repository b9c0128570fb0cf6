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
 * as the CREATE it resembles.  With a keeper (keeper.h) it also saves
 * INIT and its answer, replays them to a successor, and notes which
 * request each thread is carrying out.  It must not decide what to ask
 * for, nor anything about sections: it only writes what it was told.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kabi.h"
#include "keeper.h"
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
	/* The keeper's slots (keeper.h), a bit each when taken: a thread
	 * takes the lowest free one as it reads its first request and
	 * gives it back as it exits (slot_key's destructor), so threads
	 * libfuse ends when idle (-o max_idle_threads) and starts again
	 * never use them up.  slots_seen is one past the highest ever
	 * taken, where a search of them may stop. */
	_Atomic uint64_t slot_taken[KEEPER_SLOTS / 64];
	atomic_int slots_seen;
	pthread_key_t slot_key;
	atomic_size_t ready;	/* bytes of a read buffer made ready
				   (wire_ready()) */
	bool refused;		/* a successor's INIT answer was not the
				   kernel's: it must not serve */
#ifdef SFS_TEST_HOOKS
	uint32_t die_opcode;	/* die before replying to this opcode
				   (FORGET: having read one or a batch) */
	uint32_t die_times;	/* ... while fewer servers died */
	uint32_t die_skip;	/* ... past this many such replies */
	atomic_uint die_seen;	/* such replies this server wrote */
	bool die_at_start;	/* a successor dies before serving */
#endif
} wire;

/* This thread's slot in the keeper's state (keeper.h); -1: none yet,
 * KEEPER_SLOTS: none was free at its last request. */
static __thread int wire_slot = -1;

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
 * With a keeper.  A first server saves the INIT request it reads and the
 * answer the kernel takes; a successor hands that request to libfuse
 * before its loop (wire_replay_init()), and its own answer must be the
 * saved one byte for byte (it agrees to what the kernel agreed to, or it
 * refuses to serve): the answer is then swallowed, since the kernel was
 * answered long ago, and once ready the successor asks the kernel to
 * send again what the dead server read and did not answer.  Every request read is noted in the reading thread's slot
 * until it is answered, which is how the keeper tells which request was
 * being carried out when a server died.
 */
static bool successor(void)
{
	return keeper_state() && keeper_role() != KEEPER_FIRST;
}

static int take_slot(void)
{
	for (int w = 0; w < KEEPER_SLOTS / 64; w++) {
		uint64_t taken = atomic_load(&wire.slot_taken[w]);

		while (~taken) {
			int i = w * 64 + __builtin_ctzll(~taken);
			int seen = atomic_load(&wire.slots_seen);

			if (!atomic_compare_exchange_weak(
				    &wire.slot_taken[w], &taken,
				    taken | 1ULL << (i % 64)))
				continue;
			while (seen <= i && !atomic_compare_exchange_weak(
					&wire.slots_seen, &seen, i + 1))
				;
			return i;
		}
	}
	return KEEPER_SLOTS;
}

/* At the exit of a thread that had a slot (value: its index + 1). */
static void give_slot_back(void *value)
{
	int i = (int)(uintptr_t)value - 1;

	__atomic_store_n(&keeper_state()->slots[i].unique, 0,
			 __ATOMIC_RELEASE);
	atomic_fetch_and(&wire.slot_taken[i / 64], ~(1ULL << (i % 64)));
}

/* This thread's slot, taken now if take and it has none; NULL without
 * a keeper, or when every slot is taken. */
static struct keeper_slot *my_slot(bool take)
{
	struct keeper_state *st = keeper_state();

	if (!st)
		return NULL;
	/* One found none free: tried again at each request, as a thread
	 * that has ended may not have given its slot back yet. */
	if (take && (wire_slot == -1 || wire_slot == KEEPER_SLOTS)) {
		bool first = wire_slot == -1;

		wire_slot = take_slot();
		if (wire_slot < KEEPER_SLOTS)
			pthread_setspecific(wire.slot_key,
					    (void *)(uintptr_t)(wire_slot + 1));
		else if (first)
			log_warn("more serving threads than the keeper tracks");
	}
	return wire_slot >= 0 && wire_slot < KEEPER_SLOTS ?
		&st->slots[wire_slot] : NULL;
}

bool wire_in_flight(uint64_t unique)
{
	struct keeper_state *st = keeper_state();
	int used, i;

	if (!st || !unique)
		return false;
	used = atomic_load_explicit(&wire.slots_seen, memory_order_relaxed);
	for (i = 0; i < used && i < KEEPER_SLOTS; i++)
		if ((__atomic_load_n(&st->slots[i].unique, __ATOMIC_RELAXED) &
		     ~UNIQUE_RESENT) == unique)
			return true;
	return keeper_left_in_flight(st, unique);
}

static void save_init_request(const void *buf, size_t len)
{
	struct keeper_state *st = keeper_state();

	if (!st || successor() || len > sizeof(st->init))
		return;
	memcpy(st->init, buf, len);
	st->init_len = len;
}

/* A request the keeper saw kill server after server: answer it EIO. */
static bool poisoned(const struct fuse_in_header *in)
{
	struct keeper_state *st = keeper_state();

	if (!st || !(in->unique & KABI_UNIQUE_RESEND))
		return false;
	for (uint32_t i = 0; i < st->n_poison && i < KEEPER_POISON_MAX; i++) {
		if (st->poison[i] != (in->unique & ~KABI_UNIQUE_RESEND))
			continue;
		log_err("request %llu (opcode %u) killed its server again and again: answered EIO",
			(unsigned long long)st->poison[i], in->opcode);
		return true;
	}
	return false;
}

/*
 * Requests read from /dev/fuse that a successor answers itself: one
 * that killed server after server (EIO), and INIT sent again because
 * the first server died as it answered (the answer it saved).
 */
static bool answered_here(int fd, const void *buf)
{
	struct keeper_state *st = keeper_state();
	struct fuse_out_header out = { .len = sizeof(out), .error = -EIO };
	struct fuse_in_header in;

	memcpy(&in, buf, sizeof(in));
	out.unique = in.unique;
	if (in.opcode == FUSE_INIT && successor() &&
	    st->reply_len >= sizeof(out) && st->reply_len <= sizeof(st->reply)) {
		uint8_t reply[KEEPER_INIT_MAX];

		memcpy(reply, st->reply, st->reply_len);
		memcpy(reply + offsetof(struct fuse_out_header, unique),
		       &in.unique, sizeof(in.unique));
		if (write(fd, reply, st->reply_len) < 0)
			log_err("cannot answer INIT again: %s",
				strerror(errno));
		return true;
	}
	if (!poisoned(&in))
		return false;
	if (write(fd, &out, sizeof(out)) < 0)
		log_err("cannot answer it: %s", strerror(errno));
	keeper_answered_in_flight(st, in.unique & ~UNIQUE_RESENT);
	return true;
}

/*
 * What a FORGET or BATCH_FORGET asks, noted in to: they have no reply,
 * so the kernel never sends one again, and a successor can do one this
 * server dies before doing only from this note.  Returns the entries.
 */
static uint32_t note_forgets(struct keeper_forget *to,
			     const struct fuse_in_header *in,
			     const char *buf, size_t len)
{
	struct fuse_batch_forget_in batch;
	struct fuse_forget_in one;
	size_t fits;

	buf += sizeof(*in);
	len -= sizeof(*in);
	if (in->opcode == FUSE_FORGET && len >= sizeof(one)) {
		memcpy(&one, buf, sizeof(one));
		to[0] = (struct keeper_forget){ in->nodeid, one.nlookup };
		return 1;
	}
	if (in->opcode != FUSE_BATCH_FORGET || len < sizeof(batch))
		return 0;
	memcpy(&batch, buf, sizeof(batch));
	fits = (len - sizeof(batch)) / sizeof(struct fuse_forget_one);
	if (batch.count < fits)
		fits = batch.count;
	if (fits > KEEPER_SLOT_FORGETS) {
		log_warn("a batch of %zu FORGETs: only %d would outlive this server",
			 fits, KEEPER_SLOT_FORGETS);
		fits = KEEPER_SLOT_FORGETS;
	}
	memcpy(to, buf + sizeof(batch), fits * sizeof(*to));
	return (uint32_t)fits;
}

/* Note the request just read in this thread's slot. */
static void note_request(const void *buf, ssize_t len)
{
	struct keeper_slot *slot;
	struct fuse_in_header in;

	if (len < (ssize_t)sizeof(in) || !(slot = my_slot(true)))
		return;
	memcpy(&in, buf, sizeof(in));
	/* No request while the slot changes: the keeper reads it only
	 * once this process is dead, but must not pair one request's
	 * unique with another's forgets. */
	__atomic_store_n(&slot->unique, 0, __ATOMIC_RELEASE);
	slot->opcode = in.opcode;
	slot->nforget = note_forgets(keeper_state()->forgets[wire_slot],
				     &in, buf, (size_t)len);
	__atomic_store_n(&slot->unique, in.unique, __ATOMIC_RELEASE);
#ifdef SFS_TEST_HOOKS
	/* FORGET has no reply to die before: die having read one (or a
	 * batch), before doing it. */
	if (wire.die_opcode == FUSE_FORGET && slot->nforget &&
	    keeper_state()->deaths < wire.die_times &&
	    atomic_fetch_add(&wire.die_seen, 1) >= wire.die_skip) {
		log_warn("test hook: dying having read a FORGET");
		keeper_test_die();
	}
#endif
}

void wire_request_done(void)
{
	struct keeper_slot *slot = my_slot(false);

	if (slot)
		__atomic_store_n(&slot->unique, 0, __ATOMIC_RELEASE);
}

/*
 * The reply about to be written: the slot of the request it answers when
 * that is this thread's, else NULL.  The slot keeps the request until
 * the kernel has taken the reply (io_writev()): a server that dies
 * before then has it sent again, and its DONE entry, however old, must
 * still be there to answer it (record.c keeps those of requests in
 * slots).
 */
static struct keeper_slot *reply_slot(const struct fuse_out_header *out)
{
	struct keeper_slot *slot = my_slot(false);

	if (!slot || !slot->unique || slot->unique != out->unique)
		return NULL;
#ifdef SFS_TEST_HOOKS
	if (wire.die_opcode && slot->opcode == wire.die_opcode &&
	    keeper_state()->deaths < wire.die_times &&
	    atomic_fetch_add(&wire.die_seen, 1) >= wire.die_skip) {
		log_warn("test hook: dying before the reply to opcode %u",
			 slot->opcode);
		keeper_test_die();
	}
	keeper_test_gap("reply-sending", slot->opcode);
#endif
	return slot;
}

/*
 * FUSE_NOTIFY_RESEND: every request read and unanswered comes again.
 * Before INIT (a first server after one killed before answering it)
 * what the kernel offers is not known yet: asked all the same.
 */
static void ask_resend(int fd)
{
	struct fuse_out_header out = { .len = sizeof(out),
				       .error = KABI_NOTIFY_RESEND };

	if (!successor()) {
		if (write(fd, &out, sizeof(out)) < 0)
			log_debug("no resend: %s", strerror(errno));
		return;
	}
	if (!(wire_offered() & FUSE_HAS_RESEND)) {
		log_warn("the kernel cannot send requests again (FUSE_NOTIFY_RESEND, Linux >= 6.9): those the last server read wait for ever");
		return;
	}
	if (write(fd, &out, sizeof(out)) < 0)
		log_err("cannot ask for the requests again: %s",
			strerror(errno));
}

/*
 * A successor's INIT answer: the same as the one the kernel took, then
 * swallowed; otherwise this server cannot serve the connection.
 */
static ssize_t swallow_init(int fd, struct iovec *iov, int count,
			    bool uring_asked)
{
	struct keeper_state *st = keeper_state();
	size_t len = iov_len(iov, count), at = 0;
	uint8_t reply[KEEPER_INIT_MAX];

	for (int i = 0; i < count && len <= sizeof(reply); i++) {
		memcpy(reply + at, iov[i].iov_base, iov[i].iov_len);
		at += iov[i].iov_len;
	}
#ifdef SFS_TEST_HOOKS
	if (wire.die_at_start) {
		log_warn("test hook: a successor dies before serving");
		keeper_test_die();
	}
#endif
	atomic_store(&wire.init_replied, true);
	if (len != st->reply_len || memcmp(reply, st->reply, len)) {
		log_err("this server would not agree to what the kernel agreed to at INIT: it cannot serve this mount");
		wire.refused = true;
		uring_start(false);
		return len;
	}
	/* An upgrade's test: this binary could take over, and stops. */
	if (keeper_role() == KEEPER_CHECK) {
		uring_start(false);
		return len;
	}
	/* It serves once it has adopted the mount (keeper_serving()). */
	uring_start(uring_asked);
	return len;
}

/* A first server's INIT answer: saved, then sent. */
static ssize_t send_init(int fd, struct iovec *iov, int count)
{
	struct keeper_state *st = keeper_state();
	size_t len = iov_len(iov, count), at = 0;
	ssize_t res;

	if (st && len <= sizeof(st->reply)) {
		for (int i = 0; i < count; i++) {
			memcpy(st->reply + at, iov[i].iov_base,
			       iov[i].iov_len);
			at += iov[i].iov_len;
		}
		st->reply_len = len;
		__atomic_store_n(&st->init_state, KEEPER_INIT_SENDING,
				 __ATOMIC_RELEASE);
	}
	res = writev(fd, iov, count);
	if (st && res >= 0) {
		__atomic_store_n(&st->init_state, KEEPER_INIT_SENT,
				 __ATOMIC_RELEASE);
		__atomic_store_n(&st->serving, 1, __ATOMIC_RELEASE);
	}
	return res;
}

/*
 * The kernel copies a request into the server's buffer by pinning the
 * buffer's pages; pinning a page that is not yet there gives up when the
 * server has been sent a fatal signal, and the kernel then fails the
 * request with EIO instead of keeping it to send again.  So a server
 * that is kept (a successor will take the request over) has the part of
 * each buffer a request may fill in place before it reads into it:
 * pages there are pinned without that check.  Once per buffer, since
 * libfuse reads each thread's requests into the same one.
 */
static void ready_buffer(void *buf, size_t len)
{
	static __thread void *ready_buf;
	static __thread size_t ready_len;
	size_t want = atomic_load_explicit(&wire.ready, memory_order_relaxed);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uintptr_t start, end;

	want = want < len ? want : len;
	if (buf == ready_buf && want <= ready_len)
		return;
	start = (uintptr_t)buf & ~(page - 1);
	end = ((uintptr_t)buf + want + page - 1) & ~(page - 1);
	/* Contents unchanged: each page is only made present, writable. */
	if (madvise((void *)start, end - start, MADV_POPULATE_WRITE)) {
		for (size_t off = 0; off < want; off += page) {
			volatile char *p = (char *)buf + off;

			*p = *p;
		}
	}
	ready_buf = buf;
	ready_len = want;
}

void wire_ready(size_t bytes)
{
	atomic_store_explicit(&wire.ready, bytes, memory_order_relaxed);
}

/*
 * The hooks.  Each behaves exactly like the call it wraps (result, errno)
 * because libfuse reads errno after them; userdata is the session's,
 * handed on to the unedited() callback.
 */
static ssize_t io_read(int fd, void *buf, size_t buf_len, void *userdata)
{
	struct keeper_state *st = keeper_state();
	int saved = errno;
	ssize_t res;

	/* Every request comes by read: sectionfs never asks libfuse to
	 * splice them (connection.c), so this hook sees each header. */
	if (st)
		ready_buffer(buf, buf_len);
	do {
		res = read(fd, buf, buf_len);
		if (res <= 0)
			return res;
		saved = errno;
	} while (st && res >= (ssize_t)sizeof(struct fuse_in_header) &&
		 answered_here(fd, buf));
	if (!atomic_load_explicit(&wire.init_seen, memory_order_relaxed)) {
		see_request(buf, res);
		save_init_request(buf, res);
	}
	wire_recognise(buf, res);
	note_request(buf, res);
	errno = saved;
	return res;
}

static ssize_t send_reply(int fd, struct iovec *iov, int count,
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

		if (successor())
			return swallow_init(fd, iov, count, uring_asked);
		res = send_init(fd, iov, count);
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

static ssize_t io_writev(int fd, struct iovec *iov, int count,
			 void *userdata)
{
	struct keeper_slot *slot = reply_slot(iov[0].iov_base);
	ssize_t res = send_reply(fd, iov, count, userdata);
	int saved = errno;

	/* A request sent again is answered: a successor after this one
	 * need not take it for one a dead server left. */
	if (slot && (slot->unique & UNIQUE_RESENT))
		keeper_answered_in_flight(keeper_state(),
					  slot->unique & ~UNIQUE_RESENT);
	if (slot)
		__atomic_store_n(&slot->unique, 0, __ATOMIC_RELEASE);
	errno = saved;
	return res;
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
	res = pthread_key_create(&wire.slot_key, give_slot_back);
	if (res) {
		log_err("cannot set up the keeper's slots: %s", strerror(res));
		return -res;
	}
	wire_ready(2 * 4096);		/* INIT, until conn_init() says */
#ifdef SFS_TEST_HOOKS
	if (getenv("SECTIONFS_TEST_DIE_OPCODE")) {
		wire.die_opcode = atoi(getenv("SECTIONFS_TEST_DIE_OPCODE"));
		wire.die_times = getenv("SECTIONFS_TEST_DIE_TIMES") ?
			atoi(getenv("SECTIONFS_TEST_DIE_TIMES")) : 1;
		wire.die_skip = getenv("SECTIONFS_TEST_DIE_SKIP") ?
			atoi(getenv("SECTIONFS_TEST_DIE_SKIP")) : 0;
	}
	/* Every successor, or those started before N deaths in all. */
	wire.die_at_start = successor() &&
		(getenv("SECTIONFS_TEST_DIE_AT_START") ||
		 (getenv("SECTIONFS_TEST_DIE_AT_START_UNTIL") &&
		  keeper_state()->deaths <
		  (uint32_t)atoi(getenv("SECTIONFS_TEST_DIE_AT_START_UNTIL"))));
#endif
	res = fuse_session_custom_io(se, &io, fuse_session_fd(se));
	if (res < 0)
		log_err("cannot hook the FUSE session for passthrough: %s",
			strerror(-res));
	return res;
}

int wire_replay_init(struct fuse_session *se)
{
	struct keeper_state *st = keeper_state();
	struct fuse_buf buf = { 0 };
	uint8_t init[KEEPER_INIT_MAX];

	/* SENDING: the kernel may not have taken it, and then sends INIT
	 * again, which the read hook answers as it was answered. */
	if (!successor() || st->init_state == KEEPER_INIT_NONE ||
	    st->init_len < sizeof(struct fuse_in_header) ||
	    st->init_len > sizeof(init)) {
		log_err("no INIT answered on this mount to take over");
		return -EPROTO;
	}
	/* libfuse may write into what it is given: a copy. */
	memcpy(init, st->init, st->init_len);
	see_request(init, st->init_len);
	buf.mem = init;
	buf.size = st->init_len;
	fuse_session_process_buf(se, &buf);
	if (!atomic_load(&wire.init_replied)) {
		log_err("libfuse did not answer the INIT replayed to it");
		return -EPROTO;
	}
	return wire.refused ? -EPROTO : 0;
}

void wire_resend(struct fuse_session *se)
{
	ask_resend(fuse_session_fd(se));
	if (successor())
		log_info("took over the mount (server %u)",
			 keeper_state()->generation);
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

/*
 * libfuse 3.14 keeps a request's unique in its struct fuse_req, right
 * after the session pointer, and has no call that returns it (3.17's
 * fuse_req_unique() is the same read).
 */
struct wire_req_head {
	struct fuse_session *se;
	uint64_t unique;
};

uint64_t wire_request_unique(fuse_req_t req)
{
	return ((const struct wire_req_head *)req)->unique;
}

bool wire_ring_request(const void *buf, size_t len)
{
	struct fuse_in_header in;

	if (!keeper_state() || len < sizeof(in))
		return true;
	memcpy(&in, buf, sizeof(in));
	if (poisoned(&in))
		return false;
	note_request(buf, len);
	return true;
}
