/* record.c -- the record factory (completed, budget exhausted, failed) and whole-record writes. */
#include "internal.h"
#include "json.h"

#include <float.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Checks the fields every record needs, as ar_run_begin and ar_run_step would. */
static int fields_check(ar_err *err, const ar_record *f)
{
    int rc;
    if (!f)
        return ar_fail(err, AR_EMISUSE, "fields is NULL");
    if ((rc = ar_text_check(err, "agent", f->agent, 1, 1)) ||
        (rc = ar_text_check(err, "goal", f->goal, 1, 0)) ||
        (rc = ar_text_check(err, "user", f->user, 0, 0)) ||
        (rc = ar_text_check(err, "edition", f->edition, 0, 0)) ||
        (rc = ar_text_check(err, "parent", f->parent, 0, 0)) ||
        (rc = ar_budget_check(err, &f->budget)))
        return rc;
    if (f->metadata && (rc = ar_json_check(err, "metadata", f->metadata, strlen(f->metadata), 1)))
        return rc;
    if (f->n_steps && !f->steps)
        return ar_fail(err, AR_EMISUSE, "steps is NULL with n_steps > 0");
    for (size_t i = 0; i < f->n_steps; i++) {
        int64_t cost;
        size_t len;
        if ((rc = ar_step_check(err, &f->steps[i], &cost, &len))) {
            char msg[AR_ERRMSG_MAX];
            snprintf(msg, sizeof msg, "%s", err->msg);
            return ar_fail(err, rc, "steps[%zu]: %s", i + 1, msg);
        }
    }
    /* fewer would contradict the transcript, and a resume would reuse its seqs */
    if (f->iterations >= 0 && (uint64_t)f->iterations < f->n_steps)
        return ar_fail(err, AR_EMISUSE, "iterations (%lld) is less than the number of steps (%zu)",
                       (long long)f->iterations, f->n_steps);
    int64_t cost;
    if (f->usage.total_tokens >= 0 && (rc = ar_usage_check(err, "usage", &f->usage)))
        return rc;
    if (f->usage.total_tokens >= 0 && ar_cost_to_nanos(&cost, f->usage.cost))
        return ar_fail(err, AR_EMISUSE, "usage.cost must be a number in 0..9e9");
    if ((f->created_at != AR_UNSET && (f->created_at < 0 || (uint64_t)f->created_at > AR_ID_MAX_MS)) ||
        (f->finished_at != AR_UNSET && (f->finished_at < 0 || (uint64_t)f->finished_at > AR_ID_MAX_MS)))
        return ar_fail(err, AR_EMISUSE, "created_at and finished_at must be milliseconds in 0..2^47");
    if (f->created_at != AR_UNSET && f->finished_at != AR_UNSET && f->finished_at < f->created_at)
        return ar_fail(err, AR_EMISUSE, "finished_at is before created_at");
    return AR_OK;
}

static int counter_order(const void *x, const void *y)
{
    return strcmp(((const ar_counter *)x)->name, ((const ar_counter *)y)->name);
}

/* Copies counters into the arena sorted by name, the order the store reads
 * them back in, so a built record equals the one written and read back. */
static ar_counter *copy_counters(ar_arena *a, const ar_counter *c, size_t n, int *failed)
{
    if (!n)
        return NULL;
    ar_counter *out = ar_arena_alloc(a, n * sizeof *out);
    if (!out) {
        *failed = 1;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        out[i].name = ar_arena_strdup(a, c[i].name, failed);
        out[i].value = c[i].value;
    }
    if (!*failed)
        qsort(out, n, sizeof *out, counter_order);
    return out;
}

/* Builds the normalised deep copy of `f` with the given ending, allocated
 * with `alloc` (a store's own when it writes). The run's cost total is kept
 * exactly in the record's box: its double may not hold it. */
