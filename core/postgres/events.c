/* events.c -- the PostgreSQL backend's SQL for the events table: append,
 * listings, summary, deletion, retention. */
#include "pg.h"

#include <stdio.h>
#include <string.h>

/* Content is bytea (it may hold NUL bytes): listings ask for binary results,
 * which give it byte for byte (pg_bigint reads both formats). */
#define EVENT_COLUMNS "id, agent, session, type, content, metadata, run, at"

/* Ids are handed out in commit order. The id is drawn by updating the
 * store's counter row in meta, whose row lock the insert holds until it
 * commits: a second writer waits for it, then reads the committed counter
 * (ON CONFLICT DO UPDATE works on the row's newest version), so an event
 * that takes a higher id commits after every lower one is visible, and a
 * reader that has seen an id has seen every lower one that will ever exist.
 * The counter never goes back, so the id of a deleted event is not reused;
 * it starts past the events already there. One statement, one round trip. */
static const char insert_sql[] =
    "WITH next AS (INSERT INTO meta(key, value)"
    "  VALUES ('last_event_id', (SELECT coalesce(max(id), 0) + 1 FROM events)::text)"
    "  ON CONFLICT (key) DO UPDATE SET value = greatest(meta.value::bigint + 1, excluded.value::bigint)::text"
    "  RETURNING value::bigint AS id)"
    " INSERT INTO events(id, agent, session, type, content, metadata, run, at)"
    " SELECT id, $1, $2, $3, $4, $5, $6, $7 FROM next RETURNING id";

/* One statement, one snapshot: the totals row first, then one row per type
 * in byte order (as the SQLite backend sorts). */
static const char summary_sql[] =
    "SELECT 0, NULL::text COLLATE \"C\", count(*), count(DISTINCT session), min(at), max(at)"
    " FROM events WHERE agent = $1"
    " UNION ALL SELECT 1, type COLLATE \"C\", count(*), NULL, NULL, NULL FROM events WHERE agent = $1"
    " GROUP BY type ORDER BY 1, 2";

static const char delete_sql[] = "DELETE FROM events WHERE agent = $1";
static const char retain_age_sql[] = "DELETE FROM events WHERE at < $1";
/* Per agent, the events past the newest keep_last by (at, id) go; the
 * ranking reads each agent's events in the (agent, at, id) index's order. */
static const char retain_keep_sql[] =
    "DELETE FROM events WHERE id IN (SELECT id FROM (SELECT id,"
    " row_number() OVER (PARTITION BY agent ORDER BY at DESC, id DESC) AS rk FROM events) r WHERE rk > $1)";

/* ---- dynamic SQL for the filter combinations ----------------------------- */

/* The WHERE clause of q's filters with their parameters; agent comes first so
 * every shape is bounded by an agent-prefixed index. `types` holds the type
 * array literal (its text must outlive the statement). */
static void add_filters(pg_sql *s, pg_params *p, pg_sql *types, const ar_event_query *q)
{
    /* without an agent: the check's scan of every event, by id */
    if (q->agent) {
        pg_p_text(p, q->agent);
        pg_sql_add(s, " WHERE agent = ");
        pg_sql_arg(s, p);
    } else {
        pg_sql_add(s, " WHERE TRUE");
    }
    if (q->session != AR_UNSET) {
        pg_p_int64(p, q->session);
        pg_sql_add(s, " AND session = ");
        pg_sql_arg(s, p);
    }
    if (q->n_types == 1) {
        pg_p_text(p, q->types[0]);
        pg_sql_add(s, " AND type = ");
        pg_sql_arg(s, p);
    } else if (q->n_types > 1) {
        /* one parameter however many types (a query may name a thousand) */
        pg_sql_array(types, q->types, q->n_types);
        pg_p_text(p, types->nomem ? NULL : types->p);
        pg_sql_add(s, " AND type = ANY(");
        pg_sql_arg(s, p);
        pg_sql_add(s, "::text[])");
    }
    if (q->since != AR_UNSET) {
        pg_p_int64(p, q->since);
        pg_sql_add(s, " AND at >= ");
        pg_sql_arg(s, p);
    }
    if (q->until != AR_UNSET) {
        pg_p_int64(p, q->until);
        pg_sql_add(s, " AND at < ");
        pg_sql_arg(s, p);
    }
}

/* ---- the members ------------------------------------------------------------ */

