/* record.h — the journal's record types and their payloads, in one place.
 *
 * journal.h frames records; this module owns what is inside them: the record
 * types (record_type.h: their numbers are the format, never reuse one), each
 * type's struct, its encoder (what the writers call), its decoder and the
 * validation the loader applies before it looks at the context, an
 * attachment's too (record_attachment_fields) (doc/design/journal.md §4 is the
 * normative table, §5 the loader rules).  Limits that are a module's own stay
 * there: META's (meta.c keeps a set within them).
 * record.c holds all of it but REPLY_PART's printer, record_part.c.
 *
 * Decoding: record_decode() checks that the payload is UTF-8 and one JSON
 * object (a \u0000 in a string is a NUL inside it, json_nul.h), then reads the
 * type's keys into struct record.  Keys it does not know are ignored.  Numbers
 * are read as whole numbers from 0 to 2^53 (RECORD_ABSENT otherwise, §5 rule 7).
 * What it rejects (-EINVAL) the loader skips and counts as a bad record; what
 * only the context's state can judge (a misplaced part, a block past its text)
 * stays with the loader.
 *
 * Adding a record type: a number in record_type.h, its name in
 * record_type_name(), a struct here, a case in record.c's decoder and an
 * encoder, lines in tests/unit/test_record.c; the loader's apply step and the
 * writer that calls the encoder are behaviour, not format.
 *
 * Pure functions over caller-owned memory (cJSON and libc); thread-safe.
 */
#ifndef MCPFS_RECORD_H
#define MCPFS_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpfs/buf.h"
#include "mcpfs/record_type.h"
#include "mcpfs/wire.h"

struct cJSON;

/* The name of a type ("CREATE" ...), NULL for a type this version does not know. */
const char *record_type_name(uint16_t type);

#define RECORD_ABSENT (-1) /* a number that is absent, or no whole number 0 to 2^53 */

/* Strings point into the decoded payload (struct record owns it) and are
 * NUL-terminated; their length counts the NULs inside.  NULL: absent or not a
 * string. */

struct record_settings {	      /* CREATE, SETTINGS */
	const struct cJSON *settings; /* the settings object (settings_from_json), or NULL */
	const char *system;
	size_t system_len;
	const char *schema;
	size_t schema_len;
	int64_t v, created_ms; /* CREATE's */
};

struct record_user { /* USER: rejected without a turn >= 1 or a text */
	uint64_t turn;
	const char *text;
	size_t text_len;
	int64_t ms;
	const struct cJSON *attach; /* the "attach" array (store_attach.c), or NULL */
};

struct record_part { /* REPLY_PART */
	int64_t turn, attempt;
	const char *text, *thinking;
	size_t text_len, thinking_len;
};

struct record_end { /* REPLY_END */
	int64_t turn, attempt;
	bool done;	/* "state" is "done" (anything else: failed) */
	bool cache_hit; /* "cache_hit" is true */
	bool has_usage; /* "usage" is an object */
	bool has_error; /* "error" is an object */
	const char *stop_reason, *request_id, *model;
	const char *error_type, *error_message, *error_request_id;
	int64_t error_http_status;
	struct wire_usage usage; /* the counts "usage" has (present bits) */
	int64_t raw_sent, http_status, retries, request_bytes, request_us, text_bytes, first_turn;
};

struct record_clear { /* CLEAR */
	int64_t turn;
};

struct record_retry { /* RETRY */
	int64_t turn, attempt, ms;
};

struct record_block { /* BLOCK: the ranges and the block are judged with the
			 attempt they belong to (blocks_load) */
	int64_t turn, attempt;
	int64_t text_at, text_end, thinking_at, thinking_end;
	const struct cJSON *block; /* NULL when "block" is no object */
	const char *block_type;	   /* its string "type", or NULL */
};

/* BLOCK's keys read from o (also the response cache's copy of a block). */
void record_block_fields(const struct cJSON *o, struct record_block *b);

