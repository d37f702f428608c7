/* fuzz_reply_part.c — REPLY_PART payloads printed without cJSON
 * (src/core/record_part.c).
 *
 * Input: turn (8 bytes), attempt (4), split (2), then bytes: text is the first
 * split bytes of the rest (at most all of it), thinking what follows.  Checked:
 * the record is exactly what cJSON_PrintUnformatted prints for the same object
 * when neither string holds a NUL (cJSON ends a string there) and the turn is
 * below 10^15 (where cJSON's "%1.15g" turns to an exponent; this printer keeps
 * the digits, which parse to the same number); it always parses
 * with cJSON, and "text" and "thinking" come back as the bytes given, up to a
 * first NUL; printing into a buffer that held a longer record gives the same
 * bytes.
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <string.h>

#include "mcpfs/record.h"
#include "fuzz.h"
#include "../unit/reply_part_cjson.h"

static void check_field(const cJSON *o, const char *key, const uint8_t *s, size_t n, bool present)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	FUZZ_CHECK(present == (v != NULL));
	if (!v)
		return;
	FUZZ_CHECK(cJSON_IsString(v));
	size_t upto = strnlen((const char *)s, n);
	FUZZ_CHECK(strlen(v->valuestring) == upto && memcmp(v->valuestring, s, upto) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	uint64_t turn = fuzz_bytes(&in, 8) & ((1ull << 53) - 1); /* a double holds it exactly */
	unsigned attempt = (unsigned)fuzz_bytes(&in, 4) & 0x7fffffff;
	size_t split = (size_t)fuzz_bytes(&in, 2);
	const char *tx = (const char *)in.p;
	size_t tn = split < in.n ? split : in.n, hn = in.n - tn;
	const char *th = tx + tn;

	struct buf b;
	buf_init(&b, SIZE_MAX);
	long n = reply_part_len(&b, turn, attempt, tx, tn, th, hn);
	FUZZ_CHECK(n > 0 && (size_t)n <= b.cap && b.data[n] == '\0');
	cJSON *o = cJSON_ParseWithLength(b.data, (size_t)n);
	FUZZ_CHECK(o != NULL);
	FUZZ_CHECK(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "turn")) ==
		   (double)turn);
	FUZZ_CHECK(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "attempt")) == attempt);
	check_field(o, "text", (const uint8_t *)tx, tn, true);
	check_field(o, "thinking", (const uint8_t *)th, hn, hn != 0);

	if (!memchr(tx, 0, tn) && !memchr(th, 0, hn) && turn < 1000000000000000ull) {
		char *want = reply_part_by_cjson(turn, attempt, tx, tn, th, hn);
		FUZZ_ALLOC(want);
		FUZZ_CHECK(strlen(want) == (size_t)n && memcmp(want, b.data, (size_t)n) == 0);
		free(want);
	}
	/* Reused, shorter: the same bytes as a fresh print. */
	long m = reply_part_len(&b, turn, attempt, tx, tn / 2, th, hn / 2);
	struct buf fresh;
	buf_init(&fresh, SIZE_MAX);
	long k = reply_part_len(&fresh, turn, attempt, tx, tn / 2, th, hn / 2);
	FUZZ_CHECK(m == k && m > 0 && memcmp(b.data, fresh.data, (size_t)m) == 0);
	buf_done(&fresh);
	cJSON_Delete(o);
	buf_done(&b);
	return 0;
}
