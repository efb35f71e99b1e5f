/* test_migrate.c -- a schema-1 file made by release 0.1.0 upgrades in place, in one transaction, with every cost unchanged. */
#include "suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "agentrun.h"
#include "faultvfs.h"

/* Made by release 0.1.0 (see tests/fixtures/README.md); tests open copies. */
#define FIXTURE "tests/fixtures/schema1.db"

/* What release 0.1.0 read from the fixture: every figure below was printed
 * with %.17g by that release before schema 2 existed. */
typedef struct want_run {
    const char *id;
    const char *status;
    double cost;
    double max_cost;          /* -1: the budget has none */
    const char *limit;        /* NULL: no limit reached */
    double limit_value, limit_reached;
    int64_t input_tokens, output_tokens;
    size_t n_steps;
    double steps[4];
} want_run;

static const want_run want[] = {
    { "01M95K51ZV0001ZFNGA2EE3T9K", "interrupted", 0.002101, 0.25, NULL, 0, 0, 100, 20,
      2, { 9.9999999999999995e-07, 0.0020999999999999999 } },
    { "01M95K521M0003BBGNPZYFC8GS", "completed", 12.502101, 50.5, NULL, 0, 0, 1210, 305,
      3, { 0.0020999999999999999, 9.9999999999999995e-07, 12.5 } },
    { "01M95K5227000AA3N9S9KFAFZ9", "completed", 0.30000199999999999, -1, NULL, 0, 0, 3, 3,
      4, { 0.10000000000000001, 0.20000000000000001, 0, 1.9999999999999999e-06 } },
    { "01M95K522Z0000G18B0CVGV9EE", "completed", 0, -1, NULL, 0, 0, 0, 0, 1, { 0 } },
    { "01M95K523B000818NP3HJB7QD6", "budget_exhausted", 0.0063, 0.0050000000000000001,
      "max_cost", 0.0050000000000000001, 0.0063, 600, 30,
      3, { 0.0020999999999999999, 0.0020999999999999999, 0.0020999999999999999 } },
    { "01M95K523T0006E152JQQ112VT", "completed", 1.5679000000000001, 7.5, NULL, 0, 0, 43, 24,
      2, { 1.234567, 0.33333299999999999 } },
    { "01M95K524K0003EPVF8SF1HSVT", "budget_exhausted", 1.9999999999999999e-06, 1.9999999999999999e-06,
      "max_cost", 1.9999999999999999e-06, 1.9999999999999999e-06, 2, 0,
      2, { 9.9999999999999995e-07, 9.9999999999999995e-07 } },
    { "01M95K5259000BXX7F1DZR70KR", "failed", 0.0020999999999999999, 9.9999999999999995e-07, NULL, 0, 0, 7, 0,
      1, { 0.0020999999999999999 } },
    { "01M95K525K000CGCCXJ9Z97KH0", "failed", 0, -1, NULL, 0, 0, 0, 0, 0, { 0 } },
    { "01M95K525N000472YAXR0JFVJ5", "completed", 12.500000999999999, 9.75, NULL, 0, 0, 11, 22,
      2, { 12.5, 9.9999999999999995e-07 } },
    { "01M95K525V000VGV8P578NFFZX", "budget_exhausted", 0.0041999999999999997, 0.0040000000000000001,
      "max_cost", 0.0040000000000000001, 0.0041999999999999997, 2, 4,
      2, { 0.0020999999999999999, 0.0020999999999999999 } },
    { "01M95K525Z001CV0DFWNTS787F", "failed", 9.9999999999999995e-07, -1, NULL, 0, 0, 5, 5,
      1, { 9.9999999999999995e-07 } },
    { "01M95K528B0003GZCY906KV9X9", "running", 12.500123, 100, NULL, 0, 0, 6, 7,
      2, { 12.5, 0.00012300000000000001 } },
};
#define N_WANT (sizeof want / sizeof want[0])
#define WANT_STATS_COST 39.384830999999998

/* A private copy of the fixture in a fresh directory; *dir to remove. */
static char *fixture_copy(char **dir)
{
    size_t len = 0;
    char *bytes = test_slurp(FIXTURE, &len);
    *dir = tmpdir_make();
    char *path = tmpdir_path(*dir, "schema1.db");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(bytes);
    return path;
}

