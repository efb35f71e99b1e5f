/* run.c -- recording a run: begin, append steps durably, budgets, checkpoints, finish, resume. */
#include "internal.h"
#include "json.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

void ar_run_detach(ar_run *run, ar_status end, const char *why);

static void link_run(ar_store *store, ar_run *run)
{
    run->store = store;
    run->prev = NULL;
    run->next = store->runs;
    if (store->runs)
        store->runs->prev = run;
    store->runs = run;
}

static void unlink_run(ar_run *run)
{
    if (!run->store)
        return;
    if (run->prev)
        run->prev->next = run->next;
    else
        run->store->runs = run->next;
    if (run->next)
        run->next->prev = run->prev;
    run->next = run->prev = NULL;
    run->store = NULL;
}

static ar_run *run_new(ar_store *store)
{
    ar_run *run = ar_mem_alloc(&store->alloc, sizeof *run);
    if (!run)
        return NULL;
    memset(run, 0, sizeof *run);
    run->alloc = store->alloc;
    run->status = AR_RUNNING;
    return run;
}

static void run_free(ar_run *run)
{
    ar_allocator a = run->alloc;
    ar_totals_free(&a, &run->totals);
    ar_intent_map_free(&a, run->intents);
    ar_mem_free(&a, run->scratch);
    ar_mem_free(&a, run->scratch2);
    ar_mem_free(&a, run->response);
    a.free(a.ud, run);
}

/* Copies the store's error into the run's slot (run calls report on the
 * run). AR_DB_LOST, a write the fence refused, means the run is no longer
 * this handle's: the handle reports it interrupted from now on and refuses
 * every write with the reason, while the new owner goes on unhindered. */
static int from_store(ar_run *run, int rc)
{
    if (rc && run->store) {
        run->err = run->store->err;
        if (rc == AR_DB_LOST) {
            rc = AR_ESTATE;
            run->status = AR_INTERRUPTED;
            memcpy(run->lost, run->err.msg, sizeof run->lost);
        }
        run->err.code = rc;
    }
    return rc;
}

/* The run can take a step or a finish: AR_OK or AR_ESTATE/AR_EMISUSE.
 * `what` names the write it is about to make; NULL for a check, which only
 * reads and so is allowed during a retention scan. */
static int writable(ar_run *run, const char *what)
{
    if (!run->store)
        return ar_fail(&run->err, AR_ESTATE, "the run's store is closed");
    if (run->lost[0])
        return ar_fail(&run->err, AR_ESTATE, "%s", run->lost);
    if (run->status != AR_RUNNING)
        return ar_fail(&run->err, AR_ESTATE, "the run is %s; it takes no more steps", ar_status_name(run->status));
    return what ? ar_store_scan_check(run->store, &run->err, what) : AR_OK;
}

/* What the probe of a step whose write failed found. */
typedef struct unsure_probe {
    ar_run *run;
    int64_t seq;
    const ar_step *retry;       /* the step the caller records now, or NULL */
    int64_t retry_cost;
    size_t retry_len;
    int same;                   /* the stored step is `retry` */
} unsure_probe;

static int text_is(ar_db_text t, const char *s, size_t len)
{
    return s ? t.s && t.len == len && memcmp(t.s, s, len) == 0 : !t.s;
}

static int usage_is(const ar_usage *a, int64_t a_cost, const ar_usage *b, int64_t b_cost)
{
    if (a->input_tokens != b->input_tokens || a->output_tokens != b->output_tokens || a_cost != b_cost ||
        a->n_extra != b->n_extra)
        return 0;
    for (size_t i = 0; i < a->n_extra; i++) {
        size_t k = 0;
        while (k < b->n_extra && strcmp(a->extra[i].name, b->extra[k].name) != 0)
            k++;
        if (k == b->n_extra || a->extra[i].value != b->extra[k].value)
            return 0;
    }
    return 1;
}

/* The failed step is there: the handle takes it into its totals, as if its
 * call had succeeded, and tells whether it is the step recorded now. */
static int probe_visit(void *ud, const ar_db_step_row *row)
{
    unsure_probe *pr = ud;
    ar_run *run = pr->run;
    if (row->seq != pr->seq)
        return AR_OK;
    ar_arena arena = { &run->alloc, NULL };
    ar_step s;
    int rc = ar_row_to_step(row, run->id, &arena, &s, &run->err);
    if (rc == AR_OK && ar_totals_add(&run->alloc, &run->totals, &s.usage, row->cost_nanos))
        rc = ar_fail(&run->err, AR_ENOMEM, "out of memory recording a step");
    if (rc == AR_OK) {
        run->totals.iterations = pr->seq;
        const ar_step *r = pr->retry;
        pr->same = r && text_is(row->kind, r->kind, strlen(r->kind)) &&
                   text_is(row->name, r->name, r->name ? strlen(r->name) : 0) &&
                   text_is(row->content, r->content, pr->retry_len) &&
                   usage_is(&s.usage, row->cost_nanos, &r->usage, pr->retry_cost);
    }
    ar_arena_release(&arena);
    return rc;
}

