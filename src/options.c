/*
 * options.c - parse and validate sectionfs's -o options.
 *
 * Owns the option table (fuse_opt, offsetof into struct sfs_options), the
 * value grammars (sizes, modes) and the -h text for our options.  It reads
 * nothing (the machine's memory, which size=N% needs, is the caller's to
 * give) and writes only text: the -h text on stdout, one line on stderr
 * for what libfuse's parser rejects through its callback (a wrong subtype,
 * an extra argument), and any other error into the caller's buffer.  It
 * decides nothing about how a mount behaves.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "values.h"

#define OPT(t, p) { t, offsetof(struct sfs_options, p), 1 }

enum { KEY_SUBTYPE };

static const struct fuse_opt sfs_opt_spec[] = {
	OPT("passthrough=%s", passthrough_str),
	OPT("io_uring=%s", io_uring_str),
	OPT("size=%s", size_str),
	OPT("lifetime=%s", lifetime_str),
	OPT("commit=%s", commit_str),
	OPT("umask=%s", umask_str),
	OPT("mode=%s", mode_str),
	OPT("nr_inodes=%s", nr_inodes_str),
	OPT("uid=%s", uid_str),
	OPT("gid=%s", gid_str),
	OPT("writeback_cache", writeback),
	OPT("usrquota_block_hardlimit=%s", usr_block_str),
	OPT("usrquota_inode_hardlimit=%s", usr_inode_str),
	OPT("grpquota_block_hardlimit=%s", grp_block_str),
	OPT("grpquota_inode_hardlimit=%s", grp_inode_str),
	OPT("usrquota", quota.usrquota),
	OPT("grpquota", quota.grpquota),
	FUSE_OPT_KEY("subtype=", KEY_SUBTYPE),
	FUSE_OPT_END
};

/*
 * Options not ours stay in args for libfuse.  Non-option arguments are
 * held back: whether the first is a source or the mount point is known
 * only once all are seen.
 */
static int keep_arg(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct sfs_options *o = data;

	/* mount.fuse3 passes subtype=sectionfs; another would hide the
	 * mount from sectionctl, which knows it by its type. */
	if (key == KEY_SUBTYPE && strcmp(arg, "subtype=sectionfs")) {
		fprintf(stderr, "sectionfs: bad option '%s': the subtype is "
			"sectionfs (the mount's type, fuse.sectionfs, is how "
			"sectionctl knows it)\n", arg);
		return -1;
	}
	if (key != FUSE_OPT_KEY_NONOPT)
		return 1;
	if (o->n_nonopt == 2) {
		fprintf(stderr, "sectionfs: unexpected argument '%s'\n", arg);
		return -1;
	}
	o->nonopt[o->n_nonopt] = strdup(arg);
	if (!o->nonopt[o->n_nonopt])
		return -1;
	o->n_nonopt++;
	return 0;
}

/* Give libfuse the mount point: the last non-option argument. */
static int pass_mountpoint(struct fuse_args *args, struct sfs_options *o)
{
	if (o->n_nonopt == 0)
		return 0;
	return fuse_opt_add_arg(args, o->nonopt[o->n_nonopt - 1]);
}

/* auto, on or off: the index into choices[] of the three, in that order. */
static int parse_auto_on_off(const char *s, const int choices[3], int *out)
{
	static const char *const names[] = { "auto", "on", "off" };

	for (int i = 0; i < 3; i++) {
		if (!strcmp(s, names[i])) {
			*out = choices[i];
			return 0;
		}
	}
	return -EINVAL;
}

int parse_passthrough(const char *s, enum pt_mode *out)
{
	static const int modes[] = { PT_AUTO, PT_ON, PT_OFF };
	int mode;

	if (parse_auto_on_off(s, modes, &mode))
		return -EINVAL;
	*out = mode;
	return 0;
}

int parse_io_uring(const char *s, enum uring_mode *out)
{
	static const int modes[] = { URING_AUTO, URING_ON, URING_OFF };
	int mode;

	if (parse_auto_on_off(s, modes, &mode))
		return -EINVAL;
	*out = mode;
	return 0;
}

int parse_lifetime(const char *s, enum lifetime_mode *out)
{
	if (!strcmp(s, "name"))
		*out = LIFETIME_NAME;
	else if (!strcmp(s, "handle"))
		*out = LIFETIME_HANDLE;
	else
		return -EINVAL;
	return 0;
}

int parse_commit(const char *s, enum commit_mode *out)
{
	if (!strcmp(s, "lazy"))
		*out = COMMIT_LAZY;
	else if (!strcmp(s, "eager"))
		*out = COMMIT_EAGER;
	else
		return -EINVAL;
	return 0;
}

