/* test_names.c — store_name_check: what a context may be called, and
 * store_name_check_why: which rule a refused name breaks. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "mcpfs/store.h"

struct name_case {
	const char *what;
	const char *name;
	size_t len; /* 0: strlen(name) unless empty is meant (then name is "") */
	int want;
};

static const struct name_case cases[] = {
    {"empty", "", 0, -EINVAL},
    {"one byte", "a", 0, 0},
    {"plain", "my-context_1", 0, 0},
    {"space inside", "two words", 0, 0},
    {"trailing dot", "a.", 0, 0},
    {"dot inside", "a.b", 0, 0},
    {"two-byte UTF-8", "caf\xC3\xA9", 0, 0},
    {"three-byte UTF-8", "\xE2\x82\xAC", 0, 0},
    {"four-byte UTF-8", "\xF0\x9F\x98\x80", 0, 0},
    {"highest code point", "\xF4\x8F\xBF\xBF", 0, 0},
    {"leading dot", ".hidden", 0, -EINVAL},
    {"dot", ".", 0, -EINVAL},
    {"dot dot", "..", 0, -EINVAL},
    {"slash", "a/b", 0, -EINVAL},
    {"slash alone", "/", 0, -EINVAL},
    {"trailing slash", "a/", 0, -EINVAL},
    {"tab", "a\tb", 0, -EINVAL},
    {"newline", "a\n", 0, -EINVAL},
    {"escape", "\x1b[31m", 0, -EINVAL},
    {"0x1f", "a\x1f", 0, -EINVAL},
    {"DEL", "a\x7f", 0, -EINVAL},
    {"NUL inside", "a\0b", 3, -EINVAL},
    {"NUL alone", "\0", 1, -EINVAL},
    {"overlong slash", "\xC0\xAF", 0, -EINVAL},
    {"overlong NUL", "\xC0\x80", 0, -EINVAL},
    {"overlong three-byte", "\xE0\x80\xAF", 0, -EINVAL},
    {"surrogate", "\xED\xA0\x80", 0, -EINVAL},
    {"above U+10FFFF", "\xF4\x90\x80\x80", 0, -EINVAL},
    {"truncated two-byte", "a\xC3", 0, -EINVAL},
    {"truncated four-byte", "\xF0\x9F\x98", 0, -EINVAL},
    {"lone continuation", "\x80", 0, -EINVAL},
    {"0xFF", "a\xFF", 0, -EINVAL},
};

static void test_table(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct name_case *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->name);
		int r = store_name_check(c->name, len);
		if (r != c->want)
			fprintf(stderr, "case '%s'\n", c->what);
		CHECK_EQ_INT(r, c->want);
	}
}

/* Names of n bytes made of one repeated unit (n a multiple of its length). */
static void fill(char *buf, size_t n, const char *unit)
{
	size_t u = strlen(unit);
	for (size_t i = 0; i + u <= n; i += u)
		memcpy(buf + i, unit, u);
}

