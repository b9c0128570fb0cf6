/*
 * requests.c - the FUSE low-level operations.
 *
 * Each handler decodes one request, asks the namespace (or, for bytes, the
 * data path) to do the work, and sends exactly one reply.  No policy lives
 * here: what is allowed and what it means is decided below, and what the
 * connection is (INIT, statfs) in connection.c.  An open handle's fh is
 * an id the namespace gives it (ns_handle_add), found again on every
 * request on the handle: one it does not know is EBADF.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap.h"
#include "connection.h"
#include "datapath.h"
#include "log.h"
#include "keeper.h"
#include "mount.h"
#include "record.h"
#include "requests.h"
#include "uring.h"
#include "wire.h"
#include "sectionfs.h"

/*
 * Names change only through this daemon, so the kernel may keep them (and
 * their absence) for long.  Attributes are kept briefly: in passthrough
 * mode and through shared views a section's size and times change without
 * the daemon hearing of it.
 */
#define NEGATIVE_TIMEOUT	86400.0

/* The section of req's file handle, with a reference to put; NULL when
 * the namespace holds no such handle (EBADF). */
static struct section *section_of(fuse_req_t req, struct fuse_file_info *fi)
{
	return ns_handle_section(ns_of(req), fi->fh);
}

static void put_section(struct section *sec)
{
	if (sec)
		section_put(sec);
}

/* Who sent req; supplementary groups are left out (ngroups -1). */
static struct caller caller_of(fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	return (struct caller){ .uid = ctx->uid, .gid = ctx->gid,
				.ngroups = -1 };
}

/* Who sent req, with their supplementary groups (free who->groups). */
static int caller_with_groups(fuse_req_t req, struct caller *who)
{
	int n = 32, got;

	*who = caller_of(req);
	for (;;) {
		gid_t *groups = realloc(who->groups, n * sizeof(gid_t));

		if (!groups)
			return -ENOMEM;
		who->groups = groups;
		errno = 0;
		got = fuse_req_getgroups(req, n, groups);
		if (got < 0 && (errno == EMFILE || errno == ENFILE)) {
			/* It reads /proc: the first place fds run out. */
			log_warn("cannot read a caller's groups: out of file descriptors (%s)",
				 strerror(errno));
			return -errno;
		}
		if (got < 0)
			return got;
		if (got <= n)
			break;
		n = got;
	}
	who->ngroups = got;
	return 0;
}

static void reply_entry_or_err(fuse_req_t req, int err,
			       const struct fuse_entry_param *e)
{
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_entry(req, e);
}

static void reply_attr_or_err(fuse_req_t req, int err, const struct stat *st)
{
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_attr(req, st, ns_of(req)->attr_timeout);
}

/* A server's death and the requests it had carried out: below. */
static int carried_out_before(fuse_req_t req, uint64_t *ino, uint64_t *fh);
static bool answered_before(fuse_req_t req, bool entry);
static void done_request(void);

/* A lookup counts one of the kernel's references: sent again after it
 * was carried out, it is answered without counting a second. */
static void sfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int err;

	if (answered_before(req, true))
		return;
	err = ns_lookup(ns_of(req), parent, name, &e);
	done_request();
	if (err == -ENOENT) {
		/* Let the kernel remember the absence. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = NEGATIVE_TIMEOUT;
		err = 0;
	}
	reply_entry_or_err(req, err, &e);
}

/*
 * A FORGET is never sent again: one a server read and died before doing
 * is done by its successor (requests_forget_lost()), unless the record
 * says it was done, which it says in the commit that did it.
 */
static void forget_once(fuse_req_t req, const struct fuse_forget_data *f,
			size_t count)
{
	record_request(wire_request_unique(req));
	ns_forget_many(ns_of(req), f, count);
	done_request();
	wire_request_done();
	fuse_reply_none(req);
}

static void sfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fuse_forget_data one = { .ino = ino, .nlookup = nlookup };

	forget_once(req, &one, 1);
}

static void sfs_forget_multi(fuse_req_t req, size_t count,
			     struct fuse_forget_data *forgets)
{
	forget_once(req, forgets, count);
}

void requests_forget_lost(struct ns *ns)
{
	struct keeper_state *st = keeper_state();
	uint32_t n = st ? st->n_lost : 0, i, j;
	struct fuse_forget_data *f;
	uint64_t ino, fh;

	if (!n)
		return;
	if (n > KEEPER_LOST_FORGETS)
		n = KEEPER_LOST_FORGETS;
	f = calloc(n, sizeof(*f));
	if (!f)
		log_warn("no memory for the FORGETs of a dead server: inodes held until unmount");
	/* Each request's entries are together and done in one commit. */
	for (i = 0; f && i < n; i = j) {
		uint64_t unique = st->lost[i].unique;
		size_t count = 0;

		for (j = i; j < n && st->lost[j].unique == unique; j++)
			f[count++] = (struct fuse_forget_data){
				st->lost[j].f.ino, st->lost[j].f.nlookup };
		if (!record_resent(ns, unique, &ino, &fh)) {
			record_request(unique);
			ns_forget_many(ns, f, count);
			done_request();
		}
	}
	free(f);
	__atomic_store_n(&st->n_lost, 0, __ATOMIC_RELEASE);
}

