/* wire_bench.c — time to decode one text_delta event, fast path against cJSON.
 *
 * Built by bench/run straight from src/core/wire.c, wire_delta.c and the UTF-8
 * helpers: the data line of a text_delta carrying SIZE bytes of text (ASCII
 * prose with a newline, a quote and a non-ASCII character now and then, as
 * cJSON writes it), decoded N times by wire_event_decode (fast path) and by
 * wire_event_decode_json.  Prints "fast_ns json_ns" per event. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcpfs/wire.h"

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char *event_data(size_t size)
{
	static const char *const words[] = {"lorem ", "ipsum ",	     "dolor ",	     "sit ",
					    "amet, ", "\"quoted\" ", "caf\xc3\xa9 ", "line\n"};
	char *text = malloc(size + 16);
	size_t n = 0;
	for (unsigned i = 0; n < size; i++) {
		const char *w = words[(i * 7 + i / 3) % 8];
		memcpy(text + n, w, strlen(w));
		n += strlen(w);
	}
	text[size] = '\0';
	cJSON *o = cJSON_CreateObject(), *d = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "content_block_delta");
	cJSON_AddNumberToObject(o, "index", 0);
	cJSON_AddStringToObject(d, "type", "text_delta");
	cJSON_AddStringToObject(d, "text", text);
	cJSON_AddItemToObject(o, "delta", d);
	char *data = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	free(text);
	return data;
}

static int64_t run(int fast, const char *data, size_t len, int n)
{
	int64_t t0 = now_ns();
	for (int i = 0; i < n; i++) {
		struct wire_event ev;
		int r = fast ? wire_event_decode(NULL, 0, data, len, &ev)
			     : wire_event_decode_json(NULL, 0, data, len, &ev);
		if (r < 0 || ev.block != WIRE_BLOCK_TEXT) {
			fprintf(stderr, "decode failed: %d\n", r);
			exit(1);
		}
		wire_event_done(&ev);
	}
	return (now_ns() - t0) / n;
}

int main(int argc, char **argv)
{
	size_t size = argc > 1 ? strtoul(argv[1], NULL, 10) : 4096;
	int n = argc > 2 ? atoi(argv[2]) : 20000;
	char *data = event_data(size);
	size_t len = strlen(data);
	int64_t fast = INT64_MAX, json = INT64_MAX;
	for (int round = 0; round < 3; round++) { /* best of 3, interleaved */
		int64_t f = run(1, data, len, n), j = run(0, data, len, n);
		fast = f < fast ? f : fast;
		json = j < json ? j : json;
	}
	printf("%lld %lld\n", (long long)fast, (long long)json);
	free(data);
	return 0;
}
