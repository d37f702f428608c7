/* store_attach.h — a context's attach/ directory: the files that go with its
 * next message (CONTRACT §9).  Both front ends use it: the FUSE adapter for
 * attach/ and the shim for POST …/messages's "attachments".
 *
 * A file is named, written (in memory, checked as its bytes arrive), and
 * committed at a flush: its content becomes a blob (blob.h) and an ATTACH
 * record of the journal names it, both durable, so pending files survive a
 * remount.  The next message staged takes every committed file that is not
 * open for writing, in name order; its USER record lists them, and attach/ is
 * empty again.  Files are addressed by the seq number given when they were
 * made (the FUSE inode), never reused in a context.
 *
 * Every refusal returns -errno with why ("unsupported type: zip archive", "an
 * image is at most 5 MiB"): the file is then not kept.  Under the store lock,
 * which a commit releases while the blob is written and synced.
 */
#ifndef MCPFS_STORE_ATTACH_H
#define MCPFS_STORE_ATTACH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpfs/store.h"

struct attach_stat {
	uint32_t seq;
	char name[256];
	uint64_t size;
	int type; /* enum attach_type; ATTACH_UNDECIDED while too short to tell */
	int64_t mtime_ms;
};

/* The files of attach/, in name order (free *v).  0, -ENOENT, -ENOMEM. */
int context_attach_list(struct store *s, uint64_t id, struct attach_stat **v, size_t *n);

/* One file, by name (name not NULL) or by seq.  0, -ENOENT. */
int context_attach_stat(struct store *s, uint64_t id, const char *name, uint32_t seq,
			struct attach_stat *out);

/* Opens a file: create makes it when missing (-ENOSPC past ATTACH_FILES_MAX,
 * -EINVAL/-ENAMETOOLONG for a name attach/ does not take); writer counts a
 * writer (released by context_attach_release); trunc empties it.  *seq
 * receives its number.  -ENOENT when missing and not create. */
int context_attach_open(struct store *s, uint64_t id, const char *name, bool create, bool writer,
			bool trunc, uint32_t *seq, char *why, size_t whylen);

/* Writes bytes at off.  The type is decided by the first write whose bytes
 * show it; -EINVAL (unsupported type, or text that stops being UTF-8),
 * -EFBIG (an image over ATTACH_IMAGE_MAX, a file over ATTACH_FILE_MAX),
 * -ENOSPC (all files over ATTACH_TOTAL_MAX): the file is dropped, and why
 * says why.  -ENOENT when the file is gone. */
int context_attach_write(struct store *s, uint64_t id, uint32_t seq, uint64_t off, const void *data,
			 size_t n, char *why, size_t whylen);
int context_attach_truncate(struct store *s, uint64_t id, uint32_t seq, uint64_t size, char *why,
			    size_t whylen);

/* Reads bytes at off (from memory or the blob).  Bytes, 0 at the end, -errno. */
long context_attach_read(struct store *s, uint64_t id, uint32_t seq, uint64_t off, void *buf,
			 size_t n);

/* Commits what was written (a close): the type decided now for a short file,
 * the blob written and synced, the ATTACH record durable.  Nothing to do when
 * nothing changed.  0, -EINVAL (the file is dropped), -ENOSPC, -EIO. */
int context_attach_flush(struct store *s, uint64_t id, uint32_t seq, char *why, size_t whylen);

/* A writer's last release: commits what the flush did not (an error is kept
 * in `status` as last_refused), and frees the file's memory. */
void context_attach_release(struct store *s, uint64_t id, uint32_t seq);

/* Removes a file (rm): a DETACH record, its blob collected.  0, -ENOENT. */
int context_attach_remove(struct store *s, uint64_t id, const char *name);

/* A whole file at once (the shim): open, write, flush, release.  On failure
 * nothing is kept. */
int context_attach_add(struct store *s, uint64_t id, const char *name, const void *data, size_t n,
		       char *why, size_t whylen);

#endif
