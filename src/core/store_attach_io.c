/* store_attach_io.c — the attach/ files as the front ends see them: list,
 * open, write, read, commit, remove (see store_attach.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcpfs/attach.h"
#include "mcpfs/clock.h"
#include "mcpfs/store_attach.h"
#include "store_impl.h"

static struct attach_file *find(struct context *c, const char *name, uint32_t seq)
{
	for (size_t i = 0; c && i < c->n_files; i++)
		if (name ? !strcmp(c->files[i].a.name, name) : c->files[i].seq == seq)
			return &c->files[i];
	return NULL;
}

static void fill_stat(const struct attach_file *f, struct attach_stat *st)
{
	st->seq = f->seq;
	snprintf(st->name, sizeof(st->name), "%s", f->a.name);
	st->size = f->a.size;
	st->type = f->a.type;
	st->mtime_ms = f->mtime_ms;
}

int context_attach_list(struct store *s, uint64_t id, struct attach_stat **v, size_t *n)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? 0 : -ENOENT;
	*v = NULL;
	*n = 0;
	if (c && c->n_files && !(*v = calloc(c->n_files, sizeof(**v))))
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && c && i < c->n_files; i++)
		fill_stat(&c->files[i], &(*v)[(*n)++]);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int context_attach_stat(struct store *s, uint64_t id, const char *name, uint32_t seq,
			struct attach_stat *out)
{
	pthread_mutex_lock(&s->lock);
	struct attach_file *f = find(store_get(s, id), name, seq);
	if (f)
		fill_stat(f, out);
	pthread_mutex_unlock(&s->lock);
	return f ? 0 : -ENOENT;
}

static struct attach_file *create(struct context *c, const char *name, char *why, size_t whylen,
				  int *err)
{
	const char *w;
	*err = attach_name_check(name, strlen(name), &w);
	if (*err < 0) {
		snprintf(why, whylen, "%s", w);
		return NULL;
	}
	if (c->n_files >= ATTACH_FILES_MAX) {
		snprintf(why, whylen,
			 "attach/ holds %d files, the most one message takes; '%s' is not kept",
			 ATTACH_FILES_MAX, name);
		*err = -ENOSPC;
		return NULL;
	}
	struct attach_file *f = attach_file_new(c, name);
	if (!f)
		*err = -ENOMEM;
	return f;
}

/* A committed file opened to be changed: its content back in memory. */
static int load_content(struct store *s, struct context *c, struct attach_file *f)
{
	if (!f->committed || f->data.len || !f->a.size)
		return 0;
	int r = attach_blob_get(s, c, f->a.hash, f->a.size, &f->data);
	f->text_valid = f->data.len;
	return r;
}

int context_attach_open(struct store *s, uint64_t id, const char *name, bool create_it, bool writer,
			bool trunc, uint32_t *seq, char *why, size_t whylen)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? 0 : -ENOENT;
	struct attach_file *f = find(c, name, 0);
	if (c && !f && create_it)
		f = create(c, name, why, whylen, &r);
	else if (c && !f)
		r = -ENOENT;
	if (f && writer) {
		if (trunc) {
			buf_reset(&f->data);
			f->a.size = 0;
			f->a.type = ATTACH_UNDECIDED;
			f->text_valid = 0;
			f->dirty = true;
		} else {
			r = load_content(s, c, f);
		}
		if (r == 0)
			f->writers++;
		f->mtime_ms = clock_wall_ms();
	}
	if (f && r == 0)
		*seq = f->seq;
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* The checks of a file's bytes so far; -errno with why. */
static int file_check(struct context *c, struct attach_file *f, size_t from, bool complete,
		      char *why, size_t whylen)
{
	const char *w = NULL;
	const char *p = f->data.data ? f->data.data : "";
	if (f->a.type == ATTACH_UNDECIDED) {
		int t = attach_sniff(p, f->data.len, complete, &w);
		if (t < 0) {
			snprintf(why, whylen, "attach/%s: %s; the file is not kept", f->a.name, w);
			return t;
		}
		f->a.type = t;
		from = 0;
	}
	if (f->a.type == ATTACH_TEXT) {
		long v = attach_text_check(
		    p, f->data.len, from < f->text_valid ? from : f->text_valid, complete, &w);
		if (v < 0) {
			snprintf(why, whylen, "attach/%s: %s; the file is not kept", f->a.name, w);
			return -EINVAL;
		}
		f->text_valid = (size_t)v;
	}
	if (attach_is_image(f->a.type) && f->data.len > ATTACH_IMAGE_MAX) {
		snprintf(why, whylen,
			 "attach/%s: an image is at most %u MiB (the API's limit); the file "
			 "is not kept",
			 f->a.name, ATTACH_IMAGE_MAX >> 20);
		return -EFBIG;
	}
	uint64_t total = 0;
	for (size_t i = 0; i < c->n_files; i++)
		total += c->files[i].a.size;
	if (total > ATTACH_TOTAL_MAX) {
		snprintf(why, whylen,
			 "attach/%s: the files of one message are at most %u MiB together; "
			 "the file is not kept",
			 f->a.name, ATTACH_TOTAL_MAX >> 20);
		return -ENOSPC;
	}
	return 0;
}

