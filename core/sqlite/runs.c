/* runs.c -- the SQLite backend's SQL for runs, steps and checkpoints. */
#include "sq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Steps and finishes a cached statement that returns no rows, unless its
 * binds failed (`bound` is their first failure). */
static int step_done(ar_db *db, sqlite3_stmt *st, int bound, ar_err *err, const char *what)
{
    if (bound != SQLITE_OK)
        return sq_bound(db, st, bound, err, what);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? AR_OK : sq_fail(db, err, rc, what);
}

static void bind_progress(sqlite3_stmt *st, int i, const ar_db_progress *p, int *rc)
{
    sq_bind_int64(st, i, p->iterations, rc);
    sq_bind_int64(st, i + 1, p->input_tokens, rc);
    sq_bind_int64(st, i + 2, p->output_tokens, rc);
    sq_bind_int64(st, i + 3, p->cost_nanos, rc);
    sq_bind_textn(st, i + 4, p->extra, p->extra_len, rc);
    sq_bind_int64(st, i + 5, p->elapsed_ms, rc);
    sq_bind_int64(st, i + 6, p->updated_at, rc);
}

int sq_run_insert(ar_db *db, const ar_db_run *r, int64_t *min_key, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_INSERT,
        "INSERT INTO runs(n, id, agent, goal, user, edition, parent, metadata, budget, status,"
        " output, error, limit_name, limit_value, limit_reached,"
        " iterations, input_tokens, output_tokens, cost_nanos, counters, elapsed_ms, updated_at,"
        " created_at, finished_at, forked_from, forked_seq, request, response)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, r->n, &b);
    sq_bind_text(st, 2, r->id, &b);
    sq_bind_text(st, 3, r->agent, &b);
    sq_bind_text(st, 4, r->goal, &b);
    sq_bind_text(st, 5, r->user, &b);
    sq_bind_text(st, 6, r->edition, &b);
    sq_bind_text(st, 7, r->parent, &b);
    sq_bind_text(st, 8, r->metadata, &b);
    sq_bind_text(st, 9, r->budget, &b);
    sq_bind_text(st, 10, ar_status_name(r->status), &b);
    sq_bind_textn(st, 11, r->output, r->output_len, &b);
    sq_bind_text(st, 12, r->error, &b);
    sq_bind_text(st, 13, r->limit_name, &b);
    if (r->limit_name) {
        sq_bind_double(st, 14, r->limit_value, &b);
        sq_bind_double(st, 15, r->limit_reached, &b);
    }
    bind_progress(st, 16, &r->progress, &b);
    sq_bind_int64(st, 23, r->created_at, &b);
    if (r->finished_at != AR_UNSET)
        sq_bind_int64(st, 24, r->finished_at, &b);
    sq_bind_text(st, 25, r->forked_from, &b);
    if (r->forked_from)
        sq_bind_int64(st, 26, r->forked_seq, &b);
    sq_bind_textn(st, 27, r->request, r->request_len, &b);
    sq_bind_textn(st, 28, r->response, r->response_len, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "recording the run");
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_DONE)
        return AR_OK;
    /* one writer at a time: only a taken key is refused, and the next one is free */
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        *min_key = r->n + 1;
        return AR_DB_CONFLICT;
    }
    return sq_fail(db, err, rc, "recording the run");
}

int sq_step_insert(ar_db *db, int64_t n, const ar_db_step *s, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_STEP_INSERT,
        "INSERT INTO steps(run, seq, kind, name, content, input_tokens, output_tokens,"
        " cost_nanos, counters, duration_ms, at) VALUES(?,?,?,?,?,?,?,?,?,?,?)", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, n, &b);
    sq_bind_int64(st, 2, s->seq, &b);
    sq_bind_text(st, 3, s->kind, &b);
    sq_bind_text(st, 4, s->name, &b);
    sq_bind_textn(st, 5, s->content, s->content_len, &b);
    sq_bind_int64(st, 6, s->input_tokens, &b);
    sq_bind_int64(st, 7, s->output_tokens, &b);
    sq_bind_int64(st, 8, s->cost_nanos, &b);
    sq_bind_textn(st, 9, s->extra, s->extra_len, &b);
    sq_bind_int64(st, 10, s->duration_ms, &b);
    sq_bind_int64(st, 11, s->at, &b);
    return step_done(db, st, b, err, "recording the step");
}

