/* fs_io.c — open, read, write, flush, release and poll of the files.
 *
 * `input`: bytes written through one open file description form one message.
 * FLUSH (every close) validates and stages it, so the writer sees an error and,
 * once close() returns, `output` already belongs to the new turn; the last
 * RELEASE sends it (CONTRACT §3.2, reference fuse-semantics §1.5).
 * What a write can already refuse is refused by that write (fs_check.c).
 * `system`, `model`, `config`, `.config`: the new text replaces the old at
 * flush; opened without O_TRUNC the buffer starts with the current text, so
 * `>>` appends.  Read-only renderings are rendered at a read at offset 0 and
 * served from that snapshot, so one pass through the file is consistent; the
 * transcript, which only grows, is rendered again by a read past the snapshot.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_impl.h"
#include "mcpfs/ctl.h"
#include "mcpfs/log.h"
#include "mcpfs/schema.h"
#include "mcpfs/settings.h"
#include "mcpfs/utf8.h"

#define VIEW_MAX (1u << 30) /* a rendering larger than this fails with EFBIG */

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static bool kind_rw(int kind)
{
	return kind == K_SYSTEM || kind == K_MODEL || kind == K_CONFIG || kind == K_ROOT_CONFIG ||
	       kind == K_SCHEMA || kind == K_SUMMARY;
}

static int render(struct fs *fs, struct fs_handle *h, struct buf *out)
{
	if (h->kind == K_ROOT_STATUS)
		return store_render_status(fs->st, out);
	if (h->kind == K_ROOT_CONFIG)
		return store_render_defaults(fs->st, out);
	if (h->kind == K_ROOT_MODELS)
		return store_render_models(fs->st, out, true);
	if (h->kind == K_ROOT_USAGE)
		return store_render_usage(fs->st, out);
	return context_render(fs->st, h->ctx, (enum view_kind)fs_nodes[h->kind].view, out);
}

/* Sets up a handle for its kind; 0 or -errno. */
static int handle_init(struct fs *fs, fuse_req_t req, struct fs_handle *h, int flags)
{
	struct context_info ci;
	switch (h->kind) {
	case K_ROOT:
	case K_DIR:
	case K_ATTACH:
		return -EISDIR;
	case K_ATTACH_FILE:
		return fs_attach_open(fs, h, fs_attach_ino(h->ctx, h->att_seq), flags);
	case K_SCRATCH:
		if (h->writer && (flags & O_TRUNC))
			fs_scratch_resize(fs, h->scratch, 0);
		return 0;
	case K_INPUT: {
		int r = context_info(fs->st, h->ctx, &ci);
		buf_init(&h->data, r == 0 ? (size_t)ci.max_input_bytes : 0);
		return r;
	}
	case K_OUTPUT:
		if (h->writer) /* only the notifier, to raise IN_CLOSE_WRITE */
			return fuse_req_ctx(req)->pid == fs->notifier_tid ? 0 : -EACCES;
		return context_output(fs->st, h->ctx, &h->turn);
	case K_THINKING: /* the newest turn's, like output */
		return h->writer ? -EACCES : context_output(fs->st, h->ctx, &h->turn);
	case K_CTL:
		return 0;
	default:
		break;
	}
	if (!kind_rw(h->kind))
		return h->writer ? -EACCES : 0;
	buf_init(&h->data, h->kind == K_SYSTEM	  ? SETTINGS_SYSTEM_MAX
			   : h->kind == K_SCHEMA  ? SCHEMA_MAX
			   : h->kind == K_SUMMARY ? SUMMARY_MAX
						  : SETTINGS_TEXT_MAX);
	if (!h->writer)
		return 0;
	if (flags & O_TRUNC) {
		h->dirty = true; /* `: > system` empties it */
		return 0;
	}
	return render(fs, h, &h->data);
}