/* An octal mode of at most max: digits only, no blanks, sign or 0x. */
static int parse_octal(const char *s, unsigned long max, mode_t *out)
{
	char *end;
	unsigned long v;

	/* strtoul would also take leading blanks and a sign. */
	if (!s || *s < '0' || *s > '7')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 8);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = (mode_t)v;
	return 0;
}

int parse_umask(const char *s, mode_t *out)
{
	return parse_octal(s, 0777, out);
}

int parse_mode(const char *s, mode_t *out)
{
	return parse_octal(s, 07777, out);
}

int parse_id(const char *s, unsigned int *out)
{
	char *end;
	unsigned long v;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	/* (unsigned)-1 means "no change" to chown(2): not an owner. */
	if (errno || *end || v >= UINT_MAX)
		return -EINVAL;
	*out = (unsigned int)v;
	return 0;
}

int parse_limit(const char *s, uint64_t *out)
{
	uint64_t v;

	if (!s || strchr(s, '%') || parse_size(s, 0, &v) || v == 0)
		return -EINVAL;
	*out = v;
	return 0;
}

const char *options_quota_needs_cached(const struct sfs_options *o)
{
	/* A section's bytes live in one store, sized for one limit. */
	if (o->quota.grp_block)
		return "grpquota_block_hardlimit: the kernel cannot hold a group to it on passthrough";
	if (o->quota.usr_block && o->size)
		return "usrquota_block_hardlimit with size=: the kernel cannot hold both on passthrough";
	return NULL;
}

static int bad_value(char *msg, size_t msglen, const char *name,
		     const char *value, const char *expected)
{
	snprintf(msg, msglen, "invalid value '%s' for option '%s' (expected %s)",
		 value, name, expected);
	return -EINVAL;
}

/*
 * The writeback cache lets the kernel acknowledge a write before the
 * daemon sees it, so nothing the daemon refuses can be refused in time:
 * not a write past a size cap, nor past a user's or group's byte limit.
 * And with passthrough the daemon sees no data at all.
 */
static int check_writeback(const struct sfs_options *o, char *msg,
			   size_t msglen)
{
	if (!o->writeback)
		return 0;
	if (o->size) {		/* size=0 is no cap */
		snprintf(msg, msglen, "option 'writeback_cache' cannot be used with 'size': the kernel would accept writes past the cap");
		return -EINVAL;
	}
	if (o->quota.usr_block || o->quota.grp_block) {
		snprintf(msg, msglen, "option 'writeback_cache' cannot be used with '%s': the kernel would accept writes past the limit",
			 o->quota.usr_block ? "usrquota_block_hardlimit" :
					      "grpquota_block_hardlimit");
		return -EINVAL;
	}
	if (o->passthrough == PT_ON) {
		snprintf(msg, msglen, "option 'writeback_cache' is for the cached data path; it cannot be used with 'passthrough=on'");
		return -EINVAL;
	}
	return 0;
}

static int validate(struct sfs_options *o, uint64_t total_mem,
		    char *msg, size_t msglen)
{
	if (o->passthrough_str &&
	    parse_passthrough(o->passthrough_str, &o->passthrough))
		return bad_value(msg, msglen, "passthrough", o->passthrough_str,
				 "auto, on or off");
	if (o->io_uring_str && parse_io_uring(o->io_uring_str, &o->io_uring))
		return bad_value(msg, msglen, "io_uring", o->io_uring_str,
				 "auto, on or off");
	if (o->size_str && parse_size(o->size_str, total_mem, &o->size))
		return bad_value(msg, msglen, "size", o->size_str,
				 "a number with an optional k, m, g, t or % suffix");
	if (o->lifetime_str && parse_lifetime(o->lifetime_str, &o->lifetime))
		return bad_value(msg, msglen, "lifetime", o->lifetime_str,
				 "name or handle");
	if (o->commit_str && parse_commit(o->commit_str, &o->commit))
		return bad_value(msg, msglen, "commit", o->commit_str,
				 "lazy or eager");
	if (o->umask_str && parse_umask(o->umask_str, &o->umask))
		return bad_value(msg, msglen, "umask", o->umask_str,
				 "an octal mode up to 0777");
	o->root_mode = 0777 & ~o->umask;
	if (o->mode_str && o->umask_str) {
		snprintf(msg, msglen, "option mode: give mode= or umask=, not both");
		return -EINVAL;
	}
	if (o->mode_str && parse_mode(o->mode_str, &o->root_mode))
		return bad_value(msg, msglen, "mode", o->mode_str,
				 "an octal mode up to 07777");
	/* tmpfs's default: half the machine's pages, each node (about
	 * 400 bytes of the daemon's memory) standing for one. */
	o->nr_inodes = total_mem / 8192 > 1024 ? total_mem / 8192 : 1024;
	if (o->nr_inodes_str && parse_limit(o->nr_inodes_str, &o->nr_inodes))
		return bad_value(msg, msglen, "nr_inodes", o->nr_inodes_str,
				 "a count with an optional k, m, g or t suffix, not 0");
	if (o->uid_str && parse_id(o->uid_str, &o->uid))
		return bad_value(msg, msglen, "uid", o->uid_str, "a user id");
	if (o->gid_str && parse_id(o->gid_str, &o->gid))
		return bad_value(msg, msglen, "gid", o->gid_str, "a group id");
	if (o->usr_block_str && parse_limit(o->usr_block_str, &o->quota.usr_block))
		return bad_value(msg, msglen, "usrquota_block_hardlimit",
				 o->usr_block_str, "a size with an optional k, m, g or t suffix, not 0");
	if (o->usr_inode_str && parse_limit(o->usr_inode_str, &o->quota.usr_inode))
		return bad_value(msg, msglen, "usrquota_inode_hardlimit",
				 o->usr_inode_str, "a count with an optional k, m, g or t suffix, not 0");
	if (o->grp_block_str && parse_limit(o->grp_block_str, &o->quota.grp_block))
		return bad_value(msg, msglen, "grpquota_block_hardlimit",
				 o->grp_block_str, "a size with an optional k, m, g or t suffix, not 0");
	if (o->grp_inode_str && parse_limit(o->grp_inode_str, &o->quota.grp_inode))
		return bad_value(msg, msglen, "grpquota_inode_hardlimit",
				 o->grp_inode_str, "a count with an optional k, m, g or t suffix, not 0");
	if (o->passthrough == PT_ON && options_quota_needs_cached(o)) {
		snprintf(msg, msglen, "option %s: use passthrough=auto or off",
			 options_quota_needs_cached(o));
		return -EINVAL;
	}
	o->uid_set = o->uid_str != NULL;
	o->gid_set = o->gid_str != NULL;
	return check_writeback(o, msg, msglen);
}

