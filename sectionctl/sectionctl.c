/*
 * sectionctl.c - the sectionfs command-line tool: create, ls, info.
 *
 * Owns the command line (commands, options, help, exit codes), the steps
 * of creating a section, and how sections are shown (an aligned table,
 * JSON, "key: value" lines).  It must only use ordinary calls on a mounted
 * sectionfs (open, ftruncate, symlink, stat, readdir and the xattr calls)
 * with the names from include/sectionfs.h: whatever it shows or sets, any
 * program can show or set the same way.  It never links libfuse and keeps
 * no state between runs.
 *
 * Exit status: 0 success, 1 an operation failed, 2 bad usage.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <locale.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <wchar.h>

#include "sectionfs.h"
#include "values.h"

#define PROG		"sectionctl"

#define EXIT_OK		0
#define EXIT_FAIL	1
#define EXIT_USAGE	2

/* What an option parser returns when the command should go on; anything
 * else is the exit status (EXIT_OK after --help). */
#define PARSED		(-1)

/* ---------------------------------------------------------------------- */
/* Messages and memory */

/* "sectionctl: WHAT: PATH: strerror(err)" on stderr. */
static void fail(const char *what, const char *path, int err)
{
	fprintf(stderr, PROG ": %s: %s: %s\n", what, path, strerror(err));
}

/* "sectionctl: WHAT: PATH: MSG" on stderr, for failures without an errno. */
static void fail_msg(const char *what, const char *path, const char *msg)
{
	fprintf(stderr, PROG ": %s: %s: %s\n", what, path, msg);
}

/*
 * "sectionctl: CMD: MSG" and a pointer to the help on stderr; returns
 * EXIT_USAGE for the caller to return.
 */
static int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": %s%s", cmd ? cmd : "", cmd ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '" PROG "%s%s --help'.\n", cmd ? " " : "",
		cmd ? cmd : "");
	return EXIT_USAGE;
}

static void out_of_memory(void)
{
	fputs(PROG ": out of memory\n", stderr);
	exit(EXIT_FAIL);
}

/* Allocators for a short-lived tool: they never return NULL, they exit. */
static void *xrealloc(void *p, size_t size)
{
	p = realloc(p, size ? size : 1);
	if (!p)
		out_of_memory();
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		out_of_memory();
	return p;
}

/* "dir/name" in new memory, without doubling a trailing slash. */
static char *join_path(const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	bool slash = dl > 0 && dir[dl - 1] != '/';
	char *p = xrealloc(NULL, dl + slash + nl + 1);

	memcpy(p, dir, dl);
	if (slash)
		p[dl] = '/';
	memcpy(p + dl + slash, name, nl + 1);
	return p;
}

/* ---------------------------------------------------------------------- */
/* Values: sizes and seal lists */

/*
 * A section size: values.h's grammar without its "%" (a section has no
 * share of memory to be a percentage of), fitting an off_t.
 */
static int parse_section_size(const char *s, off_t *out)
{
	uint64_t v;

	if (strchr(s, '%') || parse_size(s, 0, &v) || v > (uint64_t)INT64_MAX)
		return -EINVAL;
	*out = (off_t)v;
	return 0;
}

/* Reformat a list as values.h writes it; a list it cannot read stays. */
static void canonical_seals(char **seals)
{
	char buf[64];
	unsigned int mask;

	if (*seals && parse_seals(*seals, strlen(*seals), &mask) == 0 &&
	    format_seals(mask, buf, sizeof(buf)) >= 0) {
		free(*seals);
		*seals = xstrdup(buf);
	}
}

/*
 * A size for people, rounded up as ls -h does so that nothing looks
 * smaller than it is: "512", "4.0K", "1.1K", "12M".
 */
static void human_size(uint64_t n, char *buf, size_t size)
{
	static const char units[] = "KMGTPE";
	uint64_t scale = 1024, q, r, tenths;
	unsigned int u = 0;

	if (n < 1024) {
		snprintf(buf, size, "%" PRIu64, n);
		return;
	}
	while (u < sizeof(units) - 2 && n / scale >= 1024) {
		scale <<= 10;
		u++;
	}
	q = n / scale;
	r = n % scale;
	tenths = q * 10 + (r * 10 + scale - 1) / scale;
	if (tenths < 100) {
		snprintf(buf, size, "%" PRIu64 ".%" PRIu64 "%c", tenths / 10,
			 tenths % 10, units[u]);
		return;
	}
	q += r != 0;
	if (q >= 1024 && u < sizeof(units) - 2)
		snprintf(buf, size, "1.0%c", units[u + 1]);
	else
		snprintf(buf, size, "%" PRIu64 "%c", q, units[u]);
}

/* ---------------------------------------------------------------------- */
/* Text: escaping for terminals and for JSON */

struct strbuf {
	char *s;
	size_t len, cap;
};

static void sb_add(struct strbuf *sb, const char *p, size_t n)
{
	if (sb->len + n + 1 > sb->cap) {
		sb->cap = (sb->len + n + 1) * 2;
		sb->s = xrealloc(sb->s, sb->cap);
	}
	memcpy(sb->s + sb->len, p, n);
	sb->len += n;
	sb->s[sb->len] = '\0';
}

/*
 * s made safe for a terminal, in new memory: characters the locale prints
 * are kept, a backslash is doubled, and every other byte (controls,
 * invalid sequences) becomes \xHH.  *width gets the columns it takes.
 */
