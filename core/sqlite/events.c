/* events.c -- the SQLite backend's SQL for the events table: append, listings, summary, deletion, retention. */
#include "sq.h"
#include "testing.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define EVENT_COLUMNS "id, agent, session, type, content, metadata, run, at"

/* Both parts run in one statement, hence one snapshot: the totals row (type
 * NULL, sorted first) and one row per type. Each scalar subquery is served by
 * the agent-prefixed index that covers it. */
static const char summary_sql[] =
    "SELECT NULL, (SELECT count(*) FROM events WHERE agent = ?1),"
    " (SELECT count(DISTINCT session) FROM events WHERE agent = ?1),"
    " (SELECT min(at) FROM events WHERE agent = ?1),"
    " (SELECT max(at) FROM events WHERE agent = ?1)"
    " UNION ALL SELECT type, count(*), NULL, NULL, NULL FROM events WHERE agent = ?1 GROUP BY type"
    " ORDER BY 1";

/* The distinct agents, found by seeking the agent index from one agent to the
 * next rather than reading every row (a loose index scan). */
#define AGENTS_CTE \
    "WITH RECURSIVE agents(a) AS (SELECT min(agent) FROM events" \
    " UNION ALL SELECT (SELECT min(agent) FROM events WHERE agent > a) FROM agents WHERE a IS NOT NULL)"

static const char retain_age_sql[] =
    AGENTS_CTE
    " DELETE FROM events WHERE agent IN (SELECT a FROM agents WHERE a IS NOT NULL) AND at < ?1";

/* Per agent, the (keep_last + 1)-th newest event by (at, id) is found by one
 * index seek; it and everything older go. Agents with no such event keep all. */
static const char retain_keep_sql[] =
    AGENTS_CTE ","
    " cut(a, at, id) AS (SELECT a, ev.at, ev.id FROM agents, events ev WHERE a IS NOT NULL"
    "  AND ev.id = (SELECT id FROM events WHERE agent = a ORDER BY at DESC, id DESC LIMIT 1 OFFSET ?1))"
    " DELETE FROM events WHERE id IN (SELECT ev.id FROM cut JOIN events ev"
    "  ON ev.agent = cut.a AND (ev.at, ev.id) <= (cut.at, cut.id))";

/* ---- dynamic SQL for the filter combinations ----------------------------- */

/* SQL text grown on the store's allocator (a query may name many types). */
typedef struct sqltext {
    const ar_allocator *alloc;
    char *p;
    size_t len, cap;
    int nomem;
} sqltext;

static void put(sqltext *t, const char *s)
{
    size_t n = strlen(s);
    if (t->nomem)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *grown = ar_mem_realloc(t->alloc, t->p, cap);
        if (!grown) {
            t->nomem = 1;
            return;
        }
        t->p = grown;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n + 1);
    t->len += n;
}

/* The WHERE clause of q's filters; agent always comes first so every shape
 * is bounded by an agent-prefixed index (without one, the check's scan of
 * every event, by id). */
static void put_filters(sqltext *t, const ar_event_query *q)
{
    put(t, q->agent ? " WHERE agent = ?" : " WHERE 1");
    if (q->session != AR_UNSET)
        put(t, " AND session = ?");
    if (q->n_types == 1)
        put(t, " AND type = ?");
    else if (q->n_types > 1) {
        put(t, " AND type IN (?");
        for (size_t i = 1; i < q->n_types; i++)
            put(t, ",?");
        put(t, ")");
    }
    if (q->since != AR_UNSET)
        put(t, " AND at >= ?");
    if (q->until != AR_UNSET)
        put(t, " AND at < ?");
}

/* Binds the filters in the order put_filters wrote them (the first failure
 * in *rc); returns the next index. */
static int bind_filters(sqlite3_stmt *st, const ar_event_query *q, int *rc)
{
    int i = 1;
    if (q->agent)
        sq_bind_text(st, i++, q->agent, rc);
    if (q->session != AR_UNSET)
        sq_bind_int64(st, i++, q->session, rc);
    for (size_t k = 0; k < q->n_types; k++)
        sq_bind_text(st, i++, q->types[k], rc);
    if (q->since != AR_UNSET)
        sq_bind_int64(st, i++, q->since, rc);
    if (q->until != AR_UNSET)
        sq_bind_int64(st, i++, q->until, rc);
    return i;
}

