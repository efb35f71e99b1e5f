/* test_allocfail.c -- allocations of the recording paths refused one at a time (ours, SQLite's, cJSON's): a clear error, no leak, nothing half-written. */
#include "suite.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "agentrun.h"

/* ---- failure injection -------------------------------------------------- */

/* Where an allocation comes from: the store's allocator, SQLite's memory
 * methods or cJSON's hooks (the core parses counters and budgets with it). */
enum { K_OURS, K_SQLITE, K_CJSON, K_ANY };

/* While armed, the allocations of `kind` (or of every kind) are counted and
 * the fail_at-th one is refused; all others succeed. Single-threaded. */
static struct {
    int armed;
    int kind;
    long seen;
    long fail_at;
    long refused;
    long live_ours;     /* blocks of the store allocator not yet freed */
    long live_cjson;
} inj;

static int refuse(int kind)
{
    if (!inj.armed || (inj.kind != K_ANY && inj.kind != kind) || ++inj.seen != inj.fail_at)
        return 0;
    inj.refused++;
    return 1;
}

static void *ours_malloc(void *ud, size_t n)
{
    (void)ud;
    void *p = refuse(K_OURS) ? NULL : malloc(n);
    inj.live_ours += p != NULL;
    return p;
}

static void *ours_realloc(void *ud, void *p, size_t n)
{
    (void)ud;
    void *q = refuse(K_OURS) ? NULL : realloc(p, n);
    inj.live_ours += q && !p;
    return q;
}

static void ours_free(void *ud, void *p)
{
    (void)ud;
    inj.live_ours -= p != NULL;
    free(p);
}

static const ar_allocator ours = { ours_malloc, ours_realloc, ours_free, NULL };

static sqlite3_mem_methods sq_orig;

static void *sq_malloc(int n) { return refuse(K_SQLITE) ? NULL : sq_orig.xMalloc(n); }
static void sq_free(void *p) { sq_orig.xFree(p); }
static void *sq_realloc(void *p, int n) { return refuse(K_SQLITE) ? NULL : sq_orig.xRealloc(p, n); }
static int sq_size(void *p) { return sq_orig.xSize(p); }
static int sq_roundup(int n) { return sq_orig.xRoundup(n); }
static int sq_init(void *ud) { (void)ud; return sq_orig.xInit(sq_orig.pAppData); }
static void sq_shutdown(void *ud) { (void)ud; sq_orig.xShutdown(sq_orig.pAppData); }

static void *cj_malloc(size_t n)
{
    void *p = refuse(K_CJSON) ? NULL : malloc(n);
    inj.live_cjson += p != NULL;
    return p;
}

static void cj_free(void *p)
{
    inj.live_cjson -= p != NULL;
    free(p);
}

/* SQLite's memory methods can only change while it is shut down, and are
 * process-wide: installed before each test, restored after it. */
static int hooks_install(void **state)
{
    (void)state;
    sqlite3_mem_methods wrapped = { sq_malloc, sq_free, sq_realloc, sq_size, sq_roundup,
                                    sq_init, sq_shutdown, NULL };
    if (sqlite3_shutdown() != SQLITE_OK ||
        sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sq_orig) != SQLITE_OK ||
        sqlite3_config(SQLITE_CONFIG_MALLOC, &wrapped) != SQLITE_OK ||
        sqlite3_initialize() != SQLITE_OK)
        return -1;
    cJSON_Hooks hooks = { cj_malloc, cj_free };
    cJSON_InitHooks(&hooks);
    memset(&inj, 0, sizeof inj);
    return 0;
}

static int hooks_remove(void **state)
{
    (void)state;
    cJSON_InitHooks(NULL);
    if (sqlite3_shutdown() != SQLITE_OK ||
        sqlite3_config(SQLITE_CONFIG_MALLOC, &sq_orig) != SQLITE_OK ||
        sqlite3_initialize() != SQLITE_OK)
        return -1;
    return 0;
}

static void arm(int kind, long fail_at)
{
    inj.armed = 1;
    inj.kind = kind;
    inj.seen = 0;
    inj.fail_at = fail_at;
    inj.refused = 0;
}

/* ---- checks that work in a forked child too ----------------------------- */

#define MSG_MAX 1024

static int in_child;            /* a child reports by exit status, not cmocka */
static const char *cur_op = "";

static void check_failed(int line, const char *what)
{
    if (in_child) {
        fprintf(stderr, "test_allocfail.c:%d: op \"%s\", allocation %ld refused: %s\n",
                line, cur_op, inj.fail_at, what);
        _exit(1);
    }
    fail_msg("test_allocfail.c:%d: op \"%s\", allocation %ld refused: %s", line, cur_op, inj.fail_at, what);
}

#define CHECK(c) do { if (!(c)) check_failed(__LINE__, #c); } while (0)
#define CHECK_INT(a, b) do {                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                         \
        if (a_ != b_) {                                                             \
            char m_[256];                                                           \
            snprintf(m_, sizeof m_, "%s is %lld, expected %lld", #a, a_, b_);       \
            check_failed(__LINE__, m_);                                             \
        }                                                                           \
    } while (0)
#define CHECK_STR(a, b) do {                                                        \
        const char *a_ = (a), *b_ = (b);                                            \
        if (!a_ || strcmp(a_, b_) != 0) {                                           \
            char m_[512];                                                           \
            snprintf(m_, sizeof m_, "%s is \"%s\", expected \"%s\"", #a,            \
                     a_ ? a_ : "(null)", b_);                                       \
            check_failed(__LINE__, m_);                                             \
        }                                                                           \
    } while (0)

/* 0 when the call succeeded. When it failed, the refused allocation must
 * have happened during it, and the error must say so: AR_ENOMEM with an
 * "out of memory" message. Returns 1 then, so the caller retries. */
