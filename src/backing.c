/*
 * backing.c - resolve and open backing files with a caller's rights.
 *
 * Owns the credential switch (raw setfsuid/setfsgid/setgroups syscalls,
 * which act on the calling thread only, unlike their glibc wrappers that
 * change every thread; with privilege.c's capset, the same without the
 * daemon's capabilities) and the component-by-component path walk,
 * which never sends a request to a FUSE filesystem.  It knows nothing
 * of sections or names.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "backing.h"
#include "privilege.h"

#define MAX_SYMLINKS	40	/* as the kernel's path walk */
/*
 * Components one walk steps through, over every link it follows.  The
 * kernel's own walk is bounded only by its 40 links of PATH_MAX each,
 * but its steps cost nanoseconds; ours cost a few syscalls each, and the
 * kernel holds the directory the symlink goes in for the whole walk.
 */
#define MAX_STEPS	4096
/* Mounts whose verdict one walk remembers. */
#define KNOWN_MOUNTS	16

struct saved_creds {
	uid_t fsuid;
	gid_t fsgid;
	int ngroups;
	gid_t *groups;
};

static long sys_setfsuid(uid_t uid) { return syscall(SYS_setfsuid, uid); }
static long sys_setfsgid(gid_t gid) { return syscall(SYS_setfsgid, gid); }

static void restore_creds(struct saved_creds *s)
{
	if (s->ngroups >= 0)
		syscall(SYS_setgroups, s->ngroups, s->groups);
	sys_setfsuid(s->fsuid);
	sys_setfsgid(s->fsgid);
	free(s->groups);
}

/*
 * Take on the caller's fs credentials.  An unprivileged daemon cannot; it
 * may still act for its own user, whose rights it already has.
 */
static int become(const struct caller *who, struct saved_creds *s)
{
	s->fsuid = (uid_t)sys_setfsuid((uid_t)-1);
	s->fsgid = (gid_t)sys_setfsgid((gid_t)-1);
	s->ngroups = -1;
	s->groups = NULL;
	if (geteuid() != 0)
		return who->uid == geteuid() ? 0 : -EPERM;

	if (who->ngroups >= 0) {
		int n = getgroups(0, NULL);

		s->groups = calloc(n > 0 ? n : 1, sizeof(gid_t));
		if (!s->groups)
			return -ENOMEM;
		s->ngroups = getgroups(n, s->groups);
		if (syscall(SYS_setgroups, who->ngroups, who->groups)) {
			int err = -errno;

			s->ngroups = -1;
			restore_creds(s);
			return err;
		}
	}
	sys_setfsgid(who->gid);
	sys_setfsuid(who->uid);
	/* setfs*id report failure only by not changing: check. */
	if ((uid_t)sys_setfsuid((uid_t)-1) != who->uid ||
	    (gid_t)sys_setfsgid((gid_t)-1) != who->gid) {
		restore_creds(s);
		return -EPERM;
	}
	return 0;
}

int as_caller(const struct caller *who, int (*fn)(void *), void *arg)
{
	struct saved_creds s;
	int err = become(who, &s);

	if (err)
		return err;
	err = fn(arg);
	restore_creds(&s);
	return err;
}

/*
 * Order matters: the switch needs CAP_SETUID and CAP_SETGID, so the
 * capabilities go after it and come back before it is undone.
 */
int as_creator(const struct caller *who, int keep, int (*fn)(void *),
	       void *arg)
{
	struct privilege_saved caps;
	struct saved_creds s;
	int err = become(who, &s);

	if (err)
		return err;
	err = privilege_lower(keep, &caps);
	if (!err) {
		err = fn(arg);
		privilege_restore(&caps);
	}
	restore_creds(&s);
	privilege_settle(&caps);
	return err;
}

/*
 * Where an O_PATH fd is: its device and mount.  A statx that asks for
 * nothing and must not sync is answered by the VFS and a FUSE inode's
 * cached attributes, never with a request to a FUSE daemon (not even
 * when the mount would refuse the caller: it then says EACCES only to a
 * statx that asks for something).  The VFS fills the mount id whatever
 * was asked (Linux 5.8 and later).
 */
struct place {
	dev_t dev;
	uint64_t mnt_id;
	bool has_mnt_id;
};

