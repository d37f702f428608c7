/* shim_route.c — the routes of CONTRACT §7 and their JSON handlers.
 *
 * One table lists every (resource, method) pair; a path that names no
 * resource is 404, a resource without the method is 405 with the Allow header
 * built from the same table.  Paths are matched before any decoding, then the
 * one name segment is percent-decoded strictly (shim_parse_name, shim_parse.c).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "mcpfs/ctl.h"
#include "mcpfs/log.h"
#include "mcpfs/utf8.h"
#include "mcp_impl.h"
#include "shim_impl.h"

#define ALLOW_MAX 64
#define SHIM_USAGE_MAX (64u << 20) /* bytes of GET /v1/usage's rendering */

/* clang-format off */
enum resource { R_HEALTH, R_CONTEXTS, R_CONTEXT, R_MESSAGES, R_OUTPUT, R_HISTORY, R_TRANSCRIPT,
		R_CANCEL, R_THINKING, R_CTL, R_MCP, R_USAGE };

/* The path after /v1/contexts/NAME/, per resource below a context. */
static const char *const sub_path[] = {
	[R_MESSAGES] = "messages", [R_OUTPUT] = "output", [R_HISTORY] = "history",
	[R_TRANSCRIPT] = "transcript", [R_CANCEL] = "cancel", [R_THINKING] = "thinking",
	[R_CTL] = "ctl",
};

struct shim_route {
	enum resource res;
	const char *method;
	shim_handler_fn *run;
};

static shim_handler_fn shim_get_health, shim_get_contexts, shim_post_contexts, shim_get_context,
	shim_patch_context, shim_delete_context, shim_post_messages, shim_get_output,
	shim_get_history, shim_get_transcript, shim_post_cancel, shim_get_thinking,
	shim_get_usage, shim_post_ctl;

static const struct shim_route routes[] = {
	{R_HEALTH, "GET", shim_get_health},
	{R_CONTEXTS, "GET", shim_get_contexts},
	{R_CONTEXTS, "POST", shim_post_contexts},
	{R_CONTEXT, "GET", shim_get_context},
	{R_CONTEXT, "PATCH", shim_patch_context},
	{R_CONTEXT, "DELETE", shim_delete_context},
	{R_MESSAGES, "POST", shim_post_messages},
	{R_OUTPUT, "GET", shim_get_output},
	{R_HISTORY, "GET", shim_get_history},
	{R_TRANSCRIPT, "GET", shim_get_transcript},
	{R_CANCEL, "POST", shim_post_cancel},
	{R_THINKING, "GET", shim_get_thinking},
	{R_CTL, "POST", shim_post_ctl},
	{R_MCP, "POST", mcp_post},	/* src/net/mcp.c; no GET stream: 405 */
	{R_MCP, "DELETE", mcp_delete},
	{R_USAGE, "GET", shim_get_usage},
};
/* clang-format on */
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

/* --- paths and names ------------------------------------------------------- */

int shim_route_parse_path(const char *url, int *res, const char **seg, size_t *seg_len)
{
	static const char prefix[] = "/v1/contexts/";
	*seg = NULL;
	*seg_len = 0;
	if (!strcmp(url, "/mcp") || !strcmp(url, "/v1/usage")) {
		*res = !strcmp(url, "/mcp") ? R_MCP : R_USAGE;
		return 0;
	}
	if (!strcmp(url, "/v1/health") || !strcmp(url, "/v1/contexts")) {
		*res = !strcmp(url, "/v1/health") ? R_HEALTH : R_CONTEXTS;
		return 0;
	}
	if (strncmp(url, prefix, sizeof(prefix) - 1) != 0)
		return -ENOENT;
	const char *s = url + sizeof(prefix) - 1, *slash = strchr(s, '/');
	const char *sub = slash ? slash + 1 : NULL; /* NULL: the context itself */
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	if (n == 0)
		return -ENOENT;
	for (int r = R_CONTEXT; r <= R_CTL; r++) {
		if (r == R_CONTEXT ? sub != NULL : !sub || strcmp(sub, sub_path[r]) != 0)
			continue;
		*res = r;
		*seg = s;
		*seg_len = n;
		return 0;
	}
	return -ENOENT;
}

static void allow_list(int res, char *out, size_t outlen)
{
	out[0] = '\0';
	for (size_t i = 0; i < N_ROUTES; i++)
		if ((int)routes[i].res == res) {
			size_t used = strlen(out);
			snprintf(out + used, outlen - used, "%s%s", used ? ", " : "",
				 routes[i].method);
		}
}

