/* store.c — the set of contexts by name and id (slots, loaded or not), the
 * lock, the observers and the notes they are told after unlocking, the
 * transport, the info lines, and the disk space reserved for messages being
 * written (store_reserve, see store.h).  The bottom of the core's object
 * files: it calls only the leaves and the storage engine (storage.h), plus
 * s->hooks.load to load a context store_get() has not loaded (store_impl.h,
 * struct store_hooks).  Opening and freeing the store, creating and deleting
 * contexts, the defaults and `.status` are store_open.c's.  Slots have the
 * store's own ids; slot->sid is the engine's.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "store_impl.h"

void notes_add(struct notes *n, uint64_t id, unsigned what)
{
	for (int i = 0; i < n->n; i++)
		if (n->id[i] == id) {
			n->what[i] |= what;
			return;
		}
	if (n->n == NOTES_MAX) {
		/* Full: what is added to the last slot's bits, so that context
		 * is told of more than changed, and id is told nothing: its
		 * change is lost.  The callers note one context, or a few, under
		 * one hold of the lock. */
		n->what[NOTES_MAX - 1] |= what;
		return;
	}
	n->id[n->n] = id;
	n->what[n->n] = what;
	n->n++;
}

void store_unlock_notify(struct store *s, struct notes *n)
{
	for (int i = 0; i < s->held.n; i++)
		notes_add(n, s->held.id[i], s->held.what[i]);
	s->held.n = 0;
	/* Every change announced is a change for the rendering cache too (the
	 * functions that change a context also say so themselves; text growing
	 * in `output` alone changes no cached view). */
	for (int i = 0; i < n->n; i++) {
		struct store_slot *slot = map_get_id(&s->by_id, n->id[i]);
		if (slot && slot->ctx && (n->what[i] & ~STORE_CHANGED_OUTPUT))
			context_changed(slot->ctx);
	}
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < n->n; i++)
		for (int k = 0; k < s->n_obs; k++)
			s->obs[k].fn(s->obs[k].data, n->id[i], n->what[i]);
	n->n = 0;
}

void store_slot_free(struct store_slot *slot)
{
	cJSON_Delete(slot->meta);
	free(slot->name);
	free(slot);
}

/* Adds a slot for a context found on disk or just created: not loaded. */
struct store_slot *store_slot_add(struct store *s, const char *name, uint64_t sid)
{
	struct store_slot *slot = calloc(1, sizeof(*slot));
	if (!slot)
		return NULL;
	slot->id = ++s->next_id;
	slot->sid = sid;
	slot->name = strdup(name);
	if (!slot->name || map_put(&s->by_name, name, strlen(name), slot) < 0) {
		store_slot_free(slot);
		return NULL;
	}
	if (map_put_id(&s->by_id, slot->id, slot) < 0) {
		map_del(&s->by_name, name, strlen(name));
		store_slot_free(slot);
		return NULL;
	}
	return slot;
}

const char *store_state_dir(struct store *s)
{
	return s->where ? s->where : "(in memory)";
}

void store_set_transport(struct store *s, const struct transport_ops *ops, void *impl)
{
	pthread_mutex_lock(&s->lock);
	s->ops = ops;
	s->ops_impl = impl;
	pthread_mutex_unlock(&s->lock);
}

int store_observe(struct store *s, store_observer_fn *fn, void *data)
{
	if (s->n_obs == STORE_OBSERVERS)
		return -ENOSPC;
	s->obs[s->n_obs].fn = fn;
	s->obs[s->n_obs].data = data;
	s->n_obs++;
	return 0;
}

void store_set_info(struct store *s, const char *key, const char *value)
{
	pthread_mutex_lock(&s->lock);
	int i;
	for (i = 0; i < INFO_KEYS && s->info_key[i][0]; i++)
		if (!strcmp(s->info_key[i], key))
			break;
	if (i < INFO_KEYS) {
		snprintf(s->info_key[i], sizeof(s->info_key[i]), "%s", key);
		snprintf(s->info_val[i], sizeof(s->info_val[i]), "%s", value);
	}
	pthread_mutex_unlock(&s->lock);
}

