/* test_store.c — store.c: opening the state directory, the set of contexts (names, create, lookup,
 * list, rename, delete), the root defaults and the observers; driven without FUSE or curl through
 * the fake transport and observer of store_env.h (a fresh store per test: on the in-memory engine,
 * or on a fresh state directory under /tmp, removed after, for what needs a journal on disk).
 */
#include "store_env.h"

/* --- life cycle ---------------------------------------------------------------- */

static void test_open_layout(void)
{
	struct env e;
	env_init(&e);
	char p[256];

	snprintf(p, sizeof(p), "%s/contexts", e.dir);
	CHECK(is_dir(p));
	snprintf(p, sizeof(p), "%s/trash", e.dir);
	CHECK(is_dir(p));
	snprintf(p, sizeof(p), "%s/lock", e.dir);
	CHECK(file_size(p) >= 0);

	/* Missing parents are created, mode 0700. */
	struct store *s2 = NULL;
	snprintf(p, sizeof(p), "%s/a/b/state", e.dir);
	CHECK_EQ_INT(store_open(p, "max_tokens = 2048", &s2, e.why, sizeof(e.why)), 0);
	struct stat st;
	CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0700);
	struct buf b;
	buf_init(&b, 1 << 16);
	CHECK_EQ_INT(store_render_status(s2, &b), 0);
	CHECK(has(b.data, "contexts: 0\n"));
	CHECK(has(b.data, "calls_in_flight: 0\n"));
	CHECK(has(b.data, p));
	buf_reset(&b);
	CHECK_EQ_INT(store_render_defaults(s2, &b), 0);
	CHECK(has(b.data, "max_tokens = 2048\n")); /* the command line's defaults */
	buf_done(&b);
	store_free(s2);

	/* A defaults text that does not parse fails the open, saying why. */
	e.why[0] = '\0';
	CHECK_EQ_INT(store_open(p, "max_tokens = lots", &s2, e.why, sizeof(e.why)), -EINVAL);
	CHECK(has(e.why, "max_tokens"));
	env_done(&e);
}

static void test_open_busy(void)
{
	struct env e;
	env_init_disk(&e);
	struct store *s2 = NULL;

	e.why[0] = '\0';
	CHECK_EQ_INT(store_open(e.dir, NULL, &s2, e.why, sizeof(e.why)), -EBUSY);
	CHECK(has(e.why, e.dir));
	CHECK(s2 == NULL);
	/* Released on free: the next daemon gets it. */
	store_free(e.s);
	e.s = NULL;
	CHECK_EQ_INT(store_open(e.dir, NULL, &s2, e.why, sizeof(e.why)), 0);
	store_free(s2);
	env_done(&e);
}

static void test_open_uncreatable(void)
{
	struct env e;
	env_init(&e);
	char file[128], dir[160], want[256];
	struct store *s2 = NULL;

	snprintf(file, sizeof(file), "%s/plain", e.dir);
	int fd = open(file, O_WRONLY | O_CREAT, 0600);
	CHECK(fd >= 0);
	close(fd);
	snprintf(dir, sizeof(dir), "%s/state", file);
	e.why[0] = '\0';
	CHECK_EQ_INT(store_open(dir, NULL, &s2, e.why, sizeof(e.why)), -ENOTDIR);
	snprintf(want, sizeof(want), "cannot create state directory '%s': %s", dir,
		 strerror(ENOTDIR));
	CHECK_EQ_STR(e.why, want);
	env_done(&e);
}

/* --- the set of contexts ---------------------------------------------------------- */

