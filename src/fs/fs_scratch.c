/* fs_scratch.c — editors' scratch files and tools' temporary files.
 *
 * vim keeps its swap file beside the file it edits, as `.NAME.swp` (then .swo,
 * .swn, ... and .swpx while probing); nano takes `.NAME.swp` as a lock.  If the
 * directory refuses them vim falls back to /var/tmp, where two contexts' `input`
 * collide (E325); likewise its backup `NAME~` would go to ~/NAME~ (E207).  So
 * those names may be created beside a file that exists.
 *
 * Tools that save by renaming (sed -i, perl -i, Python's tempfile + os.replace,
 * editors' atomic save) create their temporary file beside the target with
 * O_CREAT|O_EXCL (mkstemp(3)), under names of their own ("sed" and six random
 * characters, 8 random characters, "tmp" and eight random characters...).
 * So inside a context (and at the root, for `.config`) any other name may be
 * created exclusively; a plain create
 * (`touch`, `>`) stays EACCES.  vim's "can I rename?" probe file (4913, then
 * 4913 + 123k) stays refused, which keeps vim writing in place (one message
 * per save).
 *
 * An editor's backup rename of a file of a context (Emacs; vim with
 * backupcopy=no) makes its backup name one of them, a copy (fs_dir.c).
 *
 * All of them live in memory, bounded (fs_impl.h: SCRATCH_*), hidden from
 * listings, and vanish when unlinked, renamed onto a file of the context
 * (fs_dir.c), on unmount or when their context is deleted.  One left behind by
 * a tool that died is reclaimed when a bound is reached: one that no file has
 * open and whose creator has exited.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_impl.h"
#include "mcpfs/clock.h"

static int key_of(fuse_ino_t parent, const char *name, char *key, size_t n)
{
	return snprintf(key, n, "%llx/%s", (unsigned long long)parent, name);
}

/* vim's backup "NAME~" of a file of a context: refused, vim would put it in
 * ~/NAME~, where two vims editing two contexts' input collide (E207). */
static bool backup_name_ok(int kind, const char *name, size_t len)
{
	char base[256];
	if (kind != K_DIR || len < 2 || len >= sizeof(base) || name[len - 1] != '~')
		return false;
	memcpy(base, name, len - 1);
	base[len - 1] = '\0';
	return fs_node_fixed(base) > 0;
}

/* vim's probe names: 4913, 5036, 5159... */
static bool vim_probe_name(const char *name)
{
	char *end;
	unsigned long n = strtoul(name, &end, 10);
	return *name >= '0' && *name <= '9' && !*end && n >= 4913 && (n - 4913) % 123 == 0;
}

/* A temporary file: created with O_EXCL, in a context or at the root, under
 * a name that is none of the directory's own. */
static bool temporary_name_ok(struct fs *fs, int kind, const char *name, int flags)
{
	uint64_t id;
	if (!(flags & O_EXCL) || vim_probe_name(name))
		return false;
	if (kind == K_DIR)
		return fs_node_fixed(name) < 0;
	return kind == K_ROOT && strcmp(name, ".status") && strcmp(name, ".config") &&
	       strcmp(name, ".models") && strcmp(name, ".usage") &&
	       store_lookup(fs->st, name, &id) < 0;
}

/* ".input.swp", ".input.swa" ... ".input.swp" for any file NAME of the
 * directory, also "..config.swp" and ".config.swp" at the root; "input~"; and
 * temporary files. */
bool fs_scratch_name_ok(struct fs *fs, fuse_ino_t parent, const char *name, int flags)
{
	uint64_t ctx;
	int kind = fs_node_kind(parent, &ctx);
	size_t len = strlen(name);
	if (backup_name_ok(kind, name, len) || temporary_name_ok(fs, kind, name, flags))
		return true;
	if (len < 6 || name[0] != '.')
		return false;
	const char *dot = strrchr(name, '.');
	if (dot == name)
		return false;
	const char *ext = dot + 1;
	bool swap =
	    (strlen(ext) == 3 && !strncmp(ext, "sw", 2) && ext[2] >= 'a' && ext[2] <= 'p') ||
	    !strcmp(ext, "swpx") || !strcmp(ext, "swx");
	if (!swap)
		return false;
	char base[256];
	snprintf(base, sizeof(base), "%.*s", (int)(dot - name - 1), name + 1);
	if (kind == K_DIR)
		return fs_node_fixed(base) > 0;
	if (kind == K_ROOT)
		return !strcmp(base, ".config") || !strcmp(base, "config") ||
		       !strcmp(base, ".status") || !strcmp(base, "status");
	return false;
}

struct scratch *fs_scratch_find(struct fs *fs, fuse_ino_t parent, const char *name)
{
	char key[300];
	key_of(parent, name, key, sizeof(key));
	pthread_mutex_lock(&fs->scratch_lock);
	struct scratch *sc = map_get(&fs->scratch_by_name, key, strlen(key));
	pthread_mutex_unlock(&fs->scratch_lock);
	return sc;
}

