/* summary.c — the rolling summary that stands in for pruned exchanges
 * (CONTRACT §10; doc/design/pruning.md "Summaries").
 *
 * Under the store lock.  With `prune = summarize`, when the next call's cut
 * point would move (prune_peek above the floor), the call is held back and one
 * summary call is made first: it sends the same prefix as the context's calls
 * (system prompt, current summary, the kept exchanges), so it reads the prompt
 * cache, and then an instruction to fold the earlier summary and the exchanges
 * being cut into a new summary.  Its end moves the floor to the cut and
 * releases the held call; a failure drops that cut instead.  `ctl compact`
 * starts the same call for everything but the newest 2 exchanges.
 *
 * The summary call is a struct reply with summary_call set: the transport's
 * reports reach it through store->calls like any call; reply_end() (reply_call.c)
 * hands its end to summary_call_end().  This file decides when a summary call
 * is made and keeps what it returns; it ends no turn and starts no other call:
 * cancelling one (summary_cancel names it) and sending what waited are the
 * callers' (reply_call.c, and message.c for the `summary` and `compact` verbs).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "mcpfs/utf8.h"
#include "store_impl.h"

#define REQUEST_MAX WIRE_REQUEST_MAX

const char summary_prompt_default[] =
    "Write a summary that will replace the earlier part of this conversation named below. "
    "Every later request sends your summary instead of those messages, so keep everything "
    "needed to go on: the user's goals, requests and constraints; decisions made and why; "
    "facts, names, numbers, file paths, code and commands that matter; what was tried and "
    "what failed; open questions and next steps. Keep what the earlier summary says unless "
    "it was superseded. Leave out greetings and repetition. Write in the conversation's "
    "language, as plain prose or short lists, with no preamble and no closing remark, in "
    "at most about 600 words.";

/* The block sent after the system prompt: a line naming what it covers, then
 * the text.  Appended to out (empty for no summary). */
int summary_block(const struct context *c, struct buf *out)
{
	if (!c->summary_len)
		return 0;
	int r = c->summ_last ? buf_printf(out,
					  "Summary of the earlier part of this conversation "
					  "(turns %" PRIu64 "-%" PRIu64 "), which is left out:\n\n",
					  c->summ_first, c->summ_last)
			     : buf_puts(out, "Summary of the earlier part of this conversation, "
					     "which is left out:\n\n");
	return r ? r : buf_append(out, c->summary, c->summary_len);
}

int64_t summary_raw(const struct context *c)
{
	/* The line before the text: at most about 110 bytes. */
	return c->summary_len ? prune_estimate(c->summary_len + 110) : 0;
}

/* Replaces the summary (text copied; len 0 removes it) and its turns. */
static int summary_put(struct context *c, const char *text, size_t len, uint64_t first,
		       uint64_t last)
{
	char *copy = NULL;
	if (len && !(copy = malloc(len + 1)))
		return -ENOMEM;
	if (copy) {
		memcpy(copy, text, len);
		copy[len] = '\0';
	}
	free(c->summary);
	c->summary = copy;
	c->summary_len = len;
	c->summ_first = len ? first : 0;
	c->summ_last = len ? last : 0;
	context_changed(c);
	return 0;
}

void summary_forget(struct context *c)
{
	summary_put(c, NULL, 0, 0, 0);
	c->summ_drop = false;
	c->summ_unsaved = false;
}

int summary_adopt(struct context *c, const char *text, size_t len, uint64_t first, uint64_t last)
{
	return summary_put(c, text, len, first, last);
}

void summary_after_load(struct context *c)
{
	/* What the summary covers is never sent again. */
	while (c->summ_last && c->prune.floor < c->prune.n &&
	       c->ex[c->hist[c->prune.floor]].turn <= c->summ_last)
		c->prune.floor++;
}

/* The SUMMARY payload of the summary as it is now; with the usage of the
 * summary call that made it (u NULL or without usage: none) and its model, so
 * that a reload counts its tokens and cost as they were.  NULL: out of memory. */