static void test_names(void)
{
	static char longest[STORE_NAME_MAX + 1], too_long[STORE_NAME_MAX + 2];
	memset(longest, 'n', STORE_NAME_MAX);
	memset(too_long, 'n', STORE_NAME_MAX + 1);
	const struct {
		const char *name;
		int want;
	} cases[] = {
	    {"", -EINVAL},
	    {".hidden", -EINVAL},
	    {".", -EINVAL},
	    {"..", -EINVAL},
	    {"a/b", -EINVAL},
	    {"tab\there", -EINVAL},
	    {"new\nline", -EINVAL},
	    {"del\x7f", -EINVAL},
	    {"bad\xff", -EINVAL},
	    {"over\xc0\xaflong", -EINVAL},
	    {too_long, -ENAMETOOLONG},
	    {longest, 0},
	    {"with space", 0},
	    {"ünïcødé", 0},
	    {"-dash", 0},
	    {"a.b", 0},
	};
	struct env e;
	env_init(&e);
	uint64_t base = make(&e, "base");

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *n = cases[i].name;
		uint64_t id = 0;
		CHECK_EQ_INT(store_name_check(n, strlen(n)), cases[i].want);
		if (cases[i].want < 0) {
			CHECK_EQ_INT(store_create(e.s, n, &id), cases[i].want);
			CHECK_EQ_INT(store_rename(e.s, "base", n), cases[i].want);
			CHECK_EQ_INT(store_lookup(e.s, "base", &id), 0);
			CHECK_EQ_INT(id, base);
		} else {
			CHECK_EQ_INT(store_create(e.s, n, &id), 0);
			CHECK_EQ_INT(store_create(e.s, n, &id), -EEXIST);
			CHECK_EQ_INT(store_delete(e.s, n), 0);
		}
	}
	size_t n = 0;
	struct store_entry *list = NULL;
	CHECK_EQ_INT(store_list(e.s, &list, &n), 0);
	CHECK_EQ_INT(n, 1);
	store_list_free(list, n);
	env_done(&e);
}

static void test_create_lookup_list(void)
{
	static const char *const names[] = {"b", "a", "ä", "c", "B"};
	static const char *const sorted[] = {"B", "a", "b", "c", "ä"};
	struct env e;
	env_init_disk(&e);
	uint64_t ids[5];

	for (int i = 0; i < 5; i++) {
		ids[i] = make(&e, names[i]);
		for (int k = 0; k < i; k++)
			CHECK(ids[k] != ids[i]);
	}
	CHECK_EQ_INT(store_create(e.s, "a", NULL), -EEXIST);
	uint64_t id = 0;
	CHECK_EQ_INT(store_lookup(e.s, "a", &id), 0);
	CHECK_EQ_INT(id, ids[1]);
	CHECK_EQ_INT(store_lookup(e.s, "nope", &id), -ENOENT);
	char name[8];
	CHECK_EQ_INT(store_name(e.s, ids[2], name, sizeof(name)), 0);
	CHECK_EQ_STR(name, "ä");
	CHECK_EQ_INT(store_name(e.s, ids[2], name, 2), -ENAMETOOLONG);
	CHECK_EQ_INT(store_name(e.s, 9999, name, sizeof(name)), -ENOENT);

	struct store_entry *list = NULL;
	size_t n = 0;
	CHECK_EQ_INT(store_list(e.s, &list, &n), 0);
	CHECK_EQ_INT(n, 5);
	for (size_t i = 0; i < n && i < 5; i++)
		CHECK_EQ_STR(list[i].name, sorted[i]);
	store_list_free(list, n);

	char p[256];
	journal_path(&e, "ä", p, sizeof(p));
	CHECK(file_size(p) > 0); /* durable on return: the CREATE record is there */
	struct context_info info;
	CHECK_EQ_INT(context_info(e.s, ids[0], &info), 0);
	CHECK(info.idle);
	CHECK_EQ_INT(info.turn, 0);
	CHECK_EQ_INT(info.state, REPLY_DONE);
	CHECK_EQ_STR(info.model, SETTINGS_DEFAULT_MODEL);
	CHECK_EQ_INT(info.max_input_bytes, 1048576);
	CHECK_EQ_INT(context_info(e.s, 9999, &info), -ENOENT);

	/* Ids are never reused while the store lives. */
	CHECK_EQ_INT(store_delete(e.s, "c"), 0);
	CHECK_EQ_INT(store_delete(e.s, "c"), -ENOENT);
	CHECK_EQ_INT(context_info(e.s, ids[3], &info), -ENOENT);
	uint64_t again = make(&e, "c");
	for (int i = 0; i < 5; i++)
		CHECK(again != ids[i]);
	struct buf b;
	buf_init(&b, 1 << 16);
	CHECK_EQ_INT(store_render_status(e.s, &b), 0);
	CHECK(has(b.data, "contexts: 5\n"));
	buf_done(&b);
	env_done(&e);
}

