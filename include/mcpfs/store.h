/* store.h — the core API: every context, its turns, and its state directory.
 *
 * The store is what both front ends (the FUSE adapter and the HTTP shim) talk
 * to; neither keeps its own copy of a context, which is why they always show the
 * same live state.  It owns the state directory (one directory per context with
 * its journal, doc/design/journal.md), loads a context's journal lazily on first
 * use (listing never reads journals), runs each context's turns in order, and
 * hands calls to a transport (the network thread) through struct transport_ops.
 *
 * Locking: one mutex, inside the store, guards everything here; every function
 * takes it and none blocks on the network, except store_model_check() and
 * store_render_models(), which wait at most MODELS_WAIT_MS for the Models API.
 * Functions that commit (a message, a settings change, a clear) fsync the
 * journal before returning, with the lock released during the fsync: only the
 * same context's commits wait for it.  A reply's end is fsynced by a commit
 * thread before reply_read() reports the end.  Observers
 * are called after a change with the lock released, from whichever thread made
 * the change (a FUSE worker, the network thread, an HTTP thread); they must not
 * block and may call back into the store.
 *
 * Contexts are named by id in every per-context call: ids are assigned when a
 * context is first seen by this process, survive renames, and are never reused
 * while the store lives.  A function on an id that is gone returns -ENOENT.
 *
 * A turn is one attempt at replying to one user message.  Readers of `output`
 * hold a reference to the turn that was newest when they opened it, so a reader
 * stays with its turn even when newer turns start.
 */
#ifndef MCPFS_STORE_H
#define MCPFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "mcpfs/api_error.h"
#include "mcpfs/buf.h"
#include "mcpfs/settings.h"
#include "mcpfs/wire.h"

#define STORE_NAME_MAX 255	     /* bytes of a context name */
#define STORE_REPLY_MAX (256u << 20) /* bytes of one reply's text */
/* Journals kept open at once: a quarter of RLIMIT_NOFILE's soft limit at
 * store_open(), within these bounds; the least recently used idle one is closed
 * to open another (reopened when used). */
#define STORE_JOURNALS_OPEN_MIN 8
#define STORE_JOURNALS_OPEN_MAX 4096

struct store;
struct reply;

/* --- life cycle ------------------------------------------------------------ */

/* Opens (creating if needed, mode 0700) the state directory and lists its
 * contexts without reading their journals.  defaults_text is `key = value` lines
 * applied over the saved root defaults (the command line's --model etc.; may be
 * NULL).  Takes an exclusive lock on the directory: a second daemon on the same
 * state fails with -EBUSY.  On failure why says what and where:
 * "cannot create state directory '/x': Permission denied".  0, -errno. */
int store_open(const char *state_dir, const char *defaults_text, struct store **ret, char *why,
	       size_t whylen);
/* The same on any storage engine (storage.h; store_open makes the state
 * directory's, storage_dir_new): st stays the caller's, to free after
 * store_free().  where names the state in `.status` and messages (the state
 * directory, or --store's URL without its password; copied; NULL: "(in
 * memory)").  0, -errno with why. */
struct storage;
int store_open_on(struct storage *st, const char *where, const char *defaults_text,
		  struct store **ret, char *why, size_t whylen);
/* Starts the threads of a shared store (the engine's listener, the feed thread
 * that applies other daemons' changes, the lease thread); nothing on an engine
 * without a feed.  Called once, after the daemon forked into the background
 * (fork(2) keeps only the calling thread) and with the stop signals blocked as
 * the caller wants them in every thread; store_free() stops them.  0, -errno
 * with why. */
int store_start(struct store *s, char *why, size_t whylen);

/* Frees everything.  The transport and the commit threads must be stopped
 * first.  NULL-safe. */
void store_free(struct store *s);

/* A commit thread's body: syncs the journals of replies that ended (their
 * readers see the end once it is durable) until commit_threads_stop(), then
 * finishes the work queued and returns.  Without any, replies' ends are synced
 * under the store lock by whichever thread ends them. */
