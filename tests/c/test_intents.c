/* test_intents.c -- tool calls that must not run twice: ar_run_intend, ar_run_settle, ar_store_intents. */
#include "suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentrun.h"

static int64_t intend(ar_run *run, const char *key, const char *name, const char *args)
{
    int64_t seq = 0;
    int rc = ar_run_intend(&seq, run, key, name, args, AR_NUL_TERMINATED);
    if (rc != AR_OK)
        fail_msg("intend %s: %s: %s", key, ar_code_name(rc), ar_run_errmsg(run));
    return seq;
}

static int64_t settle(ar_run *run, const char *key, const char *result, int failed)
{
    int64_t seq = 0;
    int rc = ar_run_settle(&seq, run, key, result, AR_NUL_TERMINATED, failed);
    if (rc != AR_OK)
        fail_msg("settle %s: %s: %s", key, ar_code_name(rc), ar_run_errmsg(run));
    return seq;
}

static ar_intent_list *intents(ar_store *store, const char *id)
{
    ar_intent_list *list = NULL;
    int rc = ar_store_intents(&list, store, id);
    if (rc != AR_OK)
        fail_msg("intents: %s: %s", ar_code_name(rc), ar_store_errmsg(store));
    return list;
}

static void expect_intent(const ar_intent *x, const char *key, const char *name, const char *args,
                          ar_intent_status status, const char *result, int64_t intent_seq, int64_t result_seq)
{
    assert_string_equal(x->key, key);
    assert_string_equal(x->name, name);
    assert_string_equal(x->args, args);
    assert_int_equal(x->status, status);
    if (result)
        assert_string_equal(x->result, result);
    else
        assert_null(x->result);
    assert_int_equal(x->intent_seq, intent_seq);
    assert_int_equal(x->result_seq, result_seq);
}

static void test_intend_and_settle_record_linked_steps(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = test_begin(store, "a");
    assert_int_equal(intend(run, "refund-1", "refund", "{\"amount\":5}"), 1);
    assert_int_equal(settle(run, "refund-1", "{\"ok\":true}", 0), 2);
    assert_int_equal(intend(run, "q\"\n", "search", NULL), 3);
    assert_int_equal(settle(run, "q\"\n", "\"no route\"", 1), 4);
    assert_int_equal(ar_run_iterations(run), 4);
    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->n_steps, 4);
    assert_string_equal(rec->steps[0].kind, "intent");
    assert_string_equal(rec->steps[0].name, "refund");
    assert_string_equal(rec->steps[0].content, "{\"key\":\"refund-1\",\"args\":{\"amount\":5}}");
    assert_string_equal(rec->steps[1].kind, "tool");
    assert_string_equal(rec->steps[1].name, "refund");
    assert_string_equal(rec->steps[1].content, "{\"intent\":1,\"key\":\"refund-1\",\"result\":{\"ok\":true}}");
    assert_string_equal(rec->steps[2].content, "{\"key\":\"q\\\"\\n\",\"args\":null}");
    assert_string_equal(rec->steps[3].content, "{\"intent\":3,\"key\":\"q\\\"\\n\",\"result\":\"no route\",\"failed\":true}");
    ar_record_free(rec);
    ar_intent_list *list = intents(store, ar_run_id(run));
    assert_int_equal(list->n, 2);
    expect_intent(&list->items[0], "refund-1", "refund", "{\"amount\":5}", AR_INTENT_SETTLED, "{\"ok\":true}", 1, 2);
    expect_intent(&list->items[1], "q\"\n", "search", "null", AR_INTENT_FAILED, "\"no route\"", 3, 4);
    ar_intent_list_free(list);
    assert_string_equal(ar_intent_status_name(AR_INTENT_PENDING), "pending");
    assert_string_equal(ar_intent_status_name(AR_INTENT_SETTLED), "settled");
    assert_string_equal(ar_intent_status_name(AR_INTENT_FAILED), "failed");
    assert_null(ar_intent_status_name((ar_intent_status)7));
    ar_run_close(run);
    ar_store_close(store);
}

