/* storage_dir_files.c — the state-dir engine's small files (storage.h): the
 * root config (STATE/config: a temp file, fsync, rename, fsync of the
 * directory), a context's side file (STATE/contexts/NAME/meta: rename, not
 * fsynced) and the space reserve (an unlinked file, fallocate'd). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcpfs/settings.h"
#include "storage_dir_impl.h"

/* Reads dirfd/name whole (at most max bytes, -EFBIG beyond) into *out, NUL
 * added.  -ENOENT, -errno. */
static int read_small(int dirfd, const char *name, size_t max, void **out, size_t *len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	char *b = malloc(max + 2);
	size_t n = 0;
	ssize_t got = 0;
	while (b && n <= max && (got = read(fd, b + n, max + 1 - n)) > 0)
		n += (size_t)got;
	int r = !b ? -ENOMEM : got < 0 ? -errno : n > max ? -EFBIG : 0;
	close(fd);
	if (r < 0) {
		free(b);
		return r;
	}
	b[n] = '\0';
	*out = b;
	*len = n;
	return 0;
}

/* Replaces dirfd/name through name.tmp; with sync, fsynced (file, then the
 * directory) so that it is durable on return. */
static int write_small(int dirfd, const char *name, const void *data, size_t len, bool sync)
{
	char tmp[SDIR_PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = 0;
	for (size_t done = 0; r == 0 && done < len;) {
		ssize_t w = write(fd, (const char *)data + done, len - done);
		if (w < 0)
			r = -errno;
		else
			done += (size_t)w;
	}
	if (r == 0 && sync && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(dirfd, tmp, 0); /* no stale temp file (ENOSPC) */
	if (r == 0 && sync)
		fsync(dirfd);
	return r;
}

int sdir_defaults_get(struct storage *s, void **out, size_t *len)
{
	return read_small(sdir_of(s)->dir_fd, "config", SETTINGS_TEXT_MAX, out, len);
}

int sdir_defaults_set(struct storage *s, const void *text, size_t len)
{
	struct sdir *d = sdir_of(s);
	pthread_mutex_lock(&d->defaults_lock);
	int r = write_small(d->dir_fd, "config", text, len, true);
	pthread_mutex_unlock(&d->defaults_lock);
	return r;
}

/* A side file's name relative to STATE, under the lock. */
static int side_name(struct sdir *d, uint64_t id, char *out, size_t n)
{
	struct sdir_ctx *c = map_get_id(&d->by_id, id);
	char rel[SDIR_PATH_MAX];
	int r = c ? sdir_rel_dir(c, rel, sizeof(rel)) : -ENOENT;
	if (r == 0 && snprintf(out, n, "%s/meta", rel) >= (int)n)
		r = -ENAMETOOLONG;
	return r;
}

int sdir_meta_get(struct storage *s, uint64_t id, void **out, size_t *len)
{
	struct sdir *d = sdir_of(s);
	char name[SDIR_PATH_MAX];
	pthread_mutex_lock(&d->lock);
	int r = side_name(d, id, name, sizeof(name));
	if (r == 0) {
		r = read_small(d->dir_fd, name, STORAGE_MAX_SIDE, out, len);
		r = r == -ENOENT ? -ENODATA : r;
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* Not fsynced: the records are the truth, and a load rewrites the file. */
int sdir_meta_set(struct storage *s, uint64_t id, const void *data, size_t len)
{
	struct sdir *d = sdir_of(s);
	char name[SDIR_PATH_MAX];
	if (len > STORAGE_MAX_SIDE)
		return -EFBIG;
	pthread_mutex_lock(&d->lock);
	int r = side_name(d, id, name, sizeof(name));
	if (r == 0 && !len)
		r = unlinkat(d->dir_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	else if (r == 0)
		r = write_small(d->dir_fd, name, data, len, false);
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* --- the space reserve ------------------------------------------------------------ */

/* The file that holds the space: unlinked from the start, so nothing is left
 * behind by a crash.  -errno when none can be made. */
static int reserve_open(struct sdir *d)
{
	if (d->reserve_fd >= 0)
		return 0;
	int fd = openat(d->dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		fd = openat(d->dir_fd, "reserve.tmp", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			unlinkat(d->dir_fd, "reserve.tmp", 0);
	}
	if (fd < 0)
		return -errno;
	d->reserve_fd = fd;
	return 0;
}

/* Grows with posix_fallocate (-ENOSPC, -EDQUOT), shrinks with ftruncate; a
 * file that cannot be made promises nothing and holds nothing (0). */
int sdir_reserve(struct storage *s, uint64_t bytes)
{
	struct sdir *d = sdir_of(s);
	pthread_mutex_lock(&d->lock);
	int r = reserve_open(d);
	if (r < 0) {
		pthread_mutex_unlock(&d->lock);
		return 0;
	}
	struct stat st;
	uint64_t now = fstat(d->reserve_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	if (bytes > now)
		r = -posix_fallocate(d->reserve_fd, 0, (off_t)bytes);
	if (r < 0 || bytes < now) /* a failed allocation may leave some: dropped */
		r = ftruncate(d->reserve_fd, (off_t)(r < 0 ? now : bytes)) < 0 && r == 0 ? -errno
											 : r;
	pthread_mutex_unlock(&d->lock);
	return r;
}
