/* pg_store.c — the PostgreSQL engine's schema and its storage_ops: contexts,
 * records, the root defaults and the change positions (doc/design/shared-store.md
 * is the schema and the protocol).  Leases are in pg_lease.c, the listener in
 * pg_feed.c, the connection in pg_conn.c. */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "pg_impl.h"

/* Version 1.  Deleted contexts stay as rows without a name (tombstones:
 * deleted), so that a daemon catching up by change position sees the deletion;
 * a hidden context (storage.h: created without a name, for a fork being built)
 * is a row without a name that is not deleted.  meta is the side file. */
static const char *const migrations[PG_SCHEMA_VERSION] = {
    "CREATE SEQUENCE mcpfs.changes;"
    "CREATE TABLE mcpfs.contexts ("
    " id bigserial PRIMARY KEY,"
    " name text UNIQUE,"
    " created_ms bigint NOT NULL,"
    " last_seq bigint NOT NULL DEFAULT 0,"
    " change bigint NOT NULL,"
    " deleted boolean NOT NULL DEFAULT false,"
    " meta bytea);"
    "CREATE INDEX contexts_change ON mcpfs.contexts (change);"
    "CREATE TABLE mcpfs.records ("
    " context_id bigint NOT NULL REFERENCES mcpfs.contexts (id),"
    " seq bigint NOT NULL,"
    " type smallint NOT NULL,"
    " payload bytea NOT NULL,"
    " PRIMARY KEY (context_id, seq));"
    "CREATE TABLE mcpfs.leases ("
    " context_id bigint PRIMARY KEY REFERENCES mcpfs.contexts (id),"
    " holder text NOT NULL,"
    " token bigint NOT NULL,"
    " expires timestamptz NOT NULL);"
    "CREATE TABLE mcpfs.defaults (id int PRIMARY KEY CHECK (id = 1), payload bytea NOT NULL);"
    /* attachment blobs (pg_blob.c) */
    "CREATE TABLE mcpfs.blobs (hash text PRIMARY KEY, size bigint NOT NULL, data bytea NOT NULL);"
    "ALTER TABLE mcpfs.blobs ALTER COLUMN data SET STORAGE EXTERNAL;"
    "CREATE TABLE mcpfs.context_blobs ("
    " context_id bigint NOT NULL REFERENCES mcpfs.contexts (id),"
    " hash text NOT NULL REFERENCES mcpfs.blobs (hash),"
    " PRIMARY KEY (context_id, hash));"
    "CREATE INDEX context_blobs_hash ON mcpfs.context_blobs (hash);",
};

uint64_t pg_u64(PGresult *r, int row, int col)
{
	return strtoull(PQgetvalue(r, row, col), NULL, 10);
}

/* Creates or migrates the schema, under a transaction-scoped advisory lock so
 * that daemons starting together migrate once. */
int pg_migrate(struct pg_store *p, char *why, size_t n)
{
	PGresult *r = NULL;
	int err =
	    pg_simple(p, "BEGIN; SELECT pg_advisory_xact_lock(7306915501);"
			 "CREATE SCHEMA IF NOT EXISTS mcpfs;"
			 "CREATE TABLE IF NOT EXISTS mcpfs.schema_version (version int NOT NULL)");
	if (err == 0)
		err = pg_exec(p, "SELECT coalesce(max(version), 0) FROM mcpfs.schema_version", 0,
			      NULL, NULL, NULL, 0, &r);
	if (err < 0) {
		snprintf(why, n, "%s: creating the schema: %s", p->masked, p->err);
		return err;
	}
	int have = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	if (have > PG_SCHEMA_VERSION) {
		pg_simple(p, "ROLLBACK");
		snprintf(why, n, "%s: schema version %d is newer than this mcpfs's (%d)", p->masked,
			 have, PG_SCHEMA_VERSION);
		return -EPROTO;
	}
	for (int v = have; v < PG_SCHEMA_VERSION && err == 0; v++) {
		char set[96];
		err = pg_simple(p, migrations[v]);
		snprintf(set, sizeof(set), "INSERT INTO mcpfs.schema_version VALUES (%d)", v + 1);
		if (err == 0)
			err = pg_simple(p, set);
	}
	if (err == 0)
		err = pg_simple(p, "COMMIT");
	if (err < 0) {
		snprintf(why, n, "%s: migrating the schema: %s", p->masked, p->err);
		if (p->conn)
			pg_simple(p, "ROLLBACK");
	}
	return err;
}

