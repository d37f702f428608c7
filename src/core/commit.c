/* commit.c — durability: a context's journal synced with the store lock
 * released, the replies' ends that wait for a sync (appended, deferred or lost
 * by one), what a failed sync undoes, and the commit threads (see store_impl.h
 * and doc/design/threads.md).  Appending is context_journal.c's; this file
 * calls only below it: the store (notes), the context's journal, and a turn's
 * end record (reply.c).
 *
 * A commit appends its record under the store lock (storage_append) and
 * syncs with the lock released (storage_sync, storage.h): the context is
 * `syncing` meanwhile, nothing else is appended to it, and every other context
 * goes on.  Messages, settings and
 * clears are synced by the thread that commits them (the writer's close() waits
 * for its own fsync only); replies' ends by a commit thread (commit_run),
 * and a reader sees the end of a reply only once it is durable.
 *
 * A failed sync loses every record after the last good one: the engine
 * recovers (the state dir: reopened, truncated there, rescanned, synced;
 * storage_failed says whether it worked), the turns' saved
 * offsets go back so that their text is written again, a reply whose end was
 * lost fails (its reader gets EIO) with its end written again, and `status`
 * says when it happened.
 *
 * Descriptors and paths are the engine's (storage_dir_sync.c parks journals).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcpfs/clock.h"
#include "store_impl.h"

static struct context *loaded(struct store *s, uint64_t id)
{
	struct store_slot *slot = map_get_id(&s->by_id, id);
	return slot ? slot->ctx : NULL;
}

/* --- after a sync --------------------------------------------------------------- */

/* A reply that was complete in memory lost its end: it fails, and leaves the
 * history if it is its newest exchange (the usual case: it just ended). */
static void reply_lose_end(struct context *c, size_t i, int err)
{
	struct reply *t = c->ex[i].reply;
	if (t->state == REPLY_DONE) {
		t->state = REPLY_FAILED;
		api_error_clear(&t->error);
		api_error_set(&t->error, "journal_error",
			      "the reply could not be saved (fsync: %s); "
			      "write 'retry' to ctl to send it again",
			      strerror(-err));
	}
	if (c->ex[i].in_history && c->prune.n && c->hist[c->prune.n - 1] == i) {
		c->prune.n--;
		if (c->prune.floor > c->prune.n)
			c->prune.floor = c->prune.n;
		c->ex[i].in_history = false;
	}
}

/* Appends the ends that are due (deferred while a sync ran, or lost by one).
 * An end that cannot be appended is not waited for: its reply stays as it is
 * in memory, and status says that it will not survive a restart (as when the
 * disk is full). */
static bool context_flush_ends(struct store *s, struct context *c)
{
	bool any = false;
	int ready = 1;
	for (size_t i = 0; i < c->n_ex; i++) {
		struct reply *t = c->ex[i].reply;
		if (!t->end_deferred)
			continue;
		if (ready == 1)
			ready = context_journal_ready(s, c);
		t->end_deferred = false;
		if (ready == 0 && reply_end_record(c, t, false) == 0) {
			t->end_unsynced = true;
			any = true;
		}
	}
	if (ready < 0 && !c->note[0])
		snprintf(c->note, sizeof(c->note),
			 "cannot save the reply: %s; it will not "
			 "survive a restart",
			 strerror(-ready));
	return any;
}

static void context_after_sync(struct store *s, struct context *c, int r, struct notes *n)
{
	/* Readers wait for an end to be durable, or for text to be saved. */
	bool wake = r < 0 || (c->active && c->active->text_saved < c->active->text.len);
	for (size_t i = 0; i < c->n_ex; i++) {
		struct reply *t = c->ex[i].reply;
		wake |= t->end_unsynced || t->end_deferred;
		if (r == 0) {
			t->text_synced = t->text_saved;
			t->thinking_synced = t->thinking_saved;
			t->end_unsynced = false;
			continue;
		}
		t->text_saved = t->text_synced;
		t->thinking_saved = t->thinking_synced;
		if (t->end_unsynced) {
			t->end_unsynced = false;
			t->end_deferred = true;
			reply_lose_end(c, i, r);
		}
	}
	if (r < 0) {
		c->sync_failed_ms = clock_wall_ms();
		c->sync_failed_err = r;
		c->sync_recover_err = c->open ? storage_failed(s->st, c->slot->sid) : -EIO;
		context_changed(c);
	}
	/* Ends deferred while the sync ran, or lost by it, are appended now.
	 * After a failure they are synced by a commit thread, or without one by
	 * the next commit: never a loop of failing syncs here. */
	if (context_flush_ends(s, c) && (r == 0 || s->committers))
		commit_sync_later(s, c, n);
	if (wake)
		notes_add(n, c->id, STORE_CHANGED_OUTPUT | STORE_CHANGED_STATE);
}

