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
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "store_impl.h"

#define LEASE_TICK_MS 250 /* the tick: waiting turns tried again, renewals */

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

/* --- who holds a lease --------------------------------------------------- */

/* The inode of this process's pid namespace: two pids name the same process
 * only within one. */
static unsigned long pid_ns(void)
{
	struct stat st;
	return stat("/proc/self/ns/pid", &st) == 0 ? (unsigned long)st.st_ino : 0;
}

/* host:pidns:pid:random, at most STORAGE_MAX_HOLDER - 1 bytes. */
static void lease_holder(char *out, size_t len)
{
	char host[65] = "";
	uint32_t rnd = 0;
	if (gethostname(host, sizeof(host) - 1) < 0 || !*host)
		snprintf(host, sizeof(host), "localhost");
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)clock_mono_ms() ^ ((uint32_t)getpid() << 16);
	snprintf(out, len, "%.24s:%lu:%ld:%08" PRIx32, host, pid_ns(), (long)getpid(), rnd);
}

/* Whether holder is a daemon of this host and pid namespace whose process no
 * longer runs (a daemon killed and started again): its lease is then broken
 * at once rather than left to expire.  A pid used again by another process
 * only makes this say "alive", and the lease expires as it would. */
static bool holder_dead(const char *holder, const char *mine)
{
	const char *a = strchr(holder, ':'), *b = strchr(mine, ':');
	if (!a || !b || a - holder != b - mine || memcmp(holder, mine, (size_t)(a - holder)))
		return false;
	char *end;
	unsigned long ns = strtoul(a + 1, &end, 10);
	if (*end != ':' || ns == 0 || ns != strtoul(b + 1, NULL, 10))
		return false;
	long pid = strtol(end + 1, &end, 10);
	if (*end != ':' || pid <= 0 || pid == (long)getpid())
		return false;
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* --- takeover: a remote turn whose daemon stopped (pg-plan §5) -------------- */

/* The turn that holds c's queue back when it is another daemon's, in flight
 * (or queued) there; NULL otherwise. */
static struct reply *remote_blocking(const struct context *c)
{
	if (c->lease_token || c->takeover_turn || c->next_send >= c->n_ex)
		return NULL;
	struct reply *t = c->ex[c->next_send].reply;
	if (!t->remote || t->state == REPLY_DONE || t->state == REPLY_FAILED)
		return NULL;
	return t;
}

struct probe {
	uint64_t id, sid, turn;
	unsigned attempt;
	int r;
	struct storage_lease l;
};

/* Every LEASE_SCAN_MS: for each loaded context held back by a remote turn,
 * the lease is tried.  Held by its daemon (-EBUSY): it lives.  Taken over (it
 * expired in that daemon's hands), or free for longer than the ttl with the
 * turn still open (its daemon died before or between calls): the pump ends
 * that turn interrupted, naming the daemon, and gives the lease back. */
static void lease_scan(struct store *s)
{
	size_t n = 0, cap = 0;
	struct probe *v = NULL;
	for (size_t i = 0; i < s->by_id.nslots; i++)
		for (struct map_node *m = s->by_id.slots[i]; m; m = m->next) {
			struct store_slot *slot = m->value;
			struct reply *t = slot->ctx ? remote_blocking(slot->ctx) : NULL;
			if (!t)
				continue;
			if (n == cap) {
				cap = cap ? 2 * cap : 8;
				struct probe *nv = realloc(v, cap * sizeof(*v));
				if (!nv)
					break;
				v = nv;
			}
			v[n++] = (struct probe){slot->id, slot->sid, t->number, t->attempt, 0, {0}};
		}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		v[i].r =
		    storage_lease_acquire(s->st, v[i].sid, s->lease.holder, LEASE_TTL_MS, &v[i].l);
		if (v[i].r == -EBUSY && holder_dead(v[i].l.prev_holder, s->lease.holder) &&
		    storage_lease_break(s->st, v[i].sid, v[i].l.prev_holder) == 0)
			v[i].r = storage_lease_acquire(s->st, v[i].sid, s->lease.holder,
						       LEASE_TTL_MS, &v[i].l);
	}
	struct notes notes = {0};
	pthread_mutex_lock(&s->lock);
	int64_t now = clock_mono_ms();
	for (size_t i = 0; i < n; i++) {
		struct probe *p = &v[i];
		struct store_slot *slot = map_get_id(&s->by_id, p->id);
		struct context *c = slot ? slot->ctx : NULL;
		struct reply *t = c ? remote_blocking(c) : NULL;
		bool same = t && t->number == p->turn && t->attempt == p->attempt;
		if (p->r == -EBUSY || p->r < 0) {
			if (c && p->r == -EBUSY)
				c->lease_free_ms = 0;
			continue;
		}
		bool dead = p->l.took_over;
		if (same && !dead) {
			if (!c->lease_free_ms)
				c->lease_free_ms = now;
			dead = now - c->lease_free_ms >= LEASE_TTL_MS;
		}
		if (!same || !dead || lease_watch(s, c->id) < 0) {
			storage_lease_release(s->st, p->sid, p->l.token);
			continue;
		}
		c->lease_token = p->l.token;
		c->lease_renewed_ms = now;
		c->lease_free_ms = 0;
		c->takeover_turn = p->turn;
		c->takeover_attempt = p->attempt;
		snprintf(c->takeover_from, sizeof(c->takeover_from), "%s",
			 p->l.took_over ? p->l.prev_holder : "");
		/* what the stopped daemon saved before it went, then its end */
		if (s->hooks.catch_up(s, &c, &notes) == 0 && c)
			s->hooks.pump(s, c, &notes);
		store_unlock_notify(s, &notes);
		pthread_mutex_lock(&s->lock);
	}
	free(v);
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
		ts.tv_nsec += LEASE_TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->lease.wake, &s->lock, &ts);
		if (!s->lease.stop)
			lease_tick(s);
		if (!s->lease.stop && clock_mono_ms() - s->lease.scanned_ms >= LEASE_SCAN_MS) {
			lease_scan(s);
			s->lease.scanned_ms = clock_mono_ms();
		}
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
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
	/* The thread takes no signal: a daemon that waits for its stop signals
	 * with sigwait() may open the store before it blocks them. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int r = pthread_create(&L->thread, NULL, lease_thread, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
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
