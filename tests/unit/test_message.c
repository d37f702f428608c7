/* test_message.c — message.c: staging and submitting a message, reading a turn, the queue, and the
 * ctl commands (cancel, retry, clear), and the room reserved for writers; driven without FUSE or
 * curl through the fake transport and observer of store_env.h (a fresh store on the in-memory
 * engine per test).
 */
#include "store_env.h"

/* A reader stays with the turn that was newest when it opened output. */
static void test_reader_binding(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "r");
	struct reply *r1 = NULL, *r2 = NULL;
	char buf[TEXT_MAX];

	say(&e, id, "one");
	uint64_t c1 = last_call(&e);
	CHECK_EQ_INT(context_output(e.s, id, &r1), 0);
	start_msg(&e, c1, 0);
	CHECK_EQ_INT(delta(&e, c1, "text", "first "), 0);
	say(&e, id, "two"); /* queued behind turn 1 */
	CHECK_EQ_INT(context_output(e.s, id, &r2), 0);
	CHECK(r2 != NULL && reply_turn(r2) == 2);
	CHECK_EQ_INT(delta(&e, c1, "text", "reply"), 0);
	CHECK_EQ_INT(read_all(&e, r1, buf, sizeof(buf)), -EAGAIN);
	CHECK_EQ_STR(buf, "first reply");
	CHECK_EQ_INT(read_all(&e, r2, buf, sizeof(buf)), -EAGAIN);
	CHECK_EQ_STR(buf, "");
	finish_msg(&e, c1, 2);
	uint64_t c2 = last_call(&e);
	CHECK(c2 != c1);
	reply(&e, c2, "second", 0, 1);
	CHECK_EQ_INT(read_all(&e, r1, buf, sizeof(buf)), 0);
	CHECK_EQ_STR(buf, "first reply");
	CHECK_EQ_INT(read_all(&e, r2, buf, sizeof(buf)), 0);
	CHECK_EQ_STR(buf, "second");
	reply_unref(e.s, r1);
	/* A reader may outlive its context. */
	CHECK_EQ_INT(store_delete(e.s, "r"), 0);
	CHECK_EQ_INT(read_all(&e, r2, buf, sizeof(buf)), 0);
	CHECK_EQ_STR(buf, "second");
	reply_unref(e.s, r2);
	env_done(&e);
}

