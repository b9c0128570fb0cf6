/*
 * uring.h - FUSE requests over io_uring, beside /dev/fuse.
 *
 * Where the kernel offers it (Linux >= 6.14 with the fuse module's
 * enable_uring set), each CPU gets a queue served by one daemon thread
 * pinned to it, and the kernel hands a request to the queue of the CPU
 * that made it.  The answering thread then runs where the caller sleeps:
 * no other CPU is woken for the round trip, which is most of what a name
 * operation costs.  Everything else (FORGET, INTERRUPT, notices, and the
 * requests before the rings are up) keeps using /dev/fuse and libfuse's
 * own loop.
 */
#ifndef SECTIONFS_URING_H
#define SECTIONFS_URING_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <fuse_lowlevel.h>

#ifdef HAVE_LIBURING
/*
 * Set up one ring and its buffers per CPU, each on its own thread, for
 * requests of up to max_payload bytes past their headers.  Returns 0 when
 * every queue is ready to register, -errno (all undone) otherwise.  Call
 * from INIT, before it is answered: only then may INIT ask for io_uring.
 */
int uring_prepare(struct fuse_session *se, size_t max_payload);

/* True between a successful uring_prepare() and uring_stop(). */
bool uring_prepared(void);

/*
 * INIT has been answered with FUSE_OVER_IO_URING: register the queues.
 * With answered false (the answer did not reach the kernel, or asked for
 * nothing) the threads end instead.
 */
void uring_start(bool answered);

/*
 * For the session's writev and splice hooks.  uring_answering(): the
 * calling thread is answering a ring request and has not replied yet.
 * uring_take_reply() then puts a reply gathered in iov into that request's
 * ring entry and returns its length, or returns -1, having consumed
 * nothing, when the message is not that reply (a notice), which the
 * caller writes to /dev/fuse.  uring_take_spliced() takes the len bytes
 * libfuse left in pipe_fd the same way; it returns the length, or -1 with
 * errno (the request is then answered EIO and libfuse empties the pipe).
 */
bool uring_answering(void);
ssize_t uring_take_reply(const struct iovec *iov, int count);
ssize_t uring_take_spliced(int pipe_fd, size_t len);

/*
 * The request the calling thread serves will be answered later, by
 * another thread: true when it may be.  On /dev/fuse always; on a ring
 * its entry is parked until the answer, when its queue has one to spare
 * (each keeps two for serving).  The answer then reaches
 * uring_take_reply() on the answering thread, which uring_parked() tells
 * the writev hook to try.
 */
bool uring_park(void);
bool uring_parked(void);

/*
 * End the queue threads and free the rings; safe without a prepare.
 * Requests already on a ring wait for the unmount, like those on
 * /dev/fuse once the loop has ended.  True when a queue failed, which
 * ends the mount (its thread makes libfuse's loop return as SIGTERM
 * does, so that the callers of its CPU are not left waiting).
 */
bool uring_stop(void);

#else /* !HAVE_LIBURING: built without liburing, requests use /dev/fuse */

static inline int uring_prepare(struct fuse_session *se, size_t max_payload)
{
	return -EOPNOTSUPP;
}
static inline bool uring_prepared(void) { return false; }
static inline bool uring_answering(void) { return false; }
static inline bool uring_park(void) { return true; }
static inline bool uring_parked(void) { return false; }
static inline void uring_start(bool answered) { }
static inline ssize_t uring_take_reply(const struct iovec *iov, int count)
{
	return -1;
}
static inline ssize_t uring_take_spliced(int pipe_fd, size_t len)
{
	return -1;
}
static inline bool uring_stop(void) { return false; }

#endif /* HAVE_LIBURING */

#endif /* SECTIONFS_URING_H */
