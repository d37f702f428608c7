/* buf.c — bounded growable byte buffers (see buf.h). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mcpfs/buf.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void buf_done(struct buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

int buf_reserve_exact(struct buf *b, size_t want)
{
	if (want > b->max)
		return -EFBIG;
	if (want <= b->cap && b->data)
		return 0;
	char *p = realloc(b->data, want + 1);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = want;
	return 0;
}

int buf_reserve(struct buf *b, size_t want)
{
	if (want > b->max)
		return -EFBIG;
	if (want <= b->cap && b->data)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 ? want : cap * 2;
	if (cap > b->max)
		cap = b->max;
	char *p = realloc(b->data, cap + 1);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

/* A buffer that grows to megabytes (a long reply) takes a page fault for every
 * 4 KiB it fills, and a fault is costly in a VM.  Past PREFAULT_FROM bytes, each
 * time the content enters a new PREFAULT_STEP window, the next window is
 * populated in one madvise(2) call; at most a window of unused memory is
 * touched ahead.  Only a hint: a kernel that refuses it changes nothing. */
#define PREFAULT_FROM (1u << 20)
#define PREFAULT_STEP (2u << 20)

static void buf_prefault(struct buf *b, size_t old_len)
{
	if (b->len < PREFAULT_FROM || old_len / PREFAULT_STEP == b->len / PREFAULT_STEP)
		return;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t from = ((uintptr_t)b->data + b->len + page - 1) & ~(page - 1);
	uintptr_t end = ((uintptr_t)b->data + b->cap + 1) & ~(page - 1);
	if (end > from + PREFAULT_STEP)
		end = from + PREFAULT_STEP;
	if (end > from)
		madvise((void *)from, end - from, MADV_POPULATE_WRITE);
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	if (n > b->max - b->len)
		return -EFBIG;
	int r = buf_reserve(b, b->len + n);
	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	buf_prefault(b, b->len - n);
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list aq;
	va_copy(aq, ap);
	int n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n > b->max - b->len)
		return -EFBIG;
	int r = buf_reserve(b, b->len + (size_t)n);
	if (r < 0)
		return r;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

int buf_resize(struct buf *b, size_t n)
{
	if (n <= b->len) {
		b->len = n;
		if (b->data)
			b->data[n] = '\0';
		return 0;
	}
	int r = buf_reserve(b, n);
	if (r < 0)
		return r;
	memset(b->data + b->len, 0, n - b->len + 1);
	b->len = n;
	return 0;
}

int buf_write_at(struct buf *b, size_t off, const void *p, size_t n)
{
	if (off > b->max || n > b->max - off)
		return -EFBIG;
	size_t end = off + n;
	if (end > b->len) {
		int r = buf_resize(b, end);
		if (r < 0)
			return r;
	}
	if (n)
		memcpy(b->data + off, p, n);
	return 0;
}

char *buf_steal(struct buf *b, size_t *len)
{
	if (!b->data && buf_reserve(b, 0) < 0)
		return NULL;
	b->data[b->len] = '\0';
	char *p = b->data;
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}
