/* shim.c — the HTTP shim's life cycle, its socket, and the checks every
 * request passes before its handler runs (see include/mcpfs/shim.h).
 *
 * The socket is bound here rather than by libmicrohttpd: before daemonizing
 * (so "address in use" reaches the terminal), and on exactly the address given
 * (libmicrohttpd given only a port binds every interface).
 *
 * libmicrohttpd calls the access handler first with the headers only, then
 * once per piece of body, and a last time with none, when the handler runs.
 * The checks (Host, Origin, token, route, name, the body's declared type and
 * size) run in the first call when a body follows, so a refused client is not
 * read further, else in the last, so that a refusal keeps the connection open
 * (an answer queued in the first call closes it).  A refusal that concerns the
 * body itself (413, 415, 503) is answered only after the body was read and
 * dropped: closing a socket with unread input makes the kernel send a reset,
 * and the client would then often see the reset instead of the answer.
 *
 * Before any of that, the request's own bytes are checked (shim_frame.c) and
 * a request that could be read two ways is refused with 400 and the connection
 * closed.  A body is admitted against the shim's budget by its Content-Length
 * before a byte of it is kept (shim_conn.c), its buffer is sized once, and its
 * JSON's shape is checked before cJSON builds a tree of it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mcpfs/log.h"
#include "mcp_impl.h"
#include "shim_impl.h"

#define SHIM_THREADS 4	       /* libmicrohttpd's pool: a slow fsync stalls one */
#define SHIM_IDLE_TIMEOUT_S 60 /* a connection silent this long is closed */
/* Bytes per connection (headers, buffers): a pool over 32 KiB is mmap'ed and
 * unmapped per connection by libmicrohttpd 0.9.75, which halved the request
 * rate with one connection per request (shim_accept.c). */
#define SHIM_CONN_MEMORY (32u << 10)
#define SHIM_DISCARD_MAX (64u << 20) /* bytes of refused body read before hanging up */

/* --- the address ------------------------------------------------------------- */

struct bind_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char host[INET6_ADDRSTRLEN + 2]; /* as shown: "127.0.0.1", "[::1]" */
	unsigned port;
	bool loopback, wildcard;
};

static int address_parse(const char *given, struct bind_addr *a, char *why, size_t whylen)
{
	/* A bare port (--http=8080) means that port on the IPv4 loopback address. */
	char with_host[32];
	const char *spec = given;
	if (given[0] && strspn(given, "0123456789") == strlen(given) && strlen(given) < 16) {
		snprintf(with_host, sizeof(with_host), "127.0.0.1:%s", given);
		spec = with_host;
	}
	const char *colon = strrchr(spec, ':');
	char host[INET6_ADDRSTRLEN + 2], *end;
	size_t hl = colon ? (size_t)(colon - spec) : 0;
	long port = colon ? strtol(colon + 1, &end, 10) : 0;
	if (!colon || hl == 0 || hl >= sizeof(host) || colon[1] == '\0' || *end || port < 1 ||
	    port > 65535) {
		snprintf(why, whylen, "--http: '%s' is not ADDR:PORT with a port of 1-65535",
			 given);
		return -EINVAL;
	}
	memcpy(host, spec, hl);
	host[hl] = '\0';
	memset(a, 0, sizeof(*a));
	a->port = (unsigned)port;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a->ss;
	if (host[0] == '[' && host[hl - 1] == ']') {
		host[hl - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &v6->sin6_addr) == 1) {
			v6->sin6_family = AF_INET6;
			v6->sin6_port = htons((uint16_t)port);
			a->len = sizeof(*v6);
			a->loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
			a->wildcard = IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr);
			char text[INET6_ADDRSTRLEN];
			inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
			snprintf(a->host, sizeof(a->host), "[%s]", text);
			return 0;
		}
		host[hl - 1] = ']';
	} else if (!strcasecmp(host, "localhost") || inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		if (!strcasecmp(host, "localhost"))
			v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		a->len = sizeof(*v4);
		a->loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
		a->wildcard = v4->sin_addr.s_addr == htonl(INADDR_ANY);
		inet_ntop(AF_INET, &v4->sin_addr, a->host, sizeof(a->host));
		return 0;
	}
	snprintf(why, whylen,
		 "--http: '%s' is not an IPv4 address, an [IPv6] address in brackets "
		 "or localhost",
		 host);
	return -EINVAL;
}

