/* attach.c — what an attachment is, what it costs, and its encodings (see
 * attach.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <xxhash.h>

#include "mcpfs/attach.h"
#include "mcpfs/buf.h"
#include "mcpfs/prune.h"
#include "mcpfs/utf8.h"

/* Formats refused, by their first bytes: what the reason calls them. */
struct magic {
	const char *bytes;
	size_t len;
	size_t at; /* offset of the bytes */
	const char *what;
};

static const struct magic refused[] = {
    {"PK\x03\x04", 4, 0, "unsupported type: zip archive"},
    {"PK\x05\x06", 4, 0, "unsupported type: zip archive"},
    {"\x1f\x8b", 2, 0, "unsupported type: gzip data"},
    {"BZh", 3, 0, "unsupported type: bzip2 data"},
    {"\xfd"
     "7zXZ\0",
     6, 0, "unsupported type: xz data"},
    {"7z\xbc\xaf\x27\x1c", 6, 0, "unsupported type: 7-zip archive"},
    {"\x28\xb5\x2f\xfd", 4, 0, "unsupported type: zstd data"},
    {"Rar!\x1a\x07", 6, 0, "unsupported type: RAR archive"},
    {"\x7f"
     "ELF",
     4, 0, "unsupported type: ELF executable"},
    {"MZ", 2, 0, "unsupported type: Windows executable"},
    {"\xca\xfe\xba\xbe", 4, 0, "unsupported type: Java class file"},
    {"\0asm", 4, 0, "unsupported type: WebAssembly module"},
    {"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8, 0, "unsupported type: Microsoft Office document (OLE)"},
    {"SQLite format 3\0", 16, 0, "unsupported type: SQLite database"},
    {"II*\0", 4, 0, "unsupported type: TIFF image"},
    {"MM\0*", 4, 0, "unsupported type: TIFF image"},
    {"\0\0\1\0", 4, 0, "unsupported type: ICO image"},
    {"BM", 2, 0, "unsupported type: BMP image"},
    {"ftypheic", 8, 4, "unsupported type: HEIC image"},
    {"ftypheix", 8, 4, "unsupported type: HEIC image"},
    {"ftypavif", 8, 4, "unsupported type: AVIF image"},
    {"ftyp", 4, 4, "unsupported type: MP4/QuickTime video"},
    {"OggS", 4, 0, "unsupported type: Ogg audio/video"},
    {"ID3", 3, 0, "unsupported type: MP3 audio"},
    {"fLaC", 4, 0, "unsupported type: FLAC audio"},
    {"\x1a\x45\xdf\xa3", 4, 0, "unsupported type: Matroska/WebM video"},
    {"\xff\xfe", 2, 0, "UTF-16 text (only UTF-8 text is taken)"},
    {"\xfe\xff", 2, 0, "UTF-16 text (only UTF-8 text is taken)"},
};

/* Formats taken. */
static const struct magic taken[] = {
    {"\x89PNG\r\n\x1a\n", 8, 0, "PNG"},
    {"\xff\xd8\xff", 3, 0, "JPEG"},
    {"GIF87a", 6, 0, "GIF"},
    {"GIF89a", 6, 0, "GIF"},
    {"%PDF-", 5, 0, "PDF"},
};
static const int taken_type[] = {ATTACH_PNG, ATTACH_JPEG, ATTACH_GIF, ATTACH_GIF, ATTACH_PDF};

/* 1: the magic is there; 0: the bytes so far could still be it; -1: not it. */
static int magic_match(const struct magic *m, const unsigned char *p, size_t n)
{
	size_t end = m->at + m->len;
	size_t have = n < end ? n : end;
	for (size_t i = m->at; i < have; i++)
		if (p[i] != (unsigned char)m->bytes[i - m->at])
			return -1;
	return n >= end ? 1 : 0;
}

/* WebP is RIFF....WEBP; other RIFF files (WAV, AVI) are refused. */
static int riff(const unsigned char *p, size_t n, bool complete, const char **why)
{
	static const struct magic r = {"RIFF", 4, 0, "RIFF"};
	int m = magic_match(&r, p, n);
	if (m < 0)
		return -1;
	if (n < 12)
		return complete ? -1 : 0;
	if (!memcmp(p + 8, "WEBP", 4))
		return ATTACH_WEBP;
	*why = !memcmp(p + 8, "WAVE", 4)   ? "unsupported type: WAV audio"
	       : !memcmp(p + 8, "AVI ", 4) ? "unsupported type: AVI video"
					   : "unsupported type: RIFF data";
	return -EINVAL;
}

static bool text_byte_ok(unsigned char c)
{
	return c >= 0x20 || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

long attach_text_check(const void *data, size_t n, size_t from, bool complete, const char **why)
{
	const unsigned char *p = data;
	for (size_t i = from; i < n; i++)
		if (!text_byte_ok(p[i])) {
			*why = p[i] ? "unsupported type: binary data (a control character "
				      "where text was expected)"
				    : "unsupported type: binary data (a NUL byte)";
			return -EINVAL;
		}
	bool cut = false;
	size_t v = from + utf8_valid_prefix((const char *)p + from, n - from, &cut);
	if (v < n && (!cut || complete)) {
		*why = "unsupported type: binary data (not UTF-8 text)";
		return -EINVAL;
	}
	return (long)v;
}

int attach_sniff(const void *data, size_t n, bool complete, const char **why)
{
	const unsigned char *p = data;
	bool maybe = false; /* a format could still match with more bytes */
	if (n == 0)
		return complete ? ATTACH_TEXT : ATTACH_UNDECIDED;
	for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
		int m = magic_match(&taken[i], p, n);
		if (m > 0)
			return taken_type[i];
		maybe |= m == 0 && !complete;
	}
	int w = riff(p, n, complete, why);
	if (w != -1)
		return w;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		int m = magic_match(&refused[i], p, n);
		/* BM, MZ and ID3 begin ordinary words too: named only when the
		 * bytes are not text. */
		bool wordlike = refused[i].len <= 3 && refused[i].bytes[0] >= 'A';
		if (m > 0 && !wordlike) {
			*why = refused[i].what;
			return -EINVAL;
		}
		if (m > 0 && wordlike && attach_text_check(p, n, 0, complete, why) < 0) {
			*why = refused[i].what;
			return -EINVAL;
		}
		maybe |= m == 0 && !complete && !wordlike;
	}
	if (maybe)
		return ATTACH_UNDECIDED;
	if (attach_text_check(p, n, 0, complete, why) < 0)
		return -EINVAL;
	return ATTACH_TEXT;
}

