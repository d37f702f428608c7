/* mcp.h — the Model Context Protocol front end (CONTRACT §11, doc/mcp.md).
 *
 * Two parts live in src/net:
 *
 *  - The endpoint POST /mcp of the HTTP shim (mcp.c, mcp_tools.c): JSON-RPC 2.0
 *    over Streamable HTTP, serving clients of protocol 2025-11-25 (initialize,
 *    sessions by Mcp-Session-Id) and 2026-07-28 (stateless: per-request _meta
 *    and the MCP-Protocol-Version, Mcp-Method and Mcp-Name headers) on the same
 *    path.  It is one more route of the shim: the same Host, Origin and token
 *    checks, the same body cap, the same threads; a send_message that streams
 *    rides the shim's streaming machinery (suspended connections, no thread per
 *    client).  Its only state is the table of 2025-11-25 sessions and the list
 *    of calls in flight, under the endpoint's own lock (taken before the
 *    store's, never after).  Its interface is internal (src/net/mcp_impl.h).
 *
 *  - The stdio bridge (mcp_bridge.c), below: `mcpfs --mcp-stdio`.
 */
#ifndef MCPFS_MCP_H
#define MCPFS_MCP_H

#include <stddef.h>

/* Runs the stdio bridge until stdin ends: reads newline-delimited JSON-RPC
 * messages from stdin, POSTs each to http://ADDRESS/mcp (address as --http
 * takes it; NULL: the default) with libcurl, with the bearer token read from
 * token_file when not NULL, and writes every JSON-RPC message of the answers
 * (a JSON body or the events of an SSE stream) to stdout, one a line.  Several
 * requests may be in flight at once (one thread, a curl multi handle); a
 * notifications/cancelled from the client also closes that request's stream,
 * which cancels it on the shim.  It never opens the state directory.  A shim
 * that cannot be reached turns each request into a JSON-RPC error naming the
 * address.  Returns 0 at the end of stdin; -errno with why on a start-up
 * failure (the token file). */
int mcp_bridge_run(const char *address, const char *token_file, char *why, size_t whylen);

#endif