/* Says why a write of a run handle changed nothing: the run was resumed
 * through another handle (its epoch moved on) or is no longer running. */
static int lost(ar_db *db, int64_t n, int64_t owner, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_OWNER, "SELECT id, status, owner FROM runs WHERE n = ?", err);
    if (st) {
        int rc = sqlite3_bind_int64(st, 1, n);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *id = (const char *)sqlite3_column_text(st, 0);
            const char *status = (const char *)sqlite3_column_text(st, 1);
            if (sqlite3_column_int64(st, 2) != owner)
                ar_fail(err, AR_ESTATE, "run %s was resumed elsewhere; this handle no longer writes to it",
                        id ? id : "?");
            else
                ar_fail(err, AR_ESTATE, "run %s is %s; this handle no longer writes to it (resume it to continue)",
                        id ? id : "?", status ? status : "?");
        } else {
            ar_fail(err, AR_ESTATE, rc == SQLITE_DONE ? "the run is no longer in the store"
                                                      : "the run is no longer running under this handle");
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    } else {
        ar_fail(err, AR_ESTATE, "the run is no longer running under this handle");
    }
    return AR_DB_LOST;
}

/* Steps a fenced write of a run handle: exactly one row changes, or the run is lost. */
static int fenced(ar_db *db, sqlite3_stmt *st, int bound, int64_t n, int64_t owner, ar_err *err,
                  const char *what)
{
    int rc = step_done(db, st, bound, err, what);
    if (rc == AR_OK && sqlite3_changes(db->conn) != 1)
        return lost(db, n, owner, err);
    return rc;
}

static int run_progress(ar_db *db, int64_t n, int64_t owner, const ar_db_progress *p, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_PROGRESS,
        "UPDATE runs SET iterations = ?, input_tokens = ?, output_tokens = ?, cost_nanos = ?,"
        " counters = ?, elapsed_ms = ?, updated_at = ? WHERE n = ? AND owner = ? AND status = 'running'", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    bind_progress(st, 1, p, &b);
    sq_bind_int64(st, 8, n, &b);
    sq_bind_int64(st, 9, owner, &b);
    return fenced(db, st, b, n, owner, err, "updating the run's totals");
}

int sq_run_touch(ar_db *db, int64_t n, int64_t owner, int64_t now, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_TOUCH,
        "UPDATE runs SET updated_at = ? WHERE n = ? AND owner = ? AND status = 'running'", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, now, &b);
    sq_bind_int64(st, 2, n, &b);
    sq_bind_int64(st, 3, owner, &b);
    return fenced(db, st, b, n, owner, err, "saving the checkpoint");
}

int sq_run_finish(ar_db *db, int64_t n, int64_t owner, const ar_db_finish *f, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_FINISH,
        "UPDATE runs SET status = ?, output = ?, error = ?, limit_name = ?, limit_value = ?,"
        " limit_reached = ?, finished_at = ?, updated_at = ?, elapsed_ms = ?"
        " WHERE n = ? AND owner = ? AND status = 'running'", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_text(st, 1, ar_status_name(f->status), &b);
    sq_bind_textn(st, 2, f->output, f->output_len, &b);
    sq_bind_text(st, 3, f->error, &b);
    sq_bind_text(st, 4, f->limit_name, &b);
    if (f->limit_name) {
        sq_bind_double(st, 5, f->limit_value, &b);
        sq_bind_double(st, 6, f->limit_reached, &b);
    }
    sq_bind_int64(st, 7, f->finished_at, &b);
    sq_bind_int64(st, 8, f->finished_at, &b);
    sq_bind_int64(st, 9, f->elapsed_ms, &b);
    sq_bind_int64(st, 10, n, &b);
    sq_bind_int64(st, 11, owner, &b);
    return fenced(db, st, b, n, owner, err, "finishing the run");
}

