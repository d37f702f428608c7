/* pg_conn.c — the PostgreSQL engine's command connection: connecting with
 * mcpfs's defaults, reconnecting with back-off, running a statement and mapping
 * its failure to an errno, and masking passwords in every line it produces;
 * and two helpers every statement file uses (a statement on one live context,
 * a record row).  Callers hold p->lock (pg_impl.h), except around
 * pg_on_context(), which takes it. */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "pg_impl.h"

/* Replaces the value after each "password=" (up to '&', ' ' or the end; a
 * 'quoted' value whole) and the password of a URI's user info with "***". */
void pg_mask_url(const char *url, char *out, size_t n)
{
	size_t o = 0;
	const char *scheme = strstr(url, "://");
	const char *auth_end = NULL, *colon = NULL;

	if (n == 0)
		return;
	if (scheme) {
		const char *h = scheme + 3;
		size_t hl = strcspn(h, "/?");
		for (const char *c = h; c < h + hl; c++)
			if (*c == '@')
				auth_end = c;
		if (auth_end)
			colon = memchr(h, ':', (size_t)(auth_end - h));
	}
	for (const char *c = url; *c && o + 1 < n;) {
		const char *skip_to = NULL;
		if (colon && c == colon + 1)
			skip_to = auth_end;
		else if (strncmp(c, "password=", 9) == 0 &&
			 (c == url || c[-1] == '?' || c[-1] == '&' || c[-1] == ' ')) {
			size_t k = 9;
			while (k && o + 1 < n)
				out[o++] = *c++, k--;
			skip_to = c + strcspn(c, "& ");
			if (*c == '\'') /* key='quoted value' (\' and \\ escaped) */
				for (skip_to = c + 1; *skip_to && *skip_to != '\''; skip_to++)
					if (*skip_to == '\\' && skip_to[1])
						skip_to++;
			if (*c == '\'' && *skip_to)
				skip_to++;
		}
		if (skip_to) {
			for (const char *m = "***"; *m && o + 1 < n; m++)
				out[o++] = *m;
			c = skip_to;
			continue;
		}
		out[o++] = *c++;
	}
	out[o] = '\0';
}

/* A libpq or server message as one line: the first line, the password masked. */
void pg_message(const struct pg_store *p, const char *msg, char *out, size_t n)
{
	size_t o = 0, pl = p->password ? strlen(p->password) : 0;

	if (n == 0)
		return;
	if (!msg || !*msg)
		msg = "unknown error";
	for (const char *c = msg; *c && *c != '\n' && o + 1 < n;) {
		if (pl && strncmp(c, p->password, pl) == 0) {
			for (const char *m = "***"; *m && o + 1 < n; m++)
				out[o++] = *m;
			c += pl;
			continue;
		}
		out[o++] = *c++;
	}
	while (o && (out[o - 1] == ' ' || out[o - 1] == '\r'))
		o--;
	out[o] = '\0';
}

/* libpq prints notices, and a server's message on an idle connection (a
 * terminated session), to stderr by default: a daemon's stderr is its log, and
 * the engine never logs.  The failure itself reaches the caller as -EIO. */
static void on_notice(void *data, const PGresult *r)
{
	(void)data;
	(void)r;
}

/* A new connection with mcpfs's defaults (which the URL overrides), its session
 * set up for commits: synchronous_commit on, statements bounded.  NULL on
 * failure, with one line in why. */
PGconn *pg_connect(struct pg_store *p, const char *app, char *why, size_t n)
{
	const char *keys[] = {
	    "connect_timeout",	"application_name", "keepalives_idle", "keepalives_interval",
	    "keepalives_count", "tcp_user_timeout", "dbname",	       NULL,
	};
	const char *vals[] = {PG_CONNECT_TIMEOUT,     app,    "5", "2", "3",
			      PG_TCP_USER_TIMEOUT_MS, p->url, NULL};
	char set[160], line[PG_ERR_MAX / 2];
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (!c) {
		snprintf(why, n, "cannot connect to %s: out of memory", p->masked);
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		pg_message(p, PQerrorMessage(c), line, sizeof(line));
		snprintf(why, n, "cannot connect to %s: %s", p->masked, line);
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeReceiver(c, on_notice, NULL);
	snprintf(set, sizeof(set),
		 "SET synchronous_commit = on; SET statement_timeout = %d; "
		 "SET client_min_messages = warning",
		 PG_STATEMENT_TIMEOUT_MS);
	PGresult *r = PQexec(c, set);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		pg_message(p, PQerrorMessage(c), line, sizeof(line));
		snprintf(why, n, "%s: setting up the session: %s", p->masked, line);
		PQclear(r);
		PQfinish(c);
		return NULL;
	}
	PQclear(r);
	return c;
}

