/* context.c — one loaded context: its settings (system prompt, schema,
 * `.config`, patched or replaced, each change committed), its exchanges and
 * their attempts, the marks the transcript shows, the history (the prune
 * index), what `info`/`output` read (see store.h; the journal format is
 * doc/design/journal.md).  Making a context from its records, adopting and
 * freeing it are context_load.c's.
 *
 * Below context_load.c, fork.c, view.c and the turns' calls; it calls only
 * the store, context_journal.c, commit.c, spend.c, store_models.c's checks,
 * the turn object (new/ref/unref), blocks, attach, settings and prune.
 *
 * Everything here runs under the store lock.  A commit (message, settings,
 * clear) is appended and fsynced before the function returns, so what a writer
 * was told succeeded survives a crash.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "mcpfs/schema.h"
#include "mcpfs/log.h"
#include "mcpfs/utf8.h"
#include "store_impl.h"

cJSON *settings_record(const struct settings *st, const char *system, const char *schema,
		       int64_t created_ms)
{
	cJSON *set = cJSON_CreateObject();
	struct record_settings r = {.settings = set,
				    .system = system,
				    .schema = schema,
				    .v = created_ms >= 0 ? RECORD_CREATE_V : RECORD_ABSENT,
				    .created_ms = created_ms};
	cJSON *o = set && settings_to_json(st, set) == 0 ? record_settings_json(&r) : NULL;
	cJSON_Delete(set);
	return o;
}

/* Appends a SETTINGS record (with schema, the schema text it carries: the
 * context's own by default); with sync under the lock (a load), else the
 * caller syncs it.  *copy receives the new system prompt's copy (NULL:
 * unchanged). */
static int settings_append(struct context *c, const struct settings *st, const char *system,
			   size_t system_len, bool sync, char **copy, const char *schema)
{
	*copy = NULL;
	if (system != c->system) {
		*copy = malloc(system_len + 1);
		if (!*copy)
			return -ENOMEM;
		memcpy(*copy, system, system_len);
		(*copy)[system_len] = '\0';
	}
	cJSON *rec = settings_record(st, *copy ? *copy : c->system, schema ? schema : c->schema,
				     RECORD_ABSENT);
	int r = rec ? context_journal_write(c, JOURNAL_SETTINGS, rec, sync) : -ENOMEM;
	if (r < 0) {
		free(*copy);
		*copy = NULL;
	}
	return r;
}

static void settings_apply(struct context *c, const struct settings *st, char *copy,
			   size_t system_len)
{
	c->settings = *st;
	if (copy && (system_len != c->system_len || memcmp(copy, c->system, system_len)))
		context_mark(c, MARK_SYSTEM, copy, system_len);
	if (copy) {
		free(c->system);
		c->system = copy;
		c->system_len = system_len;
	}
	context_changed(c);
}

int context_save_settings(struct context *c, const struct settings *st, const char *system,
			  size_t system_len)
{
	char *copy;
	int r = settings_append(c, st, system, system_len, true, &copy, NULL);
	if (r == 0)
		settings_apply(c, st, copy, system_len);
	return r;
}

int context_exchange_push(struct context *c, uint64_t turn, const char *text, size_t len,
			  struct reply **ret)
{
	if (c->n_ex == c->cap_ex) {
		size_t cap = c->cap_ex ? c->cap_ex * 2 : 8;
		struct exchange *ex = realloc(c->ex, cap * sizeof(*ex));
		if (!ex)
			return -ENOMEM;
		c->ex = ex;
		c->cap_ex = cap;
	}
	struct exchange *e = &c->ex[c->n_ex];
	memset(e, 0, sizeof(*e));
	e->user = malloc(len + 1);
	e->reply = reply_new(c, turn, 1);
	if (!e->user || !e->reply) {
		free(e->user);
		reply_unref(NULL, e->reply);
		return -ENOMEM;
	}
	memcpy(e->user, text, len);
	e->user[len] = '\0';
	e->user_len = len;
	e->turn = turn;
	e->user_ms = clock_wall_ms();
	e->clear_before = c->pending_clear;
	c->pending_clear = false;
	c->n_ex++;
	if (turn >= c->next_turn)
		c->next_turn = turn + 1;
	if (ret)
		*ret = e->reply;
	return 0;
}

