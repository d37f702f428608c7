/* test_pg_blob.c — the PostgreSQL engine's attachment blobs (src/pg/pg_blob.c)
 * against a real server: storage_blob_suite.h's checks, as on the other
 * engines.  Run by tests/integration/test_pg_attach.py:
 *     test_pg_blob URL
 * which then looks at the tables (no content left that no context holds).
 * Exits 0 when every check passed and prints "N passed, M failed". */
#include <stdio.h>
#include <stdlib.h>

#include "../unit/storage_blob_suite.h"
#include "mcpfs/pg.h"

int main(int argc, char **argv)
{
	char why[512];
	struct storage *s = NULL;

	if (argc != 2) {
		fprintf(stderr, "usage: test_pg_blob URL\n");
		return 2;
	}
	if (pg_store_new(argv[1], why, sizeof(why), &s) < 0) {
		fprintf(stderr, "pg_store_new: %s\n", why);
		return 2;
	}
	blob_suite(s, "pg");
	storage_free(s);
	printf("%d passed, %d failed\n", check_passed, check_failed);
	return check_failed ? 1 : 0;
}
