/*
 * datapath.c - the passthrough and cached data paths.
 *
 * Owns the open flags each path needs and the READ/WRITE service of the
 * cached path.  Reads reply with an fd buffer so that libfuse splices the
 * store's pages to the kernel without a copy through the daemon; writes
 * go from the request buffer (requests are read, never spliced:
 * connection.c) straight into the store, into pages first allocated in the writer's memory cgroup
 * (charge.h).  It knows nothing of names.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "charge.h"
#include "datapath.h"
#include "log.h"
#include "passthrough.h"

/*
 * How the cached path keeps the kernel's page cache true to the section.
 *
 * A page-file-backed section changes only through the kernel (read,
 * write, views, truncate, fallocate all pass through it), so its pages
 * stay valid: kept from one open to the next (keep_cache), and not
 * dropped when its mtime moves.  auto_inval_data would drop them: every
 * write-through write moves the store's mtime, and at the next stat the
 * kernel finds an mtime other than the one it had cached and drops every
 * page of the file, those it has just written included.
 *
 * A file-backed section can change under us, in the backing file.  Its
 * read(2) and write(2) go straight to the daemon (direct_io), so they see
 * the backing file at once.  What still passes through the page cache
 * (views, splice and sendfile) the kernel drops at each open and mmap of
 * the section, and when its size changes.  Shared views of a direct_io
 * file need DIRECT_IO_ALLOW_MMAP (Linux 6.6); without it file-backed
 * sections use the page cache too and the mount keeps auto_inval_data,
 * so that a backing file's changes are seen within the attribute timeout.
 */
void dp_negotiate_cached(struct fuse_conn_info *conn, bool direct_io_mmap)
{
	if (direct_io_mmap)
		conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
}

/*
 * The writeback cache (-o writeback_cache): write(2) fills the kernel's
 * page cache and returns; the kernel writes the dirty pages to the daemon
 * later, in large requests, and at the latest at close and fsync.  The
 * kernel then keeps each file's size and times itself and ignores the
 * daemon's, which is right for page-file-backed sections (they change
 * only through the kernel) but not for a backing file that changes
 * outside the mount: such a mount makes no file-backed sections
 * (ns_symlink).
 */
bool dp_want_writeback(struct fuse_conn_info *conn, bool direct_io_mmap)
{
	/* A grow-sealed section's writes must bypass the cache, and views
	 * of such an open need DIRECT_IO_ALLOW_MMAP (dp_direct_io()). */
	if (!(conn->capable & FUSE_CAP_WRITEBACK_CACHE) ||
	    !direct_io_mmap) {
		log_warn("writeback_cache needs Linux 6.6 or later; writes go through to sectionfs");
		return false;
	}
	conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	return true;
}

static void cached_flags(const struct sfs_modes *modes, struct section *sec,
			 struct fuse_file_info *fi)
{
	fi->keep_cache = sec->kind == SECTION_PAGEFILE;
	fi->direct_io = dp_direct_io(modes, sec);
}

int dp_open_prepare(const struct sfs_modes *modes, struct section *sec,
		    struct fuse_file_info *fi)
{
	if (!modes->passthrough) {
		cached_flags(modes, sec, fi);
		return 0;
	}
	/* Passthrough: the reply names the section's one backing id. */
	return section_backing_id(sec);
}

int dp_reply_open(fuse_req_t req, struct fuse_file_info *fi, int id)
{
	return id > 0 ? pt_reply_open(req, fi, id) : fuse_reply_open(req, fi);
}

int dp_reply_create(fuse_req_t req, const struct fuse_entry_param *e,
		    struct fuse_file_info *fi, int id)
{
	return id > 0 ? pt_reply_create(req, e, fi, id) :
			fuse_reply_create(req, e, fi);
}

/* A one-buffer vector naming size bytes of the section's file at off. */
static struct fuse_bufvec file_buf(struct section *sec, size_t size, off_t off)
{
	return (struct fuse_bufvec){
		.count = 1,
		.buf = { {
			.size = size,
			.flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK,
			.fd = sec->fd,
			.pos = off,
		} },
	};
}