static int pg_create(struct storage *s, const char *name, int64_t created_ms, const void *payload,
		     size_t len, uint64_t *id)
{
	static const char sql[] =
	    "WITH c AS (INSERT INTO mcpfs.contexts (name, created_ms, last_seq, change)"
	    " VALUES ($1, $2::bigint, 1, nextval('mcpfs.changes')) RETURNING id),"
	    " r AS (INSERT INTO mcpfs.records SELECT id, 1, $3::smallint, $4::bytea FROM c)"
	    " SELECT id, pg_notify('" PG_CHANNEL "', id || ' 0') FROM c";
	struct pg_store *p = pg_of(s);
	char ms[24], type[8];
	const char *v[] = {name, ms, type, payload};
	const int lens[] = {0, 0, 0, (int)len}, fmts[] = {0, 0, 0, 1};
	PGresult *r;

	if (len > STORAGE_MAX_RECORD)
		return -EFBIG;
	snprintf(ms, sizeof(ms), "%" PRId64, created_ms);
	snprintf(type, sizeof(type), "%u", JOURNAL_CREATE);
	int err = LOCKED(p, pg_exec(p, sql, 4, v, lens, fmts, 0, &r));
	if (err < 0)
		return err;
	*id = pg_u64(r, 0, 0); /* name NULL: a hidden context (storage.h) */
	PQclear(r);
	return 0;
}

static int pg_rename(struct storage *s, uint64_t id, const char *to)
{
	return pg_on_context(
	    s,
	    "UPDATE mcpfs.contexts SET name = $2, change = nextval('mcpfs.changes')"
	    " WHERE id = $1 AND NOT deleted"
	    " RETURNING pg_notify('" PG_CHANNEL "', id || ' 0')",
	    id, to);
}

static int pg_remove(struct storage *s, uint64_t id)
{
	int err = pg_on_context(
	    s,
	    "WITH c AS (UPDATE mcpfs.contexts SET name = NULL, deleted = true, meta = NULL,"
	    " change = nextval('mcpfs.changes') WHERE id = $1 AND NOT deleted"
	    " RETURNING id),"
	    " d AS (DELETE FROM mcpfs.records WHERE context_id IN (SELECT id FROM c)),"
	    " l AS (DELETE FROM mcpfs.leases WHERE context_id IN (SELECT id FROM c)),"
	    " b AS (DELETE FROM mcpfs.context_blobs WHERE context_id IN (SELECT id FROM c))"
	    " SELECT pg_notify('" PG_CHANNEL "', id || ' 0') FROM c",
	    id, NULL);
	if (err == 0) /* its blobs no other context holds */
		LOCKED(pg_of(s), (pg_blob_orphans_locked(pg_of(s)), 0));
	return err;
}

/* The sequence number comes from the context's row, whose lock orders every
 * daemon's appends; the NOTIFY is sent when the transaction commits.  With
 * STORAGE_IF_AT ($4 = the expected last seq) the row is updated only when its
 * last_seq is that one; no row then is -EAGAIN for a context that exists. */
