/* pg.h -- what the PostgreSQL backend's files share (internal to core/postgres/).
 *
 * One connection per store. On connect the backend sets search_path to
 * pg_catalog and the store's schema (quoted), so the SQL text below names
 * tables unqualified and stays the same for every store; every value is a
 * parameter. Statements are prepared once per connection, on first use,
 * under the name "ar<slot>"; a reconnect prepares them again. */
#ifndef AR_PG_H
#define AR_PG_H

#include <libpq-fe.h>

#include "../internal.h"

/* Prepared statements, one slot each; SQL text lives beside its user, one file per table. */
enum {
    /* db.c */
    PG_BEGIN, PG_COMMIT, PG_ROLLBACK, PG_XACT_ID, PG_XACT_STATUS,
    /* runs.c */
    PG_RUN_INSERT, PG_STEP_INSERT, PG_STEP_APPEND, PG_CHECKPOINT_SAVE, PG_RUN_TOUCH, PG_RUN_FINISH,
    PG_RUN_REOPEN, PG_RUN_LOAD, PG_RUN_EXISTS, PG_STEPS_FETCH, PG_FORGET_USER, PG_CHECKPOINT_PUT,
    PG_CHECKPOINT_GET, PG_RECOVER, PG_RUN_OWNER,
    PG_RUN_WAIT, PG_RUN_RESPOND, PG_STEPS_SUMS, PG_COUNTER_SUMS, PG_FORK_STEPS, PG_FORK_CHECKPOINT,
    PG_WITNESS_WAIT, PG_WITNESS_RESPOND,
    /* events.c */
    PG_EVENT_INSERT, PG_EVENT_SUMMARY, PG_EVENT_TYPES, PG_EVENT_DELETE, PG_EVENT_RETAIN_AGE,
    PG_EVENT_RETAIN_KEEP,
    /* retain.c */
    PG_RETAIN_DELETE, PG_RETAIN_COUNT_STEPS, PG_SIZES,
    /* db.c, runs.c: the store's locks, settling a write cut off, its witnesses */
    PG_LOCK, PG_SESSION_ALIVE, PG_SESSION_END, PG_RUN_WRITE, PG_WITNESS_STEP, PG_WITNESS_CHECKPOINT,
    PG_WITNESS_TOUCH, PG_WITNESS_FINISH, PG_WITNESS_REOPEN, PG_WITNESS_RUN,
    PG_COUNT
};

/* A server session: its backend's pid and start time name it uniquely. */
typedef struct pg_session {
    int pid;
    char started[48];
} pg_session;

struct ar_db {
    PGconn *conn;                 /* NULL after a drop, until the next call reconnects */
    const ar_allocator *alloc;
    char *conninfo;               /* as given (may hold a password): only handed to libpq */
    char *display;                /* the location without its password: messages, info().path */
    char *schema;                 /* the schema name, validated */
    int readonly, durability, busy_timeout_ms;
    int in_txn;                   /* between txn_begin and txn_commit/rollback */
    int txn_broken;               /* the connection dropped inside the transaction */
    unsigned char prepared[PG_COUNT];
    PGresult *last;               /* the result rows handed out point into; cleared by the next call */
    pg_session session;           /* the current connection's server session */
    pg_session sent;              /* the session the last statement was sent on */
    int sent_flag;                /* the last pg_run/pg_run_sql sent its statement */
    int ended;                    /* the server said it ended that session (57P0x) */
    int doomed;                   /* the server said it is ending this connection's session */
    char xid[32];                 /* the open transaction's id (txn_begin) */
    int scan_guard;               /* a retention scan's savepoint is set: a failed read rolls back to it */
    int unsure;                   /* a write cut off was left undecided: its session may be alive */
    pg_session unsure_session;    /* ... this one (pg_settle_pending) */
};

/* The savepoint a retention scan sets after declaring its cursor: a read
 * the visitor makes that fails is rolled back to it (pg_fail), so the scan's
 * transaction stays usable and the read's own error is the one reported. */
#define PG_SCAN_SAVEPOINT "ar_retain_read"

/* Up to PG_MAX_PARAMS values, each text or binary (bytea), NULL allowed.
 * Integers are printed into the struct's own buffers. */
#define PG_MAX_PARAMS 32
typedef struct pg_params {
    int n;
    const char *v[PG_MAX_PARAMS];
    int len[PG_MAX_PARAMS];
    int fmt[PG_MAX_PARAMS];       /* 0 text, 1 binary */
    char num[PG_MAX_PARAMS][32];
} pg_params;

void pg_p_int64(pg_params *p, int64_t v);
void pg_p_double(pg_params *p, double v);
/* Text (NULL: SQL NULL). PostgreSQL text holds no NUL byte: callers pass
 * text validated as such, and binary data (event content) with pg_p_bytes. */
void pg_p_text(pg_params *p, const char *s);
void pg_p_textn(pg_params *p, const char *s, size_t n);
void pg_p_bytes(pg_params *p, const char *s, size_t n);   /* bytea, binary format */

