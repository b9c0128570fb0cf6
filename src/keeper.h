/*
 * keeper.h - the process that holds a mount, and the server it restarts.
 *
 * sectionfs runs as two processes.  The one started first mounts, then
 * becomes the *keeper*: it never serves a request, holds the /dev/fuse fd
 * and a copy of every fd a server asks it to hold, and starts the
 * *server*, which does all the work.  When a server dies, the keeper
 * starts a successor at once; the successor finds every held fd at the
 * number its predecessor had, is fed the INIT the kernel already
 * answered (wire.c), and asks the kernel to send again the requests the
 * dead server had read but not answered.  The connection never notices:
 * callers see a pause.  The same hand-over gives a live upgrade to a
 * newly installed binary (sectionfs --upgrade).
 *
 * The server side of the interface is what the rest of the daemon uses;
 * the keeper side is main.c's.
 */
#ifndef SECTIONFS_KEEPER_H
#define SECTIONFS_KEEPER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <fuse_lowlevel.h>

/* ---- in a server ---- */

/* Bit 63 of a request's unique: the kernel sends it again after its
 * server died (FUSE_NOTIFY_RESEND).  wire_request_unique() is wire.c's. */
#define UNIQUE_RESENT	(1ULL << 63)
uint64_t wire_request_unique(fuse_req_t req);

/* This server has a keeper. */
bool keeper_on(void);

/*
 * The keeper keeps a copy of fd, and a successor finds it at the same
 * number.  Returns once the copy is safe (in the keeper's hands even if
 * this process dies now): call it before the reply that makes what fd
 * holds reachable.  0 (also without a keeper) or -errno.
 */
int keeper_hold(int fd);

/* Before close() of a held fd: the keeper drops its copy. */
void keeper_release(int fd);

/* The record's own memfd, held: a successor finds it there. */
void keeper_set_record_fd(int fd);

/* In a successor, the record's fd; -1 in a first server or unkept. */
int keeper_record_fd(void);

/*
 * What a server and its keeper share, in a memfd the keeper holds: the
 * INIT the kernel sent and the answer it took (so that a successor can be
 * fed them), what each serving thread is carrying out (for the crash
 * loop), the requests a successor answers EIO rather than die of
 * again, and the FORGETs a dead server read and may not have carried
 * out (the kernel never sends them again: the successor does them).  Laid out for one version of sectionfs: KEEPER_STATE_VERSION
 * says which, and a binary that finds another refuses to serve it.
 */
#define KEEPER_STATE_VERSION	3
#define KEEPER_INIT_MAX		512	/* an INIT request or reply, bytes */
#define KEEPER_SLOTS		256	/* serving threads tracked */
#define KEEPER_POISON_MAX	64
#define KEEPER_SLOT_FORGETS	1024	/* of a BATCH_FORGET, per thread */
#define KEEPER_LOST_FORGETS	4096	/* handed to a successor */

enum keeper_init {
	KEEPER_INIT_NONE,	/* no INIT answered yet */
	KEEPER_INIT_SENDING,	/* the answer is saved, maybe not sent */
	KEEPER_INIT_SENT,	/* the kernel took it */
};

struct keeper_slot {
	uint64_t unique;	/* the request being carried out, 0: none */
	uint32_t opcode;
	uint32_t nforget;	/* FORGET, BATCH_FORGET: entries noted */
};

/* Laid out as libfuse's struct fuse_forget_data and the kernel's
 * struct fuse_forget_one. */
struct keeper_forget {
	uint64_t ino;
	uint64_t nlookup;
};

struct keeper_lost_forget {
	uint64_t unique;	/* the FORGET or BATCH_FORGET it came in */
	struct keeper_forget f;
};

struct keeper_state {
	uint32_t version;
	uint32_t init_state;	/* enum keeper_init */
	uint32_t init_len, reply_len;
	int32_t record_fd;	/* keeper_set_record_fd(), -1: none */
	uint32_t serving;	/* the current server took the mount over
				   (a first one: the kernel took its INIT
				   answer; a successor: it adopted the
				   record) */
	uint32_t generation;	/* 0: the first server */
	uint32_t deaths;	/* servers that died so far (test hooks) */
	uint32_t n_poison;
	uint32_t pad;
	uint64_t poison[KEEPER_POISON_MAX];	/* answer these EIO */
	struct keeper_slot slots[KEEPER_SLOTS];
	uint8_t init[KEEPER_INIT_MAX];
	uint8_t reply[KEEPER_INIT_MAX];
	uint32_t n_lost;	/* entries of lost[] a successor must do */
	uint32_t n_in_flight;	/* entries of in_flight[] */
	struct keeper_lost_forget lost[KEEPER_LOST_FORGETS];
	/* What the servers that died were carrying out, the newest last,
	 * added to before the next starts: the kernel sends these again,
	 * and a successor keeps their record of being done however old
	 * (record.c).  Once it has answered one, it zeroes its entry
	 * (keeper_answered_in_flight()); the keeper drops the zeroes at
	 * the next death. */
	uint64_t in_flight[KEEPER_SLOTS];
	/* What each slot's FORGET asks (slot.nforget entries).  Last and
	 * never cleared as a whole: only the pages of the threads that
	 * serve are ever touched. */
	struct keeper_forget forgets[KEEPER_SLOTS][KEEPER_SLOT_FORGETS];
};

