/* fs_dir.c — directory operations: lookup, listing, mkdir/rmdir (create and delete a
 * context), unlink, rename, and file creation (refused but for editors' scratch
 * files).
 *
 * Errno choices (CONTRACT §2, §4): a name that is not allowed is EINVAL (too
 * long: ENAMETOOLONG); any other new file is EACCES unless it is an editor's
 * scratch file or a tool's temporary file (fs_scratch.c); unlink of a fixed
 * file is accepted and changes nothing, so that `rm -r` reaches rmdir.
 *
 * A lookup of a name longer than STORE_NAME_MAX is ENAMETOOLONG, of any other
 * unknown name ENOENT (an editor's scratch file or a tool's temporary file is
 * known: fs_scratch.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_impl.h"
#include "mcpfs/log.h"
#include "mcpfs/store_attach.h"

/* A listing, taken at opendir so that offsets stay stable while it is read. */
struct fs_dirlist {
	struct store_entry *e;
	size_t n;
	struct attach_stat *att; /* attach/: its files */
	size_t n_att;
};

/* Names change through the mount (the kernel then updates its cache itself)
 * or through the shim, which invalidates nothing: an entry is kept 1 s. */
#define ENTRY_TIMEOUT 1.0

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void reply_entry(fuse_req_t req, struct fs *fs, fuse_ino_t ino)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	int r = fs_attr_stat(fs, ino, &e.attr);
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
	int pkind = fs_node_kind(parent, &ctx);
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
			reply_entry(req, fs, fs_node_ino(id, K_DIR));
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
	int k = pkind == K_DIR ? fs_node_fixed(name) : -1;
	if (k < 0)
		fuse_reply_err(req, pkind == K_DIR ? ENOENT : ENOTDIR);
	else
		reply_entry(req, fs, fs_node_ino(ctx, k));
}

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	uint64_t ctx;
	int kind = fs_node_kind(ino, &ctx);
	struct fs_dirlist *d = calloc(1, sizeof(*d));
	int r = d ? 0 : -ENOMEM;
	if (r == 0 && kind == K_ROOT)
		r = store_list(fs->st, &d->e, &d->n);
	else if (r == 0 && kind == K_ATTACH)
		r = context_attach_list(fs->st, ctx, &d->att, &d->n_att);
	else if (r == 0 && kind != K_DIR)
		r = -ENOTDIR;
	if (r < 0) {
		free(d);
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uintptr_t)d;
	fi->cache_readdir = 0;
	fuse_reply_open(req, fi);
}

void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_dirlist *d = (struct fs_dirlist *)(uintptr_t)fi->fh;
	store_list_free(d->e, d->n);
	free(d->att);
	free(d);
	fuse_reply_err(req, 0);
}

/* Entry i of a directory: ".", "..", then the fixed names or the contexts. */
static const char *dir_entry(struct fs_dirlist *d, int kind, uint64_t ctx, size_t i,
			     struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFDIR;
	if (i < 2) {
		st->st_ino = i == 0		? fs_node_ino(ctx, kind)
			     : kind == K_ATTACH ? fs_node_ino(ctx, K_DIR)
						: FUSE_ROOT_ID;
		return i == 0 ? "." : "..";
	}
	i -= 2;
	if (kind == K_ATTACH) {
		if (i >= d->n_att)
			return NULL;
		st->st_ino = fs_attach_ino(ctx, d->att[i].seq);
		st->st_mode = S_IFREG;
		return d->att[i].name;
	}
	if (kind == K_DIR) {
		if (i + 1 >= K_NFIXED)
			return NULL;
		st->st_ino = fs_node_ino(ctx, (int)i + 1);
		st->st_mode = fs_nodes[i + 1].mode & S_IFMT;
		return fs_nodes[i + 1].name;
	}
	if (i < 4) {
		static const char *const root_files[] = {".status", ".config", ".models", ".usage"};
		static const fuse_ino_t root_inos[] = {INO_STATUS, INO_CONFIG, INO_MODELS,
						       INO_USAGE};
		st->st_ino = root_inos[i];
		st->st_mode = S_IFREG;
		return root_files[i];
	}
	i -= 4;
	if (i >= d->n)
		return NULL;
	st->st_ino = fs_node_ino(d->e[i].id, K_DIR);
	return d->e[i].name;
}

void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	struct fs_dirlist *d = (struct fs_dirlist *)(uintptr_t)fi->fh;
	uint64_t ctx;
	int kind = fs_node_kind(ino, &ctx);
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t used = 0;
	struct stat st;
	const char *name;
	for (size_t i = (size_t)off; (name = dir_entry(d, kind, ctx, i, &st)); i++) {
		size_t n = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)i + 1);
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

