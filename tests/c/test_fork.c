/* test_fork.c -- forks (a new run continuing another after a chosen step) and
 * runs waiting for a person's response, on every backend. */
#include "suite.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "agentrun.h"
#include "faultvfs.h"

/* ---- helpers ------------------------------------------------------------ */

/* A growable text. */
typedef struct text {
    char *p;
    size_t n, cap;
} text;

static void add(text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = t->cap - t->n;
        va_start(ap, fmt);
        int k = vsnprintf(t->p ? t->p + t->n : NULL, room, fmt, ap);
        va_end(ap);
        assert_true(k >= 0);
        if ((size_t)k < room) {
            t->n += (size_t)k;
            return;
        }
        t->cap = (t->cap + (size_t)k + 1) * 2;
        t->p = realloc(t->p, t->cap);
        assert_non_null(t->p);
    }
}

#define S(x) ((x) ? (x) : "(null)")

static void add_usage(text *t, const ar_usage *u)
{
    add(t, " in=%" PRId64 " out=%" PRId64 " total=%" PRId64 " cost=%.17g", u->input_tokens, u->output_tokens,
        u->total_tokens, u->cost);
    for (size_t i = 0; i < u->n_extra; i++)
        add(t, " %s=%" PRId64, u->extra[i].name, u->extra[i].value);
}

static void add_step(text *t, const ar_step *s)
{
    add(t, "step %" PRId64 " kind=%s name=%s content=%.*s", s->seq, S(s->kind), S(s->name),
        (int)(s->content ? s->content_len : 6), s->content ? s->content : "(null)");
    add_usage(t, &s->usage);
    add(t, " duration=%" PRId64 " at=%" PRId64 "\n", s->duration_ms, s->at);
}

/* Every field of a record, and its steps, as text (malloc'ed). */
static char *record_text(const ar_record *r)
{
    text t = { NULL, 0, 0 };
    add(&t, "id=%s agent=%s goal=%s user=%s edition=%s parent=%s status=%s output=%s error=%s\n", S(r->id),
        S(r->agent), S(r->goal), S(r->user), S(r->edition), S(r->parent), S(ar_status_name(r->status)),
        S(r->output), S(r->error));
    add(&t, "limit=%s %.17g %.17g budget=%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%.17g,%.17g\n",
        S(r->limit.limit), r->limit.limit_value, r->limit.value, r->budget.max_steps, r->budget.max_input_tokens,
        r->budget.max_output_tokens, r->budget.max_tokens, r->budget.max_cost, r->budget.max_seconds);
    add(&t, "iterations=%" PRId64, r->iterations);
    add_usage(&t, &r->usage);
    add(&t, "\nlatency=%" PRId64 " created=%" PRId64 " finished=%" PRId64 " updated=%" PRId64 " metadata=%s\n",
        r->latency_ms, r->created_at, r->finished_at, r->updated_at, S(r->metadata));
    add(&t, "forked_from=%s seq=%" PRId64 " request=%s response=%s\n", S(r->forked_from), r->forked_seq,
        S(r->request), S(r->response));
    for (size_t i = 0; i < r->n_steps; i++)
        add_step(&t, &r->steps[i]);
    return t.p;
}

static char *stored_text(ar_store *store, const char *id)
{
    ar_record *r = test_get(store, id, 1);
    char *t = record_text(r);
    ar_record_free(r);
    return t;
}

static void expect_same_text(const char *want, const char *got, const char *what)
{
    if (strcmp(want, got) != 0) {
        print_error("%s changed\n--- before\n%s\n--- after\n%s\n", what, want, got);
        fail();
    }
}

/* Step k of the test runs: content, usage, a counter every other step. */
static int step_k(ar_run *run, int k)
{
    char content[64];
    snprintf(content, sizeof content, "{\"k\":%d,\"text\":\"step %d\"}", k, k);
    ar_counter extra = { "cache_read_tokens", k };
    ar_step s = AR_STEP_INIT;
    s.kind = k % 3 ? "llm" : "tool";
    s.name = k % 3 ? "model-x" : NULL;
    s.content = content;
    s.usage.input_tokens = k;
    s.usage.output_tokens = 2 * k;
    s.usage.cost = 0.0001 * k;
    s.usage.n_extra = (size_t)(k % 2);
    s.usage.extra = &extra;
    s.duration_ms = k;
    return ar_run_step(NULL, run, &s);
}

/* A run of n steps (open, still running) with a checkpoint after step ckpt (0: none). */
static ar_run *run_of(ar_store *store, const char *agent, int n, int ckpt)
{
    ar_run *run = test_begin(store, agent);
    for (int k = 1; k <= n; k++) {
        assert_int_equal(step_k(run, k), AR_OK);
        if (k == ckpt)
            assert_int_equal(ar_run_checkpoint(run, "{\"state\":\"saved\"}", AR_NUL_TERMINATED), AR_OK);
    }
    return run;
}

