/* storage_dir_blob.c — the state-dir engine's attachment blobs (storage.h's
 * blob_* ops): blob.h's files, STATE/blobs/HASH shared and hard-linked into
 * each context's directory as blob-HASH (doc/design/journal.md §8).  Each op
 * opens the context's directory, calls blob.c and closes it; the files and
 * their rules are blob.c's, unchanged.  Never calls storage_dir.c (whose ops
 * table points here). */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "mcpfs/blob.h"
#include "storage_dir_impl.h"

int sdir_context_fd(struct sdir *d, uint64_t id)
{
	char rel[SDIR_PATH_MAX];
	pthread_mutex_lock(&d->lock);
	struct sdir_ctx *c = map_get_id(&d->by_id, id);
	int r = c ? sdir_rel_dir(c, rel, sizeof(rel)) : -ENOENT;
	if (r == 0 && (r = openat(d->dir_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		r = -errno;
	pthread_mutex_unlock(&d->lock);
	return r;
}

int sdir_blob_put(struct storage *s, uint64_t id, const char *hex, const void *data, size_t n)
{
	if (n > STORAGE_MAX_BLOB)
		return -EFBIG;
	int fd = sdir_context_fd(sdir_of(s), id);
	if (fd < 0)
		return fd;
	int r = blob_put(&sdir_of(s)->blobs, fd, hex, data, n);
	close(fd);
	return r;
}

long sdir_blob_read(struct storage *s, uint64_t id, const char *hex, void *buf, size_t n,
		    uint64_t off)
{
	int fd = sdir_context_fd(sdir_of(s), id);
	if (fd < 0)
		return fd;
	long r = blob_pread(fd, hex, buf, n, off);
	close(fd);
	return r;
}

int sdir_blob_stat(struct storage *s, uint64_t id, const char *hex, uint64_t size)
{
	int fd = sdir_context_fd(sdir_of(s), id);
	if (fd < 0)
		return fd;
	int r = blob_stat(fd, hex, size);
	close(fd);
	return r;
}

int sdir_blob_link(struct storage *s, uint64_t from, uint64_t to, const char *hex)
{
	int ffd = sdir_context_fd(sdir_of(s), from);
	int tfd = sdir_context_fd(sdir_of(s), to);
	int r = ffd < 0 ? ffd : tfd < 0 ? tfd : blob_link(ffd, tfd, hex);
	if (r == 0 && fsync(tfd) < 0)
		r = -errno;
	if (ffd >= 0)
		close(ffd);
	if (tfd >= 0)
		close(tfd);
	return r;
}

/* A kept blob that an earlier version stored in the context's directory only
 * is shared (STATE/blobs) on the way: blob_share does nothing to one that is
 * shared already. */
struct share_keep {
	struct blobs *b;
	int fd;
	bool (*keep)(void *data, const char *hex);
	void *data;
};

static bool keep_shared(void *data, const char *hex)
{
	struct share_keep *k = data;
	if (!k->keep(k->data, hex))
		return false;
	blob_share(k->b, k->fd, hex); /* else it stays this context's own copy */
	return true;
}

int sdir_blob_sweep(struct storage *s, uint64_t id, bool (*keep)(void *data, const char *hex),
		    void *data)
{
	int fd = sdir_context_fd(sdir_of(s), id);
	if (fd < 0)
		return fd;
	struct share_keep k = {&sdir_of(s)->blobs, fd, keep, data};
	int r = blob_sweep(k.b, fd, keep_shared, &k);
	close(fd);
	return r;
}