/* mkdir's errno reaches the shell as a bare "Invalid argument"; the log says
 * which rule the name broke.  EEXIST is routine (`mkdir -p`), so only debug. */
static void mkdir_refused(const char *name, int r, const char *why)
{
	char q[300];
	log_quote(q, sizeof(q), name, strlen(name));
	log_msg(r == -EEXIST ? LOG_DEBUG : LOG_WARNING, "mkdir '%s' refused: %s", q,
		why ? why : strerror(-r));
}

void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs *fs = fs_of(req);
	uint64_t ctx, id;
	if (fs_node_kind(parent, &ctx) != K_ROOT) {
		mkdir_refused(name, -EACCES, "contexts do not nest");
		fuse_reply_err(req, EACCES);
		return;
	}
	int r = store_create(fs->st, name, &id);
	if (r < 0) {
		const char *why = NULL;
		store_name_check_why(name, strlen(name), &why);
		mkdir_refused(name, r, why);
		fuse_reply_err(req, -r);
		return;
	}
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = fs_node_ino(id, K_DIR);
	e.generation = 1;
	e.entry_timeout = 1.0;
	fs_attr_stat(fs, e.ino, &e.attr);
	fuse_reply_entry(req, &e);
}

void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	uint64_t ctx, id;
	int kind = fs_node_kind(parent, &ctx);
	int r;
	if (kind == K_DIR && !strcmp(name, "attach"))
		r = 0; /* accepted, changes nothing: `rm -r NAME` reaches NAME's rmdir */
	else if (kind == K_ATTACH)
		r = context_attach_stat(fs->st, ctx, name, 0, &(struct attach_stat){0}) == 0
			? -ENOTDIR
			: -ENOENT;
	else if (kind == K_DIR)
		r = fs_node_fixed(name) >= 0 || fs_scratch_find(fs, parent, name) ? -ENOTDIR
										  : -ENOENT;
	else if (kind != K_ROOT)
		r = -ENOTDIR;
	else if (store_lookup(fs->st, name, &id) < 0)
		r = !strcmp(name, ".status") || !strcmp(name, ".config") ||
			    !strcmp(name, ".models") || !strcmp(name, ".usage")
			? -ENOTDIR
			: -ENOENT;
	else {
		r = store_delete(fs->st, name);
		if (r == 0)
			fs_scratch_drop_dir(fs, fs_node_ino(id, K_DIR));
	}
	fuse_reply_err(req, -r);
}

void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	uint64_t ctx, id;
	int kind = fs_node_kind(parent, &ctx);
	int r;
	if (fs_scratch_find(fs, parent, name))
		r = fs_scratch_unlink(fs, parent, name);
	else if (kind == K_ATTACH)
		r = fs_attach_unlink(fs, ctx, name);
	else if (kind == K_DIR && !strcmp(name, "attach"))
		r = -EISDIR;
	else if (kind == K_DIR)
		r = fs_node_fixed(name) >= 0 ? 0 : -ENOENT; /* lets rm -r reach rmdir */
	else if (!strcmp(name, ".status") || !strcmp(name, ".config") || !strcmp(name, ".models") ||
		 !strcmp(name, ".usage"))
		r = -EACCES;
	else
		r = store_lookup(fs->st, name, &id) == 0 ? -EISDIR : -ENOENT;
	fuse_reply_err(req, -r);
}

/* The files an editor saves: input and the settings. */
static bool editable(int kind)
{
	return kind == K_INPUT || kind == K_SYSTEM || kind == K_MODEL || kind == K_CONFIG ||
	       kind == K_SCHEMA || kind == K_SUMMARY;
}

/* Emacs's backup names of NAME: "NAME~" and, numbered, "NAME.~N~". */
static bool backup_of(const char *name, const char *newname)
{
	size_t n = strlen(name);
	if (strncmp(newname, name, n))
		return false;
	const char *t = newname + n;
	if (!strcmp(t, "~"))
		return true;
	if (strncmp(t, ".~", 2) || !t[2])
		return false;
	for (t += 2; *t >= '0' && *t <= '9'; t++)
		;
	return t > newname + n + 2 && !strcmp(t, "~");
}

/* A temporary file renamed onto input, a setting or `.config`: a write of its
 * content (fs_io_apply), then it is gone.  A content refused (invalid, not
 * UTF-8, too large) is EINVAL, and both files stay as they were. */
