/* test_claude.c — the transport against a scripted HTTP server on loopback.
 *
 * The store is replaced by the store_call_*() stubs below, which record what the
 * network thread reports (struct store is ours here: core/store.c is not linked).
 * The server is a thread of this test that answers each connection with the next
 * scripted response — whole, in small fragments, chunked and cut short, or held
 * open — so the test needs only libc and libcurl.  Each scenario runs a fresh
 * transport and thread, and checks the one end, the retries, the text, the timing
 * and what was sent.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "check.h"
#include "mcpfs/claude.h"
#include "mcpfs/clock.h"
#include "mcpfs/log.h"

#define EV(name, json) "event: " name "\ndata: " json "\n\n"

#define START_EV                                                                                   \
	EV("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","           \
			    "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\","         \
			    "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"          \
			    "\"usage\":{\"input_tokens\":18,\"output_tokens\":1}}}")               \
	EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,"                 \
				  "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}")
#define DELTA(t)                                                                                   \
	EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,"                 \
				  "\"delta\":{\"type\":\"text_delta\",\"text\":\"" t "\"}}")
#define END_EV                                                                                     \
	EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")                  \
	EV("message_delta",                                                                        \
	   "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"                               \
	   "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":12}}")               \
	EV("message_stop", "{\"type\":\"message_stop\"}")
#define OVERLOADED_EV                                                                              \
	EV("error", "{\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", "           \
		    "\"message\": \"Overloaded\"}}")

static const char stream_a[] =
    START_EV DELTA("Hello") DELTA("! How can I help") DELTA(" you today?") END_EV;
static const char text_a[] = "Hello! How can I help you today?";
/* Multi-byte UTF-8, which 7-byte fragments split mid-character. */
static const char stream_c[] = START_EV DELTA("Gr\xc3\xbc\xc3\x9f"
					      "e") DELTA(" \xe2\x80\x94 \xe6\x9d\xb1\xe4\xba\xac")
    DELTA(" \xf0\x9f\x8c\xb8") END_EV;
static const char text_c[] = "Gr\xc3\xbc\xc3\x9f"
			     "e \xe2\x80\x94 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x8c\xb8";
static const char stream_b[] = START_EV EV("ping", "{\"type\": \"ping\"}") DELTA("The first three")
    DELTA(" primes are 2, 3") OVERLOADED_EV;
static const char stream_partial[] = START_EV DELTA("Hello");
static const char request_body[] = "{\"model\":\"m\",\"max_tokens\":16,\"stream\":true,"
				   "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

#define SSE_HEAD                                                                                   \
	"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"                    \
	"request-id: req_A"
#define JSON_ERR(code, text)                                                                       \
	"HTTP/1.1 " code " " text "\r\nContent-Type: application/json\r\n"                         \
	"request-id: req_" code
#define ERR_BODY(type, msg)                                                                        \
	"{\"type\":\"error\",\"error\":{\"type\":\"" type "\",\"message\":\"" msg                  \
	"\"},\"request_id\":\"req_body\"}"

/* --- the recording store ---------------------------------------------------------- */

struct store {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int cancel_at; /* reply_call_event says -ECANCELED at this text event */
	int responses, status, text_events, stops, retries, ends, end_code;
	int held, flushes; /* events not yet flushed; reply_call_flush calls with some */
	char request_id[128];
	char text[4096];
	size_t text_len;
	int64_t output_tokens;
	int64_t delays[8];
	unsigned attempts[8];
	bool text_at_retry; /* a retry came after text: never allowed */
	struct api_error end_err;
	int64_t end_ms;
};

void reply_call_response(struct store *s, uint64_t call_id, int http_status, const char *request_id)
{
	pthread_mutex_lock(&s->lock);
	s->responses++;
	s->status = http_status;
	snprintf(s->request_id, sizeof(s->request_id), "%s", request_id ? request_id : "");
	pthread_mutex_unlock(&s->lock);
}

