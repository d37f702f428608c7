/* store_models.c — the store's side of the Models API (see store.h): the
 * capability cache in memory and in STATE/models.json, the turns that wait for
 * an answer before their call is built, the bounded waits of a model write and
 * of `.models`, and the lines `status` shows about a context's model.
 *
 * Under the store lock.  The transport fetches (transport_ops.models) and
 * answers on its own thread; nothing here touches the network.  A warm cache
 * (an answer younger than MODELS_TTL_MS) costs a turn no request at all.  A
 * turn that waited is resumed through the store's pump hook (struct
 * store_hooks): its call is reply_call.c's, above this file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mcpfs/clock.h"
#include "mcpfs/log.h"
#include "store_impl.h"

#define MODELS_FILE "models.json"
#define MODELS_FILE_MAX (16u << 20)

void store_models_init(struct store *s)
{
	pthread_condattr_t a;

	models_init(&s->models);
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&s->models_cond, &a);
	pthread_condattr_destroy(&a);
}

void store_models_done(struct store *s)
{
	for (size_t i = 0; i < s->n_mwait; i++)
		reply_unref(NULL, s->mwait[i]);
	free(s->mwait);
	models_done(&s->models);
	pthread_cond_destroy(&s->models_cond);
}

/* A cache that cannot be read is a cache that is empty: it only costs a fetch. */
void store_models_load(struct store *s)
{
	int dfd = storage_dir_fd(s->st); /* none: no cache (storage.h) */
	int fd = dfd < 0 ? -1 : openat(dfd, MODELS_FILE, O_RDONLY | O_CLOEXEC);
	struct buf b;

	if (fd < 0)
		return;
	buf_init(&b, MODELS_FILE_MAX);
	char chunk[65536];
	ssize_t n;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		if (buf_append(&b, chunk, (size_t)n) < 0)
			break;
	close(fd);
	if (b.len)
		models_load(&s->models, b.data, b.len);
	buf_done(&b);
}

/* Written whole and renamed into place: a crash leaves the old file or the new.
 * No fsync: losing it costs one fetch. */
