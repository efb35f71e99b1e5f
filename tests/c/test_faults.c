/* test_faults.c -- I/O errors at every point of a recording path, a full store, damaged and read-only files, file modes. */
#include "suite.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "agentrun.h"
#include "faultvfs.h"

static int vfs_setup(void **state)
{
    (void)state;
    return faultvfs_install() == SQLITE_OK ? 0 : -1;
}

static int vfs_teardown(void **state)
{
    (void)state;
    faultvfs_uninstall();
    return 0;
}

/* ---- a growable text ---------------------------------------------------- */

typedef struct text {
    char *p;
    size_t n, cap;
} text;

static void text_add(text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        assert_true(k >= 0);
        if (t->p && t->n + (size_t)k < t->cap) {
            t->n += (size_t)k;
            return;
        }
        size_t cap = t->cap ? t->cap : 256;
        while (cap <= t->n + (size_t)k)
            cap *= 2;
        t->p = realloc(t->p, cap);
        assert_non_null(t->p);
        t->cap = cap;
    }
}

/* ---- looking at a file without the shim --------------------------------- */

static int file_size(const char *path, off_t *size)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return -1;
    *size = sb.st_size;
    return 0;
}

static sqlite3 *peek_open(const char *path)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, faultvfs_base_name());
    if (rc != SQLITE_OK) {
        print_error("peek %s: %s\n", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        fail();
    }
    return db;
}

static void expect_integrity_ok(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

static int64_t peek_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Everything the store holds but ids and clock times, one line per row, in
 * a fixed order: two files that hold the same runs, steps, checkpoints and
 * events dump to the same text. "" for a missing, empty or schema-less file.
 * Also checks PRAGMA integrity_check. The caller frees the text. */
static char *dump_store(const char *path)
{
    static const char *const queries[] = {
        "SELECT agent, goal, user, edition, parent IS NOT NULL, status, output, error, limit_name,"
        " limit_value, limit_reached, budget, iterations, input_tokens, output_tokens, cost_nanos,"
        " counters, metadata FROM runs ORDER BY agent, goal",
        "SELECT r.agent, r.goal, s.seq, s.kind, s.name, s.content, s.input_tokens, s.output_tokens,"
        " s.cost_nanos, s.counters, s.duration_ms FROM steps s LEFT JOIN runs r ON r.n = s.run"
        " ORDER BY r.agent, r.goal, s.seq",
        "SELECT r.agent, r.goal, c.seq, c.state FROM checkpoints c LEFT JOIN runs r ON r.n = c.run"
        " ORDER BY r.agent, r.goal",
        "SELECT e.agent, e.session, e.type, e.content, e.metadata, r.agent, r.goal FROM events e"
        " LEFT JOIN runs r ON r.id = e.run ORDER BY e.id",
        "SELECT 'orphan steps', count(*) FROM steps WHERE run NOT IN (SELECT n FROM runs)",
        "SELECT 'orphan events', count(*) FROM events WHERE run IS NOT NULL AND run NOT IN (SELECT id FROM runs)",
        "SELECT 'iterations', count(*) FROM runs r"
        " WHERE iterations != (SELECT count(*) FROM steps s WHERE s.run = r.n)",
    };
    off_t size = 0;
    if (file_size(path, &size) != 0 || size == 0)
        return strdup("");
    sqlite3 *db = peek_open(path);
    expect_integrity_ok(db);
    text t = { NULL, 0, 0 };
    text_add(&t, "%s", "");
    if (peek_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'runs'") == 0) {
        sqlite3_close(db);
        return t.p;
    }
    for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, queries[q], -1, &st, NULL), SQLITE_OK);
        text_add(&t, "#%zu\n", q);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const unsigned char *v = sqlite3_column_text(st, c);
                text_add(&t, "%s%.60s", c ? "|" : "", v ? (const char *)v : "-");
            }
            text_add(&t, "\n");
        }
        assert_int_equal(rc, SQLITE_DONE);
        sqlite3_finalize(st);
    }
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return t.p;
}

/* ---- the recording path ------------------------------------------------- */

/* What the path has made so far. */
typedef struct script {
    const char *path;
    ar_store *store;
    ar_run *run;
    char main_id[32], second_id[32], third_id[32];
    char open_msg[512];     /* the message of a failed open (its store is closed) */
} script;

static int act_open(script *s)
{
    s->store = NULL;
    int rc = ar_store_open(&s->store, s->path, NULL);
    if (rc != AR_OK) {
        snprintf(s->open_msg, sizeof s->open_msg, "%s", ar_store_errmsg(s->store));
        ar_store_close(s->store);
        s->store = NULL;
    }
    return rc;
}

static int act_begin_main(script *s)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "agent-a";
    spec.goal = "main";
    spec.user = "u1";
    spec.metadata = "{\"tag\":\"x\"}";
    spec.budget.max_steps = 10;
    int rc = ar_run_begin(&s->run, s->store, &spec);
    if (rc == AR_OK)
        snprintf(s->main_id, sizeof s->main_id, "%s", ar_run_id(s->run));
    return rc;
}

