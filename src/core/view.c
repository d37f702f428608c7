/* view.c — the text and JSON renderings of a context (see store.h, enum
 * view_kind).  Under the store lock; pure formatting of struct context, except
 * the status word of a context not loaded, read from its journal's end. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "store_impl.h"

/* The part of the history that the next call sends (with an empty message). */
static size_t history_first(const struct context *c)
{
	int64_t fixed = c->system_len ? prune_estimate(c->system_len) : 0;
	int64_t first = prune_peek(&c->prune, fixed, c->settings.budget_tokens);
	return first < 0 ? c->prune.n : (size_t)first;
}

static const char *text_of(const struct buf *b)
{
	return b->data ? b->data : "";
}

static int put_block(struct buf *out, const char *head, const char *text, size_t len)
{
	int r = buf_printf(out, "--- %s ---\n", head);
	if (r == 0 && len)
		r = buf_append(out, text, len);
	if (r == 0)
		r = buf_puts(out, len && text[len - 1] == '\n' ? "\n" : "\n\n");
	return r;
}

static int render_history(const struct context *c, struct buf *out)
{
	size_t first = history_first(c);
	int r = 0;
	if (c->system_len)
		r = put_block(out, "system", c->system, c->system_len);
	if (r == 0 && first > 0) {
		const struct exchange *a = &c->ex[c->hist[0]], *b = &c->ex[c->hist[first - 1]];
		r = buf_printf(out, "--- pruned: %zu earlier message(s), turns %llu-%llu, not sent "
			       "(budget_tokens = %lld) ---\n\n", first * 2,
			       (unsigned long long)a->turn, (unsigned long long)b->turn,
			       (long long)c->settings.budget_tokens);
	}
	for (size_t i = first; r == 0 && i < c->prune.n; i++) {
		const struct exchange *e = &c->ex[c->hist[i]];
		char head[64];
		snprintf(head, sizeof(head), "user (turn %llu)", (unsigned long long)e->turn);
		r = put_block(out, head, e->user, e->user_len);
		snprintf(head, sizeof(head), "assistant (turn %llu)", (unsigned long long)e->turn);
		if (r == 0)
			r = put_block(out, head, text_of(&e->reply->text), e->reply->text.len);
	}
	return r;
}

static int add_message(cJSON *arr, const char *role, const char *text, size_t len)
{
	cJSON *m = cJSON_CreateObject();
	char *copy = strndup(text, len);
	if (!m || !copy) {
		cJSON_Delete(m);
		free(copy);
		return -ENOMEM;
	}
	cJSON_AddStringToObject(m, "role", role);
	cJSON_AddStringToObject(m, "content", copy);
	free(copy);
	cJSON_AddItemToArray(arr, m);
	return 0;
}

static int print_json(cJSON *o, struct buf *out)
{
	char *text = o ? cJSON_Print(o) : NULL;
	cJSON_Delete(o);
	if (!text)
		return -ENOMEM;
	int r = buf_puts(out, text);
	if (r == 0)
		r = buf_puts(out, "\n");
	free(text);
	return r;
}

static int render_history_json(const struct context *c, struct buf *out)
{
	size_t first = history_first(c);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "model", c->settings.model);
	cJSON_AddStringToObject(o, "system", c->system);
	cJSON *arr = cJSON_AddArrayToObject(o, "messages");
	int r = arr ? 0 : -ENOMEM;
	for (size_t i = first; r == 0 && i < c->prune.n; i++) {
		const struct exchange *e = &c->ex[c->hist[i]];
		r = add_message(arr, "user", e->user, e->user_len);
		if (r == 0)
			r = add_message(arr, "assistant", text_of(&e->reply->text), e->reply->text.len);
	}
	cJSON_AddNumberToObject(o, "pruned_messages", (double)(first * 2));
	return r < 0 ? (cJSON_Delete(o), r) : print_json(o, out);
}

static void describe_turn(const struct turn *t, char *out, size_t n)
{
	if (t->state == TURN_DONE)
		snprintf(out, n, "assistant (turn %llu)", (unsigned long long)t->number);
	else if (t->state == TURN_FAILED)
		snprintf(out, n, "assistant (turn %llu, failed: %s: %s)",
			 (unsigned long long)t->number, t->error.type, t->error.message);
	else
		snprintf(out, n, "assistant (turn %llu, %s)", (unsigned long long)t->number,
			 turn_state_name(t->state));
}

