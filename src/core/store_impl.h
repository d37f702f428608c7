/* store_impl.h — the store's private structures, shared by the core files
 * that implement store.h (store*.c, context*.c, reply.c, reply_call.c,
 * message.c, summary.c, commit.c, block.c, fork.c, meta.c, spend.c and
 * view.c).  Everything here is under store->lock unless a field says
 * otherwise; each file's declarations are under its name. */
#ifndef MCPFS_CORE_STORE_IMPL_H
#define MCPFS_CORE_STORE_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "mcpfs/blob.h"
#include "mcpfs/record.h"
#include "mcpfs/map.h"
#include "mcpfs/models.h"
#include "mcpfs/record_type.h"
#include "mcpfs/storage.h"
#include "mcpfs/prices.h"
#include "mcpfs/prune.h"
#include "mcpfs/rcache.h"
#include "mcpfs/store.h"
#include "block_impl.h"

#define CHECKPOINT_MS 100 /* longest a received, unread delta waits for disk */
/* A shared store away (storage_status: unreachable): bytes of one reply's text
 * and thinking a call may stream that are not yet in REPLY_PART records; past
 * it the turn fails (store_unreachable) and stops growing.  The unsaved parts
 * and the end are written once appends work again (commit.c: the away list,
 * tried every AWAY_RETRY_MS by a commit thread). */
#define STORE_UNSAVED_MAX (8u << 20)
#define AWAY_RETRY_MS 500
#define PART_MAX (1u << 20) /* text bytes per REPLY_PART record */
#define WHY_MAX 512
#define PAUSE_MAX 3 /* continuations of a reply that ends with pause_turn */
#define OWN_MAX 16  /* local appends kept ahead of the applied position (context.own) */

/* One reply attempt of a turn (an exchange's reply, or a retry of it, or a
 * summary call): what `output` shows.  It was `struct turn`; a turn is the
 * exchange (a message and its reply attempts), numbered for the user. */
struct reply {
	int refs;	  /* the exchange's, readers', the call's */
	uint64_t ctx_id;  /* immutable */
	uint64_t number;  /* immutable: the exchange's turn number */
	unsigned attempt; /* reply attempt of this object (1, 2 after retry) */
	enum reply_state state;
	struct buf text;      /* reply text: what `output` shows */
	struct buf thinking;  /* thinking text, kept for the transcript */
	size_t text_saved;    /* bytes of text already in REPLY_PART records */
	size_t thinking_lead; /* bytes of thinking that came before the first text
				 (the transcript shows them ahead of it) */
	size_t thinking_saved;
	size_t text_synced; /* of those, bytes a journal sync made durable */
	size_t thinking_synced;
	bool end_unsynced;   /* its REPLY_END is appended, not yet durable */
	bool end_deferred;   /* ended; its REPLY_END waits to be appended (the
				journal was busy, or a failed sync lost it) */
	bool end_away;	     /* ended while a shared store was away: its parts
				and REPLY_END wait in the store's away list */
	size_t marks_before; /* a retry's: context->n_marks when it was asked for
				(the transcript shows those marks before it) */
	struct buf part;     /* the last REPLY_PART printed; freed at the end */
	int64_t saved_ms;    /* monotonic time of the last checkpoint */
	char stop_reason[64];
	struct wire_usage usage;
	char model[SETTINGS_MODEL_MAX + 1]; /* the model its call asked for ("" none) */
	struct api_error error;		    /* when FAILED */
	int http_status;
	char request_id[128];
	uint64_t call_id;    /* non-zero while a call is in flight */
	unsigned retries;    /* retries made in this attempt */
	int64_t raw_sent;    /* prune estimate of the request sent */
	uint64_t req_bytes;  /* its body's bytes, and the microseconds it took to */
	int64_t req_us;	     /* build (`status`: turn_request), 0 before a call */
	uint64_t first_turn; /* turn of the first exchange sent, 0 for none */
	int64_t started_ms;  /* wall clock */
	bool models_wait;    /* waiting for the Models API (in store->mwait, which
				holds a reference) before its call is built */
	bool summary_call;   /* a summary call (summary.c), not an exchange's reply */
	bool remote;	     /* a turn another daemon calls (shared engines): no local
				call; it grows by the feed's REPLY_PART records and
				ends with its REPLY_END (store_feed.c) */
	struct context *ctx; /* NULL once the context is deleted */

	/* Every block but plain text (block_impl.h), and pause_turn: */
	struct reply_blocks blocks;
	size_t call_thinking;		/* thinking.len when the current call began */
	uint64_t thinking_read;		/* bytes of thinking a reader was given */
	unsigned continued;		/* calls that continued a pause_turn */
	struct wire_usage paused_usage; /* the usage of the calls before them */

	/* The response cache (store_rcache.c): */
	bool cache_keyed; /* cache_key is its request's */
	bool cache_hit;	  /* answered from the cache, no call */
	uint8_t cache_key[RCACHE_KEY_LEN];
};

