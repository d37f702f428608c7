/* storage_dir.c — the state-dir engine (storage.h): the directory, its lock,
 * contexts' names and directories (create, rename, remove, list, trash).  The
 * journals themselves (and where a context's are: sdir_path) are
 * storage_dir_sync.c's; the config, the side files and the reserve
 * storage_dir_files.c's.  The top of the three: its ops table points into
 * the other two, which never call it.
 *
 * Layout (doc/design/journal.md §1):
 *   STATE/lock                    flock'd, with STATE itself: one daemon
 *   STATE/config                  the root defaults (defaults_set: temp, fsync, rename)
 *   STATE/contexts/NAME/journal   a context's records (journal.h)
 *   STATE/contexts/NAME/meta      its side file (meta_set; not fsynced)
 *   STATE/contexts/NAME/blob-HASH its attachments' links (blob.h: storage_dir_blob.c)
 *   STATE/trash/                  hidden contexts (new-ID) and deletes; emptied at start
 *   STATE/blobs/                  blob.h's
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcpfs/clock.h"
#include "mcpfs/settings.h"
#include "mcpfs/store.h"
#include "storage_dir_impl.h"

/* The seam's limit is the journal's: a record the core may append fits a frame. */
_Static_assert(STORAGE_MAX_RECORD == JOURNAL_MAX_RECORD, "storage.h and journal.h disagree");

/* --- contexts ------------------------------------------------------------------ */

static struct sdir_ctx *ctx_add(struct sdir *d, const char *name)
{
	struct sdir_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->id = ++d->next_id;
	c->name = name ? strdup(name) : NULL;
	if ((name && !c->name) || map_put_id(&d->by_id, c->id, c) < 0) {
		free(c->name);
		free(c);
		return NULL;
	}
	return c;
}

static bool keep_no_blob(void *data, const char *hex)
{
	(void)data;
	(void)hex;
	return false;
}

/* Removes a context directory (one level deep), and the shared copies of its
 * blobs that no other context holds. */
