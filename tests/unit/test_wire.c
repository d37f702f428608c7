/* test_wire.c — request bodies, stream events, error bodies and retry rules. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mcpfs/utf8.h"
#include "mcpfs/wire.h"
#include "check.h"

/* ---- events ------------------------------------------------------------- */

struct ev_want {
	enum wire_event_type type;
	int index; /* checked for BLOCK_* only; -1 is expected otherwise */
	enum wire_block block;
	const char *text; /* NULL: ev.text must be NULL */
	const char *id, *model, *stop;
	unsigned present;
	int64_t in, out, cc, cr;
	const char *err_type, *err_msg, *rid;
	bool retryable;
};

static bool is_block(enum wire_event_type t)
{
	return t == WIRE_BLOCK_START || t == WIRE_BLOCK_DELTA || t == WIRE_BLOCK_STOP;
}

static bool str_is(const char *got, const char *want)
{
	return strcmp(got, want ? want : "") == 0;
}

/* Decodes one event and compares every field the expectation names. */
static void check_event(const char *label, const char *name, const char *data, size_t len, int rc,
			const struct ev_want *w)
{
	struct wire_event ev;
	int r = wire_event_decode(name, name ? strlen(name) : 0, data, len, &ev);

	CHECK_EQ_INT(r, rc);
	if (r != rc)
		fprintf(stderr, "  in %s\n", label);
	if (r < 0) {
		CHECK(ev.text == NULL);
		return;
	}
	const struct wire_usage *u = &ev.usage;
	bool ok = ev.type == w->type && ev.index == (is_block(w->type) ? w->index : -1) &&
		  ev.block == w->block && str_is(ev.message_id, w->id) &&
		  str_is(ev.model, w->model) && str_is(ev.stop_reason, w->stop) &&
		  u->present == w->present &&
		  (!(w->present & WIRE_USAGE_INPUT) || u->input_tokens == w->in) &&
		  (!(w->present & WIRE_USAGE_OUTPUT) || u->output_tokens == w->out) &&
		  (!(w->present & WIRE_USAGE_CACHE_CREATION) ||
		   u->cache_creation_input_tokens == w->cc) &&
		  (!(w->present & WIRE_USAGE_CACHE_READ) || u->cache_read_input_tokens == w->cr) &&
		  str_is(ev.error.type, w->err_type) && str_is(ev.error.message, w->err_msg) &&
		  str_is(ev.error.request_id, w->rid) && ev.error.retryable == w->retryable &&
		  ev.error.retry_after_ms == -1;
	if (w->text)
		ok = ok && ev.text && ev.text_len == strlen(w->text) &&
		     strcmp(ev.text, w->text) == 0;
	else
		ok = ok && ev.text == NULL && ev.text_len == 0;
	if (!ok)
		fprintf(stderr, "%s: decoded type %d index %d block %d text \"%s\"\n", label,
			ev.type, ev.index, ev.block, ev.text ? ev.text : "(null)");
	CHECK(ok);
	wire_event_done(&ev);
	CHECK(ev.text == NULL);
}

#define A_ID "msg_01HwZ7kq3X9vQd2Lr5tNn8Ba"
#define B_ID "msg_01Q8mVb2Tz6JcK4pRf1sXy7N"
#define C_ID "msg_01Ld3Rc9Wq5Hn2Gx8Zp4Vt6M"
#define MODEL "claude-sonnet-4-5-20250929"
#define ALL_USAGE 15u

