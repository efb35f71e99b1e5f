/* test_read.c -- reading runs back: get, streamed steps, filtered listings, keyset cursors, counts, stats, forget_user. */
#include "suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "agentrun.h"

#define T0 INT64_C(1700000000000) /* fixture runs start here, long before now */

/* One fixture run as the test knows it, to compute expected listings. */
typedef struct row {
    const char *agent, *user, *edition, *parent;
    ar_status status;
    int64_t created_at;
    char id[27];
} row;

/* Writes a finished run with the row's fields (finished 100 ms after it
 * began) and fills in its id. */
static void put(ar_store *store, row *r)
{
    ar_record rec = AR_RECORD_INIT;
    rec.agent = r->agent;
    rec.goal = "g";
    rec.user = r->user;
    rec.edition = r->edition;
    rec.parent = r->parent;
    rec.status = r->status;
    rec.created_at = r->created_at;
    rec.finished_at = r->created_at + 100;
    if (r->status == AR_BUDGET_EXHAUSTED)
        rec.limit = (ar_exhaustion){ "max_steps", 1, 1 };
    char *id = NULL;
    int rc = ar_store_write(&id, store, &rec);
    if (rc != AR_OK) {
        print_error("write: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    assert_int_equal(strlen(id), 26);
    memcpy(r->id, id, 27);
    ar_free(id);
}

/* The reference filter: whether the listing should hold row r for q. */
static int matches(const row *r, const ar_run_query *q)
{
    if ((q->agent && strcmp(q->agent, r->agent) != 0) ||
        (q->user && (!r->user || strcmp(q->user, r->user) != 0)) ||
        (q->edition && (!r->edition || strcmp(q->edition, r->edition) != 0)) ||
        (q->parent && (!r->parent || strcmp(q->parent, r->parent) != 0)))
        return 0;
    if (q->since != AR_UNSET && r->created_at < q->since)
        return 0;
    if (q->until != AR_UNSET && r->created_at >= q->until)
        return 0;
    if (q->n_status == 0)
        return 1;
    for (size_t i = 0; i < q->n_status; i++)
        if (q->status[i] == r->status)
            return 1;
    return 0;
}

static int key_cmp(int64_t ca, const char *ia, int64_t cb, const char *ib)
{
    if (ca != cb)
        return ca < cb ? -1 : 1;
    return strcmp(ia, ib);
}

static int row_asc(const void *a, const void *b)
{
    const row *x = *(const row *const *)a, *y = *(const row *const *)b;
    return key_cmp(x->created_at, x->id, y->created_at, y->id);
}

/* The rows matching q, in q's order; returns how many went into out. */
static size_t expected(const row *rows, size_t n, const ar_run_query *q, const row **out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (matches(&rows[i], q))
            out[k++] = &rows[i];
    qsort(out, k, sizeof *out, row_asc);
    if (q->order == AR_ORDER_DESC)
        for (size_t i = 0; i < k / 2; i++) {
            const row *t = out[i];
            out[i] = out[k - 1 - i];
            out[k - 1 - i] = t;
        }
    return k;
}

/* Checks one page: exactly the expected rows in order, and the count. */
static void expect_listing(ar_store *store, const row *rows, size_t n, const ar_run_query *q, const char *label)
{
    const row *want[256];
    assert_true(n <= 256);
    size_t k = expected(rows, n, q, want);
    ar_record **list = NULL;
    size_t got = 0;
    char *next = NULL;
    int rc = ar_runs_list(&list, &got, &next, store, q);
    if (rc != AR_OK) {
        print_error("%s: %s: %s\n", label, ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    if (got != k) {
        print_error("%s: %zu runs, want %zu\n", label, got, k);
        fail();
    }
    for (size_t i = 0; i < k; i++) {
        if (strcmp(list[i]->id, want[i]->id) != 0) {
            print_error("%s: item %zu is %s, want %s\n", label, i, list[i]->id, want[i]->id);
            fail();
        }
        assert_int_equal(list[i]->created_at, want[i]->created_at);
        assert_int_equal(list[i]->n_steps, 0);
    }
    assert_null(next);
    int64_t count = -1;
    assert_int_equal(ar_runs_count(&count, store, q), AR_OK);
    assert_int_equal(count, (int64_t)k);
    ar_records_free(list, got);
}

/* Lists one page; fails unless it works. */
static ar_record **page(ar_store *store, const ar_run_query *q, size_t *n, char **next)
{
    ar_record **list = NULL;
    int rc = ar_runs_list(&list, n, next, store, q);
    if (rc != AR_OK) {
        print_error("list: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    return list;
}

/* Writes n runs, five to a millisecond, agents alternating a/b; rows sorted ascending. */
static row *many_runs(ar_store *store, size_t n)
{
    row *rows = calloc(n, sizeof *rows);
    assert_non_null(rows);
    for (size_t i = 0; i < n; i++) {
        rows[i].agent = i % 2 ? "b" : "a";
        rows[i].status = AR_COMPLETED;
        rows[i].created_at = T0 + (int64_t)(i / 5);
        put(store, &rows[i]);
    }
    return rows;
}

/* ---- get ---------------------------------------------------------------- */

static void test_get_of_an_unknown_id_is_null_and_enotfound(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_record *rec = (ar_record *)store;
    assert_int_equal(ar_store_get(&rec, store, "01ARZ3NDEKTSV4RRFFQ69G5FAV", 1), AR_ENOTFOUND);
    assert_null(rec);
    assert_int_equal(ar_store_errcode(store), AR_ENOTFOUND);
    rec = (ar_record *)store;
    assert_int_equal(ar_store_get(&rec, store, "", 0), AR_ENOTFOUND);
    assert_null(rec);
    assert_int_equal(ar_store_get(&rec, store, NULL, 0), AR_EMISUSE);
    assert_int_equal(ar_store_get(NULL, store, "x", 0), AR_EMISUSE);
    assert_int_equal(ar_store_get(&rec, NULL, "x", 0), AR_EMISUSE);
    ar_store_close(store);
}

static void test_get_with_and_without_steps(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "g";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    for (int i = 0; i < 4; i++) {
        char content[16];
        snprintf(content, sizeof content, "%d", i + 1);
        step.content = content;
        assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    }
    ar_record *rec = test_get(store, ar_run_id(run), 0);
    assert_int_equal(rec->iterations, 4);
    assert_int_equal(rec->n_steps, 0);
    assert_null(rec->steps);
    ar_record_free(rec);
    rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->n_steps, 4);
    for (size_t i = 0; i < 4; i++) {
        char content[16];
        snprintf(content, sizeof content, "%zu", i + 1);
        assert_int_equal(rec->steps[i].seq, (int64_t)i + 1);
        assert_string_equal(rec->steps[i].content, content);
    }
    ar_record_free(rec);
    ar_run_close(run);

    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->n_steps, 0);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

/* A store written by an earlier version may hold a record whose iterations
 * disagree with its steps (writes now refuse one): get still returns every
 * step it kept. */
static void test_get_returns_every_kept_step_whatever_iterations_claims(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "old.db");
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, path, NULL), AR_OK);
    ar_step steps[2] = { AR_STEP_INIT, AR_STEP_INIT };
    steps[0].kind = "first";
    steps[1].kind = "second";
    ar_record rec = AR_RECORD_INIT;
    rec.agent = "a";
    rec.goal = "g";
    rec.status = AR_COMPLETED;
    rec.steps = steps;
    rec.n_steps = 2;
    rec.iterations = INT64_C(1000000000000);
    char *id = NULL;
    assert_int_equal(ar_store_write(&id, store, &rec), AR_EMISUSE);
    rec.iterations = -1;
    assert_int_equal(ar_store_write(&id, store, &rec), AR_OK);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE runs SET iterations = 1000000000000", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ar_record *back = test_get(store, id, 1);
    assert_int_equal(back->iterations, INT64_C(1000000000000));
    assert_int_equal(back->n_steps, 2);
    assert_string_equal(back->steps[0].kind, "first");
    assert_string_equal(back->steps[1].kind, "second");
    ar_record_free(back);
    ar_free(id);
    ar_store_close(store);
    free(path);
    tmpdir_remove(dir);
}

static void test_get_reads_a_transcript_longer_than_its_first_fetch(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    size_t n = 70000;
    ar_step *steps = malloc(n * sizeof *steps);
    assert_non_null(steps);
    for (size_t i = 0; i < n; i++) {
        ar_step init = AR_STEP_INIT;
        steps[i] = init;
        steps[i].kind = "k";
        steps[i].duration_ms = (int64_t)i;
    }
    ar_record rec = AR_RECORD_INIT;
    rec.agent = "a";
    rec.goal = "g";
    rec.status = AR_COMPLETED;
    rec.steps = steps;
    rec.n_steps = n;
    char *id = NULL;
    assert_int_equal(ar_store_write(&id, store, &rec), AR_OK);
    ar_record *back = test_get(store, id, 1);
    assert_int_equal(back->iterations, (int64_t)n);
    assert_int_equal(back->n_steps, n);
    for (size_t i = 0; i < n; i++)
        if (back->steps[i].seq != (int64_t)i + 1 || back->steps[i].duration_ms != (int64_t)i)
            fail_msg("step %zu: seq %lld", i, (long long)back->steps[i].seq);
    ar_record_free(back);
    ar_free(id);
    free(steps);
    ar_store_close(store);
}

/* ---- streamed steps ----------------------------------------------------- */

/* Begins a run with n steps whose duration_ms is their seq. */
static ar_run *run_with_steps(ar_store *store, int n)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "s";
    spec.goal = "g";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    for (int i = 1; i <= n; i++) {
        ar_step step = AR_STEP_INIT;
        step.kind = "k";
        step.duration_ms = i;
        assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    }
    return run;
}

/* Streams steps(from, limit) and checks they are seq first..last in order. */
static void expect_stream(ar_store *store, const char *id, int64_t from, int64_t limit,
                          int64_t first, int64_t last)
{
    ar_step_iter *it = NULL;
    assert_int_equal(ar_steps_open(&it, store, id, from, limit), AR_OK);
    int64_t want = first;
    const ar_step *s = NULL;
    for (;;) {
        assert_int_equal(ar_steps_next(&s, it), AR_OK);
        if (!s)
            break;
        if (s->seq != want || s->duration_ms != want)
            fail_msg("from %lld limit %lld: got seq %lld, want %lld", (long long)from,
                     (long long)limit, (long long)s->seq, (long long)want);
        want++;
    }
    assert_int_equal(want, last + 1);
    /* the end stays the end */
    assert_int_equal(ar_steps_next(&s, it), AR_OK);
    assert_null(s);
    ar_steps_close(it);
}

static void test_steps_from_is_inclusive_and_limit_caps_the_count(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_with_steps(store, 5);
    const char *id = ar_run_id(run);
    expect_stream(store, id, 1, -1, 1, 5);
    expect_stream(store, id, 0, -1, 1, 5);
    expect_stream(store, id, -9, -1, 1, 5);
    expect_stream(store, id, 3, -1, 3, 5);
    expect_stream(store, id, 5, -1, 5, 5);
    expect_stream(store, id, 6, -1, 6, 5);
    expect_stream(store, id, 2, 2, 2, 3);
    expect_stream(store, id, 4, 10, 4, 5);
    expect_stream(store, id, 1, 0, 1, 0);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_steps_stream_3000_in_order_across_batches(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_with_steps(store, 3000);
    expect_stream(store, ar_run_id(run), 1, -1, 1, 3000);
    expect_stream(store, ar_run_id(run), 250, 600, 250, 849);
    expect_stream(store, ar_run_id(run), 2999, -1, 2999, 3000);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_steps_of_an_empty_or_unknown_run(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_with_steps(store, 0);
    expect_stream(store, ar_run_id(run), 1, -1, 1, 0);
    ar_step_iter *it = (ar_step_iter *)store;
    assert_int_equal(ar_steps_open(&it, store, "01ARZ3NDEKTSV4RRFFQ69G5FAV", 1, -1), AR_ENOTFOUND);
    assert_null(it);
    assert_int_equal(ar_steps_open(&it, store, NULL, 1, -1), AR_EMISUSE);
    const ar_step *s = NULL;
    assert_int_equal(ar_steps_next(&s, NULL), AR_EMISUSE);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_a_stream_sees_steps_added_after_it_opened(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_with_steps(store, 2);
    ar_step_iter *it = NULL;
    assert_int_equal(ar_steps_open(&it, store, ar_run_id(run), 1, -1), AR_OK);
    ar_step step = AR_STEP_INIT;
    step.kind = "k";
    step.duration_ms = 3;
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);
    const ar_step *s = NULL;
    for (int64_t want = 1; want <= 3; want++) {
        assert_int_equal(ar_steps_next(&s, it), AR_OK);
        assert_non_null(s);
        assert_int_equal(s->seq, want);
    }
    assert_int_equal(ar_steps_next(&s, it), AR_OK);
    assert_null(s);
    ar_steps_close(it);
    ar_run_close(run);
    ar_store_close(store);
}

/* The store tracks its iterators: closed first, it leaves them failing
 * with AR_ESTATE (no read of the freed store), and closing them frees them. */
static void test_an_iterator_outliving_its_store_fails_with_estate_and_still_closes(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_with_steps(store, 3);
    ar_step_iter *first = NULL, *second = NULL, *third = NULL;
    assert_int_equal(ar_steps_open(&first, store, ar_run_id(run), 1, -1), AR_OK);
    assert_int_equal(ar_steps_open(&second, store, ar_run_id(run), 1, -1), AR_OK);
    assert_int_equal(ar_steps_open(&third, store, ar_run_id(run), 2, -1), AR_OK);
    const ar_step *s = NULL;
    assert_int_equal(ar_steps_next(&s, first), AR_OK);
    assert_int_equal(s->seq, 1);
    assert_string_equal(ar_steps_errmsg(first), "");
    ar_steps_close(second); /* closed before the store: unlinked from it */
    ar_run_close(run);
    ar_store_close(store);
    for (int i = 0; i < 2; i++) {
        ar_step_iter *it = i == 0 ? first : third;
        s = (const ar_step *)1;
        assert_int_equal(ar_steps_next(&s, it), AR_ESTATE);
        assert_null(s);
        assert_non_null(strstr(ar_steps_errmsg(it), "the store is closed"));
        assert_int_equal(ar_steps_next(&s, it), AR_ESTATE);
    }
    ar_steps_close(first);
    ar_steps_close(third);
}

/* An iterator closed while the store stays open leaves the store's list
 * sound: closing the store later touches only the iterators still open. */
static void test_closing_iterators_in_any_order_keeps_the_store_closable(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = run_with_steps(store, 2);
    ar_step_iter *it[4] = { NULL };
    for (int i = 0; i < 4; i++)
        assert_int_equal(ar_steps_open(&it[i], store, ar_run_id(run), 1, -1), AR_OK);
    ar_steps_close(it[1]); /* the middle of the list */
    ar_steps_close(it[3]); /* its head (the newest) */
    ar_steps_close(it[0]); /* its tail */
    const ar_step *s = NULL;
    assert_int_equal(ar_steps_next(&s, it[2]), AR_OK);
    assert_int_equal(s->seq, 1);
    ar_run_close(run);
    ar_store_close(store);
    assert_int_equal(ar_steps_next(&s, it[2]), AR_ESTATE);
    ar_steps_close(it[2]);
    ar_steps_close(NULL);
}

/* ---- listings ----------------------------------------------------------- */

static void test_runs_are_filtered_by_every_field(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row rows[] = {
        { "a", "u1", "e1", NULL, AR_COMPLETED, T0 + 0, "" },
        { "a", "u2", "e1", NULL, AR_FAILED, T0 + 1, "" },
        { "b", "u1", "e2", "P", AR_COMPLETED, T0 + 2, "" },
        { "b", NULL, NULL, "P", AR_BUDGET_EXHAUSTED, T0 + 3, "" },
        { "a", "u1", "e2", NULL, AR_COMPLETED, T0 + 4, "" },
        { "c", "u3", "e1", "Q", AR_FAILED, T0 + 5, "" },
        { "a", NULL, NULL, NULL, AR_COMPLETED, T0 + 5, "" },
        { "b", "u1", "e1", NULL, AR_INTERRUPTED, T0 + 6, "" },
        { "a", "u1", "e1", "P", AR_FAILED, T0 + 6, "" },
    };
    size_t n = sizeof rows / sizeof rows[0];
    for (size_t i = 0; i < n; i++)
        put(store, &rows[i]);
    ar_status failed[] = { AR_FAILED };
    ar_status ended_badly[] = { AR_BUDGET_EXHAUSTED, AR_FAILED, AR_INTERRUPTED };
    ar_status running[] = { AR_RUNNING };
    for (int order = 0; order < 2; order++) {
        for (int k = 0; k < 17; k++) {
            ar_run_query q = AR_RUN_QUERY_INIT;
            q.order = order ? AR_ORDER_ASC : AR_ORDER_DESC;
            switch (k) {
            case 0: break;
            case 1: q.agent = "a"; break;
            case 2: q.agent = "b"; break;
            case 3: q.user = "u1"; break;
            case 4: q.edition = "e1"; break;
            case 5: q.parent = "P"; break;
            case 6: q.status = failed; q.n_status = 1; break;
            case 7: q.status = ended_badly; q.n_status = 3; break;
            case 8: q.status = running; q.n_status = 1; break;
            case 9: q.since = T0 + 2; break;
            case 10: q.until = T0 + 5; break;
            case 11: q.since = T0 + 2; q.until = T0 + 6; break;
            case 12: q.since = T0 + 5; q.until = T0 + 5; break;
            case 13: q.agent = "a"; q.user = "u1"; break;
            case 14: q.agent = "a"; q.status = failed; q.n_status = 1; q.since = T0 + 1; break;
            case 15: q.agent = "zzz"; break;
            default: q.user = "u1"; q.edition = "e1"; q.parent = "P"; break;
            }
            char label[64];
            snprintf(label, sizeof label, "query %d, %s", k, order ? "asc" : "desc");
            expect_listing(store, rows, n, &q, label);
        }
    }
    ar_store_close(store);
}

static void test_since_is_inclusive_and_until_exclusive(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row rows[3] = {
        { "a", NULL, NULL, NULL, AR_COMPLETED, T0 + 10, "" },
        { "a", NULL, NULL, NULL, AR_COMPLETED, T0 + 20, "" },
        { "a", NULL, NULL, NULL, AR_COMPLETED, T0 + 30, "" },
    };
    for (size_t i = 0; i < 3; i++)
        put(store, &rows[i]);
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.since = T0 + 20;
    q.until = T0 + 30;
    ar_record **list;
    size_t n;
    list = page(store, &q, &n, NULL);
    assert_int_equal(n, 1);
    assert_string_equal(list[0]->id, rows[1].id);
    ar_records_free(list, n);
    q.since = T0 + 21;
    q.until = T0 + 31;
    list = page(store, &q, &n, NULL);
    assert_int_equal(n, 1);
    assert_string_equal(list[0]->id, rows[2].id);
    ar_records_free(list, n);
    ar_store_close(store);
}

static void test_default_page_is_the_newest_50(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row *rows = many_runs(store, 60);
    ar_run_query q = AR_RUN_QUERY_INIT;
    assert_int_equal(q.limit, 50);
    assert_int_equal(q.order, AR_ORDER_DESC);
    size_t n;
    char *next = NULL;
    ar_record **list = page(store, &q, &n, &next);
    assert_int_equal(n, 50);
    for (size_t i = 0; i < 50; i++)
        assert_string_equal(list[i]->id, rows[59 - i].id);
    assert_non_null(next);
    ar_records_free(list, n);
    q.after = next;
    char *last = (char *)"x";
    list = page(store, &q, &n, &last);
    assert_int_equal(n, 10);
    assert_string_equal(list[0]->id, rows[9].id);
    assert_string_equal(list[9]->id, rows[0].id);
    assert_null(last);
    ar_records_free(list, n);
    ar_free(next);

    q = (ar_run_query)AR_RUN_QUERY_INIT;
    q.order = AR_ORDER_ASC;
    list = page(store, &q, &n, NULL);
    assert_int_equal(n, 50);
    for (size_t i = 0; i < 50; i++)
        assert_string_equal(list[i]->id, rows[i].id);
    ar_records_free(list, n);
    free(rows);
    ar_store_close(store);
}

static void test_a_zero_limit_gives_an_empty_page(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row *rows = many_runs(store, 3);
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.limit = 0;
    size_t n = 9;
    char *next = (char *)"x";
    ar_record **list = page(store, &q, &n, &next);
    assert_int_equal(n, 0);
    assert_null(next);
    ar_records_free(list, n);
    q.limit = -1;
    assert_int_equal(ar_runs_list(&list, &n, &next, store, &q), AR_EMISUSE);
    assert_null(list);
    free(rows);
    ar_store_close(store);
}

/* An empty page has nothing to continue from: a cursor there would hand a
 * paging loop the same page forever. */
static void test_a_zero_limit_gives_no_cursor_after_or_before_a_cursor_in_either_order(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row *rows = many_runs(store, 6);
    for (int order = 0; order < 2; order++) {
        ar_run_query q = AR_RUN_QUERY_INIT;
        q.order = order ? AR_ORDER_ASC : AR_ORDER_DESC;
        q.limit = 2;
        size_t n;
        char *c = NULL;
        ar_record **list = page(store, &q, &n, &c);
        ar_records_free(list, n);
        assert_non_null(c);
        q.limit = 0;
        for (int side = 0; side < 3; side++) {
            q.after = side == 1 ? c : NULL;
            q.before = side == 2 ? c : NULL;
            char *next = (char *)"x";
            list = page(store, &q, &n, &next);
            assert_int_equal(n, 0);
            if (next)
                fail_msg("order %d side %d: cursor %s for an empty page", order, side, next);
            ar_records_free(list, n);
        }
        /* a malformed cursor is still refused */
        q.after = "r1:nonsense";
        q.before = NULL;
        assert_int_equal(ar_runs_list(&list, &n, NULL, store, &q), AR_EMISUSE);
        ar_free(c);
    }
    free(rows);
    ar_store_close(store);
}

/* The largest limit means "all": it must not overflow asking for one more. */
static void test_the_largest_limit_lists_every_run_without_overflow(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row *rows = many_runs(store, 4);
    for (int order = 0; order < 2; order++) {
        ar_run_query q = AR_RUN_QUERY_INIT;
        q.order = order ? AR_ORDER_ASC : AR_ORDER_DESC;
        q.limit = INT64_MAX;
        size_t n;
        char *next = (char *)"x";
        ar_record **list = page(store, &q, &n, &next);
        assert_int_equal(n, 4);
        assert_null(next);
        ar_records_free(list, n);
    }
    free(rows);
    ar_store_close(store);
}

/* Pages through q with `limit` and checks every row comes once, in order. */
static void expect_paging(ar_store *store, const row *rows, size_t nrows, int order, int64_t limit, size_t pages)
{
    const row *want[256];
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.order = order;
    q.limit = limit;
    size_t k = expected(rows, nrows, &q, want);
    size_t seen = 0, npages = 0;
    char *cursor = NULL;
    do {
        char *next = NULL;
        size_t n;
        q.after = cursor;
        ar_record **list = page(store, &q, &n, &next);
        npages++;
        assert_true(n <= (size_t)limit);
        if (next)
            assert_int_equal(n, (size_t)limit);
        for (size_t i = 0; i < n; i++) {
            assert_true(seen < k);
            if (strcmp(list[i]->id, want[seen]->id) != 0)
                fail_msg("page %zu item %zu: %s, want %s", npages, i, list[i]->id, want[seen]->id);
            seen++;
        }
        ar_records_free(list, n);
        ar_free(cursor);
        cursor = next;
    } while (cursor);
    assert_int_equal(seen, k);
    assert_int_equal(npages, pages);
}

static void test_paging_120_runs_by_7_visits_each_once_in_order(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row *rows = many_runs(store, 120);
    expect_paging(store, rows, 120, AR_ORDER_DESC, 7, 18);
    expect_paging(store, rows, 120, AR_ORDER_ASC, 7, 18);
    /* an exact multiple ends on a full page with no cursor */
    expect_paging(store, rows, 120, AR_ORDER_DESC, 8, 15);
    expect_paging(store, rows, 120, AR_ORDER_ASC, 120, 1);
    expect_paging(store, rows, 120, AR_ORDER_ASC, 1, 120);
    free(rows);
    ar_store_close(store);
}

static void test_paging_keeps_the_filter(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row *rows = many_runs(store, 40);
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.agent = "b";
    q.limit = 3;
    char *cursor = NULL;
    size_t seen = 0;
    do {
        char *next = NULL;
        size_t n;
        q.after = cursor;
        ar_record **list = page(store, &q, &n, &next);
        for (size_t i = 0; i < n; i++) {
            /* rows of agent b are the odd ones, newest first */
            assert_string_equal(list[i]->id, rows[39 - 2 * seen].id);
            seen++;
        }
        ar_records_free(list, n);
        ar_free(cursor);
        cursor = next;
    } while (cursor);
    assert_int_equal(seen, 20);
    free(rows);
    ar_store_close(store);
}

/* The cursor after the first `n` items of q (from a page of n). */
static char *cursor_after(ar_store *store, const ar_run_query *base, int64_t n)
{
    ar_run_query q = *base;
    q.limit = n;
    size_t got;
    char *next = NULL;
    ar_record **list = page(store, &q, &got, &next);
    assert_int_equal(got, (size_t)n);
    assert_non_null(next);
    ar_records_free(list, got);
    return next;
}

static void test_before_gives_the_items_preceding_the_cursor_in_query_order(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row *rows = many_runs(store, 20);
    for (int order = 0; order < 2; order++) {
        ar_run_query q = AR_RUN_QUERY_INIT;
        q.order = order ? AR_ORDER_ASC : AR_ORDER_DESC;
        const row *want[20];
        expected(rows, 20, &q, want);
        char *c = cursor_after(store, &q, 10); /* the position after item 9 */
        q.before = c;
        q.limit = 3;
        size_t n;
        char *next = NULL;
        ar_record **list = page(store, &q, &n, &next);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < 3; i++)
            assert_string_equal(list[i]->id, want[7 + i]->id);
        assert_non_null(next);
        assert_string_equal(next, c); /* it ends where the cursor stands */
        ar_records_free(list, n);

        /* its next cursor continues from there: item 10 onwards */
        q.before = NULL;
        q.after = next;
        q.limit = 4;
        list = page(store, &q, &n, NULL);
        assert_int_equal(n, 4);
        for (size_t i = 0; i < 4; i++)
            assert_string_equal(list[i]->id, want[10 + i]->id);
        ar_records_free(list, n);
        ar_free(next);

        /* a large limit stops at the first item */
        q.after = NULL;
        q.before = c;
        q.limit = 50;
        list = page(store, &q, &n, NULL);
        assert_int_equal(n, 10);
        for (size_t i = 0; i < 10; i++)
            assert_string_equal(list[i]->id, want[i]->id);
        ar_records_free(list, n);
        ar_free(c);

        /* before the position after the last item: the last items, and no next page */
        ar_run_query all = AR_RUN_QUERY_INIT;
        all.order = q.order;
        c = cursor_after(store, &all, 19);
        all.after = c;
        list = page(store, &all, &n, NULL);
        assert_int_equal(n, 1); /* item 19 follows it */
        ar_records_free(list, n);
        all.after = NULL;
        char *end = NULL;
        list = page(store, &all, &n, NULL);
        ar_records_free(list, n);
        all.limit = 20;
        list = page(store, &all, &n, &end);
        assert_int_equal(n, 20);
        assert_null(end);
        ar_records_free(list, n);
        ar_free(c);
    }
    free(rows);
    ar_store_close(store);
}

static void test_pages_never_repeat_or_skip_while_runs_are_added(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        ar_store *store = test_store_new();
        row *rows = many_runs(store, 30);
        ar_run_query q = AR_RUN_QUERY_INIT;
        q.order = order ? AR_ORDER_ASC : AR_ORDER_DESC;
        q.limit = 4;
        char seen_ids[200][27];
        int64_t seen_at[200];
        size_t seen = 0;
        char *cursor = NULL;
        ar_run *live[20];
        size_t nlive = 0;
        do {
            char *next = NULL;
            size_t n;
            q.after = cursor;
            ar_record **list = page(store, &q, &n, &next);
            for (size_t i = 0; i < n; i++) {
                assert_true(seen < 200);
                memcpy(seen_ids[seen], list[i]->id, 27);
                seen_at[seen++] = list[i]->created_at;
            }
            ar_records_free(list, n);
            ar_free(cursor);
            cursor = next;
            /* between pages: a new run now, and one written among the old ones */
            ar_run_spec spec = AR_RUN_SPEC_INIT;
            spec.agent = "new";
            spec.goal = "g";
            assert_true(nlive < 20);
            assert_int_equal(ar_run_begin(&live[nlive++], store, &spec), AR_OK);
            row middle = { "mid", NULL, NULL, NULL, AR_COMPLETED, T0 + 3, "" };
            put(store, &middle);
        } while (cursor);
        /* strictly in order, hence no repeats */
        for (size_t i = 1; i < seen; i++) {
            int c = key_cmp(seen_at[i - 1], seen_ids[i - 1], seen_at[i], seen_ids[i]);
            if (order ? c >= 0 : c <= 0)
                fail_msg("items %zu and %zu out of order", i - 1, i);
        }
        /* and every run there before the listing began, exactly once */
        for (size_t r = 0; r < 30; r++) {
            size_t hits = 0;
            for (size_t i = 0; i < seen; i++)
                hits += strcmp(seen_ids[i], rows[r].id) == 0;
            assert_int_equal(hits, 1);
        }
        for (size_t i = 0; i < nlive; i++)
            ar_run_close(live[i]);
        free(rows);
        ar_store_close(store);
    }
}

static void test_malformed_cursors_are_misuse(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row *rows = many_runs(store, 3);
    const char *bad[] = {
        "", "garbage", "r1:", "r1:123", "r1:123:", "r1:abc:01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "r2:123:01ARZ3NDEKTSV4RRFFQ69G5FAV", "r1:123:01ARZ3NDEKTSV4RRFFQ69G5FAVX",
        "r1:123:01ARZ3NDEKTSV4RRFFQ69G5FA", "r1:123:01arz3ndektsv4rrffq69g5fav",
        "r1:123:01ARZ3NDEKTSV4RRFFQ69G5FAU", "r1:123:81ARZ3NDEKTSV4RRFFQ69G5FAV",
        "r1: 123:01ARZ3NDEKTSV4RRFFQ69G5FAV", "r1:+123:01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "r1:12x:01ARZ3NDEKTSV4RRFFQ69G5FAV",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int side = 0; side < 2; side++) {
            ar_run_query q = AR_RUN_QUERY_INIT;
            if (side)
                q.before = bad[i];
            else
                q.after = bad[i];
            ar_record **list = (ar_record **)store;
            size_t n = 7;
            char *next = (char *)"x";
            int rc = ar_runs_list(&list, &n, &next, store, &q);
            if (rc != AR_EMISUSE)
                fail_msg("%s \"%s\": got %s", side ? "before" : "after", bad[i], ar_code_name(rc));
            assert_null(list);
            assert_int_equal(n, 0);
            assert_null(next);
            assert_non_null(strstr(ar_store_errmsg(store), "cursor"));
        }
    }
    /* a well-formed cursor for a run that is not there is still a position */
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.after = "r1:0:01ARZ3NDEKTSV4RRFFQ69G5FAV";
    size_t n;
    ar_record **list = page(store, &q, &n, NULL);
    assert_int_equal(n, 0);
    ar_records_free(list, n);
    q.order = AR_ORDER_ASC;
    list = page(store, &q, &n, NULL);
    assert_int_equal(n, 3);
    ar_records_free(list, n);
    free(rows);
    ar_store_close(store);
}

