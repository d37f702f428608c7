/* test_settings.c — the settings table, its text form and its JSON form. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cJSON.h>

#include "check.h"
#include "mcpfs/settings.h"

static const char default_text[] = "model = claude-sonnet-5-5\n"
				   "max_tokens = 4096\n"
				   "temperature = default\n"
				   "budget_tokens = 100000\n"
				   "max_input_bytes = 1048576\n"
				   "max_retries = 2\n"
				   "connect_timeout = 10\n"
				   "idle_timeout = 90\n"
				   "thinking = off\n"
				   "effort = default\n"
				   "prompt_cache = on\n"
				   "tools = none\n"
				   "prune = summarize\n"
				   "summary_model = default\n"
				   "summary_prompt = default\n"
				   "spend_limit_usd = none\n"
				   "response_cache = off\n";

/* Field by field, NaN equal to NaN. */
static bool same(const struct settings *a, const struct settings *b)
{
	bool t =
	    (isnan(a->temperature) && isnan(b->temperature)) || a->temperature == b->temperature;
	bool l = (isnan(a->spend_limit_usd) && isnan(b->spend_limit_usd)) ||
		 a->spend_limit_usd == b->spend_limit_usd;
	return t && l && strcmp(a->model, b->model) == 0 && a->max_tokens == b->max_tokens &&
	       a->budget_tokens == b->budget_tokens && a->max_input_bytes == b->max_input_bytes &&
	       a->max_retries == b->max_retries && a->connect_timeout == b->connect_timeout &&
	       a->idle_timeout == b->idle_timeout && a->thinking == b->thinking &&
	       a->prompt_cache == b->prompt_cache;
}

static const struct setting_def *def_of(const char *key)
{
	size_t n;
	const struct setting_def *t = settings_table(&n);
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].key, key) == 0)
			return &t[i];
	return NULL;
}

static void test_table(void)
{
	static const char *const order[] = {"model",	       "max_tokens",	  "temperature",
					    "budget_tokens",   "max_input_bytes", "max_retries",
					    "connect_timeout", "idle_timeout",	  "thinking",
					    "effort",	       "prompt_cache",	  "tools",
					    "prune",	       "summary_model",	  "summary_prompt",
					    "spend_limit_usd", "response_cache"};
	size_t n;
	const struct setting_def *t = settings_table(&n);
	struct settings s, d;

	CHECK_EQ_INT(n, 17);
	settings_init(&d);
	for (size_t i = 0; i < n && i < 17; i++) {
		char v[256];
		CHECK_EQ_STR(t[i].key, order[i]);
		CHECK(t[i].help && t[i].help[0]);
		CHECK(t[i].min <= t[i].max);
		/* The text default is what settings_init gives. */
		settings_init(&s);
		s.max_tokens = 7;
		CHECK_EQ_INT(settings_set(&s, t[i].key, t[i].defval, NULL, 0), 0);
		settings_format(&s, &t[i], v, sizeof v);
		char dv[256];
		settings_format(&d, &t[i], dv, sizeof dv);
		CHECK_EQ_STR(v, dv);
	}
	CHECK_EQ_STR(d.model, SETTINGS_DEFAULT_MODEL);
	CHECK_EQ_INT(d.max_tokens, 4096);
	CHECK(isnan(d.temperature));
	CHECK_EQ_INT(d.budget_tokens, 100000);
	CHECK_EQ_INT(d.max_input_bytes, 1 << 20);
	CHECK_EQ_INT(d.max_retries, 2);
	CHECK_EQ_INT(d.connect_timeout, 10);
	CHECK_EQ_INT(d.idle_timeout, 90);
	CHECK_EQ_INT(d.thinking, 0);
	CHECK(d.prompt_cache);
	CHECK_EQ_INT(settings_check(&d, NULL, 0), 0);
}

struct set_case {
	const char *key;
	const char *value;
	const char *want; /* the value formatted after success; NULL: -EINVAL */
};

