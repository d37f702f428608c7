/* store_attach.c — a context's attach/ directory and its messages'
 * attachments: files written and committed as blobs, taken by the next
 * message, recorded in the journal, sent as content blocks, shown in the
 * views, and collected when no turn refers to them (see store_attach.h,
 * doc/design/journal.md §8).  Under the store lock. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcpfs/attach.h"
#include "mcpfs/clock.h"
#include "mcpfs/store_attach.h"
#include "store_impl.h"

void attachment_free(struct attachment *a)
{
	free(a->name);
	free(a->block);
	memset(a, 0, sizeof(*a));
}

static void file_free(struct attach_file *f)
{
	attachment_free(&f->a);
	buf_done(&f->data);
}

void attach_files_free(struct context *c)
{
	for (size_t i = 0; i < c->n_files; i++)
		file_free(&c->files[i]);
	free(c->files);
	c->files = NULL;
	c->n_files = c->cap_files = 0;
}

static struct attach_file *file_by_name(struct context *c, const char *name)
{
	for (size_t i = 0; i < c->n_files; i++)
		if (!strcmp(c->files[i].a.name, name))
			return &c->files[i];
	return NULL;
}

void attach_file_drop(struct context *c, struct attach_file *f)
{
	size_t i = (size_t)(f - c->files);
	file_free(f);
	memmove(&c->files[i], &c->files[i + 1], (c->n_files - i - 1) * sizeof(*f));
	c->n_files--;
}

struct attach_file *attach_file_new(struct context *c, const char *name)
{
	if (c->n_files == c->cap_files) {
		size_t cap = c->cap_files ? c->cap_files * 2 : 4;
		struct attach_file *v = realloc(c->files, cap * sizeof(*v));
		if (!v)
			return NULL;
		c->files = v;
		c->cap_files = cap;
	}
	char *copy = strdup(name);
	if (!copy)
		return NULL;
	size_t i = 0;
	while (i < c->n_files && strcmp(c->files[i].a.name, name) < 0)
		i++;
	memmove(&c->files[i + 1], &c->files[i], (c->n_files - i) * sizeof(*c->files));
	c->n_files++;
	struct attach_file *f = &c->files[i];
	memset(f, 0, sizeof(*f));
	f->a.name = copy;
	f->seq = ++c->attach_seq;
	f->mtime_ms = clock_wall_ms();
	buf_init(&f->data, ATTACH_FILE_MAX);
	return f;
}

int attach_blob_get(struct store *s, struct context *c, const char *hash, uint64_t size,
		    struct buf *out)
{
	uint64_t sid = c->slot->sid;
	int r = storage_blob_stat(s->st, sid, hash, size);
	if (r < 0)
		return r;
	size_t start = out->len;
	if ((r = buf_reserve(out, start + size)) < 0)
		return r;
	long got = storage_blob_read(s->st, sid, hash, out->data + start, size, 0);
	return attach_blob_kept(out, start, size, got, hash);
}

int attach_fork_links(struct store *s, uint64_t from_sid, uint64_t to_sid,
		      const cJSON *const *lists, size_t n)
{
	bool any = false;
	for (size_t i = 0; i < n && !any; i++)
		any = lists[i] != NULL;
	if (!any)
		return 0;
	int r = 0;
	for (size_t i = 0; r == 0 && i < n; i++) {
		const cJSON *a;
		cJSON_ArrayForEach(a, lists[i])
		{
			const cJSON *h = cJSON_GetObjectItemCaseSensitive(a, "hash");
			if (r == 0 && cJSON_IsString(h) && attach_hash_valid(h->valuestring) &&
			    (r = storage_blob_link(s->st, from_sid, to_sid, h->valuestring)) ==
				-ENOENT)
				r = 0;
		}
	}
	return r;
}

static uint64_t files_total(const struct context *c)
{
	uint64_t t = 0;
	for (size_t i = 0; i < c->n_files; i++)
		t += c->files[i].a.size;
	return t;
}

/* --- the journal ---------------------------------------------------------------- */

