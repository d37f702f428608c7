/* store.c — the set of contexts and the state directory (see store.h).
 *
 * Layout of the state directory (doc/design/journal.md):
 *   STATE/lock               flock'd while a daemon uses the directory, and so is
 *                            STATE itself (deleting the file unlocks nothing)
 *   STATE/config             root defaults, `key = value` lines
 *   STATE/contexts/NAME/journal
 *   STATE/contexts/NAME/meta    its user metadata for listings (meta.c), if any
 *   STATE/contexts/NAME/blob-HASH  a hard link to STATE/blobs/HASH (blob.h)
 *   STATE/blobs/HASH         an attachment's content, once per state directory
 *   STATE/trash/             where deleted contexts go before removal
 *   STATE/cache/KEY          the response cache's entries (rcache.h)
 * Renaming and deleting a context are renames of its directory, so each is atomic.
 */
#include <cjson/cJSON.h>
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
#include "mcpfs/log.h"
#include "store_impl.h"

void notes_add(struct notes *n, uint64_t id, unsigned what)
{
	for (int i = 0; i < n->n; i++)
		if (n->id[i] == id) {
			n->what[i] |= what;
			return;
		}
	if (n->n == NOTES_MAX) {
		/* Full: what is added to the last slot's bits, so that context
		 * is told of more than changed, and id is told nothing: its
		 * change is lost.  The callers note one context, or a few, under
		 * one hold of the lock. */
		n->what[NOTES_MAX - 1] |= what;
		return;
	}
	n->id[n->n] = id;
	n->what[n->n] = what;
	n->n++;
}

void store_unlock_notify(struct store *s, struct notes *n)
{
	for (int i = 0; i < s->held.n; i++)
		notes_add(n, s->held.id[i], s->held.what[i]);
	s->held.n = 0;
	/* Every change announced is a change for the rendering cache too (the
	 * functions that change a context also say so themselves; text growing
	 * in `output` alone changes no cached view). */
	for (int i = 0; i < n->n; i++) {
		struct store_slot *slot = map_get_id(&s->by_id, n->id[i]);
		if (slot && slot->ctx && (n->what[i] & ~STORE_CHANGED_OUTPUT))
			context_changed(slot->ctx);
	}
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < n->n; i++)
		for (int k = 0; k < s->n_obs; k++)
			s->obs[k].fn(s->obs[k].data, n->id[i], n->what[i]);
	n->n = 0;
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

static bool keep_no_blob(void *data, const char *hex)
{
	(void)data;
	(void)hex;
	return false;
}

/* Removes a context directory that was moved to trash/ (one level deep), and
 * the shared copies of its blobs that no other context holds. */