#define M128                                                                                       \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"                         \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct set_case set_cases[] = {
    {"model", "claude-opus-4-1", "claude-opus-4-1"},
    {"model", "a", "a"},
    {"model", M128, M128},
    {"model", M128 "a", NULL},
    {"model", "", NULL},
    {"model", "a b", NULL},
    {"model", "vendor/m:1@v2.0_x", "vendor/m:1@v2.0_x"},
    {"model", "mod\xC3\xA9l", NULL},
    {"model", "  spaced\n", "spaced"},
    {"max_tokens", "1", "1"},
    {"max_tokens", "0", NULL},
    {"max_tokens", "-1", NULL},
    {"max_tokens", "1000000", "1000000"},
    {"max_tokens", "1000001", NULL},
    {"max_tokens", "99999999999999999999999", NULL},
    {"max_tokens", "12abc", NULL},
    {"max_tokens", "1.5", NULL},
    {"max_tokens", "1e3", NULL},
    {"max_tokens", "0x10", NULL},
    {"max_tokens", "", NULL},
    {"max_tokens", "-", NULL},
    {"max_tokens", "1 2", NULL},
    {"max_tokens", " 4096 ", "4096"},
    {"max_tokens", "+7", "7"},
    {"max_tokens", "0000000000000000000000000007", "7"},
    {"temperature", "0", "0"},
    {"temperature", "1", "1"},
    {"temperature", "0.7", "0.7"},
    {"temperature", "1.0", "1"},
    {"temperature", ".5", "0.5"},
    {"temperature", "1e-1", "0.1"},
    {"temperature", "-0", "0"},
    {"temperature", "1.0001", NULL},
    {"temperature", "-0.1", NULL},
    {"temperature", "7", NULL},
    {"temperature", "1e999", NULL},
    {"temperature", "nan", NULL},
    {"temperature", "inf", NULL},
    {"temperature", "0x0.8p0", NULL},
    {"temperature", "0.5x", NULL},
    {"temperature", "e", NULL},
    {"temperature", "default", "default"},
    {"temperature", "Default", "default"},
    {"temperature", "", "default"},
    {"budget_tokens", "1", "1"},
    {"budget_tokens", "0", NULL},
    {"budget_tokens", "10000000", "10000000"},
    {"budget_tokens", "10000001", NULL},
    {"max_input_bytes", "1", "1"},
    {"max_input_bytes", "0", NULL},
    {"max_input_bytes", "16777216", "16777216"},
    {"max_input_bytes", "16777217", NULL},
    {"max_retries", "0", "0"},
    {"max_retries", "-1", NULL},
    {"max_retries", "10", "10"},
    {"max_retries", "11", NULL},
    {"connect_timeout", "1", "1"},
    {"connect_timeout", "0", NULL},
    {"connect_timeout", "300", "300"},
    {"connect_timeout", "301", NULL},
    {"idle_timeout", "1", "1"},
    {"idle_timeout", "0", NULL},
    {"idle_timeout", "3600", "3600"},
    {"idle_timeout", "3601", NULL},
    {"thinking", "0", "off"},
    {"thinking", "off", "off"},
    {"thinking", "ON", "on"},
    {"thinking", "maybe", NULL},
    {"effort", "high", "high"},
    {"effort", "Max", "max"},
    {"effort", "xhigh", "xhigh"},
    {"effort", "default", "default"},
    {"effort", "extreme", NULL},
    {"effort", "", NULL},
    {"thinking", "-1", NULL},
    {"thinking", "1", NULL},
    {"thinking", "1023", NULL},
    {"thinking", "1024", "1024"},
    {"thinking", "999999", "999999"},
    {"thinking", "1000000", NULL},
    {"prompt_cache", "off", "off"},
    {"prompt_cache", "on", "on"},
    {"prompt_cache", "false", "off"},
    {"prompt_cache", "true", "on"},
    {"prompt_cache", "no", "off"},
    {"prompt_cache", "yes", "on"},
    {"prompt_cache", "0", "off"},
    {"prompt_cache", "1", "on"},
    {"prompt_cache", "OFF", "off"},
    {"prompt_cache", "2", NULL},
    {"prompt_cache", "", NULL},
    {"prompt_cache", "maybe", NULL},
    {"foo", "1", NULL},
    {"", "1", NULL},
    {"Max_tokens", "1", NULL},
};

