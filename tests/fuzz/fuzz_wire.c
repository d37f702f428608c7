/* fuzz_wire.c — the Messages-API JSON (src/core/wire.c).
 *
 * One input is read three ways:
 *  - events: "NAME LF DATA" (no LF: no name, all data) for wire_event_decode,
 *    and the whole input as data without a name.  Checked: the answer (code and
 *    every field) equals wire_event_decode_json's, so the text_delta fast path
 *    can never differ from cJSON; the JSON's "type"
 *    (else the name) decides the kind; a non-object or a non-string "type" is
 *    -EINVAL, except that an event named as no known kind is skipped whatever
 *    its data; an unknown kind decodes; every field keeps its contract (checked
 *    UTF-8 text equal to the JSON's, NUL-terminated arrays, index and block only
 *    where they belong) and nothing is left allocated after a failure;
 *  - an HTTP error body: two bytes of status, then the body, for
 *    wire_error_decode.  Checked: status and retry rule; the API's error JSON
 *    gives its type, anything else "http_error" and a printable one-line
 *    message; a request id already known is kept;
 *  - a request: a header (flags, roles, cache marks, temperature, max_tokens,
 *    thinking budget), then model, system and message texts separated by 0xFF
 *    (a byte that is never UTF-8).  Checked: wire_request_build refuses exactly
 *    the invalid requests (an independent UTF-8 decoder judges the texts); what
 *    it builds parses back with cJSON to the same strings and numbers, fields in
 *    the fixed order, the same bytes on every call, and the body of the first
 *    k messages is a byte prefix of the body of all of them (prompt caching).
 */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mcpfs/json_nul.h"
#include "mcpfs/wire.h"
#include "fuzz.h"

#define MAX_MESSAGES 16

/* --- an independent UTF-8 decoder (RFC 3629) ------------------------------------ */

static bool ref_utf8_valid(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t k;

		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if ((s[i] & 0xE0) == 0xC0) {
			k = 2;
			cp = s[i] & 0x1F;
		} else if ((s[i] & 0xF0) == 0xE0) {
			k = 3;
			cp = s[i] & 0x0F;
		} else if ((s[i] & 0xF8) == 0xF0) {
			k = 4;
			cp = s[i] & 0x07;
		} else {
			return false;
		}
		if (n - i < k)
			return false;
		for (size_t j = 1; j < k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3F);
		}
		static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
		if (cp < min_cp[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += k;
	}
	return true;
}

static bool str_ok(const char *s, size_t n)
{
	return ref_utf8_valid((const uint8_t *)s, n);
}

/* A char array holds a NUL-terminated string. */
#define TERMINATED(arr) (memchr((arr), '\0', sizeof(arr)) != NULL)

/* --- events ---------------------------------------------------------------------- */

static const char *const kind_names[] = {
    [WIRE_MESSAGE_START] = "message_start",
    [WIRE_BLOCK_START] = "content_block_start",
    [WIRE_BLOCK_DELTA] = "content_block_delta",
    [WIRE_BLOCK_STOP] = "content_block_stop",
    [WIRE_MESSAGE_DELTA] = "message_delta",
    [WIRE_MESSAGE_STOP] = "message_stop",
    [WIRE_PING] = "ping",
    [WIRE_ERROR] = "error",
};

static enum wire_event_type kind_of(const char *s, size_t n)
{
	for (int k = WIRE_MESSAGE_START; k < WIRE_UNKNOWN; k++)
		if (s && strlen(kind_names[k]) == n && memcmp(kind_names[k], s, n) == 0)
			return (enum wire_event_type)k;
	return WIRE_UNKNOWN;
}

