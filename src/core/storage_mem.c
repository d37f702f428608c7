/* storage_mem.c — the in-memory engine (storage.h): the same semantics as the
 * state directory without a file, for the core's unit tests; nothing survives
 * storage_free().  Records appended without STORAGE_COMMIT count as unsynced
 * until the next sync or committing append; the fault hook (storage_mem_fail)
 * makes chosen calls fail, and a failed sync drops the unsynced records as a
 * failed fdatasync does on disk. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/map.h"
#include "mcpfs/storage.h"

struct mrec {
	uint16_t type;
	size_t len;
	char *data;
};

struct mctx {
	uint64_t id;
	char *name; /* NULL: hidden */
	int64_t created_ms;
	struct mrec *v;
	size_t n, cap;
	size_t synced; /* records durable */
	int failed;    /* a failed sync's recovery error, until an append */
	char *side;    /* the side file, NULL none */
	size_t side_len;
};

struct smem {
	struct storage base;
	pthread_mutex_t lock;
	struct map by_id;
	uint64_t next_id;
	char *defaults;
	size_t defaults_len;
	bool has_defaults;
	uint64_t reserved;
	const char *fail_op; /* a string literal the test passed, or NULL: any */
	int fail_err, fail_recover;
	unsigned fail_count;
};

static struct smem *smem_of(struct storage *s)
{
	return (struct smem *)s;
}

/* Under the lock: true (and the error in *err) when op is to fail now. */
static bool fault(struct smem *m, const char *op, int *err)
{
	if (!m->fail_count || (m->fail_op && strcmp(m->fail_op, op)))
		return false;
	m->fail_count--;
	*err = m->fail_err;
	return true;
}

static struct mctx *ctx_named(struct smem *m, const char *name)
{
	for (uint64_t id = 1; id <= m->next_id; id++) {
		struct mctx *c = map_get_id(&m->by_id, id);
		if (c && c->name && !strcmp(c->name, name))
			return c;
	}
	return NULL;
}

static int rec_push(struct mctx *c, uint16_t type, const void *payload, size_t len)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct mrec *v = realloc(c->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	char *d = malloc(len ? len : 1);
	if (!d)
		return -ENOMEM;
	memcpy(d, payload, len);
	c->v[c->n++] = (struct mrec){type, len, d};
	return 0;
}

static void ctx_free(struct mctx *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].data);
	free(c->v);
	free(c->name);
	free(c->side);
	free(c);
}

