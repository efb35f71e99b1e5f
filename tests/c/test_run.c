/* test_run.c -- recording runs: begin, steps and usage, exact cost, budgets, finishing, checkpoints, resume, recovery. */
#include "suite.h"

#include <time.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agentrun.h"

static ar_run *begin_spec(ar_store *store, const ar_run_spec *spec)
{
    ar_run *run = NULL;
    int rc = ar_run_begin(&run, store, spec);
    if (rc != AR_OK) {
        print_error("begin: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    assert_non_null(run);
    return run;
}

/* Begins a run of agent "agent" under `budget` (NULL: unlimited). */
static ar_run *begin_budget(ar_store *store, const ar_budget *budget)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "agent";
    spec.goal = "goal";
    if (budget)
        spec.budget = *budget;
    return begin_spec(store, &spec);
}

/* Records an "llm" step with the given usage and returns its seq. */
static int64_t step_usage(ar_run *run, int64_t in, int64_t out, double cost)
{
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.usage.input_tokens = in;
    step.usage.output_tokens = out;
    step.usage.cost = cost;
    int64_t seq = 0;
    int rc = ar_run_step(&seq, run, &step);
    if (rc != AR_OK) {
        print_error("step: %s: %s\n", ar_code_name(rc), ar_run_errmsg(run));
        fail();
    }
    return seq;
}

static int64_t run_count(ar_store *store)
{
    ar_run_query q = AR_RUN_QUERY_INIT;
    int64_t n = -1;
    assert_int_equal(ar_runs_count(&n, store, &q), AR_OK);
    return n;
}

static void expect_counter(const ar_usage *u, size_t i, const char *name, int64_t value)
{
    assert_true(i < u->n_extra);
    assert_string_equal(u->extra[i].name, name);
    assert_int_equal(u->extra[i].value, value);
}

/* ---- begin -------------------------------------------------------------- */

static void test_begin_requires_agent_and_goal(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    ar_run *run = (ar_run *)store;
    spec.goal = "g";
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_EMISUSE);
    assert_null(run);
    assert_string_equal(ar_store_errmsg(store), "agent is required");
    spec.agent = "a";
    spec.goal = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_EMISUSE);
    assert_string_equal(ar_store_errmsg(store), "goal is required");
    assert_int_equal(ar_run_begin(&run, store, NULL), AR_EMISUSE);
    assert_int_equal(ar_run_begin(NULL, store, &spec), AR_EMISUSE);
    assert_int_equal(ar_run_begin(&run, NULL, &spec), AR_EMISUSE);
    assert_int_equal(run_count(store), 0);
    ar_store_close(store);
}

static void test_begin_refuses_an_empty_agent_but_takes_an_empty_goal(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    ar_run *run = NULL;
    spec.agent = "";
    spec.goal = "g";
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_EMISUSE);
    assert_string_equal(ar_store_errmsg(store), "agent must not be empty");
    assert_int_equal(run_count(store), 0);
    spec.agent = "a";
    spec.goal = "";
    run = begin_spec(store, &spec);
    ar_record *rec = test_get(store, ar_run_id(run), 0);
    assert_string_equal(rec->goal, "");
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_begin_refuses_invalid_utf8_in_every_text_field(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    const char *bad = "caf\xC3";
    const char *fields[] = { "agent", "goal", "user", "edition", "parent" };
    for (int i = 0; i < 5; i++) {
        ar_run_spec spec = AR_RUN_SPEC_INIT;
        spec.agent = "a";
        spec.goal = "g";
        const char **slot[] = { &spec.agent, &spec.goal, &spec.user, &spec.edition, &spec.parent };
        *slot[i] = bad;
        ar_run *run = NULL;
        assert_int_equal(ar_run_begin(&run, store, &spec), AR_EMISUSE);
        assert_null(run);
        char want[64];
        snprintf(want, sizeof want, "%s is not valid UTF-8", fields[i]);
        assert_string_equal(ar_store_errmsg(store), want);
    }
    assert_int_equal(run_count(store), 0);
    ar_store_close(store);
}

static void test_begin_metadata_must_be_a_json_object(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    const char *refused[] = { "[1]", "\"tag\"", "1", "null", "{", "{\"a\":NaN}", "" };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        ar_run_spec spec = AR_RUN_SPEC_INIT;
        spec.agent = "a";
        spec.goal = "g";
        spec.metadata = refused[i];
        ar_run *run = NULL;
        int rc = ar_run_begin(&run, store, &spec);
        if (rc != AR_EJSON) {
            print_error("metadata %s: got %s\n", refused[i], ar_code_name(rc));
            fail();
        }
        assert_non_null(strstr(ar_store_errmsg(store), "metadata"));
    }
    assert_int_equal(run_count(store), 0);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "g";
    spec.metadata = " { \"tags\" : [\"x\", \"y\"], \"n\": 1.50 } ";
    ar_run *run = begin_spec(store, &spec);
    ar_record *rec = test_get(store, ar_run_id(run), 0);
    assert_string_equal(rec->metadata, spec.metadata);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_begin_refuses_negative_budget_limits(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    for (int i = 0; i < 8; i++) {
        ar_budget b = AR_BUDGET_INIT;
        switch (i) {
        case 0: b.max_steps = -2; break;
        case 1: b.max_input_tokens = -2; break;
        case 2: b.max_output_tokens = -5; break;
        case 3: b.max_tokens = INT64_MIN; break;
        case 4: b.max_cost = -0.5; break;
        case 5: b.max_cost = NAN; break;
        case 6: b.max_seconds = -2.0; break;
        default: b.max_seconds = NAN; break;
        }
        ar_run_spec spec = AR_RUN_SPEC_INIT;
        spec.agent = "a";
        spec.goal = "g";
        spec.budget = b;
        ar_run *run = NULL;
        assert_int_equal(ar_run_begin(&run, store, &spec), AR_EMISUSE);
        assert_null(run);
        assert_non_null(strstr(ar_store_errmsg(store), "budget.max_"));
    }
    assert_int_equal(run_count(store), 0);
    ar_store_close(store);
}

