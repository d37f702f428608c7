/* mcp_bridge.c — `mcpfs --mcp-stdio`: MCP's stdio transport on one side, the
 * shim's Streamable HTTP endpoint on the other (see include/mcpfs/mcp.h).
 *
 * One thread and one curl multi handle: stdin is one more descriptor the
 * multi handle waits on, so a long send_message never stops the next line
 * from being read (a notifications/cancelled, say).  Each line is one JSON-RPC
 * message and becomes one POST /mcp.  The headers the HTTP transport needs are
 * derived from the message, which is what the client would have sent over
 * HTTP: Mcp-Session-Id as the initialize answer gave it, MCP-Protocol-Version
 * from params._meta (2026-07-28) or the version initialize agreed on,
 * Mcp-Method, and Mcp-Name for the methods that name something (in the
 * "=?base64?…?=" form when the value is not plain printable ASCII).  Every
 * JSON-RPC message of an answer — a JSON body, or each event of an SSE stream
 * as it arrives — is written to stdout as one line.  A notifications/cancelled
 * also closes that request's stream: on HTTP, closing is the cancellation.
 * Answers that are not JSON-RPC (the shim's 401, 403, 413) and transport
 * failures become a JSON-RPC error for the request, naming the cause.
 *
 * While an initialize is in flight every later line is held, in order, and
 * stdin is not read further: those lines need the Mcp-Session-Id its answer
 * gives, so a client that pipelines initialize, notifications/initialized and
 * a first request works.  Other lines run concurrently.  A notification is
 * never answered on stdout, even when the shim refuses it: that goes to
 * stderr.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mcpfs/buf.h"
#include "mcpfs/sse.h"
#include "mcp_impl.h"

#define LINE_MAX_BYTES MCP_BODY_MAX /* one message from stdin */
#define ANSWER_MAX (256u << 20)	    /* bytes of one JSON answer */
#define EVENT_MAX (256u << 20)	    /* bytes of one SSE event */

struct xfer {
	struct bridge *b;
	CURL *easy;
	struct curl_slist *headers;
	char *body;	    /* the message, as read */
	char *id;	    /* its id printed, NULL for a notification */
	char *notification; /* its method when it is a notification, else NULL */
	bool initialize;
	int sse;	   /* -1 unknown yet, 0 JSON, 1 SSE */
	struct buf answer; /* a JSON answer */
	struct sse parser;
	char session[MCP_SESSION_ID_LEN + 8];
	struct xfer *next;
};

/* A line read while an initialize was in flight, waiting for its answer. */
struct held {
	struct held *next;
	size_t len;
	char text[];
};

struct bridge {
	char url[128];
	char auth[SHIM_TOKEN_MAX + 32]; /* "Authorization: Bearer …", or "" */
	char session[MCP_SESSION_ID_LEN + 8];
	char version[32]; /* agreed by initialize, or "" */
	CURLM *multi;
	struct xfer *xfers;
	struct held *held, **held_tail; /* in arrival order */
	struct buf line;
	bool dropping; /* the current line is over the cap: skip to its end */
};

static void emit(const char *json, size_t n)
{
	fwrite(json, 1, n, stdout);
	fputc('\n', stdout);
	fflush(stdout);
}

/* A JSON-RPC error for the request whose id is printed in id. */
static void emit_error(const char *id, int code, const char *msg)
{
	if (!id)
		return; /* a notification gets no answer */
	cJSON *o = cJSON_CreateObject(), *e = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "jsonrpc", "2.0");
	cJSON_AddItemToObject(o, "id", cJSON_Parse(id));
	cJSON_AddNumberToObject(e, "code", code);
	cJSON_AddStringToObject(e, "message", msg);
	cJSON_AddItemToObject(o, "error", e);
	char *text = cJSON_PrintUnformatted(o);
	if (text)
		emit(text, strlen(text));
	free(text);
	cJSON_Delete(o);
}

/* --- answers ---------------------------------------------------------------------- */

/* initialize's answer: the protocol version the shim chose. */
static void keep_version(struct bridge *b, const char *json, size_t n)
{
	cJSON *o = cJSON_ParseWithLength(json, n);
	const cJSON *res = cJSON_GetObjectItemCaseSensitive(o, "result");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(res, "protocolVersion");
	if (cJSON_IsString(v))
		snprintf(b->version, sizeof(b->version), "%s", v->valuestring);
	cJSON_Delete(o);
}

