/* test_contention.c -- eight writers, a retention process and a reader on one file at once: nothing lost, counts add up. */
#include "suite.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "agentrun.h"

#define WRITERS 8
#define RUNS 500            /* per writer */
#define STEPS 3             /* per run */
#define FAIL_EVERY 10       /* every 10th run of a writer ends failed; retention deletes those */
#define JUNK_RUNS 200       /* failed runs already in the file when the writers start */
#define JUNK_STEPS 2
#define TIMEOUT_MS 5000

/* What a child process reports back, in one write to its pipe. */
typedef struct outcome {
    char failure[400];      /* "" when every call did what it should */
    long calls, ebusy;
    long deleted, steps_deleted, retain_calls;
    long reads;
} outcome;

static long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

/* Accounts one call that took from `t0` until now: AR_OK passes; AR_EBUSY
 * passes (to be retried) only when the busy timeout had run out; anything
 * else is a failure. Returns 1 when the call must be retried. */
static int busy_retry(outcome *o, int rc, long t0, const char *what, const char *msg)
{
    long waited = now_us() - t0;
    o->calls++;
    if (rc == AR_OK)
        return 0;
    if (rc == AR_EBUSY && waited >= (TIMEOUT_MS - 1) * 1000L) {
        o->ebusy++;
        return 1;
    }
    if (!o->failure[0])
        snprintf(o->failure, sizeof o->failure, "%s: %s after %ld ms: %s", what, ar_code_name(rc),
                 waited / 1000, msg);
    return 0;
}

static void step_text(char *buf, size_t cap, int w, int r, int k)
{
    snprintf(buf, cap, "{\"w\":%d,\"r\":%d,\"k\":%d}", w, r, k);
}

static void wait_for_go(int go)
{
    char c;
    while (read(go, &c, 1) < 0 && errno == EINTR)
        ;
    close(go);
}

static void report_and_exit(int fd, const outcome *o)
{
    ssize_t n = write(fd, o, sizeof *o);
    _exit(n == (ssize_t)sizeof *o ? 0 : 3);
}

static ar_store *child_open(const char *path, outcome *o)
{
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    opts.busy_timeout_ms = TIMEOUT_MS;
    ar_store *store = NULL;
    int rc;
    long t0;
    do {
        ar_store_close(store);
        store = NULL;
        t0 = now_us();
        rc = ar_store_open(&store, path, &opts);
    } while (busy_retry(o, rc, t0, "open", ar_store_errmsg(store)));
    if (rc != AR_OK) {
        ar_store_close(store);
        return NULL;
    }
    return store;
}

/* Writer w: RUNS runs of STEPS steps, every FAIL_EVERY-th ending failed,
 * the others completed. A call that meets EBUSY (after the timeout) is
 * retried, as a caller would: each acknowledged step must then be there once. */
static void writer(const char *path, int w, int go, int out)
{
    outcome o;
    memset(&o, 0, sizeof o);
    wait_for_go(go);
    ar_store *store = child_open(path, &o);
    char agent[32];
    snprintf(agent, sizeof agent, "writer-%d", w);
    for (int r = 0; store && r < RUNS && !o.failure[0]; r++) {
        char goal[32];
        snprintf(goal, sizeof goal, "run %03d", r);
        ar_run_spec spec = AR_RUN_SPEC_INIT;
        spec.agent = agent;
        spec.goal = goal;
        ar_run *run = NULL;
        long t0;
        int rc;
        do {
            t0 = now_us();
            rc = ar_run_begin(&run, store, &spec);
        } while (busy_retry(&o, rc, t0, "begin", ar_store_errmsg(store)));
        for (int k = 1; run && k <= STEPS && !o.failure[0]; k++) {
            char content[96];
            step_text(content, sizeof content, w, r, k);
            ar_step s = AR_STEP_INIT;
            s.kind = "llm";
            s.content = content;
            s.usage.input_tokens = k;
            s.usage.output_tokens = 1;
            int64_t seq = 0;
            do {
                t0 = now_us();
                rc = ar_run_step(&seq, run, &s);
            } while (busy_retry(&o, rc, t0, "step", ar_run_errmsg(run)));
            if (rc == AR_OK && seq != k && !o.failure[0])
                snprintf(o.failure, sizeof o.failure, "step %d of run %d got seq %lld", k, r, (long long)seq);
        }
        while (run && !o.failure[0]) {
            t0 = now_us();
            rc = (r + 1) % FAIL_EVERY == 0 ? ar_run_fail(NULL, run, "planned failure")
                                            : ar_run_complete(NULL, run, "\"ok\"", AR_NUL_TERMINATED);
            if (!busy_retry(&o, rc, t0, "finish", ar_run_errmsg(run)))
                break;
        }
        ar_run_close(run);
    }
    ar_store_close(store);
    report_and_exit(out, &o);
}