static int failed_here(int rc, long before, const char *what, const char *msg)
{
    if (rc == AR_OK)
        return 0;
    char m[MSG_MAX];
    if (!(inj.refused && inj.fail_at > before && inj.fail_at <= inj.seen)) {
        snprintf(m, sizeof m, "%s failed with no allocation refused in it: %s: %s", what, ar_code_name(rc), msg);
        check_failed(__LINE__, m);
    }
    if (rc != AR_ENOMEM || !strstr(msg, "out of memory")) {
        snprintf(m, sizeof m, "%s gave %s \"%s\" (want ENOMEM, \"out of memory\")", what, ar_code_name(rc), msg);
        check_failed(__LINE__, m);
    }
    return 1;
}

static void expect_ok(int rc, const char *what, const char *msg)
{
    if (rc != AR_OK) {
        char m[MSG_MAX];
        snprintf(m, sizeof m, "%s, retried with memory back: %s: %s", what, ar_code_name(rc), msg);
        check_failed(__LINE__, m);
    }
}

/* Makes `call` (which sets rc); when the refused allocation made it fail,
 * checks `unchanged` and makes the same call again, which must succeed. */
#define UNDER_INJECTION(what, call, msg, unchanged) do {        \
        long before_ = inj.seen;                                \
        call;                                                   \
        if (failed_here(rc, before_, (what), (msg))) {          \
            unchanged;                                          \
            call;                                               \
            expect_ok(rc, (what), (msg));                       \
        }                                                       \
    } while (0)

/* ---- the recording scenario, one operation at a time -------------------- */

typedef struct world {
    const char *path;
    ar_store *store;
    ar_run *run;            /* the run being recorded, if any */
    char a_id[32], w_id[32], b_id[32], f_id[32];
} world;

#define A_STEPS 4

/* Step k's counters: step 2 brings two new names, step 3 sixteen more (a run
 * then has more than 16, the size of the core's small buffers), step 4 only
 * known ones. */
static size_t step_counters(int k, ar_counter *c, char names[16][16])
{
    size_t n = 0;
    switch (k) {
    case 1:
        c[n++] = (ar_counter){ "cache_read_tokens", 10 };
        break;
    case 2:
        c[n++] = (ar_counter){ "cache_read_tokens", 5 };
        c[n++] = (ar_counter){ "reasoning_tokens", 7 };
        c[n++] = (ar_counter){ "tool_calls", 1 };
        break;
    case 3:
        for (int i = 0; i < 16; i++) {
            snprintf(names[i], sizeof names[i], "c%02d", i);
            c[n++] = (ar_counter){ names[i], i + 1 };
        }
        c[n++] = (ar_counter){ "tool_calls", 2 };
        break;
    default:
        c[n++] = (ar_counter){ "c00", 100 };
        c[n++] = (ar_counter){ "cache_read_tokens", 1 };
        break;
    }
    return n;
}

static void step_make(ar_step *s, int k, char *content, size_t cap, ar_counter *c, char names[16][16])
{
    *s = (ar_step)AR_STEP_INIT;
    s->kind = k % 2 ? "llm" : "tool";
    s->name = k % 2 ? "model-x" : "search";
    snprintf(content, cap, "{\"k\":%d,\"text\":\"step %d of the run\",\"list\":[%d,%d]}", k, k, k, -k);
    s->content = k == 2 ? NULL : content;
    s->usage.input_tokens = 100 * k;
    s->usage.output_tokens = 10 * k;
    s->usage.cost = 0.001 * k;
    s->usage.extra = c;
    s->usage.n_extra = step_counters(k, c, names);
    s->duration_ms = k;
}

/* Counter `name` summed over steps 1..k, and how many names those steps have. */
static int64_t counter_sum(const char *name, int k)
{
    int64_t sum = 0;
    for (int j = 1; j <= k; j++) {
        ar_counter c[20];
        char names[16][16];
        size_t n = step_counters(j, c, names);
        for (size_t i = 0; i < n; i++)
            if (strcmp(c[i].name, name) == 0)
                sum += c[i].value;
    }
    return sum;
}

static size_t counter_names(int k)
{
    static const size_t by_steps[] = { 0, 1, 3, 19, 19 };
    return by_steps[k];
}

/* A run's totals, copied so that a failed call can be shown to change nothing. */
typedef struct snapshot {
    int64_t iterations, input, output;
    double cost;
    size_t n_extra;
    char names[32][72];
    int64_t values[32];
} snapshot;

static void snap(snapshot *s, const ar_run *run)
{
    const ar_usage *u = ar_run_usage(run);
    memset(s, 0, sizeof *s);
    s->iterations = ar_run_iterations(run);
    s->input = u->input_tokens;
    s->output = u->output_tokens;
    s->cost = u->cost;
    s->n_extra = u->n_extra;
    CHECK(u->n_extra <= 32);
    for (size_t i = 0; i < u->n_extra; i++) {
        snprintf(s->names[i], sizeof s->names[i], "%s", u->extra[i].name);
        s->values[i] = u->extra[i].value;
    }
}

static void expect_unchanged(const snapshot *before, const ar_run *run)
{
    snapshot now;
    snap(&now, run);
    CHECK(memcmp(&now, before, sizeof now) == 0);
}

static void op_open(world *w)
{
    int rc;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL; /* syncs are not what is tested here */
    opts.allocator = &ours;
    /* without memory for the store itself there is no handle for a message */
    UNDER_INJECTION("open", rc = ar_store_open(&w->store, w->path, &opts),
                    w->store ? ar_store_errmsg(w->store) : "out of memory (no store handle)",
                    ar_store_close(w->store); w->store = NULL);
}

