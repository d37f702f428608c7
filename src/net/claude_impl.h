/* claude_impl.h — what claude.c (the thread, its queue and loop) and claude_call.c
 * (one call: its transfer, callbacks and retries) share.  Private to src/net.
 *
 * Everything in struct claude_call, and struct claude's calls and rng, belong to
 * the network thread; the fields marked "under lock" are shared with the transport
 * ops, which run on any thread.  claude_call_*() run on the network thread only,
 * never from inside a curl callback unless said.
 */
#ifndef MCPFS_NET_CLAUDE_IMPL_H
#define MCPFS_NET_CLAUDE_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include "mcpfs/api_error.h"
#include "mcpfs/buf.h"
#include "mcpfs/claude.h"
#include "mcpfs/sse.h"
#include "mcpfs/store.h"
#include "mcpfs/wire.h"

struct claude_cmd;

/* One call; owned by the network thread. */
struct claude_call {
	struct claude *c;
	struct claude_call *next;
	uint64_t id;
	char *body;
	size_t body_len;
	int max_retries;
	int connect_timeout_ms;
	int idle_timeout_ms; /* <= 0: none */
	CURL *easy;
	bool active;	      /* easy is in the multi handle */
	bool ended;	      /* reply_call_end was reported; easy may still drain */
	int64_t ended_ms;     /* monotonic: when it ended (the drain's start) */
	size_t drained;	      /* bytes received since it ended */
	bool text_delivered;  /* a text delta reached the store: no more retries */
	int retries;	      /* retries made */
	int64_t start_ms;     /* monotonic: the call's first attempt */
	int64_t last_byte_ms; /* monotonic: last byte received or sent, or attempt start */
	int64_t retry_at_ms;  /* monotonic: when the next attempt starts; 0 none */
	/* the current attempt */
	long status;	   /* final HTTP status, 0 until the headers end */
	bool sse_mode;	   /* 200 text/event-stream: the body goes to the parser */
	int fail;	   /* 0, or the errno the attempt failed with (err filled) */
	curl_off_t sent;   /* bytes of the body sent */
	int should_retry;  /* x-should-retry: -1 absent, 0 false, 1 true */
	int64_t hint_ms;   /* retry-after-ms, -1 none */
	int64_t hint_s_ms; /* retry-after (seconds or HTTP-date) in ms, -1 none */
	char request_id[128];
	struct wire_usage usage;	  /* this attempt's, from message_start and message_delta */
	char stop_reason[64];		  /* this attempt's, "" until message_delta names one */
	char context[STORE_NAME_MAX + 1]; /* for the log line: call_spec's */
	char model[SETTINGS_MODEL_MAX + 1]; /* for the log line: call_spec's */
	struct api_error err;
	struct buf errbody; /* start of a non-200 body */
	struct sse sse;
	char errbuf[CURL_ERROR_SIZE];
};

struct claude_fetch;

struct claude {
	char *url;			/* {base_url}/v1/messages */
	char *base;			/* {base_url} without a trailing slash */
	struct curl_slist *headers;	/* holds the key: wiped on free */
	struct curl_slist *get_headers; /* the Models API's GETs: key, version, accept JSON */
	bool have_auth;			/* a key or a token is set */
	struct store *st;
	CURLM *multi;	  /* driven by curl_multi_socket_action() */
	int epfd;	  /* epoll: curl's sockets (CURLMOPT_SOCKETFUNCTION) and evfd */
	int evfd;	  /* eventfd: written by the ops to wake the loop */
	int64_t curl_due; /* curl's timer (clock_mono_ms), -1 none; network thread */
	bool retick;	  /* a call's deadline came nearer: claude_tick() at once */
	pthread_mutex_t lock;
	struct claude_cmd *cmds;       /* FIFO; under lock */
	struct claude_cmd **cmds_tail; /* under lock */
	bool stopping;		       /* under lock */
	size_t in_flight;	       /* calls started and not ended; under lock */
	struct claude_call *calls;     /* network thread */
	struct claude_fetch *fetches;  /* Models API requests; network thread */
	uint64_t rng;		       /* jitter state; network thread */
};

/* claude.c: one call fewer in flight (takes c->lock). */
void claude_ended(struct claude *c);

/* claude.c: a uniform double in [0, 1) for the back-off jitter. */
double claude_random(struct claude *c);

/* Creates the call for spec (taking spec->body) and starts its first attempt, or
 * ends it at once (no key, no memory).  The store hears of the end either way. */
void claude_call_new(struct claude *c, struct call_spec *spec);

/* curl finished the call's transfer with rc: ends the call, schedules a retry, or
 * (an ended call that was draining) frees it. */
void claude_call_done(struct claude_call *call, CURLcode rc);

/* Fires the call's idle timeout, drain limit or due retry at now (monotonic ms);
 * may free the call.  Returns the call's next deadline, INT64_MAX if none. */
int64_t claude_call_tick(struct claude_call *call, int64_t now);

/* Ends a call that has not ended with -ECANCELED and an error of this type and
 * message, then frees it. */
void claude_call_abort(struct claude_call *call, const char *type, const char *message);

/* Unlinks from c->calls and frees, removing the transfer.  Not from a callback. */
void claude_call_free(struct claude_call *call);

/* claude_models.c: the Models API.  claude_models_new starts GET
 * /v1/models/{model} (model NULL: every page of GET /v1/models), connecting
 * within connect_timeout_ms (<= 0: curl's default), and answers the
 * store once, with store_models_answer() or store_models_list(), whatever
 * happens.  claude_models_done handles a finished transfer when it is one of
 * these (true) — following the next page or answering.  claude_models_abort_all
 * answers every fetch still open as failed (the thread is stopping). */
#define CLAUDE_FETCH_TIMEOUT_MS 10000 /* a whole GET, connection included */
void claude_models_new(struct claude *c, const char *model, int connect_timeout_ms);
bool claude_models_done(struct claude *c, CURL *easy, CURLcode rc);
void claude_models_abort_all(struct claude *c);

#endif
