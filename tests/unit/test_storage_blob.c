/* test_storage_blob.c — storage.h's blob_* ops on the in-memory engine and on
 * the state-dir engine (storage_dir_blob.c over blob.h's files): the shared
 * suite (storage_blob_suite.h), then what the state dir keeps on disk: one
 * file per content in STATE/blobs, a hard link per context, none left once no
 * context holds it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcpfs/storage_copy.h"
#include "storage_blob_suite.h"

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)))
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static void on_disk(const char *state)
{
	char why[256], path[512], hex[33];
	struct storage *s = NULL;
	uint64_t a, b;
	const char *data = "shared between two contexts";
	CHECK_EQ_INT(storage_dir_new(state, 0, &s, why, sizeof(why)), 0);
	if (!s)
		return;
	CHECK_EQ_INT(storage_create(s, "x", 1, SUITE_CREATE, strlen(SUITE_CREATE), &a), 0);
	CHECK_EQ_INT(storage_create(s, "y", 1, SUITE_CREATE, strlen(SUITE_CREATE), &b), 0);
	attach_hash(data, strlen(data), hex);
	CHECK_EQ_INT(storage_blob_put(s, a, hex, data, strlen(data)), 0);
	CHECK_EQ_INT(storage_blob_put(s, b, hex, data, strlen(data)), 0);
	struct stat st;
	snprintf(path, sizeof(path), "%s/blobs/%s", state, hex);
	CHECK_EQ_INT(stat(path, &st), 0);
	CHECK_EQ_INT(st.st_nlink, 3); /* STATE/blobs and a link in each context */
	snprintf(path, sizeof(path), "%s/contexts/y/blob-%s", state, hex);
	CHECK_EQ_INT(access(path, F_OK), 0);
	CHECK_EQ_INT(storage_remove(s, a), 0);
	CHECK_EQ_INT(storage_blob_sweep(s, b, suite_keep_none, NULL), 1);
	snprintf(path, sizeof(path), "%s/blobs", state);
	CHECK_EQ_INT(count_files(path), 0);
	storage_free(s);
}

/* storage_copy (--import) copies a context's blobs after its records, and a
 * second copy writes nothing new. */
static void copied(void)
{
	struct storage *from = NULL, *to = NULL;
	struct storage_copy_report rep;
	char why[256], hex[33], buf[32];
	uint64_t id;
	const char *data = "an attachment to import";
	CHECK_EQ_INT(storage_mem_new(&from), 0);
	CHECK_EQ_INT(storage_mem_new(&to), 0);
	if (!from || !to)
		return;
	CHECK_EQ_INT(storage_create(from, "imp", 1, SUITE_CREATE, strlen(SUITE_CREATE), &id), 0);
	attach_hash(data, strlen(data), hex);
	CHECK_EQ_INT(storage_blob_put(from, id, hex, data, strlen(data)), 0);
	for (int round = 0; round < 2; round++) {
		CHECK_EQ_INT(storage_copy(from, to, NULL, NULL, &rep, why, sizeof(why)), 0);
		CHECK_EQ_INT(rep.copied + rep.present, 1);
		CHECK_EQ_INT(storage_blob_stat(to, 1, hex, strlen(data)), 0);
		memset(buf, 0, sizeof(buf));
		CHECK_EQ_INT(storage_blob_read(to, 1, hex, buf, sizeof(buf), 0),
			     (long)strlen(data));
		CHECK_EQ_STR(buf, data);
	}
	/* a failing put fails the copy, naming the context */
	storage_mem_fail(to, "blob_put", -EIO, 1, 0);
	CHECK_EQ_INT(storage_copy(from, to, NULL, NULL, &rep, why, sizeof(why)), -EIO);
	CHECK(strstr(why, "imp") != NULL);
	storage_free(from);
	storage_free(to);
}

int main(void)
{
	copied();
	struct storage *s = NULL;
	CHECK_EQ_INT(storage_mem_new(&s), 0);
	if (s) {
		blob_suite(s, "mem");
		/* the fault hook reaches blob_put */
		uint64_t id;
		char hex[33];
		attach_hash("z", 1, hex);
		CHECK_EQ_INT(storage_create(s, "f", 1, SUITE_CREATE, strlen(SUITE_CREATE), &id), 0);
		storage_mem_fail(s, "blob_put", -ENOSPC, 1, 0);
		CHECK_EQ_INT(storage_blob_put(s, id, hex, "z", 1), -ENOSPC);
		CHECK_EQ_INT(storage_blob_put(s, id, hex, "z", 1), 0);
		storage_free(s);
	}

	char tmpl[] = "/tmp/mcpfs-blob-XXXXXX";
	char *dir = mkdtemp(tmpl), state[300], why[256];
	CHECK(dir != NULL);
	if (dir) {
		snprintf(state, sizeof(state), "%s/state", dir);
		s = NULL;
		CHECK_EQ_INT(storage_dir_new(state, 0, &s, why, sizeof(why)), 0);
		if (s) {
			blob_suite(s, "dir");
			storage_free(s);
		}
		snprintf(state, sizeof(state), "%s/state2", dir);
		on_disk(state);
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		CHECK_EQ_INT(system(cmd), 0);
	}
	printf("%d passed, %d failed\n", check_passed, check_failed);
	return check_failed ? 1 : 0;
}
