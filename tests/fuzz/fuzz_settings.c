/* fuzz_settings.c — config text and JSON (src/core/settings.c).
 *
 * The input is a config text for settings_parse and, when it parses as JSON,
 * an object for settings_from_json.  Checked:
 *  - the result is 0, -EINVAL or (past SETTINGS_TEXT_MAX) -EFBIG; a failure
 *    leaves the struct as it was and explains itself in a printable, UTF-8,
 *    NUL-terminated why, and never writes past a why buffer of any size;
 *  - what is accepted is within the table's bounds, and settings_check refuses
 *    it only for its cross-key rules;
 *  - settings_render then settings_parse gives an identical struct, and
 *    rendering that gives the same text;
 *  - settings_to_json then settings_from_json gives an identical struct, also
 *    through the printed JSON text (the journal's path), where a temperature may
 *    move by cJSON's printing tolerance and nothing else may change.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mcpfs/settings.h"
#include "mcpfs/utf8.h"
#include "fuzz.h"

#define WHY 256 /* what the callers give */

static bool same_double(double a, double b, bool near)
{
	double d = a - b;

	if (isnan(a) || isnan(b))
		return isnan(a) && isnan(b);
	if (!near)
		return a == b;
	return (d < 0 ? -d : d) <= (b < 0 ? -b : b) * 2 * DBL_EPSILON;
}

static bool settings_equal(const struct settings *a, const struct settings *b, bool near)
{
	return strcmp(a->model, b->model) == 0 && a->max_tokens == b->max_tokens &&
	       same_double(a->temperature, b->temperature, near) &&
	       a->budget_tokens == b->budget_tokens && a->max_input_bytes == b->max_input_bytes &&
	       a->max_retries == b->max_retries && a->connect_timeout == b->connect_timeout &&
	       a->idle_timeout == b->idle_timeout && a->thinking == b->thinking &&
	       a->effort == b->effort && a->prompt_cache == b->prompt_cache;
}

static void check_why(const char *why, size_t whylen)
{
	size_t n = strnlen(why, whylen);

	FUZZ_CHECK(n > 0 && n < whylen);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK((unsigned char)why[i] >= 0x20 && why[i] != 0x7F);
	FUZZ_CHECK(utf8_valid(why, n));
}

static bool int_in(int64_t v, int64_t lo, int64_t hi)
{
	return v >= lo && v <= hi;
}

/* Every key within its bounds (settings.h and the table). */
static void check_bounds(const struct settings *s)
{
	FUZZ_CHECK(memchr(s->model, '\0', sizeof(s->model)));
	FUZZ_CHECK(settings_model_valid(s->model, strlen(s->model)));
	FUZZ_CHECK(int_in(s->max_tokens, 1, 1000000));
	FUZZ_CHECK(isnan(s->temperature) || (s->temperature >= 0 && s->temperature <= 1));
	FUZZ_CHECK(int_in(s->budget_tokens, 1, 10000000));
	FUZZ_CHECK(int_in(s->max_input_bytes, 1, 16777216));
	FUZZ_CHECK(int_in(s->max_retries, 0, 10));
	FUZZ_CHECK(int_in(s->connect_timeout, 1, 300));
	FUZZ_CHECK(int_in(s->idle_timeout, 1, 3600));
	FUZZ_CHECK(s->thinking == SETTINGS_THINKING_OFF || s->thinking == SETTINGS_THINKING_ON ||
		   int_in(s->thinking, 1024, 999999));
	FUZZ_CHECK(int_in(s->effort, EFFORT_DEFAULT, EFFORT_MAX));
}

/* settings_check fails only for its cross-key rules. */
static void check_check(const struct settings *s)
{
	char why[WHY];
	bool cross = s->thinking > 0 && (s->thinking >= s->max_tokens ||
					 (!isnan(s->temperature) && s->temperature != 1));
	int r = settings_check(s, why, sizeof(why));

	FUZZ_CHECK(r == (cross ? -EINVAL : 0));
	if (r < 0)
		check_why(why, sizeof(why));
}