static void remove_copy(char *dir, char *path)
{
    free(path);
    tmpdir_remove(dir);
}

static ar_store *open_store(const char *path, int readonly, int *rc)
{
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.readonly = readonly;
    ar_store *store = NULL;
    *rc = ar_store_open(&store, path, &opts);
    return store;
}

static int schema_version(ar_store *store)
{
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    return info.schema_version;
}

/* Every run, step, budget and limit reads back as release 0.1.0 read it. */
static void expect_fixture_figures(ar_store *store)
{
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.runs, (int64_t)N_WANT);
    assert_int_equal(info.steps, 25);
    assert_int_equal(info.events, 5);
    for (size_t i = 0; i < N_WANT; i++) {
        const want_run *w = &want[i];
        ar_record *r = NULL;
        int rc = ar_store_get(&r, store, w->id, 1);
        if (rc != AR_OK) {
            print_error("get %s: %s: %s\n", w->id, ar_code_name(rc), ar_store_errmsg(store));
            fail();
        }
        assert_string_equal(ar_status_name(r->status), w->status);
        assert_exact(r->usage.cost, w->cost);
        assert_exact(r->budget.max_cost, w->max_cost);
        if (w->limit) {
            assert_non_null(r->limit.limit);
            assert_string_equal(r->limit.limit, w->limit);
            assert_exact(r->limit.limit_value, w->limit_value);
            assert_exact(r->limit.value, w->limit_reached);
        } else {
            assert_null(r->limit.limit);
        }
        assert_int_equal(r->usage.input_tokens, w->input_tokens);
        assert_int_equal(r->usage.output_tokens, w->output_tokens);
        assert_int_equal(r->n_steps, w->n_steps);
        for (size_t k = 0; k < w->n_steps; k++)
            assert_exact(r->steps[k].usage.cost, w->steps[k]);
        ar_record_free(r);
    }
    /* the counters are untouched */
    ar_record *r = NULL;
    assert_int_equal(ar_store_get(&r, store, "01M95K521M0003BBGNPZYFC8GS", 0), AR_OK);
    assert_int_equal(r->usage.n_extra, 2);
    assert_string_equal(r->usage.extra[0].name, "cache_read_tokens");
    assert_int_equal(r->usage.extra[0].value, 1000);
    assert_string_equal(r->usage.extra[1].name, "reasoning_tokens");
    assert_int_equal(r->usage.extra[1].value, 42);
    ar_record_free(r);
    ar_stats st;
    ar_run_query q = AR_RUN_QUERY_INIT;
    assert_int_equal(ar_runs_stats(&st, store, &q), AR_OK);
    assert_exact(st.cost, WANT_STATS_COST);
    assert_int_equal(st.input_tokens, 1989);
    char *state = NULL;
    int64_t seq = 0;
    assert_int_equal(ar_store_checkpoint(&state, &seq, store, "01M95K51ZV0001ZFNGA2EE3T9K"), AR_OK);
    assert_string_equal(state, "{\"note\":\"resume here\",\"at\":2}");
    assert_int_equal(seq, 2);
    ar_free(state);
}

/* The raw schema-1 rows, looked at without the library: user_version and
 * every stored micro-cost. The caller frees the text. */
static char *raw_schema1(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, faultvfs_base_name()), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
        "SELECT (SELECT user_version FROM pragma_user_version) || '|' ||"
        " (SELECT group_concat(n || ':' || cost_micros || ':' || input_tokens, ',') FROM runs) || '|' ||"
        " (SELECT group_concat(n || ':' || cost_micros, ',') FROM steps) || '|' ||"
        " (SELECT count(*) FROM events) || '|' || (SELECT count(*) FROM checkpoints)", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        print_error("the file is no longer in schema 1: %s\n", sqlite3_errmsg(db));
        sqlite3_close(db);
        fail();
    }
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *text = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return text;
}

/* The tables' columns (names, types, constraints, defaults) and the indexes
 * of a store, as text. The caller frees it. */