static int address_check(const struct bind_addr *a, const struct shim_config *cfg, char *why,
			 size_t whylen)
{
	if (a->wildcard) {
		snprintf(why, whylen,
			 "--http: %s would listen on every interface; give the one "
			 "address to serve on",
			 a->host);
		return -EINVAL;
	}
	if (!a->loopback && !cfg->token_file) {
		snprintf(why, whylen,
			 "--http: %s is not a loopback address; serving it needs "
			 "--http-token-file",
			 a->host);
		return -EINVAL;
	}
	return 0;
}

static int listen_on(struct shim *sh, const struct bind_addr *a, char *why, size_t whylen)
{
	int one = 1;
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (a->ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, SOMAXCONN) < 0) {
		int e = errno;
		snprintf(why, whylen, "cannot listen on %s: %s", sh->address, strerror(e));
		if (fd >= 0)
			close(fd);
		return -e;
	}
	sh->listen_fd = fd;
	return 0;
}

/* --- requests ---------------------------------------------------------------- */

static bool is_json_type(const char *ct)
{
	static const char json[] = "application/json";
	if (!ct)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, json, sizeof(json) - 1) != 0)
		return false;
	ct += sizeof(json) - 1;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

static const char *header(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static enum MHD_Result answer_refusal(struct MHD_Connection *c, unsigned status, const char *msg)
{
	if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
		return shim_reply_busy(c, msg);
	return shim_reply_error(c, status, "%s", msg);
}

/* Refusals about the body: answered at once when the client waits for "100
 * Continue" before sending it, else after it was read (see the top). */
static enum MHD_Result refuse_body(struct shim_request *rq, struct MHD_Connection *c,
				   unsigned status, const char *msg, bool *answered)
{
	const char *expect = header(c, MHD_HTTP_HEADER_EXPECT);
	*answered = expect && strcasestr(expect, "100-continue");
	if (*answered)
		return answer_refusal(c, status, msg);
	rq->refused = status;
	snprintf(rq->refusal, sizeof(rq->refusal), "%s", msg);
	return MHD_YES;
}

static bool has_body(struct MHD_Connection *c)
{
	const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
	/* libmicrohttpd has refused a malformed Content-Length already, and
	 * shim_frame_check any Transfer-Encoding. */
	return cl && strtoull(cl, NULL, 10) > 0;
}

static enum MHD_Result body_check(struct shim *sh, struct shim_request *rq,
				  struct MHD_Connection *c, bool *answered)
{
	const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
	unsigned long long len = cl ? strtoull(cl, NULL, 10) : 0;
	char msg[160];
	if (!is_json_type(header(c, MHD_HTTP_HEADER_CONTENT_TYPE)))
		return refuse_body(rq, c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
				   "a request body must be Content-Type: application/json",
				   answered);
	if (len > rq->body.max) {
		snprintf(msg, sizeof(msg), "the body is %llu bytes, over the limit of %zu", len,
			 rq->body.max);
		return refuse_body(rq, c, MHD_HTTP_CONTENT_TOO_LARGE, msg, answered);
	}
	if (shim_conn_body_admit(sh, rq, (size_t)len) < 0)
		return refuse_body(rq, c, MHD_HTTP_SERVICE_UNAVAILABLE,
				   "request bodies being received use the shim's memory for them",
				   answered);
	/* Sized once: growing by doubling would hold up to twice the body. */
	if (buf_reserve(&rq->body, (size_t)len) < 0)
		return MHD_NO;
	return MHD_YES;
}

/* Host, Origin, token, route, name; then the body's type and size.
 * *answered: a refusal was queued. */
static enum MHD_Result request_check(struct shim *sh, struct shim_request *rq,
				     struct MHD_Connection *c, const char *url, const char *method,
				     bool *answered)
{
	rq->checked = true;
	enum MHD_Result ret = shim_auth_check(sh, c, answered);
	if (!*answered)
		ret = shim_route_find(sh, rq, c, url, method, answered);
	if (*answered)
		return ret;
	size_t max = shim_route_body_max(sh, rq);
	buf_init(&rq->body, max < SHIM_BODY_CEILING ? max : SHIM_BODY_CEILING);
	return rq->has_body ? body_check(sh, rq, c, answered) : MHD_YES;
}

/* The first call (see the top for when the checks run). */
static enum MHD_Result request_begin(struct shim *sh, struct MHD_Connection *c, const char *url,
				     const char *method, const char *version, void **con_cls)
{
	struct shim_request *rq = *con_cls; /* from shim_frame_on_uri */
	const char *bad = shim_frame_check(rq, c, method, url, version);
	if (!rq && !(rq = calloc(1, sizeof(*rq))))
		return MHD_NO;
	*con_cls = rq;
	rq->begun = true;
	if (bad)
		return shim_reply_bad_framing(c, bad);
	rq->has_body = has_body(c);
	shim_conn_headers_in(sh, c, rq->has_body);
	bool answered;
	return rq->has_body ? request_check(sh, rq, c, url, method, &answered) : MHD_YES;
}

/* One piece of the body: kept, or counted and dropped once refused. */
static enum MHD_Result body_take(struct shim_request *rq, const char *data, size_t n)
{
	rq->received += n;
	if (rq->received > SHIM_DISCARD_MAX)
		return MHD_NO; /* hang up on a client that will not stop */
	if (rq->refused)
		return MHD_YES;
	if (buf_append(&rq->body, data, n) < 0) {
		rq->refused = MHD_HTTP_CONTENT_TOO_LARGE;
		snprintf(rq->refusal, sizeof(rq->refusal),
			 "the body is over the limit of %zu bytes", rq->body.max);
		buf_done(&rq->body);
	}
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct shim *sh = cls;
	struct shim_request *rq = *con_cls;
	if (!rq || !rq->begun)
		return request_begin(sh, c, url, method, version, con_cls);
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		return body_take(rq, upload_data, n);
	}
	if (!rq->checked) {
		bool answered;
		enum MHD_Result ret = request_check(sh, rq, c, url, method, &answered);
		if (answered || ret == MHD_NO)
			return ret;
	}
	if (rq->refused)
		return answer_refusal(c, rq->refused, rq->refusal);
	const char *shape = shim_frame_json_shape(rq->body.data, rq->body.len);
	if (shape)
		return shim_reply_error(c, MHD_HTTP_BAD_REQUEST, "%s", shape);
	log_debug("http: %s %s", method, url);
	shim_conn_running(sh, c);
	return shim_route_run(sh, rq, c);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct shim *sh = cls;
	struct shim_request *rq = *con_cls;
	if (rq) {
		shim_conn_body_release(sh, rq);
		buf_done(&rq->body);
		free(rq);
		*con_cls = NULL;
	}
	shim_conn_done(sh, c);
}