/* A step whose write failed may yet be in the store (the connection broke
 * after the commit was sent, a sync failed after the commit was written).
 * Before the handle writes again it learns which: once the backend knows
 * that no write of its cut off can still land (settle), the step is read
 * back. When it is there the handle goes on after it, and *same tells
 * whether it is `retry`, the step the caller records now (a retry of the
 * call that failed, which then succeeds without writing it twice). */
static int unsure_settle(ar_run *run, const ar_step *retry, int64_t retry_cost, size_t retry_len, int *same)
{
    if (same)
        *same = 0;
    if (!run->unsure)
        return AR_OK;
    ar_store *store = run->store;
    int rc;
    if (store->be->settle && (rc = store->be->settle(store->db, &store->err)))
        return from_store(run, rc);
    unsure_probe pr = { run, run->totals.iterations + 1, retry, retry_cost, retry_len, 0 };
    if ((rc = store->be->steps_fetch(store->db, run->key, pr.seq, 1, probe_visit, &pr, &store->err)))
        return from_store(run, rc);
    run->unsure = 0;
    if (same)
        *same = pr.same;
    return AR_OK;
}

/* writable(), for a write: also settles a step left unsure. */
static int writable_now(ar_run *run, const char *what)
{
    int rc = writable(run, what);
    return rc ? rc : unsure_settle(run, NULL, 0, 0, NULL);
}

int ar_run_writable(ar_run *run, const char *what)
{
    return writable(run, what);
}

int ar_run_unsure_settle(ar_run *run, const ar_step *retry, size_t retry_len, int *same)
{
    return unsure_settle(run, retry, 0, retry_len, same);
}

static int64_t elapsed_ms(const ar_run *run, int64_t now)
{
    int64_t d = now - run->opened_at;
    return run->elapsed_base_ms + (d > 0 ? d : 0);
}

static int spec_check(ar_err *err, const ar_run_spec *spec)
{
    int rc;
    if (!spec)
        return ar_fail(err, AR_EMISUSE, "spec is NULL");
    if ((rc = ar_opts_version_check(err, "ar_run_spec", spec->version, AR_RUN_SPEC_VERSION, "AR_RUN_SPEC_INIT")))
        return rc;
    if ((rc = ar_text_check(err, "agent", spec->agent, 1, 1)) ||
        (rc = ar_text_check(err, "goal", spec->goal, 1, 0)) ||
        (rc = ar_text_check(err, "user", spec->user, 0, 0)) ||
        (rc = ar_text_check(err, "edition", spec->edition, 0, 0)) ||
        (rc = ar_text_check(err, "parent", spec->parent, 0, 0)) ||
        (rc = ar_budget_check(err, &spec->budget)))
        return rc;
    if (spec->metadata)
        return ar_json_check(err, "metadata", spec->metadata, strlen(spec->metadata), 1);
    return AR_OK;
}

int ar_run_begin(ar_run **out, ar_store *store, const ar_run_spec *spec)
{
    if (!out)
        return AR_EMISUSE;
    *out = NULL;
    int rc = ar_store_writable(store, "begin a run");
    if (rc || (rc = spec_check(&store->err, spec)))
        return rc;
    ar_run *run = run_new(store);
    if (!run)
        return ar_fail(&store->err, AR_ENOMEM, "out of memory beginning a run");
    char budget[320];
    ar_budget_json(budget, sizeof budget, &spec->budget);
    int64_t now = ar_now_ms(), key, min_key = 0;
    ar_db_run row = { 0, run->id, spec->agent, spec->goal, spec->user, spec->edition, spec->parent,
                      spec->metadata, budget, AR_RUNNING, NULL, 0, NULL, NULL, 0, 0,
                      { 0, 0, 0, 0, NULL, 0, 0, now }, now, AR_UNSET, 0, NULL, 0, NULL, 0, NULL, 0 };
    /* another writer may have taken the tick, or (writers on many hosts) a
     * later one: the store names the smallest key it takes, and the run
     * gets an id at that tick or after */
    do {
        key = ar_id_new(store, now, 0, min_key, run->id);
        row.n = key;
        row.created_at = key >> 16;
    } while ((rc = store->be->run_insert(store->db, &row, &min_key, &store->err)) == AR_DB_CONFLICT);
    if (rc) {
        run_free(run);
        return rc;
    }
    run->key = key;
    run->intents_loaded = 1;   /* a new run has no intents to read */
    run->budget = spec->budget;
    run->created_at = key >> 16;
    run->opened_at = now;
    link_run(store, run);
    *out = run;
    return AR_OK;
}

