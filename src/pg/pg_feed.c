/* pg_feed.c — the PostgreSQL engine's change feed: a thread with its own
 * connection LISTENing on channel `mcpfs`, turning each notification ("ID SEQ")
 * into a storage_hint in a bounded queue and waking the daemon through an
 * eventfd that stays the same across reconnects.  A reconnect, or a full queue,
 * sets `resync`: hints were lost and the daemon catches up by query
 * (storage_changes).  The thread reconnects with back-off, forever, until
 * pg_feed_stop(). */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "pg_impl.h"

static void feed_wake(struct pg_feed *f)
{
	uint64_t one = 1;
	ssize_t w = write(f->event_fd, &one, sizeof(one));
	(void)w; /* EAGAIN: the counter is full, the reader wakes anyway */
}

static void feed_push(struct pg_feed *f, uint64_t id, uint64_t seq, bool resync)
{
	pthread_mutex_lock(&f->lock);
	if (resync)
		f->resync = true;
	else if (f->count == PG_FEED_QUEUE)
		f->resync = true; /* overflow: the catch-up query finds what is dropped */
	else
		f->queue[f->count++] = (struct storage_hint){id, seq};
	pthread_mutex_unlock(&f->lock);
	feed_wake(f);
}

/* Waits up to ms for fd (or only for stop when fd < 0).  1: fd readable, 0:
 * timeout, -1: stop asked. */
static int feed_wait(struct pg_feed *f, int fd, int ms)
{
	struct pollfd pf[2] = {{f->stop_fd, POLLIN, 0}, {fd, POLLIN, 0}};
	int n = poll(pf, fd >= 0 ? 2 : 1, ms);

	if (n > 0 && pf[0].revents)
		return -1;
	return n > 0 ? 1 : 0;
}

static PGconn *feed_connect(struct pg_store *p)
{
	char why[PG_ERR_MAX];
	PGconn *c = pg_connect(p, "mcpfs-listen", why, sizeof(why));

	if (!c)
		return NULL;
	PGresult *r = PQexec(c, "LISTEN " PG_CHANNEL);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok) {
		PQfinish(c);
		return NULL;
	}
	return c;
}

/* Reads what arrived; false when the connection broke. */
static bool feed_consume(struct pg_feed *f, PGconn *c)
{
	PGnotify *n;

	if (!PQconsumeInput(c))
		return false;
	while ((n = PQnotifies(c))) {
		uint64_t id = 0, seq = 0;
		if (sscanf(n->extra, "%" SCNu64 " %" SCNu64, &id, &seq) == 2)
			feed_push(f, id, seq, false);
		PQfreemem(n);
	}
	return PQstatus(c) == CONNECTION_OK;
}

static void *feed_main(void *arg)
{
	struct pg_store *p = arg;
	struct pg_feed *f = &p->feed;
	int backoff = 0;

	for (;;) {
		if (!f->conn) {
			f->conn = feed_connect(p);
			if (!f->conn) {
				backoff = backoff ? backoff * 2 : PG_BACKOFF_MIN_MS;
				if (backoff > PG_BACKOFF_MAX_MS)
					backoff = PG_BACKOFF_MAX_MS;
				if (feed_wait(f, -1, backoff) < 0)
					break;
				continue;
			}
			backoff = 0;
			/* whatever was notified while nobody listened is lost */
			feed_push(f, 0, 0, true);
		}
		int w = feed_wait(f, PQsocket(f->conn), -1);
		if (w < 0)
			break;
		if (w > 0 && !feed_consume(f, f->conn)) {
			PQfinish(f->conn);
			f->conn = NULL;
		}
	}
	if (f->conn)
		PQfinish(f->conn);
	f->conn = NULL;
	return NULL;
}

int pg_feed_start(struct pg_store *p)
{
	struct pg_feed *f = &p->feed;

	f->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (f->event_fd < 0 || f->stop_fd < 0)
		return -errno;
	/* connected before returning, so that a commit made after pg_store_new()
	 * returns is notified to this daemon */
	f->conn = feed_connect(p);
	return 0;
}

/* The listener's thread, once the daemon is in the background (fork keeps only
 * the calling thread): until then, notifications wait on its connection. */
int pg_feed_run(struct storage *s)
{
	struct pg_store *p = (struct pg_store *)s;
	struct pg_feed *f = &p->feed;

	if (f->started)
		return 0;
	int err = pthread_create(&f->thread, NULL, feed_main, p);
	if (err)
		return -err;
	f->started = true;
	return 0;
}

void pg_feed_stop(struct pg_store *p)
{
	struct pg_feed *f = &p->feed;
	uint64_t one = 1;

	if (f->started) {
		ssize_t w = write(f->stop_fd, &one, sizeof(one));
		(void)w;
		pthread_join(f->thread, NULL);
		f->started = false;
	}
	if (f->conn)
		PQfinish(f->conn);
	f->conn = NULL;
	if (f->event_fd >= 0)
		close(f->event_fd);
	if (f->stop_fd >= 0)
		close(f->stop_fd);
	f->event_fd = f->stop_fd = -1;
	pthread_mutex_destroy(&f->lock);
}

int pg_feed_fd(struct storage *s)
{
	return ((struct pg_store *)s)->feed.event_fd;
}

int pg_feed_drain(struct storage *s, struct storage_hint *hints, int max, bool *resync)
{
	struct pg_feed *f = &((struct pg_store *)s)->feed;
	uint64_t v;
	int n;

	if (max < 0)
		return -EINVAL;
	ssize_t r = read(f->event_fd, &v, sizeof(v));
	(void)r; /* EAGAIN: nothing new; the queue is read anyway */
	pthread_mutex_lock(&f->lock);
	n = f->count < max ? f->count : max;
	memcpy(hints, f->queue, (size_t)n * sizeof(*hints));
	memmove(f->queue, f->queue + n, (size_t)(f->count - n) * sizeof(*hints));
	f->count -= n;
	*resync = f->resync;
	f->resync = false;
	if (f->count)
		feed_wake(f); /* more than max waiting: poll stays readable */
	pthread_mutex_unlock(&f->lock);
	return n;
}
