/* test_ownership.c -- one writer per run: a resume fences the handle it replaces; closing a store interrupts its runs. */
#include "suite.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agentrun.h"

/* Every way a run handle writes to its run. W_CLOSE is the implicit finish
 * of ar_run_close; W_STORE_CLOSE closes the handle's store, which
 * interrupts the runs still open on it. */
enum { W_STEP, W_CHECKPOINT, W_COMPLETE, W_FAIL, W_EXHAUST, W_CLOSE, W_STORE_CLOSE, W_COUNT };
static const char *const write_names[] = {
    "step", "checkpoint", "complete", "fail", "exhaust", "close", "store close"
};

/* Makes one write of `kind` through `run` (on `store`) and returns its code.
 * W_CLOSE frees the handle and W_STORE_CLOSE the store; both return AR_OK. */
static int write_once(ar_store *store, ar_run *run, int kind)
{
    ar_step step = AR_STEP_INIT;
    step.kind = "late";
    step.usage.input_tokens = 100;
    ar_exhaustion why = { "max_steps", 1, 1 };
    switch (kind) {
    case W_STEP: return ar_run_step(NULL, run, &step);
    case W_CHECKPOINT: return ar_run_checkpoint(run, "\"late\"", AR_NUL_TERMINATED);
    case W_COMPLETE: return ar_run_complete(NULL, run, "\"late\"", AR_NUL_TERMINATED);
    case W_FAIL: return ar_run_fail(NULL, run, "late");
    case W_EXHAUST: return ar_run_exhaust(NULL, run, &why);
    case W_CLOSE: ar_run_close(run); return AR_OK;
    default: ar_store_close(store); return AR_OK;
    }
}

