/* test_retain.c -- retention of runs: age and count criteria, status filter, rules, dry runs, vacuum. */
#include "suite.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agentrun.h"

#define SECOND 1000LL
#define HOUR (3600 * SECOND)
#define DAY (24 * HOUR)

/* The wall clock in ms, as the library reads it. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct fixture {
    char *path;                 /* the store's location, opened with opts */
    ar_open_opts opts;
    ar_store *store;
    int64_t now;
} fixture;

static int fx_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    f->path = test_location(&opts);
    f->opts = opts;
    assert_int_equal(ar_store_open(&f->store, f->path, &opts), AR_OK);
    f->now = now_ms();
    *state = f;
    return 0;
}

/* Default options that open the fixture's store again; returns o. */
static ar_open_opts *same_store(const fixture *f, ar_open_opts *o)
{
    *o = (ar_open_opts)AR_OPEN_OPTS_INIT;
    test_same_store(o, &f->opts);
    return o;
}

static int fx_teardown(void **state)
{
    fixture *f = *state;
    ar_store_close(f->store);
    free(f->path);
    free(f);
    return 0;
}

/* Writes a finished run of `agent` with `n_steps` steps of `content_bytes`
 * bytes each; returns its id (ar_free). */
static char *write_run_sized(ar_store *store, const char *agent, const char *goal, ar_status status,
                             int64_t created_at, int64_t finished_at, size_t n_steps, size_t content_bytes)
{
    char *content = malloc(content_bytes + 3);
    assert_non_null(content);
    content[0] = '"';
    memset(content + 1, 'x', content_bytes);
    content[content_bytes + 1] = '"';
    content[content_bytes + 2] = '\0';
    ar_step *steps = calloc(n_steps ? n_steps : 1, sizeof *steps);
    assert_non_null(steps);
    for (size_t i = 0; i < n_steps; i++) {
        ar_step s = AR_STEP_INIT;
        s.kind = "llm";
        s.content = content;
        s.usage.input_tokens = 3;
        s.usage.output_tokens = 2;
        steps[i] = s;
    }
    ar_record r = AR_RECORD_INIT;
    r.agent = agent;
    r.goal = goal;
    r.status = status;
    r.created_at = created_at;
    r.finished_at = finished_at;
    r.steps = steps;
    r.n_steps = n_steps;
    if (status == AR_FAILED)
        r.error = "boom";
    if (status == AR_BUDGET_EXHAUSTED)
        r.limit = (ar_exhaustion){ "max_steps", 1, 1 };
    if (status == AR_COMPLETED)
        r.output = "\"done\"";
    char *id = NULL;
    int rc = ar_store_write(&id, store, &r);
    if (rc)
        print_error("write: %s\n", ar_store_errmsg(store));
    assert_int_equal(rc, AR_OK);
    free(steps);
    free(content);
    return id;
}

static char *write_run(ar_store *store, const char *agent, ar_status status, int64_t created_at,
                       int64_t finished_at, size_t n_steps)
{
    return write_run_sized(store, agent, "a goal", status, created_at, finished_at, n_steps, 8);
}

/* A completed run of `agent` created at `created_at` that took a second. */
static char *write_done(ar_store *store, const char *agent, int64_t created_at)
{
    return write_run(store, agent, AR_COMPLETED, created_at, created_at + SECOND, 0);
}

static int exists(ar_store *store, const char *id)
{
    ar_record *r = NULL;
    int rc = ar_store_get(&r, store, id, 0);
    assert_true(rc == AR_OK || rc == AR_ENOTFOUND);
    ar_record_free(r);
    return rc == AR_OK;
}

static int64_t count_runs(ar_store *store, const char *agent)
{
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.agent = agent;
    int64_t n = -1;
    assert_int_equal(ar_runs_count(&n, store, &q), AR_OK);
    return n;
}

static ar_retention_report retain_ok(ar_store *store, const ar_retention *policy)
{
    ar_retention_report rep;
    int rc = ar_store_retain(&rep, store, policy);
    if (rc)
        print_error("retain: %s\n", ar_store_errmsg(store));
    assert_int_equal(rc, AR_OK);
    return rep;
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ar_free(ids[i]);
}

/* ---- criteria ------------------------------------------------------------ */

static void test_older_than_deletes_runs_finished_longer_ago(void **state)
{
    fixture *f = *state;
    const int64_t ages[] = { 10 * DAY, 8 * DAY, 4 * DAY, 2 * DAY, HOUR };
    char *ids[6];
    for (size_t i = 0; i < 5; i++)
        ids[i] = write_run(f->store, "a", AR_COMPLETED, f->now - ages[i] - HOUR, f->now - ages[i], 2);
    /* age is by finished_at: created long ago but finished recently stays */
    ids[5] = write_run(f->store, "b", AR_FAILED, f->now - 30 * DAY, f->now - DAY, 0);
    ar_retention p = AR_RETENTION_INIT;
    p.older_than = 5 * 86400.0;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(rep.considered, 6);
    assert_int_equal(rep.deleted, 2);
    assert_int_equal(rep.steps_deleted, 4);
    assert_int_equal(rep.kept_by_rule, 0);
    assert_int_equal(rep.deleted_by_rule, 0);
    assert_int_equal(rep.dry_run, 0);
    const int want[] = { 0, 0, 1, 1, 1, 1 };
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(exists(f->store, ids[i]), want[i]);
    free_ids(ids, 6);
}

static void test_keep_last_keeps_newest_by_created_at_per_agent(void **state)
{
    fixture *f = *state;
    /* written out of created_at order: the ranking must follow created_at, not writing order */
    const int64_t a_days[] = { 3, 5, 1, 4, 2 };
    char *a[5], *b[2], *c[3];
    for (size_t i = 0; i < 5; i++)
        a[i] = write_done(f->store, "a", f->now - a_days[i] * DAY);
    for (size_t i = 0; i < 2; i++)
        b[i] = write_done(f->store, "b", f->now - (int64_t)(i + 1) * 40 * DAY);
    for (size_t i = 0; i < 3; i++)
        c[i] = write_done(f->store, "c", f->now - (int64_t)(i + 1) * DAY);
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 3;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(rep.considered, 10);
    assert_int_equal(rep.deleted, 2);
    /* a: the three newest are 1, 2 and 3 days old */
    const int want_a[] = { 1, 0, 1, 0, 1 };
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(exists(f->store, a[i]), want_a[i]);
    /* fewer runs than keep_last: all stay, however old */
    assert_int_equal(count_runs(f->store, "b"), 2);
    assert_int_equal(count_runs(f->store, "c"), 3);
    free_ids(a, 5);
    free_ids(b, 2);
    free_ids(c, 3);
}

