/* models.h — what the Models API says about each model, and the shape of a
 * request made from it (CONTRACT §8).
 *
 * A model's capabilities come from GET /v1/models/{id} (or an item of the
 * paginated GET /v1/models), whose body is the SDKs' ModelInfo:
 *   {"id", "display_name", "created_at", "type": "model",
 *    "max_input_tokens", "max_tokens",
 *    "capabilities": {"thinking": {"supported", "types": {"adaptive": {"supported"},
 *                                                        "enabled": {"supported"}}},
 *                     "effort": {"supported", "low"|"medium"|"high"|"xhigh"|"max":
 *                                {"supported"}},
 *                     "image_input", "pdf_input", "structured_outputs": {"supported"},
 *                     "code_execution": {"supported"},
 *                     "server_tools": {"supported", "web_search": {"supported"},
 *                                      "code_execution": {"supported"}}, ...}}
 * mcpfs reads three fields the SDK types (August 2026) do not have yet:
 * "lifecycle" ("active" | "deprecated" | "retired", or an object {"status", "retires_at"}),
 * "retires_at" (RFC 3339) and "line" (the family a model belongs to).  Absent,
 * a model is active, with no retirement date and no line.
 *
 * struct models is the cache: one entry per model id (the answer, when it came,
 * and whether a fetch is under way) and the list's order.  Pure functions over
 * caller-owned memory, no I/O, no lock: the store holds one under its lock and
 * keeps its text form in the state directory (store_models.c).
 */
#ifndef MCPFS_MODELS_H
#define MCPFS_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "mcpfs/buf.h"
#include "mcpfs/settings.h"

#define MODELS_TTL_MS (24 * 3600 * 1000LL) /* an answer is good for a day */
#define MODELS_RETRY_MS (5 * 60 * 1000LL)  /* a failed fetch is not repeated sooner */
#define MODELS_WAIT_MS 5000		   /* longest a write or an open waits for one */
#define MODELS_MAX 1000			   /* models kept; more: -EFBIG */
#define MODELS_INFO_MAX (64u << 10)	   /* bytes of one ModelInfo kept */
#define MODELS_PAGES_MAX 100		   /* pages of GET /v1/models followed */
#define MODELS_PAGE_LIMIT 1000		   /* ?limit= asked for (the API's maximum) */
/* A fetch not answered within this is taken as lost (the transport could not
 * queue it) and asked again: longer than any fetch of the transport may take. */
#define MODELS_LOST_MS (5 * 60 * 1000LL)

enum model_lifecycle { MODEL_ACTIVE, MODEL_DEPRECATED, MODEL_RETIRED };

#define MODEL_EFFORT_LOW 1u
#define MODEL_EFFORT_MEDIUM 2u
#define MODEL_EFFORT_HIGH 4u
#define MODEL_EFFORT_XHIGH 8u
#define MODEL_EFFORT_MAX 16u

struct model_caps {
	char id[SETTINGS_MODEL_MAX + 1];
	char display_name[128];
	char line[64];	     /* "" when the API names none */
	char retires_at[40]; /* as the API wrote it; "" when none */
	enum model_lifecycle lifecycle;
	int64_t max_input_tokens; /* the context window; -1 unknown */
	int64_t max_tokens;	  /* -1 unknown */
	bool thinking_adaptive;	  /* thinking.types.adaptive.supported */
	bool thinking_enabled;	  /* thinking.types.enabled.supported (budgets) */
	bool effort;		  /* effort.supported */
	unsigned effort_levels;	  /* MODEL_EFFORT_* of the levels supported */
	bool image_input, pdf_input, structured_outputs;
	/* capabilities.server_tools ({"supported", "web_search": {"supported"},
	 * "code_execution": {"supported"}}; web_fetch has no entry of its own in
	 * the SDK types, so "web_fetch" is read where present and the
	 * capability's own "supported" stands for it otherwise).  Absent from an
	 * older answer: server_tools_known false, and both are taken. */
	bool server_tools_known, web_search, web_fetch;
	/* capabilities.code_execution: code run by the code execution tool can
	 * call the request's other tools ("dynamic filtering for web search and
	 * web fetch"), which the newer tool versions need. */
	bool code_execution;
};

/* Reads one ModelInfo JSON object.  0, -EINVAL (not JSON, no "id", an id that
 * is not a model id). */
int model_caps_parse(const char *json, size_t len, struct model_caps *out);

const char *model_lifecycle_name(enum model_lifecycle l);

/* How a call is shaped from the settings and the model's capabilities. */
enum shape_thinking { SHAPE_THINKING_NONE, SHAPE_THINKING_ADAPTIVE, SHAPE_THINKING_BUDGET };

/* The server tool versions mcpfs sends (Messages API tool types).  The basic
 * ones every model with the tool takes; the newest named in the SDK types
 * (web_search_20260318, web_fetch_20260318: dynamic filtering and
 * response_inclusion) need code execution (capabilities.code_execution). */
#define MODEL_WEB_SEARCH_BASIC "web_search_20250305"
#define MODEL_WEB_FETCH_BASIC "web_fetch_20250910"
#define MODEL_WEB_SEARCH_NEWEST "web_search_20260318"
#define MODEL_WEB_FETCH_NEWEST "web_fetch_20260318"

