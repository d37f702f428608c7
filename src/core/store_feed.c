/* store_feed.c — a shared engine's changes, applied live (issue 16;
 * doc/design/shared-store.md §3): the catch-up of one loaded context and the
 * feed thread.
 *
 * Catch-up: the records other daemons appended after the context's applied
 * position (c->seq) are loaded with the store lock released, then applied in
 * order under it by the loader's apply step (context_apply_live), each only if
 * its seq is the next one (two catch-ups racing apply each record once).
 *
 * The feed thread (one per store, only on an engine with a feed): it polls the
 * engine's feed descriptor (and a stop pipe) with a 1 s timeout; a hint of a
 * loaded context catches it up; every second, and on a resync or an `id 0`
 * hint, storage_changes() from the feed position tells contexts created,
 * renamed, deleted (gone here as a local delete goes) and appended to (caught
 * up when loaded).  It takes only the store lock, never across an engine call,
 * and announces changes through the observers as a local change does.  It
 * also saves, every CHECKPOINT_MS, the text of the replies streaming here that
 * no event saved (feed_checkpoints): what other daemons stream from.
 *
 * A context is found by its engine id (slot->sid) by walking the slots: one
 * walk per hint.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "store_impl.h"

#define FEED_BATCH 256	     /* records loaded per storage_load call */
#define FEED_POLL_MS 1000    /* storage_changes at least this often */
#define FEED_HINTS 64	     /* hints drained per call */
#define FEED_CHANGES_MAX 512 /* contexts per storage_changes call */
#define FEED_RETRY_MS 50     /* a scan that left changes waiting reads again */

/* One record loaded without the lock. */
struct fetched {
	struct fetched *next;
	uint64_t seq;
	uint16_t type;
	size_t len;
	char data[];
};

struct fetch {
	struct fetched *head, **tail;
	size_t n;
};

static int on_fetched(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	struct fetch *f = data;
	struct fetched *r = malloc(sizeof(*r) + len + 1);
	if (!r)
		return -ENOMEM;
	r->next = NULL;
	r->seq = seq;
	r->type = type;
	r->len = len;
	memcpy(r->data, payload, len);
	r->data[len] = '\0';
	*f->tail = r;
	f->tail = &r->next;
	f->n++;
	return 0;
}

static void fetch_free(struct fetch *f)
{
	while (f->head) {
		struct fetched *r = f->head;
		f->head = r->next;
		free(r);
	}
	f->tail = &f->head;
	f->n = 0;
}

/* The loaded context of store id, or NULL (deleted, or unloaded). */
static struct context *loaded(struct store *s, uint64_t id)
{
	struct store_slot *slot = map_get_id(&s->by_id, id);
	return slot ? slot->ctx : NULL;
}

/* seq is one of c's own appends: it is applied already, only passed. */
static bool own_take(struct context *c, uint64_t seq)
{
	for (unsigned i = 0; i < c->n_own; i++)
		if (c->own[i] == seq) {
			c->own[i] = c->own[--c->n_own];
			c->seq = seq;
			return true;
		}
	return false;
}

int store_feed_catch_up(struct store *s, struct context **cp, struct notes *n)
{
	if (storage_feed_fd(s->st) < 0)
		return 0; /* one daemon's engine: nobody else appends */
	struct context *c = *cp;
	uint64_t id = c->id, sid = c->slot->sid;
	struct fetch f = {NULL, &f.head, 0};
	int r = 0;
	for (;;) {
		uint64_t after = c->seq, last = after;
		pthread_mutex_unlock(&s->lock);
		r = storage_load(s->st, sid, after, FEED_BATCH, on_fetched, &f, &last);
		pthread_mutex_lock(&s->lock);
		*cp = c = loaded(s, id);
		if (!c) {
			fetch_free(&f);
			return -ENOENT;
		}
		size_t got = f.n;
		for (struct fetched *x = f.head; r == 0 && x; x = x->next)
			if (x->seq == c->seq + 1 && !own_take(c, x->seq)) {
				r = context_apply_live(s, c, x->type, x->data, x->len, n);
				if (r == 0)
					c->seq = x->seq;
			}
		fetch_free(&f);
		if (r == -ENODATA)
			r = 0;
		if (r < 0 || got < FEED_BATCH || c->seq == after)
			return r;
	}
}

/* --- the feed thread ------------------------------------------------------------ */

static struct store_slot *slot_by_sid(struct store *s, uint64_t sid)
{
	for (size_t i = 0; i < s->by_id.nslots; i++)
		for (struct map_node *m = s->by_id.slots[i]; m; m = m->next) {
			struct store_slot *slot = m->value;
			if (slot->sid == sid && !slot->creating)
				return slot;
		}
	return NULL;
}

