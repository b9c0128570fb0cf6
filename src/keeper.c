/*
 * keeper.c - the keeper process, and a server's side of the fd store.
 *
 * Owns the split of a mount into two processes (keeper.h): the keeper's
 * loop (start the server, take the fds it hands over, restart it when it
 * dies, stop when the mount goes), the crash-loop and give-up rules,
 * which binary a server runs (the one that served last, kept open, and
 * back to it when an upgrade's binary cannot serve), and the server's
 * calls that hand fds to the keeper.  It knows nothing of
 * sections or of the FUSE protocol: what a successor is fed comes from
 * wire.c, through the shared state (struct keeper_state).
 *
 * How fds are shared: each one a server asks to keep is sent to the
 * keeper over a SOCK_SEQPACKET socketpair (SCM_RIGHTS), and the keeper
 * puts its copy at the number the server had.  A successor is forked
 * from the keeper and exec'd, so it finds them all where they were, and
 * a new binary (an upgrade) finds them just the same.  One fd table
 * shared through clone(CLONE_FILES) would cost nothing per fd, but
 * execve unshares it (no upgrade to a new binary), and a raw clone
 * without glibc's fork leaves the child's thread id stale.  A message in
 * flight stays in the keeper's receive queue when the server dies right
 * after sendmsg(), so "sent" means "safe".
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keeper.h"
#include "log.h"

/* The environment variable that tells a server its keeper's fds. */
#define KEEPER_ENV	"SECTIONFS_KEEPER"

/* Deaths in a row with a request in flight before it is answered EIO. */
#define CRASH_TRIES	3
/* Successors in a row that die before serving before the keeper gives up. */
#define START_TRIES	3
/* How often the keeper looks whether an upgrade's first server serves. */
#define TRY_POLL_MS	20
/*
 * How long the keeper lets the server's messages queue before it takes
 * them.  A message waits safely in the socket (a descriptor in flight is
 * the socket's, and a dead server's are taken before a successor
 * starts), and waking for each one would put a context switch on every
 * create and removal the server's callers make.
 */
#define BATCH_NS	2000000

enum keeper_op {
	OP_HOLD = 1,	/* with an fd: keep it at number fd */
	OP_RELEASE,	/* drop the copy at number fd */
	OP_STOP,	/* the server stops for good: do not restart it */
	OP_KILL,	/* test hooks: kill the server (SIGKILL) */
};

struct keeper_msg {
	int32_t op;
	int32_t fd;
};

/* ------------------------------------------------------------------ */
/* The server's side */

static struct {
	int sock;			/* to the keeper; -1: none */
	struct keeper_state *st;
	int record_fd;			/* a successor's, from the state */
	enum keeper_role role;
#ifdef SFS_TEST_HOOKS
	bool die_at_start;		/* dies before it serves */
#endif
} srv = { .sock = -1, .record_fd = -1 };

enum keeper_role keeper_role(void)
{
	return srv.role;
}

bool keeper_on(void)
{
	return srv.sock >= 0;
}

struct keeper_state *keeper_state(void)
{
	return srv.st;
}

