/* test_pg_store.c — the PostgreSQL engine (src/pg/) against a real server.
 *
 * Run by tests/integration/test_pg_store.py, which starts a PostgreSQL 15 of its
 * own (pg_support.py) and passes its URL:
 *     test_pg_store CASE URL
 * CASE is basic, feed, lost, concurrent, lease, if_at, restart or unreachable (see each
 * function).
 * Exits 0 when every check passed and prints "N passed, M failed".  The
 * restart case talks to the driver on stdout: "READY" when it wants the server
 * restarted, then keeps appending through the restart.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../unit/check.h"
#include "mcpfs/clock.h"
#include "mcpfs/pg.h"

static struct storage *open_store(const char *url)
{
	char why[512];
	struct storage *s = NULL;
	int err = pg_store_new(url, why, sizeof(why), &s);

	if (err < 0) {
		fprintf(stderr, "pg_store_new: %d: %s\n", err, why);
		exit(2);
	}
	/* the listener, as the daemon starts it after forking (store_start) */
	if ((err = storage_start(s)) < 0) {
		fprintf(stderr, "storage_start: %d\n", err);
		exit(2);
	}
	return s;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

struct names {
	int n;
	char name[16][64];
	uint64_t id[16], last_seq[16];
};

static int on_context(void *data, const struct storage_context *c)
{
	struct names *w = data;

	if (w->n < 16) {
		snprintf(w->name[w->n], sizeof(w->name[0]), "%s", c->name ? c->name : "(deleted)");
		w->id[w->n] = c->id;
		w->last_seq[w->n++] = c->last_seq;
	}
	return 0;
}

struct recs {
	int n;
	uint64_t seq[64];
	uint16_t type[64];
	char text[64][64];
};

static int on_record(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	struct recs *r = data;

	if (r->n < 64) {
		r->seq[r->n] = seq;
		r->type[r->n] = type;
		size_t n = len < sizeof(r->text[0]) - 1 ? len : sizeof(r->text[0]) - 1;
		memcpy(r->text[r->n], payload, n); /* bytes: a NUL is kept */
		r->text[r->n++][n] = '\0';
	}
	return 0;
}

static const char CREATE[] = "{\"v\":1,\"created_ms\":1,\"settings\":{},\"system\":\"\"}";

static int has_name(const struct names *w, const char *name)
{
	for (int i = 0; i < w->n; i++)
		if (strcmp(w->name[i], name) == 0)
			return 1;
	return 0;
}

