/*
 * wire.h - what sectionfs says to the kernel past libfuse 3.14.
 *
 * libfuse 3.14 cannot ask the kernel for passthrough, for shared maps of
 * direct_io files, for HANDLE_KILLPRIV_V2 or for io_uring, and cannot
 * name a backing file in an open reply.  The wire shim hooks the session
 * fd's read and writev (fuse_session_custom_io()) to do it: it reads
 * what the kernel offers in its INIT request, adds what init() asked for
 * to the INIT reply, turns a plain open reply into a passthrough one,
 * hands replies to requests that came by ring to uring.c, and passes an
 * O_TMPFILE request, which libfuse 3.14 does not know, on as a CREATE.
 * It decides nothing: what to ask for is init()'s business.
 */
#ifndef SECTIONFS_WIRE_H
#define SECTIONFS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <fuse_lowlevel.h>

/*
 * Hook a mounted session (after fuse_session_mount(), before the loop).
 * Should the INIT reply turn out not to be editable (libfuse answered
 * with an error or an older protocol), nothing asked for through
 * wire_ask() is in it, and unedited(userdata) is called, on the thread
 * that answers INIT, before the kernel sees the reply: the caller then
 * takes back what it decided on the strength of it.  userdata is the
 * session's.  Returns 0 or -errno, after logging why.
 */
int wire_setup(struct fuse_session *se, void (*unedited)(void *userdata));

/*
 * What the kernel offered in its INIT request: flags, and flags2 in the
 * upper 32 bits (as kabi.h spells the flags); 0 before INIT.  Valid from
 * the init() operation on.
 */
uint64_t wire_offered(void);

/*
 * From init(): what the INIT reply adds to libfuse's answer.  set and
 * clear are flags as wire_offered() gives them; restore is what to put
 * back into the reply should it not be editable (what init() gave up
 * for what it asked); a max_stack_depth above 0 sets that field.  Calls
 * add up.  FUSE_OVER_IO_URING is asked for here when uring_prepared()
 * is true as INIT is answered, and uring_start() hears the outcome.
 */
void wire_ask(uint64_t set, uint64_t clear, uint64_t restore,
	      uint32_t max_stack_depth);

/*
 * A request that has no reply (FORGET, BATCH_FORGET) was carried out:
 * this thread's slot no longer names it, so a successor does not do it
 * again.
 */
void wire_request_done(void);

/*
 * Whether the request unique (without the resent bit) is being carried
 * out by a thread of this server, or was by the dead server this one
 * took over from: the kernel sends it again if this server dies.
 */
bool wire_in_flight(uint64_t unique);

/*
 * How many bytes of each read buffer a kept server has in place before
 * it reads a request into it: what the largest request may fill.  A
 * request being copied into pages not yet there when the server is
 * killed would be failed (EIO) rather than sent to its successor.
 * Before INIT, two pages.
 */
void wire_ready(size_t bytes);

/*
 * Reply to OPEN or CREATE, the open reply carrying FOPEN_PASSTHROUGH and
 * backing_id (> 0) in place of fi's open flags, which the kernel would
 * refuse beside it.  Otherwise as fuse_reply_open()/fuse_reply_create().
 */
int wire_reply_open(fuse_req_t req, struct fuse_file_info *fi, int backing_id);
int wire_reply_create(fuse_req_t req, const struct fuse_entry_param *e,
		      struct fuse_file_info *fi, int backing_id);

/*
 * Every request, before libfuse sees it, in place (len bytes from its
 * fuse_in_header on): one libfuse 3.14 does not know but the daemon
 * serves goes on as the request it resembles, and the thread remembers
 * what it was.  The session's read hook calls it; so does uring.c for
 * requests that come by ring.
 */
void wire_recognise(void *buf, size_t len);

/*
 * From the create handler: true when the request this thread serves was
 * an O_TMPFILE open (FUSE_TMPFILE), which comes as a CREATE whose name
 * is to be ignored; the reply is a CREATE reply all the same.
 */
bool wire_tmpfile(void);

/*
 * A successor (keeper.h), before its loop: feed libfuse the INIT the
 * kernel sent to the mount's first server.  Its answer must be the one
 * the kernel took, byte for byte, and is then swallowed.  Returns 0, or
 * -EPROTO when it differs (the process must not serve) or there is no
 * INIT to replay.
 */
int wire_replay_init(struct fuse_session *se);

/*
 * A server that follows a dead one, ready to serve: ask the kernel to
 * send again what the dead server read and did not answer
 * (FUSE_NOTIFY_RESEND), INIT included when it died before answering it.
 */
void wire_resend(struct fuse_session *se);

/*
 * The request's unique as the kernel sent it: bit 63 set when it is sent
 * again after its server died (keeper.h).
 */
uint64_t wire_request_unique(fuse_req_t req);

/*
 * uring.c, for a request that came by ring (buf: as /dev/fuse would have
 * it): noted as the thread's request in flight, as the read hook notes
 * those from /dev/fuse.  False when it is to be answered EIO instead: it
 * killed server after server (keeper.h).
 */
bool wire_ring_request(const void *buf, size_t len);

#endif /* SECTIONFS_WIRE_H */
