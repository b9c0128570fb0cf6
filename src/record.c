/*
 * record.c - the namespace's record: its format, writing it, reading it.
 *
 * The record is a memfd mapped shared: a 64-byte header, then entries.
 * Each entry is an 8-byte head (its length, a multiple of 8, and its
 * type) and a payload; the header's committed word is the end of the
 * last whole entry.  Writing is: copy entries past committed, then one
 * release store of the new end into committed, an aligned 8-byte word.
 * A reader takes committed with an acquire load and reads up to it, so a
 * server killed at any instruction leaves whole entries and nothing of
 * the change it was making.  All of it happens under ns->lock, where the
 * change is made: the entries of one critical section are committed
 * together when it unlocks (ns_internal.h), so a change of several
 * objects (a rename over a name, a create) is seen whole or not at all.
 * The fixed part of a NODE or NAME payload is packed (pack_words()): most
 * of a node's fields are zero or small, and these two entries are what a
 * section costs the record, some 110 bytes where unpacked they took 210.
 *
 * Entries say what an object is now, not what was done to it: a node's
 * whole state (NODE), a name added (NAME, with its listing order) or
 * taken (UNNAME), a node freed (GONE), a handle opened or released
 * (HANDLE, HANDLE_GONE), the next ids (NEXT), a request carried out
 * that must not be done twice if the kernel sends it again (DONE), and
 * a private tmpfs store (STORE: which, whose, its fd), written at the
 * first commit after store.c made it, so before any section in it is
 * named; stores are never given back while the mount lives.
 * Reading applies them in order, the last state of each object winning:
 * into an image, from which a successor rebuilds the namespace
 * (record_adopt).  A node changed several times in one critical section
 * is written once, at the commit: record_node() only marks it.
 *
 * Compaction: when the log has grown past twice the last snapshot
 * (and 1 MiB), the state is written as a snapshot, in the same format,
 * into a fresh memfd, which the keeper is given in place of the old one:
 * O(state) work every O(state) entries, so O(1) per change amortised.
 *
 * What is not written: the bytes of sections (they are in the stores the
 * keeper holds, at the same descriptor numbers), the cap and the owners'
 * ledger (recomputed from the sections at adoption; a private store's
 * kernel counts what it holds itself), listings' positions (a READDIR at
 * an offset handed out before finds its place again), and seals waiting
 * for the sealer (the kernel sends the request again).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cap.h"
#include "keeper.h"
#include "log.h"
#include "ns_internal.h"
#include "record.h"
#include "store.h"
#include "wire.h"

#define REC_MAGIC	"sfsrec\0"
#define REC_VERSION	2
#define REC_HEADER	64
/* The memfd is this long and mapped once; only pages written cost. */
#define REC_MAP		(1ULL << 32)
#define REC_DIRTY	16

struct rec_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;
	_Atomic uint64_t committed;	/* end of the last whole entry */
};

enum rec_type {
	REC_NODE = 1, REC_GONE, REC_NAME, REC_UNNAME, REC_HANDLE,
	REC_HANDLE_GONE, REC_NEXT, REC_DONE, REC_STORE,
};

/*
 * A request carried out (record_request()): its unique, the node its
 * reply names and, for a create, its handle; or, ino DONE_FAILED and fh
 * an errno, the error it was answered (record_failed()); or, ino
 * RECORD_APPEND_AT(fd) or RECORD_APPENDED, an append's offset or count
 * (record_append()).  The last
 * REC_DONE_KEPT, and those still in flight (struct done_ring), are kept
 * and carried into every snapshot: the kernel sends again after a
 * server's death only the requests that server had not answered.
 */
struct rec_done {
	uint64_t unique, ino, fh;
};
#define REC_DONE_KEPT	1024
#define DONE_FAILED	UINT64_MAX	/* no node's id */

/*
 * The last REC_DONE_KEPT, and older ones whose requests are still being
 * carried out (wire_in_flight()): a thread held up between its commit
 * and its reply, or a request a dead server left, is sent again however
 * many requests came after it.  Room for two per serving thread and one
 * per request the keeper lists as left by the dead; past that the
 * oldest go.
 */
#define REC_DONE_HELD	(3 * KEEPER_SLOTS)

struct done_ring {
	struct rec_done d[REC_DONE_KEPT];
	unsigned int n, next;
	struct rec_done held[REC_DONE_HELD];	/* oldest first */
	unsigned int nheld;
};

/* The oldest entry, about to be overwritten: held while in flight. */
static void hold_if_in_flight(struct done_ring *ring,
			      const struct rec_done *old)
{
	unsigned int i, kept = 0;

	for (i = 0; i < ring->nheld; i++)	/* those answered since go */
		if (wire_in_flight(ring->held[i].unique))
			ring->held[kept++] = ring->held[i];
	ring->nheld = kept;
	if (!wire_in_flight(old->unique))
		return;
	if (ring->nheld == REC_DONE_HELD) {
		memmove(ring->held, ring->held + 1,
			(REC_DONE_HELD - 1) * sizeof(ring->held[0]));
		ring->nheld--;
	}
	ring->held[ring->nheld++] = *old;
}

static void ring_push(struct done_ring *ring, const struct rec_done *d)
{
	if (ring->n == REC_DONE_KEPT)
		hold_if_in_flight(ring, &ring->d[ring->next]);
	ring->d[ring->next] = *d;
	ring->next = (ring->next + 1) % REC_DONE_KEPT;
	if (ring->n < REC_DONE_KEPT)
		ring->n++;
}

static unsigned int ring_count(const struct done_ring *ring)
{
	return ring->nheld + ring->n;
}

/* The i-th oldest. */
static const struct rec_done *ring_at(const struct done_ring *ring,
				      unsigned int i)
{
	if (i < ring->nheld)
		return &ring->held[i];
	i -= ring->nheld;
	return &ring->d[(ring->next + REC_DONE_KEPT - ring->n + i) %
			REC_DONE_KEPT];
}

/* The request this thread serves, for record_commit(). */
static __thread struct rec_done serving;

struct rec_head {
	uint32_t len;			/* head and payload, padded to 8 */
	uint16_t type;
	uint16_t zero;
};

struct rec_time {
	int64_t sec, nsec;
};

#define SEC_FILE	1u		/* section kind: file-backed */
#define SEC_WRITABLE	2u
#define SEC_COUNTED	4u

/* A node's whole state; a target or backing path and the creator's
 * groups follow it. */
struct rec_node {
	uint64_t ino;
	uint64_t nlookup;
	uint32_t mode, uid, gid, nlink;
	struct rec_time ctime, atime, mtime;
	uint32_t rdev;
	uint32_t opens, writers, lifetime, handle_opens, handle_epoch;
	uint32_t linkable;		/* O_TMPFILE, not yet named */
	uint32_t zero;
	int32_t fd;			/* the section's; -1 for none */
	int32_t backing_id;
	uint32_t seals;
	uint32_t sec_uid, sec_gid, sec_flags;
	uint32_t cr_uid, cr_gid;
	uint32_t strlen;		/* target or path, no NUL */
	uint32_t ngroups;		/* the creator's */
};

struct rec_name {
	uint64_t parent, child, seq;
	uint32_t len;
	uint32_t zero;
	/* the name, len bytes */
};

struct rec_handle {
	uint64_t fh, ino;
	uint32_t dir, flags;
};

struct rec_next {
	uint64_t ino, seq;
};

/* A private tmpfs store (store.h): kind, owner, the mount's fd. */
struct rec_store {
	uint32_t kind, uid;
	int32_t fd;
	uint32_t zero;
};

