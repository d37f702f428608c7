/* test_sse.c — the SSE parser and writer.
 *
 * Every input is fed whole, one byte at a time, and in two fragments split at
 * every possible point; each way must give the same events and the same result.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/sse.h"
#include "check.h"

#define MAX_EVENTS 16
#define DEFAULT_MAX 4096

struct rec {
	char name[64];
	char *data;
	size_t data_len;
};

struct run {
	struct rec ev[MAX_EVENTS];
	int n;
	int rc;
	int stop_at; /* the callback fails with -ECANCELED at this event (1-based) */
	bool bad;    /* the callback saw an event breaking the sse_event contract */
};

static int on_event(void *data, const struct sse_event *ev)
{
	struct run *run = data;

	if (run->n == MAX_EVENTS || ev->name_len >= sizeof(run->ev[0].name) ||
	    ev->data[ev->data_len] != '\0' || strlen(ev->name) < ev->name_len) {
		run->bad = true;
		return -ERANGE;
	}
	struct rec *r = &run->ev[run->n++];
	memcpy(r->name, ev->name, ev->name_len);
	r->name[ev->name_len] = '\0';
	r->data = malloc(ev->data_len + 1);
	if (!r->data)
		abort();
	memcpy(r->data, ev->data, ev->data_len + 1);
	r->data_len = ev->data_len;
	return run->n == run->stop_at ? -ECANCELED : 0;
}

static void run_done(struct run *run)
{
	for (int i = 0; i < run->n; i++)
		free(run->ev[i].data);
	run->n = 0;
}

/* Feeds in[0..len) as fragments ending at the given cut points, stopping at the
 * first error as a caller would. */
static void feed(const char *in, size_t len, size_t max, const size_t *cuts, size_t n_cuts,
		 int stop_at, struct run *run)
{
	struct sse p;
	size_t from = 0;

	memset(run, 0, sizeof(*run));
	run->stop_at = stop_at;
	sse_init(&p, max);
	for (size_t i = 0; i <= n_cuts && run->rc == 0; i++) {
		size_t to = i < n_cuts ? cuts[i] : len;
		run->rc = sse_feed(&p, in + from, to - from, on_event, run);
		from = to;
	}
	sse_done(&p);
}

static bool run_equal(const struct run *a, const struct run *b)
{
	if (a->rc != b->rc || a->n != b->n || a->bad || b->bad)
		return false;
	for (int i = 0; i < a->n; i++) {
		if (strcmp(a->ev[i].name, b->ev[i].name) != 0 ||
		    a->ev[i].data_len != b->ev[i].data_len ||
		    memcmp(a->ev[i].data, b->ev[i].data, a->ev[i].data_len) != 0)
			return false;
	}
	return true;
}

/* Feeds in every way and compares each run with want. */
static void check_every_way(const char *label, const char *in, size_t len, size_t max, int stop_at,
			    const struct run *want)
{
	struct run got;
	size_t *cuts = malloc((len ? len : 1) * sizeof(*cuts));
	size_t bad_split = 0;

	if (!cuts)
		abort();
	feed(in, len, max, NULL, 0, stop_at, &got);
	if (!run_equal(&got, want))
		fprintf(stderr, "%s: fed whole: rc %d, %d events\n", label, got.rc, got.n);
	CHECK(run_equal(&got, want));
	run_done(&got);

	for (size_t i = 1; i < len; i++)
		cuts[i - 1] = i;
	feed(in, len, max, cuts, len ? len - 1 : 0, stop_at, &got);
	if (!run_equal(&got, want))
		fprintf(stderr, "%s: fed byte by byte: rc %d, %d events\n", label, got.rc, got.n);
	CHECK(run_equal(&got, want));
	run_done(&got);

	for (size_t k = 0; k <= len && !bad_split; k++) {
		feed(in, len, max, &k, 1, stop_at, &got);
		if (!run_equal(&got, want))
			bad_split = k + 1;
		run_done(&got);
	}
	if (bad_split)
		fprintf(stderr, "%s: split at %zu differs\n", label, bad_split - 1);
	CHECK(bad_split == 0);
	free(cuts);
}

