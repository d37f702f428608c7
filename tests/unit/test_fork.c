/* test_fork.c — fork.c: `fork NEW [TURN]` and `undo`, through ctl_run as every
 * adapter calls them, in the world of store_env.h (a fake transport that
 * records each call's body, a fresh state directory per test).
 */
#include "mcpfs/ctl.h"
#include "store_env.h"

static int ctl(struct env *e, uint64_t id, const char *line)
{
	const char *done = NULL;
	e->why[0] = '\0';
	return ctl_run(e->s, id, line, strlen(line), &done, e->why, sizeof(e->why));
}

/* A message and its whole reply "re: TEXT". */
static void exchange(struct env *e, uint64_t id, const char *text)
{
	char r[256];
	say(e, id, text);
	snprintf(r, sizeof(r), "re: %s", text);
	reply(e, last_call(e), r, 0, 1);
}

static uint64_t lookup(struct env *e, const char *name)
{
	uint64_t id = 0;
	CHECK_EQ_INT(store_lookup(e->s, name, &id), 0);
	return id;
}

static char *output_text(struct env *e, uint64_t id)
{
	static char out[1024];
	struct reply *t = NULL;
	out[0] = '\0';
	CHECK_EQ_INT(context_output(e->s, id, &t), 0);
	if (t) {
		read_all(e, t, out, sizeof(out));
		reply_unref(e->s, t);
	}
	return out;
}

static int count_records(void *data, uint16_t type, const void *payload, size_t len, uint64_t off)
{
	size_t *counts = data;
	(void)payload, (void)len, (void)off;
	if (type < 16)
		counts[type]++;
	return 0;
}

/* The fork has the settings, the system prompt and the history; its next call
 * sends the copied exchanges; its transcript starts with where it came from;
 * its usage starts at zero; all of it survives a restart. */
static void test_fork_copies(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t a = make(&e, "a");
	CHECK(config_set(&e, a, "max_tokens = 1234\n"));
	CHECK_EQ_INT(context_set_system(e.s, a, "be brief", 8, e.why, sizeof(e.why)), 0);
	exchange(&e, a, "one");
	exchange(&e, a, "two");
	CHECK_EQ_INT(ctl(&e, a, "fork b"), 0);
	uint64_t b = lookup(&e, "b");
	CHECK(has(view(&e, b, VIEW_CONFIG), "max_tokens = 1234"));
	CHECK_EQ_STR(view(&e, b, VIEW_SYSTEM), "be brief");
	const char *tr = view(&e, b, VIEW_TRANSCRIPT);
	CHECK(
	    starts(tr, "--- forked from 'a' at turn 2 ---\n\n--- system prompt set ---\nbe brief"));
	CHECK(has(tr, "--- user (turn 2,") && has(tr, "re: two"));
	CHECK(has(view(&e, b, VIEW_USAGE), "calls: 0\n"));
	CHECK(has(view(&e, b, VIEW_TRANSCRIPT_JSON), "\"forked_from\""));
	CHECK_EQ_STR(output_text(&e, b), "re: two");
	size_t before = e.fake.n;
	say(&e, b, "three");
	static const char *const sent3[] = {"one", "re: one", "two", "re: two", "three"};
	CHECK(sent(&e, before, sent3, 5));
	CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(e.fake.json[before], "max_tokens")->valueint,
		     1234);
	reply(&e, last_call(&e), "re: three", 0, 1);
	char *t1 = view_dup(&e, b, VIEW_TRANSCRIPT);
	env_reopen(&e);
	b = lookup(&e, "b");
	CHECK_EQ_STR(view(&e, b, VIEW_TRANSCRIPT), t1);
	CHECK(has(view(&e, b, VIEW_HISTORY), "turn 3"));
	/* the source is as it was */
	a = lookup(&e, "a");
	CHECK(!has(view(&e, a, VIEW_HISTORY), "three"));
	char path[256];
	size_t counts[16] = {0};
	struct journal_report rep;
	journal_path(&e, "b", path, sizeof(path));
	CHECK_EQ_INT(journal_scan(path, count_records, counts, &rep), 0);
	CHECK_EQ_INT(counts[JOURNAL_FORKED_FROM], 1);
	CHECK_EQ_INT(counts[JOURNAL_CREATE], 1);
	free(t1);
	env_done(&e);
}

