/*
 * ns_dir.c - directory listings: opendir, readdir, releasedir.
 *
 * An open directory is a mark: a nameless dentry in the directory's list
 * of children, so that an open directory costs the same whatever the
 * directory holds, and reading on costs O(1) an entry.  The list is
 * newest first, so in descending order of the children's seq; the mark
 * stands where reading goes on, after the entries returned.  A child
 * that is created goes to the head and one that is renamed is attached
 * anew, so neither comes after a mark: a reader meets every name that
 * stays put exactly once, whatever is created, renamed or removed beside
 * it, and removing a child never touches a mark, so no mark ever leads
 * to a freed name.  Every walk of a child list but this file's goes by
 * nchildren or skips marks (free_tree() runs after every listing is
 * released).
 *
 * READDIR offsets: 1 after ".", 2 after "..", and seq + 2 after a child.
 * Reading on from the offset the listing stands at costs O(1) an entry;
 * any other offset (a seekdir, a rewind) walks from the head, letting
 * ns->lock go every few hundred steps so that no one waits on a seek
 * through a big directory for long.  It changes nothing in the tree
 * beyond the lookups readdirplus counts, and never replies to the
 * kernel.
 */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ns_internal.h"

/* Offsets of "." and ".."; a child's is its seq plus DIR_DOTS. */
#define DIR_DOTS	2
/* Steps a seek takes under ns->lock before letting it go a moment. */
#define SEEK_CHUNK	256

static bool is_mark(const struct dentry *d)
{
	return !d->child;
}

/* What stands after offset off: the children whose seq is below it. */
static uint64_t seq_bound(off_t off)
{
	return off == DIR_DOTS ? UINT64_MAX : (uint64_t)off - DIR_DOTS;
}

/* ns->lock held: take the mark out of the list. */
static void mark_unplace(struct ns_dir *dir)
{
	struct dentry *m = dir->mark;

	if (!dir->placed)
		return;
	if (m->prev)
		m->prev->next = m->next;
	else
		dir->dir->u.other.first = m->next;
	if (m->next)
		m->next->prev = m->prev;
	dir->placed = false;
}

/*
 * ns->lock held: place the mark at offset off, walking from after
 * (NULL: the head) past marks and the children at or above off.
 *
 * A walk to an offset far down a big directory would hold ns->lock for
 * O(entries), and every create, lookup and unlink in the mount waits on
 * it.  So every SEEK_CHUNK steps the mark is placed where the walk
 * stands and the lock is let go a moment: the mark holds the place (no
 * one frees a mark, and every other walk skips it), children created or
 * renamed meanwhile go to the head, before it, where they belong (their
 * seq is above every offset given out), and a child removed meanwhile
 * is unlinked around it.  The kernel sends one READDIR of a handle at a
 * time, so nothing else moves this listing's mark while it walks.
 */
static void mark_place(struct ns *ns, struct ns_dir *dir,
		       struct dentry *after, off_t off)
{
	struct node *p = dir->dir;
	struct dentry *m = dir->mark, *x;
	uint64_t bound = seq_bound(off);
	unsigned int steps;

	for (;;) {
		steps = 0;
		for (x = after ? after->next : p->u.other.first;
		     x && (is_mark(x) || x->seq >= bound) &&
		     steps < SEEK_CHUNK; x = x->next, steps++)
			after = x;
		m->prev = after;
		m->next = x;
		if (after)
			after->next = m;
		else
			p->u.other.first = m;
		if (x)
			x->prev = m;
		dir->placed = true;
		if (steps < SEEK_CHUNK)
			break;
		ns_leave(ns);
		sched_yield();
		pthread_mutex_lock(&ns->lock);
		after = m->prev;
		mark_unplace(dir);
	}
	dir->pos = off;
}

/*
 * ns->lock held (let go on the way, see mark_place()): stand at offset
 * off (>= DIR_DOTS).  From where the listing stands, or one entry on
 * from there, in O(1) (the next entry taken); any other offset is a
 * seek, from the head.
 */
static void mark_seek(struct ns *ns, struct ns_dir *dir, off_t off)
{
	struct dentry *after;

	if (dir->placed && off == dir->pos)
		return;
	if (dir->placed && off == dir->peeked) {
		after = dir->mark->prev;
		mark_unplace(dir);
		mark_place(ns, dir, after, off);
		return;
	}
	mark_unplace(dir);
	mark_place(ns, dir, NULL, off);
}

int ns_opendir(struct ns *ns, fuse_ino_t ino, struct ns_dir **out)
{
	/* The mark shares the block: it has no name. */
	struct ns_dir *dir = calloc(1, sizeof(*dir) + sizeof(struct dentry) + 1);
	struct node *n;
	int err = 0;

	if (!dir)
		return -ENOMEM;
	dir->mark = (struct dentry *)(dir + 1);
	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	if (!n)
		err = -ESTALE;
	else if (!is_dir(n))
		err = -ENOTDIR;
	if (!err) {
		dir->dir = n;
		LIST_INSERT_HEAD(&ns->listings, dir, link);
	}
	ns_leave(ns);
	if (err) {
		free(dir);
		return err;
	}
	*out = dir;
	return 0;
}

void ns_releasedir(struct ns *ns, struct ns_dir *dir)
{
	pthread_mutex_lock(&ns->lock);
	mark_unplace(dir);
	LIST_REMOVE(dir, link);
	ns_leave(ns);
	free(dir);
}

int ns_readdir_entry(struct ns *ns, struct ns_dir *dir, off_t off, int plus,
		     char name[NAME_MAX + 1], struct fuse_entry_param *e,
		     off_t *next)
{
	struct node *n = dir->dir, *child;
	struct section *pin = NULL;
	struct dentry *d;
	int err;

	if (off < 0)
		return -EINVAL;
	memset(e, 0, sizeof(*e));
	pthread_mutex_lock(&ns->lock);
	if (off < DIR_DOTS) {
		/* "." and ".." carry no lookup: the kernel skips them in
		 * plus mode. */
		child = off == 0 || !dir_name(n) ? n : dir_name(n)->parent;
		strcpy(name, off == 0 ? "." : "..");
		e->attr.st_ino = child->ino;
		e->attr.st_mode = child->mode;
		*next = off + 1;
		ns_leave(ns);
		return 0;
	}
	mark_seek(ns, dir, off);
	for (d = dir->mark->next; d && is_mark(d); d = d->next)
		;
	if (!d) {
		ns_leave(ns);
		return -ENOENT;
	}
	strcpy(name, d->name);	/* names are at most NAME_MAX bytes */
	e->attr.st_ino = d->child->ino;
	e->attr.st_mode = d->child->mode;
	*next = (off_t)(d->seq + DIR_DOTS);
	dir->peeked = *next;
	if (plus)
		pin = entry_start(ns, d->child, e);
	ns_leave(ns);
	err = plus ? attr_finish(pin, &e->attr) : 0;
	if (err)
		ns_forget(ns, e->ino, 1);	/* the kernel never sees it */
	return err;
}

