/* journal.c — framing, tolerant scanning and durable appends of a journal.
 *
 * doc/design/journal.md is the normative format; in short, every record is
 *
 *   0  magic   u32 LE  "MCJ1"
 *   4  type    u16 LE
 *   6  zero    u16     must be 0
 *   8  length  u32 LE  payload bytes, <= JOURNAL_MAX_RECORD
 *  12  hcheck  u32 LE  low 32 bits of XXH3-64 of bytes 0..11
 *  16  payload
 *  16+length   check u64 LE  XXH3-64 of bytes 0..16+length-1 (header and payload)
 *
 * The file is read through a window of pread(2) chunks rather than mmap(2): an I/O
 * error under mmap is a SIGBUS that would take the whole daemon down, while the
 * contract wants -EIO and the other contexts untouched.  The window holds at most
 * one record plus a chunk.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include "mcpfs/journal.h"

#define HDR_SIZE 16u
#define SUM_SIZE 8u
#define FRAME_MAGIC 0x314a434du  /* "MCJ1" read as a little-endian u32 */
#define SCAN_CHUNK (1u << 20)    /* bytes per read while scanning */

#define WRITEBACK_STEP (1u << 20) /* appended bytes between writeback starts */

/* Owned by one context; the store's lock serialises every call.  While busy (a
 * sync runs without that lock, journal_sync_begin() to journal_sync_end()), the
 * syncing thread alone reads fd and synced, and nobody writes any field. */
struct journal {
	int fd;                   /* O_RDWR | O_APPEND; -1 while parked */
	uint64_t size;            /* bytes; end of the last record written */
	uint64_t synced;          /* bytes made durable by the last successful sync */
	uint64_t kicked;          /* writeback started (or synced) up to here */
	bool no_kick;             /* sync_file_range(2) is refused here */
	bool busy;                /* a sync runs without the owner's lock */
	bool orphan;              /* freed by its owner while busy */
	int failed;               /* 0, or the -errno that made appends stop */
	XXH3_state_t *xxh;        /* reused by every append */
};

/* --- frames ---------------------------------------------------------------- */

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void header_build(uint16_t type, size_t len, uint8_t hdr[HDR_SIZE])
{
	put_le32(hdr, FRAME_MAGIC);
	put_le16(hdr + 4, type);
	put_le16(hdr + 6, 0);
	put_le32(hdr + 8, (uint32_t)len);
	put_le32(hdr + 12, (uint32_t)XXH3_64bits(hdr, 12));
}

/* The header has its own checksum so that the length can be trusted before the
 * payload is read: a resynchronising scan rejects a false magic in O(1) instead
 * of hashing up to JOURNAL_MAX_RECORD bytes at every candidate. */
static bool header_valid(const uint8_t *hdr, size_t *len)
{
	if (get_le32(hdr) != FRAME_MAGIC || (hdr[6] | hdr[7]) != 0)
		return false;
	if (get_le32(hdr + 12) != (uint32_t)XXH3_64bits(hdr, 12))
		return false;
	*len = get_le32(hdr + 8);
	return *len <= JOURNAL_MAX_RECORD;
}

size_t journal_frame_size(size_t len)
{
	return HDR_SIZE + len + SUM_SIZE;
}

size_t journal_frame(uint16_t type, const void *payload, size_t len, void *out)
{
	uint8_t *p = out;

	header_build(type, len, p);
	if (len)
		memcpy(p + HDR_SIZE, payload, len);
	put_le64(p + HDR_SIZE + len, XXH3_64bits(p, HDR_SIZE + len));
	return journal_frame_size(len);
}

/* --- reading: a window over memory or a file -------------------------------- */

struct scan_src {
	const uint8_t *mem;   /* whole image (memory), or the window (file) */
	uint64_t size;        /* bytes in the image or file */
	int fd;               /* -1 for memory */
	uint64_t win_off;     /* file offset of mem[0] */
	size_t win_len;       /* bytes valid in mem */
	uint8_t *buf;         /* heap window (file only) */
	size_t buf_cap;
};

