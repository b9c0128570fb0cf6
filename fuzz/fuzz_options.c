/*
 * fuzz_options.c - libFuzzer harness for the daemon's -o option parsing.
 *
 * Feeds every input to src/options.c and src/values.c as linked into the
 * daemon: the value parsers (parse_size, parse_passthrough, parse_io_uring,
 * parse_lifetime, parse_commit, parse_umask, parse_id) and
 * options_parse() over a
 * fuse_args built from the input.  Besides what the sanitizers catch
 * (overflows, leaks, undefined behaviour), each accepted value is checked
 * against an independent reading of the grammar in options.h and the
 * man page; a disagreement aborts, which the fuzzer reports as a crash.
 *
 * Input: arguments separated by NUL bytes (at most MAX_ARGS of them).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "values.h"

#define MAX_ARGS 16

static void check(int ok, const char *what, const char *input)
{
	if (ok)
		return;
	fprintf(stderr, "fuzz_options: %s for input \"%s\"\n", what, input);
	abort();
}

/* A size as options.h defines it: digits, then k, m, g, t or % (at
 * most 100) or nothing; the product must fit in 64 bits.  0 if invalid. */
static int ref_size(const char *s, uint64_t total, uint64_t *out)
{
	unsigned __int128 n = 0, v;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		n = n * 10 + (unsigned)(*p - '0');
		if (n > UINT64_MAX)
			return 0;
	}
	switch (*p) {
	case '\0': v = n; break;
	case 'k': case 'K': v = n << 10; p++; break;
	case 'm': case 'M': v = n << 20; p++; break;
	case 'g': case 'G': v = n << 30; p++; break;
	case 't': case 'T': v = n << 40; p++; break;
	case '%':
		if (p[1] != '\0' || n > 100)
			return 0;
		*out = total / 100 * (uint64_t)n;
		return 1;
	default:
		return 0;
	}
	if (*p != '\0' || v > UINT64_MAX)
		return 0;
	*out = (uint64_t)v;
	return 1;
}

static int only_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

static void check_values(const char *s, uint64_t total)
{
	uint64_t size = 12345, ref = 0;
	enum pt_mode pt;
	enum uring_mode ur;
	enum lifetime_mode lt;
	enum commit_mode cm;
	mode_t um = 0;
	unsigned int id = 0;
	int ok;

	ok = parse_size(s, total, &size) == 0;
	check(ok == ref_size(s, total, &ref), "parse_size accepts what the "
	      "grammar refuses, or the reverse", s);
	check(!ok || size == ref, "parse_size value", s);

	ok = parse_passthrough(s, &pt) == 0;
	check(ok == (!strcmp(s, "auto") || !strcmp(s, "on") ||
		     !strcmp(s, "off")), "parse_passthrough", s);
	ok = parse_io_uring(s, &ur) == 0;
	check(ok == (!strcmp(s, "auto") || !strcmp(s, "on") ||
		     !strcmp(s, "off")), "parse_io_uring", s);
	ok = parse_lifetime(s, &lt) == 0;
	check(ok == (!strcmp(s, "name") || !strcmp(s, "handle")),
	      "parse_lifetime", s);
	ok = parse_commit(s, &cm) == 0;
	check(ok == (!strcmp(s, "lazy") || !strcmp(s, "eager")),
	      "parse_commit", s);

	if (parse_umask(s, &um) == 0) {
		check(um <= 0777, "parse_umask value above 0777", s);
		check(strspn(s, "01234567") == strlen(s),
		      "parse_umask took more than octal digits", s);
	}
	if (strspn(s, "01234567") == strlen(s) && *s && strlen(s) < 20)
		check((parse_umask(s, &um) == 0) == (strtoul(s, NULL, 8) <= 0777),
		      "parse_umask on plain octal", s);

	ok = parse_id(s, &id) == 0;
	if (ok)
		check(only_digits(s) && id != UINT32_MAX, "parse_id accepted", s);
	if (only_digits(s) && strlen(s) < 10)
		check(ok && id == strtoul(s, NULL, 10), "parse_id refused", s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1);
	char *argv[MAX_ARGS + 2];
	struct fuse_args args;
	struct sfs_options opts;
	char msg[256];
	uint64_t total = 0;
	size_t pos = 0;
	int argc = 1, i;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	if (size >= 8)
		memcpy(&total, data, 8);	/* what size=N% is a part of */
	argv[0] = "sectionfs";
	while (pos <= size && argc <= MAX_ARGS) {
		argv[argc++] = copy + pos;
		pos += strlen(copy + pos) + 1;
	}
	argv[argc] = NULL;

	for (i = 1; i < argc; i++)
		check_values(argv[i], total);

	/* options_parse as main() calls it; the arguments are copied
	 * because fuse_opt may rearrange them. */
	args = (struct fuse_args)FUSE_ARGS_INIT(0, NULL);
	for (i = 0; i < argc; i++)
		if (fuse_opt_add_arg(&args, argv[i]))
			goto out;
	if (options_parse(&args, &opts, total, msg, sizeof(msg)) == 0) {
		uint64_t v;

		if (opts.size_str)
			check(parse_size(opts.size_str, total, &v) == 0 &&
			      v == opts.size, "options_parse size", opts.size_str);
		check(opts.umask <= 0777, "options_parse umask", "");
		check(opts.n_nonopt <= 2, "more than two non-options", "");
	} else {
		check(memchr(msg, '\0', sizeof(msg)) != NULL,
		      "unterminated message", "");
	}
	options_free(&opts);
out:
	fuse_opt_free_args(&args);
	free(copy);
	return 0;
}
