/* fs_scratch.c — editors' scratch files.
 *
 * vim keeps its swap file beside the file it edits, as `.NAME.swp` (then .swo,
 * .swn, ... and .swpx while probing); nano takes `.NAME.swp` as a lock.  If the
 * directory refuses them vim falls back to /var/tmp, where two contexts' `input`
 * collide (E325); likewise its backup `NAME~` would go to ~/NAME~ (E207).  So
 * those names, and only those, may be created beside a file that exists; they
 * live in memory, capped, hidden from listings, and vanish on unmount or when
 * their context is deleted.  vim's "can I rename?" probe file (4913) stays
 * refused, which keeps vim writing in place (one message per save).
 */
#include <errno.h>
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
	return fs_fixed_kind(base) > 0;
}

/* ".input.swp", ".input.swa" ... ".input.swp" for any file NAME of the
 * directory, also "..config.swp" and ".config.swp" at the root; and "input~". */
bool fs_scratch_name_ok(struct fs *fs, fuse_ino_t parent, const char *name)
{
	uint64_t ctx;
	int kind = fs_kind_of(parent, &ctx);
	size_t len = strlen(name);
	if (backup_name_ok(kind, name, len))
		return true;
	if (len < 6 || name[0] != '.')
		return false;
	const char *dot = strrchr(name, '.');
	if (dot == name)
		return false;
	const char *ext = dot + 1;
	bool swap = (strlen(ext) == 3 && !strncmp(ext, "sw", 2) && ext[2] >= 'a' && ext[2] <= 'p') ||
		    !strcmp(ext, "swpx") || !strcmp(ext, "swx");
	if (!swap)
		return false;
	char base[256];
	snprintf(base, sizeof(base), "%.*s", (int)(dot - name - 1), name + 1);
	if (kind == K_DIR)
		return fs_fixed_kind(base) > 0;
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

struct scratch *fs_scratch_by_ino(struct fs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->scratch_lock);
	struct scratch *sc = map_get_id(&fs->scratch_by_ino, ino);
	pthread_mutex_unlock(&fs->scratch_lock);
	return sc;
}

int fs_scratch_create(struct fs *fs, fuse_ino_t parent, const char *name, struct scratch **ret)
{
	char key[300];
	key_of(parent, name, key, sizeof(key));
	pthread_mutex_lock(&fs->scratch_lock);
	struct scratch *sc = map_get(&fs->scratch_by_name, key, strlen(key));
	int r = 0;
	if (!sc && fs->scratch_by_ino.count >= SCRATCH_MAX_FILES)
		r = -ENOSPC;
	else if (!sc && !(sc = calloc(1, sizeof(*sc))))
		r = -ENOMEM;
	else if (!sc->ino) {
		sc->ino = INO_SCRATCH | ++fs->next_scratch;
		sc->parent = parent;
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
		sc->opens++;  /* the creating handle's */
	pthread_mutex_unlock(&fs->scratch_lock);
	if (r == 0)
		*ret = sc;
	return r;
}

static void scratch_remove_locked(struct fs *fs, struct scratch *sc)
{
	char key[300];
	key_of(sc->parent, sc->name, key, sizeof(key));
	map_del(&fs->scratch_by_name, key, strlen(key));
	map_del_id(&fs->scratch_by_ino, sc->ino);
	/* An open handle may still point at it: the last release frees it. */
	sc->gone = true;
	if (!sc->opens) {
		buf_done(&sc->data);
		free(sc);
	}
}

void fs_scratch_hold(struct fs *fs, struct scratch *sc)
{
	pthread_mutex_lock(&fs->scratch_lock);
	sc->opens++;
	pthread_mutex_unlock(&fs->scratch_lock);
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

void fs_scratch_stat(struct fs *fs, const struct scratch *sc, struct stat *st)
{
	st->st_mode = S_IFREG | 0600;
	st->st_nlink = 1;
	pthread_mutex_lock(&fs->scratch_lock);
	st->st_size = (off_t)sc->data.len;
	pthread_mutex_unlock(&fs->scratch_lock);
	st->st_mtim.tv_sec = sc->mtime_ms / 1000;
	st->st_mtim.tv_nsec = (sc->mtime_ms % 1000) * 1000000;
}
