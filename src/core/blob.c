/* blob.c — content-addressed attachment files (see blob.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcpfs/attach.h"
#include "mcpfs/blob.h"

static void blob_name(char *out, const char *hex, bool tmp)
{
	snprintf(out, BLOB_NAME_MAX, "blob-%.32s%s", hex, tmp ? ".tmp" : "");
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

int blob_put(int dirfd, const char *hex, const void *data, size_t n)
{
	char name[BLOB_NAME_MAX], tmp[BLOB_NAME_MAX];
	if (blob_stat(dirfd, hex, n) == 0)
		return 0;
	blob_name(name, hex, false);
	blob_name(tmp, hex, true);
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = write_all(fd, data, n);
	if (r == 0 && fdatasync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
		r = -errno;
	if (r == 0 && fsync(dirfd) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(dirfd, tmp, 0);
	return r;
}

long blob_pread(int dirfd, const char *hex, void *buf, size_t n, uint64_t off)
{
	char name[BLOB_NAME_MAX];
	blob_name(name, hex, false);
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = -errno;
			close(fd);
			return e;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	return (long)got;
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
	if (got < 0)
		return (int)got;
	if ((uint64_t)got != size)
		return -EBADMSG;
	out->len = start + size;
	out->data[out->len] = '\0'; /* the buffer keeps a byte for it (buf.h) */
	char h[33];
	attach_hash(out->data + start, size, h);
	if (strcmp(h, hex)) {
		out->len = start;
		return -EBADMSG;
	}
	return 0;
}

int blob_link(int from, int to, const char *hex)
{
	char name[BLOB_NAME_MAX];
	blob_name(name, hex, false);
	if (linkat(from, name, to, name, 0) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

void blob_remove(int dirfd, const char *hex)
{
	char name[BLOB_NAME_MAX];
	blob_name(name, hex, false);
	unlinkat(dirfd, name, 0);
}

int blob_sweep(int dirfd, bool (*keep)(void *data, const char *hex), void *data)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	int removed = 0;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		if (strncmp(n, "blob-", 5))
			continue;
		size_t len = strlen(n);
		bool tmp = len > 4 && !strcmp(n + len - 4, ".tmp");
		char hex[33];
		snprintf(hex, sizeof(hex), "%s", n + 5);
		if (tmp || len != 37 || !attach_hash_valid(hex) || !keep(data, hex)) {
			if (unlinkat(dirfd, n, 0) == 0)
				removed++;
		}
	}
	closedir(d);
	return removed;
}
