/* query.c -- the SQLite backend's run listings, counts and statistics (SQL built per filter shape). */
#include "sq.h"

#include <stdio.h>
#include <string.h>

/* A small SQL text builder on the stack; queries stay well inside it. */
typedef struct sqlbuf {
    char text[2048];
    size_t len;
    int overflow;
} sqlbuf;

static void add(sqlbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n >= sizeof b->text) {
        b->overflow = 1;
        return;
    }
    memcpy(b->text + b->len, s, n + 1);
    b->len += n;
}

/* Appends the WHERE clause of the query's filters and binds nothing yet. */
static void add_filters(sqlbuf *b, const ar_run_query *q)
{
    add(b, " WHERE 1");
    if (q->agent) add(b, " AND agent = ?");
    if (q->user) add(b, " AND user = ?");
    if (q->edition) add(b, " AND edition = ?");
    if (q->parent) add(b, " AND parent = ?");
    if (q->forked_from) add(b, " AND forked_from = ?");
    if (q->n_status) {
        add(b, " AND status IN (");
        for (size_t i = 0; i < q->n_status; i++)
            add(b, i ? ",?" : "?");
        add(b, ")");
    }
    /* created_at is n >> 16, so time bounds are key ranges, served in index order */
    if (q->since != AR_UNSET) add(b, " AND n >= ?");
    if (q->until != AR_UNSET) add(b, " AND n < ?");
}

/* Binds the filters in the order add_filters wrote them (the first failure
 * in *rc); returns the next index. */
static int bind_filters(sqlite3_stmt *st, const ar_run_query *q, int *rc)
{
    int i = 1;
    if (q->agent) sq_bind_text(st, i++, q->agent, rc);
    if (q->user) sq_bind_text(st, i++, q->user, rc);
    if (q->edition) sq_bind_text(st, i++, q->edition, rc);
    if (q->parent) sq_bind_text(st, i++, q->parent, rc);
    if (q->forked_from) sq_bind_text(st, i++, q->forked_from, rc);
    for (size_t k = 0; k < q->n_status; k++)
        sq_bind_text(st, i++, ar_status_name(q->status[k]), rc);
    if (q->since != AR_UNSET) sq_bind_int64(st, i++, ar_id_key_of_ms(q->since), rc);
    if (q->until != AR_UNSET) sq_bind_int64(st, i++, ar_id_key_of_ms(q->until), rc);
    return i;
}

static int prepare(ar_db *db, sqlbuf *b, sqlite3_stmt **st, ar_err *err)
{
    if (b->overflow)
        return ar_fail(err, AR_EMISUSE, "query has too many filters");
    int rc = sqlite3_prepare_v2(db->conn, b->text, (int)b->len, st, NULL);
    return rc == SQLITE_OK ? AR_OK : sq_fail(db, err, rc, "preparing the query");
}

int sq_runs_list(ar_db *db, const ar_run_query *q, const int64_t *key, int inclusive, int ascending,
                 int64_t limit, ar_db_run_visit visit, void *ud, ar_err *err)
{
    sqlbuf b = { "", 0, 0 };
    add(&b, "SELECT " SQ_RUN_COLUMNS " FROM runs");
    add_filters(&b, q);
    if (key)
        add(&b, ascending ? (inclusive ? " AND n >= ?" : " AND n > ?") : (inclusive ? " AND n <= ?" : " AND n < ?"));
    add(&b, ascending ? " ORDER BY n ASC LIMIT ?" : " ORDER BY n DESC LIMIT ?");
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, &b, &st, err);
    if (rc)
        return rc;
    int bound = SQLITE_OK;
    int i = bind_filters(st, q, &bound);
    if (key)
        sq_bind_int64(st, i++, *key, &bound);
    sq_bind_int64(st, i, limit, &bound);
    if (bound != SQLITE_OK) {
        rc = sq_bound(db, st, bound, err, "listing runs");
        sqlite3_finalize(st);
        return rc;
    }
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        ar_db_run_row row;
        if (sq_run_row(st, 0, &row)) {
            rc = sq_nomem(err, "listing runs");
            goto cleanup;
        }
        if ((rc = visit(ud, &row)))
            goto cleanup;
    }
    if (src != SQLITE_DONE)
        rc = sq_fail(db, err, src, "listing runs");
