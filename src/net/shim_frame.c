/* shim_frame.c — the bytes of a request as they came, where libmicrohttpd
 * 0.9.75 is more tolerant than the shim may be.
 *
 * Request smuggling needs two parsers that read the same bytes differently: a
 * proxy in front of the shim and libmicrohttpd.  libmicrohttpd accepts a bare
 * LF as a line end (in the header block and in chunk lines), joins obs-folded
 * lines into the previous header's *name*, keeps a header name with a space
 * before the colon ("Origin : x" is a header named "Origin "), cuts a header
 * value or the path at a NUL without a word, and takes the first of two
 * Transfer-Encoding headers.  It parses in place: the request line and the
 * header block stay in its read buffer, CR, LF, the colon and the space after
 * the method and the path replaced by NULs, and every header's name and value
 * are pointers into that block, in order.  So the check here walks the block
 * from the method to its end (MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE) and
 * expects each piece exactly where a well-formed request would put it: a NUL
 * that cut a value, a bare LF, a folded line (its name was moved elsewhere)
 * and any byte the pointers do not account for show up as a gap.  The check
 * only reads that block, which libmicrohttpd keeps until the request ends.
 * This is libmicrohttpd 0.9.75's way of parsing (Debian 12's); were a later
 * version to copy headers elsewhere, every request would be refused here, and
 * every HTTP test would say so at once.
 *
 * The path is seen earlier, by the URI log callback, before libmicrohttpd
 * splits off the query: its length then, compared with where the version
 * string starts, shows a NUL in it.  Chunked request bodies are refused
 * altogether (shim.c): their chunk lines are parsed below any callback, with
 * bare LFs accepted, and every client sends a body of known length anyway.
 *
 * Some bytes libmicrohttpd answers itself, before any callback, and not
 * cleanly (a malformed Content-Length: a 400 whose header block it writes
 * twice; a request line without a method: no answer at all).  So the request
 * line and header block are first checked as they wait in the socket
 * (shim_frame_peek_check, from shim_accept.c), against RFC 9112's grammar
 * without its tolerances: METHOD SP target SP HTTP/d.d, every line ending in
 * CRLF, each header a token, a colon and a value without control characters
 * but HTAB, no folded line, a Content-Length of digits only.  The checks after
 * libmicrohttpd's parse stay as they are: they see what it made of the bytes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shim_impl.h"

void *shim_frame_on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct shim_request *rq = calloc(1, sizeof(*rq));
	if (!rq)
		return NULL;
	buf_init(&rq->body, 0);
	rq->uri = uri;
	rq->uri_len = strlen(uri);
	for (size_t i = 0; i < rq->uri_len; i++)
		if ((unsigned char)uri[i] <= 0x20 || uri[i] == 0x7f)
			rq->uri_bad = true;
	return rq;
}

/* RFC 9110 §5.6.2: a header name is a token. */
static bool is_tchar(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

struct walk {
	const char *p, *end; /* the next expected byte; the header block's end */
	unsigned lengths, encodings;
	const char *bad;
};

/* At w->p: a line end as libmicrohttpd leaves a CRLF (two NULs), never a bare
 * LF (one). */
static bool crlf_at(struct walk *w, const char *next)
{
	return next == w->p + 2 && w->p + 2 <= w->end && !w->p[0] && !w->p[1];
}

static enum MHD_Result on_header(void *cls, enum MHD_ValueKind kind, const char *key,
				 size_t key_size, const char *value, size_t value_size)
{
	struct walk *w = cls;
	if (!crlf_at(w, key)) {
		w->bad = "a bare LF, a folded line or a NUL in the header block";
		return MHD_NO;
	}
	for (size_t i = 0; i < key_size; i++)
		if (!is_tchar((unsigned char)key[i])) {
			w->bad = "a header name with a space or another character not allowed "
				 "in a name";
			return MHD_NO;
		}
	/* Between the colon (now a NUL) and the value only spaces and tabs. */
	const char *q = key + key_size + 1;
	while (q < value && (*q == ' ' || *q == '\t'))
		q++;
	if (key_size == 0 || key[key_size] || q != value || value + value_size > w->end) {
		w->bad = "a malformed header line";
		return MHD_NO;
	}
	for (size_t i = 0; i < value_size; i++)
		if (((unsigned char)value[i] < 0x20 && value[i] != '\t') || value[i] == 0x7f) {
			w->bad = "a control character in a header value";
			return MHD_NO;
		}
	if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH))
		w->lengths++;
	if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING))
		w->encodings++;
	w->p = value + value_size;
	return MHD_YES;
}

/* Where the body ends must be beyond doubt (RFC 9112 §6.3): two Content-Length
 * headers, or Transfer-Encoding beside one, are how requests are smuggled past
 * a proxy; chunked bodies are not taken (see the top). */
static const char *framing_problem(const struct walk *w, struct MHD_Connection *c)
{
	const char *te =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
	if (w->lengths > 1)
		return "more than one Content-Length header";
	if (w->encodings > 1)
		return "more than one Transfer-Encoding header";
	if (te && w->lengths)
		return "Transfer-Encoding and Content-Length together";
	if (te && strcasecmp(te, "chunked") != 0)
		return "the only Transfer-Encoding accepted is chunked";
	if (te)
		return "chunked request bodies are not accepted: send the body with "
		       "Content-Length";
	return NULL;
}

