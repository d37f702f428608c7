/* test_meta.c — meta.c: a context's user metadata (CONTRACT §10): every limit and
 * errno, the flags of setxattr, the META journal record, the `meta` file beside the
 * journal that listings read instead of the journal, and what a load does with it;
 * driven through the store's API in store_env.h's world (no FUSE, no HTTP).
 */
#include "mcpfs/meta.h"
#include "store_env.h"

static int set(struct env *e, uint64_t id, const char *key, const char *value, int flags)
{
	return context_meta_set(e->s, id, key, strlen(key), value, strlen(value), flags, e->why,
				sizeof(e->why));
}

/* The value of key, "" when none (a static buffer). */
static const char *get(struct env *e, uint64_t id, const char *key, int *r)
{
	static char out[META_VALUE_MAX + 1];
	struct buf b;
	buf_init(&b, META_VALUE_MAX);
	*r = context_meta_get(e->s, id, key, strlen(key), &b);
	snprintf(out, sizeof(out), "%.*s", (int)b.len, b.data ? b.data : "");
	buf_done(&b);
	return out;
}

static char *file_text(struct env *e, const char *name, const char *file)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/contexts/%s/%s", e->dir, name, file);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	static char text[1 << 16];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	return text;
}

static void file_put(struct env *e, const char *name, const char *file, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/contexts/%s/%s", e->dir, name, file);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void test_set_get_list_remove(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "c");
	int r;
	CHECK_EQ_INT(set(&e, id, "project", "acme", 0), 0);
	CHECK_EQ_INT(set(&e, id, "owner", "ünï", 0), 0);
	CHECK_EQ_STR(get(&e, id, "project", &r), "acme");
	CHECK_EQ_INT(r, 0);
	CHECK_EQ_STR(get(&e, id, "owner", &r), "ünï");
	get(&e, id, "nope", &r);
	CHECK_EQ_INT(r, -ENODATA);
	struct buf b;
	buf_init(&b, 1 << 16);
	CHECK_EQ_INT(context_meta_names(e.s, id, &b), 0);
	CHECK_EQ_INT(b.len, sizeof("user.project\0user.owner"));
	CHECK(b.len && !memcmp(b.data, "user.project\0user.owner\0", b.len));
	buf_done(&b);
	CHECK_EQ_INT(set(&e, id, "project", "", 0), 0); /* an empty value is a value */
	CHECK_EQ_STR(get(&e, id, "project", &r), "");
	CHECK_EQ_INT(r, 0);
	CHECK_EQ_INT(context_meta_remove(e.s, id, "project", 7, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(context_meta_remove(e.s, id, "project", 7, e.why, sizeof(e.why)), -ENODATA);
	get(&e, id, "project", &r);
	CHECK_EQ_INT(r, -ENODATA);
	CHECK_EQ_INT(set(&e, 9999, "k", "v", 0), -ENOENT);
	env_done(&e);
}

static void test_flags(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "c");
	int r;
	CHECK_EQ_INT(set(&e, id, "k", "v1", META_REPLACE), -ENODATA);
	CHECK_EQ_INT(set(&e, id, "k", "v1", META_CREATE), 0);
	CHECK_EQ_INT(set(&e, id, "k", "v2", META_CREATE), -EEXIST);
	CHECK(has(e.why, "exists"));
	CHECK_EQ_STR(get(&e, id, "k", &r), "v1");
	CHECK_EQ_INT(set(&e, id, "k", "v3", META_REPLACE), 0);
	CHECK_EQ_STR(get(&e, id, "k", &r), "v3");
	env_done(&e);
}

static void test_limits(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "c");
	char key[META_KEY_MAX + 2], value[META_VALUE_MAX + 2];
	memset(value, 'v', sizeof(value));
	value[META_VALUE_MAX] = '\0';
	CHECK_EQ_INT(set(&e, id, "big", value, 0), 0); /* 4096 bytes: the limit */
	value[META_VALUE_MAX] = 'v';
	value[META_VALUE_MAX + 1] = '\0';
	CHECK_EQ_INT(set(&e, id, "big", value, 0), -E2BIG);
	CHECK(has(e.why, "4096"));
	memset(key, 'k', sizeof(key));
	key[META_KEY_MAX] = '\0'; /* 250 bytes + "user." = 255 */
	CHECK_EQ_INT(set(&e, id, key, "v", 0), 0);
	key[META_KEY_MAX] = 'k';
	key[META_KEY_MAX + 1] = '\0';
	CHECK_EQ_INT(set(&e, id, key, "v", 0), -ERANGE);
	CHECK_EQ_INT(set(&e, id, "", "v", 0), -EINVAL);
	CHECK_EQ_INT(set(&e, id, "bin", "\xff\xfe", 0), -EINVAL);
	CHECK_EQ_INT(set(&e, id, "\xff", "v", 0), -EINVAL);
	CHECK_EQ_INT(context_meta_set(e.s, id, "nul", 3, "a\0b", 3, 0, e.why, sizeof(e.why)),
		     -EINVAL);
	/* 64 keys: big, the long one, and 62 more; the 65th is ENOSPC. */
	for (int i = 0; i < META_KEYS_MAX - 2; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		CHECK_EQ_INT(set(&e, id, k, "x", 0), 0);
	}
	CHECK_EQ_INT(set(&e, id, "one-more", "x", 0), -ENOSPC);
	CHECK(has(e.why, "64"));
	CHECK_EQ_INT(set(&e, id, "k0", "replacing is fine", 0), 0);
	CHECK_EQ_INT(context_meta_remove(e.s, id, "k0", 2, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(set(&e, id, "one-more", "x", 0), 0);
	env_done(&e);
}

/* Durable in the journal (a META record), again after a restart, and the
 * journal's word wins over a `meta` file that disagrees. */
static void test_durable(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t id = make(&e, "c");
	int r;
	CHECK_EQ_INT(set(&e, id, "project", "acme", 0), 0);
	CHECK_EQ_INT(set(&e, id, "stage", "draft", 0), 0);
	CHECK_EQ_INT(context_meta_remove(e.s, id, "stage", 5, e.why, sizeof(e.why)), 0);
	CHECK_EQ_STR(file_text(&e, "c", "meta"), "{\"meta\":{\"project\":\"acme\"}}");
	CHECK(file_text(&e, "c", "meta.tmp") == NULL);
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "c", &id), 0);
	/* A stale file (a crash between the record and the file) is put right
	 * when the context loads. */
	file_put(&e, "c", "meta", "{\"meta\":{\"project\":\"old\"}}");
	struct context_info info;
	CHECK_EQ_INT(context_info(e.s, id, &info), 0);
	CHECK_EQ_STR(get(&e, id, "project", &r), "acme");
	get(&e, id, "stage", &r);
	CHECK_EQ_INT(r, -ENODATA);
	CHECK_EQ_STR(file_text(&e, "c", "meta"), "{\"meta\":{\"project\":\"acme\"}}");
	CHECK(has(view(&e, id, VIEW_INFO_JSON), "\"meta\":\t{\n\t\t\"project\":\t\"acme\""));
	/* Removing the last one removes the file. */
	CHECK_EQ_INT(context_meta_remove(e.s, id, "project", 7, e.why, sizeof(e.why)), 0);
	CHECK(file_text(&e, "c", "meta") == NULL);
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "c", &id), 0);
	get(&e, id, "project", &r);
	CHECK_EQ_INT(r, -ENODATA);
	env_done(&e);
}

