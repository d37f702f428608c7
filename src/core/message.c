/* message.c — user messages in: staging a message being written, submitting
 * it (a USER record synced, a turn queued), the ctl verbs that act on a
 * context's messages (cancel, retry, clear, summary, compact) (see store.h).
 *
 * Under the store lock (each entry point takes it).  What a message starts is
 * reply_call.c's (reply_call_pump); reading a reply is reply.c's (reply_read). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "mcpfs/utf8.h"
#include "store_impl.h"

/* Appends the USER record; the caller syncs it (commit_sync) unless it was
 * numbered (at: context_journal_write_at, which commits it on a shared
 * engine). */
static int user_record(struct context *c, uint64_t turn, const char *text, size_t len, int64_t ms,
		       const struct attachment *att, size_t n_att, bool at)
{
	cJSON *o = user_payload(turn, text, len, ms, att, n_att);
	if (!o)
		return -ENOMEM;
	return at ? context_journal_write_at(c, JOURNAL_USER, o)
		  : context_journal_write(c, JOURNAL_USER, o, false);
}

/* A numbered record's sync: none on a shared engine (committed already). */
static int numbered_sync(struct store *s, struct context **cp, struct notes *n)
{
	return context_journal_shared(*cp) ? 0 : commit_sync(s, cp, n);
}

static size_t exchange_index(const struct context *c, const struct reply *t)
{
	for (size_t i = c->n_ex; i-- > 0;)
		if (c->ex[i].reply == t)
			return i;
	return c->n_ex;
}

/* The limits a message's length alone decides: max_input_bytes, and the token
 * estimate of the message alone against budget_tokens (with the system prompt
 * it is checked again when the turn starts).  0, -EFBIG with why. */
static int message_size_check(const struct context *c, size_t len, char *why, size_t whylen)
{
	if ((int64_t)len > c->settings.max_input_bytes) {
		snprintf(why, whylen,
			 "message is %zu bytes, over max_input_bytes (%lld); nothing "
			 "was sent",
			 len, (long long)c->settings.max_input_bytes);
		return -EFBIG;
	}
	int64_t tokens = prune_tokens(&c->prune, prune_estimate(len));
	if (tokens > c->settings.budget_tokens) {
		snprintf(why, whylen,
			 "message alone needs about %lld tokens, over budget_tokens "
			 "(%lld); nothing was sent",
			 (long long)tokens, (long long)c->settings.budget_tokens);
		return -EFBIG;
	}
	return 0;
}

int context_input_check(struct store *s, uint64_t id, size_t len, char *why, size_t whylen)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? message_size_check(c, len, why, whylen) : -ENOENT;
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Checks a message; on failure fills why and returns -errno. */
static int message_check(const struct context *c, const char *text, size_t len, char *why,
			 size_t whylen)
{
	int r = message_size_check(c, len, why, whylen);
	if (r < 0)
		return r;
	if (!utf8_valid(text, len)) {
		snprintf(why, whylen, "message is not valid UTF-8; nothing was sent");
		return -EILSEQ;
	}
	/* The journal and the request hold text as C strings: a NUL would cut the
	 * message there, so it is refused like the system prompt's. */
	if (memchr(text, '\0', len)) {
		snprintf(why, whylen,
			 "message is not valid UTF-8 text (a NUL byte); nothing was sent");
		return -EILSEQ;
	}
	return 0;
}

/* Replaces the text of a staged message (a second flush of the same writer),
 * once the new text is durable.  *cp is looked up again (the lock is released
 * during the fsync). */
