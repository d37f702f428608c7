/* fs_check.c — what a write() to a context's file can already refuse, and how a
 * refusal is reported.
 *
 * Shells ignore the result of close(), so an error known when a write arrives
 * is returned by that write (CONTRACT §3.3): a complete invalid line of
 * `config` or `.config`, an invalid `model` line (or one that no ending can
 * make valid), a complete invalid UTF-8 sequence (or a NUL) in `input` or
 * `system`, a message over max_input_bytes or whose estimate alone exceeds
 * budget_tokens (EFBIG), a reached spend_limit_usd (EDQUOT, at the first write
 * of a message), and a full state disk: the record that the close will
 * write is given room on disk as the bytes arrive (store_reserve).  What needs
 * the whole content (a rule between two keys of config, a UTF-8 sequence cut
 * off at the very end) waits for the flush.  A refused text stays refused:
 * every later write and flush of that open fails the same way.
 *
 * Every refusal, at a write or a close, is logged here at warning level and
 * recorded as `last_refused` in the context's `status` (`.status` for
 * `.config`), with the reason the writer's errno stands for: the same text the
 * HTTP shim answers with.  Called with the handle's lock held.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fs_impl.h"
#include "mcpfs/log.h"
#include "mcpfs/schema.h"
#include "mcpfs/settings.h"
#include "mcpfs/utf8.h"

static const char *file_name(const struct fs_handle *h)
{
	return h->kind == K_ROOT_CONFIG ? ".config"
	       : h->kind < K_NFIXED	? fs_nodes[h->kind].name
					: "file";
}

void fs_check_refuse(struct fs *fs, struct fs_handle *h, bool at_close, const char *why)
{
	char name[STORE_NAME_MAX + 1], quoted[STORE_NAME_MAX * 4 + 8];
	const char *what = h->renamed ? "rename onto" : at_close ? "close of" : "write of";
	char line[600];
	snprintf(line, sizeof(line), "%s %s: %s", what, file_name(h), why);
	if (h->kind == K_ROOT_CONFIG) {
		log_warn("refused a %s .config: %s", what, why);
		store_refuse(fs->st, line);
	} else if (store_name(fs->st, h->ctx, name, sizeof(name)) == 0) {
		log_quote(quoted, sizeof(quoted), name, strlen(name));
		log_warn("context '%s': refused a %s %s: %s", quoted, what, file_name(h), why);
		context_refuse(fs->st, h->ctx, line);
	}
}

/* A complete invalid UTF-8 sequence or a NUL among the bytes a write changed
 * (from `from` on); a sequence cut off at the end may still be completed.
 * h->valid remembers how far the text is known good, so a message written in
 * many pieces is read once. */
static int text_check(struct fs_handle *h, size_t from)
{
	const char *d = h->data.data;
	size_t len = h->data.len;
	if (from < len && memchr(d + from, '\0', len - from))
		return -EINVAL; /* told apart by the caller: a NUL */
	size_t v = h->valid < from ? h->valid : from;
	while (v > 0 && v < len && ((unsigned char)d[v] & 0xC0) == 0x80)
		v--;
	bool cut;
	size_t k = v < len ? utf8_valid_prefix(d + v, len - v, &cut) : 0;
	h->valid = v + k;
	return v + k < len && !cut ? -EILSEQ : 0;
}