/* 1 once the parent has closed the stop pipe. */
static int stopped(int stop)
{
    struct pollfd p = { stop, POLLIN, 0 };
    return poll(&p, 1, 0) > 0;
}

static int delete_all(void *ud, const ar_record *run, double age, int *verdict)
{
    (void)ud;
    (void)run;
    (void)age;
    *verdict = AR_RULE_DELETE;
    return 0;
}

/* Retention: deletes every failed run (through a rule), over and over while
 * the writers write, then once more after they are done. */
static void retainer(const char *path, int go, int stop, int out)
{
    outcome o;
    memset(&o, 0, sizeof o);
    wait_for_go(go);
    ar_store *store = child_open(path, &o);
    ar_status failed = AR_FAILED;
    for (int last = 0; store && !o.failure[0];) {
        ar_retention policy = AR_RETENTION_INIT;
        policy.status = &failed;
        policy.n_status = 1;
        policy.rule = delete_all;
        ar_retention_report report;
        long t0 = now_us();
        int rc = ar_store_retain(&report, store, &policy);
        if (busy_retry(&o, rc, t0, "retain", ar_store_errmsg(store)))
            continue;
        o.retain_calls++;
        o.deleted += report.deleted;
        o.steps_deleted += report.steps_deleted;
        if (report.deleted != report.deleted_by_rule && !o.failure[0])
            snprintf(o.failure, sizeof o.failure, "retain deleted %lld runs, the rule %lld",
                     (long long)report.deleted, (long long)report.deleted_by_rule);
        if (last)
            break;
        last = stopped(stop);
        if (!last)
            usleep(20000);
    }
    ar_store_close(store);
    report_and_exit(out, &o);
}

/* Reads while the others write: completed runs never go away and always
 * hold all their steps; a writer's runs page in order without repeats. */
static void reader(const char *path, int go, int stop, int out)
{
    outcome o;
    memset(&o, 0, sizeof o);
    wait_for_go(go);
    ar_store *store = child_open(path, &o);
    int64_t completed_before = 0;
    for (int round = 0; store && !o.failure[0] && !stopped(stop); round++) {
        ar_status done = AR_COMPLETED;
        ar_run_query q = AR_RUN_QUERY_INIT;
        q.status = &done;
        q.n_status = 1;
        int64_t completed = -1;
        long t0 = now_us();
        int rc = ar_runs_count(&completed, store, &q);
        if (busy_retry(&o, rc, t0, "count", ar_store_errmsg(store)) || rc != AR_OK)
            continue;
        o.reads++;
        if (completed < completed_before) {
            snprintf(o.failure, sizeof o.failure, "completed runs went from %lld to %lld",
                     (long long)completed_before, (long long)completed);
            break;
        }
        completed_before = completed;

        /* the newest completed runs, each whole */
        ar_record **list = NULL;
        size_t n = 0;
        q.limit = 10;
        if ((rc = ar_runs_list(&list, &n, NULL, store, &q)) != AR_OK) {
            busy_retry(&o, rc, t0, "list", ar_store_errmsg(store));
            continue;
        }
        for (size_t i = 0; i < n && !o.failure[0]; i++) {
            ar_record *r = NULL;
            rc = ar_store_get(&r, store, list[i]->id, 1);
            o.reads++;
            if (rc != AR_OK || r->n_steps != STEPS || r->iterations != STEPS || r->status != AR_COMPLETED)
                snprintf(o.failure, sizeof o.failure, "completed run %s read back as %s with %zu steps",
                         list[i]->id, ar_code_name(rc), r ? r->n_steps : 0);
            ar_record_free(r);
        }
        ar_records_free(list, n);

        /* one writer's runs, page by page in ascending order */
        char agent[32];
        snprintf(agent, sizeof agent, "writer-%d", round % WRITERS);
        ar_run_query pq = AR_RUN_QUERY_INIT;
        pq.agent = agent;
        pq.order = AR_ORDER_ASC;
        pq.limit = 64;
        char *cursor = NULL;
        char last_goal[32] = "";
        do {
            pq.after = cursor;
            char *next = NULL;
            rc = ar_runs_list(&list, &n, &next, store, &pq);
            ar_free(cursor);
            cursor = next;
            o.reads++;
            if (rc != AR_OK) {
                busy_retry(&o, rc, t0, "page", ar_store_errmsg(store));
                break;
            }
            for (size_t i = 0; i < n && !o.failure[0]; i++) {
                if (strcmp(list[i]->goal, last_goal) <= 0)
                    snprintf(o.failure, sizeof o.failure, "%s: \"%s\" came after \"%s\"", agent,
                             list[i]->goal, last_goal);
                snprintf(last_goal, sizeof last_goal, "%s", list[i]->goal);
            }
            ar_records_free(list, n);
        } while (cursor && !o.failure[0]);
        ar_free(cursor);
    }
    ar_store_close(store);
    report_and_exit(out, &o);
}

