/*
 * ns_open.c - opens of sections, their lifetime, seals and attributes.
 *
 * Owns a section node's open and writer counts, the lifetime rule that
 * decides when a release destroys a section, the user.sectionfs.*
 * attributes, and adding seals, including the sealer thread that waits
 * for a section's writers (cached path) or pinned pages (memfd) to go
 * before it seals and answers.  It never changes a name except to
 * take every name of a section whose lifetime ended, and it never replies
 * to the kernel itself: the names that went are handed back for the
 * caller to tell it, and a seal that waits is answered through the
 * caller's struct ns_answer.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>

#include "ns_internal.h"
#include "xattr.h"

/*
 * A handle is opened on n's section; ns->lock held.  Returns what
 * ns_open_undo() needs to take it back: 0, or for an open counted under
 * lifetime handle the lifetime's epoch plus one.
 */
unsigned int count_open(struct node *n, int flags)
{
	n->u.file.opens++;
	n->u.file.writers += is_writer(flags);
	if (n->u.file.lifetime != LIFETIME_HANDLE)
		return 0;
	if (n->u.file.handle_opens < UINT_MAX)
		n->u.file.handle_opens++;
	return n->u.file.handle_epoch + 1u;
}

/* A handle on n's section is gone (released, or its open undone). */
static void count_close(struct ns *ns, struct node *n, int flags)
{
	record_node(ns, n);
	n->u.file.opens--;
	if (!is_writer(flags))
		return;
	/* A seal may be waiting for the last writer (the sealer). */
	if (--n->u.file.writers == 0)
		pthread_cond_broadcast(&ns->writers_gone);
}

/*
 * A lifetime that becomes handle counts only handles opened from then
 * on.  The kernel reports a close asynchronously: a handle closed just
 * before the change may still be open here, and its late release must
 * not destroy a section whose owner set handle after closing it (as
 * sectionctl create --lifetime handle does).
 */
static void set_lifetime(struct ns *ns, fuse_ino_t ino,
			 enum lifetime_mode lifetime)
{
	struct node *n;

	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	if (!n || !node_sec(n))
		goto out;	/* gone since its attributes were read */
	if (lifetime == LIFETIME_HANDLE &&
	    n->u.file.lifetime != LIFETIME_HANDLE) {
		n->u.file.handle_opens = 0;
		n->u.file.handle_epoch++;
	}
	n->u.file.lifetime = lifetime;
	record_node(ns, n);
out:
	ns_leave(ns);
}

/* ---- open ---- */

int ns_open(struct ns *ns, fuse_ino_t ino, int flags, struct section **out,
	    unsigned int *undo)
{
	struct node *n;
	int err = 0;

	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	if (!n) {
		ns_leave(ns);
		return -ESTALE;
	}
	/* A seal is being added that writers wait for: see it first. */
	while (node_sec(n) && is_writer(flags) && n->u.file.sealing)
		pthread_cond_wait(&ns->sealed, &ns->lock);
	if (is_dir(n))
		err = -EISDIR;
	else if (!node_sec(n))
		err = -ENXIO;	/* special files are opened by the kernel */
	else if (!n->u.file.sec->writable && is_writer(flags))
		err = -EACCES;	/* the creator could not write the file */
	else if (is_writer(flags) &&
		 (atomic_load(&n->u.file.sec->seals) & F_SEAL_WRITE))
		err = -EPERM;	/* a writable view would slip past the seal */
	if (!err) {
		section_get(n->u.file.sec);
		*out = n->u.file.sec;
		*undo = count_open(n, flags);
		record_node(ns, n);
	}
	ns_leave(ns);
	return err;
}

void ns_open_undo(struct ns *ns, fuse_ino_t ino, int flags, unsigned int undo)
{
	struct node *n;

	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	if (!n || !node_sec(n)) {
		ns_leave(ns);
		return;
	}
	count_close(ns, n, flags);
	/* Only a count made since the lifetime last became handle. */
	if (undo && undo == n->u.file.handle_epoch + 1u &&
	    n->u.file.handle_opens > 0 && n->u.file.handle_opens < UINT_MAX)
		n->u.file.handle_opens--;
	ns_leave(ns);
}

