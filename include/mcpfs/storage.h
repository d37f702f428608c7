/* storage.h — the storage seam: everything durable the core needs, behind one
 * narrow interface (issue 12 point 3; doc/design/shared-store.md).
 *
 * STATUS: a proposal.  Today the core still writes journals directly
 * (src/core/context.c, commit.c); issue 12 cuts the core over to this interface
 * with the state-dir journals as its first engine.  The PostgreSQL engine
 * (src/pg/, include/mcpfs/pg.h) implements it already and is tested against a
 * real server (tests/integration/test_pg_store.py).
 *
 * What it stores is what a journal holds: per context, an ordered list of
 * records, each a type (enum journal_record_type, journal.h) and opaque payload
 * bytes (the JSON of doc/design/journal.md §4).  An engine never parses a
 * payload; the replay rules of journal.md §5 stay the core's.  A record gets a
 * sequence number from the engine: 1 for the context's first record (its
 * CREATE), then +1 per record, no gaps, in the order the engine accepted them
 * (with several daemons, the database's order is the order).
 *
 * Contexts are named by a 64-bit id the engine assigns (never reused) and by a
 * name (unique among live contexts; names are checked by the core,
 * store_name_check(), before they get here).
 *
 * Errors are negative errno values.  Every call may also fail with -EIO when the
 * engine cannot reach its medium (disk error, database unreachable); a shared
 * engine then reconnects by itself with back-off and a later call may work.
 * -ENOMEM for memory.  A `why` buffer, where there is one, gets one line for a
 * human, with any password masked.
 *
 * Durability: a call that commits (create, rename, delete, an append with
 * STORAGE_COMMIT, storage_sync, defaults_set) returns 0 only once what it wrote
 * survives the loss of the host that made it (the state dir: fdatasync; the
 * database: a transaction committed with synchronous_commit on).  An append
 * without STORAGE_COMMIT (reply checkpoints: REPLY_PART, BLOCK) is visible at
 * once to every reader, including other daemons, and becomes durable with the
 * next commit of the same context: commits are ordered after it.
 *
 * Threads: every function may be called from any thread; an engine serialises
 * calls internally.  Calls block on the medium (a disk, a network round trip), so
 * the caller must not hold a lock that a FUSE worker waits for while calling them
 * (the core calls them with the store lock released, as journal_sync_run runs
 * today).  Callbacks run on the calling thread, inside the engine's lock: they
 * must not call back into the same storage.
 *
 * Bounds: a payload is at most STORAGE_MAX_RECORD bytes (-EFBIG, nothing
 * written); a load or change scan delivers at most `max` items per call (the
 * caller continues from the position it returns); an engine holds at most one
 * record's payload in memory per call.
 */
#ifndef MCPFS_STORAGE_H
#define MCPFS_STORAGE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpfs/journal.h"

#define STORAGE_MAX_RECORD JOURNAL_MAX_RECORD /* payload bytes (64 MiB) */
#define STORAGE_MAX_HOLDER 64		      /* bytes of a lease holder's name, NUL included */

/* Flags of storage_append(). */
#define STORAGE_COMMIT 1u /* durable on return (see Durability above) */

/* One context as a listing shows it, without loading its records. */
struct storage_context {
	uint64_t id;
	const char *name;   /* NULL in storage_changes() for a deleted context */
	int64_t created_ms; /* wall-clock ms since the epoch */
	uint64_t last_seq;  /* sequence number of its newest record; 0: none */
	uint64_t change;    /* feed position of its last change (shared engines; else 0) */
};

/* Called per context; the struct and its strings live until return.  A negative
 * return stops the walk, which returns it. */
typedef int storage_context_fn(void *data, const struct storage_context *c);

/* Called per record in sequence order; payload lives until return.  A negative
 * return stops the load, which returns it. */
typedef int storage_record_fn(void *data, uint64_t seq, uint16_t type, const void *payload,
			      size_t len);

/* A change feed hint (shared engines): context `id` has records up to `seq`
 * (0: its name or existence changed).  A hint is never the data: the receiver
 * catches up with storage_load(id, after = the last seq it applied) or
 * storage_changes(). */
struct storage_hint {
	uint64_t id;
	uint64_t seq;
};

/* A call lease (shared engines): one call at a time per context across daemons. */
struct storage_lease {
	uint64_t token;			      /* fencing token: grows at every acquisition */
	bool took_over;			      /* the previous holder's lease had expired */
	char prev_holder[STORAGE_MAX_HOLDER]; /* who held it before ("" for nobody) */
};

struct storage;

