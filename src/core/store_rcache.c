/* store_rcache.c — the store's side of the response cache (rcache.h holds
 * the entries on disk): its bound, `.config`'s response_cache_bytes, which is
 * the daemon's and no context's, its `.status` line, and a turn answered from
 * it or kept in it (CONTRACT §10).  A turn answered from the cache is filled
 * here and ended by its caller (reply_call.c): the cache ends no turn.
 *
 * response_cache_bytes is not in the settings table: a context has no bound of
 * its own.  The `.config` text is split here: its response_cache_bytes lines
 * are read here and blanked (so settings' line numbers stay right), the rest
 * goes to settings_parse.  STATE/config keeps the key among the others.
 *
 * What a cached reply holds (the value of an entry):
 *    4 x u64 LE: text bytes, thinking bytes, thinking before the text, blocks
 *    bytes; then the text, the thinking, and the blocks: a JSON array of the
 *    BLOCK records' objects (doc/design/journal.md) without turn and attempt.
 *
 * Under the store lock, like the rest of the store.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "mcpfs/json_nul.h"
#include "mcpfs/log.h"
#include "mcpfs/rcache.h"
#include "store_impl.h"

#define BYTES_KEY "response_cache_bytes"

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* One line: 1 when it sets response_cache_bytes (*bytes set), 0 when it does
 * not, -EINVAL with why. */
static int bytes_line(const char *p, size_t len, size_t line, int64_t *bytes, char *why,
		      size_t whylen)
{
	size_t klen = strlen(BYTES_KEY);
	while (len && is_blank(*p))
		p++, len--;
	if (len < klen || memcmp(p, BYTES_KEY, klen))
		return 0;
	const char *q = p + klen, *end = p + len;
	while (q < end && is_blank(*q))
		q++;
	if (q == end || *q != '=')
		return 0; /* another key that starts the same: settings' to judge */
	q++;
	while (q < end && is_blank(*q))
		q++;
	while (end > q && is_blank(end[-1]))
		end--;
	int64_t v = 0;
	bool ok = q < end && end - q <= 19;
	for (const char *c = q; ok && c < end; c++) {
		ok = *c >= '0' && *c <= '9';
		v = v * 10 + (*c - '0');
	}
	int shown = end - q > 40 ? 40 : (int)(end - q);
	if (!ok) {
		snprintf(why, whylen, "line %zu: %s: '%.*s' is not a whole number of bytes", line,
			 BYTES_KEY, shown, q);
		return -EINVAL;
	}
	if (v < RCACHE_BYTES_MIN || v > RCACHE_BYTES_MAX) {
		snprintf(why, whylen, "line %zu: %s: '%.*s' is out of range %lld-%lld", line,
			 BYTES_KEY, shown, q, RCACHE_BYTES_MIN, RCACHE_BYTES_MAX);
		return -EINVAL;
	}
	*bytes = v;
	return 1;
}

int store_defaults_parse(struct settings *d, int64_t *bytes, const char *text, size_t len,
			 char *why, size_t whylen)
{
	if (len > SETTINGS_TEXT_MAX)
		return settings_parse(d, text, len, why, whylen); /* its -EFBIG */
	char *copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, len);
	int64_t b = *bytes;
	size_t pos = 0, line = 0;
	int r = 0;
	while (r >= 0 && pos < len) {
		char *nl = memchr(copy + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - copy) : len;
		r = bytes_line(copy + pos, end - pos, ++line, &b, why, whylen);
		if (r > 0)
			memset(copy + pos, ' ', end - pos);
		pos = end + 1;
	}
	if (r >= 0)
		r = settings_parse(d, copy, len, why, whylen);
	free(copy);
	if (r < 0)
		return r;
	*bytes = b;
	return 0;
}

int store_defaults_check(const char *text, size_t len, char *why, size_t whylen)
{
	struct settings d;
	int64_t bytes = RCACHE_BYTES_DEFAULT;
	settings_init(&d);
	return store_defaults_parse(&d, &bytes, text, len, why, whylen);
}

int store_rcache_render(struct store *s, int64_t bytes, struct buf *out)
{
	(void)s;
	return buf_printf(out, "%s = %lld\n", BYTES_KEY, (long long)bytes);
}

