/* claude_models.c — the Models API on the network thread (see claude_impl.h):
 * GET /v1/models/{id} for one model's capabilities and GET /v1/models, page
 * after page (?limit=MODELS_PAGE_LIMIT&after_id=last_id while has_more), for
 * the list.  Every fetch answers the store exactly once.
 *
 * These GETs run on the same curl multi handle as the calls, so they never
 * block a FUSE worker or a call; each is bounded by CLAUDE_FETCH_TIMEOUT_MS,
 * its connection by the asking turn's connect_timeout.  Their connection is
 * not kept for reuse: a call sent on a kept connection that the server has
 * meanwhile closed is resent by curl itself, which would make two requests of
 * one attempt (and these GETs come once a day).
 * A 404 counts as "no such model" only when its body says not_found_error (a
 * proxy without the Models API answers 404 too: that is a failure, and the
 * model stays unchecked).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/log.h"
#include "mcpfs/models.h"
#include "mcpfs/wire.h"
#include "claude_impl.h"

#define FETCH_BODY_MAX (8u << 20) /* bytes of one answer */

struct claude_fetch {
	struct claude *c;
	struct claude_fetch *next;
	char model[SETTINGS_MODEL_MAX + 1]; /* "" for the list */
	CURL *easy;
	int connect_timeout_ms; /* <= 0: curl's default */
	struct buf body;	/* the current page */
	char **pages;		/* the list's pages so far (heap each) */
	size_t *lens;
	size_t n_pages;
	char errbuf[CURL_ERROR_SIZE];
};

static void fetch_free(struct claude_fetch *f)
{
	struct claude *c = f->c;
	for (struct claude_fetch **p = &c->fetches; *p; p = &(*p)->next)
		if (*p == f) {
			*p = f->next;
			break;
		}
	if (f->easy) {
		curl_multi_remove_handle(c->multi, f->easy);
		curl_easy_cleanup(f->easy);
	}
	for (size_t i = 0; i < f->n_pages; i++)
		free(f->pages[i]);
	free(f->pages);
	free(f->lens);
	buf_done(&f->body);
	free(f);
}

/* Answers the store with a failure and frees the fetch. */
static void fetch_fail(struct claude_fetch *f, const char *why)
{
	if (f->model[0])
		store_models_answer(f->c->st, f->model, 0, NULL, 0, why);
	else
		store_models_list(f->c->st, NULL, NULL, 0, why);
	log_debug("models: %s: %s", f->model[0] ? f->model : "the list", why);
	fetch_free(f);
}

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
	struct claude_fetch *f = data;
	return buf_append(&f->body, p, size * n) < 0 ? 0 : size * n;
}

/* Starts (or, for the next page, restarts) the transfer of url.  0, -errno. */
static int fetch_get(struct claude_fetch *f, const char *url)
{
	struct claude *c = f->c;
	CURL *e = f->easy;

	buf_reset(&f->body);
	f->errbuf[0] = '\0';
	bool ok =
	    curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->get_headers) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_USERAGENT, "mcpfs/" MCPFS_VERSION) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)CLAUDE_FETCH_TIMEOUT_MS) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, f) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_PRIVATE, f) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf) == CURLE_OK;
	if (ok && f->connect_timeout_ms > 0)
		ok = curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)f->connect_timeout_ms) ==
		     CURLE_OK;
	if (!ok)
		return -ENOMEM;
	return curl_multi_add_handle(c->multi, e) == CURLM_OK ? 0 : -EIO;
}

/* The URL of the model's page, or of the list's page after cursor ("" first). */
static char *fetch_url(struct claude_fetch *f, const char *cursor)
{
	struct claude *c = f->c;
	char *url = NULL, *esc;
	int r;

	if (f->model[0]) {
		if (!(esc = curl_easy_escape(f->easy, f->model, 0)))
			return NULL;
		r = asprintf(&url, "%s/v1/models/%s", c->base, esc);
	} else if (cursor[0]) {
		if (!(esc = curl_easy_escape(f->easy, cursor, 0)))
			return NULL;
		r = asprintf(&url, "%s/v1/models?limit=%d&after_id=%s", c->base, MODELS_PAGE_LIMIT,
			     esc);
	} else {
		esc = NULL;
		r = asprintf(&url, "%s/v1/models?limit=%d", c->base, MODELS_PAGE_LIMIT);
	}
	curl_free(esc);
	return r < 0 ? NULL : url;
}