static void test_rename(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t a = make(&e, "a"), b = make(&e, "b"), id = 0;
	char p[256];

	CHECK_EQ_INT(store_rename(e.s, "a", "z"), 0);
	CHECK_EQ_INT(store_lookup(e.s, "z", &id), 0);
	CHECK_EQ_INT(id, a);
	CHECK_EQ_INT(store_lookup(e.s, "a", &id), -ENOENT);
	journal_path(&e, "z", p, sizeof(p));
	CHECK(file_size(p) > 0);
	snprintf(p, sizeof(p), "%s/contexts/a", e.dir);
	CHECK(!is_dir(p));
	CHECK_EQ_INT(store_rename(e.s, "a", "y"), -ENOENT);
	CHECK_EQ_INT(store_rename(e.s, "z", "b"), -EEXIST);
	CHECK_EQ_INT(store_rename(e.s, "z", ".z"), -EINVAL);
	CHECK_EQ_INT(store_rename(e.s, "z", "z"), 0);
	CHECK_EQ_INT(store_lookup(e.s, "b", &id), 0);
	CHECK_EQ_INT(id, b);

	/* A call in flight keeps going across a rename, under the same id. */
	say(&e, a, "hello");
	uint64_t call = last_call(&e);
	start_msg(&e, call, 0);
	CHECK_EQ_INT(delta(&e, call, "text", "hel"), 0);
	CHECK_EQ_INT(store_rename(e.s, "z", "renamed"), 0);
	CHECK_EQ_INT(delta(&e, call, "text", "lo"), 0);
	finish_msg(&e, call, 2);
	char name[32];
	CHECK_EQ_INT(store_name(e.s, a, name, sizeof(name)), 0);
	CHECK_EQ_STR(name, "renamed");
	CHECK(has(view(&e, a, VIEW_TRANSCRIPT), "\nhello\n"));

	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "renamed", &id), 0);
	CHECK(has(view(&e, id, VIEW_TRANSCRIPT), "--- assistant (turn 1) ---\nhello\n"));
	CHECK_EQ_INT(store_lookup(e.s, "z", &id), -ENOENT);
	env_done(&e);
}

/* Listing reads no journal: a journal corrupted beyond repair is not touched
 * (JOURNAL_REPAIR would truncate it) nor reported until the context is used. */