/* Under the lock: take every name of n, recording them for the kernel. */
static struct section *expire_names(struct ns *ns, struct node *n,
				    struct ns_expired *gone)
{
	size_t count = 0, i = 0;
	struct dentry *d;

	for (d = n->names; d; d = d->next_name)
		count++;
	gone->names = calloc(count, sizeof(*gone->names));
	if (!gone->names)
		return NULL;	/* keep the names rather than lose track */
	while ((d = n->names)) {
		gone->names[i].parent = ino_of(ns, d->parent);
		gone->names[i].name = strdup(d->name);
		if (gone->names[i].name)
			i++;
		dentry_detach(ns, d);
		free(d);
		n->nlink--;
	}
	gone->n = i;
	return node_unnamed(ns, n);
}

/*
 * Under the lock: a handle of ino (opened with flags) is closed.  Sets
 * *expired when that took the names of a section whose lifetime was its
 * handles; returns a section to put once the lock is dropped.
 */
static struct section *closed(struct ns *ns, fuse_ino_t ino, int flags,
			      struct ns_expired *gone, int *expired)
{
	struct node *n = node_of(ns, ino);
	struct section *sec = NULL;

	memset(gone, 0, sizeof(*gone));
	gone->ino = ino;
	*expired = 0;
	if (!n || !node_sec(n))
		return NULL;
	count_close(ns, n, flags);
	if (n->u.file.opens == 0 && n->u.file.lifetime == LIFETIME_HANDLE &&
	    n->u.file.handle_opens > 0 && n->nlink > 0) {
		sec = expire_names(ns, n, gone);
		*expired = gone->names != NULL;
	}
	return sec;
}

int ns_release(struct ns *ns, fuse_ino_t ino, int flags,
	       struct ns_expired *gone)
{
	struct section *sec;
	int expired;

	pthread_mutex_lock(&ns->lock);
	sec = closed(ns, ino, flags, gone, &expired);
	ns_leave(ns);
	put_if(sec);
	return expired;
}

int ns_release_handle(struct ns *ns, uint64_t fh, fuse_ino_t ino, int flags,
		      struct ns_expired *gone)
{
	struct section *held = ns_handle_unlist(ns, false, fh, ino), *sec;
	int expired;

	if (!held) {
		memset(gone, 0, sizeof(*gone));
		return -EBADF;
	}
	/* One change: a death leaves both or neither, and a RELEASE sent
	 * again finds it done. */
	pthread_mutex_lock(&ns->lock);
	record_handle_gone(ns, fh);
	sec = closed(ns, ino, flags, gone, &expired);
	ns_leave(ns);
	ns_handle_unlisted(ns, fh, ino);
	section_put(held);
	put_if(sec);
	return expired;
}

void ns_expired_free(struct ns_expired *gone)
{
	size_t i;

	for (i = 0; i < gone->n; i++)
		free(gone->names[i].name);
	free(gone->names);
}

/* ---- attributes of sections ---- */

/* Pin the section behind ino with what reading its attributes needs. */
static int xattr_view_of(struct ns *ns, fuse_ino_t ino, struct xattr_view *v,
			 uid_t *owner)
{
	struct node *n;
	int err = 0;

	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	if (!n) {
		err = -ESTALE;
	} else if (node_sec(n)) {
		section_get(n->u.file.sec);
		v->sec = n->u.file.sec;
		v->lifetime = n->u.file.lifetime;
		if (owner)
			*owner = n->uid;
	} else {
		err = -ENODATA;		/* directories have none of ours */
	}
	ns_leave(ns);
	return err;
}

ssize_t ns_getxattr(struct ns *ns, fuse_ino_t ino, const char *name,
		    char *buf, size_t size)
{
	struct xattr_view v;
	ssize_t res = xattr_view_of(ns, ino, &v, NULL);

	if (res)
		return res;
	res = xattr_get(&v, name, buf, size);
	section_put(v.sec);
	return res;
}

