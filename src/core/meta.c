/* meta.c — a context's user metadata (see meta.h).
 *
 * The set lives in the context's slot (struct store_slot: meta, meta_known),
 * the light part of the store that exists whether or not the journal is
 * loaded.  Its record is the journal's META record (doc/design/journal.md);
 * the context's side file (storage.h: storage_meta_get/set; the state dir
 * keeps it as STATE/contexts/NAME/meta) holds the same payload so that a
 * listing learns it without reading the journal.  That file is written after
 * the record is durable, never half written; when it is missing the
 * context has no metadata, and when it cannot be read or parsed the journal is
 * loaded instead.  Loading a journal makes the file agree with it again (a
 * crash between the record and the file leaves the file one change behind
 * until then).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/meta.h"
#include "mcpfs/utf8.h"
#include "store_impl.h"

#define META_FILE "meta"
#define META_TMP "meta.tmp"
/* The largest file a valid set prints to: every byte escaped as \u00XX. */
#define META_FILE_MAX ((size_t)META_KEYS_MAX * (META_KEY_MAX + META_VALUE_MAX + 8) * 6 + 64)

int meta_key_check(const char *key, size_t len, char *why, size_t whylen)
{
	const char *fault = NULL;
	int r = 0;
	if (len == 0) {
		fault = "a metadata name needs a key after 'user.'";
		r = -EINVAL;
	} else if (len > META_KEY_MAX) {
		fault = "a metadata name is at most 255 bytes, 'user.' included";
		r = -ERANGE;
	} else if (memchr(key, '\0', len) || !utf8_valid(key, len)) {
		fault = "a metadata name must be UTF-8 text";
		r = -EINVAL;
	}
	if (fault && why)
		snprintf(why, whylen, "%s", fault);
	return r;
}

static int value_check(const char *value, size_t len, char *why, size_t whylen)
{
	if (len > META_VALUE_MAX) {
		snprintf(why, whylen, "a metadata value is at most %d bytes (this one has %zu)",
			 META_VALUE_MAX, len);
		return -E2BIG;
	}
	if (memchr(value, '\0', len) || !utf8_valid(value, len)) {
		snprintf(why, whylen, "a metadata value must be UTF-8 text without NUL bytes");
		return -EINVAL;
	}
	return 0;
}

static int count_keys(const cJSON *o)
{
	int n = 0;
	for (const cJSON *k = o ? o->child : NULL; k; k = k->next)
		n++;
	return n;
}

/* A key of o, by its bytes (keys are NUL-free, so strcmp would do, but the
 * caller's key is not NUL-terminated). */
static cJSON *find_key(const cJSON *o, const char *key, size_t len)
{
	for (cJSON *k = o ? o->child : NULL; k; k = k->next)
		if (strlen(k->string) == len && !memcmp(k->string, key, len))
			return k;
	return NULL;
}

/* One change to the working copy *o (created when NULL): value NULL removes. */
struct meta_op {
	const char *key;
	size_t key_len;
	const char *value; /* NULL: remove */
	size_t len;
	int flags;
	bool must_exist; /* removing: -ENODATA when missing */
};

/* The count is not checked here: a patch may remove as many as it adds
 * (meta_update checks the result). */