static int step_on(ar_run *run, const char *kind, const char *content, int64_t in, int64_t out, double cost,
                   int64_t cache_read)
{
    ar_counter extra = { "cache_read_tokens", cache_read };
    ar_step step = AR_STEP_INIT;
    step.kind = kind;
    step.name = "model-x";
    step.content = content;
    step.usage.input_tokens = in;
    step.usage.output_tokens = out;
    step.usage.cost = cost;
    step.usage.n_extra = cache_read ? 1 : 0;
    step.usage.extra = &extra;
    step.duration_ms = in + out;
    return ar_run_step(NULL, run, &step);
}

static int act_step1(script *s)
{
    return step_on(s->run, "llm", "{\"text\":\"hello\"}", 100, 20, 0.0015, 7);
}

/* A step bigger than a page: its row spills to overflow pages. */
static int act_step2(script *s)
{
    static char big[20016];
    if (!big[0]) {
        memset(big, 'x', sizeof big - 1);
        big[0] = '"';
        big[sizeof big - 2] = '"';
    }
    return step_on(s->run, "tool", big, 0, 0, 0, 0);
}

static int act_checkpoint(script *s)
{
    return ar_run_checkpoint(s->run, "{\"cursor\":2}", AR_NUL_TERMINATED);
}

static int event_for(script *s, const char *run_id, const char *content)
{
    ar_event e = AR_EVENT_INIT;
    e.agent = "agent-a";
    e.type = "log";
    e.session = 3;
    e.content = content;
    e.run = run_id;
    return ar_event_append(NULL, s->store, &e);
}

static int act_event_main(script *s)
{
    return event_for(s, s->main_id, "after step 2");
}

static int act_step3(script *s)
{
    return step_on(s->run, "message", "\"done?\"", 30, 40, 0.0005, 1);
}

static int act_complete(script *s)
{
    int rc = ar_run_complete(NULL, s->run, "\"the answer\"", AR_NUL_TERMINATED);
    if (rc == AR_OK) {
        ar_run_close(s->run);
        s->run = NULL;
    }
    return rc;
}

/* A failed run written whole by the record factory. */
static int act_write_record(script *s)
{
    ar_step steps[2] = { AR_STEP_INIT, AR_STEP_INIT };
    steps[0].kind = "llm";
    steps[0].content = "[1,2,3]";
    steps[0].usage.input_tokens = 5;
    steps[1].kind = "tool";
    steps[1].usage.output_tokens = 6;
    ar_record fields = AR_RECORD_INIT;
    fields.agent = "agent-b";
    fields.goal = "written";
    fields.steps = steps;
    fields.n_steps = 2;
    ar_record *rec = NULL;
    char why[256];
    if (ar_record_failed(&rec, &fields, "tool broke", why, sizeof why) != AR_OK) {
        print_error("record factory: %s\n", why);
        return -1;
    }
    char *id = NULL;
    int rc = ar_store_write(&id, s->store, rec);
    ar_free(id);
    ar_record_free(rec);
    return rc;
}

static int act_begin_second(script *s)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "agent-c";
    spec.goal = "second";
    int rc = ar_run_begin(&s->run, s->store, &spec);
    if (rc == AR_OK)
        snprintf(s->second_id, sizeof s->second_id, "%s", ar_run_id(s->run));
    return rc;
}

static int act_step_second(script *s)
{
    return step_on(s->run, "llm", "{\"q\":1}", 9, 1, 0.000001, 0);
}

static int act_event_second(script *s)
{
    return event_for(s, s->second_id, "second run log");
}

static int act_fail_second(script *s)
{
    int rc = ar_run_fail(NULL, s->run, "tool crashed");
    if (rc == AR_OK) {
        ar_run_close(s->run);
        s->run = NULL;
    }
    return rc;
}

static int act_forget_user(script *s)
{
    int64_t n = -1;
    int rc = ar_store_forget_user(&n, s->store, "u1");
    return rc == AR_OK && n != 1 ? -1 : rc;
}

static int rule_delete(void *ud, const ar_record *run, double age, int *verdict)
{
    (void)ud;
    (void)run;
    (void)age;
    *verdict = AR_RULE_DELETE;
    return 0;
}

/* Deletes the two failed runs (one batch) with their steps and events. */
static int act_retain_failed(script *s)
{
    ar_status failed = AR_FAILED;
    ar_retention policy = AR_RETENTION_INIT;
    policy.status = &failed;
    policy.n_status = 1;
    policy.rule = rule_delete;
    ar_retention_report report;
    int rc = ar_store_retain(&report, s->store, &policy);
    return rc == AR_OK && (report.deleted != 2 || report.steps_deleted != 3) ? -1 : rc;
}

static int act_vacuum(script *s)
{
    ar_retention policy = AR_RETENTION_INIT;
    policy.older_than = 1e9;
    policy.vacuum = 1;
    ar_retention_report report;
    int rc = ar_store_retain(&report, s->store, &policy);
    return rc == AR_OK && report.deleted != 0 ? -1 : rc;
}