static int restage(struct store *s, struct context **cp, struct reply *t, const char *text,
		   size_t len, struct notes *n)
{
	struct context *c = *cp;
	size_t i = exchange_index(c, t);
	if (i == c->n_ex)
		return -ENOENT;
	struct exchange *e = &c->ex[i];
	if (e->user_len == len && !memcmp(e->user, text, len))
		return 0;
	char *copy = strndup(text, len);
	if (!copy)
		return -ENOMEM;
	int r = user_record(c, t->number, text, len, clock_wall_ms(), e->att, e->n_att, false);
	if (r == 0)
		r = commit_sync(s, cp, n);
	if (r == 0 && t->state != REPLY_PENDING)
		r = -ECANCELED; /* cleared or cancelled meanwhile */
	if (r == 0 && (i = exchange_index(*cp, t)) == (*cp)->n_ex)
		r = -ENOENT;
	if (r < 0) {
		free(copy);
		return r;
	}
	e = &(*cp)->ex[i];
	free(e->user);
	e->user = copy;
	e->user_len = len;
	return 0;
}

/* The message becomes a turn once its record is durable. */
static int stage_new(struct store *s, struct context **cp, const char *text, size_t len,
		     struct reply **draft, struct notes *n)
{
	/* One timestamp for the record and the exchange: the fsync between them
	 * would otherwise make the transcript's time change across a restart. */
	int64_t ms = clock_wall_ms();
	uint64_t turn = 0;
	/* The files of attach/ go with the message (CONTRACT §9). */
	struct attachment *att;
	size_t n_att;
	unsigned tries = 0;
	int r = attach_take(*cp, &att, &n_att);
	/* Its turn number is the next after what is applied; another daemon's
	 * message that came first is caught up with and the number taken again. */
	while (r == 0) {
		turn = (*cp)->next_turn;
		r = user_record(*cp, turn, text, len, ms, att, n_att, true);
		if (r != -EAGAIN)
			break;
		r = context_renumber(s, cp, &tries, n);
	}
	if (r == 0)
		r = numbered_sync(s, cp, n);
	struct context *c = *cp;
	struct reply *t;
	if (r == 0)
		r = context_exchange_push(c, turn, text, len, &t);
	if (r < 0) {
		if (c)
			attach_untake(c, att, n_att);
		else {
			for (size_t i = 0; i < n_att; i++)
				attachment_free(&att[i]);
			free(att);
		}
		return r;
	}
	c->ex[c->n_ex - 1].att = att;
	c->ex[c->n_ex - 1].n_att = n_att;
	c->ex[c->n_ex - 1].user_ms = ms;
	reply_unref(NULL, c->newest);
	c->newest = reply_ref(NULL, t);
	*draft = reply_ref(NULL, t);
	c->refused[0] = '\0';
	c->note[0] = '\0'; /* the journal takes records again */
	notes_add(n, c->id, STORE_CHANGED_STATE | STORE_CHANGED_OUTPUT);
	if (context_journal_shared(c))
		reply_call_pump(s, c, n); /* its lease, while it is written (store_lease.c) */
	return 0;
}

static void abandon_locked(struct store *s, struct reply *t, const char *why, struct notes *n)
{
	if (t->state != REPLY_PENDING)
		return;
	struct api_error e;
	api_error_clear(&e);
	api_error_set(&e, "rejected", "%s", why);
	reply_end(s, t, REPLY_FAILED, &e, n);
	if (t->ctx)
		reply_call_pump(s, t->ctx, n);
}

static void refused_locked(struct context *c, const char *why)
{
	snprintf(c->refused, sizeof(c->refused), "%s", why);
	c->refused_ms = clock_wall_ms();
}

int context_stage_held(struct store *s, uint64_t id, struct reply **draft, uint64_t *held,
		       const char *text, size_t len, char *why, size_t whylen)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? commit_sync_idle(s, &c) : -ENOENT;
	/* The space held for this message goes to its record now, once no sync
	 * runs on the journal (the wait releases the lock), under the lock that
	 * every journal write takes: nothing of mcpfs can take it between. */
	if (held)
		store_reserve_give_back(s, held);
	if (r == 0)
		r = message_check(c, text, len, why, whylen);
	bool blank = utf8_blank(text, len);
	if (r == 0 && *draft && (*draft)->state != REPLY_PENDING)
		r = -ECANCELED; /* cleared or cancelled meanwhile */
	else if (r == 0 && *draft && !blank)
		r = restage(s, &c, *draft, text, len, &n);
	else if (r == 0 && *draft) {
		abandon_locked(s, *draft, "the message became empty; nothing was sent", &n);
		reply_unref(NULL, *draft);
		*draft = NULL;
	} else if (r == 0 && !blank)
		r = stage_new(s, &c, text, len, draft, &n);
	if (r < 0 && c && r != -ENOENT && r != -ECANCELED) {
		if (r != -EFBIG && r != -EILSEQ)
			snprintf(why, whylen, "cannot save the message: %s", strerror(-r));
		refused_locked(c, why);
		notes_add(&n, id, STORE_CHANGED_STATE);
	}
	store_unlock_notify(s, &n);
	return r;
}

