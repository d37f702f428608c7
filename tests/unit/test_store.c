/* test_store.c — the core store (store.h) driven without FUSE or curl.
 *
 * A fake transport records every call the store starts (its JSON body parsed
 * with cJSON, so tests assert what would have been sent) and every cancel; the
 * test plays the network thread by calling store_call_response/event/retry/end
 * itself, with events decoded by wire_event_decode from the data lines the API
 * sends.  An observer records every notification and calls back into the store
 * (which deadlocks if an observer were ever called with the lock held).  Every
 * test gets a fresh state directory under /tmp, removed afterwards.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "mcpfs/journal.h"
#include "mcpfs/store.h"
#include "mcpfs/wire.h"

#define CALLS_MAX 32
#define SEEN_MAX 1024
#define VIEWS 8
#define TEXT_MAX 8192

/* --- the fake transport ------------------------------------------------------ */

struct fake {
	struct call_spec spec[CALLS_MAX]; /* body NULL: parsed into json[] */
	cJSON *json[CALLS_MAX];
	size_t n;
	uint64_t cancelled[CALLS_MAX];
	size_t n_cancelled;
	bool body_len_ok; /* every body_len matched strlen(body) */
};

static int fake_start(void *impl, struct call_spec *spec)
{
	struct fake *f = impl;

	if (f->n == CALLS_MAX)
		return -ENOSPC; /* the store frees the body when start fails */
	if (strlen(spec->body) != spec->body_len)
		f->body_len_ok = false;
	f->json[f->n] = cJSON_ParseWithLength(spec->body, spec->body_len);
	f->spec[f->n] = *spec;
	f->spec[f->n].body = NULL;
	f->n++;
	free(spec->body);
	return 0;
}

static void fake_cancel(void *impl, uint64_t call_id)
{
	struct fake *f = impl;

	if (f->n_cancelled < CALLS_MAX)
		f->cancelled[f->n_cancelled++] = call_id;
}

static const struct transport_ops fake_ops = {fake_start, fake_cancel};

/* The same transport with the Models API: it only records what it was asked
 * (the test answers with store_models_answer, as the network thread would). */
static char models_asked[16][SETTINGS_MODEL_MAX + 2];
static size_t n_models_asked;

static void fake_models(void *impl, const char *model, int connect_timeout_ms)
{
	(void)impl;
	(void)connect_timeout_ms;
	if (n_models_asked < 16)
		snprintf(models_asked[n_models_asked++], sizeof(models_asked[0]), "%s",
			 model ? model : "*");
}

static const struct transport_ops fake_models_ops = {fake_start, fake_cancel, fake_models};

static void fake_done(struct fake *f)
{
	for (size_t i = 0; i < f->n; i++)
		cJSON_Delete(f->json[i]);
	memset(f, 0, sizeof(*f));
	f->body_len_ok = true;
}

static bool fake_was_cancelled(const struct fake *f, uint64_t id)
{
	for (size_t i = 0; i < f->n_cancelled; i++)
		if (f->cancelled[i] == id)
			return true;
	return false;
}

/* --- the observer -------------------------------------------------------------- */

struct obs {
	struct store *s;
	struct {
		uint64_t id;
		unsigned what;
	} seen[SEEN_MAX];
	size_t n;
};

static void on_change(void *data, uint64_t id, unsigned what)
{
	struct obs *o = data;

	(void)store_calls_in_flight(o->s); /* takes the lock: must not be held here */
	if (o->n < SEEN_MAX) {
		o->seen[o->n].id = id;
		o->seen[o->n].what = what;
		o->n++;
	}
}

/* Notifications for id carrying bit, from index since on. */
static size_t obs_count(const struct obs *o, size_t since, uint64_t id, unsigned bit)
{
	size_t k = 0;

	for (size_t i = since; i < o->n; i++)
		if (o->seen[i].id == id && (o->seen[i].what & bit))
			k++;
	return k;
}

/* --- one test's world ---------------------------------------------------------- */

