/* prune.h — which history fits in the token budget.
 *
 * The history that a call sends is the system prompt, then the newest complete
 * exchanges (a user message and its reply) that fit, then the new message.
 * Exchanges are dropped whole and oldest first, so the first message sent is
 * always a user message and roles alternate.
 *
 * Token counts are estimated from bytes (prune_estimate) and calibrated with a
 * ratio learned from the input_tokens the API reports (prune_calibrate).  The
 * index keeps prefix sums, so a decision is a binary search, not a rescan.
 * When pruning is needed it cuts down to a low-water mark (a fraction of the
 * budget) rather than to the last exchange that fits, so that the prefix sent
 * stays byte-identical for many turns and prompt caching keeps hitting.
 *
 * Pure data structure; the owner serialises access.
 */
#ifndef MCPFS_PRUNE_H
#define MCPFS_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#define PRUNE_LOW_WATER 0.75 /* fraction of the budget kept after a cut */

struct prune_index {
	int64_t *sum; /* sum[i]: raw tokens of exchanges 0..i-1; sum[0] = 0 */
	size_t n;     /* exchanges indexed */
	size_t cap;
	size_t floor; /* first exchange kept by the last decision */
	double ratio; /* calibration: API tokens per estimated token; starts at 1.0 */
};

void prune_index_init(struct prune_index *p);
void prune_index_done(struct prune_index *p);

/* Forgets all exchanges (after a clear); keeps the ratio. */
void prune_index_reset(struct prune_index *p);

/* Appends one exchange of raw estimated tokens.  0, -ENOMEM. */
int prune_index_push(struct prune_index *p, int64_t raw_tokens);

/* Takes the newest exchange off again (its reply is being regenerated); the
 * floor stays at most the new count.  No-op on an empty index. */
void prune_index_pop(struct prune_index *p);

/* Raw token estimate of one message's text (bytes/3 rounded up, plus a per-message
 * overhead).  Deliberately pessimistic until calibrated. */
int64_t prune_estimate(size_t bytes);

/* Decides the first exchange to send ahead of a new message whose raw estimate,
 * together with the system prompt's, is fixed_raw.  Returns the index (p->n when
 * no exchange fits), and remembers it as the floor: later decisions never go
 * below the floor, and move it only when the kept part no longer fits, then to
 * the low-water mark.  -EFBIG when fixed_raw alone exceeds the budget. */
int64_t prune_decide(struct prune_index *p, int64_t fixed_raw, int64_t budget);

/* Same, without moving the floor (for rendering `history`). */
int64_t prune_peek(const struct prune_index *p, int64_t fixed_raw, int64_t budget);

/* Calibrated tokens of raw estimated tokens. */
int64_t prune_tokens(const struct prune_index *p, int64_t raw);

/* Learns from a call: raw_sent is the raw estimate of what was sent, api_tokens
 * what the API counted (input + cache creation + cache read).  A higher ratio is
 * taken at once, a lower one averaged in; clamped to [0.2, 5]. */
void prune_calibrate(struct prune_index *p, int64_t raw_sent, int64_t api_tokens);

#endif