cJSON *attach_list_json(const struct attachment *att, size_t n)
{
	struct record_attach *r = calloc(n ? n : 1, sizeof(*r));
	if (!r)
		return NULL;
	for (size_t i = 0; i < n; i++)
		r[i] = (struct record_attach){.name = att[i].name,
					      .type = attach_type_name(att[i].type),
					      .size = (int64_t)att[i].size,
					      .hash = att[i].hash,
					      .tokens = att[i].raw};
	cJSON *o = record_attach_list_json(r, n);
	free(r);
	return o;
}

/* An attachment from its record (record_attachment_fields); false when the
 * record is not one.  Without a token count it gets the estimate. */
static bool attachment_from_json(const cJSON *o, struct attachment *a)
{
	struct record_attachment f;
	memset(a, 0, sizeof(*a));
	if (record_attachment_fields(o, &f) < 0 || !(a->name = strdup(f.name)))
		return false;
	a->type = f.type;
	a->size = f.size;
	snprintf(a->hash, sizeof(a->hash), "%s", f.hash);
	a->raw = f.tokens >= 0
		     ? f.tokens
		     : (a->type == ATTACH_TEXT ? prune_estimate(a->size) : ATTACH_IMAGE_TOKENS_MAX);
	return true;
}

void attach_load_record(struct context *c, uint16_t type, const char *name, const cJSON *o)
{
	struct attach_file *f = file_by_name(c, name);
	if (type == JOURNAL_DETACH) {
		if (f)
			attach_file_drop(c, f);
		return;
	}
	struct attachment a;
	if (!attachment_from_json(o, &a))
		return;
	if (!f && c->n_files < ATTACH_FILES_MAX)
		f = attach_file_new(c, a.name);
	if (!f) {
		attachment_free(&a);
		return;
	}
	attachment_free(&f->a);
	f->a = a;
	f->committed = true;
}

void attach_load_user(struct context *c, struct exchange *e, const cJSON *arr)
{
	if (!cJSON_IsArray(arr))
		return;
	size_t n = (size_t)cJSON_GetArraySize(arr), k = 0;
	struct attachment *v = n ? calloc(n, sizeof(*v)) : NULL;
	if (n && !v)
		return;
	const cJSON *it;
	cJSON_ArrayForEach(it, arr)
	{
		if (k < n && attachment_from_json(it, &v[k])) {
			/* The message took it from attach/. */
			struct attach_file *f = file_by_name(c, v[k].name);
			if (f && !strcmp(f->a.hash, v[k].hash))
				attach_file_drop(c, f);
			k++;
		}
	}
	for (size_t i = 0; i < e->n_att; i++)
		attachment_free(&e->att[i]);
	free(e->att);
	e->att = v;
	e->n_att = k;
}

/* --- collection ------------------------------------------------------------------- */

static bool referenced(void *data, const char *hex)
{
	const struct context *c = data;
	for (size_t i = 0; i < c->n_ex; i++) {
		/* A message still being written across a clear is sent after it. */
		if (i < c->hist_start && c->ex[i].reply->state != REPLY_PENDING)
			continue;
		for (size_t k = 0; k < c->ex[i].n_att; k++)
			if (!strcmp(c->ex[i].att[k].hash, hex))
				return true;
	}
	for (size_t i = 0; i < c->n_files; i++)
		if (c->files[i].committed && !strcmp(c->files[i].a.hash, hex))
			return true;
	return false;
}

void attach_gc(struct store *s, struct context *c)
{
	storage_blob_sweep(s->st, c->slot->sid, referenced, c);
	/* What a clear left out of the history is never sent again. */
	for (size_t i = 0; i < c->hist_start; i++)
		for (size_t k = 0; k < c->ex[i].n_att; k++) {
			free(c->ex[i].att[k].block);
			c->ex[i].att[k].block = NULL;
		}
}

void attach_loaded(struct store *s, struct context *c)
{
	uint64_t sid = c->slot->sid;
	if (!s->st->ops->blob_stat)
		return;
	for (size_t i = c->hist_start; i < c->n_ex; i++)
		for (size_t k = 0; k < c->ex[i].n_att; k++) {
			struct attachment *a = &c->ex[i].att[k];
			a->lost = storage_blob_stat(s->st, sid, a->hash, a->size);
		}
	for (size_t i = 0; i < c->n_files;) {
		struct attach_file *f = &c->files[i];
		if (f->committed && storage_blob_stat(s->st, sid, f->a.hash, f->a.size) < 0) {
			/* A pending file whose blob is gone is no file. */
			snprintf(c->refused, sizeof(c->refused),
				 "attach/%s was lost: its stored copy is missing or damaged",
				 f->a.name);
			c->refused_ms = clock_wall_ms();
			attach_file_drop(c, f);
			continue;
		}
		i++;
	}
	storage_blob_sweep(s->st, sid, referenced, c);
}