int sq_run_reopen(ar_db *db, int64_t n, int64_t owner, const char *budget, int64_t now, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_REOPEN,
        "UPDATE runs SET status = 'running', owner = owner + 1, budget = ?, output = NULL, error = NULL,"
        " limit_name = NULL, limit_value = NULL, limit_reached = NULL, finished_at = NULL,"
        " updated_at = ? WHERE n = ? AND owner = ? AND (status IN ('budget_exhausted', 'interrupted')"
        " OR (status = 'waiting' AND response IS NOT NULL))", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_text(st, 1, budget, &b);
    sq_bind_int64(st, 2, now, &b);
    sq_bind_int64(st, 3, n, &b);
    sq_bind_int64(st, 4, owner, &b);
    int rc = step_done(db, st, b, err, "resuming the run");
    if (rc == AR_OK && sqlite3_changes(db->conn) != 1)
        return ar_fail(err, AR_ESTATE, "the run changed while it was being resumed");
    return rc;
}

int sq_run_row(sqlite3_stmt *st, int c, ar_db_run_row *r)
{
    int nomem = 0;
    r->n = sqlite3_column_int64(st, c);
    r->id = sq_col_text(st, c + 1, &nomem);
    r->agent = sq_col_text(st, c + 2, &nomem);
    r->goal = sq_col_text(st, c + 3, &nomem);
    r->user = sq_col_text(st, c + 4, &nomem);
    r->edition = sq_col_text(st, c + 5, &nomem);
    r->parent = sq_col_text(st, c + 6, &nomem);
    r->status = sq_col_text(st, c + 7, &nomem);
    r->output = sq_col_text(st, c + 8, &nomem);
    r->error = sq_col_text(st, c + 9, &nomem);
    r->limit_name = sq_col_text(st, c + 10, &nomem);
    r->limit_value = sqlite3_column_double(st, c + 11);
    r->limit_reached = sqlite3_column_double(st, c + 12);
    r->budget = sq_col_text(st, c + 13, &nomem);
    r->iterations = sqlite3_column_int64(st, c + 14);
    r->input_tokens = sqlite3_column_int64(st, c + 15);
    r->output_tokens = sqlite3_column_int64(st, c + 16);
    r->cost_nanos = sqlite3_column_int64(st, c + 17);
    r->counters = sq_col_text(st, c + 18, &nomem);
    r->elapsed_ms = sqlite3_column_int64(st, c + 19);
    r->created_at = sqlite3_column_int64(st, c + 20);
    r->finished_at = sq_col_time(st, c + 21);
    r->updated_at = sqlite3_column_int64(st, c + 22);
    r->metadata = sq_col_text(st, c + 23, &nomem);
    r->owner = sqlite3_column_int64(st, c + 24);
    r->forked_from = sq_col_text(st, c + 25, &nomem);
    r->forked_seq = sqlite3_column_int64(st, c + 26);
    r->request = sq_col_text(st, c + 27, &nomem);
    r->response = sq_col_text(st, c + 28, &nomem);
    return nomem;
}

int sq_run_load(ar_db *db, int64_t n, const char *id, ar_db_run_row *row, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_LOAD, "SELECT " SQ_RUN_COLUMNS " FROM runs WHERE n = ? AND id = ?", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, n, &b);
    sq_bind_text(st, 2, id, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "reading the run");
    int rc = sqlite3_step(st);
    int result;
    if (rc == SQLITE_ROW) {
        ar_db_text *texts[] = { &row->id, &row->agent, &row->goal, &row->user, &row->edition, &row->parent,
                                &row->status, &row->output, &row->error, &row->limit_name, &row->budget,
                                &row->counters, &row->metadata, &row->forked_from, &row->request,
                                &row->response };
        if (sq_run_row(st, 0, row))
            result = sq_nomem(err, "reading the run");
        else
            result = sq_hold(db, texts, sizeof texts / sizeof texts[0], err);
    } else if (rc == SQLITE_DONE) {
        result = ar_fail(err, AR_ENOTFOUND, "no run with id %s", id);
    } else {
        result = sq_fail(db, err, rc, "reading the run");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return result;
}

int sq_run_exists(ar_db *db, int64_t n, const char *id, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_EXISTS, "SELECT n FROM runs WHERE n = ? AND id = ?", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, n, &b);
    sq_bind_text(st, 2, id, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "looking up the run");
    int rc = sqlite3_step(st);
    int result = AR_OK;
    if (rc == SQLITE_DONE)
        result = ar_fail(err, AR_ENOTFOUND, "no run with id %s", id);
    else if (rc != SQLITE_ROW)
        result = sq_fail(db, err, rc, "looking up the run");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return result;
}

