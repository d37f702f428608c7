/* pg_blob.c — the PostgreSQL engine's attachment blobs (storage.h's blob_*
 * ops): one row per content in mcpfs.blobs (hash, size, data), one row per
 * context holding it in mcpfs.context_blobs (doc/design/shared-store.md §2).
 * A content no context holds is deleted by the sweeps (its last holder's
 * blob_sweep or remove, and at start-up).  data is stored uncompressed out of
 * line (STORAGE EXTERNAL), so that a read at an offset fetches only the TOAST
 * chunks it needs. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_impl.h"

/* Context id holds the stored copy of hex when it has `size` bytes: 1 (held
 * now), 0 (no such copy), -errno (-ENOENT: no such context, or the copy was
 * deleted meanwhile). */
static int link_existing(struct pg_store *p, const char *ids, const char *hex, const char *size)
{
	static const char sql[] =
	    "WITH b AS (SELECT hash FROM mcpfs.blobs WHERE hash = $2 AND size = $3::bigint),"
	    " i AS (INSERT INTO mcpfs.context_blobs SELECT $1::bigint, hash FROM b"
	    " ON CONFLICT DO NOTHING)"
	    " SELECT count(*) FROM b";
	const char *v[] = {ids, hex, size};
	PGresult *r;
	int err = pg_exec(p, sql, 3, v, NULL, NULL, 0, &r);
	if (err < 0)
		return err;
	err = atoi(PQgetvalue(r, 0, 0)) > 0;
	PQclear(r);
	return err;
}

/* Writes the content (over another of that hash: a damaged one) and links
 * it, in one transaction. */
static int put_new(struct pg_store *p, const char *ids, const char *hex, const char *size,
		   const void *data, size_t n)
{
	const char *v[] = {hex, size, data};
	const int lens[] = {0, 0, (int)n}, fmts[] = {0, 0, 1};
	const char *lv[] = {ids, hex};
	PGresult *r = NULL;
	int err = pg_simple(p, "BEGIN");
	if (err == 0)
		err =
		    pg_exec(p,
			    "INSERT INTO mcpfs.blobs (hash, size, data) VALUES ($1, $2::bigint, $3)"
			    " ON CONFLICT (hash) DO UPDATE SET size = EXCLUDED.size,"
			    " data = EXCLUDED.data",
			    3, v, lens, fmts, 0, &r);
	PQclear(r);
	r = NULL;
	if (err == 0)
		err = pg_exec(p,
			      "INSERT INTO mcpfs.context_blobs VALUES ($1::bigint, $2)"
			      " ON CONFLICT DO NOTHING",
			      2, lv, NULL, NULL, 0, &r);
	PQclear(r);
	if (err == 0)
		err = pg_simple(p, "COMMIT");
	if (err < 0 && p->conn)
		pg_simple(p, "ROLLBACK");
	return err;
}

int pg_blob_put(struct storage *s, uint64_t id, const char *hex, const void *data, size_t n)
{
	struct pg_store *p = pg_of(s);
	char ids[24], size[24];

	if (n > STORAGE_MAX_BLOB)
		return -EFBIG;
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	snprintf(size, sizeof(size), "%zu", n);
	pthread_mutex_lock(&p->lock);
	int err = link_existing(p, ids, hex, size);
	if (err == 0 || err == -ENOENT)
		err = put_new(p, ids, hex, size, data, n);
	pthread_mutex_unlock(&p->lock);
	return err < 0 ? err : 0;
}

long pg_blob_read(struct storage *s, uint64_t id, const char *hex, void *buf, size_t n,
		  uint64_t off)
{
	static const char sql[] =
	    "SELECT substring(b.data FROM $3::int + 1 FOR $4::int) FROM mcpfs.context_blobs c"
	    " JOIN mcpfs.blobs b USING (hash) WHERE c.context_id = $1 AND c.hash = $2";
	struct pg_store *p = pg_of(s);
	char ids[24], offs[24], ns[24];
	const char *v[] = {ids, hex, offs, ns};
	PGresult *r;

	if (off >= INT_MAX)
		return 0;
	if (n > INT_MAX)
		n = INT_MAX;
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	snprintf(offs, sizeof(offs), "%" PRIu64, off);
	snprintf(ns, sizeof(ns), "%zu", n);
	pthread_mutex_lock(&p->lock);
	long got = pg_exec(p, sql, 4, v, NULL, NULL, 1, &r);
	if (got == 0) {
		got = PQntuples(r) ? PQgetlength(r, 0, 0) : -ENOENT;
		if (got > (long)n)
			got = -EPROTO;
		if (got > 0)
			memcpy(buf, PQgetvalue(r, 0, 0), (size_t)got);
		PQclear(r);
	}
	pthread_mutex_unlock(&p->lock);
	return got;
}

