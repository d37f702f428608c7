/* test_pg_side.c — the PostgreSQL engine's part of storage.h beyond records
 * (src/pg/pg_side.c and the hidden contexts of pg_store.c) against a real server.
 *
 * Run by tests/integration/test_pg_store.py with the URL of its server:
 *     test_pg_side CASE URL
 * CASE is hidden, tail, meta or sweep; and
 *     test_pg_side copy URL URL2
 * copies between two databases (storage_copy.c).  Exits 0 when every check passed and
 * prints "N passed, M failed".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/check.h"
#include "mcpfs/clock.h"
#include "mcpfs/pg.h"
#include "mcpfs/storage_copy.h"

static const char CREATE[] = "{\"v\":1,\"created_ms\":1,\"settings\":{},\"system\":\"\"}";

static struct storage *open_store(const char *url)
{
	char why[512];
	struct storage *s = NULL;

	if (pg_store_new(url, why, sizeof(why), &s) < 0) {
		fprintf(stderr, "pg_store_new: %s\n", why);
		exit(2);
	}
	return s;
}

struct seen {
	int n;
	uint64_t id[32];
	char name[32][32];
};

static int on_context(void *data, const struct storage_context *c)
{
	struct seen *w = data;
	if (w->n < 32) {
		w->id[w->n] = c->id;
		snprintf(w->name[w->n++], sizeof(w->name[0]), "%s",
			 c->name ? c->name : "(deleted)");
	}
	return 0;
}

static int seen_id(const struct seen *w, uint64_t id)
{
	for (int i = 0; i < w->n; i++)
		if (w->id[i] == id)
			return i;
	return -1;
}

struct recs {
	int n;
	uint64_t seq[32];
	size_t len[32];
};

static int on_record(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	struct recs *r = data;
	if (r->n < 32) {
		r->seq[r->n] = seq;
		r->len[r->n++] = len;
	}
	return 0;
}

/* A context created without a name: not listed, not in changes(), loadable
 * and appendable by id; named by rename it appears (in list and changes); a
 * name taken stays -EEXIST; removed, it is gone. */
static void case_hidden(const char *url)
{
	struct storage *s = open_store(url);
	uint64_t h, a, seq = 0, next = 0, pos = 0;
	struct seen w = {0};
	struct recs r = {0};

	CHECK_EQ_INT(storage_changes(s, 0, 0, on_context, &w, &pos), 0);
	CHECK_EQ_INT(storage_create(s, "a", 1000, CREATE, strlen(CREATE), &a), 0);
	CHECK_EQ_INT(storage_create(s, NULL, 1000, CREATE, strlen(CREATE), &h), 0);
	CHECK_EQ_INT(storage_create(s, NULL, 1000, CREATE, strlen(CREATE), &seq), 0);
	CHECK(h != a && seq != h);
	CHECK_EQ_INT(storage_append(s, h, JOURNAL_USER, "{}", 2, STORAGE_COMMIT, &seq), 0);
	CHECK_EQ_INT(seq, 2);
	CHECK_EQ_INT(storage_load(s, h, 0, 0, on_record, &r, NULL), 0);
	CHECK_EQ_INT(r.n, 2);
	CHECK_EQ_INT(storage_list(s, on_context, &w), 0);
	CHECK_EQ_INT(w.n, 1);
	CHECK(seen_id(&w, h) < 0);
	memset(&w, 0, sizeof(w));
	CHECK_EQ_INT(storage_changes(s, pos, 0, on_context, &w, &next), 0);
	CHECK_EQ_INT(w.n, 1); /* "a" only */
	CHECK(seen_id(&w, a) == 0);

	CHECK_EQ_INT(storage_rename(s, h, "a"), -EEXIST);
	CHECK_EQ_INT(storage_rename(s, h, "fork"), 0);
	memset(&w, 0, sizeof(w));
	CHECK_EQ_INT(storage_list(s, on_context, &w), 0);
	CHECK_EQ_INT(w.n, 2);
	CHECK(seen_id(&w, h) >= 0 && strcmp(w.name[seen_id(&w, h)], "fork") == 0);
	memset(&w, 0, sizeof(w));
	CHECK_EQ_INT(storage_changes(s, next, 0, on_context, &w, &next), 0);
	CHECK_EQ_INT(w.n, 1);
	CHECK(seen_id(&w, h) == 0 && strcmp(w.name[0], "fork") == 0);

	/* a deleted context is a tombstone in changes(), and no rename revives it */
	CHECK_EQ_INT(storage_remove(s, h), 0);
	CHECK_EQ_INT(storage_rename(s, h, "back"), -ENOENT);
	CHECK_EQ_INT(storage_append(s, h, JOURNAL_USER, "{}", 2, STORAGE_COMMIT, NULL), -ENOENT);
	memset(&w, 0, sizeof(w));
	CHECK_EQ_INT(storage_changes(s, next, 0, on_context, &w, &next), 0);
	CHECK_EQ_INT(w.n, 1);
	CHECK(w.id[0] == h && strcmp(w.name[0], "(deleted)") == 0);
	storage_free(s);
}