/* An attachment of a message, or a file of attach/ (CONTRACT §9). */
struct attachment {
	char *name; /* heap */
	int type;   /* enum attach_type */
	uint64_t size;
	char hash[33]; /* XXH3-128 of the content: its blob's name */
	int64_t raw;   /* token estimate (attach_estimate) */
	char *block;   /* the request's content block, JSON, built at its first
			  call and kept (store_attach.c); NULL until then */
	size_t block_len;
	int lost; /* 0, or -ENOENT/-EBADMSG: its blob is missing or damaged */
};

/* A file of attach/: written in memory, then kept as a blob with an ATTACH
 * record; taken by the next message. */
struct attach_file {
	struct attachment a; /* a.hash once committed */
	uint32_t seq;	     /* its inode's part: never reused in the context */
	int writers;	     /* opens for writing */
	bool dirty;	     /* data holds bytes no blob has yet */
	bool committed;	     /* a blob and an ATTACH record hold it */
	struct buf data;     /* the content while it is open for writing */
	size_t text_valid;   /* text: bytes of data known to be UTF-8 */
	int64_t mtime_ms;
};

struct exchange {
	uint64_t turn;
	struct attachment *att; /* the files sent with the message, in name order */
	size_t n_att;
	char *user; /* heap, NUL-terminated */
	size_t user_len;
	int64_t user_ms;	/* wall clock */
	struct reply *reply;	/* current attempt (ref held); never NULL */
	struct reply **earlier; /* attempts it replaced, oldest first (refs held):
				  the transcript keeps them */
	size_t n_earlier;
	bool clear_before; /* a clear happened just before this exchange */
	bool in_history;   /* pushed into the prune index */
	bool undone;	   /* taken out of the history by `undo` (fork.c): never
			      pushed into it again */
};

struct usage_totals {
	int64_t input, output, cache_creation, cache_read;
	uint64_t calls;
	uint64_t cache_hits; /* turns the response cache answered */
};

/* A context's usage per model its calls asked for (spend.c): what cost_usd
 * and spend_limit_usd are computed from, with the prices in force. */
struct ledger_row {
	char model[SETTINGS_MODEL_MAX + 1];
	struct usage_totals t;
};

/* What every context known to the store costs, loaded or not (100,000
 * contexts listed at start-up must not cost 100,000 full contexts): its id, its
 * name, and the loaded state once its journal was read.  Owned by the store's
 * by_id map; by_name points to the same slot. */
struct store_slot {
	uint64_t id;
	uint64_t sid;	     /* the storage engine's id of the context (storage.h) */
	char *name;	     /* heap; the current name (renames change it) */
	struct context *ctx; /* NULL until first use loads the journal */
	char word[12];	     /* status word read without loading, "" unknown */
	bool creating;	     /* store_create() makes its journal, the lock
				released: store_get() and deletes wait */
	struct cJSON *meta;  /* user metadata (meta.c), an object; NULL for none */
	bool meta_known;     /* meta is read (from the journal or STATE/.../meta) */
};

/* Something the transcript shows between exchanges: a clear, a new system
 * prompt, where a fork came from, an undo.  Marks are kept in the order they
 * happened. */
enum mark_kind { MARK_CLEAR, MARK_SYSTEM, MARK_FORK, MARK_UNDO };
struct mark {
	size_t at; /* shown before exchange `at` (c->n_ex when it came) */
	enum mark_kind kind;
	char *text; /* MARK_SYSTEM: the new prompt (heap); MARK_FORK: the
		       context it was forked from; else NULL */
	size_t len;
	uint64_t turn; /* MARK_FORK: the turn it was forked at; MARK_UNDO: the
			  turn undone */
};

/* A rendering kept until the context changes: `history` and `history.json` are
 * read (and stat'ed, for st_size) far more often than the context changes. */
#define VIEW_CACHED 2 /* VIEW_HISTORY, VIEW_HISTORY_JSON */
struct view_cache {
	char *data;	  /* heap, or NULL for none */
	size_t len;	  /* bytes */
	uint64_t version; /* context->version it was rendered at */
};

/* A loaded context: allocated by context_load(), freed when the context is
 * deleted or the store is freed. */
