/* test_models.c — models.c: ModelInfo parsing, the shaping table of CONTRACT §8,
 * the cache's states, pages, rendering, advice and file form; and the request
 * JSON the shapes give (wire_request.c). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mcpfs/models.h"
#include "mcpfs/settings.h"
#include "mcpfs/wire.h"

#define DAY MODELS_TTL_MS

/* A ModelInfo in the SDKs' shape. */
static char *info(const char *id, bool adaptive, bool enabled, const char *effort_levels,
		  const char *extra)
{
	static char buf[4096];
	char eff[512] = "";
	const char *lv[] = {"low", "medium", "high", "xhigh", "max"};
	size_t o = 0;
	for (int i = 0; i < 5; i++)
		o += (size_t)snprintf(eff + o, sizeof(eff) - o, "\"%s\":{\"supported\":%s},", lv[i],
				      strstr(effort_levels, lv[i]) ? "true" : "false");
	snprintf(buf, sizeof(buf),
		 "{\"type\":\"model\",\"id\":\"%s\",\"display_name\":\"Name of %s\","
		 "\"created_at\":\"2026-01-01T00:00:00Z\",\"max_input_tokens\":200000,"
		 "\"max_tokens\":64000,\"capabilities\":{\"effort\":{%s\"supported\":%s},"
		 "\"image_input\":{\"supported\":true},\"pdf_input\":{\"supported\":false},"
		 "\"structured_outputs\":{\"supported\":true},\"thinking\":{\"supported\":%s,"
		 "\"types\":{\"adaptive\":{\"supported\":%s},\"enabled\":{\"supported\":%s}}}}%s}",
		 id, id, eff, effort_levels[0] ? "true" : "false",
		 adaptive || enabled ? "true" : "false", adaptive ? "true" : "false",
		 enabled ? "true" : "false", extra);
	return buf;
}

