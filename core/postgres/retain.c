/* retain.c -- the PostgreSQL backend's SQL for retention: the streamed scan,
 * batched deletion, the store's size and VACUUM. */
#include "pg.h"

#include <stdio.h>
#include <string.h>

/* The scan reads through a server-side cursor this many rows at a time: the
 * client holds one batch, never the whole table, and between fetches the
 * connection is free for the reads the visitor makes. */
#define SCAN_BATCH "500"
#define SCAN_CURSOR "ar_retain_scan"

/* Columns: n, iterations, rank, ended_at, then the run row when asked for. */
#define ENDED_AT "coalesce(finished_at, updated_at)"
#define RUN_COL0 4
static const char scan_plain[] =
    "DECLARE " SCAN_CURSOR " NO SCROLL CURSOR FOR SELECT n, iterations, 0, " ENDED_AT
    " FROM runs WHERE status = ANY($1::text[])";
static const char scan_ranked[] =
    "DECLARE " SCAN_CURSOR " NO SCROLL CURSOR FOR SELECT n, iterations,"
    " row_number() OVER (PARTITION BY agent ORDER BY created_at DESC, id COLLATE \"C\" DESC), " ENDED_AT
    " FROM runs WHERE status = ANY($1::text[])";
static const char scan_plain_runs[] =
    "DECLARE " SCAN_CURSOR " NO SCROLL CURSOR FOR SELECT n, iterations, 0, " ENDED_AT ", " PG_RUN_COLUMNS
    " FROM runs WHERE status = ANY($1::text[])";
/* the ranking sorts narrow (n, rank) pairs; the wide rows are joined to them after */
static const char scan_ranked_runs[] =
    "DECLARE " SCAN_CURSOR " NO SCROLL CURSOR FOR SELECT n, iterations, k.rk, " ENDED_AT ", " PG_RUN_COLUMNS
    " FROM runs JOIN (SELECT n AS kn, row_number() OVER (PARTITION BY agent"
    "  ORDER BY created_at DESC, id COLLATE \"C\" DESC) AS rk FROM runs WHERE status = ANY($1::text[])) k"
    " ON k.kn = n";

/* A run resumed since the scan is running again and stays, with all its
 * rows: the batch is locked and re-checked (FOR UPDATE re-reads a row a
 * concurrent writer changed), and everything goes in one statement. */
static const char delete_sql[] =
    "WITH doomed AS (SELECT n, id FROM runs WHERE n = ANY($1::bigint[]) AND status <> 'running' FOR UPDATE),"
    " ev AS (DELETE FROM events WHERE run IN (SELECT id FROM doomed)),"
    " st AS (DELETE FROM steps WHERE run IN (SELECT n FROM doomed) RETURNING 1),"
    " cp AS (DELETE FROM checkpoints WHERE run IN (SELECT n FROM doomed)),"
    " r AS (DELETE FROM runs WHERE n IN (SELECT n FROM doomed) RETURNING 1)"
    " SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM st)";

static const char count_steps_sql[] = "SELECT count(*) FROM steps WHERE run = ANY($1::bigint[])";

/* Every table, index and TOAST relation of the store's schema. */
static const char sizes_sql[] =
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
    " JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = $1 AND c.relkind IN ('r', 'm', 'S')";

