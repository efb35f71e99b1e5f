/* query.c -- the PostgreSQL backend's run listings, counts and statistics
 * (SQL built per filter shape, every value a parameter), and the SQL text
 * builder the other listings share. */
#include "pg.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* ---- SQL text built at run time ------------------------------------------ */

void pg_sql_addn(pg_sql *s, const char *text, size_t n)
{
    if (s->nomem)
        return;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *grown = ar_mem_realloc(s->alloc, s->p, cap);
        if (!grown) {
            s->nomem = 1;
            return;
        }
        s->p = grown;
        s->cap = cap;
    }
    memcpy(s->p + s->len, text, n);
    s->len += n;
    s->p[s->len] = '\0';
}

void pg_sql_add(pg_sql *s, const char *text)
{
    pg_sql_addn(s, text, strlen(text));
}

void pg_sql_arg(pg_sql *s, const pg_params *p)
{
    char num[16];
    snprintf(num, sizeof num, "$%d", p->n);
    pg_sql_add(s, num);
}

void pg_sql_array(pg_sql *s, const char *const *items, size_t n)
{
    /* an array literal: each element double-quoted, so only " and \ need a backslash */
    pg_sql_add(s, "{");
    for (size_t i = 0; i < n; i++) {
        pg_sql_add(s, i ? ",\"" : "\"");
        const char *t = items[i];
        for (size_t from = 0, k = 0;; k++) {
            if (t[k] == '"' || t[k] == '\\' || t[k] == '\0') {
                pg_sql_addn(s, t + from, k - from);
                if (t[k] == '\0')
                    break;
                pg_sql_addn(s, "\\", 1);
                from = k;
            }
        }
        pg_sql_add(s, "\"");
    }
    pg_sql_add(s, "}");
}

void pg_sql_free(pg_sql *s)
{
    ar_mem_free(s->alloc, s->p);
    s->p = NULL;
    s->len = s->cap = 0;
}

int64_t pg_changed(const PGresult *res)
{
    const char *n = PQcmdTuples((PGresult *)res);
    return n && *n ? strtoll(n, NULL, 10) : 0;
}

/* ---- runs ------------------------------------------------------------------ */

/* The WHERE clause of q's filters with their parameters. `statuses` holds
 * the status array literal (its text must outlive the statement). */
static void add_filters(pg_sql *s, pg_params *p, pg_sql *statuses, const ar_run_query *q)
{
    pg_sql_add(s, " WHERE true");
    if (q->agent) {
        pg_p_text(p, q->agent);
        pg_sql_add(s, " AND agent = ");
        pg_sql_arg(s, p);
    }
    if (q->user) {
        pg_p_text(p, q->user);
        pg_sql_add(s, " AND \"user\" = ");
        pg_sql_arg(s, p);
    }
    if (q->edition) {
        pg_p_text(p, q->edition);
        pg_sql_add(s, " AND edition = ");
        pg_sql_arg(s, p);
    }
    if (q->parent) {
        pg_p_text(p, q->parent);
        pg_sql_add(s, " AND parent = ");
        pg_sql_arg(s, p);
    }
    if (q->forked_from) {
        pg_p_text(p, q->forked_from);
        pg_sql_add(s, " AND forked_from = ");
        pg_sql_arg(s, p);
    }
    if (q->n_status) {
        const char *names[AR_WAITING + 1];
        size_t n = 0;
        /* each status once: a query may repeat one (the core checked them all) */
        for (size_t i = 0; i < q->n_status && n < sizeof names / sizeof *names; i++) {
            const char *name = ar_status_name(q->status[i]);
            int seen = 0;
            for (size_t k = 0; k < n; k++)
                seen |= names[k] == name;
            if (name && !seen)
                names[n++] = name;
        }
        pg_sql_array(statuses, names, n);
        pg_p_text(p, statuses->nomem ? NULL : statuses->p);
        pg_sql_add(s, " AND status = ANY(");
        pg_sql_arg(s, p);
        pg_sql_add(s, "::text[])");
    }
    /* created_at is n >> 16, so time bounds are key ranges, served by the primary key */
    if (q->since != AR_UNSET) {
        pg_p_int64(p, ar_id_key_of_ms(q->since));
        pg_sql_add(s, " AND n >= ");
        pg_sql_arg(s, p);
    }
    if (q->until != AR_UNSET) {
        pg_p_int64(p, ar_id_key_of_ms(q->until));
        pg_sql_add(s, " AND n < ");
        pg_sql_arg(s, p);
    }
}

/* Runs the built query; AR_ENOMEM when building it ran out of memory. */
static int run_built(ar_db *db, const pg_sql *s, const pg_sql *statuses, const pg_params *p,
                     PGresult **res, const char *what, ar_err *err)
{
    if (s->nomem || statuses->nomem)
        return ar_fail(err, AR_ENOMEM, "out of memory %s", what);
    return pg_run_sql(db, s->p, p, 0, res, what, err);
}

