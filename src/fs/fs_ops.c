/* fs_ops.c — the operations table, and the small operations: init, statfs,
 * fsync, extended attributes, copy_file_range. */
#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#include "fs_impl.h"
#include "mcpfs/log.h"
#include "mcpfs/meta.h"

static void fs_op_init(void *data, struct fuse_conn_info *conn)
{
	/* O_TRUNC arrives with open, so `>` needs no separate SETATTR. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Writes must reach us as they are made, in order. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

static void fs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_namemax = STORE_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

/* Commits are fsynced by the store already; an editor's fsync has nothing to add. */
static void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

/* Extended attributes: a context's directory holds its metadata as user.*
 * attributes (meta.h, CONTRACT §10); every other name there, and every name
 * on the root and on files, is ENOTSUP, as on a file system without xattrs
 * (the kernel asks for security.capability before writes: no log line).
 * meta_key: the metadata key of name on ino (its context in *ctx), or NULL
 * once ENOTSUP is replied. */
static const char *meta_key(fuse_req_t req, fuse_ino_t ino, const char *name, uint64_t *ctx)
{
	if (fs_node_kind(ino, ctx) == K_DIR && *ctx && !strncmp(name, META_PREFIX, META_PREFIX_LEN))
		return name + META_PREFIX_LEN;
	fuse_reply_err(req, ENOTSUP);
	return NULL;
}

static void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			   size_t size, int flags)
{
	struct fs *fs = fuse_req_userdata(req);
	uint64_t ctx;
	const char *key = meta_key(req, ino, name, &ctx);
	if (!key)
		return;
	char why[256] = "";
	int mflags =
	    (flags & XATTR_CREATE ? META_CREATE : 0) | (flags & XATTR_REPLACE ? META_REPLACE : 0);
	int r =
	    context_meta_set(fs->st, ctx, key, strlen(key), value, size, mflags, why, sizeof(why));
	if (r < 0 && r != -ENOENT)
		log_debug("setxattr '%s': %s", name, why);
	/* A limit broken shows in `status` (last_refused), as a refused write does. */
	if (r == -ENOSPC || r == -E2BIG || r == -EINVAL || r == -ERANGE)
		context_refuse(fs->st, ctx, why);
	fuse_reply_err(req, -r);
}

/* A size-0 probe is answered with the size; a smaller buffer gets ERANGE. */
static void reply_xattr(fuse_req_t req, struct buf *b, size_t size, int r)
{
	if (r < 0)
		fuse_reply_err(req, -r);
	else if (size == 0)
		fuse_reply_xattr(req, b->len);
	else if (size < b->len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, b->data, b->len);
	buf_done(b);
}

static void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = fuse_req_userdata(req);
	uint64_t ctx;
	const char *key = meta_key(req, ino, name, &ctx);
	if (!key)
		return;
	struct buf b;
	buf_init(&b, META_VALUE_MAX);
	reply_xattr(req, &b, size, context_meta_get(fs->st, ctx, key, strlen(key), &b));
}

/* Listing too: tools that copy attributes (cp -a, vim's backups) take ENOTSUP
 * as "this file system has none", exactly as on a file system without xattrs;
 * a context's directory lists its user.* names. */
static void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs *fs = fuse_req_userdata(req);
	uint64_t ctx;
	if (fs_node_kind(ino, &ctx) != K_DIR || !ctx) {
		fuse_reply_err(req, ENOTSUP);
		return;
	}
	struct buf b;
	buf_init(&b, (size_t)META_KEYS_MAX * (META_NAME_MAX + 1));
	reply_xattr(req, &b, size, context_meta_names(fs->st, ctx, &b));
}

static void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fs *fs = fuse_req_userdata(req);
	uint64_t ctx;
	const char *key = meta_key(req, ino, name, &ctx);
	if (!key)
		return;
	char why[256] = "";
	int r = context_meta_remove(fs->st, ctx, key, strlen(key), why, sizeof(why));
	if (r < 0 && r != -ENOENT)
		log_debug("removexattr '%s': %s", name, why);
	fuse_reply_err(req, -r);
}

/* The kernel clamps a copy to the source's current size, which would cut a
 * reply still streaming.  EINVAL makes cp and cat fall back to read and write
 * (ENOSYS or EXDEV would make the kernel try its own splice copy instead). */
static void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
				  struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
				  struct fuse_file_info *fi_out, size_t len, int flags)
{
	fuse_reply_err(req, EINVAL);
}

const struct fuse_lowlevel_ops fs_ops = {
    .init = fs_op_init,
    .lookup = fs_op_lookup,
    .getattr = fs_op_getattr,
    .setattr = fs_op_setattr,
    .mknod = fs_op_refuse_node,
    .mkdir = fs_op_mkdir,
    .unlink = fs_op_unlink,
    .rmdir = fs_op_rmdir,
    .symlink = fs_op_symlink,
    .rename = fs_op_rename,
    .link = fs_op_link,
    .open = fs_op_open,
    .read = fs_op_read,
    .write = fs_op_write,
    .flush = fs_op_flush,
    .release = fs_op_release,
    .fsync = fs_op_fsync,
    .opendir = fs_op_opendir,
    .readdir = fs_op_readdir,
    .releasedir = fs_op_releasedir,
    .fsyncdir = fs_op_fsyncdir,
    .statfs = fs_op_statfs,
    .setxattr = fs_op_setxattr,
    .getxattr = fs_op_getxattr,
    .listxattr = fs_op_listxattr,
    .removexattr = fs_op_removexattr,
    .create = fs_op_create,
    .poll = fs_op_poll,
    .copy_file_range = fs_op_copy_file_range,
};
