/* sq.h -- what the SQLite backend's files share (internal to core/sqlite/). */
#ifndef AR_SQ_H
#define AR_SQ_H

#include <sqlite3.h>

#include "../internal.h"

/* Cached statements, one slot each; SQL text lives beside its user, one file per table. */
enum {
    SQ_BEGIN, SQ_COMMIT, SQ_ROLLBACK,
    /* runs.c */
    SQ_RUN_INSERT, SQ_STEP_INSERT, SQ_RUN_PROGRESS, SQ_RUN_FINISH, SQ_RUN_REOPEN,
    SQ_RUN_LOAD, SQ_RUN_ROWID, SQ_STEPS_FETCH, SQ_FORGET_USER,
    SQ_CHECKPOINT_PUT, SQ_CHECKPOINT_GET, SQ_RECOVER, SQ_RUN_TOUCH, SQ_RUN_OWNER,
    /* events.c */
    SQ_EVENT_INSERT, SQ_EVENT_SUMMARY, SQ_EVENT_DELETE, SQ_EVENT_RETAIN_AGE, SQ_EVENT_RETAIN_KEEP,
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
};

/* The cached statement for `slot`, prepared from `sql` on first use; NULL
 * with err set on failure. Callers sqlite3_reset it when done. */
sqlite3_stmt *sq_stmt(ar_db *db, int slot, const char *sql, ar_err *err);

/* Maps a SQLite result to an AR_ code with a message naming `what`. */
int sq_fail(ar_db *db, ar_err *err, int rc, const char *what);

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

/* Reading a row back, column by column. Each value is checked as it is
 * read: the first one damaged by another program (JSON that is not valid,
 * text that is not UTF-8 or holds a NUL where the API gives a C string)
 * fails the row with AR_ECORRUPT naming `owner` ("run <id>", "event 42")
 * and the field; a value SQLite cannot hand over fails it with AR_ENOMEM.
 * After a failure every reader returns NULL and `rc` keeps the code. With an
 * arena, values are copied into it; without, they point into the statement
 * (valid until it is stepped or reset). */
typedef struct sq_row {
    ar_db *db;
    sqlite3_stmt *st;
    ar_arena *arena;
    ar_err *err;
    char owner[80];
    int rc;
} sq_row;

/* Text without NUL bytes, or NULL for SQL NULL. */
const char *sq_row_text(sq_row *r, int col, const char *field);
/* Text that may hold NUL bytes; *len gets its length. */
const char *sq_row_content(sq_row *r, int col, const char *field, size_t *len);
/* JSON text (an object when `object`); *len gets its length. */
const char *sq_row_json(sq_row *r, int col, const char *field, int object, size_t *len);
/* Fails the row: `field` is damaged, for the reason `why`. Returns AR_ECORRUPT. */
int sq_row_damaged(sq_row *r, const char *field, const char *why);

/* Runs one statement that returns no rows (or ignores them). */
int sq_exec(ar_db *db, const char *sql, ar_err *err);

/* The column list of a run row, and its decoding into a record. */
#define SQ_RUN_COLUMNS "n, id, agent, goal, user, edition, parent, status, output, error, " \
    "limit_name, limit_value, limit_reached, budget, iterations, input_tokens, output_tokens, " \
    "cost_nanos, counters, elapsed_ms, created_at, finished_at, updated_at, metadata"
/* Decodes a run row (from column col0) into box->rec, checking every value
 * as sq_row does. */
int sq_row_to_record(ar_db *db, sqlite3_stmt *st, int col0, struct ar_record_box *box, ar_err *err);

#endif
