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
#include "mcpfs/json_nul.h"
#include "mcpfs/utf8.h"
#include "store_impl.h"

/* The part of the history that the next call sends (with an empty message). */
static size_t history_first(const struct context *c)
{
	int64_t fixed = (c->system_len ? prune_estimate(c->system_len) : 0) + summary_raw(c);
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

/* A user message's block: its attachments' lines, then its text. */
static int put_user(struct buf *out, const char *head, const struct exchange *e)
{
	if (!e->n_att)
		return put_block(out, head, e->user, e->user_len);
	int r = buf_printf(out, "--- %s ---\n", head);
	if (r == 0)
		r = attach_render_lines(e, out);
	if (r == 0)
		r = buf_append(out, e->user, e->user_len);
	if (r == 0)
		r = buf_puts(out, e->user_len && e->user[e->user_len - 1] == '\n' ? "\n" : "\n\n");
	return r;
}

static int render_history(const struct context *c, struct buf *out)
{
	size_t first = history_first(c);
	int r = 0;
	if (c->system_len)
		r = put_block(out, "system", c->system, c->system_len);
	if (r == 0)
		r = summary_render_history(c, out);
	if (r == 0 && first > 0) {
		const struct exchange *a = &c->ex[c->hist[0]], *b = &c->ex[c->hist[first - 1]];
		r = buf_printf(out,
			       "--- pruned: %zu earlier message(s), turns %llu-%llu, not sent "
			       "(budget_tokens = %lld) ---\n\n",
			       first * 2, (unsigned long long)a->turn, (unsigned long long)b->turn,
			       (long long)c->settings.budget_tokens);
	}
	for (size_t i = first; r == 0 && i < c->prune.n; i++) {
		const struct exchange *e = &c->ex[c->hist[i]];
		char head[64];
		snprintf(head, sizeof(head), "user (turn %llu)", (unsigned long long)e->turn);
		r = put_user(out, head, e);
		snprintf(head, sizeof(head), "assistant (turn %llu)", (unsigned long long)e->turn);
		if (r == 0)
			r = put_block(out, head, text_of(&e->reply->text), e->reply->text.len);
	}
	return r;
}

/* A text of len bytes as a JSON string: a NUL in it crosses cJSON as the mark
 * and print_json writes it as \u0000 (json_nul.h), so nothing after it is lost. */
static cJSON *add_text(cJSON *o, const char *key, const char *text, size_t len)
{
	char *copy = malloc(len + 1);
	if (!copy)
		return NULL;
	memcpy(copy, text, len);
	copy[len] = '\0';
	json_nul_mark(copy, len);
	cJSON *item = cJSON_AddStringToObject(o, key, copy);
	free(copy);
	return item;
}

static int add_message(cJSON *arr, const char *role, const char *text, size_t len)
{
	cJSON *m = cJSON_CreateObject();
	if (!m || !cJSON_AddStringToObject(m, "role", role) || !add_text(m, "content", text, len)) {
		cJSON_Delete(m);
		return -ENOMEM;
	}
	cJSON_AddItemToArray(arr, m);
	return 0;
}

static int print_json(cJSON *o, struct buf *out)
{
	char *text = o ? cJSON_Print(o) : NULL;
	cJSON_Delete(o);
	if (!text)
		return -ENOMEM;
	int r = json_nul_print(text, strlen(text), out);
	if (r == 0)
		r = buf_puts(out, "\n");
	free(text);
	return r;
}

/* A reply in history.json: its text, or the blocks the next call sends of it
 * (block.c: citations, server tool blocks). */
static int add_reply(cJSON *arr, const struct reply *t)
{
	cJSON *blocks = blocks_json(t, BLOCKS_HISTORY);
	if (!blocks)
		return add_message(arr, "assistant", text_of(&t->text), t->text.len);
	cJSON *m = cJSON_CreateObject();
	if (!m || !cJSON_AddStringToObject(m, "role", "assistant")) {
		cJSON_Delete(m);
		cJSON_Delete(blocks);
		return -ENOMEM;
	}
	cJSON_AddItemToObject(m, "content", blocks);
	cJSON_AddItemToArray(arr, m);
	return 0;
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
			r = attach_render_json(
			    e, cJSON_GetArrayItem(arr, cJSON_GetArraySize(arr) - 1));
		if (r == 0)
			r = add_reply(arr, e->reply);
	}
	cJSON_AddNumberToObject(o, "pruned_messages", (double)(first * 2));
	if (r == 0)
		r = summary_json(c, o);
	return r < 0 ? (cJSON_Delete(o), r) : print_json(o, out);
}

