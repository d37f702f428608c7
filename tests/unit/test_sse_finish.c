/* test_sse_finish.c — sse_finish(), the end of a stream that ended cleanly.
 *
 * A last event that no blank line ended is dispatched at the end (the SDKs'
 * recorded fixtures end that way); a held last line is taken as a line; an
 * event without data is dropped; the parser starts afresh afterwards.  Every
 * file of tests/fixtures/recorded/ is fed whole, one byte at a time and with
 * CRLF, then finished: each way must give the same events, and a stream that
 * holds message_stop must end with it.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/sse.h"
#include "check.h"

#define MAX_EVENT (1u << 20)

struct seen {
	int n;
	char last_name[64];
	char last_data[256];
	unsigned long sum; /* of every name and data byte, position-weighted */
	int fail_at;	   /* the callback fails with -ECANCELED at this event */
};

static int on_event(void *data, const struct sse_event *ev)
{
	struct seen *s = data;
	size_t n =
	    ev->name_len < sizeof(s->last_name) - 1 ? ev->name_len : sizeof(s->last_name) - 1;
	size_t d =
	    ev->data_len < sizeof(s->last_data) - 1 ? ev->data_len : sizeof(s->last_data) - 1;

	s->n++;
	memcpy(s->last_name, ev->name, n);
	s->last_name[n] = '\0';
	memcpy(s->last_data, ev->data, d);
	s->last_data[d] = '\0';
	for (size_t i = 0; i < ev->name_len; i++)
		s->sum = s->sum * 31 + (unsigned char)ev->name[i];
	for (size_t i = 0; i < ev->data_len; i++)
		s->sum = s->sum * 31 + (unsigned char)ev->data[i];
	return s->n == s->fail_at ? -ECANCELED : 0;
}

/* Feeds s in pieces of step bytes (0: whole), then finishes. */
static int feed(const char *s, size_t len, size_t step, struct seen *out)
{
	struct sse p;
	int r = 0;

	memset(out, 0, sizeof(*out));
	sse_init(&p, MAX_EVENT);
	for (size_t i = 0; r == 0 && i < len; i += step ? step : len)
		r = sse_feed(&p, s + i, step && len - i > step ? step : len - i, on_event, out);
	if (r == 0)
		r = sse_finish(&p, on_event, out);
	sse_done(&p);
	return r;
}

static int feed_str(const char *s, size_t step, struct seen *out)
{
	return feed(s, strlen(s), step, out);
}

static void test_cases(void)
{
	struct seen s;
	struct sse p;

	/* the last event without its blank line, and without a final newline */
	CHECK_EQ_INT(feed_str("event: a\ndata: 1\n\nevent: b\ndata: 2\n", 0, &s), 0);
	CHECK_EQ_INT(s.n, 2);
	CHECK_EQ_STR(s.last_name, "b");
	CHECK_EQ_STR(s.last_data, "2");
	CHECK_EQ_INT(feed_str("event: b\r\ndata: {\"x\":1}", 1, &s), 0);
	CHECK_EQ_INT(s.n, 1);
	CHECK_EQ_STR(s.last_data, "{\"x\":1}");
	/* a complete stream: finishing adds nothing */
	CHECK_EQ_INT(feed_str("data: 1\n\n", 0, &s), 0);
	CHECK_EQ_INT(s.n, 1);
	/* no data line: nothing is dispatched (WHATWG) */
	CHECK_EQ_INT(feed_str("data: 1\n\nevent: message_stop\n", 0, &s), 0);
	CHECK_EQ_INT(s.n, 1);
	CHECK_EQ_STR(s.last_name, "message");
	/* a data line cut short is handed over as it is: the decoder refuses it */
	CHECK_EQ_INT(feed_str("data: {\"type\":\"message_st", 0, &s), 0);
	CHECK_EQ_INT(s.n, 1);
	CHECK_EQ_STR(s.last_data, "{\"type\":\"message_st");
	/* the callback's failure is returned */
	memset(&s, 0, sizeof(s));
	s.fail_at = 1;
	sse_init(&p, MAX_EVENT);
	CHECK_EQ_INT(sse_feed(&p, "data: 1", strlen("data: 1"), on_event, &s), 0);
	CHECK_EQ_INT(sse_finish(&p, on_event, &s), -ECANCELED);
	/* and the parser starts afresh after a finish */
	s.fail_at = 0;
	CHECK_EQ_INT(sse_feed(&p, "data: 2\n\n", strlen("data: 2\n\n"), on_event, &s), 0);
	CHECK_EQ_INT(s.n, 2);
	CHECK_EQ_STR(s.last_data, "2");
	CHECK_EQ_INT(sse_finish(&p, on_event, &s), 0);
	CHECK_EQ_INT(s.n, 2);
	sse_done(&p);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *d = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (d = malloc((size_t)n + 1)) && fread(d, 1, (size_t)n, f) == (size_t)n) {
		*len = (size_t)n;
	} else {
		free(d);
		d = NULL;
	}
	fclose(f);
	return d;
}

/* LF to CRLF. */
static char *crlf(const char *s, size_t len, size_t *out_len)
{
	char *o = malloc(2 * len + 1);
	size_t k = 0;

	if (!o)
		abort();
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			o[k++] = '\r';
		o[k++] = s[i];
	}
	*out_len = k;
	return o;
}

static void test_corpus(void)
{
	const char *dir = FIXTURES "/recorded";
	DIR *d = opendir(dir);
	struct dirent *e;
	int files = 0;

	CHECK(d != NULL);
	while (d && (e = readdir(d))) {
		size_t nl = strlen(e->d_name), len, clen;
		char path[1024];
		if (nl < 5 || strcmp(e->d_name + nl - 4, ".sse"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		char *s = read_all(path, &len);
		CHECK(s != NULL);
		if (!s)
			continue;
		s[len] = '\0';
		char *c = crlf(s, len, &clen);
		struct seen whole, bytes, cr;
		CHECK_EQ_INT(feed(s, len, 0, &whole), 0);
		CHECK_EQ_INT(feed(s, len, 1, &bytes), 0);
		CHECK_EQ_INT(feed(c, clen, 0, &cr), 0);
		CHECK(whole.n > 0 && whole.n == bytes.n && whole.n == cr.n);
		CHECK(whole.sum == bytes.sum && whole.sum == cr.sum);
		if (strstr(s, "\"message_stop\""))
			CHECK(strstr(whole.last_data, "message_stop") != NULL);
		if (whole.sum != bytes.sum || whole.sum != cr.sum)
			fprintf(stderr, "  in %s\n", e->d_name);
		free(c);
		free(s);
		files++;
	}
	if (d)
		closedir(d);
	CHECK(files >= 40);
}

int main(void)
{
	test_cases();
	test_corpus();
	return check_report();
}
