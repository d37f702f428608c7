/* why.c — an error text with its errno (see why.h). */
#include <stdarg.h>
#include <stdio.h>

#include "mcpfs/why.h"

int why_fail(int err, char *why, size_t whylen, const char *fmt, ...)
{
	if (why && whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return err;
}
