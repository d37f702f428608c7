/* spend.c — what the calls cost and the limits on it (CONTRACT §10, Cost).
 *
 * Each context keeps its usage per model (the ledger, built from the usage
 * of every REPLY_END as the journal loads and as calls end: no record of its
 * own), and a cost is always computed from those token totals with the price
 * table in force (prices.h), so a new table reprices everything.  A model the
 * table lacks has an unknown cost: a total that includes it shows `unknown`,
 * and the limits count only what has a price.
 *
 * spend_limit_usd of a context bounds that context; the root `.config`'s
 * bounds all contexts together (its value is not copied into new contexts).
 * Both are checked when a new message starts (the first write() of `input`,
 * a POST of a message): a message already being written is not cut off, and
 * queued ones are still sent.  The all-contexts total loads every context's
 * journal the first time it is needed (so does `.usage`).
 *
 * Everything here runs under the store lock.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "mcpfs/prices.h"
#include "store_impl.h"

/* Models one context's ledger keeps apart; the calls of any further model
 * are counted in one row named LEDGER_OTHER (its cost unknown). */
#define LEDGER_MODELS_MAX 256
#define LEDGER_OTHER "(other)"

/* Adds a count (each is 0 to 2^53, as wire.c and the loader read them) to a
 * total that stops at INT64_MAX: a journal can hold any number of records. */
static void total_add(int64_t *total, int64_t n)
{
	if (n > 0)
		*total = *total > INT64_MAX - n ? INT64_MAX : *total + n;
}

static void totals_add(struct usage_totals *to, const struct usage_totals *from)
{
	total_add(&to->input, from->input);
	total_add(&to->output, from->output);
	total_add(&to->cache_creation, from->cache_creation);
	total_add(&to->cache_read, from->cache_read);
	to->calls += from->calls;
}

static struct ledger_row *ledger_row(struct context *c, const char *model)
{
	for (size_t i = 0; i < c->n_ledger; i++)
		if (!strcmp(c->ledger[i].model, model))
			return &c->ledger[i];
	if (c->n_ledger == LEDGER_MODELS_MAX && strcmp(model, LEDGER_OTHER))
		return ledger_row(c, LEDGER_OTHER);
	struct ledger_row *v = realloc(c->ledger, (c->n_ledger + 1) * sizeof(*v));
	if (!v)
		return NULL;
	c->ledger = v;
	v = &c->ledger[c->n_ledger++];
	memset(v, 0, sizeof(*v));
	snprintf(v->model, sizeof(v->model), "%s", model);
	return v;
}

void context_ledger_add(struct context *c, const struct reply *t)
{
	const char *model = t->model[0] ? t->model : c->settings.model;
	const struct wire_usage *u = &t->usage;
	snprintf(c->last_model, sizeof(c->last_model), "%s", model);
	struct ledger_row *row = ledger_row(c, model);
	if (!row)
		return;
	struct usage_totals one = {u->input_tokens, u->output_tokens,
				   u->cache_creation_input_tokens, u->cache_read_input_tokens, 1};
	totals_add(&row->t, &one);
}

void context_ledger_done(struct context *c)
{
	free(c->ledger);
	c->ledger = NULL;
	c->n_ledger = 0;
}

struct settings store_context_defaults(const struct store *s)
{
	struct settings st = s->defaults;
	st.spend_limit_usd = (double)NAN;
	return st;
}

/* The cost of totals under model: nano-USD, or *unknown set when the table
 * has no price for a model that was used. */
static int64_t totals_cost(const struct store *s, const char *model, const struct usage_totals *t,
			   bool *unknown)
{
	const struct price *p = prices_find(&s->prices, model);
	if (!p) {
		if (t->calls)
			*unknown = true;
		return 0;
	}
	struct price_tokens k = {t->input, t->output, t->cache_creation, t->cache_read};
	return prices_cost(p, &k);
}

/* The context's total cost in nano-USD (what has a price). */
static int64_t context_spent(const struct store *s, const struct context *c, bool *unknown)
{
	int64_t sum = 0;
	for (size_t i = 0; i < c->n_ledger; i++)
		sum = prices_add(sum, totals_cost(s, c->ledger[i].model, &c->ledger[i].t, unknown));
	return sum;
}

static int64_t last_cost(const struct store *s, const struct context *c, bool *unknown)
{
	const struct wire_usage *u = &c->last_usage;
	struct usage_totals one = {u->input_tokens, u->output_tokens,
				   u->cache_creation_input_tokens, u->cache_read_input_tokens, 1};
	if (!c->totals.calls || c->last_hit)
		return 0; /* a response cache hit is no call: it costs nothing */
	return totals_cost(s, c->last_model, &one, unknown);
}

