/*
 * uring.c - the io_uring queues: one per CPU, each with its own thread.
 *
 * Owns the rings, their registered buffers and their threads, and the
 * translation between a ring entry and the request libfuse expects: the
 * kernel splits a request into its fuse_in_header, the operation's own
 * header and the payload, and takes a reply back as an out header plus
 * payload.  A request is rebuilt in place, in the page of room kept
 * before each entry's payload, handed to fuse_session_process_buf(), and
 * its reply caught on the same thread by the session's writev or splice
 * hook.  It knows nothing of sections or names, and decides nothing about
 * INIT: wire.c's hooks ask for io_uring and report the answer.
 *
 * A request whose answer must wait (a seal: ns_open.c) is parked: its
 * entry stays out of the ring, its answer comes from another thread and
 * is put into the entry there, and the queue thread, woken through an
 * eventfd, commits it.  The kernel finds a committed request by its
 * unique id in the queue's list and does not mind which thread commits,
 * but the commit command becomes the entry's next fetch, completed on
 * the ring it was submitted to and copied out as task work of the
 * submitting thread: so a commit belongs on the queue's own ring, from
 * its own thread.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/sysinfo.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>

#include "kabi.h"
#include "log.h"
#include "uring.h"
#include "wire.h"

/*
 * Entries per queue.  A queue's thread serves one request at a time; a
 * second entry lets the kernel hand over the next request while the
 * first is being answered.  The other two may be parked (uring_park());
 * the kernel holds a queue's requests while none of its entries is free,
 * so two always stay for serving.
 */
#define UR_ENTRIES	4
#define UR_PARK_MAX	(UR_ENTRIES - 2)
#define UR_PAGE		4096

struct ur_queue;

/* One ring entry: buffers the kernel fills with a request. */
struct ur_ent {
	struct ur_queue *q;
	struct fuse_uring_req_header hdr;	/* registered: iov[0] */
	struct iovec iov[2];
	char *area;			/* mmap: a page of room, then payload */
	char *payload;			/* registered: iov[1] */
	uint64_t unique;		/* the request being answered */
	bool registered;		/* the kernel has taken it once */
	bool replied;			/* parked: under q->park_lock */
	bool parked;			/* answered by another thread */
	bool left;			/* parked, and serve_request() is done */
	struct ur_ent *done_next;	/* q->done */
};

struct ur_queue {
	unsigned int qid;		/* the CPU it serves */
	pthread_t thread;
	bool started;			/* thread created */
	bool ring_ok;			/* ring initialised */
	struct io_uring ring;
	int wake_fd;			/* eventfd: uring_stop() */
	uint64_t wake_buf;
	pthread_mutex_t park_lock;
	unsigned int nparked;		/* park_lock */
	struct ur_ent *done;		/* parked and answered; park_lock */
	int done_fd;			/* eventfd: done has entries */
	uint64_t done_buf;
	struct ur_ent ents[UR_ENTRIES];
};

/* What the queue threads are told, under ur.lock. */
enum ur_phase { UR_SETUP, UR_GO, UR_QUIT };

static struct {
	struct fuse_session *se;
	int dev_fd;
	size_t payload_sz;		/* bytes per entry's payload */
	unsigned int nqueues;
	struct ur_queue *queues;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum ur_phase phase;
	unsigned int nready, nfailed;	/* threads done with setup */
	atomic_bool prepared;
	atomic_bool failed;		/* a queue ended the mount */
	atomic_uint nparked;		/* entries parked in all queues */
} ur = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
};

/* The ring entry this thread is answering, for the reply hooks. */
static __thread struct ur_ent *ur_current;

/* ---- setup ---- */

/* The kernel makes one queue per possible CPU, numbered by CPU. */
static unsigned int possible_cpus(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
	unsigned int lo, hi, count = 0;
	int c;

	if (!f)
		return 0;
	while (fscanf(f, "%u", &lo) == 1) {
		hi = lo;
		c = fgetc(f);
		if (c == '-' && fscanf(f, "%u", &hi) == 1)
			c = fgetc(f);
		count += hi - lo + 1;
		if (c != ',')
			break;
	}
	fclose(f);
	return count;
}

/* Pinned where it serves; a CPU we may not run on is served unpinned. */
static void pin_to(unsigned int cpu)
{
	char name[16];
	cpu_set_t set;

	snprintf(name, sizeof(name), "sectionfs-q%u", cpu);
	pthread_setname_np(pthread_self(), name);

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
		log_debug("io_uring queue %u runs unpinned", cpu);
}

