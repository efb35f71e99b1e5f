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
    int64_t input_tokens, output_tokens, cost_micros;
    const char *extra; size_t extra_len;       /* counters object or NULL */
    int64_t duration_ms, at;
} ar_db_step;

/* A run's columns that change as it goes. */
typedef struct ar_db_progress {
    int64_t iterations, input_tokens, output_tokens, cost_micros;
    const char *extra; size_t extra_len;
    int64_t elapsed_ms, updated_at;
} ar_db_progress;

/* A run row as inserted (begin or write). */
typedef struct ar_db_run {
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

/* Cursor key of a run listing. */
typedef struct ar_db_run_key {
    int64_t created_at;
    char id[32];
} ar_db_run_key;

/* ---- the store ---------------------------------------------------------- */

int ar_db_open(ar_db **out, const char *path, const ar_open_opts *opts,
               const ar_allocator *alloc, struct ar_err *err);
void ar_db_close(ar_db *db);
int ar_db_info(ar_db *db, ar_store_info *out, struct ar_err *err);

int ar_db_txn_begin(ar_db *db, struct ar_err *err);
int ar_db_txn_commit(ar_db *db, struct ar_err *err);
void ar_db_txn_rollback(ar_db *db);

/* ---- runs and steps (core/sqlite/runs.c) -------------------------------- */

int ar_db_run_insert(ar_db *db, const ar_db_run *run, int64_t *rowid, struct ar_err *err);
int ar_db_step_insert(ar_db *db, int64_t run_rowid, const ar_db_step *step, struct ar_err *err);
int ar_db_run_progress(ar_db *db, int64_t run_rowid, const ar_db_progress *p, struct ar_err *err);
/* Finishes a run that is still `running` in the file; AR_ESTATE otherwise. */
int ar_db_run_finish(ar_db *db, int64_t run_rowid, const ar_db_finish *f, struct ar_err *err);
/* Sets a budget_exhausted/interrupted run running again with `budget` (JSON). */
int ar_db_run_reopen(ar_db *db, int64_t run_rowid, const char *budget, int64_t now, struct ar_err *err);

/* Loads a run into box->rec (strings in box's arena). *rowid and *elapsed_ms
 * may be NULL. AR_ENOTFOUND when there is none. */
int ar_db_run_load(ar_db *db, const char *id, struct ar_record_box *box,
                   int64_t *rowid, int64_t *elapsed_ms, struct ar_err *err);
/* Looks up a run's rowid; AR_ENOTFOUND when there is none. */
int ar_db_run_rowid(ar_db *db, const char *id, int64_t *rowid, struct ar_err *err);

/* Fetches up to `max` steps of a run with seq >= from, in seq order, into
 * `arena`. *out is an array of *n steps. */
int ar_db_steps_fetch(ar_db *db, int64_t run_rowid, int64_t from, size_t max,
                      struct ar_arena *arena, ar_step **out, size_t *n, struct ar_err *err);

/* Lists runs matching q's filters in SQL order (ascending when `ascending`),
 * only those that follow `key` in that order when key is not NULL, up to
 * `limit` rows. Each record is a new box; the array is from ar_out_alloc. */
int ar_db_runs_list(ar_db *db, const ar_run_query *q, const ar_db_run_key *key, int ascending, int64_t limit,
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

#endif