/* A run that runs out of budget, is resumed with a bigger one and completes. */
static int act_begin_third(script *s)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "agent-d";
    spec.goal = "third";
    spec.budget.max_steps = 1;
    int rc = ar_run_begin(&s->run, s->store, &spec);
    if (rc == AR_OK)
        snprintf(s->third_id, sizeof s->third_id, "%s", ar_run_id(s->run));
    return rc;
}

static int act_step_third(script *s)
{
    return step_on(s->run, "llm", "{\"third\":true}", 4, 4, 0.25, 2);
}

static int act_exhaust_third(script *s)
{
    ar_exhaustion why;
    if (ar_run_check(&why, s->run) != AR_EBUDGET)
        return -1;
    int rc = ar_run_exhaust(NULL, s->run, &why);
    if (rc == AR_OK) {
        ar_run_close(s->run);
        s->run = NULL;
    }
    return rc;
}

static int act_resume_third(script *s)
{
    ar_budget budget = AR_BUDGET_INIT;
    budget.max_steps = 5;
    int rc = ar_run_resume(&s->run, s->store, s->third_id, &budget);
    return rc == AR_OK && ar_run_iterations(s->run) != 1 ? -1 : rc;
}

static int act_recover(script *s)
{
    int64_t n = -1;
    int rc = ar_store_recover(&n, s->store, 3600);
    return rc == AR_OK && n != 0 ? -1 : rc;
}

static int act_event_late(script *s)
{
    return event_for(s, NULL, "late");
}

static int act_retain_events(script *s)
{
    ar_event_retention policy = AR_EVENT_RETENTION_INIT;
    policy.keep_last = 1;
    int64_t n = -1;
    int rc = ar_events_retain(&n, s->store, &policy);
    return rc == AR_OK && n != 1 ? -1 : rc;
}

static int act_reopen(script *s)
{
    ar_store_close(s->store);
    s->store = NULL;
    return act_open(s);
}

/* Reads the main run back whole (after a reopen the cache is cold). */
static int act_get(script *s)
{
    ar_record *r = NULL;
    int rc = ar_store_get(&r, s->store, s->main_id, 1);
    if (rc != AR_OK)
        return rc;
    int right = r->status == AR_COMPLETED && r->n_steps == 3 && r->usage.input_tokens == 130 &&
                strcmp(r->output, "\"the answer\"") == 0 && r->steps[1].content_len == 20015;
    ar_record_free(r);
    return right ? AR_OK : -1;
}

static int act_list(script *s)
{
    ar_run_query q = AR_RUN_QUERY_INIT;
    ar_record **list = NULL;
    size_t n = 0;
    int rc = ar_runs_list(&list, &n, NULL, s->store, &q);
    if (rc != AR_OK)
        return rc;
    ar_records_free(list, n);
    ar_stats st;
    if ((rc = ar_runs_stats(&st, s->store, &q)) != AR_OK)
        return rc;
    return n == 2 && st.runs == 2 && st.iterations == 5 ? AR_OK : -1;
}

static int act_events(script *s)
{
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "agent-a";
    ar_event_list *list = NULL;
    int rc = ar_events_list(&list, NULL, s->store, &q);
    if (rc != AR_OK)
        return rc;
    int right = list->n == 1 && strcmp(list->items[0].content, "late") == 0;
    ar_event_list_free(list);
    return right ? AR_OK : -1;
}

static int act_checkpoint_read(script *s)
{
    char *state = NULL;
    int64_t seq = 0;
    int rc = ar_store_checkpoint(&state, &seq, s->store, s->main_id);
    if (rc != AR_OK)
        return rc;
    int right = state && strcmp(state, "{\"cursor\":2}") == 0 && seq == 2;
    ar_free(state);
    return right ? AR_OK : -1;
}

typedef struct path_action {
    const char *name;
    int (*fn)(script *s);
} path_action;

static const path_action path_actions[] = {
    { "open a new file", act_open },
    { "begin", act_begin_main },
    { "step 1", act_step1 },
    { "step 2 (overflow pages)", act_step2 },
    { "checkpoint", act_checkpoint },
    { "event", act_event_main },
    { "step 3", act_step3 },
    { "complete", act_complete },
    { "write a record", act_write_record },
    { "begin a second run", act_begin_second },
    { "step of the second run", act_step_second },
    { "event of the second run", act_event_second },
    { "fail the second run", act_fail_second },
    { "forget a user", act_forget_user },
    { "retain: delete failed runs", act_retain_failed },
    { "retain: vacuum", act_vacuum },
    { "begin a third run", act_begin_third },
    { "step of the third run", act_step_third },
    { "exhaust the third run", act_exhaust_third },
    { "resume the third run", act_resume_third },
    { "step after the resume", act_step_third },
    { "complete the third run", act_complete },
    { "recover stale runs", act_recover },
    { "event without a run", act_event_late },
    { "retain events", act_retain_events },
    { "close and reopen", act_reopen },
    { "get with steps", act_get },
    { "list and stats", act_list },
    { "list events", act_events },
    { "read the checkpoint", act_checkpoint_read },
};
#define N_ACTIONS (sizeof path_actions / sizeof path_actions[0])

static void script_end(script *s)
{
    ar_run_close(s->run);
    ar_store_close(s->store);
    s->run = NULL;
    s->store = NULL;
}

