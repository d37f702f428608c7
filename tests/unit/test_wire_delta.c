/* test_wire_delta.c — the text_delta fast path (src/core/wire_delta.c) against
 * the cJSON path of wire_event_decode.
 *
 * Every input of the table is decoded three ways: by wire_text_delta_fast alone
 * (the table says whether it must take the input or leave it to cJSON), by
 * wire_event_decode (fast path first) and by wire_event_decode_json; the last
 * two must agree on the code and every field.  Each input also goes through the
 * SSE parser as an event, split at every byte, with the same comparison on what
 * comes out.  Then texts of random bytes, written by cJSON the way the API
 * writes them, must come back byte for byte by both paths.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mcpfs/sse.h"
#include "mcpfs/wire.h"

#define HEAD                                                                                       \
	"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","        \
	"\"text\":"

static const struct delta_case {
	const char *label;
	const char *data;
	bool fast;	  /* the fast path must take it */
	int r;		  /* what both paths answer */
	const char *text; /* the decoded text when r == 0 and it is a text delta */
} cases[] = {
    {"plain", HEAD "\"Hello\"}}", true, 0, "Hello"},
    {"empty", HEAD "\"\"}}", true, 0, ""},
    {"index 7",
     "{\"type\":\"content_block_delta\",\"index\":7,\"delta\":{\"type\":"
     "\"text_delta\",\"text\":\"x\"}}",
     true, 0, "x"},
    {"index 999999999",
     "{\"type\":\"content_block_delta\",\"index\":999999999,\"delta\":"
     "{\"type\":\"text_delta\",\"text\":\"x\"}}",
     true, 0, "x"},
    {"simple escapes", HEAD "\"a\\n\\t\\r\\b\\f\\\"\\\\\\/z\"}}", true, 0, "a\n\t\r\b\f\"\\/z"},
    {"u escapes", HEAD "\"\\u00e9\\u00E9\\u20ac\\uFFFF\\u0041\"}}", true, 0,
     "\xc3\xa9\xc3\xa9\xe2\x82\xac\xef\xbf\xbf"
     "A"},
    {"u escape one byte", HEAD "\"\\u0001\\u001f\"}}", true, 0, "\x01\x1f"},
    {"surrogate pair", HEAD "\"\\ud83d\\ude00!\"}}", true, 0, "\xf0\x9f\x98\x80!"},
    {"surrogate pair max", HEAD "\"\\udbff\\udfff\"}}", true, 0, "\xf4\x8f\xbf\xbf"},
    {"raw utf8", HEAD "\"\xc3\xa9\xe6\xbc\xa2\xf0\x9f\x98\x80\"}}", true, 0,
     "\xc3\xa9\xe6\xbc\xa2\xf0\x9f\x98\x80"},
    {"raw U+2028",
     HEAD "\"a\xe2\x80\xa8"
	  "b\"}}",
     true, 0,
     "a\xe2\x80\xa8"
     "b"},
    {"escaped quote at end", HEAD "\"q\\\"\"}}", true, 0, "q\""},
    /* Left to cJSON, which decides. */
    {"u0000 kept", HEAD "\"a\\u0000b\"}}", true, 0, "a"},
    {"lone high surrogate", HEAD "\"\\ud83dx\"}}", false, -EINVAL, NULL},
    {"high then not low", HEAD "\"\\ud83d\\u0041\"}}", false, -EINVAL, NULL},
    {"lone low surrogate", HEAD "\"\\ude00\"}}", false, -EINVAL, NULL},
    {"high at end", HEAD "\"\\ud83d\"}}", false, -EINVAL, NULL},
    /* cJSON reads an invalid hex digit as 0: the escape u12g4 ends the text as u0000 does. */
    {"bad hex", HEAD "\"\\u12g4\"}}", false, 0, ""},
    {"short u", HEAD "\"\\u12\"}}", false, -EINVAL, NULL},
    {"bad escape", HEAD "\"\\x41\"}}", false, -EINVAL, NULL},
    {"raw tab", HEAD "\"a\tb\"}}", false, 0, "a\tb"},
    {"bad utf8", HEAD "\"\xc3\x28\"}}", false, -EINVAL, NULL},
    {"overlong utf8", HEAD "\"\xc0\xaf\"}}", false, -EINVAL, NULL},
    {"surrogate in utf8", HEAD "\"\xed\xa0\x80\"}}", false, -EINVAL, NULL},
    {"truncated utf8", HEAD "\"\xe2\x82\"}}", false, -EINVAL, NULL},
    {"index leading zero",
     "{\"type\":\"content_block_delta\",\"index\":01,\"delta\":{\"type\":"
     "\"text_delta\",\"text\":\"x\"}}",
     false, 0, "x"},
    {"index too big",
     "{\"type\":\"content_block_delta\",\"index\":2147483648,\"delta\":"
     "{\"type\":\"text_delta\",\"text\":\"x\"}}",
     false, -EINVAL, NULL},
    {"index 10 digits",
     "{\"type\":\"content_block_delta\",\"index\":1000000000,\"delta\":"
     "{\"type\":\"text_delta\",\"text\":\"x\"}}",
     false, 0, "x"},
    {"index 10 digits, int overflow",
     "{\"type\":\"content_block_delta\",\"index\":7777777777,"
     "\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}",
     false, -EINVAL, NULL},
    {"index negative",
     "{\"type\":\"content_block_delta\",\"index\":-1,\"delta\":{\"type\":"
     "\"text_delta\",\"text\":\"x\"}}",
     false, -EINVAL, NULL},
    {"index fraction",
     "{\"type\":\"content_block_delta\",\"index\":0.5,\"delta\":{\"type\":"
     "\"text_delta\",\"text\":\"x\"}}",
     false, -EINVAL, NULL},
    {"spaces",
     "{\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": "
     "\"text_delta\", \"text\": \"x\"}}",
     false, 0, "x"},
    {"trailing space", HEAD "\"x\"}} ", false, 0, "x"},
    {"trailing garbage", HEAD "\"x\"}}}", false, 0, "x"},
    {"extra key", HEAD "\"x\",\"y\":1}}", false, 0, "x"},
    {"text twice", HEAD "\"x\",\"text\":\"y\"}}", false, 0, "x"},
    {"unterminated", HEAD "\"x}}", false, -EINVAL, NULL},
    {"cut", HEAD "\"x\"}", false, -EINVAL, NULL},
    {"text not string", HEAD "7}}", false, -EINVAL, NULL},
    {"thinking delta",
     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
     "\"thinking_delta\",\"thinking\":\"hm\"}}",
     false, 0, "hm"},
    {"key order",
     "{\"index\":0,\"type\":\"content_block_delta\",\"delta\":{\"type\":"
     "\"text_delta\",\"text\":\"x\"}}",
     false, 0, "x"},
    {"ping", "{\"type\":\"ping\"}", false, 0, NULL},
};