static const struct stream_case {
	const char *file;
	const char *text; /* all text deltas joined */
	struct ev_want ev[9];
} stream_cases[] = {
    {"stream_A.sse",
     "Hello! How can I help you today?",
     {
	 {WIRE_MESSAGE_START, .id = A_ID, .model = MODEL, .present = ALL_USAGE, .in = 18, .out = 1},
	 {WIRE_BLOCK_START, 0, WIRE_BLOCK_TEXT, ""},
	 {WIRE_BLOCK_DELTA, 0, WIRE_BLOCK_TEXT, "Hello"},
	 {WIRE_BLOCK_DELTA, 0, WIRE_BLOCK_TEXT, "! How can I help"},
	 {WIRE_BLOCK_DELTA, 0, WIRE_BLOCK_TEXT, " you today?"},
	 {WIRE_BLOCK_STOP, 0},
	 {WIRE_MESSAGE_DELTA, .stop = "end_turn", .present = WIRE_USAGE_OUTPUT, .out = 12},
	 {WIRE_MESSAGE_STOP},
     }},
    {"stream_B.sse",
     "The first three primes are 2, 3",
     {
	 {WIRE_MESSAGE_START, .id = B_ID, .model = MODEL, .present = ALL_USAGE, .in = 6, .out = 1,
	  .cr = 4210},
	 {WIRE_BLOCK_START, 0, WIRE_BLOCK_TEXT, ""},
	 {WIRE_PING},
	 {WIRE_BLOCK_DELTA, 0, WIRE_BLOCK_TEXT, "The first three"},
	 {WIRE_BLOCK_DELTA, 0, WIRE_BLOCK_TEXT, " primes are 2, 3"},
	 {WIRE_ERROR, .err_type = "overloaded_error", .err_msg = "Overloaded", .retryable = true},
     }},
    {"stream_C.sse",
     "Gr\xC3\xBC\xC3\x9F"
     "e \xE2\x80\x94 \xE6\x9D\xB1\xE4\xBA\xAC \xF0\x9F\x8C\xB8",
     {
	 {WIRE_MESSAGE_START, .id = C_ID, .model = MODEL, .present = ALL_USAGE, .in = 24, .out = 1},
	 {WIRE_BLOCK_START, 0, WIRE_BLOCK_TEXT, ""},
	 {WIRE_BLOCK_DELTA, 0, WIRE_BLOCK_TEXT,
	  "Gr\xC3\xBC\xC3\x9F"
	  "e"},
	 {WIRE_BLOCK_DELTA, 0, WIRE_BLOCK_TEXT, " \xE2\x80\x94 \xE6\x9D\xB1\xE4\xBA\xAC"},
	 {WIRE_BLOCK_DELTA, 0, WIRE_BLOCK_TEXT, " \xF0\x9F\x8C\xB8"},
	 {WIRE_BLOCK_STOP, 0},
	 /* cumulative usage repeated in full: every field present */
	 {WIRE_MESSAGE_DELTA, .stop = "end_turn", .present = ALL_USAGE, .in = 24, .out = 11},
	 {WIRE_MESSAGE_STOP},
     }},
};

/* The fixtures hold one "event:" and one "data:" line per event, LF only, so the
 * test reads them without the SSE parser (which this binary does not link). */
static void test_stream(const struct stream_case *c)
{
	char path[512], line[4096], name[64] = "";
	char text[256] = "";
	int n = 0;

	snprintf(path, sizeof(path), "%s/sse/%s", FIXTURES, c->file);
	FILE *f = fopen(path, "r");
	CHECK(f != NULL);
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "event: ", 7) == 0)
			snprintf(name, sizeof(name), "%.63s", line + 7);
		if (strncmp(line, "data: ", 6) != 0 || n == 9)
			continue;
		check_event(c->file, name, line + 6, strlen(line + 6), 0, &c->ev[n]);
		struct wire_event ev;
		if (wire_event_decode(name, strlen(name), line + 6, strlen(line + 6), &ev) == 0) {
			if (ev.type == WIRE_BLOCK_DELTA && ev.block == WIRE_BLOCK_TEXT)
				strncat(text, ev.text, sizeof(text) - strlen(text) - 1);
			wire_event_done(&ev);
		}
		n++;
	}
	fclose(f);
	CHECK(n >= 6 && n < 9 && c->ev[n].type == WIRE_MESSAGE_START && c->ev[n].id == NULL);
	CHECK_EQ_STR(text, c->text);
}