/* --- syncing -------------------------------------------------------------------- */

int commit_sync_idle(struct store *s, struct context **cp)
{
	uint64_t id = (*cp)->id;
	while ((*cp)->syncing) {
		pthread_cond_wait(&s->synced, &s->lock);
		if (!(*cp = loaded(s, id)))
			return -ENOENT;
	}
	return 0;
}

/* The catch-up is store_feed.c's, called through the hook (it is above). */
int context_renumber(struct store *s, struct context **cp, unsigned *tries, struct notes *n)
{
	if (++*tries > NUMBER_TRIES)
		return -EIO; /* other daemons kept coming first */
	int r = s->hooks.catch_up(s, cp, n);
	if (r == 0 && !*cp)
		r = -ENOENT;
	if (r == 0)
		r = commit_sync_idle(s, cp);
	return r;
}

int commit_sync(struct store *s, struct context **cp, struct notes *n)
{
	uint64_t id = (*cp)->id;
	int r = commit_sync_idle(s, cp);
	struct context *c = *cp;
	if (r == 0)
		r = context_journal_ready(s, c);
	if (r < 0)
		return r;
	/* The lock is released for the engine's flush: the context is `syncing`
	 * meanwhile, and nothing is appended to it (deferred, commit_save_end). */
	uint64_t sid = c->slot->sid;
	c->syncing = true;
	pthread_mutex_unlock(&s->lock);
	r = storage_sync(s->st, sid);
	pthread_mutex_lock(&s->lock);
	pthread_cond_broadcast(&s->synced);
	*cp = loaded(s, id);
	if (!*cp)
		return -ENOENT;
	(*cp)->syncing = false;
	context_after_sync(s, *cp, r, n);
	return r;
}

/* Without commit threads (the core's unit tests), under the lock as before. */
static void context_sync_locked(struct store *s, struct context *c, struct notes *n)
{
	int r = context_journal_ready(s, c);
	if (r == -EBUSY)
		return; /* the sync running began after the append: it covers it */
	if (r == 0)
		r = storage_sync(s->st, c->slot->sid);
	context_after_sync(s, c, r, n);
}

void commit_sync_later(struct store *s, struct context *c, struct notes *n)
{
	if (!s->committers) {
		context_sync_locked(s, c, n);
		return;
	}
	if (c->sync_queued)
		return;
	if (s->commit_n == s->commit_cap) {
		size_t cap = s->commit_cap ? s->commit_cap * 2 : 64;
		uint64_t *q = realloc(s->commit_q, cap * sizeof(*q));
		if (!q) {
			context_sync_locked(s, c, n);
			return;
		}
		s->commit_q = q;
		s->commit_cap = cap;
	}
	s->commit_q[s->commit_n++] = c->id;
	c->sync_queued = true;
	pthread_cond_signal(&s->commit_wake);
}

/* --- a shared store away -------------------------------------------------------- */

/* Puts c in the away list: a commit thread writes its replies' parts and ends
 * once appends work again.  Without commit threads (the unit tests) they stay
 * as reply_save_failed left them. */
static void context_save_away(struct store *s, struct context *c)
{
	if (c->save_away || !s->committers)
		return;
	if (s->away_n == s->away_cap) {
		size_t cap = s->away_cap ? s->away_cap * 2 : 16;
		uint64_t *q = realloc(s->away_q, cap * sizeof(*q));
		if (!q)
			return; /* status says it will not survive a restart */
		s->away_q = q;
		s->away_cap = cap;
	}
	s->away_q[s->away_n++] = c->id;
	c->save_away = true;
	pthread_cond_signal(&s->commit_wake);
}

/* Writes c's waiting ends (each after its unsaved parts), in turn order.
 * true when none waits any more. */
