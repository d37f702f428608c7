/* shim_accept.c — the shim's own accept loop: every request line and header
 * block is checked here, before libmicrohttpd reads a byte of it.
 *
 * libmicrohttpd 0.9.75 answers some bytes itself, before any callback of the
 * shim runs, and not cleanly: a malformed Content-Length ("1x", "-1", "2 2",
 * "2 " with a space after it, empty) gets a 400 whose header block its state
 * machine writes twice; a request line without a method (" GET / HTTP/1.1")
 * no answer at all.  So the shim accepts connections itself: each is held here
 * until its request line and header block are in the socket (read with
 * MSG_PEEK, so nothing is consumed) and checked (shim_frame_peek_check); then
 * it is refused here, one answer and the connection closed, or handed to
 * libmicrohttpd (MHD_add_connection) with its bytes untouched.  Every response
 * of the shim says Connection: close (shim_reply_headers), so libmicrohttpd
 * never reads a second request from a connection: each request is the first
 * of its connection and is checked here.  A connection is never handed over
 * unchecked.
 *
 * Held here: a connection waits for its header block SHIM_HEADER_TIMEOUT_MS at
 * most from its accept (then it is closed without an answer); one whose
 * header block passes SHIM_HEADER_MAX bytes gets 431.  Connections held here
 * and handed over (until libmicrohttpd's CLOSED notification) are at most
 * SHIM_MAX_CONNECTIONS together; while more than SHIM_MAX_CONNECTIONS -
 * SHIM_RESERVE are, each new connection closes the ones held here longest
 * (SHIM_EVICT_AGE_MS at least), so a client that sends its request at once
 * gets a place however many slow ones there are.  When every place is taken
 * and none may be freed so, the listening socket is left alone (the kernel's
 * backlog keeps the rest) until a connection closes or one held here has
 * waited SHIM_EVICT_AGE_MS.  When accept(2) fails for want of descriptors,
 * accepting pauses PAUSE_MS.  libmicrohttpd's own connection limit is set
 * above anything it can be handed (shim.c): a connection handed over past its
 * limit is closed without a notification, which would lose count of it.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "shim_impl.h"

#define WAKE_TAG UINT32_MAX
#define LISTEN_TAG 0u
#define PAUSE_MS 100	    /* after accept(2) failed for want of descriptors */
#define FULL_RECHECK_MS 100 /* while every place is taken, at the latest */

struct pending {
	int fd;	      /* -1: a free slot */
	uint32_t gen; /* counts the slot's uses: an event of an earlier one is stale */
	bool watched; /* in the epoll set */
	int64_t since_ms;
	struct pending *prev, *next; /* the held list, oldest first; or the free list */
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

struct shim_accept {
	struct shim *sh;
	int epfd, wakefd;
	pthread_t thread;
	atomic_bool stopping;
	atomic_uint live;	/* handed over, not closed yet */
	atomic_bool want_close; /* the thread waits for a connection to close */
	unsigned n_held;
	struct pending *head, *tail; /* held, oldest first */
	struct pending *free;
	bool paused;	   /* listen_fd is out of the epoll set */
	int64_t resume_ms; /* paused for an accept error: when to try again; or 0 */
	char peek[SHIM_HEADER_MAX];
	struct pending slot[SHIM_MAX_CONNECTIONS];
};

static unsigned in_use(struct shim_accept *a)
{
	return a->n_held + atomic_load(&a->live);
}

/* One answer, then the connection closed: what the client sent is read first,
 * so that closing does not reset the connection under the answer. */
static void refuse(int fd, unsigned status, const char *why)
{
	char body[320], head[512], sink[4096];
	int nb = snprintf(body, sizeof(body), "{\"error\":{\"type\":\"%s\",\"message\":\"%s\"}}\n",
			  shim_reply_type(status), why);
	int nh =
	    snprintf(head, sizeof(head),
		     "HTTP/1.1 %u %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
		     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
		     "Content-Length: %d\r\n\r\n",
		     status,
		     status == MHD_HTTP_CONTENT_TOO_LARGE		  ? "Content Too Large"
		     : status == MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE ? "Request Header "
									    "Fields Too Large"
									  : "Bad Request",
		     nb);
	for (int i = 0; i < 64 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
		;
	if (send(fd, head, (size_t)nh, MSG_NOSIGNAL | MSG_DONTWAIT) == nh)
		(void)send(fd, body, (size_t)nb, MSG_NOSIGNAL | MSG_DONTWAIT);
	shutdown(fd, SHUT_WR);
	close(fd);
}

/* Takes p off the held list (and the epoll set) and frees its slot; returns
 * its descriptor. */
static int unhold(struct shim_accept *a, struct pending *p)
{
	int fd = p->fd;
	if (p->watched)
		epoll_ctl(a->epfd, EPOLL_CTL_DEL, fd, NULL);
	p->watched = false;
	if (p->prev)
		p->prev->next = p->next;
	else
		a->head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		a->tail = p->prev;
	p->fd = -1;
	p->prev = NULL;
	p->next = a->free;
	a->free = p;
	a->n_held--;
	return fd;
}

static void drop(struct shim_accept *a, struct pending *p, const char *why)
{
	log_debug("http: closing a connection: %s", why);
	close(unhold(a, p));
}

static void hand_over(struct shim_accept *a, struct pending *p)
{
	struct sockaddr_storage addr = p->addr;
	socklen_t addrlen = p->addrlen;
	int fd = unhold(a, p);
	/* Counted first: libmicrohttpd may close it before it returns.  On
	 * failure it closed the socket itself, without a notification. */
	atomic_fetch_add(&a->live, 1);
	if (MHD_add_connection(a->sh->mhd, fd, (const struct sockaddr *)&addr, addrlen) !=
	    MHD_YES) {
		atomic_fetch_sub(&a->live, 1);
		log_debug("http: a connection could not be handed to libmicrohttpd");
	}
}

static void listening(struct shim_accept *a, bool on, int64_t resume_ms)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = LISTEN_TAG};
	a->resume_ms = resume_ms;
	if (on == !a->paused)
		return;
	if (on ? epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->sh->listen_fd, &ev)
	       : epoll_ctl(a->epfd, EPOLL_CTL_DEL, a->sh->listen_fd, NULL))
		return;
	a->paused = !on;
	atomic_store(&a->want_close, false);
}

