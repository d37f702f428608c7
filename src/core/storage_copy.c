/* storage_copy.c — one engine's contexts into another (see storage_copy.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/storage_copy.h"

/* A context of a listing, kept past the callback. */
struct copy_item {
	uint64_t id;
	uint64_t last_seq;
	int64_t created_ms;
	char *name;
};

struct copy_list {
	struct copy_item *items;
	size_t n, cap;
};

static int collect(void *data, const struct storage_context *c)
{
	struct copy_list *l = data;
	if (!c->name)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct copy_item *items = realloc(l->items, cap * sizeof(*items));
		if (!items)
			return -ENOMEM;
		l->items = items;
		l->cap = cap;
	}
	struct copy_item *it = &l->items[l->n];
	*it = (struct copy_item){c->id, c->last_seq, c->created_ms, strdup(c->name)};
	if (!it->name)
		return -ENOMEM;
	l->n++;
	return 0;
}

static void list_done(struct copy_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i].name);
	free(l->items);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct copy_item *)a)->name, ((const struct copy_item *)b)->name);
}

static int name_is(const void *name, const void *item)
{
	return strcmp(name, ((const struct copy_item *)item)->name);
}

static const struct copy_item *find(const struct copy_list *l, const char *name)
{
	return l->n ? bsearch(name, l->items, l->n, sizeof(*l->items), name_is) : NULL;
}

/* One record, read whole. */
struct copy_rec {
	uint64_t seq;
	uint16_t type;
	void *payload;
	size_t len;
	bool found;
};

static int take_one(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	struct copy_rec *r = data;
	r->payload = malloc(len ? len : 1);
	if (!r->payload)
		return -ENOMEM;
	if (len)
		memcpy(r->payload, payload, len);
	*r = (struct copy_rec){seq, type, r->payload, len, true};
	return 0;
}

/* The record of context id at seq: 0 with r->found false when there is none. */
static int load_at(struct storage *s, uint64_t id, uint64_t seq, struct copy_rec *r)
{
	*r = (struct copy_rec){0};
	int err = storage_load(s, id, seq - 1, 1, take_one, r, NULL);
	if (err == 0 && r->found && r->seq != seq)
		r->found = false;
	return err == -ENODATA ? 0 : err; /* no record at all: none at seq */
}

static bool same(const struct copy_rec *a, const struct copy_rec *b)
{
	return a->found && b->found && a->type == b->type && a->len == b->len &&
	       memcmp(a->payload, b->payload, a->len) == 0;
}

struct copy_run {
	struct storage *to;
	uint64_t to_id;
	uint64_t appended;
	uint64_t since_commit;
};

static int append_one(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	struct copy_run *c = data;
	bool commit = c->since_commit + 1 >= STORAGE_COPY_COMMIT_EVERY;
	uint64_t got = 0;
	int err =
	    storage_append(c->to, c->to_id, type, payload, len, commit ? STORAGE_COMMIT : 0, &got);
	if (err < 0)
		return err;
	if (got != seq)
		return -EPROTO; /* another writer appended meanwhile: not a copy any more */
	c->appended++;
	c->since_commit = commit ? 0 : c->since_commit + 1;
	return 0;
}

/* Appends the source's records after `after` to the target, in batches,
 * until a batch brings none; the last ones committed by a sync. */
static int copy_records(struct storage *from, const struct copy_item *src, struct copy_run *c,
			uint64_t after)
{
	int err = 0;
	for (;;) {
		uint64_t last = after;
		err = storage_load(from, src->id, after, STORAGE_COPY_BATCH, append_one, c, &last);
		if (err < 0 || last == after)
			break;
		after = last;
	}
	if (err == 0 && c->since_commit)
		err = storage_sync(c->to, c->to_id);
	return err;
}

static int count_one(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	return 0;
}

/* A context's newest seq: the listing's, or read when the engine listed 0
 * (unknown, as the state dir does). */
static int last_seq_of(struct storage *s, const struct copy_item *it, uint64_t *last)
{
	*last = it->last_seq;
	if (*last)
		return 0;
	int err = storage_load(s, it->id, 0, 0, count_one, NULL, last);
	return err == -ENODATA ? 0 : err;
}

/* Where to resume a context that `to` has under the same name: its last seq,
 * or a skip (why says which) when it is another context or has changed. */
static int resume_point(struct storage *from, struct storage *to, const struct copy_item *src,
			const struct copy_item *dst, const struct copy_rec *create, uint64_t *after,
			const char **skip)
{
	struct copy_rec theirs, ours = {0};
	uint64_t last = 0;
	int err = load_at(to, dst->id, 1, &theirs);
	*after = 0;
	if (err == 0 && !same(create, &theirs))
		*skip = "the name is taken in the store by another context";
	free(theirs.payload);
	if (err < 0 || *skip)
		return err;
	/* the record at the store's newest seq: this state dir's of that seq? */
	err = last_seq_of(to, dst, &last);
	if (err == 0)
		err = load_at(to, dst->id, last, &theirs);
	if (err == 0)
		err = load_at(from, src->id, last, &ours);
	if (err == 0 && !same(&ours, &theirs))
		*skip = "the store's copy differs from this state dir (changed there since the "
			"import)";
	else if (err == 0)
		*after = last;
	free(theirs.payload);
	free(ours.payload);
	return err;
}