struct want_ev {
	const char *name;
	const char *data;
	size_t data_len; /* 0: strlen(data) */
};

static void want_build(struct run *want, int rc, const struct want_ev *ev)
{
	memset(want, 0, sizeof(*want));
	want->rc = rc;
	for (int i = 0; i < MAX_EVENTS && ev[i].name; i++) {
		struct rec *r = &want->ev[want->n++];
		snprintf(r->name, sizeof(r->name), "%s", ev[i].name);
		r->data_len = ev[i].data_len ? ev[i].data_len : strlen(ev[i].data);
		r->data = malloc(r->data_len + 1);
		if (!r->data)
			abort();
		memcpy(r->data, ev[i].data, r->data_len + 1);
	}
}

static const struct parse_case {
	const char *label;
	const char *in;
	size_t len; /* 0: strlen(in) */
	size_t max; /* 0: DEFAULT_MAX */
	int stop_at;
	int rc;
	struct want_ev ev[5];
} parse_cases[] = {
    {"LF", "event: e\ndata: x\n\n", .ev = {{"e", "x"}}},
    {"CRLF", "event: e\r\ndata: x\r\n\r\n", .ev = {{"e", "x"}}},
    {"lone CR", "event: e\rdata: x\r\r", .ev = {{"e", "x"}}},
    {"mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", .ev = {{"message", "a\nb\nc"}}},
    /* a CRLF pair is one line end: read as two, the LF would dispatch "a" alone */
    {"CRLF not two ends", "data: a\r\ndata: b\n\n", .ev = {{"message", "a\nb"}}},
    {"CR then LF line", "data: a\r\n\ndata: b\r\r", .ev = {{"message", "a"}, {"message", "b"}}},
    {"comments", ": hello\nevent: e\n: mid\ndata: x\n\n: tail\n\n:\n\n", .ev = {{"e", "x"}}},
    {"multiple data lines", "data: a\ndata:\ndata: b\n\n", .ev = {{"message", "a\n\nb"}}},
    {"no space after colon", "event:e\ndata:x\n\n", .ev = {{"e", "x"}}},
    {"only one space stripped", "data:  x \n\n", .ev = {{"message", " x "}}},
    {"no event field", "data: x\n\n", .ev = {{"message", "x"}}},
    {"empty event name", "event:\ndata: x\n\n", .ev = {{"message", "x"}}},
    {"field without colon", "data\n\nevent\ndata\n\n", .ev = {{"message", ""}, {"message", ""}}},
    {"colon in value", "data: a: b\n\n", .ev = {{"message", "a: b"}}},
    {"unknown fields", "id: 1\nretry: 5\nfoo: bar\nDATA: no\ndata: x\n\n",
     .ev = {{"message", "x"}}},
    {"last event field wins", "event: a\nevent: b\ndata: x\n\n", .ev = {{"b", "x"}}},
    {"no data, not dispatched", "event: e\n\n\ndata: x\n\n", .ev = {{"message", "x"}}},
    {"name per event", "event: e\ndata: 1\n\ndata: 2\n\n", .ev = {{"e", "1"}, {"message", "2"}}},
    {"incomplete final event", "data: a\n\ndata: b\n", .ev = {{"message", "a"}}},
    {"incomplete final line", "data: a\n\nevent: e\ndata: b", .ev = {{"message", "a"}}},
    {"empty input", ""},
    {"blank lines only", "\n\r\n\r\r\n"},
    {"NUL byte kept", "data: a\0b\n\n", 12, .ev = {{"message", "a\0b", 3}}},
    {"U+2028 is no line end",
     "data: a\xE2\x80\xA8"
     "b\n\n",
     .ev = {{"message", "a\xE2\x80\xA8"
			"b"}}},
    {"split UTF-8", "data: {\"text\":\" \xF0\x9F\x8C\xB8\"}\n\n",
     .ev = {{"message", "{\"text\":\" \xF0\x9F\x8C\xB8\"}"}}},
    /* the cap: name, data so far and the line being read, together */
    {"line at the cap", "data: 0123456789\n\n", .max = 16, .ev = {{"message", "0123456789"}}},
    {"line over the cap", "data: 0123456789a\n\n", .max = 16, .rc = -EFBIG},
    {"unterminated line over the cap", "data: 0123456789abcdef", .max = 16, .rc = -EFBIG},
    {"comment over the cap", ": 0123456789abcdef\n\n", .max = 16, .rc = -EFBIG},
    {"events before the cap", "data: a\n\ndata: 0123456789abcdef\n\n", .max = 16, .rc = -EFBIG,
     .ev = {{"message", "a"}}},
    {"data lines add up", "data: 12345\ndata: 12345\ndata: 12345\n\n", .max = 16, .rc = -EFBIG},
    {"name counts", "event: abcdefgh\ndata: 1234\n\n", .max = 16, .rc = -EFBIG},
    {"name and data at the cap", "event: abcdefgh\ndata: 12\n\n", .max = 16,
     .ev = {{"abcdefgh", "12"}}},
    {"callback error stops", "data: a\n\ndata: b\n\n", .stop_at = 1, .rc = -ECANCELED,
     .ev = {{"message", "a"}}},
};

