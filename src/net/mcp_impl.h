/* mcp_impl.h — what the MCP endpoint's files share (see include/mcpfs/mcp.h).
 *
 *   mcp.c        POST and DELETE /mcp: JSON-RPC framing, the two protocol
 *                versions, headers against the body, sessions, the methods
 *   mcp_rpc.c    JSON-RPC messages: a response, an error, the server's info
 *   mcp_tools.c  the tools, and send_message's stream
 *   mcp_resources.c  the resources
 *   mcp_bridge.c the stdio bridge (a client of the endpoint; shares nothing)
 *
 * Threads: libmicrohttpd's pool runs all of it; struct mcp's lock guards the
 * sessions and the calls in flight and is taken before the store's lock.
 */
#ifndef MCPFS_MCP_IMPL_H
#define MCPFS_MCP_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "mcpfs/mcp.h"
#include "shim_impl.h"

#define MCP_BODY_MAX ((4u << 20) + SHIM_JSON_SLACK) /* bytes of one POST body */
#define MCP_SESSIONS_MAX 256  /* 2025-11-25 sessions kept; the least recent goes */
#define MCP_SESSION_ID_LEN 32 /* hex digits: 128 random bits */
#define MCP_VERSION_MODERN "2026-07-28"
#define MCP_VERSION_LEGACY "2025-11-25"

/* JSON-RPC and MCP error codes. */
#define RPC_PARSE_ERROR -32700
#define RPC_INVALID_REQUEST -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS -32602
#define RPC_INTERNAL_ERROR -32603
#define MCP_RESOURCE_NOT_FOUND -32002 /* 2025-11-25; 2026-07-28 uses -32602 */
#define MCP_HEADER_MISMATCH -32020
#define MCP_UNSUPPORTED_VERSION -32022

struct cJSON;
struct mcp_flight;

struct mcp_session {
	char id[MCP_SESSION_ID_LEN + 1]; /* "" : a free slot */
	int64_t used_ms;		 /* monotonic: the least recent is evicted */
};

struct mcp {
	pthread_mutex_t lock;
	struct mcp_session sessions[MCP_SESSIONS_MAX]; /* under lock */
	struct mcp_flight *flights; /* send_message calls streaming; under lock */
};

/* One request being answered. */
struct mcp_req {
	struct shim *sh;
	struct MHD_Connection *c;
	const struct cJSON *id; /* NULL for a notification */
	bool modern;		/* 2026-07-28, else 2025-11-25 */
	char session[MCP_SESSION_ID_LEN + 1];
	const struct cJSON *progress; /* params._meta.progressToken, or NULL */
	const char *cursor;	      /* params.cursor of a list, or NULL */
};

int mcp_new(struct mcp **ret);
void mcp_free(struct mcp *m); /* NULL-safe; no stream may be live */

/* The route handlers (shim_route.c's table). */
shim_handler_fn mcp_post, mcp_delete;

/* --- mcp_rpc.c: JSON-RPC messages (a leaf) --- */

/* A result as its JSON-RPC response (result consumed): resultType and
 * serverInfo added for 2026-07-28.  NULL on ENOMEM. */
struct cJSON *mcp_rpc_response(const struct cJSON *id, bool modern, struct cJSON *result);
/* An error response; data (consumed) may be NULL.  NULL on ENOMEM. */
struct cJSON *mcp_rpc_error(const struct cJSON *id, int code, const char *msg, struct cJSON *data);
/* {"name": "mcpfs", "version": MCPFS_VERSION}, or NULL on ENOMEM. */
struct cJSON *mcp_rpc_server_info(void);

/* --- mcp_resources.c --- */

struct cJSON *mcp_resources_templates(void);
/* resources/list from rq->cursor.  0, -ENOMEM. */
int mcp_resources_list(struct mcp_req *rq, struct cJSON **ret);

/* resources/read: 0 with *ret the result; -ENOENT: no such resource (why). */
int mcp_resources_read(struct mcp_req *rq, const char *uri, struct cJSON **ret, char *why,
		       size_t whylen);

/* Appends the view kind (an enum view_kind, or -1: the newest reply as far
 * as it has arrived) of a context to out.  0, -ENOENT, -EFBIG, -ENOMEM. */
int mcp_resources_render(struct store *st, uint64_t id, int kind, struct buf *out);

/* Appends the text turn t has now (the call may still be streaming). */
int mcp_resources_turn_text(struct store *st, struct reply *t, struct buf *out);

/* --- mcp_tools.c --- */

struct cJSON *mcp_tools_list(void);

/* tools/call: 0 with *ret the result (isError inside for a tool's failure);
 * 1 when a stream was queued instead (*mhd is what queueing returned);
 * -EINVAL: no such tool; -ENOMEM. */
int mcp_tools_call(struct mcp_req *rq, const char *name, const struct cJSON *args,
		   struct cJSON **ret, enum MHD_Result *mhd);

/* notifications/cancelled in a session: cancels that request's call. */
void mcp_tools_flight_cancel(struct mcp *m, const char *session, const struct cJSON *request_id);

#endif
