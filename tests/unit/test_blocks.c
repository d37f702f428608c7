/* test_blocks.c — every block of a reply in the core store (block.c): kept as
 * it streams, saved in BLOCK records and read back, sent back to the API in
 * later requests, dropped with a retried call, pause_turn continued; the
 * loader's rules for misplaced and torn BLOCK records (tests/fixtures/journal/
 * blocks.mcj); reply_read_thinking.
 *
 * Like test_store.c, a fake transport records the requests the store starts
 * (parsed with cJSON) and the test plays the network thread with events
 * decoded by wire_event_decode from the API's data lines.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "mcpfs/store.h"
#include "mcpfs/wire.h"

#define CALLS_MAX 16

struct env {
	char dir[64];
	struct store *s;
	cJSON *body[CALLS_MAX];
	uint64_t call[CALLS_MAX];
	size_t n;
	struct buf view;
	char why[512];
};

static int fake_start(void *impl, struct call_spec *spec)
{
	struct env *e = impl;
	if (e->n == CALLS_MAX)
		return -ENOSPC;
	e->body[e->n] = cJSON_ParseWithLength(spec->body, spec->body_len);
	e->call[e->n++] = spec->call_id;
	free(spec->body);
	return 0;
}

static void fake_cancel(void *impl, uint64_t call_id)
{
	(void)impl, (void)call_id;
}

static const struct transport_ops ops = {fake_start, fake_cancel};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

static void env_open(struct env *e)
{
	CHECK_EQ_INT(store_open(e->dir, NULL, &e->s, e->why, sizeof(e->why)), 0);
	store_set_transport(e->s, &ops, e);
}

static void env_init(struct env *e)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "/tmp/mcpfs-test-blocks-XXXXXX");
	if (!mkdtemp(e->dir)) {
		perror("mkdtemp");
		exit(1);
	}
	buf_init(&e->view, 64u << 20);
	env_open(e);
}

static void env_reopen(struct env *e)
{
	store_free(e->s);
	env_open(e);
}

static void env_done(struct env *e)
{
	store_free(e->s);
	for (size_t i = 0; i < e->n; i++)
		cJSON_Delete(e->body[i]);
	buf_done(&e->view);
	nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *view(struct env *e, uint64_t id, enum view_kind kind)
{
	buf_reset(&e->view);
	CHECK_EQ_INT(context_render(e->s, id, kind, &e->view), 0);
	return e->view.data ? e->view.data : "";
}

static bool has(const char *s, const char *sub)
{
	bool ok = s && strstr(s, sub);
	if (!ok)
		fprintf(stderr, "  not found: %s\n  in: %s\n", sub, s ? s : "(null)");
	return ok;
}

static void say(struct env *e, uint64_t id, const char *text)
{
	struct reply *draft = NULL;
	CHECK_EQ_INT(context_stage(e->s, id, &draft, text, strlen(text), e->why, sizeof(e->why)),
		     0);
	context_submit(e->s, draft);
}

static int event(struct env *e, const char *data)
{
	struct wire_event ev;
	int r = wire_event_decode(NULL, 0, data, strlen(data), &ev);
	CHECK_EQ_INT(r, 0);
	if (r < 0)
		return r;
	r = reply_call_event(e->s, e->call[e->n - 1], &ev);
	reply_call_flush(e->s);
	wire_event_done(&ev);
	return r;
}

#define START "{\"type\":\"content_block_start\",\"index\":"
#define DELTA "{\"type\":\"content_block_delta\",\"index\":"
#define STOP(i) "{\"type\":\"content_block_stop\",\"index\":" #i "}"
#define MSG_START                                                                                  \
	"{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\","          \
	"\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":10,"    \
	"\"output_tokens\":1}}}"

static void end_msg(struct env *e, const char *stop_reason)
{
	char data[256];
	snprintf(data, sizeof(data),
		 "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\"},"
		 "\"usage\":{\"output_tokens\":7}}",
		 stop_reason);
	CHECK_EQ_INT(event(e, data), 0);
	CHECK_EQ_INT(event(e, "{\"type\":\"message_stop\"}"), 0);
	reply_call_end(e->s, e->call[e->n - 1], 0, NULL);
}

/* thinking (signed), redacted thinking, a tool use in three pieces, an unknown
 * block with an unknown delta, a text, a text with a citation. */
