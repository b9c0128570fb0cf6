/*
 * fuzz_xattr.c - libFuzzer harness for the user.sectionfs.* value parsers.
 *
 * Feeds every input to the parsers as linked into the daemon:
 * parse_seals() and format_seals() of src/values.c (the seal list), and
 * xattr_parse_set() of src/xattr.c (which attribute a setxattr names,
 * and its value: lifetime and seals).  Values are passed in heap buffers of exactly
 * their size, as the kernel hands them over (no terminating NUL), so a
 * read past the end is an AddressSanitizer report.  Each answer is also
 * checked against an independent reading of the grammars in values.h
 * and xattr.h; a disagreement aborts.
 *
 * Input: NAME NUL VALUE, or (no NUL) a value for both writable names.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sectionfs.h"
#include "values.h"
#include "xattr.h"

#define ALL_SEALS (F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_WRITE)

static void check(int ok, const char *what)
{
	if (ok)
		return;
	fprintf(stderr, "fuzz_xattr: %s\n", what);
	abort();
}

/* The seal list: empty, or comma-separated words from grow, shrink,
 * write (repeats allowed).  Returns 0 and the mask, or -EINVAL. */
static int ref_seals(const char *v, size_t size, unsigned int *mask)
{
	size_t start = 0, i;
	unsigned int m = 0;

	if (size == 0) {
		*mask = 0;
		return 0;
	}
	for (i = 0; i <= size; i++) {
		size_t len;

		if (i < size && v[i] != ',')
			continue;
		len = i - start;
		if (len == 4 && !memcmp(v + start, "grow", 4))
			m |= F_SEAL_GROW;
		else if (len == 6 && !memcmp(v + start, "shrink", 6))
			m |= F_SEAL_SHRINK;
		else if (len == 5 && !memcmp(v + start, "write", 5))
			m |= F_SEAL_WRITE;
		else
			return -EINVAL;
		start = i + 1;
	}
	*mask = m;
	return 0;
}

static void check_seals(const char *v, size_t size)
{
	unsigned int mask = 0xdead, ref = 0, again = 0;
	int err = parse_seals(v, size, &mask), rerr, n, len;
	char *buf;

	rerr = ref_seals(v, size, &ref);
	check(err == rerr, "parse_seals accepts what the grammar "
	      "refuses, or the reverse");
	if (err)
		return;
	check(mask == ref, "parse_seals mask");
	check((mask & ~ALL_SEALS) == 0, "parse_seals unknown bits");

	/* Format into a buffer of every size up to what it needs: too small
	 * is ERANGE (and writes nothing past the buffer), enough is the
	 * canonical list, which parses back to the same mask. */
	buf = malloc(64);
	if (!buf)
		return;
	len = format_seals(mask, buf, 64);
	check(len >= 0 && len < 64, "format_seals length");
	check(parse_seals(buf, (size_t)len, &again) == 0 && again == mask,
	      "canonical seal list does not parse back");
	free(buf);
	for (n = 0; n <= len; n++) {
		char *small = malloc(n ? (size_t)n : 1);
		int r;

		if (!small)
			return;
		r = format_seals(mask, small, (size_t)n);
		/* The value and its NUL must fit. */
		check(n > len ? r == len : r == -ERANGE,
		      "format_seals with a small buffer");
		free(small);
	}
}

static void check_set(const char *name, const char *v, size_t size)
{
	struct xattr_change c;
	int err = xattr_parse_set(name, v, size, &c);
	unsigned int ref;

	if (strncmp(name, SECTIONFS_XATTR_PREFIX,
		    strlen(SECTIONFS_XATTR_PREFIX))) {
		check(err == -EOPNOTSUPP, "a name not ours is not EOPNOTSUPP");
		return;
	}
	if (!strcmp(name, SECTIONFS_XATTR_LIFETIME)) {
		int name_ok = size == 4 && !memcmp(v, "name", 4);
		int handle_ok = size == 6 && !memcmp(v, "handle", 6);

		check((err == 0) == (name_ok || handle_ok), "lifetime value");
		check(err == 0 || err == -EINVAL, "lifetime errno");
		if (!err)
			check(c.what == XATTR_SET_LIFETIME &&
			      c.lifetime == (name_ok ? LIFETIME_NAME :
						       LIFETIME_HANDLE),
			      "lifetime parsed wrong");
		return;
	}
	if (!strcmp(name, SECTIONFS_XATTR_SEALS)) {
		check(err == ref_seals(v, size, &ref), "seals value");
		if (!err)
			check(c.what == XATTR_SET_SEALS && c.seals == ref,
			      "seals parsed wrong");
		return;
	}
	if (!strcmp(name, SECTIONFS_XATTR_KIND) ||
	    !strcmp(name, SECTIONFS_XATTR_BACKING) ||
	    !strcmp(name, SECTIONFS_XATTR_BACKING_NOW) ||
	    !strcmp(name, SECTIONFS_XATTR_RESIDENT))
		check(err == -EPERM, "a read-only name is not EPERM");
	else
		check(err == -ENODATA, "an unknown name of ours is not ENODATA");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	char *value, *name;
	size_t vsize;

	if (nul) {
		size_t nlen = (size_t)(nul - data);

		name = malloc(nlen + 1);
		vsize = size - nlen - 1;
		value = malloc(vsize ? vsize : 1);
		if (!name || !value)
			goto out;
		memcpy(name, data, nlen + 1);
		memcpy(value, nul + 1, vsize);
		check_set(name, value, vsize);
		check_seals(value, vsize);
	} else {
		name = NULL;
		vsize = size;
		value = malloc(vsize ? vsize : 1);
		if (!value)
			goto out;
		memcpy(value, data, vsize);
		check_seals(value, vsize);
		check_set(SECTIONFS_XATTR_SEALS, value, vsize);
		check_set(SECTIONFS_XATTR_LIFETIME, value, vsize);
	}
out:
	free(name);
	free(value);
	return 0;
}
