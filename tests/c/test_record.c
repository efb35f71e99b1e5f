/* test_record.c -- the record factory and whole-record writes, compared with runs recorded step by step. */
#include "suite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agentrun.h"

static void info(ar_store *store, int64_t *runs, int64_t *steps)
{
    ar_store_info i;
    assert_int_equal(ar_store_info_get(&i, store), AR_OK);
    *runs = i.runs;
    *steps = i.steps;
}

static char *write_ok(ar_store *store, const ar_record *rec)
{
    char *id = NULL;
    int rc = ar_store_write(&id, store, rec);
    if (rc != AR_OK) {
        print_error("write: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    assert_non_null(id);
    assert_int_equal(strlen(id), 26);
    return id;
}

/* Equal strings, both NULL allowed; `what` names the field on failure. */
static void same_str(const char *what, const char *a, const char *b)
{
    if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0)) {
        print_error("%s: \"%s\" != \"%s\"\n", what, a ? a : "(null)", b ? b : "(null)");
        fail();
    }
}

static void same_usage(const ar_usage *a, const ar_usage *b)
{
    assert_int_equal(a->input_tokens, b->input_tokens);
    assert_int_equal(a->output_tokens, b->output_tokens);
    assert_int_equal(a->total_tokens, b->total_tokens);
    assert_exact(a->cost, b->cost);
    assert_int_equal(a->n_extra, b->n_extra);
    for (size_t i = 0; i < a->n_extra; i++) {
        same_str("counter", a->extra[i].name, b->extra[i].name);
        assert_int_equal(a->extra[i].value, b->extra[i].value);
    }
}

/* Compares every field of two records and their steps except ids and times
 * (id, created_at, finished_at, updated_at, latency_ms, step at). */
static void same_record(const ar_record *a, const ar_record *b)
{
    same_str("agent", a->agent, b->agent);
    same_str("goal", a->goal, b->goal);
    same_str("user", a->user, b->user);
    same_str("edition", a->edition, b->edition);
    same_str("parent", a->parent, b->parent);
    assert_int_equal(a->status, b->status);
    same_str("output", a->output, b->output);
    same_str("error", a->error, b->error);
    same_str("limit", a->limit.limit, b->limit.limit);
    assert_exact(a->limit.limit_value, b->limit.limit_value);
    assert_exact(a->limit.value, b->limit.value);
    assert_int_equal(a->budget.max_steps, b->budget.max_steps);
    assert_int_equal(a->budget.max_input_tokens, b->budget.max_input_tokens);
    assert_int_equal(a->budget.max_output_tokens, b->budget.max_output_tokens);
    assert_int_equal(a->budget.max_tokens, b->budget.max_tokens);
    assert_exact(a->budget.max_cost, b->budget.max_cost);
    assert_exact(a->budget.max_seconds, b->budget.max_seconds);
    assert_int_equal(a->iterations, b->iterations);
    same_usage(&a->usage, &b->usage);
    same_str("metadata", a->metadata, b->metadata);
    assert_int_equal(a->n_steps, b->n_steps);
    for (size_t i = 0; i < a->n_steps; i++) {
        const ar_step *x = &a->steps[i], *y = &b->steps[i];
        assert_int_equal(x->seq, y->seq);
        same_str("kind", x->kind, y->kind);
        same_str("name", x->name, y->name);
        assert_int_equal(x->content_len, y->content_len);
        assert_int_equal(x->content == NULL, y->content == NULL);
        if (x->content)
            assert_memory_equal(x->content, y->content, x->content_len);
        same_usage(&x->usage, &y->usage);
        assert_int_equal(x->duration_ms, y->duration_ms);
    }
}

/* The same times too: for records copied from one store to another. */
static void same_record_and_times(const ar_record *a, const ar_record *b)
{
    same_record(a, b);
    assert_int_equal(a->created_at, b->created_at);
    assert_int_equal(a->finished_at, b->finished_at);
    assert_int_equal(a->latency_ms, b->latency_ms);
    for (size_t i = 0; i < a->n_steps; i++)
        assert_int_equal(a->steps[i].at, b->steps[i].at);
}

static ar_counter cache5[] = { { "cache_read_tokens", 5 } };
static ar_counter mixed[] = { { "reasoning_tokens", 11 }, { "cache_read_tokens", 2 } };

/* A three-step transcript with every step field used: counters out of name
 * order, a content bounded by its length, and one with no usage at all. */
static void sample_steps(ar_step steps[3])
{
    for (int i = 0; i < 3; i++) {
        ar_step init = AR_STEP_INIT;
        steps[i] = init;
    }
    steps[0].kind = "llm";
    steps[0].name = "model-a";
    steps[0].content = "{\"role\":\"assistant\",\"tool\":\"search\"}";
    steps[0].usage = (ar_usage){ 100, 20, 0, 0.1, 1, cache5 };
    steps[0].duration_ms = 700;
    steps[1].kind = "tool";
    steps[1].name = "search";
    steps[1].content = "[\"r1\",\"r2\"]ignored";
    steps[1].content_len = 11;
    steps[1].duration_ms = 30;
    steps[2].kind = "llm";
    steps[2].name = "model-a";
    steps[2].content = "\"caf\xC3\xA9 \\u00e9\"";
    steps[2].usage = (ar_usage){ 50, 30, 80, 0.2, 2, mixed };
    steps[2].duration_ms = 400;
}

/* Factory fields using every optional field, over the given steps. */
static ar_record sample_fields(const ar_step *steps, size_t n)
{
    ar_record f = AR_RECORD_INIT;
    f.agent = "researcher";
    f.goal = "find r";
    f.user = "u-7";
    f.edition = "2024-06";
    f.parent = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    f.metadata = "{\"tags\":[\"a\"]}";
    f.budget.max_steps = 3;
    f.budget.max_cost = 2.5;
    f.steps = steps;
    f.n_steps = n;
    return f;
}