/* What the shim said to a notification: stderr, never stdout. */
static void report_refused(const struct bridge *b, const struct xfer *x, const char *what, size_t n)
{
	fprintf(stderr, "mcpfs --mcp-stdio: %s to %s: %.*s\n", x->notification, b->url,
		(int)(n > 400 ? 400 : n), what);
}

static int on_event(void *data, const struct sse_event *ev)
{
	struct xfer *x = data;
	if (ev->data_len && x->notification)
		report_refused(x->b, x, ev->data, ev->data_len);
	else if (ev->data_len)
		emit(ev->data, ev->data_len);
	return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
	struct xfer *x = data;
	size_t len = size * n;
	if (x->sse < 0) {
		char *ct = NULL;
		curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
		x->sse = ct && !strncasecmp(ct, "text/event-stream", 17);
	}
	if (x->sse)
		return sse_feed(&x->parser, p, len, on_event, x) < 0 ? 0 : len;
	return buf_append(&x->answer, p, len) < 0 ? 0 : len;
}

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
	struct xfer *x = data;
	size_t len = size * n;
	static const char name[] = "mcp-session-id:";
	if (len > sizeof(name) && !strncasecmp(p, name, sizeof(name) - 1)) {
		const char *v = p + sizeof(name) - 1;
		while (*v == ' ')
			v++;
		size_t vl = strcspn(v, "\r\n");
		if (vl < sizeof(x->session))
			snprintf(x->session, sizeof(x->session), "%.*s", (int)vl, v);
	}
	return len;
}

/* The end of a transfer: the JSON answer, or what went wrong. */
static void xfer_done(struct bridge *b, struct xfer *x, CURLcode rc)
{
	long status = 0;
	char msg[512];
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK) {
		snprintf(msg, sizeof(msg), "cannot reach mcpfs at %s: %s", b->url,
			 curl_easy_strerror(rc));
		if (x->notification)
			report_refused(b, x, msg, strlen(msg));
		emit_error(x->id, RPC_INTERNAL_ERROR, msg);
		return;
	}
	if (x->initialize && x->session[0])
		snprintf(b->session, sizeof(b->session), "%s", x->session);
	if (x->sse || !x->answer.len)
		return;
	if (x->notification) {
		report_refused(b, x, x->answer.data, x->answer.len);
		return;
	}
	cJSON *o = cJSON_ParseWithLength(x->answer.data, x->answer.len);
	bool rpc = cJSON_GetObjectItemCaseSensitive(o, "jsonrpc") != NULL;
	if (rpc) {
		if (x->initialize)
			keep_version(b, x->answer.data, x->answer.len);
		emit(x->answer.data, x->answer.len);
	} else {
		/* The shim's own error object: {"error":{"type","message"}}. */
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(o, "error"), "message");
		snprintf(msg, sizeof(msg), "mcpfs at %s answered %ld: %s", b->url, status,
			 cJSON_IsString(m) ? m->valuestring : "(no message)");
		emit_error(x->id, RPC_INVALID_REQUEST, msg);
	}
	cJSON_Delete(o);
}

static void xfer_free(struct bridge *b, struct xfer *x)
{
	for (struct xfer **p = &b->xfers; *p; p = &(*p)->next)
		if (*p == x) {
			*p = x->next;
			break;
		}
	curl_multi_remove_handle(b->multi, x->easy);
	curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->headers);
	sse_done(&x->parser);
	buf_done(&x->answer);
	free(x->body);
	free(x->id);
	free(x->notification);
	free(x);
}

/* --- requests ----------------------------------------------------------------------- */

static bool header_safe(const char *v)
{
	size_t n = strlen(v);
	if (!n || v[0] == ' ' || v[n - 1] == ' ' || !strncmp(v, "=?base64?", 9))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
			return false;
	return true;
}

