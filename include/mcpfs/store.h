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
 * takes it and none blocks on the network.  Functions that commit (a message, a
 * settings change, a clear) fsync the journal before returning, with the lock
 * released during the fsync: only the same context's commits wait for it.  A
 * reply's end is fsynced by a commit thread before turn_read() reports the end.
 * Observers
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

#define STORE_NAME_MAX 255               /* bytes of a context name */
#define STORE_REPLY_MAX (256u << 20)      /* bytes of one reply's text */
/* Journals kept open at once: a quarter of RLIMIT_NOFILE's soft limit at
 * store_open(), within these bounds; the least recently used idle one is closed
 * to open another (reopened when used). */
#define STORE_JOURNALS_OPEN_MIN 8
#define STORE_JOURNALS_OPEN_MAX 4096

struct store;
struct turn;

/* --- life cycle ------------------------------------------------------------ */

/* Opens (creating if needed, mode 0700) the state directory and lists its
 * contexts without reading their journals.  defaults_text is `key = value` lines
 * applied over the saved root defaults (the command line's --model etc.; may be
 * NULL).  Takes an exclusive lock on the directory: a second daemon on the same
 * state fails with -EBUSY.  On failure why says what and where:
 * "cannot create state directory '/x': Permission denied".  0, -errno. */
int store_open(const char *state_dir, const char *defaults_text, struct store **ret, char *why,
	       size_t whylen);

/* Frees everything.  The transport and the commit threads must be stopped
 * first.  NULL-safe. */
void store_free(struct store *s);

/* A commit thread's body: syncs the journals of replies that ended (their
 * readers see the end once it is durable) until store_commit_stop(), then
 * finishes the work queued and returns.  Without any, replies' ends are synced
 * under the store lock by whichever thread ends them. */
void store_commit_run(struct store *s);
void store_commit_stop(struct store *s);

/* Calls the transport makes, and the one it takes back.  start() is called with
 * the store lock held and must only queue the call (never block, never call the
 * store); it takes ownership of spec->body.  cancel() likewise; the transport
 * then reports store_call_end(-ECANCELED) or nothing further. */
struct call_spec {
	uint64_t call_id;
	char *body;               /* request JSON, heap; the transport frees it */
	size_t body_len;
	int max_retries;
	int connect_timeout_ms;
	int idle_timeout_ms;
	/* What the transport's log line names the call by: */
	char context[STORE_NAME_MAX + 1];  /* the context's name when the call started */
	char model[SETTINGS_MODEL_MAX + 1]; /* the model the request asks for */
};
struct transport_ops {
	int (*start)(void *impl, struct call_spec *spec);
	void (*cancel)(void *impl, uint64_t call_id);
};
void store_set_transport(struct store *s, const struct transport_ops *ops, void *impl);

/* What changed, for observers. */
#define STORE_CHANGED_OUTPUT 1u    /* a turn's text grew or it ended */
#define STORE_CHANGED_STATE 2u     /* status changed (queued, waiting, error...) */
#define STORE_CHANGED_SETTINGS 4u  /* system, model or config */
#define STORE_CHANGED_CREATED 8u
#define STORE_CHANGED_DELETED 16u
#define STORE_CHANGED_RENAMED 32u
#define STORE_CHANGED_HISTORY 64u  /* a message or reply was committed, or a clear */

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

/* --- one context ------------------------------------------------------------- */

enum turn_state {
	TURN_PENDING,    /* message being written (validated at flush, not yet sent) */
	TURN_QUEUED,     /* committed, waiting for the turn before it */
	TURN_WAITING,    /* request sent, no reply byte yet (includes retry back-off) */
	TURN_STREAMING,  /* reply bytes arriving */
	TURN_DONE,       /* reply complete */
	TURN_FAILED,     /* error, cancel, or interrupted by a crash */
};
const char *turn_state_name(enum turn_state st);

struct context_info {
	enum turn_state state;   /* of the newest turn; TURN_DONE when there is none */
	bool idle;               /* nothing pending, queued or in flight */
	uint64_t turn;           /* newest turn number, 0 when none */
	size_t queued;           /* turns waiting behind the one in flight */
	uint64_t output_size;    /* bytes of the newest turn's text */
	int64_t created_ms;      /* wall clock */
	int64_t modified_ms;     /* wall clock of the last change */
	int64_t max_input_bytes; /* the message size limit in force */
	char model[SETTINGS_MODEL_MAX + 1];
};

/* Facts about a context (loads its journal on first use).  0, -ENOENT, -EIO. */
int context_info(struct store *s, uint64_t id, struct context_info *out);

enum view_kind {
	VIEW_HISTORY,       /* `history`: what the next call sends, pruned part marked */
	VIEW_HISTORY_JSON,  /* `history.json` */
	VIEW_TRANSCRIPT,    /* `transcript`: everything, never pruned */
	VIEW_TRANSCRIPT_JSON,
	VIEW_SYSTEM,
	VIEW_MODEL,         /* one line */
	VIEW_CONFIG,        /* `key = value` lines */
	VIEW_STATUS,
	VIEW_USAGE,
	VIEW_INFO_JSON,     /* the shim's GET /v1/contexts/{name} */
};

/* The first line of a context's `status`, without loading it (a listing of
 * every context, GET /v1/contexts): a context not loaded has nothing in flight,
 * so it is "idle", or "error" when its newest reply failed or has no end (it
 * loads as interrupted), as the last 64 KiB of its journal say (all of it when
 * they hold no turn); read once, no descriptor kept.  0, -ENOENT. */