static const char *json_string_at(const cJSON *obj, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* The text a successful decode must have copied: the string at the event's
 * block or delta, NULL when there is none. */
static const char *expected_text(const cJSON *root, const struct wire_event *ev)
{
	static const char *const field[] = {
	    [WIRE_BLOCK_TEXT] = "text",
	    [WIRE_BLOCK_THINKING] = "thinking",
	    [WIRE_BLOCK_SIGNATURE] = "signature",
	};
	const char *key = ev->type == WIRE_BLOCK_START ? "content_block" : "delta";

	if ((ev->type != WIRE_BLOCK_START && ev->type != WIRE_BLOCK_DELTA) ||
	    ev->block == WIRE_BLOCK_NONE || ev->block == WIRE_BLOCK_OTHER)
		return NULL;
	return json_string_at(cJSON_GetObjectItemCaseSensitive(root, key), field[ev->block]);
}

static void check_fields(const struct wire_event *ev)
{
	bool block = ev->type == WIRE_BLOCK_START || ev->type == WIRE_BLOCK_DELTA ||
		     ev->type == WIRE_BLOCK_STOP;

	FUZZ_CHECK(ev->type >= WIRE_MESSAGE_START && ev->type <= WIRE_UNKNOWN);
	FUZZ_CHECK(block ? ev->index >= 0 : ev->index == -1);
	FUZZ_CHECK((ev->type == WIRE_BLOCK_START || ev->type == WIRE_BLOCK_DELTA) ==
		   (ev->block != WIRE_BLOCK_NONE));
	FUZZ_CHECK(TERMINATED(ev->message_id) && TERMINATED(ev->model) &&
		   TERMINATED(ev->stop_reason));
	FUZZ_CHECK(str_ok(ev->message_id, strlen(ev->message_id)));
	FUZZ_CHECK(str_ok(ev->model, strlen(ev->model)));
	FUZZ_CHECK(str_ok(ev->stop_reason, strlen(ev->stop_reason)));
	if (ev->type != WIRE_MESSAGE_START)
		FUZZ_CHECK(!ev->message_id[0] && !ev->model[0]);
	if (ev->type != WIRE_MESSAGE_DELTA)
		FUZZ_CHECK(!ev->stop_reason[0]);
	if (ev->type != WIRE_MESSAGE_START && ev->type != WIRE_MESSAGE_DELTA)
		FUZZ_CHECK(ev->usage.present == 0);
	FUZZ_CHECK((ev->usage.present & ~15u) == 0);
	const int64_t *count[] = {&ev->usage.input_tokens, &ev->usage.output_tokens,
				  &ev->usage.cache_creation_input_tokens,
				  &ev->usage.cache_read_input_tokens};
	for (int i = 0; i < 4; i++)
		if (ev->usage.present & (1u << i))
			FUZZ_CHECK(*count[i] >= 0 && *count[i] <= (INT64_C(1) << 53));
	FUZZ_CHECK(TERMINATED(ev->error.type) && TERMINATED(ev->error.message) &&
		   TERMINATED(ev->error.request_id));
	if (ev->type == WIRE_ERROR)
		FUZZ_CHECK(ev->error.retryable == wire_error_type_retryable(ev->error.type));
	else
		FUZZ_CHECK(!ev->error.type[0] && !ev->error.message[0] &&
			   !ev->error.request_id[0] && !ev->error.retryable);
	if (ev->text) {
		/* text_len long; a \u0000 is a NUL inside it (issue 17). */
		FUZZ_CHECK(ev->text[ev->text_len] == '\0' && strlen(ev->text) <= ev->text_len);
		FUZZ_CHECK(str_ok(ev->text, ev->text_len));
	} else {
		FUZZ_CHECK(ev->text_len == 0);
	}
	if (ev->type == WIRE_BLOCK_DELTA && ev->block != WIRE_BLOCK_OTHER)
		FUZZ_CHECK(ev->text != NULL);
}

/* The text_delta fast path (wire_delta.c) must answer exactly as cJSON does. */
static void check_same_as_json(const char *name, size_t name_len, const char *data, size_t len,
			       int r, const struct wire_event *ev)
{
	struct wire_event j;
	int rj = wire_event_decode_json(name, name_len, data, len, &j);

	FUZZ_CHECK(r == rj);
	if (r == 0) {
		FUZZ_CHECK(ev->type == j.type && ev->index == j.index && ev->block == j.block);
		FUZZ_CHECK(ev->text_len == j.text_len && !ev->text == !j.text);
		FUZZ_CHECK(!ev->text || memcmp(ev->text, j.text, j.text_len + 1) == 0);
		FUZZ_CHECK(!memcmp(ev->message_id, j.message_id, sizeof(j.message_id)) &&
			   !memcmp(ev->model, j.model, sizeof(j.model)) &&
			   !memcmp(ev->stop_reason, j.stop_reason, sizeof(j.stop_reason)) &&
			   !memcmp(&ev->usage, &j.usage, sizeof(j.usage)) &&
			   !memcmp(&ev->error, &j.error, sizeof(j.error)));
	}
	wire_event_done(&j);
}

static void check_event(const char *name, size_t name_len, const char *data, size_t len)
{
	struct wire_event ev;
	int r = wire_event_decode(name, name_len, data, len, &ev);
	check_same_as_json(name, name_len, data, len, r, &ev);
	cJSON *root = cJSON_ParseWithLength(data, len);
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
	const char *s = cJSON_IsString(type) ? type->valuestring : NULL;
	enum wire_event_type kind = s ? kind_of(s, strlen(s)) : kind_of(name, name_len);

	FUZZ_CHECK(r == 0 || r == -EINVAL);
	if (r < 0) {
		FUZZ_CHECK(ev.text == NULL);
	} else {
		check_fields(&ev);
		FUZZ_CHECK(ev.type == kind);
		const char *want = expected_text(root, &ev);
		if (want)
			FUZZ_CHECK(ev.text && strcmp(ev.text, want) == 0);
		else if (ev.type == WIRE_BLOCK_START || ev.type == WIRE_BLOCK_DELTA)
			FUZZ_CHECK(ev.text == NULL);
	}
	/* What must be refused, and what must decode, whatever else it holds.  An
	 * event named as none we know is skipped even when its data is no JSON
	 * object (new event types may appear; the SDKs skip them unread). */
	bool foreign = name && name_len && !(name_len == 7 && !memcmp(name, "message", 7)) &&
		       kind_of(name, name_len) == WIRE_UNKNOWN;
	if (!cJSON_IsObject(root) && foreign)
		FUZZ_CHECK(r == 0 && ev.type == WIRE_UNKNOWN);
	else if (!cJSON_IsObject(root) || (type && !s))
		FUZZ_CHECK(r == -EINVAL);
	else if (kind == WIRE_UNKNOWN || kind == WIRE_PING || kind == WIRE_MESSAGE_STOP)
		FUZZ_CHECK(r == 0);
	cJSON_Delete(root);
	wire_event_done(&ev);
	FUZZ_CHECK(ev.text == NULL);
}

/* --- HTTP error bodies ------------------------------------------------------------- */

static bool printable_line(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7F)
			return false;
	return true;
}

