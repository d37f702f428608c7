/* meta.h — a context's metadata: the user.* extended attributes of its
 * directory (CONTRACT §10), also shown and filtered by the HTTP shim.
 *
 * Metadata is a set of at most META_KEYS_MAX keys, each with a text value of at
 * most META_VALUE_MAX bytes.  Keys are named here without the "user." prefix
 * that the file system shows (`user.project` is the key "project").  Keys and
 * values are UTF-8 without NUL bytes (the journal and JSON carry them).
 *
 * Durable: every change appends a JOURNAL_META record (the whole set, the last
 * one wins) and fsyncs it before returning, like a change of settings.  The
 * same set is also kept in a small file beside the journal,
 * STATE/contexts/NAME/meta, and in the store's light part of each context, so
 * that a listing filtered by metadata (context_meta_match) reads no journal:
 * that file is read once per context on first need (one descriptor, closed at
 * once) and rewritten from the journal whenever the context is loaded.
 *
 * Every function takes the store lock; a change releases it during its fsync
 * as other commits do.  Returns 0 or a negative errno.
 */
#ifndef MCPFS_META_H
#define MCPFS_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "mcpfs/buf.h"

struct store;
struct cJSON;

#define META_PREFIX "user." /* the xattr namespace of metadata */
#define META_PREFIX_LEN 5
#define META_KEYS_MAX 64    /* keys of one context; one more is -ENOSPC */
#define META_VALUE_MAX 4096 /* bytes of one value; more is -E2BIG */
/* Bytes of "user." + key (the kernel's XATTR_NAME_MAX); a longer name is
 * -ERANGE, as the kernel says. */
#define META_NAME_MAX 255
#define META_KEY_MAX (META_NAME_MAX - META_PREFIX_LEN)

/* setxattr(2)'s flags. */
#define META_CREATE 1  /* XATTR_CREATE: -EEXIST when the key exists */
#define META_REPLACE 2 /* XATTR_REPLACE: -ENODATA when it does not */

/* 0 for a key that may be set: 1..META_KEY_MAX bytes of UTF-8, no NUL.
 * -EINVAL (empty, not UTF-8), -ERANGE (too long); why (may be NULL) says which. */
int meta_key_check(const char *key, size_t len, char *why, size_t whylen);

/* Sets key to value.  flags 0, META_CREATE or META_REPLACE.  Durable on return.
 * -EEXIST, -ENODATA (flags), -ENOSPC (a 65th key), -E2BIG (value over
 * META_VALUE_MAX), -EINVAL (a value that is not UTF-8 or holds a NUL, a bad
 * key), -ERANGE (a key too long), -ENOENT (no context), -EIO/-ENOSPC (the
 * journal); why says why. */
int context_meta_set(struct store *s, uint64_t id, const char *key, size_t key_len,
		     const char *value, size_t len, int flags, char *why, size_t whylen);

/* Removes key.  Durable on return.  -ENODATA when it is not there, -ENOENT. */
int context_meta_remove(struct store *s, uint64_t id, const char *key, size_t key_len, char *why,
			size_t whylen);

/* Applies {"key": "value" | null, ...} (null removes; removing a key that is
 * not there is no error), all or nothing, with the limits above: -EINVAL,
 * -ERANGE, -E2BIG, -ENOSPC + why.  An empty object changes nothing. */
int context_meta_patch(struct store *s, uint64_t id, const struct cJSON *patch, char *why,
		       size_t whylen);

/* The same checks against the context's metadata now, changing nothing: for a
 * caller that applies other changes first (PATCH) and wants the client's
 * mistakes (these errnos) before any of them. */
int context_meta_patch_check(struct store *s, uint64_t id, const struct cJSON *patch, char *why,
			     size_t whylen);

/* Appends key's value to out (the context is loaded: the journal is the
 * record).  -ENODATA, -ENOENT, -ENOMEM. */
int context_meta_get(struct store *s, uint64_t id, const char *key, size_t key_len,
		     struct buf *out);

/* Appends every name as listxattr(2) lists them: "user.KEY\0" each, in the
 * order the keys were first set (the context is loaded).  -ENOENT, -ENOMEM. */
int context_meta_names(struct store *s, uint64_t id, struct buf *out);

/* *ret receives a copy of the metadata as a JSON object of strings ({} for
 * none); the caller deletes it.  Reads no journal.  -ENOENT, -ENOMEM. */
int context_meta_json(struct store *s, uint64_t id, struct cJSON **ret);

/* One condition of a filter: key has value, or (value NULL) key is present. */
struct meta_filter {
	const char *key;
	const char *value;
};
/* 1 when the context's metadata meets every condition, 0 when not; reads no
 * journal.  -ENOENT. */
int context_meta_match(struct store *s, uint64_t id, const struct meta_filter *f, size_t n);

#endif
