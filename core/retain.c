/* retain.c -- retention of runs: age and per-agent count criteria, the caller's rule, batched deletion. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A batch also closes once its runs hold about this many steps, so that a
 * batch of long runs still commits quickly. */
#define BATCH_STEPS 20000
#define MAX_OLDER_THAN 1e12 /* seconds; keeps older_than * 1000 exact in int64 */

/* A run to delete: its key and step count (to size batches). */
typedef struct victim {
    int64_t key, steps;
} victim;

/* What one retention call decides while the scan streams by. */
typedef struct plan {
    ar_store *store;
    const ar_retention *policy;
    ar_err *err;
    const ar_allocator *alloc;
    int64_t now;
    ar_retention_report *report;
    ar_record_box *box;         /* the considered run handed to the rule, reused row after row */
    victim *victims;
    size_t n, cap;
} plan;

/* Checks the policy and turns its status filter into the distinct finished
 * statuses to consider (all four when it gives none). */
static int policy_check(ar_err *err, const ar_retention *p, ar_status statuses[4], size_t *n)
{
    int rc = ar_opts_version_check(err, "ar_retention", p->version, AR_RETENTION_VERSION, "AR_RETENTION_INIT");
    if (rc)
        return rc;
    if (isnan(p->older_than) || p->older_than > MAX_OLDER_THAN)
        return ar_fail(err, AR_EMISUSE, "older_than must be a number of seconds up to 1e12 (negative for none)");
    if (p->n_status && !p->status)
        return ar_fail(err, AR_EMISUSE, "status is NULL with n_status > 0");
    int wanted[AR_INTERRUPTED + 1] = { 0 };
    for (size_t i = 0; i < p->n_status; i++) {
        if (!ar_status_name(p->status[i]))
            return ar_fail(err, AR_EMISUSE, "unknown status %d in the policy", (int)p->status[i]);
        if (p->status[i] == AR_RUNNING || p->status[i] == AR_WAITING)
            return ar_fail(err, AR_EMISUSE, "%s runs are never subject to retention; "
                           "status may list only finished statuses", ar_status_name(p->status[i]));
        wanted[p->status[i]] = 1;
    }
    *n = 0;
    for (int s = AR_COMPLETED; s <= AR_INTERRUPTED; s++)
        if (wanted[s] || p->n_status == 0)
            statuses[(*n)++] = (ar_status)s;
    return AR_OK;
}

/* Adds a run to the plan; AR_ENOMEM when the list cannot grow. */
static int push(plan *p, int64_t key, int64_t steps)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        victim *grown = ar_mem_realloc(p->alloc, p->victims, cap * sizeof *grown);
        if (!grown)
            return ar_fail(p->err, AR_ENOMEM, "out of memory planning retention");
        p->victims = grown;
        p->cap = cap;
    }
    p->victims[p->n++] = (victim){ key, steps };
    return AR_OK;
}

static int by_key(const void *a, const void *b)
{
    int64_t x = ((const victim *)a)->key, y = ((const victim *)b)->key;
    return (x > y) - (x < y);
}

/* Decides one considered run: the rule's verdict first, then the criteria.
 * A rule that fails or gives an unknown verdict stops the scan (AR_ECALLBACK)
 * before anything has been deleted. */
static int decide(void *ud, const ar_db_retain_row *row)
{
    plan *p = ud;
    const ar_retention *policy = p->policy;
    double age = (double)(p->now - row->ended_at) / 1000.0;
    int verdict = AR_RULE_UNDECIDED;
    p->report->considered++;
    const ar_record *record = NULL;
    if (policy->rule) {
        /* one box for the whole scan: only its arena's blocks come and go */
        const ar_record blank = AR_RECORD_INIT;
        ar_arena_release(&p->box->arena);
        p->box->rec = blank;
        int rc = row->run ? ar_row_to_record(row->run, p->box, p->err)
                          : ar_fail(p->err, AR_EIO, "the store's retention scan gave no run to the rule");
        if (rc)
            return rc;
        record = &p->box->rec;
        int urc = policy->rule(policy->rule_ud, record, age, &verdict);
        if (p->store->close_deferred)
            return ar_fail(p->err, AR_ESTATE, "the retention rule closed the store it runs on; "
                           "nothing was deleted, and the store is now closed");
        if (urc)
            return ar_fail(p->err, AR_ECALLBACK, "the retention rule failed on run %s (it returned %d); "
                           "nothing was deleted", record->id, urc);
    }
    int doomed;
    switch (verdict) {
    case AR_RULE_KEEP:
        p->report->kept_by_rule++;
        return AR_OK;
    case AR_RULE_DELETE:
        p->report->deleted_by_rule++;
        doomed = 1;
        break;
    case AR_RULE_UNDECIDED:
        doomed = (policy->older_than >= 0 && age > policy->older_than) ||
                 (policy->keep_last >= 0 && row->rank > policy->keep_last);
        break;
    default:
        return ar_fail(p->err, AR_ECALLBACK, "the retention rule gave run %s an unknown verdict %d; "
                       "nothing was deleted", record ? record->id : "?", verdict);
    }
    return doomed ? push(p, row->n, row->iterations) : AR_OK;
}

/* Copies the next batch of planned runs from `from` into keys[]: up to
 * AR_DB_RETAIN_BATCH runs, fewer once they hold BATCH_STEPS steps (when
 * `by_steps`). Returns how many. */