enum MHD_Result shim_route_find(struct shim *sh, struct shim_request *rq, struct MHD_Connection *c,
				const char *url, const char *method, bool *refused)
{
	int res;
	const char *seg;
	size_t seg_len;
	char why[256];
	*refused = true;
	if (shim_route_parse_path(url, &res, &seg, &seg_len) < 0)
		return shim_reply_error(c, MHD_HTTP_NOT_FOUND,
					"no such resource (see doc/http-api.md)");
	for (size_t i = 0; i < N_ROUTES && !rq->route; i++)
		if ((int)routes[i].res == res && !strcmp(routes[i].method, method))
			rq->route = &routes[i];
	if (!rq->route) {
		char allow[ALLOW_MAX];
		allow_list(res, allow, sizeof(allow));
		return shim_reply_not_allowed(c, allow);
	}
	if (seg) {
		int r = shim_parse_name(seg, seg_len, rq->name, sizeof(rq->name), why, sizeof(why));
		if (r < 0)
			return shim_reply_errno(c, r, why);
		if (store_lookup(sh->st, rq->name, &rq->id) < 0)
			return shim_reply_error(c, MHD_HTTP_NOT_FOUND, "no context named '%s'",
						rq->name);
	}
	*refused = false;
	return MHD_YES;
}

/* What a message's body may carry besides its text: attachments, up to the
 * shim's ceiling (SHIM_BODY_CEILING bounds every body). */
#define SHIM_ATTACH_BODY SHIM_BODY_CEILING

size_t shim_route_body_max(struct shim *sh, const struct shim_request *rq)
{
	/* A JSON string may take more bytes than its text (escapes): allow twice
	 * the text limit and some room for the rest of the object; the core
	 * enforces the exact limit on the decoded text (413 as well). */
	struct context_info ci;
	switch (rq->route->res) {
	case R_MESSAGES:
		if (context_info(sh->st, rq->id, &ci) == 0)
			return 2 * (size_t)ci.max_input_bytes + SHIM_JSON_SLACK + SHIM_ATTACH_BODY;
		return 2 * (size_t)(1u << 20) + SHIM_JSON_SLACK + SHIM_ATTACH_BODY;
	case R_MCP:
		return MCP_BODY_MAX;
	case R_CONTEXTS:
	case R_CONTEXT:
		return 2 * (size_t)SETTINGS_SYSTEM_MAX + SHIM_JSON_SLACK;
	default:
		return SHIM_JSON_SLACK; /* a body is ignored; it must still be small */
	}
}

enum MHD_Result shim_route_run(struct shim *sh, struct shim_request *rq, struct MHD_Connection *c)
{
	return rq->route->run(sh, rq, c);
}

/* The body as a JSON object with only the given keys; an empty body is {} when
 * optional.  NULL when refused, with the 400 queued in *ret. */
static cJSON *body_object(struct shim_request *rq, struct MHD_Connection *c, bool optional,
			  const char *const *keys, enum MHD_Result *ret)
{
	char why[128];
	cJSON *o = NULL;
	*ret = MHD_NO; /* out of memory, unless a reply is queued below */
	int r = shim_parse_body(rq->body.data ? rq->body.data : "", rq->body.len, optional, keys,
				&o, why, sizeof(why));
	if (r == -ENOMEM)
		*ret = MHD_NO;
	else if (r < 0)
		*ret = shim_reply_error(c, MHD_HTTP_BAD_REQUEST, "%s", why);
	return o;
}

static bool wants_sse(struct MHD_Connection *c)
{
	const char *accept =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
	return accept && strcasestr(accept, "text/event-stream");
}

/* --- handlers -------------------------------------------------------------------------- */

static enum MHD_Result shim_get_health(struct shim *sh, struct shim_request *rq,
				       struct MHD_Connection *c)
{
	cJSON *o = cJSON_CreateObject();
	if (o && (!cJSON_AddStringToObject(o, "status", "ok") ||
		  !cJSON_AddStringToObject(o, "version", MCPFS_VERSION))) {
		cJSON_Delete(o);
		o = NULL;
	}
	return shim_reply_json(c, MHD_HTTP_OK, o);
}

/* The first line of `status`: the one word a listing shows (without loading
 * the context: a listing opens no journal). */
static void status_word(struct shim *sh, uint64_t id, char *out, size_t outlen)
{
	if (context_status_word(sh->st, id, out, outlen) < 0)
		snprintf(out, outlen, "error");
}

