/* wire.c — the Messages API's JSON both ways (see wire.h), and the small
 * api_error helpers (see api_error.h).
 *
 * Every cJSON tree is built or parsed, copied out and deleted inside one call.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mcpfs/utf8.h"
#include "mcpfs/wire.h"

/* ---- api_error ---------------------------------------------------------- */

void api_error_clear(struct api_error *e)
{
	memset(e, 0, sizeof(*e));
	e->retry_after_ms = -1;
}

/* Copies at most size - 1 bytes of s and never ends inside a UTF-8 character,
 * so a truncated message is still text. */
static void copy_human(char *dst, size_t size, const char *s, size_t n)
{
	if (n > size - 1)
		n = utf8_complete_prefix(s, size - 1);
	memcpy(dst, s, n);
	dst[n] = '\0';
}

void api_error_set(struct api_error *e, const char *type, const char *fmt, ...)
{
	va_list ap;

	copy_human(e->type, sizeof(e->type), type, strlen(type));
	va_start(ap, fmt);
	int n = vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	if (n < 0)
		e->message[0] = '\0';
	else if ((size_t)n >= sizeof(e->message))
		e->message[utf8_complete_prefix(e->message, strlen(e->message))] = '\0';
}

bool api_error_status_retryable(int http_status)
{
	return http_status == 408 || http_status == 409 || http_status == 429 ||
	       http_status >= 500;
}

bool wire_error_type_retryable(const char *type)
{
	static const char *const retryable[] = {
		"overloaded_error", "api_error", "rate_limit_error", "timeout_error",
	};

	if (!type)
		return false;
	for (size_t i = 0; i < sizeof(retryable) / sizeof(retryable[0]); i++)
		if (strcmp(type, retryable[i]) == 0)
			return true;
	return false;
}

/* ---- request ------------------------------------------------------------ */

/* cJSON strings end at the first NUL, so a NUL byte would silently cut the text:
 * it is refused like bad UTF-8. */
static bool text_ok(const char *s, size_t n)
{
	if (!s)
		return n == 0;
	return utf8_valid(s, n) && !memchr(s, '\0', n);
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
	if (r->system && !text_ok(r->system, r->system_len))
		return -EINVAL;
	for (size_t i = 0; i < r->n_messages; i++)
		if (!text_ok(r->messages[i].text, r->messages[i].len))
			return -EINVAL;
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
static cJSON *json_content(const char *s, size_t n, bool cache_mark)
{
	if (!cache_mark)
		return json_string(s, n);

	cJSON *arr = cJSON_CreateArray();
	cJSON *block = cJSON_CreateObject();
	cJSON *cc;

	if (!arr || !block || !cJSON_AddItemToArray(arr, block)) {
		cJSON_Delete(arr);
		cJSON_Delete(block);
		return NULL;
	}
	if (!cJSON_AddStringToObject(block, "type", "text") ||
	    !json_add(block, "text", json_string(s, n)) ||
	    !(cc = cJSON_AddObjectToObject(block, "cache_control")) ||
	    !cJSON_AddStringToObject(cc, "type", "ephemeral")) {
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
		    !json_add(obj, "content", json_content(m->text, m->len, m->cache_mark)))
			goto fail;
	}
	return arr;
fail:
	cJSON_Delete(arr);
	return NULL;
}

static bool json_add_thinking(cJSON *root, int64_t budget)
{
	cJSON *t = cJSON_AddObjectToObject(root, "thinking");

	return t && cJSON_AddStringToObject(t, "type", "enabled") &&
	       json_add_int(t, "budget_tokens", budget);
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
	if (ok && r->system && r->system_len)
		ok = json_add(root, "system",
			      json_content(r->system, r->system_len, r->system_cache_mark));
	if (ok)
		ok = json_add(root, "messages", json_messages(r));
	if (ok && r->thinking_budget > 0)
		ok = json_add_thinking(root, r->thinking_budget);
	if (ok)
		ok = cJSON_AddBoolToObject(root, "stream", r->stream) != NULL;
	if (!ok) {
		cJSON_Delete(root);
		return NULL;
	}
	return root;
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
	rc = buf_puts(out, s);
	cJSON_free(s);
	return rc;
}

/* ---- stream events ------------------------------------------------------ */

