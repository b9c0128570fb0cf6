/*
 * unit_options.c - unit tests of the option and value parsers.
 *
 * Runs without a mount: each case feeds a string to a parser in
 * src/options.c or src/values.c and checks the value or the refusal.  Exit status is the
 * number of failed checks (0 = pass), as automake's harness expects.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "options.h"
#include "values.h"

static int failures;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n",		\
			__FILE__, __LINE__, #cond);			\
		failures++;						\
	}								\
} while (0)

static void test_size(void)
{
	uint64_t v = 7;

	CHECK(parse_size("0", 0, &v) == 0 && v == 0);
	CHECK(parse_size("4096", 0, &v) == 0 && v == 4096);
	CHECK(parse_size("1k", 0, &v) == 0 && v == 1024);
	CHECK(parse_size("2M", 0, &v) == 0 && v == 2u << 20);
	CHECK(parse_size("3g", 0, &v) == 0 && v == 3ULL << 30);
	CHECK(parse_size("1t", 0, &v) == 0 && v == 1ULL << 40);
	CHECK(parse_size("50%", 1000, &v) == 0 && v == 500);
	CHECK(parse_size("100%", 1000, &v) == 0 && v == 1000);
	v = 7;
	CHECK(parse_size("101%", 1000, &v) == -EINVAL && v == 7);
	CHECK(parse_size("", 0, &v) == -EINVAL);
	CHECK(parse_size("abc", 0, &v) == -EINVAL);
	CHECK(parse_size("-1", 0, &v) == -EINVAL);
	CHECK(parse_size(" 1", 0, &v) == -EINVAL);
	CHECK(parse_size("1x", 0, &v) == -EINVAL);
	CHECK(parse_size("1kb", 0, &v) == -EINVAL);
	CHECK(parse_size("1%%", 100, &v) == -EINVAL);
	CHECK(parse_size("99999999999999999999", 0, &v) == -EINVAL);
	CHECK(parse_size("17179869184g", 0, &v) == -EINVAL);	/* 2^64 */
	CHECK(v == 7);
}

static void test_seals(void)
{
	unsigned int m = 77;
	char buf[64];

	CHECK(parse_seals("", 0, &m) == 0 && m == 0);
	CHECK(parse_seals("grow", 4, &m) == 0 && m == F_SEAL_GROW);
	CHECK(parse_seals("write,grow,grow", 15, &m) == 0 &&
	      m == (F_SEAL_WRITE | F_SEAL_GROW));
	CHECK(parse_seals("growXXX", 4, &m) == 0 && m == F_SEAL_GROW);
	m = 77;
	CHECK(parse_seals("grow,", 5, &m) == -EINVAL && m == 77);
	CHECK(parse_seals(",grow", 5, &m) == -EINVAL);
	CHECK(parse_seals("grow,,shrink", 12, &m) == -EINVAL);
	CHECK(parse_seals("seal", 4, &m) == -EINVAL);
	CHECK(parse_seals("Grow", 4, &m) == -EINVAL);
	CHECK(parse_seals("gro\0w", 5, &m) == -EINVAL);
	CHECK(format_seals(F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK, buf,
			   sizeof(buf)) == 17 && !strcmp(buf, "grow,shrink,write"));
	CHECK(format_seals(0, buf, sizeof(buf)) == 0 && !strcmp(buf, ""));
	CHECK(format_seals(F_SEAL_GROW, buf, 4) == -ERANGE);
}

static void test_words(void)
{
	enum pt_mode pt = PT_AUTO;
	enum lifetime_mode lt = LIFETIME_NAME;
	enum commit_mode cm = COMMIT_LAZY;
	enum uring_mode ur = URING_AUTO;

	CHECK(parse_passthrough("on", &pt) == 0 && pt == PT_ON);
	CHECK(parse_passthrough("off", &pt) == 0 && pt == PT_OFF);
	CHECK(parse_passthrough("auto", &pt) == 0 && pt == PT_AUTO);
	CHECK(parse_passthrough("yes", &pt) == -EINVAL && pt == PT_AUTO);
	CHECK(parse_passthrough("", &pt) == -EINVAL);
	CHECK(parse_io_uring("off", &ur) == 0 && ur == URING_OFF);
	CHECK(parse_io_uring("on", &ur) == 0 && ur == URING_ON);
	CHECK(parse_io_uring("auto", &ur) == 0 && ur == URING_AUTO);
	CHECK(parse_io_uring("ON", &ur) == -EINVAL && ur == URING_AUTO);
	CHECK(parse_lifetime("handle", &lt) == 0 && lt == LIFETIME_HANDLE);
	CHECK(parse_lifetime("name", &lt) == 0 && lt == LIFETIME_NAME);
	CHECK(parse_lifetime("Name", &lt) == -EINVAL);
	CHECK(parse_commit("eager", &cm) == 0 && cm == COMMIT_EAGER);
	CHECK(parse_commit("lazy", &cm) == 0 && cm == COMMIT_LAZY);
	CHECK(parse_commit("now", &cm) == -EINVAL);
}