/*
 * A fixed part of n 32-bit words, packed: a 64-bit mask of the words
 * that are not zero, then those words in order.  Returns its length.
 */
#define PACK_MAX(type)	(sizeof(uint64_t) + sizeof(type))

static size_t pack_words(const void *fixed, size_t size, char *out)
{
	const uint32_t *w = fixed;
	size_t i, n = size / sizeof(uint32_t), len = sizeof(uint64_t);
	uint64_t mask = 0;

	for (i = 0; i < n; i++)
		if (w[i]) {
			mask |= 1ULL << i;
			memcpy(out + len, &w[i], sizeof(w[i]));
			len += sizeof(w[i]);
		}
	memcpy(out, &mask, sizeof(mask));
	return len;
}

/* The fixed part back from p, of len bytes: its packed length, or 0 when
 * p does not hold one. */
static size_t unpack_words(const char *p, size_t len, void *fixed,
			   size_t size)
{
	size_t i, n = size / sizeof(uint32_t), used = sizeof(uint64_t);
	uint32_t *w = fixed;
	uint64_t mask;

	if (len < used)
		return 0;
	memcpy(&mask, p, sizeof(mask));
	if (n < 64 && mask >> n)
		return 0;
	memset(fixed, 0, size);
	for (i = 0; i < n; i++)
		if (mask & (1ULL << i)) {
			if (len - used < sizeof(w[i]))
				return 0;
			memcpy(&w[i], p + used, sizeof(w[i]));
			used += sizeof(w[i]);
		}
	return used;
}

_Static_assert(sizeof(struct rec_node) % sizeof(uint32_t) == 0 &&
	       sizeof(struct rec_node) <= 64 * sizeof(uint32_t),
	       "a NODE packs as at most 64 words");
_Static_assert(sizeof(struct rec_name) % sizeof(uint32_t) == 0,
	       "a NAME packs as words");

/* A handle as the record keeps it, to write a snapshot without the
 * handle table's lock (never taken under ns->lock). */
struct rec_open {
	uint64_t fh, ino;
	uint32_t dir, flags;
	struct rec_open *next;
};

struct record {
	int fd;
	char *map;
	struct rec_header *hdr;
	uint64_t tail;			/* written, committed or not */
	uint64_t snapshot;		/* length of the last snapshot */
	struct node *dirty[REC_DIRTY];
	unsigned int ndirty;
	bool full;			/* out of room: stopped */
	uint64_t next_ino, next_seq;	/* as last written */
	unsigned int stores;		/* private stores written */
	uint64_t store_bytes;		/* of them, in this commit */
	struct done_ring done;		/* the last requests carried out */
	uint64_t written;		/* bytes ever written, snapshots too */
	uint64_t commits, compactions;
	struct rec_open **opens;	/* fh -> handle; chained */
	size_t nopens_slots;
};

/* ---- writing ---- */

static void *reserve(struct record *r, enum rec_type type, size_t payload)
{
	size_t len = (sizeof(struct rec_head) + payload + 7) & ~(size_t)7;
	struct rec_head *h;

	if (r->full || r->tail + len > REC_MAP) {
		if (!r->full)
			log_err("the record is full: a successor could not "
				"take over this mount");
		r->full = true;
		return NULL;
	}
	h = (struct rec_head *)(r->map + r->tail);
	memset(h, 0, len);
	h->len = (uint32_t)len;
	h->type = (uint16_t)type;
	r->tail += len;
	return h + 1;
}

static void fill_time(struct rec_time *t, struct timespec ts)
{
	t->sec = ts.tv_sec;
	t->nsec = ts.tv_nsec;
}

/* A node's state as the record has it; strings not included. */
static void node_state(const struct node *n, struct rec_node *s,
		       const char **str, const gid_t **groups)
{
	const struct section *sec = node_sec(n);

	memset(s, 0, sizeof(*s));
	*str = NULL;
	*groups = NULL;
	s->ino = n->ino;
	s->nlookup = n->nlookup;
	s->mode = n->mode;
	s->uid = n->uid;
	s->gid = n->gid;
	s->nlink = n->nlink;
	fill_time(&s->ctime, n->ctime);
	s->fd = -1;
	if (!sec) {
		fill_time(&s->atime, n->u.other.atime);
		fill_time(&s->mtime, n->u.other.mtime);
		s->rdev = n->u.other.rdev;
		*str = node_target(n);
		s->strlen = *str ? (uint32_t)strlen(*str) : 0;
		return;
	}
	s->opens = n->u.file.opens;
	s->writers = n->u.file.writers;
	s->lifetime = n->u.file.lifetime;
	s->handle_opens = n->u.file.handle_opens;
	s->handle_epoch = n->u.file.handle_epoch;
	s->linkable = n->u.file.linkable;
	s->fd = sec->fd;
	s->backing_id = atomic_load(&((struct section *)sec)->backing_id);
	s->seals = atomic_load(&((struct section *)sec)->seals);
	s->sec_uid = sec->uid;
	s->sec_gid = sec->gid;
	s->sec_flags = (sec->kind == SECTION_FILE ? SEC_FILE : 0) |
		(sec->writable ? SEC_WRITABLE : 0) |
		(sec->counted ? SEC_COUNTED : 0);
	if (sec->file) {
		*str = sec->file->path;
		s->strlen = (uint32_t)strlen(*str);
		s->cr_uid = sec->file->creator.uid;
		s->cr_gid = sec->file->creator.gid;
		if (sec->file->creator.ngroups > 0) {
			s->ngroups = (uint32_t)sec->file->creator.ngroups;
			*groups = sec->file->creator.groups;
		}
	}
}

static void write_node(struct record *r, const struct node *n)
{
	char packed[PACK_MAX(struct rec_node)];
	const gid_t *groups;
	const char *str;
	struct rec_node s;
	size_t len;
	char *p;

	node_state(n, &s, &str, &groups);
	len = pack_words(&s, sizeof(s), packed);
	p = reserve(r, REC_NODE, len + s.strlen + s.ngroups * sizeof(gid_t));
	if (!p)
		return;
	memcpy(p, packed, len);
	/* str and groups are NULL when a node has none: memcpy must not
	 * see a NULL source even for zero bytes. */
	if (s.strlen)
		memcpy(p + len, str, s.strlen);
	if (s.ngroups)
		memcpy(p + len + s.strlen, groups, s.ngroups * sizeof(gid_t));
}

static void write_name(struct record *r, enum rec_type type,
		       const struct dentry *d)
{
	char packed[PACK_MAX(struct rec_name)];
	size_t len = strlen(d->name), fixed;
	struct rec_name s = {
		.parent = d->parent->ino,
		.child = d->child ? d->child->ino : 0,
		.seq = d->seq,
		.len = (uint32_t)len,
	};
	char *p;

	fixed = pack_words(&s, sizeof(s), packed);
	p = reserve(r, type, fixed + len);
	if (!p)
		return;
	memcpy(p, packed, fixed);
	memcpy(p + fixed, d->name, len);
}

static void write_next(struct ns *ns, struct record *r)
{
	struct rec_next *s = reserve(r, REC_NEXT, sizeof(*s));

	if (s) {
		s->ino = r->next_ino = ns->next_ino;
		s->seq = r->next_seq = ns->next_seq;
	}
}

/* store_each_private(): a private store into the record. */
static void write_store(void *arg, const struct store_private *p)
{
	struct rec_store *s = reserve(arg, REC_STORE, sizeof(*s));

	if (s)
		*s = (struct rec_store){ .kind = p->kind, .uid = p->uid,
					 .fd = p->fd };
}

