/*
 * requests.h - the operations table handed to libfuse.
 *
 * Userdata of the session must be the mount's struct sfs_mount.
 */
#ifndef SECTIONFS_REQUESTS_H
#define SECTIONFS_REQUESTS_H

#include <fuse_lowlevel.h>

extern const struct fuse_lowlevel_ops sfs_ops;

struct ns;

/*
 * In a successor, once it has adopted the namespace: do the FORGETs the
 * dead server read and did not do (the keeper kept them; the kernel
 * never sends them again).
 */
void requests_forget_lost(struct ns *ns);
/*
 * And keep each backing file the dead server was part way through
 * appending to for that append, sent again (append_once()).
 */
void requests_appends_left(struct ns *ns);

#endif /* SECTIONFS_REQUESTS_H */
