/*
 * sectionfs.h - public constants for programs that use sectionfs sections.
 *
 * Every regular file of a sectionfs mount is a memory section: either
 * page-file-backed (anonymous, swap-backed memory, discarded when the
 * section is destroyed) or file-backed (a real file the section passes
 * through to).  Programs use sections with ordinary file calls; the
 * extended attributes named here expose and control what is particular
 * to sections.  This header only defines names and values: it has no
 * functions and needs no library.
 */
#ifndef SECTIONFS_H
#define SECTIONFS_H

/* Filesystem type as it appears in /proc/mounts ("fuse.sectionfs"). */
#define SECTIONFS_FSTYPE		"fuse.sectionfs"

/* Every sectionfs attribute lives under this prefix. */
#define SECTIONFS_XATTR_PREFIX		"user.sectionfs."

/* Read-only: the section's kind, one of the SECTIONFS_KIND_* values. */
#define SECTIONFS_XATTR_KIND		SECTIONFS_XATTR_PREFIX "kind"
/* Read-only: absolute path of the backing file, as it was when the
 * section was made (file-backed only; ENODATA on a page-file-backed
 * section). */
#define SECTIONFS_XATTR_BACKING		SECTIONFS_XATTR_PREFIX "backing"
/* Read-only: absolute path that names the backing file now (file-backed
 * only).  The same as SECTIONFS_XATTR_BACKING until the file is moved;
 * empty once the file has no name: deleted, or replaced by a rename over
 * its path (as editors save), while the section still uses it. */
#define SECTIONFS_XATTR_BACKING_NOW	SECTIONFS_XATTR_PREFIX "backing_now"
/* Writable by the owner: one of the SECTIONFS_LIFETIME_* values. */
#define SECTIONFS_XATTR_LIFETIME	SECTIONFS_XATTR_PREFIX "lifetime"
/* Writable by the owner: comma list of SECTIONFS_SEAL_* words; seals can
 * be added, never removed (EPERM). */
#define SECTIONFS_XATTR_SEALS		SECTIONFS_XATTR_PREFIX "seals"
/* Read-only: decimal count of the section's bytes now in memory. */
#define SECTIONFS_XATTR_RESIDENT	SECTIONFS_XATTR_PREFIX "resident"

/* Read-only, on the mount's root directory: each owner's usage and
 * limits, a line per uid ("u") or gid ("g") with a charge:
 * "u|g ID BYTES SECTIONS BYTE-LIMIT SECTION-LIMIT", "-" where a figure
 * is unknown or there is no limit.  root reads every owner's lines,
 * another user those of their own uid and gid.  ENODATA on a mount with
 * no limits and neither usrquota nor grpquota. */
#define SECTIONFS_XATTR_QUOTA		SECTIONFS_XATTR_PREFIX "quota"

#define SECTIONFS_KIND_PAGEFILE		"pagefile"
#define SECTIONFS_KIND_FILE		"file"

#define SECTIONFS_LIFETIME_NAME		"name"
#define SECTIONFS_LIFETIME_HANDLE	"handle"

#define SECTIONFS_SEAL_GROW		"grow"
#define SECTIONFS_SEAL_SHRINK		"shrink"
#define SECTIONFS_SEAL_WRITE		"write"

#endif /* SECTIONFS_H */