static void test_keep_last_breaks_created_at_ties_by_later_id(void **state)
{
    fixture *f = *state;
    int64_t t = f->now - 10 * DAY;
    /* written first (smaller id) but created later: newest of all */
    char *newest = write_done(f->store, "a", t + 5);
    char *tied[4];
    for (size_t i = 0; i < 4; i++)
        tied[i] = write_done(f->store, "a", t);
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 3;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(rep.deleted, 2);
    assert_true(exists(f->store, newest));
    const int want[] = { 0, 0, 1, 1 };
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(exists(f->store, tied[i]), want[i]);
    ar_free(newest);
    free_ids(tied, 4);
}

static void test_keep_last_leaves_exactly_that_many_per_agent(void **state)
{
    fixture *f = *state;
    const char *agents[] = { "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7" };
    const int counts[] = { 0, 1, 4, 5, 6, 9, 17, 30 };
    int64_t total = 0;
    uint32_t x = 12345;
    for (size_t g = 0; g < 8; g++) {
        for (int i = 0; i < counts[g]; i++) {
            x = x * 1103515245u + 12345u;
            /* few distinct times, so ties at the boundary are common */
            char *id = write_done(f->store, agents[g], f->now - (int64_t)(x >> 16) % 4 * HOUR);
            ar_free(id);
            total++;
        }
    }
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 5;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(rep.considered, total);
    assert_int_equal(rep.deleted, (1 + 4 + 12 + 25));
    for (size_t g = 0; g < 8; g++)
        assert_int_equal(count_runs(f->store, agents[g]), counts[g] < 5 ? counts[g] : 5);
}

static void test_keep_last_zero_deletes_every_considered_run(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 3; i++)
        ar_free(write_done(f->store, "a", f->now - i * SECOND));
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 0;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(rep.deleted, 3);
    assert_int_equal(count_runs(f->store, NULL), 0);
}

static void test_older_than_or_keep_last_deletes_either(void **state)
{
    fixture *f = *state;
    /* a: 4 recent runs (keep_last 2 drops 2), b: one run too old (age drops it
     * though it is within keep_last), c: one recent run (stays) */
    char *a[4];
    for (int i = 0; i < 4; i++)
        a[i] = write_done(f->store, "a", f->now - (i + 1) * HOUR);
    char *b = write_done(f->store, "b", f->now - 20 * DAY);
    char *c = write_done(f->store, "c", f->now - HOUR);
    ar_retention p = AR_RETENTION_INIT;
    p.older_than = 7 * 86400.0;
    p.keep_last = 2;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(rep.considered, 6);
    assert_int_equal(rep.deleted, 3);
    assert_true(exists(f->store, a[0]));
    assert_true(exists(f->store, a[1]));
    assert_false(exists(f->store, a[2]));
    assert_false(exists(f->store, a[3]));
    assert_false(exists(f->store, b));
    assert_true(exists(f->store, c));
    free_ids(a, 4);
    ar_free(b);
    ar_free(c);
}

static void test_no_criteria_and_no_rule_delete_nothing(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 4; i++)
        ar_free(write_done(f->store, "a", f->now - 100 * DAY));
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = -7; /* any negative value means "no count criterion" */
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(rep.considered, 4);
    assert_int_equal(rep.deleted, 0);
    assert_int_equal(rep.steps_deleted, 0);
    assert_int_equal(count_runs(f->store, NULL), 4);
}

/* ---- status filter and running runs --------------------------------------- */

static void test_status_filter_limits_considered_and_ranked_runs(void **state)
{
    fixture *f = *state;
    int64_t old = f->now - 30 * DAY;
    char *completed = write_run(f->store, "a", AR_COMPLETED, old + 4, old + 5, 0);
    char *failed_new = write_run(f->store, "a", AR_FAILED, old + 3, old + 4, 0);
    char *failed_old = write_run(f->store, "a", AR_FAILED, old + 1, old + 2, 0);
    char *exhausted = write_run(f->store, "a", AR_BUDGET_EXHAUSTED, old, old + 1, 0);
    char *interrupted = write_run(f->store, "b", AR_INTERRUPTED, old, old + 1, 0);
    const ar_status only[] = { AR_FAILED, AR_INTERRUPTED, AR_FAILED };
    ar_retention p = AR_RETENTION_INIT;
    p.status = only;
    p.n_status = 3;
    p.keep_last = 1;
    ar_retention_report rep = retain_ok(f->store, &p);
    /* keep_last ranks among the failed runs only: the newer failed run stays
     * although a completed run of the agent is newer still */
    assert_int_equal(rep.considered, 3);
    assert_int_equal(rep.deleted, 1);
    assert_false(exists(f->store, failed_old));
    assert_true(exists(f->store, failed_new));
    assert_true(exists(f->store, interrupted));
    assert_true(exists(f->store, completed));
    assert_true(exists(f->store, exhausted));

    p.keep_last = -1;
    p.older_than = 0;
    rep = retain_ok(f->store, &p);
    assert_int_equal(rep.considered, 2);
    assert_int_equal(rep.deleted, 2);
    assert_false(exists(f->store, failed_new));
    assert_false(exists(f->store, interrupted));
    assert_true(exists(f->store, completed));
    assert_true(exists(f->store, exhausted));
    ar_free(completed);
    ar_free(failed_new);
    ar_free(failed_old);
    ar_free(exhausted);
    ar_free(interrupted);
}

