/* shim_reply.c — the responses that are not streams, and the one table that
 * turns the core's negative errnos into HTTP statuses.
 *
 * Every error is {"error":{"type":…,"message":…}}; the type is a function of
 * the status alone (one more table), in the style of the Messages API's own
 * error types.  A client mistake never maps to a 5xx: the core reports those
 * as -EINVAL, -ENAMETOOLONG, -EILSEQ, -EFBIG, -EEXIST or -ENOENT.  No
 * response carries CORS headers: a browser page must not read any of them.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/log.h"
#include "shim_impl.h"

static const struct {
	int err;
	unsigned status;
} errno_table[] = {
    {ENOENT, MHD_HTTP_NOT_FOUND},
    {EEXIST, MHD_HTTP_CONFLICT},
    {EINVAL, MHD_HTTP_BAD_REQUEST},
    {ENAMETOOLONG, MHD_HTTP_BAD_REQUEST},
    {EILSEQ, MHD_HTTP_BAD_REQUEST},
    {EFBIG, MHD_HTTP_CONTENT_TOO_LARGE},
    {ECANCELED, MHD_HTTP_CONFLICT}, /* the message was cancelled or cleared meanwhile */
    {EBUSY, MHD_HTTP_CONFLICT},
    {ENOSPC, MHD_HTTP_INSUFFICIENT_STORAGE},
    {EDQUOT, MHD_HTTP_INSUFFICIENT_STORAGE},
    {ENOMEM, MHD_HTTP_INTERNAL_SERVER_ERROR},
    {EOVERFLOW, MHD_HTTP_INTERNAL_SERVER_ERROR}, /* a rendering past SHIM_VIEWS_MAX */
    {EIO, MHD_HTTP_INTERNAL_SERVER_ERROR},
};

static const struct {
	unsigned status;
	const char *type;
} type_table[] = {
    {MHD_HTTP_BAD_REQUEST, "invalid_request_error"},
    {MHD_HTTP_UNAUTHORIZED, "authentication_error"},
    {MHD_HTTP_FORBIDDEN, "permission_error"},
    {MHD_HTTP_NOT_FOUND, "not_found_error"},
    {MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed_error"},
    {MHD_HTTP_CONFLICT, "conflict_error"},
    {MHD_HTTP_CONTENT_TOO_LARGE, "request_too_large"},
    {MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, "request_too_large"},
    {MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type_error"},
    {MHD_HTTP_INSUFFICIENT_STORAGE, "storage_error"},
    {MHD_HTTP_PAYMENT_REQUIRED, "spend_limit_error"}, /* spend_limit_usd reached */
    {MHD_HTTP_SERVICE_UNAVAILABLE, "overloaded_error"},
};

unsigned shim_reply_status(int err)
{
	for (size_t i = 0; i < sizeof(errno_table) / sizeof(errno_table[0]); i++)
		if (errno_table[i].err == -err)
			return errno_table[i].status;
	return MHD_HTTP_INTERNAL_SERVER_ERROR;
}

const char *shim_reply_type(unsigned status)
{
	for (size_t i = 0; i < sizeof(type_table) / sizeof(type_table[0]); i++)
		if (type_table[i].status == status)
			return type_table[i].type;
	return "api_error";
}

void shim_reply_headers(struct MHD_Response *r)
{
	/* Replies are live state: never cached, never sniffed into HTML. */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	/* One request per connection: libmicrohttpd would parse a second one
	 * itself, unchecked by shim_accept.c (SECURITY.md 7a). */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
}

/* Queues r (consumed; NULL: out of memory, the connection is closed). */
static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r,
			     const char *content_type)
{
	if (!r)
		return MHD_NO;
	shim_reply_headers(r);
	if (content_type)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static struct MHD_Response *buf_response(struct buf *b)
{
	size_t len;
	char *data = buf_steal(b, &len);
	struct MHD_Response *r =
	    data ? MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE) : NULL;
	if (!r)
		free(data);
	return r;
}

/* Consumes json; the text ends in a newline, as a terminal user expects. */
static struct MHD_Response *json_response(cJSON *json)
{
	char *text = json ? cJSON_PrintUnformatted(json) : NULL;
	cJSON_Delete(json);
	if (!text)
		return NULL;
	struct buf b;
	buf_init(&b, SIZE_MAX);
	int r = buf_puts(&b, text);
	if (r == 0)
		r = buf_puts(&b, "\n");
	free(text);
	if (r < 0) {
		buf_done(&b);
		return NULL;
	}
	return buf_response(&b);
}

enum MHD_Result shim_reply_json(struct MHD_Connection *c, unsigned status, struct cJSON *json)
{
	return queue(c, status, json_response(json), "application/json");
}

enum MHD_Result shim_reply_empty(struct MHD_Connection *c, unsigned status)
{
	return queue(c, status, MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT),
		     NULL);
}

