/*
 * namespace.c - directories, names, node ids and lookup counts.
 *
 * Owns the tree: nodes (one per directory, section or special file), the
 * dentries that name them, the hash table that finds a name in a
 * directory, and the kernel's lookup counts that decide when a node may be
 * freed.  It creates sections through section.c but never does I/O on
 * their files while holding the namespace lock, and it never replies to
 * the kernel.
 *
 * A node's FUSE node id is its address.  A node lives while it has a name
 * (nlink > 0) or the kernel holds a lookup on it; nodes the kernel holds
 * after their last name went sit on the orphan list so that ns_destroy()
 * can free them at unmount.  Directory listings are linked to the
 * namespace for the same reason: a RELEASEDIR still queued when the mount
 * goes is dropped by the kernel, never sent.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "namespace.h"
#include "xattr.h"

struct dentry {
	struct dentry *hnext;		/* hash chain */
	struct dentry *next_name;	/* the child's other names */
	struct dentry *prev, *next;	/* parent's children, newest first */
	struct node *parent;
	struct node *child;
	uint32_t hash;
	char name[];
};

/* What only a section's node has. */
struct node_file {
	struct section *sec;		/* immutable */
	unsigned int opens;		/* open handles (and so views) */
	unsigned int writers;		/* of which opened for writing */
	enum lifetime_mode lifetime;	/* when the section dies */
	unsigned int handle_opens;	/* opens since lifetime became handle:
					   only then may a release destroy
					   it (see set_lifetime) */
	unsigned short handle_epoch;	/* times lifetime became handle */
	unsigned short sealing;		/* seals being added that writers
					   wait for (seal_without_writers) */
};

/* What directories and special files have instead: sections read their
 * data times from their file. */
struct node_other {
	struct timespec atime, mtime;
	struct dentry *first;		/* directories: children, newest first */
	uint32_t nchildren;		/* directories: how many */
	uint32_t rdev;			/* device nodes (FUSE's rdev is 32 bits) */
};

/*
 * One node per directory, section or special file: 120 bytes, so that
 * with its dentry and section a section costs the daemon under 300.
 */
struct node {
	uint64_t ino;			/* st_ino; immutable */
	uint64_t nlookup;		/* kernel references */
	mode_t mode;			/* the type bits are immutable */
	uid_t uid;
	gid_t gid;
	uint32_t nlink;
	struct timespec ctime;		/* metadata changes made here */
	struct dentry *names;		/* every name; a directory has one */
	LIST_ENTRY(node) orphan;	/* ns->orphans */
	union {
		struct node_file file;	/* S_ISREG */
		struct node_other other; /* everything else */
	} u;
};

/* malloc rounds 120 bytes to a 128-byte chunk; 121 would cost 144. */
_Static_assert(sizeof(struct node) <= 120, "struct node outgrew its chunk");

/* The readdir listing: names copied at opendir, so removals cannot
 * invalidate a reader's position. */
struct ns_dirent {
	char *name;
	uint64_t ino;
	mode_t mode;
};

struct ns_dir {
	LIST_ENTRY(ns_dir) link;	/* ns->listings; lock */
	struct node *dir;
	size_t n;
	struct ns_dirent *ents;
	int fresh;			/* taken and not yet read from */
};

/* tmpfs reports a directory's size as 20 bytes per entry; so do we. */
#define DIRENT_BOGO_SIZE 20

static struct timespec now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

static struct node *node_of(struct ns *ns, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? ns->root : (struct node *)(uintptr_t)ino;
}