static void test_before_next_cursor_gives_back_the_page_it_came_from(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row *rows = many_runs(store, 30);
    for (int order = 0; order < 2; order++) {
        ar_run_query q = AR_RUN_QUERY_INIT;
        q.order = order ? AR_ORDER_ASC : AR_ORDER_DESC;
        q.limit = 7;
        size_t n1, n2, n3;
        char *c1 = NULL, *c2 = NULL, *c3 = NULL;
        ar_record **p1 = page(store, &q, &n1, &c1);
        q.after = c1;
        ar_record **p2 = page(store, &q, &n2, &c2);
        assert_int_equal(n2, 7);
        /* back from page 2 to page 1 with the cursor that led to page 2 */
        q.after = NULL;
        q.before = c1;
        ar_record **back = page(store, &q, &n3, &c3);
        assert_int_equal(n3, n1);
        for (size_t i = 0; i < n1; i++)
            assert_string_equal(back[i]->id, p1[i]->id);
        assert_string_equal(c3, c1);
        ar_records_free(p1, n1);
        ar_records_free(p2, n2);
        ar_records_free(back, n3);
        ar_free(c1);
        ar_free(c2);
        ar_free(c3);
    }
    free(rows);
    ar_store_close(store);
}

static void test_after_and_before_together_are_misuse(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row *rows = many_runs(store, 5);
    ar_run_query q = AR_RUN_QUERY_INIT;
    char *c = cursor_after(store, &q, 2);
    q.after = c;
    q.before = c;
    ar_record **list = NULL;
    size_t n;
    assert_int_equal(ar_runs_list(&list, &n, NULL, store, &q), AR_EMISUSE);
    assert_null(list);
    q.after = NULL;
    q.before = NULL;
    q.order = 2;
    assert_int_equal(ar_runs_list(&list, &n, NULL, store, &q), AR_EMISUSE);
    q.order = AR_ORDER_DESC;
    ar_status bogus[] = { (ar_status)7 };
    q.status = bogus;
    q.n_status = 1;
    assert_int_equal(ar_runs_list(&list, &n, NULL, store, &q), AR_EMISUSE);
    q.status = NULL;
    assert_int_equal(ar_runs_list(&list, &n, NULL, store, &q), AR_EMISUSE);
    q.n_status = 0;
    assert_int_equal(ar_runs_list(NULL, &n, NULL, store, &q), AR_EMISUSE);
    assert_int_equal(ar_runs_list(&list, &n, NULL, store, NULL), AR_EMISUSE);
    ar_free(c);
    free(rows);
    ar_store_close(store);
}

