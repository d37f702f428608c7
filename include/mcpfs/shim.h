/* shim.h — the HTTP shim: the store as JSON over HTTP/1.1 (CONTRACT §7).
 *
 * A thin front end on the core API, beside the FUSE adapter and never talking to
 * it: both use the store, which is why a message written through the mount is
 * seen live over HTTP and the other way round.  libmicrohttpd serves the
 * requests from a small pool of its own threads; no handler ever waits.  A
 * response that streams a reply (text/plain or Server-Sent Events) holds a
 * reference to its turn; when no bytes are there yet its connection is
 * suspended, and resumed by the store's observer when the turn changes, so a
 * thousand idle streams cost no thread.  A timer thread (shim_stream_timer_run,
 * started by main.c) resumes idle SSE streams every SHIM_HEARTBEAT_MS so they
 * send a keep-alive comment: that is how a client that went away is noticed
 * (libmicrohttpd sees a disconnect only on a write) and its turn released.
 *
 * Security (SECURITY.md): the listening socket is bound to exactly the address
 * given, which must be a loopback address unless a token file is given; every
 * request must carry a loopback Host of the listening port (DNS rebinding), no
 * foreign Origin (cross-site requests), the bearer token when there is one, a
 * JSON content type for a body, and a body under the message limit.  A request
 * that could be read two ways (request smuggling) is refused and its connection
 * closed.  What clients can hold is bounded: bodies and renderings in flight
 * (shared snapshots), header and body time, streams (a reserve of connections
 * stays for short requests); past a shared limit, 503 with Retry-After.  The API
 * key is never known here.
 *
 * Life cycle: shim_new (before daemonizing: binds, so "address in use" is a
 * start-up error on the terminal; starts no thread), shim_start (after
 * daemonizing: starts libmicrohttpd), shim_stream_timer_run in a thread, shim_stop,
 * shim_free.  Locking: one mutex inside the shim guards the set of streams; it
 * is taken before the store's lock, never after.
 */
#ifndef MCPFS_SHIM_H
#define MCPFS_SHIM_H

#include <stddef.h>
#include "mcpfs/store.h"

#define SHIM_DEFAULT_ADDRESS "127.0.0.1:61900"
#define SHIM_HEARTBEAT_MS 15000 /* idle time after which an SSE stream sends ": keep-alive" */

struct shim;

struct shim_config {
	const char *address;	/* "ADDR:PORT": an IPv4 literal, [IPv6] literal or localhost */
	const char *token_file; /* NULL: no token (then only a loopback address is allowed) */
};

/* Checks the address, reads the token file (refusing one that group or others
 * can read), binds and listens on exactly that address and registers the
 * store observer; starts no thread.  Call before any thread uses the store.
 * On failure why is one line naming the value at fault: "cannot listen on
 * 127.0.0.1:61900: Address already in use", "--http: 10.0.0.1 is not a
 * loopback address; serving it needs --http-token-file".  0, -EINVAL,
 * -EADDRINUSE, -EACCES, -errno. */
int shim_new(struct store *st, const struct shim_config *cfg, struct shim **ret, char *why,
	     size_t whylen);

/* The address served, as a user writes it: "127.0.0.1:61900", "[::1]:8080".
 * Lives as long as the shim. */
const char *shim_address(const struct shim *sh);

/* Starts libmicrohttpd on the socket bound by shim_new.  0, -EIO + why. */
int shim_start(struct shim *sh, char *why, size_t whylen);

/* The timer thread's body: resumes idle SSE streams for their heartbeat.
 * Returns after shim_stop(). */
void *shim_stream_timer_run(void *sh);

/* Ends every stream (its client sees an incomplete response), stops
 * libmicrohttpd and tells the timer thread to return.  Idempotent. */
void shim_stop(struct shim *sh);

/* Frees; shim_stop must have been called and the timer thread joined, and no
 * other thread may still change the store (its observer would find the shim
 * gone).  Wipes the token.  NULL-safe. */
void shim_free(struct shim *sh);

#endif
