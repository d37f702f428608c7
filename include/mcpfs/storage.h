/* storage.h — the storage seam: everything durable the core keeps about
 * contexts, behind one narrow interface (issue 12 point 3;
 * doc/design/journal.md §6, doc/design/shared-store.md).
 *
 * Engines: the state-dir journals (storage_dir_new(), src/core/storage_dir*.c:
 * STATE/contexts/NAME/journal framed by journal.h; journal.h's other users are
 * storage_jdir.c, an old state directory read as an import's source,
 * record.c for its size limit, and mcpfs-journal-dump), an in-memory engine for the unit tests
 * (storage_mem_new(), src/core/storage_mem.c, with a fault hook), and the
 * PostgreSQL engine (src/pg/, include/mcpfs/pg.h).  The core (store.c and
 * every context and turn file) reaches its records only through this header:
 * it never builds a path, holds a descriptor or calls journal_*.
 *
 * What it stores is what a journal holds: per context, an ordered list of
 * records, each a type (enum journal_record_type, record_type.h) and opaque
 * payload bytes (the JSON of doc/design/journal.md §4).  An engine never parses
 * a payload itself (storage_jdir.c reads its CREATE's created_ms through
 * record_decode(), record.h); the replay rules of journal.md §5 stay the core's.  A record gets a
 * sequence number from the engine: 1 for the context's first record (its
 * CREATE), then +1 per record, no gaps, in the order the engine accepted them
 * (with several daemons, the database's order is the order).  The state-dir
 * engine numbers the valid records of a journal in file order as it reads them
 * (a corrupt record skipped in the middle has none).
 *
 * Contexts are named by a 64-bit id the engine assigns (never reused while the
 * engine lives; the state-dir engine numbers the directory it lists from 1 at
 * each start) and by a name (unique among live contexts; names are checked by
 * the core, store_name_check(), before they get here).  A context created
 * without a name is hidden: never listed, named later by rename (a fork is
 * built whole that way, then appears at once), and gone after a restart if it
 * never got one.
 *
 * Errors are negative errno values.  Every call may also fail with -EIO when the
 * engine cannot reach its medium (disk error, database unreachable); a shared
 * engine then reconnects by itself with back-off and a later call may work.
 * -ENOMEM for memory, -ENOSPC/-EDQUOT for a full medium.  A `why` buffer, where
 * there is one, gets one line for a human, with any password masked.
 *
 * Durability: a call that commits (create, rename, delete, an append with
 * STORAGE_COMMIT, storage_sync, defaults_set) returns 0 only once what it wrote
 * survives the loss of the host that made it (the state dir: fdatasync; the
 * database: a transaction committed with synchronous_commit on).  An append
 * without STORAGE_COMMIT (reply checkpoints: REPLY_PART, BLOCK) is visible at
 * once to every reader, including other daemons, and becomes durable with the
 * next commit of the same context: commits are ordered after it.  A failed
 * sync (or committing append) loses every record of that context appended
 * since its last good sync: the engine recovers (state dir: reopen, truncate to
 * the synced end, rescan, sync again); storage_failed() says whether that
 * worked, and the next append retries a recovery that did not.  A rename or
 * remove may leave its name change's flush to storage_names_sync() (see
 * names_sync), which the caller calls after releasing its own lock.
 *
 * Threads: every function may be called from any thread; an engine serialises
 * calls internally, but never holds its own lock across a blocking flush of one
 * context, so a slow sync of one context does not stall the others.  While a
 * sync of a context runs, appends to that context fail with -EBUSY (the core
 * defers them: a sync covers only what was appended before it began).  Calls
 * block on the medium (a disk, a network round trip), so a caller should not
 * hold a lock that FUSE workers wait for across storage_sync (the core releases
 * the store lock for it, commit.c); appends are short (one write(2)) and are
 * made under the store lock.  Callbacks run on the calling thread, possibly
 * inside the engine's lock: they must not call back into the same storage.
 *
 * Bounds: a payload is at most STORAGE_MAX_RECORD bytes (-EFBIG, nothing
 * written); a load or change scan delivers at most `max` items per call (the
 * caller continues from the position it returns); an engine holds at most one
 * record's payload in memory per call (the in-memory engine holds them all, by
 * design); a context's side file (meta_*) at most STORAGE_MAX_SIDE bytes.  The
 * state-dir engine keeps at most fd_max journals open (a quarter of
 * RLIMIT_NOFILE, storage_dir_new()), parking (closing) the least recently used
 * idle one and reopening it when used; the in-memory engine, none.
 *
 * Attachment blobs are behind it too (the blob_* ops below, issue 16): the
 * bytes of an attachment, content-addressed by HASH (32 hex digits of
 * XXH3-128, attach_hash), stored once per engine and held per context, so a
 * daemon on a shared engine reads the attachments another daemon committed.
 * Not behind this seam, on purpose: the response cache (rcache.h) and the
 * Models API cache (store_models.c): each a cache with its own narrow module
 * and its own failure rule (a lost cache entry costs a call), kept in the
 * state directory the state-dir engine hands them (storage_dir_fd()); with
 * another engine the Models API cache lives in memory only and the response
 * cache is off (doc/design/shared-store.md §6).
 */
