/* mcp_rpc.c — JSON-RPC 2.0 messages of the MCP endpoint: a response (with
 * 2026-07-28's additions), an error, the server's info.  No connection and no
 * store: a leaf that mcp.c (every answer) and mcp_tools.c (send_message's last
 * message on its stream) build their messages with.
 */
#include <cjson/cJSON.h>
#include <stdbool.h>

#include "mcp_impl.h"

cJSON *mcp_rpc_server_info(void)
{
	cJSON *o = cJSON_CreateObject();
	if (o && (!cJSON_AddStringToObject(o, "name", "mcpfs") ||
		  !cJSON_AddStringToObject(o, "version", MCPFS_VERSION))) {
		cJSON_Delete(o);
		o = NULL;
	}
	return o;
}

/* Adds item (consumed, may be NULL) to o. */
static bool put(cJSON *o, const char *key, cJSON *item)
{
	if (o && item && cJSON_AddItemToObject(o, key, item))
		return true;
	cJSON_Delete(item);
	return false;
}

static cJSON *message_new(const cJSON *id)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *i = id ? cJSON_Duplicate(id, true) : cJSON_CreateNull();
	if (!o || !i || !cJSON_AddStringToObject(o, "jsonrpc", "2.0") ||
	    !cJSON_AddItemToObject(o, "id", i)) {
		cJSON_Delete(o);
		cJSON_Delete(i);
		return NULL;
	}
	return o;
}

cJSON *mcp_rpc_response(const cJSON *id, bool modern, cJSON *result)
{
	cJSON *o = result ? message_new(id) : NULL;
	bool ok = o != NULL;
	if (ok && modern) {
		cJSON *meta = cJSON_GetObjectItemCaseSensitive(result, "_meta");
		if (!meta)
			meta = cJSON_AddObjectToObject(result, "_meta");
		ok = cJSON_AddStringToObject(result, "resultType", "complete") && meta &&
		     put(meta, "io.modelcontextprotocol/serverInfo", mcp_rpc_server_info());
	}
	if (ok && cJSON_AddItemToObject(o, "result", result))
		return o;
	cJSON_Delete(o);
	cJSON_Delete(result);
	return NULL;
}

cJSON *mcp_rpc_error(const cJSON *id, int code, const char *msg, cJSON *data)
{
	cJSON *o = message_new(id), *e = o ? cJSON_AddObjectToObject(o, "error") : NULL;
	if (!e || !cJSON_AddNumberToObject(e, "code", code) ||
	    !cJSON_AddStringToObject(e, "message", msg) ||
	    (data && !cJSON_AddItemToObject(e, "data", data))) {
		cJSON_Delete(o);
		cJSON_Delete(data);
		return NULL;
	}
	return o;
}