int reply_call_event(struct store *s, uint64_t call_id, const struct wire_event *ev)
{
	int r = 0;
	pthread_mutex_lock(&s->lock);
	s->held++;
	if (ev->type == WIRE_BLOCK_DELTA && ev->block == WIRE_BLOCK_TEXT) {
		if (++s->text_events == s->cancel_at) {
			r = -ECANCELED;
		} else if (s->text_len + ev->text_len < sizeof(s->text)) {
			memcpy(s->text + s->text_len, ev->text, ev->text_len);
			s->text_len += ev->text_len;
			s->text[s->text_len] = '\0';
		}
	} else if (ev->type == WIRE_MESSAGE_DELTA && (ev->usage.present & WIRE_USAGE_OUTPUT)) {
		s->output_tokens = ev->usage.output_tokens;
	} else if (ev->type == WIRE_MESSAGE_STOP) {
		s->stops++;
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return r;
}

void reply_call_flush(struct store *s)
{
	pthread_mutex_lock(&s->lock);
	if (s->held)
		s->flushes++;
	s->held = 0;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

void reply_call_retry(struct store *s, uint64_t call_id, unsigned attempt,
		      const struct api_error *err, int64_t delay_ms)
{
	pthread_mutex_lock(&s->lock);
	if (s->text_len)
		s->text_at_retry = true;
	if (s->retries < 8) {
		s->attempts[s->retries] = attempt;
		s->delays[s->retries] = delay_ms;
	}
	s->retries++;
	pthread_mutex_unlock(&s->lock);
}

void store_models_answer(struct store *s, const char *model, int status, const char *body,
			 size_t len, const char *why)
{
	(void)s, (void)model, (void)status, (void)body, (void)len, (void)why;
}

void store_models_list(struct store *s, const char *const *pages, const size_t *lens, size_t n,
		       const char *why)
{
	(void)s, (void)pages, (void)lens, (void)n, (void)why;
}

void reply_call_end(struct store *s, uint64_t call_id, int err, const struct api_error *e)
{
	pthread_mutex_lock(&s->lock);
	s->held = 0; /* the end announces what was held */
	s->ends++;
	s->end_code = err;
	if (e)
		s->end_err = *e;
	s->end_ms = clock_mono_ms();
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Waits until *field (an int or size_t read under the lock) is non-zero. */
static bool store_wait(struct store *s, const int *ip, const size_t *zp, int ms)
{
	int64_t until = clock_mono_ms() + ms;
	bool ok;
	pthread_mutex_lock(&s->lock);
	while (!(ok = ip ? *ip != 0 : *zp != 0) && clock_mono_ms() < until) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return ok;
}

/* --- the scripted server ---------------------------------------------------------- */

struct fake_resp {
	const char *head; /* status line and headers without the blank line; NULL: the
			     script ends here */
	const char *body;
	size_t frag;  /* send the body in pieces of this many bytes (0: whole) */
	bool chunked; /* Transfer-Encoding: chunked, one chunk per piece */
	bool cut;     /* chunked: close without the last chunk */
	int hold_ms;  /* then hold the connection this long, or until the client closes */
	bool drop;    /* close without answering */
};

struct fake {
	int fd;
	int port;
	pthread_t thread;
	pthread_mutex_t lock;
	bool stop;		      /* under lock */
	const struct fake_resp *resp; /* the script */
	size_t n_resp;
	size_t served;	   /* requests read; under lock */
	int64_t req_ms[8]; /* when each request arrived; under lock */
	char first[8192];  /* the first request, head and body; under lock */
	int64_t closed_ms; /* when the client closed a held connection; under lock */
};

static bool send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Reads one request (head and Content-Length body) into buf; its length or -1. */
static ssize_t read_request(int fd, char *buf, size_t size)
{
	size_t len = 0, want = 0;
	while (len < size - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 3000) <= 0)
			return -1;
		ssize_t r = recv(fd, buf + len, size - 1 - len, 0);
		if (r <= 0)
			return -1;
		len += (size_t)r;
		buf[len] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		if (!want) {
			char *cl = strcasestr(buf, "content-length:");
			want = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
		}
		if (len >= want)
			return (ssize_t)len;
	}
	return -1;
}

static void fake_answer(struct fake *f, int fd, const struct fake_resp *r)
{
	char head[1024];
	if (r->drop)
		return;
	snprintf(head, sizeof(head), "%s\r\nConnection: close\r\n%s\r\n", r->head,
		 r->chunked ? "Transfer-Encoding: chunked\r\n" : "");
	if (!send_all(fd, head, strlen(head)))
		return;
	size_t len = r->body ? strlen(r->body) : 0, frag = r->frag ? r->frag : len;
	for (size_t off = 0; off < len; off += frag) {
		size_t n = len - off < frag ? len - off : frag;
		char size_line[32];
		snprintf(size_line, sizeof(size_line), "%zx\r\n", n);
		if ((r->chunked && !send_all(fd, size_line, strlen(size_line))) ||
		    !send_all(fd, r->body + off, n) || (r->chunked && !send_all(fd, "\r\n", 2)))
			return;
		if (r->frag)
			usleep(200);
	}
	if (r->chunked && !r->cut)
		send_all(fd, "0\r\n\r\n", 5);
	if (r->hold_ms) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, r->hold_ms) > 0) {
			pthread_mutex_lock(&f->lock);
			f->closed_ms = clock_mono_ms();
			pthread_mutex_unlock(&f->lock);
		}
	}
}