/* copy_human's promise: a prefix of the source that is still valid UTF-8 when
 * the source was. */
static void check_copied(const char *got, const char *src)
{
	FUZZ_CHECK(strncmp(got, src, strlen(got)) == 0);
	if (str_ok(src, strlen(src)))
		FUZZ_CHECK(str_ok(got, strlen(got)));
}

static void check_error(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	int status = (int)(int16_t)fuzz_bytes(&in, 2);
	const char *body = (const char *)in.p;
	size_t len = in.n;
	bool known_id = status & 1;
	struct api_error e;

	api_error_clear(&e);
	if (known_id)
		snprintf(e.request_id, sizeof(e.request_id), "req_known");
	wire_error_decode(status, len ? body : NULL, len, &e);
	FUZZ_CHECK(e.http_status == status);
	FUZZ_CHECK(e.retryable == api_error_status_retryable(status));
	FUZZ_CHECK(TERMINATED(e.type) && TERMINATED(e.message) && TERMINATED(e.request_id));
	if (known_id)
		FUZZ_CHECK(strcmp(e.request_id, "req_known") == 0);

	cJSON *root = len ? cJSON_ParseWithLength(body, len) : NULL;
	const cJSON *err =
	    cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "error") : NULL;
	const char *type = cJSON_IsObject(err) ? json_string_at(err, "type") : NULL;
	if (type) {
		const char *msg = json_string_at(err, "message");
		const char *rid = json_string_at(root, "request_id");

		check_copied(e.type, type);
		check_copied(e.message, msg ? msg : "");
		if (rid && !known_id)
			check_copied(e.request_id, rid);
		else if (!known_id)
			FUZZ_CHECK(!e.request_id[0]);
	} else {
		char head[32];

		snprintf(head, sizeof(head), "HTTP %d", status);
		FUZZ_CHECK(strcmp(e.type, "http_error") == 0);
		FUZZ_CHECK(strncmp(e.message, head, strlen(head)) == 0);
		FUZZ_CHECK(printable_line(e.message));
		FUZZ_CHECK(str_ok(e.message, strlen(e.message)));
		if (len)
			FUZZ_CHECK(e.message[strlen(e.message) - 1] == '"');
		if (!known_id)
			FUZZ_CHECK(!e.request_id[0]);
	}
	cJSON_Delete(root);
}