static void seed_junk(const char *path)
{
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, path, NULL), AR_OK);
    for (int j = 0; j < JUNK_RUNS; j++) {
        ar_step steps[JUNK_STEPS] = { AR_STEP_INIT, AR_STEP_INIT };
        for (int k = 0; k < JUNK_STEPS; k++)
            steps[k].kind = "llm";
        ar_record fields = AR_RECORD_INIT;
        fields.agent = "junk";
        fields.goal = "old";
        fields.steps = steps;
        fields.n_steps = JUNK_STEPS;
        ar_record *rec = NULL;
        assert_int_equal(ar_record_failed(&rec, &fields, "old failure", NULL, 0), AR_OK);
        char *id = NULL;
        assert_int_equal(ar_store_write(&id, store, rec), AR_OK);
        ar_free(id);
        ar_record_free(rec);
    }
    ar_store_close(store);
}

static void read_outcome(int fd, outcome *o, const char *who)
{
    memset(o, 0, sizeof *o);
    ssize_t n, got = 0;
    while (got < (ssize_t)sizeof *o && (n = read(fd, (char *)o + got, sizeof *o - (size_t)got)) != 0) {
        if (n < 0) {
            assert_int_equal(errno, EINTR);
            continue;
        }
        got += n;
    }
    close(fd);
    if (got != (ssize_t)sizeof *o)
        snprintf(o->failure, sizeof o->failure, "%s reported nothing (it died)", who);
}

static void reap(pid_t pid, const char *who)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        print_error("%s ended with status %d\n", who, status);
        fail();
    }
}

static void expect_writer_runs(ar_store *store, int w)
{
    char agent[32];
    snprintf(agent, sizeof agent, "writer-%d", w);
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.agent = agent;
    q.order = AR_ORDER_ASC;
    q.limit = RUNS;
    ar_record **list = NULL;
    size_t n = 0;
    assert_int_equal(ar_runs_list(&list, &n, NULL, store, &q), AR_OK);
    assert_int_equal(n, RUNS - RUNS / FAIL_EVERY);
    size_t i = 0;
    for (int r = 0; r < RUNS; r++) {
        if ((r + 1) % FAIL_EVERY == 0)
            continue;
        char goal[32];
        snprintf(goal, sizeof goal, "run %03d", r);
        assert_string_equal(list[i]->goal, goal);
        ar_record *rec = NULL;
        assert_int_equal(ar_store_get(&rec, store, list[i]->id, 1), AR_OK);
        assert_int_equal(rec->status, AR_COMPLETED);
        assert_int_equal(rec->n_steps, STEPS);
        assert_int_equal(rec->usage.input_tokens, STEPS * (STEPS + 1) / 2);
        for (int k = 1; k <= STEPS; k++) {
            char want[96];
            step_text(want, sizeof want, w, r, k);
            assert_int_equal(rec->steps[k - 1].seq, k);
            assert_string_equal(rec->steps[k - 1].content, want);
        }
        ar_record_free(rec);
        i++;
    }
    ar_records_free(list, n);
}