static void test_id(void)
{
	unsigned int id = 9;

	CHECK(parse_id("0", &id) == 0 && id == 0);
	CHECK(parse_id("65534", &id) == 0 && id == 65534);
	id = 9;
	CHECK(parse_id("abc", &id) == -EINVAL && id == 9);
	CHECK(parse_id("-1", &id) == -EINVAL);
	CHECK(parse_id("4294967295", &id) == -EINVAL);
	CHECK(parse_id("12x", &id) == -EINVAL);
	CHECK(parse_id("", &id) == -EINVAL);
}

static void test_umask(void)
{
	mode_t m = 1;

	CHECK(parse_umask("022", &m) == 0 && m == 022);
	CHECK(parse_umask("0", &m) == 0 && m == 0);
	CHECK(parse_umask("777", &m) == 0 && m == 0777);
	m = 1;
	CHECK(parse_umask("1000", &m) == -EINVAL && m == 1);
	CHECK(parse_umask("8", &m) == -EINVAL);
	CHECK(parse_umask("", &m) == -EINVAL);
	CHECK(parse_umask("-1", &m) == -EINVAL);
	CHECK(parse_umask(" 22", &m) == -EINVAL);
	CHECK(parse_umask("+22", &m) == -EINVAL);
	CHECK(parse_umask("\t7", &m) == -EINVAL);
	CHECK(parse_mode("1777", &m) == 0 && m == 01777);
	CHECK(parse_mode("755", &m) == 0 && m == 0755);
	m = 1;
	CHECK(parse_mode("10000", &m) == -EINVAL && m == 1);
	CHECK(parse_mode("-1", &m) == -EINVAL);
	CHECK(parse_mode("", &m) == -EINVAL);
}