static enum MHD_Result shim_get_contexts(struct shim *sh, struct shim_request *rq,
					 struct MHD_Connection *c)
{
	struct store_entry *e;
	size_t n;
	struct shim_filter f;
	char why[256];
	if (shim_meta_filter_parse(c, &f, why, sizeof(why)) < 0)
		return shim_reply_error(c, MHD_HTTP_BAD_REQUEST, "%s", why);
	int r = store_list(sh->st, &e, &n);
	if (r < 0) {
		shim_meta_filter_done(&f);
		return shim_reply_errno(c, r, "cannot list the contexts");
	}
	cJSON *o = cJSON_CreateObject(), *list = o ? cJSON_AddArrayToObject(o, "contexts") : NULL;
	for (size_t i = 0; list && i < n; i++) {
		if (!shim_meta_filter_match(sh, &f, e[i].id))
			continue;
		char word[32];
		status_word(sh, e[i].id, word, sizeof(word));
		cJSON *item = cJSON_CreateObject();
		if (!item || !cJSON_AddStringToObject(item, "name", e[i].name) ||
		    !cJSON_AddStringToObject(item, "status", word) ||
		    !cJSON_AddItemToArray(list, item)) {
			cJSON_Delete(item);
			list = NULL;
		}
	}
	store_list_free(e, n);
	shim_meta_filter_done(&f);
	if (!list) {
		cJSON_Delete(o);
		o = NULL;
	}
	return shim_reply_json(c, MHD_HTTP_OK, o);
}

/* A name for a context created without one: "ctx-" and 8 random hex digits. */
static int create_unnamed(struct shim *sh, char *name, size_t len, uint64_t *id)
{
	int r = -EEXIST;
	for (int i = 0; i < 16 && r == -EEXIST; i++) {
		uint32_t x;
		if (getrandom(&x, sizeof(x), 0) != sizeof(x))
			return -EIO;
		snprintf(name, len, "ctx-%08x", (unsigned)x);
		r = store_create(sh->st, name, id);
	}
	return r;
}

static enum MHD_Result shim_post_contexts(struct shim *sh, struct shim_request *rq,
					  struct MHD_Connection *c)
{
	static const char *const keys[] = {"name",   "system", "model", "config",
					   "schema", "meta",   NULL};
	enum MHD_Result ret;
	cJSON *o = body_object(rq, c, true, keys, &ret);
	if (!o)
		return ret;
	const cJSON *jname = cJSON_GetObjectItemCaseSensitive(o, "name");
	char name[STORE_NAME_MAX + 1], why[512] = "";
	uint64_t id;
	int r;
	if (jname && !cJSON_IsString(jname)) {
		r = -EINVAL;
		snprintf(why, sizeof(why), "name must be a string");
	} else if (jname) {
		snprintf(name, sizeof(name), "%s", jname->valuestring);
		r = strlen(jname->valuestring) > STORE_NAME_MAX ? -ENAMETOOLONG
								: store_create(sh->st, name, &id);
		if (r == -EEXIST)
			snprintf(why, sizeof(why), "a context named '%s' exists", name);
		else if (r == -EINVAL || r == -ENAMETOOLONG)
			shim_parse_name_problem(why, sizeof(why));
	} else {
		r = create_unnamed(sh, name, sizeof(name), &id);
	}
	/* The settings go in after the create; if they are refused, the context
	 * goes again, so a 400 leaves nothing behind. */
	if (r == 0 && o->child &&
	    ((r = shim_meta_check(sh, id, o, why, sizeof(why))) < 0 ||
	     (r = context_patch(sh->st, id, o, why, sizeof(why))) < 0 ||
	     (r = shim_meta_apply(sh, id, o, why, sizeof(why))) < 0))
		store_delete(sh->st, name);
	cJSON_Delete(o);
	if (r < 0)
		return shim_reply_errno(c, r, why);
	cJSON *res = cJSON_CreateObject();
	if (res && !cJSON_AddStringToObject(res, "name", name)) {
		cJSON_Delete(res);
		res = NULL;
	}
	return shim_reply_json(c, MHD_HTTP_CREATED, res);
}

/* Renderings are shared snapshots, one copy for all their readers (shim_view.c). */
static enum MHD_Result reply_view(struct shim *sh, uint64_t id, enum view_kind kind,
				  struct MHD_Connection *c)
{
	return shim_view_reply(sh, id, kind, c);
}

static enum MHD_Result shim_get_context(struct shim *sh, struct shim_request *rq,
					struct MHD_Connection *c)
{
	return reply_view(sh, rq->id, VIEW_INFO_JSON, c);
}

