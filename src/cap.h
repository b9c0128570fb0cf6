/*
 * cap.h - counting sections' memory against the mount's cap.
 *
 * With size= on the cached path (the counted store, store.h) the daemon
 * sees every write, so it charges each counted section's allocated pages
 * to the store: before an allocation it reserves what the pages it
 * touches still need, and after it settles the charge against what the
 * kernel really allocated.  For an uncounted section (no cap, a
 * file-backed section, or a capped tmpfs store whose kernel counts for
 * itself) every call here is a no-op that lets everything through.
 */
#ifndef SECTIONFS_CAP_H
#define SECTIONFS_CAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct section;

/* The unit of memory: a page of shmem. */
#define PAGE_BYTES 4096

/*
 * cachestat(2), Linux 6.5: of fd's pages in [off, off + len) (len 0: to
 * the end of the file), those in memory in *cached and those swapped out
 * or evicted in *evicted; either may be NULL.  -ENOSYS on older kernels.
 */
int cap_cachestat(int fd, uint64_t off, uint64_t len, uint64_t *cached,
		  uint64_t *evicted);

/*
 * Reserve the memory that allocating [off, off + len) of sec still needs;
 * *reserved says how much (0 for an uncounted section or nothing to
 * allocate).  -ENOSPC when it does not fit under the cap, with nothing
 * reserved.  Every call, failed or not, is ended by cap_settle().
 */
int cap_reserve(struct section *sec, off_t off, off_t len, int64_t *reserved);

/*
 * A write of len bytes at off: how many of them fit under the cap, on
 * page boundaries, with their memory reserved in *reserved (end it with
 * cap_settle()).  0 when not even a page fits.  Uncounted: all of len.
 */
size_t cap_write_fit(struct section *sec, off_t off, size_t len,
		     int64_t *reserved);

/* After an allocation (or its failure): charge sec with what its store
 * really holds, and return the reservation. */
void cap_settle(struct section *sec, int64_t reserved);

/* sec is destroyed: return everything charged to it. */
void cap_uncharge(struct section *sec);

/*
 * Without a cap, whether an eager growth of sec from st's size to size
 * fits in what the machine has left: -ENOSPC if not, else 0.  A counted
 * section is held to the cap by cap_reserve() instead (0 here).
 */
int cap_fits_in_memory(struct section *sec, const struct stat *st,
		       off_t size);

/*
 * Whether fallocate(mode, off, len) would keep pages past sec's end that
 * the cap cannot see: a counted section on a kernel without cachestat(2),
 * which the caller refuses (EOPNOTSUPP).
 */
bool cap_blind_past_end(struct section *sec, int mode, off_t off, off_t len);

#endif /* SECTIONFS_CAP_H */