static void test_running_runs_are_never_considered_ranked_or_deleted(void **state)
{
    fixture *f = *state;
    char *older = write_done(f->store, "a", f->now - 2 * DAY);
    char *newer = write_done(f->store, "a", f->now - DAY);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "still going";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, f->store, &spec), AR_OK);
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);

    /* the running run is the agent's newest, yet both finished runs rank within keep_last */
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 2;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(rep.considered, 2);
    assert_int_equal(rep.deleted, 0);

    p.keep_last = 0;
    p.older_than = 0;
    rep = retain_ok(f->store, &p);
    assert_int_equal(rep.considered, 2);
    assert_int_equal(rep.deleted, 2);
    assert_true(exists(f->store, ar_run_id(run)));
    /* the running run keeps recording */
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    ar_record *done = NULL;
    assert_int_equal(ar_run_complete(&done, run, "1", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(done->iterations, 2);
    ar_record_free(done);
    ar_run_close(run);
    ar_free(older);
    ar_free(newer);
}

/* ---- rules ------------------------------------------------------------------ */

typedef struct rule_log {
    int calls;
    int fail_on_call;       /* 0: never */
    int bad_verdict;        /* give a verdict outside the enum */
    ar_store *nested;       /* when set, tries retention again from inside the rule */
    int nested_rc;
    int records_ok;
    double now_min, now_max; /* finished_at + age: the "now" each call implies, in ms */
} rule_log;
#define RULE_LOG_INIT { 0, 0, 0, NULL, 0, 1, INFINITY, -INFINITY }

/* Decides by goal: "keep", "delete", anything else undecided. */
static int rule_by_goal(void *ud, const ar_record *run, double age, int *verdict)
{
    rule_log *log = ud;
    log->calls++;
    if (log->fail_on_call && log->calls == log->fail_on_call)
        return 7;
    if (log->nested) {
        ar_retention again = AR_RETENTION_INIT;
        again.rule = rule_by_goal;
        again.rule_ud = log;
        ar_retention_report rep;
        ar_store *store = log->nested;
        log->nested = NULL;
        log->nested_rc = ar_store_retain(&rep, store, &again);
    }
    double implied_now = (double)run->finished_at + age * 1000.0;
    if (implied_now < log->now_min)
        log->now_min = implied_now;
    if (implied_now > log->now_max)
        log->now_max = implied_now;
    if (!run->id || !run->agent || !run->goal || run->status == AR_RUNNING || run->n_steps != 0 ||
        run->steps != NULL || run->latency_ms != run->finished_at - run->created_at)
        log->records_ok = 0;
    if (log->bad_verdict)
        *verdict = 9;
    else if (strcmp(run->goal, "keep") == 0)
        *verdict = AR_RULE_KEEP;
    else if (strcmp(run->goal, "delete") == 0)
        *verdict = AR_RULE_DELETE;
    return 0;
}

/* Six runs of one agent, newest first: keep (old), delete (new), two
 * undecided old ones, two undecided new ones. */
static void write_rule_fixture(fixture *f, char *ids[6])
{
    ids[0] = write_run_sized(f->store, "a", "keep", AR_COMPLETED, f->now - 40 * DAY, f->now - 40 * DAY, 0, 1);
    ids[1] = write_run_sized(f->store, "a", "delete", AR_COMPLETED, f->now - HOUR, f->now - HOUR, 3, 1);
    ids[2] = write_run_sized(f->store, "a", "other", AR_FAILED, f->now - 50 * DAY, f->now - 50 * DAY, 0, 1);
    ids[3] = write_run_sized(f->store, "a", "other", AR_COMPLETED, f->now - 60 * DAY, f->now - 60 * DAY, 0, 1);
    ids[4] = write_run_sized(f->store, "a", "other", AR_COMPLETED, f->now - 2 * HOUR, f->now - 2 * HOUR, 0, 1);
    ids[5] = write_run_sized(f->store, "a", "other", AR_COMPLETED, f->now - 3 * HOUR, f->now - 3 * HOUR, 0, 1);
}

static void test_rule_keep_overrides_criteria_and_delete_acts_regardless(void **state)
{
    fixture *f = *state;
    char *ids[6];
    write_rule_fixture(f, ids);
    rule_log log = RULE_LOG_INIT;
    ar_retention p = AR_RETENTION_INIT;
    p.older_than = 30 * 86400.0;
    p.rule = rule_by_goal;
    p.rule_ud = &log;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(log.calls, 6);
    assert_int_equal(rep.considered, 6);
    assert_int_equal(rep.kept_by_rule, 1);
    assert_int_equal(rep.deleted_by_rule, 1);
    /* delete (new, 3 steps) + the two old undecided ones */
    assert_int_equal(rep.deleted, 3);
    assert_int_equal(rep.steps_deleted, 3);
    const int want[] = { 1, 0, 0, 0, 1, 1 };
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(exists(f->store, ids[i]), want[i]);
    assert_int_equal(log.records_ok, 1);
    free_ids(ids, 6);
}

static void test_rule_gets_record_without_steps_and_age_since_finished(void **state)
{
    fixture *f = *state;
    char *ids[6];
    write_rule_fixture(f, ids);
    rule_log log = RULE_LOG_INIT;
    ar_retention p = AR_RETENTION_INIT;
    p.rule = rule_by_goal;
    p.rule_ud = &log;
    p.keep_last = 4;
    int64_t before = now_ms();
    ar_retention_report rep = retain_ok(f->store, &p);
    int64_t after = now_ms();
    assert_int_equal(log.records_ok, 1);
    /* every age is measured from one "now", taken during the call */
    assert_true(log.now_max - log.now_min < 1e-3);
    assert_true(log.now_min > (double)before - 1e-3);
    assert_true(log.now_max < (double)after + 1e-3);
    /* ranked newest first: delete(1h, rule), other(2h), other(3h), keep(40d, rule),
     * failed(50d) #5 and completed(60d) #6 beyond keep_last 4 */
    assert_int_equal(rep.deleted, 3);
    const int want[] = { 1, 0, 0, 0, 1, 1 };
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(exists(f->store, ids[i]), want[i]);
    free_ids(ids, 6);
}

static void test_rule_undecided_leaves_it_to_the_criteria(void **state)
{
    fixture *f = *state;
    char *ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = write_run_sized(f->store, "a", "other", AR_COMPLETED, f->now - (i + 1) * DAY,
                                 f->now - (i + 1) * DAY, 0, 1);
    rule_log log = RULE_LOG_INIT;
    ar_retention p = AR_RETENTION_INIT;
    p.rule = rule_by_goal;
    p.rule_ud = &log;
    p.keep_last = 1;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(log.calls, 4);
    assert_int_equal(rep.kept_by_rule, 0);
    assert_int_equal(rep.deleted_by_rule, 0);
    assert_int_equal(rep.deleted, 3);
    assert_true(exists(f->store, ids[0]));

    /* with a rule and no criteria, undecided runs stay */
    p.keep_last = -1;
    rep = retain_ok(f->store, &p);
    assert_int_equal(rep.considered, 1);
    assert_int_equal(rep.deleted, 0);
    free_ids(ids, 4);
}

static void test_rule_error_stops_with_ecallback_after_every_call_and_deletes_nothing(void **state)
{
    fixture *f = *state;
    char *ids[6];
    write_rule_fixture(f, ids);
    ar_store_info before, after;
    assert_int_equal(ar_store_info_get(&before, f->store), AR_OK);
    /* the rule fails on the last run scanned: every verdict before it changes nothing */
    rule_log log = RULE_LOG_INIT;
    log.fail_on_call = 6;
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 0;
    p.rule = rule_by_goal;
    p.rule_ud = &log;
    ar_retention_report rep;
    memset(&rep, 0xff, sizeof rep);
    assert_int_equal(ar_store_retain(&rep, f->store, &p), AR_ECALLBACK);
    assert_int_equal(log.calls, 6);
    assert_non_null(strstr(ar_store_errmsg(f->store), "rule"));
    assert_non_null(strstr(ar_store_errmsg(f->store), "nothing was deleted"));
    assert_int_equal(rep.considered, 0);
    assert_int_equal(rep.deleted, 0);
    assert_int_equal(ar_store_info_get(&after, f->store), AR_OK);
    assert_int_equal(after.runs, before.runs);
    assert_int_equal(after.steps, before.steps);
    assert_int_equal(after.runs, 6);

    log = (rule_log)RULE_LOG_INIT;
    log.bad_verdict = 1;
    assert_int_equal(ar_store_retain(&rep, f->store, &p), AR_ECALLBACK);
    assert_non_null(strstr(ar_store_errmsg(f->store), "unknown verdict 9"));
    assert_int_equal(count_runs(f->store, NULL), 6);
    free_ids(ids, 6);
}

static void test_retention_from_inside_a_rule_is_refused(void **state)
{
    fixture *f = *state;
    char *ids[6];
    write_rule_fixture(f, ids);
    rule_log log = RULE_LOG_INIT;
    log.nested = f->store;
    log.nested_rc = -1;
    ar_retention p = AR_RETENTION_INIT;
    p.rule = rule_by_goal;
    p.rule_ud = &log;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(log.nested_rc, AR_ESTATE);
    assert_int_equal(log.calls, 6);
    assert_int_equal(rep.considered, 6);
    assert_int_equal(rep.deleted, 1);
    free_ids(ids, 6);
}

typedef struct resumer {
    ar_store *store;        /* another store on the same file */
    ar_run *run;
} resumer;

/* Asks to delete every run, and resumes the budget_exhausted one meanwhile
 * through another store, as another process could between the scan and the
 * deletion. */
static int resume_and_delete(void *ud, const ar_record *run, double age, int *verdict)
{
    resumer *r = ud;
    (void)age;
    if (run->status == AR_BUDGET_EXHAUSTED && ar_run_resume(&r->run, r->store, run->id, NULL) != AR_OK)
        return 1;
    *verdict = AR_RULE_DELETE;
    return 0;
}

static void test_run_resumed_after_the_scan_is_not_deleted(void **state)
{
    fixture *f = *state;
    char *done = write_run(f->store, "a", AR_COMPLETED, f->now - DAY, f->now - DAY, 2);
    char *paused = write_run(f->store, "a", AR_BUDGET_EXHAUSTED, f->now - DAY, f->now - DAY, 3);
    ar_open_opts o;
    ar_store *other = NULL;
    assert_int_equal(ar_store_open(&other, f->path, same_store(f, &o)), AR_OK);
    resumer r = { other, NULL };
    ar_retention p = AR_RETENTION_INIT;
    p.rule = resume_and_delete;
    p.rule_ud = &r;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_non_null(r.run);
    assert_int_equal(rep.deleted_by_rule, 2);
    assert_int_equal(rep.deleted, 1);
    assert_int_equal(rep.steps_deleted, 2);
    assert_false(exists(f->store, done));
    assert_true(exists(f->store, paused));
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    int64_t seq = 0;
    assert_int_equal(ar_run_step(&seq, r.run, &step), AR_OK);
    assert_int_equal(seq, 4);
    ar_run_close(r.run);
    ar_store_close(other);
    ar_free(done);
    ar_free(paused);
}

/* ---- a rule and its own store ------------------------------------------------ */

/* What a store holds, to show that a refused call changed nothing. */
typedef struct contents {
    int64_t runs, steps, events, running, user_runs;
} contents;

static contents contents_of(ar_store *store)
{
    contents c;
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    c.runs = info.runs;
    c.steps = info.steps;
    c.events = info.events;
    ar_run_query q = AR_RUN_QUERY_INIT;
    ar_status running = AR_RUNNING;
    q.status = &running;
    q.n_status = 1;
    assert_int_equal(ar_runs_count(&c.running, store, &q), AR_OK);
    q = (ar_run_query)AR_RUN_QUERY_INIT;
    q.user = "u";
    assert_int_equal(ar_runs_count(&c.user_runs, store, &q), AR_OK);
    return c;
}

static void assert_same_contents(contents a, contents b)
{
    assert_int_equal(a.runs, b.runs);
    assert_int_equal(a.steps, b.steps);
    assert_int_equal(a.events, b.events);
    assert_int_equal(a.running, b.running);
    assert_int_equal(a.user_runs, b.user_runs);
}

enum {
    W_BEGIN, W_RESUME, W_STEP, W_CHECKPOINT, W_COMPLETE, W_FAIL, W_EXHAUST, W_WRITE, W_EVENT,
    W_DELETE_EVENTS, W_RETAIN_EVENTS, W_FORGET_USER, W_RECOVER, W_RETAIN, W_DRY_RETAIN, W_COUNT
};

/* A rule that tries every write to its own store once, noting each code. */
typedef struct writer {
    ar_store *store;
    ar_run *running;            /* begun before retention */
    const char *paused;         /* a budget_exhausted run's id */
    int calls, in_rule;
    int rc[W_COUNT];
} writer;

static int write_from_rule(void *ud, const ar_record *run, double age, int *verdict)
{
    writer *w = ud;
    (void)run;
    (void)age;
    w->calls++;
    w->in_rule = ar_store_in_rule(w->store);
    if (w->calls > 1)
        return 0;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "new";
    ar_run *r = NULL;
    w->rc[W_BEGIN] = ar_run_begin(&r, w->store, &spec);
    assert_null(r);
    w->rc[W_RESUME] = ar_run_resume(&r, w->store, w->paused, NULL);
    assert_null(r);
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    w->rc[W_STEP] = ar_run_step(NULL, w->running, &step);
    w->rc[W_CHECKPOINT] = ar_run_checkpoint(w->running, "{}", AR_NUL_TERMINATED);
    ar_record *done = NULL;
    w->rc[W_COMPLETE] = ar_run_complete(&done, w->running, "1", AR_NUL_TERMINATED);
    assert_null(done);
    w->rc[W_FAIL] = ar_run_fail(&done, w->running, "no");
    ar_exhaustion why = { "max_steps", 1, 1 };
    w->rc[W_EXHAUST] = ar_run_exhaust(&done, w->running, &why);
    ar_record rec = AR_RECORD_INIT;
    rec.agent = "a";
    rec.goal = "written";
    rec.status = AR_FAILED;
    char *id = NULL;
    w->rc[W_WRITE] = ar_store_write(&id, w->store, &rec);
    assert_null(id);
    ar_event e = AR_EVENT_INIT;
    e.agent = "a";
    e.type = "log";
    w->rc[W_EVENT] = ar_event_append(NULL, w->store, &e);
    w->rc[W_DELETE_EVENTS] = ar_events_delete(NULL, w->store, "a");
    ar_event_retention er = AR_EVENT_RETENTION_INIT;
    er.keep_last = 0;
    w->rc[W_RETAIN_EVENTS] = ar_events_retain(NULL, w->store, &er);
    w->rc[W_FORGET_USER] = ar_store_forget_user(NULL, w->store, "u");
    w->rc[W_RECOVER] = ar_store_recover(NULL, w->store, 0);
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 0;
    ar_retention_report rep;
    w->rc[W_RETAIN] = ar_store_retain(&rep, w->store, &p);
    p.dry_run = 1;
    w->rc[W_DRY_RETAIN] = ar_store_retain(&rep, w->store, &p);
    *verdict = AR_RULE_DELETE;
    return 0;
}

static void test_a_rule_gets_estate_from_every_write_to_its_own_store_and_nothing_changes(void **state)
{
    fixture *f = *state;
    char *a = write_run(f->store, "a", AR_COMPLETED, f->now - 2 * DAY, f->now - 2 * DAY, 1);
    char *paused = write_run(f->store, "a", AR_BUDGET_EXHAUSTED, f->now - DAY, f->now - DAY, 1);
    ar_event e = AR_EVENT_INIT;
    e.agent = "a";
    e.type = "log";
    e.at = f->now - 10 * DAY;
    assert_int_equal(ar_event_append(NULL, f->store, &e), AR_OK);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "running";
    spec.user = "u";
    writer w;
    memset(&w, 0, sizeof w);
    w.store = f->store;
    w.paused = paused;
    assert_int_equal(ar_run_begin(&w.running, f->store, &spec), AR_OK);
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    assert_int_equal(ar_run_step(NULL, w.running, &step), AR_OK);
    contents before = contents_of(f->store);
    assert_false(ar_store_in_rule(f->store));

    ar_retention p = AR_RETENTION_INIT;
    p.rule = write_from_rule;
    p.rule_ud = &w;
    p.dry_run = 1;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(w.calls, 2);
    assert_true(w.in_rule);
    assert_false(ar_store_in_rule(f->store));
    for (int i = 0; i < W_COUNT; i++) {
        if (w.rc[i] != AR_ESTATE)
            print_error("write %d returned %d\n", i, w.rc[i]);
        assert_int_equal(w.rc[i], AR_ESTATE);
    }
    assert_non_null(strstr(ar_run_errmsg(w.running), "retention rule"));
    assert_int_equal(rep.considered, 2);
    assert_same_contents(before, contents_of(f->store));

    /* once the scan is over, the same writes work */
    assert_int_equal(ar_run_status(w.running), AR_RUNNING);
    int64_t seq = 0;
    assert_int_equal(ar_run_step(&seq, w.running, &step), AR_OK);
    assert_int_equal(seq, 2);
    assert_int_equal(ar_run_checkpoint(w.running, "{}", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(ar_event_append(NULL, f->store, &e), AR_OK);
    ar_run_close(w.running);
    ar_free(a);
    ar_free(paused);
}

typedef struct closer {
    ar_store *store;
    int calls;
} closer;

static int close_from_rule(void *ud, const ar_record *run, double age, int *verdict)
{
    closer *c = ud;
    (void)run;
    (void)age;
    c->calls++;
    ar_store_close(c->store);
    *verdict = AR_RULE_DELETE;
    return 0;
}

static void test_a_rule_that_closes_its_store_fails_retention_deletes_nothing_and_frees_it(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 3; i++)
        ar_free(write_run(f->store, "a", AR_COMPLETED, f->now - (i + 1) * DAY, f->now - (i + 1) * DAY, 2));
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "running";
    ar_run *running = NULL;
    assert_int_equal(ar_run_begin(&running, f->store, &spec), AR_OK);
    closer c = { f->store, 0 };
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 0;
    p.rule = close_from_rule;
    p.rule_ud = &c;
    ar_retention_report rep;
    assert_int_equal(ar_store_retain(&rep, f->store, &p), AR_ESTATE);
    f->store = NULL; /* freed by ar_store_retain: the teardown must not close it again */
    assert_int_equal(c.calls, 1);
    assert_int_equal(rep.deleted, 0);
    /* the close went through after the scan: its open run was let go of */
    assert_int_not_equal(ar_run_status(running), AR_RUNNING);
    assert_int_equal(ar_run_step(NULL, running, &(ar_step)AR_STEP_INIT), AR_ESTATE);
    ar_run_close(running);
    ar_open_opts o;
    ar_store *again = NULL;
    assert_int_equal(ar_store_open(&again, f->path, same_store(f, &o)), AR_OK);
    assert_int_equal(count_runs(again, "a"), 4);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, again), AR_OK);
    assert_int_equal(info.steps, 6);
    ar_store_close(again);
}

