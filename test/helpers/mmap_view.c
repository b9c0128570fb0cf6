/*
 * mmap_view.c - hold one mmap view of a file and act on it on command.
 *
 * The pytest suite uses this to have a second (or third) process look at
 * a section through its own view: one process writes through its view and
 * another checks that it sees the bytes, or the test writes with write()
 * and asks the view what it sees.  It owns nothing but its mapping; it
 * never opens anything but FILE and, for "pfn", /proc/self/pagemap.
 *
 *   mmap_view FILE MODE [LENGTH] [COMMAND...]
 *
 * MODE is "shared" (MAP_SHARED, read/write, file opened O_RDWR),
 * "private" (MAP_PRIVATE, read/write copy-on-write, file opened O_RDONLY)
 * or "readonly" (MAP_SHARED, PROT_READ, file opened O_RDONLY).  LENGTH is
 * the length of the view (default: the file's size).  The view starts at
 * file offset 0, so offsets below are file offsets.
 *
 * Commands (fields separated by ':'):
 *   write:OFF:LEN:SEED   store pattern SEED (pattern_byte() below);
 *                        refused on a readonly view (fault_child shows
 *                        the fault instead)
 *   verify:OFF:LEN:SEED  check the view holds pattern SEED there
 *   zero:OFF:LEN         check the view holds zero bytes there
 *   pfn:OFF              print the physical frame of the page at OFF
 *                        (needs root; the page is touched by a read first)
 *   msync                msync(MS_SYNC) the whole view
 * With COMMANDs on the command line they run in order and the program
 * exits; without, it prints "ready LENGTH", then reads one command per line
 * from stdin, answers each with one line, and unmaps and exits at EOF, so
 * the caller decides how long the view lives.
 *
 * Every answer starts with "ok", "mismatch" or "fail" and says what was
 * seen.  Exit status: 0 all commands ok, 1 a verify or zero check saw other
 * bytes, 2 usage or setup error (open, fstat, mmap), 3 a command failed
 * (bad syntax, pagemap unreadable).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "view_mode.h"

/*
 * The test pattern: the byte at absolute file offset i for seed s is
 *     (s * 151 + i * 7 + (i >> 12) * 13 + 1) mod 256,
 * so every page differs from its neighbours and a page that lands at the
 * wrong offset is caught.  test/util.py's pattern() computes the same
 * function; keep the two in step.
 */
static inline uint8_t pattern_byte(uint64_t i, unsigned seed)
{
	return (uint8_t)(seed * 151u + i * 7u + (i >> 12) * 13u + 1u);
}

static unsigned char *view;
static size_t view_len;
static int view_writable;
static int worst;		/* highest exit status seen so far */

static void note(int status)
{
	if (status > worst)
		worst = status;
}

static int parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* Check [off, off+len) lies inside the view; print a failure if not. */
static int in_view(const char *cmd, uint64_t off, uint64_t len)
{
	if (off > view_len || len > view_len - off) {
		printf("fail %s: range %" PRIu64 "+%" PRIu64
		       " outside view of %zu bytes\n", cmd, off, len, view_len);
		note(3);
		return 0;
	}
	return 1;
}

static void do_write(uint64_t off, uint64_t len, unsigned seed)
{
	for (uint64_t i = off; i < off + len; i++)
		view[i] = pattern_byte(i, seed);
	printf("ok write %" PRIu64 " %" PRIu64 " %u\n", off, len, seed);
}

/* want_zero selects the all-zero check; otherwise pattern seed. */
static void do_verify(const char *cmd, uint64_t off, uint64_t len,
		      unsigned seed, int want_zero)
{
	for (uint64_t i = off; i < off + len; i++) {
		unsigned char want = want_zero ? 0 : pattern_byte(i, seed);

		if (view[i] != want) {
			printf("mismatch %s at %" PRIu64 ": got 0x%02x want 0x%02x\n",
			       cmd, i, view[i], want);
			note(1);
			return;
		}
	}
	printf("ok %s %" PRIu64 " %" PRIu64 "\n", cmd, off, len);
}

