/* context.c — one context: loading its journal, committing to it, settings and
 * messages (see store.h; the journal format is doc/design/journal.md).
 *
 * Everything here runs under the store lock.  A commit (message, settings,
 * clear) is appended and fsynced before the function returns, so what a writer
 * was told succeeded survives a crash.
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

cJSON *settings_record(const struct settings *st, const char *system, const char *schema)
{
	cJSON *set = cJSON_CreateObject();
	struct record_settings r = {
	    .settings = set, .system = system, .schema = schema, .v = RECORD_ABSENT};
	cJSON *o = set && settings_to_json(st, set) == 0 ? record_settings_json(&r) : NULL;
	cJSON_Delete(set);
	return o;
}

/* Appends a SETTINGS record (with schema, the schema text it carries: the
 * context's own by default); with sync under the lock (a load), else the
 * caller syncs it.  *copy receives the new system prompt's copy (NULL:
 * unchanged). */
static int settings_append(struct context *c, const struct settings *st, const char *system,
			   size_t system_len, bool sync, char **copy, const char *schema)
{
	*copy = NULL;
	if (system != c->system) {
		*copy = malloc(system_len + 1);
		if (!*copy)
			return -ENOMEM;
		memcpy(*copy, system, system_len);
		(*copy)[system_len] = '\0';
	}
	cJSON *rec = settings_record(st, *copy ? *copy : c->system, schema ? schema : c->schema);
	int r = rec ? context_journal_write(c, JOURNAL_SETTINGS, rec, sync) : -ENOMEM;
	if (r < 0) {
		free(*copy);
		*copy = NULL;
	}
	return r;
}

static void settings_apply(struct context *c, const struct settings *st, char *copy,
			   size_t system_len)
{
	c->settings = *st;
	if (copy && (system_len != c->system_len || memcmp(copy, c->system, system_len)))
		context_mark(c, MARK_SYSTEM, copy, system_len);
	if (copy) {
		free(c->system);
		c->system = copy;
		c->system_len = system_len;
	}
	context_changed(c);
}

int context_save_settings(struct context *c, const struct settings *st, const char *system,
			  size_t system_len)
{
	char *copy;
	int r = settings_append(c, st, system, system_len, true, &copy, NULL);
	if (r == 0)
		settings_apply(c, st, copy, system_len);
	return r;
}

int context_exchange_push(struct context *c, uint64_t turn, const char *text, size_t len,
			  struct turn **ret)
{
	if (c->n_ex == c->cap_ex) {
		size_t cap = c->cap_ex ? c->cap_ex * 2 : 8;
		struct exchange *ex = realloc(c->ex, cap * sizeof(*ex));
		if (!ex)
			return -ENOMEM;
		c->ex = ex;
		c->cap_ex = cap;
	}
	struct exchange *e = &c->ex[c->n_ex];
	memset(e, 0, sizeof(*e));
	e->user = malloc(len + 1);
	e->reply = turn_new(c, turn, 1);
	if (!e->user || !e->reply) {
		free(e->user);
		turn_unref(NULL, e->reply);
		return -ENOMEM;
	}
	memcpy(e->user, text, len);
	e->user[len] = '\0';
	e->user_len = len;
	e->turn = turn;
	e->user_ms = clock_wall_ms();
	e->clear_before = c->pending_clear;
	c->pending_clear = false;
	c->n_ex++;
	if (turn >= c->next_turn)
		c->next_turn = turn + 1;
	if (ret)
		*ret = e->reply;
	return 0;
}

int context_mark(struct context *c, enum mark_kind kind, const char *text, size_t len)
{
	/* Two clears in a row show as one, as they always have. */
	if (kind == MARK_CLEAR && c->n_marks && c->marks[c->n_marks - 1].kind == MARK_CLEAR &&
	    c->marks[c->n_marks - 1].at == c->n_ex)
		return 0;
	if (c->n_marks == c->cap_marks) {
		size_t cap = c->cap_marks ? c->cap_marks * 2 : 4;
		struct mark *m = realloc(c->marks, cap * sizeof(*m));
		if (!m)
			return -ENOMEM;
		c->marks = m;
		c->cap_marks = cap;
	}
	struct mark *m = &c->marks[c->n_marks];
	*m = (struct mark){c->n_ex, kind, NULL, 0};
	if (text && !(m->text = strndup(text, len)))
		return -ENOMEM;
	m->len = len;
	c->n_marks++;
	context_changed(c);
	return 0;
}

