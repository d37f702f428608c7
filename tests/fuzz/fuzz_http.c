/* fuzz_http.c — the HTTP shim's request handling that runs before any context
 * is touched: the path of a request (shim_route_parse_path, then shim_parse_name of
 * its name segment) and its JSON body (shim_parse_body), src/net/shim_route.c and shim_parse.c.
 *
 * Input: one selector byte, then the rest.  Selector even: the rest is a path.
 * Checked: a path is routed exactly when it is /v1/health, /v1/contexts, /mcp, or
 * /v1/contexts/SEG[/SUB] with a non-empty SEG and SUB one of the routes' own;
 * the segment returned lies inside the path, between the prefix and the next
 * '/'; its decoding, when it succeeds, is a name that store_name_check accepts
 * and that has no '/'.  Selector odd: the rest is a body, parsed with a key
 * list and optional-ness drawn from the selector.  Checked: accepted exactly
 * when the body is valid UTF-8 without "\u0000", one JSON object (white space
 * around it allowed) whose keys are all in the list, with no key twice at any
 * depth, or empty and optional;
 * printing the object returned and parsing it again is stable; a refusal
 * returns NULL with a reason.  The same body's shape count
 * (shim_frame_json_shape, src/net/shim_frame.c) agrees with a reference: the
 * first of a raw control character inside a string, nesting past 32, more than
 * 4,096 of '{' '[' ',' ':' outside strings.  Everything allocated is freed.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "mcpfs/store.h"
#include "mcpfs/utf8.h"
#include "shim_impl.h"

static const char *const subs[] = {"messages", "output",   "history", "transcript",
				   "cancel",   "thinking", "ctl"};

static bool ref_routed(const char *url)
{
	static const char prefix[] = "/v1/contexts/";
	if (!strcmp(url, "/v1/health") || !strcmp(url, "/v1/contexts") || !strcmp(url, "/mcp"))
		return true;
	if (strncmp(url, prefix, sizeof(prefix) - 1))
		return false;
	const char *seg = url + sizeof(prefix) - 1, *slash = strchr(seg, '/');
	if (slash == seg || !*seg)
		return false;
	if (!slash)
		return true;
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (!strcmp(slash + 1, subs[i]))
			return true;
	return false;
}

static void check_path(const uint8_t *data, size_t size)
{
	char *url = malloc(size + 1), name[STORE_NAME_MAX + 1], why[256];
	FUZZ_ALLOC(url);
	memcpy(url, data, size);
	url[size] = '\0'; /* libmicrohttpd hands the handler a C string */
	int res = -1;
	const char *seg;
	size_t seg_len;
	int r = shim_route_parse_path(url, &res, &seg, &seg_len);
	FUZZ_CHECK(r == 0 || r == -ENOENT);
	FUZZ_CHECK((r == 0) == ref_routed(url));
	if (r == 0 && seg) {
		FUZZ_CHECK(seg == url + strlen("/v1/contexts/") && seg_len > 0);
		FUZZ_CHECK(seg[seg_len] == '\0' || seg[seg_len] == '/');
		FUZZ_CHECK(!memchr(seg, '/', seg_len));
		why[0] = '\0';
		int d = shim_parse_name(seg, seg_len, name, sizeof(name), why, sizeof(why));
		FUZZ_CHECK(d == 0 || d == -EINVAL || d == -ENAMETOOLONG);
		if (d == 0)
			FUZZ_CHECK(store_name_check(name, strlen(name)) == 0 && !strchr(name, '/'));
		else
			FUZZ_CHECK(why[0] != '\0');
	} else if (r == 0) {
		FUZZ_CHECK(!strcmp(url, "/v1/health") || !strcmp(url, "/v1/contexts") ||
			   !strcmp(url, "/mcp"));
	}
	free(url);
}

static bool ref_has_nul_escape(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (s[i] == '\\') {
			if (s[i + 1] == 'u' && i + 5 < n && !memcmp(s + i + 2, "0000", 4))
				return true;
			i++;
		}
	return false;
}

/* 0 sound, 1 control character in a string, 2 too deep, 3 too many values:
 * whichever comes first, reading left to right. */
