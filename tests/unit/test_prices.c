/* test_prices.c — the price table's text form, lookups, the cost arithmetic
 * (cache writes and reads at their own prices, one rounding half up to
 * nano-USD, saturation) and how amounts are shown; and the spend_limit_usd
 * key of the settings table.  Table-driven; the table parser is also fed at
 * every split point of a valid table (a prefix is either valid or refused,
 * never a crash). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "mcpfs/prices.h"
#include "mcpfs/settings.h"

static const char table[] = "# a comment\n"
			    "\n"
			    "as_of 2026-12-06\n"
			    "# model input output cache_write cache_read\n"
			    "claude-sonnet-5-5\t2\t10\t2.50\t0.20\n"
			    "claude-opus-4-1  15 75 18.75 1.50\r\n"
			    "claude-tiny 0.000001 0 0 0.000001\n";

static void test_parse(void)
{
	struct prices p;
	char why[256];
	CHECK_EQ_INT(prices_parse(table, strlen(table), "t", &p, why, sizeof(why)), 0);
	CHECK_EQ_STR(p.as_of, "2026-12-06");
	CHECK_EQ_STR(p.source, "t");
	CHECK_EQ_INT(p.n, 3);
	const struct price *s = prices_find(&p, "claude-sonnet-5-5");
	CHECK(s != NULL);
	if (s) {
		/* micro-USD per million tokens */
		CHECK_EQ_INT(s->input, 2000000);
		CHECK_EQ_INT(s->output, 10000000);
		CHECK_EQ_INT(s->cache_write, 2500000);
		CHECK_EQ_INT(s->cache_read, 200000);
	}
	const struct price *o = prices_find(&p, "claude-opus-4-1");
	CHECK(o && o->cache_read == 1500000);
	/* a snapshot id takes its model's row; nothing else does */
	CHECK(prices_find(&p, "claude-opus-4-1-20250805") == o);
	CHECK(prices_find(&p, "claude-opus-4-1-2025080") == NULL);
	CHECK(prices_find(&p, "claude-opus-4-1-2025080x") == NULL);
	CHECK(prices_find(&p, "claude-opus-4") == NULL);
	CHECK(prices_find(&p, "claude-test-model") == NULL);
	CHECK(prices_find(&p, "") == NULL);
	prices_done(&p);
	CHECK_EQ_INT(p.n, 0);
	prices_done(NULL);
}