static bool context_retry_away(struct store *s, struct context *c, struct notes *n)
{
	if (c->syncing)
		return false;
	for (size_t i = 0; i < c->n_ex; i++) {
		struct reply *t = c->ex[i].reply;
		if (!t->end_away)
			continue;
		c->away_retrying = true; /* context_journal_append lets these pass */
		int r = context_journal_ready(s, c);
		if (r == 0)
			r = reply_end_record(c, t, false);
		c->away_retrying = false;
		if (r < 0)
			return false;
		t->end_away = false;
		t->end_unsynced = true;
		c->note[0] = '\0'; /* saved after all */
		commit_sync_later(s, c, n);
		notes_add(n, c->id, STORE_CHANGED_STATE);
	}
	return true;
}

/* A commit thread's round over the away list, once the engine takes calls
 * again: probed first without the store lock (storage_reserve reconnects a
 * shared engine when its back-off allows, and fails at once otherwise). */
static void store_retry_away(struct store *s, struct notes *n)
{
	pthread_mutex_unlock(&s->lock);
	int r = storage_reserve(s->st, 0); /* a shared engine holds nothing */
	pthread_mutex_lock(&s->lock);
	if (r < 0)
		return;
	size_t keep = 0;
	for (size_t i = 0; i < s->away_n; i++) {
		struct context *c = loaded(s, s->away_q[i]);
		if (!c)
			continue;
		if (context_retry_away(s, c, n))
			c->save_away = false;
		else
			s->away_q[keep++] = c->id;
	}
	s->away_n = keep;
}

void commit_save_end(struct store *s, struct context *c, struct reply *t, struct notes *n)
{
	if (c->syncing) {
		t->end_deferred = true; /* appended when that sync ends */
		return;
	}
	int r = context_journal_ready(s, c);
	if (r == 0 && c->save_away)
		r = -EIO; /* after the ends that wait already */
	if (r == 0)
		r = reply_end_record(c, t, false);
	if (r == -EIO && store_shared(s) && c->open) {
		t->end_away = true; /* written when the store is back */
		context_save_away(s, c);
		return;
	}
	if (r < 0)
		return; /* reply_end_record said so in status */
	t->end_unsynced = true;
	commit_sync_later(s, c, n);
}

void commit_drop_ends(struct context *c)
{
	for (size_t i = 0; i < c->n_ex; i++)
		c->ex[i].reply->end_unsynced = c->ex[i].reply->end_deferred = false;
}

void commit_mark_synced(struct context *c)
{
	for (size_t i = 0; i < c->n_ex; i++) {
		struct reply *t = c->ex[i].reply;
		t->text_synced = t->text_saved;
		t->thinking_synced = t->thinking_saved;
	}
}

/* --- the commit threads --------------------------------------------------------- */

void commit_run(struct store *s)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	s->committers++;
	for (;;) {
		while (!s->commit_n && !s->commit_stop) {
			if (!s->away_n) {
				pthread_cond_wait(&s->commit_wake, &s->lock);
				continue;
			}
			struct timespec at;
			clock_gettime(CLOCK_REALTIME, &at);
			at.tv_nsec += AWAY_RETRY_MS * 1000000L;
			at.tv_sec += at.tv_nsec / 1000000000L;
			at.tv_nsec %= 1000000000L;
			if (pthread_cond_timedwait(&s->commit_wake, &s->lock, &at) != ETIMEDOUT)
				continue;
			store_retry_away(s, &n);
			store_unlock_notify(s, &n);
			pthread_mutex_lock(&s->lock);
		}
		if (!s->commit_n)
			break;
		struct context *c = loaded(s, s->commit_q[--s->commit_n]);
		if (!c)
			continue;
		c->sync_queued = false;
		if (c->syncing)
			continue; /* that sync began after the append: it covers it */
		commit_sync(s, &c, &n);
		store_unlock_notify(s, &n);
		pthread_mutex_lock(&s->lock);
	}
	s->committers--;
	pthread_mutex_unlock(&s->lock);
}

void commit_threads_stop(struct store *s)
{
	pthread_mutex_lock(&s->lock);
	s->commit_stop = true;
	pthread_cond_broadcast(&s->commit_wake);
	pthread_mutex_unlock(&s->lock);
}
