/*
 * record.h - the namespace's record, what a successor adopts.
 *
 * Every change to state the kernel refers to or a user sees (node ids and
 * lookup counts, names, modes, owners, times, lifetimes, seals, open
 * handles, each section's descriptor and backing id, the private tmpfs
 * stores) is written to a memfd the keeper holds before the request that
 * made it is answered, so that a server started after this one dies can
 * rebuild the namespace as it was.  The record is an append-only log of whole entries made visible
 * by one aligned store of its length, written under ns->lock where the
 * change is made: a server killed between any two instructions leaves a
 * prefix of whole changes.  The format is in record.c.
 */
#ifndef SECTIONFS_RECORD_H
#define SECTIONFS_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ns;
struct node;
struct dentry;

/* First server, before serving: start a record of ns (as it is now). */
int record_start(struct ns *ns);
/* Successor, before serving: rebuild ns from the record the keeper
 * holds; -errno when there is none or it cannot be read. */
int record_adopt(struct ns *ns);
/*
 * Whether this binary reads the record a server before it wrote (an
 * upgrade's check, before the serving one is stopped): 0, -EPROTO for
 * a version it does not read, or another -errno when the descriptor
 * does not hold a record.
 */
int record_readable(void);
/* Successor, once INIT has set up the cap and the stores (cap_init):
 * charge the adopted sections and nodes to their owners, as if each had
 * just been made (the ledger is recomputed, never recorded). */
void record_charge(struct ns *ns);
/* At unmount. */
void record_stop(struct ns *ns);

/*
 * Under ns->lock: what changed.  Nothing is visible until
 * record_commit(), which every unlock of ns->lock calls (ns_internal.h):
 * the changes of one critical section become visible together.
 */
void record_node(struct ns *ns, struct node *n);	/* n's state */
void record_gone(struct ns *ns, struct node *n);	/* n freed */
void record_name(struct ns *ns, const struct dentry *d);
void record_unname(struct ns *ns, const struct dentry *d);
void record_handle(struct ns *ns, uint64_t fh, uint64_t ino, int dir,
		   int flags);
void record_handle_gone(struct ns *ns, uint64_t fh);
void record_commit(struct ns *ns);

/*
 * Requests not to be done twice (create, mknod, mkdir, symlink, link,
 * unlink, rmdir, rename; open and opendir, whose handle is the answer;
 * release and releasedir; lookup and readdirplus, whose entries each
 * count a reference).  record_request() names the one this thread
 * serves (its unique as the kernel sent it; 0 when done): every commit
 * made for it also writes that it was done, with the node its reply
 * names (record_result(), under ns->lock) and, for a create, the handle.
 * A request answered with an error after it had changed something (a
 * CREATE whose open failed, its entry and handle dropped again) says so
 * with record_failed() before the commit that undoes the last of it.
 * A successor asks record_resent() about a resent request: 1 with what
 * the reply must say (*ino 0: no entry; *fh 0: no handle yet) when a
 * predecessor carried it out, -errno when it answered that error, else
 * 0.  Writes, setattr and setxattr are done again instead: done twice,
 * they leave what they left once.
 */
void record_request(uint64_t unique);
void record_result(struct ns *ns, uint64_t ino);
void record_failed(int err);
/*
 * An O_APPEND write to a file-backed section lands where the backing
 * file ends, so it is not the same done twice: record_append() commits,
 * for the request this thread serves, where the file ended before it
 * was written (RECORD_APPEND_AT(fd), fd the section's descriptor) and
 * then the bytes written (RECORD_APPENDED).  record_resent() gives the
 * last of them back as *ino, and the value as *fh.  A successor, before
 * it serves, learns from record_appends_left() which appends the dead
 * server was part way through: fn(arg, unique, fd) for each whose
 * request is still in flight (wire_in_flight()).
 */
#define RECORD_APPEND_AT(fd)	((1ULL << 63) | (uint32_t)(fd))
#define RECORD_APPENDED		(UINT64_MAX - 2)
static inline bool record_append_at(uint64_t what, int *fd)
{
	if (what >> 32 != 1ULL << 31)
		return false;
	*fd = (int)(uint32_t)what;
	return true;
}
void record_append(struct ns *ns, uint64_t what, uint64_t value);
void record_appends_left(struct ns *ns,
			 void (*fn)(void *arg, uint64_t unique, int fd),
			 void *arg);
/*
 * A commit of the served request's DONE entry alone, for a request made
 * of several changes that must be written as done only once all are
 * (a READDIRPLUS counts each entry in a change of its own).
 */
void record_done(struct ns *ns);
int record_resent(struct ns *ns, uint64_t unique, uint64_t *ino,
		  uint64_t *fh);

/*
 * For the tests: rebuild ns, fresh from ns_init(), from the record in fd
 * as it was when its committed length was end (a length it had after
 * some commit), its sections borrowed (section_adopt()).  What a
 * successor of a server killed just after that commit would adopt.
 */
int record_adopt_at(struct ns *ns, int fd, uint64_t end);

/* What the record has cost: bytes written (snapshots included), commits
 * and compactions, its length now and its last snapshot's. */
struct record_stats {
	uint64_t written, commits, compactions, length, snapshot;
};
void record_stats(struct ns *ns, struct record_stats *st);

/*
 * For the test suite: rebuild an image of the namespace from the record
 * and compare it with the live one: as the record is, after compacting
 * it, or as a second namespace rebuilt from it (adoption, its sections
 * borrowed) writes it again.  Writes "ok" or what differs into buf;
 * returns the length.
 */
enum { RECORD_CHECK, RECORD_CHECK_COMPACT, RECORD_CHECK_ADOPT };
size_t record_check(struct ns *ns, int how, char *buf, size_t size);

#endif /* SECTIONFS_RECORD_H */