int sq_steps_fetch(ar_db *db, int64_t n, int64_t from, size_t max, ar_db_step_visit visit, void *ud,
                   ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_STEPS_FETCH,
        "SELECT seq, kind, name, content, input_tokens, output_tokens, cost_nanos, counters,"
        " duration_ms, at FROM steps WHERE run = ? AND seq >= ? ORDER BY seq LIMIT ?", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, n, &b);
    sq_bind_int64(st, 2, from, &b);
    sq_bind_int64(st, 3, max > INT64_MAX ? INT64_MAX : (int64_t)max, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "reading steps");
    int result = AR_OK, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ar_db_step_row row;
        int nomem = 0;
        row.seq = sqlite3_column_int64(st, 0);
        row.kind = sq_col_text(st, 1, &nomem);
        row.name = sq_col_text(st, 2, &nomem);
        row.content = sq_col_text(st, 3, &nomem);
        row.input_tokens = sqlite3_column_int64(st, 4);
        row.output_tokens = sqlite3_column_int64(st, 5);
        row.cost_nanos = sqlite3_column_int64(st, 6);
        row.counters = sq_col_text(st, 7, &nomem);
        row.duration_ms = sqlite3_column_int64(st, 8);
        row.at = sqlite3_column_int64(st, 9);
        if (nomem) {
            result = sq_nomem(err, "reading steps");
            goto cleanup;
        }
        if ((result = visit(ud, &row)))
            goto cleanup;
    }
    if (rc != SQLITE_DONE)
        result = sq_fail(db, err, rc, "reading steps");
cleanup:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return result;
}

int sq_forget_user(ar_db *db, const char *user, int64_t now, int64_t *out, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_FORGET_USER, "UPDATE runs SET user = NULL, updated_at = ? WHERE user = ?", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, now, &b);
    sq_bind_text(st, 2, user, &b);
    int rc = step_done(db, st, b, err, "forgetting the user");
    if (rc == AR_OK)
        *out = sqlite3_changes64(db->conn);
    return rc;
}

int sq_checkpoint_put(ar_db *db, int64_t n, int64_t seq, const char *state,
                      size_t len, int64_t at, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_CHECKPOINT_PUT,
        "INSERT INTO checkpoints(run, seq, state, at) VALUES(?,?,?,?)"
        " ON CONFLICT(run) DO UPDATE SET seq = excluded.seq, state = excluded.state, at = excluded.at", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, n, &b);
    sq_bind_int64(st, 2, seq, &b);
    sq_bind_textn(st, 3, state, len, &b);
    sq_bind_int64(st, 4, at, &b);
    return step_done(db, st, b, err, "saving the checkpoint");
}

int sq_checkpoint_get(ar_db *db, int64_t n, ar_db_text *state, int64_t *seq, ar_err *err)
{
    state->s = NULL;
    state->len = 0;
    *seq = 0;
    sqlite3_stmt *st = sq_stmt(db, SQ_CHECKPOINT_GET, "SELECT state, seq FROM checkpoints WHERE run = ?", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, n, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "reading the checkpoint");
    int rc = sqlite3_step(st), result = AR_OK;
    if (rc == SQLITE_ROW) {
        int nomem = 0;
        ar_db_text t = sq_col_text(st, 0, &nomem);
        /* a saved checkpoint whose state is SQL NULL holds JSON null */
        if (!t.s && !nomem) {
            t.s = "null";
            t.len = 4;
        }
        ar_db_text *texts[] = { &t };
        *seq = sqlite3_column_int64(st, 1);
        if (nomem)
            result = sq_nomem(err, "reading the checkpoint");
        else if ((result = sq_hold(db, texts, 1, err)) == AR_OK)
            *state = t;
    } else if (rc != SQLITE_DONE) {
        result = sq_fail(db, err, rc, "reading the checkpoint");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return result;
}

/* "No activity for stale_after" includes a run last updated exactly at the
 * cutoff, so stale_after 0 sweeps every running run, deterministically. */
int sq_recover(ar_db *db, int64_t stale_before, int64_t now, int64_t *out, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RECOVER,
        "UPDATE runs SET status = 'interrupted', finished_at = updated_at, updated_at = ?"
        " WHERE status = 'running' AND updated_at <= ?", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, now, &b);
    sq_bind_int64(st, 2, stale_before, &b);
    int rc = step_done(db, st, b, err, "recovering runs");
    if (rc == AR_OK)
        *out = sqlite3_changes64(db->conn);
    return rc;
}

