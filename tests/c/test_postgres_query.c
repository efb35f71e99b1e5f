/* test_postgres_query.c -- the PostgreSQL backend's listings, statistics,
 * events and retention, and its order while writers commit out of key
 * order: a reader paging never skips nor repeats a row. Talks to the backend
 * through its table of functions; needs a server (AGENTRUN_TEST_PG). */
#include "suite.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "internal.h"

static const ar_backend *const be = &ar_postgres_backend;

/* Each test works in a schema of its own, dropped when it ends. */
typedef struct fixture {
    char schema[64];
    PGconn *probe;      /* the test's own view of the server: lock waits, dropping the schema */
} fixture;

static int setup(void **state)
{
    static int counter;
    if (!test_pg_url()) {
        static int told;
        if (!told++)
            print_message("AGENTRUN_TEST_PG is not set: the PostgreSQL backend tests are skipped\n");
        *state = NULL;
        return 0;
    }
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->schema, sizeof f->schema, "ar_query_%ld_%d", (long)getpid(), ++counter);
    f->probe = PQconnectdb(test_pg_url());
    if (PQstatus(f->probe) != CONNECTION_OK) {
        print_error("connecting to AGENTRUN_TEST_PG: %s", PQerrorMessage(f->probe));
        PQfinish(f->probe);
        free(f);
        return -1;
    }
    /* dropping a schema lists what went with it as NOTICEs */
    PQclear(PQexec(f->probe, "SET client_min_messages = warning"));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f)
        return 0;
    char sql[128];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS \"%s\" CASCADE", f->schema);
    PGresult *res = PQexec(f->probe, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        print_error("dropping %s: %s", f->schema, PQerrorMessage(f->probe));
    PQclear(res);
    PQfinish(f->probe);
    free(f);
    return ok ? 0 : -1;
}

/* The fixture, or a skipped test when there is no server. */
static fixture *need_server(void **state)
{
    if (!*state)
        skip();
    return *state;
}

static ar_db *db_open(const fixture *f)
{
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.schema = f->schema;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_db *db = NULL;
    ar_err err = { 0, "" };
    int rc = be->open(&db, test_pg_url(), &opts, &ar_default_allocator, &err);
    if (rc != AR_OK) {
        print_error("open: %s: %s\n", ar_code_name(rc), err.msg);
        be->close(db);
        fail();
    }
    return db;
}

#define CHECK(call) do { \
        ar_err err_ = { 0, "" }; \
        int rc_ = (call); \
        if (rc_ != AR_OK) { \
            print_error("%s: %s: %s\n", #call, ar_code_name(rc_), err_.msg); \
            fail(); \
        } \
    } while (0)
#define ERR (&err_)

/* The key of the k-th run of millisecond ms. */
static int64_t key_of(int64_t ms, int k)
{
    return ms << 16 | k;
}

/* A run row: finished (written whole, keeping its key) unless `status` is running. */
static ar_db_run run_row(int64_t n, char id[32], const char *agent, const char *user, ar_status status,
                         int64_t latency)
{
    snprintf(id, 32, "R%025" PRId64, n);
    ar_db_run r;
    memset(&r, 0, sizeof r);
    r.n = n;
    r.id = id;
    r.agent = agent;
    r.goal = "g";
    r.user = user;
    r.budget = "{}";
    r.status = status;
    r.created_at = n >> 16;
    r.finished_at = status == AR_RUNNING ? AR_UNSET : r.created_at + latency;
    r.progress.updated_at = status == AR_RUNNING ? r.created_at : r.finished_at;
    r.progress.elapsed_ms = latency;
    r.written = status != AR_RUNNING;
    return r;
}

static void put_run(ar_db *db, int64_t n, const char *agent, const char *user, ar_status status, int64_t latency)
{
    char id[32];
    ar_db_run r = run_row(n, id, agent, user, status, latency);
    int64_t min_key = 0;
    CHECK(be->run_insert(db, &r, &min_key, ERR));
}

/* ---- collecting what a listing visits ------------------------------------ */

#define MAX_SEEN 4096
typedef struct seen {
    int64_t v[MAX_SEEN];
    size_t n;
} seen;

static int see_run(void *ud, const ar_db_run_row *row)
{
    seen *s = ud;
    assert_true(s->n < MAX_SEEN);
    s->v[s->n++] = row->n;
    return 0;
}

static int see_event(void *ud, const ar_db_event_row *row)
{
    seen *s = ud;
    assert_true(s->n < MAX_SEEN);
    s->v[s->n++] = row->id;
    return 0;
}

/* Every page of a run listing, limit rows each, following the key of the
 * last row seen; returns the keys visited in order. */
static void page_runs(ar_db *db, const ar_run_query *q, int ascending, int64_t limit, seen *out)
{
    int64_t key = 0;
    int have_key = 0;
    out->n = 0;
    for (;;) {
        size_t before = out->n;
        CHECK(be->runs_list(db, q, have_key ? &key : NULL, 0, ascending, limit, see_run, out, ERR));
        if (out->n == before)
            break;
        assert_true(out->n - before <= (size_t)limit);
        key = out->v[out->n - 1];
        have_key = 1;
    }
}

/* ---- listings ----------------------------------------------------------------- */

static const int64_t base_ms = 1700000000000;

/* 30 runs: agents a/b alternating, users u0..u2, statuses cycling, keys
 * three per millisecond; the expected listings are worked out from the same
 * rule. */
#define N_RUNS 30
static ar_status status_of(int i) { return (ar_status)(i % 5); }
static const char *agent_of(int i) { return i % 2 ? "b" : "a"; }
static int64_t run_key(int i) { return key_of(base_ms + i / 3, i % 3); }

static void put_runs(ar_db *db)
{
    static const char *const users[] = { "u0", "u1", "u2" };
    for (int i = 0; i < N_RUNS; i++)
        put_run(db, run_key(i), agent_of(i), users[i % 3], status_of(i), 10 + i);
}

/* The keys of the runs matching the filters used below, ascending. */
static size_t expected_runs(int64_t *out, const char *agent, int status_mask, int64_t since, int64_t until)
{
    size_t n = 0;
    for (int i = 0; i < N_RUNS; i++) {
        int64_t created = base_ms + i / 3;
        if (agent && strcmp(agent, agent_of(i)) != 0)
            continue;
        if (status_mask && !(status_mask & 1 << status_of(i)))
            continue;
        if ((since != AR_UNSET && created < since) || (until != AR_UNSET && created >= until))
            continue;
        out[n++] = run_key(i);
    }
    return n;
}

