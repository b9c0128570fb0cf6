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
