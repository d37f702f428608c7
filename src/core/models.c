/* models.c — ModelInfo parsing, the shaping rules of a request, and the cache of
 * answers from the Models API (see models.h).  Pure: no I/O, no lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mcpfs/models.h"

/* The API refuses a thinking budget below this. */
#define BUDGET_MIN 1024

static void copy(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

/* obj.key.supported, false when any part is missing. */
static bool supported(const cJSON *obj, const char *key)
{
	const cJSON *o = key ? cJSON_GetObjectItemCaseSensitive(obj, key) : obj;
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "supported"));
}

static int64_t number(const cJSON *obj, const char *key)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsNumber(n) && n->valuedouble >= 0 && n->valuedouble < 9e15
		   ? (int64_t)n->valuedouble
		   : -1;
}

static const char *string(const cJSON *obj, const char *key)
{
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(s) ? s->valuestring : NULL;
}

static enum model_lifecycle lifecycle_of(const char *w)
{
	if (w && strcmp(w, "deprecated") == 0)
		return MODEL_DEPRECATED;
	if (w && strcmp(w, "retired") == 0)
		return MODEL_RETIRED;
	return MODEL_ACTIVE;
}

const char *model_lifecycle_name(enum model_lifecycle l)
{
	return l == MODEL_DEPRECATED ? "deprecated" : l == MODEL_RETIRED ? "retired" : "active";
}

static void caps_lifecycle(const cJSON *o, struct model_caps *c)
{
	const cJSON *lc = cJSON_GetObjectItemCaseSensitive(o, "lifecycle");
	const char *retires = string(o, "retires_at");

	if (cJSON_IsObject(lc)) {
		c->lifecycle = lifecycle_of(string(lc, "status"));
		if (string(lc, "retires_at"))
			retires = string(lc, "retires_at");
	} else {
		c->lifecycle = lifecycle_of(cJSON_IsString(lc) ? lc->valuestring : NULL);
	}
	copy(c->retires_at, sizeof(c->retires_at), retires);
}

static void caps_capabilities(const cJSON *caps, struct model_caps *c)
{
	static const struct {
		const char *name;
		unsigned bit;
	} levels[] = {{"low", MODEL_EFFORT_LOW},
		      {"medium", MODEL_EFFORT_MEDIUM},
		      {"high", MODEL_EFFORT_HIGH},
		      {"xhigh", MODEL_EFFORT_XHIGH},
		      {"max", MODEL_EFFORT_MAX}};
	const cJSON *th = cJSON_GetObjectItemCaseSensitive(caps, "thinking");
	const cJSON *types = cJSON_GetObjectItemCaseSensitive(th, "types");
	const cJSON *ef = cJSON_GetObjectItemCaseSensitive(caps, "effort");

	if (supported(th, NULL)) {
		c->thinking_adaptive = supported(types, "adaptive");
		c->thinking_enabled = supported(types, "enabled");
	}
	c->effort = supported(ef, NULL);
	for (size_t i = 0; c->effort && i < sizeof(levels) / sizeof(levels[0]); i++)
		if (supported(ef, levels[i].name))
			c->effort_levels |= levels[i].bit;
	c->image_input = supported(caps, "image_input");
	c->pdf_input = supported(caps, "pdf_input");
	c->structured_outputs = supported(caps, "structured_outputs");
	c->code_execution = supported(caps, "code_execution");
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(caps, "server_tools");
	c->server_tools_known = cJSON_IsObject(st);
	c->web_search = !c->server_tools_known || supported(st, "web_search");
	c->web_fetch = !c->server_tools_known || (cJSON_GetObjectItemCaseSensitive(st, "web_fetch")
						      ? supported(st, "web_fetch")
						      : supported(st, NULL));
}

static int caps_from_json(const cJSON *o, struct model_caps *c)
{
	const char *id = string(o, "id");

	memset(c, 0, sizeof(*c));
	if (!cJSON_IsObject(o) || !id || !settings_model_valid(id, strlen(id)))
		return -EINVAL;
	copy(c->id, sizeof(c->id), id);
	copy(c->display_name, sizeof(c->display_name), string(o, "display_name"));
	copy(c->line, sizeof(c->line), string(o, "line"));
	c->max_input_tokens = number(o, "max_input_tokens");
	c->max_tokens = number(o, "max_tokens");
	caps_lifecycle(o, c);
	caps_capabilities(cJSON_GetObjectItemCaseSensitive(o, "capabilities"), c);
	return 0;
}