/* ---- the factory -------------------------------------------------------- */

static void test_completed_record_sums_usage_and_counts_steps(void **state)
{
    (void)state;
    ar_step steps[3];
    sample_steps(steps);
    steps[1].at = 1500;
    ar_record f = sample_fields(steps, 3);
    f.created_at = 1000;
    f.finished_at = 5000;
    ar_record *r = NULL;
    char err[128] = "untouched";
    assert_int_equal(ar_record_completed(&r, &f, "{\"answer\":1}", AR_NUL_TERMINATED, err, sizeof err), AR_OK);
    assert_string_equal(err, "untouched");
    assert_null(r->id);
    assert_int_equal(r->status, AR_COMPLETED);
    assert_string_equal(r->agent, "researcher");
    assert_true(r->agent != f.agent);
    assert_string_equal(r->goal, "find r");
    assert_string_equal(r->user, "u-7");
    assert_string_equal(r->edition, "2024-06");
    assert_string_equal(r->parent, f.parent);
    assert_string_equal(r->metadata, f.metadata);
    assert_string_equal(r->output, "{\"answer\":1}");
    assert_null(r->error);
    assert_null(r->limit.limit);
    assert_int_equal(r->budget.max_steps, 3);
    assert_exact(r->budget.max_cost, 2.5);
    assert_int_equal(r->budget.max_tokens, AR_NO_LIMIT);
    assert_int_equal(r->iterations, 3);
    assert_int_equal(r->usage.input_tokens, 150);
    assert_int_equal(r->usage.output_tokens, 50);
    assert_int_equal(r->usage.total_tokens, 200);
    assert_exact(r->usage.cost, 0.3);
    assert_int_equal(r->usage.n_extra, 2);
    assert_string_equal(r->usage.extra[0].name, "cache_read_tokens");
    assert_int_equal(r->usage.extra[0].value, 7);
    assert_string_equal(r->usage.extra[1].name, "reasoning_tokens");
    assert_int_equal(r->usage.extra[1].value, 11);
    assert_int_equal(r->created_at, 1000);
    assert_int_equal(r->finished_at, 5000);
    assert_int_equal(r->updated_at, 5000);
    assert_int_equal(r->latency_ms, 4000);
    assert_int_equal(r->n_steps, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(r->steps[i].seq, (int64_t)i + 1);
        assert_true(r->steps[i].kind != steps[i].kind);
    }
    assert_int_equal(r->steps[0].usage.total_tokens, 120);
    assert_int_equal(r->steps[2].usage.total_tokens, 80);
    assert_int_equal(r->steps[1].content_len, 11);
    assert_string_equal(r->steps[1].content, "[\"r1\",\"r2\"]");
    assert_int_equal(r->steps[0].at, 5000);
    assert_int_equal(r->steps[1].at, 1500);
    assert_int_equal(r->steps[2].at, 5000);
    /* counters come out sorted by name, as the store reads them back */
    assert_int_equal(r->steps[2].usage.n_extra, 2);
    assert_string_equal(r->steps[2].usage.extra[0].name, "cache_read_tokens");
    assert_int_equal(r->steps[2].usage.extra[0].value, 2);
    assert_string_equal(r->steps[2].usage.extra[1].name, "reasoning_tokens");
    assert_int_equal(r->steps[2].usage.extra[1].value, 11);
    ar_record_free(r);
}

static void test_given_usage_and_iterations_must_agree_with_the_steps(void **state)
{
    (void)state;
    ar_step steps[3];
    sample_steps(steps);
    ar_record f = sample_fields(steps, 3);
    ar_counter sums[] = { { "reasoning_tokens", 11 }, { "cache_read_tokens", 7 } };
    f.usage = (ar_usage){ 150, 50, 0, 0.3, 2, sums };
    f.iterations = 3;
    ar_record *r = NULL;
    assert_int_equal(ar_record_completed(&r, &f, NULL, 0, NULL, 0), AR_OK);
    assert_int_equal(r->iterations, 3);
    assert_int_equal(r->usage.total_tokens, 200);
    assert_exact(r->usage.cost, 0.3);
    assert_int_equal(r->usage.n_extra, 2);
    ar_record_free(r);

    /* each figure that disagrees with the steps' sums is misuse */
    ar_counter fewer[] = { { "cache_read_tokens", 7 } };
    ar_counter more[] = { { "reasoning_tokens", 11 }, { "cache_read_tokens", 7 }, { "images", 1 } };
    ar_counter off[] = { { "reasoning_tokens", 11 }, { "cache_read_tokens", 8 } };
    struct { ar_usage usage; int64_t iterations; const char *msg; } cases[] = {
        { { 999, 50, 0, 0.3, 2, sums }, 3, "usage.input_tokens (999) disagrees with the sum of the steps (150)" },
        { { 150, 49, 0, 0.3, 2, sums }, 3, "usage.output_tokens (49) disagrees" },
        { { 150, 50, 0, 0.31, 2, sums }, 3, "usage.cost" },
        { { 150, 50, 0, 0.3, 1, fewer }, 3, "usage.reasoning_tokens (0) disagrees with the sum of the steps (11)" },
        { { 150, 50, 0, 0.3, 3, more }, 3, "usage.images (1) disagrees with the sum of the steps (0)" },
        { { 150, 50, 0, 0.3, 2, off }, 3, "usage.cache_read_tokens (8)" },
        { { 150, 50, 0, 0.3, 2, sums }, 12, "iterations (12) disagrees with the number of steps (3)" },
        { { 150, 50, 0, 0.3, 2, sums }, 2, "iterations (2) disagrees with the number of steps (3)" },
    };
    ar_store *store = test_store_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f.usage = cases[i].usage;
        f.iterations = cases[i].iterations;
        char err[256] = "";
        r = (ar_record *)&f;
        int rc = ar_record_completed(&r, &f, NULL, 0, err, sizeof err);
        if (rc != AR_EMISUSE || !strstr(err, cases[i].msg)) {
            print_error("case %zu: %s \"%s\", want \"%s\"\n", i, ar_code_name(rc), err, cases[i].msg);
            fail();
        }
        assert_null(r);
        f.status = AR_COMPLETED;
        char *id = (char *)"x";
        assert_int_equal(ar_store_write(&id, store, &f), AR_EMISUSE);
        assert_null(id);
    }
    /* no steps: the figures must be zero too, or the transcript would not add up */
    f.usage = (ar_usage){ 7, 8, 0, 1.25, 0, NULL };
    f.iterations = -1;
    f.steps = NULL;
    f.n_steps = 0;
    assert_int_equal(ar_record_completed(&r, &f, NULL, 0, NULL, 0), AR_EMISUSE);
    char *id = (char *)"x";
    assert_int_equal(ar_store_write(&id, store, &f), AR_EMISUSE);
    assert_null(id);
    int64_t runs, n;
    info(store, &runs, &n);
    assert_int_equal(runs, 0);
    assert_int_equal(n, 0);
    ar_store_close(store);
}