/* tail: the newest records that fit in `bytes` (24 counted per record), at
 * least the newest, in order with their seqs. */
static void case_tail(const char *url)
{
	struct storage *s = open_store(url);
	uint64_t id;
	char big[1000];
	struct recs r = {0};

	memset(big, 'x', sizeof(big));
	CHECK_EQ_INT(storage_create(s, "t", 1000, CREATE, strlen(CREATE), &id), 0);
	for (int i = 0; i < 5; i++)
		CHECK_EQ_INT(storage_append(s, id, JOURNAL_REPLY_PART, big, 100, 0, NULL), 0);
	CHECK_EQ_INT(
	    storage_append(s, id, JOURNAL_REPLY_END, big, sizeof(big), STORAGE_COMMIT, NULL), 0);
	/* 1 byte: the newest alone, though it is larger */
	CHECK_EQ_INT(storage_tail(s, id, 1, on_record, &r), 0);
	CHECK_EQ_INT(r.n, 1);
	CHECK_EQ_INT(r.seq[0], 7);
	CHECK_EQ_INT(r.len[0], sizeof(big));
	/* the newest (1024) and two of 124 */
	memset(&r, 0, sizeof(r));
	CHECK_EQ_INT(storage_tail(s, id, 1024 + 2 * 124 + 123, on_record, &r), 0);
	CHECK_EQ_INT(r.n, 3);
	CHECK_EQ_INT(r.seq[0], 5);
	CHECK_EQ_INT(r.seq[2], 7);
	/* everything */
	memset(&r, 0, sizeof(r));
	CHECK_EQ_INT(storage_tail(s, id, 1 << 20, on_record, &r), 0);
	CHECK_EQ_INT(r.n, 7);
	for (int i = 0; i < r.n; i++)
		CHECK_EQ_INT(r.seq[i], (uint64_t)i + 1);
	CHECK_EQ_INT(storage_tail(s, 999999, 100, on_record, &r), -ENOENT);
	storage_free(s);
}

/* The side file: -ENODATA until set, whole bytes back, removed by len 0,
 * -EFBIG past STORAGE_MAX_SIDE, -ENOENT for a deleted context. */
static void case_meta(const char *url)
{
	struct storage *s = open_store(url);
	uint64_t id;
	void *out = NULL;
	size_t len = 0;

	CHECK_EQ_INT(storage_create(s, "m", 1000, CREATE, strlen(CREATE), &id), 0);
	CHECK_EQ_INT(storage_meta_get(s, id, &out, &len), -ENODATA);
	CHECK_EQ_INT(storage_meta_set(s, id, "k\0v", 3), 0);
	CHECK_EQ_INT(storage_meta_get(s, id, &out, &len), 0);
	CHECK_EQ_INT(len, 3);
	CHECK(out && memcmp(out, "k\0v", 4) == 0); /* a NUL added */
	free(out);
	char *big = calloc(1, STORAGE_MAX_SIDE + 1);
	CHECK_EQ_INT(storage_meta_set(s, id, big, STORAGE_MAX_SIDE + 1), -EFBIG);
	CHECK_EQ_INT(storage_meta_set(s, id, big, STORAGE_MAX_SIDE), 0);
	free(big);
	CHECK_EQ_INT(storage_meta_set(s, id, "", 0), 0);
	CHECK_EQ_INT(storage_meta_get(s, id, &out, &len), -ENODATA);
	CHECK_EQ_INT(storage_meta_set(s, id, "x", 1), 0);
	CHECK_EQ_INT(storage_remove(s, id), 0);
	CHECK_EQ_INT(storage_meta_get(s, id, &out, &len), -ENOENT);
	CHECK_EQ_INT(storage_meta_set(s, id, "x", 1), -ENOENT);
	storage_free(s);
}

