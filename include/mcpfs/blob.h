/* blob.h — content-addressed attachment files, stored once per state
 * directory (CONTRACT §9, doc/design/journal.md §8).
 *
 * A blob is the bytes of one attachment; HASH is 32 hex digits of XXH3-128
 * (attach_hash).  The content lives once in STATE/blobs/HASH, and each
 * context that refers to it holds a hard link to that same inode,
 * STATE/contexts/NAME/blob-HASH, so renaming, forking and deleting a context
 * keep working on its own directory.  A new content is written to
 * STATE/blobs/HASH.TID.tmp, fdatasync'ed, renamed into place, STATE/blobs
 * fsynced, then linked into the context and the context's directory fsynced:
 * a blob that exists under its name is whole.  When a context drops its link
 * the shared name goes once its link count is back to 1 (only STATE/blobs
 * holds it); blobs_sweep, at start, removes what a crash left (temp files,
 * shared names no context holds).  A content already in STATE/blobs is linked
 * only when its size and bytes are those being attached, so a damaged shared
 * copy is replaced, not spread.  Callers hold no lock of the store while a
 * blob is put (it may be 24 MiB); struct blobs's own lock orders the changes
 * of STATE/blobs and is never held while taking another.
 */
#ifndef MCPFS_BLOB_H
#define MCPFS_BLOB_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpfs/buf.h"

#define BLOB_NAME_MAX 48 /* "blob-" + 32 hex digits + ".tmp" + NUL; HASH.TID.tmp fits */

/* STATE/blobs, shared by every context of a store. */
struct blobs {
	int fd;		      /* STATE/blobs */
	pthread_mutex_t lock; /* its names: a link made, a last link's name removed */
};

/* blobs_init makes b ready for blobs_done (fd -1); blobs_open then creates
 * (0700) and opens STATE/blobs under the state directory state_fd: 0, -errno. */
void blobs_init(struct blobs *b);
int blobs_open(struct blobs *b, int state_fd);
void blobs_done(struct blobs *b);

/* At start, before any context puts a blob: removes temp files, names that
 * are no blob's and shared blobs no context holds (link count 1).  Returns
 * the number removed. */
int blobs_sweep(struct blobs *b);

/* Makes the blob of hash hex (the caller computed it from data) one of the
 * directory dirfd's, durably: a link to the shared copy when that holds these
 * bytes (compared; nothing to do when dirfd links it already), else to a new
 * shared copy, which replaces a damaged one.  0, -errno (-ENOSPC...). */
int blob_put(struct blobs *b, int dirfd, const char *hex, const void *data, size_t n);

/* Shares a blob of dirfd written before blobs were shared (a state directory
 * of an earlier version): links it into STATE/blobs when that has none, or
 * replaces it by a link to the shared copy when that is whole (its hash).
 * 1 when something changed, 0 when nothing had to, -errno. */
int blob_share(struct blobs *b, int dirfd, const char *hex);

/* Reads the blob into out (appended) and checks its size and hash: -ENOENT
 * (missing), -EBADMSG (another size or content: damaged), -errno. */
int blob_get(int dirfd, const char *hex, uint64_t size, struct buf *out);

/* Copies up to n bytes at off of the blob; bytes copied, or -errno. */
long blob_pread(int dirfd, const char *hex, void *buf, size_t n, uint64_t off);

/* 0 when a blob of that size is there, -ENOENT, -EBADMSG (another size). */
int blob_stat(int dirfd, const char *hex, uint64_t size);

/* Links the blob of hash hex of directory from into directory to (a fork:
 * blobs never change, so both contexts may share the file); 0 when to has it
 * already, -ENOENT when from has none, -errno.  The caller fsyncs to. */
int blob_link(int from, int to, const char *hex);

/* Removes a context's blob (nothing if missing), and the shared copy when no
 * context holds it any more. */
void blob_remove(struct blobs *b, int dirfd, const char *hex);

/* Removes every `.tmp` file and every blob for which keep(data, hex) is false
 * from a context's directory, as blob_remove.  Returns the number removed. */
int blob_sweep(struct blobs *b, int dirfd, bool (*keep)(void *data, const char *hex), void *data);

#endif
