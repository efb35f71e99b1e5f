/* test_opts.c -- versioned option structs: the _init functions match the
 * _INIT macros, and an unknown version is refused by every function. */
#include "suite.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentrun.h"

static void test_each_init_function_fills_what_its_macro_does(void **state)
{
    (void)state;
    ar_open_opts o, om = AR_OPEN_OPTS_INIT;
    memset(&o, 0x5a, sizeof o);
    assert_int_equal(ar_open_opts_init(&o, AR_OPEN_OPTS_VERSION), AR_OK);
    assert_int_equal(o.version, om.version);
    assert_int_equal(o.durability, om.durability);
    assert_int_equal(o.busy_timeout_ms, om.busy_timeout_ms);
    assert_int_equal(o.readonly, om.readonly);
    assert_ptr_equal(o.allocator, om.allocator);

    ar_run_spec s, sm = AR_RUN_SPEC_INIT;
    memset(&s, 0x5a, sizeof s);
    assert_int_equal(ar_run_spec_init(&s, AR_RUN_SPEC_VERSION), AR_OK);
    assert_int_equal(s.version, sm.version);
    assert_null(s.agent); assert_null(s.goal); assert_null(s.user);
    assert_null(s.edition); assert_null(s.parent); assert_null(s.metadata);
    assert_memory_equal(&s.budget, &sm.budget, sizeof s.budget);

    ar_run_query q, qm = AR_RUN_QUERY_INIT;
    memset(&q, 0x5a, sizeof q);
    assert_int_equal(ar_run_query_init(&q, AR_RUN_QUERY_VERSION), AR_OK);
    assert_int_equal(q.version, qm.version);
    assert_null(q.agent); assert_null(q.user); assert_null(q.edition); assert_null(q.parent);
    assert_null(q.status);
    assert_int_equal(q.n_status, 0);
    assert_true(q.since == qm.since && q.until == qm.until && q.limit == qm.limit);
    assert_null(q.after); assert_null(q.before);
    assert_int_equal(q.order, qm.order);

    ar_event_query e, em = AR_EVENT_QUERY_INIT;
    memset(&e, 0x5a, sizeof e);
    assert_int_equal(ar_event_query_init(&e, AR_EVENT_QUERY_VERSION), AR_OK);
    assert_int_equal(e.version, em.version);
    assert_null(e.agent);
    assert_true(e.session == em.session && e.since == em.since && e.until == em.until && e.limit == em.limit);
    assert_null(e.types);
    assert_int_equal(e.n_types, 0);
    assert_null(e.after); assert_null(e.before);
    assert_int_equal(e.order, em.order);

    ar_retention r, rm = AR_RETENTION_INIT;
    memset(&r, 0x5a, sizeof r);
    assert_int_equal(ar_retention_init(&r, AR_RETENTION_VERSION), AR_OK);
    assert_int_equal(r.version, rm.version);
    assert_true(r.older_than == rm.older_than && r.keep_last == rm.keep_last);
    assert_null(r.status);
    assert_int_equal(r.n_status, 0);
    assert_null(r.rule); assert_null(r.rule_ud);
    assert_int_equal(r.dry_run, 0);
    assert_int_equal(r.vacuum, 0);

    ar_event_retention v, vm = AR_EVENT_RETENTION_INIT;
    memset(&v, 0x5a, sizeof v);
    assert_int_equal(ar_event_retention_init(&v, AR_EVENT_RETENTION_VERSION), AR_OK);
    assert_int_equal(v.version, vm.version);
    assert_true(v.older_than == vm.older_than && v.keep_last == vm.keep_last);
}

static void test_init_functions_refuse_null_and_an_unknown_version_touching_nothing(void **state)
{
    (void)state;
    unsigned int bad[] = { 0, 3, 1000 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ar_open_opts o; memset(&o, 0x5a, sizeof o);
        ar_run_spec s; memset(&s, 0x5a, sizeof s);
        ar_run_query q; memset(&q, 0x5a, sizeof q);
        ar_event_query e; memset(&e, 0x5a, sizeof e);
        ar_retention r; memset(&r, 0x5a, sizeof r);
        ar_event_retention v; memset(&v, 0x5a, sizeof v);
        unsigned char same[sizeof s];
        memset(same, 0x5a, sizeof same);
        assert_int_equal(ar_open_opts_init(&o, bad[i]), AR_EMISUSE);
        assert_int_equal(ar_run_spec_init(&s, bad[i]), AR_EMISUSE);
        assert_int_equal(ar_run_query_init(&q, bad[i]), AR_EMISUSE);
        assert_int_equal(ar_event_query_init(&e, bad[i]), AR_EMISUSE);
        assert_int_equal(ar_retention_init(&r, bad[i]), AR_EMISUSE);
        assert_int_equal(ar_event_retention_init(&v, bad[i]), AR_EMISUSE);
        assert_memory_equal(&s, same, sizeof s);
        assert_memory_equal(&v, same, sizeof v);
    }
    assert_int_equal(ar_open_opts_init(NULL, AR_OPEN_OPTS_VERSION), AR_EMISUSE);
    assert_int_equal(ar_run_spec_init(NULL, AR_RUN_SPEC_VERSION), AR_EMISUSE);
    assert_int_equal(ar_run_query_init(NULL, AR_RUN_QUERY_VERSION), AR_EMISUSE);
    assert_int_equal(ar_event_query_init(NULL, AR_EVENT_QUERY_VERSION), AR_EMISUSE);
    assert_int_equal(ar_retention_init(NULL, AR_RETENTION_VERSION), AR_EMISUSE);
    assert_int_equal(ar_event_retention_init(NULL, AR_EVENT_RETENTION_VERSION), AR_EMISUSE);
}