static void test_a_reused_key_and_a_bad_settle_are_estate_and_store_nothing(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = test_begin(store, "a");
    int64_t seq = 9;
    assert_int_equal(ar_run_settle(&seq, run, "k", "1", AR_NUL_TERMINATED, 0), AR_ESTATE);
    assert_int_equal(seq, 0);
    assert_non_null(strstr(ar_run_errmsg(run), "never intended"));
    intend(run, "k", "t", "1");
    assert_int_equal(ar_run_intend(&seq, run, "k", "t", "1", AR_NUL_TERMINATED), AR_ESTATE);
    assert_non_null(strstr(ar_run_errmsg(run), "already used"));
    assert_int_equal(ar_run_intend(NULL, run, "k", "other", NULL, 0), AR_ESTATE);
    settle(run, "k", "2", 0);
    assert_int_equal(ar_run_settle(NULL, run, "k", "3", AR_NUL_TERMINATED, 0), AR_ESTATE);
    assert_non_null(strstr(ar_run_errmsg(run), "already settled"));
    assert_int_equal(ar_run_settle(NULL, run, "k", "3", AR_NUL_TERMINATED, 1), AR_ESTATE);
    assert_int_equal(ar_run_intend(NULL, run, "k", "t", "1", AR_NUL_TERMINATED), AR_ESTATE);
    assert_int_equal(ar_run_iterations(run), 2);
    assert_int_equal(test_stored_steps(store), 2);
    /* the run goes on */
    assert_int_equal(intend(run, "k2", "t", "1"), 3);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_bad_arguments_are_emisuse_and_bad_json_ejson_and_store_nothing(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = test_begin(store, "a");
    int64_t seq = 5;
    assert_int_equal(ar_run_intend(&seq, NULL, "k", "t", NULL, 0), AR_EMISUSE);
    assert_int_equal(seq, 0);
    assert_int_equal(ar_run_settle(&seq, NULL, "k", NULL, 0, 0), AR_EMISUSE);
    assert_int_equal(ar_run_intend(NULL, run, NULL, "t", NULL, 0), AR_EMISUSE);
    assert_int_equal(ar_run_intend(NULL, run, "", "t", NULL, 0), AR_EMISUSE);
    assert_int_equal(ar_run_intend(NULL, run, "k", NULL, NULL, 0), AR_EMISUSE);
    assert_int_equal(ar_run_intend(NULL, run, "k", "", NULL, 0), AR_EMISUSE);
    assert_int_equal(ar_run_intend(NULL, run, "\xff", "t", NULL, 0), AR_EMISUSE);
    assert_int_equal(ar_run_intend(NULL, run, "k", "t", "{", AR_NUL_TERMINATED), AR_EJSON);
    assert_int_equal(ar_run_intend(NULL, run, "k", "t", "NaN", AR_NUL_TERMINATED), AR_EJSON);
    assert_int_equal(ar_run_intend(NULL, run, "k", "t", "1e999", AR_NUL_TERMINATED), AR_EJSON);
    assert_int_equal(ar_run_intend(NULL, run, "k", "t", "\"\xff\"", AR_NUL_TERMINATED), AR_EJSON);
    assert_int_equal(ar_run_intend(NULL, run, "k", "t", "9007199254740993", AR_NUL_TERMINATED), AR_EJSON);
    /* a length shorter than the text: "[1" is not JSON */
    assert_int_equal(ar_run_intend(NULL, run, "k", "t", "[1]", 2), AR_EJSON);
    assert_int_equal(test_stored_steps(store), 0);
    /* refused calls took no key */
    intend(run, "k", "t", "[1]");
    assert_int_equal(ar_run_settle(NULL, run, NULL, "1", AR_NUL_TERMINATED, 0), AR_EMISUSE);
    assert_int_equal(ar_run_settle(NULL, run, "", "1", AR_NUL_TERMINATED, 0), AR_EMISUSE);
    assert_int_equal(ar_run_settle(NULL, run, "k", "[1,]", AR_NUL_TERMINATED, 0), AR_EJSON);
    assert_int_equal(ar_run_settle(NULL, run, "k", "Infinity", AR_NUL_TERMINATED, 1), AR_EJSON);
    assert_int_equal(test_stored_steps(store), 1);
    ar_intent_list *list = intents(store, ar_run_id(run));
    assert_int_equal(list->n, 1);
    expect_intent(&list->items[0], "k", "t", "[1]", AR_INTENT_PENDING, NULL, 1, 0);
    ar_intent_list_free(list);
    settle(run, "k", "[1]", 0);
    ar_run_close(run);

    ar_intent_list *none = (ar_intent_list *)1;
    assert_int_equal(ar_store_intents(&none, store, "01ARZ3NDEKTSV4RRFFQ69G5FAV"), AR_ENOTFOUND);
    assert_null(none);
    assert_int_equal(ar_store_intents(&none, store, "nope"), AR_ENOTFOUND);
    assert_int_equal(ar_store_intents(&none, store, NULL), AR_EMISUSE);
    assert_int_equal(ar_store_intents(NULL, store, "nope"), AR_EMISUSE);
    assert_int_equal(ar_store_intents(&none, NULL, "nope"), AR_EMISUSE);
    ar_intent_list_free(NULL);
    ar_store_close(store);
}

static void test_finished_runs_take_no_intent_or_settle(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = test_begin(store, "a");
    intend(run, "k", "t", NULL);
    assert_int_equal(ar_run_complete(NULL, run, NULL, 0), AR_OK);
    assert_int_equal(ar_run_intend(NULL, run, "k2", "t", NULL, 0), AR_ESTATE);
    assert_int_equal(ar_run_settle(NULL, run, "k", NULL, 0, 0), AR_ESTATE);
    ar_run_close(run);
    ar_store_close(store);
}

/* Opens the store of `base` again, recovers its running runs (as after a
 * crash) and resumes run `id` there. */
static ar_run *resume_elsewhere(ar_store **out, const ar_open_opts *base, const char *loc, const char *id)
{
    ar_open_opts o = AR_OPEN_OPTS_INIT;
    test_same_store(&o, base);
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, loc, &o), AR_OK);
    assert_int_equal(ar_store_recover(NULL, store, 0), AR_OK);
    ar_run *run = NULL;
    int rc = ar_run_resume(&run, store, id, NULL);
    if (rc != AR_OK)
        fail_msg("resume: %s: %s", ar_code_name(rc), ar_store_errmsg(store));
    *out = store;
    return run;
}