/* At a commit: the private stores made since the last (before a section
 * in one is named), the nodes marked, and the next ids when they moved. */
static void flush_dirty(struct ns *ns, struct record *r)
{
	uint64_t tail = r->tail;
	unsigned int i;

	r->stores = store_each_private(r->stores, write_store, r);
	r->store_bytes += r->tail - tail;
	for (i = 0; i < r->ndirty; i++)
		write_node(r, r->dirty[i]);
	r->ndirty = 0;
	if (r->next_ino != ns->next_ino || r->next_seq != ns->next_seq)
		write_next(ns, r);
}

void record_node(struct ns *ns, struct node *n)
{
	struct record *r = ns->rec;
	unsigned int i;

	if (!r)
		return;
	for (i = 0; i < r->ndirty; i++)
		if (r->dirty[i] == n)
			return;
	if (r->ndirty == REC_DIRTY)
		flush_dirty(ns, r);
	r->dirty[r->ndirty++] = n;
}

void record_gone(struct ns *ns, struct node *n)
{
	struct record *r = ns->rec;
	unsigned int i;
	uint64_t *ino;

	if (!r)
		return;
	for (i = 0; i < r->ndirty; i++)
		if (r->dirty[i] == n)
			r->dirty[i] = r->dirty[--r->ndirty];
	ino = reserve(r, REC_GONE, sizeof(*ino));
	if (ino)
		*ino = n->ino;
}

void record_name(struct ns *ns, const struct dentry *d)
{
	if (ns->rec)
		write_name(ns->rec, REC_NAME, d);
}

void record_unname(struct ns *ns, const struct dentry *d)
{
	if (ns->rec)
		write_name(ns->rec, REC_UNNAME, d);
}

static size_t open_slot(const struct record *r, uint64_t fh)
{
	return (size_t)((fh * 0x9e3779b97f4a7c15ULL) >> 40) &
		(r->nopens_slots - 1);
}

void record_handle(struct ns *ns, uint64_t fh, uint64_t ino, int dir,
		   int flags)
{
	struct record *r = ns->rec;
	struct rec_handle *s;
	struct rec_open *o;

	if (!r)
		return;
	if (serving.unique)
		serving.fh = fh;
	o = malloc(sizeof(*o));
	s = o ? reserve(r, REC_HANDLE, sizeof(*s)) : NULL;
	if (!s) {
		free(o);
		return;
	}
	*s = (struct rec_handle){ .fh = fh, .ino = ino, .dir = dir,
				  .flags = flags };
	*o = (struct rec_open){ .fh = fh, .ino = ino, .dir = dir,
				.flags = flags };
	o->next = r->opens[open_slot(r, fh)];
	r->opens[open_slot(r, fh)] = o;
}

void record_handle_gone(struct ns *ns, uint64_t fh)
{
	struct record *r = ns->rec;
	struct rec_open **p, *o;
	uint64_t *s;

	if (!r)
		return;
	for (p = &r->opens[open_slot(r, fh)]; (o = *p); p = &o->next)
		if (o->fh == fh) {
			*p = o->next;
			free(o);
			break;
		}
	s = reserve(r, REC_HANDLE_GONE, sizeof(*s));
	if (s)
		*s = fh;
}

/* ---- snapshots and compaction ---- */

/* The names of directory n, oldest first, as they were attached. */
static void write_children(struct record *r, const struct node *n)
{
	struct dentry *d = n->u.other.first, *last = NULL;

	for (; d; d = d->next)
		last = d;
	for (d = last; d; d = d->prev)
		if (d->child)		/* not a listing's mark */
			write_name(r, REC_NAME, d);
}

/* The whole state of ns, as entries of r from r->tail on. */
static void write_snapshot(struct ns *ns, struct record *r,
			   struct rec_open **opens, size_t nslots)
{
	size_t i;
	struct rec_open *o;

	write_next(ns, r);
	r->stores = store_each_private(0, write_store, r);
	for (i = 0; i < ns->nids_slots; i++)
		if (ns->ids[i])
			write_node(r, ns->ids[i]);
	for (i = 0; i < ns->nids_slots; i++)
		if (ns->ids[i] && is_dir(ns->ids[i]))
			write_children(r, ns->ids[i]);
	for (i = 0; i < nslots; i++)
		for (o = opens[i]; o; o = o->next) {
			struct rec_handle *s = reserve(r, REC_HANDLE,
						       sizeof(*s));

			if (s)
				*s = (struct rec_handle){
					.fh = o->fh, .ino = o->ino,
					.dir = o->dir, .flags = o->flags,
				};
		}
	for (i = 0; i < ring_count(&r->done); i++) {
		struct rec_done *s = reserve(r, REC_DONE, sizeof(*s));

		if (s)
			*s = *ring_at(&r->done, (unsigned int)i);
	}
}

/* A fresh memfd, mapped, with its header. */
static int rec_open_new(struct record *r)
{
	int fd = memfd_create("sectionfs-record", MFD_CLOEXEC);
	void *map;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)REC_MAP) < 0 ||
	    (map = mmap(NULL, REC_MAP, PROT_READ | PROT_WRITE, MAP_SHARED,
			fd, 0)) == MAP_FAILED) {
		int err = -errno;

		close(fd);
		return err;
	}
	r->fd = fd;
	r->map = map;
	r->hdr = map;
	memcpy(r->hdr->magic, REC_MAGIC, sizeof(r->hdr->magic));
	r->hdr->version = REC_VERSION;
#ifdef SFS_TEST_HOOKS
	/* A record only another sectionfs could read. */
	if (getenv("SECTIONFS_TEST_RECORD_VERSION"))
		r->hdr->version = atoi(getenv("SECTIONFS_TEST_RECORD_VERSION"));
#endif
	r->hdr->header_size = REC_HEADER;
	atomic_store(&r->hdr->committed, REC_HEADER);
	r->tail = REC_HEADER;
	r->full = false;
	return 0;
}

static void rec_close(struct record *r)
{
	munmap(r->map, REC_MAP);
	keeper_release(r->fd);
	close(r->fd);
}

/*
 * Under ns->lock, nothing uncommitted: write the state into a fresh
 * memfd and hand it to the keeper in place of the old one.  On failure
 * the old log goes on.
 */
static int compact(struct ns *ns)
{
	struct record *r = ns->rec, fresh = *r;
	int err = rec_open_new(&fresh);

	if (err)
		return err;
	write_snapshot(ns, &fresh, r->opens, r->nopens_slots);
	err = fresh.full ? -ENOSPC : keeper_hold(fresh.fd);
	if (err) {
		rec_close(&fresh);
		return err;
	}
	atomic_store_explicit(&fresh.hdr->committed, fresh.tail,
			      memory_order_release);
	keeper_set_record_fd(fresh.fd);
	rec_close(r);
	fresh.snapshot = fresh.tail - REC_HEADER;
	fresh.written += fresh.snapshot;
	fresh.compactions++;
	*r = fresh;
	return 0;
}

void record_commit(struct ns *ns)
{
	struct record *r = ns->rec;
	uint64_t from;
	bool changed;

	if (!r)
		return;
	from = atomic_load_explicit(&r->hdr->committed, memory_order_relaxed);
	flush_dirty(ns, r);
	if (r->tail == from)
		return;
	/* A store another thread made is written by whichever commit
	 * comes first: it is not this request's change. */
	changed = r->tail - from > r->store_bytes;
	r->store_bytes = 0;
	/* What this commit did for a request not to be done twice. */
	if (serving.unique && changed) {
		struct rec_done *s = reserve(r, REC_DONE, sizeof(*s));

		if (s)
			*s = serving;
		ring_push(&r->done, &serving);
	}
	r->written += r->tail - atomic_load_explicit(&r->hdr->committed,
						     memory_order_relaxed);
	r->commits++;
	atomic_store_explicit(&r->hdr->committed, r->tail,
			      memory_order_release);
	if (r->tail - REC_HEADER > 2 * r->snapshot + (1u << 20))
		compact(ns);
}

