/*
 * metabench.c - time the name operations of a filesystem, phase by phase.
 *
 * `make bench` runs this against tmpfs and sectionfs to compare what
 * names cost.  In DIR it creates FILES empty files, stats each, opens and
 * closes each, lists the directory REPEATS times, renames each and unlinks
 * each, and prints the operations per second of every phase.  THREADS
 * threads share each phase: they split the names (thread t takes every
 * THREADS-th name from t on) and the directory listings, start together
 * and the phase ends when the last one is done.  The phases that change
 * nothing (stat, open+close, readdir) go on with further whole passes
 * until MIN_SECONDS have gone by, so that on a fast filesystem a figure
 * is not the length of one scheduler tick.  It touches nothing but the
 * names it made, and leaves DIR as it found it when it succeeds.
 *
 *   metabench DIR THREADS [FILES [REPEATS [MIN_SECONDS]]]
 *
 * FILES defaults to 10000, REPEATS to 4, MIN_SECONDS to 0.2.  Output, one
 * line per phase:
 *   PHASE OPS SECONDS OPS_PER_SECOND
 * after a first line starting with '#' that names the columns.  A listing
 * counts one operation per entry returned, "." and ".." excluded; fewer
 * entries than FILES per listing is a failure.
 * Exit status: 0 done, 1 an operation failed (the failing call and name
 * are printed on stderr; files made so far are left behind), 2 usage.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum mb_phase {
	MB_CREATE,
	MB_STAT,
	MB_OPEN,
	MB_READDIR,
	MB_RENAME,
	MB_UNLINK,
	MB_NPHASES
};

static const char *const mb_phase_names[MB_NPHASES] = {
	"create", "stat", "open+close", "readdir", "rename", "unlink",
};

/* What every thread shares; written before the threads start, read only. */
struct mb_run {
	const char *dir;
	int dirfd;
	long files;
	long repeats;
	long threads;
	double min_seconds;
	double deadline;		/* of the phase under way; set by main */
	pthread_barrier_t start;	/* all threads and main, per phase */
	pthread_barrier_t done;		/* likewise, at the end of a phase */
};

struct mb_thread {
	struct mb_run *run;
	long index;
	long ops;	/* operations done in this phase; its own */
	long listings;	/* listings done, all phases; its own */
	int failed;	/* set by this thread, read by main after join */
	pthread_t tid;
};

static void mb_name(char *buf, size_t len, char prefix, long i)
{
	snprintf(buf, len, "%c%07ld", prefix, i);
}

/* Report a failed call on one name; returns -1 for the caller to pass up. */
static int mb_fail(const char *call, const char *name)
{
	int err = errno;

	fprintf(stderr, "metabench: %s %s: %s\n", call, name, strerror(err));
	return -1;
}

static double mb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* List the directory once; adds the entries seen to *entries. */
static int mb_list(const struct mb_run *run, long *entries)
{
	struct dirent *de;
	DIR *d;
	int fd;

	fd = open(run->dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return mb_fail("open", run->dir);
	d = fdopendir(fd);
	if (!d) {
		mb_fail("fdopendir", run->dir);
		close(fd);
		return -1;
	}
	errno = 0;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			(*entries)++;
	}
	if (errno) {
		mb_fail("readdir", run->dir);
		closedir(d);
		return -1;
	}
	closedir(d);
	return 0;
}

/* One pass of one thread's share of one phase; 0, or -1 after printing
 * the failure.  Adds the operations done to t->ops. */
static int mb_pass(struct mb_thread *t, enum mb_phase phase)
{
	const struct mb_run *run = t->run;
	char name[32], other[32];
	struct stat st;
	long i;
	int fd;

	if (phase == MB_READDIR) {
		for (i = t->index; i < run->repeats; i += run->threads) {
			if (mb_list(run, &t->ops))
				return -1;
			t->listings++;
		}
		return 0;
	}
	for (i = t->index; i < run->files; i += run->threads) {
		mb_name(name, sizeof(name), 'f', i);
		switch (phase) {
		case MB_CREATE:
			fd = openat(run->dirfd, name,
				    O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC,
				    0644);
			if (fd < 0)
				return mb_fail("create", name);
			close(fd);
			break;
		case MB_STAT:
			if (fstatat(run->dirfd, name, &st, 0))
				return mb_fail("stat", name);
			break;
		case MB_OPEN:
			fd = openat(run->dirfd, name, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				return mb_fail("open", name);
			close(fd);
			break;
		case MB_RENAME:
			mb_name(other, sizeof(other), 'r', i);
			if (renameat(run->dirfd, name, run->dirfd, other))
				return mb_fail("rename", name);
			break;
		case MB_UNLINK:
			mb_name(other, sizeof(other), 'r', i);
			if (unlinkat(run->dirfd, other, 0))
				return mb_fail("unlink", other);
			break;
		default:
			break;
		}
		t->ops++;
	}
	return 0;
}

/* One thread's share of one phase: one pass, and more of the phases that
 * change nothing until the phase's deadline. */
static int mb_work(struct mb_thread *t, enum mb_phase phase)
{
	int again = phase == MB_STAT || phase == MB_OPEN || phase == MB_READDIR;

	t->ops = 0;
	do {
		if (mb_pass(t, phase))
			return -1;
	} while (again && mb_now() < t->run->deadline);
	return 0;
}

/*
 * Every phase in order, between the two barriers main times them by.  A
 * thread that failed keeps meeting the barriers, doing no more work, so
 * that main and the other threads are never left waiting.
 */
static void *mb_thread_main(void *arg)
{
	struct mb_thread *t = arg;
	int phase;

	for (phase = 0; phase < MB_NPHASES; phase++) {
		pthread_barrier_wait(&t->run->start);
		if (!t->failed && mb_work(t, phase))
			t->failed = 1;
		/* Main reads t->ops once past this barrier. */
		pthread_barrier_wait(&t->run->done);
	}
	return NULL;
}

/* A positive number from argv, or -1. */
static long mb_count(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v <= 0)
		return -1;
	return v;
}

