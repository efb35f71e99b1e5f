/* runs.c -- the PostgreSQL backend's SQL for runs, steps and checkpoints.
 *
 * The writes of a run handle are each one statement in autocommit: the
 * fenced UPDATE of the run and what goes with it, so that a durable step
 * costs one round trip. When the connection drops before such a statement's
 * outcome comes back, the call learns it before returning (pg_settle) from
 * a witness of the write: the step, the status, the checkpoint. */
#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* After a write failed: when its connection dropped once the statement was
 * sent, learns its outcome from the witness `sql` (a row when the write is
 * there): AR_OK when it is, else AR_EIO. Any other failure stands. */
static int settle(ar_db *db, int rc, int slot, const char *sql, const pg_params *wp, const char *what,
                  ar_err *err)
{
    pg_session old;
    if (!pg_cut_off(db, &old) || db->in_txn)
        return rc;
    return pg_settle(db, &old, slot, sql, wp, what, err);
}

/* Says why a write of a run handle changed nothing: the run was resumed
 * through another handle (its epoch moved on) or is no longer running. */
static int lost(ar_db *db, int64_t n, int64_t owner, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    PGresult *res = NULL;
    ar_err e;
    if (pg_run(db, PG_RUN_OWNER, "SELECT id, status, owner FROM runs WHERE n = $1", &p, 0, &res,
               "reading the run", &e)) {
        ar_fail(err, AR_ESTATE, "the run is no longer running under this handle");
    } else if (PQntuples(res) == 0) {
        ar_fail(err, AR_ESTATE, "the run is no longer in the store");
    } else if (pg_bigint(res, 0, 2) != owner) {
        ar_fail(err, AR_ESTATE, "run %s was resumed elsewhere; this handle no longer writes to it",
                PQgetvalue(res, 0, 0));
    } else {
        ar_fail(err, AR_ESTATE, "run %s is %s; this handle no longer writes to it (resume it to continue)",
                PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
    }
    return AR_DB_LOST;
}

static void p_progress(pg_params *p, const ar_db_progress *g)
{
    pg_p_int64(p, g->iterations);
    pg_p_int64(p, g->input_tokens);
    pg_p_int64(p, g->output_tokens);
    pg_p_int64(p, g->cost_nanos);
    pg_p_textn(p, g->extra, g->extra_len);
    pg_p_int64(p, g->elapsed_ms);
    pg_p_int64(p, g->updated_at);
}

static void p_step(pg_params *p, const ar_db_step *s)
{
    pg_p_int64(p, s->seq);
    pg_p_text(p, s->kind);
    pg_p_text(p, s->name);
    pg_p_textn(p, s->content, s->content_len);
    pg_p_int64(p, s->input_tokens);
    pg_p_int64(p, s->output_tokens);
    pg_p_int64(p, s->cost_nanos);
    pg_p_textn(p, s->extra, s->extra_len);
    pg_p_int64(p, s->duration_ms);
    pg_p_int64(p, s->at);
}

/* The run's columns after n, as parameters $2..$28 (cast, since an
 * INSERT ... SELECT does not type them from the columns). */
#define RUN_INSERT_COLUMNS "n, id, agent, goal, \"user\", edition, parent, metadata, budget, status," \
    " output, error, limit_name, limit_value, limit_reached, iterations, input_tokens, output_tokens," \
    " cost_nanos, counters, elapsed_ms, updated_at, created_at, finished_at, forked_from, forked_seq, request," \
    " response"
#define RUN_INSERT_VALUES "$1::bigint, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text," \
    " $9::text, $10::text, $11::text, $12::text, $13::text, $14::float8, $15::float8, $16::bigint, $17::bigint," \
    " $18::bigint, $19::bigint, $20::text, $21::bigint, $22::bigint, $23::bigint, $24::bigint, $25::text," \
    " $26::bigint, $27::text, $28::text"

static void p_run(pg_params *p, const ar_db_run *r)
{
    pg_p_int64(p, r->n);
    pg_p_text(p, r->id);
    pg_p_text(p, r->agent);
    pg_p_text(p, r->goal);
    pg_p_text(p, r->user);
    pg_p_text(p, r->edition);
    pg_p_text(p, r->parent);
    pg_p_text(p, r->metadata);
    pg_p_text(p, r->budget);
    pg_p_text(p, ar_status_name(r->status));
    pg_p_textn(p, r->output, r->output_len);
    pg_p_text(p, r->error);
    pg_p_text(p, r->limit_name);
    if (r->limit_name) {
        pg_p_double(p, r->limit_value);
        pg_p_double(p, r->limit_reached);
    } else {
        pg_p_text(p, NULL);
        pg_p_text(p, NULL);
    }
    p_progress(p, &r->progress);
    pg_p_int64(p, r->created_at);
    if (r->finished_at != AR_UNSET)
        pg_p_int64(p, r->finished_at);
    else
        pg_p_text(p, NULL);
    pg_p_text(p, r->forked_from);
    if (r->forked_from)
        pg_p_int64(p, r->forked_seq);
    else
        pg_p_text(p, NULL);
    pg_p_textn(p, r->request, r->request_len);
    pg_p_textn(p, r->response, r->response_len);
}

/* Inserts a new run after every run a reader may have seen. The store's
 * counter row in meta ('last_run_key') holds the highest key given to a run
 * begun live; the statement moves it up to the new key, and its row lock,
 * held until the insert commits, makes a second writer wait and then see
 * the committed value: runs begun live commit in key order across hosts.
 * Records written whole keep their own keys and never move the counter (one
 * dated in the future would push every later run's id there). A store made
 * before the counter existed gets it on its first new run, started at the
 * highest key present then. One statement, one round trip; a key the
 * counter has passed, or one a written record holds, is refused with the
 * lowest key worth trying next. */
static int insert_new(ar_db *db, const ar_db_run *r, int64_t *min_key, ar_err *err)
{
    pg_params p = { 0 };
    p_run(&p, r);
    PGresult *res = NULL;
    int rc = pg_run(db, PG_RUN_INSERT,
        "WITH base AS (SELECT coalesce(max(n), 0) AS n FROM runs),"
        " c AS (INSERT INTO meta(key, value) SELECT 'last_run_key', greatest($1::bigint, base.n)::text FROM base"
        "  ON CONFLICT (key) DO UPDATE SET value = $1::text WHERE meta.value::bigint < $1::bigint"
        "  RETURNING value::bigint AS top),"
        " ins AS (INSERT INTO runs(" RUN_INSERT_COLUMNS ") SELECT " RUN_INSERT_VALUES
        "  FROM c WHERE c.top = $1::bigint ON CONFLICT (n) DO NOTHING RETURNING n)"
        " SELECT (SELECT count(*) FROM ins),"
        " coalesce((SELECT top FROM c), (SELECT value::bigint FROM meta WHERE key = 'last_run_key'), 0)",
        &p, 0, &res, "recording the run", err);
    if (rc) {
        pg_params w = { 0 };
        pg_p_int64(&w, r->n);
        pg_p_text(&w, r->id);
        return settle(db, rc, PG_WITNESS_RUN, "SELECT 1 FROM runs WHERE n = $1 AND id = $2", &w,
                      "recording the run", err);
    }
    if (pg_bigint(res, 0, 0) == 1)
        return AR_OK;
    int64_t top = pg_bigint(res, 0, 1);
    if (top < r->n)
        top = r->n;
    *min_key = top < INT64_MAX ? top + 1 : top;
    return AR_DB_CONFLICT;
}

/* Inserts a record written whole under its own key, refused only when the
 * key is taken. */
static int insert_written(ar_db *db, const ar_db_run *r, int64_t *min_key, ar_err *err)
{
    pg_params p = { 0 };
    p_run(&p, r);
    PGresult *res = NULL;
    int rc = pg_run(db, PG_RUN_WRITE,
        "INSERT INTO runs(" RUN_INSERT_COLUMNS ") VALUES(" RUN_INSERT_VALUES ") ON CONFLICT (n) DO NOTHING",
        &p, 0, &res, "recording the run", err);
    if (rc)
        return rc;
    if (pg_changed(res) == 1)
        return AR_OK;
    *min_key = r->n < INT64_MAX ? r->n + 1 : r->n;
    return AR_DB_CONFLICT;
}

int pg_run_insert(ar_db *db, const ar_db_run *r, int64_t *min_key, ar_err *err)
{
    if (!r->written || db->in_txn)
        return r->written ? insert_written(db, r, min_key, err) : insert_new(db, r, min_key, err);
    /* a transaction of its own, so that a COMMIT cut off is settled by
     * txn_commit */
    int rc = pg_txn_begin(db, err);
    if (rc)
        return rc;
    if ((rc = insert_written(db, r, min_key, err))) {
        pg_txn_rollback(db);
        return rc;
    }
    return pg_txn_commit(db, err);
}

int pg_step_insert(ar_db *db, int64_t n, const ar_db_step *s, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    p_step(&p, s);
    return pg_run(db, PG_STEP_INSERT,
        "INSERT INTO steps(run, seq, kind, name, content, input_tokens, output_tokens, cost_nanos, counters,"
        " duration_ms, at) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &p, 0, NULL, "recording the step", err);
}

int pg_step_append(ar_db *db, int64_t n, int64_t owner, const ar_db_step *s, const ar_db_progress *g, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    pg_p_int64(&p, owner);
    p_progress(&p, g);
    p_step(&p, s);
    PGresult *res = NULL;
    /* one statement, one round trip: the run's totals change only while it
     * is running under this handle's epoch, and the step is inserted from
     * the updated row, so neither is written without the other */
    int rc = pg_run(db, PG_STEP_APPEND,
        "WITH r AS (UPDATE runs SET iterations = $3, input_tokens = $4, output_tokens = $5, cost_nanos = $6,"
        " counters = $7, elapsed_ms = $8, updated_at = $9"
        " WHERE n = $1 AND owner = $2 AND status = 'running' RETURNING n)"
        " INSERT INTO steps(run, seq, kind, name, content, input_tokens, output_tokens, cost_nanos, counters,"
        " duration_ms, at) SELECT r.n, $10::bigint, $11::text, $12::text, $13::text, $14::bigint, $15::bigint,"
        " $16::bigint, $17::text, $18::bigint, $19::bigint FROM r",
        &p, 0, &res, "recording the step", err);
    if (rc) {
        pg_params w = { 0 };
        pg_p_int64(&w, n);
        pg_p_int64(&w, s->seq);
        return settle(db, rc, PG_WITNESS_STEP, "SELECT 1 FROM steps WHERE run = $1 AND seq = $2", &w,
                      "recording the step", err);
    }
    return pg_changed(res) == 1 ? AR_OK : lost(db, n, owner, err);
}

int pg_checkpoint_save(ar_db *db, int64_t n, int64_t owner, int64_t seq, const char *state, size_t len,
                       int64_t at, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    pg_p_int64(&p, owner);
    pg_p_int64(&p, seq);
    pg_p_textn(&p, state, len);
    pg_p_int64(&p, at);
    PGresult *res = NULL;
    int rc = pg_run(db, PG_CHECKPOINT_SAVE,
        "WITH r AS (UPDATE runs SET updated_at = $5"
        " WHERE n = $1 AND owner = $2 AND status = 'running' RETURNING n)"
        " INSERT INTO checkpoints(run, seq, state, at) SELECT r.n, $3::bigint, $4::text, $5::bigint FROM r"
        " ON CONFLICT (run) DO UPDATE SET seq = excluded.seq, state = excluded.state, at = excluded.at",
        &p, 0, &res, "saving the checkpoint", err);
    if (rc) {
        pg_params w = { 0 };
        pg_p_int64(&w, n);
        pg_p_int64(&w, seq);
        pg_p_int64(&w, at);
        return settle(db, rc, PG_WITNESS_CHECKPOINT,
                      "SELECT 1 FROM checkpoints WHERE run = $1 AND seq = $2 AND at = $3", &w,
                      "saving the checkpoint", err);
    }
    return pg_changed(res) == 1 ? AR_OK : lost(db, n, owner, err);
}

int pg_run_touch(ar_db *db, int64_t n, int64_t owner, int64_t now, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, now);
    pg_p_int64(&p, n);
    pg_p_int64(&p, owner);
    PGresult *res = NULL;
    int rc = pg_run(db, PG_RUN_TOUCH,
        "UPDATE runs SET updated_at = $1 WHERE n = $2 AND owner = $3 AND status = 'running'",
        &p, 0, &res, "marking the run's activity", err);
    if (rc)
        return settle(db, rc, PG_WITNESS_TOUCH,
                      "SELECT 1 FROM runs WHERE updated_at = $1 AND n = $2 AND owner = $3 AND status = 'running'",
                      &p, "marking the run's activity", err);
    return pg_changed(res) == 1 ? AR_OK : lost(db, n, owner, err);
}

int pg_run_finish(ar_db *db, int64_t n, int64_t owner, const ar_db_finish *f, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    pg_p_int64(&p, owner);
    pg_p_text(&p, ar_status_name(f->status));
    pg_p_textn(&p, f->output, f->output_len);
    pg_p_text(&p, f->error);
    pg_p_text(&p, f->limit_name);
    if (f->limit_name) {
        pg_p_double(&p, f->limit_value);
        pg_p_double(&p, f->limit_reached);
    } else {
        pg_p_text(&p, NULL);
        pg_p_text(&p, NULL);
    }
    pg_p_int64(&p, f->finished_at);
    pg_p_int64(&p, f->elapsed_ms);
    PGresult *res = NULL;
    int rc = pg_run(db, PG_RUN_FINISH,
        "UPDATE runs SET status = $3, output = $4, error = $5, limit_name = $6, limit_value = $7,"
        " limit_reached = $8, finished_at = $9, updated_at = $9, elapsed_ms = $10"
        " WHERE n = $1 AND owner = $2 AND status = 'running'", &p, 0, &res, "finishing the run", err);
    if (rc) {
        pg_params w = { 0 };
        pg_p_int64(&w, n);
        pg_p_int64(&w, owner);
        pg_p_text(&w, ar_status_name(f->status));
        pg_p_int64(&w, f->finished_at);
        return settle(db, rc, PG_WITNESS_FINISH,
                      "SELECT 1 FROM runs WHERE n = $1 AND owner = $2 AND status = $3 AND finished_at = $4",
                      &w, "finishing the run", err);
    }
    return pg_changed(res) == 1 ? AR_OK : lost(db, n, owner, err);
}

int pg_run_reopen(ar_db *db, int64_t n, int64_t owner, const char *budget, int64_t now, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    pg_p_int64(&p, owner);
    pg_p_text(&p, budget);
    pg_p_int64(&p, now);
    PGresult *res = NULL;
    int rc = pg_run(db, PG_RUN_REOPEN,
        "UPDATE runs SET status = 'running', owner = owner + 1, budget = $3, output = NULL, error = NULL,"
        " limit_name = NULL, limit_value = NULL, limit_reached = NULL, finished_at = NULL, updated_at = $4"
        " WHERE n = $1 AND owner = $2 AND (status IN ('budget_exhausted', 'interrupted')"
        " OR (status = 'waiting' AND response IS NOT NULL))",
        &p, 0, &res, "resuming the run", err);
    if (rc) {
        pg_params w = { 0 };
        pg_p_int64(&w, n);
        pg_p_int64(&w, owner + 1);
        pg_p_int64(&w, now);
        return settle(db, rc, PG_WITNESS_REOPEN,
                      "SELECT 1 FROM runs WHERE n = $1 AND owner = $2 AND updated_at = $3 AND status = 'running'",
                      &w, "resuming the run", err);
    }
    if (pg_changed(res) != 1)
        return ar_fail(err, AR_ESTATE, "the run changed while it was being resumed");
    return AR_OK;
}

int pg_run_load(ar_db *db, int64_t n, const char *id, ar_db_run_row *row, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    pg_p_text(&p, id);
    PGresult *res = NULL;
    int rc = pg_run(db, PG_RUN_LOAD, "SELECT " PG_RUN_COLUMNS " FROM runs WHERE n = $1 AND id = $2",
                    &p, 0, &res, "reading the run", err);
    if (rc)
        return rc;
    if (PQntuples(res) == 0)
        return ar_fail(err, AR_ENOTFOUND, "no run with id %s", id);
    pg_run_row(res, 0, 0, row);
    return AR_OK;
}

int pg_run_exists(ar_db *db, int64_t n, const char *id, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    pg_p_text(&p, id);
    PGresult *res = NULL;
    int rc = pg_run(db, PG_RUN_EXISTS, "SELECT 1 FROM runs WHERE n = $1 AND id = $2", &p, 0, &res,
                    "looking up the run", err);
    if (rc)
        return rc;
    return PQntuples(res) ? AR_OK : ar_fail(err, AR_ENOTFOUND, "no run with id %s", id);
}

int pg_steps_fetch(ar_db *db, int64_t n, int64_t from, size_t max, ar_db_step_visit visit, void *ud, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    pg_p_int64(&p, from);
    pg_p_int64(&p, max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max);
    PGresult *res = NULL;
    int rc = pg_run(db, PG_STEPS_FETCH,
        "SELECT seq, kind, name, content, input_tokens, output_tokens, cost_nanos, counters, duration_ms, at"
        " FROM steps WHERE run = $1 AND seq >= $2 ORDER BY seq LIMIT $3", &p, 0, &res, "reading steps", err);
    if (rc)
        return rc;
    /* the visitor may call the store: the rows stay ours until it returns */
    db->last = NULL;
    int rows = PQntuples(res);
    for (int i = 0; i < rows && rc == AR_OK; i++) {
        ar_db_step_row s;
        s.seq = pg_bigint(res, i, 0);
        s.kind = pg_text(res, i, 1);
        s.name = pg_text(res, i, 2);
        s.content = pg_text(res, i, 3);
        s.input_tokens = pg_bigint(res, i, 4);
        s.output_tokens = pg_bigint(res, i, 5);
        s.cost_nanos = pg_bigint(res, i, 6);
        s.counters = pg_text(res, i, 7);
        s.duration_ms = pg_bigint(res, i, 8);
        s.at = pg_bigint(res, i, 9);
        rc = visit(ud, &s);
    }
    PQclear(res);
    return rc;
}

/* One write statement in a transaction of its own, so that a COMMIT cut
 * off is settled by the transaction's status (txn_commit); *out gets the
 * rows it changed. */
static int write_counted(ar_db *db, int slot, const char *sql, const pg_params *p, int64_t *out,
                         const char *what, ar_err *err)
{
    int rc = pg_txn_begin(db, err);
    if (rc)
        return rc;
    PGresult *res = NULL;
    if ((rc = pg_run(db, slot, sql, p, 0, &res, what, err))) {
        pg_txn_rollback(db);
        return rc;
    }
    int64_t n = pg_changed(res);
    if ((rc = pg_txn_commit(db, err)))
        return rc;
    *out = n;
    return AR_OK;
}

int pg_forget_user(ar_db *db, const char *user, int64_t now, int64_t *out, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, now);
    pg_p_text(&p, user);
    return write_counted(db, PG_FORGET_USER, "UPDATE runs SET \"user\" = NULL, updated_at = $1 WHERE \"user\" = $2",
                         &p, out, "forgetting the user", err);
}