/* Reads len bytes at off into the window (file sources only). */
static int src_fill(struct scan_src *s, uint64_t off, size_t len)
{
	size_t want = len > SCAN_CHUNK ? len : SCAN_CHUNK;

	if (want > s->size - off)
		want = (size_t)(s->size - off);
	if (want > s->buf_cap) {
		uint8_t *nb = realloc(s->buf, want);

		if (!nb)
			return -ENOMEM;
		s->buf = nb;
		s->buf_cap = want;
	}
	s->mem = s->buf;
	s->win_off = off;
	s->win_len = 0;
	while (s->win_len < want) {
		ssize_t n = pread(s->fd, s->buf + s->win_len, want - s->win_len,
				  (off_t)(off + s->win_len));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)  /* an error, or the file shrank under us */
			return -EIO;
		s->win_len += (size_t)n;
	}
	return 0;
}

/* Points *p at len bytes at offset off.  1 when they exist, 0 when the image ends
 * first, -errno.  *p lives until the next call. */
static int src_at(struct scan_src *s, uint64_t off, size_t len, const uint8_t **p)
{
	if (off > s->size || len > s->size - off)
		return 0;
	if (s->fd >= 0 && (off < s->win_off || off + len > s->win_off + s->win_len)) {
		int r = src_fill(s, off, len);

		if (r < 0)
			return r;
	}
	*p = s->mem + (off - s->win_off);
	return 1;
}

/* Whether a whole valid record starts at off: 1 (type, payload and length set),
 * 0, -errno. */
static int frame_at(struct scan_src *s, uint64_t off, uint16_t *type, const uint8_t **payload,
		    size_t *len)
{
	const uint8_t *p;
	int r = src_at(s, off, HDR_SIZE, &p);

	if (r <= 0)
		return r;
	if (!header_valid(p, len))
		return 0;
	r = src_at(s, off, journal_frame_size(*len), &p);
	if (r <= 0)
		return r;
	if (get_le64(p + HDR_SIZE + *len) != XXH3_64bits(p, HDR_SIZE + *len))
		return 0;
	*type = (uint16_t)(p[4] | p[5] << 8);
	*payload = p + HDR_SIZE;
	return 1;
}

/* Points *p at the bytes from off that the window already holds (the rest of the
 * image for memory), reading a new chunk only when fewer than HDR_SIZE are there,
 * so that trying many false candidates does not reread the file each time.
 * *n receives the count.  0, -errno.  Needs off + HDR_SIZE <= size. */
static int src_avail(struct scan_src *s, uint64_t off, const uint8_t **p, size_t *n)
{
	if (off < s->win_off || off + HDR_SIZE > s->win_off + s->win_len) {
		int r = src_at(s, off, HDR_SIZE, p);

		if (r < 0)
			return r;
	}
	*p = s->mem + (off - s->win_off);
	*n = (size_t)(s->win_off + s->win_len - off);
	return 0;
}

/* Finds the next offset >= from where a valid record starts, or the image size
 * when none does.  Candidates are the magic's occurrences, each verified whole: a
 * valid header holds NUL bytes (its zero field) and JSON text never does, so no
 * payload can hide a frame that would be taken for a record here.  A candidate
 * whose header verifies costs a hash of its claimed length; random damage makes
 * such false candidates about 2^-32 rare, so the search stays linear in practice. */
static int resync(struct scan_src *s, uint64_t from, uint64_t *next)
{
	static const uint8_t magic[4] = { 'M', 'C', 'J', '1' };
	uint64_t off = from;

	*next = s->size;
	while (s->size - off >= HDR_SIZE) {
		const uint8_t *p, *hit;
		uint16_t type;
		size_t len, span;
		int r = src_avail(s, off, &p, &span);

		if (r < 0)
			return r;
		hit = memmem(p, span, magic, sizeof(magic));
		if (!hit) {
			off += span - (sizeof(magic) - 1);  /* a magic may straddle two reads */
			continue;
		}
		off += (uint64_t)(hit - p);
		r = frame_at(s, off, &type, &p, &len);
		if (r < 0)
			return r;
		if (r) {
			*next = off;
			return 0;
		}
		off++;
	}
	return 0;
}

/* From offset from on: a scan that starts in the middle begins at the first
 * valid record there (resync). */
static int scan_run(struct scan_src *s, uint64_t from, journal_record_fn *fn, void *data,
		    struct journal_report *rep)
{
	uint64_t off = 0;