typedef struct dropper {
    ar_store *store;
    ar_run *run;
    ar_status during;
} dropper;

/* Closes a running run of its own store, then reads it back. */
static int close_run_from_rule(void *ud, const ar_record *run, double age, int *verdict)
{
    dropper *d = ud;
    (void)run;
    (void)age;
    (void)verdict;
    if (d->run) {
        char id[64];
        snprintf(id, sizeof id, "%s", ar_run_id(d->run));
        ar_run_close(d->run);
        d->run = NULL;
        ar_record *r = NULL;
        if (ar_store_get(&r, d->store, id, 0) != AR_OK)
            return 1;
        d->during = r->status;
        ar_record_free(r);
    }
    return 0;
}

static void test_a_running_run_closed_from_a_rule_is_finished_when_the_scan_ends(void **state)
{
    fixture *f = *state;
    ar_free(write_done(f->store, "a", f->now - DAY));
    ar_free(write_done(f->store, "a", f->now - 2 * DAY));
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "dropped";
    dropper d = { f->store, NULL, AR_COMPLETED };
    assert_int_equal(ar_run_begin(&d.run, f->store, &spec), AR_OK);
    char id[64];
    snprintf(id, sizeof id, "%s", ar_run_id(d.run));
    ar_retention p = AR_RETENTION_INIT;
    p.older_than = 0;
    p.rule = close_run_from_rule;
    p.rule_ud = &d;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(d.during, AR_RUNNING);
    /* finished after the scan, so neither considered nor deleted */
    assert_int_equal(rep.considered, 2);
    assert_int_equal(rep.deleted, 2);
    ar_record *r = NULL;
    assert_int_equal(ar_store_get(&r, f->store, id, 0), AR_OK);
    assert_int_equal(r->status, AR_FAILED);
    assert_string_equal(r->error, "run closed before it finished");
    ar_record_free(r);
}

