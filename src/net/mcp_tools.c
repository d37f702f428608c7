/* mcp_tools.c — the MCP endpoint's six tools, all through the core API, as
 * the shim's routes use it (the resources are in mcp_resources.c).
 *
 * A tool's failure (no such context, a message refused, a failed turn) is a
 * tool result with isError and the words `status` shows for it, so the model
 * can read and act on it; only a call that names no tool is a protocol error.
 * send_message answers with an SSE stream that follows its own turn (never
 * the context's newest: a message written through the mount meanwhile is
 * another turn): the reply's text pieces as notifications/progress when the
 * client gave a progress token, then the result.  The stream's end without
 * the result — the client closed it — cancels that turn, as does 2025-11-25's
 * notifications/cancelled naming the request.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/ctl.h"
#include "mcpfs/log.h"
#include "mcpfs/sse.h"
#include "mcpfs/meta.h"
#include "mcp_impl.h"

#define STATUS_MAX (64u << 10) /* bytes of a rendered status */

struct mcp_flight {
	struct mcp *m;
	struct store *st;
	cJSON *id;     /* the request's id (a copy) */
	char *id_text; /* the same, printed: what notifications/cancelled names */
	cJSON *token;  /* the progress token (a copy), or NULL */
	bool modern;
	char session[MCP_SESSION_ID_LEN + 1];
	struct reply *t;		/* the stream's reference, valid while linked */
	uint64_t sent;			/* bytes of text reported: the progress value */
	bool cancelled;			/* by notifications/cancelled; under m->lock */
	struct mcp_flight *prev, *next; /* m->flights; under m->lock */
};

/* --- the tables ----------------------------------------------------------------- */

typedef int tool_fn(struct mcp_req *rq, const cJSON *args, cJSON **ret, enum MHD_Result *mhd);
static tool_fn tool_list, tool_create, tool_send, tool_history, tool_ctl, tool_delete;

/* clang-format off */
static const struct tool {
	const char *name, *title, *description, *schema;
	bool read_only, destructive, idempotent, open_world;
	tool_fn *run;
} tools[] = {
	{"list_contexts", "List contexts", "Lists every context (a durable Claude conversation) "
	 "with the first word of its status and its metadata (the user.* attributes of its "
	 "directory).",
	 "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}",
	 true, false, true, false, tool_list},
	{"create_context", "Create a context", "Creates a context, optionally with a system "
	 "prompt and a model; the other settings are the defaults.",
	 "{\"type\":\"object\",\"properties\":{"
	 "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":255,\"description\":"
	 "\"1-255 bytes of UTF-8, no '/', not starting with '.'\"},"
	 "\"system\":{\"type\":\"string\",\"description\":\"the system prompt\"},"
	 "\"model\":{\"type\":\"string\",\"description\":\"a model id\"}},"
	 "\"required\":[\"name\"],\"additionalProperties\":false}",
	 false, false, false, false, tool_create},
	{"send_message", "Send a message", "Sends a message to a context and returns Claude's "
	 "reply and the token usage. With a progress token the reply's text also arrives "
	 "piece by piece as progress notifications.",
	 "{\"type\":\"object\",\"properties\":{"
	 "\"context\":{\"type\":\"string\",\"description\":\"the context's name\"},"
	 "\"text\":{\"type\":\"string\",\"description\":\"the message\"}},"
	 "\"required\":[\"context\",\"text\"],\"additionalProperties\":false}",
	 false, false, false, true, tool_send},
	{"get_history", "Get the history", "Returns what the next call sends ahead of a new "
	 "message: the system prompt and the messages that fit, the pruned part marked.",
	 "{\"type\":\"object\",\"properties\":{"
	 "\"context\":{\"type\":\"string\",\"description\":\"the context's name\"}},"
	 "\"required\":[\"context\"],\"additionalProperties\":false}",
	 true, false, true, false, tool_history},
	{"ctl", "Control a context", "Runs a command of the context's ctl file: cancel (the "
	 "call in flight), clear (start an empty history), retry (the newest message again, "
	 "after its turn failed or to regenerate a complete reply), compact (fold every "
	 "exchange but the newest 2 into the summary; \"compact FOCUS TEXT\" says what to keep), "
	 "fork (a new context `name` with this one's settings and history, up to `turn` if "
	 "given), undo (take the newest complete exchange out of the history).",
	 "{\"type\":\"object\",\"properties\":{"
	 "\"context\":{\"type\":\"string\",\"description\":\"the context's name\"},"
	 "\"command\":{\"type\":\"string\",\"pattern\":"
	 "\"^(cancel|clear|retry|compact|fork|undo)( .*)?$\"},"
	 "\"name\":{\"type\":\"string\",\"description\":\"fork: the new context's name\"},"
	 "\"turn\":{\"type\":\"integer\",\"minimum\":0,\"description\":"
	 "\"fork: copy the history up to this turn (default: every complete exchange)\"}},"
	 "\"required\":[\"context\",\"command\"],\"additionalProperties\":false}",
	 false, true, false, false, tool_ctl},
	{"delete_context", "Delete a context", "Deletes a context and everything in it, "
	 "cancelling any call in flight.",
	 "{\"type\":\"object\",\"properties\":{"
	 "\"context\":{\"type\":\"string\",\"description\":\"the context's name\"}},"
	 "\"required\":[\"context\"],\"additionalProperties\":false}",
	 false, true, true, false, tool_delete},
};
/* clang-format on */
#define N_TOOLS (sizeof(tools) / sizeof(tools[0]))