static fuse_ino_t ino_of(struct ns *ns, struct node *n)
{
	return n == ns->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static int is_dir(const struct node *n)
{
	return S_ISDIR(n->mode);
}

/* The section of a regular file's node; NULL for every other node. */
static struct section *node_sec(const struct node *n)
{
	return S_ISREG(n->mode) ? n->u.file.sec : NULL;
}

/* A directory's one name; NULL for the root and removed directories. */
static struct dentry *dir_name(const struct node *n)
{
	return n->names;
}

static int is_writer(int open_flags)
{
	return (open_flags & O_ACCMODE) != O_RDONLY;
}

/*
 * A handle is opened on n's section; ns->lock held.  Returns what
 * ns_open_undo() needs to take it back: 0, or for an open counted under
 * lifetime handle the lifetime's epoch plus one.
 */
static unsigned int count_open(struct node *n, int flags)
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
static void count_close(struct node *n, int flags)
{
	n->u.file.opens--;
	n->u.file.writers -= is_writer(flags);
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

/* ---- the name hash ---- */

static uint32_t name_hash(const struct node *parent, const char *name)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ ((uintptr_t)parent >> 4);

	for (; *name; name++) {
		h ^= (unsigned char)*name;
		h *= 0x100000001b3ULL;
	}
	return (uint32_t)(h ^ (h >> 32));
}

static struct dentry *dentry_find(struct ns *ns, const struct node *parent,
				  const char *name)
{
	uint32_t hash = name_hash(parent, name);
	struct dentry *d = ns->buckets[hash & (ns->nbuckets - 1)];

	for (; d; d = d->hnext)
		if (d->hash == hash && d->parent == parent &&
		    !strcmp(d->name, name))
			return d;
	return NULL;
}

/* Double the table when it is full; on ENOMEM keep the old one. */
static void hash_grow(struct ns *ns)
{
	size_t nb = ns->nbuckets * 2, i;
	struct dentry **b = calloc(nb, sizeof(*b));

	if (!b)
		return;
	for (i = 0; i < ns->nbuckets; i++) {
		struct dentry *d = ns->buckets[i], *next;

		for (; d; d = next) {
			next = d->hnext;
			d->hnext = b[d->hash & (nb - 1)];
			b[d->hash & (nb - 1)] = d;
		}
	}
	free(ns->buckets);
	ns->buckets = b;
	ns->nbuckets = nb;
}

static void hash_insert(struct ns *ns, struct dentry *d)
{
	struct dentry **b;

	if (ns->nentries >= ns->nbuckets)
		hash_grow(ns);
	b = &ns->buckets[d->hash & (ns->nbuckets - 1)];
	d->hnext = *b;
	*b = d;
	ns->nentries++;
}

static void hash_remove(struct ns *ns, struct dentry *d)
{
	struct dentry **p = &ns->buckets[d->hash & (ns->nbuckets - 1)];

	while (*p != d)
		p = &(*p)->hnext;
	*p = d->hnext;
	ns->nentries--;
}

/* ---- dentries ---- */

static struct dentry *dentry_new(struct node *parent, const char *name)
{
	size_t len = strlen(name);
	struct dentry *d = malloc(sizeof(*d) + len + 1);

	if (!d)
		return NULL;
	memcpy(d->name, name, len + 1);
	d->parent = parent;
	d->child = NULL;
	d->hash = name_hash(parent, name);
	return d;
}

/* Link a prepared dentry into its parent and the hash. */
static void dentry_attach(struct ns *ns, struct dentry *d, struct node *child)
{
	struct node *p = d->parent;

	d->child = child;
	d->prev = NULL;
	d->next = p->u.other.first;
	if (d->next)
		d->next->prev = d;
	p->u.other.first = d;
	p->u.other.nchildren++;
	hash_insert(ns, d);
	d->next_name = child->names;
	child->names = d;
	if (is_dir(child))
		p->nlink++;
	p->u.other.mtime = p->ctime = now();
}

/* Unlink a dentry from its parent and the hash; the caller frees it. */
static void dentry_detach(struct ns *ns, struct dentry *d)
{
	struct node *p = d->parent;
	struct dentry **pp;

	if (d->prev)
		d->prev->next = d->next;
	else
		p->u.other.first = d->next;
	if (d->next)
		d->next->prev = d->prev;
	p->u.other.nchildren--;
	hash_remove(ns, d);
	for (pp = &d->child->names; *pp != d; pp = &(*pp)->next_name)
		;
	*pp = d->next_name;
	if (is_dir(d->child))
		p->nlink--;
	p->u.other.mtime = p->ctime = now();
}

/* ---- nodes ---- */

static struct node *node_new(struct ns *ns, mode_t mode, uid_t uid, gid_t gid)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->ino = ns->next_ino++;
	n->mode = mode;
	n->uid = uid;
	n->gid = gid;
	n->ctime = now();
	if (!S_ISREG(mode))
		n->u.other.atime = n->u.other.mtime = n->ctime;
	ns->nnodes++;
	return n;
}

