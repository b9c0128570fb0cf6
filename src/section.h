/*
 * section.h - one memory section: its kind, its file, its lifetime.
 *
 * A section owns one fd: the store file of a page-file-backed section or
 * the backing file of a file-backed one.  It is reference counted: the
 * namespace node that names it holds one reference, every open handle
 * one, and any request working on it one for the duration; the fd is
 * closed (and any passthrough registration released) when the last
 * reference goes.  Sizes and times are always read from the fd, never
 * remembered, because in passthrough mode the kernel changes them without
 * telling the daemon.
 */
#ifndef SECTIONFS_SECTION_H
#define SECTIONFS_SECTION_H

#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "backing.h"

enum section_kind { SECTION_PAGEFILE, SECTION_FILE };

struct section {
	int fd;				/* store or backing fd; immutable */
	enum section_kind kind;		/* immutable */
	int writable;			/* fd is O_RDWR; immutable */
	char *backing_path;		/* file-backed: the file; immutable */
	atomic_uint refs;
	atomic_int backing_id;		/* passthrough id; 0 until first open */
};

/*
 * Create a page-file-backed section with an empty store named after path.
 * Returns 0 and a section with one reference in *out, or -errno.
 */
int section_create_pagefile(const char *path, struct section **out);

/*
 * Create a file-backed section over the file target names, opened with
 * who's credentials (backing.h: errors and the ELOOP rule for self_dev).
 * A file who may not write gives a read-only section.
 */
int section_create_file(const char *target, dev_t self_dev,
			const struct caller *who, struct section **out);

/* Take and drop references; the last put destroys the section. */
void section_get(struct section *sec);
void section_put(struct section *sec);

/* fstat of the section's file: size, blocks and times are the truth. */
int section_stat(struct section *sec, struct stat *st);

/* ftruncate: grow (zero filled) or shrink the section.  -errno on error;
 * EACCES for a read-only file-backed section (as is section_fallocate). */
int section_resize(struct section *sec, off_t size);

/* fallocate on the section's file with the caller's mode. */
int section_fallocate(struct section *sec, int mode, off_t off, off_t len);

/*
 * futimens on the section's file (UTIME_NOW / UTIME_OMIT allowed).  On a
 * backing file this runs with who's rights: setting a file's times is
 * for its owner, or (to now) for those who may write it.
 */
int section_set_times(struct section *sec, const struct timespec times[2],
		      const struct caller *who);

/* Flush to stable storage; a no-op for page-file-backed sections. */
int section_sync(struct section *sec, int datasync);

/*
 * The section's passthrough backing id, registering the fd with the
 * kernel on first use; one id per section for its whole life (the kernel
 * insists every open of an inode uses the same one).  -errno on error.
 */
int section_backing_id(struct section *sec);

#endif /* SECTIONFS_SECTION_H */