static int ref_shape(const uint8_t *s, size_t n)
{
	long depth = 0, tokens = 0;
	bool str = false, esc = false;
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = s[i];
		if (str) {
			if (esc)
				esc = false;
			else if (ch == '\\')
				esc = true;
			else if (ch == '"')
				str = false;
			else if (ch < 0x20)
				return 1;
			continue;
		}
		if (ch == '"')
			str = true;
		if ((ch == '{' || ch == '[') && ++depth > SHIM_JSON_DEPTH_MAX)
			return 2;
		if ((ch == '}' || ch == ']') && depth > 0)
			depth--;
		if ((ch == '{' || ch == '[' || ch == ',' || ch == ':') &&
		    ++tokens > SHIM_JSON_TOKENS_MAX)
			return 3;
	}
	return 0;
}

static void check_shape(const char *body, const uint8_t *data, size_t size)
{
	const char *why = shim_frame_json_shape(body, size);
	int want = ref_shape(data, size);
	if (!why)
		FUZZ_CHECK(want == 0);
	else if (strstr(why, "control character"))
		FUZZ_CHECK(want == 1);
	else if (strstr(why, "nested too deeply"))
		FUZZ_CHECK(want == 2);
	else
		FUZZ_CHECK(want == 3 && strstr(why, "too many values"));
}

static void check_body(unsigned sel, const uint8_t *data, size_t size)
{
	static const char *const lists[][4] = {
	    {"content", NULL}, {"name", "system", "model", "config"}, {NULL}};
	const char *const *keys = lists[(sel >> 1) % 3];
	bool optional = sel & 4;
	char *body = malloc(size ? size : 1), why[160];
	FUZZ_ALLOC(body);
	memcpy(body, data, size); /* exactly size bytes: no terminator to lean on */
	check_shape(body, data, size);
	why[0] = '\0';
	cJSON *o = (cJSON *)1;
	int r = shim_parse_body(body, size, optional, keys, &o, why, sizeof(why));
	FUZZ_CHECK(r == 0 || r == -EINVAL);
	if (r < 0) {
		FUZZ_CHECK(o == NULL && why[0] != '\0');
		FUZZ_CHECK(size > 0 || !optional);
		/* each reason holds: checked independently where it can be */
		if (!strcmp(why, "the body is not valid UTF-8"))
			FUZZ_CHECK(!utf8_valid(body, size));
		else if (!strncmp(why, "NUL characters", 14))
			FUZZ_CHECK(ref_has_nul_escape(data, size));
		else if (!strncmp(why, "unknown key '", 13) ||
			 !strncmp(why, "duplicate key '", 15) ||
			 !strncmp(why, "an object has more than", 24))
			FUZZ_CHECK(utf8_valid(body, size));
		else
			FUZZ_CHECK(!strcmp(why, "the body must be a JSON object") ||
				   !strcmp(why, "the body has text after its JSON object"));
	} else {
		FUZZ_CHECK(o && cJSON_IsObject(o));
		FUZZ_CHECK(size > 0 || optional);
		FUZZ_CHECK(utf8_valid(body, size) && !ref_has_nul_escape(data, size));
		for (cJSON *k = o->child; k; k = k->next) {
			bool known = false;
			for (const char *const *p = keys; *p; p++)
				known |= !strcmp(*p, k->string);
			FUZZ_CHECK(known);
		}
		/* printing and parsing again is stable (cJSON_Compare would take time
		 * exponential in the depth; a number past double's range prints as
		 * null, which the second print then keeps) */
		char *printed = cJSON_PrintUnformatted(o);
		FUZZ_ALLOC(printed);
		cJSON *again = cJSON_Parse(printed);
		FUZZ_CHECK(again && cJSON_IsObject(again));
		char *twice = cJSON_PrintUnformatted(again);
		FUZZ_ALLOC(twice);
		cJSON *third = cJSON_Parse(twice);
		char *thrice = third ? cJSON_PrintUnformatted(third) : NULL;
		FUZZ_CHECK(thrice && !strcmp(twice, thrice));
		free(thrice);
		cJSON_Delete(third);
		free(twice);
		cJSON_Delete(again);
		free(printed);
		cJSON_Delete(o);
	}
	free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	unsigned sel = fuzz_byte(&in);
	if (sel & 1)
		check_body(sel, in.p, in.n);
	else
		check_path(in.p, in.n);
	return 0;
}
