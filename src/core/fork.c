/* fork.c — a context's history taken further elsewhere or taken back: `fork`
 * copies a context into a new one, `undo` takes the newest exchange out of the
 * history (store.h: context_fork, context_undo).  Their records, FORKED_FROM
 * and UNDO, are written and read here (doc/design/journal.md).
 *
 * A fork is written as a journal of ordinary records (CREATE, FORKED_FROM,
 * SETTINGS, META, then USER, REPLY_PART, BLOCK and REPLY_END for each exchange
 * copied, then SUMMARY, each encoded by the module that owns the record),
 * beside hard links to the blobs of the attachments its USER records name, as
 * a hidden context of the storage engine (storage_create without a name: the
 * state dir keeps it in trash/) that is named once it is durable: the fork
 * appears whole or not at all (a hidden context is gone after a restart), and
 * the store's lock is not held over its syncs.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "mcpfs/utf8.h"
#include "block_impl.h"
#include "store_impl.h"

static bool reply_ended(const struct reply *t)
{
	return t->state == REPLY_DONE || t->state == REPLY_FAILED;
}

/* Adds a mark of kind about turn (text copied, may be NULL).  0, -ENOMEM. */
static int mark_turn(struct context *c, enum mark_kind kind, const char *text, uint64_t turn)
{
	size_t n = c->n_marks;
	int r = context_mark(c, kind, text, text ? strlen(text) : 0);
	if (r == 0 && c->n_marks > n)
		c->marks[c->n_marks - 1].turn = turn;
	return r;
}

/* --- undo ------------------------------------------------------------------------ */

void context_undo_newest(struct context *c)
{
	if (c->newest && c->newest->state == REPLY_PENDING)
		return;
	reply_unref(NULL, c->newest);
	c->newest = c->prune.n ? reply_ref(NULL, c->ex[c->hist[c->prune.n - 1]].reply) : NULL;
}

int context_load_undo(struct context *c, uint64_t turn, bool *undo_last)
{
	struct exchange *e = NULL;
	for (size_t i = c->n_ex; turn > 0 && i-- > 0 && !e;)
		if (c->ex[i].turn == turn)
			e = &c->ex[i];
	if (!e)
		return -EINVAL;
	e->undone = true;
	/* A message that was being written (its USER record came first, its
	 * end comes later, if ever) kept `output` when the undo was made. */
	*undo_last = reply_ended(c->ex[c->n_ex - 1].reply);
	mark_turn(c, MARK_UNDO, NULL, turn); /* out of memory: unmarked */
	return 0;
}

/* A call in flight, or a message queued behind one. */
static bool calls_busy(const struct context *c)
{
	if (c->active)
		return true;
	for (size_t i = c->next_send; i < c->n_ex; i++) {
		enum reply_state st = c->ex[i].reply->state;
		if (st == REPLY_QUEUED || st == REPLY_WAITING || st == REPLY_STREAMING)
			return true;
	}
	return false;
}

static int undo_check(const struct context *c, char *why, size_t whylen)
{
	if (calls_busy(c)) {
		snprintf(why, whylen,
			 "cannot undo while a call is in flight: wait for its reply, or "
			 "cancel it first");
		return -EINVAL;
	}
	if (!c->prune.n) {
		snprintf(why, whylen, "nothing to undo: the history has no complete exchange");
		return -EINVAL;
	}
	return 0;
}

static int undo_record(struct context *c, uint64_t turn)
{
	cJSON *o = record_undo_json(turn, clock_wall_ms());
	return o ? context_journal_write_at(c, JOURNAL_UNDO, o) : -ENOMEM;
}

/* Shown at once (a message submitted while the record is synced goes without
 * the exchange), and put back if the sync fails. */