static void op_begin_a(world *w)
{
    int rc;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "alloc";
    spec.goal = "refuse every allocation";
    spec.user = "u1";
    spec.metadata = "{\"tags\":[\"a\",\"b\"]}";
    spec.budget.max_steps = 100;
    spec.budget.max_cost = 5.0;
    UNDER_INJECTION("begin", rc = ar_run_begin(&w->run, w->store, &spec), ar_store_errmsg(w->store),
                    CHECK(w->run == NULL));
    snprintf(w->a_id, sizeof w->a_id, "%s", ar_run_id(w->run));
}

static void step_a(world *w, int k)
{
    int rc;
    char content[128];
    ar_counter c[20];
    char names[16][16];
    ar_step s;
    step_make(&s, k, content, sizeof content, c, names);
    snapshot before;
    snap(&before, w->run);
    int64_t seq = -1;
    UNDER_INJECTION("step", rc = ar_run_step(&seq, w->run, &s), ar_run_errmsg(w->run),
                    expect_unchanged(&before, w->run); CHECK_INT(seq, 0));
    CHECK_INT(seq, k);
}

static void op_step_a1(world *w) { step_a(w, 1); }
static void op_step_a2(world *w) { step_a(w, 2); }
static void op_step_a3(world *w) { step_a(w, 3); }
static void op_step_a4(world *w) { step_a(w, 4); }

static void op_checkpoint_a(world *w)
{
    int rc;
    UNDER_INJECTION("checkpoint", rc = ar_run_checkpoint(w->run, "{\"after\":4}", AR_NUL_TERMINATED),
                    ar_run_errmsg(w->run), CHECK_INT(ar_run_status(w->run), AR_RUNNING));
}

/* Run A as read back: every field, and with steps every step, after k steps. */
static void expect_run_a(const ar_record *r, int k, ar_status status, int with_steps)
{
    CHECK_STR(r->agent, "alloc");
    CHECK_STR(r->goal, "refuse every allocation");
    CHECK_STR(r->user, "u1");
    CHECK_STR(r->metadata, "{\"tags\":[\"a\",\"b\"]}");
    CHECK_INT(r->status, status);
    if (status == AR_COMPLETED)
        CHECK_STR(r->output, "{\"answer\":42}");
    CHECK_INT(r->budget.max_steps, 100);
    CHECK(r->budget.max_cost == 5.0);
    CHECK_INT(r->budget.max_tokens, AR_NO_LIMIT);
    CHECK_INT(r->iterations, k);
    CHECK_INT(r->usage.input_tokens, 100 * k * (k + 1) / 2);
    CHECK_INT(r->usage.output_tokens, 10 * k * (k + 1) / 2);
    CHECK(r->usage.cost == (double)(1000 * k * (k + 1) / 2) / 1e6);
    CHECK_INT(r->usage.n_extra, counter_names(k));
    for (size_t i = 0; i < r->usage.n_extra; i++)
        CHECK_INT(r->usage.extra[i].value, counter_sum(r->usage.extra[i].name, k));
    if (!with_steps)
        return;
    CHECK_INT(r->n_steps, k);
    for (int j = 1; j <= k; j++) {
        char content[128];
        ar_counter c[20];
        char names[16][16];
        ar_step want;
        step_make(&want, j, content, sizeof content, c, names);
        const ar_step *s = &r->steps[j - 1];
        CHECK_INT(s->seq, j);
        CHECK_STR(s->kind, want.kind);
        CHECK_STR(s->name, want.name);
        if (want.content)
            CHECK_STR(s->content, want.content);
        else
            CHECK(s->content == NULL);
        CHECK_INT(s->usage.input_tokens, want.usage.input_tokens);
        CHECK_INT(s->usage.output_tokens, want.usage.output_tokens);
        CHECK(s->usage.cost == want.usage.cost);
        CHECK_INT(s->usage.n_extra, want.usage.n_extra);
        CHECK_INT(s->duration_ms, j);
    }
}

static void op_complete_a(world *w)
{
    ar_record *rec = NULL;
    long before = inj.seen;
    int rc = ar_run_complete(&rec, w->run, "{\"answer\":42}", AR_NUL_TERMINATED);
    if (failed_here(rc, before, "complete", ar_run_errmsg(w->run))) {
        CHECK(rec == NULL);
        /* the run may be finished with only its record not read back */
        if (ar_run_status(w->run) == AR_RUNNING) {
            rc = ar_run_complete(&rec, w->run, "{\"answer\":42}", AR_NUL_TERMINATED);
            expect_ok(rc, "complete", ar_run_errmsg(w->run));
        } else {
            CHECK_INT(ar_run_status(w->run), AR_COMPLETED);
            CHECK(strstr(ar_run_errmsg(w->run), "the run is finished") != NULL);
        }
    }
    if (rec)
        expect_run_a(rec, A_STEPS, AR_COMPLETED, 0);
    ar_record_free(rec);
    ar_run_close(w->run);
    w->run = NULL;
}

static void op_get_a(world *w)
{
    int rc;
    ar_record *r = NULL;
    UNDER_INJECTION("get", rc = ar_store_get(&r, w->store, w->a_id, 1), ar_store_errmsg(w->store),
                    CHECK(r == NULL));
    expect_run_a(r, A_STEPS, AR_COMPLETED, 1);
    ar_record_free(r);
}

/* Streams run A's steps from seq 2; AR_OK and *n the count, or the first
 * failure (the iterator is closed either way). */