static void test_eight_writers_retention_and_a_reader_at_once_lose_nothing(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "contended.db");
    seed_junk(path);

    int go[2];
    assert_int_equal(pipe(go), 0);
    int stop[2];
    assert_int_equal(pipe(stop), 0);
    enum { N = WRITERS + 2 };
    pid_t pids[N];
    int outs[N];
    fflush(NULL);
    for (int c = 0; c < N; c++) {
        int out[2];
        assert_int_equal(pipe(out), 0);
        pids[c] = fork();
        assert_true(pids[c] >= 0);
        if (pids[c] == 0) {
            close(go[1]);
            close(stop[1]);
            close(out[0]);
            if (c < WRITERS)
                writer(path, c, go[0], out[1]);
            else if (c == WRITERS)
                retainer(path, go[0], stop[0], out[1]);
            else
                reader(path, go[0], stop[0], out[1]);
        }
        close(out[1]);
        outs[c] = out[0];
    }
    close(go[0]);
    close(stop[0]);
    close(go[1]);   /* all start at once */

    outcome o[N];
    long ebusy = 0;
    for (int c = 0; c < WRITERS; c++) {
        char who[32];
        snprintf(who, sizeof who, "writer %d", c);
        read_outcome(outs[c], &o[c], who);
        reap(pids[c], who);
        ebusy += o[c].ebusy;
    }
    close(stop[1]);  /* the writers are done: retention's last pass, and the reader stops */
    read_outcome(outs[WRITERS], &o[WRITERS], "retention");
    reap(pids[WRITERS], "retention");
    read_outcome(outs[WRITERS + 1], &o[WRITERS + 1], "reader");
    reap(pids[WRITERS + 1], "reader");
    int failed = 0;
    for (int c = 0; c < N; c++) {
        if (o[c].failure[0]) {
            print_error("process %d: %s\n", c, o[c].failure);
            failed = 1;
        }
    }
    assert_false(failed);
    ebusy += o[WRITERS].ebusy + o[WRITERS + 1].ebusy;
    assert_true(o[WRITERS].retain_calls >= 2);
    assert_true(o[WRITERS + 1].reads > 0);

    /* every failed run, old or new, was deleted by retention, and only those */
    const int64_t failed_runs = JUNK_RUNS + WRITERS * (RUNS / FAIL_EVERY);
    assert_int_equal(o[WRITERS].deleted, failed_runs);
    assert_int_equal(o[WRITERS].steps_deleted, JUNK_RUNS * JUNK_STEPS + WRITERS * (RUNS / FAIL_EVERY) * STEPS);

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);

    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, path, NULL), AR_OK);
    const int64_t kept = WRITERS * (RUNS - RUNS / FAIL_EVERY);
    ar_run_query q = AR_RUN_QUERY_INIT;
    ar_stats stats;
    assert_int_equal(ar_runs_stats(&stats, store, &q), AR_OK);
    assert_int_equal(stats.runs, kept);
    assert_int_equal(stats.by_status[AR_COMPLETED], kept);
    assert_int_equal(stats.iterations, kept * STEPS);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.runs, kept);
    assert_int_equal(info.steps, kept * STEPS);
    for (int w = 0; w < WRITERS; w++)
        expect_writer_runs(store, w);
    ar_store_close(store);
    if (ebusy)
        print_message("contention: %ld calls met EBUSY after the %d ms timeout and were retried\n", ebusy,
                      TIMEOUT_MS);
    free(path);
    tmpdir_remove(dir);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_eight_writers_retention_and_a_reader_at_once_lose_nothing),
};

TEST_GROUP(contention_group, "contention", tests);
