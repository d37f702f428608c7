/* reply.c — a reply attempt, the object (see store.h and store_impl.h): made,
 * referenced and freed (reply_new/_ref/_unref), its text and thinking read by
 * `output` and the fs (reply_read & co.), what streamed in checkpointed to the
 * context's journal (REPLY_PART, blocks), and its REPLY_END record.
 *
 * Under the store lock (the reading functions take it).  A reply is refcounted:
 * its exchange, readers, its call, the models wait list and fork plans hold
 * it, so this file sits below all of them and calls only the context's journal
 * (context_journal.c), the blocks (block.c) and the records (record.h).  The
 * life of its call — queue, request, the transport's events, its end — is
 * reply_call.c's.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "mcpfs/utf8.h"
#include "store_impl.h"

static const char *const state_names[] = {"pending",   "queued", "waiting",
					  "streaming", "done",	 "failed"};

const char *reply_state_name(enum reply_state st)
{
	return state_names[st];
}

struct reply *reply_new(struct context *c, uint64_t number, unsigned attempt)
{
	struct reply *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->refs = 1;
	t->ctx = c;
	t->ctx_id = c->id;
	t->number = number;
	t->attempt = attempt;
	t->state = REPLY_PENDING;
	buf_init(&t->text, STORE_REPLY_MAX);
	buf_init(&t->thinking, STORE_REPLY_MAX);
	buf_init(&t->part, RECORD_PART_SIZE(PART_MAX, PART_MAX));
	api_error_clear(&t->error);
	t->raw_sent = -1;
	blocks_init(&t->blocks);
	return t;
}

struct reply *reply_ref(struct store *s, struct reply *t)
{
	if (s)
		pthread_mutex_lock(&s->lock);
	t->refs++;
	if (s)
		pthread_mutex_unlock(&s->lock);
	return t;
}

void reply_unref(struct store *s, struct reply *t)
{
	if (!t)
		return;
	if (s)
		pthread_mutex_lock(&s->lock);
	bool last = --t->refs == 0;
	if (s)
		pthread_mutex_unlock(&s->lock);
	if (!last)
		return;
	buf_done(&t->text);
	buf_done(&t->thinking);
	buf_done(&t->part);
	blocks_done(&t->blocks);
	free(t);
}

uint64_t reply_turn(const struct reply *t)
{
	return t->number;
}

uint64_t reply_context(const struct reply *t)
{
	return t->ctx_id;
}

/* A reply that cannot be saved (a full disk) is still shown, but status must
 * say that it will not survive a restart. */
static void reply_save_failed(struct context *c, int err)
{
	if (!c->note[0] && err == -EIO && store_shared(c->store))
		snprintf(c->note, sizeof(c->note),
			 "cannot save the reply yet: the store is unreachable; it is "
			 "saved when the store is back");
	if (!c->note[0])
		snprintf(c->note, sizeof(c->note),
			 "cannot save the reply: %s; it will not "
			 "survive a restart",
			 strerror(-err));
}

/* The bytes of b from off on ("" for an empty buffer, never NULL). */
static const char *buf_at(const struct buf *b, size_t off)
{
	return b->data ? b->data + off : "";
}

/* Appends a REPLY_PART with the text and thinking not yet saved. */
int reply_checkpoint(struct reply *t, bool sync)
{
	struct context *c = t->ctx;
	int err = 0;
	if (!c || !c->open || c->syncing || t->summary_call || t->remote)
		return 0; /* while a sync runs: at the next event, or when it ends;
			     a remote turn's parts are another daemon's */
	/* Before any text an attempt may still be retried, which drops its
	 * thinking; saving it now would bring it back on the next load. */
	if (!t->text.len && t->state != REPLY_DONE && t->state != REPLY_FAILED)
		return 0;
	while (t->text_saved < t->text.len || t->thinking_saved < t->thinking.len) {
		size_t tn = t->text.len - t->text_saved, hn = t->thinking.len - t->thinking_saved;
		/* The thinking that came before the text goes in parts without text,
		 * so that a loader knows where it ends (the transcript shows it ahead
		 * of the text, the rest after). */
		if (!t->text_saved && t->thinking_saved < t->thinking_lead) {
			tn = 0;
			hn = t->thinking_lead - t->thinking_saved;
		}
		tn = tn > PART_MAX ? PART_MAX : tn;
		hn = hn > PART_MAX ? PART_MAX : hn;
		/* Text is split only between characters: wire.c delivers whole UTF-8
		 * deltas, and PART_MAX cuts are made on the saved offsets, which the
		 * record's escaping keeps intact either way. */
		int r = record_part_print(&t->part, t->number, t->attempt,
					  buf_at(&t->text, t->text_saved), tn,
					  buf_at(&t->thinking, t->thinking_saved), hn);
		if (r == 0)
			r = context_journal_append(c, JOURNAL_REPLY_PART, t->part.data, t->part.len,
						   false);
		if (r < 0) {
			reply_save_failed(c, r);
			err = r;
			break;
		}
		t->text_saved += tn;
		t->thinking_saved += hn;
	}
	/* Every block after the text and thinking it follows (block_impl.h). */
	if (t->text_saved == t->text.len && t->thinking_saved == t->thinking.len) {
		int r = blocks_save(c, t);
		if (r < 0)
			reply_save_failed(c, r);
		if (r < 0 && !err)
			err = r;
	}
	t->saved_ms = clock_mono_ms();
	if (sync)
		storage_sync(c->store->st, c->slot->sid);
	/* A shared store away: what streams is kept, up to a bound. */
	if (err == -EIO && store_shared(c->store) &&
	    (t->text.len - t->text_saved) + (t->thinking.len - t->thinking_saved) >
		STORE_UNSAVED_MAX)
		return -ENOBUFS;
	return err;
}

