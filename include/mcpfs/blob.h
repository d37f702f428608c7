/* blob.h — content-addressed attachment files in a context's directory
 * (CONTRACT §9, doc/design/journal.md §8).
 *
 * A blob is the bytes of one attachment in a file named `blob-HASH` (HASH: 32
 * hex digits of XXH3-128, attach_hash) beside the context's journal: the same
 * content is stored once per context however often it is attached.  A blob is
 * written to `blob-HASH.tmp`, fsynced, renamed into place and the directory
 * fsynced, so a blob that exists under its name is whole; a crash leaves at
 * most a `.tmp` file, which blob_sweep removes.  Callers hold no lock of the
 * store while a blob is written (it may be 24 MiB).
 */
#ifndef MCPFS_BLOB_H
#define MCPFS_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpfs/buf.h"

#define BLOB_NAME_MAX 48 /* "blob-" + 32 hex digits + ".tmp" + NUL */

/* Writes the blob of hash hex (the caller computed it from data) into the
 * directory dirfd, durably; nothing is written when a file of that name and
 * size is there already.  0, -errno (-ENOSPC...). */
int blob_put(int dirfd, const char *hex, const void *data, size_t n);

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

/* Removes a blob (nothing if missing). */
void blob_remove(int dirfd, const char *hex);

/* Removes every `.tmp` file and every blob for which keep(data, hex) is false.
 * Returns the number removed. */
int blob_sweep(int dirfd, bool (*keep)(void *data, const char *hex), void *data);

#endif