static void test_record_times_default_to_now(void **state)
{
    (void)state;
    ar_record f = AR_RECORD_INIT;
    f.agent = "a";
    f.goal = "g";
    ar_record *r = NULL;
    assert_int_equal(ar_record_completed(&r, &f, NULL, 0, NULL, 0), AR_OK);
    assert_true(r->created_at > 1600000000000LL);
    assert_int_equal(r->finished_at, r->created_at);
    assert_int_equal(r->latency_ms, 0);
    assert_int_equal(r->iterations, 0);
    assert_int_equal(r->usage.total_tokens, 0);
    ar_record_free(r);

    f.created_at = 1000;
    assert_int_equal(ar_record_completed(&r, &f, NULL, 0, NULL, 0), AR_OK);
    assert_int_equal(r->created_at, 1000);
    assert_true(r->finished_at > 1600000000000LL);
    assert_int_equal(r->latency_ms, r->finished_at - 1000);
    ar_record_free(r);

    /* a start in the future cannot finish before it started */
    f.created_at = INT64_C(32503680000000);
    assert_int_equal(ar_record_completed(&r, &f, NULL, 0, NULL, 0), AR_OK);
    assert_int_equal(r->finished_at, f.created_at);
    assert_int_equal(r->latency_ms, 0);
    ar_record_free(r);

    f.created_at = 2000;
    f.finished_at = 1999;
    char err[128] = "";
    assert_int_equal(ar_record_completed(&r, &f, NULL, 0, err, sizeof err), AR_EMISUSE);
    assert_string_equal(err, "finished_at is before created_at");
    assert_null(r);
}

static void test_budget_exhausted_record_keeps_the_limit(void **state)
{
    (void)state;
    ar_step steps[3];
    sample_steps(steps);
    ar_record f = sample_fields(steps, 3);
    ar_exhaustion why = { "max_steps", 3, 3 };
    ar_record *r = NULL;
    assert_int_equal(ar_record_budget_exhausted(&r, &f, &why, NULL, 0), AR_OK);
    assert_int_equal(r->status, AR_BUDGET_EXHAUSTED);
    assert_string_equal(r->limit.limit, "max_steps");
    assert_exact(r->limit.limit_value, 3);
    assert_exact(r->limit.value, 3);
    assert_null(r->output);
    assert_null(r->error);
    assert_int_equal(r->n_steps, 3);
    ar_record_free(r);

    char err[160] = "";
    ar_exhaustion unknown = { "max_turns", 1, 1 };
    assert_int_equal(ar_record_budget_exhausted(&r, &f, &unknown, err, sizeof err), AR_EMISUSE);
    assert_null(r);
    assert_non_null(strstr(err, "limit"));
    assert_int_equal(ar_record_budget_exhausted(&r, &f, NULL, err, sizeof err), AR_EMISUSE);
    assert_null(r);
    const ar_exhaustion not_finite[] = { { "max_cost", NAN, 1 }, { "max_cost", 1, INFINITY },
                                         { "max_steps", -3, 1 } };
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(ar_record_budget_exhausted(&r, &f, &not_finite[i], err, sizeof err), AR_EMISUSE);
        assert_null(r);
    }
}

static void test_failed_record_keeps_the_error_and_replaces_invalid_utf8(void **state)
{
    (void)state;
    ar_record f = AR_RECORD_INIT;
    f.agent = "a";
    f.goal = "g";
    ar_record *r = NULL;
    assert_int_equal(ar_record_failed(&r, &f, "http 500 from \xFF\xFE proxy", NULL, 0), AR_OK);
    assert_int_equal(r->status, AR_FAILED);
    assert_string_equal(r->error, "http 500 from \xEF\xBF\xBD\xEF\xBF\xBD proxy");
    assert_null(r->output);
    assert_null(r->limit.limit);
    ar_record_free(r);
    assert_int_equal(ar_record_failed(&r, &f, NULL, NULL, 0), AR_OK);
    assert_string_equal(r->error, "failed");
    ar_record_free(r);
}

/* Expects the factory to refuse `f` with `code` and an errbuf holding `msg`. */
static void expect_refused(const ar_record *f, const char *output, int code, const char *msg)
{
    ar_record *r = (ar_record *)f;
    char err[256];
    memset(err, 'x', sizeof err);
    int rc = ar_record_completed(&r, f, output, AR_NUL_TERMINATED, err, sizeof err);
    if (rc != code || !memchr(err, '\0', sizeof err) || !strstr(err, msg)) {
        print_error("got %s \"%.200s\", want %s with \"%s\"\n", ar_code_name(rc),
                    memchr(err, '\0', sizeof err) ? err : "(unterminated)", ar_code_name(code), msg);
        fail();
    }
    assert_null(r);
}

