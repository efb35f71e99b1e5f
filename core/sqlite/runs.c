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

int ar_db_run_insert(ar_db *db, const ar_db_run *r, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_INSERT,
        "INSERT INTO runs(n, id, agent, goal, user, edition, parent, metadata, budget, status,"
        " output, error, limit_name, limit_value, limit_reached,"
        " iterations, input_tokens, output_tokens, cost_nanos, counters, elapsed_ms, updated_at,"
        " created_at, finished_at)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", err);
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
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "recording the run");
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_DONE)
        return AR_OK;
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return AR_DB_CONFLICT;
    return sq_fail(db, err, rc, "recording the run");
}

int ar_db_step_insert(ar_db *db, int64_t run_rowid, const ar_db_step *s, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_STEP_INSERT,
        "INSERT INTO steps(run, seq, kind, name, content, input_tokens, output_tokens,"
        " cost_nanos, counters, duration_ms, at) VALUES(?,?,?,?,?,?,?,?,?,?,?)", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, run_rowid, &b);
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
static int lost(ar_db *db, int64_t run_rowid, int64_t owner, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_OWNER, "SELECT id, status, owner FROM runs WHERE n = ?", err);
    if (st) {
        int rc = sqlite3_bind_int64(st, 1, run_rowid);
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
static int fenced(ar_db *db, sqlite3_stmt *st, int bound, int64_t run_rowid, int64_t owner, ar_err *err,
                  const char *what)
{
    int rc = step_done(db, st, bound, err, what);
    if (rc == AR_OK && sqlite3_changes(db->conn) != 1)
        return lost(db, run_rowid, owner, err);
    return rc;
}

int ar_db_run_progress(ar_db *db, int64_t run_rowid, int64_t owner, const ar_db_progress *p, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_PROGRESS,
        "UPDATE runs SET iterations = ?, input_tokens = ?, output_tokens = ?, cost_nanos = ?,"
        " counters = ?, elapsed_ms = ?, updated_at = ? WHERE n = ? AND owner = ? AND status = 'running'", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    bind_progress(st, 1, p, &b);
    sq_bind_int64(st, 8, run_rowid, &b);
    sq_bind_int64(st, 9, owner, &b);
    return fenced(db, st, b, run_rowid, owner, err, "updating the run's totals");
}

int ar_db_run_touch(ar_db *db, int64_t run_rowid, int64_t owner, int64_t now, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_TOUCH,
        "UPDATE runs SET updated_at = ? WHERE n = ? AND owner = ? AND status = 'running'", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, now, &b);
    sq_bind_int64(st, 2, run_rowid, &b);
    sq_bind_int64(st, 3, owner, &b);
    return fenced(db, st, b, run_rowid, owner, err, "saving the checkpoint");
}

int ar_db_run_finish(ar_db *db, int64_t run_rowid, int64_t owner, const ar_db_finish *f, ar_err *err)
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
    sq_bind_int64(st, 10, run_rowid, &b);
    sq_bind_int64(st, 11, owner, &b);
    return fenced(db, st, b, run_rowid, owner, err, "finishing the run");
}

int ar_db_run_reopen(ar_db *db, int64_t run_rowid, int64_t owner, const char *budget, int64_t now, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_REOPEN,
        "UPDATE runs SET status = 'running', owner = owner + 1, budget = ?, output = NULL, error = NULL,"
        " limit_name = NULL, limit_value = NULL, limit_reached = NULL, finished_at = NULL,"
        " updated_at = ? WHERE n = ? AND owner = ? AND status IN ('budget_exhausted', 'interrupted')", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_text(st, 1, budget, &b);
    sq_bind_int64(st, 2, now, &b);
    sq_bind_int64(st, 3, run_rowid, &b);
    sq_bind_int64(st, 4, owner, &b);
    int rc = step_done(db, st, b, err, "resuming the run");
    if (rc == AR_OK && sqlite3_changes(db->conn) != 1)
        return ar_fail(err, AR_ESTATE, "the run changed while it was being resumed");
    return rc;
}