static void test_a_resumed_handle_knows_the_runs_keys_and_settles_one_left_pending(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    char *loc = test_location(&opts);
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, loc, &opts), AR_OK);
    ar_run *run = test_begin(store, "a");
    char id[64];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    intend(run, "done", "t", "1");
    settle(run, "done", "\"first\"", 0);
    intend(run, "cut", "t", "2");
    /* the process "dies": its store goes, the run is left interrupted */
    ar_store_close(store);
    ar_run_close(run);

    ar_store *s2 = NULL;
    ar_run *r2 = resume_elsewhere(&s2, &opts, loc, id);
    assert_int_equal(ar_run_intend(NULL, r2, "done", "t", NULL, 0), AR_ESTATE);
    assert_int_equal(ar_run_intend(NULL, r2, "cut", "t", NULL, 0), AR_ESTATE);
    assert_int_equal(ar_run_settle(NULL, r2, "done", NULL, 0, 0), AR_ESTATE);
    assert_int_equal(ar_run_settle(NULL, r2, "never", NULL, 0, 0), AR_ESTATE);
    assert_int_equal(settle(r2, "cut", "\"asked\"", 0), 4);
    assert_int_equal(ar_run_settle(NULL, r2, "cut", NULL, 0, 0), AR_ESTATE);
    /* many keys: each intend and settle is a lookup, the run's keys read once */
    char key[32];
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "k%d", i);
        intend(r2, key, "t", NULL);
        if (i % 2)
            settle(r2, key, NULL, 0);
    }
    assert_int_equal(ar_run_intend(NULL, r2, "k150", "t", NULL, 0), AR_ESTATE);
    ar_intent_list *list = intents(s2, id);
    assert_int_equal(list->n, 302);
    expect_intent(&list->items[1], "cut", "t", "2", AR_INTENT_SETTLED, "\"asked\"", 3, 4);
    assert_int_equal(list->items[2].status, AR_INTENT_PENDING);
    assert_int_equal(list->items[3].status, AR_INTENT_SETTLED);
    ar_intent_list_free(list);
    ar_run_close(r2);
    ar_store_close(s2);
    free(loc);
}