static const char *json_str(const cJSON *obj, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* A token count.  cJSON's valueint saturates at INT_MAX, so counts are read from
 * valuedouble, which is exact up to 2^53.  1 present, 0 absent or null, -EINVAL. */
static int json_count(const cJSON *obj, const char *key, int64_t *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (!it || cJSON_IsNull(it))
		return 0;
	if (!cJSON_IsNumber(it))
		return -EINVAL;
	double d = it->valuedouble;
	if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(int64_t)d)
		return -EINVAL;
	*out = (int64_t)d;
	return 1;
}

/* message_delta's usage is cumulative and may repeat only some fields, so each
 * field is taken only when present and marked so; the caller assigns, never adds. */
static int decode_usage(const cJSON *usage, struct wire_usage *u)
{
	static const char *const keys[] = {
		"input_tokens", "output_tokens", "cache_creation_input_tokens",
		"cache_read_input_tokens",
	};
	static const unsigned bits[] = {
		WIRE_USAGE_INPUT, WIRE_USAGE_OUTPUT, WIRE_USAGE_CACHE_CREATION,
		WIRE_USAGE_CACHE_READ,
	};
	int64_t *dst[] = {
		&u->input_tokens, &u->output_tokens, &u->cache_creation_input_tokens,
		&u->cache_read_input_tokens,
	};

	if (!usage || cJSON_IsNull(usage))
		return 0;
	if (!cJSON_IsObject(usage))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		int r = json_count(usage, keys[i], dst[i]);
		if (r < 0)
			return r;
		if (r)
			u->present |= bits[i];
	}
	return 0;
}

static int decode_index(const cJSON *root, struct wire_event *ev)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "index");

	if (!cJSON_IsNumber(it))
		return -EINVAL;
	double d = it->valuedouble;
	if (!(d >= 0 && d <= INT_MAX) || d != (double)(int)d)
		return -EINVAL;
	ev->index = (int)d;
	return 0;
}

/* Copies obj's string member key into dst.  An id or a model name that does not
 * fit is refused rather than cut: a cut id would name another message.  Absent
 * (or null) leaves "" when !required. */
static int copy_field(const cJSON *obj, const char *key, char *dst, size_t size, bool required)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	dst[0] = '\0';
	if (!it || cJSON_IsNull(it))
		return required ? -EINVAL : 0;
	if (!cJSON_IsString(it))
		return -EINVAL;
	size_t n = strlen(it->valuestring);
	if (n >= size || !utf8_valid(it->valuestring, n))
		return -EINVAL;
	memcpy(dst, it->valuestring, n + 1);
	return 0;
}

/* Copies obj's string member key into ev->text.  cJSON does not check the UTF-8
 * of raw bytes in strings; what leaves here is checked text. */
static int take_text(const cJSON *obj, const char *key, struct wire_event *ev, bool required)
{
	const char *s = json_str(obj, key);

	if (!s) {
		if (cJSON_GetObjectItemCaseSensitive(obj, key) || required)
			return -EINVAL;
		return 0;
	}
	size_t n = strlen(s);
	if (!utf8_valid(s, n))
		return -EINVAL;
	ev->text = malloc(n + 1);
	if (!ev->text)
		return -ENOMEM;
	memcpy(ev->text, s, n + 1);
	ev->text_len = n;
	return 0;
}

static int decode_message_start(const cJSON *root, struct wire_event *ev)
{
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "message");

	if (!cJSON_IsObject(msg))
		return -EINVAL;
	int r = copy_field(msg, "id", ev->message_id, sizeof(ev->message_id), false);
	if (r == 0)
		r = copy_field(msg, "model", ev->model, sizeof(ev->model), false);
	if (r == 0)
		r = decode_usage(cJSON_GetObjectItemCaseSensitive(msg, "usage"), &ev->usage);
	return r;
}

static int decode_block_start(const cJSON *root, struct wire_event *ev)
{
	const cJSON *cb = cJSON_GetObjectItemCaseSensitive(root, "content_block");
	const char *type = cJSON_IsObject(cb) ? json_str(cb, "type") : NULL;

	if (decode_index(root, ev) < 0 || !type)
		return -EINVAL;
	if (strcmp(type, "text") == 0) {
		ev->block = WIRE_BLOCK_TEXT;
		return take_text(cb, "text", ev, false);
	}
	if (strcmp(type, "thinking") == 0) {
		ev->block = WIRE_BLOCK_THINKING;
		return take_text(cb, "thinking", ev, false);
	}
	ev->block = WIRE_BLOCK_OTHER;
	return 0;
}