static int stream_steps(ar_store *store, const char *id, size_t *n)
{
    ar_step_iter *it = NULL;
    *n = 0;
    int rc = ar_steps_open(&it, store, id, 2, -1);
    const ar_step *s = NULL;
    while (rc == AR_OK && (rc = ar_steps_next(&s, it)) == AR_OK && s) {
        CHECK_INT(s->seq, (int64_t)*n + 2);
        (*n)++;
    }
    ar_steps_close(it);
    return rc;
}

static void op_stream_a(world *w)
{
    int rc;
    size_t n = 0;
    UNDER_INJECTION("steps", rc = stream_steps(w->store, w->a_id, &n), ar_store_errmsg(w->store), (void)0);
    CHECK_INT(n, A_STEPS - 1);
}

static void op_checkpoint_read_a(world *w)
{
    int rc;
    char *state = NULL;
    int64_t seq = 0;
    UNDER_INJECTION("checkpoint read", rc = ar_store_checkpoint(&state, &seq, w->store, w->a_id),
                    ar_store_errmsg(w->store), CHECK(state == NULL));
    CHECK_STR(state, "{\"after\":4}");
    CHECK_INT(seq, A_STEPS);
    ar_free(state);
}

/* Builds a record with the factory (which allocates with malloc, not a
 * store's allocator) and writes it whole. */
static void op_write(world *w)
{
    int rc;
    ar_counter c1[] = { { "cache_read_tokens", 3 } };
    ar_counter c2[] = { { "images", 2 }, { "cache_read_tokens", 4 } };
    ar_step steps[2] = { AR_STEP_INIT, AR_STEP_INIT };
    steps[0].kind = "llm";
    steps[0].content = "\"hello\"";
    steps[0].usage = (ar_usage){ 5, 6, 0, 0.5, 1, c1 };
    steps[1].kind = "tool";
    steps[1].name = "fetch";
    steps[1].content = "[1,2,3]";
    steps[1].usage = (ar_usage){ 7, 8, 0, 0.25, 2, c2 };
    ar_record fields = AR_RECORD_INIT;
    fields.agent = "factory";
    fields.goal = "write whole";
    fields.metadata = "{}";
    fields.steps = steps;
    fields.n_steps = 2;
    fields.checkpoint = "{\"plan\":[1]}";
    ar_record *rec = NULL;
    char err[256] = "";
    CHECK_INT(ar_record_completed(&rec, &fields, "\"written\"", AR_NUL_TERMINATED, err, sizeof err), AR_OK);
    char *out = NULL;
    UNDER_INJECTION("write", rc = ar_store_write(&out, w->store, rec), ar_store_errmsg(w->store),
                    CHECK(out == NULL));
    snprintf(w->w_id, sizeof w->w_id, "%s", out);
    ar_free(out);
    ar_record_free(rec);
}

static void op_begin_b(world *w)
{
    int rc;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "alloc";
    spec.goal = "resume";
    spec.parent = w->a_id;
    spec.budget.max_steps = 2;
    UNDER_INJECTION("begin", rc = ar_run_begin(&w->run, w->store, &spec), ar_store_errmsg(w->store),
                    CHECK(w->run == NULL));
    snprintf(w->b_id, sizeof w->b_id, "%s", ar_run_id(w->run));
}

static void op_step_b(world *w)
{
    int rc;
    ar_counter c[] = { { "retries", 1 } };
    ar_step s = AR_STEP_INIT;
    s.kind = "thought";
    s.usage.input_tokens = 1;
    s.usage.extra = c;
    s.usage.n_extra = 1;
    snapshot before;
    snap(&before, w->run);
    int64_t seq = 0;
    UNDER_INJECTION("step", rc = ar_run_step(&seq, w->run, &s), ar_run_errmsg(w->run),
                    expect_unchanged(&before, w->run));
    CHECK_INT(seq, before.iterations + 1);
}

static void op_exhaust_b(world *w)
{
    int rc;
    ar_exhaustion why;
    CHECK_INT(ar_run_check(&why, w->run), AR_EBUDGET);
    UNDER_INJECTION("exhaust", rc = ar_run_exhaust(NULL, w->run, &why), ar_run_errmsg(w->run),
                    CHECK_INT(ar_run_status(w->run), AR_RUNNING));
    ar_run_close(w->run);
    w->run = NULL;
}

/* Resuming reads the budget and counters back from the file (with cJSON). */
static void op_resume_b(world *w)
{
    int rc;
    UNDER_INJECTION("resume", rc = ar_run_resume(&w->run, w->store, w->b_id, NULL), ar_store_errmsg(w->store),
                    CHECK(w->run == NULL));
    CHECK_INT(ar_run_budget(w->run)->max_steps, 2);
    CHECK_INT(ar_run_iterations(w->run), 2);
    CHECK_INT(ar_run_usage(w->run)->n_extra, 1);
    CHECK_INT(ar_run_usage(w->run)->extra[0].value, 2);
}

static void op_fail_b(world *w)
{
    int rc;
    UNDER_INJECTION("fail", rc = ar_run_fail(NULL, w->run, "stopped"), ar_run_errmsg(w->run),
                    CHECK_INT(ar_run_status(w->run), AR_RUNNING));
    ar_run_close(w->run);
    w->run = NULL;
}

static void op_list(world *w)
{
    int rc;
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.limit = 2;
    ar_record **list = NULL;
    size_t n = 0;
    char *next = NULL;
    UNDER_INJECTION("list", rc = ar_runs_list(&list, &n, &next, w->store, &q), ar_store_errmsg(w->store),
                    CHECK(list == NULL && next == NULL));
    CHECK_INT(n, 2);
    CHECK(next != NULL);
    ar_records_free(list, n);
    q.after = next;
    UNDER_INJECTION("list after", rc = ar_runs_list(&list, &n, NULL, w->store, &q), ar_store_errmsg(w->store),
                    CHECK(list == NULL));
    CHECK_INT(n, 1);
    ar_records_free(list, n);
    ar_free(next);
}

