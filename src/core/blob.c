/* blob.c — content-addressed attachment files, stored once in STATE/blobs and
 * hard-linked into the contexts that refer to them (see blob.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "mcpfs/attach.h"
#include "mcpfs/blob.h"

#define CHUNK (64 * 1024) /* what a comparison or a hash reads at a time */

static void blob_name(char *out, const char *hex, bool tmp)
{
	snprintf(out, BLOB_NAME_MAX, "blob-%.32s%s", hex, tmp ? ".tmp" : "");
}

void blobs_init(struct blobs *b)
{
	pthread_mutex_init(&b->lock, NULL);
	b->fd = -1;
}

int blobs_open(struct blobs *b, int state_fd)
{
	if (mkdirat(state_fd, "blobs", 0700) < 0 && errno != EEXIST)
		return -errno;
	b->fd = openat(state_fd, "blobs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return b->fd < 0 ? -errno : 0;
}

void blobs_done(struct blobs *b)
{
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
	pthread_mutex_destroy(&b->lock);
}

/* A listing of the directory dirfd (its own open file, so dirfd stays as it
 * is), or NULL. */
static DIR *dir_open(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d && fd >= 0)
		close(fd);
	return d;
}

int blobs_sweep(struct blobs *b)
{
	DIR *d = dir_open(b->fd);
	int removed = 0;
	if (!d)
		return 0;
	struct dirent *de;
	pthread_mutex_lock(&b->lock);
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		struct stat st;
		if (!strcmp(n, ".") || !strcmp(n, "..") || fstatat(b->fd, n, &st, 0) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		/* A temp file, a name of no blob, or a blob no context holds. */
		if ((!attach_hash_valid(n) || st.st_nlink == 1) && unlinkat(b->fd, n, 0) == 0)
			removed++;
	}
	pthread_mutex_unlock(&b->lock);
	closedir(d);
	return removed;
}

