/* fuzz.h — what the libFuzzer targets share.
 *
 * Each fuzz_<target>.c defines LLVMFuzzerTestOneInput and checks its parser's
 * invariants with FUZZ_CHECK, which aborts: libFuzzer then saves the input as a
 * crash, and replay.c (the test_fuzz_<target> binaries of every test run) dies
 * with the failed condition on stderr.  A target must not keep state between
 * inputs, must not write files and must free everything it allocates (the
 * sanitizer builds detect leaks).
 */
#ifndef MCPFS_TEST_FUZZ_H
#define MCPFS_TEST_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,       \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Out of memory is not a finding: the targets stop there loudly. */
#define FUZZ_ALLOC(p)                                                                              \
	do {                                                                                       \
		if (!(p)) {                                                                        \
			fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);             \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Reads input bytes front to back; past the end it yields zeros, so a target
 * never needs to check the length before taking a parameter. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

static inline unsigned fuzz_byte(struct fuzz_in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static inline uint64_t fuzz_bytes(struct fuzz_in *in, int k)
{
	uint64_t v = 0;

	for (int i = 0; i < k; i++)
		v = v << 8 | fuzz_byte(in);
	return v;
}

#endif