static const struct event_case {
	const char *label, *name, *data;
	int rc;
	struct ev_want want;
} event_cases[] = {
    {"thinking start",
     "content_block_start",
     "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"thinking\","
     "\"thinking\":\"\",\"signature\":\"\"}}",
     0,
     {WIRE_BLOCK_START, 1, WIRE_BLOCK_THINKING, ""}},
    {"tool_use start",
     "content_block_start",
     "{\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\","
     "\"id\":\"toolu_1\",\"name\":\"w\",\"input\":{}}}",
     0,
     {WIRE_BLOCK_START, 2, WIRE_BLOCK_OTHER}},
    {"redacted start",
     NULL,
     "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"redacted_"
     "thinking\",\"data\":\"x\"}}",
     0,
     {WIRE_BLOCK_START, 0, WIRE_BLOCK_OTHER}},
    {"text start with text",
     NULL,
     "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":"
     "\"Hi\"}}",
     0,
     {WIRE_BLOCK_START, 0, WIRE_BLOCK_TEXT, "Hi"}},
    {"start text not a string", NULL,
     "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":"
     "5}}",
     -EINVAL},
    {"start without block", NULL, "{\"type\":\"content_block_start\",\"index\":0}", -EINVAL},
    {"thinking_delta",
     NULL,
     "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"thinking_delta\","
     "\"thinking\":\"Let me see\"}}",
     0,
     {WIRE_BLOCK_DELTA, 1, WIRE_BLOCK_THINKING, "Let me see"}},
    {"signature_delta",
     NULL,
     "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"signature_delta\","
     "\"signature\":\"c3ludGg=\"}}",
     0,
     {WIRE_BLOCK_DELTA, 1, WIRE_BLOCK_SIGNATURE, "c3ludGg="}},
    {"input_json_delta",
     NULL,
     "{\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\","
     "\"partial_json\":\"{\\\"a\"}}",
     0,
     {WIRE_BLOCK_DELTA, 2, WIRE_BLOCK_OTHER}},
    {"citations_delta",
     NULL,
     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"citations_delta\","
     "\"citation\":{}}}",
     0,
     {WIRE_BLOCK_DELTA, 0, WIRE_BLOCK_OTHER}},
    {"escapes decoded",
     NULL,
     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
     "\"\\u00fc\\ud83c\\udf38\\n\"}}",
     0,
     {WIRE_BLOCK_DELTA, 0, WIRE_BLOCK_TEXT, "\xC3\xBC\xF0\x9F\x8C\xB8\n"}},
    {"empty text_delta",
     NULL,
     "{\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"text_delta\",\"text\":"
     "\"\"}}",
     0,
     {WIRE_BLOCK_DELTA, 3, WIRE_BLOCK_TEXT, ""}},
    {"delta without text", NULL,
     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\"}}", -EINVAL},
    {"delta with null text", NULL,
     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
     "null}}",
     -EINVAL},
    {"thinking without thinking", NULL,
     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\","
     "\"text\":\"x\"}}",
     -EINVAL},
    {"signature not a string", NULL,
     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\","
     "\"signature\":1}}",
     -EINVAL},
    {"delta without type", NULL,
     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"text\":\"x\"}}", -EINVAL},
    {"delta missing", NULL, "{\"type\":\"content_block_delta\",\"index\":0}", -EINVAL},
    {"index missing", NULL, "{\"type\":\"content_block_stop\"}", -EINVAL},
    {"index negative", NULL, "{\"type\":\"content_block_stop\",\"index\":-1}", -EINVAL},
    {"index fractional", NULL, "{\"type\":\"content_block_stop\",\"index\":1.5}", -EINVAL},
    {"raw bad UTF-8", NULL,
     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
     "\"\xC3\x28\"}}",
     -EINVAL},
    {"lone surrogate", NULL,
     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
     "\"\\ud83c\"}}",
     -EINVAL},
    {"malformed JSON", "message_stop", "{\"type\":\"message_stop\"", -EINVAL},
    {"empty data", "message_stop", "", -EINVAL},
    {"array", "message_stop", "[]", -EINVAL},
    {"number", "message_stop", "42", -EINVAL},
    {"null", "ping", "null", -EINVAL},
    {"type not a string", "ping", "{\"type\":5}", -EINVAL},
    {"unknown type",
     "content_block_pause",
     "{\"type\":\"content_block_pause\",\"index\":0}",
     0,
     {WIRE_UNKNOWN}},
    {"unknown name, data not JSON", "future_event", "not json at all", 0, {WIRE_UNKNOWN}},
    {"unknown name, empty data", "future_event", "", 0, {WIRE_UNKNOWN}},
    {"known name, data not JSON", "content_block_delta", "oops", -EINVAL},
    {"default name, data not JSON", "message", "oops", -EINVAL},
    {"name used without type", "message_stop", "{}", 0, {WIRE_MESSAGE_STOP}},
    {"default name unknown", "message", "{}", 0, {WIRE_UNKNOWN}},
    {"no name, no type", NULL, "{}", 0, {WIRE_UNKNOWN}},
    {"JSON type wins", "ping", "{\"type\":\"message_stop\"}", 0, {WIRE_MESSAGE_STOP}},
    {"ping with space", "ping", "{\"type\": \"ping\"}", 0, {WIRE_PING}},
    {"api_error",
     "error",
     "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server "
     "error\"}}",
     0,
     {WIRE_ERROR, .err_type = "api_error", .err_msg = "Internal server error", .retryable = true}},
    {"invalid_request",
     "error",
     "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"bad\"},"
     "\"request_id\":\"req_1\"}",
     0,
     {WIRE_ERROR, .err_type = "invalid_request_error", .err_msg = "bad", .rid = "req_1"}},
    {"error without message",
     "error",
     "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\"}}",
     0,
     {WIRE_ERROR, .err_type = "rate_limit_error", .retryable = true}},
    {"error without error", "error", "{\"type\":\"error\"}", -EINVAL},
    {"error without type", "error", "{\"type\":\"error\",\"error\":{\"message\":\"x\"}}", -EINVAL},
    {"stop_reason null",
     NULL,
     "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},\"usage\":{\"output_tokens\":5,"
     "\"cache_read_input_tokens\":null}}",
     0,
     {WIRE_MESSAGE_DELTA, .present = WIRE_USAGE_OUTPUT, .out = 5}},
    {"unknown stop_reason kept",
     NULL,
     "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"model_context_window_exceeded\"},"
     "\"usage\":{\"output_tokens\":7,\"input_tokens\":3}}",
     0,
     {WIRE_MESSAGE_DELTA, .stop = "model_context_window_exceeded",
      .present = WIRE_USAGE_OUTPUT | WIRE_USAGE_INPUT, .in = 3, .out = 7}},
    {"cache fields only",
     NULL,
     "{\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"cache_creation_input_tokens\":9,"
     "\"cache_read_input_tokens\":8}}",
     0,
     {WIRE_MESSAGE_DELTA, .present = WIRE_USAGE_CACHE_CREATION | WIRE_USAGE_CACHE_READ, .cc = 9,
      .cr = 8}},
    {"no usage",
     NULL,
     "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"}}",
     0,
     {WIRE_MESSAGE_DELTA, .stop = "max_tokens"}},
    /* past INT_MAX: valueint would saturate */
    {"large count",
     NULL,
     "{\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":1099511627776}}",
     0,
     {WIRE_MESSAGE_DELTA, .present = WIRE_USAGE_OUTPUT, .out = 1099511627776LL}},
    {"count past 2^53", NULL,
     "{\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":1e300}}", -EINVAL},
    {"count past 2^53, exact double", NULL,
     "{\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":1e16}}", -EINVAL},
    {"fractional count", NULL,
     "{\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":1.5}}", -EINVAL},
    {"negative count", NULL,
     "{\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":-1}}", -EINVAL},
    {"string count", NULL,
     "{\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":\"1\"}}", -EINVAL},
    {"message_delta without delta", NULL,
     "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":1}}", -EINVAL},
    {"message_start bare",
     NULL,
     "{\"type\":\"message_start\",\"message\":{}}",
     0,
     {WIRE_MESSAGE_START}},
    {"message_start without message", NULL, "{\"type\":\"message_start\"}", -EINVAL},
    {"id not a string", NULL, "{\"type\":\"message_start\",\"message\":{\"id\":7}}", -EINVAL},
};