int pg_blob_stat(struct storage *s, uint64_t id, const char *hex, uint64_t size)
{
	static const char sql[] = "SELECT b.size FROM mcpfs.context_blobs c JOIN mcpfs.blobs b"
				  " USING (hash) WHERE c.context_id = $1 AND c.hash = $2";
	struct pg_store *p = pg_of(s);
	char ids[24];
	const char *v[] = {ids, hex};
	PGresult *r;

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	int err = LOCKED(p, pg_exec(p, sql, 2, v, NULL, NULL, 0, &r));
	if (err < 0)
		return err;
	err = !PQntuples(r)					? -ENOENT
	      : strtoull(PQgetvalue(r, 0, 0), NULL, 10) == size ? 0
								: -EBADMSG;
	PQclear(r);
	return err;
}

int pg_blob_link(struct storage *s, uint64_t from, uint64_t to, const char *hex)
{
	static const char sql[] =
	    "WITH f AS (SELECT hash FROM mcpfs.context_blobs WHERE context_id = $1 AND hash = $3),"
	    " i AS (INSERT INTO mcpfs.context_blobs SELECT $2::bigint, hash FROM f"
	    " ON CONFLICT DO NOTHING)"
	    " SELECT count(*) FROM f";
	struct pg_store *p = pg_of(s);
	char fs[24], ts[24];
	const char *v[] = {fs, ts, hex};
	PGresult *r;

	snprintf(fs, sizeof(fs), "%" PRIu64, from);
	snprintf(ts, sizeof(ts), "%" PRIu64, to);
	int err = LOCKED(p, pg_exec(p, sql, 3, v, NULL, NULL, 0, &r));
	if (err < 0)
		return err;
	err = atoi(PQgetvalue(r, 0, 0)) > 0 ? 0 : -ENOENT;
	PQclear(r);
	return err;
}

/* Deletes the contents no context holds.  Best effort: a put linking one
 * meanwhile makes it fail (a foreign key), and the next sweep tries again.
 * Under p->lock. */
void pg_blob_orphans_locked(struct pg_store *p)
{
	pg_simple(p, "DELETE FROM mcpfs.blobs b WHERE NOT EXISTS"
		     " (SELECT 1 FROM mcpfs.context_blobs c WHERE c.hash = b.hash)");
}

/* The hashes of a sweep: "{h1,h2,...}" (hex digits need no quoting). */
struct sweep {
	bool (*keep)(void *data, const char *hex);
	void *data;
	char *drop;
	size_t len, cap;
	int n;
};

static int on_hash_row(void *data, PGresult *r)
{
	struct sweep *w = data;
	const char *hex = PQgetvalue(r, 0, 0);
	if (w->keep(w->data, hex))
		return 0;
	size_t k = strlen(hex);
	if (w->len + k + 3 > w->cap) {
		size_t cap = (w->cap ? w->cap * 2 : 256) + k;
		char *d = realloc(w->drop, cap);
		if (!d)
			return -ENOMEM;
		w->drop = d;
		w->cap = cap;
	}
	w->drop[w->len++] = w->n++ ? ',' : '{';
	memcpy(w->drop + w->len, hex, k);
	w->len += k;
	w->drop[w->len] = '\0';
	return 0;
}

int pg_blob_sweep(struct storage *s, uint64_t id, bool (*keep)(void *data, const char *hex),
		  void *data)
{
	struct pg_store *p = pg_of(s);
	char ids[24];
	const char *v[] = {ids, NULL};
	struct sweep w = {keep, data, NULL, 0, 0, 0};
	PGresult *r;

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	pthread_mutex_lock(&p->lock);
	int err = pg_single_rows(p, "SELECT hash FROM mcpfs.context_blobs WHERE context_id = $1", 1,
				 v, 0, on_hash_row, &w);
	if (err == 0 && w.n) {
		w.drop[w.len++] = '}';
		w.drop[w.len] = '\0';
		v[1] = w.drop;
		err = pg_exec(p,
			      "DELETE FROM mcpfs.context_blobs WHERE context_id = $1"
			      " AND hash = ANY ($2::text[])",
			      2, v, NULL, NULL, 0, &r);
		if (err == 0)
			PQclear(r);
		if (err == 0)
			pg_blob_orphans_locked(p);
	}
	pthread_mutex_unlock(&p->lock);
	free(w.drop);
	return err < 0 ? err : w.n;
}