/* The end of the last complete line of data (just past its '\n'), 0 if none. */
static size_t complete_lines(const struct buf *b)
{
	for (size_t i = b->len; i > 0; i--)
		if (b->data[i - 1] == '\n')
			return i;
	return 0;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* A model line not yet ended: refused already when no ending can make it
 * valid — a byte no id has, an id over the length limit, or a second word. */
static int model_prefix_check(const struct buf *b, char *why, size_t whylen)
{
	const char *d = b->data, *end = d + b->len, *p = d, *q;
	const char *id;
	size_t idlen;
	while (p < end && is_space(*p))
		p++;
	for (q = p; q < end && !is_space(*q); q++)
		;
	for (const char *r = q; r < end; r++)
		if (!is_space(*r))
			return settings_model_text(d, b->len, &id, &idlen, why, whylen);
	if (q == p || settings_model_valid(p, (size_t)(q - p)))
		return 0;
	return settings_model_text(p, (size_t)(q - p), &id, &idlen, why, whylen);
}

static int rw_check(struct fs_handle *h, size_t from, char *why, size_t whylen)
{
	size_t end = h->data.len ? complete_lines(&h->data) : 0;
	const char *id;
	size_t idlen;
	struct settings scratch;
	int r;
	switch (h->kind) {
	case K_SYSTEM:
		r = text_check(h, from);
		if (r < 0)
			snprintf(why, whylen, "system prompt is not valid UTF-8 text");
		return r < 0 ? -EILSEQ : 0;
	case K_SCHEMA:
		/* UTF-8 and the first byte here; the whole document at the flush. */
		r = text_check(h, from);
		if (r < 0) {
			snprintf(why, whylen, "schema is not valid UTF-8 text");
			return -EILSEQ;
		}
		return schema_prefix_check(h->data.data, h->data.len, why, whylen);
	case K_SUMMARY:
		r = text_check(h, from);
		if (r < 0)
			snprintf(why, whylen, "summary is not valid UTF-8 text");
		return r < 0 ? -EILSEQ : 0;
	case K_MODEL:
		/* One line: once it is complete, it is the whole id. */
		return end ? settings_model_text(h->data.data, end, &id, &idlen, why, whylen)
			   : model_prefix_check(&h->data, why, whylen);
	case K_ROOT_CONFIG: /* its keys and response_cache_bytes */
		return end ? store_defaults_check(h->data.data, end, why, whylen) : 0;
	default: /* config: each line alone; cross-key rules at close */
		settings_init(&scratch);
		return end ? settings_parse(&scratch, h->data.data, end, why, whylen) : 0;
	}
}

/* Holds disk room for the record that applying the text will write: a
 * settings record (the system prompt and every key), or the defaults file of
 * `.config`.  Given back just before the text is applied (fs_io.c). */
static int rw_reserve(struct fs *fs, struct fs_handle *h, bool appended, const char *buf,
		      size_t size, char *why, size_t whylen)
{
	uint64_t need = 2048; /* .config: its rendering, a line per key */
	int r = 0;
	if (h->kind == K_SYSTEM || h->kind == K_SCHEMA || h->kind == K_SUMMARY) {
		h->cost = appended ? h->cost + store_text_cost(buf, size)
				   : store_text_cost(h->data.data, h->data.len);
		if (!h->base_cost)
			r = context_settings_cost(fs->st, h->ctx, &h->base_cost);
		need = h->cost + h->base_cost;
	} else if (h->kind != K_ROOT_CONFIG) {
		if (!h->base_cost)
			r = context_settings_cost(fs->st, h->ctx, &h->base_cost);
		need = h->base_cost;
	}
	if (r == 0)
		r = store_reserve(fs->st, &h->held, need);
	if (r < 0)
		snprintf(why, whylen, "cannot save settings: %s", strerror(-r));
	return r;
}

/* Checks the message after a write, and holds disk room for its record. */
static int input_check(struct fs *fs, struct fs_handle *h, size_t from, bool appended,
		       const char *buf, size_t size, char *why, size_t whylen)
{
	int r = text_check(h, from);
	if (r == -EINVAL) {
		snprintf(why, whylen,
			 "message is not valid UTF-8 text (a NUL byte); nothing was sent");
		return -EILSEQ;
	}
	if (r < 0) {
		snprintf(why, whylen, "message is not valid UTF-8; nothing was sent");
		return r;
	}
	h->cost = appended ? h->cost + store_text_cost(buf, size)
			   : store_text_cost(h->data.data, h->data.len);
	r = store_reserve(fs->st, &h->held, h->cost);
	if (r < 0)
		snprintf(why, whylen, "cannot save the message: %s", strerror(-r));
	return r;
}

int fs_check_write(struct fs *fs, struct fs_handle *h, const char *buf, size_t size, off_t off)
{
	char why[512] = "";
	if (h->rejected)
		return -h->rejected; /* the whole message (or text) was refused already */
	size_t old = h->data.len;
	/* The kernel puts an O_APPEND write at its cached file size, which for
	 * input is the previous message's (reads stay empty): `>>` after `>`
	 * would start the message with that many NULs.  The end of this open's
	 * own text is where an append goes. */
	size_t at = h->append ? old : (size_t)off;
	size_t end = at + size > old ? at + size : old;
	int r = 0;
	/* A spending limit stops a new message at its first write; one already
	 * being written is not cut off (spend.c). */
	if (h->kind == K_INPUT && !h->written)
		r = context_spend_check(fs->st, h->ctx, why, sizeof(why));
	if (r == 0 && h->kind == K_INPUT)
		r = context_input_check(fs->st, h->ctx, end, why, sizeof(why));
	if (r == 0)
		r = buf_write_at(&h->data, at, buf, size);
	if (r == -EFBIG && !why[0])
		snprintf(why, sizeof(why), "%s is %zu bytes, over the limit of %zu",
			 h->kind == K_INPUT    ? "message"
			 : h->kind == K_SYSTEM ? "system prompt"
					       : file_name(h),
			 end, h->data.max);
	h->dirty = true;
	h->written = true;
	size_t from = at < old ? at : old;
	if (r == 0 && h->kind == K_INPUT)
		r = input_check(fs, h, from, at == old, buf, size, why, sizeof(why));
	else if (r == 0)
		r = rw_check(h, from, why, sizeof(why));
	if (r == 0 && h->kind != K_INPUT)
		r = rw_reserve(fs, h, at == old, buf, size, why, sizeof(why));
	if (r < 0) {
		h->rejected = -r;
		store_unreserve(fs->st, &h->held);
		fs_check_refuse(fs, h, false, why);
	}
	return r;
}
