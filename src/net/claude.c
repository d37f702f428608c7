/* claude.c — the Messages API transport on one curl multi handle (see claude.h):
 * its set-up, the command queue the transport ops feed, and the loop.  One call's
 * transfer and retries are in claude_call.c.
 *
 * Threads: on_start(), on_cancel() and claude_stop() run on any thread; they only
 * queue a command under c->lock and wake the loop through an eventfd.
 * Everything else — every curl call, every callback and every store_call_*()
 * report — runs on the network thread inside claude_run().  c->lock is never held
 * while the store is called: the store calls on_start() with its own lock held
 * (from any thread, ours included, when a call's end starts the next turn), so
 * the order is store lock, then c->lock.
 *
 * A circle that stays (HACKING.md, Circles): claude.c and claude_call.c use
 * each other.  The loop makes, ticks and frees its calls (claude_call_*), and a
 * call that ends counts itself out of the loop's in-flight count
 * (claude_ended, before the store hears of the end, so the count agrees with
 * the store) and draws its back-off jitter from the loop's generator
 * (claude_random).  A loop and its items: both halves own struct claude's
 * fields together, and cutting the two calls back would only hide them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "mcpfs/wire.h"
#include "claude_impl.h"

#define CLAUDE_DEFAULT_BASE "https://api.anthropic.com"
#define CLAUDE_POLL_MAX_MS 60000 /* the loop wakes for commands anyway */
#define CLAUDE_EVENTS 64	 /* epoll events taken per wake */

enum claude_cmd_kind { CMD_START, CMD_CANCEL, CMD_MODELS };

struct claude_cmd {
	enum claude_cmd_kind kind;
	struct call_spec spec; /* CMD_START owns spec.body; CMD_CANCEL uses call_id;
				  CMD_MODELS uses model ("" for the list) */
	struct claude_cmd *next;
};

/* --- set-up ------------------------------------------------------------------ */

/* Appends "name: value" to the list; the temporary copy is wiped (it may be the key). */
static int header_add(struct curl_slist **list, const char *name, const char *value)
{
	struct buf b;
	buf_init(&b, 64u << 10);
	int r = buf_printf(&b, "%s: %s", name, value);
	if (r == 0) {
		struct curl_slist *l = curl_slist_append(*list, b.data);
		if (l)
			*list = l;
		else
			r = -ENOMEM;
	}
	if (b.data)
		explicit_bzero(b.data, b.len);
	buf_done(&b);
	return r;
}

/* A CR or LF in a header value would smuggle in another header. */
static bool header_value_ok(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return false;
	return true;
}

static int claude_headers(struct claude *c, const struct claude_config *cfg)
{
	const char *key = cfg->api_key && *cfg->api_key ? cfg->api_key : NULL;
	const char *tok = cfg->auth_token && *cfg->auth_token ? cfg->auth_token : NULL;
	int r = 0;

	if ((key && !header_value_ok(key)) || (tok && !header_value_ok(tok)))
		return -EINVAL;
	if (key)
		r = header_add(&c->headers, "x-api-key", key);
	if (r == 0 && tok) {
		char *v = NULL;
		if (asprintf(&v, "Bearer %s", tok) < 0)
			return -ENOMEM;
		r = header_add(&c->headers, "Authorization", v);
		explicit_bzero(v, strlen(v));
		free(v);
	}
	c->have_auth = key || tok;
	if (r == 0 && key)
		r = header_add(&c->get_headers, "x-api-key", key);
	if (r == 0 && tok) {
		char *v = NULL;
		if (asprintf(&v, "Bearer %s", tok) < 0)
			return -ENOMEM;
		r = header_add(&c->get_headers, "Authorization", v);
		explicit_bzero(v, strlen(v));
		free(v);
	}
	if (r == 0)
		r = header_add(&c->get_headers, "anthropic-version", WIRE_ANTHROPIC_VERSION);
	if (r == 0)
		r = header_add(&c->get_headers, "accept", "application/json");
	if (r == 0)
		r = header_add(&c->headers, "anthropic-version", WIRE_ANTHROPIC_VERSION);
	if (r == 0)
		r = header_add(&c->headers, "content-type", "application/json");
	if (r == 0)
		r = header_add(&c->headers, "accept", "text/event-stream");
	/* curl would send "Expect: 100-continue" for large bodies and wait for it. */
	if (r == 0) {
		struct curl_slist *l = curl_slist_append(c->headers, "Expect:");
		if (l)
			c->headers = l;
		else
			r = -ENOMEM;
	}
	return r;
}