static void test_factory_reports_each_validation_error_in_errbuf(void **state)
{
    (void)state;
    ar_step steps[3];
    ar_record f;
#define RESET() do { sample_steps(steps); f = sample_fields(steps, 3); } while (0)
    RESET(); f.agent = NULL;
    expect_refused(&f, NULL, AR_EMISUSE, "agent is required");
    RESET(); f.agent = "";
    expect_refused(&f, NULL, AR_EMISUSE, "agent must not be empty");
    RESET(); f.goal = NULL;
    expect_refused(&f, NULL, AR_EMISUSE, "goal is required");
    RESET(); f.user = "\xED\xA0\x80";
    expect_refused(&f, NULL, AR_EMISUSE, "user is not valid UTF-8");
    RESET(); f.metadata = "[\"not\",\"an\",\"object\"]";
    expect_refused(&f, NULL, AR_EJSON, "metadata");
    RESET(); f.budget.max_tokens = -5;
    expect_refused(&f, NULL, AR_EMISUSE, "budget.max_tokens");
    RESET(); steps[1].content = "{\"a\":1,}"; steps[1].content_len = AR_NUL_TERMINATED;
    expect_refused(&f, NULL, AR_EJSON, "steps[2]: step.content");
    RESET(); steps[0].kind = NULL;
    expect_refused(&f, NULL, AR_EMISUSE, "steps[1]: step.kind is required");
    RESET(); steps[2].usage.output_tokens = -1;
    expect_refused(&f, NULL, AR_EMISUSE, "steps[3]: step.usage.output_tokens must be an integer in 0..2^53");
    RESET(); steps[2].usage.total_tokens = 81;
    expect_refused(&f, NULL, AR_EMISUSE, "steps[3]: step.usage.total_tokens");
    RESET(); steps[0].usage.cost = NAN;
    expect_refused(&f, NULL, AR_EMISUSE, "steps[1]: step.cost must be a number in 0..9e9");
    RESET(); f.steps = NULL;
    expect_refused(&f, NULL, AR_EMISUSE, "steps is NULL");
    RESET(); f.usage = (ar_usage){ -1, 0, 0, 0.0, 0, NULL };
    expect_refused(&f, NULL, AR_EMISUSE, "usage.input_tokens");
    RESET(); f.usage = (ar_usage){ 1, 0, 0, -2.0, 0, NULL };
    expect_refused(&f, NULL, AR_EMISUSE, "usage.cost must be a number in 0..9e9");
    RESET(); f.iterations = 2;
    expect_refused(&f, NULL, AR_EMISUSE, "iterations (2) disagrees with the number of steps (3)");
    RESET(); steps[1].seq = 3;
    expect_refused(&f, NULL, AR_EMISUSE, "steps[2].seq is 3");
    RESET(); f.id = "x";
    expect_refused(&f, NULL, AR_EMISUSE, "id is not a valid agentrun id");
    RESET(); f.checkpoint = "{\"plan\":";
    expect_refused(&f, NULL, AR_EJSON, "checkpoint.state");
    RESET(); f.checkpoint = "1"; f.checkpoint_seq = 4;
    expect_refused(&f, NULL, AR_EMISUSE, "checkpoint.seq (4) must be a step of the record (0..3)");
    RESET();
    expect_refused(&f, "{\"unclosed\":", AR_EJSON, "output");
    expect_refused(NULL, NULL, AR_EMISUSE, "fields is NULL");
#undef RESET
    ar_record ok = AR_RECORD_INIT;
    ok.agent = "a";
    ok.goal = "g";
    assert_int_equal(ar_record_completed(NULL, &ok, NULL, 0, NULL, 0), AR_EMISUSE);
    assert_int_equal(ar_record_failed(NULL, &ok, "x", NULL, 0), AR_EMISUSE);
    assert_int_equal(ar_record_budget_exhausted(NULL, &ok, NULL, NULL, 0), AR_EMISUSE);
}

static void test_errbuf_is_optional_and_truncated_to_its_size(void **state)
{
    (void)state;
    ar_record f = AR_RECORD_INIT;
    f.goal = "g";
    ar_record *r = NULL;
    assert_int_equal(ar_record_completed(&r, &f, NULL, 0, NULL, 64), AR_EMISUSE);
    char small[8];
    memset(small, 'x', sizeof small);
    assert_int_equal(ar_record_failed(&r, &f, "e", small, sizeof small), AR_EMISUSE);
    assert_string_equal(small, "agent i");
    char none[1] = { 'x' };
    assert_int_equal(ar_record_failed(&r, &f, "e", none, 0), AR_EMISUSE);
    assert_int_equal(none[0], 'x');
    assert_null(r);
}

