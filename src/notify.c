/*
 * notify.c - the notice queue and the thread that sends it.
 *
 * Owns the order and the sending of the notices the daemon gives the
 * kernel unasked (notify.h says why they have a thread of their own).
 * Notices are sent in the order they were queued; a caller that must
 * know its notice went out first (a direct write, whose range must be
 * dropped before the writer hears back) waits for it, but only briefly.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keeper.h"
#include "log.h"
#include "notify.h"

/* How long a caller waits for its notice before going on without. */
#define NOTIFY_WAIT_NS	(50 * 1000 * 1000)
/* Notices set aside, each with room for any name. */
#define NOTIFY_SPARES	16

enum notice_kind { NOTICE_INVAL, NOTICE_DELETE };

struct notice {
	struct notice *next;
	enum notice_kind kind;
	fuse_ino_t ino;
	fuse_ino_t parent;		/* delete */
	off_t off, len;			/* inval */
	bool spare;			/* goes back to the spares */
	char name[];			/* delete */
};

/* A notice with room for a name of len bytes, or NULL; a spare when
 * none can be allocated. */
static struct notice *new_notice(struct notifier *n, size_t len)
{
	struct notice *x = calloc(1, sizeof(*x) + len + 1);

#ifdef SFS_TEST_HOOKS
	if (x && keeper_test_fault("notice-alloc", 0)) {
		free(x);
		x = NULL;
	}
#endif
	if (x || len > NAME_MAX || !n->running)
		goto out;
	pthread_mutex_lock(&n->lock);
	x = n->spares;
	if (x) {
		n->spares = x->next;
		x->next = NULL;		/* it ends the queue it joins */
	}
	pthread_mutex_unlock(&n->lock);
out:
	if (!x)
		log_warn("out of memory: a notice to the kernel is dropped");
	return x;
}

static void free_spares(struct notifier *n)
{
	struct notice *x;

	while ((x = n->spares)) {
		n->spares = x->next;
		free(x);
	}
}

/* Done with x; the lock held. */
static void put_notice(struct notifier *n, struct notice *x)
{
	if (x->spare) {
		x->next = n->spares;
		n->spares = x;
	} else {
		free(x);
	}
}

static void send_notice(struct fuse_session *se, const struct notice *x)
{
	int err;

	if (x->kind == NOTICE_INVAL)
		err = fuse_lowlevel_notify_inval_inode(se, x->ino, x->off,
						       x->len);
	else
		err = fuse_lowlevel_notify_delete(se, x->parent, x->ino,
						  x->name, strlen(x->name));
	/* ENOENT: the kernel has already forgotten the inode or name. */
	if (err && err != -ENOENT)
		log_debug("notice to the kernel failed: %s", strerror(-err));
}

static void *notify_main(void *arg)
{
	struct notifier *n = arg;
	struct notice *x;

	pthread_mutex_lock(&n->lock);
	for (;;) {
		while (!n->head && !n->stopping)
			pthread_cond_wait(&n->wake, &n->lock);
		x = n->head;
		if (!x)
			break;		/* stopping, and all sent */
		n->head = x->next;
		if (!n->head)
			n->tail = NULL;
		pthread_mutex_unlock(&n->lock);
		send_notice(n->se, x);
		pthread_mutex_lock(&n->lock);
		put_notice(n, x);
		n->done++;
		pthread_cond_broadcast(&n->sent);
	}
	pthread_mutex_unlock(&n->lock);
	return NULL;
}

int notify_start(struct notifier *n, struct fuse_session *se)
{
	pthread_condattr_t attr;
	int i, err;

	memset(n, 0, sizeof(*n));
	n->se = se;
	pthread_mutex_init(&n->lock, NULL);
	pthread_cond_init(&n->wake, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&n->sent, &attr);
	pthread_condattr_destroy(&attr);
	for (i = 0; i < NOTIFY_SPARES; i++) {
		struct notice *x = calloc(1, sizeof(*x) + NAME_MAX + 1);

		if (!x) {
			err = ENOMEM;
			goto fail;
		}
		x->spare = true;
		x->next = n->spares;
		n->spares = x;
	}
	err = pthread_create(&n->thread, NULL, notify_main, n);
	if (err)
		goto fail;
	n->running = true;
	return 0;
fail:
	log_err("cannot start the notice thread: %s", strerror(err));
	free_spares(n);
	return -err;
}

/*
 * Once the session loop has ended, nothing will answer the requests a
 * notice may be waiting on, and the mount is about to go: queued notices
 * are dropped, and a thread still held up in one is left to end with the
 * process (its mutex and conditions are then left alone too).
 */
void notify_stop(struct notifier *n)
{
	struct timespec until;
	struct notice *x;

	if (n->running) {
		pthread_mutex_lock(&n->lock);
		n->stopping = true;
		while ((x = n->head)) {
			n->head = x->next;
			put_notice(n, x);
		}
		n->tail = NULL;
		pthread_cond_signal(&n->wake);
		pthread_mutex_unlock(&n->lock);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 2;
		if (pthread_timedjoin_np(n->thread, NULL, &until)) {
			log_err("the notice thread is held up; leaving it");
			return;
		}
		n->running = false;
	}
	free_spares(n);
	pthread_cond_destroy(&n->sent);
	pthread_cond_destroy(&n->wake);
	pthread_mutex_destroy(&n->lock);
}

/* Wait until notice number seq is sent, or NOTIFY_WAIT_NS have gone. */
static void wait_sent(struct notifier *n, uint64_t seq)
{
	struct timespec until;
	int err = 0;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += NOTIFY_WAIT_NS;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (n->done < seq && err != ETIMEDOUT)
		err = pthread_cond_timedwait(&n->sent, &n->lock, &until);
}

/* Queue x for the thread; with none (stopped), x is dropped. */
static void queue(struct notifier *n, struct notice *x, bool wait)
{
	uint64_t seq;

	if (!n->running) {
		if (!x->spare)
			free(x);
		return;
	}
	pthread_mutex_lock(&n->lock);
	if (n->stopping) {
		put_notice(n, x);
		pthread_mutex_unlock(&n->lock);
		return;
	}
	if (n->tail)
		n->tail->next = x;
	else
		n->head = x;
	n->tail = x;
	seq = ++n->queued;
	pthread_cond_signal(&n->wake);
	if (wait)
		wait_sent(n, seq);
	pthread_mutex_unlock(&n->lock);
}

void notify_inval(struct notifier *n, fuse_ino_t ino, off_t off, off_t len,
		  bool wait)
{
	struct notice *x = new_notice(n, 0);

	if (!x)
		return;
	x->kind = NOTICE_INVAL;
	x->ino = ino;
	x->off = off;
	x->len = len;
	queue(n, x, wait);
}

void notify_delete(struct notifier *n, fuse_ino_t parent, fuse_ino_t ino,
		   const char *name)
{
	size_t len = strlen(name);
	struct notice *x = new_notice(n, len);

	if (!x)
		return;
	x->kind = NOTICE_DELETE;
	x->parent = parent;
	x->ino = ino;
	memcpy(x->name, name, len + 1);
	queue(n, x, false);
}