/* --- requests ---------------------------------------------------------------------- */

struct req_case {
	struct wire_request r;
	struct wire_message msgs[MAX_MESSAGES];
	char *model; /* heap, NUL-terminated */
	bool valid;  /* what wire_request_build must accept */
};

/* Splits in at 0xFF bytes into up to max pieces (the last takes the rest). */
static size_t split_pieces(const uint8_t *p, size_t n, const char **piece, size_t *len, size_t max)
{
	size_t k = 0;

	while (k < max) {
		const uint8_t *sep = k + 1 < max ? memchr(p, 0xFF, n) : NULL;
		size_t l = sep ? (size_t)(sep - p) : n;

		piece[k] = (const char *)p;
		len[k++] = l;
		if (!sep)
			break;
		p += l + 1;
		n -= l + 1;
	}
	return k;
}

/* A NUL is text like any other: it goes out as \u0000 (issue 17). */
static bool text_valid(const char *s, size_t n)
{
	return str_ok(s, n);
}

static void req_case_read(struct req_case *c, const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	unsigned flags = fuzz_byte(&in), roles = fuzz_byte(&in), marks = fuzz_byte(&in);
	uint64_t tbits = fuzz_bytes(&in, 8);
	const char *piece[2 + MAX_MESSAGES];
	size_t len[2 + MAX_MESSAGES], n, i = 0;

	memset(c, 0, sizeof(*c));
	memcpy(&c->r.temperature, &tbits, sizeof(double));
	if (!(flags & 8))
		c->r.temperature = (double)NAN;
	c->r.max_tokens = (int32_t)fuzz_bytes(&in, 4);
	c->r.thinking_budget = flags & 16 ? (int32_t)fuzz_bytes(&in, 4) : 0;
	c->r.stream = flags & 4;
	c->r.system_cache_mark = flags & 2;
	n = split_pieces(in.p, in.n, piece, len, MAX_MESSAGES + !!(flags & 32) + !!(flags & 1));
	if (flags & 32) {
		c->model = malloc(len[0] + 1);
		FUZZ_ALLOC(c->model);
		memcpy(c->model, piece[0], len[0]);
		c->model[len[0]] = '\0';
		i++;
	} else {
		c->model = strdup("claude-sonnet-4-5");
		FUZZ_ALLOC(c->model);
	}
	c->r.model = c->model;
	c->valid = c->model[0] && text_valid(c->model, strlen(c->model));
	if ((flags & 1) && i < n) {
		c->r.system = piece[i];
		c->r.system_len = len[i];
		c->valid = c->valid && text_valid(piece[i], len[i]);
		i++;
	}
	for (; i < n; i++) {
		struct wire_message *m = &c->msgs[c->r.n_messages];

		m->assistant = roles >> (c->r.n_messages % 8) & 1;
		m->cache_mark = marks >> (c->r.n_messages % 8) & 1;
		m->text = piece[i];
		m->len = len[i];
		c->valid = c->valid && text_valid(piece[i], len[i]);
		c->r.n_messages++;
	}
	c->r.messages = c->msgs;
	c->valid = c->valid && c->r.n_messages > 0 && c->r.max_tokens >= 0 &&
		   c->r.thinking_budget >= 0 && !isinf(c->r.temperature);
}