static bool same_event(const struct wire_event *a, const struct wire_event *b)
{
	return a->type == b->type && a->index == b->index && a->block == b->block &&
	       a->text_len == b->text_len && !a->text == !b->text &&
	       (!a->text || memcmp(a->text, b->text, a->text_len + 1) == 0) &&
	       !strcmp(a->message_id, b->message_id) && !strcmp(a->model, b->model) &&
	       !strcmp(a->stop_reason, b->stop_reason) &&
	       !memcmp(&a->usage, &b->usage, sizeof(a->usage)) &&
	       !strcmp(a->error.type, b->error.type) && !strcmp(a->error.message, b->error.message);
}

/* Decodes data both ways; true when they agree.  *r and *text (a copy, or NULL)
 * report the answer. */
static bool both_ways(const char *name, const char *data, size_t len, int *r, char **text)
{
	struct wire_event a, b;
	size_t name_len = name ? strlen(name) : 0;
	int ra = wire_event_decode(name, name_len, data, len, &a);
	int rb = wire_event_decode_json(name, name_len, data, len, &b);
	bool same = ra == rb && (ra < 0 || same_event(&a, &b));

	*r = ra;
	*text = ra == 0 && a.text ? strdup(a.text) : NULL;
	wire_event_done(&a);
	wire_event_done(&b);
	return same;
}

