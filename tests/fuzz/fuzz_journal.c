/* fuzz_journal.c — the journal framing and tolerant scan (src/core/journal.c).
 *
 * One input is read two ways.
 *
 * As a journal image, scanned by journal_scan_mem and, through a memfd, by
 * journal_scan.  Checked: every delivered record is a valid frame of the image
 * (rebuilt with journal_frame, byte for byte), in order, without overlap; the
 * report adds up (records, bad records and skipped bytes, good_end at the end of
 * the last record, torn bytes after it); a scan started at a delivered record
 * finds the same records from there; a callback's error stops the scan; the file
 * scan reports exactly what the memory scan does.  Each delivered payload also
 * goes through the loader's decoder (record.h), as its type and as every type.
 *
 * As a recipe: a 4-byte header (damage mode, position, value), then records
 * "TYPE PAYLOAD" separated by LF, framed into an image (NUL bytes in payloads
 * become spaces: payloads are JSON, which never holds a NUL, and that is what
 * keeps a frame from hiding inside a payload, doc/design/journal.md §3).  The
 * image is then damaged: one byte flipped, the file truncated, garbage inserted
 * between two records, or the tail zeroed (a crash on a file system that had
 * extended the file but not written it).  Checked, exactly: every record the
 * damage did not touch is delivered with its type, payload and offset, the
 * damaged ones are one bad record (followed by a good one) or the torn tail,
 * and good_end, torn_bytes and skipped_bytes say so.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mcpfs/journal.h"
#include "mcpfs/record.h"
#include "fuzz.h"

#define MAX_RECORDS 32
#define HDR 16u

struct rec {
	uint16_t type;
	const uint8_t *payload;
	size_t len;
	uint64_t off;
};

struct seen {
	const uint8_t *base;
	size_t size;
	struct rec *v;
	size_t n, cap;
	uint64_t end;	    /* end of the last record delivered */
	size_t stop_at;	    /* fail with -ECANCELED at this record (1-based), 0 never */
	bool check_pointer; /* payload must point into base (memory scans) */
};

/* The loader's decoder (record.h) on a delivered payload: as its own type and,
 * for a small one, as every type, its answer is one of those it names, and a
 * decoded string lies within what the payload can hold. */
static void decode_checked(uint16_t type, const void *payload, size_t len)
{
	struct record r = {0};
	const char *why = NULL;
	int ret = record_decode(&r, type, payload, len, &why);
	FUZZ_CHECK(ret == RECORD_OK || ret == RECORD_IGNORED || ret == RECORD_UNKNOWN ||
		   ret == -EINVAL || ret == -ENOMEM);
	FUZZ_CHECK(ret == RECORD_OK || ret == -ENOMEM || why != NULL);
	FUZZ_CHECK((ret == RECORD_UNKNOWN) == (ret >= 0 && record_type_name(type) == NULL));
	if (ret == RECORD_OK && type == JOURNAL_USER)
		FUZZ_CHECK(r.u.user.turn > 0 && r.u.user.text && r.u.user.text_len <= len);
	if (ret == RECORD_OK && type == JOURNAL_REPLY_PART)
		FUZZ_CHECK(r.u.part.text_len <= len && r.u.part.thinking_len <= len);
	if (ret == RECORD_OK && type == JOURNAL_SUMMARY)
		FUZZ_CHECK(r.u.summary.first_turn <= r.u.summary.last_turn &&
			   r.u.summary.text_len <= len);
	record_release(&r);
}

static void decode_all(uint16_t type, const void *payload, size_t len)
{
	decode_checked(type, payload, len);
	for (uint16_t t = 1; len <= 4096 && t <= JOURNAL_DETACH + 1; t++)
		if (t != type)
			decode_checked(t, payload, len);
}

