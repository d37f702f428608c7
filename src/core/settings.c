/* settings.c — the table of per-context settings and its text and JSON forms
 * (see settings.h).
 *
 * Every path that sets a value (text, JSON, settings_init's defaults and
 * settings_check's re-validation) ends in the same per-type checks, so a bound
 * is written once, in the table.
 *
 * No libm calls (isnan and isfinite are macros): the unit test and the core
 * library link without -lm.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <assert.h>
#include <cJSON.h>

#include "mcpfs/settings.h"
#include "mcpfs/utf8.h"
#include "mcpfs/why.h"

/* Indices into the table; the table order is the rendering order. */
enum {
	K_MODEL,
	K_MAX_TOKENS,
	K_TEMPERATURE,
	K_BUDGET_TOKENS,
	K_MAX_INPUT_BYTES,
	K_MAX_RETRIES,
	K_CONNECT_TIMEOUT,
	K_IDLE_TIMEOUT,
	K_THINKING,
	K_EFFORT,
	K_PROMPT_CACHE,
	K_TOOLS,
	K_PRUNE,
	K_SUMMARY_MODEL,
	K_SUMMARY_PROMPT,
	K_SPEND_LIMIT,
	K_RESPONSE_CACHE,
	K_COUNT
};

/* The API refuses a thinking budget below this many tokens. */
#define THINKING_MIN 1024

/* Bounds that the header leaves open: budget_tokens has no lower limit worth
 * enforcing (a tiny budget fails each turn with a clear error, which tests use),
 * and max_input_bytes stops at 16 MiB so one message cannot pin much memory in
 * the FUSE write buffer or the shim's request body. */
static const struct setting_def table[K_COUNT] = {
    [K_MODEL] = {"model", SETTING_STRING, SETTINGS_DEFAULT_MODEL, 1, SETTINGS_MODEL_MAX,
		 "model id sent with each call"},
    [K_MAX_TOKENS] = {"max_tokens", SETTING_INT, "4096", 1, 1000000,
		      "most tokens a reply may have"},
    [K_TEMPERATURE] = {"temperature", SETTING_DOUBLE, "", 0, 1,
		       "sampling temperature 0-1; 'default' leaves it to the API"},
    [K_BUDGET_TOKENS] = {"budget_tokens", SETTING_INT, "100000", 1, 10000000,
			 "pruning budget: most input tokens sent per call"},
    [K_MAX_INPUT_BYTES] = {"max_input_bytes", SETTING_INT, "1048576", 1, 16777216,
			   "largest message accepted, in bytes"},
    [K_MAX_RETRIES] = {"max_retries", SETTING_INT, "2", 0, 10,
		       "retries of a failed call before its reply starts"},
    [K_CONNECT_TIMEOUT] = {"connect_timeout", SETTING_INT, "10", 1, 300,
			   "seconds to wait for a connection to the API"},
    [K_IDLE_TIMEOUT] = {"idle_timeout", SETTING_INT, "90", 1, 3600,
			"seconds a reply stream may stay silent"},
    [K_THINKING] = {"thinking", SETTING_THINKING, "off", 0, 999999,
		    "off, on (the form the model takes), or a budget of 1024 or more tokens "
		    "below max_tokens; thinking_budget = N is its old spelling"},
    [K_EFFORT] = {"effort", SETTING_EFFORT, "default", 0, 0,
		  "low, medium, high, xhigh or max where the model takes that level; "
		  "default sends none"},
    [K_PROMPT_CACHE] = {"prompt_cache", SETTING_BOOL, "on", 0, 1,
			"mark the history for prompt caching (on/off)"},
    [K_TOOLS] = {"tools", SETTING_TOOLS, "none", 0, 0,
		 "Anthropic's server tools offered to the model: web_search, web_fetch "
		 "(comma-separated), or none (also written as nothing)"},
    [K_PRUNE] = {"prune", SETTING_PRUNE, "summarize", 0, 0,
		 "what a pruning cut does to the exchanges it cuts: summarize (fold them into "
		 "the summary by one extra call) or drop"},
    [K_SUMMARY_MODEL] = {"summary_model", SETTING_STRING, "default", 0, SETTINGS_MODEL_MAX,
			 "model of the summary calls; default: the context's model"},
    [K_SUMMARY_PROMPT] = {"summary_prompt", SETTING_TEXT, "default", 0, SETTINGS_PROMPT_MAX,
			  "instruction of the summary calls, one line; default: the "
			  "documented prompt"},
    [K_SPEND_LIMIT] = {"spend_limit_usd", SETTING_USD, "none", 0, 1e9,
		       "writing input fails (EDQUOT) once the context's cost_usd reaches it; "
		       "in .config: the limit of all contexts together; none: no limit"},
    [K_RESPONSE_CACHE] = {"response_cache", SETTING_BOOL, "off", 0, 1,
			  "answer a request sent before (the same body) from the response "
			  "cache, without a call (on/off)"},
};