typedef struct reader {
    ar_store *store;
    const char *steps_id;       /* a run with 3 steps */
    const char *checkpoint_id;  /* a running run with a checkpoint */
    int calls, ok;
} reader;

/* Reads its own store every way it can; ok stays 1 while every read works. */
static int read_from_rule(void *ud, const ar_record *run, double age, int *verdict)
{
    reader *rd = ud;
    (void)age;
    rd->calls++;
    ar_record *r = NULL;
    if (ar_store_get(&r, rd->store, run->id, 1) != AR_OK || strcmp(r->id, run->id) != 0)
        rd->ok = 0;
    ar_record_free(r);
    ar_step_iter *it = NULL;
    const ar_step *s = NULL;
    int64_t n = 0;
    if (ar_steps_open(&it, rd->store, rd->steps_id, 1, -1) != AR_OK)
        rd->ok = 0;
    while (it && ar_steps_next(&s, it) == AR_OK && s)
        n++;
    ar_steps_close(it);
    if (n != 3)
        rd->ok = 0;
    ar_record **list = NULL;
    size_t count = 0;
    ar_run_query q = AR_RUN_QUERY_INIT;
    if (ar_runs_list(&list, &count, NULL, rd->store, &q) != AR_OK || count != 3)
        rd->ok = 0;
    ar_records_free(list, count);
    ar_stats st;
    if (ar_runs_count(&n, rd->store, &q) != AR_OK || n != 3 || ar_runs_stats(&st, rd->store, &q) != AR_OK ||
        st.runs != 3)
        rd->ok = 0;
    char *state = NULL;
    int64_t seq = 0;
    if (ar_store_checkpoint(&state, &seq, rd->store, rd->checkpoint_id) != AR_OK || !state ||
        strcmp(state, "{\"at\":1}") != 0)
        rd->ok = 0;
    ar_free(state);
    ar_event_list *events = NULL;
    ar_event_query eq = AR_EVENT_QUERY_INIT;
    eq.agent = "a";
    if (ar_events_list(&events, NULL, rd->store, &eq) != AR_OK || events->n != 1)
        rd->ok = 0;
    ar_event_list_free(events);
    ar_store_info info;
    if (ar_store_info_get(&info, rd->store) != AR_OK || info.runs != 3)
        rd->ok = 0;
    *verdict = AR_RULE_KEEP;
    return 0;
}