static void test_ids_sort_in_creation_order_within_a_millisecond(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    enum { N = 300 };
    char ids[N][27];
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "fast";
    spec.goal = "g";
    for (size_t i = 0; i < N; i++) {
        ar_run *run = NULL;
        assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
        memcpy(ids[i], ar_run_id(run), 27);
        ar_run_close(run);
        if (i > 0 && strcmp(ids[i - 1], ids[i]) >= 0)
            fail_msg("id %zu (%s) does not sort after %s", i, ids[i], ids[i - 1]);
    }
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.order = AR_ORDER_ASC;
    q.limit = N;
    size_t n;
    ar_record **list = page(store, &q, &n, NULL);
    assert_int_equal(n, N);
    for (size_t i = 0; i < N; i++)
        assert_string_equal(list[i]->id, ids[i]);
    ar_records_free(list, n);
    ar_store_close(store);
}

static void test_ids_sort_in_creation_order_across_stores_of_one_process(void **state)
{
    (void)state;
    /* SPEC 6: "also for runs begun in the same millisecond by one process" */
    ar_store *stores[2] = { test_store_new(), test_store_new() };
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "fast";
    spec.goal = "g";
    char prev[27] = "";
    size_t out_of_order = 0;
    for (size_t i = 0; i < 200; i++) {
        ar_run *run = NULL;
        assert_int_equal(ar_run_begin(&run, stores[i % 2], &spec), AR_OK);
        out_of_order += strcmp(prev, ar_run_id(run)) >= 0;
        memcpy(prev, ar_run_id(run), 27);
        ar_run_close(run);
    }
    ar_store_close(stores[0]);
    ar_store_close(stores[1]);
    assert_int_equal(out_of_order, 0);
}

