/* storage_mem.c — the in-memory engine (storage.h): the same semantics as the
 * state directory without a file, for the core's unit tests; nothing survives
 * storage_free().  Records appended without STORAGE_COMMIT count as unsynced
 * until the next sync or committing append; the fault hook (storage_mem_fail)
 * makes chosen calls fail, and a failed sync drops the unsynced records as a
 * failed fdatasync does on disk.  storage_mem_new_shared() adds what a shared
 * engine has (a feed of hints behind an eventfd, changes()), so that two stores
 * on one engine are two daemons on one database. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mcpfs/map.h"
#include "mcpfs/storage.h"

struct mrec {
	uint16_t type;
	size_t len;
	char *data;
};

struct mblob {
	char hex[33];
	char *data;
	size_t len;
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
	struct mblob *blobs; /* its attachment blobs: a copy each (no sharing to see) */
	size_t n_blobs;
	uint64_t change; /* feed position of its last change (shared) */
};

#define MEM_HINTS 256 /* hints kept between drains; beyond: resync */

/* A deleted context, for changes() (shared). */
struct gone {
	uint64_t id, change;
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
	/* shared (storage_mem_new_shared): */
	int event_fd; /* -1: not shared */
	uint64_t change;
	struct storage_hint hints[MEM_HINTS];
	int n_hints;
	bool resync;
	struct gone *gone;
	size_t n_gone, cap_gone;
};

static struct smem *smem_of(struct storage *s)
{
	return (struct smem *)s;
}

