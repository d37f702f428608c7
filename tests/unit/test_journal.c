/* test_journal.c — journal framing, scanning, recovery, and the fixture files.
 *
 * Every file scan is repeated with journal_scan_mem on the same bytes and the two
 * must agree record for record.  Images are built in memory with journal_frame;
 * the writer is checked against them byte for byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "check.h"
#include "mcpfs/journal.h"

#define SEEN_MAX 2048

struct rec {
	uint16_t type;
	size_t len;
	uint64_t offset, hash; /* hash: XXH3-64 of the payload */
};

/* Records as a scan delivered them, or as a test expects them. */
struct seen {
	struct rec r[SEEN_MAX];
	size_t n;
	size_t stop_after; /* > 0: the callback fails after this many records */
};

static int on_record(void *data, uint16_t type, const void *payload, size_t len, uint64_t offset)
{
	struct seen *s = data;

	if (s->n < SEEN_MAX)
		s->r[s->n++] = (struct rec){type, len, offset, XXH3_64bits(payload, len)};
	return s->stop_after && s->n == s->stop_after ? -ECANCELED : 0;
}

/* A journal image built in memory with journal_frame; img.recs says what each
 * record is, so expectations derive from it. */
struct image {
	uint8_t *data;
	size_t len, cap;
	struct seen recs;
};

/* Makes room for n more bytes, doubling: ASan's realloc always copies. */
static void image_grow(struct image *img, size_t n)
{
	if (img->len + n > img->cap) {
		img->cap = img->len + n > 2 * img->cap ? img->len + n : 2 * img->cap;
		img->data = realloc(img->data, img->cap);
	}
	if (!img->data)
		abort();
}

static void image_add(struct image *img, uint16_t type, const void *payload, size_t len)
{
	size_t fs = journal_frame_size(len);

	image_grow(img, fs);
	journal_frame(type, payload, len, img->data + img->len);
	img->recs.r[img->recs.n++] = (struct rec){type, len, img->len, XXH3_64bits(payload, len)};
	img->len += fs;
}

#define image_add_str(img, type, s) image_add(img, type, s, strlen(s))

/* Inserts raw bytes at off (garbage, or a corrupt copy). */
static void image_insert(struct image *img, size_t off, const void *p, size_t n)
{
	image_grow(img, n);
	memmove(img->data + off + n, img->data + off, img->len - off);
	memcpy(img->data + off, p, n);
	img->len += n;
}

static void write_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || write(fd, p, n) != (ssize_t)n || close(fd) < 0)
		abort();
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? UINT64_MAX : (uint64_t)st.st_size;
}

static bool seen_equal(const struct seen *a, const struct seen *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct rec *x = &a->r[i], *y = &b->r[i];

		if (x->type != y->type || x->len != y->len || x->offset != y->offset ||
		    x->hash != y->hash)
			return false;
	}
	return true;
}

static bool report_equal(const struct journal_report *a, const struct journal_report *b)
{
	return memcmp(a, b, sizeof(*a)) == 0; /* all uint64_t: no padding */
}

/* Scans n bytes both from memory and from a file at path; both must agree. */
static void scan_both(const char *path, const void *p, size_t n, struct seen *seen,
		      struct journal_report *rep)
{
	struct seen mseen = {.n = 0};
	struct journal_report mrep;

	write_file(path, p, n);
	seen->n = 0;
	CHECK_EQ_INT(journal_scan(path, on_record, seen, rep), 0);
	CHECK_EQ_INT(journal_scan_mem(p, n, on_record, &mseen, &mrep), 0);
	CHECK(report_equal(rep, &mrep));
	CHECK(seen_equal(seen, &mseen));
}

/* What a clean scan of img must report, minus the record numbered skip (or none
 * when skip is SIZE_MAX). */
static void expect_records(const struct image *img, size_t skip, struct seen *want)
{
	want->n = 0;
	for (size_t i = 0; i < img->recs.n; i++)
		if (i != skip)
			want->r[want->n++] = img->recs.r[i];
}