void record_request(uint64_t unique)
{
	serving = (struct rec_done){ .unique = unique & ~UNIQUE_RESENT };
}

void record_result(struct ns *ns, uint64_t ino)
{
	if (serving.unique)
		serving.ino = ino;
}

void record_failed(int err)
{
	if (serving.unique) {
		serving.ino = DONE_FAILED;
		serving.fh = (uint64_t)-err;
	}
}

void record_done(struct ns *ns)
{
	struct rec_done done = serving;
	struct rec_done *s;

	if (!done.unique)
		return;
	pthread_mutex_lock(&ns->lock);
	if (ns->rec && (s = reserve(ns->rec, REC_DONE, sizeof(*s)))) {
		*s = done;
		ring_push(&ns->rec->done, &done);
	}
	serving.unique = 0;	/* written: the commit adds no second one */
	ns_leave(ns);
	serving = done;
}

void record_append(struct ns *ns, uint64_t what, uint64_t value)
{
	if (!serving.unique)
		return;
	serving.ino = what;
	serving.fh = value;
	record_done(ns);
}

/* Whether a DONE entry newer than the i-th oldest names unique. */
static bool done_later(const struct done_ring *ring, unsigned int i,
		       uint64_t unique)
{
	for (unsigned int j = i + 1; j < ring_count(ring); j++)
		if (ring_at(ring, j)->unique == unique)
			return true;
	return false;
}

void record_appends_left(struct ns *ns,
			 void (*fn)(void *arg, uint64_t unique, int fd),
			 void *arg)
{
	struct rec_done left[REC_DONE_HELD];
	unsigned int i, n = 0;
	struct record *r;
	int fd;

	pthread_mutex_lock(&ns->lock);
	r = ns->rec;
	for (i = 0; r && i < ring_count(&r->done) && n < REC_DONE_HELD; i++) {
		const struct rec_done *d = ring_at(&r->done, i);

		if (record_append_at(d->ino, &fd) &&
		    wire_in_flight(d->unique) &&
		    !done_later(&r->done, i, d->unique))
			left[n++] = *d;
	}
	pthread_mutex_unlock(&ns->lock);
	/* Called without ns->lock: fn may take locks of its own. */
	for (i = 0; i < n; i++)
		if (record_append_at(left[i].ino, &fd))
			fn(arg, left[i].unique, fd);
}

int record_resent(struct ns *ns, uint64_t unique, uint64_t *ino,
		  uint64_t *fh)
{
	struct record *r;
	unsigned int i;
	int found = 0;

	unique &= ~UNIQUE_RESENT;
	if (!unique)
		return 0;
	pthread_mutex_lock(&ns->lock);
	r = ns->rec;
	/* The newest first: a create's handle comes after its name. */
	for (i = r ? ring_count(&r->done) : 0; i-- > 0 && !found;) {
		const struct rec_done *d = ring_at(&r->done, i);

		if (d->unique == unique && d->ino == DONE_FAILED) {
			found = d->fh < 4096 ? -(int)d->fh : -EIO;
		} else if (d->unique == unique) {
			*ino = d->ino;
			*fh = d->fh;
			found = 1;
		}
	}
	pthread_mutex_unlock(&ns->lock);
	return found;
}

void record_stats(struct ns *ns, struct record_stats *st)
{
	struct record *r = ns->rec;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&ns->lock);
	if (r) {
		st->written = r->written;
		st->commits = r->commits;
		st->compactions = r->compactions;
		st->length = r->tail;
		st->snapshot = r->snapshot;
	}
	pthread_mutex_unlock(&ns->lock);
}

/* ns_handles_each(): a handle into a record's own list of them. */
static void mirror_handle(void *arg, uint64_t fh, fuse_ino_t ino, bool dir,
			  int flags, void *obj);
static void free_opens(struct record *r);

/* A record of ns as it is, carrying the requests carry says were done. */
static int start(struct ns *ns, const struct done_ring *carry)
{
	struct record *r = calloc(1, sizeof(*r));
	int err = -ENOMEM;

	if (!r)
		return err;
	if (carry)
		r->done = *carry;
	r->nopens_slots = 1024;
	r->opens = calloc(r->nopens_slots, sizeof(*r->opens));
	if (!r->opens)
		goto fail;
	err = rec_open_new(r);
	if (err)
		goto fail;
	/* The handles a successor adopted (none in a first server). */
	ns_handles_each(ns, mirror_handle, r);
	pthread_mutex_lock(&ns->lock);
	write_snapshot(ns, r, r->opens, r->nopens_slots);
	atomic_store_explicit(&r->hdr->committed, r->tail,
			      memory_order_release);
	r->snapshot = r->tail - REC_HEADER;
	pthread_mutex_unlock(&ns->lock);
	err = keeper_hold(r->fd);
	if (err) {
		rec_close(r);
		goto fail;
	}
	keeper_set_record_fd(r->fd);
	ns->rec = r;
	return 0;
fail:
	free_opens(r);
	free(r);
	return err;
}

int record_start(struct ns *ns)
{
	return start(ns, NULL);
}

void record_stop(struct ns *ns)
{
	struct record *r = ns->rec;
	struct rec_open *o, *next;
	size_t i;

	if (!r)
		return;
	ns->rec = NULL;
	for (i = 0; i < r->nopens_slots; i++)
		for (o = r->opens[i]; o; o = next) {
			next = o->next;
			free(o);
		}
	free(r->opens);
	rec_close(r);
	free(r);
}

/* ---- reading: an image of the namespace ---- */

struct img_name {
	uint64_t parent, child, seq;
	char *name;
	struct img_name *next;		/* chain */
};

struct img_node {
	struct rec_node s;
	char *str;
	gid_t *groups;
	struct img_node *next;		/* chain */
	unsigned int names;		/* names it has */
	unsigned int opens, writers;	/* handles on it */
};

struct image {
	struct img_node **nodes;
	struct img_name **names;
	struct rec_open **handles;
	size_t nslots;			/* of each table */
	size_t nnodes, nnames, nhandles;
	uint64_t next_ino, next_seq;
	struct done_ring *done;
	struct rec_store *stores;	/* one per kind and owner */
	size_t nstores;
	int err;
};

static size_t slot_of(const struct image *im, uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 40) &
		(im->nslots - 1);
}

static size_t name_slot(const struct image *im, uint64_t parent,
			const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ parent;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)name[i];
		h *= 0x100000001b3ULL;
	}
	return slot_of(im, h);
}

static struct img_node *img_node(struct image *im, uint64_t ino)
{
	struct img_node *n = im->nodes[slot_of(im, ino)];

	for (; n; n = n->next)
		if (n->s.ino == ino)
			return n;
	return NULL;
}

static struct img_name **img_name_at(struct image *im, uint64_t parent,
				     const char *name, size_t len)
{
	struct img_name **p = &im->names[name_slot(im, parent, name, len)];

	for (; *p; p = &(*p)->next)
		if ((*p)->parent == parent && strlen((*p)->name) == len &&
		    !memcmp((*p)->name, name, len))
			return p;
	return p;
}

/*
 * A record no server could have written: which check it failed goes to
 * the log, since the adoption's one error number cannot say.
 */
static int bad_record(const char *what, uint64_t id)
{
	log_err("record: %s (%llu)", what, (unsigned long long)id);
	return -EINVAL;
}

