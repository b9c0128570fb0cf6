/*
 * ns_handles.c - the ids of open files and directories.
 *
 * The kernel names an open file or directory by the fh the daemon gave it
 * at OPEN, CREATE or OPENDIR, and sends it back with every request on the
 * handle.  An fh is a slot of the table here and the slot's generation,
 * never an address: an fh the table does not hold (released, made by a
 * server that has since died, or never given) finds nothing and is
 * EBADF, not whatever memory lies at that number now.  A slot freed is
 * given out again with the next generation, so an old fh does not find
 * its successor.  The table has its own lock, a leaf: never taken with
 * ns->lock held, never held across a call out but a section's reference
 * count, so the data path's reads and writes, which find their section
 * here, never wait for the tree.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "keeper.h"
#include "ns_internal.h"

/*
 * A released slot is GOING until the record says so, and only then
 * FREE: given out again before, a server that died in between would
 * leave a record of two handles in one slot, and no successor.
 */
enum handle_kind { HANDLE_FREE, HANDLE_FILE, HANDLE_DIR, HANDLE_GOING };

/* One slot: 24 bytes. */
struct ns_handle {
	void *obj;		/* the section (with the handle's reference)
				   or the listing; lock */
	fuse_ino_t ino;		/* the node it is open on; lock */
	uint32_t gen;		/* the fh's high half; lock */
	uint16_t kind;		/* enum handle_kind; lock */
	uint16_t writer;	/* opened for writing; lock */
};

/* Free slots are chained through ino, as slot numbers plus one. */
#define FH_SLOT(fh)	((uint32_t)(fh) - 1)
#define FH_GEN(fh)	((uint32_t)((fh) >> 32))
#define SLOTS_MAX	(1u << 30)

int ns_handles_init(struct ns_handles *h)
{
	h->slots = NULL;
	h->nslots = h->nused = h->free = 0;
	return -pthread_mutex_init(&h->lock, NULL);
}

void ns_handles_destroy(struct ns_handles *h)
{
	/* What the handles held went with their nodes (ns_destroy). */
	free(h->slots);
	pthread_mutex_destroy(&h->lock);
}