static void test_stage_refused(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "s");
	struct reply *draft = NULL;
	struct context_info info;

	const char *blanks[] = {"", " ", "\n", " \t\r\n  \n"};
	for (size_t i = 0; i < 4; i++) {
		CHECK_EQ_INT(context_stage(e.s, id, &draft, blanks[i], strlen(blanks[i]), e.why,
					   sizeof(e.why)),
			     0);
		CHECK(draft == NULL);
	}
	context_submit(e.s, NULL);
	uint64_t n = 0;
	CHECK_EQ_INT(context_send(e.s, id, "  ", 2, &n, e.why, sizeof(e.why)), -EINVAL);
	CHECK_EQ_INT(context_info(e.s, id, &info), 0);
	CHECK_EQ_INT(info.turn, 0);
	CHECK_EQ_INT(e.fake.n, 0);
	CHECK(starts(view(&e, id, VIEW_STATUS), "idle\n"));

	/* Invalid UTF-8: refused, nothing staged, the reason in status. */
	e.why[0] = '\0';
	CHECK_EQ_INT(context_stage(e.s, id, &draft, "caf\xc3(", 5, e.why, sizeof(e.why)), -EILSEQ);
	CHECK(draft == NULL);
	CHECK(has(e.why, "UTF-8"));
	/* A refusal is not a state of the context: the first line stays. */
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "idle\n"));
	CHECK(has(st, "last_refused: message is not valid UTF-8"));
	CHECK(!has(st, "last_error"));
	CHECK_EQ_INT(context_info(e.s, id, &info), 0);
	CHECK_EQ_INT(info.turn, 0);

	/* Over max_input_bytes. */
	CHECK_EQ_INT(
	    context_set_config(e.s, id, "max_input_bytes = 10\n", 21, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(context_stage(e.s, id, &draft, "0123456789", 10, e.why, sizeof(e.why)), 0);
	CHECK(draft != NULL);
	CHECK(starts(view(&e, id, VIEW_STATUS), "queued\n"));
	CHECK(!has(view(&e, id, VIEW_STATUS), "last_refused")); /* a message was accepted */
	e.why[0] = '\0';
	CHECK_EQ_INT(context_stage(e.s, id, &draft, "0123456789a", 11, e.why, sizeof(e.why)),
		     -EFBIG);
	CHECK(has(e.why, "max_input_bytes"));
	CHECK(has(view(&e, id, VIEW_STATUS), "last_refused: message is 11 bytes"));
	context_submit(e.s, draft); /* the staged 10 bytes stand */
	const char *m[] = {"0123456789"};
	CHECK(sent(&e, 0, m, 1));
	reply(&e, last_call(&e), "ok", 0, 1);

	/* A draft that turns blank is given up; one abandoned fails with why. */
	draft = NULL;
	CHECK_EQ_INT(context_stage(e.s, id, &draft, "x", 1, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(context_stage(e.s, id, &draft, " ", 1, e.why, sizeof(e.why)), 0);
	CHECK(draft == NULL);
	CHECK_EQ_INT(context_stage(e.s, id, &draft, "y", 1, e.why, sizeof(e.why)), 0);
	struct reply *out = NULL;
	CHECK_EQ_INT(context_output(e.s, id, &out), 0);
	context_abandon(e.s, draft, "the writer failed");
	char buf[64];
	CHECK_EQ_INT(reply_read(e.s, out, 0, buf, sizeof(buf)), -EIO);
	st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "error\n"));
	CHECK(has(st, "the writer failed"));
	reply_unref(e.s, out);
	CHECK_EQ_INT(e.fake.n, 1);
	/* The next message is sent normally, without the abandoned ones. */
	CHECK_EQ_INT(context_send(e.s, id, "z", 1, &n, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(n, 4);
	const char *m2[] = {"0123456789", "ok", "z"};
	CHECK(sent(&e, 1, m2, 3));
	CHECK_EQ_INT(context_stage(e.s, 9999, &draft, "x", 1, e.why, sizeof(e.why)), -ENOENT);
	env_done(&e);
}

/* Messages written while a call is in flight wait, in order, and each request
 * carries the exchanges completed before it. */
static void test_queue(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "q");
	struct context_info info;

	CHECK_EQ_INT(say(&e, id, "m1"), 1);
	CHECK_EQ_INT(say(&e, id, "m2"), 2);
	CHECK_EQ_INT(say(&e, id, "m3"), 3);
	CHECK_EQ_INT(e.fake.n, 1);
	CHECK_EQ_INT(context_info(e.s, id, &info), 0);
	CHECK_EQ_INT(info.queued, 2);
	CHECK_EQ_INT(info.turn, 3);
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "waiting\n"));
	CHECK(has(st, "queued: 2\n"));

	const char *s1[] = {"m1"};
	const char *s2[] = {"m1", "r1", "m2"};
	const char *s3[] = {"m1", "r1", "m2", "r2", "m3"};
	CHECK(sent(&e, 0, s1, 1));
	reply(&e, e.fake.spec[0].call_id, "r1", 0, 1);
	CHECK_EQ_INT(e.fake.n, 2);
	CHECK(sent(&e, 1, s2, 3));
	CHECK_EQ_INT(context_info(e.s, id, &info), 0);
	CHECK_EQ_INT(info.queued, 1);
	reply(&e, e.fake.spec[1].call_id, "r2", 0, 1);
	CHECK_EQ_INT(e.fake.n, 3);
	CHECK(sent(&e, 2, s3, 5));
	reply(&e, e.fake.spec[2].call_id, "r3", 0, 1);
	CHECK_EQ_INT(e.fake.n, 3);
	CHECK_EQ_INT(context_info(e.s, id, &info), 0);
	CHECK(info.idle);
	CHECK_EQ_INT(info.queued, 0);
	for (size_t i = 1; i < 3; i++)
		CHECK(e.fake.spec[i].call_id != e.fake.spec[i - 1].call_id);

	/* Contexts do not wait for each other. */
	uint64_t other = make(&e, "other");
	say(&e, id, "m4");
	say(&e, other, "o1");
	CHECK_EQ_INT(e.fake.n, 5);
	CHECK_EQ_INT(store_calls_in_flight(e.s), 2);
	env_done(&e);
}

/* retry after a complete reply regenerates it: the same request again, the new
 * reply in the history in place of the old, both in the transcript, the same
 * after a reload.  The transcript only grows: every rendering starts with the
 * one before (thinking before the text is shown once the text begins). */