/* create/rename/delete/list, append and load from a sequence number, defaults */
static void case_basic(const char *url)
{
	struct storage *s = open_store(url);
	uint64_t a, b, seq = 0, last = 0;
	struct names w = {0};
	struct recs r = {0};

	CHECK_EQ_INT(storage_create(s, "alpha", 1000, CREATE, strlen(CREATE), &a), 0);
	CHECK_EQ_INT(storage_create(s, "alpha", 1000, CREATE, strlen(CREATE), &b), -EEXIST);
	CHECK_EQ_INT(storage_create(s, "beta", 2000, CREATE, strlen(CREATE), &b), 0);
	CHECK(a != b);
	CHECK_EQ_INT(storage_rename(s, b, "alpha"), -EEXIST);
	CHECK_EQ_INT(storage_rename(s, b, "gamma"), 0);
	CHECK_EQ_INT(storage_rename(s, 999999, "delta"), -ENOENT);
	CHECK_EQ_INT(storage_list(s, on_context, &w), 0);
	CHECK_EQ_INT(w.n, 2);
	CHECK(has_name(&w, "alpha") && has_name(&w, "gamma") && !has_name(&w, "beta"));

	CHECK_EQ_INT(storage_append(s, a, JOURNAL_USER, "{\"turn\":1}", 10, STORAGE_COMMIT, &seq),
		     0);
	CHECK_EQ_INT(seq, 2);
	CHECK_EQ_INT(storage_append(s, a, JOURNAL_REPLY_PART, "{\"p\":1}", 7, 0, &seq), 0);
	CHECK_EQ_INT(seq, 3);
	CHECK_EQ_INT(storage_append(s, a, JOURNAL_REPLY_PART, "{\"p\":2}", 7, 0, &seq), 0);
	CHECK_EQ_INT(storage_sync(s, a), 0);
	CHECK_EQ_INT(storage_append(s, 999999, JOURNAL_USER, "{}", 2, STORAGE_COMMIT, NULL),
		     -ENOENT);
	/* a payload of bytes a JSON text never holds (NUL, 0xff) comes back whole */
	CHECK_EQ_INT(storage_append(s, a, 99, "x\0\xff", 3, STORAGE_COMMIT, &seq), 0);
	CHECK_EQ_INT(storage_append(s, a, JOURNAL_USER, "", (size_t)STORAGE_MAX_RECORD + 1,
				    STORAGE_COMMIT, NULL),
		     -EFBIG);

	CHECK_EQ_INT(storage_load(s, a, 0, 0, on_record, &r, &last), 0);
	CHECK_EQ_INT(r.n, 5);
	CHECK_EQ_INT(last, 5);
	CHECK_EQ_INT(r.type[0], JOURNAL_CREATE);
	CHECK_EQ_STR(r.text[0], CREATE);
	CHECK_EQ_INT(r.type[1], JOURNAL_USER);
	CHECK_EQ_INT(r.type[4], 99);
	CHECK(memcmp(r.text[4], "x\0\xff", 3) == 0);
	for (int i = 0; i < r.n; i++)
		CHECK_EQ_INT(r.seq[i], (uint64_t)i + 1);
	/* from a sequence number, at most max */
	memset(&r, 0, sizeof(r));
	CHECK_EQ_INT(storage_load(s, a, 2, 2, on_record, &r, &last), 0);
	CHECK_EQ_INT(r.n, 2);
	CHECK_EQ_INT(r.seq[0], 3);
	CHECK_EQ_STR(r.text[1], "{\"p\":2}");
	CHECK_EQ_INT(last, 4);
	CHECK_EQ_INT(storage_load(s, 999999, 0, 0, on_record, &r, NULL), -ENOENT);

	/* delete: gone from the list, its records unreachable, its name free */
	CHECK_EQ_INT(storage_remove(s, a), 0);
	CHECK_EQ_INT(storage_remove(s, a), -ENOENT);
	CHECK_EQ_INT(storage_load(s, a, 0, 0, on_record, &r, NULL), -ENOENT);
	memset(&w, 0, sizeof(w));
	CHECK_EQ_INT(storage_list(s, on_context, &w), 0);
	CHECK_EQ_INT(w.n, 1);
	CHECK_EQ_INT(storage_create(s, "alpha", 3000, CREATE, strlen(CREATE), &b), 0);
	CHECK(b > a); /* ids are never reused */

	void *d = NULL;
	size_t dl = 0;
	CHECK_EQ_INT(storage_defaults_get(s, &d, &dl), -ENOENT);
	CHECK_EQ_INT(storage_defaults_set(s, "{\"model\":\"m\"}", 13), 0);
	CHECK_EQ_INT(storage_defaults_get(s, &d, &dl), 0);
	CHECK_EQ_INT(dl, 13);
	CHECK(d && memcmp(d, "{\"model\":\"m\"}", 13) == 0);
	free(d);

	char st[256];
	pg_store_status(s, st, sizeof(st));
	CHECK_EQ_STR(st, "ok");
	storage_free(s);

	/* what was committed is there for a new connection (a second daemon) */
	s = open_store(url);
	memset(&w, 0, sizeof(w));
	CHECK_EQ_INT(storage_list(s, on_context, &w), 0);
	CHECK_EQ_INT(w.n, 2);
	storage_free(s);
}