/* The whole file in a heap buffer (*n bytes), or NULL. */
static uint8_t *read_file(const char *path, size_t *n)
{
	uint64_t size = file_size(path);
	uint8_t *p = size == UINT64_MAX ? NULL : malloc(size + 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool ok = p && fd >= 0 && read(fd, p, size) == (ssize_t)size;

	if (fd >= 0)
		close(fd);
	*n = ok ? size : 0;
	return ok ? p : (free(p), NULL);
}

struct rt_case {
	uint16_t type;
	const char *text; /* NULL: big bytes of a pattern */
	size_t big;
};

static const struct rt_case round_trip[] = {
    {JOURNAL_CREATE, "{\"v\":1,\"created_ms\":1,\"settings\":{},\"system\":\"\"}", 0},
    {JOURNAL_USER, "", 0}, /* empty payload */
    {JOURNAL_SETTINGS, "{\"settings\":{\"max_tokens\":5},\"system\":\"s\"}", 0},
    {JOURNAL_REPLY_PART, NULL, 3u << 20}, /* larger than one read chunk */
    {JOURNAL_REPLY_END, "{\"turn\":1,\"attempt\":1,\"state\":\"done\"}", 0},
    {0, "type 0 passes through", 0},
    {0xffff, "so does 0xffff", 0},
    {JOURNAL_CLEAR, "{\"turn\":2}", 0},
    {JOURNAL_USER, NULL, 1},
};

static uint8_t *pattern(size_t n)
{
	uint8_t *p = malloc(n + 1);

	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 131 + (i >> 9));
	return p;
}

static void test_round_trip(const char *dir)
{
	char path[4096];
	struct image img = {0};
	struct journal *j;
	struct journal_report rep;
	static struct seen seen;
	uint8_t *disk;
	size_t n;

	snprintf(path, sizeof(path), "%s/round-trip.mcj", dir);
	CHECK_EQ_INT(journal_open(path, JOURNAL_CREATE_NEW, NULL, &j), 0);
	for (size_t i = 0; i < 1000; i++) {
		const struct rt_case *c =
		    &round_trip[i % (sizeof(round_trip) / sizeof(round_trip[0]))];
		/* Big ones only early, to keep the test fast. */
		size_t len = c->text ? strlen(c->text) : i < 100 ? c->big : i % 7;
		uint8_t *p = c->text ? (uint8_t *)strdup(c->text) : pattern(len);

		if (!p)
			abort();
		CHECK_EQ_INT(journal_append(j, c->type, p, len, i % 3 == 0), 0);
		image_add(&img, c->type, p, len);
		free(p);
	}
	CHECK_EQ_INT(journal_sync(j), 0);
	CHECK_EQ_INT(journal_size(j), img.len);
	journal_free(j);

	/* The writer and journal_frame agree byte for byte. */
	disk = read_file(path, &n);
	CHECK(disk && n == img.len && memcmp(disk, img.data, n) == 0);
	free(disk);
	scan_both(path, img.data, img.len, &seen, &rep);
	CHECK(seen_equal(&seen, &img.recs));
	CHECK_EQ_INT(rep.records, 1000);
	CHECK_EQ_INT(rep.good_end, img.len);
	CHECK_EQ_INT(rep.bad_records + rep.skipped_bytes + rep.torn_bytes, 0);

	/* Reopening a clean file appends after its end. */
	CHECK_EQ_INT(journal_open(path, 0, &rep, &j), 0);
	CHECK_EQ_INT(journal_size(j), img.len);
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, "again", 5, true), 0);
	journal_free(j);
	image_add_str(&img, JOURNAL_USER, "again");
	seen.n = 0;
	CHECK_EQ_INT(journal_scan(path, on_record, &seen, &rep), 0);
	CHECK(seen_equal(&seen, &img.recs));
	free(img.data);
	unlink(path);
}

/* --- damage -------------------------------------------------------------------- */

