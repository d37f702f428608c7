/* record.c — the journal's record payloads: decoding and validation, and the
 * small records' encoders (record.h; doc/design/journal.md §4 and §5).
 * REPLY_PART's printer is record_part.c.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/attach.h"
#include "mcpfs/journal.h"
#include "mcpfs/json_nul.h"
#include "mcpfs/record.h"
#include "mcpfs/store.h"
#include "mcpfs/utf8.h"

const char *record_type_name(uint16_t type)
{
	static const char *const names[] = {
	    [JOURNAL_CREATE] = "CREATE",
	    [JOURNAL_SETTINGS] = "SETTINGS",
	    [JOURNAL_USER] = "USER",
	    [JOURNAL_REPLY_PART] = "REPLY_PART",
	    [JOURNAL_REPLY_END] = "REPLY_END",
	    [JOURNAL_CLEAR] = "CLEAR",
	    [JOURNAL_RETRY] = "RETRY",
	    [JOURNAL_BLOCK] = "BLOCK",
	    [JOURNAL_SUMMARY] = "SUMMARY",
	    [JOURNAL_UNDO] = "UNDO",
	    [JOURNAL_FORKED_FROM] = "FORKED_FROM",
	    [JOURNAL_META] = "META",
	    [JOURNAL_ATTACH] = "ATTACH",
	    [JOURNAL_DETACH] = "DETACH",
	};
	return type < sizeof(names) / sizeof(names[0]) ? names[type] : NULL;
}

/* --- decoding ------------------------------------------------------------------ */

/* A string member, len bytes long: a \u0000 of the payload is a NUL inside it.
 * Read each member once: its marks are turned back into NULs in place. */
static const char *jstr(const struct record *r, const cJSON *o, const char *key, size_t *len)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!cJSON_IsString(v))
		return NULL;
	size_t n = strlen(v->valuestring);
	if (r->nul_hidden)
		json_nul_show(v->valuestring, n);
	if (len)
		*len = n;
	return v->valuestring;
}

/* A whole number from 0 to 2^53 (exact in a double, as the API's counts are
 * read), else RECORD_ABSENT: a value out of range converted to int64_t is
 * undefined, and sums of them overflow. */
static int64_t jint(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
	if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(int64_t)d)
		return RECORD_ABSENT;
	return (int64_t)d;
}

static void usage_read(struct wire_usage *u, const cJSON *o)
{
	static const struct {
		const char *key;
		size_t off;
		unsigned bit;
	} f[] = {
	    {"input_tokens", offsetof(struct wire_usage, input_tokens), WIRE_USAGE_INPUT},
	    {"output_tokens", offsetof(struct wire_usage, output_tokens), WIRE_USAGE_OUTPUT},
	    {"cache_creation_input_tokens",
	     offsetof(struct wire_usage, cache_creation_input_tokens), WIRE_USAGE_CACHE_CREATION},
	    {"cache_read_input_tokens", offsetof(struct wire_usage, cache_read_input_tokens),
	     WIRE_USAGE_CACHE_READ},
	};
	memset(u, 0, sizeof(*u));
	for (size_t i = 0; o && i < sizeof(f) / sizeof(f[0]); i++) {
		int64_t v = jint(o, f[i].key);
		if (v >= 0) {
			*(int64_t *)((char *)u + f[i].off) = v;
			u->present |= f[i].bit;
		}
	}
}

static int settings_read(struct record *r, const cJSON *o)
{
	struct record_settings *s = &r->u.settings;
	const cJSON *set = cJSON_GetObjectItemCaseSensitive(o, "settings");
	s->settings = cJSON_IsObject(set) ? set : NULL;
	s->system = jstr(r, o, "system", &s->system_len);
	s->schema = jstr(r, o, "schema", &s->schema_len);
	s->v = jint(o, "v");
	s->created_ms = jint(o, "created_ms");
	return RECORD_OK;
}