static char *schema_text(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, faultvfs_base_name()), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
        "SELECT (SELECT group_concat(t, char(10)) FROM (SELECT m.name || '.' || p.name || ' ' || p.type"
        "   || ' notnull=' || p.\"notnull\" || ' default=' || ifnull(p.dflt_value, '-') || ' pk=' || p.pk AS t"
        "   FROM sqlite_schema m JOIN pragma_table_xinfo(m.name) p WHERE m.type = 'table'"
        "   ORDER BY m.name, p.cid)) || char(10) ||"
        " (SELECT group_concat(t, char(10)) FROM (SELECT name || ' ' || tbl_name || ' ' || ifnull(sql, '-') AS t"
        "   FROM sqlite_schema WHERE type = 'index' ORDER BY name))", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *text = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return text;
}

static void test_upgraded_file_has_the_schema_of_a_new_file(void **state)
{
    (void)state;
    char *dir = NULL;
    char *path = fixture_copy(&dir);
    char *fresh = tmpdir_path(dir, "new.db");
    int rc;
    ar_store *store = open_store(path, 0, &rc);
    assert_int_equal(rc, AR_OK);
    ar_store_close(store);
    store = open_store(fresh, 0, &rc);
    assert_int_equal(rc, AR_OK);
    ar_event e = AR_EVENT_INIT; /* creates sqlite_sequence, as in the fixture */
    e.agent = "a";
    e.type = "t";
    assert_int_equal(ar_event_append(NULL, store, &e), AR_OK);
    ar_store_close(store);
    char *upgraded = schema_text(path), *made = schema_text(fresh);
    if (strcmp(upgraded, made) != 0) {
        print_error("--- upgraded\n%s\n--- new\n%s\n", upgraded, made);
        fail();
    }
    assert_non_null(strstr(made, "runs.cost_nanos INTEGER"));
    free(upgraded);
    free(made);
    free(fresh);
    remove_copy(dir, path);
}

