/*
 * ns_internal.h - the namespace's private types, shared by its files.
 *
 * The nodes, dentries and listings of the tree, the small helpers every
 * namespace file needs, and the few functions one namespace file lends
 * another.  Only namespace.c and the ns_*.c files include it: everything
 * else reaches the tree through namespace.h.
 */
#ifndef SECTIONFS_NS_INTERNAL_H
#define SECTIONFS_NS_INTERNAL_H

#include <fcntl.h>
#include <stdbool.h>
#include <time.h>

#include "namespace.h"
#include "record.h"

/*
 * Locking.  One mutex, ns->lock, guards the whole tree; the comment on
 * each field below names what guards it:
 *
 *   ns->lock    read and written only with ns->lock held;
 *   immutable   set before the object is published (linked into the tree
 *               or handed out) and never changed after;
 *   handle      a directory handle's own: the kernel sends one READDIR of
 *               a handle at a time, and RELEASEDIR after the last.
 *
 * No other lock is ever taken while ns->lock is held, and ns->lock is
 * never taken while another lock is held.  Work on a section's file
 * happens after the lock is dropped, under a section reference; a
 * section's own fields are atomics or immutable (section.h).
 */

/* A name: 64 bytes and then the name itself, in one allocation. */
struct dentry {
	struct dentry *hnext;		/* hash chain; ns->lock */
	struct dentry *next_name;	/* the child's other names; ns->lock */
	struct dentry *prev, *next;	/* parent's children, newest first;
					   ns->lock */
	struct node *parent;		/* immutable (rename makes a new one) */
	struct node *child;		/* set when attached; ns->lock; NULL
					   for a listing's mark (ns_dir.c) */
	uint64_t seq;			/* ns->next_seq when attached: the
					   listing order; ns->lock */
	uint32_t hash;			/* immutable */
	char name[];			/* immutable */
};
_Static_assert(sizeof(struct dentry) <= 64, "struct dentry grew");

/* What only a section's node has. */
struct node_file {
	struct section *sec;		/* immutable */
	unsigned int opens;		/* open handles (and so views);
					   ns->lock */
	unsigned int writers;		/* of which opened for writing;
					   ns->lock */
	enum lifetime_mode lifetime;	/* when the section dies; ns->lock */
	unsigned int handle_opens;	/* opens since lifetime became handle:
					   only then may a release destroy
					   it (see set_lifetime); ns->lock */
	unsigned short handle_epoch;	/* times lifetime became handle;
					   ns->lock */
	unsigned short sealing;		/* seals being added that writers
					   wait for (seal_now);
					   ns->lock */
	bool linkable;			/* made by O_TMPFILE without O_EXCL
					   and never named yet: link may
					   give it its first name;
					   ns->lock */
};

/* What directories and special files have instead: sections read their
 * data times from their file.  A symbolic link has no children, so its
 * target takes the place of the children's list: the node stays within
 * its 120 bytes. */
struct node_other {
	struct timespec atime, mtime;	/* ns->lock */
	union {
		struct dentry *first;	/* directories: children, newest
					   first, and open listings' marks;
					   ns->lock */
		char *target;		/* symbolic links: what readlink
					   says, NUL-terminated, owned by
					   the node; immutable (NULL for
					   the placeholder ns_symlink
					   answers with) */
	};
	uint32_t nchildren;		/* directories: how many; ns->lock */
	uint32_t rdev;			/* device nodes (FUSE's rdev is 32
					   bits); set at mknod; ns->lock */
};

/*
 * One node per directory, section or special file: 120 bytes, which
 * malloc serves from a 128-byte chunk.  With its section (40 bytes, a
 * 48-byte chunk) and one dentry (64 bytes and the name), a page-file-
 * backed section named by up to 39 bytes costs the daemon under 300.
 */