int context_mark(struct context *c, enum mark_kind kind, const char *text, size_t len)
{
	/* Two clears in a row show as one, as they always have. */
	if (kind == MARK_CLEAR && c->n_marks && c->marks[c->n_marks - 1].kind == MARK_CLEAR &&
	    c->marks[c->n_marks - 1].at == c->n_ex)
		return 0;
	if (c->n_marks == c->cap_marks) {
		size_t cap = c->cap_marks ? c->cap_marks * 2 : 4;
		struct mark *m = realloc(c->marks, cap * sizeof(*m));
		if (!m)
			return -ENOMEM;
		c->marks = m;
		c->cap_marks = cap;
	}
	struct mark *m = &c->marks[c->n_marks];
	*m = (struct mark){c->n_ex, kind, NULL, 0};
	if (text && !(m->text = strndup(text, len)))
		return -ENOMEM;
	m->len = len;
	c->n_marks++;
	context_changed(c);
	return 0;
}

void context_history_push(struct context *c, size_t i)
{
	struct exchange *e = &c->ex[i];
	if (e->in_history || e->undone || i < c->hist_start || !reply_in_history(e->reply))
		return;
	if (c->prune.n == c->hist_cap) {
		size_t cap = c->hist_cap ? c->hist_cap * 2 : 16;
		size_t *h = realloc(c->hist, cap * sizeof(*h));
		if (!h)
			return; /* stays out of history: only a smaller request */
		c->hist = h;
		c->hist_cap = cap;
	}
	if (prune_index_push(&c->prune, exchange_raw(e)) < 0)
		return;
	c->hist[c->prune.n - 1] = i;
	e->in_history = true;
	context_changed(c);
}

/* --- settings ------------------------------------------------------------------ */

static int system_check(const char *text, size_t len, char *why, size_t whylen)
{
	if (len > SETTINGS_SYSTEM_MAX) {
		snprintf(why, whylen, "system prompt is %zu bytes, over the limit of %u", len,
			 SETTINGS_SYSTEM_MAX);
		return -EFBIG;
	}
	if (!utf8_valid(text, len) || memchr(text, '\0', len)) {
		snprintf(why, whylen, "system prompt is not valid UTF-8 text");
		return -EILSEQ;
	}
	return 0;
}

/* Forgets the marks after the first n (a change whose fsync failed). */
static void marks_drop(struct context *c, size_t n)
{
	while (c->n_marks > n)
		free(c->marks[--c->n_marks].text);
}

/* What a commit changes besides the settings: a new system prompt and a new
 * schema, each NULL to keep the current one (a schema "" removes it). */
struct commit_text {
	const char *sys, *schema;
	size_t slen, schema_len;
};

/* Installs a new schema copy (NULL: none) and returns the old one. */
static char *schema_swap(struct context *c, char *copy, size_t len)
{
	char *old = c->schema;
	c->schema = copy;
	c->schema_len = copy ? len : 0;
	return old;
}

/* Saves new settings, a new system prompt and a new schema in one SETTINGS
 * record, so a change is applied whole or not at all. */
static int context_commit(struct store *s, uint64_t id, const struct settings *st,
			  const struct commit_text *ct, char *why, size_t whylen)
{
	struct notes notes = {0};
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	int r = c ? commit_sync_idle(s, &c) : -ENOENT;
	struct settings set, old;
	char *copy = NULL, *old_system = NULL, *sch = NULL, *old_schema = NULL;
	const char *sys = ct ? ct->sys : NULL;
	size_t old_len = 0, slen = ct ? ct->slen : 0;
	bool applied = false, new_schema = ct && ct->schema;
	if (r == 0 && new_schema && ct->schema_len && !(sch = strndup(ct->schema, ct->schema_len)))
		r = -ENOMEM;
	if (r == 0) {
		set = st ? *st : c->settings;
		slen = sys ? slen : c->system_len;
		r = settings_append(c, &set, sys ? sys : c->system, slen, false, &copy,
				    new_schema ? (sch ? sch : "") : NULL);
	}
	/* Shown at once, as when the fsync was under the lock (a truncation of
	 * `system` is applied at the release, which close() does not wait for, and
	 * a read right after it finds the new text), and put back if the fsync
	 * fails. */
	size_t marks = 0;
	if (r == 0) {
		old = c->settings;
		old_len = c->system_len;
		old_system = copy ? c->system : NULL; /* kept for a failure */
		c->settings = set;
		marks = c->n_marks;
		if (copy && (slen != c->system_len || memcmp(copy, c->system, slen)))
			context_mark(c, MARK_SYSTEM, copy, slen);
		if (copy) {
			c->system = copy;
			c->system_len = slen;
		}
		if (new_schema)
			old_schema = schema_swap(c, sch, ct->schema_len);
		sch = NULL;
		context_changed(c);
		applied = true;
		r = commit_sync(s, &c, &notes);
	}
	if (applied && r < 0 && c) {
		if (old_system) {
			free(c->system);
			c->system = old_system;
			c->system_len = old_len;
			old_system = NULL;
		}
		if (new_schema)
			free(schema_swap(c, old_schema, old_schema ? strlen(old_schema) : 0));
		old_schema = NULL;
		c->settings = old;
		marks_drop(c, marks);
		context_changed(c);
	}
	free(old_system); /* replaced, or its context is gone */
	free(old_schema);
	free(sch);
	if (r < 0 && r != -ENOENT)
		snprintf(why, whylen, "cannot save settings: %s", strerror(-r));
	if (r == 0)
		notes_add(&notes, id, STORE_CHANGED_SETTINGS | STORE_CHANGED_HISTORY);
	store_unlock_notify(s, &notes);
	return r;
}

