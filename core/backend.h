/* backend.h -- the storage interface: a versioned table of functions that a
 * backend fills (core/sqlite/, core/postgres/).
 *
 * The domain layer (store.c, run.c, record.c, read.c, ...) validates input,
 * keeps run totals, makes ids and ticks, and turns rows into records
 * (core/rows.c); a backend only stores and loads rows. Nothing outside a
 * backend's folder includes its client library's header.
 *
 * Contracts shared by every member:
 * - Each returns an AR_ code and fills `err` (code and message) on failure;
 *   messages never show a password.
 * - A failed write leaves nothing behind: the caller's transaction is rolled
 *   back by txn_rollback, and the one-call writes (step_append, ...) are each
 *   one transaction of their own.
 * - Rows handed to a visitor, or filled into a row struct, point into the
 *   backend's buffers: valid until the visitor returns, or until the next
 *   call on the same ar_db. Text is as stored (not checked: the core checks
 *   UTF-8, NUL bytes and JSON when it turns a row into a record, and names
 *   the damaged field). A visitor returning non-zero stops the scan, and the
 *   member returns that code (err as the visitor left it).
 * - Connection faults: a backend whose connection can drop (PostgreSQL)
 *   fails only the call made while it is down (AR_EIO) and reconnects on the
 *   next call; a commit cut off is resolved before returning (the write is
 *   there once and AR_OK, or it is not and AR_EIO). */
#ifndef AR_BACKEND_H
#define AR_BACKEND_H

#include <stdint.h>
#include <stddef.h>

#include "agentrun.h"

/* A backend's open store; each backend defines the struct. */
typedef struct ar_db ar_db;
struct ar_err;

/* Text as stored: s NULL is NULL; otherwise len bytes (may hold NUL bytes
 * when the backend allows them; s[len] need not be NUL). */
typedef struct ar_db_text {
    const char *s;
    size_t len;
} ar_db_text;

/* ---- rows written ------------------------------------------------------- */

/* A step as stored: usage split into columns, extra counters as JSON text. */
typedef struct ar_db_step {
    int64_t seq;
    const char *kind, *name;
    const char *content; size_t content_len;   /* NULL: JSON null */
    int64_t input_tokens, output_tokens, cost_nanos;
    const char *extra; size_t extra_len;       /* counters object or NULL */
    int64_t duration_ms, at;
} ar_db_step;

/* A run's columns that change as it goes. */
typedef struct ar_db_progress {
    int64_t iterations, input_tokens, output_tokens, cost_nanos;
    const char *extra; size_t extra_len;
    int64_t elapsed_ms, updated_at;
} ar_db_progress;

/* A run row as inserted (begin or write). `n` is the id's tick, the run's
 * key: the table's order is the runs' time order. */
typedef struct ar_db_run {
    int64_t n;
    const char *id, *agent, *goal, *user, *edition, *parent, *metadata;
    const char *budget;                        /* JSON text */
    ar_status status;
    const char *output; size_t output_len;
    const char *error;
    const char *limit_name; double limit_value, limit_reached;
    ar_db_progress progress;
    int64_t created_at, finished_at;           /* finished_at AR_UNSET while running */
    int written;    /* 1: a record written whole (store:write, import) that keeps its id and
                       key, so it is never refused for ordering (only for a taken key) */
    const char *forked_from; int64_t forked_seq;   /* a fork's origin; NULL and 0 otherwise */
    const char *request; size_t request_len;       /* a run that waited: JSON text or NULL */
    const char *response; size_t response_len;
} ar_db_run;

/* How a run ends. */
typedef struct ar_db_finish {
    ar_status status;
    const char *output; size_t output_len;
    const char *error;
    const char *limit_name; double limit_value, limit_reached;
    int64_t finished_at, elapsed_ms;
} ar_db_finish;

/* ---- rows read ---------------------------------------------------------- */

/* A run row as loaded. Times AR_UNSET where the column is NULL; limit_value
 * and limit_reached 0 where NULL. */