/* The whole -o path: what is ours is taken, the rest is left for libfuse. */
static void test_parse(void)
{
	char *argv[] = { "sectionfs", "-o", "passthrough=off,allow_other,uid=5",
			 "-f", "/mnt", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(5, argv);
	struct sfs_options o;
	char msg[256] = "";

	CHECK(options_parse(&args, &o, 0, msg, sizeof(msg)) == 0);
	CHECK(o.passthrough == PT_OFF);
	CHECK(o.uid_set && o.uid == 5 && !o.gid_set);
	CHECK(o.umask == 022 && o.size == 0);
	/* nr_inodes: half the RAM pages, at least 1024 (no RAM given). */
	CHECK(o.nr_inodes == 1024);
	CHECK(args.argc == 5 && !strcmp(args.argv[2], "allow_other"));
	options_free(&o);
	fuse_opt_free_args(&args);
}

/* mount.fuse3 passes SOURCE MOUNTPOINT: the source is dropped. */
static void test_source_argument(void)
{
	char *argv[] = { "sectionfs", "none", "/mnt", "-o", "rw", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(5, argv);
	struct sfs_options o;
	char msg[256] = "";
	int i, mountpoints = 0, sources = 0;

	CHECK(options_parse(&args, &o, 0, msg, sizeof(msg)) == 0);
	for (i = 0; i < args.argc; i++) {
		mountpoints += !strcmp(args.argv[i], "/mnt");
		sources += !strcmp(args.argv[i], "none");
	}
	CHECK(mountpoints == 1 && sources == 0);
	options_free(&o);
	fuse_opt_free_args(&args);
}

static void test_too_many_arguments(void)
{
	char *argv[] = { "sectionfs", "a", "b", "c", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(4, argv);
	struct sfs_options o;
	char msg[256] = "";

	CHECK(options_parse(&args, &o, 0, msg, sizeof(msg)) == -EINVAL);
	options_free(&o);
	fuse_opt_free_args(&args);
}

static void test_parse_error(void)
{
	char *argv[] = { "sectionfs", "-o", "size=lots", "/mnt", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(4, argv);
	struct sfs_options o;
	char msg[256] = "";

	CHECK(options_parse(&args, &o, 0, msg, sizeof(msg)) == -EINVAL);
	CHECK(strstr(msg, "'size'") && strstr(msg, "'lots'"));
	CHECK(!strchr(msg, '\n'));
	options_free(&o);
	fuse_opt_free_args(&args);
}

/* Parse one -o string; returns options_parse's result, msg filled. */
static int parse_o(const char *opts, struct sfs_options *o, char *msg,
		   size_t msglen)
{
	char *argv[] = { "sectionfs", "-o", (char *)opts, "/mnt", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(4, argv);
	int ret = options_parse(&args, o, 1 << 30, msg, msglen);

	fuse_opt_free_args(&args);
	return ret;
}

/* writeback_cache is a flag, refused with what it cannot honour. */
static void test_writeback(void)
{
	struct sfs_options o;
	char msg[256] = "";

	CHECK(parse_o("passthrough=off", &o, msg, sizeof(msg)) == 0);
	CHECK(!o.writeback);
	options_free(&o);
	CHECK(parse_o("writeback_cache", &o, msg, sizeof(msg)) == 0);
	CHECK(o.writeback);
	options_free(&o);
	CHECK(parse_o("writeback_cache,passthrough=off", &o, msg,
		      sizeof(msg)) == 0);
	options_free(&o);
	CHECK(parse_o("writeback_cache,size=1m", &o, msg, sizeof(msg)) ==
	      -EINVAL);
	CHECK(strstr(msg, "'writeback_cache'") && strstr(msg, "'size'"));
	options_free(&o);
	/* size=0 sets no cap, so there is nothing to refuse. */
	CHECK(parse_o("writeback_cache,size=0", &o, msg, sizeof(msg)) == 0);
	CHECK(o.writeback && o.size == 0);
	options_free(&o);
	CHECK(parse_o("passthrough=on,writeback_cache", &o, msg,
		      sizeof(msg)) == -EINVAL);
	CHECK(strstr(msg, "'writeback_cache'") &&
	      strstr(msg, "passthrough=on"));
	options_free(&o);
}

static void test_quota(void)
{
	struct sfs_options o;
	uint64_t v = 7;
	char msg[256];

	CHECK(parse_limit("1m", &v) == 0 && v == 1u << 20);
	CHECK(parse_limit("10", &v) == 0 && v == 10);
	CHECK(parse_limit("2k", &v) == 0 && v == 2048);
	v = 7;
	CHECK(parse_limit("0", &v) == -EINVAL);		/* as tmpfs */
	CHECK(parse_limit("5%", &v) == -EINVAL);
	CHECK(parse_limit("-1", &v) == -EINVAL);
	CHECK(parse_limit("1x", &v) == -EINVAL);
	CHECK(parse_limit("", &v) == -EINVAL);
	CHECK(v == 7);

	CHECK(parse_o("usrquota,grpquota,usrquota_block_hardlimit=1m,"
		      "usrquota_inode_hardlimit=100,grpquota_block_hardlimit=2g,"
		      "grpquota_inode_hardlimit=1k", &o, msg, sizeof(msg)) == 0);
	CHECK(o.quota.usrquota && o.quota.grpquota);
	CHECK(o.quota.usr_block == 1u << 20 && o.quota.usr_inode == 100);
	CHECK(o.quota.grp_block == 2ULL << 30 && o.quota.grp_inode == 1024);
	options_free(&o);
	CHECK(parse_o("usrquota_inode_hardlimit=lots", &o, msg,
		      sizeof(msg)) == -EINVAL);
	CHECK(strstr(msg, "'usrquota_inode_hardlimit'") != NULL);
	options_free(&o);
	/* What the kernel cannot hold on passthrough: refused with on... */
	CHECK(parse_o("passthrough=on,grpquota_block_hardlimit=1m", &o, msg,
		      sizeof(msg)) == -EINVAL);
	CHECK(strstr(msg, "grpquota_block_hardlimit") != NULL);
	options_free(&o);
	CHECK(parse_o("passthrough=on,size=8m,usrquota_block_hardlimit=1m",
		      &o, msg, sizeof(msg)) == -EINVAL);
	CHECK(strstr(msg, "usrquota_block_hardlimit") != NULL);
	options_free(&o);
	/* ...left to fall back with auto, and fine on its own. */
	CHECK(parse_o("grpquota_block_hardlimit=1m", &o, msg,
		      sizeof(msg)) == 0);
	CHECK(options_quota_needs_cached(&o) != NULL);
	options_free(&o);
	CHECK(parse_o("passthrough=on,usrquota_block_hardlimit=1m,"
		      "grpquota_inode_hardlimit=3", &o, msg, sizeof(msg)) == 0);
	CHECK(options_quota_needs_cached(&o) == NULL);
	options_free(&o);
}

int main(void)
{
	test_quota();
	test_size();
	test_seals();
	test_words();
	test_umask();
	test_id();
	test_parse();
	test_parse_error();
	test_source_argument();
	test_too_many_arguments();
	test_writeback();
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