/* The part of url after its scheme's "//": [authority][/path]. */
static const char *url_after_scheme(const char *url)
{
	if (!strncasecmp(url, "http://", 7))
		return url + 7;
	if (!strncasecmp(url, "https://", 8))
		return url + 8;
	return NULL;
}

void claude_url_shown(const char *url, char *out, size_t outlen)
{
	const char *rest = url ? url_after_scheme(url) : NULL;
	size_t auth = rest ? strcspn(rest, "/?#") : 0;
	const char *at = rest ? memrchr(rest, '@', auth) : NULL;
	char raw[CLAUDE_URL_MAX + 16];
	if (at) /* user:password@ is masked: it is a credential */
		snprintf(raw, sizeof(raw), "%.*s***%s", (int)(rest - url), url, at);
	else
		snprintf(raw, sizeof(raw), "%s", url ? url : "");
	log_quote(out, outlen, raw, strlen(raw));
}

int claude_check_base_url(const char *url, char *why, size_t whylen)
{
	char shown[160]; /* quoted, cut with "...": the line stays one short line */
	const char *rest = url_after_scheme(url), *fault = NULL;
	claude_url_shown(url, shown, sizeof(shown));
	if (!rest)
		fault = "is not an http:// or https:// URL";
	else if (strlen(url) > CLAUDE_URL_MAX)
		fault = "is too long (at most " CLAUDE_URL_MAX_TEXT " bytes)";
	else if (strcspn(rest, "/?#") == 0)
		fault = "has no host";
	else if (strpbrk(rest, "?#"))
		fault = "has a query or a fragment ('?' or '#'): give the base URL alone";
	for (const char *p = url; !fault && *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
			fault = "holds a space or a control character (a newline?)";
	if (!fault)
		return 0;
	snprintf(why, whylen, "invalid ANTHROPIC_BASE_URL \"%s\": it %s", shown, fault);
	return -EINVAL;
}

/* curl's CURLMOPT_SOCKETFUNCTION: the sockets it wants watched, in c->epfd. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *data, void *sockp)
{
	struct claude *c = data;
	(void)easy;
	(void)sockp;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(c->epfd, EPOLL_CTL_DEL, s, NULL); /* ENOENT/EBADF: closed already */
		return 0;
	}
	struct epoll_event ev = {.data.fd = s};
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, s, &ev) < 0 &&
	    (errno != ENOENT || epoll_ctl(c->epfd, EPOLL_CTL_ADD, s, &ev) < 0)) {
		log_warn("network: cannot watch a socket: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* curl's CURLMOPT_TIMERFUNCTION: when to call it with CURL_SOCKET_TIMEOUT. */
static int on_timer(CURLM *multi, long ms, void *data)
{
	struct claude *c = data;
	(void)multi;
	c->curl_due = ms < 0 ? -1 : clock_mono_ms() + ms;
	return 0;
}

/* The multi handle, driven by events: a wake-up costs the sockets that have
 * something, not a poll(2) of every open transfer and a pass over every handle
 * (curl_multi_perform), which made a paced delta's cost grow with the number
 * of streams (bench/run, section 9). */
static int claude_multi_new(struct claude *c)
{
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	c->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->epfd < 0 || c->evfd < 0)
		return -errno;
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = c->evfd};
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &ev) < 0)
		return -errno;
	c->multi = curl_multi_init();
	if (!c->multi)
		return -ENOMEM;
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	return 0;
}

