/* claude_call.c — one call on the network thread: its transfer, the header and
 * body callbacks, the outcome of each attempt and the retry rule (see claude.h
 * for the rules, claude_impl.h for the threads).
 *
 * Callbacks never call curl_multi_*(): they set call->fail and make curl abort
 * the transfer (a short count), and claude_call_done() finishes the attempt.
 * The one exception to "the end is reported from the loop" is message_stop: the
 * call is reported complete from inside the body callback, so that readers see
 * the end at once, and the transfer drains briefly for connection reuse.
 *
 * It calls back into claude.c (claude_ended, claude_random): a loop and its
 * items, the one circle of src/net (claude.c says why it stays).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "mcpfs/store.h"
#include "mcpfs/wire.h"
#include "claude_impl.h"

#define CLAUDE_MAX_EVENT (16u << 20)	  /* bytes of one SSE event */
#define CLAUDE_MAX_ERROR_BODY (64u << 10) /* bytes of a non-200 body kept to quote */
#define CLAUDE_MAX_HINT_MS 60000	  /* a longer retry-after is ignored (SDK rule) */
/* After message_stop the transfer may drain, so that the connection can be
 * reused, for this long in all (not since the last byte: an upstream that keeps
 * trickling bytes would keep its connection forever) and this many bytes; then
 * the connection is dropped. */
#define CLAUDE_DRAIN_MS 2000
#define CLAUDE_DRAIN_MAX_BYTES (64u << 10)