static void apply_node(struct image *im, const char *p, size_t len)
{
	size_t fixed;
	struct rec_node s;
	struct img_node *n;

	fixed = unpack_words(p, len, &s, sizeof(s));
	if (!fixed) {
		im->err = bad_record("a node entry cut short", len);
		return;
	}
	if (s.strlen > len - fixed ||
	    s.ngroups > (len - fixed - s.strlen) / sizeof(gid_t)) {
		im->err = bad_record("a node entry shorter than its strings",
				     s.ino);
		return;
	}
	n = img_node(im, s.ino);
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (!n) {
			im->err = -ENOMEM;
			return;
		}
		n->next = im->nodes[slot_of(im, s.ino)];
		im->nodes[slot_of(im, s.ino)] = n;
		im->nnodes++;
	}
	free(n->str);
	free(n->groups);
	n->s = s;
	n->str = s.strlen ? strndup(p + fixed, s.strlen) : NULL;
	n->groups = NULL;
	if (s.ngroups) {
		n->groups = malloc(s.ngroups * sizeof(gid_t));
		if (n->groups)
			memcpy(n->groups, p + fixed + s.strlen,
			       s.ngroups * sizeof(gid_t));
	}
}

static void img_free_node(struct img_node *n)
{
	free(n->str);
	free(n->groups);
	free(n);
}

static void apply_gone(struct image *im, uint64_t ino)
{
	struct img_node **p = &im->nodes[slot_of(im, ino)], *n;

	for (; (n = *p); p = &n->next)
		if (n->s.ino == ino) {
			*p = n->next;
			img_free_node(n);
			im->nnodes--;
			return;
		}
}

static void apply_name(struct image *im, enum rec_type type, const char *p,
		       size_t len)
{
	struct img_name **at, *d;
	struct rec_name s;
	size_t fixed;

	fixed = unpack_words(p, len, &s, sizeof(s));
	if (!fixed) {
		im->err = bad_record("a name entry cut short", len);
		return;
	}
	if (s.len > len - fixed) {
		im->err = bad_record("a name entry shorter than its name",
				     s.parent);
		return;
	}
	p += fixed;
	at = img_name_at(im, s.parent, p, s.len);
	if (type == REC_UNNAME) {
		if ((d = *at)) {
			*at = d->next;
			free(d->name);
			free(d);
			im->nnames--;
		}
		return;
	}
	d = *at;
	if (!d) {
		d = calloc(1, sizeof(*d));
		if (d)
			d->name = strndup(p, s.len);
		if (!d || !d->name) {
			free(d);
			im->err = -ENOMEM;
			return;
		}
		*at = d;
		im->nnames++;
	}
	d->parent = s.parent;
	d->child = s.child;
	d->seq = s.seq;
}

static void apply_handle(struct image *im, enum rec_type type,
			 const char *p, size_t len)
{
	struct rec_handle s;
	struct rec_open **at, *o;

	if (len < (type == REC_HANDLE ? sizeof(s) : sizeof(uint64_t))) {
		im->err = bad_record("a short handle entry", len);
		return;
	}
	memcpy(&s, p, type == REC_HANDLE ? sizeof(s) : sizeof(uint64_t));
	for (at = &im->handles[slot_of(im, s.fh)]; *at; at = &(*at)->next)
		if ((*at)->fh == s.fh)
			break;
	if (type == REC_HANDLE_GONE) {
		if ((o = *at)) {
			*at = o->next;
			free(o);
			im->nhandles--;
		}
		return;
	}
	o = *at;
	if (!o) {
		o = calloc(1, sizeof(*o));
		if (!o) {
			im->err = -ENOMEM;
			return;
		}
		*at = o;
		im->nhandles++;
	}
	o->fh = s.fh;
	o->ino = s.ino;
	o->dir = s.dir;
	o->flags = s.flags;
}

/* A store replaces the one of its kind and owner (there is none yet:
 * stores are never given back). */
static void apply_store(struct image *im, const char *p, size_t len)
{
	struct rec_store s, *more;
	size_t i;

	if (len < sizeof(s)) {
		im->err = bad_record("a short store entry", len);
		return;
	}
	memcpy(&s, p, sizeof(s));
	if (s.kind == STORE_PRIVATE_MOUNT)
		s.uid = 0;
	for (i = 0; i < im->nstores; i++)
		if (im->stores[i].kind == s.kind && im->stores[i].uid == s.uid) {
			im->stores[i] = s;
			return;
		}
	more = realloc(im->stores, (im->nstores + 1) * sizeof(*more));
	if (!more) {
		im->err = -ENOMEM;
		return;
	}
	im->stores = more;
	im->stores[im->nstores++] = s;
}

static void image_free(struct image *im)
{
	size_t i;

	for (i = 0; i < im->nslots; i++) {
		struct img_node *n, *nn;
		struct img_name *d, *dn;
		struct rec_open *o, *on;

		for (n = im->nodes ? im->nodes[i] : NULL; n; n = nn) {
			nn = n->next;
			img_free_node(n);
		}
		for (d = im->names ? im->names[i] : NULL; d; d = dn) {
			dn = d->next;
			free(d->name);
			free(d);
		}
		for (o = im->handles ? im->handles[i] : NULL; o; o = on) {
			on = o->next;
			free(o);
		}
	}
	free(im->nodes);
	free(im->names);
	free(im->handles);
	free(im->done);
	free(im->stores);
}

/* Read a record's committed entries into an image. */
static size_t slots_for(uint64_t len);

/*
 * Whether the len bytes at hdr begin a record this binary reads: 0,
 * -EINVAL for no record, or -EPROTO for a record of another version.
 */
static int header_check(const struct rec_header *hdr, size_t len)
{
	if (len < REC_HEADER || memcmp(hdr->magic, REC_MAGIC, 8) ||
	    hdr->header_size != REC_HEADER)
		return bad_record("no record header", len);
	if (hdr->version != REC_VERSION) {
		log_err("the mount's record is version %u; this sectionfs reads version %u",
			hdr->version, REC_VERSION);
		return -EPROTO;
	}
	return 0;
}

/*
 * Read a record's entries up to its committed length (or up to end, a
 * committed length it had before, when not 0) into an image, with
 * tables of nslots (0: sized for the record).
 */
static int image_read(const char *map, size_t maplen, uint64_t end,
		      struct image *im, size_t nslots)
{
	const struct rec_header *hdr = (const void *)map;
	uint64_t pos;
	int err;