static void test_parse_errors(void)
{
	static const struct {
		const char *text;
		int err;
		const char *why;
	} cases[] = {
	    {"", -EINVAL, "no as_of date line"},
	    {"# only\n", -EINVAL, "no as_of"},
	    {"claude-x 1 2 3 4\n", -EINVAL, "line 1: a row before the as_of"},
	    {"as_of 2026-13-01\n", -EINVAL,
	     "line 1: as_of wants a date YYYY-MM-DD, not '2026-13-01'"},
	    {"as_of\n", -EINVAL, "line 1: as_of wants a date"},
	    {"as_of 2026-01-01 x\n", -EINVAL, "as_of takes one date"},
	    {"as_of 2026-01-01\nas_of 2026-01-02\n", -EINVAL, "line 2: a second as_of"},
	    {"as_of 2026-01-01\nclaude-x 1 2 3\n", -EINVAL, "line 2: claude-x has 4 of its 5"},
	    {"as_of 2026-01-01\nclaude-x 1 2 3 4 5\n", -EINVAL, "more than 5 fields"},
	    {"as_of 2026-01-01\nclaude-x 1 2 3 -4\n", -EINVAL, "'-4' is not an amount"},
	    {"as_of 2026-01-01\nclaude-x 1 2 3 0.0000001\n", -EINVAL, "at most 6 decimals"},
	    {"as_of 2026-01-01\nclaude-x 1 2 3 1e3\n", -EINVAL, "'1e3' is not an amount"},
	    {"as_of 2026-01-01\nclaude-x 1 2 3 .\n", -EINVAL, "'.' is not"},
	    {"as_of 2026-01-01\nclaude-x 1 2 3 1000001\n", -EINVAL, "0 to 1000000"},
	    {"as_of 2026-01-01\nclaude-x 1 2 3 1000000.5\n", -EINVAL, "0 to 1000000"},
	    {"as_of 2026-01-01\nclaude x 1 2 3 4\n", -EINVAL, "'x' is not an amount"},
	    {"as_of 2026-01-01\nclau$de 1 2 3 4\n", -EINVAL, "'clau$de' is not a model id"},
	    {"as_of 2026-01-01\na 1 2 3 4\na 1 2 3 4\n", -EINVAL, "line 3: a is listed twice"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct prices p = {0};
		char why[256] = "";
		int r =
		    prices_parse(cases[i].text, strlen(cases[i].text), "t", &p, why, sizeof(why));
		CHECK_EQ_INT(r, cases[i].err);
		if (!strstr(why, cases[i].why))
			fprintf(stderr, "case %zu: why '%s' lacks '%s'\n", i, why, cases[i].why);
		CHECK(strstr(why, cases[i].why) != NULL);
		CHECK_EQ_INT(p.n, 0);
	}
	/* A NUL, and the size and row limits. */
	struct prices p;
	char why[256];
	CHECK_EQ_INT(prices_parse("as_of 2026-01-01\n\0", 18, "t", &p, why, sizeof(why)), -EINVAL);
	size_t big = PRICES_FILE_MAX + 1;
	char *text = malloc(big);
	memset(text, '#', big);
	CHECK_EQ_INT(prices_parse(text, big, "t", &p, why, sizeof(why)), -EFBIG);
	free(text);
	struct buf_like {
		char *d;
		size_t n;
	} t = {malloc(64 * (PRICES_ROWS_MAX + 2)), 0};
	t.n += (size_t)sprintf(t.d, "as_of 2026-01-01\n");
	for (int i = 0; i <= PRICES_ROWS_MAX; i++)
		t.n += (size_t)sprintf(t.d + t.n, "m%d 1 1 1 1\n", i);
	CHECK_EQ_INT(prices_parse(t.d, t.n, "t", &p, why, sizeof(why)), -EFBIG);
	CHECK(strstr(why, "more than 1024 models") != NULL);
	free(t.d);
}

/* Every prefix of a valid table parses or is refused cleanly. */
static void test_every_split(void)
{
	size_t len = strlen(table);
	for (size_t cut = 0; cut <= len; cut++) {
		struct prices p = {0};
		char why[256];
		int r = prices_parse(table, cut, "t", &p, why, sizeof(why));
		CHECK(r == 0 || r == -EINVAL);
		CHECK(r == 0 || p.n == 0);
		prices_done(&p);
	}
}

static void test_cost(void)
{
	/* prices in micro-USD per million tokens */
	static const struct price sonnet = {"s", 2000000, 10000000, 2500000, 200000};
	static const struct price fable = {"f", 10000000, 50000000, 12500000, 250000};
	static const struct price tiny = {"t", 1, 0, 0, 0}; /* 10^-6 USD per MTok */
	static const struct price ones = {"x", 1, 1, 1, 1};
	static const struct {
		const struct price *p;
		struct price_tokens t;
		int64_t nano;
	} cases[] = {
	    {&sonnet, {0, 0, 0, 0}, 0},
	    /* 1000 in × 2 + 100 out × 10 = 0.003 USD */
	    {&sonnet, {1000, 100, 0, 0}, 3000000},
	    /* cache writes at 2.50, reads at 0.20: 4000 × 2.5 + 50000 × 0.2 = 0.02 USD */
	    {&sonnet, {0, 0, 4000, 50000}, 20000000},
	    /* all four: 12 × 2 + 7 × 10 + 1100 × 2.5 + 3000 × 0.2 = 3444 µUSD */
	    {&sonnet, {12, 7, 1100, 3000}, 3444000},
	    /* Fable's cache read of 0.25: 3 tokens = 0.75 µUSD = 750 nUSD */
	    {&fable, {0, 0, 0, 3}, 750},
	    /* one input token of Sonnet: 2 µUSD */
	    {&sonnet, {1, 0, 0, 0}, 2000},
	    /* rounding half up to nano-USD: 499 pUSD -> 0, 500 pUSD -> 1 nUSD */
	    {&tiny, {499, 0, 0, 0}, 0},
	    {&tiny, {500, 0, 0, 0}, 1},
	    {&tiny, {1499, 0, 0, 0}, 1},
	    {&tiny, {1500, 0, 0, 0}, 2},
	    /* the remainders of the four counts are summed before the one rounding */
	    {&ones, {250, 250, 0, 0}, 1},
	    /* millions of tokens: exact */
	    {&sonnet, {123456789, 0, 0, 0}, 246913578000},
	    /* negative counts count as 0 */
	    {&sonnet, {-5, 1, 0, 0}, 10000},
	    /* saturation */
	    {&fable, {INT64_MAX, 0, 0, 0}, INT64_MAX},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t got = prices_cost(cases[i].p, &cases[i].t);
		if (got != cases[i].nano)
			fprintf(stderr, "cost case %zu: %lld\n", i, (long long)got);
		CHECK(got == cases[i].nano);
	}
	CHECK(prices_add(INT64_MAX - 1, 5) == INT64_MAX);
	CHECK(prices_add(2, 3) == 5);
}

static void test_format(void)
{
	static const struct {
		int64_t nano;
		bool trim;
		const char *want;
	} cases[] = {
	    {0, false, "0.000000"},
	    {3444000, false, "0.003444"},
	    {499, false, "0.000000"}, /* half up at the 6th decimal */
	    {500, false, "0.000001"},
	    {1500, false, "0.000002"},
	    {12345678901, false, "12.345679"},
	    {500000000, true, "0.50"},
	    {1000, true, "0.000001"},
	    {10000000000, true, "10.00"},
	    {123400000, true, "0.1234"},
	    {-7, false, "0.000000"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[PRICES_USD_TEXT];
		prices_format_usd(cases[i].nano, cases[i].trim, out, sizeof(out));
		CHECK_EQ_STR(out, cases[i].want);
	}
	char out[PRICES_USD_TEXT];
	prices_format_usd(INT64_MAX, false, out, sizeof(out));
	CHECK_EQ_STR(out, "9223372036.854776");
}

static void test_parse_usd(void)
{
	static const struct {
		const char *s;
		int err;
		int64_t nano;
	} cases[] = {
	    {"0", 0, 0},
	    {"0.5", 0, 500000000},
	    {"12", 0, 12000000000},
	    {"0.000001", 0, 1000},
	    {".25", 0, 250000000},
	    {"3.", -EINVAL, 0},
	    {"", -EINVAL, 0},
	    {"-1", -EINVAL, 0},
	    {"1e2", -EINVAL, 0},
	    {"1.0000001", -EINVAL, 0},
	    {"100", 0, 100000000000},
	    {"100.01", -EINVAL, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t nano = -1;
		int r = prices_parse_usd(cases[i].s, strlen(cases[i].s), 100, &nano);
		CHECK_EQ_INT(r, cases[i].err);
		if (r == 0)
			CHECK(nano == cases[i].nano);
	}
}

static void test_load(void)
{
	char path[] = "/tmp/mcpfs-prices-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, table, strlen(table)) == (ssize_t)strlen(table));
	close(fd);
	struct prices p;
	char why[512];
	CHECK_EQ_INT(prices_load(path, &p, why, sizeof(why)), 0);
	CHECK_EQ_STR(p.source, path);
	CHECK_EQ_INT(p.n, 3);
	prices_done(&p);
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(write(fd, "as_of 2026-01-01\nx 1\n", 21) == 21);
	close(fd);
	CHECK_EQ_INT(prices_load(path, &p, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "prices file '") && strstr(why, "': line 2: x has 2 of its 5"));
	unlink(path);
	CHECK_EQ_INT(prices_load(path, &p, why, sizeof(why)), -ENOENT);
	CHECK(strstr(why, "cannot read prices file") && strstr(why, "No such file"));
}

/* The spend_limit_usd key: none by default, an amount, none again. */
static void test_setting(void)
{
	struct settings s;
	char why[256], v[64];
	size_t n;
	const struct setting_def *t = settings_table(&n), *d = NULL;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(t[i].key, "spend_limit_usd"))
			d = &t[i];
	CHECK(d != NULL);
	if (!d)
		return;
	settings_init(&s);
	CHECK(isnan(s.spend_limit_usd));
	settings_format(&s, d, v, sizeof(v));
	CHECK_EQ_STR(v, "none");
	CHECK_EQ_INT(settings_set(&s, "spend_limit_usd", "0.50", why, sizeof(why)), 0);
	CHECK(s.spend_limit_usd == 0.5);
	settings_format(&s, d, v, sizeof(v));
	CHECK_EQ_STR(v, "0.5");
	CHECK_EQ_INT(settings_set(&s, "spend_limit_usd", "0.000001", why, sizeof(why)), 0);
	settings_format(&s, d, v, sizeof(v));
	CHECK_EQ_STR(v, "0.000001"); /* not 1e-06 */
	CHECK_EQ_INT(settings_set(&s, "spend_limit_usd", "lots", why, sizeof(why)), -EINVAL);
	CHECK_EQ_STR(why, "spend_limit_usd: 'lots' is not an amount in USD or none");
	CHECK_EQ_INT(settings_set(&s, "spend_limit_usd", "-1", why, sizeof(why)), -EINVAL);
	CHECK_EQ_STR(why, "spend_limit_usd: '-1' is out of range 0-1000000000");
	CHECK_EQ_INT(settings_set(&s, "spend_limit_usd", "none", why, sizeof(why)), 0);
	CHECK(isnan(s.spend_limit_usd));
	CHECK_EQ_INT(settings_set(&s, "spend_limit_usd", "", why, sizeof(why)), 0);
	CHECK(isnan(s.spend_limit_usd));
}

int main(void)
{
	test_parse();
	test_parse_errors();
	test_every_split();
	test_cost();
	test_format();
	test_parse_usd();
	test_load();
	test_setting();
	return check_report();
}