/* Five records; the middle one and the last one are what the damage tests hit. */
static void image_five(struct image *img)
{
	image_add_str(img, JOURNAL_CREATE,
		      "{\"v\":1,\"created_ms\":5,\"settings\":{},\"system\":\"\"}");
	image_add_str(img, JOURNAL_USER, "{\"turn\":1,\"text\":\"hello\",\"ms\":6}");
	image_add_str(img, JOURNAL_REPLY_PART, "{\"turn\":1,\"attempt\":1,\"text\":\"hi\"}");
	image_add(img, JOURNAL_REPLY_END, "", 0);
	image_add_str(img, JOURNAL_USER, "{\"turn\":2,\"text\":\"the last record, cut\",\"ms\":7}");
}

/* The last record cut after every byte: the others are delivered, the rest is
 * torn, and a repairing open truncates it so new appends scan cleanly. */
static void test_torn_tail(const char *dir)
{
	char path[4096];
	struct image img = {0};
	struct seen want, seen;
	struct journal_report rep;
	struct journal *j;

	snprintf(path, sizeof(path), "%s/torn.mcj", dir);
	image_five(&img);
	const struct rec *last = &img.recs.r[img.recs.n - 1];
	expect_records(&img, img.recs.n - 1, &want);
	for (size_t k = 0; k < journal_frame_size(last->len); k++) {
		scan_both(path, img.data, last->offset + k, &seen, &rep);
		CHECK(seen_equal(&seen, &want));
		CHECK_EQ_INT(rep.torn_bytes, k);
		CHECK_EQ_INT(rep.good_end, last->offset);
		CHECK_EQ_INT(rep.bad_records, 0);

		/* Without JOURNAL_REPAIR a torn file is refused and left alone. */
		CHECK_EQ_INT(journal_open(path, 0, NULL, &j), k ? -EBADMSG : 0);
		journal_free(j);
		CHECK_EQ_INT(file_size(path), last->offset + k);

		CHECK_EQ_INT(journal_open(path, JOURNAL_REPAIR, &rep, &j), 0);
		CHECK_EQ_INT(rep.torn_bytes, k);
		CHECK_EQ_INT(rep.good_end, last->offset);
		CHECK_EQ_INT(file_size(path), last->offset);
		CHECK_EQ_INT(journal_size(j), last->offset);
		CHECK_EQ_INT(
		    journal_append(j, last->type, img.data + last->offset + 16, last->len, true),
		    0);
		journal_free(j);
		seen.n = 0;
		CHECK_EQ_INT(journal_scan(path, on_record, &seen, &rep), 0);
		CHECK(seen_equal(&seen, &img.recs));
		CHECK_EQ_INT(rep.torn_bytes + rep.bad_records, 0);
	}
	free(img.data);
	unlink(path);
}