static char *printable(const char *s, size_t *width)
{
	struct strbuf sb = { 0 };
	size_t n, cols = 0, left = strlen(s);
	mbstate_t st;
	wchar_t wc;
	char hex[5];
	int w;

	memset(&st, 0, sizeof(st));
	sb_add(&sb, "", 0);
	for (; *s; left -= n, s += n) {
		n = mbrtowc(&wc, s, left, &st);
		if (n == (size_t)-1 || n == (size_t)-2 ||
		    (w = wcwidth(wc)) < 0) {
			snprintf(hex, sizeof(hex), "\\x%02x",
				 (unsigned char)*s);
			sb_add(&sb, hex, 4);
			cols += 4;
			memset(&st, 0, sizeof(st));
			n = 1;
		} else if (*s == '\\') {
			sb_add(&sb, "\\\\", 2);
			cols += 2;
		} else {
			sb_add(&sb, s, n);
			cols += (size_t)w;
		}
	}
	*width = cols;
	return sb.s;
}

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 if none starts
 * there (overlong forms, surrogates and values past U+10FFFF are not). */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
		    (c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
		    (s[3] & 0xc0) != 0x80 || (c == 0xf0 && s[1] < 0x90) ||
		    (c == 0xf4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

/*
 * s as a JSON string.  Valid UTF-8 is copied; quotes, backslashes and
 * controls are escaped.  A byte that is not UTF-8 (names are bytes) is
 * written as the lone surrogate \udcHH, Python's "surrogateescape", so
 * json.loads() gives what os.listdir() gives.
 */
static void json_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	putc('"', f);
	for (; *p; p += n) {
		n = utf8_len(p);
		if (n == 0) {
			fprintf(f, "\\udc%02x", *p);
			n = 1;
		} else if (*p == '"' || *p == '\\') {
			fprintf(f, "\\%c", *p);
		} else if (*p == '\n') {
			fputs("\\n", f);
		} else if (*p == '\t') {
			fputs("\\t", f);
		} else if (*p < 0x20) {
			fprintf(f, "\\u%04x", *p);
		} else {
			fwrite(p, 1, n, f);
		}
	}
	putc('"', f);
}

/* ---------------------------------------------------------------------- */
/* Is it sectionfs? */

/*
 * Does /proc/self/mountinfo list a mount of type fstype with device dev?
 * Returns 1 or 0, or -1 when the mount table cannot be read.
 */
static int mountinfo_has(dev_t dev, const char *fstype)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, *sep;
	size_t cap = 0, tl = strlen(fstype);
	unsigned int maj, min;
	int found = 0;

	if (!f)
		return -1;
	while (!found && getline(&line, &cap, f) > 0) {
		if (sscanf(line, "%*u %*u %u:%u", &maj, &min) != 2 ||
		    maj != major(dev) || min != minor(dev))
			continue;
		/* Optional fields end at " - ", then the fs type. */
		sep = strstr(line, " - ");
		found = sep && !strncmp(sep + 3, fstype, tl) &&
			sep[3 + tl] == ' ';
	}
	free(line);
	fclose(f);
	return found;
}

/*
 * Is path on a sectionfs mount?  The mount table decides: the device of
 * path against the fuse.sectionfs mounts.  Without a readable table only
 * a file system that refuses user attributes (ENOTSUP) can be told apart,
 * since other ones answer ENODATA just as sectionfs directories do.
 * Returns 1 or 0, or -errno when path cannot be reached.
 */
static int on_sectionfs(const char *path)
{
	struct stat st;
	int r;

	if (stat(path, &st))
		return -errno;
	r = mountinfo_has(st.st_dev, SECTIONFS_FSTYPE);
	if (r >= 0)
		return r;
	if (getxattr(path, SECTIONFS_XATTR_KIND, NULL, 0) >= 0)
		return 1;
	return errno != ENOTSUP && errno != EOPNOTSUPP;
}

/* Say so and return false unless path is on a sectionfs mount. */
static bool check_sectionfs(const char *cmd, const char *path,
			    const char *shown)
{
	int r = on_sectionfs(path);

	if (r < 0)
		fail(cmd, shown, -r);
	else if (r == 0)
		fail_msg(cmd, shown, "not on a sectionfs mount (no "
			 SECTIONFS_FSTYPE " file system here)");
	return r == 1;
}

/* ---------------------------------------------------------------------- */
/* Reading what a section is */

/* Which fields of a row could not be read (shown "?", JSON null). */
enum {
	F_KIND = 1, F_RESIDENT = 2, F_LIFETIME = 4, F_SEALS = 8, F_BACKING = 16,
};

struct row {
	char *name;		/* what the row is called */
	char *path;		/* where the calls go */
	struct stat st;
	char *kind;		/* the kind, or "dir", "fifo"...; NULL: none */
	char *lifetime;		/* NULL: the section has none */
	char *seals;		/* canonical list, "" none; NULL: unsealable */
	char *backing;		/* NULL: page-file-backed */
	char *backing_now;	/* where that file is now; "": no name;
				   NULL: the daemon does not say */
	uint64_t resident;
	bool has_resident;
	unsigned int unknown;	/* F_* bits whose read failed */
};

/*
 * Read attribute name of path into new memory (*out, NUL-terminated, the
 * caller frees it); follow says whether a final symlink is followed.
 * Returns 0 or -errno: ENODATA when the file has no such attribute,
 * ENOTSUP when its file system has none at all.
 */
static int read_attr(const char *path, const char *name, bool follow,
		     char **out)
{
	ssize_t len, got;
	char *buf;
	int err;

	for (;;) {
		len = follow ? getxattr(path, name, NULL, 0) :
			       lgetxattr(path, name, NULL, 0);
		if (len < 0)
			return -errno;
		buf = xrealloc(NULL, (size_t)len + 1);
		got = follow ? getxattr(path, name, buf, (size_t)len) :
			       lgetxattr(path, name, buf, (size_t)len);
		if (got >= 0) {
			buf[got] = '\0';
			*out = buf;
			return 0;
		}
		err = errno;
		free(buf);
		if (err != ERANGE)	/* ERANGE: it grew; ask again */
			return -err;
	}
}

