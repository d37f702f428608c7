/* test_reply.c — reply.c: a turn's call, its events and its end, retries after failures, and the
 * pruned history a call sends; driven without FUSE or curl through the fake transport and observer
 * of store_env.h (a fresh store per test: on the in-memory engine, or on a fresh state directory
 * under /tmp, removed after, for what needs a journal on disk).
 */
#include "store_env.h"

/* --- a turn ------------------------------------------------------------------------- */

static void test_turn(void)
{
	struct env e;
	env_init_disk(&e);
	uint64_t id = make(&e, "t");
	struct reply *draft = NULL, *out = NULL;
	char buf[TEXT_MAX], p[256];
	struct context_info info;

	CHECK_EQ_INT(context_set_system(e.s, id, "Be terse.", 9, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(context_output(e.s, id, &out), 0);
	CHECK(out == NULL); /* no turn yet */

	CHECK_EQ_INT(context_stage(e.s, id, &draft, "hello", 5, e.why, sizeof(e.why)), 0);
	CHECK(draft != NULL);
	CHECK_EQ_INT(reply_turn(draft), 1);
	CHECK_EQ_INT(reply_context(draft), id);
	CHECK_EQ_INT(context_output(e.s, id, &out), 0);
	CHECK(out != NULL && reply_turn(out) == 1); /* bound as soon as staged */
	CHECK_EQ_INT(reply_read(e.s, out, 0, buf, sizeof(buf)), -EAGAIN);
	CHECK_EQ_INT(context_info(e.s, id, &info), 0);
	CHECK_EQ_INT(info.state, REPLY_PENDING);
	CHECK(!info.idle);
	CHECK_EQ_INT(e.fake.n, 0); /* not sent before the submit */

	/* Re-staging replaces the text with one more USER record; the same text
	 * again writes nothing. */
	CHECK_EQ_INT(context_stage(e.s, id, &draft, "hello world", 11, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(context_stage(e.s, id, &draft, "hello world", 11, e.why, sizeof(e.why)), 0);
	size_t counts[8] = {0};
	struct journal_report rep;
	journal_path(&e, "t", p, sizeof(p));
	CHECK_EQ_INT(journal_scan(p, count_type, counts, &rep), 0);
	CHECK_EQ_INT(counts[JOURNAL_USER], 2);
	/* A message still being written is not in the transcript yet: its text
	 * may change, and the transcript never changes what it showed. */
	CHECK(!has(view(&e, id, VIEW_TRANSCRIPT), "hello"));

	context_submit(e.s, draft);
	CHECK(has(view(&e, id, VIEW_TRANSCRIPT), "\nhello world\n"));
	CHECK_EQ_INT(e.fake.n, 1);
	CHECK(e.fake.body_len_ok);
	const char *msgs[] = {"hello world"};
	CHECK(sent(&e, 0, msgs, 1));
	const cJSON *model = body_field(&e, 0, "model");
	CHECK(cJSON_IsString(model) && !strcmp(model->valuestring, SETTINGS_DEFAULT_MODEL));
	const cJSON *mt = body_field(&e, 0, "max_tokens");
	CHECK(cJSON_IsNumber(mt) && mt->valuedouble == 4096);
	CHECK(cJSON_IsTrue(body_field(&e, 0, "stream")));
	CHECK(body_field(&e, 0, "temperature") == NULL); /* unset: not sent */
	const cJSON *sys = body_field(&e, 0, "system");
	CHECK(has(content_text(sys), "Be terse."));
	CHECK_EQ_INT(e.fake.spec[0].max_retries, 2);
	CHECK_EQ_INT(e.fake.spec[0].connect_timeout_ms, 10000);
	CHECK_EQ_INT(e.fake.spec[0].idle_timeout_ms, 90000);
	CHECK_EQ_INT(store_calls_in_flight(e.s), 1);
	CHECK(starts(view(&e, id, VIEW_STATUS), "waiting\n"));

	uint64_t call = last_call(&e);
	reply_call_response(e.s, call, 200, "req_0001");
	start_msg(&e, call, 12);
	CHECK(starts(view(&e, id, VIEW_STATUS), "streaming\n"));
	CHECK_EQ_INT(reply_read(e.s, out, 0, buf, sizeof(buf)), -EAGAIN);
	CHECK_EQ_INT(delta(&e, call, "thinking", "Let me think."), 0);
	CHECK_EQ_INT(delta(&e, call, "text", "Hel"), 0);
	CHECK_EQ_INT(reply_read(e.s, out, 0, buf, 2), 2);
	CHECK(!memcmp(buf, "He", 2));
	CHECK_EQ_INT(reply_read(e.s, out, 2, buf, sizeof(buf)), 1);
	CHECK_EQ_INT(reply_read(e.s, out, 3, buf, sizeof(buf)), -EAGAIN);
	CHECK_EQ_INT(delta(&e, call, "text", "lo!"), 0);
	CHECK_EQ_INT(reply_size(e.s, out), 6);
	CHECK_EQ_INT(reply_read(e.s, out, 3, buf, sizeof(buf)), 3);
	CHECK(!memcmp(buf, "lo!", 3));
	CHECK_EQ_INT(reply_read(e.s, out, 6, buf, sizeof(buf)), -EAGAIN);
	CHECK_EQ_INT(reply_read(e.s, out, 60, buf, sizeof(buf)), -EAGAIN);
	struct wire_event ping = {.type = WIRE_PING, .index = -1};
	CHECK_EQ_INT(reply_call_event(e.s, call, &ping), 0);
	finish_msg(&e, call, 5);
	CHECK_EQ_INT(reply_read(e.s, out, 6, buf, sizeof(buf)), 0);
	CHECK_EQ_INT(read_all(&e, out, buf, sizeof(buf)), 0);
	CHECK_EQ_STR(buf, "Hello!"); /* thinking is not output */
	CHECK_EQ_INT(store_calls_in_flight(e.s), 0);

	struct reply_outcome oc;
	reply_outcome(e.s, out, &oc);
	CHECK_EQ_INT(oc.state, REPLY_DONE);
	CHECK_EQ_STR(oc.stop_reason, "end_turn");
	CHECK_EQ_INT(oc.usage.input_tokens, 12);
	CHECK_EQ_INT(oc.usage.output_tokens, 5);
	CHECK(oc.usage.present & WIRE_USAGE_INPUT);
	CHECK_EQ_INT(context_info(e.s, id, &info), 0);
	CHECK(info.idle);
	CHECK_EQ_INT(info.turn, 1);
	CHECK_EQ_INT(info.output_size, 6);
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "idle\n"));
	CHECK(has(st, "stop_reason: end_turn\n"));
	CHECK(has(st, "request_id: req_0001\n"));
	const char *u = view(&e, id, VIEW_USAGE);
	CHECK(has(u, "last_input_tokens: 12\n"));
	CHECK(has(u, "total_output_tokens: 5\n"));
	CHECK(has(u, "calls: 1\n"));
	const char *tr = view(&e, id, VIEW_TRANSCRIPT);
	CHECK(has(tr, "--- thinking (turn 1) ---\nLet me think.\n"));
	CHECK(has(tr, "--- assistant (turn 1) ---\nHello!\n"));
	CHECK(has(view(&e, id, VIEW_HISTORY), "--- user (turn 1) ---\nhello world\n"));

	/* Events for a call that is over are refused; its end is ignored. */
	CHECK_EQ_INT(delta(&e, call, "text", "late"), -ECANCELED);
	reply_call_end(e.s, call, -EIO, NULL);
	reply_outcome(e.s, out, &oc);
	CHECK_EQ_INT(oc.state, REPLY_DONE);
	CHECK_EQ_INT(reply_size(e.s, out), 6);
	reply_unref(e.s, out);
	env_done(&e);
}

static void test_failure_retry(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "f");
	char buf[TEXT_MAX];
	struct api_error err;
	struct reply *t1 = NULL, *t2 = NULL;

	/* Retry with nothing sent, or after a success: -EINVAL with why. */
	e.why[0] = '\0';
	CHECK_EQ_INT(context_retry(e.s, id, e.why, sizeof(e.why)), -EINVAL);
	CHECK(has(e.why, "nothing to retry"));

	say(&e, id, "question");
	uint64_t call = last_call(&e);
	CHECK_EQ_INT(context_output(e.s, id, &t1), 0);
	/* A retry of the transport's shows while it waits. */
	api_err(&err, "overloaded_error", "Overloaded", "req_a", 529);
	reply_call_retry(e.s, call, 1, &err, 500);
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "waiting\n"));
	CHECK(has(st, "turn_attempt: 1\n"));
	CHECK(has(st, "call_turn: 1\ncall_retries: 1 of 2\n"));
	CHECK(has(st, "retrying: after overloaded_error: Overloaded\n"));
	CHECK(!has(st, "last_error"));
	reply_call_response(e.s, call, 200, "req_b");
	start_msg(&e, call, 0);
	CHECK_EQ_INT(delta(&e, call, "text", "partial "), 0);
	CHECK_EQ_INT(delta(&e, call, "text", "text"), 0);
	api_err(&err, "api_error", "Internal server error", "req_b", 0);
	reply_call_end(e.s, call, -EIO, &err);
	CHECK_EQ_INT(read_all(&e, t1, buf, sizeof(buf)), -EIO);
	CHECK_EQ_STR(buf, "partial text");
	CHECK_EQ_INT(reply_read(e.s, t1, 3, buf, 4), 4);
	CHECK(!memcmp(buf, "tial", 4));
	st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "error\n"));
	CHECK(has(st, "last_error: api_error: Internal server error\n"));
	CHECK(has(st, "request_id: req_b\n"));
	CHECK(!has(st, "retrying"));
	struct reply_outcome oc;
	reply_outcome(e.s, t1, &oc);
	CHECK_EQ_INT(oc.state, REPLY_FAILED);
	CHECK_EQ_STR(oc.error.type, "api_error");
	CHECK_EQ_STR(oc.error.request_id, "req_b");
	CHECK(has(view(&e, id, VIEW_TRANSCRIPT),
		  "--- turn 1, failed: api_error: Internal server error ---"));
	CHECK(has(view(&e, id, VIEW_INFO_JSON), "\"api_error\""));

	/* retry sends the same message again as attempt 2 of turn 1. */
	CHECK_EQ_INT(context_retry(e.s, id, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(e.fake.n, 2);
	const char *m[] = {"question"};
	CHECK(sent(&e, 1, m, 1));
	CHECK_EQ_INT(context_output(e.s, id, &t2), 0);
	CHECK(t2 != t1 && reply_turn(t2) == 1);
	st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "waiting\n"));
	CHECK(has(st, "attempt: 2\n"));
	CHECK_EQ_INT(context_retry(e.s, id, e.why, sizeof(e.why)), -EINVAL); /* in flight */
	reply(&e, last_call(&e), "answer", 0, 1);
	CHECK_EQ_INT(read_all(&e, t2, buf, sizeof(buf)), 0);
	CHECK_EQ_STR(buf, "answer");
	CHECK_EQ_INT(read_all(&e, t1, buf, sizeof(buf)), -EIO); /* the old reader's turn */
	CHECK_EQ_STR(buf, "partial text");
	/* (retry after a complete reply regenerates it: test_regenerate) */
	CHECK_EQ_INT(context_retry(e.s, 9999, e.why, sizeof(e.why)), -ENOENT);
	CHECK(starts(view(&e, id, VIEW_STATUS), "idle\n"));
	/* The transcript keeps the failed attempt, then the new one. */
	CHECK(
	    has(view(&e, id, VIEW_TRANSCRIPT),
		"partial text\n\n--- turn 1, failed: api_error: "
		"Internal server error ---\n\n--- assistant (turn 1, attempt 2) ---\nanswer\n\n"));

	/* A failed turn is left out of the next request; the next message goes. */
	say(&e, id, "second");
	call = last_call(&e);
	reply_call_end(e.s, call, -ETIMEDOUT, NULL);
	CHECK(has(view(&e, id, VIEW_STATUS), "last_error: timeout_error"));
	say(&e, id, "third");
	const char *m3[] = {"question", "answer", "third"};
	CHECK(sent(&e, e.fake.n - 1, m3, 3));
	reply(&e, last_call(&e), "r3", 0, 1);
	reply_unref(e.s, t1);
	reply_unref(e.s, t2);

	/* The same after a reload: the failed turn can be retried. */
	say(&e, id, "fourth");
	api_err(&err, "invalid_request_error", "bad", "req_c", 400);
	reply_call_end(e.s, last_call(&e), -EIO, &err);
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "f", &id), 0);
	st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "error\n"));
	CHECK(has(st, "last_error: invalid_request_error: bad\n"));
	CHECK(has(st, "http_status: 400\n"));
	size_t before = e.fake.n;
	CHECK_EQ_INT(context_retry(e.s, id, e.why, sizeof(e.why)), 0);
	const char *m4[] = {"question", "answer", "third", "r3", "fourth"};
	CHECK(sent(&e, before, m4, 5));
	env_done(&e);
}