/* Every bit of the middle record flipped in turn: that record alone is skipped. */
static void test_bit_flips(const char *dir)
{
	char path[4096];
	struct image img = {0};
	struct seen want, seen;
	struct journal_report rep;
	size_t mid = 2;

	snprintf(path, sizeof(path), "%s/flip.mcj", dir);
	image_five(&img);
	const struct rec *r = &img.recs.r[mid];
	expect_records(&img, mid, &want);
	for (size_t i = r->offset; i < r->offset + journal_frame_size(r->len); i++) {
		for (int bit = 0; bit < 8; bit++) {
			img.data[i] ^= (uint8_t)(1u << bit);
			seen.n = 0;
			if (bit == (int)(i % 8)) /* one bit per byte also through a file */
				scan_both(path, img.data, img.len, &seen, &rep);
			else
				CHECK_EQ_INT(
				    journal_scan_mem(img.data, img.len, on_record, &seen, &rep), 0);
			CHECK(seen_equal(&seen, &want));
			CHECK_EQ_INT(rep.bad_records, 1);
			CHECK_EQ_INT(rep.skipped_bytes, journal_frame_size(r->len));
			CHECK_EQ_INT(rep.torn_bytes, 0);
			CHECK_EQ_INT(rep.good_end, img.len);
			img.data[i] ^= (uint8_t)(1u << bit);
		}
	}
	free(img.data);
	unlink(path);
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Frames the plen bytes already at out + 16 under a header that claims len, has
 * reserved in its zero field and its own checksum xor'ed with hxor, with a record
 * checksum that is right for those bytes: a frame that only the length, zero field
 * or header check rejects.  Returns its size. */
static size_t forge(uint8_t *out, uint32_t len, uint16_t reserved, uint32_t hxor, size_t plen)
{
	memcpy(out, "MCJ1\x03\0", 6);
	put_le(out + 6, reserved, 2);
	put_le(out + 8, len, 4);
	put_le(out + 12, (uint32_t)XXH3_64bits(out, 12) ^ hxor, 4);
	put_le(out + 16 + plen, XXH3_64bits(out, 16 + plen), 8);
	return 24 + plen;
}

enum garbage_kind { G_BYTES, G_FORGED, G_FRAME_PREFIX };

static const struct {
	const char *what;
	enum garbage_kind kind;
	const char *bytes;
	size_t len;
	uint32_t claim, reserved, hxor; /* G_FORGED: forge()'s arguments */
} garbage[] = {
    {"one byte", G_BYTES, "\xff", 1},
    {"zeros", G_BYTES, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 28},
    {"text", G_BYTES, "{\"turn\":9,\"text\":\"stray\"}\n", 26},
    {"magics", G_BYTES, "MCJ1MCJ1MCJ1MCJ1MCJ1MCJ1MCJ1MCJ1MCJ", 35},
    {"magic and zeros", G_BYTES, "MCJ1\x03\0\0\0\x10\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24},
    {"length over the limit", G_FORGED, NULL, 16, JOURNAL_MAX_RECORD + 1, 0, 0},
    {"length 0xffffffff", G_FORGED, NULL, 16, UINT32_MAX, 0, 0},
    {"bad header check, good record check", G_FORGED, NULL, 40, 16, 0, 1},
    {"zero field set, both checks good", G_FORGED, NULL, 40, 16, 0x100, 0},
    {"a frame's first 40 bytes", G_FRAME_PREFIX, NULL, 40},
};

/* Fills out (64 + 8 bytes) with garbage number i. */
static void garbage_bytes(size_t i, uint8_t *out)
{
	static const char cut[] = "{\"turn\":3,\"text\":\"a frame cut short\"}";
	uint8_t frame[128];

	memset(out, 'p', 64);
	if (garbage[i].kind == G_BYTES)
		memcpy(out, garbage[i].bytes, garbage[i].len);
	if (garbage[i].kind == G_FORGED)
		forge(out, garbage[i].claim, (uint16_t)garbage[i].reserved, garbage[i].hxor,
		      garbage[i].len > 24 ? garbage[i].len - 24 : 0);
	if (garbage[i].kind == G_FRAME_PREFIX) {
		journal_frame(JOURNAL_USER, cut, sizeof(cut) - 1, frame);
		memcpy(out, frame, garbage[i].len);
	}
}

/* The largest payload is accepted, one byte more is -EFBIG and writes nothing. */
static void test_limits(const char *dir)
{
	char path[4096];
	uint8_t *big = calloc(1, (size_t)JOURNAL_MAX_RECORD + 1);
	struct journal *j;
	struct journal_report rep;
	struct seen seen = {.n = 0};

	snprintf(path, sizeof(path), "%s/limits.mcj", dir);
	CHECK_EQ_INT(journal_open(path, JOURNAL_CREATE_NEW, NULL, &j), 0);
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, big, (size_t)JOURNAL_MAX_RECORD + 1, true),
		     -EFBIG);
	CHECK_EQ_INT(journal_size(j), 0);
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, big, JOURNAL_MAX_RECORD, true), 0);
	journal_free(j);
	CHECK_EQ_INT(journal_scan(path, on_record, &seen, &rep), 0);
	CHECK_EQ_INT(seen.n, 1);
	CHECK_EQ_INT(seen.r[0].len, JOURNAL_MAX_RECORD);
	CHECK_EQ_INT(rep.good_end, journal_frame_size(JOURNAL_MAX_RECORD));
	free(big);
	unlink(path);

	/* A frame over the limit is corrupt even when both checksums verify. */
	big = calloc(1, journal_frame_size((size_t)JOURNAL_MAX_RECORD + 1));
	size_t n = forge(big, JOURNAL_MAX_RECORD + 1, 0, 0, (size_t)JOURNAL_MAX_RECORD + 1);
	seen.n = 0;
	CHECK_EQ_INT(journal_scan_mem(big, n, on_record, &seen, &rep), 0);
	CHECK_EQ_INT(seen.n, 0);
	CHECK_EQ_INT(rep.torn_bytes, n);
	free(big);
}

