/* test_storage_copy.c — storage_copy (storage_copy.h) between two in-memory
 * engines (storage.h): a whole copy, idempotence, a copy stopped by a failing
 * append resumed by the next, a name taken by another context, a context
 * changed in the target. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mcpfs/storage_copy.h"

static const char CREATE[] = "{\"v\":1,\"created_ms\":7}";

struct notes {
	int n;
	char line[16][160];
};

static void on_note(void *data, const char *name, enum storage_copy_outcome what, const char *why)
{
	struct notes *t = data;
	if (t->n < 16)
		snprintf(t->line[t->n++], sizeof(t->line[0]), "%s %d %s", name, (int)what,
			 why ? why : "");
}

static uint64_t add(struct storage *s, const char *name, int records)
{
	uint64_t id = 0;
	CHECK_EQ_INT(storage_create(s, name, 7, CREATE, strlen(CREATE), &id), 0);
	for (int i = 2; i <= records; i++) {
		char p[32];
		int n = snprintf(p, sizeof(p), "{\"%s\":%d}", name, i);
		CHECK_EQ_INT(storage_append(s, id, JOURNAL_USER, p, (size_t)n,
					    i == records ? STORAGE_COMMIT : 0, NULL),
			     0);
	}
	return id;
}

struct find {
	const char *name;
	uint64_t id;
};

static int find_fn(void *data, const struct storage_context *sc)
{
	struct find *f = data;
	if (strcmp(sc->name, f->name) == 0)
		f->id = sc->id;
	return 0;
}

static int count_fn(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	(*(int *)data)++;
	return 0;
}

/* Records of the context called name, -1 when there is none. */
static int count(struct storage *s, const char *name)
{
	struct find f = {name, 0};
	int n = 0;
	storage_list(s, find_fn, &f);
	if (!f.id)
		return -1;
	storage_load(s, f.id, 0, 0, count_fn, &n, NULL);
	return n;
}

int main(void)
{
	struct storage *from, *to;
	struct storage_copy_report rep;
	struct notes t = {0};
	char why[256];

	CHECK_EQ_INT(storage_mem_new(&from), 0);
	CHECK_EQ_INT(storage_mem_new(&to), 0);
	add(from, "long", 2 * STORAGE_COPY_COMMIT_EVERY + 3);
	add(from, "short", 2);

	/* an append fails half-way: the copy stops with the error ... */
	storage_mem_fail(to, "append", -EIO, 1, 0);
	CHECK_EQ_INT(storage_copy(from, to, NULL, NULL, &rep, why, sizeof(why)), -EIO);
	CHECK_EQ_INT(count(to, "long"), 1); /* created, its first append refused */
	storage_mem_fail(to, NULL, 0, 0, 0);
	/* ... and the next resumes or copies, to the whole */
	CHECK_EQ_INT(storage_copy(from, to, on_note, &t, &rep, why, sizeof(why)), 0);
	CHECK_EQ_INT(count(to, "long"), 2 * STORAGE_COPY_COMMIT_EVERY + 3);
	CHECK_EQ_INT(count(to, "short"), 2);
	CHECK_EQ_INT(rep.skipped, 0);
	CHECK_EQ_INT(rep.resumed, 1);
	CHECK_EQ_INT(rep.copied, 1);
	CHECK_EQ_INT(t.n, 2);
	/* again: nothing to do */
	CHECK_EQ_INT(storage_copy(from, to, NULL, NULL, &rep, why, sizeof(why)), 0);
	CHECK_EQ_INT(rep.present, 2);
	CHECK_EQ_INT(rep.records, 0);

	/* a name the target gives another context; one changed in the target */
	struct storage *other;
	CHECK_EQ_INT(storage_mem_new(&other), 0);
	uint64_t id;
	CHECK_EQ_INT(storage_create(other, "short", 7, "{}", 2, &id), 0);
	id = add(other, "long", 3);
	CHECK_EQ_INT(storage_append(other, id, JOURNAL_USER, "x", 1, STORAGE_COMMIT, NULL), 0);
	memset(&t, 0, sizeof(t));
	CHECK_EQ_INT(storage_copy(from, other, on_note, &t, &rep, why, sizeof(why)), 0);
	CHECK_EQ_INT(rep.skipped, 2);
	CHECK(strstr(t.line[0], "taken") || strstr(t.line[1], "taken"));
	CHECK(strstr(t.line[0], "differs") || strstr(t.line[1], "differs"));
	CHECK_EQ_INT(count(other, "short"), 1);
	CHECK_EQ_INT(count(other, "long"), 4);
	storage_free(other);
	storage_free(from);
	storage_free(to);
	return check_report();
}
