/* reply_call.c — a reply attempt's call: the order a context's turns are sent
 * in (reply_call_pump), building and starting a call, the transport's events
 * (store_call_*), retries, pause_turn continuations, cancelling, and a turn's
 * end (see store.h and store_impl.h; the object itself is reply.c's).
 *
 * Under the store lock.  A turn moves PENDING -> QUEUED -> WAITING -> STREAMING
 * -> DONE or FAILED; a context has at most one turn with a call in flight
 * (c->active) and sends the others in turn order (reply_call_pump).  An ended turn
 * goes into the history, is accounted (spend.c), kept in the response cache
 * (store_rcache.c) and its end saved (commit.c); a summary call's end is
 * summary.c's (summary_call_end).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "mcpfs/utf8.h"
#include "store_impl.h"

#define REQUEST_MAX WIRE_REQUEST_MAX

void reply_end(struct store *s, struct reply *t, enum reply_state st, const struct api_error *e,
	       struct notes *n)
{
	if (t->state == REPLY_DONE || t->state == REPLY_FAILED)
		return;
	t->state = st;
	if (e)
		t->error = *e;
	if (t->models_wait)
		store_models_unwait(s, t);
	if (t->call_id) {
		if (map_del_id(&s->calls, t->call_id)) {
			if (s->ops)
				s->ops->cancel(s->ops_impl, t->call_id);
			t->refs--; /* the call's reference; the context still holds one */
		}
		t->call_id = 0;
	}
	if (t->summary_call) {
		summary_call_end(s, t, n);
		return;
	}
	struct context *c = t->ctx;
	notes_add(n, t->ctx_id, STORE_CHANGED_OUTPUT | STORE_CHANGED_STATE | STORE_CHANGED_HISTORY);
	if (!c)
		return;
	if (log_level >= LOG_DEBUG) {
		char q[1024], name[STORE_NAME_MAX * 2 + 8];
		log_quote(q, sizeof(q), t->text.data ? t->text.data : "", t->text.len);
		log_quote(name, sizeof(name), c->slot->name, strlen(c->slot->name));
		log_debug("context '%s', turn %" PRIu64 ": reply '%s' (%zu bytes, %s)", name,
			  t->number, q, t->text.len, st == REPLY_DONE ? "done" : "failed");
	}
	if (c->active == t)
		c->active = NULL;
	context_changed(c); /* the transcript shows the end, saved or not */
	if (st == REPLY_DONE)
		store_rcache_keep(s, t);
	commit_save_end(s, c, t, n);
	context_account(c, t);
	for (size_t i = c->n_ex; i-- > c->hist_start;)
		if (c->ex[i].reply == t) {
			context_history_push(c, i);
			break;
		}
}

/* Fails a queued turn before any call: the budget or the request size. */
static void reply_refuse(struct store *s, struct reply *t, const char *type, const char *msg,
			 struct notes *n)
{
	struct api_error e;
	api_error_clear(&e);
	api_error_set(&e, type, "%s", msg);
	reply_end(s, t, REPLY_FAILED, &e, n);
}

/* The attachments' blocks of the exchanges sent (the history from first, then
 * exchange k), in order: *pre (heap, NULL for none) points into the
 * attachments' kept blocks.  -ENOTSUP when the model takes no image or PDF
 * input (CONTRACT §9), -errno; why says why. */
static int reply_attachments(struct context *c, size_t k, size_t first,
			     const struct model_caps *caps, struct wire_raw **pre, char *why,
			     size_t whylen)
{
	size_t n = c->ex[k].n_att;
	for (size_t i = first; i < c->prune.n; i++)
		n += c->ex[c->hist[i]].n_att;
	*pre = NULL;
	if (!n)
		return 0;
	struct wire_raw *v = calloc(n, sizeof(*v));
	if (!v)
		return -ENOMEM;
	size_t j = 0;
	int r = 0;
	for (size_t i = first; r == 0 && i <= c->prune.n; i++) {
		struct exchange *e = i < c->prune.n ? &c->ex[c->hist[i]] : &c->ex[k];
		r = attach_caps_check(e, caps, c->settings.model, why, whylen);
		for (size_t a = 0; r == 0 && a < e->n_att; a++) {
			r = attach_block(c->store, c, &e->att[a]);
			if (r < 0)
				snprintf(why, whylen, "cannot read attachment %s: %s",
					 e->att[a].name, strerror(-r));
			else
				v[j++] = (struct wire_raw){e->att[a].block, e->att[a].block_len};
		}
	}
	if (r < 0)
		free(v);
	else
		*pre = v;
	return r;
}