static void models_store_save(struct store *s)
{
	struct buf b;
	int fd = -1, r;

	int dfd = storage_dir_fd(s->st);
	buf_init(&b, MODELS_FILE_MAX);
	r = dfd < 0 ? dfd : models_save(&s->models, &b);
	if (r == 0) {
		fd =
		    openat(dfd, MODELS_FILE ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		r = fd < 0 ? -errno : 0;
	}
	for (size_t off = 0; r == 0 && off < b.len;) {
		ssize_t w = write(fd, b.data + off, b.len - off);
		if (w < 0)
			r = -errno;
		else
			off += (size_t)w;
	}
	if (fd >= 0)
		close(fd);
	if (r == 0 && renameat(dfd, MODELS_FILE ".tmp", dfd, MODELS_FILE) < 0)
		r = -errno;
	if (r < 0) {
		if (dfd >= 0)
			unlinkat(dfd, MODELS_FILE ".tmp", 0);
		log_debug("cannot save '%s/%s': %s", store_state_dir(s), MODELS_FILE, strerror(-r));
	}
	buf_done(&b);
}

/* Asks for one model (NULL: the list) unless a fetch is under way, connecting
 * within connect_timeout seconds.  false when there is no transport that can ask. */
static bool models_fetch(struct store *s, const char *model, int64_t connect_timeout)
{
	int ms = (int)connect_timeout * 1000;
	struct models_entry *e;

	if (!s->ops || !s->ops->models)
		return false;
	if (!model) {
		if (models_list_state(&s->models, clock_wall_ms()) == MODELS_NEED) {
			s->models.list_fetching = true;
			s->models.list_fetch_ms = clock_wall_ms();
			s->ops->models(s->ops_impl, NULL, ms);
		}
		return true;
	}
	if (models_entry(&s->models, model, &e) < 0)
		return false;
	if (models_state(&s->models, model, clock_wall_ms()) == MODELS_NEED) {
		e->fetching = true;
		e->fetch_ms = clock_wall_ms();
		s->ops->models(s->ops_impl, model, ms);
	}
	return true;
}

/* The state of a model id, after asking for it when it is needed. */
static enum models_state models_need(struct store *s, const char *model, int64_t now,
				     int64_t connect_timeout)
{
	enum models_state st = models_state(&s->models, model, now);
	if (st == MODELS_NEED && models_fetch(s, model, connect_timeout))
		st = MODELS_FETCHING;
	return st;
}

static enum models_state list_need(struct store *s, int64_t now, int64_t connect_timeout)
{
	enum models_state st = models_list_state(&s->models, now);
	if (st == MODELS_NEED && models_fetch(s, NULL, connect_timeout))
		st = MODELS_FETCHING;
	return st;
}

static int mwait_push(struct store *s, struct reply *t)
{
	if (s->n_mwait == s->cap_mwait) {
		size_t cap = s->cap_mwait ? s->cap_mwait * 2 : 8;
		struct reply **n = realloc(s->mwait, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->mwait = n;
		s->cap_mwait = cap;
	}
	s->mwait[s->n_mwait++] = t;
	t->refs++;
	t->models_wait = true;
	return 0;
}

int store_models_ready(struct store *s, struct context *c, struct reply *t,
		       const struct model_caps **caps, char *why, size_t whylen)
{
	const char *model = c->settings.model;
	int64_t now = clock_wall_ms();
	int64_t ct = c->settings.connect_timeout;
	enum models_state st = models_need(s, model, now, ct);
	const struct models_entry *e;

	*caps = NULL;
	if (st == MODELS_FETCHING)
		goto wait;
	e = models_find(&s->models, model);
	/* An answer older than a day still beats none when the API cannot be asked. */
	if (e && e->status == 200)
		*caps = &e->caps;
	if (!*caps || (*caps)->lifecycle == MODEL_ACTIVE)
		return 0;
	/* Deprecated or retired: the advice names the newest model of its line. */
	if (list_need(s, now, ct) == MODELS_FETCHING)
		goto wait;
	e = models_find(&s->models, model);
	*caps = e && e->status == 200 ? &e->caps : NULL;
	if (*caps && (*caps)->lifecycle == MODEL_RETIRED) {
		models_advice(&s->models, *caps, why, whylen);
		return -EINVAL;
	}
	return 0;
wait:
	if (mwait_push(s, t) < 0)
		return 0; /* no memory to wait: send with what is known */
	t->state = REPLY_WAITING;
	c->active = t;
	return 1;
}

void store_models_unwait(struct store *s, struct reply *t)
{
	for (size_t i = 0; i < s->n_mwait; i++)
		if (s->mwait[i] == t) {
			s->mwait[i] = s->mwait[--s->n_mwait];
			t->models_wait = false;
			t->refs--; /* the context still holds one */
			return;
		}
}

/* After an answer: every waiting turn tries again (those whose answer is still
 * missing wait again, with no second request). */
static void models_resume(struct store *s, struct notes *n)
{
	size_t k = s->n_mwait;
	struct reply **all = k ? malloc(k * sizeof(*all)) : NULL;

	if (!all)
		return;
	memcpy(all, s->mwait, k * sizeof(*all));
	s->n_mwait = 0;
	for (size_t i = 0; i < k; i++) {
		struct reply *t = all[i];
		struct context *c = t->ctx;
		t->models_wait = false;
		if (c && t->state == REPLY_WAITING && c->active == t) {
			t->state = REPLY_QUEUED;
			c->active = NULL;
			s->hooks.pump(s, c, n); /* reply_call_pump (reply_call.c) */
		}
		reply_unref(NULL, t);
	}
	free(all);
	pthread_cond_broadcast(&s->models_cond);
}

void store_models_answer(struct store *s, const char *model, int status, const char *body,
			 size_t len, const char *why)
{
	struct notes n = {0};

	pthread_mutex_lock(&s->lock);
	int r = models_answer(&s->models, model, status, body, len, why, clock_wall_ms());
	if (r < 0)
		log_debug("model '%s': cannot keep the Models API's answer: %s", model,
			  strerror(-r));
	if (status == 200 || status == 404)
		models_store_save(s);
	models_resume(s, &n);
	pthread_cond_broadcast(&s->models_cond);
	store_unlock_notify(s, &n);
}

void store_models_list(struct store *s, const char *const *pages, const size_t *lens, size_t n,
		       const char *why)
{
	struct notes no = {0};
	char(*list)[SETTINGS_MODEL_MAX + 1] = NULL;
	size_t count = 0;
	int64_t now = clock_wall_ms();
	int r = 0;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; r == 0 && i < n; i++) {
		bool more;
		char last[SETTINGS_MODEL_MAX + 1];
		r = models_page(&s->models, pages[i], lens[i], now, &list, &count, &more, last,
				sizeof(last));
	}
	if (n == 0 || r < 0) {
		free(list);
		models_list_answer(&s->models, NULL, 0,
				   r < 0 ? "the Models API answered a page mcpfs cannot read"
				   : why ? why
					 : "the Models API did not answer",
				   now);
	} else {
		models_list_answer(&s->models, list, count, NULL, now);
		models_store_save(s);
	}
	models_resume(s, &no);
	pthread_cond_broadcast(&s->models_cond);
	store_unlock_notify(s, &no);
}

/* Waits on models_cond until deadline (monotonic ms); false when it passed. */
static bool models_wait_until(struct store *s, int64_t deadline)
{
	int64_t now = clock_mono_ms();
	struct timespec ts;

	if (now >= deadline)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t ns = ts.tv_nsec + (deadline - now) % 1000 * 1000000;
	ts.tv_sec += (deadline - now) / 1000 + ns / 1000000000;
	ts.tv_nsec = ns % 1000000000;
	pthread_cond_timedwait(&s->models_cond, &s->lock, &ts);
	return true;
}

int store_model_check(struct store *s, const char *old, const char *model, char *why, size_t whylen)
{
	int64_t deadline = clock_mono_ms() + MODELS_WAIT_MS;
	int r = 0;

	if (strcmp(old, model) == 0)
		return 0;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		enum models_state st =
		    models_need(s, model, clock_wall_ms(), s->defaults.connect_timeout);
		if (st == MODELS_ABSENT) {
			snprintf(why, whylen,
				 "model '%s' does not exist (the Models API answered "
				 "404); .models lists the models there are",
				 model);
			r = -EINVAL;
		}
		if (st != MODELS_FETCHING || !models_wait_until(s, deadline))
			break;
	}
	/* A deprecated or retired model: `status` names the newest of its line,
	 * which the list tells; ask for it now (no waiting for it here). */
	const struct models_entry *e = models_find(&s->models, model);
	if (r == 0 && e && e->status == 200 && e->caps.lifecycle != MODEL_ACTIVE)
		list_need(s, clock_wall_ms(), s->defaults.connect_timeout);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_model_check_text(struct store *s, uint64_t id, int what, const char *text, size_t len,
			   char *why, size_t whylen)
{
	struct settings st;
	char old[SETTINGS_MODEL_MAX + 1], w[256];

	while (len && text[len - 1] != '\n')
		len--; /* complete lines only */
	if (!len)
		return 0;
	pthread_mutex_lock(&s->lock);
	struct context *c = what == 2 ? NULL : store_get(s, id);
	if (c || what == 2)
		st = c ? c->settings : s->defaults;
	pthread_mutex_unlock(&s->lock);
	if (!c && what != 2)
		return -ENOENT;
	memcpy(old, st.model, sizeof(old));
	if (what == 0) {
		const char *p = text;
		while (len && strchr(" \t\r\n", text[len - 1]))
			len--;
		while (len && strchr(" \t", *p)) {
			p++;
			len--;
		}
		if (!settings_model_valid(p, len) || memchr(p, '\n', len))
			return 0;
		memcpy(st.model, p, len);
		st.model[len] = '\0';
	} else if (settings_parse(&st, text, len, w, sizeof(w)) < 0) {
		return 0;
	}
	return store_model_check(s, old, st.model, why, whylen);
}

int store_render_models(struct store *s, struct buf *out, bool fetch)
{
	int64_t deadline = clock_mono_ms() + MODELS_WAIT_MS;

	pthread_mutex_lock(&s->lock);
	while (fetch &&
	       list_need(s, clock_wall_ms(), s->defaults.connect_timeout) == MODELS_FETCHING &&
	       models_wait_until(s, deadline))
		;
	int r = models_render(&s->models, out);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_models_status(struct store *s, const struct context *c, struct buf *out)
{
	const struct settings *st = &c->settings;
	const struct models_entry *e = models_find(&s->models, st->model);
	const struct model_caps *caps = e && e->status == 200 ? &e->caps : NULL;
	struct model_shape shape;
	char advice[512];
	int r = 0;

	if (e && e->failed_ms && !caps && e->status != 404)
		r = buf_printf(out, "model_check: unchecked (%s)\n", e->why);
	else if (e && e->status == 404)
		r = buf_printf(out, "model_check: the Models API does not know '%s'\n", st->model);
	if (r == 0 && caps && caps->lifecycle != MODEL_ACTIVE) {
		models_advice(&s->models, caps, advice, sizeof(advice));
		r = buf_printf(out, "lifecycle: %s\n", advice);
	}
	model_shape(st, caps, &shape);
	if (r == 0 && shape.ignored[0])
		r = buf_printf(out, "ignored: %s\n", shape.ignored);
	return r;
}