	memset(im, 0, sizeof(*im));
	err = header_check(hdr, maplen);
	if (err)
		return err;
	if (!end)
		end = atomic_load_explicit(&((struct rec_header *)hdr)->committed,
					   memory_order_acquire);
	if (end > maplen || end < REC_HEADER)
		return bad_record("committed past the record's end", end);
	im->nslots = nslots ? nslots : slots_for(end);
	im->nodes = calloc(im->nslots, sizeof(*im->nodes));
	im->names = calloc(im->nslots, sizeof(*im->names));
	im->handles = calloc(im->nslots, sizeof(*im->handles));
	im->done = calloc(1, sizeof(*im->done));
	if (!im->nodes || !im->names || !im->handles || !im->done)
		return -ENOMEM;
	for (pos = REC_HEADER; pos < end && !im->err;) {
		const struct rec_head *h = (const void *)(map + pos);
		const char *p = (const char *)(h + 1);
		size_t len;

		if (end - pos < sizeof(*h) || h->len < sizeof(*h) ||
		    h->len > end - pos || h->len % 8)
			return bad_record("an entry cut short, at", pos);
		len = h->len - sizeof(*h);
		switch (h->type) {
		case REC_NODE:
			apply_node(im, p, len);
			break;
		case REC_GONE:
			if (len < 8)
				return bad_record("a short gone entry", pos);
			apply_gone(im, *(const uint64_t *)p);
			break;
		case REC_NAME: case REC_UNNAME:
			apply_name(im, h->type, p, len);
			break;
		case REC_HANDLE: case REC_HANDLE_GONE:
			apply_handle(im, h->type, p, len);
			break;
		case REC_DONE:
			if (len < sizeof(struct rec_done))
				return bad_record("a short done entry", pos);
			ring_push(im->done, (const struct rec_done *)p);
			break;
		case REC_NEXT:
			if (len < sizeof(struct rec_next))
				return bad_record("a short next entry", pos);
			im->next_ino = ((const struct rec_next *)p)->ino;
			im->next_seq = ((const struct rec_next *)p)->seq;
			break;
		case REC_STORE:
			apply_store(im, p, len);
			break;
		default:
			return bad_record("an entry of no known type, at",
					  pos);
		}
		pos += h->len;
	}
	return im->err;
}

/* ---- adoption: a namespace rebuilt from an image ---- */

static struct timespec ts_of(struct rec_time t)
{
	return (struct timespec){ .tv_sec = t.sec, .tv_nsec = t.nsec };
}

static int by_seq(const void *a, const void *b)
{
	const struct img_name *x = *(struct img_name *const *)a;
	const struct img_name *y = *(struct img_name *const *)b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* A node's section, from its image. */
static int adopt_section(const struct img_node *m, bool borrowed,
			 struct section **out)
{
	struct caller creator = {
		.uid = m->s.cr_uid, .gid = m->s.cr_gid,
		.ngroups = (int)m->s.ngroups, .groups = m->groups,
	};
	struct section_state st = {
		.fd = m->s.fd,
		.kind = m->s.sec_flags & SEC_FILE ? SECTION_FILE :
			SECTION_PAGEFILE,
		.writable = m->s.sec_flags & SEC_WRITABLE,
		.counted = m->s.sec_flags & SEC_COUNTED,
		.backing_id = m->s.backing_id,
		.seals = m->s.seals,
		.uid = m->s.sec_uid,
		.gid = m->s.sec_gid,
		.path = m->str,
		.creator = &creator,
	};

	if (m->s.fd < 0)
		return bad_record("a file without a descriptor", m->s.ino);
	if (m->s.ngroups && !m->groups)
		return -ENOMEM;
	return section_adopt(&st, borrowed, out);
}

/* Every node of the image, bare; their state comes once named. */
static int adopt_nodes(struct ns *ns, struct image *im, bool borrowed)
{
	struct img_node *m;
	struct node *n;
	size_t i;
	int err;

	for (i = 0; i < im->nslots; i++)
		for (m = im->nodes[i]; m; m = m->next) {
			n = node_adopt(ns, m->s.ino, m->s.mode);
			if (!n)
				return bad_record("a node that cannot be made",
						  m->s.ino);
			if (!S_ISREG(m->s.mode))
				continue;
			err = adopt_section(m, borrowed, &n->u.file.sec);
			if (err)
				return err;
		}
	return 0;
}

/* Every name, in the order the listings saw them made. */
static int adopt_names(struct ns *ns, struct image *im)
{
	struct img_name **all = malloc((im->nnames + 1) * sizeof(*all)), *d;
	size_t i, k = 0;
	int err = 0;

	if (!all)
		return -ENOMEM;
	for (i = 0; i < im->nslots; i++)
		for (d = im->names[i]; d; d = d->next)
			all[k++] = d;
	qsort(all, k, sizeof(*all), by_seq);
	for (i = 0; i < k && !err; i++) {
		struct node *p = node_find(ns, all[i]->parent);
		struct node *c = node_find(ns, all[i]->child);
		struct dentry *nd;

		if (!p || !c || !is_dir(p)) {
			err = bad_record(!p ? "a name in no directory" :
					 !c ? "a name of no node" :
					 "a name in a non-directory",
					 all[i]->parent);
			break;
		}
		if (strlen(all[i]->name) > NAME_MAX ||
		    dentry_find(ns, p, all[i]->name)) {
			err = bad_record("a name too long or twice in",
					 all[i]->parent);
			break;
		}
		nd = dentry_new(p, all[i]->name);
		if (!nd)
			err = -ENOMEM;
		else
			dentry_attach_seq(ns, nd, c, all[i]->seq);
	}
	free(all);
	return err;
}

/* What each node is, now that names have stopped changing it. */
static int adopt_state(struct ns *ns, struct image *im)
{
	struct img_node *m;
	struct node *n;
	size_t i;

	for (i = 0; i < im->nslots; i++)
		for (m = im->nodes[i]; m; m = m->next) {
			n = node_find(ns, m->s.ino);
			n->nlookup = m->s.nlookup;
			n->mode = m->s.mode;
			n->uid = m->s.uid;
			n->gid = m->s.gid;
			n->nlink = m->s.nlink;
			n->ctime = ts_of(m->s.ctime);
			if (S_ISREG(n->mode)) {
				n->u.file.lifetime = m->s.lifetime;
				n->u.file.handle_opens = m->s.handle_opens;
				n->u.file.handle_epoch =
					(unsigned short)m->s.handle_epoch;
				n->u.file.linkable = m->s.linkable;
			} else {
				n->u.other.atime = ts_of(m->s.atime);
				n->u.other.mtime = ts_of(m->s.mtime);
				n->u.other.rdev = m->s.rdev;
				if (S_ISLNK(n->mode) && m->str &&
				    !(n->u.other.target = strdup(m->str)))
					return -ENOMEM;
			}
			if (n != ns->root && !n->names) {
				if (n->nlink || !n->nlookup)
					return bad_record(n->nlink ?
						"a linked node without a name" :
						"an orphan the kernel forgot",
						n->ino);
				LIST_INSERT_HEAD(&ns->orphans, n, orphan);
			}
		}
	return 0;
}

/* One handle at its id; EINVAL: its id is not one a server gives, or
 * another handle holds its slot. */
static int adopt_handle(struct ns *ns, const struct rec_open *o,
			struct node *n)
{
	struct ns_dir *dir;
	int err;

	if (o->dir) {
		/* ns->lock is taken by ns_opendir: not held here, nothing
		 * serves yet. */
		err = ns_opendir(ns, o->ino, &dir);
		if (!err && (err = ns_handle_place(ns, o->fh, o->ino, true, 0,
						   dir)))
			ns_releasedir(ns, dir);
	} else {
		section_get(n->u.file.sec);
		err = ns_handle_place(ns, o->fh, o->ino, false, (int)o->flags,
				      n->u.file.sec);
		if (err) {
			section_put(n->u.file.sec);
		} else {
			/* Not count_open(): handle_opens is recorded. */
			n->u.file.opens++;
			n->u.file.writers += is_writer((int)o->flags);
		}
	}
	if (err == -EINVAL)
		err = bad_record("a handle whose slot is taken", o->fh);
	return err;
}

/* Every handle at its id; a file's open and writer counts are its
 * handles', whatever the record said (an open counted and then killed
 * before its handle was given is not one). */
static int adopt_handles(struct ns *ns, struct image *im)
{
	struct rec_open *o;
	struct node *n;
	size_t i;
	int err = 0;

	for (i = 0; i < im->nslots && !err; i++)
		for (o = im->handles[i]; o && !err; o = o->next) {
			n = node_find(ns, o->ino);
			if (!n)
				err = bad_record("a handle on no node", o->fh);
			else if (o->dir ? !is_dir(n) : !node_sec(n))
				err = bad_record("a handle of the wrong kind",
						 o->fh);
			else
				err = adopt_handle(ns, o, n);
		}
	ns_handles_adopted(ns);
	return err;
}

/*
 * Rebuild ns, fresh from ns_init() and serving nothing, from an image.
 * Borrowed: the sections stand for another namespace's (the test
 * suite's copy), and no accounting is done.
 */
static int rebuild(struct ns *ns, struct image *im, bool borrowed)
{
	int err = adopt_nodes(ns, im, borrowed);

	if (!err)
		err = adopt_names(ns, im);
	if (!err)
		err = adopt_state(ns, im);
	if (err)
		return err;
	err = adopt_handles(ns, im);
	if (err)
		return err;
	ns->next_ino = im->next_ino;
	ns->next_seq = im->next_seq;
	return 0;
}

/* Table sizes for reading a record of len bytes: entries are 24 bytes
 * at least. */
static size_t slots_for(uint64_t len)
{
	size_t n = 1024;

	while (n < len / 64 && n < ((size_t)1 << 28))
		n *= 2;
	return n;
}

static int by_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/*
 * A predecessor killed between making a section's store and committing
 * the change that named it leaves the store held and named by nothing:
 * every store memfd ("sectionfs:" and the path) that no adopted section
 * has is let go.  (A backing file opened for a symlink the predecessor
 * never committed cannot be told from the daemon's other files; it
 * stays, one descriptor per such death.)
 */
static void sweep_stores(struct ns *ns)
{
	static const char prefix[] = "/memfd:sectionfs:";
	size_t i, n = 0;
	struct dirent *de;
	int *fds;
	DIR *dir;

	fds = malloc((ns->nids_slots + 1) * sizeof(*fds));
	if (!fds)
		return;
	for (i = 0; i < ns->nids_slots; i++)
		if (ns->ids[i] && node_sec(ns->ids[i]))
			fds[n++] = node_sec(ns->ids[i])->fd;
	qsort(fds, n, sizeof(*fds), by_int);
	dir = opendir("/proc/self/fd");
	while (dir && (de = readdir(dir))) {
		char path[64], link[sizeof(prefix) + 16];
		int fd = atoi(de->d_name);
		ssize_t len;

		if (de->d_name[0] < '0' || de->d_name[0] > '9' ||
		    fd == dirfd(dir) ||
		    bsearch(&fd, fds, n, sizeof(*fds), by_int))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		len = readlink(path, link, sizeof(link) - 1);
		if (len < (ssize_t)sizeof(prefix) - 1 ||
		    memcmp(link, prefix, sizeof(prefix) - 1))
			continue;
		keeper_release(fd);
		close(fd);
	}
	if (dir)
		closedir(dir);
	free(fds);
}

/* Hand the private stores back to store.c, at the fds the keeper kept. */
static int adopt_stores(struct image *im)
{
	size_t i;
	int err;

	for (i = 0; i < im->nstores; i++) {
		err = store_adopt(im->stores[i].kind, im->stores[i].uid,
				  im->stores[i].fd);
		if (err)
			return err;
	}
	return 0;
}

int record_readable(void)
{
	union {
		struct rec_header hdr;
		char bytes[REC_HEADER];
	} head;
	ssize_t len;
	int fd = keeper_record_fd();

	if (fd < 0)
		return -ENOENT;
	len = pread(fd, &head, sizeof(head), 0);
	return header_check(&head.hdr, len < 0 ? 0 : (size_t)len);
}

int record_adopt_at(struct ns *ns, int fd, uint64_t end)
{
	struct image im = { 0 };
	struct stat st;
	void *map;
	int err;

	if (fstat(fd, &st))
		return -errno;
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	err = image_read(map, (size_t)st.st_size, end, &im, 0);
	if (!err)
		err = rebuild(ns, &im, true);
	munmap(map, (size_t)st.st_size);
	image_free(&im);
	return err;
}

int record_adopt(struct ns *ns)
{
	int fd = keeper_record_fd(), err;
	struct image im = { 0 };
	struct stat st;
	void *map;

	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &st))
		return -errno;
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	err = image_read(map, (size_t)st.st_size, 0, &im, 0);
	/* The private stores first: nothing makes one in their place. */
	if (!err)
		err = adopt_stores(&im);
	if (!err)
		err = rebuild(ns, &im, false);
	munmap(map, (size_t)st.st_size);
	if (!err) {
		sweep_stores(ns);
		err = store_adopted();
	}
	if (!err) {
		/* A fresh record of what was adopted takes the old one's
		 * place, with the requests done that may come again. */
		err = start(ns, im.done);
	}
	image_free(&im);
	if (err) {
		log_err("cannot adopt the namespace from its record: %s",
			strerror(-err));
		return err;
	}
	keeper_release(fd);
	close(fd);
	return 0;
}