static void handle_release(struct fs *fs, struct fs_handle *h);

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Held until the reply is sent: the file's next request, on any thread,
	 * then finds the handle whole. */
	pthread_mutex_t *lock = fs_handle_lock(fs, h);
	pthread_mutex_lock(lock);
	h->kind = fs_node_kind(ino, &h->ctx);
	h->writer = (fi->flags & O_ACCMODE) != O_RDONLY;
	h->append = (fi->flags & O_APPEND) != 0;
	buf_init(&h->data, VIEW_MAX);
	int r = h->kind < 0 ? -ENOENT : 0;
	if (h->kind == K_SCRATCH) {
		h->scratch = fs_scratch_hold_ino(fs, ino);
		if (!h->scratch)
			r = -ENOENT;
	}
	if (h->kind == K_ATTACH_FILE)
		h->att_seq = (uint32_t)(ino & ((1u << INO_ATTACH_SEQ_BITS) - 1));
	if (r == 0)
		r = handle_init(fs, req, h, fi->flags);
	if (r < 0) {
		if (h->scratch)
			fs_scratch_release(fs, h->scratch);
		reply_unref(fs->st, h->turn);
		buf_done(&h->data);
		free(h);
		pthread_mutex_unlock(lock);
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uintptr_t)h;
	fs_handles_link(fs, h);
	fi->direct_io = 1; /* every read reaches us: output can block, renders are fresh */
	fi->keep_cache = 0;
	fi->nonseekable = 0; /* tail -f seeks */
	int sent = fuse_reply_open(req, fi);
	pthread_mutex_unlock(lock);
	if (sent == -ENOENT)
		handle_release(fs, h); /* the opener was interrupted: no release will come */
}

/* Replies with a copy: once the reply is written the reader may close the
 * file, and its release (on another thread) frees the handle's buffer while
 * writev() is still returning here. */
static void reply_slice(fuse_req_t req, const char *data, size_t len, off_t off, size_t size)
{
	size_t n = (size_t)off >= len ? 0 : len - (size_t)off < size ? len - (size_t)off : size;
	char *copy = n ? malloc(n) : NULL;
	if (n && !copy) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (n)
		memcpy(copy, data + off, n);
	fuse_reply_buf(req, copy, n);
	free(copy);
}

/* GNU tail, when it follows a file that is empty as it starts, first reads it
 * to its end (as it would a pipe); a read that waits for the reply would hold
 * it there until the reply is complete, so `echo hi > input; tail -f output`
 * would show nothing while it streams.  tail cannot be told apart by what it
 * asks of the file system, so a following tail is recognised by its command
 * line and sees an empty reply as empty for now; it then follows st_size as it
 * grows.  Every other reader, `tail` without -f included, waits for the reply. */
static bool arg_follows(const char *a)
{
	if (!strcmp(a, "--follow") || !strncmp(a, "--follow=", 9))
		return true;
	if (a[0] != '-' || a[1] == '-')
		return false;
	for (a++; *a; a++) {
		if (*a == 'f' || *a == 'F')
			return true;
		if (strchr("ncs", *a))
			return false; /* the rest of the cluster is that option's value */
	}
	return false;
}

/* The first n bytes of /proc/PID/NAME (NUL-terminated), or -1. */
static ssize_t proc_read(pid_t pid, const char *name, char *out, size_t n)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t r = fd >= 0 ? read(fd, out, n - 1) : -1;
	if (fd >= 0)
		close(fd);
	out[r > 0 ? r : 0] = '\0';
	return r;
}

/* comm first: reading it touches nothing of the process, while cmdline takes
 * its memory map's lock, which a multi-threaded reader faulting on the mount
 * could hold (or queue a writer on) while it waits for this very request. */
static bool caller_is_following_tail(fuse_req_t req)
{
	pid_t pid = fuse_req_ctx(req)->pid;
	char comm[32], cmd[4096];
	if (proc_read(pid, "comm", comm, sizeof(comm)) <= 0 || strcmp(comm, "tail\n") != 0)
		return false;
	ssize_t n = proc_read(pid, "cmdline", cmd, sizeof(cmd));
	if (n <= 0)
		return false;
	for (const char *a = cmd + strlen(cmd) + 1; a < cmd + n; a += strlen(a) + 1) {
		if (!strcmp(a, "--"))
			break;
		if (arg_follows(a))
			return true;
	}
	return false;
}

/* The transcript only grows, so a snapshot stays a prefix of it: a read past
 * its end (tail -f, a reader while a reply streams) renders it again, when the
 * context changed since the snapshot was made. */
static void transcript_read(struct fs *fs, fuse_req_t req, struct fs_handle *h, size_t size,
			    off_t off)
{
	uint64_t now;
	bool stale = off == 0 || !h->data.data ||
		     ((size_t)off >= h->data.len &&
		      (context_version(fs->st, h->ctx, &now) < 0 || now != h->version));
	if (stale) {
		buf_reset(&h->data);
		int r =
		    context_render_version(fs->st, h->ctx, VIEW_TRANSCRIPT, &h->data, &h->version);
		if (r < 0) {
			fuse_reply_err(req, -r);
			return;
		}
	}
	reply_slice(req, h->data.data, h->data.len, off, size);
}