int model_caps_parse(const char *json, size_t len, struct model_caps *out)
{
	cJSON *o = cJSON_ParseWithLength(json, len);
	int r = caps_from_json(o, out);
	cJSON_Delete(o);
	return r;
}

/* --- shaping ---------------------------------------------------------------------- */

static void ignore(struct model_shape *out, const char *what)
{
	size_t n = strlen(out->ignored);
	snprintf(out->ignored + n, sizeof(out->ignored) - n, "%s%s", n ? ", " : "", what);
}

/* "low, medium, high": the levels a model takes. */
static void effort_list(unsigned levels, char *out, size_t n)
{
	size_t o = 0;
	out[0] = '\0';
	for (int e = EFFORT_LOW; e <= EFFORT_MAX; e++)
		if (levels & (1u << (e - 1)))
			o += (size_t)snprintf(out + o, n - o, "%s%s", o ? ", " : "",
					      settings_effort_name(e));
}

static void shape_thinking(const struct settings *st, const struct model_caps *caps,
			   struct model_shape *out)
{
	int64_t quarter = st->max_tokens / 4 > BUDGET_MIN ? st->max_tokens / 4 : BUDGET_MIN;

	if (st->thinking == SETTINGS_THINKING_OFF)
		return;
	if (!caps) { /* only what the user set */
		out->thinking = st->thinking > 0 ? SHAPE_THINKING_BUDGET : SHAPE_THINKING_ADAPTIVE;
		out->budget = st->thinking > 0 ? st->thinking : 0;
		return;
	}
	if (st->thinking > 0 && caps->thinking_enabled) {
		out->thinking = SHAPE_THINKING_BUDGET;
		out->budget = st->thinking;
	} else if (caps->thinking_adaptive) {
		out->thinking = SHAPE_THINKING_ADAPTIVE;
	} else if (caps->thinking_enabled && quarter < st->max_tokens) {
		out->thinking = SHAPE_THINKING_BUDGET;
		out->budget = quarter;
	} else if (caps->thinking_enabled) {
		ignore(out, "thinking (max_tokens leaves no room for a budget of 1024)");
	} else {
		ignore(out, "thinking (the model takes none)");
	}
}

/* The server tools of `tools`, in the versions the model takes. */
static void shape_tools(const struct settings *st, const struct model_caps *caps,
			struct model_shape *out)
{
	bool newest = !caps || caps->code_execution;
	bool search = st->tools & SETTINGS_TOOL_WEB_SEARCH;
	bool fetch = st->tools & SETTINGS_TOOL_WEB_FETCH;

	if (search && (!caps || caps->web_search))
		out->web_search = newest ? MODEL_WEB_SEARCH_NEWEST : MODEL_WEB_SEARCH_BASIC;
	if (fetch && (!caps || caps->web_fetch))
		out->web_fetch = newest ? MODEL_WEB_FETCH_NEWEST : MODEL_WEB_FETCH_BASIC;
	if (!(search && !out->web_search) && !(fetch && !out->web_fetch))
		return;
	if (!caps->web_search && !caps->web_fetch)
		ignore(out, "tools (the model takes no server tools)");
	else
		ignore(out, search && !out->web_search
				? "tools: web_search (the model does not take it)"
				: "tools: web_fetch (the model does not take it)");
}

void model_shape(const struct settings *st, const struct model_caps *caps, struct model_shape *out)
{
	const char *level = settings_effort_name(st->effort);
	char what[160], list[64];

	memset(out, 0, sizeof(*out));
	shape_thinking(st, caps, out);
	shape_tools(st, caps, out);
	if (!level)
		return;
	if (!caps) {
		out->effort = level;
	} else if (!caps->effort || !caps->effort_levels) {
		ignore(out, "effort (the model takes none)");
	} else if (!(caps->effort_levels & (1u << (st->effort - 1)))) {
		effort_list(caps->effort_levels, list, sizeof(list));
		snprintf(what, sizeof(what), "effort %s (the model takes %s)", level, list);
		ignore(out, what);
	} else {
		out->effort = level;
	}
}