static void every_block(struct env *e)
{
	static const char *const events[] = {
	    MSG_START,
	    START
	    "0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}",
	    DELTA "0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Hmm.\"}}",
	    DELTA "0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"c2ln\"}}",
	    STOP(0),
	    START "1,\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"b3BhcXVl\"}}",
	    STOP(1),
	    START "2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"w\","
		  "\"input\":{}}}",
	    DELTA "2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"c\\\"\"}}",
	    DELTA "2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\":[1,\"}}",
	    DELTA "2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"2]}\"}}",
	    STOP(2),
	    START "3,\"content_block\":{\"type\":\"mystery\",\"x\":true}}",
	    DELTA "3,\"delta\":{\"type\":\"mystery_delta\",\"y\":1}}",
	    STOP(3),
	    START "4,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
	    DELTA "4,\"delta\":{\"type\":\"text_delta\",\"text\":\"Sunny.\"}}",
	    STOP(4),
	    START "5,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
	    DELTA "5,\"delta\":{\"type\":\"citations_delta\",\"citation\":{\"type\":"
		  "\"web_search_result_location\",\"title\":\"T\",\"url\":\"https://u.example/\","
		  "\"cited_text\":\"c\",\"encrypted_index\":\"E\"}}}",
	    DELTA "5,\"delta\":{\"type\":\"text_delta\",\"text\":\" Cited.\"}}",
	    STOP(5),
	};
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		CHECK_EQ_INT(event(e, events[i]), 0);
	end_msg(e, "end_turn");
}

#define CITATION                                                                                   \
	"{\"type\":\"web_search_result_location\",\"title\":\"T\",\"url\":\"https://u.example/\"," \
	"\"cited_text\":\"c\",\"encrypted_index\":\"E\"}"
#define EVERY_BLOCK                                                                                \
	"[{\"type\":\"thinking\",\"thinking\":\"Hmm.\",\"signature\":\"c2ln\"},"                   \
	"{\"type\":\"redacted_thinking\",\"data\":\"b3BhcXVl\"},"                                  \
	"{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"w\",\"input\":{\"c\":[1,2]}},"       \
	"{\"type\":\"mystery\",\"x\":true},{\"type\":\"text\",\"text\":\"Sunny.\"},"               \
	"{\"type\":\"text\",\"text\":\" Cited.\",\"citations\":[" CITATION "]}]"

/* The blocks of the newest reply in transcript.json, printed compactly. */
static char *reply_blocks(struct env *e, uint64_t id)
{
	cJSON *o = cJSON_Parse(view(e, id, VIEW_TRANSCRIPT_JSON));
	cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
	cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
	char *s = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(last, "blocks"));
	cJSON_Delete(o);
	return s;
}

static void check_blocks(struct env *e, uint64_t id, const char *want)
{
	char *got = reply_blocks(e, id);
	CHECK_EQ_STR(got, want);
	free(got);
}

static void test_every_block_kept(void)
{
	struct env e;
	env_init(&e);
	uint64_t id;
	CHECK_EQ_INT(store_create(e.s, "b", &id), 0);
	say(&e, id, "weather?");
	every_block(&e);
	check_blocks(&e, id, EVERY_BLOCK);
	const char *tr = view(&e, id, VIEW_TRANSCRIPT);
	CHECK(has(tr,
		  "--- thinking (turn 1) ---\nHmm.\n\n[redacted]\n\n--- assistant (turn 1) ---\n"
		  "Sunny. Cited.\n\n--- blocks (turn 1) ---\n[redacted thinking]\n"
		  "[tool use: w {\"c\":[1,2]}]\n[block: mystery]\n"
		  "[citation: T <https://u.example/>]\n\n"));
	/* Read back from the journal: the same. */
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "b", &id), 0);
	check_blocks(&e, id, EVERY_BLOCK);
	CHECK(!strstr(view(&e, id, VIEW_STATUS), "journal_recovered"));
	/* The next request sends the text and its citation; the tool use (it
	 * would need a result), the unknown block and the thinking stay out. */
	say(&e, id, "more");
	CHECK_EQ_INT(e.n, 2);
	cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e.body[1], "messages"), 1);
	char *got = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(m, "content"));
	CHECK_EQ_STR(got, "[{\"type\":\"text\",\"text\":\"Sunny.\"},{\"type\":\"text\",\"text\":"
			  "\" Cited.\",\"citations\":[" CITATION "],\"cache_control\":{\"type\":"
			  "\"ephemeral\"}}]");
	free(got);
	env_done(&e);
}

/* A retried call drops the blocks and thinking it had brought; a reader of
 * `thinking` gets the thinking as it streams, EOF at the end. */