/* Every place is taken: waits for a close (shim_accept_closed wakes the
 * thread) or for the oldest held connection to be old enough to be closed. */
static void pause_full(struct shim_accept *a)
{
	listening(a, false, 0);
	atomic_store(&a->want_close, true);
	if (in_use(a) < SHIM_MAX_CONNECTIONS) /* one closed meanwhile */
		listening(a, true, 0);
}

/* Closes the connection held longest, if it waited SHIM_EVICT_AGE_MS. */
static bool evict_oldest(struct shim_accept *a, int64_t now_ms)
{
	if (!a->head || now_ms - a->head->since_ms < SHIM_EVICT_AGE_MS)
		return false;
	drop(a, a->head, "the connection reserve is needed");
	return true;
}

/* p's bytes so far: refused, handed over, or left to wait for more. */
static void look(struct shim_accept *a, struct pending *p, uint32_t events)
{
	ssize_t n = recv(p->fd, a->peek, sizeof(a->peek), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		drop(a, p, "closed or failed before a request");
		return;
	}
	size_t len;
	unsigned status = MHD_HTTP_BAD_REQUEST;
	const char *why = shim_frame_peek_check(a->peek, (size_t)n, &len, &status);
	if (!why && len) {
		hand_over(a, p);
		return;
	}
	if (!why && (size_t)n == sizeof(a->peek)) {
		status = MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE;
		why = "the request line and headers are over the shim's limit of 16 KiB";
	}
	if (why) {
		log_debug("http: %u before libmicrohttpd: %s", status, why);
		refuse(unhold(a, p), status, why);
	} else if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		drop(a, p, "the client ended before its headers did");
}

/* Accepts what waits in the backlog, while places are left. */
static void accept_all(struct shim_accept *a)
{
	for (bool first = true;; first = false) {
		int64_t now = clock_mono_ms();
		/* Only when someone waits (the first time round, epoll said so;
		 * later, epoll will say so again) is a held connection closed. */
		if (in_use(a) >= SHIM_MAX_CONNECTIONS && (!first || !evict_oldest(a, now))) {
			if (first)
				pause_full(a);
			return;
		}
		struct pending *p = a->free;
		p->addrlen = sizeof(p->addr);
		p->fd = accept4(a->sh->listen_fd, (struct sockaddr *)&p->addr, &p->addrlen,
				SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (p->fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) /* EMFILE and the like */
				listening(a, false, now + PAUSE_MS);
			return;
		}
		a->free = p->next;
		p->since_ms = now;
		p->next = NULL;
		p->prev = a->tail;
		if (a->tail)
			a->tail->next = p;
		else
			a->head = p;
		a->tail = p;
		a->n_held++;
		while (in_use(a) > SHIM_MAX_CONNECTIONS - SHIM_RESERVE && evict_oldest(a, now))
			;
		/* Its request is often in already: no epoll_ctl for it then. */
		p->gen++;
		look(a, p, 0);
		if (p->fd < 0) /* refused, handed over or dropped */
			continue;
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
					 .data.u64 = (uint64_t)p->gen << 32 |
						     ((uint32_t)(p - a->slot) + 1)};
		if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, p->fd, &ev) < 0)
			drop(a, p, "cannot watch it");
		else {
			p->watched = true;
			look(a, p, 0); /* bytes that came in between */
		}
	}
}