static int64_t col_time(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? AR_UNSET : sqlite3_column_int64(st, i);
}

/* Reads a counters column (a JSON object of counter values) into the usage
 * extras, names in the row's arena. */
static void counters_to_usage(sq_row *row, int col, ar_usage *u)
{
    u->n_extra = 0;
    u->extra = NULL;
    size_t len;
    /* judged by the parser, not by the API's JSON rules: a schema-1 sum may
     * be past 2^53 and still be read */
    const char *json = sq_row_content(row, col, "counters", &len);
    if (!json)
        return;
    ar_totals t = { 0, 0, 0, 0, 0, 0, NULL };
    int rc = ar_counters_parse(row->db->alloc, &t, json, len);
    if (rc == AR_ECORRUPT)
        sq_row_damaged(row, "counters", "not an object of counts");
    else if (rc)
        row->rc = ar_fail(row->err, rc, "out of memory reading %s", row->owner);
    if (rc == AR_OK && t.n_extra) {
        ar_counter *c = ar_arena_alloc(row->arena, t.n_extra * sizeof *c);
        int failed = !c;
        for (size_t i = 0; c && i < t.n_extra; i++) {
            c[i].name = ar_arena_strdup(row->arena, t.extra[i].name, &failed);
            c[i].value = t.extra[i].value;
        }
        if (failed)
            row->rc = ar_fail(row->err, AR_ENOMEM, "out of memory reading %s", row->owner);
        u->extra = c;
        u->n_extra = t.n_extra;
    }
    ar_totals_free(row->db->alloc, &t);
}

int sq_row_to_record(ar_db *db, sqlite3_stmt *st, int c, ar_record_box *box, ar_err *err)
{
    ar_record *r = &box->rec;
    sq_row row = { db, st, &box->arena, err, "", AR_OK };
    snprintf(row.owner, sizeof row.owner, "run at key %lld", (long long)sqlite3_column_int64(st, c));
    r->id = sq_row_text(&row, c + 1, "id");
    if (r->id)
        snprintf(row.owner, sizeof row.owner, "run %s", r->id);
    r->agent = sq_row_text(&row, c + 2, "agent");
    r->goal = sq_row_text(&row, c + 3, "goal");
    r->user = sq_row_text(&row, c + 4, "user");
    r->edition = sq_row_text(&row, c + 5, "edition");
    r->parent = sq_row_text(&row, c + 6, "parent");
    const char *status = sq_row_text(&row, c + 7, "status");
    if (row.rc == AR_OK && (!status || ar_status_parse(&r->status, status)))
        sq_row_damaged(&row, "status", "not a status name");
    size_t n;
    r->output = sq_row_json(&row, c + 8, "output", 0, &n);
    r->error = sq_row_text(&row, c + 9, "error");
    const char *limit = sq_row_text(&row, c + 10, "limit");
    r->limit.limit = ar_limit_name(limit);
    if (limit && !r->limit.limit)
        sq_row_damaged(&row, "limit", "not a budget limit name");
    r->limit.limit_value = sqlite3_column_double(st, c + 11);
    r->limit.value = sqlite3_column_double(st, c + 12);
    /* judged by the parser: stored limits may be past today's ranges */
    const char *budget = sq_row_content(&row, c + 13, "budget", &n);
    if (row.rc == AR_OK) {
        int brc = ar_budget_parse(&r->budget, budget, n);
        if (brc == AR_ECORRUPT)
            sq_row_damaged(&row, "budget", "not an object of non-negative limits");
        else if (brc)
            row.rc = ar_fail(err, brc, "out of memory reading %s", row.owner);
    }
    r->iterations = sqlite3_column_int64(st, c + 14);
    r->usage.input_tokens = sqlite3_column_int64(st, c + 15);
    r->usage.output_tokens = sqlite3_column_int64(st, c + 16);
    r->usage.total_tokens = r->usage.input_tokens + r->usage.output_tokens;
    box->cost_nanos = sqlite3_column_int64(st, c + 17);
    r->usage.cost = ar_nanos_to_cost(box->cost_nanos);
    counters_to_usage(&row, c + 18, &r->usage);
    r->created_at = sqlite3_column_int64(st, c + 20);
    r->finished_at = col_time(st, c + 21);
    r->updated_at = sqlite3_column_int64(st, c + 22);
    r->latency_ms = r->finished_at == AR_UNSET ? AR_UNSET : r->finished_at - r->created_at;
    r->metadata = sq_row_json(&row, c + 23, "metadata", 1, &n);
    return row.rc;
}