static ar_run *fork_at(ar_store *store, const char *id, int64_t at)
{
    ar_fork_opts o = AR_FORK_OPTS_INIT;
    o.at = at;
    ar_run *f = NULL;
    int rc = ar_run_fork(&f, store, id, &o);
    if (rc != AR_OK) {
        print_error("fork %s at %" PRId64 ": %s: %s\n", id, at, ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    return f;
}

static int64_t count_runs(ar_store *store)
{
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    return info.runs;
}

/* ---- forks ---------------------------------------------------------------- */

static void test_fork_copies_steps_sums_checkpoint_and_names_its_origin(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_of(store, "forker", 10, 4);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    ar_record *orig = test_get(store, id, 1);

    ar_run *f = fork_at(store, id, 6);
    assert_string_not_equal(ar_run_id(f), id);
    assert_int_equal(ar_run_status(f), AR_RUNNING);
    assert_int_equal(ar_run_iterations(f), 6);
    const ar_usage *u = ar_run_usage(f);
    assert_int_equal(u->input_tokens, 21);
    assert_int_equal(u->output_tokens, 42);
    assert_exact(u->cost, 0.0021);
    assert_int_equal(u->n_extra, 1);
    assert_int_equal(u->extra[0].value, 1 + 3 + 5);
    ar_record *r = test_get(store, ar_run_id(f), 1);
    assert_string_equal(r->forked_from, id);
    assert_int_equal(r->forked_seq, 6);
    assert_string_equal(r->agent, orig->agent);
    assert_string_equal(r->goal, orig->goal);
    assert_int_equal(r->status, AR_RUNNING);
    assert_int_equal(r->n_steps, 6);
    for (size_t i = 0; i < 6; i++) {
        text a = { NULL, 0, 0 }, b = { NULL, 0, 0 };
        add_step(&a, &orig->steps[i]);
        add_step(&b, &r->steps[i]);
        expect_same_text(a.p, b.p, "a copied step");
        free(a.p);
        free(b.p);
    }
    /* the checkpoint after step 4 comes with a fork after step 6 */
    char *st = NULL;
    int64_t seq = -1;
    assert_int_equal(ar_store_checkpoint(&st, &seq, store, ar_run_id(f)), AR_OK);
    assert_string_equal(st, "{\"state\":\"saved\"}");
    assert_int_equal(seq, 4);
    ar_free(st);
    /* the fork goes on from step 7 */
    int64_t next = 0;
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    assert_int_equal(ar_run_step(&next, f, &s), AR_OK);
    assert_int_equal(next, 7);
    /* a fork before the checkpoint has none */
    ar_run *g = fork_at(store, id, 3);
    assert_int_equal(ar_store_checkpoint(&st, &seq, store, ar_run_id(g)), AR_OK);
    assert_null(st);
    ar_record_free(r);
    ar_record_free(orig);
    ar_run_close(g);
    ar_run_close(f);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_fork_leaves_the_original_byte_identical(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_of(store, "forker", 12, 5);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    assert_int_equal(ar_run_fail(NULL, run, "went wrong at 9"), AR_OK);
    char *before = stored_text(store, id);
    char *ck_before = NULL;
    int64_t seq_before = 0;
    assert_int_equal(ar_store_checkpoint(&ck_before, &seq_before, store, id), AR_OK);
    for (int64_t at = 0; at <= 12; at += 4) {
        ar_run *f = fork_at(store, id, at);
        assert_int_equal(step_k(f, 99), AR_OK);
        assert_int_equal(ar_run_complete(NULL, f, "\"other\"", AR_NUL_TERMINATED), AR_OK);
        ar_run_close(f);
    }
    char *after = stored_text(store, id);
    expect_same_text(before, after, "the original run");
    char *ck_after = NULL;
    int64_t seq_after = 0;
    assert_int_equal(ar_store_checkpoint(&ck_after, &seq_after, store, id), AR_OK);
    assert_string_equal(ck_before, ck_after);
    assert_int_equal(seq_before, seq_after);
    free(before);
    free(after);
    ar_free(ck_before);
    ar_free(ck_after);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_fork_defaults_to_the_last_step_and_takes_any_status(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_status want[] = { AR_RUNNING, AR_COMPLETED, AR_FAILED, AR_BUDGET_EXHAUSTED, AR_INTERRUPTED, AR_WAITING };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ar_run *run = run_of(store, "any", 3, 0);
        char id[32];
        snprintf(id, sizeof id, "%s", ar_run_id(run));
        int64_t n;
        switch (want[i]) {
        case AR_COMPLETED: assert_int_equal(ar_run_complete(NULL, run, NULL, 0), AR_OK); break;
        case AR_FAILED: assert_int_equal(ar_run_fail(NULL, run, "x"), AR_OK); break;
        case AR_BUDGET_EXHAUSTED: {
            ar_exhaustion e = { "max_steps", 3, 3 };
            assert_int_equal(ar_run_exhaust(NULL, run, &e), AR_OK);
            break;
        }
        case AR_INTERRUPTED: assert_int_equal(ar_store_recover(&n, store, 0), AR_OK); break;
        case AR_WAITING: assert_int_equal(ar_run_wait(NULL, run, "\"ok?\"", AR_NUL_TERMINATED), AR_OK); break;
        default: break;
        }
        ar_record *r = test_get(store, id, 0);
        assert_int_equal(r->status, want[i]);
        ar_record_free(r);
        ar_run *f = NULL;
        assert_int_equal(ar_run_fork(&f, store, id, NULL), AR_OK);
        int64_t last = want[i] == AR_WAITING ? 4 : 3;
        assert_int_equal(ar_run_iterations(f), last);
        ar_record *fr = test_get(store, ar_run_id(f), 0);
        assert_int_equal(fr->forked_seq, last);
        assert_int_equal(fr->status, AR_RUNNING);
        /* a fork of a waiting run does not wait: it has no request */
        assert_null(fr->request);
        ar_record_free(fr);
        ar_run_close(f);
        ar_run_close(run);
    }
    ar_store_close(store);
}

static void test_forks_of_forks_and_listing_a_runs_forks(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_of(store, "tree", 5, 0);
    ar_run *other = run_of(store, "tree", 2, 0);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    ar_run *a = fork_at(store, id, 2);
    ar_run *b = fork_at(store, id, 0);
    assert_int_equal(ar_run_iterations(b), 0);
    assert_int_equal(step_k(a, 3), AR_OK);
    ar_run *aa = fork_at(store, ar_run_id(a), 3);
    ar_record *rec = test_get(store, ar_run_id(aa), 1);
    assert_string_equal(rec->forked_from, ar_run_id(a));
    assert_int_equal(rec->forked_seq, 3);
    assert_int_equal(rec->n_steps, 3);
    ar_record_free(rec);
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.forked_from = id;
    q.order = AR_ORDER_ASC;
    ar_record **list = NULL;
    size_t n = 0;
    assert_int_equal(ar_runs_list(&list, &n, NULL, store, &q), AR_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[0]->id, ar_run_id(a));
    assert_string_equal(list[1]->id, ar_run_id(b));
    ar_records_free(list, n);
    int64_t count = 0;
    assert_int_equal(ar_runs_count(&count, store, &q), AR_OK);
    assert_int_equal(count, 2);
    ar_stats st;
    assert_int_equal(ar_runs_stats(&st, store, &q), AR_OK);
    assert_int_equal(st.runs, 2);
    assert_int_equal(st.iterations, 3);
    q.forked_from = ar_run_id(a);
    assert_int_equal(ar_runs_count(&count, store, &q), AR_OK);
    assert_int_equal(count, 1);
    q.forked_from = ar_run_id(other);
    assert_int_equal(ar_runs_count(&count, store, &q), AR_OK);
    assert_int_equal(count, 0);
    /* a version-1 query has no forked_from: every run */
    ar_run_query v1;
    assert_int_equal(ar_run_query_init(&v1, 1), AR_OK);
    assert_int_equal(ar_runs_count(&count, store, &v1), AR_OK);
    assert_int_equal(count, 5);
    ar_run_close(aa);
    ar_run_close(a);
    ar_run_close(b);
    ar_run_close(other);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_fork_budget_and_metadata_replace_the_runs(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "meta";
    spec.goal = "g";
    spec.metadata = "{\"tag\":\"first\"}";
    spec.budget.max_steps = 5;
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    assert_int_equal(step_k(run, 1), AR_OK);
    ar_run *same = NULL;
    assert_int_equal(ar_run_fork(&same, store, ar_run_id(run), NULL), AR_OK);
    assert_int_equal(ar_run_budget(same)->max_steps, 5);
    ar_record *r = test_get(store, ar_run_id(same), 0);
    assert_string_equal(r->metadata, "{\"tag\":\"first\"}");
    ar_record_free(r);
    ar_budget b = AR_BUDGET_INIT;
    b.max_cost = 0.5;
    ar_fork_opts o = AR_FORK_OPTS_INIT;
    o.budget = &b;
    o.metadata = "{\"tag\":\"second\"}";
    ar_run *changed = NULL;
    assert_int_equal(ar_run_fork(&changed, store, ar_run_id(run), &o), AR_OK);
    r = test_get(store, ar_run_id(changed), 0);
    assert_string_equal(r->metadata, "{\"tag\":\"second\"}");
    assert_int_equal(r->budget.max_steps, AR_NO_LIMIT);
    assert_exact(r->budget.max_cost, 0.5);
    ar_record_free(r);
    ar_run_close(same);
    ar_run_close(changed);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_fork_bad_input_is_refused_and_writes_nothing(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_of(store, "bad", 4, 0);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    char *before = stored_text(store, id);
    int64_t steps = test_stored_steps(store);
    ar_run *f = (ar_run *)1;
    ar_fork_opts o = AR_FORK_OPTS_INIT;
    o.at = 5;
    assert_int_equal(ar_run_fork(&f, store, id, &o), AR_EMISUSE);
    assert_null(f);
    assert_non_null(strstr(ar_store_errmsg(store), "0..4"));
    o.at = -1;
    assert_int_equal(ar_run_fork(&f, store, id, &o), AR_EMISUSE);
    o.at = 2;
    o.metadata = "[1]";
    assert_int_equal(ar_run_fork(&f, store, id, &o), AR_EJSON);
    o.metadata = "{\"a\":";
    assert_int_equal(ar_run_fork(&f, store, id, &o), AR_EJSON);
    o.metadata = NULL;
    ar_budget b = AR_BUDGET_INIT;
    b.max_steps = -5;
    o.budget = &b;
    assert_int_equal(ar_run_fork(&f, store, id, &o), AR_EMISUSE);
    o.budget = NULL;
    o.version = 0;
    assert_int_equal(ar_run_fork(&f, store, id, &o), AR_EMISUSE);
    assert_int_equal(ar_run_fork(&f, store, "01M95K521M0003BBGNPZYFC8GS", NULL), AR_ENOTFOUND);
    assert_int_equal(ar_run_fork(&f, store, "not an id", NULL), AR_ENOTFOUND);
    assert_int_equal(ar_run_fork(&f, store, NULL, NULL), AR_EMISUSE);
    assert_int_equal(ar_run_fork(NULL, store, id, NULL), AR_EMISUSE);
    assert_int_equal(ar_run_fork(&f, NULL, id, NULL), AR_EMISUSE);
    assert_int_equal(count_runs(store), 1);
    assert_int_equal(test_stored_steps(store), steps);
    char *after = stored_text(store, id);
    expect_same_text(before, after, "the run");
    free(before);
    free(after);
    ar_run_close(run);
    ar_store_close(store);
}

/* Forking a long run copies it in the store: every step is there, in one transaction. */
static void test_fork_of_a_long_run_copies_every_step(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_record fields = AR_RECORD_INIT;
    enum { N = 2000 };
    ar_step *steps = calloc(N, sizeof *steps);
    assert_non_null(steps);
    for (int k = 0; k < N; k++) {
        steps[k] = (ar_step)AR_STEP_INIT;
        steps[k].kind = "llm";
        steps[k].content = "\"some text of a step\"";
        steps[k].usage.input_tokens = 1;
        steps[k].usage.cost = 0.0001;
    }
    fields.agent = "long";
    fields.goal = "g";
    fields.steps = steps;
    fields.n_steps = N;
    fields.status = AR_COMPLETED;
    char *id = NULL;
    assert_int_equal(ar_store_write(&id, store, &fields), AR_OK);
    ar_run *f = fork_at(store, id, 1500);
    assert_int_equal(ar_run_iterations(f), 1500);
    assert_exact(ar_run_usage(f)->cost, 0.15);
    assert_int_equal(test_stored_steps(store), N + 1500);
    ar_run_close(f);
    ar_free(id);
    free(steps);
    ar_store_close(store);
}

/* ---- waiting for a response ------------------------------------------------ */

static void test_wait_appends_a_step_sets_waiting_and_releases_the_handle(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_of(store, "waiter", 2, 0);
    ar_record *r = NULL;
    assert_int_equal(ar_run_wait(&r, run, "{\"approve\":\"refund 30\"}", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(r->status, AR_WAITING);
    assert_string_equal(r->request, "{\"approve\":\"refund 30\"}");
    assert_null(r->response);
    assert_int_equal(r->iterations, 3);
    assert_int_equal(r->finished_at, AR_UNSET);
    assert_int_equal(r->latency_ms, AR_UNSET);
    ar_record_free(r);
    r = test_get(store, ar_run_id(run), 1);
    assert_string_equal(r->steps[2].kind, "wait");
    assert_string_equal(r->steps[2].content, "{\"approve\":\"refund 30\"}");
    char *before = record_text(r);
    ar_record_free(r);
    /* the handle is released: every write is refused and changes nothing */
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    assert_int_equal(ar_run_step(NULL, run, &s), AR_ESTATE);
    assert_int_equal(ar_run_checkpoint(run, "1", AR_NUL_TERMINATED), AR_ESTATE);
    assert_int_equal(ar_run_complete(NULL, run, NULL, 0), AR_ESTATE);
    assert_int_equal(ar_run_fail(NULL, run, "x"), AR_ESTATE);
    assert_int_equal(ar_run_wait(NULL, run, "2", AR_NUL_TERMINATED), AR_ESTATE);
    assert_int_equal(ar_run_status(run), AR_WAITING);
    ar_run_close(run);
    char *id = NULL;
    ar_record *again = NULL;
    ar_run_query q = AR_RUN_QUERY_INIT;
    ar_status waiting = AR_WAITING;
    q.status = &waiting;
    q.n_status = 1;
    ar_record **list = NULL;
    size_t n = 0;
    assert_int_equal(ar_runs_list(&list, &n, NULL, store, &q), AR_OK);
    assert_int_equal(n, 1);
    again = list[0];
    id = strdup(again->id);
    ar_records_free(list, n);
    char *after = stored_text(store, id);
    expect_same_text(before, after, "the waiting run");
    ar_stats st;
    ar_run_query all = AR_RUN_QUERY_INIT;
    assert_int_equal(ar_runs_stats(&st, store, &all), AR_OK);
    assert_int_equal(st.by_status[AR_WAITING], 1);
    assert_int_equal(st.by_status[AR_RUNNING], 0);
    assert_string_equal(ar_status_name(AR_WAITING), "waiting");
    free(before);
    free(after);
    free(id);
    ar_store_close(store);
}

static void test_wait_bad_request_is_refused_and_the_run_goes_on(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_of(store, "waiter", 1, 0);
    assert_int_equal(ar_run_wait(NULL, run, NULL, 0), AR_EMISUSE);
    assert_int_equal(ar_run_wait(NULL, run, "{nope", AR_NUL_TERMINATED), AR_EJSON);
    assert_int_equal(ar_run_wait(NULL, NULL, "1", AR_NUL_TERMINATED), AR_EMISUSE);
    assert_int_equal(ar_run_status(run), AR_RUNNING);
    int64_t seq = 0;
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    assert_int_equal(ar_run_step(&seq, run, &s), AR_OK);
    assert_int_equal(seq, 2);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_respond_then_resume_gives_the_response_and_continues(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_of(store, "waiter", 2, 0);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    assert_int_equal(ar_run_wait(NULL, run, "\"may I?\"", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(run);
    ar_run *h = NULL;
    assert_int_equal(ar_run_resume(&h, store, id, NULL), AR_ESTATE);
    assert_non_null(strstr(ar_store_errmsg(store), "still waiting for a response"));
    assert_null(h);
    ar_record *r = NULL;
    assert_int_equal(ar_store_respond(&r, store, id, "{\"ok\":true}", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(r->status, AR_WAITING);
    assert_string_equal(r->response, "{\"ok\":true}");
    assert_int_equal(r->iterations, 4);
    ar_record_free(r);
    /* a second answer is refused and changes nothing */
    char *before = stored_text(store, id);
    assert_int_equal(ar_store_respond(&r, store, id, "{\"ok\":false}", AR_NUL_TERMINATED), AR_ESTATE);
    assert_null(r);
    char *after = stored_text(store, id);
    expect_same_text(before, after, "the answered run");
    free(before);
    free(after);
    assert_int_equal(ar_run_resume(&h, store, id, NULL), AR_OK);
    assert_string_equal(ar_run_response(h), "{\"ok\":true}");
    assert_int_equal(ar_run_iterations(h), 4);
    int64_t seq = 0;
    ar_step s = AR_STEP_INIT;
    s.kind = "tool";
    assert_int_equal(ar_run_step(&seq, h, &s), AR_OK);
    assert_int_equal(seq, 5);
    assert_int_equal(ar_run_complete(NULL, h, "\"refunded\"", AR_NUL_TERMINATED), AR_OK);
    r = test_get(store, id, 1);
    assert_int_equal(r->status, AR_COMPLETED);
    assert_string_equal(r->request, "\"may I?\"");
    assert_string_equal(r->response, "{\"ok\":true}");
    assert_string_equal(r->steps[3].kind, "response");
    assert_string_equal(r->steps[3].content, "{\"ok\":true}");
    ar_record_free(r);
    /* respond to a finished run */
    assert_int_equal(ar_store_respond(NULL, store, id, "1", AR_NUL_TERMINATED), AR_ESTATE);
    assert_null(ar_run_response(NULL));
    ar_run_close(h);
    ar_store_close(store);
}

static void test_a_run_waits_again_after_its_answer(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_of(store, "twice", 1, 0);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    assert_int_equal(ar_run_wait(NULL, run, "1", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(ar_store_respond(NULL, store, id, "\"a\"", AR_NUL_TERMINATED), AR_OK);
    ar_run *h = NULL;
    assert_int_equal(ar_run_resume(&h, store, id, NULL), AR_OK);
    ar_record *r = NULL;
    assert_int_equal(ar_run_wait(&r, h, "2", AR_NUL_TERMINATED), AR_OK);
    assert_string_equal(r->request, "2");
    assert_null(r->response);
    ar_record_free(r);
    assert_int_equal(ar_store_respond(NULL, store, id, "\"b\"", AR_NUL_TERMINATED), AR_OK);
    ar_run *h2 = NULL;
    assert_int_equal(ar_run_resume(&h2, store, id, NULL), AR_OK);
    assert_string_equal(ar_run_response(h2), "\"b\"");
    assert_int_equal(ar_run_iterations(h2), 5);
    ar_run_close(h2);
    ar_run_close(h);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_respond_bad_input_and_wrong_states_change_nothing(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *running = run_of(store, "r", 1, 0);
    ar_run *done = run_of(store, "r", 1, 0);
    assert_int_equal(ar_run_complete(NULL, done, NULL, 0), AR_OK);
    ar_run *waiting = run_of(store, "r", 1, 0);
    assert_int_equal(ar_run_wait(NULL, waiting, "\"q\"", AR_NUL_TERMINATED), AR_OK);
    char *b1 = stored_text(store, ar_run_id(running));
    char *b2 = stored_text(store, ar_run_id(done));
    char *b3 = stored_text(store, ar_run_id(waiting));
    assert_int_equal(ar_store_respond(NULL, store, ar_run_id(running), "1", AR_NUL_TERMINATED), AR_ESTATE);
    assert_non_null(strstr(ar_store_errmsg(store), "only a waiting run"));
    assert_int_equal(ar_store_respond(NULL, store, ar_run_id(done), "1", AR_NUL_TERMINATED), AR_ESTATE);
    assert_int_equal(ar_store_respond(NULL, store, "01M95K521M0003BBGNPZYFC8GS", "1", AR_NUL_TERMINATED),
                     AR_ENOTFOUND);
    assert_int_equal(ar_store_respond(NULL, store, ar_run_id(waiting), "{bad", AR_NUL_TERMINATED), AR_EJSON);
    assert_int_equal(ar_store_respond(NULL, store, ar_run_id(waiting), "\"\xff\"", AR_NUL_TERMINATED), AR_EJSON);
    assert_int_equal(ar_store_respond(NULL, store, ar_run_id(waiting), NULL, 0), AR_EMISUSE);
    assert_int_equal(ar_store_respond(NULL, store, NULL, "1", AR_NUL_TERMINATED), AR_EMISUSE);
    assert_int_equal(ar_store_respond(NULL, NULL, ar_run_id(waiting), "1", AR_NUL_TERMINATED), AR_EMISUSE);
    char *a1 = stored_text(store, ar_run_id(running));
    char *a2 = stored_text(store, ar_run_id(done));
    char *a3 = stored_text(store, ar_run_id(waiting));
    expect_same_text(b1, a1, "the running run");
    expect_same_text(b2, a2, "the completed run");
    expect_same_text(b3, a3, "the waiting run");
    free(b1); free(b2); free(b3);
    free(a1); free(a2); free(a3);
    ar_run_close(running);
    ar_run_close(done);
    ar_run_close(waiting);
    ar_store_close(store);
}

static void test_a_waiting_run_survives_close_recover_and_retention(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    char *loc = test_location(&opts);
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, loc, &opts), AR_OK);
    ar_run *run = run_of(store, "patient", 2, 0);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    assert_int_equal(ar_run_wait(NULL, run, "\"later\"", AR_NUL_TERMINATED), AR_OK);
    ar_run *done = run_of(store, "patient", 1, 0);
    assert_int_equal(ar_run_complete(NULL, done, NULL, 0), AR_OK);
    ar_run_close(done);
    /* the handle is left open: closing the store must not touch the run */
    ar_store_close(store);
    ar_run_close(run);
    store = NULL;
    assert_int_equal(ar_store_open(&store, loc, &opts), AR_OK);
    ar_record *r = test_get(store, id, 0);
    assert_int_equal(r->status, AR_WAITING);
    ar_record_free(r);
    int64_t n = -1;
    assert_int_equal(ar_store_recover(&n, store, 0), AR_OK);
    assert_int_equal(n, 0);
    ar_retention p = AR_RETENTION_INIT;
    p.older_than = 0;
    p.keep_last = 0;
    ar_retention_report rep;
    assert_int_equal(ar_store_retain(&rep, store, &p), AR_OK);
    assert_int_equal(rep.considered, 1);
    assert_int_equal(rep.deleted, 1);
    ar_status waiting = AR_WAITING;
    p.status = &waiting;
    p.n_status = 1;
    assert_int_equal(ar_store_retain(&rep, store, &p), AR_EMISUSE);
    r = test_get(store, id, 1);
    assert_int_equal(r->status, AR_WAITING);
    assert_int_equal(r->n_steps, 3);
    ar_record_free(r);
    assert_int_equal(ar_store_respond(NULL, store, id, "\"now\"", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(ar_store_recover(&n, store, 0), AR_OK);
    assert_int_equal(n, 0);
    r = test_get(store, id, 0);
    assert_int_equal(r->status, AR_WAITING);
    ar_record_free(r);
    ar_store_close(store);
    free(loc);
}

/* The time spent waiting is not the run's: a run that waited an hour
 * resumes with its own elapsed time, far below a one-minute limit. */
static void test_max_seconds_does_not_count_the_wait(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_step steps[2] = { AR_STEP_INIT, AR_STEP_INIT };
    steps[0].kind = "llm";
    steps[1].kind = "wait";
    steps[1].content = "\"approve?\"";
    ar_record fields = AR_RECORD_INIT;
    int64_t hour_ago = (int64_t)time(NULL) * 1000 - 3600 * 1000;
    fields.agent = "slow";
    fields.goal = "g";
    fields.status = AR_WAITING;
    fields.request = "\"approve?\"";
    fields.created_at = hour_ago;
    fields.updated_at = hour_ago + 20;
    fields.steps = steps;
    fields.n_steps = 2;
    fields.budget.max_seconds = 60;
    char *id = NULL;
    assert_int_equal(ar_store_write(&id, store, &fields), AR_OK);
    assert_int_equal(ar_store_respond(NULL, store, id, "true", AR_NUL_TERMINATED), AR_OK);
    ar_run *h = NULL;
    assert_int_equal(ar_run_resume(&h, store, id, NULL), AR_OK);
    ar_exhaustion e;
    assert_int_equal(ar_run_check(&e, h), AR_OK);
    /* a live run: the wait stops its clock, the resume starts it again */
    ar_run *live = test_begin(store, "live");
    assert_int_equal(ar_run_wait(NULL, live, "1", AR_NUL_TERMINATED), AR_OK);
    ar_record *w = test_get(store, ar_run_id(live), 0);
    assert_int_equal(w->finished_at, AR_UNSET);
    ar_record_free(w);
    ar_run_close(live);
    ar_run_close(h);
    ar_free(id);
    ar_store_close(store);
}

/* A handle whose run was resumed elsewhere cannot set it waiting. */
static void test_a_fenced_handle_cannot_wait(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *old = run_of(store, "fenced", 1, 0);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(old));
    int64_t n = 0;
    assert_int_equal(ar_store_recover(&n, store, 0), AR_OK);
    ar_run *now = NULL;
    assert_int_equal(ar_run_resume(&now, store, id, NULL), AR_OK);
    assert_int_equal(ar_run_wait(NULL, old, "\"mine\"", AR_NUL_TERMINATED), AR_ESTATE);
    assert_non_null(strstr(ar_run_errmsg(old), "resumed elsewhere"));
    ar_record *r = test_get(store, id, 1);
    assert_int_equal(r->status, AR_RUNNING);
    assert_int_equal(r->n_steps, 1);
    ar_record_free(r);
    assert_int_equal(ar_run_wait(NULL, now, "\"theirs\"", AR_NUL_TERMINATED), AR_OK);
    r = test_get(store, id, 0);
    assert_string_equal(r->request, "\"theirs\"");
    ar_record_free(r);
    ar_run_close(old);
    ar_run_close(now);
    ar_store_close(store);
}

/* Processes answering one run at once: exactly one answer is taken. */
static void test_two_processes_answering_at_once_exactly_one_wins(void **state)
{
    (void)state;
    enum { WORKERS = 4 };
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    char *loc = test_location(&opts);
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, loc, &opts), AR_OK);
    ar_run *run = run_of(store, "contended", 1, 0);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    assert_int_equal(ar_run_wait(NULL, run, "\"who?\"", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(run);
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pids[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            close(go[1]);
            ar_store *s = NULL;
            int rc = ar_store_open(&s, loc, &opts);
            char c;
            while (read(go[0], &c, 1) < 0 && errno == EINTR)
                ;
            char answer[16];
            snprintf(answer, sizeof answer, "%d", w);
            if (rc == AR_OK)
                rc = ar_store_respond(NULL, s, id, answer, AR_NUL_TERMINATED);
            ar_store_close(s);
            _exit(rc == AR_OK ? 0 : rc == AR_ESTATE ? 1 : 2);
        }
    }
    close(go[0]);
    close(go[1]);
    int won = 0, lost = 0;
    for (int w = 0; w < WORKERS; w++) {
        int status = 0;
        while (waitpid(pids[w], &status, 0) < 0)
            assert_int_equal(errno, EINTR);
        assert_true(WIFEXITED(status));
        won += WEXITSTATUS(status) == 0;
        lost += WEXITSTATUS(status) == 1;
    }
    assert_int_equal(won, 1);
    assert_int_equal(lost, WORKERS - 1);
    ar_record *r = test_get(store, id, 1);
    assert_int_equal(r->n_steps, 3);
    assert_int_equal(r->iterations, 3);
    assert_string_equal(r->steps[2].kind, "response");
    assert_string_equal(r->steps[2].content, r->response);
    ar_record_free(r);
    ar_store_close(store);
    free(loc);
}

/* A waiting run and a fork, written whole into another store, read back the same. */
static void test_waiting_runs_and_forks_written_whole_read_back_the_same(void **state)
{
    (void)state;
    ar_store *a = test_store_new();
    ar_store *b = test_store_new();
    ar_run *run = run_of(a, "copied", 3, 0);
    ar_run *f = fork_at(a, ar_run_id(run), 2);
    assert_int_equal(ar_run_wait(NULL, run, "{\"q\":[1,2]}", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(ar_run_complete(NULL, f, "\"ok\"", AR_NUL_TERMINATED), AR_OK);
    ar_run *answered = run_of(a, "copied", 1, 0);
    assert_int_equal(ar_run_wait(NULL, answered, "1", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(ar_store_respond(NULL, a, ar_run_id(answered), "2", AR_NUL_TERMINATED), AR_OK);
    const char *ids[] = { ar_run_id(run), ar_run_id(f), ar_run_id(answered) };
    for (size_t i = 0; i < 3; i++) {
        ar_record *r = test_get(a, ids[i], 1);
        char *want = record_text(r);
        char *id = NULL;
        int rc = ar_store_write(&id, b, r);
        if (rc != AR_OK) {
            print_error("write %s: %s: %s\n", ids[i], ar_code_name(rc), ar_store_errmsg(b));
            fail();
        }
        char *got = stored_text(b, id);
        expect_same_text(want, got, "the run written whole");
        free(want);
        free(got);
        ar_free(id);
        ar_record_free(r);
    }
    /* the copy of the waiting run waits for its answer there too */
    assert_int_equal(ar_store_respond(NULL, b, ar_run_id(run), "\"yes\"", AR_NUL_TERMINATED), AR_OK);
    ar_run *h = NULL;
    assert_int_equal(ar_run_resume(&h, b, ar_run_id(run), NULL), AR_OK);
    assert_string_equal(ar_run_response(h), "\"yes\"");
    ar_run_close(h);
    /* a waiting record needs its request and has no finished_at */
    ar_record fields = AR_RECORD_INIT;
    fields.agent = "x";
    fields.goal = "g";
    fields.status = AR_WAITING;
    char *id = NULL;
    assert_int_equal(ar_store_write(&id, b, &fields), AR_EMISUSE);
    fields.request = "1";
    fields.finished_at = 5;
    assert_int_equal(ar_store_write(&id, b, &fields), AR_EMISUSE);
    fields.finished_at = AR_UNSET;
    fields.response = "{bad";
    assert_int_equal(ar_store_write(&id, b, &fields), AR_EJSON);
    fields.response = NULL;
    fields.forked_from = "not an id";
    assert_int_equal(ar_store_write(&id, b, &fields), AR_EMISUSE);
    fields.forked_from = ar_run_id(run);
    fields.forked_seq = 1; /* beyond the record's 0 steps */
    assert_int_equal(ar_store_write(&id, b, &fields), AR_EMISUSE);
    ar_run_close(answered);
    ar_run_close(f);
    ar_run_close(run);
    ar_store_close(a);
    ar_store_close(b);
}

/* ---- SQLite: a fork cut off half-way leaves nothing --------------------- */

static void test_a_fork_failing_half_way_leaves_nothing(void **state)
{
    (void)state;
    assert_int_equal(faultvfs_install(), SQLITE_OK);
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "fork.db");
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, path, &opts), AR_OK);
    ar_run *run = run_of(store, "cut", 400, 100);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    assert_int_equal(ar_run_fail(NULL, run, "wrong turn"), AR_OK);
    char *before = stored_text(store, id);
    int64_t steps = test_stored_steps(store);
    faultvfs_skip_sync(1);
    long failures = 0;
    for (long nth = 1;; nth++) {
        faultvfs_arm(FAULTVFS_WRITE | FAULTVFS_SYNC, nth, 0, 0);
        ar_run *f = NULL;
        ar_fork_opts o = AR_FORK_OPTS_INIT;
        o.at = 350;
        int rc = ar_run_fork(&f, store, id, &o);
        long fired = faultvfs_fired();
        faultvfs_clear();
        if (rc == AR_OK) {
            assert_int_equal(fired, 0);
            ar_run_close(f);
            break;
        }
        assert_int_equal(rc, AR_EIO);
        assert_null(f);
        failures++;
        assert_int_equal(count_runs(store), 1);
        assert_int_equal(test_stored_steps(store), steps);
        char *now = stored_text(store, id);
        expect_same_text(before, now, "the original run");
        free(now);
        assert_true(nth < 10000);
    }
    assert_true(failures > 0);
    faultvfs_skip_sync(0);
    assert_int_equal(count_runs(store), 2);
    assert_int_equal(test_stored_steps(store), steps + 350);
    char *after = stored_text(store, id);
    expect_same_text(before, after, "the original run");
    free(before);
    free(after);
    ar_run_close(run);
    ar_store_close(store);
    faultvfs_uninstall();
    free(path);
    tmpdir_remove(dir);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_fork_copies_steps_sums_checkpoint_and_names_its_origin),
    cmocka_unit_test(test_fork_leaves_the_original_byte_identical),
    cmocka_unit_test(test_fork_defaults_to_the_last_step_and_takes_any_status),
    cmocka_unit_test(test_forks_of_forks_and_listing_a_runs_forks),
    cmocka_unit_test(test_fork_budget_and_metadata_replace_the_runs),
    cmocka_unit_test(test_fork_bad_input_is_refused_and_writes_nothing),
    cmocka_unit_test(test_fork_of_a_long_run_copies_every_step),
    cmocka_unit_test(test_wait_appends_a_step_sets_waiting_and_releases_the_handle),
    cmocka_unit_test(test_wait_bad_request_is_refused_and_the_run_goes_on),
    cmocka_unit_test(test_respond_then_resume_gives_the_response_and_continues),
    cmocka_unit_test(test_a_run_waits_again_after_its_answer),
    cmocka_unit_test(test_respond_bad_input_and_wrong_states_change_nothing),
    cmocka_unit_test(test_a_waiting_run_survives_close_recover_and_retention),
    cmocka_unit_test(test_max_seconds_does_not_count_the_wait),
    cmocka_unit_test(test_a_fenced_handle_cannot_wait),
    cmocka_unit_test(test_two_processes_answering_at_once_exactly_one_wins),
    cmocka_unit_test(test_waiting_runs_and_forks_written_whole_read_back_the_same),
};

static const struct CMUnitTest file_tests[] = {
    cmocka_unit_test(test_a_fork_failing_half_way_leaves_nothing),
};

TEST_GROUP(fork_group, "fork", tests);
TEST_GROUP(fork_file_group, "fork_file", file_tests);
