/* prices.c — the price table's text form and the cost arithmetic (see
 * prices.h).  Integers only: a price of 0.25 USD per million tokens is 250,000
 * micro-USD per million tokens, which is 250,000 pico-USD per token, so a cost
 * is an exact product before its one rounding.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcpfs/prices.h"
#include "mcpfs/why.h"

#define QUOTE_MAX 40

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

int prices_parse_usd(const char *s, size_t len, int64_t max_usd, int64_t *nano)
{
	int64_t whole = 0, frac = 0;
	size_t i = 0, digits = 0, decimals = 0;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
		whole = whole * 10 + (s[i] - '0');
		if (whole > max_usd)
			return -EINVAL;
	}
	if (i < len && s[i] == '.') {
		for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, decimals++) {
			if (decimals == 6)
				return -EINVAL;
			frac = frac * 10 + (s[i] - '0');
		}
		if (!decimals)
			return -EINVAL;
	}
	if (i != len || (!digits && !decimals))
		return -EINVAL;
	for (; decimals < 6; decimals++)
		frac *= 10;
	if (whole == max_usd && frac)
		return -EINVAL;
	*nano = whole * 1000000000 + frac * 1000;
	return 0;
}

/* The next field of a line: its start and length; false at the line's end. */
static bool next_field(const char **p, const char *end, const char **f, size_t *flen)
{
	while (*p < end && is_blank(**p))
		(*p)++;
	if (*p == end)
		return false;
	*f = *p;
	while (*p < end && !is_blank(**p))
		(*p)++;
	*flen = (size_t)(*p - *f);
	return true;
}