/* The inode number of parent/name, 0 for none (read under the lock: the file
 * may be removed at any time). */
uint64_t fs_scratch_ino(struct fs *fs, fuse_ino_t parent, const char *name)
{
	char key[300];
	key_of(parent, name, key, sizeof(key));
	pthread_mutex_lock(&fs->scratch_lock);
	struct scratch *sc = map_get(&fs->scratch_by_name, key, strlen(key));
	uint64_t ino = sc ? sc->ino : 0;
	pthread_mutex_unlock(&fs->scratch_lock);
	return ino;
}

struct scratch *fs_scratch_hold_ino(struct fs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->scratch_lock);
	struct scratch *sc = map_get_id(&fs->scratch_by_ino, ino);
	if (sc)
		sc->opens++;
	pthread_mutex_unlock(&fs->scratch_lock);
	return sc;
}

static void scratch_remove_locked(struct fs *fs, struct scratch *sc);

/* Drops the files left behind (no file open on them, their creator gone) but
 * keep; how many.  kill(pid, 0) sends nothing: ESRCH says that no such thread
 * exists any more. */
static int reclaim_locked(struct fs *fs, const struct scratch *keep)
{
	int n = 0;
	for (size_t i = 0; i < fs->scratch_by_ino.nslots; i++) {
		struct map_node *node = fs->scratch_by_ino.slots[i];
		while (node) {
			struct map_node *next = node->next;
			struct scratch *sc = node->value;
			if (sc != keep && !sc->opens && sc->creator > 0 &&
			    kill(sc->creator, 0) < 0 && errno == ESRCH) {
				scratch_remove_locked(fs, sc);
				n++;
			}
			node = next;
		}
	}
	return n;
}

static size_t count_in_locked(struct fs *fs, fuse_ino_t parent)
{
	size_t n = 0;
	for (size_t i = 0; i < fs->scratch_by_ino.nslots; i++)
		for (struct map_node *node = fs->scratch_by_ino.slots[i]; node; node = node->next)
			n += ((struct scratch *)node->value)->parent == parent;
	return n;
}

static bool room_for_one_locked(struct fs *fs, fuse_ino_t parent)
{
	return fs->scratch_by_ino.count < SCRATCH_MAX_FILES &&
	       count_in_locked(fs, parent) < SCRATCH_DIR_MAX_FILES;
}

int fs_scratch_create(struct fs *fs, fuse_ino_t parent, const char *name, pid_t creator,
		      struct scratch **ret)
{
	char key[300];
	key_of(parent, name, key, sizeof(key));
	pthread_mutex_lock(&fs->scratch_lock);
	struct scratch *sc = map_get(&fs->scratch_by_name, key, strlen(key));
	int r = 0;
	if (!sc && !room_for_one_locked(fs, parent) &&
	    (!reclaim_locked(fs, NULL) || !room_for_one_locked(fs, parent)))
		r = -ENOSPC;
	else if (!sc && !(sc = calloc(1, sizeof(*sc))))
		r = -ENOMEM;
	else if (!sc->ino) {
		sc->ino = INO_SCRATCH | ++fs->next_scratch;
		sc->parent = parent;
		sc->creator = creator;
		snprintf(sc->name, sizeof(sc->name), "%s", name);
		buf_init(&sc->data, SCRATCH_MAX_BYTES);
		sc->mtime_ms = clock_wall_ms();
		if (map_put(&fs->scratch_by_name, key, strlen(key), sc) < 0 ||
		    map_put_id(&fs->scratch_by_ino, sc->ino, sc) < 0) {
			map_del(&fs->scratch_by_name, key, strlen(key));
			free(sc);
			r = -ENOMEM;
		}
	}
	if (r == 0)
		sc->opens++; /* the creating handle's */
	pthread_mutex_unlock(&fs->scratch_lock);
	if (r == 0)
		*ret = sc;
	return r;
}

/* 0 when sc may grow to len bytes, -ENOSPC past SCRATCH_TOTAL_BYTES (after
 * reclaiming what was left behind).  A file already removed counts no more. */
static int account_locked(struct fs *fs, struct scratch *sc, size_t len)
{
	if (sc->gone || len <= sc->data.len)
		return 0;
	size_t grow = len - sc->data.len;
	if (fs->scratch_bytes + grow > SCRATCH_TOTAL_BYTES)
		reclaim_locked(fs, sc);
	return fs->scratch_bytes + grow > SCRATCH_TOTAL_BYTES ? -ENOSPC : 0;
}

