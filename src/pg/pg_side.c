/* pg_side.c — the PostgreSQL engine's optional ops of storage.h: tail (a
 * look at a context's newest records), the side file (contexts.meta), and the
 * start-up sweep of hidden contexts a dead daemon left. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_impl.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* The newest records whose payloads (each counted with PG_TAIL_FRAME bytes, as
 * a journal frames it) fit in `bytes`, and at least the newest one: a suffix,
 * since the running sum grows going back. */
int pg_tail(struct storage *s, uint64_t id, uint64_t bytes, storage_record_fn *fn, void *data)
{
	static const char sql[] = "SELECT r.seq, r.type, r.payload FROM mcpfs.records r JOIN ("
				  " SELECT seq, row_number() OVER w AS n,"
				  "  sum(octet_length(payload) + " STR(
				      PG_TAIL_FRAME) ") OVER w AS back"
						     " FROM mcpfs.records WHERE context_id = $1 "
						     "WINDOW w AS (ORDER BY seq DESC)) t"
						     " USING (seq) WHERE r.context_id = $1 AND "
						     "(t.n = 1 OR t.back <= $2) ORDER BY r.seq";
	struct pg_store *p = pg_of(s);
	struct rec_walk w = {fn, data, 0, 0};
	char ids[24], b[24];
	const char *v[] = {ids, b};

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	snprintf(b, sizeof(b), "%" PRIu64, bytes > INT64_MAX ? (uint64_t)INT64_MAX : bytes);
	int err = LOCKED(p, pg_single_rows(p, sql, 2, v, 1, pg_on_record_row, &w));
	if (err == 0 && w.rows == 0)
		err = pg_on_context(
		    s, "SELECT id FROM mcpfs.contexts WHERE id = $1 AND NOT deleted", id, NULL);
	return err == 0 && w.rows == 0 ? -ENODATA : err;
}

int pg_meta_get(struct storage *s, uint64_t id, void **out, size_t *len)
{
	struct pg_store *p = pg_of(s);
	char ids[24];
	const char *v[] = {ids};
	PGresult *r;

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	int err =
	    LOCKED(p, pg_exec(p, "SELECT meta FROM mcpfs.contexts WHERE id = $1 AND NOT deleted", 1,
			      v, NULL, NULL, 1, &r));
	if (err < 0)
		return err;
	if (PQntuples(r) == 0 || PQgetisnull(r, 0, 0)) {
		err = PQntuples(r) == 0 ? -ENOENT : -ENODATA;
		PQclear(r);
		return err;
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

/* Not committed by itself in storage.h's terms, but one statement commits it
 * anyway; it is no change of the context (no change position, no hint): the
 * records stay the truth and a load rewrites it. */
int pg_meta_set(struct storage *s, uint64_t id, const void *data, size_t len)
{
	struct pg_store *p = pg_of(s);
	char ids[24];
	const char *v[] = {ids, len ? data : NULL};
	const int lens[] = {0, (int)len}, fmts[] = {0, 1};
	PGresult *r;

	if (len > STORAGE_MAX_SIDE)
		return -EFBIG;
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	int err = LOCKED(p, pg_exec(p,
				    "UPDATE mcpfs.contexts SET meta = $2::bytea"
				    " WHERE id = $1 AND NOT deleted RETURNING id",
				    2, v, lens, fmts, 0, &r));
	if (err < 0)
		return err;
	err = PQntuples(r) ? 0 : -ENOENT;
	PQclear(r);
	return err;
}

/* Hidden contexts older than PG_HIDDEN_MAX_AGE_MS (by the server's clock
 * against their created_ms) become tombstones, their records gone.  Best
 * effort: a failure leaves them for the next start-up. */
void pg_sweep_hidden(struct pg_store *p)
{
	static const char sql[] =
	    "WITH c AS (UPDATE mcpfs.contexts SET deleted = true, meta = NULL,"
	    " change = nextval('mcpfs.changes') WHERE name IS NULL AND NOT deleted"
	    " AND created_ms < extract(epoch FROM clock_timestamp()) * 1000 - $1::bigint"
	    " RETURNING id),"
	    " d AS (DELETE FROM mcpfs.records WHERE context_id IN (SELECT id FROM c)),"
	    " l AS (DELETE FROM mcpfs.leases WHERE context_id IN (SELECT id FROM c)),"
	    " b AS (DELETE FROM mcpfs.context_blobs WHERE context_id IN (SELECT id FROM c))"
	    " SELECT count(*) FROM c";
	char age[24];
	const char *v[] = {age};
	PGresult *r;

	snprintf(age, sizeof(age), "%d", PG_HIDDEN_MAX_AGE_MS);
	if (LOCKED(p, pg_exec(p, sql, 1, v, NULL, NULL, 0, &r)) == 0)
		PQclear(r);
}
