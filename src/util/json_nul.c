/* json_nul.c — NUL characters through cJSON (see json_nul.h). */
#include <string.h>

#include "mcpfs/json_nul.h"

bool json_nul_escaped(const char *s, size_t n)
{
	return n >= 6 && memmem(s, n, "\\u0000", 6) != NULL;
}

int json_nul_hide(const char *s, size_t n, struct buf *out)
{
	size_t i = 0, from = 0;
	int r = 0;
	while (r == 0 && i < n) {
		const char *bs = memchr(s + i, '\\', n - i);
		if (!bs)
			break;
		i = (size_t)(bs - s);
		/* An escape is two characters at least: an escaped backslash is
		 * consumed whole, so the next one starts an escape of its own. */
		if (n - i >= 6 && !memcmp(s + i, "\\u0000", 6)) {
			r = buf_append(out, s + from, i - from);
			if (r == 0)
				r = buf_append(out, "\xff", 1);
			i += 6;
			from = i;
		} else {
			i += 2;
		}
	}
	if (r == 0 && from < n)
		r = buf_append(out, s + from, n - from);
	return r;
}

void json_nul_show(char *s, size_t n)
{
	for (char *p = s; (p = memchr(p, JSON_NUL_MARK, n - (size_t)(p - s))); p++)
		*p = '\0';
}

void json_nul_mark(char *s, size_t n)
{
	for (char *p = s; (p = memchr(p, '\0', n - (size_t)(p - s))); p++)
		*p = JSON_NUL_MARK;
}

int json_nul_print(const char *s, size_t n, struct buf *out)
{
	size_t from = 0, start = out->len;
	int r = 0;
	for (const char *p; r == 0 && (p = memchr(s + from, JSON_NUL_MARK, n - from));) {
		r = buf_append(out, s + from, (size_t)(p - s) - from);
		if (r == 0)
			r = buf_append(out, "\\u0000", 6);
		from = (size_t)(p - s) + 1;
	}
	if (r == 0 && from < n)
		r = buf_append(out, s + from, n - from);
	if (r < 0)
		buf_resize(out, start); /* a shrink: cannot fail */
	return r;
}