static int meta_apply(cJSON **o, const struct meta_op *op, char *why, size_t whylen)
{
	int r = meta_key_check(op->key, op->key_len, why, whylen);
	if (r < 0)
		return r;
	cJSON *k = find_key(*o, op->key, op->key_len);
	if (!op->value) {
		if (!k && op->must_exist) {
			snprintf(why, whylen, "no metadata named '" META_PREFIX "%.*s'",
				 (int)(op->key_len > 64 ? 64 : op->key_len), op->key);
			return -ENODATA;
		}
		if (k)
			cJSON_Delete(cJSON_DetachItemViaPointer(*o, k));
		return 0;
	}
	if ((r = value_check(op->value, op->len, why, whylen)) < 0)
		return r;
	if (k && (op->flags & META_CREATE)) {
		snprintf(why, whylen, "metadata '" META_PREFIX "%.*s' exists",
			 (int)(op->key_len > 64 ? 64 : op->key_len), op->key);
		return -EEXIST;
	}
	if (!k && (op->flags & META_REPLACE)) {
		snprintf(why, whylen, "no metadata named '" META_PREFIX "%.*s'",
			 (int)(op->key_len > 64 ? 64 : op->key_len), op->key);
		return -ENODATA;
	}
	char *name = strndup(op->key, op->key_len), *text = strndup(op->value, op->len);
	cJSON *v = text ? cJSON_CreateString(text) : NULL;
	if (!*o && !(*o = cJSON_CreateObject()))
		r = -ENOMEM;
	if (r == 0 && (!name || !v))
		r = -ENOMEM;
	if (r == 0 && k)
		r = cJSON_ReplaceItemInObjectCaseSensitive(*o, name, v) ? 0 : -ENOMEM;
	else if (r == 0)
		r = cJSON_AddItemToObject(*o, name, v) ? 0 : -ENOMEM;
	if (r < 0) {
		cJSON_Delete(v);
		snprintf(why, whylen, "out of memory");
	}
	free(name);
	free(text);
	return r;
}

/* --- the file beside the journal ---------------------------------------------- */

/* The payload of a META record and of the file: {"meta":{...}}.  Heap. */
static char *meta_print(const cJSON *meta)
{
	return record_meta_print(meta);
}

/* Reads the side file (storage.h: meta_get) into *text (heap,
 * NUL-terminated); NULL when there is none, or the engine keeps none. */
static int meta_file_read(struct store *s, const struct store_slot *slot, char **text)
{
	void *out = NULL;
	size_t len = 0;
	*text = NULL;
	int r = storage_meta_get(s->st, slot->sid, &out, &len);
	if (r == -ENODATA || r == -ENOTSUP)
		return 0;
	if (r == 0 && len > META_FILE_MAX) {
		free(out);
		return -EFBIG;
	}
	if (r == 0)
		*text = out; /* owned by the caller now */
	return r;
}

/* Replaces the side file with the slot's set (removes it for none).  Not
 * durable by itself: the journal is the record, and a load rewrites it. */
static int meta_file_write(struct store *s, const struct store_slot *slot)
{
	if (!slot->meta) {
		int r = storage_meta_set(s->st, slot->sid, NULL, 0);
		return r == -ENOTSUP ? 0 : r;
	}
	char *text = meta_print(slot->meta);
	if (!text)
		return -ENOMEM;
	int r = storage_meta_set(s->st, slot->sid, text, strlen(text));
	free(text);
	return r == -ENOTSUP ? 0 : r;
}

/* The set from a META record's "meta" object m (record_decode), or the side
 * file's: string values within the limits only (a hand-made or damaged record
 * cannot install more).  NULL for none. */
static cJSON *meta_within_limits(const cJSON *m)
{
	cJSON *out = NULL;
	char why[128];
	for (const cJSON *k = cJSON_IsObject(m) ? m->child : NULL; k; k = k->next) {
		if (!cJSON_IsString(k) || count_keys(out) == META_KEYS_MAX)
			continue;
		struct meta_op op = {
		    k->string, strlen(k->string), k->valuestring, strlen(k->valuestring), 0, false};
		meta_apply(&out, &op, why, sizeof(why)); /* a bad entry is left out */
	}
	if (out && !out->child) {
		cJSON_Delete(out);
		out = NULL;
	}
	return out;
}

/* Makes the slot's set known: from the file, or by loading the journal when
 * the file cannot be read. */
static int meta_known(struct store *s, struct store_slot *slot)
{
	if (slot->meta_known)
		return 0;
	char *text = NULL;
	int r = meta_file_read(s, slot, &text);
	bool none = !text;
	/* The file holds a META payload. */
	struct record rec = {0};
	bool ok = text && record_decode(&rec, JOURNAL_META, text, strlen(text), NULL) == RECORD_OK;
	free(text);
	if (r == 0 && (none || ok)) {
		slot->meta = none ? NULL : meta_within_limits(rec.u.meta.meta);
		slot->meta_known = true;
	}
	record_release(&rec);
	if (!slot->meta_known && !slot->ctx && store_load(s, slot) < 0)
		return -ENOMEM;
	return slot->meta_known ? 0 : -EIO;
}

