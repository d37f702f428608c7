/* mcp_resources.c — the MCP endpoint's resources: five per context, the
 * files history, transcript, output, status and usage as text, named
 * mcpfs://contexts/NAME/FILE with NAME percent-encoded.  Reading one renders
 * it as the mount does (never waiting: `output` is what has arrived).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp_impl.h"

#define URI_PREFIX "mcpfs://contexts/"
#define RESOURCES_PAGE 100 /* contexts per resources/list page */

struct view {
	const char *file;
	int kind; /* enum view_kind, or -1 for output */
	const char *what;
};
static const struct view views[] = {
    {"history", VIEW_HISTORY, "what the next call sends, the pruned part marked"},
    {"transcript", VIEW_TRANSCRIPT, "every message ever exchanged, never pruned"},
    {"output", -1, "the newest reply (as much as has arrived)"},
    {"status", VIEW_STATUS, "idle, queued, waiting, streaming or error, with details"},
    {"usage", VIEW_USAGE, "token counts: the last call and the totals"},
};
#define N_VIEWS (sizeof(views) / sizeof(views[0]))

static cJSON *resource_item(const char *key, const char *uri, const char *name,
			    const char *description)
{
	cJSON *o = cJSON_CreateObject();
	if (!cJSON_AddStringToObject(o, key, uri) || !cJSON_AddStringToObject(o, "name", name) ||
	    !cJSON_AddStringToObject(o, "description", description) ||
	    !cJSON_AddStringToObject(o, "mimeType", "text/plain")) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

cJSON *mcp_resources_templates(void)
{
	cJSON *list = cJSON_CreateArray();
	for (size_t i = 0; list && i < N_VIEWS; i++) {
		char uri[128], name[64];
		snprintf(uri, sizeof(uri), URI_PREFIX "{name}/%s", views[i].file);
		snprintf(name, sizeof(name), "context %s", views[i].file);
		cJSON *o = resource_item("uriTemplate", uri, name, views[i].what);
		if (!o || !cJSON_AddItemToArray(list, o)) {
			cJSON_Delete(o);
			cJSON_Delete(list);
			list = NULL;
		}
	}
	return list;
}

/* A context name as a URI segment: unreserved bytes stay, others are %XX. */
static void uri_of(const char *name, const char *file, char *out, size_t outlen)
{
	size_t o = (size_t)snprintf(out, outlen, URI_PREFIX);
	for (const unsigned char *p = (const unsigned char *)name; *p && o + 4 < outlen; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p))
			out[o++] = (char)*p;
		else
			o += (size_t)snprintf(out + o, outlen - o, "%%%02X", *p);
	}
	snprintf(out + o, outlen - o, "/%s", file);
}

int mcp_resources_list(struct mcp_req *rq, cJSON **ret)
{
	/* Pages of RESOURCES_PAGE contexts; the cursor is the name listed last
	 * (the list is sorted by name), so creations meanwhile shift nothing. */
	const char *cursor = rq->cursor;
	struct store_entry *e;
	size_t n, done = 0, i = 0;
	int r = store_list(rq->sh->st, &e, &n);
	if (r < 0)
		return r;
	cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "resources");
	while (cursor && i < n && strcmp(e[i].name, cursor) <= 0)
		i++;
	for (; list && i < n && done < RESOURCES_PAGE; i++, done++)
		for (size_t v = 0; list && v < N_VIEWS; v++) {
			char uri[3 * STORE_NAME_MAX + 64], name[STORE_NAME_MAX + 16];
			uri_of(e[i].name, views[v].file, uri, sizeof(uri));
			snprintf(name, sizeof(name), "%s/%s", e[i].name, views[v].file);
			cJSON *item = resource_item("uri", uri, name, views[v].what);
			if (!item || !cJSON_AddItemToArray(list, item)) {
				cJSON_Delete(item);
				list = NULL;
			}
		}
	if (list && i < n && !cJSON_AddStringToObject(o, "nextCursor", e[i - 1].name))
		list = NULL;
	store_list_free(e, n);
	if (!list) {
		cJSON_Delete(o);
		return -ENOMEM;
	}
	*ret = o;
	return 0;
}

/* --- reading -------------------------------------------------------------------- */

int mcp_resources_turn_text(struct store *st, struct reply *t, struct buf *out)
{
	char chunk[16384];
	for (uint64_t off = 0; t;) {
		ssize_t n = reply_read(st, t, off, chunk, sizeof(chunk));
		if (n <= 0)
			return 0;
		int r = buf_append(out, chunk, (size_t)n);
		if (r < 0)
			return r;
		off += (uint64_t)n;
	}
	return 0;
}

int mcp_resources_render(struct store *st, uint64_t id, int kind, struct buf *out)
{
	if (kind >= 0)
		return context_render(st, id, (enum view_kind)kind, out);
	struct reply *t = NULL;
	int r = context_output(st, id, &t);
	if (r == 0)
		r = mcp_resources_turn_text(st, t, out);
	reply_unref(st, t);
	return r;
}

int mcp_resources_read(struct mcp_req *rq, const char *uri, cJSON **ret, char *why, size_t whylen)
{
	const char *seg = uri + strlen(URI_PREFIX), *slash = strrchr(uri, '/');
	char name[STORE_NAME_MAX + 1], problem[256];
	const struct view *v = NULL;
	uint64_t id;
	snprintf(why, whylen, "Resource not found: '%.300s'", uri);
	if (strncmp(uri, URI_PREFIX, strlen(URI_PREFIX)) != 0 || slash < seg)
		return -ENOENT;
	for (size_t i = 0; i < N_VIEWS; i++)
		if (!strcmp(slash + 1, views[i].file))
			v = &views[i];
	if (!v ||
	    shim_parse_name(seg, (size_t)(slash - seg), name, sizeof(name), problem,
			    sizeof(problem)) < 0 ||
	    store_lookup(rq->sh->st, name, &id) < 0)
		return -ENOENT;
	struct buf b;
	buf_init(&b, SHIM_VIEWS_MAX);
	int r = mcp_resources_render(rq->sh->st, id, v->kind, &b);
	if (r == 0 && buf_append(&b, "", 1) < 0) /* NUL-terminated for cJSON */
		r = -ENOMEM;
	cJSON *o = cJSON_CreateObject(), *contents = cJSON_AddArrayToObject(o, "contents");
	cJSON *item = cJSON_CreateObject();
	if (r < 0 || !contents || !cJSON_AddStringToObject(item, "uri", uri) ||
	    !cJSON_AddStringToObject(item, "mimeType", "text/plain") ||
	    !cJSON_AddStringToObject(item, "text", b.data ? b.data : "") ||
	    !cJSON_AddItemToArray(contents, item)) {
		cJSON_Delete(item);
		cJSON_Delete(o);
		buf_done(&b);
		return r < 0 ? r : -ENOMEM;
	}
	buf_done(&b);
	*ret = o;
	return 0;
}