bool attach_is_image(int type)
{
	return type == ATTACH_PNG || type == ATTACH_JPEG || type == ATTACH_GIF ||
	       type == ATTACH_WEBP;
}

static const char *const type_names[] = {"?", "PNG", "JPEG", "GIF", "WebP", "PDF", "text"};
static const char *const media_types[] = {
    "", "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"};

const char *attach_type_name(int type)
{
	return type > 0 && type <= ATTACH_TEXT ? type_names[type] : "?";
}

const char *attach_media_type(int type)
{
	return type > 0 && type <= ATTACH_TEXT ? media_types[type] : "";
}

int attach_type_from_name(const char *name)
{
	for (int t = ATTACH_PNG; t <= ATTACH_TEXT; t++)
		if (name && !strcmp(name, type_names[t]))
			return t;
	return ATTACH_UNDECIDED;
}

uint64_t attach_type_max(int type)
{
	return attach_is_image(type) ? ATTACH_IMAGE_MAX : ATTACH_FILE_MAX;
}

static uint32_t be16(const unsigned char *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le16(const unsigned char *p)
{
	return (uint32_t)p[1] << 8 | p[0];
}

static uint32_t le24(const unsigned char *p)
{
	return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* The first start-of-frame marker's height and width (SOF0..SOF15 but the
 * DHT, JPG and DAC markers that share the range). */
static bool jpeg_size(const unsigned char *p, size_t n, uint32_t *w, uint32_t *h)
{
	size_t i = 2;
	while (i + 4 <= n) {
		if (p[i] != 0xff)
			return false;
		unsigned m = p[i + 1];
		if (m == 0xff) {
			i++;
			continue;
		}
		if (m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7)) {
			i += 2;
			continue;
		}
		size_t len = be16(p + i + 2);
		if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
			if (i + 9 > n)
				return false;
			*h = be16(p + i + 5);
			*w = be16(p + i + 7);
			return *w && *h;
		}
		if (len < 2)
			return false;
		i += 2 + len;
	}
	return false;
}