struct env {
	char dir[64];
	struct store *s;
	struct fake fake;
	struct obs obs;
	struct buf views[VIEWS];
	unsigned next_view;
	char why[512];
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	chmod(path, 0700);
	return remove(path) < 0 ? -1 : 0;
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int env_open_store(struct env *e, const char *defaults)
{
	int r = store_open(e->dir, defaults, &e->s, e->why, sizeof(e->why));

	if (r < 0) {
		e->s = NULL;
		return r;
	}
	store_set_transport(e->s, &fake_ops, &e->fake);
	e->obs.s = e->s;
	store_observe(e->s, on_change, &e->obs);
	return 0;
}

static void env_init(struct env *e)
{
	memset(e, 0, sizeof(*e));
	fake_done(&e->fake);
	snprintf(e->dir, sizeof(e->dir), "/tmp/mcpfs-test-store-XXXXXX");
	if (!mkdtemp(e->dir)) {
		perror("mkdtemp");
		exit(1);
	}
	for (int i = 0; i < VIEWS; i++)
		buf_init(&e->views[i], 64u << 20);
	CHECK_EQ_INT(env_open_store(e, NULL), 0);
}

/* A clean restart: free the store and open the same directory again. */
static void env_reopen(struct env *e)
{
	store_free(e->s);
	e->s = NULL;
	CHECK_EQ_INT(env_open_store(e, NULL), 0);
}

static void env_done(struct env *e)
{
	store_free(e->s);
	fake_done(&e->fake);
	for (int i = 0; i < VIEWS; i++)
		buf_done(&e->views[i]);
	rm_rf(e->dir);
}

static bool has(const char *s, const char *sub)
{
	return s && strstr(s, sub) != NULL;
}

static bool starts(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A rendering of a context; lives until VIEWS more renderings were made. */
static const char *view(struct env *e, uint64_t id, enum view_kind kind)
{
	struct buf *b = &e->views[e->next_view++ % VIEWS];

	buf_reset(b);
	CHECK_EQ_INT(context_render(e->s, id, kind, b), 0);
	return b->data ? b->data : "";
}

static char *view_dup(struct env *e, uint64_t id, enum view_kind kind)
{
	char *p = strdup(view(e, id, kind));

	if (!p)
		abort();
	return p;
}

static uint64_t make(struct env *e, const char *name)
{
	uint64_t id = 0;

	CHECK_EQ_INT(store_create(e->s, name, &id), 0);
	return id;
}

/* Stage and submit; the draft's turn number, 0 when nothing was staged. */
static uint64_t say(struct env *e, uint64_t id, const char *text)
{
	struct turn *draft = NULL;
	int r = context_stage(e->s, id, &draft, text, strlen(text), e->why, sizeof(e->why));

	CHECK_EQ_INT(r, 0);
	uint64_t n = draft ? turn_number(draft) : 0;
	context_submit(e->s, draft);
	return n;
}

static uint64_t last_call(const struct env *e)
{
	return e->fake.n ? e->fake.spec[e->fake.n - 1].call_id : 0;
}

/* Decodes one SSE data line and reports it as the network thread would. */
static int event(struct env *e, uint64_t call, const char *data)
{
	struct wire_event ev;
	int r = wire_event_decode(NULL, 0, data, strlen(data), &ev);

	CHECK_EQ_INT(r, 0);
	if (r < 0)
		return r;
	r = store_call_event(e->s, call, &ev);
	store_call_flush(e->s); /* one event per chunk of bytes */
	wire_event_done(&ev);
	return r;
}

/* A content_block_delta of kind "text" or "thinking". */
static int delta(struct env *e, uint64_t call, const char *kind, const char *text)
{
	cJSON *o = cJSON_CreateObject(), *d = cJSON_CreateObject();
	char type[32];

	snprintf(type, sizeof(type), "%s_delta", kind);
	cJSON_AddStringToObject(o, "type", "content_block_delta");
	cJSON_AddNumberToObject(o, "index", 0);
	cJSON_AddStringToObject(d, "type", type);
	cJSON_AddStringToObject(d, kind, text);
	cJSON_AddItemToObject(o, "delta", d);
	char *data = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	int r = event(e, call, data);
	free(data);
	return r;
}

static void start_msg(struct env *e, uint64_t call, long long in_tokens)
{
	char data[512];

	if (in_tokens > 0)
		snprintf(data, sizeof(data),
			 "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_%llu\",\"type\":"
			 "\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],"
			 "\"stop_reason\":null,\"usage\":{\"input_tokens\":%lld,"
			 "\"output_tokens\":1}}}",
			 (unsigned long long)call, in_tokens);
	else
		snprintf(data, sizeof(data),
			 "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_%llu\",\"type\":"
			 "\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],"
			 "\"stop_reason\":null,\"usage\":{\"output_tokens\":1}}}",
			 (unsigned long long)call);
	CHECK_EQ_INT(event(e, call, data), 0);
	CHECK_EQ_INT(event(e, call,
			   "{\"type\":\"content_block_start\",\"index\":0,"
			   "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}"),
		     0);
}

static void finish_msg(struct env *e, uint64_t call, long long out_tokens)
{
	char data[256];

	CHECK_EQ_INT(event(e, call, "{\"type\":\"content_block_stop\",\"index\":0}"), 0);
	snprintf(data, sizeof(data),
		 "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
		 "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":%lld}}",
		 out_tokens);
	CHECK_EQ_INT(event(e, call, data), 0);
	CHECK_EQ_INT(event(e, call, "{\"type\":\"message_stop\"}"), 0);
	store_call_end(e->s, call, 0, NULL);
}