	memset(rep, 0, sizeof(*rep));
	if (from) {
		int r = resync(s, from, &off);

		if (r < 0)
			return r;
		rep->good_end = off;
	}
	while (off < s->size) {
		const uint8_t *payload;
		uint16_t type;
		size_t len;
		uint64_t next;
		int r = frame_at(s, off, &type, &payload, &len);

		if (r < 0)
			return r;
		if (r == 0) {
			r = resync(s, off + 1, &next);
			if (r < 0)
				return r;
			if (next == s->size)
				break;  /* nothing valid follows: a torn tail */
			rep->bad_records++;
			rep->skipped_bytes += next - off;
			off = next;
			continue;
		}
		rep->records++;
		rep->good_end = off + journal_frame_size(len);
		r = fn ? fn(data, type, payload, len, off) : 0;
		if (r < 0)
			return r;
		off = rep->good_end;
	}
	rep->torn_bytes = s->size - rep->good_end;
	return 0;
}

/* fn may be NULL: the scan then only verifies and reports. */
int journal_scan_mem(const void *mem, size_t n, journal_record_fn *fn, void *data,
		     struct journal_report *rep)
{
	struct scan_src s = { .mem = mem, .size = n, .fd = -1, .win_len = n };

	return scan_run(&s, 0, fn, data, rep);
}

static int scan_fd_from(int fd, uint64_t tail, journal_record_fn *fn, void *data,
			struct journal_report *rep)
{
	struct scan_src s = { .fd = fd };
	struct stat st;
	int r;

	memset(rep, 0, sizeof(*rep));
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	s.size = (uint64_t)st.st_size;
	/* The scan is one forward pass. */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	r = scan_run(&s, tail && s.size > tail ? s.size - tail : 0, fn, data, rep);
	free(s.buf);
	return r;
}

static int scan_fd(int fd, journal_record_fn *fn, void *data, struct journal_report *rep)
{
	return scan_fd_from(fd, 0, fn, data, rep);
}

/* O_NONBLOCK only so that a FIFO given by mistake fails (not a regular file)
 * instead of hanging in open(2); it changes nothing for regular files. */
int journal_scan(const char *path, journal_record_fn *fn, void *data,
		 struct journal_report *rep)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int r;

	if (fd < 0) {
		memset(rep, 0, sizeof(*rep));
		return -errno;
	}
	r = scan_fd(fd, fn, data, rep);
	close(fd);
	return r;
}

int journal_scan_tail(const char *path, uint64_t tail, journal_record_fn *fn, void *data,
		      struct journal_report *rep)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int r;

	if (fd < 0) {
		memset(rep, 0, sizeof(*rep));
		return -errno;
	}
	r = scan_fd_from(fd, tail, fn, data, rep);
	close(fd);
	return r;
}

/* --- writing --------------------------------------------------------------- */

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
		unlink(path);  /* a create that failed must not leave the name taken */
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
	r = scan_fd(j->fd, NULL, NULL, rep);
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

int journal_open(const char *path, unsigned flags, struct journal_report *rep,
		 struct journal **ret)
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
		unlink(path);  /* a create that failed must not leave the name taken */
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
			    SYNC_FILE_RANGE_WRITE) < 0 && errno != EINTR && errno != EIO)
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
	header_build(type, len, hdr);
	XXH3_64bits_reset(j->xxh);
	XXH3_64bits_update(j->xxh, hdr, HDR_SIZE);
	if (len)  /* xxHash refuses a NULL input even when empty */
		XXH3_64bits_update(j->xxh, payload, len);
	put_le64(sum, XXH3_64bits_digest(j->xxh));
	/* One writev(2): the record goes out in one system call without a copy of a
	 * payload that may be megabytes. */
	iov[0] = (struct iovec){ hdr, HDR_SIZE };
	iov[1] = (struct iovec){ (void *)(uintptr_t)payload, len };
	iov[2] = (struct iovec){ sum, SUM_SIZE };
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
	r = ftruncate(fd, (off_t)keep) < 0 ? -errno : scan_fd(fd, NULL, NULL, &rep);
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
	*t = (struct journal_sync){ .fd = j->fd, .target = j->size, .keep = j->synced,
				    .new_fd = -1 };
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
		j->orphan = true;  /* journal_sync_end() frees it */
		return;
	}
	if (j->fd >= 0)
		close(j->fd);
	XXH3_freeState(j->xxh);
	free(j);
}