static void test_factory_copies_every_string_it_is_given(void **state)
{
    (void)state;
    char agent[] = "agent", goal[] = "goal", kind[] = "llm", content[] = "{\"k\":\"v\"}";
    char meta[] = "{\"m\":1}", counter[] = "cache_read_tokens", output[] = "\"out\"";
    ar_counter c[] = { { counter, 3 } };
    ar_step step = AR_STEP_INIT;
    step.kind = kind;
    step.content = content;
    step.usage.n_extra = 1;
    step.usage.extra = c;
    ar_record f = AR_RECORD_INIT;
    f.agent = agent;
    f.goal = goal;
    f.metadata = meta;
    f.steps = &step;
    f.n_steps = 1;
    ar_record *r = NULL;
    assert_int_equal(ar_record_completed(&r, &f, output, AR_NUL_TERMINATED, NULL, 0), AR_OK);
    memset(agent, 'X', sizeof agent - 1);
    memset(goal, 'X', sizeof goal - 1);
    memset(kind, 'X', sizeof kind - 1);
    memset(content, 'X', sizeof content - 1);
    memset(meta, 'X', sizeof meta - 1);
    memset(counter, 'X', sizeof counter - 1);
    memset(output, 'X', sizeof output - 1);
    assert_string_equal(r->agent, "agent");
    assert_string_equal(r->goal, "goal");
    assert_string_equal(r->metadata, "{\"m\":1}");
    assert_string_equal(r->output, "\"out\"");
    assert_string_equal(r->steps[0].kind, "llm");
    assert_string_equal(r->steps[0].content, "{\"k\":\"v\"}");
    assert_string_equal(r->steps[0].usage.extra[0].name, "cache_read_tokens");
    assert_string_equal(r->usage.extra[0].name, "cache_read_tokens");
    assert_int_equal(r->usage.extra[0].value, 3);
    ar_record_free(r);
}

/* ---- writing ------------------------------------------------------------ */

static void test_write_returns_an_id_and_stores_run_and_steps(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_step steps[3];
    sample_steps(steps);
    steps[0].at = 1100;
    steps[1].at = 1200;
    steps[2].at = 1300;
    ar_record f = sample_fields(steps, 3);
    f.created_at = 1000;
    f.finished_at = 1400;
    ar_record *r = NULL;
    assert_int_equal(ar_record_completed(&r, &f, "\"fine\"", AR_NUL_TERMINATED, NULL, 0), AR_OK);
    char *id = write_ok(store, r);
    int64_t runs, n;
    info(store, &runs, &n);
    assert_int_equal(runs, 1);
    assert_int_equal(n, 3);
    ar_record *back = test_get(store, id, 1);
    assert_string_equal(back->id, id);
    same_record_and_times(back, r);
    assert_int_equal(back->updated_at, 1400);
    assert_int_equal(back->steps[1].at, 1200);
    ar_record_free(back);
    char *id2 = write_ok(store, r);
    assert_true(strcmp(id, id2) != 0);
    info(store, &runs, &n);
    assert_int_equal(runs, 2);
    assert_int_equal(n, 6);
    ar_free(id2);
    ar_free(id);
    ar_record_free(r);
    ar_store_close(store);
}

/* Records the sample transcript step by step and ends it with `status`. */
static char *record_step_by_step(ar_store *store, const ar_step *steps, ar_status status)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    ar_record f = sample_fields(steps, 3);
    spec.agent = f.agent;
    spec.goal = f.goal;
    spec.user = f.user;
    spec.edition = f.edition;
    spec.parent = f.parent;
    spec.metadata = f.metadata;
    spec.budget = f.budget;
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ar_run_step(NULL, run, &steps[i]), AR_OK);
    ar_exhaustion why = { "max_steps", 3, 3 };
    if (status == AR_COMPLETED)
        assert_int_equal(ar_run_complete(NULL, run, "{\"answer\":\"r2\"}", AR_NUL_TERMINATED), AR_OK);
    else if (status == AR_FAILED)
        assert_int_equal(ar_run_fail(NULL, run, "gave up \xFF"), AR_OK);
    else
        assert_int_equal(ar_run_exhaust(NULL, run, &why), AR_OK);
    char *id = strdup(ar_run_id(run));
    ar_run_close(run);
    return id;
}

static void test_whole_record_reads_back_like_the_run_recorded_step_by_step(void **state)
{
    (void)state;
    const ar_status outcomes[] = { AR_COMPLETED, AR_FAILED, AR_BUDGET_EXHAUSTED };
    for (size_t k = 0; k < 3; k++) {
        ar_store *store = test_store_new();
        ar_step steps[3];
        sample_steps(steps);
        char *live_id = record_step_by_step(store, steps, outcomes[k]);

        ar_record f = sample_fields(steps, 3);
        ar_exhaustion why = { "max_steps", 3, 3 };
        ar_record *r = NULL;
        if (outcomes[k] == AR_COMPLETED)
            assert_int_equal(ar_record_completed(&r, &f, "{\"answer\":\"r2\"}", AR_NUL_TERMINATED, NULL, 0), AR_OK);
        else if (outcomes[k] == AR_FAILED)
            assert_int_equal(ar_record_failed(&r, &f, "gave up \xFF", NULL, 0), AR_OK);
        else
            assert_int_equal(ar_record_budget_exhausted(&r, &f, &why, NULL, 0), AR_OK);
        char *whole_id = write_ok(store, r);

        ar_record *live = test_get(store, live_id, 1);
        ar_record *whole = test_get(store, whole_id, 1);
        assert_int_equal(live->status, outcomes[k]);
        assert_int_equal(live->n_steps, 3);
        same_record(live, whole);
        /* and both agree with the record the factory built */
        same_record(whole, r);
        ar_record_free(live);
        ar_record_free(whole);
        ar_record_free(r);
        ar_free(whole_id);
        free(live_id);
        ar_store_close(store);
    }
}

/* Everything a record read back holds, id and every time included. */
static void same_run(const ar_record *a, const ar_record *b)
{
    same_record_and_times(a, b);
    same_str("id", a->id, b->id);
    assert_int_equal(a->updated_at, b->updated_at);
}

