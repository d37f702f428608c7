/* mcp.c — the MCP endpoint of the shim: POST and DELETE /mcp (doc/mcp.md).
 *
 * One body is one JSON-RPC message: both protocol versions served here made a
 * batch (a JSON array) invalid, so it is refused with Invalid Request.  Which
 * version a message speaks is decided from the message itself:
 *   - `initialize` starts a 2025-11-25 session: its answer carries a fresh
 *     Mcp-Session-Id, which every later request of that client repeats;
 *   - a request whose params._meta names a protocol version, or that carries
 *     MCP-Protocol-Version: 2026-07-28 without a session, is served
 *     statelessly by 2026-07-28's rules: the MCP-Protocol-Version, Mcp-Method
 *     and Mcp-Name headers must be there and agree with the body (400,
 *     HeaderMismatch), else a proxy routing on the headers could be steered
 *     while the server acts on the body;
 *   - anything else needs a known session (400 without one, 404 for one that
 *     ended or was evicted, after which the client initializes again).
 * Sessions are 128 random bits; at most MCP_SESSIONS_MAX are kept and the
 * least recently used goes when a new one needs room.  They hold nothing but
 * their id: the contexts are the state, and every request names its context.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "mcp_impl.h"

#define META_VERSION "io.modelcontextprotocol/protocolVersion"
#define META_CAPS "io.modelcontextprotocol/clientCapabilities"
#define HEADER_NAME_MAX 4096 /* bytes of a decoded Mcp-Name */

static const char instructions[] =
    "mcpfs keeps durable Claude conversations (contexts) that are also directories of a "
    "file system. Create a context, send messages to it, read its history; the same "
    "contexts are visible to every other client and to the mount.";

int mcp_new(struct mcp **ret)
{
	struct mcp *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	*ret = m;
	return 0;
}