static int user_read(struct record *r, const cJSON *o, const char **why)
{
	struct record_user *u = &r->u.user;
	int64_t turn = jint(o, "turn");
	u->text = jstr(r, o, "text", &u->text_len);
	if (turn <= 0 || !u->text) {
		*why = turn <= 0 ? "USER without a turn from 1" : "USER without a text";
		return -EINVAL;
	}
	u->turn = (uint64_t)turn;
	u->ms = jint(o, "ms");
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "attach");
	u->attach = cJSON_IsArray(a) ? a : NULL;
	return RECORD_OK;
}

static int part_read(struct record *r, const cJSON *o)
{
	struct record_part *p = &r->u.part;
	p->turn = jint(o, "turn");
	p->attempt = jint(o, "attempt");
	p->text = jstr(r, o, "text", &p->text_len);
	p->thinking = jstr(r, o, "thinking", &p->thinking_len);
	return RECORD_OK;
}

static int end_read(struct record *r, const cJSON *o)
{
	struct record_end *e = &r->u.end;
	e->turn = jint(o, "turn");
	e->attempt = jint(o, "attempt");
	const char *st = jstr(r, o, "state", NULL);
	e->done = st && !strcmp(st, "done");
	e->stop_reason = jstr(r, o, "stop_reason", NULL);
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
	e->has_usage = cJSON_IsObject(u);
	usage_read(&e->usage, u);
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
	e->has_error = cJSON_IsObject(err);
	e->error_http_status = RECORD_ABSENT;
	if (e->has_error) {
		e->error_type = jstr(r, err, "type", NULL);
		e->error_message = jstr(r, err, "message", NULL);
		e->error_request_id = jstr(r, err, "request_id", NULL);
		e->error_http_status = jint(err, "http_status");
	}
	e->request_id = jstr(r, o, "request_id", NULL);
	e->model = jstr(r, o, "model", NULL);
	e->raw_sent = jint(o, "raw_sent");
	e->http_status = jint(o, "http_status");
	e->cache_hit = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "cache_hit"));
	e->retries = jint(o, "retries");
	e->request_bytes = jint(o, "request_bytes");
	e->request_us = jint(o, "request_us");
	e->first_turn = jint(o, "first_turn");
	e->text_bytes = jint(o, "text_bytes");
	return RECORD_OK;
}

void record_block_fields(const cJSON *o, struct record_block *b)
{
	b->turn = jint(o, "turn");
	b->attempt = jint(o, "attempt");
	b->text_at = jint(o, "text_at");
	b->text_end = jint(o, "text_end");
	b->thinking_at = jint(o, "thinking_at");
	b->thinking_end = jint(o, "thinking_end");
	const cJSON *blk = cJSON_GetObjectItemCaseSensitive(o, "block");
	const cJSON *ty = cJSON_GetObjectItemCaseSensitive(blk, "type");
	b->block = cJSON_IsObject(blk) ? blk : NULL;
	b->block_type = b->block && cJSON_IsString(ty) ? ty->valuestring : NULL;
}

static int summary_read(struct record *r, const cJSON *o, const char **why)
{
	struct record_summary *s = &r->u.summary;
	s->text = jstr(r, o, "text", &s->text_len);
	int64_t first = jint(o, "first_turn"), last = jint(o, "last_turn");
	if (!s->text || first < 0 || last < first || s->text_len > SUMMARY_MAX) {
		*why = !s->text			   ? "SUMMARY without a text"
		       : first < 0 || last < first ? "SUMMARY without first_turn <= last_turn"
						   : "SUMMARY text over 256 KiB";
		return -EINVAL;
	}
	s->first_turn = (uint64_t)first;
	s->last_turn = (uint64_t)last;
	s->by = jstr(r, o, "by", NULL);
	s->ms = jint(o, "ms");
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
	s->has_usage = cJSON_IsObject(u);
	usage_read(&s->usage, s->has_usage ? u : NULL);
	s->model = jstr(r, o, "model", NULL);
	return RECORD_OK;
}

static int undo_read(struct record *r, const cJSON *o, const char **why)
{
	int64_t turn = jint(o, "turn");
	if (turn <= 0) {
		*why = "UNDO without a turn from 1";
		return -EINVAL;
	}
	r->u.undo.turn = (uint64_t)turn;
	r->u.undo.ms = jint(o, "ms");
	return RECORD_OK;
}