static int render_transcript(const struct context *c, struct buf *out)
{
	int r = 0;
	if (c->system_len)
		r = put_block(out, "system (current)", c->system, c->system_len);
	for (size_t i = 0; r == 0 && i < c->n_ex; i++) {
		const struct exchange *e = &c->ex[i];
		char head[800], when[32];
		if (e->clear_before)
			r = buf_puts(out, "--- cleared: the history starts again here ---\n\n");
		clock_format_utc(e->user_ms, when);
		snprintf(head, sizeof(head), "user (turn %llu, %s)", (unsigned long long)e->turn, when);
		if (r == 0)
			r = put_block(out, head, e->user, e->user_len);
		const struct turn *t = e->reply;
		if (r == 0 && t->thinking.len) {
			snprintf(head, sizeof(head), "thinking (turn %llu)", (unsigned long long)e->turn);
			r = put_block(out, head, text_of(&t->thinking), t->thinking.len);
		}
		describe_turn(t, head, sizeof(head));
		if (r == 0 && t->state != TURN_PENDING)
			r = put_block(out, head, text_of(&t->text), t->text.len);
	}
	if (r == 0 && c->pending_clear)
		r = buf_puts(out, "--- cleared: the history starts again here ---\n\n");
	return r;
}

static int render_transcript_json(const struct context *c, struct buf *out)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(o, "messages");
	int r = arr ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < c->n_ex; i++) {
		const struct exchange *e = &c->ex[i];
		const struct turn *t = e->reply;
		if ((r = add_message(arr, "user", e->user, e->user_len)) < 0)
			break;
		cJSON *u = cJSON_GetArrayItem(arr, cJSON_GetArraySize(arr) - 1);
		cJSON_AddNumberToObject(u, "turn", (double)e->turn);
		cJSON_AddNumberToObject(u, "time_ms", (double)e->user_ms);
		if (e->clear_before)
			cJSON_AddTrueToObject(u, "after_clear");
		if (t->state == TURN_PENDING)
			continue;
		if ((r = add_message(arr, "assistant", text_of(&t->text), t->text.len)) < 0)
			break;
		cJSON *a = cJSON_GetArrayItem(arr, cJSON_GetArraySize(arr) - 1);
		cJSON_AddNumberToObject(a, "turn", (double)e->turn);
		cJSON_AddStringToObject(a, "state", turn_state_name(t->state));
		if (t->stop_reason[0])
			cJSON_AddStringToObject(a, "stop_reason", t->stop_reason);
		if (t->thinking.len)
			cJSON_AddStringToObject(a, "thinking", text_of(&t->thinking));
		if (t->state == TURN_FAILED) {
			cJSON *err = cJSON_AddObjectToObject(a, "error");
			cJSON_AddStringToObject(err, "type", t->error.type);
			cJSON_AddStringToObject(err, "message", t->error.message);
		}
	}
	return r < 0 ? (cJSON_Delete(o), r) : print_json(o, out);
}

static const char *status_word(const struct context *c, size_t *queued)
{
	*queued = 0;
	for (size_t i = c->next_send; i < c->n_ex; i++) {
		const struct turn *t = c->ex[i].reply;
		if (t != c->active && (t->state == TURN_QUEUED || t->state == TURN_PENDING))
			(*queued)++;
	}
	if (c->active)
		return c->active->state == TURN_STREAMING ? "streaming" : "waiting";
	if (*queued)
		return "queued";
	if (c->note[0] || (c->newest && c->newest->state == TURN_FAILED))
		return "error";
	return "idle";
}

/* The last failed fsync of the journal and what became of it (commit.c). */
static int render_sync_failure(const struct context *c, struct buf *out)
{
	char when[32];
	clock_format_utc(c->sync_failed_ms, when);
	if (!c->sync_recover_err)
		return buf_printf(out, "journal_fsync: failed at %s (%s); recovered: what it had "
				  "not saved was truncated, the journal rescanned\n", when,
				  strerror(-c->sync_failed_err));
	return buf_printf(out, "journal_fsync: failed at %s (%s); not recovered yet (%s), the "
			  "next change retries\n", when, strerror(-c->sync_failed_err),
			  strerror(-c->sync_recover_err));
}