/*
 * Fill *field with attribute name of r, or leave it NULL when the section
 * has no such attribute.  Any other failure is reported (once per row),
 * marks the field unknown, and returns false.
 */
static bool row_attr(struct row *r, const char *name, unsigned int bit,
		     bool follow, char **field)
{
	int err = read_attr(r->path, name, follow, field);

	if (err == 0 || err == -ENODATA || err == -ENOTSUP ||
	    err == -EOPNOTSUPP)
		return true;
	if (!r->unknown) {
		char what[64];

		snprintf(what, sizeof(what), "read %s", name);
		fail(what, r->path, -err);
	}
	r->unknown |= bit;
	return false;
}

/* Resident is a decimal count; anything else counts as unreadable. */
static bool row_resident(struct row *r, bool follow)
{
	char *v = NULL, *end;
	bool ok = row_attr(r, SECTIONFS_XATTR_RESIDENT, F_RESIDENT, follow,
			   &v);

	if (v) {
		errno = 0;
		r->resident = strtoull(v, &end, 10);
		r->has_resident = *v >= '0' && *v <= '9' && !*end && !errno;
		if (!r->has_resident) {
			fail_msg("read " SECTIONFS_XATTR_RESIDENT, r->path,
				 "not a number");
			r->unknown |= F_RESIDENT;
			ok = false;
		}
	}
	free(v);
	return ok;
}

static const char *type_name(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:	return "dir";
	case S_IFIFO:	return "fifo";
	case S_IFCHR:	return "chardev";
	case S_IFBLK:	return "blockdev";
	case S_IFSOCK:	return "socket";
	case S_IFLNK:	return "symlink";
	default:	return "?";
	}
}

/*
 * Fill r (name and path already set) from stat and the attributes.
 * Returns 0; -errno when the file cannot be stat'ed (reported unless it
 * vanished, -ENOENT); 1 when some attribute could not be read (reported).
 */
static int row_read(struct row *r, bool follow)
{
	bool ok = true;

	if ((follow ? stat(r->path, &r->st) : lstat(r->path, &r->st))) {
		int err = errno;

		if (err != ENOENT || follow)
			fail("stat", r->path, err);
		return -err;
	}
	if (!S_ISREG(r->st.st_mode)) {
		r->kind = xstrdup(type_name(r->st.st_mode));
		return 0;
	}
	ok &= row_attr(r, SECTIONFS_XATTR_KIND, F_KIND, follow, &r->kind);
	ok &= row_resident(r, follow);
	ok &= row_attr(r, SECTIONFS_XATTR_LIFETIME, F_LIFETIME, follow,
		       &r->lifetime);
	ok &= row_attr(r, SECTIONFS_XATTR_SEALS, F_SEALS, follow, &r->seals);
	ok &= row_attr(r, SECTIONFS_XATTR_BACKING, F_BACKING, follow,
		       &r->backing);
	if (r->backing)
		ok &= row_attr(r, SECTIONFS_XATTR_BACKING_NOW, F_BACKING,
			       follow, &r->backing_now);
	canonical_seals(&r->seals);
	return ok ? 0 : 1;
}

static void row_free(struct row *r)
{
	free(r->name);
	free(r->path);
	free(r->kind);
	free(r->lifetime);
	free(r->seals);
	free(r->backing);
	free(r->backing_now);
}

/* ---------------------------------------------------------------------- */
/* Showing rows */

#define N_COLS		7

static const char *const col_title[N_COLS] = {
	"NAME", "KIND", "SIZE", "RESIDENT", "LIFETIME", "SEALS", "BACKING",
};
static const bool col_right[N_COLS] = {
	false, false, true, true, false, false, false,
};

/* A string field for people: "?" unreadable, "-" not applicable. */
static const char *shown(const struct row *r, unsigned int bit,
			 const char *v)
{
	if (r->unknown & bit)
		return "?";
	return v ? v : "-";
}

/* The seals for people: "none" when the section has none. */
static const char *shown_seals(const struct row *r)
{
	if (r->seals && !r->seals[0] && !(r->unknown & F_SEALS))
		return "none";
	return shown(r, F_SEALS, r->seals);
}

static void shown_size(uint64_t n, bool bytes, char *buf, size_t size)
{
	if (bytes)
		snprintf(buf, size, "%" PRIu64, n);
	else
		human_size(n, buf, size);
}

/*
 * The backing file for people, in new memory: its path, and whether that
 * path still names it.  A file moved, or replaced by a rename over its
 * path (as editors save), still backs the section, which says so; with
 * explain, in words.
 */
static char *shown_backing(const struct row *r, bool explain)
{
	const char *path = shown(r, F_BACKING, r->backing);
	const char *now = r->backing_now;
	struct stat st;
	char *text;
	int n;

	if (!r->backing || (r->unknown & F_BACKING) || !now ||
	    !strcmp(now, r->backing))
		return xstrdup(path);
	if (now[0])
		n = asprintf(&text, explain ? "%s (moved: the file is now %s)" :
					      "%s (moved to %s)", path, now);
	else if (lstat(path, &st) == 0)
		n = asprintf(&text, "%s (replaced%s)", path, explain ?
			     ": the path now names another file" : "");
	else
		n = asprintf(&text, "%s (deleted%s)", path, explain ?
			     ": the file has no name now" : "");
	if (n < 0)
		out_of_memory();
	return text;
}