struct context {
	uint64_t id;		 /* == slot->id */
	struct store_slot *slot; /* the owner; slot->name is the context's name */
	struct store *store;	 /* the store it belongs to */
	bool sync_queued;	 /* in the commit thread's queue */
	bool save_away;		 /* in the store's away list (commit.c) */
	bool away_retrying;	 /* commit.c writes that list's records now */
	bool syncing;		 /* commit_sync runs storage_sync with the lock released:
				    nothing is appended meanwhile (the engine says -EBUSY) */
	int64_t sync_failed_ms;	 /* wall clock of the last failed journal sync, 0 none */
	int sync_failed_err;	 /* its -errno */
	int sync_recover_err;	 /* 0 once the journal was recovered, else -errno */
	int broken;		 /* 0, or the -errno that kept the journal from opening
				    for writing */
	bool open;		 /* storage_open worked: records can be appended */
	uint64_t seq;		 /* the last record seq applied (storage.h): set by the
				    load, by every local append, by a catch-up
				    (store_feed.c) */
	uint64_t own[OWN_MAX];	 /* seqs of local appends past seq + 1 (another daemon's
				    records came between): the catch-up skips them */
	unsigned n_own;
	struct settings settings;
	char *system; /* heap, NUL-terminated, "" for none */
	size_t system_len;
	char *schema; /* heap, NUL-terminated JSON Schema text; NULL for none */
	size_t schema_len;
	struct exchange *ex;
	size_t n_ex, cap_ex;
	size_t hist_start;  /* first exchange after the last clear */
	bool pending_clear; /* the next exchange starts after a clear */
	size_t next_send;   /* every exchange before it has ended */
	struct mark *marks; /* clears and system prompts, in order (transcript) */
	size_t n_marks, cap_marks;
	struct prune_index prune; /* complete exchanges since hist_start */
	uint64_t floor_turn;	  /* loading: first_turn of the last call */
	size_t *hist;		  /* prune index position -> exchange index */
	size_t hist_cap;
	struct reply *active; /* the turn with a call in flight */
	struct reply *newest; /* what `output` opens (ref held) */
	uint64_t next_turn;
	int64_t created_ms, modified_ms;
	struct usage_totals totals;
	struct wire_usage last_usage;
	char last_model[SETTINGS_MODEL_MAX + 1]; /* the model of last_usage's call */
	struct ledger_row *ledger;		 /* heap, n_ledger rows (spend.c) */
	size_t n_ledger;
	bool last_hit;	       /* the last turn ended was a response cache hit */
	char note[WHY_MAX];    /* a journal problem not tied to a turn (it
				  cannot be opened, a reply cannot be saved),
				  "" for none */
	char refused[WHY_MAX]; /* the last refused write or close, "" for none */
	int64_t refused_ms;    /* wall clock of that refusal */
	struct storage_report report;
	uint64_t version; /* bumped by context_changed() on every change */
	struct view_cache views[VIEW_CACHED];
	/* summary.c: the rolling summary and its call */
	char *summary; /* heap, NUL-terminated; NULL for none */
	size_t summary_len;
	uint64_t summ_first, summ_last;		 /* turns it covers; 0 0: none named */
	struct reply *summ_call;		 /* the summary call in flight (ref held) */
	size_t summ_cut;			 /* the floor its success moves to */
	uint64_t summ_cut_turn;			 /* the turn of the last exchange it folds */
	bool summ_compact;			 /* asked for by ctl compact */
	bool summ_drop;				 /* a summary call failed: the next cut drops */
	bool summ_unsaved;			 /* its SUMMARY record waits for the journal */
	struct wire_usage summ_usage;		 /* ... with the usage of the call that made it */
	char summ_model[SETTINGS_MODEL_MAX + 1]; /* ... and its model */
	char summ_error[WHY_MAX];		 /* the last failed summary call, "" none */
	struct attach_file *files;		 /* attach/, in name order */
	size_t n_files, cap_files;
	uint32_t attach_seq; /* the last attach_file.seq given */
	/* store_lease.c: the call lease (shared engines only) */
	uint64_t lease_token;	  /* the lease held, 0 none */
	int64_t lease_renewed_ms; /* monotonic time of its last renewal */
	bool lease_wait;	  /* a turn waits: another daemon holds it */
	bool lease_lost;	  /* a renew found it taken over: the call ends */
	int64_t lease_free_ms;	  /* takeover scan: monotonic time a remote turn in
				     flight was first seen with its lease free, 0 */
	uint64_t takeover_turn;	  /* a remote turn whose daemon stopped: the pump
				     ends it interrupted (the lease held), 0 none */
	unsigned takeover_attempt;
	char takeover_from[STORAGE_MAX_HOLDER]; /* the holder that stopped, "" */
};

/* Every change of what a context shows (a message, a reply's end, settings, the
 * pruning floor or calibration, a clear) must call this before the lock is
 * released, or a cached rendering outlives it. */
static inline void context_changed(struct context *c)
{
	c->version++;
}

#define STORE_OBSERVERS 4
#define INFO_KEYS 4

/* Changes to announce to the observers once the lock is released (notes_add,
 * store_unlock_notify): at most NOTES_MAX contexts; a ninth is not announced. */
#define NOTES_MAX 8
struct notes {
	uint64_t id[NOTES_MAX];
	unsigned what[NOTES_MAX];
	int n;
};

/* Calls from the bottom of the core up to its top, set by store_open_on()
 * (store_open.c): store_get() (store.c) loads a context it
 * has not loaded yet, and an answer of the Models API (store_models.c) resumes
 * the turns that waited for it.  A lower file calls them; it never names the
 * functions behind them.  Why: store_get() is how every file finds a context
 * by id, and loading one needs every record owner (blocks, fork, meta,
 * summary, turns), all above the store; what a Models answer resumes is the
 * call machinery above store_models.c.  The observer pattern the store uses
 * outward (store_observe), turned inward once (HACKING.md "Circles"). */