int context_stage(struct store *s, uint64_t id, struct reply **draft, const char *text, size_t len,
		  char *why, size_t whylen)
{
	return context_stage_held(s, id, draft, NULL, text, len, why, whylen);
}

void context_submit(struct store *s, struct reply *draft)
{
	if (!draft)
		return;
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	if (draft->state == REPLY_PENDING && draft->ctx) {
		draft->state = REPLY_QUEUED;
		context_changed(draft->ctx); /* the transcript shows it now */
		notes_add(&n, draft->ctx_id, STORE_CHANGED_STATE);
		reply_call_pump(s, draft->ctx, &n);
	}
	reply_unref(NULL, draft);
	store_unlock_notify(s, &n);
}

void context_abandon(struct store *s, struct reply *draft, const char *why)
{
	if (!draft)
		return;
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	abandon_locked(s, draft, why, &n);
	if (draft->ctx)
		refused_locked(draft->ctx, why);
	reply_unref(NULL, draft);
	store_unlock_notify(s, &n);
}

int context_refuse(struct store *s, uint64_t id, const char *why)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	if (c) {
		refused_locked(c, why);
		notes_add(&n, id, STORE_CHANGED_STATE);
	}
	store_unlock_notify(s, &n);
	return c ? 0 : -ENOENT;
}

int context_send(struct store *s, uint64_t id, const char *text, size_t len, uint64_t *turn_no,
		 char *why, size_t whylen)
{
	struct reply *draft = NULL;
	int r = context_spend_check(s, id, why, whylen);
	if (r == -EDQUOT) {
		context_refuse(s, id, why);
		return r;
	}
	if (r == 0)
		r = context_stage(s, id, &draft, text, len, why, whylen);
	if (r == 0 && !draft) {
		snprintf(why, whylen, "the message is empty; nothing was sent");
		return -EINVAL;
	}
	if (r < 0)
		return r;
	if (turn_no)
		*turn_no = draft->number;
	context_submit(s, draft);
	return 0;
}

/* Ends the context's summary call, if any, as cancelled (why); the cut it was
 * to fold then drops, as on a failure (summary_call_end). */
static void summary_call_cancel(struct store *s, struct context *c, const char *why,
				struct notes *n)
{
	struct reply *t = summary_cancel(c);
	if (!t)
		return;
	struct api_error e;
	api_error_clear(&e);
	api_error_set(&e, "cancelled", "%s", why);
	reply_end(s, t, REPLY_FAILED, &e, n);
}

int context_cancel(struct store *s, uint64_t id)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? 0 : -ENOENT;
	if (c && c->active) {
		/* Only the call in flight: messages queued behind it are sent next,
		 * in order (CONTRACT §3.4: nothing queued is dropped). */
		struct api_error e;
		api_error_clear(&e);
		api_error_set(&e, "cancelled", "cancelled by the user");
		reply_end(s, c->active, REPLY_FAILED, &e, &n);
		reply_call_pump(s, c, &n);
		r = 1;
	} else if (c && c->summ_call) { /* the cut then drops, as on a failure */
		summary_call_cancel(s, c, "cancelled by the user", &n);
		reply_call_pump(s, c, &n);
		r = 1;
	}
	store_unlock_notify(s, &n);
	return r;
}

/* The RETRY record makes the new attempt durable before the write to ctl
 * returns: a restart then shows it (interrupted), not the attempt it replaced.
 * Appended here; the caller syncs it (commit_sync, the lock released). */
