/* block.c — every block of a reply: kept as it streams, saved in BLOCK
 * records (appended through context_journal.c), read back, rendered and sent
 * back to the API (see block_impl.h).  Below reply.c: it calls no turn nor
 * context function but the journal's append.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/json_nul.h"
#include "mcpfs/utf8.h"
#include "store_impl.h"

#define THINKING_SEP "\n\n" /* between two thinking blocks in `thinking` */

void blocks_init(struct reply_blocks *b)
{
	memset(b, 0, sizeof(*b));
	b->text_index = -1;
}

static void tblock_free(struct tblock *k)
{
	cJSON_Delete(k->json);
	buf_done(&k->partial);
}

void blocks_done(struct reply_blocks *b)
{
	for (size_t i = 0; i < b->n; i++)
		tblock_free(&b->v[i]);
	free(b->v);
	blocks_init(b);
}

void blocks_drop_call(struct reply_blocks *b)
{
	while (b->n > b->call_first && b->n > b->saved)
		tblock_free(&b->v[--b->n]);
	b->text_index = -1;
}

static struct tblock *blocks_push(struct reply *t, enum tblock_kind kind, int index, cJSON *json)
{
	struct reply_blocks *b = &t->blocks;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4;
		struct tblock *v = realloc(b->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		b->v = v;
		b->cap = cap;
	}
	struct tblock *k = &b->v[b->n++];
	memset(k, 0, sizeof(*k));
	*k = (struct tblock){.kind = kind, .index = index, .open = true, .json = json};
	buf_init(&k->partial, BLOCK_INPUT_MAX);
	k->text_at = k->text_end = t->text.len;
	k->thinking_at = k->thinking_end = t->thinking.len;
	return k;
}

/* The open block of the current call with the API's index i, or NULL. */
static struct tblock *blocks_find(struct reply *t, int i)
{
	struct reply_blocks *b = &t->blocks;
	for (size_t j = b->n; j-- > b->call_first;)
		if (b->v[j].index == i && b->v[j].open)
			return &b->v[j];
	return NULL;
}

/* A new thinking block starts the thinking stream's next paragraph. */
static int thinking_begin(struct reply *t)
{
	return t->thinking.len ? buf_puts(&t->thinking, THINKING_SEP) : 0;
}

/* An event's printed block or delta, parsed: a \u0000 in a string stays in
 * it as the mark (json_nul.h), as in a block read back from the journal, and
 * goes out as \u0000 again wherever the block is printed. */
static cJSON *parse_marked(const char *s, size_t n)
{
	if (!s || !json_nul_escaped(s, n) || !utf8_valid(s, n))
		return s ? cJSON_ParseWithLength(s, n) : NULL;
	struct buf hidden;
	buf_init(&hidden, n + 1);
	cJSON *o = json_nul_hide(s, n, &hidden) == 0
		       ? cJSON_ParseWithLength(hidden.data, hidden.len)
		       : NULL;
	buf_done(&hidden);
	return o;
}

static cJSON *parse_raw(const struct wire_event *ev)
{
	return parse_marked(ev->raw, ev->raw_len);
}

static int block_start(struct reply *t, const struct wire_event *ev)
{
	if (ev->block == WIRE_BLOCK_TEXT) {
		t->blocks.text_index = ev->index;
		t->blocks.text_start = t->text.len;
		return 0;
	}
	cJSON *json = ev->block == WIRE_BLOCK_THINKING ? cJSON_CreateObject() : parse_raw(ev);
	const cJSON *ty = cJSON_GetObjectItemCaseSensitive(json, "type");
	enum tblock_kind kind = ev->block == WIRE_BLOCK_THINKING ? TB_THINKING : TB_OTHER;
	if (ev->block == WIRE_BLOCK_THINKING)
		cJSON_AddStringToObject(json, "type", "thinking");
	else if (!cJSON_IsString(ty))
		return cJSON_Delete(json), 0; /* not a block: nothing to keep */
	else if (!strcmp(ty->valuestring, "redacted_thinking"))
		kind = TB_REDACTED;
	if (!json)
		return -ENOMEM;
	int r = kind != TB_OTHER ? thinking_begin(t) : 0;
	struct tblock *k = r == 0 ? blocks_push(t, kind, ev->index, json) : NULL;
	if (!k) {
		cJSON_Delete(json);
		return r < 0 ? r : -ENOMEM;
	}
	if (kind == TB_REDACTED)
		r = buf_puts(&t->thinking, BLOCK_REDACTED);
	return r;
}