static void handle_read(struct fs *fs, fuse_req_t req, struct fs_handle *h, size_t size, off_t off,
			int flags)
{
	switch (h->kind) {
	case K_OUTPUT:
	case K_THINKING:
		if (!h->turn || h->writer)
			fuse_reply_buf(req, NULL, 0); /* no turn yet: empty */
		else if (off == 0 && fs_park_size(fs, h) == 0 && caller_is_following_tail(req))
			fuse_reply_buf(req, NULL, 0);
		else
			fs_park_read(fs, req, h, off, size, flags & O_NONBLOCK);
		return;
	case K_INPUT:
		fuse_reply_buf(req, NULL, 0); /* input reads empty, so editors start blank */
		return;
	case K_CTL:
		reply_slice(req, ctl_help, strlen(ctl_help), off, size);
		return;
	case K_SCRATCH:
		pthread_mutex_lock(&fs->scratch_lock);
		reply_slice(req, h->scratch->data.data, h->scratch->data.len, off, size);
		pthread_mutex_unlock(&fs->scratch_lock);
		return;
	case K_ATTACH_FILE:
		fs_attach_read(fs, req, h, size, off);
		return;
	default:
		break;
	}
	if (h->kind == K_TRANSCRIPT) {
		transcript_read(fs, req, h, size, off);
		return;
	}
	if (!(kind_rw(h->kind) && h->writer) && (off == 0 || !h->data.data)) {
		buf_reset(&h->data);
		int r = render(fs, h, &h->data);
		if (r < 0) {
			fuse_reply_err(req, -r);
			return;
		}
	}
	reply_slice(req, h->data.data, h->data.len, off, size);
}

/* Two reads of one descriptor may come at once (threads sharing it): a read at
 * offset 0 renders into the handle's snapshot that the other is copying. */
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	pthread_mutex_lock(fs_handle_lock(fs, h));
	handle_read(fs, req, h, size, off, fi->flags);
	pthread_mutex_unlock(fs_handle_lock(fs, h));
}

/* A store commit ends with an fsync, which must not hold the handle's lock:
 * other files share that lock (a stripe), and one writer's slow disk would hold
 * every file of every context that hashes to it.  So a commit runs between
 * commit_begin() and commit_end(), with the lock released: the mark keeps two
 * commits of one handle in order, and every commit copies what it sends. */
static void commit_wait(struct fs *fs, struct fs_handle *h)
{
	while (h->committing)
		pthread_cond_wait(fs_handle_cond(fs, h), fs_handle_lock(fs, h));
}

static void commit_begin(struct fs *fs, struct fs_handle *h)
{
	commit_wait(fs, h);
	h->committing = true;
	pthread_mutex_unlock(fs_handle_lock(fs, h));
}

static void commit_end(struct fs *fs, struct fs_handle *h)
{
	pthread_mutex_lock(fs_handle_lock(fs, h));
	h->committing = false;
	pthread_cond_broadcast(fs_handle_cond(fs, h));
}

/* A copy of the handle's text (NUL-terminated), or NULL. */
static char *data_dup(const struct fs_handle *h)
{
	char *copy = malloc(h->data.len + 1);
	if (copy) {
		if (h->data.len)
			memcpy(copy, h->data.data, h->data.len);
		copy[h->data.len] = '\0';
	}
	return copy;
}

/* Runs the line in h->ctl_line (a copy of it, without the handle's lock). */
static int ctl_commit(struct fs *fs, struct fs_handle *h, char *why, size_t whylen)
{
	char line[sizeof(h->ctl_line)];
	memcpy(line, h->ctl_line, sizeof(line));
	commit_begin(fs, h);
	int r = ctl_run(fs->st, h->ctx, line, strlen(line), NULL, why, whylen);
	commit_end(fs, h);
	return r < 0 ? r : 0; /* 1: a cancel that ended a call, success too */
}