/* check_body parses the body with its NULs as marks (json_nul.h). */
static bool json_text_is(const cJSON *it, const char *s, size_t n)
{
	if (!cJSON_IsString(it) || strlen(it->valuestring) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (it->valuestring[i] != (s[i] ? s[i] : JSON_NUL_MARK))
			return false;
	return true;
}

/* A content: a plain string, or with a cache mark one ephemeral text block. */
static void check_content(const cJSON *c, const char *s, size_t n, bool mark)
{
	if (!mark) {
		FUZZ_CHECK(json_text_is(c, s, n));
		return;
	}
	FUZZ_CHECK(cJSON_IsArray(c) && cJSON_GetArraySize(c) == 1);
	const cJSON *b = cJSON_GetArrayItem(c, 0);
	FUZZ_CHECK(json_text_is(cJSON_GetObjectItemCaseSensitive(b, "type"), "text", 4));
	FUZZ_CHECK(json_text_is(cJSON_GetObjectItemCaseSensitive(b, "text"), s, n));
	const cJSON *cc = cJSON_GetObjectItemCaseSensitive(b, "cache_control");
	FUZZ_CHECK(json_text_is(cJSON_GetObjectItemCaseSensitive(cc, "type"), "ephemeral", 9));
}

static bool number_is(const cJSON *it, double v)
{
	return cJSON_IsNumber(it) && it->valuedouble == v;
}

/* cJSON prints a double with 15 digits when that reads back within its own
 * tolerance of one DBL_EPSILON relative, so a temperature may come back that
 * close, no closer.  (No fabs: the test links without libm, like the core.) */
static bool number_near(const cJSON *it, double v)
{
	double d = cJSON_IsNumber(it) ? it->valuedouble - v : (double)INFINITY;

	return (d < 0 ? -d : d) <= (v < 0 ? -v : v) * 2 * DBL_EPSILON;
}

static void check_body(const struct wire_request *r, const char *body, size_t len)
{
	struct buf hidden;
	buf_init(&hidden, len + 1);
	FUZZ_CHECK(json_nul_hide(body, len, &hidden) == 0);
	cJSON *root = cJSON_ParseWithLength(hidden.data ? hidden.data : "", hidden.len);
	buf_done(&hidden);
	const char *order[8];
	size_t n_keys = 0, k = 0;

	FUZZ_CHECK(cJSON_IsObject(root));
	order[n_keys++] = "model";
	order[n_keys++] = "max_tokens";
	if (!isnan(r->temperature))
		order[n_keys++] = "temperature";
	if (r->system && r->system_len)
		order[n_keys++] = "system";
	order[n_keys++] = "messages";
	if (r->thinking_budget > 0)
		order[n_keys++] = "thinking";
	order[n_keys++] = "stream";
	for (const cJSON *it = root->child; it; it = it->next, k++)
		FUZZ_CHECK(k < n_keys && strcmp(it->string, order[k]) == 0);
	FUZZ_CHECK(k == n_keys);

	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "model");
	FUZZ_CHECK(json_text_is(it, r->model, strlen(r->model)));
	FUZZ_CHECK(
	    number_is(cJSON_GetObjectItemCaseSensitive(root, "max_tokens"), (double)r->max_tokens));
	if (!isnan(r->temperature))
		FUZZ_CHECK(number_near(cJSON_GetObjectItemCaseSensitive(root, "temperature"),
				       r->temperature));
	if (r->system && r->system_len)
		check_content(cJSON_GetObjectItemCaseSensitive(root, "system"), r->system,
			      r->system_len, r->system_cache_mark);
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
	FUZZ_CHECK(cJSON_IsArray(msgs) && (size_t)cJSON_GetArraySize(msgs) == r->n_messages);
	for (size_t i = 0; i < r->n_messages; i++) {
		const struct wire_message *m = &r->messages[i];
		const cJSON *o = cJSON_GetArrayItem(msgs, (int)i);
		const char *role = m->assistant ? "assistant" : "user";

		FUZZ_CHECK(
		    json_text_is(cJSON_GetObjectItemCaseSensitive(o, "role"), role, strlen(role)));
		check_content(cJSON_GetObjectItemCaseSensitive(o, "content"), m->text, m->len,
			      m->cache_mark);
	}
	if (r->thinking_budget > 0) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "thinking");
		FUZZ_CHECK(json_text_is(cJSON_GetObjectItemCaseSensitive(t, "type"), "enabled", 7));
		FUZZ_CHECK(number_is(cJSON_GetObjectItemCaseSensitive(t, "budget_tokens"),
				     (double)r->thinking_budget));
	}
	it = cJSON_GetObjectItemCaseSensitive(root, "stream");
	FUZZ_CHECK(cJSON_IsBool(it) && cJSON_IsTrue(it) == r->stream);
	cJSON_Delete(root);
}