#define OFF(field) offsetof(struct settings, field)
static const size_t field_off[K_COUNT] = {
    [K_MODEL] = OFF(model),
    [K_MAX_TOKENS] = OFF(max_tokens),
    [K_TEMPERATURE] = OFF(temperature),
    [K_BUDGET_TOKENS] = OFF(budget_tokens),
    [K_MAX_INPUT_BYTES] = OFF(max_input_bytes),
    [K_MAX_RETRIES] = OFF(max_retries),
    [K_CONNECT_TIMEOUT] = OFF(connect_timeout),
    [K_IDLE_TIMEOUT] = OFF(idle_timeout),
    [K_THINKING] = OFF(thinking),
    [K_EFFORT] = OFF(effort),
    [K_PROMPT_CACHE] = OFF(prompt_cache),
    [K_TOOLS] = OFF(tools),
    [K_PRUNE] = OFF(prune),
    [K_SUMMARY_MODEL] = OFF(summary_model),
    [K_SUMMARY_PROMPT] = OFF(summary_prompt),
    [K_SPEND_LIMIT] = OFF(spend_limit_usd),
    [K_RESPONSE_CACHE] = OFF(response_cache),
};
#undef OFF

/* A user value shown in an error is cut to this many bytes, so that a why
 * string stays one short line whatever was written. */
#define QUOTE_MAX 40
#define QUOTE_BUF (QUOTE_MAX * 4 + 8)

/* Longest number text accepted; anything longer is not a number a user meant. */
#define NUMBER_MAX 64

static void put(struct settings *s, size_t k, const void *v, size_t size)
{
	memcpy((char *)s + field_off[k], v, size);
}

static void get(const struct settings *s, size_t k, void *v, size_t size)
{
	memcpy(v, (const char *)s + field_off[k], size);
}

/* Copies a user value for an error message: control bytes, and every byte
 * above 0x7F when the value is not valid UTF-8, become \xNN, so the why string
 * (shown in `status` and on HTTP) is always printable text. */