/* A signature_delta: the signature of the open thinking block. */
static int block_signature(struct reply *t, const struct wire_event *ev)
{
	struct tblock *k = blocks_find(t, ev->index);
	if (!k || k->kind != TB_THINKING)
		return 0;
	const cJSON *old = cJSON_GetObjectItemCaseSensitive(k->json, "signature");
	const char *prev = cJSON_IsString(old) ? old->valuestring : "";
	size_t n = strlen(prev);
	char *sig = malloc(n + ev->text_len + 1);
	if (!sig)
		return -ENOMEM;
	memcpy(sig, prev, n);
	memcpy(sig + n, ev->text, ev->text_len + 1);
	cJSON *s = cJSON_CreateString(sig);
	free(sig);
	if (!s)
		return -ENOMEM;
	cJSON_DeleteItemFromObjectCaseSensitive(k->json, "signature");
	cJSON_AddItemToObject(k->json, "signature", s);
	return 0;
}

/* A citations_delta adds a citation to the open text block, which gets an
 * entry of its own from its first one. */
static int block_citation(struct reply *t, int index, const cJSON *citation)
{
	struct tblock *k = blocks_find(t, index);
	if (!k && t->blocks.text_index == index) {
		cJSON *json = cJSON_CreateObject();
		if (!json || !cJSON_AddStringToObject(json, "type", "text") ||
		    !cJSON_AddArrayToObject(json, "citations"))
			return cJSON_Delete(json), -ENOMEM;
		k = blocks_push(t, TB_TEXT, index, json);
		if (!k)
			return cJSON_Delete(json), -ENOMEM;
		k->text_at = t->blocks.text_start;
	}
	cJSON *arr = k ? cJSON_GetObjectItemCaseSensitive(k->json, "citations") : NULL;
	if (!cJSON_IsArray(arr))
		return 0;
	cJSON *copy = cJSON_Duplicate(citation, true);
	return copy && cJSON_AddItemToArray(arr, copy) ? 0 : (cJSON_Delete(copy), -ENOMEM);
}

static int block_delta(struct reply *t, const struct wire_event *ev)
{
	if (ev->block == WIRE_BLOCK_SIGNATURE)
		return block_signature(t, ev);
	if (ev->block != WIRE_BLOCK_OTHER || !ev->raw)
		return 0;
	cJSON *d = parse_raw(ev);
	const cJSON *ty = cJSON_GetObjectItemCaseSensitive(d, "type");
	int r = 0;
	if (!cJSON_IsString(ty)) {
		r = d ? 0 : -ENOMEM;
	} else if (!strcmp(ty->valuestring, "input_json_delta")) {
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(d, "partial_json");
		struct tblock *k = blocks_find(t, ev->index);
		if (k && cJSON_IsString(p))
			r = buf_puts(&k->partial, p->valuestring);
		r = r == -EFBIG ? -E2BIG : r;
	} else if (!strcmp(ty->valuestring, "citations_delta")) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "citation");
		if (cJSON_IsObject(c))
			r = block_citation(t, ev->index, c);
	}
	/* Any other kind of delta: its block is kept as it started. */
	cJSON_Delete(d);
	return r;
}