static enum MHD_Result reply_error_v(struct MHD_Connection *c, unsigned status, const char *header,
				     const char *value, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_debug("http: %u %s", status, msg);
	cJSON *o = cJSON_CreateObject();
	cJSON *e = o ? cJSON_AddObjectToObject(o, "error") : NULL;
	if (!e || !cJSON_AddStringToObject(e, "type", shim_reply_type(status)) ||
	    !cJSON_AddStringToObject(e, "message", msg)) {
		cJSON_Delete(o);
		return MHD_NO;
	}
	struct MHD_Response *r = json_response(o);
	if (r && header)
		MHD_add_response_header(r, header, value);
	return queue(c, status, r, "application/json");
}

enum MHD_Result shim_reply_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	enum MHD_Result r = reply_error_v(c, status, NULL, NULL, fmt, ap);
	va_end(ap);
	return r;
}

static enum MHD_Result reply_error_header(struct MHD_Connection *c, unsigned status,
					  const char *header, const char *value, const char *fmt,
					  ...)
{
	va_list ap;
	va_start(ap, fmt);
	enum MHD_Result r = reply_error_v(c, status, header, value, fmt, ap);
	va_end(ap);
	return r;
}

enum MHD_Result shim_reply_errno(struct MHD_Connection *c, int err, const char *why)
{
	return shim_reply_error(c, shim_reply_status(err), "%s",
				why && *why ? why : strerror(-err));
}

enum MHD_Result shim_reply_not_allowed(struct MHD_Connection *c, const char *allow)
{
	return reply_error_header(c, MHD_HTTP_METHOD_NOT_ALLOWED, MHD_HTTP_HEADER_ALLOW, allow,
				  "method not allowed here (allowed: %s)", allow);
}

enum MHD_Result shim_reply_bad_framing(struct MHD_Connection *c, const char *why)
{
	return reply_error_header(c, MHD_HTTP_BAD_REQUEST, MHD_HTTP_HEADER_CONNECTION, "close",
				  "%s", why);
}

enum MHD_Result shim_reply_busy(struct MHD_Connection *c, const char *why)
{
	char after[16];
	snprintf(after, sizeof(after), "%d", SHIM_RETRY_AFTER_S);
	return reply_error_header(c, MHD_HTTP_SERVICE_UNAVAILABLE, MHD_HTTP_HEADER_RETRY_AFTER,
				  after, "%s; retry in %d s", why, SHIM_RETRY_AFTER_S);
}

enum MHD_Result shim_reply_unauthorized(struct MHD_Connection *c, bool had_credentials)
{
	/* RFC 6750: say which scheme, and whether the token offered was wrong. */
	return reply_error_header(
	    c, MHD_HTTP_UNAUTHORIZED, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
	    had_credentials ? "Bearer realm=\"mcpfs\", error=\"invalid_token\""
			    : "Bearer realm=\"mcpfs\"",
	    had_credentials ? "the bearer token is wrong"
			    : "this server needs Authorization: Bearer <token>");
}