/* ---- count, stats, forget_user ------------------------------------------ */

static void test_count_ignores_limit_and_cursors(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row *rows = many_runs(store, 12);
    ar_run_query q = AR_RUN_QUERY_INIT;
    char *c = cursor_after(store, &q, 5);
    q.limit = 1;
    q.after = c;
    int64_t n = -1;
    assert_int_equal(ar_runs_count(&n, store, &q), AR_OK);
    assert_int_equal(n, 12);
    q.agent = "a";
    assert_int_equal(ar_runs_count(&n, store, &q), AR_OK);
    assert_int_equal(n, 6);
    assert_int_equal(ar_runs_count(NULL, store, &q), AR_EMISUSE);
    ar_free(c);
    free(rows);
    ar_store_close(store);
}

/* Writes a finished run with the given times and `iterations` steps, the
 * first of which carries the usage. */
static void put_timed(ar_store *store, ar_status status, int64_t created, int64_t finished,
                      int64_t iterations, int64_t in, int64_t out, double cost)
{
    ar_step steps[8];
    assert_true(iterations >= 1 && iterations <= 8);
    for (int64_t i = 0; i < iterations; i++) {
        ar_step init = AR_STEP_INIT;
        steps[i] = init;
        steps[i].kind = "k";
    }
    steps[0].usage = (ar_usage){ in, out, 0, cost, 0, NULL };
    ar_record rec = AR_RECORD_INIT;
    rec.agent = "stats";
    rec.goal = "g";
    rec.status = status;
    rec.created_at = created;
    rec.finished_at = finished;
    rec.steps = steps;
    rec.n_steps = (size_t)iterations;
    rec.iterations = iterations;
    rec.usage = (ar_usage){ in, out, 0, cost, 0, NULL };
    if (status == AR_BUDGET_EXHAUSTED)
        rec.limit = (ar_exhaustion){ "max_cost", 1, 1 };
    char *id = NULL;
    assert_int_equal(ar_store_write(&id, store, &rec), AR_OK);
    ar_free(id);
}

