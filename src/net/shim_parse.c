/* shim_parse.c — what a client sends, parsed strictly, with no connection and
 * no store: the one percent-encoded name segment of a path, and a JSON body.
 * A leaf of the shim and the MCP endpoint (shim_route.c, shim_meta.c,
 * mcp.c, mcp_resources.c use it) and of the fuzz targets.
 *
 * The name segment is decoded here, not by libmicrohttpd (its own unescaping is
 * turned off in shim.c, or "%2F" would become a '/' and a path separator): a
 * decoded '/', NUL, "." or ".." is refused, never followed.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mcpfs/utf8.h"
#include "shim_impl.h"

/* --- names ----------------------------------------------------------------------------- */

int shim_parse_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void shim_parse_name_problem(char *why, size_t whylen)
{
	snprintf(why, whylen,
		 "invalid context name: names are 1-%d bytes of UTF-8 without '/' "
		 "or control characters, not starting with '.'",
		 STORE_NAME_MAX);
}

int shim_parse_name(const char *seg, size_t len, char *out, size_t outlen, char *why, size_t whylen)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		int ch = (unsigned char)seg[i];
		if (ch == '%') {
			int hi = i + 2 < len ? shim_parse_hex(seg[i + 1]) : -1;
			int lo = hi >= 0 ? shim_parse_hex(seg[i + 2]) : -1;
			if (lo < 0) {
				snprintf(why, whylen, "bad percent-encoding in the context name");
				return -EINVAL;
			}
			ch = hi * 16 + lo;
			i += 2;
		}
		if (o + 1 >= outlen) {
			snprintf(why, whylen, "context name is over %zu bytes", outlen - 1);
			return -ENAMETOOLONG;
		}
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	if (memchr(out, '/', o) || memchr(out, '\0', o)) {
		snprintf(why, whylen, "a context name cannot contain '/' or NUL");
		return -EINVAL;
	}
	if (!strcmp(out, ".") || !strcmp(out, "..")) {
		snprintf(why, whylen, "'%s' is not a context name", out);
		return -EINVAL;
	}
	int r = store_name_check(out, o);
	if (r < 0)
		shim_parse_name_problem(why, whylen);
	return r;
}

/* --- request bodies ------------------------------------------------------------------ */

/* cJSON ends strings at NUL, so "\u0000" would silently cut a message short:
 * find it in the raw text (outside strings a backslash is a syntax error). */
static bool json_has_nul(const char *s, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (s[i] == '\\') {
			if (s[i + 1] == 'u' && i + 5 < n && !strncmp(s + i + 2, "0000", 4))
				return true;
			i++;
		}
	return false;
}

/* The index of key in keys, or -1. */
static int key_index(const char *key, const char *const *keys)
{
	for (int i = 0; keys[i]; i++)
		if (!strcmp(key, keys[i]))
			return i;
	return -1;
}

/* A key given twice means different things to different parsers (cJSON's
 * lookups take the first, most others the last): refused at every depth.  An
 * object below the top may have at most SHIM_JSON_KEYS_MAX members, which
 * bounds the pairwise comparison. */
#define SHIM_JSON_KEYS_MAX 256
static const char *json_key_problem(const cJSON *o, char *why, size_t whylen)
{
	int n = 0;
	for (const cJSON *a = o ? o->child : NULL; a; a = a->next, n++) {
		if (cJSON_IsObject(o) && n == SHIM_JSON_KEYS_MAX) {
			snprintf(why, whylen, "an object has more than %d keys",
				 SHIM_JSON_KEYS_MAX);
			return why;
		}
		for (const cJSON *b = cJSON_IsObject(o) ? o->child : NULL; b && b != a; b = b->next)
			if (!strcmp(a->string, b->string)) {
				snprintf(why, whylen, "duplicate key '%.64s'", a->string);
				return why;
			}
		if ((cJSON_IsObject(a) || cJSON_IsArray(a)) && json_key_problem(a, why, whylen))
			return why;
	}
	return NULL;
}

int shim_parse_body(const char *s, size_t n, bool optional, const char *const *keys, cJSON **ret,
		    char *why, size_t whylen)
{
	const char *problem = NULL, *end = NULL;
	cJSON *o = NULL;
	*ret = NULL;
	if (n == 0 && optional) {
		*ret = cJSON_CreateObject();
		return *ret ? 0 : -ENOMEM;
	}
	if (!utf8_valid(s, n))
		problem = "the body is not valid UTF-8";
	else if (json_has_nul(s, n))
		problem = "NUL characters (\\u0000) are not allowed";
	else if (!(o = cJSON_ParseWithLengthOpts(s, n, &end, false)) || !cJSON_IsObject(o))
		problem = "the body must be a JSON object";
	while (!problem && end < s + n && strchr(" \t\r\n", *end))
		end++;
	if (!problem && end != s + n)
		problem = "the body has text after its JSON object";
	unsigned seen = 0;
	for (cJSON *k = o && !problem ? o->child : NULL; k && !problem; k = k->next) {
		int i = key_index(k->string, keys);
		if (i < 0 || seen & (1u << i)) {
			snprintf(why, whylen, "%s key '%.64s'", i < 0 ? "unknown" : "duplicate",
				 k->string);
			cJSON_Delete(o);
			return -EINVAL;
		}
		seen |= 1u << i;
		if ((cJSON_IsObject(k) || cJSON_IsArray(k)) && json_key_problem(k, why, whylen)) {
			cJSON_Delete(o);
			return -EINVAL;
		}
	}
	if (problem) {
		cJSON_Delete(o);
		snprintf(why, whylen, "%s", problem);
		return -EINVAL;
	}
	*ret = o;
	return 0;
}