static void remove_store_files(const char *path)
{
    static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
        unlink(p);
    }
}

/* Runs the path without faults: dumps[k] is the file after the first k
 * actions. Returns how many operations of `ops` it made. */
static long golden_run(const char *path, unsigned ops, char *dumps[N_ACTIONS + 1])
{
    script s = { path, NULL, NULL, "", "", "", "" };
    faultvfs_arm(ops, 0, 0, 0);
    dumps[0] = dump_store(path);
    for (size_t k = 0; k < N_ACTIONS; k++) {
        int rc = path_actions[k].fn(&s);
        if (rc != AR_OK) {
            print_error("golden run: %s: %s: %s\n", path_actions[k].name, ar_code_name(rc),
                        s.run ? ar_run_errmsg(s.run) : ar_store_errmsg(s.store));
            fail();
        }
        dumps[k + 1] = dump_store(path);
    }
    long count = faultvfs_count();
    faultvfs_clear();
    script_end(&s);
    remove_store_files(path);
    return count;
}

static const char *last_message(const script *s)
{
    if (s->run && ar_run_errmsg(s->run)[0])
        return ar_run_errmsg(s->run);
    return s->store ? ar_store_errmsg(s->store) : s->open_msg;
}

static void expect_dump(const char *path, const char *want, const char *when, const char *action, long nth)
{
    char *got = dump_store(path);
    if (strcmp(got, want) != 0) {
        print_error("fault %ld, %s, %s: the file is not what it should be\n--- want\n%s--- got\n%s",
                    nth, action, when, want, got);
        free(got);
        fail();
    }
    free(got);
}

/* For nth = 1, 2, ... until the path no longer reaches it: fails the nth
 * operation of `ops` (and, when `persistent`, every later one until the
 * failing call has been seen). Each call that fails must fail with `want`,
 * leave the file exactly as before the call with a sound structure, and
 * succeed when retried once the fault is cleared; every later call succeeds
 * and the file ends exactly as in the run without faults. */
static void sweep(unsigned ops, int fault_rc, int persistent, int want)
{
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "faults.db");
    char *dumps[N_ACTIONS + 1];
    faultvfs_skip_sync(1);
    long total = golden_run(path, ops, dumps);
    assert_true(total > 0);
    long failures = 0;
    for (long nth = 1;; nth++) {
        script s = { path, NULL, NULL, "", "", "", "" };
        faultvfs_arm(ops, nth, persistent, fault_rc);
        for (size_t k = 0; k < N_ACTIONS; k++) {
            const char *name = path_actions[k].name;
            long fired = faultvfs_fired();
            int rc = path_actions[k].fn(&s);
            if (rc == AR_OK)
                continue;
            if (rc != want || faultvfs_fired() == fired) {
                print_error("fault %ld: %s failed with %s (%s); expected %s from the injected fault\n",
                            nth, name, rc < 0 ? "a wrong result" : ar_code_name(rc), last_message(&s),
                            ar_code_name(want));
                fail();
            }
            if (!last_message(&s)[0]) {
                print_error("fault %ld: %s failed without a message\n", nth, name);
                fail();
            }
            failures++;
            if (persistent) {
                /* the cause is still there: it fails again, or needs no such operation now */
                rc = path_actions[k].fn(&s);
                if (rc != AR_OK && rc != want) {
                    print_error("fault %ld: %s retried under the fault: %s (%s)\n", nth, name,
                                rc < 0 ? "a wrong result" : ar_code_name(rc), last_message(&s));
                    fail();
                }
                if (rc == AR_OK) {
                    faultvfs_clear();
                    expect_dump(path, dumps[k + 1], "after the call passed on its retry", name, nth);
                    continue;
                }
            }
            faultvfs_clear();
            expect_dump(path, dumps[k], "after the failed call", name, nth);
            rc = path_actions[k].fn(&s);
            if (rc != AR_OK) {
                print_error("fault %ld: %s retried without the fault: %s (%s)\n", nth, name,
                            rc < 0 ? "a wrong result" : ar_code_name(rc), last_message(&s));
                fail();
            }
            expect_dump(path, dumps[k + 1], "after the retry", name, nth);
        }
        faultvfs_clear();
        long fired = faultvfs_fired();
        script_end(&s);
        expect_dump(path, dumps[N_ACTIONS], "at the end", "the whole path", nth);
        remove_store_files(path);
        if (fired == 0)
            break;
        assert_true(nth < 100000);
    }
    /* the faults did reach calls: the sweep tested something */
    assert_true(failures > 0);
    faultvfs_skip_sync(0);
    for (size_t k = 0; k <= N_ACTIONS; k++)
        free(dumps[k]);
    free(path);
    tmpdir_remove(dir);
}

static void test_every_failed_read_fails_only_its_call_with_eio(void **state)
{
    (void)state;
    sweep(FAULTVFS_READ, 0, 0, AR_EIO);
}

static void test_every_failed_write_fails_only_its_call_with_eio(void **state)
{
    (void)state;
    sweep(FAULTVFS_WRITE, 0, 0, AR_EIO);
}