#ifndef MCPFS_STORAGE_H
#define MCPFS_STORAGE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpfs/record_type.h"

/* payload bytes (64 MiB); storage_dir.c asserts it is journal.h's JOURNAL_MAX_RECORD */
#define STORAGE_MAX_RECORD (64u << 20)
#define STORAGE_MAX_HOLDER 64	     /* bytes of a lease holder's name, NUL included */
#define STORAGE_MAX_SIDE (2u << 20)  /* bytes of a context's side file (meta_set) */
#define STORAGE_MAX_BLOB (32u << 20) /* bytes of an attachment blob (blob_put) */

/* Flags of storage_append(). */
#define STORAGE_COMMIT 1u /* durable on return (see Durability above) */
/* Appends only when the context's newest record has the seq *seq holds on
 * entry (0: it holds none); -EAGAIN otherwise, nothing written.  A record
 * whose content depends on the context's state (a turn number) is appended
 * so: another daemon's record that came first makes the caller catch up and
 * number it again. */
#define STORAGE_IF_AT 2u

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

/* What opening a context for appends found (storage_open). */
struct storage_report {
	uint64_t records;	/* valid records */
	uint64_t bad_records;	/* corrupt records skipped in the middle */
	uint64_t skipped_bytes; /* bytes of those */
	uint64_t torn_bytes;	/* an unfinished tail, truncated */
};

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
	 * seq 1, committed (name, record and all: a crash leaves all or none).
	 * *id gets its id.  name NULL: a hidden context (see above), named by
	 * rename.  -EEXIST (a live context has that name), -EFBIG. */
	int (*create)(struct storage *s, const char *name, int64_t created_ms, const void *payload,
		      size_t len, uint64_t *id);
	/* Renames context id, committed (a hidden one appears under `to`).
	 * -ENOENT, -EEXIST (to is taken). */
	int (*rename)(struct storage *s, uint64_t id, const char *to);
	/* Deletes context id and its records, committed; its name is free at once
	 * and its id is never reused.  A sync of it running meanwhile ends with
	 * whatever it ends with; later calls get -ENOENT.  -ENOENT. */
	int (*remove)(struct storage *s, uint64_t id);
	/* Appends one record; *seq (may be NULL) gets its sequence number.  With
	 * STORAGE_COMMIT durable on return; with STORAGE_IF_AT only after the
	 * record *seq names (seq NULL: -EINVAL; another newest record: -EAGAIN).
	 * A context that holds no record yet (storage_load said -ENODATA) gets
	 * this one as its first.  -ENOENT, -EFBIG, -EBUSY (a sync of id runs:
	 * nothing written), -EAGAIN, -ENOSPC, -EIO, or the -errno of a failed
	 * sync whose recovery fails again.  A failed append leaves no part of the
	 * record. */
	int (*append)(struct storage *s, uint64_t id, uint16_t type, const void *payload,
		      size_t len, unsigned flags, uint64_t *seq);
	/* Makes every record appended to id so far durable.  0; -EBUSY (another
	 * sync of id runs: wait and call again); -ENOENT; or the flush's -errno,
	 * after which every record appended since the last good sync is gone
	 * (storage_failed(): recovered or not). */
	int (*sync)(struct storage *s, uint64_t id);
	/* Every live, named context, by id, without reading records.  0 or fn's
	 * value.  last_seq may be 0 (unknown) for an engine that would have to
	 * read the records (the state dir). */
	int (*list)(struct storage *s, storage_context_fn *fn, void *data);
	/* Delivers context id's records with seq > after, in order, at most max
	 * (0: all); *last (may be NULL) gets the last seq delivered (after when
	 * none).  Reads only: a torn tail is skipped, not repaired (storage_open
	 * does).  -ENOENT, -ENODATA (the context exists but holds no record: a
	 * crash between its name and its first record), fn's value. */
	int (*load)(struct storage *s, uint64_t id, uint64_t after, uint32_t max,
		    storage_record_fn *fn, void *data, uint64_t *last);
	/* The root defaults (the root config: the core's text of it, opaque
	 * here), or -ENOENT when none was ever saved.  *out is malloc'd, *len its
	 * size. */
	int (*defaults_get)(struct storage *s, void **out, size_t *len);
	int (*defaults_set)(struct storage *s, const void *json, size_t len); /* committed */

	/* Optional (NULL: the storage_* call below says what it means). */

	/* Prepares id for appends after a load: the state-dir engine truncates a
	 * torn tail and syncs, opens its journal (counted in fd_max) and fills rep
	 * (may be NULL) with what the file holds.  0, -ENOENT, -ENODATA, -errno
	 * (appends will fail).  NULL op: 0, rep zeroed. */
	int (*open)(struct storage *s, uint64_t id, struct storage_report *rep);
	/* 0, or the -errno of a failed sync whose recovery failed too (appends
	 * try again).  NULL op: 0. */
	int (*failed)(struct storage *s, uint64_t id);
	/* Delivers the newest records of id that the engine reads cheaply: those
	 * whole within about the last `bytes` bytes of what it stores (at least
	 * the newest record when it is smaller), in order, seq 0 when unknown.
	 * A look at a context's end without loading it.  Same returns as load. */
	int (*tail)(struct storage *s, uint64_t id, uint64_t bytes, storage_record_fn *fn,
		    void *data);
	/* A context's side file: a small blob a listing reads without loading the
	 * records (the core keeps user metadata there; the records stay the
	 * truth and a load rewrites it).  Not committed by itself.  get: *out
	 * malloc'd (NUL added, not counted in *len), -ENODATA for none, -ENOENT.
	 * set: len 0 removes it; -EFBIG over STORAGE_MAX_SIDE, -ENOENT.  NULL
	 * ops: -ENOTSUP (the core reads the records instead). */
	int (*meta_get)(struct storage *s, uint64_t id, void **out, size_t *len);
	int (*meta_set)(struct storage *s, uint64_t id, const void *data, size_t len);
	/* Holds `bytes` of the medium back for records to come, replacing what
	 * was held (0 gives it all back), so that a full medium is found before
	 * a writer is told yes rather than at its commit.  0, -ENOSPC, -EDQUOT,
	 * -errno.  NULL op: 0 (no promise, nothing held). */
	int (*reserve)(struct storage *s, uint64_t bytes);
	/* Makes the name changes of the renames and removes before it durable.
	 * An engine with this op returns from a rename of a named context, or a
	 * remove, once the change is made but maybe before it is durable (the
	 * state dir: the fsync of STATE/contexts is left to this call), so that a
	 * caller holding a lock of its own (the store's) flushes after releasing
	 * it; the caller calls this before it returns the change as done.  A
	 * hidden context's rename stays durable on return.  0, or -errno (the
	 * change stays made).  NULL op: 0 (renames and removes are durable on
	 * return). */
	int (*names_sync)(struct storage *s);
	/* One line for `status` about the medium: "ok", or "unreachable: WHY"
	 * (password masked) while calls fail with -EIO.  Never waits for the
	 * medium (nor for a call in progress).  NULL op: no line (an engine
	 * whose medium is the local disk). */
	void (*status)(struct storage *s, char *out, size_t n);

	/* Shared engines only (NULL in an engine for one daemon). */

	/* A descriptor that polls readable when hints may be waiting; it stays the
	 * same for the engine's life (reconnects included).  Never read it: call
	 * feed_drain. */
	int (*feed_fd)(struct storage *s);
	/* Starts the engine's own threads (a shared engine's listener), once the
	 * daemon runs in the background: fork(2) keeps only the calling thread, so
	 * an engine starts none before this.  Hints that came before it wait.
	 * Called once, by store_start(); 0 or -errno.  NULL: nothing to start. */
	int (*start)(struct storage *s);
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
	/* Ends holder's lease of context id now, when holder still holds it, so
	 * that the next acquire is a takeover: for a holder the caller knows is
	 * dead (a process of its own host and pid namespace that no longer runs).
	 * 0 (also when holder no longer holds it), -ENOENT. */
	int (*lease_break)(struct storage *s, uint64_t id, const char *holder);

	/* Attachment blobs (optional: NULL in an engine that keeps none; the
	 * storage_blob_* calls then return -ENOTSUP).  A context holds a blob
	 * from blob_put (or blob_link) until blob_sweep drops it or the context
	 * is removed; the engine keeps one copy of a content however many
	 * contexts hold it, and drops it when none does.  Bytes are at most
	 * STORAGE_MAX_BLOB; the core checks its own limits (attach.h) first. */

	/* Makes the blob hex (the caller hashed data) one of context id's,
	 * durably (committed as create is); idempotent: a blob id holds already,
	 * or one another context holds with these bytes, is not written again
	 * (a damaged stored copy is replaced).  Blocks on the medium for up to
	 * n bytes: call it without a lock of the caller's.  0, -ENOENT (no such
	 * context), -EFBIG, -ENOSPC, -EIO. */
	int (*blob_put)(struct storage *s, uint64_t id, const char *hex, const void *data,
			size_t n);
	/* Copies up to n bytes at off of context id's blob hex into buf; the
	 * bytes copied (0 at or past its end), -ENOENT (id holds no such blob),
	 * -EIO. */
	long (*blob_read)(struct storage *s, uint64_t id, const char *hex, void *buf, size_t n,
			  uint64_t off);
	/* 0 when id holds blob hex of `size` bytes; -ENOENT (none), -EBADMSG
	 * (it holds one of another size: damaged), -EIO. */
	int (*blob_stat)(struct storage *s, uint64_t id, const char *hex, uint64_t size);
	/* Context to holds from's blob hex too (a fork), durably.  0 (also when
	 * to held it already), -ENOENT (from holds none). */
	int (*blob_link)(struct storage *s, uint64_t from, uint64_t to, const char *hex);
	/* Drops every blob of context id for which keep(data, hex) is false (a
	 * stored copy goes when no context holds it any more), and what a crash
	 * left half made.  keep runs on the calling thread, maybe under the
	 * engine's lock (see Threads).  The number dropped, or -errno. */
	int (*blob_sweep)(struct storage *s, uint64_t id, bool (*keep)(void *data, const char *hex),
			  void *data);

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
#define STORAGE_CALL0(s, op, ...) ((s)->ops->op ? (s)->ops->op((s), __VA_ARGS__) : 0)
#define storage_failed(s, ...) STORAGE_CALL0(s, failed, __VA_ARGS__)
#define storage_reserve(s, ...) STORAGE_CALL0(s, reserve, __VA_ARGS__)
#define storage_tail(s, ...) STORAGE_CALL(s, tail, __VA_ARGS__)
#define storage_meta_get(s, ...) STORAGE_CALL(s, meta_get, __VA_ARGS__)
#define storage_meta_set(s, ...) STORAGE_CALL(s, meta_set, __VA_ARGS__)
#define storage_feed_drain(s, ...) STORAGE_CALL(s, feed_drain, __VA_ARGS__)
#define storage_changes(s, ...) STORAGE_CALL(s, changes, __VA_ARGS__)
#define storage_lease_acquire(s, ...) STORAGE_CALL(s, lease_acquire, __VA_ARGS__)
#define storage_lease_renew(s, ...) STORAGE_CALL(s, lease_renew, __VA_ARGS__)
#define storage_lease_release(s, ...) STORAGE_CALL(s, lease_release, __VA_ARGS__)
#define storage_lease_break(s, ...) STORAGE_CALL(s, lease_break, __VA_ARGS__)
#define storage_blob_put(s, ...) STORAGE_CALL(s, blob_put, __VA_ARGS__)
#define storage_blob_read(s, ...) STORAGE_CALL(s, blob_read, __VA_ARGS__)
#define storage_blob_stat(s, ...) STORAGE_CALL(s, blob_stat, __VA_ARGS__)
#define storage_blob_link(s, ...) STORAGE_CALL(s, blob_link, __VA_ARGS__)
#define storage_blob_sweep(s, ...) STORAGE_CALL(s, blob_sweep, __VA_ARGS__)