static void *fake_main(void *data)
{
	struct fake *f = data;
	static const struct fake_resp unexpected = {
	    "HTTP/1.1 400 Bad Request\r\nx-should-retry: false",
	    ERR_BODY("unexpected", "no script"),
	};
	for (;;) {
		pthread_mutex_lock(&f->lock);
		bool stop = f->stop;
		pthread_mutex_unlock(&f->lock);
		if (stop)
			break;
		struct pollfd p = {.fd = f->fd, .events = POLLIN};
		if (poll(&p, 1, 20) <= 0)
			continue;
		int fd = accept(f->fd, NULL, NULL);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		char req[8192];
		ssize_t n = read_request(fd, req, sizeof(req));
		if (n >= 0) {
			pthread_mutex_lock(&f->lock);
			size_t i = f->served++;
			if (i < 8)
				f->req_ms[i] = clock_mono_ms();
			if (i == 0)
				memcpy(f->first, req, (size_t)n + 1);
			pthread_mutex_unlock(&f->lock);
			fake_answer(f, fd, i < f->n_resp ? &f->resp[i] : &unexpected);
		}
		close(fd);
	}
	return NULL;
}

/* A loopback socket; listening when listen_too, else only bound (connect is refused). */
static int loopback_socket(bool listen_too, int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    (listen_too && listen(fd, 16) < 0) ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
		perror("loopback socket");
		exit(1);
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static void fake_start(struct fake *f, const struct fake_resp *resp, size_t n_resp, bool listen_too)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	f->resp = resp;
	f->n_resp = n_resp;
	f->fd = loopback_socket(listen_too, &f->port);
	if (listen_too)
		pthread_create(&f->thread, NULL, fake_main, f);
}

static void fake_stop(struct fake *f, bool listening)
{
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_mutex_unlock(&f->lock);
	if (listening)
		pthread_join(f->thread, NULL);
	close(f->fd);
	pthread_mutex_destroy(&f->lock);
}

/* --- scenarios ---------------------------------------------------------------------- */

enum mode {
	RUN,	 /* start and wait for the end */
	NO_KEY,	 /* no key and no token */
	TOKEN,	 /* an auth token instead of a key */
	REFUSED, /* nothing listens on the port */
	CANCEL,	 /* cancel once text has arrived */
	STOP,	 /* claude_stop once text has arrived */
	DRAIN,	 /* the server holds the connection after message_stop */
};

struct scenario {
	const char *name;
	enum mode mode;
	struct fake_resp resp[4];
	int max_retries;
	int idle_ms;   /* 0: 5000 */
	int cancel_at; /* the store refuses the n-th text event */
	/* expected */
	int code;
	const char *type; /* of the end's error; NULL for success */
	int requests;	  /* -1: not checked */
	int retries;
	const char *text;
	int status; /* of the end's error, or of the response for success */
	const char *request_id;
	int min_ms, max_ms;					/* from start to end */
	int64_t delay0_min, delay0_max, delay1_min, delay1_max; /* -1: not checked */
};

#define NO_DELAY -1, -1, -1, -1

