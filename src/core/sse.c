/* sse.c — incremental Server-Sent Events parser and writer (see sse.h).
 *
 * Lines are split on the bytes CR and LF before anything looks at their content:
 * a fragment boundary inside a multi-byte character, or a raw U+2028 inside a JSON
 * string, must never end a line (the SDK decoders split bytes for the same reason).
 *
 * The cap: the name, the data gathered so far and the line being read together
 * never exceed max_event bytes.  Counting them together (rather than capping each)
 * keeps the bound at max_event however a peer spreads an event over lines.
 * Comment lines are counted only while they are being read; they are not kept.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "mcpfs/sse.h"

void sse_init(struct sse *p, size_t max_event)
{
	buf_init(&p->line, max_event);
	buf_init(&p->name, max_event);
	buf_init(&p->data, max_event);
	p->have_data = 0;
	p->last_cr = 0;
	p->max_event = max_event;
}

void sse_done(struct sse *p)
{
	if (!p)
		return;
	buf_done(&p->line);
	buf_done(&p->name);
	buf_done(&p->data);
	p->have_data = 0;
	p->last_cr = 0;
}

static void sse_event_clear(struct sse *p)
{
	buf_reset(&p->name);
	buf_reset(&p->data);
	p->have_data = 0;
}

void sse_reset(struct sse *p)
{
	buf_reset(&p->line);
	sse_event_clear(p);
	p->last_cr = 0;
}

/* Whether a line of line_len bytes may be held beside the event built so far.
 * When not, the event is lost anyway, so the parser starts afresh. */
static bool sse_fits(struct sse *p, size_t line_len)
{
	size_t held = p->name.len + p->data.len;

	if (held <= p->max_event && line_len <= p->max_event - held)
		return true;
	sse_reset(p);
	return false;
}

static int sse_dispatch(struct sse *p, sse_event_fn *fn, void *data)
{
	/* WHATWG: an empty line after no data line dispatches nothing, and also
	 * forgets the event name, so "event: x\n\n" does not leak into the next event. */
	if (!p->have_data) {
		sse_event_clear(p);
		return 0;
	}
	struct sse_event ev = {
	    .name = p->name.len ? p->name.data : "message",
	    .name_len = p->name.len ? p->name.len : strlen("message"),
	    .data = p->data.data ? p->data.data : "",
	    .data_len = p->data.len,
	};
	int r = fn(data, &ev);
	sse_event_clear(p);
	return r < 0 ? r : 0;
}

static int sse_field(struct sse *p, const char *s, size_t n)
{
	const char *colon = memchr(s, ':', n);
	size_t field_len = colon ? (size_t)(colon - s) : n;
	const char *v = colon ? colon + 1 : s + n;
	size_t v_len = n - (size_t)(v - s);
	int r;

	if (v_len && *v == ' ') {
		v++;
		v_len--;
	}
	if (field_len == 5 && memcmp(s, "event", 5) == 0) {
		buf_reset(&p->name);
		return buf_append(&p->name, v, v_len);
	}
	if (field_len == 4 && memcmp(s, "data", 4) == 0) {
		r = p->have_data ? buf_append(&p->data, "\n", 1) : 0;
		if (r == 0)
			r = buf_append(&p->data, v, v_len);
		if (r == 0)
			p->have_data = 1;
		return r;
	}
	/* "id" and "retry" only steer reconnection, which a one-shot API reply never
	 * does; like any unknown field they are ignored. */
	return 0;
}

static int sse_line(struct sse *p, const char *s, size_t n, sse_event_fn *fn, void *data)
{
	if (n == 0)
		return sse_dispatch(p, fn, data);
	if (s[0] == ':')
		return 0;
	return sse_field(p, s, n);
}

/* Index of the first CR or LF in s[i..n), or n. */
static size_t sse_eol(const char *s, size_t i, size_t n)
{
	while (i < n && s[i] != '\n' && s[i] != '\r')
		i++;
	return i;
}