static void copy_str(char *dst, size_t size, const char *src, size_t len)
{
	if (len > size - 1)
		len = size - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static void call_fail(struct claude_call *call, int code, bool retryable, const char *type,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void call_fail(struct claude_call *call, int code, bool retryable, const char *type,
		      const char *fmt, ...)
{
	char msg[sizeof(call->err.message)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	api_error_set(&call->err, type, "%s", msg);
	call->err.http_status = (int)call->status;
	call->err.retryable = retryable;
	call->fail = code;
}

/* One token count of the log line: the number, or "-" when the API sent none. */
static const char *usage_field(char *out, size_t len, unsigned present, unsigned bit, int64_t n)
{
	if (present & bit)
		snprintf(out, len, "%" PRId64, n);
	else
		snprintf(out, len, "-");
	return out;
}

/* "context 'c', model m, tokens in=1 out=2 cache_creation=0 cache_read=0" */
static void call_label(const struct claude_call *call, char *out, size_t len)
{
	const struct wire_usage *u = &call->usage;
	char a[24], b[24], c[24], d[24], name[STORE_NAME_MAX * 2 + 8];
	log_quote(name, sizeof(name), call->context, strlen(call->context));
	snprintf(out, len,
		 "context '%s', model %s, tokens in=%s out=%s cache_creation=%s "
		 "cache_read=%s",
		 name, call->model,
		 usage_field(a, sizeof(a), u->present, WIRE_USAGE_INPUT, u->input_tokens),
		 usage_field(b, sizeof(b), u->present, WIRE_USAGE_OUTPUT, u->output_tokens),
		 usage_field(c, sizeof(c), u->present, WIRE_USAGE_CACHE_CREATION,
			     u->cache_creation_input_tokens),
		 usage_field(d, sizeof(d), u->present, WIRE_USAGE_CACHE_READ,
			     u->cache_read_input_tokens));
}

/* Reports the end once: store, log, in-flight count.  Safe inside callbacks.
 * The log line is the one line per call at info level (warning when it failed):
 * status, latency, retries, context, model, tokens, request id — never content,
 * which only the core's debug lines carry. */
static void call_end(struct claude_call *call, int code)
{
	struct claude *c = call->c;
	struct api_error *e = &call->err;
	long long ms = (long long)(clock_mono_ms() - call->start_ms);
	char label[STORE_NAME_MAX * 2 + SETTINGS_MODEL_MAX + 256];

	if (call->ended)
		return;
	call->ended = true;
	call->ended_ms = clock_mono_ms();
	call->c->retick = true; /* its drain deadline is new */
	call_label(call, label, sizeof(label));
	if (code == 0)
		log_info("call %" PRIu64 ": HTTP %ld, %lld ms, %d retries, %s, stop %s, "
			 "request id '%s'",
			 call->id, call->status, ms, call->retries, label,
			 call->stop_reason[0] ? call->stop_reason : "-", call->request_id);
	else if (code == -ECANCELED)
		log_info("call %" PRIu64 ": %s after %lld ms, %d retries, %s, request id '%s'",
			 call->id, e->type, ms, call->retries, label, call->request_id);
	else
		log_warn("call %" PRIu64 " failed: %s: %s (HTTP %d, %lld ms, %d retries, %s, "
			 "request id '%s')",
			 call->id, e->type, e->message, e->http_status, ms, call->retries, label,
			 e->request_id);
	/* Counted out first: once the store hears of the end, the count agrees. */
	claude_ended(c);
	reply_call_end(c->st, call->id, code, e);
}

void claude_call_free(struct claude_call *call)
{
	struct claude *c = call->c;
	for (struct claude_call **p = &c->calls; *p; p = &(*p)->next)
		if (*p == call) {
			*p = call->next;
			break;
		}
	if (call->easy) {
		if (call->active)
			curl_multi_remove_handle(c->multi, call->easy);
		curl_easy_cleanup(call->easy);
	}
	free(call->body);
	buf_done(&call->errbody);
	sse_done(&call->sse);
	free(call);
}

static void call_finish(struct claude_call *call, int code)
{
	call_end(call, code);
	claude_call_free(call);
}

/* message_start carries the input side, message_delta the cumulative counts:
 * each assigns the fields it has. */
static void usage_merge(struct claude_call *call, const struct wire_event *we)
{
	const struct wire_usage *f = &we->usage;
	struct wire_usage *u = &call->usage;
	if (f->present & WIRE_USAGE_INPUT)
		u->input_tokens = f->input_tokens;
	if (f->present & WIRE_USAGE_OUTPUT)
		u->output_tokens = f->output_tokens;
	if (f->present & WIRE_USAGE_CACHE_CREATION)
		u->cache_creation_input_tokens = f->cache_creation_input_tokens;
	if (f->present & WIRE_USAGE_CACHE_READ)
		u->cache_read_input_tokens = f->cache_read_input_tokens;
	u->present |= f->present;
	if (we->type == WIRE_MESSAGE_DELTA && we->stop_reason[0])
		copy_str(call->stop_reason, sizeof(call->stop_reason), we->stop_reason,
			 strlen(we->stop_reason));
}

static int on_sse_event(void *data, const struct sse_event *ev)
{
	struct claude_call *call = data;
	struct wire_event we;

	if (call->ended)
		return 0;
	if (wire_event_decode(ev->name, ev->name_len, ev->data, ev->data_len, &we) < 0) {
		int n = ev->name_len > 64 ? 64 : (int)ev->name_len;
		call_fail(call, -EIO, true, "stream_error", "malformed '%.*s' event in the stream",
			  n, ev->name);
		return -EINVAL;
	}
	int r = 0;
	if (we.type == WIRE_ERROR) {
		/* An error event ends the stream; the store hears of it at the end. */
		call->err = we.error;
		call->err.http_status = (int)call->status;
		call->err.retryable = wire_error_type_retryable(we.error.type);
		call->fail = -EIO;
		r = -EIO;
	} else {
		if (we.type == WIRE_MESSAGE_START || we.type == WIRE_MESSAGE_DELTA)
			usage_merge(call, &we);
		if ((we.type == WIRE_BLOCK_START || we.type == WIRE_BLOCK_DELTA) &&
		    we.block == WIRE_BLOCK_TEXT && we.text_len > 0)
			call->text_delivered = true;
		if (reply_call_event(call->c->st, call->id, &we) == -ECANCELED) {
			call_fail(call, -ECANCELED, false, "cancelled",
				  "the call is no longer wanted");
			r = -ECANCELED;
		} else if (we.type == WIRE_MESSAGE_STOP) {
			call_end(call, 0);
		}
	}
	wire_event_done(&we);
	return r;
}

static size_t on_write(char *p, size_t size, size_t n, void *data)
{
	struct claude_call *call = data;
	size_t len = size * n;

	call->last_byte_ms = clock_mono_ms();
	if (call->ended) { /* draining after message_stop */
		call->drained += len;
		return call->drained > CLAUDE_DRAIN_MAX_BYTES ? 0 : len;
	}
	if (call->fail)
		return 0;
	if (!call->sse_mode) {
		/* An error body is only quoted in the error message: its start is enough. */
		size_t room = call->errbody.max - call->errbody.len;
		if (buf_append(&call->errbody, p, len < room ? len : room) < 0)
			call_fail(call, -EIO, false, "stream_error", "out of memory");
		return call->fail ? 0 : len;
	}
	int r = sse_feed(&call->sse, p, len, on_sse_event, call);
	reply_call_flush(call->c->st); /* readers see the chunk's events at once */
	if (r < 0 && !call->fail) {
		if (r == -EFBIG) /* not worth retrying: the reply would not shrink */
			call_fail(call, -EIO, false, "stream_error",
				  "an event of the stream is over %u bytes", CLAUDE_MAX_EVENT);
		else
			call_fail(call, -EIO, true, "stream_error", "cannot parse the stream: %s",
				  strerror(-r));
	}
	return r < 0 ? 0 : len;
}

/* A header's number of ms, rounded up; -1 when it is not a number in range
 * (a NaN fails both comparisons). */
static int64_t parse_ms(const char *v, double scale)
{
	char *end;
	double x = strtod(v, &end) * scale;
	if (end == v || *end != '\0' || !(x > -1e15 && x < 1e15))
		return -1;
	int64_t ms = (int64_t)x;
	return ms < x ? ms + 1 : ms;
}

/* retry-after: delta-seconds (the SDKs accept a fraction) or an HTTP-date. */
static int64_t parse_retry_after(const char *v)
{
	int64_t ms = parse_ms(v, 1000.0);
	if (ms >= 0)
		return ms;
	time_t t = curl_getdate(v, NULL);
	if (t == (time_t)-1)
		return -1;
	return ((int64_t)t - (int64_t)time(NULL)) * 1000;
}

static void header_field(struct claude_call *call, const char *p, size_t len)
{
	const char *colon = memchr(p, ':', len);
	if (!colon)
		return;
	size_t nlen = (size_t)(colon - p);
	const char *v = colon + 1, *end = p + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	char val[256];
	copy_str(val, sizeof(val), v, (size_t)(end - v));

#define IS(name) (nlen == sizeof(name) - 1 && strncasecmp(p, name, nlen) == 0)
	if (IS("request-id")) {
		copy_str(call->request_id, sizeof(call->request_id), val, strlen(val));
	} else if (IS("retry-after-ms")) {
		call->hint_ms = parse_ms(val, 1.0);
	} else if (IS("retry-after")) {
		call->hint_s_ms = parse_retry_after(val);
	} else if (IS("x-should-retry")) {
		if (strcasecmp(val, "true") == 0)
			call->should_retry = 1;
		else if (strcasecmp(val, "false") == 0)
			call->should_retry = 0;
	}
#undef IS
}

/* The end of a header block: decides what the body is.  0, or -1 to abort. */
static int header_end(struct claude_call *call)
{
	long status = 0;
	char *ct = NULL;
	if (call->status)
		return 0; /* trailers after a chunked body */
	curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200)
		return 0; /* 1xx: the real header block follows */
	call->status = status;
	curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ct);
	if (status != 200)
		return 0;
	if (!ct || strncasecmp(ct, "text/event-stream", 17) != 0) {
		call_fail(call, -EIO, false, "stream_error",
			  "the API answered 200 with content-type '%s', not an event stream",
			  ct ? ct : "");
		return -1;
	}
	call->sse_mode = true;
	reply_call_response(call->c->st, call->id, (int)status, call->request_id);
	return 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
	struct claude_call *call = data;
	size_t len = size * n;

	call->last_byte_ms = clock_mono_ms();
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		/* A new header block (after a 1xx): forget the previous one's. */
		call->request_id[0] = '\0';
		call->should_retry = -1;
		call->hint_ms = call->hint_s_ms = -1;
	} else if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
		if (header_end(call) < 0)
			return 0;
	} else {
		header_field(call, p, len);
	}
	return len;
}

