/*
 * ns_names.c - requests that add, remove and move names in the tree.
 *
 * Owns mknod, O_TMPFILE, mkdir, symlink, unlink, rmdir, rename and link:
 * the checks each makes before it changes anything, and the order in
 * which it changes the tree so that a failure leaves it as it was.  New
 * sections are created here (their stores outside the namespace lock,
 * being syscalls); the tree's own bookkeeping is namespace.c's, and
 * nothing here opens a section or replies to the kernel.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>		/* RENAME_NOREPLACE, RENAME_EXCHANGE */
#include <stdlib.h>
#include <string.h>

#include "cap.h"
#include "ns_internal.h"

/* ---- creating nodes ---- */

/* The section's path for naming its store; ends are kept when too long. */
static void path_of(struct ns *ns, struct node *dir, const char *name,
		    char *buf, size_t size)
{
	size_t pos = size - 1;
	const char *part = name;

	buf[pos] = '\0';
	for (;;) {
		size_t len = strlen(part);

		if (len + 1 > pos)
			break;
		pos -= len;
		memcpy(buf + pos, part, len);
		buf[--pos] = '/';
		if (dir == ns->root || !dir_name(dir))
			break;
		part = dir_name(dir)->name;
		dir = dir_name(dir)->parent;
	}
	memmove(buf, buf + pos, size - pos);
}

/* New nodes take the group of a set-group-ID directory, as on tmpfs. */
static void inherit_group(const struct node *p, mode_t *mode, gid_t *gid)
{
	if (!(p->mode & S_ISGID))
		return;
	*gid = p->gid;
	if (S_ISDIR(*mode))
		*mode |= S_ISGID;
}

/* Under the lock: the group a new node in p will have. */
static gid_t group_of(const struct node *p, const struct caller *who)
{
	gid_t gid = who->gid;
	mode_t mode = 0;

	inherit_group(p, &mode, &gid);
	return gid;
}

/* The same without the lock: a new node's inode is charged to its group
 * before the node is made. */
static gid_t group_in(struct ns *ns, struct node *p, const struct caller *who)
{
	gid_t gid;

	pthread_mutex_lock(&ns->lock);
	gid = group_of(p, who);
	ns_leave(ns);
	return gid;
}

/*
 * A new node that is no section: charge its inode to its creator and
 * the group it will have (in *gid), outside the lock (cap.h).
 */
static int charge_node(struct ns *ns, struct node *p, const struct caller *who,
		       gid_t *gid)
{
	*gid = group_in(ns, p, who);
	return cap_node_count(who->uid, *gid);
}

/*
 * Under the lock: name a new node in p, of group gid (the one its inode
 * or section was charged to).  On success the node has one link and one
 * kernel lookup, and *e is started.
 */
static int insert_new(struct ns *ns, struct node *p, const char *name,
		      mode_t mode, const struct caller *who, gid_t gid,
		      struct section *sec, struct fuse_entry_param *e,
		      struct section **pin)
{
	gid_t ignored;
	struct dentry *d;
	struct node *n;

	if (p->nlink == 0)
		return -ENOENT;
	if (dentry_find(ns, p, name))
		return -EEXIST;
	if (nodes_left(ns, who->uid) == 0)
		return -ENOSPC;		/* -o nr_inodes */
	inherit_group(p, &mode, &ignored);
	d = dentry_new(p, name);
	n = d ? node_new(ns, mode, who->uid, gid) : NULL;
	if (!n) {
		free(d);
		return -ENOMEM;
	}
	if (S_ISREG(mode)) {
		n->u.file.sec = sec;
		n->u.file.lifetime = ns->modes->lifetime;
	}
	n->nlink = S_ISDIR(mode) ? 2 : 1;
	dentry_attach(ns, d, n);
	*pin = entry_start(ns, n, e);
	return 0;
}

