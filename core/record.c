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
        /* a seq names a step: renumbering it would change what it refers to */
        if (f->steps[i].seq != 0 && f->steps[i].seq != (int64_t)i + 1)
            return ar_fail(err, AR_EMISUSE, "steps[%zu].seq is %lld: steps must number 1..n in order",
                           i + 1, (long long)f->steps[i].seq);
    }
    /* any other count would contradict the transcript, and a resume would reuse or skip seqs */
    if (f->iterations >= 0 && (uint64_t)f->iterations != f->n_steps)
        return ar_fail(err, AR_EMISUSE, "iterations (%lld) disagrees with the number of steps (%zu)",
                       (long long)f->iterations, f->n_steps);
    int64_t cost;
    if (f->usage.total_tokens >= 0 && (rc = ar_usage_check(err, "usage", &f->usage)))
        return rc;
    if (f->usage.total_tokens >= 0 && ar_cost_to_nanos(&cost, f->usage.cost))
        return ar_fail(err, AR_EMISUSE, "usage.cost must be a number in 0..9e9");
    const int64_t times[] = { f->created_at, f->finished_at, f->updated_at };
    for (size_t i = 0; i < 3; i++)
        if (times[i] != AR_UNSET && (times[i] < 0 || (uint64_t)times[i] > AR_ID_MAX_MS))
            return ar_fail(err, AR_EMISUSE, "created_at, finished_at and updated_at must be milliseconds in 0..2^47");
    if (f->id) {
        int64_t tick = ar_id_tick(f->id);
        if (tick < 0)
            return ar_fail(err, AR_EMISUSE, "id is not a valid agentrun id (26 characters of Crockford base32)");
        /* the id is the run's key in time order: its time and created_at are one */
        if (f->created_at != AR_UNSET && f->created_at != tick >> 16)
            return ar_fail(err, AR_EMISUSE, "created_at (%lld) disagrees with the time of id %s (%lld)",
                           (long long)f->created_at, f->id, (long long)(tick >> 16));
    }
    if (f->created_at != AR_UNSET && f->finished_at != AR_UNSET && f->finished_at < f->created_at)
        return ar_fail(err, AR_EMISUSE, "finished_at is before created_at");
    if (f->checkpoint) {
        if ((rc = ar_json_check(err, "checkpoint.state", f->checkpoint, strlen(f->checkpoint), 0)))
            return rc;
        if (f->checkpoint_seq != AR_UNSET && (f->checkpoint_seq < 0 || (uint64_t)f->checkpoint_seq > f->n_steps))
            return ar_fail(err, AR_EMISUSE, "checkpoint.seq (%lld) must be a step of the record (0..%zu)",
                           (long long)f->checkpoint_seq, f->n_steps);
    }
    if (f->forked_from) {
        if (!ar_id_valid(f->forked_from))
            return ar_fail(err, AR_EMISUSE, "forked_from.run is not a valid agentrun id");
        /* the fork's first forked_seq steps are the copies */
        if (f->forked_seq < 0 || (uint64_t)f->forked_seq > f->n_steps)
            return ar_fail(err, AR_EMISUSE, "forked_from.seq (%lld) must be a step of the record (0..%zu)",
                           (long long)f->forked_seq, f->n_steps);
    } else if (f->forked_seq != 0) {
        return ar_fail(err, AR_EMISUSE, "forked_from.seq is given without forked_from.run");
    }
    if (f->request && (rc = ar_json_check(err, "request", f->request, strlen(f->request), 0)))
        return rc;
    if (f->response && (rc = ar_json_check(err, "response", f->response, strlen(f->response), 0)))
        return rc;
    if (f->response && !f->request)
        return ar_fail(err, AR_EMISUSE, "a response is only for a record that has a request");
    return AR_OK;
}

/* The value of counter `name` in c[0..n), 0 when it is not there. */
static int64_t counter_value(const ar_counter *c, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(c[i].name, name) == 0)
            return c[i].value;
    return 0;
}

/* Given usage must be what the steps add up to, counter by counter. The
 * cost agrees when it is the sum in nano-units, or the very double that sum
 * reads back as (a double cannot hold every large total exactly). */