void store_rcache_open(struct store *s)
{
	int dfd = storage_dir_fd(s->st); /* an engine without a directory: no cache */
	int r = dfd < 0 ? dfd : rcache_open(dfd, "cache", s->rcache_bytes, &s->rcache);
	if (r < 0) {
		s->rcache = NULL;
		s->rcache_err = r;
		log_debug("no response cache in '%s/cache': %s", store_state_dir(s), strerror(-r));
	}
}

int store_rcache_status(struct store *s, struct buf *out)
{
	if (!s->rcache && s->rcache_err == -ENOTSUP) /* a shared store (--store) */
		return buf_printf(out, "response_cache: off (not kept with --store: each host "
				       "would cache alone; calls are made every time)\n");
	if (!s->rcache)
		return buf_printf(out, "response_cache: unavailable (%s)\n",
				  strerror(-s->rcache_err));
	struct rcache_stats st;
	rcache_stats(s->rcache, &st);
	int r = buf_printf(out, "response_cache: %" PRIu64 " entries, %" PRIu64 " of %lld bytes\n",
			   st.entries, st.bytes, (long long)s->rcache_bytes);
	if (r == 0 && st.torn)
		r = buf_printf(out, "response_cache_torn: %" PRIu64 " torn entries deleted\n",
			       st.torn);
	return r;
}

/* --- a reply as an entry's value ----------------------------------------------- */

static void put_le64(char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (char)(v >> (8 * i));
}

static uint64_t get_le64(const char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)(unsigned char)p[i] << (8 * i);
	return v;
}

static const char *buf_or_empty(const struct buf *b)
{
	return b->data ? b->data : "";
}

/* The blocks as a JSON array (NUL marks printed as \u0000), into out. */
static int blocks_print(const struct reply *t, struct buf *out)
{
	cJSON *arr = cJSON_CreateArray();
	bool ok = arr != NULL;
	for (size_t i = 0; ok && i < t->blocks.n; i++) {
		const struct tblock *k = &t->blocks.v[i];
		cJSON *o = cJSON_CreateObject(), *copy = cJSON_Duplicate(k->json, true);
		ok = o && copy && !k->open && cJSON_AddItemToArray(arr, o);
		if (!ok) {
			cJSON_Delete(o);
			cJSON_Delete(copy);
			break;
		}
		cJSON_AddNumberToObject(o, "text_at", (double)k->text_at);
		cJSON_AddNumberToObject(o, "text_end", (double)k->text_end);
		cJSON_AddNumberToObject(o, "thinking_at", (double)k->thinking_at);
		cJSON_AddNumberToObject(o, "thinking_end", (double)k->thinking_end);
		cJSON_AddItemToObject(o, "block", copy);
	}
	char *text = ok ? cJSON_PrintUnformatted(arr) : NULL;
	cJSON_Delete(arr);
	int r = text ? json_nul_print(text, strlen(text), out) : -ENOMEM;
	free(text);
	return r;
}

static int reply_value(const struct reply *t, struct buf *v)
{
	struct buf blocks;
	buf_init(&blocks, BLOCKS_MAX);
	int r = t->blocks.n ? blocks_print(t, &blocks) : 0;
	char head[32];
	put_le64(head, t->text.len);
	put_le64(head + 8, t->thinking.len);
	put_le64(head + 16, t->thinking_lead);
	put_le64(head + 24, blocks.len);
	if (r == 0)
		r = buf_append(v, head, sizeof(head));
	if (r == 0)
		r = buf_append(v, buf_or_empty(&t->text), t->text.len);
	if (r == 0)
		r = buf_append(v, buf_or_empty(&t->thinking), t->thinking.len);
	if (r == 0)
		r = buf_append(v, buf_or_empty(&blocks), blocks.len);
	buf_done(&blocks);
	return r;
}

