/* test_context.c — context.c: one context's settings, and loading its journal again (a clean
 * reopen, a crash mid-reply, a torn tail, misplaced records); driven without FUSE or curl through
 * the fake transport and observer of store_env.h (a fresh store per test: on the in-memory engine,
 * or on a fresh state directory under /tmp, removed after, for what needs a journal on disk).
 */
#include "store_env.h"

/* --- durability ------------------------------------------------------------------------ */

static void test_reopen_same(void)
{
	static const enum view_kind kinds[] = {
	    VIEW_HISTORY, VIEW_HISTORY_JSON, VIEW_TRANSCRIPT, VIEW_TRANSCRIPT_JSON, VIEW_SYSTEM,
	    VIEW_MODEL,	  VIEW_CONFIG,	     VIEW_STATUS,     VIEW_USAGE,	    VIEW_INFO_JSON,
	};
	enum { NK = sizeof(kinds) / sizeof(kinds[0]) };
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "d");
	struct api_error err;

	CHECK_EQ_INT(context_set_config(e.s, id, "max_tokens = 512\ntemperature = 0.25\n", 36,
					e.why, sizeof(e.why)),
		     0);
	CHECK_EQ_INT(context_set_model(e.s, id, "claude-opus-4-1\n", 16, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(context_set_system(e.s, id, "Be brief.\nVery.", 15, e.why, sizeof(e.why)), 0);
	say(&e, id, "m1");
	reply(&e, last_call(&e), "r1 with \"quotes\" and ünïcode\n", 20, 3);
	say(&e, id, "m2");
	uint64_t call = last_call(&e);
	start_msg(&e, call, 0);
	CHECK_EQ_INT(delta(&e, call, "text", "part"), 0);
	api_err(&err, "overloaded_error", "Overloaded", "req_x", 529);
	reply_call_end(e.s, call, -EIO, &err);
	say(&e, id, "m3");
	call = last_call(&e);
	start_msg(&e, call, 30);
	CHECK_EQ_INT(delta(&e, call, "thinking", "hmm"), 0);
	CHECK_EQ_INT(delta(&e, call, "text", "r3"), 0);
	finish_msg(&e, call, 4);
	CHECK_EQ_INT(context_clear(e.s, id), 0);
	say(&e, id, "m4");
	reply(&e, last_call(&e), "r4", 10, 2);
	const cJSON *temp = body_field(&e, e.fake.n - 1, "temperature");
	CHECK(cJSON_IsNumber(temp) && temp->valuedouble == 0.25);
	const cJSON *model = body_field(&e, e.fake.n - 1, "model");
	CHECK(cJSON_IsString(model) && !strcmp(model->valuestring, "claude-opus-4-1"));

	char *before[NK];
	for (size_t k = 0; k < NK; k++)
		before[k] = view_dup(&e, id, kinds[k]);
	CHECK(has(before[8], "total_input_tokens: 60\n"));
	CHECK(has(before[8], "calls: 4\n")); /* the failed call reported usage too */
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "d", &id), 0);
	for (size_t k = 0; k < NK; k++) {
		const char *after = view(&e, id, kinds[k]);
		if (strcmp(after, before[k]))
			fprintf(stderr, "  view %d differs after reopen:\n%s---\n%s===\n",
				(int)kinds[k], before[k], after);
		CHECK_EQ_STR(after, before[k]);
		free(before[k]);
	}
	struct context_info info;
	CHECK_EQ_INT(context_info(e.s, id, &info), 0);
	CHECK_EQ_INT(info.turn, 4);
	CHECK_EQ_STR(info.model, "claude-opus-4-1");

	/* A message's time is the one its record keeps: each USER record is
	 * fsynced, so a time taken after the fsync would often differ. */
	uint64_t times = make(&e, "times");
	for (int i = 0; i < 16; i++) {
		say(&e, times, "tick");
		reply(&e, last_call(&e), "tock", 0, 1);
	}
	char *tj = view_dup(&e, times, VIEW_TRANSCRIPT_JSON);
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "times", &times), 0);
	CHECK_EQ_STR(view(&e, times, VIEW_TRANSCRIPT_JSON), tj);
	free(tj);
	CHECK_EQ_INT(store_lookup(e.s, "d", &id), 0);
	/* Turn numbers go on after a reload. */
	CHECK_EQ_INT(say(&e, id, "m5"), 5);
	const char *m[] = {"m4", "r4", "m5"};
	CHECK(sent(&e, e.fake.n - 1, m, 3));
	env_done(&e);
}