static void assert_keys(const seen *s, const int64_t *want, size_t n, int ascending)
{
    assert_int_equal(s->n, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(s->v[i], want[ascending ? i : n - 1 - i]);
}

static void test_runs_pages_in_both_orders_with_filters(void **state)
{
    fixture *f = need_server(state);
    ar_db *db = db_open(f);
    put_runs(db);
    int64_t want[N_RUNS];
    static seen got;
    ar_run_query q = AR_RUN_QUERY_INIT;
    for (int ascending = 0; ascending <= 1; ascending++) {
        for (int64_t limit = 1; limit <= 7; limit += 3) {
            q = (ar_run_query)AR_RUN_QUERY_INIT;
            page_runs(db, &q, ascending, limit, &got);
            assert_keys(&got, want, expected_runs(want, NULL, 0, AR_UNSET, AR_UNSET), ascending);

            ar_status two[] = { AR_COMPLETED, AR_FAILED, AR_COMPLETED };
            q.agent = "a";
            q.status = two;
            q.n_status = 3;
            page_runs(db, &q, ascending, limit, &got);
            assert_keys(&got, want, expected_runs(want, "a", 1 << AR_COMPLETED | 1 << AR_FAILED, AR_UNSET, AR_UNSET),
                        ascending);

            q = (ar_run_query)AR_RUN_QUERY_INIT;
            q.since = base_ms + 2;
            q.until = base_ms + 7;
            page_runs(db, &q, ascending, limit, &got);
            assert_keys(&got, want, expected_runs(want, NULL, 0, base_ms + 2, base_ms + 7), ascending);
        }
    }
    /* a user filter, counted and listed */
    q = (ar_run_query)AR_RUN_QUERY_INIT;
    q.user = "u1";
    int64_t count = -1;
    CHECK(be->runs_count(db, &q, &count, ERR));
    assert_int_equal(count, N_RUNS / 3);
    page_runs(db, &q, 1, 4, &got);
    assert_int_equal(got.n, N_RUNS / 3);
    for (size_t i = 0; i < got.n; i++)
        assert_int_equal(got.v[i], run_key(1 + 3 * (int)i));

    /* inclusive takes the key itself, in either order */
    q = (ar_run_query)AR_RUN_QUERY_INIT;
    int64_t key = run_key(10);
    got.n = 0;
    CHECK(be->runs_list(db, &q, &key, 1, 1, 2, see_run, &got, ERR));
    assert_int_equal(got.n, 2);
    assert_int_equal(got.v[0], run_key(10));
    assert_int_equal(got.v[1], run_key(11));
    got.n = 0;
    CHECK(be->runs_list(db, &q, &key, 1, 0, 2, see_run, &got, ERR));
    assert_int_equal(got.n, 2);
    assert_int_equal(got.v[0], run_key(10));
    assert_int_equal(got.v[1], run_key(9));
    got.n = 0;
    CHECK(be->runs_list(db, &q, &key, 0, 0, 2, see_run, &got, ERR));
    assert_int_equal(got.v[0], run_key(9));

    /* counts agree with the listings */
    ar_status running = AR_RUNNING;
    q.status = &running;
    q.n_status = 1;
    CHECK(be->runs_count(db, &q, &count, ERR));
    assert_int_equal(count, (int64_t)expected_runs(want, NULL, 1 << AR_RUNNING, AR_UNSET, AR_UNSET));
    be->close(db);
}

/* A visitor that stops the listing at the second row with its own code. */
static int stop_second(void *ud, const ar_db_run_row *row)
{
    seen *s = ud;
    s->v[s->n++] = row->n;
    return s->n == 2 ? 42 : 0;
}

static void test_runs_list_stops_when_the_visitor_says(void **state)
{
    fixture *f = need_server(state);
    ar_db *db = db_open(f);
    put_runs(db);
    ar_run_query q = AR_RUN_QUERY_INIT;
    seen got = { { 0 }, 0 };
    ar_err err = { 0, "" };
    assert_int_equal(be->runs_list(db, &q, NULL, 0, 1, 10, stop_second, &got, &err), 42);
    assert_int_equal(got.n, 2);
    be->close(db);
}

/* ---- statistics --------------------------------------------------------------- */

static void put_usage_run(ar_db *db, int64_t n, const char *agent, ar_status status, int64_t latency,
                          int64_t iterations, int64_t tokens, int64_t cost_nanos)
{
    char id[32];
    ar_db_run r = run_row(n, id, agent, NULL, status, latency);
    r.progress.iterations = iterations;
    r.progress.input_tokens = tokens;
    r.progress.output_tokens = tokens / 2;
    r.progress.cost_nanos = cost_nanos;
    int64_t min_key = 0;
    CHECK(be->run_insert(db, &r, &min_key, ERR));
}

static void test_runs_stats_are_exact_up_to_int64_and_saturate_past_it(void **state)
{
    fixture *f = need_server(state);
    ar_db *db = db_open(f);
    const int64_t half = INT64_C(1) << 62;
    /* "exact": sums land exactly on INT64_MAX */
    put_usage_run(db, key_of(base_ms, 0), "exact", AR_COMPLETED, 10, 3, half, half);
    put_usage_run(db, key_of(base_ms, 1), "exact", AR_FAILED, 21, 4, half - 1, half - 1);
    put_usage_run(db, key_of(base_ms, 2), "exact", AR_RUNNING, 0, 5, 0, 0);
    /* "over": sums one past it */
    put_usage_run(db, key_of(base_ms + 1, 0), "over", AR_COMPLETED, 7, 1, half, half);
    put_usage_run(db, key_of(base_ms + 1, 1), "over", AR_INTERRUPTED, 9, 1, half, half);

    ar_run_query q = AR_RUN_QUERY_INIT;
    ar_db_stats st;
    q.agent = "exact";
    CHECK(be->runs_stats(db, &q, &st, ERR));
    assert_int_equal(st.runs, 3);
    assert_int_equal(st.by_status[AR_RUNNING], 1);
    assert_int_equal(st.by_status[AR_COMPLETED], 1);
    assert_int_equal(st.by_status[AR_FAILED], 1);
    assert_int_equal(st.by_status[AR_BUDGET_EXHAUSTED], 0);
    assert_int_equal(st.iterations, 12);
    assert_int_equal(st.input_tokens, INT64_MAX);
    assert_int_equal(st.output_tokens, half / 2 + (half - 1) / 2);
    assert_int_equal(st.cost_nanos, INT64_MAX);
    assert_exact(st.cost_approx, 9223372036854775807.0);
    assert_exact(st.avg_latency_ms, 15.5);   /* the running run has no latency */

    q.agent = "over";
    CHECK(be->runs_stats(db, &q, &st, ERR));
    assert_int_equal(st.runs, 2);
    assert_int_equal(st.by_status[AR_INTERRUPTED], 1);
    assert_int_equal(st.input_tokens, INT64_MAX);
    assert_int_equal(st.cost_nanos, INT64_MAX);
    assert_exact(st.cost_approx, 9223372036854775808.0);
    assert_exact(st.avg_latency_ms, 8.0);

    /* no runs: zeroes, no latency */
    q.agent = "nobody";
    CHECK(be->runs_stats(db, &q, &st, ERR));
    assert_int_equal(st.runs, 0);
    assert_int_equal(st.cost_nanos, 0);
    assert_exact(st.cost_approx, 0.0);
    assert_exact(st.avg_latency_ms, 0.0);
    be->close(db);
}

/* ---- events ------------------------------------------------------------------- */

static int64_t put_event(ar_db *db, const char *agent, int64_t session, const char *type, const char *content,
                         size_t len, int64_t at)
{
    ar_event e = AR_EVENT_INIT;
    e.agent = agent;
    e.session = session;
    e.type = type;
    e.content = content;
    e.content_len = len;
    e.at = at;
    int64_t id = 0;
    CHECK(be->event_insert(db, &e, &id, ERR));
    return id;
}

/* Every page of an events listing (key: a position between ids). */
static void page_events(ar_db *db, const ar_event_query *q, int ascending, int64_t limit, seen *out)
{
    int64_t key = ascending ? 0 : INT64_MAX;
    out->n = 0;
    for (;;) {
        size_t before = out->n;
        CHECK(be->events_list(db, q, &key, ascending, limit, see_event, out, ERR));
        if (out->n == before)
            break;
        int64_t last = out->v[out->n - 1];
        key = ascending ? last : last - 1;
    }
}

/* Checks one event read back whole. */
typedef struct one_event {
    int64_t id;
    int found;
} one_event;

static int check_nul_event(void *ud, const ar_db_event_row *row)
{
    one_event *o = ud;
    if (row->id != o->id)
        return 0;
    o->found = 1;
    assert_int_equal(row->content.len, 5);
    assert_memory_equal(row->content.s, "a\0b\0c", 5);
    assert_int_equal(row->type.len, 3);
    assert_memory_equal(row->type.s, "nul", 3);
    assert_int_equal(row->session, 7);
    assert_int_equal(row->at, base_ms + 99);
    assert_null(row->run.s);
    assert_null(row->metadata.s);
    return 0;
}

typedef struct types_seen {
    char names[8][16];
    int64_t counts[8];
    int n;
} types_seen;

static int see_type(void *ud, ar_db_text type, int64_t count)
{
    types_seen *t = ud;
    assert_true(t->n < 8 && type.len < 16);
    memcpy(t->names[t->n], type.s, type.len);
    t->names[t->n][type.len] = '\0';
    t->counts[t->n++] = count;
    return 0;
}

static void test_events_pages_filters_and_summary(void **state)
{
    fixture *f = need_server(state);
    ar_db *db = db_open(f);
    /* types that an array literal must quote */
    static const char *const types[] = { "a\"b", "c\\d", "e,f", "B", "x y" };
    int64_t ids[40];
    for (int i = 0; i < 40; i++)
        ids[i] = put_event(db, i % 4 ? "ag" : "other", i % 3, types[i % 5], "hello", 5, base_ms + i);
    for (int i = 1; i < 40; i++)
        assert_true(ids[i] > ids[i - 1]);
    int64_t nul_id = put_event(db, "ag", 7, "nul", "a\0b\0c", 5, base_ms + 99);

    static seen got;
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "ag";
    for (int ascending = 0; ascending <= 1; ascending++) {
        for (int64_t limit = 1; limit <= 8; limit += 7) {
            page_events(db, &q, ascending, limit, &got);
            assert_int_equal(got.n, 31);
            for (size_t i = 1; i < got.n; i++)
                assert_true(ascending ? got.v[i] > got.v[i - 1] : got.v[i] < got.v[i - 1]);
        }
    }
    one_event o = { nul_id, 0 };
    CHECK(be->events_list(db, &q, NULL, 1, 100, check_nul_event, &o, ERR));
    assert_true(o.found);

    /* several types (one parameter), a session and a time window */
    const char *two[] = { "a\"b", "e,f" };
    q.types = two;
    q.n_types = 2;
    q.session = 0;
    q.since = base_ms + 5;
    q.until = base_ms + 35;
    page_events(db, &q, 1, 3, &got);
    size_t want = 0;
    for (int i = 0; i < 40; i++) {
        if (!(i % 4) || i % 3 != 0 || (i % 5 != 0 && i % 5 != 2) || i < 5 || i >= 35)
            continue;
        assert_true(want < got.n);
        assert_int_equal(got.v[want++], ids[i]);
    }
    assert_int_equal(got.n, want);
    int64_t count = -1;
    CHECK(be->events_count(db, &q, &count, ERR));
    assert_int_equal(count, (int64_t)want);
    const char *one[] = { "c\\d" };
    q = (ar_event_query)AR_EVENT_QUERY_INIT;
    q.agent = "ag";
    q.types = one;
    q.n_types = 1;
    CHECK(be->events_count(db, &q, &count, ERR));
    assert_int_equal(count, 6);

    /* the summary: totals, distinct sessions, first and last, types in byte order */
    int64_t total, sessions, first_at, last_at;
    types_seen ts;
    memset(&ts, 0, sizeof ts);
    CHECK(be->events_summary(db, "ag", &total, &sessions, &first_at, &last_at, see_type, &ts, ERR));
    assert_int_equal(total, 31);
    assert_int_equal(sessions, 4);
    assert_int_equal(first_at, base_ms + 1);
    assert_int_equal(last_at, base_ms + 99);
    static const char *const sorted[] = { "B", "a\"b", "c\\d", "e,f", "nul", "x y" };
    assert_int_equal(ts.n, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(ts.names[i], sorted[i]);
    assert_int_equal(ts.counts[4], 1);
    memset(&ts, 0, sizeof ts);
    CHECK(be->events_summary(db, "nobody", &total, &sessions, &first_at, &last_at, see_type, &ts, ERR));
    assert_int_equal(total, 0);
    assert_int_equal(sessions, 0);
    assert_int_equal(first_at, AR_UNSET);
    assert_int_equal(last_at, AR_UNSET);
    assert_int_equal(ts.n, 0);

    /* deleting one agent's events */
    CHECK(be->events_delete(db, "other", &count, ERR));
    assert_int_equal(count, 10);
    q = (ar_event_query)AR_EVENT_QUERY_INIT;
    q.agent = "other";
    CHECK(be->events_count(db, &q, &count, ERR));
    assert_int_equal(count, 0);
    be->close(db);
}

static void test_event_ids_are_never_reused(void **state)
{
    fixture *f = need_server(state);
    ar_db *db = db_open(f);
    put_event(db, "a", 0, "t", NULL, 0, base_ms);
    int64_t newest = put_event(db, "b", 0, "t", NULL, 0, base_ms);
    int64_t count;
    CHECK(be->events_delete(db, "b", &count, ERR));
    assert_int_equal(count, 1);
    /* a reader that saw `newest` pages on from it: the next event must come after */
    int64_t next = put_event(db, "b", 0, "t", NULL, 0, base_ms);
    assert_true(next > newest);
    be->close(db);
}

static void test_events_retention_by_age_and_count(void **state)
{
    fixture *f = need_server(state);
    ar_db *db = db_open(f);
    int64_t ids[12];
    /* agent a: times 0..5 with a tie at 4; agent b: times 0..5 */
    static const int at_a[] = { 0, 1, 2, 4, 4, 5 };
    for (int i = 0; i < 6; i++) {
        ids[i] = put_event(db, "a", 0, "t", NULL, 0, base_ms + at_a[i]);
        ids[6 + i] = put_event(db, "b", 0, "t", NULL, 0, base_ms + i);
    }
    int64_t out = -1;
    CHECK(be->txn_begin(db, ERR));
    CHECK(be->events_delete_before(db, base_ms + 1, &out, ERR));
    assert_int_equal(out, 2);
    CHECK(be->events_keep_last(db, 2, &out, ERR));
    assert_int_equal(out, 6);
    CHECK(be->txn_commit(db, ERR));
    /* the newest two by (at, id): a's two at time 4 lose to its 5 and the later of them */
    static seen got;
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    page_events(db, &q, 1, 10, &got);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.v[0], ids[4]);
    assert_int_equal(got.v[1], ids[5]);
    q.agent = "b";
    page_events(db, &q, 1, 10, &got);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.v[0], ids[10]);
    assert_int_equal(got.v[1], ids[11]);
    CHECK(be->txn_begin(db, ERR));
    CHECK(be->events_keep_last(db, 0, &out, ERR));
    assert_int_equal(out, 4);
    /* rolled back: nothing changes */
    be->txn_rollback(db);
    page_events(db, &q, 1, 10, &got);
    assert_int_equal(got.n, 2);
    be->close(db);
}

