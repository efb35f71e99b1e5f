/* test_concurrency.c -- several processes recording into one file at once; stores in two threads stay independent. */
#include "suite.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "agentrun.h"

#define WORKERS 4
#define RUNS_PER_WORKER 50
#define STEPS_PER_RUN 5

/* Step k (1-based) of run r of worker w: its content and usage are a
 * function of (w, r, k), so every row can be checked exactly afterwards. */
static void step_fill(ar_step *s, char *buf, size_t cap, ar_counter *extra, int w, int r, int k)
{
    snprintf(buf, cap, "{\"worker\":%d,\"run\":%d,\"step\":%d}", w, r, k);
    *s = (ar_step)AR_STEP_INIT;
    s->kind = k == STEPS_PER_RUN ? "message" : "llm";
    s->content = buf;
    s->usage.input_tokens = k;
    s->usage.output_tokens = 1;
    s->usage.cost = 0.000001 * k;
    extra->name = "cache_read_tokens";
    extra->value = w + 1;
    s->usage.n_extra = 1;
    s->usage.extra = extra;
}

/* One worker process: waits for the start signal (its end of `go` closing),
 * then opens the store at `path` with opts and records RUNS_PER_WORKER
 * complete runs. Returns 0 when every call
 * returned AR_OK, otherwise prints the failure and returns 1. */
static int worker(const char *path, const ar_open_opts *opts, int w, int go)
{
    char c;
    while (read(go, &c, 1) < 0 && errno == EINTR)
        ;
    close(go);
    ar_store *store = NULL;
    if (ar_store_open(&store, path, opts) != AR_OK) {
        fprintf(stderr, "worker %d: open: %s\n", w, ar_store_errmsg(store));
        return 1;
    }
    char agent[32];
    snprintf(agent, sizeof agent, "worker-%d", w);
    for (int r = 0; r < RUNS_PER_WORKER; r++) {
        char goal[32];
        snprintf(goal, sizeof goal, "run %d", r);
        ar_run_spec spec = AR_RUN_SPEC_INIT;
        spec.agent = agent;
        spec.goal = goal;
        ar_run *run = NULL;
        if (ar_run_begin(&run, store, &spec) != AR_OK) {
            fprintf(stderr, "worker %d run %d: begin: %s\n", w, r, ar_store_errmsg(store));
            return 1;
        }
        for (int k = 1; k <= STEPS_PER_RUN; k++) {
            char buf[96];
            ar_counter extra;
            ar_step s;
            step_fill(&s, buf, sizeof buf, &extra, w, r, k);
            int64_t seq = 0;
            if (ar_run_step(&seq, run, &s) != AR_OK || seq != k) {
                fprintf(stderr, "worker %d run %d step %d: %s\n", w, r, k, ar_run_errmsg(run));
                return 1;
            }
        }
        if (ar_run_complete(NULL, run, "\"ok\"", AR_NUL_TERMINATED) != AR_OK) {
            fprintf(stderr, "worker %d run %d: complete: %s\n", w, r, ar_run_errmsg(run));
            return 1;
        }
        ar_run_close(run);
    }
    ar_store_close(store);
    return 0;
}