static void test_retry_and_thinking_reads(void)
{
	struct env e;
	env_init(&e);
	uint64_t id;
	char buf[64];
	CHECK_EQ_INT(store_create(e.s, "r", &id), 0);
	say(&e, id, "go");
	struct reply *t = NULL;
	CHECK_EQ_INT(context_output(e.s, id, &t), 0);
	CHECK_EQ_INT(event(&e, MSG_START), 0);
	CHECK_EQ_INT(reply_read_thinking(e.s, t, 0, buf, sizeof(buf)), -EAGAIN);
	CHECK_EQ_INT(
	    event(&e, START "0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}"), 0);
	CHECK_EQ_INT(
	    event(&e, DELTA "0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"a\"}}"), 0);
	struct api_error err;
	api_error_clear(&err);
	api_error_set(&err, "overloaded_error", "busy");
	reply_call_retry(e.s, e.call[0], 1, &err, 0);
	CHECK_EQ_INT(reply_thinking_size(e.s, t), 0);
	CHECK_EQ_INT(event(&e, MSG_START), 0);
	CHECK_EQ_INT(
	    event(&e, START "0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}"), 0);
	CHECK_EQ_INT(
	    event(&e, DELTA "0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"b\"}}"), 0);
	CHECK_EQ_INT(
	    event(&e, DELTA "0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"s\"}}"), 0);
	CHECK_EQ_INT(reply_read_thinking(e.s, t, 0, buf, sizeof(buf)), 1);
	CHECK(buf[0] == 'b');
	CHECK_EQ_INT(reply_read_thinking(e.s, t, 1, buf, sizeof(buf)), -EAGAIN);
	/* Once a reader was shown it, a retry keeps it. */
	reply_call_retry(e.s, e.call[0], 2, &err, 0);
	CHECK_EQ_INT(reply_thinking_size(e.s, t), 1);
	CHECK_EQ_INT(event(&e, MSG_START), 0);
	CHECK_EQ_INT(event(&e, START "0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}"), 0);
	CHECK_EQ_INT(event(&e, DELTA "0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}}"), 0);
	CHECK_EQ_INT(event(&e, STOP(0)), 0);
	end_msg(&e, "end_turn");
	CHECK_EQ_INT(reply_read_thinking(e.s, t, 1, buf, sizeof(buf)), 0);
	reply_unref(e.s, t);
	/* The first try's block is gone: the thinking kept has no block. */
	check_blocks(&e, id,
		     "[{\"type\":\"thinking\",\"thinking\":\"b\"},{\"type\":\"text\","
		     "\"text\":\"ok\"}]");
	env_done(&e);
}

/* pause_turn: the reply is sent back as it is and continued, at most 3 times. */
static void test_pause_turn(void)
{
	struct env e;
	env_init(&e);
	uint64_t id;
	CHECK_EQ_INT(store_create(e.s, "p", &id), 0);
	say(&e, id, "search");
	for (int i = 0; i < 4; i++) {
		char data[256];
		CHECK_EQ_INT(e.n, (size_t)i + 1);
		CHECK_EQ_INT(event(&e, MSG_START), 0);
		CHECK_EQ_INT(
		    event(&e, START "0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}"), 0);
		snprintf(data, sizeof(data),
			 DELTA "0,\"delta\":{\"type\":\"text_delta\",\"text\":\"p%d \"}}", i);
		CHECK_EQ_INT(event(&e, data), 0);
		CHECK_EQ_INT(event(&e, STOP(0)), 0);
		end_msg(&e, "pause_turn");
	}
	CHECK_EQ_INT(e.n, 4);
	cJSON *msgs = cJSON_GetObjectItemCaseSensitive(e.body[3], "messages");
	char *got = cJSON_PrintUnformatted(msgs);
	CHECK_EQ_STR(got, "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"search\","
			  "\"cache_control\":{\"type\":\"ephemeral\"}}]},{\"role\":\"assistant\","
			  "\"content\":[{\"type\":\"text\",\"text\":\"p0 p1 p2\"}]}]");
	free(got);
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(has(st, "idle\n"));
	CHECK(has(st, "stop_reason: pause_turn\n"));
	CHECK(has(st, "continued: 3 (stop_reason pause_turn)\n"));
	CHECK(has(st, "paused: the reply still paused after 3 continuations"));
	CHECK(has(view(&e, id, VIEW_USAGE), "calls: 4\n"));
	CHECK(has(view(&e, id, VIEW_TRANSCRIPT), "--- assistant (turn 1) ---\np0 p1 p2 p3 \n"));
	env_done(&e);
}

/* blocks.mcj: misplaced BLOCK records are skipped and counted, a torn one
 * truncated; the good ones load in order. */