static int origin_read(struct record *r, const cJSON *o, const char **why)
{
	struct record_forked_from *f = &r->u.forked_from;
	const cJSON *from = cJSON_GetObjectItemCaseSensitive(o, "context");
	int64_t turn = jint(o, "turn");
	if (!cJSON_IsString(from) ||
	    store_name_check(from->valuestring, strlen(from->valuestring)) < 0) {
		*why = "FORKED_FROM without a valid context name";
		return -EINVAL;
	}
	if (turn < 0) {
		*why = "FORKED_FROM without a turn";
		return -EINVAL;
	}
	f->context = from->valuestring;
	f->turn = (uint64_t)turn;
	f->ms = jint(o, "ms");
	return RECORD_OK;
}

static int attach_read(struct record *r, const cJSON *o, const char **why)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
	r->u.attach.payload = o;
	if (!cJSON_IsString(name)) {
		*why = "no string name: ignored";
		return RECORD_IGNORED;
	}
	struct record_attach *a = &r->u.attach;
	a->name = name->valuestring;
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
	const cJSON *hash = cJSON_GetObjectItemCaseSensitive(o, "hash");
	a->type = cJSON_IsString(type) ? type->valuestring : NULL;
	a->hash = cJSON_IsString(hash) ? hash->valuestring : NULL;
	a->size = jint(o, "size");
	a->tokens = jint(o, "tokens");
	a->ms = jint(o, "ms");
	return RECORD_OK;
}

int record_attachment_fields(const cJSON *o, struct record_attachment *a)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
	const cJSON *size = cJSON_GetObjectItemCaseSensitive(o, "size");
	const cJSON *hash = cJSON_GetObjectItemCaseSensitive(o, "hash");
	const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(o, "tokens");
	const char *why;
	memset(a, 0, sizeof(*a));
	a->tokens = RECORD_ABSENT;
	if (!cJSON_IsString(name) ||
	    attach_name_check(name->valuestring, strlen(name->valuestring), &why) < 0 ||
	    !cJSON_IsString(type) || !cJSON_IsNumber(size) || !(size->valuedouble >= 0) ||
	    size->valuedouble > ATTACH_FILE_MAX || !cJSON_IsString(hash) ||
	    !attach_hash_valid(hash->valuestring))
		return -EINVAL;
	a->type = attach_type_from_name(type->valuestring);
	if (a->type == ATTACH_UNDECIDED)
		return -EINVAL;
	a->name = name->valuestring;
	a->size = (uint64_t)size->valuedouble;
	a->hash = hash->valuestring;
	if (cJSON_IsNumber(tokens) && tokens->valuedouble >= 0 && tokens->valuedouble < 1e12)
		a->tokens = (int64_t)tokens->valuedouble;
	return 0;
}

/* The type's keys from the payload object o. */
static int decode_object(struct record *r, const cJSON *o, const char **why)
{
	switch (r->type) {
	case JOURNAL_CREATE:
	case JOURNAL_SETTINGS:
		return settings_read(r, o);
	case JOURNAL_USER:
		return user_read(r, o, why);
	case JOURNAL_REPLY_PART:
		return part_read(r, o);
	case JOURNAL_REPLY_END:
		return end_read(r, o);
	case JOURNAL_CLEAR:
		r->u.clear.turn = jint(o, "turn");
		return RECORD_OK;
	case JOURNAL_RETRY:
		r->u.retry.turn = jint(o, "turn");
		r->u.retry.attempt = jint(o, "attempt");
		r->u.retry.ms = jint(o, "ms");
		return RECORD_OK;
	case JOURNAL_BLOCK:
		record_block_fields(o, &r->u.block);
		return RECORD_OK;
	case JOURNAL_SUMMARY:
		return summary_read(r, o, why);
	case JOURNAL_UNDO:
		return undo_read(r, o, why);
	case JOURNAL_FORKED_FROM:
		return origin_read(r, o, why);
	case JOURNAL_META: {
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "meta");
		r->u.meta.meta = cJSON_IsObject(m) ? m : NULL;
		return RECORD_OK;
	}
	case JOURNAL_ATTACH:
	case JOURNAL_DETACH:
		return attach_read(r, o, why);
	}
	*why = "a type this version does not know";
	return RECORD_UNKNOWN;
}

