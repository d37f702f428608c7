/* test_view.c — view.c: the status word and the renderings (their cache);
 * driven without FUSE or curl through the fake transport and observer of
 * store_env.h (a fresh store on the in-memory engine per test).
 */
#include "store_env.h"

/* The status word of a context not loaded comes from its journal's end, which
 * it neither repairs nor extends, and agrees with the word once loaded. */
static void test_status_word_unloaded(void)
{
	static const struct {
		const char *name;
		const char *word;
	} want[] = {
	    {"done", "idle"},  {"failed", "error"},  {"cut", "error"},	      {"cleared", "idle"},
	    {"empty", "idle"}, {"big-done", "idle"}, {"big-failed", "error"},
	};
	struct env e;
	env_init(&e);
	struct api_error err;
	api_error_clear(&err);
	api_error_set(&err, "overloaded_error", "try later");
	uint64_t id = make(&e, "done");
	say(&e, id, "q");
	reply(&e, last_call(&e), "a", 0, 1);
	id = make(&e, "failed");
	say(&e, id, "q");
	reply_call_end(e.s, last_call(&e), -EIO, &err);
	id = make(&e, "cut");
	say(&e, id, "q");
	start_msg(&e, last_call(&e), 0);
	CHECK_EQ_INT(delta(&e, last_call(&e), "text", "half"), 0);
	id = make(&e, "cleared");
	say(&e, id, "q");
	reply_call_end(e.s, last_call(&e), -EIO, &err);
	CHECK_EQ_INT(context_clear(e.s, id), 0);
	make(&e, "empty");
	/* turns whose records lie before the last 64 KiB of the journal */
	char *big = malloc(60000);
	memset(big, 's', 60000);
	for (int k = 0; k < 2; k++) {
		id = make(&e, k ? "big-failed" : "big-done");
		say(&e, id, "q");
		if (k)
			reply_call_end(e.s, last_call(&e), -EIO, &err);
		else
			reply(&e, last_call(&e), "a", 0, 1);
		for (int i = 0; i < 2; i++) {
			big[0] = (char)('a' + i);
			CHECK_EQ_INT(context_set_system(e.s, id, big, 60000, e.why, sizeof(e.why)),
				     0);
		}
	}
	free(big);
	store_free(e.s); /* "cut" is in flight: it loads as interrupted */
	e.s = NULL;
	fake_done(&e.fake);

	CHECK_EQ_INT(env_open_store(&e, NULL), 0);
	off_t sizes[7];
	char p[256], word[16];
	for (size_t i = 0; i < 7; i++) {
		journal_path(&e, want[i].name, p, sizeof(p));
		sizes[i] = file_size(p);
		CHECK_EQ_INT(store_lookup(e.s, want[i].name, &id), 0);
		CHECK_EQ_INT(context_status_word(e.s, id, word, sizeof(word)), 0);
		CHECK_EQ_STR(word, want[i].word);
		CHECK_EQ_INT(file_size(p), sizes[i]); /* not loaded: nothing written */
	}
	for (size_t i = 0; i < 7; i++) {
		CHECK_EQ_INT(store_lookup(e.s, want[i].name, &id), 0);
		const char *st = view(&e, id, VIEW_STATUS);
		CHECK(starts(st, want[i].word) && st[strlen(want[i].word)] == '\n');
		CHECK_EQ_INT(context_status_word(e.s, id, word, sizeof(word)), 0);
		CHECK_EQ_STR(word, want[i].word);
	}
	CHECK_EQ_INT(context_status_word(e.s, 999999, word, sizeof(word)), -ENOENT);
	env_done(&e);
}

/* --- the rendering cache ------------------------------------------------------------ */

/* Renders history and history.json twice (the second comes from the cache) and
 * checks that the two agree. */
static void warm(struct env *e, uint64_t id)
{
	static const enum view_kind kinds[] = {VIEW_HISTORY, VIEW_HISTORY_JSON};

	for (size_t i = 0; i < 2; i++) {
		char *first = view_dup(e, id, kinds[i]);
		CHECK_EQ_STR(view(e, id, kinds[i]), first);
		free(first);
	}
}

