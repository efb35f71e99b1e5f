/* test_unsure.c -- a write whose outcome is not known (the connection cut
 * off after the commit was sent, a sync that failed after the commit was
 * written) is learnt by the run's next write: a retry of the same step is
 * recorded once, a different step follows the one written, and a finish
 * retried succeeds. The backend of the pass, wrapped so that its writes
 * report EIO after (or instead of) taking effect. */
#include "suite.h"

#include <stdio.h>
#include <string.h>

#include "internal.h"

/* What the wrapped backend does with its next write. */
enum { PASS, CUT_AFTER, FAIL_BEFORE };
static int step_mode, finish_mode, settle_fails;
static const ar_backend *real;
static ar_backend wrapped;

static int cut(ar_err *err, const char *what)
{
    return ar_fail(err, AR_EIO, "%s: the connection was cut off; whether it was written is not known", what);
}

static int step_append(ar_db *db, int64_t n, int64_t owner, const ar_db_step *step, const ar_db_progress *p,
                       ar_err *err)
{
    int mode = step_mode;
    step_mode = PASS;
    if (mode == FAIL_BEFORE)
        return cut(err, "recording the step");
    int rc = real->step_append(db, n, owner, step, p, err);
    return rc == AR_OK && mode == CUT_AFTER ? cut(err, "recording the step") : rc;
}

static int run_finish(ar_db *db, int64_t n, int64_t owner, const ar_db_finish *f, ar_err *err)
{
    int mode = finish_mode;
    finish_mode = PASS;
    if (mode == FAIL_BEFORE)
        return cut(err, "ending the run");
    int rc = real->run_finish(db, n, owner, f, err);
    return rc == AR_OK && mode == CUT_AFTER ? cut(err, "ending the run") : rc;
}

static int settle(ar_db *db, ar_err *err)
{
    if (settle_fails)
        return ar_fail(err, AR_EIO, "the server cannot be asked yet");
    return real->settle ? real->settle(db, err) : AR_OK;
}

typedef struct fixture {
    ar_store *store;
    ar_run *run;
} fixture;

static int setup(void **state)
{
    static fixture f;
    f.store = test_store_new();
    real = f.store->be;
    wrapped = *real;
    wrapped.step_append = step_append;
    wrapped.run_finish = run_finish;
    wrapped.settle = settle;
    f.store->be = &wrapped;
    step_mode = finish_mode = PASS;
    settle_fails = 0;
    f.run = test_begin(f.store, "unsure");
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ar_run_close(f->run);
    f->store->be = real;
    ar_store_close(f->store);
    return 0;
}

static int record(ar_run *run, const char *content, int64_t tokens, int64_t *seq)
{
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    s.content = content;
    s.usage.input_tokens = tokens;
    s.usage.cost = 0.25;
    return ar_run_step(seq, run, &s);
}

/* The run's steps in the store, with their contents, and its totals. */
static void expect_run(ar_store *store, const char *id, int n, const char *const *contents, int64_t tokens)
{
    ar_record *rec = test_get(store, id, 1);
    assert_int_equal(rec->n_steps, n);
    assert_int_equal(rec->iterations, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(rec->steps[i].seq, i + 1);
        assert_int_equal(rec->steps[i].content_len, strlen(contents[i]));
        assert_memory_equal(rec->steps[i].content, contents[i], strlen(contents[i]));
    }
    assert_int_equal(rec->usage.input_tokens, tokens);
    assert_true(rec->usage.cost == 0.25 * n);
    ar_record_free(rec);
}

static void test_a_step_retried_after_an_unknown_outcome_is_recorded_once(void **state)
{
    fixture *f = *state;
    int64_t seq = 0;
    assert_int_equal(record(f->run, "\"one\"", 1, &seq), AR_OK);
    step_mode = CUT_AFTER;
    assert_int_equal(record(f->run, "\"two\"", 2, &seq), AR_EIO);
    assert_int_equal(seq, 0);
    assert_int_equal(record(f->run, "\"two\"", 2, &seq), AR_OK);
    assert_int_equal(seq, 2);
    assert_int_equal(record(f->run, "\"three\"", 4, &seq), AR_OK);
    assert_int_equal(seq, 3);
    const char *want[] = { "\"one\"", "\"two\"", "\"three\"" };
    expect_run(f->store, ar_run_id(f->run), 3, want, 7);
    assert_int_equal(ar_run_usage(f->run)->input_tokens, 7);
}

static void test_a_different_step_after_an_unknown_outcome_follows_the_one_written(void **state)
{
    fixture *f = *state;
    int64_t seq = 0;
    step_mode = CUT_AFTER;
    assert_int_equal(record(f->run, "\"planned\"", 3, &seq), AR_EIO);
    /* not the same step: the one written stays, this one follows it */
    assert_int_equal(record(f->run, "\"replanned\"", 5, &seq), AR_OK);
    assert_int_equal(seq, 2);
    const char *want[] = { "\"planned\"", "\"replanned\"" };
    expect_run(f->store, ar_run_id(f->run), 2, want, 8);
    assert_int_equal(ar_run_usage(f->run)->input_tokens, 8);
    assert_int_equal(ar_run_iterations(f->run), 2);
}