static void test_a_rule_can_read_its_own_store(void **state)
{
    fixture *f = *state;
    char *id = write_run(f->store, "a", AR_COMPLETED, f->now - DAY, f->now - DAY, 3);
    ar_free(write_run(f->store, "b", AR_FAILED, f->now - DAY, f->now - DAY, 0));
    ar_event e = AR_EVENT_INIT;
    e.agent = "a";
    e.type = "log";
    assert_int_equal(ar_event_append(NULL, f->store, &e), AR_OK);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "g";
    ar_run *cp = NULL;
    assert_int_equal(ar_run_begin(&cp, f->store, &spec), AR_OK);
    assert_int_equal(ar_run_checkpoint(cp, "{\"at\":1}", AR_NUL_TERMINATED), AR_OK);
    reader rd = { f->store, id, ar_run_id(cp), 0, 1 };
    ar_retention p = AR_RETENTION_INIT;
    p.older_than = 0;
    p.rule = read_from_rule;
    p.rule_ud = &rd;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(rd.calls, 2);
    assert_true(rd.ok);
    assert_int_equal(rep.kept_by_rule, 2);
    assert_int_equal(rep.deleted, 0);
    ar_run_close(cp);
    ar_free(id);
}

typedef struct bystander {
    ar_store *other;            /* another store on the same file */
    int calls, write_rc;
} bystander;

/* Writes a finished run through another store on the same file each call. */
static int write_elsewhere(void *ud, const ar_record *run, double age, int *verdict)
{
    bystander *b = ud;
    (void)run;
    (void)age;
    b->calls++;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "meanwhile";
    ar_run *r = NULL;
    int rc = ar_run_begin(&r, b->other, &spec);
    if (rc == AR_OK)
        rc = ar_run_fail(NULL, r, "x");
    ar_run_close(r);
    if (rc)
        b->write_rc = rc;
    *verdict = AR_RULE_DELETE;
    return 0;
}

static void test_runs_finished_by_another_writer_during_the_scan_are_not_considered(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 3; i++)
        ar_free(write_done(f->store, "a", f->now - (i + 1) * DAY));
    bystander b = { NULL, 0, AR_OK };
    ar_open_opts o;
    assert_int_equal(ar_store_open(&b.other, f->path, same_store(f, &o)), AR_OK);
    ar_retention p = AR_RETENTION_INIT;
    p.rule = write_elsewhere;
    p.rule_ud = &b;
    ar_retention_report rep = retain_ok(f->store, &p);
    /* the other writer was never held up, and what it wrote was not scanned */
    assert_int_equal(b.write_rc, AR_OK);
    assert_int_equal(b.calls, 3);
    assert_int_equal(rep.considered, 3);
    assert_int_equal(rep.deleted, 3);
    assert_int_equal(count_runs(f->store, "a"), 3);
    ar_store_close(b.other);
}

/* ---- dry run, related rows, batches, size ------------------------------------ */

static void test_dry_run_reports_the_same_numbers_and_deletes_nothing(void **state)
{
    fixture *f = *state;
    char *ids[6];
    write_rule_fixture(f, ids);
    for (int i = 0; i < 5; i++)
        ar_free(write_run(f->store, "b", AR_COMPLETED, f->now - i * HOUR - DAY, f->now - i * HOUR, 2));
    rule_log log = RULE_LOG_INIT;
    ar_retention p = AR_RETENTION_INIT;
    p.older_than = 30 * 86400.0;
    p.keep_last = 3;
    p.rule = rule_by_goal;
    p.rule_ud = &log;
    p.dry_run = 1;
    ar_store_info before, after;
    assert_int_equal(ar_store_info_get(&before, f->store), AR_OK);
    ar_retention_report dry = retain_ok(f->store, &p);
    assert_int_equal(ar_store_info_get(&after, f->store), AR_OK);
    assert_int_equal(after.runs, before.runs);
    assert_int_equal(after.steps, before.steps);
    assert_int_equal(dry.dry_run, 1);
    assert_int_equal(dry.bytes_after, dry.bytes_before);

    p.dry_run = 0;
    ar_retention_report real = retain_ok(f->store, &p);
    assert_int_equal(real.dry_run, 0);
    assert_int_equal(dry.considered, 11);
    assert_int_equal(dry.deleted, 3 + 2);
    assert_int_equal(dry.steps_deleted, 3 + 4);
    assert_int_equal(real.considered, dry.considered);
    assert_int_equal(real.deleted, dry.deleted);
    assert_int_equal(real.kept_by_rule, dry.kept_by_rule);
    assert_int_equal(real.deleted_by_rule, dry.deleted_by_rule);
    assert_int_equal(real.steps_deleted, dry.steps_deleted);
    assert_int_equal(count_runs(f->store, NULL), 11 - 5);
    free_ids(ids, 6);
}