void record_charge(struct ns *ns)
{
	size_t i;

	/* Nothing serves yet: no lock is needed, and cap.c takes its own. */
	for (i = 0; i < ns->nids_slots; i++) {
		struct node *n = ns->ids[i];

		if (!n)
			continue;
		if (node_sec(n))
			cap_adopt(node_sec(n));
		else if (node_counted(ns, n))
			cap_adopt_node(n->uid, n->gid);
		if (node_target(n))	/* its page, if long */
			cap_target_count(n->uid, n->gid,
					 strlen(node_target(n)), true);
	}
}

/* ---- the test suite's comparison ---- */

#define DIFF(...) do {							\
	if (!diff)							\
		snprintf(buf, size, __VA_ARGS__);			\
	diff = true;							\
} while (0)

static bool same_time(struct rec_time a, struct rec_time b)
{
	return a.sec == b.sec && a.nsec == b.nsec;
}

struct store_match {
	const struct image *im;
	size_t seen, wrong;
};

static void match_store(void *arg, const struct store_private *p)
{
	struct store_match *m = arg;
	size_t i;

	m->seen++;
	for (i = 0; i < m->im->nstores; i++)
		if (m->im->stores[i].kind == p->kind &&
		    m->im->stores[i].uid == p->uid &&
		    m->im->stores[i].fd == p->fd)
			return;
	m->wrong++;
}

/* Whether the private stores are not those im names. */
static bool compare_stores(const struct image *im)
{
	struct store_match m = { .im = im };

	store_each_private(0, match_store, &m);
	return m.wrong || m.seen != im->nstores;
}

/*
 * Under ns->lock: whether im is the live namespace (nodes, names, next
 * ids); what differs first goes into buf.  Handles are compared after,
 * by compare_handles(), without ns->lock.
 */