/*
 * Free a node nobody names or holds.  Its section may need a close(), so
 * it is handed back for the caller to put once the lock is dropped.
 */
static struct section *node_free(struct ns *ns, struct node *n)
{
	struct section *sec = node_sec(n);

	ns->nnodes--;
	free(n);
	return sec;
}

/* A node lost a name.  Returns a section to put after unlocking, or NULL. */
static struct section *node_unnamed(struct ns *ns, struct node *n)
{
	n->ctime = now();
	if (n->nlink > 0)
		return NULL;
	if (n->nlookup == 0)
		return node_free(ns, n);
	LIST_INSERT_HEAD(&ns->orphans, n, orphan);
	return NULL;
}

static void put_if(struct section *sec)
{
	if (sec)
		section_put(sec);
}

/* ---- attributes ---- */

/*
 * Under the lock: fill what the node knows, and pin its section so that
 * attr_finish() can read the rest from the file after the lock is gone.
 */
static struct section *attr_start(struct ns *ns, struct node *n,
				  struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = n->mode;
	st->st_nlink = n->nlink;
	st->st_uid = n->uid;
	st->st_gid = n->gid;
	st->st_blksize = 4096;
	st->st_ctim = n->ctime;
	if (node_sec(n)) {
		section_get(n->u.file.sec);
		return n->u.file.sec;	/* the rest comes from its file */
	}
	st->st_rdev = n->u.other.rdev;
	st->st_atim = n->u.other.atime;
	st->st_mtim = n->u.other.mtime;
	if (is_dir(n))
		st->st_size = (2 + (off_t)n->u.other.nchildren) * DIRENT_BOGO_SIZE;
	return NULL;
}

static int ts_after(struct timespec a, struct timespec b)
{
	return a.tv_sec != b.tv_sec ? a.tv_sec > b.tv_sec : a.tv_nsec > b.tv_nsec;
}

/* Without the lock: size, blocks and data times come from the file. */
static int attr_finish(struct section *sec, struct stat *st)
{
	struct stat fst;
	int err;

	if (!sec)
		return 0;
	err = section_stat(sec, &fst);
	section_put(sec);
	if (err)
		return err;
	st->st_size = fst.st_size;
	st->st_blocks = fst.st_blocks;
	st->st_atim = fst.st_atim;
	st->st_mtim = fst.st_mtim;
	/* Metadata changes made here count as well as the file's own. */
	if (ts_after(fst.st_ctim, st->st_ctim))
		st->st_ctim = fst.st_ctim;
	return 0;
}

/* Under the lock: count a kernel lookup and start the entry's attributes. */
static struct section *entry_start(struct ns *ns, struct node *n,
				   struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	n->nlookup++;
	e->ino = ino_of(ns, n);
	e->generation = n->ino;
	e->entry_timeout = ns->entry_timeout;
	e->attr_timeout = ns->attr_timeout;
	return attr_start(ns, n, &e->attr);
}

/* Look up a live directory for a request that names an entry in it. */
static int dir_for_entry(struct ns *ns, fuse_ino_t parent, const char *name,
			 struct node **out)
{
	struct node *p = node_of(ns, parent);

	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	if (!is_dir(p))
		return -ENOTDIR;
	if (p->nlink == 0)
		return -ENOENT;		/* removed while someone was inside */
	*out = p;
	return 0;
}

