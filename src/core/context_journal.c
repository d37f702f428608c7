/* context_journal.c — appending a record to one context's journal (see
 * store_impl.h; the records are record.h's, the engine storage.h's).
 *
 * Under the store lock.  An append goes through the storage engine
 * (storage_append) when the context is open and no sync runs on it
 * (context_journal_ready); whether it is durable is commit.c's business (the
 * caller syncs, or asks for a sync with the record).  Every append is a change
 * of what the context shows (context_changed), saved or not.  No path nor file
 * descriptor is seen here: they are the engine's.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/clock.h"
#include "store_impl.h"

/* Records can be appended: the context opened, no sync running.  A failed
 * sync the engine could not recover then is recovered by its next append. */
int context_journal_ready(struct store *s, struct context *c)
{
	(void)s;
	if (!c->open)
		return c->broken ? c->broken : -EIO;
	return c->syncing ? -EBUSY : 0;
}

bool store_shared(struct store *s)
{
	return storage_status(s->st, NULL, 0) == 0;
}

void context_journal_applied(struct context *c, uint64_t seq)
{
	if (seq == c->seq + 1 || (seq > c->seq && c->n_own == OWN_MAX)) {
		c->seq = seq; /* (full: what came between is not applied) */
		c->n_own = 0;
	} else if (seq > c->seq) {
		c->own[c->n_own++] = seq; /* records of others before it: the
					     catch-up applies them, then skips it */
	}
}

static int ctx_append(struct context *c, uint16_t type, const char *payload, size_t len,
		      unsigned flags)
{
	struct store *s = c->store;
	int r = context_journal_ready(s, c);
	/* While ends wait for a shared store to come back (commit.c's away
	 * list), nothing goes ahead of them: the records keep their order. */
	if (r == 0 && c->save_away && !c->away_retrying)
		r = -EIO;
	uint64_t seq = c->seq; /* STORAGE_IF_AT: the newest record applied */
	if (r == 0)
		r = storage_append(s->st, c->slot->sid, type, payload, len, flags, &seq);
	if (r == 0)
		context_journal_applied(c, seq);
	if (r == 0 && c->sync_failed_ms && c->sync_recover_err)
		c->sync_recover_err = 0; /* the engine recovered before appending */
	if (r == 0)
		c->modified_ms = clock_wall_ms();
	context_changed(c); /* a record is a change, whether or not it was saved */
	return r;
}

int context_journal_append(struct context *c, uint16_t type, const char *payload, size_t len,
			   bool sync)
{
	return ctx_append(c, type, payload, len, sync ? STORAGE_COMMIT : 0);
}

bool context_journal_shared(const struct context *c)
{
	return storage_feed_fd(c->store->st) >= 0;
}

int context_journal_write_at(struct context *c, uint16_t type, cJSON *payload)
{
	if (!context_journal_shared(c))
		return context_journal_write(c, type, payload, false);
	if (!c->open) {
		cJSON_Delete(payload);
		return -EIO;
	}
	char *text = payload ? cJSON_PrintUnformatted(payload) : NULL;
	cJSON_Delete(payload);
	if (!text)
		return -ENOMEM;
	/* Only right after the newest record applied (c->seq, none of this
	 * daemon's own past it), committed: nothing releases the lock between
	 * the record and the state the caller applies with it. */
	int r = c->n_own ? -EAGAIN
			 : ctx_append(c, type, text, strlen(text), STORAGE_IF_AT | STORAGE_COMMIT);
	free(text);
	return r;
}

int context_journal_write(struct context *c, uint16_t type, cJSON *payload, bool sync)
{
	if (!c->open) {
		cJSON_Delete(payload);
		return -EIO;
	}
	char *text = payload ? cJSON_PrintUnformatted(payload) : NULL;
	cJSON_Delete(payload);
	if (!text)
		return -ENOMEM;
	int r = context_journal_append(c, type, text, strlen(text), sync);
	free(text);
	return r;
}
