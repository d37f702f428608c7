/* test_summary.c — summary.c: the summary call made before a cut, its end
 * (floor, SUMMARY record, views), its failure (the cut drops), compact, the
 * summary written by hand, and a restart; driven through the fake transport
 * of store_env.h.
 */
#include "mcpfs/ctl.h"
#include "store_env.h"

/* 300-byte messages: ~104 raw tokens each way, 208 an exchange. */
static void big(char *out, char ch, int i)
{
	memset(out, ch, 300);
	out[0] = (char)('0' + i % 10);
	out[300] = '\0';
}

/* One exchange: the message, the reply to the newest call. */
static void turn(struct env *e, uint64_t id, int i)
{
	char q[301], a[301];
	big(q, 'q', i);
	big(a, 'a', i);
	say(e, id, q);
	reply(e, last_call(e), a, 0, 1);
}

static int count_nine(void *data, uint16_t type, const void *payload, size_t len, uint64_t off)
{
	size_t *counts = data;
	(void)payload, (void)len, (void)off;
	if (type < 10)
		counts[type]++;
	return 0;
}

static const char *instruction(const struct env *e, size_t i)
{
	const cJSON *msgs = body_field(e, i, "messages");
	const cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
	const char *t = content_text(cJSON_GetObjectItemCaseSensitive(last, "content"));
	return t ? t : "";
}

/* A budget of 700: three exchanges fit, the fourth message cuts. */
static uint64_t three_turns(struct env *e)
{
	uint64_t id = make(e, "s");
	CHECK(config_set(e, id, "budget_tokens = 700\n"));
	for (int i = 1; i <= 3; i++)
		turn(e, id, i);
	CHECK_EQ_INT(e->fake.n, 3);
	return id;
}

static void test_cut_summarizes_first(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t id = three_turns(&e);
	char q[301];
	big(q, 'q', 4);
	say(&e, id, q);
	/* the summary call went first; the turn waits */
	CHECK_EQ_INT(e.fake.n, 4);
	CHECK(has(instruction(&e, 3), "Fold into the new summary: the earlier summary (if any) "
				      "and the first "));
	CHECK(starts(instruction(&e, 3), "Write a summary that will replace the earlier part"));
	CHECK(starts(view(&e, id, VIEW_STATUS), "summarizing\n"));
	CHECK(has(view(&e, id, VIEW_STATUS), "summary_call: folding turns 1-"));
	CHECK(has(view(&e, id, VIEW_STATUS), "turn_state: queued\n"));
	/* max_tokens of a summary call: the context's, at most max(budget/8, 1024) */
	CHECK_EQ_INT((int)cJSON_GetNumberValue(body_field(&e, 3, "max_tokens")), 1024);
	reply(&e, last_call(&e), "the user sent digits", 0, 1);
	/* then the turn's call, with the summary as its second system block */
	CHECK_EQ_INT(e.fake.n, 5);
	const cJSON *sys = body_field(&e, 4, "system");
	CHECK(cJSON_IsArray(sys) && cJSON_GetArraySize(sys) == 1);
	const cJSON *b = cJSON_GetArrayItem(sys, 0);
	const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "text"));
	CHECK(t && starts(t, "Summary of the earlier part of this conversation (turns 1-"));
	CHECK(t && has(t, "which is left out:\n\nthe user sent digits\n"));
	CHECK(cJSON_GetObjectItemCaseSensitive(b, "cache_control") != NULL);
	CHECK_EQ_STR(view(&e, id, VIEW_SUMMARY), "the user sent digits\n");
	CHECK(has(view(&e, id, VIEW_HISTORY), "--- summary of turns 1-"));
	CHECK(has(view(&e, id, VIEW_HISTORY_JSON), "\"summary\":"));
	/* the usage file counts the summary call */
	CHECK(has(view(&e, id, VIEW_USAGE), "calls: 4\n"));
	/* the journal holds one SUMMARY record (type 9) */
	char path[256];
	size_t counts[10] = {0};
	journal_path(&e, "s", path, sizeof(path));
	struct journal_report rep;
	CHECK_EQ_INT(journal_scan(path, count_nine, counts, &rep), 0);
	CHECK_EQ_INT(counts[9], 1);
	env_done(&e);
}

static void test_failure_drops_the_cut(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = three_turns(&e);
	char q[301];
	big(q, 'q', 4);
	say(&e, id, q);
	CHECK_EQ_INT(e.fake.n, 4);
	struct api_error err;
	api_err(&err, "overloaded_error", "Overloaded", "req_1", 529);
	reply_call_end(e.s, last_call(&e), -EIO, &err);
	/* the turn's call went on without a summary, the cut dropped */
	CHECK_EQ_INT(e.fake.n, 5);
	CHECK(body_field(&e, 4, "system") == NULL);
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "waiting\n"));
	CHECK(has(st, "summary_error: at "));
	CHECK(has(st, "overloaded_error: Overloaded; the cut dropped instead"));
	CHECK(!has(st, "last_error"));
	CHECK_EQ_STR(view(&e, id, VIEW_SUMMARY), "");
	reply(&e, last_call(&e), "r4", 0, 1);
	CHECK(starts(view(&e, id, VIEW_STATUS), "idle\n"));
	env_done(&e);
}

