/* fs_node.c — the fixed files of a context (fs_files), inode numbers and
 * kinds, attributes and sizes: lookup, getattr, setattr.  Directory operations
 * (readdir, mkdir, rmdir, unlink, rename, create) are in fs_dir.c, the
 * operations table in fs_ops.c.
 *
 * A lookup of a name longer than STORE_NAME_MAX is ENAMETOOLONG, of any other
 * unknown name ENOENT (an editor's scratch file or a tool's temporary file is
 * known: fs_scratch.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs_impl.h"
#include "mcpfs/clock.h"
#include "mcpfs/ctl.h"

const struct fs_file fs_files[K_NFIXED] = {
    [K_DIR] = {"", 0755 | S_IFDIR, -1},
    [K_INPUT] = {"input", 0644 | S_IFREG, -1},
    [K_OUTPUT] = {"output", 0444 | S_IFREG, -1},
    [K_HISTORY] = {"history", 0444 | S_IFREG, VIEW_HISTORY},
    [K_HISTORY_JSON] = {"history.json", 0444 | S_IFREG, VIEW_HISTORY_JSON},
    [K_TRANSCRIPT] = {"transcript", 0444 | S_IFREG, VIEW_TRANSCRIPT},
    [K_SYSTEM] = {"system", 0644 | S_IFREG, VIEW_SYSTEM},
    [K_MODEL] = {"model", 0644 | S_IFREG, VIEW_MODEL},
    [K_CONFIG] = {"config", 0644 | S_IFREG, VIEW_CONFIG},
    [K_STATUS] = {"status", 0444 | S_IFREG, VIEW_STATUS},
    [K_USAGE] = {"usage", 0444 | S_IFREG, VIEW_USAGE},
    [K_CTL] = {"ctl", 0600 | S_IFREG, -1}, /* reads list the commands */
    [K_SCHEMA] = {"schema", 0644 | S_IFREG, VIEW_SCHEMA},
    [K_THINKING] = {"thinking", 0444 | S_IFREG, -1},
    [K_TRANSCRIPT_JSON] = {"transcript.json", 0444 | S_IFREG, VIEW_TRANSCRIPT_JSON},
    [K_ATTACH] = {"attach", 0755 | S_IFDIR, -1},
    [K_SUMMARY] = {"summary", 0644 | S_IFREG, VIEW_SUMMARY},
};

/* Names change through the mount (the kernel then updates its cache itself)
 * or through the shim, which invalidates nothing: an entry is kept 1 s. */
#define ENTRY_TIMEOUT 1.0

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

uint64_t fs_ino(uint64_t ctx, int kind)
{
	if (kind == K_ROOT)
		return FUSE_ROOT_ID;
	if (kind == K_ROOT_STATUS)
		return INO_STATUS;
	if (kind == K_ROOT_CONFIG)
		return INO_CONFIG;
	if (kind == K_ROOT_MODELS)
		return INO_MODELS;
	if (kind == K_ROOT_USAGE)
		return INO_USAGE;
	return ctx << 8 | (uint64_t)kind;
}

int fs_kind_of(fuse_ino_t ino, uint64_t *ctx)
{
	*ctx = 0;
	if (ino == FUSE_ROOT_ID)
		return K_ROOT;
	if (ino == INO_STATUS)
		return K_ROOT_STATUS;
	if (ino == INO_CONFIG)
		return K_ROOT_CONFIG;
	if (ino == INO_MODELS)
		return K_ROOT_MODELS;
	if (ino == INO_USAGE)
		return K_ROOT_USAGE;
	if (ino & INO_SCRATCH)
		return K_SCRATCH;
	if (ino & INO_ATTACH) {
		*ctx = (ino & ~INO_ATTACH) >> INO_ATTACH_SEQ_BITS;
		return K_ATTACH_FILE;
	}
	*ctx = ino >> 8;
	int kind = (int)(ino & 0xff);
	return kind < K_NFIXED && *ctx ? kind : -1;
}

int fs_fixed_kind(const char *name)
{
	for (int k = 1; k < K_NFIXED; k++)
		if (!strcmp(name, fs_files[k].name))
			return k;
	return -1;
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
	if (fs_files[kind].view < 0)
		return 0;
	/* The transcript is not cached and holds every reply, the streaming one
	 * too: its length is counted, not copied (each notifier pass asks for it
	 * twice, under the store lock; bench/run, section 9). */
	struct buf b;
	if (kind == K_TRANSCRIPT)
		buf_init_count(&b, SIZE_MAX / 2);
	else
		buf_init(&b, SIZE_MAX / 2);
	int r = context_render(fs->st, ctx, (enum view_kind)fs_files[kind].view, &b);
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

int fs_stat(struct fs *fs, fuse_ino_t ino, struct stat *st)
{
	uint64_t ctx;
	int kind = fs_kind_of(ino, &ctx);
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
			st->st_mode = fs_files[kind].mode;
			st->st_nlink = 1;
			st->st_size = file_size(fs, ctx, kind, &ci);
			fill_time(&st->st_mtim, ci.modified_ms);
		}
	}
	st->st_atim = st->st_ctim = st->st_mtim;
	st->st_blocks = (st->st_size + 511) / 512;
	return r;
}

static void reply_entry(fuse_req_t req, struct fs *fs, fuse_ino_t ino)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	int r = fs_stat(fs, ino, &e.attr);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	e.ino = ino;
	e.generation = 1;
	/* A scratch file's name is never cached: renamed onto `config`, its entry
	 * would stand for `config` in the kernel until it timed out. */
	e.entry_timeout = ino & INO_SCRATCH ? 0 : ENTRY_TIMEOUT;
	e.attr_timeout = 0; /* sizes change as replies stream: always ask */
	fuse_reply_entry(req, &e);
}

void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	uint64_t ctx;
	int pkind = fs_kind_of(parent, &ctx);
	if (strlen(name) > STORE_NAME_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	/* At the root a context goes first: one made (over HTTP) with the name
	 * of a temporary file hides it. */
	uint64_t id, sc_ino = fs_scratch_ino(fs, parent, name);
	if (pkind == K_ROOT) {
		if (!strcmp(name, ".status"))
			reply_entry(req, fs, INO_STATUS);
		else if (!strcmp(name, ".config"))
			reply_entry(req, fs, INO_CONFIG);
		else if (!strcmp(name, ".models"))
			reply_entry(req, fs, INO_MODELS);
		else if (!strcmp(name, ".usage"))
			reply_entry(req, fs, INO_USAGE);
		else if (store_lookup(fs->st, name, &id) == 0)
			reply_entry(req, fs, fs_ino(id, K_DIR));
		else if (sc_ino)
			reply_entry(req, fs, sc_ino);
		else
			fuse_reply_err(req, ENOENT);
		return;
	}
	if (sc_ino) {
		reply_entry(req, fs, sc_ino);
		return;
	}
	if (pkind == K_ATTACH) {
		fs_attach_lookup(req, fs, ctx, name);
		return;
	}
	int k = pkind == K_DIR ? fs_fixed_kind(name) : -1;
	if (k < 0)
		fuse_reply_err(req, pkind == K_DIR ? ENOENT : ENOTDIR);
	else
		reply_entry(req, fs, fs_ino(ctx, k));
}

void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int r = fs_stat(fs_of(req), ino, &st);
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
		r = fi ? fs_handle_truncate(fs, (struct fs_handle *)(uintptr_t)fi->fh,
					    attr->st_size)
		       : fs_path_truncate(fs, ino, attr->st_size);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fs_op_getattr(req, ino, fi);
}
