/*
 * charge.c - the chargers: child processes that allocate store pages in
 * their caller's memory cgroup.
 *
 * Owns which memory cgroup a caller is in (read from /proc/PID/cgroup,
 * kept a second per pid, since pids are reused), one charger per cgroup
 * other than the daemon's, their lives and their one request at a time.
 * The kernel charges a shmem page to the memory cgroup of the mm that
 * allocates it; threads share the daemon's mm, so only a process of the
 * caller's cgroup can allocate pages charged there.  A charger is the
 * daemon's own binary run again (/proc/self/exe, recognised before main
 * by its argv[0]), so that it holds none of the daemon's memory or
 * descriptors; it is placed in the cgroup, gives up its capabilities,
 * and then only fallocates the store files handed to it over a socket.
 * It never reads or writes a section's bytes, and never decides whether
 * a write may happen (the cap and the seals are decided before).
 *
 * When the caller's cgroup is full the kernel's OOM killer runs in that
 * cgroup, as on tmpfs; a charger has the highest oom_score_adj, so it
 * is the one killed, the caller's processes are left alone and the
 * request gets ENOMEM.  A charger that dies or hangs (a frozen cgroup)
 * is killed and forgotten; the next request makes another.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cap.h"
#include "charge.h"
#include "log.h"

/* At most one charger per cgroup and this many in all: a user who makes
 * cgroups makes the daemon no more processes than this. */
#define CHARGERS_MAX	64
/* Seconds a charger stays unused before it is sent away. */
#define CHARGER_IDLE	10
/* How long a pid's cgroup is trusted: a pid reused within it by another
 * cgroup's process would be charged to the first one's. */
#define PID_TTL_NS	1000000000ull
#define PID_SLOTS	256
/* A request may wait five seconds for a charger's answer, and one more
 * for every 256 MiB asked for, the wait for the charger's previous
 * request included; past that (a frozen cgroup) the charger is killed
 * and the request gets ENOMEM. */
#define WAIT_MS		5000
#define WAIT_MS_FOR(len)	(WAIT_MS + ((uint64_t)(len) >> 28) * 1000)

/* The argv[0] that makes the binary a charger; fd 3 is its socket. */
#define CHARGER_ARGV0	"sectionfs-charger"
#define CHARGER_SOCK	3

/* One request, and its answer: an int32_t, 0 or -errno. */
struct charge_msg {
	int32_t mode;
	int64_t off, len;
};

struct charger {
	struct charger *next;		/* charge.lock */
	char *cgroup;			/* path in the hierarchy; immutable */
	pid_t pid;			/* immutable; 0: none could be placed
					   (spawn()); reaped only at destroy */
	int sock;			/* immutable; -1 without a process */
	pthread_mutex_t busy;		/* one request at a time on sock */
	unsigned int refs;		/* charge.lock */
	bool dead;			/* charge.lock: unlisted, goes with
					   its last reference */
	uint64_t used;			/* charge.lock: last use, monotonic ns */
};

/* A recent answer to "which charger pays for pid" (NULL: the daemon). */
struct pid_slot {
	pid_t pid;
	uint64_t stamp;
	struct charger *ch;		/* a listed charger, or NULL */
};

