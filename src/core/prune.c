/* prune.c — which history fits in the token budget (see prune.h).
 *
 * With sum[] holding prefix sums, the raw tokens of exchanges k..n-1 are
 * sum[n] - sum[k], which only shrinks as k grows; calibration (a ceiling of a
 * product with a positive ratio) keeps that order, so "the first k whose total
 * fits under a limit" is a binary search.
 *
 * No libm here: the unit test links this file alone, without -lm.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "mcpfs/prune.h"

#define PRUNE_RATIO_MIN 0.2
#define PRUNE_RATIO_MAX 5.0
/* Weight of the newest call in the ratio's moving average when the API counted
 * fewer tokens than the ratio says: heavy enough that the pessimistic start
 * (1.0) gives way within a few calls, light enough that one odd call does not
 * swing it.  A call that counted more is adopted at once: an average that
 * approached a denser tokenizer from below would keep every call just over the
 * budget. */
#define PRUNE_RATIO_WEIGHT 0.5
/* Per-message overhead of the estimate: role and framing tokens. */
#define PRUNE_MESSAGE_OVERHEAD 4

void prune_index_init(struct prune_index *p)
{
	p->sum = NULL;
	p->n = 0;
	p->cap = 0;
	p->floor = 0;
	p->ratio = 1.0;
}

void prune_index_done(struct prune_index *p)
{
	if (!p)
		return;
	free(p->sum);
	p->sum = NULL;
	p->n = 0;
	p->cap = 0;
	p->floor = 0;
}

void prune_index_reset(struct prune_index *p)
{
	p->n = 0;
	p->floor = 0;
	if (p->sum)
		p->sum[0] = 0;
}

int prune_index_push(struct prune_index *p, int64_t raw_tokens)
{
	assert(raw_tokens >= 0);
	/* sum[] holds n + 1 entries; grow geometrically so pushes are amortised O(1). */
	if (p->n + 2 > p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		int64_t *sum = realloc(p->sum, cap * sizeof *sum);
		if (!sum)
			return -ENOMEM;
		if (!p->sum)
			sum[0] = 0;
		p->sum = sum;
		p->cap = cap;
	}
	if (p->sum[p->n] > INT64_MAX - raw_tokens)
		return -EFBIG;
	p->sum[p->n + 1] = p->sum[p->n] + raw_tokens;
	p->n++;
	return 0;
}

void prune_index_pop(struct prune_index *p)
{
	if (!p->n)
		return;
	p->n--;
	if (p->floor > p->n)
		p->floor = p->n;
}

int64_t prune_estimate(size_t bytes)
{
	return (int64_t)(bytes / 3 + (bytes % 3 != 0)) + PRUNE_MESSAGE_OVERHEAD;
}

int64_t prune_tokens(const struct prune_index *p, int64_t raw)
{
	double x = (double)raw * p->ratio;
	/* 9.2e18 is just under INT64_MAX; beyond it any budget is exceeded anyway. */
	if (x >= 9.2e18)
		return INT64_MAX;
	int64_t t = (int64_t)x; /* toward zero: below 0 that is already the ceiling */
	return (double)t < x ? t + 1 : t;
}

/* Calibrated tokens sent when exchanges k..n-1 go with the fixed part. */
static int64_t total_from(const struct prune_index *p, int64_t fixed_raw, size_t k)
{
	int64_t kept = p->n ? p->sum[p->n] - p->sum[k] : 0;
	if (kept > INT64_MAX - fixed_raw)
		return INT64_MAX;
	return prune_tokens(p, fixed_raw + kept);
}

/* Smallest k in [lo, p->n] with total_from(k) <= limit; the caller knows that
 * k = p->n qualifies. */
static size_t first_fitting(const struct prune_index *p, int64_t fixed_raw, size_t lo,
			    int64_t limit)
{
	size_t hi = p->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (total_from(p, fixed_raw, mid) <= limit)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

int64_t prune_peek(const struct prune_index *p, int64_t fixed_raw, int64_t budget)
{
	size_t floor_k = p->floor < p->n ? p->floor : p->n;

	assert(fixed_raw >= 0); /* estimates are never negative */
	if (prune_tokens(p, fixed_raw) > budget)
		return -EFBIG;
	/* Keeping what was kept last time keeps the prefix byte-identical, which is
	 * what lets prompt caching hit: move only when it no longer fits. */
	if (total_from(p, fixed_raw, floor_k) <= budget)
		return (int64_t)floor_k;
	/* Cut to the low-water mark so the new floor lasts for several turns.  For
	 * integer totals, t <= 0.75 * budget is the same as t <= floor(0.75 * budget),
	 * which the conversion gives (budget >= 0 here, as the fixed part fitted). */
	int64_t low = (int64_t)(PRUNE_LOW_WATER * (double)budget);
	if (prune_tokens(p, fixed_raw) > low)
		low = budget; /* the fixed part alone is above low water: keep what fits */
	return (int64_t)first_fitting(p, fixed_raw, floor_k + 1, low);
}

int64_t prune_decide(struct prune_index *p, int64_t fixed_raw, int64_t budget)
{
	int64_t k = prune_peek(p, fixed_raw, budget);
	if (k >= 0)
		p->floor = (size_t)k;
	return k;
}

static double clamp_ratio(double r)
{
	return r < PRUNE_RATIO_MIN ? PRUNE_RATIO_MIN : r > PRUNE_RATIO_MAX ? PRUNE_RATIO_MAX : r;
}

void prune_calibrate(struct prune_index *p, int64_t raw_sent, int64_t api_tokens)
{
	/* A call that reported nothing (or sent nothing) teaches nothing. */
	if (raw_sent <= 0 || api_tokens <= 0)
		return;
	double seen = (double)api_tokens / (double)raw_sent;
	/* Clamp the sample as well as the result, so one absurd report cannot
	 * drag the average far. */
	seen = clamp_ratio(seen);
	if (seen >= p->ratio)
		p->ratio = seen;
	else
		p->ratio =
		    clamp_ratio(PRUNE_RATIO_WEIGHT * seen + (1 - PRUNE_RATIO_WEIGHT) * p->ratio);
}