/* The fenced progress update and the step's row in one transaction: a
 * handle that lost the run inserts nothing. */
int sq_step_append(ar_db *db, int64_t n, int64_t owner, const ar_db_step *step, const ar_db_progress *p,
                   ar_err *err)
{
    int rc;
    if ((rc = sq_txn_begin(db, err)) == AR_OK &&
        (rc = run_progress(db, n, owner, p, err)) == AR_OK &&
        (rc = sq_step_insert(db, n, step, err)) == AR_OK)
        rc = sq_txn_commit(db, err);
    if (rc)
        sq_txn_rollback(db);
    return rc;
}

/* A saved state is activity: the run's updated_at moves with it, in one transaction. */
int sq_checkpoint_save(ar_db *db, int64_t n, int64_t owner, int64_t seq, const char *state, size_t len,
                       int64_t at, ar_err *err)
{
    int rc;
    if ((rc = sq_txn_begin(db, err)) == AR_OK &&
        (rc = sq_run_touch(db, n, owner, at, err)) == AR_OK &&
        (rc = sq_checkpoint_put(db, n, seq, state, len, at, err)) == AR_OK)
        rc = sq_txn_commit(db, err);
    if (rc)
        sq_txn_rollback(db);
    return rc;
}

/* The fenced progress update, the wait step's row and the status in one
 * transaction: a handle that lost the run writes nothing. A new wait
 * clears the answer to the one before. */
int sq_run_wait(ar_db *db, int64_t n, int64_t owner, const ar_db_step *step, const ar_db_progress *p,
                const char *request, size_t request_len, ar_err *err)
{
    int rc;
    if ((rc = sq_txn_begin(db, err)))
        return rc;
    if ((rc = run_progress(db, n, owner, p, err)) || (rc = sq_step_insert(db, n, step, err)))
        goto cleanup;
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_WAIT,
        "UPDATE runs SET status = 'waiting', request = ?, response = NULL"
        " WHERE n = ? AND owner = ? AND status = 'running'", err);
    if (!st) {
        rc = err->code;
        goto cleanup;
    }
    int b = SQLITE_OK;
    sq_bind_textn(st, 1, request, request_len, &b);
    sq_bind_int64(st, 2, n, &b);
    sq_bind_int64(st, 3, owner, &b);
    if ((rc = fenced(db, st, b, n, owner, err, "setting the run waiting")) == AR_OK)
        rc = sq_txn_commit(db, err);
cleanup:
    if (rc)
        sq_txn_rollback(db);
    return rc;
}

/* The write lock is taken before the run is looked at, so of two answers
 * the second finds the first one's response and changes nothing. */
int sq_run_respond(ar_db *db, int64_t n, const char *response, size_t len, int64_t now, ar_err *err)
{
    int rc;
    if ((rc = sq_txn_begin(db, err)))
        return rc;
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_RESPOND,
        "UPDATE runs SET response = ?, iterations = iterations + 1, updated_at = ?"
        " WHERE n = ? AND status = 'waiting' AND response IS NULL", err);
    if (!st) {
        rc = err->code;
        goto cleanup;
    }
    int b = SQLITE_OK;
    sq_bind_textn(st, 1, response, len, &b);
    sq_bind_int64(st, 2, now, &b);
    sq_bind_int64(st, 3, n, &b);
    if ((rc = step_done(db, st, b, err, "recording the response")))
        goto cleanup;
    if (sqlite3_changes(db->conn) != 1) {
        rc = AR_DB_LOST;
        goto cleanup;
    }
    /* the response step is numbered from the row just updated */
    if (!(st = sq_stmt(db, SQ_RESPONSE_STEP,
        "INSERT INTO steps(run, seq, kind, name, content, input_tokens, output_tokens, cost_nanos, counters,"
        " duration_ms, at) SELECT n, iterations, 'response', NULL, response, 0, 0, 0, NULL, 0, ?"
        " FROM runs WHERE n = ?", err))) {
        rc = err->code;
        goto cleanup;
    }
    b = SQLITE_OK;
    sq_bind_int64(st, 1, now, &b);
    sq_bind_int64(st, 2, n, &b);
    if ((rc = step_done(db, st, b, err, "recording the response")) == AR_OK)
        rc = sq_txn_commit(db, err);