static int create_section(struct ns *ns, struct node *p, const char *name,
			  const struct caller *who, struct section **out,
			  gid_t *gid)
{
	char path[PATH_MAX];
	mode_t mode = S_IFREG;
	int err = 0;

	*gid = who->gid;
	pthread_mutex_lock(&ns->lock);
	if (dentry_find(ns, p, name))
		err = -EEXIST;
	else
		path_of(ns, p, name, path, sizeof(path));
	/* Charged to the owner and group it will have (insert_new). */
	inherit_group(p, &mode, gid);
	ns_leave(ns);
	/* The store is made outside the lock: it is a syscall. */
	return err ? err : section_create_pagefile(path, who->uid, *gid, out);
}

int ns_mknod(struct ns *ns, fuse_ino_t parent, const char *name, mode_t mode,
	     dev_t rdev, const struct caller *who,
	     struct fuse_entry_param *e, struct section **opened,
	     int open_flags)
{
	struct section *sec = NULL, *pin = NULL;
	struct node *p;
	gid_t gid;
	int err;

	pthread_mutex_lock(&ns->lock);
	err = dir_for_entry(ns, parent, name, &p);
	ns_leave(ns);
	if (err)
		return err;
	switch (mode & S_IFMT) {
	case S_IFREG:
		err = create_section(ns, p, name, who, &sec, &gid);
		break;
	case S_IFIFO: case S_IFSOCK: case S_IFCHR: case S_IFBLK:
		err = charge_node(ns, p, who, &gid);
		break;
	default:
		err = -EINVAL;
	}
	if (err)
		return err;

	pthread_mutex_lock(&ns->lock);
	err = insert_new(ns, p, name, mode, who, gid, sec, e, &pin);
	if (!err) {
		struct node *n = node_of(ns, e->ino);

		if (!S_ISREG(mode))
			n->u.other.rdev = (uint32_t)rdev;
		if (opened) {
			section_get(sec);
			*opened = sec;
			count_open(n, open_flags);
		}
		record_node(ns, n);
	}
	ns_leave(ns);
	if (err) {
		if (sec)
			section_put(sec);
		else
			cap_node_uncount(who->uid, gid);
		return err;
	}
	return attr_finish(pin, &e->attr);
}

/* An O_TMPFILE section's store is named (in /proc) by its directory's
 * path and this. */
#define TMPFILE_NAME	"(O_TMPFILE)"

int ns_tmpfile(struct ns *ns, fuse_ino_t parent, mode_t mode,
	       const struct caller *who, struct fuse_entry_param *e,
	       struct section **opened, int open_flags)
{
	char path[PATH_MAX];
	struct section *sec = NULL, *pin;
	struct node *p, *n = NULL;
	gid_t gid = who->gid;
	int err;

	/* A directory already removed will do, as on tmpfs: the section
	 * needs no name in it, and no name can be made there. */
	pthread_mutex_lock(&ns->lock);
	p = node_of(ns, parent);
	err = !p ? -ESTALE : is_dir(p) ? 0 : -ENOTDIR;
	if (!err) {
		path_of(ns, p, TMPFILE_NAME, path, sizeof(path));
		gid = group_of(p, who);
	}
	pthread_mutex_unlock(&ns->lock);
	/* Charged to its owner and group as a named section is. */
	if (!err)
		err = section_create_pagefile(path, who->uid, gid, &sec);
	if (err)
		return err;

	pthread_mutex_lock(&ns->lock);
	if (nodes_left(ns, who->uid) == 0)
		err = -ENOSPC;		/* -o nr_inodes counts it, as tmpfs */
	else if (!(n = node_new(ns, S_IFREG | (mode & 07777), who->uid, gid)))
		err = -ENOMEM;
	if (err) {
		pthread_mutex_unlock(&ns->lock);
		section_put(sec);
		return err;
	}
	n->u.file.sec = sec;
	n->u.file.lifetime = ns->modes->lifetime;
	n->u.file.linkable = !(open_flags & O_EXCL);
	/* Nameless from birth: an orphan the kernel holds, freed by its
	 * FORGET after the last close, or by unmount. */
	n->nlink = 0;
	LIST_INSERT_HEAD(&ns->orphans, n, orphan);
	pin = entry_start(ns, n, e);
	section_get(sec);
	*opened = sec;
	count_open(n, open_flags);
	ns_leave(ns);
	return attr_finish(pin, &e->attr);
}

