/*
 * ns_dir.c - directory listings: opendir, readdir, releasedir.
 *
 * Owns the listing a directory handle reads from: a copy of the
 * directory's names taken at opendir (and again at rewind), so that a
 * name removed or added meanwhile never moves a reader's position.  It
 * changes nothing in the tree beyond the lookups readdirplus counts, and
 * never replies to the kernel.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ns_internal.h"

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