/* Sending the body counts as activity for the idle timeout: a large request on a
 * slow link must not time out before the server has it all. */
static int on_progress(void *data, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct claude_call *call = data;
	if (ulnow != call->sent) {
		call->sent = ulnow;
		call->last_byte_ms = clock_mono_ms();
	}
	return 0;
}

static int call_setup(struct claude_call *call)
{
	struct claude *c = call->c;
	CURL *e = curl_easy_init();
	if (!e)
		return -ENOMEM;
	call->easy = e;
	bool ok = curl_easy_setopt(e, CURLOPT_URL, c->url) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_USERAGENT, "mcpfs/" MCPFS_VERSION) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len) ==
		      CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 15L) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_XFERINFODATA, call) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_HEADERDATA, call) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_WRITEDATA, call) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_PRIVATE, call) == CURLE_OK &&
		  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf) == CURLE_OK;
	if (ok && call->connect_timeout_ms > 0)
		ok = curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
				      (long)call->connect_timeout_ms) == CURLE_OK;
	return ok ? 0 : -ENOMEM;
}

/* Starts an attempt (the first, or a retry whose time has come). */
static void call_attempt(struct claude_call *call)
{
	call->status = 0;
	call->sse_mode = false;
	call->fail = 0;
	call->should_retry = -1;
	call->hint_ms = call->hint_s_ms = -1;
	call->request_id[0] = '\0';
	call->errbuf[0] = '\0';
	memset(&call->usage, 0, sizeof(call->usage));
	call->stop_reason[0] = '\0';
	call->retry_at_ms = 0;
	call->sent = 0;
	call->last_byte_ms = clock_mono_ms();
	api_error_clear(&call->err);
	buf_reset(&call->errbody);
	sse_reset(&call->sse);
	CURLMcode mc = curl_multi_add_handle(call->c->multi, call->easy);
	if (mc != CURLM_OK) {
		call_fail(call, -EIO, false, "connection_error", "cannot start the transfer: %s",
			  curl_multi_strerror(mc));
		call_finish(call, -EIO);
		return;
	}
	call->active = true;
}