cleanup:
    sqlite3_finalize(st);
    return rc;
}

int sq_runs_count(ar_db *db, const ar_run_query *q, int64_t *out, ar_err *err)
{
    sqlbuf b = { "", 0, 0 };
    add(&b, "SELECT count(*) FROM runs");
    add_filters(&b, q);
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, &b, &st, err);
    if (rc)
        return rc;
    int bound = SQLITE_OK;
    bind_filters(st, q, &bound);
    int src = bound == SQLITE_OK ? sqlite3_step(st) : bound;
    if (src == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        rc = sq_fail(db, err, src, "counting runs");
    sqlite3_finalize(st);
    return rc;
}

/* A column summed in SQL as three 21-bit limbs, x = hi * 2^42 + mid * 2^21 +
 * lo: no limb sum can overflow (fewer than 2^42 rows, more than a file can
 * hold), where sum(x) would raise "integer overflow" and total(x) would round
 * past 2^53. */
#define LIMB_SUMS(x) "sum(" x " >> 42), sum((" x " >> 21) & 2097151), sum(" x " & 2097151)"
#define LIMB (INT64_C(1) << 21)

/* The exact total of the limb sums at column `c`. When it is outside int64,
 * *fits is 0 and the total saturates; *approx is the nearest double either way. */
static int64_t limb_total(sqlite3_stmt *st, int c, int *fits, double *approx)
{
    int64_t hi = sqlite3_column_int64(st, c);
    int64_t mid = sqlite3_column_int64(st, c + 1);
    int64_t lo = sqlite3_column_int64(st, c + 2);
    mid += lo / LIMB;           /* lo and mid are sums of non-negative limbs */
    lo %= LIMB;
    hi += mid / LIMB;
    mid %= LIMB;
    int64_t low = mid * LIMB + lo;  /* 0 .. 2^42 - 1 */
    *approx = (double)hi * (double)(LIMB * LIMB) + (double)low;
    *fits = hi >= -LIMB && hi < LIMB;
    if (!*fits)
        return hi < 0 ? INT64_MIN : INT64_MAX;
    return hi * (LIMB * LIMB) + low;
}

int sq_runs_stats(ar_db *db, const ar_run_query *q, ar_db_stats *out, ar_err *err)
{
    sqlbuf b = { "", 0, 0 };
    add(&b, "SELECT count(*),"
            " total(status = 'running'), total(status = 'completed'),"
            " total(status = 'budget_exhausted'), total(status = 'failed'),"
            " total(status = 'interrupted'), total(status = 'waiting'),"
            " avg(finished_at - created_at), "
            LIMB_SUMS("iterations") ", " LIMB_SUMS("input_tokens") ", "
            LIMB_SUMS("output_tokens") ", " LIMB_SUMS("cost_nanos") " FROM runs");
    add_filters(&b, q);
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, &b, &st, err);
    if (rc)
        return rc;
    int bound = SQLITE_OK;
    bind_filters(st, q, &bound);
    int src = bound == SQLITE_OK ? sqlite3_step(st) : bound;
    if (src == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        out->runs = sqlite3_column_int64(st, 0);
        for (int k = 0; k <= AR_WAITING; k++)
            out->by_status[k] = (int64_t)sqlite3_column_double(st, 1 + k);
        out->avg_latency_ms = sqlite3_column_double(st, 7);
        int fits;
        double approx;
        out->iterations = limb_total(st, 8, &fits, &approx);
        out->input_tokens = limb_total(st, 11, &fits, &approx);
        out->output_tokens = limb_total(st, 14, &fits, &approx);
        out->cost_nanos = limb_total(st, 17, &fits, &approx);
        out->cost_approx = approx;
    } else {
        rc = sq_fail(db, err, src, "computing statistics");
    }
    sqlite3_finalize(st);
    return rc;
}