static int retry_record(struct context *c, uint64_t turn, unsigned attempt)
{
	cJSON *o = record_retry_json(turn, attempt, clock_wall_ms());
	return o ? context_journal_write_at(c, JOURNAL_RETRY, o) : -ENOMEM;
}

/* Checks that exchange e (the newest, or NULL) can be sent again. */
static int retry_check(const struct exchange *e, char *why, size_t whylen)
{
	if (!e) {
		snprintf(why, whylen, "nothing to retry: no message was sent yet");
		return -EINVAL;
	}
	if (e->reply->state != REPLY_DONE && e->reply->state != REPLY_FAILED) {
		snprintf(why, whylen, "nothing to retry: the newest turn is %s",
			 e->reply->state == REPLY_PENDING ? "still being written" : "in flight");
		return -EINVAL;
	}
	if (e->undone) {
		snprintf(why, whylen, "nothing to retry: turn %llu was undone",
			 (unsigned long long)e->turn);
		return -EINVAL;
	}
	return 0;
}

int context_retry(struct store *s, uint64_t id, char *why, size_t whylen)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? commit_sync_idle(s, &c) : -ENOENT;
	struct exchange *e = NULL;
	uint64_t number = 0;
	unsigned attempt = 0, tries = 0;
	while (r == 0) {
		e = c->n_ex > c->hist_start ? &c->ex[c->n_ex - 1] : NULL;
		r = retry_check(e, why, whylen);
		number = e ? e->turn : 0;
		attempt = e ? e->reply->attempt + 1 : 0;
		if (r == 0)
			r = retry_record(c, number, attempt);
		if (r != -EAGAIN)
			break;
		r = context_renumber(s, &c, &tries, &n);
	}
	/* Applied once durable.  Every other commit of the context waits for the
	 * sync, so the newest exchange is still the one checked. */
	if (r == 0)
		r = numbered_sync(s, &c, &n);
	if (r < 0 && r != -ENOENT && r != -EINVAL)
		snprintf(why, whylen, "cannot save the retry: %s", strerror(-r));
	e = r == 0 ? &c->ex[c->n_ex - 1] : NULL;
	struct reply *t = r == 0 ? reply_new(c, number, attempt) : NULL;
	if (r == 0 && !t)
		r = -ENOMEM;
	if (t)
		r = exchange_replace(c, e, t);
	if (t && r < 0) {
		reply_unref(NULL, t);
		t = NULL;
	}
	if (t) {
		/* Regenerating: the reply being replaced leaves the history now, so
		 * the new call and `history` go without it. */
		if (e->in_history && c->prune.n && c->hist[c->prune.n - 1] == c->n_ex - 1) {
			prune_index_pop(&c->prune);
			e->in_history = false;
		}
		t->state = REPLY_QUEUED;
		reply_unref(NULL, c->newest);
		c->newest = reply_ref(NULL, t);
		if (c->next_send > c->n_ex - 1)
			c->next_send = c->n_ex - 1;
		notes_add(&n, id,
			  STORE_CHANGED_STATE | STORE_CHANGED_OUTPUT | STORE_CHANGED_HISTORY);
		reply_call_pump(s, c, &n);
	}
	store_unlock_notify(s, &n);
	return r;
}