static struct {
	pthread_once_t once;
	pthread_mutex_t lock;		/* charge.lock: all below */
	int version;			/* memory hierarchy: cgroup v1 or v2;
					   0: none, nothing is done; once */
	char root[PATH_MAX];		/* its mount point; once */
	struct charger *list;
	unsigned int n;			/* chargers listed */
	struct pid_slot slots[PID_SLOTS];
	pid_t zombies[CHARGERS_MAX];	/* gone, not yet reaped */
	unsigned int nzombies;
	bool janitor;			/* the idle sweeper runs */
} charge = {
	.once = PTHREAD_ONCE_INIT,
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the charger itself ---- */

static void become_charger(void) __attribute__((noreturn));

/*
 * Runs in the charger, before main.  Nothing here touches a section but
 * fallocate on the fd it is handed, which it closes at once.
 */
static void become_charger(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct none[2] = { { 0 } };
	int fd;

	/* The one the kernel kills when the cgroup is full: not the
	 * caller's processes, which a kill would not relieve anyway. */
	fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "1000", 4) != 4)
			_exit(1);
		close(fd);
	}
	prctl(PR_SET_NAME, "sfs-charger");
	/* Not to be traced or dumped by anyone sharing the cgroup. */
	prctl(PR_SET_DUMPABLE, 0);
	if (syscall(SYS_capset, &hdr, none))
		_exit(1);
	for (;;) {
		struct charge_msg m;
		struct iovec iov = { &m, sizeof(m) };
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
		};
		struct cmsghdr *c;
		int32_t res = -EBADF;
		ssize_t n;

		n = recvmsg(CHARGER_SOCK, &mh, MSG_CMSG_CLOEXEC);
		if (n <= 0)
			_exit(0);	/* the daemon is gone, or sent us away */
		fd = -1;
		c = CMSG_FIRSTHDR(&mh);
		if (c && c->cmsg_level == SOL_SOCKET &&
		    c->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(c), sizeof(fd));
		if (n == sizeof(m) && fd >= 0)
			res = fallocate(fd, m.mode, m.off, m.len) ? -errno : 0;
		if (fd >= 0)
			close(fd);
		if (send(CHARGER_SOCK, &res, sizeof(res), MSG_NOSIGNAL) !=
		    sizeof(res))
			_exit(0);
	}
}

/* glibc hands constructors argc and argv: a charger never reaches main. */
__attribute__((constructor))
static void charger_entry(int argc, char **argv)
{
	if (argc >= 1 && argv && argv[0] && !strcmp(argv[0], CHARGER_ARGV0))
		become_charger();
}

/* ---- which cgroup ---- */

/* The mount point of the hierarchy the memory controller is on. */
static void find_hierarchy(void)
{
	char where[PATH_MAX], fstype[32], opts[1024], v2[PATH_MAX] = "";
	char *line = NULL, *sep;
	size_t size = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return;
	while (getline(&line, &size, f) > 0) {
		sep = strstr(line, " - ");
		if (!sep ||
		    sscanf(line, "%*s %*s %*s %*s %4095s", where) != 1 ||
		    sscanf(sep + 3, "%31s %*s %1023s", fstype, opts) != 2)
			continue;
		if (!strcmp(fstype, "cgroup")) {
			char *tok, *save = NULL;

			for (tok = strtok_r(opts, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save))
				if (!strcmp(tok, "memory"))
					break;
			if (tok) {
				snprintf(charge.root, sizeof(charge.root),
					 "%s", where);
				charge.version = 1;
				break;
			}
		} else if (!strcmp(fstype, "cgroup2") && !v2[0]) {
			snprintf(v2, sizeof(v2), "%s", where);
		}
	}
	free(line);
	fclose(f);
	if (!charge.version && v2[0]) {
		/* v2 has it unless v1 took it (a hybrid machine). */
		char file[PATH_MAX + 32], buf[256];
		ssize_t n = -1;
		int fd;

		snprintf(file, sizeof(file), "%s/cgroup.controllers", v2);
		fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
		}
		buf[n > 0 ? n : 0] = '\0';
		if (strstr(buf, "memory")) {
			snprintf(charge.root, sizeof(charge.root), "%s", v2);
			charge.version = 2;
		}
	}
	if (charge.version)
		log_debug("memory cgroups (v%d at %s): callers pay for their pages",
			  charge.version, charge.root);
}