/* --- pruning ------------------------------------------------------------------------ */

static void test_prune(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "p");
	char big_q[301], big_a[301], huge[701];

	memset(big_q, 'q', 300);
	big_q[300] = '\0';
	memset(big_a, 'a', 300);
	big_a[300] = '\0';
	memset(huge, 'h', 700);
	huge[700] = '\0';
	/* Dropping (tests/unit/test_summary.c has summarizing). */
	CHECK_EQ_INT(context_set_config(e.s, id, "budget_tokens = 200\nprune = drop", 32, e.why,
					sizeof(e.why)),
		     0);

	/* ~104 estimated tokens each way: the exchange cannot go with another message. */
	say(&e, id, big_q);
	reply(&e, last_call(&e), big_a, 0, 1);
	CHECK(has(view(&e, id, VIEW_HISTORY), "pruned")); /* alone over the budget */
	say(&e, id, "second question");
	const char *m2[] = {"second question"};
	CHECK(sent(&e, 1, m2, 1));
	reply(&e, last_call(&e), "short answer", 0, 1);
	say(&e, id, "third");
	const char *m3[] = {"second question", "short answer", "third"};
	CHECK(sent(&e, 2, m3, 3));
	reply(&e, last_call(&e), "ok", 0, 1);

	const char *h = view(&e, id, VIEW_HISTORY);
	CHECK(has(h, "pruned: 2 earlier message(s), turns 1-1"));
	CHECK(!has(h, big_q));
	CHECK(has(h, "second question"));
	cJSON *j = cJSON_Parse(view(&e, id, VIEW_HISTORY_JSON));
	const cJSON *pm = cJSON_GetObjectItemCaseSensitive(j, "pruned_messages");
	CHECK(cJSON_IsNumber(pm) && pm->valuedouble == 2);
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
	CHECK_EQ_INT(cJSON_GetArraySize(msgs), 4);
	const cJSON *first = cJSON_GetArrayItem(msgs, 0);
	CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(first, "role")), "user");
	cJSON_Delete(j);
	CHECK(has(view(&e, id, VIEW_TRANSCRIPT), big_q));

	/* A message that alone is over the budget is refused when it is staged;
	 * with the system prompt over it, its turn fails without a call; the
	 * next one is sent. */
	size_t before = e.fake.n;
	struct reply *t = NULL;
	CHECK_EQ_INT(context_input_check(e.s, id, strlen(huge), e.why, sizeof(e.why)), -EFBIG);
	CHECK(has(e.why, "budget_tokens"));
	CHECK_EQ_INT(context_stage(e.s, id, &t, huge, strlen(huge), e.why, sizeof(e.why)), -EFBIG);
	CHECK(t == NULL);
	CHECK(has(e.why, "message alone needs about"));
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "idle\n"));
	CHECK(has(st, "last_refused: message alone needs about"));
	CHECK_EQ_INT(context_set_system(e.s, id, big_q, 300, e.why, sizeof(e.why)), 0);
	say(&e, id, big_q);
	CHECK_EQ_INT(e.fake.n, before);
	CHECK_EQ_INT(context_output(e.s, id, &t), 0);
	struct reply_outcome oc;
	reply_outcome(e.s, t, &oc);
	CHECK_EQ_INT(oc.state, REPLY_FAILED);
	CHECK_EQ_STR(oc.error.type, "budget_exceeded");
	CHECK(has(oc.error.message, "budget_tokens"));
	char buf[16];
	CHECK_EQ_INT(reply_read(e.s, t, 0, buf, sizeof(buf)), -EIO);
	reply_unref(e.s, t);
	st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "error\n"));
	CHECK(has(st, "turn_state: failed\n"));
	CHECK(has(st, "last_error: budget_exceeded"));
	CHECK_EQ_INT(context_set_system(e.s, id, "", 0, e.why, sizeof(e.why)), 0);
	say(&e, id, "small");
	CHECK_EQ_INT(e.fake.n, before + 1);
	reply(&e, last_call(&e), "fine", 0, 1);
	env_done(&e);
}

int main(void)
{
	static const struct store_env_test tests[] = {
	    {"turn", test_turn},
	    {"failure_retry", test_failure_retry},
	    {"prune", test_prune},
	};
	return store_env_run(tests, sizeof(tests) / sizeof(tests[0]));
}