/* ---- retention -------------------------------------------------------------------- */

typedef struct scan {
    ar_db *db;
    int64_t n[64], rank[64], ended[64], iterations[64];
    char agent[64][4];
    size_t count;
    int read_during;        /* runs the visitor listed through the same db while the scan ran */
} scan;

static int see_retain(void *ud, const ar_db_retain_row *row)
{
    scan *s = ud;
    assert_true(s->count < 64);
    s->n[s->count] = row->n;
    s->rank[s->count] = row->rank;
    s->ended[s->count] = row->ended_at;
    s->iterations[s->count] = row->iterations;
    s->agent[s->count][0] = '\0';
    if (row->run) {
        assert_int_equal(row->run->n, row->n);
        assert_true(row->run->agent.len < 4);
        memcpy(s->agent[s->count], row->run->agent.s, row->run->agent.len);
        s->agent[s->count][row->run->agent.len] = '\0';
        /* a rule reads the store while the scan streams: the rows stay valid */
        ar_run_query q = AR_RUN_QUERY_INIT;
        seen listed = { { 0 }, 0 };
        CHECK(be->runs_list(s->db, &q, NULL, 0, 1, 5, see_run, &listed, ERR));
        s->read_during += (int)listed.n;
        ar_db_run_row loaded;
        char id[32];
        snprintf(id, sizeof id, "R%025" PRId64, row->n);
        CHECK(be->run_load(s->db, row->n, id, &loaded, ERR));
        assert_int_equal(loaded.n, row->n);
        assert_int_equal(row->run->n, row->n);
    }
    s->count++;
    return 0;
}