/* Prefixes err's message about a damaged step or checkpoint with the id of
 * its run ("run <id> step 2: ..."); looked up only then, so reads that find
 * nothing damaged pay nothing. */
static void name_run(ar_db *db, int64_t rowid, ar_err *err)
{
    char id[AR_ID_LEN + 1] = "?", msg[AR_ERRMSG_MAX];
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->conn, "SELECT id FROM runs WHERE n = ?", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_int64(st, 1, rowid) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_text(st, 0))
        snprintf(id, sizeof id, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    snprintf(msg, sizeof msg, "%s", err->msg);
    ar_fail(err, AR_ECORRUPT, "run %s %s", id, msg);
}

int ar_db_run_load(ar_db *db, const char *id, ar_record_box *box, int64_t *rowid,
                   int64_t *elapsed_ms, int64_t *owner, ar_err *err)
{
    int64_t key = ar_id_tick(id);
    if (key < 0)
        return ar_fail(err, AR_ENOTFOUND, "no run with id %s", id);
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_LOAD,
                               "SELECT " SQ_RUN_COLUMNS ", owner FROM runs WHERE n = ? AND id = ?", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, key, &b);
    sq_bind_text(st, 2, id, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "reading the run");
    int rc = sqlite3_step(st);
    int result;
    if (rc == SQLITE_ROW) {
        result = sq_row_to_record(db, st, 0, box, err);
        if (rowid)
            *rowid = sqlite3_column_int64(st, 0);
        if (elapsed_ms)
            *elapsed_ms = sqlite3_column_int64(st, 19);
        if (owner)
            *owner = sqlite3_column_int64(st, 24);
    } else if (rc == SQLITE_DONE) {
        result = ar_fail(err, AR_ENOTFOUND, "no run with id %s", id);
    } else {
        result = sq_fail(db, err, rc, "reading the run");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return result;
}

int ar_db_run_rowid(ar_db *db, const char *id, int64_t *rowid, ar_err *err)
{
    int64_t key = ar_id_tick(id);
    if (key < 0)
        return ar_fail(err, AR_ENOTFOUND, "no run with id %s", id);
    sqlite3_stmt *st = sq_stmt(db, SQ_RUN_ROWID, "SELECT n FROM runs WHERE n = ? AND id = ?", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, key, &b);
    sq_bind_text(st, 2, id, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "looking up the run");
    int rc = sqlite3_step(st);
    int result = AR_OK;
    if (rc == SQLITE_ROW)
        *rowid = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        result = ar_fail(err, AR_ENOTFOUND, "no run with id %s", id);
    else
        result = sq_fail(db, err, rc, "looking up the run");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return result;
}