int ar_run_resume(ar_run **out, ar_store *store, const char *run_id, const ar_budget *budget)
{
    if (!out)
        return AR_EMISUSE;
    *out = NULL;
    int rc = ar_store_writable(store, "resume a run");
    if (rc)
        return rc;
    if (!run_id)
        return ar_fail(&store->err, AR_EMISUSE, "run_id is required");
    if (budget && (rc = ar_budget_check(&store->err, budget)))
        return rc;
    ar_record_box *box = ar_record_box_new(&store->alloc);
    ar_run *run = run_new(store);
    int64_t elapsed = 0, owner = 0;
    if (!box || !run) {
        rc = ar_fail(&store->err, AR_ENOMEM, "out of memory resuming a run");
        goto cleanup;
    }
    /* the run is read and taken under the write lock: no other resume can
     * move it on in between and leave this handle with stale totals */
    if ((rc = store->be->txn_begin(store->db, &store->err)) ||
        (rc = ar_store_load_run(store, run_id, box, &run->key, &elapsed, &owner)))
        goto cleanup;
    const ar_record *r = &box->rec;
    if (r->status == AR_WAITING && !r->response) {
        rc = ar_fail(&store->err, AR_ESTATE, "run %s is still waiting for a response (store:respond gives it one)",
                     run_id);
        goto cleanup;
    }
    if (r->status != AR_BUDGET_EXHAUSTED && r->status != AR_INTERRUPTED && r->status != AR_WAITING) {
        rc = ar_fail(&store->err, AR_ESTATE, "run %s is %s; only budget_exhausted, interrupted and answered "
                     "waiting runs can be resumed", run_id, ar_status_name(r->status));
        goto cleanup;
    }
    /* the answer the run waited for, kept by the handle that goes on with it */
    if (r->status == AR_WAITING) {
        size_t n = strlen(r->response);
        if (!(run->response = ar_mem_alloc(&store->alloc, n + 1))) {
            rc = ar_fail(&store->err, AR_ENOMEM, "out of memory resuming a run");
            goto cleanup;
        }
        memcpy(run->response, r->response, n + 1);
    }
    run->budget = budget ? *budget : r->budget;
    run->totals.iterations = r->iterations;
    /* the exact stored nano-units: the record's double may not hold them */
    ar_usage u = r->usage;
    if (ar_totals_add(&store->alloc, &run->totals, &u, box->cost_nanos)) {
        rc = ar_fail(&store->err, AR_ENOMEM, "out of memory resuming a run");
        goto cleanup;
    }
    char budget_json[320];
    ar_budget_json(budget_json, sizeof budget_json, &run->budget);
    int64_t now = ar_now_ms();
    if ((rc = store->be->run_reopen(store->db, run->key, owner, budget_json, now, &store->err)) ||
        (rc = store->be->txn_commit(store->db, &store->err)))
        goto cleanup;
    /* the new epoch: from now on only this handle writes to the run */
    run->owner = owner + 1;
    memcpy(run->id, r->id, AR_ID_LEN + 1);
    run->created_at = r->created_at;
    run->elapsed_base_ms = elapsed;
    run->opened_at = now;
    link_run(store, run);
    *out = run;
    run = NULL;
cleanup:
    if (rc)
        store->be->txn_rollback(store->db);
    ar_record_free(box ? &box->rec : NULL);
    if (run)
        run_free(run);
    return rc;
}

const char *ar_run_id(const ar_run *run) { return run ? run->id : NULL; }
ar_status ar_run_status(const ar_run *run) { return run ? run->status : AR_FAILED; }
int64_t ar_run_iterations(const ar_run *run) { return run ? run->totals.iterations : 0; }
const ar_budget *ar_run_budget(const ar_run *run) { return run ? &run->budget : NULL; }
int64_t ar_run_created_at(const ar_run *run) { return run ? run->created_at : AR_UNSET; }
const char *ar_run_errmsg(const ar_run *run) { return run ? run->err.msg : "no run"; }
const char *ar_run_response(const ar_run *run) { return run ? run->response : NULL; }

