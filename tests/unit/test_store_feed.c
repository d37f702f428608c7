/* test_store_feed.c — store_feed.c: two stores on one shared in-memory engine
 * (storage_mem_new_shared) are two daemons on one database.  What store A does
 * store B shows through its feed thread and catch-up: names (created, renamed,
 * deleted), settings, a reply streamed on A read live on B (a remote turn: B
 * makes no call), the history after it, a turn of B's own after A's.  B's feed
 * thread applies them; the test waits for each, at most WAIT_MS.
 */
#include <time.h>

#include "store_env.h"

#define WAIT_MS 5000

/* Two daemons: a owns the engine, b is opened on it too. */
struct two {
	struct env a, b;
};

static void two_init(struct two *t)
{
	memset(t, 0, sizeof(*t));
	struct env *e[2] = {&t->a, &t->b};
	CHECK_EQ_INT(storage_mem_new_shared(&t->a.mem), 0);
	t->b.mem = t->a.mem;
	for (int i = 0; i < 2; i++) {
		fake_done(&e[i]->fake);
		for (int k = 0; k < VIEWS; k++)
			buf_init(&e[i]->views[k], 64u << 20);
		CHECK_EQ_INT(env_open_store(e[i], NULL), 0);
	}
}

static void two_done(struct two *t)
{
	store_free(t->b.s); /* stops its feed thread */
	t->b.s = NULL;
	fake_done(&t->b.fake);
	for (int k = 0; k < VIEWS; k++)
		buf_done(&t->b.views[k]);
	env_done(&t->a); /* frees the engine */
}

static void nap(void)
{
	struct timespec ts = {0, 10 * 1000 * 1000};
	nanosleep(&ts, NULL);
}

/* Waits until cond holds (evaluated again every 10 ms), at most WAIT_MS. */
#define EVENTUALLY(cond)                                                                           \
	do {                                                                                       \
		int waited_ = 0;                                                                   \
		while (!(cond) && waited_ < WAIT_MS) {                                             \
			nap();                                                                     \
			waited_ += 10;                                                             \
		}                                                                                  \
		CHECK(cond);                                                                       \
	} while (0)

static bool named(struct env *e, const char *name)
{
	uint64_t id;
	return store_lookup(e->s, name, &id) == 0;
}

static uint64_t id_of(struct env *e, const char *name)
{
	uint64_t id = 0;
	CHECK_EQ_INT(store_lookup(e->s, name, &id), 0);
	return id;
}

/* The current view of b's context `name`, or "" when it is not there. */
static const char *b_view(struct two *t, const char *name, enum view_kind kind)
{
	uint64_t id;
	if (store_lookup(t->b.s, name, &id) < 0)
		return "";
	struct buf *b = &t->b.views[t->b.next_view++ % VIEWS];
	buf_reset(b);
	if (context_render(t->b.s, id, kind, b) < 0)
		return "";
	return b->data ? b->data : "";
}

static void test_names(void)
{
	struct two t;
	two_init(&t);
	make(&t.a, "alpha");
	EVENTUALLY(named(&t.b, "alpha"));
	CHECK_EQ_INT(store_rename(t.a.s, "alpha", "beta"), 0);
	EVENTUALLY(named(&t.b, "beta") && !named(&t.b, "alpha"));
	make(&t.b, "gamma");
	EVENTUALLY(named(&t.a, "gamma"));
	CHECK_EQ_INT(store_delete(t.a.s, "beta"), 0);
	EVENTUALLY(!named(&t.b, "beta"));
	CHECK(named(&t.b, "gamma"));
	two_done(&t);
}

static void test_settings(void)
{
	struct two t;
	two_init(&t);
	uint64_t id = make(&t.a, "s");
	EVENTUALLY(named(&t.b, "s"));
	CHECK(!has(b_view(&t, "s", VIEW_SYSTEM), "terse")); /* loaded on b now */
	CHECK_EQ_INT(context_set_system(t.a.s, id, "Be terse.", 9, t.a.why, sizeof(t.a.why)), 0);
	EVENTUALLY(!strcmp(b_view(&t, "s", VIEW_SYSTEM), "Be terse."));
	CHECK(config_set(&t.a, id, "temperature = 0.25\n"));
	EVENTUALLY(has(b_view(&t, "s", VIEW_CONFIG), "temperature = 0.25"));
	two_done(&t);
}

/* Reads what t has from off on into out (NUL-terminated): bytes, 0 at its
 * end, or -EAGAIN / -EIO. */
