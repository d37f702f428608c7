/* fs_impl.h — the FUSE adapter's private structures (see fs.h). */
#ifndef MCPFS_FS_IMPL_H
#define MCPFS_FS_IMPL_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mcpfs/buf.h"
#include "mcpfs/fs.h"
#include "mcpfs/map.h"
#include "mcpfs/store.h"

/* Inode numbers: 1 the root, 2 `.status`, 3 `.config`, 4 `.models`, 5 `.usage`; a context with id N
 * is N << 8, its files (N << 8) | kind; scratch files have the top bit set.  Ids are never reused
 * while mounted, so inode numbers never go stale. */
#define INO_STATUS 2
#define INO_CONFIG 3
#define INO_MODELS 4
#define INO_USAGE 5
#define INO_SCRATCH (1ULL << 62)
/* A file of a context's attach/: this bit, the context id << 20 and the file's
 * seq (store_attach.h) in the low 20 bits. */
#define INO_ATTACH (1ULL << 61)
#define INO_ATTACH_SEQ_BITS 20

enum fs_kind {
	K_DIR = 0,
	K_INPUT,
	K_OUTPUT,
	K_HISTORY,
	K_HISTORY_JSON,
	K_TRANSCRIPT,
	K_SYSTEM,
	K_MODEL,
	K_CONFIG,
	K_STATUS,
	K_USAGE,
	K_CTL,
	K_SCHEMA,
	K_THINKING,	   /* streamed like output (fs_park.c) */
	K_TRANSCRIPT_JSON, /* rendered like transcript */
	K_ATTACH,	   /* the attach/ directory (CONTRACT §9; fs_attach.c) */
	K_SUMMARY,
	K_NFIXED,
	K_ROOT = 100,
	K_ROOT_STATUS,
	K_ROOT_CONFIG,
	K_SCRATCH,
	K_ROOT_MODELS,
	K_ROOT_USAGE,
	K_ATTACH_FILE = 110, /* a file of attach/ */
};

/* A fixed file of a context directory, one row of the node table (fs_node.c). */
struct fs_node {
	const char *name;
	mode_t mode;
	int view; /* enum view_kind rendered on read, -1 for none */
};
extern const struct fs_node fs_nodes[K_NFIXED];

#define FS_HANDLE_LOCKS 64 /* stripes of fs->handle_locks */
/* Scratch and temporary files (fs_scratch.c); past a count, ENOSPC at create;
 * past a file's size, EFBIG at write; past the total, ENOSPC at write. */
#define SCRATCH_MAX_FILES 64		/* in the whole mount */
#define SCRATCH_DIR_MAX_FILES 16	/* in one directory */
#define SCRATCH_MAX_BYTES (16u << 20)	/* one file */
#define SCRATCH_TOTAL_BYTES (64u << 20) /* all of them together */

/* An editor's scratch file (a vim swap file) or a tool's temporary file (sed
 * -i's): in memory only.  data's length and opens are under scratch_lock. */
struct scratch {
	uint64_t ino;
	fuse_ino_t parent;
	char name[256];
	struct buf data;
	int64_t mtime_ms;
	pid_t creator; /* the thread that created it (FUSE's pid of the request) */
	int opens;     /* handles open on it; under scratch_lock */
	bool gone;     /* unlinked or renamed away: freed at the last release */
};

/* One open file.  Owned by the kernel's file (fi->fh) from open to release. */
/* An open file.  kind, ctx, writer, append, turn and scratch are set at open and
 * never change; the other fields are under fs_handle_lock(h) unless they say
 * otherwise. */
struct fs_handle {
	int kind;	     /* enum fs_kind */
	uint64_t ctx;	     /* context id, 0 at the root */
	bool writer;	     /* opened for writing */
	bool dirty;	     /* written (or truncated) since the last flush */
	bool append;	     /* O_APPEND: writes go to the end of data */
	bool written;	     /* a write came since the last flush */
	int rejected;	     /* input, rw files: errno of the refusal of the text, 0 */
	bool committing;     /* a flush or release is in a store commit, which
				runs without the handle's lock (fs_io.c) */
	bool renamed;	     /* the content of a temporary file renamed onto it */
	size_t valid;	     /* input, system: bytes of data known to be valid UTF-8 */
	uint64_t cost;	     /* input, system: bytes the text takes in a journal record
				(store_text_cost) */
	uint64_t base_cost;  /* system, model, config: the rest of a settings record
				(context_settings_cost), 0 until the first write */
	uint64_t held;	     /* disk room held for the record the close writes
				(store_reserve) */
	struct buf data;     /* input: the message; rw files: their new text;
				read-only files: the rendered snapshot */
	struct reply *turn;  /* output: the turn this open is bound to */
	struct reply *draft; /* input: the staged message */
	uint64_t read_end;   /* output: end of the last read, for poll; under park_lock */
	uint64_t version;    /* transcript: the context's version of the snapshot */
	struct scratch *scratch;
	uint32_t att_seq;   /* attach/ file: its seq (store_attach.h) */
	char ctl_line[320]; /* ctl: a command line not yet ended ("fork NEW TURN"
			     with a 255-byte NEW fits) */
	size_t ctl_len;
	struct fs_handle *prev, *next; /* fs->handles; under fs->handles_lock */
};