ssize_t ns_listxattr(struct ns *ns, fuse_ino_t ino, char *buf, size_t size)
{
	struct xattr_view v;
	ssize_t res = xattr_view_of(ns, ino, &v, NULL);

	if (res)
		return res == -ENODATA ? 0 : res;
	res = xattr_list(&v, buf, size);
	section_put(v.sec);
	return res;
}

/*
 * The seals that may wait.  A write seal waits on the cached path for the
 * section's writers, and on either path inside memfd for pages still
 * pinned (a read reply on its way through a pipe, or pages a user
 * vmspliced into a pipe of their own: memfd waits up to 150 ms for those
 * before it says EBUSY).  Under the writeback cache the kernel accepts a
 * write past the end before the daemon sees it, so a grow seal waits for
 * writers too, and the section's later opens bypass the cache
 * (dp_direct_io()), their writes reaching the store, which refuses them.
 */
static unsigned int waits_for_writers(const struct ns *ns)
{
	return F_SEAL_WRITE | (ns->modes->writeback ? F_SEAL_GROW : 0);
}

/*
 * A seal that may wait is made by the sealer thread, never by a thread
 * that serves requests: a user who keeps a section open for writing, or
 * its pages pinned, and asks for its seal from many threads would
 * otherwise hold every serving thread of the mount for the length of the
 * wait.  The serving thread queues the seal and returns without
 * answering; the sealer answers it when the seal is made, or EBUSY when
 * its writers are still there after SEAL_WAIT_MS (RELEASE reaches the
 * daemon asynchronously to close(2), so a writer that closed a moment
 * ago may still be counted: the wait is for it).  What a user can make
 * the daemon hold is bounded: at most SEALS_PER_USER of theirs wait, and
 * SEALS_MAX in all; beyond that a seal is EBUSY at once.
 */
#define SEAL_WAIT_MS	200
#define SEALS_MAX	256
#define SEALS_PER_USER	16

struct ns_seal {
	TAILQ_ENTRY(ns_seal) link;	/* ns->seals, or the sealer's done;
					   ns->lock */
	struct node *n;			/* immutable; the kernel holds it
					   while its request is unanswered */
	struct section *sec;		/* immutable; a reference */
	unsigned int seals;		/* immutable: to add */
	uid_t uid;			/* immutable: who asked */
	bool writers;			/* immutable: wait for n's writers
					   (cached path) */
	int err;			/* the answer; the sealer's */
	struct timespec deadline;	/* immutable; CLOCK_MONOTONIC */
	struct ns_answer later;		/* immutable */
};

TAILQ_HEAD(ns_seal_list, ns_seal);