static void test_event_table(void)
{
	for (size_t i = 0; i < sizeof(event_cases) / sizeof(event_cases[0]); i++) {
		const struct event_case *c = &event_cases[i];
		check_event(c->label, c->name, c->data, strlen(c->data), c->rc, &c->want);
	}
}

static void test_event_edges(void)
{
	static const struct ev_want stop = {WIRE_MESSAGE_STOP};
	const char *tail = "{\"type\":\"message_stop\"}GARBAGE";
	char big[512];

	/* only len bytes are read: the data need not end in NUL (an exact-size heap
	 * copy lets ASan see any read past them) */
	check_event("length bound", NULL, tail, 23, 0, &stop);
	char *exact = malloc(23);
	if (!exact)
		abort();
	memcpy(exact, tail, 23);
	check_event("exact buffer", NULL, exact, 23, 0, &stop);
	check_event("exact buffer, cut", NULL, exact, 22, -EINVAL, &stop);
	free(exact);
	check_event("NULL data", "ping", NULL, 0, -EINVAL, &stop);
	/* an id that does not fit is refused, not cut */
	snprintf(big, sizeof(big), "{\"type\":\"message_start\",\"message\":{\"id\":\"%0200d\"}}",
		 0);
	check_event("id too long", NULL, big, strlen(big), -EINVAL, &stop);
	snprintf(big, sizeof(big), "{\"type\":\"message_start\",\"message\":{\"id\":\"m%0126d\"}}",
		 0);
	struct wire_event ev;
	CHECK_EQ_INT(wire_event_decode(NULL, 0, big, strlen(big), &ev), 0);
	CHECK_EQ_INT(strlen(ev.message_id), 127);
	wire_event_done(&ev);
	wire_event_done(NULL);
}