/* Copies the connection's state where pg_store_status() reads it; p->lock held. */
void pg_publish(struct pg_store *p)
{
	pthread_mutex_lock(&p->status_lock);
	p->away = !p->conn;
	if (p->conn)
		snprintf(p->status_line, sizeof(p->status_line), "ok");
	else
		snprintf(p->status_line, sizeof(p->status_line), "unreachable: %s",
			 p->err[0] ? p->err : p->masked);
	pthread_mutex_unlock(&p->status_lock);
}

static void pg_down(struct pg_store *p, const char *msg)
{
	char line[PG_ERR_MAX / 2 - 8];

	pg_message(p, msg, line, sizeof(line)); /* msg may be the connection's */
	if (p->conn)
		PQfinish(p->conn);
	p->conn = NULL;
	if (!p->err[0])
		snprintf(p->err, sizeof(p->err), "%s: %s", p->masked, line);
	p->backoff_ms = p->backoff_ms ? p->backoff_ms : PG_BACKOFF_MIN_MS;
	p->retry_at = clock_mono_ms() + p->backoff_ms;
	pg_publish(p);
}

/* 0 with p->conn usable, or -EIO: down, and either still backing off or the
 * reconnect failed (the back-off then doubles).  Never waits for a back-off. */
int pg_ready(struct pg_store *p)
{
	char why[PG_ERR_MAX];

	if (p->conn && PQstatus(p->conn) == CONNECTION_OK)
		return 0;
	if (p->conn)
		pg_down(p, PQerrorMessage(p->conn));
	if (clock_mono_ms() < p->retry_at)
		return -EIO;
	p->conn = pg_connect(p, "mcpfs", why, sizeof(why));
	if (!p->conn) {
		snprintf(p->err, sizeof(p->err), "%s", why);
		p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : PG_BACKOFF_MIN_MS;
		if (p->backoff_ms > PG_BACKOFF_MAX_MS)
			p->backoff_ms = PG_BACKOFF_MAX_MS;
		p->retry_at = clock_mono_ms() + p->backoff_ms;
		pg_publish(p);
		return -EIO;
	}
	p->err[0] = '\0';
	p->backoff_ms = 0;
	PQsetnonblocking(p->conn, 1); /* pg_await bounds every wait */
	pg_publish(p);
	/* what was appended without a synchronous commit before the drop is of
	 * unknown durability: the next sync commits again to be sure */
	p->unsynced = true;
	return 0;
}

/* The errno for a failed statement: constraint errors are the caller's
 * (-EEXIST, -ENOENT), the rest -EIO; a broken connection is dropped. */
static int pg_fail(struct pg_store *p, PGresult *r)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

	if (state && strcmp(state, "23505") == 0)
		return -EEXIST; /* unique_violation: the name is taken */
	if (state && strcmp(state, "23503") == 0)
		return -ENOENT; /* foreign_key_violation: the context is gone */
	if (state && strcmp(state, "54000") == 0)
		return -EFBIG; /* program_limit_exceeded */
	if (PQstatus(p->conn) != CONNECTION_OK || !state || strncmp(state, "08", 2) == 0 ||
	    strncmp(state, "57P", 3) == 0) {
		pg_down(p, PQerrorMessage(p->conn));
		return -EIO;
	}
	pg_message(p, PQerrorMessage(p->conn), p->err, sizeof(p->err));
	return -EIO;
}

/* Waits, on the non-blocking command connection, until what was sent is
 * flushed and a result can be read without blocking; the server may stay
 * silent at most PG_REPLY_TIMEOUT_MS at a time (a frozen or cut-off server:
 * the connection is dropped, -EIO, and every call fails at once until the
 * back-off allows a reconnect).  0 or -EIO. */
