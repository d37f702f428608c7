/* test_rcache.c — the response cache: its entries on disk (rcache.c) and the
 * store's side (store_rcache.c): hits without a call, the key, the bound and
 * its order of use across a reopen, torn entries, `.config`'s
 * response_cache_bytes. */
#include "store_env.h"

#include "mcpfs/rcache.h"

static uint8_t *key_of(const char *text, uint8_t key[RCACHE_KEY_LEN])
{
	const void *parts[] = {text};
	size_t lens[] = {strlen(text)};
	rcache_key(parts, lens, 1, key);
	return key;
}

static int open_dir(const char *dir)
{
	return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* 0 for a hit whose value is want, else rcache_get's result (or -EBADMSG). */
static int get(struct rcache *rc, const char *k, const char *want)
{
	uint8_t key[RCACHE_KEY_LEN];
	struct buf b;
	buf_init(&b, 1 << 20);
	int r = rcache_get(rc, key_of(k, key), &b);
	if (r == 0 && (b.len != strlen(want) || memcmp(b.data, want, b.len)))
		r = -EBADMSG;
	buf_done(&b);
	return r;
}

static int put(struct rcache *rc, const char *k, const char *value)
{
	uint8_t key[RCACHE_KEY_LEN];
	return rcache_put(rc, key_of(k, key), value, strlen(value));
}

static void entry_path(const char *dir, const char *k, char *out, size_t n)
{
	uint8_t key[RCACHE_KEY_LEN];
	key_of(k, key);
	int o = snprintf(out, n, "%s/cache/", dir);
	for (int i = 0; i < RCACHE_KEY_LEN; i++)
		o += snprintf(out + o, n - (size_t)o, "%02x", key[i]);
}

static void test_key(void)
{
	uint8_t a[RCACHE_KEY_LEN], b[RCACHE_KEY_LEN];
	const void *p1[] = {"ab", "c"}, *p2[] = {"a", "bc"};
	size_t l1[] = {2, 1}, l2[] = {1, 2};
	rcache_key(p1, l1, 2, a);
	rcache_key(p2, l2, 2, b);
	CHECK(!memcmp(a, b, RCACHE_KEY_LEN)); /* the bytes, however they are cut */
	key_of("abc", b);
	CHECK(!memcmp(a, b, RCACHE_KEY_LEN));
	key_of("abd", b);
	CHECK(memcmp(a, b, RCACHE_KEY_LEN) != 0);
}

static void test_entries(void)
{
	struct env e;
	env_init_disk(&e);
	int fd = open_dir(e.dir);
	struct rcache *rc = NULL;
	CHECK_EQ_INT(rcache_open(fd, "rc", 1 << 20, &rc), 0);
	CHECK_EQ_INT(get(rc, "k1", ""), -ENOENT);
	CHECK_EQ_INT(put(rc, "k1", "value one"), 0);
	CHECK_EQ_INT(put(rc, "k2", ""), 0); /* an empty value is a value */
	CHECK_EQ_INT(get(rc, "k1", "value one"), 0);
	CHECK_EQ_INT(get(rc, "k2", ""), 0);
	CHECK_EQ_INT(put(rc, "k1", "value 1"), 0); /* replaced */
	struct rcache_stats st;
	rcache_stats(rc, &st);
	CHECK_EQ_INT(st.entries, 2);
	CHECK_EQ_INT(st.bytes, 2 * RCACHE_OVERHEAD + 7);
	rcache_free(rc);
	/* reopened: the same entries, read from the files */
	CHECK_EQ_INT(rcache_open(fd, "rc", 1 << 20, &rc), 0);
	CHECK_EQ_INT(get(rc, "k1", "value 1"), 0);
	rcache_stats(rc, &st);
	CHECK_EQ_INT(st.entries, 2);
	/* an entry alone over the bound is not kept */
	rcache_set_max(rc, RCACHE_OVERHEAD + 4);
	rcache_stats(rc, &st);
	CHECK_EQ_INT(st.entries, 0); /* both were over the new bound together */
	CHECK_EQ_INT(put(rc, "k3", "12345"), -EFBIG);
	CHECK_EQ_INT(put(rc, "k3", "1234"), 0);
	rcache_free(rc);
	close(fd);
	env_done(&e);
}

static void test_lru(void)
{
	struct env e;
	env_init_disk(&e);
	int fd = open_dir(e.dir);
	struct rcache *rc = NULL;
	int64_t one = RCACHE_OVERHEAD + 10;
	CHECK_EQ_INT(rcache_open(fd, "rc", 3 * one, &rc), 0);
	CHECK_EQ_INT(put(rc, "a", "0123456789"), 0);
	CHECK_EQ_INT(put(rc, "b", "0123456789"), 0);
	CHECK_EQ_INT(put(rc, "c", "0123456789"), 0);
	CHECK_EQ_INT(get(rc, "a", "0123456789"), 0); /* a used: b is the oldest */
	CHECK_EQ_INT(put(rc, "d", "0123456789"), 0);
	CHECK_EQ_INT(get(rc, "b", ""), -ENOENT);
	rcache_free(rc);
	/* the order survives a reopen: now c is the oldest, then a, then d */
	CHECK_EQ_INT(rcache_open(fd, "rc", 3 * one, &rc), 0);
	CHECK_EQ_INT(put(rc, "e", "0123456789"), 0);
	CHECK_EQ_INT(get(rc, "c", ""), -ENOENT);
	CHECK_EQ_INT(get(rc, "a", "0123456789"), 0);
	rcache_free(rc);
	/* a smaller bound at open evicts the oldest: d (then e, a) */
	CHECK_EQ_INT(rcache_open(fd, "rc", 2 * one, &rc), 0);
	CHECK_EQ_INT(get(rc, "d", ""), -ENOENT);
	CHECK_EQ_INT(get(rc, "e", "0123456789"), 0);
	CHECK_EQ_INT(get(rc, "a", "0123456789"), 0);
	rcache_free(rc);
	close(fd);
	env_done(&e);
}

static void test_torn(void)
{
	struct env e;
	env_init_disk(&e);
	int fd = open_dir(e.dir);
	struct rcache *rc = NULL;
	char path[256], tmp[300];
	CHECK_EQ_INT(rcache_open(fd, "cache", 1 << 20, &rc), 0);
	static const char *const keys[] = {"cut", "flip", "grown", "empty", "moved"};
	for (size_t i = 0; i < 5; i++)
		CHECK_EQ_INT(put(rc, keys[i], "a reply of some length"), 0);
	rcache_free(rc);
	entry_path(e.dir, "cut", path, sizeof(path));
	CHECK_EQ_INT(truncate(path, file_size(path) - 1), 0);
	entry_path(e.dir, "flip", path, sizeof(path));
	int f = open(path, O_RDWR);
	char c;
	CHECK_EQ_INT(pread(f, &c, 1, RCACHE_HEADER + 3), 1);
	c ^= 1;
	CHECK_EQ_INT(pwrite(f, &c, 1, RCACHE_HEADER + 3), 1);
	close(f);
	entry_path(e.dir, "grown", path, sizeof(path));
	f = open(path, O_WRONLY | O_APPEND);
	CHECK_EQ_INT(write(f, "x", 1), 1);
	close(f);
	entry_path(e.dir, "empty", path, sizeof(path));
	CHECK_EQ_INT(truncate(path, 0), 0);
	/* another key's file under this key's name */
	entry_path(e.dir, "moved", path, sizeof(path));
	entry_path(e.dir, "renamed", tmp, sizeof(tmp));
	CHECK_EQ_INT(rename(path, tmp), 0);
	/* leftovers of a put cut short, and files that are no entries */
	snprintf(tmp, sizeof(tmp), "%s/cache/.tmp-0123", e.dir);
	close(open(tmp, O_WRONLY | O_CREAT, 0600));
	snprintf(path, sizeof(path), "%s/cache/README", e.dir);
	close(open(path, O_WRONLY | O_CREAT, 0600));
	CHECK_EQ_INT(rcache_open(fd, "cache", 1 << 20, &rc), 0);
	CHECK(access(tmp, F_OK) < 0);
	CHECK(access(path, F_OK) == 0);
	for (size_t i = 0; i < 4; i++)
		CHECK_EQ_INT(get(rc, keys[i], "a reply of some length"), -ENOENT);
	CHECK_EQ_INT(get(rc, "renamed", ""), -ENOENT);
	struct rcache_stats st;
	rcache_stats(rc, &st);
	CHECK_EQ_INT(st.torn, 5);
	CHECK_EQ_INT(st.entries, 0);
	entry_path(e.dir, "cut", path, sizeof(path));
	CHECK(access(path, F_OK) < 0); /* deleted, not kept to fail again */
	rcache_free(rc);
	close(fd);
	env_done(&e);
}

/* --- the store's side ------------------------------------------------------------- */

static uint64_t cached_ctx(struct env *e, const char *name)
{
	uint64_t id = make(e, name);
	CHECK(config_set(e, id, "response_cache = on\n"));
	return id;
}

static void test_store_hit(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t a = cached_ctx(&e, "a");
	say(&e, a, "question");
	CHECK_EQ_INT(e.fake.n, 1);
	reply(&e, last_call(&e), "the answer", 10, 3);
	CHECK(has(view(&e, a, VIEW_USAGE), "last_call: api\n"));

	uint64_t b = cached_ctx(&e, "b");
	say(&e, b, "question");
	CHECK_EQ_INT(e.fake.n, 1); /* no call */
	struct reply *t = NULL;
	CHECK_EQ_INT(context_output(e.s, b, &t), 0);
	char text[64];
	CHECK_EQ_INT(read_all(&e, t, text, sizeof(text)), 0); /* to the end */
	CHECK(!memcmp(text, "the answer", 10));
	struct reply_outcome oc;
	reply_outcome(e.s, t, &oc);
	CHECK(oc.cache_hit && oc.state == REPLY_DONE);
	CHECK_EQ_STR(oc.stop_reason, "end_turn");
	reply_unref(e.s, t);
	const char *u = view(&e, b, VIEW_USAGE);
	CHECK(has(u, "cache_hits: 1\nlast_call: cache_hit\n"));
	CHECK(has(u, "calls: 0\n") && has(u, "total_input_tokens: 0\n"));
	CHECK(has(view(&e, b, VIEW_STATUS), "turn_source: cache_hit\n"));
	CHECK(has(view(&e, b, VIEW_INFO_JSON), "\"cache_hits\":\t1,"));
	CHECK(has(view(&e, b, VIEW_INFO_JSON), "\"last_call\":\t\"cache_hit\""));

	/* the next message of b sends the cached reply in its history */
	say(&e, b, "more");
	CHECK_EQ_INT(e.fake.n, 2);
	static const char *const texts[] = {"question", "the answer", "more"};
	CHECK(sent(&e, 1, texts, 3));
	reply(&e, last_call(&e), "more answer", 10, 3);

	/* the cache is off by default: c asks */
	uint64_t c = make(&e, "c");
	say(&e, c, "question");
	CHECK_EQ_INT(e.fake.n, 3);
	reply(&e, last_call(&e), "x", 10, 3);

	/* a reopen keeps the hit in b's usage and the entry on disk */
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "b", &b), 0); /* ids are the process's */
	CHECK(has(view(&e, b, VIEW_USAGE), "cache_hits: 1\nlast_call: api\n"));
	uint64_t d = cached_ctx(&e, "d");
	say(&e, d, "question");
	CHECK_EQ_INT(e.fake.n, 3);
	CHECK(has(view(&e, d, VIEW_USAGE), "last_call: cache_hit\n"));
	env_done(&e);
}