static struct timespec mono_after(long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static bool ts_before(struct timespec a, struct timespec b)
{
	return a.tv_sec < b.tv_sec ||
	       (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

/*
 * Queue a seal for the sealer: NS_LATER, or -errno when it cannot be.
 * may_wait() comes first, without ns->lock (it may take a lock of its
 * own): a seal refused after it is answered at once, as any other.
 */
static int seal_later(struct ns *ns, fuse_ino_t ino, uid_t uid,
		      struct section *sec, unsigned int seals,
		      const struct ns_answer *later)
{
	struct ns_seal *s, *it;
	unsigned int mine = 0;
	int err = 0;

	if (!later->may_wait(later->cookie))
		return -EBUSY;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->sec = sec;
	s->seals = seals;
	s->uid = uid;
	/* With passthrough the daemon cannot count views: memfd refuses
	 * the seal itself while one is writable. */
	s->writers = !ns->modes->passthrough;
	s->deadline = mono_after(SEAL_WAIT_MS);
	s->later = *later;
	pthread_mutex_lock(&ns->lock);
	s->n = node_of(ns, ino);
	TAILQ_FOREACH(it, &ns->seals, link)
		mine += it->uid == uid;
	if (!s->n) {
		err = -ESTALE;
	} else if (!ns->sealer_running || ns->sealer_stopping ||
	    ns->nseals >= SEALS_MAX || mine >= SEALS_PER_USER) {
		err = -EBUSY;
	} else {
		section_get(sec);
		TAILQ_INSERT_TAIL(&ns->seals, s, link);
		ns->nseals++;
		pthread_cond_broadcast(&ns->writers_gone);
	}
	ns_leave(ns);
	if (err)
		free(s);
	return err ? err : NS_LATER;
}

/*
 * ns->lock held, dropped while memfd seals: make seal s.  From the check
 * that finds no writers until the seal is made, opens for writing wait
 * (ns_open), so that an open either comes first (the seal waits for it)
 * or finds the seal (a writer is refused a write-sealed section; a
 * grow-sealed one is opened direct_io).  The lock is not held across
 * F_ADD_SEALS, which walks every page of the store.  With passthrough
 * nothing is counted and nothing waits: memfd keeps writers out itself.
 */
static void seal_now(struct ns *ns, struct ns_seal *s)
{
	if (s->writers)
		s->n->u.file.sealing++;
	ns_leave(ns);
	s->err = section_add_seals(s->sec, s->seals);
	pthread_mutex_lock(&ns->lock);
	record_node(ns, s->n);		/* its seals */
	if (s->writers && --s->n->u.file.sealing == 0)
		pthread_cond_broadcast(&ns->sealed);
}

/*
 * ns->lock held: move to done every seal that is answered now (made, or
 * past its deadline, or the sealer is stopping), making at most one.
 * Returns true with the earliest deadline still waited for in *next, or
 * false when none is.
 */
static bool seals_step(struct ns *ns, struct ns_seal_list *done,
		       struct timespec *next)
{
	struct timespec now = mono_after(0);
	struct ns_seal *s, *tmp;
	bool waiting = false;

	for (s = TAILQ_FIRST(&ns->seals); s; s = tmp) {
		tmp = TAILQ_NEXT(s, link);
		if (!ns->sealer_stopping && ts_before(now, s->deadline) &&
		    s->writers && s->n->u.file.writers > 0) {
			if (!waiting || ts_before(s->deadline, *next))
				*next = s->deadline;
			waiting = true;
			continue;
		}
		TAILQ_REMOVE(&ns->seals, s, link);
		ns->nseals--;
		TAILQ_INSERT_TAIL(done, s, link);
		/* Past its deadline before its turn came: as long a wait as
		 * any seal is given.  One seal made per step, so that the
		 * deadlines of the others are looked at in between. */
		if (ns->sealer_stopping || !ts_before(now, s->deadline)) {
			s->err = -EBUSY;
			continue;
		}
		seal_now(ns, s);
		*next = now;		/* look again at once */
		return true;
	}
	return waiting;
}

/* The sealer thread.  It answers from its own thread, never with
 * ns->lock held (an answer is a write to the kernel). */
static void *sealer_main(void *arg)
{
	struct ns *ns = arg;
	struct ns_seal_list done = TAILQ_HEAD_INITIALIZER(done);
	struct ns_seal *s;
	struct timespec next;
	bool waiting;

	pthread_setname_np(pthread_self(), "sectionfs-seal");
	pthread_mutex_lock(&ns->lock);
	for (;;) {
		waiting = seals_step(ns, &done, &next);
		if (!TAILQ_EMPTY(&done)) {
			ns_leave(ns);
			while ((s = TAILQ_FIRST(&done))) {
				TAILQ_REMOVE(&done, s, link);
				s->later.answer(s->later.cookie, s->err);
				section_put(s->sec);
				free(s);
			}
			pthread_mutex_lock(&ns->lock);
			continue;
		}
		if (ns->sealer_stopping && TAILQ_EMPTY(&ns->seals))
			break;
		record_commit(ns);	/* waiting lets the lock go */
		if (waiting)
			pthread_cond_timedwait(&ns->writers_gone, &ns->lock,
					       &next);
		else
			pthread_cond_wait(&ns->writers_gone, &ns->lock);
	}
	ns_leave(ns);
	return NULL;
}

int ns_sealer_start(struct ns *ns)
{
	int err = pthread_create(&ns->sealer, NULL, sealer_main, ns);

	if (err)
		return -err;
	pthread_mutex_lock(&ns->lock);
	ns->sealer_running = true;
	ns_leave(ns);
	return 0;
}

void ns_sealer_stop(struct ns *ns)
{
	bool running;

	pthread_mutex_lock(&ns->lock);
	running = ns->sealer_running;
	ns->sealer_stopping = true;
	pthread_cond_broadcast(&ns->writers_gone);
	ns_leave(ns);
	if (running)
		pthread_join(ns->sealer, NULL);
	pthread_mutex_lock(&ns->lock);
	ns->sealer_running = false;
	ns_leave(ns);
}

/* The seals of ino's section changed: into the record, under the lock. */
static void record_seals(struct ns *ns, fuse_ino_t ino)
{
	struct node *n;

	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	if (n)
		record_node(ns, n);
	ns_leave(ns);
}

/*
 * Seals only grow.  A write seal with passthrough is memfd's to refuse
 * while the store is mapped writable (views map it directly); on the
 * cached path sectionfs refuses it while the section is open for
 * writing.  Once sealed, ns_open keeps writers out on both paths.
 */
static int add_seals(struct ns *ns, fuse_ino_t ino, uid_t uid,
		     struct section *sec, unsigned int want,
		     const struct ns_answer *later)
{
	unsigned int have = 0;
	int err = section_seals(sec, &have);

	if (err)
		return err;
	have &= F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_WRITE;
	if ((have & want) != have)
		return -EPERM;		/* removing a seal */
	if (want & ~have & waits_for_writers(ns))
		return seal_later(ns, ino, uid, sec, want & ~have, later);
	err = section_add_seals(sec, want & ~have);
	if (!err)
		record_seals(ns, ino);
	return err;
}

/* setxattr's XATTR_CREATE and XATTR_REPLACE, against what getxattr shows. */
static int xattr_flags_allow(const struct xattr_view *v, const char *name,
			     int flags)
{
	bool exists = xattr_get(v, name, NULL, 0) >= 0;

	if ((flags & XATTR_CREATE) && exists)
		return -EEXIST;
	if ((flags & XATTR_REPLACE) && !exists)
		return -ENODATA;
	return 0;
}

int ns_setxattr(struct ns *ns, fuse_ino_t ino, const struct caller *who,
		const char *name, const char *value, size_t size, int flags,
		const struct ns_answer *later)
{
	struct xattr_change change;
	struct xattr_view v;
	uid_t owner;
	int err = xattr_view_of(ns, ino, &v, &owner);

	if (err == -ESTALE)
		return err;
	if (err)
		return xattr_parse_set(name, value, size, &change) == -EOPNOTSUPP ?
			-EOPNOTSUPP : -ENODATA;
	/* Who may comes first: one who may not is told EPERM whatever the
	 * value, malformed or not.  Names no section has stay ENODATA, and
	 * names outside ours EOPNOTSUPP, for everyone. */
	err = xattr_parse_set(name, value, size, &change);
	if (err != -ENODATA && err != -EOPNOTSUPP && who->uid != 0 &&
	    who->uid != owner)
		err = -EPERM;
	if (!err)
		err = xattr_flags_allow(&v, name, flags);
	if (!err && change.what == XATTR_SET_SEALS)
		err = add_seals(ns, ino, who->uid, v.sec, change.seals,
				later);
	if (!err && change.what == XATTR_SET_LIFETIME)
		set_lifetime(ns, ino, change.lifetime);
	section_put(v.sec);
	return err;
}

int ns_removexattr(struct ns *ns, fuse_ino_t ino, const char *name)
{
	return xattr_remove(name);
}