static size_t find(const scan *s, int64_t n)
{
    for (size_t i = 0; i < s->count; i++)
        if (s->n[i] == n)
            return i;
    fail_msg("run %" PRId64 " was not scanned", n);
    return 0;
}

/* A finished run of `steps` steps, a checkpoint and an event, written in one transaction. */
static void put_finished(ar_db *db, int64_t n, const char *agent, ar_status status, int steps)
{
    char id[32];
    ar_db_run r = run_row(n, id, agent, NULL, status, 5);
    r.progress.iterations = steps;
    int64_t min_key = 0;
    CHECK(be->txn_begin(db, ERR));
    CHECK(be->run_insert(db, &r, &min_key, ERR));
    for (int k = 1; k <= steps; k++) {
        ar_db_step s;
        memset(&s, 0, sizeof s);
        s.seq = k;
        s.kind = "llm";
        s.content = "1";
        s.content_len = 1;
        s.at = r.created_at;
        CHECK(be->step_insert(db, n, &s, ERR));
    }
    CHECK(be->checkpoint_put(db, n, steps, "{}", 2, r.created_at, ERR));
    CHECK(be->txn_commit(db, ERR));
    ar_event e = AR_EVENT_INIT;
    e.agent = agent;
    e.type = "t";
    e.run = id;
    e.at = r.created_at;
    int64_t ev;
    CHECK(be->event_insert(db, &e, &ev, ERR));
}

static void test_retain_scan_ranks_streams_and_deletes(void **state)
{
    fixture *f = need_server(state);
    ar_db *db = db_open(f);
    /* agent a: five runs, two in one millisecond (ranked by id); agent b: two */
    put_finished(db, key_of(base_ms, 0), "a", AR_COMPLETED, 2);
    put_finished(db, key_of(base_ms + 1, 0), "b", AR_FAILED, 1);
    put_finished(db, key_of(base_ms + 2, 0), "a", AR_FAILED, 3);
    put_finished(db, key_of(base_ms + 3, 0), "a", AR_COMPLETED, 0);
    put_finished(db, key_of(base_ms + 3, 1), "a", AR_BUDGET_EXHAUSTED, 1);
    put_finished(db, key_of(base_ms + 4, 0), "b", AR_COMPLETED, 2);
    put_finished(db, key_of(base_ms + 5, 0), "a", AR_INTERRUPTED, 1);
    put_run(db, key_of(base_ms + 6, 0), "a", NULL, AR_RUNNING, 0);

    ar_status all[] = { AR_COMPLETED, AR_BUDGET_EXHAUSTED, AR_FAILED, AR_INTERRUPTED };
    static scan s;
    memset(&s, 0, sizeof s);
    s.db = db;
    CHECK(be->retain_scan(db, all, 4, 1, 1, see_retain, &s, ERR));
    assert_int_equal(s.count, 7);
    assert_true(s.read_during > 0);
    assert_int_equal(s.rank[find(&s, key_of(base_ms + 5, 0))], 1);
    assert_int_equal(s.rank[find(&s, key_of(base_ms + 3, 1))], 2);
    assert_int_equal(s.rank[find(&s, key_of(base_ms + 3, 0))], 3);
    assert_int_equal(s.rank[find(&s, key_of(base_ms + 2, 0))], 4);
    assert_int_equal(s.rank[find(&s, key_of(base_ms, 0))], 5);
    assert_int_equal(s.rank[find(&s, key_of(base_ms + 4, 0))], 1);
    assert_int_equal(s.rank[find(&s, key_of(base_ms + 1, 0))], 2);
    assert_string_equal(s.agent[find(&s, key_of(base_ms + 1, 0))], "b");
    assert_int_equal(s.ended[find(&s, key_of(base_ms + 2, 0))], base_ms + 2 + 5);
    assert_int_equal(s.iterations[find(&s, key_of(base_ms + 2, 0))], 3);

    /* a status filter, unranked, without the rows */
    ar_status failed = AR_FAILED;
    memset(&s, 0, sizeof s);
    s.db = db;
    CHECK(be->retain_scan(db, &failed, 1, 0, 0, see_retain, &s, ERR));
    assert_int_equal(s.count, 2);
    assert_int_equal(s.rank[0], 0);
    assert_int_equal(s.read_during, 0);

    /* deleting a batch: the running run stays, the others go with their rows */
    int64_t keys[] = { key_of(base_ms, 0), key_of(base_ms + 2, 0), key_of(base_ms + 6, 0) };
    int64_t steps = -1, runs = -1;
    CHECK(be->retain_count_steps(db, keys, 3, &steps, ERR));
    assert_int_equal(steps, 5);
    ar_db_sizes before, after;
    CHECK(be->sizes(db, &before, ERR));
    assert_true(before.file_bytes > 0);
    assert_int_equal(before.wal_bytes, 0);
    CHECK(be->txn_begin(db, ERR));
    CHECK(be->retain_delete(db, keys, 3, &runs, &steps, ERR));
    CHECK(be->txn_commit(db, ERR));
    assert_int_equal(runs, 2);
    assert_int_equal(steps, 5);
    ar_err err = { 0, "" };
    char id[32];
    snprintf(id, sizeof id, "R%025" PRId64, keys[0]);
    assert_int_equal(be->run_exists(db, keys[0], id, &err), AR_ENOTFOUND);
    snprintf(id, sizeof id, "R%025" PRId64, keys[2]);
    CHECK(be->run_exists(db, keys[2], id, ERR));
    ar_db_text state_text;
    int64_t seq = -1;
    CHECK(be->checkpoint_get(db, keys[1], &state_text, &seq, ERR));
    assert_null(state_text.s);
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    int64_t count;
    CHECK(be->events_count(db, &q, &count, ERR));
    assert_int_equal(count, 3);
    CHECK(be->retain_count_steps(db, keys, 3, &steps, ERR));
    assert_int_equal(steps, 0);

    /* compaction runs outside a transaction only */
    CHECK(be->compact(db, ERR));
    CHECK(be->sizes(db, &after, ERR));
    assert_true(after.file_bytes > 0);
    CHECK(be->txn_begin(db, ERR));
    assert_int_equal(be->compact(db, &err), AR_EMISUSE);
    be->txn_rollback(db);
    be->close(db);
}