static void reserve_append(void *arg, uint64_t unique, int fd)
{
	dp_append_reserve(fd, unique);
}

void requests_appends_left(struct ns *ns)
{
	record_appends_left(ns, reserve_append, NULL);
}

static void sfs_getattr(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct stat st;
	int err = ns_getattr(ns_of(req), ino, &st);

	reply_attr_or_err(req, err, &st);
}

/*
 * The caller of req, without CAP_FSETID, wrote or truncated ino: its
 * set-ID bits go as Linux says (ns_kill_setid).  Its groups are read
 * only when they decide; when they cannot be read, the bit goes.
 * Returns whether any bit went.
 */
static bool kill_setid(fuse_req_t req, fuse_ino_t ino)
{
	struct caller who = caller_of(req);
	int res = ns_kill_setid(ns_of(req), ino, &who);

	if (res == -EAGAIN) {
		if (caller_with_groups(req, &who))
			who.ngroups = 0;
		res = ns_kill_setid(ns_of(req), ino, &who);
	}
	free(who.groups);
	return res > 0;
}

/*
 * Under HANDLE_KILLPRIV_V2 the kernel asks the daemon to clear set-ID
 * bits in two ways: FATTR_KILL_SUIDGID (libfuse hands it on as
 * FUSE_SET_ATTR_KILL_SUID) beside a truncate by a caller without
 * CAP_FSETID; and a SETATTR that sets nothing at all.  The latter is
 * what is left of the kernel's own file_remove_privs(), which runs before
 * a write by such a caller on either data path (passthrough writes
 * included, though the daemon never sees them) once it has found bits
 * to clear, and hands their clearing to the filesystem; chown(f, -1, -1)
 * comes the same way, with FUSE_SET_ATTR_CTIME under the writeback cache
 * (where the kernel sends the times it keeps, never ctime alone).
 */
static int kills_setid(int to_set)
{
	return (to_set & FUSE_SET_ATTR_KILL_SUID) ||
	       (to_set & ~FUSE_SET_ATTR_CTIME) == 0;
}

static void sfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
			int to_set, struct fuse_file_info *fi)
{
	/* Without supplementary groups: rights over a backing file's times
	 * are then at most the caller's own. */
	struct caller who = caller_of(req);
	struct stat st;
	int err;

	who.ngroups = 0;
	if (kills_setid(to_set))
		kill_setid(req, ino);
	err = ns_setattr(ns_of(req), ino, attr, to_set, &who, &st);

	reply_attr_or_err(req, err, &st);
}

/*
 * A directory's names changed (err 0): drop the listing the kernel may
 * keep of it (FOPEN_CACHE_DIR, see sfs_opendir).  The kernel also drops
 * it by itself for the changes it sends, whoever makes them; this covers
 * every change, those the daemon makes alone included (a lifetime that
 * ends).  Queued, not waited for: the notice thread sends it.
 */
static void dir_changed(struct notifier *notify, fuse_ino_t dir, int err)
{
	if (!err)
		notify_inval(notify, dir, 0, 0, false);
}

static void undo_open(struct ns *ns, fuse_ino_t ino, struct section *sec,
		      int flags, unsigned int undo, uint64_t fh);

/* Where a create puts its entry; name NULL for an O_TMPFILE's. */
struct created_at {
	fuse_ino_t parent;
	const char *name;
};

static void take_back_created(struct ns *ns, const struct created_at *at,
			      fuse_ino_t ino, int err);
static void notify_expired(struct notifier *notify, struct ns_expired *gone);

/* The handle fh (0 for none) and the entry of a resent create, which the
 * kernel does not get after all; err as take_back_created(). */
static void drop_created(struct sfs_mount *m, const struct created_at *at,
			 fuse_ino_t ino, int flags, uint64_t fh, int err)
{
	struct ns_expired gone;

	if (fh) {
		if (ns_release_handle(&m->ns, fh, ino, flags, &gone) > 0)
			notify_expired(&m->notify, &gone);
		ns_expired_free(&gone);
	}
	take_back_created(&m->ns, at, ino, err);
}

/*
 * A resent create whose entry a server before this one made: its handle,
 * or when that server died before giving one, a handle now.
 */
static void answer_create(fuse_req_t req, const struct created_at *at,
			  struct fuse_entry_param *e, uint64_t fh,
			  struct fuse_file_info *fi)
{
	struct sfs_mount *m = mount_of(req);	/* req is gone after the reply */
	struct ns *ns = &m->ns;
	struct section *sec = NULL;
	unsigned int undo;
	int id = 0;