/* --- transcript: a log that only grows ------------------------------------------
 *
 * `tail -f transcript` follows the conversation, so no byte once rendered may
 * change (any prefix ever read stays a prefix, across restarts too): a part is
 * rendered only once it is final.  Exchanges, clears and new system prompts come
 * in the order they happened; the rendering stops at the first part that is
 * not final yet (a message still being written, a reply not yet begun), and a
 * streaming reply is its last part, growing.  What ends a reply (the blank line
 * after its text, its failure, a refusal, its replacement by a regeneration) is
 * appended when it happens.  The format is in README.md ("The transcript"). */

static int put_end(struct buf *out, const char *text, size_t len)
{
	return buf_puts(out, len && text[len - 1] == '\n' ? "\n" : "\n\n");
}

static int render_mark(const struct mark *m, struct buf *out)
{
	if (m->kind == MARK_CLEAR)
		return buf_puts(out, "--- cleared: the history starts again here ---\n\n");
	if (m->kind == MARK_FORK)
		return buf_printf(out, "--- forked from '%s' at turn %llu ---\n\n", m->text,
				  (unsigned long long)m->turn);
	if (m->kind == MARK_UNDO)
		return buf_printf(out, "--- turn %llu undone: taken out of the history ---\n\n",
				  (unsigned long long)m->turn);
	if (!m->len)
		return buf_puts(out, "--- system prompt removed ---\n\n");
	return put_block(out, "system prompt set", m->text, m->len);
}

/* What is appended once attempt t has ended. */
static int render_outcome(const struct reply *t, struct buf *out)
{
	unsigned long long n = (unsigned long long)t->number;
	const char *text = text_of(&t->text);
	if (t->state == REPLY_FAILED)
		return buf_printf(out, "--- turn %llu, failed: %s: %s ---\n\n", n, t->error.type,
				  t->error.message);
	int r = 0;
	if (!strcmp(t->stop_reason, "refusal"))
		r = buf_printf(out,
			       "--- turn %llu, refused (stop_reason: refusal): left out of the "
			       "history ---\n\n",
			       n);
	else if (utf8_blank(text, t->text.len))
		r = buf_printf(out,
			       "--- turn %llu: the reply has no text: left out of the history "
			       "---\n\n",
			       n);
	return r;
}

/* Renders attempt t: 1 when it has ended (the rendering goes on after it), 0
 * when it stops here, -errno. */
static int render_attempt(const struct reply *t, struct buf *out)
{
	bool ended = t->state == REPLY_DONE || t->state == REPLY_FAILED;
	/* Of a streaming reply only what is in the journal, so that a restart
	 * shows it again.  Before its first text an attempt may still be retried,
	 * which drops its thinking: nothing of it is final yet. */
	size_t shown = ended ? t->text.len : t->text_saved;
	if (!shown && !ended)
		return 0;
	size_t lead = t->text.len ? t->thinking_lead : t->thinking.len;
	const char *thinking = text_of(&t->thinking);
	bool head = shown || t->state == REPLY_DONE;
	char h[96];
	int r = 0;
	if (lead) {
		snprintf(h, sizeof(h), "thinking (turn %llu)", (unsigned long long)t->number);
		r = put_block(out, h, thinking, lead);
	}
	if (r == 0 && head && t->attempt > 1)
		r = buf_printf(out, "--- assistant (turn %llu, attempt %u) ---\n",
			       (unsigned long long)t->number, t->attempt);
	else if (r == 0 && head)
		r = buf_printf(out, "--- assistant (turn %llu) ---\n",
			       (unsigned long long)t->number);
	if (r == 0 && shown)
		r = buf_append(out, t->text.data, shown);
	if (r < 0 || !ended)
		return r;
	if (head)
		r = put_end(out, text_of(&t->text), t->text.len);
	if (r == 0 && t->thinking.len > lead) {
		snprintf(h, sizeof(h), "thinking (turn %llu, after the text)",
			 (unsigned long long)t->number);
		r = put_block(out, h, thinking + lead, t->thinking.len - lead);
	}
	if (r == 0)
		r = blocks_render(t, out);
	if (r == 0)
		r = render_outcome(t, out);
	return r < 0 ? r : 1;
}