/* A hidden context older than PG_HIDDEN_MAX_AGE_MS is swept at the next
 * start-up (a daemon died building a fork); a young one is not. */
static void case_sweep(const char *url)
{
	struct storage *s = open_store(url);
	uint64_t old, young, named;
	struct recs r = {0};
	int64_t now = clock_wall_ms();

	CHECK_EQ_INT(storage_create(s, NULL, now - PG_HIDDEN_MAX_AGE_MS - 60000, CREATE,
				    strlen(CREATE), &old),
		     0);
	CHECK_EQ_INT(storage_create(s, NULL, now, CREATE, strlen(CREATE), &young), 0);
	CHECK_EQ_INT(storage_create(s, "named", 1, CREATE, strlen(CREATE), &named), 0);
	storage_free(s);
	s = open_store(url);
	CHECK_EQ_INT(storage_load(s, old, 0, 0, on_record, &r, NULL), -ENOENT);
	CHECK_EQ_INT(storage_load(s, young, 0, 0, on_record, &r, NULL), 0);
	CHECK_EQ_INT(storage_load(s, named, 0, 0, on_record, &r, NULL), 0);
	CHECK_EQ_INT(r.n, 2);
	storage_free(s);
}

struct sum {
	uint64_t n, bytes, bad;
};

static int on_sum(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	struct sum *m = data;
	char want[32];
	int n = snprintf(want, sizeof(want), "{\"r\":%llu}", (unsigned long long)seq);
	m->bad += seq != m->n + 1 || (seq > 1 && ((size_t)n != len || memcmp(want, payload, len)));
	m->n++;
	m->bytes += len;
	return 0;
}

/* More records than a batch and than a commit's worth (STORAGE_COPY_BATCH,
 * STORAGE_COPY_COMMIT_EVERY) copied whole, in order; a second copy finds it
 * there (a cut-short one resuming: test_pg_import.py). */
static void case_copy(const char *url, const char *url2)
{
	struct storage *from = open_store(url), *to = open_store(url2);
	struct storage_copy_report rep;
	char why[256] = "";
	uint64_t id, other;
	const uint64_t n = 2 * STORAGE_COPY_COMMIT_EVERY + STORAGE_COPY_BATCH / 2;

	CHECK_EQ_INT(storage_create(from, "long", 5, CREATE, strlen(CREATE), &id), 0);
	CHECK_EQ_INT(storage_create(from, "short", 6, CREATE, strlen(CREATE), &other), 0);
	for (uint64_t i = 2; i <= n; i++) {
		char p[32];
		int len = snprintf(p, sizeof(p), "{\"r\":%llu}", (unsigned long long)i);
		CHECK_EQ_INT(storage_append(from, id, JOURNAL_REPLY_PART, p, (size_t)len,
					    i == n ? STORAGE_COMMIT : 0, NULL),
			     0);
	}
	CHECK_EQ_INT(storage_copy(from, to, NULL, NULL, &rep, why, sizeof(why)), 0);
	CHECK_EQ_INT(rep.copied, 2);
	CHECK_EQ_INT(rep.records, n - 1);
	struct seen w = {0};
	CHECK_EQ_INT(storage_list(to, on_context, &w), 0);
	CHECK_EQ_INT(w.n, 2);
	int at = strcmp(w.name[0], "long") == 0 ? 0 : 1;
	struct sum m = {0};
	CHECK_EQ_INT(storage_load(to, w.id[at], 0, 0, on_sum, &m, NULL), 0);
	CHECK_EQ_INT(m.n, n);
	CHECK_EQ_INT(m.bad, 0);

	CHECK_EQ_INT(storage_copy(from, to, NULL, NULL, &rep, why, sizeof(why)), 0);
	CHECK_EQ_INT(rep.present, 2);
	CHECK_EQ_INT(rep.records, 0);
	storage_free(from);
	storage_free(to);
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "copy") == 0) {
		case_copy(argv[2], argv[3]);
		return check_report();
	}
	if (argc != 3) {
		fprintf(stderr, "usage: test_pg_side hidden|tail|meta|sweep URL\n"
				"       test_pg_side copy URL URL2\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(argv[1], "hidden") == 0)
		case_hidden(argv[2]);
	else if (strcmp(argv[1], "tail") == 0)
		case_tail(argv[2]);
	else if (strcmp(argv[1], "meta") == 0)
		case_meta(argv[2]);
	else if (strcmp(argv[1], "sweep") == 0)
		case_sweep(argv[2]);
	else
		return 2;
	return check_report();
}
