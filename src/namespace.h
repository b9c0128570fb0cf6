/*
 * namespace.h - the tree of directories and sections.
 *
 * The namespace maps the kernel's node ids to nodes, keeps the kernel's
 * lookup counts, and owns names, link counts, ownership, modes and the
 * times of directories.  Every function returns 0 or a negative errno and
 * leaves the tree unchanged on error.  Node ids and handle ids are
 * numbers looked up in tables, never addresses: a node id the namespace
 * does not hold (a stale one, or one it never gave) is ESTALE, a handle
 * id EBADF.  Functions that hand a section to
 * the caller give it a reference the caller must drop (section_put) or
 * keep for an open handle.
 *
 * Locking: one mutex guards the whole tree and is held only for memory
 * work, never across a syscall on a store, and never together with
 * another lock; work on a section's fd happens after the lock is dropped,
 * under a section reference.
 */
#ifndef SECTIONFS_NAMESPACE_H
#define SECTIONFS_NAMESPACE_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/statvfs.h>

#include <fuse_lowlevel.h>

#include "modes.h"
#include "options.h"
#include "section.h"

struct node;
struct dentry;
struct ns_dir;
struct ns_seal;
struct ns_handle;
struct record;

/*
 * The ids the kernel holds for open files and directories (ns_handles.c).
 * A leaf lock of its own, never taken with ns->lock held nor held across
 * a call elsewhere: the data path finds its section here on every READ
 * and WRITE without waiting for name operations.
 */
struct ns_handles {
	pthread_mutex_t lock;
	struct ns_handle *slots;	/* lock */
	uint32_t nslots;		/* lock */
	uint32_t nused;			/* lock */
	uint32_t free;			/* first free slot + 1, or 0; lock */
};

/* The mount's tree.  What guards each field is named on it, as in
 * ns_internal.h: ns->lock, or immutable once ns_init() (or main) has set
 * it. */
struct ns {
	pthread_mutex_t lock;
	pthread_cond_t sealed;		/* a seal writers wait for is made;
					   with ns->lock */
	pthread_cond_t writers_gone;	/* for the sealer: a section's last
					   writer went, a seal was queued,
					   or stop; with ns->lock
					   (CLOCK_MONOTONIC) */
	struct node *root;		/* immutable */
	struct dentry **buckets;	/* (parent, name) -> dentry; ns->lock */
	size_t nbuckets;		/* ns->lock */
	size_t nentries;		/* ns->lock */
	LIST_HEAD(, node) orphans;	/* unnamed nodes the kernel holds;
					   ns->lock */
	LIST_HEAD(, node) freed;	/* freed nodes whose inodes go back
					   to their owners once the lock is
					   dropped (ns_unlock); ns->lock */
	LIST_HEAD(, ns_dir) listings;	/* open directory handles; ns->lock */
	/* Seals that wait for writers or pinned pages, kept by the sealer
	 * thread (ns_sealer_start) so that no serving thread waits. */
	TAILQ_HEAD(, ns_seal) seals;	/* ns->lock */
	unsigned int nseals;		/* ns->lock */
	pthread_t sealer;		/* set by ns_sealer_start() */
	bool sealer_running;		/* ns->lock */
	bool sealer_stopping;		/* ns->lock */
	/* Node id -> node: every node not yet freed, by open addressing
	 * (linear probing) on its ino, which is its node id. */
	struct node **ids;		/* ns->lock */
	size_t nids_slots;		/* a power of two; ns->lock */
	size_t nids;			/* ns->lock */
	struct ns_handles handles;	/* its own lock */
	struct record *rec;		/* what a successor adopts
					   (record.h); NULL for none;
					   ns->lock */
	uint64_t next_ino;		/* ns->lock */
	uint64_t next_seq;		/* dentries attached; ns->lock */
	uint64_t nnodes;		/* ns->lock */
	uint64_t nlinks;		/* names past a non-directory's
					   first: nr_inodes counts them
					   too, as tmpfs does; ns->lock */
	double entry_timeout;		/* immutable */
	double attr_timeout;		/* immutable */
	/* The mount's one record of its modes (modes.h): written before
	 * the session loop and at INIT, read here without a lock. */
	const struct sfs_modes *modes;	/* immutable */
};