static cJSON *summary_payload(const struct context *c, const char *by, const struct wire_usage *u,
			      const char *model)
{
	struct record_summary r = {
	    .text = c->summary_len ? c->summary : "",
	    .first_turn = c->summ_first,
	    .last_turn = c->summ_last,
	    .by = by,
	    .ms = clock_wall_ms(),
	    .has_usage = u && u->present,
	    .usage = u ? *u : (struct wire_usage){0},
	    .model = model,
	};
	return record_summary_json(&r);
}

/* Appends the SUMMARY record of the summary as it is now. */
static int summary_record(struct context *c, const char *by, const struct wire_usage *u,
			  const char *model)
{
	cJSON *o = summary_payload(c, by, u, model);
	return o ? context_journal_write(c, JOURNAL_SUMMARY, o, false) : -ENOMEM;
}

int summary_fork_payload(const struct context *c, uint64_t upto, char **out)
{
	*out = NULL;
	/* A summary of turns past the fork's would tell it what it has not
	 * seen: the fork then sends those turns whole (and prunes for itself). */
	if (!c->summary_len || c->summ_last > upto)
		return 0;
	cJSON *o = summary_payload(c, "fork", NULL, NULL);
	*out = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	return *out ? 0 : -ENOMEM;
}

void summary_flush(struct store *s, struct context *c, struct notes *n)
{
	if (!c->summ_unsaved || !c->open || c->syncing)
		return;
	c->summ_unsaved = false;
	if (summary_record(c, "call", &c->summ_usage, c->summ_model) == 0)
		commit_sync_later(s, c, n);
}

/* The instruction that ends a summary call's messages. */
static int summary_instruction(const struct context *c, size_t from, size_t cut, size_t upto,
			       const char *focus, size_t flen, struct buf *out)
{
	const char *p =
	    c->settings.summary_prompt[0] ? c->settings.summary_prompt : summary_prompt_default;
	int r = buf_printf(out,
			   "%s\n\nFold into the new summary: the earlier summary (if any) and the "
			   "first %zu exchanges above (turns %" PRIu64 " to %" PRIu64 ").",
			   p, cut - from, c->ex[c->hist[from]].turn, c->ex[c->hist[cut - 1]].turn);
	if (r == 0 && upto > cut)
		r = buf_printf(out,
			       " The %zu exchange(s) after them stay in the conversation as they "
			       "are: do not summarize those.",
			       upto - cut);
	if (r == 0 && flen)
		r = buf_printf(out, "\nFocus: %.*s", (int)flen, focus);
	return r;
}

/* The body of a summary call folding exchanges floor..cut-1; the kept ones
 * after the cut go along while within the budget (the cached prefix). */