static void remove_tree(struct blobs *b, int parent_fd, const char *name)
{
	int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		blob_sweep(b, fd, keep_no_blob, NULL);
		DIR *d = fdopendir(fd);
		struct dirent *de;
		while (d && (de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				unlinkat(fd, de->d_name, 0);
		if (d)
			closedir(d);
		else
			close(fd);
	}
	unlinkat(parent_fd, name, AT_REMOVEDIR);
}

static void empty_trash(struct store *s)
{
	int fd = openat(s->dir_fd, "trash", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	DIR *d = fdopendir(fd);
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			remove_tree(&s->blobs, fd, de->d_name);
	if (d)
		closedir(d);
	else
		close(fd);
}

static void slot_free(struct store *s, struct store_slot *slot)
{
	context_free(s, slot->ctx);
	cJSON_Delete(slot->meta);
	free(slot->name);
	free(slot);
}

/* Adds a slot for a context found on disk or just created: not loaded. */
static struct store_slot *store_add(struct store *s, const char *name)
{
	struct store_slot *slot = calloc(1, sizeof(*slot));
	if (!slot)
		return NULL;
	slot->id = ++s->next_id;
	slot->name = strdup(name);
	if (!slot->name || map_put(&s->by_name, name, strlen(name), slot) < 0) {
		slot_free(s, slot);
		return NULL;
	}
	if (map_put_id(&s->by_id, slot->id, slot) < 0) {
		map_del(&s->by_name, name, strlen(name));
		slot_free(s, slot);
		return NULL;
	}
	return slot;
}

static int store_scan(struct store *s)
{
	int fd = dup(s->contexts_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	lseek(fd, 0, SEEK_SET);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (store_name_check(de->d_name, strlen(de->d_name)) < 0)
			continue; /* ".", "..", and anything that is not ours */
		if (!store_add(s, de->d_name)) {
			closedir(d);
			return -ENOMEM;
		}
	}
	closedir(d);
	return 0;
}

static int load_defaults(struct store *s, const char *cli, char *why, size_t whylen)
{
	settings_init(&s->defaults);
	s->rcache_bytes = RCACHE_BYTES_DEFAULT;
	int fd = openat(s->dir_fd, "config", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char text[SETTINGS_TEXT_MAX];
		ssize_t n = read(fd, text, sizeof(text));
		close(fd);
		char w[256];
		if (n > 0 && store_defaults_parse(&s->defaults, &s->rcache_bytes, text, (size_t)n,
						  w, sizeof(w)) < 0)
			log_debug("ignoring saved defaults in '%s/config': %s", s->dir, w);
	}
	if (cli &&
	    store_defaults_parse(&s->defaults, &s->rcache_bytes, cli, strlen(cli), why, whylen) < 0)
		return -EINVAL;
	return 0;
}

static int store_open_dirs(struct store *s, char *why, size_t whylen)
{
	int r = mkdir_parents(s->dir);
	if (r < 0) {
		snprintf(why, whylen, "cannot create state directory '%s': %s", s->dir,
			 strerror(-r));
		return r;
	}
	/* Absolute from here on: a daemon changes its directory to /. */
	char *abs = realpath(s->dir, NULL);
	if (abs) {
		free(s->dir);
		s->dir = abs;
	}
	s->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dir_fd < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot open state directory '%s': %s", s->dir, strerror(-r));
		return r;
	}
	/* The directory itself is what is locked: STATE/lock can be deleted while a
	 * daemon holds it, and a second daemon would then lock a new file of the
	 * same name.  The file is still locked too, for a daemon of an earlier
	 * version, which locks only the file. */
	s->lock_fd = openat(s->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0 || flock(s->dir_fd, LOCK_EX | LOCK_NB) < 0 ||
	    flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		snprintf(why, whylen, "state directory '%s' is %s", s->dir,
			 r == -EBUSY ? "in use by another mcpfs" : strerror(-r));
		return r;
	}
	s->contexts_fd = open_subdir(s->dir_fd, "contexts");
	if (s->contexts_fd < 0 || (r = open_subdir(s->dir_fd, "trash")) < 0) {
		r = s->contexts_fd < 0 ? s->contexts_fd : r;
		snprintf(why, whylen, "cannot create '%s/contexts': %s", s->dir, strerror(-r));
		return r;
	}
	close(r);
	if ((r = blobs_open(&s->blobs, s->dir_fd)) < 0) {
		snprintf(why, whylen, "cannot create '%s/blobs': %s", s->dir, strerror(-r));
		return r;
	}
	return 0;
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

int store_open(const char *state_dir, const char *defaults_text, struct store **ret, char *why,
	       size_t whylen)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->defaults_lock, NULL);
	pthread_cond_init(&s->synced, NULL);
	pthread_cond_init(&s->commit_wake, NULL);
	s->journal_fd_max = journal_fd_bound();
	store_models_init(s);
	map_init(&s->by_name);
	map_init(&s->by_id);
	map_init(&s->calls);
	s->dir_fd = s->contexts_fd = s->lock_fd = s->reserve_fd = -1;
	blobs_init(&s->blobs);
	s->started_ms = clock_wall_ms();
	s->dir = strdup(state_dir);
	int r = s->dir ? store_open_dirs(s, why, whylen) : -ENOMEM;
	if (r == 0)
		r = load_defaults(s, defaults_text, why, whylen);
	if (r == 0) {
		store_models_load(s);
		store_rcache_open(s);
	}
	if (r == 0) {
		empty_trash(s);
		blobs_sweep(&s->blobs); /* what no context holds, after the trash */
		r = store_scan(s);
		if (r < 0)
			snprintf(why, whylen, "cannot list '%s/contexts': %s", s->dir,
				 strerror(-r));
	}
	if (r < 0) {
		store_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->by_id.nslots; i++)
		for (struct map_node *n = s->by_id.slots[i]; n; n = n->next)
			slot_free(s, n->value);
	/* Calls the transport never ended (it was stopped first) hold a reference. */
	for (size_t i = 0; i < s->calls.nslots; i++)
		for (struct map_node *n = s->calls.slots[i]; n; n = n->next)
			turn_unref(NULL, n->value);
	store_models_done(s);
	rcache_free(s->rcache);
	prices_done(&s->prices);
	map_done(&s->by_name);
	map_done(&s->by_id);
	map_done(&s->calls);
	if (s->contexts_fd >= 0)
		close(s->contexts_fd);
	blobs_done(&s->blobs);
	if (s->dir_fd >= 0)
		close(s->dir_fd);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	if (s->reserve_fd >= 0)
		close(s->reserve_fd);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->defaults_lock);
	pthread_cond_destroy(&s->synced);
	pthread_cond_destroy(&s->commit_wake);
	free(s->commit_q);
	free(s->dir);
	free(s);
}