void reply_end_fields(const struct reply *t, struct record_end *e)
{
	*e = (struct record_end){
	    .turn = (int64_t)t->number,
	    .attempt = t->attempt,
	    .done = t->state == REPLY_DONE,
	    .cache_hit = t->cache_hit,
	    .has_usage = true,
	    .usage = t->paused_usage, /* the calls a pause_turn continued too */
	    .stop_reason = t->stop_reason,
	    .request_id = t->request_id,
	    /* What its usage is priced as (the settings may change meanwhile). */
	    .model = t->model,
	    .has_error = t->state == REPLY_FAILED,
	    .error_type = t->error.type,
	    .error_message = t->error.message,
	    .error_request_id = t->error.request_id,
	    .error_http_status = t->error.http_status,
	    .raw_sent = t->raw_sent >= 0 ? t->raw_sent : RECORD_ABSENT,
	    /* A stream counts as a call with or without usage; the retries its
	     * call made stay in status after a restart. */
	    .http_status = t->http_status == 200 ? 200 : RECORD_ABSENT,
	    .retries = t->retries,
	    /* `status` shows them after a restart too */
	    .request_bytes = (int64_t)t->req_bytes,
	    .request_us = t->req_us,
	    /* Lets a loader tell a reply whose parts were all read from one that
	     * lost a part to a corrupt record. */
	    .text_bytes = (int64_t)t->text.len,
	    /* Where the last call's history started, so that pruning resumes from
	     * the same place after a restart (and the cached prefix stays valid). */
	    .first_turn = (int64_t)t->first_turn,
	};
	wire_usage_add(&e->usage, &t->usage);
}

cJSON *reply_end_payload(const struct reply *t)
{
	struct record_end e;
	reply_end_fields(t, &e);
	return record_end_json(&e);
}

int reply_end_record(struct context *c, struct reply *t, bool sync)
{
	int r = reply_checkpoint(t, false);
	/* On a shared store, an end never goes ahead of parts it could not write
	 * (they are written with it once the store is back, commit.c). */
	if (r < 0 && store_shared(c->store))
		return r == -ENOBUFS ? -EIO : r;
	buf_done(&t->part); /* the reply's last part is saved */
	cJSON *o = reply_end_payload(t);
	if (!o)
		return -ENOMEM;
	r = context_journal_write(c, JOURNAL_REPLY_END, o, sync);
	if (r < 0)
		reply_save_failed(c, r);
	return r;
}

bool reply_in_history(const struct reply *t)
{
	/* The API refuses an assistant turn without text, so an empty reply (a
	 * reply of thinking only) keeps its exchange out of the history; so does a
	 * refusal, which the API wants left out of later calls. */
	return t->state == REPLY_DONE && strcmp(t->stop_reason, "refusal") != 0 &&
	       !utf8_blank(t->text.data ? t->text.data : "", t->text.len);
}

/* --- reading ------------------------------------------------------------------- */

ssize_t reply_read(struct store *s, struct reply *t, uint64_t off, void *buf, size_t size)
{
	pthread_mutex_lock(&s->lock);
	ssize_t r;
	if (off < t->text.len) {
		size_t n = t->text.len - off < size ? t->text.len - (size_t)off : size;
		/* What a reader has seen must survive a crash: save it first (while
		 * a sync runs on the journal, once it is over: readers are told). */
		if (t->text_saved < off + n)
			reply_checkpoint(t, false);
		if (t->text_saved < off + n && t->ctx && t->ctx->open && t->ctx->syncing) {
			r = -EAGAIN;
		} else {
			memcpy(buf, t->text.data + off, n);
			r = (ssize_t)n;
		}
	} else if (t->state == REPLY_DONE) {
		/* The end of a reply is reported once it is durable. */
		r = t->end_unsynced || t->end_deferred ? -EAGAIN : 0;
	} else if (t->state == REPLY_FAILED) {
		r = -EIO;
	} else {
		r = -EAGAIN;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

uint64_t reply_size(struct store *s, struct reply *t)
{
	pthread_mutex_lock(&s->lock);
	uint64_t n = t->text.len;
	pthread_mutex_unlock(&s->lock);
	return n;
}

ssize_t reply_read_thinking(struct store *s, struct reply *t, uint64_t off, void *buf, size_t size)
{
	pthread_mutex_lock(&s->lock);
	ssize_t r;
	if (off < t->thinking.len) {
		size_t n = t->thinking.len - off < size ? t->thinking.len - (size_t)off : size;
		memcpy(buf, t->thinking.data + off, n);
		/* A retry keeps what a reader was shown (reply_call_retry). */
		if (t->thinking_read < off + n)
			t->thinking_read = off + n;
		r = (ssize_t)n;
	} else if (t->state == REPLY_DONE || t->state == REPLY_FAILED) {
		/* The end, whatever the outcome (`output` and `status` tell a
		 * failure), so that cp -r and tar copy a failed turn's thinking. */
		r = t->end_unsynced || t->end_deferred ? -EAGAIN : 0;
	} else {
		r = -EAGAIN;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

uint64_t reply_thinking_size(struct store *s, struct reply *t)
{
	pthread_mutex_lock(&s->lock);
	uint64_t n = t->thinking.len;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void reply_outcome(struct store *s, struct reply *t, struct reply_outcome *out)
{
	pthread_mutex_lock(&s->lock);
	out->state = t->state;
	snprintf(out->stop_reason, sizeof(out->stop_reason), "%s", t->stop_reason);
	out->usage = t->usage;
	out->error = t->error;
	out->cache_hit = t->cache_hit;
	pthread_mutex_unlock(&s->lock);
}
