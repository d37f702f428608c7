/* utf8.c — strict UTF-8 validation (see utf8.h). */
#include <stdint.h>
#include <string.h>

#include "mcpfs/utf8.h"

/* Length of the valid sequence starting at s (at most n bytes available), or 0
 * when the bytes there are not a valid sequence; *incomplete is set when they
 * are a valid start cut short by the end of the input. */
static size_t utf8_seq(const unsigned char *s, size_t n, bool *incomplete)
{
	unsigned char c = s[0];
	size_t need;
	unsigned char lo = 0x80, hi = 0xBF;

	*incomplete = false;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		need = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		need = 3;
		if (c == 0xE0)
			lo = 0xA0; /* no overlong forms */
		if (c == 0xED)
			hi = 0x9F; /* no surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 4;
		if (c == 0xF0)
			lo = 0x90;
		if (c == 0xF4)
			hi = 0x8F; /* nothing above U+10FFFF */
	} else
		return 0;
	for (size_t i = 1; i < need; i++) {
		if (i >= n) {
			*incomplete = true;
			return 0;
		}
		unsigned char min = i == 1 ? lo : 0x80, max = i == 1 ? hi : 0xBF;
		if (s[i] < min || s[i] > max)
			return 0;
	}
	return need;
}

#define HIGH_BITS 0x8080808080808080ull

size_t utf8_valid_prefix(const char *str, size_t n, bool *cut)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	*cut = false;
	while (i < n) {
		uint64_t w;
		if (n - i >= 8 && (memcpy(&w, s + i, 8), !(w & HIGH_BITS))) {
			i += 8;
			continue;
		}
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		size_t k = utf8_seq(s + i, n - i, cut);
		if (!k)
			return i;
		i += k;
	}
	return n;
}

bool utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	bool inc;

	while (i < n) {
		/* Replies are mostly ASCII: eight bytes at a time while they are. */
		uint64_t w;
		if (n - i >= 8 && (memcpy(&w, s + i, 8), !(w & HIGH_BITS))) {
			i += 8;
			continue;
		}
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		size_t k = utf8_seq(s + i, n - i, &inc);
		if (!k)
			return false;
		i += k;
	}
	return true;
}

size_t utf8_complete_prefix(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	/* Only the last three bytes can start an unfinished sequence. */
	size_t start = n > 3 ? n - 3 : 0;
	for (size_t i = start; i < n; i++) {
		if ((s[i] & 0xC0) == 0x80)
			continue;
		bool inc;
		utf8_seq(s + i, n - i, &inc);
		if (inc)
			return i;
	}
	return n;
}

bool utf8_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (s[i]) {
		case ' ':
		case '\t':
		case '\n':
		case '\r':
		case '\v':
		case '\f':
			continue;
		default:
			return false;
		}
	}
	return true;
}
