/*
 * keeper.h - what the serving process asks of the process that keeps the
 * mount's descriptors across its death.
 *
 * A descriptor held (keeper_hold) is kept by the keeper and found by a
 * successor at the same number; the record of the namespace is one of
 * them (keeper_set_record_fd), and a successor finds it again with
 * keeper_record_fd().  Without a keeper these hold nothing: the first
 * server is the only one.
 */
#ifndef SECTIONFS_KEEPER_H
#define SECTIONFS_KEEPER_H

#include <stdbool.h>
#include <stdint.h>

#include <fuse_lowlevel.h>

/* This server has a keeper. */
bool keeper_on(void);
/* The keeper keeps a copy of fd, which a successor finds at the same
 * number; returns when the copy is safe.  Call before the reply that
 * makes what fd holds reachable.  0 or -errno. */
int keeper_hold(int fd);
/* Before close() of a held fd. */
void keeper_release(int fd);
/* The record's own memfd (held). */
void keeper_set_record_fd(int fd);
/* In a successor: that fd; -1 in a first server. */
int keeper_record_fd(void);

/* In wire.c: the request's unique as the kernel sent it (bit 63: sent
 * again after a server's death, FUSE_NOTIFY_RESEND). */
uint64_t wire_request_unique(fuse_req_t req);
#define UNIQUE_RESENT	(1ULL << 63)

#endif /* SECTIONFS_KEEPER_H */