/* Renders the marks from *m on that came before attempt t: those made before
 * it was asked for (a new system prompt between a reply and its regeneration). */
static int render_marks_before(const struct context *c, size_t *m, size_t before, struct buf *out)
{
	int r = 0;
	for (; r == 0 && *m < c->n_marks && *m < before; (*m)++)
		r = render_mark(&c->marks[*m], out);
	return r;
}

/* Renders exchange i: 1 when all of it is final, 0 when the rendering stops in
 * it, -errno.  *m is the next mark to render. */
static int render_exchange(const struct context *c, size_t i, size_t *m, struct buf *out)
{
	const struct exchange *e = &c->ex[i];
	if (e->reply->state == REPLY_PENDING && !e->n_earlier)
		return 0; /* its writer may still change it */
	char head[96], when[32];
	clock_format_utc(e->user_ms, when);
	snprintf(head, sizeof(head), "user (turn %llu, %s)", (unsigned long long)e->turn, when);
	int r = put_user(out, head, e);
	for (size_t k = 0; r >= 0 && k <= e->n_earlier; k++) {
		const struct reply *t = k < e->n_earlier ? e->earlier[k] : e->reply;
		if (k > 0 && (r = render_marks_before(c, m, t->marks_before, out)) < 0)
			break;
		/* A regeneration is told where its attempt begins: all before it
		 * was shown when it was asked for. */
		if (k > 0 && e->earlier[k - 1]->state == REPLY_DONE &&
		    (r = buf_printf(out,
				    "--- turn %llu, regenerated: the reply above is replaced by "
				    "attempt %u ---\n\n",
				    (unsigned long long)e->turn, t->attempt)) < 0)
			break;
		r = render_attempt(t, out);
		if (r == 0)
			return 0;
	}
	return r;
}

static int render_transcript(const struct context *c, struct buf *out)
{
	size_t m = 0;
	int r = 1;
	for (size_t i = 0; r > 0 && i <= c->n_ex; i++) {
		for (; r > 0 && m < c->n_marks && c->marks[m].at <= i; m++) {
			int x = render_mark(&c->marks[m], out);
			r = x < 0 ? x : 1;
		}
		if (r > 0 && i < c->n_ex)
			r = render_exchange(c, i, &m, out);
	}
	return r < 0 ? r : 0;
}

/* One reply attempt in transcript.json; replaced: a later attempt took its place. */
static int add_attempt(cJSON *arr, const struct reply *t, bool replaced)
{
	int r = add_message(arr, "assistant", text_of(&t->text), t->text.len);
	if (r < 0)
		return r;
	cJSON *a = cJSON_GetArrayItem(arr, cJSON_GetArraySize(arr) - 1);
	cJSON_AddNumberToObject(a, "turn", (double)t->number);
	cJSON_AddNumberToObject(a, "attempt", t->attempt);
	cJSON_AddStringToObject(a, "state", reply_state_name(t->state));
	if (replaced)
		cJSON_AddTrueToObject(a, "replaced");
	if (t->stop_reason[0])
		cJSON_AddStringToObject(a, "stop_reason", t->stop_reason);
	if (t->thinking.len)
		add_text(a, "thinking", text_of(&t->thinking), t->thinking.len);
	cJSON *blocks = blocks_json(t, BLOCKS_ALL);
	if (!blocks)
		return -ENOMEM;
	cJSON_AddItemToObject(a, "blocks", blocks);
	if (t->continued)
		cJSON_AddNumberToObject(a, "continued", t->continued);
	if (t->state == REPLY_FAILED) {
		cJSON *err = cJSON_AddObjectToObject(a, "error");
		cJSON_AddStringToObject(err, "type", t->error.type);
		cJSON_AddStringToObject(err, "message", t->error.message);
	}
	return 0;
}