static int decode_block_delta(const cJSON *root, struct wire_event *ev)
{
	static const struct {
		const char *type;
		enum wire_block block;
		const char *field;
	} deltas[] = {
		{ "text_delta", WIRE_BLOCK_TEXT, "text" },
		{ "thinking_delta", WIRE_BLOCK_THINKING, "thinking" },
		{ "signature_delta", WIRE_BLOCK_SIGNATURE, "signature" },
	};
	const cJSON *delta = cJSON_GetObjectItemCaseSensitive(root, "delta");
	const char *type = cJSON_IsObject(delta) ? json_str(delta, "type") : NULL;

	if (decode_index(root, ev) < 0 || !type)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
		if (strcmp(type, deltas[i].type) == 0) {
			ev->block = deltas[i].block;
			return take_text(delta, deltas[i].field, ev, true);
		}
	}
	/* input_json_delta, citations_delta and any later kind: the caller keeps
	 * only text and thinking, so their payload is not copied. */
	ev->block = WIRE_BLOCK_OTHER;
	return 0;
}

static int decode_block_stop(const cJSON *root, struct wire_event *ev)
{
	return decode_index(root, ev);
}

static int decode_message_delta(const cJSON *root, struct wire_event *ev)
{
	const cJSON *delta = cJSON_GetObjectItemCaseSensitive(root, "delta");

	if (!cJSON_IsObject(delta))
		return -EINVAL;
	int r = copy_field(delta, "stop_reason", ev->stop_reason, sizeof(ev->stop_reason), false);
	if (r == 0)
		r = decode_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), &ev->usage);
	return r;
}

static int decode_error(const cJSON *root, struct wire_event *ev)
{
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
	const char *type = cJSON_IsObject(err) ? json_str(err, "type") : NULL;
	const char *msg = type ? json_str(err, "message") : NULL;
	const char *rid = json_str(root, "request_id");

	if (!type)
		return -EINVAL;
	copy_human(ev->error.type, sizeof(ev->error.type), type, strlen(type));
	if (msg)
		copy_human(ev->error.message, sizeof(ev->error.message), msg, strlen(msg));
	if (rid)
		copy_human(ev->error.request_id, sizeof(ev->error.request_id), rid, strlen(rid));
	ev->error.retryable = wire_error_type_retryable(ev->error.type);
	return 0;
}

typedef int wire_decode_fn(const cJSON *root, struct wire_event *ev);

static const struct {
	const char *name;
	enum wire_event_type type;
	wire_decode_fn *decode;
} wire_events[] = {
	{ "message_start", WIRE_MESSAGE_START, decode_message_start },
	{ "content_block_start", WIRE_BLOCK_START, decode_block_start },
	{ "content_block_delta", WIRE_BLOCK_DELTA, decode_block_delta },
	{ "content_block_stop", WIRE_BLOCK_STOP, decode_block_stop },
	{ "message_delta", WIRE_MESSAGE_DELTA, decode_message_delta },
	{ "message_stop", WIRE_MESSAGE_STOP, NULL },
	{ "ping", WIRE_PING, NULL },
	{ "error", WIRE_ERROR, decode_error },
};

/* The entry named by the JSON's "type", or failing that by the SSE event name;
 * -1 for a type this version does not know. */
static int wire_event_kind(const cJSON *root, const char *name, size_t name_len)
{
	const char *type = json_str(root, "type");

	for (size_t i = 0; i < sizeof(wire_events) / sizeof(wire_events[0]); i++) {
		const char *k = wire_events[i].name;

		if (type ? strcmp(type, k) == 0
			 : name && strlen(k) == name_len && memcmp(name, k, name_len) == 0)
			return (int)i;
	}
	return -1;
}

/* An event named as none we know, whose data is not even JSON: new event types
 * may be added to the stream at any time, and the SDKs skip them unread. */
static bool wire_event_foreign(const char *name, size_t name_len)
{
	if (!name || !name_len || (name_len == 7 && !memcmp(name, "message", 7)))
		return false;
	for (size_t i = 0; i < sizeof(wire_events) / sizeof(wire_events[0]); i++)
		if (strlen(wire_events[i].name) == name_len &&
		    !memcmp(wire_events[i].name, name, name_len))
			return false;
	return true;
}