static void test_regenerate(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "g");
	say(&e, id, "one");
	reply(&e, last_call(&e), "r1", 0, 1);
	say(&e, id, "two");
	uint64_t call = last_call(&e);
	start_msg(&e, call, 0);
	CHECK_EQ_INT(delta(&e, call, "thinking", "hmm"), 0);
	char *t0 = view_dup(&e, id, VIEW_TRANSCRIPT);
	CHECK(!has(t0, "hmm")); /* a retry could still drop it */
	CHECK_EQ_INT(delta(&e, call, "text", "r2"), 0);
	CHECK_EQ_INT(delta(&e, call, "thinking", "later"), 0);
	char *t1 = view_dup(&e, id, VIEW_TRANSCRIPT);
	CHECK(starts(t1, t0));
	CHECK(has(t1, "--- thinking (turn 2) ---\nhmm\n\n--- assistant (turn 2) ---\nr2"));
	finish_msg(&e, call, 1);
	char *t2 = view_dup(&e, id, VIEW_TRANSCRIPT);
	CHECK(starts(t2, t1));
	CHECK(has(t2, "r2\n\n--- thinking (turn 2, after the text) ---\nlater\n\n"));
	/* A new system prompt between the reply and its regeneration stays where
	 * it was shown. */
	CHECK_EQ_INT(context_set_system(e.s, id, "be kind", 7, e.why, sizeof(e.why)), 0);
	free(t2);
	t2 = view_dup(&e, id, VIEW_TRANSCRIPT);
	CHECK(has(t2, "later\n\n--- system prompt set ---\nbe kind\n\n"));

	CHECK_EQ_INT(context_retry(e.s, id, e.why, sizeof(e.why)), 0);
	char *t2r = view_dup(&e, id, VIEW_TRANSCRIPT);
	CHECK(starts(t2r, t2));
	CHECK(has(t2r, "be kind\n\n--- turn 2, regenerated: the reply above is replaced by "
		       "attempt 2 ---\n\n"));
	const char *m[] = {"one", "r1", "two"};
	CHECK(sent(&e, e.fake.n - 1, m, 3));
	CHECK(!has(view(&e, id, VIEW_HISTORY), "r2"));
	CHECK_EQ_INT(context_retry(e.s, id, e.why, sizeof(e.why)), -EINVAL); /* in flight */
	reply(&e, last_call(&e), "better", 0, 1);
	char *t3 = view_dup(&e, id, VIEW_TRANSCRIPT);
	CHECK(starts(t3, t2r));
	CHECK(has(t3, "--- turn 2, regenerated: the reply above is replaced by attempt 2 ---\n\n"
		      "--- assistant (turn 2, attempt 2) ---\nbetter\n\n"));
	CHECK(has(view(&e, id, VIEW_HISTORY), "\nbetter\n"));
	CHECK(!has(view(&e, id, VIEW_HISTORY), "\nr2\n"));
	say(&e, id, "three");
	const char *m3[] = {"one", "r1", "two", "better", "three"};
	CHECK(sent(&e, e.fake.n - 1, m3, 5));
	reply(&e, last_call(&e), "r3", 0, 1);
	char *t4 = view_dup(&e, id, VIEW_TRANSCRIPT);
	char *h4 = view_dup(&e, id, VIEW_HISTORY_JSON);

	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "g", &id), 0);
	CHECK_EQ_STR(view(&e, id, VIEW_TRANSCRIPT), t4);
	CHECK_EQ_STR(view(&e, id, VIEW_HISTORY_JSON), h4);
	free(t0);
	free(t1);
	free(t2);
	free(t2r);
	free(t3);
	free(t4);
	free(h4);
	env_done(&e);
}