/* Makes sure db has a live connection (reconnecting after a drop: search_path,
 * durability, lock_timeout set again, statements to be prepared again).
 * AR_EIO when the server cannot be reached, AR_EPERM when it refuses us. */
int pg_connect(ar_db *db, ar_err *err);

/* Runs the prepared statement `slot` (prepared from `sql` on first use on
 * this connection) with `p` (may be NULL). On success *res is the result
 * (PGRES_COMMAND_OK or PGRES_TUPLES_OK), also kept in db->last, freed by the
 * next call. Text results; a column listed in the SQL as bytea comes back
 * escaped unless the caller asks with `binary` for binary results (all columns).
 * On failure: the AR_ code from pg_fail, naming `what`. */
int pg_run(ar_db *db, int slot, const char *sql, const pg_params *p, int binary, PGresult **res,
           const char *what, ar_err *err);
/* Runs SQL built at run time (listings with filters): unprepared, same contract. */
int pg_run_sql(ar_db *db, const char *sql, const pg_params *p, int binary, PGresult **res,
               const char *what, ar_err *err);
/* Runs a fixed command with no parameters (DDL, SET). */
int pg_exec(ar_db *db, const char *sql, const char *what, ar_err *err);

/* Maps a failed result (or a dead connection when res is NULL) to an AR_
 * code with a message naming `what`: connection lost AR_EIO (and the
 * connection is dropped, so the next call reconnects), lock_not_available
 * (55P03) and deadlock AR_EBUSY, disk_full (53100) and out-of-memory
 * class 53 AR_EFULL, insufficient_privilege (42501) AR_EPERM,
 * read_only_sql_transaction AR_EPERM, string too long AR_EJSON, others AR_EIO. */
int pg_fail(ar_db *db, const PGresult *res, const char *what, ar_err *err);

/* A member that calls a visitor which may itself call the store (retention
 * scans) takes its result out of db->last (setting it NULL) and clears it
 * itself, so that the visitor's calls do not free the rows being visited. */

/* Takes the store's transaction-scoped advisory lock `which`:
 * PG_LOCK_SCHEMA orders the making of the schema. */
enum { PG_LOCK_SCHEMA };
int pg_lock_store(ar_db *db, int which, const char *what, ar_err *err);

/* A write whose connection dropped before its outcome came back (a COMMIT
 * cut off). pg_cut_off, right after a failed pg_run/pg_run_sql, returns 1
 * when that statement was sent and the connection then dropped, with *old
 * the session it was sent on. pg_settle then reconnects, waits until that
 * session has ended on the server (so its transaction is decided) and runs
 * the witness `sql` (prepared in `slot`, parameters p), which returns a row
 * when the write is there: AR_OK with err cleared. Otherwise AR_EIO, err's
 * message extended to say the write is not there, or that its outcome could
 * not be learnt in time (the server stayed out of reach). */
int pg_cut_off(ar_db *db, pg_session *old);
int pg_settle(ar_db *db, const pg_session *old, int slot, const char *sql, const pg_params *p,
              const char *what, ar_err *err);
/* The backend's `settle`: once a write was left undecided by pg_settle,
 * waits (within the busy timeout) until its session has ended, so that no
 * commit of it can land after a read. AR_EIO when that cannot be known. */
int pg_settle_pending(ar_db *db, struct ar_err *err);

/* txn_begin that also takes the store's lock `lock` (PG_LOCK_*, or -1 for
 * none) in the same round trip. */
int pg_txn_begin_locked(ar_db *db, int lock, ar_err *err);

/* Reading a result value: NULL for SQL NULL. */
ar_db_text pg_text(const PGresult *res, int row, int col);
/* (not pg_int64: libpq's postgres_ext.h has a type of that name) */
/* pg_bigint, not pg_int64: libpq's postgres_ext.h has a type of that name */
int64_t pg_bigint(const PGresult *res, int row, int col);   /* 0 for NULL */
int64_t pg_time(const PGresult *res, int row, int col);    /* AR_UNSET for NULL */
double pg_double(const PGresult *res, int row, int col);   /* 0 for NULL */

/* The column list of a run row, and its reading into a row struct. */
#define PG_RUN_COLUMNS "n, id, agent, goal, \"user\", edition, parent, status, output, error, " \
    "limit_name, limit_value, limit_reached, budget, iterations, input_tokens, output_tokens, " \
    "cost_nanos, counters, elapsed_ms, created_at, finished_at, updated_at, metadata, owner, " \
    "forked_from, forked_seq, request, response"
void pg_run_row(const PGresult *res, int row, int col0, ar_db_run_row *out);

/* SQL text grown at run time on db->alloc (listings with filters); nomem
 * is set once memory ran out, and the text is then not to be run. */
typedef struct pg_sql {
    const ar_allocator *alloc;
    char *p;
    size_t len, cap;
    int nomem;
} pg_sql;
void pg_sql_add(pg_sql *s, const char *text);
void pg_sql_addn(pg_sql *s, const char *text, size_t n);
/* Appends "$<p->n>": the placeholder of the parameter just added to p. */
void pg_sql_arg(pg_sql *s, const pg_params *p);
/* Appends items[0..n) as an array literal ({"a","b"}), for `= ANY($k::text[])`. */
void pg_sql_array(pg_sql *s, const char *const *items, size_t n);
void pg_sql_free(pg_sql *s);
/* The rows an INSERT, UPDATE or DELETE changed. */
int64_t pg_changed(const PGresult *res);

