/* wire.h — the Messages API's JSON, both ways.
 *
 * wire_request_build() writes the body of POST /v1/messages with cJSON, fields in
 * a fixed order so that the prefix of the body is byte-stable across calls (prompt
 * caching depends on it).  wire_event_decode() turns one SSE event of a streaming
 * reply into a struct wire_event; wire_error_decode() reads an HTTP error body.
 *
 * What this module does not do: transport, retries, or deciding what a turn
 * means.  Pure functions over caller-owned memory; thread-safe.
 */
#ifndef MCPFS_WIRE_H
#define MCPFS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "mcpfs/api_error.h"
#include "mcpfs/buf.h"

struct cJSON;

#define WIRE_ANTHROPIC_VERSION "2023-06-01"

/* The largest request body the Messages API takes: 32 MB, read as 10^6-byte
 * megabytes so that no body the API could refuse is ever sent. */
#define WIRE_REQUEST_MAX 32000000u

/* A content block given as JSON text, put into the body as it is (an
 * attachment's block, whose base64 is encoded once and kept: store_attach.c). */
struct wire_raw {
	const char *json;
	size_t len;
};

struct wire_message {
	bool assistant;	  /* role: false user, true assistant */
	const char *text; /* UTF-8, not NUL-terminated necessarily */
	size_t len;
	bool cache_mark;	    /* put a cache_control breakpoint on this message's block */
	const struct wire_raw *pre; /* blocks before the text (content is then an
				       array), n_pre of them; none with blocks */
	size_t n_pre;
	/* NULL, or the content as an array of blocks (an assistant message with
	 * thinking, tool or citation blocks): sent instead of text; cache_mark
	 * then marks its last text block.  Borrowed. */
	const struct cJSON *blocks;
};

struct wire_request {
	const char *model;
	int64_t max_tokens;
	double temperature; /* NaN: not sent */
	const char *system; /* NULL or "": not sent */
	size_t system_len;
	bool system_cache_mark; /* cache_control breakpoint on the system block */
	const struct wire_message *messages;
	size_t n_messages;
	int64_t thinking_budget; /* > 0: {"type":"enabled","budget_tokens":N} */
	bool stream;
	bool thinking_adaptive; /* {"type":"adaptive"} (wins over a budget) */
	const char *effort;	/* NULL: no output_config; else output_config.effort */
	/* Server tools: "tools":[{"type":T,"name":N}], N being T without its
	 * "_YYYYMMDD" version ("web_search_20250305" -> "web_search"). */
	const char *const *tool_types;
	size_t n_tools;
	/* A JSON Schema (a JSON object's text, checked by schema_check) sent as
	 * output_config.format {"type":"json_schema","schema":…}; NULL: none. */
	const char *schema;
	size_t schema_len;
	/* A second system block after the system prompt (the summary), with a
	 * breakpoint of its own when system_cache_mark; NULL: none.  With it the
	 * system is sent as a list of text blocks. */
	const char *system2;
	size_t system2_len;
};

/* Appends the JSON body to out.  0, -EINVAL (no messages, invalid UTF-8 in a
 * string, a schema that is not a JSON object, a tool type without a version,
 * a message with both blocks and pre),
 * -EFBIG (out's cap), -ENOMEM. */
int wire_request_build(const struct wire_request *r, struct buf *out);

enum wire_event_type {
	WIRE_MESSAGE_START,
	WIRE_BLOCK_START,
	WIRE_BLOCK_DELTA,
	WIRE_BLOCK_STOP,
	WIRE_MESSAGE_DELTA,
	WIRE_MESSAGE_STOP,
	WIRE_PING,
	WIRE_ERROR,
	WIRE_UNKNOWN, /* an event type this version does not know: ignore it */
};