static inline int storage_names_sync(struct storage *s)
{
	return s->ops->names_sync ? s->ops->names_sync(s) : 0;
}

/* 0 with out filled by the engine's status line, or -ENOTSUP (no line). */
static inline int storage_status(struct storage *s, char *out, size_t n)
{
	if (!s->ops->status)
		return -ENOTSUP;
	s->ops->status(s, out, n);
	return 0;
}

/* The feed's descriptor, or -ENOTSUP for an engine without a feed. */
static inline int storage_feed_fd(struct storage *s)
{
	return s->ops->feed_fd ? s->ops->feed_fd(s) : -ENOTSUP;
}

/* The engine's threads; 0 for an engine without any. */
static inline int storage_start(struct storage *s)
{
	return s->ops->start ? s->ops->start(s) : 0;
}

static inline int storage_open(struct storage *s, uint64_t id, struct storage_report *rep)
{
	if (s->ops->open)
		return s->ops->open(s, id, rep);
	if (rep)
		*rep = (struct storage_report){0};
	return 0;
}

/* Closes and frees; NULL-safe. */
static inline void storage_free(struct storage *s)
{
	if (s)
		s->ops->free(s);
}

/* --- the engines of this tree -------------------------------------------- */

/* The state-dir journals (storage_dir*.c): creates dir and its subdirectories
 * (0700) if need be, takes the flock that makes it this daemon's, empties
 * trash/ (hidden contexts and deletes a crash left) and lists contexts/.
 * fd_max 0: a quarter of RLIMIT_NOFILE, from STORE_JOURNALS_OPEN_MIN (8) to
 * STORE_JOURNALS_OPEN_MAX (4096, store.h).  0, or -errno with why
 * ("state directory '...' is in use by another mcpfs", ...). */