/* ---- requests ----------------------------------------------------------- */

static int build(const struct wire_request *r, struct buf *out)
{
	buf_init(out, 1 << 20);
	return wire_request_build(r, out);
}

static void test_request_minimal(void)
{
	const struct wire_message msg = {false, "Hello", 5, false};
	struct wire_request r = {"claude-x", 1024, NAN, "You are terse.", 14, false, &msg,
				 1,	     0,	   true};
	struct buf out, again;

	CHECK_EQ_INT(build(&r, &out), 0);
	CHECK_EQ_STR(out.data, "{\"model\":\"claude-x\",\"max_tokens\":1024,\"system\":\"You are "
			       "terse.\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],"
			       "\"stream\":true}");
	/* the same request gives the same bytes */
	CHECK_EQ_INT(build(&r, &again), 0);
	CHECK_EQ_STR(again.data, out.data);
	buf_done(&again);

	/* no system: NULL and "" alike; the field is not sent; a big int stays exact */
	r.system = NULL;
	r.max_tokens = 5000000000LL;
	r.temperature = 0;
	r.stream = false;
	buf_reset(&out);
	CHECK_EQ_INT(wire_request_build(&r, &out), 0);
	CHECK_EQ_STR(out.data,
		     "{\"model\":\"claude-x\",\"max_tokens\":5000000000,\"temperature\":0,"
		     "\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],"
		     "\"stream\":false}");
	r.system = "ignored";
	r.system_len = 0;
	buf_reset(&out);
	CHECK_EQ_INT(wire_request_build(&r, &out), 0);
	CHECK(strstr(out.data, "system") == NULL);
	buf_done(&out);
}

static bool is_ephemeral_block(const cJSON *arr, const char *text)
{
	const cJSON *b = cJSON_GetArrayItem(arr, 0);
	const cJSON *cc = cJSON_GetObjectItemCaseSensitive(b, "cache_control");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "text");

	return cJSON_IsArray(arr) && cJSON_GetArraySize(arr) == 1 && b && b->child &&
	       strcmp(b->child->string, "type") == 0 &&
	       strcmp(b->child->valuestring, "text") == 0 && cJSON_IsString(t) &&
	       strcmp(t->valuestring, text) == 0 && cJSON_GetArraySize(cc) == 1 &&
	       cJSON_IsString(cJSON_GetObjectItemCaseSensitive(cc, "type")) &&
	       strcmp(cJSON_GetObjectItemCaseSensitive(cc, "type")->valuestring, "ephemeral") == 0;
}