/* --- lists ---------------------------------------------------------------------- */

static bool put(cJSON *o, const char *key, cJSON *item)
{
	if (o && item && cJSON_AddItemToObject(o, key, item))
		return true;
	cJSON_Delete(item);
	return false;
}

static cJSON *annotations(const struct tool *t)
{
	cJSON *a = cJSON_CreateObject();
	if (!cJSON_AddStringToObject(a, "title", t->title) ||
	    !cJSON_AddBoolToObject(a, "readOnlyHint", t->read_only) ||
	    !cJSON_AddBoolToObject(a, "destructiveHint", t->destructive) ||
	    !cJSON_AddBoolToObject(a, "idempotentHint", t->idempotent) ||
	    !cJSON_AddBoolToObject(a, "openWorldHint", t->open_world)) {
		cJSON_Delete(a);
		return NULL;
	}
	return a;
}

cJSON *mcp_tools_list(void)
{
	cJSON *list = cJSON_CreateArray();
	for (size_t i = 0; list && i < N_TOOLS; i++) {
		cJSON *o = cJSON_CreateObject();
		if (!cJSON_AddStringToObject(o, "name", tools[i].name) ||
		    !cJSON_AddStringToObject(o, "title", tools[i].title) ||
		    !cJSON_AddStringToObject(o, "description", tools[i].description) ||
		    !put(o, "inputSchema", cJSON_Parse(tools[i].schema)) ||
		    !put(o, "annotations", annotations(&tools[i])) ||
		    !cJSON_AddItemToArray(list, o)) {
			cJSON_Delete(o);
			cJSON_Delete(list);
			list = NULL;
		}
	}
	return list;
}

/* --- tool results and arguments -------------------------------------------------- */