/* Every case through settings_set, then through settings_parse as a line. */
static void test_set(void)
{
	for (size_t i = 0; i < sizeof set_cases / sizeof set_cases[0]; i++) {
		const struct set_case *c = &set_cases[i];
		const struct setting_def *d = def_of(c->key);
		struct settings s, before, p;
		char why[256] = "", v[256], text[512];

		settings_init(&s);
		s.prompt_cache = false; /* so a "set to on" is visible */
		before = s;
		int r = settings_set(&s, c->key, c->value, why, sizeof why);
		CHECK_EQ_INT(r, c->want ? 0 : -EINVAL);
		if (c->want) {
			settings_format(&s, d, v, sizeof v);
			CHECK_EQ_STR(v, c->want);
		} else {
			CHECK(same(&s, &before));
			/* The why names the key (or the unknown key) it is about. */
			CHECK(strstr(why, c->key) != NULL);
		}
		if (r != (c->want ? 0 : -EINVAL))
			fprintf(stderr, "case %s = '%s': %s\n", c->key, c->value, why);

		p = before;
		snprintf(text, sizeof text, "%s = %s\n", c->key, c->value);
		r = settings_parse(&p, text, strlen(text), why, sizeof why);
		CHECK_EQ_INT(r, c->want ? 0 : -EINVAL);
		CHECK(c->want ? same(&p, &s) : same(&p, &before));
		if (!c->want)
			CHECK(strncmp(why, "line 1: ", 8) == 0);
	}
}

struct why_case {
	const char *text;
	const char *why;
	size_t len; /* 0: strlen(text) */
};

static const struct why_case why_cases[] = {
    {"max_tokens = 5\n# x\ntemperature = 7\n", "line 3: temperature: '7' is out of range 0-1"},
    {"foo = 1", "line 1: unknown key 'foo'"},
    {"\n\nmax_tokens = 12abc\r\n", "line 3: max_tokens: '12abc' is not a whole number"},
    {"max_tokens = 0", "line 1: max_tokens: '0' is out of range 1-1000000"},
    {"max_tokens = 5 # five", "line 1: max_tokens: '5 # five' is not a whole number"},
    {"temperature = warm", "line 1: temperature: 'warm' is not a number"},
    {"thinking = 100", "line 1: thinking: '100' must be off, on, or at least 1024"},
    {"prompt_cache = maybe",
     "line 1: prompt_cache: 'maybe' is not on/off (or true/false, yes/no, 1/0)"},
    {"model = a b",
     "line 1: model: 'a b' is not a model id (1-128 bytes of A-Z a-z 0-9 . _ : @ / -)"},
    {"max_tokens 5", "line 1: expected 'key = value', got 'max_tokens 5'"},
    {" = 5", "line 1: no key before '='"},
    {"fo\x01o = 1", "line 1: unknown key 'fo\\x01o'"},
    {"k\xFF = 1", "line 1: unknown key 'k\\xff'"},
    {"caf\xC3\xA9 = 1", "line 1: unknown key 'caf\xC3\xA9'"},
    {"max_tokens = 1\0002", "line 1: max_tokens: '1\\x002' is not a whole number", 16},
    {"model = 0123456789012345678901234567890123456789 xyz",
     "line 1: model: '0123456789012345678901234567890123456789...' is not a model id "
     "(1-128 bytes of A-Z a-z 0-9 . _ : @ / -)"},
};

static void test_why(void)
{
	for (size_t i = 0; i < sizeof why_cases / sizeof why_cases[0]; i++) {
		const struct why_case *c = &why_cases[i];
		struct settings s;
		char why[256] = "";
		size_t len = c->len ? c->len : strlen(c->text);
		settings_init(&s);
		CHECK_EQ_INT(settings_parse(&s, c->text, len, why, sizeof why), -EINVAL);
		CHECK_EQ_STR(why, c->why);
	}
	/* A small why buffer is cut, not overrun; a NULL one is allowed. */
	struct settings s;
	char tiny[8];
	settings_init(&s);
	CHECK_EQ_INT(settings_parse(&s, "foo = 1", 7, tiny, sizeof tiny), -EINVAL);
	CHECK_EQ_STR(tiny, "line 1:");
	CHECK_EQ_INT(settings_parse(&s, "foo = 1", 7, NULL, 0), -EINVAL);
	CHECK_EQ_INT(settings_set(&s, "foo", "1", NULL, 0), -EINVAL);
}