/* The store's observer: streams follow their turn, snapshots go stale. */
static void on_store_change(void *data, uint64_t ctx, unsigned what)
{
	shim_view_on_change(data, ctx);
	shim_stream_on_change(data, ctx, what);
}

/* Paths are decoded by shim_route.c, one segment at a time: libmicrohttpd's
 * own unescaping would turn "%2F" into a separator before routing. */
static size_t on_unescape(void *cls, struct MHD_Connection *c, char *uri)
{
	return strlen(uri);
}

/* libmicrohttpd reports client trouble (resets, bad requests) as errors; they
 * are the client's, so they go to the debug log. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_debug("http: libmicrohttpd: %s", line);
}

/* --- life cycle ------------------------------------------------------------------ */

int shim_new(struct store *st, const struct shim_config *cfg, struct shim **ret, char *why,
	     size_t whylen)
{
	struct bind_addr a;
	int r = address_parse(cfg->address ? cfg->address : SHIM_DEFAULT_ADDRESS, &a, why, whylen);
	if (r == 0)
		r = address_check(&a, cfg, why, whylen);
	if (r < 0)
		return r;
	struct shim *sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	sh->st = st;
	sh->listen_fd = -1;
	sh->family = a.ss.ss_family;
	snprintf(sh->address, sizeof(sh->address), "%s:%u", a.host, a.port);
	shim_auth_init(sh, a.host, a.port);
	pthread_mutex_init(&sh->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sh->timer_cond, &ca);
	pthread_cond_init(&sh->view_cond, NULL);
	pthread_condattr_destroy(&ca);
	r = mcp_new(&sh->mcp);
	if (r == 0 && cfg->token_file)
		r = shim_auth_load_token(sh, cfg->token_file, why, whylen);
	if (r == 0)
		r = listen_on(sh, &a, why, whylen);
	if (r == 0 && store_observe(st, on_store_change, sh) < 0) {
		snprintf(why, whylen, "cannot watch the store for the HTTP shim");
		r = -ENOSPC;
	}
	if (r < 0) {
		shim_free(sh);
		return r;
	}
	*ret = sh;
	return 0;
}

