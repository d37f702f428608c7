/* log.c — one sink for log lines (see log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mcpfs/log.h"

int log_level = LOG_INFO;
static int log_syslog;

void log_open(int to_syslog)
{
	log_syslog = to_syslog;
	if (to_syslog)
		openlog("mcpfs", LOG_PID, LOG_DAEMON);
}

void log_msg(int level, const char *fmt, ...)
{
	if (level > log_level)
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_syslog) {
		syslog(level, "%s", line);
		return;
	}
	static const char *const names[] = {"emerg", "alert", "crit", "error",
					    "warning", "notice", "info", "debug"};
	char out[2200];
	int n = snprintf(out, sizeof(out), "mcpfs: %s: %s\n", names[level & 7], line);
	if (n > (int)sizeof(out) - 1)
		n = (int)sizeof(out) - 1;
	/* One write per line, so threads do not interleave within a line. */
	ssize_t w = write(STDERR_FILENO, out, (size_t)n);
	(void)w;
}
