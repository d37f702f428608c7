/* shim_view.c — renderings sent to clients (GET …/history, …/transcript, a
 * context's settings) as shared immutable snapshots.
 *
 * A transcript can be as big as the context: rendered once per client, six
 * slow readers of a 160 MiB context held six copies (1.7 GB).  Here a
 * rendering is made once and every client asking for the same view of the
 * same unchanged context is sent that one copy: libmicrohttpd sends straight
 * from the snapshot's bytes and drops its reference when done; the last
 * reference frees it.  The store's observer marks a context's snapshots stale
 * (new readers render afresh; those already reading keep theirs).  A snapshot
 * rendered while any change happened is not shared, as it may predate it.
 *
 * All live snapshots together are held under SHIM_VIEWS_MAX: a rendering that
 * does not fit beside the others gets 503 with Retry-After (they free
 * themselves as their readers finish); one that alone is over the whole limit
 * gets an error saying so (the mount still serves it, from the file).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/log.h"
#include "shim_impl.h"

struct shim_view {
	struct shim *sh;
	uint64_t ctx;
	enum view_kind kind;
	bool fresh;		       /* may be shared with new readers; under sh->lock */
	bool pending;		       /* being rendered; under sh->lock */
	unsigned refs;		       /* under sh->lock */
	size_t len;		       /* bytes in data */
	char *data;		       /* the rendering */
	struct shim_view *prev, *next; /* sh->views; under sh->lock */
};

/* Under sh->lock.  Readers arriving while the same view is being rendered
 * wait for that rendering rather than make copies of their own (six readers
 * at once would otherwise each render, and all but the first find the budget
 * gone).  A rendering takes milliseconds and never waits for the network. */
static struct shim_view *view_find_locked(struct shim *sh, uint64_t ctx, enum view_kind kind)
{
	for (;;) {
		bool rendering = false;
		for (struct shim_view *v = sh->views; v; v = v->next) {
			if (!v->fresh || v->ctx != ctx || v->kind != kind)
				continue;
			if (!v->pending) {
				v->refs++;
				return v;
			}
			rendering = true;
		}
		if (!rendering)
			return NULL;
		pthread_cond_wait(&sh->view_cond, &sh->lock);
	}
}

/* Under sh->lock. */
static void view_unlink_locked(struct shim *sh, struct shim_view *v)
{
	if (v->prev)
		v->prev->next = v->next;
	else
		sh->views = v->next;
	if (v->next)
		v->next->prev = v->prev;
	sh->view_bytes -= v->len;
}

static void view_unref(struct shim_view *v)
{
	struct shim *sh = v->sh;
	pthread_mutex_lock(&sh->lock);
	bool last = --v->refs == 0;
	if (last)
		view_unlink_locked(sh, v);
	pthread_mutex_unlock(&sh->lock);
	if (last) {
		free(v->data);
		free(v);
	}
}

static void on_view_sent(void *cls)
{
	view_unref(cls);
}

/* Renders a new snapshot within what the budget has left.  It is listed while
 * it is made (pending), so that a change meanwhile marks it stale.  0, -EAGAIN
 * (the budget is in use by others), -EOVERFLOW (over the whole budget), -errno. */
static int view_render(struct shim *sh, uint64_t id, enum view_kind kind, struct shim_view **ret)
{
	struct shim_view *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	*v = (struct shim_view){
	    .sh = sh, .ctx = id, .kind = kind, .fresh = true, .pending = true, .refs = 1};
	pthread_mutex_lock(&sh->lock);
	size_t room = SHIM_VIEWS_MAX - sh->view_bytes;
	v->next = sh->views;
	if (v->next)
		v->next->prev = v;
	sh->views = v;
	pthread_mutex_unlock(&sh->lock);
	struct buf b;
	buf_init(&b, room);
	int r = context_render(sh->st, id, kind, &b);
	if (r == -EFBIG)
		r = room < SHIM_VIEWS_MAX ? -EAGAIN : -EOVERFLOW;
	size_t len = 0;
	char *data = r == 0 ? buf_steal(&b, &len) : NULL;
	buf_done(&b);
	if (r == 0 && !data)
		r = -ENOMEM;
	pthread_mutex_lock(&sh->lock);
	if (r == 0 && len > SHIM_VIEWS_MAX - sh->view_bytes)
		r = -EAGAIN; /* others took the room meanwhile */
	if (r == 0) {
		v->data = data;
		v->len = len;
		v->pending = false;
		sh->view_bytes += len;
	} else {
		view_unlink_locked(sh, v);
	}
	pthread_cond_broadcast(&sh->view_cond);
	pthread_mutex_unlock(&sh->lock);
	if (r < 0) {
		free(data);
		free(v);
		return r;
	}
	*ret = v;
	return 0;
}

enum MHD_Result shim_view_reply(struct shim *sh, uint64_t id, enum view_kind kind,
				struct MHD_Connection *c)
{
	pthread_mutex_lock(&sh->lock);
	struct shim_view *v = view_find_locked(sh, id, kind);
	pthread_mutex_unlock(&sh->lock);
	int r = v ? 0 : view_render(sh, id, kind, &v);
	if (r == -EAGAIN)
		return shim_reply_busy(c, "renderings being sent use the shim's memory for "
					  "them");
	if (r == -EOVERFLOW) {
		char why[128];
		snprintf(why, sizeof(why),
			 "the rendering is over the shim's limit of %u MiB; read "
			 "it from the mount",
			 SHIM_VIEWS_MAX >> 20);
		return shim_reply_errno(c, r, why);
	}
	if (r < 0)
		return shim_reply_errno(c, r, NULL);
	struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
	    v->len, v->data, on_view_sent, v);
	if (!resp) {
		view_unref(v);
		return MHD_NO;
	}
	shim_reply_headers(resp);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp); /* the last reference: on_view_sent when sent */
	return ret;
}

void shim_view_on_change(struct shim *sh, uint64_t ctx)
{
	pthread_mutex_lock(&sh->lock);
	for (struct shim_view *v = sh->views; v; v = v->next)
		if (v->ctx == ctx)
			v->fresh = false;
	pthread_mutex_unlock(&sh->lock);
}