int context_undo(struct store *s, uint64_t id, char *why, size_t whylen)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? commit_sync_idle(s, &c) : -ENOENT;
	size_t i = 0, marks = 0;
	uint64_t turn = 0;
	unsigned tries = 0;
	while (r == 0) { /* numbered again after another daemon's record */
		r = undo_check(c, why, whylen);
		i = r == 0 ? c->hist[c->prune.n - 1] : 0;
		marks = c->n_marks;
		turn = r == 0 ? c->ex[i].turn : 0;
		if (r == 0)
			r = undo_record(c, turn);
		if (r != -EAGAIN)
			break;
		r = context_renumber(s, &c, &tries, &n);
	}
	struct reply *was = NULL;
	if (r == 0) {
		prune_index_pop(&c->prune);
		c->ex[i].in_history = false;
		c->ex[i].undone = true;
		mark_turn(c, MARK_UNDO, NULL, turn);
		was = c->newest ? reply_ref(NULL, c->newest) : NULL;
		context_undo_newest(c);
		context_changed(c);
		/* a numbered record on a shared engine is committed already */
		r = context_journal_shared(c) ? 0 : commit_sync(s, &c, &n);
		if (r < 0 && c) {
			c->ex[i].undone = false;
			context_history_push(c, i);
			while (c->n_marks > marks)
				free(c->marks[--c->n_marks].text);
			reply_unref(NULL, c->newest);
			c->newest = was;
			was = NULL;
			context_changed(c);
		}
		if (r < 0 && r != -ENOENT)
			snprintf(why, whylen, "cannot save the undo: %s", strerror(-r));
	}
	reply_unref(NULL, was);
	if (r == 0) {
		c->refused[0] = '\0';
		notes_add(&n, id,
			  STORE_CHANGED_STATE | STORE_CHANGED_OUTPUT | STORE_CHANGED_HISTORY);
	}
	store_unlock_notify(s, &n);
	return r;
}

/* --- fork --------------------------------------------------------------------------- */

void context_load_origin(struct context *c, const char *from, uint64_t turn)
{
	mark_turn(c, MARK_FORK, from, turn); /* out of memory: unmarked */
}

/* One exchange to copy: the user's text (a copy) and the reply, which has
 * ended and so no longer changes (a reference: read without the lock). */
struct fork_ex {
	uint64_t turn;
	char *user;
	size_t user_len;
	int64_t user_ms;
	struct reply *reply;
	cJSON *attach; /* the USER record's "attach" list, NULL for none */
};

/* What a fork copies, taken under the lock and written without it. */
struct fork_plan {
	struct settings settings;
	char *system;  /* "" for none */
	char *schema;  /* NULL for none */
	char *from;    /* the source's name */
	uint64_t src;  /* ... its storage id */
	char *meta;    /* its user metadata: a META payload, NULL for none */
	char *summary; /* its summary and the turns it covers: a SUMMARY payload, NULL none */
	uint64_t at;   /* the turn it is forked at (the marker's) */
	struct fork_ex *ex;
	size_t n;
};

static void fork_plan_done(struct store *s, struct fork_plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->ex[i].user);
		reply_unref(s, p->ex[i].reply);
		cJSON_Delete(p->ex[i].attach);
	}
	free(p->ex);
	free(p->system);
	free(p->schema);
	free(p->from);
	free(p->meta);
	free(p->summary);
}

/* The newest turn that has ended: the highest TURN a fork may name. */
static uint64_t newest_ended(const struct context *c)
{
	for (size_t i = c->n_ex; i-- > 0;)
		if (reply_ended(c->ex[i].reply))
			return c->ex[i].turn;
	return 0;
}

static int fork_plan_make(const struct context *c, uint64_t upto, struct fork_plan *p, char *why,
			  size_t whylen)
{
	uint64_t last = newest_ended(c);
	if (upto != CONTEXT_FORK_ALL && upto > last) {
		snprintf(why, whylen,
			 "turn %llu is out of range: the newest turn that has ended is %llu",
			 (unsigned long long)upto, (unsigned long long)last);
		return -EINVAL;
	}
	p->settings = c->settings;
	p->system = strndup(c->system, c->system_len);
	p->schema = c->schema ? strdup(c->schema) : NULL;
	p->from = strdup(c->slot->name);
	p->src = c->slot->sid;
	p->meta = meta_payload(c->slot); /* tags describe the conversation: kept */
	p->ex = calloc(c->prune.n ? c->prune.n : 1, sizeof(*p->ex));
	if (!p->system || (c->schema && !p->schema) || !p->from || !p->ex)
		goto nomem;
	/* The summary standing in for pruned turns, with the turns it covers
	 * (summary.c: none when it covers turns past the fork's). */
	if (summary_fork_payload(c, upto, &p->summary) < 0)
		goto nomem;
	/* The history: complete exchanges since the last clear, not undone, in
	 * order (pruned ones too: the fork prunes for itself, and leaves out what
	 * its summary covers). */
	for (size_t k = 0; k < c->prune.n; k++) {
		const struct exchange *e = &c->ex[c->hist[k]];
		if (e->turn > upto)
			break;
		struct fork_ex *x = &p->ex[p->n];
		if (!(x->user = strndup(e->user, e->user_len)))
			goto nomem;
		x->turn = e->turn;
		x->user_len = e->user_len;
		x->user_ms = e->user_ms;
		x->reply = reply_ref(NULL, e->reply);
		p->n++;
		x->attach = e->n_att ? attach_list_json(e->att, e->n_att) : NULL;
		if (e->n_att && !x->attach)
			goto nomem;
		p->at = e->turn;
	}
	if (upto != CONTEXT_FORK_ALL)
		p->at = upto;
	return 0;
nomem:
	snprintf(why, whylen, "cannot create the fork: %s", strerror(ENOMEM));
	return -ENOMEM;
}

