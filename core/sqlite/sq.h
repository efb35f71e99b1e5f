/* sq.h -- what the SQLite backend's files share (internal to core/sqlite/). */
#ifndef AR_SQ_H
#define AR_SQ_H

#include <sqlite3.h>

#include "../internal.h"

/* Cached statements, one slot each; SQL text lives beside its user, one file per table. */
enum {
    SQ_BEGIN, SQ_COMMIT, SQ_ROLLBACK, SQ_READ_BEGIN,
    /* runs.c */
    SQ_RUN_INSERT, SQ_STEP_INSERT, SQ_RUN_PROGRESS, SQ_RUN_FINISH, SQ_RUN_REOPEN,
    SQ_RUN_LOAD, SQ_RUN_EXISTS, SQ_STEPS_FETCH, SQ_FORGET_USER,
    SQ_CHECKPOINT_PUT, SQ_CHECKPOINT_GET, SQ_RECOVER, SQ_RUN_TOUCH, SQ_RUN_OWNER,
    SQ_RUN_WAIT, SQ_RUN_RESPOND, SQ_RESPONSE_STEP, SQ_STEPS_SUMS, SQ_COUNTER_SUMS, SQ_FORK_STEPS,
    SQ_FORK_CHECKPOINT,
    /* events.c */
    SQ_EVENT_INSERT, SQ_EVENT_PUT, SQ_EVENT_SCAN, SQ_EVENT_SCAN_FROM, SQ_EVENT_SUMMARY, SQ_EVENT_DELETE, SQ_EVENT_RETAIN_AGE, SQ_EVENT_RETAIN_KEEP,
    /* retain.c */
    SQ_RETAIN_SCAN, SQ_RETAIN_DELETE_RUN, SQ_RETAIN_DELETE_STEPS,
    SQ_RETAIN_DELETE_CHECKPOINT, SQ_RETAIN_DELETE_EVENTS, SQ_RETAIN_SCAN_KEYS, SQ_RETAIN_SCAN_RANKED,
    SQ_RETAIN_SCAN_KEYS_RANKED, SQ_RETAIN_COUNT_STEPS,
    SQ_COUNT
};

struct ar_db {
    sqlite3 *conn;
    const ar_allocator *alloc;
    char *path;
    int readonly;
    sqlite3_stmt *stmt[SQ_COUNT];
    char *hold; size_t hold_cap;   /* the texts of the last row handed out by sq_hold */
};

/* The cached statement for `slot`, prepared from `sql` on first use; NULL
 * with err set on failure. Callers sqlite3_reset it when done. */
sqlite3_stmt *sq_stmt(ar_db *db, int slot, const char *sql, ar_err *err);

/* Maps a SQLite result to an AR_ code with a message naming `what`. */
int sq_fail(ar_db *db, ar_err *err, int rc, const char *what);
int sq_integrity(ar_db *db, int (*visit)(void *ud, const char *problem), void *ud, ar_err *err);

/* Binding. Each bind keeps the first failure in *rc (SQLITE_OK to begin
 * with) and does nothing once there is one, so a statement's binds read as a
 * list and are checked once, with sq_bound, before it is stepped: a value
 * longer than the connection holds (SQLITE_TOOBIG) must never be stepped as
 * the NULL SQLite leaves in its place. Text may be NULL (bound as NULL). */
void sq_bind_int64(sqlite3_stmt *st, int i, int64_t v, int *rc);
void sq_bind_double(sqlite3_stmt *st, int i, double v, int *rc);
void sq_bind_text(sqlite3_stmt *st, int i, const char *s, int *rc);
void sq_bind_textn(sqlite3_stmt *st, int i, const char *s, size_t n, int *rc);
/* AR_OK when every bind of `st` took (rc is SQLITE_OK); otherwise clears st
 * and returns the AR_ code of rc (sq_fail) with a message naming `what`. */
int sq_bound(ar_db *db, sqlite3_stmt *st, int rc, ar_err *err, const char *what);

/* Reading a column as stored: SQL NULL is {NULL, 0}. A value SQLite
 * cannot hand over (out of memory) sets *nomem and reads as NULL. The text
 * points into the statement: valid until it is stepped or reset. */
ar_db_text sq_col_text(sqlite3_stmt *st, int col, int *nomem);
/* A time column: AR_UNSET for SQL NULL. */
int64_t sq_col_time(sqlite3_stmt *st, int col);
/* The AR_ENOMEM failure of a row SQLite could not hand over. */
int sq_nomem(ar_err *err, const char *what);

/* Copies the texts of a row filled by a member that returns (run_load,
 * checkpoint_get) into the connection's own buffer, so that they stay valid
 * after the statement is reset, until the next such call. */
int sq_hold(ar_db *db, ar_db_text *const *texts, size_t n, ar_err *err);

/* Runs one statement that returns no rows (or ignores them). */
int sq_exec(ar_db *db, const char *sql, ar_err *err);

/* The column list of a run row, and its reading (from column col0) into a
 * row struct; 0 or the nomem flag of sq_col_text. */