/* A read waiting for reply bytes, or a poll waiting for readiness. */
struct parked {
	struct parked *next;
	fuse_req_t req;	     /* a read, or NULL for a poll waiter */
	struct fs_handle *h; /* the read's file (kept open by the read) */
	off_t off;
	size_t size;
	struct fuse_pollhandle *ph; /* a poll waiter's, owned */
};

struct fs {
	struct store *st;
	struct fuse_session *se;
	char *mountpoint;
	bool mounted;
	uid_t uid;
	gid_t gid;
	int64_t mount_ms;

	pthread_mutex_t park_lock; /* parked reads and poll waiters */
	struct map parked;	   /* ctx id -> struct parked list */

	pthread_mutex_t scratch_lock;
	struct map scratch_by_name; /* "parent/name" -> struct scratch */
	struct map scratch_by_ino;
	uint64_t next_scratch;
	size_t scratch_bytes; /* bytes of the files in scratch_by_ino; under scratch_lock */

	pthread_mutex_t notifier_lock; /* the notifier's queue */
	pthread_cond_t notifier_cond;
	struct map touch; /* ctx id -> pending bits (NOTIFIER_*) */
	bool notifier_stop;
	bool notifier_idle; /* the notifier waits for a first change: wake it */
	struct map closed;  /* ctx id -> last turn announced as ended; notifier only */
	pid_t notifier_tid; /* its thread id: its opens of output are allowed */
	dev_t dev;	    /* the mount's device: the notifier touches files
			       only while the mount point is this mount */
	bool have_dev;

	/* Open files.  The kernel drops the RELEASE of a file closed just before
	 * an unmount, so fs_free frees what is left here. */
	pthread_mutex_t handles_lock;
	struct fs_handle *handles;

	/* The kernel runs requests on one open file in parallel: reads of one
	 * descriptor from two threads, or a flush (a process closing its copy)
	 * beside a write through the same open file from another process.  So a
	 * handle's fields are under a lock, taken first, before any other lock of
	 * the adapter or the store's.  A stripe of locks made at start-up rather
	 * than a mutex in each handle: the first request on a file may run on a
	 * thread that knows of the handle only through the kernel, which orders it
	 * after the OPEN reply — an order that ThreadSanitizer cannot see, so a
	 * mutex created in the handle would look unsynchronised to it. */
	pthread_mutex_t handle_locks[FS_HANDLE_LOCKS];
	pthread_cond_t handle_conds[FS_HANDLE_LOCKS]; /* a handle's commit ended */
};

/* The lock of the fields of the handle at h (fs->handle_locks). */
static inline pthread_mutex_t *fs_handle_lock(struct fs *fs, const void *h)
{
	return &fs->handle_locks[((uintptr_t)h >> 4) % FS_HANDLE_LOCKS];
}

static inline pthread_cond_t *fs_handle_cond(struct fs *fs, const void *h)
{
	return &fs->handle_conds[((uintptr_t)h >> 4) % FS_HANDLE_LOCKS];
}

/* Puts a new handle at the head of fs->handles (takes fs->handles_lock). */
static inline void fs_handles_link(struct fs *fs, struct fs_handle *h)
{
	pthread_mutex_lock(&fs->handles_lock);
	h->next = fs->handles;
	if (h->next)
		h->next->prev = h;
	fs->handles = h;
	pthread_mutex_unlock(&fs->handles_lock);
}

/* What the notifier is to do for a context (fs_notifier_add; fs_notifier.c says how).
 * NOTIFIER_OUTPUT: the reply grew or ended: IN_MODIFY on output, and
 * IN_CLOSE_WRITE once when its turn has ended.  NOTIFIER_TRANSCRIPT: the
 * transcript grew: IN_MODIFY on it. */
#define NOTIFIER_OUTPUT 1u
#define NOTIFIER_TRANSCRIPT 2u

/* fs_node.c: the node table (a leaf) */
uint64_t fs_node_ino(uint64_t ctx, int kind);
int fs_node_kind(fuse_ino_t ino, uint64_t *ctx);
int fs_node_fixed(const char *name);

/* fs_attr.c: the stat of any inode; -ENOENT for none */
int fs_attr_stat(struct fs *fs, fuse_ino_t ino, struct stat *st);

/* fs_ops.c */
extern const struct fuse_lowlevel_ops fs_ops;