static void test_schema1_file_opens_upgraded_with_every_cost_unchanged(void **state)
{
    (void)state;
    char *dir = NULL;
    char *path = fixture_copy(&dir);
    int rc;
    ar_store *store = open_store(path, 0, &rc);
    if (rc != AR_OK) {
        print_error("open: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    assert_int_equal(schema_version(store), AR_SCHEMA_VERSION);
    expect_fixture_figures(store);
    ar_store_close(store);
    /* opened again, nothing changes a second time */
    store = open_store(path, 0, &rc);
    assert_int_equal(rc, AR_OK);
    expect_fixture_figures(store);
    ar_store_close(store);
    /* and a read-only open of the upgraded file reads the same */
    store = open_store(path, 1, &rc);
    assert_int_equal(rc, AR_OK);
    expect_fixture_figures(store);
    ar_store_close(store);
    remove_copy(dir, path);
}

static void test_upgraded_run_continues_in_nano_units(void **state)
{
    (void)state;
    char *dir = NULL;
    char *path = fixture_copy(&dir);
    int rc;
    ar_store *store = open_store(path, 0, &rc);
    assert_int_equal(rc, AR_OK);
    ar_run *run = NULL;
    assert_int_equal(ar_run_resume(&run, store, "01M95K51ZV0001ZFNGA2EE3T9K", NULL), AR_OK);
    assert_exact(ar_run_usage(run)->cost, 0.002101);
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.usage.cost = 0.0000004; /* a micro-unit store would round it away */
    int64_t seq = 0;
    assert_int_equal(ar_run_step(&seq, run, &step), AR_OK);
    assert_int_equal(seq, 3);
    assert_exact(ar_run_usage(run)->cost, 0.0021014);
    ar_record *rec = NULL;
    assert_int_equal(ar_run_complete(&rec, run, NULL, 0), AR_OK);
    assert_exact(rec->usage.cost, 0.0021014);
    ar_record_free(rec);
    ar_run_close(run);
    assert_int_equal(ar_store_get(&rec, store, "01M95K51ZV0001ZFNGA2EE3T9K", 1), AR_OK);
    assert_exact(rec->usage.cost, 0.0021014);
    assert_exact(rec->steps[0].usage.cost, 0.000001);
    assert_exact(rec->steps[2].usage.cost, 0.0000004);
    ar_record_free(rec);
    ar_store_close(store);
    remove_copy(dir, path);
}

/* The run the fixture left running gets the ownership epoch of a new run:
 * resumed twice, the first handle is fenced and the second carries on. */
static void test_upgraded_runs_have_one_writer_each(void **state)
{
    (void)state;
    const char *id = "01M95K528B0003GZCY906KV9X9";
    char *dir = NULL;
    char *path = fixture_copy(&dir);
    int rc;
    ar_store *a = open_store(path, 0, &rc);
    assert_int_equal(rc, AR_OK);
    char *schema = schema_text(path);
    assert_non_null(strstr(schema, "runs.owner INTEGER notnull=1 default=0 pk=0"));
    free(schema);
    ar_store *b = open_store(path, 0, &rc);
    assert_int_equal(rc, AR_OK);
    int64_t n = 0;
    assert_int_equal(ar_store_recover(&n, a, 0), AR_OK);
    assert_int_equal(n, 1);
    ar_run *ra = NULL, *rb = NULL;
    assert_int_equal(ar_run_resume(&ra, a, id, NULL), AR_OK);
    assert_int_equal(ar_store_recover(&n, b, 0), AR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ar_run_resume(&rb, b, id, NULL), AR_OK);
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    int64_t seq = 0;
    assert_int_equal(ar_run_step(&seq, ra, &step), AR_ESTATE);
    assert_non_null(strstr(ar_run_errmsg(ra), "resumed elsewhere"));
    assert_int_equal(ar_run_step(&seq, rb, &step), AR_OK);
    assert_int_equal(seq, 3);
    assert_int_equal(ar_run_complete(NULL, rb, NULL, 0), AR_OK);
    ar_run_close(ra);
    ar_run_close(rb);
    ar_store_close(a);
    ar_store_close(b);
    remove_copy(dir, path);
}

/* An upgraded file has the columns of forks and waits, empty for its old
 * runs, and its runs can be forked, wait and be answered. */
static void test_upgraded_runs_fork_wait_and_read_back(void **state)
{
    (void)state;
    const char *id = "01M95K521M0003BBGNPZYFC8GS";
    char *dir = NULL;
    char *path = fixture_copy(&dir);
    int rc;
    ar_store *store = open_store(path, 0, &rc);
    assert_int_equal(rc, AR_OK);
    char *schema = schema_text(path);
    assert_non_null(strstr(schema, "runs.forked_from TEXT"));
    assert_non_null(strstr(schema, "runs.forked_seq INTEGER"));
    assert_non_null(strstr(schema, "runs.request TEXT"));
    assert_non_null(strstr(schema, "runs.response TEXT"));
    free(schema);
    ar_record *old = test_get(store, id, 1);
    assert_null(old->forked_from);
    assert_int_equal(old->forked_seq, 0);
    assert_null(old->request);
    assert_null(old->response);
    ar_run *fork = NULL;
    ar_fork_opts fo = AR_FORK_OPTS_INIT;
    fo.at = 1;
    assert_int_equal(ar_run_fork(&fork, store, id, &fo), AR_OK);
    assert_int_equal(ar_run_iterations(fork), 1);
    ar_record *waiting = NULL;
    assert_int_equal(ar_run_wait(&waiting, fork, "{\"ok\":\"?\"}", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(waiting->status, AR_WAITING);
    char fork_id[32];
    snprintf(fork_id, sizeof fork_id, "%s", ar_run_id(fork));
    ar_run_close(fork);
    ar_store_close(store);
    store = open_store(path, 0, &rc);
    assert_int_equal(rc, AR_OK);
    ar_record *answered = NULL;
    assert_int_equal(ar_store_respond(&answered, store, fork_id, "true", AR_NUL_TERMINATED), AR_OK);
    ar_record *back = test_get(store, fork_id, 1);
    assert_string_equal(back->forked_from, id);
    assert_int_equal(back->forked_seq, 1);
    assert_string_equal(back->request, "{\"ok\":\"?\"}");
    assert_string_equal(back->response, "true");
    assert_int_equal(back->n_steps, 3);
    assert_exact(back->steps[0].usage.cost, old->steps[0].usage.cost);
    ar_record *again = test_get(store, id, 1);
    assert_int_equal(again->n_steps, old->n_steps);
    assert_int_equal(again->updated_at, old->updated_at);
    ar_record_free(old);
    ar_record_free(again);
    ar_record_free(back);
    ar_record_free(waiting);
    ar_record_free(answered);
    ar_store_close(store);
    remove_copy(dir, path);
}

static void test_readonly_open_of_schema1_file_refuses_with_eversion_and_changes_nothing(void **state)
{
    (void)state;
    char *dir = NULL;
    char *path = fixture_copy(&dir);
    size_t len_before = 0, len_after = 0;
    char *before = test_slurp(path, &len_before);
    int rc;
    ar_store *store = open_store(path, 1, &rc);
    assert_int_equal(rc, AR_EVERSION);
    const char *msg = ar_store_errmsg(store);
    if (!strstr(msg, "schema 1") || !strstr(msg, "open it writable once")) {
        print_error("unhelpful message: %s\n", msg);
        fail();
    }
    ar_store_close(store);
    char *after = test_slurp(path, &len_after);
    assert_int_equal(len_before, len_after);
    assert_memory_equal(before, after, len_before);
    free(before);
    free(after);
    /* opened writable once, it then reads as before, read-only too */
    store = open_store(path, 0, &rc);
    assert_int_equal(rc, AR_OK);
    ar_store_close(store);
    store = open_store(path, 1, &rc);
    assert_int_equal(rc, AR_OK);
    expect_fixture_figures(store);
    ar_store_close(store);
    remove_copy(dir, path);
}

/* For nth = 1, 2, ... fails the nth file operation of the upgrading open:
 * an open that fails leaves the file in schema 1 with every row as it was,
 * and the next open without the fault upgrades it completely. */
static void test_failed_upgrade_leaves_schema1_intact_and_a_later_open_upgrades(void **state)
{
    (void)state;
    char *pristine_dir = NULL;
    char *pristine = fixture_copy(&pristine_dir);
    char *raw = raw_schema1(pristine);
    assert_true(strncmp(raw, "1|", 2) == 0);
    assert_int_equal(faultvfs_install(), SQLITE_OK);
    faultvfs_skip_sync(1);
    long failures = 0;
    for (long nth = 1;; nth++) {
        char *dir = NULL;
        char *path = fixture_copy(&dir);
        faultvfs_arm(FAULTVFS_ALL, nth, 0, 0);
        int rc;
        ar_store *store = open_store(path, 0, &rc);
        faultvfs_clear();
        long fired = faultvfs_fired();
        if (rc != AR_OK) {
            failures++;
            if (rc != AR_EIO) {
                print_error("fault %ld: open failed with %s (%s), expected EIO\n", nth, ar_code_name(rc),
                            ar_store_errmsg(store));
                fail();
            }
            ar_store_close(store);
            char *now = raw_schema1(path);
            if (strcmp(now, raw) != 0) {
                print_error("fault %ld: the schema-1 file changed\n--- want\n%s\n--- got\n%s\n", nth, raw, now);
                fail();
            }
            free(now);
            store = open_store(path, 0, &rc);
            assert_int_equal(rc, AR_OK);
        }
        assert_int_equal(schema_version(store), AR_SCHEMA_VERSION);
        expect_fixture_figures(store);
        ar_store_close(store);
        remove_copy(dir, path);
        if (fired == 0)
            break;
        assert_true(nth < 10000);
    }
    faultvfs_skip_sync(0);
    faultvfs_uninstall();
    /* the faults reached the upgrade: the sweep tested something */
    assert_true(failures > 0);
    free(raw);
    remove_copy(pristine_dir, pristine);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_schema1_file_opens_upgraded_with_every_cost_unchanged),
    cmocka_unit_test(test_upgraded_run_continues_in_nano_units),
    cmocka_unit_test(test_upgraded_file_has_the_schema_of_a_new_file),
    cmocka_unit_test(test_upgraded_runs_have_one_writer_each),
    cmocka_unit_test(test_upgraded_runs_fork_wait_and_read_back),
    cmocka_unit_test(test_readonly_open_of_schema1_file_refuses_with_eversion_and_changes_nothing),
    cmocka_unit_test(test_failed_upgrade_leaves_schema1_intact_and_a_later_open_upgrades),
};

TEST_GROUP(migrate_group, "migrate", tests);