void commit_run(struct store *s);
void commit_threads_stop(struct store *s);

/* Calls the transport makes, and the one it takes back.  start() is called with
 * the store lock held and must only queue the call (never block, never call the
 * store); it takes ownership of spec->body.  cancel() likewise; the transport
 * then reports reply_call_end(-ECANCELED) or nothing further. */
struct call_spec {
	uint64_t call_id;
	char *body; /* request JSON, heap; the transport frees it */
	size_t body_len;
	int max_retries;
	int connect_timeout_ms;
	int idle_timeout_ms;
	/* What the transport's log line names the call by: */
	char context[STORE_NAME_MAX + 1];   /* the context's name when the call started */
	char model[SETTINGS_MODEL_MAX + 1]; /* the model the request asks for */
};
/* models(), when the transport has it, asks the Models API about one model id
 * (GET /v1/models/{id}) or, with model NULL, for the whole list (GET
 * /v1/models, every page), connecting within connect_timeout_ms (a turn's
 * connect_timeout: a turn that waits for the answer must not wait longer for
 * the connection than its call would); it is called with the store lock held,
 * copies model, only queues, and is answered later, on the transport's thread, with
 * store_models_answer() or store_models_list() — always exactly once. */
struct transport_ops {
	int (*start)(void *impl, struct call_spec *spec);
	void (*cancel)(void *impl, uint64_t call_id);
	void (*models)(void *impl, const char *model, int connect_timeout_ms);
};
void store_set_transport(struct store *s, const struct transport_ops *ops, void *impl);

/* What changed, for observers. */
#define STORE_CHANGED_OUTPUT 1u	  /* a turn's text grew or it ended */
#define STORE_CHANGED_STATE 2u	  /* status changed (queued, waiting, error...) */
#define STORE_CHANGED_SETTINGS 4u /* system, model or config */
#define STORE_CHANGED_CREATED 8u
#define STORE_CHANGED_DELETED 16u
#define STORE_CHANGED_RENAMED 32u
#define STORE_CHANGED_HISTORY 64u   /* a message or reply was committed, or a clear */
#define STORE_CHANGED_THINKING 128u /* a turn's thinking grew (`thinking`) */
#define STORE_CHANGED_META 256u	    /* user metadata (meta.h) */

typedef void store_observer_fn(void *data, uint64_t ctx_id, unsigned changes);

/* Registers an observer (at most 4); call before any thread uses the store. */
int store_observe(struct store *s, store_observer_fn *fn, void *data);

/* Daemon facts shown in `.status`: "base_url", "http" (address), "api_key"
 * ("set" or "missing", never the key).  Copies value. */
void store_set_info(struct store *s, const char *key, const char *value);

/* --- the set of contexts --------------------------------------------------- */

/* 0 for a valid context name: 1..STORE_NAME_MAX bytes of valid UTF-8, no '/', no
 * control characters, not starting with '.'.  -EINVAL, -ENAMETOOLONG. */
int store_name_check(const char *name, size_t len);

/* store_name_check, and *why (when why is not NULL) a static phrase saying which
 * rule a refused name breaks ("names that start with '.' are reserved"), NULL
 * for a valid name: for the adapters' log lines. */
int store_name_check_why(const char *name, size_t len, const char **why);

/* Creates a context with the root defaults; durable on return.  -EEXIST,
 * -EINVAL, -ENAMETOOLONG, -ENOSPC, -errno. */
int store_create(struct store *s, const char *name, uint64_t *id);

/* Deletes a context: cancels its call, ends its turns (readers see EOF or EIO),
 * removes its directory.  -ENOENT. */
int store_delete(struct store *s, const char *name);

/* Renames a context; its id, turns and readers stay.  -ENOENT, -EEXIST (to is
 * taken), -EINVAL, -ENAMETOOLONG. */