const ar_usage *ar_run_usage(const ar_run *run)
{
    if (!run)
        return NULL;
    ar_usage *u = &((ar_run *)run)->usage_view;
    u->input_tokens = run->totals.input_tokens;
    u->output_tokens = run->totals.output_tokens;
    u->total_tokens = u->input_tokens + u->output_tokens;
    u->cost = ar_nanos_to_cost(run->totals.cost_nanos);
    u->n_extra = run->totals.n_extra;
    u->extra = run->totals.extra;
    return u;
}

/* Removes a step's usage from the totals after a failed write: counters the
 * step introduced are dropped again, so a failure leaves the run unchanged. */
static void totals_undo(ar_run *run, const ar_usage *u, int64_t cost, const ar_totals *before_names)
{
    ar_totals *t = &run->totals;
    t->input_tokens -= u->input_tokens;
    t->output_tokens -= u->output_tokens;
    t->cost_nanos -= cost;
    for (size_t i = 0; i < u->n_extra; i++) {
        for (size_t k = 0; k < t->n_extra; k++) {
            if (strcmp(t->extra[k].name, u->extra[i].name) != 0)
                continue;
            t->extra[k].value -= u->extra[i].value;
            int existed = 0;
            for (size_t j = 0; j < before_names->n_extra && !existed; j++)
                existed = before_names->extra[j].name == t->extra[k].name;
            if (!existed) {
                ar_mem_free(&run->alloc, (void *)t->extra[k].name);
                memmove(t->extra + k, t->extra + k + 1, (t->n_extra - k - 1) * sizeof *t->extra);
                t->n_extra--;
            }
            break;
        }
    }
}

int ar_run_step(int64_t *out, ar_run *run, const ar_step *step)
{
    if (out)
        *out = 0;
    if (!run)
        return AR_EMISUSE;
    int64_t cost = 0;
    size_t content_len = 0;
    int rc, same = 0;
    if ((rc = writable(run, "record a step")) || (rc = ar_step_check(&run->err, step, &cost, &content_len)) ||
        (rc = unsure_settle(run, step, cost, content_len, &same)))
        return rc;
    if (same) {
        /* the call that failed had recorded it: once, and it stays so */
        if (out)
            *out = run->totals.iterations;
        return AR_OK;
    }
    if ((rc = ar_totals_fit(&run->err, "the step", &run->totals, &step->usage, cost)))
        return rc;
    ar_store *store = run->store;
    /* the names the totals had before, to undo exactly on failure */
    ar_counter names_small[16];
    ar_totals before = { 0, 0, 0, 0, run->totals.n_extra, 0, names_small };
    if (before.n_extra > 16 && !(before.extra = ar_mem_alloc(&run->alloc, before.n_extra * sizeof *before.extra)))
        return ar_fail(&run->err, AR_ENOMEM, "out of memory recording a step");
    if (before.n_extra)
        memcpy(before.extra, run->totals.extra, before.n_extra * sizeof *before.extra);
    if (ar_totals_add(&run->alloc, &run->totals, &step->usage, cost)) {
        rc = ar_fail(&run->err, AR_ENOMEM, "out of memory recording a step");
        goto cleanup;
    }
    size_t run_counters_len = 0, step_counters_len = 0;
    if (ar_counters_json(&run->alloc, &run->scratch, &run->scratch_cap, &run_counters_len,
                         run->totals.extra, run->totals.n_extra) ||
        ar_counters_json(&run->alloc, &run->scratch2, &run->scratch2_cap, &step_counters_len,
                         step->usage.extra, step->usage.n_extra)) {
        totals_undo(run, &step->usage, cost, &before);
        rc = ar_fail(&run->err, AR_ENOMEM, "out of memory recording a step");
        goto cleanup;
    }
    int64_t now = ar_now_ms();
    int64_t seq = run->totals.iterations + 1;
    ar_db_step row = { seq, step->kind, step->name, step->content, content_len,
                       step->usage.input_tokens, step->usage.output_tokens, cost,
                       step_counters_len ? run->scratch2 : NULL, step_counters_len,
                       step->duration_ms, now };
    ar_db_progress p = { seq, run->totals.input_tokens, run->totals.output_tokens, run->totals.cost_nanos,
                         run_counters_len ? run->scratch : NULL, run_counters_len,
                         elapsed_ms(run, now), now };
    /* one durable transaction, fenced: a handle that lost the run inserts nothing */
    if ((rc = store->be->step_append(store->db, run->key, run->owner, &row, &p, &store->err))) {
        totals_undo(run, &step->usage, cost, &before);
        /* unless the fence refused it, it may be there all the same */
        run->unsure = rc != AR_DB_LOST;
        rc = from_store(run, rc);
        goto cleanup;
    }
    run->totals.iterations = seq;
    if (out)
        *out = seq;
cleanup:
    if (before.extra != names_small)
        ar_mem_free(&run->alloc, before.extra);
    return rc;
}