int context_status_word(struct store *s, uint64_t id, char *out, size_t outlen);

/* Appends a rendering of a context to out.  0, -ENOENT, -EFBIG, -ENOMEM. */
int context_render(struct store *s, uint64_t id, enum view_kind kind, struct buf *out);

/* Replace the system prompt / model / set config keys (settings lines: the
 * keys named change, the others keep their value).  Durable on return.  On -EINVAL (-EILSEQ, -EFBIG)
 * nothing changed and why says why. */
int context_set_system(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		       size_t whylen);
int context_set_model(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		      size_t whylen);
int context_set_config(struct store *s, uint64_t id, const char *text, size_t len, char *why,
		       size_t whylen);

/* Applies a JSON patch {"system"?, "model"?, "config"?: {key: value}} (HTTP
 * shim); config keys named change, others stay.  All or nothing.  -EINVAL+why. */
int context_patch(struct store *s, uint64_t id, const struct cJSON *patch, char *why,
		  size_t whylen);

/* Stages a user message (the writer's close is validating it).  On the first
 * call *draft is NULL: a pending turn is created and becomes the newest turn
 * (readers of `output` opened from now on wait for its reply).  A later call with
 * the same *draft replaces its text.  The message is durable on return.
 * Returns 0 with *draft left NULL for an empty or all-white-space message
 * (nothing will be sent).  -EFBIG (over max_input_bytes), -EILSEQ (not UTF-8),
 * -ENOSPC or -EIO (the journal could not be written), -ENOENT; on failure why
 * says why and `status` shows it. */
int context_stage(struct store *s, uint64_t id, struct turn **draft, const char *text,
		  size_t len, char *why, size_t whylen);

/* Queues a staged message for sending (the last reference to the writer's file
 * was released).  Consumes the draft reference.  NULL-safe. */
void context_submit(struct store *s, struct turn *draft);

/* Gives up a staged message (a later validation failed): the turn fails with
 * why, nothing is sent.  Consumes the reference.  NULL-safe. */
void context_abandon(struct store *s, struct turn *draft, const char *why);

/* Records why a message was refused before it could be staged (a write past
 * the size limit): `status` shows it until the next message.  -ENOENT. */
int context_reject(struct store *s, uint64_t id, const char *why);

/* Stage + submit in one (the HTTP shim).  *turn_no receives the turn number. */
int context_send(struct store *s, uint64_t id, const char *text, size_t len, uint64_t *turn_no,
		 char *why, size_t whylen);

/* ctl commands.  cancel: ends the call in flight (queued turns are then sent);
 * returns 1 when something was cancelled, 0 when nothing was.  retry: sends the
 * newest turn's message again when that turn failed; -EINVAL otherwise.
 * clear: cancels everything and starts an empty history (the transcript keeps
 * all, marked).  0/1, -ENOENT, -EINVAL + why. */
int context_cancel(struct store *s, uint64_t id);
int context_retry(struct store *s, uint64_t id, char *why, size_t whylen);
int context_clear(struct store *s, uint64_t id);

/* --- output: reading a turn ------------------------------------------------- */

/* A reference to the newest turn (*ret NULL when the context has none yet).
 * 0, -ENOENT. */
int context_output(struct store *s, uint64_t id, struct turn **ret);

/* Copies reply text at off.  Returns bytes (> 0), 0 at the end of a complete
 * reply, -EAGAIN when nothing is there yet and more may come, -EIO when the turn
 * failed and off is at the end of its partial text.  Never blocks. */
ssize_t turn_read(struct store *s, struct turn *t, uint64_t off, void *buf, size_t size);

/* Bytes of text so far. */
uint64_t turn_size(struct store *s, struct turn *t);

/* Turn number and context id: fixed for the turn's life, no lock needed. */
uint64_t turn_number(const struct turn *t);
uint64_t turn_context(const struct turn *t);

struct turn_outcome {
	enum turn_state state;
	char stop_reason[64];
	struct wire_usage usage;
	struct api_error error;  /* when FAILED */
};
void turn_outcome(struct store *s, struct turn *t, struct turn_outcome *out);

struct turn *turn_ref(struct store *s, struct turn *t);
void turn_unref(struct store *s, struct turn *t);  /* NULL-safe */

/* --- the transport's side ---------------------------------------------------- */

/* The network thread reports on a call.  Unknown call ids (a call cancelled
 * meanwhile) are ignored.  store_call_event() returns -ECANCELED when the call
 * is no longer wanted (the transport should abort it). */
void store_call_response(struct store *s, uint64_t call_id, int http_status,
			 const char *request_id);
int store_call_event(struct store *s, uint64_t call_id, const struct wire_event *ev);
/* Observers hear of what store_call_event() changed at the next
 * store_call_flush() (or at any notification before it): the transport flushes
 * after each chunk of bytes it received, so that a reader of `output` is answered
 * once per chunk, not once per event of it. */
void store_call_flush(struct store *s);
/* A new attempt begins after a failure (err describes it); partial state of the
 * failed attempt (never text: attempts are retried only before any text) is
 * dropped. */
void store_call_retry(struct store *s, uint64_t call_id, unsigned attempt,
		      const struct api_error *err, int64_t delay_ms);
/* The call is over: err 0 (message_stop seen), -EIO with e, -ETIMEDOUT,
 * -ECANCELED. */
void store_call_end(struct store *s, uint64_t call_id, int err, const struct api_error *e);

/* Calls in flight (for .status and tests). */
size_t store_calls_in_flight(struct store *s);

#endif
