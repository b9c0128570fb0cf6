/*
 * privilege.h - may this daemon do what only an administrator may, and
 * lay that down while it acts for a user.
 *
 * Kernel FUSE passthrough and private tmpfs mounts both need
 * CAP_SYS_ADMIN in the initial user namespace; this leaf answers the
 * question once, for both.  A thread that works on a user's file lowers
 * its effective capability set for the while, so that the kernel treats
 * the work as that user's (set-ID bits, reserved blocks, quotas).
 */
#ifndef SECTIONFS_PRIVILEGE_H
#define SECTIONFS_PRIVILEGE_H

#include <linux/capability.h>
#include <stdbool.h>
#include <stdint.h>

/* CAP_SYS_ADMIN in the effective set, in the initial user namespace. */
bool privilege_sys_admin(void);

/* One thread's capability sets before privilege_lower(). */
struct privilege_saved {
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	bool lowered;		/* capset was called: restore must undo it */
};

/*
 * Empty this thread's effective capability set but for keep (a CAP_*
 * number, kept only if already effective; -1 for none).  The permitted
 * set is left whole, so privilege_restore() can take everything back.
 * A daemon with nothing to lay down makes no capset call.  -errno from
 * capget/capset, the thread unchanged.
 */
int privilege_lower(int keep, struct privilege_saved *s);

/* Put back the effective set privilege_lower() saved.  -errno (logged). */
int privilege_restore(const struct privilege_saved *s);

/*
 * After the thread's fsuid went back to 0 (which makes the kernel raise
 * the file capabilities from the permitted set), make the effective set
 * exactly the saved one again; a no-op, without a syscall, where the
 * saved set had them all.
 */
int privilege_settle(const struct privilege_saved *s);

#endif /* SECTIONFS_PRIVILEGE_H */