int ar_run_check(ar_exhaustion *out, ar_run *run)
{
    if (!run)
        return AR_EMISUSE;
    int rc = writable(run, NULL);
    if (rc)
        return rc;
    rc = ar_budget_reached(out, &run->budget, &run->totals, elapsed_ms(run, ar_now_ms()));
    if (rc == AR_EBUDGET && out)
        ar_fail(&run->err, AR_EBUDGET, "budget exhausted: %s", out->limit);
    return rc;
}

int ar_run_checkpoint(ar_run *run, const char *state_json, size_t len)
{
    if (!run)
        return AR_EMISUSE;
    int rc = writable_now(run, "save a checkpoint");
    if (rc)
        return rc;
    if (!state_json)
        return ar_fail(&run->err, AR_EMISUSE, "state is required");
    if (len == AR_NUL_TERMINATED)
        len = strlen(state_json);
    if ((rc = ar_json_check(&run->err, "state", state_json, len, 0)))
        return rc;
    /* a saved state is activity: recover{stale_after=} must not take the run */
    ar_store *store = run->store;
    int64_t now = ar_now_ms();
    rc = store->be->checkpoint_save(store->db, run->key, run->owner, run->totals.iterations, state_json, len, now,
                                    &store->err);
    return from_store(run, rc);
}

/* Reads the record of a run whose write took into *out (when not NULL);
 * `done` says what took, for a failure of the read alone. */
static int read_back(ar_record **out, ar_store *store, const char *id, ar_err *err, const char *done)
{
    if (!out)
        return AR_OK;
    ar_record_box *box = ar_record_box_new(&store->alloc);
    if (!box)
        return ar_fail(err, AR_ENOMEM, "%s, but reading its record ran out of memory", done);
    int rc = ar_store_load_run(store, id, box, NULL, NULL, NULL);
    if (rc) {
        ar_record_free(&box->rec);
        /* say that the write itself took: retrying it would be AR_ESTATE */
        return ar_fail(err, rc, "%s, but reading its record failed: %s", done, store->err.msg);
    }
    *out = &box->rec;
    return AR_OK;
}

/* A finish the fence refused after an earlier finish of this handle failed
 * with its outcome unknown: when that one ended the run as `status`, this
 * one succeeds; otherwise the refusal (AR_DB_LOST) stands. */
static int finished_before(ar_run *run, ar_status status)
{
    ar_store *store = run->store;
    ar_record_box *box = ar_record_box_new(&store->alloc);
    if (!box)
        return ar_fail(&store->err, AR_ENOMEM, "out of memory reading the run's record");
    int rc = ar_store_load_run(store, run->id, box, NULL, NULL, NULL);
    if (rc == AR_OK && box->rec.status != status) {
        ar_fail(&store->err, AR_ESTATE, "run %s was ended as %s by the earlier call whose outcome was not known",
                run->id, ar_status_name(box->rec.status));
        rc = AR_DB_LOST;
    }
    ar_record_free(&box->rec);
    return rc;
}

/* Ends the run in the file with `f`, then reads the final record back. */
static int finish(ar_record **out, ar_run *run, ar_db_finish *f)
{
    ar_store *store = run->store;
    int64_t now = ar_now_ms();
    f->finished_at = now;
    f->elapsed_ms = elapsed_ms(run, now);
    int rc = store->be->run_finish(store->db, run->key, run->owner, f, &store->err);
    if (rc == AR_DB_LOST && run->finish_unsure)
        rc = finished_before(run, f->status);
    if (rc) {
        /* unless the fence refused it, it may have ended the run all the same */
        run->finish_unsure = rc != AR_DB_LOST;
        return from_store(run, rc);
    }
    run->status = f->status;
    return read_back(out, store, run->id, &run->err, "the run is finished");
}

int ar_run_complete(ar_record **out, ar_run *run, const char *output_json, size_t len)
{
    if (out)
        *out = NULL;
    if (!run)
        return AR_EMISUSE;
    int rc = writable_now(run, "complete a run");
    if (rc)
        return rc;
    if (output_json && len == AR_NUL_TERMINATED)
        len = strlen(output_json);
    if (output_json && (rc = ar_json_check(&run->err, "output", output_json, len, 0)))
        return rc;
    ar_db_finish f = { AR_COMPLETED, output_json, output_json ? len : 0, NULL, NULL, 0, 0, 0, 0 };
    return finish(out, run, &f);
}

