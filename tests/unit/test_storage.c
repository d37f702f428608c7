/* test_storage.c — storage.h's contract, the same checks against both engines
 * of this tree (the state directory and the in-memory one), then what only
 * the state directory has: a torn tail repaired at open, parked descriptors,
 * a hidden context in trash/, the files behind each call. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "mcpfs/storage.h"
#include "store_env.h"

struct got {
	uint64_t seq[16];
	uint16_t type[16];
	char text[16][32];
	int n;
};

static int on_rec(void *data, uint64_t seq, uint16_t type, const void *p, size_t len)
{
	struct got *g = data;
	if (g->n == 16)
		return -E2BIG;
	g->seq[g->n] = seq;
	g->type[g->n] = type;
	snprintf(g->text[g->n], sizeof(g->text[0]), "%.*s", (int)len, (const char *)p);
	g->n++;
	return 0;
}

struct names {
	char v[8][32];
	uint64_t id[8];
	int n;
};

static int on_ctx(void *data, const struct storage_context *c)
{
	struct names *n = data;
	if (n->n < 8) {
		snprintf(n->v[n->n], sizeof(n->v[0]), "%s", c->name);
		n->id[n->n++] = c->id;
	}
	return 0;
}

static int listed(struct storage *s, const char *name, uint64_t *id)
{
	struct names n = {0};
	storage_list(s, on_ctx, &n);
	for (int i = 0; i < n.n; i++)
		if (!strcmp(n.v[i], name)) {
			if (id)
				*id = n.id[i];
			return 1;
		}
	return 0;
}

static void append(struct storage *s, uint64_t id, const char *text, unsigned flags,
		   uint64_t want_seq)
{
	uint64_t seq = 0;
	CHECK_EQ_INT(storage_append(s, id, JOURNAL_USER, text, strlen(text), flags, &seq), 0);
	CHECK_EQ_INT(seq, want_seq);
}

/* The contract, whatever the engine. */
static void conformance(struct storage *s, const char *what)
{
	printf("-- %s\n", what);
	uint64_t a = 0, b = 0, h = 0, x;
	CHECK_EQ_INT(storage_create(s, "alpha", 1000, "{\"c\":1}", 7, &a), 0);
	CHECK_EQ_INT(storage_create(s, "beta", 2000, "{\"c\":2}", 7, &b), 0);
	CHECK(a && b && a != b);
	CHECK_EQ_INT(storage_create(s, "alpha", 3000, "{}", 2, &x), -EEXIST);
	CHECK(listed(s, "alpha", NULL) && listed(s, "beta", NULL));

	/* seq order, load after/max, last */
	append(s, a, "one", 0, 2);
	append(s, a, "two", STORAGE_COMMIT, 3);
	append(s, a, "three", 0, 4);
	CHECK_EQ_INT(storage_sync(s, a), 0);
	struct got g = {0};
	uint64_t last = 0;
	CHECK_EQ_INT(storage_load(s, a, 0, 0, on_rec, &g, &last), 0);
	CHECK_EQ_INT(g.n, 4);
	CHECK_EQ_INT(last, 4);
	CHECK_EQ_INT(g.type[0], JOURNAL_CREATE);
	CHECK_EQ_STR(g.text[0], "{\"c\":1}");
	CHECK_EQ_STR(g.text[3], "three");
	for (int i = 0; i < g.n; i++)
		CHECK_EQ_INT(g.seq[i], i + 1);
	memset(&g, 0, sizeof(g));
	CHECK_EQ_INT(storage_load(s, a, 1, 2, on_rec, &g, &last), 0);
	CHECK_EQ_INT(g.n, 2);
	CHECK_EQ_STR(g.text[0], "one");
	CHECK_EQ_INT(g.seq[1], 3);
	CHECK_EQ_INT(last, 3);
	memset(&g, 0, sizeof(g));
	CHECK_EQ_INT(storage_load(s, a, 4, 0, on_rec, &g, &last), 0);
	CHECK_EQ_INT(g.n, 0);
	CHECK_EQ_INT(last, 4);

	/* tail: the newest records, in order */
	memset(&g, 0, sizeof(g));
	CHECK_EQ_INT(storage_tail(s, a, 1 << 16, on_rec, &g), 0);
	CHECK(g.n >= 1 && !strcmp(g.text[g.n - 1], "three"));
	memset(&g, 0, sizeof(g));
	CHECK_EQ_INT(storage_tail(s, a, 1, on_rec, &g), 0);
	CHECK(g.n >= 1 && !strcmp(g.text[g.n - 1], "three"));

	/* open after a load: appends go on after the last record */
	struct storage_report rep;
	CHECK_EQ_INT(storage_open(s, a, &rep), 0);
	CHECK_EQ_INT(rep.torn_bytes, 0);
	append(s, a, "four", STORAGE_COMMIT, 5);

	/* rename, EEXIST, ENOENT */
	CHECK_EQ_INT(storage_rename(s, a, "beta"), -EEXIST);
	CHECK_EQ_INT(storage_rename(s, a, "gamma"), 0);
	CHECK(!listed(s, "alpha", NULL) && listed(s, "gamma", &x) && x == a);
	append(s, a, "five", STORAGE_COMMIT, 6);
	CHECK_EQ_INT(storage_create(s, "alpha", 3000, "{}", 2, &x), 0); /* the old name is free */
	CHECK_EQ_INT(storage_remove(s, x), 0);
	CHECK_EQ_INT(storage_remove(s, b), 0);
	CHECK(!listed(s, "beta", NULL));
	CHECK_EQ_INT(storage_remove(s, b), -ENOENT);
	CHECK_EQ_INT(storage_append(s, b, JOURNAL_USER, "x", 1, 0, NULL), -ENOENT);
	CHECK_EQ_INT(storage_sync(s, b), -ENOENT);
	CHECK_EQ_INT(storage_load(s, b, 0, 0, on_rec, &g, NULL), -ENOENT);
	CHECK_EQ_INT(storage_rename(s, b, "delta"), -ENOENT);
	CHECK_EQ_INT(storage_create(s, "beta", 3000, "{}", 2, &x), 0);
	CHECK(x != b); /* ids are never reused */

	/* a hidden context: not listed until named */
	CHECK_EQ_INT(storage_create(s, NULL, 4000, "{\"h\":1}", 7, &h), 0);
	append(s, h, "copied", 0, 2);
	CHECK_EQ_INT(storage_sync(s, h), 0);
	struct names n = {0};
	storage_list(s, on_ctx, &n);
	CHECK_EQ_INT(n.n, 2); /* gamma and the new beta: not the hidden one */
	CHECK_EQ_INT(storage_rename(s, h, "gamma"), -EEXIST);
	CHECK_EQ_INT(storage_rename(s, h, "fork"), 0);
	CHECK(listed(s, "fork", &x) && x == h);
	memset(&g, 0, sizeof(g));
	CHECK_EQ_INT(storage_load(s, h, 0, 0, on_rec, &g, NULL), 0);
	CHECK_EQ_INT(g.n, 2);
	CHECK_EQ_STR(g.text[1], "copied");

	/* EFBIG: nothing written */
	char *big = malloc(STORAGE_MAX_RECORD + 1u);
	if (big) {
		memset(big, 'x', STORAGE_MAX_RECORD + 1u);
		CHECK_EQ_INT(
		    storage_append(s, h, JOURNAL_USER, big, STORAGE_MAX_RECORD + 1u, 0, NULL),
		    -EFBIG);
		CHECK_EQ_INT(storage_create(s, "huge", 1, big, STORAGE_MAX_RECORD + 1u, &x),
			     -EFBIG);
		CHECK(!listed(s, "huge", NULL));
		free(big);
	}
	append(s, h, "after", 0, 3);

	/* defaults */
	void *d = NULL;
	size_t len = 0;
	CHECK_EQ_INT(storage_defaults_get(s, &d, &len), -ENOENT);
	CHECK_EQ_INT(storage_defaults_set(s, "model = x\n", 10), 0);
	CHECK_EQ_INT(storage_defaults_get(s, &d, &len), 0);
	CHECK_EQ_INT(len, 10);
	CHECK(d && !memcmp(d, "model = x\n", 10) && ((char *)d)[10] == '\0');
	free(d);

	/* the side file */
	CHECK_EQ_INT(storage_meta_get(s, h, &d, &len), -ENODATA);
	CHECK_EQ_INT(storage_meta_set(s, h, "{\"k\":\"v\"}", 9), 0);
	CHECK_EQ_INT(storage_rename(s, h, "fork2"), 0); /* it follows its context */
	CHECK_EQ_INT(storage_meta_get(s, h, &d, &len), 0);
	CHECK(len == 9 && !memcmp(d, "{\"k\":\"v\"}", 9));
	free(d);
	CHECK_EQ_INT(storage_meta_set(s, h, NULL, 0), 0);
	CHECK_EQ_INT(storage_meta_get(s, h, &d, &len), -ENODATA);
	CHECK_EQ_INT(storage_meta_set(s, b, "x", 1), -ENOENT);

	/* reserve: grow, shrink, give back */
	CHECK_EQ_INT(storage_reserve(s, 8192), 0);
	CHECK_EQ_INT(storage_reserve(s, 4096), 0);
	CHECK_EQ_INT(storage_reserve(s, 0), 0);
	CHECK_EQ_INT(storage_failed(s, h), 0);
}