/* The printable cells of r, each in new memory, and their widths; with
 * explain (info), what the table shortens is said in words. */
static void row_cells(const struct row *r, bool bytes, bool explain,
		      char **cell, size_t *width)
{
	char size[32], res[32];
	const char *text[N_COLS];
	char *backing = shown_backing(r, explain);
	int i;

	shown_size((uint64_t)r->st.st_size, bytes, size, sizeof(size));
	if (r->has_resident)
		shown_size(r->resident, bytes, res, sizeof(res));
	else
		snprintf(res, sizeof(res), "%s", shown(r, F_RESIDENT, NULL));
	text[0] = r->name;
	text[1] = shown(r, F_KIND, r->kind);
	text[2] = size;
	text[3] = res;
	text[4] = shown(r, F_LIFETIME, r->lifetime);
	text[5] = shown_seals(r);
	text[6] = backing;
	for (i = 0; i < N_COLS; i++)
		cell[i] = printable(text[i], &width[i]);
	free(backing);
}

static void print_cell(const char *s, size_t w, size_t col_w, bool right,
		       bool last)
{
	size_t pad = col_w - w;

	if (right)
		printf("%*s%s", (int)pad, "", s);
	else if (last)
		fputs(s, stdout);
	else
		printf("%s%*s", s, (int)pad, "");
	fputs(last ? "\n" : "  ", stdout);
}

/* The aligned table with a header line. */
static void print_table(const struct row *rows, size_t n, bool bytes)
{
	char **cell = xrealloc(NULL, (n + 1) * N_COLS * sizeof(*cell));
	size_t *width = xrealloc(NULL, (n + 1) * N_COLS * sizeof(*width));
	size_t col_w[N_COLS] = { 0 }, i;
	int c;

	for (c = 0; c < N_COLS; c++)
		cell[c] = printable(col_title[c], &width[c]);
	for (i = 0; i < n; i++)
		row_cells(&rows[i], bytes, false, cell + (i + 1) * N_COLS,
			  width + (i + 1) * N_COLS);
	for (i = 0; i < (n + 1) * N_COLS; i++)
		if (width[i] > col_w[i % N_COLS])
			col_w[i % N_COLS] = width[i];
	for (i = 0; i < (n + 1) * N_COLS; i++) {
		c = (int)(i % N_COLS);
		print_cell(cell[i], width[i], col_w[c], col_right[c],
			   c == N_COLS - 1);
		free(cell[i]);
	}
	free(cell);
	free(width);
}

/* A JSON string or null. */
static void json_opt(const char *v, bool unknown)
{
	if (v && !unknown)
		json_string(stdout, v);
	else
		fputs("null", stdout);
}

/* The seal list as a JSON array of words, or null. */
static void json_seals(const struct row *r)
{
	const char *s = r->seals;
	size_t len;

	if (!s || (r->unknown & F_SEALS)) {
		fputs("null", stdout);
		return;
	}
	putchar('[');
	while (*s) {
		char *word;

		len = strcspn(s, ",");
		word = strndup(s, len);
		if (!word)
			out_of_memory();
		fputs(s == r->seals ? "" : ", ", stdout);
		json_string(stdout, word);
		free(word);
		s += len + (s[len] == ',');
	}
	putchar(']');
}

static void json_row(const struct row *r)
{
	fputs("{\"name\": ", stdout);
	json_string(stdout, r->name);
	fputs(", \"kind\": ", stdout);
	json_opt(r->kind, r->unknown & F_KIND);
	printf(", \"size\": %jd, \"resident\": ", (intmax_t)r->st.st_size);
	if (r->has_resident)
		printf("%" PRIu64, r->resident);
	else
		fputs("null", stdout);
	fputs(", \"lifetime\": ", stdout);
	json_opt(r->lifetime, r->unknown & F_LIFETIME);
	fputs(", \"seals\": ", stdout);
	json_seals(r);
	fputs(", \"backing\": ", stdout);
	json_opt(r->backing, r->unknown & F_BACKING);
	fputs(", \"backing_now\": ", stdout);
	json_opt(r->backing_now, r->unknown & F_BACKING);
	putchar('}');
}

/* A JSON array of objects, one per row, one per line. */
static void print_json(const struct row *rows, size_t n)
{
	size_t i;

	putchar('[');
	for (i = 0; i < n; i++) {
		fputs(i ? ",\n  " : "\n  ", stdout);
		json_row(&rows[i]);
	}
	fputs(n ? "\n]\n" : "]\n", stdout);
}

/* Every field of one row, "key: value" per line, sizes exact. */
static void print_info(const struct row *r)
{
	const char *key[N_COLS] = {
		"path", "kind", "size", "resident", "lifetime", "seals",
		"backing",
	};
	char *cell[N_COLS];
	size_t width[N_COLS];
	int i;

	row_cells(r, true, true, cell, width);
	for (i = 0; i < N_COLS; i++) {
		printf("%s: %s\n", key[i], cell[i]);
		free(cell[i]);
	}
}

/* ---------------------------------------------------------------------- */
/* Commands: shared parsing */

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

/* Values of the options that have no short form (past every char). */
enum { OPT_SIZE = 256, OPT_FILE, OPT_LIFETIME, OPT_SEAL, OPT_JSON };

/* How many long options arg ("--name" or "--name=value") abbreviates. */
static int prefix_matches(const char *arg, const struct option *opts)
{
	size_t len = strcspn(arg + 2, "=");
	int n = 0;

	for (; opts->name; opts++)
		n += !strncmp(opts->name, arg + 2, len);
	return n;
}