/* Feeds bytes to the ctl line buffer, running each complete line. */
static int ctl_write(struct fs *fs, struct fs_handle *h, const char *buf, size_t size, char *why,
		     size_t whylen)
{
	for (size_t i = 0; i < size; i++) {
		if (buf[i] != '\n') {
			if (h->ctl_len + 1 >= sizeof(h->ctl_line)) {
				snprintf(why, whylen, "a command line is at most %zu bytes",
					 sizeof(h->ctl_line) - 1);
				return -EINVAL; /* no command is this long */
			}
			h->ctl_line[h->ctl_len++] = buf[i];
			continue;
		}
		h->ctl_line[h->ctl_len] = '\0';
		h->ctl_len = 0;
		int r = ctl_commit(fs, h, why, whylen);
		if (r < 0)
			return r;
	}
	return 0;
}

/* A model id written to model, config or .config is checked with the Models API
 * at write() (CONTRACT §3.3), on a copy taken under the handle's lock: the check
 * may wait (MODELS_WAIT_MS at most) and must not hold the stripe meanwhile. */
static int model_write_check(struct fs *fs, struct fs_handle *h)
{
	if (h->kind != K_MODEL && h->kind != K_CONFIG && h->kind != K_ROOT_CONFIG)
		return 0;
	pthread_mutex_lock(fs_handle_lock(fs, h));
	size_t len = h->data.len;
	char *copy = len ? malloc(len) : NULL;
	if (copy)
		memcpy(copy, h->data.data, len);
	pthread_mutex_unlock(fs_handle_lock(fs, h));
	char why[512];
	int r = copy ? store_model_check_text(fs->st, h->ctx,
					      h->kind == K_MODEL    ? 0
					      : h->kind == K_CONFIG ? 1
								    : 2,
					      copy, len, why, sizeof(why))
		     : 0;
	free(copy);
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		/* Refused like any other write (status, log), and the open file
		 * stays refused: its close applies nothing. */
		pthread_mutex_lock(fs_handle_lock(fs, h));
		h->rejected = -r;
		fs_check_refuse(fs, h, false, why);
		pthread_mutex_unlock(fs_handle_lock(fs, h));
	}
	return r;
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	int r = 0;
	pthread_mutex_lock(fs_handle_lock(fs, h));
	if (h->kind == K_CTL) {
		char why[512] = "";
		r = ctl_write(fs, h, buf, size, why, sizeof(why));
		if (r < 0 && r != -ENOENT)
			fs_check_refuse(fs, h, false, why);
	} else if (h->kind == K_SCRATCH) {
		r = fs_scratch_write(fs, h->scratch, (size_t)off, buf, size);
	} else if (h->kind == K_ATTACH_FILE) {
		r = fs_attach_write(fs, h, buf, size, off);
	} else if (h->kind == K_INPUT || kind_rw(h->kind)) {
		r = fs_check_write(fs, h, buf, size, off);
	} else if (h->kind != K_OUTPUT && h->kind != K_THINKING) {
		r = -EBADF;
	}
	pthread_mutex_unlock(fs_handle_lock(fs, h));
	if (r == 0)
		r = model_write_check(fs, h);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, size);
}

/* Applies a new text of system, model, config or .config (handle's lock held;
 * released during the commit). */
static int apply_rw(struct fs *fs, struct fs_handle *h)
{
	char why[512] = "";
	size_t len = h->data.len;
	char *text = data_dup(h);
	int r;
	if (!text)
		return -ENOMEM;
	/* The room held for the record goes back just before it is written.
	 * Unlike a message's (context_stage_held), not under the same lock: a
	 * reply's record written in between may take it, and the close then
	 * fails with ENOSPC as it would have without. */
	store_unreserve(fs->st, &h->held);
	commit_begin(fs, h);
	switch (h->kind) {
	case K_SYSTEM:
		r = context_set_system(fs->st, h->ctx, text, len, why, sizeof(why));
		break;
	case K_MODEL:
		r = context_set_model(fs->st, h->ctx, text, len, why, sizeof(why));
		break;
	case K_CONFIG:
		r = context_set_config(fs->st, h->ctx, text, len, why, sizeof(why));
		break;
	case K_SCHEMA:
		r = context_set_schema(fs->st, h->ctx, text, len, why, sizeof(why));
		break;
	case K_SUMMARY:
		r = context_set_summary(fs->st, h->ctx, text, len, why, sizeof(why));
		break;
	default:
		r = store_set_defaults(fs->st, text, len, why, sizeof(why));
		break;
	}
	commit_end(fs, h);
	free(text);
	if (r < 0)
		fs_check_refuse(fs, h, true, why);
	return r;
}

/* Validates and stages the message; keeps the first refusal for later closes.
 * The handle's lock is held, and released during the commit. */