/* Waits for the feed descriptor (at most 10 s) and drains it into hints. */
static int wait_hints(struct storage *s, struct storage_hint *h, int max, bool *resync)
{
	struct pollfd pf = {storage_feed_fd(s), POLLIN, 0};
	int64_t end = clock_mono_ms() + 10000;
	int n = 0;

	*resync = false;
	while (n == 0 && !*resync && clock_mono_ms() < end) {
		if (poll(&pf, 1, 200) < 0)
			return -errno;
		bool rs = false;
		n = storage_feed_drain(s, h, max, &rs);
		*resync = rs;
	}
	return n;
}

static int hint_for(const struct storage_hint *h, int n, uint64_t id, uint64_t seq)
{
	for (int i = 0; i < n; i++)
		if (h[i].id == id && h[i].seq == seq)
			return 1;
	return 0;
}

/* Drains until the hint (id, seq) came, at most 10 s.  1 when it did. */
static int wait_hint(struct storage *s, uint64_t id, uint64_t seq)
{
	struct storage_hint h[64];
	int64_t end = clock_mono_ms() + 10000;
	bool resync;

	while (clock_mono_ms() < end) {
		int n = wait_hints(s, h, 64, &resync);
		if (hint_for(h, n, id, seq))
			return 1;
	}
	return 0;
}

/* two daemons: A commits, B is woken by NOTIFY and catches up by seq */
static void case_feed(const char *url)
{
	struct storage *a = open_store(url), *b = open_store(url);
	struct storage_hint h[64];
	struct recs r = {0};
	struct names w = {0};
	uint64_t id, seq = 0, last = 0, pos = 0;
	bool resync;

	CHECK(storage_feed_fd(b) >= 0);
	/* the daemon starts from what is there: a drain, then the changes so far */
	storage_feed_drain(b, h, 64, &resync);
	CHECK_EQ_INT(storage_changes(b, 0, 0, on_context, &w, &pos), 0);

	CHECK_EQ_INT(storage_create(a, "shared", 1, CREATE, strlen(CREATE), &id), 0);
	CHECK(wait_hint(b, id, 0));
	memset(&w, 0, sizeof(w));
	CHECK_EQ_INT(storage_changes(b, pos, 0, on_context, &w, &pos), 0);
	CHECK(w.n == 1 && strcmp(w.name[0], "shared") == 0 && w.id[0] == id);

	CHECK_EQ_INT(storage_load(b, id, 0, 0, on_record, &r, &last), 0);
	CHECK_EQ_INT(last, 1);
	CHECK_EQ_INT(storage_append(a, id, JOURNAL_USER, "{\"turn\":1}", 10, STORAGE_COMMIT, &seq),
		     0);
	CHECK_EQ_INT(storage_append(a, id, JOURNAL_REPLY_PART, "{\"t\":\"hi\"}", 10, 0, &seq), 0);
	CHECK_EQ_INT(seq, 3);
	CHECK(wait_hint(b, id, 3));
	memset(&r, 0, sizeof(r));
	CHECK_EQ_INT(storage_load(b, id, last, 0, on_record, &r, &last), 0);
	CHECK_EQ_INT(r.n, 2);
	CHECK_EQ_INT(r.seq[0], 2);
	CHECK_EQ_STR(r.text[1], "{\"t\":\"hi\"}");
	CHECK_EQ_INT(last, 3);

	/* a rename and a delete are hints too, and changes() shows the deletion */
	CHECK_EQ_INT(storage_remove(a, id), 0);
	memset(&w, 0, sizeof(w));
	int64_t end = clock_mono_ms() + 10000;
	while (w.n == 0 && clock_mono_ms() < end) {
		wait_hints(b, h, 64, &resync);
		CHECK_EQ_INT(storage_changes(b, pos, 0, on_context, &w, &pos), 0);
	}
	CHECK(w.n >= 1 && strcmp(w.name[w.n - 1], "(deleted)") == 0);
	storage_free(a);
	storage_free(b);
}