static void test_lazy_listing(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t b = make(&e, "b");
	make(&e, "a");
	make(&e, "c");
	say(&e, b, "question");
	reply(&e, last_call(&e), "answer", 0, 1);
	store_free(e.s);
	e.s = NULL;

	char p[256];
	journal_path(&e, "b", p, sizeof(p));
	off_t size = file_size(p);
	CHECK(size > 100);
	char *junk = malloc((size_t)size);
	memset(junk, 0xa5, (size_t)size);
	int fd = open(p, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && write(fd, junk, (size_t)size) == size);
	close(fd);

	CHECK_EQ_INT(env_open_store(&e, NULL), 0);
	size_t seen = e.obs.n;
	struct store_entry *list = NULL;
	size_t n = 0;
	CHECK_EQ_INT(store_list(e.s, &list, &n), 0);
	CHECK_EQ_INT(n, 3);
	CHECK(n == 3 && !strcmp(list[0].name, "a") && !strcmp(list[1].name, "b") &&
	      !strcmp(list[2].name, "c"));
	store_list_free(list, n);
	CHECK_EQ_INT(store_lookup(e.s, "b", &b), 0);
	char name[8];
	CHECK_EQ_INT(store_name(e.s, b, name, sizeof(name)), 0);
	CHECK_EQ_INT(e.obs.n, seen);
	CHECK_EQ_INT(file_size(p), size); /* not repaired: not opened */

	struct context_info info;
	CHECK_EQ_INT(context_info(e.s, b, &info), 0);
	CHECK_EQ_INT(info.turn, 0); /* nothing survived */
	/* The torn tail was truncated at load, and the root defaults the context
	 * now has (its CREATE was lost) were saved: one SETTINGS record. */
	size_t counts[8] = {0};
	struct journal_report rep;
	CHECK_EQ_INT(journal_scan(p, count_type, counts, &rep), 0);
	CHECK(rep.records == 1 && rep.torn_bytes == 0 && rep.bad_records == 0);
	CHECK_EQ_INT(counts[JOURNAL_SETTINGS], 1);
	const char *st = view(&e, b, VIEW_STATUS);
	CHECK(has(st, "journal_recovered: "));
	char want[64];
	snprintf(want, sizeof(want), "%lld torn byte(s)", (long long)size);
	CHECK(has(st, want));
	/* The context works again. */
	say(&e, b, "again");
	reply(&e, last_call(&e), "fine", 0, 1);
	CHECK_EQ_INT(context_info(e.s, b, &info), 0);
	CHECK_EQ_INT(info.turn, 1);
	free(junk);
	env_done(&e);
}

static void test_defaults(void)
{
	struct env e;
	env_init(&e);
	uint64_t a = make(&e, "a");
	struct buf b;

	buf_init(&b, 1 << 16);
	e.why[0] = '\0';
	CHECK_EQ_INT(store_set_defaults(e.s, "max_tokens = -1\n", 16, e.why, sizeof(e.why)),
		     -EINVAL);
	CHECK(has(e.why, "max_tokens"));
	CHECK_EQ_INT(store_render_defaults(e.s, &b), 0);
	CHECK(has(b.data, "max_tokens = 4096\n"));
	const char *d = "max_tokens = 777\nmodel = claude-haiku-4-5\n";
	CHECK_EQ_INT(store_set_defaults(e.s, d, strlen(d), e.why, sizeof(e.why)), 0);
	buf_reset(&b);
	CHECK_EQ_INT(store_render_defaults(e.s, &b), 0);
	CHECK(has(b.data, "max_tokens = 777\n"));
	CHECK(has(b.data, "model = claude-haiku-4-5\n"));

	uint64_t bb = make(&e, "b");
	CHECK(has(view(&e, a, VIEW_CONFIG), "max_tokens = 4096\n"));
	CHECK_EQ_STR(view(&e, a, VIEW_MODEL), SETTINGS_DEFAULT_MODEL "\n");
	CHECK(has(view(&e, bb, VIEW_CONFIG), "max_tokens = 777\n"));
	CHECK_EQ_STR(view(&e, bb, VIEW_MODEL), "claude-haiku-4-5\n");

	/* Saved: a restart keeps the defaults and each context's own settings. */
	env_reopen(&e);
	buf_reset(&b);
	CHECK_EQ_INT(store_render_defaults(e.s, &b), 0);
	CHECK(has(b.data, "max_tokens = 777\n"));
	CHECK_EQ_INT(store_lookup(e.s, "a", &a), 0);
	CHECK_EQ_INT(store_lookup(e.s, "b", &bb), 0);
	CHECK(has(view(&e, a, VIEW_CONFIG), "max_tokens = 4096\n"));
	CHECK(has(view(&e, bb, VIEW_CONFIG), "max_tokens = 777\n"));
	/* A context's config changes only what it names, whatever the defaults. */
	CHECK(config_set(&e, a, "temperature = 0.3\n"));
	CHECK(has(view(&e, a, VIEW_CONFIG), "max_tokens = 4096\n"));
	/* The defaults too: keys not named keep their value. */
	CHECK_EQ_INT(store_set_defaults(e.s, "budget_tokens = 5000", 20, e.why, sizeof(e.why)), 0);
	buf_reset(&b);
	CHECK_EQ_INT(store_render_defaults(e.s, &b), 0);
	CHECK(has(b.data, "max_tokens = 777\n"));
	CHECK(has(b.data, "budget_tokens = 5000\n"));
	CHECK(!has(view(&e, a, VIEW_CONFIG), "budget_tokens = 5000\n")); /* new contexts only */
	buf_done(&b);
	env_done(&e);
}