int record_decode(struct record *r, uint16_t type, const void *payload, size_t len,
		  const char **why)
{
	static const char *ignore;
	if (!why)
		why = &ignore;
	*why = NULL;
	r->type = type;
	/* Every payload is UTF-8 (§4): a string of bytes that are not would be
	 * served as they are (over HTTP too). */
	if (!utf8_valid(payload, len)) {
		*why = "payload is not UTF-8";
		return -EINVAL;
	}
	r->nul_hidden = json_nul_escaped(payload, len);
	if (!r->hidden.max)
		buf_init(&r->hidden, JOURNAL_MAX_RECORD);
	buf_reset(&r->hidden);
	if (r->nul_hidden && json_nul_hide(payload, len, &r->hidden) < 0)
		return -ENOMEM;
	r->json = r->nul_hidden ? cJSON_ParseWithLength(r->hidden.data, r->hidden.len)
				: cJSON_ParseWithLength(payload, len);
	if (!cJSON_IsObject(r->json)) {
		*why = "payload is not a JSON object";
		return -EINVAL;
	}
	return decode_object(r, r->json, why);
}

void record_release(struct record *r)
{
	if (!r)
		return;
	cJSON_Delete(r->json);
	buf_done(&r->hidden);
	memset(r, 0, sizeof(*r));
}

/* --- encoders -------------------------------------------------------------------- */

int record_print(cJSON *o, char **out, size_t *len)
{
	*out = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (!*out)
		return -ENOMEM;
	if (len)
		*len = strlen(*out);
	return 0;
}

/* o with the members added (each call's result checked), or NULL and o gone. */
static cJSON *built(cJSON *o, bool ok)
{
	if (o && ok)
		return o;
	cJSON_Delete(o);
	return NULL;
}

cJSON *record_user_json(uint64_t turn, const char *text, size_t len, int64_t ms,
			const cJSON *attach)
{
	cJSON *o = cJSON_CreateObject();
	char *copy = strndup(text, len);
	bool ok = o && copy && cJSON_AddNumberToObject(o, "turn", (double)turn) &&
		  cJSON_AddStringToObject(o, "text", copy) &&
		  cJSON_AddNumberToObject(o, "ms", (double)ms);
	free(copy);
	cJSON *a = ok && attach ? cJSON_Duplicate(attach, true) : NULL;
	if (ok && attach && (!a || !cJSON_AddItemToObject(o, "attach", a))) {
		cJSON_Delete(a);
		ok = false;
	}
	return built(o, ok);
}

cJSON *record_retry_json(uint64_t turn, unsigned attempt, int64_t ms)
{
	cJSON *o = cJSON_CreateObject();
	return built(o, o && cJSON_AddNumberToObject(o, "turn", (double)turn) &&
			    cJSON_AddNumberToObject(o, "attempt", attempt) &&
			    cJSON_AddNumberToObject(o, "ms", (double)ms));
}

cJSON *record_clear_json(uint64_t turn)
{
	cJSON *o = cJSON_CreateObject();
	return built(o, o && cJSON_AddNumberToObject(o, "turn", (double)turn));
}

cJSON *record_undo_json(uint64_t turn, int64_t ms)
{
	cJSON *o = cJSON_CreateObject();
	return built(o, o && cJSON_AddNumberToObject(o, "turn", (double)turn) &&
			    cJSON_AddNumberToObject(o, "ms", (double)ms));
}

cJSON *record_forked_from_json(const char *context, uint64_t turn, int64_t ms)
{
	cJSON *o = cJSON_CreateObject();
	return built(o, o && cJSON_AddStringToObject(o, "context", context) &&
			    cJSON_AddNumberToObject(o, "turn", (double)turn) &&
			    cJSON_AddNumberToObject(o, "ms", (double)ms));
}

cJSON *record_detach_json(const char *name, int64_t ms)
{
	cJSON *o = cJSON_CreateObject();
	return built(o, o && cJSON_AddStringToObject(o, "name", name) &&
			    (ms < 0 || cJSON_AddNumberToObject(o, "ms", (double)ms)));
}