static void usd_text(int64_t nano, bool unknown, char *out, size_t outlen)
{
	if (unknown)
		snprintf(out, outlen, "unknown");
	else
		prices_format_usd(nano, false, out, outlen);
}

int context_render_cost(const struct store *s, const struct context *c, struct buf *out)
{
	char last[PRICES_USD_TEXT], total[PRICES_USD_TEXT];
	bool lu = false, tu = false;
	int64_t l = last_cost(s, c, &lu), t = context_spent(s, c, &tu);
	usd_text(l, lu, last, sizeof(last));
	usd_text(t, tu, total, sizeof(total));
	/* cost_usd is the context's total, under the name `.usage` and the shim
	 * give it; total_cost_usd stays for scripts that read it already. */
	return buf_printf(out,
			  "cost_usd: %s\nlast_cost_usd: %s\ntotal_cost_usd: %s\nprices_as_of: %s\n",
			  total, last, total, s->prices.as_of[0] ? s->prices.as_of : "none");
}

/* A cost as a JSON number of USD (6 decimals), null when unknown. */
static cJSON *usd_json(int64_t nano, bool unknown)
{
	char text[PRICES_USD_TEXT];
	if (unknown)
		return cJSON_CreateNull();
	prices_format_usd(nano, false, text, sizeof(text));
	return cJSON_CreateNumber(strtod(text, NULL));
}

void context_cost_json(const struct store *s, const struct context *c, struct cJSON *usage)
{
	bool lu = false, tu = false;
	int64_t last = last_cost(s, c, &lu), total = context_spent(s, c, &tu);
	cJSON_AddItemToObject(usage, "cost_usd", usd_json(total, tu));
	cJSON_AddItemToObject(usage, "last_cost_usd", usd_json(last, lu));
}

/* --- all contexts ---------------------------------------------------------- */

/* Every context's ledger, summed per context and per model (the lock held:
 * contexts not loaded yet are loaded). */
struct usage_sum {
	char *name; /* a context's name or a model id (heap) */
	struct usage_totals t;
	int64_t cost; /* nano-USD */
	bool unknown;
};

struct usage_all {
	struct usage_sum *ctx, *model, total;
	size_t n_ctx, n_model;
};

static void usage_all_done(struct usage_all *a)
{
	for (size_t i = 0; i < a->n_ctx; i++)
		free(a->ctx[i].name);
	for (size_t i = 0; i < a->n_model; i++)
		free(a->model[i].name);
	free(a->ctx);
	free(a->model);
}

static struct usage_sum *model_sum(struct usage_all *a, const char *model)
{
	for (size_t i = 0; i < a->n_model; i++)
		if (!strcmp(a->model[i].name, model))
			return &a->model[i];
	struct usage_sum *v = realloc(a->model, (a->n_model + 1) * sizeof(*v));
	if (!v)
		return NULL;
	a->model = v;
	v = &a->model[a->n_model];
	memset(v, 0, sizeof(*v));
	if (!(v->name = strdup(model)))
		return NULL;
	a->n_model++;
	return v;
}

static int add_context(const struct store *s, struct usage_all *a, const struct context *c,
		       const char *name)
{
	struct usage_sum *cs = &a->ctx[a->n_ctx];
	memset(cs, 0, sizeof(*cs));
	if (!(cs->name = strdup(name)))
		return -ENOMEM;
	a->n_ctx++;
	for (size_t i = 0; i < c->n_ledger; i++) {
		const struct ledger_row *row = &c->ledger[i];
		bool unknown = false;
		int64_t cost = totals_cost(s, row->model, &row->t, &unknown);
		struct usage_sum *ms = model_sum(a, row->model);
		if (!ms)
			return -ENOMEM;
		struct usage_sum *to[] = {cs, ms, &a->total};
		for (size_t k = 0; k < 3; k++) {
			totals_add(&to[k]->t, &row->t);
			to[k]->cost = prices_add(to[k]->cost, cost);
			to[k]->unknown |= unknown;
		}
	}
	return 0;
}

static int sum_cmp(const void *x, const void *y)
{
	return strcmp(((const struct usage_sum *)x)->name, ((const struct usage_sum *)y)->name);
}