int wire_event_decode(const char *name, size_t name_len, const char *data, size_t len,
		      struct wire_event *ev)
{
	int r = wire_text_delta_fast(data, len, ev);

	if (r != 0)
		return r < 0 ? r : 0;
	return wire_event_decode_json(name, name_len, data, len, ev);
}

int wire_event_decode_json(const char *name, size_t name_len, const char *data, size_t len,
			   struct wire_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->index = -1;
	api_error_clear(&ev->error);

	cJSON *root = data ? cJSON_ParseWithLength(data, len) : NULL;
	int r = 0;

	if (!cJSON_IsObject(root) && wire_event_foreign(name, name_len)) {
		ev->type = WIRE_UNKNOWN;
		goto out;
	}
	if (!cJSON_IsObject(root) ||
	    (cJSON_GetObjectItemCaseSensitive(root, "type") && !json_str(root, "type"))) {
		r = -EINVAL;
		goto out;
	}
	int k = wire_event_kind(root, name, name_len);
	ev->type = k < 0 ? WIRE_UNKNOWN : wire_events[k].type;
	if (k >= 0 && wire_events[k].decode)
		r = wire_events[k].decode(root, ev);
out:
	cJSON_Delete(root);
	if (r < 0)
		wire_event_done(ev);
	return r;
}

void wire_event_done(struct wire_event *ev)
{
	if (!ev)
		return;
	free(ev->text);
	ev->text = NULL;
	ev->text_len = 0;
}

/* ---- HTTP error bodies -------------------------------------------------- */

static bool wire_error_json(const char *body, size_t len, struct api_error *e)
{
	cJSON *root = cJSON_ParseWithLength(body, len);
	const cJSON *err = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "error")
						: NULL;
	const char *type = cJSON_IsObject(err) ? json_str(err, "type") : NULL;
	const char *msg = type ? json_str(err, "message") : NULL;
	const char *rid = type ? json_str(root, "request_id") : NULL;

	if (type) {
		copy_human(e->type, sizeof(e->type), type, strlen(type));
		msg = msg ? msg : "";
		copy_human(e->message, sizeof(e->message), msg, strlen(msg));
		if (rid && !e->request_id[0])
			copy_human(e->request_id, sizeof(e->request_id), rid, strlen(rid));
	}
	cJSON_Delete(root);
	return type != NULL;
}

/* Length of the one UTF-8 character at s, or 0 when the bytes there are not one. */
static size_t char_len(const char *s, size_t n)
{
	for (size_t k = 1; k <= 4 && k <= n; k++)
		if (utf8_valid(s, k))
			return k;
	return 0;
}

/* A proxy's error page (Cloudflare's HTML 413) is not the API's JSON.  Its start,
 * on one line, is what tells a human who answered: control bytes and runs of
 * them become one space, bytes that are not UTF-8 become '?', and a cut falls
 * between characters, so the message stays printable text. */
static void wire_error_quote(int status, const char *body, size_t len, char *msg, size_t size)
{
	size_t head = (size_t)snprintf(msg, size, "HTTP %d: \"", status);
	size_t room = size - head - strlen("...\"") - 1, o = head;
	size_t n = len <= room ? len : utf8_complete_prefix(body, room);
	bool space = true;

	for (size_t i = 0; i < n;) {
		size_t k = char_len(body + i, n - i);
		unsigned char c = k ? (unsigned char)body[i] : '?';

		if (k > 1) {
			memcpy(msg + o, body + i, k);
			o += k;
			i += k;
			space = false;
			continue;
		}
		i++;
		if (c < 0x20 || c == 0x7f)
			c = ' ';
		if (c == ' ' && space)
			continue;
		space = c == ' ';
		msg[o++] = (char)c;
	}
	while (o > head && msg[o - 1] == ' ')
		o--;
	snprintf(msg + o, size - o, "%s\"", n < len ? "..." : "");
}

void wire_error_decode(int status, const char *body, size_t len, struct api_error *e)
{
	e->http_status = status;
	e->retryable = api_error_status_retryable(status);
	if (body && len && wire_error_json(body, len, e))
		return;
	copy_human(e->type, sizeof(e->type), "http_error", strlen("http_error"));
	if (!body || !len)
		snprintf(e->message, sizeof(e->message), "HTTP %d with an empty body", status);
	else
		wire_error_quote(status, body, len, e->message, sizeof(e->message));
}