/* TURN picks how much; a call in flight on the source is not copied. */
static void test_fork_turn_and_in_flight(void)
{
	struct env e;
	env_init(&e);
	uint64_t a = make(&e, "a");
	exchange(&e, a, "one");
	exchange(&e, a, "two");
	exchange(&e, a, "three");
	CHECK_EQ_INT(ctl(&e, a, "fork upto2 2"), 0);
	uint64_t f = lookup(&e, "upto2");
	CHECK(has(view(&e, f, VIEW_HISTORY), "re: two") &&
	      !has(view(&e, f, VIEW_HISTORY), "three"));
	CHECK(starts(view(&e, f, VIEW_TRANSCRIPT), "--- forked from 'a' at turn 2 ---"));
	CHECK_EQ_INT(ctl(&e, a, "fork none 0"), 0);
	CHECK(!has(view(&e, lookup(&e, "none"), VIEW_HISTORY), "user"));
	say(&e, a, "four"); /* in flight */
	CHECK_EQ_INT(ctl(&e, a, "fork mid"), 0);
	uint64_t m = lookup(&e, "mid");
	CHECK(has(view(&e, m, VIEW_HISTORY), "re: three") &&
	      !has(view(&e, m, VIEW_HISTORY), "four"));
	CHECK(starts(view(&e, m, VIEW_TRANSCRIPT), "--- forked from 'a' at turn 3 ---"));
	CHECK_EQ_INT(ctl(&e, a, "fork x 4"), -EINVAL);
	CHECK_EQ_STR(e.why, "turn 4 is out of range: the newest turn that has ended is 3");
	reply(&e, last_call(&e), "re: four", 0, 1);
	env_done(&e);
}

static void test_fork_errors(void)
{
	struct env e;
	env_init(&e);
	uint64_t a = make(&e, "a");
	make(&e, "taken");
	CHECK_EQ_INT(ctl(&e, a, "fork taken"), -EEXIST);
	CHECK_EQ_STR(e.why, "a context named 'taken' exists");
	CHECK_EQ_INT(ctl(&e, a, "fork a"), -EEXIST);
	CHECK_EQ_INT(ctl(&e, a, "fork .hidden"), -EINVAL);
	CHECK(starts(e.why, "invalid name for the fork: "));
	CHECK_EQ_INT(ctl(&e, a, "fork"), -EINVAL);
	CHECK(starts(e.why, "usage: fork NEW [TURN]"));
	CHECK_EQ_INT(ctl(&e, a, "fork b 1 2"), -EINVAL);
	CHECK_EQ_INT(ctl(&e, a, "fork b x1"), -EINVAL);
	CHECK_EQ_STR(e.why, "fork: TURN must be a turn number, not 'x1'");
	CHECK_EQ_INT(ctl(&e, a, "fork b -1"), -EINVAL);
	CHECK_EQ_INT(ctl(&e, a, "fork b 1"), -EINVAL); /* no turn has ended */
	char line[300] = "fork ";
	memset(line + 5, 'n', 256);
	line[261] = '\0';
	CHECK_EQ_INT(ctl(&e, a, line), -ENAMETOOLONG);
	line[260] = '\0'; /* 255 bytes: fine */
	CHECK_EQ_INT(ctl(&e, a, line), 0);
	/* nothing was left behind by the refusals */
	struct store_entry *list;
	size_t n;
	CHECK_EQ_INT(store_list(e.s, &list, &n), 0);
	CHECK_EQ_INT(n, 3);
	store_list_free(list, n);
	CHECK_EQ_INT(ctl(&e, 9999, "fork z"), -ENOENT);
	env_done(&e);
}

/* undo: out of the history and of the next call, marked in the transcript,
 * `output` on the previous reply, durable. */
static void test_undo(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t a = make(&e, "a");
	CHECK_EQ_INT(ctl(&e, a, "undo"), -EINVAL);
	CHECK_EQ_STR(e.why, "nothing to undo: the history has no complete exchange");
	exchange(&e, a, "one");
	exchange(&e, a, "two");
	char *before = view_dup(&e, a, VIEW_TRANSCRIPT);
	CHECK_EQ_INT(ctl(&e, a, " undo\r"), 0);
	CHECK(!has(view(&e, a, VIEW_HISTORY), "two"));
	const char *tr = view(&e, a, VIEW_TRANSCRIPT);
	CHECK(starts(tr, before)); /* it only grows */
	CHECK_EQ_STR(tr + strlen(before), "--- turn 2 undone: taken out of the history ---\n\n");
	CHECK_EQ_STR(output_text(&e, a), "re: one");
	CHECK(has(view(&e, a, VIEW_STATUS), "turn: 1\n"));
	CHECK_EQ_INT(ctl(&e, a, "retry"), -EINVAL);
	CHECK_EQ_STR(e.why, "nothing to retry: turn 2 was undone");
	env_reopen(&e);
	a = lookup(&e, "a");
	CHECK(!has(view(&e, a, VIEW_HISTORY), "two"));
	CHECK_EQ_STR(output_text(&e, a), "re: one");
	CHECK(has(view(&e, a, VIEW_TRANSCRIPT), "--- turn 2 undone"));
	CHECK(has(view(&e, a, VIEW_TRANSCRIPT_JSON), "\"undone\":"));
	size_t calls = e.fake.n;
	say(&e, a, "three");
	static const char *const sent3[] = {"one", "re: one", "three"};
	CHECK(sent(&e, calls, sent3, 3));
	/* in flight: refused */
	CHECK_EQ_INT(ctl(&e, a, "undo"), -EINVAL);
	CHECK(starts(e.why, "cannot undo while a call is in flight"));
	reply(&e, last_call(&e), "re: three", 0, 1);
	CHECK_EQ_INT(ctl(&e, a, "undo"), 0);
	CHECK_EQ_INT(ctl(&e, a, "undo"), 0);
	CHECK_EQ_STR(output_text(&e, a), "");
	CHECK_EQ_INT(ctl(&e, a, "undo"), -EINVAL);
	env_reopen(&e);
	a = lookup(&e, "a");
	CHECK_EQ_STR(output_text(&e, a), "");
	CHECK(!has(view(&e, a, VIEW_HISTORY), "user"));
	char path[256];
	size_t counts[16] = {0};
	struct journal_report rep;
	journal_path(&e, "a", path, sizeof(path));
	CHECK_EQ_INT(journal_scan(path, count_records, counts, &rep), 0);
	CHECK_EQ_INT(counts[JOURNAL_UNDO], 3);
	/* a fork leaves the undone exchanges behind */
	exchange(&e, a, "four");
	CHECK_EQ_INT(ctl(&e, a, "fork f"), 0);
	const char *h = view(&e, lookup(&e, "f"), VIEW_HISTORY);
	CHECK(has(h, "four") && !has(h, "one") && !has(h, "two"));
	free(before);
	env_done(&e);
}

