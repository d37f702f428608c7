/* shim_stream.c — replies that stream: GET output and POST messages with SSE.
 *
 * A stream holds a reference to one turn and the offset of the next byte to
 * send.  libmicrohttpd pulls bytes through on_stream_read; when the turn has
 * none yet, the reader suspends the connection (reader returning 0 without
 * suspending would make libmicrohttpd spin) and the store's observer resumes
 * it when the turn changes.  The read and the decision to suspend happen under
 * shim->lock, and the observer takes the same lock, so a change can never slip
 * in between and leave a stream asleep.  Lock order: shim->lock, then the
 * store's lock (reply_read), then libmicrohttpd's own (suspend/resume; it calls
 * none of our callbacks while holding it).
 *
 * A suspended connection never times out and its client's disconnect goes
 * unnoticed until the next write, so SSE streams send a comment every
 * SHIM_HEARTBEAT_MS while idle: the timer thread resumes them for it, and a
 * write to a vanished client fails, libmicrohttpd closes the connection and
 * on_stream_free releases the turn.  The timer also looks at every suspended
 * stream's socket (plain-text streams cannot carry a heartbeat, and an MCP
 * client closing its stream means "cancel", which should not wait for one): a
 * client that closed its end (recv with MSG_PEEK sees end-of-file or a reset)
 * has its stream ended within a tick.  (A client that half-closes after its request and still reads
 * would be ended too; HTTP clients do not do that.)
 *
 * SSE: `delta` {"text"} for each piece of text (never splitting a UTF-8
 * character), then `done` {"stop_reason","usage"} or `error` {"type","message"}.
 * Text: the reply's bytes; a failed turn ends the body without its terminating
 * chunk, so the client sees an incomplete response as `cat` sees EIO.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "mcpfs/sse.h"
#include "mcpfs/utf8.h"
#include "shim_impl.h"

#define SSE_TEXT_MAX 16384	 /* bytes of reply text per delta event */
#define SSE_EVENT_MAX (1u << 20) /* bytes of one formatted event (escapes grow text) */
#define STREAM_BLOCK 16384	 /* libmicrohttpd's advisory read size */
#define TIMER_TICK_MS 1000

enum { FILLED = 1 }; /* internal: bytes are waiting in stream->out */

struct shim_stream {
	struct shim *sh;
	struct MHD_Connection *conn;
	struct reply *turn; /* a reference; NULL: a context without any turn */
	uint64_t ctx;
	bool sse;
	bool thinking; /* streams the turn's thinking (GET .../thinking), not its text */
	const struct shim_stream_fmt *fmt; /* NULL: the shim's own delta/done/error events */
	void *fmt_arg;
	uint64_t off;	/* bytes of the turn's text already sent */
	char *text;	/* SSE_TEXT_MAX + 1 bytes of scratch (SSE only) */
	struct buf out; /* formatted bytes not yet handed over */
	size_t out_off;
	bool ended;			 /* the final event is in out */
	int64_t last_write_ms;		 /* monotonic; written only while not suspended */
	bool suspended;			 /* under sh->lock */
	bool gone;			 /* its client closed the connection; under sh->lock */
	struct shim_stream *prev, *next; /* sh->streams; under sh->lock */
};

/* Under sh->lock: sleep until the observer or the timer wakes the stream. */
static ssize_t park_locked(struct shim_stream *s)
{
	if (s->sh->stopping)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	s->suspended = true;
	MHD_suspend_connection(s->conn);
	return 0;
}

static ssize_t text_next(struct shim_stream *s, char *dst, size_t max)
{
	if (!s->turn)
		return MHD_CONTENT_READER_END_OF_STREAM;
	pthread_mutex_lock(&s->sh->lock);
	ssize_t n = s->gone	  ? -ECONNRESET
		    : s->thinking ? reply_read_thinking(s->sh->st, s->turn, s->off, dst, max)
				  : reply_read(s->sh->st, s->turn, s->off, dst, max);
	if (n == -EAGAIN) {
		ssize_t p = park_locked(s);
		pthread_mutex_unlock(&s->sh->lock);
		return p;
	}
	pthread_mutex_unlock(&s->sh->lock);
	if (n > 0) {
		s->off += (uint64_t)n;
		return n;
	}
	return n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
}

/* Formats one event whose data is a JSON object (consumed). */
static int put_event(struct shim_stream *s, const char *name, cJSON *o)
{
	char *json = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (!json)
		return -ENOMEM;
	int r = sse_write_event(&s->out, name, json, strlen(json));
	free(json);
	return r;
}

static int put_delta(struct shim_stream *s, size_t n)
{
	size_t k = utf8_complete_prefix(s->text, n);
	if (k == 0)
		k = n; /* never happens with whole characters in the turn; do not stall */
	s->off += k;
	s->text[k] = '\0';
	if (s->fmt)
		return s->fmt->delta(s->fmt_arg, &s->out, s->text, k);
	cJSON *o = cJSON_CreateObject();
	if (o && !cJSON_AddStringToObject(o, "text", s->text)) {
		cJSON_Delete(o);
		o = NULL;
	}
	return put_event(s, "delta", o);
}

