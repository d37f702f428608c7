/* storage_dir_impl.h — what storage_dir.c (the state directory, contexts'
 * names), storage_dir_files.c (the config, side files, the reserve) and
 * storage_dir_sync.c (journals: appends, syncs, loads, descriptors; where a
 * context's are) share.  Private to those three files, which use each other
 * downward in that order: storage_dir.c on top, storage_dir_sync.c below. */
#ifndef MCPFS_CORE_STORAGE_DIR_IMPL_H
#define MCPFS_CORE_STORAGE_DIR_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "mcpfs/blob.h"
#include "mcpfs/journal.h"
#include "mcpfs/map.h"
#include "mcpfs/storage.h"

#define SDIR_PATH_MAX 4200

/* One context of the directory.  Under sdir->lock, except what a sync running
 * without it reads (journal.h: journal_sync_run). */
struct sdir_ctx {
	uint64_t id;
	char *name;		      /* heap; NULL: hidden, in trash/new-ID */
	struct journal *j;	      /* NULL until opened (open, append, create) */
	struct sdir_ctx *prev, *next; /* open journals, least recently used first */
	bool in_lru;		      /* its descriptor is open and counted */
	bool syncing;		      /* a sync runs without sdir->lock */
	bool removed;		      /* removed meanwhile: that sync frees it */
	uint64_t records;	      /* valid records in its journal, once opened */
};

struct sdir {
	struct storage base;
	pthread_mutex_t lock;
	pthread_mutex_t defaults_lock; /* config's temp file, taken before lock */
	char *dir;		       /* absolute */
	int dir_fd;		       /* STATE, flock'd */
	int contexts_fd;	       /* STATE/contexts */
	int lock_fd;		       /* flock'd STATE/lock */
	int reserve_fd;		       /* unlinked file holding reserved space, -1 none yet */
	struct blobs blobs;	       /* STATE/blobs (blob.h) */
	struct map by_id;	       /* id -> struct sdir_ctx */
	uint64_t next_id;
	struct sdir_ctx *lru_head, *lru_tail;
	size_t open_journals, fd_max;
};

static inline struct sdir *sdir_of(struct storage *s)
{
	return (struct sdir *)s;
}

/* storage_dir_sync.c: STATE/contexts/NAME/journal, or STATE/trash/new-ID/journal for a hidden
 * context (file "" gives the directory).  0, -ENAMETOOLONG. */
int sdir_path(const struct sdir *d, const struct sdir_ctx *c, const char *file, char *out,
	      size_t n);
/* The directory of c relative to STATE.  0, -ENAMETOOLONG. */
int sdir_rel_dir(const struct sdir_ctx *c, char *out, size_t n);
/* storage_dir_files.c's ops. */
int sdir_defaults_get(struct storage *s, void **out, size_t *len);
int sdir_defaults_set(struct storage *s, const void *text, size_t len);
int sdir_meta_get(struct storage *s, uint64_t id, void **out, size_t *len);
int sdir_meta_set(struct storage *s, uint64_t id, const void *data, size_t len);
int sdir_reserve(struct storage *s, uint64_t bytes);
/* Under the lock: the open journals' accounting (storage_dir_sync.c). */
void sdir_lru_forget(struct sdir *d, struct sdir_ctx *c);
/* Frees c's journal and memory (not busy) or marks it for its sync to free. */
void sdir_ctx_drop(struct sdir *d, struct sdir_ctx *c);
/* storage_dir_sync.c's ops. */
int sdir_append(struct storage *s, uint64_t id, uint16_t type, const void *payload, size_t len,
		unsigned flags, uint64_t *seq);
int sdir_sync(struct storage *s, uint64_t id);
int sdir_load(struct storage *s, uint64_t id, uint64_t after, uint32_t max, storage_record_fn *fn,
	      void *data, uint64_t *last);
int sdir_open(struct storage *s, uint64_t id, struct storage_report *rep);
int sdir_failed(struct storage *s, uint64_t id);
int sdir_tail(struct storage *s, uint64_t id, uint64_t bytes, storage_record_fn *fn, void *data);
/* storage_dir_blob.c: a context's directory, opened (the caller closes it):
 * -ENOENT, -errno; and the blob ops (blob.h's files). */
int sdir_context_fd(struct sdir *d, uint64_t id);
int sdir_blob_put(struct storage *s, uint64_t id, const char *hex, const void *data, size_t n);
long sdir_blob_read(struct storage *s, uint64_t id, const char *hex, void *buf, size_t n,
		    uint64_t off);
int sdir_blob_stat(struct storage *s, uint64_t id, const char *hex, uint64_t size);
int sdir_blob_link(struct storage *s, uint64_t from, uint64_t to, const char *hex);
int sdir_blob_sweep(struct storage *s, uint64_t id, bool (*keep)(void *data, const char *hex),
		    void *data);
/* Counts a journal just opened in the bound, parking others first. */
void sdir_make_room(struct sdir *d);
void sdir_opened(struct sdir *d, struct sdir_ctx *c);

#endif