int store_rename(struct store *s, const char *from, const char *to);

/* Finds a context by name without touching the disk.  0, -ENOENT. */
int store_lookup(struct store *s, const char *name, uint64_t *id);

/* Copies the current name of a context.  0, -ENOENT, -ENAMETOOLONG (outlen). */
int store_name(struct store *s, uint64_t id, char *out, size_t outlen);

struct store_entry {
	uint64_t id;
	char *name;
};
/* A snapshot of every context, sorted by name.  Free with store_list_free. */
int store_list(struct store *s, struct store_entry **ret, size_t *n);
void store_list_free(struct store_entry *e, size_t n);

/* Root files: `.status` and `.config` text; .config takes settings lines (the
 * keys named change, the others keep their value) and is saved durably. */
int store_render_status(struct store *s, struct buf *out);
int store_render_defaults(struct store *s, struct buf *out);
int store_set_defaults(struct store *s, const char *text, size_t len, char *why, size_t whylen);
/* Records a refused write or close of `.config`: `.status` shows it as
 * `last_refused`, with the time. */
void store_refuse(struct store *s, const char *why);
/* Checks a `.config` text as store_set_defaults() would read it (its keys and
 * `response_cache_bytes`), applying nothing: for the write-time checks.
 * 0, -EINVAL/-EFBIG + why. */
int store_defaults_check(const char *text, size_t len, char *why, size_t whylen);

/* --- cost and spending limits (spend.c, CONTRACT §10) ----------------------- */

struct prices;
/* Replaces the price table cost_usd is computed with; takes *p (left empty). */
void store_set_prices(struct store *s, struct prices *p);

/* `.usage`: a comment line naming the price table, a comment line naming the
 * columns, then one tab-separated line per context (`context NAME - ...`, in
 * name order), per model (`model - MODEL ...`) and the total (`total - - ...`):
 * calls, input, output, cache creation and cache read tokens, cost_usd (6
 * decimals, or `unknown` when a model without a price was used).  The JSON
 * form (GET /v1/usage): {"prices":{"source","as_of"}, "contexts":[{"name",...}],
 * "models":[{"model",...}], "total":{...}}, cost_usd null when unknown.  Loads
 * every context not loaded yet.  0, -ENOMEM, -EFBIG. */
int store_render_usage(struct store *s, struct buf *out);
/* The size of `.usage` for stat: its rendering's when every context is loaded
 * (no journal is read for a stat: `ls -l` of a root over 100,000 contexts must
 * not load them), else 0 — reads (direct I/O) return all of it regardless,
 * and once it was read every context is loaded.  0, -errno. */
int store_usage_size(struct store *s, uint64_t *size);
int store_render_usage_json(struct store *s, struct buf *out);

/* Whether a new message may start: -EDQUOT with why ("spend limit 0.50 USD
 * reached (context)", or "(all contexts)" for the root's limit) once the
 * context's cost, or that of all contexts together, reached its
 * spend_limit_usd; 0 otherwise.  Costs of models without a price count 0.
 * -ENOENT. */
int context_spend_check(struct store *s, uint64_t id, char *why, size_t whylen);

/* --- one context ------------------------------------------------------------- */

enum reply_state {
	REPLY_PENDING,	 /* message being written (validated at flush, not yet sent) */
	REPLY_QUEUED,	 /* committed, waiting for the turn before it */
	REPLY_WAITING,	 /* request sent, no reply byte yet (includes retry back-off) */
	REPLY_STREAMING, /* reply bytes arriving */
	REPLY_DONE,	 /* reply complete */
	REPLY_FAILED,	 /* error, cancel, or interrupted by a crash */
};
const char *reply_state_name(enum reply_state st);

