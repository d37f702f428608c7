/* storage_copy.h — copies every context of one storage engine into another
 * (`mcpfs --store=URL --import=DIR`, CONTRACT §12; doc/design/shared-store.md
 * §6 "Import" is the normative description).  Engine-neutral: it only calls
 * storage.h, so it runs between any two engines (the state dir, PostgreSQL,
 * the in-memory engine of the unit tests).
 *
 * Per context of `from` (storage_list order), by name:
 *  - not in `to`: created there with the same CREATE record and created_ms,
 *    then every later record appended in order (seq i of `from` becomes seq i
 *    of `to`; a different seq is -EPROTO);
 *  - in `to` with a byte-identical CREATE record and the record at `to`'s last
 *    seq identical to `from`'s record of that seq: the same context, copied
 *    before — resumed after that seq (nothing to do when it has them all).  So
 *    an import run again is idempotent, and one that was stopped (a crash, the
 *    database gone) goes on where it stopped;
 *  - in `to` otherwise (another context of that name, or one changed in `to`
 *    since it was copied): left alone on both sides and reported (a skip);
 *  - no CREATE record as its first (an empty or damaged journal): reported, skipped.
 * Records are appended without STORAGE_COMMIT and committed every
 * STORAGE_COPY_COMMIT_EVERY records and at each context's last one, so what is
 * in `to` is always a prefix of the context (storage.h's ordering rule).
 *
 * Then the context's attachment blobs (storage.h's blob_* ops, when both
 * engines have them): every blob it holds in `from` is put into `to`, which
 * does not write again a content it holds (so a resumed or repeated import
 * finishes them too).
 *
 * Memory: one record's payload at a time, plus two for the comparisons (each at
 * most STORAGE_MAX_RECORD), plus the listing of `from` (names and ids), plus
 * one blob at a time (at most STORAGE_MAX_BLOB) and the list of its hashes.
 * Nothing here logs: each context's outcome goes to `note` as one line.
 */
#ifndef MCPFS_STORAGE_COPY_H
#define MCPFS_STORAGE_COPY_H

#include <stdint.h>

#include "mcpfs/storage.h"

#define STORAGE_COPY_COMMIT_EVERY 1000 /* records between commits */
#define STORAGE_COPY_BATCH 256	       /* records per storage_load() call */

enum storage_copy_outcome {
	STORAGE_COPY_COPIED,  /* created in `to` and copied whole */
	STORAGE_COPY_RESUMED, /* it was there in part; the rest was appended */
	STORAGE_COPY_PRESENT, /* it was there whole already */
	STORAGE_COPY_SKIPPED, /* left alone (the line says why) */
};

struct storage_copy_report {
	uint64_t copied, resumed, present, skipped; /* contexts, per outcome */
	uint64_t records;			    /* records appended to `to` */
};

/* One line per context: its name, its outcome, and for a skip why, e.g. "the
 * name is taken in the store by another context". */
typedef void storage_copy_note_fn(void *data, const char *name, enum storage_copy_outcome what,
				  const char *why);

/* Copies as above.  0 when every context was handled (skips included: see
 * rep->skipped); a negative errno of either engine (-EIO: unreachable, -ENOMEM,
 * -EPROTO) stops it, with why naming the context it was at.  note may be NULL. */
int storage_copy(struct storage *from, struct storage *to, storage_copy_note_fn *note, void *data,
		 struct storage_copy_report *rep, char *why, size_t whylen);

/* A read-only engine over a state directory's journals, the source of an
 * import: STATE/contexts/NAME/journal, seq i = the i-th valid record (a torn
 * tail or a corrupt record is left out, as a load would).  The directory is
 * locked (flock, as a daemon locks it) for the engine's life: -EBUSY with why
 * "... is in use by a running mcpfs" when a daemon holds it.  Only list, load
 * and free; every other op is -ENOTSUP.  -ENOENT (no such state dir, or no
 * contexts/ in it), -errno. */
int storage_journal_dir_open(const char *dir, char *why, size_t whylen, struct storage **ret);

#endif