/* pid's cgroup in the memory hierarchy (pid 0: the daemon's own). */
static int cgroup_of(pid_t pid, char *path, size_t size)
{
	char name[64], *line = NULL;
	size_t len = 0;
	int err = -ENOENT;
	FILE *f;

	if (pid)
		snprintf(name, sizeof(name), "/proc/%d/cgroup", (int)pid);
	else
		snprintf(name, sizeof(name), "/proc/self/cgroup");
	f = fopen(name, "re");
	if (!f)
		return -errno;
	while (err && getline(&line, &len, f) > 0) {
		char *ctrl = strchr(line, ':'), *p, *tok, *save = NULL;
		bool ours = false;

		if (!ctrl || !(p = strchr(ctrl + 1, ':')))
			continue;
		*p++ = '\0';
		*ctrl++ = '\0';	/* "ID:CONTROLLERS:PATH" */
		p[strcspn(p, "\n")] = '\0';
		if (charge.version == 2)
			ours = !strcmp(line, "0") && !*ctrl;
		else
			for (tok = strtok_r(ctrl, ",", &save); tok && !ours;
			     tok = strtok_r(NULL, ",", &save))
				ours = !strcmp(tok, "memory");
		if (ours && *p == '/')
			err = snprintf(path, size, "%s", p) < (int)size ?
			      0 : -ENAMETOOLONG;
	}
	free(line);
	fclose(f);
	return err;
}

/*
 * The cgroup whose memory counter path's processes are charged to: in v2
 * the nearest one with the memory controller (it has memory.current),
 * the root at the latest; in v1 every cgroup of the hierarchy has one.
 */
static void memcg_of(char *path)
{
	char file[PATH_MAX * 2 + 16];
	char *slash;

	if (charge.version != 2)
		return;
	while (strcmp(path, "/")) {
		snprintf(file, sizeof(file), "%s%s/memory.current",
			 charge.root, path);
		if (!access(file, F_OK))
			return;
		slash = strrchr(path, '/');
		slash[slash == path] = '\0';
	}
}

/* ---- the daemon's side ---- */

/* Reap a charger sent away, or leave it to the janitor (charge.lock
 * held).  A charger ends at once when its socket closes, so the list is
 * short; one it cannot take stays a zombie until the daemon exits. */
static void reap_locked(pid_t pid)
{
	if (waitpid(pid, NULL, WNOHANG) == 0 &&
	    charge.nzombies < CHARGERS_MAX)
		charge.zombies[charge.nzombies++] = pid;
}

static void reap(pid_t pid)
{
	pthread_mutex_lock(&charge.lock);
	reap_locked(pid);
	pthread_mutex_unlock(&charge.lock);
}

/* The last reference to a dead charger: its socket closes, which ends
 * it if it still lives. */
static void destroy(struct charger *ch)
{
	if (ch->pid) {
		close(ch->sock);
		reap(ch->pid);
	}
	pthread_mutex_destroy(&ch->busy);
	free(ch->cgroup);
	free(ch);
}

/* Take ch off the list and out of the pid cache (charge.lock held). */
static void unlist(struct charger *ch)
{
	struct charger **pp;
	unsigned int i;

	if (ch->dead)
		return;
	for (pp = &charge.list; *pp; pp = &(*pp)->next)
		if (*pp == ch) {
			*pp = ch->next;
			break;
		}
	charge.n--;
	ch->dead = true;
	for (i = 0; i < PID_SLOTS; i++)
		if (charge.slots[i].ch == ch)
			charge.slots[i].pid = 0;
}

static void put(struct charger *ch)
{
	bool last;

	pthread_mutex_lock(&charge.lock);
	last = --ch->refs == 0 && ch->dead;
	pthread_mutex_unlock(&charge.lock);
	if (last)
		destroy(ch);
}

