/* fuzz_sse.c — the SSE parser and writer (src/core/sse.c).
 *
 * Input: one config byte, up to 7 cut bytes, then the stream body.  The config
 * byte picks the number of cuts, the event cap and a callback that fails at the
 * k-th event; each cut byte places a fragment boundary in the body.
 *
 * Checked for every input:
 *  - the body fed whole, in the fragments the cuts give, and (up to 1 KiB) one
 *    byte at a time dispatches the same events and returns the same result;
 *  - every event keeps the sse_event contract (NUL after data, no CR in data, no
 *    line end in the name, name and data together within the cap);
 *  - with a cap the body cannot reach, the events are those of an independent,
 *    naive reading of the WHATWG rules (reference() below), and so are they
 *    when the stream is then finished (sse_finish: the unterminated last line
 *    is a line, and the last event is dispatched without its blank line), fed
 *    whole or in the fragments the cuts give;
 *  - writing the events with sse_write_event and parsing that gives them back;
 *  - the whole input taken as "name NUL data" for sse_write_event and
 *    sse_write_comment: refused exactly when the wire form cannot carry it,
 *    round-trips otherwise, and leaves the buffer unchanged on any failure.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "mcpfs/sse.h"
#include "fuzz.h"

#define BIG_CAP (1u << 24) /* larger than any input libFuzzer makes */
#define MAX_CUTS 7
/* Longer bodies are not also fed one byte at a time: it would halve the rate,
 * and over many inputs the random cuts reach every split point anyway. */
#define BYTEWISE_MAX 1024

struct ev {
	char *name;
	size_t name_len;
	char *data;
	size_t data_len;
};

/* Event strings are copied into blocks that never move, freed with the list:
 * one allocation per many events keeps the target fast under ASan. */
struct block {
	struct block *next;
	size_t used, cap;
	char mem[];
};

struct evlist {
	struct ev *v;
	size_t n, cap;
	struct block *blocks;
	int rc;
	size_t max_event; /* the parser's cap, for the contract check */
	size_t stop_at;	  /* the callback fails at this event (1-based), 0 never */
};

static char *dup_bytes(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	FUZZ_ALLOC(d);
	if (n)
		memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static char *evlist_dup(struct evlist *l, const char *s, size_t n)
{
	struct block *b = l->blocks;

	if (!b || b->cap - b->used < n + 1) {
		size_t cap = n + 1 > 16384 ? n + 1 : 16384;

		b = malloc(sizeof(*b) + cap);
		FUZZ_ALLOC(b);
		*b = (struct block){.next = l->blocks, .cap = cap};
		l->blocks = b;
	}
	char *d = b->mem + b->used;
	if (n)
		memcpy(d, s, n);
	d[n] = '\0';
	b->used += n + 1;
	return d;
}

static void evlist_add(struct evlist *l, const char *name, size_t name_len, const char *data,
		       size_t data_len)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		FUZZ_ALLOC(l->v);
	}
	l->v[l->n++] = (struct ev){evlist_dup(l, name, name_len), name_len,
				   evlist_dup(l, data, data_len), data_len};
}

