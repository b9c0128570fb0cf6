/*
 * main.c - start, serve and stop one sectionfs mount.
 *
 * Only wiring, in libfuse's order.  The process a user starts parses the
 * options, mounts and becomes the mount's keeper (keeper.h), which runs
 * this binary again as the server; the server creates its session on the
 * keeper's connection, installs signal handlers, builds or takes over
 * the namespace, serves and tears down.  Each step that can fail undoes
 * the ones before it through the out_* labels.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "connection.h"
#include "keeper.h"
#include "log.h"
#include "mount.h"
#include "record.h"
#include "requests.h"
#include "store.h"
#include "uring.h"
#include "wire.h"

/* See requests.c for why names are kept long and attributes briefly. */
#define ENTRY_TIMEOUT	86400.0
#define ATTR_TIMEOUT	1.0

static uint64_t total_memory(void)
{
	struct sysinfo si;

	if (sysinfo(&si))
		return 0;
	return (uint64_t)si.totalram * si.mem_unit;
}

/*
 * Every section holds an fd, so take all the fds the hard limit allows.
 * Failure is not fatal: creating sections then fails with EMFILE sooner.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			log_warn("cannot raise the open file limit: %s",
				 strerror(errno));
	}
}

/*
 * This mount's device, which file-backed sections may not point into.
 * AT_STATX_DONT_SYNC: the answer must not need this daemon, which is not
 * serving yet.
 */
static int mount_device(const char *mountpoint, dev_t *dev)
{
	struct statx stx;

	if (statx(AT_FDCWD, mountpoint, AT_STATX_DONT_SYNC, STATX_TYPE, &stx)) {
		log_err("cannot stat %s: %s", mountpoint, strerror(errno));
		return -1;
	}
	*dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	return 0;
}

static void usage(const char *prog)
{
	printf("usage: %s [options] MOUNTPOINT\n\n"
	       "Mount a sectionfs: every regular file is a memory section.\n\n",
	       prog);
	fuse_cmdline_help();
	fuse_lowlevel_help();
	options_print_help();
}

/*
 * Serve until unmounted or told to stop.  libfuse's loops return 0, the
 * number of the signal that stopped them, or -errno; only the last is a
 * failure: SIGTERM is how a service manager stops a mount.
 */
static int serve(struct fuse_session *se, struct fuse_cmdline_opts *cl)
{
	struct fuse_loop_config *cfg;
	int ret;

	if (cl->singlethread)
		return fuse_session_loop(se);
	cfg = fuse_loop_cfg_create();
	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(cfg, cl->clone_fd);
	fuse_loop_cfg_set_max_threads(cfg, cl->max_threads);
	/* UINT_MAX: not given (libfuse would log it as out of range). */
	if (cl->max_idle_threads != UINT_MAX)
		fuse_loop_cfg_set_idle_threads(cfg, cl->max_idle_threads);
	ret = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return ret;
}

/*
 * The process a user started: mount, then keep the mount (keeper.h).
 * The mount point is stat'ed before any server runs, and so before the
 * mount could need one to answer.
 */
static int keep(struct sfs_mount *m, struct fuse_cmdline_opts *cl,
		char *argv[])
{
	dev_t dev;
	int ret;

	if (conn_check(m))
		return 1;
	if (fuse_session_mount(m->se, cl->mountpoint) != 0)
		return 1;
	if (mount_device(cl->mountpoint, &dev)) {
		fuse_session_unmount(m->se);
		return 1;
	}
	ret = keeper_run(m->se, argv, m->opts.nonopt[m->opts.n_nonopt - 1],
			 cl->mountpoint, dev, cl->foreground);
	return ret;
}

/*
 * Whether the kernel still has inode ino: asked to drop the attributes
 * it caches of an inode it does not have, it answers ENOENT.
 */
static bool kernel_holds(fuse_ino_t ino, void *se)
{
	return fuse_lowlevel_notify_inval_inode(se, ino, -1, 0) != -ENOENT;
}

/*
 * A first server starts the record of its namespace (without one, a
 * successor could not adopt the mount: it serves all the same); a
 * successor rebuilds the namespace from it, after INIT has set up the
 * cap and the stores its sections are charged to.
 */