/*
 * Report getopt's complaint about the option just seen (opterr is off and
 * the option string starts with ':') and return EXIT_USAGE.  glibc leaves
 * in optopt: 0 for an unknown or ambiguous long option (then the last
 * argument is it), the option's val for a long option given a value it
 * does not take, and the character of an unknown short option.  A missing
 * value is always at the end of argv, so argv[optind - 1] is the option.
 */
static int bad_option(const char *cmd, int c, char **argv,
		      const struct option *opts)
{
	const char *arg = argv[optind - 1];
	const struct option *o;

	if (c == ':')
		return usage_error(cmd, "option '%s' needs a value", arg);
	if (!optopt && prefix_matches(arg, opts) > 1)
		return usage_error(cmd, "ambiguous option '%s'", arg);
	if (!optopt)
		return usage_error(cmd, "unknown option '%s'", arg);
	for (o = opts; o->name; o++)
		if (o->val == optopt)
			return usage_error(cmd, "option '--%s' takes no value",
					   o->name);
	return usage_error(cmd, "unknown option '-%c'", optopt);
}

/* Between min and max operands after the options: PARSED, or say why
 * not and return EXIT_USAGE. */
static int check_operands(const char *cmd, int argc, char **argv, int min,
			  int max, const char *what)
{
	if (argc - optind < min)
		return usage_error(cmd, "missing %s", what);
	if (argc - optind > max)
		return usage_error(cmd, "unexpected argument '%s'",
				   argv[optind + max]);
	return PARSED;
}

/* ---------------------------------------------------------------------- */
/* create */

struct create_req {
	const char *section;	/* the new section's path */
	const char *file;	/* backing file (--file), or NULL */
	off_t size;
	bool has_size;
	const char *lifetime;	/* SECTIONFS_LIFETIME_*, or NULL: leave it */
	unsigned int seals;	/* seal mask to add, 0: none */
};

static void create_help(void)
{
	printf("Usage: " PROG " create [OPTIONS] SECTION\n"
	       "\n"
	       "Create SECTION on a sectionfs mount: page-file-backed\n"
	       "(memory) by default, file-backed with --file.  Fails if\n"
	       "SECTION exists; if a later step fails, removes it again.\n"
	       "\n"
	       "Options:\n"
	       "  --size N         size in bytes; a k, m, g or t suffix means\n"
	       "                   KiB, MiB, GiB, TiB (default 0)\n"
	       "  --file PATH      a file-backed section over the regular\n"
	       "                   file PATH, which is never changed\n"
	       "  --lifetime name|handle\n"
	       "                   name: lives until unlinked and unused;\n"
	       "                   handle: destroyed when its last handle\n"
	       "                   and view go (default: the mount's)\n"
	       "  --seal LIST      add seals: a comma list of grow, shrink,\n"
	       "                   write (page-file-backed only)\n"
	       "  -h, --help       show this help\n"
	       "\n"
	       "--file cannot take --size or --seal: a file-backed section\n"
	       "has its file's size and cannot be sealed.\n");
}

/* Unlink what create made, after a later step failed. */
static void create_undo(const char *section)
{
	if (unlink(section) && errno != ENOENT)
		fail("remove after failure", section, errno);
}

static int set_attr(int fd, const char *path, const char *name,
		    const char *value)
{
	if (fd >= 0)
		return fsetxattr(fd, name, value, strlen(value), 0);
	return setxattr(path, name, value, strlen(value), 0);
}

/*
 * Warn when the section will die as soon as this process closes it: the
 * mount's default lifetime is handle and nothing else holds it.
 */
static void warn_short_life(int fd, const char *section)
{
	char v[16];
	ssize_t n = fgetxattr(fd, SECTIONFS_XATTR_LIFETIME, v, sizeof(v) - 1);

	if (n < 0)
		return;
	v[n] = '\0';
	if (!strcmp(v, SECTIONFS_LIFETIME_HANDLE))
		fprintf(stderr, PROG ": create: %s: warning: its lifetime is "
			"'handle' and nothing else has it open, so it is "
			"destroyed as " PROG " exits (--lifetime name keeps "
			"it)\n", section);
}

/*
 * Seal through a read-only handle: on the cached path sectionfs refuses a
 * write seal while the section is open for writing (it cannot see the
 * kernel's writable views there), so our writable handle is swapped for a
 * read-only one first, which also keeps the section alive meanwhile.
 * Returns 0, or -1 with errno set and *fd still ours to close.
 */
static int seal_read_only(const struct create_req *c, int *fd, char *seals,
			  size_t size)
{
	int rfd = open(c->section, O_RDONLY | O_CLOEXEC);

	if (rfd < 0)
		return -1;
	if (close(*fd)) {
		int err = errno;

		*fd = rfd;
		errno = err;
		return -1;
	}
	*fd = rfd;
	format_seals(c->seals, seals, size);
	return set_attr(*fd, NULL, SECTIONFS_XATTR_SEALS, seals);
}

/*
 * A page-file-backed section: create it, size it, seal it, set its
 * lifetime.  Size comes before seals, so a grow seal cannot block it.
 * With --lifetime, the section is "name" while our handle is open, so
 * that our close does not destroy it on a mount whose default is handle;
 * "handle" is set only after the close, and then waits for the next user.
 */
