/* test_storage_if_at.c — storage_append's STORAGE_IF_AT (storage.h) on both
 * engines of this tree: an append conditioned on the context's newest seq
 * goes in only when that seq is the one expected; otherwise -EAGAIN and
 * nothing written, so a caller that numbers a turn from what it has applied
 * catches up and numbers it again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mcpfs/storage.h"
#include "store_env.h"

static int count_rec(void *data, uint64_t seq, uint16_t type, const void *p, size_t len)
{
	(void)seq, (void)type, (void)p, (void)len;
	(*(int *)data)++;
	return 0;
}

static int records(struct storage *s, uint64_t id)
{
	int n = 0;
	CHECK_EQ_INT(storage_load(s, id, 0, 0, count_rec, &n, NULL), 0);
	return n;
}

static void if_at(struct storage *s, const char *engine)
{
	printf("# %s\n", engine);
	uint64_t id = 0, seq;
	CHECK_EQ_INT(storage_create(s, "c", 1, "{}", 2, &id), 0);
	CHECK_EQ_INT(storage_open(s, id, NULL), 0);

	/* at the newest seq (1: the CREATE): appended, *seq the new one */
	seq = 1;
	CHECK_EQ_INT(storage_append(s, id, JOURNAL_USER, "a", 1, STORAGE_IF_AT, &seq), 0);
	CHECK_EQ_INT((int)seq, 2);
	/* another writer's record came first: -EAGAIN, nothing written, *seq kept */
	CHECK_EQ_INT(storage_append(s, id, JOURNAL_USER, "b", 1, 0, NULL), 0);
	seq = 2;
	CHECK_EQ_INT(storage_append(s, id, JOURNAL_USER, "c", 1, STORAGE_IF_AT, &seq), -EAGAIN);
	CHECK_EQ_INT((int)seq, 2);
	CHECK_EQ_INT(records(s, id), 3);
	/* ahead of the context (a seq it never had): -EAGAIN too */
	seq = 9;
	CHECK_EQ_INT(storage_append(s, id, JOURNAL_USER, "c", 1, STORAGE_IF_AT, &seq), -EAGAIN);
	/* caught up: numbered again and appended, committed with the flag */
	seq = 3;
	CHECK_EQ_INT(
	    storage_append(s, id, JOURNAL_USER, "c", 1, STORAGE_IF_AT | STORAGE_COMMIT, &seq), 0);
	CHECK_EQ_INT((int)seq, 4);
	CHECK_EQ_INT(records(s, id), 4);
	/* the flag needs *seq; an unknown context stays -ENOENT */
	CHECK_EQ_INT(storage_append(s, id, JOURNAL_USER, "d", 1, STORAGE_IF_AT, NULL), -EINVAL);
	seq = 0;
	CHECK_EQ_INT(storage_append(s, 999999, JOURNAL_USER, "d", 1, STORAGE_IF_AT, &seq), -ENOENT);
	CHECK_EQ_INT(records(s, id), 4);
	CHECK_EQ_INT(storage_sync(s, id), 0);
}

int main(void)
{
	struct storage *s = NULL;
	CHECK_EQ_INT(storage_mem_new(&s), 0);
	if (s)
		if_at(s, "in-memory engine");
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
		if_at(s, "state-dir engine");
	storage_free(s);
	rm_rf(dir);
	return check_report();
}