static int fd_place(int fd, struct place *at)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, 0, &stx))
		return -errno;
	at->dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	at->has_mnt_id = stx.stx_mask & STATX_MNT_ID;
	at->mnt_id = at->has_mnt_id ? stx.stx_mnt_id : 0;
	return 0;
}

/* Whether a step from one place to the other crosses into another mount. */
static bool crosses(const struct place *from, const struct place *to)
{
	if (from->has_mnt_id && to->has_mnt_id)
		return from->mnt_id != to->mnt_id;
	return from->dev != to->dev;
}

/* fuse, fuseblk and fuse.NAME: every filesystem served by a FUSE daemon. */
static bool fuse_type(const char *type, size_t len)
{
	return (len == 4 && !strncmp(type, "fuse", 4)) ||
	       (len == 7 && !strncmp(type, "fuseblk", 7)) ||
	       (len > 5 && !strncmp(type, "fuse.", 5));
}

/*
 * Refuse a mount served by a FUSE daemon: EINVAL.  The daemon's own
 * /proc/self/mountinfo names each mount's type without asking the
 * filesystem (statfs would send it a STATFS).  A mount it does not list
 * (one made and gone meanwhile) is refused too: better than a guess.
 */
static int refuse_fuse(const struct place *at)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int err = -EINVAL;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		unsigned long long id;
		unsigned int major, minor;
		char *type;

		if (sscanf(line, "%llu %*u %u:%u", &id, &major, &minor) != 3)
			continue;
		if (at->has_mnt_id ? id != at->mnt_id :
				     makedev(major, minor) != at->dev)
			continue;
		/* Paths in mountinfo escape blanks: " - " is the separator. */
		type = strstr(line, " - ");
		if (!type)
			continue;
		type += 3;
		err = fuse_type(type, strcspn(type, " ")) ? -EINVAL : 0;
		break;
	}
	free(line);
	fclose(f);
	return err;
}

/* The type of what fd names; only ever asked of a file not on FUSE. */
static int fd_mode(int fd, mode_t *mode)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC,
		  STATX_TYPE, &stx))
		return -errno;
	*mode = stx.stx_mode;
	return 0;
}

/* A mount a walk has crossed into, and what refuse_fuse() said of it. */
struct known_mount {
	struct place at;
	int verdict;
};

struct walk {
	char rest[2 * PATH_MAX];	/* what is left to resolve */
	char done[PATH_MAX];		/* canonical path so far */
	size_t done_len;
	int links;
	int steps;			/* components stepped through */
	struct known_mount known[KNOWN_MOUNTS];
	int nknown;			/* entries of known used */
	struct place root;		/* where "/" is */
	struct place here;		/* where the directory walked is */
};

/* Replace what is left with a symlink's target followed by the rest. */
static int walk_follow(struct walk *w, int linkfd, const char *rest, int *dirfd)
{
	char target[PATH_MAX + 1], joined[sizeof(w->rest)];
	ssize_t len;

	if (++w->links > MAX_SYMLINKS)
		return -ELOOP;
	len = readlinkat(linkfd, "", target, sizeof(target));
	if (len < 0)
		return -errno;
	if (len > PATH_MAX)
		return -ENAMETOOLONG;
	target[len] = '\0';
	if (snprintf(joined, sizeof(joined), "%s/%s", target, rest) >=
	    (int)sizeof(joined))
		return -ENAMETOOLONG;
	strcpy(w->rest, joined);
	if (target[0] == '/') {
		int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);

		if (root < 0)
			return -errno;
		close(*dirfd);
		*dirfd = root;
		w->done_len = 0;
		w->done[0] = '\0';
		w->here = w->root;
	}
	return 0;
}

/* Record a step in the canonical path. */
static int walk_record(struct walk *w, const char *comp)
{
	size_t len = strlen(comp);

	if (!strcmp(comp, "..")) {
		while (w->done_len > 0 && w->done[--w->done_len] != '/')
			;
		w->done[w->done_len] = '\0';
		return 0;
	}
	if (w->done_len + 1 + len >= sizeof(w->done))
		return -ENAMETOOLONG;
	w->done[w->done_len++] = '/';
	memcpy(w->done + w->done_len, comp, len + 1);
	w->done_len += len;
	return 0;
}

