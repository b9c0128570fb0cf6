/*
 * store.h - where page-file-backed sections keep their bytes.
 *
 * A store hands out anonymous, swap-backed files that are never written
 * to disk: memfds (created MFD_CLOEXEC|MFD_ALLOW_SEALING, so the kernel
 * can enforce seals).  Nothing else in the daemon creates one.
 */
#ifndef SECTIONFS_STORE_H
#define SECTIONFS_STORE_H

/*
 * Create an empty store file whose name (seen in /proc/PID/maps and
 * /proc/PID/fd) is derived from name, the section's path; long names are
 * shortened to what the kernel accepts, keeping their end.
 * Returns a new fd owned by the caller, or -errno (EMFILE, ENFILE,
 * ENOMEM...).
 */
int store_create(const char *name);

#endif /* SECTIONFS_STORE_H */