/* A crash while a reply streams: the state directory is copied as it is on
 * disk mid-call (what kill -9 leaves) and the copy is opened. */
static void test_crash_mid_reply(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t id = make(&e, "k");
	struct reply *t = NULL;
	char buf[TEXT_MAX];

	say(&e, id, "m1");
	reply(&e, last_call(&e), "r1", 0, 1);
	say(&e, id, "tell me");
	uint64_t call = last_call(&e);
	start_msg(&e, call, 0);
	CHECK_EQ_INT(context_output(e.s, id, &t), 0);
	CHECK_EQ_INT(delta(&e, call, "text", "Hello "), 0);
	CHECK_EQ_INT(delta(&e, call, "text", "world"), 0);
	CHECK_EQ_INT(read_all(&e, t, buf, sizeof(buf)), -EAGAIN); /* what was read is saved */
	CHECK_EQ_STR(buf, "Hello world");
	CHECK_EQ_INT(delta(&e, call, "text", ", unread"), 0);
	say(&e, id, "queued"); /* committed, never sent */

	struct env c;
	env_init_disk(&c);
	store_free(c.s);
	c.s = NULL;
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "cp -a '%s/.' '%s/'", e.dir, c.dir);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_EQ_INT(env_open_store(&c, NULL), 0);
	uint64_t cid = 0;
	CHECK_EQ_INT(store_lookup(c.s, "k", &cid), 0);
	struct context_info info;
	CHECK_EQ_INT(context_info(c.s, cid, &info), 0);
	CHECK_EQ_INT(info.turn, 3);
	CHECK(info.idle); /* nothing is sent again by itself */
	CHECK_EQ_INT(c.fake.n, 0);
	const char *tr = view(&c, cid, VIEW_TRANSCRIPT);
	CHECK(has(tr, "--- turn 2, failed: interrupted"));
	CHECK(has(tr, "--- turn 3, failed: interrupted"));
	CHECK(has(tr, "\nqueued\n"));
	CHECK(starts(view(&c, cid, VIEW_STATUS), "error\n"));

	/* Turn 2 kept what a reader saw; a prefix of what arrived. */
	cJSON *j = cJSON_Parse(view(&c, cid, VIEW_TRANSCRIPT_JSON));
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
	const cJSON *a2 = cJSON_GetArrayItem(msgs, 3);
	const char *kept = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a2, "content"));
	CHECK(starts(kept, "Hello world"));
	CHECK(kept && starts("Hello world, unread", kept));
	CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a2, "state")), "failed");
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(a2, "error");
	CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(err, "type")),
		     "interrupted");
	cJSON_Delete(j);

	/* retry sends the newest (turn 3) again, with turn 1 as history. */
	CHECK_EQ_INT(context_retry(c.s, cid, c.why, sizeof(c.why)), 0);
	const char *m[] = {"m1", "r1", "queued"};
	CHECK(sent(&c, 0, m, 3));
	reply(&c, last_call(&c), "done now", 0, 1);
	env_done(&c);

	/* The checkpoint timer saves unread text within 100 ms of the next event. */
	struct timespec ts = {0, 150 * 1000 * 1000};
	nanosleep(&ts, NULL);
	struct wire_event ping = {.type = WIRE_PING, .index = -1};
	CHECK_EQ_INT(reply_call_event(e.s, call, &ping), 0);
	env_init_disk(&c);
	store_free(c.s);
	c.s = NULL;
	snprintf(cmd, sizeof(cmd), "cp -a '%s/.' '%s/'", e.dir, c.dir);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_EQ_INT(env_open_store(&c, NULL), 0);
	CHECK_EQ_INT(store_lookup(c.s, "k", &cid), 0);
	struct reply *ct = NULL;
	(void)context_info(c.s, cid, &info);
	j = cJSON_Parse(view(&c, cid, VIEW_TRANSCRIPT_JSON));
	msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
	a2 = cJSON_GetArrayItem(msgs, 3);
	CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a2, "content")),
		     "Hello world, unread");
	cJSON_Delete(j);
	CHECK_EQ_INT(context_output(c.s, cid, &ct), 0);
	CHECK_EQ_INT(read_all(&c, ct, buf, sizeof(buf)), -EIO); /* turn 3: no text */
	reply_unref(c.s, ct);
	env_done(&c);

	reply_unref(e.s, t);
	env_done(&e);
}