static void test_parse_table(void)
{
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		struct run want;

		want_build(&want, c->rc, c->ev);
		check_every_way(c->label, c->in, c->len ? c->len : strlen(c->in),
				c->max ? c->max : DEFAULT_MAX, c->stop_at, &want);
		run_done(&want);
	}
}

static size_t count_feed(struct sse *p, const char *s, int *rc)
{
	struct run run = {0};

	*rc = sse_feed(p, s, strlen(s), on_event, &run);
	size_t n = (size_t)run.n;
	if (run.n == 1 && strcmp(run.ev[0].data, "ok") != 0)
		n = 99;
	run_done(&run);
	return n;
}

/* State carried between calls: a CR at a fragment's end, reset, the cap's reset. */
static void test_state(void)
{
	struct sse p;
	int rc;

	sse_init(&p, 16);
	CHECK_EQ_INT(count_feed(&p, "data: ok\r", &rc), 0);
	CHECK_EQ_INT(sse_feed(&p, "", 0, on_event, NULL), 0); /* an empty fragment keeps the CR */
	CHECK_EQ_INT(count_feed(&p, "\n\n", &rc), 1);

	CHECK_EQ_INT(count_feed(&p, "event: x\ndata: partial", &rc), 0);
	sse_reset(&p);
	CHECK_EQ_INT(count_feed(&p, "data: ok\n\n", &rc), 1);
	CHECK_EQ_INT(count_feed(&p, "data: a\r", &rc), 0);
	sse_reset(&p); /* forgets the CR too: the LF below is an empty line */
	CHECK_EQ_INT(count_feed(&p, "\ndata: ok\n\n", &rc), 1);

	/* past the cap the held name and partial line are dropped with the event */
	CHECK_EQ_INT(count_feed(&p, "event: e\ndata: 0123", &rc), 0);
	CHECK_EQ_INT(count_feed(&p, "456789abcdefghij", &rc), 0);
	CHECK_EQ_INT(rc, -EFBIG);
	CHECK_EQ_INT(count_feed(&p, "\n\ndata: ok\n\n", &rc), 1);
	CHECK_EQ_INT(rc, 0);
	sse_done(&p);
	sse_done(NULL);

	/* an empty fragment between a CR and its LF keeps them one line end */
	static const char crlf[] = "data: a\r\ndata: b\n\n";
	static const size_t cuts[] = {8, 8, 8};
	struct run got;
	feed(crlf, strlen(crlf), DEFAULT_MAX, cuts, 3, 0, &got);
	CHECK_EQ_INT(got.rc, 0);
	CHECK_EQ_INT(got.n, 1);
	CHECK(got.n == 1 && strcmp(got.ev[0].data, "a\nb") == 0);
	run_done(&got);
}

static char *read_fixture(const char *name, size_t *len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/sse/%s", FIXTURES, name);
	FILE *f = fopen(path, "rb");
	char *s = malloc(8192);

	if (!f || !s)
		abort();
	*len = fread(s, 1, 8191, f);
	s[*len] = '\0';
	fclose(f);
	return s;
}