static int on_record(void *data, uint16_t type, const void *payload, size_t len, uint64_t off)
{
	struct seen *s = data;
	size_t fs = journal_frame_size(len);

	FUZZ_CHECK(off >= s->end);
	FUZZ_CHECK(off <= s->size && fs <= s->size - off);
	FUZZ_CHECK(len <= JOURNAL_MAX_RECORD);
	if (s->check_pointer)
		FUZZ_CHECK((const uint8_t *)payload == s->base + off + HDR);
	/* The record is a valid frame of exactly these bytes. */
	uint8_t *frame = malloc(fs);
	FUZZ_ALLOC(frame);
	FUZZ_CHECK(journal_frame(type, payload, len, frame) == fs);
	FUZZ_CHECK(memcmp(frame, s->base + off, fs) == 0);
	free(frame);
	decode_all(type, payload, len);
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		FUZZ_ALLOC(s->v);
	}
	s->v[s->n++] = (struct rec){type, s->base + off + HDR, len, off};
	s->end = off + fs;
	return s->n == s->stop_at ? -ECANCELED : 0;
}

static int scan(const uint8_t *img, size_t size, size_t stop_at, struct seen *s,
		struct journal_report *rep)
{
	memset(s, 0, sizeof(*s));
	s->base = img;
	s->size = size;
	s->stop_at = stop_at;
	s->check_pointer = true;
	return journal_scan_mem(img, size, on_record, s, rep);
}

static bool reports_equal(const struct journal_report *a, const struct journal_report *b)
{
	return a->records == b->records && a->bad_records == b->bad_records &&
	       a->skipped_bytes == b->skipped_bytes && a->good_end == b->good_end &&
	       a->torn_bytes == b->torn_bytes;
}

/* journal_scan over the same bytes in a memfd: the file path of the scanner. */
static void check_file_scan(const uint8_t *img, size_t size, const struct seen *mem,
			    const struct journal_report *mrep)
{
	int fd = memfd_create("fuzz-journal", MFD_CLOEXEC);
	char path[64];
	struct journal_report rep;
	struct seen s = {.base = img, .size = size};

	if (fd < 0)
		return; /* no memfd here: the memory scan was checked anyway */
	FUZZ_CHECK(size == 0 || write(fd, img, size) == (ssize_t)size);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	FUZZ_CHECK(journal_scan(path, on_record, &s, &rep) == 0);
	FUZZ_CHECK(reports_equal(&rep, mrep));
	FUZZ_CHECK(s.n == mem->n);
	for (size_t i = 0; i < s.n; i++)
		FUZZ_CHECK(s.v[i].off == mem->v[i].off && s.v[i].type == mem->v[i].type &&
			   s.v[i].len == mem->v[i].len);
	free(s.v);
	close(fd);
}

static void check_image(const uint8_t *img, size_t size)
{
	struct journal_report rep, rep2;
	struct seen s, s2;
	uint64_t framed = 0;

	FUZZ_CHECK(scan(img, size, 0, &s, &rep) == 0);
	FUZZ_CHECK(rep.records == s.n);
	FUZZ_CHECK(rep.good_end == s.end && rep.good_end <= size);
	FUZZ_CHECK(rep.torn_bytes == size - rep.good_end);
	FUZZ_CHECK(rep.bad_records <= rep.records);
	FUZZ_CHECK(rep.skipped_bytes >= rep.bad_records);
	FUZZ_CHECK(rep.bad_records || rep.skipped_bytes == 0);
	for (size_t i = 0; i < s.n; i++)
		framed += journal_frame_size(s.v[i].len);
	FUZZ_CHECK(framed + rep.skipped_bytes == rep.good_end);

	if (s.n) {
		/* From a delivered record on, the scan sees the same records. */
		const struct rec *from = &s.v[s.n / 2];
		FUZZ_CHECK(scan(img + from->off, size - from->off, 0, &s2, &rep2) == 0);
		FUZZ_CHECK(s2.n == s.n - s.n / 2);
		for (size_t i = 0; i < s2.n; i++)
			FUZZ_CHECK(s2.v[i].off + from->off == s.v[s.n / 2 + i].off);
		FUZZ_CHECK(rep2.good_end + from->off == rep.good_end);
		FUZZ_CHECK(rep2.torn_bytes == rep.torn_bytes);
		free(s2.v);
		/* A callback's error stops the scan at once. */
		FUZZ_CHECK(scan(img, size, 1, &s2, &rep2) == -ECANCELED);
		FUZZ_CHECK(s2.n == 1 && s2.v[0].off == s.v[0].off);
		free(s2.v);
	}
	check_file_scan(img, size, &s, &rep);
	free(s.v);
}