void dp_read(fuse_req_t req, struct section *sec, size_t size, off_t off)
{
	struct fuse_bufvec buf = file_buf(sec, size, off);

	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

/*
 * Consume what is left of a request's data after a short write.  Were
 * requests spliced (connection.c never asks for it), the data would sit
 * in the thread's pipe, which libfuse reuses for the next request: bytes
 * left there would be read as that request.
 */
static void drain(struct fuse_bufvec *in, size_t left)
{
	char scratch[65536];

	while (left > 0) {
		struct fuse_bufvec sink = {
			.count = 1,
			.buf = { { .size = left < sizeof(scratch) ?
					   left : sizeof(scratch),
				   .mem = scratch } },
		};
		ssize_t n = fuse_buf_copy(&sink, in, FUSE_BUF_NO_SPLICE);

		if (n <= 0)
			break;
		left -= (size_t)n;
	}
}

/*
 * The copies into the section's file, run by section_io(): a file-backed
 * section's as its creator, so that the write is theirs to the kernel.
 */
struct copy_args {
	struct fuse_bufvec *out, *in;	/* dp_write's */
	int fd;				/* dp_append's */
	struct iovec iov;
	ssize_t res;
};

static int copy_in(void *arg)
{
	struct copy_args *a = arg;

	a->res = fuse_buf_copy(a->out, a->in, 0);
	return a->res < 0 ? (int)a->res : 0;
}

static int append_in(void *arg)
{
	struct copy_args *a = arg;

	a->res = pwritev2(a->fd, &a->iov, 1, 0, RWF_APPEND);
	if (a->res < 0)
		a->res = -errno;
	return a->res < 0 ? (int)a->res : 0;
}

/*
 * The files being appended to, each with a lock that lets one append at
 * a time in (dp_append_lock()): keyed by the backing file, not the
 * section, since two sections may name one file, and so that a write
 * stuck in one file holds up only appends to that file, which the
 * file's own inode lock would hold up anyway.  Few at once: a list.
 */
struct dp_append_lock {
	dev_t dev;
	ino_t ino;
	unsigned int users;		/* appends_lock */
	pthread_mutex_t lock;
	pthread_cond_t turn;		/* reserved went */
	uint64_t reserved;		/* lock: the unique of the append a
					   dead server was part way through,
					   the only one let in until it comes
					   again */
	struct dp_append_lock *next;	/* appends_lock */
};

/* How long the others wait for an append a dead server left. */
#define RESERVED_WAIT	5

static pthread_mutex_t appends_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dp_append_lock *appends;

static struct dp_append_lock *append_lock_get(int fd)
{
	struct dp_append_lock *l;
	struct stat st;

	if (fstat(fd, &st))
		return NULL;
	pthread_mutex_lock(&appends_lock);
	for (l = appends; l && (l->dev != st.st_dev || l->ino != st.st_ino);
	     l = l->next)
		;
	if (!l && (l = calloc(1, sizeof(*l)))) {
		l->dev = st.st_dev;
		l->ino = st.st_ino;
		pthread_mutex_init(&l->lock, NULL);
		pthread_cond_init(&l->turn, NULL);
		l->next = appends;
		appends = l;
	}
	if (l)
		l->users++;
	pthread_mutex_unlock(&appends_lock);
	return l;
}

static void append_lock_put(struct dp_append_lock *l)
{
	struct dp_append_lock **p;

	pthread_mutex_lock(&appends_lock);
	if (--l->users == 0) {
		for (p = &appends; *p != l; p = &(*p)->next)
			;
		*p = l->next;
		pthread_cond_destroy(&l->turn);
		pthread_mutex_destroy(&l->lock);
		free(l);
	}
	pthread_mutex_unlock(&appends_lock);
}

void dp_append_reserve(int fd, uint64_t unique)
{
	struct dp_append_lock *l = append_lock_get(fd);

	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	if (l->reserved) {		/* one per file can be left */
		pthread_mutex_unlock(&l->lock);
		append_lock_put(l);
		return;
	}
	l->reserved = unique;		/* holds l until it goes */
	pthread_mutex_unlock(&l->lock);
}

/* Under l->lock: the reservation goes, and the others may come in. */
static void unreserve(struct dp_append_lock *l)
{
	l->reserved = 0;
	pthread_cond_broadcast(&l->turn);
	append_lock_put(l);		/* still held by the caller */
}

int dp_append_lock(struct section *sec, uint64_t unique,
		   struct dp_append_lock **out)
{
	struct dp_append_lock *l = append_lock_get(sec->fd);
	struct timespec until;

	if (!l)
		return errno ? -errno : -ENOMEM;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += RESERVED_WAIT;
	pthread_mutex_lock(&l->lock);
	while (l->reserved && l->reserved != unique) {
		if (pthread_cond_timedwait(&l->turn, &l->lock, &until) ==
		    ETIMEDOUT && l->reserved && l->reserved != unique) {
			log_warn("an append a dead server left was not sent again within %d s: the others go on",
				 RESERVED_WAIT);
			unreserve(l);
		}
	}
	if (l->reserved)
		unreserve(l);
	*out = l;
	return 0;
}

void dp_append_unlock(struct dp_append_lock *l)
{
	pthread_mutex_unlock(&l->lock);
	append_lock_put(l);
}

ssize_t dp_write_data(struct fuse_bufvec *in, void **data)
{
	size_t total = fuse_buf_size(in);
	struct fuse_bufvec mem = FUSE_BUFVEC_INIT(total);
	ssize_t got;

	*data = mem.buf[0].mem = malloc(total ? total : 1);
	if (!*data) {
		drain(in, total);
		return -ENOMEM;
	}
	got = fuse_buf_copy(&mem, in, FUSE_BUF_NO_SPLICE);
	drain(in, total - (got > 0 ? (size_t)got : 0));
	if (got < 0) {
		free(*data);
		*data = NULL;
	}
	return got;
}

/*
 * RWF_APPEND writes at the file's end as it is at that moment, as
 * O_APPEND does, without changing the fd every handle shares.
 */
ssize_t dp_append(struct section *sec, const void *data, size_t len)
{
	struct copy_args a = {
		.fd = sec->fd,
		.iov = { (void *)data, len },
	};
	int err = len ? section_io(sec, append_in, &a) : 0;

	return err ? err : a.res;
}

off_t dp_file_end(struct section *sec)
{
	struct stat st;

	return fstat(sec->fd, &st) ? -errno : st.st_size;
}

ssize_t dp_held(struct section *sec, const void *data, size_t len,
		off_t off)
{
	char buf[65536];
	size_t done = 0;

	while (done < len) {
		size_t want = len - done < sizeof(buf) ? len - done :
							   sizeof(buf);
		ssize_t got = pread(sec->fd, buf, want, off + (off_t)done);
		size_t same = 0;

		if (got < 0)
			return -errno;
		while (same < (size_t)got &&
		       buf[same] == ((const char *)data)[done + same])
			same++;
		done += same;
		if (same < want)
			break;
	}
	return (ssize_t)done;
}

bool dp_appends(const struct sfs_modes *modes, struct section *sec,
		int open_flags)
{
	return (open_flags & O_APPEND) && sec->kind == SECTION_FILE &&
	       dp_direct_io(modes, sec);
}

/*
 * Have the pages a write will fill allocated as its caller (charge.h),
 * so that the caller's memory cgroup pays for them, as on tmpfs.  Not
 * under a write seal, nor past a grow seal: the store refuses that write,
 * and pages allocated for it would stay past the end.
 */
static int charge_write(struct section *sec, pid_t pid, off_t off,
			size_t len)
{
	unsigned int seals = atomic_load(&sec->seals);
	struct stat st;

	if (sec->kind != SECTION_PAGEFILE || (seals & F_SEAL_WRITE))
		return 0;
	if (seals & F_SEAL_GROW) {
		if (fstat(sec->fd, &st))
			return -errno;
		if (off >= st.st_size)
			return 0;
		if ((off_t)len > st.st_size - off)
			len = (size_t)(st.st_size - off);
	}
	return charge_populate(pid, sec->fd, off, (off_t)len);
}

ssize_t dp_write(struct section *sec, struct fuse_bufvec *in, off_t off,
		 pid_t pid, int writeback)
{
	size_t total = fuse_buf_size(in);
	struct cap_hold hold;
	size_t len;
	int err = 0;

	len = section_write_fit(sec, off, total, &hold);

	/* The kernel's writeback ignores a short count, and the pages it
	 * did not fit would be dropped without a word: all or nothing, so
	 * that msync and fsync report ENOSPC. */
	if (writeback && len < total)
		len = 0;
	/* A writeback comes from the kernel, not from its writer (pid 0):
	 * the daemon pays for its pages. */
	if (len && !writeback)
		err = charge_write(sec, pid, off, len);
	struct fuse_bufvec out = file_buf(sec, len, off);
	struct copy_args a = { .out = &out, .in = in,
			       .res = hold.refused ? hold.refused : -ENOSPC };

	if (len && !err)
		err = section_io(sec, copy_in, &a);
	ssize_t res = err ? err : a.res;

	section_settle(sec, &hold);
	drain(in, total - (res > 0 ? (size_t)res : 0));
	/* A writeback the store took only in part (out of memory, a seal)
	 * would be taken as whole: an error, which fsync and close report,
	 * and the caller drops the range from the page cache. */
	if (writeback && res >= 0 && (size_t)res < total)
		return -EIO;
	/* A short count (the cap part way) is reported as such: what fit
	 * stays, and the writer learns ENOSPC when it retries the rest. */
	return res;
}

/*
 * Which opens bypass the page cache: a file-backed section's, which can
 * change underneath, and under the writeback cache a grow-sealed
 * section's, since only the store can refuse a write past its end.
 * modes->direct_io_mmap is only ever true on a cached mount.
 */
bool dp_direct_io(const struct sfs_modes *modes, struct section *sec)
{
	if (!modes->direct_io_mmap)
		return false;
	if (sec->kind == SECTION_FILE)
		return true;
	return modes->writeback &&
	       (atomic_load(&sec->seals) & F_SEAL_GROW);
}

off_t dp_seek(const struct sfs_modes *modes, struct section *sec, off_t off,
	      int whence)
{
	/*
	 * Ask the store where its data is.  Under the writeback cache the
	 * store may not have the newest writes yet, and the kernel does not
	 * write them back first: ENOSYS has it answer itself from then on,
	 * the whole file being data.
	 */
	if (modes->writeback)
		return -ENOSYS;
	return section_seek(sec, off, whence);
}