/* a lost notification is caught up by the next poll; a lost listener says resync */
static void case_lost(const char *url)
{
	struct storage *b = open_store(url);
	struct storage_hint h[64];
	struct names w = {0};
	struct recs r = {0};
	uint64_t id, pos = 0, last = 0;
	bool resync;

	CHECK_EQ_INT(storage_create(b, "quiet", 1, CREATE, strlen(CREATE), &id), 0);
	CHECK_EQ_INT(storage_changes(b, 0, 0, on_context, &w, &pos), 0);
	wait_hints(b, h, 64, &resync);

	/* another writer commits without a NOTIFY: the notification is lost */
	PGconn *raw = PQconnectdb(url);
	CHECK(PQstatus(raw) == CONNECTION_OK);
	PGresult *res = PQexec(raw, "BEGIN;"
				    "UPDATE mcpfs.contexts SET last_seq = 2,"
				    " change = nextval('mcpfs.changes') WHERE name = 'quiet';"
				    "INSERT INTO mcpfs.records SELECT id, 2, 3, 'lost' FROM"
				    " mcpfs.contexts WHERE name = 'quiet';"
				    "COMMIT");
	CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
	PQclear(res);
	struct pollfd pf = {storage_feed_fd(b), POLLIN, 0};
	CHECK_EQ_INT(poll(&pf, 1, 300), 0); /* no hint came */

	/* the poll every daemon runs anyway finds it */
	memset(&w, 0, sizeof(w));
	CHECK_EQ_INT(storage_changes(b, pos, 100, on_context, &w, &pos), 0);
	CHECK(w.n == 1 && w.id[0] == id && w.last_seq[0] == 2);
	CHECK_EQ_INT(storage_load(b, id, 1, 0, on_record, &r, &last), 0);
	CHECK(r.n == 1 && strcmp(r.text[0], "lost") == 0 && last == 2);

	/* the listener's connection dies: after it reconnects, the feed says resync */
	res = PQexec(raw, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
			  " WHERE application_name = 'mcpfs-listen'");
	CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1);
	PQclear(res);
	int n = wait_hints(b, h, 64, &resync);
	CHECK(n == 0 && resync);
	/* and it listens again: a commit after that is a hint */
	uint64_t seq = 0;
	CHECK_EQ_INT(storage_append(b, id, JOURNAL_USER, "{}", 2, STORAGE_COMMIT, &seq), 0);
	CHECK(wait_hint(b, id, seq));
	PQfinish(raw);
	storage_free(b);
}