static void quote(const char *v, size_t len, char *out, size_t outlen)
{
	size_t cut = len > QUOTE_MAX ? utf8_complete_prefix(v, QUOTE_MAX) : len;
	bool valid = utf8_valid(v, cut);
	size_t o = 0;

	assert(outlen >= QUOTE_BUF);
	for (size_t i = 0; i < cut; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 0x20 || c == 0x7F || (c >= 0x80 && !valid))
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	if (cut < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/* Integral and within int64. */
static bool is_whole(double v)
{
	return v > -9e18 && v < 9e18 && v == (double)(int64_t)v;
}

/* Shortest text that reads back as the same double (0.7, not 0.69999999999999996). */
static void format_double(double v, char *out, size_t outlen)
{
	if (is_whole(v) && v > -1e15 && v < 1e15) {
		snprintf(out, outlen, "%.0f", v);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, outlen, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

/* An amount in USD as a plain decimal (0.000001, not 1e-06), to the nano-dollar. */
static void format_usd(double v, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%.9f", v);
	if (n < 0 || (size_t)n >= outlen || !strchr(out, '.'))
		return;
	char *e = out + n - 1;
	while (*e == '0')
		*e-- = '\0';
	if (*e == '.')
		*e = '\0';
}

static bool is_space(char c)
{
	return c && strchr(" \t\r\n\v\f", c);
}

static void trim(const char **p, size_t *len)
{
	while (*len && is_space(**p)) {
		(*p)++;
		(*len)--;
	}
	while (*len && is_space((*p)[*len - 1]))
		(*len)--;
}

static bool word_is(const char *v, size_t len, const char *w)
{
	return strlen(w) == len && strncasecmp(v, w, len) == 0;
}

/* Words of enum settings_effort, in its order. */
static const char *const effort_words[] = {"default", "low", "medium", "high", "xhigh", "max"};
#define EFFORT_COUNT (sizeof(effort_words) / sizeof(effort_words[0]))

const char *settings_effort_name(int effort)
{
	return effort > EFFORT_DEFAULT && (size_t)effort < EFFORT_COUNT ? effort_words[effort]
									: NULL;
}

/* Names of the SETTINGS_TOOL_* bits, bit i at index i. */
static const char *const tool_words[] = {"web_search", "web_fetch"};
#define TOOL_COUNT (sizeof(tool_words) / sizeof(tool_words[0]))

const char *settings_tool_name(unsigned bit)
{
	for (size_t i = 0; i < TOOL_COUNT; i++)
		if (bit == 1u << i)
			return tool_words[i];
	return NULL;
}

/* "web_search, web_fetch": the list of a tools value, "none" for none. */
static void format_tools(unsigned tools, char *out, size_t outlen)
{
	size_t o = 0;
	snprintf(out, outlen, "none");
	for (size_t i = 0; i < TOOL_COUNT && o < outlen; i++)
		if (tools & (1u << i))
			o += (size_t)snprintf(out + o, outlen - o, "%s%s", o ? ", " : "",
					      tool_words[i]);
}

/* One name of a tools list (trimmed); its bit, or 0 for none. */
static unsigned tool_bit(const char *v, size_t len)
{
	for (size_t i = 0; i < TOOL_COUNT; i++)
		if (strlen(tool_words[i]) == len && memcmp(tool_words[i], v, len) == 0)
			return 1u << i;
	return 0;
}

/* Old spellings still read (never written): thinking_budget = N is thinking = N. */
static const struct {
	const char *key;
	int k;
} aliases[] = {{"thinking_budget", K_THINKING}};

static int find_key(const char *key, size_t len)
{
	for (int k = 0; k < K_COUNT; k++)
		if (strlen(table[k].key) == len && memcmp(table[k].key, key, len) == 0)
			return k;
	for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
		if (strlen(aliases[i].key) == len && memcmp(aliases[i].key, key, len) == 0)
			return aliases[i].k;
	return -1;
}

/* Decimal integer with an optional sign.  strtoll would accept leading white
 * space and stop silently at "12abc".  0, -EINVAL (not an integer), -ERANGE
 * (beyond int64; the whole text is still checked to be digits). */
static int text_int(const char *v, size_t len, int64_t *out)
{
	size_t i = len && (v[0] == '-' || v[0] == '+');
	bool big = false;
	int64_t x = 0;

	if (i == len)
		return -EINVAL;
	for (; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		big = big || x > (INT64_MAX - (v[i] - '0')) / 10;
		x = big ? 0 : x * 10 + (v[i] - '0');
	}
	*out = v[0] == '-' ? -x : x;
	return big ? -ERANGE : 0;
}

/* Decimal floating point only: strtod would also take "nan", "inf" and hex. */
static int text_double(const char *v, size_t len, double *out)
{
	char tmp[NUMBER_MAX];
	bool digit = false;

	if (len == 0 || len >= sizeof tmp)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (v[i] >= '0' && v[i] <= '9')
			digit = true;
		else if (!strchr("+-.eE", v[i]) || v[i] == '\0')
			return -EINVAL;
	}
	if (!digit)
		return -EINVAL;
	memcpy(tmp, v, len);
	tmp[len] = '\0';
	char *end;
	double x = strtod(tmp, &end);
	if (end != tmp + len)
		return -EINVAL;
	if (!isfinite(x))
		return -ERANGE;
	*out = x == 0 ? 0 : x; /* no "-0" */
	return 0;
}

static int out_of_range(size_t k, const char *shown, char *why, size_t whylen)
{
	char lo[32], hi[32];

	format_double(table[k].min, lo, sizeof lo);
	format_double(table[k].max, hi, sizeof hi);
	return why_fail(-EINVAL, why, whylen, "%s: '%s' is out of range %s-%s", table[k].key, shown,
			lo, hi);
}

/* The checks after a value is a number of the right kind; shown is the value as
 * the user wrote it.  s is changed only on success. */
static int put_int(struct settings *s, size_t k, double x, const char *shown, char *why,
		   size_t whylen)
{
	/* Compare as double before converting: a huge JSON number must not
	 * reach the int64 conversion. */
	if (!(x >= table[k].min && x <= table[k].max))
		return out_of_range(k, shown, why, whylen);
	int64_t i = (int64_t)x;
	if (k == K_THINKING && i > 0 && i < THINKING_MIN)
		return why_fail(-EINVAL, why, whylen, "%s: '%s' must be off, on, or at least %d",
				table[k].key, shown, THINKING_MIN);
	put(s, k, &i, sizeof i);
	return 0;
}

static int put_double(struct settings *s, size_t k, double x, const char *shown, char *why,
		      size_t whylen)
{
	if (!isnan(x) && !(x >= table[k].min && x <= table[k].max))
		return out_of_range(k, shown, why, whylen);
	/* JSON's -0 passes the bounds too; stored, it would render as "-0". */
	if (x == 0)
		x = 0;
	put(s, k, &x, sizeof x);
	return 0;
}

static int set_string(struct settings *s, size_t k, const char *v, size_t len, const char *shown,
		      char *why, size_t whylen)
{
	/* A model id; summary_model (min 0) also takes "default" or nothing. */
	if (table[k].min == 0 && (len == 0 || word_is(v, len, "default")))
		len = 0;
	else if (!settings_model_valid(v, len))
		return why_fail(
		    -EINVAL, why, whylen,
		    "%s: '%s' is not a model id (1-%d bytes of A-Z a-z 0-9 . _ : @ / -)",
		    table[k].key, shown, SETTINGS_MODEL_MAX);
	char *dst = (char *)s + field_off[k];
	memcpy(dst, v, len);
	dst[len] = '\0';
	return 0;
}

/* A tools list: names separated by commas (white space around them ignored),
 * "" or "none" for none; a name twice is the same as once. */
static int set_tools(struct settings *s, size_t k, const char *v, size_t len, char *why,
		     size_t whylen)
{
	char shown[QUOTE_BUF];
	unsigned bits = 0;
	size_t pos = 0;

	if (word_is(v, len, "none"))
		len = 0;
	while (pos < len) {
		const char *comma = memchr(v + pos, ',', len - pos);
		size_t end = comma ? (size_t)(comma - v) : len;
		const char *w = v + pos;
		size_t wlen = end - pos;
		trim(&w, &wlen);
		unsigned bit = tool_bit(w, wlen);
		if (!bit) {
			quote(w, wlen, shown, sizeof shown);
			return why_fail(-EINVAL, why, whylen,
					"%s: '%s' is not a server tool mcpfs knows (web_search, "
					"web_fetch)",
					table[k].key, shown);
		}
		bits |= bit;
		pos = end + 1;
		if (comma && pos == len)
			return why_fail(-EINVAL, why, whylen, "%s: a ',' ends the list",
					table[k].key);
	}
	put(s, k, &bits, sizeof bits);
	return 0;
}

/* One line of text (summary_prompt): UTF-8, no control characters, at most
 * max bytes; "" or "default" store "" (the default). */
static int set_line(struct settings *s, size_t k, const char *v, size_t len, char *why,
		    size_t whylen)
{
	if (word_is(v, len, "default"))
		len = 0;
	if (len > (size_t)table[k].max)
		return why_fail(-EINVAL, why, whylen, "%s: %zu bytes, over the limit of %.0f",
				table[k].key, len, table[k].max);
	if (!utf8_valid(v, len))
		return why_fail(-EINVAL, why, whylen, "%s: not valid UTF-8 text", table[k].key);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7F)
			return why_fail(-EINVAL, why, whylen,
					"%s: a control character (one line only)", table[k].key);
	char *dst = (char *)s + field_off[k];
	memcpy(dst, v, len);
	dst[len] = '\0';
	return 0;
}

/* Sets key k from its text form (already trimmed). */
static int set_text(struct settings *s, size_t k, const char *v, size_t len, char *why,
		    size_t whylen)
{
	const char *key = table[k].key;
	char shown[QUOTE_BUF];
	int64_t i;
	double x;
	bool b;
	int r;

	quote(v, len, shown, sizeof shown);
	switch (table[k].type) {
	case SETTING_STRING:
		return set_string(s, k, v, len, shown, why, whylen);
	case SETTING_THINKING:
		if (word_is(v, len, "off") || word_is(v, len, "on")) {
			i = word_is(v, len, "on") ? SETTINGS_THINKING_ON : SETTINGS_THINKING_OFF;
			put(s, k, &i, sizeof i);
			return 0;
		}
		r = text_int(v, len, &i);
		if (r == -EINVAL)
			return why_fail(r, why, whylen,
					"%s: '%s' is not off, on or a number of tokens", key,
					shown);
		if (r < 0)
			return out_of_range(k, shown, why, whylen);
		return put_int(s, k, (double)i, shown, why, whylen);
	case SETTING_EFFORT:
		for (size_t e = 0; e < EFFORT_COUNT; e++)
			if (word_is(v, len, effort_words[e])) {
				int ev = (int)e;
				put(s, k, &ev, sizeof ev);
				return 0;
			}
		return why_fail(-EINVAL, why, whylen,
				"%s: '%s' is not low, medium, high, xhigh, max or default", key,
				shown);
	case SETTING_TOOLS:
		return set_tools(s, k, v, len, why, whylen);
	case SETTING_PRUNE:
		if (!word_is(v, len, "summarize") && !word_is(v, len, "drop"))
			return why_fail(-EINVAL, why, whylen, "%s: '%s' is not summarize or drop",
					key, shown);
		i = word_is(v, len, "drop") ? SETTINGS_PRUNE_DROP : SETTINGS_PRUNE_SUMMARIZE;
		int pv = (int)i;
		put(s, k, &pv, sizeof pv);
		return 0;
	case SETTING_TEXT:
		return set_line(s, k, v, len, why, whylen);
	case SETTING_INT:
		r = text_int(v, len, &i);
		if (r == -EINVAL)
			return why_fail(r, why, whylen, "%s: '%s' is not a whole number", key,
					shown);
		if (r < 0)
			return out_of_range(k, shown, why, whylen);
		/* Bounds are far below 2^53, so anything in range converts exactly. */
		return put_int(s, k, (double)i, shown, why, whylen);
	case SETTING_USD:
		if (len == 0 || word_is(v, len, "none"))
			return put_double(s, k, (double)NAN, shown, why, whylen);
		r = text_double(v, len, &x);
		if (r == -EINVAL)
			return why_fail(-EINVAL, why, whylen,
					"%s: '%s' is not an amount in USD or none", key, shown);
		if (r < 0)
			return out_of_range(k, shown, why, whylen);
		return put_double(s, k, x, shown, why, whylen);
	case SETTING_DOUBLE:
		if (len == 0 || word_is(v, len, "default"))
			return put_double(s, k, (double)NAN, shown, why, whylen);
		r = text_double(v, len, &x);
		if (r == -EINVAL)
			return why_fail(r, why, whylen, "%s: '%s' is not a number", key, shown);
		if (r < 0)
			return out_of_range(k, shown, why, whylen);
		return put_double(s, k, x, shown, why, whylen);
	case SETTING_BOOL:
		if (word_is(v, len, "on") || word_is(v, len, "true") || word_is(v, len, "yes") ||
		    word_is(v, len, "1"))
			b = true;
		else if (word_is(v, len, "off") || word_is(v, len, "false") ||
			 word_is(v, len, "no") || word_is(v, len, "0"))
			b = false;
		else
			return why_fail(-EINVAL, why, whylen,
					"%s: '%s' is not on/off (or true/false, yes/no, 1/0)", key,
					shown);
		put(s, k, &b, sizeof b);
		return 0;
	}
	return -EINVAL;
}

const struct setting_def *settings_table(size_t *n)
{
	*n = K_COUNT;
	return table;
}

void settings_init(struct settings *s)
{
	memset(s, 0, sizeof *s);
	for (size_t k = 0; k < K_COUNT; k++) {
		int r = set_text(s, k, table[k].defval, strlen(table[k].defval), NULL, 0);
		assert(r == 0);
		(void)r;
	}
}

/* Sets a key named by text from its text form, both trimmed. */
static int set_key(struct settings *s, const char *key, size_t klen, const char *value, size_t vlen,
		   char *why, size_t whylen)
{
	char shown[QUOTE_BUF];
	int k = find_key(key, klen);

	if (k < 0) {
		quote(key, klen, shown, sizeof shown);
		return why_fail(-EINVAL, why, whylen, "unknown key '%s'", shown);
	}
	return set_text(s, (size_t)k, value, vlen, why, whylen);
}

int settings_set(struct settings *s, const char *key, const char *value, char *why, size_t whylen)
{
	size_t klen = strlen(key), vlen = strlen(value);

	trim(&key, &klen);
	trim(&value, &vlen);
	return set_key(s, key, klen, value, vlen, why, whylen);
}

/* One line of a config text, into s. */
static int parse_line(struct settings *s, const char *p, size_t len, size_t line, char *why,
		      size_t whylen)
{
	char shown[QUOTE_BUF], sub[512];

	trim(&p, &len);
	if (len == 0 || p[0] == '#')
		return 0;
	const char *eq = memchr(p, '=', len);
	if (!eq) {
		quote(p, len, shown, sizeof shown);
		return why_fail(-EINVAL, why, whylen, "line %zu: expected 'key = value', got '%s'",
				line, shown);
	}
	const char *key = p, *value = eq + 1;
	size_t klen = (size_t)(eq - p), vlen = len - klen - 1;
	trim(&key, &klen);
	trim(&value, &vlen);
	if (klen == 0)
		return why_fail(-EINVAL, why, whylen, "line %zu: no key before '='", line);
	int r = set_key(s, key, klen, value, vlen, sub, sizeof sub);
	if (r < 0)
		return why_fail(r, why, whylen, "line %zu: %s", line, sub);
	return 0;
}

int settings_parse(struct settings *s, const char *text, size_t len, char *why, size_t whylen)
{
	struct settings tmp = *s;
	size_t pos = 0, line = 0;

	if (len > SETTINGS_TEXT_MAX)
		return why_fail(-EFBIG, why, whylen, "config is %zu bytes, over the limit of %u",
				len, SETTINGS_TEXT_MAX);
	/* Editors on other systems may save a byte order mark. */
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		pos = 3;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		int r = parse_line(&tmp, text + pos, end - pos, ++line, why, whylen);
		if (r < 0)
			return r;
		pos = end + 1;
	}
	*s = tmp;
	return 0;
}

void settings_format(const struct settings *s, const struct setting_def *d, char *out,
		     size_t outlen)
{
	/* A copy of a table entry is found by its key. */
	int k =
	    d >= table && d < table + K_COUNT ? (int)(d - table) : find_key(d->key, strlen(d->key));
	int64_t i;
	double x;
	bool b;

	if (!outlen)
		return;
	out[0] = '\0';
	if (k < 0)
		return;
	switch (table[k].type) {
	case SETTING_STRING:
	case SETTING_TEXT: {
		const char *v = (const char *)s + field_off[k];
		snprintf(out, outlen, "%s", *v || table[k].min > 0 ? v : "default");
		break;
	}
	case SETTING_PRUNE: {
		int pv;
		get(s, (size_t)k, &pv, sizeof pv);
		snprintf(out, outlen, "%s", pv == SETTINGS_PRUNE_DROP ? "drop" : "summarize");
		break;
	}
	case SETTING_INT:
		get(s, (size_t)k, &i, sizeof i);
		snprintf(out, outlen, "%" PRId64, i);
		break;
	case SETTING_THINKING:
		get(s, (size_t)k, &i, sizeof i);
		if (i == SETTINGS_THINKING_OFF || i == SETTINGS_THINKING_ON)
			snprintf(out, outlen, "%s", i ? "on" : "off");
		else
			snprintf(out, outlen, "%" PRId64, i);
		break;
	case SETTING_EFFORT: {
		int e;
		get(s, (size_t)k, &e, sizeof e);
		snprintf(out, outlen, "%s",
			 e >= 0 && (size_t)e < EFFORT_COUNT ? effort_words[e] : "?");
		break;
	}
	case SETTING_TOOLS: {
		unsigned t;
		get(s, (size_t)k, &t, sizeof t);
		format_tools(t, out, outlen);
		break;
	}
	case SETTING_USD:
		get(s, (size_t)k, &x, sizeof x);
		if (isnan(x))
			snprintf(out, outlen, "none");
		else
			format_usd(x, out, outlen);
		break;
	case SETTING_DOUBLE:
		get(s, (size_t)k, &x, sizeof x);
		if (isnan(x))
			snprintf(out, outlen, "default");
		else
			format_double(x, out, outlen);
		break;
	case SETTING_BOOL:
		get(s, (size_t)k, &b, sizeof b);
		snprintf(out, outlen, "%s", b ? "on" : "off");
		break;
	}
}

int settings_render(const struct settings *s, struct buf *out)
{
	size_t old = out->len;
	char v[SETTINGS_PROMPT_MAX + 32];

	for (size_t k = 0; k < K_COUNT; k++) {
		settings_format(s, &table[k], v, sizeof v);
		int r = buf_printf(out, "%s = %s\n", table[k].key, v);
		if (r < 0) {
			buf_resize(out, old); /* shrinking cannot fail */
			return r;
		}
	}
	return 0;
}

int settings_check(const struct settings *s, char *why, size_t whylen)
{
	struct settings scratch = *s;
	char v[SETTINGS_PROMPT_MAX + 32];

	/* Each key against its own bounds too: a struct may have been filled in by
	 * code rather than parsed.  The text form round-trips exactly. */
	for (size_t k = 0; k < K_COUNT; k++) {
		if ((table[k].type == SETTING_STRING || table[k].type == SETTING_TEXT) &&
		    !memchr((const char *)s + field_off[k], '\0', (size_t)table[k].max + 1))
			return why_fail(-EINVAL, why, whylen, "%s: not terminated", table[k].key);
		settings_format(s, &table[k], v, sizeof v);
		int r = set_text(&scratch, k, v, strlen(v), why, whylen);
		if (r < 0)
			return r;
	}
	if (s->thinking > 0 && s->thinking >= s->max_tokens)
		return why_fail(-EINVAL, why, whylen,
				"thinking (%" PRId64 ") must be less than "
				"max_tokens (%" PRId64 ")",
				s->thinking, s->max_tokens);
	/* The API rejects any other temperature with a thinking budget.  (With
	 * `on` the form depends on the model: the API's answer speaks then.) */
	if (s->thinking > 0 && !isnan(s->temperature) && s->temperature != 1)
		return why_fail(-EINVAL, why, whylen,
				"temperature must be default or 1 with a thinking budget");
	return 0;
}

bool settings_model_valid(const char *s, size_t len)
{
	if (len < 1 || len > SETTINGS_MODEL_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      (c != '\0' && strchr("._:@/-", c))))
			return false;
	}
	return true;
}

