/* store_lease.c — the call lease around a context's calls, on a shared engine
 * (storage.h: lease_acquire/_renew/_release; doc/design/shared-store.md §4):
 * one call at a time per context across every daemon of the store.
 *
 * A call starts only with the context's lease held (store_lease_take, from
 * reply_call.c's reply_start): held by another daemon, the turn stays queued
 * and is tried again by this file's tick (every second) or by the next pump.
 * While a call runs the tick renews the lease every LEASE_RENEW_MS; a renew
 * that finds it taken over (-ESTALE: this daemon stalled past the ttl and
 * another marked the turn interrupted) flags the context (lease_lost) and
 * pumps it, and the pump ends the call failed.  The lease is given back when
 * the context has no call in flight (store_lease_idle).
 *
 * The engine is called with the store lock held for acquire and release (as
 * appends are), without it for the tick's renewals.  An engine without leases
 * (the state dir, the in-memory one): nothing here runs, every call is a no-op.
 * Calls from below go through s->hooks (no circle with reply_call.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "store_impl.h"

#define LEASE_TICK_MS 1000 /* the tick: waiting turns tried again, renewals */

static bool lease_on(const struct store *s)
{
	return s->lease.on;
}

/* Keeps c's id in the tick's list (holding or waiting); -ENOMEM. */
static int lease_watch(struct store *s, uint64_t id)
{
	struct store_lease *L = &s->lease;
	for (size_t i = 0; i < L->n; i++)
		if (L->ids[i] == id)
			return 0;
	if (L->n == L->cap) {
		size_t cap = L->cap ? 2 * L->cap : 8;
		uint64_t *v = realloc(L->ids, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		L->ids = v;
		L->cap = cap;
	}
	L->ids[L->n++] = id;
	return 0;
}

static void lease_unwatch(struct store *s, uint64_t id)
{
	struct store_lease *L = &s->lease;
	for (size_t i = 0; i < L->n; i++)
		if (L->ids[i] == id) {
			L->ids[i] = L->ids[--L->n];
			return;
		}
}

int store_lease_take(struct store *s, struct context *c, char *why, size_t whylen)
{
	if (!lease_on(s) || c->lease_token)
		return 0;
	struct storage_lease l;
	int r = storage_lease_acquire(s->st, c->slot->sid, s->lease.holder, LEASE_TTL_MS, &l);
	if (r == -EBUSY) {
		c->lease_wait = true;
		if (lease_watch(s, c->id) < 0) {
			snprintf(why, whylen, "out of memory");
			return -ENOMEM;
		}
		log_debug("context %" PRIu64 ": the call waits for the lease (%s holds it)", c->id,
			  l.prev_holder);
		return 1;
	}
	if (r < 0) {
		snprintf(why, whylen, "cannot take the context's call lease: %s", strerror(-r));
		return r;
	}
	if (lease_watch(s, c->id) < 0) {
		storage_lease_release(s->st, c->slot->sid, l.token);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	c->lease_wait = false;
	c->lease_lost = false;
	c->lease_token = l.token;
	c->lease_renewed_ms = clock_mono_ms();
	return 0;
}

void store_lease_idle(struct store *s, struct context *c)
{
	if (!lease_on(s) || c->active)
		return;
	if (c->lease_token)
		storage_lease_release(s->st, c->slot->sid, c->lease_token);
	c->lease_token = 0;
	c->lease_lost = false;
	if (!c->lease_wait)
		lease_unwatch(s, c->id);
}

void store_lease_forget(struct store *s, struct context *c)
{
	if (!lease_on(s))
		return;
	c->lease_token = 0;
	c->lease_wait = false;
	lease_unwatch(s, c->id);
}

struct renewal {
	uint64_t id, sid, token;
	int r;
};

/* The leases due for renewal, taken under the lock; *n of them (heap). */
static struct renewal *lease_due(struct store *s, size_t *n)
{
	struct store_lease *L = &s->lease;
	int64_t now = clock_mono_ms();
	struct renewal *v = L->n ? calloc(L->n, sizeof(*v)) : NULL;
	*n = 0;
	for (size_t i = 0; v && i < L->n; i++) {
		struct store_slot *slot = map_get_id(&s->by_id, L->ids[i]);
		struct context *c = slot ? slot->ctx : NULL;
		if (c && c->lease_token && now - c->lease_renewed_ms >= LEASE_RENEW_MS)
			v[(*n)++] = (struct renewal){c->id, slot->sid, c->lease_token, 0};
	}
	return v;
}

/* One tick: renewals without the lock, then under it the contexts whose
 * lease was lost or that wait for one are pumped. */
static void lease_tick(struct store *s)
{
	size_t n;
	struct renewal *v = lease_due(s, &n);
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < n; i++)
		v[i].r = storage_lease_renew(s->st, v[i].sid, v[i].token, LEASE_TTL_MS);
	struct notes notes = {0};
	pthread_mutex_lock(&s->lock);
	int64_t now = clock_mono_ms();
	for (size_t i = 0; i < n; i++) {
		struct store_slot *slot = map_get_id(&s->by_id, v[i].id);
		struct context *c = slot ? slot->ctx : NULL;
		if (!c || c->lease_token != v[i].token)
			continue;
		if (v[i].r == 0)
			c->lease_renewed_ms = now;
		else if (v[i].r == -ESTALE)
			c->lease_lost = true; /* the pump ends its call */
		else
			log_debug("context %" PRIu64 ": renewing the call lease: %s", c->id,
				  strerror(-v[i].r));
	}
	free(v);
	/* Pumped: a lost lease ends its call; a waiting turn tries again. */
	for (size_t i = 0; i < s->lease.n; i++) {
		uint64_t id = s->lease.ids[i];
		struct store_slot *slot = map_get_id(&s->by_id, id);
		struct context *c = slot ? slot->ctx : NULL;
		if (!c) {
			lease_unwatch(s, id);
			i--;
		} else if (c->lease_lost || c->lease_wait) {
			c->lease_wait = false;
			s->hooks.pump(s, c, &notes);
		}
		if (notes.n >= NOTES_MAX - 1) {
			store_unlock_notify(s, &notes);
			pthread_mutex_lock(&s->lock);
		}
	}
	store_unlock_notify(s, &notes);
	pthread_mutex_lock(&s->lock);
}

static void *lease_thread(void *arg)
{
	struct store *s = arg;
	pthread_mutex_lock(&s->lock);
	while (!s->lease.stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += LEASE_TICK_MS / 1000;
		pthread_cond_timedwait(&s->lease.wake, &s->lock, &ts);
		if (!s->lease.stop)
			lease_tick(s);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* host:pid:random, at most STORAGE_MAX_HOLDER - 1 bytes. */
static void lease_holder(char *out, size_t len)
{
	char host[65] = "";
	uint32_t rnd = 0;
	if (gethostname(host, sizeof(host) - 1) < 0 || !*host)
		snprintf(host, sizeof(host), "localhost");
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)clock_mono_ms() ^ ((uint32_t)getpid() << 16);
	snprintf(out, len, "%.40s:%ld:%08" PRIx32, host, (long)getpid(), rnd);
}

int store_lease_start(struct store *s)
{
	struct store_lease *L = &s->lease;
	if (!s->st->ops->lease_acquire || storage_feed_fd(s->st) < 0)
		return 0;
	lease_holder(L->holder, sizeof(L->holder));
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&L->wake, &a);
	pthread_condattr_destroy(&a);
	L->on = true;
	int r = pthread_create(&L->thread, NULL, lease_thread, s);
	if (r != 0) {
		pthread_cond_destroy(&L->wake);
		L->on = false;
		return -r;
	}
	L->running = true;
	return 0;
}

void store_lease_stop(struct store *s)
{
	struct store_lease *L = &s->lease;
	if (!L->on)
		return;
	if (L->running) {
		pthread_mutex_lock(&s->lock);
		L->stop = true;
		pthread_cond_broadcast(&L->wake);
		pthread_mutex_unlock(&s->lock);
		pthread_join(L->thread, NULL);
		L->running = false;
	}
	/* Given back, so that another daemon does not wait for their expiry. */
	for (size_t i = 0; i < L->n; i++) {
		struct store_slot *slot = map_get_id(&s->by_id, L->ids[i]);
		struct context *c = slot ? slot->ctx : NULL;
		if (c && c->lease_token)
			storage_lease_release(s->st, slot->sid, c->lease_token);
	}
	free(L->ids);
	L->ids = NULL;
	L->n = L->cap = 0;
	pthread_cond_destroy(&L->wake);
	L->on = false;
}