static int build(ar_record **out, const ar_allocator *alloc, const ar_record *f, ar_status status,
                 const char *output, size_t output_len, const char *error,
                 const ar_exhaustion *why, ar_err *err)
{
    *out = NULL;
    int rc = fields_check(err, f);
    if (rc)
        return rc;
    if (output) {
        if (output_len == AR_NUL_TERMINATED)
            output_len = strlen(output);
        if ((rc = ar_json_check(err, "output", output, output_len, 0)))
            return rc;
    }
    ar_exhaustion e = { NULL, 0, 0 };
    if (status == AR_BUDGET_EXHAUSTED) {
        if (!why || !(e.limit = ar_limit_name(why->limit)))
            return ar_fail(err, AR_EMISUSE, "a budget_exhausted record needs a known limit (max_steps, max_cost, ...)");
        e.limit_value = why->limit_value;
        e.value = why->value;
        if (!(e.limit_value >= 0.0 && e.limit_value <= DBL_MAX) || !(e.value >= 0.0 && e.value <= DBL_MAX))
            return ar_fail(err, AR_EMISUSE, "limit_value and value must be non-negative finite numbers");
    }
    ar_record_box *box = ar_record_box_new(alloc);
    if (!box)
        return ar_fail(err, AR_ENOMEM, "out of memory building a record");
    ar_arena *a = &box->arena;
    ar_record *r = &box->rec;
    int failed = 0;
    int64_t now = ar_now_ms();
    r->agent = ar_arena_strdup(a, f->agent, &failed);
    r->goal = ar_arena_strdup(a, f->goal, &failed);
    r->user = ar_arena_strdup(a, f->user, &failed);
    r->edition = ar_arena_strdup(a, f->edition, &failed);
    r->parent = ar_arena_strdup(a, f->parent, &failed);
    r->metadata = ar_arena_strdup(a, f->metadata, &failed);
    r->status = status;
    r->output = output ? ar_arena_strndup(a, output, output_len, &failed) : NULL;
    if (error) {
        size_t n = strlen(error);
        char *clean = ar_arena_alloc(a, 3 * n + 1);
        if (clean)
            clean[ar_utf8_sanitize(clean, error, n)] = '\0';
        failed |= !clean;
        r->error = clean;
    }
    r->limit = e;
    r->budget = f->budget;
    r->created_at = f->created_at != AR_UNSET ? f->created_at : now;
    r->finished_at = f->finished_at != AR_UNSET ? f->finished_at : (now > r->created_at ? now : r->created_at);
    r->updated_at = r->finished_at;
    r->latency_ms = r->finished_at - r->created_at;

    ar_totals sums = { 0, 0, 0, 0, 0, 0, NULL };
    ar_step *steps = f->n_steps ? ar_arena_alloc(a, f->n_steps * sizeof *steps) : NULL;
    failed |= f->n_steps && !steps;
    for (size_t i = 0; !failed && i < f->n_steps; i++) {
        const ar_step *s = &f->steps[i];
        int64_t cost = 0;
        size_t len = s->content ? (s->content_len == AR_NUL_TERMINATED ? strlen(s->content) : s->content_len) : 0;
        ar_cost_to_nanos(&cost, s->usage.cost);
        char what[40];
        snprintf(what, sizeof what, "steps[%zu]", i + 1);
        if ((rc = ar_totals_fit(err, what, &sums, &s->usage, cost)))
            break;
        steps[i] = *s;
        steps[i].seq = (int64_t)i + 1;
        steps[i].kind = ar_arena_strdup(a, s->kind, &failed);
        steps[i].name = ar_arena_strdup(a, s->name, &failed);
        steps[i].content = s->content ? ar_arena_strndup(a, s->content, len, &failed) : NULL;
        steps[i].content_len = len;
        steps[i].usage.total_tokens = s->usage.input_tokens + s->usage.output_tokens;
        steps[i].usage.cost = ar_nanos_to_cost(cost);
        steps[i].usage.extra = copy_counters(a, s->usage.extra, s->usage.n_extra, &failed);
        steps[i].at = s->at != AR_UNSET ? s->at : r->finished_at;
        if (!failed && ar_totals_add(alloc, &sums, &s->usage, cost))
            failed = 1;
    }
    r->steps = steps;
    r->n_steps = f->n_steps;
    r->iterations = f->iterations >= 0 ? f->iterations : (int64_t)f->n_steps;
    if (f->usage.total_tokens >= 0) {
        ar_cost_to_nanos(&box->cost_nanos, f->usage.cost);
        r->usage = f->usage;
        r->usage.total_tokens = f->usage.input_tokens + f->usage.output_tokens;
        r->usage.cost = ar_nanos_to_cost(box->cost_nanos);
        r->usage.extra = copy_counters(a, f->usage.extra, f->usage.n_extra, &failed);
    } else {
        r->usage.input_tokens = sums.input_tokens;
        r->usage.output_tokens = sums.output_tokens;
        r->usage.total_tokens = sums.input_tokens + sums.output_tokens;
        box->cost_nanos = sums.cost_nanos;
        r->usage.cost = ar_nanos_to_cost(sums.cost_nanos);
        r->usage.n_extra = sums.n_extra;
        r->usage.extra = copy_counters(a, sums.extra, sums.n_extra, &failed);
    }
    ar_totals_free(alloc, &sums);
    if (rc || failed) {
        ar_record_free(r);
        return rc ? rc : ar_fail(err, AR_ENOMEM, "out of memory building a record");
    }
    *out = r;
    return AR_OK;
}

static int report(int rc, const ar_err *err, char *errbuf, size_t errlen)
{
    if (rc && errbuf && errlen)
        snprintf(errbuf, errlen, "%s", err->msg);
    return rc;
}

int ar_record_completed(ar_record **out, const ar_record *fields, const char *output_json,
                        size_t output_len, char *errbuf, size_t errlen)
{
    ar_err err = { 0, "" };
    if (!out)
        return AR_EMISUSE;
    return report(build(out, &ar_default_allocator, fields, AR_COMPLETED, output_json, output_len, NULL, NULL, &err),
                  &err, errbuf, errlen);
}

