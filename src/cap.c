/*
 * cap.c - a section's pages counted against the mount's cap, and
 * nodes and pages against each owner's limits, sections against the
 * descriptors; a long symbolic link's page against the cap and limits.
 *
 * Owns the arithmetic of the counted store: what an allocation of a range
 * of a section would add (cachestat(2), or SEEK_DATA and the file's
 * blocks on older kernels), reserving it from the store's free bytes
 * before the allocation, and settling each section's charge against what
 * the kernel really allocated after it.  The store keeps the mount's
 * total (store_reserve, store_charge); each section keeps its own charge.
 * It never allocates, writes or resizes a section's file (section.c and
 * the data path do), and a reservation always ends in cap_settle().
 *
 * The owners' ledger: one record per uid and per gid ever charged (so
 * O(the owners root made), each a few dozen bytes), under one small
 * lock, quota.lock, never taken with the namespace's lock held (every
 * caller runs outside it) and never held across a syscall on a
 * section's file.  A section's
 * owner (sec->uid, sec->gid) and its charge move together under it.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cap.h"
#include "log.h"
#include "section.h"
#include "store.h"

/* One uid's or gid's charge. */
struct cap_owner {
	struct cap_owner *next;		/* hash chain; quota.lock */
	uint32_t id;			/* immutable */
	int64_t bytes;			/* counted pages' bytes and
					   reservations; quota.lock */
	int64_t inodes;			/* nodes: sections and every other
					   kind; quota.lock */
};

#define OWNER_BUCKETS 64

/*
 * Descriptors kept back from sections: a few dozen for what the daemon
 * opens for a moment (a caller's groups in /proc, a backing file, a
 * store, io_uring, notices), and for everybody but root as many again
 * and a sixteenth of the limit, so that one user's sections cannot stop
 * root's or the daemon's work.
 */
#define FD_RESERVE_ROOT(limit)	(24 + (limit) / 64)
#define FD_RESERVE_USER(limit)	(FD_RESERVE_ROOT(limit) + 16 + (limit) / 16)

static struct {
	pthread_mutex_t lock;
	struct quota_limits lim;	/* set by cap_init, then immutable */
	bool accounting;		/* a ledger is kept; immutable */
	bool owner_stores;		/* bytes in owners' own stores, the
					   kernel's to count; immutable */
	struct cap_owner *users[OWNER_BUCKETS];	/* quota.lock */
	struct cap_owner *groups[OWNER_BUCKETS]; /* quota.lock */
	atomic_long fds;		/* sections' descriptors */
	long fd_limit;			/* RLIMIT_NOFILE; immutable */
	atomic_long baseline;		/* the daemon's own, measured once
					   at the first create; -1 before */
} quota = { .lock = PTHREAD_MUTEX_INITIALIZER, .baseline = -1 };

/* In uint64_t: a write may end within a page of OFF_MAX, where rounding
 * up in off_t would overflow. */
static uint64_t page_down(uint64_t off)
{
	return off & ~(uint64_t)(PAGE_BYTES - 1);
}

static uint64_t page_up(uint64_t off)
{
	return page_down(off + PAGE_BYTES - 1);
}

/* cachestat(2), Linux 6.5: a file's pages in a range, without mapping it. */
struct cachestat_range { uint64_t off, len; };
struct cachestat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted,
		 nr_recently_evicted;
};
#ifndef SYS_cachestat
#define SYS_cachestat 451
#endif

/* A len of 0 means "to the end of the file". */
static int cachestat_of(int fd, uint64_t off, uint64_t len,
			struct cachestat *cs)
{
	struct cachestat_range range = { off, len };

	return syscall(SYS_cachestat, fd, &range, cs, 0) ? -errno : 0;
}

int cap_cachestat(int fd, uint64_t off, uint64_t len, uint64_t *cached,
		  uint64_t *evicted)
{
	struct cachestat cs;
	int err = cachestat_of(fd, off, len, &cs);

	if (err)
		return err;
	if (cached)
		*cached = cs.nr_cache;
	if (evicted)
		*evicted = cs.nr_evicted;
	return 0;
}

/*
 * Bytes of the pages [first, last) the store holds neither in memory nor
 * in swap: what writing them would allocate.  cachestat counts a shmem
 * file's swapped-out pages as evicted, and its fallocated pages as
 * cached.  -ENOSYS before Linux 6.5.
 */