static const struct scenario scenarios[] = {
    {"stream",
     RUN,
     {{SSE_HEAD, stream_a, 0, true}},
     2,
     0,
     0,
     0,
     NULL,
     1,
     0,
     text_a,
     200,
     "req_A",
     0,
     2000,
     NO_DELAY},
    {"fragments split UTF-8",
     RUN,
     {{SSE_HEAD, stream_c, 7, true}},
     2,
     0,
     0,
     0,
     NULL,
     1,
     0,
     text_c,
     200,
     "req_A",
     0,
     3000,
     NO_DELAY},
    {"one byte at a time, body to close",
     RUN,
     {{SSE_HEAD, stream_a, 1}},
     2,
     0,
     0,
     0,
     NULL,
     1,
     0,
     text_a,
     200,
     "req_A",
     0,
     5000,
     NO_DELAY},
    {"401 not retried",
     RUN,
     {{JSON_ERR("401", "Unauthorized"), ERR_BODY("authentication_error", "invalid x-api-key")}},
     2,
     0,
     0,
     -EIO,
     "authentication_error",
     1,
     0,
     "",
     401,
     "req_401",
     0,
     1000,
     NO_DELAY},
    {"529 twice then 200",
     RUN,
     {{JSON_ERR("529", "Overloaded"), ERR_BODY("overloaded_error", "Overloaded")},
      {JSON_ERR("529", "Overloaded"), ERR_BODY("overloaded_error", "Overloaded")},
      {SSE_HEAD, stream_a, 0, true}},
     2,
     0,
     0,
     0,
     NULL,
     3,
     2,
     text_a,
     200,
     "req_A",
     1125,
     3000,
     375,
     500,
     750,
     1000},
    {"429 retry-after-ms",
     RUN,
     {{JSON_ERR("429", "Too Many Requests") "\r\nretry-after-ms: 300",
       ERR_BODY("rate_limit_error", "slow down")},
      {SSE_HEAD, stream_a, 0, true}},
     2,
     0,
     0,
     0,
     NULL,
     2,
     1,
     text_a,
     200,
     "req_A",
     300,
     2000,
     300,
     300,
     -1,
     -1},
    {"429 retry-after seconds",
     RUN,
     {{JSON_ERR("429", "Too Many Requests") "\r\nretry-after: 1",
       ERR_BODY("rate_limit_error", "slow down")},
      {SSE_HEAD, stream_a, 0, true}},
     2,
     0,
     0,
     0,
     NULL,
     2,
     1,
     text_a,
     200,
     "req_A",
     1000,
     3000,
     1000,
     1000,
     -1,
     -1},
    {"429 retry-after too long: back-off",
     RUN,
     {{JSON_ERR("429", "Too Many Requests") "\r\nretry-after: 3600",
       ERR_BODY("rate_limit_error", "slow down")},
      {SSE_HEAD, stream_a, 0, true}},
     2,
     0,
     0,
     0,
     NULL,
     2,
     1,
     text_a,
     200,
     "req_A",
     375,
     2000,
     375,
     500,
     -1,
     -1},
    {"500 x-should-retry false",
     RUN,
     {{JSON_ERR("500", "Internal Server Error") "\r\nx-should-retry: false",
       ERR_BODY("api_error", "boom")}},
     2,
     0,
     0,
     -EIO,
     "api_error",
     1,
     0,
     "",
     500,
     "req_500",
     0,
     1000,
     NO_DELAY},
    {"400 x-should-retry true",
     RUN,
     {{JSON_ERR("400", "Bad Request") "\r\nx-should-retry: true",
       ERR_BODY("invalid_request_error", "try again")},
      {SSE_HEAD, stream_a, 0, true}},
     2,
     0,
     0,
     0,
     NULL,
     2,
     1,
     text_a,
     200,
     "req_A",
     375,
     2000,
     375,
     500,
     -1,
     -1},
    {"413 from a proxy",
     RUN,
     {{"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/html",
       "<html><body>413 Request Entity Too Large</body></html>"}},
     2,
     0,
     0,
     -EIO,
     "http_error",
     1,
     0,
     "",
     413,
     "",
     0,
     1000,
     NO_DELAY},
    {"retries exhausted",
     RUN,
     {{JSON_ERR("503", "Unavailable"), ERR_BODY("api_error", "down")},
      {JSON_ERR("503", "Unavailable"), ERR_BODY("api_error", "down")}},
     1,
     0,
     0,
     -EIO,
     "api_error",
     2,
     1,
     "",
     503,
     "req_503",
     375,
     2000,
     375,
     500,
     -1,
     -1},
    {"error event after text",
     RUN,
     {{SSE_HEAD, stream_b}},
     2,
     0,
     0,
     -EIO,
     "overloaded_error",
     1,
     0,
     "The first three primes are 2, 3",
     200,
     "req_A",
     0,
     1000,
     NO_DELAY},
    {"error event before text",
     RUN,
     {{SSE_HEAD, START_EV OVERLOADED_EV}, {SSE_HEAD, stream_a, 0, true}},
     2,
     0,
     0,
     0,
     NULL,
     2,
     1,
     text_a,
     200,
     "req_A",
     375,
     2000,
     375,
     500,
     -1,
     -1},
    {"disconnect before the first byte",
     RUN,
     {{"", .drop = true}, {SSE_HEAD, stream_a, 0, true}},
     2,
     0,
     0,
     0,
     NULL,
     2,
     1,
     text_a,
     200,
     "req_A",
     375,
     2000,
     375,
     500,
     -1,
     -1},
    {"cut after text",
     RUN,
     {{SSE_HEAD, stream_partial, 0, true, true}},
     2,
     0,
     0,
     -EIO,
     "stream_error",
     1,
     0,
     "Hello",
     200,
     "req_A",
     0,
     1000,
     NO_DELAY},
    {"ended without message_stop",
     RUN,
     {{SSE_HEAD, stream_partial}},
     2,
     0,
     0,
     -EIO,
     "stream_error",
     1,
     0,
     "Hello",
     200,
     "req_A",
     0,
     1000,
     NO_DELAY},
    {"malformed event",
     RUN,
     {{SSE_HEAD, START_EV EV("content_block_delta", "{not json")},
      {SSE_HEAD, START_EV EV("content_block_delta", "{not json")}},
     1,
     0,
     0,
     -EIO,
     "stream_error",
     2,
     1,
     "",
     200,
     "req_A",
     375,
     2000,
     375,
     500,
     -1,
     -1},
    {"200 that is not a stream",
     RUN,
     {{"HTTP/1.1 200 OK\r\nContent-Type: application/json", "{\"type\":\"message\"}"}},
     2,
     0,
     0,
     -EIO,
     "stream_error",
     1,
     0,
     "",
     200,
     "",
     0,
     1000,
     NO_DELAY},
    {"stall after text",
     RUN,
     {{SSE_HEAD, stream_partial, 0, false, false, 5000}},
     2,
     400,
     0,
     -ETIMEDOUT,
     "timeout_error",
     1,
     0,
     "Hello",
     200,
     "req_A",
     400,
     1000,
     NO_DELAY},
    {"stall before text is retried",
     RUN,
     {{SSE_HEAD, START_EV, 0, false, false, 5000}, {SSE_HEAD, stream_a, 0, true}},
     2,
     300,
     0,
     0,
     NULL,
     2,
     1,
     text_a,
     200,
     "req_A",
     675,
     2500,
     375,
     500,
     -1,
     -1},
    {"cancel while streaming",
     CANCEL,
     {{SSE_HEAD, stream_partial, 0, false, false, 5000}},
     2,
     0,
     0,
     -ECANCELED,
     "cancelled",
     1,
     0,
     "Hello",
     200,
     "req_A",
     0,
     2000,
     NO_DELAY},
    {"the store drops the call",
     RUN,
     {{SSE_HEAD, stream_a, 0, true}},
     2,
     0,
     2,
     -ECANCELED,
     "cancelled",
     1,
     0,
     "Hello",
     200,
     "req_A",
     0,
     1000,
     NO_DELAY},
    {"stop while streaming",
     STOP,
     {{SSE_HEAD, stream_partial, 0, false, false, 5000}},
     2,
     0,
     0,
     -ECANCELED,
     "interrupted",
     1,
     0,
     "Hello",
     200,
     "req_A",
     0,
     2000,
     NO_DELAY},
    {"held open after message_stop",
     DRAIN,
     {{SSE_HEAD, stream_a, 0, false, false, 5000}},
     2,
     0,
     0,
     0,
     NULL,
     1,
     0,
     text_a,
     200,
     "req_A",
     0,
     1000,
     NO_DELAY},
    {"no key",
     NO_KEY,
     {{SSE_HEAD, stream_a, 0, true}},
     2,
     0,
     0,
     -EIO,
     "no_api_key",
     0,
     0,
     "",
     0,
     "",
     0,
     200,
     NO_DELAY},
    {"auth token",
     TOKEN,
     {{SSE_HEAD, stream_a, 0, true}},
     2,
     0,
     0,
     0,
     NULL,
     1,
     0,
     text_a,
     200,
     "req_A",
     0,
     2000,
     NO_DELAY},
    {"connection refused",
     REFUSED,
     {{NULL}},
     2,
     0,
     0,
     -EIO,
     "connection_error",
     0,
     2,
     "",
     0,
     "",
     1125,
     3000,
     375,
     500,
     750,
     1000},
};