static void expect_integrity_ok(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Checks one worker's runs: RUNS_PER_WORKER of them, each completed with
 * exactly its own steps and totals. */
static void expect_worker_runs(ar_store *store, int w)
{
    char agent[32];
    snprintf(agent, sizeof agent, "worker-%d", w);
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.agent = agent;
    q.limit = 1000;
    q.order = AR_ORDER_ASC;
    ar_record **list = NULL;
    size_t n = 0;
    assert_int_equal(ar_runs_list(&list, &n, NULL, store, &q), AR_OK);
    assert_int_equal(n, RUNS_PER_WORKER);
    for (size_t i = 0; i < n; i++) {
        /* one process begins its runs one after another: ids keep that order */
        char goal[32];
        snprintf(goal, sizeof goal, "run %zu", i);
        assert_string_equal(list[i]->goal, goal);
        ar_record *r = NULL;
        assert_int_equal(ar_store_get(&r, store, list[i]->id, 1), AR_OK);
        assert_int_equal(r->status, AR_COMPLETED);
        assert_string_equal(r->output, "\"ok\"");
        assert_int_equal(r->iterations, STEPS_PER_RUN);
        assert_int_equal(r->n_steps, STEPS_PER_RUN);
        assert_int_equal(r->usage.input_tokens, STEPS_PER_RUN * (STEPS_PER_RUN + 1) / 2);
        assert_int_equal(r->usage.output_tokens, STEPS_PER_RUN);
        assert_int_equal(r->usage.n_extra, 1);
        assert_int_equal(r->usage.extra[0].value, STEPS_PER_RUN * (w + 1));
        for (int k = 1; k <= STEPS_PER_RUN; k++) {
            char buf[96];
            ar_counter extra;
            ar_step want;
            step_fill(&want, buf, sizeof buf, &extra, w, (int)i, k);
            const ar_step *s = &r->steps[k - 1];
            assert_int_equal(s->seq, k);
            assert_string_equal(s->kind, want.kind);
            assert_string_equal(s->content, buf);
            assert_int_equal(s->usage.input_tokens, k);
        }
        ar_record_free(r);
    }
    ar_records_free(list, n);
}

static void test_four_processes_recording_into_one_new_store_all_succeed_and_counts_add_up(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    char *path = test_location(&opts);
    /* writers wait for each other's durable commits: on a loaded machine
     * (sanitizers, other jobs) the default 5 s can pass, which is not what
     * this test is about */
    opts.busy_timeout_ms = 60000;
    int go[2];
    assert_int_equal(pipe(go), 0);
    fflush(NULL);
    pid_t pids[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            close(go[1]);
            int code = worker(path, &opts, w, go[0]);
            /* the child's copy too, for a leak checker watching it exit */
            free(path);
            _exit(code);
        }
    }
    /* all workers start at once, on a store (file or schema) none of them has created yet */
    close(go[0]);
    close(go[1]);
    int failed = 0;
    for (int w = 0; w < WORKERS; w++) {
        int status = 0;
        while (waitpid(pids[w], &status, 0) < 0)
            assert_int_equal(errno, EINTR);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            print_error("worker %d ended with status %d\n", w, status);
            failed = 1;
        }
    }
    assert_false(failed);

    if (test_backend_current() == TEST_SQLITE)
        expect_integrity_ok(path);
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, path, &opts), AR_OK);
    ar_run_query q = AR_RUN_QUERY_INIT;
    ar_stats st;
    assert_int_equal(ar_runs_stats(&st, store, &q), AR_OK);
    const int64_t runs = WORKERS * RUNS_PER_WORKER;
    assert_int_equal(st.runs, runs);
    assert_int_equal(st.by_status[AR_COMPLETED], runs);
    assert_int_equal(st.by_status[AR_RUNNING], 0);
    assert_int_equal(st.iterations, runs * STEPS_PER_RUN);
    assert_int_equal(st.input_tokens, runs * STEPS_PER_RUN * (STEPS_PER_RUN + 1) / 2);
    assert_int_equal(st.output_tokens, runs * STEPS_PER_RUN);
    assert_true(st.cost == (double)(runs * STEPS_PER_RUN * (STEPS_PER_RUN + 1) / 2) / 1e6);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.runs, runs);
    assert_int_equal(info.steps, runs * STEPS_PER_RUN);
    for (int w = 0; w < WORKERS; w++)
        expect_worker_runs(store, w);
    ar_store_close(store);
    free(path);
}

/* ---- two stores in two threads ------------------------------------------ */

/* A per-store allocator that counts its live blocks: each thread's store
 * must use only its own. Not shared between threads, so no locking. */
typedef struct counting {
    long live, total;
} counting;

static void *count_malloc(void *ud, size_t n)
{
    counting *c = ud;
    void *p = malloc(n);
    if (p) {
        c->live++;
        c->total++;
    }
    return p;
}

static void *count_realloc(void *ud, void *p, size_t n)
{
    counting *c = ud;
    void *q = realloc(p, n);
    if (q && !p) {
        c->live++;
        c->total++;
    }
    return q;
}

static void count_free(void *ud, void *p)
{
    counting *c = ud;
    if (p)
        c->live--;
    free(p);
}

#define THREAD_RUNS 20

typedef struct thread_job {
    const char *path;
    ar_open_opts opts;          /* open the store at path with these */
    const char *agent;
    int fail_on_purpose;    /* makes a failing call after every run */
    counting mem;
    ar_allocator alloc;
    char failure[512];      /* "" when every call did what it should */
    int64_t last_errcode;
} thread_job;

/* Records THREAD_RUNS runs into its own store; a thread cannot use cmocka's
 * asserts, so the first unexpected result is written to job->failure. */