/* Under the lock: the dentry name names in directory parent, or ENOENT. */
static int find_entry(struct ns *ns, fuse_ino_t parent, const char *name,
		      struct dentry **out)
{
	struct node *p;
	int err = dir_for_entry(ns, parent, name, &p);

	if (err)
		return err;
	*out = dentry_find(ns, p, name);
	return *out ? 0 : -ENOENT;
}

/* ---- setup and teardown ---- */

int ns_init(struct ns *ns, mode_t root_mode, uid_t uid, gid_t gid,
	    double entry_timeout, double attr_timeout)
{
	memset(ns, 0, sizeof(*ns));
	LIST_INIT(&ns->orphans);
	LIST_INIT(&ns->listings);
	pthread_mutex_init(&ns->lock, NULL);
	pthread_cond_init(&ns->sealed, NULL);
	ns->entry_timeout = entry_timeout;
	ns->attr_timeout = attr_timeout;
	ns->next_ino = FUSE_ROOT_ID;
	ns->nbuckets = 1024;
	ns->buckets = calloc(ns->nbuckets, sizeof(*ns->buckets));
	if (!ns->buckets)
		return -ENOMEM;
	ns->root = node_new(ns, S_IFDIR | (root_mode & 07777), uid, gid);
	if (!ns->root) {
		free(ns->buckets);
		return -ENOMEM;
	}
	ns->root->nlink = 2;
	return 0;
}

/*
 * At unmount: drop the node's reference on its section and those of
 * handles the kernel never released (a daemon stopped by a signal while
 * files were open), then the node.
 */
static void node_drop(struct node *n)
{
	struct section *sec = node_sec(n);
	unsigned int i;

	if (sec) {
		for (i = 0; i < n->u.file.opens; i++)
			section_put(sec);
		section_put(sec);
	}
	free(n);
}

static void free_tree(struct node *n)
{
	struct dentry *d, *next;

	for (d = is_dir(n) ? n->u.other.first : NULL; d; d = next) {
		next = d->next;
		if (--d->child->nlink == 0 || is_dir(d->child))
			free_tree(d->child);
		free(d);
	}
	node_drop(n);
}

void ns_destroy(struct ns *ns)
{
	struct node *n;

	while ((n = LIST_FIRST(&ns->orphans))) {
		LIST_REMOVE(n, orphan);
		node_drop(n);
	}
	while (!LIST_EMPTY(&ns->listings))
		ns_releasedir(ns, LIST_FIRST(&ns->listings));
	free_tree(ns->root);
	free(ns->buckets);
	pthread_cond_destroy(&ns->sealed);
	pthread_mutex_destroy(&ns->lock);
}

/* ---- lookups ---- */

int ns_lookup(struct ns *ns, fuse_ino_t parent, const char *name,
	      struct fuse_entry_param *e)
{
	struct section *sec = NULL;
	struct dentry *d;
	int err;

	pthread_mutex_lock(&ns->lock);
	err = find_entry(ns, parent, name, &d);
	if (!err)
		sec = entry_start(ns, d->child, e);
	pthread_mutex_unlock(&ns->lock);
	return err ? err : attr_finish(sec, &e->attr);
}

void ns_forget(struct ns *ns, fuse_ino_t ino, uint64_t nlookup)
{
	struct node *n = node_of(ns, ino);
	struct section *sec = NULL;

	pthread_mutex_lock(&ns->lock);
	n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
	if (n->nlookup == 0 && n->nlink == 0 && n != ns->root) {
		LIST_REMOVE(n, orphan);
		sec = node_free(ns, n);
	}
	pthread_mutex_unlock(&ns->lock);
	put_if(sec);
}

int ns_getattr(struct ns *ns, fuse_ino_t ino, struct stat *st)
{
	struct section *sec;

	pthread_mutex_lock(&ns->lock);
	sec = attr_start(ns, node_of(ns, ino), st);
	pthread_mutex_unlock(&ns->lock);
	return attr_finish(sec, st);
}