/* A CallToolResult with one text block (and structured, consumed, may be NULL). */
static cJSON *result_new(const char *text, bool is_error, cJSON *structured)
{
	cJSON *o = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(o, "content");
	cJSON *item = cJSON_CreateObject();
	bool ok = cJSON_AddStringToObject(item, "type", "text") &&
		  cJSON_AddStringToObject(item, "text", text);
	if (ok && content && cJSON_AddItemToArray(content, item))
		item = NULL; /* content's now */
	else
		ok = false;
	if (structured && !(ok && put(o, "structuredContent", structured))) {
		if (ok)
			structured = NULL; /* put freed it */
		ok = false;
	}
	if (!ok || !cJSON_AddBoolToObject(o, "isError", is_error)) {
		cJSON_Delete(item);
		cJSON_Delete(structured);
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static int fail(cJSON **ret, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(cJSON **ret, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	*ret = result_new(msg, true, NULL);
	return *ret ? 0 : -ENOMEM;
}

/* The string argument key; required ones must be there.  NULL when absent
 * or refused (*bad set, with the message in *ret). */
static const char *arg(const cJSON *args, const char *key, bool required, cJSON **ret, int *bad)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, key);
	if (*bad || (!v && !required))
		return NULL;
	if (cJSON_IsString(v))
		return v->valuestring;
	*bad = fail(ret, "argument '%s' must be a string", key) < 0 ? -ENOMEM : 1;
	return NULL;
}

/* Refuses unknown arguments and finds the context.  0, 1 (*ret says why). */
static int context_of(struct mcp_req *rq, const cJSON *args, const char *name,
		      const char *const *known, uint64_t *id, cJSON **ret)
{
	for (const cJSON *a = args ? args->child : NULL; a; a = a->next) {
		bool ok = false;
		for (size_t i = 0; known[i]; i++)
			ok = ok || !strcmp(a->string, known[i]);
		if (!ok)
			return fail(ret, "unknown argument '%.200s'", a->string) < 0 ? -ENOMEM : 1;
	}
	if (name && store_lookup(rq->sh->st, name, id) < 0)
		return fail(ret, "no context named '%.255s'", name) < 0 ? -ENOMEM : 1;
	return 0;
}

static int view_result(struct mcp_req *rq, uint64_t id, int kind, cJSON **ret)
{
	struct buf b;
	buf_init(&b, SHIM_VIEWS_MAX);
	int r = mcp_resources_render(rq->sh->st, id, kind, &b);
	if (r == 0)
		r = buf_append(&b, "", 1);
	if (r == 0)
		*ret = result_new(b.data, false, NULL);
	buf_done(&b);
	if (r == -ENOENT)
		return fail(ret, "%s", "the context was deleted meanwhile");
	return r < 0 ? r : *ret ? 0 : -ENOMEM;
}

/* --- the tools ------------------------------------------------------------------ */

/* The first line of `status` without loading the context (a listing opens no
 * journal), as GET /v1/contexts. */
static void status_word(struct store *st, uint64_t id, char *out, size_t outlen)
{
	if (context_status_word(st, id, out, outlen) < 0)
		snprintf(out, outlen, "error");
}

static int tool_list(struct mcp_req *rq, const cJSON *args, cJSON **ret, enum MHD_Result *mhd)
{
	static const char *const known[] = {NULL};
	int r = context_of(rq, args, NULL, known, NULL, ret);
	struct store_entry *e;
	size_t n;
	if (r != 0 || (r = store_list(rq->sh->st, &e, &n)) < 0)
		return r;
	cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "contexts");
	for (size_t i = 0; list && i < n; i++) {
		char word[32];
		status_word(rq->sh->st, e[i].id, word, sizeof(word));
		cJSON *item = cJSON_CreateObject(), *meta = NULL;
		/* user metadata, from the store's light part: no journal read */
		if (context_meta_json(rq->sh->st, e[i].id, &meta) == -ENOMEM ||
		    !cJSON_AddStringToObject(item, "name", e[i].name) ||
		    !cJSON_AddStringToObject(item, "status", word) ||
		    !cJSON_AddItemToObject(item, "meta", meta ? meta : cJSON_CreateObject()) ||
		    !cJSON_AddItemToArray(list, item)) {
			cJSON_Delete(item);
			list = NULL;
		}
	}
	store_list_free(e, n);
	char *text = list ? cJSON_PrintUnformatted(o) : NULL;
	*ret = text ? result_new(text, false, o) : NULL;
	if (!text)
		cJSON_Delete(o);
	free(text);
	return *ret ? 0 : -ENOMEM;
}

static int tool_create(struct mcp_req *rq, const cJSON *args, cJSON **ret, enum MHD_Result *mhd)
{
	static const char *const known[] = {"name", "system", "model", NULL};
	int bad = 0;
	const char *name = arg(args, "name", true, ret, &bad);
	const char *system = arg(args, "system", false, ret, &bad);
	const char *model = arg(args, "model", false, ret, &bad);
	int r = bad ? (bad < 0 ? bad : 0) : context_of(rq, args, NULL, known, NULL, ret);
	if (bad || r != 0)
		return r < 0 ? r : 0;
	char why[512] = "";
	uint64_t id;
	r = store_create(rq->sh->st, name, &id);
	if (r == -EEXIST)
		return fail(ret, "a context named '%.255s' exists", name);
	if (r == -EINVAL || r == -ENAMETOOLONG) {
		const char *rule = NULL;
		store_name_check_why(name, strlen(name), &rule);
		snprintf(why, sizeof(why), "invalid context name: %s", rule ? rule : "refused");
		return fail(ret, "%s", why);
	}
	if (r < 0)
		return fail(ret, "cannot create the context: %s", strerror(-r));
	cJSON *patch = cJSON_CreateObject();
	if ((system && !cJSON_AddStringToObject(patch, "system", system)) ||
	    (model && !cJSON_AddStringToObject(patch, "model", model)))
		r = -ENOMEM;
	else if (system || model)
		r = context_patch(rq->sh->st, id, patch, why, sizeof(why));
	cJSON_Delete(patch);
	if (r < 0) {
		store_delete(rq->sh->st, name); /* all or nothing */
		return r == -ENOMEM ? r : fail(ret, "%s", why);
	}
	snprintf(why, sizeof(why), "created context '%.255s'", name);
	*ret = result_new(why, false, NULL);
	return *ret ? 0 : -ENOMEM;
}