struct storage_ops {
	/* Creates context `name` holding one first record (its CREATE payload) as
	 * seq 1, committed.  *id gets its id.  -EEXIST (a live context has that
	 * name), -EFBIG. */
	int (*create)(struct storage *s, const char *name, int64_t created_ms, const void *payload,
		      size_t len, uint64_t *id);
	/* Renames context id, committed.  -ENOENT, -EEXIST (to is taken). */
	int (*rename)(struct storage *s, uint64_t id, const char *to);
	/* Deletes context id and its records, committed; its name is free at once
	 * and its id is never reused.  -ENOENT. */
	int (*remove)(struct storage *s, uint64_t id);
	/* Appends one record; *seq (may be NULL) gets its sequence number.  With
	 * STORAGE_COMMIT durable on return.  -ENOENT, -EFBIG. */
	int (*append)(struct storage *s, uint64_t id, uint16_t type, const void *payload,
		      size_t len, unsigned flags, uint64_t *seq);
	/* Makes every record appended to id so far durable.  -ENOENT. */
	int (*sync)(struct storage *s, uint64_t id);
	/* Every live context, by id, without reading records.  0 or fn's value. */
	int (*list)(struct storage *s, storage_context_fn *fn, void *data);
	/* Delivers context id's records with seq > after, in order, at most max
	 * (0: all); *last (may be NULL) gets the last seq delivered (after when
	 * none).  -ENOENT, fn's value. */
	int (*load)(struct storage *s, uint64_t id, uint64_t after, uint32_t max,
		    storage_record_fn *fn, void *data, uint64_t *last);
	/* The root defaults (the root config: a settings JSON object), or -ENOENT
	 * when none was ever saved.  *out is malloc'd, *len its size. */
	int (*defaults_get)(struct storage *s, void **out, size_t *len);
	int (*defaults_set)(struct storage *s, const void *json, size_t len); /* committed */

	/* Shared engines only (NULL in an engine for one daemon). */

	/* A descriptor that polls readable when hints may be waiting; it stays the
	 * same for the engine's life (reconnects included).  Never read it: call
	 * feed_drain. */
	int (*feed_fd)(struct storage *s);
	/* Empties the hint queue into hints[0..max), returns how many.  *resync
	 * becomes true when hints may have been lost (the engine reconnected, or
	 * the queue overflowed): the caller then catches up with storage_changes()
	 * from its last position.  A caller also calls storage_changes() every
	 * few seconds regardless: a notification is a hint, never the record. */
	int (*feed_drain)(struct storage *s, struct storage_hint *hints, int max, bool *resync);
	/* Contexts changed after feed position `after` (created, renamed, deleted:
	 * name NULL, or appended to), in change order, at most max (0: all);
	 * *next gets the position to continue from.  0, fn's value. */
	int (*changes)(struct storage *s, uint64_t after, uint32_t max, storage_context_fn *fn,
		       void *data, uint64_t *next);
	/* Acquires the call lease of context id for holder (a daemon's unique name,
	 * < STORAGE_MAX_HOLDER bytes) for ttl_ms, measured by the medium's clock.
	 * Succeeds when the lease is free, released, expired, or held by holder
	 * already; a lease that expired in another holder's hands is a takeover
	 * (l->took_over: the caller marks that holder's turn interrupted).
	 * -EBUSY (held by another, unexpired), -ENOENT, -EINVAL (holder). */
	int (*lease_acquire)(struct storage *s, uint64_t id, const char *holder, uint32_t ttl_ms,
			     struct storage_lease *l);
	/* Extends a held lease by ttl_ms from now.  -ESTALE when it was taken
	 * over (token changed): the holder stops its call. */
	int (*lease_renew)(struct storage *s, uint64_t id, uint64_t token, uint32_t ttl_ms);
	/* Releases it (0 also when it was taken over meanwhile). */
	int (*lease_release)(struct storage *s, uint64_t id, uint64_t token);

	/* Closes the engine and frees s.  NULL-safe through storage_free(). */
	void (*free)(struct storage *s);
};

/* An engine's instance starts with this. */
struct storage {
	const struct storage_ops *ops;
};

/* The calls, for readers of the core: each checks that the engine has the op
 * (-ENOTSUP otherwise) and forwards. */
#define STORAGE_CALL(s, op, ...) ((s)->ops->op ? (s)->ops->op((s), __VA_ARGS__) : -ENOTSUP)
#define storage_create(s, ...) STORAGE_CALL(s, create, __VA_ARGS__)
#define storage_rename(s, ...) STORAGE_CALL(s, rename, __VA_ARGS__)
#define storage_remove(s, ...) STORAGE_CALL(s, remove, __VA_ARGS__)
#define storage_append(s, ...) STORAGE_CALL(s, append, __VA_ARGS__)
#define storage_sync(s, ...) STORAGE_CALL(s, sync, __VA_ARGS__)
#define storage_list(s, ...) STORAGE_CALL(s, list, __VA_ARGS__)
#define storage_load(s, ...) STORAGE_CALL(s, load, __VA_ARGS__)
#define storage_defaults_get(s, ...) STORAGE_CALL(s, defaults_get, __VA_ARGS__)
#define storage_defaults_set(s, ...) STORAGE_CALL(s, defaults_set, __VA_ARGS__)
#define storage_feed_drain(s, ...) STORAGE_CALL(s, feed_drain, __VA_ARGS__)
#define storage_changes(s, ...) STORAGE_CALL(s, changes, __VA_ARGS__)
#define storage_lease_acquire(s, ...) STORAGE_CALL(s, lease_acquire, __VA_ARGS__)
#define storage_lease_renew(s, ...) STORAGE_CALL(s, lease_renew, __VA_ARGS__)
#define storage_lease_release(s, ...) STORAGE_CALL(s, lease_release, __VA_ARGS__)

/* The feed's descriptor, or -ENOTSUP for an engine without a feed. */
static inline int storage_feed_fd(struct storage *s)
{
	return s->ops->feed_fd ? s->ops->feed_fd(s) : -ENOTSUP;
}

/* Closes and frees; NULL-safe. */
static inline void storage_free(struct storage *s)
{
	if (s)
		s->ops->free(s);
}

#endif
