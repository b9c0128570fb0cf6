/*
 * charge.h - page-file memory charged to the caller's memory cgroup.
 *
 * The kernel charges a new shmem page to the memory cgroup of the process
 * whose mm allocates it.  Pages the daemon allocates in a store (the
 * cached path's writes, fallocate on either path) would be the daemon's;
 * on tmpfs they would be the writer's, and a container or a user slice
 * holds its users to them.  For a caller in a memory cgroup other than
 * the daemon's, the pages are allocated by a *charger*: a small child
 * process of the daemon living in that cgroup, one per cgroup in use (at
 * most CHARGERS_MAX), gone after CHARGER_IDLE seconds unused.  A caller in
 * the daemon's own cgroup, or a machine without a memory controller,
 * costs nothing but a look in a small cache.
 */
#ifndef SECTIONFS_CHARGE_H
#define SECTIONFS_CHARGE_H

#include <sys/types.h>

/*
 * fallocate(fd, mode, off, len) of a store file, with the pages it
 * allocates charged to pid's memory cgroup: in that cgroup's charger, or
 * by the daemon itself when pid is the daemon's cgroup, unknown (pid 0:
 * the kernel's writeback) or already gone.  Returns 0 or -errno:
 * fallocate's own, or ENOMEM when the cgroup is full (its charger is
 * then the one the kernel's OOM killer picks) or no charger can be had.
 */
int charge_fallocate(pid_t pid, int fd, int mode, off_t off, off_t len);

/*
 * Before the daemon writes [off, off + len) of a store file for pid:
 * allocate the range's missing pages (FALLOC_FL_KEEP_SIZE) in pid's
 * charger, so that the write fills pages charged to pid's cgroup.
 * Nothing when the daemon's own cgroup would pay anyway.  0 or -errno as
 * charge_fallocate.
 */
int charge_populate(pid_t pid, int fd, off_t off, off_t len);

#endif /* SECTIONFS_CHARGE_H */