static int create_pagefile(const struct create_req *c)
{
	const char *step = "create";
	char seals[64];
	int fd, err;

	fd = open(c->section, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (fd < 0) {
		fail(step, c->section, errno);
		return EXIT_FAIL;
	}
	step = "set size";
	if (c->has_size && ftruncate(fd, c->size))
		goto undo;
	step = "set lifetime";
	if (c->lifetime && set_attr(fd, NULL, SECTIONFS_XATTR_LIFETIME,
				    SECTIONFS_LIFETIME_NAME))
		goto undo;
	step = "set seals";
	if (c->seals && seal_read_only(c, &fd, seals, sizeof(seals)))
		goto undo;
	if (!c->lifetime)
		warn_short_life(fd, c->section);
	step = "close";
	err = close(fd);
	fd = -1;
	if (err)
		goto undo;
	step = "set lifetime";
	if (c->lifetime && !strcmp(c->lifetime, SECTIONFS_LIFETIME_HANDLE) &&
	    set_attr(-1, c->section, SECTIONFS_XATTR_LIFETIME, c->lifetime))
		goto undo;
	return EXIT_OK;

undo:
	err = errno;
	if (fd >= 0)
		close(fd);
	fail(step, c->section, err);
	create_undo(c->section);
	return EXIT_FAIL;
}

/*
 * Check the backing file before asking the daemon, so that each refusal
 * names the right path.  Returns its absolute path in new memory, or NULL
 * (reported).
 */
static char *backing_target(const struct create_req *c)
{
	char *target = realpath(c->file, NULL), *dir;
	struct stat ts, ds;

	if (!target) {
		fail("create: backing file", c->file, errno);
		return NULL;
	}
	if (stat(target, &ts)) {
		fail("create: backing file", c->file, errno);
		goto bad;
	}
	if (!S_ISREG(ts.st_mode)) {
		fail_msg("create: backing file", c->file,
			 "not a regular file");
		goto bad;
	}
	if (access(target, R_OK)) {
		fail("create: backing file", c->file, errno);
		goto bad;
	}
	dir = xstrdup(c->section);
	if (stat(dirname(dir), &ds) == 0 && ds.st_dev == ts.st_dev) {
		fail_msg("create: backing file", c->file,
			 "is inside the same sectionfs mount");
		free(dir);
		goto bad;
	}
	free(dir);
	return target;
bad:
	free(target);
	return NULL;
}

/* A file-backed section: symlink(realpath(file)), then its lifetime. */
static int create_filebacked(const struct create_req *c)
{
	char *target = backing_target(c);
	int ret = EXIT_FAIL;

	if (!target)
		return EXIT_FAIL;
	if (symlink(target, c->section)) {
		fail("create", c->section, errno);
		goto out;
	}
	if (c->lifetime &&
	    set_attr(-1, c->section, SECTIONFS_XATTR_LIFETIME, c->lifetime)) {
		fail("set lifetime", c->section, errno);
		create_undo(c->section);
		goto out;
	}
	ret = EXIT_OK;
out:
	free(target);
	return ret;
}

/* Check the values of create's options (after all are seen, so that
 * --help anywhere wins): PARSED, or EXIT_USAGE. */
static int create_check(struct create_req *c, const char *size,
			const char *seals)
{
	if (size && parse_section_size(size, &c->size))
		return usage_error("create", "bad size '%s': expected a number "
			"with an optional k, m, g or t suffix", size);
	c->has_size = size != NULL;
	if (c->lifetime && strcmp(c->lifetime, SECTIONFS_LIFETIME_NAME) &&
	    strcmp(c->lifetime, SECTIONFS_LIFETIME_HANDLE))
		return usage_error("create", "bad lifetime '%s': expected "
			SECTIONFS_LIFETIME_NAME " or "
			SECTIONFS_LIFETIME_HANDLE, c->lifetime);
	if (seals && parse_seals(seals, strlen(seals), &c->seals))
		return usage_error("create", "bad seal list '%s': expected a "
			"comma list of " SECTIONFS_SEAL_GROW ", "
			SECTIONFS_SEAL_SHRINK " and " SECTIONFS_SEAL_WRITE,
			seals);
	if (c->file && c->has_size)
		return usage_error("create", "--size cannot be used with "
			"--file: a file-backed section has its file's size");
	/* Given at all, even empty ("" adds no seal to a page-file one). */
	if (c->file && seals)
		return usage_error("create", "--seal cannot be used with "
			"--file: only page-file-backed sections can be sealed");
	return PARSED;
}

/* Parse create's options into *c: PARSED, or the exit status. */
static int create_parse(int argc, char **argv, struct create_req *c)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "file", required_argument, NULL, OPT_FILE },
		{ "lifetime", required_argument, NULL, OPT_LIFETIME },
		{ "seal", required_argument, NULL, OPT_SEAL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *size = NULL, *seals = NULL;
	int ch, r;

	while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_SIZE:
			size = optarg;
			break;
		case OPT_FILE:
			c->file = optarg;
			break;
		case OPT_LIFETIME:
			c->lifetime = optarg;
			break;
		case OPT_SEAL:
			seals = optarg;
			break;
		case 'h':
			create_help();
			return EXIT_OK;
		default:
			return bad_option("create", ch, argv, opts);
		}
	}
	r = check_operands("create", argc, argv, 1, 1, "SECTION");
	if (r != PARSED)
		return r;
	c->section = argv[optind];
	return create_check(c, size, seals);
}

static int cmd_create(int argc, char **argv)
{
	struct create_req c = { 0 };
	char *dir;
	bool ok;
	int r = create_parse(argc, argv, &c);

	if (r != PARSED)
		return r;
	dir = xstrdup(c.section);
	ok = check_sectionfs("create", dirname(dir), c.section);
	free(dir);
	if (!ok)
		return EXIT_FAIL;
	return c.file ? create_filebacked(&c) : create_pagefile(&c);
}

/* ---------------------------------------------------------------------- */
/* ls */