static void test_parse(void)
{
	struct settings s, d, orig;
	char why[256];
	int r;

	settings_init(&d);
	/* Comments, blank lines, CRLF, white space, no final newline. */
	static const char crlf[] = "# a comment\r\n\r\n  max_tokens=5  \r\n\t# indented\r\n"
				   "   \r\ntemperature\t=\t0.3\r\nprompt_cache = off";
	s = d;
	CHECK_EQ_INT(settings_parse(&s, crlf, strlen(crlf), why, sizeof why), 0);
	CHECK_EQ_INT(s.max_tokens, 5);
	CHECK(s.temperature == 0.3);
	CHECK(!s.prompt_cache);
	CHECK_EQ_INT(s.budget_tokens, 100000); /* keys not named keep their value */

	/* Empty and comment-only texts change nothing. */
	s = d;
	CHECK_EQ_INT(settings_parse(&s, "", 0, why, sizeof why), 0);
	CHECK_EQ_INT(settings_parse(&s, "\n\n# x\n", 6, why, sizeof why), 0);
	CHECK(same(&s, &d));

	/* Duplicates: the last wins. */
	static const char dup[] = "max_tokens = 5\nmax_tokens = 6\n";
	CHECK_EQ_INT(settings_parse(&s, dup, strlen(dup), why, sizeof why), 0);
	CHECK_EQ_INT(s.max_tokens, 6);

	/* A byte order mark is skipped. */
	static const char bom[] = "\xEF\xBB\xBFmax_retries = 3\n";
	CHECK_EQ_INT(settings_parse(&s, bom, strlen(bom), why, sizeof why), 0);
	CHECK_EQ_INT(s.max_retries, 3);

	/* All or nothing: a bad last line leaves even the good lines unapplied. */
	static const char partial[] = "max_tokens = 100\nmodel = x\nidle_timeout = 0\n";
	orig = s;
	CHECK_EQ_INT(settings_parse(&s, partial, strlen(partial), why, sizeof why), -EINVAL);
	CHECK(same(&s, &orig));
	CHECK_EQ_STR(why, "line 3: idle_timeout: '0' is out of range 1-3600");

	/* Over the size limit: EFBIG, nothing read. */
	size_t big = SETTINGS_TEXT_MAX + 1;
	char *text = malloc(big);
	CHECK(text != NULL);
	if (text) {
		memset(text, '\n', big);
		r = settings_parse(&s, text, big, why, sizeof why);
		CHECK_EQ_INT(r, -EFBIG);
		CHECK(same(&s, &orig));
		CHECK_EQ_INT(settings_parse(&s, text, big - 1, why, sizeof why), 0);
		free(text);
	}
}

static void test_render(void)
{
	struct settings s, t;
	struct buf b;
	char why[256];

	settings_init(&s);
	buf_init(&b, 4096);
	CHECK_EQ_INT(settings_render(&s, &b), 0);
	CHECK_EQ_STR(b.data, default_text);

	/* Round trips: render, parse over defaults, same settings. */
	static const double temps[] = {0.7, 0.1 + 0.2, 1e-7, 0.123456789012345, 1, 0};
	for (size_t i = 0; i < sizeof temps / sizeof temps[0]; i++) {
		settings_init(&s);
		snprintf(s.model, sizeof s.model, "m-%zu", i);
		s.max_tokens = 1000 + (int64_t)i;
		s.temperature = temps[i];
		s.budget_tokens = 12345;
		s.max_input_bytes = 99;
		s.max_retries = 10;
		s.connect_timeout = 300;
		s.idle_timeout = 1;
		s.thinking = i % 2 ? 0 : 1024;
		s.prompt_cache = i % 2;
		buf_reset(&b);
		CHECK_EQ_INT(settings_render(&s, &b), 0);
		settings_init(&t);
		CHECK_EQ_INT(settings_parse(&t, b.data, b.len, why, sizeof why), 0);
		CHECK(same(&s, &t));
	}
	settings_init(&s);
	s.temperature = 0.7;
	buf_reset(&b);
	CHECK_EQ_INT(settings_render(&s, &b), 0);
	CHECK(strstr(b.data, "\ntemperature = 0.7\n") != NULL);

	/* A buffer too small for the whole rendering is left as it was. */
	buf_done(&b);
	buf_init(&b, 100);
	CHECK_EQ_INT(buf_puts(&b, "keep"), 0);
	CHECK_EQ_INT(settings_render(&s, &b), -EFBIG);
	CHECK_EQ_INT(b.len, 4);
	CHECK_EQ_STR(b.data, "keep");
	buf_done(&b);
}