struct context_info {
	enum reply_state state;	 /* of the newest turn; REPLY_DONE when there is none */
	bool idle;		 /* nothing pending, queued or in flight */
	uint64_t turn;		 /* newest turn number, 0 when none */
	size_t queued;		 /* turns waiting behind the one in flight */
	uint64_t output_size;	 /* bytes of the newest turn's text */
	uint64_t thinking_size;	 /* bytes of its thinking */
	int64_t created_ms;	 /* wall clock */
	int64_t modified_ms;	 /* wall clock of the last change */
	int64_t max_input_bytes; /* the message size limit in force */
	char model[SETTINGS_MODEL_MAX + 1];
};

/* Facts about a context (loads its journal on first use).  0, -ENOENT, -EIO. */
int context_info(struct store *s, uint64_t id, struct context_info *out);

enum view_kind {
	VIEW_HISTORY,	   /* `history`: what the next call sends, pruned part marked */
	VIEW_HISTORY_JSON, /* `history.json` */
	VIEW_TRANSCRIPT,   /* `transcript`: everything, never pruned */
	VIEW_TRANSCRIPT_JSON,
	VIEW_SYSTEM,
	VIEW_SCHEMA, /* `schema`: the JSON Schema as written, "" none */
	VIEW_MODEL,  /* one line */
	VIEW_CONFIG, /* `key = value` lines */
	VIEW_STATUS,
	VIEW_USAGE,
	VIEW_INFO_JSON, /* the shim's GET /v1/contexts/{name} */
	VIEW_SUMMARY,	/* `summary`: the rolling summary's text, "" none */
};

/* The first line of a context's `status`, without loading it (a listing of
 * every context, GET /v1/contexts): a context not loaded has nothing in flight,
 * so it is "idle", or "error" when its newest reply failed or has no end (it
 * loads as interrupted), as the last 64 KiB of its journal say (all of it when
 * they hold no turn); read once, no descriptor kept.  0, -ENOENT. */
int context_status_word(struct store *s, uint64_t id, char *out, size_t outlen);

/* Appends a rendering of a context to out.  0, -ENOENT, -EFBIG, -ENOMEM. */
int context_render(struct store *s, uint64_t id, enum view_kind kind, struct buf *out);

/* The same, and *version receives the context's version as of that rendering.
 * The version moves with every change that a rendering may show (the text of
 * a streaming reply too, as the transcript shows it: what is in the journal),
 * so a reader at the end of a `transcript` it read renders it again only when
 * context_version() says it moved.  0, -ENOENT. */
int context_render_version(struct store *s, uint64_t id, enum view_kind kind, struct buf *out,
			   uint64_t *version);
int context_version(struct store *s, uint64_t id, uint64_t *version);

/* Replace the system prompt / model / set config keys (settings lines: the
 * keys named change, the others keep their value).  Durable on return.  On -EINVAL (-EILSEQ,
 * -EFBIG) nothing changed and why says why. */
int context_set_system(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		       size_t whylen);
int context_set_model(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		      size_t whylen);
int context_set_config(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		       size_t whylen);
/* Replaces the `schema` (empty or white space: none), checked by schema_check.
 * Durable on return; kept in the settings record.  -EINVAL (-EILSEQ, -EFBIG)
 * + why, nothing changed. */
int context_set_schema(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		       size_t whylen);

/* The rolling summary (CONTRACT §10).  Replaces it (empty or white space:
 * removes it), keeping the turns it covers (none named: the exchanges already
 * left out); a summary call in flight is cancelled.  Durable on return.
 * -EFBIG (over SUMMARY_MAX), -EILSEQ + why, nothing changed. */
#define SUMMARY_MAX (256u << 10)
int context_set_summary(struct store *s, uint64_t id, const char *text, size_t len, char *why,
			size_t whylen);
/* ctl compact [FOCUS]: starts a summary call folding every exchange of the
 * history but the newest 2 (focus, when not empty, is added to its
 * instruction).  Returns at once; `status` says `summarizing` meanwhile.
 * -EINVAL + why when a call is in flight or queued, or there is nothing to
 * fold, or the focus is over SETTINGS_PROMPT_MAX bytes or not UTF-8; -EIO when
 * the call cannot be made. */
