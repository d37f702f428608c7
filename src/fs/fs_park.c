/* fs_park.c — reads of `output` (and `thinking`) that wait for the reply, and
 * poll waiters.
 *
 * A read that finds no new bytes of an unfinished reply is parked: its request
 * is kept in a per-context list and the handler returns without replying (the
 * low-level API allows a reply from any thread later).  Whenever the store says
 * a context's output changed, every read parked on it is served again.  No
 * thread waits for a parked read.
 *
 * Interrupts: the callback is registered before park_lock is taken (libfuse
 * calls it with the request's own lock held, and it takes park_lock); it finds
 * the request in the lists by pointer and answers EINTR.  A request taken off
 * the lists to be served again is answered by whoever took it; the serving path
 * re-checks fuse_req_interrupted() under park_lock before parking again.
 * Lock order: park_lock, then the store's lock (reply_read takes it).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "fs_impl.h"

static void park_push(struct fs *fs, uint64_t ctx, struct parked *p)
{
	/* An emptied list may still have its (NULL) head in the map: replace it. */
	p->next = map_del_id(&fs->parked, ctx);
	if (map_put_id(&fs->parked, ctx, p) < 0) {
		/* Out of memory for the list head: answer now rather than lose it. */
		if (p->req)
			fuse_reply_err(p->req, ENOMEM);
		else
			fuse_pollhandle_destroy(p->ph);
		free(p);
	}
}

static void on_interrupt(fuse_req_t req, void *data)
{
	struct fs *fs = data;
	struct parked *found = NULL;
	pthread_mutex_lock(&fs->park_lock);
	for (size_t i = 0; !found && i < fs->parked.nslots; i++)
		for (struct map_node *n = fs->parked.slots[i]; !found && n; n = n->next) {
			struct parked **pp = (struct parked **)&n->value;
			for (; *pp; pp = &(*pp)->next)
				if ((*pp)->req == req) {
					found = *pp;
					*pp = found->next;
					break;
				}
		}
	pthread_mutex_unlock(&fs->park_lock);
	if (found) {
		fuse_reply_err(req, EINTR);
		free(found);
	}
	/* Emptied lists keep their (NULL) head; fs_park_on_change drops them. */
}

/* `output` reads the turn's text, `thinking` its thinking. */
uint64_t fs_park_size(struct fs *fs, struct fs_handle *h)
{
	return h->kind == K_THINKING ? reply_thinking_size(fs->st, h->turn)
				     : reply_size(fs->st, h->turn);
}

static ssize_t stream_read(struct fs *fs, struct fs_handle *h, uint64_t off, void *buf, size_t size)
{
	return h->kind == K_THINKING ? reply_read_thinking(fs->st, h->turn, off, buf, size)
				     : reply_read(fs->st, h->turn, off, buf, size);
}

void fs_park_read(struct fs *fs, fuse_req_t req, struct fs_handle *h, off_t off, size_t size,
		  bool nonblock)
{
	/* Only what is there now can be returned (output is direct_io, so a short
	 * read is no end of file): a buffer of the reader's whole size (1 MiB for
	 * cat) for a 4 KiB delta costs page faults on every read. */
	uint64_t have = fs_park_size(fs, h);
	size_t want = have > (uint64_t)off && have - (uint64_t)off < size
			  ? (size_t)(have - (uint64_t)off)
			  : size;
	size = want ? want : 1;
	/* Nothing new yet (a reader that keeps up, once per delta): it will most
	 * likely park, so no buffer of the reader's size is allocated for it; a
	 * delta that arrives meanwhile is answered from the probe, short. */
	char probe[256], *buf = probe;
	size_t bufsize = have > (uint64_t)off ? size : size < sizeof(probe) ? size : sizeof(probe);
	if (have > (uint64_t)off && !(buf = malloc(bufsize))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!nonblock)
		fuse_req_interrupt_func(req, on_interrupt, fs);
	pthread_mutex_lock(&fs->park_lock);
	ssize_t n = stream_read(fs, h, (uint64_t)off, buf, bufsize);
	if (n == -EAGAIN && !nonblock && !fuse_req_interrupted(req)) {
		struct parked *p = calloc(1, sizeof(*p));
		if (p) {
			*p = (struct parked){NULL, req, h, off, size, NULL};
			park_push(fs, reply_context(h->turn), p);
			pthread_mutex_unlock(&fs->park_lock);
			if (buf != probe)
				free(buf);
			return;
		}
		n = -ENOMEM;
	}
	if (n >= 0)
		h->read_end = (uint64_t)off + (uint64_t)n;
	pthread_mutex_unlock(&fs->park_lock);
	if (n == -EAGAIN && !nonblock)
		n = -EINTR; /* interrupted before it could park */
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	if (buf != probe)
		free(buf);
}