/* The fixtures end every line in LF; the same stream with other line ends must
 * give the same events. */
static char *convert_eol(const char *s, size_t len, const char *eol, size_t *out_len)
{
	char *o = malloc(len * 2 + 1);
	size_t n = 0;

	if (!o)
		abort();
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\n') {
			memcpy(o + n, eol, strlen(eol));
			n += strlen(eol);
		} else {
			o[n++] = s[i];
		}
	}
	o[n] = '\0';
	*out_len = n;
	return o;
}

static const struct fixture_case {
	const char *file;
	size_t size;
	const char *names[MAX_EVENTS];
} fixture_cases[] = {
    {"stream_A.sse",
     1089,
     {"message_start", "content_block_start", "content_block_delta", "content_block_delta",
      "content_block_delta", "content_block_stop", "message_delta", "message_stop"}},
    {"stream_B.sse",
     851,
     {"message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
      "error"}},
    {"stream_C.sse",
     1158,
     {"message_start", "content_block_start", "content_block_delta", "content_block_delta",
      "content_block_delta", "content_block_stop", "message_delta", "message_stop"}},
};

/* Builds the expected run from the file the simple way: these fixtures have one
 * "event:" and one "data:" line per event. */
static void fixture_want(const char *s, const struct fixture_case *c, struct run *want)
{
	struct want_ev ev[MAX_EVENTS + 1] = {{0}};
	char *copy = strdup(s), *save = NULL;
	int n = 0;

	if (!copy)
		abort();
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, "data: ", 6) == 0 && n < MAX_EVENTS)
			ev[n++].data = line + 6;
	for (int i = 0; i < n; i++)
		ev[i].name = c->names[i];
	want_build(want, 0, ev);
	free(copy);
	CHECK(c->names[n] == NULL || n == MAX_EVENTS);
}

static void test_fixture(const struct fixture_case *c)
{
	size_t len, crlf_len, cr_len;
	char *s = read_fixture(c->file, &len);
	char *crlf = convert_eol(s, len, "\r\n", &crlf_len);
	char *cr = convert_eol(s, len, "\r", &cr_len);
	struct run want, got;

	CHECK_EQ_INT(len, c->size);
	fixture_want(s, c, &want);
	CHECK(want.n >= 6);
	check_every_way(c->file, s, len, DEFAULT_MAX, 0, &want);
	check_every_way(c->file, crlf, crlf_len, DEFAULT_MAX, 0, &want);
	check_every_way(c->file, cr, cr_len, DEFAULT_MAX, 0, &want);

	/* A stream cut before its last empty line loses only its last event. */
	feed(s, len - 1, DEFAULT_MAX, NULL, 0, 0, &got);
	CHECK_EQ_INT(got.rc, 0);
	CHECK_EQ_INT(got.n, want.n - 1);
	run_done(&got);

	/* The largest event here is message_start: its name, then its data line. */
	size_t need = strlen("message_start") + strlen("data: ") + want.ev[0].data_len;
	feed(s, len, need, NULL, 0, 0, &got);
	CHECK(run_equal(&got, &want));
	run_done(&got);
	feed(s, len, need - 1, NULL, 0, 0, &got);
	CHECK_EQ_INT(got.rc, -EFBIG);
	CHECK_EQ_INT(got.n, 0);
	run_done(&got);

	run_done(&want);
	free(s);
	free(crlf);
	free(cr);
}

/* The realistic transport split of §2.6: one fragment ends "…\xF0\x9F", the next
 * begins "\x8C\xB8…", and the character must arrive whole. */
static void test_fixture_emoji_split(void)
{
	size_t len;
	char *s = read_fixture("stream_C.sse", &len);
	const char *flower = strstr(s, "\xF0\x9F\x8C\xB8");
	struct run got;

	CHECK(flower != NULL);
	if (flower) {
		size_t cut = (size_t)(flower - s) + 2;
		feed(s, len, DEFAULT_MAX, &cut, 1, 0, &got);
		CHECK_EQ_INT(got.n, 8);
		CHECK_EQ_STR(got.ev[4].data, "{\"type\":\"content_block_delta\",\"index\":0,"
					     "\"delta\":{\"type\":\"text_delta\",\"text\":\" "
					     "\xF0\x9F\x8C\xB8\"}}");
		run_done(&got);
	}
	free(s);
}