/* Runs a count query straight on the file; `?` (if any) is bound to `arg`. */
static int64_t file_count(const char *path, const char *sql, const char *arg)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (arg)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* A run of `agent` recorded step by step, with a checkpoint and two events naming it. */
static char *record_with_everything(ar_store *store, const char *agent, int steps)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = agent;
    spec.goal = "g";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    ar_step step = AR_STEP_INIT;
    step.kind = "tool";
    for (int i = 0; i < steps; i++)
        assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    assert_int_equal(ar_run_checkpoint(run, "{\"at\":1}", AR_NUL_TERMINATED), AR_OK);
    char *id = strdup(ar_run_id(run));
    assert_non_null(id);
    for (int i = 0; i < 2; i++) {
        ar_event e = AR_EVENT_INIT;
        e.agent = "ev";
        e.type = "log";
        e.run = id;
        assert_int_equal(ar_event_append(NULL, store, &e), AR_OK);
    }
    assert_int_equal(ar_run_complete(NULL, run, "null", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(run);
    return id;
}

static void test_deleted_runs_take_their_steps_checkpoint_and_events(void **state)
{
    fixture *f = *state;
    char *gone = record_with_everything(f->store, "a", 4);
    char *kept = record_with_everything(f->store, "a", 3);
    char *other = record_with_everything(f->store, "b", 2);
    ar_event free_event = AR_EVENT_INIT;
    free_event.agent = "ev";
    free_event.type = "log";
    assert_int_equal(ar_event_append(NULL, f->store, &free_event), AR_OK);
    assert_int_equal(file_count(f->path, "SELECT count(*) FROM checkpoints", NULL), 3);

    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 1;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(rep.deleted, 1);
    assert_int_equal(rep.steps_deleted, 4);
    assert_false(exists(f->store, gone));
    assert_int_equal(file_count(f->path, "SELECT count(*) FROM events WHERE run = ?", gone), 0);
    assert_int_equal(file_count(f->path, "SELECT count(*) FROM events WHERE run = ?", kept), 2);
    assert_int_equal(file_count(f->path, "SELECT count(*) FROM events WHERE run = ?", other), 2);
    assert_int_equal(file_count(f->path, "SELECT count(*) FROM events WHERE run IS NULL", NULL), 1);
    /* nothing is left that points at a run which is gone */
    assert_int_equal(file_count(f->path, "SELECT count(*) FROM steps WHERE run NOT IN (SELECT n FROM runs)", NULL), 0);
    assert_int_equal(file_count(f->path, "SELECT count(*) FROM checkpoints WHERE run NOT IN (SELECT n FROM runs)", NULL), 0);
    assert_int_equal(file_count(f->path, "SELECT count(*) FROM checkpoints", NULL), 2);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, f->store), AR_OK);
    assert_int_equal(info.runs, 2);
    assert_int_equal(info.steps, 3 + 2);
    assert_int_equal(info.events, 2 + 2 + 1);
    char *state_json = NULL;
    int64_t seq = 0;
    assert_int_equal(ar_store_checkpoint(&state_json, &seq, f->store, kept), AR_OK);
    assert_string_equal(state_json, "{\"at\":1}");
    assert_int_equal(seq, 3);
    ar_free(state_json);
    free(gone);
    free(kept);
    free(other);
}

static void test_deletion_spans_many_batches(void **state)
{
    fixture *f = *state;
    /* 1,203 small runs (three batches by count) and 30 long runs (batches by steps) */
    for (int i = 0; i < 1203; i++)
        ar_free(write_done(f->store, "many", f->now - DAY - i));
    for (int i = 0; i < 30; i++)
        ar_free(write_run(f->store, "long", AR_COMPLETED, f->now - DAY - i, f->now - DAY, 1000));
    ar_free(write_done(f->store, "many", f->now));
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 1;
    p.dry_run = 1;
    ar_retention_report dry = retain_ok(f->store, &p);
    assert_int_equal(dry.deleted, 1203 + 29);
    assert_int_equal(dry.steps_deleted, 29 * 1000);
    p.dry_run = 0;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(rep.considered, 1234);
    assert_int_equal(rep.deleted, 1203 + 29);
    assert_int_equal(rep.steps_deleted, 29 * 1000);
    assert_int_equal(count_runs(f->store, "many"), 1);
    assert_int_equal(count_runs(f->store, "long"), 1);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, f->store), AR_OK);
    assert_int_equal(info.steps, 1000);
}

static void test_vacuum_gives_freed_space_back_to_the_file_system(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 200; i++)
        ar_free(write_run_sized(f->store, "a", "g", AR_COMPLETED, f->now - DAY - i, f->now - DAY, 4, 2000));
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 5;
    p.vacuum = 1;
    ar_retention_report rep = retain_ok(f->store, &p);
    assert_int_equal(rep.deleted, 195);
    assert_int_equal(rep.steps_deleted, 195 * 4);
    assert_true(rep.bytes_before > 200 * 4 * 2000);
    assert_true(rep.bytes_after < rep.bytes_before / 4);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, f->store), AR_OK);
    assert_int_equal(info.file_bytes + info.wal_bytes, rep.bytes_after);
    assert_int_equal(info.runs, 5);
}

static void test_memory_store_is_measured_by_its_pages(void **state)
{
    (void)state;
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, ":memory:", NULL), AR_OK);
    int64_t now = now_ms();
    for (int i = 0; i < 20; i++)
        ar_free(write_run_sized(store, "a", "g", AR_COMPLETED, now - DAY - i, now - DAY, 2, 4000));
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 0;
    p.vacuum = 1;
    ar_retention_report rep = retain_ok(store, &p);
    assert_int_equal(rep.deleted, 20);
    assert_true(rep.bytes_before >= 20 * 2 * 4000);
    assert_true(rep.bytes_after > 0);
    assert_true(rep.bytes_after < rep.bytes_before);
    ar_store_close(store);
}

static void test_read_only_store_can_only_report(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 3; i++)
        ar_free(write_done(f->store, "a", f->now - DAY - i));
    ar_open_opts opts;
    same_store(f, &opts);
    opts.readonly = 1;
    ar_store *ro = NULL;
    assert_int_equal(ar_store_open(&ro, f->path, &opts), AR_OK);
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 1;
    ar_retention_report rep;
    assert_int_equal(ar_store_retain(&rep, ro, &p), AR_EPERM);
    assert_non_null(strstr(ar_store_errmsg(ro), "read-only"));
    p.dry_run = 1;
    rep = retain_ok(ro, &p);
    assert_int_equal(rep.deleted, 2);
    ar_store_close(ro);
    assert_int_equal(count_runs(f->store, NULL), 3);
}

