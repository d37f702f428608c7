/* store_env.h — the world the core store's unit tests run in: test_store.c,
 * test_context.c, test_reply.c, test_message.c, test_view.c, test_store_models.c,
 * test_ctl.c, test_fork.c, test_meta.c, test_rcache.c, test_summary.c and
 * test_storage.c.
 *
 * A fake transport records every call the store starts (its JSON body parsed
 * with cJSON, so tests assert what would have been sent) and every cancel; the
 * test plays the network thread by calling reply_call_response/event/retry/end
 * itself, with events decoded by wire_event_decode from the data lines the API
 * sends.  An observer records every notification and calls back into the store
 * (which deadlocks if an observer were ever called with the lock held).  A
 * test's store is on the in-memory storage engine (env_init: storage_mem_new,
 * which env_reopen keeps, as a restart keeps a disk), or, for a test of what is
 * on disk, on a fresh state directory under /tmp, removed afterwards
 * (env_init_disk).
 */
#ifndef MCPFS_TEST_STORE_ENV_H
#define MCPFS_TEST_STORE_ENV_H

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
#include "mcpfs/storage.h"
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

static inline int fake_start(void *impl, struct call_spec *spec)
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

static inline void fake_cancel(void *impl, uint64_t call_id)
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

static inline void fake_models(void *impl, const char *model, int connect_timeout_ms)
{
	(void)impl;
	(void)connect_timeout_ms;
	if (n_models_asked < 16)
		snprintf(models_asked[n_models_asked++], sizeof(models_asked[0]), "%s",
			 model ? model : "*");
}

static const struct transport_ops fake_models_ops = {fake_start, fake_cancel, fake_models};

static inline void fake_done(struct fake *f)
{
	for (size_t i = 0; i < f->n; i++)
		cJSON_Delete(f->json[i]);
	memset(f, 0, sizeof(*f));
	f->body_len_ok = true;
}

static inline bool fake_was_cancelled(const struct fake *f, uint64_t id)
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

static inline void on_change(void *data, uint64_t id, unsigned what)
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
static inline size_t obs_count(const struct obs *o, size_t since, uint64_t id, unsigned bit)
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
	struct storage *mem; /* the in-memory engine, NULL: the state dir `dir` */
	struct store *s;
	struct fake fake;
	struct obs obs;
	struct buf views[VIEWS];
	unsigned next_view;
	char why[512];
};

static inline int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	chmod(path, 0700);
	return remove(path) < 0 ? -1 : 0;
}

static inline void rm_rf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline int env_open_store(struct env *e, const char *defaults)
{
	int r = e->mem ? store_open_on(e->mem, NULL, defaults, &e->s, e->why, sizeof(e->why))
		       : store_open(e->dir, defaults, &e->s, e->why, sizeof(e->why));

	if (r == 0 && (r = store_start(e->s, e->why, sizeof(e->why))) < 0)
		store_free(e->s);
	if (r < 0) {
		e->s = NULL;
		return r;
	}
	store_set_transport(e->s, &fake_ops, &e->fake);
	e->obs.s = e->s;
	store_observe(e->s, on_change, &e->obs);
	return 0;
}

static inline void env_setup(struct env *e, bool disk)
{
	memset(e, 0, sizeof(*e));
	fake_done(&e->fake);
	snprintf(e->dir, sizeof(e->dir), "/tmp/mcpfs-test-store-XXXXXX");
	if (disk && !mkdtemp(e->dir)) {
		perror("mkdtemp");
		exit(1);
	}
	if (!disk && storage_mem_new(&e->mem) < 0) {
		perror("storage_mem_new");
		exit(1);
	}
	for (int i = 0; i < VIEWS; i++)
		buf_init(&e->views[i], 64u << 20);
	CHECK_EQ_INT(env_open_store(e, NULL), 0);
}

/* On the in-memory engine (the seam's proof: the store needs no file). */
static inline void env_init(struct env *e)
{
	env_setup(e, false);
}

/* On a state directory, for tests of what is on disk. */
static inline void env_init_disk(struct env *e)
{
	env_setup(e, true);
}

/* A clean restart: free the store and open the same directory again. */
static inline void env_reopen(struct env *e)
{
	store_free(e->s);
	e->s = NULL;
	CHECK_EQ_INT(env_open_store(e, NULL), 0);
}

static inline void env_done(struct env *e)
{
	store_free(e->s);
	fake_done(&e->fake);
	for (int i = 0; i < VIEWS; i++)
		buf_done(&e->views[i]);
	if (e->mem)
		storage_free(e->mem);
	else
		rm_rf(e->dir);
}

static inline bool has(const char *s, const char *sub)
{
	return s && strstr(s, sub) != NULL;
}