struct node {
	uint64_t ino;			/* st_ino; immutable */
	uint64_t nlookup;		/* kernel references; ns->lock */
	mode_t mode;			/* the type bits are immutable, the
					   rest ns->lock */
	uid_t uid;			/* ns->lock */
	gid_t gid;			/* ns->lock */
	uint32_t nlink;			/* ns->lock */
	struct timespec ctime;		/* metadata changes made here;
					   ns->lock */
	struct dentry *names;		/* every name; a directory has one;
					   ns->lock */
	LIST_ENTRY(node) orphan;	/* ns->orphans; ns->lock */
	union {
		struct node_file file;	/* S_ISREG */
		struct node_other other; /* everything else */
	} u;
};

/* malloc rounds 120 bytes to a 128-byte chunk; 121 would cost 144. */
_Static_assert(sizeof(struct node) <= 120, "struct node outgrew its chunk");

/*
 * An open directory: a mark (a nameless dentry) in the directory's list
 * of children, where reading goes on (ns_dir.c).
 */
struct ns_dir {
	LIST_ENTRY(ns_dir) link;	/* ns->listings; ns->lock */
	struct node *dir;		/* immutable; the kernel holds it
					   until RELEASEDIR */
	struct dentry *mark;		/* immutable; in dir's children when
					   placed */
	bool placed;			/* ns->lock */
	off_t pos;			/* the offset mark stands at; ns->lock */
	off_t peeked;			/* after the entry last returned;
					   ns->lock */
};

/* Drop ns->lock, committing to the record what was changed under it:
 * every unlock of ns->lock goes through here or ns_unlock(). */
static inline void ns_leave(struct ns *ns)
{
	record_commit(ns);
	pthread_mutex_unlock(&ns->lock);
}

static inline struct timespec now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

/*
 * Under the lock: the node with node id ino, or NULL when the namespace
 * holds none (ESTALE for the request).  Ids are inos, never reused, so a
 * stale id finds nothing rather than another node.
 */
struct node *node_find(struct ns *ns, fuse_ino_t ino);

static inline struct node *node_of(struct ns *ns, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? ns->root : node_find(ns, ino);
}

static inline fuse_ino_t ino_of(struct ns *ns, struct node *n)
{
	return n->ino;
}

static inline int is_dir(const struct node *n)
{
	return S_ISDIR(n->mode);
}

/* A symbolic link's target; NULL for every other node. */
static inline const char *node_target(const struct node *n)
{
	return S_ISLNK(n->mode) ? n->u.other.target : NULL;
}

/*
 * Whether n holds an inode of its owner's that the namespace gives back
 * (cap_node_count): every node but a section (whose section holds its
 * own), the root and the placeholder ns_symlink answers with.
 */
static inline bool node_counted(const struct ns *ns, const struct node *n)
{
	return !S_ISREG(n->mode) && n != ns->root &&
		!(S_ISLNK(n->mode) && !n->u.other.target);
}

/* The section of a regular file's node; NULL for every other node. */
static inline struct section *node_sec(const struct node *n)
{
	return S_ISREG(n->mode) ? n->u.file.sec : NULL;
}

/* A directory's one name; NULL for the root and removed directories. */
static inline struct dentry *dir_name(const struct node *n)
{
	return n->names;
}

static inline int is_writer(int open_flags)
{
	return (open_flags & O_ACCMODE) != O_RDONLY;
}

static inline void put_if(struct section *sec)
{
	if (sec)
		section_put(sec);
}

/*
 * namespace.c: the tree itself.  All but attr_finish() are called with
 * ns->lock held.
 */
struct dentry *dentry_find(struct ns *ns, const struct node *parent,
			   const char *name);
/* A dentry for name in parent, not yet linked anywhere; NULL on ENOMEM. */
struct dentry *dentry_new(struct node *parent, const char *name);
/* Link a prepared dentry into its parent and the hash. */
void dentry_attach(struct ns *ns, struct dentry *d, struct node *child);
void dentry_attach_seq(struct ns *ns, struct dentry *d, struct node *child,
		       uint64_t seq);