/* --- taking the files ---------------------------------------------------------------- */

int attach_take(struct context *c, struct attachment **att, size_t *n)
{
	size_t k = 0;
	*att = NULL;
	*n = 0;
	for (size_t i = 0; i < c->n_files; i++)
		k += c->files[i].committed && !c->files[i].writers && !c->files[i].dirty;
	if (!k)
		return 0;
	struct attachment *v = calloc(k, sizeof(*v));
	if (!v)
		return -ENOMEM;
	k = 0;
	for (size_t i = 0; i < c->n_files;) {
		struct attach_file *f = &c->files[i];
		if (f->committed && !f->writers && !f->dirty) {
			v[k++] = f->a;
			memset(&f->a, 0, sizeof(f->a));
			attach_file_drop(c, f);
		} else {
			i++;
		}
	}
	*att = v;
	*n = k;
	return 0;
}

void attach_untake(struct context *c, struct attachment *att, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct attach_file *f = file_by_name(c, att[i].name);
		if (!f && c->n_files < ATTACH_FILES_MAX)
			f = attach_file_new(c, att[i].name);
		if (f && !f->committed && !f->dirty && !f->writers) {
			attachment_free(&f->a);
			f->a = att[i];
			f->committed = true;
		} else {
			attachment_free(&att[i]);
		}
	}
	free(att);
}

int64_t attach_raw(const struct exchange *e)
{
	int64_t t = 0;
	for (size_t i = 0; i < e->n_att; i++)
		t += e->att[i].raw;
	return t;
}

/* --- the request ------------------------------------------------------------------- */

/* A JSON string of the text (cJSON's escaping), heap, and its length. */
static char *json_quoted(const char *text, size_t *len)
{
	cJSON *str = cJSON_CreateString(text);
	char *p = str ? cJSON_PrintUnformatted(str) : NULL;
	cJSON_Delete(str);
	if (p)
		*len = strlen(p);
	return p;
}

/* The block that stands for an attachment whose blob is lost. */
static int lost_block(struct attachment *a)
{
	char text[512], size[32];
	attach_size_text(a->size, size, sizeof(size));
	snprintf(text, sizeof(text), "[attachment %s (%s, %s) is not sent: its stored copy is %s]",
		 a->name, attach_type_name(a->type), size,
		 a->lost == -ENOENT ? "missing" : "damaged");
	size_t n;
	char *q = json_quoted(text, &n);
	if (!q)
		return -ENOMEM;
	struct buf b;
	buf_init(&b, SIZE_MAX / 2);
	int r = buf_printf(&b, "{\"type\":\"text\",\"text\":%s}", q);
	free(q);
	if (r == 0)
		a->block = buf_steal(&b, &a->block_len);
	buf_done(&b);
	return r == 0 && !a->block ? -ENOMEM : r;
}

/* image: {"type":"image","source":{"type":"base64","media_type":M,"data":B64}};
 * PDF: {"type":"document","source":{...base64...},"title":NAME};
 * text: {"type":"document","source":{"type":"text","media_type":"text/plain",
 * "data":TEXT},"title":NAME}.  The base64 is written straight into the block. */