#define LEASE_TTL_MS 10000  /* a call lease lives this long unless renewed */
#define LEASE_RENEW_MS 3000 /* renewed this often while a call runs */
#define LEASE_SCAN_MS 2000  /* remote turns in flight checked this often */

/* store_lease.c's state (shared engines; `on` false otherwise). */
struct store_lease {
	bool on;			 /* the engine has leases and a feed */
	char holder[STORAGE_MAX_HOLDER]; /* this daemon's name: host:pid:random */
	pthread_t thread;		 /* the tick: renewals, waiting turns */
	bool running, stop;
	pthread_cond_t wake; /* CLOCK_MONOTONIC; with lock */
	uint64_t *ids;	     /* contexts holding or waiting for their lease */
	size_t n, cap;
	int64_t scanned_ms; /* monotonic time of the last takeover scan */
};

struct store_hooks {
	int (*load)(struct store *s, struct store_slot *slot);		   /* context_load */
	void (*pump)(struct store *s, struct context *c, struct notes *n); /* reply_call_pump */
	int (*catch_up)(struct store *s, struct context **cp,
			struct notes *n); /* store_feed_catch_up */
};

struct store {
	pthread_mutex_t lock;
	pthread_mutex_t defaults_lock; /* saving .config (taken before lock) */
	struct storage *st;	       /* where contexts are kept (storage.h) */
	bool own_st;		       /* store_open made it: store_free frees it */
	char *where;		       /* the state, named in messages (NULL: in memory) */
	struct map by_name;	       /* name -> struct store_slot */
	struct map by_id;	       /* id -> struct store_slot (owner) */
	struct map calls;	       /* call id -> struct reply */
	uint64_t next_id;
	uint64_t next_call;
	struct settings defaults; /* root .config */
	const struct transport_ops *ops;
	void *ops_impl;
	struct {
		store_observer_fn *fn;
		void *data;
	} obs[STORE_OBSERVERS];
	int n_obs;
	char info_key[INFO_KEYS][16];
	char info_val[INFO_KEYS][256];
	int64_t started_ms;
	struct notes held; /* reply_call_event()'s, until reply_call_flush() */
	/* commit.c: journal syncs run with the lock released */
	pthread_cond_t synced;	    /* broadcast whenever a journal sync ends */
	pthread_cond_t commit_wake; /* the commit threads' queue has work, or stop */
	uint64_t *commit_q;	    /* ids of contexts with an unsynced reply end */
	size_t commit_n, commit_cap;
	int committers;	  /* commit threads running (0: sync under the lock) */
	uint64_t *away_q; /* ids of contexts with a reply end that waits for a
			     shared store to come back (context_save_away) */
	size_t away_n, away_cap;
	bool commit_stop;
	char refused[WHY_MAX];	    /* the last refused write of .config, "" for none */
	int64_t refused_ms;	    /* wall clock of that refusal */
	uint64_t reserved;	    /* bytes storage_reserve holds: every writer's */
	struct models models;	    /* the Models API's answers (store_models.c) */
	pthread_cond_t models_cond; /* broadcast at each answer; with lock */
	struct reply **mwait;	    /* turns waiting for an answer (a reference each) */
	size_t n_mwait, cap_mwait;
	struct prices prices;  /* what cost_usd is computed with (store_set_prices) */
	struct rcache *rcache; /* the response cache, NULL when unavailable */
	int rcache_err;	       /* then why: -errno */
	int64_t rcache_bytes;  /* its bound: `.config` response_cache_bytes */
	/* Set by store_open_on(), called from below (struct store_hooks). */
	struct store_hooks hooks;
	struct store_lease lease; /* store_lease.c */
	/* store_feed.c: the feed thread of a shared engine (not under lock:
	   set before it starts, read after it stopped, but feed_pos: its own) */
	pthread_t feed_thread;
	bool feed_running;
	int feed_stop[2];   /* a pipe: store_feed_stop() writes, the thread polls */
	uint64_t feed_pos;  /* the storage_changes() position it has seen */
	uint64_t names_gen; /* bumped (under lock) by every local create, rename,
			       delete: a feed scan that saw it change meanwhile
			       read a stale list, and reads again */
};

void notes_add(struct notes *n, uint64_t id, unsigned what);

/* store_lease.c (see there).  start: by store_open_on(), a no-op for an engine
 * without leases; stop: by store_free(), leases given back.  take: before a
 * call, under the lock: 0 (held, or no leases), 1 (another daemon holds it:
 * the turn waits, tried again by the tick), -errno with why.  idle: the
 * context has no call in flight: its lease is given back.  forget: the
 * context goes (deleted, unloaded). */
