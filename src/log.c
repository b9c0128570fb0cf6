/*
 * log.c - where the daemon's messages go.
 *
 * Owns the choice between stderr and syslog and the debug switch; knows
 * nothing about what is being logged.  libfuse's messages are sent here
 * too (fuse_set_log_func), so one mount has one log.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include <fuse_log.h>

#include "log.h"

static int log_to_syslog;
static int log_debug_on;

static const int syslog_priority[] = {
	[LOG_LVL_ERR] = LOG_ERR,
	[LOG_LVL_WARN] = LOG_WARNING,
	[LOG_LVL_INFO] = LOG_INFO,
	[LOG_LVL_DEBUG] = LOG_DEBUG,
};

static void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	if (level == LOG_LVL_DEBUG && !log_debug_on)
		return;
	/*
	 * A daemon-to-be logs to both: the terminal still sees why a mount
	 * failed, and syslog gets the whole story.  Once daemonized, stderr
	 * is /dev/null.
	 */
	if (log_to_syslog) {
		va_list copy;

		va_copy(copy, ap);
		vsyslog(syslog_priority[level], fmt, copy);
		va_end(copy);
	}
	/* One fprintf per message keeps lines whole across threads. */
	char line[1024];
	vsnprintf(line, sizeof(line), fmt, ap);
	fprintf(stderr, "sectionfs: %s%s", line,
		line[0] && line[strlen(line) - 1] == '\n' ? "" : "\n");
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

static void log_line(enum log_level level, const char *line)
{
	log_msg(level, "%s", line);
}

/*
 * libfuse's levels are syslog's; map them onto ours.  libfuse sometimes
 * builds one line out of several calls, so pieces are gathered per thread
 * until a newline completes the line.
 */
static void log_from_fuse(enum fuse_log_level level, const char *fmt,
			  va_list ap)
{
	static __thread char pending[1024];
	static __thread size_t len;
	enum log_level ours = LOG_LVL_DEBUG;

	if (level <= FUSE_LOG_ERR)
		ours = LOG_LVL_ERR;
	else if (level == FUSE_LOG_WARNING)
		ours = LOG_LVL_WARN;
	else if (level <= FUSE_LOG_INFO)
		ours = LOG_LVL_INFO;
	vsnprintf(pending + len, sizeof(pending) - len, fmt, ap);
	len = strlen(pending);
	if (len && pending[len - 1] != '\n' && len < sizeof(pending) - 1)
		return;
	log_line(ours, pending);
	len = 0;
	pending[0] = '\0';
}

void log_setup(int to_syslog, int debug)
{
	log_debug_on = debug;
	if (to_syslog && !log_to_syslog)
		openlog("sectionfs", LOG_PID, LOG_DAEMON);
	log_to_syslog = to_syslog;
	fuse_set_log_func(log_from_fuse);
}