int ns_mkdir(struct ns *ns, fuse_ino_t parent, const char *name, mode_t mode,
	     const struct caller *who, struct fuse_entry_param *e)
{
	struct section *pin = NULL;
	struct node *p;
	gid_t gid;
	int err;

	pthread_mutex_lock(&ns->lock);
	err = dir_for_entry(ns, parent, name, &p);
	ns_leave(ns);
	if (!err)
		err = charge_node(ns, p, who, &gid);
	if (err)
		return err;
	pthread_mutex_lock(&ns->lock);
	err = insert_new(ns, p, name, S_IFDIR | (mode & 07777), who, gid,
			 NULL, e, &pin);
	ns_leave(ns);
	if (err)
		cap_node_uncount(who->uid, gid);
	return err ? err : attr_finish(pin, &e->attr);
}

/*
 * Under the lock: answer a SYMLINK with a placeholder, an unnamed symlink
 * node with zero timeouts.  The kernel looks the name up again at once,
 * finds the section, and forgets the placeholder.
 */
static void symlink_placeholder(struct ns *ns, struct node *ph,
				struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	LIST_INSERT_HEAD(&ns->orphans, ph, orphan);
	ph->nlookup = 1;
	attr_start(ns, ph, &e->attr);	/* no section: nothing pinned */
	e->ino = ino_of(ns, ph);
	e->generation = ph->ino;
	record_result(ns, ph->ino);
}

/*
 * With passthrough the kernel must accept a backing file when its section
 * is made, or every open of the section would fail.  What it refuses for
 * the file's sake (ELOOP: a stacked filesystem such as overlayfs, past the
 * one level of stacking FUSE allows; EOPNOTSUPP or EISDIR from kernels
 * that check the file otherwise) is a bad target, EINVAL.
 */
static int passthrough_refusal(int backing_id)
{
	if (backing_id >= 0)
		return 0;
	if (backing_id == -ELOOP || backing_id == -EOPNOTSUPP ||
	    backing_id == -EISDIR)
		return -EINVAL;
	return backing_id;
}

/*
 * A relative target makes an ordinary symbolic link, as on tmpfs: only an
 * absolute one names a file to bind.  The kernel follows it; the daemon
 * only keeps the target, which never changes, and answers READLINK.
 */
static int plain_symlink(struct ns *ns, fuse_ino_t parent, const char *name,
			 const char *target, const struct caller *who,
			 struct fuse_entry_param *e)
{
	size_t len = strlen(target);
	struct section *pin = NULL;
	struct node *p;
	char *copy;
	gid_t gid;
	int err;

	/* tmpfs keeps a target in one page, its NUL included. */
	if (len >= PATH_MAX)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&ns->lock);
	err = dir_for_entry(ns, parent, name, &p);
	ns_leave(ns);
	if (!err)
		err = charge_node(ns, p, who, &gid);
	if (err)
		return err;
	/* A long target takes a page, as on tmpfs (cap.h). */
	err = cap_target_count(who->uid, gid, len, false);
	if (err) {
		cap_node_uncount(who->uid, gid);
		return err;
	}
	copy = strdup(target);
	pthread_mutex_lock(&ns->lock);
	err = copy ? insert_new(ns, p, name, S_IFLNK | 0777, who, gid, NULL,
				e, &pin) : -ENOMEM;
	if (!err)
		node_of(ns, e->ino)->u.other.target = copy;
	ns_leave(ns);
	if (err) {
		free(copy);
		cap_target_uncount(who->uid, gid, len);
		cap_node_uncount(who->uid, gid);
		return err;
	}
	/* No section, so nothing was pinned; the target came after the
	 * attributes were taken. */
	e->attr.st_size = (off_t)len;
	return 0;
}

int ns_symlink(struct ns *ns, fuse_ino_t parent, const char *name,
	       const char *target, const struct caller *who,
	       struct fuse_entry_param *e)
{
	struct section *sec = NULL, *pin = NULL;
	struct fuse_entry_param real;
	struct node *p, *ph;
	mode_t mode;
	int err;

