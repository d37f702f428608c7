/* test_ctl.c — ctl.c: the ctl commands' words, parsed and dispatched for the
 * ctl file, the MCP tool and POST .../cancel alike; driven through the fake
 * transport of store_env.h (a fresh store on the in-memory engine per test).
 */
#include "mcpfs/ctl.h"
#include "store_env.h"

static int run(struct env *e, uint64_t id, const char *line, const char **done)
{
	e->why[0] = '\0';
	*done = NULL;
	return ctl_run(e->s, id, line, strlen(line), done, e->why, sizeof(e->why));
}

/* Blanks around the word are ignored; a blank line does nothing. */
static void test_words(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "w");
	const char *done;

	CHECK_EQ_INT(run(&e, id, "", &done), 0);
	CHECK_EQ_STR(done, "nothing to do: the line is empty");
	CHECK_EQ_INT(run(&e, id, " \t\r", &done), 0);
	CHECK_EQ_INT(e.fake.n, 0);
	CHECK_EQ_INT(run(&e, id, "  cancel\r", &done), 0);
	CHECK_EQ_STR(done, "nothing to cancel: no call is in flight");
	CHECK_EQ_INT(run(&e, id, "\tclear ", &done), 0);
	CHECK_EQ_STR(done, "cleared the history");
	/* The length is what counts, not a NUL: "cancelled" is not "cancel". */
	CHECK_EQ_INT(ctl_run(e.s, id, "cancelled", 6, &done, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(run(&e, id, "cancelled", &done), -EINVAL);
	CHECK_EQ_STR(e.why,
		     "unknown command 'cancelled' (cancel, clear, retry, compact, fork, undo)");
	/* Words are not case-folded, and inner blanks are part of the word. */
	CHECK_EQ_INT(run(&e, id, "CANCEL", &done), -EINVAL);
	CHECK_EQ_INT(run(&e, id, "can cel", &done), -EINVAL);
	CHECK_EQ_STR(e.why,
		     "unknown command 'can cel' (cancel, clear, retry, compact, fork, undo)");
	CHECK(done == NULL);
	env_done(&e);
}

/* The unknown word is quoted as a log line quotes user text, and never put in
 * `why` as bytes that are not text. */
static void test_unknown_quoted(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "q");
	const char *done;

	CHECK_EQ_INT(run(&e, id, "say \"hi\"\x01", &done), -EINVAL);
	CHECK_EQ_STR(
	    e.why, "unknown command 'say \"hi\"\\x01' (cancel, clear, retry, compact, fork, undo)");
	CHECK_EQ_INT(run(&e, id, "caf\xc3", &done), -EINVAL);
	CHECK_EQ_STR(
	    e.why,
	    "unknown command '(not UTF-8 text)' (cancel, clear, retry, compact, fork, undo)");
	CHECK_EQ_INT(ctl_run(e.s, id, "a\0b", 3, &done, e.why, sizeof(e.why)), -EINVAL);
	CHECK_EQ_STR(
	    e.why,
	    "unknown command '(not UTF-8 text)' (cancel, clear, retry, compact, fork, undo)");
	char longest[200];
	memset(longest, 'x', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	CHECK_EQ_INT(run(&e, id, longest, &done), -EINVAL);
	/* cut to 79 bytes, "..." included */
	CHECK_EQ_INT(strlen(e.why),
		     strlen("unknown command '' (cancel, clear, retry, compact, fork, undo)") + 79);
	CHECK(has(e.why, "xxx...' (cancel, clear, retry, compact, fork, undo)"));
	env_done(&e);
}

/* Each word runs its command: cancel returns 1 when a call was in flight. */
static void test_dispatch(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "d");
	const char *done;

	CHECK_EQ_INT(run(&e, id, "retry", &done), -EINVAL);
	CHECK_EQ_STR(e.why, "nothing to retry: no message was sent yet");
	say(&e, id, "one");
	uint64_t call = last_call(&e);
	CHECK_EQ_INT(run(&e, id, "cancel", &done), 1);
	CHECK_EQ_STR(done, "cancelled the call in flight");
	CHECK(fake_was_cancelled(&e.fake, call));
	reply_call_end(e.s, call, -ECANCELED, NULL);
	CHECK_EQ_INT(run(&e, id, "retry", &done), 0);
	CHECK_EQ_STR(done, "sent the newest message again");
	CHECK_EQ_INT(e.fake.n, 2);
	reply(&e, last_call(&e), "fine", 0, 1);
	CHECK_EQ_INT(run(&e, id, "clear", &done), 0);
	CHECK(!has(view(&e, id, VIEW_HISTORY), "fine"));
	CHECK_EQ_INT(run(&e, 9999, "cancel", &done), -ENOENT);
	CHECK_EQ_INT(run(&e, 9999, "clear", &done), -ENOENT);
	env_done(&e);
}

/* What reading the ctl file shows: a line per command, in ctl_run's words. */
static void test_help(void)
{
	CHECK_EQ_INT(strncmp(ctl_help, "cancel\t", 7), 0);
	CHECK(strstr(ctl_help, "\nclear\t") != NULL);
	CHECK(strstr(ctl_help, "\nretry\t") != NULL);
	CHECK(ctl_help[strlen(ctl_help) - 1] == '\n');
}

int main(void)
{
	static const struct store_env_test tests[] = {
	    {"words", test_words},
	    {"unknown_quoted", test_unknown_quoted},
	    {"dispatch", test_dispatch},
	    {"help", test_help},
	};
	return store_env_run(tests, sizeof(tests) / sizeof(tests[0]));
}