void context_history_push(struct context *c, size_t i)
{
	struct exchange *e = &c->ex[i];
	if (e->in_history || e->undone || i < c->hist_start || !turn_in_history(e->reply))
		return;
	if (c->prune.n == c->hist_cap) {
		size_t cap = c->hist_cap ? c->hist_cap * 2 : 16;
		size_t *h = realloc(c->hist, cap * sizeof(*h));
		if (!h)
			return; /* stays out of history: only a smaller request */
		c->hist = h;
		c->hist_cap = cap;
	}
	if (prune_index_push(&c->prune, exchange_raw(e)) < 0)
		return;
	c->hist[c->prune.n - 1] = i;
	e->in_history = true;
	context_changed(c);
}

/* --- loading ------------------------------------------------------------------ */

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
	e->reply->state = TURN_QUEUED; /* no end seen yet */
	if (r->ms > 0)
		e->user_ms = r->ms;
}

/* The attempt a record talks about: a new turn object when it is a higher one
 * (§5 rule 3); NULL for a record of a lower attempt (ignored), of a turn
 * without a USER record (dropped), or of an attempt that has ended (misplaced:
 * its REPLY_END came after every byte of it, so nothing may follow). */
static struct turn *load_attempt(struct loader *L, int64_t turn, int64_t attempt)
{
	struct context *c = L->c;
	struct exchange *e = turn > 0 ? find_exchange(c, (uint64_t)turn) : NULL;
	if (!e)
		return NULL;
	if (attempt > 0 && (uint64_t)attempt < e->reply->attempt)
		return NULL;
	if (attempt > UINT32_MAX) {
		L->bad_payloads++;
		return NULL;
	}
	if (attempt > 0 && (unsigned)attempt != e->reply->attempt) {
		struct turn *t = turn_new(c, e->turn, (unsigned)attempt);
		if (t && e->reply->state != TURN_DONE && e->reply->state != TURN_FAILED) {
			e->reply->state = TURN_FAILED; /* its end was lost */
			api_error_set(&e->reply->error, "interrupted",
				      "the reply was not complete");
		}
		if (!t || exchange_replace(c, e, t) < 0) {
			turn_unref(NULL, t);
			return NULL;
		}
		t->state = TURN_QUEUED;
	}
	if (e->reply->state == TURN_DONE || e->reply->state == TURN_FAILED) {
		L->bad_payloads++;
		return NULL;
	}
	return e->reply;
}

static void load_part(struct loader *L, const struct record_part *r)
{
	struct turn *t = load_attempt(L, r->turn, r->attempt);
	if (!t)
		return;
	/* The writer puts the thinking that came before the first text in parts
	 * of its own (turn_checkpoint), so where it ends is known again here. */
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
	struct turn *t = load_attempt(L, r->turn, r->attempt);
	if (t && blocks_load_record(t, r, len) == -EINVAL)
		L->bad_payloads++;
}

