/* pg_impl.h — the PostgreSQL engine's insides, shared by the files of src/pg/ only:
 * pg_conn.c (connecting, back-off, masking, running statements), pg_store.c
 * (the schema and the storage_ops), pg_feed.c (the listener thread),
 * pg_lease.c (call leases). */
#ifndef MCPFS_PG_IMPL_H
#define MCPFS_PG_IMPL_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "mcpfs/pg.h"

#define PG_CHANNEL "mcpfs"
#define PG_ERR_MAX 512

struct pg_feed {
	pthread_t thread;
	bool started;
	int event_fd; /* the stable wakeup descriptor (eventfd) */
	int stop_fd;  /* written to stop the thread (eventfd) */
	pthread_mutex_t lock;
	struct storage_hint queue[PG_FEED_QUEUE];
	int count;
	bool resync;
	PGconn *conn; /* the LISTEN connection, the thread's own */
};

struct pg_store {
	struct storage base;
	pthread_mutex_t lock; /* the command connection and the fields below */
	char *url;
	char *password; /* to mask in server messages; NULL when none */
	char masked[PG_ERR_MAX / 2];
	PGconn *conn;	      /* NULL while down */
	int64_t retry_at;     /* monotonic ms: no reconnect before */
	int backoff_ms;	      /* next back-off; 0 after a success */
	bool unsynced;	      /* an append without STORAGE_COMMIT since the last commit */
	char err[PG_ERR_MAX]; /* the last connection failure, "" when up */
	/* What pg_store_status() shows, kept apart so that status never waits
	 * for a statement in progress (pg_publish() sets it under p->lock). */
	pthread_mutex_t status_lock;
	bool away; /* p->conn is NULL: calls fail with -EIO until a reconnect */
	char status_line[PG_ERR_MAX + 16];
	struct pg_feed feed;
};

#define LOCKED(p, expr)                                                                            \
	({                                                                                         \
		pthread_mutex_lock(&(p)->lock);                                                    \
		int locked_rc_ = (expr);                                                           \
		pthread_mutex_unlock(&(p)->lock);                                                  \
		locked_rc_;                                                                        \
	})

static inline struct pg_store *pg_of(struct storage *s)
{
	return (struct pg_store *)s;
}

/* A walk of record rows (seq int8, type int2, payload bytea; binary results). */
struct rec_walk {
	storage_record_fn *fn;
	void *data;
	uint64_t last;
	uint64_t rows;
};

/* pg_conn.c */
PGconn *pg_connect(struct pg_store *p, const char *app, char *why, size_t n);
void pg_message(const struct pg_store *p, const char *msg, char *out, size_t n);
int pg_ready(struct pg_store *p);
void pg_publish(struct pg_store *p);
int pg_exec(struct pg_store *p, const char *sql, int nparams, const char *const *values,
	    const int *lengths, const int *formats, int result_binary, PGresult **ret);
int pg_simple(struct pg_store *p, const char *sql);
int pg_single_rows(struct pg_store *p, const char *sql, int nparams, const char *const *values,
		   int result_binary, int (*row_fn)(void *data, PGresult *r), void *data);

/* pg_store.c */
int pg_migrate(struct pg_store *p, char *why, size_t n);
uint64_t pg_u64(PGresult *r, int row, int col);
int pg_on_record_row(void *data, PGresult *r); /* data: a struct rec_walk */
/* A statement on one live context whose rows say it exists: -ENOENT when none. */
int pg_on_context(struct storage *s, const char *sql, uint64_t id, const char *arg);

/* pg_side.c: storage.h's tail and side file; the sweep of hidden contexts */
int pg_tail(struct storage *s, uint64_t id, uint64_t bytes, storage_record_fn *fn, void *data);
int pg_meta_get(struct storage *s, uint64_t id, void **out, size_t *len);
int pg_meta_set(struct storage *s, uint64_t id, const void *data, size_t len);
void pg_sweep_hidden(struct pg_store *p);

/* pg_blob.c: storage.h's blob_* ops; the sweep of contents no context holds */
int pg_blob_put(struct storage *s, uint64_t id, const char *hex, const void *data, size_t n);
long pg_blob_read(struct storage *s, uint64_t id, const char *hex, void *buf, size_t n,
		  uint64_t off);
int pg_blob_stat(struct storage *s, uint64_t id, const char *hex, uint64_t size);
int pg_blob_link(struct storage *s, uint64_t from, uint64_t to, const char *hex);
int pg_blob_sweep(struct storage *s, uint64_t id, bool (*keep)(void *data, const char *hex),
		  void *data);
void pg_blob_orphans_locked(struct pg_store *p);

/* pg_feed.c */
int pg_feed_start(struct pg_store *p);
int pg_feed_run(struct storage *s); /* the storage op `start` */
void pg_feed_stop(struct pg_store *p);
int pg_feed_fd(struct storage *s);
int pg_feed_drain(struct storage *s, struct storage_hint *hints, int max, bool *resync);

/* pg_lease.c */
int pg_lease_acquire(struct storage *s, uint64_t id, const char *holder, uint32_t ttl_ms,
		     struct storage_lease *l);
int pg_lease_renew(struct storage *s, uint64_t id, uint64_t token, uint32_t ttl_ms);
int pg_lease_release(struct storage *s, uint64_t id, uint64_t token);
int pg_lease_break(struct storage *s, uint64_t id, const char *holder);

#endif
