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

#include "mcpfs/buf.h"

/* Room a record may need: every byte escaped as \u00xx, and the keys. */
#define REPLY_PART_SIZE(tn, hn) (6 * (tn) + 6 * (hn) + 128)

/* Prints the record for text[0..tn) and thinking[0..hn) (thinking omitted when
 * hn is 0) into out, replacing its content.  0, or -EFBIG past out's cap
 * (REPLY_PART_SIZE gives enough), -ENOMEM; out is emptied on failure. */
int reply_part_print(struct buf *out, uint64_t turn, unsigned attempt, const char *text, size_t tn,
		     const char *thinking, size_t hn);

#endif