/* Inserts n junk bytes into the five-record image at its end (where 0), before
 * its third record (1) or at its start (2): at the end they are a torn tail,
 * elsewhere one bad record skipped whole. */
static void check_junk(const char *path, const uint8_t *junk, size_t n, int where, const char *what)
{
	struct image img = {0};
	static struct seen want, seen;
	struct journal_report rep;

	image_five(&img);
	expect_records(&img, SIZE_MAX, &want);
	size_t at = where == 0 ? img.len : where == 1 ? want.r[2].offset : 0;
	image_insert(&img, at, junk, n);
	for (size_t k = 0; k < want.n; k++)
		want.r[k].offset += want.r[k].offset >= at && where ? n : 0;
	scan_both(path, img.data, img.len, &seen, &rep);
	if (!seen_equal(&seen, &want) || rep.torn_bytes + rep.skipped_bytes != n)
		fprintf(stderr, "junk '%s' at %d\n", what, where);
	CHECK(seen_equal(&seen, &want));
	CHECK_EQ_INT(rep.torn_bytes, where == 0 ? n : 0);
	CHECK_EQ_INT(rep.bad_records, where == 0 ? 0 : 1);
	CHECK_EQ_INT(rep.skipped_bytes, where == 0 ? 0 : n);
	free(img.data);
}

static void test_garbage(const char *dir)
{
	char path[4096];
	uint8_t junk[64 + 8];

	snprintf(path, sizeof(path), "%s/garbage.mcj", dir);
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		garbage_bytes(i, junk);
		for (int where = 0; where < 3; where++)
			check_junk(path, junk, garbage[i].len, where, garbage[i].what);
	}

	/* A resynchronising file scan reads 1 MiB chunks (SCAN_CHUNK in journal.c):
	 * zeros that put the next magic across a chunk's end, at every split. */
	for (size_t g = (1u << 20) - 6; g <= (1u << 20) + 1; g++) {
		uint8_t *zeros = calloc(1, g);

		check_junk(path, zeros, g, 2, "zeros across a chunk's end");
		free(zeros);
	}
	unlink(path);
}

/* --- opening, errors ------------------------------------------------------------ */

static void test_open(const char *dir)
{
	char path[4096];
	struct journal *j = NULL;
	struct journal_report rep;
	struct seen seen = {.n = 0, .stop_after = 2};
	struct stat st;

	snprintf(path, sizeof(path), "%s/open.mcj", dir);
	CHECK_EQ_INT(journal_scan(path, on_record, &seen, &rep), -ENOENT);
	CHECK_EQ_INT(journal_open(path, 0, NULL, &j), -ENOENT);
	CHECK(j == NULL);
	CHECK_EQ_INT(journal_open(path, 4, NULL, &j), -EINVAL);
	CHECK_EQ_INT(journal_open(dir, 0, NULL, &j), -EISDIR);

	CHECK_EQ_INT(journal_open(path, JOURNAL_CREATE_NEW, &rep, &j), 0);
	CHECK_EQ_INT(stat(path, &st), 0);
	CHECK_EQ_INT(st.st_mode & 0777, 0600);
	CHECK_EQ_INT(st.st_size, 0);
	for (int i = 0; i < 4; i++)
		CHECK_EQ_INT(journal_append(j, JOURNAL_USER, "x", 1, false), 0);
	journal_free(j);
	CHECK_EQ_INT(journal_open(path, JOURNAL_CREATE_NEW, NULL, &j), -EEXIST);
	CHECK(j == NULL);
	CHECK_EQ_INT(file_size(path), 4 * journal_frame_size(1));

	/* A callback's error stops the scan and is returned. */
	CHECK_EQ_INT(journal_scan(path, on_record, &seen, &rep), -ECANCELED);
	CHECK_EQ_INT(seen.n, 2);
	CHECK_EQ_INT(rep.records, 2);
	journal_free(NULL);
	unlink(path);
}