static inline bool starts(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A rendering of a context; lives until VIEWS more renderings were made. */
static inline const char *view(struct env *e, uint64_t id, enum view_kind kind)
{
	struct buf *b = &e->views[e->next_view++ % VIEWS];

	buf_reset(b);
	CHECK_EQ_INT(context_render(e->s, id, kind, b), 0);
	return b->data ? b->data : "";
}

static inline char *view_dup(struct env *e, uint64_t id, enum view_kind kind)
{
	char *p = strdup(view(e, id, kind));

	if (!p)
		abort();
	return p;
}

static inline uint64_t make(struct env *e, const char *name)
{
	uint64_t id = 0;

	CHECK_EQ_INT(store_create(e->s, name, &id), 0);
	return id;
}

/* Stage and submit; the draft's turn number, 0 when nothing was staged. */
static inline uint64_t say(struct env *e, uint64_t id, const char *text)
{
	struct reply *draft = NULL;
	int r = context_stage(e->s, id, &draft, text, strlen(text), e->why, sizeof(e->why));

	CHECK_EQ_INT(r, 0);
	uint64_t n = draft ? reply_turn(draft) : 0;
	context_submit(e->s, draft);
	return n;
}

static inline uint64_t last_call(const struct env *e)
{
	return e->fake.n ? e->fake.spec[e->fake.n - 1].call_id : 0;
}

/* Decodes one SSE data line and reports it as the network thread would. */
static inline int event(struct env *e, uint64_t call, const char *data)
{
	struct wire_event ev;
	int r = wire_event_decode(NULL, 0, data, strlen(data), &ev);

	CHECK_EQ_INT(r, 0);
	if (r < 0)
		return r;
	r = reply_call_event(e->s, call, &ev);
	reply_call_flush(e->s); /* one event per chunk of bytes */
	wire_event_done(&ev);
	return r;
}

/* A content_block_delta of kind "text" or "thinking". */
static inline int delta(struct env *e, uint64_t call, const char *kind, const char *text)
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

static inline void start_msg(struct env *e, uint64_t call, long long in_tokens)
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

static inline void finish_msg(struct env *e, uint64_t call, long long out_tokens)
{
	char data[256];

	CHECK_EQ_INT(event(e, call, "{\"type\":\"content_block_stop\",\"index\":0}"), 0);
	snprintf(data, sizeof(data),
		 "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
		 "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":%lld}}",
		 out_tokens);
	CHECK_EQ_INT(event(e, call, data), 0);
	CHECK_EQ_INT(event(e, call, "{\"type\":\"message_stop\"}"), 0);
	reply_call_end(e->s, call, 0, NULL);
}

/* A whole successful reply, its text in two deltas.  in_tokens 0: no input
 * usage (keeps the pruning calibration at its start). */
static inline void reply(struct env *e, uint64_t call, const char *text, long long in_tokens,
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

static inline void api_err(struct api_error *err, const char *type, const char *msg,
			   const char *rid, int status)
{
	api_error_clear(err);
	api_error_set(err, type, "%s", msg);
	snprintf(err->request_id, sizeof(err->request_id), "%s", rid);
	err->http_status = status;
}

/* Reads a turn from offset 0 in small pieces, as a reader would; returns the
 * result that stopped it (0, -EAGAIN, -EIO) with the text in out. */
static inline ssize_t read_all(struct env *e, struct reply *t, char *out, size_t cap)
{
	size_t off = 0;
	ssize_t r;

	while ((r = reply_read(e->s, t, off, out + off, cap - 1 - off < 5 ? cap - 1 - off : 5)) > 0)
		off += (size_t)r;
	out[off] = '\0';
	return r;
}

/* The text of a message's content: a string, or the first block's text. */
static inline const char *content_text(const cJSON *content)
{
	if (cJSON_IsString(content))
		return content->valuestring;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(content, 0), "text");
	return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Whether call i sent exactly these messages, alternating from a user one. */
static inline bool sent(const struct env *e, size_t i, const char *const *texts, size_t n)
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

static inline const cJSON *body_field(const struct env *e, size_t i, const char *key)
{
	return i < e->fake.n ? cJSON_GetObjectItemCaseSensitive(e->fake.json[i], key) : NULL;
}

static inline void journal_path(const struct env *e, const char *name, char *out, size_t n)
{
	snprintf(out, n, "%s/contexts/%s/journal", e->dir, name);
}

static inline int count_type(void *data, uint16_t type, const void *payload, size_t len,
			     uint64_t off)
{
	size_t *counts = data;

	(void)payload, (void)len, (void)off;
	if (type < 8)
		counts[type]++;
	return 0;
}

static inline off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? -1 : st.st_size;
}

static inline bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Sets a context's config to text and checks the result: the keys text names
 * changed, every other key kept its value. */
static inline bool config_set(struct env *e, uint64_t id, const char *text)
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

/* --- running a table of tests -------------------------------------------------- */

struct store_env_test {
	const char *name;
	void (*fn)(void);
};

/* Runs every test of the table, naming those with failed checks; the exit
 * status of the binary (check_report). */
static inline int store_env_run(const struct store_env_test *tests, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int failed = check_failed;
		tests[i].fn();
		if (check_failed != failed)
			fprintf(stderr, "test %s: %d check(s) failed\n", tests[i].name,
				check_failed - failed);
	}
	return check_report();
}

#endif