int settings_model_text(const char *text, size_t len, const char **id, size_t *idlen, char *why,
			size_t whylen)
{
	char shown[QUOTE_BUF];

	trim(&text, &len);
	*id = text;
	*idlen = len;
	if (settings_model_valid(text, len))
		return 0;
	quote(text, len, shown, sizeof shown);
	return why_fail(-EINVAL, why, whylen,
			"invalid model id '%s' (1-%d bytes of A-Z a-z 0-9 . _ : "
			"@ / -)",
			shown, SETTINGS_MODEL_MAX);
}

static cJSON *json_value(const struct settings *s, size_t k)
{
	int64_t i;
	double x;
	bool b;

	switch (table[k].type) {
	case SETTING_STRING:
		return cJSON_CreateString((const char *)s + field_off[k]);
	case SETTING_INT:
		get(s, k, &i, sizeof i);
		return cJSON_CreateNumber((double)i);
	case SETTING_USD:
	case SETTING_DOUBLE:
		get(s, k, &x, sizeof x);
		return isnan(x) ? cJSON_CreateNull() : cJSON_CreateNumber(x);
	case SETTING_BOOL:
		get(s, k, &b, sizeof b);
		return cJSON_CreateBool(b);
	case SETTING_THINKING:
		get(s, k, &i, sizeof i);
		if (i > 0)
			return cJSON_CreateNumber((double)i);
		return cJSON_CreateString(i ? "on" : "off");
	case SETTING_EFFORT:
	case SETTING_PRUNE: {
		char w[16];
		settings_format(s, &table[k], w, sizeof w);
		return cJSON_CreateString(w);
	}
	case SETTING_TEXT:
		return cJSON_CreateString((const char *)s + field_off[k]);
	case SETTING_TOOLS: {
		unsigned t;
		cJSON *arr = cJSON_CreateArray();
		get(s, k, &t, sizeof t);
		for (size_t ti = 0; arr && ti < TOOL_COUNT; ti++)
			if ((t & (1u << ti)) &&
			    !cJSON_AddItemToArray(arr, cJSON_CreateString(tool_words[ti]))) {
				cJSON_Delete(arr);
				return NULL;
			}
		return arr;
	}
	}
	return NULL;
}

