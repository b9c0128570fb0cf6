/*
 * notify.h - what the daemon tells the kernel unasked, from a thread of
 * its own.
 *
 * Dropping a range of a file's page cache, or a name, makes the kernel
 * take locks (a page's, a directory's) that a request still waiting for
 * the daemon may hold: a fault reading that page, a create in that
 * directory.  Sent from a request's own thread, such a notice waits for
 * ever when no other thread is free to answer that request (always so
 * with -s, and over io_uring, where a reply reaches the kernel only once
 * its handler has returned).  So request handlers queue notices here, and
 * one thread sends them, in order; none is ever sent from a request's
 * thread.  A few notices are set aside for when memory runs out.
 */
#ifndef SECTIONFS_NOTIFY_H
#define SECTIONFS_NOTIFY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <fuse_lowlevel.h>

struct notice;

struct notifier {
	struct fuse_session *se;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* a notice was queued, or stop */
	pthread_cond_t sent;		/* done moved */
	struct notice *head, *tail;
	struct notice *spares;		/* set aside; lock */
	uint64_t queued, done;		/* notices queued and sent so far */
	bool running, stopping;
};

/*
 * Start the thread (after fuse_daemonize(): threads do not survive its
 * fork).  Returns 0 or -errno: a server cannot serve without it.
 */
int notify_start(struct notifier *n, struct fuse_session *se);

/*
 * After the session loop: drop what is still queued (nothing would answer
 * the requests it may wait on) and end the thread.
 */
void notify_stop(struct notifier *n);

/*
 * Drop [off, off + len) of ino's page cache.  With wait, return once it
 * is done, or after a short while if it is held up (by a request this
 * thread would otherwise never let be answered): the notice is sent all
 * the same.
 */
void notify_inval(struct notifier *n, fuse_ino_t ino, off_t off, off_t len,
		  bool wait);

/* Tell the kernel that name in parent, naming ino, is gone. */
void notify_delete(struct notifier *n, fuse_ino_t parent, fuse_ino_t ino,
		   const char *name);

#endif /* SECTIONFS_NOTIFY_H */