/* Handles the line made of the held partial line plus s[0..n).  The common case,
 * a whole line inside one fragment, is parsed in place without a copy. */
static int sse_end_line(struct sse *p, const char *s, size_t n, sse_event_fn *fn, void *data)
{
	int r;

	if (!sse_fits(p, p->line.len + n))
		return -EFBIG;
	if (p->line.len == 0)
		return sse_line(p, s, n, fn, data);
	r = buf_append(&p->line, s, n);
	if (r == 0)
		r = sse_line(p, p->line.data, p->line.len, fn, data);
	buf_reset(&p->line);
	return r;
}

/* Keeps the unterminated tail of a fragment for the next call. */
static int sse_hold(struct sse *p, const char *s, size_t n)
{
	if (!sse_fits(p, p->line.len + n))
		return -EFBIG;
	return buf_append(&p->line, s, n);
}

int sse_feed(struct sse *p, const char *bytes, size_t n, sse_event_fn *fn, void *data)
{
	size_t i = 0;
	int r = 0;

	if (n == 0)
		return 0;
	/* A CR that ended the previous fragment may be the first half of a CRLF. */
	if (p->last_cr && bytes[0] == '\n')
		i = 1;
	p->last_cr = 0;
	while (i < n) {
		size_t end = sse_eol(bytes, i, n);

		if (end == n) {
			r = sse_hold(p, bytes + i, n - i);
			break;
		}
		r = sse_end_line(p, bytes + i, end - i, fn, data);
		if (r < 0)
			break;
		i = end + 1;
		if (bytes[end] == '\r') {
			if (i == n)
				p->last_cr = 1;
			else if (bytes[i] == '\n')
				i++;
		}
	}
	return r;
}

int sse_finish(struct sse *p, sse_event_fn *fn, void *data)
{
	int r = 0;

	/* The unterminated last line is a line (a truncated one fails as what it
	 * is: bad JSON, or an event without its data), then the event is ended as
	 * an empty line would end it. */
	if (p->line.len) {
		r = sse_line(p, p->line.data, p->line.len, fn, data);
		buf_reset(&p->line);
	}
	if (r == 0)
		r = sse_dispatch(p, fn, data);
	sse_reset(p);
	return r;
}

/* Appends the pieces in order; on any failure out is put back as it was, so a
 * caller never sends half an event. */
static int sse_put(struct buf *out, size_t start, int r)
{
	if (r < 0)
		buf_resize(out, start);
	return r;
}

int sse_write_event(struct buf *out, const char *name, const char *data, size_t len)
{
	size_t start = out->len, i = 0;
	int r = 0;

	/* The wire form has no escape: a CR or LF in the name, or a CR in the data,
	 * would end a line early and change or forge events. */
	if (name && strpbrk(name, "\r\n"))
		return -EINVAL;
	if (len && (!data || memchr(data, '\r', len)))
		return -EINVAL;
	if (name) {
		r = buf_puts(out, "event: ");
		if (r == 0)
			r = buf_puts(out, name);
		if (r == 0)
			r = buf_append(out, "\n", 1);
	}
	while (r == 0) {
		const char *nl = len ? memchr(data + i, '\n', len - i) : NULL;
		size_t end = nl ? (size_t)(nl - data) : len;

		r = buf_puts(out, "data: ");
		if (r == 0 && end > i)
			r = buf_append(out, data + i, end - i);
		if (r == 0)
			r = buf_append(out, "\n", 1);
		if (!nl)
			break;
		i = end + 1;
	}
	if (r == 0)
		r = buf_append(out, "\n", 1);
	return sse_put(out, start, r);
}

int sse_write_comment(struct buf *out, const char *text)
{
	size_t start = out->len;
	int r;

	if (strpbrk(text, "\r\n"))
		return -EINVAL;
	r = buf_puts(out, ": ");
	if (r == 0)
		r = buf_puts(out, text);
	if (r == 0)
		r = buf_puts(out, "\n\n");
	return sse_put(out, start, r);
}
