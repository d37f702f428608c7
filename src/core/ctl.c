/* ctl.c — the ctl commands' words, parsed and dispatched (ctl.h). */
#include "mcpfs/ctl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mcpfs/log.h"
#include "mcpfs/utf8.h"

/* Every command ctl_run() knows, in its order (a new command adds its line
 * here, a branch below, and its word to the MCP tool's enum in mcp_tools.c). */
const char ctl_help[] =
    "cancel\tend the call in flight; queued messages are sent next\n"
    "clear\tstart an empty history (the transcript keeps everything)\n"
    "retry\tsend the newest message again: after a failure, or to regenerate the reply\n"
    "compact\tfold every exchange but the newest 2 into the summary now (compact FOCUS TEXT: "
    "say what to keep)\n";

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

static bool word_is(const char *p, size_t n, const char *word)
{
	return n == strlen(word) && memcmp(p, word, n) == 0;
}

int ctl_run(struct store *s, uint64_t id, const char *line, size_t len, const char **done,
	    char *why, size_t whylen)
{
	const char *p = line, *end = line + len, *said = "nothing to do: the line is empty";
	int r = 0;
	while (p < end && is_blank(*p))
		p++;
	while (end > p && is_blank(end[-1]))
		end--;
	size_t n = (size_t)(end - p);
	/* Words that take an argument: the rest of the line after a blank. */
	const char *arg = p;
	while (arg < end && !is_blank(*arg))
		arg++;
	size_t wn = (size_t)(arg - p);
	while (arg < end && is_blank(*arg))
		arg++;
	if (n == 0) {
		/* ignored, as a blank line of the ctl file */
	} else if (word_is(p, n, "cancel")) {
		r = context_cancel(s, id);
		if (r < 0)
			r = -ENOENT;
		said = r == 1 ? "cancelled the call in flight"
			      : "nothing to cancel: no call is in flight";
	} else if (word_is(p, n, "clear")) {
		r = context_clear(s, id);
		said = "cleared the history";
	} else if (word_is(p, n, "retry")) {
		r = context_retry(s, id, why, whylen);
		said = "sent the newest message again";
	} else if (word_is(p, wn, "compact")) {
		r = context_compact(s, id, arg, (size_t)(end - arg), why, whylen);
		said = "summarizing: every exchange but the newest 2 is being folded into the "
		       "summary";
	} else {
		char quoted[80] = "(not UTF-8 text)";
		if (memchr(p, '\0', n) == NULL && utf8_valid(p, n)) /* why is always text */
			log_quote(quoted, sizeof(quoted), p, n);
		snprintf(why, whylen, "unknown command '%s' (cancel, clear, retry, compact)",
			 quoted);
		return -EINVAL;
	}
	if (r >= 0 && done)
		*done = said;
	return r;
}