static int count_problem(void *ud, const ar_check_problem *p)
{
    (void)p;
    (*(int *)ud)++;
    return 0;
}

static void op_count(world *w)
{
    int rc;
    ar_run_query q = AR_RUN_QUERY_INIT;
    int64_t count = 0;
    UNDER_INJECTION("count", rc = ar_runs_count(&count, w->store, &q), ar_store_errmsg(w->store), (void)0);
    CHECK_INT(count, 3);
    ar_stats st;
    UNDER_INJECTION("stats", rc = ar_runs_stats(&st, w->store, &q), ar_store_errmsg(w->store), (void)0);
    CHECK_INT(st.iterations, A_STEPS + 2 + 3);
    ar_store_info info;
    UNDER_INJECTION("info", rc = ar_store_info_get(&info, w->store), ar_store_errmsg(w->store), (void)0);
    CHECK_INT(info.steps, A_STEPS + 2 + 3);
    ar_check_report rep;
    int problems = 0;
    UNDER_INJECTION("check", rc = ar_store_check(&rep, w->store, count_problem, &problems), ar_store_errmsg(w->store),
                    (void)0);
    CHECK_INT(problems, 0);
    CHECK_INT(rep.runs, 3);
    CHECK_INT(rep.steps, A_STEPS + 2 + 3);
}

/* A fork of run A after its step 2: a copy made in the store, with the
 * counters summed there and read back into the handle. */
static void op_fork_a(world *w)
{
    int rc;
    ar_fork_opts o = AR_FORK_OPTS_INIT;
    o.at = 2;
    UNDER_INJECTION("fork", rc = ar_run_fork(&w->run, w->store, w->a_id, &o), ar_store_errmsg(w->store),
                    CHECK(w->run == NULL));
    snprintf(w->f_id, sizeof w->f_id, "%s", ar_run_id(w->run));
    CHECK_INT(ar_run_iterations(w->run), 2);
    CHECK_INT(ar_run_usage(w->run)->n_extra, counter_names(2));
}

static void op_wait_f(world *w)
{
    int rc;
    UNDER_INJECTION("wait", rc = ar_run_wait(NULL, w->run, "{\"approve\":true}", AR_NUL_TERMINATED),
                    ar_run_errmsg(w->run), CHECK_INT(ar_run_status(w->run), AR_RUNNING));
    CHECK_INT(ar_run_status(w->run), AR_WAITING);
    ar_run_close(w->run);
    w->run = NULL;
}

static void op_respond_f(world *w)
{
    int rc;
    UNDER_INJECTION("respond", rc = ar_store_respond(NULL, w->store, w->f_id, "\"yes\"", AR_NUL_TERMINATED),
                    ar_store_errmsg(w->store), (void)0);
}

static void op_resume_f(world *w)
{
    int rc;
    UNDER_INJECTION("resume F", rc = ar_run_resume(&w->run, w->store, w->f_id, NULL), ar_store_errmsg(w->store),
                    CHECK(w->run == NULL));
    CHECK_STR(ar_run_response(w->run), "\"yes\"");
    CHECK_INT(ar_run_iterations(w->run), 4);
}

static void op_complete_f(world *w)
{
    int rc;
    UNDER_INJECTION("complete F", rc = ar_run_complete(NULL, w->run, NULL, 0), ar_run_errmsg(w->run),
                    CHECK_INT(ar_run_status(w->run), AR_RUNNING));
    ar_run_close(w->run);
    w->run = NULL;
}

/* Output gathered with plain malloc (not the store's allocator). */
typedef struct membuf {
    char *data;
    size_t len;
} membuf;

static int membuf_write(void *ud, const char *data, size_t len)
{
    membuf *b = ud;
    char *grown = realloc(b->data, b->len + len + 1);
    if (!grown)
        return 1;
    memcpy(grown + b->len, data, len);
    b->len += len;
    grown[b->len] = '\0';
    b->data = grown;
    return 0;
}

static int membuf_export(ar_store *store, membuf *b, int otlp)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    return otlp ? ar_store_otlp(NULL, store, NULL, AR_OTLP_CONTENT, membuf_write, b)
                : ar_store_export(NULL, store, NULL, membuf_write, b);
}

typedef struct line_reader {
    const char *p;
} line_reader;

static int read_line(void *ud, const char **line, size_t *len)
{
    line_reader *r = ud;
    const char *nl = *r->p ? strchr(r->p, '\n') : NULL;
    *line = *r->p ? r->p : NULL;
    *len = nl ? (size_t)(nl - r->p) + 1 : strlen(r->p);
    r->p += *len;
    return 0;
}

/* The export, its import into a new store (a failed line is stored not at
 * all, and the import made again skips what came before it), a copy, and
 * the OTLP export. */