/* ---- setattr ---- */

static struct timespec attr_time(int to_set, int set_bit, int now_bit,
				 struct timespec value)
{
	struct timespec omit = { .tv_nsec = UTIME_OMIT };
	struct timespec t_now = { .tv_nsec = UTIME_NOW };

	if (to_set & now_bit)
		return t_now;
	if (to_set & set_bit)
		return value;
	return omit;
}

/* The part of setattr that can fail: size and times of the section file. */
static int setattr_section(struct ns *ns, struct section *sec,
			   const struct stat *attr, int to_set,
			   const struct timespec times[2],
			   const struct caller *who)
{
	int err = 0;

	if (to_set & FUSE_SET_ATTR_SIZE)
		err = section_resize(sec, attr->st_size, ns->commit_eager);
	if (!err && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)))
		err = section_set_times(sec, times, who);
	return err;
}

static void set_node_time(struct timespec *field, struct timespec value)
{
	if (value.tv_nsec == UTIME_OMIT)
		return;
	*field = value.tv_nsec == UTIME_NOW ? now() : value;
}

/*
 * chown clears set-user-ID, and set-group-ID where the group may execute,
 * of anything but a directory, as Linux does; under HANDLE_KILLPRIV_V2
 * the kernel leaves that to the filesystem.
 */
static void drop_setid(struct node *n)
{
	if (is_dir(n))
		return;
	n->mode &= ~S_ISUID;
	if (n->mode & S_IXGRP)
		n->mode &= ~S_ISGID;
}

int ns_setattr(struct ns *ns, fuse_ino_t ino, const struct stat *attr,
	       int to_set, const struct caller *who, struct stat *out)
{
	struct node *n = node_of(ns, ino);
	struct section *sec;
	struct timespec times[2] = {
		attr_time(to_set, FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW,
			  attr->st_atim),
		attr_time(to_set, FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW,
			  attr->st_mtim),
	};
	int err = 0;

	pthread_mutex_lock(&ns->lock);
	sec = node_sec(n);
	if (sec)
		section_get(sec);
	else if (to_set & FUSE_SET_ATTR_SIZE)
		err = is_dir(n) ? -EISDIR : -EINVAL;
	pthread_mutex_unlock(&ns->lock);
	if (err)
		return err;

	/* What can fail goes first, so a failure changes nothing. */
	if (sec) {
		err = setattr_section(ns, sec, attr, to_set, times, who);
		section_put(sec);
		if (err)
			return err;
	}

	pthread_mutex_lock(&ns->lock);
	if (to_set & FUSE_SET_ATTR_MODE)
		n->mode = (n->mode & S_IFMT) | (attr->st_mode & 07777);
	if (to_set & FUSE_SET_ATTR_UID)
		n->uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		n->gid = attr->st_gid;
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
		drop_setid(n);
	if (!sec) {
		set_node_time(&n->u.other.atime, times[0]);
		set_node_time(&n->u.other.mtime, times[1]);
	}
	n->ctime = now();
	sec = attr_start(ns, n, out);
	pthread_mutex_unlock(&ns->lock);
	return attr_finish(sec, out);
}

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

/*
 * Under the lock: name a new node in p.  On success the node has one link
 * and one kernel lookup, and *e is started.
 */
static int insert_new(struct ns *ns, struct node *p, const char *name,
		      mode_t mode, const struct caller *who,
		      struct section *sec, struct fuse_entry_param *e,
		      struct section **pin)
{
	gid_t gid = who->gid;
	struct dentry *d;
	struct node *n;

	if (p->nlink == 0)
		return -ENOENT;
	if (dentry_find(ns, p, name))
		return -EEXIST;
	inherit_group(p, &mode, &gid);
	d = dentry_new(p, name);
	n = d ? node_new(ns, mode, who->uid, gid) : NULL;
	if (!n) {
		free(d);
		return -ENOMEM;
	}
	if (S_ISREG(mode)) {
		n->u.file.sec = sec;
		n->u.file.lifetime = ns->lifetime;
	}
	n->nlink = S_ISDIR(mode) ? 2 : 1;
	dentry_attach(ns, d, n);
	*pin = entry_start(ns, n, e);
	return 0;
}