static void ls_help(void)
{
	printf("Usage: " PROG " ls [OPTIONS] [DIR]\n"
	       "\n"
	       "List the entries of DIR (default .), one row each: name,\n"
	       "kind, size, resident, lifetime, seals, backing.  Sizes are\n"
	       "rounded up to K, M, G... (powers of 1024); - means the field\n"
	       "does not apply.  DIR may also be one section.\n"
	       "\n"
	       "Options:\n"
	       "  --json           a JSON array of objects, exact numbers\n"
	       "  -b, --bytes      sizes in bytes\n"
	       "  -h, --help       show this help\n");
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct row *)a)->name,
		      ((const struct row *)b)->name);
}

/* One row per entry of dir (not . and ..), sorted by name.  Returns the
 * count, or -errno (reported). */
static long read_dir_rows(const char *dir, struct row **out)
{
	DIR *d = opendir(dir);
	struct row *rows = NULL;
	struct dirent *de;
	size_t n = 0;
	int err;

	if (!d) {
		fail("ls", dir, errno);
		return -errno;
	}
	for (errno = 0; (de = readdir(d)); errno = 0) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		rows = xrealloc(rows, (n + 1) * sizeof(*rows));
		memset(&rows[n], 0, sizeof(*rows));
		rows[n].name = xstrdup(de->d_name);
		rows[n].path = join_path(dir, de->d_name);
		n++;
	}
	err = errno;
	closedir(d);
	if (err) {
		fail("read directory", dir, err);
		while (n)
			row_free(&rows[--n]);
		free(rows);
		return -err;
	}
	if (n)			/* qsort's base may not be NULL */
		qsort(rows, n, sizeof(*rows), cmp_name);
	*out = rows;
	return (long)n;
}

/*
 * Read every row's fields, dropping those that cannot be stat'ed (entries
 * that vanished since readdir are dropped silently).  Returns false when
 * something could not be read (reported).
 */
static bool read_rows(struct row *rows, size_t *n, bool follow)
{
	size_t i, kept = 0;
	bool ok = true;
	int r;

	for (i = 0; i < *n; i++) {
		r = row_read(&rows[i], follow);
		if (r < 0) {
			ok &= r == -ENOENT && !follow;
			row_free(&rows[i]);
			continue;
		}
		ok &= r == 0;
		rows[kept++] = rows[i];
	}
	*n = kept;
	return ok;
}

static int ls_parse(int argc, char **argv, bool *json, bool *bytes)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "bytes", no_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, ":bh", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_JSON:
			*json = true;
			break;
		case 'b':
			*bytes = true;
			break;
		case 'h':
			ls_help();
			return EXIT_OK;
		default:
			return bad_option("ls", ch, argv, opts);
		}
	}
	return check_operands("ls", argc, argv, 0, 1, "DIR");
}

static int cmd_ls(int argc, char **argv)
{
	bool json = false, bytes = false, ok, follow = false;
	struct row *rows = NULL;
	const char *dir;
	struct stat st;
	size_t n, i;
	long got;
	int r = ls_parse(argc, argv, &json, &bytes);

	if (r != PARSED)
		return r;
	dir = optind < argc ? argv[optind] : ".";
	if (!check_sectionfs("ls", dir, dir))
		return EXIT_FAIL;
	if (stat(dir, &st)) {
		fail("ls", dir, errno);
		return EXIT_FAIL;
	}
	if (S_ISDIR(st.st_mode)) {
		got = read_dir_rows(dir, &rows);
		if (got < 0)
			return EXIT_FAIL;
		n = (size_t)got;
	} else {
		/* One section named on the command line: its row. */
		rows = xrealloc(NULL, sizeof(*rows));
		memset(rows, 0, sizeof(*rows));
		rows->name = xstrdup(dir);
		rows->path = xstrdup(dir);
		n = 1;
		follow = true;
	}
	ok = read_rows(rows, &n, follow);
	if (json)
		print_json(rows, n);
	else
		print_table(rows, n, bytes);
	for (i = 0; i < n; i++)
		row_free(&rows[i]);
	free(rows);
	return ok ? EXIT_OK : EXIT_FAIL;
}

/* ---------------------------------------------------------------------- */
/* info */

static void info_help(void)
{
	printf("Usage: " PROG " info SECTION\n"
	       "\n"
	       "Show every field of SECTION, one \"key: value\" per line:\n"
	       "path, kind, size and resident (in bytes), lifetime, seals,\n"
	       "backing.  - means the field does not apply; seals: none,\n"
	       "that the section has no seal.\n"
	       "\n"
	       "Options:\n"
	       "  -h, --help       show this help\n");
}

static int cmd_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct row r = { 0 };
	int ch, ret;

	while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (ch != 'h')
			return bad_option("info", ch, argv, opts);
		info_help();
		return EXIT_OK;
	}
	ret = check_operands("info", argc, argv, 1, 1, "SECTION");
	if (ret != PARSED)
		return ret;
	if (!check_sectionfs("info", argv[optind], argv[optind]))
		return EXIT_FAIL;
	r.name = xstrdup(argv[optind]);
	r.path = xstrdup(argv[optind]);
	ret = row_read(&r, true);
	if (ret >= 0)
		print_info(&r);
	row_free(&r);
	return ret == 0 ? EXIT_OK : EXIT_FAIL;
}

/* ---------------------------------------------------------------------- */
/* quota */

static void quota_help(void)
{
	printf("Usage: " PROG " quota [MOUNT]\n"
	       "\n"
	       "Show the usage and limits of each user and group with a charge on\n"
	       "the sectionfs mounted at MOUNT (default .), one line each: TYPE\n"
	       "(user or group), ID, NAME, BYTES of page-file-backed memory and\n"
	       "its LIMIT, INODES (every node: sections, directories, symbolic\n"
	       "links, special files) and their LIMIT.  - means unknown or no\n"
	       "limit.  root sees every owner, another user their own uid and\n"
	       "group.  The mount needs a limit, usrquota or grpquota.\n"
	       "\n"
	       "Options:\n"
	       "  -h, --help       show this help\n");
}