static void evlist_free(struct evlist *l)
{
	while (l->blocks) {
		struct block *next = l->blocks->next;

		free(l->blocks);
		l->blocks = next;
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static bool evlist_equal(const struct evlist *a, const struct evlist *b)
{
	if (a->rc != b->rc || a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct ev *x = &a->v[i], *y = &b->v[i];

		if (x->name_len != y->name_len || memcmp(x->name, y->name, x->name_len) ||
		    x->data_len != y->data_len || memcmp(x->data, y->data, x->data_len))
			return false;
	}
	return true;
}

static bool is_default_name(const char *name, size_t len)
{
	return len == 7 && memcmp(name, "message", 7) == 0;
}

static int on_event(void *data, const struct sse_event *ev)
{
	struct evlist *l = data;
	size_t named = is_default_name(ev->name, ev->name_len) ? 0 : ev->name_len;

	FUZZ_CHECK(ev->name && ev->data);
	FUZZ_CHECK(ev->name_len > 0);
	FUZZ_CHECK(ev->data[ev->data_len] == '\0');
	FUZZ_CHECK(!memchr(ev->data, '\r', ev->data_len));
	FUZZ_CHECK(!memchr(ev->name, '\r', ev->name_len) && !memchr(ev->name, '\n', ev->name_len));
	FUZZ_CHECK(ev->data_len <= l->max_event && named <= l->max_event - ev->data_len);
	evlist_add(l, ev->name, ev->name_len, ev->data, ev->data_len);
	return l->n == l->stop_at ? -ECANCELED : 0;
}

/* Feeds body[0..len) in fragments ending at cuts[] (ascending, <= len), then the
 * rest, stopping at the first error as a caller would. */
static void feed(const char *body, size_t len, const size_t *cuts, size_t n_cuts, size_t max,
		 size_t stop_at, struct evlist *out)
{
	struct sse p;
	size_t from = 0;

	memset(out, 0, sizeof(*out));
	out->max_event = max;
	out->stop_at = stop_at;
	sse_init(&p, max);
	for (size_t i = 0; i <= n_cuts && out->rc == 0; i++) {
		size_t to = i < n_cuts ? cuts[i] : len;

		out->rc = sse_feed(&p, body + from, to - from, on_event, out);
		from = to;
	}
	FUZZ_CHECK(out->rc == 0 || out->rc == -EFBIG || out->rc == -ECANCELED);
	sse_done(&p);
}

/* feed(), then sse_finish() as a caller does when the stream ended cleanly. */
static void feed_finished(const char *body, size_t len, const size_t *cuts, size_t n_cuts,
			  size_t stop_at, struct evlist *out)
{
	struct sse p;
	size_t from = 0;

	memset(out, 0, sizeof(*out));
	out->max_event = BIG_CAP;
	out->stop_at = stop_at;
	sse_init(&p, BIG_CAP);
	for (size_t i = 0; i <= n_cuts && out->rc == 0; i++) {
		size_t to = i < n_cuts ? cuts[i] : len;

		out->rc = sse_feed(&p, body + from, to - from, on_event, out);
		from = to;
	}
	if (out->rc == 0)
		out->rc = sse_finish(&p, on_event, out);
	sse_done(&p);
}

static void feed_bytewise(const char *body, size_t len, size_t max, size_t stop_at,
			  struct evlist *out)
{
	struct sse p;

	memset(out, 0, sizeof(*out));
	out->max_event = max;
	out->stop_at = stop_at;
	sse_init(&p, max);
	for (size_t i = 0; i < len && out->rc == 0; i++)
		out->rc = sse_feed(&p, body + i, 1, on_event, out);
	sse_done(&p);
}

/* --- the reference: the WHATWG rules read naively, over the whole body ------- */

struct ref_state {
	struct evlist *out;
	char *name, *data;
	size_t name_len, data_len;
	bool have_data;
};

static void ref_field(struct ref_state *st, const char *s, size_t n)
{
	const char *colon = memchr(s, ':', n);
	size_t flen = colon ? (size_t)(colon - s) : n;
	size_t vstart = colon ? flen + 1 : n;

	if (vstart < n && s[vstart] == ' ')
		vstart++;
	if (flen == 5 && !memcmp(s, "event", 5)) {
		memcpy(st->name, s + vstart, n - vstart);
		st->name_len = n - vstart;
	} else if (flen == 4 && !memcmp(s, "data", 4)) {
		if (st->have_data)
			st->data[st->data_len++] = '\n';
		memcpy(st->data + st->data_len, s + vstart, n - vstart);
		st->data_len += n - vstart;
		st->have_data = true;
	}
}

static void ref_line(struct ref_state *st, const char *s, size_t n)
{
	if (n == 0) {
		if (st->have_data) {
			if (st->name_len)
				evlist_add(st->out, st->name, st->name_len, st->data, st->data_len);
			else
				evlist_add(st->out, "message", 7, st->data, st->data_len);
		}
		st->name_len = st->data_len = 0;
		st->have_data = false;
	} else if (s[0] != ':') {
		ref_field(st, s, n);
	}
}

static void reference(const char *body, size_t len, bool finish, struct evlist *out)
{
	/* Data grows by at most one byte per input byte (a line's "\n" stands
	 * for its own terminator). */
	struct ref_state st = {.out = out, .name = malloc(len + 1), .data = malloc(len + 1)};
	size_t i = 0;

	FUZZ_ALLOC(st.name);
	FUZZ_ALLOC(st.data);
	memset(out, 0, sizeof(*out));
	while (i < len) {
		size_t e = i;

		while (e < len && body[e] != '\r' && body[e] != '\n')
			e++;
		if (e == len) { /* an unterminated line is read only at the finish */
			if (finish)
				ref_line(&st, body + i, e - i);
			break;
		}
		ref_line(&st, body + i, e - i);
		i = e + 1;
		if (body[e] == '\r' && i < len && body[i] == '\n')
			i++;
	}
	if (finish)
		ref_line(&st, "", 0);
	free(st.name);
	free(st.data);
}

/* --- the writer ---------------------------------------------------------------- */

/* Writes every event of l into out (NULL name for the default name, so both
 * forms are written); events whose name holds a NUL cannot be written and are
 * left out of kept.  Returns the events written. */
static void write_all(const struct evlist *l, struct buf *out, struct evlist *kept)
{
	memset(kept, 0, sizeof(*kept));
	for (size_t i = 0; i < l->n; i++) {
		const struct ev *e = &l->v[i];

		if (memchr(e->name, '\0', e->name_len))
			continue;
		const char *name = is_default_name(e->name, e->name_len) && i % 2 ? NULL : e->name;
		FUZZ_CHECK(sse_write_event(out, name, e->data, e->data_len) == 0);
		evlist_add(kept, e->name, e->name_len, e->data, e->data_len);
	}
}

static void check_roundtrip(const struct evlist *got, const size_t *cuts, size_t n_cuts,
			    size_t body_len)
{
	struct buf out;
	struct evlist kept, back;
	size_t scaled[MAX_CUTS];

	buf_init(&out, (size_t)BIG_CAP * 4);
	write_all(got, &out, &kept);
	for (size_t i = 0; i < n_cuts; i++)
		scaled[i] = body_len ? cuts[i] * out.len / body_len : 0;
	feed(out.data ? out.data : "", out.len, scaled, n_cuts, (size_t)BIG_CAP * 4, 0, &back);
	FUZZ_CHECK(evlist_equal(&kept, &back));
	evlist_free(&kept);
	evlist_free(&back);
	buf_done(&out);
}

/* sse_write_event and sse_write_comment on the raw input: "name NUL data", or
 * all data with no name when there is no NUL. */
static void check_writer(const uint8_t *raw, size_t size)
{
	const char *in = (const char *)raw;
	const char *nul = memchr(in, '\0', size);
	char *name = nul ? dup_bytes(in, (size_t)(nul - in)) : NULL;
	const char *data = nul ? nul + 1 : in;
	size_t len = nul ? size - (size_t)(nul - in) - 1 : size;
	bool name_ok = !name || !strpbrk(name, "\r\n");
	bool data_ok = !memchr(data, '\r', len);
	size_t small_cap = size ? raw[size - 1] : 0;
	struct buf out, small;
	struct evlist got;
	int r;

	buf_init(&out, (size_t)BIG_CAP * 4);
	FUZZ_CHECK(buf_puts(&out, "data: x\n\n") == 0);
	r = sse_write_comment(&out, name ? name : "");
	FUZZ_CHECK(r == (name_ok ? 0 : -EINVAL));
	r = sse_write_event(&out, name, data, len);
	FUZZ_CHECK(r == (name_ok && data_ok ? 0 : -EINVAL));
	feed(out.data, out.len, NULL, 0, (size_t)BIG_CAP * 4, 0, &got);
	FUZZ_CHECK(got.rc == 0);
	FUZZ_CHECK(got.n == (r == 0 ? 2u : 1u));
	FUZZ_CHECK(got.v[0].data_len == 1 && got.v[0].data[0] == 'x');
	if (r == 0) {
		const char *want = name && name[0] ? name : "message";

		FUZZ_CHECK(got.v[1].name_len == strlen(want));
		FUZZ_CHECK(memcmp(got.v[1].name, want, strlen(want)) == 0);
		FUZZ_CHECK(got.v[1].data_len == len && memcmp(got.v[1].data, data, len) == 0);
	}
	evlist_free(&got);

	/* A failure past a small cap leaves the buffer as it was. */
	buf_init(&small, small_cap);
	r = sse_write_event(&small, name, data, len);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -EFBIG);
	if (r < 0)
		FUZZ_CHECK(small.len == 0);
	r = small.len ? 0 : sse_write_comment(&small, name ? name : "");
	if (r < 0)
		FUZZ_CHECK(small.len == 0);
	buf_done(&small);
	buf_done(&out);
	free(name);
}

/* The stream finished: fed whole or in fragments, the events of the reference
 * read with its unterminated last line and a final dispatch. */
static void check_finish(const char *body, size_t len, const size_t *cuts, size_t n_cuts,
			 size_t stop_at)
{
	struct evlist a, b, ref;

	feed_finished(body, len, NULL, 0, stop_at, &a);
	feed_finished(body, len, cuts, n_cuts, stop_at, &b);
	FUZZ_CHECK(evlist_equal(&a, &b));
	reference(body, len, true, &ref);
	FUZZ_CHECK(a.rc == (stop_at && ref.n >= stop_at ? -ECANCELED : 0));
	if (a.rc == -ECANCELED)
		ref.n = stop_at;
	ref.rc = a.rc;
	FUZZ_CHECK(evlist_equal(&a, &ref));
	evlist_free(&a);
	evlist_free(&b);
	evlist_free(&ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t caps[] = {16, 64, 1024, BIG_CAP};
	struct fuzz_in in = {data, size};
	unsigned conf = fuzz_byte(&in);
	size_t n_cuts = conf & 7, max = caps[(conf >> 3) & 3], stop_at = conf >> 5;
	size_t cuts[MAX_CUTS];
	uint8_t cut_bytes[MAX_CUTS];
	struct evlist whole, other;

	for (size_t i = 0; i < n_cuts; i++)
		cut_bytes[i] = (uint8_t)fuzz_byte(&in);
	const char *body = (const char *)in.p;
	size_t len = in.n;
	/* Cut points in ascending order (insertion sort: at most 7). */
	for (size_t i = 0; i < n_cuts; i++) {
		size_t c = cut_bytes[i] * len / 255, j = i;

		while (j > 0 && cuts[j - 1] > c) {
			cuts[j] = cuts[j - 1];
			j--;
		}
		cuts[j] = c;
	}

	feed(body, len, NULL, 0, max, stop_at, &whole);
	feed(body, len, cuts, n_cuts, max, stop_at, &other);
	FUZZ_CHECK(evlist_equal(&whole, &other));
	evlist_free(&other);
	if (len <= BYTEWISE_MAX) {
		feed_bytewise(body, len, max, stop_at, &other);
		FUZZ_CHECK(evlist_equal(&whole, &other));
		evlist_free(&other);
	}

	if (max == BIG_CAP && len < BIG_CAP) {
		size_t all;

		reference(body, len, false, &other);
		all = other.n;
		FUZZ_CHECK(whole.rc == (stop_at && all >= stop_at ? -ECANCELED : 0));
		if (whole.rc == -ECANCELED)
			other.n = stop_at; /* the events up to the stop */
		other.rc = whole.rc;
		FUZZ_CHECK(evlist_equal(&whole, &other));
		evlist_free(&other);
		check_finish(body, len, cuts, n_cuts, stop_at);
	}
	check_roundtrip(&whole, cuts, n_cuts, len);
	evlist_free(&whole);
	check_writer(data, size);
	return 0;
}