struct runner {
	struct claude *c;
	int ret;
};

static void *run_thread(void *data)
{
	struct runner *r = data;
	r->ret = claude_run(r->c);
	return NULL;
}

static void check_request(const struct scenario *sc, const char *req)
{
	CHECK(strncmp(req, "POST /v1/messages HTTP/1.1\r\n", 28) == 0);
	CHECK(strstr(req, "\r\nanthropic-version: 2023-06-01\r\n") != NULL);
	CHECK(strstr(req, "\r\ncontent-type: application/json\r\n") != NULL);
	CHECK(strstr(req, "\r\naccept: text/event-stream\r\n") != NULL);
	CHECK(strcasestr(req, "\r\nexpect:") == NULL);
	const char *body = strstr(req, "\r\n\r\n");
	CHECK(body && strcmp(body + 4, request_body) == 0);
	if (sc->mode == TOKEN) {
		CHECK(strstr(req, "\r\nAuthorization: Bearer tok-123\r\n") != NULL);
		CHECK(strcasestr(req, "x-api-key") == NULL);
	} else {
		CHECK(strstr(req, "\r\nx-api-key: sk-test-key\r\n") != NULL);
		CHECK(strcasestr(req, "authorization:") == NULL);
	}
}

static void check_end(const struct scenario *sc, struct store *s, int64_t ms)
{
	CHECK_EQ_INT(s->ends, 1);
	CHECK_EQ_INT(s->end_code, sc->code);
	if (sc->type)
		CHECK_EQ_STR(s->end_err.type, sc->type);
	if (sc->code == 0) {
		CHECK_EQ_INT(s->stops, 1);
		CHECK_EQ_INT(s->status, sc->status);
		CHECK_EQ_STR(s->request_id, sc->request_id);
		CHECK_EQ_INT(s->output_tokens, 12);
	} else {
		CHECK_EQ_INT(s->end_err.http_status, sc->status);
		CHECK_EQ_STR(s->end_err.request_id, sc->request_id);
		CHECK(s->end_err.message[0] != '\0');
	}
	CHECK_EQ_INT(s->retries, sc->retries);
	for (int i = 0; i < s->retries && i < 8; i++)
		CHECK_EQ_INT(s->attempts[i], i + 1);
	CHECK(!s->text_at_retry);
	CHECK_EQ_STR(s->text, sc->text);
	if (ms < sc->min_ms || ms > sc->max_ms) {
		fprintf(stderr, "%s: took %lld ms, expected %d..%d\n", sc->name, (long long)ms,
			sc->min_ms, sc->max_ms);
		CHECK(ms >= sc->min_ms && ms <= sc->max_ms);
	}
	if (sc->delay0_min >= 0)
		CHECK(s->delays[0] >= sc->delay0_min && s->delays[0] <= sc->delay0_max);
	if (sc->delay1_min >= 0)
		CHECK(s->delays[1] >= sc->delay1_min && s->delays[1] <= sc->delay1_max);
}