static void test_request_full(void)
{
	/* "Q" is the first byte of a longer string: only len bytes are sent */
	const struct wire_message msgs[] = {
	    {false, "Hi", 2, false},
	    {true, "Hello!", 6, false},
	    {false, "Qrest", 1, true},
	};
	struct wire_request r = {"m", 4096, 0.5, "S", 1, true, msgs, 3, 2048, false};
	static const char *const order[] = {
	    "model", "max_tokens", "temperature", "system", "messages", "thinking", "stream",
	};
	struct buf out;

	buf_init(&out, 4096);
	CHECK_EQ_INT(buf_puts(&out, "X"), 0);
	CHECK_EQ_INT(wire_request_build(&r, &out), 0);
	CHECK(out.data[0] == 'X'); /* appended */
	cJSON *root = cJSON_Parse(out.data + 1);
	CHECK(root != NULL);
	size_t i = 0;
	for (const cJSON *it = root ? root->child : NULL; it; it = it->next, i++)
		CHECK(i < 7 && strcmp(it->string, order[i]) == 0);
	CHECK_EQ_INT(i, 7);
	CHECK(is_ephemeral_block(cJSON_GetObjectItemCaseSensitive(root, "system"), "S"));
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "messages");
	CHECK_EQ_INT(cJSON_GetArraySize(m), 3);
	CHECK_EQ_STR(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(m, 1), "role")->valuestring,
	    "assistant");
	CHECK_EQ_STR(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(m, 1), "content")->valuestring,
	    "Hello!");
	CHECK(is_ephemeral_block(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(m, 2), "content"), "Q"));
	CHECK(strstr(out.data, "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2048}") !=
	      NULL);
	CHECK(strstr(out.data, "\"temperature\":0.5,") != NULL);
	CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(root, "stream")->type, cJSON_False);
	/* exactly two breakpoints: the marked system and the marked message */
	const char *p = out.data;
	int marks = 0;
	while ((p = strstr(p, "cache_control")) != NULL && ++marks)
		p++;
	CHECK_EQ_INT(marks, 2);
	cJSON_Delete(root);
	buf_done(&out);
}

static void test_request_text_round_trip(void)
{
	const char text[] =
	    "quote \" backslash \\ nl \n tab \t ctrl \x01 ls \xE2\x80\xA8 \xF0\x9F\x8C\xB8";
	const struct wire_message msg = {false, text, sizeof(text) - 1, false};
	const struct wire_request r = {"m", 1, NAN, NULL, 0, false, &msg, 1, 0, true};
	struct buf out;

	CHECK_EQ_INT(build(&r, &out), 0);
	cJSON *root = cJSON_Parse(out.data);
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "messages"), 0), "content");
	CHECK(cJSON_IsString(c) && strcmp(c->valuestring, text) == 0);
	cJSON_Delete(root);
	buf_done(&out);
}

static void test_request_errors(void)
{
	const struct wire_message good = {false, "ok", 2, false};
	const struct wire_message bad_utf8 = {false, "\xC3\x28", 2, false};
	const struct wire_message nul = {false, "a\0b", 3, false};
	const struct wire_message null_text = {false, NULL, 3, false};
	const struct wire_request base = {"m", 16, NAN, NULL, 0, false, &good, 1, 0, true};
	struct wire_request r;
	struct buf out;

	buf_init(&out, 4096);
	buf_puts(&out, "keep");
#define EXPECT_BUILD(rc, ...)                                                                      \
	do {                                                                                       \
		r = base;                                                                          \
		__VA_ARGS__;                                                                       \
		CHECK_EQ_INT(wire_request_build(&r, &out), rc);                                    \
		CHECK_EQ_STR(out.data, "keep");                                                    \
	} while (0)
	EXPECT_BUILD(-EINVAL, r.n_messages = 0);
	EXPECT_BUILD(-EINVAL, r.messages = NULL);
	EXPECT_BUILD(-EINVAL, r.messages = &bad_utf8);
	EXPECT_BUILD(-EINVAL, r.messages = &null_text);
	EXPECT_BUILD(-EINVAL, r.system = "\xFF", r.system_len = 1);
	EXPECT_BUILD(-EINVAL, r.model = NULL);
	EXPECT_BUILD(-EINVAL, r.model = "");
	EXPECT_BUILD(-EINVAL, r.model = "\xED\xA0\x80"); /* a surrogate */
	EXPECT_BUILD(-EINVAL, r.temperature = INFINITY);
	EXPECT_BUILD(-EINVAL, r.max_tokens = -1);
	EXPECT_BUILD(-EINVAL, r.thinking_budget = -1);
	out.max = 20;
	EXPECT_BUILD(-EFBIG, (void)0);
#undef EXPECT_BUILD
	/* A NUL is text like any other, sent as \u0000 (issue 17). */
	out.max = 4096;
	buf_reset(&out);
	r = base;
	r.messages = &nul;
	CHECK_EQ_INT(wire_request_build(&r, &out), 0);
	CHECK(out.data && strstr(out.data, "\"content\":\"a\\u0000b\"") != NULL);
	buf_done(&out);
}