/* A refused file is not kept: a committed one leaves a DETACH record. */
static void refuse(struct context *c, struct attach_file *f, const char *why)
{
	if (f->committed) {
		struct attachment a = {.name = f->a.name};
		cJSON *o = record_detach_json(a.name, -1);
		if (o)
			context_journal_write(c, JOURNAL_DETACH, o, true);
	}
	attach_file_drop(c, f);
	snprintf(c->refused, sizeof(c->refused), "%s", why);
	c->refused_ms = clock_wall_ms();
}

int context_attach_write(struct store *s, uint64_t id, uint32_t seq, uint64_t off, const void *data,
			 size_t n, char *why, size_t whylen)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	struct attach_file *f = find(c, NULL, seq);
	int r = f ? 0 : -ENOENT;
	if (f && off + n > ATTACH_FILE_MAX) {
		snprintf(why, whylen, "attach/%s: a file is at most %u MiB; the file is not kept",
			 f->a.name, ATTACH_FILE_MAX >> 20);
		r = -EFBIG;
	} else if (f) {
		r = buf_write_at(&f->data, (size_t)off, data, n);
		f->a.size = f->data.len;
		f->dirty = true;
		f->mtime_ms = clock_wall_ms();
		if (r == 0)
			r = file_check(c, f, (size_t)off, false, why, whylen);
		else
			snprintf(why, whylen, "attach/%s: %s", f->a.name, strerror(-r));
	}
	if (r < 0 && f)
		refuse(c, f, why);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int context_attach_truncate(struct store *s, uint64_t id, uint32_t seq, uint64_t size, char *why,
			    size_t whylen)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	struct attach_file *f = find(c, NULL, seq);
	int r = f ? 0 : -ENOENT;
	if (f && size > ATTACH_FILE_MAX) {
		snprintf(why, whylen, "attach/%s: a file is at most %u MiB", f->a.name,
			 ATTACH_FILE_MAX >> 20);
		r = -EFBIG;
	} else if (f && (r = load_content(s, c, f)) == 0 &&
		   (r = buf_resize(&f->data, (size_t)size)) == 0) {
		f->a.size = size;
		f->dirty = true;
		if (f->text_valid > size)
			f->text_valid = (size_t)size;
		if (size < ATTACH_SNIFF_BYTES)
			f->a.type = ATTACH_UNDECIDED;
		r = file_check(c, f, f->text_valid, false, why, whylen);
	}
	if (r < 0 && r != -ENOENT && f)
		refuse(c, f, why);
	pthread_mutex_unlock(&s->lock);
	return r;
}