int context_set_system(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		       size_t whylen)
{
	int r = system_check(text, len, why, whylen);
	struct commit_text ct = {.sys = text, .slen = len};
	return r < 0 ? r : context_commit(s, id, NULL, &ct, why, whylen);
}

int context_set_schema(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		       size_t whylen)
{
	int r = schema_check(text, len, why, whylen);
	/* White space alone is no schema. */
	struct commit_text ct = {.schema = text, .schema_len = schema_empty(text, len) ? 0 : len};
	return r < 0 ? r : context_commit(s, id, NULL, &ct, why, whylen);
}

/* The context's settings as they are now, for a change based on them. */
static int context_settings(struct store *s, uint64_t id, struct settings *st, bool defaults)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	if (c)
		*st = defaults ? store_context_defaults(s) : c->settings;
	pthread_mutex_unlock(&s->lock);
	return c ? 0 : -ENOENT;
}

int context_set_model(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		      size_t whylen)
{
	const char *model;
	size_t mlen;
	if (settings_model_text(text, len, &model, &mlen, why, whylen) < 0)
		return -EINVAL;
	struct settings st;
	char mid[SETTINGS_MODEL_MAX + 1];
	int r = context_settings(s, id, &st, false);
	if (r < 0)
		return r;
	memcpy(mid, model, mlen);
	mid[mlen] = '\0';
	if ((r = store_model_check(s, st.model, mid, why, whylen)) < 0)
		return r;
	memcpy(st.model, mid, mlen + 1);
	return context_commit(s, id, &st, NULL, why, whylen);
}

int context_set_config(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		       size_t whylen)
{
	struct settings st;
	char old[SETTINGS_MODEL_MAX + 1] = "";
	int r = context_settings(s, id, &st, false);
	if (r == 0) {
		memcpy(old, st.model, sizeof(old));
		r = settings_parse(&st, text, len, why, whylen);
	}
	if (r == 0)
		r = settings_check(&st, why, whylen);
	if (r == 0)
		r = store_model_check(s, old, st.model, why, whylen);
	return r < 0 ? r : context_commit(s, id, &st, NULL, why, whylen);
}

/* A patch's "schema": the schema's text (a string), the schema itself (an
 * object, printed into *text, which the caller frees with cJSON_free), or
 * null or "" for none; checked as the file's text is. */
static int patch_schema(const cJSON *patch, struct commit_text *ct, char **text, char *why,
			size_t whylen)
{
	const cJSON *sc = cJSON_GetObjectItemCaseSensitive(patch, "schema");
	if (!sc)
		return 0;
	if (cJSON_IsNull(sc)) {
		ct->schema = "";
		return 0;
	}
	if (cJSON_IsObject(sc) && !(*text = cJSON_PrintUnformatted(sc))) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	if (!*text && !cJSON_IsString(sc)) {
		snprintf(why, whylen, "schema must be a JSON object, its text, or null");
		return -EINVAL;
	}
	const char *t = *text ? *text : sc->valuestring;
	size_t len = strlen(t);
	int r = schema_check(t, len, why, whylen);
	ct->schema = t;
	ct->schema_len = schema_empty(t, len) ? 0 : len;
	return r;
}

/* The system prompt and the settings of a patch are checked first and saved in
 * one SETTINGS record, so a patch is applied whole or not at all. */