static int pg_append_locked(struct pg_store *p, const char *const *v, const int *lens,
			    const int *fmts, unsigned flags, uint64_t *seq)
{
	static const char sql[] =
	    "WITH c AS (UPDATE mcpfs.contexts SET last_seq = last_seq + 1,"
	    " change = nextval('mcpfs.changes') WHERE id = $1::bigint AND NOT deleted"
	    " AND ($4::bigint IS NULL OR last_seq = $4::bigint)"
	    " RETURNING id, last_seq),"
	    " r AS (INSERT INTO mcpfs.records SELECT id, last_seq, $2::smallint, $3::bytea FROM c"
	    " RETURNING seq)"
	    " SELECT seq, pg_notify('" PG_CHANNEL "', $1 || ' ' || seq) FROM r";
	static const char exists[] =
	    "SELECT 1 FROM mcpfs.contexts WHERE id = $1::bigint AND NOT deleted";
	bool commit = flags & STORAGE_COMMIT;
	PGresult *r;
	int err = 0;

	/* a checkpoint commits without waiting for the WAL flush: visible at once,
	 * durable with the context's next synchronous commit (WAL is ordered) */
	if (!commit)
		err = pg_simple(p, "BEGIN; SET LOCAL synchronous_commit = off");
	if (err == 0)
		err = pg_exec(p, sql, 4, v, lens, fmts, 0, &r);
	if (err == 0 && PQntuples(r) == 0) {
		PQclear(r);
		err = -ENOENT;
		if (flags & STORAGE_IF_AT) {
			err = pg_exec(p, exists, 1, v, lens, fmts, 0, &r);
			if (err == 0) {
				err = PQntuples(r) ? -EAGAIN : -ENOENT;
				PQclear(r);
			}
		}
	}
	if (err < 0) {
		if (!commit && p->conn)
			pg_simple(p, "ROLLBACK");
		return err;
	}
	if (seq)
		*seq = pg_u64(r, 0, 0);
	PQclear(r);
	if (!commit) {
		err = pg_simple(p, "COMMIT");
		p->unsynced = true;
	} else {
		p->unsynced = false;
	}
	return err;
}

static int pg_append(struct storage *s, uint64_t id, uint16_t type, const void *payload, size_t len,
		     unsigned flags, uint64_t *seq)
{
	struct pg_store *p = pg_of(s);
	char ids[24], types[8], at[24];
	bool if_at = flags & STORAGE_IF_AT;
	const char *v[] = {ids, types, payload, if_at ? at : NULL};
	const int lens[] = {0, 0, (int)len, 0}, fmts[] = {0, 0, 1, 0};

	if (len > STORAGE_MAX_RECORD)
		return -EFBIG;
	if (if_at && !seq)
		return -EINVAL;
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	snprintf(types, sizeof(types), "%u", type);
	if (if_at)
		snprintf(at, sizeof(at), "%" PRIu64, *seq);
	return LOCKED(p, pg_append_locked(p, v, lens, fmts, flags, seq));
}

/* A synchronous commit that writes WAL makes every earlier commit durable. */
static int pg_sync(struct storage *s, uint64_t id)
{
	struct pg_store *p = pg_of(s);
	int err = pg_on_context(s,
				"UPDATE mcpfs.contexts SET change = change WHERE id = $1"
				" AND NOT deleted RETURNING id",
				id, NULL);
	if (err == 0) {
		pthread_mutex_lock(&p->lock);
		p->unsynced = false;
		pthread_mutex_unlock(&p->lock);
	}
	return err;
}

struct ctx_walk {
	storage_context_fn *fn;
	void *data;
	uint64_t last_change;
};

static int on_context_row(void *data, PGresult *r)
{
	struct ctx_walk *w = data;
	struct storage_context c = {
	    .id = pg_u64(r, 0, 0),
	    .name = PQgetisnull(r, 0, 1) ? NULL : PQgetvalue(r, 0, 1),
	    .created_ms = strtoll(PQgetvalue(r, 0, 2), NULL, 10),
	    .last_seq = pg_u64(r, 0, 3),
	    .change = pg_u64(r, 0, 4),
	};
	w->last_change = c.change;
	return w->fn(w->data, &c);
}

static int pg_list(struct storage *s, storage_context_fn *fn, void *data)
{
	struct pg_store *p = pg_of(s);
	struct ctx_walk w = {fn, data, 0};

	return LOCKED(
	    p, pg_single_rows(p,
			      "SELECT id, name, created_ms, last_seq, change FROM mcpfs.contexts"
			      " WHERE name IS NOT NULL ORDER BY id",
			      0, NULL, 0, on_context_row, &w));
}