/* A key is a position between ids: the items at or below it and those above.
 * Walking up takes the ids above it, walking down those at or below it. */
static void put_list(sqltext *t, const ar_event_query *q, const int64_t *key, int ascending)
{
    put(t, "SELECT " EVENT_COLUMNS " FROM events");
    put_filters(t, q);
    if (key)
        put(t, ascending ? " AND id > ?" : " AND id <= ?");
    put(t, ascending ? " ORDER BY id ASC LIMIT ?" : " ORDER BY id DESC LIMIT ?");
}

static void put_count(sqltext *t, const ar_event_query *q)
{
    put(t, "SELECT count(*) FROM events");
    put_filters(t, q);
}

/* Prepares t's text (an uncached statement: its shape varies with the query). */
static int prepare(ar_db *db, const sqltext *t, sqlite3_stmt **st, ar_err *err)
{
    *st = NULL;
    if (t->nomem)
        return ar_fail(err, AR_ENOMEM, "out of memory building the events query");
    int rc = sqlite3_prepare_v2(db->conn, t->p, (int)t->len, st, NULL);
    return rc == SQLITE_OK ? AR_OK : sq_fail(db, err, rc, "preparing the events query");
}

/* ---- the interface -------------------------------------------------------- */

int sq_event_insert(ar_db *db, const ar_event *e, int64_t *id, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_EVENT_INSERT,
        "INSERT INTO events(agent, session, type, content, metadata, run, at) VALUES(?,?,?,?,?,?,?)", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_text(st, 1, e->agent, &b);
    sq_bind_int64(st, 2, e->session, &b);
    sq_bind_text(st, 3, e->type, &b);
    sq_bind_textn(st, 4, e->content, e->content_len, &b);
    sq_bind_text(st, 5, e->metadata, &b);
    sq_bind_text(st, 6, e->run, &b);
    sq_bind_int64(st, 7, e->at, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "recording the event");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        *id = sqlite3_last_insert_rowid(db->conn);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? AR_OK : sq_fail(db, err, rc, "recording the event");
}

/* Steps st (its parameters bound with result `bound`) and visits each
 * event row (EVENT_COLUMNS) it yields; `what` names the read in messages. */
static int visit_rows(ar_db *db, sqlite3_stmt *st, int bound, ar_db_event_visit visit, void *ud, ar_err *err,
                      const char *what)
{
    int src = bound;
    while (bound == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
        ar_db_event_row row;
        int nomem = 0;
        row.id = sqlite3_column_int64(st, 0);
        row.agent = sq_col_text(st, 1, &nomem);
        row.session = sqlite3_column_int64(st, 2);
        row.type = sq_col_text(st, 3, &nomem);
        row.content = sq_col_text(st, 4, &nomem);
        row.metadata = sq_col_text(st, 5, &nomem);
        row.run = sq_col_text(st, 6, &nomem);
        row.at = sqlite3_column_int64(st, 7);
        if (nomem)
            return sq_nomem(err, what);
        int rc = visit(ud, &row);
        if (rc)
            return rc;
    }
    return src == SQLITE_DONE ? AR_OK : sq_fail(db, err, src, what);
}

int sq_events_list(ar_db *db, const ar_event_query *q, const int64_t *key, int ascending, int64_t limit,
                   ar_db_event_visit visit, void *ud, ar_err *err)
{
    sqltext t = { db->alloc, NULL, 0, 0, 0 };
    sqlite3_stmt *st = NULL;
    put_list(&t, q, key, ascending);
    int rc = prepare(db, &t, &st, err);
    if (rc)
        goto cleanup;
    int b = SQLITE_OK;
    int i = bind_filters(st, q, &b);
    if (key)
        sq_bind_int64(st, i++, *key, &b);
    sq_bind_int64(st, i, limit, &b);
    rc = visit_rows(db, st, b, visit, ud, err, "listing events");
cleanup:
    sqlite3_finalize(st);
    ar_mem_free(db->alloc, t.p);
    return rc;
}