/* The fork being written: a hidden context of the engine. */
struct fork_out {
	struct storage *st;
	uint64_t sid;
};

static int fork_append(const struct fork_out *j, uint16_t type, const void *data, size_t len)
{
	return storage_append(j->st, j->sid, type, data, len, 0, NULL);
}

static int append_json(const struct fork_out *j, uint16_t type, cJSON *o)
{
	char *text = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (!text)
		return -ENOMEM;
	int r = fork_append(j, type, text, strlen(text));
	free(text);
	return r;
}

/* The reply's parts as reply_checkpoint() writes them: the thinking before the
 * text in parts without text, then the text (cut between characters) with the
 * rest of the thinking. */
static int append_parts(const struct fork_out *j, struct buf *part, uint64_t turn,
			const struct reply *t)
{
	const char *text = t->text.data ? t->text.data : "";
	const char *thinking = t->thinking.data ? t->thinking.data : "";
	size_t lead = t->text.len ? t->thinking_lead : t->thinking.len, ts = 0, hs = 0;
	int r = 0;
	while (r == 0 && (ts < t->text.len || hs < t->thinking.len)) {
		size_t tn = hs < lead ? 0 : t->text.len - ts;
		size_t hn = (hs < lead ? lead : t->thinking.len) - hs;
		tn = tn > PART_MAX ? utf8_complete_prefix(text + ts, PART_MAX) : tn;
		hn = hn > PART_MAX ? utf8_complete_prefix(thinking + hs, PART_MAX) : hn;
		r = record_part_print(part, turn, 1, text + ts, tn, thinking + hs, hn);
		if (r == 0)
			r = fork_append(j, JOURNAL_REPLY_PART, part->data, part->len);
		ts += tn;
		hs += hn;
	}
	return r;
}

/* The reply's blocks other than plain text (block_impl.h), after all its
 * parts: every offset is then within what the parts hold. */
static int append_blocks(const struct fork_out *j, uint64_t turn, const struct reply *t)
{
	int r = 0;
	for (size_t i = 0; r == 0 && i < t->blocks.n; i++) {
		struct buf rec;
		buf_init(&rec, STORAGE_MAX_RECORD);
		r = block_payload(&t->blocks.v[i], turn, 1, &rec);
		if (r == 0)
			r = fork_append(j, JOURNAL_BLOCK, rec.data ? rec.data : "", rec.len);
		buf_done(&rec);
	}
	return r;
}

/* The reply's end as attempt 1 of the fork, without the source's usage: the
 * fork made no call (its usage starts at zero). */
static cJSON *end_payload(const struct reply *t)
{
	struct record_end e;
	reply_end_fields(t, &e);
	/* The fork's usage starts at zero: a hit of the response cache is no
	 * hit of the fork's either. */
	e.attempt = 1;
	e.has_usage = e.cache_hit = false;
	e.http_status = e.retries = e.raw_sent = e.first_turn = RECORD_ABSENT;
	return record_end_json(&e);
}

static cJSON *origin_payload(const struct fork_plan *p, int64_t now)
{
	return record_forked_from_json(p->from, p->at, now);
}

/* The USER record of x, with the attachments it took. */
static cJSON *fork_user(const struct fork_ex *x)
{
	return record_user_json(x->turn, x->user, x->user_len, x->user_ms, x->attach);
}

/* The fork's CREATE: the hidden context j->sid is made with it.  CREATE
 * carries no system prompt, so that the transcript shows where the fork came
 * from first, then the prompt it starts with (SETTINGS). */
static int fork_create(struct fork_out *j, const struct fork_plan *p, int64_t now)
{
	char *text = NULL;
	record_print(settings_record(&p->settings, "", NULL, now), &text, NULL);
	int r = text ? storage_create(j->st, NULL, now, text, strlen(text), &j->sid) : -ENOMEM;
	free(text);
	return r;
}