/* The hashes of a context's blobs, from a sweep that keeps them all. */
struct blob_list {
	char (*hex)[33];
	size_t n, cap;
	int err;
};

static bool list_blob(void *data, const char *hex)
{
	struct blob_list *l = data;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char(*v)[33] = realloc(l->hex, cap * sizeof(*v));
		if (!v) {
			l->err = -ENOMEM;
			return true;
		}
		l->hex = v;
		l->cap = cap;
	}
	snprintf(l->hex[l->n++], 33, "%s", hex);
	return true;
}

/* Reads the whole blob hex of context id into *out (malloc'd, *n bytes). */
static int read_blob(struct storage *s, uint64_t id, const char *hex, char **out, size_t *n)
{
	size_t cap = 1 << 20, len = 0;
	char *b = malloc(cap);
	long got = b ? 1 : -ENOMEM;
	while (got > 0) {
		if (len == cap) {
			char *nb = cap < STORAGE_MAX_BLOB ? realloc(b, cap * 2) : NULL;
			if (!nb) {
				got = cap < STORAGE_MAX_BLOB ? -ENOMEM : -EFBIG;
				break;
			}
			b = nb;
			cap *= 2;
		}
		got = storage_blob_read(s, id, hex, b + len, cap - len, len);
		if (got > 0)
			len += (size_t)got;
	}
	if (got < 0) {
		free(b);
		return (int)got;
	}
	*out = b;
	*n = len;
	return 0;
}

/* Every blob the context holds in `from`, put into `to` (idempotent there: a
 * content it holds is not written again), so that an import run again also
 * finishes what a stopped one left.  An engine on either side without blobs:
 * nothing to do. */
static int copy_blobs(struct storage *from, uint64_t from_id, struct storage *to, uint64_t to_id)
{
	struct blob_list l = {0};
	if (!to->ops->blob_put)
		return 0;
	int err = storage_blob_sweep(from, from_id, list_blob, &l);
	err = err == -ENOTSUP ? 0 : err < 0 ? err : l.err;
	for (size_t i = 0; err == 0 && i < l.n; i++) {
		char *data = NULL;
		size_t n = 0;
		err = read_blob(from, from_id, l.hex[i], &data, &n);
		if (err == 0)
			err = storage_blob_put(to, to_id, l.hex[i], data, n);
		free(data);
	}
	free(l.hex);
	return err;
}

static int copy_context(struct storage *from, struct storage *to, const struct copy_list *there,
			const struct copy_item *src, enum storage_copy_outcome *what,
			const char **skip, uint64_t *records)
{
	struct copy_rec create;
	struct copy_run c = {to, 0, 0, 0};
	uint64_t after = 0;
	int err = load_at(from, src->id, 1, &create);
	const struct copy_item *dst = err == 0 ? find(there, src->name) : NULL;

	if (err == 0 && (!create.found || create.type != JOURNAL_CREATE))
		*skip = "its first record is not a CREATE (an empty or damaged journal)";
	else if (err == 0 && dst)
		err = resume_point(from, to, src, dst, &create, &after, skip);
	else if (err == 0)
		err = storage_create(to, src->name, src->created_ms, create.payload, create.len,
				     &c.to_id);
	free(create.payload);
	if (err == -EEXIST)
		*skip = "the name was taken in the store meanwhile";
	if (err == -EEXIST || *skip) {
		*what = STORAGE_COPY_SKIPPED;
		return 0;
	}
	if (err < 0)
		return err;
	if (dst)
		c.to_id = dst->id;
	else
		after = 1;
	err = copy_records(from, src, &c, after);
	if (err == 0)
		err = copy_blobs(from, src->id, to, c.to_id);
	*records = c.appended;
	*what = !dst	     ? STORAGE_COPY_COPIED
		: c.appended ? STORAGE_COPY_RESUMED
			     : STORAGE_COPY_PRESENT;
	return err;
}

int storage_copy(struct storage *from, struct storage *to, storage_copy_note_fn *note, void *data,
		 struct storage_copy_report *rep, char *why, size_t whylen)
{
	struct copy_list src = {0}, there = {0};
	int err = storage_list(from, collect, &src);
	if (err == 0)
		err = storage_list(to, collect, &there);
	*rep = (struct storage_copy_report){0};
	if (err < 0) {
		snprintf(why, whylen, "listing the contexts: %s", strerror(-err));
		goto out;
	}
	if (there.n)
		qsort(there.items, there.n, sizeof(*there.items), by_name);
	for (size_t i = 0; i < src.n && err == 0; i++) {
		enum storage_copy_outcome what = STORAGE_COPY_SKIPPED;
		const char *skip = NULL;
		uint64_t records = 0;
		err = copy_context(from, to, &there, &src.items[i], &what, &skip, &records);
		rep->records += records;
		if (err < 0) {
			snprintf(why, whylen, "context '%s': %s", src.items[i].name,
				 strerror(-err));
			break;
		}
		uint64_t *count[] = {&rep->copied, &rep->resumed, &rep->present, &rep->skipped};
		(*count[what])++;
		if (note)
			note(data, src.items[i].name, what, skip);
	}
out:
	list_done(&src);
	list_done(&there);
	return err;
}