/* Send away chargers unused for CHARGER_IDLE seconds; reap the gone. */
static void *janitor(void *arg)
{
	(void)arg;
	for (;;) {
		struct charger *ch, *next, *idle = NULL;
		uint64_t now;
		unsigned int i;

		sleep(CHARGER_IDLE / 2);
		now = now_ns();
		pthread_mutex_lock(&charge.lock);
		for (ch = charge.list; ch; ch = next) {
			next = ch->next;
			if (ch->refs ||
			    now - ch->used < CHARGER_IDLE * 1000000000ull)
				continue;
			unlist(ch);
			ch->next = idle;
			idle = ch;
		}
		for (i = 0; i < charge.nzombies;)
			if (waitpid(charge.zombies[i], NULL, WNOHANG) != 0)
				charge.zombies[i] = charge.zombies[--charge.nzombies];
			else
				i++;
		pthread_mutex_unlock(&charge.lock);
		for (ch = idle; ch; ch = next) {
			next = ch->next;
			destroy(ch);
		}
	}
	return NULL;
}

/*
 * At the daemon's exit, send every charger away and reap it: none is
 * left for init to reap, nor in a cgroup its owner wants to remove.
 * They end as soon as they read that; one that has not within a second
 * is killed.  Not run by a charger, which leaves by _exit.
 */
__attribute__((destructor))
static void charge_fini(void)
{
	pid_t pids[CHARGERS_MAX * 2];
	unsigned int i, n = 0, left;
	struct charger *ch;
	int tries;

	if (!charge.version || pthread_mutex_trylock(&charge.lock))
		return;
	for (ch = charge.list; ch; ch = ch->next)
		if (ch->pid) {
			shutdown(ch->sock, SHUT_RDWR);
			pids[n++] = ch->pid;
		}
	for (i = 0; i < charge.nzombies; i++)
		pids[n++] = charge.zombies[i];
	charge.nzombies = 0;
	for (tries = 0; tries < 100; tries++) {
		for (i = 0, left = 0; i < n; i++) {
			if (pids[i] && waitpid(pids[i], NULL, WNOHANG) != 0)
				pids[i] = 0;
			left += pids[i] != 0;
		}
		if (!left)
			break;
		usleep(10000);
	}
	for (i = 0; i < n; i++)
		if (pids[i])
			kill(pids[i], SIGKILL);	/* ours, not reaped */
	pthread_mutex_unlock(&charge.lock);
}

/* Run a charger and place it in the cgroup whose cgroup.procs is procs
 * (charge.lock held); 0 or -errno, with nothing left running. */
static int start(struct charger *ch, const char *procs)
{
	char *argv[] = { CHARGER_ARGV0, NULL }, *envp[] = { NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	char pidbuf[24];
	sigset_t all, none;
	int sv[2], fd, err, len;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -errno;
	/* posix_spawn: no copy of the daemon's memory, signals as new. */
	sigfillset(&all);
	sigemptyset(&none);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], CHARGER_SOCK);
	posix_spawn_file_actions_addclosefrom_np(&fa, CHARGER_SOCK + 1);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF |
				 POSIX_SPAWN_SETSIGMASK);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setsigmask(&attr, &none);
	err = -posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv, envp);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	if (err) {
		close(sv[0]);
		return err;
	}
	/* Into the caller's cgroup before its first allocation, which
	 * waits for our first request. */
	len = snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
	fd = open(procs, O_WRONLY | O_CLOEXEC);
	err = fd < 0 ? -errno : write(fd, pidbuf, len) == len ? 0 : -errno;
	if (fd >= 0)
		close(fd);
	if (err) {
		kill(pid, SIGKILL);	/* ours, not reaped: still that one */
		close(sv[0]);
		reap_locked(pid);
		return err;
	}
	ch->pid = pid;
	ch->sock = sv[0];
	return 0;
}

/*
 * A charger for cgroup (charge.lock held).  At the limit the charger
 * unused longest makes room (*evicted, for the caller to destroy once
 * unlocked); if every one is busy, -EAGAIN.  Where the daemon may not
 * place a process (an unprivileged daemon, a cgroup that holds only
 * other cgroups) the entry has no process, pid 0: the daemon pays for
 * that cgroup's callers, as it would without chargers, and says so once
 * while the entry lives.
 */