/* A slot being created is waited for (store_create). */
struct store_slot *store_slot_wait(struct store *s, struct store_slot *slot, uint64_t id)
{
	while (slot && slot->creating) {
		pthread_cond_wait(&s->synced, &s->lock);
		slot = map_get_id(&s->by_id, id);
	}
	return slot;
}

struct context *store_get(struct store *s, uint64_t id)
{
	struct store_slot *slot = store_slot_wait(s, map_get_id(&s->by_id, id), id);
	if (!slot || (!slot->ctx && s->hooks.load(s, slot) < 0))
		return NULL;
	return slot->ctx;
}

int store_load(struct store *s, struct store_slot *slot)
{
	uint64_t id = slot->id;
	slot = store_slot_wait(s, slot, id);
	if (!slot)
		return -ENOENT;
	return slot->ctx ? 0 : s->hooks.load(s, slot);
}

struct store_slot *store_slot_reserve(struct store *s, const char *name)
{
	struct store_slot *slot = store_slot_add(s, name, 0);
	if (slot)
		slot->creating = true;
	return slot;
}

void store_slot_settle(struct store *s, uint64_t slot_id, uint64_t sid, int r)
{
	struct store_slot *slot = map_get_id(&s->by_id, slot_id);
	slot->creating = false;
	slot->sid = sid;
	s->names_gen++; /* store_feed.c */
	pthread_cond_broadcast(&s->synced);
	if (r < 0) {
		map_del(&s->by_name, slot->name, strlen(slot->name));
		map_del_id(&s->by_id, slot->id);
		store_slot_free(slot);
	}
}

int store_rename(struct store *s, const char *from, const char *to)
{
	int r = store_name_check(to, strlen(to));
	if (r < 0)
		return r;
	struct notes notes = {0};
	pthread_mutex_lock(&s->lock);
	struct store_slot *c = map_get(&s->by_name, from, strlen(from));
	if (c && c->creating)
		c = store_slot_wait(s, c, c->id);
	if (!c)
		r = -ENOENT;
	else if (!strcmp(from, to))
		r = 0;
	else if (map_get(&s->by_name, to, strlen(to)))
		r = -EEXIST;
	else
		r = storage_rename(s->st, c->sid, to);
	if (r < 0 || !strcmp(from, to)) {
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	char *copy = strdup(to);
	map_del(&s->by_name, from, strlen(from));
	if (!copy || map_put(&s->by_name, to, strlen(to), c) < 0) {
		/* Out of memory after the rename on disk: keep the old name in
		 * memory; the next mount sees the new one. */
		free(copy);
		map_put(&s->by_name, from, strlen(from), c);
		pthread_mutex_unlock(&s->lock);
		storage_names_sync(s->st);
		return -ENOMEM;
	}
	free(c->name);
	c->name = copy;
	s->names_gen++; /* store_feed.c */
	notes_add(&notes, c->id, STORE_CHANGED_RENAMED);
	store_unlock_notify(s, &notes);
	storage_names_sync(s->st); /* durable before it returns, without the lock */
	return 0;
}

int store_lookup(struct store *s, const char *name, uint64_t *id)
{
	pthread_mutex_lock(&s->lock);
	struct store_slot *c = map_get(&s->by_name, name, strlen(name));
	if (c)
		*id = c->id;
	pthread_mutex_unlock(&s->lock);
	return c ? 0 : -ENOENT;
}

int store_name(struct store *s, uint64_t id, char *out, size_t outlen)
{
	pthread_mutex_lock(&s->lock);
	struct store_slot *c = map_get_id(&s->by_id, id);
	int r = !c ? -ENOENT : strlen(c->name) >= outlen ? -ENAMETOOLONG : 0;
	if (r == 0)
		strcpy(out, c->name);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_entry *)a)->name, ((const struct store_entry *)b)->name);
}

