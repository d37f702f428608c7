/* rcache.c — the response cache's entries on disk (see rcache.h for the file
 * format and the rules).
 *
 * In memory: a map from key to entry and a doubly linked list in order of use
 * (head: least recently used), so a hit, a put and an eviction are O(1) but
 * for the files they touch.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "mcpfs/map.h"
#include "mcpfs/rcache.h"

static const char magic[8] = {'M', 'C', 'P', 'F', 'S', 'R', 'C', '1'};

struct rcache_entry {
	uint8_t key[RCACHE_KEY_LEN];
	uint64_t size; /* bytes of its file */
	int64_t stamp; /* ns: its file's mtime */
	struct rcache_entry *prev, *next;
};

struct rcache {
	int dir_fd;
	int64_t max;   /* bytes */
	uint64_t used; /* bytes of every entry's file */
	int64_t stamp; /* the latest stamp given, ns */
	uint64_t torn;
	struct map by_key; /* key -> struct rcache_entry (owner: the list) */
	struct rcache_entry *head, *tail;
};

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void key_name(const uint8_t key[RCACHE_KEY_LEN], char name[2 * RCACHE_KEY_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < RCACHE_KEY_LEN; i++) {
		name[2 * i] = hex[key[i] >> 4];
		name[2 * i + 1] = hex[key[i] & 15];
	}
	name[2 * RCACHE_KEY_LEN] = '\0';
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The key a file name spells, or false for a name that is no entry's. */
static bool name_key(const char *name, uint8_t key[RCACHE_KEY_LEN])
{
	if (strlen(name) != 2 * RCACHE_KEY_LEN)
		return false;
	for (int i = 0; i < RCACHE_KEY_LEN; i++) {
		int hi = hexval(name[2 * i]), lo = hexval(name[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static void list_unlink(struct rcache *rc, struct rcache_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		rc->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		rc->tail = e->prev;
	e->prev = e->next = NULL;
}

static void list_append(struct rcache *rc, struct rcache_entry *e)
{
	e->prev = rc->tail;
	e->next = NULL;
	if (rc->tail)
		rc->tail->next = e;
	else
		rc->head = e;
	rc->tail = e;
}

/* Forgets an entry and deletes its file. */
static void entry_drop(struct rcache *rc, struct rcache_entry *e)
{
	char name[2 * RCACHE_KEY_LEN + 1];
	key_name(e->key, name);
	unlinkat(rc->dir_fd, name, 0);
	map_del(&rc->by_key, e->key, RCACHE_KEY_LEN);
	list_unlink(rc, e);
	rc->used -= e->size;
	free(e);
}

static void evict(struct rcache *rc)
{
	while (rc->head && rc->used > (uint64_t)rc->max)
		entry_drop(rc, rc->head);
}

/* A stamp later than every one before: the order of use must survive a
 * restart even when two uses fall in the same clock tick. */
static int64_t next_stamp(struct rcache *rc)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	rc->stamp = now > rc->stamp ? now : rc->stamp + 1;
	return rc->stamp;
}

static struct timespec stamp_times(int64_t stamp)
{
	return (struct timespec){.tv_sec = stamp / 1000000000, .tv_nsec = stamp % 1000000000};
}

static int entry_cmp(const void *a, const void *b)
{
	const struct rcache_entry *x = *(struct rcache_entry *const *)a;
	const struct rcache_entry *y = *(struct rcache_entry *const *)b;
	return x->stamp < y->stamp ? -1 : x->stamp > y->stamp;
}

/* Reads the directory into v (unsorted); deletes temporary files. */
static int scan(struct rcache *rc, struct rcache_entry ***v, size_t *n)
{
	int fd = openat(rc->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	size_t cap = 0;
	struct dirent *de;
	int r = 0;
	while (r == 0 && (de = readdir(d))) {
		uint8_t key[RCACHE_KEY_LEN];
		struct stat st;
		if (!strncmp(de->d_name, ".tmp-", 5)) {
			unlinkat(rc->dir_fd, de->d_name, 0); /* a put a crash cut short */
			continue;
		}
		if (!name_key(de->d_name, key) ||
		    fstatat(rc->dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			struct rcache_entry **nv = realloc(*v, cap * sizeof(*nv));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			*v = nv;
		}
		struct rcache_entry *e = calloc(1, sizeof(*e));
		if (!e) {
			r = -ENOMEM;
			break;
		}
		memcpy(e->key, key, RCACHE_KEY_LEN);
		e->size = (uint64_t)st.st_size;
		e->stamp = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
		(*v)[(*n)++] = e;
	}
	closedir(d);
	return r;
}

int rcache_open(int parent_fd, const char *dir_name, int64_t max_bytes, struct rcache **ret)
{
	struct rcache *rc = calloc(1, sizeof(*rc));
	if (!rc)
		return -ENOMEM;
	map_init(&rc->by_key);
	rc->dir_fd = -1;
	rc->max = max_bytes;
	if (mkdirat(parent_fd, dir_name, 0700) < 0 && errno != EEXIST) {
		int r = -errno;
		rcache_free(rc);
		return r;
	}
	rc->dir_fd = openat(parent_fd, dir_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rc->dir_fd < 0) {
		int r = -errno;
		rcache_free(rc);
		return r;
	}
	struct rcache_entry **v = NULL;
	size_t n = 0;
	int r = scan(rc, &v, &n);
	if (n)
		qsort(v, n, sizeof(*v), entry_cmp);
	for (size_t i = 0; i < n; i++) {
		if (r == 0 && map_put(&rc->by_key, v[i]->key, RCACHE_KEY_LEN, v[i]) == 0) {
			list_append(rc, v[i]);
			rc->used += v[i]->size;
			if (v[i]->stamp > rc->stamp)
				rc->stamp = v[i]->stamp;
		} else {
			r = r ? r : -ENOMEM;
			free(v[i]);
		}
	}
	free(v);
	if (r < 0) {
		rcache_free(rc);
		return r;
	}
	evict(rc);
	*ret = rc;
	return 0;
}

void rcache_free(struct rcache *rc)
{
	if (!rc)
		return;
	for (struct rcache_entry *e = rc->head, *next; e; e = next) {
		next = e->next;
		free(e);
	}
	map_done(&rc->by_key);
	if (rc->dir_fd >= 0)
		close(rc->dir_fd);
	free(rc);
}

void rcache_key(const void *const *parts, const size_t *lens, size_t n, uint8_t key[RCACHE_KEY_LEN])
{
	XXH3_state_t *st = XXH3_createState();
	XXH128_hash_t h;
	if (st && XXH3_128bits_reset(st) == XXH_OK) {
		for (size_t i = 0; i < n; i++)
			XXH3_128bits_update(st, parts[i], lens[i]);
		h = XXH3_128bits_digest(st);
	} else { /* no memory for the state: one part at a time, chained */
		h = XXH3_128bits(NULL, 0);
		for (size_t i = 0; i < n; i++)
			h = XXH3_128bits_withSeed(parts[i], lens[i], h.low64 ^ h.high64);
	}
	XXH3_freeState(st);
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, h);
	memcpy(key, c.digest, RCACHE_KEY_LEN);
}

/* Reads a whole entry file and checks it; on success its value is appended
 * to out.  -ENOENT for a file that is missing, torn or not this key's. */
static int entry_read(struct rcache *rc, const struct rcache_entry *e, struct buf *out)
{
	char name[2 * RCACHE_KEY_LEN + 1];
	key_name(e->key, name);
	int fd = openat(rc->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -ENOENT;
	struct stat st;
	uint8_t *p = NULL;
	int r = -ENOENT;
	if (fstat(fd, &st) < 0 || st.st_size < RCACHE_OVERHEAD || st.st_size > rc->max)
		goto out;
	size_t size = (size_t)st.st_size, got = 0;
	p = malloc(size);
	if (!p) {
		r = -ENOMEM;
		goto out;
	}
	while (got < size) {
		ssize_t k = pread(fd, p + got, size - got, (off_t)got);
		if (k <= 0)
			goto out;
		got += (size_t)k;
	}
	uint64_t len = get_le64(p + 24);
	if (memcmp(p, magic, 8) || memcmp(p + 8, e->key, RCACHE_KEY_LEN) ||
	    len != size - RCACHE_OVERHEAD || get_le64(p + size - 8) != XXH3_64bits(p, size - 8))
		goto out;
	r = buf_append(out, p + RCACHE_HEADER, (size_t)len);
out:
	free(p);
	close(fd);
	return r;
}

int rcache_get(struct rcache *rc, const uint8_t key[RCACHE_KEY_LEN], struct buf *out)
{
	struct rcache_entry *e = map_get(&rc->by_key, key, RCACHE_KEY_LEN);
	if (!e)
		return -ENOENT;
	size_t had = out->len;
	int r = entry_read(rc, e, out);
	if (r == -ENOENT) {
		rc->torn++;
		entry_drop(rc, e);
		return r;
	}
	if (r < 0) {
		buf_resize(out, had);
		return r;
	}
	char name[2 * RCACHE_KEY_LEN + 1];
	key_name(key, name);
	e->stamp = next_stamp(rc);
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, stamp_times(e->stamp)};
	utimensat(rc->dir_fd, name, ts, AT_SYMLINK_NOFOLLOW);
	list_unlink(rc, e);
	list_append(rc, e);
	return 0;
}

/* Writes the file of an entry under a temporary name, stamped, and renames it
 * into place. */
static int entry_write(struct rcache *rc, const uint8_t key[RCACHE_KEY_LEN], const void *value,
		       size_t len, int64_t stamp)
{
	char name[2 * RCACHE_KEY_LEN + 1], tmp[2 * RCACHE_KEY_LEN + 8];
	key_name(key, name);
	snprintf(tmp, sizeof(tmp), ".tmp-%s", name);
	uint8_t head[RCACHE_HEADER], tail[8];
	memcpy(head, magic, 8);
	memcpy(head + 8, key, RCACHE_KEY_LEN);
	put_le64(head + 24, len);
	XXH3_state_t *st = XXH3_createState();
	if (!st || XXH3_64bits_reset(st) != XXH_OK) {
		XXH3_freeState(st);
		return -ENOMEM;
	}
	XXH3_64bits_update(st, head, sizeof(head));
	XXH3_64bits_update(st, value, len);
	put_le64(tail, XXH3_64bits_digest(st));
	XXH3_freeState(st);
	int fd = openat(rc->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	const struct {
		const void *p;
		size_t n;
	} pieces[] = {{head, sizeof(head)}, {value, len}, {tail, sizeof(tail)}};
	int r = 0;
	for (size_t i = 0; r == 0 && i < 3; i++)
		for (size_t off = 0; r == 0 && off < pieces[i].n;) {
			ssize_t k = write(fd, (const char *)pieces[i].p + off, pieces[i].n - off);
			if (k < 0)
				r = errno == EINTR ? 0 : -errno;
			else
				off += (size_t)k;
		}
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, stamp_times(stamp)};
	if (r == 0 && futimens(fd, ts) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && renameat(rc->dir_fd, tmp, rc->dir_fd, name) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(rc->dir_fd, tmp, 0);
	return r;
}

int rcache_put(struct rcache *rc, const uint8_t key[RCACHE_KEY_LEN], const void *value, size_t len)
{
	uint64_t size = (uint64_t)len + RCACHE_OVERHEAD;
	if (size > (uint64_t)rc->max)
		return -EFBIG;
	struct rcache_entry *e = map_get(&rc->by_key, key, RCACHE_KEY_LEN);
	bool fresh = e == NULL;
	if (fresh) {
		e = calloc(1, sizeof(*e));
		if (!e || map_put(&rc->by_key, key, RCACHE_KEY_LEN, e) < 0) {
			free(e);
			return -ENOMEM;
		}
		memcpy(e->key, key, RCACHE_KEY_LEN);
	}
	int64_t stamp = next_stamp(rc);
	int r = entry_write(rc, key, value, len, stamp);
	if (r < 0) {
		if (fresh) {
			map_del(&rc->by_key, key, RCACHE_KEY_LEN);
			free(e);
		}
		return r; /* an entry it was to replace is still the old file */
	}
	if (!fresh) {
		list_unlink(rc, e);
		rc->used -= e->size;
	}
	e->size = size;
	e->stamp = stamp;
	list_append(rc, e);
	rc->used += size;
	evict(rc);
	return 0;
}

void rcache_set_max(struct rcache *rc, int64_t max_bytes)
{
	rc->max = max_bytes;
	evict(rc);
}

void rcache_stats(const struct rcache *rc, struct rcache_stats *out)
{
	out->entries = rc->by_key.count;
	out->bytes = rc->used;
	out->torn = rc->torn;
}