/* Fills a with every context (in name order) and model; the lock held. */
static int usage_collect(struct store *s, struct usage_all *a)
{
	memset(a, 0, sizeof(*a));
	size_t n = s->by_id.count, k = 0;
	uint64_t *ids = calloc(n ? n : 1, sizeof(*ids));
	a->ctx = calloc(n ? n : 1, sizeof(*a->ctx));
	if (!ids || !a->ctx) {
		free(ids);
		return -ENOMEM;
	}
	/* Ids first: loading a context may wait with the lock released. */
	for (size_t i = 0; i < s->by_id.nslots; i++)
		for (struct map_node *node = s->by_id.slots[i]; node && k < n; node = node->next)
			ids[k++] = ((const struct store_slot *)node->value)->id;
	int r = 0;
	for (size_t i = 0; r == 0 && i < k; i++) {
		struct context *c = store_get(s, ids[i]);
		if (c && a->n_ctx < n)
			r = add_context(s, a, c, c->slot->name);
	}
	free(ids);
	if (a->n_ctx)
		qsort(a->ctx, a->n_ctx, sizeof(*a->ctx), sum_cmp);
	if (a->n_model)
		qsort(a->model, a->n_model, sizeof(*a->model), sum_cmp);
	return r;
}

static int sum_line(struct buf *out, const char *scope, const char *ctx, const char *model,
		    const struct usage_sum *u)
{
	char cost[PRICES_USD_TEXT];
	usd_text(u->cost, u->unknown, cost, sizeof(cost));
	return buf_printf(out, "%s\t%s\t%s\t%llu\t%lld\t%lld\t%lld\t%lld\t%s\n", scope, ctx, model,
			  (unsigned long long)u->t.calls, (long long)u->t.input,
			  (long long)u->t.output, (long long)u->t.cache_creation,
			  (long long)u->t.cache_read, cost);
}

int store_render_usage(struct store *s, struct buf *out)
{
	struct usage_all a;
	pthread_mutex_lock(&s->lock);
	int r = usage_collect(s, &a);
	if (r == 0)
		r = buf_printf(out,
			       "# mcpfs usage: tab-separated; costs in USD from the prices of %s "
			       "(as of %s); unknown: a model without a price\n"
			       "# scope\tcontext\tmodel\tcalls\tinput_tokens\toutput_tokens\t"
			       "cache_creation_input_tokens\tcache_read_input_tokens\tcost_usd\n",
			       s->prices.source[0] ? s->prices.source : "no table",
			       s->prices.as_of[0] ? s->prices.as_of : "-");
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; r == 0 && i < a.n_ctx; i++)
		r = sum_line(out, "context", a.ctx[i].name, "-", &a.ctx[i]);
	for (size_t i = 0; r == 0 && i < a.n_model; i++)
		r = sum_line(out, "model", "-", a.model[i].name, &a.model[i]);
	if (r == 0)
		r = sum_line(out, "total", "-", "-", &a.total);
	usage_all_done(&a);
	return r;
}

int store_usage_size(struct store *s, uint64_t *size)
{
	bool all = true;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; all && i < s->by_id.nslots; i++)
		for (struct map_node *node = s->by_id.slots[i]; node && all; node = node->next)
			all = ((const struct store_slot *)node->value)->ctx != NULL;
	pthread_mutex_unlock(&s->lock);
	*size = 0;
	if (!all)
		return 0;
	struct buf b;
	buf_init(&b, SIZE_MAX / 2);
	int r = store_render_usage(s, &b);
	*size = r == 0 ? b.len : 0;
	buf_done(&b);
	return r;
}

static cJSON *sum_json(const struct usage_sum *u, const char *key)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	if (key)
		cJSON_AddStringToObject(o, key, u->name);
	cJSON_AddNumberToObject(o, "calls", (double)u->t.calls);
	cJSON_AddNumberToObject(o, "input_tokens", (double)u->t.input);
	cJSON_AddNumberToObject(o, "output_tokens", (double)u->t.output);
	cJSON_AddNumberToObject(o, "cache_creation_input_tokens", (double)u->t.cache_creation);
	cJSON_AddNumberToObject(o, "cache_read_input_tokens", (double)u->t.cache_read);
	cJSON_AddItemToObject(o, "cost_usd", usd_json(u->cost, u->unknown));
	return o;
}