/* ---- HTTP errors and retry rules ---------------------------------------- */

static void test_error_decode_json(void)
{
	const char *body =
	    "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":"
	    "\"Slow down\"},\"request_id\":\"req_011CSHoEeqs5C35K2UUqR7Fy\"}";
	struct api_error e;

	api_error_clear(&e);
	e.retry_after_ms = 3000;
	wire_error_decode(429, body, strlen(body), &e);
	CHECK_EQ_INT(e.http_status, 429);
	CHECK_EQ_STR(e.type, "rate_limit_error");
	CHECK_EQ_STR(e.message, "Slow down");
	CHECK_EQ_STR(e.request_id, "req_011CSHoEeqs5C35K2UUqR7Fy");
	CHECK(e.retryable);
	CHECK_EQ_INT(e.retry_after_ms, 3000);

	/* the request-id header, already there, wins over the body's */
	const char *b400 = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
			   "\"message\":\"max_tokens: bad\"},\"request_id\":\"req_body\"}GARBAGE";
	api_error_clear(&e);
	snprintf(e.request_id, sizeof(e.request_id), "req_header");
	wire_error_decode(400, b400, strlen(b400) - 7, &e);
	CHECK_EQ_STR(e.type, "invalid_request_error");
	CHECK_EQ_STR(e.message, "max_tokens: bad");
	CHECK_EQ_STR(e.request_id, "req_header");
	CHECK(!e.retryable);

	/* a long API message is cut for humans, between characters */
	struct buf b;
	buf_init(&b, 4096);
	buf_puts(&b, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"");
	for (int i = 0; i < 400; i++)
		buf_puts(&b, "\xC3\xA9");
	buf_puts(&b, "\"}}");
	api_error_clear(&e);
	wire_error_decode(500, b.data, b.len, &e);
	CHECK_EQ_STR(e.type, "api_error");
	CHECK_EQ_INT(strlen(e.message), 510);
	CHECK(utf8_valid(e.message, strlen(e.message)));
	CHECK(e.retryable);
	buf_done(&b);
}

static const struct error_case {
	int status;
	const char *body;
	const char *message; /* exact expected message */
	bool retryable;
} error_cases[] = {
    {413,
     "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
     "<center><h1>413 Request Entity Too Large</h1></center>\r\n</body>\r\n</html>\r\n",
     "HTTP 413: \"<html> <head><title>413 Request Entity Too Large</title></head> <body> "
     "<center><h1>413 Request Entity Too Large</h1></center> </body> </html>\"",
     false},
    {502, "", "HTTP 502 with an empty body", true},
    {502, "{\"message\":\"Bad gateway\"}", "HTTP 502: \"{\"message\":\"Bad gateway\"}\"", true},
    {503, "\xFF\xFE ok", "HTTP 503: \"?? ok\"", true},
    {404, "{\"type\":\"error\",\"error\":{\"message\":\"no type\"}}",
     "HTTP 404: \"{\"type\":\"error\",\"error\":{\"message\":\"no type\"}}\"", false},
};