static int pg_changes(struct storage *s, uint64_t after, uint32_t max, storage_context_fn *fn,
		      void *data, uint64_t *next)
{
	struct pg_store *p = pg_of(s);
	struct ctx_walk w = {fn, data, after};
	char a[24], m[16];
	const char *v[] = {a, max ? m : NULL};

	snprintf(a, sizeof(a), "%" PRIu64, after);
	snprintf(m, sizeof(m), "%" PRIu32, max);
	int err = LOCKED(p, pg_single_rows(p,
					   "SELECT id, name, created_ms, last_seq, change"
					   " FROM mcpfs.contexts WHERE change > $1"
					   " AND (name IS NOT NULL OR deleted) ORDER BY change"
					   " LIMIT $2",
					   2, v, 0, on_context_row, &w));
	if (next)
		*next = w.last_change;
	return err;
}

static int pg_load(struct storage *s, uint64_t id, uint64_t after, uint32_t max,
		   storage_record_fn *fn, void *data, uint64_t *last)
{
	struct pg_store *p = pg_of(s);
	struct rec_walk w = {fn, data, after, 0};
	char ids[24], a[24], m[16];
	const char *v[] = {ids, a, max ? m : NULL};

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	snprintf(a, sizeof(a), "%" PRIu64, after);
	snprintf(m, sizeof(m), "%" PRIu32, max);
	int err =
	    LOCKED(p, pg_single_rows(p,
				     "SELECT seq, type, payload FROM mcpfs.records"
				     " WHERE context_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
				     3, v, 1, pg_on_record_row, &w));
	if (err == 0 && w.rows == 0)
		err = pg_on_context(
		    s, "SELECT id FROM mcpfs.contexts WHERE id = $1 AND NOT deleted", id, NULL);
	if (last)
		*last = w.last;
	return err;
}

static int pg_defaults_get(struct storage *s, void **out, size_t *len)
{
	struct pg_store *p = pg_of(s);
	PGresult *r;
	int err = LOCKED(p, pg_exec(p, "SELECT payload FROM mcpfs.defaults WHERE id = 1", 0, NULL,
				    NULL, NULL, 1, &r));
	if (err < 0)
		return err;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return -ENOENT;
	}
	*len = (size_t)PQgetlength(r, 0, 0);
	*out = malloc(*len + 1);
	if (*out) {
		memcpy(*out, PQgetvalue(r, 0, 0), *len);
		((char *)*out)[*len] = '\0';
	}
	PQclear(r);
	return *out ? 0 : -ENOMEM;
}

static int pg_defaults_set(struct storage *s, const void *json, size_t len)
{
	struct pg_store *p = pg_of(s);
	const char *v[] = {json};
	const int lens[] = {(int)len}, fmts[] = {1};
	PGresult *r;

	if (len > STORAGE_MAX_RECORD)
		return -EFBIG;
	int err =
	    LOCKED(p, pg_exec(p,
			      "INSERT INTO mcpfs.defaults VALUES (1, $1::bytea) ON CONFLICT (id)"
			      " DO UPDATE SET payload = excluded.payload",
			      1, v, lens, fmts, 0, &r));
	PQclear(r);
	return err;
}

/* A shared store holds no room back; while the database is away a writer is
 * told at once (-EIO) rather than at its commit.  Waits for no statement: a
 * reconnect is tried only when the back-off allows it. */
static int pg_reserve(struct storage *s, uint64_t bytes)
{
	struct pg_store *p = pg_of(s);

	(void)bytes;
	pthread_mutex_lock(&p->status_lock);
	bool away = p->away;
	pthread_mutex_unlock(&p->status_lock);
	return away ? LOCKED(p, pg_ready(p)) : 0;
}

static void pg_status_op(struct storage *s, char *out, size_t n)
{
	pg_store_status(s, out, n);
}

static void pg_free(struct storage *s)
{
	struct pg_store *p = pg_of(s);

	pg_feed_stop(p);
	if (p->conn)
		PQfinish(p->conn);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->status_lock);
	free(p->url);
	free(p->password);
	free(p);
}

