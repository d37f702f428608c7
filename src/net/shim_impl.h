/* shim_impl.h — what the shim's files share (see include/mcpfs/shim.h).
 *
 *   shim.c         life cycle, the socket, libmicrohttpd's access handler: the
 *                  checks every request passes and the request body
 *   shim_auth.c    Host, Origin and bearer-token checks; the token file
 *   shim_route.c   the route table, path matching, JSON handlers
 *   shim_parse.c   a name segment and a JSON body parsed strictly (a leaf)
 *   shim_reply.c   responses: JSON, errors, the one errno-to-status table
 *   shim_stream.c  streamed replies: suspend, resume, heartbeat, shutdown
 *   shim_frame.c   the request's own bytes: what libmicrohttpd tolerates and
 *                  the shim refuses (request smuggling, NULs, bare LFs)
 *   shim_conn.c    connections: header deadlines, the reserve, eviction, the
 *                  budgets of bodies and renderings in flight
 *   shim_view.c    renderings (history, transcript) as shared immutable
 *                  snapshots, one copy however many clients read them
 *   shim_meta.c    metadata: the meta.KEY=VALUE filter of the listing, and
 *                  the "meta" member of POST and PATCH bodies
 *
 * Threads: libmicrohttpd's pool calls the handlers and readers (one connection
 * stays on one thread, so a struct shim_request or shim_stream is owned by it);
 * the store's observer runs on whichever thread changed the store; the timer
 * runs on its own thread.  They meet only under shim->lock.
 */
#ifndef MCPFS_SHIM_IMPL_H
#define MCPFS_SHIM_IMPL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "mcpfs/buf.h"
#include "mcpfs/meta.h"
#include "mcpfs/shim.h"
#include "mcpfs/store.h"

#define SHIM_TOKEN_MAX 4096	    /* bytes of a bearer token file */
#define SHIM_TOKEN_MIN 16	    /* characters: shorter tokens are guessable */
#define SHIM_HOSTS 5		    /* allowed Host values */
#define SHIM_ORIGINS 3		    /* allowed Origin values */
#define SHIM_JSON_SLACK (64u << 10) /* bytes of JSON around a message, over 2x its limit */

/* Memory (SECURITY.md §7, doc/reliability.md "Hostile HTTP clients"): what
 * the shim holds for its clients at once is bounded whatever they send.
 * SHIM_BODY_CEILING: bytes of one body, whatever max_input_bytes says;
 * SHIM_BODIES_MAX: of request bodies held at once, all clients together;
 * SHIM_VIEWS_MAX: of renderings being sent at once (and so of one rendering);
 * SHIM_JSON_*: nesting and values (commas, colons, brackets) of a body. */
/* Attachments of POST …/messages (CONTRACT §9) travel in its body, so the
 * ceiling bounds them too: about 6 MiB of files in base64 per request
 * (doc/http-api.md); larger ones go through the mount's attach/. */
#define SHIM_BODY_CEILING ((8u << 20) + SHIM_JSON_SLACK)
#define SHIM_BODIES_MAX (24u << 20)
#define SHIM_VIEWS_MAX (96u << 20)
#define SHIM_JSON_DEPTH_MAX 32
#define SHIM_JSON_TOKENS_MAX 4096

/* Connections (doc/reliability.md "Connection exhaustion").  Of libmicrohttpd's
 * SHIM_MAX_CONNECTIONS, SHIM_RESERVE are kept for short requests: streams and
 * clients still sending headers never take them.  A request's whole header
 * block has SHIM_HEADER_TIMEOUT_MS from the connection's start or its previous
 * answer, its whole body SHIM_BODY_TIMEOUT_MS from its headers; a connection
 * waiting SHIM_EVICT_AGE_MS for its headers may be closed to keep the reserve.
 * Retry-After of a 503: SHIM_RETRY_AFTER_S. */