int pg_checkpoint_put(ar_db *db, int64_t n, int64_t seq, const char *state, size_t len, int64_t at, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    pg_p_int64(&p, seq);
    pg_p_textn(&p, state, len);
    pg_p_int64(&p, at);
    return pg_run(db, PG_CHECKPOINT_PUT,
        "INSERT INTO checkpoints(run, seq, state, at) VALUES($1, $2, $3, $4)"
        " ON CONFLICT (run) DO UPDATE SET seq = excluded.seq, state = excluded.state, at = excluded.at",
        &p, 0, NULL, "saving the checkpoint", err);
}

int pg_checkpoint_get(ar_db *db, int64_t n, ar_db_text *state, int64_t *seq, ar_err *err)
{
    state->s = NULL;
    state->len = 0;
    *seq = 0;
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    PGresult *res = NULL;
    int rc = pg_run(db, PG_CHECKPOINT_GET, "SELECT state, seq FROM checkpoints WHERE run = $1", &p, 0, &res,
                    "reading the checkpoint", err);
    if (rc || PQntuples(res) == 0)
        return rc;
    *state = pg_text(res, 0, 0);
    if (!state->s) {
        /* a checkpoint row without a state holds JSON null */
        state->s = "null";
        state->len = 4;
    }
    *seq = pg_bigint(res, 0, 1);
    return AR_OK;
}