static void do_pfn(uint64_t off)
{
	long page = sysconf(_SC_PAGESIZE);
	uintptr_t addr = (uintptr_t)(view + off);
	uint64_t entry;
	volatile unsigned char touch;
	int fd;

	touch = view[off];
	(void)touch;
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		printf("fail pfn: open /proc/self/pagemap: %s\n", strerror(errno));
		note(3);
		return;
	}
	if (pread(fd, &entry, sizeof(entry),
		  (off_t)(addr / page * sizeof(entry))) != sizeof(entry)) {
		printf("fail pfn: read pagemap: %s\n", strerror(errno));
		close(fd);
		note(3);
		return;
	}
	close(fd);
	if (!(entry >> 63 & 1)) {
		printf("fail pfn %" PRIu64 ": page not present\n", off);
		note(3);
		return;
	}
	/* Bits 0-54 are the PFN; they read as zero without CAP_SYS_ADMIN. */
	printf("ok pfn %" PRIu64 " 0x%" PRIx64 "\n", off,
	       entry & ((UINT64_C(1) << 55) - 1));
}

/* Run one command "name:a:b:c"; modifies cmd. */
static void run(char *cmd)
{
	char *field[5] = { 0 };
	uint64_t a = 0, b = 0, c = 0;
	int n = 0;
	char *save = NULL;

	cmd[strcspn(cmd, "\r\n")] = '\0';
	for (char *tok = strtok_r(cmd, ": ", &save); tok != NULL && n < 5;
	     tok = strtok_r(NULL, ": ", &save))
		field[n++] = tok;
	if (n == 0)
		return;

	if (strcmp(field[0], "write") == 0 && n == 4 &&
	    !parse_u64(field[1], &a) && !parse_u64(field[2], &b) &&
	    !parse_u64(field[3], &c)) {
		if (!view_writable) {
			printf("fail write: the view is read-only "
			       "(use fault_child to see it refuse)\n");
			note(3);
		} else if (in_view("write", a, b)) {
			do_write(a, b, (unsigned)c);
		}
	} else if (strcmp(field[0], "verify") == 0 && n == 4 &&
		   !parse_u64(field[1], &a) && !parse_u64(field[2], &b) &&
		   !parse_u64(field[3], &c)) {
		if (in_view("verify", a, b))
			do_verify("verify", a, b, (unsigned)c, 0);
	} else if (strcmp(field[0], "zero") == 0 && n == 3 &&
		   !parse_u64(field[1], &a) && !parse_u64(field[2], &b)) {
		if (in_view("zero", a, b))
			do_verify("zero", a, b, 0, 1);
	} else if (strcmp(field[0], "pfn") == 0 && n == 2 &&
		   !parse_u64(field[1], &a)) {
		if (in_view("pfn", a, 1))
			do_pfn(a);
	} else if (strcmp(field[0], "msync") == 0 && n == 1) {
		if (msync(view, view_len, MS_SYNC) == 0) {
			printf("ok msync\n");
		} else {
			printf("fail msync: %s\n", strerror(errno));
			note(3);
		}
	} else {
		printf("fail bad command '%s'\n", field[0]);
		note(3);
	}
	fflush(stdout);
}

static void usage(void)
{
	fprintf(stderr, "usage: mmap_view FILE shared|private|readonly "
		"[LENGTH] [COMMAND...]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const struct view_mode *mode;
	int oflags, prot, flags, fd, first_cmd = 3;
	uint64_t len;
	struct stat st;

	if (argc < 3)
		usage();
	mode = view_mode(argv[2]);
	if (!mode)
		usage();
	oflags = mode->oflags;
	prot = mode->prot;
	flags = mode->flags;

	fd = open(argv[1], oflags | O_CLOEXEC);
	if (fd < 0) {
		printf("fail open %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	if (fstat(fd, &st) < 0) {
		printf("fail fstat: %s\n", strerror(errno));
		return 2;
	}
	len = (uint64_t)st.st_size;
	if (argc > 3 && !parse_u64(argv[3], &len))
		first_cmd = 4;
	if (len == 0) {
		printf("fail: empty view (file size 0 and no LENGTH)\n");
		return 2;
	}
	view_len = (size_t)len;
	view = mmap(NULL, view_len, prot, flags, fd, 0);
	if (view == MAP_FAILED) {
		printf("fail mmap %s: %s\n", argv[2], strerror(errno));
		return 2;
	}
	close(fd);	/* the view keeps the file open */
	view_writable = (prot & PROT_WRITE) != 0;

	if (argc > first_cmd) {
		for (int i = first_cmd; i < argc; i++)
			run(argv[i]);
	} else {
		char line[256];

		printf("ready %zu\n", view_len);
		fflush(stdout);
		while (fgets(line, sizeof(line), stdin) != NULL)
			run(line);
	}
	munmap(view, view_len);
	return worst;
}