static int summary_request(struct context *c, size_t cut, const char *focus, size_t flen,
			   struct buf *body, int64_t *raw)
{
	const struct settings *st = &c->settings;
	size_t from = c->prune.floor, upto = c->prune.n;
	struct buf block, instr;
	buf_init(&block, REQUEST_MAX);
	buf_init(&instr, REQUEST_MAX);
	int r = summary_block(c, &block);
	if (r == 0)
		r = summary_instruction(c, from, cut, upto, focus, flen, &instr);
	int64_t fixed = (c->system_len ? prune_estimate(c->system_len) : 0) + summary_raw(c) +
			prune_estimate(instr.len);
	while (upto > cut && prune_tokens(&c->prune, fixed + c->prune.sum[upto] -
							 c->prune.sum[from]) > st->budget_tokens)
		upto--;
	if (r == 0 && upto > cut) { /* the instruction names how many stay */
		buf_reset(&instr);
		r = summary_instruction(c, from, cut, upto, focus, flen, &instr);
	}
	size_t kept = upto - from;
	struct wire_message *m = r == 0 ? calloc(kept * 2 + 1, sizeof(*m)) : NULL;
	if (r == 0 && !m)
		r = -ENOMEM;
	if (r < 0)
		goto out;
	*raw = fixed + c->prune.sum[upto] - c->prune.sum[from];
	for (size_t i = 0; i < kept; i++) {
		const struct exchange *h = &c->ex[c->hist[from + i]];
		m[2 * i] = (struct wire_message){false, h->user, h->user_len, false};
		m[2 * i + 1] =
		    (struct wire_message){true, h->reply->text.data ? h->reply->text.data : "",
					  h->reply->text.len, false};
	}
	m[2 * kept] = (struct wire_message){false, instr.data, instr.len, st->prompt_cache};
	m[2 * kept - 1].cache_mark = st->prompt_cache;
	/* An eighth of the budget (at least 1,024 tokens), and never more than the
	 * context's own max_tokens, so that the summary leaves room for turns. */
	int64_t max = st->budget_tokens / 8 > 1024 ? st->budget_tokens / 8 : 1024;
	struct wire_request w = {
	    .model = st->summary_model[0] ? st->summary_model : st->model,
	    .max_tokens = st->max_tokens < max ? st->max_tokens : max,
	    .temperature = NAN,
	    .system = c->system,
	    .system_len = c->system_len,
	    .system_cache_mark = st->prompt_cache && (c->system_len || block.len),
	    .system2 = block.len ? block.data : NULL,
	    .system2_len = block.len,
	    .messages = m,
	    .n_messages = kept * 2 + 1,
	    .stream = true,
	};
	r = wire_request_build(&w, body);
	free(m);
out:
	buf_done(&block);
	buf_done(&instr);
	return r;
}

static void summary_fail_note(struct context *c, const char *what, const char *why)
{
	char when[32];
	clock_format_utc(clock_wall_ms(), when);
	int w =
	    snprintf(c->summ_error, sizeof(c->summ_error), "at %s: %.300s; %s", when, why, what);
	(void)w;
	context_changed(c);
}

int summary_start(struct store *s, struct context *c, size_t cut, const char *focus, size_t flen,
		  bool compact, struct notes *n)
{
	if (!s->ops || c->summ_call || cut <= c->prune.floor || cut > c->prune.n)
		return -EINVAL;
	struct reply *t = reply_new(c, 0, 1);
	struct buf body;
	buf_init(&body, REQUEST_MAX);
	int r = t ? summary_request(c, cut, focus, flen, &body, &t->raw_sent) : -ENOMEM;
	struct call_spec spec = {
	    .call_id = ++s->next_call,
	    .max_retries = (int)c->settings.max_retries,
	    .connect_timeout_ms = (int)c->settings.connect_timeout * 1000,
	    .idle_timeout_ms = (int)c->settings.idle_timeout * 1000,
	};
	snprintf(spec.context, sizeof(spec.context), "%s", c->slot->name);
	snprintf(spec.model, sizeof(spec.model), "%s",
		 c->settings.summary_model[0] ? c->settings.summary_model : c->settings.model);
	if (t) /* its usage and cost count under the model it asked for */
		snprintf(t->model, sizeof(t->model), "%s", spec.model);
	spec.body = r == 0 ? buf_steal(&body, &spec.body_len) : NULL;
	buf_done(&body);
	if (r == 0 && (!spec.body || map_put_id(&s->calls, spec.call_id, t) < 0))
		r = -ENOMEM;
	if (r == 0) {
		t->summary_call = true;
		t->call_id = spec.call_id;
		t->refs++; /* the call's */
		t->state = REPLY_WAITING;
		t->started_ms = clock_wall_ms();
		c->summ_call = t; /* holds reply_new's reference */
		c->summ_cut = cut;
		c->summ_cut_turn = c->ex[c->hist[cut - 1]].turn;
		c->summ_compact = compact;
		r = s->ops->start(s->ops_impl, &spec);
		if (r < 0) {
			map_del_id(&s->calls, spec.call_id);
			t->refs--;
			c->summ_call = NULL;
		}
	}
	if (r < 0) {
		free(spec.body);
		reply_unref(NULL, t);
		summary_fail_note(c, compact ? "nothing changed" : "the cut dropped instead",
				  "the summary call could not be made");
		return r;
	}
	context_changed(c);
	notes_add(n, c->id, STORE_CHANGED_STATE);
	return 0;
}