/* A whole successful reply, its text in two deltas.  in_tokens 0: no input
 * usage (keeps the pruning calibration at its start). */
static void reply(struct env *e, uint64_t call, const char *text, long long in_tokens,
		  long long out_tokens)
{
	size_t half = strlen(text) / 2;
	char first[TEXT_MAX];

	start_msg(e, call, in_tokens);
	snprintf(first, sizeof(first), "%.*s", (int)half, text);
	if (half)
		CHECK_EQ_INT(delta(e, call, "text", first), 0);
	CHECK_EQ_INT(delta(e, call, "text", text + half), 0);
	finish_msg(e, call, out_tokens);
}

static void api_err(struct api_error *err, const char *type, const char *msg, const char *rid,
		    int status)
{
	api_error_clear(err);
	api_error_set(err, type, "%s", msg);
	snprintf(err->request_id, sizeof(err->request_id), "%s", rid);
	err->http_status = status;
}

/* Reads a turn from offset 0 in small pieces, as a reader would; returns the
 * result that stopped it (0, -EAGAIN, -EIO) with the text in out. */
static ssize_t read_all(struct env *e, struct turn *t, char *out, size_t cap)
{
	size_t off = 0;
	ssize_t r;

	while ((r = turn_read(e->s, t, off, out + off, cap - 1 - off < 5 ? cap - 1 - off : 5)) > 0)
		off += (size_t)r;
	out[off] = '\0';
	return r;
}

/* The text of a message's content: a string, or the first block's text. */
static const char *content_text(const cJSON *content)
{
	if (cJSON_IsString(content))
		return content->valuestring;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(content, 0), "text");
	return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Whether call i sent exactly these messages, alternating from a user one. */
static bool sent(const struct env *e, size_t i, const char *const *texts, size_t n)
{
	if (i >= e->fake.n) {
		fprintf(stderr, "  call %zu was not started (%zu calls)\n", i, e->fake.n);
		return false;
	}
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(e->fake.json[i], "messages");
	bool ok = cJSON_IsArray(msgs) && (size_t)cJSON_GetArraySize(msgs) == n;
	for (size_t k = 0; ok && k < n; k++) {
		const cJSON *m = cJSON_GetArrayItem(msgs, (int)k);
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
		const char *text = content_text(cJSON_GetObjectItemCaseSensitive(m, "content"));
		ok = cJSON_IsString(role) &&
		     !strcmp(role->valuestring, k % 2 ? "assistant" : "user") && text &&
		     !strcmp(text, texts[k]);
	}
	if (!ok) {
		char *p = cJSON_PrintUnformatted(msgs);
		fprintf(stderr, "  call %zu sent %s\n", i, p ? p : "(nothing)");
		free(p);
	}
	return ok;
}

static const cJSON *body_field(const struct env *e, size_t i, const char *key)
{
	return i < e->fake.n ? cJSON_GetObjectItemCaseSensitive(e->fake.json[i], key) : NULL;
}

static void journal_path(const struct env *e, const char *name, char *out, size_t n)
{
	snprintf(out, n, "%s/contexts/%s/journal", e->dir, name);
}

