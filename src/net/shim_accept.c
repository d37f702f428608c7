/* shim_accept.c — the shim's own accept loop, which looks at a connection's
 * first header block before libmicrohttpd reads a byte of it.
 *
 * libmicrohttpd 0.9.75 answers a malformed Content-Length ("1x", "-1", "2 2",
 * empty) itself while it parses the header block, before any callback of the
 * shim runs, and its state machine then writes that answer's header block a
 * second time.  So the shim accepts connections itself: each new connection is
 * kept here until its header block is in the socket (read with MSG_PEEK, so
 * nothing is consumed), and a Content-Length that is not 1 to
 * SHIM_LENGTH_DIGITS digits is answered here, one 400 (413 for too many
 * digits) with Connection: close; every other connection is handed to
 * libmicrohttpd (MHD_add_connection) with its bytes untouched, which then
 * applies every other check (shim_frame.c) and limit (shim_conn.c).
 *
 * A connection whose header block is not complete within SHIM_PEEK_MS, or is
 * longer than SHIM_PEEK_MAX bytes, is handed over as it is: a slow client
 * costs a place here for SHIM_PEEK_MS at most, and at most SHIM_PENDING_MAX
 * wait at once (past that, the oldest is handed over).  Connections held here
 * and by libmicrohttpd together are at most SHIM_MAX_CONNECTIONS: past that the
 * listening socket is left alone (the kernel's backlog keeps the rest) until one
 * closes, and so libmicrohttpd never meets its own limit, set above it (a
 * connection handed over at that limit deadlocked its workers in 0.9.75).  When
 * accept(2) fails for want of descriptors, accepting pauses SHIM_PAUSE_MS.
 * Only the first request
 * of a connection is looked at: a later one on a kept-alive connection is
 * libmicrohttpd's alone (its 400 is then the doubled one).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "shim_impl.h"

#define WAKE_TAG UINT32_MAX
#define LISTEN_TAG 0u
#define SHIM_PAUSE_MS 100

struct pending {
	int fd; /* -1: a free slot */
	int64_t since_ms;
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

struct shim_accept {
	struct shim *sh;
	int epfd, wakefd;
	pthread_t thread;
	atomic_bool stopping;
	atomic_uint live;   /* handed over, not closed yet */
	unsigned n_pending; /* slots in use */
	bool paused;	    /* listen_fd is out of the epoll set */
	int64_t resume_ms;  /* paused for an accept error: when to try again; or 0 */
	struct pending slot[SHIM_PENDING_MAX];
};

/* What is wrong with the Content-Length headers of the header block s[0..n),
 * or NULL.  Only the value's syntax: how many there are is shim_frame.c's. */
const char *shim_accept_length_problem(const char *s, size_t n, unsigned *status)
{
	static const char name[] = "content-length";
	const char *end = s + n, *p = memchr(s, '\n', n);
	while (p && ++p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((eol ? eol : end) - p);
		if (len > sizeof(name) - 1 && p[sizeof(name) - 1] == ':' &&
		    !strncasecmp(p, name, sizeof(name) - 1)) {
			const char *v = p + sizeof(name), *e = p + len;
			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
				e--;
			if (v == e)
				return "an empty Content-Length";
			for (const char *q = v; q < e; q++)
				if (*q < '0' || *q > '9')
					return "a Content-Length that is not a number of bytes "
					       "(digits only)";
			if (e - v > SHIM_LENGTH_DIGITS) {
				*status = 413;
				return "a Content-Length over the shim's ceiling";
			}
		}
		p = eol;
	}
	return NULL;
}

/* One answer, then the connection closed: what the client sent is read first,
 * so that closing does not reset the connection under the answer. */
static void refuse(int fd, unsigned status, const char *why)
{
	char body[256], head[512], sink[4096];
	int nb =
	    snprintf(body, sizeof(body),
		     "{\"error\":{\"type\":\"invalid_request_error\",\"message\":\"%s\"}}\n", why);
	int nh =
	    snprintf(head, sizeof(head),
		     "HTTP/1.1 %u %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
		     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
		     "Content-Length: %d\r\n\r\n",
		     status, status == 413 ? "Content Too Large" : "Bad Request", nb);
	for (int i = 0; i < 64 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
		;
	if (send(fd, head, (size_t)nh, MSG_NOSIGNAL | MSG_DONTWAIT) == nh)
		(void)send(fd, body, (size_t)nb, MSG_NOSIGNAL | MSG_DONTWAIT);
	shutdown(fd, SHUT_WR);
	close(fd);
}

static void hand_over(struct shim_accept *a, struct pending *p)
{
	epoll_ctl(a->epfd, EPOLL_CTL_DEL, p->fd, NULL);
	/* libmicrohttpd closes the socket itself when it cannot take it. */
	if (MHD_add_connection(a->sh->mhd, p->fd, (const struct sockaddr *)&p->addr, p->addrlen) ==
	    MHD_YES)
		atomic_fetch_add(&a->live, 1);
	else
		log_debug("http: a connection could not be handed to libmicrohttpd");
	p->fd = -1;
	a->n_pending--;
}

static void drop(struct shim_accept *a, struct pending *p)
{
	epoll_ctl(a->epfd, EPOLL_CTL_DEL, p->fd, NULL);
	p->fd = -1;
	a->n_pending--;
}

static void listening(struct shim_accept *a, bool on, int64_t resume_ms)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = LISTEN_TAG};
	if (on == !a->paused)
		return;
	if (on ? epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->sh->listen_fd, &ev)
	       : epoll_ctl(a->epfd, EPOLL_CTL_DEL, a->sh->listen_fd, NULL))
		return;
	a->paused = !on;
	a->resume_ms = resume_ms;
}