int context_patch(struct store *s, uint64_t id, const cJSON *patch, char *why, size_t whylen)
{
	struct settings st;
	int r = context_settings(s, id, &st, false);
	if (r < 0)
		return r;
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(patch, "model");
	const cJSON *config = cJSON_GetObjectItemCaseSensitive(patch, "config");
	const cJSON *system = cJSON_GetObjectItemCaseSensitive(patch, "system");
	if ((model && !cJSON_IsString(model)) || (system && !cJSON_IsString(system)) ||
	    (config && !cJSON_IsObject(config))) {
		snprintf(why, whylen, "system and model must be strings, config an object");
		return -EINVAL;
	}
	size_t mlen = model ? strlen(model->valuestring) : 0;
	if (model && !settings_model_valid(model->valuestring, mlen)) {
		snprintf(why, whylen, "invalid model id '%.64s'", model->valuestring);
		return -EINVAL;
	}
	char old[SETTINGS_MODEL_MAX + 1];
	memcpy(old, st.model, sizeof(old));
	if (model)
		memcpy(st.model, model->valuestring, mlen + 1);
	if (config && (r = settings_from_json(&st, config, why, whylen)) < 0)
		return r;
	if ((r = settings_check(&st, why, whylen)) < 0)
		return r;
	if ((r = store_model_check(s, old, st.model, why, whylen)) < 0)
		return r;
	const char *sys = system ? system->valuestring : NULL;
	size_t slen = sys ? strlen(sys) : 0;
	if (sys && (r = system_check(sys, slen, why, whylen)) < 0)
		return r;
	struct commit_text ct = {.sys = sys, .slen = slen};
	char *sch = NULL;
	if ((r = patch_schema(patch, &ct, &sch, why, whylen)) == 0)
		r = context_commit(s, id, &st, &ct, why, whylen);
	cJSON_free(sch);
	return r;
}

int exchange_replace(struct context *c, struct exchange *e, struct reply *t)
{
	struct reply **v = realloc(e->earlier, (e->n_earlier + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	e->earlier = v;
	e->reply->ctx = NULL; /* ended: nothing more is saved of it */
	v[e->n_earlier++] = e->reply;
	e->reply = t;
	t->marks_before = c->n_marks;
	context_changed(c);
	return 0;
}

int64_t exchange_raw(const struct exchange *e)
{
	return prune_estimate(e->user_len) +
	       prune_estimate(e->reply->text.len + blocks_bytes(e->reply)) + attach_raw(e);
}

/* A USER record's payload; att: the files the message took from attach/. */
cJSON *user_payload(uint64_t turn, const char *text, size_t len, int64_t ms,
		    const struct attachment *att, size_t n_att)
{
	cJSON *list = n_att ? attach_list_json(att, n_att) : NULL;
	cJSON *o = !n_att || list ? record_user_json(turn, text, len, ms, list) : NULL;
	cJSON_Delete(list);
	return o;
}

int context_output(struct store *s, uint64_t id, struct reply **ret)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	*ret = c && c->newest ? reply_ref(NULL, c->newest) : NULL;
	pthread_mutex_unlock(&s->lock);
	return c ? 0 : -ENOENT;
}

int context_info(struct store *s, uint64_t id, struct context_info *out)
{
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	if (c) {
		struct reply *t = c->newest;
		memset(out, 0, sizeof(*out));
		out->state = t ? t->state : REPLY_DONE;
		out->turn = t ? t->number : 0;
		out->output_size = t ? t->text.len : 0;
		out->thinking_size = t ? t->thinking.len : 0;
		for (size_t i = c->next_send; i < c->n_ex; i++) {
			enum reply_state st = c->ex[i].reply->state;
			if (st == REPLY_QUEUED || st == REPLY_PENDING)
				out->queued++;
		}
		out->idle = !c->active && !c->summ_call && out->queued == 0;
		out->created_ms = c->created_ms;
		out->modified_ms = c->modified_ms;
		out->max_input_bytes = c->settings.max_input_bytes;
		snprintf(out->model, sizeof(out->model), "%s", c->settings.model);
	}
	pthread_mutex_unlock(&s->lock);
	return c ? 0 : -ENOENT;
}

void context_views_done(struct context *c)
{
	for (int i = 0; i < VIEW_CACHED; i++) {
		free(c->views[i].data);
		c->views[i].data = NULL;
	}
}