/* Readable: bytes past this handle's last read, or the reply has ended. */
static bool output_ready(struct fs *fs, struct fs_handle *h)
{
	char c;
	ssize_t n = stream_read(fs, h, h->read_end, &c, 1);
	return n != -EAGAIN;
}

/* A poll waiter owns its poll handle and refers to no file handle, so a file
 * closed meanwhile leaves nothing dangling; the next change wakes it (the kernel
 * ignores a wake-up for a file it no longer polls). */
void fs_park_poll(struct fs *fs, fuse_req_t req, struct fs_handle *h, struct fuse_pollhandle *ph)
{
	pthread_mutex_lock(&fs->park_lock);
	bool ready = output_ready(fs, h);
	struct parked *p = !ready && ph ? calloc(1, sizeof(*p)) : NULL;
	if (p) {
		p->ph = ph;
		park_push(fs, reply_context(h->turn), p);
	} else if (ph) {
		fuse_pollhandle_destroy(ph);
	}
	pthread_mutex_unlock(&fs->park_lock);
	fuse_reply_poll(req, ready ? POLLIN | POLLRDNORM : 0);
}

/* The store's observer: serve again what waits on this context. */
void fs_park_on_change(void *data, uint64_t ctx, unsigned what)
{
	struct fs *fs = data;
	if (what & (STORE_CHANGED_OUTPUT | STORE_CHANGED_STATE | STORE_CHANGED_HISTORY |
		    STORE_CHANGED_SETTINGS))
		fs_notifier_add(fs, ctx, NOTIFIER_TRANSCRIPT);
	if (!(what & (STORE_CHANGED_OUTPUT | STORE_CHANGED_THINKING)))
		return;
	if (what & STORE_CHANGED_OUTPUT)
		fs_notifier_add(fs, ctx, NOTIFIER_OUTPUT);
	pthread_mutex_lock(&fs->park_lock);
	struct parked *list = map_del_id(&fs->parked, ctx);
	pthread_mutex_unlock(&fs->park_lock);
	while (list) {
		struct parked *p = list;
		list = p->next;
		if (p->req) {
			fs_park_read(fs, p->req, p->h, p->off, p->size, false);
		} else {
			fuse_lowlevel_notify_poll(p->ph);
			fuse_pollhandle_destroy(p->ph);
		}
		free(p);
	}
}

/* At shutdown, after the session loop: reads still parked wait on turns that
 * will not go on here (a queued turn, left to load as interrupted next time).
 * libfuse frees a request only when it is answered, so each is answered (EIO,
 * as for a reply cut short) and each poll handle destroyed. */
void fs_park_drain(struct fs *fs)
{
	struct parked *all = NULL;
	pthread_mutex_lock(&fs->park_lock);
	for (size_t i = 0; i < fs->parked.nslots; i++)
		for (struct map_node *n = fs->parked.slots[i]; n; n = n->next)
			for (struct parked *p = n->value, *next; p; p = next) {
				next = p->next;
				p->next = all;
				all = p;
			}
	map_done(&fs->parked);
	map_init(&fs->parked);
	pthread_mutex_unlock(&fs->park_lock);
	while (all) {
		struct parked *p = all;
		all = p->next;
		if (p->req)
			fuse_reply_err(p->req, EIO);
		else
			fuse_pollhandle_destroy(p->ph);
		free(p);
	}
}
