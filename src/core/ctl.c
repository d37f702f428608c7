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
    "say what to keep)\n"
    "fork\tfork NEW [TURN]: a new context NEW with these settings and the history up to TURN\n"
    "undo\ttake the newest complete exchange out of the history (the transcript keeps it)\n";

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

static bool word_is(const char *p, size_t n, const char *word)
{
	return n == strlen(word) && memcmp(p, word, n) == 0;
}

/* The words of ctl_help, "cancel, clear, ...", into out. */
static void ctl_words(char *out, size_t n)
{
	size_t o = 0;
	out[0] = '\0';
	for (const char *p = ctl_help; *p && o < n;) {
		size_t w = strcspn(p, "\t");
		o += (size_t)snprintf(out + o, n - o, "%s%.*s", o ? ", " : "", (int)w, p);
		p += strcspn(p, "\n");
		p += *p == '\n';
	}
}

/* The next blank-separated word of [*p, end): its start, *n its length. */
static const char *next_word(const char **p, const char *end, size_t *n)
{
	while (*p < end && is_blank(**p))
		(*p)++;
	const char *w = *p;
	while (*p < end && !is_blank(**p))
		(*p)++;
	*n = (size_t)(*p - w);
	return w;
}

/* "fork NEW [TURN]" after the word: NEW is one word, TURN a turn number. */
static int ctl_fork(struct store *s, uint64_t id, const char *p, const char *end, char *why,
		    size_t whylen)
{
	size_t nl, tl, xl;
	const char *name = next_word(&p, end, &nl), *turn = next_word(&p, end, &tl);
	next_word(&p, end, &xl);
	if (!nl || xl) {
		snprintf(why, whylen,
			 "usage: fork NEW [TURN] (NEW a name without blanks, "
			 "TURN a turn number)");
		return -EINVAL;
	}
	char copy[STORE_NAME_MAX + 1];
	if (nl > STORE_NAME_MAX || memchr(name, '\0', nl)) {
		snprintf(why, whylen, "invalid name for the fork: %s",
			 nl > STORE_NAME_MAX ? "longer than 255 bytes" : "a name cannot hold NUL");
		return nl > STORE_NAME_MAX ? -ENAMETOOLONG : -EINVAL;
	}
	memcpy(copy, name, nl);
	copy[nl] = '\0';
	uint64_t upto = CONTEXT_FORK_ALL;
	if (tl) {
		bool digits = tl <= 19;
		upto = 0;
		for (size_t i = 0; digits && i < tl; i++) {
			digits = turn[i] >= '0' && turn[i] <= '9';
			upto = upto * 10 + (uint64_t)(turn[i] - '0');
		}
		if (!digits) {
			char quoted[80] = "(not UTF-8 text)";
			if (!memchr(turn, '\0', tl) && utf8_valid(turn, tl))
				log_quote(quoted, sizeof(quoted), turn, tl);
			snprintf(why, whylen, "fork: TURN must be a turn number, not '%s'", quoted);
			return -EINVAL;
		}
	}
	return context_fork(s, id, copy, upto, why, whylen);
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
	size_t n = (size_t)(end - p), first = 0;
	while (first < n && !is_blank(p[first]))
		first++;
	/* compact's argument: the rest of the line after the word's blanks. */
	const char *arg = p + first;
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
	} else if (word_is(p, first, "compact")) {
		r = context_compact(s, id, arg, (size_t)(end - arg), why, whylen);
		said = "summarizing: every exchange but the newest 2 is being folded into the "
		       "summary";
	} else if (word_is(p, first, "fork")) {
		r = ctl_fork(s, id, p + first, end, why, whylen);
		said = "created the fork";
	} else if (word_is(p, n, "undo")) {
		r = context_undo(s, id, why, whylen);
		said = "took the newest exchange out of the history";
	} else {
		char quoted[80] = "(not UTF-8 text)", words[128];
		if (memchr(p, '\0', n) == NULL && utf8_valid(p, n)) /* why is always text */
			log_quote(quoted, sizeof(quoted), p, n);
		ctl_words(words, sizeof(words));
		snprintf(why, whylen, "unknown command '%s' (%s)", quoted, words);
		return -EINVAL;
	}
	if (r >= 0 && done)
		*done = said;
	return r;
}