/* Only a reply that ended with end_turn is kept; a failed call is not. */
static void test_store_kept_only_end_turn(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t a = cached_ctx(&e, "a");
	say(&e, a, "q");
	uint64_t call = last_call(&e);
	start_msg(&e, call, 5);
	CHECK_EQ_INT(delta(&e, call, "text", "cut"), 0);
	CHECK_EQ_INT(
	    event(&e, call,
		  "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
		  "\"max_tokens\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":1}}"),
	    0);
	CHECK_EQ_INT(event(&e, call, "{\"type\":\"message_stop\"}"), 0);
	reply_call_end(e.s, call, 0, NULL);
	uint64_t b = cached_ctx(&e, "b");
	say(&e, b, "q");
	CHECK_EQ_INT(e.fake.n, 2);
	struct api_error err;
	api_err(&err, "overloaded_error", "busy", "req_1", 529);
	reply_call_end(e.s, last_call(&e), -EIO, &err);
	uint64_t c = cached_ctx(&e, "c");
	say(&e, c, "q");
	CHECK_EQ_INT(e.fake.n, 3);
	env_done(&e);
}

static void test_defaults(void)
{
	char why[256];
	CHECK_EQ_INT(store_defaults_check("response_cache_bytes = 4096\n", 28, why, sizeof(why)),
		     0);
	CHECK_EQ_INT(store_defaults_check("response_cache_bytes=1023", 25, why, sizeof(why)),
		     -EINVAL);
	CHECK(has(why, "line 1: response_cache_bytes: '1023' is out of range"));
	const char *t = "max_tokens = 9\n\nresponse_cache_bytes = 4k\n";
	CHECK_EQ_INT(store_defaults_check(t, strlen(t), why, sizeof(why)), -EINVAL);
	CHECK(has(why, "line 3: response_cache_bytes: '4k' is not a whole number"));
	/* the other keys' errors keep their line numbers */
	t = "response_cache_bytes = 4096\nbogus = 1\n";
	CHECK_EQ_INT(store_defaults_check(t, strlen(t), why, sizeof(why)), -EINVAL);
	CHECK(has(why, "line 2: unknown key 'bogus'"));
	t = "response_cache_bytesx = 4096\n";
	CHECK_EQ_INT(store_defaults_check(t, strlen(t), why, sizeof(why)), -EINVAL);

	struct env e;
	env_init_disk(&e);
	struct buf b;
	buf_init(&b, 1 << 16);
	CHECK_EQ_INT(store_render_defaults(e.s, &b), 0);
	CHECK(has(b.data, "response_cache = off\nresponse_cache_bytes = 268435456\n"));
	t = "response_cache_bytes = 2048\nresponse_cache = on\n";
	CHECK_EQ_INT(store_set_defaults(e.s, t, strlen(t), why, sizeof(why)), 0);
	uint64_t a = make(&e, "a"); /* .config's response_cache is a default */
	CHECK(has(view(&e, a, VIEW_CONFIG), "response_cache = on\n"));
	/* a context has no bound of its own */
	CHECK_EQ_INT(
	    context_set_config(e.s, a, "response_cache_bytes = 2048\n", 28, why, sizeof(why)),
	    -EINVAL);
	env_reopen(&e);
	buf_reset(&b);
	CHECK_EQ_INT(store_render_defaults(e.s, &b), 0);
	CHECK(has(b.data, "response_cache = on\nresponse_cache_bytes = 2048\n"));
	buf_reset(&b);
	CHECK_EQ_INT(store_render_status(e.s, &b), 0);
	CHECK(has(b.data, "response_cache: 0 entries, 0 of 2048 bytes\n"));
	buf_done(&b);
	env_done(&e);
}

