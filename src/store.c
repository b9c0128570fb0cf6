/*
 * store.c - memfd stores for page-file-backed sections.
 *
 * Owns how a store file comes to be and what it is called; it does not
 * know what a section is or how its bytes are reached.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "store.h"

/* memfd names are limited to NAME_MAX minus the "memfd:" prefix. */
#define STORE_NAME_MAX	249
#define STORE_PREFIX	"sectionfs:"

int store_create(const char *name)
{
	char label[STORE_NAME_MAX + 1];
	size_t room = STORE_NAME_MAX - strlen(STORE_PREFIX);
	size_t len = strlen(name);
	int fd;

	/* Keep the end of a long path: the section's own name is there. */
	if (len > room)
		name += len - room;
	snprintf(label, sizeof(label), STORE_PREFIX "%s", name);

	fd = memfd_create(label, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	return fd < 0 ? -errno : fd;
}
