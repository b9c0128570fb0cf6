/*
 * xattr.h - the user.sectionfs.* extended attributes of a section.
 *
 * Names and values are those of include/sectionfs.h.  Functions return a
 * length or 0 on success and a negative errno otherwise: ENODATA for an
 * attribute the section does not have (an unknown user.sectionfs.* name
 * included), ERANGE when the caller's buffer is too small, EPERM for a
 * read-only attribute, EOPNOTSUPP for names outside user.sectionfs.
 */
#ifndef SECTIONFS_XATTR_H
#define SECTIONFS_XATTR_H

#include <sys/types.h>

#include "section.h"

/* Value of name into buf (size 0: only its length). */
ssize_t xattr_get(struct section *sec, const char *name, char *buf,
		  size_t size);
/* NUL-separated names the section has (size 0: only their length). */
ssize_t xattr_list(struct section *sec, char *buf, size_t size);
/* Set name to value (size bytes, not NUL-terminated); sec may be NULL
 * for a node that is not a section. */
int xattr_set(struct section *sec, const char *name, const char *value,
	      size_t size, int flags);
/* Remove name: nothing can be removed (read-only, or seals only grow). */
int xattr_remove(const char *name);

#endif /* SECTIONFS_XATTR_H */
