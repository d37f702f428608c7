/* journal.h — one context's append-only, checksummed record file.
 *
 * A journal is a sequence of records, each framed with its length and an XXH3-64
 * checksum (doc/design/journal.md is the normative format).  This module knows
 * framing only: payloads are opaque bytes (record.h owns their types and JSON).
 * Appends go to the end with one write(2); journal_append(..., sync=true) also
 * fsyncs, which is how a commit becomes durable.
 *
 * Reading is tolerant: journal_scan() walks every record, skips a corrupt record
 * in the middle (resynchronising on the next valid frame) and reports a torn or
 * corrupt tail; journal_open() with JOURNAL_REPAIR truncates that tail so new
 * records follow the last good one.  A bad record never makes the rest unreadable.
 *
 * Users: the state-dir engine (storage_dir*.c, the owner), storage_jdir.c (an
 * import's source, read only), record.c (JOURNAL_MAX_RECORD) and
 * mcpfs-journal-dump; the rest of the core goes through storage.h.
 *
 * Not thread-safe: the owner (called under the store's lock) serialises calls, with
 * one exception: journal_sync_run(), which runs without that lock between
 * journal_sync_begin() and journal_sync_end() so that a slow fsync of one journal
 * does not hold the owner's lock (doc/design/threads.md).
 */
#ifndef MCPFS_JOURNAL_H
#define MCPFS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpfs/record_type.h" /* the record types; record.h owns their payloads */

#define JOURNAL_MAX_RECORD (64u << 20) /* payload bytes; larger appends get -EFBIG */

/* What a scan found.  Offsets are byte offsets in the file. */
struct journal_report {
	uint64_t records;	/* valid records delivered */
	uint64_t bad_records;	/* corrupt records skipped in the middle */
	uint64_t skipped_bytes; /* bytes of those */
	uint64_t good_end;	/* end of the last valid record: where appends go */
	uint64_t torn_bytes;	/* bytes after good_end that form no valid record */
};

/* Called for each valid record in file order; payload lives until return.  A
 * negative return stops the scan, which returns it. */
typedef int journal_record_fn(void *data, uint16_t type, const void *payload, size_t len,
			      uint64_t offset);

/* Scans the file at path (fd opened read-only inside).  0, -ENOENT, -EIO on a
 * read error, or fn's negative value.  The report is filled in every case. */
int journal_scan(const char *path, journal_record_fn *fn, void *data, struct journal_report *rep);

/* Scans the records that lie whole in the last tail bytes of the file (all of
 * it when smaller): the scan starts at the first valid record there.  The
 * report covers that part.  For a look at a journal's end without reading it
 * all.  Same returns as journal_scan(). */
int journal_scan_tail(const char *path, uint64_t tail, journal_record_fn *fn, void *data,
		      struct journal_report *rep);

/* Scans an in-memory image (same rules; for tests and fuzzing). */
int journal_scan_mem(const void *mem, size_t n, journal_record_fn *fn, void *data,
		     struct journal_report *rep);

struct journal;

#define JOURNAL_CREATE_NEW 1u /* create the file; -EEXIST if it exists */
#define JOURNAL_REPAIR 2u     /* truncate a torn tail to rep->good_end */

/* Opens path for appending after the last valid record (flags above).  When
 * JOURNAL_REPAIR truncates, that is reported in rep (may be NULL).  The file and,
 * for a new file, its directory are fsynced before returning.  0, -errno. */
int journal_open(const char *path, unsigned flags, struct journal_report *rep,
		 struct journal **ret);

/* Creates path (-EEXIST if it exists) holding one first record, then fsyncs
 * the file and its directory once each: the name, the file and the record are
 * durable together on return.  On failure nothing is left at path.  0, -EFBIG,
 * -ENOSPC, -errno. */
int journal_create(const char *path, uint16_t type, const void *payload, size_t len,
		   struct journal **ret);

/* Appends one record; with sync, fsyncs before returning.  On a failed or short
 * write the file is truncated back to its previous end, so a failed append leaves
 * no partial record.  0, -EFBIG (payload over JOURNAL_MAX_RECORD), -ENOSPC, -EIO,
 * -EBUSY (a sync runs, see below), -EBADF (parked), -errno. */
int journal_append(struct journal *j, uint16_t type, const void *payload, size_t len, bool sync);

/* fsyncs what was appended without sync, with the owner's lock held.  0, -EBUSY,
 * -EBADF, -errno. */
int journal_sync(struct journal *j);

/* Bytes in the file (the offset of the next record). */
uint64_t journal_size(const struct journal *j);

/* Bytes the last successful sync made durable (<= journal_size). */
uint64_t journal_synced(const struct journal *j);
bool journal_busy(const struct journal *j);   /* a sync runs without the owner's lock */
int journal_failed(const struct journal *j);  /* 0, or the -errno that stopped appends */
bool journal_parked(const struct journal *j); /* its descriptor is closed */

/* A sync in three steps, for an owner that releases its lock meanwhile:
 *  - journal_sync_begin() (owner's lock held): 1 when there is something to sync:
 *    the journal is then busy until journal_sync_end() — appends, syncs and parks
 *    fail with -EBUSY, and journal_free() only marks it for journal_sync_end() to
 *    free.  0 when everything is durable already; -EBUSY (another sync runs),
 *    -EBADF (parked), or the -errno of a failed journal.
 *  - journal_sync_run() (lock released): fdatasync(2).  When that fails, the
 *    journal is recovered at path: reopened, truncated to what the last good sync
 *    covered (after a failed fsync, what the kernel kept of the rest is unknown),
 *    rescanned (a torn tail truncated) and synced again.
 *  - journal_sync_end() (lock held): 0 when the records appended before begin are
 *    durable; the failed sync's -errno otherwise, after which every record past the
 *    old synced offset is gone and the journal takes appends again when the
 *    recovery worked (journal_failed() == 0); -ESTALE when the owner freed it
 *    meanwhile (it is freed now: do not touch it). */
struct journal_sync {
	int fd;		 /* the descriptor to sync */
	uint64_t target; /* journal size at begin */
	uint64_t keep;	 /* synced offset at begin: where a recovery truncates to */
	int err;	 /* the sync's outcome */
	int new_fd;	 /* the recovered descriptor, or -1 */
	uint64_t new_size;
	int recover_err;
};
int journal_sync_begin(struct journal *j, struct journal_sync *t);
void journal_sync_run(struct journal_sync *t, const char *path);
int journal_sync_end(struct journal *j, const struct journal_sync *t);

/* Recovers a failed journal the same way (reopen at path, truncate to the synced
 * offset, rescan, sync).  0, -EBUSY, -errno (it stays failed). */
int journal_recover(struct journal *j, const char *path);

/* Closes the descriptor to keep descriptors bounded; journal_unpark() reopens
 * path, which must still have journal_size() bytes (-EIO and the journal fails
 * otherwise).  Appends and syncs of a parked journal fail with -EBUSY/-EBADF.
 * 0, -EBUSY (a sync runs), -errno. */
int journal_park(struct journal *j);
int journal_unpark(struct journal *j, const char *path);

/* Closes the file.  NULL-safe.  A busy journal is freed by journal_sync_end(). */
void journal_free(struct journal *j);

/* Builds one framed record into a caller buffer (for tests and fixtures).
 * Returns the frame size; out must hold journal_frame_size(len) bytes. */
size_t journal_frame_size(size_t len);
size_t journal_frame(uint16_t type, const void *payload, size_t len, void *out);

#endif
