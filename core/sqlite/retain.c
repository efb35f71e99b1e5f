/* retain.c -- the SQLite backend's SQL for retention: the scan, batched deletion, file size and vacuum. */
#include "sq.h"

#include <stdio.h>
#include <string.h>

/* The considered statuses are always bound as four parameters (unused ones
 * NULL), so one statement per scan shape serves every status filter. Most
 * runs are usually considered, so the table is read in rowid order rather
 * than through an index and a lookup per row. */
#define STATUS_IN " FROM runs NOT INDEXED WHERE status IN (?1, ?2, ?3, ?4)"
#define NEWEST_FIRST "row_number() OVER (PARTITION BY agent ORDER BY n DESC)" /* n: (created_at, id) order */
#define ENDED_AT "coalesce(finished_at, updated_at)"

/* Keys: n, iterations, rank, ended_at. Rows: the run columns (0..24), rank, ended_at. */
#define KEYS_RANK_COL 2
#define RECORD_RANK_COL SQ_RUN_NCOLUMNS
#define RECORD_ITERATIONS_COL 14

static const char sql_keys[] = "SELECT n, iterations, 0, " ENDED_AT STATUS_IN;
static const char sql_keys_ranked[] = "SELECT n, iterations, " NEWEST_FIRST ", " ENDED_AT STATUS_IN;
static const char sql_records[] = "SELECT " SQ_RUN_COLUMNS ", 0, " ENDED_AT STATUS_IN;
/* The ranking sorts narrow (n, rank) pairs only; the wide rows are then read
 * in rowid order and matched to their rank, instead of sorting whole rows. */
static const char sql_records_ranked[] =
    "SELECT " SQ_RUN_COLUMNS ", k.rk, " ENDED_AT " FROM runs CROSS JOIN"
    " (SELECT n AS kn, " NEWEST_FIRST " AS rk" STATUS_IN ") AS k ON k.kn = n";

/* A list of AR_DB_RETAIN_BATCH rowid parameters; a shorter batch leaves the
 * rest unbound (NULL), which matches nothing. */
#define P10 "?,?,?,?,?,?,?,?,?,?,"
#define P50 P10 P10 P10 P10 P10
#define P250 P50 P50 P50 P50 P50
#define ROWIDS "(" P250 P250 "NULL)"
_Static_assert(sizeof ROWIDS == 2 * AR_DB_RETAIN_BATCH + 7, "ROWIDS holds AR_DB_RETAIN_BATCH parameters");

/* A run resumed since the scan is running again and must stay, with all its rows. */
#define STILL_FINISHED "(SELECT n FROM runs WHERE n IN " ROWIDS " AND status <> 'running')"

int sq_retain_scan(ar_db *db, const ar_status *statuses, size_t n, int ranked, int with_run,
                   ar_db_retain_visit visit, void *ud, ar_err *err)
{
    static const char *const sql[4] = { sql_keys, sql_keys_ranked, sql_records, sql_records_ranked };
    static const int slots[4] = { SQ_RETAIN_SCAN_KEYS, SQ_RETAIN_SCAN_KEYS_RANKED, SQ_RETAIN_SCAN,
                                  SQ_RETAIN_SCAN_RANKED };
    int shape = (with_run ? 2 : 0) | (ranked ? 1 : 0);
    sqlite3_stmt *st = sq_stmt(db, slots[shape], sql[shape], err);
    if (!st)
        return err->code;
    /* resetting a statement that is being stepped would restart the outer scan */
    if (sqlite3_stmt_busy(st))
        return ar_fail(err, AR_EMISUSE, "retention is already running on this store");
    int b = SQLITE_OK;
    for (size_t i = 0; i < n && i < 4; i++)
        sq_bind_text(st, (int)i + 1, ar_status_name(statuses[i]), &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "scanning runs for retention");
    int rc = AR_OK, src;
    int rank_col = with_run ? RECORD_RANK_COL : KEYS_RANK_COL;
    ar_db_retain_row row;
    ar_db_run_row run;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        row.n = sqlite3_column_int64(st, 0);
        row.iterations = sqlite3_column_int64(st, with_run ? RECORD_ITERATIONS_COL : 1);
        row.rank = sqlite3_column_int64(st, rank_col);
        row.ended_at = sqlite3_column_int64(st, rank_col + 1);
        row.run = NULL;
        if (with_run) {
            if (sq_run_row(st, 0, &run)) {
                rc = sq_nomem(err, "scanning runs");
                break;
            }
            row.run = &run;
        }
        if ((rc = visit(ud, &row)))
            break;
    }
    if (rc == AR_OK && src != SQLITE_DONE)
        rc = sq_fail(db, err, src, "scanning runs for retention");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Binds rowids[0..n) to a statement holding ROWIDS from parameter 1;
 * returns the first failure. */
