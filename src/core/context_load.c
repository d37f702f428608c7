/* context_load.c — a context's life: made from its records (context_load:
 * the engine delivers them in order, each decoded by record.c and applied here
 * or by its owner: blocks, fork/undo, meta, summary, attach), adopted just
 * after store_create() committed its CREATE, and freed (see store_impl.h; the
 * journal format is doc/design/journal.md).
 *
 * Above context.c and every record owner; store.c reaches context_load()
 * only through s->hooks.load (store_impl.h, struct store_hooks), set by
 * store_open.c.  Everything here runs under the store lock.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "mcpfs/schema.h"
#include "mcpfs/log.h"
#include "mcpfs/utf8.h"
#include "store_impl.h"

struct loader {
	struct store *s;
	struct context *c;
	uint64_t bad_payloads; /* framed soundly, but not a payload we can read, or a
				  record where the format allows none (§5) */
	bool settings_seen;    /* a CREATE or SETTINGS record was read */
	bool undo_last;	       /* an UNDO came after the newest exchange began */
	struct buf hidden;     /* the payload with its \u0000 as marks */
};

static struct exchange *find_exchange(struct context *c, uint64_t turn)
{
	for (size_t i = c->n_ex; i-- > 0;)
		if (c->ex[i].turn == turn)
			return &c->ex[i];
	return NULL;
}