static ssize_t read_at(struct env *e, struct reply *t, size_t off, char *out, size_t cap)
{
	ssize_t n = reply_read(e->s, t, off, out, cap - 1);
	out[n > 0 ? n : 0] = '\0';
	return n;
}

/* `output`'s turn of e's context id once there is one (a reference), NULL
 * after WAIT_MS. */
static struct reply *wait_output(struct env *e, uint64_t id)
{
	struct reply *out = NULL;
	for (int waited = 0; waited < WAIT_MS; waited += 10) {
		if (context_output(e->s, id, &out) == 0 && out)
			return out;
		nap();
	}
	CHECK(out != NULL);
	return NULL;
}

static void test_reply_read_live(void)
{
	struct two t;
	two_init(&t);
	uint64_t ida = make(&t.a, "live");
	EVENTUALLY(named(&t.b, "live"));
	uint64_t idb = id_of(&t.b, "live");
	CHECK(!has(b_view(&t, "live", VIEW_HISTORY), "hello")); /* loaded on b */

	CHECK_EQ_INT(say(&t.a, ida, "hello"), 1);
	uint64_t call = last_call(&t.a);
	CHECK(call != 0);
	start_msg(&t.a, call, 10);
	CHECK_EQ_INT(delta(&t.a, call, "text", "alpha "), 0);
	/* b sees the turn (a remote one: its output waits on it) */
	struct reply *out = wait_output(&t.b, idb);
	if (!out)
		return two_done(&t);
	char buf[256];
	EVENTUALLY(read_at(&t.b, out, 0, buf, sizeof(buf)) == 6);
	CHECK(!strcmp(buf, "alpha "));
	CHECK_EQ_INT(read_at(&t.b, out, 6, buf, sizeof(buf)), -EAGAIN); /* not ended */
	CHECK_EQ_INT(context_status_word(t.b.s, idb, buf, sizeof(buf)), 0);
	CHECK(!strcmp(buf, "streaming")); /* a's turn, as b shows it */
	CHECK_EQ_INT(delta(&t.a, call, "text", "beta"), 0);
	finish_msg(&t.a, call, 5);
	EVENTUALLY(read_at(&t.b, out, 6, buf, sizeof(buf)) == 4);
	CHECK(!strcmp(buf, "beta"));
	EVENTUALLY(read_at(&t.b, out, 10, buf, sizeof(buf)) == 0); /* the end */
	reply_unref(t.b.s, out);
	CHECK_EQ_INT(t.b.fake.n, 0); /* b made no call: the turn is a's */

	/* the history on b is a's, and a turn of b's own sends it */
	char *ha = view_dup(&t.a, ida, VIEW_HISTORY);
	EVENTUALLY(!strcmp(b_view(&t, "live", VIEW_HISTORY), ha));
	free(ha);
	CHECK_EQ_INT(say(&t.b, idb, "again"), 2);
	CHECK_EQ_INT(t.b.fake.n, 1);
	const char *msgs[] = {"hello", "alpha beta", "again"};
	CHECK(sent(&t.b, 0, msgs, 3));
	reply(&t.b, last_call(&t.b), "gamma", 10, 5);
	EVENTUALLY(has(view(&t.a, ida, VIEW_HISTORY), "gamma"));
	CHECK_EQ_INT(t.a.fake.n, 1); /* a made no call for b's turn */
	two_done(&t);
}

/* A context deleted on a while b reads its remote turn: b's reader is told
 * (the turn ends), as a local delete tells it. */
static void test_delete_ends_remote_turn(void)
{
	struct two t;
	two_init(&t);
	uint64_t ida = make(&t.a, "d");
	EVENTUALLY(named(&t.b, "d"));
	uint64_t idb = id_of(&t.b, "d");
	CHECK_EQ_INT(say(&t.a, ida, "hello"), 1);
	struct reply *out = wait_output(&t.b, idb);
	if (!out)
		return two_done(&t);
	char buf[64];
	CHECK_EQ_INT(read_at(&t.b, out, 0, buf, sizeof(buf)), -EAGAIN);
	CHECK_EQ_INT(store_delete(t.a.s, "d"), 0);
	EVENTUALLY(!named(&t.b, "d"));
	CHECK_EQ_INT(read_at(&t.b, out, 0, buf, sizeof(buf)), -EIO);
	reply_unref(t.b.s, out);
	two_done(&t);
}

int main(void)
{
	static const struct store_env_test tests[] = {
	    {"names", test_names},
	    {"settings", test_settings},
	    {"reply_read_live", test_reply_read_live},
	    {"delete_ends_remote_turn", test_delete_ends_remote_turn},
	};
	return store_env_run(tests, sizeof(tests) / sizeof(tests[0]));
}