static void load_end(struct loader *L, const struct record_end *r)
{
	struct turn *t = load_attempt(L, r->turn, r->attempt);
	if (!t)
		return;
	t->state = r->done ? TURN_DONE : TURN_FAILED;
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
		t->state = TURN_FAILED;
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
	struct turn *t = r->has_usage ? turn_new(L->c, 0, 1) : NULL;
	if (t) {
		t->usage = r->usage;
		/* the summary call's model (summary_model): its cost is that model's */
		const char *m = r->model;
		if (m && settings_model_valid(m, strlen(m)))
			snprintf(t->model, sizeof(t->model), "%s", m);
		context_account(L->c, t);
		turn_unref(NULL, t);
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
		meta_load_record(L->c->slot, r->u.meta.payload);
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
 * failed as "interrupted", keeping the text its checkpoints saved. */
static void mark_interrupted(struct context *c)
{
	for (size_t i = 0; i < c->n_ex; i++) {
		struct turn *t = c->ex[i].reply;
		if (t->state == TURN_DONE || t->state == TURN_FAILED)
			continue;
		t->state = TURN_FAILED;
		api_error_clear(&t->error);
		api_error_set(&t->error, "interrupted",
			      "the daemon stopped before the reply was complete (%zu bytes kept); "
			      "write 'retry' to ctl to send it again",
			      t->text.len);
		turn_end_record(c, t, false);
	}
	if (c->open)
		storage_sync(c->store->st, c->slot->sid);
}

char *context_create_payload(const struct settings *st, int64_t created_ms)
{
	cJSON *rec = settings_record(st, "", NULL);
	if (rec) {
		cJSON_AddNumberToObject(rec, "v", 1);
		cJSON_AddNumberToObject(rec, "created_ms", (double)created_ms);
	}
	char *text = rec ? cJSON_PrintUnformatted(rec) : NULL;
	cJSON_Delete(rec);
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
			       STORAGE_COMMIT, NULL);
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
	buf_init(&L.hidden, JOURNAL_MAX_RECORD);
	meta_load_begin(slot);
	int r = storage_load(s->st, slot->sid, 0, 0, on_stored, &L, NULL);
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
	context_mark_synced(c);
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
	/* After a clear `output` has no turn until the next message, as it had
	 * before the restart; after an undo, the history's newest reply. */
	if (L.undo_last)
		context_undo_newest(c);
	else if (c->n_ex > c->hist_start)
		c->newest = turn_ref(NULL, c->ex[c->n_ex - 1].reply);
	return 0;
}

void context_free(struct store *s, struct context *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_ex; i++) {
		struct exchange *e = &c->ex[i];
		free(e->user);
		for (size_t k = 0; k < e->n_att; k++)
			attachment_free(&e->att[k]);
		free(e->att);
		e->reply->ctx = NULL;
		turn_unref(NULL, e->reply);
		for (size_t k = 0; k < e->n_earlier; k++)
			turn_unref(NULL, e->earlier[k]); /* ctx already NULL */
		free(e->earlier);
	}
	for (size_t i = 0; i < c->n_marks; i++)
		free(c->marks[i].text);
	free(c->marks);
	attach_files_free(c);
	if (c->newest)
		c->newest->ctx = NULL;
	turn_unref(NULL, c->newest);
	free(c->ex);
	free(c->hist);
	context_ledger_done(c);
	prune_index_done(&c->prune);
	context_views_done(c);
	free(c->system);
	free(c->schema);
	if (c->summ_call) { /* its call's reference stays with the call */
		c->summ_call->ctx = NULL;
		turn_unref(NULL, c->summ_call);
	}
	free(c->summary);
	free(c);
}

/* --- settings ------------------------------------------------------------------ */

static int system_check(const char *text, size_t len, char *why, size_t whylen)
{
	if (len > SETTINGS_SYSTEM_MAX) {
		snprintf(why, whylen, "system prompt is %zu bytes, over the limit of %u", len,
			 SETTINGS_SYSTEM_MAX);
		return -EFBIG;
	}
	if (!utf8_valid(text, len) || memchr(text, '\0', len)) {
		snprintf(why, whylen, "system prompt is not valid UTF-8 text");
		return -EILSEQ;
	}
	return 0;
}

/* Forgets the marks after the first n (a change whose fsync failed). */
static void marks_drop(struct context *c, size_t n)
{
	while (c->n_marks > n)
		free(c->marks[--c->n_marks].text);
}

/* What a commit changes besides the settings: a new system prompt and a new
 * schema, each NULL to keep the current one (a schema "" removes it). */
struct commit_text {
	const char *sys, *schema;
	size_t slen, schema_len;
};

/* Installs a new schema copy (NULL: none) and returns the old one. */
static char *schema_swap(struct context *c, char *copy, size_t len)
{
	char *old = c->schema;
	c->schema = copy;
	c->schema_len = copy ? len : 0;
	return old;
}

/* Saves new settings, a new system prompt and a new schema in one SETTINGS
 * record, so a change is applied whole or not at all. */