int context_clear(struct store *s, uint64_t id)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? commit_sync_idle(s, &c) : -ENOENT;
	unsigned tries = 0;
	while (r == 0) {
		reply_call_stop_all(s, c, "cancelled by clear", &n);
		cJSON *o = record_clear_json(c->next_turn);
		r = o ? context_journal_write_at(c, JOURNAL_CLEAR, o) : -ENOMEM;
		if (r != -EAGAIN)
			break;
		r = context_renumber(s, &c, &tries, &n);
	}
	/* Applied once durable, with the ends of the turns it stopped (on a
	 * shared engine its commit made them durable). */
	if (r == 0)
		r = numbered_sync(s, &c, &n);
	if (r == 0) {
		context_mark(c, MARK_CLEAR, NULL, 0);
		c->hist_start = c->n_ex;
		c->next_send = c->n_ex > c->next_send ? c->next_send : c->n_ex;
		prune_index_reset(&c->prune);
		summary_forget(c);
		context_changed(c);
		for (size_t i = 0; i < c->n_ex; i++)
			c->ex[i].in_history = false;
		c->pending_clear = true;
		/* A message being written stays what `output` waits for. */
		if (c->newest && c->newest->state != REPLY_PENDING) {
			reply_unref(NULL, c->newest);
			c->newest = NULL;
		}
		c->refused[0] = '\0';
		c->note[0] = '\0';
		attach_gc(s, c); /* no turn sends the attachments before the clear again */
		notes_add(&n, id,
			  STORE_CHANGED_STATE | STORE_CHANGED_OUTPUT | STORE_CHANGED_HISTORY);
	}
	store_unlock_notify(s, &n);
	return r;
}

/* --- the summary verbs (summary.c keeps the summary) --------------------------- */

int context_set_summary(struct store *s, uint64_t id, const char *text, size_t len, char *why,
			size_t whylen)
{
	int r = summary_check(text, len, why, whylen);
	if (r < 0)
		return r;
	if (utf8_blank(text, len))
		len = 0;
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	r = c ? commit_sync_idle(s, &c) : -ENOENT;
	if (r == 0)
		summary_call_cancel(s, c, "cancelled: `summary` was written", &n);
	if (r == 0)
		r = summary_write(s, &c, text, len, why, whylen, &n);
	if (r == 0) {
		notes_add(&n, id, STORE_CHANGED_HISTORY | STORE_CHANGED_STATE);
		reply_call_pump(s, c, &n);
	}
	store_unlock_notify(s, &n);
	return r;
}

int context_compact(struct store *s, uint64_t id, const char *focus, size_t flen, char *why,
		    size_t whylen)
{
	if (flen > SETTINGS_PROMPT_MAX) {
		snprintf(why, whylen, "compact: the focus text is %zu bytes, over the limit of %u",
			 flen, SETTINGS_PROMPT_MAX);
		return -EINVAL;
	}
	if (!utf8_valid(focus, flen) || memchr(focus, '\0', flen)) {
		snprintf(why, whylen, "compact: the focus text is not UTF-8 text");
		return -EINVAL;
	}
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? 0 : -ENOENT;
	bool busy = c && (c->active || c->summ_call);
	for (size_t i = c ? c->next_send : 0; c && i < c->n_ex; i++)
		busy |= c->ex[i].reply->state == REPLY_QUEUED;
	if (r == 0 && busy) {
		snprintf(why, whylen,
			 "compact: a call is in flight or queued; try when it is done");
		r = -EINVAL;
	} else if (r == 0 && (c->prune.n < 3 || c->prune.floor >= c->prune.n - 2)) {
		snprintf(why, whylen,
			 "compact: nothing to fold: %zu exchange(s) in the history, and the newest "
			 "2 stay",
			 c->prune.n - c->prune.floor);
		r = -EINVAL;
	} else if (r == 0) {
		r = summary_start(s, c, c->prune.n - 2, focus, flen, true, &n);
		if (r < 0)
			snprintf(why, whylen, "compact: the summary call could not be made: %s",
				 strerror(-r));
		if (r < 0 && r != -ENOMEM)
			r = -EIO;
	}
	store_unlock_notify(s, &n);
	return r;
}

/* --- the cost of a settings record ------------------------------------------- */

#define SETTINGS_RECORD_KEYS 1024u /* a settings record's keys and values, at most */

int context_settings_cost(struct store *s, uint64_t id, uint64_t *bytes)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	/* A settings record repeats the system prompt and the schema beside
	 * every key. */
	if (c)
		*bytes = store_text_cost(c->system, c->system_len) +
			 (c->schema ? store_text_cost(c->schema, c->schema_len) : 0) +
			 SETTINGS_RECORD_KEYS;
	pthread_mutex_unlock(&s->lock);
	return c ? 0 : -ENOENT;
}
