/* record_part.c — REPLY_PART payloads without cJSON's printer (see record.h).
 *
 * cJSON escapes '"', '\\' and every byte below 0x20 (the usual two-character
 * forms where JSON has one, \u00xx in lower-case hex otherwise) and copies
 * everything else, UTF-8 included, as it is.  So does this file; a NUL byte,
 * where cJSON would stop the string, becomes \u0000.
 */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/record.h"

/* For each byte: 0 copied as is, else the letter after '\\' ('u' for \u00xx). */
static const char escape_of[256] = {
    ['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r', [0] = 'u',	 [1] = 'u',
    [2] = 'u',	  [3] = 'u',	[4] = 'u',    [5] = 'u',    [6] = 'u',	  [7] = 'u',	 [11] = 'u',
    [14] = 'u',	  [15] = 'u',	[16] = 'u',   [17] = 'u',   [18] = 'u',	  [19] = 'u',	 [20] = 'u',
    [21] = 'u',	  [22] = 'u',	[23] = 'u',   [24] = 'u',   [25] = 'u',	  [26] = 'u',	 [27] = 'u',
    [28] = 'u',	  [29] = 'u',	[30] = 'u',   [31] = 'u',   ['"'] = '"',  ['\\'] = '\\',
};

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Whether any of the 8 bytes at s is escaped: below 0x20, '"' or '\\'
 * (the usual bit tricks, exact as a yes or no). */
static bool any_escaped(const unsigned char *s)
{
	uint64_t v, q, b;
	memcpy(&v, s, 8);
	q = v ^ (ONES * '"');
	b = v ^ (ONES * '\\');
	return (((v - ONES * 0x20) & ~v) | ((q - ONES) & ~q) | ((b - ONES) & ~b)) & HIGHS;
}

/* The length of the run of bytes from s[i] on that are copied as they are. */
static size_t plain_run(const unsigned char *s, size_t i, size_t n)
{
	size_t j = i;
	while (j + 8 <= n && !any_escaped(s + j))
		j += 8;
	while (j < n && !escape_of[s[j]])
		j++;
	return j - i;
}

/* Writes "s" (quoted, escaped) at p; returns the end. */
static char *put_string(char *p, const unsigned char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	*p++ = '"';
	size_t i = 0;
	while (i < n) {
		size_t run = i + plain_run(s, i, n);
		memcpy(p, s + i, run - i);
		p += run - i;
		if (run == n)
			break;
		char e = escape_of[s[run]];
		*p++ = '\\';
		*p++ = e;
		if (e == 'u') {
			*p++ = '0';
			*p++ = '0';
			*p++ = hex[s[run] >> 4];
			*p++ = hex[s[run] & 15];
		}
		i = run + 1;
	}
	*p++ = '"';
	return p;
}

/* Writes v in decimal at p; returns the end (snprintf costs more than the
 * whole record of a small paced delta). */
static char *put_u64(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

int record_part_print(struct buf *out, uint64_t turn, unsigned attempt, const char *text, size_t tn,
		      const char *thinking, size_t hn)
{
	static const char think_key[] = ",\"thinking\":";
	const unsigned char *tx = (const unsigned char *)text,
			    *th = (const unsigned char *)thinking;
	char head[80], *h = head;
	memcpy(h, "{\"turn\":", 8);
	h = put_u64(h + 8, turn);
	memcpy(h, ",\"attempt\":", 11);
	h = put_u64(h + 11, attempt);
	memcpy(h, ",\"text\":", 8);
	size_t hl = (size_t)(h + 8 - head);
	/* Room for the worst case: one pass over the text, and pages of the buffer
	 * beyond what is written are never touched. */
	buf_reset(out);
	int r = buf_reserve(out, RECORD_PART_SIZE(tn, hn));
	if (r < 0)
		return r;
	char *p = out->data;
	memcpy(p, head, hl);
	p = put_string(p + hl, tx, tn);
	if (hn) {
		memcpy(p, think_key, sizeof(think_key) - 1);
		p = put_string(p + sizeof(think_key) - 1, th, hn);
	}
	*p++ = '}';
	*p = '\0';
	out->len = (size_t)(p - out->data);
	return 0;
}