static void claude_wakeup(struct claude *c)
{
	uint64_t one = 1;
	if (write(c->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("network: eventfd: %s", strerror(errno));
}

int claude_new(const struct claude_config *cfg, struct store *st, struct claude **ret)
{
	const char *base = cfg->base_url && *cfg->base_url ? cfg->base_url : CLAUDE_DEFAULT_BASE;
	*ret = NULL;
	if (strncasecmp(base, "http://", 7) != 0 && strncasecmp(base, "https://", 8) != 0)
		return -EINVAL;

	struct claude *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	c->cmds_tail = &c->cmds;
	c->st = st;
	c->epfd = c->evfd = -1;
	c->curl_due = -1;
	c->rng = (uint64_t)clock_mono_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
	if (!c->rng)
		c->rng = 1;

	int r = -ENOMEM;
	size_t n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	if (asprintf(&c->url, "%.*s/v1/messages", (int)n, base) < 0) {
		c->url = NULL;
		goto fail;
	}
	c->base = strndup(base, n);
	if (!c->base)
		goto fail;
	r = claude_headers(c, cfg);
	if (r < 0)
		goto fail;
	r = claude_multi_new(c);
	if (r < 0)
		goto fail;
	*ret = c;
	return 0;
fail:
	claude_free(c);
	return r;
}

void claude_ended(struct claude *c)
{
	pthread_mutex_lock(&c->lock);
	c->in_flight--;
	pthread_mutex_unlock(&c->lock);
}

/* --- the transport ops: any thread, never block ---------------------------------- */

static int claude_push(struct claude *c, struct claude_cmd *cmd)
{
	pthread_mutex_lock(&c->lock);
	if (c->stopping) {
		pthread_mutex_unlock(&c->lock);
		free(cmd->spec.body);
		free(cmd);
		return -ECANCELED;
	}
	cmd->next = NULL;
	*c->cmds_tail = cmd;
	c->cmds_tail = &cmd->next;
	if (cmd->kind == CMD_START)
		c->in_flight++;
	pthread_mutex_unlock(&c->lock);
	claude_wakeup(c);
	return 0;
}

/* Takes spec->body on every path.  0, -EINVAL (no body), -ENOMEM, -ECANCELED
 * (the transport is stopping). */
static int on_start(void *impl, struct call_spec *spec)
{
	struct claude_cmd *cmd = NULL;
	int r = -EINVAL;
	if (!spec->body)
		goto fail;
	r = -ENOMEM;
	cmd = calloc(1, sizeof(*cmd));
	if (!cmd)
		goto fail;
	cmd->kind = CMD_START;
	cmd->spec = *spec;
	spec->body = NULL;
	return claude_push(impl, cmd);
fail:
	free(spec->body);
	spec->body = NULL;
	return r;
}

static void on_cancel(void *impl, uint64_t call_id)
{
	struct claude_cmd *cmd = calloc(1, sizeof(*cmd));
	if (!cmd) {
		/* The store has already forgotten the call and ignores its reports, so
		 * a lost cancel only wastes the rest of one transfer. */
		log_warn("cannot cancel call %" PRIu64 ": out of memory", call_id);
		return;
	}
	cmd->kind = CMD_CANCEL;
	cmd->spec.call_id = call_id;
	claude_push(impl, cmd);
}

static void on_models(void *impl, const char *model, int connect_timeout_ms)
{
	struct claude_cmd *cmd = calloc(1, sizeof(*cmd));
	if (!cmd) {
		/* Answered at once, from here: the store's lock is held, so the
		 * answer must wait for the loop; with no memory, nothing can.  The
		 * entry stays "fetching" and its waiters time out (MODELS_WAIT_MS)
		 * or wait for the next answer. */
		log_warn("cannot ask the Models API: out of memory");
		return;
	}
	cmd->kind = CMD_MODELS;
	cmd->spec.connect_timeout_ms = connect_timeout_ms;
	snprintf(cmd->spec.model, sizeof(cmd->spec.model), "%s", model ? model : "");
	claude_push(impl, cmd);
}

static const struct transport_ops claude_ops = {
    .start = on_start,
    .cancel = on_cancel,
    .models = on_models,
};

const struct transport_ops *claude_transport(void)
{
	return &claude_ops;
}

void claude_stop(struct claude *c)
{
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_mutex_unlock(&c->lock);
	claude_wakeup(c);
}

size_t claude_in_flight(struct claude *c)
{
	pthread_mutex_lock(&c->lock);
	size_t n = c->in_flight;
	pthread_mutex_unlock(&c->lock);
	return n;
}

double claude_random(struct claude *c)
{
	uint64_t x = c->rng; /* xorshift64* */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	c->rng = x;
	return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

/* --- the loop -------------------------------------------------------------------- */

static void claude_cancel(struct claude *c, uint64_t id)
{
	for (struct claude_call *call = c->calls; call; call = call->next)
		if (call->id == id && !call->ended) {
			claude_call_abort(call, "cancelled", "the call was cancelled");
			return;
		}
}

static void claude_commands(struct claude *c, struct claude_cmd *cmd)
{
	while (cmd) {
		struct claude_cmd *next = cmd->next;
		if (cmd->kind == CMD_START)
			claude_call_new(c, &cmd->spec);
		else if (cmd->kind == CMD_MODELS)
			claude_models_new(c, cmd->spec.model[0] ? cmd->spec.model : NULL,
					  cmd->spec.connect_timeout_ms);
		else
			claude_cancel(c, cmd->spec.call_id);
		free(cmd);
		cmd = next;
	}
}

/* Whether a transfer ended. */
static bool claude_reap(struct claude *c)
{
	CURLMsg *m;
	int left;
	bool any = false;
	while ((m = curl_multi_info_read(c->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		any = true;
		/* m does not survive curl_multi_remove_handle: copy it first. */
		CURLcode rc = m->data.result;
		if (claude_models_done(c, m->easy_handle, rc))
			continue;
		void *priv = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		claude_call_done(priv, rc);
	}
	return any;
}

/* Fires idle timeouts, drain limits and due retries; returns ms until the next. */
static int claude_tick(struct claude *c)
{
	int64_t now = clock_mono_ms(), wait = CLAUDE_POLL_MAX_MS;
	struct claude_call *call, *next;

	for (call = c->calls; call; call = next) {
		next = call->next;
		int64_t deadline = claude_call_tick(call, now);
		if (deadline - now < wait)
			wait = deadline - now;
	}
	return wait < 0 ? 0 : (int)wait;
}

/* Every call still open ends as interrupted, starts queued meanwhile too. */
static void claude_abort_all(struct claude *c)
{
	while (c->calls)
		claude_call_abort(c->calls, "interrupted", "mcpfs stopped during the call");
	claude_models_abort_all(c);
}

/* Runs curl's timer if it is due. */
static void claude_timer(struct claude *c)
{
	int running;
	if (c->curl_due >= 0 && clock_mono_ms() >= c->curl_due) {
		c->curl_due = -1; /* on_timer may set it again meanwhile */
		curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
}

/* Waits up to wait_ms for a socket, a command or curl's timer, and hands the
 * sockets that have something to curl. */
static void claude_wait(struct claude *c, int64_t wait_ms)
{
	struct epoll_event ev[CLAUDE_EVENTS];
	int64_t now = clock_mono_ms();
	if (c->curl_due >= 0 && c->curl_due - now < wait_ms)
		wait_ms = c->curl_due - now;
	int n = epoll_wait(c->epfd, ev, CLAUDE_EVENTS, wait_ms > 0 ? (int)wait_ms : 0);
	for (int i = 0; i < n; i++) {
		int running, fd = ev[i].data.fd;
		uint64_t v;
		if (fd == c->evfd) {
			if (read(c->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				log_debug("network: eventfd: %s", strerror(errno));
			continue;
		}
		uint32_t e = ev[i].events;
		int mask = (e & (EPOLLIN | EPOLLHUP | EPOLLERR) ? CURL_CSELECT_IN : 0) |
			   (e & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
			   (e & EPOLLERR ? CURL_CSELECT_ERR : 0);
		curl_multi_socket_action(c->multi, fd, mask, &running);
	}
}

int claude_run(struct claude *c)
{
	int64_t tick_at = 0; /* claude_tick's next deadline */
	for (;;) {
		pthread_mutex_lock(&c->lock);
		struct claude_cmd *cmds = c->cmds;
		bool stop = c->stopping;
		c->cmds = NULL;
		c->cmds_tail = &c->cmds;
		pthread_mutex_unlock(&c->lock);

		bool came = cmds != NULL;
		claude_commands(c, cmds);
		if (stop)
			break;
		claude_timer(c);
		bool changed = claude_reap(c) || came || c->retick;
		/* The pass over every call only when a deadline is due or calls
		 * came, went or ended: data only moves an idle deadline later. */
		int64_t now = clock_mono_ms();
		if (changed || now >= tick_at) {
			c->retick = false;
			tick_at = now + claude_tick(c);
		}
		claude_wait(c, tick_at - now);
	}
	claude_abort_all(c);
	return 0;
}

void claude_free(struct claude *c)
{
	if (!c)
		return;
	while (c->cmds) {
		struct claude_cmd *cmd = c->cmds;
		c->cmds = cmd->next;
		free(cmd->spec.body);
		free(cmd);
	}
	while (c->calls)
		claude_call_free(c->calls);
	claude_models_abort_all(c);
	if (c->multi)
		curl_multi_cleanup(c->multi);
	if (c->epfd >= 0)
		close(c->epfd);
	if (c->evfd >= 0)
		close(c->evfd);
	for (struct curl_slist *l = c->headers; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(c->headers);
	for (struct curl_slist *l = c->get_headers; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(c->get_headers);
	free(c->url);
	free(c->base);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