int blob_stat(int dirfd, const char *hex, uint64_t size)
{
	char name[BLOB_NAME_MAX];
	struct stat st;
	blob_name(name, hex, false);
	if (fstatat(dirfd, name, &st, 0) < 0)
		return -errno;
	return (uint64_t)st.st_size == size ? 0 : -EBADMSG;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads up to n bytes at off of fd; bytes read, or -errno. */
static long read_at(int fd, void *buf, size_t n, uint64_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (long)got;
}

/* The inode of the shared copy of hex when it holds exactly these n bytes,
 * else 0. */
static ino_t shared_holds(struct blobs *b, const char *hex, const char *data, size_t n)
{
	int fd = openat(b->fd, hex, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return 0;
	bool same = fstat(fd, &st) == 0 && (uint64_t)st.st_size == n;
	char *chunk = same ? malloc(CHUNK) : NULL;
	same = same && chunk;
	for (size_t off = 0; same && off < n; off += CHUNK) {
		size_t k = n - off < CHUNK ? n - off : CHUNK;
		same = read_at(fd, chunk, k, off) == (long)k && !memcmp(chunk, data + off, k);
	}
	free(chunk);
	close(fd);
	return same ? st.st_ino : 0;
}

/* Whether the shared copy of hex is still the inode ino.  Under b->lock. */
static bool shared_is(struct blobs *b, const char *hex, ino_t ino)
{
	struct stat st;
	return fstatat(b->fd, hex, &st, 0) == 0 && st.st_ino == ino;
}

/* Whether the content of the file name in dirfd hashes to hex. */
static bool file_hash_is(int dirfd, const char *name, const char *hex)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	XXH3_state_t *st = fd >= 0 ? XXH3_createState() : NULL;
	char *chunk = st ? malloc(CHUNK) : NULL;
	bool ok = chunk && XXH3_128bits_reset(st) == XXH_OK;
	long got = 0;
	for (uint64_t off = 0; ok; off += (uint64_t)got) {
		got = read_at(fd, chunk, CHUNK, off);
		if (got <= 0)
			break;
		ok = XXH3_128bits_update(st, chunk, (size_t)got) == XXH_OK;
	}
	char h[33];
	if (ok && got == 0) {
		XXH128_hash_t v = XXH3_128bits_digest(st);
		snprintf(h, sizeof(h), "%016llx%016llx", (unsigned long long)v.high64,
			 (unsigned long long)v.low64);
	}
	ok = ok && got == 0 && !strcmp(h, hex);
	free(chunk);
	XXH3_freeState(st);
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Removes the shared copy of hex when no context holds it.  Under b->lock. */
static void release_locked(struct blobs *b, const char *hex)
{
	struct stat st;
	if (fstatat(b->fd, hex, &st, 0) == 0 && st.st_nlink == 1)
		unlinkat(b->fd, hex, 0);
}

/* Makes dirfd's blob-HASH a link to the shared copy (over any other file of
 * that name), and fsyncs dirfd.  Under b->lock.  0, -errno. */
static int link_in(struct blobs *b, int dirfd, const char *hex)
{
	char name[BLOB_NAME_MAX], tmp[BLOB_NAME_MAX];
	struct stat mine, shared;
	blob_name(name, hex, false);
	blob_name(tmp, hex, true);
	if (fstatat(dirfd, name, &mine, 0) == 0 && fstatat(b->fd, hex, &shared, 0) == 0 &&
	    mine.st_ino == shared.st_ino && mine.st_dev == shared.st_dev)
		return 0;
	unlinkat(dirfd, tmp, 0);
	int r = 0;
	if (linkat(b->fd, hex, dirfd, tmp, 0) < 0 || renameat(dirfd, tmp, dirfd, name) < 0)
		r = -errno;
	unlinkat(dirfd, tmp, 0);
	if (r == 0 && fsync(dirfd) < 0)
		r = -errno;
	return r;
}

/* Writes a new shared copy under a temp name; 0, -errno. */
static int write_temp(struct blobs *b, const char *tmp, const void *data, size_t n)
{
	int fd = openat(b->fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = write_all(fd, data, n);
	if (r == 0 && fdatasync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

int blob_put(struct blobs *b, int dirfd, const char *hex, const void *data, size_t n)
{
	/* Compared with no lock held; linked if it is still that inode. */
	ino_t seen = shared_holds(b, hex, data, n);
	int r = -ENOENT;
	if (seen) {
		pthread_mutex_lock(&b->lock);
		if (shared_is(b, hex, seen))
			r = link_in(b, dirfd, hex);
		pthread_mutex_unlock(&b->lock);
	}
	if (r != -ENOENT)
		return r;
	/* A new copy, written with no lock held; one per thread at a time. */
	char tmp[BLOB_NAME_MAX];
	snprintf(tmp, sizeof(tmp), "%.32s.%d.tmp", hex, (int)gettid());
	r = write_temp(b, tmp, data, n);
	pthread_mutex_lock(&b->lock);
	if (r == 0 && shared_holds(b, hex, data, n)) { /* put by another meanwhile (rare) */
		r = link_in(b, dirfd, hex);
	} else if (r == 0) {
		/* Over a damaged copy, if any: the contexts holding it keep it. */
		if (renameat(b->fd, tmp, b->fd, hex) < 0 || fsync(b->fd) < 0)
			r = -errno;
		if (r == 0 && (r = link_in(b, dirfd, hex)) < 0)
			release_locked(b, hex);
	}
	pthread_mutex_unlock(&b->lock);
	unlinkat(b->fd, tmp, 0);
	return r;
}

int blob_share(struct blobs *b, int dirfd, const char *hex)
{
	char name[BLOB_NAME_MAX];
	struct stat mine, shared;
	blob_name(name, hex, false);
	if (fstatat(dirfd, name, &mine, 0) < 0)
		return -errno;
	int r = 0;
	pthread_mutex_lock(&b->lock);
	if (fstatat(b->fd, hex, &shared, 0) < 0) {
		r = errno == ENOENT ? 1 : -errno;
		if (r == 1 && (linkat(dirfd, name, b->fd, hex, 0) < 0 || fsync(b->fd) < 0))
			r = -errno;
	} else if (shared.st_ino != mine.st_ino || shared.st_dev != mine.st_dev) {
		/* Two copies: this one gives way to the shared one if that is whole. */
		if (shared.st_size == mine.st_size && file_hash_is(b->fd, hex, hex) &&
		    (r = link_in(b, dirfd, hex)) == 0)
			r = 1;
	}
	pthread_mutex_unlock(&b->lock);
	return r;
}

long blob_pread(int dirfd, const char *hex, void *buf, size_t n, uint64_t off)
{
	char name[BLOB_NAME_MAX];
	blob_name(name, hex, false);
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	long got = read_at(fd, buf, n, off);
	close(fd);
	return got;
}

int blob_get(int dirfd, const char *hex, uint64_t size, struct buf *out)
{
	int r = blob_stat(dirfd, hex, size);
	if (r < 0)
		return r;
	size_t start = out->len;
	if ((r = buf_reserve(out, start + size)) < 0)
		return r;
	long got = blob_pread(dirfd, hex, out->data + start, size, 0);
	return attach_blob_kept(out, start, size, got, hex);
}

int blob_link(int from, int to, const char *hex)
{
	char name[BLOB_NAME_MAX];
	blob_name(name, hex, false);
	if (linkat(from, name, to, name, 0) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

void blob_remove(struct blobs *b, int dirfd, const char *hex)
{
	char name[BLOB_NAME_MAX];
	blob_name(name, hex, false);
	if (unlinkat(dirfd, name, 0) < 0)
		return;
	pthread_mutex_lock(&b->lock);
	release_locked(b, hex);
	pthread_mutex_unlock(&b->lock);
}

int blob_sweep(struct blobs *b, int dirfd, bool (*keep)(void *data, const char *hex), void *data)
{
	DIR *d = dir_open(dirfd);
	int removed = 0;
	if (!d)
		return 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		if (strncmp(n, "blob-", 5))
			continue;
		size_t len = strlen(n);
		bool tmp = len > 4 && !strcmp(n + len - 4, ".tmp");
		char hex[33];
		snprintf(hex, sizeof(hex), "%s", n + 5);
		bool blob = !tmp && len == 37 && attach_hash_valid(hex);
		if (blob && keep(data, hex))
			continue;
		if (unlinkat(dirfd, n, 0) < 0)
			continue;
		removed++;
		if (blob) {
			pthread_mutex_lock(&b->lock);
			release_locked(b, hex);
			pthread_mutex_unlock(&b->lock);
		}
	}
	closedir(d);
	return removed;
}