static int mem_create(struct storage *s, const char *name, int64_t created_ms, const void *payload,
		      size_t len, uint64_t *id)
{
	struct smem *m = smem_of(s);
	if (len > STORAGE_MAX_RECORD)
		return -EFBIG;
	int r = 0;
	pthread_mutex_lock(&m->lock);
	struct mctx *c = NULL;
	if (fault(m, "create", &r) || (name && ctx_named(m, name) && (r = -EEXIST)) ||
	    !(c = calloc(1, sizeof(*c))) || (name && !(c->name = strdup(name))) ||
	    rec_push(c, JOURNAL_CREATE, payload, len) < 0 ||
	    map_put_id(&m->by_id, m->next_id + 1, c) < 0) {
		if (c)
			ctx_free(c);
		pthread_mutex_unlock(&m->lock);
		return r ? r : -ENOMEM;
	}
	c->id = ++m->next_id;
	c->created_ms = created_ms;
	c->synced = 1;
	*id = c->id;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int mem_rename(struct storage *s, uint64_t id, const char *to)
{
	struct smem *m = smem_of(s);
	int r = 0;
	pthread_mutex_lock(&m->lock);
	struct mctx *c = map_get_id(&m->by_id, id);
	char *copy = NULL;
	if (!fault(m, "rename", &r))
		r = !c ? -ENOENT : ctx_named(m, to) ? -EEXIST : !(copy = strdup(to)) ? -ENOMEM : 0;
	if (r == 0) {
		free(c->name);
		c->name = copy;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_remove(struct storage *s, uint64_t id)
{
	struct smem *m = smem_of(s);
	int r = 0;
	pthread_mutex_lock(&m->lock);
	struct mctx *c = NULL;
	if (!fault(m, "remove", &r))
		r = (c = map_del_id(&m->by_id, id)) ? 0 : -ENOENT;
	if (c)
		ctx_free(c);
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* A failed sync: what was not durable is gone. */
static void drop_unsynced(struct mctx *c)
{
	while (c->n > c->synced)
		free(c->v[--c->n].data);
}

static int mem_append(struct storage *s, uint64_t id, uint16_t type, const void *payload,
		      size_t len, unsigned flags, uint64_t *seq)
{
	struct smem *m = smem_of(s);
	if (len > STORAGE_MAX_RECORD)
		return -EFBIG;
	if ((flags & STORAGE_IF_AT) && !seq)
		return -EINVAL;
	int r = 0;
	pthread_mutex_lock(&m->lock);
	struct mctx *c = map_get_id(&m->by_id, id);
	if (!c)
		r = -ENOENT;
	else if ((flags & STORAGE_IF_AT) && *seq != c->n)
		r = -EAGAIN;
	else if (fault(m, "append", &r))
		;
	else if (c->failed && m->fail_recover) /* the recovery fails again */
		r = c->failed;
	else if ((c->failed = 0, r = rec_push(c, type, payload, len)) == 0) {
		if (seq)
			*seq = c->n;
		if (flags & STORAGE_COMMIT)
			c->synced = c->n;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_sync(struct storage *s, uint64_t id)
{
	struct smem *m = smem_of(s);
	int r = 0;
	pthread_mutex_lock(&m->lock);
	struct mctx *c = map_get_id(&m->by_id, id);
	if (!c) {
		r = -ENOENT;
	} else if (c->synced < c->n && fault(m, "sync", &r)) {
		drop_unsynced(c);
		c->failed = m->fail_recover;
	} else {
		c->synced = c->n;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_failed(struct storage *s, uint64_t id)
{
	struct smem *m = smem_of(s);
	pthread_mutex_lock(&m->lock);
	struct mctx *c = map_get_id(&m->by_id, id);
	int r = c ? c->failed : -ENOENT;
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_list(struct storage *s, storage_context_fn *fn, void *data)
{
	struct smem *m = smem_of(s);
	int r = 0;
	pthread_mutex_lock(&m->lock);
	for (uint64_t id = 1; r == 0 && id <= m->next_id; id++) {
		struct mctx *c = map_get_id(&m->by_id, id);
		if (!c || !c->name)
			continue;
		struct storage_context sc = {c->id, c->name, c->created_ms, c->n, 0};
		r = fn(data, &sc);
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* Records from index `from`, at most max (0: all). */
static int deliver(struct mctx *c, size_t from, uint32_t max, bool numbered, storage_record_fn *fn,
		   void *data, uint64_t *last)
{
	int r = 0;
	for (size_t i = from; r == 0 && i < c->n && (!max || i - from < max); i++) {
		r = fn(data, numbered ? i + 1 : 0, c->v[i].type, c->v[i].data, c->v[i].len);
		if (last)
			*last = i + 1;
	}
	return r;
}

static int mem_load(struct storage *s, uint64_t id, uint64_t after, uint32_t max,
		    storage_record_fn *fn, void *data, uint64_t *last)
{
	struct smem *m = smem_of(s);
	if (last)
		*last = after;
	pthread_mutex_lock(&m->lock);
	struct mctx *c = map_get_id(&m->by_id, id);
	int r = !c ? -ENOENT : !c->n ? -ENODATA : deliver(c, after, max, true, fn, data, last);
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_tail(struct storage *s, uint64_t id, uint64_t bytes, storage_record_fn *fn,
		    void *data)
{
	struct smem *m = smem_of(s);
	pthread_mutex_lock(&m->lock);
	struct mctx *c = map_get_id(&m->by_id, id);
	int r = !c ? -ENOENT : !c->n ? -ENODATA : 0;
	if (r == 0) {
		size_t from = c->n - 1, sum = c->v[from].len;
		while (from > 0 && sum + c->v[from - 1].len <= bytes)
			sum += c->v[--from].len;
		r = deliver(c, from, 0, false, fn, data, NULL);
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_open(struct storage *s, uint64_t id, struct storage_report *rep)
{
	struct smem *m = smem_of(s);
	int r = 0;
	pthread_mutex_lock(&m->lock);
	struct mctx *c = map_get_id(&m->by_id, id);
	if (!fault(m, "open", &r))
		r = !c ? -ENOENT : !c->n ? -ENODATA : 0;
	if (rep)
		*rep = (struct storage_report){c && r == 0 ? c->n : 0, 0, 0, 0};
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* Copies len bytes and a NUL into *out. */
static int copy_out(const char *src, size_t len, void **out, size_t *outlen)
{
	char *b = malloc(len + 1);
	if (!b)
		return -ENOMEM;
	memcpy(b, src, len);
	b[len] = '\0';
	*out = b;
	*outlen = len;
	return 0;
}

static int mem_defaults_get(struct storage *s, void **out, size_t *len)
{
	struct smem *m = smem_of(s);
	pthread_mutex_lock(&m->lock);
	int r = m->has_defaults ? copy_out(m->defaults, m->defaults_len, out, len) : -ENOENT;
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_defaults_set(struct storage *s, const void *text, size_t len)
{
	struct smem *m = smem_of(s);
	void *copy = NULL;
	size_t n;
	int r = 0;
	pthread_mutex_lock(&m->lock);
	if (!fault(m, "defaults_set", &r) && (r = copy_out(text, len, &copy, &n)) == 0) {
		free(m->defaults);
		m->defaults = copy;
		m->defaults_len = n;
		m->has_defaults = true;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_meta_get(struct storage *s, uint64_t id, void **out, size_t *len)
{
	struct smem *m = smem_of(s);
	pthread_mutex_lock(&m->lock);
	struct mctx *c = map_get_id(&m->by_id, id);
	int r = !c ? -ENOENT : !c->side ? -ENODATA : copy_out(c->side, c->side_len, out, len);
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_meta_set(struct storage *s, uint64_t id, const void *data, size_t len)
{
	struct smem *m = smem_of(s);
	if (len > STORAGE_MAX_SIDE)
		return -EFBIG;
	void *copy = NULL;
	size_t n = 0;
	pthread_mutex_lock(&m->lock);
	struct mctx *c = map_get_id(&m->by_id, id);
	int r = !c ? -ENOENT : len ? copy_out(data, len, &copy, &n) : 0;
	if (r == 0) {
		free(c->side);
		c->side = copy;
		c->side_len = n;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_reserve(struct storage *s, uint64_t bytes)
{
	struct smem *m = smem_of(s);
	int r = 0;
	pthread_mutex_lock(&m->lock);
	if (!(bytes > m->reserved && fault(m, "reserve", &r)))
		m->reserved = bytes;
	pthread_mutex_unlock(&m->lock);
	return r;
}

static void mem_free(struct storage *s)
{
	struct smem *m = smem_of(s);
	for (uint64_t id = 1; id <= m->next_id; id++) {
		struct mctx *c = map_del_id(&m->by_id, id);
		if (c)
			ctx_free(c);
	}
	map_done(&m->by_id);
	pthread_mutex_destroy(&m->lock);
	free(m->defaults);
	free(m);
}

static const struct storage_ops mem_ops = {
    .create = mem_create,
    .rename = mem_rename,
    .remove = mem_remove,
    .append = mem_append,
    .sync = mem_sync,
    .list = mem_list,
    .load = mem_load,
    .defaults_get = mem_defaults_get,
    .defaults_set = mem_defaults_set,
    .open = mem_open,
    .failed = mem_failed,
    .tail = mem_tail,
    .meta_get = mem_meta_get,
    .meta_set = mem_meta_set,
    .reserve = mem_reserve,
    .free = mem_free,
};

int storage_mem_new(struct storage **ret)
{
	struct smem *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->base.ops = &mem_ops;
	pthread_mutex_init(&m->lock, NULL);
	map_init(&m->by_id);
	*ret = &m->base;
	return 0;
}

void storage_mem_fail(struct storage *s, const char *op, int err, unsigned count, int recover_err)
{
	if (!s || s->ops != &mem_ops)
		return;
	struct smem *m = smem_of(s);
	pthread_mutex_lock(&m->lock);
	m->fail_op = op;
	m->fail_err = err;
	m->fail_count = count;
	m->fail_recover = recover_err;
	pthread_mutex_unlock(&m->lock);
}