static int render_status(const struct context *c, struct buf *out)
{
	size_t queued;
	const struct turn *t = c->newest;
	const char *word = status_word(c, &queued);
	int r = buf_printf(out, "%s\nturn: %llu\nqueued: %zu\nmodel: %s\n", word,
			   t ? (unsigned long long)t->number : 0ULL, queued, c->settings.model);
	if (r == 0 && t)
		r = buf_printf(out, "state: %s\nattempt: %u\noutput_bytes: %zu\n",
			       turn_state_name(t->state), t->attempt, t->text.len);
	if (r == 0 && c->active && c->active->retries)
		r = buf_printf(out, "retrying: attempt %u after %s: %s\n", c->active->retries + 1,
			       c->active->error.type, c->active->error.message);
	if (r == 0 && t && t->stop_reason[0])
		r = buf_printf(out, "stop_reason: %s\n", t->stop_reason);
	if (r == 0 && t && t->request_id[0])
		r = buf_printf(out, "request_id: %s\n", t->request_id);
	if (r == 0 && c->note[0])
		r = buf_printf(out, "last_error: %s\n", c->note);
	else if (r == 0 && t && t->state == TURN_FAILED) {
		r = buf_printf(out, "last_error: %s: %s\n", t->error.type, t->error.message);
		if (r == 0 && t->error.http_status > 0)
			r = buf_printf(out, "http_status: %d\n", t->error.http_status);
		if (r == 0 && t->error.request_id[0] && strcmp(t->error.request_id, t->request_id))
			r = buf_printf(out, "error_request_id: %s\n", t->error.request_id);
	}
	if (r == 0 && (c->report.bad_records || c->report.torn_bytes))
		r = buf_printf(out, "journal_recovered: %llu corrupt record(s) skipped, %llu torn "
			       "byte(s) truncated\n", (unsigned long long)c->report.bad_records,
			       (unsigned long long)c->report.torn_bytes);
	if (r == 0 && c->broken)
		r = buf_puts(out, "journal: read-only (it could not be opened for writing)\n");
	if (r == 0 && c->sync_failed_ms)
		r = render_sync_failure(c, out);
	return r;
}

static int render_usage(const struct context *c, struct buf *out)
{
	const struct wire_usage *u = &c->last_usage;
	const struct usage_totals *t = &c->totals;
	return buf_printf(out,
			  "last_input_tokens: %lld\nlast_output_tokens: %lld\n"
			  "last_cache_creation_input_tokens: %lld\nlast_cache_read_input_tokens: %lld\n"
			  "total_input_tokens: %lld\ntotal_output_tokens: %lld\n"
			  "total_cache_creation_input_tokens: %lld\ntotal_cache_read_input_tokens: %lld\n"
			  "calls: %llu\n",
			  (long long)u->input_tokens, (long long)u->output_tokens,
			  (long long)u->cache_creation_input_tokens, (long long)u->cache_read_input_tokens,
			  (long long)t->input, (long long)t->output, (long long)t->cache_creation,
			  (long long)t->cache_read, (unsigned long long)t->calls);
}

static int render_info_json(const struct context *c, struct buf *out)
{
	size_t queued;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", c->slot->name);
	cJSON_AddStringToObject(o, "status", status_word(c, &queued));
	cJSON_AddNumberToObject(o, "turn", c->newest ? (double)c->newest->number : 0);
	cJSON_AddNumberToObject(o, "queued", (double)queued);
	cJSON_AddStringToObject(o, "model", c->settings.model);
	cJSON_AddStringToObject(o, "system", c->system);
	cJSON *cfg = cJSON_AddObjectToObject(o, "config");
	if (cfg)
		settings_to_json(&c->settings, cfg);
	cJSON *u = cJSON_AddObjectToObject(o, "usage");
	if (u) {
		cJSON_AddNumberToObject(u, "input_tokens", (double)c->totals.input);
		cJSON_AddNumberToObject(u, "output_tokens", (double)c->totals.output);
		cJSON_AddNumberToObject(u, "cache_creation_input_tokens", (double)c->totals.cache_creation);
		cJSON_AddNumberToObject(u, "cache_read_input_tokens", (double)c->totals.cache_read);
		cJSON_AddNumberToObject(u, "calls", (double)c->totals.calls);
	}
	const struct turn *t = c->newest;
	if (c->note[0] || (t && t->state == TURN_FAILED)) {
		cJSON *e = cJSON_AddObjectToObject(o, "last_error");
		cJSON_AddStringToObject(e, "type", c->note[0] ? "rejected" : t->error.type);
		cJSON_AddStringToObject(e, "message", c->note[0] ? c->note : t->error.message);
	}
	return print_json(o, out);
}

/* --- the status word of a context not loaded ------------------------------------- */

#define PEEK_TAIL (64u << 10)  /* bytes of a journal's end read for it */

struct peek {
	int64_t turn;  /* newest turn a record named, 0 for none or after a clear */
	bool done;     /* its last record is a REPLY_END saying done */
	bool seen;     /* a record about turns was read */
};

