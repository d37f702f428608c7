/* map.c — chained hash map (see map.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "mcpfs/map.h"

void map_init(struct map *m)
{
	m->slots = NULL;
	m->nslots = 0;
	m->count = 0;
}

void map_done(struct map *m)
{
	for (size_t i = 0; i < m->nslots; i++) {
		struct map_node *n = m->slots[i];
		while (n) {
			struct map_node *next = n->next;
			free(n);
			n = next;
		}
	}
	free(m->slots);
	map_init(m);
}

static struct map_node **map_find(const struct map *m, const void *key, size_t klen, uint64_t hash)
{
	struct map_node **pp = &m->slots[hash & (m->nslots - 1)];
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == hash && (*pp)->klen == klen && !memcmp((*pp)->key, key, klen))
			return pp;
	return pp;
}

void *map_get(const struct map *m, const void *key, size_t klen)
{
	if (!m->nslots)
		return NULL;
	struct map_node **pp = map_find(m, key, klen, XXH3_64bits(key, klen));
	return *pp ? (*pp)->value : NULL;
}

/* Doubles the slot array once the load factor passes 1. */
static int map_grow(struct map *m)
{
	size_t n = m->nslots ? m->nslots * 2 : 64;
	struct map_node **slots = calloc(n, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < m->nslots; i++) {
		struct map_node *node = m->slots[i];
		while (node) {
			struct map_node *next = node->next;
			node->next = slots[node->hash & (n - 1)];
			slots[node->hash & (n - 1)] = node;
			node = next;
		}
	}
	free(m->slots);
	m->slots = slots;
	m->nslots = n;
	return 0;
}

int map_put(struct map *m, const void *key, size_t klen, void *value)
{
	if (m->count >= m->nslots && map_grow(m) < 0)
		return -ENOMEM;
	uint64_t hash = XXH3_64bits(key, klen);
	struct map_node **pp = map_find(m, key, klen, hash);
	if (*pp)
		return -EEXIST;
	struct map_node *n = malloc(sizeof(*n) + klen + 1);
	if (!n)
		return -ENOMEM;
	n->next = NULL;
	n->hash = hash;
	n->value = value;
	n->klen = klen;
	memcpy(n->key, key, klen);
	n->key[klen] = '\0';
	*pp = n;
	m->count++;
	return 0;
}

void *map_del(struct map *m, const void *key, size_t klen)
{
	if (!m->nslots)
		return NULL;
	struct map_node **pp = map_find(m, key, klen, XXH3_64bits(key, klen));
	struct map_node *n = *pp;
	if (!n)
		return NULL;
	void *v = n->value;
	*pp = n->next;
	free(n);
	m->count--;
	return v;
}
