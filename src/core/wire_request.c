/* wire_request.c — the body of a Messages API request, built with cJSON (see
 * wire.h).  Every cJSON tree is built, printed and deleted inside one call.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mcpfs/json_nul.h"
#include "mcpfs/utf8.h"
#include "mcpfs/wire.h"

/* cJSON strings end at the first NUL, so a NUL byte of the text crosses cJSON
 * as a mark (json_nul.h) and is printed as \u0000. */
static bool text_ok(const char *s, size_t n)
{
	if (!s)
		return n == 0;
	return utf8_valid(s, n);
}

/* Every check that can fail on the caller's values, done before building, so
 * that a failure while building can only mean -ENOMEM. */
static int wire_request_check(const struct wire_request *r)
{
	if (!r->model || !*r->model || !text_ok(r->model, strlen(r->model)))
		return -EINVAL;
	if (!r->messages || r->n_messages == 0)
		return -EINVAL;
	if (r->max_tokens < 0 || r->thinking_budget < 0 || isinf(r->temperature))
		return -EINVAL;
	if (r->effort && (!*r->effort || !text_ok(r->effort, strlen(r->effort))))
		return -EINVAL;
	if (r->system && !text_ok(r->system, r->system_len))
		return -EINVAL;
	if (r->system2 && !text_ok(r->system2, r->system2_len))
		return -EINVAL;
	for (size_t i = 0; i < r->n_messages; i++)
		if (!text_ok(r->messages[i].text, r->messages[i].len) ||
		    (r->messages[i].blocks && r->messages[i].n_pre))
			return -EINVAL;
	for (size_t i = 0; i < r->n_tools; i++) {
		const char *u = r->tool_types[i] ? strrchr(r->tool_types[i], '_') : NULL;
		if (!u || u == r->tool_types[i] || !text_ok(u, strlen(u)))
			return -EINVAL;
	}
	if (r->schema) {
		cJSON *o = cJSON_ParseWithLength(r->schema, r->schema_len);
		bool ok = cJSON_IsObject(o);
		cJSON_Delete(o);
		if (!ok)
			return -EINVAL;
	}
	return 0;
}

static cJSON *json_string(const char *s, size_t n)
{
	char *z = malloc(n + 1);

	if (!z)
		return NULL;
	if (n)
		memcpy(z, s, n);
	z[n] = '\0';
	json_nul_mark(z, n);
	cJSON *item = cJSON_CreateString(z);
	free(z);
	return item;
}

/* Adds item to obj under key; item is owned by obj afterwards or freed. */
static bool json_add(cJSON *obj, const char *key, cJSON *item)
{
	if (!item)
		return false;
	if (!cJSON_AddItemToObject(obj, key, item)) {
		cJSON_Delete(item);
		return false;
	}
	return true;
}

/* Integers go out as raw text: cJSON prints numbers through a double and
 * valueint, which turns large values into "1e+15"-style output. */
static bool json_add_int(cJSON *obj, const char *key, int64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%" PRId64, v);
	return cJSON_AddRawToObject(obj, key, num) != NULL;
}

/* The content of a message or the system prompt.  A plain string is shorter and
 * means the same single text block, so the block form is used only when it has
 * to carry a cache_control breakpoint. */
/* Raw blocks stand in the tree as this one control byte, which cJSON never
 * prints itself (it escapes control characters in strings): wire_request_build
 * puts each block's JSON in its place, in order, after printing. */
#define RAW_MARK '\x01'

static cJSON *json_content(const char *s, size_t n, bool cache_mark, size_t n_pre)
{
	if (!cache_mark && !n_pre)
		return json_string(s, n);

	cJSON *arr = cJSON_CreateArray();
	cJSON *block = cJSON_CreateObject();
	cJSON *cc;

	for (size_t i = 0; arr && i < n_pre; i++)
		if (!cJSON_AddItemToArray(arr, cJSON_CreateRaw("\x01"))) {
			cJSON_Delete(arr);
			arr = NULL;
		}
	if (!arr || !block || !cJSON_AddItemToArray(arr, block)) {
		cJSON_Delete(arr);
		cJSON_Delete(block);
		return NULL;
	}
	if (!cJSON_AddStringToObject(block, "type", "text") ||
	    !json_add(block, "text", json_string(s, n)) ||
	    (cache_mark && (!(cc = cJSON_AddObjectToObject(block, "cache_control")) ||
			    !cJSON_AddStringToObject(cc, "type", "ephemeral")))) {
		cJSON_Delete(arr);
		return NULL;
	}
	return arr;
}