/* A user's or group's name, or "-". */
static const char *owner_name(char kind, unsigned long id)
{
	struct passwd *pw;
	struct group *gr;

	if (kind == 'u')
		return (pw = getpwuid((uid_t)id)) ? pw->pw_name : "-";
	return (gr = getgrgid((gid_t)id)) ? gr->gr_name : "-";
}

static int print_quota(const char *text)
{
	char kind, bytes[24], blim[24], inodes[24], ilim[24];
	const char *line = text;
	unsigned long id;

	printf("%-5s %10s %-12s %12s %12s %10s %10s\n", "TYPE", "ID", "NAME",
	       "BYTES", "LIMIT", "INODES", "LIMIT");
	while (*line) {
		if (sscanf(line, "%c %lu %23s %23s %23s %23s", &kind, &id, bytes,
			   inodes, blim, ilim) != 6 ||
		    (kind != 'u' && kind != 'g'))
			return -EINVAL;
		printf("%-5s %10lu %-12s %12s %12s %10s %10s\n",
		       kind == 'u' ? "user" : "group", id, owner_name(kind, id),
		       bytes, blim, inodes, ilim);
		line = strchr(line, '\n');
		if (!line)
			break;
		line++;
	}
	return 0;
}

static int cmd_quota(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *mnt;
	char *text = NULL;
	ssize_t len;
	int ch, ret;

	while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (ch != 'h')
			return bad_option("quota", ch, argv, opts);
		quota_help();
		return EXIT_OK;
	}
	ret = check_operands("quota", argc, argv, 0, 1, "MOUNT");
	if (ret != PARSED)
		return ret;
	mnt = optind < argc ? argv[optind] : ".";
	if (!check_sectionfs("quota", mnt, mnt))
		return EXIT_FAIL;
	/* The report may grow between the two calls: ask again. */
	do {
		len = getxattr(mnt, SECTIONFS_XATTR_QUOTA, NULL, 0);
		if (len < 0)
			break;
		text = xrealloc(text, (size_t)len + 1);
		len = getxattr(mnt, SECTIONFS_XATTR_QUOTA, text, (size_t)len);
	} while (len < 0 && errno == ERANGE);
	if (len < 0) {
		if (errno == ENODATA)
			fprintf(stderr, PROG ": quota: %s: no usage is counted here (mount it with a limit, usrquota or grpquota, and name its root)\n",
				mnt);
		else
			fail("quota", mnt, errno);
		free(text);
		return EXIT_FAIL;
	}
	text[len] = '\0';
	ret = print_quota(text);
	if (ret)
		fail("quota", mnt, -ret);
	free(text);
	return ret ? EXIT_FAIL : EXIT_OK;
}

/* ---------------------------------------------------------------------- */
/* main */

static const struct command commands[] = {
	{ "create", cmd_create, "create a page-file- or file-backed section" },
	{ "ls", cmd_ls, "list sections with their kind, size and controls" },
	{ "info", cmd_info, "show every field of one section" },
	{ "quota", cmd_quota, "show each user's and group's usage and limits" },
};
#define N_COMMANDS	(sizeof(commands) / sizeof(commands[0]))

static void main_help(void)
{
	size_t i;

	printf("Usage: " PROG " [--help | --version] COMMAND [OPTIONS] [ARGS]\n"
	       "\n"
	       "Create and inspect the sections of a sectionfs mount.\n"
	       "\n"
	       "Commands:\n");
	for (i = 0; i < N_COMMANDS; i++)
		printf("  %-8s %s\n", commands[i].name, commands[i].summary);
	printf("\n"
	       "Options:\n"
	       "  -h, --help       show this help\n"
	       "  -V, --version    show the version\n"
	       "\n"
	       "'" PROG " COMMAND --help' describes each command.\n"
	       "Exit status: 0 success, 1 an operation failed, 2 bad usage.\n");
}

/* Parse the options before the command: PARSED, or the exit status. */
static int main_parse(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	/* "+": stop at the command; its options are its own. */
	while ((ch = getopt_long(argc, argv, "+:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			main_help();
			return EXIT_OK;
		case 'V':
			puts(PROG " (" PACKAGE_NAME ") " PACKAGE_VERSION);
			return EXIT_OK;
		default:
			return bad_option(NULL, ch, argv, opts);
		}
	}
	if (optind >= argc)
		return usage_error(NULL, "missing COMMAND");
	return PARSED;
}

/* Stdout is flushed and closed here, so a failed write is not an exit 0. */
static int finish(int status)
{
	if (fflush(stdout) || ferror(stdout)) {
		fail("write", "standard output", errno ? errno : EIO);
		return EXIT_FAIL;
	}
	return status;
}

int main(int argc, char **argv)
{
	size_t i;
	int r;

	/* Only the character set: messages stay in the C locale. */
	setlocale(LC_CTYPE, "");
	opterr = 0;
	r = main_parse(argc, argv);
	if (r != PARSED)
		return finish(r);
	argc -= optind;
	argv += optind;
	for (i = 0; i < N_COMMANDS; i++) {
		if (!strcmp(argv[0], commands[i].name)) {
			optind = 0;	/* reset getopt for the command */
			return finish(commands[i].run(argc, argv));
		}
	}
	return finish(usage_error(NULL, "unknown command '%s'", argv[0]));
}