const char *shim_address(const struct shim *sh)
{
	return sh->address;
}

int shim_start(struct shim *sh, char *why, size_t whylen)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			 MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET |
			 MHD_USE_ITC;
	if (sh->family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* clang-format off */
	sh->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, sh,
		MHD_OPTION_THREAD_POOL_SIZE, (unsigned)SHIM_THREADS,
		/* Split between the threads: each one's share is above what
		 * shim_accept.c ever hands over to all of them (see there). */
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)(SHIM_MAX_CONNECTIONS + 64) * SHIM_THREADS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SHIM_IDLE_TIMEOUT_S,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SHIM_CONN_MEMORY,
		/* Not 1: that closes the connection without an answer on a space in
		 * the path; shim_frame.c and shim_auth.c refuse what it would. */
		MHD_OPTION_STRICT_FOR_CLIENT, (int)0,
		MHD_OPTION_URI_LOG_CALLBACK, shim_frame_on_uri, NULL,
		MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, NULL,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, sh,
		MHD_OPTION_NOTIFY_CONNECTION, shim_conn_on_notify, sh,
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
		MHD_OPTION_END);
	/* clang-format on */
	if (!sh->mhd) {
		snprintf(why, whylen, "cannot start the HTTP server on %s", sh->address);
		return -EIO;
	}
	/* Connections come through shim_accept.c, which checks their request
	 * line and header block before libmicrohttpd reads them. */
	int r = shim_accept_start(sh);
	if (r < 0) {
		MHD_stop_daemon(sh->mhd);
		sh->mhd = NULL;
		snprintf(why, whylen, "cannot start the HTTP server on %s", sh->address);
		return r;
	}
	return 0;
}

void shim_stop(struct shim *sh)
{
	if (!sh)
		return;
	/* libmicrohttpd must not be stopped with suspended connections. */
	shim_accept_stop(sh);
	shim_stream_stop_all(sh);
	if (sh->mhd)
		MHD_stop_daemon(sh->mhd);
	sh->mhd = NULL;
}

void shim_free(struct shim *sh)
{
	if (!sh)
		return;
	shim_accept_free(sh);
	if (sh->listen_fd >= 0)
		close(sh->listen_fd);
	if (sh->token) {
		explicit_bzero(sh->token, SHIM_TOKEN_MAX + 2);
		free(sh->token);
	}
	mcp_free(sh->mcp);
	pthread_cond_destroy(&sh->timer_cond);
	pthread_cond_destroy(&sh->view_cond);
	pthread_mutex_destroy(&sh->lock);
	free(sh);
}