int storage_dir_new(const char *dir, size_t fd_max, struct storage **ret, char *why, size_t whylen);
/* The directory itself (for the caches kept beside the records: rcache.h,
 * the Models API cache) and its absolute path; a context's directory, a new
 * descriptor the caller closes (tests).  -ENOENT, -errno.  Only for an engine
 * made by storage_dir_new().  Its blobs are blob.h's files (STATE/blobs, and
 * links in a context's directory), behind the blob_* ops. */
int storage_dir_fd(struct storage *s);
const char *storage_dir_path(struct storage *s);
int storage_dir_context_fd(struct storage *s, uint64_t id);
/* Journals open now and their bound (tests; `.status`). */
size_t storage_dir_open_journals(struct storage *s);
void storage_dir_set_fd_max(struct storage *s, size_t fd_max);

/* The in-memory engine: the same semantics without files (nothing survives
 * storage_free).  For the core's unit tests. */
int storage_mem_new(struct storage **ret);
/* The same with a feed (feed_fd, feed_drain, changes: hints on every create,
 * rename, remove and append): stores opened on it (store_open_on) are daemons
 * sharing one database, for the unit tests of the live catch-up.  No leases. */
int storage_mem_new_shared(struct storage **ret);
/* Fault hook: the next `count` calls of op ("append", "sync", "create",
 * "rename", "remove", "defaults_set", "open", "reserve", "blob_put"; NULL: any) fail with
 * err (negative errno); a sync fails only when it has something to flush, and
 * then drops it (what a failed fdatasync loses) and leaves storage_failed() ==
 * recover_err: while the hook's recover_err is non-zero appends fail with it
 * (the recovery fails again); storage_mem_fail(s, NULL, 0, 0, 0) heals. */
void storage_mem_fail(struct storage *s, const char *op, int err, unsigned count, int recover_err);

#endif