static int64_t unheld_bytes(int fd, uint64_t first, uint64_t last)
{
	struct cachestat cs;
	uint64_t held;
	int err;

	if (last == first)
		return 0;
	err = cachestat_of(fd, first, last - first, &cs);
	if (err)
		return err;
	held = (cs.nr_cache + cs.nr_evicted) * PAGE_BYTES;
	return held < last - first ? (int64_t)(last - first - held) : 0;
}

/* Bytes of the pages [pos, end) that SEEK_DATA calls holes. */
static int64_t hole_bytes(int fd, uint64_t pos, uint64_t end)
{
	int64_t holes = 0;
	uint64_t next;
	off_t found;

	while (pos < end) {
		found = lseek(fd, (off_t)pos, SEEK_DATA);
		if (found < 0 && errno != ENXIO)
			return -errno;
		next = found < 0 || (uint64_t)found > end ? end : (uint64_t)found;
		holes += (int64_t)(next - pos);
		if (next >= end)
			break;
		found = lseek(fd, (off_t)next, SEEK_HOLE);
		if (found < 0)
			return -errno;
		pos = (uint64_t)found;
	}
	return holes;
}

/*
 * What writing [off, end) would allocate, in whole pages.  Without
 * cachestat, SEEK_DATA calls pages that were fallocated but never
 * written holes, so the estimate is bounded by what the section could
 * still allocate at all: every page up to its new end, less what it
 * holds.  That bound is only sound while no page lies past the end,
 * which such a section ensures by refusing fallocate past its end with
 * FALLOC_FL_KEEP_SIZE (cap_blind_past_end()).
 */
static int64_t bytes_to_allocate(int fd, const struct stat *st, uint64_t off,
				 uint64_t end)
{
	uint64_t first = page_down(off), last = page_up(end), held, room;
	int64_t need = unheld_bytes(fd, first, last);

	if (need != -ENOSYS)
		return need;
	need = hole_bytes(fd, first, last);
	if (need <= 0)
		return need;
	held = (uint64_t)st->st_blocks * 512;
	room = page_up(end > (uint64_t)st->st_size ? end :
		       (uint64_t)st->st_size);
	room = room > held ? room - held : 0;
	return (uint64_t)need > room ? (int64_t)room : need;
}

/* What the kernel says the store holds for the section. */
static int64_t allocated(struct section *sec)
{
	struct stat st;

	return fstat(sec->fd, &st) ? -1 : (int64_t)st.st_blocks * 512;
}

/* ---- the owners' ledger (quota.lock) ---- */

static struct cap_owner *owner_of(struct cap_owner **table, uint32_t id)
{
	struct cap_owner **b = &table[id % OWNER_BUCKETS], *o;

	for (o = *b; o; o = o->next)
		if (o->id == id)
			return o;
	o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	o->id = id;
	o->next = *b;
	*b = o;
	return o;
}

static bool over(int64_t used, int64_t more, uint64_t limit)
{
	return limit && more > 0 && (uint64_t)(used + more) > limit;
}

/* Take bytes from sec's owners' limits, all or nothing. */
static int quota_reserve(struct section *sec, int64_t need,
			 struct cap_hold *hold)
{
	struct cap_owner *u, *g;
	int err = 0;

	pthread_mutex_lock(&quota.lock);
	u = owner_of(quota.users, sec->uid);
	g = owner_of(quota.groups, sec->gid);
	if (!u || !g)
		err = -ENOMEM;
	else if (sec->uid != 0 &&	/* root's sections are never held */
		 (over(u->bytes, need, quota.lim.usr_block) ||
		  over(g->bytes, need, quota.lim.grp_block)))
		err = -EDQUOT;
	if (!err) {
		u->bytes += need;
		g->bytes += need;
		hold->quota = need;
		hold->user = u;
		hold->group = g;
	}
	pthread_mutex_unlock(&quota.lock);
	return err;
}

/* Bytes in whole pages: what sec->charged counts. */
static unsigned int pages_of(int64_t bytes)
{
	return (unsigned int)(((uint64_t)bytes + PAGE_BYTES - 1) / PAGE_BYTES);
}

void cap_settle(struct section *sec, struct cap_hold *hold)
{
	int64_t now, delta = 0;

	if (!sec->counted)
		return;
	now = allocated(sec);
	if (quota.accounting)
		pthread_mutex_lock(&quota.lock);
	if (now >= 0)
		delta = ((int64_t)pages_of(now) -
			 (int64_t)atomic_exchange(&sec->charged,
						  pages_of(now))) * PAGE_BYTES;
	if (quota.accounting) {
		struct cap_owner *u = owner_of(quota.users, sec->uid);
		struct cap_owner *g = owner_of(quota.groups, sec->gid);

		/* Records of charged owners exist: no allocation fails. */
		if (u && g) {
			u->bytes += delta;
			g->bytes += delta;
		}
		if (hold->user) {
			hold->user->bytes -= hold->quota;
			hold->group->bytes -= hold->quota;
		}
		pthread_mutex_unlock(&quota.lock);
	}
	if (store_counts())
		store_charge(delta - hold->bytes);
}