static void op_export_import(world *w)
{
    int rc;
    membuf out = { NULL, 0 }, again = { NULL, 0 };
    UNDER_INJECTION("export", rc = membuf_export(w->store, &out, 0), ar_store_errmsg(w->store), (void)0);
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.allocator = &ours;
    ar_store *dest = NULL;
    UNDER_INJECTION("open for import", rc = ar_store_open(&dest, ":memory:", &opts),
                    dest ? ar_store_errmsg(dest) : "out of memory (no store handle)",
                    ar_store_close(dest); dest = NULL);
    line_reader r = { out.data };
    ar_import_report rep;
    UNDER_INJECTION("import", (r.p = out.data, rc = ar_store_import(&rep, dest, read_line, &r)),
                    ar_store_errmsg(dest), (void)0);
    CHECK_INT(rep.runs + rep.skipped, 3);
    UNDER_INJECTION("export again", rc = membuf_export(dest, &again, 0), ar_store_errmsg(dest), (void)0);
    CHECK(strcmp(strchr(out.data, '\n'), strchr(again.data, '\n')) == 0);
    ar_store_close(dest);
    dest = NULL;
    UNDER_INJECTION("open for copy", rc = ar_store_open(&dest, ":memory:", &opts),
                    dest ? ar_store_errmsg(dest) : "out of memory (no store handle)",
                    ar_store_close(dest); dest = NULL);
    UNDER_INJECTION("copy", rc = ar_store_copy(&rep, dest, w->store), ar_store_errmsg(dest), (void)0);
    CHECK_INT(rep.runs + rep.skipped, 3);
    ar_store_close(dest);
    UNDER_INJECTION("otlp", rc = membuf_export(w->store, &again, 1), ar_store_errmsg(w->store), (void)0);
    CHECK(strstr(again.data, "invoke_agent alloc") != NULL);
    free(out.data);
    free(again.data);
}

typedef struct op {
    const char *name;
    void (*fn)(world *w);
} op;

static const op ops[] = {
    { "open", op_open },                    /* 0 */
    { "begin A", op_begin_a },              /* 1 */
    { "step A1", op_step_a1 },              /* 2 */
    { "step A2", op_step_a2 },
    { "step A3", op_step_a3 },
    { "step A4", op_step_a4 },              /* 5 */
    { "checkpoint A", op_checkpoint_a },    /* 6 */
    { "complete A", op_complete_a },        /* 7 */
    { "get A", op_get_a },
    { "stream A", op_stream_a },
    { "checkpoint read A", op_checkpoint_read_a },
    { "write record", op_write },           /* 11 */
    { "begin B", op_begin_b },              /* 12 */
    { "step B1", op_step_b },               /* 13 */
    { "step B2", op_step_b },               /* 14 */
    { "exhaust B", op_exhaust_b },          /* 15 */
    { "resume B", op_resume_b },            /* 16 */
    { "step B3", op_step_b },               /* 17 */
    { "fail B", op_fail_b },                /* 18 */
    { "list", op_list },
    { "count, stats, info", op_count },     /* 20 */
    { "export, import, copy, otlp", op_export_import },
    { "fork A", op_fork_a },                /* 22 */
    { "wait F", op_wait_f },
    { "respond F", op_respond_f },
    { "resume F", op_resume_f },
    { "complete F", op_complete_f },        /* 26 */
};
#define N_OPS (sizeof ops / sizeof ops[0])

/* With nothing refused: the store holds exactly what operations 0..done
 * acknowledged, once each, and the open run handle agrees with it. */
static void expect_state(world *w, size_t done)
{
    int saved = inj.armed;
    inj.armed = 0;
    int64_t runs = (done >= 1) + (done >= 11) + (done >= 12) + (done >= 22);
    /* the fork: A's first 2 steps, then its wait and response steps */
    int f_steps = done < 22 ? 0 : 2 + (done >= 23) + (done >= 24);
    int a_steps = done < 2 ? 0 : done < 5 ? (int)done - 1 : A_STEPS;
    static const int b_steps_after[] = { 0, 1, 2, 2, 2, 3, 3 };   /* ops 12..18 */
    int b_steps = done < 12 ? 0 : b_steps_after[(done > 18 ? 18 : done) - 12];
    ar_store_info info;
    CHECK_INT(ar_store_info_get(&info, w->store), AR_OK);
    CHECK_INT(info.runs, runs);
    CHECK_INT(info.steps, a_steps + (done >= 11 ? 2 : 0) + b_steps + f_steps);
    ar_record *r = NULL;
    if (done >= 1) {
        CHECK_INT(ar_store_get(&r, w->store, w->a_id, 1), AR_OK);
        expect_run_a(r, a_steps, done >= 7 ? AR_COMPLETED : AR_RUNNING, 1);
        ar_record_free(r);
        if (done < 7)
            CHECK_INT(ar_run_iterations(w->run), a_steps);
        char *state = NULL;
        int64_t seq = 0;
        CHECK_INT(ar_store_checkpoint(&state, &seq, w->store, w->a_id), AR_OK);
        if (done >= 6)
            CHECK_STR(state, "{\"after\":4}");
        else
            CHECK(state == NULL);
        ar_free(state);
    }
    if (done >= 11) {
        CHECK_INT(ar_store_get(&r, w->store, w->w_id, 1), AR_OK);
        CHECK_INT(r->status, AR_COMPLETED);
        CHECK_STR(r->output, "\"written\"");
        CHECK_INT(r->n_steps, 2);
        CHECK_STR(r->steps[1].content, "[1,2,3]");
        CHECK_INT(r->usage.input_tokens, 12);
        CHECK(r->usage.cost == 0.75);
        CHECK_INT(r->usage.n_extra, 2);
        CHECK_STR(r->usage.extra[0].name, "cache_read_tokens");
        CHECK_INT(r->usage.extra[0].value, 7);
        ar_record_free(r);
    }
    if (done >= 12) {
        static const ar_status b_status[] = { AR_RUNNING, AR_RUNNING, AR_RUNNING, AR_BUDGET_EXHAUSTED,
                                              AR_RUNNING, AR_RUNNING, AR_FAILED };
        CHECK_INT(ar_store_get(&r, w->store, w->b_id, 1), AR_OK);
        CHECK_INT(r->status, b_status[(done > 18 ? 18 : done) - 12]);
        CHECK_STR(r->parent, w->a_id);
        CHECK_INT(r->budget.max_steps, 2);
        CHECK_INT(r->iterations, b_steps);
        CHECK_INT(r->n_steps, b_steps);
        CHECK_INT(r->usage.n_extra, b_steps ? 1 : 0);
        if (b_steps)
            CHECK_INT(r->usage.extra[0].value, b_steps);
        if (r->status == AR_FAILED)
            CHECK_STR(r->error, "stopped");
        if (r->status == AR_BUDGET_EXHAUSTED)
            CHECK_STR(r->limit.limit, "max_steps");
        ar_record_free(r);
        if (w->run && done <= 21)
            CHECK_INT(ar_run_iterations(w->run), b_steps);
    }
    if (done >= 22) {
        static const ar_status f_status[] = { AR_RUNNING, AR_WAITING, AR_WAITING, AR_RUNNING, AR_COMPLETED };
        CHECK_INT(ar_store_get(&r, w->store, w->f_id, 1), AR_OK);
        CHECK_INT(r->status, f_status[done - 22]);
        CHECK_STR(r->forked_from, w->a_id);
        CHECK_INT(r->forked_seq, 2);
        CHECK_INT(r->n_steps, f_steps);
        CHECK_INT(r->usage.input_tokens, 300);
        CHECK_INT(r->usage.n_extra, counter_names(2));
        CHECK_INT(r->usage.extra[0].value, counter_sum(r->usage.extra[0].name, 2));
        if (done >= 23)
            CHECK_STR(r->request, "{\"approve\":true}");
        if (done >= 24)
            CHECK_STR(r->response, "\"yes\"");
        else
            CHECK(r->response == NULL);
        ar_record_free(r);
    }
    inj.armed = saved;
}