/* The system prompt (when there is one) and the second block, as a list of
 * text blocks, each with its breakpoint when system_cache_mark. */
static cJSON *json_system2(const struct wire_request *r)
{
	cJSON *arr = cJSON_CreateArray();
	const char *t[2] = {r->system, r->system2};
	size_t n[2] = {r->system ? r->system_len : 0, r->system2_len};
	for (int i = 0; arr && i < 2; i++) {
		if (!n[i])
			continue;
		cJSON *one = r->system_cache_mark ? json_content(t[i], n[i], true, 0) : NULL;
		cJSON *block = one ? cJSON_DetachItemFromArray(one, 0) : cJSON_CreateObject();
		cJSON_Delete(one);
		if (block && !r->system_cache_mark &&
		    (!cJSON_AddStringToObject(block, "type", "text") ||
		     !json_add(block, "text", json_string(t[i], n[i])))) {
			cJSON_Delete(block);
			block = NULL;
		}
		if (!block || !cJSON_AddItemToArray(arr, block)) {
			cJSON_Delete(block);
			cJSON_Delete(arr);
			return NULL;
		}
	}
	return arr;
}

/* A copy of a message's blocks, the breakpoint on its last text block. */
static cJSON *json_blocks(const cJSON *blocks, bool cache_mark)
{
	cJSON *arr = cJSON_Duplicate(blocks, true), *mark = NULL, *it, *cc;
	cJSON *scan = cache_mark ? arr : NULL;
	cJSON_ArrayForEach(it, scan)
	{
		const cJSON *ty = cJSON_GetObjectItemCaseSensitive(it, "type");
		if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "text"))
			mark = it;
	}
	if (mark && (!(cc = cJSON_AddObjectToObject(mark, "cache_control")) ||
		     !cJSON_AddStringToObject(cc, "type", "ephemeral"))) {
		cJSON_Delete(arr);
		return NULL;
	}
	return arr;
}

static cJSON *json_messages(const struct wire_request *r)
{
	cJSON *arr = cJSON_CreateArray();

	if (!arr)
		return NULL;
	for (size_t i = 0; i < r->n_messages; i++) {
		const struct wire_message *m = &r->messages[i];
		cJSON *obj = cJSON_CreateObject();

		if (!obj || !cJSON_AddItemToArray(arr, obj)) {
			cJSON_Delete(obj);
			goto fail;
		}
		if (!cJSON_AddStringToObject(obj, "role", m->assistant ? "assistant" : "user") ||
		    !json_add(obj, "content",
			      m->blocks ? json_blocks(m->blocks, m->cache_mark)
					: json_content(m->text, m->len, m->cache_mark, m->n_pre)))
			goto fail;
	}
	return arr;
fail:
	cJSON_Delete(arr);
	return NULL;
}

static bool json_add_thinking(cJSON *root, const struct wire_request *r)
{
	cJSON *t = cJSON_AddObjectToObject(root, "thinking");

	if (r->thinking_adaptive)
		return t && cJSON_AddStringToObject(t, "type", "adaptive");
	return t && cJSON_AddStringToObject(t, "type", "enabled") &&
	       json_add_int(t, "budget_tokens", r->thinking_budget);
}

/* output_config: the effort level and the structured output's format, each
 * when set. */
static bool json_add_output_config(cJSON *root, const struct wire_request *r)
{
	cJSON *o = cJSON_AddObjectToObject(root, "output_config");
	cJSON *f;

	if (!o || (r->effort && !cJSON_AddStringToObject(o, "effort", r->effort)))
		return false;
	if (!r->schema)
		return true;
	return (f = cJSON_AddObjectToObject(o, "format")) &&
	       cJSON_AddStringToObject(f, "type", "json_schema") &&
	       json_add(f, "schema", cJSON_ParseWithLength(r->schema, r->schema_len));
}