static int send_msg(int op, int fd)
{
	struct keeper_msg m = { .op = op, .fd = fd };
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (op == OP_HOLD) {
		struct cmsghdr *c;

		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	int sock = __atomic_load_n(&srv.sock, __ATOMIC_ACQUIRE);

	if (sock < 0)
		return -EPIPE;
	while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/*
 * The keeper is gone (killed): nothing can outlive this server any more,
 * which serves on as a daemon without a keeper would.
 */
static int lost_keeper(int err)
{
	if (err != -EPIPE && err != -ECONNRESET)
		return err;
	/* Not closed: another thread may be sending on it right now. */
	if (__atomic_exchange_n(&srv.sock, -1, __ATOMIC_ACQ_REL) >= 0)
		log_warn("the keeper is gone: this server's death will end the mount");
	return 0;
}

int keeper_hold(int fd)
{
	int sock = __atomic_load_n(&srv.sock, __ATOMIC_ACQUIRE), err;

	if (sock < 0)
		return 0;
	if (fd < 0)
		return -EBADF;
	err = lost_keeper(send_msg(OP_HOLD, fd));
	if (err)
		log_err("cannot hand fd %d to the keeper: %s", fd,
			strerror(-err));
	return err;
}

void keeper_release(int fd)
{
	if (__atomic_load_n(&srv.sock, __ATOMIC_ACQUIRE) >= 0 && fd >= 0)
		lost_keeper(send_msg(OP_RELEASE, fd));
}

void keeper_set_record_fd(int fd)
{
	if (!srv.st || keeper_hold(fd))
		return;
	__atomic_store_n(&srv.st->record_fd, fd, __ATOMIC_RELEASE);
}

int keeper_record_fd(void)
{
	return srv.record_fd;
}

void keeper_serving(void)
{
	if (!srv.st || srv.role != KEEPER_SUCCESSOR)
		return;
#ifdef SFS_TEST_HOOKS
	if (srv.die_at_start) {
		log_warn("test hook: this binary dies before it serves");
		keeper_test_die();
	}
#endif
	__atomic_store_n(&srv.st->serving, 1, __ATOMIC_RELEASE);
}

/* Tell the keeper this server's exit is the mount's end. */
void keeper_stop(void)
{
	if (srv.sock >= 0)
		send_msg(OP_STOP, -1);
}

#ifdef SFS_TEST_HOOKS
/*
 * Die here, by a SIGKILL from outside, as a crash or the OOM killer
 * would end it: nothing of this process runs after (a tool that watches
 * it, valgrind, could not report on it either).
 */
void keeper_test_die(void)
{
	if (srv.sock < 0 || send_msg(OP_KILL, -1))
		raise(SIGKILL);
	for (;;)
		pause();
}
#endif

#ifdef SFS_TEST_HOOKS
/* Whether the file at path holds id, in decimal. */
static bool holds_id(const char *path, uint64_t id)
{
	char buf[32];
	ssize_t len;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return false;
	buf[len] = '\0';
	return strtoull(buf, NULL, 10) == id;
}

void keeper_test_gap(const char *where, uint64_t id)
{
	const char *want = getenv("SECTIONFS_TEST_GAP");
	const char *dir = getenv("SECTIONFS_TEST_GAP_DIR");
	char path[PATH_MAX];
	int fd, i;

	if (!want || !dir || strcmp(want, where) || !srv.st ||
	    srv.st->deaths)
		return;
	snprintf(path, sizeof(path), "%s/arm", dir);
	/* The unlink picks one thread, should two find the id. */
	if (!holds_id(path, id) || unlink(path))
		return;
	log_warn("test hook: waiting to die at %s of %llu", where,
		 (unsigned long long)id);
	snprintf(path, sizeof(path), "%s/in", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	/* A minute at most: a suite that never says go is stuck too. */
	snprintf(path, sizeof(path), "%s/go", dir);
	for (i = 0; i < 6000 && access(path, F_OK); i++)
		usleep(10000);
	keeper_test_die();
}

int keeper_test_fault(const char *where, int res)
{
	const char *want = getenv("SECTIONFS_TEST_FAULT");
	const char *err = getenv("SECTIONFS_TEST_FAULT_ERRNO");
	size_t len = strlen(where);
	const char *at = want;

	if (res < 0 || !want || !err)
		return res;
	/* want is a list of points, each followed by a comma or the end. */
	while ((at = strstr(at, where)) &&
	       ((at != want && at[-1] != ',') ||
		(at[len] != ',' && at[len] != '\0')))
		at += len;
	if (!at)
		return res;
	log_warn("test hook: failing at %s with errno %s", where, err);
	return -atoi(err);
}

/* Whether this process runs the file at path (by device and inode). */
static bool runs_file(const char *path)
{
	struct stat want, self;
	/* Opened, not stat'ed: valgrind gives its client's binary then. */
	int fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
	bool same;

	if (fd < 0)
		return false;
	same = !stat(path, &want) && !fstat(fd, &self) &&
	       want.st_dev == self.st_dev && want.st_ino == self.st_ino;
	close(fd);
	return same;
}
#endif

int keeper_attach(int *fuse_fd, dev_t *dev, bool *background)
{
	const char *env = getenv(KEEPER_ENV);
	int sock, state, bg, role, n = 0;
	unsigned int maj, min;
	void *p;

	if (!env)
		return 0;
	if (sscanf(env, "fuse=%d,sock=%d,state=%d,dev=%u:%u,bg=%d,role=%d%n",
		   fuse_fd, &sock, &state, &maj, &min, &bg, &role, &n) != 7 ||
	    env[n] || *fuse_fd < 0 || sock < 0 || state < 0 ||
	    role < KEEPER_FIRST || role > KEEPER_CHECK)
		return -EINVAL;
	/* Nothing this server starts needs them. */
	fcntl(sock, F_SETFD, FD_CLOEXEC);
	fcntl(state, F_SETFD, FD_CLOEXEC);
	fcntl(*fuse_fd, F_SETFD, FD_CLOEXEC);
	unsetenv(KEEPER_ENV);
	/* The state's fd stays open: the keeper has it at this number, so
	 * no fd this server holds may take it. */
	p = mmap(NULL, sizeof(*srv.st), PROT_READ | PROT_WRITE, MAP_SHARED,
		 state, 0);
	if (p == MAP_FAILED)
		return -errno;
	srv.st = p;
	if (srv.st->version != KEEPER_STATE_VERSION) {
		log_err("the mount's state is version %u; this sectionfs reads version %u",
			srv.st->version, KEEPER_STATE_VERSION);
		return -EPROTO;
	}
	srv.sock = sock;
	srv.role = role;
	if (role != KEEPER_FIRST)
		srv.record_fd = srv.st->record_fd;
#ifdef SFS_TEST_HOOKS
	/* A state only a newer sectionfs could read, as if this one were. */
	if (role == KEEPER_FIRST && getenv("SECTIONFS_TEST_STATE_VERSION"))
		srv.st->version = atoi(getenv("SECTIONFS_TEST_STATE_VERSION"));
	/* A binary that passes an upgrade's test, then dies at start. */
	if (role == KEEPER_SUCCESSOR &&
	    getenv("SECTIONFS_TEST_DIE_AT_START_EXE"))
		srv.die_at_start =
			runs_file(getenv("SECTIONFS_TEST_DIE_AT_START_EXE"));
#endif
	*dev = makedev(maj, min);
	*background = bg;
	return 1;
}

/* ------------------------------------------------------------------ */
/* The keeper */

/* Where `sectionfs --upgrade MOUNTPOINT` finds a mount's keeper: an
 * abstract socket named after the mount point (realpath). */
#define CTL_PREFIX	"sectionfs-keeper:"

enum upgrade {
	UP_NONE,
	UP_CHECKING,	/* the installed binary is testing the state */
	UP_STOPPING,	/* ... it can take over: the server is stopping */
	UP_TRYING,	/* ... stopped: a server of it is taking over */
};

static struct {
	struct fuse_session *se;
	int fuse_fd;
	struct keeper_state *st;
	int state_fd;
	int sock;		/* our end of the current server's socket */
	int sigfd;
	int ctl;		/* listening for --upgrade; -1: none */
	int client;		/* the --upgrade asking now; -1: none */
	int check_sock;		/* our end of the checker's socket */
	pid_t server;
	pid_t checker;		/* an upgrade's test run */
	enum upgrade upgrade;
	char exe[PATH_MAX];	/* where the installed binary is */
	int exe_fd;		/* the binary that served last: servers run it */
	int new_fd;		/* an upgrade's binary, until it serves; -1 */
	char **argv;		/* ... with these arguments */
	char *fd_arg;		/* "/dev/fd/N", in argv */
	dev_t dev;
	bool background;
	bool stopping;		/* a signal asked the mount to stop */
	bool stop_sent;		/* the server said its exit is the end */
	int start_failures;
	/* Requests in flight at the last death, and at how many in a row. */
	uint64_t last[KEEPER_SLOTS];
	uint32_t last_count[KEEPER_SLOTS];
	int n_last;
	/* Held numbers: held[fd] for fd < n_held. */
	bool *held;
	int n_held;
} k = { .sock = -1, .sigfd = -1, .state_fd = -1, .ctl = -1, .client = -1,
	.check_sock = -1, .exe_fd = -1, .new_fd = -1 };

/* The keeper's own fds, which a held fd may need the number of. */
static int *const own_fds[] = { &k.sock, &k.sigfd, &k.ctl, &k.client,
				&k.check_sock, &k.exe_fd, &k.new_fd };

/*
 * Free number fd in the keeper for a held fd: the keeper's own fds are
 * not in the server's table, so the server may have put one of its own
 * there.  Move ours out of the way.
 */
static int make_room(int fd)
{
	for (size_t i = 0; i < sizeof(own_fds) / sizeof(own_fds[0]); i++) {
		int moved;

		if (*own_fds[i] != fd)
			continue;
		moved = fcntl(fd, F_DUPFD_CLOEXEC, fd + 1);
		if (moved < 0)
			return -errno;
		close(fd);
		*own_fds[i] = moved;
	}
	return 0;
}

static int mark_held(int fd, bool held)
{
	if (fd >= k.n_held) {
		int n = fd + 1 > 2 * k.n_held ? fd + 1 : 2 * k.n_held;
		bool *p;

		if (!held)
			return 0;
		p = realloc(k.held, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		memset(p + k.n_held, 0, (n - k.n_held) * sizeof(*p));
		k.held = p;
		k.n_held = n;
	}
	k.held[fd] = held;
	return 0;
}

static bool is_held(int fd)
{
	return fd >= 0 && fd < k.n_held && k.held[fd];
}

/* Keep got (just received) at number want, where a successor finds it. */
static void hold(int got, int want)
{
	int err = 0;

	if (want < 0 || want == k.fuse_fd || want == k.state_fd) {
		log_err("keeper: refusing to hold fd %d", want);
		close(got);
		return;
	}
	if (got != want) {
		err = make_room(want);
		if (!err && dup3(got, want, 0) < 0)
			err = -errno;
		close(got);
	} else if (fcntl(got, F_SETFD, 0) < 0) {
		err = -errno;
	}
	if (!err)
		err = mark_held(want, true);
	if (err)
		log_err("keeper: cannot hold fd %d: %s", want, strerror(-err));
}

/*
 * Take what the server sent.  Returns false once the server's end is
 * closed and everything it sent has been taken.
 */
static bool take_messages(void)
{
	for (;;) {
		char cbuf[CMSG_SPACE(sizeof(int))];
		struct keeper_msg m;
		struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = cbuf,
				     .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c;
		int got = -1;
		ssize_t n;

		n = recvmsg(k.sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN;
		if (n == 0)
			return false;
		for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level == SOL_SOCKET &&
			    c->cmsg_type == SCM_RIGHTS &&
			    c->cmsg_len == CMSG_LEN(sizeof(int)))
				memcpy(&got, CMSG_DATA(c), sizeof(int));
		}
		if (n != sizeof(m)) {
			if (got >= 0)
				close(got);
			continue;
		}
		switch (m.op) {
		case OP_HOLD:
			if (got >= 0)
				hold(got, m.fd);
			break;
		case OP_RELEASE:
			if (is_held(m.fd)) {
				close(m.fd);
				mark_held(m.fd, false);
			}
			break;
		case OP_STOP:
			k.stop_sent = true;
			break;
#ifdef SFS_TEST_HOOKS
		case OP_KILL:
			if (k.server > 0)
				kill(k.server, SIGKILL);
			break;
#endif
		}
		if (m.op != OP_HOLD && got >= 0)
			close(got);
	}
}

static sigset_t keeper_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	return set;
}

/*
 * Run the binary exe (an fd of it) as a server in role: a first one, a
 * successor that finds what is held, or an upgrade's test.  *sock gets
 * our end of its socket.  Returns its PID or -errno.
 *
 * By fd, not by path: a package manager that installs a new binary
 * renames it over the old one, and a server restarted after a crash
 * must run the binary that served, not one never tried on this mount.
 */
static pid_t spawn(enum keeper_role role, int exe, int *sock)
{
	sigset_t none;
	char env[192];
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -errno;
	snprintf(env, sizeof(env),
		 "fuse=%d,sock=%d,state=%d,dev=%u:%u,bg=%d,role=%d",
		 k.fuse_fd, sv[1], k.state_fd, major(k.dev), minor(k.dev),
		 k.background, role);
	pid = fork();
	if (pid < 0) {
		int err = -errno;

		close(sv[0]);
		close(sv[1]);
		return err;
	}
	if (pid == 0) {
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		fcntl(sv[1], F_SETFD, 0);
		fcntl(k.fuse_fd, F_SETFD, 0);
		fcntl(k.state_fd, F_SETFD, 0);
		setenv(KEEPER_ENV, env, 1);
		fexecve(exe, k.argv, environ);
		log_err("keeper: cannot run the server: %s", strerror(errno));
		_exit(127);
	}
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

static int start_server(enum keeper_role role, int exe)
{
	pid_t pid = spawn(role, exe, &k.sock);

	if (pid < 0)
		return pid;
	k.server = pid;
	return 0;
}

/*
 * A server died while serving: note what it was carrying out, and which
 * requests have now been in flight at CRASH_TRIES deaths in a row; the
 * next server answers those EIO when the kernel sends them again.
 */
static void count_crash(void)
{
	struct keeper_state *st = k.st;
	uint64_t now[KEEPER_SLOTS];
	uint32_t count[KEEPER_SLOTS];
	int n = 0;

	for (int i = 0; i < KEEPER_SLOTS; i++) {
		uint64_t u = st->slots[i].unique & ~UNIQUE_RESENT;
		uint32_t c = 1;

		if (!u)
			continue;
		for (int j = 0; j < k.n_last; j++)
			if (k.last[j] == u)
				c = k.last_count[j] + 1;
		now[n] = u;
		count[n++] = c;
		if (c >= CRASH_TRIES && st->n_poison < KEEPER_POISON_MAX) {
			log_err("keeper: request %llu was in flight at %u deaths in a row; it will be answered EIO",
				(unsigned long long)u, c);
			st->poison[st->n_poison++] = u;
		}
	}
	memcpy(k.last, now, n * sizeof(now[0]));
	memcpy(k.last_count, count, n * sizeof(count[0]));
	k.n_last = n;
}

static void describe(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "exited with status %d",
			 WEXITSTATUS(status));
}

/* Tell the --upgrade waiting how it went, and let it go. */
static void answer_client(const char *what)
{
	if (k.client < 0)
		return;
	if (send(k.client, what, strlen(what), MSG_NOSIGNAL) < 0)
		log_warn("keeper: cannot answer --upgrade: %s",
			 strerror(errno));
	close(k.client);
	k.client = -1;
}

/*
 * FORGET has no reply, so the kernel never sends again one that a server
 * read: those the dead server's threads were carrying out (wire.c notes
 * each with its request) are kept for the successor, which does those
 * its record does not say were done (requests_forget_lost()).
 */
static void keep_lost_forgets(struct keeper_state *st)
{
	for (int i = 0; i < KEEPER_SLOTS; i++) {
		const struct keeper_slot *s = &st->slots[i];
		uint32_t n = s->nforget < KEEPER_SLOT_FORGETS ?
			s->nforget : KEEPER_SLOT_FORGETS;

		if (!s->unique || !n)
			continue;
		if (st->n_lost + n > KEEPER_LOST_FORGETS) {
			log_err("keeper: more FORGETs in flight than a successor is handed; some inodes will be held until unmount");
			return;
		}
		for (uint32_t j = 0; j < n; j++)
			st->lost[st->n_lost++] = (struct keeper_lost_forget){
				.unique = s->unique, .f = st->forgets[i][j],
			};
	}
}

/*
 * The requests the dead server was carrying out, added for its
 * successor to those of the servers before it: one that died before it
 * read them all again leaves them to the next.  The oldest go when the
 * list is full; by then they were answered long ago.
 */
static void keep_in_flight(struct keeper_state *st)
{
	uint32_t kept = 0;

	/* Those a successor answered since go (they were zeroed). */
	for (uint32_t i = 0; i < st->n_in_flight && i < KEEPER_SLOTS; i++)
		if (st->in_flight[i])
			st->in_flight[kept++] = st->in_flight[i];
	st->n_in_flight = kept;
	for (int i = 0; i < KEEPER_SLOTS; i++) {
		uint64_t u = st->slots[i].unique & ~UNIQUE_RESENT;

		if (!u || keeper_left_in_flight(st, u))
			continue;
		if (st->n_in_flight == KEEPER_SLOTS) {
			memmove(st->in_flight, st->in_flight + 1,
				(KEEPER_SLOTS - 1) * sizeof(st->in_flight[0]));
			st->n_in_flight--;
		}
		st->in_flight[st->n_in_flight++] = u;
	}
}

/* Start the next server from exe; false when the keeper must give up. */
static bool next_server(int exe)
{
	struct keeper_state *st = k.st;
	int err;

	keep_lost_forgets(st);
	keep_in_flight(st);
	memset(st->slots, 0, sizeof(st->slots));
	st->generation++;
	st->serving = 0;
	err = start_server(KEEPER_SUCCESSOR, exe);
	if (err) {
		log_err("keeper: cannot start a server: %s; giving up",
			strerror(-err));
		return false;
	}
	return true;
}

/*
 * An upgrade's binary serves: it is the one kept from now on, and the
 * binary that served before is let go (one is enough to go back to).
 */
static void upgrade_served(void)
{
	close(k.exe_fd);
	k.exe_fd = k.new_fd;
	k.new_fd = -1;
	k.upgrade = UP_NONE;
	log_info("keeper: the mount is handed to server %d (%s)", k.server,
		 k.exe);
	answer_client("upgraded\n");
}

/*
 * An upgrade's first server died (how) before it could serve: a binary
 * that passed its test and cannot serve all the same.  Rather than try
 * it again, the binary that served before takes the mount back.
 * Returns -1, or the keeper's exit status.
 */
static int go_back(const char *how, bool *unmount)
{
	char answer[256];

	log_err("keeper: the server of %s %s before it could serve; going back to the binary that served before",
		k.exe, how);
	close(k.new_fd);
	k.new_fd = -1;
	k.upgrade = UP_NONE;
	k.start_failures = 0;
	k.st->deaths++;
	*unmount = false;
	if (!next_server(k.exe_fd)) {
		answer_client("failed: the new server died before it could serve, and the old binary could not be started again\n");
		return 1;
	}
	snprintf(answer, sizeof(answer),
		 "failed: the installed sectionfs %s before it could serve; the binary that served before serves the mount again (server %d)\n",
		 how, k.server);
	answer_client(answer);
	return -1;
}

/*
 * The server is gone.  Returns -1 when a successor has been started, or
 * the keeper's exit status.  *unmount says whether to unmount first.
 */
static int server_gone(int status, bool *unmount)
{
	struct keeper_state *st = k.st;
	bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	char how[64];

	/* Everything it sent before it died is in our queue. */
	while (take_messages())
		;
	close(k.sock);
	k.sock = -1;
	k.server = 0;
	describe(status, how, sizeof(how));

	*unmount = true;
	if (k.upgrade == UP_STOPPING && !k.stopping && !k.stop_sent) {
		/* It stopped for the installed binary, which takes over. */
		k.upgrade = UP_TRYING;
		k.start_failures = 0;
		k.n_last = 0;
		if (!next_server(k.new_fd)) {
			answer_client("failed: the new server could not be started\n");
			*unmount = false;
			return 1;
		}
		log_info("keeper: server %d of %s is taking over the mount",
			 k.server, k.exe);
		return -1;
	}
	if (k.upgrade == UP_TRYING) {
		if (st->serving)
			upgrade_served();
		else if (!clean && !k.stopping && !k.stop_sent)
			return go_back(how, unmount);
	}
	if (clean || k.stopping || k.stop_sent)
		return clean ? 0 : 1;
	if (st->init_state == KEEPER_INIT_NONE) {
		/*
		 * Killed before it answered INIT: another first server
		 * gets INIT again (sent again if it was read).  One that
		 * failed of itself would fail again: as if no keeper.
		 */
		if (WIFSIGNALED(status) && ++k.start_failures < START_TRIES) {
			log_warn("server %s before the mount was set up; starting another",
				 how);
			st->deaths++;
			memset(st->slots, 0, sizeof(st->slots));
			return start_server(KEEPER_FIRST, k.exe_fd) ? 1 : -1;
		}
		log_err("server %s before the mount was set up", how);
		return 1;
	}
	*unmount = false;
	if (WIFEXITED(status) && WEXITSTATUS(status) == KEEPER_EXIT_REFUSE) {
		log_err("keeper: the server refused the mount; giving up (the mount now answers ENOTCONN)");
		return 1;
	}
	if (!st->serving) {
		if (++k.start_failures >= START_TRIES) {
			log_err("keeper: %d servers in a row died before serving; giving up (the mount now answers ENOTCONN)",
				k.start_failures);
			return 1;
		}
	} else {
		k.start_failures = 0;
		count_crash();
	}
	log_warn("server %s; starting another", how);
	st->deaths++;
	return next_server(k.exe_fd) ? -1 : 1;
}

/* The upgrade's test run ended: stop the server, or refuse. */
static void checker_gone(int status)
{
	bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;

	close(k.check_sock);
	k.check_sock = -1;
	k.checker = 0;
	if (k.upgrade != UP_CHECKING)
		return;
	if (!ok || k.server <= 0 || k.stopping) {
		char how[64];

		describe(status, how, sizeof(how));
		log_warn("keeper: %s cannot take over this mount (its test %s); the server goes on serving",
			 k.exe, how);
		answer_client("refused: the installed sectionfs cannot take over this mount (it cannot read the mount's state or record, or would not agree to what the kernel agreed to; see the log)\n");
		k.upgrade = UP_NONE;
		close(k.new_fd);
		k.new_fd = -1;
		return;
	}
	/* It finishes what it has, then exits 0 without tearing down. */
	k.upgrade = UP_STOPPING;
	kill(k.server, SIGUSR2);
}

/* An --upgrade connects: root or the mount's owner may ask. */
static void take_client(void)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd = accept4(k.ctl, NULL, NULL, SOCK_CLOEXEC);
	const char *no = NULL;
	pid_t pid;

	if (fd < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) ||
	    (cred.uid != 0 && cred.uid != getuid()))
		no = "refused: only root or the mount's owner may upgrade it\n";
	else if (k.upgrade != UP_NONE || k.client >= 0)
		no = "refused: an upgrade is already under way\n";
	else if (k.server <= 0 || !k.st->serving || k.stopping)
		no = "refused: the mount is not being served now; try again\n";
	if (no) {
		if (send(fd, no, strlen(no), MSG_NOSIGNAL) < 0)
			log_debug("keeper: %s", strerror(errno));
		close(fd);
		return;
	}
	k.client = fd;
	/* What is tested is what serves, whatever is installed later. */
	k.new_fd = open(k.exe, O_PATH | O_CLOEXEC);
	if (k.new_fd < 0) {
		char answer[PATH_MAX + 64];

		snprintf(answer, sizeof(answer), "failed: %s: %s\n", k.exe,
			 strerror(errno));
		answer_client(answer);
		return;
	}
	pid = spawn(KEEPER_CHECK, k.new_fd, &k.check_sock);
	if (pid < 0) {
		close(k.new_fd);
		k.new_fd = -1;
		answer_client("failed: cannot run the installed sectionfs\n");
		return;
	}
	k.checker = pid;
	k.upgrade = UP_CHECKING;
	log_info("keeper: upgrade asked: testing %s", k.exe);
}

