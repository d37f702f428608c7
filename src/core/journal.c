/* journal.c — framing and tolerant scanning of a journal; journal_write.c
 * appends, syncs and recovers.
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

#include "journal_impl.h"

#define FRAME_MAGIC 0x314a434du /* "MCJ1" read as a little-endian u32 */
#define SCAN_CHUNK (1u << 20)	/* bytes per read while scanning */

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

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

void journal_header(uint16_t type, size_t len, uint8_t hdr[HDR_SIZE])
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

	journal_header(type, len, p);
	if (len)
		memcpy(p + HDR_SIZE, payload, len);
	put_le64(p + HDR_SIZE + len, XXH3_64bits(p, HDR_SIZE + len));
	return journal_frame_size(len);
}

/* --- reading: a window over memory or a file -------------------------------- */

struct scan_src {
	const uint8_t *mem; /* whole image (memory), or the window (file) */
	uint64_t size;	    /* bytes in the image or file */
	int fd;		    /* -1 for memory */
	uint64_t win_off;   /* file offset of mem[0] */
	size_t win_len;	    /* bytes valid in mem */
	uint8_t *buf;	    /* heap window (file only) */
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
		ssize_t n =
		    pread(s->fd, s->buf + s->win_len, want - s->win_len, (off_t)(off + s->win_len));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) /* an error, or the file shrank under us */
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
	static const uint8_t magic[4] = {'M', 'C', 'J', '1'};
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
			off += span - (sizeof(magic) - 1); /* a magic may straddle two reads */
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
				break; /* nothing valid follows: a torn tail */
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
	struct scan_src s = {.mem = mem, .size = n, .fd = -1, .win_len = n};

	return scan_run(&s, 0, fn, data, rep);
}

static int scan_fd_from(int fd, uint64_t tail, journal_record_fn *fn, void *data,
			struct journal_report *rep)
{
	struct scan_src s = {.fd = fd};
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

int journal_scan_fd(int fd, journal_record_fn *fn, void *data, struct journal_report *rep)
{
	return scan_fd_from(fd, 0, fn, data, rep);
}

/* O_NONBLOCK only so that a FIFO given by mistake fails (not a regular file)
 * instead of hanging in open(2); it changes nothing for regular files. */
int journal_scan(const char *path, journal_record_fn *fn, void *data, struct journal_report *rep)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int r;

	if (fd < 0) {
		memset(rep, 0, sizeof(*rep));
		return -errno;
	}
	r = journal_scan_fd(fd, fn, data, rep);
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