static void test_check(void)
{
	struct settings s;
	char why[256];

	settings_init(&s);
	s.thinking = 2048;
	CHECK_EQ_INT(settings_check(&s, why, sizeof why), 0);
	s.max_tokens = 2049;
	CHECK_EQ_INT(settings_check(&s, why, sizeof why), 0);
	s.max_tokens = 2048;
	CHECK_EQ_INT(settings_check(&s, why, sizeof why), -EINVAL);
	CHECK_EQ_STR(why, "thinking (2048) must be less than max_tokens (2048)");
	s.max_tokens = 4096;
	s.temperature = 1;
	CHECK_EQ_INT(settings_check(&s, why, sizeof why), 0);
	s.temperature = 0.5;
	CHECK_EQ_INT(settings_check(&s, why, sizeof why), -EINVAL);
	CHECK(strstr(why, "temperature") && strstr(why, "thinking"));
	s.thinking = 0;
	CHECK_EQ_INT(settings_check(&s, why, sizeof why), 0);

	/* Values set by code, not parsed, are held to the table too. */
	static const struct {
		size_t off;
		int64_t v;
		const char *why;
	} ints[] = {
	    {offsetof(struct settings, max_tokens), 0, "max_tokens: '0' is out of range 1-1000000"},
	    {offsetof(struct settings, thinking), 1000,
	     "thinking: '1000' must be off, on, or at least 1024"},
	    {offsetof(struct settings, idle_timeout), 3601,
	     "idle_timeout: '3601' is out of range 1-3600"},
	    {offsetof(struct settings, max_retries), -1, "max_retries: '-1' is out of range 0-10"},
	};
	for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
		settings_init(&s);
		memcpy((char *)&s + ints[i].off, &ints[i].v, sizeof ints[i].v);
		CHECK_EQ_INT(settings_check(&s, why, sizeof why), -EINVAL);
		CHECK_EQ_STR(why, ints[i].why);
	}
	settings_init(&s);
	s.temperature = 2;
	CHECK_EQ_INT(settings_check(&s, why, sizeof why), -EINVAL);
	settings_init(&s);
	strcpy(s.model, "bad model");
	CHECK_EQ_INT(settings_check(&s, why, sizeof why), -EINVAL);
	CHECK(strncmp(why, "model: ", 7) == 0);
	memset(s.model, 'a', sizeof s.model); /* not terminated */
	CHECK_EQ_INT(settings_check(&s, why, sizeof why), -EINVAL);
}