	/* What is changed now is written as this request's, or a death
	 * before the reply would have the next server do it again. */
	record_request(wire_request_unique(req));
	record_result(ns, e->ino);
	if (fh) {
		sec = ns_handle_section(ns, fh);
		id = sec ? 0 : -EBADF;
		fh = sec ? fh : 0;
	} else {
		id = ns_open(ns, e->ino, fi->flags, &sec, &undo);
		if (!id && (id = ns_handle_add(ns, e->ino, sec, fi->flags,
					       &fh))) {
			undo_open(ns, e->ino, sec, fi->flags, undo, 0);
			sec = NULL;
		}
		if (sec)
			section_get(sec);	/* as ns_handle_section */
	}
	if (!id)
		id = dp_open_prepare(modes_of(req), sec, fi);
#ifdef SFS_TEST_HOOKS
	id = keeper_test_fault("answer-create", id);
#endif
	/* The kernel gets neither handle nor entry from an error: both go
	 * before it is answered, as this request's change. */
	if (id < 0)
		drop_created(m, at, e->ino, fi->flags, fh, id);
	done_request();
	fi->fh = fh;
	if (id < 0)
		fuse_reply_err(req, -id);
	else if (dp_reply_create(req, e, fi, id))
		drop_created(m, at, e->ino, fi->flags, fh, 0);
	put_section(sec);
}

/*
 * The requests that must not be done twice (record.h).  One the kernel
 * sends again after a server's death, which the record says a server
 * before this one carried out, is answered from the record: 1, or the
 * error it was answered.  Otherwise 0, and the record is told which
 * request this thread serves, so that what it changes is written as done
 * for it, until done_request().
 */
static int carried_out_before(fuse_req_t req, uint64_t *ino, uint64_t *fh)
{
	uint64_t unique = wire_request_unique(req);
	int res = 0;

	if (unique & UNIQUE_RESENT)
		res = record_resent(ns_of(req), unique, ino, fh);
	if (!res)
		record_request(unique);
	return res;
}

/* Answered from the record (with the entry its reply named): true. */
static bool answered_before(fuse_req_t req, bool entry)
{
	uint64_t ino = 0, fh = 0;
	struct fuse_entry_param e;
	int err = carried_out_before(req, &ino, &fh);

	if (!err)
		return false;
	if (err > 0 && entry)
		err = ns_entry(ns_of(req), ino, &e);
	if (err > 0)
		err = 0;
	if (entry)
		reply_entry_or_err(req, err, &e);
	else
		fuse_reply_err(req, -err);
	return true;
}

/* A create's answered_before(). */
static bool created_before(fuse_req_t req, const struct created_at *at,
			   struct fuse_file_info *fi)
{
	uint64_t ino = 0, fh = 0;
	struct fuse_entry_param e;
	int err = carried_out_before(req, &ino, &fh);

	if (!err)
		return false;
	if (err > 0)
		err = ns_entry(ns_of(req), ino, &e);
	if (!err)
		answer_create(req, at, &e, fh, fi);
	else
		fuse_reply_err(req, -err);
	return true;
}

static void done_request(void)
{
	record_request(0);
}

/*
 * An OPEN or OPENDIR the kernel sends again after a server's death,
 * which a server before this one carried out as far as giving it a
 * handle: that handle is the answer, since a second one would never be
 * released.  Otherwise 0, and the record is told which request this
 * thread serves, as answered_before() does.
 */
static uint64_t handle_given_before(fuse_req_t req)
{
	uint64_t ino = 0, fh = 0;

	return carried_out_before(req, &ino, &fh) > 0 ? fh : 0;
}

static void sfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, dev_t rdev)
{
	struct caller who = caller_of(req);
	struct fuse_entry_param e;
	int err;

	if (answered_before(req, true))
		return;
	err = ns_mknod(ns_of(req), parent, name, mode, rdev, &who, &e,
		       NULL, 0);
	done_request();

	dir_changed(&mount_of(req)->notify, parent, err);
	reply_entry_or_err(req, err, &e);
}

static void sfs_symlink(fuse_req_t req, const char *target, fuse_ino_t parent,
			const char *name)
{
	struct fuse_entry_param e;
	struct caller who = { .groups = NULL };
	int err;

	if (answered_before(req, true))
		return;
	err = caller_with_groups(req, &who);
	if (!err)
		err = ns_symlink(ns_of(req), parent, name, target, &who, &e);
	done_request();
	free(who.groups);
	dir_changed(&mount_of(req)->notify, parent, err);
	reply_entry_or_err(req, err, &e);
}

static void sfs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char target[PATH_MAX];
	int err = ns_readlink(ns_of(req), ino, target, sizeof(target));

	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_readlink(req, target);
}

static void sfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode)
{
	struct caller who = caller_of(req);
	struct fuse_entry_param e;
	int err;

	if (answered_before(req, true))
		return;
	err = ns_mkdir(ns_of(req), parent, name, mode, &who, &e);
	done_request();
#ifdef SFS_TEST_HOOKS
	if (!err)
		keeper_test_gap("mkdir-made", parent);
#endif

	dir_changed(&mount_of(req)->notify, parent, err);
	reply_entry_or_err(req, err, &e);
}

static void sfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int err;

	if (answered_before(req, false))
		return;
	err = ns_unlink(ns_of(req), parent, name);
	done_request();

	dir_changed(&mount_of(req)->notify, parent, err);
	fuse_reply_err(req, -err);
}

static void sfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int err;

	if (answered_before(req, false))
		return;
	err = ns_rmdir(ns_of(req), parent, name);
	done_request();

	dir_changed(&mount_of(req)->notify, parent, err);
	fuse_reply_err(req, -err);
}

