/* ctl.h — the ctl commands of a context, parsed and run in one place.
 *
 * Every adapter that offers them calls ctl_run(): the fs's `ctl` file (one
 * command a line), the MCP tool `ctl` (its `command` argument, with fork's
 * `name` and `turn` made into the line), the shim's POST
 * /v1/contexts/{name}/ctl (a line) and POST /v1/contexts/{name}/cancel (the
 * word "cancel").  So the words, what each does and the errors a user reads
 * are the same everywhere.
 * The commands themselves are context_cancel, context_clear, context_retry,
 * context_fork and context_undo (store.h); this module only parses and
 * dispatches.
 */
#ifndef MCPFS_CTL_H
#define MCPFS_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "mcpfs/store.h"

/* Every command, one a line, "word\tsentence\n", in the order ctl_run knows
 * them (what reading the `ctl` file shows). */
extern const char ctl_help[];

/* Runs one command line on context id.  Spaces, tabs and a CR around the word
 * are ignored; a line of nothing else does nothing (returns 0).  The line need
 * not be NUL-terminated.  "fork NEW [TURN]" takes its words separated by
 * blanks: NEW one word, TURN digits (at most 19).
 *
 * Returns 1 for a cancel that ended a call in flight, 0 for any other success;
 * *done (when done is not NULL) then points to a static sentence saying what
 * happened ("cancelled the call in flight", "nothing to cancel: no call is in
 * flight", "cleared the history", "sent the newest message again", "created
 * the fork", "took the newest exchange out of the history", "nothing to do:
 * the line is empty").
 * `compact [FOCUS TEXT]` takes the rest of the line as its focus
 * (context_compact).
 * Errors: -EINVAL for an unknown command (why: "unknown command 'WORD' (cancel,
 * clear, retry, compact, fork, undo)" -- the words of ctl_help --, WORD quoted
 * as log_quote does, or "(not UTF-8 text)"), a fork line that is not "fork NEW
 * [TURN]" (why: "usage: ..." or "fork: TURN must be a turn number, not ..."),
 * a retry with nothing to retry (why from context_retry: "nothing to retry:
 * ..."); -ENAMETOOLONG for a fork's NEW over 255 bytes; -ENOENT when there is
 * no context id; another negative errno from context_clear, context_retry,
 * context_compact, context_fork (-EEXIST...) or context_undo (why then says
 * it, or is left as it was). */
int ctl_run(struct store *s, uint64_t id, const char *line, size_t len, const char **done,
	    char *why, size_t whylen);

#endif