int store_lease_start(struct store *s);
void store_lease_stop(struct store *s);
int store_lease_take(struct store *s, struct context *c, char *why, size_t whylen);
void store_lease_idle(struct store *s, struct context *c);
void store_lease_forget(struct store *s, struct context *c);
/* Unlocks the store and calls the observers for each note, and for the held
 * ones. */
void store_unlock_notify(struct store *s, struct notes *n);
/* Loads slot->ctx through s->hooks.load unless it is loaded (waiting first
 * for a slot store_create() is making).  With the lock.  0, -ENOENT (the slot
 * went), -ENOMEM. */
int store_load(struct store *s, struct store_slot *slot);
/* A new slot, not loaded, in both maps (store_open.c's listing and creates,
 * store_slot_reserve); NULL when out of memory. */
struct store_slot *store_slot_add(struct store *s, const char *name, uint64_t sid);
/* Frees a slot out of both maps; its context is freed first by the caller
 * (context_free), or it has none. */
void store_slot_free(struct store_slot *slot);
/* While slot (of id) is being created, waits (releasing the lock); the slot
 * then, or NULL when its creation failed or it was deleted. */
struct store_slot *store_slot_wait(struct store *s, struct store_slot *slot, uint64_t id);

/* store_models.c */
void store_models_init(struct store *s);
void store_models_load(struct store *s);
void store_models_done(struct store *s);
/* Before a turn's call is built: 0 with *caps (NULL: none known; borrowed until
 * the lock is released), 1 when the turn now waits for the Models API (its
 * state WAITING, c->active set, resumed by an answer), -EINVAL with why when
 * the model is retired. */
int store_models_ready(struct store *s, struct context *c, struct reply *t,
		       const struct model_caps **caps, char *why, size_t whylen);
/* A waiting turn ends (reply_end): it leaves the wait list. */
void store_models_unwait(struct store *s, struct reply *t);
/* `status` lines about the context's model: model_check, lifecycle, ignored. */
int store_models_status(struct store *s, const struct context *c, struct buf *out);

/* spend.c: costs and spending limits (CONTRACT §10, Cost). */
/* Usage totals, the ledger and the pruning calibration learn from t's ended
 * call (a cache hit counts as one, without tokens). */
void context_account(struct context *c, struct reply *t);
/* Counts a call's usage under its model (t->model, else the context's). */
void context_ledger_add(struct context *c, const struct reply *t);
void context_ledger_done(struct context *c);
/* The context's settings for a new context or a replaced config: the root
 * defaults, without the root's spend_limit_usd (which is the limit of all
 * contexts together, not each one's). */
struct settings store_context_defaults(const struct store *s);
/* `usage`'s cost lines, and the cost members of a JSON usage object. */
int context_render_cost(const struct store *s, const struct context *c, struct buf *out);
void context_cost_json(const struct store *s, const struct context *c, struct cJSON *usage);
/* store_rcache.c: the response cache. */
/* Opens STATE/cache into s->rcache (NULL, with rcache_err, when it cannot). */
void store_rcache_open(struct store *s);
/* Applies a `.config` text: response_cache_bytes into *bytes, every other key
 * into d (settings_parse).  All or nothing.  0, -EINVAL/-EFBIG + why. */
int store_defaults_parse(struct settings *d, int64_t *bytes, const char *text, size_t len,
			 char *why, size_t whylen);
/* `response_cache_bytes = N` for `.config` and STATE/config. */
int store_rcache_render(struct store *s, int64_t bytes, struct buf *out);
/* `.status`'s response_cache lines. */
int store_rcache_status(struct store *s, struct buf *out);
/* Before t's call: keys t by its request body; with the context's
 * response_cache on, a first attempt whose request was answered before with
 * end_turn is answered now from the cache (true: no call to make; the caller
 * ends t, done). */
bool store_rcache_answer(struct store *s, struct context *c, struct reply *t, const char *body,
			 size_t len, struct notes *n);
/* t ended done: its reply is kept in the cache when it ended with end_turn. */
void store_rcache_keep(struct store *s, struct reply *t);

/* store.c */
struct context *store_get(struct store *s, uint64_t id); /* loaded (now if need be), or NULL */
/* Takes name for a context whose directory is made with the lock released
 * (fork.c): a slot marked creating, which store_get() and deletes wait for.
 * Under the lock; NULL when out of memory.  store_slot_settle() ends it (under
 * the lock): r == 0 keeps the slot (its journal loads at first use) with the
 * engine's id sid, else the slot is dropped. */
struct store_slot *store_slot_reserve(struct store *s, const char *name);
void store_slot_settle(struct store *s, uint64_t slot_id, uint64_t sid, int r);
/* What `.status` and messages call the state directory: store_open_on's
 * where ("(in memory)" without one). */
const char *store_state_dir(struct store *s);

/* context_load.c: a context's life (made from its records, adopted, freed). */
/* Reads the slot's journal (creating it when the directory has none) into a
 * new slot->ctx.  0, -ENOMEM (slot->ctx stays NULL); a journal that cannot be
 * opened still loads, with ctx->broken set. */