static void sfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		       fuse_ino_t newparent, const char *newname,
		       unsigned int flags)
{
	struct notifier *notify = &mount_of(req)->notify;
	int err;

	if (answered_before(req, false))
		return;
	err = ns_rename(ns_of(req), parent, name, newparent, newname, flags);
	done_request();

	dir_changed(notify, parent, err);
	if (newparent != parent)
		dir_changed(notify, newparent, err);
	fuse_reply_err(req, -err);
}

static void sfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		     const char *newname)
{
	struct caller who = caller_of(req);
	struct fuse_entry_param e;
	int err;

	if (answered_before(req, true))
		return;
	err = ns_link(ns_of(req), ino, newparent, newname, &who, &e);
	done_request();

	dir_changed(&mount_of(req)->notify, newparent, err);
	reply_entry_or_err(req, err, &e);
}

/*
 * The kernel leaves O_TRUNC to the daemon (atomic_o_trunc), having
 * checked write permission and set its own idea of the size to 0; as on
 * tmpfs, O_RDONLY|O_TRUNC truncates too.
 */
static int open_truncate(struct section *sec, int flags)
{
	return (flags & O_TRUNC) ? section_resize(sec, 0, 0) : 0;
}

/*
 * The kernel's reference to an entry a create made, which it will not
 * get: dropped as a forget would.  With err, the create is answered that
 * error: the name it made goes too, as if it had never been, and the
 * record says the request was answered err, in the same change.  (A
 * reply the kernel would not take leaves the name, as a create
 * interrupted after its name was made does.)
 */
static void take_back_created(struct ns *ns, const struct created_at *at,
			      fuse_ino_t ino, int err)
{
	if (err)
		record_failed(err);
	if (err && at->name)
		ns_uncreate(ns, at->parent, at->name, ino);
	else
		ns_forget(ns, ino, 1);
}

/*
 * A created entry and handle the kernel never got: undo the open as a
 * release would, and the entry as take_back_created() does.  A reply
 * frees its request even when it fails, so these take the namespace,
 * read from the request before it was answered.
 */
static void abandon_handle(struct ns *ns, const struct created_at *at,
			   fuse_ino_t ino, struct section *sec, int flags,
			   uint64_t fh, int err)
{
	struct ns_expired gone;

	/* The handle's end and the open's in one change, as a RELEASE;
	 * the handle's reference is sec. */
	if (!fh || ns_release_handle(ns, fh, ino, flags, &gone) == -EBADF) {
		section_put(sec);
		ns_release(ns, ino, flags, &gone);
	}
	ns_expired_free(&gone);
	take_back_created(ns, at, ino, err);
}

/* An open that failed after ns_open: as if it had never been made. */
static void undo_open(struct ns *ns, fuse_ino_t ino, struct section *sec,
		      int flags, unsigned int undo, uint64_t fh)
{
	if (fh)
		ns_handle_take(ns, fh, ino);	/* sec, still held */
	ns_open_undo(ns, ino, flags, undo);
	section_put(sec);
}

/*
 * A truncating open by a caller without CAP_FSETID clears set-ID bits,
 * as on tmpfs.  The kernel says so with FUSE_OPEN_KILL_SUIDGID, which
 * libfuse 3.14 does not hand on, so a caller other than root stands for
 * one without CAP_FSETID.  When bits went, the kernel's copy of the
 * mode is dropped before the open is answered, so that a stat after it
 * asks again (only attributes: no page is touched, nothing waits long).
 */
static void open_kill_setid(fuse_req_t req, fuse_ino_t ino, int flags)
{
	if (!(flags & O_TRUNC) || fuse_req_ctx(req)->uid == 0)
		return;
	if (kill_setid(req, ino))
		notify_inval(&mount_of(req)->notify, ino, -1, 0, true);
}

static void open_section(fuse_req_t req, fuse_ino_t ino,
			 struct fuse_file_info *fi)
{
	struct ns *ns = ns_of(req);
	struct section *sec;
	unsigned int undo;
	int id, err = ns_open(ns, ino, fi->flags, &sec, &undo);

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	err = open_truncate(sec, fi->flags);
	id = err ? err : dp_open_prepare(modes_of(req), sec, fi);
	if (id >= 0) {
		err = ns_handle_add(ns, ino, sec, fi->flags, &fi->fh);
		id = err ? err : id;
	}
	if (id < 0) {
		undo_open(ns, ino, sec, fi->flags, undo, 0);
		fuse_reply_err(req, -id);
		return;
	}
	open_kill_setid(req, ino, fi->flags);
	/* A failed reply means no RELEASE will come for this handle. */
	if (dp_reply_open(req, fi, id))
		undo_open(ns, ino, sec, fi->flags, undo, fi->fh);
}


/*
 * The open half of a CREATE or an O_TMPFILE: a handle on the new
 * section and the reply; when either fails, the entry at made goes again
 * (take_back_created()).
 */
static void reply_created(fuse_req_t req, struct ns *ns,
			  const struct created_at *at,
			  const struct fuse_entry_param *e,
			  struct section *sec, struct fuse_file_info *fi)
{
	int err, id = dp_open_prepare(modes_of(req), sec, fi);

#ifdef SFS_TEST_HOOKS
	id = keeper_test_fault("reply-created", id);
#endif
	if (id >= 0) {
		err = ns_handle_add(ns, e->ino, sec, fi->flags, &fi->fh);
		id = err ? err : id;
	}
	if (id < 0) {
		/* Undone as this request's: sent again after a death, it
		 * is answered the same error. */
		abandon_handle(ns, at, e->ino, sec, fi->flags, 0, id);
		done_request();
		fuse_reply_err(req, -id);
		return;
	}
	done_request();
	if (dp_reply_create(req, e, fi, id))
		abandon_handle(ns, at, e->ino, sec, fi->flags, fi->fh, 0);
}