static void test_every_failed_sync_fails_only_its_call_with_eio(void **state)
{
    (void)state;
    sweep(FAULTVFS_SYNC, 0, 0, AR_EIO);
}

static void test_every_failed_truncate_leaves_the_store_sound(void **state)
{
    (void)state;
    sweep(FAULTVFS_TRUNCATE, 0, 0, AR_EIO);
}

static void test_every_write_refused_by_a_full_disk_fails_only_its_call_with_efull(void **state)
{
    (void)state;
    sweep(FAULTVFS_WRITE, SQLITE_FULL, 0, AR_EFULL);
}

static void test_a_read_error_that_persists_fails_calls_until_it_clears(void **state)
{
    (void)state;
    sweep(FAULTVFS_READ, 0, 1, AR_EIO);
}

static void test_a_write_error_that_persists_fails_calls_until_it_clears(void **state)
{
    (void)state;
    sweep(FAULTVFS_WRITE, 0, 1, AR_EIO);
}

static void test_a_sync_error_that_persists_fails_calls_until_it_clears(void **state)
{
    (void)state;
    sweep(FAULTVFS_SYNC, 0, 1, AR_EIO);
}

static void test_a_disk_that_stays_full_fails_calls_until_room_is_made(void **state)
{
    (void)state;
    sweep(FAULTVFS_WRITE, SQLITE_FULL, 1, AR_EFULL);
}

/* ---- a store that fills up ---------------------------------------------- */

/* The page limit the auto-extension below gives every new connection. */
static int page_limit;

/* Registered with sqlite3_auto_extension: caps each connection's database
 * at page_limit pages, as a small disk or a size quota would. */
static int limit_pages(sqlite3 *db, char **errmsg, const sqlite3_api_routines *api)
{
    (void)api;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %d", page_limit);
    return sqlite3_exec(db, sql, NULL, NULL, errmsg);
}

static int limit_teardown(void **state)
{
    (void)state;
    sqlite3_cancel_auto_extension((void (*)(void))limit_pages);
    return 0;
}

/* A step with about 3 KB of content. */
static int big_step(ar_run *run, int k)
{
    char content[3100];
    int n = snprintf(content, sizeof content, "{\"k\":%d,\"pad\":\"", k);
    memset(content + n, 'a' + k % 26, 3000);
    memcpy(content + n + 3000, "\"}", 3);
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.content = content;
    step.usage.input_tokens = 1;
    return ar_run_step(NULL, run, &step);
}

static int64_t file_steps(const char *path, const char *agent)
{
    sqlite3 *db = peek_open(path);
    expect_integrity_ok(db);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM steps JOIN runs ON runs.n = steps.run WHERE agent = '%s'", agent);
    int64_t n = peek_int(db, sql);
    snprintf(sql, sizeof sql, "SELECT coalesce(sum(iterations), 0) FROM runs WHERE agent = '%s'", agent);
    assert_int_equal(peek_int(db, sql), n);
    sqlite3_close(db);
    return n;
}