/* A visitor that fails the scan at its third row. */
static int stop_third(void *ud, const ar_db_retain_row *row)
{
    (void)row;
    return ++*(int *)ud == 3 ? AR_ECALLBACK : 0;
}

typedef struct tally {
    int64_t rows, rank_max, rank_sum;
} tally;

static int count_retain(void *ud, const ar_db_retain_row *row)
{
    tally *t = ud;
    t->rows++;
    t->rank_sum += row->rank;
    if (row->rank > t->rank_max)
        t->rank_max = row->rank;
    return 0;
}

static void test_retain_scan_streams_past_one_batch_and_stops_on_request(void **state)
{
    fixture *f = need_server(state);
    ar_db *db = db_open(f);
    /* more runs than one fetch holds */
    CHECK(be->txn_begin(db, ERR));
    for (int i = 0; i < 1234; i++)
        put_run(db, key_of(base_ms + i, 0), i % 2 ? "a" : "b", NULL, AR_COMPLETED, 1);
    CHECK(be->txn_commit(db, ERR));
    ar_status done = AR_COMPLETED;
    /* stopped, twice: the first scan's cursor is gone when the second begins */
    for (int pass = 0; pass < 2; pass++) {
        int calls = 0;
        ar_err err = { 0, "" };
        assert_int_equal(be->retain_scan(db, &done, 1, 1, pass, stop_third, &calls, &err), AR_ECALLBACK);
        assert_int_equal(calls, 3);
    }
    /* whole, in the caller's transaction too */
    for (int in_txn = 0; in_txn < 2; in_txn++) {
        tally t = { 0, 0, 0 };
        if (in_txn)
            CHECK(be->txn_begin(db, ERR));
        CHECK(be->retain_scan(db, &done, 1, 1, 1, count_retain, &t, ERR));
        if (in_txn)
            CHECK(be->txn_commit(db, ERR));
        assert_int_equal(t.rows, 1234);
        assert_int_equal(t.rank_max, 617);
        assert_int_equal(t.rank_sum, 2 * (617 * 618 / 2));
    }
    be->close(db);
}

/* While the scan streams, another connection adds a finished run: neither
 * the scan nor the visitor's own reads see it, as in one read transaction. */
typedef struct snapshot_probe {
    ar_db *scanning, *other;
    int64_t rows, counted_during;
} snapshot_probe;

static int write_elsewhere_then_count(void *ud, const ar_db_retain_row *row)
{
    snapshot_probe *p = ud;
    (void)row;
    if (p->rows++ == 0) {
        put_run(p->other, key_of(base_ms + 100, 0), "a", NULL, AR_COMPLETED, 1);
        ar_run_query q = AR_RUN_QUERY_INIT;
        CHECK(be->runs_count(p->scanning, &q, &p->counted_during, ERR));
    }
    return 0;
}

static void test_retain_scan_and_its_visitor_see_one_snapshot(void **state)
{
    fixture *f = need_server(state);
    ar_db *db = db_open(f), *other = db_open(f);
    for (int i = 0; i < 3; i++)
        put_run(db, key_of(base_ms + i, 0), "a", NULL, AR_COMPLETED, 1);
    ar_status done = AR_COMPLETED;
    snapshot_probe p = { db, other, 0, -1 };
    CHECK(be->retain_scan(db, &done, 1, 1, 1, write_elsewhere_then_count, &p, ERR));
    assert_int_equal(p.rows, 3);
    assert_int_equal(p.counted_during, 3);
    ar_run_query q = AR_RUN_QUERY_INIT;
    int64_t count = 0;
    CHECK(be->runs_count(db, &q, &count, ERR));
    assert_int_equal(count, 4);
    be->close(other);
    be->close(db);
}

/* ---- allocation failures ------------------------------------------------------------ */

/* An allocator that fails its `fail_at`-th allocation from now (0: never). */
typedef struct failing {
    long countdown;
} failing;

static void *failing_malloc(void *ud, size_t n)
{
    failing *f = ud;
    if (f->countdown > 0 && --f->countdown == 0)
        return NULL;
    return malloc(n);
}

static void *failing_realloc(void *ud, void *p, size_t n)
{
    failing *f = ud;
    if (f->countdown > 0 && --f->countdown == 0)
        return NULL;
    return realloc(p, n);
}

static void failing_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

static int count_run(void *ud, const ar_db_run_row *row)
{
    (void)row;
    ++*(int *)ud;
    return 0;
}

static int count_event(void *ud, const ar_db_event_row *row)
{
    (void)row;
    ++*(int *)ud;
    return 0;
}

static int count_scanned(void *ud, const ar_db_retain_row *row)
{
    (void)row;
    ++*(int *)ud;
    return 0;
}

/* Runs `call` with the k-th allocation failing, k = 1, 2, ... until it
 * succeeds: every failure is AR_ENOMEM, and the call then gives `want`. */