static int context_commit(struct store *s, uint64_t id, const struct settings *st,
			  const struct commit_text *ct, char *why, size_t whylen)
{
	struct notes notes = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? context_sync_idle(s, &c) : -ENOENT;
	struct settings set, old;
	char *copy = NULL, *old_system = NULL, *sch = NULL, *old_schema = NULL;
	const char *sys = ct ? ct->sys : NULL;
	size_t old_len = 0, slen = ct ? ct->slen : 0;
	bool applied = false, new_schema = ct && ct->schema;
	if (r == 0 && new_schema && ct->schema_len && !(sch = strndup(ct->schema, ct->schema_len)))
		r = -ENOMEM;
	if (r == 0) {
		set = st ? *st : c->settings;
		slen = sys ? slen : c->system_len;
		r = settings_append(c, &set, sys ? sys : c->system, slen, false, &copy,
				    new_schema ? (sch ? sch : "") : NULL);
	}
	/* Shown at once, as when the fsync was under the lock (a truncation of
	 * `system` is applied at the release, which close() does not wait for, and
	 * a read right after it finds the new text), and put back if the fsync
	 * fails. */
	size_t marks = 0;
	if (r == 0) {
		old = c->settings;
		old_len = c->system_len;
		old_system = copy ? c->system : NULL; /* kept for a failure */
		c->settings = set;
		marks = c->n_marks;
		if (copy && (slen != c->system_len || memcmp(copy, c->system, slen)))
			context_mark(c, MARK_SYSTEM, copy, slen);
		if (copy) {
			c->system = copy;
			c->system_len = slen;
		}
		if (new_schema)
			old_schema = schema_swap(c, sch, ct->schema_len);
		sch = NULL;
		context_changed(c);
		applied = true;
		r = context_sync(s, &c, &notes);
	}
	if (applied && r < 0 && c) {
		if (old_system) {
			free(c->system);
			c->system = old_system;
			c->system_len = old_len;
			old_system = NULL;
		}
		if (new_schema)
			free(schema_swap(c, old_schema, old_schema ? strlen(old_schema) : 0));
		old_schema = NULL;
		c->settings = old;
		marks_drop(c, marks);
		context_changed(c);
	}
	free(old_system); /* replaced, or its context is gone */
	free(old_schema);
	free(sch);
	if (r < 0 && r != -ENOENT)
		snprintf(why, whylen, "cannot save settings: %s", strerror(-r));
	if (r == 0)
		notes_add(&notes, id, STORE_CHANGED_SETTINGS | STORE_CHANGED_HISTORY);
	store_unlock_notify(s, &notes);
	return r;
}

int context_set_system(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		       size_t whylen)
{
	int r = system_check(text, len, why, whylen);
	struct commit_text ct = {.sys = text, .slen = len};
	return r < 0 ? r : context_commit(s, id, NULL, &ct, why, whylen);
}

int context_set_schema(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		       size_t whylen)
{
	int r = schema_check(text, len, why, whylen);
	/* White space alone is no schema. */
	struct commit_text ct = {.schema = text, .schema_len = schema_empty(text, len) ? 0 : len};
	return r < 0 ? r : context_commit(s, id, NULL, &ct, why, whylen);
}

/* The context's settings as they are now, for a change based on them. */
static int context_settings(struct store *s, uint64_t id, struct settings *st, bool defaults)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	if (c)
		*st = defaults ? store_context_defaults(s) : c->settings;
	pthread_mutex_unlock(&s->lock);
	return c ? 0 : -ENOENT;
}

int context_set_model(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		      size_t whylen)
{
	const char *model;
	size_t mlen;
	if (settings_model_text(text, len, &model, &mlen, why, whylen) < 0)
		return -EINVAL;
	struct settings st;
	char mid[SETTINGS_MODEL_MAX + 1];
	int r = context_settings(s, id, &st, false);
	if (r < 0)
		return r;
	memcpy(mid, model, mlen);
	mid[mlen] = '\0';
	if ((r = store_model_check(s, st.model, mid, why, whylen)) < 0)
		return r;
	memcpy(st.model, mid, mlen + 1);
	return context_commit(s, id, &st, NULL, why, whylen);
}

int context_set_config(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		       size_t whylen)
{
	struct settings st;
	char old[SETTINGS_MODEL_MAX + 1] = "";
	int r = context_settings(s, id, &st, false);
	if (r == 0) {
		memcpy(old, st.model, sizeof(old));
		r = settings_parse(&st, text, len, why, whylen);
	}
	if (r == 0)
		r = settings_check(&st, why, whylen);
	if (r == 0)
		r = store_model_check(s, old, st.model, why, whylen);
	return r < 0 ? r : context_commit(s, id, &st, NULL, why, whylen);
}

/* A patch's "schema": the schema's text (a string), the schema itself (an
 * object, printed into *text, which the caller frees with cJSON_free), or
 * null or "" for none; checked as the file's text is. */
static int patch_schema(const cJSON *patch, struct commit_text *ct, char **text, char *why,
			size_t whylen)
{
	const cJSON *sc = cJSON_GetObjectItemCaseSensitive(patch, "schema");
	if (!sc)
		return 0;
	if (cJSON_IsNull(sc)) {
		ct->schema = "";
		return 0;
	}
	if (cJSON_IsObject(sc) && !(*text = cJSON_PrintUnformatted(sc))) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	if (!*text && !cJSON_IsString(sc)) {
		snprintf(why, whylen, "schema must be a JSON object, its text, or null");
		return -EINVAL;
	}
	const char *t = *text ? *text : sc->valuestring;
	size_t len = strlen(t);
	int r = schema_check(t, len, why, whylen);
	ct->schema = t;
	ct->schema_len = schema_empty(t, len) ? 0 : len;
	return r;
}