static size_t next_batch(const plan *p, size_t from, int by_steps, int64_t keys[AR_DB_RETAIN_BATCH])
{
    size_t k = 0;
    int64_t steps = 0;
    while (from + k < p->n && k < AR_DB_RETAIN_BATCH && (k == 0 || !by_steps || steps < BATCH_STEPS)) {
        keys[k] = p->victims[from + k].key;
        steps += p->victims[from + k].steps;
        k++;
    }
    return k;
}

/* A dry run: the steps the planned deletion would take with it. */
static int count_steps(ar_store *store, const plan *p, int64_t *out)
{
    int64_t keys[AR_DB_RETAIN_BATCH];
    *out = 0;
    for (size_t i = 0, k; i < p->n; i += k) {
        k = next_batch(p, i, 0, keys);
        int64_t steps;
        int rc = store->be->retain_count_steps(store->db, keys, k, &steps, &store->err);
        if (rc)
            return rc;
        *out += steps;
    }
    return AR_OK;
}

/* Deletes the planned runs, one short transaction per batch. A failure rolls
 * back its own batch only; the message says how many runs were already gone. */
static int delete_planned(ar_store *store, const plan *p, int64_t *runs, int64_t *steps)
{
    ar_err *err = &store->err;
    int64_t keys[AR_DB_RETAIN_BATCH];
    *runs = *steps = 0;
    for (size_t i = 0, k; i < p->n; i += k) {
        k = next_batch(p, i, 1, keys);
        int64_t r = 0, s = 0;
        int rc = store->be->txn_begin(store->db, err);
        if (rc == AR_OK && (rc = store->be->retain_delete(store->db, keys, k, &r, &s, err)) == AR_OK)
            rc = store->be->txn_commit(store->db, err);
        if (rc) {
            store->be->txn_rollback(store->db);
            if (*runs) {
                char msg[AR_ERRMSG_MAX];
                snprintf(msg, sizeof msg, "%s", err->msg);
                ar_fail(err, rc, "%s (%lld runs were deleted before this failure)", msg, (long long)*runs);
            }
            return rc;
        }
        *runs += r;
        *steps += s;
    }
    return AR_OK;
}

/* The bytes the store takes, data and journal (0 for a backend that cannot tell). */
static int store_bytes(ar_store *store, int64_t *out)
{
    ar_db_sizes sizes = { 0, 0, 0 };
    *out = 0;
    int rc = store->be->sizes ? store->be->sizes(store->db, &sizes, &store->err) : AR_OK;
    if (rc == AR_OK)
        *out = sizes.file_bytes + sizes.wal_bytes;
    return rc;
}

/* Every rule call and decision is made by one streaming scan before anything
 * is deleted; only then do the deletion batches and the vacuum run. On
 * failure *out is zeroed (see delete_planned for a partial deletion). */
int ar_store_retain(ar_retention_report *out, ar_store *store, const ar_retention *policy)
{
    if (out)
        memset(out, 0, sizeof *out);
    int usable = ar_store_writable(store, "run retention");
    if (usable)
        return usable;
    if (!out || !policy)
        return ar_fail(&store->err, AR_EMISUSE, "out and policy are required");
    ar_status statuses[4];
    size_t n_statuses = 0;
    int rc = policy_check(&store->err, policy, statuses, &n_statuses);
    if (rc)
        return rc;
    if (store->readonly && !policy->dry_run)
        return ar_fail(&store->err, AR_EPERM, "the store is open read-only: retention can only report (dry_run)");

    ar_retention_report report;
    memset(&report, 0, sizeof report);
    report.dry_run = policy->dry_run != 0;
    plan p = { store, policy, &store->err, &store->alloc, ar_now_ms(), &report, NULL, NULL, 0, 0 };
    if (policy->rule && !(p.box = ar_record_box_new(&store->alloc))) {
        rc = ar_fail(&store->err, AR_ENOMEM, "out of memory scanning runs");
        goto cleanup;
    }
    if ((rc = store_bytes(store, &report.bytes_before)))
        goto cleanup;
    /* The scan is one read, so one snapshot: the rule sees the runs
     * finished when it began, whatever is written meanwhile, and the read
     * holds up no other writer. Writes through this store would land under
     * the scan still reading (and be scanned again), so they are refused
     * until the scan ends; closes are put off. */
    store->scanning = 1;
    rc = store->be->retain_scan(store->db, statuses, n_statuses, policy->keep_last >= 0, policy->rule != NULL,
                                decide, &p, &store->err);
    store->scanning = 0;
    ar_store_close_deferred_runs(store);
    if (rc || store->close_deferred)
        goto cleanup;
    /* neighbouring rows share pages: each batch then rewrites few of them */
    if (p.n > 1)
        qsort(p.victims, p.n, sizeof *p.victims, by_key);
    if (report.dry_run) {
        report.deleted = (int64_t)p.n;
        report.bytes_after = report.bytes_before;
        rc = count_steps(store, &p, &report.steps_deleted);
    } else if ((rc = delete_planned(store, &p, &report.deleted, &report.steps_deleted)) == AR_OK &&
               (!policy->vacuum || !store->be->compact || (rc = store->be->compact(store->db, &store->err)) == AR_OK)) {
        rc = store_bytes(store, &report.bytes_after);
    }
    if (rc == AR_OK)
        *out = report;
cleanup:
    ar_mem_free(&store->alloc, p.victims);
    if (p.box)
        ar_record_free(&p.box->rec);
    if (store->close_deferred) {
        /* the rule closed the store: the caller has let go of it */
        ar_store_close(store);
        return AR_ESTATE;
    }
    return rc;
}
