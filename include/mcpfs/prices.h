/* prices.h — the price table and what tokens cost (CONTRACT §10, Cost).
 *
 * The table is a text file shipped with mcpfs (data/prices.tsv, installed as
 * DATADIR/mcpfs/prices.tsv; `--prices=FILE` replaces it): `#` comments and
 * blank lines, one `as_of YYYY-MM-DD` line (the date the prices were checked),
 * then one row per model id of five fields separated by white space: the id,
 * and the list prices in USD per million tokens of input, output, cache writes
 * (the 5-minute lifetime mcpfs asks for) and cache reads.  An amount has at
 * most 6 decimals and is at most PRICES_AMOUNT_MAX.
 *
 * Arithmetic is in integers: a price is kept in micro-USD per million tokens,
 * so the cost of N tokens is exactly N × price pico-USD (10^-12 USD).  The
 * cost of a set of token counts is that sum, rounded half up to nano-USD
 * (10^-9), and saturates at INT64_MAX nano-USD (about 9.2 billion USD).  It is
 * shown rounded half up to 6 decimals (prices_format_usd).
 *
 * Pure functions over caller-owned memory; no I/O except prices_load().
 */
#ifndef MCPFS_PRICES_H
#define MCPFS_PRICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "mcpfs/settings.h"

#define PRICES_FILE_MAX (1u << 20) /* bytes of a price table */
#define PRICES_ROWS_MAX 1024	   /* models in it */
#define PRICES_AMOUNT_MAX 1000000  /* USD per million tokens, the largest price */
#define PRICES_USD_TEXT 32	   /* bytes prices_format_usd needs */

struct price {
	char model[SETTINGS_MODEL_MAX + 1];
	/* micro-USD per million tokens (= pico-USD per token): */
	int64_t input, output, cache_write, cache_read;
};

struct prices {
	char as_of[11];	  /* YYYY-MM-DD */
	char source[256]; /* where it came from: a path, or "built-in" */
	struct price *v;  /* heap, n rows */
	size_t n;
};

/* Token counts of one call or a total (the API's usage fields). */
struct price_tokens {
	int64_t input, output, cache_write, cache_read;
};

/* Parses a table's text into *out (source copied into out->source).  All or
 * nothing.  0, or -EINVAL / -EFBIG with why naming the line:
 * "line 7: 'x' is not an amount in USD".  Free with prices_done(). */
int prices_parse(const char *text, size_t len, const char *source, struct prices *out, char *why,
		 size_t whylen);

/* Reads and parses the file at path.  0, -errno (why: "cannot read prices file
 * '/x': No such file or directory"), or prices_parse's errors with the path
 * in why: "prices file '/x': line 7: ...". */
int prices_load(const char *path, struct prices *out, char *why, size_t whylen);

void prices_done(struct prices *p); /* NULL-safe; leaves an empty table */

/* The row of a model id: its own, else that of the id without a trailing
 * -YYYYMMDD snapshot date (claude-haiku-4-5-20251001 → claude-haiku-4-5).
 * NULL when the table has none (the cost is unknown). */
const struct price *prices_find(const struct prices *p, const char *model);

/* What the counts cost at price p, in nano-USD: exact in pico-USD, rounded
 * half up; negative counts count as 0; saturates at INT64_MAX. */
int64_t prices_cost(const struct price *p, const struct price_tokens *t);

/* Adds nano-USD amounts, saturating at INT64_MAX. */
int64_t prices_add(int64_t a, int64_t b);

/* "0.001235": nano-USD in USD with 6 decimals, rounded half up; with trim,
 * the zeros that end it are dropped down to 2 decimals ("0.50"). */
void prices_format_usd(int64_t nano, bool trim, char *out, size_t outlen);

/* Parses an amount in USD ("0.5", "12", "0.000001"): at most 6 decimals, 0 to
 * max.  0 with *nano, -EINVAL. */
int prices_parse_usd(const char *s, size_t len, int64_t max_usd, int64_t *nano);

#endif