/* The refusal: AR_EMISUSE whose message names the struct and its version. */
static void assert_refused(int rc, const char *msg, const char *type, unsigned int version)
{
    char want[96];
    snprintf(want, sizeof want, "%s version %u is not one this library knows", type, version);
    assert_int_equal(rc, AR_EMISUSE);
    if (!strstr(msg, want)) {
        print_error("message \"%s\" lacks \"%s\"\n", msg, want);
        fail();
    }
}

static void test_ar_store_open_refuses_options_of_an_unknown_version(void **state)
{
    (void)state;
    unsigned int bad[] = { 0, 3 };
    for (size_t i = 0; i < 2; i++) {
        ar_open_opts o = AR_OPEN_OPTS_INIT;
        o.version = bad[i];
        ar_store *store = NULL;
        int rc = ar_store_open(&store, ":memory:", &o);
        assert_non_null(store);
        assert_refused(rc, ar_store_errmsg(store), "ar_open_opts", bad[i]);
        ar_store_close(store);
    }
}

/* ar_open_opts version 1 ended before `schema`: a program built then has
 * only that much room. Its struct is filled and read only that far (on the
 * heap, exactly that size, so that ASan sees any byte past it). */
static void test_open_options_of_version_1_are_accepted_and_read_only_to_their_end(void **state)
{
    (void)state;
    size_t v1 = offsetof(ar_open_opts, schema);
    unsigned char *room = malloc(v1 + 8);
    assert_non_null(room);
    memset(room, 0x5a, v1 + 8);
    assert_int_equal(ar_open_opts_init((ar_open_opts *)room, 1), AR_OK);
    for (size_t i = v1; i < v1 + 8; i++)
        assert_int_equal(room[i], 0x5a);
    ar_open_opts *o = malloc(v1);
    assert_non_null(o);
    assert_int_equal(ar_open_opts_init(o, 1), AR_OK);
    ar_open_opts seen = AR_OPEN_OPTS_INIT;
    memcpy(&seen, o, v1);
    assert_int_equal(seen.version, 1);
    assert_int_equal(seen.busy_timeout_ms, 5000);
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, ":memory:", o), AR_OK);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_string_equal(info.backend, "sqlite");
    ar_store_close(store);
    free(o);
    free(room);
}

/* Every function taking a versioned struct refuses an unknown version and
 * changes nothing: no run begun, nothing deleted. */
static void test_functions_taking_options_refuse_an_unknown_version_and_change_nothing(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "g";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    assert_int_equal(ar_run_complete(NULL, run, "1", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(run);
    ar_event ev = AR_EVENT_INIT;
    ev.agent = "a";
    ev.type = "t";
    assert_int_equal(ar_event_append(NULL, store, &ev), AR_OK);

    const unsigned int v = 7;
    spec.version = v;
    run = NULL;
    assert_refused(ar_run_begin(&run, store, &spec), ar_store_errmsg(store), "ar_run_spec", v);
    assert_null(run);

    ar_run_query q = AR_RUN_QUERY_INIT;
    q.version = v;
    ar_record **recs = NULL;
    size_t n = 0;
    int64_t count = -1;
    ar_stats stats;
    assert_refused(ar_runs_list(&recs, &n, NULL, store, &q), ar_store_errmsg(store), "ar_run_query", v);
    assert_null(recs);
    assert_refused(ar_runs_count(&count, store, &q), ar_store_errmsg(store), "ar_run_query", v);
    assert_refused(ar_runs_stats(&stats, store, &q), ar_store_errmsg(store), "ar_run_query", v);

    ar_event_query eq = AR_EVENT_QUERY_INIT;
    eq.version = v;
    eq.agent = "a";
    ar_event_list *events = NULL;
    assert_refused(ar_events_list(&events, NULL, store, &eq), ar_store_errmsg(store), "ar_event_query", v);
    assert_null(events);
    assert_refused(ar_events_count(&count, store, &eq), ar_store_errmsg(store), "ar_event_query", v);

    ar_event_retention er = AR_EVENT_RETENTION_INIT;
    er.version = v;
    er.keep_last = 0;
    assert_refused(ar_events_retain(&count, store, &er), ar_store_errmsg(store), "ar_event_retention", v);

    ar_retention rr = AR_RETENTION_INIT;
    rr.version = v;
    rr.keep_last = 0;
    ar_retention_report report;
    assert_refused(ar_store_retain(&report, store, &rr), ar_store_errmsg(store), "ar_retention", v);

    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.runs, 1);
    assert_int_equal(info.events, 1);
    ar_store_close(store);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_each_init_function_fills_what_its_macro_does),
    cmocka_unit_test(test_init_functions_refuse_null_and_an_unknown_version_touching_nothing),
    cmocka_unit_test(test_ar_store_open_refuses_options_of_an_unknown_version),
    cmocka_unit_test(test_open_options_of_version_1_are_accepted_and_read_only_to_their_end),
    cmocka_unit_test(test_functions_taking_options_refuse_an_unknown_version_and_change_nothing),
};

TEST_GROUP(opts_group, "opts", tests);