#define SHIM_MAX_CONNECTIONS 1024
#define SHIM_RESERVE 64
#define SHIM_STREAMS_MAX (SHIM_MAX_CONNECTIONS - SHIM_RESERVE)
#define SHIM_HEADER_TIMEOUT_MS 10000
#define SHIM_BODY_TIMEOUT_MS 60000
#define SHIM_EVICT_AGE_MS 500
#define SHIM_RETRY_AFTER_S 2
/* shim_accept.c: a request line and header block of more than
 * SHIM_HEADER_MAX bytes or SHIM_HEADER_LINES header lines get 431 (what
 * passes fits libmicrohttpd's SHIM_CONN_MEMORY); a Content-Length of more
 * than SHIM_LENGTH_DIGITS digits is over any ceiling (413). */
#define SHIM_HEADER_MAX (16u << 10)
#define SHIM_HEADER_LINES 100
#define SHIM_LENGTH_DIGITS 15

struct cJSON;
struct mcp;
struct shim_stream;
struct shim_conn;
struct shim_view;
struct shim_accept;

/* Everything above `lock` is set by shim_new/shim_start and read-only while
 * requests are served. */
struct shim {
	struct store *st;
	struct MHD_Daemon *mhd;	      /* NULL until shim_start */
	int listen_fd;		      /* bound by shim_new; accepted on by shim_accept.c */
	struct shim_accept *acceptor; /* its thread: shim_start to shim_free */
	int family;		      /* AF_INET or AF_INET6 */
	unsigned port;		      /* listening port */
	char address[64];	      /* "127.0.0.1:61900", "[::1]:8080" */
	char hosts[SHIM_HOSTS][72];   /* Host values accepted (compared ignoring case) */
	size_t n_hosts;
	char origins[SHIM_ORIGINS][80];
	char *token; /* NUL-terminated, or NULL: no token needed; wiped on free */
	size_t token_len;
	pthread_mutex_t lock;
	pthread_cond_t timer_cond;	      /* wakes the timer thread at shutdown */
	struct shim_stream *streams;	      /* every live stream; under lock */
	struct mcp *mcp;		      /* the MCP endpoint's sessions (src/net/mcp.c) */
	bool stopping;			      /* under lock: no stream may suspend any more */
	struct shim_conn *conns, *conns_tail; /* every connection, oldest first; under lock */
	unsigned n_conns, n_streams;	      /* under lock */
	unsigned n_closing;		      /* of n_conns, shut down by shim_conn.c */
	size_t body_bytes;		      /* of bodies admitted, not yet done; under lock */
	size_t view_bytes;		      /* of live snapshots; under lock */
	struct shim_view *views;	      /* live snapshots; under lock */
	pthread_cond_t view_cond;	      /* a snapshot stopped being rendered; with lock */
	uint64_t evicted;		      /* connections closed for their deadline or
					       * to keep the reserve; under lock */
};

/* One request in progress: libmicrohttpd's per-request pointer. */
struct shim_request {
	const struct shim_route *route; /* NULL until routed */
	char name[STORE_NAME_MAX + 1];	/* the decoded context name, when the path has one */
	uint64_t id;			/* its context */
	struct buf body;		/* capped at the route's body limit */
	bool has_body;			/* a Content-Length over 0 */
	bool begun;			/* the access handler's first call ran */
	bool checked;			/* request_check ran */
	const char *uri;		/* the raw request target as libmicrohttpd first
					 * saw it (URI log callback), or NULL */
	size_t uri_len;			/* its length up to the first NUL */
	bool uri_bad;			/* it has a space or a control character */
	size_t admitted;		/* bytes counted in shim->body_bytes */
	size_t received;		/* bytes of body received, kept or not */
	unsigned refused;		/* a status to answer once the body is in, or 0 */
	char refusal[160];		/* its message */
};

/* A handler runs when the whole request is in; it queues exactly one response
 * (through shim_reply_*) and returns what that returned. */