static void test_a_handle_whose_run_was_resumed_elsewhere_cannot_intend_or_settle(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    char *loc = test_location(&opts);
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, loc, &opts), AR_OK);
    ar_run *run = test_begin(store, "a");
    intend(run, "k", "t", NULL);
    ar_store *s2 = NULL;
    ar_run *r2 = resume_elsewhere(&s2, &opts, loc, ar_run_id(run));
    assert_int_equal(ar_run_intend(NULL, run, "k2", "t", NULL, 0), AR_ESTATE);
    assert_int_equal(ar_run_settle(NULL, run, "k", "\"old\"", AR_NUL_TERMINATED, 0), AR_ESTATE);
    assert_int_equal(test_stored_steps(s2), 1);
    assert_int_equal(settle(r2, "k", "\"new\"", 0), 2);
    assert_int_equal(ar_run_settle(NULL, run, "k", "\"old\"", AR_NUL_TERMINATED, 0), AR_ESTATE);
    assert_int_equal(ar_run_intend(NULL, run, "k3", "t", NULL, 0), AR_ESTATE);
    ar_intent_list *list = intents(s2, ar_run_id(r2));
    assert_int_equal(list->n, 1);
    expect_intent(&list->items[0], "k", "t", "null", AR_INTENT_SETTLED, "\"new\"", 1, 2);
    ar_intent_list_free(list);
    assert_int_equal(test_stored_steps(s2), 2);
    ar_run_close(r2);
    ar_run_close(run);
    ar_store_close(s2);
    ar_store_close(store);
    free(loc);
}

static void test_intents_survive_a_copy_of_the_run_by_store_write(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = test_begin(store, "a");
    intend(run, "a", "t", "{\"x\":1}");
    settle(run, "a", "\"ok\"", 0);
    intend(run, "b", "t", NULL);
    assert_int_equal(ar_run_fail(NULL, run, "cut"), AR_OK);
    ar_record *rec = test_get(store, ar_run_id(run), 1);
    ar_store *other = test_store_new();
    char *id = NULL;
    assert_int_equal(ar_store_write(&id, other, rec), AR_OK);
    ar_intent_list *a = intents(store, ar_run_id(run)), *b = intents(other, id);
    assert_int_equal(a->n, 2);
    assert_int_equal(b->n, 2);
    for (size_t i = 0; i < 2; i++)
        expect_intent(&b->items[i], a->items[i].key, a->items[i].name, a->items[i].args, a->items[i].status,
                      a->items[i].result, a->items[i].intent_seq, a->items[i].result_seq);
    ar_intent_list_free(a);
    ar_intent_list_free(b);
    ar_free(id);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(other);
    ar_store_close(store);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_intend_and_settle_record_linked_steps),
    cmocka_unit_test(test_a_reused_key_and_a_bad_settle_are_estate_and_store_nothing),
    cmocka_unit_test(test_bad_arguments_are_emisuse_and_bad_json_ejson_and_store_nothing),
    cmocka_unit_test(test_finished_runs_take_no_intent_or_settle),
    cmocka_unit_test(test_a_resumed_handle_knows_the_runs_keys_and_settles_one_left_pending),
    cmocka_unit_test(test_a_handle_whose_run_was_resumed_elsewhere_cannot_intend_or_settle),
    cmocka_unit_test(test_intents_survive_a_copy_of_the_run_by_store_write),
};

TEST_GROUP(intents_group, "intents", tests);