static enum MHD_Result shim_patch_context(struct shim *sh, struct shim_request *rq,
					  struct MHD_Connection *c)
{
	static const char *const keys[] = {"system", "model", "config", "schema", "meta", NULL};
	enum MHD_Result ret;
	cJSON *o = body_object(rq, c, false, keys, &ret);
	if (!o)
		return ret;
	char why[512] = "";
	/* meta is checked first and saved last: a refused patch changes nothing. */
	int r = shim_meta_check(sh, rq->id, o, why, sizeof(why));
	if (r == 0)
		r = context_patch(sh->st, rq->id, o, why, sizeof(why));
	if (r == 0)
		r = shim_meta_apply(sh, rq->id, o, why, sizeof(why));
	cJSON_Delete(o);
	if (r < 0)
		return shim_reply_errno(c, r, why);
	return reply_view(sh, rq->id, VIEW_INFO_JSON, c);
}

static enum MHD_Result shim_delete_context(struct shim *sh, struct shim_request *rq,
					   struct MHD_Connection *c)
{
	int r = store_delete(sh->st, rq->name);
	if (r < 0)
		return shim_reply_errno(c, r, r == -ENOENT ? "no such context" : NULL);
	return shim_reply_empty(c, MHD_HTTP_NO_CONTENT);
}

/* context_send, done in its two steps so that the stream follows exactly
 * this message's turn: a message written through the mount a moment later
 * becomes the newest turn, and context_output would return that one. */
static int send_message(struct shim *sh, uint64_t id, const char *text, struct reply **turn,
			uint64_t *turn_no, bool *over_limit, char *why, size_t whylen)
{
	struct reply *draft = NULL;
	int r = context_spend_check(sh->st, id, why, whylen);
	if (r == -EDQUOT) {
		*over_limit = true;
		context_refuse(sh->st, id, why);
		return -EDQUOT;
	}
	if (r == 0)
		r = context_stage(sh->st, id, &draft, text, strlen(text), why, whylen);
	if (r == 0 && !draft) {
		snprintf(why, whylen, "the message is empty; nothing was sent");
		return -EINVAL;
	}
	if (r < 0)
		return r;
	*turn_no = reply_turn(draft);
	if (turn)
		*turn = reply_ref(sh->st, draft);
	context_submit(sh->st, draft);
	return 0;
}

static enum MHD_Result shim_post_messages(struct shim *sh, struct shim_request *rq,
					  struct MHD_Connection *c)
{
	static const char *const keys[] = {"content", "attachments", NULL};
	enum MHD_Result ret;
	if (wants_sse(c) && !shim_conn_stream_room(sh))
		return shim_reply_busy(c, "too many streams are open; nothing was sent");
	cJSON *o = body_object(rq, c, false, keys, &ret);
	if (!o)
		return ret;
	const cJSON *content = cJSON_GetObjectItemCaseSensitive(o, "content");
	bool sse = wants_sse(c);
	struct reply *t = NULL;
	char why[512] = "";
	uint64_t turn_no = 0;
	bool over_limit = false;
	int r = -EINVAL;
	const cJSON *att = cJSON_GetObjectItemCaseSensitive(o, "attachments");
	size_t added = 0;
	unsigned st = 0;
	if (!cJSON_IsString(content))
		snprintf(why, sizeof(why), "content must be a string");
	else if ((r = shim_attach_add(sh, rq->id, att, &added, &st, why, sizeof(why))) == 0)
		r = send_message(sh, rq->id, content->valuestring, sse ? &t : NULL, &turn_no,
				 &over_limit, why, sizeof(why));
	else
		added = 0; /* refused: nothing was kept */
	if (r < 0 && added)
		shim_attach_undo(sh, rq->id, att, added);
	cJSON_Delete(o);
	if (r < 0 && r != -ENOENT && r != -EINVAL) {
		/* Refused like a write of `input`: logged as the mount logs it, and
		 * in the context's status (last_refused) already. */
		char quoted[STORE_NAME_MAX * 4 + 8];
		log_quote(quoted, sizeof(quoted), rq->name, strlen(rq->name));
		log_warn("http: context '%s': refused a message: %s", quoted, why);
	}
	/* A spending limit is not a full disk (the table's EDQUOT): 402. */
	if (over_limit)
		return shim_reply_error(c, MHD_HTTP_PAYMENT_REQUIRED, "%s", why);
	if (r < 0 && st)
		return shim_reply_error(c, st, "%s", why);
	if (r < 0)
		return shim_reply_errno(c, r, why);
	if (sse)
		return shim_stream_reply(sh, c, t, true);
	cJSON *res = cJSON_CreateObject();
	if (res && !cJSON_AddNumberToObject(res, "turn", (double)turn_no)) {
		cJSON_Delete(res);
		res = NULL;
	}
	return shim_reply_json(c, MHD_HTTP_ACCEPTED, res);
}