/* --- the in-memory engine's fault hook ----------------------------------------- */

static void mem_faults(void)
{
	struct storage *s = NULL;
	uint64_t id;
	CHECK_EQ_INT(storage_mem_new(&s), 0);
	CHECK_EQ_INT(storage_create(s, "c", 1, "{}", 2, &id), 0);
	append(s, id, "kept", STORAGE_COMMIT, 2);
	append(s, id, "lost", 0, 3);
	storage_mem_fail(s, "sync", -EIO, 1, 0);
	CHECK_EQ_INT(storage_sync(s, id), -EIO);
	CHECK_EQ_INT(storage_failed(s, id), 0); /* recovered */
	struct got g = {0};
	CHECK_EQ_INT(storage_load(s, id, 0, 0, on_rec, &g, NULL), 0);
	CHECK_EQ_INT(g.n, 2);
	append(s, id, "again", 0, 3);
	storage_mem_fail(s, "sync", -ENOSPC, 1, -EIO);
	CHECK_EQ_INT(storage_sync(s, id), -ENOSPC);
	CHECK_EQ_INT(storage_failed(s, id), -EIO); /* not recovered */
	CHECK_EQ_INT(storage_append(s, id, JOURNAL_USER, "x", 1, 0, NULL), -EIO);
	storage_mem_fail(s, NULL, 0, 0, 0);
	append(s, id, "x", 0, 3);
	CHECK_EQ_INT(storage_failed(s, id), 0);
	storage_mem_fail(s, "append", -ENOSPC, 1, 0);
	CHECK_EQ_INT(storage_append(s, id, JOURNAL_USER, "y", 1, 0, NULL), -ENOSPC);
	append(s, id, "y", 0, 4);
	storage_free(s);
}