static int create_section(struct ns *ns, struct node *p, const char *name,
			  struct section **out)
{
	char path[PATH_MAX];
	int err = 0;

	pthread_mutex_lock(&ns->lock);
	if (dentry_find(ns, p, name))
		err = -EEXIST;
	else
		path_of(ns, p, name, path, sizeof(path));
	pthread_mutex_unlock(&ns->lock);
	/* The store is made outside the lock: it is a syscall. */
	return err ? err : section_create_pagefile(path, out);
}

int ns_mknod(struct ns *ns, fuse_ino_t parent, const char *name, mode_t mode,
	     dev_t rdev, const struct caller *who,
	     struct fuse_entry_param *e, struct section **opened,
	     int open_flags)
{
	struct section *sec = NULL, *pin = NULL;
	struct node *p;
	int err;

	pthread_mutex_lock(&ns->lock);
	err = dir_for_entry(ns, parent, name, &p);
	pthread_mutex_unlock(&ns->lock);
	if (err)
		return err;
	switch (mode & S_IFMT) {
	case S_IFREG:
		err = create_section(ns, p, name, &sec);
		break;
	case S_IFIFO: case S_IFSOCK: case S_IFCHR: case S_IFBLK:
		break;
	default:
		err = -EINVAL;
	}
	if (err)
		return err;

	pthread_mutex_lock(&ns->lock);
	err = insert_new(ns, p, name, mode, who, sec, e, &pin);
	if (!err) {
		struct node *n = node_of(ns, e->ino);

		if (!S_ISREG(mode))
			n->u.other.rdev = (uint32_t)rdev;
		if (opened) {
			section_get(sec);
			*opened = sec;
			count_open(n, open_flags);
		}
	}
	pthread_mutex_unlock(&ns->lock);
	if (err) {
		put_if(sec);
		return err;
	}
	return attr_finish(pin, &e->attr);
}

int ns_mkdir(struct ns *ns, fuse_ino_t parent, const char *name, mode_t mode,
	     const struct caller *who, struct fuse_entry_param *e)
{
	struct section *pin = NULL;
	struct node *p;
	int err;

	pthread_mutex_lock(&ns->lock);
	err = dir_for_entry(ns, parent, name, &p);
	if (!err)
		err = insert_new(ns, p, name, S_IFDIR | (mode & 07777), who,
				 NULL, e, &pin);
	pthread_mutex_unlock(&ns->lock);
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

	pthread_mutex_lock(&ns->lock);
	err = dir_for_entry(ns, parent, name, &p);
	if (!err && dentry_find(ns, p, name))
		err = -EEXIST;
	pthread_mutex_unlock(&ns->lock);
	/* Under the writeback cache the kernel keeps its own size and times
	 * and writes them back: it would append at a stale end of a backing
	 * file changed outside, and put back its old mtime. */
	if (!err && ns->writeback)
		err = -EOPNOTSUPP;
	/* Opening the backing file may block: never under the lock. */
	if (!err)
		err = section_create_file(target, ns->self_dev, who, &sec);
	if (err)
		return err;

	/* Only its creator may use a new file-backed section until they
	 * chmod it: its mode cannot know who else may reach the file. */
	mode = S_IFREG | (sec->writable ? 0600 : 0400);
	pthread_mutex_lock(&ns->lock);
	ph = node_new(ns, S_IFLNK | 0777, who->uid, who->gid);
	err = ph ? insert_new(ns, p, name, mode, who, sec, &real, &pin) : -ENOMEM;
	if (!err) {
		/* The kernel was told of the placeholder, not the section. */
		node_of(ns, real.ino)->nlookup = 0;
		symlink_placeholder(ns, ph, e);
	} else if (ph) {
		node_free(ns, ph);
	}
	pthread_mutex_unlock(&ns->lock);
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
	else if (want_dir && n->u.other.first)
		err = -ENOTEMPTY;
	if (err)
		goto out;
	dentry_detach(ns, d);
	free(d);
	n->nlink = want_dir ? 0 : n->nlink - 1;
	sec = node_unnamed(ns, n);
out:
	pthread_mutex_unlock(&ns->lock);
	put_if(sec);
	return err;
}