static bool webp_size(const unsigned char *p, size_t n, uint32_t *w, uint32_t *h)
{
	if (n < 30)
		return false;
	if (!memcmp(p + 12, "VP8X", 4)) {
		*w = le24(p + 24) + 1;
		*h = le24(p + 27) + 1;
	} else if (!memcmp(p + 12, "VP8L", 4)) {
		uint32_t b = (uint32_t)p[21] | (uint32_t)p[22] << 8 | (uint32_t)p[23] << 16 |
			     (uint32_t)p[24] << 24;
		*w = (b & 0x3fff) + 1;
		*h = ((b >> 14) & 0x3fff) + 1;
	} else if (!memcmp(p + 12, "VP8 ", 4)) {
		*w = le16(p + 26) & 0x3fff;
		*h = le16(p + 28) & 0x3fff;
	} else {
		return false;
	}
	return *w && *h;
}

bool attach_image_size(int type, const void *data, size_t n, uint32_t *w, uint32_t *h)
{
	const unsigned char *p = data;
	*w = *h = 0;
	switch (type) {
	case ATTACH_PNG:
		if (n < 24 || memcmp(p + 12, "IHDR", 4))
			return false;
		*w = be32(p + 16);
		*h = be32(p + 20);
		return *w && *h;
	case ATTACH_GIF:
		if (n < 10)
			return false;
		*w = le16(p + 6);
		*h = le16(p + 8);
		return *w && *h;
	case ATTACH_JPEG:
		return jpeg_size(p, n, w, h);
	case ATTACH_WEBP:
		return webp_size(p, n, w, h);
	default:
		return false;
	}
}

/* The number that follows at p (spaces skipped), or 0. */
static uint64_t number_at(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\r' || *p == '\n'))
		p++;
	uint64_t v = 0;
	while (p < end && *p >= '0' && *p <= '9' && v < 1000000)
		v = v * 10 + (uint64_t)(*p++ - '0');
	return v;
}

uint64_t attach_pdf_pages(const void *data, size_t n)
{
	const char *p = data, *end = p + n;
	uint64_t count = 0, pages = 0;
	for (const char *q = p; (q = memmem(q, (size_t)(end - q), "/Count", 6)); q += 6) {
		uint64_t v = number_at(q + 6, end);
		if (v > count)
			count = v;
	}
	if (count)
		return count;
	for (const char *q = p; (q = memmem(q, (size_t)(end - q), "/Type", 5)); q += 5) {
		const char *t = q + 5;
		while (t < end && *t == ' ')
			t++;
		if (end - t >= 5 && !memcmp(t, "/Page", 5) && (end - t == 5 || t[5] != 's'))
			pages++;
	}
	if (pages)
		return pages;
	return n / ATTACH_PDF_BYTES_PER_PAGE + 1;
}

/* sqrt without libm (the core links none): Newton's method, x > 0. */
static double root(double x)
{
	double r = x > 1 ? x / 2 : 1;
	for (int i = 0; i < 64; i++)
		r = (r + x / r) / 2;
	return r;
}

