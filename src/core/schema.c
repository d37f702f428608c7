/* schema.c — checks of a `schema` text (see schema.h).
 *
 * The walk follows only the keywords whose values are schemas (JSON Schema
 * 2020-12 and draft 7: properties, items, anyOf, $defs, ...), so a property
 * named "type", or an enum value {"type": "x"}, is not mistaken for the
 * keyword.  cJSON bounds the nesting (CJSON_NESTING_LIMIT), and so the walk.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mcpfs/schema.h"
#include "mcpfs/utf8.h"

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool schema_empty(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!is_space(text[i]))
			return false;
	return true;
}

int schema_prefix_check(const char *text, size_t len, char *why, size_t whylen)
{
	for (size_t i = 0; i < len; i++) {
		if (is_space(text[i]))
			continue;
		if (text[i] == '{')
			return 0;
		snprintf(why, whylen, "schema must be a JSON object ({...}), not '%c'...",
			 (unsigned char)text[i] >= 0x20 && (unsigned char)text[i] < 0x7f ? text[i]
											 : '?');
		return -EINVAL;
	}
	return 0;
}

static bool type_name(const char *s)
{
	static const char *const types[] = {"object",  "array",	  "string", "number",
					    "integer", "boolean", "null"};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(s, types[i]) == 0)
			return true;
	return false;
}

/* A `type` keyword's value: a type name or a non-empty array of them. */
static bool type_ok(const cJSON *t)
{
	const cJSON *e;
	if (cJSON_IsString(t))
		return type_name(t->valuestring);
	if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) == 0)
		return false;
	cJSON_ArrayForEach(e, t)
	{
		if (!cJSON_IsString(e) || !type_name(e->valuestring))
			return false;
	}
	return true;
}

static int walk(const cJSON *s, char *path, size_t pathlen, char *why, size_t whylen);

/* Keywords whose value is a schema, an array of schemas, or an object of them. */
static const char *const one_schema[] = {"items",
					 "additionalProperties",
					 "not",
					 "if",
					 "then",
					 "else",
					 "contains",
					 "propertyNames",
					 "additionalItems",
					 "unevaluatedItems",
					 "unevaluatedProperties"};
static const char *const schema_array[] = {"anyOf", "allOf", "oneOf", "prefixItems", "items"};
static const char *const schema_map[] = {"properties", "patternProperties", "$defs", "definitions",
					 "dependentSchemas"};

/* Walks child (a schema, or an array or map of them when kind is 1 or 2),
 * its path extended by key. */
static int walk_child(const cJSON *child, int kind, const char *key, char *path, size_t pathlen,
		      char *why, size_t whylen)
{
	size_t at = strlen(path);
	const cJSON *e;
	int r = 0, i = 0;

	if (kind == 0 && cJSON_IsObject(child)) {
		snprintf(path + at, pathlen - at, "/%s", key);
		r = walk(child, path, pathlen, why, whylen);
	} else if ((kind == 1 && cJSON_IsArray(child)) || (kind == 2 && cJSON_IsObject(child))) {
		cJSON_ArrayForEach(e, child)
		{
			if (!cJSON_IsObject(e)) {
				i++;
				continue;
			}
			if (kind == 1)
				snprintf(path + at, pathlen - at, "/%s/%d", key, i++);
			else
				snprintf(path + at, pathlen - at, "/%s/%.40s", key,
					 e->string ? e->string : "");
			if ((r = walk(e, path, pathlen, why, whylen)) < 0)
				break;
		}
	}
	if (r == 0)
		path[at] = '\0';
	return r;
}

static int walk(const cJSON *s, char *path, size_t pathlen, char *why, size_t whylen)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
	int r = 0;

	if (t && !type_ok(t)) {
		char *shown = cJSON_PrintUnformatted(t);
		snprintf(why, whylen,
			 "schema: type %.60s at %s is not a JSON Schema type (object, array, "
			 "string, number, integer, boolean, null)",
			 shown ? shown : "?", path[0] ? path : "/");
		cJSON_free(shown);
		return -EINVAL;
	}
	for (size_t i = 0; r == 0 && i < sizeof(one_schema) / sizeof(one_schema[0]); i++)
		r = walk_child(cJSON_GetObjectItemCaseSensitive(s, one_schema[i]), 0, one_schema[i],
			       path, pathlen, why, whylen);
	for (size_t i = 0; r == 0 && i < sizeof(schema_array) / sizeof(schema_array[0]); i++)
		r = walk_child(cJSON_GetObjectItemCaseSensitive(s, schema_array[i]), 1,
			       schema_array[i], path, pathlen, why, whylen);
	for (size_t i = 0; r == 0 && i < sizeof(schema_map) / sizeof(schema_map[0]); i++)
		r = walk_child(cJSON_GetObjectItemCaseSensitive(s, schema_map[i]), 2, schema_map[i],
			       path, pathlen, why, whylen);
	return r;
}

static const char *json_kind(const cJSON *o)
{
	return cJSON_IsArray(o)	   ? "an array"
	       : cJSON_IsString(o) ? "a string"
	       : cJSON_IsNumber(o) ? "a number"
	       : cJSON_IsBool(o)   ? "a boolean"
				   : "null";
}

int schema_check(const char *text, size_t len, char *why, size_t whylen)
{
	char path[512] = "";
	int r;

	if (len > SCHEMA_MAX) {
		snprintf(why, whylen, "schema is %zu bytes, over the limit of %u", len, SCHEMA_MAX);
		return -EFBIG;
	}
	if (!utf8_valid(text, len) || memchr(text, '\0', len)) {
		snprintf(why, whylen, "schema is not valid UTF-8 text");
		return -EILSEQ;
	}
	if (schema_empty(text, len))
		return 0;
	char *z = malloc(len + 1);
	if (!z) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	memcpy(z, text, len);
	z[len] = '\0';
	const char *end = NULL;
	cJSON *o = cJSON_ParseWithOpts(z, &end, true);
	if (!o) {
		/* cJSON points end at the error too (cJSON_GetErrorPtr is global). */
		snprintf(why, whylen, "schema is not JSON (at byte %zu)",
			 end && end >= z && end <= z + len ? (size_t)(end - z) : len);
		r = -EINVAL;
	} else if (!cJSON_IsObject(o)) {
		snprintf(why, whylen, "schema must be a JSON object, not %s", json_kind(o));
		r = -EINVAL;
	} else {
		r = walk(o, path, sizeof(path), why, whylen);
	}
	cJSON_Delete(o);
	free(z);
	return r;
}