/* The system prompt and the settings of a patch are checked first and saved in
 * one SETTINGS record, so a patch is applied whole or not at all. */
int context_patch(struct store *s, uint64_t id, const cJSON *patch, char *why, size_t whylen)
{
	struct settings st;
	int r = context_settings(s, id, &st, false);
	if (r < 0)
		return r;
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(patch, "model");
	const cJSON *config = cJSON_GetObjectItemCaseSensitive(patch, "config");
	const cJSON *system = cJSON_GetObjectItemCaseSensitive(patch, "system");
	if ((model && !cJSON_IsString(model)) || (system && !cJSON_IsString(system)) ||
	    (config && !cJSON_IsObject(config))) {
		snprintf(why, whylen, "system and model must be strings, config an object");
		return -EINVAL;
	}
	size_t mlen = model ? strlen(model->valuestring) : 0;
	if (model && !settings_model_valid(model->valuestring, mlen)) {
		snprintf(why, whylen, "invalid model id '%.64s'", model->valuestring);
		return -EINVAL;
	}
	char old[SETTINGS_MODEL_MAX + 1];
	memcpy(old, st.model, sizeof(old));
	if (model)
		memcpy(st.model, model->valuestring, mlen + 1);
	if (config && (r = settings_from_json(&st, config, why, whylen)) < 0)
		return r;
	if ((r = settings_check(&st, why, whylen)) < 0)
		return r;
	if ((r = store_model_check(s, old, st.model, why, whylen)) < 0)
		return r;
	const char *sys = system ? system->valuestring : NULL;
	size_t slen = sys ? strlen(sys) : 0;
	if (sys && (r = system_check(sys, slen, why, whylen)) < 0)
		return r;
	struct commit_text ct = {.sys = sys, .slen = slen};
	char *sch = NULL;
	if ((r = patch_schema(patch, &ct, &sch, why, whylen)) == 0)
		r = context_commit(s, id, &st, &ct, why, whylen);
	cJSON_free(sch);
	return r;
}

int exchange_replace(struct context *c, struct exchange *e, struct turn *t)
{
	struct turn **v = realloc(e->earlier, (e->n_earlier + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	e->earlier = v;
	e->reply->ctx = NULL; /* ended: nothing more is saved of it */
	v[e->n_earlier++] = e->reply;
	e->reply = t;
	t->marks_before = c->n_marks;
	context_changed(c);
	return 0;
}

int64_t exchange_raw(const struct exchange *e)
{
	return prune_estimate(e->user_len) +
	       prune_estimate(e->reply->text.len + blocks_bytes(e->reply)) + attach_raw(e);
}

/* A USER record's payload; att: the files the message took from attach/. */
cJSON *user_payload(uint64_t turn, const char *text, size_t len, int64_t ms,
		    const struct attachment *att, size_t n_att)
{
	cJSON *o = record_user_json(turn, text, len, ms);
	if (!o)
		return NULL;
	if (attach_user_json(att, n_att, o) < 0) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

int context_output(struct store *s, uint64_t id, struct turn **ret)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	*ret = c && c->newest ? turn_ref(NULL, c->newest) : NULL;
	pthread_mutex_unlock(&s->lock);
	return c ? 0 : -ENOENT;
}

int context_info(struct store *s, uint64_t id, struct context_info *out)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	if (c) {
		struct turn *t = c->newest;
		memset(out, 0, sizeof(*out));
		out->state = t ? t->state : TURN_DONE;
		out->turn = t ? t->number : 0;
		out->output_size = t ? t->text.len : 0;
		out->thinking_size = t ? t->thinking.len : 0;
		for (size_t i = c->next_send; i < c->n_ex; i++) {
			enum turn_state st = c->ex[i].reply->state;
			if (st == TURN_QUEUED || st == TURN_PENDING)
				out->queued++;
		}
		out->idle = !c->active && !c->summ_call && out->queued == 0;
		out->created_ms = c->created_ms;
		out->modified_ms = c->modified_ms;
		out->max_input_bytes = c->settings.max_input_bytes;
		snprintf(out->model, sizeof(out->model), "%s", c->settings.model);
	}
	pthread_mutex_unlock(&s->lock);
	return c ? 0 : -ENOENT;
}

void context_views_done(struct context *c)
{
	for (int i = 0; i < VIEW_CACHED; i++) {
		free(c->views[i].data);
		c->views[i].data = NULL;
	}
}