static void test_drop_makes_no_summary_call(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "d");
	CHECK(config_set(&e, id, "budget_tokens = 700\nprune = drop\n"));
	for (int i = 1; i <= 6; i++)
		turn(&e, id, i);
	CHECK_EQ_INT(e.fake.n, 6);
	for (size_t i = 0; i < 6; i++)
		CHECK(!has(instruction(&e, i), "Fold into the new summary"));
	env_done(&e);
}

static void test_compact_and_restart(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "c");
	const char *done;
	CHECK_EQ_INT(ctl_run(e.s, id, "compact", 7, &done, e.why, sizeof(e.why)), -EINVAL);
	CHECK(has(e.why, "nothing to fold"));
	for (int i = 1; i <= 3; i++)
		turn(&e, id, i);
	const char *line = "compact  the digits ";
	CHECK_EQ_INT(ctl_run(e.s, id, line, strlen(line), &done, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(e.fake.n, 4);
	CHECK(has(instruction(&e, 3), "the first 1 exchanges above (turns 1 to 1)."));
	CHECK(has(instruction(&e, 3), "The 2 exchange(s) after them stay"));
	CHECK(has(instruction(&e, 3), "\nFocus: the digits"));
	/* busy: a second compact, a message waits */
	CHECK_EQ_INT(ctl_run(e.s, id, "compact", 7, &done, e.why, sizeof(e.why)), -EINVAL);
	CHECK(has(e.why, "in flight"));
	reply(&e, last_call(&e), "digits 1", 0, 1);
	CHECK_EQ_STR(view(&e, id, VIEW_SUMMARY), "digits 1\n");
	CHECK(has(view(&e, id, VIEW_HISTORY_JSON), "\"turns\":\t[1, 1]"));
	CHECK(has(view(&e, id, VIEW_HISTORY_JSON), "\"pruned_messages\":\t2"));
	env_reopen(&e);
	CHECK_EQ_STR(view(&e, id, VIEW_SUMMARY), "digits 1\n");
	CHECK(has(view(&e, id, VIEW_HISTORY_JSON), "\"pruned_messages\":\t2"));
	CHECK(has(view(&e, id, VIEW_USAGE), "calls: 4\n"));
	env_done(&e);
}

static void test_written_summary(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "w");
	CHECK_EQ_INT(context_set_summary(e.s, id, "bad \xff", 5, e.why, sizeof(e.why)), -EILSEQ);
	CHECK_EQ_INT(context_set_summary(e.s, id, "x", SUMMARY_MAX + 1, e.why, sizeof(e.why)),
		     -EFBIG);
	CHECK_EQ_INT(context_set_summary(e.s, id, "cats\n", 5, e.why, sizeof(e.why)), 0);
	CHECK_EQ_STR(view(&e, id, VIEW_SUMMARY), "cats\n");
	CHECK(has(view(&e, id, VIEW_HISTORY), "--- summary ---\ncats\n"));
	CHECK(has(view(&e, id, VIEW_HISTORY_JSON), "\"turns\":\tnull"));
	CHECK(has(view(&e, id, VIEW_STATUS), "summary: written, 5 bytes\n"));
	say(&e, id, "hi");
	const cJSON *sys = body_field(&e, 0, "system");
	CHECK(cJSON_IsArray(sys) && cJSON_GetArraySize(sys) == 1);
	reply(&e, last_call(&e), "hello", 0, 1);
	env_reopen(&e);
	CHECK_EQ_STR(view(&e, id, VIEW_SUMMARY), "cats\n");
	CHECK_EQ_INT(context_set_summary(e.s, id, " \n", 2, e.why, sizeof(e.why)), 0);
	CHECK_EQ_STR(view(&e, id, VIEW_SUMMARY), "");
	CHECK(!has(view(&e, id, VIEW_HISTORY_JSON), "summary"));
	env_reopen(&e);
	CHECK_EQ_STR(view(&e, id, VIEW_SUMMARY), "");
	/* a clear removes it too */
	CHECK_EQ_INT(context_set_summary(e.s, id, "dogs", 4, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(context_clear(e.s, id), 0);
	CHECK_EQ_STR(view(&e, id, VIEW_SUMMARY), "");
	env_reopen(&e);
	CHECK_EQ_STR(view(&e, id, VIEW_SUMMARY), "");
	env_done(&e);
}

/* A record type the loader does not know is skipped, not counted as bad: how
 * a version without SUMMARY reads a journal of this one (journal.md §5 rule 8).
 * The fixture has a type-200 record between known ones. */
static void test_unknown_record_type_is_skipped(void)
{
	struct env e;
	env_init_disk(&e);
	char p[256], cmd[600];
	uint64_t id;
	size_t counts[10] = {0};
	struct journal_report rep;
	snprintf(p, sizeof(p), "%s/journal/unknown-type.mcj", FIXTURES);
	CHECK_EQ_INT(journal_scan(p, count_nine, counts, &rep), 0);
	CHECK_EQ_INT(rep.records, 18);
	CHECK_EQ_INT(rep.bad_records, 0);
	CHECK_EQ_INT(counts[9], 1);
	store_free(e.s);
	e.s = NULL;
	snprintf(p, sizeof(p), "%s/contexts/u", e.dir);
	CHECK_EQ_INT(mkdir(p, 0700), 0);
	snprintf(cmd, sizeof(cmd), "cp '%s/journal/unknown-type.mcj' '%s/journal'", FIXTURES, p);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_EQ_INT(env_open_store(&e, NULL), 0);
	CHECK_EQ_INT(store_lookup(e.s, "u", &id), 0);
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "idle\n"));
	CHECK(has(st, "turn: 4\n"));
	CHECK(!has(st, "journal_recovered"));
	CHECK(has(view(&e, id, VIEW_TRANSCRIPT), "--- assistant (turn 4) ---\nOui, encore.\n"));
	CHECK_EQ_STR(view(&e, id, VIEW_SUMMARY), "They spoke French.\n");
	/* the summary covers turn 3: the history starts at turn 4 */
	const char *h = view(&e, id, VIEW_HISTORY);
	CHECK(has(h, "--- summary of turns 3-3 ---\nThey spoke French.\n"));
	CHECK(!has(h, "(turn 3)") && has(h, "--- user (turn 4) ---"));
	env_done(&e);
}

