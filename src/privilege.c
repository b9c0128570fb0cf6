/*
 * privilege.c - the daemon's administrative privilege, probed once.
 *
 * Owns nothing but the probe: the effective capability set (capget(2):
 * glibc has no wrapper and libcap would be a dependency) and whether the
 * daemon runs in the initial user namespace, where the kernel checks the
 * capability for backing files and filesystem mounts.
 */
#include "config.h"

#include <linux/capability.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

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