static void ctl_name(const char *mountpoint, struct sockaddr_un *sa,
		     socklen_t *len)
{
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "%s%s",
		     CTL_PREFIX, mountpoint);
	if (n > (int)sizeof(sa->sun_path) - 1)
		n = sizeof(sa->sun_path) - 1;
	*len = offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

/* Listen for --upgrade; a mount without it still serves. */
static void listen_ctl(const char *mountpoint)
{
	struct sockaddr_un sa;
	socklen_t len;

	ctl_name(mountpoint, &sa, &len);
	k.ctl = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (k.ctl < 0 || bind(k.ctl, (struct sockaddr *)&sa, len) ||
	    listen(k.ctl, 4)) {
		log_warn("keeper: no --upgrade for %s: %s", mountpoint,
			 strerror(errno));
		if (k.ctl >= 0)
			close(k.ctl);
		k.ctl = -1;
	}
}

/* Make the server's argv: ours, the mount point given as the fd. */
static int server_argv(char *argv[], const char *mount_arg)
{
	int argc = 0, at = -1;

	while (argv[argc])
		argc++;
	/* The last argument equal to it that is not an -o value. */
	for (int i = argc - 1; i > 0 && at < 0; i--) {
		if (!strcmp(argv[i], mount_arg) && strcmp(argv[i - 1], "-o"))
			at = i;
	}
	if (at < 0)
		return -EINVAL;
	k.argv = calloc(argc + 1, sizeof(char *));
	if (!k.argv || asprintf(&k.fd_arg, "/dev/fd/%d", k.fuse_fd) < 0)
		return -ENOMEM;
	for (int i = 0; i < argc; i++)
		k.argv[i] = i == at ? k.fd_arg : argv[i];
	return 0;
}

