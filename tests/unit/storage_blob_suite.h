/* storage_blob_suite.h — the checks of storage.h's blob_* ops that every engine
 * passes: tests/unit/test_storage_blob.c runs them on the in-memory and the
 * state-dir engines, tests/pg/test_pg_blob.c on PostgreSQL.  Uses check.h. */
#ifndef MCPFS_TEST_STORAGE_BLOB_SUITE_H
#define MCPFS_TEST_STORAGE_BLOB_SUITE_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mcpfs/attach.h"
#include "mcpfs/storage.h"

static const char SUITE_CREATE[] = "{\"v\":1,\"created_ms\":1,\"settings\":{},\"system\":\"\"}";

static bool suite_keep_none(void *data, const char *hex)
{
	(void)data;
	(void)hex;
	return false;
}

static bool suite_keep_one(void *data, const char *hex)
{
	return !strcmp(data, hex);
}

/* Creates contexts named prefix-a and prefix-b; returns through ids. */
static void blob_suite(struct storage *s, const char *prefix)
{
	char na[64], nb[64], ha[33], hb[33], hbig[33], buf[64];
	uint64_t a = 0, b = 0;
	const char *da = "the first attachment's bytes", *db = "another one";
	snprintf(na, sizeof(na), "%s-a", prefix);
	snprintf(nb, sizeof(nb), "%s-b", prefix);
	CHECK_EQ_INT(storage_create(s, na, 1, SUITE_CREATE, strlen(SUITE_CREATE), &a), 0);
	CHECK_EQ_INT(storage_create(s, nb, 1, SUITE_CREATE, strlen(SUITE_CREATE), &b), 0);
	attach_hash(da, strlen(da), ha);
	attach_hash(db, strlen(db), hb);

	/* nothing yet */
	CHECK_EQ_INT(storage_blob_stat(s, a, ha, strlen(da)), -ENOENT);
	CHECK_EQ_INT(storage_blob_read(s, a, ha, buf, sizeof(buf), 0), -ENOENT);

	/* put, idempotent; stat by size; read whole, at an offset, past the end */
	CHECK_EQ_INT(storage_blob_put(s, a, ha, da, strlen(da)), 0);
	CHECK_EQ_INT(storage_blob_put(s, a, ha, da, strlen(da)), 0);
	CHECK_EQ_INT(storage_blob_stat(s, a, ha, strlen(da)), 0);
	CHECK_EQ_INT(storage_blob_stat(s, a, ha, strlen(da) + 1), -EBADMSG);
	CHECK_EQ_INT(storage_blob_stat(s, b, ha, strlen(da)), -ENOENT); /* a's, not b's */
	memset(buf, 0, sizeof(buf));
	CHECK_EQ_INT(storage_blob_read(s, a, ha, buf, sizeof(buf), 0), (long)strlen(da));
	CHECK_EQ_STR(buf, da);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ_INT(storage_blob_read(s, a, ha, buf, 5, 4), 5);
	CHECK_EQ_STR(buf, "first");
	CHECK_EQ_INT(storage_blob_read(s, a, ha, buf, 5, strlen(da)), 0);

	/* the same content put by another context, then linked (a fork) */
	CHECK_EQ_INT(storage_blob_put(s, b, ha, da, strlen(da)), 0);
	CHECK_EQ_INT(storage_blob_stat(s, b, ha, strlen(da)), 0);
	CHECK_EQ_INT(storage_blob_put(s, a, hb, db, strlen(db)), 0);
	CHECK_EQ_INT(storage_blob_link(s, a, b, hb), 0);
	CHECK_EQ_INT(storage_blob_link(s, a, b, hb), 0); /* held already */
	memset(buf, 0, sizeof(buf));
	CHECK_EQ_INT(storage_blob_read(s, b, hb, buf, sizeof(buf), 0), (long)strlen(db));
	CHECK_EQ_STR(buf, db);
	attach_hash("none", 4, hbig);
	CHECK_EQ_INT(storage_blob_link(s, a, b, hbig), -ENOENT);

	/* sweep: a keeps ha only; b still reads hb (its own hold) */
	CHECK_EQ_INT(storage_blob_sweep(s, a, suite_keep_one, ha), 1);
	CHECK_EQ_INT(storage_blob_stat(s, a, hb, strlen(db)), -ENOENT);
	CHECK_EQ_INT(storage_blob_stat(s, a, ha, strlen(da)), 0);
	CHECK_EQ_INT(storage_blob_stat(s, b, hb, strlen(db)), 0);
	CHECK_EQ_INT(storage_blob_sweep(s, a, suite_keep_one, ha), 0);

	/* removing b leaves a's blob; sweeping a drops it */
	CHECK_EQ_INT(storage_remove(s, b), 0);
	CHECK_EQ_INT(storage_blob_stat(s, a, ha, strlen(da)), 0);
	CHECK_EQ_INT(storage_blob_sweep(s, a, suite_keep_none, NULL), 1);
	CHECK_EQ_INT(storage_blob_stat(s, a, ha, strlen(da)), -ENOENT);

	/* a large one (an image's limit), read back in pieces */
	size_t n = 5u << 20;
	char *big = malloc(n), *back = malloc(n);
	CHECK(big && back);
	if (big && back) {
		for (size_t i = 0; i < n; i++)
			big[i] = (char)(i * 7 + i / 4099);
		attach_hash(big, n, hbig);
		CHECK_EQ_INT(storage_blob_put(s, a, hbig, big, n), 0);
		CHECK_EQ_INT(storage_blob_stat(s, a, hbig, n), 0);
		size_t got = 0;
		while (got < n) {
			long r = storage_blob_read(s, a, hbig, back + got, 128 * 1024, got);
			CHECK(r > 0);
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		CHECK(got == n && !memcmp(big, back, n));
	}
	free(big);
	free(back);
	CHECK_EQ_INT(storage_blob_put(s, a, hbig, "x", STORAGE_MAX_BLOB + 1u), -EFBIG);
	CHECK_EQ_INT(storage_blob_put(s, 999999, ha, da, strlen(da)) < 0, 1);
	CHECK_EQ_INT(storage_remove(s, a), 0);
}

#endif