static int bind_rowids(sqlite3_stmt *st, const int64_t *rowids, size_t n)
{
    int b = SQLITE_OK;
    for (size_t i = 0; i < n; i++)
        sq_bind_int64(st, (int)i + 1, rowids[i], &b);
    return b;
}

/* Runs one cached DELETE over the batch; *changed gets the rows it removed. */
static int delete_batch(ar_db *db, int slot, const char *sql, const int64_t *rowids, size_t n,
                        int64_t *changed, ar_err *err, const char *what)
{
    sqlite3_stmt *st = sq_stmt(db, slot, sql, err);
    if (!st)
        return err->code;
    int b = bind_rowids(st, rowids, n);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, what);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (src != SQLITE_DONE)
        return sq_fail(db, err, src, what);
    if (changed)
        *changed = sqlite3_changes64(db->conn);
    return AR_OK;
}

int sq_retain_delete(ar_db *db, const int64_t *rowids, size_t n, int64_t *runs, int64_t *steps, ar_err *err)
{
    *runs = *steps = 0;
    if (n > AR_DB_RETAIN_BATCH)
        return ar_fail(err, AR_EMISUSE, "too many runs in one deletion batch");
    int rc;
    /* events name the run by id, so they go while the run rows still exist */
    if ((rc = delete_batch(db, SQ_RETAIN_DELETE_EVENTS,
                           "DELETE FROM events WHERE run IN"
                           " (SELECT id FROM runs WHERE n IN " ROWIDS " AND status <> 'running')",
                           rowids, n, NULL, err, "deleting the runs' events")) ||
        (rc = delete_batch(db, SQ_RETAIN_DELETE_STEPS, "DELETE FROM steps WHERE run IN " STILL_FINISHED,
                           rowids, n, steps, err, "deleting the runs' steps")) ||
        (rc = delete_batch(db, SQ_RETAIN_DELETE_CHECKPOINT,
                           "DELETE FROM checkpoints WHERE run IN " STILL_FINISHED,
                           rowids, n, NULL, err, "deleting the runs' checkpoints")) ||
        (rc = delete_batch(db, SQ_RETAIN_DELETE_RUN,
                           "DELETE FROM runs WHERE n IN " ROWIDS " AND status <> 'running'",
                           rowids, n, runs, err, "deleting runs")))
        *runs = *steps = 0;
    return rc;
}

int sq_retain_count_steps(ar_db *db, const int64_t *rowids, size_t n, int64_t *out, ar_err *err)
{
    *out = 0;
    if (n > AR_DB_RETAIN_BATCH)
        return ar_fail(err, AR_EMISUSE, "too many runs in one batch");
    sqlite3_stmt *st = sq_stmt(db, SQ_RETAIN_COUNT_STEPS, "SELECT count(*) FROM steps WHERE run IN " ROWIDS, err);
    if (!st)
        return err->code;
    int b = bind_rowids(st, rowids, n);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "counting the runs' steps");
    int src = sqlite3_step(st), rc = AR_OK;
    if (src == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        rc = sq_fail(db, err, src, "counting the runs' steps");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

int sq_compact(ar_db *db, ar_err *err)
{
    int src = sqlite3_exec(db->conn, "VACUUM", NULL, NULL, NULL);
    if (src != SQLITE_OK)
        return sq_fail(db, err, src, "vacuuming the store");
    /* VACUUM wrote the compacted file into the WAL: copy it back and truncate
     * both. Readers of other processes may hold it back (reported as a row,
     * not an error); the next checkpoint then finishes the job. */
    src = sqlite3_exec(db->conn, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    return src == SQLITE_OK ? AR_OK : sq_fail(db, err, src, "returning freed space to the file system");
}