static int count_type(void *data, uint16_t type, const void *payload, size_t len, uint64_t off)
{
	size_t *counts = data;

	(void)payload, (void)len, (void)off;
	if (type < 8)
		counts[type]++;
	return 0;
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? -1 : st.st_size;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

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
	env_init(&e);
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
	env_init(&e);
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
	CHECK_EQ_INT(info.state, TURN_DONE);
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
	env_init(&e);
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
	env_init(&e);
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
	store_call_end(e.s, last_call(&e), -EIO, &err);
	id = make(&e, "cut");
	say(&e, id, "q");
	start_msg(&e, last_call(&e), 0);
	CHECK_EQ_INT(delta(&e, last_call(&e), "text", "half"), 0);
	id = make(&e, "cleared");
	say(&e, id, "q");
	store_call_end(e.s, last_call(&e), -EIO, &err);
	CHECK_EQ_INT(context_clear(e.s, id), 0);
	make(&e, "empty");
	/* turns whose records lie before the last 64 KiB of the journal */
	char *big = malloc(60000);
	memset(big, 's', 60000);
	for (int k = 0; k < 2; k++) {
		id = make(&e, k ? "big-failed" : "big-done");
		say(&e, id, "q");
		if (k)
			store_call_end(e.s, last_call(&e), -EIO, &err);
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

/* --- a turn ------------------------------------------------------------------------- */

static void test_turn(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "t");
	struct turn *draft = NULL, *out = NULL;
	char buf[TEXT_MAX], p[256];
	struct context_info info;

	CHECK_EQ_INT(context_set_system(e.s, id, "Be terse.", 9, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(context_output(e.s, id, &out), 0);
	CHECK(out == NULL); /* no turn yet */

	CHECK_EQ_INT(context_stage(e.s, id, &draft, "hello", 5, e.why, sizeof(e.why)), 0);
	CHECK(draft != NULL);
	CHECK_EQ_INT(turn_number(draft), 1);
	CHECK_EQ_INT(turn_context(draft), id);
	CHECK_EQ_INT(context_output(e.s, id, &out), 0);
	CHECK(out != NULL && turn_number(out) == 1); /* bound as soon as staged */
	CHECK_EQ_INT(turn_read(e.s, out, 0, buf, sizeof(buf)), -EAGAIN);
	CHECK_EQ_INT(context_info(e.s, id, &info), 0);
	CHECK_EQ_INT(info.state, TURN_PENDING);
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
	store_call_response(e.s, call, 200, "req_0001");
	start_msg(&e, call, 12);
	CHECK(starts(view(&e, id, VIEW_STATUS), "streaming\n"));
	CHECK_EQ_INT(turn_read(e.s, out, 0, buf, sizeof(buf)), -EAGAIN);
	CHECK_EQ_INT(delta(&e, call, "thinking", "Let me think."), 0);
	CHECK_EQ_INT(delta(&e, call, "text", "Hel"), 0);
	CHECK_EQ_INT(turn_read(e.s, out, 0, buf, 2), 2);
	CHECK(!memcmp(buf, "He", 2));
	CHECK_EQ_INT(turn_read(e.s, out, 2, buf, sizeof(buf)), 1);
	CHECK_EQ_INT(turn_read(e.s, out, 3, buf, sizeof(buf)), -EAGAIN);
	CHECK_EQ_INT(delta(&e, call, "text", "lo!"), 0);
	CHECK_EQ_INT(turn_size(e.s, out), 6);
	CHECK_EQ_INT(turn_read(e.s, out, 3, buf, sizeof(buf)), 3);
	CHECK(!memcmp(buf, "lo!", 3));
	CHECK_EQ_INT(turn_read(e.s, out, 6, buf, sizeof(buf)), -EAGAIN);
	CHECK_EQ_INT(turn_read(e.s, out, 60, buf, sizeof(buf)), -EAGAIN);
	struct wire_event ping = {.type = WIRE_PING, .index = -1};
	CHECK_EQ_INT(store_call_event(e.s, call, &ping), 0);
	finish_msg(&e, call, 5);
	CHECK_EQ_INT(turn_read(e.s, out, 6, buf, sizeof(buf)), 0);
	CHECK_EQ_INT(read_all(&e, out, buf, sizeof(buf)), 0);
	CHECK_EQ_STR(buf, "Hello!"); /* thinking is not output */
	CHECK_EQ_INT(store_calls_in_flight(e.s), 0);

	struct turn_outcome oc;
	turn_outcome(e.s, out, &oc);
	CHECK_EQ_INT(oc.state, TURN_DONE);
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
	store_call_end(e.s, call, -EIO, NULL);
	turn_outcome(e.s, out, &oc);
	CHECK_EQ_INT(oc.state, TURN_DONE);
	CHECK_EQ_INT(turn_size(e.s, out), 6);
	turn_unref(e.s, out);
	env_done(&e);
}

/* A reader stays with the turn that was newest when it opened output. */
static void test_reader_binding(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "r");
	struct turn *r1 = NULL, *r2 = NULL;
	char buf[TEXT_MAX];

	say(&e, id, "one");
	uint64_t c1 = last_call(&e);
	CHECK_EQ_INT(context_output(e.s, id, &r1), 0);
	start_msg(&e, c1, 0);
	CHECK_EQ_INT(delta(&e, c1, "text", "first "), 0);
	say(&e, id, "two"); /* queued behind turn 1 */
	CHECK_EQ_INT(context_output(e.s, id, &r2), 0);
	CHECK(r2 != NULL && turn_number(r2) == 2);
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
	turn_unref(e.s, r1);
	/* A reader may outlive its context. */
	CHECK_EQ_INT(store_delete(e.s, "r"), 0);
	CHECK_EQ_INT(read_all(&e, r2, buf, sizeof(buf)), 0);
	CHECK_EQ_STR(buf, "second");
	turn_unref(e.s, r2);
	env_done(&e);
}

static void test_stage_refused(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "s");
	struct turn *draft = NULL;
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
	struct turn *out = NULL;
	CHECK_EQ_INT(context_output(e.s, id, &out), 0);
	context_abandon(e.s, draft, "the writer failed");
	char buf[64];
	CHECK_EQ_INT(turn_read(e.s, out, 0, buf, sizeof(buf)), -EIO);
	st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "error\n"));
	CHECK(has(st, "the writer failed"));
	turn_unref(e.s, out);
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