static void test_a_full_store_fails_with_efull_until_retention_frees_room(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "full.db");
    page_limit = 64;
    assert_int_equal(sqlite3_auto_extension((void (*)(void))limit_pages), SQLITE_OK);
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, path, NULL), AR_OK);

    /* finished runs of an old agent take about half the room */
    for (int r = 0; r < 8; r++) {
        ar_run *old = test_begin(store, "old");
        for (int k = 1; k <= 9; k++)
            assert_int_equal(big_step(old, k), AR_OK);
        assert_int_equal(ar_run_complete(NULL, old, "0", AR_NUL_TERMINATED), AR_OK);
        ar_run_close(old);
    }
    /* a live run records until the store is full */
    ar_run *live = test_begin(store, "live");
    int k = 0, rc;
    while ((rc = big_step(live, k + 1)) == AR_OK)
        k++;
    assert_string_equal(ar_code_name(rc), "EFULL");
    assert_true(k > 10);
    assert_non_null(strstr(ar_run_errmsg(live), "full"));
    assert_int_equal(ar_run_iterations(live), k);
    assert_int_equal(ar_run_usage(live)->input_tokens, k);
    assert_int_equal(file_steps(path, "live"), k);
    /* the store stays full: the same step fails again, and changes nothing */
    assert_int_equal(big_step(live, k + 1), AR_EFULL);
    assert_int_equal(ar_run_iterations(live), k);
    assert_int_equal(file_steps(path, "live"), k);
    /* reading still works */
    ar_run_query q = AR_RUN_QUERY_INIT;
    int64_t n = -1;
    assert_int_equal(ar_runs_count(&n, store, &q), AR_OK);
    assert_int_equal(n, 9);

    /* retention drops the old runs; the same step then goes in */
    ar_retention policy = AR_RETENTION_INIT;
    policy.keep_last = 0;
    policy.vacuum = 1;
    ar_retention_report report;
    rc = ar_store_retain(&report, store, &policy);
    if (rc != AR_OK) {
        print_error("retain: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    assert_int_equal(report.deleted, 8);
    assert_int_equal(report.steps_deleted, 72);
    assert_true(report.bytes_after < report.bytes_before);
    assert_int_equal(big_step(live, k + 1), AR_OK);
    k++;
    for (int i = 0; i < 10; i++, k++)
        assert_int_equal(big_step(live, k + 1), AR_OK);
    assert_int_equal(ar_run_complete(NULL, live, "1", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(live);
    ar_run *more = NULL;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "live";
    spec.goal = "g";
    assert_int_equal(ar_run_begin(&more, store, &spec), AR_OK);
    ar_run_close(more);

    ar_record *r = NULL;
    assert_int_equal(ar_runs_count(&n, store, &q), AR_OK);
    assert_int_equal(n, 2);
    ar_store_close(store);
    assert_int_equal(file_steps(path, "live"), k);
    store = NULL;
    assert_int_equal(ar_store_open(&store, path, NULL), AR_OK);
    ar_record **list = NULL;
    size_t got = 0;
    q.agent = "live";
    q.order = AR_ORDER_ASC;
    assert_int_equal(ar_runs_list(&list, &got, NULL, store, &q), AR_OK);
    assert_int_equal(got, 2);
    assert_int_equal(ar_store_get(&r, store, list[0]->id, 1), AR_OK);
    assert_int_equal(r->status, AR_COMPLETED);
    assert_int_equal(r->n_steps, k);
    for (int i = 0; i < k; i++) {
        char want[24];
        snprintf(want, sizeof want, "{\"k\":%d,", i + 1);
        assert_int_equal(r->steps[i].seq, i + 1);
        assert_memory_equal(r->steps[i].content, want, strlen(want));
    }
    ar_record_free(r);
    ar_records_free(list, got);
    ar_store_close(store);
    free(path);
    tmpdir_remove(dir);
}

/* ---- damaged and foreign files ------------------------------------------ */

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int exists_beside(const char *path, const char *suffix)
{
    char p[4200];
    snprintf(p, sizeof p, "%s%s", path, suffix);
    return exists(p);
}

/* A closed store of 20 runs with 5 steps each (a few dozen pages). */
static void make_store(const char *path)
{
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, path, NULL), AR_OK);
    for (int r = 0; r < 20; r++) {
        ar_run *run = test_begin(store, "maker");
        for (int k = 1; k <= 5; k++)
            assert_int_equal(big_step(run, k), AR_OK);
        assert_int_equal(ar_run_complete(NULL, run, "0", AR_NUL_TERMINATED), AR_OK);
        ar_run_close(run);
    }
    ar_store_close(store);
    assert_false(exists_beside(path, "-wal"));
}

/* Opening `path` (read-write, then read-only) fails with `want`, a message
 * holding `msg_part`, and leaves the file byte for byte as it was. */
static void expect_refused(const char *path, int want, const char *msg_part)
{
    size_t before_len, after_len;
    char *before = test_slurp(path, &before_len);
    for (int ro = 0; ro <= 1; ro++) {
        ar_open_opts opts = AR_OPEN_OPTS_INIT;
        opts.readonly = ro;
        ar_store *store = NULL;
        int rc = ar_store_open(&store, path, &opts);
        assert_string_equal(ar_code_name(rc), ar_code_name(want));
        if (!strstr(ar_store_errmsg(store), msg_part)) {
            print_error("message \"%s\" lacks \"%s\"\n", ar_store_errmsg(store), msg_part);
            fail();
        }
        assert_non_null(strstr(ar_store_errmsg(store), path));
        ar_store_close(store);
        char *after = test_slurp(path, &after_len);
        assert_int_equal(after_len, before_len);
        assert_memory_equal(after, before, before_len);
        free(after);
        /* a read-only connection leaves an empty -wal beside a WAL-mode file; never more */
        off_t wal = 0;
        char side[4200];
        snprintf(side, sizeof side, "%s-wal", path);
        assert_true(file_size(side, &wal) != 0 || (ro && wal == 0));
        assert_false(exists_beside(path, "-journal"));
    }
    free(before);
}

static void test_a_truncated_store_is_refused_as_damaged_and_left_unchanged(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "cut.db");
    make_store(path);
    off_t size = 0;
    assert_int_equal(file_size(path, &size), 0);
    assert_true(size >= 8 * 8192);
    assert_int_equal(truncate(path, size / 2), 0);
    expect_refused(path, AR_ECORRUPT, "damaged");
    free(path);
    tmpdir_remove(dir);
}

static void test_a_store_cut_inside_its_header_is_refused_and_left_unchanged(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "stub.db");
    make_store(path);
    assert_int_equal(truncate(path, 60), 0);
    expect_refused(path, AR_ECORRUPT, "damaged");
    free(path);
    tmpdir_remove(dir);
}