#define EACH_ALLOCATION_FAILS(fl, call, visited, want) do { \
        for (long k_ = 1;; k_++) { \
            ar_err err_ = { 0, "" }; \
            visited = 0; \
            (fl)->countdown = k_; \
            int rc_ = (call); \
            int failed_ = (fl)->countdown == 0; \
            (fl)->countdown = 0; \
            if (!failed_) { \
                if (rc_ != AR_OK) \
                    print_error("%s: %s: %s\n", #call, ar_code_name(rc_), err_.msg); \
                assert_int_equal(rc_, AR_OK); \
                assert_int_equal(visited, want); \
                assert_true(k_ > 1);    /* it allocates, and its failures were seen */ \
                break; \
            } \
            if (rc_ != AR_ENOMEM) \
                print_error("%s with allocation %ld failing: %s: %s\n", #call, k_, ar_code_name(rc_), err_.msg); \
            assert_int_equal(rc_, AR_ENOMEM); \
        } \
    } while (0)

static void test_listings_and_retention_report_running_out_of_memory(void **state)
{
    fixture *fx = need_server(state);
    failing fl = { 0 };
    ar_allocator alloc = { failing_malloc, failing_realloc, failing_free, &fl };
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.schema = fx->schema;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_db *db = NULL;
    ar_err err = { 0, "" };
    assert_int_equal(be->open(&db, test_pg_url(), &opts, &alloc, &err), AR_OK);
    put_runs(db);
    static const char *const types[] = { "a", "b\"", "c" };
    for (int i = 0; i < 9; i++)
        put_event(db, "ag", 0, types[i % 3], "x", 1, base_ms + i);

    int visited = 0;
    ar_run_query q = AR_RUN_QUERY_INIT;
    ar_status two[] = { AR_COMPLETED, AR_FAILED };
    q.status = two;
    q.n_status = 2;
    int want = (int)expected_runs((int64_t[N_RUNS]){ 0 }, NULL, 1 << AR_COMPLETED | 1 << AR_FAILED, AR_UNSET, AR_UNSET);
    EACH_ALLOCATION_FAILS(&fl, be->runs_list(db, &q, NULL, 0, 1, 100, count_run, &visited, ERR), visited, want);
    int64_t count = 0;
    EACH_ALLOCATION_FAILS(&fl, be->runs_count(db, &q, &count, ERR), visited, 0);
    assert_int_equal(count, want);
    ar_db_stats st;
    EACH_ALLOCATION_FAILS(&fl, be->runs_stats(db, &q, &st, ERR), visited, 0);
    assert_int_equal(st.runs, want);

    ar_event_query eq = AR_EVENT_QUERY_INIT;
    eq.agent = "ag";
    eq.types = (const char *const *)types;
    eq.n_types = 2;
    EACH_ALLOCATION_FAILS(&fl, be->events_list(db, &eq, NULL, 1, 100, count_event, &visited, ERR), visited, 6);
    EACH_ALLOCATION_FAILS(&fl, be->events_count(db, &eq, &count, ERR), visited, 0);
    assert_int_equal(count, 6);

    ar_status finished[] = { AR_COMPLETED, AR_BUDGET_EXHAUSTED, AR_FAILED, AR_INTERRUPTED };
    EACH_ALLOCATION_FAILS(&fl, be->retain_scan(db, finished, 4, 1, 1, count_scanned, &visited, ERR), visited,
                          N_RUNS - N_RUNS / 5);
    int64_t keys[] = { run_key(1), run_key(2) }, steps = -1, runs = -1;
    EACH_ALLOCATION_FAILS(&fl, be->retain_count_steps(db, keys, 2, &steps, ERR), visited, 0);
    assert_int_equal(steps, 0);
    CHECK(be->txn_begin(db, ERR));
    EACH_ALLOCATION_FAILS(&fl, be->retain_delete(db, keys, 2, &runs, &steps, ERR), visited, 0);
    CHECK(be->txn_commit(db, ERR));
    assert_int_equal(runs, 2);
    be->close(db);
}

/* ---- out-of-order commits ---------------------------------------------------------- */

/* How many server sessions wait for a lock: the probe sees a writer blocked. */
static int lock_waiters(PGconn *probe)
{
    PGresult *res = PQexec(probe, "SELECT count(*) FROM pg_stat_activity"
                                  " WHERE wait_event_type = 'Lock' AND datname = current_database()");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    int n = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

typedef struct writer {
    ar_db *db;
    int events;             /* 1: append an event, 0: insert a run */
    int64_t key;            /* the run's key */
    int64_t id;             /* the event's id */
    int rc;
    char msg[AR_ERRMSG_MAX];
    volatile int done;
} writer;

static void *write_one(void *arg)
{
    writer *w = arg;
    ar_err err = { 0, "" };
    if (w->events) {
        ar_event e = AR_EVENT_INIT;
        e.agent = "late";
        e.type = "t";
        e.at = base_ms;
        w->rc = be->event_insert(w->db, &e, &w->id, &err);
    } else {
        char id[32];
        ar_db_run r = run_row(w->key, id, "late", NULL, AR_RUNNING, 0);
        int64_t min_key = 0;
        w->rc = be->run_insert(w->db, &r, &min_key, &err);
    }
    snprintf(w->msg, sizeof w->msg, "%s", err.msg);
    __atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* A reader paging ascending with a cursor, as a client does. */
typedef struct reader {
    int64_t key;
    seen got;
} reader;

static void read_on(ar_db *db, reader *r, int events)
{
    for (;;) {
        size_t before = r->got.n;
        if (events) {
            ar_event_query q = AR_EVENT_QUERY_INIT;
            q.agent = "late";
            CHECK(be->events_list(db, &q, &r->key, 1, 2, see_event, &r->got, ERR));
        } else {
            ar_run_query q = AR_RUN_QUERY_INIT;
            CHECK(be->runs_list(db, &q, &r->key, 0, 1, 2, see_run, &r->got, ERR));
        }
        if (r->got.n == before)
            return;
        r->key = r->got.v[r->got.n - 1];
    }
}

/* Connection A takes the lower key (or id) in a transaction it holds open;
 * connection B then writes a higher one; a reader pages meanwhile. Once both
 * have committed, the reader's pages hold each row exactly once: B never
 * became visible while A's lower row could still commit. */
static void late_commit(void **state, int events)
{
    fixture *f = need_server(state);
    ar_db *a = db_open(f), *b = db_open(f), *rd = db_open(f);
    reader r;
    memset(&r, 0, sizeof r);
    int64_t a_id = 0, a_key = key_of(base_ms, 0);
    CHECK(be->txn_begin(a, ERR));
    if (events) {
        ar_event e = AR_EVENT_INIT;
        e.agent = "late";
        e.type = "t";
        e.at = base_ms;
        CHECK(be->event_insert(a, &e, &a_id, ERR));
    } else {
        char id[32];
        ar_db_run row = run_row(a_key, id, "late", NULL, AR_RUNNING, 0);
        int64_t min_key = 0;
        CHECK(be->run_insert(a, &row, &min_key, ERR));
    }
    writer w;
    memset(&w, 0, sizeof w);
    w.db = b;
    w.events = events;
    w.key = key_of(base_ms, 1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_one, &w), 0);
    /* until B has either committed or is blocked behind A */
    while (!__atomic_load_n(&w.done, __ATOMIC_SEQ_CST) && lock_waiters(f->probe) == 0) {
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, NULL);
    }
    read_on(rd, &r, events);
    CHECK(be->txn_commit(a, ERR));
    assert_int_equal(pthread_join(t, NULL), 0);
    if (w.rc != AR_OK) {
        print_error("writer B: %s: %s\n", ar_code_name(w.rc), w.msg);
        fail();
    }
    read_on(rd, &r, events);
    assert_int_equal(r.got.n, 2);
    if (events) {
        assert_true(w.id > a_id);
        assert_int_equal(r.got.v[0], a_id);
        assert_int_equal(r.got.v[1], w.id);
    } else {
        assert_int_equal(r.got.v[0], a_key);
        assert_int_equal(r.got.v[1], w.key);
    }
    be->close(a);
    be->close(b);
    be->close(rd);
}

static void test_runs_committed_late_are_not_skipped(void **state)
{
    late_commit(state, 0);
}

static void test_events_committed_late_are_not_skipped(void **state)
{
    late_commit(state, 1);
}

/* ---- many writers ------------------------------------------------------------------- */

#define WRITERS 8
#define RUNS_EACH 200

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One writer process: RUNS_EACH runs and as many events, keys taken as the
 * core takes them (the clock's next tick, or past the key the store asks). */
static int many_writer(const fixture *f, int w, int go)
{
    char c;
    while (read(go, &c, 1) < 0 && errno == EINTR)
        ;
    close(go);
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.schema = f->schema;
    opts.durability = AR_DURABILITY_NORMAL;
    opts.busy_timeout_ms = 60000;
    ar_db *db = NULL;
    ar_err err = { 0, "" };
    if (be->open(&db, test_pg_url(), &opts, &ar_default_allocator, &err) != AR_OK) {
        fprintf(stderr, "writer %d: open: %s\n", w, err.msg);
        return 1;
    }
    char agent[16];
    snprintf(agent, sizeof agent, "w%d", w);
    int64_t last = 0;
    for (int i = 0; i < RUNS_EACH; i++) {
        int64_t n = now_ms() << 16;
        if (n <= last)
            n = last + 1;
        char id[32];
        for (;;) {
            ar_db_run r = run_row(n, id, agent, NULL, AR_RUNNING, 0);
            int64_t min_key = 0;
            int rc = be->run_insert(db, &r, &min_key, &err);
            if (rc == AR_OK)
                break;
            if (rc != AR_DB_CONFLICT) {
                fprintf(stderr, "writer %d run %d: %s\n", w, i, err.msg);
                return 1;
            }
            n = min_key > n ? min_key : n + 1;
        }
        last = n;
        ar_event e = AR_EVENT_INIT;
        e.agent = "many";
        e.session = w;
        e.type = "t";
        e.at = now_ms();
        int64_t ev;
        if (be->event_insert(db, &e, &ev, &err) != AR_OK) {
            fprintf(stderr, "writer %d event %d: %s\n", w, i, err.msg);
            return 1;
        }
    }
    be->close(db);
    return 0;
}

static int all_exited(pid_t *pids, int *status)
{
    int left = 0;
    for (int w = 0; w < WRITERS; w++) {
        if (pids[w] <= 0)
            continue;
        pid_t got = waitpid(pids[w], &status[w], WNOHANG);
        if (got == pids[w])
            pids[w] = -pids[w];
        else
            left++;
    }
    return left == 0;
}

static void test_many_writers_and_a_paging_reader_see_every_row_once(void **state)
{
    fixture *f = need_server(state);
    ar_db *setup_db = db_open(f);   /* makes the schema before the writers race to */
    be->close(setup_db);
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pids[WRITERS];
    int status[WRITERS];
    fflush(NULL);
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            close(go[1]);
            _exit(many_writer(f, w, go[0]));
        }
    }
    close(go[0]);
    ar_db *rd = db_open(f);
    static reader runs, events;
    memset(&runs, 0, sizeof runs);
    memset(&events, 0, sizeof events);
    close(go[1]);   /* go */
    /* page throughout, then once more after every writer has ended */
    int finished = 0;
    while (!finished) {
        finished = all_exited(pids, status);
        for (;;) {
            size_t before = runs.got.n;
            ar_run_query q = AR_RUN_QUERY_INIT;
            CHECK(be->runs_list(rd, &q, runs.got.n ? &runs.key : NULL, 0, 1, 50, see_run, &runs.got, ERR));
            if (runs.got.n == before)
                break;
            runs.key = runs.got.v[runs.got.n - 1];
        }
        for (;;) {
            size_t before = events.got.n;
            ar_event_query q = AR_EVENT_QUERY_INIT;
            q.agent = "many";
            CHECK(be->events_list(rd, &q, &events.key, 1, 50, see_event, &events.got, ERR));
            if (events.got.n == before)
                break;
            events.key = events.got.v[events.got.n - 1];
        }
    }
    for (int w = 0; w < WRITERS; w++)
        assert_true(WIFEXITED(status[w]) && WEXITSTATUS(status[w]) == 0);
    /* every row once, in order: nothing skipped, nothing repeated */
    assert_int_equal(runs.got.n, WRITERS * RUNS_EACH);
    assert_int_equal(events.got.n, WRITERS * RUNS_EACH);
    for (size_t i = 1; i < runs.got.n; i++)
        assert_true(runs.got.v[i] > runs.got.v[i - 1]);
    for (size_t i = 1; i < events.got.n; i++)
        assert_true(events.got.v[i] > events.got.v[i - 1]);
    ar_run_query q = AR_RUN_QUERY_INIT;
    int64_t count = 0, sum = 0;
    CHECK(be->runs_count(rd, &q, &count, ERR));
    assert_int_equal(count, WRITERS * RUNS_EACH);
    for (int w = 0; w < WRITERS; w++) {
        char agent[16];
        snprintf(agent, sizeof agent, "w%d", w);
        q.agent = agent;
        CHECK(be->runs_count(rd, &q, &count, ERR));
        assert_int_equal(count, RUNS_EACH);
        ar_event_query eq = AR_EVENT_QUERY_INIT;
        eq.agent = "many";
        eq.session = w;
        CHECK(be->events_count(rd, &eq, &count, ERR));
        sum += count;
    }
    assert_int_equal(sum, WRITERS * RUNS_EACH);
    be->close(rd);
}