int ar_db_steps_fetch(ar_db *db, int64_t run_rowid, int64_t from, size_t max,
                      ar_arena *arena, ar_step **out, size_t *n, ar_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = sq_stmt(db, SQ_STEPS_FETCH,
        "SELECT seq, kind, name, content, input_tokens, output_tokens, cost_nanos, counters,"
        " duration_ms, at FROM steps WHERE run = ? AND seq >= ? ORDER BY seq LIMIT ?", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, run_rowid, &b);
    sq_bind_int64(st, 2, from, &b);
    sq_bind_int64(st, 3, (int64_t)max, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "reading steps");
    ar_step *steps = ar_arena_alloc(arena, max * sizeof *steps);
    int result = AR_OK, rc;
    if (!steps) {
        result = ar_fail(err, AR_ENOMEM, "out of memory reading steps");
        goto cleanup;
    }
    size_t k = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ar_step *s = &steps[k];
        s->seq = sqlite3_column_int64(st, 0);
        sq_row row = { db, st, arena, err, "", AR_OK };
        snprintf(row.owner, sizeof row.owner, "step %lld", (long long)s->seq);
        s->kind = sq_row_text(&row, 1, "kind");
        if (row.rc == AR_OK && !s->kind)
            sq_row_damaged(&row, "kind", "it is missing");
        s->name = sq_row_text(&row, 2, "name");
        s->content = sq_row_json(&row, 3, "content", 0, &s->content_len);
        s->usage.input_tokens = sqlite3_column_int64(st, 4);
        s->usage.output_tokens = sqlite3_column_int64(st, 5);
        s->usage.total_tokens = s->usage.input_tokens + s->usage.output_tokens;
        s->usage.cost = ar_nanos_to_cost(sqlite3_column_int64(st, 6));
        counters_to_usage(&row, 7, &s->usage);
        s->duration_ms = sqlite3_column_int64(st, 8);
        s->at = sqlite3_column_int64(st, 9);
        if (row.rc == AR_ECORRUPT)
            name_run(db, run_rowid, err);
        if ((result = row.rc))
            goto cleanup;
        k++;
    }
    if (rc != SQLITE_DONE) {
        result = sq_fail(db, err, rc, "reading steps");
        goto cleanup;
    }
    *out = steps;
    *n = k;
cleanup:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return result;
}

int ar_db_forget_user(ar_db *db, const char *user, int64_t now, int64_t *out, ar_err *err)
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

int ar_db_checkpoint_put(ar_db *db, int64_t run_rowid, int64_t seq, const char *state,
                         size_t len, int64_t at, ar_err *err)
{
    sqlite3_stmt *st = sq_stmt(db, SQ_CHECKPOINT_PUT,
        "INSERT INTO checkpoints(run, seq, state, at) VALUES(?,?,?,?)"
        " ON CONFLICT(run) DO UPDATE SET seq = excluded.seq, state = excluded.state, at = excluded.at", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, run_rowid, &b);
    sq_bind_int64(st, 2, seq, &b);
    sq_bind_textn(st, 3, state, len, &b);
    sq_bind_int64(st, 4, at, &b);
    return step_done(db, st, b, err, "saving the checkpoint");
}

int ar_db_checkpoint_get(ar_db *db, int64_t run_rowid, const ar_allocator *alloc,
                         char **state, int64_t *seq, ar_err *err)
{
    *state = NULL;
    *seq = 0;
    sqlite3_stmt *st = sq_stmt(db, SQ_CHECKPOINT_GET, "SELECT state, seq FROM checkpoints WHERE run = ?", err);
    if (!st)
        return err->code;
    int b = SQLITE_OK;
    sq_bind_int64(st, 1, run_rowid, &b);
    if (b != SQLITE_OK)
        return sq_bound(db, st, b, err, "reading the checkpoint");
    int rc = sqlite3_step(st), result = AR_OK;
    if (rc == SQLITE_ROW) {
        sq_row row = { db, st, NULL, err, "checkpoint", AR_OK };
        size_t n;
        const char *s = sq_row_json(&row, 0, "state", 0, &n);
        *seq = sqlite3_column_int64(st, 1);
        if (row.rc == AR_ECORRUPT)
            name_run(db, run_rowid, err);
        if ((result = row.rc) == AR_OK && !(*state = ar_out_strdup(alloc, s ? s : "null", s ? n : 4)))
            result = ar_fail(err, AR_ENOMEM, "out of memory reading the checkpoint");
    } else if (rc != SQLITE_DONE) {
        result = sq_fail(db, err, rc, "reading the checkpoint");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return result;
}

/* "No activity for stale_after" includes a run last updated exactly at the
 * cutoff, so stale_after 0 sweeps every running run, deterministically. */
int ar_db_recover(ar_db *db, int64_t stale_before, int64_t now, int64_t *out, ar_err *err)
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