cJSON *record_usage_json(const struct wire_usage *u)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o != NULL;
	if (ok && (u->present & WIRE_USAGE_INPUT))
		ok = cJSON_AddNumberToObject(o, "input_tokens", (double)u->input_tokens);
	if (ok && (u->present & WIRE_USAGE_OUTPUT))
		ok = cJSON_AddNumberToObject(o, "output_tokens", (double)u->output_tokens);
	if (ok && (u->present & WIRE_USAGE_CACHE_CREATION))
		ok = cJSON_AddNumberToObject(o, "cache_creation_input_tokens",
					     (double)u->cache_creation_input_tokens);
	if (ok && (u->present & WIRE_USAGE_CACHE_READ))
		ok = cJSON_AddNumberToObject(o, "cache_read_input_tokens",
					     (double)u->cache_read_input_tokens);
	return built(o, ok);
}

cJSON *record_settings_json(const struct record_settings *r)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *set = r->settings ? cJSON_Duplicate(r->settings, true) : cJSON_CreateObject();
	if (!o || !set || !cJSON_AddItemToObject(o, "settings", set)) {
		cJSON_Delete(o);
		cJSON_Delete(set);
		return NULL;
	}
	bool ok = cJSON_AddStringToObject(o, "system", r->system ? r->system : "");
	if (ok && r->schema && *r->schema)
		ok = cJSON_AddStringToObject(o, "schema", r->schema);
	if (ok && r->v >= 0)
		ok = cJSON_AddNumberToObject(o, "v", (double)r->v) &&
		     cJSON_AddNumberToObject(o, "created_ms", (double)r->created_ms);
	return built(o, ok);
}

static bool add_str(cJSON *o, const char *key, const char *s)
{
	return !s || !*s || cJSON_AddStringToObject(o, key, s);
}

static bool add_error(cJSON *o, const struct record_end *r)
{
	cJSON *e = cJSON_AddObjectToObject(o, "error");
	return e && cJSON_AddStringToObject(e, "type", r->error_type ? r->error_type : "") &&
	       cJSON_AddStringToObject(e, "message", r->error_message ? r->error_message : "") &&
	       cJSON_AddStringToObject(e, "request_id",
				       r->error_request_id ? r->error_request_id : "") &&
	       cJSON_AddNumberToObject(e, "http_status", (double)r->error_http_status);
}

cJSON *record_end_json(const struct record_end *r)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o && cJSON_AddNumberToObject(o, "turn", (double)r->turn) &&
		  cJSON_AddNumberToObject(o, "attempt", (double)r->attempt) &&
		  cJSON_AddStringToObject(o, "state", r->done ? "done" : "failed") &&
		  add_str(o, "stop_reason", r->stop_reason) &&
		  (!r->cache_hit || cJSON_AddTrueToObject(o, "cache_hit"));
	cJSON *u = ok && r->has_usage ? record_usage_json(&r->usage) : NULL;
	if (ok && r->has_usage && (!u || !cJSON_AddItemToObject(o, "usage", u))) {
		cJSON_Delete(u);
		ok = false;
	}
	ok = ok && add_str(o, "request_id", r->request_id) && add_str(o, "model", r->model) &&
	     (!r->has_error || add_error(o, r)) &&
	     (r->raw_sent < 0 || cJSON_AddNumberToObject(o, "raw_sent", (double)r->raw_sent)) &&
	     (r->http_status < 0 ||
	      cJSON_AddNumberToObject(o, "http_status", (double)r->http_status)) &&
	     (r->retries <= 0 || cJSON_AddNumberToObject(o, "retries", (double)r->retries));
	if (ok && r->request_bytes > 0)
		ok = cJSON_AddNumberToObject(o, "request_bytes", (double)r->request_bytes) &&
		     cJSON_AddNumberToObject(o, "request_us", (double)r->request_us);
	ok =
	    ok &&
	    (r->text_bytes < 0 ||
	     cJSON_AddNumberToObject(o, "text_bytes", (double)r->text_bytes)) &&
	    (r->first_turn <= 0 || cJSON_AddNumberToObject(o, "first_turn", (double)r->first_turn));
	return built(o, ok);
}