static void test_failure_retry(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "f");
	char buf[TEXT_MAX];
	struct api_error err;
	struct turn *t1 = NULL, *t2 = NULL;

	/* Retry with nothing sent, or after a success: -EINVAL with why. */
	e.why[0] = '\0';
	CHECK_EQ_INT(context_retry(e.s, id, e.why, sizeof(e.why)), -EINVAL);
	CHECK(has(e.why, "nothing to retry"));

	say(&e, id, "question");
	uint64_t call = last_call(&e);
	CHECK_EQ_INT(context_output(e.s, id, &t1), 0);
	/* A retry of the transport's shows while it waits. */
	api_err(&err, "overloaded_error", "Overloaded", "req_a", 529);
	store_call_retry(e.s, call, 1, &err, 500);
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "waiting\n"));
	CHECK(has(st, "turn_attempt: 1\n"));
	CHECK(has(st, "call_turn: 1\ncall_retries: 1 of 2\n"));
	CHECK(has(st, "retrying: after overloaded_error: Overloaded\n"));
	CHECK(!has(st, "last_error"));
	store_call_response(e.s, call, 200, "req_b");
	start_msg(&e, call, 0);
	CHECK_EQ_INT(delta(&e, call, "text", "partial "), 0);
	CHECK_EQ_INT(delta(&e, call, "text", "text"), 0);
	api_err(&err, "api_error", "Internal server error", "req_b", 0);
	store_call_end(e.s, call, -EIO, &err);
	CHECK_EQ_INT(read_all(&e, t1, buf, sizeof(buf)), -EIO);
	CHECK_EQ_STR(buf, "partial text");
	CHECK_EQ_INT(turn_read(e.s, t1, 3, buf, 4), 4);
	CHECK(!memcmp(buf, "tial", 4));
	st = view(&e, id, VIEW_STATUS);
	CHECK(starts(st, "error\n"));
	CHECK(has(st, "last_error: api_error: Internal server error\n"));
	CHECK(has(st, "request_id: req_b\n"));
	CHECK(!has(st, "retrying"));
	struct turn_outcome oc;
	turn_outcome(e.s, t1, &oc);
	CHECK_EQ_INT(oc.state, TURN_FAILED);
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
	CHECK(t2 != t1 && turn_number(t2) == 1);
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
	store_call_end(e.s, call, -ETIMEDOUT, NULL);
	CHECK(has(view(&e, id, VIEW_STATUS), "last_error: timeout_error"));
	say(&e, id, "third");
	const char *m3[] = {"question", "answer", "third"};
	CHECK(sent(&e, e.fake.n - 1, m3, 3));
	reply(&e, last_call(&e), "r3", 0, 1);
	turn_unref(e.s, t1);
	turn_unref(e.s, t2);

	/* The same after a reload: the failed turn can be retried. */
	say(&e, id, "fourth");
	api_err(&err, "invalid_request_error", "bad", "req_c", 400);
	store_call_end(e.s, last_call(&e), -EIO, &err);
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

/* A turn waits for the Models API's answer, is shaped from it, and a warm
 * cache asks nothing more; cancel works while it waits; a retired model fails
 * before any call; an unknown model fails the write. */