static int ent_setup(struct ur_queue *q, struct ur_ent *e)
{
	e->q = q;
	e->area = mmap(NULL, UR_PAGE + ur.payload_sz, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (e->area == MAP_FAILED) {
		e->area = NULL;
		return -errno;
	}
	e->payload = e->area + UR_PAGE;
	e->iov[0] = (struct iovec){ &e->hdr, sizeof(e->hdr) };
	e->iov[1] = (struct iovec){ e->payload, ur.payload_sz };
	return 0;
}

static int queue_setup(struct ur_queue *q)
{
	int err;

	pin_to(q->qid);
	/* Entries, their commits and the wake-up read, with room. */
	err = io_uring_queue_init(4 * UR_ENTRIES, &q->ring,
				  IORING_SETUP_SQE128);
	if (err)
		return err;
	q->ring_ok = true;
	q->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (q->wake_fd < 0)
		return -errno;
	q->done_fd = eventfd(0, EFD_CLOEXEC);
	if (q->done_fd < 0)
		return -errno;
	for (int i = 0; i < UR_ENTRIES; i++) {
		err = ent_setup(q, &q->ents[i]);
		if (err)
			return err;
	}
	return 0;
}

/* The ring goes first: its commands point into the buffers. */
static void queue_free(struct ur_queue *q)
{
	if (q->ring_ok)
		io_uring_queue_exit(&q->ring);
	for (int i = 0; i < UR_ENTRIES; i++)
		if (q->ents[i].area)
			munmap(q->ents[i].area, UR_PAGE + ur.payload_sz);
	if (q->wake_fd >= 0)
		close(q->wake_fd);
	if (q->done_fd >= 0)
		close(q->done_fd);
	pthread_mutex_destroy(&q->park_lock);
}

/* ---- serving ---- */

static void queue_cmd(struct ur_queue *q, struct ur_ent *e, uint32_t op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
	struct fuse_uring_cmd_req *req;

	/* Each entry has at most one command queued, so this is for form. */
	while (!sqe) {
		io_uring_submit(&q->ring);
		sqe = io_uring_get_sqe(&q->ring);
	}
	memset(sqe, 0, 2 * sizeof(*sqe));	/* an SQE128 */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = ur.dev_fd;
	sqe->cmd_op = op;
	sqe->user_data = (uintptr_t)e;
	req = (struct fuse_uring_cmd_req *)sqe->cmd;
	req->qid = q->qid;
	if (op == FUSE_IO_URING_CMD_REGISTER) {
		sqe->addr = (uintptr_t)e->iov;
		sqe->len = 2;
	} else {
		req->commit_id = e->unique;
	}
}

static void reply_error(struct ur_ent *e, int err)
{
	struct fuse_out_header out = {
		.len = sizeof(out), .error = -err, .unique = e->unique,
	};

	memcpy(e->hdr.in_out, &out, sizeof(out));
	e->hdr.ring_ent_in_out.payload_sz = 0;
	e->replied = true;
}

/* Under q->park_lock: e is no longer parked. */
static void unpark(struct ur_queue *q, struct ur_ent *e)
{
	e->parked = false;
	e->left = false;
	q->nparked--;
	atomic_fetch_sub(&ur.nparked, 1);
}

/*
 * Give a ring request to libfuse as /dev/fuse would have: the in header
 * and the operation's header go back in front of the payload, in the
 * room the entry keeps there.  Every ring request must be committed, so
 * one left unanswered gets EIO, unless it was parked: then it is
 * committed when answered (commit_done()).  True when e is to be
 * committed now.
 */
static bool serve_request(struct ur_ent *e)
{
	struct fuse_in_header in;
	struct fuse_uring_ent_in_out io;
	struct fuse_buf buf = { 0 };
	size_t op_len;
	char *start;

	memcpy(&in, e->hdr.in_out, sizeof(in));
	memcpy(&io, &e->hdr.ring_ent_in_out, sizeof(io));
	e->registered = true;
	e->unique = io.commit_id;
	e->replied = false;
	/* What is neither in header nor payload is the operation's header. */
	op_len = in.len - sizeof(in) - io.payload_sz;	/* huge if negative */
	if (op_len > FUSE_URING_OP_IN_OUT_SZ || io.payload_sz > ur.payload_sz) {
		log_err("malformed io_uring request (opcode %u, %u bytes)",
			in.opcode, in.len);
		reply_error(e, EIO);
		return true;
	}
	start = e->payload - op_len - sizeof(in);
	memcpy(start, &in, sizeof(in));
	memcpy(start + sizeof(in), e->hdr.op_in, op_len);
	buf.mem = start;
	buf.size = in.len;
	wire_recognise(start, in.len);
	if (!wire_ring_request(start, in.len)) {
		reply_error(e, EIO);
		return true;
	}

	ur_current = e;
	fuse_session_process_buf(ur.se, &buf);
	ur_current = NULL;
	/* Only this thread parks e, so e->parked needs no lock here. */
	if (e->parked) {
		bool left;

		pthread_mutex_lock(&e->q->park_lock);
		left = !e->replied;
		if (left)
			e->left = true;	/* take_parked() hands it back */
		else
			unpark(e->q, e);	/* answered already: commit */
		pthread_mutex_unlock(&e->q->park_lock);
		if (left)
			return false;
	}
	if (!e->replied) {
		log_err("io_uring request (opcode %u) left unanswered", in.opcode);
		reply_error(e, EIO);
	}
	return true;
}

static void arm_done(struct ur_queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

	while (!sqe) {
		io_uring_submit(&q->ring);
		sqe = io_uring_get_sqe(&q->ring);
	}
	io_uring_prep_read(sqe, q->done_fd, &q->done_buf,
			   sizeof(q->done_buf), 0);
	io_uring_sqe_set_data(sqe, q);
}

/* Parked entries answered by other threads: commit them here. */
static void commit_done(struct ur_queue *q)
{
	struct ur_ent *e, *next;

	pthread_mutex_lock(&q->park_lock);
	e = q->done;
	q->done = NULL;
	pthread_mutex_unlock(&q->park_lock);
	for (; e; e = next) {
		next = e->done_next;
		queue_cmd(q, e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
	}
	arm_done(q);
}

/*
 * A queue that stops while its CPU's callers still need it leaves them
 * waiting until the mount goes (and, before the rings are ready, every
 * caller).  So a failure is fatal: the daemon ends the mount the way
 * SIGTERM does, and uring_stop() reports it.
 */
static void queue_failed(struct ur_queue *q, const char *what, int err)
{
	log_err("io_uring queue %u: %s: %s; ending the mount", q->qid, what,
		strerror(-err));
	atomic_store(&ur.failed, true);
	fuse_session_exit(ur.se);
	kill(getpid(), SIGTERM);	/* wakes libfuse's loop */
}

/*
 * One completion.  e is NULL for uring_stop()'s wake-up; res is 0 when
 * the kernel has put a request in e, and otherwise why it gave e back.
 */
static void complete(struct ur_queue *q, struct ur_ent *e, int res,
		     int *live, bool *stop)
{
	if (!e) {
		*stop = true;
		return;
	}
	switch (res) {
	case 0:
		if (serve_request(e))
			queue_cmd(q, e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
		return;
	case -EAGAIN:
	case -EINTR:
		queue_cmd(q, e, e->registered ? FUSE_IO_URING_CMD_COMMIT_AND_FETCH :
			  FUSE_IO_URING_CMD_REGISTER);
		return;
	case -ENOTCONN:
	case -ECONNABORTED:
	case -ECANCELED:
		break;			/* unmount, abort, or our own stop */
	case -EINVAL:
	case -ENOMEM:
		/* A refused registration turns the kernel back to /dev/fuse. */
		if (!e->registered) {
			log_warn("io_uring queue %u: register: %s; requests stay on /dev/fuse",
				 q->qid, strerror(-res));
			break;
		}
		/* fall through */
	default:
		queue_failed(q, e->registered ? "commit" : "register", res);
		*stop = true;
		break;
	}
	--*live;
}

/* Commit the answers and wait for the next requests in one call. */
static void queue_serve(struct ur_queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
	struct io_uring_cqe *cqe;
	int live = UR_ENTRIES;
	bool stop = false;

	io_uring_prep_read(sqe, q->wake_fd, &q->wake_buf,
			   sizeof(q->wake_buf), 0);
	io_uring_sqe_set_data(sqe, NULL);
	arm_done(q);
	for (int i = 0; i < UR_ENTRIES; i++)
		queue_cmd(q, &q->ents[i], FUSE_IO_URING_CMD_REGISTER);

	while (!stop && live > 0) {
		unsigned int head, seen = 0;
		int ret = io_uring_submit_and_wait(&q->ring, 1);

		if (ret < 0 && ret != -EINTR && ret != -EAGAIN) {
			queue_failed(q, "submit", ret);
			return;
		}
		/* All of a batch is served, even when told to stop. */
		io_uring_for_each_cqe(&q->ring, head, cqe) {
			void *data = io_uring_cqe_get_data(cqe);

			seen++;
			if (data == q)
				commit_done(q);
			else
				complete(q, data, cqe->res, &live, &stop);
		}
		io_uring_cq_advance(&q->ring, seen);
	}
	/* Commit what was answered: its callers are waiting for it. */
	io_uring_submit(&q->ring);
}

static void *queue_main(void *arg)
{
	struct ur_queue *q = arg;
	int err = queue_setup(q);
	bool go;

	pthread_mutex_lock(&ur.lock);
	if (err) {
		log_info("io_uring queue %u: %s; requests stay on /dev/fuse",
			 q->qid, strerror(-err));
		ur.nfailed++;
	} else {
		ur.nready++;
	}
	pthread_cond_broadcast(&ur.cond);
	while (ur.phase == UR_SETUP)
		pthread_cond_wait(&ur.cond, &ur.lock);
	go = ur.phase == UR_GO && !err;
	pthread_mutex_unlock(&ur.lock);
	if (go)
		queue_serve(q);
	return NULL;
}

/* ---- interface ---- */

static void set_phase(enum ur_phase phase)
{
	pthread_mutex_lock(&ur.lock);
	if (ur.phase == UR_SETUP)
		ur.phase = phase;
	pthread_cond_broadcast(&ur.cond);
	pthread_mutex_unlock(&ur.lock);
}

int uring_prepare(struct fuse_session *se, size_t max_payload)
{
	unsigned int started = 0;
	int err = 0;

	ur.se = se;
	ur.dev_fd = fuse_session_fd(se);
	ur.payload_sz = (max_payload + UR_PAGE - 1) & ~(size_t)(UR_PAGE - 1);
	/*
	 * The kernel waits for every possible CPU's queue: a count too small
	 * would hold all requests for ever.  One below the CPUs present
	 * means the count cannot be trusted.
	 */
	ur.nqueues = possible_cpus();
	if (!ur.nqueues || ur.nqueues < (unsigned int)get_nprocs_conf()) {
		log_err("cannot count this machine's possible CPUs");
		return -ENOENT;
	}
	ur.queues = calloc(ur.nqueues, sizeof(*ur.queues));
	if (!ur.queues)
		return -ENOMEM;
	ur.phase = UR_SETUP;
	ur.nready = ur.nfailed = 0;
	for (unsigned int i = 0; i < ur.nqueues; i++) {
		ur.queues[i].qid = i;
		ur.queues[i].wake_fd = -1;
		ur.queues[i].done_fd = -1;
		pthread_mutex_init(&ur.queues[i].park_lock, NULL);
	}
	for (unsigned int i = 0; i < ur.nqueues; i++) {
		struct ur_queue *q = &ur.queues[i];

		err = -pthread_create(&q->thread, NULL, queue_main, q);
		if (err)
			break;
		q->started = true;
		started++;
	}
	pthread_mutex_lock(&ur.lock);
	while (ur.nready + ur.nfailed < started)
		pthread_cond_wait(&ur.cond, &ur.lock);
	if (!err && ur.nfailed)
		err = -EIO;
	pthread_mutex_unlock(&ur.lock);
	if (err) {
		uring_stop();
		return err;
	}
	atomic_store(&ur.prepared, true);
	return 0;
}

bool uring_prepared(void)
{
	return atomic_load(&ur.prepared);
}

void uring_start(bool answered)
{
	set_phase(answered ? UR_GO : UR_QUIT);
}

/* Put a reply gathered in iov, whose header is out, into e. */
static ssize_t fill_reply(struct ur_ent *e, const struct iovec *iov,
			  int count, const struct fuse_out_header *out)
{
	size_t skip = sizeof(*out), at = 0, total = 0;

	for (int i = 0; i < count; i++)
		total += iov[i].iov_len;
	if (total - sizeof(*out) > ur.payload_sz) {
		log_err("reply of %zu bytes does not fit its io_uring entry",
			total);
		reply_error(e, EIO);
		return (ssize_t)total;
	}
	for (int i = 0; i < count; i++) {
		const char *src = (const char *)iov[i].iov_base + skip;
		size_t n = iov[i].iov_len - skip;

		/* A reply built in the payload itself is already there. */
		if (n && src != e->payload + at)
			memcpy(e->payload + at, src, n);
		at += n;
		skip = 0;
	}
	memcpy(e->hdr.in_out, out, sizeof(*out));
	e->hdr.ring_ent_in_out.payload_sz = (uint32_t)at;
	e->replied = true;
	return (ssize_t)total;
}

/*
 * The answer, from another thread, to a parked request: into its entry,
 * and to its queue thread for the commit (at once when serve_request()
 * is done with it, else serve_request() commits it itself).
 */
static ssize_t take_parked(const struct iovec *iov, int count,
			   const struct fuse_out_header *out)
{
	for (unsigned int i = 0; ur.queues && i < ur.nqueues; i++) {
		struct ur_queue *q = &ur.queues[i];

		pthread_mutex_lock(&q->park_lock);
		for (int j = 0; j < UR_ENTRIES; j++) {
			struct ur_ent *e = &q->ents[j];
			uint64_t one = 1;
			ssize_t res;

			if (!e->parked || e->replied || e->unique != out->unique)
				continue;
			res = fill_reply(e, iov, count, out);
			if (e->left) {
				unpark(q, e);
				e->done_next = q->done;
				q->done = e;
				if (write(q->done_fd, &one, sizeof(one)) < 0)
					log_err("io_uring queue %u: cannot wake it: %s",
						q->qid, strerror(errno));
			}
			pthread_mutex_unlock(&q->park_lock);
			return res;
		}
		pthread_mutex_unlock(&q->park_lock);
	}
	return -1;
}

ssize_t uring_take_reply(const struct iovec *iov, int count)
{
	struct ur_ent *e = ur_current;
	struct fuse_out_header out;

	if (count < 1 || iov[0].iov_len < sizeof(out))
		return -1;
	memcpy(&out, iov[0].iov_base, sizeof(out));
	if (e && !e->replied && out.unique == e->unique)
		return fill_reply(e, iov, count, &out);
	if (atomic_load(&ur.nparked))
		return take_parked(iov, count, &out);
	return -1;
}

bool uring_park(void)
{
	struct ur_ent *e = ur_current;
	bool ok;

	if (!e)
		return true;	/* /dev/fuse: any thread may answer */
	pthread_mutex_lock(&e->q->park_lock);
	ok = !e->parked && !e->replied && e->q->nparked < UR_PARK_MAX;
	if (ok) {
		e->parked = true;
		e->q->nparked++;
		atomic_fetch_add(&ur.nparked, 1);
	}
	pthread_mutex_unlock(&e->q->park_lock);
	return ok;
}

bool uring_parked(void)
{
	return atomic_load(&ur.nparked) > 0;
}

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

bool uring_answering(void)
{
	return ur_current && !ur_current->replied;
}

ssize_t uring_take_spliced(int pipe_fd, size_t len)
{
	struct ur_ent *e = ur_current;
	struct fuse_out_header out;
	struct iovec iov[2];
	char *rest;
	ssize_t res;
	int err;

	if (len < sizeof(out)) {
		errno = EINVAL;
		return -1;
	}
	err = read_full(pipe_fd, &out, sizeof(out));
	if (!err && out.unique != e->unique) {
		/* Not this entry's answer: it goes to /dev/fuse whole. */
		rest = malloc(len - sizeof(out));
		err = rest ? read_full(pipe_fd, rest, len - sizeof(out)) :
			     -ENOMEM;
		iov[0] = (struct iovec){ &out, sizeof(out) };
		iov[1] = (struct iovec){ rest, len - sizeof(out) };
		res = err ? -1 : writev(ur.dev_fd, iov, 2);
		free(rest);
		if (err)
			errno = -err;
		return res;
	}
	if (!err && len - sizeof(out) > ur.payload_sz)
		err = -EOVERFLOW;
	if (!err)
		err = read_full(pipe_fd, e->payload, len - sizeof(out));
	if (err) {
		/* libfuse empties the pipe when told of the failure. */
		log_err("cannot read a reply back from its pipe: %s",
			strerror(-err));
		reply_error(e, EIO);
		errno = -err;
		return -1;
	}
	iov[0] = (struct iovec){ &out, sizeof(out) };
	iov[1] = (struct iovec){ e->payload, len - sizeof(out) };
	return uring_take_reply(iov, 2);
}

bool uring_stop(void)
{
	if (!ur.queues)
		return atomic_load(&ur.failed);
	set_phase(UR_QUIT);
	for (unsigned int i = 0; i < ur.nqueues; i++) {
		struct ur_queue *q = &ur.queues[i];
		uint64_t one = 1;

		if (!q->started)
			continue;
		if (q->wake_fd >= 0 && write(q->wake_fd, &one, sizeof(one)) < 0)
			log_warn("cannot stop io_uring queue %u: %s", q->qid,
				 strerror(errno));
		pthread_join(q->thread, NULL);
	}
	for (unsigned int i = 0; i < ur.nqueues; i++)
		queue_free(&ur.queues[i]);
	free(ur.queues);
	ur.queues = NULL;
	atomic_store(&ur.prepared, false);
	return atomic_load(&ur.failed);
}