static void test_parse(void)
{
	struct model_caps c;
	const char *j = info("claude-sonnet-5-5", true, false, "low medium high max",
			     ",\"line\":\"claude-sonnet\",\"lifecycle\":\"deprecated\","
			     "\"retires_at\":\"2027-01-05T00:00:00Z\"");
	CHECK_EQ_INT(model_caps_parse(j, strlen(j), &c), 0);
	CHECK_EQ_STR(c.id, "claude-sonnet-5-5");
	CHECK_EQ_STR(c.display_name, "Name of claude-sonnet-5-5");
	CHECK_EQ_STR(c.line, "claude-sonnet");
	CHECK_EQ_INT(c.lifecycle, MODEL_DEPRECATED);
	CHECK_EQ_STR(c.retires_at, "2027-01-05T00:00:00Z");
	CHECK(c.thinking_adaptive && !c.thinking_enabled && c.effort);
	CHECK_EQ_INT(c.effort_levels,
		     MODEL_EFFORT_LOW | MODEL_EFFORT_MEDIUM | MODEL_EFFORT_HIGH | MODEL_EFFORT_MAX);
	CHECK(c.image_input && !c.pdf_input && c.structured_outputs);
	CHECK_EQ_INT(c.max_input_tokens, 200000);
	/* lifecycle as an object */
	j = "{\"id\":\"m\",\"lifecycle\":{\"status\":\"retired\",\"retires_at\":\"2026-02-19\"}}";
	CHECK_EQ_INT(model_caps_parse(j, strlen(j), &c), 0);
	CHECK_EQ_INT(c.lifecycle, MODEL_RETIRED);
	CHECK_EQ_STR(c.retires_at, "2026-02-19");
	CHECK_EQ_INT(c.max_input_tokens, -1);
	CHECK(!c.thinking_adaptive && !c.thinking_enabled && !c.effort);
	/* "capabilities": null (the SDK's Optional): nothing supported */
	j = "{\"id\":\"m\",\"capabilities\":null,\"max_input_tokens\":null}";
	CHECK_EQ_INT(model_caps_parse(j, strlen(j), &c), 0);
	CHECK(!c.thinking_adaptive && !c.effort && c.lifecycle == MODEL_ACTIVE);
	/* not a ModelInfo */
	const char *bad[] = {
	    "", "[]", "{}", "{\"id\":3}", "{\"id\":\"a b\"}", "{\"id\":\"\"}", "{\"id\":\"m\""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_EQ_INT(model_caps_parse(bad[i], strlen(bad[i]), &c), -EINVAL);
	/* thinking.supported false hides the types */
	j = "{\"id\":\"m\",\"capabilities\":{\"thinking\":{\"supported\":false,\"types\":"
	    "{\"adaptive\":{\"supported\":true}}}}}";
	CHECK_EQ_INT(model_caps_parse(j, strlen(j), &c), 0);
	CHECK(!c.thinking_adaptive);
}

struct shape_case {
	const char *config;
	int caps; /* index into the caps below, -1 none */
	enum shape_thinking thinking;
	int64_t budget;
	const char *effort; /* NULL: none */
	const char *ignored;
};

/* 0 adaptive only + low..max (Claude 5); 1 both forms + low/medium/high/max (4.6);
 * 2 budgets only, no effort (4.5); 3 no thinking, no effort; 4 adaptive + low..high. */
static const struct shape_case shapes[] = {
    {"thinking = off", 0, SHAPE_THINKING_NONE, 0, NULL, ""},
    {"thinking = on", 0, SHAPE_THINKING_ADAPTIVE, 0, NULL, ""},
    {"thinking = 2048", 0, SHAPE_THINKING_ADAPTIVE, 0, NULL, ""},
    {"thinking_budget = 2048", 0, SHAPE_THINKING_ADAPTIVE, 0, NULL, ""},
    {"effort = max", 0, SHAPE_THINKING_NONE, 0, "max", ""},
    {"effort = xhigh", 0, SHAPE_THINKING_NONE, 0, NULL,
     "effort xhigh (the model takes low, medium, high, max)"},
    {"thinking = on\neffort = low", 0, SHAPE_THINKING_ADAPTIVE, 0, "low", ""},
    {"thinking = 2048", 1, SHAPE_THINKING_BUDGET, 2048, NULL, ""},
    {"thinking = on", 1, SHAPE_THINKING_ADAPTIVE, 0, NULL, ""},
    {"effort = medium", 1, SHAPE_THINKING_NONE, 0, "medium", ""},
    {"thinking = on", 2, SHAPE_THINKING_BUDGET, 1024, NULL, ""},
    {"max_tokens = 8000\nthinking = on", 2, SHAPE_THINKING_BUDGET, 2000, NULL, ""},
    {"max_tokens = 100000\nthinking = on", 2, SHAPE_THINKING_BUDGET, 25000, NULL, ""},
    {"max_tokens = 1024\nthinking = on", 2, SHAPE_THINKING_NONE, 0, NULL,
     "thinking (max_tokens leaves no room for a budget of 1024)"},
    {"thinking = 3000", 2, SHAPE_THINKING_BUDGET, 3000, NULL, ""},
    {"effort = high", 2, SHAPE_THINKING_NONE, 0, NULL, "effort (the model takes none)"},
    {"thinking = on\neffort = high", 3, SHAPE_THINKING_NONE, 0, NULL,
     "thinking (the model takes none), effort (the model takes none)"},
    {"thinking = 2048", 3, SHAPE_THINKING_NONE, 0, NULL, "thinking (the model takes none)"},
    {"effort = max", 4, SHAPE_THINKING_NONE, 0, NULL,
     "effort max (the model takes low, medium, high)"},
    {"effort = default", 4, SHAPE_THINKING_NONE, 0, NULL, ""},
    /* no capabilities: only what the user set */
    {"thinking = on", -1, SHAPE_THINKING_ADAPTIVE, 0, NULL, ""},
    {"thinking = 2048\neffort = xhigh", -1, SHAPE_THINKING_BUDGET, 2048, "xhigh", ""},
    {"thinking = off\neffort = low", -1, SHAPE_THINKING_NONE, 0, "low", ""},
};

static void test_shape(void)
{
	struct model_caps caps[5];
	const char *j[5];
	j[0] = info("c5", true, false, "low medium high max", "");
	CHECK_EQ_INT(model_caps_parse(j[0], strlen(j[0]), &caps[0]), 0);
	j[1] = info("c46", true, true, "low medium high max", "");
	CHECK_EQ_INT(model_caps_parse(j[1], strlen(j[1]), &caps[1]), 0);
	j[2] = info("c45", false, true, "", "");
	CHECK_EQ_INT(model_caps_parse(j[2], strlen(j[2]), &caps[2]), 0);
	j[3] = info("c3", false, false, "", "");
	CHECK_EQ_INT(model_caps_parse(j[3], strlen(j[3]), &caps[3]), 0);
	j[4] = info("cf", true, false, "low medium high", "");
	CHECK_EQ_INT(model_caps_parse(j[4], strlen(j[4]), &caps[4]), 0);
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		const struct shape_case *t = &shapes[i];
		struct settings st;
		struct model_shape sh;
		char why[256];
		settings_init(&st);
		CHECK_EQ_INT(settings_parse(&st, t->config, strlen(t->config), why, sizeof(why)),
			     0);
		model_shape(&st, t->caps < 0 ? NULL : &caps[t->caps], &sh);
		if (sh.thinking != t->thinking || sh.budget != t->budget)
			fprintf(stderr, "case %zu: %s\n", i, t->config);
		CHECK_EQ_INT(sh.thinking, t->thinking);
		if (t->thinking == SHAPE_THINKING_BUDGET)
			CHECK_EQ_INT(sh.budget, t->budget);
		CHECK_EQ_STR(sh.effort ? sh.effort : "(none)", t->effort ? t->effort : "(none)");
		CHECK_EQ_STR(sh.ignored, t->ignored);
	}
}