/* The same through the public API: the core makes the ids (taking a later
 * tick when the store asks for one), records whole runs, and the reader
 * pages with the cursors clients use. */
static int api_writer(const fixture *f, int w, int go)
{
    char c;
    while (read(go, &c, 1) < 0 && errno == EINTR)
        ;
    close(go);
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.schema = f->schema;
    opts.durability = AR_DURABILITY_NORMAL;
    opts.busy_timeout_ms = 60000;
    ar_store *store = NULL;
    if (ar_store_open(&store, test_pg_url(), &opts) != AR_OK) {
        fprintf(stderr, "writer %d: open: %s\n", w, ar_store_errmsg(store));
        ar_store_close(store);
        return 1;
    }
    char agent[16];
    snprintf(agent, sizeof agent, "w%d", w);
    for (int i = 0; i < RUNS_EACH; i++) {
        ar_run_spec spec = AR_RUN_SPEC_INIT;
        spec.agent = agent;
        spec.goal = "g";
        ar_run *run = NULL;
        ar_step step = AR_STEP_INIT;
        step.kind = "llm";
        step.usage.input_tokens = 1;
        step.usage.cost = 0.001;
        ar_event e = AR_EVENT_INIT;
        e.agent = "many";
        e.session = w;
        e.type = "t";
        int rc;
        if ((rc = ar_run_begin(&run, store, &spec)) != AR_OK || (rc = ar_run_step(NULL, run, &step)) != AR_OK ||
            (rc = ar_run_complete(NULL, run, "1", AR_NUL_TERMINATED)) != AR_OK ||
            (rc = ar_event_append(NULL, store, &e)) != AR_OK) {
            fprintf(stderr, "writer %d run %d: %s: %s / %s\n", w, i, ar_code_name(rc), ar_store_errmsg(store),
                    run ? ar_run_errmsg(run) : "");
            return 1;
        }
        ar_run_close(run);
    }
    ar_store_close(store);
    return 0;
}