/* Ends the run as failed. Error text is never refused (ar_error_text): when
 * the store cannot hold the row even so (AR_EJSON: a backend holding less
 * than AR_VALUE_MAX, or a row whose other values are large), the text is cut
 * shorter and the finish tried again; each refused attempt wrote nothing. */
static int finish_failed(ar_record **out, ar_run *run, const char *error)
{
    char small[512];
    size_t room = ar_error_room(error, AR_VALUE_MAX);
    char *clean = room <= sizeof small ? small : ar_mem_alloc(&run->alloc, room);
    if (!clean)
        return ar_fail(&run->err, AR_ENOMEM, "out of memory recording the failure");
    int rc;
    for (size_t max = AR_VALUE_MAX;; max /= 2) {
        ar_error_text(clean, error, max);
        ar_db_finish f = { AR_FAILED, NULL, 0, clean, NULL, 0, 0, 0, 0 };
        rc = finish(out, run, &f);
        if (rc != AR_EJSON || max < 256)
            break;
    }
    if (clean != small)
        ar_mem_free(&run->alloc, clean);
    return rc;
}

int ar_run_fail(ar_record **out, ar_run *run, const char *error)
{
    if (out)
        *out = NULL;
    if (!run)
        return AR_EMISUSE;
    int rc = writable_now(run, "fail a run");
    if (rc)
        return rc;
    return finish_failed(out, run, error ? error : "failed");
}

int ar_run_exhaust(ar_record **out, ar_run *run, const ar_exhaustion *why)
{
    if (out)
        *out = NULL;
    if (!run)
        return AR_EMISUSE;
    int rc = writable_now(run, "end a run as budget_exhausted");
    if (rc)
        return rc;
    ar_exhaustion e;
    if (why) {
        e = *why;
        if (!(e.limit = ar_limit_name(why->limit)))
            return ar_fail(&run->err, AR_EMISUSE, "unknown budget limit '%s'", why->limit ? why->limit : "(null)");
        /* SQLite would store NaN as NULL: refuse it rather than read back 0 */
        if (!(e.limit_value >= 0.0 && e.limit_value <= DBL_MAX) || !(e.value >= 0.0 && e.value <= DBL_MAX))
            return ar_fail(&run->err, AR_EMISUSE, "limit_value and value must be non-negative finite numbers");
    } else if (ar_budget_reached(&e, &run->budget, &run->totals, elapsed_ms(run, ar_now_ms())) != AR_EBUDGET) {
        return ar_fail(&run->err, AR_EMISUSE, "no budget limit is reached");
    }
    ar_db_finish f = { AR_BUDGET_EXHAUSTED, NULL, 0, NULL, e.limit, e.limit_value, e.value, 0, 0 };
    return finish(out, run, &f);
}

/* Ends a run still running under this handle with `end` (failed with
 * `why` when its handle closes, interrupted when its store closes) and
 * detaches the handle from its store. A run the handle lost is left as the
 * new owner has it. */
void ar_run_detach(ar_run *run, ar_status end, const char *why)
{
    if (run->store && run->status == AR_RUNNING) {
        ar_db_finish f = { end, NULL, 0, why, NULL, 0, 0, 0, 0 };
        if (end == AR_FAILED)
            finish_failed(NULL, run, why);
        else
            finish(NULL, run, &f);
    }
    if (run->status == AR_RUNNING)
        run->status = end;
    unlink_run(run);
}

void ar_run_close(ar_run *run)
{
    if (!run)
        return;
    /* finishing it now would write while a retention scan reads the store:
     * the scan's end does it (ar_store_close_deferred_runs) */
    if (run->store && run->store->scanning && run->status == AR_RUNNING) {
        run->close_deferred = 1;
        return;
    }
    ar_run_detach(run, AR_FAILED, "run closed before it finished");
    run_free(run);
}

void ar_store_close_deferred_runs(ar_store *store)
{
    ar_run *next;
    for (ar_run *run = store->runs; run; run = next) {
        next = run->next;
        if (run->close_deferred)
            ar_run_close(run);
    }
}

/* ---- forks, waits and responses ----------------------------------------- */

/* Sums of counters as the store hands them out, added one by one into a
 * fork's totals (names copied). */
typedef struct counter_sums {
    const ar_allocator *alloc;
    ar_totals *totals;
    ar_err *err;
    const char *run_id;
} counter_sums;