static void test_models(void)
{
	struct env e;
	env_init(&e);
	store_set_transport(e.s, &fake_models_ops, &e.fake);
	n_models_asked = 0;
	uint64_t id = make(&e, "c");
	const char *caps5 = "{\"id\":\"claude-sonnet-5-5\",\"capabilities\":{\"thinking\":"
			    "{\"supported\":true,\"types\":{\"adaptive\":{\"supported\":true},"
			    "\"enabled\":{\"supported\":false}}},\"effort\":{\"supported\":true,"
			    "\"low\":{\"supported\":true}}}}";

	CHECK_EQ_INT(context_set_config(e.s, id, "thinking = 2048\neffort = high\n", 30, e.why,
					sizeof(e.why)),
		     0);
	say(&e, id, "one");
	CHECK_EQ_INT(e.fake.n, 0); /* no call before the answer */
	CHECK_EQ_INT(n_models_asked, 1);
	CHECK_EQ_STR(models_asked[0], SETTINGS_DEFAULT_MODEL);
	CHECK(starts(view(&e, id, VIEW_STATUS), "waiting\n"));
	say(&e, id, "two"); /* queued behind; asks nothing more */
	CHECK_EQ_INT(n_models_asked, 1);
	CHECK_EQ_INT(context_cancel(e.s, id), 1); /* the waiting turn goes */
	CHECK_EQ_INT(e.fake.n, 0);
	store_models_answer(e.s, SETTINGS_DEFAULT_MODEL, 200, caps5, strlen(caps5), NULL);
	CHECK_EQ_INT(e.fake.n, 1); /* turn 2, shaped: adaptive, effort high ignored */
	const cJSON *th = body_field(&e, 0, "thinking");
	CHECK(th && !strcmp(cJSON_GetObjectItem(th, "type")->valuestring, "adaptive"));
	CHECK(body_field(&e, 0, "output_config") == NULL);
	CHECK(has(view(&e, id, VIEW_STATUS), "ignored: effort high (the model takes low)\n"));
	reply(&e, last_call(&e), "ok", 0, 1);
	for (int i = 0; i < 5; i++) {
		say(&e, id, "more");
		reply(&e, last_call(&e), "ok", 0, 1);
	}
	CHECK_EQ_INT(n_models_asked, 1); /* warm: no more questions */
	CHECK_EQ_INT(e.fake.n, 6);

	/* retired: the list is asked for (the advice), then the turn fails */
	const char *old = "{\"id\":\"old-1\",\"line\":\"l\",\"lifecycle\":\"retired\"}";
	const char *page = "{\"data\":[{\"id\":\"new-2\",\"line\":\"l\"},{\"id\":\"old-1\","
			   "\"line\":\"l\",\"lifecycle\":\"retired\"}],\"has_more\":false}";
	store_models_answer(e.s, "old-1", 200, old, strlen(old), NULL);
	CHECK_EQ_INT(context_set_model(e.s, id, "old-1\n", 6, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(n_models_asked, 2);
	CHECK_EQ_STR(models_asked[1], "*"); /* the write asked for the list */
	say(&e, id, "to the retired");
	CHECK_EQ_INT(e.fake.n, 6);
	size_t lens[] = {strlen(page)};
	store_models_list(e.s, &page, lens, 1, NULL);
	CHECK_EQ_INT(e.fake.n, 6); /* no call */
	CHECK(has(view(&e, id, VIEW_STATUS), "last_error: model_retired: old-1 is retired; the "
					     "newest active model of line 'l' is new-2\n"));

	/* unknown: the write fails */
	store_models_answer(e.s, "nope-9", 404, NULL, 0, NULL);
	CHECK_EQ_INT(context_set_model(e.s, id, "nope-9\n", 7, e.why, sizeof(e.why)), -EINVAL);
	CHECK(has(e.why, "does not exist"));
	CHECK_EQ_INT(
	    store_model_check_text(e.s, id, 1, "model = nope-9\n", 15, e.why, sizeof(e.why)),
	    -EINVAL);
	CHECK_EQ_INT(store_model_check_text(e.s, id, 1, "model = nope-9", 14, e.why, sizeof(e.why)),
		     0); /* not a whole line yet */
	CHECK(has(view(&e, id, VIEW_MODEL), "old-1"));
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
	struct turn *t = NULL;

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
	store_call_end(e.s, call, -ECANCELED, NULL); /* the transport's late report */
	CHECK(has(view(&e, id, VIEW_TRANSCRIPT), "--- turn 1, failed: cancelled"));
	const char *m2[] = {"two"}; /* the cancelled exchange is not history */
	CHECK(sent(&e, 1, m2, 1));
	reply(&e, last_call(&e), "ok", 0, 1);
	CHECK_EQ_INT(read_all(&e, t, buf, sizeof(buf)), 0);
	CHECK_EQ_STR(buf, "ok");
	turn_unref(e.s, t);
	CHECK(starts(view(&e, id, VIEW_STATUS), "idle\n"));
	CHECK_EQ_INT(context_cancel(e.s, id), 0);

	/* Cancelled with nothing queued: the turn fails, readers get EIO. */
	say(&e, id, "three");
	call = last_call(&e);
	CHECK_EQ_INT(context_output(e.s, id, &t), 0);
	CHECK_EQ_INT(context_cancel(e.s, id), 1);
	store_call_end(e.s, call, -ECANCELED, NULL);
	struct turn_outcome oc;
	turn_outcome(e.s, t, &oc);
	CHECK_EQ_INT(oc.state, TURN_FAILED);
	CHECK_EQ_STR(oc.error.type, "cancelled");
	CHECK_EQ_INT(read_all(&e, t, buf, sizeof(buf)), -EIO);
	CHECK_EQ_STR(buf, "");
	turn_unref(e.s, t);
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

/* turn_cancel: one turn, queued or in flight; the others go on. */
static void test_turn_cancel(void)
{
	struct env e;
	env_init(&e);
	uint64_t id = make(&e, "tc");
	struct turn *t2 = NULL, *t3 = NULL;

	say(&e, id, "m1");
	uint64_t call1 = last_call(&e);
	say(&e, id, "m2");
	CHECK_EQ_INT(context_output(e.s, id, &t2), 0);
	say(&e, id, "m3");
	CHECK_EQ_INT(context_output(e.s, id, &t3), 0);
	CHECK_EQ_INT(turn_number(t3), 3);
	CHECK_EQ_INT(turn_cancel(e.s, t3), 1); /* queued: never sent */
	CHECK_EQ_INT(e.fake.n, 1);
	CHECK_EQ_INT(e.fake.n_cancelled, 0);
	reply(&e, call1, "r1", 0, 1);
	CHECK_EQ_INT(e.fake.n, 2); /* m2 next, m3 not at all */
	const char *s2[] = {"m1", "r1", "m2"};
	CHECK(sent(&e, 1, s2, 3));
	uint64_t call2 = last_call(&e);
	CHECK_EQ_INT(turn_cancel(e.s, t2), 1); /* in flight */
	CHECK(fake_was_cancelled(&e.fake, call2));
	store_call_end(e.s, call2, -ECANCELED, NULL);
	struct turn_outcome oc;
	turn_outcome(e.s, t2, &oc);
	CHECK_EQ_INT(oc.state, TURN_FAILED);
	CHECK_EQ_STR(oc.error.type, "cancelled");
	CHECK_EQ_INT(turn_cancel(e.s, t2), 0); /* ended already */
	CHECK_EQ_INT(turn_cancel(e.s, t3), 0);
	CHECK_EQ_INT(e.fake.n, 2);
	turn_unref(e.s, t2);
	turn_unref(e.s, t3);
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
	struct turn *out = NULL;
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
	CHECK_EQ_INT(context_set_config(e.s, id, "budget_tokens = 200", 19, e.why, sizeof(e.why)),
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
	struct turn *t = NULL;
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
	struct turn_outcome oc;
	turn_outcome(e.s, t, &oc);
	CHECK_EQ_INT(oc.state, TURN_FAILED);
	CHECK_EQ_STR(oc.error.type, "budget_exceeded");
	CHECK(has(oc.error.message, "budget_tokens"));
	char buf[16];
	CHECK_EQ_INT(turn_read(e.s, t, 0, buf, sizeof(buf)), -EIO);
	turn_unref(e.s, t);
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
	store_call_end(e.s, call, -EIO, &err);
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
	env_init(&e);
	uint64_t id = make(&e, "k");
	struct turn *t = NULL;
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
	env_init(&c);
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
	CHECK_EQ_INT(store_call_event(e.s, call, &ping), 0);
	env_init(&c);
	store_free(c.s);
	c.s = NULL;
	snprintf(cmd, sizeof(cmd), "cp -a '%s/.' '%s/'", e.dir, c.dir);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_EQ_INT(env_open_store(&c, NULL), 0);
	CHECK_EQ_INT(store_lookup(c.s, "k", &cid), 0);
	struct turn *ct = NULL;
	(void)context_info(c.s, cid, &info);
	j = cJSON_Parse(view(&c, cid, VIEW_TRANSCRIPT_JSON));
	msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
	a2 = cJSON_GetArrayItem(msgs, 3);
	CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a2, "content")),
		     "Hello world, unread");
	cJSON_Delete(j);
	CHECK_EQ_INT(context_output(c.s, cid, &ct), 0);
	CHECK_EQ_INT(read_all(&c, ct, buf, sizeof(buf)), -EIO); /* turn 3: no text */
	turn_unref(c.s, ct);
	env_done(&c);

	turn_unref(e.s, t);
	env_done(&e);
}

static void test_torn_tail(void)
{
	struct env e;
	env_init(&e);
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
	env_init(&e);
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
	struct turn *t = NULL;
	char out[64];
	CHECK_EQ_INT(context_output(e.s, id, &t), 0);
	CHECK(t != NULL);
	if (t) {
		CHECK_EQ_INT(turn_number(t), 5);
		CHECK_EQ_INT(read_all(&e, t, out, sizeof(out)), 0);
		CHECK_EQ_INT(turn_size(e.s, t), 6);
		CHECK(memcmp(out, "5\0five", 6) == 0);
		turn_unref(e.s, t);
	}
	env_done(&e);
}

/* --- settings ------------------------------------------------------------------------- */

/* Sets a context's config to text and checks the result: the keys text names
 * changed, every other key kept its value. */
static bool config_set(struct env *e, uint64_t id, const char *text)
{
	struct buf b;
	struct settings d;
	char why[256];

	buf_init(&b, 1 << 16);
	const char *before = view(e, id, VIEW_CONFIG);
	settings_init(&d);
	CHECK_EQ_INT(settings_parse(&d, before, strlen(before), why, sizeof(why)), 0);
	CHECK_EQ_INT(settings_parse(&d, text, strlen(text), why, sizeof(why)), 0);
	CHECK_EQ_INT(settings_render(&d, &b), 0);
	int r = context_set_config(e->s, id, text, strlen(text), e->why, sizeof(e->why));
	const char *got = view(e, id, VIEW_CONFIG);
	bool ok = r == 0 && b.data && !strcmp(got, b.data);
	if (!ok)
		fprintf(stderr, "  config_set: %d, config is:\n%s  expected:\n%s", r, got, b.data);
	buf_done(&b);
	return ok;
}

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
	CHECK_EQ_INT(store_call_event(e.s, call, &ev), 0);
	CHECK_EQ_INT(store_call_event(e.s, call, &ev), 0);
	wire_event_done(&ev);
	CHECK_EQ_INT(e.obs.n, mark);
	store_call_flush(e.s);
	CHECK_EQ_INT(obs_count(&e.obs, mark, id, STORE_CHANGED_OUTPUT), 1);
	CHECK_EQ_INT(e.obs.n, mark + 1);
	store_call_flush(e.s);
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
	struct turn *t = NULL, *draft = NULL, *pending = NULL;
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
	store_call_end(e.s, call, -ECANCELED, NULL);
	turn_unref(e.s, t);
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
	CHECK(turn_read(e.s, pending, 0, buf, sizeof(buf)) != -EAGAIN);
	CHECK_EQ_INT(context_stage(e.s, id, &draft, "half more", 9, e.why, sizeof(e.why)), -ENOENT);
	context_submit(e.s, draft);
	CHECK_EQ_INT(e.fake.n, 1);
	turn_unref(e.s, pending);
	CHECK_EQ_INT(store_create(e.s, "draft", NULL), 0); /* the name is free again */
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
	struct turn *draft = NULL;
	CHECK_EQ_INT(context_stage_held(e.s, id, &draft, &a, "hello", 5, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(a, 0);
	CHECK(draft != NULL);
	context_submit(e.s, draft);
	store_unreserve(e.s, &a); /* 0: nothing */
	env_done(&e);
}

int main(void)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
	    {"open_layout", test_open_layout},
	    {"open_busy", test_open_busy},
	    {"open_uncreatable", test_open_uncreatable},
	    {"names", test_names},
	    {"create_lookup_list", test_create_lookup_list},
	    {"rename", test_rename},
	    {"lazy_listing", test_lazy_listing},
	    {"status_word_unloaded", test_status_word_unloaded},
	    {"turn", test_turn},
	    {"reader_binding", test_reader_binding},
	    {"stage_refused", test_stage_refused},
	    {"queue", test_queue},
	    {"failure_retry", test_failure_retry},
	    {"regenerate", test_regenerate},
	    {"cancel", test_cancel},
	    {"turn_cancel", test_turn_cancel},
	    {"models", test_models},
	    {"clear", test_clear},
	    {"prune", test_prune},
	    {"view_cache", test_view_cache},
	    {"reopen_same", test_reopen_same},
	    {"crash_mid_reply", test_crash_mid_reply},
	    {"torn_tail", test_torn_tail},
	    {"misplaced_records", test_misplaced_records},
	    {"settings", test_settings},
	    {"defaults", test_defaults},
	    {"patch", test_patch},
	    {"observers", test_observers},
	    {"delete_live", test_delete_live},
	    {"reserve", test_reserve},
	};
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		int failed = check_failed;
		tests[i].fn();
		if (check_failed != failed)
			fprintf(stderr, "test %s: %d check(s) failed\n", tests[i].name,
				check_failed - failed);
	}
	return check_report();
}