/* one holder at a time; takeover after expiry; fencing by token */
static void case_lease(const char *url)
{
	struct storage *a = open_store(url), *b = open_store(url);
	struct storage_lease la, lb;
	uint64_t id;

	CHECK_EQ_INT(storage_create(a, "leased", 1, CREATE, strlen(CREATE), &id), 0);
	CHECK_EQ_INT(storage_lease_acquire(a, 999999, "host-a", 1000, &la), -ENOENT);
	CHECK_EQ_INT(storage_lease_acquire(a, id, "", 1000, &la), -EINVAL);
	CHECK_EQ_INT(storage_lease_acquire(a, id, "host-a", 0, &la), -EINVAL);
	CHECK_EQ_INT(storage_lease_acquire(a, id, "host-a", 3000, &la), 0);
	CHECK(!la.took_over && la.token > 0);
	CHECK_EQ_INT(storage_lease_acquire(b, id, "host-b", 3000, &lb), -EBUSY);
	CHECK_EQ_STR(lb.prev_holder, "host-a");
	CHECK_EQ_INT(storage_lease_renew(a, id, la.token, 3000), 0);

	/* A stops renewing (it died): B takes over once the lease expired */
	int err = -EBUSY;
	int64_t end = clock_mono_ms() + 15000;
	while (err == -EBUSY && clock_mono_ms() < end) {
		sleep_ms(100);
		err = storage_lease_acquire(b, id, "host-b", 3000, &lb);
	}
	CHECK_EQ_INT(err, 0);
	CHECK(lb.took_over);
	CHECK_EQ_STR(lb.prev_holder, "host-a");
	CHECK(lb.token > la.token);
	/* A comes back: its token is stale */
	CHECK_EQ_INT(storage_lease_renew(a, id, la.token, 1500), -ESTALE);
	CHECK_EQ_INT(storage_lease_release(a, id, la.token), 0);
	CHECK_EQ_INT(storage_lease_acquire(a, id, "host-a", 60000, &la), -EBUSY);
	/* released cleanly: the next holder is no takeover */
	CHECK_EQ_INT(storage_lease_release(b, id, lb.token), 0);
	CHECK_EQ_INT(storage_lease_acquire(a, id, "host-a", 60000, &la), 0);
	CHECK(!la.took_over && la.token > lb.token);
	/* a deleted context has no lease */
	CHECK_EQ_INT(storage_remove(a, id), 0);
	CHECK_EQ_INT(storage_lease_renew(a, id, la.token, 1000), -ESTALE);
	storage_free(a);
	storage_free(b);
}

#define IF_AT_WRITES 40 /* appends per writer in case_if_at */

struct numberer {
	struct storage *s;
	uint64_t id;
	int retries;
};

static int last_seq_of(void *data, uint64_t seq, uint16_t type, const void *p, size_t len)
{
	(void)type, (void)p, (void)len;
	*(uint64_t *)data = seq;
	return 0;
}

/* Numbers each record from the last seq it knows (payload "SEQ", the seq it
 * expects the record to get), appends it IF_AT, and on -EAGAIN catches up by
 * load and numbers it again: what the core does for a USER record. */
static void *numberer_run(void *arg)
{
	struct numberer *w = arg;
	uint64_t known = 0;
	for (int i = 0; i < IF_AT_WRITES; i++) {
		int err;
		do {
			uint64_t last = known;
			storage_load(w->s, w->id, known, 0, last_seq_of, &last, NULL);
			known = last;
			char text[24];
			snprintf(text, sizeof(text), "%" PRIu64, known + 1);
			uint64_t seq = known;
			err = storage_append(w->s, w->id, JOURNAL_USER, text, strlen(text),
					     STORAGE_IF_AT | (i % 2 ? STORAGE_COMMIT : 0), &seq);
			if (err == 0)
				known = seq;
			else
				w->retries++;
		} while (err == -EAGAIN);
		CHECK_EQ_INT(err, 0);
	}
	return NULL;
}

static int seq_matches(void *data, uint64_t seq, uint16_t type, const void *p, size_t len)
{
	int *bad = data;
	char want[24];
	snprintf(want, sizeof(want), "%" PRIu64, seq);
	if (type == JOURNAL_USER && (len != strlen(want) || memcmp(p, want, len)))
		(*bad)++;
	return 0;
}

/* appends conditioned on the last seq: -EAGAIN when another came first,
 * nothing written; two writers numbering from what they applied */