static int add_counter(void *ud, ar_db_text name, int64_t value)
{
    counter_sums *c = ud;
    char buf[AR_COUNTER_NAME_MAX + 1];
    if (!name.s || name.len == 0 || name.len > AR_COUNTER_NAME_MAX || memchr(name.s, '\0', name.len) ||
        value < 0 || value > AR_MAX_COUNT)
        return ar_fail(c->err, AR_ECORRUPT, "run %s: stored counters are damaged: not an object of counts",
                       c->run_id);
    memcpy(buf, name.s, name.len);
    buf[name.len] = '\0';
    ar_counter one = { buf, value };
    ar_usage u = { 0, 0, 0, 0.0, 1, &one };
    if (ar_totals_add(c->alloc, c->totals, &u, 0))
        return ar_fail(c->err, AR_ENOMEM, "out of memory forking a run");
    return AR_OK;
}

int ar_run_fork(ar_run **out, ar_store *store, const char *run_id, const ar_fork_opts *opts)
{
    if (!out)
        return AR_EMISUSE;
    *out = NULL;
    int rc = ar_store_writable(store, "fork a run");
    if (rc)
        return rc;
    ar_fork_opts o = AR_FORK_OPTS_INIT;
    if (opts) {
        if ((rc = ar_opts_version_check(&store->err, "ar_fork_opts", opts->version, AR_FORK_OPTS_VERSION,
                                        "AR_FORK_OPTS_INIT")))
            return rc;
        o = *opts;
    }
    if (!run_id)
        return ar_fail(&store->err, AR_EMISUSE, "run_id is required");
    if (o.at != AR_UNSET && o.at < 0)
        return ar_fail(&store->err, AR_EMISUSE, "at (%lld) must be a step of the run (0..iterations)",
                       (long long)o.at);
    if ((o.budget && (rc = ar_budget_check(&store->err, o.budget))) ||
        (o.metadata && (rc = ar_json_check(&store->err, "metadata", o.metadata, strlen(o.metadata), 1))))
        return rc;
    ar_record_box *box = ar_record_box_new(&store->alloc);
    ar_run *run = run_new(store);
    if (!box || !run) {
        rc = ar_fail(&store->err, AR_ENOMEM, "out of memory forking a run");
        goto cleanup;
    }
    /* the run is read, summed and copied in one transaction: the fork is
     * the run as it stood at one moment, and all of it or nothing is there */
    int64_t from_key, key, min_key = 0;
    if ((rc = store->be->txn_begin(store->db, &store->err)) ||
        (rc = ar_store_load_run(store, run_id, box, &from_key, NULL, NULL)))
        goto cleanup;
    const ar_record *r = &box->rec;
    int64_t at = o.at == AR_UNSET ? r->iterations : o.at;
    if (at > r->iterations) {
        rc = ar_fail(&store->err, AR_EMISUSE, "at (%lld) must be a step of run %s (0..%lld)", (long long)at,
                     run_id, (long long)r->iterations);
        goto cleanup;
    }
    counter_sums sums = { &store->alloc, &run->totals, &store->err, run_id };
    int64_t count = 0;
    if ((rc = store->be->steps_sums(store->db, from_key, at, &count, &run->totals.input_tokens,
                                    &run->totals.output_tokens, &run->totals.cost_nanos,
                                    /* a run without counters has no step with one */
                                    r->usage.n_extra ? add_counter : NULL, &sums, &store->err)))
        goto cleanup;
    if (count != at) {
        rc = ar_fail(&store->err, AR_ECORRUPT, "run %s: stored steps are damaged: %lld of its first %lld are there",
                     run_id, (long long)count, (long long)at);
        goto cleanup;
    }
    run->totals.iterations = at;
    size_t counters_len = 0;
    if (ar_counters_json(&store->alloc, &run->scratch, &run->scratch_cap, &counters_len, run->totals.extra,
                         run->totals.n_extra)) {
        rc = ar_fail(&store->err, AR_ENOMEM, "out of memory forking a run");
        goto cleanup;
    }
    run->budget = o.budget ? *o.budget : r->budget;
    char budget[320];
    ar_budget_json(budget, sizeof budget, &run->budget);
    int64_t now = ar_now_ms();
    ar_db_run row = { 0, run->id, r->agent, r->goal, r->user, r->edition, r->parent,
                      o.metadata ? o.metadata : r->metadata, budget, AR_RUNNING, NULL, 0, NULL, NULL, 0, 0,
                      { at, run->totals.input_tokens, run->totals.output_tokens, run->totals.cost_nanos,
                        counters_len ? run->scratch : NULL, counters_len, 0, now },
                      now, AR_UNSET, 0, r->id, at, NULL, 0, NULL, 0 };
    do {
        key = ar_id_new(store, now, 0, min_key, run->id);
        row.n = key;
        row.created_at = key >> 16;
    } while ((rc = store->be->run_insert(store->db, &row, &min_key, &store->err)) == AR_DB_CONFLICT);
    if (rc || (rc = store->be->fork_copy(store->db, from_key, key, at, &store->err)) ||
        (rc = store->be->txn_commit(store->db, &store->err)))
        goto cleanup;
    run->key = key;
    run->created_at = key >> 16;
    run->opened_at = now;
    link_run(store, run);
    *out = run;
    run = NULL;
cleanup:
    if (rc)
        store->be->txn_rollback(store->db);
    ar_record_free(box ? &box->rec : NULL);
    if (run)
        run_free(run);
    return rc;
}