/* The end of a block: a tool's input is the JSON its pieces make. */
static int block_stop(struct reply *t, const struct wire_event *ev)
{
	struct tblock *k = blocks_find(t, ev->index);
	if (t->blocks.text_index == ev->index)
		t->blocks.text_index = -1;
	if (!k)
		return 0;
	k->open = false;
	k->text_end = t->text.len;
	k->thinking_end = t->thinking.len;
	if (k->partial.len) {
		cJSON *in = parse_marked(k->partial.data, k->partial.len);
		if (!in)
			in = cJSON_CreateObject(); /* the API sent no JSON: none */
		if (!in)
			return -ENOMEM;
		cJSON_DeleteItemFromObjectCaseSensitive(k->json, "input");
		cJSON_AddItemToObject(k->json, "input", in);
	}
	buf_done(&k->partial);
	return 0;
}

void blocks_finish(struct reply *t)
{
	for (size_t i = t->blocks.call_first; i < t->blocks.n; i++)
		if (t->blocks.v[i].open) {
			struct wire_event ev = {.type = WIRE_BLOCK_STOP,
						.index = t->blocks.v[i].index};
			block_stop(t, &ev);
		}
}

int blocks_event(struct reply *t, const struct wire_event *ev)
{
	t->blocks.received += ev->raw_len + (ev->block == WIRE_BLOCK_SIGNATURE ? ev->text_len : 0);
	if (t->blocks.received > BLOCKS_MAX)
		return -E2BIG;
	switch (ev->type) {
	case WIRE_BLOCK_START:
		return block_start(t, ev);
	case WIRE_BLOCK_DELTA:
		return block_delta(t, ev);
	case WIRE_BLOCK_STOP:
		return block_stop(t, ev);
	default:
		return 0;
	}
}

/* --- BLOCK records ------------------------------------------------------------ */

int block_payload(const struct tblock *k, uint64_t turn, unsigned attempt, struct buf *rec)
{
	struct record_block r = {.turn = (int64_t)turn,
				 .attempt = attempt,
				 .text_at = (int64_t)k->text_at,
				 .text_end = (int64_t)k->text_end,
				 .thinking_at = (int64_t)k->thinking_at,
				 .thinking_end = (int64_t)k->thinking_end,
				 .block = k->json};
	return k->json ? record_block_print(&r, rec) : -ENOMEM;
}

int blocks_save(struct context *c, struct reply *t)
{
	struct reply_blocks *b = &t->blocks;
	while (b->saved < b->n && !b->v[b->saved].open) {
		struct tblock *k = &b->v[b->saved];
		struct buf rec;
		buf_init(&rec, STORAGE_MAX_RECORD);
		int r = block_payload(k, t->number, t->attempt, &rec);
		if (r == 0)
			r = context_journal_append(c, JOURNAL_BLOCK, rec.data ? rec.data : "",
						   rec.len, false);
		k->bytes = rec.len;
		buf_done(&rec);
		if (r < 0)
			return r;
		k->saved = true;
		b->saved++;
	}
	return 0;
}

int blocks_load(struct reply *t, const cJSON *o, size_t payload_len)
{
	struct record_block rb;
	record_block_fields(o, &rb);
	return blocks_load_record(t, &rb, payload_len);
}

int blocks_load_record(struct reply *t, const struct record_block *r, size_t payload_len)
{
	int64_t ta = r->text_at, te = r->text_end, ha = r->thinking_at, he = r->thinking_end;
	struct reply_blocks *b = &t->blocks;
	const struct tblock *prev = b->n ? &b->v[b->n - 1] : NULL;
	/* Its text and thinking were saved before it, and blocks come in order. */
	if (ta < 0 || te < ta || ha < 0 || he < ha || (uint64_t)te > t->text.len ||
	    (uint64_t)he > t->thinking.len || !r->block_type ||
	    (prev && ((uint64_t)ta < prev->text_end || (uint64_t)ha < prev->thinking_end)))
		return -EINVAL;
	const char *type = r->block_type;
	enum tblock_kind kind = !strcmp(type, "thinking")	     ? TB_THINKING
				: !strcmp(type, "redacted_thinking") ? TB_REDACTED
				: !strcmp(type, "text")		     ? TB_TEXT
								     : TB_OTHER;
	cJSON *json = cJSON_Duplicate(r->block, true);
	struct tblock *k = json ? blocks_push(t, kind, -1, json) : NULL;
	if (!k) {
		cJSON_Delete(json);
		return -ENOMEM;
	}
	k->open = false;
	k->saved = true;
	k->text_at = (size_t)ta;
	k->text_end = (size_t)te;
	k->thinking_at = (size_t)ha;
	k->thinking_end = (size_t)he;
	k->bytes = payload_len;
	b->saved = b->call_first = b->n;
	return 0;
}