static struct curl_slist *add_name(struct curl_slist *h, const char *v)
{
	static const char digits[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(v), o = 0;
	char *line = malloc(4 * n / 3 + 32);
	if (!line)
		return h;
	if (header_safe(v)) {
		snprintf(line, 4 * n / 3 + 32, "Mcp-Name: %s", v);
	} else {
		o = (size_t)sprintf(line, "Mcp-Name: =?base64?");
		const unsigned char *s = (const unsigned char *)v;
		for (size_t i = 0; i < n; i += 3) {
			unsigned x = s[i] << 16 | (i + 1 < n ? s[i + 1] << 8 : 0) |
				     (i + 2 < n ? s[i + 2] : 0);
			line[o++] = digits[x >> 18 & 63];
			line[o++] = digits[x >> 12 & 63];
			line[o++] = i + 1 < n ? digits[x >> 6 & 63] : '=';
			line[o++] = i + 2 < n ? digits[x & 63] : '=';
		}
		strcpy(line + o, "?=");
	}
	h = curl_slist_append(h, line);
	free(line);
	return h;
}

static struct curl_slist *headers_for(struct bridge *b, const cJSON *msg)
{
	char line[256];
	const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
	const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
	const cJSON *v =
	    cJSON_GetObjectItemCaseSensitive(meta, "io.modelcontextprotocol/protocolVersion");
	const char *m = cJSON_IsString(method) ? method->valuestring : NULL;
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	h = curl_slist_append(h, "Accept: application/json, text/event-stream");
	if (b->auth[0])
		h = curl_slist_append(h, b->auth);
	if (b->session[0] && !cJSON_IsString(v)) {
		snprintf(line, sizeof(line), "Mcp-Session-Id: %s", b->session);
		h = curl_slist_append(h, line);
	}
	const char *version = cJSON_IsString(v) ? v->valuestring : b->version;
	if (version[0] && header_safe(version) && strlen(version) < 64) {
		snprintf(line, sizeof(line), "MCP-Protocol-Version: %s", version);
		h = curl_slist_append(h, line);
	}
	if (m && header_safe(m) && strlen(m) < 128) {
		snprintf(line, sizeof(line), "Mcp-Method: %s", m);
		h = curl_slist_append(h, line);
	}
	const char *key = m && !strcmp(m, "resources/read") ? "uri" : "name";
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(params, key);
	if (m && cJSON_IsString(name) &&
	    (!strcmp(m, "tools/call") || !strcmp(m, "resources/read") || !strcmp(m, "prompts/get")))
		h = add_name(h, name->valuestring);
	return h;
}

/* notifications/cancelled: close that request's stream. */
static void cancel_named(struct bridge *b, const cJSON *msg)
{
	const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
	char *id = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(params, "requestId"));
	for (struct xfer *x = b->xfers; id && x; x = x->next)
		if (x->id && !strcmp(x->id, id)) {
			xfer_free(b, x);
			break;
		}
	free(id);
}

static void line_post(struct bridge *b, const char *text, size_t n)
{
	cJSON *msg = cJSON_ParseWithLength(text, n);
	if (!cJSON_IsObject(msg)) {
		/* The shim answers it: a parse error or Invalid Request, with id null. */
		cJSON_Delete(msg);
		msg = NULL;
	}
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
	const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
	if (cJSON_IsString(method) && !strcmp(method->valuestring, "notifications/cancelled"))
		cancel_named(b, msg);
	struct xfer *x = calloc(1, sizeof(*x));
	if (!x || !(x->body = malloc(n + 1)) || !(x->easy = curl_easy_init())) {
		if (x)
			free(x->body);
		free(x);
		cJSON_Delete(msg);
		return;
	}
	memcpy(x->body, text, n);
	x->body[n] = '\0';
	x->b = b;
	x->sse = -1;
	x->id = id && !cJSON_IsNull(id) ? cJSON_PrintUnformatted(id) : NULL;
	if (msg && !id && cJSON_IsString(method))
		x->notification = strdup(method->valuestring);
	x->initialize = cJSON_IsString(method) && !strcmp(method->valuestring, "initialize");
	buf_init(&x->answer, ANSWER_MAX);
	sse_init(&x->parser, EVENT_MAX);
	x->headers = headers_for(b, msg);
	cJSON_Delete(msg);
	curl_easy_setopt(x->easy, CURLOPT_URL, b->url);
	curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body);
	curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE, (long)n);
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http");
	x->next = b->xfers;
	b->xfers = x;
	curl_multi_add_handle(b->multi, x->easy);
}

static bool initializing(const struct bridge *b)
{
	for (const struct xfer *x = b->xfers; x; x = x->next)
		if (x->initialize)
			return true;
	return false;
}