static void test_error_decode_other(void)
{
	struct api_error e;
	char *big = malloc(4001);

	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct error_case *c = &error_cases[i];
		api_error_clear(&e);
		wire_error_decode(c->status, c->body, strlen(c->body), &e);
		CHECK_EQ_INT(e.http_status, c->status);
		CHECK_EQ_STR(e.type, "http_error");
		CHECK_EQ_STR(e.message, c->message);
		CHECK(e.retryable == c->retryable);
	}
	/* an exact-size body with no NUL after it, as curl hands it over */
	char *exact = malloc(7);
	if (!exact)
		abort();
	memcpy(exact, "<html>\n", 7);
	api_error_clear(&e);
	wire_error_decode(413, exact, 7, &e);
	CHECK_EQ_STR(e.message, "HTTP 413: \"<html>\"");
	memcpy(exact, "{\"a\":1}", 7);
	wire_error_decode(413, exact, 7, &e);
	CHECK_EQ_STR(e.message, "HTTP 413: \"{\"a\":1}\"");
	free(exact);
	api_error_clear(&e);
	wire_error_decode(500, NULL, 0, &e);
	CHECK_EQ_STR(e.message, "HTTP 500 with an empty body");

	/* a long body is cut at a character boundary and says so */
	if (!big)
		abort();
	for (int i = 0; i < 2000; i++)
		memcpy(big + 2 * i, "\xC3\xA9", 2);
	for (int shift = 0; shift < 2; shift++) {
		api_error_clear(&e);
		wire_error_decode(413, big + shift, 4000 - (size_t)shift, &e);
		size_t n = strlen(e.message);
		CHECK(n > 400 && n < sizeof(e.message));
		CHECK(utf8_valid(e.message, n));
		CHECK(strcmp(e.message + n - 4, "...\"") == 0);
		/* only the stray byte at the start is a '?': the cut dropped a half character */
		CHECK(strchr(e.message + strlen("HTTP 413: \"") + (size_t)shift, '?') == NULL);
	}
	free(big);
}

static void test_retry_rules(void)
{
	static const struct {
		int status;
		bool retry;
	} statuses[] = {
	    {408, true},  {409, true},	{429, true},  {500, true},  {502, true},  {503, true},
	    {504, true},  {529, true},	{400, false}, {401, false}, {402, false}, {403, false},
	    {404, false}, {413, false}, {422, false}, {200, false}, {0, false},
	};
	static const struct {
		const char *type;
		bool retry;
	} types[] = {
	    {"overloaded_error", true},
	    {"api_error", true},
	    {"rate_limit_error", true},
	    {"timeout_error", true},
	    {"invalid_request_error", false},
	    {"authentication_error", false},
	    {"permission_error", false},
	    {"not_found_error", false},
	    {"request_too_large", false},
	    {"", false},
	    {NULL, false},
	};

	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		CHECK(api_error_status_retryable(statuses[i].status) == statuses[i].retry);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		CHECK(wire_error_type_retryable(types[i].type) == types[i].retry);
}

static void test_api_error(void)
{
	struct api_error e;
	char long_msg[1201];

	memset(&e, 0x55, sizeof(e));
	api_error_clear(&e);
	CHECK(e.http_status == 0 && !e.type[0] && !e.message[0] && !e.request_id[0] &&
	      !e.retryable && e.retry_after_ms == -1);
	e.http_status = 500;
	api_error_set(&e, "stream_error", "stream ended after %d bytes", 42);
	CHECK_EQ_STR(e.type, "stream_error");
	CHECK_EQ_STR(e.message, "stream ended after 42 bytes");
	CHECK_EQ_INT(e.http_status, 500);

	/* truncated for humans, never inside a character */
	for (int i = 0; i < 600; i++)
		memcpy(long_msg + 2 * i, "\xC3\xA9", 2);
	long_msg[1200] = '\0';
	for (int shift = 0; shift < 2; shift++) {
		api_error_set(&e, "x", shift ? "x%s" : "%s", long_msg);
		size_t n = strlen(e.message);
		CHECK(n >= sizeof(e.message) - 4 && n < sizeof(e.message));
		CHECK(utf8_valid(e.message, n));
	}
}

int main(void)
{
	for (size_t i = 0; i < sizeof(stream_cases) / sizeof(stream_cases[0]); i++)
		test_stream(&stream_cases[i]);
	test_event_table();
	test_event_edges();
	test_request_minimal();
	test_request_full();
	test_request_text_round_trip();
	test_request_errors();
	test_error_decode_json();
	test_error_decode_other();
	test_retry_rules();
	test_api_error();
	return check_report();
}