static void test_begin_stores_every_field_of_a_running_run(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "planner";
    spec.goal = "plan a trip \xE2\x9C\x88";
    spec.user = "u-1";
    spec.edition = "v2";
    spec.parent = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    spec.metadata = "{\"k\":\"v\"}";
    spec.budget.max_steps = 10;
    spec.budget.max_input_tokens = 1000;
    spec.budget.max_output_tokens = 2000;
    spec.budget.max_tokens = 2500;
    spec.budget.max_cost = 0.25;
    spec.budget.max_seconds = 90.5;
    ar_run *run = begin_spec(store, &spec);
    assert_int_equal(strlen(ar_run_id(run)), 26);
    assert_int_equal(ar_run_status(run), AR_RUNNING);
    assert_int_equal(ar_run_iterations(run), 0);
    const ar_budget *b = ar_run_budget(run);
    assert_int_equal(b->max_steps, 10);
    assert_exact(b->max_seconds, 90.5);

    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_string_equal(rec->id, ar_run_id(run));
    assert_string_equal(rec->agent, "planner");
    assert_string_equal(rec->goal, spec.goal);
    assert_string_equal(rec->user, "u-1");
    assert_string_equal(rec->edition, "v2");
    assert_string_equal(rec->parent, spec.parent);
    assert_string_equal(rec->metadata, "{\"k\":\"v\"}");
    assert_int_equal(rec->status, AR_RUNNING);
    assert_null(rec->output);
    assert_null(rec->error);
    assert_null(rec->limit.limit);
    assert_int_equal(rec->budget.max_steps, 10);
    assert_int_equal(rec->budget.max_input_tokens, 1000);
    assert_int_equal(rec->budget.max_output_tokens, 2000);
    assert_int_equal(rec->budget.max_tokens, 2500);
    assert_exact(rec->budget.max_cost, 0.25);
    assert_exact(rec->budget.max_seconds, 90.5);
    assert_int_equal(rec->iterations, 0);
    assert_int_equal(rec->usage.input_tokens, 0);
    assert_int_equal(rec->usage.output_tokens, 0);
    assert_int_equal(rec->usage.total_tokens, 0);
    assert_exact(rec->usage.cost, 0.0);
    assert_int_equal(rec->usage.n_extra, 0);
    assert_int_equal(rec->created_at, ar_run_created_at(run));
    assert_true(rec->created_at > 1600000000000LL);
    assert_true(rec->finished_at == AR_UNSET);
    assert_true(rec->latency_ms == AR_UNSET);
    assert_int_equal(rec->updated_at, rec->created_at);
    assert_int_equal(rec->n_steps, 0);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_unlimited_budget_reads_back_as_no_limits(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    ar_record *rec = test_get(store, ar_run_id(run), 0);
    assert_int_equal(rec->budget.max_steps, AR_NO_LIMIT);
    assert_int_equal(rec->budget.max_input_tokens, AR_NO_LIMIT);
    assert_int_equal(rec->budget.max_output_tokens, AR_NO_LIMIT);
    assert_int_equal(rec->budget.max_tokens, AR_NO_LIMIT);
    assert_exact(rec->budget.max_cost, AR_NO_LIMIT);
    assert_exact(rec->budget.max_seconds, AR_NO_LIMIT);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

/* ---- steps and usage ---------------------------------------------------- */

static void test_steps_are_numbered_1_2_3(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    for (int64_t i = 1; i <= 5; i++) {
        assert_int_equal(step_usage(run, 0, 0, 0.0), i);
        assert_int_equal(ar_run_iterations(run), i);
    }
    ar_step step = AR_STEP_INIT;
    step.kind = "tool";
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    assert_int_equal(ar_run_iterations(run), 6);
    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->iterations, 6);
    assert_int_equal(rec->n_steps, 6);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(rec->steps[i].seq, (int64_t)i + 1);
    assert_string_equal(rec->steps[5].kind, "tool");
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_step_fields_are_stored_as_given(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    ar_counter extra[] = { { "cache_read_tokens", 40 } };
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.name = "model-x";
    step.content = "{\"role\":\"assistant\",\"text\":\"hi\\u0000there\"}trailing";
    step.content_len = strlen("{\"role\":\"assistant\",\"text\":\"hi\\u0000there\"}");
    step.usage = (ar_usage){ 12, 34, 46, 0.0025, 1, extra };
    step.duration_ms = 321;
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    ar_step bare = AR_STEP_INIT;
    bare.kind = "thought";
    assert_int_equal(ar_run_step(NULL, run, &bare), AR_OK);

    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->n_steps, 2);
    const ar_step *s = &rec->steps[0];
    assert_int_equal(s->seq, 1);
    assert_string_equal(s->kind, "llm");
    assert_string_equal(s->name, "model-x");
    assert_int_equal(s->content_len, step.content_len);
    assert_memory_equal(s->content, step.content, step.content_len);
    assert_int_equal(s->content[s->content_len], '\0');
    assert_int_equal(s->usage.input_tokens, 12);
    assert_int_equal(s->usage.output_tokens, 34);
    assert_int_equal(s->usage.total_tokens, 46);
    assert_exact(s->usage.cost, 0.0025);
    assert_int_equal(s->usage.n_extra, 1);
    expect_counter(&s->usage, 0, "cache_read_tokens", 40);
    assert_int_equal(s->duration_ms, 321);
    assert_true(s->at >= rec->created_at);
    s = &rec->steps[1];
    assert_int_equal(s->seq, 2);
    assert_string_equal(s->kind, "thought");
    assert_null(s->name);
    assert_null(s->content);
    assert_int_equal(s->content_len, 0);
    assert_int_equal(s->usage.total_tokens, 0);
    assert_int_equal(s->usage.n_extra, 0);
    assert_int_equal(s->duration_ms, 0);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_usage_sums_tokens_cost_and_extra_counters(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    ar_counter c1[] = { { "cache_read_tokens", 5 } };
    ar_counter c2[] = { { "reasoning_tokens", 3 }, { "cache_read_tokens", 7 } };
    ar_counter c3[] = { { "audio.seconds", 2 } };
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.usage = (ar_usage){ 100, 20, 0, 0.5, 1, c1 };
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    step.usage = (ar_usage){ 50, 10, 60, 0.25, 2, c2 };
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    step.usage = (ar_usage){ 0, 1, 0, 0.0, 1, c3 };
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);

    const ar_usage *u = ar_run_usage(run);
    assert_int_equal(u->input_tokens, 150);
    assert_int_equal(u->output_tokens, 31);
    assert_int_equal(u->total_tokens, 181);
    assert_exact(u->cost, 0.75);
    assert_int_equal(u->n_extra, 3);
    expect_counter(u, 0, "audio.seconds", 2);
    expect_counter(u, 1, "cache_read_tokens", 12);
    expect_counter(u, 2, "reasoning_tokens", 3);

    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->usage.input_tokens, 150);
    assert_int_equal(rec->usage.output_tokens, 31);
    assert_int_equal(rec->usage.total_tokens, 181);
    assert_exact(rec->usage.cost, 0.75);
    assert_int_equal(rec->usage.n_extra, 3);
    expect_counter(&rec->usage, 0, "audio.seconds", 2);
    expect_counter(&rec->usage, 1, "cache_read_tokens", 12);
    expect_counter(&rec->usage, 2, "reasoning_tokens", 3);
    assert_int_equal(rec->steps[1].usage.n_extra, 2);
    expect_counter(&rec->steps[1].usage, 0, "cache_read_tokens", 7);
    expect_counter(&rec->steps[1].usage, 1, "reasoning_tokens", 3);
    assert_int_equal(rec->steps[1].usage.total_tokens, 60);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_total_tokens_must_equal_input_plus_output(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.usage = (ar_usage){ 2, 3, 6, 0.0, 0, NULL };
    assert_int_equal(ar_run_step(NULL, run, &step), AR_EMISUSE);
    assert_non_null(strstr(ar_run_errmsg(run), "total_tokens"));
    step.usage.total_tokens = 4;
    assert_int_equal(ar_run_step(NULL, run, &step), AR_EMISUSE);
    assert_int_equal(ar_run_iterations(run), 0);
    assert_int_equal(ar_run_usage(run)->input_tokens, 0);
    step.usage.total_tokens = 5;
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    step.usage.total_tokens = 0;
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    assert_int_equal(ar_run_usage(run)->total_tokens, 10);
    assert_int_equal(test_stored_steps(store), 2);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_negative_or_non_finite_usage_is_refused(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    for (int i = 0; i < 7; i++) {
        ar_step step = AR_STEP_INIT;
        step.kind = "llm";
        switch (i) {
        case 0: step.usage.input_tokens = -1; break;
        case 1: step.usage.output_tokens = -1; break;
        case 2: step.usage.cost = -0.01; break;
        case 3: step.usage.cost = NAN; break;
        case 4: step.usage.cost = INFINITY; break;
        case 5: step.duration_ms = -1; break;
        default: step.usage.input_tokens = 9007199254740993LL; break;
        }
        int64_t seq = -1;
        int rc = ar_run_step(&seq, run, &step);
        if (rc != AR_EMISUSE) {
            print_error("case %d: got %s\n", i, ar_code_name(rc));
            fail();
        }
        assert_int_equal(seq, 0);
    }
    assert_int_equal(ar_run_iterations(run), 0);
    assert_int_equal(test_stored_steps(store), 0);
    assert_int_equal(step_usage(run, 1, 1, 0.0), 1);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_step_kind_is_required_and_text_must_be_utf8(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    ar_step step = AR_STEP_INIT;
    assert_int_equal(ar_run_step(NULL, run, &step), AR_EMISUSE);
    assert_string_equal(ar_run_errmsg(run), "step.kind is required");
    step.kind = "";
    assert_int_equal(ar_run_step(NULL, run, &step), AR_EMISUSE);
    step.kind = "ll\xFFm";
    assert_int_equal(ar_run_step(NULL, run, &step), AR_EMISUSE);
    step.kind = "llm";
    step.name = "\xC0\x80";
    assert_int_equal(ar_run_step(NULL, run, &step), AR_EMISUSE);
    assert_int_equal(ar_run_step(NULL, run, NULL), AR_EMISUSE);
    assert_int_equal(ar_run_step(NULL, NULL, &step), AR_EMISUSE);
    assert_int_equal(test_stored_steps(store), 0);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_counter_names_follow_the_rules(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    char longest[65], too_long[66];
    memset(longest, 'a', 64);
    longest[64] = '\0';
    memset(too_long, 'b', 65);
    too_long[65] = '\0';
    const char *refused[] = { "", "has space", "caf\xC3\xA9", "a/b", "x:y", too_long,
                              "input_tokens", "output_tokens", "total_tokens", "cost", NULL };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        ar_counter c[] = { { refused[i], 1 } };
        ar_step step = AR_STEP_INIT;
        step.kind = "llm";
        step.usage.n_extra = 1;
        step.usage.extra = c;
        int rc = ar_run_step(NULL, run, &step);
        if (rc != AR_EMISUSE) {
            print_error("counter name \"%s\": got %s\n", refused[i] ? refused[i] : "(null)", ar_code_name(rc));
            fail();
        }
    }
    ar_counter twice[] = { { "x", 1 }, { "x", 2 } };
    ar_counter negative[] = { { "x", -1 } };
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.usage.n_extra = 2;
    step.usage.extra = twice;
    assert_int_equal(ar_run_step(NULL, run, &step), AR_EMISUSE);
    assert_non_null(strstr(ar_run_errmsg(run), "twice"));
    step.usage.n_extra = 1;
    step.usage.extra = negative;
    assert_int_equal(ar_run_step(NULL, run, &step), AR_EMISUSE);
    step.usage.extra = NULL;
    assert_int_equal(ar_run_step(NULL, run, &step), AR_EMISUSE);
    assert_int_equal(test_stored_steps(store), 0);
    assert_int_equal(ar_run_usage(run)->n_extra, 0);

    ar_counter fine[] = { { longest, 1 }, { "Cache.read-tokens_2", 2 } };
    step.usage.n_extra = 2;
    step.usage.extra = fine;
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    const ar_usage *u = ar_run_usage(run);
    assert_int_equal(u->n_extra, 2);
    expect_counter(u, 0, "Cache.read-tokens_2", 2);
    expect_counter(u, 1, longest, 1);
    ar_run_close(run);
    ar_store_close(store);
}

/* ---- exact cost --------------------------------------------------------- */

static void test_ten_thousand_steps_of_0_0001_cost_exactly_1(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    for (int i = 0; i < 10000; i++)
        step_usage(run, 0, 0, 0.0001);
    assert_exact(ar_run_usage(run)->cost, 1.0);
    ar_record *rec = NULL;
    assert_int_equal(ar_run_complete(&rec, run, NULL, 0), AR_OK);
    assert_exact(rec->usage.cost, 1.0);
    assert_int_equal(rec->iterations, 10000);
    ar_record_free(rec);
    rec = test_get(store, ar_run_id(run), 0);
    assert_exact(rec->usage.cost, 1.0);
    ar_record_free(rec);
    ar_run_query q = AR_RUN_QUERY_INIT;
    ar_stats stats;
    assert_int_equal(ar_runs_stats(&stats, store, &q), AR_OK);
    assert_exact(stats.cost, 1.0);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_costs_0_1_and_0_2_read_back_as_0_3(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    step_usage(run, 0, 0, 0.1);
    step_usage(run, 0, 0, 0.2);
    assert_true(0.1 + 0.2 != 0.3);
    assert_exact(ar_run_usage(run)->cost, 0.3);
    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_exact(rec->usage.cost, 0.3);
    assert_exact(rec->steps[0].usage.cost, 0.1);
    assert_exact(rec->steps[1].usage.cost, 0.2);
    ar_record_free(rec);
    /* beyond the ninth decimal, cost rounds to the nearest nano-unit */
    step_usage(run, 0, 0, 0.0000000004);
    step_usage(run, 0, 0, 0.0000000006);
    assert_exact(ar_run_usage(run)->cost, 0.300000001);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_bad_step_json_is_ejson_and_writes_nothing(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    step_usage(run, 1, 1, 0.01);
    const char *bad[] = { "{\"a\":}", "[1,2", "NaN", "\"caf\xC3\"", "9007199254740993", "'x'", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ar_step step = AR_STEP_INIT;
        step.kind = "llm";
        step.content = bad[i];
        step.usage.input_tokens = 100;
        step.usage.cost = 1.0;
        int64_t seq = -1;
        int rc = ar_run_step(&seq, run, &step);
        if (rc != AR_EJSON) {
            print_error("content %s: got %s\n", bad[i], ar_code_name(rc));
            fail();
        }
        assert_int_equal(seq, 0);
        assert_non_null(strstr(ar_run_errmsg(run), "step.content"));
    }
    assert_int_equal(ar_run_iterations(run), 1);
    assert_int_equal(ar_run_usage(run)->input_tokens, 1);
    assert_exact(ar_run_usage(run)->cost, 0.01);
    assert_int_equal(test_stored_steps(store), 1);
    assert_int_equal(step_usage(run, 0, 0, 0.0), 2);
    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->iterations, 2);
    assert_int_equal(rec->usage.input_tokens, 1);
    assert_int_equal(rec->n_steps, 2);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

/* ---- budgets ------------------------------------------------------------ */

/* Expects check() to report `limit` with the given figures. */
static void expect_exhausted(ar_run *run, const char *limit, double limit_value, double value)
{
    ar_exhaustion e = { NULL, -7, -7 };
    int rc = ar_run_check(&e, run);
    if (rc != AR_EBUDGET) {
        print_error("check: got %s, want EBUDGET (%s)\n", ar_code_name(rc), limit);
        fail();
    }
    assert_non_null(e.limit);
    assert_string_equal(e.limit, limit);
    assert_exact(e.limit_value, limit_value);
    assert_exact(e.value, value);
    assert_int_equal(ar_run_status(run), AR_RUNNING);
}

static void test_check_reports_max_steps(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_steps = 2;
    ar_run *run = begin_budget(store, &b);
    assert_int_equal(ar_run_check(NULL, run), AR_OK);
    step_usage(run, 0, 0, 0.0);
    assert_int_equal(ar_run_check(NULL, run), AR_OK);
    step_usage(run, 0, 0, 0.0);
    expect_exhausted(run, "max_steps", 2, 2);
    assert_int_equal(ar_run_check(NULL, run), AR_EBUDGET);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_check_reports_max_input_tokens(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_input_tokens = 100;
    ar_run *run = begin_budget(store, &b);
    step_usage(run, 99, 1000, 0.0);
    assert_int_equal(ar_run_check(NULL, run), AR_OK);
    step_usage(run, 11, 0, 0.0);
    expect_exhausted(run, "max_input_tokens", 100, 110);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_check_reports_max_output_tokens(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_output_tokens = 50;
    ar_run *run = begin_budget(store, &b);
    step_usage(run, 1000, 49, 0.0);
    assert_int_equal(ar_run_check(NULL, run), AR_OK);
    step_usage(run, 0, 1, 0.0);
    expect_exhausted(run, "max_output_tokens", 50, 50);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_check_reports_max_tokens_as_input_plus_output(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_tokens = 100;
    ar_run *run = begin_budget(store, &b);
    ar_counter other[] = { { "cache_read_tokens", 1000 } };
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.usage = (ar_usage){ 60, 39, 0, 0.0, 1, other };
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    assert_int_equal(ar_run_check(NULL, run), AR_OK);
    step_usage(run, 0, 3, 0.0);
    expect_exhausted(run, "max_tokens", 100, 102);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_check_reports_max_cost_exactly(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_cost = 0.3;
    ar_run *run = begin_budget(store, &b);
    step_usage(run, 0, 0, 0.1);
    assert_int_equal(ar_run_check(NULL, run), AR_OK);
    /* 0.1 + 0.2 is below 0.3 in doubles, but the nano-unit sum reaches it */
    step_usage(run, 0, 0, 0.2);
    expect_exhausted(run, "max_cost", 0.3, 0.3);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_check_reports_max_seconds(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_seconds = 0;
    ar_run *run = begin_budget(store, &b);
    ar_exhaustion e = { NULL, -7, -7 };
    assert_int_equal(ar_run_check(&e, run), AR_EBUDGET);
    assert_string_equal(e.limit, "max_seconds");
    assert_exact(e.limit_value, 0.0);
    assert_true(e.value >= 0.0);
    assert_non_null(strstr(ar_run_errmsg(run), "max_seconds"));
    ar_run_close(run);

    b.max_seconds = 3600;
    run = begin_budget(store, &b);
    assert_int_equal(ar_run_check(&e, run), AR_OK);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_check_reports_limits_in_the_documented_order(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    const char *order[] = { "max_steps", "max_input_tokens", "max_output_tokens",
                            "max_tokens", "max_cost", "max_seconds" };
    const double limit_values[] = { 1, 1, 1, 1, 0.000001, 0 };
    const double values[] = { 1, 1, 1, 2, 0.000001, -1 };
    for (int first = 0; first < 6; first++) {
        /* every limit from `first` on is reached; the earliest one is reported */
        ar_budget b = AR_BUDGET_INIT;
        if (first <= 0) b.max_steps = 1;
        if (first <= 1) b.max_input_tokens = 1;
        if (first <= 2) b.max_output_tokens = 1;
        if (first <= 3) b.max_tokens = 1;
        if (first <= 4) b.max_cost = 0.000001;
        b.max_seconds = 0;
        ar_run *run = begin_budget(store, &b);
        step_usage(run, 1, 1, 0.000001);
        ar_exhaustion e = { NULL, 0, 0 };
        assert_int_equal(ar_run_check(&e, run), AR_EBUDGET);
        assert_string_equal(e.limit, order[first]);
        assert_exact(e.limit_value, limit_values[first]);
        if (values[first] >= 0)
            assert_exact(e.value, values[first]);
        ar_run_close(run);
    }
    ar_store_close(store);
}

static void test_a_step_past_the_budget_is_still_recorded(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_steps = 1;
    b.max_cost = 0.01;
    ar_run *run = begin_budget(store, &b);
    step_usage(run, 0, 0, 0.02);
    assert_int_equal(ar_run_check(NULL, run), AR_EBUDGET);
    assert_int_equal(step_usage(run, 5, 5, 0.5), 2);
    assert_int_equal(step_usage(run, 5, 5, 0.5), 3);
    assert_int_equal(ar_run_status(run), AR_RUNNING);
    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->iterations, 3);
    assert_int_equal(rec->n_steps, 3);
    assert_exact(rec->usage.cost, 1.02);
    assert_int_equal(rec->status, AR_RUNNING);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

/* ---- finishing ---------------------------------------------------------- */

/* Checks that every call that needs a running run now returns AR_ESTATE. */
static void expect_finished(ar_run *run)
{
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    int64_t seq = -1;
    ar_record *rec = (ar_record *)run;
    ar_exhaustion why = { "max_steps", 1, 1 };
    assert_int_equal(ar_run_step(&seq, run, &step), AR_ESTATE);
    assert_int_equal(seq, 0);
    assert_int_equal(ar_run_complete(&rec, run, "1", AR_NUL_TERMINATED), AR_ESTATE);
    assert_null(rec);
    assert_int_equal(ar_run_fail(NULL, run, "again"), AR_ESTATE);
    assert_int_equal(ar_run_exhaust(NULL, run, &why), AR_ESTATE);
    assert_int_equal(ar_run_check(NULL, run), AR_ESTATE);
    assert_int_equal(ar_run_checkpoint(run, "{}", AR_NUL_TERMINATED), AR_ESTATE);
}

static void test_complete_records_the_output_and_ends_the_run(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    step_usage(run, 10, 20, 0.05);
    step_usage(run, 1, 2, 0.05);
    ar_record *rec = NULL;
    const char *output = "{\"answer\": \"42\", \"sources\": [1, 2]}";
    assert_int_equal(ar_run_complete(&rec, run, output, AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(ar_run_status(run), AR_COMPLETED);
    assert_string_equal(rec->id, ar_run_id(run));
    assert_int_equal(rec->status, AR_COMPLETED);
    assert_string_equal(rec->output, output);
    assert_null(rec->error);
    assert_null(rec->limit.limit);
    assert_int_equal(rec->iterations, 2);
    assert_int_equal(rec->usage.input_tokens, 11);
    assert_int_equal(rec->usage.output_tokens, 22);
    assert_int_equal(rec->usage.total_tokens, 33);
    assert_exact(rec->usage.cost, 0.1);
    assert_true(rec->finished_at != AR_UNSET);
    assert_true(rec->finished_at >= rec->created_at);
    assert_int_equal(rec->latency_ms, rec->finished_at - rec->created_at);
    assert_int_equal(rec->updated_at, rec->finished_at);
    assert_int_equal(rec->n_steps, 0);
    assert_null(rec->steps);
    ar_record_free(rec);
    expect_finished(run);

    rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->status, AR_COMPLETED);
    assert_string_equal(rec->output, output);
    assert_int_equal(rec->n_steps, 2);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_complete_with_bad_output_json_keeps_the_run_open(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    ar_record *rec = (ar_record *)run;
    assert_int_equal(ar_run_complete(&rec, run, "{oops}", AR_NUL_TERMINATED), AR_EJSON);
    assert_null(rec);
    assert_non_null(strstr(ar_run_errmsg(run), "output"));
    assert_int_equal(ar_run_status(run), AR_RUNNING);
    rec = test_get(store, ar_run_id(run), 0);
    assert_int_equal(rec->status, AR_RUNNING);
    ar_record_free(rec);
    /* an explicit length bounds the output; NULL output is no output */
    assert_int_equal(ar_run_complete(&rec, run, "\"ok\"garbage", 4), AR_OK);
    assert_string_equal(rec->output, "\"ok\"");
    ar_record_free(rec);
    ar_run_close(run);

    run = begin_budget(store, NULL);
    assert_int_equal(ar_run_complete(&rec, run, NULL, 0), AR_OK);
    assert_null(rec->output);
    assert_int_equal(rec->status, AR_COMPLETED);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_fail_records_the_error_and_ends_the_run(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    step_usage(run, 1, 1, 0.0);
    ar_record *rec = NULL;
    assert_int_equal(ar_run_fail(&rec, run, "tool crashed: timeout"), AR_OK);
    assert_int_equal(rec->status, AR_FAILED);
    assert_string_equal(rec->error, "tool crashed: timeout");
    assert_null(rec->output);
    assert_null(rec->limit.limit);
    assert_int_equal(rec->iterations, 1);
    assert_true(rec->finished_at != AR_UNSET);
    ar_record_free(rec);
    assert_int_equal(ar_run_status(run), AR_FAILED);
    expect_finished(run);
    ar_run_close(run);

    run = begin_budget(store, NULL);
    assert_int_equal(ar_run_fail(&rec, run, NULL), AR_OK);
    assert_string_equal(rec->error, "failed");
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_fail_replaces_invalid_utf8_with_u_fffd(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    ar_record *rec = NULL;
    assert_int_equal(ar_run_fail(&rec, run, "bad \xFF byte, cut \xE2\x82 end \xC3\xA9"), AR_OK);
    const char *want = "bad \xEF\xBF\xBD byte, cut \xEF\xBF\xBD end \xC3\xA9";
    assert_string_equal(rec->error, want);
    ar_record_free(rec);
    rec = test_get(store, ar_run_id(run), 0);
    assert_string_equal(rec->error, want);
    ar_record_free(rec);
    ar_run_close(run);

    /* long enough to need more than the stack buffer */
    char *big = malloc(2001);
    assert_non_null(big);
    memset(big, '\x80', 2000);
    big[2000] = '\0';
    run = begin_budget(store, NULL);
    assert_int_equal(ar_run_fail(&rec, run, big), AR_OK);
    assert_int_equal(strlen(rec->error), 6000);
    for (size_t i = 0; i < 6000; i += 3)
        assert_memory_equal(rec->error + i, "\xEF\xBF\xBD", 3);
    ar_record_free(rec);
    ar_run_close(run);
    free(big);
    ar_store_close(store);
}

static void test_exhaust_records_the_limit_and_ends_the_run(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_cost = 0.5;
    ar_run *run = begin_budget(store, &b);
    step_usage(run, 0, 0, 0.75);
    ar_exhaustion e;
    assert_int_equal(ar_run_check(&e, run), AR_EBUDGET);
    ar_record *rec = NULL;
    assert_int_equal(ar_run_exhaust(&rec, run, &e), AR_OK);
    assert_int_equal(rec->status, AR_BUDGET_EXHAUSTED);
    assert_string_equal(rec->limit.limit, "max_cost");
    assert_exact(rec->limit.limit_value, 0.5);
    assert_exact(rec->limit.value, 0.75);
    assert_null(rec->output);
    assert_null(rec->error);
    assert_int_equal(rec->iterations, 1);
    ar_record_free(rec);
    expect_finished(run);
    rec = test_get(store, ar_run_id(run), 0);
    assert_int_equal(rec->status, AR_BUDGET_EXHAUSTED);
    assert_string_equal(rec->limit.limit, "max_cost");
    assert_exact(rec->limit.limit_value, 0.5);
    assert_exact(rec->limit.value, 0.75);
    assert_exact(rec->budget.max_cost, 0.5);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_exhaust_without_a_reason_uses_the_reached_limit(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_steps = 1;
    ar_run *run = begin_budget(store, &b);
    assert_int_equal(ar_run_exhaust(NULL, run, NULL), AR_EMISUSE);
    assert_string_equal(ar_run_errmsg(run), "no budget limit is reached");
    ar_exhaustion unknown = { "max_step", 1, 1 };
    assert_int_equal(ar_run_exhaust(NULL, run, &unknown), AR_EMISUSE);
    assert_non_null(strstr(ar_run_errmsg(run), "max_step"));
    ar_exhaustion none = { NULL, 1, 1 };
    assert_int_equal(ar_run_exhaust(NULL, run, &none), AR_EMISUSE);
    assert_int_equal(ar_run_status(run), AR_RUNNING);
    step_usage(run, 0, 0, 0.0);
    ar_record *rec = NULL;
    assert_int_equal(ar_run_exhaust(&rec, run, NULL), AR_OK);
    assert_string_equal(rec->limit.limit, "max_steps");
    assert_exact(rec->limit.limit_value, 1);
    assert_exact(rec->limit.value, 1);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_exhaust_refuses_figures_that_are_not_finite_or_negative(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    const ar_exhaustion bad[] = {
        { "max_cost", NAN, 1 }, { "max_cost", 1, NAN }, { "max_seconds", INFINITY, 1 },
        { "max_seconds", 1, -INFINITY }, { "max_steps", -1, 0 }, { "max_steps", 1, -2 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = ar_run_exhaust(NULL, run, &bad[i]);
        if (rc != AR_EMISUSE)
            fail_msg("case %zu: got %s", i, ar_code_name(rc));
        assert_int_equal(ar_run_status(run), AR_RUNNING);
    }
    ar_record *rec = test_get(store, ar_run_id(run), 0);
    assert_int_equal(rec->status, AR_RUNNING);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_closing_a_running_run_fails_it(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    step_usage(run, 1, 2, 0.0);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    ar_run_close(run);
    ar_record *rec = test_get(store, id, 0);
    assert_int_equal(rec->status, AR_FAILED);
    assert_string_equal(rec->error, "run closed before it finished");
    assert_int_equal(rec->iterations, 1);
    assert_true(rec->finished_at != AR_UNSET);
    ar_record_free(rec);

    /* a finished run is left as it was */
    run = begin_budget(store, NULL);
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    assert_int_equal(ar_run_complete(NULL, run, "true", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(run);
    rec = test_get(store, id, 0);
    assert_int_equal(rec->status, AR_COMPLETED);
    assert_null(rec->error);
    ar_record_free(rec);
    ar_store_close(store);
}

/* ---- checkpoints -------------------------------------------------------- */

static void test_checkpoint_keeps_the_latest_state_and_its_seq(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    char *cp = (char *)"x";
    int64_t seq = -1;
    assert_int_equal(ar_store_checkpoint(&cp, &seq, store, ar_run_id(run)), AR_OK);
    assert_null(cp);
    assert_int_equal(seq, 0);
    assert_int_equal(ar_run_checkpoint(run, "\"start\"", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(ar_store_checkpoint(&cp, &seq, store, ar_run_id(run)), AR_OK);
    assert_string_equal(cp, "\"start\"");
    assert_int_equal(seq, 0);
    ar_free(cp);

    step_usage(run, 0, 0, 0.0);
    step_usage(run, 0, 0, 0.0);
    assert_int_equal(ar_run_checkpoint(run, "{\"todo\": [1, 2]}", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(ar_store_checkpoint(&cp, &seq, store, ar_run_id(run)), AR_OK);
    assert_string_equal(cp, "{\"todo\": [1, 2]}");
    assert_int_equal(seq, 2);
    ar_free(cp);

    step_usage(run, 0, 0, 0.0);
    assert_int_equal(ar_run_checkpoint(run, "[3]xyz", 3), AR_OK);
    assert_int_equal(ar_store_checkpoint(&cp, &seq, store, ar_run_id(run)), AR_OK);
    assert_string_equal(cp, "[3]");
    assert_int_equal(seq, 3);
    ar_free(cp);

    assert_int_equal(ar_run_checkpoint(run, "{bad", AR_NUL_TERMINATED), AR_EJSON);
    assert_non_null(strstr(ar_run_errmsg(run), "state"));
    assert_int_equal(ar_run_checkpoint(run, NULL, 0), AR_EMISUSE);
    assert_int_equal(ar_store_checkpoint(&cp, &seq, store, ar_run_id(run)), AR_OK);
    assert_string_equal(cp, "[3]");
    ar_free(cp);
    assert_int_equal(ar_store_checkpoint(&cp, NULL, store, ar_run_id(run)), AR_OK);
    assert_string_equal(cp, "[3]");
    ar_free(cp);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_checkpoint_of_an_unknown_run_is_enotfound(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    char *cp = (char *)"x";
    int64_t seq = -1;
    assert_int_equal(ar_store_checkpoint(&cp, &seq, store, "01ARZ3NDEKTSV4RRFFQ69G5FAV"), AR_ENOTFOUND);
    assert_null(cp);
    assert_int_equal(seq, 0);
    assert_int_equal(ar_store_errcode(store), AR_ENOTFOUND);
    assert_int_equal(ar_store_checkpoint(&cp, &seq, store, "not an id"), AR_ENOTFOUND);
    assert_int_equal(ar_store_checkpoint(&cp, &seq, store, NULL), AR_EMISUSE);
    assert_int_equal(ar_store_checkpoint(NULL, &seq, store, "x"), AR_EMISUSE);
    ar_store_close(store);
}

/* ---- resume ------------------------------------------------------------- */

static void test_resume_continues_seq_usage_and_takes_the_new_budget(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_steps = 2;
    b.max_cost = 5;
    ar_run *run = begin_budget(store, &b);
    ar_counter extra[] = { { "cache_read_tokens", 9 } };
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.usage = (ar_usage){ 10, 1, 0, 0.1, 1, extra };
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    assert_int_equal(ar_run_checkpoint(run, "{\"at\":2}", AR_NUL_TERMINATED), AR_OK);
    ar_exhaustion e;
    assert_int_equal(ar_run_check(&e, run), AR_EBUDGET);
    assert_int_equal(ar_run_exhaust(NULL, run, &e), AR_OK);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    int64_t created = ar_run_created_at(run);
    ar_run_close(run);

    ar_budget more = AR_BUDGET_INIT;
    more.max_steps = 4;
    ar_run *again = NULL;
    assert_int_equal(ar_run_resume(&again, store, id, &more), AR_OK);
    assert_string_equal(ar_run_id(again), id);
    assert_int_equal(ar_run_status(again), AR_RUNNING);
    assert_int_equal(ar_run_iterations(again), 2);
    assert_int_equal(ar_run_created_at(again), created);
    const ar_usage *u = ar_run_usage(again);
    assert_int_equal(u->input_tokens, 20);
    assert_int_equal(u->output_tokens, 2);
    assert_exact(u->cost, 0.2);
    assert_int_equal(u->n_extra, 1);
    expect_counter(u, 0, "cache_read_tokens", 18);
    assert_int_equal(ar_run_budget(again)->max_steps, 4);
    assert_exact(ar_run_budget(again)->max_cost, AR_NO_LIMIT);

    ar_record *rec = test_get(store, id, 0);
    assert_int_equal(rec->status, AR_RUNNING);
    assert_null(rec->limit.limit);
    assert_true(rec->finished_at == AR_UNSET);
    assert_int_equal(rec->budget.max_steps, 4);
    assert_exact(rec->budget.max_cost, AR_NO_LIMIT);
    ar_record_free(rec);

    char *cp = NULL;
    int64_t cp_seq = 0;
    assert_int_equal(ar_store_checkpoint(&cp, &cp_seq, store, id), AR_OK);
    assert_string_equal(cp, "{\"at\":2}");
    assert_int_equal(cp_seq, 2);
    ar_free(cp);

    assert_int_equal(ar_run_check(NULL, again), AR_OK);
    int64_t seq = 0;
    assert_int_equal(ar_run_step(&seq, again, &step), AR_OK);
    assert_int_equal(seq, 3);
    assert_int_equal(ar_run_step(&seq, again, &step), AR_OK);
    assert_int_equal(seq, 4);
    assert_int_equal(ar_run_check(&e, again), AR_EBUDGET);
    assert_string_equal(e.limit, "max_steps");
    assert_exact(e.value, 4);
    assert_int_equal(ar_run_complete(&rec, again, "\"done\"", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(rec->iterations, 4);
    assert_int_equal(rec->usage.input_tokens, 40);
    assert_exact(rec->usage.cost, 0.4);
    assert_int_equal(rec->usage.n_extra, 1);
    expect_counter(&rec->usage, 0, "cache_read_tokens", 36);
    assert_int_equal(rec->created_at, created);
    ar_record_free(rec);
    ar_run_close(again);

    rec = test_get(store, id, 1);
    assert_int_equal(rec->n_steps, 4);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(rec->steps[i].seq, (int64_t)i + 1);
    ar_record_free(rec);
    ar_store_close(store);
}

static void test_resume_without_a_budget_keeps_the_old_one(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_budget b = AR_BUDGET_INIT;
    b.max_steps = 1;
    b.max_tokens = 77;
    ar_run *run = begin_budget(store, &b);
    step_usage(run, 0, 0, 0.0);
    assert_int_equal(ar_run_exhaust(NULL, run, NULL), AR_OK);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    ar_run_close(run);
    ar_run *again = NULL;
    assert_int_equal(ar_run_resume(&again, store, id, NULL), AR_OK);
    assert_int_equal(ar_run_budget(again)->max_steps, 1);
    assert_int_equal(ar_run_budget(again)->max_tokens, 77);
    assert_int_equal(ar_run_check(NULL, again), AR_EBUDGET);
    ar_run_close(again);
    ar_store_close(store);
}

static void test_resume_refuses_other_statuses_and_unknown_ids(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *running = begin_budget(store, NULL);
    ar_run *completed = begin_budget(store, NULL);
    ar_run *failed = begin_budget(store, NULL);
    assert_int_equal(ar_run_complete(NULL, completed, NULL, 0), AR_OK);
    assert_int_equal(ar_run_fail(NULL, failed, "x"), AR_OK);
    ar_run *r = (ar_run *)store;
    assert_int_equal(ar_run_resume(&r, store, ar_run_id(running), NULL), AR_ESTATE);
    assert_null(r);
    assert_non_null(strstr(ar_store_errmsg(store), "running"));
    assert_int_equal(ar_run_resume(&r, store, ar_run_id(completed), NULL), AR_ESTATE);
    assert_non_null(strstr(ar_store_errmsg(store), "completed"));
    assert_int_equal(ar_run_resume(&r, store, ar_run_id(failed), NULL), AR_ESTATE);
    assert_int_equal(ar_run_resume(&r, store, "01ARZ3NDEKTSV4RRFFQ69G5FAV", NULL), AR_ENOTFOUND);
    assert_null(r);
    assert_int_equal(ar_run_resume(&r, store, NULL, NULL), AR_EMISUSE);
    ar_budget negative = AR_BUDGET_INIT;
    negative.max_steps = -3;
    assert_int_equal(ar_run_resume(&r, store, ar_run_id(failed), &negative), AR_EMISUSE);
    ar_record *rec = test_get(store, ar_run_id(completed), 0);
    assert_int_equal(rec->status, AR_COMPLETED);
    ar_record_free(rec);
    /* the still-open handle is unaffected */
    assert_int_equal(step_usage(running, 0, 0, 0.0), 1);
    ar_run_close(running);
    ar_run_close(completed);
    ar_run_close(failed);
    ar_store_close(store);
}

/* ---- recovery ----------------------------------------------------------- */

/* In a child process: begins a run in the store at `path` (opened with
 * opts), records two steps and is killed without closing anything, as a
 * crashed writer would be. The id goes to fd first. Frees path, its copy of
 * the parent's. */
static void crash_after_two_steps(char *path, const ar_open_opts *opts, int fd)
{
    ar_store *store = NULL;
    ar_run *run = NULL;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "crasher";
    spec.goal = "g";
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.usage.input_tokens = 3;
    int opened = ar_store_open(&store, path, opts);
    free(path);
    if (opened || ar_run_begin(&run, store, &spec) ||
        ar_run_step(NULL, run, &step) || ar_run_step(NULL, run, &step))
        _exit(2);
    size_t n = strlen(ar_run_id(run));
    if (write(fd, ar_run_id(run), n) != (ssize_t)n)
        _exit(3);
    kill(getpid(), SIGKILL);
    _exit(4);
}

static void test_a_saved_checkpoint_counts_as_activity_for_recover(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = begin_budget(store, NULL);
    ar_record *rec = test_get(store, ar_run_id(run), 0);
    int64_t begun = rec->updated_at;
    ar_record_free(rec);
    struct timespec pause = { 0, 20 * 1000000L };
    nanosleep(&pause, NULL);
    assert_int_equal(ar_run_checkpoint(run, "{\"plan\":1}", AR_NUL_TERMINATED), AR_OK);
    rec = test_get(store, ar_run_id(run), 0);
    assert_true(rec->updated_at > begun);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_recover_marks_a_crashed_writers_run_interrupted(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    char *path = test_location(&opts);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        crash_after_two_steps(path, &opts, fds[1]);
    }
    close(fds[1]);
    char id[64] = "";
    ssize_t got = read(fds[0], id, sizeof id - 1);
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    assert_int_equal(got, 26);
    id[got] = '\0';

    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, path, &opts), AR_OK);
    ar_record *rec = test_get(store, id, 0);
    assert_int_equal(rec->status, AR_RUNNING);
    assert_int_equal(rec->iterations, 2);
    int64_t last_activity = rec->updated_at;
    ar_record_free(rec);
    ar_run *other = begin_budget(store, NULL);
    ar_run *r = NULL;
    assert_int_equal(ar_run_resume(&r, store, id, NULL), AR_ESTATE);

    int64_t n = -1;
    assert_int_equal(ar_store_recover(&n, store, 3600), AR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ar_store_recover(&n, store, -1), AR_EMISUSE);
    assert_int_equal(ar_store_recover(&n, store, NAN), AR_EMISUSE);
    assert_int_equal(ar_store_recover(&n, store, 0), AR_OK);
    assert_int_equal(n, 2);
    rec = test_get(store, id, 0);
    assert_int_equal(rec->status, AR_INTERRUPTED);
    assert_int_equal(rec->iterations, 2);
    /* an interrupted run ends at its last activity: it has an age and a latency */
    assert_int_equal(rec->finished_at, last_activity);
    assert_int_equal(rec->latency_ms, last_activity - rec->created_at);
    ar_record_free(rec);
    assert_int_equal(ar_store_recover(&n, store, 0), AR_OK);
    assert_int_equal(n, 0);

    /* this process's own run was swept too: its handle can no longer step */
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    assert_int_equal(ar_run_step(NULL, other, &step), AR_ESTATE);
    ar_run_close(other);

    assert_int_equal(ar_run_resume(&r, store, id, NULL), AR_OK);
    assert_int_equal(ar_run_iterations(r), 2);
    assert_int_equal(ar_run_usage(r)->input_tokens, 6);
    int64_t seq = 0;
    assert_int_equal(ar_run_step(&seq, r, &step), AR_OK);
    assert_int_equal(seq, 3);
    assert_int_equal(ar_run_complete(NULL, r, "\"recovered\"", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(r);
    rec = test_get(store, id, 1);
    assert_int_equal(rec->status, AR_COMPLETED);
    assert_int_equal(rec->n_steps, 3);
    ar_record_free(rec);
    ar_store_close(store);
    free(path);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_begin_requires_agent_and_goal),
    cmocka_unit_test(test_begin_refuses_an_empty_agent_but_takes_an_empty_goal),
    cmocka_unit_test(test_begin_refuses_invalid_utf8_in_every_text_field),
    cmocka_unit_test(test_begin_metadata_must_be_a_json_object),
    cmocka_unit_test(test_begin_refuses_negative_budget_limits),
    cmocka_unit_test(test_begin_stores_every_field_of_a_running_run),
    cmocka_unit_test(test_unlimited_budget_reads_back_as_no_limits),
    cmocka_unit_test(test_steps_are_numbered_1_2_3),
    cmocka_unit_test(test_step_fields_are_stored_as_given),
    cmocka_unit_test(test_usage_sums_tokens_cost_and_extra_counters),
    cmocka_unit_test(test_total_tokens_must_equal_input_plus_output),
    cmocka_unit_test(test_negative_or_non_finite_usage_is_refused),
    cmocka_unit_test(test_step_kind_is_required_and_text_must_be_utf8),
    cmocka_unit_test(test_counter_names_follow_the_rules),
    cmocka_unit_test(test_ten_thousand_steps_of_0_0001_cost_exactly_1),
    cmocka_unit_test(test_costs_0_1_and_0_2_read_back_as_0_3),
    cmocka_unit_test(test_bad_step_json_is_ejson_and_writes_nothing),
    cmocka_unit_test(test_check_reports_max_steps),
    cmocka_unit_test(test_check_reports_max_input_tokens),
    cmocka_unit_test(test_check_reports_max_output_tokens),
    cmocka_unit_test(test_check_reports_max_tokens_as_input_plus_output),
    cmocka_unit_test(test_check_reports_max_cost_exactly),
    cmocka_unit_test(test_check_reports_max_seconds),
    cmocka_unit_test(test_check_reports_limits_in_the_documented_order),
    cmocka_unit_test(test_a_step_past_the_budget_is_still_recorded),
    cmocka_unit_test(test_complete_records_the_output_and_ends_the_run),
    cmocka_unit_test(test_complete_with_bad_output_json_keeps_the_run_open),
    cmocka_unit_test(test_fail_records_the_error_and_ends_the_run),
    cmocka_unit_test(test_fail_replaces_invalid_utf8_with_u_fffd),
    cmocka_unit_test(test_exhaust_records_the_limit_and_ends_the_run),
    cmocka_unit_test(test_exhaust_without_a_reason_uses_the_reached_limit),
    cmocka_unit_test(test_exhaust_refuses_figures_that_are_not_finite_or_negative),
    cmocka_unit_test(test_closing_a_running_run_fails_it),
    cmocka_unit_test(test_checkpoint_keeps_the_latest_state_and_its_seq),
    cmocka_unit_test(test_checkpoint_of_an_unknown_run_is_enotfound),
    cmocka_unit_test(test_resume_continues_seq_usage_and_takes_the_new_budget),
    cmocka_unit_test(test_resume_without_a_budget_keeps_the_old_one),
    cmocka_unit_test(test_resume_refuses_other_statuses_and_unknown_ids),
    cmocka_unit_test(test_a_saved_checkpoint_counts_as_activity_for_recover),
    cmocka_unit_test(test_recover_marks_a_crashed_writers_run_interrupted),
};

TEST_GROUP(run_group, "run", tests);