/* A number of seconds from argv, at most an hour, or -1. */
static double mb_seconds(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0 && v <= 3600))
		return -1;
	return v;
}

static void mb_usage(void)
{
	fprintf(stderr, "usage: metabench DIR THREADS [FILES [REPEATS "
		"[MIN_SECONDS]]]\n");
}

int main(int argc, char *argv[])
{
	double seconds[MB_NPHASES], t0;
	long ops[MB_NPHASES], i, listings;
	struct mb_thread *threads;
	struct mb_run run;
	int phase, failed = 0, err;

	if (argc < 3 || argc > 6) {
		mb_usage();
		return 2;
	}
	memset(&run, 0, sizeof(run));
	run.dir = argv[1];
	run.threads = mb_count(argv[2]);
	run.files = argc > 3 ? mb_count(argv[3]) : 10000;
	run.repeats = argc > 4 ? mb_count(argv[4]) : 4;
	run.min_seconds = argc > 5 ? mb_seconds(argv[5]) : 0.2;
	if (run.threads < 0 || run.files < 0 || run.repeats < 0 ||
	    run.min_seconds < 0 ||
	    run.threads > 1024 || run.files > 9999999) {
		mb_usage();
		return 2;
	}
	run.dirfd = open(run.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (run.dirfd < 0) {
		mb_fail("open", run.dir);
		return 2;
	}
	threads = calloc(run.threads, sizeof(*threads));
	if (!threads) {
		fprintf(stderr, "metabench: out of memory\n");
		return 2;
	}
	if (pthread_barrier_init(&run.start, NULL, run.threads + 1) ||
	    pthread_barrier_init(&run.done, NULL, run.threads + 1)) {
		fprintf(stderr, "metabench: cannot make barriers\n");
		return 2;
	}
	for (i = 0; i < run.threads; i++) {
		threads[i].run = &run;
		threads[i].index = i;
		err = pthread_create(&threads[i].tid, NULL, mb_thread_main,
				     &threads[i]);
		if (err) {
			/* The barriers count on every thread: give up now. */
			fprintf(stderr, "metabench: pthread_create: %s\n",
				strerror(err));
			exit(2);
		}
	}
	for (phase = 0; phase < MB_NPHASES; phase++) {
		/* The threads read the deadline only after this barrier. */
		run.deadline = mb_now() + run.min_seconds;
		pthread_barrier_wait(&run.start);
		t0 = mb_now();
		pthread_barrier_wait(&run.done);
		seconds[phase] = mb_now() - t0;
		ops[phase] = 0;
		for (i = 0; i < run.threads; i++)
			ops[phase] += threads[i].ops;
	}
	listings = 0;
	for (i = 0; i < run.threads; i++) {
		pthread_join(threads[i].tid, NULL);
		failed |= threads[i].failed;
		listings += threads[i].listings;
	}
	pthread_barrier_destroy(&run.start);
	pthread_barrier_destroy(&run.done);
	free(threads);
	close(run.dirfd);
	if (failed)
		return 1;
	if (ops[MB_READDIR] < run.files * listings) {
		fprintf(stderr, "metabench: %ld listings returned %ld entries, "
			"fewer than %ld each\n", listings, ops[MB_READDIR],
			run.files);
		return 1;
	}

	printf("# phase ops seconds ops_per_second (%ld threads, %ld files)\n",
	       run.threads, run.files);
	for (phase = 0; phase < MB_NPHASES; phase++)
		printf("%s %ld %.6f %.0f\n", mb_phase_names[phase], ops[phase],
		       seconds[phase],
		       seconds[phase] > 0 ? ops[phase] / seconds[phase] : 0.0);
	return 0;
}