static bool add_usage(cJSON *o, const struct wire_usage *u)
{
	cJSON *j = cJSON_AddObjectToObject(o, "usage");
	return j && cJSON_AddNumberToObject(j, "input_tokens", (double)u->input_tokens) &&
	       cJSON_AddNumberToObject(j, "output_tokens", (double)u->output_tokens) &&
	       cJSON_AddNumberToObject(j, "cache_creation_input_tokens",
				       (double)u->cache_creation_input_tokens) &&
	       cJSON_AddNumberToObject(j, "cache_read_input_tokens",
				       (double)u->cache_read_input_tokens);
}

/* The final event: done after a complete reply (read returned 0), else error. */
static int put_end(struct shim_stream *s, ssize_t n)
{
	if (s->fmt) {
		s->ended = true;
		return s->fmt->end(s->fmt_arg, &s->out, s->turn, n == 0);
	}
	struct reply_outcome oc;
	reply_outcome(s->sh->st, s->turn, &oc);
	cJSON *o = cJSON_CreateObject();
	bool ok = o != NULL;
	if (ok && n == 0) {
		ok = (oc.stop_reason[0] ? cJSON_AddStringToObject(o, "stop_reason", oc.stop_reason)
					: cJSON_AddNullToObject(o, "stop_reason")) &&
		     add_usage(o, &oc.usage) &&
		     (!oc.cache_hit || cJSON_AddTrueToObject(o, "cache_hit"));
	} else if (ok) {
		ok = cJSON_AddStringToObject(o, "type",
					     oc.error.type[0] ? oc.error.type : "api_error") &&
		     cJSON_AddStringToObject(o, "message", oc.error.message);
	}
	if (!ok) {
		cJSON_Delete(o);
		o = NULL;
	}
	s->ended = true;
	return put_event(s, n == 0 ? "done" : "error", o);
}

static bool heartbeat_due(const struct shim_stream *s)
{
	return clock_mono_ms() - s->last_write_ms >= SHIM_HEARTBEAT_MS;
}

static ssize_t sse_next(struct shim_stream *s)
{
	if (!s->turn)
		return MHD_CONTENT_READER_END_OF_STREAM;
	pthread_mutex_lock(&s->sh->lock);
	if (s->gone) {
		pthread_mutex_unlock(&s->sh->lock);
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	ssize_t n = reply_read(s->sh->st, s->turn, s->off, s->text, SSE_TEXT_MAX);
	if (n == -EAGAIN && !heartbeat_due(s)) {
		ssize_t p = park_locked(s);
		pthread_mutex_unlock(&s->sh->lock);
		return p;
	}
	pthread_mutex_unlock(&s->sh->lock);
	int r;
	if (n > 0)
		r = put_delta(s, (size_t)n);
	else if (n == -EAGAIN)
		r = sse_write_comment(&s->out, "keep-alive");
	else
		r = put_end(s, n);
	if (r < 0)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	s->last_write_ms = clock_mono_ms();
	return FILLED;
}

static ssize_t on_stream_read(void *cls, uint64_t pos, char *dst, size_t max)
{
	struct shim_stream *s = cls;
	for (;;) {
		if (s->out_off < s->out.len) {
			size_t n = s->out.len - s->out_off;
			n = n < max ? n : max;
			memcpy(dst, s->out.data + s->out_off, n);
			s->out_off += n;
			return (ssize_t)n;
		}
		if (s->ended)
			return MHD_CONTENT_READER_END_OF_STREAM;
		buf_reset(&s->out);
		s->out_off = 0;
		ssize_t n = s->sse ? sse_next(s) : text_next(s, dst, max);
		if (n != FILLED || !s->sse)
			return n;
	}
}

/* libmicrohttpd destroys the response: the request ended, or its client went. */
static void on_stream_free(void *cls)
{
	struct shim_stream *s = cls;
	struct shim *sh = s->sh;
	pthread_mutex_lock(&sh->lock);
	if (s->prev)
		s->prev->next = s->next;
	else
		sh->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	sh->n_streams--;
	bool stopping = sh->stopping;
	pthread_mutex_unlock(&sh->lock);
	if (s->fmt)
		s->fmt->closed(s->fmt_arg, s->turn, s->ended, stopping);
	log_debug("http: stream of context %llu turn %llu closed after %llu bytes%s",
		  (unsigned long long)s->ctx,
		  (unsigned long long)(s->turn ? reply_turn(s->turn) : 0),
		  (unsigned long long)s->off, s->ended || !s->sse ? "" : " (unfinished)");
	reply_unref(sh->st, s->turn);
	buf_done(&s->out);
	free(s->text);
	free(s);
}

static struct shim_stream *stream_new(struct shim *sh, struct MHD_Connection *c, struct reply *t,
				      bool sse)
{
	struct shim_stream *s = calloc(1, sizeof(*s));
	if (s && sse)
		s->text = malloc(SSE_TEXT_MAX + 1);
	if (!s || (sse && !s->text)) {
		free(s);
		reply_unref(sh->st, t);
		return NULL;
	}
	s->sh = sh;
	s->conn = c;
	s->turn = t;
	s->ctx = t ? reply_context(t) : 0;
	s->sse = sse;
	buf_init(&s->out, SSE_EVENT_MAX);
	s->last_write_ms = clock_mono_ms();
	return s;
}

static enum MHD_Result stream_reply(struct shim *sh, struct MHD_Connection *c, struct reply *t,
				    bool sse, const struct shim_stream_fmt *fmt, void *arg,
				    bool thinking)
{
	struct shim_stream *s = stream_new(sh, c, t, sse);
	if (!s) {
		if (fmt)
			fmt->closed(arg, NULL, false, true);
		return MHD_NO;
	}
	s->thinking = thinking;
	s->fmt = fmt;
	s->fmt_arg = arg;
	if (fmt)
		s->out.max = SHIM_VIEWS_MAX; /* a whole reply goes in the final message */
	struct MHD_Response *r = MHD_create_response_from_callback(
	    MHD_SIZE_UNKNOWN, STREAM_BLOCK, on_stream_read, s, on_stream_free);
	if (!r) {
		if (fmt)
			fmt->closed(arg, s->turn, false, true);
		reply_unref(sh->st, s->turn);
		free(s->text);
		free(s);
		return MHD_NO;
	}
	pthread_mutex_lock(&sh->lock);
	s->next = sh->streams;
	if (s->next)
		s->next->prev = s;
	sh->streams = s;
	sh->n_streams++;
	pthread_mutex_unlock(&sh->lock);
	shim_reply_headers(r);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				sse ? "text/event-stream; charset=utf-8"
				    : "text/plain; charset=utf-8");
	/* Reverse proxies must pass each piece on as it comes. */
	MHD_add_response_header(r, "X-Accel-Buffering", "no");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r); /* on failure this frees the stream (on_stream_free) */
	return ret;
}