int64_t attach_image_tokens(uint32_t w, uint32_t h)
{
	if (!w || !h)
		return ATTACH_IMAGE_TOKENS_MAX;
	double fw = w, fh = h, scale = 1.0;
	double edge = fw > fh ? fw : fh;
	if (edge > 1568)
		scale = 1568 / edge;
	double area = fw * fh * scale * scale;
	if (area > 1.15e6)
		scale *= root(1.15e6 / area);
	double x = fw * scale * fh * scale / 750;
	int64_t t = (int64_t)x + (x > (double)(int64_t)x);
	if (t > ATTACH_IMAGE_TOKENS_MAX)
		t = ATTACH_IMAGE_TOKENS_MAX;
	return t < 1 ? 1 : t;
}

int64_t attach_estimate(int type, const void *data, size_t n)
{
	if (attach_is_image(type)) {
		uint32_t w, h;
		if (!attach_image_size(type, data, n, &w, &h))
			return ATTACH_IMAGE_TOKENS_MAX;
		return attach_image_tokens(w, h);
	}
	if (type == ATTACH_PDF)
		return (int64_t)attach_pdf_pages(data, n) * ATTACH_PDF_PAGE_TOKENS;
	return prune_estimate(n);
}

void attach_hash(const void *data, size_t n, char hex[33])
{
	XXH128_hash_t h = XXH3_128bits(data, n);
	snprintf(hex, 33, "%016llx%016llx", (unsigned long long)h.high64,
		 (unsigned long long)h.low64);
}

int attach_blob_kept(struct buf *out, size_t start, uint64_t size, long got, const char *hash)
{
	if (got < 0)
		return (int)got;
	if ((uint64_t)got != size)
		return -EBADMSG;
	char h[33];
	attach_hash(out->data + start, size, h);
	if (strcmp(h, hash))
		return -EBADMSG;
	out->len = start + size;
	out->data[out->len] = '\0';
	return 0;
}

bool attach_hash_valid(const char *hex)
{
	if (!hex || strlen(hex) != 32)
		return false;
	for (size_t i = 0; i < 32; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
			return false;
	return true;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t attach_b64_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

void attach_b64_encode(const void *data, size_t n, char *out)
{
	const unsigned char *p = data;
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*out++ = b64[v >> 18];
		*out++ = b64[(v >> 12) & 63];
		*out++ = b64[(v >> 6) & 63];
		*out++ = b64[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
		*out++ = b64[v >> 18];
		*out++ = b64[(v >> 12) & 63];
		*out++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		*out++ = '=';
	}
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int attach_b64_decode(const char *s, size_t n, struct buf *out)
{
	if (n % 4)
		return -EINVAL;
	int r = buf_reserve(out, out->len + n / 4 * 3);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		size_t pad = 0;
		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)s[i + (size_t)k];
			if (c == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad || (v[k] = b64_value(c)) < 0)
				return -EINVAL;
		}
		uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		unsigned char b[3] = {(unsigned char)(x >> 16), (unsigned char)(x >> 8),
				      (unsigned char)x};
		if ((r = buf_append(out, b, 3 - pad)) < 0)
			return r;
	}
	return 0;
}

void attach_size_text(uint64_t bytes, char *out, size_t outlen)
{
	if (bytes < 1024)
		snprintf(out, outlen, "%llu B", (unsigned long long)bytes);
	else if (bytes < (1u << 20))
		snprintf(out, outlen, "%.1f KiB", (double)bytes / 1024);
	else
		snprintf(out, outlen, "%.1f MiB", (double)bytes / (1u << 20));
}

int attach_name_check(const char *name, size_t len, const char **why)
{
	if (len == 0) {
		*why = "an attachment needs a name";
		return -EINVAL;
	}
	if (len > 255) {
		*why = "an attachment's name is at most 255 bytes";
		return -ENAMETOOLONG;
	}
	if (name[0] == '.') {
		*why = "names that start with '.' are not taken in attach/";
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == '/' || name[i] == 0x7f) {
			*why = "an attachment's name has a '/' or a control character";
			return -EINVAL;
		}
	if (!utf8_valid(name, len)) {
		*why = "an attachment's name is not UTF-8";
		return -EINVAL;
	}
	return 0;
}