void meta_load_begin(struct store_slot *slot)
{
	cJSON_Delete(slot->meta);
	slot->meta = NULL;
	slot->meta_known = false;
}

void meta_load_record(struct store_slot *slot, const cJSON *meta)
{
	cJSON_Delete(slot->meta);
	slot->meta = meta_within_limits(meta);
}

void meta_load_end(struct store *s, struct store_slot *slot)
{
	slot->meta_known = true;
	char *text = NULL, *want = slot->meta ? meta_print(slot->meta) : NULL;
	int r = meta_file_read(s, slot, &text);
	bool same = r == 0 && (text && want ? !strcmp(text, want) : !text && !want);
	if (!same)
		meta_file_write(s, slot); /* best effort: the journal is the record */
	free(text);
	free(want);
}

char *meta_payload(const struct store_slot *slot)
{
	return slot->meta ? meta_print(slot->meta) : NULL;
}

cJSON *meta_copy(const struct store_slot *slot)
{
	return slot->meta ? cJSON_Duplicate(slot->meta, true) : cJSON_CreateObject();
}

/* --- changes -------------------------------------------------------------------- */

/* Applies ops to a copy of the set, then saves it: a META record, fsynced with
 * the lock released, the set shown meanwhile and put back if the sync fails. */
static int meta_update(struct store *s, uint64_t id, const struct meta_op *ops, size_t n, bool dry,
		       char *why, size_t whylen)
{
	struct notes notes = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? commit_sync_idle(s, &c) : -ENOENT;
	struct store_slot *slot = c ? c->slot : NULL;
	cJSON *next = NULL;
	if (r == 0 && slot->meta && !(next = cJSON_Duplicate(slot->meta, true)))
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++)
		r = meta_apply(&next, &ops[i], why, whylen);
	if (r == 0 && count_keys(next) > META_KEYS_MAX) {
		snprintf(why, whylen, "a context has at most %d metadata names", META_KEYS_MAX);
		r = -ENOSPC;
	}
	if ((next && !next->child) || dry) {
		cJSON_Delete(next);
		next = NULL;
	}
	char *text = r == 0 && !dry ? meta_print(next) : NULL;
	if (dry) {
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	if (r == 0 && !text) {
		snprintf(why, whylen, "out of memory");
		r = -ENOMEM;
	}
	if (r == 0 && (r = context_journal_append(c, JOURNAL_META, text, strlen(text), false)) < 0)
		snprintf(why, whylen, "cannot save metadata: %s", strerror(-r));
	free(text);
	cJSON *old = NULL;
	if (r == 0) {
		old = slot->meta;
		slot->meta = next;
		next = NULL;
		cJSON *mine = slot->meta;
		r = commit_sync(s, &c, &notes);
		slot = c ? c->slot : NULL;
		if (r < 0 && slot && slot->meta == mine) {
			slot->meta = old; /* the record is gone with the failed sync */
			old = mine;
		}
		if (slot)
			meta_file_write(s, slot);
		if (r < 0 && r != -ENOENT)
			snprintf(why, whylen, "cannot save metadata: %s", strerror(-r));
	}
	cJSON_Delete(old);
	cJSON_Delete(next);
	if (r == 0)
		notes_add(&notes, id, STORE_CHANGED_META);
	store_unlock_notify(s, &notes);
	return r;
}

int context_meta_set(struct store *s, uint64_t id, const char *key, size_t key_len,
		     const char *value, size_t len, int flags, char *why, size_t whylen)
{
	struct meta_op op = {key, key_len, value ? value : "", len, flags, false};
	return meta_update(s, id, &op, 1, false, why, whylen);
}

int context_meta_remove(struct store *s, uint64_t id, const char *key, size_t key_len, char *why,
			size_t whylen)
{
	struct meta_op op = {key, key_len, NULL, 0, 0, true};
	return meta_update(s, id, &op, 1, false, why, whylen);
}

