/*
 * view_mode.h - the view modes the test helpers map files with.
 *
 * "shared" (MAP_SHARED read/write, file opened O_RDWR), "private"
 * (MAP_PRIVATE copy-on-write, opened O_RDONLY) and "readonly" (MAP_SHARED
 * PROT_READ, opened O_RDONLY): one table, so that mmap_view and
 * fault_child cannot mean different things by one word.
 */
#ifndef SECTIONFS_TEST_VIEW_MODE_H
#define SECTIONFS_TEST_VIEW_MODE_H

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>

struct view_mode {
	const char *name;
	int oflags;	/* open(2) flags */
	int prot;	/* mmap(2) protection */
	int flags;	/* mmap(2) flags */
};

/* The mode called name, or NULL. */
static inline const struct view_mode *view_mode(const char *name)
{
	static const struct view_mode modes[] = {
		{ "shared", O_RDWR, PROT_READ | PROT_WRITE, MAP_SHARED },
		{ "private", O_RDONLY, PROT_READ | PROT_WRITE, MAP_PRIVATE },
		{ "readonly", O_RDONLY, PROT_READ, MAP_SHARED },
	};
	size_t i;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(modes[i].name, name))
			return &modes[i];
	return NULL;
}

#endif /* SECTIONFS_TEST_VIEW_MODE_H */