/* --- framed images, damaged ------------------------------------------------------- */

enum damage { D_NONE, D_FLIP, D_TRUNCATE, D_INSERT, D_ZERO_TAIL, D_COUNT };

struct recipe {
	uint8_t *img;
	size_t size;
	size_t n;
	uint16_t type[MAX_RECORDS];
	uint8_t *payload[MAX_RECORDS]; /* heap copies, NULs made spaces */
	size_t len[MAX_RECORDS];
	uint64_t off[MAX_RECORDS + 1]; /* off[n] is the image size */
};

static void recipe_build(struct recipe *r, const uint8_t *p, size_t n)
{
	memset(r, 0, sizeof(*r));
	while (r->n < MAX_RECORDS) {
		const uint8_t *lf = memchr(p, '\n', n);
		size_t l = lf ? (size_t)(lf - p) : n;
		size_t k = r->n++;

		r->type[k] = l ? p[0] : 0;
		r->len[k] = l ? l - 1 : 0;
		r->payload[k] = malloc(r->len[k] + 1);
		FUZZ_ALLOC(r->payload[k]);
		for (size_t i = 0; i < r->len[k]; i++)
			r->payload[k][i] = p[1 + i] ? p[1 + i] : ' ';
		r->size += journal_frame_size(r->len[k]);
		if (!lf)
			break;
		p += l + 1;
		n -= l + 1;
	}
	r->img = malloc(r->size + 1);
	FUZZ_ALLOC(r->img);
	for (size_t k = 0, at = 0; k < r->n; k++) {
		r->off[k] = at;
		at += journal_frame(r->type[k], r->payload[k], r->len[k], r->img + at);
	}
	r->off[r->n] = r->size;
}

static void recipe_free(struct recipe *r)
{
	for (size_t k = 0; k < r->n; k++)
		free(r->payload[k]);
	free(r->img);
}

/* What a scan of the damaged image must report. */
struct expect {
	bool keep[MAX_RECORDS]; /* record k is delivered */
	uint64_t shift_from;	/* records at or after this offset moved by shift */
	uint64_t shift;
	struct journal_report rep;
};

/* Records first..last (contiguous) are damaged, the others intact. */
static void expect_damaged(const struct recipe *r, size_t first, size_t last, uint64_t size,
			   struct expect *e)
{
	e->rep.records = r->n - (last - first + 1);
	for (size_t k = first; k <= last; k++)
		e->keep[k] = false;
	if (last + 1 < r->n) {
		e->rep.bad_records = 1;
		e->rep.skipped_bytes = r->off[last + 1] - r->off[first];
		e->rep.good_end = size;
	} else {
		e->rep.good_end = r->off[first];
		e->rep.torn_bytes = size - r->off[first];
	}
}

static size_t record_at(const struct recipe *r, uint64_t pos)
{
	size_t k = 0;

	while (k + 1 < r->n && r->off[k + 1] <= pos)
		k++;
	return k;
}

/* Damages a copy of the image as the header says; fills e and returns the
 * damaged image (heap) and its size. */