static int pg_await(struct pg_store *p)
{
	for (;;) {
		int f = PQflush(p->conn);
		if (f < 0)
			break;
		if (f == 0 && !PQisBusy(p->conn))
			return 0;
		struct pollfd pfd = {PQsocket(p->conn), (short)(POLLIN | (f ? POLLOUT : 0)), 0};
		int n = poll(&pfd, 1, PG_REPLY_TIMEOUT_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			snprintf(p->err, sizeof(p->err), "%s: no answer from the server in %d ms",
				 p->masked, PG_REPLY_TIMEOUT_MS);
			pg_down(p, "no answer");
			return -EIO;
		}
		if (n < 0 ||
		    ((pfd.revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(p->conn)))
			break;
	}
	pg_down(p, PQerrorMessage(p->conn));
	return -EIO;
}

/* The next result of the statement sent (NULL at its end); *err -EIO when the
 * wait failed (the connection is dropped). */
static PGresult *pg_next(struct pg_store *p, int *err)
{
	*err = pg_await(p);
	return *err ? NULL : PQgetResult(p->conn);
}

/* Every result of the statement sent, as PQexec keeps them: the first error,
 * else the last.  NULL with -EIO when the connection failed meanwhile. */
static PGresult *pg_collect(struct pg_store *p, int *err)
{
	PGresult *keep = NULL, *r;

	while ((r = pg_next(p, err))) {
		ExecStatusType st = PQresultStatus(keep);
		if (keep && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			PQclear(r);
			continue;
		}
		PQclear(keep);
		keep = r;
	}
	if (*err) {
		PQclear(keep);
		return NULL;
	}
	return keep;
}

/* Runs one statement (text parameters unless formats says binary).  0 with
 * *ret the result (PQclear it), or a negative errno (nothing to clear). */
int pg_exec(struct pg_store *p, const char *sql, int nparams, const char *const *values,
	    const int *lengths, const int *formats, int result_binary, PGresult **ret)
{
	int err = pg_ready(p);

	*ret = NULL;
	if (err < 0)
		return err;
	if (!PQsendQueryParams(p->conn, sql, nparams, NULL, values, lengths, formats,
			       result_binary)) {
		pg_down(p, PQerrorMessage(p->conn));
		return -EIO;
	}
	PGresult *r = pg_collect(p, &err);
	if (err < 0)
		return err;
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		*ret = r;
		return 0;
	}
	err = pg_fail(p, r);
	PQclear(r);
	return err;
}

/* Statements without parameters or a result (several, separated by ';'). */
int pg_simple(struct pg_store *p, const char *sql)
{
	int err = pg_ready(p);

	if (err < 0)
		return err;
	if (!PQsendQuery(p->conn, sql)) {
		pg_down(p, PQerrorMessage(p->conn));
		return -EIO;
	}
	PGresult *r = pg_collect(p, &err);
	if (err < 0)
		return err;
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		err = pg_fail(p, r);
	PQclear(r);
	return err;
}

/* Runs a query in single-row mode: row_fn sees one row at a time, so at most one
 * row is in memory whatever the query returns.  After row_fn fails, the rest is
 * read and dropped.  0, row_fn's value, or a negative errno. */
int pg_single_rows(struct pg_store *p, const char *sql, int nparams, const char *const *values,
		   int result_binary, int (*row_fn)(void *data, PGresult *r), void *data)
{
	int err = pg_ready(p), fn_err = 0;
	PGresult *r;

	if (err < 0)
		return err;
	if (!PQsendQueryParams(p->conn, sql, nparams, NULL, values, NULL, NULL, result_binary) ||
	    !PQsetSingleRowMode(p->conn)) {
		pg_down(p, PQerrorMessage(p->conn));
		return -EIO;
	}
	int wait_err;
	while ((r = pg_next(p, &wait_err))) {
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_SINGLE_TUPLE) {
			if (!fn_err)
				fn_err = row_fn(data, r);
		} else if (st != PGRES_TUPLES_OK && !err) {
			err = pg_fail(p, r);
			if (!p->conn) {
				PQclear(r);
				return err;
			}
		}
		PQclear(r);
	}
	if (wait_err)
		return wait_err; /* the connection is dropped */
	return err ? err : fn_err;
}

/* A statement on one live context whose rows say it exists: -ENOENT when none. */
int pg_on_context(struct storage *s, const char *sql, uint64_t id, const char *arg)
{
	struct pg_store *p = pg_of(s);
	char ids[24];
	const char *v[] = {ids, arg};
	PGresult *r;

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	int err = LOCKED(p, pg_exec(p, sql, arg ? 2 : 1, v, NULL, NULL, 0, &r));
	if (err < 0)
		return err;
	err = PQntuples(r) ? 0 : -ENOENT;
	PQclear(r);
	return err;
}

/* Binary results: seq int8 and type int2 in network byte order. */
int pg_on_record_row(void *data, PGresult *r)
{
	struct rec_walk *w = data;
	uint64_t seq;
	uint16_t type;

	if (PQgetlength(r, 0, 0) != 8 || PQgetlength(r, 0, 1) != 2)
		return -EPROTO;
	memcpy(&seq, PQgetvalue(r, 0, 0), 8);
	memcpy(&type, PQgetvalue(r, 0, 1), 2);
	w->last = be64toh(seq);
	w->rows++;
	return w->fn(w->data, w->last, be16toh(type), PQgetvalue(r, 0, 2),
		     (size_t)PQgetlength(r, 0, 2));
}