/* journal_create: the file holds its first record at once; an existing name
 * and a record over the limit fail without leaving or touching a file. */
static void test_create(const char *dir)
{
	char path[4096];
	struct journal *j = NULL;
	struct journal_report rep;
	struct seen seen = {.n = 0};
	struct stat st;
	static const char first[] = "{\"settings\":{}}";

	snprintf(path, sizeof(path), "%s/create.mcj", dir);
	CHECK_EQ_INT(journal_create(path, JOURNAL_CREATE, first, strlen(first), &j), 0);
	CHECK(j != NULL);
	CHECK_EQ_INT(stat(path, &st), 0);
	CHECK_EQ_INT(st.st_mode & 0777, 0600);
	CHECK_EQ_INT(journal_size(j), journal_frame_size(strlen(first)));
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, "x", 1, true), 0);
	journal_free(j);
	CHECK_EQ_INT(journal_scan(path, on_record, &seen, &rep), 0);
	CHECK_EQ_INT(seen.n, 2);
	CHECK_EQ_INT(seen.r[0].type, JOURNAL_CREATE);
	CHECK_EQ_INT(seen.r[0].len, strlen(first));
	CHECK_EQ_INT(seen.r[0].hash, XXH3_64bits(first, strlen(first)));
	CHECK_EQ_INT(seen.r[1].offset, journal_frame_size(strlen(first)));

	CHECK_EQ_INT(journal_create(path, JOURNAL_CREATE, "y", 1, &j), -EEXIST);
	CHECK(j == NULL);
	CHECK_EQ_INT(file_size(path), journal_frame_size(strlen(first)) + journal_frame_size(1));
	unlink(path);

	CHECK_EQ_INT(journal_create(path, JOURNAL_CREATE, "z", JOURNAL_MAX_RECORD + 1, &j), -EFBIG);
	CHECK(j == NULL);
	CHECK_EQ_INT(stat(path, &st), -1);
	CHECK_EQ_INT(errno, ENOENT);
}

/* A write that fails half way (the file size limit) leaves no partial record. */
static void test_failed_append(const char *dir)
{
	char path[4096], text[200];
	struct journal *j;
	struct journal_report rep;
	struct rlimit old, lim;
	struct seen seen = {.n = 0};
	uint64_t size;

	snprintf(path, sizeof(path), "%s/fsize.mcj", dir);
	memset(text, 'a', sizeof(text));
	CHECK_EQ_INT(journal_open(path, JOURNAL_CREATE_NEW, NULL, &j), 0);
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, text, 50, true), 0);
	size = journal_size(j);
	CHECK_EQ_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = size + 40;
	CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, text, sizeof(text), true), -EFBIG);
	CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
	CHECK_EQ_INT(file_size(path), size);
	CHECK_EQ_INT(journal_size(j), size);
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, text, 7, true), 0);
	journal_free(j);
	CHECK_EQ_INT(journal_scan(path, on_record, &seen, &rep), 0);
	CHECK_EQ_INT(seen.n, 2);
	CHECK_EQ_INT(seen.r[1].len, 7);
	CHECK_EQ_INT(rep.torn_bytes + rep.bad_records, 0);
	unlink(path);
}

/* A sync without the owner's lock: begin, run, end; a failed one recovers the
 * journal at what the last good sync covered; a journal freed meanwhile is freed
 * by the end. */