static void test_lengths(void)
{
	char buf[512];

	memset(buf, 'x', sizeof buf);
	CHECK_EQ_INT(store_name_check(buf, 254), 0);
	CHECK_EQ_INT(store_name_check(buf, 255), 0);
	CHECK_EQ_INT(store_name_check(buf, 256), -ENAMETOOLONG);
	CHECK_EQ_INT(store_name_check(buf, 300), -ENAMETOOLONG);
	CHECK_EQ_INT(store_name_check(buf, sizeof buf), -ENAMETOOLONG);

	/* Length is checked first: an over-long name is ENAMETOOLONG even when it
	 * is also bad UTF-8, starts with a dot or holds a slash. */
	memset(buf, 0xFF, 300);
	CHECK_EQ_INT(store_name_check(buf, 300), -ENAMETOOLONG);
	memset(buf, '.', 300);
	CHECK_EQ_INT(store_name_check(buf, 300), -ENAMETOOLONG);
	memset(buf, '/', 256);
	CHECK_EQ_INT(store_name_check(buf, 256), -ENAMETOOLONG);

	/* Multi-byte names at exactly 255 bytes: 85 three-byte characters, and
	 * ASCII with a wide character ending on the boundary. */
	fill(buf, 255, "\xE2\x82\xAC");
	CHECK_EQ_INT(store_name_check(buf, 255), 0);
	/* 253 bytes of 'a' then a 2-byte character: 255. */
	memset(buf, 'a', 253);
	memcpy(buf + 253, "\xC3\xA9", 2);
	CHECK_EQ_INT(store_name_check(buf, 255), 0);
	/* 252 'a' then a 4-byte character: 256, too long. */
	memset(buf, 'a', 252);
	memcpy(buf + 252, "\xF0\x9F\x98\x80", 4);
	CHECK_EQ_INT(store_name_check(buf, 256), -ENAMETOOLONG);
	/* A 4-byte character cut at byte 255 is bad UTF-8, not too long. */
	memset(buf, 'a', 252);
	memcpy(buf + 252, "\xF0\x9F\x98", 3);
	CHECK_EQ_INT(store_name_check(buf, 255), -EINVAL);
	/* 2-byte units: 254 bytes good, then a lone lead byte at 255. */
	fill(buf, 254, "\xC3\xA9");
	CHECK_EQ_INT(store_name_check(buf, 254), 0);
	buf[254] = (char)0xC3;
	CHECK_EQ_INT(store_name_check(buf, 255), -EINVAL);
}

/* Every single byte as a one-byte name: only printable ASCII other than '/'
 * and '.' passes (a lone byte >= 0x80 is never valid UTF-8). */
static void test_every_byte(void)
{
	int bad = 0;
	for (int c = 0; c < 256; c++) {
		char b = (char)c;
		int want = (c >= 0x20 && c < 0x7F && c != '/' && c != '.') ? 0 : -EINVAL;
		if (store_name_check(&b, 1) != want) {
			fprintf(stderr, "byte 0x%02x\n", c);
			bad++;
		}
	}
	CHECK_EQ_INT(bad, 0);
}

/* The reason names the rule, and agrees with store_name_check on every case. */
static void test_why(void)
{
	static const struct {
		const char *name;
		size_t len;
		const char *why;
	} whys[] = {
	    {"", 0, "a name has 1 to 255 bytes"},
	    {".x", 2, "names that start with '.' are reserved"},
	    {"a/b", 3, "a name cannot hold '/'"},
	    {"a\tb", 3, "a name cannot hold control characters"},
	    {"a\xFF", 2, "a name must be valid UTF-8"},
	    {"ok", 2, NULL},
	};
	for (size_t i = 0; i < sizeof whys / sizeof whys[0]; i++) {
		const char *why = "unset";
		int r = store_name_check_why(whys[i].name, whys[i].len, &why);
		CHECK_EQ_INT(r, store_name_check(whys[i].name, whys[i].len));
		if (whys[i].why)
			CHECK_EQ_STR(why, whys[i].why);
		else
			CHECK(why == NULL && r == 0);
	}
	char buf[300];
	memset(buf, 'x', sizeof buf);
	const char *why = NULL;
	CHECK_EQ_INT(store_name_check_why(buf, 256, &why), -ENAMETOOLONG);
	CHECK_EQ_STR(why, "longer than 255 bytes");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].name);
		why = NULL;
		int r = store_name_check_why(cases[i].name, len, &why);
		CHECK_EQ_INT(r, cases[i].want);
		CHECK((r == 0) == (why == NULL));
	}
	CHECK_EQ_INT(store_name_check_why("fine", 4, NULL), 0);
	CHECK_EQ_INT(store_name_check_why(".no", 3, NULL), -EINVAL);
}

int main(void)
{
	test_table();
	test_lengths();
	test_why();
	test_every_byte();
	return check_report();
}