cleanup:
    if (rc)
        sq_txn_rollback(db);
    return rc;
}

int sq_steps_sums(ar_db *db, int64_t n, int64_t at, int64_t *count, int64_t *input_tokens, int64_t *output_tokens,
                  int64_t *cost_nanos, ar_db_type_visit counter, void *ud, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_STEPS_SUMS,
        "SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
        " coalesce(sum(cost_nanos), 0) FROM steps WHERE run = ? AND seq <= ?", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, n, &b);
    sq_bind_int64(st, 2, at, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "summing the steps");
    int rc = sqlite3_step(st), result = AR_OK;
    if (rc == SQLITE_ROW) {
        *count = sqlite3_column_int64(st, 0);
        *input_tokens = sqlite3_column_int64(st, 1);
        *output_tokens = sqlite3_column_int64(st, 2);
        *cost_nanos = sqlite3_column_int64(st, 3);
    } else {
        result = sq_fail(db, err, rc, "summing the steps");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (result || !counter)
        return result;
    /* each counter summed by the store, grouped by name */
    if (!(st = sq_stmt(db, SQ_COUNTER_SUMS,
        "SELECT j.key, sum(j.value) FROM steps, json_each(steps.counters) AS j"
        " WHERE steps.run = ? AND steps.seq <= ? AND steps.counters IS NOT NULL GROUP BY j.key ORDER BY j.key",
        err)))
        return err->code;
    b = SQLITE_OK;
    sq_bind_int64(st, 1, n, &b);
    sq_bind_int64(st, 2, at, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "summing the steps' counters");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int nomem = 0;
        ar_db_text name = sq_col_text(st, 0, &nomem);
        if (nomem) {
            result = sq_nomem(err, "summing the steps' counters");
            break;
        }
        if ((result = counter(ud, name, sqlite3_column_int64(st, 1))))
            break;
    }
    if (result == AR_OK && rc != SQLITE_DONE)
        result = sq_fail(db, err, rc, "summing the steps' counters");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return result;
}

/* Steps copied by one statement of a fork. SQLite reads the rows of an
 * INSERT ... SELECT on one table into a temporary table first: in slices
 * of this many steps that table stays in the page cache (a whole run's
 * would spill to a temporary file), and the copy takes about half the time
 * of one statement over the whole run. */
#define FORK_SLICE 128

/* Statements inside the caller's transaction; the rows go from table to
 * table within SQLite, never through this process's memory. */
int sq_fork_copy(ar_db *db, int64_t from, int64_t to, int64_t at, ar_err *err)
{
    int rc = AR_OK;
    for (int64_t lo = 0; lo < at && rc == AR_OK; lo += FORK_SLICE) {
        sqlite3_stmt *st = sq_stmt(db, SQ_FORK_STEPS,
            "INSERT INTO steps(run, seq, kind, name, content, input_tokens, output_tokens, cost_nanos, counters,"
            " duration_ms, at) SELECT ?, seq, kind, name, content, input_tokens, output_tokens, cost_nanos,"
            " counters, duration_ms, at FROM steps WHERE run = ? AND seq > ? AND seq <= ?", err);
        if (!st)
            return err->code;
        int b = SQLITE_OK;
        sq_bind_int64(st, 1, to, &b);
        sq_bind_int64(st, 2, from, &b);
        sq_bind_int64(st, 3, lo, &b);
        sq_bind_int64(st, 4, at - lo > FORK_SLICE ? lo + FORK_SLICE : at, &b);
        rc = step_done(db, st, b, err, "copying the steps");
    }
    if (rc)
        return rc;
    sqlite3_stmt *st;
    int b;
    if (!(st = sq_stmt(db, SQ_FORK_CHECKPOINT,
        "INSERT INTO checkpoints(run, seq, state, at) SELECT ?, seq, state, at FROM checkpoints"
        " WHERE run = ? AND seq <= ?", err)))
        return err->code;
    b = SQLITE_OK;
    sq_bind_int64(st, 1, to, &b);
    sq_bind_int64(st, 2, from, &b);
    sq_bind_int64(st, 3, at, &b);
    return step_done(db, st, b, err, "copying the checkpoint");
}