	if (target[0] != '/')
		return plain_symlink(ns, parent, name, target, who, e);
	pthread_mutex_lock(&ns->lock);
	err = dir_for_entry(ns, parent, name, &p);
	if (!err && dentry_find(ns, p, name))
		err = -EEXIST;
	ns_leave(ns);
	/* Under the writeback cache the kernel keeps its own size and times
	 * and writes them back: it would append at a stale end of a backing
	 * file changed outside, and put back its old mtime. */
	if (!err && ns->modes->writeback)
		err = -EOPNOTSUPP;
	/* Opening the backing file may block: never under the lock. */
	if (!err)
		err = section_create_file(target, ns->modes->self_dev, who, &sec);
	if (!err && ns->modes->passthrough) {
		err = passthrough_refusal(section_backing_id(sec));
		if (err)
			section_put(sec);
	}
	if (err)
		return err;

	/* Only its creator may use a new file-backed section until they
	 * chmod it: its mode cannot know who else may reach the file. */
	mode = S_IFREG | (sec->writable ? 0600 : 0400);
	pthread_mutex_lock(&ns->lock);
	ph = node_new(ns, S_IFLNK | 0777, who->uid, who->gid);
	err = ph ? insert_new(ns, p, name, mode, who, group_of(p, who), sec,
			      &real, &pin) : -ENOMEM;
	if (!err) {
		/* The kernel was told of the placeholder, not the section. */
		node_of(ns, real.ino)->nlookup = 0;
		symlink_placeholder(ns, ph, e);
	} else if (ph) {
		node_free(ns, ph);
	}
	ns_leave(ns);
	if (err)
		section_put(sec);
	else
		put_if(pin);
	return err;
}

/* ---- removing names ---- */

static int remove_entry(struct ns *ns, fuse_ino_t parent, const char *name,
			int want_dir)
{
	struct section *sec = NULL;
	struct dentry *d;
	struct node *n;
	int err;

	pthread_mutex_lock(&ns->lock);
	err = find_entry(ns, parent, name, &d);
	if (err)
		goto out;
	n = d->child;
	if (want_dir && !is_dir(n))
		err = -ENOTDIR;
	else if (!want_dir && is_dir(n))
		err = -EISDIR;
	else if (want_dir && n->u.other.nchildren)
		err = -ENOTEMPTY;	/* (its list may hold listings' marks) */
	if (err)
		goto out;
	dentry_detach(ns, d);
	free(d);
	n->nlink = want_dir ? 0 : n->nlink - 1;
	sec = node_unnamed(ns, n);
out:
	ns_unlock(ns);
	put_if(sec);
	return err;
}

int ns_unlink(struct ns *ns, fuse_ino_t parent, const char *name)
{
	return remove_entry(ns, parent, name, 0);
}

void ns_uncreate(struct ns *ns, fuse_ino_t parent, const char *name,
		 fuse_ino_t ino)
{
	struct section *unnamed = NULL, *forgotten;
	struct dentry *d;
	struct node *n;

	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	if (n && !find_entry(ns, parent, name, &d) && d->child == n) {
		dentry_detach(ns, d);
		free(d);
		n->nlink--;
		unnamed = node_unnamed(ns, n);	/* held: the lookup below */
	}
	forgotten = forget_locked(ns, ino, 1);
	ns_unlock(ns);
	put_if(unnamed);
	put_if(forgotten);
}

int ns_rmdir(struct ns *ns, fuse_ino_t parent, const char *name)
{
	return remove_entry(ns, parent, name, 1);
}

/* ---- rename and link ---- */

/* Is n the directory anc or inside it? */
static int is_within(struct node *n, struct node *anc)
{
	for (; n; n = dir_name(n) ? dir_name(n)->parent : NULL)
		if (n == anc)
			return 1;
	return 0;
}

/* Would moving d over dst (or into newp) break the tree's rules? */
static int rename_check(struct dentry *d, struct dentry *dst,
			struct node *newp, unsigned int flags)
{
	struct node *src = d->child;

	if (is_dir(src) && is_within(newp, src))
		return -EINVAL;
	if (!dst)
		return flags & RENAME_EXCHANGE ? -ENOENT : 0;
	if (flags & RENAME_NOREPLACE)
		return -EEXIST;
	if (flags & RENAME_EXCHANGE)
		return is_dir(dst->child) && is_within(d->parent, dst->child) ?
			-EINVAL : 0;
	if (is_dir(src) && !is_dir(dst->child))
		return -ENOTDIR;
	if (!is_dir(src) && is_dir(dst->child))
		return -EISDIR;
	if (is_dir(dst->child) && dst->child->u.other.nchildren)
		return -ENOTEMPTY;
	return 0;
}