long context_attach_read(struct store *s, uint64_t id, uint32_t seq, uint64_t off, void *buf,
			 size_t n)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	struct attach_file *f = find(c, NULL, seq);
	long r = f ? 0 : -ENOENT;
	if (f && off < f->a.size) {
		if (n > f->a.size - off)
			n = (size_t)(f->a.size - off);
		if (f->data.len == f->a.size && f->data.data) {
			memcpy(buf, f->data.data + off, n);
			r = (long)n;
		} else if (f->committed) {
			r = storage_blob_read(s->st, c->slot->sid, f->a.hash, buf, n, off);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* The blob written with the lock released; then the ATTACH record, durable.
 * Called and returns with the lock held; *cp is looked up again. */
static int commit(struct store *s, struct context **cp, uint32_t seq, char *why, size_t whylen,
		  struct notes *n)
{
	struct context *c = *cp;
	struct attach_file *f = find(c, NULL, seq);
	if (!f || !f->dirty)
		return 0;
	int r = file_check(c, f, f->text_valid, true, why, whylen);
	if (r < 0) {
		refuse(c, f, why);
		return r;
	}
	if (!f->data.len) { /* an empty file: listed, never sent */
		f->dirty = false;
		return 0;
	}
	struct attachment a = {.type = f->a.type, .size = f->data.len};
	attach_hash(f->data.data, f->data.len, a.hash);
	a.raw = attach_estimate(a.type, f->data.data, f->data.len);
	void *copy = malloc(f->data.len);
	if (!copy) {
		snprintf(why, whylen, "attach/%s: cannot save it: %s", f->a.name, strerror(ENOMEM));
		return -ENOMEM;
	}
	memcpy(copy, f->data.data, f->data.len);
	f->dirty = false; /* a write meanwhile makes it dirty again */
	uint64_t sid = c->slot->sid;
	pthread_mutex_unlock(&s->lock);
	r = storage_blob_put(s->st, sid, a.hash, copy, a.size);
	free(copy);
	pthread_mutex_lock(&s->lock);
	uint64_t id = c->id;
	*cp = c = store_get(s, id);
	f = find(c, NULL, seq);
	if (!f)
		return c ? 0 : -ENOENT; /* removed meanwhile */
	if (r < 0) {
		f->dirty = true;
		snprintf(why, whylen, "attach/%s: cannot save it: %s", f->a.name, strerror(-r));
		return r;
	}
	if ((r = commit_sync_idle(s, cp)) < 0)
		return r;
	c = *cp;
	f = find(c, NULL, seq);
	if (!f)
		return 0;
	a.name = f->a.name;
	struct record_attach rec = {.name = a.name,
				    .type = attach_type_name(a.type),
				    .size = (int64_t)a.size,
				    .hash = a.hash,
				    .tokens = a.raw,
				    .ms = clock_wall_ms()};
	cJSON *o = record_attach_json(&rec);
	r = o ? context_journal_write(c, JOURNAL_ATTACH, o, false) : -ENOMEM;
	if (r == 0)
		r = commit_sync(s, cp, n);
	if (r < 0) {
		snprintf(why, whylen, "attach/%s: cannot save it: %s", a.name, strerror(-r));
		return r;
	}
	if ((f = find(*cp, NULL, seq))) {
		f->committed = true;
		memcpy(f->a.hash, a.hash, sizeof(a.hash));
		f->a.raw = a.raw;
		free(f->a.block);
		f->a.block = NULL;
	}
	attach_gc(s, *cp); /* the content it replaced */
	return 0;
}

int context_attach_flush(struct store *s, uint64_t id, uint32_t seq, char *why, size_t whylen)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? commit(s, &c, seq, why, whylen, &n) : -ENOENT;
	store_unlock_notify(s, &n);
	return r;
}

void context_attach_release(struct store *s, uint64_t id, uint32_t seq)
{
	struct notes n = {0};
	char why[WHY_MAX];
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	struct attach_file *f = find(c, NULL, seq);
	if (f && f->writers > 0)
		f->writers--;
	if (f && !f->writers) {
		int r = commit(s, &c, seq, why, sizeof(why), &n);
		if (r < 0 && c) {
			snprintf(c->refused, sizeof(c->refused), "%s", why);
			c->refused_ms = clock_wall_ms();
		}
		f = find(c, NULL, seq);
		if (f && !f->writers && !f->dirty) {
			buf_done(&f->data); /* read from its blob from now on */
			buf_init(&f->data, ATTACH_FILE_MAX);
		}
	}
	store_unlock_notify(s, &n);
}

int context_attach_remove(struct store *s, uint64_t id, const char *name)
{
	struct notes n = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	struct attach_file *f = find(c, name, 0);
	int r = f ? 0 : -ENOENT;
	if (f && f->committed) {
		r = commit_sync_idle(s, &c);
		cJSON *o = r == 0 ? record_detach_json(name, clock_wall_ms()) : NULL;
		if (o) {
			r = context_journal_write(c, JOURNAL_DETACH, o, false);
			if (r == 0)
				r = commit_sync(s, &c, &n);
		}
		f = find(c, name, 0);
	}
	if (r == 0 && f) {
		attach_file_drop(c, f);
		attach_gc(s, c);
	}
	store_unlock_notify(s, &n);
	return r;
}

int context_attach_add(struct store *s, uint64_t id, const char *name, const void *data, size_t n,
		       char *why, size_t whylen)
{
	uint32_t seq;
	int r = context_attach_open(s, id, name, true, true, true, &seq, why, whylen);
	if (r < 0)
		return r;
	/* In pieces as a writer's would come: the type and limits are checked as
	 * for a write(). */
	r = context_attach_write(s, id, seq, 0, data, n, why, whylen);
	if (r == 0)
		r = context_attach_flush(s, id, seq, why, whylen);
	if (r < 0 && r != -ENOENT) {
		pthread_mutex_lock(&s->lock);
		struct context *c = store_get(s, id);
		struct attach_file *f = find(c, NULL, seq);
		if (f)
			refuse(c, f, why);
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	context_attach_release(s, id, seq);
	return r;
}