static void run_scenario(const struct scenario *sc)
{
	struct store s = {.cancel_at = sc->cancel_at};
	fprintf(stderr, "%s\n", sc->name);
	struct fake f;
	size_t n_resp = 0;
	while (n_resp < 4 && sc->resp[n_resp].head)
		n_resp++;
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	fake_start(&f, sc->resp, n_resp, sc->mode != REFUSED);

	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f.port, sc->mode == TOKEN ? "/" : "");
	struct claude_config cfg = {
	    .base_url = url,
	    .api_key = sc->mode == NO_KEY || sc->mode == TOKEN ? NULL : "sk-test-key",
	    .auth_token = sc->mode == TOKEN ? "tok-123" : NULL,
	};
	struct runner r = {.ret = -1};
	pthread_t thread;
	CHECK_EQ_INT(claude_new(&cfg, &s, &r.c), 0);
	if (!r.c)
		return;
	pthread_create(&thread, NULL, run_thread, &r);

	struct call_spec spec = {
	    .call_id = 7,
	    .body = strdup(request_body),
	    .body_len = strlen(request_body),
	    .max_retries = sc->max_retries,
	    .connect_timeout_ms = 2000,
	    .idle_timeout_ms = sc->idle_ms ? sc->idle_ms : 5000,
	};
	int64_t t0 = clock_mono_ms();
	CHECK_EQ_INT(claude_transport()->start(r.c, &spec), 0);
	CHECK(spec.body == NULL);
	if (sc->mode == CANCEL || sc->mode == STOP) {
		CHECK(store_wait(&s, NULL, &s.text_len, 5000));
		/* The stream waits here: the chunk's events were announced. */
		CHECK(store_wait(&s, &s.flushes, NULL, 5000));
		if (sc->mode == CANCEL)
			claude_transport()->cancel(r.c, 7);
		else
			claude_stop(r.c);
	}
	CHECK(store_wait(&s, &s.ends, NULL, 15000));
	int64_t ms = s.end_ms - t0;
	CHECK_EQ_INT(claude_in_flight(r.c), 0);
	if (sc->mode == DRAIN) {
		/* The end is reported at message_stop; the connection goes after the drain. */
		int64_t closed = 0;
		for (int i = 0; i < 400 && !closed; i++) {
			usleep(10 * 1000);
			pthread_mutex_lock(&f.lock);
			closed = f.closed_ms;
			pthread_mutex_unlock(&f.lock);
		}
		CHECK(closed - s.end_ms >= 1900 && closed - s.end_ms <= 3000);
	}
	/* A late cancel of an ended call reports nothing more. */
	claude_transport()->cancel(r.c, 7);
	usleep(50 * 1000);
	claude_stop(r.c);
	pthread_join(thread, NULL);
	CHECK_EQ_INT(r.ret, 0);

	/* After the stop the transport refuses new calls, still taking the body. */
	spec.body = strdup(request_body);
	CHECK_EQ_INT(claude_transport()->start(r.c, &spec), -ECANCELED);
	CHECK(spec.body == NULL);

	fake_stop(&f, sc->mode != REFUSED);
	if (sc->requests >= 0)
		CHECK_EQ_INT(f.served, sc->requests);
	if (f.served > 0)
		check_request(sc, f.first);
	if (sc->mode == RUN && sc->delay0_min == sc->delay0_max && sc->delay0_min > 0 &&
	    f.served >= 2)
		CHECK(f.req_ms[1] - f.req_ms[0] >= sc->delay0_min);
	if (sc->mode == NO_KEY) {
		CHECK_EQ_STR(s.end_err.message,
			     "no API key: set ANTHROPIC_API_KEY or use --api-key-file");
		CHECK(!s.end_err.retryable);
	}
	check_end(sc, &s, ms);
	claude_free(r.c);
	pthread_cond_destroy(&s.cond);
	pthread_mutex_destroy(&s.lock);
	fprintf(stderr, "  ended after %lld ms\n", (long long)ms);
}