/* The shapes as JSON: thinking and output_config in their place. */
static void test_wire(void)
{
	const struct wire_message msg = {false, "Hi", 2, false};
	struct wire_request r = {"m", 4096, NAN, NULL, 0, false, &msg, 1, 0, true};
	struct buf b;

	buf_init(&b, 1 << 16);
	r.thinking_adaptive = true;
	r.effort = "high";
	CHECK_EQ_INT(wire_request_build(&r, &b), 0);
	CHECK_EQ_STR(b.data,
		     "{\"model\":\"m\",\"max_tokens\":4096,\"messages\":[{\"role\":\"user\","
		     "\"content\":\"Hi\"}],\"thinking\":{\"type\":\"adaptive\"},"
		     "\"output_config\":{\"effort\":\"high\"},\"stream\":true}");
	buf_reset(&b);
	r.thinking_adaptive = false;
	r.thinking_budget = 2048;
	r.effort = NULL;
	CHECK_EQ_INT(wire_request_build(&r, &b), 0);
	CHECK_EQ_STR(b.data,
		     "{\"model\":\"m\",\"max_tokens\":4096,\"messages\":[{\"role\":\"user\","
		     "\"content\":\"Hi\"}],\"thinking\":{\"type\":\"enabled\","
		     "\"budget_tokens\":2048},\"stream\":true}");
	buf_reset(&b);
	r.effort = "";
	CHECK_EQ_INT(wire_request_build(&r, &b), -EINVAL);
	buf_done(&b);
}

static void test_alias(void)
{
	struct settings st;
	struct buf b;
	char why[256];
	settings_init(&st);
	CHECK_EQ_INT(st.thinking, SETTINGS_THINKING_OFF);
	CHECK_EQ_INT(settings_parse(&st, "thinking_budget = 2048\n", 23, why, sizeof(why)), 0);
	CHECK_EQ_INT(st.thinking, 2048);
	CHECK_EQ_INT(settings_parse(&st, "thinking_budget = 0\n", 20, why, sizeof(why)), 0);
	CHECK_EQ_INT(st.thinking, SETTINGS_THINKING_OFF);
	CHECK_EQ_INT(settings_parse(&st, "thinking_budget = 100\n", 22, why, sizeof(why)), -EINVAL);
	CHECK_EQ_STR(why, "line 1: thinking: '100' must be off, on, or at least 1024");
	CHECK_EQ_INT(settings_set(&st, "thinking", "on", why, sizeof(why)), 0);
	buf_init(&b, 1 << 16);
	CHECK_EQ_INT(settings_render(&st, &b), 0);
	CHECK(strstr(b.data, "\nthinking = on\neffort = default\n") != NULL);
	CHECK(strstr(b.data, "thinking_budget") == NULL); /* never written */
	buf_done(&b);
	/* a budget still needs room below max_tokens; on does not */
	CHECK_EQ_INT(
	    settings_parse(&st, "max_tokens = 1000\nthinking = on\n", 32, why, sizeof(why)), 0);
	CHECK_EQ_INT(settings_check(&st, why, sizeof(why)), 0);
	st.thinking = 2000;
	CHECK_EQ_INT(settings_check(&st, why, sizeof(why)), -EINVAL);
}

