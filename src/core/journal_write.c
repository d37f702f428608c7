/* journal_write.c — durable appends of a journal, syncs without the owner's
 * lock, recovery after a failed sync, and parking its descriptor (see
 * journal.h; doc/design/journal.md §6 is the normative description).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include "journal_impl.h"

#define WRITEBACK_STEP (1u << 20) /* appended bytes between writeback starts */

/* A new file's name is durable only once its directory is synced. */
static int fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : NULL;
	int fd, r = 0;

	if (slash && !dir)
		return -ENOMEM;
	fd = open(dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

static int open_new(struct journal *j, const char *path)
{
	int r;

	j->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (j->fd < 0)
		return -errno;
	r = fsync(j->fd) < 0 ? -errno : fsync_parent(path);
	if (r < 0)
		unlink(path); /* a create that failed must not leave the name taken */
	return r;
}

/* Without JOURNAL_REPAIR a torn tail is left as evidence and the open fails with
 * -EBADMSG: appending after it would turn it into a corrupt middle record. */
static int open_existing(struct journal *j, const char *path, unsigned flags,
			 struct journal_report *rep)
{
	int r;

	j->fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
	if (j->fd < 0)
		return -errno;
	r = journal_scan_fd(j->fd, NULL, NULL, rep);
	if (r < 0)
		return r;
	if (rep->torn_bytes) {
		if (!(flags & JOURNAL_REPAIR))
			return -EBADMSG;
		if (ftruncate(j->fd, (off_t)rep->good_end) < 0)
			return -errno;
	}
	j->size = j->kicked = j->synced = rep->good_end;
	return fsync(j->fd) < 0 ? -errno : 0;
}

int journal_open(const char *path, unsigned flags, struct journal_report *rep, struct journal **ret)
{
	struct journal_report dummy;
	struct journal *j;
	int r;

	*ret = NULL;
	if (!rep)
		rep = &dummy;
	memset(rep, 0, sizeof(*rep));
	if (flags & ~(JOURNAL_CREATE_NEW | JOURNAL_REPAIR))
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->fd = -1;
	j->xxh = XXH3_createState();
	if (!j->xxh) {
		r = -ENOMEM;
		goto fail;
	}
	r = (flags & JOURNAL_CREATE_NEW) ? open_new(j, path) : open_existing(j, path, flags, rep);
	if (r < 0)
		goto fail;
	*ret = j;
	return 0;
fail:
	journal_free(j);
	return r;
}

/* One fsync of the file covers both its creation and the first record, where
 * creating (fsync) and then appending (fsync again) took two: a context is made
 * with three fsyncs in all (file, its directory, and the store's contexts
 * directory) instead of four. */
int journal_create(const char *path, uint16_t type, const void *payload, size_t len,
		   struct journal **ret)
{
	struct journal *j = calloc(1, sizeof(*j));
	int r;

	*ret = NULL;
	if (!j)
		return -ENOMEM;
	j->fd = -1;
	j->xxh = XXH3_createState();
	if (!j->xxh) {
		journal_free(j);
		return -ENOMEM;
	}
	j->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (j->fd < 0) {
		r = -errno;
		journal_free(j);
		return r;
	}
	r = journal_append(j, type, payload, len, false);
	if (r == 0)
		r = fsync(j->fd) < 0 ? -errno : fsync_parent(path);
	j->synced = j->size;
	if (r < 0) {
		unlink(path); /* a create that failed must not leave the name taken */
		journal_free(j);
		return r;
	}
	*ret = j;
	return 0;
}

static int write_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* After a failed fsync the kernel may have dropped the dirty pages and cleared
 * the error, so what is on disk is unknown and a retry could report a success
 * that is not one.  The journal stops taking appends; reopening rescans the file
 * and finds out what survived. */
static int journal_fail(struct journal *j, int err)
{
	if (!j->failed)
		j->failed = err;
	return err;
}

/* A reply streaming in is appended without fsync, then committed with one: start
 * the disk writes every WRITEBACK_STEP bytes, so that the commit waits for the
 * last step only, not for megabytes (a 64 MiB reply's fdatasync took ~80 ms).
 * Only a hint: SYNC_FILE_RANGE_WRITE neither waits nor consumes a write error,
 * which the commit's fdatasync still reports. */
static void writeback_kick(struct journal *j)
{
	if (j->no_kick || j->kicked > j->size || j->size - j->kicked < WRITEBACK_STEP)
		return;
	if (sync_file_range(j->fd, (off_t)j->kicked, (off_t)(j->size - j->kicked),
			    SYNC_FILE_RANGE_WRITE) < 0 &&
	    errno != EINTR && errno != EIO)
		j->no_kick = true;
	j->kicked = j->size;
}

int journal_append(struct journal *j, uint16_t type, const void *payload, size_t len, bool sync)
{
	uint8_t hdr[HDR_SIZE], sum[SUM_SIZE];
	struct iovec iov[3];
	uint64_t prev = j->size;
	int r;

	if (j->failed)
		return j->failed;
	if (j->busy)
		return -EBUSY;
	if (j->fd < 0)
		return -EBADF;
	if (len > JOURNAL_MAX_RECORD)
		return -EFBIG;
	journal_header(type, len, hdr);
	XXH3_64bits_reset(j->xxh);
	XXH3_64bits_update(j->xxh, hdr, HDR_SIZE);
	if (len) /* xxHash refuses a NULL input even when empty */
		XXH3_64bits_update(j->xxh, payload, len);
	put_le64(sum, XXH3_64bits_digest(j->xxh));
	/* One writev(2): the record goes out in one system call without a copy of a
	 * payload that may be megabytes. */
	iov[0] = (struct iovec){hdr, HDR_SIZE};
	iov[1] = (struct iovec){(void *)(uintptr_t)payload, len};
	iov[2] = (struct iovec){sum, SUM_SIZE};
	r = write_all(j->fd, iov, 3);
	if (r < 0) {
		/* No partial record may stay: the next append would follow it and the
		 * scan would report it as corrupt. */
		if (ftruncate(j->fd, (off_t)prev) < 0)
			return journal_fail(j, r);
		return r;
	}
	j->size = prev + journal_frame_size(len);
	if (!sync) {
		writeback_kick(j);
		return 0;
	}
	j->kicked = j->size;
	if (fdatasync(j->fd) < 0) {
		r = -errno;
		/* The caller is told the commit failed; drop the record if we still can
		 * so that a reload agrees.  Its failure changes nothing: the journal
		 * fails either way.  (A (void) cast does not silence glibc's
		 * warn_unused_result under _FORTIFY_SOURCE.) */
		int t = ftruncate(j->fd, (off_t)prev);
		(void)t;
		j->size = prev;
		return journal_fail(j, r);
	}
	j->synced = j->size;
	return 0;
}

/* fdatasync is enough: an append's size change is metadata needed to read the
 * data back, which fdatasync flushes. */
int journal_sync(struct journal *j)
{
	if (j->failed)
		return j->failed;
	if (j->busy)
		return -EBUSY;
	if (j->fd < 0)
		return -EBADF;
	j->kicked = j->size;
	if (fdatasync(j->fd) < 0)
		return journal_fail(j, -errno);
	j->synced = j->size;
	return 0;
}

uint64_t journal_size(const struct journal *j)
{
	return j->size;
}

uint64_t journal_synced(const struct journal *j)
{
	return j->synced;
}

bool journal_busy(const struct journal *j)
{
	return j->busy;
}

int journal_failed(const struct journal *j)
{
	return j->failed;
}

bool journal_parked(const struct journal *j)
{
	return j->fd < 0;
}

/* --- syncing without the owner's lock, and recovering -------------------------- */

/* Opens path anew, drops everything after keep (what the last good sync covered),
 * verifies what is left, truncates a torn tail and makes the rest durable. */
static int reopen_at(const char *path, uint64_t keep, int *fd_out, uint64_t *size_out)
{
	struct journal_report rep;
	int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
	int r;

	if (fd < 0)
		return -errno;
	r = ftruncate(fd, (off_t)keep) < 0 ? -errno : journal_scan_fd(fd, NULL, NULL, &rep);
	if (r == 0 && rep.torn_bytes && ftruncate(fd, (off_t)rep.good_end) < 0)
		r = -errno;
	if (r == 0 && fdatasync(fd) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		return r;
	}
	*fd_out = fd;
	*size_out = rep.good_end;
	return 0;
}

static void journal_swap_fd(struct journal *j, int fd, uint64_t size)
{
	if (j->fd >= 0)
		close(j->fd);
	j->fd = fd;
	j->size = j->synced = j->kicked = size;
	j->failed = 0;
}

int journal_recover(struct journal *j, const char *path)
{
	int fd;
	uint64_t size;
	int r;

	if (j->busy)
		return -EBUSY;
	r = reopen_at(path, j->synced, &fd, &size);
	if (r < 0)
		return journal_fail(j, r);
	journal_swap_fd(j, fd, size);
	return 0;
}

int journal_sync_begin(struct journal *j, struct journal_sync *t)
{
	if (j->failed)
		return j->failed;
	if (j->busy)
		return -EBUSY;
	if (j->fd < 0)
		return -EBADF;
	if (j->synced == j->size)
		return 0;
	j->busy = true;
	j->kicked = j->size;
	*t = (struct journal_sync){.fd = j->fd, .target = j->size, .keep = j->synced, .new_fd = -1};
	return 1;
}

void journal_sync_run(struct journal_sync *t, const char *path)
{
	t->err = fdatasync(t->fd) < 0 ? -errno : 0;
	if (t->err && path)
		t->recover_err = reopen_at(path, t->keep, &t->new_fd, &t->new_size);
}

int journal_sync_end(struct journal *j, const struct journal_sync *t)
{
	j->busy = false;
	if (j->orphan) {
		if (t->new_fd >= 0)
			close(t->new_fd);
		journal_free(j);
		return -ESTALE;
	}
	if (t->err == 0) {
		j->synced = t->target;
		return 0;
	}
	if (t->new_fd >= 0)
		journal_swap_fd(j, t->new_fd, t->new_size);
	else
		journal_fail(j, t->err);
	return t->err;
}

int journal_park(struct journal *j)
{
	if (j->busy)
		return -EBUSY;
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
	return 0;
}

/* The file must be as it was left: anything else wrote to it meanwhile. */
int journal_unpark(struct journal *j, const char *path)
{
	struct stat st;

	if (j->fd >= 0)
		return 0;
	j->fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
	if (j->fd < 0)
		return -errno;
	if (fstat(j->fd, &st) < 0 || (uint64_t)st.st_size != j->size)
		return journal_fail(j, -EIO);
	return 0;
}

void journal_free(struct journal *j)
{
	if (!j)
		return;
	if (j->busy) {
		j->orphan = true; /* journal_sync_end() frees it */
		return;
	}
	if (j->fd >= 0)
		close(j->fd);
	XXH3_freeState(j->xxh);
	free(j);
}
