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

void log_quote(char *out, size_t outlen, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, room = outlen - 4;  /* "..." and the NUL */
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