/* ---- the table's members, one file each (assembled in db.c) ---- */

/* db.c */
int pg_open(ar_db **out, const char *location, const ar_open_opts *opts, const ar_allocator *alloc, ar_err *err);
void pg_close(ar_db *db);
const char *pg_display_path(ar_db *db);
int pg_info(ar_db *db, ar_store_info *out, ar_err *err);
int pg_txn_begin(ar_db *db, ar_err *err);
int pg_txn_commit(ar_db *db, ar_err *err);
void pg_txn_rollback(ar_db *db);

/* runs.c */
int pg_run_insert(ar_db *db, const ar_db_run *run, int64_t *min_key, ar_err *err);
int pg_step_insert(ar_db *db, int64_t n, const ar_db_step *step, ar_err *err);
int pg_step_append(ar_db *db, int64_t n, int64_t owner, const ar_db_step *step, const ar_db_progress *p, ar_err *err);
int pg_checkpoint_save(ar_db *db, int64_t n, int64_t owner, int64_t seq, const char *state, size_t len, int64_t at, ar_err *err);
int pg_run_touch(ar_db *db, int64_t n, int64_t owner, int64_t now, ar_err *err);
int pg_run_finish(ar_db *db, int64_t n, int64_t owner, const ar_db_finish *f, ar_err *err);
int pg_run_reopen(ar_db *db, int64_t n, int64_t owner, const char *budget, int64_t now, ar_err *err);
int pg_run_load(ar_db *db, int64_t n, const char *id, ar_db_run_row *row, ar_err *err);
int pg_run_exists(ar_db *db, int64_t n, const char *id, ar_err *err);
int pg_steps_fetch(ar_db *db, int64_t n, int64_t from, size_t max, ar_db_step_visit visit, void *ud, ar_err *err);
int pg_forget_user(ar_db *db, const char *user, int64_t now, int64_t *out, ar_err *err);
int pg_checkpoint_put(ar_db *db, int64_t n, int64_t seq, const char *state, size_t len, int64_t at, ar_err *err);
int pg_checkpoint_get(ar_db *db, int64_t n, ar_db_text *state, int64_t *seq, ar_err *err);
int pg_recover(ar_db *db, int64_t stale_before, int64_t now, int64_t *out, ar_err *err);
int pg_run_wait(ar_db *db, int64_t n, int64_t owner, const ar_db_step *step, const ar_db_progress *p,
                const char *request, size_t request_len, ar_err *err);
int pg_run_respond(ar_db *db, int64_t n, const char *response, size_t len, int64_t now, ar_err *err);
int pg_steps_sums(ar_db *db, int64_t n, int64_t at, int64_t *count, int64_t *input_tokens, int64_t *output_tokens,
                  int64_t *cost_nanos, ar_db_type_visit counter, void *ud, ar_err *err);
int pg_fork_copy(ar_db *db, int64_t from, int64_t to, int64_t at, ar_err *err);

/* query.c */
int pg_runs_list(ar_db *db, const ar_run_query *q, const int64_t *key, int inclusive, int ascending,
                 int64_t limit, ar_db_run_visit visit, void *ud, ar_err *err);
int pg_runs_count(ar_db *db, const ar_run_query *q, int64_t *out, ar_err *err);
int pg_runs_stats(ar_db *db, const ar_run_query *q, ar_db_stats *out, ar_err *err);

/* retain.c */
int pg_retain_scan(ar_db *db, const ar_status *statuses, size_t n, int ranked, int with_run,
                   ar_db_retain_visit visit, void *ud, ar_err *err);
int pg_retain_delete(ar_db *db, const int64_t *keys, size_t n, int64_t *runs, int64_t *steps, ar_err *err);
int pg_retain_count_steps(ar_db *db, const int64_t *keys, size_t n, int64_t *out, ar_err *err);
int pg_sizes(ar_db *db, ar_db_sizes *out, ar_err *err);
int pg_compact(ar_db *db, ar_err *err);

/* events.c */
int pg_event_insert(ar_db *db, const ar_event *e, int64_t *id, ar_err *err);
int pg_events_list(ar_db *db, const ar_event_query *q, const int64_t *key, int ascending, int64_t limit,
                   ar_db_event_visit visit, void *ud, ar_err *err);
int pg_events_count(ar_db *db, const ar_event_query *q, int64_t *out, ar_err *err);
int pg_events_summary(ar_db *db, const char *agent, int64_t *total, int64_t *sessions, int64_t *first_at,
                      int64_t *last_at, ar_db_type_visit visit, void *ud, ar_err *err);
int pg_events_delete(ar_db *db, const char *agent, int64_t *out, ar_err *err);
int pg_events_delete_before(ar_db *db, int64_t before_at, int64_t *out, ar_err *err);
int pg_events_keep_last(ar_db *db, int64_t keep_last, int64_t *out, ar_err *err);

#endif