static int blocks_restore(struct reply *t, const char *p, size_t n)
{
	struct buf hidden;
	buf_init(&hidden, BLOCKS_MAX);
	bool nul = json_nul_escaped(p, n);
	int r = nul ? json_nul_hide(p, n, &hidden) : 0;
	cJSON *arr = r < 0 ? NULL
		     : nul ? cJSON_ParseWithLength(hidden.data, hidden.len)
			   : cJSON_ParseWithLength(p, n);
	buf_done(&hidden);
	if (!cJSON_IsArray(arr)) {
		cJSON_Delete(arr);
		return -EINVAL;
	}
	const cJSON *it;
	cJSON_ArrayForEach(it, arr)
	{
		r = blocks_load(t, it, 0);
		if (r < 0)
			break;
	}
	cJSON_Delete(arr);
	/* Loaded as if read from a journal: this turn's journal has them not yet. */
	for (size_t i = 0; i < t->blocks.n; i++)
		t->blocks.v[i].saved = false;
	t->blocks.saved = t->blocks.call_first = 0;
	return r;
}

/* Fills a fresh turn from an entry's value.  0, -EINVAL (a value this
 * version cannot read), -ENOMEM. */
static int reply_restore(struct reply *t, const char *v, size_t n)
{
	if (n < 32)
		return -EINVAL;
	uint64_t tl = get_le64(v), hl = get_le64(v + 8), lead = get_le64(v + 16),
		 bl = get_le64(v + 24);
	if (tl > n || hl > n || bl > n || 32 + tl + hl + bl != n || lead > hl)
		return -EINVAL;
	int r = buf_append(&t->text, v + 32, tl);
	if (r == 0)
		r = buf_append(&t->thinking, v + 32 + tl, hl);
	t->thinking_lead = lead;
	if (r == 0 && bl)
		r = blocks_restore(t, v + 32 + tl + hl, bl);
	return r;
}

static void request_key(const char *body, size_t len, uint8_t key[RCACHE_KEY_LEN])
{
	/* The version header is the one header that changes an answer; everything
	 * else that does (model, system, messages, settings) is in the body. */
	const void *parts[] = {WIRE_ANTHROPIC_VERSION, "\n", body};
	size_t lens[] = {strlen(WIRE_ANTHROPIC_VERSION), 1, len};
	rcache_key(parts, lens, 3, key);
}

bool store_rcache_answer(struct store *s, struct context *c, struct reply *t, const char *body,
			 size_t len, struct notes *n)
{
	if (!c->settings.response_cache || !s->rcache || t->continued)
		return false;
	request_key(body, len, t->cache_key);
	t->cache_keyed = true;
	if (t->attempt > 1)
		return false; /* `retry` regenerates: it asks the API again */
	struct buf v;
	buf_init(&v, (size_t)RCACHE_BYTES_MAX);
	int r = rcache_get(s->rcache, t->cache_key, &v);
	if (r == 0 && (r = reply_restore(t, buf_or_empty(&v), v.len)) < 0) {
		buf_resize(&t->text, 0);
		buf_resize(&t->thinking, 0);
		blocks_done(&t->blocks);
		blocks_init(&t->blocks);
		t->thinking_lead = 0;
	}
	buf_done(&v);
	if (r < 0)
		return false;
	t->cache_hit = true;
	snprintf(t->stop_reason, sizeof(t->stop_reason), "end_turn");
	t->started_ms = clock_wall_ms();
	log_debug("context %" PRIu64 ", turn %" PRIu64 ": answered from the response cache", c->id,
		  t->number);
	notes_add(n, c->id, STORE_CHANGED_THINKING);
	return true;
}

void store_rcache_keep(struct store *s, struct reply *t)
{
	if (!t->cache_keyed || t->cache_hit || t->continued || !s->rcache ||
	    strcmp(t->stop_reason, "end_turn"))
		return;
	/* A reply over the whole bound is not copied only to be refused. */
	if ((int64_t)(t->text.len + t->thinking.len) > s->rcache_bytes)
		return;
	struct buf v;
	buf_init(&v, (size_t)RCACHE_BYTES_MAX);
	int r = reply_value(t, &v);
	if (r == 0)
		r = rcache_put(s->rcache, t->cache_key, buf_or_empty(&v), v.len);
	if (r < 0)
		log_debug("turn %" PRIu64 ": not kept in the response cache: %s", t->number,
			  strerror(-r));
	buf_done(&v);
}