static const struct write_case {
	const char *name;
	const char *data;
	size_t len; /* 0 with data: strlen(data) */
	const char *out;
} write_cases[] = {
    {"e", "x", 0, "event: e\ndata: x\n\n"},
    {NULL, "x", 0, "data: x\n\n"},
    {"e", "a\nb", 0, "event: e\ndata: a\ndata: b\n\n"},
    {"e", "", 0, "event: e\ndata: \n\n"},
    {NULL, "a\n", 0, "data: a\ndata: \n\n"},
    {NULL, "\n\n", 0, "data: \ndata: \ndata: \n\n"},
    {NULL, " lead", 0, "data:  lead\n\n"},
    {"message_stop", "{\"type\":\"message_stop\"}", 0,
     "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"},
};

static void test_write(void)
{
	struct buf out;
	struct want_ev ev[MAX_EVENTS + 1] = {{0}};
	struct run want;
	int n = 0;

	buf_init(&out, 4096);
	for (size_t i = 0; i < sizeof(write_cases) / sizeof(write_cases[0]); i++) {
		const struct write_case *c = &write_cases[i];
		size_t before = out.len, len = c->len ? c->len : strlen(c->data);

		CHECK_EQ_INT(sse_write_event(&out, c->name, c->data, len), 0);
		CHECK_EQ_INT(out.len - before, strlen(c->out));
		CHECK(memcmp(out.data + before, c->out, strlen(c->out)) == 0);
		ev[n].name = c->name ? c->name : "message";
		ev[n].data = c->data;
		ev[n++].data_len = len;
	}
	/* a NUL and a split character survive too */
	CHECK_EQ_INT(sse_write_event(&out, "u", "\xF0\x9F\x8C\xB8\0z", 6), 0);
	ev[n++] = (struct want_ev){"u", "\xF0\x9F\x8C\xB8\0z", 6};
	CHECK_EQ_INT(sse_write_comment(&out, "keep-alive"), 0);
	CHECK(strcmp(out.data + out.len - 14, ": keep-alive\n\n") == 0);

	/* Every event written reads back as itself; "" data is an event, not nothing,
	 * and the comment gives no event. */
	want_build(&want, 0, ev);
	check_every_way("round trip", out.data, out.len, DEFAULT_MAX, 0, &want);
	run_done(&want);
	buf_done(&out);
}

static void test_write_errors(void)
{
	struct buf out;

	buf_init(&out, 24);
	CHECK_EQ_INT(buf_puts(&out, "keep"), 0);
	CHECK_EQ_INT(sse_write_event(&out, "e\n", "x", 1), -EINVAL);
	CHECK_EQ_INT(sse_write_event(&out, "e\r", "x", 1), -EINVAL);
	CHECK_EQ_INT(sse_write_event(&out, "e", "a\rb", 3), -EINVAL);
	CHECK_EQ_INT(sse_write_event(&out, "e", NULL, 1), -EINVAL);
	CHECK_EQ_INT(sse_write_comment(&out, "a\nb"), -EINVAL);
	/* over the cap: nothing of the event is left behind */
	CHECK_EQ_INT(sse_write_event(&out, "e", "0123456789", 10), -EFBIG);
	CHECK_EQ_INT(sse_write_comment(&out, "0123456789abcdefghij"), -EFBIG);
	CHECK_EQ_INT(out.len, 4);
	CHECK_EQ_STR(out.data, "keep");
	CHECK_EQ_INT(sse_write_event(&out, NULL, NULL, 0), 0);
	CHECK_EQ_STR(out.data, "keepdata: \n\n");
	buf_done(&out);
}

int main(void)
{
	test_parse_table();
	test_state();
	for (size_t i = 0; i < sizeof(fixture_cases) / sizeof(fixture_cases[0]); i++)
		test_fixture(&fixture_cases[i]);
	test_fixture_emoji_split();
	test_write();
	test_write_errors();
	return check_report();
}