int sq_events_count(ar_db *db, const ar_event_query *q, int64_t *out, ar_err *err)
{
    sqltext t = { db->alloc, NULL, 0, 0, 0 };
    sqlite3_stmt *st = NULL;
    put_count(&t, q);
    int rc = prepare(db, &t, &st, err);
    if (rc)
        goto cleanup;
    int b = SQLITE_OK;
    bind_filters(st, q, &b);
    int src = b == SQLITE_OK ? sqlite3_step(st) : b;
    if (src == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        rc = sq_fail(db, err, src, "counting events");
cleanup:
    sqlite3_finalize(st);
    ar_mem_free(db->alloc, t.p);
    return rc;
}

int sq_events_summary(ar_db *db, const char *agent, int64_t *total, int64_t *sessions, int64_t *first_at,
                      int64_t *last_at, ar_db_type_visit visit, void *ud, ar_err *err)
{
    *total = *sessions = 0;
    *first_at = *last_at = AR_UNSET;
    sqlite3_stmt *st = sq_stmt(db, SQ_EVENT_SUMMARY, summary_sql, err);
    if (!st)
        return err->code;
    int rc = AR_OK, b = SQLITE_OK;
    sq_bind_text(st, 1, agent, &b);
    int src = b;
    while (b == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
            *total = sqlite3_column_int64(st, 1);
            *sessions = sqlite3_column_int64(st, 2);
            if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
                *first_at = sqlite3_column_int64(st, 3);
                *last_at = sqlite3_column_int64(st, 4);
            }
            continue;
        }
        int nomem = 0;
        ar_db_text type = sq_col_text(st, 0, &nomem);
        if (nomem) {
            rc = sq_nomem(err, "summarising events");
            goto cleanup;
        }
        if ((rc = visit(ud, type, sqlite3_column_int64(st, 1))))
            goto cleanup;
    }
    if (src != SQLITE_DONE)
        rc = sq_fail(db, err, src, "summarising events");
cleanup:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Steps a cached DELETE whose parameter is bound (`bound` the bind's result);
 * *out gets the rows deleted. */
static int run_delete(ar_db *db, sqlite3_stmt *st, int bound, int64_t *out, ar_err *err, const char *what)
{
    if (bound != SQLITE_OK)
        return sq_bound(db, st, bound, err, what);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        *out = sqlite3_changes64(db->conn);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? AR_OK : sq_fail(db, err, rc, what);
}

int sq_events_delete(ar_db *db, const char *agent, int64_t *out, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_EVENT_DELETE, "DELETE FROM events WHERE agent = ?", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_text(st, 1, agent, &b);
    return run_delete(db, st, b, out, err, "deleting events");
}

int sq_events_delete_before(ar_db *db, int64_t before_at, int64_t *out, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_EVENT_RETAIN_AGE, retain_age_sql, err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, before_at, &b);
    return run_delete(db, st, b, out, err, "deleting old events");
}

int sq_events_keep_last(ar_db *db, int64_t keep_last, int64_t *out, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_EVENT_RETAIN_KEEP, retain_keep_sql, err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, keep_last, &b);
    return run_delete(db, st, b, out, err, "deleting events beyond keep_last");
}

/* Joins the detail column of an EXPLAIN QUERY PLAN of `sql`, one line per step. */
static int read_plan(ar_db *db, const char *sql, int shape, const ar_event_query *q, const int64_t *key,
                     char **out, ar_err *err)
{
    sqltext text = { db->alloc, NULL, 0, 0, 0 };
    sqltext plan = { db->alloc, NULL, 0, 0, 0 };
    sqlite3_stmt *st = NULL;
    put(&text, "EXPLAIN QUERY PLAN ");
    put(&text, sql);
    int rc = prepare(db, &text, &st, err);
    if (rc)
        goto cleanup;
    int b = SQLITE_OK;
    if (shape == AR_SQLITE_PLAN_LIST || shape == AR_SQLITE_PLAN_COUNT) {
        int i = bind_filters(st, q, &b);
        if (key)
            sq_bind_int64(st, i++, *key, &b);
        if (shape == AR_SQLITE_PLAN_LIST)
            sq_bind_int64(st, i, 10, &b);
    } else if (shape == AR_SQLITE_PLAN_SUMMARY) {
        sq_bind_text(st, 1, q->agent, &b);
    }
    put(&plan, "");
    int src = b;
    while (b == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(st, 3);
        put(&plan, detail ? detail : "");
        put(&plan, "\n");
    }
    if (src != SQLITE_DONE) {
        rc = sq_fail(db, err, src, "explaining the events query");
        goto cleanup;
    }
    if (plan.nomem || !(*out = ar_out_strdup(db->alloc, plan.p, plan.len)))
        rc = ar_fail(err, AR_ENOMEM, "out of memory explaining the events query");
cleanup:
    sqlite3_finalize(st);
    ar_mem_free(db->alloc, text.p);
    ar_mem_free(db->alloc, plan.p);
    return rc;
}

