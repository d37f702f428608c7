/* wire_delta.c — the fast path of wire_event_decode() for text deltas (see
 * wire.h, wire_text_delta_fast).
 *
 * A streamed reply is almost entirely content_block_delta events carrying a
 * text_delta, and the API writes them in one compact form:
 *
 *   {"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":"…"}}
 *
 * Building a cJSON tree for each costs more CPU than the rest of the path from
 * the socket to a reader, so that exact form is read here directly: the fixed
 * bytes are compared, the index's digits read and the string unescaped in one
 * pass, and the result validated as UTF-8 once.  Everything else — another key
 * order, white space, a leading zero, an escape this code does not take on
 * (a lone surrogate, anything invalid), a raw control character, bytes
 * after the object, text that is not UTF-8 — is left to cJSON, so that the two
 * paths can only ever give the same answer (the unit tests and the wire fuzz
 * target compare them on every input they have).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/utf8.h"
#include "mcpfs/wire.h"

#define HEAD "{\"type\":\"content_block_delta\",\"index\":"
#define MIDDLE ",\"delta\":{\"type\":\"text_delta\",\"text\":\""
#define TAIL "}}"	   /* of delta and of the event; the quote was read */
#define INDEX_DIGITS_MAX 9 /* below INT_MAX, so no overflow check is needed */

static bool has_prefix(const char **p, const char *end, const char *lit, size_t n)
{
	if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
		return false;
	*p += n;
	return true;
}

/* A decimal index as JSON writes it: "0", or digits without a leading zero. */
static bool read_index(const char **p, const char *end, int *out)
{
	const char *s = *p;
	int v = 0, n = 0;

	while (s + n < end && s[n] >= '0' && s[n] <= '9' && n <= INDEX_DIGITS_MAX)
		n++;
	if (n == 0 || n > INDEX_DIGITS_MAX || (n > 1 && s[0] == '0'))
		return false;
	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	*p = s + n;
	*out = v;
	return true;
}

static int hex4(const char *s)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		int c = (unsigned char)s[i], d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + d;
	}
	return v;
}

static size_t put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* A \u escape at s (pointing after the backslash and 'u'): a BMP character
 * (U+0000 too: text keeps its length, not a terminator), or a high surrogate
 * followed by \u and a low one.  Returns the escape's length after "\u", or 0
 * to leave the string to cJSON. */
static size_t read_u_escape(const char *s, const char *end, uint32_t *cp)
{
	int hi = end - s >= 4 ? hex4(s) : -1;

	if (hi < 0 || (hi >= 0xDC00 && hi <= 0xDFFF))
		return 0;
	if (hi < 0xD800 || hi > 0xDBFF) {
		*cp = (uint32_t)hi;
		return 4;
	}
	if (end - s < 10 || s[4] != '\\' || s[5] != 'u')
		return 0;
	int lo = hex4(s + 6);
	if (lo < 0xDC00 || lo > 0xDFFF)
		return 0;
	*cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
	return 10;
}

static char simple_escape(char c)
{
	switch (c) {
	case '"':
		return '"';
	case '\\':
		return '\\';
	case '/':
		return '/';
	case 'b':
		return '\b';
	case 'f':
		return '\f';
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 't':
		return '\t';
	default:
		return 0;
	}
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Skips the bytes that need no attention (not '"', not '\\', not a control
 * character), eight at a time while none of the eight can be one: a word has a
 * byte below x when (w - x * ONES) & ~w & HIGHS is non-zero, and a byte equal
 * to c when the same holds for w ^ c * ONES against 1.  A false alarm only
 * hands the word to the byte loop of the caller. */
static const char *plain_run(const char *s, const char *end)
{
	while (end - s >= 8) {
		uint64_t w, q, b;
		memcpy(&w, s, 8);
		q = w ^ ('"' * ONES);
		b = w ^ ('\\' * ONES);
		if ((((q - ONES) & ~q) | ((b - ONES) & ~b) | ((w - 0x20 * ONES) & ~w)) & HIGHS)
			break;
		s += 8;
	}
	while (s < end && *s != '"' && *s != '\\' && (unsigned char)*s >= 0x20)
		s++;
	return s;
}

/* Unescapes the JSON string body at *p (after its opening quote) into out,
 * which has room for end - *p bytes (unescaping never grows a string).  Stops
 * at the closing quote, leaving *p after it.  False for anything left to cJSON. */
static bool unescape(const char **p, const char *end, char *out, size_t *out_len)
{
	const char *s = *p;
	char *o = out;

	while (s < end) {
		const char *run = s;

		s = plain_run(s, end);
		memcpy(o, run, (size_t)(s - run));
		o += s - run;
		if (s == end || (unsigned char)*s < 0x20)
			return false;
		if (*s == '"') {
			*p = s + 1;
			*out_len = (size_t)(o - out);
			return true;
		}
		if (end - s < 2)
			return false;
		char c = simple_escape(s[1]);
		uint32_t cp;
		size_t n;
		if (c) {
			*o++ = c;
			s += 2;
		} else if (s[1] == 'u' && (n = read_u_escape(s + 2, end, &cp)) > 0) {
			o += put_utf8(o, cp);
			s += 2 + n;
		} else {
			return false;
		}
	}
	return false;
}

int wire_text_delta_fast(const char *data, size_t len, struct wire_event *ev)
{
	const char *p = data, *end = data + len;
	int index;

	if (!data || !has_prefix(&p, end, HEAD, sizeof(HEAD) - 1) || !read_index(&p, end, &index) ||
	    !has_prefix(&p, end, MIDDLE, sizeof(MIDDLE) - 1))
		return 0;
	char *text = malloc((size_t)(end - p) + 1);
	size_t n;
	if (!text)
		return -ENOMEM;
	if (!unescape(&p, end, text, &n) || !has_prefix(&p, end, TAIL, sizeof(TAIL) - 1) ||
	    p != end || !utf8_valid(text, n)) {
		free(text);
		return 0;
	}
	text[n] = '\0';
	memset(ev, 0, sizeof(*ev));
	api_error_clear(&ev->error);
	ev->type = WIRE_BLOCK_DELTA;
	ev->index = index;
	ev->block = WIRE_BLOCK_TEXT;
	ev->text = text;
	ev->text_len = n;
	return 1;
}