static void test_sync_steps(const char *dir)
{
	char path[4096];
	struct journal *j;
	struct journal_sync t;
	struct journal_report rep;
	struct seen seen = {.n = 0};
	uint64_t durable;

	snprintf(path, sizeof(path), "%s/sync.mcj", dir);
	CHECK_EQ_INT(journal_open(path, JOURNAL_CREATE_NEW, NULL, &j), 0);
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, "one", 3, false), 0);
	CHECK(journal_synced(j) < journal_size(j));
	CHECK_EQ_INT(journal_sync_begin(j, &t), 1);
	CHECK(journal_busy(j));
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, "no", 2, false), -EBUSY);
	CHECK_EQ_INT(journal_sync_begin(j, &t), -EBUSY);
	CHECK_EQ_INT(journal_park(j), -EBUSY);
	journal_sync_run(&t, path);
	CHECK_EQ_INT(journal_sync_end(j, &t), 0);
	CHECK(!journal_busy(j));
	durable = journal_synced(j);
	CHECK_EQ_INT(durable, journal_size(j));
	CHECK_EQ_INT(journal_sync_begin(j, &t), 0); /* nothing to do */

	/* a failed fdatasync (a descriptor that is no more): what followed the
	 * last good sync is gone, and the journal takes appends again */
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, "lost", 4, false), 0);
	CHECK_EQ_INT(journal_sync_begin(j, &t), 1);
	t.fd = -1;
	journal_sync_run(&t, path);
	CHECK_EQ_INT(journal_sync_end(j, &t), -EBADF);
	CHECK_EQ_INT(journal_failed(j), 0);
	CHECK_EQ_INT(journal_size(j), durable);
	CHECK_EQ_INT(file_size(path), durable);
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, "two", 3, true), 0);

	/* freed by its owner while busy: the end frees it (LeakSanitizer checks) */
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, "end", 3, false), 0);
	CHECK_EQ_INT(journal_sync_begin(j, &t), 1);
	journal_free(j);
	journal_sync_run(&t, path);
	CHECK_EQ_INT(journal_sync_end(j, &t), -ESTALE);

	CHECK_EQ_INT(journal_scan(path, on_record, &seen, &rep), 0);
	CHECK_EQ_INT(seen.n, 3);
	CHECK_EQ_INT(seen.r[1].len, 3);
	CHECK_EQ_INT(rep.torn_bytes + rep.bad_records, 0);
	unlink(path);
}

/* A parked journal holds no descriptor; it reopens as it was left, and fails
 * when something else changed the file meanwhile.  A failed one recovers. */
static void test_park(const char *dir)
{
	char path[4096];
	struct journal *j;
	int fd;

	snprintf(path, sizeof(path), "%s/park.mcj", dir);
	CHECK_EQ_INT(journal_open(path, JOURNAL_CREATE_NEW, NULL, &j), 0);
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, "a", 1, true), 0);
	CHECK_EQ_INT(journal_park(j), 0);
	CHECK(journal_parked(j));
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, "b", 1, false), -EBADF);
	CHECK_EQ_INT(journal_unpark(j, path), 0);
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, "b", 1, true), 0);
	CHECK_EQ_INT(journal_park(j), 0);
	fd = open(path, O_WRONLY | O_APPEND);
	CHECK(fd >= 0 && write(fd, "junk", 4) == 4);
	close(fd);
	CHECK_EQ_INT(journal_unpark(j, path), -EIO);
	CHECK_EQ_INT(journal_failed(j), -EIO);
	CHECK_EQ_INT(journal_recover(j, path), 0);
	CHECK_EQ_INT(file_size(path), journal_size(j));
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, "c", 1, true), 0);
	journal_free(j);
	unlink(path);
}