int ar_sqlite_events_plan(char **out, ar_store *store, int shape, const ar_event_query *q, const int64_t *key,
                          int ascending)
{
    if (!out)
        return AR_EMISUSE;
    *out = NULL;
    int usable = ar_store_usable(store);
    if (usable)
        return usable;
    ar_err *err = &store->err;
    if (store->be != &ar_sqlite_backend)
        return ar_fail(err, AR_EMISUSE, "the store is not an SQLite file");
    ar_db *db = store->db;
    sqltext t = { db->alloc, NULL, 0, 0, 0 };
    const char *sql = NULL;
    switch (shape) {
    case AR_SQLITE_PLAN_LIST: put_list(&t, q, key, ascending); break;
    case AR_SQLITE_PLAN_COUNT: put_count(&t, q); break;
    case AR_SQLITE_PLAN_SUMMARY: sql = summary_sql; break;
    case AR_SQLITE_PLAN_RETAIN_AGE: sql = retain_age_sql; break;
    case AR_SQLITE_PLAN_RETAIN_KEEP: sql = retain_keep_sql; break;
    default: return ar_fail(err, AR_EMISUSE, "unknown events query shape %d", shape);
    }
    int rc = t.nomem ? ar_fail(err, AR_ENOMEM, "out of memory building the events query")
                     : read_plan(db, sql ? sql : t.p, shape, q, key, out, err);
    ar_mem_free(db->alloc, t.p);
    return rc;
}

/* ---- export and import ---------------------------------------------------- */

int sq_events_scan(ar_db *db, const int64_t *after, int64_t limit, ar_db_event_visit visit, void *ud, ar_err *err)
{
    sqlite3_stmt *st = after
        ? sq_stmt(db, SQ_EVENT_SCAN_FROM, "SELECT " EVENT_COLUMNS " FROM events WHERE id > ? ORDER BY id LIMIT ?", err)
        : sq_stmt(db, SQ_EVENT_SCAN, "SELECT " EVENT_COLUMNS " FROM events ORDER BY id LIMIT ?", err);
    if (!st)
        return err->code;
    int rc = AR_OK, b = SQLITE_OK, i = 1;
    if (after)
        sq_bind_int64(st, i++, *after, &b);
    sq_bind_int64(st, i, limit, &b);
    rc = visit_rows(db, st, b, visit, ud, err, "reading events");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

int sq_event_put(ar_db *db, const ar_event *e, int *inserted, ar_err *err)
{
    *inserted = 0;
    /* AUTOINCREMENT keeps the ids handed out later above the largest one
     * ever inserted, this one included */
    sqlite3_stmt *st = sq_stmt(db, SQ_EVENT_PUT,
        "INSERT INTO events(id, agent, session, type, content, metadata, run, at) VALUES(?,?,?,?,?,?,?,?)"
        " ON CONFLICT(id) DO NOTHING", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, e->id, &b);
    sq_bind_text(st, 2, e->agent, &b);
    sq_bind_int64(st, 3, e->session, &b);
    sq_bind_text(st, 4, e->type, &b);
    sq_bind_textn(st, 5, e->content, e->content_len, &b);
    sq_bind_text(st, 6, e->metadata, &b);
    sq_bind_text(st, 7, e->run, &b);
    sq_bind_int64(st, 8, e->at, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "importing the event");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        *inserted = sqlite3_changes64(db->conn) > 0;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? AR_OK : sq_fail(db, err, rc, "importing the event");
}