static void test_cancel(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "c");
	char buf[TEXT_MAX];
	struct reply *t = NULL;

	CHECK_EQ_INT(context_cancel(e.s, id), 0);
	CHECK_EQ_INT(context_cancel(e.s, 9999), -ENOENT);
	say(&e, id, "one");
	uint64_t call = last_call(&e);
	say(&e, id, "two"); /* queued: sent once the cancelled call has ended */
	start_msg(&e, call, 0);
	CHECK_EQ_INT(delta(&e, call, "text", "abc"), 0);
	CHECK_EQ_INT(context_output(e.s, id, &t), 0); /* the newest: turn 2 */
	CHECK_EQ_INT(context_cancel(e.s, id), 1);
	CHECK(fake_was_cancelled(&e.fake, call));
	CHECK_EQ_INT(e.fake.n, 2); /* turn 2 went at once */
	CHECK_EQ_INT(store_calls_in_flight(e.s), 1);
	CHECK_EQ_INT(delta(&e, call, "text", "def"), -ECANCELED);
	reply_call_end(e.s, call, -ECANCELED, NULL); /* the transport's late report */
	CHECK(has(view(&e, id, VIEW_TRANSCRIPT), "--- turn 1, failed: cancelled"));
	const char *m2[] = {"two"}; /* the cancelled exchange is not history */
	CHECK(sent(&e, 1, m2, 1));
	reply(&e, last_call(&e), "ok", 0, 1);
	CHECK_EQ_INT(read_all(&e, t, buf, sizeof(buf)), 0);
	CHECK_EQ_STR(buf, "ok");
	reply_unref(e.s, t);
	CHECK(starts(view(&e, id, VIEW_STATUS), "idle\n"));
	CHECK_EQ_INT(context_cancel(e.s, id), 0);

	/* Cancelled with nothing queued: the turn fails, readers get EIO. */
	say(&e, id, "three");
	call = last_call(&e);
	CHECK_EQ_INT(context_output(e.s, id, &t), 0);
	CHECK_EQ_INT(context_cancel(e.s, id), 1);
	reply_call_end(e.s, call, -ECANCELED, NULL);
	struct reply_outcome oc;
	reply_outcome(e.s, t, &oc);
	CHECK_EQ_INT(oc.state, REPLY_FAILED);
	CHECK_EQ_STR(oc.error.type, "cancelled");
	CHECK_EQ_INT(read_all(&e, t, buf, sizeof(buf)), -EIO);
	CHECK_EQ_STR(buf, "");
	reply_unref(e.s, t);
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "error\n"));
	CHECK(has(st, "cancelled"));

	/* The next message goes, without the cancelled exchanges. */
	say(&e, id, "four");
	const char *m[] = {"two", "ok", "four"};
	CHECK(sent(&e, 3, m, 3));
	reply(&e, last_call(&e), "ok", 0, 1);
	CHECK(starts(view(&e, id, VIEW_STATUS), "idle\n"));
	env_done(&e);
}

/* reply_cancel: one turn, queued or in flight; the others go on. */
static void test_turn_cancel(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "tc");
	struct reply *t2 = NULL, *t3 = NULL;

	say(&e, id, "m1");
	uint64_t call1 = last_call(&e);
	say(&e, id, "m2");
	CHECK_EQ_INT(context_output(e.s, id, &t2), 0);
	say(&e, id, "m3");
	CHECK_EQ_INT(context_output(e.s, id, &t3), 0);
	CHECK_EQ_INT(reply_turn(t3), 3);
	CHECK_EQ_INT(reply_cancel(e.s, t3), 1); /* queued: never sent */
	CHECK_EQ_INT(e.fake.n, 1);
	CHECK_EQ_INT(e.fake.n_cancelled, 0);
	reply(&e, call1, "r1", 0, 1);
	CHECK_EQ_INT(e.fake.n, 2); /* m2 next, m3 not at all */
	const char *s2[] = {"m1", "r1", "m2"};
	CHECK(sent(&e, 1, s2, 3));
	uint64_t call2 = last_call(&e);
	CHECK_EQ_INT(reply_cancel(e.s, t2), 1); /* in flight */
	CHECK(fake_was_cancelled(&e.fake, call2));
	reply_call_end(e.s, call2, -ECANCELED, NULL);
	struct reply_outcome oc;
	reply_outcome(e.s, t2, &oc);
	CHECK_EQ_INT(oc.state, REPLY_FAILED);
	CHECK_EQ_STR(oc.error.type, "cancelled");
	CHECK_EQ_INT(reply_cancel(e.s, t2), 0); /* ended already */
	CHECK_EQ_INT(reply_cancel(e.s, t3), 0);
	CHECK_EQ_INT(e.fake.n, 2);
	reply_unref(e.s, t2);
	reply_unref(e.s, t3);
	env_done(&e);
}