static void world_close(world *w)
{
    ar_run_close(w->run);
    ar_store_close(w->store);
    w->run = NULL;
    w->store = NULL;
}

/* ---- drivers ------------------------------------------------------------ */

/* Every allocation of every kind, each refused in turn. The state before
 * each operation is reached once; a forked child (the store lives in memory,
 * so the copy is complete and shares nothing) then makes the operation with
 * allocation j refused, checks the result, closes everything and reports by
 * exit status: 0 checked, 3 the operation makes fewer than j allocations.
 * Returns the number of allocation points exercised. */
/* One allocation point in AGENTRUN_TEST_ALLOC_STRIDE is refused (every one
 * by default): `make check` samples them, since under the sanitizers a
 * refusal costs a hundred times more, and `make test` refuses them all. */
static long alloc_stride(void)
{
    const char *e = getenv("AGENTRUN_TEST_ALLOC_STRIDE");
    long n = e ? strtol(e, NULL, 10) : 1;
    return n >= 1 ? n : 1;
}

static long every_allocation_forked(void)
{
    world w = { ":memory:", NULL, NULL, "", "", "", "" };
    long stride = alloc_stride();
    sqlite3_int64 mem_before = sqlite3_memory_used();
    long points = 0;
    for (size_t i = 0; i < N_OPS; i++) {
        cur_op = ops[i].name;
        for (long j = 1;; j += stride) {
            fflush(NULL);
            pid_t pid = fork();
            assert_true(pid >= 0);
            if (pid == 0) {
                in_child = 1;
                arm(K_ANY, j);
                ops[i].fn(&w);
                inj.armed = 0;
                int refused = inj.seen >= j;
                if (refused)
                    expect_state(&w, i);
                /* closed either way, also for a leak checker watching the child exit */
                world_close(&w);
                CHECK_INT(inj.live_ours, 0);
                CHECK_INT(inj.live_cjson, 0);
                CHECK_INT(sqlite3_memory_used(), mem_before);
                _exit(refused ? 0 : 3);
            }
            int status = 0;
            while (waitpid(pid, &status, 0) < 0)
                assert_int_equal(errno, EINTR);
            if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
                break;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("op \"%s\" with allocation %ld refused: the child ended with status %d",
                         cur_op, j, status);
            points++;
        }
        /* the state is checked in the children only: checking it here would
         * prepare statements that the children's operations should prepare */
        ops[i].fn(&w);
    }
    world_close(&w);
    assert_int_equal(inj.live_ours, 0);
    assert_int_equal(inj.live_cjson, 0);
    assert_int_equal(sqlite3_memory_used(), mem_before);
    return points;
}