static void test_table(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct delta_case *c = &cases[i];
		size_t len = strlen(c->data);
		struct wire_event ev;
		int f = wire_text_delta_fast(c->data, len, &ev);

		if (f != (c->fast ? 1 : 0))
			fprintf(stderr, "case '%s': fast path %d\n", c->label, f);
		CHECK_EQ_INT(f, c->fast ? 1 : 0);
		if (f == 1) {
			CHECK_EQ_STR(ev.text, c->text);
			wire_event_done(&ev);
		}
		int r;
		char *text;
		bool same = both_ways("content_block_delta", c->data, len, &r, &text);
		if (!same || r != c->r)
			fprintf(stderr, "case '%s': paths %s, r %d\n", c->label,
				same ? "agree" : "differ", r);
		CHECK(same);
		CHECK_EQ_INT(r, c->r);
		if (c->text)
			CHECK_EQ_STR(text, c->text);
		else
			CHECK(text == NULL);
		free(text);
	}
}

/* --- through the SSE parser, split at every byte ------------------------------------ */

struct seen {
	int events;
	int agreed;
};

static int on_event(void *data, const struct sse_event *e)
{
	struct seen *s = data;
	char name[64];
	int r;
	char *text;

	snprintf(name, sizeof(name), "%.*s", (int)e->name_len, e->name);
	s->events++;
	s->agreed += both_ways(name, e->data, e->data_len, &r, &text);
	free(text);
	return 0;
}

static void test_splits(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char stream[512];
		int n = snprintf(stream, sizeof(stream), "event: content_block_delta\ndata: %s\n\n",
				 cases[i].data);
		for (int cut = 0; cut <= n; cut++) {
			struct sse p;
			struct seen s = {0, 0};

			sse_init(&p, 4096);
			CHECK_EQ_INT(sse_feed(&p, stream, (size_t)cut, on_event, &s), 0);
			CHECK_EQ_INT(sse_feed(&p, stream + cut, (size_t)(n - cut), on_event, &s),
				     0);
			sse_done(&p);
			CHECK_EQ_INT(s.events, 1);
			CHECK_EQ_INT(s.agreed, 1);
		}
	}
}

/* --- random texts, written as the API writes them ----------------------------------- */

static uint32_t rng = 12345;

static uint32_t next(void)
{
	rng = rng * 1103515245u + 12345u;
	return rng >> 8;
}

/* A random text of valid UTF-8 from a mix that stresses escaping: controls,
 * quotes, backslashes, slashes, ASCII, 2-, 3- and 4-byte characters. */
static size_t random_text(char *out, size_t max_chars)
{
	static const char *const pieces[] = {
	    "\x01",
	    "\x1f",
	    "\n",
	    "\t",
	    "\"",
	    "\\",
	    "/",
	    "a",
	    "Z",
	    " ",
	    "\xc3\xa9",
	    "\xe2\x80\xa8",
	    "\xef\xbf\xbf",
	    "\xf0\x9f\x98\x80",
	    "\xf4\x8f\xbf\xbf",
	    "}}",
	};
	size_t n = 0, chars = next() % max_chars;

	for (size_t i = 0; i < chars; i++) {
		const char *p = pieces[next() % (sizeof(pieces) / sizeof(pieces[0]))];
		memcpy(out + n, p, strlen(p));
		n += strlen(p);
	}
	out[n] = '\0';
	return n;
}

/* A content_block_delta event as cJSON writes it (the caller frees it). */
static char *delta_json(const char *text, unsigned index)
{
	cJSON *o = cJSON_CreateObject(), *d = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "content_block_delta");
	cJSON_AddNumberToObject(o, "index", (double)index);
	cJSON_AddStringToObject(d, "type", "text_delta");
	cJSON_AddStringToObject(d, "text", text);
	cJSON_AddItemToObject(o, "delta", d);
	char *data = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return data;
}

static void test_random(void)
{
	int took = 0;

	for (int i = 0; i < 2000; i++) {
		char text[64 * 4 + 1];
		size_t n = random_text(text, 64);
		char *data = delta_json(text, next() % 3);

		struct wire_event ev;
		int f = wire_text_delta_fast(data, strlen(data), &ev);
		if (f == 1) {
			took++;
			CHECK(ev.text_len == n && memcmp(ev.text, text, n + 1) == 0);
			wire_event_done(&ev);
		}
		int r;
		char *got;
		CHECK(both_ways(NULL, data, strlen(data), &r, &got));
		CHECK_EQ_INT(r, 0);
		CHECK(got && strlen(got) == n && memcmp(got, text, n) == 0);
		free(got);
		free(data);
	}
	/* cJSON writes controls as \u00XX and everything else in the fast form. */
	CHECK_EQ_INT(took, 2000);
}

