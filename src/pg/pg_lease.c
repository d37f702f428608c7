/* pg_lease.c — call leases on PostgreSQL: one row per context in mcpfs.leases
 * (holder, fencing token, expiry by the server's clock).  A row, not an
 * advisory lock: an advisory lock belongs to a session, so a dropped connection
 * (a database restart, a network blip) would release it silently while its
 * holder streams on, and holding it needs a connection per call; a row survives
 * reconnects, its expiry makes takeover explicit (doc/design/shared-store.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_impl.h"

#define LEASE_EXPIRY "clock_timestamp() + $3::bigint * interval '1 millisecond'"

static int lease_check(const char *holder, uint32_t ttl_ms)
{
	if (!holder || !*holder || strlen(holder) >= STORAGE_MAX_HOLDER)
		return -EINVAL;
	return ttl_ms == 0 || ttl_ms > PG_LEASE_MAX_TTL_MS ? -EINVAL : 0;
}

/* Inside a transaction: the lease row locked, then taken or refused. */
static int lease_take(struct pg_store *p, const char *const *v, struct storage_lease *l)
{
	PGresult *r;
	int err = pg_exec(p,
			  "SELECT holder, token, expires < clock_timestamp() FROM mcpfs.leases"
			  " WHERE context_id = $1 FOR UPDATE",
			  1, v, NULL, NULL, 0, &r);
	if (err < 0)
		return err;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return -ENOENT;
	}
	const char *prev = PQgetvalue(r, 0, 0);
	bool expired = PQgetvalue(r, 0, 2)[0] == 't';
	bool mine = strcmp(prev, v[1]) == 0;
	if (*prev && !mine && !expired) {
		snprintf(l->prev_holder, sizeof(l->prev_holder), "%s", prev);
		PQclear(r);
		return -EBUSY;
	}
	l->took_over = *prev && !mine;
	snprintf(l->prev_holder, sizeof(l->prev_holder), "%s", prev);
	PQclear(r);
	err = pg_exec(p,
		      "UPDATE mcpfs.leases SET holder = $2, token = token + 1,"
		      " expires = " LEASE_EXPIRY " WHERE context_id = $1 RETURNING token",
		      3, v, NULL, NULL, 0, &r);
	if (err < 0)
		return err;
	l->token = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return 0;
}

static int lease_acquire_locked(struct pg_store *p, const char *const *v, struct storage_lease *l)
{
	PGresult *r;
	/* the row exists from the first acquisition on; a released lease keeps it
	 * (holder "") so that tokens only grow */
	int err = pg_exec(p,
			  "INSERT INTO mcpfs.leases SELECT id, '', 0, '-infinity'"
			  " FROM mcpfs.contexts WHERE id = $1::bigint AND name IS NOT NULL"
			  " ON CONFLICT (context_id) DO NOTHING",
			  1, v, NULL, NULL, 0, &r);
	PQclear(r);
	if (err == 0)
		err = pg_simple(p, "BEGIN");
	if (err < 0)
		return err;
	err = lease_take(p, v, l);
	if (err < 0) {
		if (p->conn)
			pg_simple(p, "ROLLBACK");
		return err;
	}
	return pg_simple(p, "COMMIT");
}

int pg_lease_acquire(struct storage *s, uint64_t id, const char *holder, uint32_t ttl_ms,
		     struct storage_lease *l)
{
	struct pg_store *p = (struct pg_store *)s;
	char ids[24], ttl[16];
	const char *v[] = {ids, holder, ttl};
	int err = lease_check(holder, ttl_ms);

	memset(l, 0, sizeof(*l));
	if (err < 0)
		return err;
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	snprintf(ttl, sizeof(ttl), "%" PRIu32, ttl_ms);
	pthread_mutex_lock(&p->lock);
	err = lease_acquire_locked(p, v, l);
	pthread_mutex_unlock(&p->lock);
	return err;
}

static int lease_update(struct pg_store *p, const char *sql, int nparams, const char *const *v)
{
	PGresult *r;

	pthread_mutex_lock(&p->lock);
	int err = pg_exec(p, sql, nparams, v, NULL, NULL, 0, &r);
	pthread_mutex_unlock(&p->lock);
	if (err < 0)
		return err;
	err = PQntuples(r) ? 0 : -ESTALE;
	PQclear(r);
	return err;
}

int pg_lease_renew(struct storage *s, uint64_t id, uint64_t token, uint32_t ttl_ms)
{
	char ids[24], tok[24], ttl[16];
	const char *v[] = {ids, tok, ttl};

	if (ttl_ms == 0 || ttl_ms > PG_LEASE_MAX_TTL_MS)
		return -EINVAL;
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	snprintf(tok, sizeof(tok), "%" PRIu64, token);
	snprintf(ttl, sizeof(ttl), "%" PRIu32, ttl_ms);
	return lease_update(
	    (struct pg_store *)s,
	    "UPDATE mcpfs.leases SET expires = " LEASE_EXPIRY
	    " WHERE context_id = $1 AND token = $2 AND holder <> '' RETURNING token",
	    3, v);
}

int pg_lease_release(struct storage *s, uint64_t id, uint64_t token)
{
	char ids[24], tok[24];
	const char *v[] = {ids, tok};
	int err;

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	snprintf(tok, sizeof(tok), "%" PRIu64, token);
	err = lease_update((struct pg_store *)s,
			   "UPDATE mcpfs.leases SET holder = '', expires = '-infinity'"
			   " WHERE context_id = $1 AND token = $2 RETURNING token",
			   2, v);
	return err == -ESTALE ? 0 : err;
}

int pg_lease_break(struct storage *s, uint64_t id, const char *holder)
{
	char ids[24];
	const char *v[] = {ids, holder};
	int err;

	if (!holder || !*holder || strlen(holder) >= STORAGE_MAX_HOLDER)
		return -EINVAL;
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	err = lease_update((struct pg_store *)s,
			   "UPDATE mcpfs.leases SET expires = '-infinity'"
			   " WHERE context_id = $1 AND holder = $2 RETURNING token",
			   2, v);
	return err == -ESTALE ? 0 : err;
}
