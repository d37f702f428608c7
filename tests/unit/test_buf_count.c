/* test_buf_count.c — a counting buffer (buf_init_count) measures what the same
 * calls would store in a buffer, keeps its cap, and refuses what needs bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mcpfs/buf.h"

/* The same appends into a real and a counting buffer: the same len. */
static void fill(struct buf *b)
{
	CHECK_EQ_INT(buf_append(b, "abcd", 4), 0);
	CHECK_EQ_INT(buf_puts(b, "--- turn 1 ---\n"), 0);
	CHECK_EQ_INT(buf_printf(b, "%s %llu %d\n", "x", 18446744073709551615ull, -7), 0);
	CHECK_EQ_INT(buf_append(b, NULL, 0), 0);
	char big[5000];
	memset(big, 'z', sizeof(big));
	CHECK_EQ_INT(buf_append(b, big, sizeof(big)), 0);
}

static void test_same_len(void)
{
	struct buf real, count;
	buf_init(&real, SIZE_MAX / 2);
	buf_init_count(&count, SIZE_MAX / 2);
	fill(&real);
	fill(&count);
	CHECK_EQ_INT(count.len, real.len);
	CHECK(count.data == NULL && count.cap == 0);
	buf_reset(&count);
	CHECK_EQ_INT(count.len, 0);
	CHECK_EQ_INT(buf_resize(&count, 0), 0); /* shrinking needs no storage */
	buf_done(&real);
	buf_done(&count);
}

static void test_cap_and_refusals(void)
{
	struct buf b;
	buf_init_count(&b, 8);
	CHECK_EQ_INT(buf_append(&b, "abcdefgh", 8), 0);
	CHECK_EQ_INT(buf_append(&b, "x", 1), -EFBIG);
	CHECK_EQ_INT(buf_printf(&b, "%d", 1), -EFBIG);
	CHECK_EQ_INT(b.len, 8);
	CHECK_EQ_INT(buf_reserve(&b, 1), -EINVAL);
	CHECK_EQ_INT(buf_resize(&b, 9), -EFBIG);
	buf_reset(&b);
	CHECK_EQ_INT(buf_resize(&b, 2), -EINVAL);
	CHECK_EQ_INT(buf_write_at(&b, 0, "xy", 2), -EINVAL);
	CHECK(buf_steal(&b, NULL) == NULL);
	CHECK(b.data == NULL);
	buf_done(&b);
	/* buf_init makes an ordinary buffer again */
	buf_init(&b, 8);
	CHECK_EQ_INT(buf_append(&b, "ab", 2), 0);
	CHECK_EQ_STR(b.data, "ab");
	buf_done(&b);
}

int main(void)
{
	test_same_len();
	test_cap_and_refusals();
	return check_report();
}
