/* sse.h — incremental Server-Sent Events parser, and an event writer.
 *
 * The parser accepts the body of a text/event-stream in arbitrary fragments: a
 * fragment may end mid-line, mid-field or mid-UTF-8 sequence.  It splits lines on
 * bytes only (LF, CRLF or lone CR, also when a CRLF pair is split across two
 * fragments), strips one space after the colon, joins several data lines with
 * "\n", ignores comment lines (":") and unknown fields, and dispatches an event at
 * each empty line (an event with no data line is not dispatched, per the WHATWG
 * rules).  An event not yet ended by an empty line is held until sse_finish():
 * the caller calls it when the stream ended cleanly, so that a last event
 * written without its blank line (as the SDKs' recorded fixtures are) is still
 * dispatched; a stream cut off is not finished and loses its incomplete event:
 * that is the caller's "stream ended early" case.
 *
 * Every buffer is capped: an event larger than max_event bytes fails with -EFBIG.
 * A parser belongs to one thread at a time.
 */
#ifndef MCPFS_SSE_H
#define MCPFS_SSE_H

#include <stddef.h>
#include "mcpfs/buf.h"

struct sse_event {
	const char *name; /* "message" when the event had no event: field */
	size_t name_len;
	const char *data; /* joined data lines, NUL-terminated */
	size_t data_len;
};

/* Called once per dispatched event; the strings live until the callback returns.
 * A negative return stops sse_feed, which returns that value. */
typedef int sse_event_fn(void *data, const struct sse_event *ev);

struct sse {
	struct buf line;  /* current incomplete line */
	struct buf name;  /* event name of the event being built */
	struct buf data;  /* data of the event being built */
	int have_data;	  /* a data: line was seen in this event */
	int last_cr;	  /* previous fragment ended in CR: skip a leading LF */
	size_t max_event; /* bytes */
};

/* Prepares a parser whose events (and lines) may be at most max_event bytes. */
void sse_init(struct sse *p, size_t max_event);
void sse_done(struct sse *p);

/* Forgets any partial line or event (a new stream starts). */
void sse_reset(struct sse *p);

/* Feeds n bytes; dispatches every event they complete, in order.
 * 0, -EFBIG (an event over the cap; the parser is then reset), -ENOMEM, or the
 * callback's negative value. */
int sse_feed(struct sse *p, const char *bytes, size_t n, sse_event_fn *fn, void *data);

/* The stream ended cleanly: a held unterminated last line is taken as a line,
 * and an event with data that no empty line ended is dispatched.  An event with
 * no data line is dropped (WHATWG).  Then the parser is reset.  0, or the
 * callback's negative value. */
int sse_finish(struct sse *p, sse_event_fn *fn, void *data);

/* Appends one event to out in the wire form the parser reads: "event: NAME\n",
 * one "data: " line per line of data (split on "\n"), then "\n".  name may be
 * NULL (no event: line).  On failure out is left unchanged.  0, -EINVAL (a CR or
 * LF in name, or a CR in data: the wire form cannot carry them), -EFBIG, -ENOMEM. */
int sse_write_event(struct buf *out, const char *name, const char *data, size_t len);

/* Appends a comment line ": text\n\n" (a heartbeat).  0, -EINVAL (a CR or LF in
 * text), -EFBIG, -ENOMEM; on failure out is left unchanged. */
int sse_write_comment(struct buf *out, const char *text);

#endif