static void remove_store_files(const char *path)
{
    char p[4200];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

/* One whole scenario on a new file with the fail_at-th allocation of `kind`
 * refused; returns how many allocations of that kind it made. */
static long file_pass(const char *path, int kind, long fail_at)
{
    remove_store_files(path);
    world w = { path, NULL, NULL, "", "", "", "" };
    sqlite3_int64 mem_before = sqlite3_memory_used();
    arm(kind, fail_at);
    for (size_t i = 0; i < N_OPS; i++) {
        cur_op = ops[i].name;
        ops[i].fn(&w);
    }
    inj.armed = 0;
    expect_state(&w, N_OPS - 1);
    world_close(&w);
    assert_int_equal(inj.live_ours, 0);
    assert_int_equal(inj.live_cjson, 0);
    assert_int_equal(sqlite3_memory_used(), mem_before);
    return inj.seen;
}

/* Refuses the allocations of `kind` numbered stride, 2 * stride, ... until a
 * pass makes fewer; returns how many were refused. */
static long every_allocation_of(const char *path, int kind, long stride)
{
    long points = 0;
    while (file_pass(path, kind, (points + 1) * stride) >= (points + 1) * stride)
        points++;
    return points;
}

static void test_any_refused_allocation_fails_only_its_call_cleanly_in_memory(void **state)
{
    (void)state;
    long points = every_allocation_forked(), stride = alloc_stride();
    print_message("allocation points refused (:memory:, all kinds, 1 in %ld): %ld\n", stride, points);
    assert_true(points * stride > 1000);
}

/* On a file the same scenario runs from the start for each refusal: every
 * allocation of ours and of cJSON's is refused in turn, and one in
 * SQLITE_STRIDE of SQLite's, whose every allocation the test above refuses. */
#define SQLITE_STRIDE 16

static void test_any_refused_allocation_fails_only_its_call_cleanly_on_file(void **state)
{
    (void)state;
    /* on tmpfs when there is one: the syncs are not what is tested here */
    char tmpl[] = "/dev/shm/agentrun-allocfail-XXXXXX";
    char *shm = access("/dev/shm", W_OK) == 0 ? mkdtemp(tmpl) : NULL;
    char *dir = shm ? strdup(shm) : tmpdir_make();
    char *path = tmpdir_path(dir, "alloc.db");
    long stride = alloc_stride();
    long ours_points = every_allocation_of(path, K_OURS, stride);
    long cjson_points = every_allocation_of(path, K_CJSON, stride);
    long sqlite_points = every_allocation_of(path, K_SQLITE, SQLITE_STRIDE * stride);
    print_message("allocation points refused (file): %ld ours, %ld cJSON (1 in %ld), %ld SQLite (1 in %ld)\n",
                  ours_points, cjson_points, stride, sqlite_points, SQLITE_STRIDE * stride);
    assert_true(ours_points * stride > 100);
    assert_true(cjson_points * stride > 100);
    assert_true(sqlite_points * stride > 100);
    free(path);
    tmpdir_remove(dir);
}

/* ---- intents: a refusal fails only its call ------------------------------ */

/* One pass with the fail_at-th allocation (of any kind) refused during three
 * calls on a resumed run: an intend (which first reads the run's keys), a
 * settle of a key left pending, and the listing. Each call refused fails
 * with AR_ENOMEM, changes nothing, and succeeds when made again. Returns
 * whether a refusal happened. */
static int intents_pass(long fail_at)
{
    int rc;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.allocator = &ours;
    ar_store *store = NULL;
    CHECK_INT(ar_store_open(&store, ":memory:", &opts), AR_OK);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "alloc";
    spec.goal = "intents";
    ar_run *run = NULL, *again = NULL;
    CHECK_INT(ar_run_begin(&run, store, &spec), AR_OK);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    CHECK_INT(ar_run_intend(NULL, run, "a", "t", "{\"x\":1}", AR_NUL_TERMINATED), AR_OK);
    CHECK_INT(ar_run_settle(NULL, run, "a", "\"done\"", AR_NUL_TERMINATED, 0), AR_OK);
    CHECK_INT(ar_run_intend(NULL, run, "b", "t", NULL, 0), AR_OK);
    CHECK_INT(ar_store_recover(NULL, store, 0), AR_OK);
    CHECK_INT(ar_run_resume(&again, store, id, NULL), AR_OK);

    arm(K_ANY, fail_at);
    cur_op = "intend";
    int64_t seq = -1;
    UNDER_INJECTION("intend", rc = ar_run_intend(&seq, again, "c", "t", "[1,2]", AR_NUL_TERMINATED),
                    ar_run_errmsg(again), CHECK_INT(seq, 0); CHECK_INT(ar_run_iterations(again), 3));
    CHECK_INT(seq, 4);
    cur_op = "settle";
    UNDER_INJECTION("settle", rc = ar_run_settle(&seq, again, "b", "\"asked\"", AR_NUL_TERMINATED, 0),
                    ar_run_errmsg(again), CHECK_INT(seq, 0); CHECK_INT(ar_run_iterations(again), 4));
    CHECK_INT(seq, 5);
    cur_op = "intents";
    ar_intent_list *list = NULL;
    UNDER_INJECTION("intents", rc = ar_store_intents(&list, store, id), ar_store_errmsg(store), CHECK(list == NULL));
    int refused = inj.refused > 0;
    inj.armed = 0;

    CHECK_INT(list->n, 3);
    CHECK_INT(list->items[0].status, AR_INTENT_SETTLED);
    CHECK_STR(list->items[0].result, "\"done\"");
    CHECK_INT(list->items[1].status, AR_INTENT_SETTLED);
    CHECK_STR(list->items[1].result, "\"asked\"");
    CHECK_INT(list->items[1].result_seq, 5);
    CHECK_INT(list->items[2].status, AR_INTENT_PENDING);
    CHECK_STR(list->items[2].args, "[1,2]");
    ar_intent_list_free(list);
    /* the keys are still known: no second intent of one, no second settle */
    CHECK_INT(ar_run_intend(NULL, again, "c", "t", NULL, 0), AR_ESTATE);
    CHECK_INT(ar_run_settle(NULL, again, "b", NULL, 0, 0), AR_ESTATE);
    ar_store_info info;
    CHECK_INT(ar_store_info_get(&info, store), AR_OK);
    CHECK_INT(info.steps, 5);
    ar_run_close(again);
    ar_run_close(run);
    ar_store_close(store);
    CHECK_INT(inj.live_ours, 0);
    return refused;
}

static void test_a_refused_allocation_fails_only_its_intent_call_cleanly(void **state)
{
    (void)state;
    long points = 0;
    while (intents_pass(points + 1))
        points++;
    print_message("allocation points refused (intents): %ld\n", points);
    assert_true(points > 20);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_any_refused_allocation_fails_only_its_call_cleanly_in_memory,
                                    hooks_install, hooks_remove),
    cmocka_unit_test_setup_teardown(test_any_refused_allocation_fails_only_its_call_cleanly_on_file,
                                    hooks_install, hooks_remove),
    cmocka_unit_test_setup_teardown(test_a_refused_allocation_fails_only_its_intent_call_cleanly,
                                    hooks_install, hooks_remove),
};

TEST_GROUP(allocfail_group, "allocfail", tests);
