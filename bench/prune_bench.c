/* prune_bench.c — time of one pruning decision over a long history.
 *
 * Built by bench/run straight from src/core/prune.c (a pure data structure, no
 * store): N exchanges of mixed sizes, then prune_decide/prune_peek called as
 * each new turn would, at the default budget.  Prints "decide_ns peek_ns". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mcpfs/prune.h"

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
	int64_t budget = argc > 2 ? strtoll(argv[2], NULL, 10) : 100000;
	struct prune_index p;
	prune_index_init(&p);
	int64_t t_decide = 0, t_peek = 0, sink = 0;
	for (size_t i = 0; i < n; i++) {
		int64_t fixed = prune_estimate(200 + i % 1000);
		int64_t t0 = now_ns();
		sink += prune_decide(&p, fixed, budget);
		int64_t t1 = now_ns();
		sink += prune_peek(&p, fixed, budget);
		t_peek += now_ns() - t1;
		t_decide += t1 - t0;
		if (prune_index_push(&p, prune_estimate(200 + i % 1000) +
					     prune_estimate(600 + i % 3000)) < 0)
			return 1;
	}
	printf("%.1f %.1f %lld\n", (double)t_decide / (double)n, (double)t_peek / (double)n,
	       (long long)(sink & 1));
	prune_index_done(&p);
	return 0;
}