/* "tools": one {"type","name"} per server tool. */
static cJSON *json_tools(const struct wire_request *r)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; arr && i < r->n_tools; i++) {
		const char *t = r->tool_types[i];
		size_t n = (size_t)(strrchr(t, '_') - t);
		cJSON *tool = cJSON_CreateObject();
		if (!tool || !cJSON_AddItemToArray(arr, tool)) {
			cJSON_Delete(tool);
			cJSON_Delete(arr);
			return NULL;
		}
		if (!cJSON_AddStringToObject(tool, "type", t) ||
		    !json_add(tool, "name", json_string(t, n))) {
			cJSON_Delete(arr);
			return NULL;
		}
	}
	return arr;
}

/* The field order is fixed (cJSON keeps insertion order): the same conversation
 * must give the same bytes every time. */
static cJSON *wire_request_json(const struct wire_request *r)
{
	cJSON *root = cJSON_CreateObject();
	bool ok = root && cJSON_AddStringToObject(root, "model", r->model) &&
		  json_add_int(root, "max_tokens", r->max_tokens);

	if (ok && !isnan(r->temperature))
		ok = cJSON_AddNumberToObject(root, "temperature", r->temperature) != NULL;
	if (ok && r->system2 && r->system2_len)
		ok = json_add(root, "system", json_system2(r));
	else if (ok && r->system && r->system_len)
		ok = json_add(root, "system",
			      json_content(r->system, r->system_len, r->system_cache_mark, 0));
	if (ok)
		ok = json_add(root, "messages", json_messages(r));
	if (ok && (r->thinking_adaptive || r->thinking_budget > 0))
		ok = json_add_thinking(root, r);
	if (ok && r->n_tools)
		ok = json_add(root, "tools", json_tools(r));
	if (ok && (r->effort || r->schema))
		ok = json_add_output_config(root, r);
	if (ok)
		ok = cJSON_AddBoolToObject(root, "stream", r->stream) != NULL;
	if (!ok) {
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

/* The printed body with each RAW_MARK replaced by its raw block. */
static int splice_raw(const struct wire_request *r, const char *s, size_t n, struct buf *out)
{
	size_t total = n, m = 0, k = 0;
	for (size_t i = 0; i < r->n_messages; i++)
		for (size_t j = 0; j < r->messages[i].n_pre; j++)
			total += r->messages[i].pre[j].len;
	bool large = total - n >= (1u << 20);
	int rc =
	    large ? buf_reserve_exact(out, out->len + total) : buf_reserve(out, out->len + total);
	if (rc == 0 && large) {
		/* Megabytes of attachments land in fresh memory: its pages are
		 * populated in one call, not by a fault every 4 KiB (buf.c). */
		uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
		uintptr_t from = ((uintptr_t)out->data + out->len + pg - 1) & ~(pg - 1);
		uintptr_t to = ((uintptr_t)out->data + out->len + total) & ~(pg - 1);
		if (to > from)
			madvise((void *)from, to - from, MADV_POPULATE_WRITE);
	}
	const char *p = s, *end = s + n, *q;
	while (rc == 0 && (q = memchr(p, RAW_MARK, (size_t)(end - p)))) {
		while (m < r->n_messages && k >= r->messages[m].n_pre) {
			m++;
			k = 0;
		}
		if (m == r->n_messages)
			return -EINVAL;
		rc = json_nul_print(p, (size_t)(q - p), out);
		if (rc == 0)
			rc = buf_append(out, r->messages[m].pre[k].json, r->messages[m].pre[k].len);
		k++;
		p = q + 1;
	}
	if (rc == 0)
		rc = json_nul_print(p, (size_t)(end - p), out);
	return rc;
}

int wire_request_build(const struct wire_request *r, struct buf *out)
{
	int rc = wire_request_check(r);

	if (rc < 0)
		return rc;
	cJSON *root = wire_request_json(r);
	if (!root)
		return -ENOMEM;
	char *s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!s)
		return -ENOMEM;
	rc = splice_raw(r, s, strlen(s), out);
	cJSON_free(s);
	return rc;
}