/* open(dir, O_TMPFILE): answered as CREATE is, with a section that has
 * no name. */
static void sfs_tmpfile(fuse_req_t req, fuse_ino_t parent, mode_t mode,
			struct fuse_file_info *fi)
{
	const struct created_at at = { parent, NULL };
	struct ns *ns = ns_of(req);
	struct caller who = caller_of(req);
	struct fuse_entry_param e;
	struct section *sec;
	int err;

	if (created_before(req, &at, fi))
		return;
	err = ns_tmpfile(ns, parent, mode, &who, &e, &sec, fi->flags);
	if (err) {
		done_request();
		fuse_reply_err(req, -err);
		return;
	}
	reply_created(req, ns, &at, &e, sec, fi);
}

static void sfs_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		       mode_t mode, struct fuse_file_info *fi)
{
	const struct created_at at = { parent, name };
	struct ns *ns = ns_of(req);
	struct caller who = caller_of(req);
	struct fuse_entry_param e;
	struct section *sec;
	int err;

	if (wire_tmpfile()) {
		sfs_tmpfile(req, parent, mode, fi);
		return;
	}
	if (created_before(req, &at, fi))
		return;
	err = ns_mknod(ns, parent, name, S_IFREG | (mode & 07777), 0,
		       &who, &e, &sec, fi->flags);
	if (err) {
		done_request();
		fuse_reply_err(req, -err);
		return;
	}
	dir_changed(&mount_of(req)->notify, parent, 0);
	reply_created(req, ns, &at, &e, sec, fi);
}

static void sfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct section *sec = section_of(req, fi);

	if (!sec) {
		fuse_reply_err(req, EBADF);
		return;
	}
	dp_read(req, sec, size, off);
	section_put(sec);
}

/*
 * Consume a refused WRITE's data: with splice it sits in the thread's
 * pipe, which libfuse reuses for the next request.
 */
static void discard_data(struct fuse_bufvec *in)
{
	char scratch[4096];
	ssize_t n;

	do {
		struct fuse_bufvec sink = FUSE_BUFVEC_INIT(sizeof(scratch));

		sink.buf[0].mem = scratch;
		n = fuse_buf_copy(&sink, in, FUSE_BUF_NO_SPLICE);
	} while (n > 0);
}

/*
 * How much of an append's data a dead server wrote, by what it recorded
 * (-1: nothing is known, write it all): the count it answered with, or,
 * when it died before it said, as much of the data as is found where
 * the file ended, if the file now ends right after it (a write cut short
 * by the kill leaves a part, and the rest goes after it) or it is all
 * there.  When the file ends elsewhere (a writer outside the mount
 * appended since), nothing is known.
 */
static ssize_t appended_before(struct ns *ns, uint64_t unique,
			       struct section *sec, const void *data,
			       size_t len, bool *answered)
{
	uint64_t what = 0, at = 0;
	ssize_t held;
	off_t end;
	int fd;

	*answered = false;
	if (!(unique & UNIQUE_RESENT) ||
	    record_resent(ns, unique, &what, &at) <= 0)
		return -1;
	if (what == RECORD_APPENDED) {
		*answered = true;
		return (ssize_t)at;
	}
	if (!record_append_at(what, &fd))
		return -1;
	held = dp_held(sec, data, len, (off_t)at);
	end = dp_file_end(sec);
	if (held == (ssize_t)len || (held >= 0 && end == (off_t)at + held))
		return held;
	return -1;
}

/*
 * An O_APPEND write to a file-backed section (dp_appends()): done twice,
 * it would append twice.  So the record says where the file ended before
 * it is written, and then what was written, and a request a dead server
 * carried out is answered from that instead of being written again, or
 * only its rest is.  One append to a backing file at a time
 * (dp_append_lock()), so that a server dies in the middle of one at
 * most, and no other lands between its look at the end and its write.
 */
static ssize_t append_once(fuse_req_t req, fuse_ino_t ino,
			   struct section *sec, struct fuse_bufvec *in)
{
	struct ns *ns = ns_of(req);
	uint64_t unique = wire_request_unique(req);
	struct dp_append_lock *lock;
	void *data = NULL;
	ssize_t len = dp_write_data(in, &data), done, res;
	bool answered;
	size_t part;
	off_t end;