void store_set_transport(struct store *s, const struct transport_ops *ops, void *impl)
{
	pthread_mutex_lock(&s->lock);
	s->ops = ops;
	s->ops_impl = impl;
	pthread_mutex_unlock(&s->lock);
}

int store_observe(struct store *s, store_observer_fn *fn, void *data)
{
	if (s->n_obs == STORE_OBSERVERS)
		return -ENOSPC;
	s->obs[s->n_obs].fn = fn;
	s->obs[s->n_obs].data = data;
	s->n_obs++;
	return 0;
}

void store_set_info(struct store *s, const char *key, const char *value)
{
	pthread_mutex_lock(&s->lock);
	int i;
	for (i = 0; i < INFO_KEYS && s->info_key[i][0]; i++)
		if (!strcmp(s->info_key[i], key))
			break;
	if (i < INFO_KEYS) {
		snprintf(s->info_key[i], sizeof(s->info_key[i]), "%s", key);
		snprintf(s->info_val[i], sizeof(s->info_val[i]), "%s", value);
	}
	pthread_mutex_unlock(&s->lock);
}

/* A slot being created is waited for (store_create). */
static struct store_slot *slot_wait(struct store *s, struct store_slot *slot, uint64_t id)
{
	while (slot && slot->creating) {
		pthread_cond_wait(&s->synced, &s->lock);
		slot = map_get_id(&s->by_id, id);
	}
	return slot;
}

struct context *store_get(struct store *s, uint64_t id)
{
	struct store_slot *slot = slot_wait(s, map_get_id(&s->by_id, id), id);
	if (!slot || (!slot->ctx && context_load(s, slot) < 0))
		return NULL;
	return slot->ctx;
}