/* A filter reads the `meta` file, never the journal: with the journal's META
 * records gone (emptied behind the store's back), the match still holds. */
static void test_match_reads_no_journal(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t a = make(&e, "a"), b = make(&e, "b");
	make(&e, "plain");
	CHECK_EQ_INT(set(&e, a, "project", "acme", 0), 0);
	CHECK_EQ_INT(set(&e, a, "team", "x", 0), 0);
	CHECK_EQ_INT(set(&e, b, "project", "other", 0), 0);
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "a", &a), 0);
	CHECK_EQ_INT(store_lookup(e.s, "b", &b), 0);
	file_put(&e, "a", "journal", "");
	struct meta_filter f1[] = {{"project", "acme"}};
	struct meta_filter f2[] = {{"project", "acme"}, {"team", "x"}};
	struct meta_filter f3[] = {{"project", "acme"}, {"team", "y"}};
	struct meta_filter f4[] = {{"team", NULL}};
	CHECK_EQ_INT(context_meta_match(e.s, a, f1, 1), 1);
	CHECK_EQ_INT(context_meta_match(e.s, b, f1, 1), 0);
	CHECK_EQ_INT(context_meta_match(e.s, a, f2, 2), 1);
	CHECK_EQ_INT(context_meta_match(e.s, a, f3, 2), 0);
	CHECK_EQ_INT(context_meta_match(e.s, a, f4, 1), 1);
	CHECK_EQ_INT(context_meta_match(e.s, b, f4, 1), 0);
	CHECK_EQ_INT(context_meta_match(e.s, a, NULL, 0), 1);
	CHECK_EQ_INT(context_meta_match(e.s, 9999, f1, 1), -ENOENT);
	cJSON *j = NULL;
	CHECK_EQ_INT(context_meta_json(e.s, a, &j), 0);
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "project");
	CHECK(cJSON_IsString(p) && !strcmp(p->valuestring, "acme"));
	cJSON_Delete(j);
	env_done(&e);
}

/* A `meta` file that cannot be parsed: the journal is loaded instead. */
static void test_bad_file_loads_journal(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t id = make(&e, "c");
	CHECK_EQ_INT(set(&e, id, "project", "acme", 0), 0);
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "c", &id), 0);
	file_put(&e, "c", "meta", "{\"meta\":{\"proj");
	struct meta_filter f[] = {{"project", "acme"}};
	CHECK_EQ_INT(context_meta_match(e.s, id, f, 1), 1);
	CHECK_EQ_STR(file_text(&e, "c", "meta"), "{\"meta\":{\"project\":\"acme\"}}");
	env_done(&e);
}