static int start_record(struct sfs_mount *m)
{
	size_t gone;
	int err;

	if (keeper_role() == KEEPER_FIRST) {
		if (record_start(&m->ns))
			log_warn("no record of the namespace: a successor could not adopt this mount");
		return 0;
	}
	err = record_adopt(&m->ns);
	if (err)
		return err;
	requests_forget_lost(&m->ns);
	requests_appends_left(&m->ns);
	gone = ns_let_go_unheld(&m->ns, kernel_holds, m->se);
	if (gone)
		log_info("let go of %zu removed sections whose FORGET died with the last server",
			 gone);
	record_charge(&m->ns);
	return 0;
}

/*
 * SIGUSR2, from the keeper: an upgrade.  The server stops taking
 * requests, finishes those it has, and exits 0 without tearing anything
 * down: sections, backing ids and the record are the next server's.
 */
static struct fuse_session *served;
static volatile sig_atomic_t handing_over;

static void hand_over(int sig)
{
	(void)sig;
	handing_over = 1;
	if (served)
		fuse_session_exit(served);
}

static int catch_hand_over(struct fuse_session *se)
{
	struct sigaction sa = { .sa_handler = hand_over };

	served = se;
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGUSR2, &sa, NULL);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cl = { 0 };
	struct sfs_mount m = { 0 };
	bool kept_background = false;
	dev_t kept_dev = 0;
	int fuse_fd, kept, err;
	mode_t root_mode;
	char msg[256];
	int ret = 1;

	log_setup(0, 0);
	if (argc == 3 && !strcmp(argv[1], "--upgrade"))
		return keeper_upgrade(argv[2]);
	/* Started by a keeper: serve the mount it holds. */
	kept = keeper_attach(&fuse_fd, &kept_dev, &kept_background);
	if (kept < 0) {
		/* A state of another version was named where it was read. */
		if (kept != -EPROTO)
			log_err("cannot take over the mount: %s",
				strerror(-kept));
		return KEEPER_EXIT_REFUSE;
	}
	if (options_parse(&args, &m.opts, total_memory(), msg, sizeof(msg))) {
		if (msg[0])
			fprintf(stderr, "sectionfs: %s\n", msg);
		goto out_opts;
	}
	if (fuse_parse_cmdline(&args, &cl) != 0)
		goto out_opts;
	if (cl.show_help) {
		usage(argv[0]);
		ret = 0;
		goto out_cmdline;
	}
	if (cl.show_version) {
		printf("sectionfs version %s\n", PACKAGE_VERSION);
#ifdef SFS_TEST_HOOKS
		printf("built with the test suite's hooks\n");
#endif
		fuse_lowlevel_version();
		ret = 0;
		goto out_cmdline;
	}
	/* A successor must know what each thread was doing (keeper.h). */
	if (cl.max_threads > KEEPER_SLOTS) {
		fprintf(stderr, "sectionfs: max_threads: at most %d\n",
			KEEPER_SLOTS);
		goto out_cmdline;
	}
	/* libfuse 3.14 then ends threads until none is left reading. */
	if (cl.max_idle_threads == 0) {
		fprintf(stderr, "sectionfs: max_idle_threads: at least 1\n");
		goto out_cmdline;
	}
	if (!cl.mountpoint) {
		fprintf(stderr, "usage: %s [options] MOUNTPOINT\n"
			"       %s --upgrade MOUNTPOINT\n"
			"       %s -h for the options\n", argv[0], argv[0],
			argv[0]);
		goto out_cmdline;
	}
	/* Not in the foreground: syslog from here on, see log.c. */
	log_setup(kept ? kept_background : !cl.foreground, cl.debug);
	raise_fd_limit();

	/*
	 * Permissions are always the kernel's to check.  Set-ID programs
	 * have no place in shared memory, and with passthrough the daemon
	 * could not clear set-ID bits on writes it never sees: nosuid
	 * always, after the user's options so that it wins.
	 */
	if (fuse_opt_add_arg(&args, "-odefault_permissions,nosuid"))
		goto out_cmdline;
	m.se = fuse_session_new(&args, &sfs_ops, sizeof(sfs_ops), &m);
	if (!m.se)
		goto out_cmdline;
	if (!kept) {
		ret = keep(&m, &cl, argv);
		goto out_session;
	}
	/* A cloned fd's requests die with the server that cloned it. */
	if (cl.clone_fd) {
		log_info("clone_fd has no effect: requests must outlive a server");
		cl.clone_fd = 0;
	}
	if (fuse_set_signal_handlers(m.se) != 0 || catch_hand_over(m.se))
		goto out_session;
	/* The keeper's connection, which cl.mountpoint names (/dev/fd/N). */
	if (fuse_session_mount(m.se, cl.mountpoint) != 0)
		goto out_signals;
	if (conn_setup(&m) != 0)
		goto out_unmount;
	/* The tree lives inside the mount: sections release their
	 * passthrough ids on the session's fd, which unmount closes. */
	root_mode = m.opts.root_mode;
	if (ns_init(&m.ns, &m.modes, root_mode,
		    m.opts.uid_set ? m.opts.uid : getuid(),
		    m.opts.gid_set ? m.opts.gid : getgid(),
		    ENTRY_TIMEOUT, ATTR_TIMEOUT)) {
		log_err("out of memory");
		goto out_unmount;
	}
	m.modes.self_dev = kept_dev;
	m.modes.commit_eager = m.opts.commit == COMMIT_EAGER;
	m.modes.nr_inodes = m.opts.nr_inodes;
	m.modes.lifetime = m.opts.lifetime;
	m.single_thread = cl.singlethread;

	if (notify_start(&m.notify, m.se))
		goto out_notify;
	/* A successor answers the old INIT before anything else (an
	 * upgrade's test run ends there). */
	if (keeper_role() != KEEPER_FIRST &&
	    (wire_replay_init(m.se) || m.init_failed)) {
		ret = KEEPER_EXIT_REFUSE;
		goto out_notify;
	}
	if (keeper_role() == KEEPER_CHECK) {
		/*
		 * This binary could take over, unless the record is of a
		 * version it does not read.  Only that refuses: the record's
		 * descriptor the state names may be one the keeper had not
		 * yet collected when this check was forked (a compaction
		 * made it just then), and the server that takes over reads
		 * the record whole anyway.
		 */
		ret = record_readable() == -EPROTO ? KEEPER_EXIT_REFUSE : 0;
		goto out_notify;
	}
	if ((err = start_record(&m))) {
		log_err("cannot take over the namespace: %s", strerror(-err));
		ret = KEEPER_EXIT_REFUSE;
		goto out_notify;
	}
	keeper_serving();
	/* What a dead server read comes again (INIT too, should the
	 * first have died before answering it). */
	if (keeper_role() != KEEPER_FIRST || keeper_state()->deaths)
		wire_resend(m.se);
	if (ns_sealer_start(&m.ns))
		log_warn("no sealer thread: seals that would wait are EBUSY");
	ret = serve(m.se, &cl) < 0 ? 1 : 0;
	if (handing_over) {
		/* The threads end; the namespace, its sections and their
		 * ids are left as they are, for the next server. */
		ns_sealer_stop(&m.ns);
		uring_stop();
		notify_stop(&m.notify);
		log_info("the mount is handed over to the next server");
		exit(0);
	}
	/* Before the rings stop: its last answers go through them. */
	ns_sealer_stop(&m.ns);
	if (uring_stop())
		ret = 1;
out_notify:
	notify_stop(&m.notify);
	/* A first server's INIT that failed ends the mount. */
	if (m.init_failed && keeper_role() == KEEPER_FIRST) {
		ret = 1;
		keeper_stop();
	}
	ns_destroy(&m.ns);
	store_fini();
out_unmount:
	/* The keeper's mount: a server leaves it to the keeper. */
	fuse_session_unmount(m.se);
out_signals:
	fuse_remove_signal_handlers(m.se);
out_session:
	fuse_session_destroy(m.se);
out_cmdline:
	free(cl.mountpoint);
out_opts:
	options_free(&m.opts);
	fuse_opt_free_args(&args);
	return ret;
}