int settings_to_json(const struct settings *s, struct cJSON *obj)
{
	assert(cJSON_IsObject(obj));
	for (size_t k = 0; k < K_COUNT; k++) {
		cJSON *item = json_value(s, k);
		if (!item || !cJSON_AddItemToObject(obj, table[k].key, item)) {
			cJSON_Delete(item);
			return -ENOMEM;
		}
	}
	return 0;
}

/* A tools value in JSON: an array of names, or the text form as a string. */
static int set_tools_json(struct settings *s, size_t k, const cJSON *it, char *why, size_t whylen)
{
	unsigned bits = 0;
	const cJSON *e;

	if (cJSON_IsString(it))
		return set_tools(s, k, it->valuestring, strlen(it->valuestring), why, whylen);
	if (!cJSON_IsArray(it))
		return why_fail(-EINVAL, why, whylen, "%s: expected an array of tool names",
				table[k].key);
	cJSON_ArrayForEach(e, it)
	{
		struct settings one;
		if (!cJSON_IsString(e))
			return why_fail(-EINVAL, why, whylen, "%s: expected an array of tool names",
					table[k].key);
		if (!*e->valuestring ||
		    set_tools(&one, k, e->valuestring, strlen(e->valuestring), why, whylen) < 0)
			return *e->valuestring ? -EINVAL
					       : why_fail(-EINVAL, why, whylen,
							  "%s: an empty tool name", table[k].key);
		bits |= one.tools;
	}
	put(s, k, &bits, sizeof bits);
	return 0;
}