int cap_reserve(struct section *sec, off_t off, off_t len,
		struct cap_hold *hold)
{
	struct stat st;
	int64_t need;
	int err = 0;

	memset(hold, 0, sizeof(*hold));
	if (!sec->counted)
		return 0;
	if (fstat(sec->fd, &st))
		return -errno;
	need = bytes_to_allocate(sec->fd, &st, (uint64_t)off,
				 (uint64_t)off + (uint64_t)len);
	if (need <= 0)
		return (int)need;
	if (store_counts()) {
		err = store_reserve(need);
		if (!err)
			hold->bytes = need;
	}
	if (!err && quota.accounting)
		err = quota_reserve(sec, need, hold);
	if (err) {
		if (store_counts())
			store_charge(-hold->bytes);
		hold->bytes = 0;
		hold->refused = err;
	}
	return err;
}

size_t cap_write_fit(struct section *sec, off_t off, size_t len,
		     struct cap_hold *hold)
{
	size_t fit = len;
	int err;

	/* Halve (on page boundaries) until the rest fits: a short write is
	 * retried by its caller, which so fills the cap to the page. */
	while ((err = cap_reserve(sec, off, (off_t)fit, hold))) {
		size_t half = (size_t)(page_down((uint64_t)off + fit / 2) -
				       (uint64_t)off);

		if (half == 0 || half >= fit) {
			hold->refused = err;
			return 0;
		}
		fit = half;
	}
	return fit;
}

/*
 * Without a cap, whether an eager commit of [st_size, size) fits in what
 * the machine has left.  shmem would allocate page after page until the
 * kernel's OOM killer struck, and it picks by resident memory, which a
 * memfd nobody maps is not: some other process would die.  A check, not
 * an account: two commits at once may each fit alone.
 */
int cap_fits_in_memory(struct section *sec, const struct stat *st,
		       off_t size)
{
	uint64_t total, avail;
	int64_t need;

	if (sec->counted && store_counts())
		return 0;	/* cap_reserve() holds it to the cap */
	need = bytes_to_allocate(sec->fd, st, (uint64_t)st->st_size,
				 (uint64_t)size);
	if (need <= 0 || store_space(&total, &avail))
		return need < 0 ? (int)need : 0;
	return (uint64_t)need > avail ? -ENOSPC : 0;
}

/* Without cachestat, bytes_to_allocate() cannot see pages past the end. */
bool cap_blind_past_end(struct section *sec, int mode, off_t off, off_t len)
{
	struct stat st;

	if (!sec->counted || !(mode & FALLOC_FL_KEEP_SIZE) ||
	    (mode & FALLOC_FL_PUNCH_HOLE) ||
	    cap_cachestat(sec->fd, 0, PAGE_BYTES, NULL, NULL) != -ENOSYS)
		return 0;
	return !fstat(sec->fd, &st) && off + len > st.st_size;
}

void cap_uncharge(struct section *sec)
{
	int64_t bytes = sec->counted ?
		(int64_t)atomic_load(&sec->charged) * PAGE_BYTES : 0;
	struct cap_owner *u, *g;

	if (store_counts())
		store_charge(-bytes);
	atomic_fetch_sub(&quota.fds, 1);
	if (!quota.accounting)
		return;
	pthread_mutex_lock(&quota.lock);
	u = owner_of(quota.users, sec->uid);
	g = owner_of(quota.groups, sec->gid);
	if (u && g) {
		u->bytes -= bytes;
		g->bytes -= bytes;
		u->inodes--;
		g->inodes--;
	}
	pthread_mutex_unlock(&quota.lock);
}

/* ---- adoption: the ledger recomputed from what a successor holds ---- */

/* Never refused: the inode exists already, limits or not. */
static void count_forced(uid_t uid, gid_t gid)
{
	struct cap_owner *u, *g;

	if (!quota.accounting)
		return;
	pthread_mutex_lock(&quota.lock);
	u = owner_of(quota.users, uid);
	g = owner_of(quota.groups, gid);
	if (u && g) {
		u->inodes++;
		g->inodes++;
	}
	pthread_mutex_unlock(&quota.lock);
}