static int spawn(const char *cgroup, struct charger **out,
		 struct charger **evicted)
{
	char procs[PATH_MAX * 2 + 16];
	struct charger *ch, *old = NULL;
	int err;

	if (charge.n >= CHARGERS_MAX) {
		for (ch = charge.list; ch; ch = ch->next)
			if (!ch->refs && (!old || ch->used < old->used))
				old = ch;
		if (!old)
			return -EAGAIN;
		unlist(old);
		*evicted = old;
	}
	ch = calloc(1, sizeof(*ch));
	if (!ch || !(ch->cgroup = strdup(cgroup))) {
		free(ch);
		return -ENOMEM;
	}
	ch->sock = -1;
	snprintf(procs, sizeof(procs), "%s%s/cgroup.procs", charge.root,
		 cgroup);
	if (faccessat(AT_FDCWD, procs, W_OK, AT_EACCESS))
		err = -errno;
	else
		err = start(ch, procs);
	if (err)
		log_warn("no charger in memory cgroup %s (%s): the daemon pays for the pages of its callers",
			 cgroup, strerror(-err));
	pthread_mutex_init(&ch->busy, NULL);
	ch->next = charge.list;
	charge.list = ch;
	charge.n++;
	if (!charge.janitor) {
		pthread_t t;
		pthread_attr_t ta;

		pthread_attr_init(&ta);
		pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
		charge.janitor = !pthread_create(&t, &ta, janitor, NULL);
		pthread_attr_destroy(&ta);
	}
	*out = ch;
	return 0;
}

/*
 * Who pays for pid's pages: 0 with *out NULL (the daemon: same memory
 * cgroup, no memory controller, or a caller gone), or 0 with a charger
 * and a reference on it, or -errno when the charger cannot be had.
 */
static int charger_for(pid_t pid, struct charger **out)
{
	struct pid_slot *slot = &charge.slots[(unsigned int)pid % PID_SLOTS];
	char cgroup[PATH_MAX], memcg[PATH_MAX], own[PATH_MAX];
	struct charger *ch = NULL, *evicted = NULL;
	uint64_t now;
	int err = 0;

	*out = NULL;
	pthread_once(&charge.once, find_hierarchy);
	if (!charge.version || pid <= 0)
		return 0;
	now = now_ns();
	pthread_mutex_lock(&charge.lock);
	if (slot->pid == pid && now - slot->stamp < PID_TTL_NS) {
		ch = slot->ch;
		goto found;
	}
	pthread_mutex_unlock(&charge.lock);

	/* The daemon's own may have moved too (systemd, an admin). */
	if (cgroup_of(pid, cgroup, sizeof(cgroup)) ||
	    cgroup_of(0, own, sizeof(own)))
		return 0;
	memcpy(memcg, cgroup, sizeof(memcg));
	memcg_of(memcg);
	memcg_of(own);
	pthread_mutex_lock(&charge.lock);
	if (strcmp(memcg, own)) {
		for (ch = charge.list; ch; ch = ch->next)
			if (!strcmp(ch->cgroup, cgroup))
				break;
		if (!ch)
			err = spawn(cgroup, &ch, &evicted);
		if (err)
			goto out;
	}
	slot->pid = pid;
	slot->stamp = now;
	slot->ch = ch;
found:
	if (ch) {
		ch->used = now;
		if (!ch->pid)
			ch = NULL;	/* the daemon pays (spawn()) */
		else
			ch->refs++;
	}
	*out = ch;
out:
	pthread_mutex_unlock(&charge.lock);
	if (evicted)
		destroy(evicted);
	return err;
}