/* Catches up the context of engine id sid if it is loaded here and behind seq
 * (0: whatever it is behind). */
static void feed_catch_up(struct store *s, uint64_t sid, uint64_t seq)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct store_slot *slot = slot_by_sid(s, sid);
	struct context *c = slot ? slot->ctx : NULL;
	if (c && (seq == 0 || seq > c->seq)) {
		int r = store_feed_catch_up(s, &c, &n);
		if (r < 0 && r != -ENOENT)
			log_debug("feed: catching up context %llu: %s", (unsigned long long)sid,
				  strerror(-r));
	}
	store_unlock_notify(s, &n);
}

/* A context deleted elsewhere goes here as a local delete goes: its turns end
 * (no reader waits), its slot and memory are freed, observers are told. */
static void feed_forget(struct store *s, struct store_slot *slot, struct notes *n)
{
	uint64_t id = slot->id;
	map_del(&s->by_name, slot->name, strlen(slot->name));
	map_del_id(&s->by_id, id);
	struct context *c = slot->ctx;
	if (c) {
		c->open = false;
		reply_call_stop_all(s, c, "cancelled: the context was deleted", n);
		struct api_error e;
		api_error_clear(&e);
		api_error_set(&e, "cancelled", "cancelled: the context was deleted");
		for (size_t i = 0; i < c->n_ex; i++) {
			struct reply *t = c->ex[i].reply;
			if (t->state != REPLY_DONE && t->state != REPLY_FAILED)
				reply_end(s, t, REPLY_FAILED, &e, n);
		}
		commit_drop_ends(c);
		context_free(s, c);
	}
	store_slot_free(slot);
	notes_add(n, id, STORE_CHANGED_DELETED | STORE_CHANGED_OUTPUT);
}

/* Renamed elsewhere: the slot takes the new name unless a context here holds
 * it (then that one was renamed or deleted elsewhere too, and a later change
 * says so: this one waits for the next scan). */
static void feed_rename(struct store *s, struct store_slot *slot, const char *to, struct notes *n)
{
	if (map_get(&s->by_name, to, strlen(to)))
		return;
	char *copy = strdup(to);
	if (!copy || map_put(&s->by_name, to, strlen(to), slot) < 0) {
		free(copy);
		return;
	}
	map_del(&s->by_name, slot->name, strlen(slot->name));
	free(slot->name);
	slot->name = copy;
	notes_add(n, slot->id, STORE_CHANGED_RENAMED);
}

/* A change storage_changes() reported, copied: its callback runs inside the
 * engine's lock, which must not be held when the store lock is taken. */
struct change {
	uint64_t id, last_seq;
	char *name; /* heap; NULL: deleted */
};

struct scan {
	struct change *v;
	size_t n, cap;
};

static int on_change(void *data, const struct storage_context *sc)
{
	struct scan *l = data;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct change *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	char *name = sc->name ? strdup(sc->name) : NULL;
	if (sc->name && !name)
		return -ENOMEM;
	l->v[l->n++] = (struct change){sc->id, sc->last_seq, name};
	return 0;
}

/* Applies one change under the lock.  true: done; false: its name is still
 * another context's here (renamed or deleted elsewhere too, a later change
 * says so), or a local create, rename or delete came after the list was read
 * (names_gen is no longer gen: the list may undo it): scanned again from here
 * next time. */
static bool change_apply(struct store *s, const struct change *ch, uint64_t gen, bool *catch)
{
	struct notes n = {0};
	bool done = true;
	*catch = false;
	pthread_mutex_lock(&s->lock);
	if (s->names_gen != gen) { /* a local change since the list was read */
		pthread_mutex_unlock(&s->lock);
		return false;
	}
	struct store_slot *slot = slot_by_sid(s, ch->id);
	if (!ch->name) {
		if (slot)
			feed_forget(s, slot, &n);
	} else if (!slot) {
		if (store_name_check(ch->name, strlen(ch->name)) < 0)
			; /* not ours (as at start-up) */
		else if (!map_get(&s->by_name, ch->name, strlen(ch->name)) &&
			 (slot = store_slot_add(s, ch->name, ch->id)))
			notes_add(&n, slot->id, STORE_CHANGED_CREATED);
		else
			done = false;
	} else {
		if (strcmp(slot->name, ch->name)) {
			feed_rename(s, slot, ch->name, &n);
			done = !strcmp(slot->name, ch->name);
		}
		*catch = slot->ctx && ch->last_seq > slot->ctx->seq;
		if (!slot->ctx) { /* what a listing shows without loading: read again */
			slot->word[0] = '\0';
			cJSON_Delete(slot->meta);
			slot->meta = NULL;
			slot->meta_known = false;
			notes_add(&n, slot->id, STORE_CHANGED_STATE | STORE_CHANGED_META);
		}
	}
	store_unlock_notify(s, &n);
	return done;
}