static int render_transcript_json(const struct context *c, struct buf *out)
{
	cJSON *o = cJSON_CreateObject();
	if (c->n_marks && c->marks[0].kind == MARK_FORK) {
		cJSON *f = cJSON_AddObjectToObject(o, "forked_from");
		cJSON_AddStringToObject(f, "context", c->marks[0].text);
		cJSON_AddNumberToObject(f, "turn", (double)c->marks[0].turn);
	}
	cJSON *arr = cJSON_AddArrayToObject(o, "messages");
	int r = arr ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < c->n_ex; i++) {
		const struct exchange *e = &c->ex[i];
		const struct reply *t = e->reply;
		if ((r = add_message(arr, "user", e->user, e->user_len)) < 0)
			break;
		cJSON *u = cJSON_GetArrayItem(arr, cJSON_GetArraySize(arr) - 1);
		cJSON_AddNumberToObject(u, "turn", (double)e->turn);
		cJSON_AddNumberToObject(u, "time_ms", (double)e->user_ms);
		if ((r = attach_render_json(e, u)) < 0)
			break;
		if (e->clear_before)
			cJSON_AddTrueToObject(u, "after_clear");
		if (e->undone)
			cJSON_AddTrueToObject(u, "undone");
		for (size_t k = 0; r == 0 && k < e->n_earlier; k++)
			r = add_attempt(arr, e->earlier[k], true);
		if (r == 0 && t->state != REPLY_PENDING)
			r = add_attempt(arr, t, false);
	}
	return r < 0 ? (cJSON_Delete(o), r) : print_json(o, out);
}

/* The first line of `status`: the context as a whole (CONTRACT §2).  A call in
 * flight decides it; else a message waiting to be sent; else the newest turn's
 * failure (or a journal that cannot be written).  A refused write is not a
 * state of the context: it shows as `last_refused` only. */
static const char *status_word(const struct context *c, size_t *queued)
{
	*queued = 0;
	const struct reply *remote = NULL; /* a turn another daemon calls (store_feed.c) */
	for (size_t i = c->next_send; i < c->n_ex; i++) {
		const struct reply *t = c->ex[i].reply;
		if (t->remote && t->state != REPLY_DONE && t->state != REPLY_FAILED)
			remote = remote ? remote : t;
		else if (t != c->active && (t->state == REPLY_QUEUED || t->state == REPLY_PENDING))
			(*queued)++;
	}
	if (c->summ_call)
		return "summarizing";
	if (c->active)
		return c->active->state == REPLY_STREAMING ? "streaming" : "waiting";
	if (remote)
		return remote->state == REPLY_STREAMING ? "streaming" : "waiting";
	if (*queued)
		return "queued";
	if (c->broken || (c->newest && c->newest->state == REPLY_FAILED))
		return "error";
	return "idle";
}

/* The last failed fsync of the journal and what became of it (commit.c). */
static int render_sync_failure(const struct context *c, struct buf *out)
{
	char when[32];
	clock_format_utc(c->sync_failed_ms, when);
	if (!c->sync_recover_err)
		return buf_printf(out,
				  "journal_fsync: failed at %s (%s); recovered: what it had "
				  "not saved was truncated, the journal rescanned\n",
				  when, strerror(-c->sync_failed_err));
	return buf_printf(out,
			  "journal_fsync: failed at %s (%s); not recovered yet (%s), the "
			  "next change retries\n",
			  when, strerror(-c->sync_failed_err), strerror(-c->sync_recover_err));
}

/* The newest turn's keys: what `output` opens.  Each is named for the turn. */
static int status_turn(const struct reply *t, struct buf *out)
{
	int r = buf_printf(out, "turn_state: %s\nturn_attempt: %u\nturn_output_bytes: %zu\n",
			   reply_state_name(t->state), t->attempt, t->text.len);
	if (r == 0 && t->retries)
		r = buf_printf(out, "turn_retries: %u\n", t->retries);
	if (r == 0 && t->stop_reason[0])
		r = buf_printf(out, "stop_reason: %s\n", t->stop_reason);
	if (r == 0 && t->state == REPLY_DONE && !reply_in_history(t))
		r = buf_printf(out, "turn_history: left out: %s\n",
			       !strcmp(t->stop_reason, "refusal")
				   ? "the reply was refused (stop_reason: refusal)"
				   : "the reply has no text (the API takes no assistant turn "
				     "without text)");
	if (r == 0 && t->cache_hit)
		r = buf_puts(out, "turn_source: cache_hit\n");
	if (r == 0 && t->request_id[0])
		r = buf_printf(out, "request_id: %s\n", t->request_id);
	if (r == 0 && t->continued)
		r = buf_printf(out, "continued: %u (stop_reason pause_turn)\n", t->continued);
	if (r == 0 && t->state == REPLY_DONE && !strcmp(t->stop_reason, "pause_turn"))
		r = buf_printf(out,
			       "paused: the reply still paused after %u continuations (the "
			       "most mcpfs makes); it ends here\n",
			       t->continued);
	if (r == 0 && t->req_bytes)
		r = buf_printf(out, "turn_request: %llu bytes, built in %lld.%03lld ms\n",
			       (unsigned long long)t->req_bytes, (long long)(t->req_us / 1000),
			       (long long)(t->req_us % 1000));
	if (r == 0 && t->state == REPLY_FAILED) {
		r = buf_printf(out, "last_error: %s: %s\n", t->error.type, t->error.message);
		if (r == 0 && t->error.http_status > 0)
			r = buf_printf(out, "http_status: %d\n", t->error.http_status);
		if (r == 0 && t->error.request_id[0] && strcmp(t->error.request_id, t->request_id))
			r = buf_printf(out, "error_request_id: %s\n", t->error.request_id);
	}
	return r;
}