int pg_recover(ar_db *db, int64_t stale_before, int64_t now, int64_t *out, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, now);
    pg_p_int64(&p, stale_before);
    return write_counted(db, PG_RECOVER,
        "UPDATE runs SET status = 'interrupted', finished_at = updated_at, updated_at = $1"
        " WHERE status = 'running' AND updated_at <= $2", &p, out, "recovering runs", err);
}

int pg_run_wait(ar_db *db, int64_t n, int64_t owner, const ar_db_step *s, const ar_db_progress *g,
                const char *request, size_t request_len, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    pg_p_int64(&p, owner);
    p_progress(&p, g);
    p_step(&p, s);
    pg_p_textn(&p, request, request_len);
    PGresult *res = NULL;
    /* as a step: one fenced statement, the wait step inserted from the
     * updated row; a new wait clears the answer to the one before */
    int rc = pg_run(db, PG_RUN_WAIT,
        "WITH r AS (UPDATE runs SET iterations = $3, input_tokens = $4, output_tokens = $5, cost_nanos = $6,"
        " counters = $7, elapsed_ms = $8, updated_at = $9, status = 'waiting', request = $20, response = NULL"
        " WHERE n = $1 AND owner = $2 AND status = 'running' RETURNING n)"
        " INSERT INTO steps(run, seq, kind, name, content, input_tokens, output_tokens, cost_nanos, counters,"
        " duration_ms, at) SELECT r.n, $10::bigint, $11::text, $12::text, $13::text, $14::bigint, $15::bigint,"
        " $16::bigint, $17::text, $18::bigint, $19::bigint FROM r",
        &p, 0, &res, "setting the run waiting", err);
    if (rc) {
        pg_params w = { 0 };
        pg_p_int64(&w, n);
        pg_p_int64(&w, s->seq);
        return settle(db, rc, PG_WITNESS_WAIT, "SELECT 1 FROM steps WHERE run = $1 AND seq = $2", &w,
                      "setting the run waiting", err);
    }
    return pg_changed(res) == 1 ? AR_OK : lost(db, n, owner, err);
}