static const struct storage_ops pg_ops = {
    .create = pg_create,
    .rename = pg_rename,
    .remove = pg_remove,
    .append = pg_append,
    .sync = pg_sync,
    .list = pg_list,
    .load = pg_load,
    .defaults_get = pg_defaults_get,
    .defaults_set = pg_defaults_set,
    .tail = pg_tail,
    .meta_get = pg_meta_get,
    .meta_set = pg_meta_set,
    .reserve = pg_reserve,
    .status = pg_status_op,
    .feed_fd = pg_feed_fd,
    .start = pg_feed_run,
    .feed_drain = pg_feed_drain,
    .changes = pg_changes,
    .lease_acquire = pg_lease_acquire,
    .lease_renew = pg_lease_renew,
    .lease_release = pg_lease_release,
    .lease_break = pg_lease_break,
    .blob_put = pg_blob_put,
    .blob_read = pg_blob_read,
    .blob_stat = pg_blob_stat,
    .blob_link = pg_blob_link,
    .blob_sweep = pg_blob_sweep,
    .free = pg_free,
};

/* libpq's complaint about a URL it cannot parse quotes the bad part, which may
 * be (part of) the password: quoted text other than a plain keyword becomes
 * "***". */
static void pg_unquote(char *msg)
{
	char *q = msg, *end;

	while ((q = strchr(q, '"')) && (end = strchr(q + 1, '"'))) {
		size_t len = (size_t)(end - q - 1);
		if (len == 0 || strspn(q + 1, "abcdefghijklmnopqrstuvwxyz_") != len) {
			memmove(q + 4, end, strlen(end) + 1);
			memcpy(q + 1, "***", 3);
			end = q + 4;
		}
		q = end + 1;
	}
}

/* The password libpq would use from the URL itself, to mask it in messages. */
static int pg_password_of(const char *url, char **password, char *err, size_t n)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, &perr);

	*password = NULL;
	if (!opts) {
		snprintf(err, n, "%s", perr ? perr : "out of memory");
		pg_unquote(err);
		PQfreemem(perr);
		return -EINVAL;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
			*password = strdup(o->val);
	PQconninfoFree(opts);
	return 0;
}

int pg_store_new(const char *url, char *why, size_t n, struct storage **ret)
{
	struct pg_store *p = calloc(1, sizeof(*p));
	char perr[PG_ERR_MAX / 2];
	int err;

	if (!p || !(p->url = strdup(url))) {
		free(p);
		snprintf(why, n, "store: out of memory");
		return -ENOMEM;
	}
	p->base.ops = &pg_ops;
	p->feed.event_fd = p->feed.stop_fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->status_lock, NULL);
	pthread_mutex_init(&p->feed.lock, NULL);
	pg_mask_url(url, p->masked, sizeof(p->masked));
	err = pg_password_of(url, &p->password, perr, sizeof(perr));
	if (err < 0) {
		pg_message(p, perr, perr, sizeof(perr));
		snprintf(why, n, "store: %s is not a PostgreSQL URL: %s", p->masked, perr);
		goto fail;
	}
	p->conn = pg_connect(p, "mcpfs", p->err, sizeof(p->err));
	if (!p->conn) {
		snprintf(why, n, "store: %s", p->err);
		err = -EIO;
		goto fail;
	}
	PQsetnonblocking(p->conn, 1); /* pg_conn.c: pg_await bounds every wait */
	pg_publish(p);
	char mwhy[PG_ERR_MAX];
	err = pg_migrate(p, mwhy, sizeof(mwhy));
	if (err < 0) {
		snprintf(why, n, "store: %s", mwhy);
		goto fail;
	}
	pg_sweep_hidden(p);
	LOCKED(p, (pg_blob_orphans_locked(p), 0)); /* what a crash or a hidden context left */
	err = pg_feed_start(p);
	if (err < 0) {
		snprintf(why, n, "store: starting the listener: %s", strerror(-err));
		goto fail;
	}
	*ret = &p->base;
	return 0;
fail:
	pg_free(&p->base);
	return err;
}

void pg_store_status(struct storage *s, char *out, size_t n)
{
	struct pg_store *p = pg_of(s);

	pthread_mutex_lock(&p->status_lock);
	snprintf(out, n, "%s", p->status_line);
	pthread_mutex_unlock(&p->status_lock);
}