static bool full(struct shim_accept *a)
{
	return a->n_pending + atomic_load(&a->live) >= SHIM_MAX_CONNECTIONS;
}

/* The header block of p, if it is all in: refused here or handed over. */
static void look(struct shim_accept *a, struct pending *p)
{
	char buf[SHIM_PEEK_MAX];
	ssize_t n = recv(p->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) { /* closed or failed before a request: nothing to answer */
		int fd = p->fd;
		drop(a, p);
		close(fd);
		return;
	}
	const char *end = memmem(buf, (size_t)n, "\n\r\n", 3);
	if (!end)
		end = memmem(buf, (size_t)n, "\n\n", 2);
	if (!end && (size_t)n < sizeof(buf))
		return; /* more to come */
	unsigned status = 400;
	const char *why =
	    end ? shim_accept_length_problem(buf, (size_t)(end - buf) + 1, &status) : NULL;
	if (!why) {
		hand_over(a, p);
		return;
	}
	log_debug("http: refused before libmicrohttpd: %s", why);
	int fd = p->fd;
	drop(a, p);
	refuse(fd, status, why);
}

static struct pending *free_slot(struct shim_accept *a)
{
	struct pending *oldest = NULL;
	for (size_t i = 0; i < SHIM_PENDING_MAX; i++) {
		if (a->slot[i].fd < 0)
			return &a->slot[i];
		if (!oldest || a->slot[i].since_ms < oldest->since_ms)
			oldest = &a->slot[i];
	}
	hand_over(a, oldest);
	return oldest;
}

static void accept_all(struct shim_accept *a)
{
	for (;;) {
		if (full(a)) {
			listening(a, false, 0);
			return;
		}
		struct pending t = {.addrlen = sizeof(t.addr)};
		t.fd = accept4(a->sh->listen_fd, (struct sockaddr *)&t.addr, &t.addrlen,
			       SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (t.fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED) /* EMFILE and the like: the backlog keeps it */
				listening(a, false, clock_mono_ms() + SHIM_PAUSE_MS);
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		struct pending *p = free_slot(a);
		*p = t;
		a->n_pending++;
		p->since_ms = clock_mono_ms();
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
					 .data.u32 = (uint32_t)(p - a->slot) + 1};
		if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, p->fd, &ev) < 0)
			hand_over(a, p);
		else
			look(a, p); /* its bytes may be there already */
	}
}

/* Hands over what waited SHIM_PEEK_MS; returns the ms until the next one is due. */
static int expire(struct shim_accept *a)
{
	int64_t now = clock_mono_ms(), next = -1;
	if (a->paused && (a->resume_ms ? now >= a->resume_ms : !full(a)))
		listening(a, true, 0);
	if (a->paused && a->resume_ms)
		next = a->resume_ms - now;
	for (size_t i = 0; i < SHIM_PENDING_MAX; i++) {
		struct pending *p = &a->slot[i];
		if (p->fd < 0)
			continue;
		if (now - p->since_ms >= SHIM_PEEK_MS)
			hand_over(a, p);
		else if (next < 0 || p->since_ms + SHIM_PEEK_MS - now < next)
			next = p->since_ms + SHIM_PEEK_MS - now;
	}
	return (int)next;
}

static void *accept_loop(void *arg)
{
	struct shim_accept *a = arg;
	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(a->epfd, evs, 64, expire(a));
		for (int i = 0; i < n; i++) {
			uint32_t tag = evs[i].data.u32;
			uint64_t v;
			if (tag == WAKE_TAG && read(a->wakefd, &v, sizeof(v)) >= 0 &&
			    atomic_load(&a->stopping))
				return NULL;
			if (tag == WAKE_TAG)
				continue;
			if (tag == LISTEN_TAG)
				accept_all(a);
			else if (a->slot[tag - 1].fd >= 0)
				look(a, &a->slot[tag - 1]);
		}
	}
}

int shim_accept_start(struct shim *sh)
{
	struct shim_accept *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->sh = sh;
	for (size_t i = 0; i < SHIM_PENDING_MAX; i++)
		a->slot[i].fd = -1;
	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	a->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event lev = {.events = EPOLLIN, .data.u32 = LISTEN_TAG};
	struct epoll_event wev = {.events = EPOLLIN, .data.u32 = WAKE_TAG};
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
	for (size_t i = 0; i < SHIM_PENDING_MAX; i++)
		if (a->slot[i].fd >= 0) {
			int fd = a->slot[i].fd;
			drop(a, &a->slot[i]);
			close(fd);
		}
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
	if (!a || !atomic_load(&a->live))
		return;
	/* Near SHIM_MAX_CONNECTIONS: the accept thread may be waiting for this
	 * (n_pending is the thread's own, so all it may hold is assumed). */
	if (atomic_fetch_sub(&a->live, 1) + SHIM_PENDING_MAX >= SHIM_MAX_CONNECTIONS &&
	    write(a->wakefd, &one, sizeof(one)) != sizeof(one))
		log_debug("http: cannot wake the accept thread");
}