static int tool_history(struct mcp_req *rq, const cJSON *args, cJSON **ret, enum MHD_Result *mhd)
{
	static const char *const known[] = {"context", NULL};
	int bad = 0;
	uint64_t id;
	const char *name = arg(args, "context", true, ret, &bad);
	int r = bad ? 0 : context_of(rq, args, name, known, &id, ret);
	if (bad || r != 0)
		return bad < 0 ? bad : r < 0 ? r : 0;
	return view_result(rq, id, VIEW_HISTORY, ret);
}

static int refuse(cJSON **ret, const char *msg)
{
	return fail(ret, "%s", msg) < 0 ? -ENOMEM : 1;
}

/* The ctl line of a command and fork's `name` and `turn` ("fork NAME TURN"):
 * *out is line, or cmd itself when it is no fork (compact's focus text rides
 * in it).  0, 1 with the tool's error result in *ret, -ENOMEM. */
static int ctl_line(const cJSON *args, const char *cmd, const char *fork_name, char *line, size_t n,
		    const char **out, cJSON **ret)
{
	const cJSON *turn = cJSON_GetObjectItemCaseSensitive(args, "turn");
	bool fork = !strcmp(cmd, "fork");
	if ((fork_name || turn) && !fork)
		return refuse(ret, "'name' and 'turn' go with the command fork only");
	if (fork && !fork_name)
		return refuse(ret, "fork needs 'name': the new context's name");
	if (turn && !(cJSON_IsNumber(turn) && turn->valuedouble >= 0 &&
		      turn->valuedouble <= 9007199254740992.0 &&
		      turn->valuedouble == (double)(uint64_t)turn->valuedouble))
		return refuse(ret, "'turn' must be a whole number from 0");
	*out = fork ? line : cmd;
	if (fork && turn)
		snprintf(line, n, "fork %s %llu", fork_name, (unsigned long long)turn->valuedouble);
	else if (fork)
		snprintf(line, n, "fork %s", fork_name);
	return 0;
}

static int tool_ctl(struct mcp_req *rq, const cJSON *args, cJSON **ret, enum MHD_Result *mhd)
{
	static const char *const known[] = {"context", "command", "name", "turn", NULL};
	int bad = 0;
	uint64_t id;
	const char *name = arg(args, "context", true, ret, &bad);
	const char *cmd = arg(args, "command", true, ret, &bad);
	const char *fork_name = arg(args, "name", false, ret, &bad);
	int r = bad ? 0 : context_of(rq, args, name, known, &id, ret);
	if (bad || r != 0)
		return bad < 0 ? bad : r < 0 ? r : 0;
	char why[512] = "", line[STORE_NAME_MAX * 2 + 64];
	const char *done = NULL, *run;
	if (fork_name && strlen(fork_name) > STORE_NAME_MAX)
		return fail(ret, "the name is longer than %d bytes", STORE_NAME_MAX);
	if ((r = ctl_line(args, cmd, fork_name, line, sizeof(line), &run, ret)) != 0)
		return r < 0 ? r : 0;
	r = ctl_run(rq->sh->st, id, run, strlen(run), &done, why, sizeof(why));
	if (r < 0)
		return fail(ret, "%s", why[0] ? why : strerror(-r));
	*ret = result_new(done, false, NULL);
	return *ret ? 0 : -ENOMEM;
}