enum wire_block {
	WIRE_BLOCK_NONE,
	WIRE_BLOCK_TEXT,      /* block_start of a text block, or a text_delta */
	WIRE_BLOCK_THINKING,  /* thinking block, or a thinking_delta */
	WIRE_BLOCK_SIGNATURE, /* a signature_delta (of a thinking block) */
	WIRE_BLOCK_OTHER,     /* tool_use, redacted_thinking, input_json_delta, ... */
};

/* Usage figures; a field is meaningful only when its bit is in present. */
struct wire_usage {
	int64_t input_tokens;
	int64_t output_tokens;
	int64_t cache_creation_input_tokens;
	int64_t cache_read_input_tokens;
	unsigned present; /* WIRE_USAGE_* bits */
};
#define WIRE_USAGE_INPUT 1u
#define WIRE_USAGE_OUTPUT 2u
#define WIRE_USAGE_CACHE_CREATION 4u
#define WIRE_USAGE_CACHE_READ 8u
/* Adds from's figures to to's (and its present bits): a reply's calls summed. */
void wire_usage_add(struct wire_usage *to, const struct wire_usage *from);

struct wire_event {
	enum wire_event_type type;
	int index;	       /* content block index, -1 when none */
	enum wire_block block; /* kind of block (BLOCK_START) or of delta (BLOCK_DELTA) */
	char *text;	       /* heap, NUL-terminated: delta text, thinking or
				  signature; the block's initial text at BLOCK_START;
				  text_len long (a \u0000 is a NUL byte inside it) */
	size_t text_len;
	char *raw; /* heap, NUL-terminated, or NULL: a WIRE_BLOCK_OTHER event's
		      JSON as printed by cJSON (the content_block of a
		      BLOCK_START, the delta of a BLOCK_DELTA: tool_use,
		      redacted_thinking, input_json_delta, citations_delta,
		      a type this version does not know) */
	size_t raw_len;
	char message_id[128];	 /* MESSAGE_START */
	char model[128];	 /* MESSAGE_START */
	char stop_reason[64];	 /* MESSAGE_DELTA, "" when null */
	struct wire_usage usage; /* MESSAGE_START (message.usage), MESSAGE_DELTA */
	struct api_error error;	 /* ERROR: type and message; retryable by type */
};

/* Decodes one event.  name is the SSE event name, data its data.  The JSON's own
 * "type" decides (the name is used only when the JSON has none).  Unknown types
 * give WIRE_UNKNOWN, not an error.  0, or -EINVAL for data that is not the JSON
 * object the type requires (malformed JSON, a delta without its text).  On
 * success the caller must wire_event_done(ev). */
int wire_event_decode(const char *name, size_t name_len, const char *data, size_t len,
		      struct wire_event *ev);
void wire_event_done(struct wire_event *ev);

/* The two ways wire_event_decode() works, exposed so that the tests can hold
 * one against the other.  wire_text_delta_fast() reads only a text_delta event
 * in the API's own compact form (no white space, keys in the API's order, an
 * index without a leading zero, a string without lone surrogates or raw
 * control characters, valid UTF-8): 1 when it decoded data into ev exactly as
 * wire_event_decode_json() would, 0 when data is not in that form (ev is
 * untouched), -ENOMEM.  wire_event_decode_json() decodes any event with cJSON,
 * with wire_event_decode()'s contract. */
int wire_text_delta_fast(const char *data, size_t len, struct wire_event *ev);
int wire_event_decode_json(const char *name, size_t name_len, const char *data, size_t len,
			   struct wire_event *ev);

/* Reads an HTTP error body ({"type":"error","error":{"type","message"},
 * "request_id"}) into e's type, message and request_id (request_id only when e
 * has none yet).  A body that is not that JSON (an HTML 413 from a proxy) leaves
 * type "http_error" and a message quoting the status and the start of the body.
 * Sets http_status and retryable from status.  Never fails. */
void wire_error_decode(int status, const char *body, size_t len, struct api_error *e);

/* Whether an error type named in a mid-stream error event is worth retrying:
 * overloaded_error, api_error, rate_limit_error, timeout_error. */
bool wire_error_type_retryable(const char *type);

#endif