int pg_run_respond(ar_db *db, int64_t n, const char *response, size_t len, int64_t now, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    pg_p_textn(&p, response, len);
    pg_p_int64(&p, now);
    PGresult *res = NULL;
    /* one fenced statement: a second answer waits for the first one's row
     * lock, then finds the run answered and changes nothing */
    int rc = pg_run(db, PG_RUN_RESPOND,
        "WITH r AS (UPDATE runs SET response = $2, iterations = iterations + 1, updated_at = $3"
        " WHERE n = $1 AND status = 'waiting' AND response IS NULL RETURNING n, iterations)"
        " INSERT INTO steps(run, seq, kind, name, content, input_tokens, output_tokens, cost_nanos, counters,"
        " duration_ms, at) SELECT r.n, r.iterations, 'response', NULL, $2::text, 0, 0, 0, NULL, 0, $3::bigint"
        " FROM r",
        &p, 0, &res, "recording the response", err);
    if (rc)
        return settle(db, rc, PG_WITNESS_RESPOND,
                      "SELECT 1 FROM steps WHERE run = $1 AND kind = 'response' AND content = $2 AND at = $3",
                      &p, "recording the response", err);
    return pg_changed(res) == 1 ? AR_OK : AR_DB_LOST;
}

int pg_steps_sums(ar_db *db, int64_t n, int64_t at, int64_t *count, int64_t *input_tokens, int64_t *output_tokens,
                  int64_t *cost_nanos, ar_db_type_visit counter, void *ud, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, n);
    pg_p_int64(&p, at);
    PGresult *res = NULL;
    int rc = pg_run(db, PG_STEPS_SUMS,
        "SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
        " coalesce(sum(cost_nanos), 0) FROM steps WHERE run = $1 AND seq <= $2",
        &p, 0, &res, "summing the steps", err);
    if (rc)
        return rc;
    *count = pg_bigint(res, 0, 0);
    *input_tokens = pg_bigint(res, 0, 1);
    *output_tokens = pg_bigint(res, 0, 2);
    *cost_nanos = pg_bigint(res, 0, 3);
    if (!counter)
        return AR_OK;
    /* each counter summed by the server, grouped by name */
    if ((rc = pg_run(db, PG_COUNTER_SUMS,
        "SELECT j.key, sum(j.value::numeric) FROM steps, jsonb_each_text(steps.counters::jsonb) AS j"
        " WHERE steps.run = $1 AND steps.seq <= $2 AND steps.counters IS NOT NULL"
        " GROUP BY j.key ORDER BY j.key COLLATE \"C\"",
        &p, 0, &res, "summing the steps' counters", err)))
        return rc;
    /* the result is ours from here (freed below), whatever the visitor does */
    db->last = NULL;
    int rows = PQntuples(res);
    for (int i = 0; i < rows && rc == AR_OK; i++)
        rc = counter(ud, pg_text(res, i, 0), pg_bigint(res, i, 1));
    PQclear(res);
    return rc;
}

/* Two statements inside the caller's transaction; the rows go from table
 * to table within the server, never through this process's memory. */
int pg_fork_copy(ar_db *db, int64_t from, int64_t to, int64_t at, ar_err *err)
{
    pg_params p = { 0 };
    pg_p_int64(&p, to);
    pg_p_int64(&p, from);
    pg_p_int64(&p, at);
    int rc = pg_run(db, PG_FORK_STEPS,
        "INSERT INTO steps(run, seq, kind, name, content, input_tokens, output_tokens, cost_nanos, counters,"
        " duration_ms, at) SELECT $1, seq, kind, name, content, input_tokens, output_tokens, cost_nanos,"
        " counters, duration_ms, at FROM steps WHERE run = $2 AND seq <= $3",
        &p, 0, NULL, "copying the steps", err);
    if (rc)
        return rc;
    return pg_run(db, PG_FORK_CHECKPOINT,
        "INSERT INTO checkpoints(run, seq, state, at) SELECT $1, seq, state, at FROM checkpoints"
        " WHERE run = $2 AND seq <= $3",
        &p, 0, NULL, "copying the checkpoint", err);
}