static void test_a_record_read_back_writes_to_another_store_unchanged(void **state)
{
    (void)state;
    const ar_status outcomes[] = { AR_COMPLETED, AR_FAILED, AR_BUDGET_EXHAUSTED, AR_INTERRUPTED };
    for (size_t k = 0; k < 4; k++) {
        ar_store *a = test_store_new();
        ar_store *b = test_store_new();
        ar_step steps[3];
        sample_steps(steps);
        char *id;
        if (outcomes[k] == AR_INTERRUPTED) {
            /* recover makes updated_at differ from finished_at */
            ar_run_spec spec = AR_RUN_SPEC_INIT;
            spec.agent = "a";
            spec.goal = "g";
            spec.budget.max_tokens = 10;
            ar_run *run = NULL;
            assert_int_equal(ar_run_begin(&run, a, &spec), AR_OK);
            assert_int_equal(ar_run_step(NULL, run, &steps[0]), AR_OK);
            id = strdup(ar_run_id(run));
            struct timespec pause = { 0, 5 * 1000000L };
            nanosleep(&pause, NULL);
            assert_int_equal(ar_store_recover(NULL, a, 0), AR_OK);
            ar_run_close(run);
        } else {
            id = record_step_by_step(a, steps, outcomes[k]);
        }
        ar_record *orig = test_get(a, id, 1);
        assert_int_equal(orig->status, outcomes[k]);
        char *copy_id = write_ok(b, orig);
        assert_string_equal(copy_id, id);
        ar_record *copy = test_get(b, copy_id, 1);
        same_run(copy, orig);
        ar_record_free(copy);
        /* the id is taken now: in either store, writing it again is ESTATE and writes nothing */
        char *again = (char *)"x";
        assert_int_equal(ar_store_write(&again, b, orig), AR_ESTATE);
        assert_null(again);
        assert_non_null(strstr(ar_store_errmsg(b), "already in the store"));
        assert_int_equal(ar_store_write(&again, a, orig), AR_ESTATE);
        int64_t runs, n;
        info(b, &runs, &n);
        assert_int_equal(runs, 1);
        assert_int_equal(n, (int64_t)orig->n_steps);
        ar_record_free(orig);
        ar_free(copy_id);
        free(id);
        ar_store_close(a);
        ar_store_close(b);
    }
}

/* A double cannot hold every large total exactly: the cost read back (the
 * double nearest the stored nano-units) still agrees with the steps. */
static void test_a_large_cost_read_back_writes_to_another_store_unchanged(void **state)
{
    (void)state;
    ar_store *a = test_store_new();
    ar_store *b = test_store_new();
    ar_step steps[2] = { AR_STEP_INIT, AR_STEP_INIT };
    steps[0].kind = "llm";
    steps[0].usage.cost = 4000000000.000000001;
    steps[1].kind = "llm";
    steps[1].usage.cost = 1234567.123456789;
    ar_record f = AR_RECORD_INIT;
    f.agent = "a";
    f.goal = "g";
    f.status = AR_COMPLETED;
    f.steps = steps;
    f.n_steps = 2;
    char *id = write_ok(a, &f);
    ar_record *orig = test_get(a, id, 1);
    char *copy_id = write_ok(b, orig);
    ar_record *copy = test_get(b, copy_id, 1);
    same_run(copy, orig);
    ar_record_free(copy);
    ar_record_free(orig);
    ar_free(copy_id);
    ar_free(id);
    ar_store_close(a);
    ar_store_close(b);
}

static void test_a_record_keeps_its_id_and_an_invalid_id_is_misuse(void **state)
{
    (void)state;
    ar_store *a = test_store_new();
    ar_store *b = test_store_new();
    ar_step steps[3];
    sample_steps(steps);
    ar_record f = sample_fields(steps, 3);
    f.status = AR_COMPLETED;
    f.created_at = 1000;
    f.finished_at = 2000;
    char *id = write_ok(a, &f);
    /* the factory keeps it too */
    f.id = id;
    ar_record *r = NULL;
    assert_int_equal(ar_record_completed(&r, &f, NULL, 0, NULL, 0), AR_OK);
    assert_string_equal(r->id, id);
    assert_true(r->id != id);
    assert_int_equal(r->created_at, 1000);
    ar_record_free(r);
    /* its created_at may be left out: it is the id's */
    f.created_at = AR_UNSET;
    char *copy = write_ok(b, &f);
    assert_string_equal(copy, id);
    ar_free(copy);
    ar_record *back = test_get(b, id, 1);
    assert_int_equal(back->created_at, 1000);
    assert_int_equal(back->latency_ms, 1000);
    ar_record_free(back);

    const char *invalid[] = { "x", "", "01ARZ3NDEKTSV4RRFFQ69G5FA", "01ARZ3NDEKTSV4RRFFQ69G5FAVV",
                              "01arz3ndektsv4rrffq69g5fav", "81ARZ3NDEKTSV4RRFFQ69G5FAV", "01ARZ3NDEKTSV4RRFFQ69G5FAU" };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        f.id = invalid[i];
        char *out = (char *)"x";
        assert_int_equal(ar_store_write(&out, b, &f), AR_EMISUSE);
        assert_null(out);
        assert_non_null(strstr(ar_store_errmsg(b), "id is not a valid agentrun id"));
        r = (ar_record *)&f;
        assert_int_equal(ar_record_completed(&r, &f, NULL, 0, NULL, 0), AR_EMISUSE);
        assert_null(r);
    }
    int64_t runs, n;
    info(b, &runs, &n);
    assert_int_equal(runs, 1);
    ar_free(id);
    ar_store_close(a);
    ar_store_close(b);
}

/* An id encodes the millisecond it was made in: a record whose created_at
 * says otherwise is misuse (listings by time use the id's time). */
static void test_a_created_at_that_disagrees_with_the_id_is_misuse(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_store *other = test_store_new();
    ar_record f = AR_RECORD_INIT;
    f.agent = "a";
    f.goal = "g";
    f.status = AR_COMPLETED;
    f.created_at = 5000;
    char *id = write_ok(store, &f);
    f.id = id;
    f.created_at = 5001;
    char *out = (char *)"x";
    assert_int_equal(ar_store_write(&out, other, &f), AR_EMISUSE);
    assert_null(out);
    assert_non_null(strstr(ar_store_errmsg(other), "created_at (5001) disagrees with the time of id"));
    char err[256] = "";
    ar_record *r = NULL;
    assert_int_equal(ar_record_completed(&r, &f, NULL, 0, err, sizeof err), AR_EMISUSE);
    assert_non_null(strstr(err, "(5000)"));
    f.created_at = 5000;
    out = write_ok(other, &f);
    ar_free(out);
    ar_free(id);
    ar_store_close(store);
    ar_store_close(other);
}