/* One character that needs attention (a quote, a backslash, a control written
 * as an escape, a non-ASCII character) at every position of texts of every
 * length around the eight-byte steps of the scan: the fast path must take each
 * and give the text back. */
static void test_positions(void)
{
	static const char *const specials[] = {"\"", "\\", "\n", "\x01", "\xc3\xa9", "/"};

	for (size_t len = 0; len <= 26; len++) {
		for (size_t pos = 0; pos <= len; pos++) {
			for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
				char text[64];
				size_t sl = strlen(specials[k]);
				memset(text, 'x', len);
				memcpy(text + pos, specials[k], sl);
				if (pos < len)
					memset(text + pos + sl, 'y', len - pos);
				text[len + sl] = '\0';
				char *data = delta_json(text, 0);
				struct wire_event ev;
				int f = wire_text_delta_fast(data, strlen(data), &ev);
				CHECK_EQ_INT(f, 1);
				if (f == 1) {
					CHECK_EQ_STR(ev.text, text);
					wire_event_done(&ev);
				}
				free(data);
			}
		}
	}
}

/* What the fast path must leave to cJSON wherever it sits in the eight-byte
 * steps: a raw control character, and a quote that ends the string early with
 * more bytes after it (cJSON refuses that; read on, it would look like text). */
static void test_stray(void)
{
	for (size_t pos = 0; pos <= 17; pos++) {
		for (int c = 0x01; c <= 0x20; c++) {
			char data[256], text[32];
			memset(text, 'a', pos);
			text[pos] = (char)c;
			memset(text + pos + 1, 'b', 9);
			text[pos + 10] = '\0';
			snprintf(data, sizeof(data), HEAD "\"%s\"}}", text);
			struct wire_event ev;
			int f = wire_text_delta_fast(data, strlen(data), &ev);
			if (f == 1)
				wire_event_done(&ev);
			CHECK_EQ_INT(f, c == 0x20 ? 1 : 0);
			if (c != 0x20) /* once per position */
				continue;
			text[pos] = '"';
			snprintf(data, sizeof(data), HEAD "\"%s\"}}", text);
			int r;
			char *got;
			CHECK_EQ_INT(wire_text_delta_fast(data, strlen(data), &ev), 0);
			CHECK(both_ways(NULL, data, strlen(data), &r, &got));
			CHECK_EQ_INT(r, -EINVAL);
			free(got);
		}
	}
}

/* A \u0000 is a NUL byte inside the text, which goes on after it (issue 17):
 * the fast path, and cJSON's for any other form of the event. */
static void test_nul(void)
{
	static const char *const forms[] = {
	    HEAD "\"a\\u0000b\\u0000\"}}",
	    "{ \"type\": \"content_block_delta\", \"index\": 0, \"delta\": "
	    "{\"text\": \"a\\u0000b\\u0000\", \"type\": \"text_delta\"} }",
	    "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
	    "{\"type\":\"text\",\"text\":\"a\\u0000b\\u0000\"}}",
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		struct wire_event ev;
		CHECK_EQ_INT(wire_event_decode(NULL, 0, forms[i], strlen(forms[i]), &ev), 0);
		CHECK_EQ_INT((int)ev.text_len, 4);
		CHECK(ev.text && memcmp(ev.text, "a\0b\0", 5) == 0);
		wire_event_done(&ev);
		int r;
		char *text;
		CHECK(both_ways(NULL, forms[i], strlen(forms[i]), &r, &text));
		free(text);
	}
	/* An escaped backslash before u0000 is no NUL; invalid UTF-8 elsewhere in
	 * the event is still refused. */
	const char *lit = HEAD "\"\\\\u0000\"}}";
	struct wire_event ev;
	CHECK_EQ_INT(wire_event_decode(NULL, 0, lit, strlen(lit), &ev), 0);
	CHECK_EQ_STR(ev.text, "\\u0000");
	wire_event_done(&ev);
	const char *bad = "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
			  "{\"type\":\"text_delta\",\"text\":\"\\u0000\xff\"}}";
	CHECK_EQ_INT(wire_event_decode(NULL, 0, bad, strlen(bad), &ev), -EINVAL);
}

int main(void)
{
	test_nul();
	test_stray();
	test_table();
	test_positions();
	test_splits();
	test_random();
	return check_report();
}