	if (len < 0)
		return len;
	res = dp_append_lock(sec, unique & ~UNIQUE_RESENT, &lock);
	if (res < 0)
		goto out_free;
	done = appended_before(ns, unique, sec, data, (size_t)len, &answered);
	res = done;
	if (answered)
		goto out;
	record_request(unique);
	if (done == len) {		/* found whole: say so */
		record_append(ns, RECORD_APPENDED, (uint64_t)len);
		goto out_done;
	}
	if (done < 0) {
		done = 0;
		res = end = dp_file_end(sec);
		if (end < 0)
			goto out_done;
		record_append(ns, RECORD_APPEND_AT(sec->fd), (uint64_t)end);
	}
	part = (size_t)(len - done);
#ifdef SFS_TEST_HOOKS
	/* As a write cut short by a kill: half of it, by a first server. */
	if (keeper_test_fault("append-part", 0) && !keeper_state()->deaths)
		part /= 2;
#endif
	res = dp_append(sec, (char *)data + done, part);
#ifdef SFS_TEST_HOOKS
	keeper_test_gap("append-written", ino);
#endif
	/* What a dead server wrote stays written: a short count. */
	if (res < 0 && done > 0)
		res = 0;
	if (res >= 0) {
		res += done;
		record_append(ns, RECORD_APPENDED, (uint64_t)res);
	}
out_done:
	done_request();
out:
	dp_append_unlock(lock);
out_free:
	free(data);
	return res;
}

/*
 * Besides the write itself, have the kernel drop what it may now hold
 * that the section does not (notify.h: from the notice thread).  A direct
 * write's range, before the reply as far as it can be: a view may have
 * faulted the old bytes in while the write was on its way.  A writeback
 * the cap refused, after the reply: the kernel keeps those pages up to
 * date and clean, with bytes the section never got.  Never a writeback's
 * range before its reply: its pages stay under writeback until then.
 */
static void sfs_write_buf(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_bufvec *in, off_t off,
			  struct fuse_file_info *fi)
{
	struct notifier *notify = &mount_of(req)->notify;
	struct section *sec = section_of(req, fi);
	size_t total = fuse_buf_size(in);
	bool append, direct;
	ssize_t res;

	if (!sec) {
		discard_data(in);
		fuse_reply_err(req, EBADF);
		return;
	}
	append = !fi->writepage && dp_appends(modes_of(req), sec, fi->flags);
	direct = !fi->writepage && dp_direct_io(modes_of(req), sec);
	if (append)
		res = append_once(req, ino, sec, in);
	else
		res = dp_write(sec, in, off, fuse_req_ctx(req)->pid,
			       fi->writepage);
	section_put(sec);	/* sec is not touched past here */

	/* An append's range is not known: drop every page (len 0). */
	if (res > 0 && direct)
		notify_inval(notify, ino, append ? 0 : off, append ? 0 : res,
			     true);
	if (res < 0)
		fuse_reply_err(req, (int)-res);
	else
		fuse_reply_write(req, (size_t)res);
	if (res < 0 && fi->writepage)
		notify_inval(notify, ino, off, total, false);
}

/*
 * Tell the kernel a section's names are gone, so that the next lookup
 * fails at once instead of when its cached entry times out.
 */
static void notify_expired(struct notifier *notify, struct ns_expired *gone)
{
	size_t i;

	for (i = 0; i < gone->n; i++) {
		notify_delete(notify, gone->names[i].parent, gone->ino,
			      gone->names[i].name);
		dir_changed(notify, gone->names[i].parent, 0);
	}
}

/* A resent OPEN's answer: the handle fh a predecessor gave it.  False
 * when the handle is not there to give (then the open is made anew). */
static bool reopen_handle(fuse_req_t req, fuse_ino_t ino, uint64_t fh,
			  struct fuse_file_info *fi)
{
	struct sfs_mount *m = mount_of(req);	/* req is gone after the reply */
	struct section *sec = ns_handle_section(&m->ns, fh);
	struct ns_expired gone;
	int id, expired;

	if (!sec)
		return false;
	id = dp_open_prepare(&m->modes, sec, fi);
	put_section(sec);
	fi->fh = fh;
	/* Either way no RELEASE will come for the handle but this one;
	 * an error is answered once the handle is gone, so that a death
	 * between the two leaves none the kernel will never release. */
	if (id < 0 || dp_reply_open(req, fi, id)) {
		expired = ns_release_handle(&m->ns, fh, ino, fi->flags, &gone);
		if (id < 0)
			fuse_reply_err(req, -id);
		if (expired > 0)
			notify_expired(&m->notify, &gone);
		ns_expired_free(&gone);
	}
	return true;
}

static void sfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint64_t fh = handle_given_before(req);

	if (!fh || !reopen_handle(req, ino, fh, fi)) {
		/* Made now (a server before may have counted the open and
		 * died before its handle): the handle is this request's. */
		record_request(wire_request_unique(req));
		open_section(req, ino, fi);
	}
	done_request();
}

static void sfs_release(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct sfs_mount *m = mount_of(req);	/* req is gone after the reply */
	struct ns_expired gone;
	int expired;

	if (answered_before(req, false))
		return;
	expired = ns_release_handle(&m->ns, fi->fh, ino, fi->flags, &gone);
	done_request();
	fuse_reply_err(req, expired < 0 ? EBADF : 0);
	if (expired > 0)
		notify_expired(&m->notify, &gone);
	ns_expired_free(&gone);
}

static void sfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		      struct fuse_file_info *fi)
{
	struct section *sec = section_of(req, fi);
	int err = sec ? section_sync(sec, datasync) : -EBADF;

	put_section(sec);
	fuse_reply_err(req, -err);
}