/* Posts the line, or holds it while an initialize is in flight. */
static void line_send(struct bridge *b, const char *text, size_t n)
{
	if (!b->held && !initializing(b)) {
		line_post(b, text, n);
		return;
	}
	struct held *h = malloc(sizeof(*h) + n);
	if (!h)
		return;
	h->next = NULL;
	h->len = n;
	memcpy(h->text, text, n);
	if (!b->held)
		b->held_tail = &b->held;
	*b->held_tail = h;
	b->held_tail = &h->next;
}

/* Posts the held lines once no initialize is in flight; stops after the next
 * initialize, whose answer the lines after it wait for in turn. */
static void held_release(struct bridge *b)
{
	while (b->held && !initializing(b)) {
		struct held *h = b->held;
		b->held = h->next;
		line_post(b, h->text, h->len);
		free(h);
	}
}

/* --- the loop ------------------------------------------------------------------------ */

/* Reads what stdin has; sends each complete line.  false at end of input. */
static bool stdin_read(struct bridge *b)
{
	char chunk[65536];
	ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	if (n == 0)
		return false;
	for (ssize_t i = 0; i < n; i++) {
		if (chunk[i] != '\n') {
			if (!b->dropping && buf_append(&b->line, chunk + i, 1) < 0) {
				b->dropping = true;
				buf_reset(&b->line);
			}
			continue;
		}
		if (b->dropping) {
			static const char over[] =
			    "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
			    "\"message\":\"the message is over the size limit\"}}";
			emit(over, sizeof(over) - 1);
		} else if (b->line.len && strspn(b->line.data, " \t\r") < b->line.len)
			line_send(b, b->line.data, b->line.len);
		b->dropping = false;
		buf_reset(&b->line);
	}
	return true;
}

static void finished(struct bridge *b)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(b->multi, &left)))
		if (m->msg == CURLMSG_DONE) {
			struct xfer *x = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			xfer_done(b, x, m->data.result);
			xfer_free(b, x);
		}
}

static int bridge_setup(struct bridge *b, const char *address, const char *token_file, char *why,
			size_t whylen)
{
	const char *a = address ? address : SHIM_DEFAULT_ADDRESS;
	bool bare = a[0] && strspn(a, "0123456789") == strlen(a);
	snprintf(b->url, sizeof(b->url), "http://%s%.64s/mcp", bare ? "127.0.0.1:" : "", a);
	if (token_file) {
		/* The shim's own reader, so the file's rules are the same. */
		struct shim *tmp = calloc(1, sizeof(*tmp));
		int r = tmp ? shim_auth_load_token(tmp, token_file, why, whylen) : -ENOMEM;
		if (r == 0)
			snprintf(b->auth, sizeof(b->auth), "Authorization: Bearer %s", tmp->token);
		if (tmp && tmp->token) {
			explicit_bzero(tmp->token, tmp->token_len);
			free(tmp->token);
		}
		free(tmp);
		if (r < 0)
			return r;
	}
	b->multi = curl_multi_init();
	buf_init(&b->line, LINE_MAX_BYTES);
	return b->multi ? 0 : -ENOMEM;
}

int mcp_bridge_run(const char *address, const char *token_file, char *why, size_t whylen)
{
	struct bridge *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	int r = bridge_setup(b, address, token_file, why, whylen);
	signal(SIGPIPE, SIG_IGN);
	fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
	/* After the end of input the answers still in flight are written out
	 * (`echo … | mcpfs --mcp-stdio` gets its answer), then it returns. */
	for (bool open = r == 0; r == 0 && (open || b->xfers);) {
		struct curl_waitfd in = {.fd = STDIN_FILENO, .events = CURL_WAIT_POLLIN};
		int running;
		curl_multi_perform(b->multi, &running);
		finished(b);
		held_release(b);
		if (!open && !b->xfers)
			break;
		/* Held lines wait in memory; the lines after them wait in stdin. */
		bool reading = open && !b->held && !initializing(b);
		curl_multi_poll(b->multi, &in, reading ? 1 : 0, 1000, NULL);
		if (reading && in.revents)
			open = stdin_read(b);
	}
	while (b->xfers)
		xfer_free(b, b->xfers);
	while (b->held) {
		struct held *h = b->held;
		b->held = h->next;
		free(h);
	}
	if (b->multi)
		curl_multi_cleanup(b->multi);
	buf_done(&b->line);
	explicit_bzero(b->auth, sizeof(b->auth));
	free(b);
	return r;
}