static void case_if_at(const char *url)
{
	struct storage *a = open_store(url), *b = open_store(url);
	uint64_t id, seq;

	CHECK_EQ_INT(storage_create(a, "numbered", 1, CREATE, strlen(CREATE), &id), 0);
	seq = 1;
	CHECK_EQ_INT(storage_append(a, id, JOURNAL_USER, "2", 1, STORAGE_IF_AT, &seq), 0);
	CHECK_EQ_INT((int)seq, 2);
	seq = 1; /* b has not seen seq 2 */
	CHECK_EQ_INT(storage_append(b, id, JOURNAL_USER, "x", 1, STORAGE_IF_AT, &seq), -EAGAIN);
	CHECK_EQ_INT(
	    storage_append(b, id, JOURNAL_USER, "x", 1, STORAGE_IF_AT | STORAGE_COMMIT, &seq),
	    -EAGAIN);
	CHECK_EQ_INT(storage_append(b, id, JOURNAL_USER, "x", 1, STORAGE_IF_AT, NULL), -EINVAL);
	seq = 0;
	CHECK_EQ_INT(storage_append(b, 999999, JOURNAL_USER, "x", 1, STORAGE_IF_AT, &seq), -ENOENT);
	seq = 2; /* caught up */
	CHECK_EQ_INT(storage_append(b, id, JOURNAL_USER, "3", 1, STORAGE_IF_AT, &seq), 0);
	CHECK_EQ_INT((int)seq, 3);

	struct numberer wa = {a, id, 0}, wb = {b, id, 0};
	pthread_t ta, tb;
	pthread_create(&ta, NULL, numberer_run, &wa);
	pthread_create(&tb, NULL, numberer_run, &wb);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	uint64_t last = 0;
	int bad = 0;
	CHECK_EQ_INT(storage_load(a, id, 0, 0, seq_matches, &bad, &last), 0);
	CHECK_EQ_INT((int)last, 3 + 2 * IF_AT_WRITES);
	CHECK_EQ_INT(bad, 0);
	printf("# if_at: %d + %d numbered again after -EAGAIN\n", wa.retries, wb.retries);
	storage_free(a);
	storage_free(b);
}

#define WRITES 50 /* appends per writer in case_concurrent */

struct writer {
	const char *url;
	uint64_t id;
	int who;
	int err;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct storage *s = open_store(w->url);
	char payload[32];

	for (int i = 1; i <= WRITES && !w->err; i++) {
		int n = snprintf(payload, sizeof(payload), "{\"w\":%d,\"i\":%d}", w->who, i);
		w->err = storage_append(s, w->id, JOURNAL_USER, payload, (size_t)n, STORAGE_COMMIT,
					NULL);
	}
	storage_free(s);
	return NULL;
}

struct order {
	uint64_t next_seq;
	int next_i[2];
	int bad;
};

static int on_ordered(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	struct order *o = data;
	int who = -1, i = 0;

	o->bad += seq != o->next_seq++;
	if (type != JOURNAL_USER)
		return 0;
	if (sscanf((const char *)payload, "{\"w\":%d,\"i\":%d}", &who, &i) != 2 || who < 0 ||
	    who > 1 || i != o->next_i[who] + 1)
		o->bad++;
	else
		o->next_i[who] = i;
	return 0;
}

/* two daemons append to one context at once: every record kept, one order
 * (seqs without gaps), each daemon's records in the order it wrote them */
static void case_concurrent(const char *url)
{
	struct storage *s = open_store(url);
	struct writer w[2] = {{url, 0, 0, 0}, {url, 0, 1, 0}};
	pthread_t t[2];
	struct order o = {1, {0, 0}, 0};
	uint64_t id, last = 0;

	CHECK_EQ_INT(storage_create(s, "busy", 1, CREATE, strlen(CREATE), &id), 0);
	for (int k = 0; k < 2; k++) {
		w[k].id = id;
		CHECK_EQ_INT(pthread_create(&t[k], NULL, writer_main, &w[k]), 0);
	}
	for (int k = 0; k < 2; k++) {
		pthread_join(t[k], NULL);
		CHECK_EQ_INT(w[k].err, 0);
	}
	CHECK_EQ_INT(storage_load(s, id, 0, 0, on_ordered, &o, &last), 0);
	CHECK_EQ_INT(last, 2 * WRITES + 1);
	CHECK_EQ_INT(o.bad, 0);
	CHECK_EQ_INT(o.next_i[0], WRITES);
	CHECK_EQ_INT(o.next_i[1], WRITES);
	storage_free(s);
}

