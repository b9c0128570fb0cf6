/*
 * xattr.c - read, list and parse the user.sectionfs.* attributes.
 *
 * Owns the table of attribute names, how each value is formatted and
 * parsed, and which are writable.  Sections and the namespace supply the
 * facts; who may change what is the namespace's to decide.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "sectionfs.h"
#include "values.h"
#include "xattr.h"

#define VALUE_MAX (PATH_MAX + 1)	/* a path: the longest value of ours */

#define ALL_SEALS (F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_WRITE)

static int is_ours(const char *name)
{
	return !strncmp(name, SECTIONFS_XATTR_PREFIX,
			strlen(SECTIONFS_XATTR_PREFIX));
}

/* ---- reading ---- */

/* Each getter writes the value into buf[VALUE_MAX] or a pointer to it. */
typedef int (*getter)(const struct xattr_view *v, char *buf,
		      const char **value);

static int get_kind(const struct xattr_view *v, char *buf, const char **value)
{
	*value = v->sec->kind == SECTION_FILE ? SECTIONFS_KIND_FILE :
						SECTIONFS_KIND_PAGEFILE;
	return 0;
}

static int get_backing(const struct xattr_view *v, char *buf,
		       const char **value)
{
	if (!v->sec->file)
		return -ENODATA;
	*value = v->sec->file->path;
	return 0;
}

/* Where the backing file is now: it may have been moved or replaced. */
static int get_backing_now(const struct xattr_view *v, char *buf,
			   const char **value)
{
	int len;

	if (v->sec->kind != SECTION_FILE)
		return -ENODATA;
	len = backing_name_now(v->sec->fd, buf, VALUE_MAX);
	*value = buf;
	return len < 0 ? len : 0;
}

static int get_lifetime(const struct xattr_view *v, char *buf,
			const char **value)
{
	*value = v->lifetime == LIFETIME_HANDLE ? SECTIONFS_LIFETIME_HANDLE :
						  SECTIONFS_LIFETIME_NAME;
	return 0;
}

static int get_seals(const struct xattr_view *v, char *buf, const char **value)
{
	unsigned int seals = 0;
	int err;

	if (v->sec->kind != SECTION_PAGEFILE)
		return -ENODATA;
	err = section_seals(v->sec, &seals);
	if (err && err != -EOPNOTSUPP)
		return err;
	/* A store that cannot seal has none: "" */
	err = format_seals(seals & ALL_SEALS, buf, VALUE_MAX);
	*value = buf;
	return err < 0 ? err : 0;
}

static int get_resident(const struct xattr_view *v, char *buf,
			const char **value)
{
	uint64_t bytes;
	int err = section_resident(v->sec, &bytes);

	snprintf(buf, VALUE_MAX, "%" PRIu64, bytes);
	*value = buf;
	return err;
}

static const struct {
	const char *name;
	getter get;
} xattrs[] = {
	{ SECTIONFS_XATTR_KIND, get_kind },
	{ SECTIONFS_XATTR_BACKING, get_backing },
	{ SECTIONFS_XATTR_BACKING_NOW, get_backing_now },
	{ SECTIONFS_XATTR_LIFETIME, get_lifetime },
	{ SECTIONFS_XATTR_SEALS, get_seals },
	{ SECTIONFS_XATTR_RESIDENT, get_resident },
};

#define N_XATTRS (sizeof(xattrs) / sizeof(xattrs[0]))

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

ssize_t xattr_get(const struct xattr_view *v, const char *name, char *buf,
		  size_t size)
{
	char scratch[VALUE_MAX];
	const char *value;
	size_t i;
	int err;

	for (i = 0; i < N_XATTRS; i++) {
		if (strcmp(xattrs[i].name, name))
			continue;
		err = xattrs[i].get(v, scratch, &value);
		if (err)
			return err;
		return copy_out(buf, size, value, strlen(value));
	}
	return -ENODATA;
}

/* A section has an attribute when reading it does not say ENODATA.
 * (Listing does not compute resident: it always exists.) */
static int has(const struct xattr_view *v, size_t i)
{
	char scratch[VALUE_MAX];
	const char *value;

	if (xattrs[i].get == get_resident)
		return 1;
	return xattrs[i].get(v, scratch, &value) != -ENODATA;
}

ssize_t xattr_list(const struct xattr_view *v, char *buf, size_t size)
{
	char names[256];	/* every name of ours fits with room */
	size_t len = 0, i;

	for (i = 0; i < N_XATTRS; i++) {
		size_t n = strlen(xattrs[i].name) + 1;

		if (!has(v, i))
			continue;
		memcpy(names + len, xattrs[i].name, n);
		len += n;
	}
	return copy_out(buf, size, names, len);
}

/* ---- writing ---- */

static int parse_lifetime_value(const char *value, size_t size,
				enum lifetime_mode *out)
{
	char word[16];

	if (size >= sizeof(word) || memchr(value, '\0', size))
		return -EINVAL;
	memcpy(word, value, size);
	word[size] = '\0';
	return parse_lifetime(word, out);
}

int xattr_parse_set(const char *name, const char *value, size_t size,
		    struct xattr_change *out)
{
	size_t i;

	if (!is_ours(name))
		return -EOPNOTSUPP;	/* no other attributes are kept */
	if (!strcmp(name, SECTIONFS_XATTR_LIFETIME)) {
		out->what = XATTR_SET_LIFETIME;
		return parse_lifetime_value(value, size, &out->lifetime);
	}
	if (!strcmp(name, SECTIONFS_XATTR_SEALS)) {
		out->what = XATTR_SET_SEALS;
		return parse_seals(value, size, &out->seals);
	}
	for (i = 0; i < N_XATTRS; i++)
		if (!strcmp(xattrs[i].name, name))
			return -EPERM;	/* read-only */
	return -ENODATA;
}

int xattr_remove(const char *name)
{
	return is_ours(name) ? -EPERM : -EOPNOTSUPP;
}