/* The call in flight, which may be an older turn's than the newest. */
static int status_call(const struct context *c, struct buf *out)
{
	const struct reply *a = c->active;
	int r = buf_printf(out, "call_turn: %llu\ncall_retries: %u of %lld\n",
			   (unsigned long long)a->number, a->retries,
			   (long long)c->settings.max_retries);
	if (r == 0 && a->retries && a->state == REPLY_WAITING)
		r = buf_printf(out, "retrying: after %s: %s\n", a->error.type, a->error.message);
	return r;
}

static int render_status(struct store *s, const struct context *c, struct buf *out)
{
	size_t queued;
	const struct reply *t = c->newest;
	const char *word = status_word(c, &queued);
	int r = buf_printf(out, "%s\nturn: %llu\nqueued: %zu\nmodel: %s\n", word,
			   t ? (unsigned long long)t->number : 0ULL, queued, c->settings.model);
	if (r == 0 && t)
		r = status_turn(t, out);
	if (r == 0 && c->active)
		r = status_call(c, out);
	if (r == 0 && c->refused[0]) {
		char when[32];
		clock_format_utc(c->refused_ms, when);
		r = buf_printf(out, "last_refused: %s (at %s)\n", c->refused, when);
	}
	if (r == 0 && c->note[0])
		r = buf_printf(out, "journal_error: %s\n", c->note);
	char store_line[600];
	if (r == 0 && storage_status(s->st, store_line, sizeof(store_line)) == 0)
		r = buf_printf(out, "store: %s\n", store_line); /* a shared engine only */
	if (r == 0 && (c->report.bad_records || c->report.torn_bytes))
		r = buf_printf(out,
			       "journal_recovered: %llu corrupt record(s) skipped, %llu torn "
			       "byte(s) truncated\n",
			       (unsigned long long)c->report.bad_records,
			       (unsigned long long)c->report.torn_bytes);
	if (r == 0 && c->broken)
		r = buf_puts(out, "journal: read-only (it could not be opened for writing)\n");
	if (r == 0 && c->sync_failed_ms)
		r = render_sync_failure(c, out);
	if (r == 0)
		r = summary_status(c, out);
	if (r == 0)
		r = store_models_status(s, c, out);
	if (r == 0)
		r = attach_status(c, out);
	return r;
}

/* What the last turn that ended was answered by (CONTRACT §10). */
static const char *last_call(const struct context *c)
{
	return c->last_hit ? "cache_hit" : c->totals.calls ? "api" : "none";
}

static int render_usage(const struct store *s, const struct context *c, struct buf *out)
{
	const struct wire_usage *u = &c->last_usage;
	const struct usage_totals *t = &c->totals;
	int r = buf_printf(
	    out,
	    "last_input_tokens: %lld\nlast_output_tokens: %lld\n"
	    "last_cache_creation_input_tokens: %lld\nlast_cache_read_input_tokens: %lld\n"
	    "total_input_tokens: %lld\ntotal_output_tokens: %lld\n"
	    "total_cache_creation_input_tokens: %lld\ntotal_cache_read_input_tokens: %lld\n"
	    "calls: %llu\n",
	    (long long)u->input_tokens, (long long)u->output_tokens,
	    (long long)u->cache_creation_input_tokens, (long long)u->cache_read_input_tokens,
	    (long long)t->input, (long long)t->output, (long long)t->cache_creation,
	    (long long)t->cache_read, (unsigned long long)t->calls);
	if (r == 0)
		r = buf_printf(out, "cache_hits: %llu\nlast_call: %s\n",
			       (unsigned long long)t->cache_hits, last_call(c));
	return r < 0 ? r : context_render_cost(s, c, out);
}