/* The body of the first n - 1 messages, up to its messages' closing bracket, is
 * a prefix of the body of all n. */
static void check_prefix(struct wire_request *r, const struct buf *all)
{
	struct buf part;
	char tail[128];

	buf_init(&part, all->max);
	r->n_messages--;
	FUZZ_CHECK(wire_request_build(r, &part) == 0);
	r->n_messages++;
	if (r->thinking_budget > 0)
		snprintf(tail, sizeof(tail),
			 "],\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":%" PRId64
			 "},\"stream\":%s}",
			 r->thinking_budget, r->stream ? "true" : "false");
	else
		snprintf(tail, sizeof(tail), "],\"stream\":%s}", r->stream ? "true" : "false");
	size_t t = strlen(tail);
	FUZZ_CHECK(part.len > t && memcmp(part.data + part.len - t, tail, t) == 0);
	size_t keep = part.len - t;
	FUZZ_CHECK(all->len > keep && memcmp(all->data, part.data, keep) == 0);
	FUZZ_CHECK(all->data[keep] == ',');
	buf_done(&part);
}

static void check_request(const uint8_t *data, size_t size)
{
	struct req_case c;
	struct buf out, again;

	req_case_read(&c, data, size);
	buf_init(&out, 1u << 26);
	buf_init(&again, 1u << 26);
	int r = wire_request_build(&c.r, &out);
	FUZZ_CHECK(r == (c.valid ? 0 : -EINVAL));
	if (r == 0) {
		FUZZ_CHECK(out.len == strlen(out.data));
		check_body(&c.r, out.data, out.len);
		FUZZ_CHECK(wire_request_build(&c.r, &again) == 0);
		FUZZ_CHECK(again.len == out.len && memcmp(again.data, out.data, out.len) == 0);
		if (c.r.n_messages > 1)
			check_prefix(&c.r, &out);
		/* One byte short of the cap: refused, the buffer left as it was. */
		struct buf small;
		buf_init(&small, out.len - 1);
		FUZZ_CHECK(wire_request_build(&c.r, &small) == -EFBIG);
		FUZZ_CHECK(small.len == 0);
		buf_done(&small);
	} else {
		FUZZ_CHECK(out.len == 0);
	}
	buf_done(&out);
	buf_done(&again);
	free(c.model);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	const char *lf = memchr(in, '\n', size);

	if (lf)
		check_event(in, (size_t)(lf - in), lf + 1, size - (size_t)(lf - in) - 1);
	check_event(NULL, 0, in, size);
	check_error(data, size);
	check_request(data, size);
	return 0;
}