/* --- the cache -------------------------------------------------------------------- */

void models_init(struct models *m)
{
	memset(m, 0, sizeof(*m));
	m->list_status = -1;
}

void models_done(struct models *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->e[i].info);
	free(m->e);
	free(m->list);
	memset(m, 0, sizeof(*m));
}

struct models_entry *models_find(const struct models *m, const char *id)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->e[i].id, id) == 0)
			return &m->e[i];
	return NULL;
}

enum models_state models_state(const struct models *m, const char *id, int64_t now)
{
	const struct models_entry *e = models_find(m, id);

	if (e && e->fetching && now - e->fetch_ms < MODELS_LOST_MS)
		return MODELS_FETCHING;
	if (!e || e->fetching)
		return MODELS_NEED;
	if (e->failed_ms && now - e->failed_ms < MODELS_RETRY_MS)
		return MODELS_FAILED;
	if (e->status < 0 || now - e->at_ms >= MODELS_TTL_MS)
		return MODELS_NEED;
	return e->status == 200 ? MODELS_KNOWN : MODELS_ABSENT;
}

enum models_state models_list_state(const struct models *m, int64_t now)
{
	if (m->list_fetching && now - m->list_fetch_ms < MODELS_LOST_MS)
		return MODELS_FETCHING;
	if (m->list_fetching)
		return MODELS_NEED;
	if (m->list_failed_ms && now - m->list_failed_ms < MODELS_RETRY_MS)
		return MODELS_FAILED;
	if (m->list_status == 200 && now - m->list_ms < MODELS_TTL_MS)
		return MODELS_KNOWN;
	return MODELS_NEED;
}

int models_entry(struct models *m, const char *id, struct models_entry **ret)
{
	struct models_entry *e = models_find(m, id);

	if (!e) {
		if (m->n >= MODELS_MAX)
			return -EFBIG;
		if (m->n == m->cap) {
			size_t cap = m->cap ? m->cap * 2 : 16;
			struct models_entry *ne = realloc(m->e, cap * sizeof(*ne));
			if (!ne)
				return -ENOMEM;
			m->e = ne;
			m->cap = cap;
		}
		e = &m->e[m->n++];
		memset(e, 0, sizeof(*e));
		copy(e->id, sizeof(e->id), id);
		e->status = -1;
	}
	*ret = e;
	return 0;
}

/* A 200 answer from a parsed ModelInfo object. */
static int answer_known(struct models *m, const cJSON *o, int64_t now)
{
	struct model_caps caps;
	struct models_entry *e;
	int r = caps_from_json(o, &caps);

	if (r < 0)
		return r;
	char *text = cJSON_PrintUnformatted(o);
	if (!text)
		return -ENOMEM;
	if (strlen(text) > MODELS_INFO_MAX || (r = models_entry(m, caps.id, &e)) < 0) {
		cJSON_free(text);
		return r < 0 ? r : -EFBIG;
	}
	free(e->info);
	e->info = strdup(text);
	cJSON_free(text);
	if (!e->info)
		return -ENOMEM;
	e->caps = caps;
	e->status = 200;
	e->at_ms = now;
	e->failed_ms = 0;
	e->fetching = false;
	e->why[0] = '\0';
	return 0;
}

int models_answer(struct models *m, const char *id, int status, const char *body, size_t len,
		  const char *why, int64_t now)
{
	struct models_entry *e;
	int r = models_entry(m, id, &e);

	if (r < 0)
		return r;
	e->fetching = false;
	if (status == 200) {
		cJSON *o = cJSON_ParseWithLength(body, len);
		const char *got = string(o, "id");
		/* The API resolves an alias to its model: the answer is kept under
		 * the id asked for too. */
		if (got && strcmp(got, id) != 0 && cJSON_IsObject(o))
			cJSON_ReplaceItemInObjectCaseSensitive(o, "id", cJSON_CreateString(id));
		r = answer_known(m, o, now);
		cJSON_Delete(o);
		if (r == 0)
			return 0;
		e = models_find(m, id);
		if (!e)
			return r;
		why = "the Models API answered something that is not a ModelInfo";
	} else if (status == 404) {
		free(e->info);
		e->info = NULL;
		e->status = 404;
		e->at_ms = now;
		e->failed_ms = 0;
		return 0;
	}
	e->failed_ms = now ? now : 1;
	copy(e->why, sizeof(e->why), why ? why : "the Models API did not answer");
	return r;
}

