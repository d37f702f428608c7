/* journal_impl.h — what journal.c (framing, scanning) and journal_write.c
 * (appending, syncing, recovering) share.  Private to those two files. */
#ifndef MCPFS_CORE_JOURNAL_IMPL_H
#define MCPFS_CORE_JOURNAL_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <xxhash.h>

#include "mcpfs/journal.h"

#define HDR_SIZE 16u
#define SUM_SIZE 8u

/* Owned by one context; the store's lock serialises every call.  While busy (a
 * sync runs without that lock, journal_sync_begin() to journal_sync_end()), the
 * syncing thread alone reads fd and synced, and nobody writes any field. */
struct journal {
	int fd;		   /* O_RDWR | O_APPEND; -1 while parked */
	uint64_t size;	   /* bytes; end of the last record written */
	uint64_t synced;   /* bytes made durable by the last successful sync */
	uint64_t kicked;   /* writeback started (or synced) up to here */
	bool no_kick;	   /* sync_file_range(2) is refused here */
	bool busy;	   /* a sync runs without the owner's lock */
	bool orphan;	   /* freed by its owner while busy */
	int failed;	   /* 0, or the -errno that made appends stop */
	XXH3_state_t *xxh; /* reused by every append */
};

static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The 16 header bytes of a record of len payload bytes. */
void journal_header(uint16_t type, size_t len, uint8_t hdr[HDR_SIZE]);

/* journal_scan() on an open descriptor (a regular file; -EINVAL otherwise). */
int journal_scan_fd(int fd, journal_record_fn *fn, void *data, struct journal_report *rep);

#endif