/* Names a section lost when its lifetime ended, for the kernel to drop. */
struct ns_expired {
	fuse_ino_t ino;			/* the section's node */
	size_t n;
	struct {
		fuse_ino_t parent;
		char *name;
	} *names;
};

/* A directory listing taken at opendir (and again at rewind). */
struct ns_dir;

int ns_init(struct ns *ns, const struct sfs_modes *modes, mode_t root_mode,
	    uid_t uid, gid_t gid, double entry_timeout, double attr_timeout);
/* Free every node and section; the kernel must no longer use the tree. */
void ns_destroy(struct ns *ns);

/*
 * struct caller (backing.h) says who is asking: new nodes are theirs, and
 * backing files are opened as them.
 *
 * Each entry-returning call counts one kernel lookup of the node. */
int ns_lookup(struct ns *ns, fuse_ino_t parent, const char *name,
	      struct fuse_entry_param *e);
void ns_forget(struct ns *ns, fuse_ino_t ino, uint64_t nlookup);
/* A batch, in one critical section and so one commit of the record: a
 * server's death leaves all of it done, or none. */
void ns_forget_many(struct ns *ns, const struct fuse_forget_data *f,
		    size_t count);
/*
 * After a server's death, before serving: each unnamed node the kernel
 * still had looked up but no longer holds (held(ino, arg) false) is
 * forgotten, as its last FORGET, lost with the dead server, would have
 * done.  An unnamed node cannot be looked up again, so the answer stays
 * true.  Returns how many were let go.
 */
size_t ns_let_go_unheld(struct ns *ns, bool (*held)(fuse_ino_t, void *),
			void *arg);
/* The entry of node ino as a reply that counted its lookup already
 * would give it (a resent request answered from the record): no lookup
 * is counted. */
int ns_entry(struct ns *ns, fuse_ino_t ino, struct fuse_entry_param *e);

int ns_getattr(struct ns *ns, fuse_ino_t ino, struct stat *st);
/* to_set is libfuse's FUSE_SET_ATTR_* mask; *out gets the new attributes. */
int ns_setattr(struct ns *ns, fuse_ino_t ino, const struct stat *attr,
	       int to_set, const struct caller *who, struct stat *out);

/*
 * A write, truncate or truncating open by who, a caller without
 * CAP_FSETID, changed ino: clear its set-user-ID bit, and its
 * set-group-ID bit where the group may execute or who is outside the
 * group, as Linux does (only regular files).  Returns 1 when bits were
 * cleared, 0 when there were none to clear, or -EAGAIN when the answer
 * depends on supplementary groups who does not carry (ngroups < 0) and
 * nothing was changed: call again with them.
 */
int ns_kill_setid(struct ns *ns, fuse_ino_t ino, const struct caller *who);

/*
 * Create a node.  A regular file becomes a page-file-backed section; with
 * opened non-NULL the new section is also returned with a reference for
 * an open handle (opened with open_flags, counted as ns_open counts, and
 * released by ns_release).  Other file types become plain nodes.
 */
int ns_mknod(struct ns *ns, fuse_ino_t parent, const char *name, mode_t mode,
	     dev_t rdev, const struct caller *who,
	     struct fuse_entry_param *e, struct section **opened,
	     int open_flags);
/*
 * symlink(target, parent/name).  An absolute target makes a file-backed
 * section over target, opened as who.  The section is a regular file,
 * but the kernel insists that a SYMLINK reply names a symlink: *e is a
 * short-lived placeholder with zero timeouts, so the kernel's next lookup
 * finds the section.  With passthrough the file is registered with the
 * kernel here: EINVAL when the kernel cannot pass it through (a file of a
 * stacked filesystem).  Any other target makes an ordinary symbolic link,
 * as on tmpfs, and *e names it (ENAMETOOLONG for a target of PATH_MAX
 * bytes or more; it works under the writeback cache too).
 */
int ns_symlink(struct ns *ns, fuse_ino_t parent, const char *name,
	       const char *target, const struct caller *who,
	       struct fuse_entry_param *e);
