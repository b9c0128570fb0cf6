/*
 * values.h - the value grammars sectionfs and sectionctl share.
 *
 * Pure functions, no I/O and no libfuse: sizes as the size= option and
 * sectionctl --size write them, and seal lists as user.sectionfs.seals
 * holds them.  Each returns 0 (or a length) on success and -EINVAL (or
 * -ERANGE) leaving its output untouched otherwise.
 */
#ifndef SECTIONFS_VALUES_H
#define SECTIONFS_VALUES_H

#include <stddef.h>
#include <stdint.h>

/*
 * Decimal digits with an optional k, m, g or t suffix (binary multiples,
 * either case), or a percentage of percent_of with "%".
 */
int parse_size(const char *s, uint64_t percent_of, uint64_t *out);

/*
 * A comma list of "grow", "shrink", "write" (any order, repeats allowed,
 * the empty list is no seal) as an F_SEAL_* mask.  value need not be
 * NUL-terminated: len bytes are read.
 */
int parse_seals(const char *value, size_t len, unsigned int *mask);

/* The canonical list ("grow,shrink,write" order) of mask: its length, or
 * -ERANGE when buf is too small. */
int format_seals(unsigned int mask, char *buf, size_t size);

#endif /* SECTIONFS_VALUES_H */