/* --- observers and deletion ------------------------------------------------------------ */

static void test_observers(void)
{
	struct env e;
	env_init(&e);
	size_t mark = e.obs.n;
	uint64_t id = make(&e, "o");

	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_CREATED), 1);
	say(&e, id, "hi");
	uint64_t call = last_call(&e);
	CHECK(obs_count(&e.obs, mark, id, STORE_CHANGED_STATE) > 0);
	start_msg(&e, call, 0);
	mark = e.obs.n;
	CHECK_EQ_INT(delta(&e, call, "text", "a"), 0);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_OUTPUT), 1);
	CHECK_EQ_INT(delta(&e, call, "text", "b"), 0);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_OUTPUT), 2);
	/* The events of one chunk are announced once, at its flush. */
	mark = e.obs.n;
	struct wire_event ev;
	const char *d = "{\"type\":\"content_block_delta\",\"index\":0,"
			"\"delta\":{\"type\":\"text_delta\",\"text\":\"c\"}}";
	CHECK_EQ_INT(wire_event_decode(NULL, 0, d, strlen(d), &ev), 0);
	CHECK_EQ_INT(reply_call_event(e.s, call, &ev), 0);
	CHECK_EQ_INT(reply_call_event(e.s, call, &ev), 0);
	wire_event_done(&ev);
	CHECK_EQ_INT(e.obs.n, mark);
	reply_call_flush(e.s);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_OUTPUT), 1);
	CHECK_EQ_INT(e.obs.n, mark + 1);
	reply_call_flush(e.s);
	CHECK_EQ_INT(e.obs.n, mark + 1); /* nothing held: nothing announced */
	mark = e.obs.n;
	CHECK_EQ_INT(delta(&e, call, "thinking", "x"), 0);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_OUTPUT), 0);
	finish_msg(&e, call, 1);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_OUTPUT), 1);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_HISTORY), 1);

	mark = e.obs.n;
	CHECK_EQ_INT(context_set_model(e.s, id, "m-2", 3, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_SETTINGS), 1);
	CHECK_EQ_INT(store_rename(e.s, "o", "o2"), 0);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_RENAMED), 1);
	CHECK_EQ_INT(store_rename(e.s, "o2", "o2"), 0);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_RENAMED), 1);
	CHECK_EQ_INT(context_cancel(e.s, id), 0);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_OUTPUT), 0); /* nothing changed */
	CHECK_EQ_INT(store_delete(e.s, "o2"), 0);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_DELETED), 1);
	CHECK_EQ_INT(store_create(e.s, "o2", NULL), 0);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_CREATED), 0); /* a new id */
	env_done(&e);
}

/* Deleting a context ends every turn it has: a reader of a reply in flight
 * gets its text then EIO, a reader of a message still being written does not
 * wait forever. */
