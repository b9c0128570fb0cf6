/*
 * xattr.c - read and write the user.sectionfs.* attributes.
 *
 * Owns the table of attribute names, how each value is formatted, and
 * which are writable.  Sections supply the facts; this file only turns
 * them into strings and back.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "sectionfs.h"
#include "xattr.h"

struct xattr_def {
	const char *name;
	/* The value for sec, or NULL when sec has no such attribute. */
	const char *(*value)(struct section *sec);
};

static const char *kind_value(struct section *sec)
{
	return sec->kind == SECTION_FILE ? SECTIONFS_KIND_FILE :
					   SECTIONFS_KIND_PAGEFILE;
}

static const char *backing_value(struct section *sec)
{
	return sec->backing_path;
}

static const struct xattr_def xattrs[] = {
	{ SECTIONFS_XATTR_KIND, kind_value },
	{ SECTIONFS_XATTR_BACKING, backing_value },
};

#define N_XATTRS (sizeof(xattrs) / sizeof(xattrs[0]))

static int is_ours(const char *name)
{
	return !strncmp(name, SECTIONFS_XATTR_PREFIX,
			strlen(SECTIONFS_XATTR_PREFIX));
}

static const struct xattr_def *find(const char *name)
{
	size_t i;

	for (i = 0; i < N_XATTRS; i++)
		if (!strcmp(xattrs[i].name, name))
			return &xattrs[i];
	return NULL;
}

/* Copy len bytes out, or just say how many with size 0. */
static ssize_t copy_out(char *buf, size_t size, const char *src, size_t len)
{
	if (size == 0)
		return (ssize_t)len;
	if (size < len)
		return -ERANGE;
	memcpy(buf, src, len);
	return (ssize_t)len;
}

ssize_t xattr_get(struct section *sec, const char *name, char *buf,
		  size_t size)
{
	const struct xattr_def *x = find(name);
	const char *value = x ? x->value(sec) : NULL;

	if (!value)
		return -ENODATA;
	return copy_out(buf, size, value, strlen(value));
}

ssize_t xattr_list(struct section *sec, char *buf, size_t size)
{
	char names[256];
	size_t len = 0, i;

	for (i = 0; i < N_XATTRS; i++) {
		size_t n = strlen(xattrs[i].name) + 1;

		if (!xattrs[i].value(sec))
			continue;
		memcpy(names + len, xattrs[i].name, n);
		len += n;
	}
	return copy_out(buf, size, names, len);
}

int xattr_set(struct section *sec, const char *name, const char *value,
	      size_t size, int flags)
{
	if (!is_ours(name))
		return -EOPNOTSUPP;	/* no other attributes are kept */
	if (!sec || !find(name))
		return -ENODATA;
	return -EPERM;
}

int xattr_remove(const char *name)
{
	return is_ours(name) ? -EPERM : -EOPNOTSUPP;
}
