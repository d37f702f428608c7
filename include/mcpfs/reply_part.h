/* reply_part.h — the payload of a REPLY_PART journal record, printed directly.
 *
 * Every byte of a streaming reply is checkpointed through a REPLY_PART record
 * (doc/design/journal.md): {"turn":N,"attempt":A,"text":"…"[,"thinking":"…"]}.
 * Building a cJSON object and printing it cost ~13 % of the daemon's CPU on a
 * 64 MiB reply (escaping, and the printer's growing buffer), so the record is
 * printed here, byte for byte as cJSON_PrintUnformatted() prints the same object
 * (tests/unit/test_reply_part.c and the reply_part fuzz target compare the two;
 * a turn number from 10^15 on, which cJSON would print with an exponent, keeps
 * its digits here and parses to the same number);
 * it is read back with cJSON like every other record.
 */
#ifndef MCPFS_REPLY_PART_H
#define MCPFS_REPLY_PART_H

#include <stddef.h>
#include <stdint.h>

/* A reusable output buffer: freed with free(data). */
struct reply_part_buf {
	char *data;
	size_t cap;
};

/* Prints the record for text[0..tn) and thinking[0..hn) (thinking omitted when
 * hn is 0) into out; returns its length, or -ENOMEM (out is unchanged then). */
long reply_part_print(struct reply_part_buf *out, uint64_t turn, unsigned attempt,
		      const char *text, size_t tn, const char *thinking, size_t hn);

#endif