int summary_before(struct store *s, struct context *c, size_t k, struct notes *n)
{
	bool drop = c->summ_drop;
	c->summ_drop = false;
	if (c->settings.prune != SETTINGS_PRUNE_SUMMARIZE || drop)
		return 0;
	int64_t fixed = prune_estimate(c->ex[k].user_len) +
			(c->system_len ? prune_estimate(c->system_len) : 0) + summary_raw(c);
	int64_t first = prune_peek(&c->prune, fixed, c->settings.budget_tokens);
	if (first < 0 || (size_t)first <= c->prune.floor)
		return 0;
	return summary_start(s, c, (size_t)first, NULL, 0, false, n) == 0;
}

/* The text of a successful summary call, trimmed; NULL when it has none. */
static const char *summary_text(const struct reply *t, size_t *len)
{
	const char *p = t->text.data ? t->text.data : "";
	size_t n = t->text.len;
	while (n && strchr(" \t\r\n", *p)) {
		p++;
		n--;
	}
	while (n && strchr(" \t\r\n", p[n - 1]))
		n--;
	*len = n;
	return n ? p : NULL;
}

void summary_call_end(struct store *s, struct reply *t, struct notes *n)
{
	struct context *c = t->ctx;
	if (!c || c->summ_call != t)
		return;
	c->summ_call = NULL;
	context_account(c, t);
	size_t cut = c->summ_cut, len = 0;
	const char *text = t->state == REPLY_DONE ? summary_text(t, &len) : NULL;
	char why[WHY_MAX + 64];
	bool same = cut > c->prune.floor && cut <= c->prune.n &&
		    c->ex[c->hist[cut - 1]].turn == c->summ_cut_turn;
	if (t->state != REPLY_DONE)
		snprintf(why, sizeof(why), "the summary call failed: %.60s: %.300s", t->error.type,
			 t->error.message);
	else if (!text || len > SUMMARY_MAX)
		snprintf(why, sizeof(why), "the summary call returned %s",
			 text ? "more than the summary's limit" : "no text");
	else if (!same)
		snprintf(why, sizeof(why), "the history changed during the summary call");
	if (t->state == REPLY_DONE && text && len <= SUMMARY_MAX && same) {
		uint64_t first = c->summ_last ? c->summ_first : c->ex[c->hist[c->prune.floor]].turn;
		struct buf z;
		buf_init(&z, SUMMARY_MAX + 1);
		if (buf_append(&z, text, len) == 0 && buf_puts(&z, "\n") == 0 &&
		    summary_put(c, z.data, z.len, first, c->summ_cut_turn) == 0) {
			c->prune.floor = cut;
			c->summ_error[0] = '\0';
			c->summ_unsaved = true;
			c->summ_usage = t->usage; /* for a deferred record (summary_flush) */
			snprintf(c->summ_model, sizeof(c->summ_model), "%s", t->model);
			if (c->open && !c->syncing) {
				c->summ_unsaved = false;
				if (summary_record(c, c->summ_compact ? "compact" : "call",
						   &t->usage, t->model) == 0)
					commit_sync_later(s, c, n);
			}
		}
		buf_done(&z);
	} else {
		summary_fail_note(
		    c, c->summ_compact ? "nothing changed" : "the cut dropped instead", why);
		c->summ_drop = !c->summ_compact;
	}
	context_changed(c);
	notes_add(n, c->id, STORE_CHANGED_STATE | STORE_CHANGED_HISTORY);
	reply_unref(NULL, t); /* the context's reference */
}

struct reply *summary_cancel(struct context *c)
{
	return c->summ_call;
}

/* --- a summary written ---------------------------------------------------------- */

int summary_check(const char *text, size_t len, char *why, size_t whylen)
{
	if (len > SUMMARY_MAX) {
		snprintf(why, whylen, "summary is %zu bytes, over the limit of %u", len,
			 SUMMARY_MAX);
		return -EFBIG;
	}
	if (!utf8_valid(text, len) || memchr(text, '\0', len)) {
		snprintf(why, whylen, "summary is not valid UTF-8 text");
		return -EILSEQ;
	}
	return 0;
}

