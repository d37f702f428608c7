/* rcache.h — the response cache's store on disk: values by 128-bit key, in
 * STATE/cache, bounded in bytes, least recently used evicted first.
 *
 * One file per entry, STATE/cache/<32 hex digits of the key>:
 *
 *    0  magic   8 bytes  "MCPFSRC1"
 *    8  key    16 bytes  the key again (a file renamed by hand is no entry)
 *   24  length  u64 LE   value bytes
 *   32  value   length bytes
 *   ..  check   u64 LE   XXH3-64 of every byte before it
 *
 * An entry is written to a temporary file and renamed into place, without an
 * fsync: a crash may leave a file torn or empty, and the check finds it — a
 * torn entry is deleted and answered as a miss, never served.  The order of
 * use survives a restart in the files' modification times: each write and each
 * hit stamps its file with a time later than any stamp before it, and
 * rcache_open() orders the entries by them.  The bound counts whole files.
 *
 * Not thread-safe: its owner's lock (the store's) covers every call.  It
 * never logs; a file it cannot read is a miss, one it cannot write is not
 * cached (rcache_put says why with its errno).
 */
#ifndef MCPFS_RCACHE_H
#define MCPFS_RCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "mcpfs/buf.h"

#define RCACHE_KEY_LEN 16
#define RCACHE_HEADER 32		   /* bytes of a file before the value */
#define RCACHE_OVERHEAD 40		   /* bytes of a file besides the value */
#define RCACHE_BYTES_DEFAULT (256ll << 20) /* `.config` response_cache_bytes */
#define RCACHE_BYTES_MIN 1024ll
#define RCACHE_BYTES_MAX (1ll << 40)

struct rcache;

struct rcache_stats {
	uint64_t entries;
	uint64_t bytes; /* of every entry's file */
	uint64_t torn;	/* entries found torn and deleted since rcache_open */
};

/* Opens (creating, mode 0700) the directory dir_name under the directory
 * parent_fd and lists its entries, in the order of their stamps; leftover
 * temporary files are deleted, and entries over max_bytes evicted.  Reads no
 * entry's content (a torn one is found when it is used).  0, -ENOMEM, -errno
 * of the directory. */
int rcache_open(int parent_fd, const char *dir_name, int64_t max_bytes, struct rcache **ret);
void rcache_free(struct rcache *rc); /* NULL-safe */

/* The key of a request: XXH3-128 of the parts given, in order (a part's
 * bytes, then the next part's; n parts). */
void rcache_key(const void *const *parts, const size_t *lens, size_t n,
		uint8_t key[RCACHE_KEY_LEN]);

/* Appends the value of key to out and makes it the most recently used.
 * 0; -ENOENT for none (a torn or unreadable entry is deleted: none either);
 * -EFBIG or -ENOMEM from out (the entry stays). */
int rcache_get(struct rcache *rc, const uint8_t key[RCACHE_KEY_LEN], struct buf *out);

/* Stores value under key (replacing an entry of the same key) as the most
 * recently used, then evicts the least recently used entries until the bound
 * holds.  0; -EFBIG when the entry alone is over the bound (nothing stored);
 * -errno of the write (nothing stored). */
int rcache_put(struct rcache *rc, const uint8_t key[RCACHE_KEY_LEN], const void *value, size_t len);

/* A new bound: evicts at once what passes it. */
void rcache_set_max(struct rcache *rc, int64_t max_bytes);

void rcache_stats(const struct rcache *rc, struct rcache_stats *out);

#endif
