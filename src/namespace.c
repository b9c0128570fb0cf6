/*
 * namespace.c - directories, names, node ids and lookup counts.
 *
 * Owns the tree: nodes (one per directory, section or special file), the
 * dentries that name them, the hash table that finds a name in a
 * directory, the kernel's lookup counts that decide when a node may be
 * freed, and the attributes of nodes.  Requests that change names live in
 * ns_names.c, opens and section attributes in ns_open.c, listings in
 * ns_dir.c; all of them work on the tree through the functions here.  It
 * creates no sections, never does I/O on a section's file while holding
 * the namespace lock, and never replies to the kernel.
 *
 * A node's FUSE node id is its ino, a number never reused, found in a
 * table (ids below) checked on every request: an id from a server that
 * has since died, or one never given, finds no node and is ESTALE, never
 * memory that once held one.  A node lives while it has a name
 * (nlink > 0) or the kernel holds a lookup on it; nodes the kernel holds
 * after their last name went sit on the orphan list so that ns_destroy()
 * can free them at unmount.  Directory listings are linked to the
 * namespace for the same reason: a RELEASEDIR still queued when the mount
 * goes is dropped by the kernel, never sent.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cap.h"
#include "ns_internal.h"

/* tmpfs reports a directory's size as 20 bytes per entry; so do we. */
#define DIRENT_BOGO_SIZE 20

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

struct dentry *dentry_find(struct ns *ns, const struct node *parent,
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

struct dentry *dentry_new(struct node *parent, const char *name)
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
void dentry_attach(struct ns *ns, struct dentry *d, struct node *child)
{
	dentry_attach_seq(ns, d, child, ++ns->next_seq);
}

/* The same with the listing order given (adoption: the recorded one). */
void dentry_attach_seq(struct ns *ns, struct dentry *d, struct node *child,
		       uint64_t seq)
{
	struct node *p = d->parent;

	d->child = child;
	d->seq = seq;
	d->prev = NULL;
	d->next = p->u.other.first;
	if (d->next)
		d->next->prev = d;
	p->u.other.first = d;
	p->u.other.nchildren++;
	hash_insert(ns, d);
	if (child->names && !is_dir(child))
		ns->nlinks++;
	d->next_name = child->names;
	child->names = d;
	if (is_dir(child))
		p->nlink++;
	p->u.other.mtime = p->ctime = now();
	record_name(ns, d);
	record_node(ns, p);
	record_node(ns, child);
}

/* Unlink a dentry from its parent and the hash; the caller frees it. */
void dentry_detach(struct ns *ns, struct dentry *d)
{
	struct node *p = d->parent;
	struct dentry **pp;

	record_unname(ns, d);
	record_node(ns, p);
	record_node(ns, d->child);
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
	if (d->child->names && !is_dir(d->child))
		ns->nlinks--;
	if (is_dir(d->child))
		p->nlink--;
	p->u.other.mtime = p->ctime = now();
}

/* ---- node ids ---- */

/* Where ino's probe starts: Fibonacci hashing spreads inos a pattern of
 * creates and removals leaves evenly spaced. */
static size_t id_home(const struct ns *ns, uint64_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ULL) >> 32) &
		(ns->nids_slots - 1);
}

struct node *node_find(struct ns *ns, fuse_ino_t ino)
{
	size_t mask = ns->nids_slots - 1, i = id_home(ns, ino);
	struct node *n;

	for (; (n = ns->ids[i]); i = (i + 1) & mask)
		if (n->ino == ino)
			return n;
	return NULL;
}

static void id_place(struct node **t, size_t mask, size_t home, struct node *n)
{
	size_t i = home;

	while (t[i])
		i = (i + 1) & mask;
	t[i] = n;
}

/* Keep the table at most half full; on ENOMEM keep it while a slot is
 * left, so a probe always ends. */