cJSON *record_summary_json(const struct record_summary *r)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o && cJSON_AddStringToObject(o, "text", r->text ? r->text : "") &&
		  cJSON_AddNumberToObject(o, "first_turn", (double)r->first_turn) &&
		  cJSON_AddNumberToObject(o, "last_turn", (double)r->last_turn) &&
		  cJSON_AddStringToObject(o, "by", r->by ? r->by : "") &&
		  cJSON_AddNumberToObject(o, "ms", (double)r->ms);
	if (ok && r->has_usage) {
		const struct wire_usage *u = &r->usage;
		cJSON *uo = cJSON_AddObjectToObject(o, "usage");
		ok = uo && cJSON_AddNumberToObject(uo, "input_tokens", (double)u->input_tokens) &&
		     cJSON_AddNumberToObject(uo, "output_tokens", (double)u->output_tokens) &&
		     cJSON_AddNumberToObject(uo, "cache_creation_input_tokens",
					     (double)u->cache_creation_input_tokens) &&
		     cJSON_AddNumberToObject(uo, "cache_read_input_tokens",
					     (double)u->cache_read_input_tokens) &&
		     add_str(o, "model", r->model);
	}
	return built(o, ok);
}

cJSON *record_attach_json(const struct record_attach *r)
{
	cJSON *o = cJSON_CreateObject();
	return built(o, o && cJSON_AddStringToObject(o, "name", r->name) &&
			    cJSON_AddStringToObject(o, "type", r->type ? r->type : "") &&
			    cJSON_AddNumberToObject(o, "size", (double)r->size) &&
			    cJSON_AddStringToObject(o, "hash", r->hash ? r->hash : "") &&
			    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens) &&
			    (r->ms < 0 || cJSON_AddNumberToObject(o, "ms", (double)r->ms)));
}

cJSON *record_attach_list_json(const struct record_attach *att, size_t n)
{
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; arr && i < n; i++) {
		struct record_attach item = att[i];
		item.ms = RECORD_ABSENT;
		cJSON *a = record_attach_json(&item);
		if (!a || !cJSON_AddItemToArray(arr, a)) {
			cJSON_Delete(a);
			cJSON_Delete(arr);
			return NULL;
		}
	}
	return arr;
}

char *record_meta_print(const cJSON *meta)
{
	cJSON *rec = cJSON_CreateObject();
	cJSON *copy = meta ? cJSON_Duplicate(meta, true) : cJSON_CreateObject();
	char *text = NULL;
	if (rec && copy && cJSON_AddItemToObject(rec, "meta", copy)) {
		copy = NULL;
		text = cJSON_PrintUnformatted(rec);
	}
	cJSON_Delete(copy);
	cJSON_Delete(rec);
	return text;
}

int record_block_print(const struct record_block *r, struct buf *out)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *copy = r->block ? cJSON_Duplicate(r->block, true) : cJSON_CreateObject();
	if (!o || !copy) {
		cJSON_Delete(o);
		cJSON_Delete(copy);
		return -ENOMEM;
	}
	bool ok = cJSON_AddNumberToObject(o, "turn", (double)r->turn) &&
		  cJSON_AddNumberToObject(o, "attempt", (double)r->attempt) &&
		  cJSON_AddNumberToObject(o, "text_at", (double)r->text_at) &&
		  cJSON_AddNumberToObject(o, "text_end", (double)r->text_end) &&
		  cJSON_AddNumberToObject(o, "thinking_at", (double)r->thinking_at) &&
		  cJSON_AddNumberToObject(o, "thinking_end", (double)r->thinking_end) &&
		  cJSON_AddItemToObject(o, "block", copy);
	if (!ok) { /* copy is o's only once added, the last step */
		cJSON_Delete(copy);
		cJSON_Delete(o);
		return -ENOMEM;
	}
	/* Printed with its NUL marks as \u0000 (json_nul.h). */
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	buf_reset(out);
	int ret = text ? json_nul_print(text, strlen(text), out) : -ENOMEM;
	free(text);
	return ret;
}