static int gone_push(struct smem *m, uint64_t id)
{
	if (m->n_gone == m->cap_gone) {
		size_t cap = m->cap_gone ? m->cap_gone * 2 : 16;
		struct gone *v = realloc(m->gone, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		m->gone = v;
		m->cap_gone = cap;
	}
	m->gone[m->n_gone++] = (struct gone){id, m->change};
	return 0;
}

/* Under the lock: a change of c (NULL: deleted context id) for the feed. */
static void feed_note(struct smem *m, struct mctx *c, uint64_t id, uint64_t seq)
{
	if (m->event_fd < 0)
		return;
	m->change++;
	if (c)
		c->change = m->change;
	else if (gone_push(m, id) < 0)
		m->resync = true; /* out of memory: the deletion is not listed */
	if (m->n_hints < MEM_HINTS)
		m->hints[m->n_hints++] = (struct storage_hint){id, seq};
	else
		m->resync = true;
	uint64_t one = 1;
	ssize_t w = write(m->event_fd, &one, sizeof(one));
	(void)w;
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
	for (size_t i = 0; i < c->n_blobs; i++)
		free(c->blobs[i].data);
	free(c->blobs);
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
	if (name)
		feed_note(m, c, c->id, 0);
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
		feed_note(m, c, id, 0);
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
	if (c) {
		ctx_free(c);
		feed_note(m, NULL, id, 0);
	}
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
		feed_note(m, c, id, c->n);
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
		struct storage_context sc = {c->id, c->name, c->created_ms, c->n, c->change};
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

/* --- attachment blobs ------------------------------------------------------------ */

static struct mblob *blob_of(struct mctx *c, const char *hex)
{
	for (size_t i = 0; c && i < c->n_blobs; i++)
		if (!strcmp(c->blobs[i].hex, hex))
			return &c->blobs[i];
	return NULL;
}

/* Under the lock: c holds a copy of these bytes as hex (replacing another). */
static int blob_add(struct mctx *c, const char *hex, const void *data, size_t n)
{
	struct mblob *b = blob_of(c, hex);
	if (b && b->len == n && !memcmp(b->data, data, n))
		return 0;
	char *copy = malloc(n ? n : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, n);
	if (!b) {
		struct mblob *v = realloc(c->blobs, (c->n_blobs + 1) * sizeof(*v));
		if (!v) {
			free(copy);
			return -ENOMEM;
		}
		c->blobs = v;
		b = &v[c->n_blobs++];
		snprintf(b->hex, sizeof(b->hex), "%s", hex);
		b->data = NULL;
	}
	free(b->data);
	b->data = copy;
	b->len = n;
	return 0;
}

static int mem_blob_put(struct storage *s, uint64_t id, const char *hex, const void *data, size_t n)
{
	struct smem *m = smem_of(s);
	if (n > STORAGE_MAX_BLOB)
		return -EFBIG;
	int r = 0;
	pthread_mutex_lock(&m->lock);
	struct mctx *c = map_get_id(&m->by_id, id);
	if (!fault(m, "blob_put", &r))
		r = c ? blob_add(c, hex, data, n) : -ENOENT;
	pthread_mutex_unlock(&m->lock);
	return r;
}

static long mem_blob_read(struct storage *s, uint64_t id, const char *hex, void *buf, size_t n,
			  uint64_t off)
{
	struct smem *m = smem_of(s);
	pthread_mutex_lock(&m->lock);
	struct mblob *b = blob_of(map_get_id(&m->by_id, id), hex);
	long r = b ? 0 : -ENOENT;
	if (b && off < b->len) {
		if (n > b->len - off)
			n = (size_t)(b->len - off);
		memcpy(buf, b->data + off, n);
		r = (long)n;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_blob_stat(struct storage *s, uint64_t id, const char *hex, uint64_t size)
{
	struct smem *m = smem_of(s);
	pthread_mutex_lock(&m->lock);
	struct mblob *b = blob_of(map_get_id(&m->by_id, id), hex);
	int r = !b ? -ENOENT : b->len == size ? 0 : -EBADMSG;
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_blob_link(struct storage *s, uint64_t from, uint64_t to, const char *hex)
{
	struct smem *m = smem_of(s);
	pthread_mutex_lock(&m->lock);
	struct mblob *b = blob_of(map_get_id(&m->by_id, from), hex);
	struct mctx *t = map_get_id(&m->by_id, to);
	int r = !b || !t ? -ENOENT : blob_add(t, hex, b->data, b->len);
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_blob_sweep(struct storage *s, uint64_t id, bool (*keep)(void *data, const char *hex),
			  void *data)
{
	struct smem *m = smem_of(s);
	pthread_mutex_lock(&m->lock);
	struct mctx *c = map_get_id(&m->by_id, id);
	int removed = c ? 0 : -ENOENT;
	for (size_t i = 0; c && i < c->n_blobs;) {
		if (keep(data, c->blobs[i].hex)) {
			i++;
			continue;
		}
		free(c->blobs[i].data);
		c->blobs[i] = c->blobs[--c->n_blobs];
		removed++;
	}
	pthread_mutex_unlock(&m->lock);
	return removed;
}

/* --- shared: the feed --------------------------------------------------------- */

static int mem_feed_fd(struct storage *s)
{
	struct smem *m = smem_of(s);
	return m->event_fd >= 0 ? m->event_fd : -ENOTSUP;
}

static int mem_feed_drain(struct storage *s, struct storage_hint *hints, int max, bool *resync)
{
	struct smem *m = smem_of(s);
	if (m->event_fd < 0)
		return -ENOTSUP;
	uint64_t v;
	ssize_t rd = read(m->event_fd, &v, sizeof(v)); /* non-blocking */
	(void)rd;
	pthread_mutex_lock(&m->lock);
	int n = m->n_hints < max ? m->n_hints : max;
	memcpy(hints, m->hints, (size_t)n * sizeof(*hints));
	memmove(m->hints, m->hints + n, (size_t)(m->n_hints - n) * sizeof(*hints));
	m->n_hints -= n;
	if (m->resync)
		*resync = true;
	m->resync = false;
	if (m->n_hints) { /* more than max: the caller drains again */
		uint64_t one = 1;
		ssize_t w = write(m->event_fd, &one, sizeof(one));
		(void)w;
	}
	pthread_mutex_unlock(&m->lock);
	return n;
}

/* The change after `after` with the lowest position: *c a live context (named)
 * or *g a deleted one; false when none. */
static bool next_change(struct smem *m, uint64_t after, struct mctx **c, struct gone **g)
{
	uint64_t best = UINT64_MAX;
	*c = NULL;
	*g = NULL;
	for (uint64_t id = 1; id <= m->next_id; id++) {
		struct mctx *x = map_get_id(&m->by_id, id);
		if (x && x->name && x->change > after && x->change < best) {
			best = x->change;
			*c = x;
		}
	}
	for (size_t i = 0; i < m->n_gone; i++)
		if (m->gone[i].change > after && m->gone[i].change < best) {
			best = m->gone[i].change;
			*c = NULL;
			*g = &m->gone[i];
		}
	return *c || *g;
}

static int mem_changes(struct storage *s, uint64_t after, uint32_t max, storage_context_fn *fn,
		       void *data, uint64_t *next)
{
	struct smem *m = smem_of(s);
	if (m->event_fd < 0)
		return -ENOTSUP;
	int r = 0;
	uint32_t n = 0;
	struct mctx *c;
	struct gone *g;
	pthread_mutex_lock(&m->lock);
	while (r == 0 && (!max || n < max) && next_change(m, after, &c, &g)) {
		struct storage_context sc = {0};
		if (c)
			sc = (struct storage_context){c->id, c->name, c->created_ms, c->n,
						      c->change};
		else
			sc = (struct storage_context){g->id, NULL, 0, 0, g->change};
		after = sc.change;
		n++;
		r = fn(data, &sc);
	}
	pthread_mutex_unlock(&m->lock);
	if (next)
		*next = after;
	return r;
}

static void mem_free(struct storage *s)
{
	struct smem *m = smem_of(s);
	if (m->event_fd >= 0)
		close(m->event_fd);
	free(m->gone);
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

/* One table for both: the feed's ops answer only for an engine made by
 * storage_mem_new_shared() (event_fd >= 0; storage_feed_fd() is then not
 * negative, which is how the core tells a shared engine). */
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
    .feed_fd = mem_feed_fd,
    .feed_drain = mem_feed_drain,
    .changes = mem_changes,
    .blob_put = mem_blob_put,
    .blob_read = mem_blob_read,
    .blob_stat = mem_blob_stat,
    .blob_link = mem_blob_link,
    .blob_sweep = mem_blob_sweep,
    .free = mem_free,
};

int storage_mem_new_shared(struct storage **ret)
{
	int r = storage_mem_new(ret);
	if (r < 0)
		return r;
	struct smem *m = smem_of(*ret);
	m->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->event_fd < 0) {
		r = -errno;
		storage_free(*ret);
		*ret = NULL;
		return r;
	}
	return 0;
}

int storage_mem_new(struct storage **ret)
{
	struct smem *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->base.ops = &mem_ops;
	m->event_fd = -1;
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