static int make_state(void)
{
	void *p;

	k.state_fd = memfd_create("sectionfs-state", MFD_CLOEXEC);
	if (k.state_fd < 0)
		return -errno;
	if (ftruncate(k.state_fd, sizeof(*k.st)))
		return -errno;
	p = mmap(NULL, sizeof(*k.st), PROT_READ | PROT_WRITE, MAP_SHARED,
		 k.state_fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	k.st = p;
	k.st->version = KEEPER_STATE_VERSION;
	k.st->record_fd = -1;
	return 0;
}

/* Reap children; returns -1, or the keeper's exit status. */
static int reap(bool *unmount)
{
	for (;;) {
		int status, r;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid <= 0)
			return -1;
		if (pid == k.checker) {
			checker_gone(status);
			continue;
		}
		if (pid != k.server)
			continue;
		r = server_gone(status, unmount);
		if (r >= 0)
			return r;
	}
}

int keeper_run(struct fuse_session *se, char *argv[], const char *mount_arg,
	       const char *mountpoint, dev_t dev, bool foreground)
{
	sigset_t set = keeper_signals();
	bool unmount = true;
	ssize_t len;
	int ret = 1, err;

	k.se = se;
	k.fuse_fd = fuse_session_fd(se);
	k.dev = dev;
	k.background = !foreground;
	len = readlink("/proc/self/exe", k.exe, sizeof(k.exe) - 1);
	if (len <= 0) {
		log_err("keeper: cannot find its own binary: %s",
			strerror(errno));
		goto out;
	}
	k.exe[len] = '\0';
	/* The file this process runs, even if another is installed now. */
	k.exe_fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
	if (k.exe_fd < 0) {
		log_err("keeper: cannot open its own binary: %s",
			strerror(errno));
		goto out;
	}
	if ((err = server_argv(argv, mount_arg)) || (err = make_state())) {
		log_err("keeper: cannot start: %s", strerror(-err));
		goto out;
	}
	sigprocmask(SIG_BLOCK, &set, NULL);
	k.sigfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (k.sigfd < 0) {
		log_err("keeper: signalfd: %s", strerror(errno));
		goto out;
	}
	listen_ctl(mountpoint);
	fuse_daemonize(foreground);
	if ((err = start_server(KEEPER_FIRST, k.exe_fd))) {
		log_err("keeper: cannot start the server: %s", strerror(-err));
		goto out;
	}
	log_debug("keeper %d: server %d serves %s", getpid(), k.server,
		  mountpoint);

	for (;;) {
		struct pollfd pfd[3] = {
			{ .fd = k.sigfd, .events = POLLIN },
			{ .fd = k.sock, .events = POLLIN },
			{ .fd = k.ctl, .events = POLLIN },
		};
		struct signalfd_siginfo si;
		/* An upgrade's server says it serves only in the state. */
		int wait = k.upgrade == UP_TRYING ? TRY_POLL_MS : -1;

		if (poll(pfd, 3, wait) < 0) {
			if (errno == EINTR)
				continue;
			log_err("keeper: poll: %s", strerror(errno));
			goto out;
		}
		if (k.upgrade == UP_TRYING && k.server > 0 &&
		    __atomic_load_n(&k.st->serving, __ATOMIC_ACQUIRE))
			upgrade_served();
		if (k.sock >= 0 && pfd[1].revents) {
			nanosleep(&(struct timespec){ .tv_nsec = BATCH_NS },
				  NULL);
			take_messages();
		}
		if (k.ctl >= 0 && (pfd[2].revents & POLLIN))
			take_client();
		if (!(pfd[0].revents & POLLIN))
			continue;
		if (read(k.sigfd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo != SIGCHLD) {
			/* A service manager stops a mount this way. */
			k.stopping = true;
			if (k.server > 0)
				kill(k.server, si.ssi_signo);
			if (k.checker > 0)
				kill(k.checker, SIGKILL);
			continue;
		}
		ret = reap(&unmount);
		if (ret >= 0)
			goto out;
	}
out:
	answer_client("failed: the mount ended\n");
	if (unmount) {
		fuse_session_unmount(se);
		return ret;
	}
	/* Given up: the mount stays, answering ENOTCONN once this process
	 * (the last holder of the connection) is gone, and the session
	 * cannot be freed without unmounting. */
	exit(ret);
}

int keeper_upgrade(const char *mountpoint)
{
	char path[PATH_MAX], answer[512];
	struct sockaddr_un sa;
	socklen_t len;
	ssize_t n;
	int fd;

	if (!realpath(mountpoint, path)) {
		fprintf(stderr, "sectionfs: %s: %s\n", mountpoint,
			strerror(errno));
		return 1;
	}
	ctl_name(path, &sa, &len);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, len)) {
		fprintf(stderr, "sectionfs: no sectionfs keeper for %s: %s\n",
			path, strerror(errno));
		return 1;
	}
	/* The keeper answers once the mount is handed over, or not. */
	n = recv(fd, answer, sizeof(answer) - 1, 0);
	close(fd);
	if (n <= 0) {
		fprintf(stderr, "sectionfs: the keeper of %s did not answer\n",
			path);
		return 1;
	}
	answer[n] = '\0';
	if (!strncmp(answer, "upgraded", 8)) {
		printf("sectionfs: %s: %s", path, answer);
		return 0;
	}
	fprintf(stderr, "sectionfs: %s: %s", path, answer);
	return 1;
}
