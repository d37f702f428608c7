/* log.h — the one logging sink.
 *
 * Levels are syslog's.  Lines go to stderr (foreground), syslog (daemon) or a
 * file (--log-file).  The level is the only global outside main.c.  core and
 * util log at LOG_DEBUG only; the edges (fs, net, main) decide what a user
 * sees.  Never pass the API key.  Thread-safe: one write(2)/syslog(3) per line.
 */
#ifndef MCPFS_LOG_H
#define MCPFS_LOG_H

#include <stddef.h>
#include <syslog.h>

extern int log_level; /* messages above this level are dropped; default LOG_INFO */

/* Chooses the sink: to_syslog non-zero opens syslog with ident "mcpfs".  A file
 * opened by log_open_file takes precedence over both. */
void log_open(int to_syslog);

/* Appends every line from now on to the file at path (created mode 0600 when
 * missing), stamped with the UTC time and the pid, instead of stderr or syslog.
 * The descriptor stays open across daemonizing.  0, or -errno. */
int log_open_file(const char *path);

/* Non-zero when lines go to a file of log_open_file. */
int log_to_file(void);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes len bytes of s into out (NUL-terminated) as one line, to quote user text
 * in a log line: backslash, quote and control characters escaped (\n, \t,
 * \xHH), cut at a character boundary with "..." when out is too small.
 * outlen >= 8. */
void log_quote(char *out, size_t outlen, const char *s, size_t len);

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