/* Unlink a dentry from its parent and the hash; the caller frees it. */
void dentry_detach(struct ns *ns, struct dentry *d);
/* A new node with no name and no lookup; NULL on ENOMEM. */
struct node *node_new(struct ns *ns, mode_t mode, uid_t uid, gid_t gid);
/* A node with id ino and type mode, for adoption; NULL when the id is
 * taken, or on ENOMEM.  ino 1 is the root. */
struct node *node_adopt(struct ns *ns, uint64_t ino, mode_t mode);
/* Free a node nobody names or holds; returns its section to put after
 * unlocking, or NULL.  A counted node waits on ns->freed for
 * ns_unlock(). */
struct section *node_free(struct ns *ns, struct node *n);
/* Drop ns->lock, then give the inodes of the nodes freed meanwhile back
 * to their owners (cap.h), which quota.lock, never taken under ns->lock,
 * guards.  Every path that may free a node unlocks with it. */
void ns_unlock(struct ns *ns);
/* Under the lock: nodes uid may still make within -o nr_inodes. */
uint64_t nodes_left(const struct ns *ns, uid_t uid);
/* A node lost a name.  Returns a section to put after unlocking, or NULL. */
struct section *node_unnamed(struct ns *ns, struct node *n);
/* Drop nlookup of ino's count; returns a section to put after unlocking. */
struct section *forget_locked(struct ns *ns, fuse_ino_t ino,
			      uint64_t nlookup);
/* Fill what the node knows of st, and pin its section (returned, or NULL)
 * for attr_finish() to read the rest from its file. */
struct section *attr_start(struct ns *ns, struct node *n, struct stat *st);
/* Without the lock: the rest of st from the pinned section, which it puts. */
int attr_finish(struct section *sec, struct stat *st);
/* Count a kernel lookup of n and start the entry's attributes. */
struct section *entry_start(struct ns *ns, struct node *n,
			    struct fuse_entry_param *e);
/* The live directory parent, for a request naming name in it. */
int dir_for_entry(struct ns *ns, fuse_ino_t parent, const char *name,
		  struct node **out);
/* The dentry name names in directory parent, or ENOENT. */
int find_entry(struct ns *ns, fuse_ino_t parent, const char *name,
	       struct dentry **out);

/* ns_handles.c: the handle table's setup and teardown (ns_init,
 * ns_destroy). */
int ns_handles_init(struct ns_handles *h);
void ns_handles_destroy(struct ns_handles *h);
/*
 * Adoption: put a handle at the very id fh a predecessor gave it (obj a
 * section with a reference for it, or a listing); -EINVAL when fh is
 * taken or no id this table gives.  ns_handles_adopted() then chains
 * the slots left free.  ns_handles_each() calls fn for every handle.
 */
int ns_handle_place(struct ns *ns, uint64_t fh, fuse_ino_t ino, bool dir,
		    int flags, void *obj);
void ns_handles_adopted(struct ns *ns);
void ns_handles_each(struct ns *ns,
		     void (*fn)(void *arg, uint64_t fh, fuse_ino_t ino,
				bool dir, int flags, void *obj),
		     void *arg);

/*
 * Releasing a handle: ns_handle_unlist() takes fh of ino out of use and
 * returns what it held (NULL: no such handle); the caller records the
 * release (record_handle_gone(), under ns->lock); ns_handle_unlisted()
 * then lets the slot be given again, not before (a death in between
 * would leave a record of two handles in one slot).
 */
void *ns_handle_unlist(struct ns *ns, bool dir, uint64_t fh, fuse_ino_t ino);
void ns_handle_unlisted(struct ns *ns, uint64_t fh, fuse_ino_t ino);

/* ns_open.c: a handle is opened on n's section (ns->lock held). */
unsigned int count_open(struct node *n, int flags);

#endif /* SECTIONFS_NS_INTERNAL_H */