static void test_fixture(void)
{
	struct env e;
	env_init(&e);
	char p[256], cmd[600];
	uint64_t id;
	store_free(e.s);
	snprintf(p, sizeof(p), "%s/contexts/fx", e.dir);
	CHECK_EQ_INT(mkdir(p, 0700), 0);
	snprintf(cmd, sizeof(cmd), "cp '%s/journal/blocks.mcj' '%s/journal'", FIXTURES, p);
	CHECK_EQ_INT(system(cmd), 0);
	env_open(&e);
	CHECK_EQ_INT(store_lookup(e.s, "fx", &id), 0);
	const char *st = view(&e, id, VIEW_STATUS);
	CHECK(has(st, "journal_recovered: 3 corrupt record(s) skipped, 50 torn byte(s) truncated"));
	CHECK(has(st, "interrupted"));
	cJSON *o = cJSON_Parse(view(&e, id, VIEW_TRANSCRIPT_JSON));
	cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
	char *one = cJSON_PrintUnformatted(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(msgs, 1), "blocks"));
	char *two = cJSON_PrintUnformatted(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(msgs, 3), "blocks"));
	CHECK_EQ_STR(one, "[{\"type\":\"thinking\",\"thinking\":\"Hmm.\",\"signature\":\"c2ln\"},"
			  "{\"type\":\"redacted_thinking\",\"data\":\"b3BhcXVl\"},{\"type\":"
			  "\"tool_use\",\"id\":\"toolu_1\",\"name\":\"w\",\"input\":{\"c\":1}},"
			  "{\"type\":\"mystery\",\"x\":[1,2]},{\"type\":\"text\",\"text\":\"Sunny. "
			  "\"},{\"type\":\"text\",\"text\":\"Cited.\",\"citations\":[{\"type\":"
			  "\"web_search_result_location\",\"title\":\"T\",\"url\":"
			  "\"https://u.example/\",\"cited_text\":\"c\"}]}]");
	CHECK_EQ_STR(two, "[{\"type\":\"text\",\"text\":\"Half\"},{\"type\":\"good\"}]");
	free(one);
	free(two);
	cJSON_Delete(o);
	env_done(&e);
}

/* A tool's input past BLOCK_INPUT_MAX (16 MiB) fails the turn, saying so. */
static void test_input_limit(void)
{
	struct env e;
	env_init(&e);
	uint64_t id;
	CHECK_EQ_INT(store_create(e.s, "l", &id), 0);
	say(&e, id, "big");
	CHECK_EQ_INT(event(&e, MSG_START), 0);
	CHECK_EQ_INT(event(&e, START "0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\","
				     "\"name\":\"w\",\"input\":{}}}"),
		     0);
	size_t piece = 1u << 20;
	char *data = malloc(piece + 128);
	int n = snprintf(data, 128,
			 DELTA "0,\"delta\":{\"type\":\"input_json_delta\","
			       "\"partial_json\":\"");
	memset(data + n, 'a', piece);
	strcpy(data + n + piece, "\"}}");
	int r = 0;
	for (int i = 0; i < 17 && r == 0; i++)
		r = event(&e, data);
	free(data);
	CHECK_EQ_INT(r, -ECANCELED);
	CHECK(has(view(&e, id, VIEW_STATUS), "last_error: reply_too_large: a block of the reply "
					     "passed its limit (16777216 bytes of a tool's input"));
	env_done(&e);
}

/* A \u0000 in a block's strings (a tool's input, an unknown block) is kept,
 * through the journal too. */
static void test_nul(void)
{
	struct env e;
	env_init(&e);
	uint64_t id;
	CHECK_EQ_INT(store_create(e.s, "n", &id), 0);
	say(&e, id, "nul");
	static const char *const events[] = {
	    MSG_START,
	    START "0,\"content_block\":{\"type\":\"mystery\",\"note\":\"a\\u0000b\"}}",
	    STOP(0),
	    START "1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"w\","
		  "\"input\":{}}}",
	    DELTA "1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"
		  "\"{\\\"q\\\":\\\"x\\\\u0000y\\\"}\"}}",
	    STOP(1),
	    START "2,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
	    DELTA "2,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}}",
	    STOP(2),
	};
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		CHECK_EQ_INT(event(&e, events[i]), 0);
	end_msg(&e, "end_turn");
	const char *tj = view(&e, id, VIEW_TRANSCRIPT_JSON);
	CHECK(has(tj, "\"note\":\t\"a\\u0000b\""));
	CHECK(has(tj, "\"q\":\t\"x\\u0000y\""));
	env_reopen(&e);
	CHECK_EQ_INT(store_lookup(e.s, "n", &id), 0);
	tj = view(&e, id, VIEW_TRANSCRIPT_JSON);
	CHECK(has(tj, "\"note\":\t\"a\\u0000b\""));
	CHECK(has(tj, "\"q\":\t\"x\\u0000y\""));
	CHECK(!strstr(view(&e, id, VIEW_STATUS), "journal_recovered"));
	env_done(&e);
}

int main(void)
{
	test_every_block_kept();
	test_retry_and_thinking_reads();
	test_pause_turn();
	test_fixture();
	test_input_limit();
	test_nul();
	return check_report();
}