int context_load(struct store *s, struct store_slot *slot);
/* The payload of a new context's CREATE record (st, created_ms): heap, NULL
 * when out of memory. */
char *context_create_payload(const struct settings *st, int64_t created_ms);
/* Makes slot->ctx a new, empty context whose CREATE storage_create just
 * committed.  0, -ENOMEM (it loads at first use). */
int context_adopt(struct store *s, struct store_slot *slot, const struct settings *st,
		  int64_t created_ms);
/* Applies one record another daemon appended (seq c->seq + 1; store_feed.c)
 * as the loader applies it, then does what a local change of its kind does
 * after it (history, `output`'s turn, the queue), adding what changed to n.
 * Under the lock.  0, -ENOMEM (the record is not applied). */
int context_apply_live(struct store *s, struct context *c, uint16_t type, const void *payload,
		       size_t len, struct notes *n);
/* Frees a context's memory and detaches its turns from it (readers keep theirs);
 * writes nothing: turns still live at a shutdown load as interrupted. */
void context_free(struct store *s, struct context *c);

/* store_feed.c: a shared engine's changes, applied live (pg-plan §2). */
/* Brings *cp up to the records other daemons appended after c->seq: loads
 * them with the lock released, then applies them in order under it
 * (context_apply_live), adding the changes to n.  With the lock held on entry
 * and on return; *cp is looked up again (NULL and -ENOENT when the context was
 * deleted or unloaded meanwhile).  An engine without a feed: 0 at once.  0,
 * -ENOMEM, or the engine's -errno (what was applied stays). */
int store_feed_catch_up(struct store *s, struct context **cp, struct notes *n);
/* The feed thread: started by store_open_on() when the engine has a feed
 * (storage_feed_fd() >= 0), stopped by store_free() before anything is freed. */
int store_feed_start(struct store *s);
void store_feed_stop(struct store *s);

/* context.c: one loaded context's settings and history. */
int context_exchange_push(struct context *c, uint64_t turn, const char *text, size_t len,
			  struct reply **ret);
void context_history_push(struct context *c, size_t ex_index);
/* Records a clear or a new system prompt (text copied) for the transcript. */
int context_mark(struct context *c, enum mark_kind kind, const char *text, size_t len);
int context_save_settings(struct context *c, const struct settings *st, const char *system,
			  size_t system_len);
/* The payload of a SETTINGS record, or with created_ms >= 0 of a CREATE ("v"
 * and "created_ms", record_settings_json): st, the system prompt, the schema
 * (NULL or "": none).  NULL when out of memory. */
struct cJSON *settings_record(const struct settings *st, const char *system, const char *schema,
			      int64_t created_ms);
/* The payload of a USER record, with the "attach" list of att (n_att of them;
 * none when 0).  NULL when out of memory. */
struct cJSON *user_payload(uint64_t turn, const char *text, size_t len, int64_t ms,
			   const struct attachment *att, size_t n_att);
/* Raw token estimate of exchange e (message, reply, attachments). */
int64_t exchange_raw(const struct exchange *e);
/* Puts a new attempt in place of exchange e's reply, keeping the old one among
 * e->earlier.  0, -ENOMEM. */
int exchange_replace(struct context *c, struct exchange *e, struct reply *t);
/* Frees the cached renderings (view.c makes them). */
void context_views_done(struct context *c);

/* context_journal.c: appending to one context's journal (storage_append). */
/* Records can be appended now: 0, -EBUSY (a sync runs), or why not. */
int context_journal_ready(struct store *s, struct context *c);
/* Appends a record to the context's journal: payload printed (and deleted), or
 * payload bytes as they are; with sync, the engine commits it at once. */
int context_journal_write(struct context *c, uint16_t type, struct cJSON *payload, bool sync);
/* The context's engine is shared: other daemons append to it (it has a feed). */
bool context_journal_shared(const struct context *c);
/* A record whose content depends on the context's state (USER, CLEAR, RETRY,
 * UNDO: turn numbers; pg-plan §4).  On a shared engine it is appended only
 * right after the newest record applied (STORAGE_IF_AT with c->seq) and
 * committed (durable on return: the caller does not sync); -EAGAIN when
 * another daemon's record came first: the caller catches up
 * (context_renumber) and numbers it again.  Else context_journal_write
 * without sync.  Takes payload. */
int context_journal_write_at(struct context *c, uint16_t type, struct cJSON *payload);
/* After -EAGAIN from context_journal_write_at: the context caught up
 * (store_feed_catch_up; the lock released meanwhile, *cp looked up again) and
 * no sync running.  0: number again; -EIO after NUMBER_TRIES; -ENOENT, -errno. */
#define NUMBER_TRIES 8
int context_renumber(struct store *s, struct context **cp, unsigned *tries, struct notes *n);
int context_journal_append(struct context *c, uint16_t type, const char *payload, size_t len,
			   bool sync);
/* A local append got seq: the applied position moves to it when it is the
 * next one, else it is kept in c->own for the catch-up to skip. */