static void test_a_step_that_failed_unwritten_is_written_by_the_retry(void **state)
{
    fixture *f = *state;
    int64_t seq = 0;
    step_mode = FAIL_BEFORE;
    assert_int_equal(record(f->run, "\"one\"", 1, &seq), AR_EIO);
    assert_int_equal(record(f->run, "\"one\"", 1, &seq), AR_OK);
    assert_int_equal(seq, 1);
    const char *want[] = { "\"one\"" };
    expect_run(f->store, ar_run_id(f->run), 1, want, 1);
}

static void test_a_checkpoint_after_an_unknown_step_follows_the_step_written(void **state)
{
    fixture *f = *state;
    int64_t seq = 0;
    step_mode = CUT_AFTER;
    assert_int_equal(record(f->run, "\"one\"", 1, &seq), AR_EIO);
    assert_int_equal(ar_run_checkpoint(f->run, "{\"at\":1}", AR_NUL_TERMINATED), AR_OK);
    char *state_json = NULL;
    int64_t at = 0;
    assert_int_equal(ar_store_checkpoint(&state_json, &at, f->store, ar_run_id(f->run)), AR_OK);
    assert_int_equal(at, 1);
    ar_free(state_json);
}

static void test_an_outcome_that_cannot_be_learnt_yet_fails_the_next_write_and_changes_nothing(void **state)
{
    fixture *f = *state;
    int64_t seq = 0;
    step_mode = CUT_AFTER;
    assert_int_equal(record(f->run, "\"one\"", 1, &seq), AR_EIO);
    settle_fails = 1;
    assert_int_equal(record(f->run, "\"one\"", 1, &seq), AR_EIO);
    assert_non_null(strstr(ar_run_errmsg(f->run), "cannot be asked yet"));
    assert_int_equal(ar_run_checkpoint(f->run, "1", AR_NUL_TERMINATED), AR_EIO);
    assert_int_equal(ar_run_complete(NULL, f->run, "1", AR_NUL_TERMINATED), AR_EIO);
    settle_fails = 0;
    assert_int_equal(record(f->run, "\"one\"", 1, &seq), AR_OK);
    assert_int_equal(seq, 1);
    const char *want[] = { "\"one\"" };
    expect_run(f->store, ar_run_id(f->run), 1, want, 1);
}