int options_parse(struct fuse_args *args, struct sfs_options *opts,
		  uint64_t total_mem, char *msg, size_t msglen)
{
	memset(opts, 0, sizeof(*opts));
	opts->passthrough = PT_AUTO;
	opts->io_uring = URING_AUTO;
	opts->lifetime = LIFETIME_NAME;
	opts->commit = COMMIT_LAZY;
	opts->umask = 022;

	if (fuse_opt_parse(args, opts, sfs_opt_spec, keep_arg) == -1 ||
	    pass_mountpoint(args, opts) == -1) {
		/* What could not be read has been printed already. */
		msg[0] = '\0';
		return -EINVAL;
	}
	return validate(opts, total_mem, msg, msglen);
}

void options_free(struct sfs_options *opts)
{
	free(opts->passthrough_str);
	free(opts->io_uring_str);
	free(opts->size_str);
	free(opts->lifetime_str);
	free(opts->commit_str);
	free(opts->umask_str);
	free(opts->mode_str);
	free(opts->nr_inodes_str);
	free(opts->uid_str);
	free(opts->gid_str);
	free(opts->usr_block_str);
	free(opts->usr_inode_str);
	free(opts->grp_block_str);
	free(opts->grp_inode_str);
	free(opts->nonopt[0]);
	free(opts->nonopt[1]);
}

void options_print_help(void)
{
	printf("sectionfs options:\n"
	       "    -o passthrough=auto|on|off  kernel passthrough data path (default auto)\n"
	       "    -o io_uring=auto|on|off     requests over io_uring (default auto: /dev/fuse,\n"
	       "                                which loses nothing when a server dies)\n"
	       "    -o size=N[k|m|g|t|%%]        cap on page-file-backed bytes (default none)\n"
	       "    -o lifetime=name|handle     when unnamed sections die (default name)\n"
	       "    -o commit=lazy|eager        allocate section memory on resize (default lazy)\n"
	       "    -o writeback_cache          on the cached path, let the kernel cache writes\n"
	       "    -o uid=N,gid=N              owner of the root directory\n"
	       "    -o umask=OCTAL              root directory mode is 0777 & ~umask (default 022)\n"
	       "    -o mode=OCTAL               root directory mode, sticky bit included (1777: as /dev/shm)\n"
	       "    -o nr_inodes=N[k|m|g]       nodes the mount may hold (default: half the RAM pages)\n"
	       "    -o allow_other              let other users use the mount\n"
	       "    -o usrquota_block_hardlimit=N[k|m|g|t]  page-file bytes per user\n"
	       "    -o usrquota_inode_hardlimit=N  sections per user\n"
	       "    -o grpquota_block_hardlimit=N[k|m|g|t]  page-file bytes per group\n"
	       "    -o grpquota_inode_hardlimit=N  sections per group\n"
	       "    -o usrquota,grpquota        count usage per user, group (sectionctl quota)\n"
	       "\n");
}