const char *shim_frame_check(const struct shim_request *rq, struct MHD_Connection *c,
			     const char *method, const char *url, const char *version)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	size_t method_len = strlen(method), version_len = strlen(version);
	/* The request line: METHOD SP target SP version, each where the last ended. */
	if (!rq || rq->uri != url || !ci)
		return "the request line could not be checked";
	if (rq->uri_bad)
		return "a space or a control character in the request target";
	if (url != method + method_len + 1 || version != url + rq->uri_len + 1 ||
	    (uintptr_t)version - (uintptr_t)method > ci->header_size)
		return "a NUL or an extra space in the request line";
	struct walk w = {.p = version + version_len, .end = method + ci->header_size};
	MHD_get_connection_values_n(c, MHD_HEADER_KIND, on_header, &w);
	if (w.bad)
		return w.bad;
	/* The last line, then the empty line that ends the block. */
	if (!crlf_at(&w, w.p + 2) || (w.p += 2, !crlf_at(&w, w.end)))
		return "a bare LF, a folded line or a NUL in the header block";
	return framing_problem(&w, c);
}

/* Counts what cJSON would build before it builds it: a body of a million
 * zeros in an array is a few megabytes of text but a gigabyte of nodes. */
const char *shim_frame_json_shape(const char *s, size_t n)
{
	unsigned depth = 0, tokens = 0;
	bool in_string = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (in_string) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_string = false;
			else if (ch < 0x20)
				return "a raw control character inside a JSON string (escape it)";
			continue;
		}
		if (ch == '"')
			in_string = true;
		else if (ch == '{' || ch == '[') {
			if (++depth > SHIM_JSON_DEPTH_MAX)
				return "the JSON is nested too deeply";
		} else if ((ch == '}' || ch == ']') && depth)
			depth--;
		if (strchr("{[,:", ch) && ch && ++tokens > SHIM_JSON_TOKENS_MAX)
			return "the JSON has too many values";
	}
	return NULL;
}

/* --- the bytes before libmicrohttpd reads them -------------------------------------- */

static const char *peek_request_line(const char *p, const char *e)
{
	static const char version[] = " HTTP/";
	const size_t vlen = sizeof(version) - 1;
	const char *m = p;
	while (m < e && is_tchar((unsigned char)*m))
		m++;
	if (m == p || m == e || *m != ' ')
		return "a malformed request line (it is METHOD SP target SP HTTP/1.1)";
	const char *t = m + 1, *q = t;
	while (q < e && (unsigned char)*q > 0x20 && *q != 0x7f)
		q++;
	if (q == t)
		return "a NUL or an extra space in the request line";
	if (q < e && *q != ' ')
		return "a space or a control character in the request target";
	if ((size_t)(e - q) == vlen + 3 && !memcmp(q, version, vlen) && q[vlen] >= '0' &&
	    q[vlen] <= '9' && q[vlen + 1] == '.' && q[vlen + 2] >= '0' && q[vlen + 2] <= '9')
		return NULL;
	if (q < e && memchr(q + 1, ' ', (size_t)(e - q - 1)))
		return "a space or a control character in the request target";
	return "a malformed HTTP version in the request line (expected: HTTP/1.1)";
}

/* The value after a Content-Length's colon, up to its line's CRLF: what
 * libmicrohttpd would take as a length (spaces before it skipped, nothing
 * after the digits, not even a space). */
static const char *peek_length(const char *v, const char *e, unsigned *status)
{
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	const char *d = v;
	while (d < e && *d >= '0' && *d <= '9')
		d++;
	if (d == v || d != e)
		return "a Content-Length that is not a number of bytes (digits only, nothing "
		       "after them)";
	if (d - v > SHIM_LENGTH_DIGITS) {
		*status = MHD_HTTP_CONTENT_TOO_LARGE;
		return "a Content-Length over the shim's ceiling";
	}
	return NULL;
}

static const char *peek_header_line(const char *p, const char *e, unsigned *status)
{
	static const char length[] = "content-length";
	if (*p == ' ' || *p == '\t')
		return "a folded header line (obs-fold)";
	const char *n = p;
	while (n < e && is_tchar((unsigned char)*n))
		n++;
	if (n == p || n == e || *n != ':')
		return "a header name with a space or another character not allowed in a name, "
		       "or no colon";
	for (const char *q = n + 1; q < e; q++)
		if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
			return "a control character in a header value";
	if ((size_t)(n - p) != sizeof(length) - 1)
		return NULL;
	for (size_t i = 0; i < sizeof(length) - 1; i++)
		if ((p[i] | 0x20) != length[i]) /* ASCII only, as libmicrohttpd compares */
			return NULL;
	return peek_length(n + 1, e, status);
}

const char *shim_frame_peek_check(const char *s, size_t n, size_t *len, unsigned *status)
{
	const char *p = s, *end = s + n;
	bool request_line = true;
	unsigned lines = 0;
	*len = 0;
	for (;;) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		if (!lf)
			return NULL; /* the line is not all in yet */
		if (lf == p || lf[-1] != '\r')
			return "a bare LF in the request line or header block (lines end in CRLF)";
		const char *e = lf - 1, *why = NULL;
		if (e == p && !request_line) {
			*len = (size_t)(lf + 1 - s);
			return NULL;
		}
		/* Empty lines before the request line are skipped, as libmicrohttpd does. */
		if (e != p)
			why =
			    request_line ? peek_request_line(p, e) : peek_header_line(p, e, status);
		if (why)
			return why;
		if (!request_line && ++lines > SHIM_HEADER_LINES) {
			*status = MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE;
			return "more than 100 header lines";
		}
		request_line = request_line && e == p;
		p = lf + 1;
	}
}
