/*
 * ns_open.c - opens of sections, their lifetime, seals and attributes.
 *
 * Owns a section node's open and writer counts, the lifetime rule that
 * decides when a release destroys a section, the user.sectionfs.*
 * attributes, and adding seals, including the wait for a section's
 * writers to go on the cached path.  It never changes a name except to
 * take every name of a section whose lifetime ended, and it never replies
 * to the kernel: the names that went are handed back for the caller to
 * tell it.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
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
	n->u.file.opens--;
	if (!is_writer(flags))
		return;
	/* A seal may be waiting for the last writer (wait_for_writers). */
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
static void set_lifetime(struct ns *ns, struct node *n,
			 enum lifetime_mode lifetime)
{
	pthread_mutex_lock(&ns->lock);
	if (lifetime == LIFETIME_HANDLE &&
	    n->u.file.lifetime != LIFETIME_HANDLE) {
		n->u.file.handle_opens = 0;
		n->u.file.handle_epoch++;
	}
	n->u.file.lifetime = lifetime;
	pthread_mutex_unlock(&ns->lock);
}

/* ---- open ---- */

int ns_open(struct ns *ns, fuse_ino_t ino, int flags, struct section **out,
	    unsigned int *undo)
{
	struct node *n = node_of(ns, ino);
	int err = 0;

	pthread_mutex_lock(&ns->lock);
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
	}
	pthread_mutex_unlock(&ns->lock);
	return err;
}

void ns_open_undo(struct ns *ns, fuse_ino_t ino, int flags, unsigned int undo)
{
	struct node *n = node_of(ns, ino);

	pthread_mutex_lock(&ns->lock);
	count_close(ns, n, flags);
	/* Only a count made since the lifetime last became handle. */
	if (undo && undo == n->u.file.handle_epoch + 1u &&
	    n->u.file.handle_opens > 0 && n->u.file.handle_opens < UINT_MAX)
		n->u.file.handle_opens--;
	pthread_mutex_unlock(&ns->lock);
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

int ns_release(struct ns *ns, fuse_ino_t ino, int flags,
	       struct ns_expired *gone)
{
	struct node *n = node_of(ns, ino);
	struct section *sec = NULL;
	int expired = 0;

	memset(gone, 0, sizeof(*gone));
	gone->ino = ino;
	pthread_mutex_lock(&ns->lock);
	count_close(ns, n, flags);
	if (n->u.file.opens == 0 && n->u.file.lifetime == LIFETIME_HANDLE &&
	    n->u.file.handle_opens > 0 && n->nlink > 0) {
		sec = expire_names(ns, n, gone);
		expired = gone->names != NULL;
	}
	pthread_mutex_unlock(&ns->lock);
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
	struct node *n = node_of(ns, ino);
	int err = 0;

	pthread_mutex_lock(&ns->lock);
	if (node_sec(n)) {
		section_get(n->u.file.sec);
		v->sec = n->u.file.sec;
		v->lifetime = n->u.file.lifetime;
		if (owner)
			*owner = n->uid;
	} else {
		err = -ENODATA;		/* directories have none of ours */
	}
	pthread_mutex_unlock(&ns->lock);
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
 * The seals that, on the cached path, wait for the section's writers.
 * Under the writeback cache the kernel accepts a write past the end
 * before the daemon sees it, so a grow seal waits too, and the section's
 * later opens bypass the cache (dp_direct_io()), their writes reaching
 * the store, which refuses them.
 */
static unsigned int waits_for_writers(const struct ns *ns)
{
	return F_SEAL_WRITE | (ns->writeback ? F_SEAL_GROW : 0);
}

/* How long a seal waits for a section's writers to go before EBUSY. */
#define WRITERS_WAIT_NS	200000000L

/*
 * Whether n's section may be sealed now, ns->lock held: the one decision
 * of the wait below, kept apart so that whoever waits (this thread, or
 * one day something woken by count_close) asks the same question.
 */
static bool seal_ready(const struct node *n)
{
	return n->u.file.writers == 0;
}

/*
 * ns->lock held: wait until seal_ready(n), woken by count_close(), for
 * at most WRITERS_WAIT_NS.  Returns 0 (ready, the lock still held) or
 * -EBUSY.
 */
static int wait_for_writers(struct ns *ns, struct node *n)
{
	struct timespec until;
	int err = 0;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += WRITERS_WAIT_NS;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (!seal_ready(n)) {
		if (err == ETIMEDOUT)
			return -EBUSY;
		err = pthread_cond_timedwait(&ns->writers_gone, &ns->lock,
					     &until);
	}
	return 0;
}

/*
 * Seal once the section has no writers.  On the cached path the daemon
 * cannot see the kernel's views, so it counts the section's writers.
 * RELEASE reaches the daemon asynchronously to close(2): a writer that
 * closed a moment ago may still be counted, so wait briefly for it
 * (wait_for_writers) before saying EBUSY.  From the check that finds
 * none until the seal is made, opens for writing wait (ns_open), so that
 * an open either comes first (the seal is EBUSY) or finds the seal (a
 * writer is refused a write-sealed section; a grow-sealed one is opened
 * direct_io).  The namespace lock is not held across F_ADD_SEALS: a
 * write seal walks every page of the store, and waits up to 150 ms on
 * pages still referenced (a read reply on its way through a pipe), which
 * must not stall every other request of the mount.
 */
static int seal_without_writers(struct ns *ns, fuse_ino_t ino,
				struct section *sec, unsigned int seals)
{
	struct node *n = node_of(ns, ino);
	int err;

	pthread_mutex_lock(&ns->lock);
	err = wait_for_writers(ns, n);
	if (err) {
		pthread_mutex_unlock(&ns->lock);
		return err;
	}
	n->u.file.sealing++;
	pthread_mutex_unlock(&ns->lock);
	err = section_add_seals(sec, seals);
	pthread_mutex_lock(&ns->lock);
	if (--n->u.file.sealing == 0)
		pthread_cond_broadcast(&ns->sealed);
	pthread_mutex_unlock(&ns->lock);
	return err;
}

/*
 * Seals only grow.  A write seal with passthrough is memfd's to refuse
 * while the store is mapped writable (views map it directly); on the
 * cached path sectionfs refuses it while the section is open for
 * writing.  Once sealed, ns_open keeps writers out on both paths.
 */
static int add_seals(struct ns *ns, fuse_ino_t ino, struct section *sec,
		     unsigned int want)
{
	unsigned int have = 0;
	int err = section_seals(sec, &have);

	if (err)
		return err;
	have &= F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_WRITE;
	if ((have & want) != have)
		return -EPERM;		/* removing a seal */
	if (!ns->passthrough && (want & ~have & waits_for_writers(ns)))
		return seal_without_writers(ns, ino, sec, want & ~have);
	return section_add_seals(sec, want & ~have);
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
		const char *name, const char *value, size_t size, int flags)
{
	struct xattr_change change;
	struct xattr_view v;
	uid_t owner;
	int err = xattr_view_of(ns, ino, &v, &owner);

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
		err = add_seals(ns, ino, v.sec, change.seals);
	if (!err && change.what == XATTR_SET_LIFETIME)
		set_lifetime(ns, node_of(ns, ino), change.lifetime);
	section_put(v.sec);
	return err;
}

int ns_removexattr(struct ns *ns, fuse_ino_t ino, const char *name)
{
	return xattr_remove(name);
}