static void test_cache(void)
{
	struct models m;
	struct models_entry *e;
	const char *j = info("a", true, false, "low", ",\"line\":\"l\"");
	int64_t t0 = 1000000;

	models_init(&m);
	CHECK_EQ_INT(models_state(&m, "a", t0), MODELS_NEED);
	CHECK_EQ_INT(models_entry(&m, "a", &e), 0);
	e->fetching = true;
	e->fetch_ms = t0;
	CHECK_EQ_INT(models_state(&m, "a", t0), MODELS_FETCHING);
	/* a fetch never answered is taken as lost, and asked again */
	CHECK_EQ_INT(models_state(&m, "a", t0 + MODELS_LOST_MS), MODELS_NEED);
	CHECK_EQ_INT(models_answer(&m, "a", 200, j, strlen(j), NULL, t0), 0);
	CHECK_EQ_INT(models_state(&m, "a", t0), MODELS_KNOWN);
	CHECK_EQ_INT(models_state(&m, "a", t0 + DAY - 1), MODELS_KNOWN);
	CHECK_EQ_INT(models_state(&m, "a", t0 + DAY), MODELS_NEED); /* a day old */
	/* a failure keeps the caps but is not retried at once */
	CHECK_EQ_INT(models_answer(&m, "a", 0, NULL, 0, "offline", t0 + DAY), 0);
	CHECK_EQ_INT(models_state(&m, "a", t0 + DAY + 1), MODELS_FAILED);
	CHECK(models_find(&m, "a")->status == 200 && models_find(&m, "a")->caps.thinking_adaptive);
	CHECK_EQ_INT(models_state(&m, "a", t0 + DAY + MODELS_RETRY_MS), MODELS_NEED);
	CHECK_EQ_INT(models_answer(&m, "b", 404, NULL, 0, NULL, t0), 0);
	CHECK_EQ_INT(models_state(&m, "b", t0 + 1), MODELS_ABSENT);
	/* a 200 that is no ModelInfo is a failure */
	CHECK_EQ_INT(models_answer(&m, "c", 200, "<html>", 6, NULL, t0), -EINVAL);
	CHECK_EQ_INT(models_state(&m, "c", t0 + 1), MODELS_FAILED);
	/* an alias: kept under the id asked for */
	j = info("claude-x-20260101", false, true, "", "");
	CHECK_EQ_INT(models_answer(&m, "claude-x", 200, j, strlen(j), NULL, t0), 0);
	CHECK_EQ_INT(models_state(&m, "claude-x", t0 + 1), MODELS_KNOWN);

	/* pages */
	char(*list)[SETTINGS_MODEL_MAX + 1] = NULL;
	size_t n = 0;
	bool more;
	char last[64];
	char page[8192];
	snprintf(page, sizeof(page), "{\"data\":[%s,",
		 info("new", true, false, "low",
		      ","
		      "\"line\":\"l\""));
	size_t o = strlen(page);
	snprintf(page + o, sizeof(page) - o,
		 "%s],\"has_more\":true,\"first_id\":\"new\","
		 "\"last_id\":\"old\"}",
		 info("old", false, true, "",
		      ",\"line\":\"l\","
		      "\"lifecycle\":\"deprecated\",\"retires_at\":"
		      "\"2027-01-05T00:00:00Z\""));
	CHECK_EQ_INT(models_page_cursor(page, strlen(page), &more, last, sizeof(last)), 0);
	CHECK(more);
	CHECK_EQ_STR(last, "old");
	CHECK_EQ_INT(models_page(&m, page, strlen(page), t0, &list, &n, &more, last, sizeof(last)),
		     0);
	CHECK_EQ_INT(n, 2);
	const char *p2 = "{\"data\":[{\"id\":\"gone\",\"display_name\":\"Gone\","
			 "\"lifecycle\":\"retired\",\"line\":\"l\"},{\"id\":\"a b\"}],"
			 "\"has_more\":false}";
	CHECK_EQ_INT(models_page(&m, p2, strlen(p2), t0, &list, &n, &more, last, sizeof(last)), 0);
	CHECK(!more && n == 3); /* the unreadable item is left out */
	CHECK_EQ_INT(models_page_cursor("{\"nope\":1}", 10, &more, last, sizeof(last)), -EINVAL);
	CHECK_EQ_INT(models_list_state(&m, t0), MODELS_NEED);
	models_list_answer(&m, list, n, NULL, t0);
	CHECK_EQ_INT(models_list_state(&m, t0 + 1), MODELS_KNOWN);

	struct buf b;
	buf_init(&b, 1 << 20);
	CHECK_EQ_INT(models_render(&m, &b), 0);
	CHECK_EQ_STR(b.data, "new\tName of new\tactive\t200000\n"
			     "old\tName of old\tdeprecated\t200000\n"
			     "gone\tGone\tretired\t-\n");
	char advice[256];
	models_advice(&m, &models_find(&m, "old")->caps, advice, sizeof(advice));
	CHECK_EQ_STR(advice, "old is deprecated (retires 2027-01-05); the newest active model of "
			     "line 'l' is new");
	models_advice(&m, &models_find(&m, "gone")->caps, advice, sizeof(advice));
	CHECK_EQ_STR(advice, "gone is retired; the newest active model of line 'l' is new");
	models_advice(&m, &models_find(&m, "new")->caps, advice, sizeof(advice));
	CHECK_EQ_STR(advice, "");

	/* the file form round-trips; failures are not saved */
	buf_reset(&b);
	CHECK_EQ_INT(models_save(&m, &b), 0);
	struct models m2;
	models_init(&m2);
	models_load(&m2, b.data, b.len);
	CHECK_EQ_INT(models_state(&m2, "a", t0 + 1), MODELS_KNOWN);
	CHECK_EQ_INT(models_state(&m2, "b", t0 + 1), MODELS_ABSENT);
	CHECK_EQ_INT(models_state(&m2, "c", t0 + 1), MODELS_NEED);
	CHECK_EQ_INT(models_list_state(&m2, t0 + 1), MODELS_KNOWN);
	struct buf b2;
	buf_init(&b2, 1 << 20);
	CHECK_EQ_INT(models_render(&m2, &b2), 0);
	buf_reset(&b);
	CHECK_EQ_INT(models_render(&m, &b), 0);
	CHECK_EQ_STR(b2.data, b.data);
	/* garbage loads as nothing */
	struct models m3;
	models_init(&m3);
	models_load(&m3, "{\"models\":[{\"id\":\"x\",\"ms\":\"no\"}],\"list\":7", 40);
	CHECK_EQ_INT(m3.n, 0);
	buf_reset(&b2);
	CHECK_EQ_INT(models_render(&m3, &b2), 0);
	CHECK_EQ_STR(b2.data, "# cannot list models: no answer from the Models API yet\n");
	models_list_answer(&m3, NULL, 0, "offline", t0);
	CHECK_EQ_INT(models_list_state(&m3, t0 + 1), MODELS_FAILED);
	buf_reset(&b2);
	CHECK_EQ_INT(models_render(&m3, &b2), 0);
	CHECK_EQ_STR(b2.data, "# cannot list models: offline\n");
	buf_done(&b);
	buf_done(&b2);
	models_done(&m);
	models_done(&m2);
	models_done(&m3);
}

int main(void)
{
	test_parse();
	test_shape();
	test_wire();
	test_alias();
	test_cache();
	return check_report();
}
