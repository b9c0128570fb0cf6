/*
 * options.h - the daemon's -o options: parsing and validation.
 *
 * Pure logic: everything here takes its inputs as arguments and touches
 * no mount, so test/unit_options.c checks it directly.  Parsing happens
 * before anything is mounted, and a bad option is reported in one line
 * naming it.
 */
#ifndef SECTIONFS_OPTIONS_H
#define SECTIONFS_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <fuse_opt.h>

#include "passthrough.h"	/* enum pt_mode */

enum lifetime_mode { LIFETIME_NAME, LIFETIME_HANDLE };
enum uring_mode { URING_AUTO, URING_ON, URING_OFF };
enum commit_mode { COMMIT_LAZY, COMMIT_EAGER };

/* Per-owner limits, as tmpfs names them; 0 is no limit. */
struct quota_limits {
	uint64_t usr_block, usr_inode;	/* page-file bytes, sections */
	uint64_t grp_block, grp_inode;
	int usrquota, grpquota;		/* -o usrquota, -o grpquota */
};

struct sfs_options {
	/* Raw strings as fuse_opt stored them (owned, freed by options_free). */
	char *passthrough_str;
	char *io_uring_str;
	char *size_str;
	char *lifetime_str;
	char *commit_str;
	char *umask_str;
	char *nr_inodes_str;
	char *mode_str;
	char *uid_str;
	char *gid_str;
	char *usr_block_str;
	char *usr_inode_str;
	char *grp_block_str;
	char *grp_inode_str;
	/* Validated values. */
	enum pt_mode passthrough;
	enum uring_mode io_uring;
	uint64_t size;			/* cap on page-file bytes; 0 = none */
	enum lifetime_mode lifetime;
	enum commit_mode commit;
	mode_t umask;			/* applied to the root directory */
	mode_t root_mode;		/* mode= as given, else 0777 & ~umask */
	unsigned int uid, gid;		/* owner of the root directory */
	int uid_set, gid_set;
	int writeback;			/* -o writeback_cache */
	struct quota_limits quota;	/* -o usrquota..., grpquota... */
	uint64_t nr_inodes;		/* nodes the mount may hold */
	/* Non-option arguments: [SOURCE] MOUNTPOINT, as mount.fuse3 gives
	 * them; the source names nothing and is ignored. */
	char *nonopt[2];
	int n_nonopt;
};

/*
 * Parse sectionfs's own -o options out of args (libfuse's stay in args
 * for fuse_parse_cmdline and fuse_session_new) and validate them.  Of the
 * non-option arguments, [SOURCE] MOUNTPOINT, only the mount point is left
 * in args.
 * total_mem is what a "size=N%" is a percentage of.  On error writes one
 * line naming the option to msg (size msglen) and returns -EINVAL.
 */
int options_parse(struct fuse_args *args, struct sfs_options *opts,
		  uint64_t total_mem, char *msg, size_t msglen);

/* Free the strings options_parse stored. */
void options_free(struct sfs_options *opts);

/* Print the sectionfs options for -h. */
void options_print_help(void);

/*
 * Value parsers, exposed for the unit tests (sizes are values.h's).  Each returns 0 and stores
 * the value, or -EINVAL and leaves *out untouched.
 */
int parse_passthrough(const char *s, enum pt_mode *out);
int parse_io_uring(const char *s, enum uring_mode *out);
int parse_lifetime(const char *s, enum lifetime_mode *out);
int parse_commit(const char *s, enum commit_mode *out);
int parse_umask(const char *s, mode_t *out);
/* mode=: the root directory's mode, up to 07777 (sticky bit included). */
int parse_mode(const char *s, mode_t *out);
int parse_id(const char *s, unsigned int *out);
/* A quota limit: digits with an optional k, m, g or t suffix (as tmpfs's
 * memparse), not zero, not a percentage. */
int parse_limit(const char *s, uint64_t *out);

/*
 * Why the kernel cannot hold opts's limits on passthrough (a group byte
 * limit, or a user byte limit with size=), naming the option; NULL when
 * it can.
 */
const char *options_quota_needs_cached(const struct sfs_options *opts);

#endif /* SECTIONFS_OPTIONS_H */