typedef enum MHD_Result shim_handler_fn(struct shim *sh, struct shim_request *rq,
					struct MHD_Connection *c);

/* --- shim_accept.c --- */

/* Starts the thread that accepts on listen_fd, holds each connection until
 * its request line and header block are in and pass shim_frame_peek_check,
 * and then hands it to sh->mhd (started with MHD_USE_NO_LISTEN_SOCKET).
 * 0 or -errno. */
int shim_accept_start(struct shim *sh);
/* Stops that thread (before MHD_stop_daemon); closes the connections it held.
 * shim_accept_free, after MHD_stop_daemon (whose workers call
 * shim_accept_closed until then), frees what is left. */
void shim_accept_stop(struct shim *sh);
void shim_accept_free(struct shim *sh);
/* A connection it handed over closed (libmicrohttpd's CLOSED notification). */
void shim_accept_closed(struct shim *sh);

/* --- shim_frame.c --- */

/* libmicrohttpd's URI log callback: the request line was just parsed.  Returns
 * the request's struct shim_request (NULL when out of memory). */
void *shim_frame_on_uri(void *cls, const char *uri, struct MHD_Connection *c);

/* Checks the bytes of the request line and header block as received (not as
 * libmicrohttpd parsed them): NULL when sound, else why it is refused (400,
 * connection closed).  Call in the access handler's first call. */
const char *shim_frame_check(const struct shim_request *rq, struct MHD_Connection *c,
			     const char *method, const char *url, const char *version);

/* The first n bytes s of a connection, as they wait in its socket: NULL when
 * nothing in them is wrong, with *len the length of the request line and
 * header block (its empty line included) when they are all in s, else 0;
 * else why the request is refused, *status set to 413 for a Content-Length of
 * more than SHIM_LENGTH_DIGITS digits, 431 past SHIM_HEADER_LINES header
 * lines, and left as it is (400) otherwise. */
const char *shim_frame_peek_check(const char *s, size_t n, size_t *len, unsigned *status);

/* A request body's JSON shape before parsing: raw control characters in
 * strings, nesting over SHIM_JSON_DEPTH_MAX, over SHIM_JSON_TOKENS_MAX values.
 * NULL when acceptable, else why (400). */
const char *shim_frame_json_shape(const char *s, size_t n);

/* --- shim_conn.c --- */

/* libmicrohttpd's connection notifier: counts connections, keeps the reserve
 * (evicting the connection waiting longest for its headers). */
void shim_conn_on_notify(void *cls, struct MHD_Connection *c, void **socket_context,
			 enum MHD_ConnectionNotificationCode toe);

/* The request's headers are in (its body follows until the body deadline), or
 * its handler ran (no deadline), or it was answered (the next request's header
 * deadline starts). */
void shim_conn_headers_in(struct shim *sh, struct MHD_Connection *c, bool body_follows);
void shim_conn_running(struct shim *sh, struct MHD_Connection *c);
void shim_conn_done(struct shim *sh, struct MHD_Connection *c);

/* Under sh->lock, from the timer: closes connections past their deadline. */
void shim_conn_tick_locked(struct shim *sh, int64_t now_ms);

/* Admits n more bytes of body (all or nothing).  0, or -EAGAIN over
 * SHIM_BODIES_MAX. */
int shim_conn_body_admit(struct shim *sh, struct shim_request *rq, size_t n);
void shim_conn_body_release(struct shim *sh, struct shim_request *rq);

/* A stream may start: fewer than SHIM_STREAMS_MAX are live. */
bool shim_conn_stream_room(struct shim *sh);

/* --- shim_view.c --- */

/* Answers 200 with a rendering of context id, shared with every other reader
 * of the same unchanged rendering; 503 when SHIM_VIEWS_MAX is in use. */
enum MHD_Result shim_view_reply(struct shim *sh, uint64_t id, enum view_kind kind,
				struct MHD_Connection *c);