static void test_a_store_with_an_overwritten_page_reports_ecorrupt_on_use(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "scribbled.db");
    make_store(path);
    off_t size = 0;
    assert_int_equal(file_size(path, &size), 0);
    /* garbage over every page but the first */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    unsigned char junk[8192];
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (off_t off = 8192; off < size; off += 8192) {
        for (size_t i = 0; i < sizeof junk; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk[i] = (unsigned char)x;
        }
        assert_int_equal(fseeko(f, off, SEEK_SET), 0);
        assert_int_equal(fwrite(junk, 1, sizeof junk, f), sizeof junk);
    }
    assert_int_equal(fclose(f), 0);

    ar_store *store = NULL;
    int rc = ar_store_open(&store, path, NULL);
    if (rc == AR_OK) {
        ar_run_query q = AR_RUN_QUERY_INIT;
        ar_record **list = NULL;
        size_t n = 0;
        rc = ar_runs_list(&list, &n, NULL, store, &q);
        assert_null(list);
        int64_t count = -1;
        assert_int_equal(ar_runs_count(&count, store, &q), AR_ECORRUPT);
        ar_run *run = NULL;
        ar_run_spec spec = AR_RUN_SPEC_INIT;
        spec.agent = "a";
        spec.goal = "g";
        assert_int_equal(ar_run_begin(&run, store, &spec), AR_ECORRUPT);
        assert_null(run);
    }
    assert_string_equal(ar_code_name(rc), "ECORRUPT");
    assert_true(ar_store_errmsg(store)[0] != '\0');
    ar_store_close(store);
    free(path);
    tmpdir_remove(dir);
}

/* Runs SQL on a file through SQLite directly (past the shim), as another program would. */
static void sql_on_file(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, faultvfs_base_name()),
                     SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        print_error("%s: %s\n", sql, msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_close(db);
        fail();
    }
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void test_foreign_noise_and_newer_files_are_refused_in_both_modes_and_left_unchanged(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *noise = tmpdir_path(dir, "noise.bin");
    FILE *f = fopen(noise, "wb");
    assert_non_null(f);
    uint64_t x = 0x2545F4914F6CDD1DULL;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        fputc((int)(x & 0xFF), f);
    }
    assert_int_equal(fclose(f), 0);
    expect_refused(noise, AR_ECORRUPT, "not an agentrun store");

    /* another program's database in WAL mode, as ours are */
    char *other = tmpdir_path(dir, "other.db");
    sql_on_file(other, "PRAGMA journal_mode = WAL; CREATE TABLE notes(body TEXT);"
                       "INSERT INTO notes VALUES('keep me');");
    expect_refused(other, AR_ECORRUPT, "another application");

    char *newer = tmpdir_path(dir, "newer.db");
    make_store(newer);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", AR_SCHEMA_VERSION + 1);
    sql_on_file(newer, sql);
    expect_refused(newer, AR_EVERSION, "created by a newer agentrun");
    free(noise);
    free(other);
    free(newer);
    tmpdir_remove(dir);
}

/* ---- read-only files ---------------------------------------------------- */

/* Runs `check` in a child process, which gives up root first (file modes do
 * not bind root), and fails the test with the child's complaint if any. */
static void as_nobody(const char *dir, void (*check)(const char *dir, char *why, size_t n))
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        char why[512] = "";
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            snprintf(why, sizeof why, "cannot drop root: %s", strerror(errno));
        else
            check(dir, why, sizeof why);
        if (write(fds[1], why, strlen(why)) < 0)
            _exit(2);
        _exit(0);
    }
    close(fds[1]);
    char why[512];
    ssize_t n, len = 0;
    while ((n = read(fds[0], why + len, sizeof why - 1 - (size_t)len)) > 0)
        len += n;
    why[len] = '\0';
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (len) {
        print_error("%s\n", why);
        fail();
    }
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* In the child: the store opens (read-write asked, or read-only), reads
 * work, and every write fails with EPERM and a message saying so. */
static void reads_work_writes_fail(const char *dir, char *why, size_t n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/locked.db", dir);
    for (int ro = 0; ro <= 1 && !why[0]; ro++) {
        ar_open_opts opts = AR_OPEN_OPTS_INIT;
        opts.readonly = ro;
        ar_store *store = NULL;
        int rc = ar_store_open(&store, path, &opts);
        if (rc != AR_OK) {
            snprintf(why, n, "open (readonly=%d): %s: %s", ro, ar_code_name(rc), ar_store_errmsg(store));
            ar_store_close(store);
            return;
        }
        ar_run_query q = AR_RUN_QUERY_INIT;
        int64_t count = -1;
        ar_run *run = NULL;
        ar_run_spec spec = AR_RUN_SPEC_INIT;
        spec.agent = "a";
        spec.goal = "g";
        int64_t forgotten = -1;
        if ((rc = ar_runs_count(&count, store, &q)) != AR_OK || count != 20)
            snprintf(why, n, "count (readonly=%d): %s %lld: %s", ro, ar_code_name(rc), (long long)count,
                     ar_store_errmsg(store));
        else if ((rc = ar_run_begin(&run, store, &spec)) != AR_EPERM)
            snprintf(why, n, "begin (readonly=%d): %s: %s", ro, ar_code_name(rc), ar_store_errmsg(store));
        else if (!strstr(ar_store_errmsg(store), "read"))
            snprintf(why, n, "begin (readonly=%d): unclear message \"%s\"", ro, ar_store_errmsg(store));
        else if ((rc = ar_store_forget_user(&forgotten, store, "u")) != AR_EPERM)
            snprintf(why, n, "forget_user (readonly=%d): %s", ro, ar_code_name(rc));
        else if ((rc = ar_runs_count(&count, store, &q)) != AR_OK)
            snprintf(why, n, "count after a refused write (readonly=%d): %s", ro, ar_code_name(rc));
        ar_run_close(run);
        ar_store_close(store);
    }
}