int store_render_usage_json(struct store *s, struct buf *out)
{
	struct usage_all a;
	cJSON *o = cJSON_CreateObject(), *p = cJSON_AddObjectToObject(o, "prices");
	pthread_mutex_lock(&s->lock);
	int r = usage_collect(s, &a);
	cJSON_AddStringToObject(p, "source", s->prices.source);
	cJSON_AddStringToObject(p, "as_of", s->prices.as_of);
	pthread_mutex_unlock(&s->lock);
	cJSON *ctx = cJSON_AddArrayToObject(o, "contexts");
	cJSON *models = cJSON_AddArrayToObject(o, "models");
	for (size_t i = 0; r == 0 && i < a.n_ctx; i++)
		cJSON_AddItemToArray(ctx, sum_json(&a.ctx[i], "name"));
	for (size_t i = 0; r == 0 && i < a.n_model; i++)
		cJSON_AddItemToArray(models, sum_json(&a.model[i], "model"));
	cJSON_AddItemToObject(o, "total", sum_json(&a.total, NULL));
	usage_all_done(&a);
	char *text = r == 0 ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (r == 0 && !text)
		r = -ENOMEM;
	if (r == 0)
		r = buf_printf(out, "%s\n", text);
	free(text);
	return r;
}

/* --- limits ---------------------------------------------------------------- */

static int64_t usd_nano(double usd)
{
	return (int64_t)(usd * 1e9 + 0.5);
}

static int refuse(double limit, const char *which, char *why, size_t whylen)
{
	char shown[PRICES_USD_TEXT];
	prices_format_usd(usd_nano(limit), true, shown, sizeof(shown));
	snprintf(why, whylen, "spend limit %s USD reached (%s)", shown, which);
	return -EDQUOT;
}

/* What all contexts cost together (what has a price), in nano-USD; the lock
 * held.  Contexts not loaded yet are loaded. */
static int store_spent(struct store *s, int64_t *spent)
{
	size_t n = s->by_id.count, k = 0;
	uint64_t *ids = calloc(n ? n : 1, sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < s->by_id.nslots; i++)
		for (struct map_node *node = s->by_id.slots[i]; node && k < n; node = node->next)
			ids[k++] = ((const struct store_slot *)node->value)->id;
	bool unknown = false;
	for (size_t i = 0; i < k; i++) {
		const struct context *c = store_get(s, ids[i]);
		if (c)
			*spent = prices_add(*spent, context_spent(s, c, &unknown));
	}
	free(ids);
	return 0;
}

int context_spend_check(struct store *s, uint64_t id, char *why, size_t whylen)
{
	int r = 0;
	bool unknown = false;
	pthread_mutex_lock(&s->lock);
	struct context *c = store_get(s, id);
	if (!c)
		r = -ENOENT;
	else if (!isnan(c->settings.spend_limit_usd) &&
		 context_spent(s, c, &unknown) >= usd_nano(c->settings.spend_limit_usd))
		r = refuse(c->settings.spend_limit_usd, "context", why, whylen);
	else if (!isnan(s->defaults.spend_limit_usd)) {
		double limit = s->defaults.spend_limit_usd;
		int64_t spent = 0;
		r = store_spent(s, &spent);
		if (r == 0 && spent >= usd_nano(limit))
			r = refuse(limit, "all contexts", why, whylen);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

void store_set_prices(struct store *s, struct prices *p)
{
	pthread_mutex_lock(&s->lock);
	prices_done(&s->prices);
	s->prices = *p;
	memset(p, 0, sizeof(*p));
	pthread_mutex_unlock(&s->lock);
}

/* Usage totals and the pruning calibration learn from every ended call.  A call
 * counts when it reported usage or its answer was a stream (HTTP 200): a stream
 * without a usage is still a call the API answered (CONTRACT §8). */
void context_account(struct context *c, struct reply *t)
{
	const struct wire_usage *u = &t->usage;
	if (t->cache_hit) { /* no call, no tokens (CONTRACT §10) */
		c->totals.cache_hits++;
		memset(&c->last_usage, 0, sizeof(c->last_usage));
		c->last_hit = true;
		context_changed(c);
		return;
	}
	if (!u->present && t->http_status != 200)
		return;
	c->totals.calls++;
	c->last_usage = *u;
	c->last_hit = false;
	context_ledger_add(c, t);
	context_changed(c);
	if (!u->present)
		return;
	total_add(&c->totals.input, u->input_tokens);
	total_add(&c->totals.output, u->output_tokens);
	total_add(&c->totals.cache_creation, u->cache_creation_input_tokens);
	total_add(&c->totals.cache_read, u->cache_read_input_tokens);
	int64_t sent =
	    u->input_tokens + u->cache_creation_input_tokens + u->cache_read_input_tokens;
	if (t->raw_sent > 0 && (u->present & WIRE_USAGE_INPUT))
		prune_calibrate(&c->prune, t->raw_sent, sent);
}