/* Sets key k from a JSON value: the type must match, no strings for numbers. */
static int set_json(struct settings *s, size_t k, const cJSON *it, char *why, size_t whylen)
{
	const char *key = table[k].key;
	char shown[QUOTE_BUF] = "";
	double x = it->valuedouble;

	if (cJSON_IsNumber(it))
		format_double(x, shown, sizeof shown);
	switch (table[k].type) {
	case SETTING_STRING:
		if (!cJSON_IsString(it))
			return why_fail(-EINVAL, why, whylen, "%s: expected a string", key);
		return set_text(s, k, it->valuestring, strlen(it->valuestring), why, whylen);
	case SETTING_INT:
		if (!cJSON_IsNumber(it))
			return why_fail(-EINVAL, why, whylen, "%s: expected a whole number", key);
		/* 1e300 is out of range rather than "not whole": check that first. */
		if (x >= table[k].min && x <= table[k].max && !is_whole(x))
			return why_fail(-EINVAL, why, whylen, "%s: '%s' is not a whole number", key,
					shown);
		return put_int(s, k, x, shown, why, whylen);
	case SETTING_USD:
	case SETTING_DOUBLE:
		if (cJSON_IsNull(it))
			return put_double(s, k, (double)NAN, "null", why, whylen);
		if (!cJSON_IsNumber(it))
			return why_fail(-EINVAL, why, whylen, "%s: expected a number or null", key);
		return put_double(s, k, x, shown, why, whylen);
	case SETTING_BOOL:
		if (!cJSON_IsBool(it))
			return why_fail(-EINVAL, why, whylen, "%s: expected true or false", key);
		bool b = cJSON_IsTrue(it);
		put(s, k, &b, sizeof b);
		return 0;
	case SETTING_THINKING:
		if (cJSON_IsString(it))
			return set_text(s, k, it->valuestring, strlen(it->valuestring), why,
					whylen);
		if (!cJSON_IsNumber(it))
			return why_fail(-EINVAL, why, whylen,
					"%s: expected \"off\", \"on\" or a number", key);
		if (x >= table[k].min && x <= table[k].max && !is_whole(x))
			return why_fail(-EINVAL, why, whylen, "%s: '%s' is not a whole number", key,
					shown);
		return put_int(s, k, x, shown, why, whylen);
	case SETTING_EFFORT:
	case SETTING_PRUNE:
	case SETTING_TEXT:
		if (!cJSON_IsString(it))
			return why_fail(-EINVAL, why, whylen, "%s: expected a string", key);
		return set_text(s, k, it->valuestring, strlen(it->valuestring), why, whylen);
	case SETTING_TOOLS:
		return set_tools_json(s, k, it, why, whylen);
	}
	return -EINVAL;
}

int settings_from_json(struct settings *s, const struct cJSON *obj, char *why, size_t whylen)
{
	struct settings tmp = *s;
	char shown[QUOTE_BUF];

	if (!cJSON_IsObject(obj))
		return why_fail(-EINVAL, why, whylen, "settings must be a JSON object");
	for (const cJSON *it = obj->child; it; it = it->next) {
		const char *name = it->string ? it->string : "";
		int k = find_key(name, strlen(name));
		if (k < 0) {
			quote(name, strlen(name), shown, sizeof shown);
			return why_fail(-EINVAL, why, whylen, "unknown key '%s'", shown);
		}
		int r = set_json(&tmp, (size_t)k, it, why, whylen);
		if (r < 0)
			return r;
	}
	*s = tmp;
	return 0;
}