static char *memdup_z(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static void load_settings(struct loader *L, const struct record_settings *r)
{
	struct settings st = store_context_defaults(L->s);
	char why[256];
	L->settings_seen = true;
	if (r->settings && settings_from_json(&st, r->settings, why, sizeof(why)) == 0)
		L->c->settings = st;
	size_t len = r->system_len;
	char *copy = r->system ? memdup_z(r->system, len) : NULL;
	if (copy && (len != L->c->system_len || memcmp(copy, L->c->system, len)))
		context_mark(L->c, MARK_SYSTEM, copy, len);
	if (copy) {
		free(L->c->system);
		L->c->system = copy;
		L->c->system_len = len;
	}
	/* Every record carries the schema of its time: none when absent. */
	char *scopy = r->schema && r->schema_len ? memdup_z(r->schema, r->schema_len) : NULL;
	if (scopy || !r->schema) {
		free(L->c->schema);
		L->c->schema = scopy;
		L->c->schema_len = scopy ? r->schema_len : 0;
	}
	if (r->created_ms > 0)
		L->c->created_ms = r->created_ms;
}

/* §5 rule 2: USER N creates turn N, or replaces its text if turn N exists.
 * Turns increase: a USER for a missing turn below the newest is misplaced. */
static void load_user(struct loader *L, const struct record_user *r)
{
	struct context *c = L->c;
	struct exchange *e = find_exchange(c, r->turn);
	if (e) {
		/* Re-staged: the writer's descriptor was flushed again. */
		char *copy = memdup_z(r->text, r->text_len);
		if (copy) {
			free(e->user);
			e->user = copy;
			e->user_len = r->text_len;
		}
		attach_load_user(c, e, r->attach);
		return;
	}
	if (c->n_ex && c->ex[c->n_ex - 1].turn > r->turn) {
		L->bad_payloads++;
		return;
	}
	if (context_exchange_push(c, r->turn, r->text, r->text_len, NULL) < 0)
		return;
	L->undo_last = false;
	e = &c->ex[c->n_ex - 1];
	attach_load_user(c, e, r->attach);
	e->reply->state = REPLY_QUEUED; /* no end seen yet */
	if (r->ms > 0)
		e->user_ms = r->ms;
}

/* The attempt a record talks about: a new turn object when it is a higher one
 * (§5 rule 3); NULL for a record of a lower attempt (ignored), of a turn
 * without a USER record (dropped), or of an attempt that has ended (misplaced:
 * its REPLY_END came after every byte of it, so nothing may follow). */
static struct reply *load_attempt(struct loader *L, int64_t turn, int64_t attempt)
{
	struct context *c = L->c;
	struct exchange *e = turn > 0 ? find_exchange(c, (uint64_t)turn) : NULL;
	if (!e)
		return NULL;
	if (attempt > 0 && (uint64_t)attempt < e->reply->attempt)
		return NULL;
	/* Live (store_feed.c): another daemon's record of an attempt whose call
	 * runs here is not applied over it (a takeover is the lease's to say). */
	if (e->reply->call_id || e->reply->models_wait || e->reply == c->active)
		return NULL;
	if (attempt > UINT32_MAX) {
		L->bad_payloads++;
		return NULL;
	}
	if (attempt > 0 && (unsigned)attempt != e->reply->attempt) {
		struct reply *t = reply_new(c, e->turn, (unsigned)attempt);
		if (t && e->reply->state != REPLY_DONE && e->reply->state != REPLY_FAILED) {
			e->reply->state = REPLY_FAILED; /* its end was lost */
			api_error_set(&e->reply->error, "interrupted",
				      "the reply was not complete");
		}
		if (!t || exchange_replace(c, e, t) < 0) {
			reply_unref(NULL, t);
			return NULL;
		}
		t->state = REPLY_QUEUED;
	}
	if (e->reply->state == REPLY_DONE || e->reply->state == REPLY_FAILED) {
		L->bad_payloads++;
		return NULL;
	}
	return e->reply;
}

static void load_part(struct loader *L, const struct record_part *r)
{
	struct reply *t = load_attempt(L, r->turn, r->attempt);
	if (!t)
		return;
	/* The writer puts the thinking that came before the first text in parts
	 * of its own (reply_checkpoint), so where it ends is known again here. */
	if (r->text && r->text_len && !t->text.len)
		t->thinking_lead = t->thinking.len;
	if (r->text)
		buf_append(&t->text, r->text, r->text_len);
	if (r->thinking)
		buf_append(&t->thinking, r->thinking, r->thinking_len);
	t->text_saved = t->text.len;
	t->thinking_saved = t->thinking.len;
}

/* A BLOCK record: one complete block of the attempt, after the parts that
 * hold the text and thinking before it (misplaced otherwise). */
static void load_block(struct loader *L, const struct record_block *r, size_t len)
{
	struct reply *t = load_attempt(L, r->turn, r->attempt);
	if (t && blocks_load_record(t, r, len) == -EINVAL)
		L->bad_payloads++;
}

static void load_end(struct loader *L, const struct record_end *r)
{
	struct reply *t = load_attempt(L, r->turn, r->attempt);
	if (!t)
		return;
	t->state = r->done ? REPLY_DONE : REPLY_FAILED;
	snprintf(t->stop_reason, sizeof(t->stop_reason), "%s",
		 r->stop_reason ? r->stop_reason : "");
	t->usage = r->usage;
	if (r->has_error) {
		const char *s = r->error_type;
		snprintf(t->error.type, sizeof(t->error.type), "%s", s ? s : "error");
		s = r->error_message;
		snprintf(t->error.message, sizeof(t->error.message), "%s", s ? s : "");
		s = r->error_request_id;
		snprintf(t->error.request_id, sizeof(t->error.request_id), "%s", s ? s : "");
		t->error.http_status = (int)r->error_http_status;
	}
	snprintf(t->request_id, sizeof(t->request_id), "%s", r->request_id ? r->request_id : "");
	/* Journals from before the key: the model in force when it was loaded. */
	const char *m = r->model;
	snprintf(t->model, sizeof(t->model), "%s",
		 m && settings_model_valid(m, strlen(m)) ? m : L->c->settings.model);
	t->raw_sent = r->raw_sent;
	t->http_status = r->http_status == 200 ? 200 : 0;
	t->cache_hit = r->cache_hit;
	t->retries = r->retries > 0 && r->retries <= UINT32_MAX ? (unsigned)r->retries : 0;
	t->req_bytes = r->request_bytes > 0 ? (uint64_t)r->request_bytes : 0;
	t->req_us = r->request_us > 0 ? r->request_us : 0;
	if (r->first_turn > 0)
		L->c->floor_turn = (uint64_t)r->first_turn;
	if (r->text_bytes >= 0 && (uint64_t)r->text_bytes != t->text.len) {
		t->state = REPLY_FAILED;
		api_error_clear(&t->error);
		api_error_set(&t->error, "damaged",
			      "a corrupt journal record lost part of this reply "
			      "(%zu of %lld bytes kept)",
			      t->text.len, (long long)r->text_bytes);
	}
	context_account(L->c, t);
}

/* SUMMARY: the last one wins ("" removes it); a summary call's usage counts. */
static void load_summary(struct loader *L, const struct record_summary *r)
{
	summary_adopt(L->c, r->text, r->text_len, r->first_turn, r->last_turn);
	struct reply *t = r->has_usage ? reply_new(L->c, 0, 1) : NULL;
	if (t) {
		t->usage = r->usage;
		/* the summary call's model (summary_model): its cost is that model's */
		const char *m = r->model;
		if (m && settings_model_valid(m, strlen(m)))
			snprintf(t->model, sizeof(t->model), "%s", m);
		context_account(L->c, t);
		reply_unref(NULL, t);
	}
}

/* Applies one decoded record (§5). */
static void load_apply(struct loader *L, const struct record *r, size_t len)
{
	switch (r->type) {
	case JOURNAL_CREATE:
	case JOURNAL_SETTINGS:
		load_settings(L, &r->u.settings);
		break;
	case JOURNAL_USER:
		load_user(L, &r->u.user);
		break;
	case JOURNAL_REPLY_PART:
		load_part(L, &r->u.part);
		break;
	case JOURNAL_REPLY_END:
		load_end(L, &r->u.end);
		break;
	case JOURNAL_CLEAR:
		L->c->hist_start = L->c->n_ex;
		L->c->pending_clear = true;
		context_mark(L->c, MARK_CLEAR, NULL, 0);
		summary_forget(L->c);
		break;
	case JOURNAL_RETRY:
		load_attempt(L, r->u.retry.turn, r->u.retry.attempt);
		L->undo_last = false;
		break;
	case JOURNAL_UNDO: /* fork.c */
		if (context_load_undo(L->c, r->u.undo.turn, &L->undo_last) < 0)
			L->bad_payloads++;
		break;
	case JOURNAL_FORKED_FROM:
		context_load_origin(L->c, r->u.forked_from.context, r->u.forked_from.turn);
		break;
	case JOURNAL_BLOCK:
		load_block(L, &r->u.block, len);
		break;
	case JOURNAL_META:
		meta_load_record(L->c->slot, r->u.meta.meta);
		break;
	case JOURNAL_SUMMARY:
		load_summary(L, &r->u.summary);
		break;
	case JOURNAL_ATTACH:
	case JOURNAL_DETACH:
		attach_load_record(L->c, r->type, r->u.attach.name, r->u.attach.payload);
		break;
	}
}

static int on_record(void *data, uint16_t type, const void *payload, size_t len, uint64_t off)
{
	struct loader *L = data;
	struct record rec = {0};
	int r = record_decode(&rec, type, payload, len, NULL);
	if (r == RECORD_OK)
		load_apply(L, &rec, len);
	else if (r == -EINVAL)
		L->bad_payloads++;
	record_release(&rec);
	return r == -ENOMEM ? r : 0;
}

/* A reply that was in flight (or queued) when the daemon stopped comes back
 * failed as "interrupted", keeping the text its checkpoints saved.  On a shared
 * engine (one with a feed) it is another daemon's turn, in flight there: a
 * remote turn that the feed's records make grow and end (pg-plan §3). */
static void mark_interrupted(struct context *c)
{
	bool shared = storage_feed_fd(c->store->st) >= 0;
	for (size_t i = 0; i < c->n_ex; i++) {
		struct reply *t = c->ex[i].reply;
		if (t->state == REPLY_DONE || t->state == REPLY_FAILED)
			continue;
		if (shared) {
			t->remote = true;
			if (t->text.len || t->thinking.len || t->blocks.n)
				t->state = REPLY_STREAMING;
			continue;
		}
		t->state = REPLY_FAILED;
		api_error_clear(&t->error);
		api_error_set(&t->error, "interrupted",
			      "the daemon stopped before the reply was complete (%zu bytes kept); "
			      "write 'retry' to ctl to send it again",
			      t->text.len);
		reply_end_record(c, t, false);
	}
	if (c->open && !shared)
		storage_sync(c->store->st, c->slot->sid);
}

/* --- records from another daemon (store_feed.c) ------------------------------ */

/* `output` opens the newest exchange's current attempt. */
static void live_newest(struct context *c)
{
	if (!c->n_ex)
		return;
	struct reply *t = c->ex[c->n_ex - 1].reply;
	if (c->newest == t)
		return;
	reply_unref(NULL, c->newest);
	c->newest = reply_ref(NULL, t);
}

/* The history from hist_start again (after a clear, an undo, a summary). */
static void live_history(struct context *c)
{
	prune_index_reset(&c->prune);
	for (size_t i = 0; i < c->n_ex; i++)
		c->ex[i].in_history = false;
	for (size_t i = c->hist_start; i < c->n_ex; i++)
		context_history_push(c, i);
	while (c->floor_turn && c->prune.floor < c->prune.n &&
	       c->ex[c->hist[c->prune.floor]].turn < c->floor_turn)
		c->prune.floor++;
	summary_after_load(c);
}

static unsigned live_after(struct store *s, struct context *c, const struct record *r,
			   struct loader *L, struct notes *n)
{
	unsigned what = STORE_CHANGED_STATE;
	switch (r->type) {
	case JOURNAL_CREATE:
	case JOURNAL_SETTINGS:
		return what | STORE_CHANGED_SETTINGS;
	case JOURNAL_USER:
	case JOURNAL_RETRY:
		live_newest(c);
		return what | STORE_CHANGED_OUTPUT | STORE_CHANGED_HISTORY;
	case JOURNAL_REPLY_PART:
	case JOURNAL_BLOCK:
		for (size_t i = c->n_ex; i-- > 0;) {
			struct reply *t = c->ex[i].reply;
			if (t->remote && (t->state == REPLY_QUEUED || t->state == REPLY_WAITING))
				t->state = REPLY_STREAMING;
		}
		return what | STORE_CHANGED_OUTPUT | STORE_CHANGED_THINKING;
	case JOURNAL_REPLY_END:
		live_history(c);
		s->hooks.pump(s, c, n); /* the turns it held back */
		return what | STORE_CHANGED_OUTPUT | STORE_CHANGED_HISTORY;
	case JOURNAL_CLEAR:
		prune_index_reset(&c->prune);
		for (size_t i = 0; i < c->n_ex; i++)
			c->ex[i].in_history = false;
		if (c->newest && c->newest->state != REPLY_PENDING) {
			reply_unref(NULL, c->newest);
			c->newest = NULL;
		}
		attach_gc(s, c);
		return what | STORE_CHANGED_OUTPUT | STORE_CHANGED_HISTORY;
	case JOURNAL_UNDO:
		live_history(c);
		if (L->undo_last)
			context_undo_newest(c);
		return what | STORE_CHANGED_OUTPUT | STORE_CHANGED_HISTORY;
	case JOURNAL_SUMMARY:
		live_history(c);
		return what | STORE_CHANGED_HISTORY;
	case JOURNAL_META:
		return STORE_CHANGED_META;
	default:
		return what;
	}
}

int context_apply_live(struct store *s, struct context *c, uint16_t type, const void *payload,
		       size_t len, struct notes *n)
{
	struct loader L = {s, c};
	struct record rec = {0};
	int r = record_decode(&rec, type, payload, len, NULL);
	if (r == -ENOMEM)
		return r;
	unsigned what = 0;
	if (r == RECORD_OK) {
		/* A turn or attempt this record begins is another daemon's. */
		size_t had = c->n_ex;
		struct reply *was = had ? c->ex[had - 1].reply : NULL;
		load_apply(&L, &rec, len);
		struct reply *now = c->n_ex ? c->ex[c->n_ex - 1].reply : NULL;
		if (now && (c->n_ex != had || now != was) && now->state == REPLY_QUEUED)
			now->remote = true;
		what = live_after(s, c, &rec, &L, n);
	} else {
		c->report.bad_records++;
	}
	record_release(&rec);
	c->modified_ms = clock_wall_ms();
	context_changed(c);
	if (what)
		notes_add(n, c->id, what);
	return 0;
}

char *context_create_payload(const struct settings *st, int64_t created_ms)
{
	char *text = NULL;
	record_print(settings_record(st, "", NULL, created_ms), &text, NULL);
	return text;
}

static struct context *context_alloc(struct store *s, struct store_slot *slot)
{
	struct context *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->id = slot->id;
	c->slot = slot;
	c->settings = store_context_defaults(s);
	c->system = strdup("");
	c->next_turn = 1;
	c->created_ms = c->modified_ms = clock_wall_ms();
	prune_index_init(&c->prune);
	if (!c->system) {
		free(c);
		return NULL;
	}
	c->store = s;
	return c;
}

int context_adopt(struct store *s, struct store_slot *slot, const struct settings *st,
		  int64_t created_ms)
{
	struct context *c = context_alloc(s, slot);
	if (!c)
		return -ENOMEM;
	c->settings = *st;
	c->created_ms = c->modified_ms = created_ms;
	c->open = true;
	c->seq = 1; /* its CREATE */
	slot->ctx = c;
	slot->meta_known = true; /* a new context has none */
	return 0;
}

static void context_note_recovery(struct context *c)
{
	const struct storage_report *r = &c->report;
	if (!r->bad_records && !r->torn_bytes)
		return;
	log_debug("context '%s': journal recovered: %llu corrupt record(s) skipped, "
		  "%llu torn byte(s) truncated",
		  c->slot->name, (unsigned long long)r->bad_records,
		  (unsigned long long)r->torn_bytes);
}

/* The engine delivers records in order; the loader's per-type functions take
 * them from here. */
static int on_stored(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	return on_record(data, type, payload, len, seq);
}

/* A context that holds no record (a crash between its name and its first
 * record) gets its CREATE now, as if it had just been made. */
static int context_first_record(struct store *s, struct context *c)
{
	char *text = context_create_payload(&c->settings, c->created_ms);
	if (!text)
		return -ENOMEM;
	int r = storage_append(s->st, c->slot->sid, JOURNAL_CREATE, text, strlen(text),
			       STORAGE_COMMIT, &c->seq);
	free(text);
	return r;
}

int context_load(struct store *s, struct store_slot *slot)
{
	struct context *c = context_alloc(s, slot);
	if (!c)
		return -ENOMEM;
	slot->ctx = c;
	struct loader L = {s, c};
	buf_init(&L.hidden, STORAGE_MAX_RECORD);
	meta_load_begin(slot);
	int r = storage_load(s->st, slot->sid, 0, 0, on_stored, &L, &c->seq);
	meta_load_end(s, slot);
	buf_done(&L.hidden);
	if (r == -ENODATA) {
		r = context_first_record(s, c);
	} else if (r == 0) {
		/* What the engine found (corrupt records, a torn tail it cut),
		 * and the payloads the loader could not use. */
		r = storage_open(s->st, slot->sid, &c->report);
		c->report.bad_records += L.bad_payloads;
		c->open = r == 0;
		/* No CREATE (a crash right after the file was made): the root
		 * defaults it loads with are saved now, or they would follow every
		 * later change of .config until the context's own next change. */
		if (r == 0 && !L.settings_seen)
			context_save_settings(c, &c->settings, c->system, c->system_len);
		context_note_recovery(c);
		mark_interrupted(c);
	}
	c->open = r == 0;
	commit_mark_synced(c);
	if (r < 0) {
		c->broken = r;
		snprintf(c->note, sizeof(c->note), "cannot open journal: %s", strerror(-r));
		log_debug("context '%s': %s", c->slot->name, c->note);
	}
	/* Blobs are checked and swept only against a journal read whole: one that
	 * could not be read refers to nothing, and nothing of it may go. */
	if (r == 0)
		attach_loaded(s, c);
	for (size_t i = c->hist_start; i < c->n_ex; i++)
		context_history_push(c, i);
	while (c->floor_turn && c->prune.floor < c->prune.n &&
	       c->ex[c->hist[c->prune.floor]].turn < c->floor_turn)
		c->prune.floor++;
	summary_after_load(c);
	c->next_send = c->n_ex;
	for (size_t i = c->n_ex; i-- > 0;)
		if (c->ex[i].reply->remote)
			c->next_send = i; /* later turns wait for the remote ones */
	/* After a clear `output` has no turn until the next message, as it had
	 * before the restart; after an undo, the history's newest reply. */
	if (L.undo_last)
		context_undo_newest(c);
	else if (c->n_ex > c->hist_start)
		c->newest = reply_ref(NULL, c->ex[c->n_ex - 1].reply);
	return 0;
}

void context_free(struct store *s, struct context *c)
{
	if (!c)
		return;
	if (s)
		store_lease_forget(s, c);
	for (size_t i = 0; i < c->n_ex; i++) {
		struct exchange *e = &c->ex[i];
		free(e->user);
		for (size_t k = 0; k < e->n_att; k++)
			attachment_free(&e->att[k]);
		free(e->att);
		e->reply->ctx = NULL;
		reply_unref(NULL, e->reply);
		for (size_t k = 0; k < e->n_earlier; k++)
			reply_unref(NULL, e->earlier[k]); /* ctx already NULL */
		free(e->earlier);
	}
	for (size_t i = 0; i < c->n_marks; i++)
		free(c->marks[i].text);
	free(c->marks);
	attach_files_free(c);
	if (c->newest)
		c->newest->ctx = NULL;
	reply_unref(NULL, c->newest);
	free(c->ex);
	free(c->hist);
	context_ledger_done(c);
	prune_index_done(&c->prune);
	context_views_done(c);
	free(c->system);
	free(c->schema);
	if (c->summ_call) { /* its call's reference stays with the call */
		c->summ_call->ctx = NULL;
		reply_unref(NULL, c->summ_call);
	}
	free(c->summary);
	free(c);
}