/* --- the state directory only ---------------------------------------------------- */

static char path_buf[4300];
static const char *at(const char *dir, const char *rel)
{
	snprintf(path_buf, sizeof(path_buf), "%s/%s", dir, rel);
	return path_buf;
}

static void dir_only(const char *dir)
{
	char why[256] = "";
	struct storage *s = NULL;
	uint64_t id, other;
	CHECK_EQ_INT(storage_dir_new(dir, 0, &s, why, sizeof(why)), 0);
	/* one daemon per directory */
	struct storage *s2 = NULL;
	CHECK_EQ_INT(storage_dir_new(dir, 0, &s2, why, sizeof(why)), -EBUSY);
	CHECK(strstr(why, "in use by another mcpfs") != NULL);

	/* the files behind the calls */
	CHECK_EQ_INT(storage_create(s, "torn", 1, "{}", 2, &id), 0);
	struct stat st;
	CHECK_EQ_INT(stat(at(dir, "contexts/torn/journal"), &st), 0);
	CHECK_EQ_INT(storage_create(s, NULL, 1, "{}", 2, &other), 0);
	char rel[64];
	snprintf(rel, sizeof(rel), "trash/new-%llu/journal", (unsigned long long)other);
	CHECK_EQ_INT(stat(at(dir, rel), &st), 0);
	CHECK_EQ_INT(storage_defaults_set(s, "a = b\n", 6), 0);
	CHECK_EQ_INT(stat(at(dir, "config"), &st), 0);
	append(s, id, "whole", STORAGE_COMMIT, 2);
	storage_free(s);

	/* restart: the hidden one is gone, a torn tail is repaired at open */
	int fd = open(at(dir, "contexts/torn/journal"), O_WRONLY | O_APPEND);
	CHECK(fd >= 0 && write(fd, "\x10\x00\x00\x00garbage", 11) == 11);
	if (fd >= 0)
		close(fd);
	CHECK_EQ_INT(storage_dir_new(dir, 2, &s, why, sizeof(why)), 0);
	CHECK_EQ_INT(stat(at(dir, rel), &st), -1);
	CHECK(listed(s, "torn", &id));
	struct got g = {0};
	CHECK_EQ_INT(storage_load(s, id, 0, 0, on_rec, &g, NULL), 0);
	CHECK_EQ_INT(g.n, 2);
	struct storage_report rep;
	CHECK_EQ_INT(storage_open(s, id, &rep), 0);
	CHECK_EQ_INT(rep.torn_bytes, 11);
	CHECK_EQ_INT(rep.records, 2);
	append(s, id, "after", STORAGE_COMMIT, 3);
	memset(&g, 0, sizeof(g));
	CHECK_EQ_INT(storage_load(s, id, 0, 0, on_rec, &g, NULL), 0);
	CHECK_EQ_INT(g.n, 3);

	/* a context whose directory has no journal (a crash): -ENODATA, then the
	 * first append makes it */
	CHECK_EQ_INT(mkdir(at(dir, "contexts/bare"), 0700), 0);
	storage_free(s);
	CHECK_EQ_INT(storage_dir_new(dir, 2, &s, why, sizeof(why)), 0);
	uint64_t bare;
	CHECK(listed(s, "bare", &bare));
	CHECK_EQ_INT(storage_load(s, bare, 0, 0, on_rec, &g, NULL), -ENODATA);
	CHECK_EQ_INT(storage_open(s, bare, NULL), -ENODATA);
	uint64_t seq = 0;
	CHECK_EQ_INT(storage_append(s, bare, JOURNAL_CREATE, "{}", 2, STORAGE_COMMIT, &seq), 0);
	CHECK_EQ_INT(seq, 1);

	/* parking: at most 2 journals open; a parked one reopens when used, at
	 * its new name after a rename */
	uint64_t ids[4];
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof(name), "p%d", i);
		CHECK_EQ_INT(storage_create(s, name, 1, "{}", 2, &ids[i]), 0);
		CHECK(storage_dir_open_journals(s) <= 2);
	}
	CHECK_EQ_INT(storage_rename(s, ids[0], "p0-renamed"), 0);
	append(s, ids[0], "back", STORAGE_COMMIT, 2);
	CHECK(storage_dir_open_journals(s) <= 2);
	CHECK_EQ_INT(stat(at(dir, "contexts/p0-renamed/journal"), &st), 0);
	CHECK_EQ_INT((int)st.st_size > 0, 1);
	int cfd = storage_dir_context_fd(s, ids[0]);
	CHECK(cfd >= 0);
	if (cfd >= 0)
		close(cfd);
	CHECK(s->ops->blob_put != NULL);
	CHECK(storage_dir_fd(s) >= 0);
	CHECK(storage_dir_path(s) && storage_dir_path(s)[0] == '/');

	/* remove: the directory goes (through trash/) */
	CHECK_EQ_INT(storage_remove(s, ids[1]), 0);
	CHECK_EQ_INT(stat(at(dir, "contexts/p1"), &st), -1);
	storage_free(s);
}