/* --- the reply as Messages-API blocks ----------------------------------------- */

/* A copy of len bytes of s as a JSON string member (a NUL crosses as the mark,
 * json_nul.h). */
static bool add_str(cJSON *o, const char *key, const char *s, size_t len)
{
	char *copy = malloc(len + 1);
	if (!copy)
		return false;
	memcpy(copy, s ? s : "", len);
	copy[len] = '\0';
	json_nul_mark(copy, len);
	bool ok = cJSON_AddStringToObject(o, key, copy) != NULL;
	free(copy);
	return ok;
}

static bool add_piece(cJSON *arr, const char *type, const char *key, const struct buf *b,
		      size_t from, size_t to)
{
	cJSON *o = cJSON_CreateObject();
	if (!o || !cJSON_AddStringToObject(o, "type", type) ||
	    !add_str(o, key, b->data ? b->data + from : "", to - from) ||
	    !cJSON_AddItemToArray(arr, o))
		return cJSON_Delete(o), false;
	return true;
}

/* The types the API takes back in an assistant message. */
static bool type_sendable(const char *type)
{
	static const char *const known[] = {
	    "text",
	    "thinking",
	    "redacted_thinking",
	    "tool_use",
	    "server_tool_use",
	    "web_search_tool_result",
	    "web_fetch_tool_result",
	    "code_execution_tool_result",
	    "bash_code_execution_tool_result",
	    "text_editor_code_execution_tool_result",
	    "mcp_tool_use",
	    "mcp_tool_result",
	    "container_upload",
	};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(type, known[i]))
			return true;
	return false;
}

