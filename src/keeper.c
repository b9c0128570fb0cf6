/*
 * keeper.c - the keeper, absent: this server is the mount's only one.
 *
 * Nothing is held and nothing is handed on: a first server with no keeper
 * has no successor to find its descriptors or its record.
 */
#include "config.h"

#include "keeper.h"

bool keeper_on(void)
{
	return false;
}

int keeper_hold(int fd)
{
	return 0;
}

void keeper_release(int fd)
{
}

void keeper_set_record_fd(int fd)
{
}

int keeper_record_fd(void)
{
	return -1;
}

/* Until the wire knows a request's unique: none (0), so nothing is ever
 * answered as resent.  Weak: the wire's own takes its place. */
__attribute__((weak)) uint64_t wire_request_unique(fuse_req_t req)
{
	return 0;
}