/* What the cache shows equals what a fresh load of the journal renders. */
static void like_fresh(struct env *e, const char *name, uint64_t *id)
{
	char *h = view_dup(e, *id, VIEW_HISTORY), *j = view_dup(e, *id, VIEW_HISTORY_JSON);

	env_reopen(e);
	CHECK_EQ_INT(store_lookup(e->s, name, id), 0);
	CHECK_EQ_STR(view(e, *id, VIEW_HISTORY), h);
	CHECK_EQ_STR(view(e, *id, VIEW_HISTORY_JSON), j);
	free(h);
	free(j);
}

/* Every kind of change shows at once in history and history.json although their
 * previous renderings were cached. */
static void test_view_cache(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "vc");
	char q[32], a[32];

	warm(&e, id);
	CHECK_EQ_INT(context_set_system(e.s, id, "SYS-A", 5, e.why, sizeof(e.why)), 0);
	CHECK(has(view(&e, id, VIEW_HISTORY), "SYS-A"));
	CHECK(has(view(&e, id, VIEW_HISTORY_JSON), "\"SYS-A\""));
	warm(&e, id);
	CHECK_EQ_INT(context_set_system(e.s, id, "", 0, e.why, sizeof(e.why)), 0);
	CHECK(!has(view(&e, id, VIEW_HISTORY), "SYS-A"));
	warm(&e, id);
	CHECK_EQ_INT(context_set_model(e.s, id, "claude-cache-test", 17, e.why, sizeof(e.why)), 0);
	CHECK(has(view(&e, id, VIEW_HISTORY_JSON), "claude-cache-test"));
	like_fresh(&e, "vc", &id);

	/* Three exchanges of 28 raw tokens each fit a budget of 100 at the start
	 * (ratio 1); the reply appears in history when its turn ends. */
	CHECK_EQ_INT(context_set_config(e.s, id, "budget_tokens = 100", 19, e.why, sizeof(e.why)),
		     0);
	for (int i = 1; i <= 3; i++) {
		snprintf(q, sizeof(q), "%-30d", i);
		snprintf(a, sizeof(a), "answer %-23d", i);
		say(&e, id, q);
		warm(&e, id);
		CHECK(!has(view(&e, id, VIEW_HISTORY), a));
		reply(&e, last_call(&e), a, 0, 1);
		CHECK(has(view(&e, id, VIEW_HISTORY), a));
		CHECK(has(view(&e, id, VIEW_HISTORY_JSON), a));
		warm(&e, id);
	}
	CHECK(!has(view(&e, id, VIEW_HISTORY), "pruned"));
	like_fresh(&e, "vc", &id);

	/* A blank reply stays out of history, but the input tokens it reports
	 * calibrate the estimate: the same history no longer fits. */
	say(&e, id, "c");
	warm(&e, id);
	reply(&e, last_call(&e), " ", 2000, 1);
	CHECK(has(view(&e, id, VIEW_HISTORY), "pruned: 6 earlier message(s)"));
	const char *j = view(&e, id, VIEW_HISTORY_JSON);
	CHECK(has(j, "\"pruned_messages\":\t6") || has(j, "\"pruned_messages\": 6"));
	like_fresh(&e, "vc", &id);

	/* A larger budget brings them back; a clear empties the history. */
	warm(&e, id);
	CHECK_EQ_INT(
	    context_set_config(e.s, id, "budget_tokens = 100000", 22, e.why, sizeof(e.why)), 0);
	CHECK(has(view(&e, id, VIEW_HISTORY), "answer 1"));
	warm(&e, id);
	CHECK_EQ_INT(context_clear(e.s, id), 0);
	CHECK(!has(view(&e, id, VIEW_HISTORY), "answer"));
	CHECK(!has(view(&e, id, VIEW_HISTORY_JSON), "answer"));
	like_fresh(&e, "vc", &id);
	env_done(&e);
}

int main(void)
{
	static const struct store_env_test tests[] = {
	    {"status_word_unloaded", test_status_word_unloaded},
	    {"view_cache", test_view_cache},
	};
	return store_env_run(tests, sizeof(tests) / sizeof(tests[0]));
}