struct model_shape {
	enum shape_thinking thinking;
	int64_t budget;		/* SHAPE_THINKING_BUDGET: budget_tokens */
	const char *effort;	/* output_config.effort, or NULL: not sent */
	const char *web_search; /* the web search tool's type, or NULL: not sent */
	const char *web_fetch;	/* the web fetch tool's type, or NULL: not sent */
	char ignored[256];	/* settings left out, for `status`; "" none */
};

/* The rules of CONTRACT §8.  caps NULL (no answer from the Models API): only
 * what the user set is sent — `thinking = N` as a budget, `on` as adaptive,
 * the effort level as it is, the tools in their newest versions.  Tools: a
 * model with code execution gets the newest versions, any other the basic
 * ones; a tool the model does not take is left out and named in ignored.
 * Never fails. */
void model_shape(const struct settings *st, const struct model_caps *caps, struct model_shape *out);

/* --- the cache ----------------------------------------------------------------- */

struct models_entry {
	char id[SETTINGS_MODEL_MAX + 1];
	int status;		/* last answer: 200 known, 404 does not exist, -1 none */
	int64_t at_ms;		/* wall clock of that answer */
	int64_t failed_ms;	/* wall clock of the last failed fetch, 0 none since */
	struct model_caps caps; /* status 200 */
	char *info;		/* heap: the ModelInfo text (status 200), for the file */
	bool fetching;		/* a fetch is under way */
	int64_t fetch_ms;	/* wall clock when it was asked for */
	char why[160];		/* failed_ms: why the fetch failed */
};

struct models {
	struct models_entry *e;
	size_t n, cap;
	char (*list)[SETTINGS_MODEL_MAX + 1]; /* GET /v1/models order: newest first */
	size_t n_list;
	int list_status;	/* 200, -1 never fetched */
	int64_t list_ms;	/* wall clock of the list's last answer */
	int64_t list_failed_ms; /* wall clock of the last failed fetch, 0 none since */
	bool list_fetching;
	int64_t list_fetch_ms; /* wall clock when it was asked for */
	char list_why[160];
};

enum models_state {
	MODELS_NEED,	 /* no answer, or a stale one: fetch */
	MODELS_FETCHING, /* a fetch is under way */
	MODELS_KNOWN,	 /* a fresh 200 */
	MODELS_ABSENT,	 /* a fresh 404 */
	MODELS_FAILED,	 /* the last fetch failed less than MODELS_RETRY_MS ago (an
			    older answer, if any, is still in the entry) */
};

void models_init(struct models *m);
void models_done(struct models *m);

/* The entry of a model id, or NULL. */
struct models_entry *models_find(const struct models *m, const char *id);

/* What is known of a model id at now (wall ms). */
enum models_state models_state(const struct models *m, const char *id, int64_t now);
/* The same for the list (MODELS_ABSENT never). */
enum models_state models_list_state(const struct models *m, int64_t now);

/* The entry for id, created (status -1) when there is none.  -EFBIG past
 * MODELS_MAX, -ENOMEM. */
int models_entry(struct models *m, const char *id, struct models_entry **ret);

/* Records an answer for id: status 200 with its ModelInfo text, 404, or 0 with
 * why (the fetch failed).  A failure keeps an earlier 200 or 404 (an offline
 * mount goes on with what it knew) and stamps failed_ms, so it is not retried
 * at once.  Clears fetching.  0, -EINVAL (a 200 body that is no ModelInfo: it
 * counts as a failure), -EFBIG, -ENOMEM. */
int models_answer(struct models *m, const char *id, int status, const char *body, size_t len,
		  const char *why, int64_t now);

/* Reads one page of GET /v1/models: its ModelInfo items are recorded as
 * answers (status 200) and appended to the list being built in *list (heap,
 * *n entries; the caller frees).  *has_more and last_id (the cursor for
 * ?after_id=) are set.  0, -EINVAL (not a page), -EFBIG, -ENOMEM. */
int models_page(struct models *m, const char *body, size_t len, int64_t now,
		char (**list)[SETTINGS_MODEL_MAX + 1], size_t *n, bool *has_more, char *last_id,
		size_t last_id_len);

/* Only the paging fields of a page (for the transport, which follows
 * has_more).  0, -EINVAL. */
int models_page_cursor(const char *body, size_t len, bool *has_more, char *last_id,
		       size_t last_id_len);

/* Installs a finished list (taking it) or, with list NULL, records that the
 * list could not be fetched (why).  Clears list_fetching. */
void models_list_answer(struct models *m, char (*list)[SETTINGS_MODEL_MAX + 1], size_t n,
			const char *why, int64_t now);

/* `.models`: one model a line, newest first, tab-separated: id, display name,
 * lifecycle, context window (max_input_tokens, "-" unknown).  With no list
 * ever fetched: one line "# cannot list models: WHY".  0, -EFBIG, -ENOMEM. */
int models_render(const struct models *m, struct buf *out);

/* The advice for a deprecated or retired model: "claude-x is deprecated
 * (retires 2026-12-31); the newest active model of line 'l' is claude-y".
 * Uses the list for "newest".  Writes "" for an active model. */
void models_advice(const struct models *m, const struct model_caps *c, char *out, size_t n);

/* The cache as JSON text for the state directory, and back.  Answers older
 * than MODELS_TTL_MS are kept (they still serve an offline `.models`) but are
 * stale.  models_load ignores what it cannot read.  0, -ENOMEM, -EFBIG. */
int models_save(const struct models *m, struct buf *out);
void models_load(struct models *m, const char *text, size_t len);

#endif
