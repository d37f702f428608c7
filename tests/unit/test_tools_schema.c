/* test_tools_schema.c — the `tools` key, the `schema` checks, the server tool
 * versions a model gets (model_shape) and the request's tools and
 * output_config.format (wire_request_build). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "mcpfs/models.h"
#include "mcpfs/schema.h"
#include "mcpfs/settings.h"
#include "mcpfs/wire.h"

static void test_tools_key(void)
{
	static const struct {
		const char *text;
		int r;
		unsigned bits;
		const char *shown;
	} cases[] = {
	    {"none", 0, 0, "none"},
	    {"", 0, 0, "none"},
	    {"web_search", 0, SETTINGS_TOOL_WEB_SEARCH, "web_search"},
	    {" web_fetch , web_search ", 0, 3, "web_search, web_fetch"},
	    {"web_search,web_search", 0, SETTINGS_TOOL_WEB_SEARCH, "web_search"},
	    {"NONE", 0, 0, "none"},
	    {"web_browse", -EINVAL, 0, NULL},
	    {"Web_Search", -EINVAL, 0, NULL},
	    {"web_search,", -EINVAL, 0, NULL},
	    {",web_search", -EINVAL, 0, NULL},
	    {"web_search,,web_fetch", -EINVAL, 0, NULL},
	};
	size_t n;
	const struct setting_def *t = settings_table(&n);
	const struct setting_def *d = NULL;
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].key, "tools") == 0)
			d = &t[i];
	CHECK(d != NULL);
	for (size_t i = 0; d && i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct settings s;
		char why[256] = "", v[64];
		settings_init(&s);
		s.tools = 3;
		int r = settings_set(&s, "tools", cases[i].text, why, sizeof(why));
		CHECK_EQ_INT(r, cases[i].r);
		if (r < 0) {
			CHECK_EQ_INT(s.tools, 3); /* unchanged */
			CHECK(strstr(why, "tools: ") == why);
			continue;
		}
		CHECK_EQ_INT(s.tools, cases[i].bits);
		settings_format(&s, d, v, sizeof(v));
		CHECK_EQ_STR(v, cases[i].shown);
	}
	/* JSON: an array of names, or the text form; back as an array. */
	struct settings s;
	char why[256];
	settings_init(&s);
	cJSON *o = cJSON_Parse("{\"tools\":[\"web_fetch\",\"web_search\"]}");
	CHECK_EQ_INT(settings_from_json(&s, o, why, sizeof(why)), 0);
	CHECK_EQ_INT(s.tools, 3);
	cJSON_Delete(o);
	o = cJSON_Parse("{\"tools\":\"web_fetch\"}");
	CHECK_EQ_INT(settings_from_json(&s, o, why, sizeof(why)), 0);
	CHECK_EQ_INT(s.tools, SETTINGS_TOOL_WEB_FETCH);
	cJSON_Delete(o);
	for (const char *bad = "[\"web_x\"]\0[7]\0[\"\"]\0true\0"; *bad; bad += strlen(bad) + 1) {
		char text[64];
		snprintf(text, sizeof(text), "{\"tools\":%s}", bad);
		o = cJSON_Parse(text);
		CHECK_EQ_INT(settings_from_json(&s, o, why, sizeof(why)), -EINVAL);
		CHECK_EQ_INT(s.tools, SETTINGS_TOOL_WEB_FETCH);
		cJSON_Delete(o);
	}
	o = cJSON_CreateObject();
	s.tools = 3;
	CHECK_EQ_INT(settings_to_json(&s, o), 0);
	char *p = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, "tools"));
	CHECK_EQ_STR(p, "[\"web_search\",\"web_fetch\"]");
	free(p);
	cJSON_Delete(o);
	CHECK_EQ_STR(settings_tool_name(SETTINGS_TOOL_WEB_FETCH), "web_fetch");
	CHECK(settings_tool_name(4) == NULL);
}

