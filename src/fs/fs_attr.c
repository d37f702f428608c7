/* fs_attr.c — attributes: the stat of every inode (fixed files, the root's
 * files, scratch files, attach/ files), getattr and setattr.  A file's size is
 * what a read gives: the reply so far, or its rendering's length.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fs_impl.h"
#include "mcpfs/ctl.h"

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void fill_time(struct timespec *ts, int64_t ms)
{
	ts->tv_sec = ms / 1000;
	ts->tv_nsec = (ms % 1000) * 1000000;
}

/* The size a file shows: the reply so far, or its rendering's length. */
static int64_t file_size(struct fs *fs, uint64_t ctx, int kind, const struct context_info *ci)
{
	if (kind == K_OUTPUT)
		return (int64_t)ci->output_size;
	if (kind == K_THINKING)
		return (int64_t)ci->thinking_size;
	if (kind == K_CTL)
		return (int64_t)strlen(ctl_help);
	if (fs_nodes[kind].view < 0)
		return 0;
	/* The transcript is not cached and holds every reply, the streaming one
	 * too: its length is counted, not copied (each notifier pass asks for it
	 * twice, under the store lock; bench/run, section 9). */
	struct buf b;
	if (kind == K_TRANSCRIPT)
		buf_init_count(&b, SIZE_MAX / 2);
	else
		buf_init(&b, SIZE_MAX / 2);
	int r = context_render(fs->st, ctx, (enum view_kind)fs_nodes[kind].view, &b);
	int64_t n = r < 0 ? 0 : (int64_t)b.len;
	buf_done(&b);
	return n;
}

static int root_stat(struct fs *fs, int kind, struct stat *st)
{
	st->st_mode = kind == K_ROOT	      ? (S_IFDIR | 0755)
		      : kind == K_ROOT_CONFIG ? (S_IFREG | 0644)
					      : (S_IFREG | 0444);
	st->st_nlink = kind == K_ROOT ? 2 : 1;
	fill_time(&st->st_mtim, fs->mount_ms);
	if (kind == K_ROOT)
		return 0;
	struct buf b;
	buf_init(&b, 1u << 20);
	/* `.models` fetches a list older than a day here already (waiting
	 * MODELS_WAIT_MS at most), so that its size is that of what a read gives:
	 * rsync and tar trust the size. */
	uint64_t usage_size = 0;
	int r = kind == K_ROOT_STATUS	? store_render_status(fs->st, &b)
		: kind == K_ROOT_MODELS ? store_render_models(fs->st, &b, true)
		: kind == K_ROOT_USAGE	? store_usage_size(fs->st, &usage_size)
					: store_render_defaults(fs->st, &b);
	st->st_size = r < 0 ? 0 : kind == K_ROOT_USAGE ? (off_t)usage_size : (off_t)b.len;
	buf_done(&b);
	return 0;
}

int fs_attr_stat(struct fs *fs, fuse_ino_t ino, struct stat *st)
{
	uint64_t ctx;
	int kind = fs_node_kind(ino, &ctx);
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;
	int r = 0;
	if (kind < 0)
		return -ENOENT;
	if (kind == K_ATTACH_FILE)
		r = fs_attach_stat(fs, ino, st);
	else if (kind >= K_ROOT && kind != K_SCRATCH)
		r = root_stat(fs, kind, st);
	else if (kind == K_SCRATCH) {
		r = fs_scratch_stat(fs, ino, st);
	} else if (kind == K_DIR || kind == K_ATTACH) {
		char name[STORE_NAME_MAX + 1];
		r = store_name(fs->st, ctx, name, sizeof(name));
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		fill_time(&st->st_mtim, fs->mount_ms);
	} else {
		struct context_info ci;
		r = context_info(fs->st, ctx, &ci);
		if (r == 0) {
			st->st_mode = fs_nodes[kind].mode;
			st->st_nlink = 1;
			st->st_size = file_size(fs, ctx, kind, &ci);
			fill_time(&st->st_mtim, ci.modified_ms);
		}
	}
	st->st_atim = st->st_ctim = st->st_mtim;
	st->st_blocks = (st->st_size + 511) / 512;
	return r;
}

void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int r = fs_attr_stat(fs_of(req), ino, &st);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, 0);
}

/* chmod, chown and utimens are accepted and change nothing (editors call them
 * after saving); a size change is the file's own business (fs_io.c). */
void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		   struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	int r = 0;
	if (to_set & FUSE_SET_ATTR_SIZE)
		r = fi ? fs_io_truncate(fs, (struct fs_handle *)(uintptr_t)fi->fh, attr->st_size)
		       : fs_io_truncate_path(fs, ino, attr->st_size);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fs_op_getattr(req, ino, fi);
}