int pg_runs_list(ar_db *db, const ar_run_query *q, const int64_t *key, int inclusive, int ascending,
                 int64_t limit, ar_db_run_visit visit, void *ud, ar_err *err)
{
    pg_sql s = { db->alloc, NULL, 0, 0, 0 }, statuses = { db->alloc, NULL, 0, 0, 0 };
    pg_params p = { 0 };
    PGresult *res = NULL;
    pg_sql_add(&s, "SELECT " PG_RUN_COLUMNS " FROM runs");
    add_filters(&s, &p, &statuses, q);
    if (key) {
        pg_p_int64(&p, *key);
        pg_sql_add(&s, ascending ? (inclusive ? " AND n >= " : " AND n > ")
                                 : (inclusive ? " AND n <= " : " AND n < "));
        pg_sql_arg(&s, &p);
    }
    pg_p_int64(&p, limit);
    pg_sql_add(&s, ascending ? " ORDER BY n ASC LIMIT " : " ORDER BY n DESC LIMIT ");
    pg_sql_arg(&s, &p);
    int rc = run_built(db, &s, &statuses, &p, &res, "listing runs", err);
    if (rc)
        goto cleanup;
    /* the rows stay ours while the visitor runs, whatever it calls on db */
    db->last = NULL;
    for (int i = 0, n = PQntuples(res); i < n; i++) {
        ar_db_run_row row;
        pg_run_row(res, i, 0, &row);
        if ((rc = visit(ud, &row)))
            break;
    }
cleanup:
    PQclear(res);
    pg_sql_free(&s);
    pg_sql_free(&statuses);
    return rc;
}

int pg_runs_count(ar_db *db, const ar_run_query *q, int64_t *out, ar_err *err)
{
    pg_sql s = { db->alloc, NULL, 0, 0, 0 }, statuses = { db->alloc, NULL, 0, 0, 0 };
    pg_params p = { 0 };
    PGresult *res = NULL;
    pg_sql_add(&s, "SELECT count(*) FROM runs");
    add_filters(&s, &p, &statuses, q);
    int rc = run_built(db, &s, &statuses, &p, &res, "counting runs", err);
    if (rc == AR_OK)
        *out = pg_bigint(res, 0, 0);
    pg_sql_free(&s);
    pg_sql_free(&statuses);
    return rc;
}

/* A numeric sum as int64: NULL (no rows) is 0, and a sum past the int64
 * range saturates (strtoll's ERANGE result). */
static int64_t sum_value(const PGresult *res, int col)
{
    ar_db_text t = pg_text(res, 0, col);
    if (!t.s)
        return 0;
    errno = 0;
    return strtoll(t.s, NULL, 10);
}

/* One statement, one snapshot. sum(bigint) is numeric, so the sums are exact
 * however many rows there are; avg over finished_at - created_at skips the
 * runs without a finished_at, as the mean over finished runs wants. */
#define STATS_COLUMNS \
    "SELECT count(*)," \
    " count(*) FILTER (WHERE status = 'running'), count(*) FILTER (WHERE status = 'completed')," \
    " count(*) FILTER (WHERE status = 'budget_exhausted'), count(*) FILTER (WHERE status = 'failed')," \
    " count(*) FILTER (WHERE status = 'interrupted'), count(*) FILTER (WHERE status = 'waiting')," \
    " avg(finished_at::numeric - created_at)::float8," \
    " sum(iterations), sum(input_tokens), sum(output_tokens), sum(cost_nanos)," \
    " sum(cost_nanos)::float8 FROM runs"

int pg_runs_stats(ar_db *db, const ar_run_query *q, ar_db_stats *out, ar_err *err)
{
    _Static_assert(AR_RUNNING == 0 && AR_COMPLETED == 1 && AR_BUDGET_EXHAUSTED == 2 && AR_FAILED == 3 &&
                   AR_INTERRUPTED == 4 && AR_WAITING == 5, "STATS_COLUMNS counts the statuses in ar_status order");
    pg_sql s = { db->alloc, NULL, 0, 0, 0 }, statuses = { db->alloc, NULL, 0, 0, 0 };
    pg_params p = { 0 };
    PGresult *res = NULL;
    memset(out, 0, sizeof *out);
    pg_sql_add(&s, STATS_COLUMNS);
    add_filters(&s, &p, &statuses, q);
    int rc = run_built(db, &s, &statuses, &p, &res, "computing statistics", err);
    if (rc == AR_OK) {
        out->runs = pg_bigint(res, 0, 0);
        for (int k = 0; k <= AR_WAITING; k++)
            out->by_status[k] = pg_bigint(res, 0, 1 + k);
        out->avg_latency_ms = pg_double(res, 0, 7);
        out->iterations = sum_value(res, 8);
        out->input_tokens = sum_value(res, 9);
        out->output_tokens = sum_value(res, 10);
        out->cost_nanos = sum_value(res, 11);
        out->cost_approx = pg_double(res, 0, 12);
    }
    pg_sql_free(&s);
    pg_sql_free(&statuses);
    return rc;
}