/*
 * refuse_fuse() once per mount a walk crosses into: a path that goes in
 * and out of the same mounts over and over ("/proc/../proc/..") would
 * otherwise read the whole mount table at every step.  A mount's type
 * does not change while it stays the same mount (a mount id is not
 * reused while the mount lives, and a walk is over in moments).  When
 * the table is full, the oldest entry makes room.
 */
static int walk_refuse_fuse(struct walk *w, const struct place *at)
{
	struct known_mount *k;
	int i, err;

	for (i = 0; i < w->nknown && i < KNOWN_MOUNTS; i++) {
		k = &w->known[i];
		if (!crosses(&k->at, at) && k->at.dev == at->dev)
			return k->verdict;
	}
	err = refuse_fuse(at);
	if (err && err != -EINVAL)
		return err;	/* not an answer about the mount */
	k = &w->known[w->nknown++ % KNOWN_MOUNTS];
	k->at = *at;
	k->verdict = err;
	return err;
}

/*
 * Step onto what fd names, found in the directory at w->here: never onto
 * self_dev (ELOOP), never into a FUSE filesystem (EINVAL).
 */
static int walk_step(struct walk *w, int fd, dev_t self_dev)
{
	struct place at;
	int err = fd_place(fd, &at);

	if (err)
		return err;
	if (at.dev == self_dev)
		return -ELOOP;
	if (crosses(&w->here, &at)) {
		err = walk_refuse_fuse(w, &at);
		if (err)
			return err;
	}
	w->here = at;
	return 0;
}

/*
 * Resolve path to an O_PATH fd of the file it names, one component at a
 * time, never stepping onto self_dev.  Runs with the caller's credentials,
 * so every directory searched is one the caller may search.
 *
 * Nothing is ever looked up inside a FUSE filesystem.  The kernel holds
 * the directory a SYMLINK request makes its entry in for the whole
 * request: a walk that waited on another FUSE daemon (stalled, or itself
 * a sectionfs walking into this mount) would wait with it held, and its
 * callers could not even be killed.  So each step that crosses into
 * another mount is checked before anything is looked up there, and a
 * walk takes at most MAX_STEPS steps (ELOOP beyond), so that no target
 * holds the directory for long.
 */
static int walk_path(const char *path, dev_t self_dev, struct walk *w,
		     int *out)
{
	int dirfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	int err = dirfd < 0 ? -errno : 0;
	char *p;

	strcpy(w->rest, path);
	w->done_len = 0;
	w->done[0] = '\0';
	w->links = 0;
	w->steps = 0;
	w->nknown = 0;
	if (!err)
		err = fd_place(dirfd, &w->root);
	if (!err)
		err = walk_refuse_fuse(w, &w->root);
	w->here = w->root;
	while (!err) {
		char *comp, rest_copy[sizeof(w->rest)];
		mode_t mode = 0;
		int fd;

		for (p = w->rest; *p == '/'; p++)
			;
		if (!*p)
			break;
		if (++w->steps > MAX_STEPS) {
			err = -ELOOP;
			break;
		}
		comp = p;
		p = strchrnul(p, '/');
		strcpy(rest_copy, *p ? p + 1 : "");
		*p = '\0';
		if (!strcmp(comp, ".")) {
			memmove(w->rest, rest_copy, strlen(rest_copy) + 1);
			continue;
		}
		fd = openat(dirfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			err = -errno;
			break;
		}
		err = walk_step(w, fd, self_dev);
		if (!err)
			err = fd_mode(fd, &mode);
		if (!err && S_ISLNK(mode)) {
			err = walk_follow(w, fd, rest_copy, &dirfd);
			close(fd);
			continue;
		}
		if (!err)
			err = walk_record(w, comp);
		if (err) {
			close(fd);
			break;
		}
		close(dirfd);
		dirfd = fd;
		memmove(w->rest, rest_copy, strlen(rest_copy) + 1);
	}
	if (err) {
		if (dirfd >= 0)
			close(dirfd);
		return err;
	}
	*out = dirfd;
	return 0;
}

/*
 * Reopen an O_PATH fd for I/O: the permission check is the caller's.
 * O_NONBLOCK, because an open that must break a lease on the file (any
 * owner may take one) would otherwise wait for the lease break time,
 * 45 s by default, while the kernel holds the directory the symlink goes
 * in: EWOULDBLOCK instead.  Dropped once open: it means nothing more to
 * a regular file.
 */
