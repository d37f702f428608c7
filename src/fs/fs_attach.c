/* fs_attach.c — a context's attach/ directory (CONTRACT §9): its files are
 * the store's (store_attach.h); here they get inodes, attributes and the
 * usual calls.  A write the store refuses (type, size, count) fails with its
 * errno and the reason goes to the log and to `status` (fs_check_refuse); the file
 * is then gone. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "fs_impl.h"
#include "mcpfs/store_attach.h"

#define SEQ_MASK ((1u << INO_ATTACH_SEQ_BITS) - 1)

uint64_t fs_attach_ino(uint64_t ctx, uint32_t seq)
{
	return INO_ATTACH | ctx << INO_ATTACH_SEQ_BITS | (seq & SEQ_MASK);
}

static uint64_t ino_ctx(fuse_ino_t ino)
{
	return (ino & ~INO_ATTACH) >> INO_ATTACH_SEQ_BITS;
}

static void fill(struct fs *fs, const struct attach_stat *a, struct stat *st)
{
	st->st_mode = S_IFREG | 0644;
	st->st_nlink = 1;
	st->st_size = (off_t)a->size;
	st->st_mtim.tv_sec = a->mtime_ms / 1000;
	st->st_mtim.tv_nsec = (a->mtime_ms % 1000) * 1000000;
	st->st_atim = st->st_ctim = st->st_mtim;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
}

int fs_attach_stat(struct fs *fs, fuse_ino_t ino, struct stat *st)
{
	struct attach_stat a;
	int r = context_attach_stat(fs->st, ino_ctx(ino), NULL, (uint32_t)(ino & SEQ_MASK), &a);
	if (r == 0) {
		fill(fs, &a, st);
		st->st_ino = ino;
	}
	return r;
}

static void reply_entry(fuse_req_t req, struct fs *fs, uint64_t ctx, const struct attach_stat *a)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = fs_attach_ino(ctx, a->seq);
	e.generation = 1;
	e.entry_timeout = 0; /* a message empties attach/: never cached */
	e.attr_timeout = 0;
	fill(fs, a, &e.attr);
	e.attr.st_ino = e.ino;
	fuse_reply_entry(req, &e);
}

void fs_attach_lookup(fuse_req_t req, struct fs *fs, uint64_t ctx, const char *name)
{
	struct attach_stat a;
	int r = context_attach_stat(fs->st, ctx, name, 0, &a);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		reply_entry(req, fs, ctx, &a);
}

static struct fs_handle *handle_new(struct fs *fs, int kind, uint64_t ctx)
{
	struct fs_handle *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->kind = kind;
	h->ctx = ctx;
	buf_init(&h->data, 0);
	fs_handles_link(fs, h);
	return h;
}

void fs_attach_create(fuse_req_t req, struct fs *fs, uint64_t ctx, const char *name,
		      struct fuse_file_info *fi)
{
	char why[512] = "";
	uint32_t seq;
	bool writer = (fi->flags & O_ACCMODE) != O_RDONLY;
	int r = context_attach_open(fs->st, ctx, name, true, writer, true, &seq, why, sizeof(why));
	struct attach_stat a;
	if (r == 0)
		r = context_attach_stat(fs->st, ctx, NULL, seq, &a);
	struct fs_handle *h = r == 0 ? handle_new(fs, K_ATTACH_FILE, ctx) : NULL;
	if (!h) {
		if (r < 0 && r != -ENOENT) {
			struct fs_handle tmp = {.kind = K_ATTACH_FILE, .ctx = ctx};
			fs_check_refuse(fs, &tmp, false, why);
		}
		if (r == 0 && writer)
			context_attach_release(fs->st, ctx, seq);
		fuse_reply_err(req, r < 0 ? -r : ENOMEM);
		return;
	}
	pthread_mutex_t *lock = fs_handle_lock(fs, h);
	pthread_mutex_lock(lock);
	h->att_seq = seq;
	h->writer = writer;
	h->append = (fi->flags & O_APPEND) != 0;
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = fs_attach_ino(ctx, seq);
	e.generation = 1;
	fill(fs, &a, &e.attr);
	e.attr.st_ino = e.ino;
	fuse_reply_create(req, &e, fi);
	pthread_mutex_unlock(lock);
}

int fs_attach_unlink(struct fs *fs, uint64_t ctx, const char *name)
{
	return context_attach_remove(fs->st, ctx, name);
}

int fs_attach_open(struct fs *fs, struct fs_handle *h, fuse_ino_t ino, int flags)
{
	struct attach_stat a = {0};
	char why[512] = "";
	h->ctx = ino_ctx(ino);
	int r = context_attach_stat(fs->st, h->ctx, NULL, (uint32_t)(ino & SEQ_MASK), &a);
	if (r == 0 && h->writer)
		r = context_attach_open(fs->st, h->ctx, a.name, false, true, (flags & O_TRUNC) != 0,
					&h->att_seq, why, sizeof(why));
	if (r < 0 && why[0])
		fs_check_refuse(fs, h, false, why);
	h->att_seq = a.seq;
	return r;
}

void fs_attach_read(struct fs *fs, fuse_req_t req, struct fs_handle *h, size_t size, off_t off)
{
	char *buf = malloc(size ? size : 1);
	long n = buf ? context_attach_read(fs->st, h->ctx, h->att_seq, (uint64_t)off, buf, size)
		     : -ENOMEM;
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

int fs_attach_write(struct fs *fs, struct fs_handle *h, const char *buf, size_t size, off_t off)
{
	if (h->rejected)
		return -h->rejected;
	char why[512] = "";
	if (h->append) {
		struct attach_stat a;
		if (context_attach_stat(fs->st, h->ctx, NULL, h->att_seq, &a) == 0)
			off = (off_t)a.size;
	}
	int r = context_attach_write(fs->st, h->ctx, h->att_seq, (uint64_t)off, buf, size, why,
				     sizeof(why));
	if (r < 0 && r != -ENOENT) {
		h->rejected = -r;
		fs_check_refuse(fs, h, false, why);
	}
	return r;
}

int fs_attach_flush(struct fs *fs, struct fs_handle *h)
{
	if (h->rejected)
		return -h->rejected;
	if (!h->writer)
		return 0;
	char why[512] = "";
	int r = context_attach_flush(fs->st, h->ctx, h->att_seq, why, sizeof(why));
	if (r == -ENOENT)
		return 0; /* removed meanwhile */
	if (r < 0) {
		h->rejected = -r;
		fs_check_refuse(fs, h, true, why);
	}
	return r;
}

void fs_attach_release(struct fs *fs, struct fs_handle *h)
{
	if (h->writer)
		context_attach_release(fs->st, h->ctx, h->att_seq);
}

int fs_attach_truncate(struct fs *fs, uint64_t ctx, uint32_t seq, off_t size, struct fs_handle *h)
{
	char why[512] = "";
	int r = context_attach_truncate(fs->st, ctx, seq, (uint64_t)size, why, sizeof(why));
	if (r == 0 && !h) /* truncate(2) by name: nobody's close commits it */
		r = context_attach_flush(fs->st, ctx, seq, why, sizeof(why));
	if (r < 0 && r != -ENOENT) {
		struct fs_handle tmp = {.kind = K_ATTACH_FILE, .ctx = ctx};
		if (h)
			h->rejected = -r;
		fs_check_refuse(fs, h ? h : &tmp, false, why);
	}
	return r;
}