#define RESTART_MAX 8192 /* appends at most: 20 ms apart, more than the 90 s allowed */

struct acked {
	char seen[RESTART_MAX];
	int dup;
};

static int on_acked(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	struct acked *k = data;
	int i = 0;

	if (type == JOURNAL_USER && sscanf((const char *)payload, "{\"i\":%d}", &i) == 1 && i > 0 &&
	    i < RESTART_MAX) {
		k->dup += k->seen[i];
		k->seen[i] = 1;
	}
	return 0;
}

/* appends through a server crash and restart: -EIO while it is down, then the
 * engine reconnects, and every acknowledged record is there */
static void case_restart(const char *url)
{
	struct storage *s = open_store(url);
	char ok[RESTART_MAX] = {0}, payload[32], st[256];
	int acked = 0, errors = 0, after = 0, first_err = 0, i;
	uint64_t id;
	int64_t end = clock_mono_ms() + 90000;

	CHECK_EQ_INT(storage_create(s, "durable", 1, CREATE, strlen(CREATE), &id), 0);
	for (i = 1; i < RESTART_MAX && clock_mono_ms() < end && after < 20; i++) {
		int n = snprintf(payload, sizeof(payload), "{\"i\":%d}", i);
		int err =
		    storage_append(s, id, JOURNAL_USER, payload, (size_t)n, STORAGE_COMMIT, NULL);
		if (err == 0) {
			ok[i] = 1;
			acked++;
			after += errors > 0;
		} else {
			if (!errors++) {
				first_err = err;
				pg_store_status(s, st, sizeof(st));
				printf("ERROR %d %s\n", err, st);
				CHECK(strncmp(st, "unreachable: ", 13) == 0);
			}
			sleep_ms(50);
		}
		if (i == 20) {
			printf("READY\n");
			fflush(stdout);
		}
		if (errors == 0 && i >= 20)
			sleep_ms(20); /* keep appending until the driver restarts the server */
	}
	printf("acked %d, failed %d\n", acked, errors);
	CHECK(errors > 0);
	CHECK_EQ_INT(first_err, -EIO);
	CHECK_EQ_INT(after, 20);
	pg_store_status(s, st, sizeof(st));
	CHECK_EQ_STR(st, "ok");

	struct acked k = {{0}, 0};
	CHECK_EQ_INT(storage_load(s, id, 0, 0, on_acked, &k, NULL), 0);
	int lost = 0;
	for (int j = 1; j < RESTART_MAX; j++)
		lost += ok[j] && !k.seen[j];
	CHECK_EQ_INT(lost, 0);
	CHECK_EQ_INT(k.dup, 0);
	storage_free(s);
}

/* start-up with an unreachable or invalid URL: one line, password masked */
static int case_unreachable(const char *url)
{
	char why[512];
	struct storage *s = NULL;
	int err = pg_store_new(url, why, sizeof(why), &s);

	printf("%d\n%s\n", err, why); /* test_pg_store.py checks them */
	CHECK(err < 0);
	CHECK(s == NULL);
	return check_report();
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: test_pg_store "
				"basic|feed|lost|concurrent|lease|if_at|restart|unreachable URL\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(argv[1], "basic") == 0)
		case_basic(argv[2]);
	else if (strcmp(argv[1], "feed") == 0)
		case_feed(argv[2]);
	else if (strcmp(argv[1], "lost") == 0)
		case_lost(argv[2]);
	else if (strcmp(argv[1], "concurrent") == 0)
		case_concurrent(argv[2]);
	else if (strcmp(argv[1], "lease") == 0)
		case_lease(argv[2]);
	else if (strcmp(argv[1], "if_at") == 0)
		case_if_at(argv[2]);
	else if (strcmp(argv[1], "restart") == 0)
		case_restart(argv[2]);
	else if (strcmp(argv[1], "unreachable") == 0)
		return case_unreachable(argv[2]);
	else
		return 2;
	return check_report();
}