/* Under the lock: one more slot on the free chain, doubling the table. */
static int grow(struct ns_handles *h)
{
	uint32_t n = h->nslots ? h->nslots * 2 : 64, i;
	struct ns_handle *s;

	if (n > SLOTS_MAX)
		return -ENOMEM;		/* a billion open files */
	s = realloc(h->slots, n * sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (i = h->nslots; i < n; i++)
		s[i] = (struct ns_handle){
			.ino = i + 1 < n ? i + 2 : h->free, .gen = 0,
		};
	h->free = h->nslots + 1;
	h->slots = s;
	h->nslots = n;
	return 0;
}

/*
 * Into the record, under ns->lock (never with the table's lock held): a
 * handle opened or released, and with an open the node, whose section
 * may have just been given its passthrough id.
 */
static void record(struct ns *ns, uint64_t fh, fuse_ino_t ino, int dir,
		   int flags, bool opened)
{
	struct node *n;

	pthread_mutex_lock(&ns->lock);
	if (opened) {
		record_handle(ns, fh, ino, dir, flags);
		n = node_of(ns, ino);
		if (n)
			record_node(ns, n);
	} else {
		record_handle_gone(ns, fh);
	}
	ns_leave(ns);
}

static int add(struct ns *ns, enum handle_kind kind, fuse_ino_t ino,
	       void *obj, int flags, uint64_t *fh)
{
	struct ns_handles *h = &ns->handles;
	struct ns_handle *s;
	int err = 0;

	pthread_mutex_lock(&h->lock);
	if (!h->free)
		err = grow(h);
	if (!err) {
		uint32_t slot = h->free - 1;

		s = &h->slots[slot];
		h->free = (uint32_t)s->ino;
		/* Generation 0 is never given: a zero fh finds nothing. */
		s->gen = s->gen + 1 ? s->gen + 1 : 1;
		*fh = (uint64_t)s->gen << 32 | (slot + 1);
		s->obj = obj;
		s->ino = ino;
		s->kind = kind;
		s->writer = is_writer(flags);
		h->nused++;
	}
	pthread_mutex_unlock(&h->lock);
	if (!err)
		record(ns, *fh, ino, kind == HANDLE_DIR, flags, true);
	return err;
}

/* Under the lock: fh's slot when it holds a handle of kind, else NULL. */
static struct ns_handle *find(struct ns_handles *h, enum handle_kind kind,
			      uint64_t fh)
{
	uint32_t slot = FH_SLOT(fh);
	struct ns_handle *s;

	if (slot >= h->nslots)
		return NULL;		/* 0 - 1 wraps past nslots too */
	s = &h->slots[slot];
	return s->kind == kind && s->gen == FH_GEN(fh) ? s : NULL;
}

void *ns_handle_unlist(struct ns *ns, bool dir, uint64_t fh, fuse_ino_t ino)
{
	struct ns_handles *h = &ns->handles;
	struct ns_handle *s;
	void *obj = NULL;

	pthread_mutex_lock(&h->lock);
	s = find(h, dir ? HANDLE_DIR : HANDLE_FILE, fh);
	if (s && s->ino == ino) {
		obj = s->obj;
		s->obj = NULL;
		s->kind = HANDLE_GOING;
		h->nused--;
	}
	pthread_mutex_unlock(&h->lock);
#ifdef SFS_TEST_HOOKS
	if (obj)
		keeper_test_gap("release", ino);
#endif
	return obj;
}

void ns_handle_unlisted(struct ns *ns, uint64_t fh, fuse_ino_t ino)
{
	struct ns_handles *h = &ns->handles;
	struct ns_handle *s;

#ifdef SFS_TEST_HOOKS
	keeper_test_gap("release-recorded", ino);
#else
	(void)ino;
#endif
	pthread_mutex_lock(&h->lock);
	s = &h->slots[FH_SLOT(fh)];
	s->kind = HANDLE_FREE;
	s->ino = h->free;
	h->free = FH_SLOT(fh) + 1;
	pthread_mutex_unlock(&h->lock);
}

/* A handle released with nothing else to record. */
static void *take(struct ns *ns, enum handle_kind kind, uint64_t fh,
		  fuse_ino_t ino)
{
	void *obj = ns_handle_unlist(ns, kind == HANDLE_DIR, fh, ino);

	if (obj) {
		record(ns, fh, ino, kind == HANDLE_DIR, 0, false);
		ns_handle_unlisted(ns, fh, ino);
	}
	return obj;
}

int ns_handle_place(struct ns *ns, uint64_t fh, fuse_ino_t ino, bool dir,
		    int flags, void *obj)
{
	struct ns_handles *h = &ns->handles;
	uint32_t slot = FH_SLOT(fh), n;
	struct ns_handle *s;
	int err = 0;

	if (slot >= SLOTS_MAX || FH_GEN(fh) == 0 || !obj)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	if (slot >= h->nslots) {
		for (n = h->nslots ? h->nslots : 64; n <= slot; n *= 2)
			;
		s = realloc(h->slots, n * sizeof(*s));
		if (s) {
			memset(s + h->nslots, 0,
			       (n - h->nslots) * sizeof(*s));
			h->slots = s;
			h->nslots = n;
		} else {
			err = -ENOMEM;
		}
	}
	if (!err && h->slots[slot].kind != HANDLE_FREE)
		err = -EINVAL;
	if (!err) {
		h->slots[slot] = (struct ns_handle){
			.obj = obj, .ino = ino, .gen = FH_GEN(fh),
			.kind = dir ? HANDLE_DIR : HANDLE_FILE,
			.writer = is_writer(flags),
		};
		h->nused++;
	}
	pthread_mutex_unlock(&h->lock);
	return err;
}

void ns_handles_adopted(struct ns *ns)
{
	struct ns_handles *h = &ns->handles;
	uint32_t i;

	pthread_mutex_lock(&h->lock);
	h->free = 0;
	for (i = h->nslots; i-- > 0;)
		if (h->slots[i].kind == HANDLE_FREE) {
			h->slots[i].ino = h->free;
			h->free = i + 1;
		}
	pthread_mutex_unlock(&h->lock);
}

void ns_handles_each(struct ns *ns,
		     void (*fn)(void *arg, uint64_t fh, fuse_ino_t ino,
				bool dir, int flags, void *obj),
		     void *arg)
{
	struct ns_handles *h = &ns->handles;
	uint32_t i;

	pthread_mutex_lock(&h->lock);
	for (i = 0; i < h->nslots; i++)
		if (h->slots[i].kind == HANDLE_FILE ||
		    h->slots[i].kind == HANDLE_DIR)
			fn(arg, (uint64_t)h->slots[i].gen << 32 | (i + 1),
			   h->slots[i].ino, h->slots[i].kind == HANDLE_DIR,
			   h->slots[i].writer ? O_RDWR : O_RDONLY,
			   h->slots[i].obj);
	pthread_mutex_unlock(&h->lock);
}

int ns_handle_add(struct ns *ns, fuse_ino_t ino, struct section *sec,
		  int flags, uint64_t *fh)
{
	return add(ns, HANDLE_FILE, ino, sec, flags, fh);
}

int ns_dirhandle_add(struct ns *ns, fuse_ino_t ino, struct ns_dir *dir,
		     uint64_t *fh)
{
	return add(ns, HANDLE_DIR, ino, dir, 0, fh);
}

bool ns_handle_known(struct ns *ns, uint64_t fh, fuse_ino_t ino, bool dir)
{
	struct ns_handles *h = &ns->handles;
	struct ns_handle *s;

	pthread_mutex_lock(&h->lock);
	s = find(h, dir ? HANDLE_DIR : HANDLE_FILE, fh);
	s = s && s->ino == ino ? s : NULL;
	pthread_mutex_unlock(&h->lock);
	return s != NULL;
}

size_t ns_handle_count(struct ns *ns)
{
	size_t n;

	pthread_mutex_lock(&ns->handles.lock);
	n = ns->handles.nused;
	pthread_mutex_unlock(&ns->handles.lock);
	return n;
}

struct section *ns_handle_section(struct ns *ns, uint64_t fh)
{
	struct ns_handles *h = &ns->handles;
	struct section *sec = NULL;
	struct ns_handle *s;

	pthread_mutex_lock(&h->lock);
	s = find(h, HANDLE_FILE, fh);
	if (s) {
		sec = s->obj;
		section_get(sec);
	}
	pthread_mutex_unlock(&h->lock);
	return sec;
}

/* The kernel sends one READDIR of a handle at a time and RELEASEDIR after
 * the last, so the listing found stays until the caller is done. */
struct ns_dir *ns_handle_dir(struct ns *ns, uint64_t fh)
{
	struct ns_handles *h = &ns->handles;
	struct ns_dir *dir = NULL;
	struct ns_handle *s;

	pthread_mutex_lock(&h->lock);
	s = find(h, HANDLE_DIR, fh);
	if (s)
		dir = s->obj;
	pthread_mutex_unlock(&h->lock);
	return dir;
}

struct section *ns_handle_take(struct ns *ns, uint64_t fh, fuse_ino_t ino)
{
	return take(ns, HANDLE_FILE, fh, ino);
}

struct ns_dir *ns_dirhandle_take(struct ns *ns, uint64_t fh, fuse_ino_t ino)
{
	return take(ns, HANDLE_DIR, fh, ino);
}
