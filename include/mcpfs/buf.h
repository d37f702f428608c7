/* buf.h — bounded, growable byte buffers.
 *
 * A struct buf owns a heap array that grows on demand up to a hard cap fixed at
 * init time; any operation that would pass the cap fails with -EFBIG and leaves the
 * buffer unchanged.  The data is always NUL-terminated one byte past len (not
 * counted), so text can be handed to C string functions.  Not thread-safe: the
 * owner of the buffer serialises access.
 */
#ifndef MCPFS_BUF_H
#define MCPFS_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

struct buf {
	char *data; /* NULL until the first byte is stored */
	size_t len; /* bytes stored */
	size_t cap; /* bytes allocated, excluding the terminator */
	size_t max; /* hard cap on len */
};

/* Prepares an empty buffer that may hold at most max bytes.  Never fails. */
void buf_init(struct buf *b, size_t max);

/* Frees the storage; the buffer is empty and reusable afterwards.  NULL-safe. */
void buf_done(struct buf *b);

/* Drops the content but keeps the storage. */
void buf_reset(struct buf *b);

/* Makes room for want bytes in all (plus the terminator) without changing the
 * content, for a caller that writes into data itself.  0, -EFBIG, -ENOMEM. */
int buf_reserve(struct buf *b, size_t want);
/* The same without rounding up: room for exactly want bytes when there is less
 * (a large body of known size: an allocation of the same size each time is
 * reused by malloc, where a doubled one past its mmap threshold is mapped and
 * faulted in anew).  0, -EFBIG, -ENOMEM. */
int buf_reserve_exact(struct buf *b, size_t want);

/* Appends n bytes.  0, -EFBIG past the cap, -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);

/* Writes n bytes at offset off, zero-filling any gap past len (like pwrite on a
 * file).  0, -EFBIG when off + n passes the cap, -ENOMEM. */
int buf_write_at(struct buf *b, size_t off, const void *p, size_t n);

/* Sets len to n: shrinks, or grows with zero bytes.  0, -EFBIG, -ENOMEM. */
int buf_resize(struct buf *b, size_t n);

/* Hands the storage to the caller (free() it) and leaves b empty.  Returns a
 * valid NUL-terminated string even for an empty buffer, or NULL on -ENOMEM. */
char *buf_steal(struct buf *b, size_t *len);

#endif