static void sfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			  off_t off, off_t len, struct fuse_file_info *fi)
{
	struct section *sec = section_of(req, fi);
	int err = sec ? section_fallocate(sec, mode, off, len,
					  fuse_req_ctx(req)->pid) : -EBADF;

	put_section(sec);
	fuse_reply_err(req, -err);
}

static void sfs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		      struct fuse_file_info *fi)
{
	struct section *sec = section_of(req, fi);
	off_t res = sec ? dp_seek(modes_of(req), sec, off, whence) : -EBADF;

	put_section(sec);

	if (res < 0)
		fuse_reply_err(req, (int)-res);
	else
		fuse_reply_lseek(req, res);
}

/* Reply with a length (size 0), the bytes, or the error. */
static void reply_xattr(fuse_req_t req, ssize_t res, const char *buf,
			size_t size)
{
	if (res < 0)
		fuse_reply_err(req, (int)-res);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)res);
	else
		fuse_reply_buf(req, buf, (size_t)res);
}

#ifdef SFS_TEST_HOOKS
/*
 * The test suite's look at the record (a build with --enable-test-hooks
 * only): on the root, for root, the attribute SFS_TEST_RECORD is "ok"
 * when a namespace rebuilt from the record is the live one, or what
 * differs; SFS_TEST_RECORD "_compact" compacts the record first, and
 * "_adopt" compares what a second namespace adopted from it writes.
 * Returns -ENODATA for any other request.
 */
#define SFS_TEST_RECORD SECTIONFS_XATTR_PREFIX "test.record"

static ssize_t test_record(fuse_req_t req, fuse_ino_t ino, const char *name,
			   char *buf, size_t size)
{
	size_t len = strlen(SFS_TEST_RECORD), n;
	char text[1024];
	int how;

	if (ino != FUSE_ROOT_ID || fuse_req_ctx(req)->uid != 0 ||
	    strncmp(name, SFS_TEST_RECORD, len))
		return -ENODATA;
	if (!strcmp(name + len, ""))
		how = RECORD_CHECK;
	else if (!strcmp(name + len, "_compact"))
		how = RECORD_CHECK_COMPACT;
	else if (!strcmp(name + len, "_adopt"))
		how = RECORD_CHECK_ADOPT;
	else
		return -ENODATA;
	n = record_check(ns_of(req), how, text, sizeof(text));
	if (n >= sizeof(text))
		n = sizeof(text) - 1;
	if (size && size < n)
		return -ERANGE;
	if (size)
		memcpy(buf, text, n);
	return (ssize_t)n;
}
#endif

static void sfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			 size_t size)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char *buf = size ? malloc(size) : NULL;
	ssize_t res;

	if (size && !buf)
		res = -ENOMEM;
	else if (ino == FUSE_ROOT_ID && !strcmp(name, SECTIONFS_XATTR_QUOTA))
		/* The mount's own attribute: each owner's usage, as the
		 * caller may see it (cap.h). */
		res = cap_report(ctx->uid, ctx->gid, buf, size);
	else
		res = ns_getxattr(ns_of(req), ino, name, buf, size);
#ifdef SFS_TEST_HOOKS
	if (res == -ENODATA)
		res = test_record(req, ino, name, buf, size);
#endif
	reply_xattr(req, res, buf, size);
	free(buf);
}

static void sfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	ssize_t res = size && !buf ? -ENOMEM :
		ns_listxattr(ns_of(req), ino, buf, size);

	reply_xattr(req, res, buf, size);
	free(buf);
}

/*
 * A seal that waits is answered from the sealer thread: over /dev/fuse
 * any thread may answer, over io_uring the ring entry is parked until
 * then (uring_park()).
 */
static bool seal_may_wait(void *req)
{
	return uring_park();
}

static void seal_answer(void *req, int err)
{
	fuse_reply_err(req, -err);
}

static void sfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			 const char *value, size_t size, int flags)
{
	struct caller who = caller_of(req);
	const struct ns_answer later = {
		.may_wait = seal_may_wait, .answer = seal_answer, .cookie = req,
	};
	int res = ns_setxattr(ns_of(req), ino, &who, name, value, size, flags,
			      &later);

	if (res != NS_LATER)
		fuse_reply_err(req, -res);
}

static void sfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, -ns_removexattr(ns_of(req), ino, name));
}

/* Answer an OPENDIR with the handle fh on the listing dir; a reply that
 * fails (and has freed req too) lets the listing go. */
static void reply_opendir(fuse_req_t req, fuse_ino_t ino, struct ns_dir *dir,
			  uint64_t fh, struct fuse_file_info *fi)
{
	fi->fh = fh;
	/* Only this daemon changes names, and it drops the kernel's copy of
	 * a listing whenever it does (dir_changed): the kernel may keep it,
	 * from one opendir to the next. */
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	if (fuse_reply_open(req, fi) &&
	    ns_dirhandle_take(ns_of(req), fh, ino) == dir)
		ns_releasedir(ns_of(req), dir);
}