int store_create(struct store *s, const char *name, uint64_t *id)
{
	size_t len = strlen(name);
	int r = store_name_check(name, len);
	if (r < 0)
		return r;
	struct notes notes = {0};
	pthread_mutex_lock(&s->lock);
	if (map_get(&s->by_name, name, len)) {
		pthread_mutex_unlock(&s->lock);
		return -EEXIST;
	}
	if (mkdirat(s->contexts_fd, name, 0700) < 0) {
		r = -errno;
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	struct store_slot *slot = store_add(s, name);
	if (!slot) {
		unlinkat(s->contexts_fd, name, AT_REMOVEDIR);
		pthread_mutex_unlock(&s->lock);
		return -ENOMEM;
	}
	/* The journal with its CREATE record, then the directory entry, are made
	 * durable without the lock (three fsyncs); meanwhile the name is taken
	 * and whoever wants the context waits. */
	slot->creating = true;
	uint64_t sid = slot->id;
	struct settings st = store_context_defaults(s);
	char path[JOURNAL_PATH_MAX];
	r = slot_journal_path(s, slot, path, sizeof(path));
	pthread_mutex_unlock(&s->lock);
	int64_t created = clock_wall_ms();
	struct journal *j = NULL;
	if (r == 0)
		r = context_create_file(path, &st, created, &j); /* ENOSPC when full */
	if (r == 0)
		r = fsync(s->contexts_fd) < 0 ? -errno : 0;
	pthread_mutex_lock(&s->lock);
	slot = map_get_id(&s->by_id, sid); /* neither deleted nor renamed meanwhile */
	slot->creating = false;
	pthread_cond_broadcast(&s->synced);
	if (r == 0 && context_adopt(s, slot, j, &st, created) < 0)
		journal_free(j); /* out of memory: it loads at first use */
	if (r < 0) {
		journal_free(j);
		map_del(&s->by_name, name, len);
		map_del_id(&s->by_id, slot->id);
		slot_free(s, slot);
		remove_tree(&s->blobs, s->contexts_fd, name);
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	if (id)
		*id = slot->id;
	notes_add(&notes, slot->id, STORE_CHANGED_CREATED);
	store_unlock_notify(s, &notes);
	return 0;
}

struct store_slot *store_slot_reserve(struct store *s, const char *name)
{
	struct store_slot *slot = store_add(s, name);
	if (slot)
		slot->creating = true;
	return slot;
}

void store_slot_settle(struct store *s, uint64_t slot_id, int r)
{
	struct store_slot *slot = map_get_id(&s->by_id, slot_id);
	slot->creating = false;
	pthread_cond_broadcast(&s->synced);
	if (r < 0) {
		map_del(&s->by_name, slot->name, strlen(slot->name));
		map_del_id(&s->by_id, slot->id);
		slot_free(s, slot);
	}
}

/* A message still being written has no call to cancel, yet readers of `output`
 * already wait for its reply: end it, so that none of them waits forever. */
static void store_end_drafts(struct store *s, struct context *c, struct notes *n)
{
	struct api_error e;
	api_error_clear(&e);
	api_error_set(&e, "cancelled", "cancelled: the context was deleted");
	for (size_t i = 0; i < c->n_ex; i++)
		if (c->ex[i].reply->state == TURN_PENDING)
			turn_end(s, c->ex[i].reply, TURN_FAILED, &e, n);
}

int store_delete(struct store *s, const char *name)
{
	struct notes notes = {0};
	pthread_mutex_lock(&s->lock);
	struct store_slot *slot = map_get(&s->by_name, name, strlen(name));
	if (slot && slot->creating)
		slot = slot_wait(s, slot, slot->id); /* then deleted, or failed */
	if (!slot) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	char trash[64];
	snprintf(trash, sizeof(trash), "trash/%llu-%lld", (unsigned long long)slot->id,
		 (long long)clock_wall_ms());
	if (renameat(s->contexts_fd, name, s->dir_fd, trash) < 0) {
		int r = -errno;
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	map_del(&s->by_name, name, strlen(name));
	map_del_id(&s->by_id, slot->id);
	uint64_t id = slot->id;
	/* End every live turn, so no reader waits; the journal is already in
	 * trash/, so nothing more is written to it. */
	struct context *c = slot->ctx;
	if (c) {
		context_journal_forget(s, c);
		journal_free(c->journal);
		c->journal = NULL;
		context_stop_all(s, c, "cancelled: the context was deleted", &notes);
		store_end_drafts(s, c, &notes);
		context_drop_ends(c);
	}
	slot_free(s, slot);
	remove_tree(&s->blobs, s->dir_fd, trash);
	notes_add(&notes, id, STORE_CHANGED_DELETED | STORE_CHANGED_OUTPUT);
	store_unlock_notify(s, &notes);
	fsync(s->contexts_fd); /* the rename into trash/, without the lock */
	return 0;
}

int store_rename(struct store *s, const char *from, const char *to)
{
	int r = store_name_check(to, strlen(to));
	if (r < 0)
		return r;
	struct notes notes = {0};
	pthread_mutex_lock(&s->lock);
	struct store_slot *c = map_get(&s->by_name, from, strlen(from));
	if (c && c->creating)
		c = slot_wait(s, c, c->id);
	if (!c)
		r = -ENOENT;
	else if (!strcmp(from, to))
		r = 0;
	else if (map_get(&s->by_name, to, strlen(to)))
		r = -EEXIST;
	else if (renameat2(s->contexts_fd, from, s->contexts_fd, to, RENAME_NOREPLACE) < 0)
		r = -errno;
	if (r < 0 || !strcmp(from, to)) {
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	char *copy = strdup(to);
	map_del(&s->by_name, from, strlen(from));
	if (!copy || map_put(&s->by_name, to, strlen(to), c) < 0) {
		/* Out of memory after the rename on disk: keep the old name in
		 * memory; the next mount sees the new one. */
		free(copy);
		map_put(&s->by_name, from, strlen(from), c);
		pthread_mutex_unlock(&s->lock);
		return -ENOMEM;
	}
	free(c->name);
	c->name = copy;
	notes_add(&notes, c->id, STORE_CHANGED_RENAMED);
	store_unlock_notify(s, &notes);
	fsync(s->contexts_fd); /* durable before rename() returns, without the lock */
	return 0;
}

int store_lookup(struct store *s, const char *name, uint64_t *id)
{
	pthread_mutex_lock(&s->lock);
	struct store_slot *c = map_get(&s->by_name, name, strlen(name));
	if (c)
		*id = c->id;
	pthread_mutex_unlock(&s->lock);
	return c ? 0 : -ENOENT;
}

int store_name(struct store *s, uint64_t id, char *out, size_t outlen)
{
	pthread_mutex_lock(&s->lock);
	struct store_slot *c = map_get_id(&s->by_id, id);
	int r = !c ? -ENOENT : strlen(c->name) >= outlen ? -ENAMETOOLONG : 0;
	if (r == 0)
		strcpy(out, c->name);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_entry *)a)->name, ((const struct store_entry *)b)->name);
}

int store_list(struct store *s, struct store_entry **ret, size_t *n)
{
	pthread_mutex_lock(&s->lock);
	size_t count = s->by_id.count, k = 0;
	struct store_entry *e = calloc(count ? count : 1, sizeof(*e));
	for (size_t i = 0; e && i < s->by_id.nslots; i++)
		for (struct map_node *node = s->by_id.slots[i]; node; node = node->next) {
			struct store_slot *c = node->value;
			e[k].id = c->id;
			e[k].name = strdup(c->name);
			if (!e[k++].name) {
				store_list_free(e, k);
				e = NULL;
				break;
			}
		}
	pthread_mutex_unlock(&s->lock);
	if (!e)
		return -ENOMEM;
	qsort(e, k, sizeof(*e), entry_cmp);
	*ret = e;
	*n = k;
	return 0;
}

void store_list_free(struct store_entry *e, size_t n)
{
	for (size_t i = 0; e && i < n; i++)
		free(e[i].name);
	free(e);
}

int store_render_defaults(struct store *s, struct buf *out)
{
	pthread_mutex_lock(&s->lock);
	int r = settings_render(&s->defaults, out);
	if (r == 0)
		r = store_rcache_render(s, s->rcache_bytes, out);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Writes STATE/config durably: temp file, fsync, rename, fsync the directory. */
static int save_defaults(struct store *s, const struct settings *d, int64_t bytes)
{
	struct buf b;
	buf_init(&b, SETTINGS_TEXT_MAX);
	int r = settings_render(d, &b);
	if (r == 0)
		r = store_rcache_render(s, bytes, &b);
	int fd =
	    r < 0 ? -1
		  : openat(s->dir_fd, "config.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (r == 0 && fd < 0)
		r = -errno;
	if (r == 0 && (write(fd, b.data, b.len) != (ssize_t)b.len || fsync(fd) < 0))
		r = errno ? -errno : -EIO;
	if (fd >= 0)
		close(fd);
	if (r == 0 && renameat(s->dir_fd, "config.tmp", s->dir_fd, "config") < 0)
		r = -errno;
	if (r < 0 && fd >= 0)
		unlinkat(s->dir_fd, "config.tmp", 0); /* no stale temp file (ENOSPC) */
	if (r == 0)
		fsync(s->dir_fd);
	buf_done(&b);
	return r;
}

/* Saved under defaults_lock, not the store lock: its fsyncs hold no context. */
int store_set_defaults(struct store *s, const char *text, size_t len, char *why, size_t whylen)
{
	struct settings d;
	int64_t bytes;
	pthread_mutex_lock(&s->defaults_lock);
	pthread_mutex_lock(&s->lock);
	d = s->defaults;
	bytes = s->rcache_bytes;
	pthread_mutex_unlock(&s->lock);
	char old[SETTINGS_MODEL_MAX + 1];
	memcpy(old, d.model, sizeof(old));
	int r = store_defaults_parse(&d, &bytes, text, len, why, whylen);
	if (r == 0)
		r = settings_check(&d, why, whylen);
	if (r == 0)
		r = store_model_check(s, old, d.model, why, whylen);
	if (r == 0) {
		r = save_defaults(s, &d, bytes);
		if (r < 0)
			snprintf(why, whylen, "cannot save '%s/config': %s", s->dir, strerror(-r));
	}
	if (r == 0) {
		pthread_mutex_lock(&s->lock);
		s->defaults = d;
		s->rcache_bytes = bytes;
		if (s->rcache)
			rcache_set_max(s->rcache, bytes);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_unlock(&s->defaults_lock);
	return r;
}

void store_refuse(struct store *s, const char *why)
{
	pthread_mutex_lock(&s->lock);
	snprintf(s->refused, sizeof(s->refused), "%s", why);
	s->refused_ms = clock_wall_ms();
	pthread_mutex_unlock(&s->lock);
}

size_t store_calls_in_flight(struct store *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->calls.count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

int store_render_status(struct store *s, struct buf *out)
{
	pthread_mutex_lock(&s->lock);
	char since[32];
	clock_format_utc(s->started_ms, since);
	int r = buf_printf(out,
			   "version: %s\nstate_dir: %s\ncontexts: %zu\ncalls_in_flight: %zu\n"
			   "started: %s\n",
			   MCPFS_VERSION, s->dir, s->by_id.count, s->calls.count, since);
	for (int i = 0; r == 0 && i < INFO_KEYS && s->info_key[i][0]; i++)
		r = buf_printf(out, "%s: %s\n", s->info_key[i], s->info_val[i]);
	if (r == 0 && s->refused[0]) {
		char when[32];
		clock_format_utc(s->refused_ms, when);
		r = buf_printf(out, "last_refused: %s (at %s)\n", s->refused, when);
	}
	if (r == 0)
		r = store_rcache_status(s, out);
	pthread_mutex_unlock(&s->lock);
	return r;
}