static int input_flush(struct fs *fs, struct fs_handle *h)
{
	commit_wait(fs, h); /* another close's commit of this message first */
	if (h->rejected)
		return -h->rejected;
	if (!h->dirty)
		return 0;
	size_t len = h->data.len;
	char *text = data_dup(h);
	if (!text)
		return -ENOMEM;
	h->dirty = false;
	char why[512];
	struct reply *draft = h->draft;
	/* The room held so far goes with this text to its record (given back by
	 * context_stage_held under the store lock); a write meanwhile holds anew. */
	uint64_t held = h->held;
	h->held = 0;
	commit_begin(fs, h);
	int r = context_stage_held(fs->st, h->ctx, &draft, &held, text, len, why, sizeof(why));
	if (r < 0 && r != -ECANCELED) {
		context_abandon(fs->st, draft, why);
		draft = NULL;
	}
	commit_end(fs, h);
	free(text);
	store_unreserve(fs->st, &held); /* none left: context_stage_held gave it */
	h->draft = draft;
	if (r < 0 && r != -ECANCELED) {
		h->rejected = -r;
		if (r != -ENOENT)
			fs_check_refuse(fs, h, true, why);
	}
	return r == -ECANCELED ? 0 : r;
}

void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	int r = 0;
	/* A flush is not ordered with a write through the same open file by
	 * another process (`cmd1 & cmd2` sharing the shell's descriptor). */
	pthread_mutex_lock(fs_handle_lock(fs, h));
	if (h->kind == K_INPUT) {
		r = input_flush(fs, h);
	} else if (h->kind == K_ATTACH_FILE) {
		r = fs_attach_flush(fs, h);
	} else if (h->kind == K_CTL && h->ctl_len) {
		h->ctl_line[h->ctl_len] = '\0';
		h->ctl_len = 0;
		char why[512] = "";
		r = ctl_commit(fs, h, why, sizeof(why));
		if (r < 0 && r != -ENOENT)
			fs_check_refuse(fs, h, true, why);
	} else if (kind_rw(h->kind) && h->rejected) {
		r = -h->rejected; /* reported at its write */
	} else if (kind_rw(h->kind) && h->dirty && h->written) {
		/* Only after a write: `echo x > system` closes a copy of its descriptor
		 * before echo writes, and that close must not apply an empty prompt.
		 * A truncation alone (`: > system`) is applied at release. */
		h->dirty = h->written = false;
		r = apply_rw(fs, h);
	} else if (h->kind == K_MODEL && h->dirty && !h->data.len) {
		h->dirty = false; /* an emptied model file: refused now, never applied */
		r = -EINVAL;
	}
	pthread_mutex_unlock(fs_handle_lock(fs, h));
	fuse_reply_err(req, -r);
}

static void handle_release(struct fs *fs, struct fs_handle *h)
{
	pthread_mutex_t *lock = fs_handle_lock(fs, h);
	pthread_mutex_lock(lock);
	pthread_mutex_lock(&fs->handles_lock);
	if (h->prev)
		h->prev->next = h->next;
	else if (fs->handles == h)
		fs->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->handles_lock);
	if (h->kind == K_INPUT) {
		if (h->dirty)
			input_flush(fs, h);
		if (h->rejected)
			context_abandon(fs->st, h->draft, "the message was refused");
		else
			context_submit(fs->st, h->draft); /* the last reference: send */
	} else if (kind_rw(h->kind) && h->dirty && !h->rejected) {
		apply_rw(fs, h);
	} else if (h->kind == K_OUTPUT || h->kind == K_THINKING) {
		/* The last read may have been answered by the thread that delivered
		 * its bytes (fs_park_on_change), which wrote read_end under park_lock; the
		 * kernel releases the file only after that answer, and the lock makes
		 * the order hold in memory as well. */
		pthread_mutex_lock(&fs->park_lock);
		pthread_mutex_unlock(&fs->park_lock);
		reply_unref(fs->st, h->turn);
	} else if (h->kind == K_SCRATCH) {
		fs_scratch_release(fs, h->scratch);
	} else if (h->kind == K_ATTACH_FILE) {
		fs_attach_release(fs, h);
	}
	store_unreserve(fs->st, &h->held); /* a text never applied */
	buf_done(&h->data);
	free(h);
	pthread_mutex_unlock(lock);
}