void cap_adopt_node(uid_t uid, gid_t gid)
{
	count_forced(uid, gid);
}

void cap_adopt(struct section *sec)
{
	struct cap_hold none = { 0 };

	atomic_fetch_add(&quota.fds, 1);
	count_forced(sec->uid, sec->gid);
	atomic_store(&sec->charged, 0);
	cap_settle(sec, &none);		/* what its store holds */
}

/* ---- limits, owners and descriptors ---- */

void cap_init(const struct quota_limits *lim, bool owner_stores)
{
	struct rlimit rl;

	quota.lim = *lim;
	quota.accounting = lim->usrquota || lim->grpquota || lim->usr_block ||
		lim->usr_inode || lim->grp_block || lim->grp_inode;
	quota.owner_stores = owner_stores;
	quota.fd_limit = getrlimit(RLIMIT_NOFILE, &rl) ? 1024 :
		rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1 << 30) ?
		(1 << 30) : (long)rl.rlim_cur;
}

bool cap_counts_bytes(void)
{
	/* With owners' stores the kernel counts each owner's bytes. */
	return store_counts() || (quota.accounting && !quota.owner_stores);
}

/* The daemon's own descriptors, counted once: /proc/self/fd less the
 * sections'.  Later ones (a store per owner) are counted by the store. */
static long fd_baseline(void)
{
	long base = atomic_load(&quota.baseline), n = 0;
	struct dirent *de;
	DIR *d;

	if (base >= 0)
		return base;
	d = opendir("/proc/self/fd");
	if (!d)
		return 16;	/* a guess; the reserves absorb it */
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	/* Less the directory's own descriptor. */
	n = n - 1 - atomic_load(&quota.fds) - (long)store_fds();
	if (n < 0)
		n = 0;
	atomic_compare_exchange_strong(&quota.baseline, &base, n);
	return atomic_load(&quota.baseline);
}

/* Descriptors sections may still take before uid's reserve. */
static long fds_left(uid_t uid)
{
	long limit = quota.fd_limit, reserve = uid == 0 ?
		FD_RESERVE_ROOT(limit) : FD_RESERVE_USER(limit);
	long left = limit - reserve - fd_baseline() - (long)store_fds() -
		atomic_load(&quota.fds);

	return left > 0 ? left : 0;
}

static int64_t left_under(int64_t used, uint64_t limit)
{
	if (!limit)
		return INT64_MAX;
	return used < (int64_t)limit ? (int64_t)limit - used : 0;
}

int cap_node_count(uid_t uid, gid_t gid)
{
	struct cap_owner *u, *g;
	int err = 0;

	if (!quota.accounting)
		return 0;
	pthread_mutex_lock(&quota.lock);
	u = owner_of(quota.users, uid);
	g = owner_of(quota.groups, gid);
	if (!u || !g)
		err = -ENOMEM;
	else if (uid != 0 &&
		 (left_under(u->inodes, quota.lim.usr_inode) < 1 ||
		  left_under(g->inodes, quota.lim.grp_inode) < 1))
		err = -EDQUOT;
	if (!err) {
		u->inodes++;
		g->inodes++;
	}
	pthread_mutex_unlock(&quota.lock);
	return err;
}

void cap_node_uncount(uid_t uid, gid_t gid)
{
	struct cap_owner *u, *g;

	if (!quota.accounting)
		return;
	pthread_mutex_lock(&quota.lock);
	u = owner_of(quota.users, uid);
	g = owner_of(quota.groups, gid);
	if (u && g) {
		u->inodes--;
		g->inodes--;
	}
	pthread_mutex_unlock(&quota.lock);
}

/* tmpfs's SHORT_SYMLINK_LEN: a target this long, NUL included, is
 * kept beside the inode, a longer one in a page. */
#define TARGET_INLINE	128

int64_t cap_target_bytes(size_t len)
{
	return len + 1 > TARGET_INLINE ? PAGE_BYTES : 0;
}

/* Under quota.lock: bytes (negative: given back) to uid's and gid's
 * records, refused past a limit unless force or uid is root. */
static int owners_bytes(uid_t uid, gid_t gid, int64_t bytes, bool force)
{
	struct cap_owner *u = owner_of(quota.users, uid);
	struct cap_owner *g = owner_of(quota.groups, gid);

	if (!u || !g)
		return -ENOMEM;
	if (!force && uid != 0 &&
	    (over(u->bytes, bytes, quota.lim.usr_block) ||
	     over(g->bytes, bytes, quota.lim.grp_block)))
		return -EDQUOT;
	u->bytes += bytes;
	g->bytes += bytes;
	return 0;
}

