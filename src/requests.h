/*
 * requests.h - the operations table handed to libfuse.
 *
 * Userdata of the session must be the mount's struct sfs_mount.
 */
#ifndef SECTIONFS_REQUESTS_H
#define SECTIONFS_REQUESTS_H

#include <fuse_lowlevel.h>

extern const struct fuse_lowlevel_ops sfs_ops;

#endif /* SECTIONFS_REQUESTS_H */