typedef struct ar_db_run_row {
    int64_t n;                                 /* the key */
    int64_t owner;                             /* the ownership epoch */
    ar_db_text id, agent, goal, user, edition, parent, status;
    ar_db_text output, error, limit_name, budget, counters, metadata;
    double limit_value, limit_reached;
    int64_t iterations, input_tokens, output_tokens, cost_nanos, elapsed_ms;
    int64_t created_at, finished_at, updated_at;
    ar_db_text forked_from, request, response;
    int64_t forked_seq;                        /* 0 where NULL */
} ar_db_run_row;

/* A step row as loaded. */
typedef struct ar_db_step_row {
    int64_t seq;
    ar_db_text kind, name, content, counters;
    int64_t input_tokens, output_tokens, cost_nanos, duration_ms, at;
} ar_db_step_row;

/* An event row as loaded. */
typedef struct ar_db_event_row {
    int64_t id, session, at;
    ar_db_text agent, type, content, metadata, run;
} ar_db_event_row;

/* Sums over runs, exact: a backend sums in a type that cannot overflow and
 * saturates to INT64_MAX; cost_approx is the nearest double of the nano sum
 * (used when cost_nanos saturated). */
typedef struct ar_db_stats {
    int64_t runs;
    int64_t by_status[6];                      /* indexed by ar_status */
    int64_t iterations, input_tokens, output_tokens, cost_nanos;
    double cost_approx;
    double avg_latency_ms;                     /* over finished runs; 0 when none */
} ar_db_stats;

/* One considered run as the retention scan yields it. */
typedef struct ar_db_retain_row {
    int64_t n;                  /* the run's key */
    int64_t iterations;         /* the run's step count, to size deletion batches */
    int64_t rank;               /* 1 = newest considered run of its agent; 0 when not ranked */
    int64_t ended_at;           /* finished_at, or updated_at for a run marked interrupted without one */
    const ar_db_run_row *run;   /* the whole row when asked for, else NULL */
} ar_db_retain_row;

/* The space a store takes, for retention reports and info(). */
typedef struct ar_db_sizes {
    int64_t file_bytes;         /* the store's data: a file, or its tables and indexes */
    int64_t wal_bytes, free_bytes;  /* 0 where the backend has no such thing */
} ar_db_sizes;

typedef int (*ar_db_run_visit)(void *ud, const ar_db_run_row *row);
typedef int (*ar_db_step_visit)(void *ud, const ar_db_step_row *row);
typedef int (*ar_db_event_visit)(void *ud, const ar_db_event_row *row);
typedef int (*ar_db_type_visit)(void *ud, ar_db_text type, int64_t count);
typedef int (*ar_db_retain_visit)(void *ud, const ar_db_retain_row *row);

/* Returned by run_insert: another run already has this key, or (a backend
 * whose writers are on many hosts) a run with a key >= this one exists, so
 * this one would sort before rows a reader may have paged past. *min_key
 * gets the smallest key that would be accepted; the core makes a new id
 * with a tick >= it and tries again. err untouched. */
#define AR_DB_CONFLICT 100
/* A fenced write changed nothing: the run is no longer running under the
 * handle's owner epoch (resumed elsewhere, or marked interrupted); err holds
 * why, with code AR_ESTATE. */
#define AR_DB_LOST 101

/* Runs deleted per transaction at most by retention: each transaction stays
 * short so that other writers get their locks within their busy timeout. */
#define AR_DB_RETAIN_BATCH 500

/* ---- the table ---------------------------------------------------------- */

#define AR_BACKEND_VERSION 2