static void test_torn_tail(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t id = make(&e, "torn");
	char p[256];

	say(&e, id, "m1");
	reply(&e, last_call(&e), "r1", 0, 1);
	say(&e, id, "m2");
	reply(&e, last_call(&e), "r2", 0, 1);
	store_free(e.s);
	e.s = NULL;
	journal_path(&e, "torn", p, sizeof(p));
	off_t size = file_size(p);
	CHECK_EQ_INT(truncate(p, size - 5), 0); /* into the REPLY_END of turn 2 */

	CHECK_EQ_INT(env_open_store(&e, NULL), 0);
	CHECK_EQ_INT(store_lookup(e.s, "torn", &id), 0);
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(has(st, "journal_recovered: 0 corrupt record(s) skipped"));
	CHECK(starts(st, "error\n")); /* turn 2 lost its end: interrupted */
	const char *tr = view(&e, id, VIEW_TRANSCRIPT);
	CHECK(has(tr, "--- assistant (turn 1) ---\nr1\n"));
	CHECK(has(tr, "--- turn 2, failed: interrupted"));
	CHECK(has(tr, "\nr2\n")); /* its text was in a part before the end */

	CHECK_EQ_INT(say(&e, id, "m3"), 3);
	const char *m[] = {"m1", "r1", "m3"};
	CHECK(sent(&e, e.fake.n - 1, m, 3));
	reply(&e, last_call(&e), "r3", 0, 1);
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "torn", &id), 0);
	st = view(&e, id, VIEW_STATUS);
	CHECK(!has(st, "journal_recovered"));
	CHECK(starts(st, "idle\n"));
	CHECK(has(view(&e, id, VIEW_TRANSCRIPT), "--- assistant (turn 3) ---\nr3\n"));
	struct journal_report rep;
	CHECK_EQ_INT(journal_scan(p, NULL, NULL, &rep), 0);
	CHECK_EQ_INT(rep.torn_bytes, 0);
	CHECK_EQ_INT(rep.bad_records, 0);
	env_done(&e);
}

/* tests/fixtures/journal/misplaced.mcj: valid records in the wrong place load by
 * the format's rules (doc/design/journal.md §5; issue 17). */
static void test_misplaced_records(void)
{
	struct env e;
	env_init_disk(&e);
	char p[256], cmd[600];
	uint64_t id;

	store_free(e.s);
	e.s = NULL;
	snprintf(p, sizeof(p), "%s/contexts/mis", e.dir);
	CHECK_EQ_INT(mkdir(p, 0700), 0);
	snprintf(cmd, sizeof(cmd), "cp '%s/journal/misplaced.mcj' '%s/journal'", FIXTURES, p);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_EQ_INT(env_open_store(&e, NULL), 0);
	CHECK_EQ_INT(store_lookup(e.s, "mis", &id), 0);

	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "idle\n"));
	CHECK(has(st, "turn: 5\n"));
	CHECK(has(st, "journal_recovered: 4 corrupt record(s) skipped"));
	const char *tr = view(&e, id, VIEW_TRANSCRIPT);
	/* One turn 1, its text replaced; turn 3 done with its own text only. */
	const char *first = strstr(tr, "--- user (turn 1,");
	CHECK(first && !strstr(first + 1, "--- user (turn 1,"));
	CHECK(first && starts(strstr(first, "---\n") + 4, "Hello again\n"));
	CHECK(has(tr, "--- assistant (turn 1) ---\nHi there.\n"));
	CHECK(has(tr, "--- assistant (turn 3) ---\nOui.\n"));
	CHECK(has(tr, "--- user (turn 5,"));
	CHECK(!has(tr, "Non.") && !has(tr, "stale") && !has(tr, "Quatre") && !has(tr, "bad "));
	CHECK(!has(tr, "(turn 4)") && !has(tr, "(turn 6)"));
	/* Usage past 2^53 is not read; the totals are those of turns 1-3. */
	const char *u = view(&e, id, VIEW_USAGE);
	CHECK(has(u, "total_input_tokens: 51\n"));
	CHECK(has(u, "total_output_tokens: 13\n"));
	/* Turn 5's reply keeps its NUL and what follows it. */
	struct reply *t = NULL;
	char out[64];
	CHECK_EQ_INT(context_output(e.s, id, &t), 0);
	CHECK(t != NULL);
	if (t) {
		CHECK_EQ_INT(reply_turn(t), 5);
		CHECK_EQ_INT(read_all(&e, t, out, sizeof(out)), 0);
		CHECK_EQ_INT(reply_size(e.s, t), 6);
		CHECK(memcmp(out, "5\0five", 6) == 0);
		reply_unref(e.s, t);
	}
	env_done(&e);
}

