/*
 * datapath.h - how the kernel reaches a section's bytes.
 *
 * Two paths, chosen once per mount (passthrough.h explains why, and
 * modes->passthrough says which):
 * passthrough, where the kernel reads, writes and maps the section's file
 * itself and the daemon only answers OPEN; and cached, where the FUSE
 * inode's page cache sits in front of the section and misses come to the
 * daemon as READ and WRITE requests.  The request layer calls these and
 * does not care which path is in use.
 */
#ifndef SECTIONFS_DATAPATH_H
#define SECTIONFS_DATAPATH_H

#include <stdbool.h>
#include <sys/types.h>

#include <fuse_lowlevel.h>

#include "modes.h"
#include "section.h"

/*
 * From init() of a mount that will not use passthrough: settle how the
 * kernel's page cache is kept coherent with sections (datapath.c), given
 * whether files opened direct_io may be mapped shared.
 */
void dp_negotiate_cached(struct fuse_conn_info *conn, bool direct_io_mmap);

/* On such a mount, ask for the kernel's writeback cache (-o
 * writeback_cache); false, with a warning, where the kernel cannot give
 * what it needs (Linux before 6.6: no direct_io_mmap). */
bool dp_want_writeback(struct fuse_conn_info *conn, bool direct_io_mmap);

/*
 * Make ready to open sec: set the cached path's open flags in fi, or
 * with passthrough get the section's backing id.  Returns the id to
 * pass to dp_reply_open / dp_reply_create (0 on the cached path) or
 * -errno; it never replies, so the caller answers every request once.
 */
int dp_open_prepare(const struct sfs_modes *modes, struct section *sec,
		    struct fuse_file_info *fi);

/*
 * Reply to OPEN / CREATE (fi->fh already set) with what dp_open_prepare
 * gave.  Returns 0, or the -errno of a failed reply (-ENOENT: the opener
 * was interrupted and the handle will never be released).  Either way
 * req is gone once these return.
 */
int dp_reply_open(fuse_req_t req, struct fuse_file_info *fi, int id);
int dp_reply_create(fuse_req_t req, const struct fuse_entry_param *e,
		    struct fuse_file_info *fi, int id);

/*
 * Serve READ on the cached path (replies to req).
 */
void dp_read(fuse_req_t req, struct section *sec, size_t size, off_t off);

/*
 * Write a WRITE request's data into sec at off; returns the bytes
 * written or -errno (the caller replies).  A write that does not fit
 * under the cap is cut short, keeping what fit; a writeback of the page
 * cache (writeback set) is written whole or refused with -ENOSPC.  The
 * pages a write by pid adds to a page-file section are charged to pid's
 * memory cgroup (charge.h); -ENOMEM, nothing written, when that cgroup
 * is full.
 */
ssize_t dp_write(struct section *sec, struct fuse_bufvec *in, off_t off,
		 pid_t pid, int writeback);

/*
 * Whether a write(2) on an open with open_flags goes to the section's end
 * rather than to the offset the kernel gave: O_APPEND on a file-backed
 * section opened direct_io, whose backing file another writer may have
 * grown since the kernel last learned its size.
 */
bool dp_appends(const struct sfs_modes *modes, struct section *sec,
		int open_flags);

/*
 * Such a write, in steps, so that the caller can record where it went
 * (an append is not the same done twice): dp_write_data() takes the
 * request's data into *data, malloc'ed, and returns its length (or
 * -errno, the data dropped); dp_file_end() gives where the file ends
 * now (or -errno); dp_append() writes the bytes at the end as it is
 * then, as O_APPEND does, and returns the count or -errno; dp_held()
 * says how many of the bytes, from the first, the file has at off.
 */
ssize_t dp_write_data(struct fuse_bufvec *in, void **data);
/*
 * Appends to one backing file, one at a time, whichever section names
 * it: dp_append_lock() waits for the others (0, or -errno), and
 * dp_append_unlock() lets the next in.  The kernel sends the pieces of
 * one large direct write together, and other sections may name the
 * file: between where the file ends and the write there, none lands.
 * A successor, before it serves, reserves each file a dead server was
 * part way through appending to (dp_append_reserve()) for that append,
 * unique its request's id without the resend bit: until it comes again
 * (a few seconds at most), no other is let in, so that its rest lands
 * right after the part written.
 */
struct dp_append_lock;
int dp_append_lock(struct section *sec, uint64_t unique,
		   struct dp_append_lock **out);
void dp_append_reserve(int fd, uint64_t unique);
void dp_append_unlock(struct dp_append_lock *l);
off_t dp_file_end(struct section *sec);
ssize_t dp_append(struct section *sec, const void *data, size_t len);
ssize_t dp_held(struct section *sec, const void *data, size_t len,
		off_t off);

/*
 * Whether sec's opens bypass the kernel's page cache (a file-backed
 * section on the cached path).  The kernel drops the cached pages of a
 * direct write's range before it sends the WRITE; a view that faults
 * them back in meanwhile reads the old bytes, so the caller must drop
 * them again once the write is done.
 */
bool dp_direct_io(const struct sfs_modes *modes, struct section *sec);

/*
 * SEEK_DATA and SEEK_HOLE in sec: the offset, or -errno.  -ENOSYS under
 * the writeback cache, which has the kernel answer itself from then on.
 */
off_t dp_seek(const struct sfs_modes *modes, struct section *sec, off_t off,
	      int whence);

#endif /* SECTIONFS_DATAPATH_H */