typedef struct ar_backend {
    unsigned int version;       /* AR_BACKEND_VERSION: the layout below */
    const char *name;           /* "sqlite", "postgresql": info().backend */

    /* ---- the store (all required) ---- */

    /* Opens (creating the schema when missing and writable, migrating an
     * older one in one transaction) the store at `location`. *out is set
     * (NULL when memory ran out) even on failure, then closed by the caller.
     * AR_EIO unreachable, AR_EPERM refused, AR_ECORRUPT not an agentrun
     * store, AR_EVERSION newer (or older and read-only), AR_EBUSY, AR_ENOMEM. */
    int (*open)(ar_db **out, const char *location, const ar_open_opts *opts,
                const ar_allocator *alloc, struct ar_err *err);
    /* Releases everything; NULL accepted. */
    void (*close)(ar_db *db);
    /* The location as shown to users (a URL without its password); owned by db. */
    const char *(*display_path)(ar_db *db);
    /* Schema version and row counts into out (path, sizes and backend set by the core). */
    int (*info)(ar_db *db, ar_store_info *out, struct ar_err *err);

    /* A transaction around several writes (store:write, retention, events
     * retention). The one-call writes below must not be called inside one. */
    int (*txn_begin)(ar_db *db, struct ar_err *err);
    int (*txn_commit)(ar_db *db, struct ar_err *err);
    void (*txn_rollback)(ar_db *db);

    /* ---- runs and steps (all required) ---- */

    /* Inserts a run under run->n; AR_DB_CONFLICT with *min_key (see above).
     * Inside or outside a transaction. */
    int (*run_insert)(ar_db *db, const ar_db_run *run, int64_t *min_key, struct ar_err *err);
    /* Inserts a step of run `n` (inside the caller's transaction; store:write). */
    int (*step_insert)(ar_db *db, int64_t n, const ar_db_step *step, struct ar_err *err);

    /* The writes of a run handle, each one durable transaction. Each changes
     * the run only while it is `running` under epoch `owner` (the fence of
     * one writer per run) and returns AR_DB_LOST otherwise, writing nothing. */
    /* One durable step: the step row and the run's new progress. */
    int (*step_append)(ar_db *db, int64_t n, int64_t owner, const ar_db_step *step,
                       const ar_db_progress *p, struct ar_err *err);
    /* Saves the run's checkpoint (replacing any) and marks activity (updated_at = at). */
    int (*checkpoint_save)(ar_db *db, int64_t n, int64_t owner, int64_t seq, const char *state,
                           size_t len, int64_t at, struct ar_err *err);
    /* Marks activity (updated_at = now). */
    int (*run_touch)(ar_db *db, int64_t n, int64_t owner, int64_t now, struct ar_err *err);
    /* Ends the run with f->status (a finished status, or interrupted). */
    int (*run_finish)(ar_db *db, int64_t n, int64_t owner, const ar_db_finish *f, struct ar_err *err);
    /* Sets a budget_exhausted/interrupted run, or a waiting one that has its
     * response, still at epoch `owner` running again with `budget` (JSON),
     * under epoch owner + 1; AR_ESTATE otherwise. */
    int (*run_reopen)(ar_db *db, int64_t n, int64_t owner, const char *budget, int64_t now,
                      struct ar_err *err);

    /* Ends the run's turn as waiting for a response, fenced like
     * step_append, in one durable transaction: the step row (the request),
     * the run's new progress, status `waiting` with `request` (and no
     * response). */
    int (*run_wait)(ar_db *db, int64_t n, int64_t owner, const ar_db_step *step, const ar_db_progress *p,
                    const char *request, size_t request_len, struct ar_err *err);
    /* Answers a waiting run, in one durable transaction that takes the run
     * only while it is `waiting` without a response (so of two callers
     * exactly one wins): stores `response`, appends the step seq
     * iterations + 1 {kind "response", content response, at now} and counts
     * it in iterations, updated_at = now. AR_DB_LOST, writing nothing, when
     * the run is no longer waiting without a response (err not set). */
    int (*run_respond)(ar_db *db, int64_t n, const char *response, size_t len, int64_t now,
                       struct ar_err *err);
    /* Inside the caller's transaction, the sums of run n's steps 1..at:
     * their count, tokens, cost, and each extra counter's sum (visited by
     * name, in name order; `counter` NULL: not summed), computed by the
     * store without loading the steps. */
    int (*steps_sums)(ar_db *db, int64_t n, int64_t at, int64_t *count, int64_t *input_tokens,
                      int64_t *output_tokens, int64_t *cost_nanos, ar_db_type_visit counter,
                      void *ud, struct ar_err *err);
    /* Inside the caller's transaction: copies steps 1..at of run `from` into
     * run `to` (as they are: seq, kind, name, content, usage, duration, at),
     * and from's checkpoint when its seq <= at, all within the store (one
     * statement each, never through memory). */
    int (*fork_copy)(ar_db *db, int64_t from, int64_t to, int64_t at, struct ar_err *err);

    /* Loads the run of key n whose id is `id` into *row. AR_ENOTFOUND when
     * there is none (err set, naming the id). */
    int (*run_load)(ar_db *db, int64_t n, const char *id, ar_db_run_row *row, struct ar_err *err);
    /* Whether the run of key n with this id exists: AR_OK or AR_ENOTFOUND. */
    int (*run_exists)(ar_db *db, int64_t n, const char *id, struct ar_err *err);
    /* Visits up to `max` steps of run n with seq >= from, in seq order. */
    int (*steps_fetch)(ar_db *db, int64_t n, int64_t from, size_t max,
                       ar_db_step_visit visit, void *ud, struct ar_err *err);

    /* Visits the runs matching q's filters (agent, user, edition, parent,
     * forked_from, statuses, since, until; limit, cursors and order ignored) in key order
     * (ascending when `ascending`), only those past `*key` in that order (or
     * at it, when `inclusive`) when key is not NULL, up to `limit` rows. A
     * backend with concurrent writers visits no run that a reader could see
     * before a run of a lower key commits (see AR_DB_CONFLICT). */
    int (*runs_list)(ar_db *db, const ar_run_query *q, const int64_t *key, int inclusive,
                     int ascending, int64_t limit, ar_db_run_visit visit, void *ud, struct ar_err *err);
    int (*runs_count)(ar_db *db, const ar_run_query *q, int64_t *out, struct ar_err *err);
    int (*runs_stats)(ar_db *db, const ar_run_query *q, ar_db_stats *out, struct ar_err *err);
    /* Sets user = NULL on every run of `user` (one transaction); *out the count. */
    int (*forget_user)(ar_db *db, const char *user, int64_t now, int64_t *out, struct ar_err *err);

    /* ---- checkpoints and recovery (all required) ---- */

    /* Inside the caller's transaction: the checkpoint of a written record. */
    int (*checkpoint_put)(ar_db *db, int64_t n, int64_t seq, const char *state, size_t len,
                          int64_t at, struct ar_err *err);
    /* *state is NULL when the run has none; else valid as rows are. */
    int (*checkpoint_get)(ar_db *db, int64_t n, ar_db_text *state, int64_t *seq, struct ar_err *err);
    /* Marks interrupted every running run with updated_at <= stale_before
     * (so a cutoff of now takes every running run, deterministically);
     * finished_at becomes its updated_at, updated_at becomes now; *out the count. */
    int (*recover)(ar_db *db, int64_t stale_before, int64_t now, int64_t *out, struct ar_err *err);

    /* ---- retention (required unless marked) ---- */

    /* Streams every run whose status is one of statuses[0..n) (finished
     * statuses, n <= 4) to `visit` in one read. With `ranked`, row->rank
     * orders each agent's scanned runs by created_at then id, newest first.
     * With `with_run`, row->run is filled. The visitor may read the store
     * (runs_list, run_load, ...) but not write. */
    int (*retain_scan)(ar_db *db, const ar_status *statuses, size_t n, int ranked, int with_run,
                       ar_db_retain_visit visit, void *ud, struct ar_err *err);
    /* Inside the caller's transaction, deletes the runs of keys[0..n)
     * (n <= AR_DB_RETAIN_BATCH) that are still finished, with their steps,
     * checkpoint and events. *runs and *steps get the rows deleted. */
    int (*retain_delete)(ar_db *db, const int64_t *keys, size_t n, int64_t *runs, int64_t *steps,
                         struct ar_err *err);
    /* Counts the steps of the runs of keys[0..n) (n <= AR_DB_RETAIN_BATCH). */
    int (*retain_count_steps)(ar_db *db, const int64_t *keys, size_t n, int64_t *out, struct ar_err *err);
    /* Optional (NULL: sizes are reported as 0): the space the store takes. */
    int (*sizes)(ar_db *db, ar_db_sizes *out, struct ar_err *err);
    /* Optional (NULL: `vacuum = true` does nothing): gives free space back
     * (SQLite VACUUM and WAL truncation; PostgreSQL VACUUM of the store's
     * tables). Outside any transaction. */
    int (*compact)(ar_db *db, struct ar_err *err);
    /* Optional (NULL: a write that fails is never left in flight): after a
     * write failed with its outcome unknown (a connection cut off), waits
     * until no part of it can still commit; AR_OK then, AR_EIO when that
     * cannot be known yet. The core calls it before it reads back a step
     * whose step_append failed. */
    int (*settle)(ar_db *db, struct ar_err *err);

    /* ---- events (all required) ---- */

    /* Appends an event (validated; at set), one transaction; *id its new id,
     * higher than every id a reader may already have seen. */
    int (*event_insert)(ar_db *db, const ar_event *e, int64_t *id, struct ar_err *err);
    /* Visits events matching q's filters (q->agent NULL: every agent's, for
     * ar_store_check; limit, cursors and order ignored) in id order, ascending when `ascending`, up to `limit`.
     * `key` (may be NULL) is a position between ids: walking up takes
     * ids > *key, walking down ids <= *key. Never visits an event a reader
     * could page past before a lower id commits. */
    int (*events_list)(ar_db *db, const ar_event_query *q, const int64_t *key, int ascending,
                       int64_t limit, ar_db_event_visit visit, void *ud, struct ar_err *err);
    int (*events_count)(ar_db *db, const ar_event_query *q, int64_t *out, struct ar_err *err);
    /* One agent's totals in one read: *total, *sessions (distinct), first and
     * last `at` (AR_UNSET when none), and each type's count (visited in
     * type order). */
    int (*events_summary)(ar_db *db, const char *agent, int64_t *total, int64_t *sessions,
                          int64_t *first_at, int64_t *last_at, ar_db_type_visit visit, void *ud,
                          struct ar_err *err);
    /* Deletes every event of `agent` (one transaction); *out gets the count. */
    int (*events_delete)(ar_db *db, const char *agent, int64_t *out, struct ar_err *err);
    /* Inside the caller's transaction: deletes the events with at < before_at. */
    int (*events_delete_before)(ar_db *db, int64_t before_at, int64_t *out, struct ar_err *err);
    /* Inside the caller's transaction: deletes, per agent, all but the newest
     * keep_last (>= 0) events by (at, id). */
    int (*events_keep_last)(ar_db *db, int64_t keep_last, int64_t *out, struct ar_err *err);

    /* ---- export and import (all required) ---- */

    /* Visits the events of every agent in id order, ascending, those with
     * id > *after (every one when after is NULL), up to `limit`. */
    int (*events_scan)(ar_db *db, const int64_t *after, int64_t limit, ar_db_event_visit visit, void *ud,
                       struct ar_err *err);
    /* Inserts an event (validated) under its own id e->id > 0, one
     * transaction: *inserted 1; or, when an event holds that id, nothing and
     * *inserted 0. The ids event_insert hands out afterwards are above it. */
    int (*event_put)(ar_db *db, const ar_event *e, int *inserted, struct ar_err *err);

    /* ---- checking ---- */

    /* Optional (NULL: the backend's own storage is not checked, only its
     * rows): checks the storage itself (SQLite's integrity_check) and visits
     * each problem it finds as one line of text. */
    int (*integrity)(ar_db *db, int (*visit)(void *ud, const char *problem), void *ud, struct ar_err *err);

    /* ---- long reads ---- */

    /* Optional, both or neither (NULL: every read is a transaction of its
     * own): a read snapshot that several reads share, so that a long read
     * (an export) pays for one transaction rather than one per statement.
     * read_begin gives *begun 1 when it started one, 0 when the connection
     * is already inside a transaction (whose reads then serve); read_end
     * ends one begun, and never fails. Nothing is written between them. */
    int (*read_begin)(ar_db *db, int *begun, struct ar_err *err);
    void (*read_end)(ar_db *db);
} ar_backend;

/* The backends built into the library. */
extern const ar_backend ar_sqlite_backend;
extern const ar_backend ar_postgres_backend;

/* The backend for a location: a "postgresql://" or "postgres://" URL (or a
 * libpq "key=value" string starting with "host=", "dbname=", "service=" or
 * "user=") is PostgreSQL; anything else names a SQLite file. */
const ar_backend *ar_backend_for(const char *location);

#endif