int pg_retain_scan(ar_db *db, const ar_status *statuses, size_t n, int ranked, int with_run,
                   ar_db_retain_visit visit, void *ud, ar_err *err)
{
    static const char *const declare[4] = { scan_plain, scan_ranked, scan_plain_runs, scan_ranked_runs };
    const char *names[4];
    size_t n_names = 0;
    for (size_t i = 0; i < n && n_names < 4; i++)
        if (ar_status_name(statuses[i]))
            names[n_names++] = ar_status_name(statuses[i]);
    pg_sql list = { db->alloc, NULL, 0, 0, 0 };
    pg_sql_array(&list, names, n_names);
    if (list.nomem)
        return ar_fail(err, AR_ENOMEM, "out of memory scanning runs for retention");
    pg_params p = { 0 };
    pg_p_text(&p, list.p);
    PGresult *batch = NULL;
    /* A cursor lives in a transaction: the caller's, or one of its own, in
     * which the visitor's reads see the scan's snapshot (as they do in one
     * SQLite read transaction). Marked open, it ends with pg_txn_rollback,
     * and a connection lost meanwhile is not silently replaced. */
    int own_txn = !db->in_txn, declared = 0, rc = AR_OK;
    if (own_txn) {
        if ((rc = pg_exec(db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "scanning runs for retention",
                          err)))
            goto cleanup;
        db->in_txn = 1;
        db->txn_broken = 0;
    }
    if ((rc = pg_run_sql(db, declare[(with_run ? 2 : 0) | (ranked ? 1 : 0)], &p, 0, &batch,
                         "scanning runs for retention", err)))
        goto cleanup;
    declared = 1;
    batch = NULL;
    /* the visitor's reads run in this transaction: one that fails is rolled
     * back to here (the cursor, declared before, stays open) */
    if ((rc = pg_exec(db, "SAVEPOINT " PG_SCAN_SAVEPOINT, "scanning runs for retention", err)))
        goto cleanup;
    db->scan_guard = 1;
    for (;;) {
        if ((rc = pg_run_sql(db, "FETCH " SCAN_BATCH " FROM " SCAN_CURSOR, NULL, 0, &batch,
                             "scanning runs for retention", err)))
            goto cleanup;
        /* the batch stays ours while the visitor reads the store through db */
        db->last = NULL;
        int rows = PQntuples(batch);
        if (rows == 0)
            break;
        for (int i = 0; i < rows; i++) {
            ar_db_run_row run;
            ar_db_retain_row row;
            row.n = pg_bigint(batch, i, 0);
            row.iterations = pg_bigint(batch, i, 1);
            row.rank = pg_bigint(batch, i, 2);
            row.ended_at = pg_bigint(batch, i, 3);
            row.run = NULL;
            if (with_run) {
                pg_run_row(batch, i, RUN_COL0, &run);
                row.run = &run;
            }
            if ((rc = visit(ud, &row)))
                goto cleanup;
        }
        PQclear(batch);
        batch = NULL;
    }
cleanup:
    PQclear(batch);
    int guarded = db->scan_guard;
    db->scan_guard = 0;
    if (own_txn) {
        /* read only: ending the transaction closes the cursor too */
        pg_txn_rollback(db);
    } else if (declared && db->conn) {
        ar_err ignored;
        PGresult *closed;
        /* in the caller's transaction; a failure here has already failed it */
        if ((pg_run_sql(db, "CLOSE " SCAN_CURSOR, NULL, 0, &closed, "closing the retention scan", &ignored) != AR_OK ||
             (guarded && pg_exec(db, "RELEASE SAVEPOINT " PG_SCAN_SAVEPOINT, "closing the retention scan",
                                 &ignored) != AR_OK)) &&
            rc == AR_OK)
            rc = ar_fail(err, ignored.code, "%s", ignored.msg);
    }
    pg_sql_free(&list);
    return rc;
}

/* keys[0..n) as a bigint array literal, for `= ANY($1::bigint[])`. */
static int key_list(pg_sql *s, const int64_t *keys, size_t n, ar_err *err, const char *what)
{
    if (n > AR_DB_RETAIN_BATCH)
        return ar_fail(err, AR_EMISUSE, "too many runs in one batch %s", what);
    pg_sql_add(s, "{");
    for (size_t i = 0; i < n; i++) {
        char num[32];
        snprintf(num, sizeof num, i ? ",%lld" : "%lld", (long long)keys[i]);
        pg_sql_add(s, num);
    }
    pg_sql_add(s, "}");
    return s->nomem ? ar_fail(err, AR_ENOMEM, "out of memory %s", what) : AR_OK;
}

int pg_retain_delete(ar_db *db, const int64_t *keys, size_t n, int64_t *runs, int64_t *steps, ar_err *err)
{
    *runs = *steps = 0;
    pg_sql list = { db->alloc, NULL, 0, 0, 0 };
    pg_params p = { 0 };
    PGresult *res;
    int rc = key_list(&list, keys, n, err, "deleting runs");
    if (rc == AR_OK) {
        pg_p_text(&p, list.p);
        rc = pg_run(db, PG_RETAIN_DELETE, delete_sql, &p, 0, &res, "deleting runs", err);
    }
    if (rc == AR_OK) {
        *runs = pg_bigint(res, 0, 0);
        *steps = pg_bigint(res, 0, 1);
    }
    pg_sql_free(&list);
    return rc;
}

int pg_retain_count_steps(ar_db *db, const int64_t *keys, size_t n, int64_t *out, ar_err *err)
{
    *out = 0;
    pg_sql list = { db->alloc, NULL, 0, 0, 0 };
    pg_params p = { 0 };
    PGresult *res;
    int rc = key_list(&list, keys, n, err, "counting the runs' steps");
    if (rc == AR_OK) {
        pg_p_text(&p, list.p);
        rc = pg_run(db, PG_RETAIN_COUNT_STEPS, count_steps_sql, &p, 0, &res, "counting the runs' steps", err);
    }
    if (rc == AR_OK)
        *out = pg_bigint(res, 0, 0);
    pg_sql_free(&list);
    return rc;
}

int pg_sizes(ar_db *db, ar_db_sizes *out, ar_err *err)
{
    memset(out, 0, sizeof *out);
    pg_params p = { 0 };
    PGresult *res;
    pg_p_text(&p, db->schema);
    int rc = pg_run(db, PG_SIZES, sizes_sql, &p, 0, &res, "measuring the store", err);
    if (rc == AR_OK)
        out->file_bytes = pg_bigint(res, 0, 0);
    return rc;
}

int pg_compact(ar_db *db, ar_err *err)
{
    if (db->in_txn)
        return ar_fail(err, AR_EMISUSE, "VACUUM cannot run inside a transaction");
    /* the tables resolve to the store's schema through search_path */
    return pg_exec(db, "VACUUM runs, steps, checkpoints, events, meta", "vacuuming the store", err);
}