/* Closes what waited too long for its headers, listens again when it may;
 * returns the ms until the next of these is due, or -1. */
static int expire(struct shim_accept *a)
{
	int64_t now = clock_mono_ms(), next = -1;
	while (a->head && now - a->head->since_ms >= SHIM_HEADER_TIMEOUT_MS)
		drop(a, a->head, "no complete request header in time");
	if (a->head)
		next = a->head->since_ms + SHIM_HEADER_TIMEOUT_MS - now;
	if (!a->paused)
		return (int)next;
	if (a->resume_ms) {
		if (now >= a->resume_ms)
			listening(a, true, 0);
		else if (next < 0 || a->resume_ms - now < next)
			next = a->resume_ms - now;
		return (int)next;
	}
	/* Paused with every place taken. */
	if (in_use(a) < SHIM_MAX_CONNECTIONS ||
	    (a->head && now - a->head->since_ms >= SHIM_EVICT_AGE_MS)) {
		listening(a, true, 0);
		return (int)next;
	}
	int64_t due = a->head ? a->head->since_ms + SHIM_EVICT_AGE_MS - now : FULL_RECHECK_MS;
	if (due > FULL_RECHECK_MS)
		due = FULL_RECHECK_MS;
	return (int)(next < 0 || due < next ? due : next);
}

static void *accept_loop(void *arg)
{
	struct shim_accept *a = arg;
	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(a->epfd, evs, 64, expire(a));
		for (int i = 0; i < n; i++) {
			uint32_t tag = (uint32_t)evs[i].data.u64, gen = evs[i].data.u64 >> 32;
			uint64_t v;
			if (tag == WAKE_TAG && read(a->wakefd, &v, sizeof(v)) >= 0 &&
			    atomic_load(&a->stopping))
				return NULL;
			if (tag == WAKE_TAG)
				continue;
			if (tag == LISTEN_TAG)
				accept_all(a);
			else if (a->slot[tag - 1].fd >= 0 && a->slot[tag - 1].gen == gen)
				look(a, &a->slot[tag - 1], evs[i].events);
		}
	}
}

int shim_accept_start(struct shim *sh)
{
	struct shim_accept *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->sh = sh;
	for (size_t i = SHIM_MAX_CONNECTIONS; i-- > 0;) {
		a->slot[i].fd = -1;
		a->slot[i].next = a->free;
		a->free = &a->slot[i];
	}
	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	a->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event lev = {.events = EPOLLIN, .data.u64 = LISTEN_TAG};
	struct epoll_event wev = {.events = EPOLLIN, .data.u64 = WAKE_TAG};
	int r;
	if (a->epfd >= 0 && a->wakefd >= 0 &&
	    epoll_ctl(a->epfd, EPOLL_CTL_ADD, sh->listen_fd, &lev) == 0 &&
	    epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->wakefd, &wev) == 0) {
		sh->acceptor = a; /* before the thread: its connections report here */
		r = -pthread_create(&a->thread, NULL, accept_loop, a);
	} else
		r = -errno;
	if (r < 0) {
		sh->acceptor = NULL;
		if (a->epfd >= 0)
			close(a->epfd);
		if (a->wakefd >= 0)
			close(a->wakefd);
		free(a);
		return r;
	}
	return 0;
}

void shim_accept_stop(struct shim *sh)
{
	struct shim_accept *a = sh->acceptor;
	if (!a || atomic_load(&a->stopping))
		return;
	uint64_t one = 1;
	atomic_store(&a->stopping, true);
	if (write(a->wakefd, &one, sizeof(one)) != sizeof(one))
		log_debug("http: cannot wake the accept thread");
	pthread_join(a->thread, NULL);
	while (a->head)
		close(unhold(a, a->head));
}

void shim_accept_free(struct shim *sh)
{
	struct shim_accept *a = sh->acceptor;
	if (!a)
		return;
	close(a->epfd);
	close(a->wakefd);
	free(a);
	sh->acceptor = NULL;
}

void shim_accept_closed(struct shim *sh)
{
	struct shim_accept *a = sh->acceptor;
	uint64_t one = 1;
	if (!a)
		return;
	atomic_fetch_sub(&a->live, 1);
	/* After the count (seq_cst): pause_full sets the flag, then counts. */
	if (atomic_load(&a->want_close) && write(a->wakefd, &one, sizeof(one)) != sizeof(one))
		log_debug("http: cannot wake the accept thread");
}
