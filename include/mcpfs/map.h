/* map.h — a small chained hash map from byte-string keys to pointers, a core
 * utility the adapters use too.  Keys are copied; values are borrowed.  Hashing
 * uses XXH3.  Not thread-safe: the owner's lock covers it. */
#ifndef MCPFS_MAP_H
#define MCPFS_MAP_H

#include <stddef.h>
#include <stdint.h>

struct map_node {
	struct map_node *next;
	uint64_t hash;
	void *value;
	size_t klen;
	char key[]; /* klen bytes + NUL */
};

struct map {
	struct map_node **slots;
	size_t nslots; /* power of two */
	size_t count;
};

void map_init(struct map *m);
void map_done(struct map *m); /* frees nodes, not values */
void *map_get(const struct map *m, const void *key, size_t klen);
/* 0, -EEXIST, -ENOMEM */
int map_put(struct map *m, const void *key, size_t klen, void *value);
/* Returns the removed value or NULL. */
void *map_del(struct map *m, const void *key, size_t klen);

/* u64 keys, for ids. */
static inline void *map_get_id(const struct map *m, uint64_t id)
{
	return map_get(m, &id, sizeof(id));
}
static inline int map_put_id(struct map *m, uint64_t id, void *v)
{
	return map_put(m, &id, sizeof(id), v);
}
static inline void *map_del_id(struct map *m, uint64_t id)
{
	return map_del(m, &id, sizeof(id));
}

#endif