/* The store observer's part: renderings of ctx are stale from now on. */
void shim_view_on_change(struct shim *sh, uint64_t ctx);

/* --- shim_auth.c --- */

/* Reads the token file (owner-only, one line of printable ASCII, at least
 * SHIM_TOKEN_MIN characters).  0, -errno + why. */
int shim_auth_load_token(struct shim *sh, const char *path, char *why, size_t whylen);

/* Fills the Host and Origin allow-lists for the bound address and port. */
void shim_auth_init(struct shim *sh, const char *bound_host, unsigned port);

/* Checks Host, Origin and the token; on refusal queues the 403 or 401 and sets
 * *refused.  Returns what queueing returned (MHD_YES when nothing was queued). */
enum MHD_Result shim_auth_check(struct shim *sh, struct MHD_Connection *c, bool *refused);

/* --- shim_route.c --- */

/* Routes a request (first call of the access handler): parses the path,
 * decodes the name, finds the context.  On failure queues the 404/405/400 and
 * sets *refused. */
enum MHD_Result shim_route_find(struct shim *sh, struct shim_request *rq, struct MHD_Connection *c,
				const char *url, const char *method, bool *refused);

/* The body limit of a routed request, in bytes. */
size_t shim_route_body_max(struct shim *sh, const struct shim_request *rq);

/* Runs the routed request's handler. */
enum MHD_Result shim_route_run(struct shim *sh, struct shim_request *rq, struct MHD_Connection *c);

/* The resource a raw (undecoded) path names, as an index into the route table's
 * resources, and its still-encoded name segment (*seg NULL when the path names
 * none; else *seg points into url).  0, or -ENOENT for a path of no resource. */
int shim_route_parse_path(const char *url, int *res, const char **seg, size_t *seg_len);

/* --- shim_parse.c --- */

/* A request body as a JSON object (*ret, the caller's to delete) whose keys are
 * all in keys (NULL-terminated); an empty body is {} when optional.  Refuses
 * invalid UTF-8, "\u0000" anywhere, anything but one object, text after it, an
 * unknown key, a key given twice at any depth and an inner object of more than
 * 256 keys: -EINVAL with why.  -ENOMEM.  Needs no connection. */
int shim_parse_body(const char *s, size_t n, bool optional, const char *const *keys,
		    struct cJSON **ret, char *why, size_t whylen);

/* Decodes one percent-encoded path segment into out (a context name): refuses
 * bad escapes, a decoded '/' or NUL, "." and "..", and what store_name_check
 * refuses.  0, -EINVAL, -ENAMETOOLONG, with why. */
int shim_parse_name(const char *seg, size_t len, char *out, size_t outlen, char *why,
		    size_t whylen);
/* The message of a context name store_name_check refuses, into why. */
void shim_parse_name_problem(char *why, size_t whylen);
/* The value of a hex digit (either case), -1 for any other byte. */
int shim_parse_hex(char c);

/* --- shim_reply.c --- */

enum MHD_Result shim_reply_json(struct MHD_Connection *c, unsigned status, struct cJSON *json);
enum MHD_Result shim_reply_empty(struct MHD_Connection *c, unsigned status);
enum MHD_Result shim_reply_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Maps a negative errno through the one table; why is the message. */
enum MHD_Result shim_reply_errno(struct MHD_Connection *c, int err, const char *why);
enum MHD_Result shim_reply_not_allowed(struct MHD_Connection *c, const char *allow);
/* 400 with Connection: close, for a request whose body cannot be framed safely
 * (the rest of the connection's bytes cannot be trusted to start a request). */