int store_list(struct store *s, struct store_entry **ret, size_t *n)
{
	pthread_mutex_lock(&s->lock);
	size_t count = s->by_id.count, k = 0;
	struct store_entry *e = calloc(count ? count : 1, sizeof(*e));
	for (size_t i = 0; e && i < s->by_id.nslots; i++)
		for (struct map_node *node = s->by_id.slots[i]; node; node = node->next) {
			struct store_slot *c = node->value;
			e[k].id = c->id;
			e[k].name = strdup(c->name);
			if (!e[k++].name) {
				store_list_free(e, k);
				e = NULL;
				break;
			}
		}
	pthread_mutex_unlock(&s->lock);
	if (!e)
		return -ENOMEM;
	qsort(e, k, sizeof(*e), entry_cmp);
	*ret = e;
	*n = k;
	return 0;
}

void store_list_free(struct store_entry *e, size_t n)
{
	for (size_t i = 0; e && i < n; i++)
		free(e[i].name);
	free(e);
}

void store_refuse(struct store *s, const char *why)
{
	pthread_mutex_lock(&s->lock);
	snprintf(s->refused, sizeof(s->refused), "%s", why);
	s->refused_ms = clock_wall_ms();
	pthread_mutex_unlock(&s->lock);
}

size_t store_calls_in_flight(struct store *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->calls.count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* --- space for messages being written ------------------------------------------ */

#define RESERVE_PAGE 4096u    /* the unit file systems allocate in */
#define RESERVE_OVERHEAD 512u /* a record's frame and JSON around the text */

uint64_t store_text_cost(const char *text, size_t len)
{
	/* cJSON's escapes: two bytes for these, \u00XX for other controls. */
	uint64_t n = len;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)text[i];
		if (ch == '"' || ch == '\\' || ch == '\b' || ch == '\f' || ch == '\n' ||
		    ch == '\r' || ch == '\t')
			n += 1;
		else if (ch < 0x20)
			n += 5;
	}
	return n;
}

/* Shrinks what the engine holds to what is still held; under the lock. */
static void reserve_set(struct store *s, uint64_t total)
{
	s->reserved = total;
	int r = storage_reserve(s->st, total);
	if (r < 0)
		log_debug("reserve: cannot shrink to %llu bytes: %s", (unsigned long long)total,
			  strerror(-r));
}

void store_reserve_give_back(struct store *s, uint64_t *held)
{
	if (*held)
		reserve_set(s, s->reserved - *held);
	*held = 0;
}

int store_reserve(struct store *s, uint64_t *held, uint64_t bytes)
{
	uint64_t want = (bytes + RESERVE_OVERHEAD + RESERVE_PAGE - 1) / RESERVE_PAGE * RESERVE_PAGE;
	if (want <= *held)
		return 0;
	pthread_mutex_lock(&s->lock);
	uint64_t total = s->reserved - *held + want;
	/* The engine holds the space (the state dir: an unlinked file it
	 * fallocates); one that cannot promises nothing, and the close finds a
	 * full disk as it always did. */
	int r = storage_reserve(s->st, total);
	if (r == 0) {
		s->reserved = total;
		*held = want;
	} else if (r == -ENOSPC || r == -EDQUOT) {
		/* the engine dropped what a failed allocation left */
	} else if (r == -EIO && storage_status(s->st, NULL, 0) == 0) {
		/* a shared engine whose database is away: refused at once */
	} else {
		log_debug("reserve: %s", strerror(-r));
		r = 0; /* a file system without the call: no promise, as above */
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

void store_unreserve(struct store *s, uint64_t *held)
{
	if (!*held)
		return;
	pthread_mutex_lock(&s->lock);
	store_reserve_give_back(s, held);
	pthread_mutex_unlock(&s->lock);
}