void mcp_free(struct mcp *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* --- messages (built by mcp_rpc.c) -------------------------------------------- */

/* Adds item (consumed, may be NULL) to o. */
static bool put(cJSON *o, const char *key, cJSON *item)
{
	if (o && item && cJSON_AddItemToObject(o, key, item))
		return true;
	cJSON_Delete(item);
	return false;
}

/* Queues msg (consumed) as application/json, with a session header if given. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, cJSON *msg,
			     const char *session)
{
	char *text = msg ? cJSON_PrintUnformatted(msg) : NULL;
	cJSON_Delete(msg);
	struct MHD_Response *r =
	    text ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE)
		 : NULL;
	if (!r) {
		free(text);
		return MHD_NO;
	}
	shim_reply_headers(r);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (session)
		MHD_add_response_header(r, "Mcp-Session-Id", session);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const cJSON *id,
				   int code, const char *msg)
{
	log_debug("mcp: %u %d %s", status, code, msg);
	return reply(c, status, mcp_rpc_error(id, code, msg, NULL), NULL);
}

static cJSON *supported_versions(void)
{
	const char *v[] = {MCP_VERSION_MODERN, MCP_VERSION_LEGACY};
	return cJSON_CreateStringArray(v, 2);
}

static enum MHD_Result reply_unsupported(struct MHD_Connection *c, const cJSON *id,
					 const char *requested)
{
	cJSON *data = cJSON_CreateObject();
	cJSON *list = supported_versions();
	if (!data || !list || !cJSON_AddItemToObject(data, "supported", list) ||
	    !cJSON_AddStringToObject(data, "requested", requested)) {
		cJSON_Delete(data);
		cJSON_Delete(list);
		return MHD_NO;
	}
	return reply(
	    c, MHD_HTTP_BAD_REQUEST,
	    mcp_rpc_error(id, MCP_UNSUPPORTED_VERSION, "Unsupported protocol version", data), NULL);
}

static const char *header(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static const char *string_at(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* --- sessions --------------------------------------------------------------------- */

static int session_new(struct mcp *m, char *out)
{
	unsigned char rnd[MCP_SESSION_ID_LEN / 2];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -EIO;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(out + 2 * i, 3, "%02x", rnd[i]);
	pthread_mutex_lock(&m->lock);
	size_t pick = 0;
	for (size_t i = 0; i < MCP_SESSIONS_MAX; i++) {
		if (!m->sessions[i].id[0]) {
			pick = i;
			break;
		}
		if (m->sessions[i].used_ms < m->sessions[pick].used_ms)
			pick = i;
	}
	memcpy(m->sessions[pick].id, out, MCP_SESSION_ID_LEN + 1);
	m->sessions[pick].used_ms = clock_mono_ms();
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/* Finds (and touches) a session, or with drop ends it.  0, -ENOENT. */
static int session_use(struct mcp *m, const char *id, bool drop)
{
	int r = -ENOENT;
	if (strlen(id) != MCP_SESSION_ID_LEN)
		return r;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < MCP_SESSIONS_MAX && r; i++)
		if (!strcmp(m->sessions[i].id, id)) {
			m->sessions[i].used_ms = clock_mono_ms();
			if (drop)
				m->sessions[i].id[0] = '\0';
			r = 0;
		}
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* --- methods ---------------------------------------------------------------------- */

static cJSON *capabilities(void)
{
	cJSON *o = cJSON_CreateObject();
	if (o &&
	    (!cJSON_AddObjectToObject(o, "tools") || !cJSON_AddObjectToObject(o, "resources"))) {
		cJSON_Delete(o);
		o = NULL;
	}
	return o;
}

static cJSON *discover_result(void)
{
	cJSON *o = cJSON_CreateObject();
	if (!put(o, "supportedVersions", supported_versions()) ||
	    !put(o, "capabilities", capabilities()) ||
	    !cJSON_AddStringToObject(o, "instructions", instructions)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static cJSON *keyed(const char *key, cJSON *item)
{
	cJSON *o = item ? cJSON_CreateObject() : NULL;
	if (!o || !cJSON_AddItemToObject(o, key, item)) {
		cJSON_Delete(o);
		cJSON_Delete(item);
		return NULL;
	}
	return o;
}

/* The server's own failure (out of memory, a rendering over its cap). */
static enum MHD_Result reply_internal(struct mcp_req *rq, int err)
{
	char msg[160];
	snprintf(msg, sizeof(msg), "Internal error: %s", strerror(-err));
	return reply_error(rq->c, MHD_HTTP_INTERNAL_SERVER_ERROR, rq->id, RPC_INTERNAL_ERROR, msg);
}

/* Runs a request's method: queues its answer. */
static enum MHD_Result run_method(struct mcp_req *rq, const char *method, const cJSON *params)
{
	cJSON *result = NULL;
	char why[512];
	unsigned status = MHD_HTTP_OK;
	if (!strcmp(method, "ping")) {
		result = cJSON_CreateObject();
	} else if (!strcmp(method, "server/discover") && rq->modern) {
		result = discover_result();
	} else if (!strcmp(method, "tools/list")) {
		result = keyed("tools", mcp_tools_list());
	} else if (!strcmp(method, "resources/templates/list")) {
		result = keyed("resourceTemplates", mcp_resources_templates());
	} else if (!strcmp(method, "resources/list")) {
		rq->cursor = string_at(params, "cursor");
		int r = mcp_resources_list(rq, &result);
		if (r < 0)
			return reply_internal(rq, r);
	} else if (!strcmp(method, "resources/read")) {
		const char *uri = string_at(params, "uri");
		if (!uri)
			return reply_error(rq->c, MHD_HTTP_OK, rq->id, RPC_INVALID_PARAMS,
					   "params.uri must be a string");
		int r = mcp_resources_read(rq, uri, &result, why, sizeof(why));
		if (r == -ENOENT)
			return reply_error(rq->c, MHD_HTTP_OK, rq->id,
					   rq->modern ? RPC_INVALID_PARAMS : MCP_RESOURCE_NOT_FOUND,
					   why);
		if (r < 0)
			return reply_internal(rq, r);
	} else if (!strcmp(method, "tools/call")) {
		const char *name = string_at(params, "name");
		const cJSON *args = cJSON_GetObjectItemCaseSensitive(params, "arguments");
		enum MHD_Result mhd = MHD_NO;
		if (!name)
			return reply_error(rq->c, MHD_HTTP_OK, rq->id, RPC_INVALID_PARAMS,
					   "params.name must be a string");
		int r = mcp_tools_call(rq, name, args, &result, &mhd);
		if (r == 1)
			return mhd;
		if (r == -EINVAL) {
			snprintf(why, sizeof(why), "no tool named '%.200s'", name);
			return reply_error(rq->c, MHD_HTTP_OK, rq->id, RPC_INVALID_PARAMS, why);
		}
		if (r < 0)
			return reply_internal(rq, r);
	} else {
		snprintf(why, sizeof(why), "Method not found: '%.200s'", method);
		/* 2026-07-28 answers an unknown method with 404 as well. */
		return reply_error(rq->c, rq->modern ? MHD_HTTP_NOT_FOUND : MHD_HTTP_OK, rq->id,
				   RPC_METHOD_NOT_FOUND, why);
	}
	return reply(rq->c, status, mcp_rpc_response(rq->id, rq->modern, result), NULL);
}

static enum MHD_Result run_initialize(struct shim *sh, struct MHD_Connection *c, const cJSON *id,
				      const cJSON *params)
{
	if (!id)
		return reply_error(c, MHD_HTTP_BAD_REQUEST, NULL, RPC_INVALID_REQUEST,
				   "initialize must be a request, with an id");
	if (!string_at(params, "protocolVersion"))
		return reply_error(c, MHD_HTTP_OK, id, RPC_INVALID_PARAMS,
				   "params.protocolVersion must be a string");
	char session[MCP_SESSION_ID_LEN + 1];
	if (session_new(sh->mcp, session) < 0)
		return MHD_NO;
	/* Any version asked for gets the one this server speaks with a handshake;
	 * the client disconnects if it cannot speak it (2025-11-25 lifecycle). */
	cJSON *o = cJSON_CreateObject();
	if (!cJSON_AddStringToObject(o, "protocolVersion", MCP_VERSION_LEGACY) ||
	    !put(o, "capabilities", capabilities()) ||
	    !put(o, "serverInfo", mcp_rpc_server_info()) ||
	    !cJSON_AddStringToObject(o, "instructions", instructions)) {
		cJSON_Delete(o);
		return MHD_NO;
	}
	log_debug("mcp: session %.8s… started", session);
	return reply(c, MHD_HTTP_OK, mcp_rpc_response(id, false, o), session);
}

/* --- the two eras ------------------------------------------------------------------ */

static int base64_value(char ch)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = ch ? strchr(alphabet, ch) : NULL;
	return p ? (int)(p - alphabet) : -1;
}

/* An Mcp-Name value, decoded from the "=?base64?…?=" form when it has it.
 * 0, -EINVAL (bad base64 or too long). */
static int header_decode(const char *v, char *out, size_t outlen)
{
	static const char pre[] = "=?base64?", post[] = "?=";
	size_t n = strlen(v), o = 0;
	if (n < sizeof(pre) + 1 || strncmp(v, pre, sizeof(pre) - 1) != 0 ||
	    strcmp(v + n - 2, post) != 0) {
		if (n >= outlen)
			return -EINVAL;
		memcpy(out, v, n + 1);
		return 0;
	}
	unsigned acc = 0, bits = 0;
	for (size_t i = sizeof(pre) - 1; i < n - 2 && v[i] != '='; i++) {
		int x = base64_value(v[i]);
		if (x < 0 || o + 1 >= outlen)
			return -EINVAL;
		acc = (acc << 6) | (unsigned)x;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[o] = '\0';
	return memchr(out, '\0', o) ? -EINVAL : 0;
}

/* 2026-07-28: the headers must be there and agree with the body. */
static enum MHD_Result run_modern(struct mcp_req *rq, const char *method, const cJSON *params)
{
	struct MHD_Connection *c = rq->c;
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
	const char *hv = header(c, "MCP-Protocol-Version"), *bv = string_at(meta, META_VERSION);
	const char *hm = header(c, "Mcp-Method"), *hn = header(c, "Mcp-Name");
	char msg[640], name[HEADER_NAME_MAX];
	/* No client notification is defined over HTTP in this version (a closed
	 * stream is the cancellation) and none has header rules: accepted and
	 * ignored. */
	if (!rq->id)
		return shim_reply_empty(c, MHD_HTTP_ACCEPTED);
	if (!hv)
		return reply_error(c, MHD_HTTP_BAD_REQUEST, rq->id, MCP_HEADER_MISMATCH,
				   "Header mismatch: the MCP-Protocol-Version header is missing");
	if (!bv)
		return reply_error(c, MHD_HTTP_BAD_REQUEST, rq->id, RPC_INVALID_PARAMS,
				   "params._meta[\"" META_VERSION "\"] is required");
	if (strcmp(hv, bv) != 0) {
		snprintf(msg, sizeof(msg),
			 "Header mismatch: MCP-Protocol-Version header value '%.100s' does not "
			 "match body value '%.100s'",
			 hv, bv);
		return reply_error(c, MHD_HTTP_BAD_REQUEST, rq->id, MCP_HEADER_MISMATCH, msg);
	}
	if (strcmp(bv, MCP_VERSION_MODERN) != 0)
		return reply_unsupported(c, rq->id, bv);
	if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(meta, META_CAPS)))
		return reply_error(c, MHD_HTTP_BAD_REQUEST, rq->id, RPC_INVALID_PARAMS,
				   "params._meta[\"" META_CAPS "\"] is required");
	if (!hm || strcmp(hm, method) != 0) {
		snprintf(msg, sizeof(msg),
			 "Header mismatch: Mcp-Method header value '%.100s' does not match body "
			 "value '%.100s'",
			 hm ? hm : "(none)", method);
		return reply_error(c, MHD_HTTP_BAD_REQUEST, rq->id, MCP_HEADER_MISMATCH, msg);
	}
	bool named = !strcmp(method, "tools/call") || !strcmp(method, "resources/read") ||
		     !strcmp(method, "prompts/get");
	const char *bn = string_at(params, !strcmp(method, "resources/read") ? "uri" : "name");
	if (named && bn && (!hn || header_decode(hn, name, sizeof(name)) < 0 || strcmp(name, bn))) {
		snprintf(msg, sizeof(msg),
			 "Header mismatch: Mcp-Name header value '%.100s' does not match body "
			 "value '%.100s'",
			 hn ? hn : "(none)", bn);
		return reply_error(c, MHD_HTTP_BAD_REQUEST, rq->id, MCP_HEADER_MISMATCH, msg);
	}
	rq->progress = cJSON_GetObjectItemCaseSensitive(meta, "progressToken");
	return run_method(rq, method, params);
}

/* 2025-11-25: a session, then the method. */
static enum MHD_Result run_legacy(struct mcp_req *rq, const char *method, const cJSON *params)
{
	struct MHD_Connection *c = rq->c;
	const char *sid = header(c, "Mcp-Session-Id"), *hv = header(c, "MCP-Protocol-Version");
	if (!sid)
		return reply_error(
		    c, MHD_HTTP_BAD_REQUEST, rq->id, RPC_INVALID_REQUEST,
		    "no Mcp-Session-Id: send initialize first (protocol 2025-11-25), "
		    "or give params._meta per protocol 2026-07-28");
	if (session_use(rq->sh->mcp, sid, false) < 0)
		return reply_error(c, MHD_HTTP_NOT_FOUND, rq->id, RPC_INVALID_REQUEST,
				   "no such session: send initialize again");
	if (hv && strcmp(hv, MCP_VERSION_LEGACY) != 0)
		return reply_unsupported(c, rq->id, hv);
	snprintf(rq->session, sizeof(rq->session), "%s", sid);
	if (!rq->id) {
		if (!strcmp(method, "notifications/cancelled"))
			mcp_tools_flight_cancel(
			    rq->sh->mcp, rq->session,
			    cJSON_GetObjectItemCaseSensitive(params, "requestId"));
		return shim_reply_empty(c, MHD_HTTP_ACCEPTED);
	}
	if (!strcmp(method, "initialize"))
		return reply_error(c, MHD_HTTP_OK, rq->id, RPC_INVALID_REQUEST,
				   "this session is initialized already");
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
	rq->progress = cJSON_GetObjectItemCaseSensitive(meta, "progressToken");
	return run_method(rq, method, params);
}

/* --- the handlers ------------------------------------------------------------------ */

/* Checks the JSON-RPC envelope.  NULL when fine, else the problem. */
static const char *envelope_problem(const cJSON *msg, const cJSON **id, const char **method)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(msg, "jsonrpc");
	const cJSON *i = cJSON_GetObjectItemCaseSensitive(msg, "id");
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(msg, "params");
	*id = NULL;
	*method = string_at(msg, "method");
	/* An integer, within the range a double holds exactly (and a cast to
	 * long long is defined for). */
	if (i &&
	    (cJSON_IsString(i) || (cJSON_IsNumber(i) && i->valuedouble >= -9007199254740992.0 &&
				   i->valuedouble <= 9007199254740992.0 &&
				   i->valuedouble == (double)(long long)i->valuedouble)))
		*id = i;
	if (!cJSON_IsString(v) || strcmp(v->valuestring, "2.0") != 0)
		return "\"jsonrpc\" must be \"2.0\"";
	if (i && !*id)
		return "\"id\" must be a string or an integer (not null)";
	if (p && !cJSON_IsObject(p))
		return "\"params\" must be an object";
	return NULL;
}

enum MHD_Result mcp_post(struct shim *sh, struct shim_request *hrq, struct MHD_Connection *c)
{
	static const char *const keys[] = {"jsonrpc", "id",    "method", "params",
					   "result",  "error", NULL};
	const char *body = hrq->body.data ? hrq->body.data : "";
	size_t n = hrq->body.len, lead = 0;
	char why[160];
	while (lead < n && strchr(" \t\r\n", body[lead]))
		lead++;
	if (lead < n && body[lead] == '[')
		return reply_error(c, MHD_HTTP_BAD_REQUEST, NULL, RPC_INVALID_REQUEST,
				   "JSON-RPC batches are not accepted: send one message per POST");
	cJSON *msg = cJSON_ParseWithLength(body, n);
	if (!msg)
		return reply_error(c, MHD_HTTP_BAD_REQUEST, NULL, RPC_PARSE_ERROR,
				   "Parse error: the body is not JSON");
	cJSON_Delete(msg);
	int r = shim_parse_body(body, n, false, keys, &msg, why, sizeof(why));
	if (r == -ENOMEM)
		return MHD_NO;
	if (r < 0)
		return reply_error(c, MHD_HTTP_BAD_REQUEST, NULL, RPC_INVALID_REQUEST, why);
	struct mcp_req rq = {.sh = sh, .c = c};
	const char *method, *problem = envelope_problem(msg, &rq.id, &method);
	const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
	const char *hv = header(c, "MCP-Protocol-Version"), *sid = header(c, "Mcp-Session-Id");
	enum MHD_Result ret;
	rq.modern =
	    string_at(meta, META_VERSION) || (!sid && hv && !strcmp(hv, MCP_VERSION_MODERN));
	if (problem)
		ret = reply_error(c, MHD_HTTP_BAD_REQUEST, rq.id, RPC_INVALID_REQUEST, problem);
	else if (!method && !rq.modern && sid && session_use(sh->mcp, sid, false) == 0)
		ret = shim_reply_empty(c, MHD_HTTP_ACCEPTED); /* a response: none is awaited */
	else if (!method)
		ret = reply_error(c, MHD_HTTP_BAD_REQUEST, rq.id, RPC_INVALID_REQUEST,
				  "\"method\" must be a string");
	else if (!strcmp(method, "initialize") && !rq.modern)
		ret = run_initialize(sh, c, rq.id, params);
	else if (rq.modern)
		ret = run_modern(&rq, method, params);
	else if (!sid && hv && strcmp(hv, MCP_VERSION_LEGACY) != 0)
		ret = reply_unsupported(c, rq.id, hv);
	else
		ret = run_legacy(&rq, method, params);
	cJSON_Delete(msg);
	return ret;
}

enum MHD_Result mcp_delete(struct shim *sh, struct shim_request *hrq, struct MHD_Connection *c)
{
	const char *sid = header(c, "Mcp-Session-Id");
	if (!sid)
		return shim_reply_not_allowed(c, "POST");
	if (session_use(sh->mcp, sid, true) < 0)
		return reply_error(c, MHD_HTTP_NOT_FOUND, NULL, RPC_INVALID_REQUEST,
				   "no such session");
	return shim_reply_empty(c, MHD_HTTP_NO_CONTENT);
}
