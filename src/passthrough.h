/*
 * passthrough.h - kernel FUSE passthrough behind one small interface.
 *
 * With passthrough the kernel reads, writes and maps a section's store or
 * backing file itself; the daemon only names the file when a section is
 * opened.  libfuse 3.14 has no API for it, so the INIT handshake and the
 * open replies go through the wire shim (wire.h).
 *
 * The data-path mode is decided once per mount, at FUSE_INIT, before any
 * file is opened: the kernel keeps one io mode per inode, so mixing
 * passthrough and cached opens of one section would fail with EIO.
 */
#ifndef SECTIONFS_PASSTHROUGH_H
#define SECTIONFS_PASSTHROUGH_H

#include <stdbool.h>
#include <fuse_lowlevel.h>

enum pt_mode { PT_OFF, PT_AUTO, PT_ON };

/*
 * Prepare a mounted session (call after fuse_session_mount(), before the
 * session loop): hook it so that INIT can ask for what libfuse cannot.
 * PT_AUTO/PT_ON check the privilege passthrough needs (CAP_SYS_ADMIN).
 * Returns 0, or -EPERM when mode is PT_ON and the daemon lacks the
 * privilege (a message saying so has been logged).  PT_AUTO without the
 * privilege returns 0 after logging one line; the mount is then cached.
 */
int pt_setup(struct fuse_session *se, enum pt_mode mode);

/*
 * Called from the init() operation of every mount (it also asks for
 * HANDLE_KILLPRIV_V2, see passthrough.c).  Returns true when passthrough
 * will be used for this mount: it was asked for, the daemon is privileged, and the
 * kernel offered FUSE_PASSTHROUGH.  The caller must then not enable the
 * writeback cache (the kernel would silently refuse passthrough).  With
 * PT_ON and no kernel support, logs why and returns false; the caller
 * ends the session.  Takes FUSE_CAP_WRITEBACK_CACHE out of conn->want.
 * Ask pt_active() at each open rather than keeping this result: should
 * the INIT reply turn out not to be editable, passthrough is switched off
 * (and logged) before the kernel sends any OPEN.
 */
bool pt_negotiate(struct fuse_conn_info *conn);

/* True once pt_negotiate() has returned true for this mount. */
bool pt_active(void);

/*
 * Called from init() of a cached mount (after pt_negotiate() said no):
 * ask the kernel to let files opened with direct_io be mapped shared
 * (FUSE_DIRECT_IO_ALLOW_MMAP, Linux 6.6), which libfuse 3.14 cannot ask
 * for.  Without it the kernel refuses MAP_SHARED of a direct_io file with
 * ENODEV.  Returns whether the kernel offered it; the caller may then
 * give up FUSE_CAP_AUTO_INVAL_DATA, which is put back into the INIT reply
 * should the reply turn out not to be editable.  Ask pt_direct_io_mmap()
 * at each open, for the same reason as pt_active().
 */
bool pt_allow_direct_io_mmap(struct fuse_conn_info *conn);
bool pt_direct_io_mmap(void);

/*
 * The kernel offered FUSE over io_uring at INIT (Linux >= 6.14 with the
 * fuse module's enable_uring on).  When uring_prepared() is true as INIT
 * is answered, the answer asks for it and uring_start() hears the result.
 */
bool pt_io_uring_offered(void);

/*
 * Register fd as a backing file with the kernel.  Returns a backing id
 * (> 0) or -errno.  The kernel does I/O on it with the daemon's
 * credentials of this call.  The fd stays owned by the caller; the kernel
 * keeps its own reference until pt_backing_close() and the last file
 * opened through the id are gone.  Errors: -EOPNOTSUPP when passthrough
 * is not active, -EPERM without the privilege, -EBADF, -ELOOP when fd is
 * on a stacked filesystem (overlayfs, another passthrough FUSE mount):
 * we declare a stacking depth of 1 so that sectionfs itself can be
 * stacked under overlayfs.
 */
int pt_backing_open(int fd);

/* Release a backing id from pt_backing_open(); ignores id <= 0. */
void pt_backing_close(int backing_id);

/*
 * Reply to OPEN or CREATE so that the kernel passes the file through to
 * backing_id.  These replace fuse_reply_open()/fuse_reply_create(); the
 * open flags in fi (keep_cache, direct_io...) are dropped, because the
 * kernel fails a passthrough open that carries any.  When passthrough is
 * not active, or backing_id <= 0, they are the plain libfuse calls with
 * fi as given: a section that could not be registered may be served on
 * the cached path, but then every open of it must be, since the kernel
 * gives EIO to an open whose io mode differs from the inode's.
 */
int pt_reply_open(fuse_req_t req, struct fuse_file_info *fi, int backing_id);
int pt_reply_create(fuse_req_t req, const struct fuse_entry_param *e,
		    struct fuse_file_info *fi, int backing_id);

#endif /* SECTIONFS_PASSTHROUGH_H */
