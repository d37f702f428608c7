/* test_util.c — buf and utf8. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mcpfs/buf.h"
#include "mcpfs/log.h"
#include "mcpfs/utf8.h"

static void test_buf(void)
{
	struct buf b;
	buf_init(&b, 8);
	CHECK_EQ_INT(buf_append(&b, "abcd", 4), 0);
	CHECK_EQ_INT(buf_puts(&b, "efgh"), 0);
	CHECK_EQ_STR(b.data, "abcdefgh");
	CHECK_EQ_INT(buf_append(&b, "x", 1), -EFBIG);
	CHECK_EQ_INT(b.len, 8); /* unchanged by the failure */
	CHECK_EQ_INT(buf_printf(&b, "%d", 1), -EFBIG);
	buf_reset(&b);
	CHECK_EQ_INT(buf_write_at(&b, 2, "xy", 2), 0); /* gap is zero-filled */
	CHECK_EQ_INT(b.len, 4);
	CHECK(b.data[0] == 0 && b.data[1] == 0 && b.data[2] == 'x');
	CHECK_EQ_INT(buf_write_at(&b, 7, "xy", 2), -EFBIG);
	CHECK_EQ_INT(buf_resize(&b, 1), 0);
	CHECK_EQ_INT(b.len, 1);
	CHECK_EQ_INT(buf_resize(&b, 9), -EFBIG);
	size_t n;
	char *s = buf_steal(&b, &n);
	CHECK(s && n == 1 && b.data == NULL && b.len == 0);
	free(s);
	s = buf_steal(&b, &n); /* an empty buffer still gives a string */
	CHECK(s && n == 0 && s[0] == '\0');
	free(s);
	buf_done(&b);
	buf_done(NULL);
}

static const struct {
	const char *s;
	size_t n;
	int valid;
	size_t complete;
} utf8_cases[] = {
    {"", 0, 1, 0},
    {"abc", 3, 1, 3},
    {"Gr\xc3\xbc\xc3\x9f"
     "e",
     7, 1, 7},
    {"\xf0\x9f\x8c\xb8", 4, 1, 4},
    {"a\xf0\x9f", 3, 0, 1}, /* cut inside a 4-byte sequence */
    {"a\xf0\x9f\x8c", 4, 0, 1},
    {"a\xc3", 2, 0, 1},
    {"\xc0\xaf", 2, 0, 2},	   /* overlong */
    {"\xed\xa0\x80", 3, 0, 3},	   /* surrogate */
    {"\xf4\x90\x80\x80", 4, 0, 4}, /* above U+10FFFF */
    {"\xff", 1, 0, 1},
    {"\x80", 1, 0, 1},
    {"\xe2\x80\x94", 3, 1, 3},
    {"x\xe2\x80", 3, 0, 1},
};

/* Past 1 MiB a growing buffer populates the pages ahead of its content: what
 * was appended is still all there, in order, and the cap still holds. */
static void test_buf_large(void)
{
	struct buf b;
	char piece[4096];
	size_t total = 9u << 20;
	buf_init(&b, total);
	for (size_t off = 0; off < total; off += sizeof(piece)) {
		memset(piece, 'a' + (int)(off / sizeof(piece) % 26), sizeof(piece));
		if (buf_append(&b, piece, sizeof(piece)) < 0)
			break;
	}
	CHECK_EQ_INT(b.len, total);
	size_t bad = 0;
	for (size_t off = 0; off < b.len; off++)
		bad += b.data[off] != 'a' + (int)(off / sizeof(piece) % 26);
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(b.data[b.len], 0);
	CHECK_EQ_INT(buf_append(&b, "x", 1), -EFBIG);
	buf_done(&b);
}

static void test_utf8(void)
{
	for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
		CHECK_EQ_INT(utf8_valid(utf8_cases[i].s, utf8_cases[i].n), utf8_cases[i].valid);
		CHECK_EQ_INT(utf8_complete_prefix(utf8_cases[i].s, utf8_cases[i].n),
			     utf8_cases[i].complete);
	}
	/* The same cases among ASCII bytes at every alignment: utf8_valid reads
	 * ASCII eight bytes at a time, and must still see each case whole. */
	for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
		for (size_t pre = 0; pre <= 17; pre++) {
			for (size_t post = 0; post <= 9; post++) {
				char text[64];
				size_t n = utf8_cases[i].n;
				memset(text, 'a', sizeof(text));
				memcpy(text + pre, utf8_cases[i].s, n);
				CHECK_EQ_INT(utf8_valid(text, pre + n + post), utf8_cases[i].valid);
			}
		}
	}
	/* The prefix: whole for valid text; a cut-short sequence at the end is
	 * cut, any other stop is invalid whatever follows. */
	for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
		bool cut;
		size_t k = utf8_valid_prefix(utf8_cases[i].s, utf8_cases[i].n, &cut);
		CHECK_EQ_INT(k == utf8_cases[i].n, utf8_cases[i].valid);
		/* The table's incomplete cases are exactly those held back. */
		CHECK_EQ_INT(cut, utf8_cases[i].complete < utf8_cases[i].n);
		if (cut)
			CHECK_EQ_INT(k, utf8_cases[i].complete);
	}
	bool cut;
	CHECK_EQ_INT(utf8_valid_prefix("ab\xe6\x97", 4, &cut), 2);
	CHECK(cut);
	CHECK_EQ_INT(utf8_valid_prefix("ab\xe6\x28", 4, &cut), 2);
	CHECK(!cut);
	CHECK_EQ_INT(utf8_valid_prefix("abcdefghij\xc3", 11, &cut), 10);
	CHECK(cut);
	CHECK(utf8_blank(" \t\r\n", 4));
	CHECK(utf8_blank("", 0));
	CHECK(!utf8_blank(" a ", 3));
}

static const struct {
	const char *in;
	size_t outlen;
	const char *out;
} quote_cases[] = {
    {"hello", 64, "hello"},
    {"two\nlines\tand 'q' \\", 64, "two\\nlines\\tand \\'q\\' \\\\"},
    {"bell\x07 del\x7f", 64, "bell\\x07 del\\x7f"},
    {"abcdefghij", 8, "abcd..."},
    {"ab\xc3\xa9\xc3\xa9", 8, "ab\xc3\xa9..."}, /* never half a character */
    {"a\nb\nc", 8, "a\\nb..."},
    {"", 8, ""},
};

static void test_log_quote(void)
{
	char out[64];
	for (size_t i = 0; i < sizeof(quote_cases) / sizeof(quote_cases[0]); i++) {
		memset(out, 'Z', sizeof(out));
		log_quote(out, quote_cases[i].outlen, quote_cases[i].in, strlen(quote_cases[i].in));
		CHECK_EQ_STR(out, quote_cases[i].out);
		CHECK(strlen(out) < quote_cases[i].outlen);
	}
}

int main(void)
{
	test_buf();
	test_buf_large();
	test_utf8();
	test_log_quote();
	return check_report();
}