static int rename_temporary(struct fs *fs, fuse_ino_t parent, uint64_t ctx, const char *name,
			    const char *newname, unsigned int flags)
{
	int kind = ctx ? fs_node_fixed(newname) : !strcmp(newname, ".config") ? K_ROOT_CONFIG : -1;
	if (!editable(kind) && kind != K_ROOT_CONFIG)
		return -EACCES;
	if (flags & RENAME_NOREPLACE)
		return -EEXIST;
	struct buf b;
	buf_init(&b, SCRATCH_MAX_BYTES);
	int r = fs_scratch_copy(fs, parent, name, &b);
	if (r == 0)
		r = fs_io_apply(fs, ctx, kind, b.data ? b.data : "", b.len);
	buf_done(&b);
	if (r == -EILSEQ || r == -EFBIG)
		r = -EINVAL;
	if (r == 0)
		fs_scratch_unlink(fs, parent, name);
	return r;
}

/* NAME renamed to its backup name (Emacs; vim with backupcopy=no): NAME stays
 * as it is, and the backup name becomes a scratch file (in memory, hidden from
 * listings) holding NAME's content, as if NAME had been copied there.  So the
 * editor's later unlink of its backup (vim) finds it, and a rename back
 * restores that content. */
static int rename_to_backup(struct fs *fs, fuse_req_t req, fuse_ino_t parent, uint64_t ctx,
			    const char *name, const char *newname)
{
	struct buf b;
	struct scratch *sc;
	buf_init(&b, SCRATCH_MAX_BYTES);
	int r = context_render(fs->st, ctx, (enum view_kind)fs_nodes[fs_node_fixed(name)].view, &b);
	if (r == 0)
		r = fs_scratch_create(fs, parent, newname, fuse_req_ctx(req)->pid, &sc);
	if (r == 0) {
		r = fs_scratch_resize(fs, sc, 0);
		if (r == 0)
			r = fs_scratch_write(fs, sc, 0, b.data ? b.data : "", b.len);
		if (r > 0)
			r = 0;
		fs_scratch_release(fs, sc);
	}
	buf_done(&b);
	return r;
}

/* Renames: a context (at the root); a temporary file onto input or a setting,
 * or at the root onto `.config` (a save by rename); NAME to its backup name
 * (rename_to_backup).  Any other rename of a context's file is EACCES
 * (CONTRACT §4: never a false success). */
void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags)
{
	struct fs *fs = fs_of(req);
	uint64_t ctx, nctx;
	int kind = fs_node_kind(parent, &ctx), nkind = fs_node_kind(newparent, &nctx);
	uint64_t id;
	int r;
	if (flags & ~RENAME_NOREPLACE)
		r = -EINVAL;
	else if (kind == K_ROOT && nkind == K_ROOT && store_lookup(fs->st, name, &id) < 0 &&
		 fs_scratch_find(fs, parent, name))
		r = rename_temporary(fs, parent, 0, name, newname, flags);
	else if (kind == K_ROOT && nkind == K_ROOT)
		r = store_rename(fs->st, name, newname);
	else if (kind != nkind || ctx != nctx)
		r = -EXDEV;
	else if (kind == K_DIR && fs_scratch_find(fs, parent, name))
		r = rename_temporary(fs, parent, ctx, name, newname, flags);
	else if (kind == K_DIR && editable(fs_node_fixed(name)) && backup_of(name, newname))
		r = rename_to_backup(fs, req, parent, ctx, name, newname);
	else
		r = -EACCES;
	/* Onto an existing context: EEXIST, the contract's answer for a taken name
	 * (and one of the two POSIX allows for a directory that is not empty). */
	fuse_reply_err(req, -r);
}

/* Only editors' scratch files and tools' temporary files can be created
 * (fs_scratch.c says which). */
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct scratch *sc;
	uint64_t actx;
	if (strlen(name) > STORE_NAME_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	if (fs_node_kind(parent, &actx) == K_ATTACH) {
		fs_attach_create(req, fs, actx, name, fi);
		return;
	}
	if (!fs_scratch_name_ok(fs, parent, name, fi->flags)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	int r = fs_scratch_create(fs, parent, name, fuse_req_ctx(req)->pid, &sc);
	struct fs_handle *h = r == 0 ? calloc(1, sizeof(*h)) : NULL;
	if (!h) {
		if (r == 0)
			fs_scratch_release(fs, sc);
		fuse_reply_err(req, r < 0 ? -r : ENOMEM);
		return;
	}
	pthread_mutex_t *lock = fs_handle_lock(fs, h); /* until the reply: see fs_op_open */
	pthread_mutex_lock(lock);
	h->kind = K_SCRATCH;
	h->scratch = sc;
	h->writer = true;
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = sc->ino;
	e.generation = 1;
	e.entry_timeout = 0; /* see reply_entry() */
	fs_attr_stat(fs, e.ino, &e.attr);
	fuse_reply_create(req, &e, fi);
	pthread_mutex_unlock(lock);
}

void fs_op_refuse_node(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, EACCES);
}

void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EACCES); /* Emacs's lock file: it carries on without */
}

void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fuse_reply_err(req, EACCES);
}
