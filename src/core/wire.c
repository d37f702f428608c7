/* wire.c — the Messages API's JSON coming back: stream events and error bodies
 * (see wire.h; requests are built by wire_request.c; api_error_* is api_error.c).
 *
 * Every cJSON tree is built or parsed, copied out and deleted inside one call.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mcpfs/json_nul.h"
#include "mcpfs/utf8.h"
#include "mcpfs/wire.h"

bool wire_error_type_retryable(const char *type)
{
	static const char *const retryable[] = {
	    "overloaded_error",
	    "api_error",
	    "rate_limit_error",
	    "timeout_error",
	};

	if (!type)
		return false;
	for (size_t i = 0; i < sizeof(retryable) / sizeof(retryable[0]); i++)
		if (strcmp(type, retryable[i]) == 0)
			return true;
	return false;
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
	    "input_tokens",
	    "output_tokens",
	    "cache_creation_input_tokens",
	    "cache_read_input_tokens",
	};
	static const unsigned bits[] = {
	    WIRE_USAGE_INPUT,
	    WIRE_USAGE_OUTPUT,
	    WIRE_USAGE_CACHE_CREATION,
	    WIRE_USAGE_CACHE_READ,
	};
	int64_t *dst[] = {
	    &u->input_tokens,
	    &u->output_tokens,
	    &u->cache_creation_input_tokens,
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
 * of raw bytes in strings: wire_event_decode_json() checks the text, once its
 * NULs are back (json_nul.h). */
static int take_text(const cJSON *obj, const char *key, struct wire_event *ev, bool required)
{
	const char *s = json_str(obj, key);

	if (!s) {
		if (cJSON_GetObjectItemCaseSensitive(obj, key) || required)
			return -EINVAL;
		return 0;
	}
	size_t n = strlen(s);
	ev->text = malloc(n + 1);
	if (!ev->text)
		return -ENOMEM;
	memcpy(ev->text, s, n + 1);
	ev->text_len = n;
	return 0;
}

/* Prints a block or delta that is neither text nor thinking into ev->raw for
 * the caller (reply.c keeps every block of a reply).  Its strings are still
 * marked (json_nul.h) when the event had a \u0000: they are printed back as
 * \u0000 by wire_event_decode_json(). */
static int take_raw(const cJSON *obj, struct wire_event *ev)
{
	ev->raw = cJSON_PrintUnformatted(obj);
	if (!ev->raw)
		return -ENOMEM;
	ev->raw_len = strlen(ev->raw);
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
	return take_raw(cb, ev);
}

static int decode_block_delta(const cJSON *root, struct wire_event *ev)
{
	static const struct {
		const char *type;
		enum wire_block block;
		const char *field;
	} deltas[] = {
	    {"text_delta", WIRE_BLOCK_TEXT, "text"},
	    {"thinking_delta", WIRE_BLOCK_THINKING, "thinking"},
	    {"signature_delta", WIRE_BLOCK_SIGNATURE, "signature"},
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
	/* input_json_delta, citations_delta and any later kind: the caller
	 * reads what it knows of them from the printed delta. */
	ev->block = WIRE_BLOCK_OTHER;
	return take_raw(delta, ev);
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
	api_error_copy(ev->error.type, sizeof(ev->error.type), type, strlen(type));
	if (msg)
		api_error_copy(ev->error.message, sizeof(ev->error.message), msg, strlen(msg));
	if (rid)
		api_error_copy(ev->error.request_id, sizeof(ev->error.request_id), rid,
			       strlen(rid));
	ev->error.retryable = wire_error_type_retryable(ev->error.type);
	return 0;
}

typedef int wire_decode_fn(const cJSON *root, struct wire_event *ev);

static const struct {
	const char *name;
	enum wire_event_type type;
	wire_decode_fn *decode;
} wire_events[] = {
    {"message_start", WIRE_MESSAGE_START, decode_message_start},
    {"content_block_start", WIRE_BLOCK_START, decode_block_start},
    {"content_block_delta", WIRE_BLOCK_DELTA, decode_block_delta},
    {"content_block_stop", WIRE_BLOCK_STOP, decode_block_stop},
    {"message_delta", WIRE_MESSAGE_DELTA, decode_message_delta},
    {"message_stop", WIRE_MESSAGE_STOP, NULL},
    {"ping", WIRE_PING, NULL},
    {"error", WIRE_ERROR, decode_error},
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

	/* A \u0000 crosses cJSON as a mark (json_nul.h), which needs an event of
	 * valid UTF-8 (its text has to be anyway). */
	struct buf hidden;
	bool hide = data && json_nul_escaped(data, len), bad = hide && !utf8_valid(data, len);
	buf_init(&hidden, len + 1);
	if (hide && !bad && json_nul_hide(data, len, &hidden) < 0) {
		buf_done(&hidden);
		return -ENOMEM;
	}
	cJSON *root = !data || bad ? NULL
		      : hide	   ? cJSON_ParseWithLength(hidden.data, hidden.len)
				   : cJSON_ParseWithLength(data, len);
	buf_done(&hidden);
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
	if (r == 0 && ev->text) {
		if (hide)
			json_nul_show(ev->text, ev->text_len);
		if (!utf8_valid(ev->text, ev->text_len))
			r = -EINVAL;
	}
	if (r == 0 && ev->raw && hide) {
		struct buf shown;
		buf_init(&shown, SIZE_MAX / 2);
		r = json_nul_print(ev->raw, ev->raw_len, &shown);
		free(ev->raw);
		ev->raw = r == 0 ? buf_steal(&shown, &ev->raw_len) : NULL;
		buf_done(&shown);
		if (r == 0 && !ev->raw)
			r = -ENOMEM;
	}
	if (r == 0 && ev->raw && !utf8_valid(ev->raw, ev->raw_len))
		r = -EINVAL;
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
	free(ev->raw);
	ev->raw = NULL;
	ev->raw_len = 0;
}

/* ---- HTTP error bodies -------------------------------------------------- */

static bool wire_error_json(const char *body, size_t len, struct api_error *e)
{
	cJSON *root = cJSON_ParseWithLength(body, len);
	const cJSON *err =
	    cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "error") : NULL;
	const char *type = cJSON_IsObject(err) ? json_str(err, "type") : NULL;
	const char *msg = type ? json_str(err, "message") : NULL;
	const char *rid = type ? json_str(root, "request_id") : NULL;

	if (type) {
		api_error_copy(e->type, sizeof(e->type), type, strlen(type));
		msg = msg ? msg : "";
		api_error_copy(e->message, sizeof(e->message), msg, strlen(msg));
		if (rid && !e->request_id[0])
			api_error_copy(e->request_id, sizeof(e->request_id), rid, strlen(rid));
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
	api_error_copy(e->type, sizeof(e->type), "http_error", strlen("http_error"));
	if (!body || !len)
		snprintf(e->message, sizeof(e->message), "HTTP %d with an empty body", status);
	else
		wire_error_quote(status, body, len, e->message, sizeof(e->message));
}

void wire_usage_add(struct wire_usage *to, const struct wire_usage *from)
{
	to->input_tokens += from->input_tokens;
	to->output_tokens += from->output_tokens;
	to->cache_creation_input_tokens += from->cache_creation_input_tokens;
	to->cache_read_input_tokens += from->cache_read_input_tokens;
	to->present |= from->present;
}
