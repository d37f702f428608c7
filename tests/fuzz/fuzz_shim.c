/* fuzz_shim.c — the HTTP shim's decoding of a context name from a URL path
 * segment (shim_parse_name, src/net/shim_parse.c), the one piece of request
 * handling that does not need libmicrohttpd.
 *
 * Input: one byte for the size of the output buffer, then the raw segment.
 * Checked against an independent percent-decoder: a segment decodes exactly
 * when its escapes are well-formed, the result fits, holds no '/' or NUL, is
 * not "." or "..", and is a name store_name_check accepts; the result is then
 * those bytes, NUL-terminated, and encoding them again decodes to the same.
 * A refusal is -EINVAL or -ENAMETOOLONG with a NUL-terminated why; nothing is
 * written past either buffer (both are heap blocks of their exact size).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "mcpfs/store.h"
#include "shim_impl.h"
#include "fuzz.h"

static int hex(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* -EINVAL for a bad escape, else the decoded length (out holds len bytes). */
static long ref_decode(const uint8_t *s, size_t len, uint8_t *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			out[o++] = s[i];
			continue;
		}
		if (len - i < 3 || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0)
			return -EINVAL;
		out[o++] = (uint8_t)(hex(s[i + 1]) * 16 + hex(s[i + 2]));
		i += 2;
	}
	return (long)o;
}

static void check_decode(const uint8_t *seg, size_t len, size_t outlen)
{
	uint8_t *want = malloc(len + 1);
	char *out = malloc(outlen), *why = malloc(128);
	long n = ref_decode(seg, len, want);
	int r;

	FUZZ_ALLOC(want);
	FUZZ_ALLOC(out);
	FUZZ_ALLOC(why);
	why[0] = '\0';
	r = shim_parse_name((const char *)seg, len, out, outlen, why, 128);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENAMETOOLONG);
	if (n < 0) {
		/* A bad escape may be found only after the name is already too long. */
		FUZZ_CHECK(r < 0);
	} else if ((size_t)n >= outlen) {
		FUZZ_CHECK(r == -ENAMETOOLONG);
	} else {
		size_t k = (size_t)n;
		bool ok = !memchr(want, '/', k) && !memchr(want, '\0', k) &&
			  !(k == 1 && want[0] == '.') &&
			  !(k == 2 && want[0] == '.' && want[1] == '.') &&
			  store_name_check((const char *)want, k) == 0;

		FUZZ_CHECK(ok == (r == 0));
	}
	if (r < 0) {
		FUZZ_CHECK(memchr(why, '\0', 128) && why[0]);
	} else {
		size_t k = (size_t)n;

		FUZZ_CHECK(k < outlen && out[k] == '\0' && memcmp(out, want, k) == 0);
		FUZZ_CHECK(strlen(out) == k && k <= STORE_NAME_MAX);
		/* Encoded again, every byte escaped, it decodes to the same name. */
		char *enc = malloc(3 * k + 1), *back = malloc(outlen);
		FUZZ_ALLOC(enc);
		FUZZ_ALLOC(back);
		for (size_t i = 0; i < k; i++)
			snprintf(enc + 3 * i, 4, "%%%02X", (unsigned char)out[i]);
		FUZZ_CHECK(shim_parse_name(enc, 3 * k, back, outlen, why, 128) == 0);
		FUZZ_CHECK(strcmp(back, out) == 0);
		free(enc);
		free(back);
	}
	free(want);
	free(out);
	free(why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	unsigned b = fuzz_byte(&in);
	/* Mostly the size the shim uses; sometimes a small one. */
	size_t outlen = b < 192 ? STORE_NAME_MAX + 1 : 1 + b % 64;

	check_decode(in.p, in.n, outlen);
	return 0;
}