/* Give d's child the name (newp, nd), freeing d; nd is prepared. */
static void move_entry(struct ns *ns, struct dentry *d, struct dentry *nd)
{
	struct node *n = d->child;

	dentry_detach(ns, d);
	free(d);
	dentry_attach(ns, nd, n);
	n->ctime = now();
}

int ns_rename(struct ns *ns, fuse_ino_t parent, const char *name,
	      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct dentry *d, *dst, *nd = NULL, *nd2 = NULL;
	struct section *sec = NULL;
	struct node *p, *newp, *victim;
	int err;

	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) ||
	    (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE))
		return -EINVAL;
	pthread_mutex_lock(&ns->lock);
	err = find_entry(ns, parent, name, &d);
	if (!err)
		err = dir_for_entry(ns, newparent, newname, &newp);
	if (err)
		goto out;
	p = d->parent;
	dst = dentry_find(ns, newp, newname);
	if (dst && dst->child == d->child)
		goto out;		/* two names of one node: nothing to do */
	err = rename_check(d, dst, newp, flags);
	if (err)
		goto out;

	/* Allocate everything first: past this point nothing can fail. */
	nd = dentry_new(newp, newname);
	if (flags & RENAME_EXCHANGE)
		nd2 = dentry_new(p, name);
	if (!nd || (flags & RENAME_EXCHANGE && !nd2)) {
		err = -ENOMEM;
		goto out;
	}
	if (flags & RENAME_EXCHANGE) {
		struct node *other = dst->child;

		dentry_detach(ns, dst);
		free(dst);
		move_entry(ns, d, nd);
		dentry_attach(ns, nd2, other);
		other->ctime = now();
		nd = nd2 = NULL;
		goto out;
	}
	if (dst) {
		victim = dst->child;
		dentry_detach(ns, dst);
		free(dst);
		victim->nlink = is_dir(victim) ? 0 : victim->nlink - 1;
		sec = node_unnamed(ns, victim);
	}
	move_entry(ns, d, nd);
	nd = NULL;
out:
	ns_unlock(ns);
	free(nd);
	free(nd2);
	put_if(sec);
	return err;
}

int ns_link(struct ns *ns, fuse_ino_t ino, fuse_ino_t newparent,
	    const char *newname, const struct caller *who,
	    struct fuse_entry_param *e)
{
	struct section *pin = NULL;
	struct node *n, *p;
	struct dentry *d;
	int err;

	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	err = n ? dir_for_entry(ns, newparent, newname, &p) : -ESTALE;
	if (err)
		goto out;
	if (is_dir(n)) {
		err = -EPERM;
		goto out;
	}
	/* linkat of an unlinked file is ENOENT, as on tmpfs; of an
	 * O_TMPFILE section not yet named, its first name. */
	if (n->nlink == 0 && !(node_sec(n) && n->u.file.linkable)) {
		err = -ENOENT;
		goto out;
	}
	if (dentry_find(ns, p, newname)) {
		err = -EEXIST;
		goto out;
	}
	/* Each name is the daemon's to keep: past the first, tmpfs counts
	 * it against nr_inodes, and so here. */
	if (n->names && nodes_left(ns, who->uid) == 0) {
		err = -ENOSPC;
		goto out;
	}
	d = dentry_new(p, newname);
	if (!d) {
		err = -ENOMEM;
		goto out;
	}
	if (n->nlink == 0) {
		/* Named once, it is an ordinary section: unlinked again, it
		 * stays unlinked, as the kernel's I_LINKABLE goes too. */
		LIST_REMOVE(n, orphan);
		n->u.file.linkable = false;
	}
	n->nlink++;
	n->ctime = now();
	dentry_attach(ns, d, n);
	pin = entry_start(ns, n, e);
out:
	ns_leave(ns);
	return err ? err : attr_finish(pin, &e->attr);
}