static void test_schema(void)
{
	static const struct {
		const char *text;
		int r;
		const char *why; /* a part of it */
	} cases[] = {
	    {"", 0, NULL},
	    {" \n\t", 0, NULL},
	    {"{}", 0, NULL},
	    {"{\"type\":\"object\",\"properties\":{\"type\":{\"type\":\"string\"}}}", 0, NULL},
	    {"{\"type\":[\"string\",\"null\"]}", 0, NULL},
	    {"{\"enum\":[{\"type\":\"nope\"}],\"const\":{\"type\":1}}", 0, NULL},
	    {"{\"$defs\":{\"a\":{\"type\":\"integer\"}},\"items\":[{\"type\":\"number\"}]}", 0,
	     NULL},
	    {"[]", -EINVAL, "must be a JSON object, not an array"},
	    {"\"x\"", -EINVAL, "not a string"},
	    {"{\"type\":\"obj\"}", -EINVAL, "type \"obj\" at / is not a JSON Schema type"},
	    {"{\"type\":[]}", -EINVAL, "is not a JSON Schema type"},
	    {"{\"properties\":{\"a\":{\"items\":{\"type\":3}}}}", -EINVAL,
	     "at /properties/a/items is not"},
	    {"{\"oneOf\":[{},{\"type\":\"x\"}]}", -EINVAL, "at /oneOf/1 is not"},
	    {"{\"$defs\":{\"d\":{\"type\":\"x\"}}}", -EINVAL, "at /$defs/d is not"},
	    {"{\"a\":1", -EINVAL, "not JSON (at byte 6)"},
	    {"{} {}", -EINVAL, "not JSON"},
	    {"{\"a\":\"\xff\"}", -EILSEQ, "UTF-8"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char why[256] = "";
		int r = schema_check(cases[i].text, strlen(cases[i].text), why, sizeof(why));
		CHECK_EQ_INT(r, cases[i].r);
		if (cases[i].why && !strstr(why, cases[i].why))
			CHECK_EQ_STR(why, cases[i].why);
	}
	char why[256];
	CHECK_EQ_INT(schema_check("{\0}", 3, why, sizeof(why)), -EILSEQ);
	char *big = malloc(SCHEMA_MAX + 2);
	memset(big, ' ', SCHEMA_MAX + 1);
	big[0] = '{';
	big[SCHEMA_MAX] = '}';
	CHECK_EQ_INT(schema_check(big, SCHEMA_MAX + 1, why, sizeof(why)), -EFBIG);
	CHECK_EQ_INT(schema_check(big + 1, SCHEMA_MAX, why, sizeof(why)), -EINVAL); /* " ...}" */
	free(big);
	CHECK_EQ_INT(schema_prefix_check("  ", 2, why, sizeof(why)), 0);
	CHECK_EQ_INT(schema_prefix_check("\n {\"a", 5, why, sizeof(why)), 0);
	CHECK_EQ_INT(schema_prefix_check(" [", 2, why, sizeof(why)), -EINVAL);
	CHECK(schema_empty(" \r\n", 3));
	CHECK(!schema_empty(" x", 2));
}

static void caps_of(const char *json, struct model_caps *c)
{
	CHECK_EQ_INT(model_caps_parse(json, strlen(json), c), 0);
}

static void test_shape_tools(void)
{
	struct settings st;
	struct model_caps c;
	struct model_shape sh;

	settings_init(&st);
	st.tools = SETTINGS_TOOL_WEB_SEARCH | SETTINGS_TOOL_WEB_FETCH;
	model_shape(&st, NULL, &sh); /* no capabilities: the newest */
	CHECK_EQ_STR(sh.web_search, MODEL_WEB_SEARCH_NEWEST);
	CHECK_EQ_STR(sh.web_fetch, MODEL_WEB_FETCH_NEWEST);
	CHECK_EQ_STR(sh.ignored, "");
	caps_of("{\"id\":\"m\",\"capabilities\":{\"code_execution\":{\"supported\":false},"
		"\"server_tools\":{\"supported\":true,\"web_search\":{\"supported\":true},"
		"\"code_execution\":{\"supported\":false}}}}",
		&c);
	model_shape(&st, &c, &sh);
	CHECK_EQ_STR(sh.web_search, MODEL_WEB_SEARCH_BASIC);
	CHECK_EQ_STR(sh.web_fetch, MODEL_WEB_FETCH_BASIC);
	caps_of("{\"id\":\"m\",\"capabilities\":{\"code_execution\":{\"supported\":true},"
		"\"server_tools\":{\"supported\":true,\"web_search\":{\"supported\":true}}}}",
		&c);
	model_shape(&st, &c, &sh);
	CHECK_EQ_STR(sh.web_search, "web_search_20260318");
	CHECK_EQ_STR(sh.web_fetch, "web_fetch_20260318");
	caps_of("{\"id\":\"m\",\"capabilities\":{\"server_tools\":{\"supported\":false,"
		"\"web_search\":{\"supported\":false}}}}",
		&c);
	model_shape(&st, &c, &sh);
	CHECK(!sh.web_search && !sh.web_fetch);
	CHECK_EQ_STR(sh.ignored, "tools (the model takes no server tools)");
	/* web_fetch read from its own entry where the API gives one */
	caps_of("{\"id\":\"m\",\"capabilities\":{\"server_tools\":{\"supported\":true,"
		"\"web_search\":{\"supported\":true},\"web_fetch\":{\"supported\":false}}}}",
		&c);
	model_shape(&st, &c, &sh);
	CHECK(sh.web_search && !sh.web_fetch);
	CHECK_EQ_STR(sh.ignored, "tools: web_fetch (the model does not take it)");
	/* an answer without server_tools (older API): both taken, basic versions */
	caps_of("{\"id\":\"m\",\"capabilities\":{}}", &c);
	model_shape(&st, &c, &sh);
	CHECK_EQ_STR(sh.web_search, MODEL_WEB_SEARCH_BASIC);
	CHECK_EQ_STR(sh.web_fetch, MODEL_WEB_FETCH_BASIC);
	st.tools = 0;
	model_shape(&st, &c, &sh);
	CHECK(!sh.web_search && !sh.web_fetch);
}

static void test_request(void)
{
	struct wire_message m = {false, "hi", 2, false};
	const char *tools[] = {"web_search_20250305", "web_fetch_20260318"};
	const char *schema = " {\"type\": \"object\",\n \"additionalProperties\": false} ";
	struct wire_request r = {
	    .model = "claude-x",
	    .max_tokens = 100,
	    .temperature = NAN,
	    .messages = &m,
	    .n_messages = 1,
	    .stream = true,
	    .effort = "low",
	    .tool_types = tools,
	    .n_tools = 2,
	    .schema = schema,
	    .schema_len = strlen(schema),
	};
	struct buf b;
	buf_init(&b, 1 << 20);
	CHECK_EQ_INT(wire_request_build(&r, &b), 0);
	CHECK_EQ_STR(b.data,
		     "{\"model\":\"claude-x\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\","
		     "\"content\":\"hi\"}],\"tools\":[{\"type\":\"web_search_20250305\",\"name\":"
		     "\"web_search\"},{\"type\":\"web_fetch_20260318\",\"name\":\"web_fetch\"}],"
		     "\"output_config\":{\"effort\":\"low\",\"format\":{\"type\":\"json_schema\","
		     "\"schema\":{\"type\":\"object\",\"additionalProperties\":false}}},"
		     "\"stream\":true}");
	/* the schema alone makes an output_config */
	r.effort = NULL;
	r.n_tools = 0;
	buf_reset(&b);
	CHECK_EQ_INT(wire_request_build(&r, &b), 0);
	CHECK(strstr(b.data, "\"output_config\":{\"format\":") != NULL);
	CHECK(strstr(b.data, "\"tools\"") == NULL);
	r.schema = "[1]";
	r.schema_len = 3;
	buf_reset(&b);
	CHECK_EQ_INT(wire_request_build(&r, &b), -EINVAL);
	r.schema = NULL;
	const char *bad[] = {"websearch"};
	r.tool_types = bad;
	r.n_tools = 1;
	CHECK_EQ_INT(wire_request_build(&r, &b), -EINVAL);
	buf_done(&b);
}

int main(void)
{
	test_tools_key();
	test_schema();
	test_shape_tools();
	test_request();
	return check_report();
}