static int build_block(struct attachment *a, const struct buf *content)
{
	size_t tlen = 0, dlen = 0;
	char *title = json_quoted(a->name, &tlen), *text = NULL;
	if (!title)
		return -ENOMEM;
	bool is_text = a->type == ATTACH_TEXT;
	if (is_text && !(text = json_quoted(content->data ? content->data : "", &dlen))) {
		free(title);
		return -ENOMEM;
	}
	char head[192];
	int hl =
	    snprintf(head, sizeof(head),
		     "{\"type\":\"%s\",\"source\":{\"type\":\"%s\",\"media_type\":\"%s\","
		     "\"data\":%s",
		     attach_is_image(a->type) ? "image" : "document", is_text ? "text" : "base64",
		     attach_media_type(a->type), is_text ? "" : "\"");
	size_t blen = is_text ? dlen : attach_b64_len(content->len);
	size_t cap = (size_t)hl + blen + tlen + 32;
	char *p = malloc(cap);
	if (!p) {
		free(title);
		free(text);
		return -ENOMEM;
	}
	size_t n = (size_t)hl;
	memcpy(p, head, n);
	if (is_text)
		memcpy(p + n, text, dlen);
	else
		attach_b64_encode(content->data, content->len, p + n);
	n += blen;
	if (!is_text)
		p[n++] = '"';
	p[n++] = '}'; /* the source */
	if (!attach_is_image(a->type)) {
		memcpy(p + n, ",\"title\":", 9);
		memcpy(p + n + 9, title, tlen);
		n += 9 + tlen;
	}
	p[n++] = '}';
	free(title);
	free(text);
	a->block = p;
	a->block_len = n;
	return 0;
}

int attach_block(struct store *s, struct context *c, struct attachment *a)
{
	if (a->block)
		return 0;
	if (a->lost)
		return lost_block(a);
	struct buf b;
	buf_init(&b, ATTACH_FILE_MAX);
	int r = attach_blob_get(s, c, a->hash, a->size, &b);
	if (r == -ENOENT || r == -EBADMSG) {
		a->lost = r;
		r = lost_block(a);
	} else if (r == 0) {
		r = build_block(a, &b);
	}
	buf_done(&b);
	return r;
}

int attach_caps_check(const struct exchange *e, const struct model_caps *caps, const char *model,
		      char *why, size_t whylen)
{
	if (!caps)
		return 0;
	for (size_t i = 0; i < e->n_att; i++) {
		const struct attachment *a = &e->att[i];
		bool image = attach_is_image(a->type);
		if ((image && !caps->image_input) || (a->type == ATTACH_PDF && !caps->pdf_input)) {
			snprintf(why, whylen,
				 "%s takes no %s input: %s (turn %llu) cannot be sent; choose "
				 "another model, or clear the history; nothing was sent",
				 model, image ? "image" : "PDF", a->name,
				 (unsigned long long)e->turn);
			return -ENOTSUP;
		}
	}
	return 0;
}

/* --- views ---------------------------------------------------------------------------- */

int attach_render_lines(const struct exchange *e, struct buf *out)
{
	int r = 0;
	for (size_t i = 0; r == 0 && i < e->n_att; i++) {
		char size[32];
		attach_size_text(e->att[i].size, size, sizeof(size));
		/* Nothing that can change later: the transcript only grows. */
		r = buf_printf(out, "[attached: %s, %s, %s]\n", e->att[i].name,
			       attach_type_name(e->att[i].type), size);
	}
	return r;
}

int attach_render_json(const struct exchange *e, cJSON *msg)
{
	if (!e->n_att)
		return 0;
	cJSON *arr = cJSON_AddArrayToObject(msg, "attachments");
	for (size_t i = 0; arr && i < e->n_att; i++) {
		const struct attachment *a = &e->att[i];
		cJSON *o = cJSON_CreateObject();
		if (!o || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			return -ENOMEM;
		}
		cJSON_AddStringToObject(o, "name", a->name);
		cJSON_AddStringToObject(o, "type", attach_type_name(a->type));
		cJSON_AddStringToObject(o, "media_type", attach_media_type(a->type));
		cJSON_AddNumberToObject(o, "size", (double)a->size);
		cJSON_AddNumberToObject(o, "tokens", (double)a->raw);
		if (a->lost)
			cJSON_AddTrueToObject(o, "lost");
	}
	return arr ? 0 : -ENOMEM;
}

int attach_status(const struct context *c, struct buf *out)
{
	int r = 0;
	if (c->n_files)
		r = buf_printf(out, "attach: %zu file(s), %llu bytes\n", c->n_files,
			       (unsigned long long)files_total(c));
	size_t lost = 0;
	for (size_t i = c->hist_start; i < c->n_ex; i++)
		for (size_t k = 0; k < c->ex[i].n_att; k++)
			lost += c->ex[i].att[k].lost != 0;
	if (r == 0 && lost)
		r = buf_printf(out,
			       "attachments_lost: %zu (their stored copies are missing or "
			       "damaged; a note is sent in their place)\n",
			       lost);
	return r;
}
