/* test_totals.c -- cost kept to the nano-unit; totals past what is stored exactly are refused, never wrapped. */
#include "suite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "agentrun.h"

#define CAP_COST 9e9                              /* SPEC §6: the largest cost total */
#define CAP_COUNT INT64_C(9007199254740992)       /* 2^53: the largest token or counter total */

static ar_run *begin(ar_store *store, const ar_budget *budget)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "agent";
    spec.goal = "goal";
    if (budget)
        spec.budget = *budget;
    ar_run *run = NULL;
    int rc = ar_run_begin(&run, store, &spec);
    if (rc != AR_OK) {
        print_error("begin: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    return run;
}

/* A step with these figures and one optional extra counter. */
static int step(ar_run *run, int64_t *seq, int64_t in, int64_t out, const char *counter, int64_t value, double cost)
{
    ar_counter c = { counter, value };
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    s.usage.input_tokens = in;
    s.usage.output_tokens = out;
    s.usage.cost = cost;
    if (counter) {
        s.usage.extra = &c;
        s.usage.n_extra = 1;
    }
    return ar_run_step(seq, run, &s);
}

static int64_t step_ok(ar_run *run, int64_t in, int64_t out, const char *counter, int64_t value, double cost)
{
    int64_t seq = 0;
    int rc = step(run, &seq, in, out, counter, value, cost);
    if (rc != AR_OK) {
        print_error("step: %s: %s\n", ar_code_name(rc), ar_run_errmsg(run));
        fail();
    }
    return seq;
}

/* The message holds every one of the NULL-terminated words. */
static void expect_words(const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    for (const char *w = va_arg(ap, const char *); w; w = va_arg(ap, const char *)) {
        if (!strstr(msg, w)) {
            print_error("'%s' is not in the message: %s\n", w, msg);
            va_end(ap);
            fail();
        }
    }
    va_end(ap);
}

static void expect_refused(ar_run *run, int64_t in, int64_t out, const char *counter, int64_t value, double cost,
                           const char *field, const char *range)
{
    int64_t seq = -1;
    int rc = step(run, &seq, in, out, counter, value, cost);
    if (rc != AR_EMISUSE) {
        print_error("step of %s was not refused: %s: %s\n", field, ar_code_name(rc), ar_run_errmsg(run));
        fail();
    }
    assert_int_equal(seq, 0);
    expect_words(ar_run_errmsg(run), field, range, (const char *)NULL);
}

static void test_cost_is_kept_to_the_nano_unit(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_cost = 0.0001;
    ar_run *run = begin(store, &b);
    /* 4 tokens at $0.10 per million: kept, not rounded away */
    for (int i = 0; i < 249; i++)
        step_ok(run, 4, 0, NULL, 0, 0.0000004);
    assert_exact(ar_run_usage(run)->cost, 0.0000996);
    assert_int_equal(ar_run_check(NULL, run), AR_OK);
    step_ok(run, 4, 0, NULL, 0, 0.0000004);
    ar_exhaustion e;
    assert_int_equal(ar_run_check(&e, run), AR_EBUDGET);
    assert_string_equal(e.limit, "max_cost");
    assert_exact(e.limit_value, 0.0001);
    assert_exact(e.value, 0.0001);
    /* the nine-decimal value nearest the double; half a nano-unit rounds up */
    step_ok(run, 0, 0, NULL, 0, 0.000000001);
    step_ok(run, 0, 0, NULL, 0, 0.0000000004);
    step_ok(run, 0, 0, NULL, 0, 0.0000000015);
    assert_exact(ar_run_usage(run)->cost, 0.000100003);
    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_exact(rec->usage.cost, 0.000100003);
    assert_exact(rec->steps[0].usage.cost, 0.0000004);
    assert_exact(rec->steps[250].usage.cost, 0.000000001);
    assert_exact(rec->steps[251].usage.cost, 0);
    assert_exact(rec->steps[252].usage.cost, 0.000000002);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_step_cost_outside_0_to_9e9_is_misuse_stating_the_range(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin(store, NULL);
    const double bad[] = { 9e12, 9000000000.000001, -0.5, NAN, INFINITY };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused(run, 0, 0, NULL, 0, bad[i], "step.cost", "0..9e9");
    assert_int_equal(test_stored_steps(store), 0);
    /* the cap itself is a cost a step may have */
    assert_int_equal(step_ok(run, 0, 0, NULL, 0, CAP_COST), 1);
    assert_exact(ar_run_usage(run)->cost, 9e9);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_cost_total_past_9e9_is_refused_and_the_run_takes_the_next_step(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_cost = CAP_COST;
    ar_run *run = begin(store, &b);
    step_ok(run, 0, 0, NULL, 0, 4.5e9);
    assert_int_equal(ar_run_check(NULL, run), AR_OK);
    step_ok(run, 0, 0, NULL, 0, 4.5e9);
    assert_exact(ar_run_usage(run)->cost, 9e9);
    expect_refused(run, 0, 0, NULL, 0, 0.000000001, "cost", "9e9");
    expect_refused(run, 0, 0, NULL, 0, 4.5e9, "cost", "9e9");
    assert_int_equal(test_stored_steps(store), 2);
    assert_exact(ar_run_usage(run)->cost, 9e9);
    /* never wrapped: the limit is reached, not passed by a negative total */
    ar_exhaustion e;
    assert_int_equal(ar_run_check(&e, run), AR_EBUDGET);
    assert_string_equal(e.limit, "max_cost");
    assert_exact(e.value, 9e9);
    assert_int_equal(step_ok(run, 1, 1, NULL, 0, 0), 3);
    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_exact(rec->usage.cost, 9e9);
    assert_int_equal(rec->iterations, 3);
    assert_int_equal(rec->n_steps, 3);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_token_and_counter_totals_past_2_53_are_refused_each(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    /* input_tokens, output_tokens, an extra counter: each on its own run */
    for (int field = 0; field < 3; field++) {
        ar_run *run = begin(store, NULL);
        int64_t in = field == 0, out = field == 1, extra = field == 2;
        const char *name = field == 0 ? "input_tokens" : field == 1 ? "output_tokens" : "cache_read_tokens";
        step_ok(run, in * CAP_COUNT, out * CAP_COUNT, "cache_read_tokens", extra * CAP_COUNT, 0);
        int64_t before = test_stored_steps(store);
        expect_refused(run, in, out, "cache_read_tokens", extra, 0, name, "2^53");
        assert_int_equal(test_stored_steps(store), before);
        const ar_usage *u = ar_run_usage(run);
        assert_int_equal(u->input_tokens, in * CAP_COUNT);
        assert_int_equal(u->output_tokens, out * CAP_COUNT);
        assert_int_equal(u->extra[0].value, extra * CAP_COUNT);
        assert_int_equal(step_ok(run, 0, 0, NULL, 0, 0.5), 2);
        ar_record *rec = NULL;
        assert_int_equal(ar_run_complete(&rec, run, NULL, 0), AR_OK);
        assert_int_equal(rec->usage.input_tokens, in * CAP_COUNT);
        assert_int_equal(rec->usage.output_tokens, out * CAP_COUNT);
        assert_int_equal(rec->usage.extra[0].value, extra * CAP_COUNT);
        assert_int_equal(rec->iterations, 2);
        ar_record_free(rec);
        ar_run_close(run);
    }
    ar_store_close(store);
}

static void test_total_tokens_past_2_53_is_refused_though_input_and_output_are_not(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin(store, NULL);
    /* one step whose own input + output is past 2^53 */
    expect_refused(run, CAP_COUNT, 1, NULL, 0, 0, "total_tokens", "2^53");
    step_ok(run, CAP_COUNT / 2, CAP_COUNT / 2, NULL, 0, 0);
    assert_int_equal(ar_run_usage(run)->total_tokens, CAP_COUNT);
    expect_refused(run, 1, 0, NULL, 0, 0, "total_tokens", "2^53");
    expect_refused(run, 0, 1, NULL, 0, 0, "total_tokens", "2^53");
    assert_int_equal(test_stored_steps(store), 1);
    assert_int_equal(step_ok(run, 0, 0, NULL, 0, 0), 2);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_budget_limits_outside_their_range_state_the_range(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    struct { ar_budget b; const char *words; } cases[] = {
        { AR_BUDGET_INIT, "budget.max_cost must be a number in 0..9e9" },
        { AR_BUDGET_INIT, "budget.max_cost must be a number in 0..9e9" },
        { AR_BUDGET_INIT, "budget.max_tokens must be an integer in 0..2^53" },
        { AR_BUDGET_INIT, "budget.max_steps must be an integer in 0..2^53" },
        { AR_BUDGET_INIT, "budget.max_input_tokens must be an integer in 0..2^53" },
        { AR_BUDGET_INIT, "budget.max_output_tokens must be an integer in 0..2^53" },
        { AR_BUDGET_INIT, "budget.max_seconds must be a number in 0..1e12" },
        { AR_BUDGET_INIT, "budget.max_seconds must be a number in 0..1e12" },
    };
    cases[0].b.max_cost = 1e13;
    cases[1].b.max_cost = -0.5;
    cases[2].b.max_tokens = CAP_COUNT + 1;
    cases[3].b.max_steps = -7;
    cases[4].b.max_input_tokens = INT64_MAX;
    cases[5].b.max_output_tokens = CAP_COUNT * 2;
    cases[6].b.max_seconds = 1e13;
    cases[7].b.max_seconds = NAN;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ar_run_spec spec = AR_RUN_SPEC_INIT;
        spec.agent = "a";
        spec.goal = "g";
        spec.budget = cases[i].b;
        ar_run *run = NULL;
        assert_int_equal(ar_run_begin(&run, store, &spec), AR_EMISUSE);
        expect_words(ar_store_errmsg(store), cases[i].words, (const char *)NULL);
        ar_record f = AR_RECORD_INIT;
        f.agent = "a";
        f.goal = "g";
        f.budget = cases[i].b;
        ar_record *r = NULL;
        char err[256] = "";
        assert_int_equal(ar_record_completed(&r, &f, NULL, 0, err, sizeof err), AR_EMISUSE);
        expect_words(err, cases[i].words, (const char *)NULL);
    }
    ar_run_query q = AR_RUN_QUERY_INIT;
    int64_t n = -1;
    assert_int_equal(ar_runs_count(&n, store, &q), AR_OK);
    assert_int_equal(n, 0);
    /* the ends of the ranges are limits a run may have */
    ar_budget b = AR_BUDGET_INIT;
    b.max_cost = CAP_COST;
    b.max_tokens = CAP_COUNT;
    b.max_steps = CAP_COUNT;
    b.max_seconds = 1e12;
    ar_run *run = begin(store, &b);
    ar_record *rec = NULL;
    assert_int_equal(ar_run_complete(&rec, run, NULL, 0), AR_OK);
    assert_exact(rec->budget.max_cost, 9e9);
    assert_int_equal(rec->budget.max_tokens, CAP_COUNT);
    assert_int_equal(rec->budget.max_steps, CAP_COUNT);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_record_whose_steps_sum_past_a_cap_is_refused_and_writes_nothing(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    /* steps[1] and steps[2] each fit; their sum does not */
    ar_step steps[2] = { AR_STEP_INIT, AR_STEP_INIT };
    ar_counter c = { "cache_read_tokens", 0 };
    struct { double cost; int64_t in, out, extra; const char *words; } cases[] = {
        { 5e9, 0, 0, 0, "cost" },
        { 0, CAP_COUNT, 0, 0, "input_tokens" },
        { 0, 0, CAP_COUNT, 0, "output_tokens" },
        { 0, 0, 0, CAP_COUNT, "cache_read_tokens" },
        { 0, CAP_COUNT / 4 + 1, CAP_COUNT / 4, 0, "total_tokens" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c.value = cases[i].extra;
        for (int k = 0; k < 2; k++) {
            steps[k].kind = "llm";
            steps[k].usage.cost = cases[i].cost;
            steps[k].usage.input_tokens = cases[i].in;
            steps[k].usage.output_tokens = cases[i].out;
            steps[k].usage.extra = &c;
            steps[k].usage.n_extra = 1;
        }
        ar_record f = AR_RECORD_INIT;
        f.agent = "a";
        f.goal = "g";
        f.steps = steps;
        f.n_steps = 2;
        ar_record *r = NULL;
        char err[256] = "";
        assert_int_equal(ar_record_completed(&r, &f, NULL, 0, err, sizeof err), AR_EMISUSE);
        assert_null(r);
        expect_words(err, cases[i].words, i == 0 ? "9e9" : "2^53", (const char *)NULL);
        f.status = AR_COMPLETED;
        char *id = NULL;
        assert_int_equal(ar_store_write(&id, store, &f), AR_EMISUSE);
        assert_null(id);
        expect_words(ar_store_errmsg(store), cases[i].words, (const char *)NULL);
    }
    /* given totals past the caps are refused too */
    ar_record f = AR_RECORD_INIT;
    f.agent = "a";
    f.goal = "g";
    f.status = AR_COMPLETED;
    f.usage.total_tokens = 0;
    f.usage.cost = 1e10;
    char *id = NULL;
    assert_int_equal(ar_store_write(&id, store, &f), AR_EMISUSE);
    expect_words(ar_store_errmsg(store), "usage.cost", "0..9e9", (const char *)NULL);
    f.usage.cost = 0;
    f.usage.input_tokens = CAP_COUNT;
    f.usage.output_tokens = 1;
    assert_int_equal(ar_store_write(&id, store, &f), AR_EMISUSE);
    expect_words(ar_store_errmsg(store), "total_tokens", "2^53", (const char *)NULL);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.runs, 0);
    assert_int_equal(info.steps, 0);
    ar_store_close(store);
}

static void test_resumed_run_near_the_caps_keeps_exact_totals_and_refuses_past_them(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_steps = 1;
    ar_run *run = begin(store, &b);
    /* 8999999999.999999999 has no double of its own: only exact nano-units keep it */
    step_ok(run, CAP_COUNT - 1, 0, "cache_read_tokens", CAP_COUNT - 1, 4.5e9);
    step_ok(run, 0, 0, NULL, 0, 4499999999.0);
    step_ok(run, 0, 0, NULL, 0, 0.999999999);
    ar_exhaustion e;
    assert_int_equal(ar_run_check(&e, run), AR_EBUDGET);
    assert_int_equal(ar_run_exhaust(NULL, run, &e), AR_OK);
    char id[27];
    memcpy(id, ar_run_id(run), 27);
    ar_run_close(run);
    ar_budget none = AR_BUDGET_INIT;
    assert_int_equal(ar_run_resume(&run, store, id, &none), AR_OK);
    assert_int_equal(step_ok(run, 1, 0, "cache_read_tokens", 1, 0.000000001), 4);
    expect_refused(run, 0, 0, NULL, 0, 0.000000001, "cost", "9e9");
    expect_refused(run, 1, 0, NULL, 0, 0, "input_tokens", "2^53");
    expect_refused(run, 0, 0, "cache_read_tokens", 1, 0, "cache_read_tokens", "2^53");
    assert_int_equal(step_ok(run, 0, 0, NULL, 0, 0), 5);
    ar_record *rec = NULL;
    assert_int_equal(ar_run_complete(&rec, run, NULL, 0), AR_OK);
    assert_exact(rec->usage.cost, 9e9);
    assert_int_equal(rec->usage.input_tokens, CAP_COUNT);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

/* Writes a completed run of one step with these figures. */
static void put_run(ar_store *store, int64_t in, double cost)
{
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    s.usage.input_tokens = in;
    s.usage.cost = cost;
    ar_record f = AR_RECORD_INIT;
    f.agent = "a";
    f.goal = "g";
    f.status = AR_COMPLETED;
    f.steps = &s;
    f.n_steps = 1;
    char *id = NULL;
    int rc = ar_store_write(&id, store, &f);
    if (rc != AR_OK) {
        print_error("write: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    ar_free(id);
}

static void test_stats_over_runs_near_the_caps_are_exact_then_saturate(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run_query q = AR_RUN_QUERY_INIT;
    ar_stats st;
    for (int i = 0; i < 3; i++)
        put_run(store, CAP_COUNT, CAP_COST);
    put_run(store, 1, 0.000000001);
    assert_int_equal(ar_runs_stats(&st, store, &q), AR_OK);
    assert_int_equal(st.runs, 4);
    /* past 2^53 a double would lose the last token */
    assert_int_equal(st.input_tokens, 3 * CAP_COUNT + 1);
    assert_int_equal(st.total_tokens, 3 * CAP_COUNT + 1);
    assert_int_equal(st.iterations, 4);
    /* 2.7e19 nano-units are past int64: the nearest double, never an error or a wrap */
    assert_exact(st.cost, 2.7e10);
    /* beyond INT64_MAX (over 1,024 runs at 2^53) a token sum reads as INT64_MAX */
    for (int i = 0; i < 1100; i++)
        put_run(store, CAP_COUNT, 0);
    assert_int_equal(ar_runs_stats(&st, store, &q), AR_OK);
    assert_int_equal(st.runs, 1104);
    assert_int_equal(st.input_tokens, INT64_MAX);
    assert_int_equal(st.total_tokens, INT64_MAX);
    assert_int_equal(st.output_tokens, 0);
    assert_exact(st.cost, 2.7e10);
    ar_store_close(store);
}

/* Schema 1 took max_cost up to 9e12 and integer limits up to int64: such a
 * budget, stored, keeps its figures and stays unreached when the run resumes. */
static void test_budget_stored_beyond_the_ranges_resumes_unchanged(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "legacy.db");
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, path, NULL), AR_OK);
    ar_budget b = AR_BUDGET_INIT;
    b.max_steps = 1;
    ar_run *run = begin(store, &b);
    step_ok(run, 10, 0, NULL, 0, 2.5);
    ar_exhaustion e;
    assert_int_equal(ar_run_check(&e, run), AR_EBUDGET);
    assert_int_equal(ar_run_exhaust(NULL, run, &e), AR_OK);
    char id[27];
    memcpy(id, ar_run_id(run), 27);
    ar_run_close(run);
    ar_store_close(store);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE runs SET budget = '{\"max_tokens\":1152921504606846976,"
                                      "\"max_cost\":10000000000}'", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(ar_store_open(&store, path, NULL), AR_OK);
    assert_int_equal(ar_run_resume(&run, store, id, NULL), AR_OK);
    assert_exact(ar_run_budget(run)->max_cost, 1e10);
    assert_int_equal(ar_run_budget(run)->max_tokens, INT64_C(1152921504606846976));
    assert_int_equal(ar_run_check(NULL, run), AR_OK);
    step_ok(run, 0, 0, NULL, 0, 4.5e9);
    assert_int_equal(ar_run_check(NULL, run), AR_OK);
    ar_record *rec = test_get(store, id, 0);
    assert_exact(rec->budget.max_cost, 1e10);
    assert_int_equal(rec->budget.max_tokens, INT64_C(1152921504606846976));
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
    free(path);
    tmpdir_remove(dir);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_cost_is_kept_to_the_nano_unit),
    cmocka_unit_test(test_step_cost_outside_0_to_9e9_is_misuse_stating_the_range),
    cmocka_unit_test(test_cost_total_past_9e9_is_refused_and_the_run_takes_the_next_step),
    cmocka_unit_test(test_token_and_counter_totals_past_2_53_are_refused_each),
    cmocka_unit_test(test_total_tokens_past_2_53_is_refused_though_input_and_output_are_not),
    cmocka_unit_test(test_budget_limits_outside_their_range_state_the_range),
    cmocka_unit_test(test_record_whose_steps_sum_past_a_cap_is_refused_and_writes_nothing),
    cmocka_unit_test(test_resumed_run_near_the_caps_keeps_exact_totals_and_refuses_past_them),
    cmocka_unit_test(test_stats_over_runs_near_the_caps_are_exact_then_saturate),
};

/* Tests about SQLite files and SQLite itself (groups.def: SQLite only). */
static const struct CMUnitTest file_tests[] = {
    cmocka_unit_test(test_budget_stored_beyond_the_ranges_resumes_unchanged),
};

TEST_GROUP(totals_group, "totals", tests);
TEST_GROUP(totals_file_group, "totals_file", file_tests);
