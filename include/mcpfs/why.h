/* why.h — the text of an error for the user, with its errno.
 *
 * Pure, thread-safe.
 */
#ifndef MCPFS_WHY_H
#define MCPFS_WHY_H

#include <stddef.h>

/* Writes the message fmt makes into why (truncated to whylen; nothing when why
 * is NULL or whylen 0) and returns err, so that `return why_fail(-EINVAL, why,
 * whylen, "...", ...)` reports a failure in one statement. */
int why_fail(int err, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