int cap_target_count(uid_t uid, gid_t gid, size_t len, bool force)
{
	int64_t bytes = cap_target_bytes(len);
	int err;

	if (!bytes)
		return 0;
	err = store_take(bytes, force);
	if (err || !quota.accounting)
		return err;
	pthread_mutex_lock(&quota.lock);
	err = owners_bytes(uid, gid, bytes, force);
	pthread_mutex_unlock(&quota.lock);
	if (err)
		store_give(bytes);
	return err;
}

void cap_target_uncount(uid_t uid, gid_t gid, size_t len)
{
	int64_t bytes = cap_target_bytes(len);

	if (!bytes)
		return;
	store_give(bytes);
	if (!quota.accounting)
		return;
	pthread_mutex_lock(&quota.lock);
	owners_bytes(uid, gid, -bytes, true);
	pthread_mutex_unlock(&quota.lock);
}

int cap_count(uid_t uid, gid_t gid)
{
	int err;

	/* Two creates at once may both take the last one: the reserve has
	 * room for such a race, never for a user's thousands. */
	if (fds_left(uid) < 1) {
		log_warn("cannot create a section for uid %u: the daemon's file descriptors are running out (the rest are kept for %s)",
			 (unsigned int)uid, uid ? "root and the daemon" :
			 "the daemon");
		return -ENOSPC;
	}
	err = cap_node_count(uid, gid);
	if (!err)
		atomic_fetch_add(&quota.fds, 1);
	return err;
}

void cap_uncount(uid_t uid, gid_t gid)
{
	atomic_fetch_sub(&quota.fds, 1);
	cap_node_uncount(uid, gid);
}

/* Whether an inode and bytes may move from one owner record to another:
 * 1 if they move, 0 if the records are one, -EDQUOT. */
static int owner_move(struct cap_owner *from, struct cap_owner *to,
		      int64_t bytes, uint64_t block, uint64_t inode, bool root)
{
	if (from == to)
		return 0;
	if (!root && (over(to->bytes, bytes, block) ||
		      left_under(to->inodes, inode) < 1))
		return -EDQUOT;
	return 1;
}

/*
 * Under quota.lock: move an inode and bytes from the owners (ouid, ogid)
 * to (uid, gid), (uid_t)-1 and (gid_t)-1 leaving one unchanged, and say
 * which records now hold them in *nu and *ng.  -EDQUOT with nothing
 * moved when they do not fit and by is not root.
 */
static int owners_move(uid_t ouid, gid_t ogid, uid_t uid, gid_t gid,
		       int64_t bytes, uid_t by, struct cap_owner **nu,
		       struct cap_owner **ng)
{
	struct cap_owner *ou, *og;
	int mu, mg;

	ou = owner_of(quota.users, ouid);
	og = owner_of(quota.groups, ogid);
	*nu = owner_of(quota.users, uid == (uid_t)-1 ? ouid : uid);
	*ng = owner_of(quota.groups, gid == (gid_t)-1 ? ogid : gid);
	if (!ou || !og || !*nu || !*ng)
		return -ENOMEM;
	/* As disk quotas: a transfer past a limit is refused, but not
	 * to root, who may give anyone anything. */
	mu = owner_move(ou, *nu, bytes, quota.lim.usr_block,
			quota.lim.usr_inode, by == 0);
	mg = owner_move(og, *ng, bytes, quota.lim.grp_block,
			quota.lim.grp_inode, by == 0);
	if (mu < 0 || mg < 0)
		return -EDQUOT;
	if (mu) {
		ou->bytes -= bytes, ou->inodes--;
		(*nu)->bytes += bytes, (*nu)->inodes++;
	}
	if (mg) {
		og->bytes -= bytes, og->inodes--;
		(*ng)->bytes += bytes, (*ng)->inodes++;
	}
	return 0;
}

int cap_node_chown(uid_t ouid, gid_t ogid, uid_t uid, gid_t gid,
		   int64_t bytes, uid_t by)
{
	struct cap_owner *nu, *ng;
	int err;

	if (!quota.accounting)
		return 0;
	pthread_mutex_lock(&quota.lock);
	err = owners_move(ouid, ogid, uid, gid, bytes, by, &nu, &ng);
	pthread_mutex_unlock(&quota.lock);
	return err;
}