/* Builds the request for exchange k: system, the history that fits, the message;
 * thinking and effort shaped from the model's capabilities (caps NULL: none known). */
static int reply_request(struct context *c, size_t k, const struct model_caps *caps,
			 struct buf *body, int64_t *raw, char *why, size_t whylen)
{
	const struct exchange *e = &c->ex[k];
	const struct settings *st = &c->settings;
	int64_t fixed = prune_estimate(e->user_len) + attach_raw(e) +
			(c->system_len ? prune_estimate(c->system_len) : 0) + summary_raw(c);
	int64_t first = prune_decide(&c->prune, fixed, st->budget_tokens);
	context_changed(c); /* the floor may have moved: `history` shows it */
	if (first < 0) {
		snprintf(why, whylen,
			 "the message needs about %lld tokens with the system prompt, "
			 "over budget_tokens (%lld); nothing was sent",
			 (long long)prune_tokens(&c->prune, fixed), (long long)st->budget_tokens);
		return -EFBIG;
	}
	size_t kept = c->prune.n - (size_t)first;
	struct reply *t = c->ex[k].reply;
	t->first_turn = kept ? c->ex[c->hist[first]].turn : 0;
	/* Replies go back with the blocks the API wants of them (block.c), and
	 * a paused reply is sent back to be continued. */
	size_t nm = kept * 2 + 1 + (t->continued ? 1 : 0);
	struct wire_message *m = calloc(nm, sizeof(*m));
	cJSON **blocks = calloc(kept + 1, sizeof(*blocks));
	struct wire_raw *pre = NULL;
	int ret =
	    m && blocks ? reply_attachments(c, k, (size_t)first, caps, &pre, why, whylen) : -ENOMEM;
	if (ret < 0) {
		free(m);
		free(blocks);
		return ret;
	}
	size_t np = 0;
	*raw = fixed;
	for (size_t i = 0; i < kept; i++) {
		const struct exchange *h = &c->ex[c->hist[(size_t)first + i]];
		const char *reply = h->reply->text.data ? h->reply->text.data : "";
		m[2 * i] = (struct wire_message){
		    .text = h->user, .len = h->user_len, .pre = pre + np, .n_pre = h->n_att};
		np += h->n_att;
		m[2 * i + 1] = (struct wire_message){
		    .assistant = true, .text = reply, .len = h->reply->text.len};
		m[2 * i + 1].blocks = blocks[i] = blocks_json(h->reply, BLOCKS_HISTORY);
		*raw += exchange_raw(h);
	}
	m[2 * kept] = (struct wire_message){.text = e->user,
					    .len = e->user_len,
					    .cache_mark = st->prompt_cache,
					    .pre = pre + np,
					    .n_pre = e->n_att};
	if (kept && st->prompt_cache)
		m[2 * kept - 1].cache_mark = true;
	if (t->continued) {
		m[nm - 1] = (struct wire_message){true, "", 0, false};
		m[nm - 1].blocks = blocks[kept] = blocks_json(t, BLOCKS_RESUME);
		*raw += prune_estimate(t->text.len + t->thinking.len + blocks_bytes(t));
	}
	struct buf block; /* the summary, a second system block */
	buf_init(&block, REQUEST_MAX);
	if (summary_block(c, &block) < 0) {
		buf_done(&block);
		for (size_t i = 0; i <= kept; i++)
			cJSON_Delete(blocks[i]);
		free(blocks);
		free(m);
		free(pre);
		snprintf(why, whylen, "cannot build the request: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	struct model_shape shape;
	model_shape(st, caps, &shape);
	const char *tools[2];
	size_t n_tools = 0;
	if (shape.web_search)
		tools[n_tools++] = shape.web_search;
	if (shape.web_fetch)
		tools[n_tools++] = shape.web_fetch;
	struct wire_request r = {
	    .model = st->model,
	    .max_tokens = st->max_tokens,
	    .temperature = st->temperature,
	    .system = c->system,
	    .system_len = c->system_len,
	    .system_cache_mark = st->prompt_cache && (c->system_len > 0 || block.len > 0),
	    .system2 = block.len ? block.data : NULL,
	    .system2_len = block.len,
	    .messages = m,
	    .n_messages = nm,
	    .thinking_budget = shape.thinking == SHAPE_THINKING_BUDGET ? shape.budget : 0,
	    .thinking_adaptive = shape.thinking == SHAPE_THINKING_ADAPTIVE,
	    .effort = shape.effort,
	    .stream = true,
	    .tool_types = tools,
	    .n_tools = n_tools,
	    .schema = c->schema,
	    .schema_len = c->schema_len,
	};
	ret = t->continued && !blocks[kept] ? -ENODATA : wire_request_build(&r, body);
	for (size_t i = 0; i <= kept; i++)
		cJSON_Delete(blocks[i]);
	free(blocks);
	free(m);
	buf_done(&block);
	free(pre);
	if (ret == -EFBIG)
		snprintf(why, whylen,
			 "the request would exceed the API's 32 MB limit; nothing was sent");
	else if (ret < 0)
		snprintf(why, whylen, "cannot build the request: %s", strerror(-ret));
	return ret;
}

/* Starts the call for exchange k.  0, 1 when the response cache answered it
 * (it has ended, no call), or -errno with the turn failed. */
static int reply_start(struct store *s, struct context *c, size_t k, struct notes *n)
{
	struct reply *t = c->ex[k].reply;
	const struct model_caps *caps;
	struct buf body;
	char why[WHY_MAX];
	int r = store_models_ready(s, c, t, &caps, why, sizeof(why));
	if (r > 0) { /* waits for the Models API; an answer starts it again */
		notes_add(n, c->id, STORE_CHANGED_STATE);
		return 0;
	}
	if (r < 0) {
		reply_refuse(s, t, "model_retired", why, n);
		return r;
	}
	if (c->schema && caps && !caps->structured_outputs) {
		snprintf(why, sizeof(why),
			 "model '%s' does not take structured output, and `schema` is set: "
			 "empty `schema` or choose a model that takes it; nothing was sent",
			 c->settings.model);
		reply_refuse(s, t, "structured_output_unsupported", why, n);
		return -EINVAL;
	}
	summary_flush(s, c, n);
	if (summary_before(s, c, k, n)) { /* the summary call first; its end pumps */
		notes_add(n, c->id, STORE_CHANGED_STATE);
		return 0;
	}
	buf_init(&body, REQUEST_MAX);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = reply_request(c, k, caps, &body, &t->raw_sent, why, sizeof(why));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	t->req_bytes = body.len;
	t->req_us = (t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
	if (r < 0) {
		buf_done(&body);
		reply_refuse(s, t,
			     r == -EFBIG     ? "budget_exceeded"
			     : r == -ENOTSUP ? "unsupported_input"
					     : "request_error",
			     why, n);
		return r;
	}
	/* What the reply is priced as, and what REPLY_END names, hit or call. */
	snprintf(t->model, sizeof(t->model), "%s", c->settings.model);
	if (store_rcache_answer(s, c, t, body.data ? body.data : "", body.len, n)) {
		buf_done(&body);
		reply_end(s, t, REPLY_DONE, NULL, n);
		return 1;
	}
	/* One call at a time across daemons (store_lease.c): another daemon's
	 * call holds the lease, this turn stays queued and is tried again. */
	r = store_lease_take(s, c, why, sizeof(why));
	if (r != 0)
		buf_done(&body);
	if (r > 0) {
		notes_add(n, c->id, STORE_CHANGED_STATE);
		return 0;
	}
	if (r < 0) {
		reply_refuse(s, t, "store_error", why, n);
		return r;
	}
	struct call_spec spec = {
	    .call_id = ++s->next_call,
	    /* A continuation is not retried: its reply's text has been shown. */
	    .max_retries = t->continued ? 0 : (int)c->settings.max_retries,
	    .connect_timeout_ms = (int)c->settings.connect_timeout * 1000,
	    .idle_timeout_ms = (int)c->settings.idle_timeout * 1000,
	};
	snprintf(spec.context, sizeof(spec.context), "%s", c->slot->name);
	snprintf(spec.model, sizeof(spec.model), "%s", c->settings.model);
	spec.body = buf_steal(&body, &spec.body_len);
	if (!spec.body || map_put_id(&s->calls, spec.call_id, t) < 0) {
		free(spec.body);
		reply_refuse(s, t, "request_error", "out of memory", n);
		return -ENOMEM;
	}
	t->call_id = spec.call_id;
	t->refs++; /* the call's */
	t->state = REPLY_WAITING;
	t->started_ms = clock_wall_ms();
	c->active = t;
	if (log_level >= LOG_DEBUG) {
		/* Content is logged with -d only; the transport logs the call itself. */
		char q[1024], name[STORE_NAME_MAX * 2 + 8];
		log_quote(q, sizeof(q), c->ex[k].user, c->ex[k].user_len);
		log_quote(name, sizeof(name), c->slot->name, strlen(c->slot->name));
		log_debug("call %" PRIu64 ": context '%s', turn %" PRIu64
			  ": message '%s' (%zu bytes)",
			  spec.call_id, name, t->number, q, c->ex[k].user_len);
	}
	r = s->ops->start(s->ops_impl, &spec);
	if (r < 0) {
		free(spec.body);
		reply_refuse(s, t, "request_error", "the network thread refused the call", n);
		return r;
	}
	notes_add(n, c->id, STORE_CHANGED_STATE);
	return 0;
}

/* A renew found the call lease taken over (store_lease.c): another daemon
 * took the context's turn for lost and marked it interrupted; the call goes. */
static void reply_lease_lost(struct store *s, struct context *c, struct notes *n)
{
	c->lease_lost = false;
	c->lease_token = 0;
	struct reply *t = c->active;
	if (!t)
		return;
	if (t->state == REPLY_DONE || t->state == REPLY_FAILED) {
		/* the other daemon's REPLY_END came first (the feed): the call goes */
		if (t->call_id && map_del_id(&s->calls, t->call_id)) {
			s->ops->cancel(s->ops_impl, t->call_id);
			t->refs--;
		}
		t->call_id = 0;
		c->active = NULL;
		return;
	}
	struct api_error e;
	api_error_clear(&e);
	api_error_set(&e, "lease_lost",
		      "another daemon took over this context's call lease (this daemon did not "
		      "renew it within %d s); the call was cancelled",
		      LEASE_TTL_MS / 1000);
	reply_end(s, c->active, REPLY_FAILED, &e, n);
}

/* The takeover scan (store_lease.c) holds the lease of a context whose remote
 * turn's daemon stopped: that turn ends interrupted, its REPLY_END appended
 * here, as a restart marks a turn a crash left. */
static void reply_takeover(struct store *s, struct context *c, struct notes *n)
{
	uint64_t turn = c->takeover_turn;
	c->takeover_turn = 0;
	for (size_t i = c->n_ex; i-- > 0;) {
		struct reply *t = c->ex[i].reply;
		if (c->ex[i].turn != turn)
			continue;
		if (!t->remote || t->attempt != c->takeover_attempt || t->state == REPLY_DONE ||
		    t->state == REPLY_FAILED)
			return;
		struct api_error e;
		api_error_clear(&e);
		if (c->takeover_from[0])
			api_error_set(
			    &e, "interrupted",
			    "the daemon that made the call (%s) stopped; the reply is not "
			    "complete (%zu bytes received)",
			    c->takeover_from, t->text.len);
		else
			api_error_set(&e, "interrupted",
				      "the daemon that wrote the message stopped before its call "
				      "ended; the reply is not complete (%zu bytes received)",
				      t->text.len);
		reply_end(s, t, REPLY_FAILED, &e, n);
		return;
	}
}

void reply_call_pump(struct store *s, struct context *c, struct notes *n)
{
	if (c->lease_lost)
		reply_lease_lost(s, c, n);
	if (c->takeover_turn)
		reply_takeover(s, c, n);
	if (!s->ops || c->summ_call)
		return; /* no transport (tests of the core alone): turns stay queued;
			   or a summary call goes first */
	while (!c->active && c->next_send < c->n_ex) {
		struct reply *t = c->ex[c->next_send].reply;
		if (t->state == REPLY_PENDING)
			break; /* its writer has not closed yet: later turns wait */
		if (t->remote && t->state != REPLY_DONE && t->state != REPLY_FAILED)
			break; /* another daemon calls it (store_feed.c): later turns wait */
		/* A turn the response cache answered has ended: on to the next. */
		if (t->state == REPLY_QUEUED && reply_start(s, c, c->next_send, n) == 0)
			break;
		c->next_send++;
	}
	/* The first turn in line is this daemon's and open (being written, or
	 * waiting for the Models API): the lease is held meanwhile, so that no
	 * other daemon takes the turn for lost (store_lease.c; -EBUSY: the tick
	 * tries again).  Else, with no call in flight, it goes back. */
	struct reply *first = c->next_send < c->n_ex ? c->ex[c->next_send].reply : NULL;
	char why[WHY_MAX];
	if (!c->active && first && !first->remote && first->state != REPLY_DONE &&
	    first->state != REPLY_FAILED)
		store_lease_take(s, c, why, sizeof(why));
	else
		store_lease_idle(s, c);
}

int reply_call_stop_all(struct store *s, struct context *c, const char *why, struct notes *n)
{
	struct api_error e;
	api_error_clear(&e);
	api_error_set(&e, "cancelled", "%s", why);
	struct reply *summ = summary_cancel(c);
	int any = summ != NULL;
	if (summ)
		reply_end(s, summ, REPLY_FAILED, &e, n);
	for (size_t i = c->next_send; i < c->n_ex; i++) {
		struct reply *t = c->ex[i].reply;
		if (t->state == REPLY_QUEUED || t->state == REPLY_WAITING ||
		    t->state == REPLY_STREAMING) {
			reply_end(s, t, REPLY_FAILED, &e, n);
			any = 1;
		}
	}
	return any;
}

/* --- the transport's reports (network thread) ---------------------------------- */

void reply_call_response(struct store *s, uint64_t call_id, int http_status, const char *request_id)
{
	pthread_mutex_lock(&s->lock);
	struct reply *t = map_get_id(&s->calls, call_id);
	if (t) {
		t->http_status = http_status;
		snprintf(t->request_id, sizeof(t->request_id), "%s", request_id ? request_id : "");
	}
	pthread_mutex_unlock(&s->lock);
}

static void usage_assign(struct wire_usage *to, const struct wire_usage *from)
{
	/* message_delta usage is cumulative: assign the fields it carries. */
	if (from->present & WIRE_USAGE_INPUT)
		to->input_tokens = from->input_tokens;
	if (from->present & WIRE_USAGE_OUTPUT)
		to->output_tokens = from->output_tokens;
	if (from->present & WIRE_USAGE_CACHE_CREATION)
		to->cache_creation_input_tokens = from->cache_creation_input_tokens;
	if (from->present & WIRE_USAGE_CACHE_READ)
		to->cache_read_input_tokens = from->cache_read_input_tokens;
	to->present |= from->present;
}

/* The text or thinking an event brings (a delta, or a block's start). */
static inline int reply_text(struct reply *t, const struct wire_event *ev, struct notes *n)
{
	int r = 0;
	if (ev->block == WIRE_BLOCK_TEXT && ev->text_len) {
		t->state = REPLY_STREAMING;
		if (!t->text.len)
			t->thinking_lead = t->thinking.len;
		r = buf_append(&t->text, ev->text, ev->text_len);
		/* a summary call's text is no reply: status says it is summarizing */
		notes_add(n, t->ctx_id,
			  t->summary_call ? STORE_CHANGED_STATE : STORE_CHANGED_OUTPUT);
	} else if (ev->block == WIRE_BLOCK_THINKING && ev->text_len) {
		r = buf_append(&t->thinking, ev->text, ev->text_len);
		notes_add(n, t->ctx_id,
			  t->summary_call ? STORE_CHANGED_STATE : STORE_CHANGED_THINKING);
	}
	return r;
}

static int reply_event(struct store *s, struct reply *t, const struct wire_event *ev,
		       struct notes *n)
{
	int r = 0;
	switch (ev->type) {
	case WIRE_MESSAGE_START:
		t->state = REPLY_STREAMING;
		usage_assign(&t->usage, &ev->usage);
		notes_add(n, t->ctx_id, STORE_CHANGED_STATE);
		break;
	case WIRE_MESSAGE_STOP:
		blocks_finish(t);
		break;
	case WIRE_MESSAGE_DELTA:
		if (ev->stop_reason[0])
			snprintf(t->stop_reason, sizeof(t->stop_reason), "%s", ev->stop_reason);
		usage_assign(&t->usage, &ev->usage);
		break;
	case WIRE_BLOCK_DELTA:
		if (ev->block == WIRE_BLOCK_TEXT || ev->block == WIRE_BLOCK_THINKING)
			r = reply_text(t, ev, n);
		else
			r = blocks_event(t, ev);
		break;
	case WIRE_BLOCK_START: /* a block may start with text (the SDKs keep it) */
	case WIRE_BLOCK_STOP: {
		size_t had = t->thinking.len;
		r = blocks_event(t, ev); /* first: where the block begins */
		if (r == 0 && ev->type == WIRE_BLOCK_START)
			r = reply_text(t, ev, n);
		if (t->thinking.len != had) /* "[redacted]", or the separator */
			notes_add(n, t->ctx_id, STORE_CHANGED_THINKING);
		break;
	}
	default:
		break;
	}
	if (r < 0) {
		struct api_error e;
		api_error_clear(&e);
		if (r == -E2BIG) /* block.c */
			api_error_set(&e, "reply_too_large",
				      "a block of the reply passed its limit (%u bytes of a tool's "
				      "input, %u of blocks in all) and was cut",
				      BLOCK_INPUT_MAX, BLOCKS_MAX);
		else
			api_error_set(&e, "reply_too_large",
				      "the reply passed %u bytes and was cut", STORE_REPLY_MAX);
		reply_end(s, t, REPLY_FAILED, &e, n);
		return -ECANCELED;
	}
	/* past STORE_UNSAVED_MAX at once, not at the next tick: the bound holds */
	if ((clock_mono_ms() - t->saved_ms >= CHECKPOINT_MS ||
	     t->text.len - t->text_saved > STORE_UNSAVED_MAX) &&
	    reply_checkpoint(t, false) == -ENOBUFS) {
		struct api_error e;
		api_error_clear(&e);
		api_error_set(&e, "store_unreachable",
			      "the store is unreachable and %u bytes of the reply wait to be "
			      "saved: the reply was cut there (its text is saved when the store "
			      "is back)",
			      STORE_UNSAVED_MAX);
		reply_end(s, t, REPLY_FAILED, &e, n);
		return -ECANCELED;
	}
	return 0;
}

int reply_call_event(struct store *s, uint64_t call_id, const struct wire_event *ev)
{
	pthread_mutex_lock(&s->lock);
	struct reply *t = map_get_id(&s->calls, call_id);
	int r = t ? reply_event(s, t, ev, &s->held) : -ECANCELED;
	pthread_mutex_unlock(&s->lock);
	return r;
}

void reply_call_flush(struct store *s)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	store_unlock_notify(s, &n);
}

void reply_call_retry(struct store *s, uint64_t call_id, unsigned attempt,
		      const struct api_error *err, int64_t delay_ms)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct reply *t = map_get_id(&s->calls, call_id);
	if (t) {
		t->retries = attempt;
		t->http_status = 0; /* the next attempt's answer decides */
		t->state = REPLY_WAITING;
		/* The failed try's thinking goes, unless a reader of `thinking`
		 * was shown it: then it stays, as thinking without a block. */
		if (t->thinking_read <= t->call_thinking && t->thinking_saved <= t->call_thinking)
			buf_resize(&t->thinking, t->call_thinking);
		blocks_drop_call(&t->blocks);
		memset(&t->usage, 0, sizeof(t->usage));
		t->error = *err; /* shown in status while waiting; cleared on success */
		notes_add(&n, t->ctx_id, STORE_CHANGED_STATE);
	}
	store_unlock_notify(s, &n);
}

/* A reply that paused (stop_reason pause_turn: a server tool runs long) is
 * continued by another call that sends it back as it is, at most PAUSE_MAX
 * times; the new call's blocks join the same reply and `output` goes on.
 * true when the continuation started (or failed the turn: it has ended). */
static bool reply_continue(struct store *s, struct reply *t, struct notes *n)
{
	struct context *c = t->ctx;
	size_t k = c ? c->n_ex : 0;
	while (k-- > 0 && c->ex[k].reply != t)
		;
	if (!c || k >= c->n_ex || strcmp(t->stop_reason, "pause_turn") || t->continued >= PAUSE_MAX)
		return false;
	context_account(c, t);
	wire_usage_add(&t->paused_usage, &t->usage);
	memset(&t->usage, 0, sizeof(t->usage));
	t->continued++;
	t->stop_reason[0] = '\0';
	t->retries = 0;
	reply_checkpoint(t, false);
	t->blocks.call_first = t->blocks.n;
	t->blocks.text_index = -1;
	t->call_thinking = t->thinking.len;
	reply_start(s, c, k, n);
	return true;
}

void reply_call_end(struct store *s, uint64_t call_id, int err, const struct api_error *e)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct reply *t = map_del_id(&s->calls, call_id);
	if (t) {
		t->call_id = 0;
		struct api_error why;
		api_error_clear(&why);
		if (err == 0)
			t->error = why;
		else if (e)
			why = *e;
		else
			api_error_set(&why, err == -ETIMEDOUT ? "timeout_error" : "cancelled", "%s",
				      strerror(-err));
		if (err == 0 && reply_continue(s, t, &n)) {
			reply_unref(NULL, t); /* the ended call's reference */
			store_unlock_notify(s, &n);
			return;
		}
		reply_end(s, t, err == 0 ? REPLY_DONE : REPLY_FAILED, &why, &n);
		struct context *c = t->ctx;
		reply_unref(NULL, t); /* the call's reference */
		if (c)
			reply_call_pump(s, c, &n);
	}
	store_unlock_notify(s, &n);
}

int reply_cancel(struct store *s, struct reply *t)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = t->ctx;
	int r = 0;
	if (c && (t->state == REPLY_QUEUED || t->state == REPLY_WAITING ||
		  t->state == REPLY_STREAMING)) {
		/* This one turn only, queued or in flight; the others go on. */
		struct api_error e;
		api_error_clear(&e);
		api_error_set(&e, "cancelled", "cancelled by the client");
		reply_end(s, t, REPLY_FAILED, &e, &n);
		reply_call_pump(s, c, &n);
		r = 1;
	}
	store_unlock_notify(s, &n);
	return r;
}