static uint8_t *damage(const struct recipe *r, unsigned mode, uint64_t pos, unsigned val,
		       const uint8_t *garbage, size_t garbage_len, size_t *size, struct expect *e)
{
	uint8_t *img = malloc(r->size + garbage_len + 1);
	size_t k;

	FUZZ_ALLOC(img);
	memcpy(img, r->img, r->size);
	*size = r->size;
	memset(e, 0, sizeof(*e));
	for (k = 0; k < r->n; k++)
		e->keep[k] = true;
	e->rep.records = r->n;
	e->rep.good_end = r->size;
	e->shift_from = UINT64_MAX;
	pos %= r->size; /* a record is at least 24 bytes: never empty */
	switch (mode) {
	case D_FLIP:
		img[pos] ^= (uint8_t)(val ? val : 0x80);
		k = record_at(r, pos);
		expect_damaged(r, k, k, r->size, e);
		break;
	case D_TRUNCATE:
		*size = pos;
		k = record_at(r, pos);
		e->rep.records = k;
		for (size_t i = k; i < r->n; i++)
			e->keep[i] = false;
		e->rep.good_end = r->off[k];
		e->rep.torn_bytes = pos - r->off[k];
		break;
	case D_INSERT:
		/* Before record k, or at the end when k is n: no record is damaged. */
		k = (size_t)(pos % (r->n + 1));
		memmove(img + r->off[k] + garbage_len, img + r->off[k], r->size - r->off[k]);
		memcpy(img + r->off[k], garbage, garbage_len);
		*size = r->size + garbage_len;
		e->shift_from = r->off[k];
		e->shift = garbage_len;
		if (k == r->n) {
			e->rep.torn_bytes = garbage_len;
		} else if (garbage_len) {
			e->rep.good_end = *size;
			e->rep.bad_records = 1;
			e->rep.skipped_bytes = garbage_len;
		}
		break;
	case D_ZERO_TAIL:
		memset(img + pos, 0, r->size - pos);
		/* Zeroing may leave bytes that were zero already: the first record
		 * damaged is the first one with a changed byte. */
		for (k = 0; k < r->n; k++)
			if (memcmp(img + r->off[k], r->img + r->off[k], r->off[k + 1] - r->off[k]))
				break;
		if (k < r->n)
			expect_damaged(r, k, r->n - 1, r->size, e);
		break;
	}
	return img;
}

static void check_recipe(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	unsigned mode = fuzz_byte(&in) % D_COUNT;
	uint64_t pos = fuzz_bytes(&in, 2);
	unsigned val = fuzz_byte(&in);
	struct recipe r;
	struct expect e;
	struct journal_report rep;
	struct seen s;
	size_t img_size;
	/* Garbage: the start of the recipe text, no NULs (as in a payload). */
	uint8_t garbage[256];
	size_t garbage_len = val < in.n ? val : in.n;

	for (size_t i = 0; i < garbage_len; i++)
		garbage[i] = in.p[i] ? in.p[i] : ' ';
	recipe_build(&r, in.p, in.n);
	uint8_t *img = damage(&r, mode, pos, val, garbage, garbage_len, &img_size, &e);

	FUZZ_CHECK(scan(img, img_size, 0, &s, &rep) == 0);
	FUZZ_CHECK(reports_equal(&rep, &e.rep));
	FUZZ_CHECK(rep.records + rep.bad_records <= r.n + (mode == D_INSERT));
	size_t got = 0;
	for (size_t k = 0; k < r.n; k++) {
		if (!e.keep[k])
			continue;
		const struct rec *x = &s.v[got++];
		uint64_t off = r.off[k] + (r.off[k] >= e.shift_from ? e.shift : 0);

		FUZZ_CHECK(x->off == off && x->type == r.type[k] && x->len == r.len[k]);
		FUZZ_CHECK(memcmp(x->payload, r.payload[k], r.len[k]) == 0);
	}
	FUZZ_CHECK(got == s.n);
	free(s.v);
	free(img);
	recipe_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_image(data, size);
	check_recipe(data, size);
	return 0;
}