static void test_stats_sum_usage_and_average_latency_over_finished_runs(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    put_timed(store, AR_COMPLETED, T0, T0 + 100, 2, 10, 5, 0.1);
    put_timed(store, AR_FAILED, T0 + 1000, T0 + 1200, 1, 1, 1, 0.2);
    put_timed(store, AR_BUDGET_EXHAUSTED, T0 + 2000, T0 + 2250, 4, 100, 50, 0.05);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "stats";
    spec.goal = "g";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.usage = (ar_usage){ 7, 3, 0, 0.01, 0, NULL };
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);

    ar_run_query q = AR_RUN_QUERY_INIT;
    ar_stats s;
    assert_int_equal(ar_runs_stats(&s, store, &q), AR_OK);
    assert_int_equal(s.runs, 4);
    assert_int_equal(s.by_status[AR_RUNNING], 1);
    assert_int_equal(s.by_status[AR_COMPLETED], 1);
    assert_int_equal(s.by_status[AR_BUDGET_EXHAUSTED], 1);
    assert_int_equal(s.by_status[AR_FAILED], 1);
    assert_int_equal(s.by_status[AR_INTERRUPTED], 0);
    assert_int_equal(s.iterations, 8);
    assert_int_equal(s.input_tokens, 118);
    assert_int_equal(s.output_tokens, 59);
    assert_int_equal(s.total_tokens, 177);
    assert_exact(s.cost, 0.36);
    assert_exact(s.avg_latency_ms, 550.0 / 3.0);

    ar_status bad[] = { AR_FAILED, AR_BUDGET_EXHAUSTED };
    q.status = bad;
    q.n_status = 2;
    assert_int_equal(ar_runs_stats(&s, store, &q), AR_OK);
    assert_int_equal(s.runs, 2);
    assert_int_equal(s.by_status[AR_COMPLETED], 0);
    assert_int_equal(s.by_status[AR_FAILED], 1);
    assert_exact(s.cost, 0.25);
    assert_exact(s.avg_latency_ms, 225.0);

    q = (ar_run_query)AR_RUN_QUERY_INIT;
    q.since = T0 + 1000;
    q.until = T0 + 2000;
    assert_int_equal(ar_runs_stats(&s, store, &q), AR_OK);
    assert_int_equal(s.runs, 1);
    assert_exact(s.avg_latency_ms, 200.0);

    /* the running run has no latency yet */
    ar_status only_running[] = { AR_RUNNING };
    q = (ar_run_query)AR_RUN_QUERY_INIT;
    q.status = only_running;
    q.n_status = 1;
    assert_int_equal(ar_runs_stats(&s, store, &q), AR_OK);
    assert_int_equal(s.runs, 1);
    assert_int_equal(s.total_tokens, 10);
    assert_exact(s.avg_latency_ms, 0.0);

    q = (ar_run_query)AR_RUN_QUERY_INIT;
    q.agent = "nobody";
    memset(&s, 0x5a, sizeof s);
    assert_int_equal(ar_runs_stats(&s, store, &q), AR_OK);
    assert_int_equal(s.runs, 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(s.by_status[i], 0);
    assert_int_equal(s.iterations, 0);
    assert_int_equal(s.total_tokens, 0);
    assert_exact(s.cost, 0.0);
    assert_exact(s.avg_latency_ms, 0.0);
    assert_int_equal(ar_runs_stats(NULL, store, &q), AR_EMISUSE);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_stats_count_interrupted_runs(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "x";
    spec.goal = "g";
    ar_run *a = NULL, *b = NULL;
    assert_int_equal(ar_run_begin(&a, store, &spec), AR_OK);
    assert_int_equal(ar_run_begin(&b, store, &spec), AR_OK);
    int64_t swept = 0;
    assert_int_equal(ar_store_recover(&swept, store, 0), AR_OK);
    assert_int_equal(swept, 2);
    ar_run_query q = AR_RUN_QUERY_INIT;
    ar_stats s;
    assert_int_equal(ar_runs_stats(&s, store, &q), AR_OK);
    assert_int_equal(s.runs, 2);
    assert_int_equal(s.by_status[AR_INTERRUPTED], 2);
    assert_int_equal(s.by_status[AR_RUNNING], 0);
    ar_run_close(a);
    ar_run_close(b);
    ar_store_close(store);
}

static void test_forget_user_clears_the_user_and_keeps_the_runs(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    row rows[] = {
        { "a", "alice", NULL, NULL, AR_COMPLETED, T0 + 1, "" },
        { "b", "alice", NULL, NULL, AR_FAILED, T0 + 2, "" },
        { "a", "bob", NULL, NULL, AR_COMPLETED, T0 + 3, "" },
    };
    for (size_t i = 0; i < 3; i++)
        put(store, &rows[i]);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "g";
    spec.user = "alice";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);

    int64_t n = -1;
    assert_int_equal(ar_store_forget_user(&n, store, "alice"), AR_OK);
    assert_int_equal(n, 3);
    ar_run_query q = AR_RUN_QUERY_INIT;
    int64_t count = -1;
    assert_int_equal(ar_runs_count(&count, store, &q), AR_OK);
    assert_int_equal(count, 4);
    q.user = "alice";
    assert_int_equal(ar_runs_count(&count, store, &q), AR_OK);
    assert_int_equal(count, 0);
    q.user = "bob";
    assert_int_equal(ar_runs_count(&count, store, &q), AR_OK);
    assert_int_equal(count, 1);
    for (size_t i = 0; i < 2; i++) {
        ar_record *rec = test_get(store, rows[i].id, 0);
        assert_null(rec->user);
        assert_string_equal(rec->goal, "g");
        assert_int_equal(rec->created_at, rows[i].created_at);
        assert_true(rec->updated_at > rec->finished_at);
        ar_record_free(rec);
    }
    ar_record *rec = test_get(store, ar_run_id(run), 0);
    assert_null(rec->user);
    ar_record_free(rec);
    /* the run goes on */
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    assert_int_equal(ar_run_step(NULL, run, &step), AR_OK);

    assert_int_equal(ar_store_forget_user(&n, store, "alice"), AR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ar_store_forget_user(NULL, store, "bob"), AR_OK);
    assert_int_equal(ar_store_forget_user(&n, store, ""), AR_EMISUSE);
    assert_int_equal(ar_store_forget_user(&n, store, NULL), AR_EMISUSE);
    assert_int_equal(ar_store_forget_user(&n, store, "\xFF"), AR_EMISUSE);
    ar_run_close(run);
    ar_store_close(store);
}