int context_compact(struct store *s, uint64_t id, const char *focus, size_t flen, char *why,
		    size_t whylen);

/* Applies a JSON patch {"system"?, "model"?, "config"?: {key: value},
 * "schema"?: object | its text | null} (HTTP shim); config keys named change,
 * others stay.  All or nothing.  -EINVAL+why. */
int context_patch(struct store *s, uint64_t id, const struct cJSON *patch, char *why,
		  size_t whylen);

/* Stages a user message (the writer's close is validating it).  On the first
 * call *draft is NULL: a pending turn is created and becomes the newest turn
 * (readers of `output` opened from now on wait for its reply).  A later call with
 * the same *draft replaces its text.  The message is durable on return.
 * Returns 0 with *draft left NULL for an empty or all-white-space message
 * (nothing will be sent).  -EFBIG (over max_input_bytes), -EILSEQ (not UTF-8),
 * -ENOSPC or -EIO (the journal could not be written), -ENOENT; on failure why
 * says why and `status` shows it as `last_refused`.  -EFBIG also for a message
 * whose estimate alone exceeds budget_tokens. */
int context_stage(struct store *s, uint64_t id, struct reply **draft, const char *text, size_t len,
		  char *why, size_t whylen);
/* The same for a writer that holds space (store_reserve): what *held holds is
 * handed to the message's record, and *held is 0 on return, whatever the
 * outcome. */
int context_stage_held(struct store *s, uint64_t id, struct reply **draft, uint64_t *held,
		       const char *text, size_t len, char *why, size_t whylen);

/* The limits that a message's length alone decides, for a writer to check as
 * its bytes arrive: max_input_bytes, and the message's own token estimate
 * against budget_tokens.  0, -EFBIG with why, -ENOENT. */
int context_input_check(struct store *s, uint64_t id, size_t len, char *why, size_t whylen);

/* Bytes the journal record of a message takes for this text (its JSON escapes
 * counted), for store_reserve. */
uint64_t store_text_cost(const char *text, size_t len);

/* Holds room on the state directory's file system for a message being
 * written, so that a full disk fails the write() that brings its bytes
 * (CONTRACT §3.3) rather than the close that commits them.  *held (the
 * writer's count, 0 at first) grows to cover a record of `bytes` text bytes
 * (store_text_cost), in whole pages.  The room is an unlinked file of the
 * state directory; context_stage_held() hands it to the record.  0, -ENOSPC,
 * -EDQUOT; 0 also when the file system cannot hold room this way (the close
 * then meets a full disk as it would without). */
int store_reserve(struct store *s, uint64_t *held, uint64_t bytes);

/* Bytes the settings record of a change of system, model or config takes
 * beyond the new system prompt's (store_text_cost): the keys, and the current
 * prompt that the record repeats.  0, -ENOENT. */
int context_settings_cost(struct store *s, uint64_t id, uint64_t *bytes);

/* Gives back the room *held holds (a refused or dropped message); *held = 0. */
void store_unreserve(struct store *s, uint64_t *held);

/* Queues a staged message for sending (the last reference to the writer's file
 * was released).  Consumes the draft reference.  NULL-safe. */
void context_submit(struct store *s, struct reply *draft);

/* Gives up a staged message (a later validation failed): the turn fails with
 * why, nothing is sent.  Consumes the reference.  NULL-safe. */
void context_abandon(struct store *s, struct reply *draft, const char *why);

/* Records a refused write or close of one of the context's files (the reason
 * the writer got an errno for): `status` shows it as `last_refused`, with the
 * time, until a message is accepted or the context is cleared.  It is not a
 * turn's error (`last_error`).  -ENOENT. */
int context_refuse(struct store *s, uint64_t id, const char *why);

/* Stage + submit in one (the HTTP shim).  *turn_no receives the turn number.
 * -EDQUOT with why when a spending limit is reached (context_spend_check),
 * shown in `status` as `last_refused`. */
