/* backend.h -- the storage interface: every SQL statement lives behind it.
 *
 * The domain layer (store.c, run.c, record.c, read.c, ...) validates input,
 * keeps run totals and builds records; a backend only stores and loads rows.
 * The SQLite backend is core/sqlite/. Each function returns an AR_ code and
 * fills `err` on failure; a failed write leaves nothing behind (the caller's
 * transaction is rolled back by ar_db_txn_rollback). */
#ifndef AR_BACKEND_H
#define AR_BACKEND_H

#include <stdint.h>
#include <stddef.h>

#include "agentrun.h"

typedef struct ar_db ar_db;
struct ar_err;
struct ar_arena;
struct ar_record_box;

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
} ar_db_run;

/* How a run ends. */
typedef struct ar_db_finish {
    ar_status status;
    const char *output; size_t output_len;
    const char *error;
    const char *limit_name; double limit_value, limit_reached;
    int64_t finished_at, elapsed_ms;
} ar_db_finish;

/* Cursor key of a run listing: the run's tick (see ar_id_new). */
typedef struct ar_db_run_key {
    int64_t n;
} ar_db_run_key;

/* ar_db_run_insert: another run already has this key (pick a new id). */
#define AR_DB_CONFLICT 100
/* A write of a run handle changed nothing: the run is no longer running
 * under the handle's owner epoch (resumed elsewhere, or marked interrupted);
 * err holds why, with code AR_ESTATE. */
#define AR_DB_LOST 101

/* ---- the store ---------------------------------------------------------- */

int ar_db_open(ar_db **out, const char *path, const ar_open_opts *opts,
               const ar_allocator *alloc, struct ar_err *err);
void ar_db_close(ar_db *db);
int ar_db_info(ar_db *db, ar_store_info *out, struct ar_err *err);

int ar_db_txn_begin(ar_db *db, struct ar_err *err);
int ar_db_txn_commit(ar_db *db, struct ar_err *err);
void ar_db_txn_rollback(ar_db *db);

/* ---- runs and steps (core/sqlite/runs.c) -------------------------------- */

/* Inserts a run under run->n; AR_DB_CONFLICT (err untouched) when the key is taken. */
int ar_db_run_insert(ar_db *db, const ar_db_run *run, struct ar_err *err);
int ar_db_step_insert(ar_db *db, int64_t run_rowid, const ar_db_step *step, struct ar_err *err);

/* The writes of a run handle. Each changes the run only while it is
 * `running` under the epoch `owner` (the fence of one writer per run) and
 * returns AR_DB_LOST otherwise. */
int ar_db_run_progress(ar_db *db, int64_t run_rowid, int64_t owner, const ar_db_progress *p,
                       struct ar_err *err);
/* Marks activity (updated_at = now). */
int ar_db_run_touch(ar_db *db, int64_t run_rowid, int64_t owner, int64_t now, struct ar_err *err);
/* Ends the run with f->status (a finished status, or interrupted). */
int ar_db_run_finish(ar_db *db, int64_t run_rowid, int64_t owner, const ar_db_finish *f,
                     struct ar_err *err);
/* Sets a budget_exhausted/interrupted run still at epoch `owner` running
 * again with `budget` (JSON), under epoch owner + 1; AR_ESTATE otherwise. */
int ar_db_run_reopen(ar_db *db, int64_t run_rowid, int64_t owner, const char *budget, int64_t now,
                     struct ar_err *err);

/* Loads a run into box->rec (strings in box's arena). *rowid, *elapsed_ms
 * and *owner (its epoch) may be NULL. AR_ENOTFOUND when there is none. */
int ar_db_run_load(ar_db *db, const char *id, struct ar_record_box *box,
                   int64_t *rowid, int64_t *elapsed_ms, int64_t *owner, struct ar_err *err);
/* Looks up a run's rowid; AR_ENOTFOUND when there is none. */
int ar_db_run_rowid(ar_db *db, const char *id, int64_t *rowid, struct ar_err *err);

/* Fetches up to `max` steps of a run with seq >= from, in seq order, into
 * `arena`. *out is an array of *n steps. */
int ar_db_steps_fetch(ar_db *db, int64_t run_rowid, int64_t from, size_t max,
                      struct ar_arena *arena, ar_step **out, size_t *n, struct ar_err *err);

/* Lists runs matching q's filters in SQL order (ascending when `ascending`),
 * only those that follow `key` in that order (or are it, when `inclusive`)
 * when key is not NULL, up to `limit` rows. Each record is a new box; the
 * array is from ar_out_alloc. */
int ar_db_runs_list(ar_db *db, const ar_run_query *q, const ar_db_run_key *key, int inclusive,
                    int ascending, int64_t limit,
                    ar_record ***out, size_t *n, struct ar_err *err);
int ar_db_runs_count(ar_db *db, const ar_run_query *q, int64_t *out, struct ar_err *err);
int ar_db_runs_stats(ar_db *db, const ar_run_query *q, ar_stats *out, struct ar_err *err);
int ar_db_forget_user(ar_db *db, const char *user, int64_t now, int64_t *out, struct ar_err *err);

/* ---- checkpoints and recovery ------------------------------------------- */

int ar_db_checkpoint_put(ar_db *db, int64_t run_rowid, int64_t seq, const char *state,
                         size_t len, int64_t at, struct ar_err *err);