static void test_bad_policies_are_misuse_and_change_nothing(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 3; i++)
        ar_free(write_done(f->store, "a", f->now - 90 * DAY - i));
    ar_retention_report rep;
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 0;

    p.older_than = NAN;
    assert_int_equal(ar_store_retain(&rep, f->store, &p), AR_EMISUSE);
    assert_non_null(strstr(ar_store_errmsg(f->store), "older_than"));
    p.older_than = INFINITY;
    assert_int_equal(ar_store_retain(&rep, f->store, &p), AR_EMISUSE);
    p.older_than = -1;

    const ar_status unknown[] = { AR_COMPLETED, (ar_status)9 };
    p.status = unknown;
    p.n_status = 2;
    assert_int_equal(ar_store_retain(&rep, f->store, &p), AR_EMISUSE);
    assert_non_null(strstr(ar_store_errmsg(f->store), "unknown status 9"));
    const ar_status negative[] = { (ar_status)-1 };
    p.status = negative;
    p.n_status = 1;
    assert_int_equal(ar_store_retain(&rep, f->store, &p), AR_EMISUSE);
    const ar_status running[] = { AR_FAILED, AR_RUNNING };
    p.status = running;
    p.n_status = 2;
    assert_int_equal(ar_store_retain(&rep, f->store, &p), AR_EMISUSE);
    assert_non_null(strstr(ar_store_errmsg(f->store), "running"));
    p.status = NULL;
    assert_int_equal(ar_store_retain(&rep, f->store, &p), AR_EMISUSE);
    p.n_status = 0;

    assert_int_equal(ar_store_retain(&rep, f->store, NULL), AR_EMISUSE);
    assert_int_equal(ar_store_retain(NULL, f->store, &p), AR_EMISUSE);
    assert_int_equal(ar_store_retain(&rep, NULL, &p), AR_EMISUSE);
    assert_int_equal(count_runs(f->store, NULL), 3);
}

/* ---- allocation failures ------------------------------------------------------ */

typedef struct failing {
    long armed;     /* allocations left before the failure; < 0: never fail */
    int failed;
} failing;

static void *fail_malloc(void *ud, size_t n)
{
    failing *fl = ud;
    if (fl->armed == 0) {
        fl->failed = 1;
        return NULL;
    }
    if (fl->armed > 0)
        fl->armed--;
    return malloc(n);
}

static void *fail_realloc(void *ud, void *p, size_t n)
{
    failing *fl = ud;
    if (fl->armed == 0) {
        fl->failed = 1;
        return NULL;
    }
    if (fl->armed > 0)
        fl->armed--;
    return realloc(p, n);
}

static void fail_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

static int undecided_rule(void *ud, const ar_record *run, double age, int *verdict)
{
    (void)age;
    (void)run;
    ++*(int *)ud;
    *verdict = AR_RULE_UNDECIDED;
    return 0;
}

static void test_every_failed_allocation_fails_cleanly_and_deletes_nothing(void **state)
{
    fixture *f = *state;
    failing fl = { -1, 0 };
    ar_allocator a = { fail_malloc, fail_realloc, fail_free, &fl };
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    opts.allocator = &a;
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, f->path, &opts), AR_OK);
    /* 300 runs grow the plan; counters on a few make their decoding allocate too */
    ar_counter extra = { "cache_read_tokens", 5 };
    for (int i = 0; i < 300; i++) {
        ar_step s = AR_STEP_INIT;
        s.kind = "llm";
        s.usage.n_extra = i < 3;
        s.usage.extra = &extra;
        ar_record r = AR_RECORD_INIT;
        r.agent = "a";
        r.goal = "g";
        r.status = AR_COMPLETED;
        r.created_at = f->now - DAY - i;
        r.finished_at = f->now - DAY;
        r.steps = &s;
        r.n_steps = 1;
        char *id = NULL;
        assert_int_equal(ar_store_write(&id, store, &r), AR_OK);
        ar_free(id);
    }
    int calls = 0;
    ar_retention p = AR_RETENTION_INIT;
    p.keep_last = 1;
    p.rule = undecided_rule;
    p.rule_ud = &calls;
    int rc = AR_ENOMEM;
    long n;
    for (n = 0; rc != AR_OK; n++) {
        ar_retention_report rep;
        fl.armed = n;
        fl.failed = 0;
        rc = ar_store_retain(&rep, store, &p);
        fl.armed = -1;
        if (rc) {
            assert_int_equal(rc, AR_ENOMEM);
            assert_int_equal(fl.failed, 1);
            assert_int_equal(rep.deleted, 0);
            assert_int_equal(count_runs(store, "a"), 300);
        } else {
            assert_int_equal(rep.deleted, 299);
        }
        assert_true(n < 100000);
    }
    assert_true(n > 3);
    assert_int_equal(count_runs(store, "a"), 1);
    ar_store_close(store);
}

static const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    T(test_older_than_deletes_runs_finished_longer_ago),
    T(test_keep_last_keeps_newest_by_created_at_per_agent),
    T(test_keep_last_breaks_created_at_ties_by_later_id),
    T(test_keep_last_leaves_exactly_that_many_per_agent),
    T(test_keep_last_zero_deletes_every_considered_run),
    T(test_older_than_or_keep_last_deletes_either),
    T(test_no_criteria_and_no_rule_delete_nothing),
    T(test_status_filter_limits_considered_and_ranked_runs),
    T(test_running_runs_are_never_considered_ranked_or_deleted),
    T(test_rule_keep_overrides_criteria_and_delete_acts_regardless),
    T(test_rule_gets_record_without_steps_and_age_since_finished),
    T(test_rule_undecided_leaves_it_to_the_criteria),
    T(test_rule_error_stops_with_ecallback_after_every_call_and_deletes_nothing),
    T(test_retention_from_inside_a_rule_is_refused),
    T(test_run_resumed_after_the_scan_is_not_deleted),
    T(test_a_rule_gets_estate_from_every_write_to_its_own_store_and_nothing_changes),
    T(test_a_rule_that_closes_its_store_fails_retention_deletes_nothing_and_frees_it),
    T(test_a_running_run_closed_from_a_rule_is_finished_when_the_scan_ends),
    T(test_a_rule_can_read_its_own_store),
    T(test_runs_finished_by_another_writer_during_the_scan_are_not_considered),
    T(test_dry_run_reports_the_same_numbers_and_deletes_nothing),
    T(test_deletion_spans_many_batches),
    T(test_read_only_store_can_only_report),
    T(test_bad_policies_are_misuse_and_change_nothing),
#undef T
};

/* Tests about SQLite files and SQLite itself (groups.def: SQLite only). */
static const struct CMUnitTest file_tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    T(test_vacuum_gives_freed_space_back_to_the_file_system),
    cmocka_unit_test(test_memory_store_is_measured_by_its_pages),
    T(test_every_failed_allocation_fails_cleanly_and_deletes_nothing),
    T(test_deleted_runs_take_their_steps_checkpoint_and_events),
#undef T
};

TEST_GROUP(retain_group, "retain", tests);
TEST_GROUP(retain_file_group, "retain_file", file_tests);
