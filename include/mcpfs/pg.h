/* pg.h — the PostgreSQL storage engine: contexts shared by every mcpfs daemon
 * that names the same database (CONTRACT §12; doc/design/shared-store.md).
 *
 * It implements storage.h with libpq only.  The schema lives in the schema
 * `mcpfs` of the database the URL names; mcpfs creates it and migrates it
 * (table schema_version).  Commits are transactions with synchronous_commit on;
 * each commit NOTIFYs channel `mcpfs` with "ID SEQ" (a hint), which the engine's
 * listener thread turns into storage_hint entries behind a stable eventfd.
 * Call leases are rows with an expiry measured by the server's clock.
 *
 * When the database goes away, calls fail with -EIO at once (they never wait
 * for it); the next call after the back-off (100 ms doubling to 5 s) tries to
 * reconnect.  Nothing here logs: errors reach the caller as negative errno and
 * one line in a `why` buffer or pg_store_status(), passwords masked.
 *
 * Thread-safe: one lock serialises the command connection; the listener has its
 * own connection and thread.
 */
#ifndef MCPFS_PG_H
#define MCPFS_PG_H

#include <stddef.h>

#include "mcpfs/storage.h"

#define PG_SCHEMA_VERSION 1    /* the schema this mcpfs writes (doc/design/shared-store.md) */
#define PG_CONNECT_TIMEOUT "5" /* seconds, unless the URL says otherwise */
#define PG_STATEMENT_TIMEOUT_MS 15000 /* no statement waits longer (locks included) */
/* Data unacknowledged by a dead peer for this long drops the connection
 * (libpq's tcp_user_timeout; TCP only): a statement on a cut network fails
 * within it rather than after the kernel's minutes of retransmissions. */
#define PG_TCP_USER_TIMEOUT_MS "5000"
/* Longest the server may stay silent while a statement runs (sending it
 * included) before the engine drops the connection and fails the call with
 * -EIO: the bound of any wait of a caller on the database (a frozen server,
 * a cut network).  A reconnect waits at most PG_CONNECT_TIMEOUT. */
#define PG_REPLY_TIMEOUT_MS 5000
#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 5000
#define PG_FEED_QUEUE 1024	   /* hints kept between drains; beyond: resync */
#define PG_LEASE_MAX_TTL_MS 600000 /* longest lease (-EINVAL beyond) */
/* A hidden context (storage.h: a fork being built) older than this at a
 * daemon's start-up was left by a daemon that died building it: deleted. */
#define PG_HIDDEN_MAX_AGE_MS 3600000
#define PG_TAIL_FRAME 24 /* bytes counted per record in tail(), as a journal frames it */

/* Connects to url (a libpq URI or key=value string), creates or migrates the
 * schema, starts the listener and returns the engine in *ret.  On failure, why
 * gets one line naming the URL with its password masked, e.g.
 * "store: cannot connect to postgresql://u:***@db/x: Connection refused".
 * -EIO (unreachable, refused, authentication), -EINVAL (not a valid conninfo),
 * -EPROTO (the database's schema is newer than this mcpfs), -ENOMEM. */
int pg_store_new(const char *url, char *why, size_t n, struct storage **ret);

/* One line for `status`: "ok" or "unreachable: <why>" (password masked), as
 * the last call found it; never waits for a statement in progress (the
 * storage op `status`). */
void pg_store_status(struct storage *s, char *out, size_t n);

/* url with its password (URI user info, password= parameters) replaced by
 * "***", truncated to n - 1 bytes. */
void pg_mask_url(const char *url, char *out, size_t n);

#endif
