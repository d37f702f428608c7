/* store_open.c — the store's life and its whole-store verbs: opening it on a
 * storage engine (the defaults, the contexts listed without loading, the
 * Models API's and the response cache's saved state), freeing it, creating
 * and deleting a context, the root `.config` and `.status` (see store.h).
 * The top of the core: it calls everything below it (store.c's registry,
 * context_load.c, the turns' calls) and installs the two hooks through which
 * store.c and store_models.c call back up (store_impl.h, struct store_hooks).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "store_impl.h"

/* A slot and its loaded context, if any: the store is freed or it was deleted. */
static void slot_drop(struct store *s, struct store_slot *slot)
{
	context_free(s, slot->ctx);
	store_slot_free(slot);
}
static int on_listed(void *data, const struct storage_context *sc)
{
	struct store *s = data;
	if (sc->change > s->feed_pos)
		s->feed_pos = sc->change; /* the feed's changes start after it */
	if (store_name_check(sc->name, strlen(sc->name)) < 0)
		return 0; /* not ours */
	return store_slot_add(s, sc->name, sc->id) ? 0 : -ENOMEM;
}

static int load_defaults(struct store *s, const char *cli, char *why, size_t whylen)
{
	settings_init(&s->defaults);
	s->rcache_bytes = RCACHE_BYTES_DEFAULT;
	void *text = NULL;
	size_t n = 0;
	if (storage_defaults_get(s->st, &text, &n) == 0) {
		char w[256];
		if (n > 0 &&
		    store_defaults_parse(&s->defaults, &s->rcache_bytes, text, n, w, sizeof(w)) < 0)
			log_debug("ignoring saved defaults in '%s/config': %s", store_state_dir(s),
				  w);
		free(text);
	}
	if (cli &&
	    store_defaults_parse(&s->defaults, &s->rcache_bytes, cli, strlen(cli), why, whylen) < 0)
		return -EINVAL;
	return 0;
}

int store_open_on(struct storage *st, const char *where, const char *defaults_text,
		  struct store **ret, char *why, size_t whylen)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (where && !(s->where = strdup(where))) {
		free(s);
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->defaults_lock, NULL);
	pthread_cond_init(&s->synced, NULL);
	pthread_cond_init(&s->commit_wake, NULL);
	store_models_init(s);
	map_init(&s->by_name);
	map_init(&s->by_id);
	map_init(&s->calls);
	s->hooks.load = context_load;
	s->hooks.pump = reply_call_pump;
	s->hooks.catch_up = store_feed_catch_up;
	s->st = st;
	s->started_ms = clock_wall_ms();
	int r = load_defaults(s, defaults_text, why, whylen);
	if (r == 0) {
		store_models_load(s);
		store_rcache_open(s);
	}
	if (r == 0) {
		r = storage_list(st, on_listed, s);
		if (r < 0)
			snprintf(why, whylen, "cannot list the contexts: %s", strerror(-r));
	}
	if (r < 0) {
		s->st = NULL; /* the caller's still */
		store_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

int store_start(struct store *s, char *why, size_t whylen)
{
	int r = storage_start(s->st);
	if (r < 0)
		snprintf(why, whylen, "cannot start the store's listener: %s", strerror(-r));
	if (r == 0 && (r = store_feed_start(s)) < 0)
		snprintf(why, whylen, "cannot start the change feed: %s", strerror(-r));
	if (r == 0 && (r = store_lease_start(s)) < 0)
		snprintf(why, whylen, "cannot start the lease thread: %s", strerror(-r));
	return r;
}

int store_open(const char *state_dir, const char *defaults_text, struct store **ret, char *why,
	       size_t whylen)
{
	struct storage *st = NULL;
	int r = storage_dir_new(state_dir, 0, &st, why, whylen);
	if (r == 0 && (r = store_open_on(st, state_dir, defaults_text, ret, why, whylen)) < 0)
		storage_free(st);
	if (r == 0)
		(*ret)->own_st = true;
	return r;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	store_feed_stop(s); /* first: it walks the slots */
	store_lease_stop(s);
	for (size_t i = 0; i < s->by_id.nslots; i++)
		for (struct map_node *n = s->by_id.slots[i]; n; n = n->next)
			slot_drop(s, n->value);
	/* Calls the transport never ended (it was stopped first) hold a reference. */
	for (size_t i = 0; i < s->calls.nslots; i++)
		for (struct map_node *n = s->calls.slots[i]; n; n = n->next)
			reply_unref(NULL, n->value);
	store_models_done(s);
	rcache_free(s->rcache);
	prices_done(&s->prices);
	map_done(&s->by_name);
	map_done(&s->by_id);
	map_done(&s->calls);
	if (s->own_st)
		storage_free(s->st);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->defaults_lock);
	pthread_cond_destroy(&s->synced);
	pthread_cond_destroy(&s->commit_wake);
	free(s->commit_q);
	free(s->away_q);
	free(s->where);
	free(s);
}

