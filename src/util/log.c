/* log.c — one sink for log lines (see log.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mcpfs/log.h"

int log_level = LOG_INFO;
static int log_syslog;
static int log_fd = -1; /* --log-file, or -1 */

void log_open(int to_syslog)
{
	log_syslog = to_syslog;
	if (to_syslog)
		openlog("mcpfs", LOG_PID, LOG_DAEMON);
}

int log_open_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0)
		return -errno;
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
	return 0;
}

int log_to_file(void)
{
	return log_fd >= 0;
}

/* A file has no syslog to stamp its lines: "2026-12-06T10:25:25.123Z mcpfs[42]: ". */
static int file_prefix(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	return snprintf(out, len, "%s.%03ldZ mcpfs[%ld]", when, ts.tv_nsec / 1000000L,
			(long)getpid());
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
	if (log_syslog && log_fd < 0) {
		syslog(level, "%s", line);
		return;
	}
	static const char *const names[] = {"emerg",   "alert",	 "crit", "error",
					    "warning", "notice", "info", "debug"};
	char who[128] = "mcpfs";
	if (log_fd >= 0)
		file_prefix(who, sizeof(who));
	char out[2200];
	int n = snprintf(out, sizeof(out), "%s: %s: %s\n", who, names[level & 7], line);
	if (n > (int)sizeof(out) - 1) {
		n = (int)sizeof(out) - 1;
		out[n - 1] = '\n';
	}
	/* One write per line (O_APPEND for a file), so threads and other
	 * daemons appending to the same file do not interleave within a line. */
	ssize_t w = write(log_fd >= 0 ? log_fd : STDERR_FILENO, out, (size_t)n);
	(void)w;
}

void log_quote(char *out, size_t outlen, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, room = outlen - 4; /* "..." and the NUL */
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		char e[4] = {'\\', 0, 0, 0};
		size_t n = 2;
		if (ch == '\n')
			e[1] = 'n';
		else if (ch == '\t')
			e[1] = 't';
		else if (ch == '\r')
			e[1] = 'r';
		else if (ch == '\\' || ch == '\'')
			e[1] = (char)ch;
		else if (ch < 0x20 || ch == 0x7f) {
			e[1] = 'x';
			e[2] = hex[ch >> 4];
			e[3] = hex[ch & 15];
			n = 4;
		} else {
			e[0] = (char)ch;
			n = 1;
		}
		/* Whole characters only: a cut UTF-8 sequence would be invalid.  Room
		 * for "..." is always kept, so a text that only just fits is cut too. */
		size_t need = n;
		if (ch >= 0xc0)
			while (i + need < len && ((unsigned char)s[i + need] & 0xc0) == 0x80)
				need++;
		if (o + need > room) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, e, n);
		o += n;
	}
	out[o] = '\0';
}
