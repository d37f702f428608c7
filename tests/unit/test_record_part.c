/* test_record_part.c — REPLY_PART payloads printed by record_part.c are exactly
 * what cJSON_PrintUnformatted prints for the same object, and parse back to the
 * same text. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mcpfs/record.h"
#include "reply_part_cjson.h"

/* Both printers agree byte for byte, and the record parses back. */
static void same(struct buf *b, uint64_t turn, unsigned attempt, const char *tx, size_t tn,
		 const char *th, size_t hn)
{
	long n = reply_part_len(b, turn, attempt, tx, tn, th, hn);
	char *want = reply_part_by_cjson(turn, attempt, tx, tn, th, hn);
	CHECK(n >= 0 && want && (size_t)n == strlen(want) && memcmp(b->data, want, (size_t)n) == 0);
	cJSON *o = n >= 0 ? cJSON_ParseWithLength(b->data, (size_t)n) : NULL;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
	CHECK(cJSON_IsString(t) && strlen(t->valuestring) == tn &&
	      memcmp(t->valuestring, tx, tn) == 0);
	CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(o, "thinking") != NULL, hn != 0);
	cJSON_Delete(o);
	free(want);
}

static void test_every_byte(void)
{
	struct buf b;
	buf_init(&b, SIZE_MAX);
	for (int c = 1; c < 256; c++) {
		char s[3] = {'a', (char)c, 'z'};
		same(&b, 1, 1, s, 3, s + 1, 1);
		/* Runs are scanned eight bytes at a time: c at every place of two
		 * words and a tail. */
		char run[19];
		for (int k = 0; k < (int)sizeof(run); k++) {
			memset(run, 'x', sizeof(run));
			run[k] = (char)c;
			same(&b, 1, 1, run, sizeof(run), run + 1, (size_t)k);
		}
	}
	buf_done(&b);
}

static void test_edges(void)
{
	struct buf b;
	buf_init(&b, SIZE_MAX);
	same(&b, 0, 0, "", 0, "", 0);
	same(&b, 7, 2, "\"\\\"\\", 4, "", 0);
	same(&b, 2147483647, 3, "\x1f\x7f\n\r\t\b\f", 7, "think \"x\"", 9);
	same(&b, 1000000000000ull, 1,
	     "Gr\xc3\xbc\xc3\x9f"
	     "e \xf0\x9f\x8c\xb8",
	     12, "", 0);
	/* A NUL, where cJSON would end the string, is kept as \u0000. */
	long n = reply_part_len(&b, 1, 1, "a\0b", 3, "", 0);
	const char want[] = "{\"turn\":1,\"attempt\":1,\"text\":\"a\\u0000b\"}";
	CHECK(n == (long)sizeof(want) - 1 && memcmp(b.data, want, sizeof(want) - 1) == 0);
	/* A NULL pointer with no bytes is no text. */
	CHECK_EQ_INT(reply_part_len(&b, 1, 1, NULL, 0, NULL, 0),
		     strlen("{\"turn\":1,\"attempt\":1,\"text\":\"\"}"));
	/* A buffer capped below the worst case refuses, and is left empty. */
	struct buf small;
	buf_init(&small, RECORD_PART_SIZE(4, 0) - 1);
	CHECK_EQ_INT(record_part_print(&small, 1, 1, "abcd", 4, "", 0), -EFBIG);
	CHECK_EQ_INT(small.len, 0);
	buf_done(&small);
	buf_done(&b);
}

/* Random texts over an alphabet rich in what must be escaped, in one reused
 * buffer (long records, then short ones). */
static void test_random(void)
{
	static const char alpha[] = "ab \"\\\n\r\t\x01\x1f\x7f\xc3\xa9/{}";
	struct buf b;
	buf_init(&b, SIZE_MAX);
	unsigned seed = 12345;
	char tx[4096], th[512];
	for (int i = 0; i < 2000; i++) {
		size_t tn = (size_t)rand_r(&seed) % (i % 3 ? 64 : sizeof(tx));
		size_t hn = (size_t)rand_r(&seed) % 4 == 0 ? (size_t)rand_r(&seed) % sizeof(th) : 0;
		for (size_t k = 0; k < tn; k++)
			tx[k] = alpha[(size_t)rand_r(&seed) % (sizeof(alpha) - 1)];
		for (size_t k = 0; k < hn; k++)
			th[k] = alpha[(size_t)rand_r(&seed) % (sizeof(alpha) - 1)];
		same(&b, (uint64_t)i, (unsigned)i % 5, tx, tn, th, hn);
	}
	buf_done(&b);
}

int main(void)
{
	test_every_byte();
	test_edges();
	test_random();
	return check_report();
}