int ar_record_budget_exhausted(ar_record **out, const ar_record *fields, const ar_exhaustion *why,
                               char *errbuf, size_t errlen)
{
    ar_err err = { 0, "" };
    if (!out)
        return AR_EMISUSE;
    return report(build(out, &ar_default_allocator, fields, AR_BUDGET_EXHAUSTED, NULL, 0, NULL, why, &err), &err, errbuf, errlen);
}

int ar_record_failed(ar_record **out, const ar_record *fields, const char *error,
                     char *errbuf, size_t errlen)
{
    ar_err err = { 0, "" };
    if (!out)
        return AR_EMISUSE;
    return report(build(out, &ar_default_allocator, fields, AR_FAILED, NULL, 0, error ? error : "failed", NULL, &err),
                  &err, errbuf, errlen);
}

/* Inserts the normalised record `r` and its steps inside the caller's transaction. */
static int write_rows(ar_store *store, const ar_record *r, char id[AR_ID_LEN + 1], char **buf, size_t *cap)
{
    ar_err *err = &store->err;
    ar_db *db = store->db;
    char budget[320];
    ar_budget_json(budget, sizeof budget, &r->budget);
    const ar_record_box *box = (const ar_record_box *)((const char *)r - offsetof(ar_record_box, rec));
    int64_t cost = box->cost_nanos;
    size_t clen = 0;
    if (ar_counters_json(&store->alloc, buf, cap, &clen, r->usage.extra, r->usage.n_extra))
        return ar_fail(err, AR_ENOMEM, "out of memory writing a record");
    ar_db_run row = { 0, id, r->agent, r->goal, r->user, r->edition, r->parent, r->metadata, budget,
                      r->status, r->output, r->output ? strlen(r->output) : 0, r->error,
                      r->limit.limit, r->limit.limit_value, r->limit.value,
                      { r->iterations, r->usage.input_tokens, r->usage.output_tokens, cost,
                        clen ? *buf : NULL, clen, r->latency_ms, r->finished_at },
                      r->created_at, r->finished_at };
    /* the record keeps its created_at; a key taken in that millisecond means another id */
    int64_t rowid;
    int rc;
    do {
        rowid = ar_id_new(store, r->created_at, 1, id);
        row.n = rowid;
    } while ((rc = ar_db_run_insert(db, &row, err)) == AR_DB_CONFLICT);
    for (size_t i = 0; rc == AR_OK && i < r->n_steps; i++) {
        const ar_step *s = &r->steps[i];
        ar_cost_to_nanos(&cost, s->usage.cost);
        if (ar_counters_json(&store->alloc, buf, cap, &clen, s->usage.extra, s->usage.n_extra))
            return ar_fail(err, AR_ENOMEM, "out of memory writing a record");
        ar_db_step st = { s->seq, s->kind, s->name, s->content, s->content_len,
                          s->usage.input_tokens, s->usage.output_tokens, cost,
                          clen ? *buf : NULL, clen, s->duration_ms, s->at };
        rc = ar_db_step_insert(db, rowid, &st, err);
    }
    return rc;
}

int ar_store_write(char **out, ar_store *store, const ar_record *record)
{
    if (out)
        *out = NULL;
    int usable = ar_store_writable(store, "write a record");
    if (usable)
        return usable;
    if (!out || !record)
        return ar_fail(&store->err, AR_EMISUSE, "out and record are required");
    if (record->status == AR_RUNNING || !ar_status_name(record->status))
        return ar_fail(&store->err, AR_EMISUSE, "only a finished record can be written (status is not final)");
    /* normalise through the factory so a hand-made record is checked like any other */
    ar_record *r = NULL;
    int rc = build(&r, &store->alloc, record, record->status, record->output, AR_NUL_TERMINATED,
                   record->status == AR_FAILED ? (record->error ? record->error : "failed") : NULL,
                   &record->limit, &store->err);
    if (rc)
        return rc;
    /* the id to hand back is allocated first: once committed, the call cannot fail */
    char *id_out = ar_out_alloc(&store->alloc, AR_ID_LEN + 1);
    char *buf = NULL;
    size_t cap = 0;
    if (!id_out)
        rc = ar_fail(&store->err, AR_ENOMEM, "out of memory writing a record");
    else if ((rc = ar_db_txn_begin(store->db, &store->err)) == AR_OK &&
             (rc = write_rows(store, r, id_out, &buf, &cap)) == AR_OK)
        rc = ar_db_txn_commit(store->db, &store->err);
    if (rc) {
        ar_db_txn_rollback(store->db);
        ar_free(id_out);
    } else {
        *out = id_out;
    }
    ar_mem_free(&store->alloc, buf);
    ar_record_free(r);
    return rc;
}