int pg_event_insert(ar_db *db, const ar_event *e, int64_t *id, ar_err *err)
{
    pg_params p = { 0 };
    PGresult *res;
    pg_p_text(&p, e->agent);
    pg_p_int64(&p, e->session);
    pg_p_text(&p, e->type);
    if (e->content)
        pg_p_bytes(&p, e->content, e->content_len);
    else
        pg_p_text(&p, NULL);
    pg_p_text(&p, e->metadata);
    pg_p_text(&p, e->run);
    pg_p_int64(&p, e->at);
    int rc = pg_run(db, PG_EVENT_INSERT, insert_sql, &p, 0, &res, "recording the event", err);
    if (rc == AR_OK)
        *id = pg_bigint(res, 0, 0);
    return rc;
}

/* Visits each event row (EVENT_COLUMNS) of res, a result of db's last
 * statement; the caller clears res. */
static int visit_rows(ar_db *db, PGresult *res, ar_db_event_visit visit, void *ud)
{
    /* the rows stay ours while the visitor runs, whatever it calls on db */
    db->last = NULL;
    for (int i = 0, n = PQntuples(res); i < n; i++) {
        ar_db_event_row row;
        row.id = pg_bigint(res, i, 0);
        row.agent = pg_text(res, i, 1);
        row.session = pg_bigint(res, i, 2);
        row.type = pg_text(res, i, 3);
        row.content = pg_text(res, i, 4);
        row.metadata = pg_text(res, i, 5);
        row.run = pg_text(res, i, 6);
        row.at = pg_bigint(res, i, 7);
        int rc = visit(ud, &row);
        if (rc)
            return rc;
    }
    return AR_OK;
}

int pg_events_list(ar_db *db, const ar_event_query *q, const int64_t *key, int ascending, int64_t limit,
                   ar_db_event_visit visit, void *ud, ar_err *err)
{
    pg_sql s = { db->alloc, NULL, 0, 0, 0 }, types = { db->alloc, NULL, 0, 0, 0 };
    pg_params p = { 0 };
    PGresult *res = NULL;
    pg_sql_add(&s, "SELECT " EVENT_COLUMNS " FROM events");
    add_filters(&s, &p, &types, q);
    /* a key is a position between ids: walking up takes the ids above it,
     * walking down those at or below it */
    if (key) {
        pg_p_int64(&p, *key);
        pg_sql_add(&s, ascending ? " AND id > " : " AND id <= ");
        pg_sql_arg(&s, &p);
    }
    pg_p_int64(&p, limit);
    pg_sql_add(&s, ascending ? " ORDER BY id ASC LIMIT " : " ORDER BY id DESC LIMIT ");
    pg_sql_arg(&s, &p);
    int rc;
    if (s.nomem || types.nomem) {
        rc = ar_fail(err, AR_ENOMEM, "out of memory listing events");
        goto cleanup;
    }
    if ((rc = pg_run_sql(db, s.p, &p, 1, &res, "listing events", err)))
        goto cleanup;
    rc = visit_rows(db, res, visit, ud);
cleanup:
    PQclear(res);
    pg_sql_free(&s);
    pg_sql_free(&types);
    return rc;
}

int pg_events_count(ar_db *db, const ar_event_query *q, int64_t *out, ar_err *err)
{
    pg_sql s = { db->alloc, NULL, 0, 0, 0 }, types = { db->alloc, NULL, 0, 0, 0 };
    pg_params p = { 0 };
    PGresult *res;
    pg_sql_add(&s, "SELECT count(*) FROM events");
    add_filters(&s, &p, &types, q);
    int rc;
    if (s.nomem || types.nomem)
        rc = ar_fail(err, AR_ENOMEM, "out of memory counting events");
    else if ((rc = pg_run_sql(db, s.p, &p, 0, &res, "counting events", err)) == AR_OK)
        *out = pg_bigint(res, 0, 0);
    pg_sql_free(&s);
    pg_sql_free(&types);
    return rc;
}

