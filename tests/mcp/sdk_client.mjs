// Drives mcpfs with the official MCP TypeScript SDK's Client, over Streamable
// HTTP or over the stdio bridge (mcpfs --mcp-stdio), and prints one JSON line
// per step on stdout for tests/integration/test_mcp_sdk.py to check:
//
//   node sdk_client.mjs SDK_DIR http URL [TOKEN]
//   node sdk_client.mjs SDK_DIR stdio MCPFS_BIN ADDR:PORT [TOKEN_FILE]
//
// The steps: connect, list the tools, create a context, send a message with
// progress (each delta a line), read the resources, then send a message whose
// reply the fake API holds, print "holding" after its first delta and wait for
// a line on stdin before cancelling it (the test looks at the mount meanwhile).
import path from "node:path";
import readline from "node:readline";

const [sdkDir, mode, target, extra, extra2] = process.argv.slice(2);
const esm = (p) => import(path.join(sdkDir, "node_modules/@modelcontextprotocol/sdk/dist/esm", p));
const { Client } = await esm("client/index.js");

function out(obj) {
	process.stdout.write(JSON.stringify(obj) + "\n");
}

async function transport() {
	if (mode === "http") {
		const { StreamableHTTPClientTransport } = await esm("client/streamableHttp.js");
		const headers = extra ? { Authorization: "Bearer " + extra } : {};
		return new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
	}
	const { StdioClientTransport } = await esm("client/stdio.js");
	const args = ["--mcp-stdio", "--http=" + extra];
	if (extra2) args.push("--http-token-file=" + extra2);
	return new StdioClientTransport({ command: target, args, stderr: "inherit" });
}

const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));

const client = new Client({ name: "mcpfs-sdk-test", version: "1.0.0" });
await client.connect(await transport());
out({ step: "connected", server: client.getServerVersion(), caps: client.getServerCapabilities() });

const tools = await client.listTools();
out({ step: "tools", tools: tools.tools });

let r = await client.callTool({ name: "create_context", arguments: { name: "sdk", system: "Be brief." } });
out({ step: "created", result: r });

const deltas = [];
r = await client.callTool({ name: "send_message", arguments: { context: "sdk", text: "hello sdk" } },
	undefined, { onprogress: (p) => deltas.push(p) });
out({ step: "sent", result: r, progress: deltas });

const resources = await client.listResources();
const templates = await client.listResourceTemplates();
const read = {};
for (const v of ["history", "transcript", "output", "status", "usage"]) {
	const res = await client.readResource({ uri: "mcpfs://contexts/sdk/" + v });
	read[v] = res.contents[0].text;
}
out({ step: "resources", resources: resources.resources, templates: templates.resourceTemplates, read });
await nextLine();

// The call to cancel: the test's fake API holds its reply after one delta.
const abort = new AbortController();
let announced = false;
const pending = client.callTool({ name: "send_message", arguments: { context: "sdk", text: "long one" } },
	undefined, {
		signal: abort.signal,
		onprogress: (p) => {
			if (!announced) {
				announced = true;
				out({ step: "holding", progress: p });
			}
		},
	}).then((res) => ({ ok: res }), (err) => ({ err: String(err) }));
await nextLine();
abort.abort("the test cancels");
const settled = await pending;
out({ step: "cancelled", settled });
await nextLine();

r = await client.callTool({ name: "get_history", arguments: { context: "sdk" } });
out({ step: "history", result: r });
// fork (CONTRACT §10): the tool's `name` and `turn` arguments
r = await client.callTool({ name: "ctl", arguments: { context: "sdk", command: "fork", name: "sdk-fork", turn: 1 } });
out({ step: "forked", result: r });
await client.close();
out({ step: "closed" });
process.exit(0);
