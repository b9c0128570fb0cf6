/*
 * fault_child.c - touch one byte of a view in a child and report the fault.
 *
 * Some contracts can only be seen as a signal: a PROT_READ view refuses a
 * write (SIGSEGV), a view past the end of a section faults (SIGBUS, as on
 * tmpfs), a fault past a size cap gets SIGBUS.  This helper maps FILE,
 * forks, lets the child touch the byte at OFFSET (with core dumps off),
 * and turns what happened to the child into its own exit status, so the
 * caller never has to take a signal itself.
 *
 *   fault_child FILE MODE ACCESS OFFSET [LENGTH]
 *
 * MODE: "shared" (MAP_SHARED, PROT_READ|PROT_WRITE, file opened O_RDWR),
 * "private" (MAP_PRIVATE, PROT_READ|PROT_WRITE, O_RDONLY) or "readonly"
 * (MAP_SHARED, PROT_READ, O_RDONLY).  ACCESS: "read" or "write".  LENGTH is
 * the view's length (default: the file's size rounded up to a page, at
 * least one page), so a view may reach past the end of the file.
 *
 * Prints one line saying what the child got.  Exit status:
 *   0  the access completed (no fault)
 *   10 the child got SIGSEGV
 *   11 the child got SIGBUS
 *   12 the child died of another signal or exited abnormally
 *   2  usage or setup error (open, fstat, mmap, fork)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "view_mode.h"

/*
 * In a --enable-sanitizers build this helper is built with ASan, which
 * would catch the child's SIGSEGV/SIGBUS itself and abort; the fault is
 * what we want to see, so ASan is told to leave those signals alone.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "handle_segv=0:handle_sigbus=0";
}

static void usage(void)
{
	fprintf(stderr, "usage: fault_child FILE shared|private|readonly "
		"read|write OFFSET [LENGTH]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const struct view_mode *mode;
	int oflags, prot, flags, fd, status, do_write;
	uint64_t off, len;
	long page = sysconf(_SC_PAGESIZE);
	struct stat st;
	volatile unsigned char *view;
	char *end;
	pid_t pid;

	if (argc < 5 || argc > 6)
		usage();
	mode = view_mode(argv[2]);
	if (!mode)
		usage();
	oflags = mode->oflags;
	prot = mode->prot;
	flags = mode->flags;
	if (strcmp(argv[3], "read") == 0)
		do_write = 0;
	else if (strcmp(argv[3], "write") == 0)
		do_write = 1;
	else
		usage();
	errno = 0;
	off = strtoull(argv[4], &end, 0);
	if (errno || *end)
		usage();

	fd = open(argv[1], oflags | O_CLOEXEC);
	if (fd < 0) {
		printf("setup error: open %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	if (fstat(fd, &st) < 0) {
		printf("setup error: fstat: %s\n", strerror(errno));
		return 2;
	}
	len = ((uint64_t)st.st_size + page - 1) / page * page;
	if (len == 0)
		len = page;
	if (argc == 6) {
		errno = 0;
		len = strtoull(argv[5], &end, 0);
		if (errno || *end || len == 0)
			usage();
	}
	if (off >= len) {
		printf("setup error: offset %" PRIu64 " outside view of %" PRIu64
		       " bytes\n", off, len);
		return 2;
	}
	view = mmap(NULL, len, prot, flags, fd, 0);
	if (view == MAP_FAILED) {
		printf("setup error: mmap: %s\n", strerror(errno));
		return 2;
	}
	close(fd);
	fflush(stdout);

	pid = fork();
	if (pid < 0) {
		printf("setup error: fork: %s\n", strerror(errno));
		return 2;
	}
	if (pid == 0) {
		struct rlimit no_core = { 0, 0 };

		setrlimit(RLIMIT_CORE, &no_core);
		if (do_write)
			view[off] = (unsigned char)(view[off] + 1);
		else
			(void)view[off];
		_exit(0);
	}
	if (waitpid(pid, &status, 0) < 0) {
		printf("setup error: waitpid: %s\n", strerror(errno));
		return 2;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		printf("no fault: %s of byte %" PRIu64 " completed\n", argv[3], off);
		return 0;
	}
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);

		printf("%s: %s of byte %" PRIu64 " killed the child\n",
		       sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" :
		       strsignal(sig), argv[3], off);
		return sig == SIGSEGV ? 10 : sig == SIGBUS ? 11 : 12;
	}
	printf("child exited with status %d\n", WEXITSTATUS(status));
	return 12;
}