static void test_rename_delete(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t id = make(&e, "a");
	int r;
	CHECK_EQ_INT(set(&e, id, "project", "acme", 0), 0);
	CHECK_EQ_INT(store_rename(e.s, "a", "b"), 0);
	CHECK_EQ_STR(get(&e, id, "project", &r), "acme");
	CHECK_EQ_INT(set(&e, id, "k", "after the rename", 0), 0);
	CHECK(has(file_text(&e, "b", "meta"), "after the rename"));
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "b", &id), 0);
	struct meta_filter f[] = {{"k", "after the rename"}};
	CHECK_EQ_INT(context_meta_match(e.s, id, f, 1), 1);
	CHECK_EQ_INT(store_delete(e.s, "b"), 0);
	CHECK_EQ_INT(store_create(e.s, "b", &id), 0);
	get(&e, id, "project", &r);
	CHECK_EQ_INT(r, -ENODATA);
	CHECK_EQ_INT(context_meta_match(e.s, id, f, 1), 0);
	env_done(&e);
}

static void test_patch(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "c");
	int r;
	CHECK_EQ_INT(set(&e, id, "gone", "x", 0), 0);
	cJSON *p = cJSON_Parse("{\"project\":\"acme\",\"gone\":null,\"never\":null}");
	CHECK_EQ_INT(context_meta_patch_check(e.s, id, p, e.why, sizeof(e.why)), 0);
	CHECK_EQ_STR(get(&e, id, "gone", &r), "x"); /* a check changes nothing */
	CHECK_EQ_INT(context_meta_patch(e.s, id, p, e.why, sizeof(e.why)), 0);
	cJSON_Delete(p);
	CHECK_EQ_STR(get(&e, id, "project", &r), "acme");
	get(&e, id, "gone", &r);
	CHECK_EQ_INT(r, -ENODATA);
	/* All or nothing: one bad value and nothing changes. */
	p = cJSON_Parse("{\"project\":\"new\",\"n\":1}");
	CHECK_EQ_INT(context_meta_patch(e.s, id, p, e.why, sizeof(e.why)), -EINVAL);
	cJSON_Delete(p);
	CHECK_EQ_STR(get(&e, id, "project", &r), "acme");
	p = cJSON_Parse("[1]");
	CHECK_EQ_INT(context_meta_patch(e.s, id, p, e.why, sizeof(e.why)), -EINVAL);
	cJSON_Delete(p);
	/* 64 at most, counted after the removals of the same patch. */
	cJSON *many = cJSON_CreateObject();
	for (int i = 0; i < META_KEYS_MAX; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		cJSON_AddStringToObject(many, k, "v");
	}
	CHECK_EQ_INT(context_meta_patch_check(e.s, id, many, e.why, sizeof(e.why)), -ENOSPC);
	CHECK_EQ_INT(context_meta_patch(e.s, id, many, e.why, sizeof(e.why)), -ENOSPC);
	cJSON_AddNullToObject(many, "project");
	CHECK_EQ_INT(context_meta_patch(e.s, id, many, e.why, sizeof(e.why)), 0);
	cJSON_Delete(many);
	get(&e, id, "project", &r);
	CHECK_EQ_INT(r, -ENODATA);
	CHECK_EQ_STR(get(&e, id, "k63", &r), "v");
	env_done(&e);
}

/* A META record that breaks the limits (written by hand) loads within them. */
static void test_record_limits(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t id = make(&e, "c");
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "c", &id), 0);
	char path[512];
	snprintf(path, sizeof(path), "%s/contexts/c/journal", e.dir);
	const char *payload = "{\"meta\":{\"ok\":\"1\",\"num\":2,\"\":\"empty key\"}}";
	size_t len = strlen(payload);
	char frame[256];
	size_t n = journal_frame(JOURNAL_META, payload, len, frame);
	FILE *f = fopen(path, "a");
	CHECK(f && fwrite(frame, 1, n, f) == n);
	if (f)
		fclose(f);
	struct context_info info;
	CHECK_EQ_INT(context_info(e.s, id, &info), 0); /* loads the journal */
	int r;
	CHECK_EQ_STR(get(&e, id, "ok", &r), "1");
	get(&e, id, "num", &r);
	CHECK_EQ_INT(r, -ENODATA);
	struct buf b;
	buf_init(&b, 4096);
	CHECK_EQ_INT(context_meta_names(e.s, id, &b), 0);
	CHECK_EQ_INT(b.len, sizeof("user.ok"));
	buf_done(&b);
	env_done(&e);
}

int main(void)
{
	static const struct store_env_test tests[] = {
	    {"set_get_list_remove", test_set_get_list_remove},
	    {"flags", test_flags},
	    {"limits", test_limits},
	    {"durable", test_durable},
	    {"match_reads_no_journal", test_match_reads_no_journal},
	    {"bad_file_loads_journal", test_bad_file_loads_journal},
	    {"rename_delete", test_rename_delete},
	    {"patch", test_patch},
	    {"record_limits", test_record_limits},
	};
	return store_env_run(tests, sizeof(tests) / sizeof(tests[0]));
}