static int page_fields(const cJSON *o, bool *has_more, char *last_id, size_t last_id_len)
{
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(o, "data");
	const char *last = string(o, "last_id");

	if (!cJSON_IsArray(data))
		return -EINVAL;
	*has_more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "has_more"));
	if (!last && cJSON_GetArraySize(data) > 0) /* the SDKs' fallback: the last item */
		last = string(cJSON_GetArrayItem(data, cJSON_GetArraySize(data) - 1), "id");
	copy(last_id, last_id_len, last);
	if (*has_more && !last_id[0])
		*has_more = false; /* no cursor to go on with */
	return 0;
}

int models_page_cursor(const char *body, size_t len, bool *has_more, char *last_id,
		       size_t last_id_len)
{
	cJSON *o = cJSON_ParseWithLength(body, len);
	int r = page_fields(o, has_more, last_id, last_id_len);
	cJSON_Delete(o);
	return r;
}

int models_page(struct models *m, const char *body, size_t len, int64_t now,
		char (**list)[SETTINGS_MODEL_MAX + 1], size_t *n, bool *has_more, char *last_id,
		size_t last_id_len)
{
	cJSON *o = cJSON_ParseWithLength(body, len);
	int r = page_fields(o, has_more, last_id, last_id_len);
	const cJSON *it;

	const cJSON *data = r == 0 ? cJSON_GetObjectItemCaseSensitive(o, "data") : NULL;
	cJSON_ArrayForEach(it, data)
	{
		if (answer_known(m, it, now) < 0)
			continue; /* an item mcpfs cannot read is left out */
		if (*n >= MODELS_MAX) {
			r = -EFBIG;
			break;
		}
		char(*nl)[SETTINGS_MODEL_MAX + 1] = realloc(*list, (*n + 1) * sizeof(**list));
		if (!nl) {
			r = -ENOMEM;
			break;
		}
		*list = nl;
		copy(nl[(*n)++], sizeof(*nl), string(it, "id"));
	}
	cJSON_Delete(o);
	return r;
}

void models_list_answer(struct models *m, char (*list)[SETTINGS_MODEL_MAX + 1], size_t n,
			const char *why, int64_t now)
{
	m->list_fetching = false;
	if (!list && n == 0 && why) {
		m->list_failed_ms = now ? now : 1;
		copy(m->list_why, sizeof(m->list_why), why);
		return;
	}
	free(m->list);
	m->list = list;
	m->n_list = n;
	m->list_status = 200;
	m->list_ms = now;
	m->list_failed_ms = 0;
	m->list_why[0] = '\0';
}

int models_render(const struct models *m, struct buf *out)
{
	int r = 0;

	if (m->list_status != 200)
		return buf_printf(out, "# cannot list models: %s\n",
				  m->list_why[0] ? m->list_why
						 : "no answer from the Models API yet");
	for (size_t i = 0; r == 0 && i < m->n_list; i++) {
		const struct models_entry *e = models_find(m, m->list[i]);
		if (!e || e->status != 200)
			continue;
		char window[24] = "-";
		if (e->caps.max_input_tokens >= 0)
			snprintf(window, sizeof(window), "%" PRId64, e->caps.max_input_tokens);
		r = buf_printf(out, "%s\t%s\t%s\t%s\n", e->id,
			       e->caps.display_name[0] ? e->caps.display_name : e->id,
			       model_lifecycle_name(e->caps.lifecycle), window);
	}
	return r;
}