static int tool_delete(struct mcp_req *rq, const cJSON *args, cJSON **ret, enum MHD_Result *mhd)
{
	static const char *const known[] = {"context", NULL};
	int bad = 0;
	uint64_t id;
	const char *name = arg(args, "context", true, ret, &bad);
	int r = bad ? 0 : context_of(rq, args, name, known, &id, ret);
	if (bad || r != 0)
		return bad < 0 ? bad : r < 0 ? r : 0;
	if (store_delete(rq->sh->st, name) < 0)
		return fail(ret, "no context named '%.255s'", name);
	char msg[STORE_NAME_MAX + 32];
	snprintf(msg, sizeof(msg), "deleted context '%s'", name);
	*ret = result_new(msg, false, NULL);
	return *ret ? 0 : -ENOMEM;
}

/* --- send_message's stream -------------------------------------------------------- */

static int put_message(struct buf *out, cJSON *msg)
{
	char *json = msg ? cJSON_PrintUnformatted(msg) : NULL;
	cJSON_Delete(msg);
	int r = json ? sse_write_event(out, NULL, json, strlen(json)) : -ENOMEM;
	free(json);
	return r;
}

static int on_flight_delta(void *arg, struct buf *out, const char *text, size_t n)
{
	struct mcp_flight *f = arg;
	f->sent += n;
	if (!f->token)
		return 0;
	cJSON *msg = cJSON_CreateObject(), *p = cJSON_AddObjectToObject(msg, "params");
	if (!cJSON_AddStringToObject(msg, "jsonrpc", "2.0") ||
	    !cJSON_AddStringToObject(msg, "method", "notifications/progress") ||
	    !put(p, "progressToken", cJSON_Duplicate(f->token, true)) ||
	    !cJSON_AddNumberToObject(p, "progress", (double)f->sent) ||
	    !cJSON_AddStringToObject(p, "message", text)) {
		cJSON_Delete(msg);
		return -ENOMEM;
	}
	return put_message(out, msg);
}

static cJSON *usage_json(const struct reply_outcome *oc)
{
	cJSON *u = cJSON_CreateObject();
	if (!cJSON_AddNumberToObject(u, "input_tokens", (double)oc->usage.input_tokens) ||
	    !cJSON_AddNumberToObject(u, "output_tokens", (double)oc->usage.output_tokens) ||
	    !cJSON_AddNumberToObject(u, "cache_creation_input_tokens",
				     (double)oc->usage.cache_creation_input_tokens) ||
	    !cJSON_AddNumberToObject(u, "cache_read_input_tokens",
				     (double)oc->usage.cache_read_input_tokens)) {
		cJSON_Delete(u);
		return NULL;
	}
	return u;
}

static cJSON *flight_result(struct mcp_flight *f, struct reply *t, bool complete)
{
	struct reply_outcome oc;
	reply_outcome(f->st, t, &oc);
	if (!complete) {
		/* The words `status` shows as last_error. */
		char msg[1200];
		snprintf(msg, sizeof(msg), "%s: %s", oc.error.type[0] ? oc.error.type : "api_error",
			 oc.error.message);
		return result_new(msg, true, NULL);
	}
	struct buf b;
	buf_init(&b, STORE_REPLY_MAX + 1);
	cJSON *s = cJSON_CreateObject(), *o = NULL;
	if (mcp_resources_turn_text(f->st, t, &b) == 0 && buf_append(&b, "", 1) == 0 &&
	    cJSON_AddStringToObject(s, "text", b.data) &&
	    cJSON_AddNumberToObject(s, "turn", (double)reply_turn(t)) &&
	    (oc.stop_reason[0] ? cJSON_AddStringToObject(s, "stop_reason", oc.stop_reason)
			       : cJSON_AddNullToObject(s, "stop_reason")) &&
	    put(s, "usage", usage_json(&oc)))
		o = result_new(b.data, false, s);
	else
		cJSON_Delete(s);
	buf_done(&b);
	return o;
}

static int on_flight_end(void *arg, struct buf *out, struct reply *t, bool complete)
{
	struct mcp_flight *f = arg;
	pthread_mutex_lock(&f->m->lock);
	bool cancelled = f->cancelled;
	pthread_mutex_unlock(&f->m->lock);
	/* A request the client cancelled gets no response (2025-11-25
	 * cancellation): the stream just ends. */
	if (cancelled && !complete)
		return 0;
	return put_message(out, mcp_rpc_response(f->id, f->modern, flight_result(f, t, complete)));
}