/*
 * A symbolic link's target, copied into buf (size bytes, PATH_MAX is
 * always enough) with its NUL.  EINVAL for anything but a symlink.
 */
int ns_readlink(struct ns *ns, fuse_ino_t ino, char *buf, size_t size);
int ns_mkdir(struct ns *ns, fuse_ino_t parent, const char *name, mode_t mode,
	     const struct caller *who, struct fuse_entry_param *e);
int ns_unlink(struct ns *ns, fuse_ino_t parent, const char *name);
/*
 * The entry a create made, whose open failed: its name (when still that
 * node's) and the kernel's lookup, which the error reply never gave it,
 * go in one change.  The kernel never saw the name: it held the
 * directory for the create, and keeps the absence it looked up before.
 */
void ns_uncreate(struct ns *ns, fuse_ino_t parent, const char *name,
		 fuse_ino_t ino);
int ns_rmdir(struct ns *ns, fuse_ino_t parent, const char *name);
/* flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE. */
int ns_rename(struct ns *ns, fuse_ino_t parent, const char *name,
	      fuse_ino_t newparent, const char *newname, unsigned int flags);
/*
 * O_TMPFILE in directory parent: a page-file-backed section with no name
 * (nlink 0), opened as ns_mknod opens one, which dies as an unlinked
 * section does unless ns_link names it first; with O_EXCL in open_flags
 * it may never be named.
 */
int ns_tmpfile(struct ns *ns, fuse_ino_t parent, mode_t mode,
	       const struct caller *who, struct fuse_entry_param *e,
	       struct section **opened, int open_flags);
/* Only a section O_TMPFILE made may be linked while it has no name;
 * a name past a file's first takes one of nr_inodes (-ENOSPC). */
int ns_link(struct ns *ns, fuse_ino_t ino, fuse_ino_t newparent,
	    const char *newname, const struct caller *who,
	    struct fuse_entry_param *e);

/*
 * The section behind ino, with a reference for an open handle.  A
 * read-only file-backed section cannot be opened for writing (EACCES),
 * nor a write-sealed one (EPERM: a writable view of it would take writes
 * past the seal).  *undo is what ns_open_undo() needs.
 */
int ns_open(struct ns *ns, fuse_ino_t ino, int flags, struct section **out,
	    unsigned int *undo);

/*
 * Take back an open that never reached the kernel (a later step of it
 * failed): its counts go and nothing else changes.  Unlike a release it
 * never ends the section's lifetime.  The caller puts the section.
 */
void ns_open_undo(struct ns *ns, fuse_ino_t ino, int flags,
		  unsigned int undo);

/*
 * An open handle (opened with flags) was released.  When it was the
 * section's last and its lifetime is "handle", the section loses all its
 * names: they are returned in *gone (free with ns_expired_free) for the
 * caller to tell the kernel.  Returns 1 when names were removed, else 0.
 */
int ns_release(struct ns *ns, fuse_ino_t ino, int flags,
	       struct ns_expired *gone);
/*
 * The handle fh of ino is released: ns_release() and the handle's end
 * as one change of the record.  Returns as ns_release(), or -EBADF when
 * fh is no such handle of ino.
 */
int ns_release_handle(struct ns *ns, uint64_t fh, fuse_ino_t ino, int flags,
		      struct ns_expired *gone);
void ns_expired_free(struct ns_expired *gone);

/*
 * How a request that waits is answered (ns_setxattr).  may_wait() runs
 * on the serving thread, without ns->lock, before the request is left
 * for later: false when its answer must come now.  answer() runs once,
 * later, on the sealer thread.
 */
struct ns_answer {
	bool (*may_wait)(void *cookie);
	void (*answer)(void *cookie, int err);
	void *cookie;
};

/* ns_setxattr's "answered later" */
#define NS_LATER	1