enum MHD_Result shim_reply_bad_framing(struct MHD_Connection *c, const char *why);
enum MHD_Result shim_reply_unauthorized(struct MHD_Connection *c, bool had_credentials);
/* 503 with Retry-After: SHIM_RETRY_AFTER_S, for a limit that frees itself. */
enum MHD_Result shim_reply_busy(struct MHD_Connection *c, const char *why);
/* Adds the headers every response carries, Connection: close among them. */
void shim_reply_headers(struct MHD_Response *r);
/* The error type of a status ("invalid_request_error" for 400). */
const char *shim_reply_type(unsigned status);
unsigned shim_reply_status(int err);

/* --- shim_attach.c --- */

/* Puts the "attachments" of a message body (arr, NULL for none) into the
 * context's attach/; on failure nothing of them stays, *status is the HTTP
 * status and why the reason.  *added counts those put (for _undo). */
int shim_attach_add(struct shim *sh, uint64_t id, const struct cJSON *arr, size_t *added,
		    unsigned *status, char *why, size_t whylen);
void shim_attach_undo(struct shim *sh, uint64_t id, const struct cJSON *arr, size_t n);

/* --- shim_stream.c --- */

/* Answers with a stream of turn t (reference taken; NULL: an empty stream):
 * text/plain of the reply, or SSE delta/done/error events when sse. */
enum MHD_Result shim_stream_reply(struct shim *sh, struct MHD_Connection *c, struct reply *t,
				  bool sse);
/* The same for the turn's thinking (GET .../thinking): text/plain, streamed
 * while it grows, ending with the reply. */
enum MHD_Result shim_stream_thinking(struct shim *sh, struct MHD_Connection *c, struct reply *t);

/* A stream in another format than the shim's own events (the MCP endpoint's
 * JSON-RPC messages over SSE).  delta: bytes of reply text (whole UTF-8
 * characters, NUL-terminated) to format into out, which may stay empty.  end:
 * the final bytes; complete is false for a failed turn.  closed: the stream
 * is gone (finished: end ran; stopping: the shim is shutting down) and arg may
 * be freed; also called, with t NULL, when the stream could not be set up.
 * All three run on the connection's thread without shim->lock. */
struct shim_stream_fmt {
	int (*delta)(void *arg, struct buf *out, const char *text, size_t n);
	int (*end)(void *arg, struct buf *out, struct reply *t, bool complete);
	void (*closed)(void *arg, struct reply *t, bool finished, bool stopping);
};

/* shim_stream_reply as SSE in fmt's format; fmt->closed(arg) is called exactly
 * once, whatever happens. */
enum MHD_Result shim_stream_reply_fmt(struct shim *sh, struct MHD_Connection *c, struct reply *t,
				      const struct shim_stream_fmt *fmt, void *arg);

/* The store observer: resumes the streams of a context that changed. */
void shim_stream_on_change(void *sh, uint64_t ctx, unsigned what);

/* Shutdown: no stream suspends from now on; suspended ones are resumed and end. */
void shim_stream_stop_all(struct shim *sh);

/* shim_meta.c: GET /v1/contexts?meta.KEY=VALUE (several: all must hold;
 * meta.KEY alone: the key is present), and a body's "meta" member. */
struct shim_filter {
	char *keys[META_KEYS_MAX]; /* decoded parameter names, heap */
	char *values[META_KEYS_MAX];
	struct meta_filter c[META_KEYS_MAX];
	size_t n;
};
/* 0, or -EINVAL with why (a bad encoding, key or value, too many). */
int shim_meta_filter_parse(struct MHD_Connection *c, struct shim_filter *f, char *why,
			   size_t whylen);
void shim_meta_filter_done(struct shim_filter *f);
bool shim_meta_filter_match(struct shim *sh, const struct shim_filter *f, uint64_t id);
/* The body's "meta" checked (-EINVAL + why for any mistake of the client),
 * then applied (context_meta_patch's errnos). */
int shim_meta_check(struct shim *sh, uint64_t id, const struct cJSON *body, char *why,
		    size_t whylen);
int shim_meta_apply(struct shim *sh, uint64_t id, const struct cJSON *body, char *why,
		    size_t whylen);

#endif