static void shown(const char *f, size_t len, char *out, size_t outlen)
{
	size_t n = len > QUOTE_MAX ? QUOTE_MAX : len;
	size_t o = 0;
	for (size_t i = 0; i < n && o + 5 < outlen; i++) {
		unsigned char c = (unsigned char)f[i];
		if (c < 0x20 || c >= 0x7F)
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
}

static bool date_valid(const char *f, size_t len)
{
	static const char shape[] = "dddd-dd-dd";
	if (len != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; i < len; i++)
		if (shape[i] == 'd' ? (f[i] < '0' || f[i] > '9') : f[i] != '-')
			return false;
	int month = (f[5] - '0') * 10 + (f[6] - '0'), day = (f[8] - '0') * 10 + (f[9] - '0');
	return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

/* One row: a model id and four amounts. */
static int parse_row(struct prices *t, const char *p, const char *end, char *why, size_t whylen)
{
	const char *f;
	size_t flen;
	char q[QUOTE_MAX * 4 + 8];
	struct price row = {0};
	int64_t *amounts[] = {&row.input, &row.output, &row.cache_write, &row.cache_read};
	next_field(&p, end, &f, &flen);
	if (!settings_model_valid(f, flen)) {
		shown(f, flen, q, sizeof(q));
		return why_fail(-EINVAL, why, whylen, "'%s' is not a model id", q);
	}
	memcpy(row.model, f, flen);
	for (size_t i = 0; i < 4; i++) {
		int64_t nano;
		if (!next_field(&p, end, &f, &flen))
			return why_fail(-EINVAL, why, whylen,
					"%s has %zu of its 5 fields (model, input, output, "
					"cache_write, cache_read)",
					row.model, i + 1);
		if (prices_parse_usd(f, flen, PRICES_AMOUNT_MAX, &nano) < 0) {
			shown(f, flen, q, sizeof(q));
			return why_fail(-EINVAL, why, whylen,
					"'%s' is not an amount in USD per million tokens (0 to %d, "
					"at most 6 decimals)",
					q, PRICES_AMOUNT_MAX);
		}
		*amounts[i] = nano / 1000;
	}
	if (next_field(&p, end, &f, &flen))
		return why_fail(-EINVAL, why, whylen, "%s has more than 5 fields", row.model);
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->v[i].model, row.model))
			return why_fail(-EINVAL, why, whylen, "%s is listed twice", row.model);
	if (t->n == PRICES_ROWS_MAX)
		return why_fail(-EFBIG, why, whylen, "more than %d models", PRICES_ROWS_MAX);
	struct price *v = realloc(t->v, (t->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->v = v;
	t->v[t->n++] = row;
	return 0;
}

/* One line (no newline) of a table. */
static int parse_line(struct prices *t, const char *p, const char *end, char *why, size_t whylen)
{
	const char *f;
	size_t flen;
	char q[QUOTE_MAX * 4 + 8];
	const char *s = p;
	if (!next_field(&s, end, &f, &flen) || f[0] == '#')
		return 0;
	if (flen == 5 && !memcmp(f, "as_of", 5)) {
		if (t->as_of[0])
			return why_fail(-EINVAL, why, whylen, "a second as_of line");
		flen = 0;
		f = s;
		if (!next_field(&s, end, &f, &flen) || !date_valid(f, flen)) {
			shown(f, flen, q, sizeof(q));
			return why_fail(-EINVAL, why, whylen,
					"as_of wants a date YYYY-MM-DD, not '%s'", q);
		}
		memcpy(t->as_of, f, flen);
		t->as_of[flen] = '\0';
		return next_field(&s, end, &f, &flen)
			   ? why_fail(-EINVAL, why, whylen, "as_of takes one date")
			   : 0;
	}
	if (!t->as_of[0])
		return why_fail(-EINVAL, why, whylen, "a row before the as_of date line");
	return parse_row(t, p, end, why, whylen);
}

int prices_parse(const char *text, size_t len, const char *source, struct prices *out, char *why,
		 size_t whylen)
{
	struct prices t = {0};
	char sub[256];
	size_t pos = 0, line = 0;
	if (len > PRICES_FILE_MAX)
		return why_fail(-EFBIG, why, whylen, "%zu bytes, over the limit of %u", len,
				PRICES_FILE_MAX);
	if (memchr(text, '\0', len))
		return why_fail(-EINVAL, why, whylen, "a NUL byte: not a text file");
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		line++;
		int r = parse_line(&t, text + pos, text + end, sub, sizeof(sub));
		if (r < 0) {
			prices_done(&t);
			return why_fail(r, why, whylen, "line %zu: %s", line, sub);
		}
		pos = end + 1;
	}
	if (!t.as_of[0]) {
		prices_done(&t);
		return why_fail(-EINVAL, why, whylen, "no as_of date line");
	}
	snprintf(t.source, sizeof(t.source), "%s", source ? source : "");
	*out = t;
	return 0;
}

int prices_load(const char *path, struct prices *out, char *why, size_t whylen)
{
	char sub[300];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return why_fail(-errno, why, whylen, "cannot read prices file '%s': %s", path,
				strerror(errno));
	char *text = malloc(PRICES_FILE_MAX + 1);
	size_t len = 0;
	ssize_t n = 0;
	while (text && len <= PRICES_FILE_MAX &&
	       (n = read(fd, text + len, PRICES_FILE_MAX + 1 - len)) > 0)
		len += (size_t)n;
	int err = !text ? ENOMEM : n < 0 ? errno : 0;
	close(fd);
	if (err) {
		free(text);
		return why_fail(-err, why, whylen, "cannot read prices file '%s': %s", path,
				strerror(err));
	}
	int r = prices_parse(text, len, path, out, sub, sizeof(sub));
	free(text);
	if (r < 0)
		return why_fail(r, why, whylen, "prices file '%s': %s", path, sub);
	return 0;
}

void prices_done(struct prices *p)
{
	if (!p)
		return;
	free(p->v);
	memset(p, 0, sizeof(*p));
}

static const struct price *find_exact(const struct prices *p, const char *model, size_t len)
{
	for (size_t i = 0; i < p->n; i++)
		if (strlen(p->v[i].model) == len && !memcmp(p->v[i].model, model, len))
			return &p->v[i];
	return NULL;
}

const struct price *prices_find(const struct prices *p, const char *model)
{
	size_t len = strlen(model);
	const struct price *r = find_exact(p, model, len);
	if (r || len < 10 || model[len - 9] != '-')
		return r;
	for (size_t i = len - 8; i < len; i++)
		if (model[i] < '0' || model[i] > '9')
			return NULL;
	return find_exact(p, model, len - 9);
}

int64_t prices_add(int64_t a, int64_t b)
{
	int64_t s;
	return __builtin_add_overflow(a, b, &s) ? INT64_MAX : s;
}

int64_t prices_cost(const struct price *p, const struct price_tokens *t)
{
	const int64_t n[] = {t->input, t->output, t->cache_write, t->cache_read};
	const int64_t k[] = {p->input, p->output, p->cache_write, p->cache_read};
	/* tokens = q × 10^6 + r: q × price is nano-USD × 1000 exactly, and the
	 * four r × price (each < 10^6 × 10^12) sum in pico-USD within int64. */
	int64_t nano = 0, pico = 0;
	for (size_t i = 0; i < 4; i++) {
		int64_t tokens = n[i] > 0 ? n[i] : 0, q = tokens / 1000000, r = tokens % 1000000;
		int64_t part;
		if (__builtin_mul_overflow(q, k[i], &part) ||
		    __builtin_mul_overflow(part, (int64_t)1000, &part))
			return INT64_MAX;
		nano = prices_add(nano, part);
		pico += r * k[i];
	}
	return prices_add(nano, (pico + 500) / 1000);
}

void prices_format_usd(int64_t nano, bool trim, char *out, size_t outlen)
{
	if (nano < 0)
		nano = 0;
	int64_t micro = nano / 1000 + (nano % 1000 >= 500);
	int n = snprintf(out, outlen, "%lld.%06lld", (long long)(micro / 1000000),
			 (long long)(micro % 1000000));
	if (!trim || n < 0 || (size_t)n >= outlen)
		return;
	char *dot = strchr(out, '.');
	for (char *e = out + n - 1; e > dot + 2 && *e == '0'; e--)
		*e = '\0';
}