/*
 * The user.sectionfs.* attributes (xattr.h for values and errors).
 * Setting lifetime or seals is for the section's owner (or root): EPERM
 * for others.  A write seal is refused (EBUSY) as memfd refuses it while
 * the store is mapped writable or its pages are pinned (passthrough), or
 * while the section is open for writing (cached path, where the daemon
 * cannot see views).  Such a seal waits up to 200 ms for them to go, off
 * the serving threads: ns_setxattr returns NS_LATER and the sealer
 * thread calls later->answer() with 0 or the error; a seal that cannot
 * be queued (too many waiting, or !may_wait()) is EBUSY at once.
 * XATTR_CREATE and XATTR_REPLACE in flags are honoured (EEXIST, ENODATA).
 */
ssize_t ns_getxattr(struct ns *ns, fuse_ino_t ino, const char *name,
		    char *buf, size_t size);
ssize_t ns_listxattr(struct ns *ns, fuse_ino_t ino, char *buf, size_t size);
int ns_setxattr(struct ns *ns, fuse_ino_t ino, const struct caller *who,
		const char *name, const char *value, size_t size, int flags,
		const struct ns_answer *later);
/*
 * The sealer thread: start it where requests are served (after any
 * fork), stop it when they no longer are; the stop answers every seal
 * still waiting EBUSY.  Without it, seals that would wait are EBUSY.
 */
int ns_sealer_start(struct ns *ns);
void ns_sealer_stop(struct ns *ns);
/* Nothing can be removed: EPERM for ours, EOPNOTSUPP for any other. */
int ns_removexattr(struct ns *ns, fuse_ino_t ino, const char *name);


/*
 * An open directory costs O(1), whatever it holds: it is read by a
 * cursor over the live list of children.
 */
int ns_opendir(struct ns *ns, fuse_ino_t ino, struct ns_dir **out);
void ns_releasedir(struct ns *ns, struct ns_dir *dir);
/*
 * The entry of an open directory at READDIR offset off (0 first, then
 * the *next of the entry before): "." and ".." first, then the children.
 * Returns 0 with its name (copied), its attributes (with plus, also a
 * counted lookup in *e, as readdirplus needs) and in *next the offset
 * after it; -ENOENT past the end.  A name that stays put while the
 * directory changes is met exactly once; one created, renamed or removed
 * meanwhile may or may not be.  Reading on costs O(1) an entry, and a
 * seek to an offset handed out before walks the directory once.
 */
int ns_readdir_entry(struct ns *ns, struct ns_dir *dir, off_t off, int plus,
		     char name[NAME_MAX + 1], struct fuse_entry_param *e,
		     off_t *next);

/*
 * Handles (ns_handles.c).  ns_handle_add gives an open section (with the
 * reference ns_open or ns_mknod gave for it, which the handle now holds,
 * and the flags it was opened with) an fh, ns_dirhandle_add an open directory; -ENOMEM.  ns_handle_section
 * finds a file handle's section with a reference of its own for the
 * caller to put, ns_handle_dir a directory handle's listing; NULL when
 * fh is no such handle (EBADF).  The _take calls remove a handle of node
 * ino and return what it held (the section with the handle's reference),
 * or NULL when fh is no such handle of ino.
 */
int ns_handle_add(struct ns *ns, fuse_ino_t ino, struct section *sec,
		  int flags, uint64_t *fh);
int ns_dirhandle_add(struct ns *ns, fuse_ino_t ino, struct ns_dir *dir,
		     uint64_t *fh);
struct section *ns_handle_section(struct ns *ns, uint64_t fh);
struct ns_dir *ns_handle_dir(struct ns *ns, uint64_t fh);
struct section *ns_handle_take(struct ns *ns, uint64_t fh, fuse_ino_t ino);
struct ns_dir *ns_dirhandle_take(struct ns *ns, uint64_t fh, fuse_ino_t ino);
/* Whether fh is an open handle of ino (a directory's, with dir), and how
 * many are open: what the record is checked against. */
bool ns_handle_known(struct ns *ns, uint64_t fh, fuse_ino_t ino, bool dir);
size_t ns_handle_count(struct ns *ns);

/* The number of nodes, and how many more uid may make within
 * -o nr_inodes, for statfs (bytes are the store's: store.h). */
void ns_counts(struct ns *ns, uid_t uid, uint64_t *nodes, uint64_t *left);

#endif /* SECTIONFS_NAMESPACE_H */
