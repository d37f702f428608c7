/* record_type.h — the numbers of the journal's record types (record.h owns
 * their payloads; doc/design/journal.md §4 is the normative table).  A number is
 * the format: never reuse one.  Kept apart so that journal.h, which frames
 * records, can name them without knowing their payloads.
 */
#ifndef MCPFS_RECORD_TYPE_H
#define MCPFS_RECORD_TYPE_H

enum journal_record_type {
	JOURNAL_CREATE = 1,	/* first record: creation time and initial settings */
	JOURNAL_SETTINGS = 2,	/* full settings snapshot; the last one wins */
	JOURNAL_USER = 3,	/* a user message of a turn (a later one for the same
				   turn replaces it) */
	JOURNAL_REPLY_PART = 4, /* checkpoint: reply text received so far (appended) */
	JOURNAL_REPLY_END = 5,	/* a reply attempt's end: outcome, usage, content */
	JOURNAL_CLEAR = 6,	/* the conversation was cleared */
	JOURNAL_RETRY = 7,	/* a new attempt of a turn was asked for (ctl retry) */
	JOURNAL_BLOCK = 8,	/* one complete block of a reply other than plain text */
	JOURNAL_SUMMARY = 9,	/* the rolling summary (text, turns covered); the last wins */
	JOURNAL_UNDO = 10,	/* a turn was taken out of the history (ctl undo) */
	/* a fork's origin: the context and turn it copied (ctl fork) */
	JOURNAL_FORKED_FROM = 11,
	JOURNAL_META = 12,   /* the context's user metadata, whole; the last one wins */
	JOURNAL_ATTACH = 16, /* a file of attach/ was saved as a blob (store_attach.h) */
	JOURNAL_DETACH = 17, /* a file of attach/ was removed */
};

#endif