static void check_roundtrips(const struct settings *s)
{
	struct settings back;
	struct buf text, again;
	char why[WHY];

	/* text */
	buf_init(&text, SETTINGS_TEXT_MAX);
	buf_init(&again, SETTINGS_TEXT_MAX);
	FUZZ_CHECK(settings_render(s, &text) == 0);
	settings_init(&back);
	if (settings_parse(&back, text.data, text.len, why, sizeof(why)) < 0) {
		fprintf(stderr, "rendered config does not parse: %s\n%s", why, text.data);
		FUZZ_CHECK(!"rendered config parses");
	}
	FUZZ_CHECK(settings_equal(&back, s, false));
	FUZZ_CHECK(settings_render(&back, &again) == 0);
	FUZZ_CHECK(again.len == text.len && memcmp(again.data, text.data, text.len) == 0);
	buf_done(&text);
	buf_done(&again);

	/* JSON, in memory */
	cJSON *obj = cJSON_CreateObject();
	FUZZ_ALLOC(obj);
	FUZZ_CHECK(settings_to_json(s, obj) == 0);
	settings_init(&back);
	FUZZ_CHECK(settings_from_json(&back, obj, why, sizeof(why)) == 0);
	FUZZ_CHECK(settings_equal(&back, s, false));

	/* JSON, through its text */
	char *printed = cJSON_PrintUnformatted(obj);
	FUZZ_ALLOC(printed);
	cJSON *obj2 = cJSON_Parse(printed);
	FUZZ_CHECK(obj2 != NULL);
	settings_init(&back);
	FUZZ_CHECK(settings_from_json(&back, obj2, why, sizeof(why)) == 0);
	FUZZ_CHECK(settings_equal(&back, s, true));
	cJSON_Delete(obj2);
	cJSON_free(printed);
	cJSON_Delete(obj);
}

static void check_accepted(const struct settings *s)
{
	check_bounds(s);
	check_check(s);
	check_roundtrips(s);
}

static void check_text(const char *text, size_t len)
{
	struct settings s, def;
	char why[WHY];
	int r;

	settings_init(&def);
	s = def;
	r = settings_parse(&s, text, len, why, sizeof(why));
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -EFBIG);
	FUZZ_CHECK((r == -EFBIG) == (len > SETTINGS_TEXT_MAX));
	if (r < 0) {
		FUZZ_CHECK(settings_equal(&s, &def, false));
		check_why(why, sizeof(why));
	} else {
		check_accepted(&s);
	}

	/* A why buffer of any size is written within its bounds (a heap buffer of
	 * exactly that size, for the sanitizers). */
	size_t whylen = len % 24;
	char *small = malloc(whylen ? whylen : 1);
	FUZZ_ALLOC(small);
	s = def;
	FUZZ_CHECK(settings_parse(&s, text, len, whylen ? small : NULL, whylen) == r);
	if (r < 0 && whylen)
		FUZZ_CHECK(memchr(small, '\0', whylen));
	free(small);
}

static void check_json(const char *text, size_t len)
{
	cJSON *obj = cJSON_ParseWithLength(text, len);
	struct settings s, def;
	char why[WHY];
	int r;

	if (!obj)
		return;
	settings_init(&def);
	s = def;
	r = settings_from_json(&s, obj, why, sizeof(why));
	FUZZ_CHECK(r == 0 || r == -EINVAL);
	if (!cJSON_IsObject(obj))
		FUZZ_CHECK(r == -EINVAL);
	if (r < 0) {
		FUZZ_CHECK(settings_equal(&s, &def, false));
		check_why(why, sizeof(why));
	} else {
		check_accepted(&s);
	}
	cJSON_Delete(obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_text((const char *)data, size);
	check_json((const char *)data, size);
	return 0;
}