/* --- settings ------------------------------------------------------------------------- */

static void test_settings(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "set");
	char *big = malloc(SETTINGS_SYSTEM_MAX + 1);

	CHECK_EQ_INT(context_set_system(e.s, id, "You are terse.\n", 15, e.why, sizeof(e.why)), 0);
	CHECK_EQ_STR(view(&e, id, VIEW_SYSTEM), "You are terse.\n");
	CHECK_EQ_INT(context_set_system(e.s, id, "bad \xff", 5, e.why, sizeof(e.why)), -EILSEQ);
	memset(big, 'x', SETTINGS_SYSTEM_MAX + 1);
	CHECK_EQ_INT(
	    context_set_system(e.s, id, big, SETTINGS_SYSTEM_MAX + 1, e.why, sizeof(e.why)),
	    -EFBIG);
	free(big);
	CHECK_EQ_STR(view(&e, id, VIEW_SYSTEM), "You are terse.\n");
	CHECK_EQ_INT(context_set_system(e.s, 9999, "x", 1, e.why, sizeof(e.why)), -ENOENT);

	CHECK(config_set(&e, id, "# tuned\nmax_tokens = 100\n\ntemperature = 0.5\n"));
	char *saved = view_dup(&e, id, VIEW_CONFIG);
	const char *bad[] = {"max_tokens = 0\n",
			     "max_tokens = lots\n",
			     "nonsense = 1\n",
			     "temperature = 7\n",
			     "max_tokens = 2000\nthinking_budget = 4000\n",
			     "just words\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e.why[0] = '\0';
		CHECK_EQ_INT(
		    context_set_config(e.s, id, bad[i], strlen(bad[i]), e.why, sizeof(e.why)),
		    -EINVAL);
		CHECK(e.why[0] != '\0');
		CHECK_EQ_STR(view(&e, id, VIEW_CONFIG), saved);
	}
	free(saved);
	CHECK_EQ_INT(context_set_model(e.s, id, "  claude-opus-4-1 \n", 19, e.why, sizeof(e.why)),
		     0);
	CHECK_EQ_STR(view(&e, id, VIEW_MODEL), "claude-opus-4-1\n");
	e.why[0] = '\0';
	CHECK_EQ_INT(context_set_model(e.s, id, "bad model\n", 10, e.why, sizeof(e.why)), -EINVAL);
	CHECK(has(e.why, "bad model"));
	CHECK_EQ_INT(context_set_model(e.s, id, "\n", 1, e.why, sizeof(e.why)), -EINVAL);
	CHECK_EQ_STR(view(&e, id, VIEW_MODEL), "claude-opus-4-1\n");
	struct context_info info;
	CHECK_EQ_INT(context_info(e.s, id, &info), 0);
	CHECK_EQ_STR(info.model, "claude-opus-4-1");

	say(&e, id, "hi");
	const cJSON *mt = body_field(&e, 0, "max_tokens");
	CHECK(cJSON_IsNumber(mt) && mt->valuedouble == 100);
	const cJSON *te = body_field(&e, 0, "temperature");
	CHECK(cJSON_IsNumber(te) && te->valuedouble == 0.5);
	CHECK_EQ_STR(cJSON_GetStringValue(body_field(&e, 0, "model")), "claude-opus-4-1");
	CHECK(has(content_text(body_field(&e, 0, "system")), "You are terse."));
	reply(&e, last_call(&e), "ok", 0, 1);

	/* Settings survive a restart. */
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "set", &id), 0);
	CHECK_EQ_STR(view(&e, id, VIEW_MODEL), "claude-opus-4-1\n");
	CHECK_EQ_STR(view(&e, id, VIEW_SYSTEM), "You are terse.\n");
	CHECK(has(view(&e, id, VIEW_CONFIG), "max_tokens = 100\n"));

	/* A config names the keys it changes; the others keep their value. */
	CHECK(config_set(&e, id, "budget_tokens = 5000\n"));
	const char *cfg = view(&e, id, VIEW_CONFIG);
	CHECK(has(cfg, "max_tokens = 100\n"));
	CHECK(has(cfg, "budget_tokens = 5000\n"));
	CHECK(has(cfg, "model = claude-opus-4-1\n"));
	CHECK(config_set(&e, id, "temperature = default\n"));
	say(&e, id, "unset");
	CHECK(body_field(&e, e.fake.n - 1, "temperature") == NULL);
	reply(&e, last_call(&e), "ok", 0, 1);
	CHECK_EQ_STR(view(&e, id, VIEW_SYSTEM), "You are terse.\n"); /* not a setting */
	CHECK_EQ_INT(context_set_system(e.s, id, "", 0, e.why, sizeof(e.why)), 0);
	say(&e, id, "again");
	CHECK(body_field(&e, e.fake.n - 1, "system") == NULL); /* empty: not sent */
	env_done(&e);
}

