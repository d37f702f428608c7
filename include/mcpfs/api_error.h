/* api_error.h — what went wrong with a call to the Messages API.
 *
 * Functions that fail a call return -EIO (or -ETIMEDOUT, -ECANCELED) and fill a
 * struct api_error beside the code.  Plain data, no ownership, copied freely.
 * Strings are NUL-terminated and truncated to their arrays (they are for humans).
 */
#ifndef MCPFS_API_ERROR_H
#define MCPFS_API_ERROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct api_error {
	int http_status;	/* 0 when no HTTP status was received */
	char type[64];		/* API error.type, or our own: "connection_error",
				   "timeout_error", "stream_error", "cancelled",
				   "interrupted", "no_api_key", "budget_exceeded" */
	char message[512];	/* human-readable detail */
	char request_id[128];	/* request-id header or body field, "" if none */
	bool retryable;		/* worth another attempt by the §3.8 rules */
	int64_t retry_after_ms; /* server's retry-after(-ms) hint, -1 if none */
};

/* Empties e (retry_after_ms = -1). */
void api_error_clear(struct api_error *e);

/* Copies the n bytes of s (not NUL-terminated) into one of e's string fields
 * dst of size bytes: at most size - 1 bytes, never ending inside a UTF-8
 * character, so a truncated message is still text.  NUL-terminates dst. */
void api_error_copy(char *dst, size_t size, const char *s, size_t n);

/* Sets type and a printf-formatted message; other fields unchanged. */
void api_error_set(struct api_error *e, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The §3.8 retry rule for an HTTP status: 408, 409, 429 and >= 500. */
bool api_error_status_retryable(int http_status);

#endif