struct record_summary { /* SUMMARY: rejected without a text, with first_turn
			   absent or above last_turn, or a text over SUMMARY_MAX */
	const char *text;
	size_t text_len;
	uint64_t first_turn, last_turn;
	const char *by, *model;
	int64_t ms;
	bool has_usage; /* "usage" is an object: a summary call's */
	struct wire_usage usage;
};

struct record_undo { /* UNDO: rejected without a turn >= 1 */
	uint64_t turn;
	int64_t ms;
};

struct record_forked_from { /* FORKED_FROM: rejected when context is no valid
			       name or turn is absent */
	const char *context;
	uint64_t turn;
	int64_t ms;
};

struct record_meta {		  /* META: meta.c keeps the string values within its limits */
	const struct cJSON *meta; /* the "meta" object, NULL when absent or no object */
};

struct record_attach { /* ATTACH, DETACH: one without a string name is ignored,
			  not bad; the rest is judged by record_attachment_fields */
	const char *name;
	const char *type, *hash; /* ATTACH's; NULL: absent */
	int64_t size, tokens, ms;
	const struct cJSON *payload; /* the whole payload object */
};

/* One attachment as an ATTACH record and each item of a USER's "attach" list
 * carry it, validated against attach.h's rules and limits. */
struct record_attachment {
	const char *name; /* a valid attach/ name (attach_name_check) */
	int type;	  /* enum attach_type, never ATTACH_UNDECIDED */
	uint64_t size;	  /* at most ATTACH_FILE_MAX */
	const char *hash; /* 32 lowercase hex digits (attach_hash_valid) */
	int64_t tokens;	  /* a number from 0 below 10^12 (its whole part), else RECORD_ABSENT */
};

/* The attachment the object o holds (an ATTACH payload or an item of USER's
 * "attach"); the strings point into o.  0, or -EINVAL when its name, type,
 * size or hash is missing or not valid: it is no attachment, and is left out. */
int record_attachment_fields(const struct cJSON *o, struct record_attachment *a);

struct record {
	uint16_t type;
	struct cJSON *json; /* the parsed payload */
	struct buf hidden;  /* the payload with its \u0000 as marks (json_nul.h) */
	bool nul_hidden;
	union {
		struct record_settings settings;
		struct record_user user;
		struct record_part part;
		struct record_end end;
		struct record_clear clear;
		struct record_retry retry;
		struct record_block block;
		struct record_summary summary;
		struct record_undo undo;
		struct record_forked_from forked_from;
		struct record_meta meta;
		struct record_attach attach;
	} u;
};

/* What record_decode() found. */
enum {
	RECORD_OK = 0,	    /* decoded: apply it */
	RECORD_IGNORED = 1, /* a known type whose payload the loader ignores, not counted */
	RECORD_UNKNOWN = 2, /* a type this version does not know: skipped, not counted */
};

/* Decodes one payload into r (which must be zeroed, or released, before).
 * RECORD_OK, RECORD_IGNORED, RECORD_UNKNOWN; -EINVAL (a bad record: not UTF-8,
 * no JSON object, or the type's own rules above; *why says which, a static
 * phrase), -ENOMEM.  r holds the payload until record_release() in every case. */
int record_decode(struct record *r, uint16_t type, const void *payload, size_t len,
		  const char **why);

/* Frees what r holds and zeroes it (it can decode again).  NULL-safe. */
void record_release(struct record *r);

/* --- encoders ------------------------------------------------------------------- */

/* A payload printed by cJSON (without formatting), the way every record but
 * REPLY_PART, BLOCK and META is written: takes o (deleted in every case).  0, -ENOMEM;
 * *out is malloc'ed, NUL-terminated. */
int record_print(struct cJSON *o, char **out, size_t *len);

/* Payloads of the small records, built as the writers always built them (same
 * keys in the same order; a NUL in a USER's text ends it there, as it always
 * did).  NULL when out of memory. */