/* --- the store on the in-memory engine, its faults through the seam --------------- */

static void store_faults(void)
{
	struct env e;
	env_init(&e); /* the in-memory engine */
	uint64_t id = make(&e, "c");
	say(&e, id, "one");
	reply(&e, last_call(&e), "first", 1, 1);

	/* A commit the engine refuses: the writer hears it, nothing is sent. */
	size_t calls = e.fake.n;
	storage_mem_fail(e.mem, "append", -ENOSPC, 1, 0);
	struct reply *draft = NULL;
	CHECK_EQ_INT(context_stage(e.s, id, &draft, "two", 3, e.why, sizeof(e.why)), -ENOSPC);
	context_submit(e.s, draft);
	CHECK_EQ_INT(e.fake.n, calls);

	/* A failed sync of a reply's end: the reply fails, status says so, and
	 * the engine's recovery is reported; the end is written again. */
	say(&e, id, "three");
	storage_mem_fail(e.mem, "sync", -EIO, 1, 0);
	reply(&e, last_call(&e), "lost", 1, 1);
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(has(st, "journal_fsync: failed at"));
	CHECK(has(st, "recovered: what it had not saved was truncated"));
	CHECK(has(view(&e, id, VIEW_TRANSCRIPT), "the reply could not be saved"));

	/* A failed sync whose recovery fails too: not recovered yet, until an
	 * append works again. */
	say(&e, id, "four");
	storage_mem_fail(e.mem, "sync", -EIO, 1, -EROFS);
	reply(&e, last_call(&e), "lost again", 1, 1);
	CHECK(has(view(&e, id, VIEW_STATUS), "not recovered yet"));
	storage_mem_fail(e.mem, NULL, 0, 0, 0);
	say(&e, id, "five");
	CHECK(has(view(&e, id, VIEW_STATUS), "recovered: what it had not saved"));

	/* A restart on the same engine: what was committed loads. */
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "c", &id), 0);
	CHECK(has(view(&e, id, VIEW_TRANSCRIPT), "first"));
	CHECK(has(view(&e, id, VIEW_TRANSCRIPT), "five"));
	env_done(&e);
}

int main(void)
{
	struct storage *s = NULL;
	CHECK_EQ_INT(storage_mem_new(&s), 0);
	if (s)
		conformance(s, "in-memory engine");
	storage_free(s);

	char dir[] = "/tmp/mcpfs-storage-XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	char why[256] = "";
	s = NULL;
	CHECK_EQ_INT(storage_dir_new(dir, 0, &s, why, sizeof(why)), 0);
	if (s)
		conformance(s, "state-dir engine");
	storage_free(s);
	rm_rf(dir);

	mem_faults();
	store_faults();

	char dir2[] = "/tmp/mcpfs-storage-XXXXXX";
	if (mkdtemp(dir2)) {
		dir_only(dir2);
		rm_rf(dir2);
	}
	return check_report();
}