void models_advice(const struct models *m, const struct model_caps *c, char *out, size_t n)
{
	const char *newest = NULL;
	char when[64] = "";
	int o;

	out[0] = '\0';
	if (c->lifecycle == MODEL_ACTIVE)
		return;
	for (size_t i = 0; c->line[0] && i < m->n_list && !newest; i++) {
		const struct models_entry *e = models_find(m, m->list[i]);
		if (e && e->status == 200 && e->caps.lifecycle == MODEL_ACTIVE &&
		    strcmp(e->caps.line, c->line) == 0)
			newest = e->id;
	}
	if (c->retires_at[0])
		snprintf(when, sizeof(when), " (%s %.10s)",
			 c->lifecycle == MODEL_RETIRED ? "retired" : "retires", c->retires_at);
	o = snprintf(out, n, "%s is %s%s", c->id, model_lifecycle_name(c->lifecycle), when);
	if (o < 0 || (size_t)o >= n)
		return;
	if (newest)
		snprintf(out + o, n - (size_t)o, "; the newest active model of line '%s' is %s",
			 c->line, newest);
	else if (c->line[0])
		snprintf(out + o, n - (size_t)o, "; no active model of line '%s' is known",
			 c->line);
}

/* The file: {"version":1, "list_ms":N, "list":[ids], "models":[{"ms":N,
 * "status":200|404, "info":{ModelInfo}}]}.  Failures are not saved: they are
 * retried by the next process anyway. */
int models_save(const struct models *m, struct buf *out)
{
	cJSON *root = cJSON_CreateObject(), *arr, *list;
	int r = -ENOMEM;

	if (!root || !cJSON_AddNumberToObject(root, "version", 1) ||
	    !(list = cJSON_AddArrayToObject(root, "list")) ||
	    !(arr = cJSON_AddArrayToObject(root, "models")))
		goto out;
	if (m->list_status == 200 && !cJSON_AddNumberToObject(root, "list_ms", (double)m->list_ms))
		goto out;
	for (size_t i = 0; m->list_status == 200 && i < m->n_list; i++)
		if (!cJSON_AddItemToArray(list, cJSON_CreateString(m->list[i])))
			goto out;
	for (size_t i = 0; i < m->n; i++) {
		const struct models_entry *e = &m->e[i];
		cJSON *o, *info = NULL;
		if (e->status != 200 && e->status != 404)
			continue;
		if (e->status == 200 && !(info = cJSON_Parse(e->info ? e->info : "")))
			continue;
		if (!(o = cJSON_CreateObject()) || !cJSON_AddItemToArray(arr, o) ||
		    !cJSON_AddStringToObject(o, "id", e->id) ||
		    !cJSON_AddNumberToObject(o, "ms", (double)e->at_ms) ||
		    !cJSON_AddNumberToObject(o, "status", e->status) ||
		    (info && !cJSON_AddItemToObject(o, "info", info))) {
			cJSON_Delete(info);
			goto out;
		}
	}
	char *text = cJSON_PrintUnformatted(root);
	if (text) {
		r = buf_puts(out, text);
		cJSON_free(text);
	}
out:
	cJSON_Delete(root);
	return r;
}

void models_load(struct models *m, const char *text, size_t len)
{
	cJSON *root = cJSON_ParseWithLength(text, len);
	const cJSON *it;
	char(*list)[SETTINGS_MODEL_MAX + 1] = NULL;
	size_t n = 0;

	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "models"))
	{
		int64_t ms = number(it, "ms");
		const char *id = string(it, "id");
		int64_t status = number(it, "status");
		struct models_entry *e;
		if (!id || !settings_model_valid(id, strlen(id)) || ms < 0)
			continue;
		if (status == 200)
			answer_known(m, cJSON_GetObjectItemCaseSensitive(it, "info"), ms);
		else if (status == 404 && models_entry(m, id, &e) == 0) {
			e->status = 404;
			e->at_ms = ms;
		}
	}
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "list"))
	{
		if (!cJSON_IsString(it) || n >= MODELS_MAX)
			continue;
		char(*nl)[SETTINGS_MODEL_MAX + 1] = realloc(list, (n + 1) * sizeof(*list));
		if (!nl)
			break;
		list = nl;
		copy(list[n++], sizeof(*list), it->valuestring);
	}
	int64_t list_ms = number(root, "list_ms");
	if (list_ms >= 0)
		models_list_answer(m, list, n, NULL, list_ms);
	else
		free(list);
	cJSON_Delete(root);
}