static void on_flight_closed(void *arg, struct reply *t, bool finished, bool stopping)
{
	struct mcp_flight *f = arg;
	struct mcp *m = f->m;
	pthread_mutex_lock(&m->lock);
	if (f->prev)
		f->prev->next = f->next;
	else if (m->flights == f)
		m->flights = f->next;
	if (f->next)
		f->next->prev = f->prev;
	pthread_mutex_unlock(&m->lock);
	/* Nobody can receive the result any more: the turn stops costing tokens. */
	if (t && !finished && !stopping && reply_cancel(f->st, t) == 1)
		log_debug("mcp: request %s closed early: turn %llu cancelled", f->id_text,
			  (unsigned long long)reply_turn(t));
	cJSON_Delete(f->id);
	cJSON_Delete(f->token);
	free(f->id_text);
	free(f);
}

static const struct shim_stream_fmt flight_fmt = {
    .delta = on_flight_delta, .end = on_flight_end, .closed = on_flight_closed};

void mcp_tools_flight_cancel(struct mcp *m, const char *session, const cJSON *request_id)
{
	char *id = request_id ? cJSON_PrintUnformatted(request_id) : NULL;
	struct reply *t = NULL;
	struct store *st = NULL;
	pthread_mutex_lock(&m->lock);
	for (struct mcp_flight *f = m->flights; id && f && !t; f = f->next)
		if (!strcmp(f->session, session) && !strcmp(f->id_text, id)) {
			f->cancelled = true;
			st = f->st;
			t = reply_ref(st, f->t);
		}
	pthread_mutex_unlock(&m->lock);
	if (t) {
		int r = reply_cancel(st, t);
		log_debug("mcp: request %s cancelled by the client%s", id,
			  r == 1 ? "" : " (its turn had ended)");
		reply_unref(st, t);
	}
	free(id);
}

static int tool_send(struct mcp_req *rq, const cJSON *args, cJSON **ret, enum MHD_Result *mhd)
{
	static const char *const known[] = {"context", "text", NULL};
	int bad = 0;
	uint64_t id;
	struct store *st = rq->sh->st;
	const char *name = arg(args, "context", true, ret, &bad);
	const char *text = arg(args, "text", true, ret, &bad);
	int r = bad ? 0 : context_of(rq, args, name, known, &id, ret);
	if (bad || r != 0)
		return bad < 0 ? bad : r < 0 ? r : 0;
	struct mcp_flight *f = calloc(1, sizeof(*f));
	if (!f || !(f->id = cJSON_Duplicate(rq->id, true)) ||
	    !(f->id_text = cJSON_PrintUnformatted(rq->id)) ||
	    (rq->progress && !(f->token = cJSON_Duplicate(rq->progress, true)))) {
		if (f) {
			cJSON_Delete(f->id);
			free(f->id_text);
		}
		free(f);
		return -ENOMEM;
	}
	char why[512] = "";
	struct reply *draft = NULL;
	f->m = rq->sh->mcp;
	f->st = st;
	f->modern = rq->modern;
	snprintf(f->session, sizeof(f->session), "%s", rq->session);
	r = context_spend_check(st, id, why, sizeof(why));
	if (r == -EDQUOT)
		context_refuse(st, id, why);
	if (r == 0)
		r = context_stage(st, id, &draft, text, strlen(text), why, sizeof(why));
	if (r < 0 || !draft) {
		on_flight_closed(f, NULL, true, true);
		return fail(ret, "%s", r < 0 ? why : "the message is empty; nothing was sent");
	}
	f->t = reply_ref(st, draft);
	pthread_mutex_lock(&f->m->lock);
	f->next = f->m->flights;
	if (f->next)
		f->next->prev = f;
	f->m->flights = f;
	pthread_mutex_unlock(&f->m->lock);
	context_submit(st, draft);
	*mhd = shim_stream_reply_fmt(rq->sh, rq->c, f->t, &flight_fmt, f);
	return 1;
}

/* --- dispatch --------------------------------------------------------------------- */

int mcp_tools_call(struct mcp_req *rq, const char *name, const cJSON *args, cJSON **ret,
		   enum MHD_Result *mhd)
{
	*ret = NULL;
	if (args && !cJSON_IsObject(args))
		return fail(ret, "%s", "arguments must be an object");
	for (size_t i = 0; i < N_TOOLS; i++)
		if (!strcmp(name, tools[i].name)) {
			int r = tools[i].run(rq, args, ret, mhd);
			return r == 1 ? 1 : r < 0 ? r : *ret ? 0 : -ENOMEM;
		}
	return -EINVAL;
}
