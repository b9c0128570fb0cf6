/*
 * privilege.c - the daemon's administrative privilege, probed once, and
 * laid down for a while on one thread.
 *
 * Owns the probe (the effective capability set, and whether the daemon
 * runs in the initial user namespace, where the kernel checks the
 * capability for backing files and filesystem mounts) and the lowering
 * of one thread's effective set while it acts for a user.  capget(2) and
 * capset(2) are raw syscalls: glibc has no wrapper, libcap would be a
 * dependency, and the kernel applies capset to the calling thread only,
 * which is what a daemon serving many users on many threads needs.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "privilege.h"

static bool has_cap_sys_admin(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &hdr, data) < 0)
		return false;
	return data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective &
	       CAP_TO_MASK(CAP_SYS_ADMIN);
}

/*
 * The initial namespace maps every uid onto itself in one line; a child
 * namespace almost never does, and where it does the kernel refuses later.
 */
static bool in_initial_userns(void)
{
	unsigned long inside, outside, count;
	char line[128];
	bool initial = false;
	int lines = 0;
	FILE *f = fopen("/proc/self/uid_map", "re");

	if (!f)
		return true;	/* no /proc: let the kernel be the judge */
	while (fgets(line, sizeof(line), f)) {
		lines++;
		if (sscanf(line, "%lu %lu %lu", &inside, &outside, &count) == 3 &&
		    inside == 0 && outside == 0 && count == 4294967295UL)
			initial = true;
	}
	fclose(f);
	return initial && lines == 1;
}

bool privilege_sys_admin(void)
{
	static int cached = -1;

	if (cached < 0)
		cached = has_cap_sys_admin() && in_initial_userns();
	return cached;
}

/*
 * The capabilities the kernel raises in the effective set from the
 * permitted one when a thread's fsuid goes back to 0 (CAP_FS_SET in the
 * kernel's capability.h); only those can differ after a credential switch
 * is undone.
 */
static const uint64_t fs_set =
	1ULL << CAP_CHOWN | 1ULL << CAP_MKNOD | 1ULL << CAP_DAC_OVERRIDE |
	1ULL << CAP_DAC_READ_SEARCH | 1ULL << CAP_FOWNER | 1ULL << CAP_FSETID |
	1ULL << CAP_LINUX_IMMUTABLE | 1ULL << CAP_MAC_OVERRIDE;

static uint64_t effective_of(const struct privilege_saved *s)
{
	return (uint64_t)s->data[1].effective << 32 | s->data[0].effective;
}

static uint64_t permitted_of(const struct privilege_saved *s)
{
	return (uint64_t)s->data[1].permitted << 32 | s->data[0].permitted;
}

static int set_effective(const struct privilege_saved *s, uint64_t effective)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memcpy(data, s->data, sizeof(data));
	data[0].effective = (uint32_t)effective;
	data[1].effective = (uint32_t)(effective >> 32);
	return syscall(SYS_capset, &hdr, data) ? -errno : 0;
}

int privilege_lower(int keep, struct privilege_saved *s)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	uint64_t want;
	int err;

	s->lowered = false;
	/* valgrind 3.19 takes capget(2) to fill only the first word. */
	memset(s->data, 0, sizeof(s->data));
	if (syscall(SYS_capget, &hdr, s->data))
		return -errno;
	want = keep >= 0 ? effective_of(s) & 1ULL << keep : 0;
	if (effective_of(s) == want)
		return 0;	/* nothing to lay down: no syscall */
	err = set_effective(s, want);
	if (!err)
		s->lowered = true;
	return err;
}

int privilege_restore(const struct privilege_saved *s)
{
	int err;

	if (!s->lowered)
		return 0;
	err = set_effective(s, effective_of(s));
	if (err)
		log_err("cannot take back the daemon's capabilities: %s",
			strerror(-err));
	return err;
}

int privilege_settle(const struct privilege_saved *s)
{
	/* Raised by the fsuid's return to 0 though the daemon had laid
	 * them down itself: lay them down again. */
	if (!s->lowered || !(permitted_of(s) & fs_set & ~effective_of(s)))
		return 0;
	return privilege_restore(s);
}