int context_send(struct store *s, uint64_t id, const char *text, size_t len, uint64_t *turn_no,
		 char *why, size_t whylen);

/* ctl commands.  cancel: ends the call in flight (queued turns are then sent);
 * returns 1 when something was cancelled, 0 when nothing was.  retry: sends the
 * newest turn's message again as a new attempt when that turn has ended: after
 * a failure it is sent again, after a complete reply it is regenerated (the
 * reply leaves the history at once, the new one takes its place when it is
 * complete; the transcript keeps both).  Durable on return (a RETRY record), and
 * `output` refers to the new attempt; -EINVAL when the newest turn is still being
 * written or in flight, or there is none since the last clear.
 * clear: cancels everything and starts an empty history (the transcript keeps
 * all, marked).  0/1, -ENOENT, -EINVAL + why. */
int context_cancel(struct store *s, uint64_t id);
int context_retry(struct store *s, uint64_t id, char *why, size_t whylen);
int context_clear(struct store *s, uint64_t id);

/* fork (fork.c): creates context `name` with context id's settings, system
 * prompt, schema and user metadata, and the exchanges of its history (since the last clear,
 * complete, not undone) whose turn is at most upto (CONTEXT_FORK_ALL: every
 * one); the new context keeps their turn numbers and usage starts at zero, and
 * its transcript starts with "forked from 'SOURCE' at turn N".  A call in
 * flight on the source is not waited for: only complete exchanges are copied.
 * The new context appears whole or not at all (made in the state directory's
 * trash/, fsynced, renamed into place); durable on return.
 * 0; -EEXIST (the name is taken), -EINVAL or -ENAMETOOLONG (an invalid name),
 * -EINVAL (upto past the newest turn that has ended), -ENOENT (no context id),
 * another -errno (the disk); why says each. */
#define CONTEXT_FORK_ALL UINT64_MAX
int context_fork(struct store *s, uint64_t id, const char *name, uint64_t upto, char *why,
		 size_t whylen);

/* undo (fork.c): takes the newest exchange of the history out of it (an UNDO
 * record, durable on return; the transcript marks it, nothing is deleted); the
 * next call goes without it, and `output` refers to the reply that is now the
 * history's newest (none when it is empty), as after a clear.  A message being
 * written stays what `output` waits for.  0; -EINVAL + why when the history
 * has no complete exchange, or a call is in flight or queued; -ENOENT. */
int context_undo(struct store *s, uint64_t id, char *why, size_t whylen);

/* --- output: reading a turn ------------------------------------------------- */

/* A reference to the newest turn (*ret NULL when the context has none yet).
 * 0, -ENOENT. */
int context_output(struct store *s, uint64_t id, struct reply **ret);

/* Copies reply text at off.  Returns bytes (> 0), 0 at the end of a complete
 * reply, -EAGAIN when nothing is there yet and more may come, -EIO when the turn
 * failed and off is at the end of its partial text.  Never blocks. */
ssize_t reply_read(struct store *s, struct reply *t, uint64_t off, void *buf, size_t size);

/* Bytes of text so far. */
uint64_t reply_size(struct store *s, struct reply *t);

/* The same two for the turn's thinking (`thinking`: the text of its thinking
 * blocks, a blank line between two, "[redacted]" for redacted thinking): bytes,
 * 0 at the end of the reply (complete or failed), -EAGAIN while more may come. */
ssize_t reply_read_thinking(struct store *s, struct reply *t, uint64_t off, void *buf, size_t size);
uint64_t reply_thinking_size(struct store *s, struct reply *t);

/* Turn number and context id: fixed for the turn's life, no lock needed. */
uint64_t reply_turn(const struct reply *t);
uint64_t reply_context(const struct reply *t);