static void test_given_times_must_agree_with_each_other(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_record f = AR_RECORD_INIT;
    f.agent = "a";
    f.goal = "g";
    f.status = AR_COMPLETED;
    f.created_at = 1000;
    f.finished_at = 3000;
    f.updated_at = 9000;
    f.latency_ms = 2000;
    char *id = write_ok(store, &f);
    ar_record *back = test_get(store, id, 0);
    assert_int_equal(back->updated_at, 9000);
    assert_int_equal(back->latency_ms, 2000);
    ar_record_free(back);
    ar_free(id);
    f.latency_ms = 1999;
    assert_int_equal(ar_store_write(&id, store, &f), AR_EMISUSE);
    assert_non_null(strstr(ar_store_errmsg(store), "latency_ms (1999) disagrees with finished_at - created_at (2000)"));
    f.latency_ms = AR_UNSET;
    f.updated_at = 2999;
    assert_int_equal(ar_store_write(&id, store, &f), AR_EMISUSE);
    assert_non_null(strstr(ar_store_errmsg(store), "updated_at is before finished_at"));
    int64_t runs, n;
    info(store, &runs, &n);
    assert_int_equal(runs, 1);
    ar_store_close(store);
}

static void test_fields_that_do_not_fit_the_status_are_misuse_when_written(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_record f = AR_RECORD_INIT;
    f.agent = "a";
    f.goal = "g";
    char *id = (char *)"x";
    f.status = AR_FAILED;
    f.output = "1";
    assert_int_equal(ar_store_write(&id, store, &f), AR_EMISUSE);
    assert_non_null(strstr(ar_store_errmsg(store), "output"));
    f.output = NULL;
    f.status = AR_COMPLETED;
    f.error = "e";
    assert_int_equal(ar_store_write(&id, store, &f), AR_EMISUSE);
    assert_non_null(strstr(ar_store_errmsg(store), "error"));
    f.error = NULL;
    f.limit = (ar_exhaustion){ "max_steps", 1, 1 };
    assert_int_equal(ar_store_write(&id, store, &f), AR_EMISUSE);
    assert_non_null(strstr(ar_store_errmsg(store), "limit"));
    assert_null(id);
    int64_t runs, n;
    info(store, &runs, &n);
    assert_int_equal(runs, 0);
    ar_store_close(store);
}

static void test_a_record_may_carry_its_checkpoint(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_step steps[3];
    sample_steps(steps);
    ar_record f = sample_fields(steps, 3);
    f.status = AR_INTERRUPTED;
    f.checkpoint = "{\"plan\":[1,2]}";
    f.checkpoint_seq = 2;
    char *id = write_ok(store, &f);
    char *cp = NULL;
    int64_t seq = -1;
    assert_int_equal(ar_store_checkpoint(&cp, &seq, store, id), AR_OK);
    assert_string_equal(cp, "{\"plan\":[1,2]}");
    assert_int_equal(seq, 2);
    ar_free(cp);
    /* resumed, the run goes on from its steps with that checkpoint */
    ar_run *run = NULL;
    assert_int_equal(ar_run_resume(&run, store, id, NULL), AR_OK);
    assert_int_equal(ar_run_iterations(run), 3);
    ar_step next = AR_STEP_INIT;
    next.kind = "llm";
    int64_t got = 0;
    assert_int_equal(ar_run_step(&got, run, &next), AR_OK);
    assert_int_equal(got, 4);
    ar_run_close(run);
    ar_free(id);

    /* by default it follows the last step; the factory carries it */
    f.checkpoint_seq = AR_UNSET;
    ar_record *r = NULL;
    assert_int_equal(ar_record_completed(&r, &f, NULL, 0, NULL, 0), AR_OK);
    assert_string_equal(r->checkpoint, f.checkpoint);
    assert_true(r->checkpoint != f.checkpoint);
    assert_int_equal(r->checkpoint_seq, 3);
    id = write_ok(store, r);
    assert_int_equal(ar_store_checkpoint(&cp, &seq, store, id), AR_OK);
    assert_int_equal(seq, 3);
    ar_free(cp);
    ar_free(id);
    ar_record_free(r);

    const int64_t bad[] = { -1, 4, AR_UNSET + 1 };
    for (size_t i = 0; i < 3; i++) {
        f.checkpoint_seq = bad[i];
        id = (char *)"x";
        assert_int_equal(ar_store_write(&id, store, &f), AR_EMISUSE);
        assert_non_null(strstr(ar_store_errmsg(store), "checkpoint.seq"));
    }
    f.checkpoint_seq = 0;
    f.checkpoint = "{\"plan\":";
    assert_int_equal(ar_store_write(&id, store, &f), AR_EJSON);
    assert_null(id);
    int64_t runs, n;
    info(store, &runs, &n);
    assert_int_equal(runs, 2);
    ar_store_close(store);
}

