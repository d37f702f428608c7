/* shim_conn.c — what the shim's clients may hold at once: connections, the
 * bytes of their bodies, and the time they take to send a request.
 *
 * libmicrohttpd's own limits do not stop a client that is slow on purpose:
 * its timeout restarts with every byte, so a client sending one header line
 * every ten seconds keeps a connection for ever, and a thousand of them take
 * every connection (the rest wait unanswered in the kernel's backlog).  So
 * each connection is listed here (MHD_OPTION_NOTIFY_CONNECTION), oldest first,
 * with a deadline for what it is doing:
 *   waiting  for a request's header block: SHIM_HEADER_TIMEOUT_MS in total from
 *            the connection's start or its previous answer (an idle keep-alive
 *            connection is waiting too);
 *   body     SHIM_BODY_TIMEOUT_MS in total for the body after the headers;
 *   running  the handler ran: an answer or a stream is under way, no deadline.
 * The timer thread closes those past their deadline (shutdown(2) on the
 * socket: libmicrohttpd sees the end of the stream and frees the connection
 * itself; the descriptor stays valid until the CLOSED notification, which
 * needs shim->lock, so it is never one reused meanwhile).  And when a new
 * connection finds fewer than SHIM_RESERVE free places, the connection waiting
 * longest for its headers is closed at once: a client that sends its request
 * right away always gets a place, however many slow ones there are.  Streams
 * (which are "running" for as long as the reply takes) stop at
 * SHIM_STREAMS_MAX with 503, so they never take the reserve either.
 *
 * Bodies: each request's body is admitted against SHIM_BODIES_MAX by its
 * Content-Length before a byte of it is kept, and released when the request
 * ends; past the budget the request gets 503 with Retry-After.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "shim_impl.h"

enum conn_phase { WAITING, BODY, RUNNING };

struct shim_conn {
	int fd;
	enum conn_phase phase;
	int64_t deadline_ms;	       /* monotonic; WAITING and BODY */
	int64_t since_ms;	       /* monotonic: the phase began */
	bool closing;		       /* shut down by us */
	struct shim_conn *prev, *next; /* shim->conns; under shim->lock */
};

/* Under sh->lock. */
static void conn_close_locked(struct shim *sh, struct shim_conn *k, const char *why)
{
	if (k->closing)
		return;
	k->closing = true;
	sh->n_closing++;
	sh->evicted++;
	log_debug("http: closing connection %d: %s", k->fd, why);
	shutdown(k->fd, SHUT_RDWR);
}

static void conn_unlink_locked(struct shim *sh, struct shim_conn *k)
{
	if (k->prev)
		k->prev->next = k->next;
	else
		sh->conns = k->next;
	if (k->next)
		k->next->prev = k->prev;
	else
		sh->conns_tail = k->prev;
	sh->n_conns--;
	sh->n_closing -= k->closing;
}

/* Under sh->lock: while the reserve is in use, closes the connections waiting
 * longest for their headers, those waiting SHIM_EVICT_AGE_MS at least (a
 * client that sends its request at once is never one of them). */
static void keep_reserve_locked(struct shim *sh, int64_t now_ms)
{
	for (struct shim_conn *k = sh->conns; k; k = k->next) {
		if (sh->n_conns - sh->n_closing <= SHIM_MAX_CONNECTIONS - SHIM_RESERVE)
			return;
		if (k->phase == WAITING && !k->closing && now_ms - k->since_ms >= SHIM_EVICT_AGE_MS)
			conn_close_locked(sh, k, "the connection reserve is needed");
	}
}

void shim_conn_on_notify(void *cls, struct MHD_Connection *c, void **socket_context,
			 enum MHD_ConnectionNotificationCode toe)
{
	struct shim *sh = cls;
	struct shim_conn *k = *socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		shim_accept_closed(sh);
		if (!k)
			return;
		pthread_mutex_lock(&sh->lock);
		conn_unlink_locked(sh, k);
		pthread_mutex_unlock(&sh->lock);
		free(k);
		*socket_context = NULL;
		return;
	}
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	k = ci ? calloc(1, sizeof(*k)) : NULL;
	if (!k)
		return; /* unlisted: no deadline, never evicted */
	k->fd = ci->connect_fd;
	k->phase = WAITING;
	k->since_ms = clock_mono_ms();
	k->deadline_ms = k->since_ms + SHIM_HEADER_TIMEOUT_MS;
	pthread_mutex_lock(&sh->lock);
	k->prev = sh->conns_tail;
	if (k->prev)
		k->prev->next = k;
	else
		sh->conns = k;
	sh->conns_tail = k;
	sh->n_conns++;
	keep_reserve_locked(sh, k->since_ms);
	pthread_mutex_unlock(&sh->lock);
	*socket_context = k;
}

static struct shim_conn *conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

static void conn_set(struct shim *sh, struct MHD_Connection *c, enum conn_phase phase,
		     int64_t timeout_ms)
{
	struct shim_conn *k = conn_of(c);
	if (!k)
		return;
	pthread_mutex_lock(&sh->lock);
	k->phase = phase;
	k->since_ms = clock_mono_ms();
	k->deadline_ms = k->since_ms + timeout_ms;
	pthread_mutex_unlock(&sh->lock);
}

void shim_conn_headers_in(struct shim *sh, struct MHD_Connection *c, bool body_follows)
{
	conn_set(sh, c, body_follows ? BODY : RUNNING, SHIM_BODY_TIMEOUT_MS);
}

void shim_conn_running(struct shim *sh, struct MHD_Connection *c)
{
	conn_set(sh, c, RUNNING, 0);
}

void shim_conn_done(struct shim *sh, struct MHD_Connection *c)
{
	conn_set(sh, c, WAITING, SHIM_HEADER_TIMEOUT_MS);
}

void shim_conn_tick_locked(struct shim *sh, int64_t now_ms)
{
	keep_reserve_locked(sh, now_ms);
	for (struct shim_conn *k = sh->conns; k; k = k->next)
		if (k->phase != RUNNING && now_ms >= k->deadline_ms)
			conn_close_locked(sh, k,
					  k->phase == WAITING ? "no complete request header in time"
							      : "the body took too long");
}

int shim_conn_body_admit(struct shim *sh, struct shim_request *rq, size_t n)
{
	int r = 0;
	pthread_mutex_lock(&sh->lock);
	if (n > SHIM_BODIES_MAX - sh->body_bytes)
		r = -EAGAIN;
	else {
		sh->body_bytes += n;
		rq->admitted += n;
	}
	pthread_mutex_unlock(&sh->lock);
	return r;
}

void shim_conn_body_release(struct shim *sh, struct shim_request *rq)
{
	if (!rq->admitted)
		return;
	pthread_mutex_lock(&sh->lock);
	sh->body_bytes -= rq->admitted;
	pthread_mutex_unlock(&sh->lock);
	rq->admitted = 0;
}

bool shim_conn_stream_room(struct shim *sh)
{
	pthread_mutex_lock(&sh->lock);
	bool room = sh->n_streams < SHIM_STREAMS_MAX;
	pthread_mutex_unlock(&sh->lock);
	return room;
}