static void test_clear(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "cl");

	say(&e, id, "m1");
	reply(&e, last_call(&e), "r1", 0, 1);
	say(&e, id, "m2");
	reply(&e, last_call(&e), "r2", 0, 1);
	say(&e, id, "m3"); /* in flight: the clear cancels it */
	uint64_t call = last_call(&e);
	CHECK_EQ_INT(context_clear(e.s, id), 0);
	CHECK(fake_was_cancelled(&e.fake, call));
	CHECK_EQ_INT(context_clear(e.s, 9999), -ENOENT);
	struct reply *out = NULL;
	CHECK_EQ_INT(context_output(e.s, id, &out), 0);
	CHECK(out == NULL);

	for (int pass = 0; pass < 2; pass++) {
		cJSON *h = cJSON_Parse(view(&e, id, VIEW_HISTORY_JSON));
		const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(h, "messages");
		CHECK(cJSON_IsArray(msgs) && cJSON_GetArraySize(msgs) == 0);
		cJSON_Delete(h);
		CHECK(!has(view(&e, id, VIEW_HISTORY), "m1"));
		const char *tr = view(&e, id, VIEW_TRANSCRIPT);
		CHECK(has(tr, "\nm1\n") && has(tr, "\nr2\n") && has(tr, "\nm3\n"));
		CHECK(has(tr, "--- cleared"));
		CHECK(strstr(tr, "--- cleared") > strstr(tr, "\nm3\n"));
		CHECK(starts(view(&e, id, VIEW_STATUS), "idle\n"));
		env_reopen(&e);
		CHECK_EQ_INT(store_lookup(e.s, "cl", &id), 0);
	}
	CHECK_EQ_INT(context_retry(e.s, id, e.why, sizeof(e.why)), -EINVAL);

	/* The next message starts a new history. */
	size_t before = e.fake.n;
	CHECK_EQ_INT(say(&e, id, "m4"), 4);
	const char *m[] = {"m4"};
	CHECK(sent(&e, before, m, 1));
	reply(&e, last_call(&e), "r4", 0, 1);
	say(&e, id, "m5");
	const char *m5[] = {"m4", "r4", "m5"};
	CHECK(sent(&e, before + 1, m5, 3));
	reply(&e, last_call(&e), "r5", 0, 1);
	const char *tr = view(&e, id, VIEW_TRANSCRIPT);
	CHECK(strstr(tr, "--- cleared") && strstr(tr, "--- cleared") < strstr(tr, "\nm4\n"));
	cJSON *j = cJSON_Parse(view(&e, id, VIEW_TRANSCRIPT_JSON));
	const cJSON *all = cJSON_GetObjectItemCaseSensitive(j, "messages");
	CHECK(cJSON_GetArraySize(all) == 10);
	const cJSON *m4 = cJSON_GetArrayItem(all, 6);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m4, "after_clear")));
	cJSON_Delete(j);
	env_done(&e);
}

/* Room held for writers: whole pages, summed in one unlinked file of the
 * state directory, handed to the record by context_stage_held. */
static void test_reserve(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "r");
	CHECK_EQ_INT(store_text_cost("abc", 3), 3);
	CHECK_EQ_INT(store_text_cost("a\"b\\c\n", 6), 9);
	CHECK_EQ_INT(store_text_cost("\x01", 1), 6);
	CHECK_EQ_INT(store_text_cost("\xc3\xa9", 2), 2);
	uint64_t a = 0, b = 0;
	CHECK_EQ_INT(store_reserve(e.s, &a, 10), 0);
	CHECK_EQ_INT(a, 4096);
	CHECK_EQ_INT(store_reserve(e.s, &a, 5000), 0);
	CHECK_EQ_INT(a, 8192);
	CHECK_EQ_INT(store_reserve(e.s, &a, 100), 0); /* never shrinks */
	CHECK_EQ_INT(a, 8192);
	CHECK_EQ_INT(store_reserve(e.s, &b, 1), 0);
	CHECK_EQ_INT(b, 4096);
	/* nothing of it is visible in the state directory */
	DIR *d = opendir(e.dir);
	size_t tmp = 0;
	for (struct dirent *de; d && (de = readdir(d));)
		tmp += strstr(de->d_name, "reserve") != NULL;
	if (d)
		closedir(d);
	CHECK_EQ_INT(tmp, 0);
	store_unreserve(e.s, &b);
	CHECK_EQ_INT(b, 0);
	struct reply *draft = NULL;
	CHECK_EQ_INT(context_stage_held(e.s, id, &draft, &a, "hello", 5, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(a, 0);
	CHECK(draft != NULL);
	context_submit(e.s, draft);
	store_unreserve(e.s, &a); /* 0: nothing */
	env_done(&e);
}

int main(void)
{
	static const struct store_env_test tests[] = {
	    {"reader_binding", test_reader_binding},
	    {"stage_refused", test_stage_refused},
	    {"queue", test_queue},
	    {"regenerate", test_regenerate},
	    {"cancel", test_cancel},
	    {"reply_cancel", test_turn_cancel},
	    {"clear", test_clear},
	    {"reserve", test_reserve},
	};
	return store_env_run(tests, sizeof(tests) / sizeof(tests[0]));
}
