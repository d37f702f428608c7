/* test_shim_peek.c — shim_frame_peek_check (src/net/shim_frame.c): the request
 * line and header block as they wait in a new connection's socket, checked
 * before libmicrohttpd reads them (shim_accept.c). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "../../src/net/shim_impl.h"

enum { MORE, PASS, REFUSE };

/* What the check makes of s: MORE (nothing wrong yet, not all in), PASS (all
 * in, *len its length) or REFUSE (*status). */
static int peek(const char *s, size_t n, size_t *len, unsigned *status)
{
	*status = 400;
	const char *why = shim_frame_peek_check(s, n, len, status);
	if (why) {
		CHECK(*why);
		return REFUSE;
	}
	return *len ? PASS : MORE;
}

static int peek_str(const char *s, unsigned *status)
{
	size_t len;
	return peek(s, strlen(s), &len, status);
}

static void test_good(void)
{
	static const char req[] = "POST /v1/contexts HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"
				  "Content-Type: application/json\r\nContent-Length:  12\r\n"
				  "X-Empty:\r\nX-Tab: a\tb\r\n\r\n{\"name\":\"a\"}";
	size_t len;
	unsigned status;
	CHECK_EQ_INT(peek(req, strlen(req), &len, &status), PASS);
	CHECK_EQ_INT(len, strstr(req, "\r\n\r\n") + 4 - req);
	/* Every prefix short of the empty line: wait for more. */
	for (size_t n = 0; n < len; n++)
		CHECK_EQ_INT(peek(req, n, &len, &status), MORE);
	/* Empty lines before the request line are skipped, as libmicrohttpd does. */
	CHECK_EQ_INT(peek_str("\r\n\r\nGET / HTTP/1.0\r\n\r\n", &status), PASS);
	CHECK_EQ_INT(peek_str("GET /x?a=%20b HTTP/1.1\r\nContent-Length: 000\r\n\r\n", &status),
		     PASS);
	/* Bytes over 0x7f in the target and values: obs-text, not refused here. */
	CHECK_EQ_INT(peek_str("GET /\xc3\xa9 HTTP/1.1\r\nX-A: \xc3\xa9\r\n\r\n", &status), PASS);
}

static void test_refused(void)
{
	static const char *const bad[] = {
	    " GET / HTTP/1.1\r\n\r\n",
	    "GET  / HTTP/1.1\r\n\r\n",
	    "GET / HTTP/1.1 \r\n\r\n",
	    "GET\t/ HTTP/1.1\r\n\r\n",
	    "GET /\r\n\r\n",
	    "GET / HTTP/1.1\r\r\n\r\n",
	    "GET / HTTP/11\r\n\r\n",
	    "GET /a b HTTP/1.1\r\n\r\n",
	    "GET /\x01 HTTP/1.1\r\n\r\n",
	    "G(T / HTTP/1.1\r\n\r\n",
	    "GET / HTTP/1.1\n\r\n",
	    "GET / HTTP/1.1\r\nX: a\n\r\n",
	    "GET / HTTP/1.1\r\n\n",
	    "GET / HTTP/1.1\r\n X: a\r\n\r\n",
	    "GET / HTTP/1.1\r\nX : a\r\n\r\n",
	    "GET / HTTP/1.1\r\nX\t: a\r\n\r\n",
	    "GET / HTTP/1.1\r\nX-A\r\n\r\n",
	    "GET / HTTP/1.1\r\n: a\r\n\r\n",
	    "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
	    "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",
	    "GET / HTTP/1.1\r\nX: a\r\n Content-Length: 1x\r\n\r\n",
	};
	unsigned status;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ_INT(peek_str(bad[i], &status), REFUSE);
		CHECK_EQ_INT(status, 400);
	}
	/* NULs: in the path, the version, a name, a value. */
	static const char nul[][40] = {"GET /\0x HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\0\r\n\r\n",
				       "GET / HTTP/1.1\r\nX\0: a\r\n\r\n",
				       "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"};
	static const size_t nul_len[] = {20, 19, 25, 26};
	for (size_t i = 0; i < sizeof(nul) / sizeof(nul[0]); i++) {
		size_t len;
		CHECK_EQ_INT(peek(nul[i], nul_len[i], &len, &status), REFUSE);
	}
	/* A line already wrong is refused before the block is all in. */
	CHECK_EQ_INT(peek_str(" GET / HTTP/1.1\r\nHost: x", &status), REFUSE);
}

static void test_content_length(void)
{
	static const char *const bad[] = {"1x", "+2", "-1", "2 2", "0x2", "", "2 ", "2\t", " "};
	char req[128];
	unsigned status;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(req, sizeof(req), "POST / HTTP/1.1\r\ncontent-LENGTH: %s\r\n\r\n", bad[i]);
		CHECK_EQ_INT(peek_str(req, &status), REFUSE);
		CHECK_EQ_INT(status, 400);
	}
	/* Any one of several is checked. */
	CHECK_EQ_INT(
	    peek_str("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 1x\r\n\r\n", &status),
	    REFUSE);
	CHECK_EQ_INT(
	    peek_str("POST / HTTP/1.1\r\nContent-Length: 123456789012345\r\n\r\n", &status), PASS);
	CHECK_EQ_INT(
	    peek_str("POST / HTTP/1.1\r\nContent-Length: 1234567890123456\r\n\r\n", &status),
	    REFUSE);
	CHECK_EQ_INT(status, 413);
	/* Not a Content-Length: a longer or shorter name. */
	CHECK_EQ_INT(peek_str("POST / HTTP/1.1\r\nContent-Lengths: 1x\r\nContent-Lengt: 1x\r\n\r\n",
			      &status),
		     PASS);
}

static void test_header_lines(void)
{
	size_t cap = 64 + 8 * (SHIM_HEADER_LINES + 1), len;
	char *req = malloc(cap);
	unsigned status;
	for (unsigned lines = SHIM_HEADER_LINES; lines <= SHIM_HEADER_LINES + 1; lines++) {
		size_t n = (size_t)snprintf(req, cap, "GET / HTTP/1.1\r\n");
		for (unsigned i = 0; i < lines; i++)
			n += (size_t)snprintf(req + n, cap - n, "X%u: a\r\n", i % 10);
		n += (size_t)snprintf(req + n, cap - n, "\r\n");
		CHECK_EQ_INT(peek(req, n, &len, &status),
			     lines > SHIM_HEADER_LINES ? REFUSE : PASS);
		if (lines > SHIM_HEADER_LINES)
			CHECK_EQ_INT(status, 431);
	}
	free(req);
}

int main(void)
{
	test_good();
	test_refused();
	test_content_length();
	test_header_lines();
	return check_report();
}