static int meta_patch(struct store *s, uint64_t id, const cJSON *patch, bool dry, char *why,
		      size_t whylen)
{
	if (!cJSON_IsObject(patch)) {
		snprintf(why, whylen, "meta must be an object of strings (null removes a key)");
		return -EINVAL;
	}
	size_t n = (size_t)count_keys(patch), i = 0;
	if (n == 0)
		return 0;
	struct meta_op *ops = calloc(n, sizeof(*ops));
	if (!ops)
		return -ENOMEM;
	int r = 0;
	for (const cJSON *k = patch->child; k && r == 0; k = k->next, i++) {
		if (!cJSON_IsString(k) && !cJSON_IsNull(k)) {
			snprintf(why, whylen, "meta values must be strings, or null to remove");
			r = -EINVAL;
		}
		ops[i].key = k->string;
		ops[i].key_len = strlen(k->string);
		ops[i].value = cJSON_IsString(k) ? k->valuestring : NULL;
		ops[i].len = ops[i].value ? strlen(ops[i].value) : 0;
	}
	if (r == 0)
		r = meta_update(s, id, ops, n, dry, why, whylen);
	free(ops);
	return r;
}

int context_meta_patch(struct store *s, uint64_t id, const cJSON *patch, char *why, size_t whylen)
{
	return meta_patch(s, id, patch, false, why, whylen);
}

int context_meta_patch_check(struct store *s, uint64_t id, const cJSON *patch, char *why,
			     size_t whylen)
{
	return meta_patch(s, id, patch, true, why, whylen);
}

/* --- reading ---------------------------------------------------------------------- */

/* The slot of id with its set known, the lock held; NULL and *r when not.
 * With load, from the journal (the record: the file may be a change behind
 * after a crash), else from whatever is at hand (a listing). */
static struct store_slot *meta_slot(struct store *s, uint64_t id, bool load, int *r)
{
	if (load && !store_get(s, id)) {
		*r = -ENOENT;
		return NULL;
	}
	struct store_slot *slot = map_get_id(&s->by_id, id);
	while (slot && slot->creating) {
		pthread_cond_wait(&s->synced, &s->lock);
		slot = map_get_id(&s->by_id, id);
	}
	*r = slot ? meta_known(s, slot) : -ENOENT;
	return *r == 0 ? slot : NULL;
}

int context_meta_get(struct store *s, uint64_t id, const char *key, size_t key_len, struct buf *out)
{
	int r;
	pthread_mutex_lock(&s->lock);
	struct store_slot *slot = meta_slot(s, id, true, &r);
	const cJSON *k = slot ? find_key(slot->meta, key, key_len) : NULL;
	if (slot && !k)
		r = -ENODATA;
	if (k)
		r = buf_append(out, k->valuestring, strlen(k->valuestring));
	pthread_mutex_unlock(&s->lock);
	return r;
}

int context_meta_names(struct store *s, uint64_t id, struct buf *out)
{
	int r;
	pthread_mutex_lock(&s->lock);
	struct store_slot *slot = meta_slot(s, id, true, &r);
	for (const cJSON *k = slot && slot->meta ? slot->meta->child : NULL; k && r == 0;
	     k = k->next) {
		r = buf_append(out, META_PREFIX, META_PREFIX_LEN);
		if (r == 0)
			r = buf_append(out, k->string, strlen(k->string) + 1);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

int context_meta_json(struct store *s, uint64_t id, cJSON **ret)
{
	int r;
	pthread_mutex_lock(&s->lock);
	struct store_slot *slot = meta_slot(s, id, false, &r);
	*ret = slot ? meta_copy(slot) : NULL;
	if (slot && !*ret)
		r = -ENOMEM;
	pthread_mutex_unlock(&s->lock);
	return r;
}

int context_meta_match(struct store *s, uint64_t id, const struct meta_filter *f, size_t n)
{
	int r;
	pthread_mutex_lock(&s->lock);
	struct store_slot *slot = meta_slot(s, id, false, &r);
	for (size_t i = 0; slot && i < n && r == 0; i++) {
		const cJSON *k =
		    slot->meta ? find_key(slot->meta, f[i].key, strlen(f[i].key)) : NULL;
		if (!k || (f[i].value && strcmp(k->valuestring, f[i].value)))
			r = 1; /* no match */
	}
	pthread_mutex_unlock(&s->lock);
	return r < 0 ? r : r == 0;
}