static void test_delete_live(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "live");
	struct reply *t = NULL, *draft = NULL, *pending = NULL;
	char buf[TEXT_MAX], p[256];

	say(&e, id, "q");
	uint64_t call = last_call(&e);
	start_msg(&e, call, 0);
	CHECK_EQ_INT(delta(&e, call, "text", "abc"), 0);
	CHECK_EQ_INT(context_output(e.s, id, &t), 0);
	CHECK_EQ_INT(store_delete(e.s, "live"), 0);
	CHECK(fake_was_cancelled(&e.fake, call));
	CHECK_EQ_INT(store_calls_in_flight(e.s), 0);
	CHECK_EQ_INT(read_all(&e, t, buf, sizeof(buf)), -EIO);
	CHECK_EQ_STR(buf, "abc");
	CHECK_EQ_INT(delta(&e, call, "text", "def"), -ECANCELED);
	reply_call_end(e.s, call, -ECANCELED, NULL);
	reply_unref(e.s, t);
	snprintf(p, sizeof(p), "%s/contexts/live", e.dir);
	CHECK(!is_dir(p));
	snprintf(p, sizeof(p), "%s/trash", e.dir);
	CHECK(is_dir(p));
	CHECK_EQ_INT(context_info(e.s, id, &(struct context_info){0}), -ENOENT);
	CHECK_EQ_INT(context_render(e.s, id, VIEW_STATUS, &e.views[0]), -ENOENT);

	id = make(&e, "draft");
	CHECK_EQ_INT(context_stage(e.s, id, &draft, "half", 4, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(context_output(e.s, id, &pending), 0);
	CHECK_EQ_INT(store_delete(e.s, "draft"), 0);
	CHECK(reply_read(e.s, pending, 0, buf, sizeof(buf)) != -EAGAIN);
	CHECK_EQ_INT(context_stage(e.s, id, &draft, "half more", 9, e.why, sizeof(e.why)), -ENOENT);
	context_submit(e.s, draft);
	CHECK_EQ_INT(e.fake.n, 1);
	reply_unref(e.s, pending);
	CHECK_EQ_INT(store_create(e.s, "draft", NULL), 0); /* the name is free again */
	env_done(&e);
}

/* `.status` names where the state is: the state directory, or the where
 * store_open_on was given (main.c: --store's URL, its password masked), and
 * "(in memory)" without one; not the engine's business. */
static void test_status_names_where(void)
{
	struct env e;
	struct buf b;
	buf_init(&b, 1u << 20);
	env_init(&e);
	CHECK_EQ_INT(store_render_status(e.s, &b), 0);
	CHECK(has(b.data, "state_dir: (in memory)\n"));
	env_done(&e);

	env_init_disk(&e);
	char want[sizeof(e.dir) + 16];
	snprintf(want, sizeof(want), "state_dir: %s\n", e.dir);
	CHECK_EQ_INT(store_render_status(e.s, &b), 0);
	CHECK(has(b.data, want));
	env_done(&e);

	struct storage *mem;
	struct store *s;
	char why[256];
	CHECK_EQ_INT(storage_mem_new(&mem), 0);
	CHECK_EQ_INT(store_open_on(mem, "postgres://u@db/x", NULL, &s, why, sizeof(why)), 0);
	CHECK_EQ_INT(store_render_status(s, &b), 0);
	CHECK(has(b.data, "state_dir: postgres://u@db/x\n"));
	store_free(s);
	storage_free(mem);
	buf_done(&b);
}

int main(void)
{
	static const struct store_env_test tests[] = {
	    {"open_layout", test_open_layout},
	    {"open_busy", test_open_busy},
	    {"open_uncreatable", test_open_uncreatable},
	    {"names", test_names},
	    {"create_lookup_list", test_create_lookup_list},
	    {"rename", test_rename},
	    {"lazy_listing", test_lazy_listing},
	    {"defaults", test_defaults},
	    {"observers", test_observers},
	    {"delete_live", test_delete_live},
	    {"status_names_where", test_status_names_where},
	};
	return store_env_run(tests, sizeof(tests) / sizeof(tests[0]));
}