/* Out-parameters read 0 on failure: a caller that ignores the code sees no
 * stale totals, and a NULL out is refused rather than written through. */
static void test_failed_stats_leave_zeroes_and_status_parse_refuses_a_null_out(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_stats s;
    memset(&s, 0x5a, sizeof s);
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.limit = -1;
    ar_status bad[] = { (ar_status)99 };
    q.status = bad;
    q.n_status = 1;
    assert_int_equal(ar_runs_stats(&s, store, &q), AR_EMISUSE);
    assert_int_equal(s.runs, 0);
    assert_int_equal(s.total_tokens, 0);
    assert_true(s.cost == 0.0 && s.avg_latency_ms == 0.0);
    assert_int_equal(ar_status_parse(NULL, "completed"), AR_EMISUSE);
    ar_status st = AR_RUNNING;
    assert_int_equal(ar_status_parse(&st, "completed"), AR_OK);
    assert_int_equal(st, AR_COMPLETED);
    ar_store_close(store);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_get_of_an_unknown_id_is_null_and_enotfound),
    cmocka_unit_test(test_get_with_and_without_steps),
    cmocka_unit_test(test_get_reads_a_transcript_longer_than_its_first_fetch),
    cmocka_unit_test(test_steps_from_is_inclusive_and_limit_caps_the_count),
    cmocka_unit_test(test_steps_stream_3000_in_order_across_batches),
    cmocka_unit_test(test_steps_of_an_empty_or_unknown_run),
    cmocka_unit_test(test_a_stream_sees_steps_added_after_it_opened),
    cmocka_unit_test(test_an_iterator_outliving_its_store_fails_with_estate_and_still_closes),
    cmocka_unit_test(test_closing_iterators_in_any_order_keeps_the_store_closable),
    cmocka_unit_test(test_runs_are_filtered_by_every_field),
    cmocka_unit_test(test_since_is_inclusive_and_until_exclusive),
    cmocka_unit_test(test_default_page_is_the_newest_50),
    cmocka_unit_test(test_a_zero_limit_gives_an_empty_page),
    cmocka_unit_test(test_a_zero_limit_gives_no_cursor_after_or_before_a_cursor_in_either_order),
    cmocka_unit_test(test_the_largest_limit_lists_every_run_without_overflow),
    cmocka_unit_test(test_paging_120_runs_by_7_visits_each_once_in_order),
    cmocka_unit_test(test_paging_keeps_the_filter),
    cmocka_unit_test(test_before_gives_the_items_preceding_the_cursor_in_query_order),
    cmocka_unit_test(test_pages_never_repeat_or_skip_while_runs_are_added),
    cmocka_unit_test(test_malformed_cursors_are_misuse),
    cmocka_unit_test(test_before_next_cursor_gives_back_the_page_it_came_from),
    cmocka_unit_test(test_after_and_before_together_are_misuse),
    cmocka_unit_test(test_ids_sort_in_creation_order_within_a_millisecond),
    cmocka_unit_test(test_ids_sort_in_creation_order_across_stores_of_one_process),
    cmocka_unit_test(test_count_ignores_limit_and_cursors),
    cmocka_unit_test(test_stats_sum_usage_and_average_latency_over_finished_runs),
    cmocka_unit_test(test_stats_count_interrupted_runs),
    cmocka_unit_test(test_forget_user_clears_the_user_and_keeps_the_runs),
    cmocka_unit_test(test_failed_stats_leave_zeroes_and_status_parse_refuses_a_null_out),
};

/* Tests about SQLite files and SQLite itself (groups.def: SQLite only). */
static const struct CMUnitTest file_tests[] = {
    cmocka_unit_test(test_get_returns_every_kept_step_whatever_iterations_claims),
};

TEST_GROUP(read_group, "read", tests);
TEST_GROUP(read_file_group, "read_file", file_tests);