static void test_model_valid(void)
{
	static const struct {
		const char *id;
		bool ok;
	} cases[] = {
	    {"claude-sonnet-5-5", true},
	    {"claude-3-5-haiku@20241022", true},
	    {"us.anthropic.claude:0", true},
	    {"a/b_c.d", true},
	    {"x", true},
	    {M128, true},
	    {M128 "x", false},
	    {"", false},
	    {"a b", false},
	    {"a\n", false},
	    {"a\"b", false},
	    {"caf\xC3\xA9", false},
	    {"a#b", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK(settings_model_valid(cases[i].id, strlen(cases[i].id)) == cases[i].ok);
	CHECK(!settings_model_valid("a\0b", 3));
	CHECK(settings_model_valid("ab\n", 2)); /* only len bytes count */

	/* The text of a model file: white space around the id is not part of it. */
	const char *id;
	size_t n;
	char why[256];
	CHECK_EQ_INT(settings_model_text(" claude-x\r\n", 11, &id, &n, why, sizeof(why)), 0);
	CHECK(n == 8 && !memcmp(id, "claude-x", 8));
	CHECK_EQ_INT(settings_model_text("a b\n", 4, &id, &n, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "invalid model id 'a b'") != NULL);
	CHECK_EQ_INT(settings_model_text("\n", 1, &id, &n, why, sizeof(why)), -EINVAL);
	CHECK_EQ_INT(settings_model_text("caf\xc3(\n", 6, &id, &n, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "\\xc3") != NULL); /* not UTF-8: quoted as bytes */
}

static void test_json_out(void)
{
	struct settings s;
	cJSON *o = cJSON_CreateObject();

	settings_init(&s);
	CHECK_EQ_INT(settings_to_json(&s, o), 0);
	char *text = cJSON_PrintUnformatted(o);
	CHECK_EQ_STR(text, "{\"model\":\"claude-sonnet-5-5\",\"max_tokens\":4096,"
			   "\"temperature\":null,\"budget_tokens\":100000,"
			   "\"max_input_bytes\":1048576,\"max_retries\":2,\"connect_timeout\":10,"
			   "\"idle_timeout\":90,\"thinking\":\"off\",\"effort\":\"default\","
			   "\"prompt_cache\":true,\"tools\":[],\"prune\":\"summarize\",\"summary_"
			   "model\":\"\",\"summary_prompt\":\"\",\"spend_limit_usd\":null,"
			   "\"response_cache\":false}");
	free(text);
	cJSON_Delete(o);

	s.temperature = 0.7;
	s.prompt_cache = false;
	o = cJSON_CreateObject();
	CHECK_EQ_INT(settings_to_json(&s, o), 0);
	CHECK(cJSON_GetObjectItem(o, "temperature")->valuedouble == 0.7);
	CHECK(cJSON_IsFalse(cJSON_GetObjectItem(o, "prompt_cache")));
	/* And back. */
	struct settings t;
	char why[256];
	settings_init(&t);
	CHECK_EQ_INT(settings_from_json(&t, o, why, sizeof why), 0);
	CHECK(same(&s, &t));
	cJSON_Delete(o);
}

struct json_case {
	const char *json;
	const char *why; /* NULL: accepted */
};

static const struct json_case json_cases[] = {
    {"{}", NULL},
    {"{\"max_tokens\":100}", NULL},
    {"{\"temperature\":null}", NULL},
    {"{\"temperature\":0.5,\"prompt_cache\":false,\"model\":\"m\"}", NULL},
    {"{\"max_tokens\":1,\"max_tokens\":2}", NULL},
    {"{\"max_tokens\":\"100\"}", "max_tokens: expected a whole number"},
    {"{\"max_tokens\":100.5}", "max_tokens: '100.5' is not a whole number"},
    {"{\"max_tokens\":1e300}", "max_tokens: '1e+300' is out of range 1-1000000"},
    {"{\"max_tokens\":0}", "max_tokens: '0' is out of range 1-1000000"},
    {"{\"max_tokens\":null}", "max_tokens: expected a whole number"},
    {"{\"temperature\":\"0.5\"}", "temperature: expected a number or null"},
    {"{\"temperature\":1.5}", "temperature: '1.5' is out of range 0-1"},
    {"{\"prompt_cache\":1}", "prompt_cache: expected true or false"},
    {"{\"model\":5}", "model: expected a string"},
    {"{\"model\":\"a b\"}",
     "model: 'a b' is not a model id (1-128 bytes of A-Z a-z 0-9 . _ : @ / -)"},
    {"{\"thinking\":10}", "thinking: '10' must be off, on, or at least 1024"},
    {"{\"foo\":1}", "unknown key 'foo'"},
    {"{\"max_tokens\":100,\"foo\":1}", "unknown key 'foo'"},
    {"[]", "settings must be a JSON object"},
    {"5", "settings must be a JSON object"},
};

static void test_json_in(void)
{
	for (size_t i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
		const struct json_case *c = &json_cases[i];
		struct settings s, before;
		char why[256] = "";
		cJSON *o = cJSON_Parse(c->json);

		CHECK(o != NULL);
		if (!o)
			continue;
		settings_init(&s);
		before = s;
		int r = settings_from_json(&s, o, why, sizeof why);
		CHECK_EQ_INT(r, c->why ? -EINVAL : 0);
		if (c->why) {
			CHECK_EQ_STR(why, c->why);
			CHECK(same(&s, &before)); /* all or nothing */
		}
		cJSON_Delete(o);
	}
	/* Values land where they should. */
	struct settings s;
	char why[256];
	cJSON *o = cJSON_Parse("{\"max_tokens\":1,\"max_tokens\":2,\"temperature\":0.25,"
			       "\"model\":\"m\",\"prompt_cache\":false}");
	settings_init(&s);
	s.temperature = 0.5;
	CHECK_EQ_INT(settings_from_json(&s, o, why, sizeof why), 0);
	CHECK_EQ_INT(s.max_tokens, 2);
	CHECK(s.temperature == 0.25);
	CHECK_EQ_STR(s.model, "m");
	CHECK(!s.prompt_cache);
	cJSON_Delete(o);
	o = cJSON_Parse("{\"temperature\":null}");
	CHECK_EQ_INT(settings_from_json(&s, o, why, sizeof why), 0);
	CHECK(isnan(s.temperature));
	cJSON_Delete(o);
}

int main(void)
{
	test_table();
	test_set();
	test_why();
	test_parse();
	test_render();
	test_check();
	test_model_valid();
	test_json_out();
	test_json_in();
	return check_report();
}