struct reply_outcome {
	enum reply_state state;
	char stop_reason[64];
	struct wire_usage usage;
	struct api_error error; /* when FAILED */
	bool cache_hit;		/* answered from the response cache, no call */
};
void reply_outcome(struct store *s, struct reply *t, struct reply_outcome *out);

/* Cancels this one turn when it is queued or in flight (the MCP endpoint: a
 * client cancelled its own send_message); other turns are not touched and the
 * next queued one is sent.  1 when it was cancelled, 0 when it had already
 * ended (or was still being written). */
int reply_cancel(struct store *s, struct reply *t);

struct reply *reply_ref(struct store *s, struct reply *t);
void reply_unref(struct store *s, struct reply *t); /* NULL-safe */

/* --- the transport's side ---------------------------------------------------- */

/* The network thread reports on a call.  Unknown call ids (a call cancelled
 * meanwhile) are ignored.  reply_call_event() returns -ECANCELED when the call
 * is no longer wanted (the transport should abort it). */
void reply_call_response(struct store *s, uint64_t call_id, int http_status,
			 const char *request_id);
int reply_call_event(struct store *s, uint64_t call_id, const struct wire_event *ev);
/* Observers hear of what reply_call_event() changed at the next
 * reply_call_flush() (or at any notification before it): the transport flushes
 * after each chunk of bytes it received, so that a reader of `output` is answered
 * once per chunk, not once per event of it. */
void reply_call_flush(struct store *s);
/* A new attempt begins after a failure (err describes it); partial state of the
 * failed attempt (never text: attempts are retried only before any text) is
 * dropped. */
void reply_call_retry(struct store *s, uint64_t call_id, unsigned attempt,
		      const struct api_error *err, int64_t delay_ms);
/* The call is over: err 0 (message_stop seen), -EIO with e, -ETIMEDOUT,
 * -ECANCELED. */
void reply_call_end(struct store *s, uint64_t call_id, int err, const struct api_error *e);

/* The Models API's answers (transport_ops.models).  store_models_answer: status
 * 200 with the ModelInfo body, 404 (no such model), or 0 with why (the fetch
 * failed: no key, offline, another status).  store_models_list: the bodies of
 * every page in order, or n 0 and why on failure.  Both update the capability
 * cache (memory and STATE/models.json), wake the writes and opens waiting for
 * it, and send the turns that waited. */
void store_models_answer(struct store *s, const char *model, int status, const char *body,
			 size_t len, const char *why);
void store_models_list(struct store *s, const char *const *pages, const size_t *lens, size_t n,
		       const char *why);

/* Checks a model id that is about to replace old (nothing to do when they are
 * equal): from the cache, or by asking the transport and waiting at most
 * MODELS_WAIT_MS (5 s) for its answer — the only store function that waits on
 * the network, and only that long.  -EINVAL with why when the Models API says
 * the model does not exist (404); 0 when it exists or nobody could say (no
 * key, offline, no answer in time: `status` then shows `model_check:
 * unchecked`).  Call without the store lock. */
int store_model_check(struct store *s, const char *old, const char *model, char *why,
		      size_t whylen);

/* The same check at write() time (a shell ignores the errors of close()): the
 * complete lines written so far to a context's `model` (what 0), `config` (1)
 * or the root's `.config` (2; id unused) are read for a new model id, which is
 * checked as store_model_check() does.  Text that does not parse yet is left
 * to the close.  0, -EINVAL + why, -ENOENT. */
int store_model_check_text(struct store *s, uint64_t id, int what, const char *text, size_t len,
			   char *why, size_t whylen);

/* `.models`: the list of models (models_render), fetched first when the cached
 * one is older than a day, waiting at most MODELS_WAIT_MS; offline, the cached
 * list however old, or one `# cannot list models: WHY` line.  With fetch false
 * it renders what the cache has and never waits.  0, -EFBIG, -ENOMEM. */
int store_render_models(struct store *s, struct buf *out, bool fetch);

/* Calls in flight (for .status and tests). */
size_t store_calls_in_flight(struct store *s);

#endif
