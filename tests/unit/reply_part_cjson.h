/* reply_part_cjson.h — what cJSON prints for a REPLY_PART object: the
 * reference that tests/unit/test_record_part.c and the reply_part fuzz target
 * compare record_part_print() with, and a length-returning call of it. */
#ifndef MCPFS_TEST_REPLY_PART_CJSON_H
#define MCPFS_TEST_REPLY_PART_CJSON_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/record.h"

/* cJSON_PrintUnformatted of the object, from NUL-free text and thinking
 * (thinking left out when hn is 0); NULL when out of memory.  free() it. */
static inline char *reply_part_by_cjson(uint64_t turn, unsigned attempt, const char *tx, size_t tn,
					const char *th, size_t hn)
{
	char *t = strndup(tx, tn), *h = strndup(th, hn), *s = NULL;
	cJSON *o = cJSON_CreateObject();
	if (t && h && o && cJSON_AddNumberToObject(o, "turn", (double)turn) &&
	    cJSON_AddNumberToObject(o, "attempt", attempt) &&
	    cJSON_AddStringToObject(o, "text", t) &&
	    (!hn || cJSON_AddStringToObject(o, "thinking", h)))
		s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	free(t);
	free(h);
	return s;
}

/* record_part_print into b: the record's length, or its error. */
static inline long reply_part_len(struct buf *b, uint64_t turn, unsigned attempt, const char *tx,
				  size_t tn, const char *th, size_t hn)
{
	int r = record_part_print(b, turn, attempt, tx, tn, th, hn);
	return r < 0 ? r : (long)b->len;
}

#endif