int ns_unlink(struct ns *ns, fuse_ino_t parent, const char *name)
{
	return remove_entry(ns, parent, name, 0);
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
	if (is_dir(dst->child) && dst->child->u.other.first)
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
	pthread_mutex_unlock(&ns->lock);
	free(nd);
	free(nd2);
	put_if(sec);
	return err;
}

int ns_link(struct ns *ns, fuse_ino_t ino, fuse_ino_t newparent,
	    const char *newname, struct fuse_entry_param *e)
{
	struct node *n = node_of(ns, ino), *p;
	struct section *pin = NULL;
	struct dentry *d;
	int err;

	pthread_mutex_lock(&ns->lock);
	err = dir_for_entry(ns, newparent, newname, &p);
	if (err)
		goto out;
	if (is_dir(n)) {
		err = -EPERM;
		goto out;
	}
	if (n->nlink == 0) {
		err = -ENOENT;	/* linkat of an unlinked file, as on tmpfs */
		goto out;
	}
	if (dentry_find(ns, p, newname)) {
		err = -EEXIST;
		goto out;
	}
	d = dentry_new(p, newname);
	if (!d) {
		err = -ENOMEM;
		goto out;
	}
	n->nlink++;
	n->ctime = now();
	dentry_attach(ns, d, n);
	pin = entry_start(ns, n, e);
out:
	pthread_mutex_unlock(&ns->lock);
	return err ? err : attr_finish(pin, &e->attr);
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
	count_close(n, flags);
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
	count_close(n, flags);
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

/*
 * Seal once the section has no writers.  On the cached path the daemon
 * cannot see the kernel's views, so it counts the section's writers.
 * RELEASE reaches the daemon asynchronously to close(2): a writer that
 * closed a moment ago may still be counted, so wait briefly for it before
 * saying EBUSY.  From the check that finds none until the seal is made,
 * opens for writing wait (ns_open), so that an open either comes first
 * (the seal is EBUSY) or finds the seal (a writer is refused a
 * write-sealed section; a grow-sealed one is opened direct_io).  The
 * namespace lock is not held across F_ADD_SEALS: a write seal walks every
 * page of the store, and waits up to 150 ms on pages still referenced (a
 * read reply on its way through a pipe), which must not stall every
 * other request of the mount.
 */
static int seal_without_writers(struct ns *ns, fuse_ino_t ino,
				struct section *sec, unsigned int seals)
{
	struct node *n = node_of(ns, ino);
	int tries = 20, err;

	for (;;) {
		pthread_mutex_lock(&ns->lock);
		if (n->u.file.writers == 0)
			break;
		pthread_mutex_unlock(&ns->lock);
		if (--tries == 0)
			return -EBUSY;
		usleep(10000);
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
	err = xattr_parse_set(name, value, size, &change);
	if (!err && who->uid != 0 && who->uid != owner)
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

/* ---- readdir ---- */

static void dir_free_entries(struct ns_dir *dir)
{
	free(dir->ents);	/* the names live in the same block */
	dir->ents = NULL;
	dir->n = 0;
}

/* Append one entry, its name copied to names; returns where the next
 * name goes. */
static char *dir_add(struct ns_dir *dir, char *names, const char *name,
		     const struct node *n)
{
	struct ns_dirent *e = &dir->ents[dir->n++];
	size_t len = strlen(name) + 1;

	e->name = memcpy(names, name, len);
	e->ino = n->ino;
	e->mode = n->mode;
	return names + len;
}

/*
 * Under the lock: copy the directory's names.  One block holds the entry
 * array and then every name, so that listing a large directory costs one
 * allocation, not one per name (which, with their frees, was most of the
 * daemon's time in a listing of 10,000 names), and the lock is held for
 * copies only.
 */
static int dir_snapshot(struct ns *ns, struct ns_dir *dir)
{
	struct node *n = dir->dir;
	struct node *up = dir_name(n) ? dir_name(n)->parent : n;
	size_t count = 2 + (size_t)n->u.other.nchildren;
	size_t bytes = sizeof(".") + sizeof("..");
	struct dentry *d;
	char *names;

	for (d = n->u.other.first; d; d = d->next)
		bytes += strlen(d->name) + 1;
	dir->ents = malloc(count * sizeof(*dir->ents) + bytes);
	if (!dir->ents)
		return -ENOMEM;
	names = (char *)(dir->ents + count);
	dir->n = 0;
	names = dir_add(dir, names, ".", n);
	names = dir_add(dir, names, "..", up);
	for (d = n->u.other.first; d && dir->n < count; d = d->next)
		names = dir_add(dir, names, d->name, d->child);
	dir->fresh = 1;
	return 0;
}

int ns_opendir(struct ns *ns, fuse_ino_t ino, struct ns_dir **out)
{
	struct ns_dir *dir = calloc(1, sizeof(*dir));
	int err;

	if (!dir)
		return -ENOMEM;
	dir->dir = node_of(ns, ino);
	pthread_mutex_lock(&ns->lock);
	err = is_dir(dir->dir) ? dir_snapshot(ns, dir) : -ENOTDIR;
	if (!err)
		LIST_INSERT_HEAD(&ns->listings, dir, link);
	pthread_mutex_unlock(&ns->lock);
	if (err) {
		free(dir);
		return err;
	}
	*out = dir;
	return 0;
}

int ns_readdir_rewind(struct ns *ns, fuse_ino_t ino, struct ns_dir *dir)
{
	int err;

	if (dir->fresh)
		return 0;	/* opendir has just taken it */
	dir_free_entries(dir);
	pthread_mutex_lock(&ns->lock);
	err = dir_snapshot(ns, dir);
	pthread_mutex_unlock(&ns->lock);
	return err;
}

void ns_releasedir(struct ns *ns, struct ns_dir *dir)
{
	pthread_mutex_lock(&ns->lock);
	LIST_REMOVE(dir, link);
	pthread_mutex_unlock(&ns->lock);
	dir_free_entries(dir);
	free(dir);
}

int ns_readdir_entry(struct ns *ns, struct ns_dir *dir, size_t index, int plus,
		     const char **name, struct fuse_entry_param *e)
{
	struct ns_dirent *ent;
	struct section *pin = NULL;
	struct dentry *d;
	int found;

	dir->fresh = 0;
	if (index >= dir->n)
		return -ENOENT;
	ent = &dir->ents[index];
	*name = ent->name;
	memset(e, 0, sizeof(*e));
	e->attr.st_ino = ent->ino;
	e->attr.st_mode = ent->mode;
	/* "." and ".." carry no lookup: the kernel skips them in plus mode. */
	if (!plus || index < 2)
		return 0;

	pthread_mutex_lock(&ns->lock);
	d = dentry_find(ns, dir->dir, ent->name);
	found = d && d->child->ino == ent->ino;
	if (found)
		pin = entry_start(ns, d->child, e);
	pthread_mutex_unlock(&ns->lock);
	if (!found)
		return -ESTALE;
	return attr_finish(pin, &e->attr);
}

void ns_counts(struct ns *ns, uint64_t *nodes)
{
	pthread_mutex_lock(&ns->lock);
	*nodes = ns->nnodes;
	pthread_mutex_unlock(&ns->lock);
}

int ns_removexattr(struct ns *ns, fuse_ino_t ino, const char *name)
{
	return xattr_remove(name);
}