/* claude_new's checks, and start()'s, without a thread. */
static void test_new(void)
{
	static const struct {
		const char *base_url, *key, *token;
		int ret;
	} cases[] = {
	    {NULL, "k", NULL, 0},
	    {"https://api.example.com/", "k", NULL, 0},
	    {"HTTP://127.0.0.1:1", NULL, NULL, 0},
	    {"ftp://example.com", "k", NULL, -EINVAL},
	    {"127.0.0.1:8080", "k", NULL, -EINVAL},
	    {"http://x", "sk-bad\r\nx-evil: 1", NULL, -EINVAL},
	    {"http://x", NULL, "tok\n", -EINVAL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct claude_config cfg = {cases[i].base_url, cases[i].key, cases[i].token};
		struct claude *c = (struct claude *)&cfg;
		CHECK_EQ_INT(claude_new(&cfg, NULL, &c), cases[i].ret);
		CHECK((c != NULL) == (cases[i].ret == 0));
		if (c) {
			struct call_spec spec = {.call_id = 1};
			CHECK_EQ_INT(claude_transport()->start(c, &spec), -EINVAL);
			CHECK_EQ_INT(claude_in_flight(c), 0);
		}
		claude_free(c);
	}
	claude_free(NULL);
}

int main(int argc, char **argv)
{
	log_level = getenv("MCPFS_TEST_DEBUG") ? LOG_DEBUG : LOG_ERR;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "curl_global_init failed\n");
		return 1;
	}
	test_new();
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		if (argc < 2 || strstr(scenarios[i].name, argv[1]))
			run_scenario(&scenarios[i]);
	curl_global_cleanup();
	return check_report();
}
