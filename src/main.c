/*
 * main.c - start, serve and stop one sectionfs mount.
 *
 * Only wiring, in libfuse's order: parse options, create the session,
 * install signal handlers, mount, daemonize, serve, unmount, tear down.
 * Each step that can fail undoes the ones before it through the out_*
 * labels.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
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
#include "log.h"
#include "mount.h"
#include "record.h"
#include "requests.h"
#include "store.h"
#include "uring.h"

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
	ret = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return ret;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cl = { 0 };
	struct sfs_mount m = { 0 };
	mode_t root_mode;
	char msg[256];
	int ret = 1;

	log_setup(0, 0);
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
		fuse_lowlevel_version();
		ret = 0;
		goto out_cmdline;
	}
	if (!cl.mountpoint) {
		fprintf(stderr, "usage: %s [options] MOUNTPOINT\n"
			"       %s -h for the options\n", argv[0], argv[0]);
		goto out_cmdline;
	}
	/* Not in the foreground: syslog from here on, see log.c. */
	log_setup(!cl.foreground, cl.debug);
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
	if (fuse_set_signal_handlers(m.se) != 0)
		goto out_session;
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
	if (mount_device(cl.mountpoint, &m.modes.self_dev))
		goto out_ns;
	if (record_start(&m.ns))
		log_warn("no record of the namespace: a successor could not "
			 "adopt this mount");
	m.modes.commit_eager = m.opts.commit == COMMIT_EAGER;
	m.modes.nr_inodes = m.opts.nr_inodes;
	m.modes.lifetime = m.opts.lifetime;
	m.single_thread = cl.singlethread;

	fuse_daemonize(cl.foreground);

	notify_start(&m.notify, m.se);	/* without it, notices go inline */
	if (ns_sealer_start(&m.ns))
		log_warn("no sealer thread: seals that would wait are EBUSY");
	ret = serve(m.se, &cl) < 0 ? 1 : 0;
	/* Before the rings stop: its last answers go through them. */
	ns_sealer_stop(&m.ns);
	if (uring_stop())
		ret = 1;
	notify_stop(&m.notify);
	if (m.init_failed)
		ret = 1;
out_ns:
	ns_destroy(&m.ns);
	store_fini();
out_unmount:
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