/* storage_changes from the feed position, applied, with the catch-ups they
 * call for.  false: some wait (change_apply), to be read again soon. */
static bool feed_scan(struct store *s)
{
	uint64_t from = s->feed_pos;
	for (;;) {
		struct scan l = {NULL, 0, 0};
		uint64_t next = from;
		pthread_mutex_lock(&s->lock);
		uint64_t gen = s->names_gen;
		pthread_mutex_unlock(&s->lock);
		int r = storage_changes(s->st, from, FEED_CHANGES_MAX, on_change, &l, &next);
		if (r < 0)
			log_debug("feed: reading the changes: %s", strerror(-r));
		bool all = r == 0;
		for (size_t i = 0; i < l.n; i++) {
			bool catch = false;
			if (!all || !change_apply(s, &l.v[i], gen, &catch))
				all = false;
			if (catch)
				feed_catch_up(s, l.v[i].id, 0);
			free(l.v[i].name);
		}
		free(l.v);
		if (all && next > s->feed_pos)
			s->feed_pos = next;
		if (!all || l.n < FEED_CHANGES_MAX)
			return all;
		from = next;
	}
}

/* Other daemons see a reply through its checkpoints: text received and not
 * saved for CHECKPOINT_MS is saved now, even when no more comes for a while
 * (the API paused) and no reader here asked for it. */
static void feed_checkpoints(struct store *s)
{
	int64_t now = clock_mono_ms();
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->calls.nslots; i++)
		for (struct map_node *m = s->calls.slots[i]; m; m = m->next) {
			struct reply *t = m->value;
			if ((t->text_saved < t->text.len || t->thinking_saved < t->thinking.len) &&
			    now - t->saved_ms >= CHECKPOINT_MS)
				reply_checkpoint(t, false);
		}
	pthread_mutex_unlock(&s->lock);
}

static void *feed_main(void *arg)
{
	struct store *s = arg;
	int fd = storage_feed_fd(s->st);
	int64_t scanned = 0;
	for (;;) {
		struct pollfd pf[2] = {{s->feed_stop[0], POLLIN, 0}, {fd, POLLIN, 0}};
		int64_t wait = scanned + FEED_POLL_MS - clock_mono_ms();
		wait = wait > CHECKPOINT_MS ? CHECKPOINT_MS : wait;
		int k = poll(pf, 2, wait < 0 ? 0 : (int)wait);
		if (k > 0 && pf[0].revents)
			break;
		feed_checkpoints(s);
		struct storage_hint h[FEED_HINTS];
		bool resync = false, scan = clock_mono_ms() - scanned >= FEED_POLL_MS;
		int got = storage_feed_drain(s->st, h, FEED_HINTS, &resync);
		for (int i = 0; i < got; i++) {
			if (h[i].id == 0 || h[i].seq == 0)
				scan = true; /* a name changed: created, renamed, deleted */
			else
				feed_catch_up(s, h[i].id, h[i].seq);
		}
		if (scan || resync) {
			bool all = feed_scan(s);
			/* what waited is read again in FEED_RETRY_MS */
			scanned = clock_mono_ms() - (all ? 0 : FEED_POLL_MS - FEED_RETRY_MS);
		}
	}
	return NULL;
}

int store_feed_start(struct store *s)
{
	s->feed_stop[0] = s->feed_stop[1] = -1;
	if (storage_feed_fd(s->st) < 0)
		return 0;
	if (pipe2(s->feed_stop, O_CLOEXEC) < 0)
		return -errno;
	int r = pthread_create(&s->feed_thread, NULL, feed_main, s);
	if (r != 0) {
		close(s->feed_stop[0]);
		close(s->feed_stop[1]);
		s->feed_stop[0] = s->feed_stop[1] = -1;
		return -r;
	}
	s->feed_running = true;
	return 0;
}

void store_feed_stop(struct store *s)
{
	if (!s->feed_running)
		return;
	char b = 1;
	ssize_t w = write(s->feed_stop[1], &b, 1);
	(void)w;
	pthread_join(s->feed_thread, NULL);
	s->feed_running = false;
	close(s->feed_stop[0]);
	close(s->feed_stop[1]);
}