/* A reader tailing a listing. The last page comes without a cursor, so
 * the next round reads it again from the cursor it began at: the rows past
 * `base` (those of the last page) are read again, not added twice. */
typedef struct tail {
    char *cursor;
    int64_t *ids;           /* event ids, or run keys */
    size_t n, cap, base;
} tail;

static void tail_add(tail *t, int64_t id)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->ids = realloc(t->ids, t->cap * sizeof *t->ids);
        assert_non_null(t->ids);
    }
    t->ids[t->n++] = id;
}

/* Moves the tail on: *next is the page's cursor (NULL on the last page). */
static int tail_step(tail *t, char *next)
{
    if (!next)
        return 0;
    ar_free(t->cursor);
    t->cursor = next;
    t->base = t->n;
    return 1;
}

static void api_page_runs(ar_store *store, tail *t)
{
    t->n = t->base;
    do {
        ar_run_query q = AR_RUN_QUERY_INIT;
        q.order = AR_ORDER_ASC;
        q.limit = 50;
        q.after = t->cursor;
        ar_record **list = NULL;
        size_t got = 0;
        char *next = NULL;
        int rc = ar_runs_list(&list, &got, &next, store, &q);
        if (rc != AR_OK) {
            print_error("runs_list: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
            fail();
        }
        for (size_t i = 0; i < got; i++)
            tail_add(t, ar_id_tick(list[i]->id));
        ar_records_free(list, got);
        if (!tail_step(t, next))
            return;
    } while (1);
}

static void api_page_events(ar_store *store, tail *t)
{
    t->n = t->base;
    do {
        ar_event_query q = AR_EVENT_QUERY_INIT;
        q.agent = "many";
        q.limit = 50;
        q.after = t->cursor;
        ar_event_list *list = NULL;
        char *next = NULL;
        int rc = ar_events_list(&list, &next, store, &q);
        if (rc != AR_OK) {
            print_error("events_list: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
            fail();
        }
        for (size_t i = 0; i < list->n; i++)
            tail_add(t, list->items[i].id);
        ar_event_list_free(list);
        if (!tail_step(t, next))
            return;
    } while (1);
}

static void test_many_writers_through_the_api_and_a_paging_reader(void **state)
{
    fixture *f = need_server(state);
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.schema = f->schema;
    ar_store *rd = NULL;
    assert_int_equal(ar_store_open(&rd, test_pg_url(), &opts), AR_OK);   /* makes the schema */
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pids[WRITERS];
    int status[WRITERS];
    fflush(NULL);
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            close(go[1]);
            _exit(api_writer(f, w, go[0]));
        }
    }
    close(go[0]);
    close(go[1]);
    tail runs = { NULL, NULL, 0, 0, 0 }, events = { NULL, NULL, 0, 0, 0 };
    /* page throughout, then once more after every writer has ended */
    int finished = 0;
    while (!finished) {
        finished = all_exited(pids, status);
        api_page_runs(rd, &runs);
        api_page_events(rd, &events);
    }
    for (int w = 0; w < WRITERS; w++)
        assert_true(WIFEXITED(status[w]) && WEXITSTATUS(status[w]) == 0);
    /* every row once, in order: nothing skipped, nothing repeated */
    assert_int_equal(runs.n, WRITERS * RUNS_EACH);
    assert_int_equal(events.n, WRITERS * RUNS_EACH);
    for (size_t i = 1; i < runs.n; i++)
        assert_true(runs.ids[i] > runs.ids[i - 1]);
    for (size_t i = 1; i < events.n; i++)
        assert_true(events.ids[i] > events.ids[i - 1]);
    ar_run_query q = AR_RUN_QUERY_INIT;
    int64_t count = 0;
    assert_int_equal(ar_runs_count(&count, rd, &q), AR_OK);
    assert_int_equal(count, WRITERS * RUNS_EACH);
    ar_stats st;
    assert_int_equal(ar_runs_stats(&st, rd, &q), AR_OK);
    assert_int_equal(st.by_status[AR_COMPLETED], WRITERS * RUNS_EACH);
    assert_int_equal(st.input_tokens, WRITERS * RUNS_EACH);
    assert_int_equal(st.iterations, WRITERS * RUNS_EACH);
    assert_exact(st.cost, 1.6);
    ar_event_query eq = AR_EVENT_QUERY_INIT;
    eq.agent = "many";
    assert_int_equal(ar_events_count(&count, rd, &eq), AR_OK);
    assert_int_equal(count, WRITERS * RUNS_EACH);
    ar_free(runs.cursor);
    ar_free(events.cursor);
    free(runs.ids);
    free(events.ids);
    ar_store_close(rd);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_runs_pages_in_both_orders_with_filters, setup, teardown),
    cmocka_unit_test_setup_teardown(test_runs_list_stops_when_the_visitor_says, setup, teardown),
    cmocka_unit_test_setup_teardown(test_runs_stats_are_exact_up_to_int64_and_saturate_past_it, setup, teardown),
    cmocka_unit_test_setup_teardown(test_events_pages_filters_and_summary, setup, teardown),
    cmocka_unit_test_setup_teardown(test_event_ids_are_never_reused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_events_retention_by_age_and_count, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retain_scan_ranks_streams_and_deletes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retain_scan_streams_past_one_batch_and_stops_on_request, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retain_scan_and_its_visitor_see_one_snapshot, setup, teardown),
    cmocka_unit_test_setup_teardown(test_listings_and_retention_report_running_out_of_memory, setup, teardown),
    cmocka_unit_test_setup_teardown(test_runs_committed_late_are_not_skipped, setup, teardown),
    cmocka_unit_test_setup_teardown(test_events_committed_late_are_not_skipped, setup, teardown),
    cmocka_unit_test_setup_teardown(test_many_writers_and_a_paging_reader_see_every_row_once, setup, teardown),
    cmocka_unit_test_setup_teardown(test_many_writers_through_the_api_and_a_paging_reader, setup, teardown),
};

TEST_GROUP(postgres_query_group, "postgres_query", tests);