/* Writes n bytes at off: -EFBIG past SCRATCH_MAX_BYTES, -ENOSPC past the total. */
int fs_scratch_write(struct fs *fs, struct scratch *sc, size_t off, const char *data, size_t n)
{
	pthread_mutex_lock(&fs->scratch_lock);
	size_t old = sc->data.len;
	size_t end = off + n < off ? SIZE_MAX : off + n;
	int r = end > SCRATCH_MAX_BYTES ? -EFBIG : account_locked(fs, sc, end);
	if (r == 0)
		r = buf_write_at(&sc->data, off, data, n);
	if (r >= 0 && !sc->gone)
		fs->scratch_bytes = fs->scratch_bytes - old + sc->data.len;
	sc->mtime_ms = clock_wall_ms();
	pthread_mutex_unlock(&fs->scratch_lock);
	return r;
}

/* truncate(2) and O_TRUNC: as fs_scratch_write. */
int fs_scratch_resize(struct fs *fs, struct scratch *sc, size_t len)
{
	pthread_mutex_lock(&fs->scratch_lock);
	size_t old = sc->data.len;
	int r = len > SCRATCH_MAX_BYTES ? -EFBIG : account_locked(fs, sc, len);
	if (r == 0)
		r = buf_resize(&sc->data, len);
	if (r >= 0 && !sc->gone)
		fs->scratch_bytes = fs->scratch_bytes - old + sc->data.len;
	pthread_mutex_unlock(&fs->scratch_lock);
	return r;
}

/* A copy of the content of parent/name into out (a rename onto a file of the
 * context reads it): -ENOENT, or buf's errors. */
int fs_scratch_copy(struct fs *fs, fuse_ino_t parent, const char *name, struct buf *out)
{
	char key[300];
	key_of(parent, name, key, sizeof(key));
	pthread_mutex_lock(&fs->scratch_lock);
	struct scratch *sc = map_get(&fs->scratch_by_name, key, strlen(key));
	int r = sc ? buf_append(out, sc->data.data ? sc->data.data : "", sc->data.len) : -ENOENT;
	pthread_mutex_unlock(&fs->scratch_lock);
	return r;
}

static void scratch_remove_locked(struct fs *fs, struct scratch *sc)
{
	char key[300];
	key_of(sc->parent, sc->name, key, sizeof(key));
	map_del(&fs->scratch_by_name, key, strlen(key));
	map_del_id(&fs->scratch_by_ino, sc->ino);
	fs->scratch_bytes -= sc->data.len;
	/* An open handle may still point at it: the last release frees it. */
	sc->gone = true;
	if (!sc->opens) {
		buf_done(&sc->data);
		free(sc);
	}
}

void fs_scratch_release(struct fs *fs, struct scratch *sc)
{
	pthread_mutex_lock(&fs->scratch_lock);
	bool last = --sc->opens == 0 && sc->gone;
	pthread_mutex_unlock(&fs->scratch_lock);
	if (last) {
		buf_done(&sc->data);
		free(sc);
	}
}

void fs_scratch_free_all(struct fs *fs)
{
	for (size_t i = 0; i < fs->scratch_by_ino.nslots; i++)
		for (struct map_node *n = fs->scratch_by_ino.slots[i]; n; n = n->next) {
			struct scratch *sc = n->value;
			buf_done(&sc->data);
			free(sc);
		}
	map_done(&fs->scratch_by_ino);
	map_done(&fs->scratch_by_name);
}

int fs_scratch_unlink(struct fs *fs, fuse_ino_t parent, const char *name)
{
	char key[300];
	key_of(parent, name, key, sizeof(key));
	pthread_mutex_lock(&fs->scratch_lock);
	struct scratch *sc = map_get(&fs->scratch_by_name, key, strlen(key));
	if (sc)
		scratch_remove_locked(fs, sc);
	pthread_mutex_unlock(&fs->scratch_lock);
	return sc ? 0 : -ENOENT;
}

void fs_scratch_drop_dir(struct fs *fs, fuse_ino_t parent)
{
	pthread_mutex_lock(&fs->scratch_lock);
	for (size_t i = 0; i < fs->scratch_by_ino.nslots; i++) {
		struct map_node *n = fs->scratch_by_ino.slots[i];
		while (n) {
			struct map_node *next = n->next;
			struct scratch *sc = n->value;
			if (sc->parent == parent)
				scratch_remove_locked(fs, sc);
			n = next;
		}
	}
	pthread_mutex_unlock(&fs->scratch_lock);
}

int fs_scratch_stat(struct fs *fs, uint64_t ino, struct stat *st)
{
	pthread_mutex_lock(&fs->scratch_lock);
	struct scratch *sc = map_get_id(&fs->scratch_by_ino, ino);
	if (sc) {
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		st->st_size = (off_t)sc->data.len;
		st->st_mtim.tv_sec = sc->mtime_ms / 1000;
		st->st_mtim.tv_nsec = (sc->mtime_ms % 1000) * 1000000;
	}
	pthread_mutex_unlock(&fs->scratch_lock);
	return sc ? 0 : -ENOENT;
}