int fs_io_apply(struct fs *fs, uint64_t ctx, int kind, const char *data, size_t len)
{
	/* The open (O_TRUNC), write and close of a writer that is never shared:
	 * the same checks as a write's, refusals reported the same way. */
	struct fs_handle h = {.kind = kind, .ctx = ctx, .writer = true, .renamed = true};
	buf_init(&h.data, VIEW_MAX);
	int r = handle_init(fs, NULL, &h, O_WRONLY | O_TRUNC);
	if (r == 0 && len)
		r = fs_check_write(fs, &h, data, len, 0);
	h.dirty = h.written = true;
	/* input_flush and apply_rw release the handle's lock around the commit. */
	pthread_mutex_lock(fs_handle_lock(fs, &h));
	if (r == 0 && kind == K_INPUT) {
		r = input_flush(fs, &h);
		if (r == 0)
			context_submit(fs->st,
				       h.draft); /* input_flush gave up the draft on failure */
	} else if (r == 0) {
		r = apply_rw(fs, &h);
	}
	pthread_mutex_unlock(fs_handle_lock(fs, &h));
	store_unreserve(fs->st, &h.held);
	buf_done(&h.data);
	return r;
}

void fs_io_free_all(struct fs *fs)
{
	for (struct fs_handle *h = fs->handles, *next; h; h = next) {
		next = h->next;
		reply_unref(fs->st, h->turn);
		reply_unref(fs->st, h->draft); /* never sent: loads as interrupted */
		if (h->scratch)
			fs_scratch_release(fs, h->scratch); /* frees one renamed away */
		buf_done(&h->data);
		free(h);
	}
	fs->handles = NULL;
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	handle_release(fs_of(req), (struct fs_handle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

void fs_op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		struct fuse_pollhandle *ph)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	pthread_mutex_lock(fs_handle_lock(fs, h));
	if ((h->kind == K_OUTPUT || h->kind == K_THINKING) && h->turn && !h->writer) {
		fs_park_poll(fs, req, h, ph);
	} else {
		if (ph)
			fuse_pollhandle_destroy(ph);
		fuse_reply_poll(req, POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM);
	}
	pthread_mutex_unlock(fs_handle_lock(fs, h));
}

int fs_io_truncate(struct fs *fs, struct fs_handle *h, off_t size)
{
	int r = 0;
	pthread_mutex_lock(fs_handle_lock(fs, h));
	if (h->kind == K_SCRATCH) {
		r = fs_scratch_resize(fs, h->scratch, (size_t)size);
	} else if (h->kind == K_ATTACH_FILE) {
		r = fs_attach_truncate(fs, h->ctx, h->att_seq, size, h);
	} else if (h->kind == K_INPUT || kind_rw(h->kind)) {
		h->dirty = true;
		r = buf_resize(&h->data, (size_t)size);
		if (h->valid > h->data.len)
			h->valid = h->data.len;
		if (h->kind == K_INPUT)
			h->cost = store_text_cost(h->data.data, h->data.len);
	} /* else output and the renderings: accepted, nothing changes */
	pthread_mutex_unlock(fs_handle_lock(fs, h));
	return r;
}

/* truncate(2) by name: emptying system or config resets it; the rest accept
 * it and change nothing (the notifier's truncate of output raises IN_MODIFY). */
int fs_io_truncate_path(struct fs *fs, fuse_ino_t ino, off_t size)
{
	uint64_t ctx;
	int kind = fs_node_kind(ino, &ctx);
	char why[256];
	if (kind == K_SCRATCH) {
		struct scratch *sc = fs_scratch_hold_ino(fs, ino);
		int r = sc ? fs_scratch_resize(fs, sc, (size_t)size) : -ENOENT;
		if (sc)
			fs_scratch_release(fs, sc);
		return r;
	}
	if (kind == K_ATTACH_FILE)
		return fs_attach_truncate(
		    fs, ctx, (uint32_t)(ino & ((1u << INO_ATTACH_SEQ_BITS) - 1)), size, NULL);
	if (size != 0)
		return 0;
	if (kind == K_SYSTEM)
		return context_set_system(fs->st, ctx, "", 0, why, sizeof(why));
	if (kind == K_CONFIG)
		return context_set_config(fs->st, ctx, "", 0, why, sizeof(why));
	if (kind == K_SCHEMA)
		return context_set_schema(fs->st, ctx, "", 0, why, sizeof(why));
	if (kind == K_SUMMARY)
		return context_set_summary(fs->st, ctx, "", 0, why, sizeof(why));
	return 0;
}