int pg_events_summary(ar_db *db, const char *agent, int64_t *total, int64_t *sessions, int64_t *first_at,
                      int64_t *last_at, ar_db_type_visit visit, void *ud, ar_err *err)
{
    pg_params p = { 0 };
    PGresult *res;
    pg_p_text(&p, agent);
    int rc = pg_run(db, PG_EVENT_SUMMARY, summary_sql, &p, 0, &res, "summarising events", err);
    if (rc)
        return rc;
    /* the rows stay ours while the visitor runs, whatever it calls on db */
    db->last = NULL;
    *total = pg_bigint(res, 0, 2);
    *sessions = pg_bigint(res, 0, 3);
    *first_at = pg_time(res, 0, 4);
    *last_at = pg_time(res, 0, 5);
    for (int i = 1, n = PQntuples(res); i < n && rc == AR_OK; i++)
        rc = visit(ud, pg_text(res, i, 1), pg_bigint(res, i, 2));
    PQclear(res);
    return rc;
}

/* Runs a prepared DELETE of one parameter; *out gets the rows deleted. */
static int run_delete(ar_db *db, int slot, const char *sql, pg_params *p, int64_t *out, ar_err *err,
                      const char *what)
{
    PGresult *res;
    *out = 0;
    int rc = pg_run(db, slot, sql, p, 0, &res, what, err);
    if (rc == AR_OK)
        *out = pg_changed(res);
    return rc;
}

int pg_events_delete(ar_db *db, const char *agent, int64_t *out, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_text(&p, agent);
    return run_delete(db, PG_EVENT_DELETE, delete_sql, &p, out, err, "deleting events");
}

int pg_events_delete_before(ar_db *db, int64_t before_at, int64_t *out, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, before_at);
    return run_delete(db, PG_EVENT_RETAIN_AGE, retain_age_sql, &p, out, err, "deleting old events");
}

int pg_events_keep_last(ar_db *db, int64_t keep_last, int64_t *out, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, keep_last);
    return run_delete(db, PG_EVENT_RETAIN_KEEP, retain_keep_sql, &p, out, err,
                      "deleting events beyond keep_last");
}

/* ---- export and import ---------------------------------------------------- */

int pg_events_scan(ar_db *db, const int64_t *after, int64_t limit, ar_db_event_visit visit, void *ud, ar_err *err)
{
    pg_params p = { 0 };
    PGresult *res;
    int rc;
    if (after) {
        pg_p_int64(&p, *after);
        pg_p_int64(&p, limit);
        rc = pg_run(db, PG_EVENT_SCAN_FROM,
                    "SELECT " EVENT_COLUMNS " FROM events WHERE id > $1 ORDER BY id LIMIT $2", &p, 1, &res,
                    "reading events", err);
    } else {
        pg_p_int64(&p, limit);
        rc = pg_run(db, PG_EVENT_SCAN, "SELECT " EVENT_COLUMNS " FROM events ORDER BY id LIMIT $1", &p, 1, &res,
                    "reading events", err);
    }
    if (rc)
        return rc;
    rc = visit_rows(db, res, visit, ud);
    PQclear(res);
    return rc;
}

/* The event keeps its id when it is free; the counter row then moves up to
 * it (never down), so the ids handed out later are above it. One statement:
 * the counter's row lock orders it with concurrent appends. */
static const char put_sql[] =
    "WITH ins AS (INSERT INTO events(id, agent, session, type, content, metadata, run, at)"
    "  VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING id),"
    " bump AS (INSERT INTO meta(key, value)"
    "  SELECT 'last_event_id', greatest(ins.id, (SELECT coalesce(max(id), 0) FROM events))::text FROM ins"
    "  ON CONFLICT (key) DO UPDATE SET value = greatest(meta.value::bigint, excluded.value::bigint)::text)"
    " SELECT count(*) FROM ins";

int pg_event_put(ar_db *db, const ar_event *e, int *inserted, ar_err *err)
{
    pg_params p = { 0 };
    PGresult *res;
    *inserted = 0;
    pg_p_int64(&p, e->id);
    pg_p_text(&p, e->agent);
    pg_p_int64(&p, e->session);
    pg_p_text(&p, e->type);
    if (e->content)
        pg_p_bytes(&p, e->content, e->content_len);
    else
        pg_p_text(&p, NULL);
    pg_p_text(&p, e->metadata);
    pg_p_text(&p, e->run);
    pg_p_int64(&p, e->at);
    int rc = pg_run(db, PG_EVENT_PUT, put_sql, &p, 0, &res, "importing the event", err);
    if (rc == AR_OK)
        *inserted = pg_bigint(res, 0, 0) > 0;
    return rc;
}