static ar_store *open_file(const char *path, const ar_open_opts *opts)
{
    ar_store *store = NULL;
    int rc = ar_store_open(&store, path, opts);
    if (rc != AR_OK) {
        print_error("open %s: %s: %s\n", path, ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    return store;
}

static ar_run *begin(ar_store *store)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "agent";
    spec.goal = "goal";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    return run;
}

/* Records an "own" step of 1 input token and checks its seq. */
static void step_ok(ar_run *run, int64_t want_seq)
{
    ar_step step = AR_STEP_INIT;
    step.kind = "own";
    step.usage.input_tokens = 1;
    int64_t seq = 0;
    int rc = ar_run_step(&seq, run, &step);
    if (rc != AR_OK) {
        print_error("step: %s: %s\n", ar_code_name(rc), ar_run_errmsg(run));
        fail();
    }
    assert_int_equal(seq, want_seq);
}

static ar_run *resume_ok(ar_store *store, const char *id)
{
    ar_run *run = NULL;
    int rc = ar_run_resume(&run, store, id, NULL);
    if (rc != AR_OK) {
        print_error("resume %s: %s: %s\n", id, ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    return run;
}

static ar_record *get(ar_store *store, const char *id)
{
    ar_record *rec = NULL;
    int rc = ar_store_get(&rec, store, id, 1);
    if (rc != AR_OK) {
        print_error("get %s: %s: %s\n", id, ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    return rec;
}

/* The run in the file: status, its n steps all "own" steps of 1 token, and the checkpoint. */
static void expect_run(ar_store *store, const char *id, ar_status status, int64_t n,
                       const char *checkpoint, int64_t checkpoint_seq)
{
    ar_record *rec = get(store, id);
    assert_int_equal(rec->status, status);
    assert_int_equal(rec->iterations, n);
    assert_int_equal(rec->n_steps, (size_t)n);
    assert_int_equal(rec->usage.input_tokens, n);
    for (size_t i = 0; i < rec->n_steps; i++) {
        assert_int_equal(rec->steps[i].seq, (int64_t)i + 1);
        assert_string_equal(rec->steps[i].kind, "own");
    }
    if (status == AR_COMPLETED)
        assert_string_equal(rec->output, "\"mine\"");
    else
        assert_null(rec->output);
    assert_null(rec->error);
    ar_record_free(rec);
    char *state = NULL;
    int64_t seq = -1;
    assert_int_equal(ar_store_checkpoint(&state, &seq, store, id), AR_OK);
    assert_string_equal(state, checkpoint);
    assert_int_equal(seq, checkpoint_seq);
    ar_free(state);
}

/* A: begins a run, records step 1 and a checkpoint. B (another store on the
 * file, or A itself) recovers and resumes it, and with `b_first` records
 * step 2 before A's handle writes again. Then each write of A's old handle
 * is refused with ESTATE "resumed elsewhere" and changes nothing, the
 * handle stays refused, and B carries on and completes the run. */
static void fenced_write(const char *path, const ar_open_opts *opts, int kind, int b_first, int same_store)
{
    ar_store *a = open_file(path, opts);
    ar_store *b = same_store ? a : open_file(path, opts);
    ar_run *ra = begin(a);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(ra));
    step_ok(ra, 1);
    assert_int_equal(ar_run_checkpoint(ra, "\"a1\"", AR_NUL_TERMINATED), AR_OK);
    int64_t n = -1;
    assert_int_equal(ar_store_recover(&n, b, 0), AR_OK);
    assert_int_equal(n, 1);
    ar_run *rb = resume_ok(b, id);
    int64_t done = 1;
    if (b_first)
        step_ok(rb, ++done);

    if (kind == W_STORE_CLOSE && same_store) {
        /* closing the one store closes both handles' store: not this case */
        ar_run_close(rb);
        ar_run_close(ra);
        ar_store_close(a);
        return;
    }
    int rc = write_once(a, ra, kind);
    if (kind < W_CLOSE) {
        if (rc != AR_ESTATE || !strstr(ar_run_errmsg(ra), "resumed elsewhere")) {
            print_error("%s by the old handle: %s: %s\n", write_names[kind], ar_code_name(rc), ar_run_errmsg(ra));
            fail();
        }
        assert_non_null(strstr(ar_run_errmsg(ra), id));
        assert_int_not_equal(ar_run_status(ra), AR_RUNNING);
        /* the handle stays refused, whatever it tries next */
        for (int k = W_STEP; k < W_CLOSE; k++)
            assert_int_equal(write_once(a, ra, k), AR_ESTATE);
        assert_int_equal(ar_run_check(NULL, ra), AR_ESTATE);
    }
    expect_run(b, id, AR_RUNNING, done, "\"a1\"", 1);
    if (kind != W_CLOSE)
        ar_run_close(ra);
    if (kind != W_STORE_CLOSE && !same_store)
        ar_store_close(a);
    expect_run(b, id, AR_RUNNING, done, "\"a1\"", 1);

    /* the new owner was never blocked */
    step_ok(rb, ++done);
    assert_int_equal(ar_run_checkpoint(rb, "\"b\"", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(ar_run_complete(NULL, rb, "\"mine\"", AR_NUL_TERMINATED), AR_OK);
    expect_run(b, id, AR_COMPLETED, done, "\"b\"", done);
    ar_run_close(rb);
    ar_store_close(b);
}

static void test_every_write_of_a_handle_whose_run_was_resumed_elsewhere_is_estate_and_changes_nothing(void **state)
{
    (void)state;
    for (int kind = 0; kind < W_COUNT; kind++) {
        for (int b_first = 0; b_first < 2; b_first++) {
            for (int same = 0; same < 2; same++) {
                ar_open_opts opts = AR_OPEN_OPTS_INIT;
                char *path = test_location(&opts);
                fenced_write(path, &opts, kind, b_first, same);
                free(path);
            }
        }
    }
}

/* recover alone (no resume): the handle still holds the run's epoch, but
 * the run is interrupted, so each write is ESTATE and changes nothing; the
 * run stays interrupted (closing the handle does not fail it) and can be
 * resumed. */
static void test_a_handle_whose_run_was_only_recovered_gets_estate_and_leaves_it_interrupted(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    char *path = test_location(&opts);
    for (int kind = 0; kind < W_COUNT; kind++) {
        ar_store *a = open_file(path, &opts);
        ar_store *b = open_file(path, &opts);
        ar_run *ra = begin(a);
        char id[32];
        snprintf(id, sizeof id, "%s", ar_run_id(ra));
        step_ok(ra, 1);
        assert_int_equal(ar_run_checkpoint(ra, "\"a1\"", AR_NUL_TERMINATED), AR_OK);
        assert_int_equal(ar_store_recover(NULL, b, 0), AR_OK);
        int rc = write_once(a, ra, kind);
        if (kind < W_CLOSE) {
            if (rc != AR_ESTATE || !strstr(ar_run_errmsg(ra), "interrupted")) {
                print_error("%s after recover: %s: %s\n", write_names[kind], ar_code_name(rc), ar_run_errmsg(ra));
                fail();
            }
            assert_int_equal(ar_run_status(ra), AR_INTERRUPTED);
            assert_int_equal(write_once(a, ra, W_STEP), AR_ESTATE);
        }
        if (kind != W_CLOSE)
            ar_run_close(ra);
        if (kind != W_STORE_CLOSE)
            ar_store_close(a);
        expect_run(b, id, AR_INTERRUPTED, 1, "\"a1\"", 1);
        ar_run *rb = resume_ok(b, id);
        step_ok(rb, 2);
        assert_int_equal(ar_run_complete(NULL, rb, "\"mine\"", AR_NUL_TERMINATED), AR_OK);
        expect_run(b, id, AR_COMPLETED, 2, "\"a1\"", 1);
        ar_run_close(rb);
        ar_store_close(b);
    }
    free(path);
}

/* ---- across processes --------------------------------------------------- */

/* What the child reports after its write: the code, the handle's status,
 * and whether the message says "resumed elsewhere". */
typedef struct report {
    int32_t rc, status, says_resumed, pad;
} report;

/* The child: begins a run in the store at `path` (opened with opts), records step 1, sends the id, waits
 * for the parent's go, then makes the write `kind` with its old handle and
 * reports. Never returns. */
static void child_old_owner(const char *path, const ar_open_opts *opts, int kind, int to_parent,
                            int from_parent)
{
    ar_store *store = NULL;
    ar_run *run = NULL;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "agent";
    spec.goal = "goal";
    ar_step step = AR_STEP_INIT;
    step.kind = "own";
    step.usage.input_tokens = 1;
    if (ar_store_open(&store, path, opts) || ar_run_begin(&run, store, &spec) ||
        ar_run_step(NULL, run, &step) || ar_run_checkpoint(run, "\"a1\"", AR_NUL_TERMINATED))
        _exit(2);
    if (write(to_parent, ar_run_id(run), 26) != 26)
        _exit(3);
    char go;
    if (read(from_parent, &go, 1) != 1)
        _exit(4);
    report r = { 0, 0, 0, 0 };
    r.rc = write_once(store, run, kind);
    if (kind < W_CLOSE) {
        r.status = (int32_t)ar_run_status(run);
        r.says_resumed = strstr(ar_run_errmsg(run), "resumed elsewhere") != NULL;
        ar_run_close(run);
    }
    if (kind != W_STORE_CLOSE)
        ar_store_close(store);
    if (write(to_parent, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(5);
    _exit(0);
}

static void test_a_handle_in_another_process_is_fenced_once_its_run_is_resumed(void **state)
{
    (void)state;
    for (int kind = 0; kind < W_COUNT; kind++) {
        ar_open_opts opts = AR_OPEN_OPTS_INIT;
        char *path = test_location(&opts);
        int up[2], down[2];
        assert_int_equal(pipe(up), 0);
        assert_int_equal(pipe(down), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(up[0]);
            close(down[1]);
            child_old_owner(path, &opts, kind, up[1], down[0]);
        }
        close(up[1]);
        close(down[0]);
        char id[27] = "";
        assert_int_equal(read(up[0], id, 26), 26);

        ar_store *store = open_file(path, &opts);
        int64_t n = -1;
        assert_int_equal(ar_store_recover(&n, store, 0), AR_OK);
        assert_int_equal(n, 1);
        ar_run *rb = resume_ok(store, id);
        step_ok(rb, 2);
        assert_int_equal(write(down[1], "g", 1), 1);
        report r;
        assert_int_equal(read(up[0], &r, sizeof r), (ssize_t)sizeof r);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        close(up[0]);
        close(down[1]);
        if (kind < W_CLOSE) {
            if (r.rc != AR_ESTATE || !r.says_resumed) {
                print_error("%s in the other process: %s\n", write_names[kind], ar_code_name(r.rc));
                fail();
            }
            assert_int_not_equal(r.status, AR_RUNNING);
        }
        expect_run(store, id, AR_RUNNING, 2, "\"a1\"", 1);
        step_ok(rb, 3);
        assert_int_equal(ar_run_complete(NULL, rb, "\"mine\"", AR_NUL_TERMINATED), AR_OK);
        expect_run(store, id, AR_COMPLETED, 3, "\"a1\"", 1);
        ar_run_close(rb);
        ar_store_close(store);
        free(path);
    }
}

/* ---- resume takes the run as it stands ---------------------------------- */

/* An allocator that, once armed, runs a hook on the first allocation of
 * `hook_size` bytes: a way to act between two steps of a call. */
typedef struct hook_alloc {
    size_t hook_size;
    int armed, fired;
    void (*hook)(void *ud);
    void *hook_ud;
} hook_alloc;

static void *hook_malloc(void *ud, size_t n)
{
    hook_alloc *h = ud;
    if (h->armed && n == h->hook_size) {
        h->armed = 0;
        h->fired = 1;
        h->hook(h->hook_ud);
    }
    return malloc(n);
}
static void *hook_realloc(void *ud, void *p, size_t n) { (void)ud; return realloc(p, n); }
static void hook_free(void *ud, void *p) { (void)ud; free(p); }

/* The counter name whose copy (its length + 1 bytes) triggers the hook. */
#define HOOK_COUNTER "counter_with_a_name_of_a_rare_length_x"

typedef struct race {
    const char *path, *id;
    const ar_open_opts *at;     /* the store's options (its schema) */
    int rc;
} race;

/* Another store resumes the run, records a step and ends it exhausted
 * again, if it can get the file. */
static void resume_elsewhere(void *ud)
{
    race *r = ud;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    test_same_store(&opts, r->at);
    opts.busy_timeout_ms = 0;
    ar_store *other = NULL;
    ar_run *run = NULL;
    ar_step step = AR_STEP_INIT;
    step.kind = "own";
    step.usage.input_tokens = 1;
    ar_exhaustion why = { "max_steps", 1, 2 };
    r->rc = ar_store_open(&other, r->path, &opts);
    if (r->rc == AR_OK && (r->rc = ar_run_resume(&run, other, r->id, NULL)) == AR_OK &&
        (r->rc = ar_run_step(NULL, run, &step)) == AR_OK)
        r->rc = ar_run_exhaust(NULL, run, &why);
    ar_run_close(run);
    ar_store_close(other);
}

static void test_a_resume_never_continues_from_totals_another_resume_has_moved_past(void **state)
{
    (void)state;
    ar_open_opts at = AR_OPEN_OPTS_INIT;
    char *path = test_location(&at);
    ar_store *store = open_file(path, &at);
    ar_run *run = begin(store);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    ar_counter c[] = { { HOOK_COUNTER, 1 } };
    ar_step step = AR_STEP_INIT;
    step.kind = "own";
    step.usage.input_tokens = 1;
    step.usage.extra = c;
    step.usage.n_extra = 1;
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    ar_exhaustion why = { "max_steps", 1, 1 };
    assert_int_equal(ar_run_exhaust(NULL, run, &why), AR_OK);
    ar_run_close(run);
    ar_store_close(store);

    race r = { path, id, &at, -1 };
    hook_alloc h = { strlen(HOOK_COUNTER) + 1, 0, 0, resume_elsewhere, &r };
    ar_allocator alloc = { hook_malloc, hook_realloc, hook_free, &h };
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    test_same_store(&opts, &at);
    opts.allocator = &alloc;
    store = NULL;
    assert_int_equal(ar_store_open(&store, path, &opts), AR_OK);
    h.armed = 1;
    run = NULL;
    int rc = ar_run_resume(&run, store, id, NULL);
    assert_true(h.fired);
    /* either this resume came first (the other got EBUSY) or it sees what the other did */
    if (rc == AR_OK) {
        ar_record *rec = get(store, id);
        assert_int_equal(ar_run_iterations(run), rec->iterations);
        assert_int_equal(ar_run_usage(run)->input_tokens, rec->usage.input_tokens);
        ar_record_free(rec);
        step.usage.n_extra = 0;
        int64_t seq = 0;
        rc = ar_run_step(&seq, run, &step);
        if (rc != AR_OK) {
            print_error("step after the resume: %s: %s\n", ar_code_name(rc), ar_run_errmsg(run));
            fail();
        }
        assert_int_equal(seq, ar_run_iterations(run));
        assert_int_equal(ar_run_complete(NULL, run, NULL, 0), AR_OK);
    } else {
        assert_int_equal(rc, AR_ESTATE);
    }
    ar_run_close(run);
    ar_store_close(store);
    free(path);
}

/* ---- closing a store ---------------------------------------------------- */

static void test_closing_the_store_interrupts_its_open_runs_which_can_then_be_resumed(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        ar_open_opts opts = AR_OPEN_OPTS_INIT;
        char *path = test_location(&opts);
        opts.durability = mode ? AR_DURABILITY_NORMAL : AR_DURABILITY_FULL;
        ar_store *store = NULL;
        assert_int_equal(ar_store_open(&store, path, &opts), AR_OK);
        ar_run *open1 = begin(store);
        ar_run *open2 = begin(store);
        ar_run *done = begin(store);
        step_ok(open1, 1);
        assert_int_equal(ar_run_checkpoint(open1, "\"a1\"", AR_NUL_TERMINATED), AR_OK);
        assert_int_equal(ar_run_complete(NULL, done, "\"mine\"", AR_NUL_TERMINATED), AR_OK);
        char id1[32], id2[32], id3[32];
        snprintf(id1, sizeof id1, "%s", ar_run_id(open1));
        snprintf(id2, sizeof id2, "%s", ar_run_id(open2));
        snprintf(id3, sizeof id3, "%s", ar_run_id(done));
        ar_store_close(store);

        /* the handles outlive the store, report the runs interrupted, and refuse further work */
        assert_int_equal(ar_run_status(open1), AR_INTERRUPTED);
        assert_int_equal(ar_run_status(open2), AR_INTERRUPTED);
        assert_int_equal(ar_run_status(done), AR_COMPLETED);
        for (int k = W_STEP; k < W_CLOSE; k++) {
            assert_int_equal(write_once(NULL, open1, k), AR_ESTATE);
            assert_int_equal(write_once(NULL, open2, k), AR_ESTATE);
        }
        assert_int_equal(ar_run_check(NULL, open1), AR_ESTATE);
        assert_int_equal(ar_run_iterations(open1), 1);
        ar_run_close(open1);
        ar_run_close(open2);
        ar_run_close(done);

        store = NULL;
        assert_int_equal(ar_store_open(&store, path, &opts), AR_OK);
        expect_run(store, id1, AR_INTERRUPTED, 1, "\"a1\"", 1);
        ar_record *rec = get(store, id2);
        assert_int_equal(rec->status, AR_INTERRUPTED);
        assert_null(rec->error);
        assert_int_not_equal(rec->finished_at, AR_UNSET);
        ar_record_free(rec);
        rec = get(store, id3);
        assert_int_equal(rec->status, AR_COMPLETED);
        ar_record_free(rec);
        /* exactly as after a crash and recover: resumable */
        ar_run *again = resume_ok(store, id1);
        step_ok(again, 2);
        assert_int_equal(ar_run_complete(NULL, again, "\"mine\"", AR_NUL_TERMINATED), AR_OK);
        expect_run(store, id1, AR_COMPLETED, 2, "\"a1\"", 1);
        ar_run_close(again);
        ar_store_close(store);
        free(path);
    }
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_every_write_of_a_handle_whose_run_was_resumed_elsewhere_is_estate_and_changes_nothing),
    cmocka_unit_test(test_a_handle_whose_run_was_only_recovered_gets_estate_and_leaves_it_interrupted),
    cmocka_unit_test(test_a_handle_in_another_process_is_fenced_once_its_run_is_resumed),
    cmocka_unit_test(test_a_resume_never_continues_from_totals_another_resume_has_moved_past),
    cmocka_unit_test(test_closing_the_store_interrupts_its_open_runs_which_can_then_be_resumed),
};

TEST_GROUP(ownership_group, "ownership", tests);