static int reopen(int pathfd, int *writable)
{
	char proc[64];
	int fd, err;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pathfd);
	fd = open(proc, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	*writable = fd >= 0;
	if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM ||
		       errno == ETXTBSY))
		fd = open(proc, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fcntl(fd, F_SETFL, 0)) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

struct open_args {
	const char *target;
	dev_t self_dev;
	struct walk *w;
	int *writable;
	int fd;
};

/* "f/" and "f/." name a directory: a file there is ENOTDIR, as open says. */
static int names_directory(const char *path)
{
	size_t len = strlen(path);

	return (len > 1 && path[len - 1] == '/') ||
	       (len > 2 && !strcmp(path + len - 2, "/."));
}

/*
 * The kernel's own filesystems, mounted under /proc and /sys: their files
 * are the kernel's answers about whoever opens them, here the daemon
 * (/proc/self/maps would show the daemon's memory to anyone, a cgroup's
 * files the daemon's cgroup), or its controls.
 */
static const unsigned long kernel_fs[] = {
	PROC_SUPER_MAGIC, SYSFS_MAGIC, CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC,
	SECURITYFS_MAGIC, TRACEFS_MAGIC, DEBUGFS_MAGIC, BPF_FS_MAGIC,
	EFIVARFS_MAGIC, PSTOREFS_MAGIC, BINFMTFS_MAGIC, NSFS_MAGIC,
};

/* Only files of real filesystems can back a section. */
static int real_file(int fd, const struct stat *st)
{
	struct statfs sfs;
	size_t i;

	if (!S_ISREG(st->st_mode))
		return -EINVAL;
	if (fstatfs(fd, &sfs))
		return -errno;
	for (i = 0; i < sizeof(kernel_fs) / sizeof(kernel_fs[0]); i++)
		if ((unsigned long)sfs.f_type == kernel_fs[i])
			return -EINVAL;
	return 0;
}

static int open_as_caller(void *arg)
{
	struct open_args *a = arg;
	struct stat st;
	int pathfd, err;

	err = walk_path(a->target, a->self_dev, a->w, &pathfd);
	if (err)
		return err;
	if (fstat(pathfd, &st))
		err = -errno;
	else if (names_directory(a->target) && !S_ISDIR(st.st_mode))
		err = -ENOTDIR;
	else
		err = real_file(pathfd, &st);
	if (!err)
		err = reopen(pathfd, a->writable);
	close(pathfd);
	if (err < 0)
		return err;
	a->fd = err;
	return 0;
}

int backing_open(const char *target, dev_t self_dev, const struct caller *who,
		 int *writable, char **resolved)
{
	struct open_args a = { .target = target, .self_dev = self_dev,
			       .writable = writable, .fd = -1 };
	int err;

	if (!target || target[0] != '/')
		return -EINVAL;
	if (strlen(target) >= PATH_MAX)
		return -ENAMETOOLONG;
	a.w = malloc(sizeof(*a.w));
	if (!a.w)
		return -ENOMEM;
	err = as_caller(who, open_as_caller, &a);
	if (!err) {
		*resolved = strdup(a.w->done_len ? a.w->done : "/");
		if (!*resolved) {
			close(a.fd);
			err = -ENOMEM;
		}
	}
	free(a.w);
	return err ? err : a.fd;
}

int backing_name_now(int fd, char *buf, size_t size)
{
	static const char deleted[] = " (deleted)";
	const size_t dlen = sizeof(deleted) - 1;
	char proc[64];
	struct stat st;
	ssize_t len;

	if (size == 0)
		return -ERANGE;
	buf[0] = '\0';
	if (fstat(fd, &st))
		return -errno;
	if (st.st_nlink == 0)
		return 0;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	len = readlink(proc, buf, size - 1);
	if (len < 0)
		return -errno;
	buf[len] = '\0';
	/* The name it was opened by is gone (another link may remain, but
	 * the kernel does not say which), or it is out of our sight. */
	if (buf[0] != '/' || ((size_t)len >= dlen &&
			      !strcmp(buf + len - dlen, deleted))) {
		buf[0] = '\0';
		return 0;
	}
	return (int)len;
}
