/* test_prune.c — the pruning index: estimates, decisions, floor, calibration.
 *
 * Decisions are checked against a naive O(n) reading of the rule in prune.h
 * over random inputs, so the binary search is held to the rule, not to itself.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "mcpfs/prune.h"

/* No libm: meson links this test without -lm. */
static double dist(double a, double b)
{
	return a > b ? a - b : b - a;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	/* xorshift64*: deterministic, so a failure reproduces. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static int64_t rng_range(int64_t lo, int64_t hi)
{
	return lo + (int64_t)(rng() % (uint64_t)(hi - lo + 1));
}

/* The rule of prune.h, read literally: totals summed afresh for every k. */
struct naive {
	int64_t ex[10000];
	size_t n;
	size_t floor;
};

static int64_t naive_total(const struct naive *m, const struct prune_index *p, int64_t fixed,
			   size_t k)
{
	int64_t raw = fixed;
	for (size_t i = k; i < m->n; i++)
		raw += m->ex[i];
	return prune_tokens(p, raw);
}

static int64_t naive_decide(struct naive *m, const struct prune_index *p, int64_t fixed,
			    int64_t budget, bool move)
{
	double low = PRUNE_LOW_WATER * (double)budget;
	size_t k;

	if (prune_tokens(p, fixed) > budget)
		return -EFBIG;
	if (naive_total(m, p, fixed, m->floor) <= budget)
		return (int64_t)m->floor;
	if ((double)prune_tokens(p, fixed) <= low) {
		for (k = m->floor + 1; k < m->n; k++)
			if ((double)naive_total(m, p, fixed, k) <= low)
				break;
	} else {
		for (k = m->floor + 1; k < m->n; k++)
			if (naive_total(m, p, fixed, k) <= budget)
				break;
	}
	if (move)
		m->floor = k;
	return (int64_t)k;
}

static void test_estimate(void)
{
	static const struct {
		size_t bytes;
		int64_t want;
	} cases[] = {
	    {0, 4}, {1, 5}, {2, 5},	{3, 5},	    {4, 6},
	    {6, 6}, {7, 7}, {300, 104}, {301, 105}, {1u << 20, 349530},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_EQ_INT(prune_estimate(cases[i].bytes), cases[i].want);
}

static void test_tokens(void)
{
	struct prune_index p;
	prune_index_init(&p);
	CHECK(p.ratio == 1.0);
	CHECK_EQ_INT(prune_tokens(&p, 0), 0);
	CHECK_EQ_INT(prune_tokens(&p, 12345), 12345);
	p.ratio = 0.5;
	CHECK_EQ_INT(prune_tokens(&p, 3), 2); /* ceil(1.5) */
	CHECK_EQ_INT(prune_tokens(&p, 4), 2);
	p.ratio = 2.0;
	CHECK_EQ_INT(prune_tokens(&p, 3), 6);
	p.ratio = 5.0;
	CHECK_EQ_INT(prune_tokens(&p, INT64_MAX / 2), INT64_MAX); /* saturates */
	prune_index_done(&p);
	prune_index_done(NULL);
}

/* Exchanges of the given raw sizes in a fresh index. */
static void load(struct prune_index *p, const int64_t *ex, size_t n)
{
	prune_index_init(p);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ_INT(prune_index_push(p, ex[i]), 0);
}

static void test_edges(void)
{
	static const int64_t three[] = {10, 10, 10};
	static const int64_t one[] = {10};
	struct prune_index p;

	/* No exchanges: the answer is n = 0, or EFBIG. */
	prune_index_init(&p);
	CHECK_EQ_INT(prune_decide(&p, 10, 100), 0);
	CHECK_EQ_INT(prune_decide(&p, 100, 100), 0); /* exactly at the budget */
	CHECK_EQ_INT(prune_decide(&p, 101, 100), -EFBIG);
	prune_index_done(&p);

	/* Everything fits exactly at the edge; one token less cuts to low water:
	 * floor(0.75 * 39) = 29, totals 40, 30, 20, 10 -> k = 2. */
	load(&p, three, 3);
	CHECK_EQ_INT(p.sum[3], 30);
	CHECK_EQ_INT(prune_peek(&p, 10, 40), 0);
	CHECK_EQ_INT(prune_peek(&p, 10, 39), 2);
	CHECK_EQ_INT(p.floor, 0); /* peek does not move it */
	CHECK_EQ_INT(prune_decide(&p, 10, 39), 2);
	CHECK_EQ_INT(p.floor, 2);
	/* The floor holds even though more would fit now. */
	CHECK_EQ_INT(prune_decide(&p, 10, 1000), 2);
	/* EFBIG leaves the floor alone. */
	CHECK_EQ_INT(prune_decide(&p, 1001, 1000), -EFBIG);
	CHECK_EQ_INT(p.floor, 2);
	prune_index_done(&p);

	/* The fixed part alone is above low water (80 > 75): keep what fits the
	 * budget, totals 110, 100 -> k = 1. */
	load(&p, three, 3);
	CHECK_EQ_INT(prune_decide(&p, 80, 100), 1);
	prune_index_done(&p);

	/* Only the fixed part fits: k = n. */
	load(&p, one, 1);
	CHECK_EQ_INT(prune_decide(&p, 50, 50), 1);
	CHECK_EQ_INT(p.floor, 1);
	/* After a reset the floor is back at 0 and the ratio stays. */
	p.ratio = 2.0;
	prune_index_reset(&p);
	CHECK_EQ_INT(p.n, 0);
	CHECK_EQ_INT(p.floor, 0);
	CHECK(p.ratio == 2.0);
	CHECK_EQ_INT(prune_decide(&p, 5, 10), 0);
	CHECK_EQ_INT(prune_index_push(&p, 7), 0);
	CHECK_EQ_INT(p.sum[1], 7);
	CHECK_EQ_INT(prune_decide(&p, 5, 24), 0); /* 2 * 12 = 24 */
	CHECK_EQ_INT(prune_decide(&p, 5, 23), 1);
	prune_index_done(&p);
}

/* Appending exchanges keeps the same prefix until the budget is passed, then
 * the cut lands at or under low water, and never moves back. */
static void test_floor_sticks(void)
{
	const int64_t fixed = 50, budget = 1000;
	struct prune_index p;
	size_t moves = 0, last = 0;

	prune_index_init(&p);
	for (int i = 0; i < 200; i++) {
		CHECK_EQ_INT(prune_index_push(&p, 100), 0);
		int64_t k = prune_decide(&p, fixed, budget);
		CHECK(k >= (int64_t)last);
		int64_t kept = fixed + p.sum[p.n] - p.sum[k];
		if ((size_t)k == last) {
			CHECK(kept <= budget);
		} else {
			moves++;
			/* Before this push the old prefix fitted; now it does not. */
			CHECK(fixed + p.sum[p.n] - p.sum[last] > budget);
			CHECK(kept <= 750);
			CHECK(kept + 100 > 750); /* the smallest such cut */
		}
		last = (size_t)k;
	}
	/* 50 + 100 * m <= 1000 keeps m <= 9; each cut keeps 7: the first at n = 10,
	 * then every 3 exchanges. */
	CHECK_EQ_INT(moves, 1 + (200 - 10) / 3);
	/* A better calibration never takes the floor back. */
	p.ratio = 0.2;
	CHECK_EQ_INT(prune_decide(&p, fixed, budget), (int64_t)last);
	prune_index_done(&p);
}

static void test_calibrate(void)
{
	struct prune_index p;
	prune_index_init(&p);

	prune_calibrate(&p, 100, 50); /* seen 0.5: (0.5 + 1) / 2 */
	CHECK(dist(p.ratio, 0.75) < 1e-12);
	prune_calibrate(&p, 100, 50);
	CHECK(dist(p.ratio, 0.625) < 1e-12);
	prune_calibrate(&p, 0, 50); /* nothing sent, nothing learnt */
	prune_calibrate(&p, 100, 0);
	prune_calibrate(&p, -5, 10);
	CHECK(dist(p.ratio, 0.625) < 1e-12);
	/* A sample is clamped: 1000x counts as 5; and a rise is taken at once. */
	prune_calibrate(&p, 100, 100000);
	CHECK(dist(p.ratio, 5.0) < 1e-12);
	prune_calibrate(&p, 100, 100); /* a fall is averaged: (1 + 5) / 2 */
	CHECK(dist(p.ratio, 3.0) < 1e-12);
	prune_calibrate(&p, 100, 200); /* (2 + 3) / 2 */
	CHECK(dist(p.ratio, 2.5) < 1e-12);
	prune_calibrate(&p, 100, 400); /* a denser tokenizer than thought: at once */
	CHECK(dist(p.ratio, 4.0) < 1e-12);
	for (int i = 0; i < 100; i++)
		prune_calibrate(&p, 1, INT64_MAX);
	CHECK(p.ratio <= 5.0);
	CHECK(p.ratio > 4.999);
	for (int i = 0; i < 100; i++)
		prune_calibrate(&p, INT64_MAX, 1);
	CHECK(p.ratio >= 0.2);
	CHECK(p.ratio < 0.2001);
	/* Converges on a steady ratio. */
	for (int i = 0; i < 60; i++)
		prune_calibrate(&p, 4000, 3000);
	CHECK(dist(p.ratio, 0.75) < 1e-9);
	CHECK_EQ_INT(prune_tokens(&p, 4000), 3000);
	prune_index_done(&p);
}

/* Many short random histories, a decision after every exchange, random
 * calibration in between: decide and peek agree with the naive rule. */
static void test_random_small(void)
{
	static struct naive m;
	int bad = 0;

	for (int round = 0; round < 2000; round++) {
		struct prune_index p;
		prune_index_init(&p);
		m.n = 0;
		m.floor = 0;
		int64_t budget = rng_range(1, 3000);
		size_t n = (size_t)rng_range(0, 60);
		for (size_t i = 0; i < n; i++) {
			m.ex[m.n++] = rng_range(0, 400);
			CHECK(prune_index_push(&p, m.ex[m.n - 1]) == 0);
			if (rng() % 5 == 0)
				prune_calibrate(&p, rng_range(1, 1000), rng_range(1, 3000));
			int64_t fixed = rng_range(0, budget + budget / 4);
			if (rng() % 3 == 0)
				budget = rng_range(1, 3000);
			int64_t peek = prune_peek(&p, fixed, budget);
			bad += peek != naive_decide(&m, &p, fixed, budget, false);
			int64_t k = prune_decide(&p, fixed, budget);
			bad += k != naive_decide(&m, &p, fixed, budget, true);
			bad += p.floor != m.floor;
		}
		prune_index_done(&p);
	}
	CHECK_EQ_INT(bad, 0);
}

/* 10,000 exchanges with decisions spread through them. */
static void test_random_large(void)
{
	static struct naive m;
	struct prune_index p;
	int bad = 0, cuts = 0;

	prune_index_init(&p);
	m.n = 0;
	m.floor = 0;
	for (size_t i = 0; i < 10000; i++) {
		m.ex[m.n++] = rng_range(4, 3000);
		CHECK(prune_index_push(&p, m.ex[m.n - 1]) == 0);
		if (i % 50 != 49)
			continue;
		prune_calibrate(&p, rng_range(1000, 100000), rng_range(500, 150000));
		int64_t fixed = rng_range(4, 20000);
		size_t before = m.floor;
		int64_t k = prune_decide(&p, fixed, 100000);
		bad += k != naive_decide(&m, &p, fixed, 100000, true);
		cuts += m.floor != before;
	}
	CHECK_EQ_INT(p.n, 10000);
	CHECK_EQ_INT(bad, 0);
	CHECK(cuts > 10); /* the test did exercise cutting */
	int64_t total = 0;
	for (size_t i = 0; i < m.n; i++)
		total += m.ex[i];
	CHECK_EQ_INT(p.sum[p.n], total);
	prune_index_done(&p);
}

int main(void)
{
	test_estimate();
	test_tokens();
	test_edges();
	test_floor_sticks();
	test_calibrate();
	test_random_small();
	test_random_large();
	return check_report();
}