static void test_a_hand_made_record_is_normalised_when_written(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_step steps[3];
    sample_steps(steps);
    steps[1].seq = 2; /* the others say nothing: numbered by position */
    ar_record rec = sample_fields(steps, 3);
    rec.status = AR_FAILED;
    char *id = write_ok(store, &rec);
    ar_record *back = test_get(store, id, 1);
    assert_int_equal(back->status, AR_FAILED);
    assert_string_equal(back->error, "failed");
    assert_int_equal(back->iterations, 3);
    assert_int_equal(back->usage.total_tokens, 200);
    assert_exact(back->usage.cost, 0.3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(back->steps[i].seq, (int64_t)i + 1);
    assert_int_equal(back->latency_ms, back->finished_at - back->created_at);
    ar_record_free(back);
    ar_free(id);
    ar_store_close(store);
}

static void test_given_step_seqs_must_number_the_steps_1_to_n_in_order(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    const int64_t bad[][3] = { { 5, 9, 10 }, { 1, 1, 2 }, { 1, 3, 2 }, { 2, 3, 4 }, { 1, 2, -1 }, { 0, 0, 4 } };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        ar_step steps[3];
        sample_steps(steps);
        for (int i = 0; i < 3; i++)
            steps[i].seq = bad[k][i];
        ar_record rec = sample_fields(steps, 3);
        rec.status = AR_COMPLETED;
        char *id = (char *)"x";
        assert_int_equal(ar_store_write(&id, store, &rec), AR_EMISUSE);
        assert_null(id);
        assert_non_null(strstr(ar_store_errmsg(store), "steps must number 1..n in order"));
        ar_record *r = (ar_record *)&rec;
        assert_int_equal(ar_record_failed(&r, &rec, "e", NULL, 0), AR_EMISUSE);
        assert_null(r);
    }
    int64_t runs, n;
    info(store, &runs, &n);
    assert_int_equal(runs, 0);
    assert_int_equal(n, 0);
    ar_step steps[3];
    sample_steps(steps);
    for (int i = 0; i < 3; i++)
        steps[i].seq = i + 1;
    ar_record rec = sample_fields(steps, 3);
    rec.status = AR_COMPLETED;
    char *id = write_ok(store, &rec);
    ar_free(id);
    ar_store_close(store);
}

static void test_writing_a_record_that_is_not_finished_is_misuse(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_step steps[3];
    sample_steps(steps);
    ar_record rec = sample_fields(steps, 3);
    rec.status = AR_RUNNING;
    char *id = (char *)"x";
    assert_int_equal(ar_store_write(&id, store, &rec), AR_EMISUSE);
    assert_null(id);
    assert_non_null(strstr(ar_store_errmsg(store), "finished"));
    rec.status = (ar_status)9;
    assert_int_equal(ar_store_write(&id, store, &rec), AR_EMISUSE);
    assert_int_equal(ar_store_write(&id, store, NULL), AR_EMISUSE);
    rec.status = AR_COMPLETED;
    assert_int_equal(ar_store_write(NULL, store, &rec), AR_EMISUSE);
    assert_int_equal(ar_store_write(&id, NULL, &rec), AR_EMISUSE);
    int64_t runs, n;
    info(store, &runs, &n);
    assert_int_equal(runs, 0);
    assert_int_equal(n, 0);
    ar_store_close(store);
}

static void test_a_record_with_a_bad_step_writes_nothing(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_step steps[3];
    sample_steps(steps);
    ar_record ok = sample_fields(steps, 3);
    ok.status = AR_COMPLETED;
    char *id = write_ok(store, &ok);
    ar_free(id);

    steps[2].content = "{\"broken\": [}";
    ar_record rec = sample_fields(steps, 3);
    rec.status = AR_COMPLETED;
    id = (char *)"x";
    assert_int_equal(ar_store_write(&id, store, &rec), AR_EJSON);
    assert_null(id);
    assert_non_null(strstr(ar_store_errmsg(store), "steps[3]"));
    sample_steps(steps);
    ar_counter bad[] = { { "input_tokens", 1 } };
    steps[1].usage.extra = bad;
    steps[1].usage.n_extra = 1;
    assert_int_equal(ar_store_write(&id, store, &rec), AR_EMISUSE);
    assert_non_null(strstr(ar_store_errmsg(store), "steps[2]"));
    int64_t runs, n;
    info(store, &runs, &n);
    assert_int_equal(runs, 1);
    assert_int_equal(n, 3);
    ar_store_close(store);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_completed_record_sums_usage_and_counts_steps),
    cmocka_unit_test(test_given_usage_and_iterations_must_agree_with_the_steps),
    cmocka_unit_test(test_record_times_default_to_now),
    cmocka_unit_test(test_budget_exhausted_record_keeps_the_limit),
    cmocka_unit_test(test_failed_record_keeps_the_error_and_replaces_invalid_utf8),
    cmocka_unit_test(test_factory_reports_each_validation_error_in_errbuf),
    cmocka_unit_test(test_errbuf_is_optional_and_truncated_to_its_size),
    cmocka_unit_test(test_factory_copies_every_string_it_is_given),
    cmocka_unit_test(test_write_returns_an_id_and_stores_run_and_steps),
    cmocka_unit_test(test_whole_record_reads_back_like_the_run_recorded_step_by_step),
    cmocka_unit_test(test_a_record_read_back_writes_to_another_store_unchanged),
    cmocka_unit_test(test_a_large_cost_read_back_writes_to_another_store_unchanged),
    cmocka_unit_test(test_a_record_keeps_its_id_and_an_invalid_id_is_misuse),
    cmocka_unit_test(test_a_created_at_that_disagrees_with_the_id_is_misuse),
    cmocka_unit_test(test_given_times_must_agree_with_each_other),
    cmocka_unit_test(test_fields_that_do_not_fit_the_status_are_misuse_when_written),
    cmocka_unit_test(test_a_record_may_carry_its_checkpoint),
    cmocka_unit_test(test_a_hand_made_record_is_normalised_when_written),
    cmocka_unit_test(test_given_step_seqs_must_number_the_steps_1_to_n_in_order),
    cmocka_unit_test(test_writing_a_record_that_is_not_finished_is_misuse),
    cmocka_unit_test(test_a_record_with_a_bad_step_writes_nothing),
};

TEST_GROUP(record_group, "record", tests);