/* *state (allocated with ar_out_strdup) is NULL when the run has none. */
int ar_db_checkpoint_get(ar_db *db, int64_t run_rowid, const ar_allocator *alloc,
                         char **state, int64_t *seq, struct ar_err *err);
int ar_db_recover(ar_db *db, int64_t stale_before, int64_t now, int64_t *out, struct ar_err *err);

/* ---- retention (core/sqlite/retain.c) ----------------------------------- */

/* Runs deleted per transaction at most: each transaction stays short so that
 * other writers get the lock within their busy timeout. */
#define AR_DB_RETAIN_BATCH 500

/* One considered run as the retention scan yields it. */
typedef struct ar_db_retain_row {
    int64_t rowid;
    int64_t iterations;         /* the run's step count, to size deletion batches */
    int64_t rank;               /* 1 = newest considered run of its agent; 0 when not ranked */
    int64_t ended_at;           /* finished_at, or updated_at for a run marked interrupted without one */
    const ar_record *record;    /* the run without steps when asked for, else NULL; valid during the call */
} ar_db_retain_row;

/* Called once per scanned row; a non-zero AR_ code stops the scan and is returned. */
typedef int (*ar_db_retain_visit)(void *ud, const ar_db_retain_row *row);

/* Streams every run whose status is one of statuses[0..n) (finished statuses,
 * n <= 4) to `visit` in one SELECT. With `ranked`, row->rank orders each
 * agent's scanned runs by created_at then id, newest first. With
 * `with_record`, row->record is decoded. AR_EMISUSE when a scan is already
 * running on this store (a visitor calling retention again). */
int ar_db_retain_scan(ar_db *db, const ar_status *statuses, size_t n, int ranked, int with_record,
                      ar_db_retain_visit visit, void *ud, struct ar_err *err);
/* Inside the caller's transaction, deletes the runs of rowids[0..n)
 * (n <= AR_DB_RETAIN_BATCH) that are still finished, with their steps,
 * checkpoint and events. *runs and *steps get the rows deleted. */
int ar_db_retain_delete(ar_db *db, const int64_t *rowids, size_t n, int64_t *runs, int64_t *steps,
                        struct ar_err *err);
/* Counts the steps of the runs of rowids[0..n) (n <= AR_DB_RETAIN_BATCH). */
int ar_db_retain_count_steps(ar_db *db, const int64_t *rowids, size_t n, int64_t *out, struct ar_err *err);
/* The bytes the store takes: the file plus its WAL (pages in use for ":memory:"). */
int ar_db_retain_bytes(ar_db *db, int64_t *out, struct ar_err *err);
/* Rebuilds the file without its free pages and truncates the WAL so the file
 * system gets the space back. Outside any transaction. */
int ar_db_retain_vacuum(ar_db *db, struct ar_err *err);

/* ---- events (core/sqlite/events.c) -------------------------------------- */

/* Appends an event (validated by the caller; at already set); *id gets its new id. */
int ar_db_event_insert(ar_db *db, const ar_event *e, int64_t *id, struct ar_err *err);
/* Lists events matching q's filters (q->agent set; limit, cursors and order
 * ignored) in id order, ascending when `ascending`, up to `limit` rows. `key`
 * (may be NULL) is a position between ids: walking up takes ids > *key,
 * walking down ids <= *key. *out is an array of *n events in `arena`, as are
 * their strings. */
int ar_db_events_list(ar_db *db, const ar_event_query *q, const int64_t *key, int ascending,
                      int64_t limit, struct ar_arena *arena, ar_event **out, size_t *n, struct ar_err *err);
int ar_db_events_count(ar_db *db, const ar_event_query *q, int64_t *out, struct ar_err *err);
/* Fills *out for one agent; by_type (sorted by type) and its strings are in `arena`. */
int ar_db_events_summary(ar_db *db, const char *agent, struct ar_arena *arena,
                         ar_event_summary *out, struct ar_err *err);
/* Deletes every event of `agent`; *out gets the count. */
int ar_db_events_delete(ar_db *db, const char *agent, int64_t *out, struct ar_err *err);
/* Deletes the events with at < before_at; *out gets the count. */
int ar_db_events_delete_before(ar_db *db, int64_t before_at, int64_t *out, struct ar_err *err);
/* Deletes, per agent, all but the newest keep_last (>= 0) events by (at, id). */
int ar_db_events_keep_last(ar_db *db, int64_t keep_last, int64_t *out, struct ar_err *err);

/* For tests: the EXPLAIN QUERY PLAN text (one step per line; ar_free) of the
 * very SQL the functions above run: a listing (q, key, ascending), a count
 * (q), the summary (q->agent) or a retention delete (q may be NULL). */
enum {
    AR_DB_EVENTS_PLAN_LIST, AR_DB_EVENTS_PLAN_COUNT, AR_DB_EVENTS_PLAN_SUMMARY,
    AR_DB_EVENTS_PLAN_RETAIN_AGE, AR_DB_EVENTS_PLAN_RETAIN_KEEP
};
int ar_db_events_plan(ar_db *db, int shape, const ar_event_query *q, const int64_t *key, int ascending,
                      char **out, struct ar_err *err);

#endif