/* In the child: SQLite cannot make the -shm file it needs to read a WAL
 * store, so both kinds of open fail with EPERM and say why. */
static void refused_for_its_directory(const char *dir, char *why, size_t n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/locked.db", dir);
    for (int ro = 0; ro <= 1 && !why[0]; ro++) {
        ar_open_opts opts = AR_OPEN_OPTS_INIT;
        opts.readonly = ro;
        ar_store *store = NULL;
        int rc = ar_store_open(&store, path, &opts);
        if (rc != AR_EPERM || !strstr(ar_store_errmsg(store), "directory is not writable"))
            snprintf(why, n, "open (readonly=%d): %s: \"%s\"", ro, ar_code_name(rc), ar_store_errmsg(store));
        ar_store_close(store);
    }
}

/* Makes a store of mode 0400 in a directory of mode `dir_mode` (both given
 * to nobody when we are root), runs `check` as their owner, and checks the
 * file is unchanged. */
static void locked_file(mode_t dir_mode, void (*check)(const char *dir, char *why, size_t n))
{
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "locked.db");
    make_store(path);
    size_t before_len, after_len;
    char *before = test_slurp(path, &before_len);
    if (geteuid() == 0) {
        assert_int_equal(chown(dir, 65534, 65534), 0);
        assert_int_equal(chown(path, 65534, 65534), 0);
    }
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(chmod(dir, dir_mode), 0);
    as_nobody(dir, check);
    char *after = test_slurp(path, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    assert_int_equal(chmod(dir, 0700), 0);
    free(before);
    free(after);
    free(path);
    tmpdir_remove(dir);
}

static void test_a_file_without_write_permission_reads_and_refuses_writes_with_eperm(void **state)
{
    (void)state;
    locked_file(0700, reads_work_writes_fail);
}

static void test_a_store_in_a_directory_without_write_permission_is_refused_with_eperm(void **state)
{
    (void)state;
    locked_file(0500, refused_for_its_directory);
}

/* ---- file modes --------------------------------------------------------- */

static void test_store_wal_and_shm_files_are_private_even_with_umask_0(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "private.db");
    mode_t old = umask(0);
    ar_store *store = NULL;
    int rc = ar_store_open(&store, path, NULL);
    ar_run *run = rc == AR_OK ? test_begin(store, "a") : NULL;
    int step_rc = run ? big_step(run, 1) : -1;
    umask(old);
    assert_int_equal(rc, AR_OK);
    assert_int_equal(step_rc, AR_OK);
    static const char *const suffixes[] = { "", "-wal", "-shm" };
    for (size_t i = 0; i < 3; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
        struct stat sb;
        assert_int_equal(stat(p, &sb), 0);
        if ((sb.st_mode & 07777) != 0600) {
            print_error("%s has mode %o\n", p, (unsigned)(sb.st_mode & 07777));
            fail();
        }
    }
    ar_run_close(run);
    ar_store_close(store);
    free(path);
    tmpdir_remove(dir);
}

#define F(t) cmocka_unit_test_setup_teardown(t, vfs_setup, vfs_teardown)

static const struct CMUnitTest tests[] = {
    F(test_every_failed_read_fails_only_its_call_with_eio),
    F(test_every_failed_write_fails_only_its_call_with_eio),
    F(test_every_failed_sync_fails_only_its_call_with_eio),
    F(test_every_failed_truncate_leaves_the_store_sound),
    F(test_every_write_refused_by_a_full_disk_fails_only_its_call_with_efull),
    F(test_a_read_error_that_persists_fails_calls_until_it_clears),
    F(test_a_write_error_that_persists_fails_calls_until_it_clears),
    F(test_a_sync_error_that_persists_fails_calls_until_it_clears),
    F(test_a_disk_that_stays_full_fails_calls_until_room_is_made),
    cmocka_unit_test_teardown(test_a_full_store_fails_with_efull_until_retention_frees_room, limit_teardown),
    cmocka_unit_test(test_a_truncated_store_is_refused_as_damaged_and_left_unchanged),
    cmocka_unit_test(test_a_store_cut_inside_its_header_is_refused_and_left_unchanged),
    cmocka_unit_test(test_a_store_with_an_overwritten_page_reports_ecorrupt_on_use),
    cmocka_unit_test(test_foreign_noise_and_newer_files_are_refused_in_both_modes_and_left_unchanged),
    cmocka_unit_test(test_a_file_without_write_permission_reads_and_refuses_writes_with_eperm),
    cmocka_unit_test(test_a_store_in_a_directory_without_write_permission_is_refused_with_eperm),
    cmocka_unit_test(test_store_wal_and_shm_files_are_private_even_with_umask_0),
};

TEST_GROUP(faults_group, "faults", tests);