void context_journal_applied(struct context *c, uint64_t seq);

/* fork.c: the records a loader hands over (UNDO, FORKED_FROM, decoded by
 * record.h): -EINVAL for an UNDO that names no turn of the context (a bad
 * record).  *undo_last is
 * set when the undo leaves `output` on the history's newest reply (no message
 * was being written). */
int context_load_undo(struct context *c, uint64_t turn, bool *undo_last);
void context_load_origin(struct context *c, const char *from, uint64_t turn);
/* `output` after an undo: the reply of the history's newest exchange, or none;
 * a message being written stays what `output` waits for. */
void context_undo_newest(struct context *c);

/* commit.c: a context's durability (the engine's storage_sync). */
/* Waits (lock released) until no sync runs on c's journal; *cp is looked up
 * again afterwards.  0, -ENOENT (deleted meanwhile). */
int commit_sync_idle(struct store *s, struct context **cp);
/* Makes what c's journal holds durable, the lock released during the fsync; *cp
 * is looked up again (NULL and -ENOENT when deleted meanwhile).  0, or the sync's
 * -errno: then every record since the last good sync is gone (the journal was
 * recovered, or stays failed until the next commit recovers it). */
int commit_sync(struct store *s, struct context **cp, struct notes *n);
/* A reply's end was appended: a commit thread syncs it (readers see EOF once it
 * is durable); without commit threads it is synced now, under the lock. */
void commit_sync_later(struct store *s, struct context *c, struct notes *n);
/* Saves t's end: appends REPLY_END (deferred while a sync runs) and has it
 * synced. */
void commit_save_end(struct store *s, struct context *c, struct reply *t, struct notes *n);
/* After a load: everything read is durable. */
void commit_mark_synced(struct context *c);
/* The context is deleted: no end will be synced, and none is waited for (a
 * complete reply's reader sees its end). */
void commit_drop_ends(struct context *c);

/* store.c: gives the space *held holds back (to the journal record written
 * next, under the same lock); sets *held to 0.  Under the lock. */
void store_reserve_give_back(struct store *s, uint64_t *held);

/* store_attach.c: the attach/ side of a context (store_attach.h is the API). */
/* A loader's ATTACH, DETACH and the "attach" list of a USER record. */
void attach_load_record(struct context *c, uint16_t type, const char *name, const struct cJSON *o);
void attach_load_user(struct context *c, struct exchange *e, const struct cJSON *arr);
/* After a load: blobs checked (lost ones marked), unreferenced ones swept (the
 * state-dir engine shares an earlier version's own copy on the way). */
void attach_loaded(struct store *s, struct context *c);
/* Removes the context's links to blobs no turn of the history nor attach/
 * refers to (a clear), and a shared copy with its last link. */
void attach_gc(struct store *s, struct context *c);
/* The "attach" list of a USER record for the n attachments att
 * (record_attach_list_json).  NULL when out of memory. */
struct cJSON *attach_list_json(const struct attachment *att, size_t n);
/* Moves the committed, closed files of attach/ out (a message is being staged)
 * into *att (heap, n entries, in name order; NULL and 0 for none); a message
 * that could not be saved gives them back (attach_untake).  0, -ENOMEM. */
int attach_take(struct context *c, struct attachment **att, size_t *n);
void attach_untake(struct context *c, struct attachment *att, size_t n);
/* Raw token estimate of e's attachments. */
int64_t attach_raw(const struct exchange *e);
/* The request block of a, built now if need be (a blob read, base64): 0, or
 * -errno with why (a lost blob gives a text block saying so, and 0). */
int attach_block(struct store *s, struct context *c, struct attachment *a);
/* -ENOTSUP with why when caps say the model takes no image or PDF input and
 * one of e's attachments is one. */
int attach_caps_check(const struct exchange *e, const struct model_caps *caps, const char *model,
		      char *why, size_t whylen);
/* `[attached: report.pdf, PDF, 1.2 MiB]` lines; JSON "attachments". */
int attach_render_lines(const struct exchange *e, struct buf *out);
int attach_render_json(const struct exchange *e, struct cJSON *msg);
/* `status` lines about attach/ and lost blobs. */
int attach_status(const struct context *c, struct buf *out);
void attachment_free(struct attachment *a);
void attach_files_free(struct context *c);
/* A new, empty file of attach/ in name order (no check of name nor of the
 * count); NULL on -ENOMEM.  attach_file_drop frees f and takes it out. */
struct attach_file *attach_file_new(struct context *c, const char *name);
void attach_file_drop(struct context *c, struct attach_file *f);
/* fork.c: links the blobs the "attach" lists name (n lists, NULL ones
 * skipped) from storage context from_sid into to_sid (storage_blob_link),
 * durably.  A blob the source no longer has is left out: the fork loads it as
 * lost, as the source does.  0, -errno. */
int attach_fork_links(struct store *s, uint64_t from_sid, uint64_t to_sid,
		      const struct cJSON *const *lists, size_t n);