static const char *str_of(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Whether a later block of t answers the server tool use at i (its result
 * names it): the API refuses a server tool use without its result. */
static bool tool_answered(const struct reply *t, size_t i)
{
	const char *id = str_of(t->blocks.v[i].json, "id");
	for (size_t j = i + 1; id && j < t->blocks.n; j++) {
		const char *u = str_of(t->blocks.v[j].json, "tool_use_id");
		if (u && !strcmp(u, id))
			return true;
	}
	return false;
}

/* Whether block i goes into mode's form of the reply.  In a later request a
 * reply keeps its server tool use with the results (and then the thinking
 * before it, which the API wants back with a tool use), and its citations;
 * a client tool use (it would need a tool_result) and unknown types stay out. */
static bool block_kept(const struct reply *t, size_t i, enum blocks_mode mode, bool tools)
{
	const struct tblock *k = &t->blocks.v[i];
	const char *type = str_of(k->json, "type");
	if (k->open || !type)
		return false;
	if (mode == BLOCKS_ALL)
		return true;
	if (k->kind == TB_THINKING)
		return (mode == BLOCKS_RESUME || tools) && str_of(k->json, "signature");
	if (k->kind == TB_REDACTED)
		return mode == BLOCKS_RESUME || tools;
	if (k->kind == TB_TEXT)
		return true;
	if (mode == BLOCKS_RESUME)
		return type_sendable(type);
	if (!strcmp(type, "server_tool_use"))
		return tool_answered(t, i);
	const char *u = str_of(k->json, "tool_use_id");
	size_t tl = strlen(type), sl = strlen("_tool_result");
	if (!u || tl < sl || strcmp(type + tl - sl, "_tool_result"))
		return false;
	for (size_t j = 0; j < i; j++) /* the result of a server tool use kept */
		if (!strcmp(str_of(t->blocks.v[j].json, "type") ?: "", "server_tool_use") &&
		    !strcmp(str_of(t->blocks.v[j].json, "id") ?: "", u))
			return true;
	return false;
}

/* Appends block k (with its text or thinking) to arr. */
static bool add_block(cJSON *arr, const struct reply *t, const struct tblock *k)
{
	cJSON *o = cJSON_CreateObject();
	const char *type = str_of(k->json, "type");
	bool ok = o && cJSON_AddStringToObject(o, "type", type);
	if (ok && k->kind == TB_TEXT)
		ok = add_str(o, "text", t->text.data ? t->text.data + k->text_at : "",
			     k->text_end - k->text_at);
	if (ok && k->kind == TB_THINKING)
		ok = add_str(o, "thinking",
			     t->thinking.data ? t->thinking.data + k->thinking_at : "",
			     k->thinking_end - k->thinking_at);
	for (const cJSON *m = k->json ? k->json->child : NULL; ok && m; m = m->next)
		if (strcmp(m->string, "type")) {
			cJSON *copy = cJSON_Duplicate(m, true);
			ok = copy && cJSON_AddItemToObject(o, m->string, copy);
			if (!ok)
				cJSON_Delete(copy);
		}
	if (ok && cJSON_AddItemToArray(arr, o))
		return true;
	cJSON_Delete(o);
	return false;
}

/* The text (and thinking, in BLOCKS_ALL) between two blocks. */
static bool add_gap(cJSON *arr, const struct reply *t, enum blocks_mode mode, size_t *tx,
		    size_t text_to, size_t *th, size_t thinking_to)
{
	bool ok = true;
	if (mode == BLOCKS_ALL && thinking_to > *th &&
	    !utf8_blank(t->thinking.data + *th, thinking_to - *th))
		ok = add_piece(arr, "thinking", "thinking", &t->thinking, *th, thinking_to);
	if (ok && text_to > *tx &&
	    (mode == BLOCKS_ALL || !utf8_blank(t->text.data + *tx, text_to - *tx)))
		ok = add_piece(arr, "text", "text", &t->text, *tx, text_to);
	*tx = text_to > *tx ? text_to : *tx;
	*th = thinking_to > *th ? thinking_to : *th;
	return ok;
}

/* The final text of a reply sent back to be continued ends without white
 * space, as the API requires of a last assistant message. */
static void trim_last(cJSON *arr)
{
	cJSON *last = cJSON_GetArrayItem(arr, cJSON_GetArraySize(arr) - 1);
	cJSON *tx = cJSON_GetObjectItemCaseSensitive(last, "text");
	if (!cJSON_IsString(tx))
		return;
	size_t n = strlen(tx->valuestring);
	while (n && strchr(" \t\r\n", tx->valuestring[n - 1]))
		n--;
	tx->valuestring[n] = '\0';
	if (!n)
		cJSON_DeleteItemFromArray(arr, cJSON_GetArraySize(arr) - 1);
}

cJSON *blocks_json(const struct reply *t, enum blocks_mode mode)
{
	const struct reply_blocks *b = &t->blocks;
	bool tools = false, special = mode != BLOCKS_HISTORY;
	for (size_t i = 0; i < b->n; i++)
		if (!strcmp(str_of(b->v[i].json, "type") ?: "", "server_tool_use") &&
		    tool_answered(t, i))
			tools = true;
	for (size_t i = 0; !special && i < b->n; i++)
		special = b->v[i].kind != TB_THINKING && b->v[i].kind != TB_REDACTED &&
			  block_kept(t, i, mode, tools);
	if (!special)
		return NULL;
	cJSON *arr = cJSON_CreateArray();
	size_t tx = 0, th = 0;
	bool ok = arr != NULL;
	for (size_t i = 0; ok && i < b->n; i++) {
		const struct tblock *k = &b->v[i];
		if (!block_kept(t, i, mode, tools))
			continue;
		ok = add_gap(arr, t, mode, &tx, k->text_at, &th, k->thinking_at) &&
		     add_block(arr, t, k);
		tx = k->text_end > tx ? k->text_end : tx;
		th = k->thinking_end > th ? k->thinking_end : th;
	}
	if (ok)
		ok = add_gap(arr, t, mode, &tx, t->text.len, &th, t->thinking.len);
	if (ok && mode == BLOCKS_RESUME)
		trim_last(arr);
	if (!ok || (mode != BLOCKS_ALL && !cJSON_GetArraySize(arr))) {
		cJSON_Delete(arr);
		return NULL;
	}
	return arr;
}

size_t blocks_bytes(const struct reply *t)
{
	size_t n = 0;
	for (size_t i = 0; i < t->blocks.n; i++)
		n += t->blocks.v[i].bytes;
	return n;
}

/* --- the transcript's lines ---------------------------------------------------- */

/* "TITLE <URL>" of a search result, a fetched page or a citation (either
 * may be missing); 0 without appending when it has neither. */
static int render_source(struct buf *out, const char *lead, const cJSON *o, const char *tail)
{
	const char *title = str_of(o, "title") ?: str_of(o, "document_title");
	const char *url = str_of(o, "url") ?: str_of(o, "source");
	const cJSON *doc = cJSON_GetObjectItemCaseSensitive(o, "content");
	if (!title && cJSON_IsObject(doc))
		title = str_of(doc, "title");
	if (!title && !url)
		return 0;
	return buf_printf(out, "%s%s%s%s%s%s%s", lead, title ? title : "", title && url ? " " : "",
			  url ? "<" : "", url ? url : "", url ? ">" : "", tail);
}

static int render_result(struct buf *out, const char *type, const cJSON *json)
{
	const cJSON *content = cJSON_GetObjectItemCaseSensitive(json, "content");
	int r = buf_printf(out, "[%s]\n", type);
	const char *code = str_of(content, "error_code");
	if (r == 0 && code)
		r = buf_printf(out, "  error: %s\n", code);
	if (r == 0 && cJSON_IsObject(content))
		r = render_source(out, "  ", content, "\n");
	const cJSON *it, *list = cJSON_IsArray(content) ? content : NULL;
	cJSON_ArrayForEach(it, list)
	{
		if (r == 0)
			r = render_source(out, "  ", it, "\n");
	}
	return r;
}

static int render_one(struct buf *out, const struct tblock *k)
{
	const char *type = str_of(k->json, "type") ?: "?";
	if (k->kind == TB_REDACTED)
		return buf_puts(out, "[redacted thinking]\n");
	if (k->kind == TB_THINKING)
		return 0; /* its text is in the thinking shown */
	if (k->kind == TB_TEXT) {
		const cJSON *it, *arr = cJSON_GetObjectItemCaseSensitive(k->json, "citations");
		int r = 0;
		cJSON_ArrayForEach(it, arr)
		{
			if (r == 0)
				r = render_source(out, "[citation: ", it, "]\n");
		}
		return r;
	}
	const char *name = str_of(k->json, "name");
	if (name) {
		char *in =
		    cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(k->json, "input"));
		int r = buf_printf(out, "[%s: %s %s]\n",
				   !strcmp(type, "tool_use")	      ? "tool use"
				   : !strcmp(type, "server_tool_use") ? "server tool use"
								      : type,
				   name, in ? in : "{}");
		free(in);
		return r;
	}
	if (str_of(k->json, "tool_use_id"))
		return render_result(out, type, k->json);
	return buf_printf(out, "[block: %s]\n", type);
}

int blocks_render(const struct reply *t, struct buf *out)
{
	bool any = false;
	for (size_t i = 0; i < t->blocks.n; i++)
		any |= !t->blocks.v[i].open && t->blocks.v[i].kind != TB_THINKING;
	if (!any)
		return 0;
	int r = buf_printf(out, "--- blocks (turn %llu) ---\n", (unsigned long long)t->number);
	for (size_t i = 0; r == 0 && i < t->blocks.n; i++)
		if (!t->blocks.v[i].open)
			r = render_one(out, &t->blocks.v[i]);
	return r ?: buf_puts(out, "\n");
}
