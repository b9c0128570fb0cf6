/*
 * xattr.h - the user.sectionfs.* extended attributes of a section.
 *
 * Names and values are those of include/sectionfs.h.  Reading formats
 * facts the section and the namespace supply; writing is parsed here
 * (pure functions, fuzzed) and applied by the namespace, which owns the
 * policy of who may.  Functions return a length or 0 on success and a
 * negative errno otherwise: ENODATA for an attribute the section does
 * not have (an unknown user.sectionfs.* name included), ERANGE when the
 * caller's buffer is too small, EPERM for a read-only attribute,
 * EOPNOTSUPP for names outside user.sectionfs., EINVAL for a malformed
 * value.
 */
#ifndef SECTIONFS_XATTR_H
#define SECTIONFS_XATTR_H

#include <sys/types.h>

#include "options.h"
#include "section.h"

/* What reading a section's attributes needs to know. */
struct xattr_view {
	struct section *sec;
	enum lifetime_mode lifetime;
};

/* Value of name into buf (size 0: only its length). */
ssize_t xattr_get(const struct xattr_view *v, const char *name, char *buf,
		  size_t size);
/* NUL-separated names the section has (size 0: only their length). */
ssize_t xattr_list(const struct xattr_view *v, char *buf, size_t size);

/* A parsed write: which attribute, and its new value. */
struct xattr_change {
	enum { XATTR_SET_LIFETIME, XATTR_SET_SEALS } what;
	enum lifetime_mode lifetime;
	unsigned int seals;		/* F_SEAL_* mask */
};

/* Parse setxattr(name, value[size]); nothing is applied. */
int xattr_parse_set(const char *name, const char *value, size_t size,
		    struct xattr_change *out);
/* Remove name: nothing can be removed (read-only, or seals only grow). */
int xattr_remove(const char *name);

#endif /* SECTIONFS_XATTR_H */
