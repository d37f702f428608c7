/* storage_dir_sync.c — the state-dir engine's journals (storage.h): appends,
 * the sync that runs fdatasync without the engine's lock, recovery after a
 * failed sync, torn-tail repair at open, loads and tails, and the bound on
 * open descriptors (parking).  The framing is journal.c's.
 *
 * A sync runs in three steps (journal.h): journal_sync_begin under the lock,
 * journal_sync_run without it (other contexts' appends and syncs go on), then
 * journal_sync_end under it again.  Meanwhile the context is `syncing`: its
 * appends get -EBUSY and a remove only marks it, for the sync to free.
 *
 * Descriptors: at most fd_max journals are open; the least recently used idle
 * one is parked (closed) to open another, and reopened (at its path, which a
 * rename may have changed) when used.
 *
 * The bottom of the engine's three files: it also names where a context's
 * directory and journal are (sdir_path, sdir_rel_dir) and drops a context
 * (sdir_ctx_drop), for storage_dir_files.c and storage_dir.c above it; it
 * calls neither.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage_dir_impl.h"

/* --- where a context's journal is, and its end ------------------------------------ */

int sdir_path(const struct sdir *d, const struct sdir_ctx *c, const char *file, char *out, size_t n)
{
	int k = c->name ? snprintf(out, n, "%s/contexts/%s/%s", d->dir, c->name, file)
			: snprintf(out, n, "%s/trash/new-%llu/%s", d->dir,
				   (unsigned long long)c->id, file);
	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

int sdir_rel_dir(const struct sdir_ctx *c, char *out, size_t n)
{
	int k = c->name ? snprintf(out, n, "contexts/%s", c->name)
			: snprintf(out, n, "trash/new-%llu", (unsigned long long)c->id);
	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

void sdir_ctx_drop(struct sdir *d, struct sdir_ctx *c)
{
	if (c->syncing) { /* the sync frees it, and its journal */
		c->removed = true;
		sdir_lru_forget(d, c);
		journal_free(c->j);
		return;
	}
	sdir_lru_forget(d, c);
	journal_free(c->j);
	free(c->name);
	free(c);
}

static void lru_unlink(struct sdir *d, struct sdir_ctx *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		d->lru_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		d->lru_tail = c->prev;
	c->prev = c->next = NULL;
}

static void lru_push(struct sdir *d, struct sdir_ctx *c)
{
	c->prev = d->lru_tail;
	c->next = NULL;
	if (d->lru_tail)
		d->lru_tail->next = c;
	else
		d->lru_head = c;
	d->lru_tail = c;
}

void sdir_lru_forget(struct sdir *d, struct sdir_ctx *c)
{
	if (!c->in_lru)
		return;
	lru_unlink(d, c);
	c->in_lru = false;
	d->open_journals--;
}

void sdir_opened(struct sdir *d, struct sdir_ctx *c)
{
	if (c->in_lru || !c->j || journal_parked(c->j))
		return;
	lru_push(d, c);
	c->in_lru = true;
	d->open_journals++;
}

void sdir_make_room(struct sdir *d)
{
	struct sdir_ctx *c = d->lru_head;
	while (c && d->open_journals >= d->fd_max) {
		struct sdir_ctx *next = c->next;
		if (!c->syncing && journal_park(c->j) == 0)
			sdir_lru_forget(d, c);
		c = next;
	}
}

static struct sdir_ctx *ctx_get(struct sdir *d, uint64_t id)
{
	return map_get_id(&d->by_id, id);
}

/* Opens c's journal for appends (a torn tail truncated), into rep. */
static int ctx_open(struct sdir *d, struct sdir_ctx *c, struct journal_report *rep)
{
	char path[SDIR_PATH_MAX];
	int r = sdir_path(d, c, "journal", path, sizeof(path));
	if (r < 0)
		return r;
	sdir_make_room(d);
	r = journal_open(path, JOURNAL_REPAIR, rep, &c->j);
	if (r == -ENOENT)
		return -ENODATA;
	if (r == 0) {
		c->records = rep->records;
		sdir_opened(d, c);
	}
	return r;
}

/* The journal's descriptor is open (reopened if it was parked) and the journal
 * is not failed (a failed one is recovered first).  0, -errno. */
static int ctx_ready(struct sdir *d, struct sdir_ctx *c)
{
	char path[SDIR_PATH_MAX];
	if (c->syncing)
		return -EBUSY;
	if (!c->j) {
		struct journal_report rep;
		return ctx_open(d, c, &rep);
	}
	int r = sdir_path(d, c, "journal", path, sizeof(path));
	if (r < 0)
		return r;
	if (journal_parked(c->j)) {
		sdir_make_room(d);
		r = journal_unpark(c->j, path);
		sdir_opened(d, c);
		if (r < 0)
			return r;
	} else if (c->in_lru && d->lru_tail != c) {
		lru_unlink(d, c);
		lru_push(d, c);
	}
	if (journal_failed(c->j))
		return journal_recover(c->j, path);
	return 0;
}

/* The first record of a context that has none: the journal made with it. */
static int ctx_first(struct sdir *d, struct sdir_ctx *c, uint16_t type, const void *payload,
		     size_t len)
{
	char path[SDIR_PATH_MAX];
	int r = sdir_path(d, c, "journal", path, sizeof(path));
	if (r < 0)
		return r;
	sdir_make_room(d);
	r = journal_create(path, type, payload, len, &c->j);
	if (r == 0) {
		c->records = 1;
		sdir_opened(d, c);
	}
	return r;
}

int sdir_append(struct storage *s, uint64_t id, uint16_t type, const void *payload, size_t len,
		unsigned flags, uint64_t *seq)
{
	struct sdir *d = sdir_of(s);
	if (len > STORAGE_MAX_RECORD)
		return -EFBIG;
	if ((flags & STORAGE_IF_AT) && !seq)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	struct sdir_ctx *c = ctx_get(d, id);
	int r = !c ? -ENOENT : c->syncing ? -EBUSY : 0;
	if (r == 0 && !c->j) {
		struct journal_report rep;
		r = ctx_open(d, c, &rep);
		if (r == -ENODATA && (flags & STORAGE_IF_AT) && *seq != 0)
			r = -EAGAIN;
		else if (r == -ENODATA) {
			r = ctx_first(d, c, type, payload, len);
			if (r == 0 && seq)
				*seq = 1;
			pthread_mutex_unlock(&d->lock);
			return r;
		}
	}
	if (r == 0)
		r = ctx_ready(d, c);
	if (r == 0 && (flags & STORAGE_IF_AT) && *seq != c->records)
		r = -EAGAIN;
	if (r == 0)
		r = journal_append(c->j, type, payload, len, flags & STORAGE_COMMIT);
	if (r == 0 && seq)
		*seq = c->records + 1;
	if (r == 0)
		c->records++;
	pthread_mutex_unlock(&d->lock);
	return r;
}

int sdir_sync(struct storage *s, uint64_t id)
{
	struct sdir *d = sdir_of(s);
	pthread_mutex_lock(&d->lock);
	struct sdir_ctx *c = ctx_get(d, id);
	int r = c ? ctx_ready(d, c) : -ENOENT;
	struct journal_sync t;
	if (r == 0)
		r = journal_sync_begin(c->j, &t);
	if (r <= 0) {
		pthread_mutex_unlock(&d->lock);
		return r;
	}
	char path[SDIR_PATH_MAX];
	bool named = sdir_path(d, c, "journal", path, sizeof(path)) == 0;
	struct journal *j = c->j;
	c->syncing = true;
	pthread_mutex_unlock(&d->lock);
	journal_sync_run(&t, named ? path : NULL);
	pthread_mutex_lock(&d->lock);
	r = journal_sync_end(j, &t);
	c->syncing = false;
	if (c->removed) { /* its journal was freed by journal_sync_end (-ESTALE) */
		c->j = NULL;
		sdir_ctx_drop(d, c);
		r = -ENOENT;
	} else if (r < 0 && journal_failed(j) == 0) {
		c->records = 0; /* recovered: counted again at the next append */
		struct journal_report rep;
		char p2[SDIR_PATH_MAX];
		if (sdir_path(d, c, "journal", p2, sizeof(p2)) == 0 &&
		    journal_scan(p2, NULL, NULL, &rep) == 0)
			c->records = rep.records;
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

int sdir_failed(struct storage *s, uint64_t id)
{
	struct sdir *d = sdir_of(s);
	pthread_mutex_lock(&d->lock);
	struct sdir_ctx *c = ctx_get(d, id);
	int r = !c ? -ENOENT : c->j && !c->syncing ? journal_failed(c->j) : 0;
	pthread_mutex_unlock(&d->lock);
	return r;
}

int sdir_open(struct storage *s, uint64_t id, struct storage_report *rep)
{
	struct sdir *d = sdir_of(s);
	struct journal_report jr = {0};
	pthread_mutex_lock(&d->lock);
	struct sdir_ctx *c = ctx_get(d, id);
	int r = !c ? -ENOENT : c->j ? 0 : ctx_open(d, c, &jr);
	if (c && c->j && !jr.records)
		jr.records = c->records;
	pthread_mutex_unlock(&d->lock);
	if (rep)
		*rep = (struct storage_report){jr.records, jr.bad_records, jr.skipped_bytes,
					       jr.torn_bytes};
	return r;
}

/* --- reading ------------------------------------------------------------------ */

struct sdir_read {
	storage_record_fn *fn;
	void *data;
	uint64_t seq, after, last;
	uint32_t max, delivered;
	bool numbered; /* false for a tail: seq unknown */
};

#define READ_ENOUGH (-ECANCELED) /* max records delivered: not an error */

static int on_read(void *data, uint16_t type, const void *payload, size_t len, uint64_t off)
{
	struct sdir_read *rd = data;
	(void)off;
	rd->seq++;
	if (rd->numbered && rd->seq <= rd->after)
		return 0;
	if (rd->max && rd->delivered == rd->max)
		return READ_ENOUGH;
	int r = rd->fn(rd->data, rd->numbered ? rd->seq : 0, type, payload, len);
	rd->delivered++;
	rd->last = rd->seq;
	return r;
}

/* The journal's path for reading, without the lock held afterwards. */
static int read_path(struct sdir *d, uint64_t id, char *path, size_t n)
{
	pthread_mutex_lock(&d->lock);
	struct sdir_ctx *c = ctx_get(d, id);
	int r = c ? sdir_path(d, c, "journal", path, n) : -ENOENT;
	pthread_mutex_unlock(&d->lock);
	return r;
}

int sdir_load(struct storage *s, uint64_t id, uint64_t after, uint32_t max, storage_record_fn *fn,
	      void *data, uint64_t *last)
{
	char path[SDIR_PATH_MAX];
	struct sdir_read rd = {fn, data, 0, after, after, max, 0, true};
	int r = read_path(sdir_of(s), id, path, sizeof(path));
	struct journal_report rep;
	if (r < 0)
		return r;
	r = journal_scan(path, on_read, &rd, &rep);
	if (r == READ_ENOUGH)
		r = 0;
	if (last)
		*last = rd.last;
	return r == -ENOENT ? -ENODATA : r;
}

int sdir_tail(struct storage *s, uint64_t id, uint64_t bytes, storage_record_fn *fn, void *data)
{
	char path[SDIR_PATH_MAX];
	struct sdir_read rd = {fn, data, 0, 0, 0, 0, 0, false};
	int r = read_path(sdir_of(s), id, path, sizeof(path));
	struct journal_report rep;
	if (r < 0)
		return r;
	/* Wider until the newest record is whole in it (the whole file at last). */
	for (int i = 0; r == 0 && !rd.delivered && i < 8; i++, bytes *= 16)
		r = journal_scan_tail(path, bytes ? bytes : 1, on_read, &rd, &rep);
	if (r == 0 && !rd.delivered)
		r = journal_scan(path, on_read, &rd, &rep);
	return r == -ENOENT ? -ENODATA : r;
}