void claude_call_new(struct claude *c, struct call_spec *spec)
{
	struct claude_call *call = calloc(1, sizeof(*call));
	if (!call) {
		struct api_error e;
		api_error_clear(&e);
		api_error_set(&e, "connection_error", "out of memory");
		free(spec->body);
		claude_ended(c);
		reply_call_end(c->st, spec->call_id, -EIO, &e);
		return;
	}
	call->c = c;
	call->id = spec->call_id;
	call->body = spec->body;
	call->body_len = spec->body_len;
	spec->body = NULL;
	call->max_retries = spec->max_retries > 0 ? spec->max_retries : 0;
	call->connect_timeout_ms = spec->connect_timeout_ms;
	call->idle_timeout_ms = spec->idle_timeout_ms;
	copy_str(call->context, sizeof(call->context), spec->context, strlen(spec->context));
	copy_str(call->model, sizeof(call->model), spec->model, strlen(spec->model));
	call->start_ms = clock_mono_ms();
	buf_init(&call->errbody, CLAUDE_MAX_ERROR_BODY);
	sse_init(&call->sse, CLAUDE_MAX_EVENT);
	api_error_clear(&call->err);
	call->next = c->calls;
	c->calls = call;

	if (!c->have_auth) {
		api_error_set(&call->err, "no_api_key",
			      "no API key: set ANTHROPIC_API_KEY or use --api-key-file");
		call_finish(call, -EIO);
	} else if (call_setup(call) < 0) {
		api_error_set(&call->err, "connection_error", "cannot set up the transfer");
		call_finish(call, -EIO);
	} else {
		call_attempt(call);
	}
}

void claude_call_abort(struct claude_call *call, const char *type, const char *message)
{
	if (!call->ended) {
		api_error_clear(&call->err);
		api_error_set(&call->err, type, "%s", message);
		call->err.http_status = (int)call->status;
		copy_str(call->err.request_id, sizeof(call->err.request_id), call->request_id,
			 strlen(call->request_id));
	}
	call_finish(call, -ECANCELED);
}

/* Connection-level failures worth another attempt (the SDKs retry every
 * connection error and timeout); certificate and usage errors are not. */
static bool curl_code_retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_PARTIAL_FILE:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

/* Fills call->err for an attempt that curl finished; the errno, 0 never (a
 * message_stop has already ended the call). */