static void remove_tree(struct sdir *d, int parent_fd, const char *name)
{
	int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		blob_sweep(&d->blobs, fd, keep_no_blob, NULL);
		DIR *dir = fdopendir(fd);
		struct dirent *de;
		while (dir && (de = readdir(dir)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				unlinkat(fd, de->d_name, 0);
		if (dir)
			closedir(dir);
		else
			close(fd);
	}
	unlinkat(parent_fd, name, AT_REMOVEDIR);
}

static int dir_create(struct storage *s, const char *name, int64_t created_ms, const void *payload,
		      size_t len, uint64_t *id)
{
	struct sdir *d = sdir_of(s);
	(void)created_ms; /* the CREATE payload holds it */
	if (len > STORAGE_MAX_RECORD)
		return -EFBIG;
	pthread_mutex_lock(&d->lock);
	struct sdir_ctx *c = ctx_add(d, name);
	char rel[SDIR_PATH_MAX], path[SDIR_PATH_MAX];
	int r = !c ? -ENOMEM : sdir_rel_dir(c, rel, sizeof(rel));
	if (r == 0)
		r = sdir_path(d, c, "journal", path, sizeof(path));
	if (r == 0 && mkdirat(d->dir_fd, rel, 0700) < 0)
		r = -errno;
	bool made = r == 0;
	pthread_mutex_unlock(&d->lock);
	/* The journal with its CREATE record, then the directory entry, are made
	 * durable without the lock (three fsyncs). */
	struct journal *j = NULL;
	if (r == 0)
		r = journal_create(path, JOURNAL_CREATE, payload, len, &j);
	if (r == 0 && name)
		r = fsync(d->contexts_fd) < 0 ? -errno : 0;
	pthread_mutex_lock(&d->lock);
	if (r == 0) {
		sdir_make_room(d);
		c->j = j;
		c->records = 1;
		sdir_opened(d, c);
		*id = c->id;
	} else if (c) {
		journal_free(j);
		if (made)
			remove_tree(d, d->dir_fd, rel);
		map_del_id(&d->by_id, c->id);
		sdir_ctx_drop(d, c);
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

static int dir_rename(struct storage *s, uint64_t id, const char *to)
{
	struct sdir *d = sdir_of(s);
	char rel[SDIR_PATH_MAX];
	pthread_mutex_lock(&d->lock);
	struct sdir_ctx *c = map_get_id(&d->by_id, id);
	char *copy = c ? strdup(to) : NULL;
	int r = !c ? -ENOENT : !copy ? -ENOMEM : sdir_rel_dir(c, rel, sizeof(rel));
	if (r == 0 && renameat2(d->dir_fd, rel, d->contexts_fd, to, RENAME_NOREPLACE) < 0)
		r = -errno;
	bool was_hidden = c && !c->name;
	if (r == 0) {
		free(c->name);
		c->name = copy;
		copy = NULL;
	}
	pthread_mutex_unlock(&d->lock);
	free(copy);
	/* A hidden context's appearing is durable before it returns, without the
	 * lock: one that cannot be made to appear durably does not appear.  A
	 * named one's rename is made durable by dir_names_sync, which the caller
	 * calls once it released its own lock (a rename whose directory sync
	 * fails stays done: it is in the directory already). */
	if (r == 0 && was_hidden && fsync(d->contexts_fd) < 0) {
		r = -errno;
		{ /* not there after all */
			pthread_mutex_lock(&d->lock);
			renameat(d->contexts_fd, to, d->dir_fd, rel);
			free(c->name);
			c->name = NULL;
			pthread_mutex_unlock(&d->lock);
		}
	}
	return r;
}

static int dir_remove(struct storage *s, uint64_t id)
{
	struct sdir *d = sdir_of(s);
	char rel[SDIR_PATH_MAX], trash[64];
	pthread_mutex_lock(&d->lock);
	struct sdir_ctx *c = map_get_id(&d->by_id, id);
	int r = c ? sdir_rel_dir(c, rel, sizeof(rel)) : -ENOENT;
	bool named = c && c->name;
	snprintf(trash, sizeof(trash), "trash/%llu-%lld", (unsigned long long)id,
		 (long long)clock_wall_ms());
	if (r == 0 && named && renameat(d->dir_fd, rel, d->dir_fd, trash) < 0)
		r = -errno;
	if (r == 0) {
		map_del_id(&d->by_id, id);
		sdir_ctx_drop(d, c); /* nothing more is written to it */
		remove_tree(d, d->dir_fd, named ? trash : rel);
	}
	pthread_mutex_unlock(&d->lock);
	return r; /* the rename into trash/ is made durable by dir_names_sync */
}

/* The renames in STATE/contexts made durable, without the engine's lock (the
 * descriptor lives as long as the engine). */
static int dir_names_sync(struct storage *s)
{
	return fsync(sdir_of(s)->contexts_fd) < 0 ? -errno : 0;
}

struct list_item {
	uint64_t id;
	char *name;
};

static int dir_list(struct storage *s, storage_context_fn *fn, void *data)
{
	struct sdir *d = sdir_of(s);
	/* A copy, so that fn runs without the lock (it may take the caller's). */
	pthread_mutex_lock(&d->lock);
	struct list_item *v = calloc(d->by_id.count + 1, sizeof(*v));
	size_t n = 0;
	int r = v ? 0 : -ENOMEM;
	for (uint64_t id = 1; r == 0 && id <= d->next_id; id++) {
		struct sdir_ctx *c = map_get_id(&d->by_id, id);
		if (!c || !c->name)
			continue;
		v[n].id = id;
		if (!(v[n++].name = strdup(c->name)))
			r = -ENOMEM;
	}
	pthread_mutex_unlock(&d->lock);
	for (size_t i = 0; r == 0 && i < n; i++) {
		struct storage_context sc = {v[i].id, v[i].name, 0, 0, 0};
		r = fn(data, &sc);
	}
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
	return r;
}

/* --- the engine --------------------------------------------------------------------- */

static void dir_free(struct storage *s)
{
	struct sdir *d = sdir_of(s);
	for (uint64_t id = 1; id <= d->next_id && d->by_id.count; id++) {
		struct sdir_ctx *c = map_del_id(&d->by_id, id);
		if (c)
			sdir_ctx_drop(d, c);
	}
	map_done(&d->by_id);
	blobs_done(&d->blobs);
	int fds[] = {d->contexts_fd, d->dir_fd, d->lock_fd, d->reserve_fd};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->defaults_lock);
	free(d->dir);
	free(d);
}

static const struct storage_ops dir_ops = {
    .create = dir_create,
    .rename = dir_rename,
    .remove = dir_remove,
    .append = sdir_append,
    .sync = sdir_sync,
    .list = dir_list,
    .load = sdir_load,
    .defaults_get = sdir_defaults_get,
    .defaults_set = sdir_defaults_set,
    .open = sdir_open,
    .failed = sdir_failed,
    .tail = sdir_tail,
    .meta_get = sdir_meta_get,
    .meta_set = sdir_meta_set,
    .reserve = sdir_reserve,
    .names_sync = dir_names_sync,
    .blob_put = sdir_blob_put,
    .blob_read = sdir_blob_read,
    .blob_stat = sdir_blob_stat,
    .blob_link = sdir_blob_link,
    .blob_sweep = sdir_blob_sweep,
    .free = dir_free,
};

static struct sdir *sdir_checked(struct storage *s)
{
	return s && s->ops == &dir_ops ? sdir_of(s) : NULL;
}

int storage_dir_fd(struct storage *s)
{
	struct sdir *d = sdir_checked(s);
	return d ? d->dir_fd : -ENOTSUP;
}

const char *storage_dir_path(struct storage *s)
{
	struct sdir *d = sdir_checked(s);
	return d ? d->dir : NULL;
}

int storage_dir_context_fd(struct storage *s, uint64_t id)
{
	struct sdir *d = sdir_checked(s);
	if (!d)
		return -ENOTSUP;
	return sdir_context_fd(d, id);
}

size_t storage_dir_open_journals(struct storage *s)
{
	struct sdir *d = sdir_checked(s);
	if (!d)
		return 0;
	pthread_mutex_lock(&d->lock);
	size_t n = d->open_journals;
	pthread_mutex_unlock(&d->lock);
	return n;
}

void storage_dir_set_fd_max(struct storage *s, size_t fd_max)
{
	struct sdir *d = sdir_checked(s);
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->fd_max = fd_max ? fd_max : 1;
	pthread_mutex_unlock(&d->lock);
}

/* Open journals: a quarter of the descriptors this process may open, so that
 * connections, FUSE and the rest keep three quarters (1,024 -> 256). */
static size_t journal_fd_bound(void)
{
	struct rlimit rl;
	rlim_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur / 4 : STORE_JOURNALS_OPEN_MAX;
	if (n > STORE_JOURNALS_OPEN_MAX)
		n = STORE_JOURNALS_OPEN_MAX;
	return n < STORE_JOURNALS_OPEN_MIN ? STORE_JOURNALS_OPEN_MIN : (size_t)n;
}

/* mkdir -p with mode 0700 for the directories we create. */
static int mkdir_parents(const char *path)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int open_subdir(int dirfd, const char *name)
{
	if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int dir_open_dirs(struct sdir *d, char *why, size_t whylen)
{
	int r = mkdir_parents(d->dir);
	if (r < 0) {
		snprintf(why, whylen, "cannot create state directory '%s': %s", d->dir,
			 strerror(-r));
		return r;
	}
	/* Absolute from here on: a daemon changes its directory to /. */
	char *abs = realpath(d->dir, NULL);
	if (abs) {
		free(d->dir);
		d->dir = abs;
	}
	d->dir_fd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->dir_fd < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot open state directory '%s': %s", d->dir, strerror(-r));
		return r;
	}
	/* The directory itself is what is locked: STATE/lock can be deleted while a
	 * daemon holds it, and a second daemon would then lock a new file of the
	 * same name.  The file is still locked too, for a daemon of an earlier
	 * version, which locks only the file. */
	d->lock_fd = openat(d->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d->lock_fd < 0 || flock(d->dir_fd, LOCK_EX | LOCK_NB) < 0 ||
	    flock(d->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		snprintf(why, whylen, "state directory '%s' is %s", d->dir,
			 r == -EBUSY ? "in use by another mcpfs" : strerror(-r));
		return r;
	}
	d->contexts_fd = open_subdir(d->dir_fd, "contexts");
	if (d->contexts_fd < 0 || (r = open_subdir(d->dir_fd, "trash")) < 0) {
		r = d->contexts_fd < 0 ? d->contexts_fd : r;
		snprintf(why, whylen, "cannot create '%s/contexts': %s", d->dir, strerror(-r));
		return r;
	}
	close(r);
	if ((r = blobs_open(&d->blobs, d->dir_fd)) < 0) {
		snprintf(why, whylen, "cannot create '%s/blobs': %s", d->dir, strerror(-r));
		return r;
	}
	return 0;
}

static void empty_trash(struct sdir *d)
{
	int fd = openat(d->dir_fd, "trash", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	DIR *dir = fdopendir(fd);
	struct dirent *de;
	while (dir && (de = readdir(dir)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			remove_tree(d, fd, de->d_name);
	if (dir)
		closedir(dir);
	else
		close(fd);
}

static int dir_scan(struct sdir *d)
{
	int fd = dup(d->contexts_fd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	lseek(fd, 0, SEEK_SET);
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (store_name_check(de->d_name, strlen(de->d_name)) < 0)
			continue; /* ".", "..", and anything that is not ours */
		if (!ctx_add(d, de->d_name)) {
			closedir(dir);
			return -ENOMEM;
		}
	}
	closedir(dir);
	return 0;
}

int storage_dir_new(const char *dir, size_t fd_max, struct storage **ret, char *why, size_t whylen)
{
	struct sdir *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->base.ops = &dir_ops;
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->defaults_lock, NULL);
	map_init(&d->by_id);
	blobs_init(&d->blobs);
	d->dir_fd = d->contexts_fd = d->lock_fd = d->reserve_fd = -1;
	d->fd_max = fd_max ? fd_max : journal_fd_bound();
	d->dir = strdup(dir);
	int r = d->dir ? dir_open_dirs(d, why, whylen) : -ENOMEM;
	if (r == 0) {
		empty_trash(d);
		blobs_sweep(&d->blobs); /* what no context holds, after the trash */
		r = dir_scan(d);
		if (r < 0)
			snprintf(why, whylen, "cannot list '%s/contexts': %s", d->dir,
				 strerror(-r));
	}
	if (r < 0) {
		dir_free(&d->base);
		return r;
	}
	*ret = &d->base;
	return 0;
}