/* Have ch fallocate; a charger that does not answer in time is killed. */
static int ask(struct charger *ch, int fd, int mode, off_t off, off_t len)
{
	struct charge_msg m = { .mode = mode, .off = off, .len = len };
	struct iovec iov = { &m, sizeof(m) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	uint64_t deadline = now_ns() + WAIT_MS_FOR(len) * 1000000ull;
	struct timespec until = {
		.tv_sec = (time_t)(deadline / 1000000000ull),
		.tv_nsec = (long)(deadline % 1000000000ull),
	};
	struct pollfd pfd = { .fd = ch->sock, .events = POLLIN };
	int32_t res = -ENOMEM;
	int n;

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(fd));
	/* Behind another request to a charger that hangs: that one kills
	 * it, this one gives up in time. */
	if (pthread_mutex_clocklock(&ch->busy, CLOCK_MONOTONIC, &until))
		return -ENOMEM;
	if (sendmsg(ch->sock, &mh, MSG_NOSIGNAL) != sizeof(m)) {
		res = -EPIPE;	/* it died idle: the caller asks another */
		goto dead;
	}
	for (;;) {
		uint64_t now = now_ns();

		if (now >= deadline)
			goto dead;
		n = poll(&pfd, 1, (int)((deadline - now) / 1000000 + 1));
		if (n > 0)
			break;
		if (n < 0 && errno != EINTR)
			goto dead;
	}
	if (recv(ch->sock, &res, sizeof(res), 0) != sizeof(res)) {
		res = -ENOMEM;	/* killed, most likely by the OOM killer */
		goto dead;
	}
	pthread_mutex_unlock(&ch->busy);
	return res;

dead:
	kill(ch->pid, SIGKILL);		/* ours, not reaped: still that one */
	pthread_mutex_lock(&charge.lock);
	unlist(ch);
	pthread_mutex_unlock(&charge.lock);
	pthread_mutex_unlock(&ch->busy);
	return res == -EPIPE ? res : -ENOMEM;
}

/* Whether the store holds every page of [off, off + len) already. */
static bool held(int fd, off_t off, off_t len)
{
	uint64_t first = (uint64_t)off & ~(uint64_t)(PAGE_BYTES - 1);
	uint64_t last = ((uint64_t)off + (uint64_t)len + PAGE_BYTES - 1) &
			~(uint64_t)(PAGE_BYTES - 1);
	uint64_t cached, evicted;

	return !cap_cachestat(fd, first, last - first, &cached, &evicted) &&
	       (cached + evicted) * PAGE_BYTES >= last - first;
}

/*
 * Have pid's charger, if it has one, fallocate (*done: whether one
 * did); with populate, not when the pages are there already (a rewrite
 * allocates nothing).
 */
static int charged(pid_t pid, int fd, int mode, off_t off, off_t len,
		   bool populate, bool *done)
{
	struct charger *ch;
	int tries, err = 0;

	*done = false;
	/* A charger killed while idle is found at the next request: that
	 * one goes to a new charger. */
	for (tries = 0; tries < 2; tries++) {
		err = charger_for(pid, &ch);
		if (err || !ch)
			return err == -EAGAIN ? -ENOMEM : err;
		*done = true;
		if (populate && held(fd, off, len))
			err = 0;
		else
			err = ask(ch, fd, mode, off, len);
		put(ch);
		if (err != -EPIPE)
			return err;
	}
	return -ENOMEM;
}

int charge_fallocate(pid_t pid, int fd, int mode, off_t off, off_t len)
{
	bool done = false;
	int err = 0;

	/* Only a plain allocation makes pages; the rest is done here. */
	if (!(mode & ~FALLOC_FL_KEEP_SIZE))
		err = charged(pid, fd, mode, off, len, false, &done);
	if (done || err)
		return err;
	return fallocate(fd, mode, off, len) ? -errno : 0;
}

int charge_populate(pid_t pid, int fd, off_t off, off_t len)
{
	bool done;

	if (len <= 0)
		return 0;
	return charged(pid, fd, FALLOC_FL_KEEP_SIZE, off, len, true, &done);
}