static void *thread_record(void *arg)
{
    thread_job *job = arg;
    ar_open_opts opts = job->opts;
    opts.allocator = &job->alloc;
    ar_store *store = NULL;
    int rc = ar_store_open(&store, job->path, &opts);
    if (rc != AR_OK) {
        snprintf(job->failure, sizeof job->failure, "open: %s", ar_store_errmsg(store));
        ar_store_close(store);
        return NULL;
    }
    for (int r = 0; r < THREAD_RUNS && !job->failure[0]; r++) {
        ar_run_spec spec = AR_RUN_SPEC_INIT;
        spec.agent = job->agent;
        spec.goal = "thread";
        ar_run *run = NULL;
        if ((rc = ar_run_begin(&run, store, &spec)) != AR_OK) {
            snprintf(job->failure, sizeof job->failure, "begin: %s", ar_store_errmsg(store));
            break;
        }
        for (int k = 1; k <= STEPS_PER_RUN && !job->failure[0]; k++) {
            char buf[96];
            ar_counter extra;
            ar_step s;
            step_fill(&s, buf, sizeof buf, &extra, r, r, k);
            int64_t seq = 0;
            if (ar_run_step(&seq, run, &s) != AR_OK || seq != k)
                snprintf(job->failure, sizeof job->failure, "step: %s", ar_run_errmsg(run));
        }
        if (!job->failure[0] && ar_run_complete(NULL, run, "1", AR_NUL_TERMINATED) != AR_OK)
            snprintf(job->failure, sizeof job->failure, "complete: %s", ar_run_errmsg(run));
        ar_run_close(run);
        if (job->fail_on_purpose) {
            ar_record *none = NULL;
            if (ar_store_get(&none, store, "00000000000000000000000000", 0) != AR_ENOTFOUND)
                snprintf(job->failure, sizeof job->failure, "get of a missing run did not fail");
        }
    }
    job->last_errcode = ar_store_errcode(store);
    ar_store_close(store);
    return NULL;
}

static void test_two_threads_with_their_own_stores_record_independently(void **state)
{
    (void)state;
    thread_job jobs[2];
    memset(jobs, 0, sizeof jobs);
    char *paths[2];
    for (int t = 0; t < 2; t++) {
        jobs[t].opts = (ar_open_opts)AR_OPEN_OPTS_INIT;
        paths[t] = test_location(&jobs[t].opts);
    }
    const char *agents[2] = { "thread-a", "thread-b" };
    for (int t = 0; t < 2; t++) {
        jobs[t].path = paths[t];
        jobs[t].agent = agents[t];
        jobs[t].fail_on_purpose = t == 0;
        jobs[t].alloc = (ar_allocator){ count_malloc, count_realloc, count_free, &jobs[t].mem };
    }
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        assert_int_equal(pthread_create(&th[t], NULL, thread_record, &jobs[t]), 0);
    for (int t = 0; t < 2; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    for (int t = 0; t < 2; t++) {
        if (jobs[t].failure[0])
            fail_msg("thread %d: %s", t, jobs[t].failure);
        assert_true(jobs[t].mem.total > 0);
        assert_int_equal(jobs[t].mem.live, 0);
    }
    /* the error of one store is not seen by the other */
    assert_int_equal(jobs[0].last_errcode, AR_ENOTFOUND);
    assert_int_equal(jobs[1].last_errcode, AR_OK);

    for (int t = 0; t < 2; t++) {
        ar_store *store = NULL;
        assert_int_equal(ar_store_open(&store, paths[t], &jobs[t].opts), AR_OK);
        ar_run_query q = AR_RUN_QUERY_INIT;
        int64_t n = -1;
        assert_int_equal(ar_runs_count(&n, store, &q), AR_OK);
        assert_int_equal(n, THREAD_RUNS);
        q.agent = agents[t];
        assert_int_equal(ar_runs_count(&n, store, &q), AR_OK);
        assert_int_equal(n, THREAD_RUNS);
        ar_stats st;
        assert_int_equal(ar_runs_stats(&st, store, &q), AR_OK);
        assert_int_equal(st.by_status[AR_COMPLETED], THREAD_RUNS);
        assert_int_equal(st.iterations, THREAD_RUNS * STEPS_PER_RUN);
        ar_store_close(store);
        free(paths[t]);
    }
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_four_processes_recording_into_one_new_store_all_succeed_and_counts_add_up),
    cmocka_unit_test(test_two_threads_with_their_own_stores_record_independently),
};

TEST_GROUP(concurrency_group, "concurrency", tests);