#define SQ_RUN_COLUMNS "n, id, agent, goal, user, edition, parent, status, output, error, " \
    "limit_name, limit_value, limit_reached, budget, iterations, input_tokens, output_tokens, " \
    "cost_nanos, counters, elapsed_ms, created_at, finished_at, updated_at, metadata, owner, " \
    "forked_from, forked_seq, request, response"
#define SQ_RUN_NCOLUMNS 29
int sq_run_row(sqlite3_stmt *st, int col0, ar_db_run_row *out);

/* ---- the table's members, assembled in db.c ---- */

/* runs.c */
int sq_run_insert(ar_db *db, const ar_db_run *run, int64_t *min_key, ar_err *err);
int sq_step_insert(ar_db *db, int64_t n, const ar_db_step *step, ar_err *err);
int sq_step_append(ar_db *db, int64_t n, int64_t owner, const ar_db_step *step, const ar_db_progress *p,
                   ar_err *err);
int sq_checkpoint_save(ar_db *db, int64_t n, int64_t owner, int64_t seq, const char *state, size_t len,
                       int64_t at, ar_err *err);
int sq_run_touch(ar_db *db, int64_t n, int64_t owner, int64_t now, ar_err *err);
int sq_run_finish(ar_db *db, int64_t n, int64_t owner, const ar_db_finish *f, ar_err *err);
int sq_run_reopen(ar_db *db, int64_t n, int64_t owner, const char *budget, int64_t now, ar_err *err);
int sq_run_load(ar_db *db, int64_t n, const char *id, ar_db_run_row *row, ar_err *err);
int sq_run_exists(ar_db *db, int64_t n, const char *id, ar_err *err);
int sq_steps_fetch(ar_db *db, int64_t n, int64_t from, size_t max, ar_db_step_visit visit, void *ud,
                   ar_err *err);
int sq_forget_user(ar_db *db, const char *user, int64_t now, int64_t *out, ar_err *err);
int sq_checkpoint_put(ar_db *db, int64_t n, int64_t seq, const char *state, size_t len, int64_t at,
                      ar_err *err);
int sq_checkpoint_get(ar_db *db, int64_t n, ar_db_text *state, int64_t *seq, ar_err *err);
int sq_recover(ar_db *db, int64_t stale_before, int64_t now, int64_t *out, ar_err *err);
int sq_run_wait(ar_db *db, int64_t n, int64_t owner, const ar_db_step *step, const ar_db_progress *p,
                const char *request, size_t request_len, ar_err *err);
int sq_run_respond(ar_db *db, int64_t n, const char *response, size_t len, int64_t now, ar_err *err);
int sq_steps_sums(ar_db *db, int64_t n, int64_t at, int64_t *count, int64_t *input_tokens, int64_t *output_tokens,
                  int64_t *cost_nanos, ar_db_type_visit counter, void *ud, ar_err *err);
int sq_fork_copy(ar_db *db, int64_t from, int64_t to, int64_t at, ar_err *err);

/* query.c */
int sq_runs_list(ar_db *db, const ar_run_query *q, const int64_t *key, int inclusive, int ascending,
                 int64_t limit, ar_db_run_visit visit, void *ud, ar_err *err);
int sq_runs_count(ar_db *db, const ar_run_query *q, int64_t *out, ar_err *err);
int sq_runs_stats(ar_db *db, const ar_run_query *q, ar_db_stats *out, ar_err *err);

/* retain.c */
int sq_retain_scan(ar_db *db, const ar_status *statuses, size_t n, int ranked, int with_run,
                   ar_db_retain_visit visit, void *ud, ar_err *err);
int sq_retain_delete(ar_db *db, const int64_t *keys, size_t n, int64_t *runs, int64_t *steps, ar_err *err);
int sq_retain_count_steps(ar_db *db, const int64_t *keys, size_t n, int64_t *out, ar_err *err);
int sq_sizes(ar_db *db, ar_db_sizes *out, ar_err *err);
int sq_compact(ar_db *db, ar_err *err);

/* events.c */
int sq_event_insert(ar_db *db, const ar_event *e, int64_t *id, ar_err *err);
int sq_event_put(ar_db *db, const ar_event *e, int *inserted, ar_err *err);
int sq_events_scan(ar_db *db, const int64_t *after, int64_t limit, ar_db_event_visit visit, void *ud, ar_err *err);
int sq_events_list(ar_db *db, const ar_event_query *q, const int64_t *key, int ascending, int64_t limit,
                   ar_db_event_visit visit, void *ud, ar_err *err);
int sq_events_count(ar_db *db, const ar_event_query *q, int64_t *out, ar_err *err);
int sq_events_summary(ar_db *db, const char *agent, int64_t *total, int64_t *sessions, int64_t *first_at,
                      int64_t *last_at, ar_db_type_visit visit, void *ud, ar_err *err);
int sq_events_delete(ar_db *db, const char *agent, int64_t *out, ar_err *err);
int sq_events_delete_before(ar_db *db, int64_t before_at, int64_t *out, ar_err *err);
int sq_events_keep_last(ar_db *db, int64_t keep_last, int64_t *out, ar_err *err);

/* db.c */
int sq_txn_begin(ar_db *db, ar_err *err);
int sq_txn_commit(ar_db *db, ar_err *err);
void sq_txn_rollback(ar_db *db);

#endif