/* Reads c's blob hash of size bytes into out (appended) and checks its size
 * and hash: 0, -ENOENT (missing), -EBADMSG (damaged), -errno (-ENOTSUP: the
 * engine keeps no blobs). */
int attach_blob_get(struct store *s, struct context *c, const char *hash, uint64_t size,
		    struct buf *out);

/* summary.c (see there).  summary_before: before exchange k's call is built;
 * 1 when a summary call started and the turn waits for it.  summary_call_end:
 * reply_end() of a summary call.  summary_raw: the raw estimate of the summary
 * block (0 for none); summary_block appends its text as sent. */
extern const char summary_prompt_default[];
int summary_before(struct store *s, struct context *c, size_t k, struct notes *n);
int summary_start(struct store *s, struct context *c, size_t cut, const char *focus, size_t flen,
		  bool compact, struct notes *n);
void summary_call_end(struct store *s, struct reply *t, struct notes *n);
/* The summary call to end when the context's calls are cancelled (the caller
 * ends it, failed with "cancelled"), NULL for none. */
struct reply *summary_cancel(struct context *c);
/* A summary's text for `summary`: -EFBIG (over SUMMARY_MAX), -EILSEQ, with why. */
int summary_check(const char *text, size_t len, char *why, size_t whylen);
/* Replaces c's summary by text (len 0: none) and saves it, a SUMMARY record
 * synced (*cp looked up again, NULL when deleted meanwhile).  No sync nor
 * summary call runs.  0, or -errno (why set when it could not be saved); on a
 * failure the old summary stays. */
int summary_write(struct store *s, struct context **cp, const char *text, size_t len, char *why,
		  size_t whylen, struct notes *n);
void summary_flush(struct store *s, struct context *c, struct notes *n);
int64_t summary_raw(const struct context *c);
int summary_block(const struct context *c, struct buf *out);
void summary_forget(struct context *c);
int summary_adopt(struct context *c, const char *text, size_t len, uint64_t first, uint64_t last);
void summary_after_load(struct context *c);
/* fork.c: the SUMMARY payload a fork up to turn upto starts with (heap, *out
 * NULL when the context has no summary or it covers turns past upto).  0, or
 * -ENOMEM. */
int summary_fork_payload(const struct context *c, uint64_t upto, char **out);
int summary_render_history(const struct context *c, struct buf *out);
int summary_json(const struct context *c, struct cJSON *o);
int summary_status(const struct context *c, struct buf *out);
/* meta.c: loading a journal sets the slot's metadata from its META records
 * (the last wins) and rewrites the context's side file (storage_meta_set)
 * when it differs. */
void meta_load_begin(struct store_slot *slot);
void meta_load_record(struct store_slot *slot, const struct cJSON *meta);
void meta_load_end(struct store *s, struct store_slot *slot);
/* A copy of the slot's metadata as a JSON object ({} for none), NULL when out
 * of memory. */
struct cJSON *meta_copy(const struct store_slot *slot);
/* The slot's metadata as the payload of a META record and the text of the
 * meta file (heap); NULL for none or when out of memory (fork.c). */
char *meta_payload(const struct store_slot *slot);

/* reply.c.  reply_ref()/reply_unref() with a NULL store mean "the lock is held". */
struct reply *reply_new(struct context *c, uint64_t number, unsigned attempt);
int reply_end_record(struct context *c, struct reply *t, bool sync);
/* The payload of attempt t's REPLY_END (t has ended).  NULL when out of memory. */
struct cJSON *reply_end_payload(const struct reply *t);
/* The REPLY_END of t as a record (record.h), for a writer that changes some. */
void reply_end_fields(const struct reply *t, struct record_end *e);
/* Appends a REPLY_PART with what is not saved yet (and the blocks after it).
 * 0 (also when it cannot now: no journal, a sync runs); the append's -errno
 * when it failed (text_saved shows what is written; the next checkpoint
 * tries again); -ENOBUFS when a shared store is away and more than
 * STORE_UNSAVED_MAX bytes wait (the caller fails the turn). */
int reply_checkpoint(struct reply *t, bool sync);
/* context_journal.c: whether the engine is a shared one (it has a status
 * line, storage_status). */
bool store_shared(struct store *s);
/* true when the reply may go into the history: complete, with text, and not a
 * refusal (the API wants a refused exchange left out). */
bool reply_in_history(const struct reply *t);

/* reply_call.c: a turn's call.  reply_call_pump starts the next queued turn's call
 * when none is in flight; reply_end ends t (its call cancelled, the history,
 * the accounts, the cache and its end record updated). */
/* Cancels the call in flight and fails every queued turn with why; 1 if any. */
int reply_call_stop_all(struct store *s, struct context *c, const char *why, struct notes *n);
void reply_end(struct store *s, struct reply *t, enum reply_state st, const struct api_error *e,
	       struct notes *n);
void reply_call_pump(struct store *s, struct context *c, struct notes *n);

#endif
