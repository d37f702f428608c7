/* attach.h — attachments: what a file is (by its content), its limits, its
 * token estimate, its content hash, and its encoding for a request
 * (CONTRACT §9).  Pure functions, thread-safe; the blob store is blob.h, the
 * store's side (the attach/ directory, the journal) store_attach.h.
 *
 * Types are decided from a file's first bytes, never from its name: PNG,
 * JPEG, GIF and WebP (image blocks), PDF (a document block) and UTF-8 text
 * (a text document titled with the file's name).  Anything else is refused
 * with a reason that names what it is when it is known ("unsupported type:
 * zip archive").
 */
#ifndef MCPFS_ATTACH_H
#define MCPFS_ATTACH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpfs/buf.h"

/* The limits, each refused at write() (CONTRACT §9). */
#define ATTACH_IMAGE_MAX (5u << 20)  /* one image: EFBIG past it */
#define ATTACH_FILE_MAX (24u << 20)  /* one file: EFBIG past it */
#define ATTACH_TOTAL_MAX (24u << 20) /* all files of one message: ENOSPC past it */
#define ATTACH_FILES_MAX 20	     /* files of one message: ENOSPC for one more */
#define ATTACH_SNIFF_BYTES 16	     /* bytes that decide every type (fewer at the end) */

/* Token estimates (doc/attachments.md): an image costs width*height/750 after the
 * API's downscaling (long edge at most 1568 px, at most ~1.15 megapixels), so
 * at most 1600; a PDF page costs its text and its picture. */
#define ATTACH_IMAGE_TOKENS_MAX 1600
#define ATTACH_PDF_PAGE_TOKENS 2500
#define ATTACH_PDF_BYTES_PER_PAGE 50000 /* pages of a PDF whose count cannot be read */

enum attach_type {
	ATTACH_UNDECIDED = 0, /* not enough bytes yet */
	ATTACH_PNG,
	ATTACH_JPEG,
	ATTACH_GIF,
	ATTACH_WEBP,
	ATTACH_PDF,
	ATTACH_TEXT,
};

/* The type of a file from its first n bytes.  complete says the file ends there
 * (a close: a short file is then decided from what it has).  Returns the type,
 * ATTACH_UNDECIDED when more bytes are needed, or -EINVAL with *why a static
 * reason ("unsupported type: zip archive").  Only the first ATTACH_SNIFF_BYTES
 * are looked at, except for text, whose n bytes must be UTF-8 without NUL or
 * other control characters than tab, newline, CR and form feed (a sequence cut
 * at the end is allowed unless complete). */
int attach_sniff(const void *data, size_t n, bool complete, const char **why);

/* Whether the bytes [from, n) of a text attachment keep it text (resuming a
 * check as bytes arrive): returns the new valid prefix length, or -EINVAL with
 * *why.  complete: a sequence cut at the end is invalid too. */
long attach_text_check(const void *data, size_t n, size_t from, bool complete, const char **why);

bool attach_is_image(int type);
/* "PNG", "JPEG", "GIF", "WebP", "PDF", "text"; "?" for none. */
const char *attach_type_name(int type);
/* "image/png", ..., "application/pdf", "text/plain". */
const char *attach_media_type(int type);
/* The type of a name attach_type_name gives, ATTACH_UNDECIDED for none. */
int attach_type_from_name(const char *name);

/* The largest size allowed for a file of this type (ATTACH_IMAGE_MAX or
 * ATTACH_FILE_MAX). */
uint64_t attach_type_max(int type);

/* The pixel size of an image from its bytes (PNG, GIF, WebP headers; JPEG's
 * first SOF marker).  false when it cannot be read. */
bool attach_image_size(int type, const void *data, size_t n, uint32_t *w, uint32_t *h);

/* Pages of a PDF: the largest /Count of its page trees, else the /Type /Page
 * objects counted, else one page per ATTACH_PDF_BYTES_PER_PAGE. */
uint64_t attach_pdf_pages(const void *data, size_t n);

/* Raw token estimate of an attachment (prune.h's unit): images and PDFs by
 * the rules above, text like a message of that many bytes. */
int64_t attach_estimate(int type, const void *data, size_t n);
/* The image rule alone, from a pixel size. */
int64_t attach_image_tokens(uint32_t w, uint32_t h);

/* XXH3-128 of the bytes as 32 lower-case hex digits and a NUL. */
void attach_hash(const void *data, size_t n, char hex[33]);
/* True for 32 lower-case hex digits. */
bool attach_hash_valid(const char *hex);

/* A blob's content read into out (its bytes at out->data + start, got of the
 * size expected, or a negative errno from the read), kept when whole and
 * matching hash: out->len moves past it and a NUL follows (buf.h keeps a
 * byte for it).  0; got's error; -EBADMSG when short or damaged (out->len
 * stays at start). */
struct buf;
int attach_blob_kept(struct buf *out, size_t start, uint64_t size, long got, const char *hash);

/* Base64 (RFC 4648, with padding): the encoded length, and the encoding into
 * out (which has room for attach_b64_len(n) bytes; no NUL). */
size_t attach_b64_len(size_t n);
void attach_b64_encode(const void *data, size_t n, char *out);
/* Decodes strict base64 (padding required, no white space) and appends it to
 * out.  0, -EINVAL (not base64), -EFBIG (out's cap), -ENOMEM. */
int attach_b64_decode(const char *s, size_t n, struct buf *out);

/* A size as people read it: "312 B", "4.0 KiB", "1.2 MiB". */
void attach_size_text(uint64_t bytes, char *out, size_t outlen);

/* A name attach/ takes: 1..255 bytes of UTF-8 without '/', NUL or control
 * characters, not "." or "..", not starting with '.' (hidden files are editors'
 * and tools' scratch files).  0, -EINVAL with *why, -ENAMETOOLONG. */
int attach_name_check(const char *name, size_t len, const char **why);

#endif
