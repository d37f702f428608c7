/* storage_jdir.c — a state directory's journals as a read-only storage engine,
 * the source of an import (storage_journal_dir_open, see storage_copy.h).
 *
 * Ids are the positions in the listing made at open (1, 2, ...); seqs are the
 * valid records' positions in a journal, as the loader counts them.  A context's
 * created_ms is its CREATE record's "created_ms" (journal.md §4); its last seq
 * comes from one scan at open.  Its attachments' blobs are read (blob_read)
 * and listed (blob_sweep, which drops nothing here) for the copy. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "mcpfs/attach.h"
#include "mcpfs/blob.h"
#include "mcpfs/journal.h"
#include "mcpfs/record.h"
#include "mcpfs/storage_copy.h"
#include "mcpfs/store.h"

struct jdir_ctx {
	char *name;
	int64_t created_ms;
	uint64_t records;
};

struct jdir {
	struct storage base;
	char *dir;
	int lock_fd; /* STATE, flock'd */
	struct jdir_ctx *ctx;
	size_t n;
};

static struct jdir *jdir_of(struct storage *s)
{
	return (struct jdir *)s;
}

static int jdir_path(const struct jdir *j, const struct jdir_ctx *c, char *out, size_t n)
{
	int len = snprintf(out, n, "%s/contexts/%s/journal", j->dir, c->name);
	return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

/* The walk of one journal: records with seq in (after, after + max]. */
struct jdir_walk {
	storage_record_fn *fn;
	void *data;
	uint64_t seq, after, max, last;
};

#define JDIR_ENOUGH (-ECANCELED) /* stops a scan once max records were delivered */

static int jdir_record(void *data, uint16_t type, const void *payload, size_t len, uint64_t offset)
{
	struct jdir_walk *w = data;
	if (++w->seq <= w->after)
		return 0;
	if (w->max && w->seq > w->after + w->max)
		return JDIR_ENOUGH;
	w->last = w->seq;
	return w->fn ? w->fn(w->data, w->seq, type, payload, len) : 0;
}

static int jdir_load(struct storage *s, uint64_t id, uint64_t after, uint32_t max,
		     storage_record_fn *fn, void *data, uint64_t *last)
{
	struct jdir *j = jdir_of(s);
	char path[4200];
	struct jdir_walk w = {fn, data, 0, after, max, after};
	struct journal_report rep;
	int err =
	    id >= 1 && id <= j->n ? jdir_path(j, &j->ctx[id - 1], path, sizeof(path)) : -ENOENT;

	if (err == 0)
		err = journal_scan(path, jdir_record, &w, &rep);
	if (err == JDIR_ENOUGH)
		err = 0;
	if (last)
		*last = w.last;
	return err;
}

static int jdir_list(struct storage *s, storage_context_fn *fn, void *data)
{
	struct jdir *j = jdir_of(s);
	int err = 0;
	for (size_t i = 0; i < j->n && err == 0; i++) {
		struct storage_context c = {i + 1, j->ctx[i].name, j->ctx[i].created_ms,
					    j->ctx[i].records, 0};
		err = fn(data, &c);
	}
	return err;
}

/* A context's directory, opened (the caller closes it): -ENOENT, -errno. */
static int jdir_dir(struct jdir *j, uint64_t id)
{
	char path[4200];
	if (id < 1 || id > j->n)
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/contexts/%s", j->dir, j->ctx[id - 1].name);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* The attachments' blobs (blob.h's blob-HASH files), read only. */
static long jdir_blob_read(struct storage *s, uint64_t id, const char *hex, void *buf, size_t n,
			   uint64_t off)
{
	int fd = jdir_dir(jdir_of(s), id);
	if (fd < 0)
		return fd;
	long r = blob_pread(fd, hex, buf, n, off);
	close(fd);
	return r;
}

/* Read-only: calls keep for each blob the context holds, drops nothing. */
static int jdir_blob_sweep(struct storage *s, uint64_t id,
			   bool (*keep)(void *data, const char *hex), void *data)
{
	int fd = jdir_dir(jdir_of(s), id);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return fd < 0 ? fd : -errno;
	}
	struct dirent *de;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, "blob-", 5) && strlen(de->d_name) == 37 &&
		    attach_hash_valid(de->d_name + 5))
			keep(data, de->d_name + 5);
	closedir(d);
	return 0;
}

