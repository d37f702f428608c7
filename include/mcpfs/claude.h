/* claude.h — the Messages API transport: one network thread, one curl multi
 * handle, every call in flight on it.
 *
 * claude_run() is the network thread's body (main.c starts the thread).  The
 * store hands calls in through the struct transport_ops that claude_transport()
 * returns; start() and cancel() only queue a command and wake the thread
 * (an eventfd in its epoll set), so they never block.  For each call the thread POSTs
 * {base_url}/v1/messages with the key headers, parses the 200 body as SSE with an
 * incremental parser (core/sse) and decodes each event (core/wire), reporting to
 * the store with store_call_*().  Failures are retried by the rules of
 * CONTRACT §3.8 — connection errors, 408, 409, 429, >= 500 and retryable
 * mid-stream error events, at most max_retries times, exponential back-off with
 * jitter (0.5 s × 2^n, capped at 8 s, × (0.75..1]), `retry-after-ms` /
 * `retry-after` honoured, `x-should-retry` obeyed — and only while no text of the
 * reply has reached the store.  The connect timeout and the idle-stream timeout
 * (no byte for idle_timeout_ms) come from each call's spec.
 *
 * The API key lives in struct claude only, is sent as x-api-key (or the auth
 * token as Authorization: Bearer), is never logged, and is wiped on free.
 */
#ifndef MCPFS_CLAUDE_H
#define MCPFS_CLAUDE_H

#include <stddef.h>
#include "mcpfs/store.h"

struct claude;

struct claude_config {
	const char *base_url;	/* without /v1; NULL: https://api.anthropic.com */
	const char *api_key;	/* may be NULL: each call then fails "no_api_key" */
	const char *auth_token; /* may be NULL */
};

/* Creates the transport (no thread yet); copies every string.  0, -ENOMEM,
 * -EINVAL (base_url not http:// or https://, or a key or token holding a control
 * character such as a trailing newline). */
int claude_new(const struct claude_config *cfg, struct store *st, struct claude **ret);

#define CLAUDE_URL_MAX 2048 /* bytes of ANTHROPIC_BASE_URL */
#define CLAUDE_URL_MAX_TEXT "2048"

/* Checks a base URL before claude_new(): http:// or https://, a host, at most
 * CLAUDE_URL_MAX bytes, no query or fragment ('?', '#': the path /v1/messages is
 * appended), no space or control character.  0, or -EINVAL with one line in why
 * that quotes the URL as claude_url_shown() does (its first 150 bytes or so). */
int claude_check_base_url(const char *url, char *why, size_t whylen);

/* The URL to show (in .status, in messages): user:password@ replaced by ***@,
 * control characters escaped; NUL-terminated, cut to outlen. */
void claude_url_shown(const char *url, char *out, size_t outlen);

/* The ops to pass to store_set_transport() with the struct claude as impl. */
const struct transport_ops *claude_transport(void);

/* The network thread's body: runs until claude_stop().  Returns 0. */
int claude_run(struct claude *c);

/* Asks claude_run() to return; thread-safe.  Calls in flight end with -ECANCELED
 * (error type "interrupted"); start() fails with -ECANCELED from now on. */
void claude_stop(struct claude *c);

/* Calls in flight (started, not ended). */
size_t claude_in_flight(struct claude *c);

/* Frees (wiping the key).  claude_run() must have returned.  NULL-safe. */
void claude_free(struct claude *c);

#endif