/* fs_attr.c (getattr, setattr) and fs_dir.c (lookup and the others) */
void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		   struct fuse_file_info *fi);
void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags);
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi);
void fs_op_refuse_node(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		       dev_t rdev);
void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);

/* fs_io.c */
void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		struct fuse_pollhandle *ph);
int fs_io_truncate(struct fs *fs, struct fs_handle *h, off_t size);
int fs_io_truncate_path(struct fs *fs, fuse_ino_t ino, off_t size);
/* Frees the handles whose release never came; the session is destroyed. */
void fs_io_free_all(struct fs *fs);
/* The whole new content of input or a setting, given at once (a temporary file
 * renamed onto it): checked and applied as a writer's text is at close; input
 * gets one message.  0 or the -errno that close would give. */
int fs_io_apply(struct fs *fs, uint64_t ctx, int kind, const char *data, size_t len);

/* fs_check.c */
/* A write to input, system, model, config or .config: applies it to h->data
 * and refuses it (-errno, reported) when it makes the text invalid already
 * (CONTRACT §3.3); a refused text refuses every later write and close. */
int fs_check_write(struct fs *fs, struct fs_handle *h, const char *buf, size_t size, off_t off);
/* Reports a refused write or close: a warning in the log and `last_refused`
 * in the context's status. */
void fs_check_refuse(struct fs *fs, struct fs_handle *h, bool at_close, const char *why);

/* fs_park.c: reads of output and thinking (h->kind says which) */
uint64_t fs_park_size(struct fs *fs, struct fs_handle *h);
void fs_park_read(struct fs *fs, fuse_req_t req, struct fs_handle *h, off_t off, size_t size,
		  bool nonblock);
void fs_park_poll(struct fs *fs, fuse_req_t req, struct fs_handle *h, struct fuse_pollhandle *ph);
void fs_park_on_change(void *fs, uint64_t ctx, unsigned what);
/* Answers every parked read with EIO and drops every poll waiter; after the
 * session loop has returned. */
void fs_park_drain(struct fs *fs);

/* fs_scratch.c */
bool fs_scratch_name_ok(struct fs *fs, fuse_ino_t parent, const char *name, int flags);
struct scratch *fs_scratch_find(struct fs *fs, fuse_ino_t parent, const char *name);
uint64_t fs_scratch_ino(struct fs *fs, fuse_ino_t parent, const char *name);
/* The file of inode ino with one more open on it (fs_scratch_release), or NULL. */
struct scratch *fs_scratch_hold_ino(struct fs *fs, uint64_t ino);
int fs_scratch_create(struct fs *fs, fuse_ino_t parent, const char *name, pid_t creator,
		      struct scratch **ret);
int fs_scratch_write(struct fs *fs, struct scratch *sc, size_t off, const char *data, size_t n);
int fs_scratch_resize(struct fs *fs, struct scratch *sc, size_t len);
int fs_scratch_copy(struct fs *fs, fuse_ino_t parent, const char *name, struct buf *out);
int fs_scratch_unlink(struct fs *fs, fuse_ino_t parent, const char *name);
void fs_scratch_drop_dir(struct fs *fs, fuse_ino_t parent);
int fs_scratch_stat(struct fs *fs, uint64_t ino, struct stat *st);
void fs_scratch_release(struct fs *fs, struct scratch *sc);
void fs_scratch_free_all(struct fs *fs);

/* fs_attach.c: the attach/ directory and its files. */
uint64_t fs_attach_ino(uint64_t ctx, uint32_t seq);
int fs_attach_stat(struct fs *fs, fuse_ino_t ino, struct stat *st);
void fs_attach_lookup(fuse_req_t req, struct fs *fs, uint64_t ctx, const char *name);
void fs_attach_create(fuse_req_t req, struct fs *fs, uint64_t ctx, const char *name,
		      struct fuse_file_info *fi);
int fs_attach_unlink(struct fs *fs, uint64_t ctx, const char *name);
int fs_attach_open(struct fs *fs, struct fs_handle *h, fuse_ino_t ino, int flags);
void fs_attach_read(struct fs *fs, fuse_req_t req, struct fs_handle *h, size_t size, off_t off);
int fs_attach_write(struct fs *fs, struct fs_handle *h, const char *buf, size_t size, off_t off);
int fs_attach_flush(struct fs *fs, struct fs_handle *h);
void fs_attach_release(struct fs *fs, struct fs_handle *h);
int fs_attach_truncate(struct fs *fs, uint64_t ctx, uint32_t seq, off_t size, struct fs_handle *h);

/* fs_notifier.c */
/* Queues bits (NOTIFIER_*) for ctx: the notifier acts on them at its next pass
 * (at most every NOTIFY_MS per context).  Takes notifier_lock only. */
void fs_notifier_add(struct fs *fs, uint64_t ctx, unsigned bits);

#endif