static void test_settings_keys(void)
{
	struct settings s;
	char why[256];
	settings_init(&s);
	CHECK_EQ_INT(s.prune, SETTINGS_PRUNE_SUMMARIZE);
	CHECK_EQ_INT(settings_set(&s, "prune", "drop", why, sizeof(why)), 0);
	CHECK_EQ_INT(s.prune, SETTINGS_PRUNE_DROP);
	CHECK_EQ_INT(settings_set(&s, "prune", "forget", why, sizeof(why)), -EINVAL);
	CHECK(has(why, "not summarize or drop"));
	CHECK_EQ_INT(settings_set(&s, "summary_model", "claude-haiku-4-5", why, sizeof(why)), 0);
	CHECK_EQ_STR(s.summary_model, "claude-haiku-4-5");
	CHECK_EQ_INT(settings_set(&s, "summary_model", "default", why, sizeof(why)), 0);
	CHECK_EQ_STR(s.summary_model, "");
	CHECK_EQ_INT(settings_set(&s, "summary_model", "a b", why, sizeof(why)), -EINVAL);
	CHECK_EQ_INT(settings_set(&s, "summary_prompt", "Be short.", why, sizeof(why)), 0);
	CHECK_EQ_STR(s.summary_prompt, "Be short.");
	char long_prompt[SETTINGS_PROMPT_MAX + 2];
	memset(long_prompt, 'p', sizeof(long_prompt) - 1);
	long_prompt[sizeof(long_prompt) - 1] = '\0';
	CHECK_EQ_INT(settings_set(&s, "summary_prompt", long_prompt, why, sizeof(why)), -EINVAL);
	CHECK(has(why, "over the limit of 2048"));
	long_prompt[SETTINGS_PROMPT_MAX] = '\0';
	CHECK_EQ_INT(settings_set(&s, "summary_prompt", long_prompt, why, sizeof(why)), 0);
	CHECK_EQ_INT(settings_check(&s, why, sizeof(why)), 0);
	CHECK_EQ_INT(settings_set(&s, "summary_prompt", "a\tb", why, sizeof(why)), -EINVAL);
}

int main(void)
{
	static const struct store_env_test tests[] = {
	    {"cut_summarizes_first", test_cut_summarizes_first},
	    {"failure_drops_the_cut", test_failure_drops_the_cut},
	    {"drop_makes_no_summary_call", test_drop_makes_no_summary_call},
	    {"compact_and_restart", test_compact_and_restart},
	    {"written_summary", test_written_summary},
	    {"unknown_record_type_is_skipped", test_unknown_record_type_is_skipped},
	    {"settings_keys", test_settings_keys},
	};
	return store_env_run(tests, sizeof(tests) / sizeof(tests[0]));
}