static int usage_agrees(ar_err *err, const ar_usage *given, int64_t given_cost, const ar_totals *sums)
{
    if (given->input_tokens != sums->input_tokens)
        return ar_fail(err, AR_EMISUSE, "usage.input_tokens (%lld) disagrees with the sum of the steps (%lld)",
                       (long long)given->input_tokens, (long long)sums->input_tokens);
    if (given->output_tokens != sums->output_tokens)
        return ar_fail(err, AR_EMISUSE, "usage.output_tokens (%lld) disagrees with the sum of the steps (%lld)",
                       (long long)given->output_tokens, (long long)sums->output_tokens);
    if (given_cost != sums->cost_nanos && given->cost != ar_nanos_to_cost(sums->cost_nanos))
        return ar_fail(err, AR_EMISUSE, "usage.cost (%.17g) disagrees with the sum of the steps (%.17g)",
                       ar_nanos_to_cost(given_cost), ar_nanos_to_cost(sums->cost_nanos));
    for (size_t i = 0; i < given->n_extra; i++) {
        int64_t v = counter_value(sums->extra, sums->n_extra, given->extra[i].name);
        if (given->extra[i].value != v)
            return ar_fail(err, AR_EMISUSE, "usage.%s (%lld) disagrees with the sum of the steps (%lld)",
                           given->extra[i].name, (long long)given->extra[i].value, (long long)v);
    }
    for (size_t i = 0; i < sums->n_extra; i++) {
        int64_t v = counter_value(given->extra, given->n_extra, sums->extra[i].name);
        if (sums->extra[i].value != v)
            return ar_fail(err, AR_EMISUSE, "usage.%s (%lld) disagrees with the sum of the steps (%lld)",
                           sums->extra[i].name, (long long)v, (long long)sums->extra[i].value);
    }
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
    int64_t now = ar_now_ms();
    int64_t created = f->created_at != AR_UNSET ? f->created_at : f->id ? ar_id_tick(f->id) >> 16 : now;
    int64_t finished = f->finished_at != AR_UNSET ? f->finished_at : (now > created ? now : created);
    int64_t updated = f->updated_at != AR_UNSET ? f->updated_at : finished;
    if (status == AR_WAITING) {
        /* a waiting run is not finished: it has no finished_at and no latency */
        if (f->finished_at != AR_UNSET || (f->latency_ms != AR_UNSET))
            return ar_fail(err, AR_EMISUSE, "a waiting record has no finished_at or latency_ms");
        if (!f->request)
            return ar_fail(err, AR_EMISUSE, "a waiting record needs its request");
        finished = AR_UNSET;
        if (updated < created)
            return ar_fail(err, AR_EMISUSE, "updated_at is before created_at");
    } else {
        if (finished < created)
            return ar_fail(err, AR_EMISUSE, "finished_at is before created_at");
        if (updated < finished)
            return ar_fail(err, AR_EMISUSE, "updated_at is before finished_at");
        if (f->latency_ms != AR_UNSET && f->latency_ms != finished - created)
            return ar_fail(err, AR_EMISUSE, "latency_ms (%lld) disagrees with finished_at - created_at (%lld)",
                           (long long)f->latency_ms, (long long)(finished - created));
    }
    int64_t given_cost = 0;
    if (f->usage.total_tokens >= 0)
        ar_cost_to_nanos(&given_cost, f->usage.cost); /* checked by fields_check */
    ar_record_box *box = ar_record_box_new(alloc);
    if (!box)
        return ar_fail(err, AR_ENOMEM, "out of memory building a record");
    ar_arena *a = &box->arena;
    ar_record *r = &box->rec;
    int failed = 0;
    r->id = ar_arena_strdup(a, f->id, &failed);
    r->agent = ar_arena_strdup(a, f->agent, &failed);
    r->goal = ar_arena_strdup(a, f->goal, &failed);
    r->user = ar_arena_strdup(a, f->user, &failed);
    r->edition = ar_arena_strdup(a, f->edition, &failed);
    r->parent = ar_arena_strdup(a, f->parent, &failed);
    r->metadata = ar_arena_strdup(a, f->metadata, &failed);
    r->status = status;
    r->output = output ? ar_arena_strndup(a, output, output_len, &failed) : NULL;
    if (error) {
        /* error text is never refused (ar_error_text) */
        char *clean = ar_arena_alloc(a, ar_error_room(error, AR_VALUE_MAX));
        if (clean)
            ar_error_text(clean, error, AR_VALUE_MAX);
        failed |= !clean;
        r->error = clean;
    }
    r->limit = e;
    r->budget = f->budget;
    r->created_at = created;
    r->finished_at = finished;
    r->updated_at = updated;
    r->latency_ms = finished == AR_UNSET ? AR_UNSET : finished - created;
    r->forked_from = ar_arena_strdup(a, f->forked_from, &failed);
    r->forked_seq = f->forked_from ? f->forked_seq : 0;
    r->request = ar_arena_strdup(a, f->request, &failed);
    r->response = ar_arena_strdup(a, f->response, &failed);
    if (f->checkpoint) {
        r->checkpoint = ar_arena_strdup(a, f->checkpoint, &failed);
        r->checkpoint_seq = f->checkpoint_seq != AR_UNSET ? f->checkpoint_seq : (int64_t)f->n_steps;
    }

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
        steps[i].at = s->at != AR_UNSET ? s->at : finished != AR_UNSET ? finished : updated;
        if (!failed && ar_totals_add(alloc, &sums, &s->usage, cost))
            failed = 1;
    }
    r->steps = steps;
    r->n_steps = f->n_steps;
    r->iterations = (int64_t)f->n_steps;
    /* what is stored is always the steps' sums; given figures only have to agree */
    r->usage.input_tokens = sums.input_tokens;
    r->usage.output_tokens = sums.output_tokens;
    r->usage.total_tokens = sums.input_tokens + sums.output_tokens;
    box->cost_nanos = sums.cost_nanos;
    r->usage.cost = ar_nanos_to_cost(sums.cost_nanos);
    r->usage.n_extra = sums.n_extra;
    r->usage.extra = copy_counters(a, sums.extra, sums.n_extra, &failed);
    if (!rc && failed)
        rc = ar_fail(err, AR_ENOMEM, "out of memory building a record");
    else if (!rc && f->usage.total_tokens >= 0)
        rc = usage_agrees(err, &f->usage, given_cost, &sums);
    ar_totals_free(alloc, &sums);
    if (rc) {
        ar_record_free(r);
        return rc;
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
                        clen ? *buf : NULL, clen,
                        r->latency_ms != AR_UNSET ? r->latency_ms : r->updated_at - r->created_at, r->updated_at },
                      r->created_at, r->finished_at, 1, r->forked_from, r->forked_seq,
                      r->request, r->request ? strlen(r->request) : 0,
                      r->response, r->response ? strlen(r->response) : 0 };
    const ar_backend *be = store->be;
    int64_t key, min_key = 0;
    int rc;
    if (r->id) {
        /* a record keeps its id, and with it its key */
        memcpy(id, r->id, AR_ID_LEN + 1);
        row.n = key = ar_id_tick(r->id);
        if ((rc = be->run_insert(db, &row, &min_key, err)) == AR_DB_CONFLICT) {
            if ((rc = be->run_exists(db, key, id, err)) == AR_OK)
                return ar_fail(err, AR_ESTATE, "run %s is already in the store", id);
            if (rc != AR_ENOTFOUND)
                return rc;
            return ar_fail(err, AR_ESTATE, "the store holds another run made in the same tick as %s", id);
        }
    } else {
        /* the record keeps its created_at; a key taken in that millisecond means another id */
        do {
            key = ar_id_new(store, r->created_at, 1, 0, id);
            row.n = key;
        } while ((rc = be->run_insert(db, &row, &min_key, err)) == AR_DB_CONFLICT);
    }
    for (size_t i = 0; rc == AR_OK && i < r->n_steps; i++) {
        const ar_step *s = &r->steps[i];
        ar_cost_to_nanos(&cost, s->usage.cost);
        if (ar_counters_json(&store->alloc, buf, cap, &clen, s->usage.extra, s->usage.n_extra))
            return ar_fail(err, AR_ENOMEM, "out of memory writing a record");
        ar_db_step st = { s->seq, s->kind, s->name, s->content, s->content_len,
                          s->usage.input_tokens, s->usage.output_tokens, cost,
                          clen ? *buf : NULL, clen, s->duration_ms, s->at };
        rc = be->step_insert(db, key, &st, err);
    }
    if (rc == AR_OK && r->checkpoint) {
        /* saved when the step it follows was made (the run's start for seq 0) */
        int64_t at = r->checkpoint_seq > 0 ? r->steps[r->checkpoint_seq - 1].at : r->created_at;
        rc = be->checkpoint_put(db, key, r->checkpoint_seq, r->checkpoint, strlen(r->checkpoint), at, err);
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
        return ar_fail(&store->err, AR_EMISUSE, "only a finished or waiting record can be written "
                       "(status is not final)");
    /* each ending has its own field: another one would be stored and never read as meant */
    if (record->output && record->status != AR_COMPLETED)
        return ar_fail(&store->err, AR_EMISUSE, "output is only for a completed record (status is %s)",
                       ar_status_name(record->status));
    if (record->error && record->status != AR_FAILED)
        return ar_fail(&store->err, AR_EMISUSE, "error is only for a failed record (status is %s)",
                       ar_status_name(record->status));
    if (record->limit.limit && record->status != AR_BUDGET_EXHAUSTED)
        return ar_fail(&store->err, AR_EMISUSE, "limit is only for a budget_exhausted record (status is %s)",
                       ar_status_name(record->status));
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
    else if ((rc = store->be->txn_begin(store->db, &store->err)) == AR_OK &&
             (rc = write_rows(store, r, id_out, &buf, &cap)) == AR_OK)
        rc = store->be->txn_commit(store->db, &store->err);
    if (rc) {
        store->be->txn_rollback(store->db);
        ar_free(id_out);
    } else {
        *out = id_out;
    }
    ar_mem_free(&store->alloc, buf);
    ar_record_free(r);
    return rc;
}