/* USER: turn, text, ms, then "attach" (a copy of the array attach, see
 * record_attach_list_json) when attach is not NULL. */
struct cJSON *record_user_json(uint64_t turn, const char *text, size_t len, int64_t ms,
			       const struct cJSON *attach);
struct cJSON *record_retry_json(uint64_t turn, unsigned attempt, int64_t ms);
struct cJSON *record_clear_json(uint64_t turn);
struct cJSON *record_undo_json(uint64_t turn, int64_t ms);
struct cJSON *record_forked_from_json(const char *context, uint64_t turn, int64_t ms);
struct cJSON *record_detach_json(const char *name, int64_t ms); /* ms < 0: none */
/* The "usage" object of REPLY_END: the counts u has (its present bits). */
struct cJSON *record_usage_json(const struct wire_usage *u);

#define RECORD_CREATE_V 1 /* CREATE's "v": the journal format's version */

/* CREATE and SETTINGS: "settings" (a copy of r->settings, {} for NULL),
 * "system" (r->system, "" for NULL), "schema" when r->schema is not empty, then
 * "v" and "created_ms" when r->v >= 0 (CREATE). */
struct cJSON *record_settings_json(const struct record_settings *r);

/* REPLY_END: turn, attempt, state; stop_reason, request_id and model when not
 * empty; cache_hit when true; usage when has_usage; error (all four keys) when
 * has_error; raw_sent, http_status, text_bytes when >= 0; retries, first_turn
 * when > 0; request_bytes and request_us when request_bytes > 0. */
struct cJSON *record_end_json(const struct record_end *r);

/* SUMMARY: text ("" for NULL), first_turn, last_turn, by, ms; with has_usage
 * also "usage" (the four counts) and "model" when not empty. */
struct cJSON *record_summary_json(const struct record_summary *r);

/* ATTACH (name, type, size, hash, tokens, ms), and without ms (r->ms < 0) an
 * item of a USER record's "attach" list. */
struct cJSON *record_attach_json(const struct record_attach *r);
/* A USER record's "attach" list: the n items att (their ms left out), in that
 * order.  NULL when out of memory. */
struct cJSON *record_attach_list_json(const struct record_attach *att, size_t n);

/* META: {"meta":{…}}, a copy of meta ({} for NULL), printed; malloc'ed, NULL
 * when out of memory. */
char *record_meta_print(const struct cJSON *meta);

/* BLOCK, printed into out (replacing its content) with the block's NUL marks as
 * \u0000 (json_nul.h).  0, -ENOMEM, or buf_append's error. */
int record_block_print(const struct record_block *r, struct buf *out);

/* REPLY_PART, printed directly: building a cJSON object and printing it cost
 * ~13 % of the daemon's CPU on a 64 MiB reply (escaping, and the printer's
 * growing buffer), so the payload {"turn":N,"attempt":A,"text":"…"[,"thinking":"…"]}
 * is printed byte for byte as cJSON_PrintUnformatted() prints the same object
 * (tests/unit/test_record_part.c and the reply_part fuzz target compare the two;
 * a turn number from 10^15 on, which cJSON would print with an exponent, keeps
 * its digits here and parses to the same number).  It is decoded like every
 * other record.
 *
 * Room a record may need: every byte escaped as \u00xx, and the keys. */
#define RECORD_PART_SIZE(tn, hn) (6 * (tn) + 6 * (hn) + 128)

/* Prints the record for text[0..tn) and thinking[0..hn) (thinking omitted when
 * hn is 0) into out, replacing its content.  0, or -EFBIG past out's cap
 * (RECORD_PART_SIZE gives enough), -ENOMEM; out is emptied on failure. */
int record_part_print(struct buf *out, uint64_t turn, unsigned attempt, const char *text, size_t tn,
		      const char *thinking, size_t hn);

#endif