int store_create(struct store *s, const char *name, uint64_t *id)
{
	size_t len = strlen(name);
	int r = store_name_check(name, len);
	if (r < 0)
		return r;
	struct notes notes = {0};
	pthread_mutex_lock(&s->lock);
	if (map_get(&s->by_name, name, len)) {
		pthread_mutex_unlock(&s->lock);
		return -EEXIST;
	}
	struct store_slot *slot = store_slot_add(s, name, 0);
	if (!slot) {
		pthread_mutex_unlock(&s->lock);
		return -ENOMEM;
	}
	/* The context with its CREATE record is made durable without the lock
	 * (storage_create commits); meanwhile the name is taken and whoever
	 * wants the context waits. */
	slot->creating = true;
	uint64_t id0 = slot->id, sid = 0;
	struct settings st = store_context_defaults(s);
	pthread_mutex_unlock(&s->lock);
	int64_t created = clock_wall_ms();
	char *text = context_create_payload(&st, created);
	r = text ? storage_create(s->st, name, created, text, strlen(text), &sid) : -ENOMEM;
	free(text); /* ENOSPC when full */
	pthread_mutex_lock(&s->lock);
	slot = map_get_id(&s->by_id, id0); /* neither deleted nor renamed meanwhile */
	slot->creating = false;
	slot->sid = sid;
	s->names_gen++; /* store_feed.c */
	pthread_cond_broadcast(&s->synced);
	if (r == 0)
		context_adopt(s, slot, &st, created); /* out of memory: it loads at first use */
	if (r < 0) {
		map_del(&s->by_name, name, len);
		map_del_id(&s->by_id, slot->id);
		store_slot_free(slot);
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	if (id)
		*id = slot->id;
	notes_add(&notes, slot->id, STORE_CHANGED_CREATED);
	store_unlock_notify(s, &notes);
	return 0;
}

/* A message still being written has no call to cancel, yet readers of `output`
 * already wait for its reply: end it, so that none of them waits forever. */
static void store_end_drafts(struct store *s, struct context *c, struct notes *n)
{
	struct api_error e;
	api_error_clear(&e);
	api_error_set(&e, "cancelled", "cancelled: the context was deleted");
	for (size_t i = 0; i < c->n_ex; i++)
		if (c->ex[i].reply->state == REPLY_PENDING)
			reply_end(s, c->ex[i].reply, REPLY_FAILED, &e, n);
}

int store_delete(struct store *s, const char *name)
{
	struct notes notes = {0};
	pthread_mutex_lock(&s->lock);
	struct store_slot *slot = map_get(&s->by_name, name, strlen(name));
	if (slot && slot->creating)
		slot = store_slot_wait(s, slot, slot->id); /* then deleted, or failed */
	if (!slot) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	/* Gone from the engine (its records, its directory and blob links), so
	 * nothing more is written to it. */
	int r = storage_remove(s->st, slot->sid);
	if (r < 0) {
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	map_del(&s->by_name, name, strlen(name));
	map_del_id(&s->by_id, slot->id);
	s->names_gen++; /* store_feed.c */
	uint64_t id = slot->id;
	/* End every live turn, so no reader waits. */
	struct context *c = slot->ctx;
	if (c) {
		c->open = false;
		reply_call_stop_all(s, c, "cancelled: the context was deleted", &notes);
		store_end_drafts(s, c, &notes);
		commit_drop_ends(c);
	}
	slot_drop(s, slot);
	notes_add(&notes, id, STORE_CHANGED_DELETED | STORE_CHANGED_OUTPUT);
	store_unlock_notify(s, &notes);
	storage_names_sync(s->st); /* durable before it returns, without the lock */
	return 0;
}

int store_render_defaults(struct store *s, struct buf *out)
{
	pthread_mutex_lock(&s->lock);
	int r = settings_render(&s->defaults, out);
	if (r == 0)
		r = store_rcache_render(s, s->rcache_bytes, out);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Saves the root config through the engine (durable on return). */
static int save_defaults(struct store *s, const struct settings *d, int64_t bytes)
{
	struct buf b;
	buf_init(&b, SETTINGS_TEXT_MAX);
	int r = settings_render(d, &b);
	if (r == 0)
		r = store_rcache_render(s, bytes, &b);
	if (r == 0)
		r = storage_defaults_set(s->st, b.data ? b.data : "", b.len);
	buf_done(&b);
	return r;
}

/* Saved under defaults_lock, not the store lock: its fsyncs hold no context. */
int store_set_defaults(struct store *s, const char *text, size_t len, char *why, size_t whylen)
{
	struct settings d;
	int64_t bytes;
	pthread_mutex_lock(&s->defaults_lock);
	pthread_mutex_lock(&s->lock);
	d = s->defaults;
	bytes = s->rcache_bytes;
	pthread_mutex_unlock(&s->lock);
	char old[SETTINGS_MODEL_MAX + 1];
	memcpy(old, d.model, sizeof(old));
	int r = store_defaults_parse(&d, &bytes, text, len, why, whylen);
	if (r == 0)
		r = settings_check(&d, why, whylen);
	if (r == 0)
		r = store_model_check(s, old, d.model, why, whylen);
	if (r == 0) {
		r = save_defaults(s, &d, bytes);
		if (r < 0)
			snprintf(why, whylen, "cannot save '%s/config': %s", store_state_dir(s),
				 strerror(-r));
	}
	if (r == 0) {
		pthread_mutex_lock(&s->lock);
		s->defaults = d;
		s->rcache_bytes = bytes;
		if (s->rcache)
			rcache_set_max(s->rcache, bytes);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_unlock(&s->defaults_lock);
	return r;
}

int store_render_status(struct store *s, struct buf *out)
{
	pthread_mutex_lock(&s->lock);
	char since[32];
	clock_format_utc(s->started_ms, since);
	int r =
	    buf_printf(out,
		       "version: %s\nstate_dir: %s\ncontexts: %zu\ncalls_in_flight: %zu\n"
		       "started: %s\n",
		       MCPFS_VERSION, store_state_dir(s), s->by_id.count, s->calls.count, since);
	for (int i = 0; r == 0 && i < INFO_KEYS && s->info_key[i][0]; i++)
		r = buf_printf(out, "%s: %s\n", s->info_key[i], s->info_val[i]);
	if (r == 0 && s->refused[0]) {
		char when[32];
		clock_format_utc(s->refused_ms, when);
		r = buf_printf(out, "last_refused: %s (at %s)\n", s->refused, when);
	}
	char store_line[600];
	if (r == 0 && storage_status(s->st, store_line, sizeof(store_line)) == 0)
		r = buf_printf(out, "store: %s\n", store_line); /* a shared engine only */
	if (r == 0)
		r = store_rcache_status(s, out);
	pthread_mutex_unlock(&s->lock);
	return r;
}