int summary_write(struct store *s, struct context **cp, const char *text, size_t len, char *why,
		  size_t whylen, struct notes *n)
{
	struct context *c = *cp;
	/* The range it keeps: the summary's, else the exchanges already left out. */
	uint64_t first = 0, last = 0;
	if (c->summ_last) {
		first = c->summ_first;
		last = c->summ_last;
	} else if (c->prune.floor > 0) {
		first = c->ex[c->hist[0]].turn;
		last = c->ex[c->hist[c->prune.floor - 1]].turn;
	}
	char *old = c->summary;
	size_t old_len = c->summary_len;
	uint64_t of = c->summ_first, ol = c->summ_last;
	c->summary = NULL;
	c->summary_len = 0;
	int r = summary_put(c, text, len, first, last);
	if (r < 0) {
		c->summary = old;
		c->summary_len = old_len;
		return r;
	}
	c->summ_unsaved = false;
	r = summary_record(c, "write", NULL, NULL);
	if (r == 0)
		r = commit_sync(s, &c, n);
	if (r < 0 && c) { /* put back what was there */
		free(c->summary);
		c->summary = old;
		c->summary_len = old_len;
		c->summ_first = of;
		c->summ_last = ol;
		old = NULL;
		context_changed(c);
	}
	if (r < 0 && r != -ENOENT)
		snprintf(why, whylen, "cannot save the summary: %s", strerror(-r));
	free(old);
	*cp = c;
	return r;
}

/* --- renderings ------------------------------------------------------------------ */

int summary_render_history(const struct context *c, struct buf *out)
{
	if (!c->summary_len)
		return 0;
	int r = c->summ_last ? buf_printf(out, "--- summary of turns %" PRIu64 "-%" PRIu64 " ---\n",
					  c->summ_first, c->summ_last)
			     : buf_puts(out, "--- summary ---\n");
	if (r == 0)
		r = buf_append(out, c->summary, c->summary_len);
	if (r == 0)
		r = buf_puts(out, c->summary[c->summary_len - 1] == '\n' ? "\n" : "\n\n");
	return r;
}

int summary_json(const struct context *c, cJSON *o)
{
	if (!c->summary_len)
		return 0;
	cJSON *so = cJSON_AddObjectToObject(o, "summary");
	if (!so || !cJSON_AddStringToObject(so, "text", c->summary))
		return -ENOMEM;
	if (!c->summ_last)
		return cJSON_AddNullToObject(so, "turns") ? 0 : -ENOMEM;
	cJSON *tr = cJSON_AddArrayToObject(so, "turns");
	if (!tr)
		return -ENOMEM;
	cJSON_AddItemToArray(tr, cJSON_CreateNumber((double)c->summ_first));
	cJSON_AddItemToArray(tr, cJSON_CreateNumber((double)c->summ_last));
	return 0;
}

int summary_status(const struct context *c, struct buf *out)
{
	int r = 0;
	if (c->summary_len && c->summ_last)
		r = buf_printf(out, "summary: turns %" PRIu64 "-%" PRIu64 ", %zu bytes\n",
			       c->summ_first, c->summ_last, c->summary_len);
	else if (c->summary_len)
		r = buf_printf(out, "summary: written, %zu bytes\n", c->summary_len);
	/* The floor may have moved under a call in flight (a reply lost by a
	 * failed sync leaves the index): then name the last turn only. */
	uint64_t from =
	    c->prune.floor < c->prune.n ? c->ex[c->hist[c->prune.floor]].turn : c->summ_cut_turn;
	if (r == 0 && c->summ_call)
		r = buf_printf(out, "summary_call: folding turns %" PRIu64 "-%" PRIu64 "%s\n", from,
			       c->summ_cut_turn, c->summ_compact ? " (compact)" : "");
	if (r == 0 && c->summ_error[0])
		r = buf_printf(out, "summary_error: %s\n", c->summ_error);
	return r;
}