static int render_info_json(const struct store *s, const struct context *c, struct buf *out)
{
	size_t queued;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", c->slot->name);
	cJSON_AddStringToObject(o, "status", status_word(c, &queued));
	cJSON_AddNumberToObject(o, "turn", c->newest ? (double)c->newest->number : 0);
	cJSON_AddNumberToObject(o, "queued", (double)queued);
	cJSON_AddStringToObject(o, "model", c->settings.model);
	cJSON_AddStringToObject(o, "system", c->system);
	cJSON *sch = c->schema ? cJSON_Parse(c->schema) : NULL;
	if (!cJSON_AddItemToObject(o, "schema", sch ? sch : cJSON_CreateNull()))
		cJSON_Delete(sch);
	cJSON *cfg = cJSON_AddObjectToObject(o, "config");
	if (cfg)
		settings_to_json(&c->settings, cfg);
	cJSON *meta = meta_copy(c->slot); /* user.* attributes of the directory */
	if (!cJSON_AddItemToObject(o, "meta", meta))
		cJSON_Delete(meta);
	cJSON *u = cJSON_AddObjectToObject(o, "usage");
	if (u) {
		cJSON_AddNumberToObject(u, "input_tokens", (double)c->totals.input);
		cJSON_AddNumberToObject(u, "output_tokens", (double)c->totals.output);
		cJSON_AddNumberToObject(u, "cache_creation_input_tokens",
					(double)c->totals.cache_creation);
		cJSON_AddNumberToObject(u, "cache_read_input_tokens", (double)c->totals.cache_read);
		cJSON_AddNumberToObject(u, "calls", (double)c->totals.calls);
		cJSON_AddNumberToObject(u, "cache_hits", (double)c->totals.cache_hits);
		cJSON_AddStringToObject(u, "last_call", last_call(c));
		context_cost_json(s, c, u);
	}
	const struct reply *t = c->newest;
	if (t && t->state == REPLY_FAILED) {
		cJSON *e = cJSON_AddObjectToObject(o, "last_error");
		cJSON_AddStringToObject(e, "type", t->error.type);
		cJSON_AddStringToObject(e, "message", t->error.message);
	}
	if (c->refused[0]) {
		cJSON *e = cJSON_AddObjectToObject(o, "last_refused");
		cJSON_AddStringToObject(e, "reason", c->refused);
		cJSON_AddNumberToObject(e, "time_ms", (double)c->refused_ms);
	}
	return print_json(o, out);
}

/* --- the status word of a context not loaded ------------------------------------- */

#define PEEK_TAIL (64u << 10) /* bytes of a journal's end read for it */

struct peek {
	int64_t turn; /* newest turn a record named, 0 for none or after a clear */
	bool done;    /* its last record is a REPLY_END saying done */
	bool seen;    /* a record about turns was read */
};

static int on_peek(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	struct peek *p = data;
	(void)seq;
	if (type != JOURNAL_USER && type != JOURNAL_REPLY_PART && type != JOURNAL_REPLY_END &&
	    type != JOURNAL_CLEAR)
		return 0;
	p->seen = true;
	if (type == JOURNAL_CLEAR) {
		p->turn = 0;
		return 0;
	}
	struct record r = {0};
	int64_t turn = -1; /* a bad record names none */
	bool done = false;
	if (record_decode(&r, type, payload, len, NULL) == RECORD_OK) {
		if (type == JOURNAL_USER)
			turn = (int64_t)r.u.user.turn;
		else if (type == JOURNAL_REPLY_PART)
			turn = r.u.part.turn;
		else {
			turn = r.u.end.turn;
			done = r.u.end.done;
		}
	}
	record_release(&r);
	if (turn > 0 && turn >= p->turn) {
		p->turn = turn;
		p->done = done;
	}
	return 0;
}

/* A context that is not loaded has nothing in flight: it is idle, unless its
 * newest reply failed or has no end (it loads as interrupted).  The end of the
 * journal says which; the whole of it only when that end holds no turn. */
