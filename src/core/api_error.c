/* api_error.c — the small helpers of struct api_error (see api_error.h): empty it,
 * set its type and message, the §3.8 retry rule for a status.  A leaf: wire.c,
 * wire_delta.c, the store and the transport all fill api_errors through it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mcpfs/api_error.h"
#include "mcpfs/utf8.h"

void api_error_clear(struct api_error *e)
{
	memset(e, 0, sizeof(*e));
	e->retry_after_ms = -1;
}

void api_error_copy(char *dst, size_t size, const char *s, size_t n)
{
	if (n > size - 1)
		n = utf8_complete_prefix(s, size - 1);
	memcpy(dst, s, n);
	dst[n] = '\0';
}

void api_error_set(struct api_error *e, const char *type, const char *fmt, ...)
{
	va_list ap;

	api_error_copy(e->type, sizeof(e->type), type, strlen(type));
	va_start(ap, fmt);
	int n = vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	if (n < 0)
		e->message[0] = '\0';
	else if ((size_t)n >= sizeof(e->message))
		e->message[utf8_complete_prefix(e->message, strlen(e->message))] = '\0';
}

bool api_error_status_retryable(int http_status)
{
	return http_status == 408 || http_status == 409 || http_status == 429 || http_status >= 500;
}
