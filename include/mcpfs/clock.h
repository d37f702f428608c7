/* clock.h — time helpers.  Thread-safe. */
#ifndef MCPFS_CLOCK_H
#define MCPFS_CLOCK_H

#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC: for timeouts and intervals. */
int64_t clock_mono_ms(void);

/* Milliseconds since the Unix epoch (CLOCK_REALTIME): for timestamps shown to users. */
int64_t clock_wall_ms(void);

/* Formats a wall-clock time as RFC 3339 UTC ("2026-11-21T12:00:00Z") into out. */
void clock_format_utc(int64_t wall_ms, char out[32]);

#endif