/* A failed newest turn: undo takes the newest complete one; `output` goes to
 * the history's newest reply, also after a restart. */
static void test_undo_past_failure(void)
{
	struct env e;
	env_init(&e);
	uint64_t a = make(&e, "a");
	exchange(&e, a, "one");
	exchange(&e, a, "two");
	say(&e, a, "three");
	struct api_error err;
	api_err(&err, "overloaded_error", "busy", "req_1", 529);
	reply_call_end(e.s, last_call(&e), -EIO, &err);
	CHECK_EQ_INT(ctl(&e, a, "undo"), 0);
	CHECK(!has(view(&e, a, VIEW_HISTORY), "two") && has(view(&e, a, VIEW_HISTORY), "one"));
	CHECK_EQ_STR(output_text(&e, a), "re: one");
	CHECK(starts(view(&e, a, VIEW_STATUS), "idle\n"));
	env_reopen(&e);
	a = lookup(&e, "a");
	CHECK_EQ_STR(output_text(&e, a), "re: one");
	CHECK(starts(view(&e, a, VIEW_STATUS), "idle\n"));
	env_done(&e);
}

/* tests/fixtures/journal/forked-undone.mcj: FORKED_FROM and UNDO as the format
 * says (doc/design/journal.md §4-5); an UNDO naming no turn is a bad record. */
static void test_fixture(void)
{
	struct env e;
	env_init_disk(&e);
	char p[256], cmd[600];
	store_free(e.s);
	e.s = NULL;
	snprintf(p, sizeof(p), "%s/contexts/f", e.dir);
	CHECK_EQ_INT(mkdir(p, 0700), 0);
	snprintf(cmd, sizeof(cmd), "cp '%s/journal/forked-undone.mcj' '%s/journal'", FIXTURES, p);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_EQ_INT(env_open_store(&e, NULL), 0);
	uint64_t id = lookup(&e, "f");
	const char *tr = view(&e, id, VIEW_TRANSCRIPT);
	CHECK(starts(tr, "--- forked from 'src' at turn 2 ---\n\n--- system prompt set ---\n"
			 "You are terse.\n\n--- user (turn 1, "));
	CHECK(has(tr, "--- assistant (turn 3) ---\nA3\n\n--- turn 3 undone: taken out of the "
		      "history ---\n\n"));
	const char *h = view(&e, id, VIEW_HISTORY);
	CHECK(has(h, "A2") && !has(h, "A3"));
	CHECK_EQ_STR(output_text(&e, id), "A2");
	CHECK(has(view(&e, id, VIEW_STATUS), "journal_recovered: 1 corrupt record(s) skipped"));
	say(&e, id, "Q4");
	static const char *const sent4[] = {"Q1", "A1", "Q2", "A2", "Q4"};
	CHECK(sent(&e, 0, sent4, 5));
	env_done(&e);
}

int main(void)
{
	static const struct store_env_test tests[] = {
	    {"fork_copies", test_fork_copies},
	    {"fork_turn_and_in_flight", test_fork_turn_and_in_flight},
	    {"fork_errors", test_fork_errors},
	    {"undo", test_undo},
	    {"undo_past_failure", test_undo_past_failure},
	    {"fixture", test_fixture},
	};
	return store_env_run(tests, sizeof(tests) / sizeof(tests[0]));
}