/* Under sh->lock. */
static void wake_locked(struct shim_stream *s)
{
	s->suspended = false;
	MHD_resume_connection(s->conn);
}

void shim_stream_on_change(void *data, uint64_t ctx, unsigned what)
{
	struct shim *sh = data;
	if (!(what & (STORE_CHANGED_OUTPUT | STORE_CHANGED_THINKING | STORE_CHANGED_DELETED)))
		return;
	/* A list, not a map by context: a change costs one pass over the live
	 * streams, a few hundred at most, under a lock held for microseconds. */
	pthread_mutex_lock(&sh->lock);
	for (struct shim_stream *s = sh->streams; s; s = s->next)
		if (s->suspended && s->ctx == ctx)
			wake_locked(s);
	pthread_mutex_unlock(&sh->lock);
}

/* Under sh->lock, for a suspended stream (libmicrohttpd leaves its socket
 * alone meanwhile): has the client closed its end? */
static bool client_gone(struct shim_stream *s)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	char b;
	if (!ci)
		return false;
	ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

void *shim_stream_timer_run(void *arg)
{
	struct shim *sh = arg;
	pthread_mutex_lock(&sh->lock);
	while (!sh->stopping) {
		int64_t now = clock_mono_ms();
		shim_conn_tick_locked(sh, now);
		for (struct shim_stream *s = sh->streams; s; s = s->next) {
			if (!s->suspended)
				continue;
			if (client_gone(s)) {
				s->gone = true;
				wake_locked(s);
			} else if (s->sse && now - s->last_write_ms >= SHIM_HEARTBEAT_MS) {
				wake_locked(s);
			}
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += TIMER_TICK_MS / 1000;
		pthread_cond_timedwait(&sh->timer_cond, &sh->lock, &ts);
	}
	pthread_mutex_unlock(&sh->lock);
	return NULL;
}

void shim_stream_stop_all(struct shim *sh)
{
	pthread_mutex_lock(&sh->lock);
	sh->stopping = true;
	for (struct shim_stream *s = sh->streams; s; s = s->next)
		if (s->suspended)
			wake_locked(s);
	pthread_cond_broadcast(&sh->timer_cond);
	pthread_mutex_unlock(&sh->lock);
}

enum MHD_Result shim_stream_reply(struct shim *sh, struct MHD_Connection *c, struct reply *t,
				  bool sse)
{
	return stream_reply(sh, c, t, sse, NULL, NULL, false);
}

enum MHD_Result shim_stream_thinking(struct shim *sh, struct MHD_Connection *c, struct reply *t)
{
	return stream_reply(sh, c, t, false, NULL, NULL, true);
}

enum MHD_Result shim_stream_reply_fmt(struct shim *sh, struct MHD_Connection *c, struct reply *t,
				      const struct shim_stream_fmt *fmt, void *arg)
{
	return stream_reply(sh, c, t, true, fmt, arg, false);
}