static void test_patch(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "p");

	CHECK_EQ_INT(context_set_config(e.s, id, "temperature = 0.5\n", 18, e.why, sizeof(e.why)),
		     0);
	cJSON *ok = cJSON_Parse("{\"model\":\"claude-x-1\",\"system\":\"Patched.\","
				"\"config\":{\"max_tokens\":321}}");
	CHECK_EQ_INT(context_patch(e.s, id, ok, e.why, sizeof(e.why)), 0);
	cJSON_Delete(ok);
	CHECK_EQ_STR(view(&e, id, VIEW_MODEL), "claude-x-1\n");
	CHECK_EQ_STR(view(&e, id, VIEW_SYSTEM), "Patched.");
	const char *cfg = view(&e, id, VIEW_CONFIG);
	CHECK(has(cfg, "max_tokens = 321\n"));
	CHECK(has(cfg, "temperature = 0.5\n")); /* keys not named stay */
	char *saved = view_dup(&e, id, VIEW_CONFIG);

	const char *bad[] = {
	    "{\"config\":{\"max_tokens\":\"lots\"}}",
	    "{\"config\":{\"no_such_key\":1}}",
	    "{\"model\":\"bad model\"}",
	    "{\"model\":5}",
	    "{\"config\":[1]}",
	    "{\"system\":\"Changed.\",\"config\":{\"max_tokens\":0}}",
	    "{\"config\":{\"max_tokens\":2000,\"thinking_budget\":4000}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *p = cJSON_Parse(bad[i]);
		CHECK(p != NULL);
		e.why[0] = '\0';
		CHECK_EQ_INT(context_patch(e.s, id, p, e.why, sizeof(e.why)), -EINVAL);
		CHECK(e.why[0] != '\0');
		cJSON_Delete(p);
		CHECK_EQ_STR(view(&e, id, VIEW_CONFIG), saved);
		CHECK_EQ_STR(view(&e, id, VIEW_SYSTEM), "Patched.");
		CHECK_EQ_STR(view(&e, id, VIEW_MODEL), "claude-x-1\n");
	}
	free(saved);
	cJSON *only = cJSON_Parse("{\"system\":\"\"}");
	CHECK_EQ_INT(context_patch(e.s, id, only, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(context_patch(e.s, 9999, only, e.why, sizeof(e.why)), -ENOENT);
	cJSON_Delete(only);
	CHECK_EQ_STR(view(&e, id, VIEW_SYSTEM), "");
	CHECK_EQ_STR(view(&e, id, VIEW_MODEL), "claude-x-1\n");
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "p", &id), 0);
	CHECK(has(view(&e, id, VIEW_CONFIG), "max_tokens = 321\n"));
	CHECK_EQ_STR(view(&e, id, VIEW_MODEL), "claude-x-1\n");
	env_done(&e);
}

int main(void)
{
	static const struct store_env_test tests[] = {
	    {"reopen_same", test_reopen_same}, {"crash_mid_reply", test_crash_mid_reply},
	    {"torn_tail", test_torn_tail},     {"misplaced_records", test_misplaced_records},
	    {"settings", test_settings},       {"patch", test_patch},
	};
	return store_env_run(tests, sizeof(tests) / sizeof(tests[0]));
}