static const char *context_peek_word(struct storage *st, uint64_t sid)
{
	struct peek p = {0};
	int r = storage_tail(st, sid, PEEK_TAIL, on_peek, &p);
	if ((r == 0 && !p.seen) || r == -ENOTSUP) /* no tail: the whole of it */
		r = storage_load(st, sid, 0, 0, on_peek, &p, NULL);
	if (r == -ENODATA)
		return "idle"; /* loading creates it */
	return r < 0 || (p.turn && !p.done) ? "error" : "idle";
}

int context_status_word(struct store *s, uint64_t id, char *out, size_t outlen)
{
	size_t queued;
	pthread_mutex_lock(&s->lock);
	struct store_slot *slot = map_get_id(&s->by_id, id);
	int r = !slot ? -ENOENT : slot->ctx || slot->word[0] ? 0 : 1;
	uint64_t sid = slot ? slot->sid : 0;
	if (r == 0)
		snprintf(out, outlen, "%s",
			 slot->ctx ? status_word(slot->ctx, &queued) : slot->word);
	pthread_mutex_unlock(&s->lock);
	if (r != 1)
		return r;
	/* Read without the lock; the word holds until the context is loaded. */
	const char *w = context_peek_word(s->st, sid);
	pthread_mutex_lock(&s->lock);
	slot = map_get_id(&s->by_id, id);
	if (slot && !slot->ctx)
		snprintf(slot->word, sizeof(slot->word), "%s", w);
	snprintf(out, outlen, "%s", slot && slot->ctx ? status_word(slot->ctx, &queued) : w);
	pthread_mutex_unlock(&s->lock);
	return slot ? 0 : -ENOENT;
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

/* A transcript holds at least the texts of its exchanges: when they alone are
 * over what out may take, -EFBIG at once, rather than after building a JSON
 * tree and a printed copy of a context that can be hundreds of megabytes. */
static int transcript_fits(const struct context *c, size_t need, const struct buf *out)
{
	size_t room = out->max - out->len;
	for (size_t i = 0; i < c->n_ex && need <= room; i++)
		need += c->ex[i].user_len + c->ex[i].reply->text.len;
	return need <= room ? 0 : -EFBIG;
}

int context_render(struct store *s, uint64_t id, enum view_kind kind, struct buf *out)
{
	return context_render_version(s, id, kind, out, NULL);
}

int context_version(struct store *s, uint64_t id, uint64_t *version)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	/* Text received but not yet checkpointed is a change too: the transcript
	 * shows it once a rendering has saved it (no rendering has this value). */
	if (c)
		*version = c->active && c->active->text_saved < c->active->text.len ? UINT64_MAX
										    : c->version;
	pthread_mutex_unlock(&s->lock);
	return c ? 0 : -ENOENT;
}

int context_render_version(struct store *s, uint64_t id, enum view_kind kind, struct buf *out,
			   uint64_t *version)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? 0 : -ENOENT;
	switch (c ? kind : (enum view_kind) - 1) {
	case VIEW_HISTORY:
	case VIEW_HISTORY_JSON:
		r = render_cached(c, kind, out);
		break;
	case VIEW_TRANSCRIPT:
		/* What a reader is shown of a streaming reply must survive a crash
		 * (a restart shows the same bytes, then the interruption). */
		if (c->active && c->active->text_saved < c->active->text.len)
			reply_checkpoint(c->active, false);
		r = transcript_fits(c, c->system_len, out) ?: render_transcript(c, out);
		break;
	case VIEW_TRANSCRIPT_JSON:
		r = transcript_fits(c, 0, out) ?: render_transcript_json(c, out);
		break;
	case VIEW_SYSTEM:
		r = buf_append(out, c->system, c->system_len);
		break;
	case VIEW_SCHEMA:
		r = c->schema ? buf_append(out, c->schema, c->schema_len) : 0;
		break;
	case VIEW_MODEL:
		r = buf_printf(out, "%s\n", c->settings.model);
		break;
	case VIEW_CONFIG:
		r = settings_render(&c->settings, out);
		break;
	case VIEW_STATUS:
		r = render_status(s, c, out);
		break;
	case VIEW_USAGE:
		r = render_usage(s, c, out);
		break;
	case VIEW_INFO_JSON:
		r = render_info_json(s, c, out);
		break;
	case VIEW_SUMMARY:
		r = c->summary_len ? buf_append(out, c->summary, c->summary_len) : 0;
		break;
	default:
		break;
	}
	if (c && version)
		*version = c->version; /* after the checkpoint above */
	pthread_mutex_unlock(&s->lock);
	return r;
}