static int on_peek(void *data, uint16_t type, const void *payload, size_t len, uint64_t off)
{
	struct peek *p = data;
	(void)off;
	if (type != JOURNAL_USER && type != JOURNAL_REPLY_PART && type != JOURNAL_REPLY_END &&
	    type != JOURNAL_CLEAR)
		return 0;
	p->seen = true;
	if (type == JOURNAL_CLEAR) {
		p->turn = 0;
		return 0;
	}
	cJSON *o = cJSON_ParseWithLength(payload, len);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "turn");
	int64_t turn = cJSON_IsNumber(t) ? (int64_t)t->valuedouble : -1;
	if (turn > 0 && turn >= p->turn) {
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "state");
		p->turn = turn;
		p->done = type == JOURNAL_REPLY_END && cJSON_IsString(st) &&
			  !strcmp(st->valuestring, "done");
	}
	cJSON_Delete(o);
	return 0;
}

/* A context that is not loaded has nothing in flight: it is idle, unless its
 * newest reply failed or has no end (it loads as interrupted).  The end of the
 * journal says which; the whole of it only when that end holds no turn. */
static const char *context_peek_word(const char *path)
{
	struct peek p = {0};
	struct journal_report rep;
	int r = journal_scan_tail(path, PEEK_TAIL, on_peek, &p, &rep);
	if (r == 0 && !p.seen)
		r = journal_scan(path, on_peek, &p, &rep);
	if (r == -ENOENT)
		return "idle";  /* loading creates it */
	return r < 0 || (p.turn && !p.done) ? "error" : "idle";
}

int context_status_word(struct store *s, uint64_t id, char *out, size_t outlen)
{
	char path[JOURNAL_PATH_MAX];
	size_t queued;
	pthread_mutex_lock(&s->lock);
	struct store_slot *slot = map_get_id(&s->by_id, id);
	int r = !slot ? -ENOENT : slot->ctx || slot->word[0] ? 0
		: slot_journal_path(s, slot, path, sizeof(path)) == 0 ? 1 : -ENAMETOOLONG;
	if (r == 0)
		snprintf(out, outlen, "%s", slot->ctx ? status_word(slot->ctx, &queued) : slot->word);
	pthread_mutex_unlock(&s->lock);
	if (r != 1)
		return r;
	/* Read without the lock; the word holds until the context is loaded. */
	const char *w = context_peek_word(path);
	pthread_mutex_lock(&s->lock);
	slot = map_get_id(&s->by_id, id);
	if (slot && !slot->ctx)
		snprintf(slot->word, sizeof(slot->word), "%s", w);
	snprintf(out, outlen, "%s", slot && slot->ctx ? status_word(slot->ctx, &queued) : w);
	pthread_mutex_unlock(&s->lock);
	return slot ? 0 : -ENOENT;
}

void context_views_done(struct context *c)
{
	for (int i = 0; i < VIEW_CACHED; i++) {
		free(c->views[i].data);
		c->views[i].data = NULL;
	}
}

/* Appends the cached rendering when the context has not changed since it was
 * made; otherwise renders and keeps a copy.  A copy that cannot be made only
 * costs the next call a rendering. */
static int render_cached(struct context *c, enum view_kind kind, struct buf *out)
{
	struct view_cache *v = &c->views[kind == VIEW_HISTORY ? 0 : 1];
	if (v->data && v->version == c->version)
		return buf_append(out, v->data, v->len);
	size_t start = out->len;
	int r = kind == VIEW_HISTORY ? render_history(c, out) : render_history_json(c, out);
	if (r < 0)
		return r;
	char *copy = malloc(out->len - start + 1);
	free(v->data);
	v->data = copy;
	if (copy) {
		v->len = out->len - start;
		memcpy(copy, out->data ? out->data + start : "", v->len);
		v->version = c->version;
	}
	return 0;
}

int context_render(struct store *s, uint64_t id, enum view_kind kind, struct buf *out)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? 0 : -ENOENT;
	switch (c ? kind : (enum view_kind)-1) {
	case VIEW_HISTORY:
	case VIEW_HISTORY_JSON: r = render_cached(c, kind, out); break;
	case VIEW_TRANSCRIPT: r = render_transcript(c, out); break;
	case VIEW_TRANSCRIPT_JSON: r = render_transcript_json(c, out); break;
	case VIEW_SYSTEM: r = buf_append(out, c->system, c->system_len); break;
	case VIEW_MODEL: r = buf_printf(out, "%s\n", c->settings.model); break;
	case VIEW_CONFIG: r = settings_render(&c->settings, out); break;
	case VIEW_STATUS: r = render_status(c, out); break;
	case VIEW_USAGE: r = render_usage(c, out); break;
	case VIEW_INFO_JSON: r = render_info_json(c, out); break;
	default: break;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}