/* The rest of the fork's records, durable on return. */
static int fork_write(const struct fork_out *j, const struct fork_plan *p, int64_t now)
{
	int r = append_json(j, JOURNAL_FORKED_FROM, origin_payload(p, now));
	if (r == 0 && (p->system[0] || p->schema))
		r = append_json(j, JOURNAL_SETTINGS,
				settings_record(&p->settings, p->system, p->schema, RECORD_ABSENT));
	if (r == 0 && p->meta)
		r = fork_append(j, JOURNAL_META, p->meta, strlen(p->meta));
	struct buf part;
	buf_init(&part, RECORD_PART_SIZE(PART_MAX, PART_MAX));
	for (size_t i = 0; r == 0 && i < p->n; i++) {
		const struct fork_ex *x = &p->ex[i];
		r = append_json(j, JOURNAL_USER, fork_user(x));
		if (r == 0)
			r = append_parts(j, &part, x->turn, x->reply);
		if (r == 0)
			r = append_blocks(j, x->turn, x->reply);
		if (r == 0)
			r = append_json(j, JOURNAL_REPLY_END, end_payload(x->reply));
	}
	buf_done(&part);
	if (r == 0 && p->summary) /* after the exchanges, as a summary call writes it */
		r = fork_append(j, JOURNAL_SUMMARY, p->summary, strlen(p->summary));
	if (r == 0)
		r = storage_sync(j->st, j->sid);
	return r;
}

/* The blobs of the exchanges' attachments, linked into the fork
 * (attach_fork_links: blob.h's business, not the fork's). */
static int fork_blobs(struct store *s, uint64_t sid, const struct fork_plan *p)
{
	const cJSON **lists = p->n ? calloc(p->n, sizeof(*lists)) : NULL;
	if (p->n && !lists)
		return -ENOMEM;
	for (size_t i = 0; i < p->n; i++)
		lists[i] = p->ex[i].attach;
	int r = attach_fork_links(s, p->src, sid, lists, p->n);
	free(lists);
	return r;
}

/* Writes the fork as a hidden context, then names it.  *sid: its id. */
static int fork_make(struct store *s, const char *name, const struct fork_plan *p, uint64_t *sid)
{
	int64_t now = clock_wall_ms();
	struct fork_out j = {s->st, 0};
	int r = fork_create(&j, p, now);
	if (r < 0)
		return r;
	r = fork_blobs(s, j.sid, p);
	if (r == 0)
		r = fork_write(&j, p, now);
	/* The side file listings read without loading it (meta.c).  Best
	 * effort: the records are the truth, and loading writes it again. */
	if (r == 0 && p->meta)
		storage_meta_set(s->st, j.sid, p->meta, strlen(p->meta));
	if (r == 0)
		r = storage_rename(s->st, j.sid, name);
	if (r < 0)
		storage_remove(s->st, j.sid); /* its blob links go with it */
	*sid = j.sid;
	return r;
}

int context_fork(struct store *s, uint64_t id, const char *name, uint64_t upto, char *why,
		 size_t whylen)
{
	const char *rule = NULL;
	size_t len = strlen(name);
	int r = store_name_check_why(name, len, &rule);
	if (r < 0) {
		snprintf(why, whylen, "invalid name for the fork: %s", rule ? rule : "refused");
		return r;
	}
	struct fork_plan p = {0};
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	r = c ? 0 : -ENOENT;
	if (r == 0 && map_get(&s->by_name, name, len)) {
		snprintf(why, whylen, "a context named '%.255s' exists", name);
		r = -EEXIST;
	}
	if (r == 0)
		r = fork_plan_make(c, upto, &p, why, whylen);
	struct store_slot *slot = r == 0 ? store_slot_reserve(s, name) : NULL;
	if (r == 0 && !slot) {
		snprintf(why, whylen, "cannot create the fork: %s", strerror(ENOMEM));
		r = -ENOMEM;
	}
	uint64_t sid = slot ? slot->id : 0;
	pthread_mutex_unlock(&s->lock);
	uint64_t storage_id = 0;
	if (r == 0 && (r = fork_make(s, name, &p, &storage_id)) < 0)
		snprintf(why, whylen, "cannot create the fork: %s", strerror(-r));
	fork_plan_done(s, &p);
	if (!slot)
		return r;
	pthread_mutex_lock(&s->lock);
	store_slot_settle(s, sid, storage_id, r);
	if (r == 0)
		notes_add(&n, sid, STORE_CHANGED_CREATED);
	store_unlock_notify(s, &n);
	return r;
}