/* GET /v1/usage: `.usage` as JSON (spend.c). */
static enum MHD_Result shim_get_usage(struct shim *sh, struct shim_request *rq,
				      struct MHD_Connection *c)
{
	struct buf b;
	buf_init(&b, SHIM_USAGE_MAX);
	int r = store_render_usage_json(sh->st, &b);
	cJSON *o = r == 0 ? cJSON_ParseWithLength(b.data, b.len) : NULL;
	buf_done(&b);
	if (r < 0)
		return shim_reply_errno(c, r, "cannot render the usage");
	return shim_reply_json(c, MHD_HTTP_OK, o);
}

/* The reply of the context's current turn as a stream: its text (output), or
 * its thinking. */
static enum MHD_Result get_stream(struct shim *sh, struct shim_request *rq,
				  struct MHD_Connection *c, bool thinking)
{
	struct reply *t = NULL;
	if (!shim_conn_stream_room(sh))
		return shim_reply_busy(c, "too many streams are open");
	int r = context_output(sh->st, rq->id, &t);
	if (r < 0)
		return shim_reply_errno(c, r, "no such context");
	return thinking ? shim_stream_thinking(sh, c, t)
			: shim_stream_reply(sh, c, t, wants_sse(c));
}

static enum MHD_Result shim_get_output(struct shim *sh, struct shim_request *rq,
				       struct MHD_Connection *c)
{
	return get_stream(sh, rq, c, false);
}

static enum MHD_Result shim_get_thinking(struct shim *sh, struct shim_request *rq,
					 struct MHD_Connection *c)
{
	return get_stream(sh, rq, c, true);
}

static enum MHD_Result shim_get_history(struct shim *sh, struct shim_request *rq,
					struct MHD_Connection *c)
{
	return reply_view(sh, rq->id, VIEW_HISTORY_JSON, c);
}

static enum MHD_Result shim_get_transcript(struct shim *sh, struct shim_request *rq,
					   struct MHD_Connection *c)
{
	return reply_view(sh, rq->id, VIEW_TRANSCRIPT_JSON, c);
}

static enum MHD_Result shim_post_cancel(struct shim *sh, struct shim_request *rq,
					struct MHD_Connection *c)
{
	const char *done = NULL;
	char why[256] = "";
	int r = ctl_run(sh->st, rq->id, "cancel", 6, &done, why, sizeof(why));
	if (r < 0)
		return shim_reply_errno(c, r, "no such context");
	if (r == 0) /* "nothing to cancel: ...", as the ctl file and the MCP tool say */
		return shim_reply_error(c, MHD_HTTP_CONFLICT, "%s", done);
	cJSON *res = cJSON_CreateObject();
	if (res && !cJSON_AddTrueToObject(res, "cancelled")) {
		cJSON_Delete(res);
		res = NULL;
	}
	return shim_reply_json(c, MHD_HTTP_OK, res);
}

/* A line of the ctl file, {"command":"fork notes-2 3"}: every command, with its
 * words and errors, as `echo … > NAME/ctl` runs it (ctl.h). */
static enum MHD_Result shim_post_ctl(struct shim *sh, struct shim_request *rq,
				     struct MHD_Connection *c)
{
	static const char *const keys[] = {"command", NULL};
	enum MHD_Result ret;
	cJSON *o = body_object(rq, c, false, keys, &ret);
	if (!o)
		return ret;
	const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(o, "command");
	const char *done = NULL;
	char why[512] = "command must be a string: a line of the ctl file";
	int r = cJSON_IsString(cmd) ? ctl_run(sh->st, rq->id, cmd->valuestring,
					      strlen(cmd->valuestring), &done, why, sizeof(why))
				    : -EINVAL;
	cJSON_Delete(o);
	if (r < 0)
		return shim_reply_errno(c, r, r == -ENOENT ? "no such context" : why);
	cJSON *res = cJSON_CreateObject();
	if (res && !cJSON_AddStringToObject(res, "done", done)) {
		cJSON_Delete(res);
		res = NULL;
	}
	return shim_reply_json(c, MHD_HTTP_OK, res);
}