/* The tail scan delivers the records that lie whole in the last bytes. */
static void test_scan_tail(const char *dir)
{
	char path[4096], big[300];
	struct journal *j;
	struct journal_report rep;
	struct seen seen = {.n = 0};

	snprintf(path, sizeof(path), "%s/tail.mcj", dir);
	memset(big, 'x', sizeof(big));
	CHECK_EQ_INT(journal_open(path, JOURNAL_CREATE_NEW, NULL, &j), 0);
	CHECK_EQ_INT(journal_append(j, JOURNAL_USER, big, sizeof(big), false), 0);
	CHECK_EQ_INT(journal_append(j, JOURNAL_REPLY_PART, "p", 1, false), 0);
	CHECK_EQ_INT(journal_append(j, JOURNAL_REPLY_END, "e", 1, true), 0);
	journal_free(j);
	CHECK_EQ_INT(journal_scan_tail(path, 2 * journal_frame_size(1) + 5, on_record, &seen, &rep),
		     0);
	CHECK_EQ_INT(seen.n, 2);
	CHECK_EQ_INT(seen.r[0].type, JOURNAL_REPLY_PART);
	CHECK_EQ_INT(rep.torn_bytes, 0);
	seen.n = 0;
	CHECK_EQ_INT(journal_scan_tail(path, 1 << 20, on_record, &seen, &rep), 0);
	CHECK_EQ_INT(seen.n, 3);
	unlink(path);
}

/* --- fixtures ------------------------------------------------------------------- */

/* What each file of tests/fixtures/journal (made by make-fixtures.sh, described in
 * its README.md) must scan as; types lists the delivered records' types. */
static const struct {
	const char *name;
	struct journal_report want;
	const char *types;
} fixtures[] = {
    {"good.mcj", {13, 0, 0, 2100, 0}, "1344523556345"},
    {"interrupted.mcj", {17, 0, 0, 2407, 0}, "13445235563453344"},
    {"torn-tail.mcj", {17, 0, 0, 2407, 37}, "13445235563453344"},
    {"bad-middle.mcj", {12, 1, 73, 2100, 0}, "134452556345"},
    {"garbage-tail.mcj", {13, 0, 0, 2100, 26}, "1344523556345"},
    {"oversize-length.mcj", {13, 1, 16, 2116, 0}, "1344523556345"},
    {"empty.mcj", {0, 0, 0, 0, 0}, ""},
    {"blocks.mcj", {16, 0, 0, 2286, 50}, "1344888885834888"},
};

static void test_fixtures(void)
{
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		char path[4096], types[SEEN_MAX + 1];
		static struct seen seen, mseen;
		struct journal_report rep, mrep;
		size_t n;
		uint8_t *disk;

		snprintf(path, sizeof(path), "%s/journal/%s", FIXTURES, fixtures[i].name);
		disk = read_file(path, &n);
		CHECK(disk != NULL);
		seen.n = mseen.n = 0;
		CHECK_EQ_INT(journal_scan(path, on_record, &seen, &rep), 0);
		CHECK_EQ_INT(journal_scan_mem(disk, n, on_record, &mseen, &mrep), 0);
		CHECK(report_equal(&rep, &mrep) && seen_equal(&seen, &mseen));
		for (size_t k = 0; k < seen.n; k++)
			types[k] = (char)('0' + seen.r[k].type % 10);
		types[seen.n] = 0;
		if (!report_equal(&rep, &fixtures[i].want))
			fprintf(stderr, "%s: unexpected report\n", path);
		CHECK(report_equal(&rep, &fixtures[i].want));
		CHECK_EQ_STR(types, fixtures[i].types);
		free(disk);
	}
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	char dir[1024];

	snprintf(dir, sizeof(dir), "%s/test_journal.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_round_trip(dir);
	test_limits(dir);
	test_torn_tail(dir);
	test_bit_flips(dir);
	test_garbage(dir);
	test_open(dir);
	test_create(dir);
	test_failed_append(dir);
	test_sync_steps(dir);
	test_park(dir);
	test_scan_tail(dir);
	test_fixtures();
	CHECK_EQ_INT(rmdir(dir), 0); /* every test removed its files */
	return check_report();
}