static void test_a_finish_retried_after_an_unknown_outcome_succeeds(void **state)
{
    fixture *f = *state;
    assert_int_equal(record(f->run, "\"one\"", 1, NULL), AR_OK);
    finish_mode = CUT_AFTER;
    ar_record *rec = NULL;
    assert_int_equal(ar_run_complete(&rec, f->run, "\"done\"", AR_NUL_TERMINATED), AR_EIO);
    assert_null(rec);
    assert_int_equal(ar_run_complete(&rec, f->run, "\"done\"", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(rec->status, AR_COMPLETED);
    assert_int_equal(rec->iterations, 1);
    ar_record_free(rec);
    /* the handle has finished it: it takes nothing more */
    assert_int_equal(record(f->run, "\"two\"", 1, NULL), AR_ESTATE);
}

static void test_a_different_finish_after_an_unknown_outcome_is_refused_naming_the_first(void **state)
{
    fixture *f = *state;
    finish_mode = CUT_AFTER;
    assert_int_equal(ar_run_complete(NULL, f->run, "\"done\"", AR_NUL_TERMINATED), AR_EIO);
    assert_int_equal(ar_run_fail(NULL, f->run, "gave up"), AR_ESTATE);
    assert_non_null(strstr(ar_run_errmsg(f->run), "ended as completed by the earlier call"));
    ar_record *rec = test_get(f->store, ar_run_id(f->run), 0);
    assert_int_equal(rec->status, AR_COMPLETED);
    ar_record_free(rec);
}

static void test_a_finish_that_failed_unwritten_is_made_by_the_retry(void **state)
{
    fixture *f = *state;
    finish_mode = FAIL_BEFORE;
    assert_int_equal(ar_run_fail(NULL, f->run, "boom"), AR_EIO);
    ar_record *rec = NULL;
    assert_int_equal(ar_run_fail(&rec, f->run, "boom"), AR_OK);
    assert_int_equal(rec->status, AR_FAILED);
    assert_string_equal(rec->error, "boom");
    ar_record_free(rec);
}

/* The run's intents as "key:status" words, in order. */
static void expect_intents(ar_store *store, const char *id, const char *want)
{
    ar_intent_list *list = NULL;
    assert_int_equal(ar_store_intents(&list, store, id), AR_OK);
    char got[256] = "";
    for (size_t i = 0; i < list->n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s:%s", i ? " " : "", list->items[i].key,
                 ar_intent_status_name(list->items[i].status));
    ar_intent_list_free(list);
    assert_string_equal(got, want);
}

static void test_an_intent_retried_after_an_unknown_outcome_is_recorded_once(void **state)
{
    fixture *f = *state;
    int64_t seq = 0;
    step_mode = CUT_AFTER;
    assert_int_equal(ar_run_intend(&seq, f->run, "k", "t", "1", AR_NUL_TERMINATED), AR_EIO);
    assert_int_equal(ar_run_intend(&seq, f->run, "k", "t", "1", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(seq, 1);
    /* the key is known: not intended twice, settled once */
    assert_int_equal(ar_run_intend(NULL, f->run, "k", "t", "1", AR_NUL_TERMINATED), AR_ESTATE);
    step_mode = CUT_AFTER;
    assert_int_equal(ar_run_settle(&seq, f->run, "k", "2", AR_NUL_TERMINATED, 0), AR_EIO);
    assert_int_equal(ar_run_settle(&seq, f->run, "k", "2", AR_NUL_TERMINATED, 0), AR_OK);
    assert_int_equal(seq, 2);
    assert_int_equal(ar_run_settle(NULL, f->run, "k", "2", AR_NUL_TERMINATED, 0), AR_ESTATE);
    assert_int_equal(ar_run_iterations(f->run), 2);
    assert_int_equal(test_stored_steps(f->store), 2);
    expect_intents(f->store, ar_run_id(f->run), "k:settled");
}

static void test_a_write_after_an_unknown_intent_or_outcome_knows_it(void **state)
{
    fixture *f = *state;
    step_mode = CUT_AFTER;
    assert_int_equal(ar_run_intend(NULL, f->run, "a", "t", NULL, 0), AR_EIO);
    /* another intent follows it, and the first key is taken */
    assert_int_equal(ar_run_intend(NULL, f->run, "b", "t", NULL, 0), AR_OK);
    assert_int_equal(ar_run_intend(NULL, f->run, "a", "t", "\"other args\"", AR_NUL_TERMINATED), AR_ESTATE);
    assert_int_equal(ar_run_settle(NULL, f->run, "a", "1", AR_NUL_TERMINATED, 0), AR_OK);
    step_mode = CUT_AFTER;
    assert_int_equal(ar_run_settle(NULL, f->run, "b", "1", AR_NUL_TERMINATED, 0), AR_EIO);
    /* a different outcome after it: the one written stands */
    assert_int_equal(ar_run_settle(NULL, f->run, "b", "2", AR_NUL_TERMINATED, 1), AR_ESTATE);
    assert_non_null(strstr(ar_run_errmsg(f->run), "already settled"));
    /* a plain step after an unknown intent knows it too */
    step_mode = CUT_AFTER;
    assert_int_equal(ar_run_intend(NULL, f->run, "c", "t", NULL, 0), AR_EIO);
    assert_int_equal(record(f->run, "\"x\"", 1, NULL), AR_OK);
    assert_int_equal(ar_run_intend(NULL, f->run, "c", "t", NULL, 0), AR_ESTATE);
    assert_int_equal(ar_run_iterations(f->run), 6);
    assert_int_equal(test_stored_steps(f->store), 6);
    expect_intents(f->store, ar_run_id(f->run), "a:settled b:settled c:pending");
}

static void test_an_intent_that_failed_unwritten_is_written_by_the_retry(void **state)
{
    fixture *f = *state;
    int64_t seq = 0;
    step_mode = FAIL_BEFORE;
    assert_int_equal(ar_run_intend(&seq, f->run, "k", "t", NULL, 0), AR_EIO);
    assert_int_equal(ar_run_settle(NULL, f->run, "k", NULL, 0, 0), AR_ESTATE);
    assert_int_equal(ar_run_intend(&seq, f->run, "k", "t", NULL, 0), AR_OK);
    assert_int_equal(seq, 1);
    step_mode = FAIL_BEFORE;
    assert_int_equal(ar_run_settle(&seq, f->run, "k", NULL, 0, 0), AR_EIO);
    assert_int_equal(ar_run_settle(&seq, f->run, "k", NULL, 0, 0), AR_OK);
    assert_int_equal(seq, 2);
    expect_intents(f->store, ar_run_id(f->run), "k:settled");
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
static const struct CMUnitTest tests[] = {
    T(test_a_step_retried_after_an_unknown_outcome_is_recorded_once),
    T(test_a_different_step_after_an_unknown_outcome_follows_the_one_written),
    T(test_a_step_that_failed_unwritten_is_written_by_the_retry),
    T(test_a_checkpoint_after_an_unknown_step_follows_the_step_written),
    T(test_an_outcome_that_cannot_be_learnt_yet_fails_the_next_write_and_changes_nothing),
    T(test_a_finish_retried_after_an_unknown_outcome_succeeds),
    T(test_a_different_finish_after_an_unknown_outcome_is_refused_naming_the_first),
    T(test_a_finish_that_failed_unwritten_is_made_by_the_retry),
    T(test_an_intent_retried_after_an_unknown_outcome_is_recorded_once),
    T(test_a_write_after_an_unknown_intent_or_outcome_knows_it),
    T(test_an_intent_that_failed_unwritten_is_written_by_the_retry),
};

TEST_GROUP(unsure_group, "unsure", tests);