int ar_run_wait(ar_record **out, ar_run *run, const char *request_json, size_t len)
{
    if (out)
        *out = NULL;
    if (!run)
        return AR_EMISUSE;
    int rc = writable_now(run, "wait for a response");
    if (rc)
        return rc;
    if (!request_json)
        return ar_fail(&run->err, AR_EMISUSE, "request is required");
    if (len == AR_NUL_TERMINATED)
        len = strlen(request_json);
    if ((rc = ar_json_check(&run->err, "request", request_json, len, 0)))
        return rc;
    size_t counters_len = 0;
    if (ar_counters_json(&run->alloc, &run->scratch, &run->scratch_cap, &counters_len, run->totals.extra,
                         run->totals.n_extra))
        return ar_fail(&run->err, AR_ENOMEM, "out of memory setting the run waiting");
    ar_store *store = run->store;
    int64_t now = ar_now_ms();
    int64_t seq = run->totals.iterations + 1;
    ar_db_step step = { seq, "wait", NULL, request_json, len, 0, 0, 0, NULL, 0, 0, now };
    /* elapsed stops here: the time the run waits is not its own */
    ar_db_progress p = { seq, run->totals.input_tokens, run->totals.output_tokens, run->totals.cost_nanos,
                         counters_len ? run->scratch : NULL, counters_len, elapsed_ms(run, now), now };
    rc = store->be->run_wait(store->db, run->key, run->owner, &step, &p, request_json, len, &store->err);
    /* as a finish: an earlier wait whose outcome was not known may have taken */
    if (rc == AR_DB_LOST && run->finish_unsure)
        rc = finished_before(run, AR_WAITING);
    if (rc) {
        run->finish_unsure = rc != AR_DB_LOST;
        return from_store(run, rc);
    }
    run->totals.iterations = seq;
    run->status = AR_WAITING;
    return read_back(out, store, run->id, &run->err, "the run is waiting");
}

int ar_store_respond(ar_record **out, ar_store *store, const char *run_id, const char *response_json, size_t len)
{
    if (out)
        *out = NULL;
    int rc = ar_store_writable(store, "answer a run");
    if (rc)
        return rc;
    if (!run_id || !response_json)
        return ar_fail(&store->err, AR_EMISUSE, "run_id and response are required");
    if (len == AR_NUL_TERMINATED)
        len = strlen(response_json);
    if ((rc = ar_json_check(&store->err, "response", response_json, len, 0)))
        return rc;
    ar_record_box *box = ar_record_box_new(&store->alloc);
    if (!box)
        return ar_fail(&store->err, AR_ENOMEM, "out of memory answering a run");
    int64_t key = 0;
    if ((rc = ar_store_load_run(store, run_id, box, &key, NULL, NULL)))
        goto cleanup;
    if (box->rec.status != AR_WAITING) {
        rc = ar_fail(&store->err, AR_ESTATE, "run %s is %s; only a waiting run takes a response", run_id,
                     ar_status_name(box->rec.status));
        goto cleanup;
    }
    if (box->rec.response) {
        rc = ar_fail(&store->err, AR_ESTATE, "run %s already has its response; a second one is refused", run_id);
        goto cleanup;
    }
    /* the write takes the run only while it is waiting without an answer:
     * of two callers that both got here, one answers and the other is told */
    rc = store->be->run_respond(store->db, key, response_json, len, ar_now_ms(), &store->err);
    if (rc == AR_DB_LOST)
        rc = ar_fail(&store->err, AR_ESTATE, "run %s already has its response (or is no longer waiting); "
                     "a second one is refused", run_id);
    if (rc == AR_OK)
        rc = read_back(out, store, run_id, &store->err, "the response is recorded");
cleanup:
    ar_record_free(&box->rec);
    return rc;
}