/* STATE/cache cannot be made: turns go on, every one a call. */
static void test_store_unavailable(void)
{
	struct env e;
	env_init_disk(&e);
	store_free(e.s);
	e.s = NULL;
	char path[128];
	snprintf(path, sizeof(path), "%s/cache", e.dir);
	rm_rf(path);
	close(open(path, O_WRONLY | O_CREAT, 0600)); /* a file where the directory goes */
	CHECK_EQ_INT(env_open_store(&e, NULL), 0);
	struct buf b;
	buf_init(&b, 1 << 16);
	CHECK_EQ_INT(store_render_status(e.s, &b), 0);
	CHECK(has(b.data, "response_cache: unavailable (Not a directory)\n"));
	buf_done(&b);
	for (int i = 0; i < 2; i++) {
		uint64_t id = cached_ctx(&e, i ? "b" : "a");
		say(&e, id, "q");
		CHECK_EQ_INT(e.fake.n, (size_t)i + 1);
		reply(&e, last_call(&e), "answer", 10, 3);
		CHECK(has(view(&e, id, VIEW_USAGE), "last_call: api\n"));
	}
	env_done(&e);
}

int main(void)
{
	static const struct store_env_test tests[] = {
	    {"key", test_key},
	    {"entries", test_entries},
	    {"lru", test_lru},
	    {"torn", test_torn},
	    {"store_hit", test_store_hit},
	    {"store_kept_only_end_turn", test_store_kept_only_end_turn},
	    {"defaults", test_defaults},
	    {"store_unavailable", test_store_unavailable},
	};
	return store_env_run(tests, sizeof(tests) / sizeof(tests[0]));
}
