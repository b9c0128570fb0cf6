/*
 * log.h - the daemon's one log function.
 *
 * Messages carry a "sectionfs: " prefix and go to stderr while the daemon
 * runs in the foreground; a daemon that will detach also sends them to
 * syslog (tag "sectionfs"), and once detached its stderr is /dev/null.
 * Debug messages are printed only under -d.  libfuse's own messages are
 * routed through the same function.
 */
#ifndef SECTIONFS_LOG_H
#define SECTIONFS_LOG_H

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Route messages: always stderr, and syslog too when to_syslog; debug
 * enables DEBUG. */
void log_setup(int to_syslog, int debug);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_err(...)	log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)	log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif /* SECTIONFS_LOG_H */