/* Whether unique is among the requests dead servers left (in_flight). */
static inline bool keeper_left_in_flight(const struct keeper_state *st,
					 uint64_t unique)
{
	for (uint32_t i = 0; i < st->n_in_flight && i < KEEPER_SLOTS; i++)
		if (st->in_flight[i] == unique)
			return true;
	return false;
}

/* A request dead servers left is answered: no longer in flight.  One
 * aligned store, so a death at any instant leaves the list whole. */
static inline void keeper_answered_in_flight(struct keeper_state *st,
					     uint64_t unique)
{
	for (uint32_t i = 0; i < st->n_in_flight && i < KEEPER_SLOTS; i++)
		if (st->in_flight[i] == unique)
			__atomic_store_n(&st->in_flight[i], 0,
					 __ATOMIC_RELEASE);
}

/* A successor has adopted the mount and serves from now on. */
void keeper_serving(void);

/* This server's exit ends the mount (a failed INIT): no successor. */
void keeper_stop(void);

#ifdef SFS_TEST_HOOKS
/* Test hooks: the keeper kills this server now; does not return. */
void keeper_test_die(void) __attribute__((noreturn));
/*
 * A first server dies at the point named where, on the object id, when
 * the suite has armed it: SECTIONFS_TEST_GAP=where, and a file "arm",
 * holding id in decimal, in the directory SECTIONFS_TEST_GAP_DIR.
 * Having made the file "in" there, it waits for a file "go" and dies,
 * so the suite can act while a change is half made.
 */
void keeper_test_gap(const char *where, uint64_t id);
/*
 * A failure made at the point named where, in place of res, the result
 * so far, when that is not already one: when SECTIONFS_TEST_FAULT names
 * where (a list, with commas), the negative of the errno
 * SECTIONFS_TEST_FAULT_ERRNO gives; else res.
 */
int keeper_test_fault(const char *where, int res);
#endif

/* The shared state; NULL without a keeper. */
struct keeper_state *keeper_state(void);

/* What a server started by a keeper is there for. */
enum keeper_role {
	KEEPER_FIRST,		/* the mount's first server: INIT comes */
	KEEPER_SUCCESSOR,	/* after another: INIT is replayed (wire.h) */
	KEEPER_CHECK,		/* an upgrade's test: may this binary take
				   over?  Exits 0 or KEEPER_EXIT_REFUSE once
				   its INIT answer has been compared */
};

/*
 * In main(), before anything else: whether this process was started by
 * a keeper as its server.  Then returns 1 with *fuse_fd the connection's
 * fd, *dev the mount's device and *background whether the keeper
 * detached (logs then go to syslog); 0 when it was not (it is the
 * process a user started); -errno when what the keeper passed is
 * unusable, -EPROTO when the state is of a version this binary cannot
 * read.
 */
int keeper_attach(int *fuse_fd, dev_t *dev, bool *background);

/* This server's role; KEEPER_FIRST without a keeper. */
enum keeper_role keeper_role(void);

/* A server refused to take over the mount (exit status). */
#define KEEPER_EXIT_REFUSE	3

/* ---- in the process a user started ---- */

/*
 * Become the keeper of the mount se made on mountpoint (device dev):
 * detach unless foreground, start the server (this binary, run with
 * argv with the mount point argument mount_arg replaced by the
 * connection's fd), restart it when it dies, unmount when it stops.
 * Returns main()'s exit status.
 */
int keeper_run(struct fuse_session *se, char *argv[], const char *mount_arg,
	       const char *mountpoint, dev_t dev, bool foreground);

/*
 * sectionfs --upgrade MOUNTPOINT: ask the mount's keeper to hand the
 * mount to the binary now installed where it was started from.  Returns
 * main()'s exit status, after printing the outcome.
 */
int keeper_upgrade(const char *mountpoint);

#endif /* SECTIONFS_KEEPER_H */
