/*
 * modes.h - the modes of one mount: what it is, for every request.
 *
 * One record, owned by the mount state (struct sfs_mount, mount.h) and
 * written at two moments only: before the session loop, from the
 * options and the mount point; and while INIT is answered, from what the
 * kernel offered (connection.c).  The kernel holds every other request
 * until INIT is answered, and INIT is answered on one thread, so after
 * it the record is read without locks and never written again.
 */
#ifndef SECTIONFS_MODES_H
#define SECTIONFS_MODES_H

#include <stdbool.h>
#include <sys/types.h>

#include "options.h"

struct sfs_modes {
	/* Set at INIT (taken back only before the kernel sees the INIT
	 * reply, should it not be editable: wire.h). */
	bool passthrough;	/* the kernel passes section I/O through */
	bool direct_io_mmap;	/* cached: direct_io files may be mapped
				 * shared (DIRECT_IO_ALLOW_MMAP) */
	bool writeback;		/* cached: the kernel's writeback cache */
	/* Set before the session loop. */
	bool commit_eager;	/* -o commit=eager */
	enum lifetime_mode lifetime;	/* -o lifetime=: for new sections */
	dev_t self_dev;		/* the mount's st_dev: no targets inside */
	uint64_t nr_inodes;	/* -o nr_inodes=: nodes the mount may hold */
};

#endif /* SECTIONFS_MODES_H */