static void fetch_start(struct claude_fetch *f, const char *cursor)
{
	char *url = fetch_url(f, cursor);
	int r = url ? fetch_get(f, url) : -ENOMEM;

	free(url);
	if (r < 0)
		fetch_fail(f, "cannot start the request");
}

void claude_models_new(struct claude *c, const char *model, int connect_timeout_ms)
{
	struct claude_fetch *f = calloc(1, sizeof(*f));

	if (!f) {
		if (model)
			store_models_answer(c->st, model, 0, NULL, 0, "out of memory");
		else
			store_models_list(c->st, NULL, NULL, 0, "out of memory");
		return;
	}
	f->c = c;
	f->connect_timeout_ms = connect_timeout_ms;
	snprintf(f->model, sizeof(f->model), "%s", model ? model : "");
	buf_init(&f->body, FETCH_BODY_MAX);
	f->next = c->fetches;
	c->fetches = f;
	if (!c->have_auth) {
		fetch_fail(f, "no API key");
		return;
	}
	f->easy = curl_easy_init();
	if (!f->easy) {
		fetch_fail(f, "out of memory");
		return;
	}
	fetch_start(f, "");
}

/* A 200 page of the list: keep it, then the next page or the answer. */
static void fetch_page(struct claude_fetch *f)
{
	char last[SETTINGS_MODEL_MAX + 1];
	bool more = false;

	if (models_page_cursor(f->body.data ? f->body.data : "", f->body.len, &more, last,
			       sizeof(last)) < 0) {
		fetch_fail(f, "the Models API answered a page mcpfs cannot read");
		return;
	}
	char **pages = realloc(f->pages, (f->n_pages + 1) * sizeof(*pages));
	size_t *lens = pages ? realloc(f->lens, (f->n_pages + 1) * sizeof(*lens)) : NULL;
	if (pages)
		f->pages = pages;
	if (lens)
		f->lens = lens;
	if (!pages || !lens) {
		fetch_fail(f, "out of memory");
		return;
	}
	f->pages[f->n_pages] = buf_steal(&f->body, &f->lens[f->n_pages]);
	buf_init(&f->body, FETCH_BODY_MAX);
	if (!f->pages[f->n_pages]) {
		f->pages[f->n_pages] = strdup("");
		f->lens[f->n_pages] = 0;
	}
	f->n_pages++;
	if (more && f->n_pages < MODELS_PAGES_MAX) {
		fetch_start(f, last);
		return;
	}
	store_models_list(f->c->st, (const char *const *)f->pages, f->lens, f->n_pages, NULL);
	fetch_free(f);
}

bool claude_models_done(struct claude *c, CURL *easy, CURLcode rc)
{
	struct claude_fetch *f = c->fetches;
	long status = 0;
	char why[sizeof(((struct api_error *)0)->message) + 128];

	while (f && f->easy != easy)
		f = f->next;
	if (!f)
		return false;
	curl_multi_remove_handle(c->multi, easy);
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK || status == 0) {
		snprintf(why, sizeof(why), "%s", f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc));
		fetch_fail(f, why);
		return true;
	}
	if (status == 200 && !f->model[0]) {
		fetch_page(f);
		return true;
	}
	if (status == 200) {
		store_models_answer(c->st, f->model, 200, f->body.data ? f->body.data : "",
				    f->body.len, NULL);
		fetch_free(f);
		return true;
	}
	struct api_error e;
	api_error_clear(&e);
	wire_error_decode((int)status, f->body.data ? f->body.data : "", f->body.len, &e);
	if (status == 404 && f->model[0] && strcmp(e.type, "not_found_error") == 0) {
		store_models_answer(c->st, f->model, 404, NULL, 0, NULL);
		fetch_free(f);
		return true;
	}
	snprintf(why, sizeof(why), "HTTP %ld: %s: %s", status, e.type, e.message);
	fetch_fail(f, why);
	return true;
}

void claude_models_abort_all(struct claude *c)
{
	while (c->fetches)
		fetch_fail(c->fetches, "mcpfs stopped");
}