static void jdir_free(struct storage *s)
{
	struct jdir *j = jdir_of(s);
	for (size_t i = 0; i < j->n; i++)
		free(j->ctx[i].name);
	free(j->ctx);
	if (j->lock_fd >= 0)
		close(j->lock_fd);
	free(j->dir);
	free(j);
}

static const struct storage_ops jdir_ops = {
    .list = jdir_list,
    .load = jdir_load,
    .blob_read = jdir_blob_read,
    .blob_sweep = jdir_blob_sweep,
    .free = jdir_free,
};

/* created_ms from the CREATE record (the first, decoded by record.c: an
 * engine does not read payloads itself), and the count of records. */
static int jdir_created(void *data, uint64_t seq, uint16_t type, const void *payload, size_t len)
{
	struct jdir_ctx *c = data;
	if (seq != 1 || type != JOURNAL_CREATE)
		return 0;
	struct record r = {0};
	if (record_decode(&r, type, payload, len, NULL) == RECORD_OK &&
	    r.u.settings.created_ms >= 0)
		c->created_ms = r.u.settings.created_ms;
	record_release(&r);
	return 0;
}

static int jdir_add(struct jdir *j, const char *name, size_t *cap)
{
	if (j->n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		struct jdir_ctx *ctx = realloc(j->ctx, *cap * sizeof(*ctx));
		if (!ctx)
			return -ENOMEM;
		j->ctx = ctx;
	}
	struct jdir_ctx *c = &j->ctx[j->n];
	*c = (struct jdir_ctx){strdup(name), 0, 0};
	if (!c->name)
		return -ENOMEM;
	j->n++;
	/* one scan: the records counted, the first parsed for created_ms */
	struct jdir_walk w = {jdir_created, c, 0, 0, 0, 0};
	char path[4200];
	struct journal_report rep;
	int err = jdir_path(j, c, path, sizeof(path));
	if (err == 0)
		err = journal_scan(path, jdir_record, &w, &rep);
	c->records = w.last;
	return err == -ENOENT ? 0 : err; /* a directory without a journal: no records */
}

static int jdir_scan(struct jdir *j)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/contexts", j->dir);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	size_t cap = 0;
	int err = 0;
	struct dirent *de;
	while (err == 0 && (de = readdir(d)))
		if (store_name_check(de->d_name, strlen(de->d_name)) == 0)
			err = jdir_add(j, de->d_name, &cap);
	closedir(d);
	return err;
}

int storage_journal_dir_open(const char *dir, char *why, size_t whylen, struct storage **ret)
{
	struct jdir *j = calloc(1, sizeof(*j));
	if (!j || !(j->dir = strdup(dir))) {
		free(j);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	j->base.ops = &jdir_ops;
	j->lock_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err = j->lock_fd < 0 ? -errno : 0;
	if (err == 0 && flock(j->lock_fd, LOCK_EX | LOCK_NB) < 0)
		err = errno == EWOULDBLOCK ? -EBUSY : -errno;
	if (err == 0)
		err = jdir_scan(j);
	if (err == -EBUSY)
		snprintf(why, whylen, "state dir '%s' is in use by a running mcpfs: stop it first",
			 dir);
	else if (err < 0)
		snprintf(why, whylen, "cannot read state dir '%s': %s", dir, strerror(-err));
	if (err < 0) {
		jdir_free(&j->base);
		return err;
	}
	*ret = &j->base;
	return 0;
}