static bool compare(struct ns *ns, struct image *im, char *buf, size_t size)
{
	size_t i, nnames = 0, nnodes = 0;
	bool diff = false;

	for (i = 0; i < ns->nids_slots; i++) {
		struct node *n = ns->ids[i];
		const gid_t *groups;
		const char *str;
		struct img_node *m;
		struct rec_node s;
		struct dentry *d;

		if (!n)
			continue;
		nnodes++;
		node_state(n, &s, &str, &groups);
		m = img_node(im, n->ino);
		if (!m) {
			DIFF("node %llu missing", (unsigned long long)n->ino);
			continue;
		}
		if (m->s.nlookup != s.nlookup || m->s.mode != s.mode ||
		    m->s.uid != s.uid || m->s.gid != s.gid ||
		    m->s.nlink != s.nlink || m->s.rdev != s.rdev)
			DIFF("node %llu: nlookup %llu/%llu mode %o/%o uid %u/%u "
			     "gid %u/%u nlink %u/%u",
			     (unsigned long long)n->ino,
			     (unsigned long long)m->s.nlookup,
			     (unsigned long long)s.nlookup, m->s.mode, s.mode,
			     m->s.uid, s.uid, m->s.gid, s.gid, m->s.nlink,
			     s.nlink);
		if (!same_time(m->s.ctime, s.ctime) ||
		    !same_time(m->s.atime, s.atime) ||
		    !same_time(m->s.mtime, s.mtime))
			DIFF("node %llu: times differ",
			     (unsigned long long)n->ino);
		if (m->s.opens != s.opens || m->s.writers != s.writers ||
		    m->s.lifetime != s.lifetime ||
		    m->s.handle_opens != s.handle_opens ||
		    m->s.handle_epoch != s.handle_epoch ||
		    m->s.linkable != s.linkable)
			DIFF("node %llu: opens %u/%u writers %u/%u lifetime "
			     "%u/%u handle opens %u/%u (or linkable)",
			     (unsigned long long)n->ino, m->s.opens, s.opens,
			     m->s.writers, s.writers, m->s.lifetime,
			     s.lifetime, m->s.handle_opens, s.handle_opens);
		if (m->s.fd != s.fd || m->s.backing_id != s.backing_id ||
		    m->s.seals != s.seals || m->s.sec_uid != s.sec_uid ||
		    m->s.sec_gid != s.sec_gid ||
		    m->s.sec_flags != s.sec_flags)
			DIFF("node %llu: section fd %d/%d id %d/%d seals "
			     "%x/%x", (unsigned long long)n->ino, m->s.fd,
			     s.fd, m->s.backing_id, s.backing_id, m->s.seals,
			     s.seals);
		if (m->s.strlen != s.strlen ||
		    (s.strlen && (!m->str || memcmp(m->str, str, s.strlen))) ||
		    m->s.ngroups != s.ngroups || m->s.cr_uid != s.cr_uid ||
		    m->s.cr_gid != s.cr_gid ||
		    (s.ngroups && (!m->groups ||
				   memcmp(m->groups, groups,
					  s.ngroups * sizeof(gid_t)))))
			DIFF("node %llu: target, path or creator differ",
			     (unsigned long long)n->ino);
		for (d = n->names; d; d = d->next_name) {
			struct img_name *e = *img_name_at(im, d->parent->ino,
							   d->name,
							   strlen(d->name));

			nnames++;
			if (!e || e->child != n->ino || e->seq != d->seq)
				DIFF("name %s in %llu: %s", d->name,
				     (unsigned long long)d->parent->ino,
				     e ? "differs" : "missing");
		}
	}
	if (nnodes != im->nnodes || nnames != im->nnames)
		DIFF("%zu nodes and %zu names live, %zu and %zu recorded",
		     nnodes, nnames, im->nnodes, im->nnames);
	if (compare_stores(im))
		DIFF("private stores differ from the record's");
	if (ns->next_ino != im->next_ino || ns->next_seq != im->next_seq)
		DIFF("next ids %llu,%llu live, %llu,%llu recorded",
		     (unsigned long long)ns->next_ino,
		     (unsigned long long)ns->next_seq,
		     (unsigned long long)im->next_ino,
		     (unsigned long long)im->next_seq);
	return diff;
}

/* Without ns->lock: whether im's handles are the table's. */
static bool compare_handles(struct ns *ns, struct image *im, char *buf,
			    size_t size)
{
	size_t i, live = 0;
	bool diff = false;

	for (i = 0; i < im->nslots; i++) {
		struct rec_open *o;

		for (o = im->handles[i]; o; o = o->next) {
			if (!ns_handle_known(ns, o->fh, o->ino, o->dir))
				DIFF("handle %llx of %llu not open",
				     (unsigned long long)o->fh,
				     (unsigned long long)o->ino);
			live++;
		}
	}
	if (live != ns_handle_count(ns))
		DIFF("%zu handles open, %zu recorded", ns_handle_count(ns),
		     live);
	return diff;
}

/* ns_handles_each(): a handle into a record's own list of them. */
static void mirror_handle(void *arg, uint64_t fh, fuse_ino_t ino, bool dir,
			  int flags, void *obj)
{
	struct record *r = arg;
	struct rec_open *o = malloc(sizeof(*o));

	if (!o)
		return;
	*o = (struct rec_open){ .fh = fh, .ino = ino, .dir = dir,
				.flags = flags };
	o->next = r->opens[open_slot(r, fh)];
	r->opens[open_slot(r, fh)] = o;
}

static void free_opens(struct record *r)
{
	struct rec_open *o, *next;
	size_t i;

	for (i = 0; r->opens && i < r->nopens_slots; i++)
		for (o = r->opens[i]; o; o = next) {
			next = o->next;
			free(o);
		}
	free(r->opens);
	r->opens = NULL;
}

/*
 * The image a namespace rebuilt from im would write: rebuild a second
 * namespace (its sections borrowed from the live one's), and read back
 * the snapshot it writes.  *out is freed by the caller.
 */
static int adopted_image(struct ns *ns, struct image *im, struct image *out)
{
	struct record scratch = { .nopens_slots = 1024 };
	struct ns ns2;
	int err;

	memset(out, 0, sizeof(*out));
	err = ns_init(&ns2, ns->modes, 0, 0, 0, ns->entry_timeout,
		      ns->attr_timeout);
	if (err)
		return err;
	err = rebuild(&ns2, im, true);
	scratch.opens = calloc(scratch.nopens_slots, sizeof(*scratch.opens));
	if (!err && !scratch.opens)
		err = -ENOMEM;
	if (!err)
		err = rec_open_new(&scratch);
	if (!err) {
		ns_handles_each(&ns2, mirror_handle, &scratch);
		write_snapshot(&ns2, &scratch, scratch.opens,
			       scratch.nopens_slots);
		atomic_store(&scratch.hdr->committed, scratch.tail);
		err = image_read(scratch.map, REC_MAP, 0, out, im->nslots);
		munmap(scratch.map, REC_MAP);
		close(scratch.fd);
	}
	free_opens(&scratch);
	ns_destroy(&ns2);
	return err;
}

size_t record_check(struct ns *ns, int how, char *buf, size_t size)
{
	struct image im, adopted;
	bool diff = false;
	int err;

	pthread_mutex_lock(&ns->lock);
	if (!ns->rec) {
		pthread_mutex_unlock(&ns->lock);
		return (size_t)snprintf(buf, size, "no record");
	}
	record_commit(ns);
	if (how == RECORD_CHECK_COMPACT && (err = compact(ns))) {
		pthread_mutex_unlock(&ns->lock);
		return (size_t)snprintf(buf, size, "compaction failed: %s",
					strerror(-err));
	}
	err = image_read(ns->rec->map, REC_MAP, 0, &im, ns->nids_slots);
	pthread_mutex_unlock(&ns->lock);
	if (!err && how == RECORD_CHECK_ADOPT) {
		/* A second namespace has its own lock: never under ours. */
		err = adopted_image(ns, &im, &adopted);
		image_free(&im);
		im = adopted;
	}
	if (err) {
		snprintf(buf, size, "record unreadable: %s", strerror(-err));
		diff = true;
	}
	if (!diff) {
		pthread_mutex_lock(&ns->lock);
		diff = compare(ns, &im, buf, size);
		pthread_mutex_unlock(&ns->lock);
	}
	if (!diff)
		diff = compare_handles(ns, &im, buf, size);
	image_free(&im);
	return diff ? strlen(buf) : (size_t)snprintf(buf, size, "ok");
}