int cap_chown(struct section *sec, uid_t uid, gid_t gid, uid_t by)
{
	struct cap_owner *nu, *ng;
	int64_t bytes;
	int err;

	if (!quota.accounting)
		goto set;
	pthread_mutex_lock(&quota.lock);
	bytes = sec->counted ?
		(int64_t)atomic_load(&sec->charged) * PAGE_BYTES : 0;
	err = owners_move(sec->uid, sec->gid, uid, gid, bytes, by, &nu, &ng);
	if (!err) {
		sec->uid = nu->id;
		sec->gid = ng->id;
	}
	pthread_mutex_unlock(&quota.lock);
	return err;
set:
	/* No ledger: the owner is only what a later cap_init would need. */
	if (uid != (uid_t)-1)
		sec->uid = uid;
	if (gid != (gid_t)-1)
		sec->gid = gid;
	return 0;
}

int cap_errno(struct section *sec, int err)
{
	if (err == -ENOSPC && quota.owner_stores &&
	    sec->kind == SECTION_PAGEFILE && sec->uid != 0)
		return -EDQUOT;
	return err;
}

uint64_t cap_sections_left(uid_t uid, gid_t gid)
{
	int64_t left = fds_left(uid);
	struct cap_owner *u, *g;

	if (!quota.accounting || uid == 0)
		return (uint64_t)left;
	pthread_mutex_lock(&quota.lock);
	u = owner_of(quota.users, uid);
	g = owner_of(quota.groups, gid);
	if (u && left_under(u->inodes, quota.lim.usr_inode) < left)
		left = left_under(u->inodes, quota.lim.usr_inode);
	if (g && left_under(g->inodes, quota.lim.grp_inode) < left)
		left = left_under(g->inodes, quota.lim.grp_inode);
	pthread_mutex_unlock(&quota.lock);
	return (uint64_t)left;
}

/* "-" for an unknown or unlimited figure. */
static void figure(char *buf, size_t size, bool known, uint64_t v)
{
	if (known)
		snprintf(buf, size, "%" PRIu64, v);
	else
		snprintf(buf, size, "-");
}

/* One report line for o, or none for an owner with no charge. */
static void report_line(FILE *f, char kind, const struct cap_owner *o)
{
	uint64_t block = kind == 'u' ? quota.lim.usr_block : quota.lim.grp_block;
	uint64_t inode = kind == 'u' ? quota.lim.usr_inode : quota.lim.grp_inode;
	uint64_t held = o->bytes > 0 ? (uint64_t)o->bytes : 0;
	char bytes[24], blim[24], ilim[24];
	bool known = true;

	/* Owners' stores: the kernel knows each user's sections' bytes,
	 * the ledger only their symbolic links' pages, and nobody a
	 * group's sections'. */
	if (quota.owner_stores && kind == 'u') {
		uint64_t stored = 0;
		int err = store_owner_used(o->id, &stored);

		known = !err || err == -ENOENT;	/* no store: no section */
		held += stored;
	} else if (!cap_counts_bytes()) {
		known = false;
	}
	if (!o->inodes && (!known || !held))
		return;
	figure(bytes, sizeof(bytes), known, held);
	figure(blim, sizeof(blim), block, block);
	figure(ilim, sizeof(ilim), inode, inode);
	fprintf(f, "%c %" PRIu32 " %s %" PRId64 " %s %s\n", kind, o->id, bytes,
		o->inodes, blim, ilim);
}

ssize_t cap_report(uid_t uid, gid_t gid, char *buf, size_t size)
{
	char *text = NULL;
	size_t len = 0;
	ssize_t res;
	FILE *f;
	int i;

	if (!quota.accounting)
		return -ENODATA;
	f = open_memstream(&text, &len);
	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&quota.lock);
	for (i = 0; i < OWNER_BUCKETS; i++)
		for (struct cap_owner *o = quota.users[i]; o; o = o->next)
			if (uid == 0 || o->id == uid)
				report_line(f, 'u', o);
	for (i = 0; i < OWNER_BUCKETS; i++)
		for (struct cap_owner *o = quota.groups[i]; o; o = o->next)
			if (uid == 0 || o->id == gid)
				report_line(f, 'g', o);
	pthread_mutex_unlock(&quota.lock);
	if (fclose(f)) {
		free(text);
		return -ENOMEM;
	}
	res = (ssize_t)len;
	if (size && len > size)
		res = -ERANGE;
	else if (size)
		memcpy(buf, text, len);
	free(text);
	return res;
}