static int call_outcome(struct claude_call *call, CURLcode rc)
{
	if (call->fail)
		return call->fail;
	if (call->sse_mode) {
		if (rc == CURLE_OK)
			call_fail(call, -EIO, true, "stream_error",
				  "the stream ended before message_stop");
		else
			call_fail(call, -EIO, true, "stream_error",
				  "the stream ended before message_stop: %s",
				  call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
		return -EIO;
	}
	if (call->status == 0) {
		call_fail(call, -EIO, curl_code_retryable(rc), "connection_error", "%s",
			  call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
		return -EIO;
	}
	/* An HTTP error, even if its body was cut short: the status decides.
	 * request-id from the header wins over the body's (wire_error_decode keeps it). */
	copy_str(call->err.request_id, sizeof(call->err.request_id), call->request_id,
		 strlen(call->request_id));
	wire_error_decode((int)call->status, call->errbody.data ? call->errbody.data : "",
			  call->errbody.len, &call->err);
	if (call->should_retry >= 0)
		call->err.retryable = call->should_retry;
	call->fail = -EIO;
	return -EIO;
}

/* The SDK back-off: the server's hint when 0 < hint <= 60 s, else
 * min(0.5 s * 2^n, 8 s) * (1 - 0.25 * random) with n the retries made. */
static int64_t call_delay(struct claude_call *call, int64_t hint)
{
	if (hint > 0 && hint <= CLAUDE_MAX_HINT_MS)
		return hint;
	int n = call->retries < 4 ? call->retries : 4;
	double ms = 500.0 * (double)(1 << n) * (1.0 - 0.25 * claude_random(call->c));
	return (int64_t)ms;
}

/* An attempt failed with code (call->err filled, easy out of the multi handle):
 * schedules a retry or ends the call. */
static void call_conclude(struct claude_call *call, int code)
{
	struct api_error *e = &call->err;
	int64_t hint = call->hint_ms >= 0 ? call->hint_ms : call->hint_s_ms;

	if (!e->request_id[0])
		copy_str(e->request_id, sizeof(e->request_id), call->request_id,
			 strlen(call->request_id));
	e->retry_after_ms = hint >= 0 ? hint : -1;
	if (call->text_delivered)
		e->retryable = false;
	if (code == -ECANCELED || !e->retryable || call->retries >= call->max_retries) {
		call_finish(call, code);
		return;
	}
	int64_t delay = call_delay(call, hint);
	call->retries++;
	call->retry_at_ms = clock_mono_ms() + delay;
	log_debug("call %" PRIu64 ": %s (HTTP %d); retry %d in %" PRId64 " ms", call->id, e->type,
		  e->http_status, call->retries, delay);
	reply_call_retry(call->c->st, call->id, (unsigned)call->retries, e, delay);
}

/* The stream ended cleanly (the whole body arrived): its last event may lack the
 * blank line that ends it, and is taken as complete (sse_finish).  A body cut
 * off (rc not CURLE_OK) is not finished: its partial event is lost, and the
 * call fails as ended before message_stop. */
static void call_eof(struct claude_call *call, CURLcode rc)
{
	if (call->ended || call->fail || !call->sse_mode || rc != CURLE_OK)
		return;
	int r = sse_finish(&call->sse, on_sse_event, call);
	reply_call_flush(call->c->st);
	if (r < 0 && !call->fail)
		call_fail(call, -EIO, true, "stream_error", "cannot parse the stream: %s",
			  strerror(-r));
}

void claude_call_done(struct claude_call *call, CURLcode rc)
{
	curl_multi_remove_handle(call->c->multi, call->easy);
	call->active = false;
	call_eof(call, rc);
	if (call->ended) {
		claude_call_free(call);
		return;
	}
	call_conclude(call, call_outcome(call, rc));
}

static void call_idle_timeout(struct claude_call *call)
{
	curl_multi_remove_handle(call->c->multi, call->easy);
	call->active = false;
	call_fail(call, -ETIMEDOUT, true, "timeout_error", "no data from the API for %d ms",
		  call->idle_timeout_ms);
	call_conclude(call, -ETIMEDOUT);
}

int64_t claude_call_tick(struct claude_call *call, int64_t now)
{
	int64_t deadline;

	if (call->ended) {
		deadline = call->ended_ms + CLAUDE_DRAIN_MS;
		if (!call->active || now >= deadline) {
			claude_call_free(call);
			return INT64_MAX;
		}
	} else if (call->active) {
		if (call->idle_timeout_ms <= 0)
			return INT64_MAX;
		deadline = call->last_byte_ms + call->idle_timeout_ms;
		if (now >= deadline)
			call_idle_timeout(call);
	} else if (call->retry_at_ms) {
		deadline = call->retry_at_ms;
		if (now >= deadline)
			call_attempt(call);
	} else {
		return INT64_MAX;
	}
	return deadline;
}