static void open_listing(fuse_req_t req, fuse_ino_t ino,
			 struct fuse_file_info *fi)
{
	struct ns *ns = ns_of(req);
	struct ns_dir *dir;
	uint64_t fh;
	int err = ns_opendir(ns, ino, &dir);

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	err = ns_dirhandle_add(ns, ino, dir, &fh);
	if (err) {
		ns_releasedir(ns, dir);
		fuse_reply_err(req, -err);
		return;
	}
	reply_opendir(req, ino, dir, fh, fi);
}

static void sfs_opendir(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	uint64_t fh = handle_given_before(req);
	struct ns_dir *dir = fh ? ns_handle_dir(ns_of(req), fh) : NULL;

	if (dir) {
		reply_opendir(req, ino, dir, fh, fi);
	} else {
		record_request(wire_request_unique(req));	/* as sfs_open */
		open_listing(req, ino, fi);
	}
	done_request();
}

/* Append one entry; returns its size, or 0 when the buffer is full. */
static size_t add_entry(fuse_req_t req, char *buf, size_t room, int plus,
			const char *name, const struct fuse_entry_param *e,
			off_t next)
{
	size_t len = plus ?
		fuse_add_direntry_plus(req, buf, room, name, e, next) :
		fuse_add_direntry(req, buf, room, name, &e->attr, next);

	return len > room ? 0 : len;
}

/*
 * Entries from offset off until the buffer is full.  An entry that does
 * not fit is not taken: the next READDIR asks for it again (the listing
 * moves past an entry only when asked for the offset after it).
 *
 * READDIRPLUS counts each entry's lookup in a change of its own, and is
 * written as done only after the last: a server that dies part way
 * leaves the entries it counted counted, and its successor counts every
 * entry of the listing again.  A count one too many keeps a removed
 * section until unmount; one too few, written as done at the first
 * entry, would free a node the kernel still holds.
 */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, int plus)
{
	struct ns *ns = ns_of(req);
	struct ns_dir *dir = ns_handle_dir(ns, fi->fh);
	struct fuse_entry_param e;
	char name[NAME_MAX + 1];
	char *buf = malloc(size);
	size_t pos = 0, len;
	uint64_t was = 0, fh = 0;
	/* Sent again after a server that counted its entries' lookups
	 * died: the same entries, not counted a second time. */
	bool counted = plus && carried_out_before(req, &was, &fh) > 0;
	uint64_t unique = wire_request_unique(req);
	off_t next;
	int err = !dir ? -EBADF : buf ? 0 : -ENOMEM;

	if (plus && !counted)
		done_request();		/* until every entry is counted */

	while (!err) {
		err = ns_readdir_entry(ns, dir, off, plus, name, &e, &next);
		if (err)
			break;
#ifdef SFS_TEST_HOOKS
		if (plus && e.ino)
			keeper_test_gap("readdirplus-entry", e.ino);
#endif
		len = add_entry(req, buf + pos, size - pos, plus, name, &e, next);
		if (plus && e.ino && (!len || counted))
			ns_forget(ns, e.ino, 1);
		if (!len)
			break;
		pos += len;
		off = next;
	}
	if (plus && !counted) {
		record_request(unique);
		record_done(ns);
	}
	if (plus)
		done_request();
	if (err && err != -ENOENT && pos == 0)
		fuse_reply_err(req, -err);
	else
		fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void sfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

static void sfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			    off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

static void sfs_releasedir(fuse_req_t req, fuse_ino_t ino,
			   struct fuse_file_info *fi)
{
	struct ns_dir *dir;

	if (answered_before(req, false))
		return;
	dir = ns_dirhandle_take(ns_of(req), fi->fh, ino);
	if (dir)
		ns_releasedir(ns_of(req), dir);
	done_request();
	fuse_reply_err(req, dir ? 0 : EBADF);
}

static void sfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			 struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);		/* directories live in memory only */
}

static void sfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct statvfs st;
	/* Free inodes are what this caller may still create. */
	int err = conn_statfs(mount_of(req), ctx->uid, ctx->gid, &st);

	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_statfs(req, &st);
}

const struct fuse_lowlevel_ops sfs_ops = {
	.init		= conn_init,
	.lookup		= sfs_lookup,
	.forget		= sfs_forget,
	.forget_multi	= sfs_forget_multi,
	.getattr	= sfs_getattr,
	.setattr	= sfs_setattr,
	.mknod		= sfs_mknod,
	.symlink	= sfs_symlink,
	.readlink	= sfs_readlink,
	.mkdir		= sfs_mkdir,
	.unlink		= sfs_unlink,
	.rmdir		= sfs_rmdir,
	.rename		= sfs_rename,
	.link		= sfs_link,
	.open		= sfs_open,
	.create		= sfs_create,
	.read		= sfs_read,
	.write_buf	= sfs_write_buf,
	.release	= sfs_release,
	.fsync		= sfs_fsync,
	.fallocate	= sfs_fallocate,
	.lseek		= sfs_lseek,
	.opendir	= sfs_opendir,
	.readdir	= sfs_readdir,
	.readdirplus	= sfs_readdirplus,
	.releasedir	= sfs_releasedir,
	.fsyncdir	= sfs_fsyncdir,
	.statfs		= sfs_statfs,
	.getxattr	= sfs_getxattr,
	.listxattr	= sfs_listxattr,
	.setxattr	= sfs_setxattr,
	.removexattr	= sfs_removexattr,
};