static int id_insert(struct ns *ns, struct node *n)
{
	if ((ns->nids + 1) * 2 > ns->nids_slots) {
		size_t nb = ns->nids_slots * 2, i, old = ns->nids_slots;
		struct node **t = calloc(nb, sizeof(*t));

		if (!t && ns->nids + 2 > old)
			return -ENOMEM;
		if (t) {
			struct node **ot = ns->ids;

			ns->ids = t;
			ns->nids_slots = nb;
			for (i = 0; i < old; i++)
				if (ot[i])
					id_place(t, nb - 1,
						 id_home(ns, ot[i]->ino), ot[i]);
			free(ot);
		}
	}
	id_place(ns->ids, ns->nids_slots - 1, id_home(ns, n->ino), n);
	ns->nids++;
	return 0;
}

/* Linear probing's deletion: later entries of the run move back, so no
 * tombstone is left to lengthen probes. */
static void id_remove(struct ns *ns, struct node *n)
{
	size_t mask = ns->nids_slots - 1, i = id_home(ns, n->ino), j, k;

	while (ns->ids[i] != n)
		i = (i + 1) & mask;
	for (j = i;;) {
		j = (j + 1) & mask;
		if (!ns->ids[j])
			break;
		k = id_home(ns, ns->ids[j]->ino);
		/* Stays when its home lies cyclically in (i, j]. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		ns->ids[i] = ns->ids[j];
		i = j;
	}
	ns->ids[i] = NULL;
	ns->nids--;
}

/* ---- nodes ---- */

struct node *node_new(struct ns *ns, mode_t mode, uid_t uid, gid_t gid)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->ino = ns->next_ino++;
	if (id_insert(ns, n)) {
		free(n);
		return NULL;
	}
	record_node(ns, n);
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
 * A node a predecessor made, with its id (adoption): the root is there
 * already; any other is made bare, its state for the caller to set.
 */
struct node *node_adopt(struct ns *ns, uint64_t ino, mode_t mode)
{
	struct node *n;

	if (ino == FUSE_ROOT_ID)
		return S_ISDIR(mode) ? ns->root : NULL;
	if (ino == 0 || node_find(ns, ino))
		return NULL;		/* a record that says so is bad */
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->ino = ino;
	n->mode = mode;
	if (id_insert(ns, n)) {
		free(n);
		return NULL;
	}
	ns->nnodes++;
	return n;
}

/*
 * Free a node nobody names or holds.  Its section may need a close(), so
 * it is handed back for the caller to put once the lock is dropped; a
 * counted node's inode goes back to its owner then too (ns_unlock), the
 * node kept until then to remember who that is.
 */
struct section *node_free(struct ns *ns, struct node *n)
{
	struct section *sec = node_sec(n);

	id_remove(ns, n);
	record_gone(ns, n);
	ns->nnodes--;
	if (node_counted(ns, n)) {
		/* Its target too says what to give back. */
		LIST_INSERT_HEAD(&ns->freed, n, orphan);
		return NULL;
	}
	free((char *)node_target(n));
	free(n);
	return sec;
}

void ns_unlock(struct ns *ns)
{
	struct node *n = LIST_FIRST(&ns->freed), *next;

	LIST_INIT(&ns->freed);
	ns_leave(ns);
	for (; n; n = next) {
		const char *target = node_target(n);

		next = LIST_NEXT(n, orphan);
		if (target)
			cap_target_uncount(n->uid, n->gid, strlen(target));
		cap_node_uncount(n->uid, n->gid);
		free((char *)target);
		free(n);
	}
}

/* A node lost a name.  Returns a section to put after unlocking, or NULL. */
struct section *node_unnamed(struct ns *ns, struct node *n)
{
	n->ctime = now();
	record_node(ns, n);
	if (n->nlink > 0)
		return NULL;
	if (n->nlookup == 0)
		return node_free(ns, n);
	LIST_INSERT_HEAD(&ns->orphans, n, orphan);
	return NULL;
}

/* ---- attributes ---- */

/*
 * Under the lock: fill what the node knows, and pin its section so that
 * attr_finish() can read the rest from the file after the lock is gone.
 */
struct section *attr_start(struct ns *ns, struct node *n,
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
	else if (node_target(n))
		st->st_size = (off_t)strlen(n->u.other.target);
	return NULL;
}

static int ts_after(struct timespec a, struct timespec b)
{
	return a.tv_sec != b.tv_sec ? a.tv_sec > b.tv_sec : a.tv_nsec > b.tv_nsec;
}

/* Without the lock: size, blocks and data times come from the file. */
int attr_finish(struct section *sec, struct stat *st)
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
struct section *entry_start(struct ns *ns, struct node *n,
				   struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	n->nlookup++;
	record_node(ns, n);
	record_result(ns, n->ino);
	e->ino = ino_of(ns, n);
	e->generation = n->ino;
	e->entry_timeout = ns->entry_timeout;
	e->attr_timeout = ns->attr_timeout;
	return attr_start(ns, n, &e->attr);
}

/* Look up a live directory for a request that names an entry in it. */
int dir_for_entry(struct ns *ns, fuse_ino_t parent, const char *name,
			 struct node **out)
{
	struct node *p = node_of(ns, parent);

	if (!p)
		return -ESTALE;
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
int find_entry(struct ns *ns, fuse_ino_t parent, const char *name,
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

int ns_init(struct ns *ns, const struct sfs_modes *modes, mode_t root_mode,
	    uid_t uid, gid_t gid, double entry_timeout, double attr_timeout)
{
	pthread_condattr_t attr;

	memset(ns, 0, sizeof(*ns));
	LIST_INIT(&ns->orphans);
	LIST_INIT(&ns->freed);
	LIST_INIT(&ns->listings);
	TAILQ_INIT(&ns->seals);
	pthread_mutex_init(&ns->lock, NULL);
	pthread_cond_init(&ns->sealed, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	/* The sealer's deadlines are on the clock that never jumps. */
	pthread_cond_init(&ns->writers_gone, &attr);
	pthread_condattr_destroy(&attr);
	ns->modes = modes;
	ns->entry_timeout = entry_timeout;
	ns->attr_timeout = attr_timeout;
	ns->next_ino = FUSE_ROOT_ID;
	ns->nbuckets = 1024;
	ns->buckets = calloc(ns->nbuckets, sizeof(*ns->buckets));
	ns->nids_slots = 1024;
	ns->ids = calloc(ns->nids_slots, sizeof(*ns->ids));
	if (ns->buckets && ns->ids)
		ns->root = node_new(ns, S_IFDIR | (root_mode & 07777), uid,
				    gid);
	if (!ns->root || ns_handles_init(&ns->handles)) {
		free(ns->root);
		free(ns->ids);
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
	free((char *)node_target(n));
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

	record_stop(ns);
	/* Listings first: their marks stand in directories' lists. */
	while (!LIST_EMPTY(&ns->listings))
		ns_releasedir(ns, LIST_FIRST(&ns->listings));
	while ((n = LIST_FIRST(&ns->orphans))) {
		LIST_REMOVE(n, orphan);
		node_drop(n);
	}
	while ((n = LIST_FIRST(&ns->freed))) {
		LIST_REMOVE(n, orphan);
		free((char *)node_target(n));
		free(n);
	}
	free_tree(ns->root);
	free(ns->buckets);
	free(ns->ids);
	ns_handles_destroy(&ns->handles);
	pthread_cond_destroy(&ns->writers_gone);
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
	ns_leave(ns);
	return err ? err : attr_finish(sec, &e->attr);
}

int ns_entry(struct ns *ns, fuse_ino_t ino, struct fuse_entry_param *e)
{
	struct section *sec = NULL;
	struct node *n;

	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	if (n) {
		memset(e, 0, sizeof(*e));
		e->ino = ino_of(ns, n);
		e->generation = n->ino;
		/* ns_symlink's placeholder is never kept (zero timeouts). */
		if (!S_ISLNK(n->mode) || n->u.other.target) {
			e->entry_timeout = ns->entry_timeout;
			e->attr_timeout = ns->attr_timeout;
		}
		sec = attr_start(ns, n, &e->attr);
	}
	ns_leave(ns);
	return n ? attr_finish(sec, &e->attr) : -ESTALE;
}

struct section *forget_locked(struct ns *ns, fuse_ino_t ino,
			      uint64_t nlookup)
{
	struct node *n = node_of(ns, ino);

	if (!n)
		return NULL;		/* nothing to forget: no reply either */
	n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
	record_node(ns, n);
	if (n->nlookup > 0 || n->nlink > 0 || n == ns->root)
		return NULL;
	LIST_REMOVE(n, orphan);
	return node_free(ns, n);
}

void ns_forget(struct ns *ns, fuse_ino_t ino, uint64_t nlookup)
{
	struct fuse_forget_data one = { .ino = ino, .nlookup = nlookup };

	ns_forget_many(ns, &one, 1);
}

void ns_forget_many(struct ns *ns, const struct fuse_forget_data *f,
		    size_t count)
{
	struct section *only, **gone = &only;
	size_t i, n = 0;

	if (count > 1 && !(gone = calloc(count, sizeof(*gone)))) {
		/* One at a time: a death midway leaves the batch half
		 * done (the successor does all of it, or none). */
		for (i = 0; i < count; i++)
			ns_forget(ns, f[i].ino, f[i].nlookup);
		return;
	}
	pthread_mutex_lock(&ns->lock);
	for (i = 0; i < count; i++)
		if ((gone[n] = forget_locked(ns, f[i].ino, f[i].nlookup)))
			n++;
	ns_unlock(ns);
	for (i = 0; i < n; i++)
		section_put(gone[i]);
	if (gone != &only)
		free(gone);
}

size_t ns_let_go_unheld(struct ns *ns, bool (*held)(fuse_ino_t, void *),
			void *arg)
{
	fuse_ino_t *inos = NULL;
	size_t count = 0, n = 0, i, gone = 0;
	struct node *o;

	pthread_mutex_lock(&ns->lock);
	LIST_FOREACH(o, &ns->orphans, orphan)
		count++;
	if (count && (inos = malloc(count * sizeof(*inos))))
		LIST_FOREACH(o, &ns->orphans, orphan)
			if (o->nlookup)
				inos[n++] = o->ino;
	pthread_mutex_unlock(&ns->lock);
	for (i = 0; i < n; i++) {
		if (held(inos[i], arg))
			continue;
		ns_forget(ns, inos[i], UINT64_MAX);
		gone++;
	}
	free(inos);
	return gone;
}

int ns_readlink(struct ns *ns, fuse_ino_t ino, char *buf, size_t size)
{
	const char *target = NULL;
	struct node *n;
	int err = 0;

	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	if (n)
		target = node_target(n);
	if (!n)
		err = -ESTALE;
	else if (!target)
		err = -EINVAL;		/* not a symlink, or the placeholder */
	else if (strlen(target) >= size)
		err = -ENAMETOOLONG;
	else
		strcpy(buf, target);
	ns_leave(ns);
	return err;
}

int ns_getattr(struct ns *ns, fuse_ino_t ino, struct stat *st)
{
	struct section *sec = NULL;
	struct node *n;

	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	if (n)
		sec = attr_start(ns, n, st);
	ns_leave(ns);
	return n ? attr_finish(sec, st) : -ESTALE;
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
		err = section_resize(sec, attr->st_size, ns->modes->commit_eager);
	if (!err && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)))
		err = section_set_times(sec, times, who);
	/* Its charge moves to the new owner, or EDQUOT (cap.h). */
	if (!err && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		err = section_chown(sec,
				    to_set & FUSE_SET_ATTR_UID ? attr->st_uid :
				    (uid_t)-1,
				    to_set & FUSE_SET_ATTR_GID ? attr->st_gid :
				    (gid_t)-1, who->uid);
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

static int in_group(const struct caller *who, gid_t gid)
{
	int i;

	if (who->gid == gid)
		return 1;
	for (i = 0; i < who->ngroups; i++)
		if (who->groups[i] == gid)
			return 1;
	return 0;
}

int ns_kill_setid(struct ns *ns, fuse_ino_t ino, const struct caller *who)
{
	mode_t kill = 0;
	struct node *n;
	int res = 0;

	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	if (!n)
		res = -ESTALE;
	if (!n || !S_ISREG(n->mode))
		goto out;
	kill = n->mode & S_ISUID;
	/* A set-group-ID file the group may not execute marks no program,
	 * but the bit still goes when the writer is outside its group and
	 * not root (the kernel's setattr_should_drop_sgid). */
	if ((n->mode & S_ISGID) && (n->mode & S_IXGRP))
		kill |= S_ISGID;
	else if ((n->mode & S_ISGID) && who->uid != 0 &&
		 !in_group(who, n->gid)) {
		if (who->ngroups < 0)
			res = -EAGAIN;	/* known only with its groups */
		else
			kill |= S_ISGID;
	}
	if (kill && !res) {
		n->mode &= ~kill;
		n->ctime = now();
		record_node(ns, n);
		res = 1;
	}
out:
	ns_leave(ns);
	return res;
}

int ns_setattr(struct ns *ns, fuse_ino_t ino, const struct stat *attr,
	       int to_set, const struct caller *who, struct stat *out)
{
	struct section *sec;
	struct node *n;
	struct timespec times[2] = {
		attr_time(to_set, FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW,
			  attr->st_atim),
		attr_time(to_set, FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW,
			  attr->st_mtim),
	};
	int err = 0;

	uid_t ouid = 0, nuid = to_set & FUSE_SET_ATTR_UID ? attr->st_uid :
		(uid_t)-1;
	gid_t ogid = 0, ngid = to_set & FUSE_SET_ATTR_GID ? attr->st_gid :
		(gid_t)-1;
	bool moves = false;
	int64_t bytes = 0;

again:
	pthread_mutex_lock(&ns->lock);
	n = node_of(ns, ino);
	if (!n) {
		ns_leave(ns);
		return -ESTALE;
	}
	sec = node_sec(n);
	if (sec)
		section_get(sec);
	else if (to_set & FUSE_SET_ATTR_SIZE)
		err = is_dir(n) ? -EISDIR : -EINVAL;
	/* Another node's inode moves with its owner (cap.h), here. */
	moves = !sec && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
		node_counted(ns, n);
	/* A symbolic link's page moves with its inode. */
	bytes = node_target(n) ? cap_target_bytes(strlen(node_target(n))) : 0;
	ouid = n->uid;
	ogid = n->gid;
	ns_leave(ns);
	if (err)
		return err;

	/* What can fail goes first, so a failure changes nothing. */
	if (sec) {
		err = setattr_section(ns, sec, attr, to_set, times, who);
		section_put(sec);
		if (err)
			return err;
	}
	if (moves) {
		err = cap_node_chown(ouid, ogid, nuid, ngid, bytes, who->uid);
		if (err)
			return err;
	}

	pthread_mutex_lock(&ns->lock);
	/* The kernel holds the node while its request is on: the same
	 * one is found again. */
	n = node_of(ns, ino);
	if (!n) {
		ns_leave(ns);
		return -ESTALE;
	}
	if (moves && (n->uid != ouid || n->gid != ogid)) {
		/* Another chown came between: its owner holds the inode
		 * now.  Give the inode back (by root: never refused) and
		 * move it from that owner. */
		ns_leave(ns);
		cap_node_chown(nuid == (uid_t)-1 ? ouid : nuid,
			       ngid == (gid_t)-1 ? ogid : ngid, ouid, ogid,
			       bytes, 0);
		goto again;
	}
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
	record_node(ns, n);
	sec = attr_start(ns, n, out);
	ns_leave(ns);
	return attr_finish(sec, out);
}

/*
 * Under the lock: how many more nodes (or hard links) uid may make
 * within nr_inodes.  The last 1/64 (at least one) is root's, as ext4
 * keeps blocks for it, so that root can still make and remove names on
 * a full mount.
 */
uint64_t nodes_left(const struct ns *ns, uid_t uid)
{
	uint64_t limit = ns->modes->nr_inodes, used = ns->nnodes + ns->nlinks;

	if (uid != 0)
		limit -= limit / 64 + 1 < limit ? limit / 64 + 1 : 0;
	return used < limit ? limit - used : 0;
}

void ns_counts(struct ns *ns, uid_t uid, uint64_t *nodes, uint64_t *left)
{
	pthread_mutex_lock(&ns->lock);
	*nodes = ns->nnodes + ns->nlinks;
	*left = nodes_left(ns, uid);
	ns_leave(ns);
}
