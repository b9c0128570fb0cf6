/*
 * privilege.h - may this daemon do what only an administrator may?
 *
 * Kernel FUSE passthrough and private tmpfs mounts both need
 * CAP_SYS_ADMIN in the initial user namespace; this leaf answers the
 * question once, for both.
 */
#ifndef SECTIONFS_PRIVILEGE_H
#define SECTIONFS_PRIVILEGE_H

#include <stdbool.h>

/* CAP_SYS_ADMIN in the effective set, in the initial user namespace. */
bool privilege_sys_admin(void);

#endif /* SECTIONFS_PRIVILEGE_H */
