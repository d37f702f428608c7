/* block_impl.h — every block of a reply, beside its text (block.c).
 *
 * A reply's text (what `output` shows) and its thinking (what `thinking`
 * shows) stream into two buffers of the turn and are saved in REPLY_PART
 * records.  Everything else of a reply is a list of blocks in the order the
 * API sent them, each placed in those two streams by offsets: a thinking block
 * (its signature; its text is thinking[thinking_at, thinking_end)), a redacted
 * one (its data; the thinking stream holds "[redacted]" for it), a text block
 * with citations (its citations; its text is text[text_at, text_end)), and any
 * other block (tool use, server tool use and results, types this version does
 * not know) whole, as JSON.  A text block without citations has no entry: it
 * is the text between the entries.  Each complete entry is saved in one BLOCK
 * record (doc/design/journal.md) once the text and thinking before it are.
 *
 * Under the store lock, like struct reply.
 */
#ifndef MCPFS_CORE_BLOCK_IMPL_H
#define MCPFS_CORE_BLOCK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpfs/buf.h"
#include "mcpfs/record.h"
#include "mcpfs/wire.h"

struct cJSON;
struct reply;
struct context;

#define BLOCK_INPUT_MAX (16u << 20) /* bytes of one tool block's input JSON */
#define BLOCKS_MAX (256u << 20)	    /* bytes of block events of one reply */
#define BLOCK_REDACTED "[redacted]" /* what `thinking` shows of redacted thinking */

enum tblock_kind { TB_TEXT, TB_THINKING, TB_REDACTED, TB_OTHER };

struct tblock {
	enum tblock_kind kind;
	int index;  /* the API's index in its call */
	bool open;  /* its content_block_stop has not come yet */
	bool saved; /* in a BLOCK record */
	size_t text_at, text_end, thinking_at, thinking_end;
	struct cJSON *json; /* the block without its text or thinking */
	struct buf partial; /* while open: the input_json_delta pieces */
	size_t bytes;	    /* of its JSON once printed (the pruning estimate) */
};

struct reply_blocks {
	struct tblock *v;
	size_t n, cap;
	size_t saved;	   /* v[0..saved) are in BLOCK records */
	size_t call_first; /* the first block of the current call (pause_turn) */
	int text_index;	   /* the open text block's index, -1 none */
	size_t text_start; /* the text's length when that block began */
	size_t received;   /* bytes of block events (BLOCKS_MAX) */
};

/* What blocks_json() gives. */
enum blocks_mode {
	BLOCKS_ALL,	/* transcript.json: every block, text and thinking included */
	BLOCKS_HISTORY, /* a reply in a later request: NULL when plain text says
			   it all (no citations, no server tool blocks) */
	BLOCKS_RESUME,	/* the paused reply sent back to be continued (pause_turn) */
};

void blocks_init(struct reply_blocks *b);
void blocks_done(struct reply_blocks *b);
/* A retried call's blocks are dropped (those of earlier calls stay). */
void blocks_drop_call(struct reply_blocks *b);

/* A block event of the stream (BLOCK_START, BLOCK_STOP, and deltas that are
 * neither text nor thinking).  0, -ENOMEM, -E2BIG (a tool's input over
 * BLOCK_INPUT_MAX, or the reply's block events over BLOCKS_MAX), -EFBIG (the
 * thinking over STORE_REPLY_MAX). */
int blocks_event(struct reply *t, const struct wire_event *ev);

/* The message ended (message_stop): a block it left open (cut off by
 * max_tokens) ends with it, its input what its pieces make ({} when they make
 * no JSON), as the SDKs keep it. */
void blocks_finish(struct reply *t);

/* Appends a BLOCK record for each complete block not saved yet, in order, up
 * to the first one still open.  0 or the append's -errno. */
int blocks_save(struct context *c, struct reply *t);

/* The payload of block k's BLOCK record as a part of attempt `attempt` of
 * turn `turn`, appended to rec.  0, -ENOMEM, -EFBIG (rec's cap). */
int block_payload(const struct tblock *k, uint64_t turn, unsigned attempt, struct buf *rec);

/* A BLOCK record read back (payload o): 0, or -EINVAL when it is not one
 * (misplaced: not in order, or past the text and thinking read so far). */
int blocks_load(struct reply *t, const struct cJSON *o, size_t payload_len);
/* The same from a decoded BLOCK record (record.h). */
int blocks_load_record(struct reply *t, const struct record_block *r, size_t payload_len);

/* The reply's content as a JSON array of Messages-API blocks; NULL for none
 * (BLOCKS_HISTORY: when the text alone says it all) or -ENOMEM. */
struct cJSON *blocks_json(const struct reply *t, enum blocks_mode mode);

/* Bytes the history's form of the reply adds to its text (pruning). */
size_t blocks_bytes(const struct reply *t);

/* Appends the transcript's lines for the blocks (tool use, results,
 * citations, redacted thinking, unknown types): none when there are none. */
int blocks_render(const struct reply *t, struct buf *out);

#endif
