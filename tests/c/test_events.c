/* test_events.c -- conversation events: append, filters, keyset cursors, summary, deletion, retention, query plans. */
#include "suite.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sqlite/testing.h"

#define END_ASC "e1:9223372036854775807"   /* the position after every event */

static ar_store *open_store(void)
{
    return test_store_open(NULL);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends an event and fails the test (with the store's message) unless it works. */
static int64_t append_ok(ar_store *store, const char *agent, int64_t session, const char *type, int64_t at)
{
    ar_event e = AR_EVENT_INIT;
    e.agent = agent;
    e.session = session;
    e.type = type;
    e.at = at;
    int64_t id = 0;
    int rc = ar_event_append(&id, store, &e);
    if (rc != AR_OK) {
        print_error("append: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    return id;
}

static ar_event_list *list_ok(ar_store *store, const ar_event_query *q, char **next)
{
    ar_event_list *list = NULL;
    int rc = ar_events_list(&list, next, store, q);
    if (rc != AR_OK) {
        print_error("list: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    assert_non_null(list);
    return list;
}

static int64_t count_ok(ar_store *store, const ar_event_query *q)
{
    int64_t n = -1;
    int rc = ar_events_count(&n, store, q);
    if (rc != AR_OK) {
        print_error("count: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    return n;
}

static int64_t count_agent(ar_store *store, const char *agent)
{
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = agent;
    return count_ok(store, &q);
}

/* Checks that a listing holds exactly the ids want[0..n), in that order. */
static void expect_ids(const ar_event_list *list, const int64_t *want, size_t n)
{
    assert_int_equal(list->n, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(list->items[i].id, want[i]);
}

#define EXPECT_IDS(list, ...) do { const int64_t want_[] = { __VA_ARGS__ }; \
    expect_ids((list), want_, sizeof want_ / sizeof want_[0]); } while (0)

static ar_event_list *list_query(ar_store *store, const ar_event_query *q)
{
    return list_ok(store, q, NULL);
}

/* ---- append and read back --------------------------------------------------- */

static void test_append_returns_increasing_ids_and_list_reads_back_every_field(void **state)
{
    (void)state;
    ar_store *store = open_store();
    ar_event e = AR_EVENT_INIT;
    e.agent = "planner";
    e.session = 7;
    e.type = "tool_use";
    e.content = "call grep \xc3\xa9";
    e.metadata = "{\"tool\":\"grep\",\"n\":[1,2]}";
    e.run = "01HZZZZZZZZZZZZZZZZZZZZZZZ";
    e.at = 1700000000123;
    int64_t id1 = 0, id2 = 0;
    assert_int_equal(ar_event_append(&id1, store, &e), AR_OK);
    ar_event bare = AR_EVENT_INIT;
    bare.agent = "planner";
    bare.type = "output";
    bare.at = 5;
    assert_int_equal(ar_event_append(&id2, store, &bare), AR_OK);
    assert_int_equal(id1, 1);
    assert_int_equal(id2, 2);

    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "planner";
    char *next = (char *)"untouched";
    ar_event_list *list = list_ok(store, &q, &next);
    assert_null(next);
    ar_store_close(store); /* the listing owns its strings */
    assert_int_equal(list->n, 2);
    const ar_event *a = &list->items[0], *b = &list->items[1];
    assert_int_equal(a->id, 1);
    assert_string_equal(a->agent, "planner");
    assert_int_equal(a->session, 7);
    assert_string_equal(a->type, "tool_use");
    assert_string_equal(a->content, "call grep \xc3\xa9");
    assert_string_equal(a->metadata, "{\"tool\":\"grep\",\"n\":[1,2]}");
    assert_string_equal(a->run, "01HZZZZZZZZZZZZZZZZZZZZZZZ");
    assert_int_equal(a->at, 1700000000123);
    assert_int_equal(b->id, 2);
    assert_int_equal(b->session, 0);
    assert_string_equal(b->type, "output");
    assert_null(b->content);
    assert_null(b->metadata);
    assert_null(b->run);
    assert_int_equal(b->at, 5);
    ar_event_list_free(list);
    ar_event_list_free(NULL);
}

/* Content is text like step content: kept byte for byte, NUL bytes too
 * (SPEC: stored exactly or refused, the same everywhere). */
static void test_content_with_nul_bytes_is_stored_and_listed_exactly(void **state)
{
    (void)state;
    ar_store *store = open_store();
    static const char bytes[] = "a\0b\0\0\xc3\xa9\0";
    ar_event e = AR_EVENT_INIT;
    e.agent = "a";
    e.type = "output";
    e.content = bytes;
    e.content_len = sizeof bytes - 1;
    assert_int_equal(ar_event_append(NULL, store, &e), AR_OK);
    e.content = "\0";
    e.content_len = 1;
    assert_int_equal(ar_event_append(NULL, store, &e), AR_OK);
    /* invalid UTF-8 after a NUL is still seen */
    e.content = "ok\0\xff";
    e.content_len = 4;
    assert_int_equal(ar_event_append(NULL, store, &e), AR_EMISUSE);
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    ar_event_list *list = list_ok(store, &q, NULL);
    assert_int_equal(list->n, 2);
    assert_int_equal(list->items[0].content_len, sizeof bytes - 1);
    assert_memory_equal(list->items[0].content, bytes, sizeof bytes);   /* and NUL-terminated */
    assert_int_equal(list->items[1].content_len, 1);
    assert_memory_equal(list->items[1].content, "\0", 2);
    ar_event_list_free(list);
    ar_store_close(store);
}

/* An event filled without AR_EVENT_INIT (content_len 0) keeps working: its
 * content is a C string, never cut to nothing. */
static void test_content_len_zero_or_nul_terminated_means_a_c_string(void **state)
{
    (void)state;
    ar_store *store = open_store();
    ar_event e = { .agent = "a", .type = "output", .content = "hello", .at = 5 };
    assert_int_equal(ar_event_append(NULL, store, &e), AR_OK);
    e.content_len = AR_NUL_TERMINATED;
    e.content = "";
    assert_int_equal(ar_event_append(NULL, store, &e), AR_OK);
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    ar_event_list *list = list_ok(store, &q, NULL);
    assert_int_equal(list->n, 2);
    assert_string_equal(list->items[0].content, "hello");
    assert_int_equal(list->items[0].content_len, 5);
    assert_string_equal(list->items[1].content, "");
    assert_int_equal(list->items[1].content_len, 0);
    ar_event_list_free(list);
    ar_store_close(store);
}

static void test_append_without_at_stamps_the_current_time(void **state)
{
    (void)state;
    ar_store *store = open_store();
    int64_t before = wall_ms();
    append_ok(store, "a", 0, "log", AR_UNSET);
    int64_t after = wall_ms();
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    ar_event_list *list = list_query(store, &q);
    assert_int_equal(list->n, 1);
    assert_true(list->items[0].at >= before && list->items[0].at <= after);
    ar_event_list_free(list);
    ar_store_close(store);
}

static void test_ids_are_never_reused_after_deletion(void **state)
{
    (void)state;
    ar_store *store = open_store();
    for (int i = 0; i < 3; i++)
        append_ok(store, "a", 0, "log", 1);
    int64_t deleted = 0;
    assert_int_equal(ar_events_delete(&deleted, store, "a"), AR_OK);
    assert_int_equal(deleted, 3);
    assert_int_equal(append_ok(store, "a", 0, "log", 1), 4);
    ar_store_close(store);
}

/* ---- filters ------------------------------------------------------------------ */

static const char *const fixture_types[] = { "prompt_sent", "output", "tool_use", "log" };

/* Agent "a": 12 events, id i+1 has session i % 3, type fixture_types[i % 4],
 * at 100 * (i + 1). Agent "b": 3 events that no query of "a" may see. */
static ar_store *fixture(void)
{
    ar_store *store = open_store();
    for (int i = 0; i < 12; i++) {
        append_ok(store, "a", i % 3, fixture_types[i % 4], 100 * (i + 1));
        if (i % 4 == 0)
            append_ok(store, "b", i % 3, fixture_types[i % 4], 100 * (i + 1));
    }
    return store;
}

/* ids of agent "a" in the fixture: event i of "a" (0-based) has this id */
static const int64_t a_id[12] = { 1, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15 };

static void test_list_filters_by_session(void **state)
{
    (void)state;
    ar_store *store = fixture();
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    q.session = 1;
    ar_event_list *list = list_query(store, &q);
    EXPECT_IDS(list, a_id[1], a_id[4], a_id[7], a_id[10]);
    ar_event_list_free(list);
    q.session = 5;
    list = list_query(store, &q);
    assert_int_equal(list->n, 0);
    assert_null(list->items);
    ar_event_list_free(list);
    ar_store_close(store);
}

static void test_list_filters_by_one_type_and_by_a_list_of_types(void **state)
{
    (void)state;
    ar_store *store = fixture();
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    const char *one[] = { "output" };
    q.types = one;
    q.n_types = 1;
    ar_event_list *list = list_query(store, &q);
    EXPECT_IDS(list, a_id[1], a_id[5], a_id[9]);
    for (size_t i = 0; i < list->n; i++)
        assert_string_equal(list->items[i].type, "output");
    ar_event_list_free(list);

    const char *two[] = { "log", "prompt_sent", "never_used" };
    q.types = two;
    q.n_types = 3;
    list = list_query(store, &q);
    EXPECT_IDS(list, a_id[0], a_id[3], a_id[4], a_id[7], a_id[8], a_id[11]);
    ar_event_list_free(list);

    q.session = 0;      /* combined: session 0 and type log or prompt_sent */
    list = list_query(store, &q);
    EXPECT_IDS(list, a_id[0], a_id[3]);
    ar_event_list_free(list);

    /* a list of AR_EVENT_QUERY_MAX_TYPES types, the limit the Lua API keeps too
     * (the SQL text grows well past its first buffer) */
    static char names[AR_EVENT_QUERY_MAX_TYPES][16];
    const char *many[AR_EVENT_QUERY_MAX_TYPES];
    assert_int_equal(AR_EVENT_QUERY_MAX_TYPES, 1000);
    for (int i = 0; i < AR_EVENT_QUERY_MAX_TYPES; i++) {
        snprintf(names[i], sizeof names[i], "t%d", i);
        many[i] = names[i];
    }
    many[AR_EVENT_QUERY_MAX_TYPES - 1] = "output";
    q.session = AR_UNSET;
    q.types = many;
    q.n_types = AR_EVENT_QUERY_MAX_TYPES;
    list = list_query(store, &q);
    EXPECT_IDS(list, a_id[1], a_id[5], a_id[9]);
    ar_event_list_free(list);
    assert_int_equal(count_ok(store, &q), 3);
    ar_store_close(store);
}

static void test_list_time_range_includes_since_and_excludes_until(void **state)
{
    (void)state;
    ar_store *store = fixture();
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    q.since = 300;
    q.until = 700;
    ar_event_list *list = list_query(store, &q);
    EXPECT_IDS(list, a_id[2], a_id[3], a_id[4], a_id[5]);
    ar_event_list_free(list);

    q.since = 301;
    q.until = 701;
    list = list_query(store, &q);
    EXPECT_IDS(list, a_id[3], a_id[4], a_id[5], a_id[6]);
    ar_event_list_free(list);

    q.since = 1100;
    q.until = AR_UNSET;
    list = list_query(store, &q);
    EXPECT_IDS(list, a_id[10], a_id[11]);
    ar_event_list_free(list);

    q.since = AR_UNSET;
    q.until = 200;
    list = list_query(store, &q);
    EXPECT_IDS(list, a_id[0]);
    ar_event_list_free(list);

    q.since = 500;
    q.until = 500;
    list = list_query(store, &q);
    assert_int_equal(list->n, 0);
    ar_event_list_free(list);
    ar_store_close(store);
}

static void test_list_descending_order_and_default_limit_of_100(void **state)
{
    (void)state;
    ar_store *store = open_store();
    for (int i = 0; i < 150; i++)
        append_ok(store, "a", 0, "log", i);
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    char *next = NULL;
    ar_event_list *list = list_ok(store, &q, &next);
    assert_int_equal(list->n, 100);
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(list->items[i].id, (int64_t)i + 1);
    assert_string_equal(next, "e1:100");
    ar_free(next);
    ar_event_list_free(list);

    q.order = AR_ORDER_DESC;
    list = list_ok(store, &q, &next);
    assert_int_equal(list->n, 100);
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(list->items[i].id, 150 - (int64_t)i);
    assert_string_equal(next, "e1:50");
    ar_free(next);
    ar_event_list_free(list);
    ar_store_close(store);
}

static void test_count_applies_the_same_filters_as_list(void **state)
{
    (void)state;
    ar_store *store = fixture();
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    assert_int_equal(count_ok(store, &q), 12);
    q.limit = 2;                  /* limit and cursors do not restrict a count */
    q.after = "e1:5";
    assert_int_equal(count_ok(store, &q), 12);
    q.after = NULL;
    q.session = 2;
    assert_int_equal(count_ok(store, &q), 4);
    const char *types[] = { "tool_use", "log" };
    q.types = types;
    q.n_types = 2;
    assert_int_equal(count_ok(store, &q), 2);   /* a_id[2], a_id[11] */
    q.since = 400;
    q.until = 1200;
    assert_int_equal(count_ok(store, &q), 0);
    q.until = 1201;
    assert_int_equal(count_ok(store, &q), 1);
    q = (ar_event_query)AR_EVENT_QUERY_INIT;
    q.agent = "b";
    assert_int_equal(count_ok(store, &q), 3);
    q.agent = "nobody";
    assert_int_equal(count_ok(store, &q), 0);
    ar_store_close(store);
}

/* ---- cursors ------------------------------------------------------------------ */

#define PAGE_EVENTS 250
#define PAGE_LIMIT 9
#define PAGES 28   /* 27 full pages and one of 7 */

static ar_store *stream_of(int n)
{
    ar_store *store = open_store();
    for (int i = 0; i < n; i++) {
        append_ok(store, "a", 0, "log", 1000 + i);
        if (i % 10 == 0)
            append_ok(store, "other", 0, "log", 1000 + i); /* gaps in a's ids */
    }
    return store;
}

/* The ids of agent "a" in stream_of, ascending. */
static void stream_ids(ar_store *store, int64_t *ids, size_t n)
{
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    q.limit = (int64_t)n;
    ar_event_list *list = list_query(store, &q);
    assert_int_equal(list->n, n);
    for (size_t i = 0; i < n; i++)
        ids[i] = list->items[i].id;
    ar_event_list_free(list);
}

/* Pages forward through "a" in `order`; checks every id exactly once in order
 * and keeps each page's next_cursor in cursors[0..PAGES-1). */
static void page_forward(ar_store *store, int order, char **cursors)
{
    int64_t ids[PAGE_EVENTS];
    stream_ids(store, ids, PAGE_EVENTS);
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    q.limit = PAGE_LIMIT;
    q.order = order;
    char *after = NULL;
    size_t seen = 0, pages = 0;
    for (;;) {
        q.after = after;
        char *next = NULL;
        ar_event_list *list = list_ok(store, &q, &next);
        pages++;
        assert_int_equal(list->n, pages < PAGES ? PAGE_LIMIT : PAGE_EVENTS - (PAGES - 1) * PAGE_LIMIT);
        for (size_t i = 0; i < list->n; i++, seen++) {
            size_t k = order == AR_ORDER_ASC ? seen : PAGE_EVENTS - 1 - seen;
            assert_int_equal(list->items[i].id, ids[k]);
        }
        ar_event_list_free(list);
        if (!cursors)
            ar_free(after);
        else if (next)
            cursors[pages - 1] = next;   /* the caller owns the cursors */
        after = next;
        if (!next)
            break;
    }
    assert_int_equal(pages, PAGES);
    assert_int_equal(seen, PAGE_EVENTS);
}

static void test_paging_250_events_by_9_ascending_yields_each_once_in_order(void **state)
{
    (void)state;
    ar_store *store = stream_of(PAGE_EVENTS);
    page_forward(store, AR_ORDER_ASC, NULL);
    ar_store_close(store);
}

static void test_paging_250_events_by_9_descending_yields_each_once_in_order(void **state)
{
    (void)state;
    ar_store *store = stream_of(PAGE_EVENTS);
    page_forward(store, AR_ORDER_DESC, NULL);
    ar_store_close(store);
}

/* before = the cursor that fetched a page gives the page before it, in the
 * query's order, and its next_cursor is that same cursor again. */
static void check_before_gives_previous_pages(int order)
{
    ar_store *store = stream_of(PAGE_EVENTS);
    int64_t ids[PAGE_EVENTS];
    stream_ids(store, ids, PAGE_EVENTS);
    char *cursors[PAGES - 1] = { NULL };
    page_forward(store, order, cursors);
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    q.limit = PAGE_LIMIT;
    q.order = order;
    for (size_t k = 0; k < PAGES - 1; k++) {
        q.before = cursors[k];
        char *next = NULL;
        ar_event_list *list = list_ok(store, &q, &next);
        assert_int_equal(list->n, PAGE_LIMIT);
        for (size_t i = 0; i < PAGE_LIMIT; i++) {
            size_t pos = k * PAGE_LIMIT + i;
            assert_int_equal(list->items[i].id, ids[order == AR_ORDER_ASC ? pos : PAGE_EVENTS - 1 - pos]);
        }
        assert_non_null(next);
        assert_string_equal(next, cursors[k]);
        ar_free(next);
        ar_event_list_free(list);
    }
    for (size_t k = 0; k < PAGES - 1; k++)
        ar_free(cursors[k]);
    ar_store_close(store);
}

static void test_before_the_cursor_of_a_page_returns_the_page_before_it_ascending(void **state)
{
    (void)state;
    check_before_gives_previous_pages(AR_ORDER_ASC);
}

static void test_before_the_cursor_of_a_page_returns_the_page_before_it_descending(void **state)
{
    (void)state;
    check_before_gives_previous_pages(AR_ORDER_DESC);
}

/* Walks from the end of the listing to its start with `before`, building each
 * cursor from the first event of the page just read. */
static void check_walk_backwards(int order)
{
    ar_store *store = stream_of(PAGE_EVENTS);
    int64_t ids[PAGE_EVENTS];
    stream_ids(store, ids, PAGE_EVENTS);
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    q.limit = PAGE_LIMIT;
    q.order = order;
    char before[32];
    snprintf(before, sizeof before, "%s", order == AR_ORDER_ASC ? END_ASC : "e1:0");
    size_t remaining = PAGE_EVENTS, pages = 0;
    while (remaining > 0) {
        q.before = before;
        char *next = NULL;
        ar_event_list *list = list_ok(store, &q, &next);
        size_t want = remaining < PAGE_LIMIT ? remaining : PAGE_LIMIT;
        assert_int_equal(list->n, want);
        for (size_t i = 0; i < want; i++) {
            size_t pos = remaining - want + i;   /* position in the query's order */
            assert_int_equal(list->items[i].id, ids[order == AR_ORDER_ASC ? pos : PAGE_EVENTS - 1 - pos]);
        }
        /* the first page read (the last one in order) has nothing after it */
        if (pages == 0)
            assert_null(next);
        else
            assert_non_null(next);
        ar_free(next);
        int64_t first = list->items[0].id;
        snprintf(before, sizeof before, "e1:%" PRId64, order == AR_ORDER_ASC ? first - 1 : first);
        ar_event_list_free(list);
        remaining -= want;
        pages++;
    }
    assert_int_equal(pages, PAGES);
    q.before = before;       /* nothing precedes the first event */
    char *next = NULL;
    ar_event_list *list = list_ok(store, &q, &next);
    assert_int_equal(list->n, 0);
    assert_string_equal(next, before);  /* everything follows: the cursor resumes there */
    ar_free(next);
    ar_event_list_free(list);
    ar_store_close(store);
}

static void test_walking_backwards_with_before_yields_each_once_ascending(void **state)
{
    (void)state;
    check_walk_backwards(AR_ORDER_ASC);
}

static void test_walking_backwards_with_before_yields_each_once_descending(void **state)
{
    (void)state;
    check_walk_backwards(AR_ORDER_DESC);
}

static void test_appending_between_pages_neither_repeats_nor_skips(void **state)
{
    (void)state;
    ar_store *store = stream_of(PAGE_EVENTS);
    for (int order = 0; order < 2; order++) {
        int64_t total = count_agent(store, "a");
        int64_t ids[1024];
        ar_event_query all = AR_EVENT_QUERY_INIT;
        all.agent = "a";
        all.limit = total;
        all.order = order;
        ar_event_list *start = list_query(store, &all);
        for (size_t i = 0; i < start->n; i++)
            ids[i] = start->items[i].id;
        ar_event_list_free(start);
        ar_event_query q = AR_EVENT_QUERY_INIT;
        q.agent = "a";
        q.limit = PAGE_LIMIT;
        q.order = order;
        char *after = NULL;
        int64_t seen = 0, added = 0, last = -1;
        do {
            q.after = after;
            char *next = NULL;
            ar_event_list *list = list_ok(store, &q, &next);
            for (size_t i = 0; i < list->n; i++, seen++) {
                if (seen < total)
                    assert_int_equal(list->items[i].id, ids[seen]);
                else    /* events appended meanwhile follow, ascending */
                    assert_true(order == AR_ORDER_ASC && list->items[i].id > last);
                last = list->items[i].id;
            }
            ar_event_list_free(list);
            ar_free(after);
            after = next;
            if (added < 40) {    /* two new events of "a" and one of another agent per page */
                append_ok(store, "a", 0, "log", 1);
                append_ok(store, "zzz", 0, "log", 1);
                append_ok(store, "a", 0, "log", 1);
                added += 2;
            }
        } while (after);
        if (order == AR_ORDER_ASC) {
            /* every event of "a" now in the store was seen exactly once */
            assert_int_equal(seen, total + added);
            assert_int_equal(seen, count_agent(store, "a"));
        } else {
            /* events appended above the starting point are not in a descending walk */
            assert_int_equal(seen, total);
        }
    }
    ar_store_close(store);
}

/* An empty page has nothing to continue from: a cursor there would hand a
 * paging loop the same page forever. */
static void test_limit_zero_gives_an_empty_page_and_no_cursor_in_every_direction(void **state)
{
    (void)state;
    ar_store *store = stream_of(20);
    for (int order = 0; order < 2; order++) {
        ar_event_query q = AR_EVENT_QUERY_INIT;
        q.agent = "a";
        q.order = order ? AR_ORDER_ASC : AR_ORDER_DESC;
        q.limit = 3;
        char *c = NULL;
        ar_event_list *list = list_ok(store, &q, &c);
        ar_event_list_free(list);
        assert_non_null(c);
        q.limit = 0;
        for (int side = 0; side < 3; side++) {
            q.after = side == 1 ? c : NULL;
            q.before = side == 2 ? c : NULL;
            char *next = (char *)"x";
            list = list_ok(store, &q, &next);
            assert_int_equal(list->n, 0);
            if (next)
                fail_msg("order %d side %d: cursor %s for an empty page", order, side, next);
            ar_event_list_free(list);
        }
        /* a malformed cursor is still refused */
        q.after = "e1:x";
        q.before = NULL;
        assert_int_equal(ar_events_list(&list, NULL, store, &q), AR_EMISUSE);
        ar_free(c);
    }
    /* after the last event of "a" (id 22) nothing follows, whatever the limit */
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    q.after = "e1:22";
    char *next = (char *)"x";
    ar_event_list *list = list_ok(store, &q, &next);
    assert_int_equal(list->n, 0);
    assert_null(next);
    ar_event_list_free(list);
    ar_store_close(store);
}

/* ---- isolation between agents ---------------------------------------------------- */

static void test_delete_summary_list_and_retain_of_one_agent_never_touch_another(void **state)
{
    (void)state;
    ar_store *store = open_store();
    for (int i = 0; i < 10; i++) {
        append_ok(store, "a", i % 2, "log", 100 + i);
        append_ok(store, "b", 5, "output", 100 + i);
        append_ok(store, "ab", 0, "log", 100 + i);   /* a prefix of neither agent's name counts */
    }
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    ar_event_list *list = list_query(store, &q);
    assert_int_equal(list->n, 10);
    for (size_t i = 0; i < list->n; i++)
        assert_string_equal(list->items[i].agent, "a");
    ar_event_list_free(list);

    ar_event_summary *s = NULL;
    assert_int_equal(ar_events_summary(&s, store, "b"), AR_OK);
    assert_int_equal(s->total, 10);
    assert_int_equal(s->n_types, 1);
    assert_string_equal(s->by_type[0].type, "output");
    assert_int_equal(s->sessions, 1);
    ar_event_summary_free(s);

    /* keep_last is per agent: each keeps its own newest 3 */
    ar_event_retention keep = AR_EVENT_RETENTION_INIT;
    keep.keep_last = 3;
    int64_t n = 0;
    assert_int_equal(ar_events_retain(&n, store, &keep), AR_OK);
    assert_int_equal(n, 21);
    assert_int_equal(count_agent(store, "a"), 3);
    assert_int_equal(count_agent(store, "b"), 3);
    assert_int_equal(count_agent(store, "ab"), 3);

    assert_int_equal(ar_events_delete(&n, store, "a"), AR_OK);
    assert_int_equal(n, 3);
    assert_int_equal(count_agent(store, "a"), 0);
    assert_int_equal(count_agent(store, "b"), 3);
    assert_int_equal(count_agent(store, "ab"), 3);
    assert_int_equal(ar_events_delete(&n, store, "a"), AR_OK);
    assert_int_equal(n, 0);

    q.agent = "b";
    list = list_query(store, &q);
    EXPECT_IDS(list, 23, 26, 29);
    ar_event_list_free(list);
    ar_store_close(store);
}

/* ---- bad input ------------------------------------------------------------------- */

static void expect_append_refused(ar_store *store, const ar_event *e, int code, const char *msg_part)
{
    int64_t id = 99;
    int rc = ar_event_append(&id, store, e);
    if (rc != code || !strstr(ar_store_errmsg(store), msg_part)) {
        print_error("got %s \"%s\", want %s with \"%s\"\n", ar_code_name(rc), ar_store_errmsg(store),
                    ar_code_name(code), msg_part);
        fail();
    }
    assert_int_equal(id, 0);
}

static void test_bad_events_are_refused_and_nothing_is_stored(void **state)
{
    (void)state;
    ar_store *store = open_store();
    ar_event good = AR_EVENT_INIT;
    good.agent = "a";
    good.type = "log";
    ar_event e = good;
    e.agent = NULL;
    expect_append_refused(store, &e, AR_EMISUSE, "agent is required");
    e.agent = "";
    expect_append_refused(store, &e, AR_EMISUSE, "agent must not be empty");
    e.agent = "bad\xff";
    expect_append_refused(store, &e, AR_EMISUSE, "agent is not valid UTF-8");
    e = good;
    e.type = NULL;
    expect_append_refused(store, &e, AR_EMISUSE, "type is required");
    e.type = "";
    expect_append_refused(store, &e, AR_EMISUSE, "type must not be empty");
    e = good;
    e.session = -1;
    expect_append_refused(store, &e, AR_EMISUSE, "session must not be negative");
    e = good;
    e.content = "caf\xc3";
    expect_append_refused(store, &e, AR_EMISUSE, "content is not valid UTF-8");
    e = good;
    e.run = "";
    expect_append_refused(store, &e, AR_EMISUSE, "run must not be empty");
    e = good;
    e.metadata = "{\"a\":";
    expect_append_refused(store, &e, AR_EJSON, "metadata");
    e.metadata = "[1,2]";
    expect_append_refused(store, &e, AR_EJSON, "metadata");
    e.metadata = "\"text\"";
    expect_append_refused(store, &e, AR_EJSON, "metadata");
    e.metadata = "{\"n\":9007199254740993}";
    expect_append_refused(store, &e, AR_EJSON, "metadata");
    assert_int_equal(ar_event_append(NULL, store, NULL), AR_EMISUSE);
    assert_int_equal(ar_event_append(NULL, NULL, &good), AR_EMISUSE);

    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.events, 0);
    /* the refusals left no state behind: the next good event is id 1 */
    assert_int_equal(append_ok(store, "a", 0, "log", 1), 1);
    ar_store_close(store);
}

static void expect_query_refused(ar_store *store, const ar_event_query *q, const char *msg_part)
{
    ar_event_list *list = (ar_event_list *)1;
    char *next = (char *)"x";
    int rc = ar_events_list(&list, &next, store, q);
    if (rc != AR_EMISUSE || !strstr(ar_store_errmsg(store), msg_part)) {
        print_error("got %s \"%s\", want EMISUSE with \"%s\"\n", ar_code_name(rc), ar_store_errmsg(store), msg_part);
        fail();
    }
    assert_null(list);
    assert_null(next);
    int64_t n = 5;
    assert_int_equal(ar_events_count(&n, store, q), AR_EMISUSE);
    assert_int_equal(n, 0);
}

static void test_bad_queries_and_malformed_cursors_are_misuse(void **state)
{
    (void)state;
    ar_store *store = fixture();
    ar_event_query q = AR_EVENT_QUERY_INIT;
    expect_query_refused(store, &q, "agent is required");
    q.agent = "";
    expect_query_refused(store, &q, "agent must not be empty");
    q.agent = "a";
    q.session = -2;
    expect_query_refused(store, &q, "session must not be negative");
    q.session = AR_UNSET;
    q.limit = -1;
    expect_query_refused(store, &q, "limit must not be negative");
    q.limit = 10;
    q.order = 7;
    expect_query_refused(store, &q, "order must be");
    q.order = AR_ORDER_ASC;
    q.n_types = 2;
    expect_query_refused(store, &q, "types is NULL");
    const char *types[] = { "log", "" };
    q.types = types;
    expect_query_refused(store, &q, "types[1] must not be empty");
    const char *many[AR_EVENT_QUERY_MAX_TYPES + 1];
    for (size_t i = 0; i < AR_EVENT_QUERY_MAX_TYPES + 1; i++)
        many[i] = "log";
    q.types = many;
    q.n_types = AR_EVENT_QUERY_MAX_TYPES + 1;
    expect_query_refused(store, &q, "too many types in the query (at most 1000)");
    q.types = NULL;
    q.n_types = 0;
    q.after = "e1:3";
    q.before = "e1:5";
    expect_query_refused(store, &q, "after and before cannot be given together");
    q.before = NULL;

    static const char *const malformed[] = {
        "", "e1:", "e1", "e2:5", "E1:5", "r1:5", "e1:-1", "e1:+1", "e1:01", "e1:00", "e1: 1",
        "e1:1 ", "e1:1x", "e1:0x10", "e1:9223372036854775808", "e1:99999999999999999999", "e1:5:6"
    };
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        q.after = malformed[i];
        expect_query_refused(store, &q, "after is not a valid events cursor");
        q.after = NULL;
        q.before = malformed[i];
        expect_query_refused(store, &q, "before is not a valid events cursor");
        q.before = NULL;
    }
    assert_int_equal(ar_events_list(NULL, NULL, store, &q), AR_EMISUSE);
    assert_int_equal(ar_events_list(NULL, NULL, store, NULL), AR_EMISUSE);

    ar_event_summary *s = (ar_event_summary *)1;
    assert_int_equal(ar_events_summary(&s, store, ""), AR_EMISUSE);
    assert_null(s);
    assert_int_equal(ar_events_summary(&s, store, NULL), AR_EMISUSE);
    int64_t n = 9;
    assert_int_equal(ar_events_delete(&n, store, ""), AR_EMISUSE);
    assert_int_equal(n, 0);
    assert_int_equal(ar_events_delete(&n, store, NULL), AR_EMISUSE);
    ar_event_retention r = AR_EVENT_RETENTION_INIT;
    r.older_than = NAN;
    assert_int_equal(ar_events_retain(&n, store, &r), AR_EMISUSE);
    r.older_than = 1e300;
    assert_int_equal(ar_events_retain(&n, store, &r), AR_EMISUSE);
    assert_int_equal(ar_events_retain(&n, store, NULL), AR_EMISUSE);

    /* nothing changed */
    assert_int_equal(count_agent(store, "a"), 12);
    assert_int_equal(count_agent(store, "b"), 3);
    ar_store_close(store);
}

/* ---- summary ----------------------------------------------------------------------- */

static void test_summary_counts_types_distinct_sessions_and_time_span(void **state)
{
    (void)state;
    ar_store *store = open_store();
    append_ok(store, "a", 4, "output", 500);
    append_ok(store, "a", 4, "tool_use", 200);
    append_ok(store, "a", 9, "output", 900);
    append_ok(store, "a", 0, "activity_changed", 700);
    append_ok(store, "a", 9, "output", 300);
    append_ok(store, "z", 1, "log", 50);
    append_ok(store, "z", 2, "log", 5000);
    ar_event_summary *s = NULL;
    assert_int_equal(ar_events_summary(&s, store, "a"), AR_OK);
    ar_store_close(store); /* the summary owns its strings */
    assert_int_equal(s->total, 5);
    assert_int_equal(s->sessions, 3);
    assert_int_equal(s->first_at, 200);
    assert_int_equal(s->last_at, 900);
    assert_int_equal(s->n_types, 3);
    assert_string_equal(s->by_type[0].type, "activity_changed");
    assert_int_equal(s->by_type[0].count, 1);
    assert_string_equal(s->by_type[1].type, "output");
    assert_int_equal(s->by_type[1].count, 3);
    assert_string_equal(s->by_type[2].type, "tool_use");
    assert_int_equal(s->by_type[2].count, 1);
    ar_event_summary_free(s);
    ar_event_summary_free(NULL);
}

static void test_summary_of_an_agent_without_events_is_empty(void **state)
{
    (void)state;
    ar_store *store = open_store();
    append_ok(store, "other", 1, "log", 5);
    ar_event_summary *s = NULL;
    assert_int_equal(ar_events_summary(&s, store, "a"), AR_OK);
    assert_int_equal(s->total, 0);
    assert_int_equal(s->sessions, 0);
    assert_int_equal(s->n_types, 0);
    assert_int_equal(s->first_at, AR_UNSET);
    assert_int_equal(s->last_at, AR_UNSET);
    ar_event_summary_free(s);
    ar_store_close(store);
}

/* ---- retention ---------------------------------------------------------------------- */

static void test_retain_by_age_deletes_only_events_older_than_the_limit(void **state)
{
    (void)state;
    ar_store *store = open_store();
    int64_t now = wall_ms();
    int64_t hour = 3600 * 1000;
    append_ok(store, "a", 0, "log", now - 3 * hour);       /* deleted */
    append_ok(store, "b", 0, "log", now - 2 * hour - 1);   /* deleted */
    append_ok(store, "a", 0, "log", now - hour);           /* kept: younger than two hours */
    append_ok(store, "b", 0, "log", now + hour);           /* kept */
    append_ok(store, "c", 0, "log", 1);                    /* deleted */
    ar_event_retention r = AR_EVENT_RETENTION_INIT;
    r.older_than = 2 * 3600;
    int64_t n = 0;
    assert_int_equal(ar_events_retain(&n, store, &r), AR_OK);
    assert_int_equal(n, 3);
    assert_int_equal(count_agent(store, "a"), 1);
    assert_int_equal(count_agent(store, "b"), 1);
    assert_int_equal(count_agent(store, "c"), 0);
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    ar_event_list *list = list_query(store, &q);
    EXPECT_IDS(list, 3);
    ar_event_list_free(list);
    ar_store_close(store);
}

static void test_retain_keep_last_keeps_the_newest_by_at_then_id(void **state)
{
    (void)state;
    ar_store *store = open_store();
    const int64_t at[] = { 5, 10, 10, 10, 3, 20 };   /* ids 1..6 */
    for (size_t i = 0; i < 6; i++)
        append_ok(store, "a", 0, "log", at[i]);
    append_ok(store, "b", 0, "log", 1);   /* id 7 */
    append_ok(store, "b", 0, "log", 1);   /* id 8 */
    ar_event_retention r = AR_EVENT_RETENTION_INIT;
    r.keep_last = 3;
    int64_t n = 0;
    assert_int_equal(ar_events_retain(&n, store, &r), AR_OK);
    assert_int_equal(n, 3);
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    ar_event_list *list = list_query(store, &q);
    EXPECT_IDS(list, 3, 4, 6);   /* at 20; then the two later of the three at 10 */
    ar_event_list_free(list);
    assert_int_equal(count_agent(store, "b"), 2);

    r.keep_last = 1;     /* the tie at the boundary goes to the larger id */
    assert_int_equal(ar_events_retain(&n, store, &r), AR_OK);
    assert_int_equal(n, 3);
    list = list_query(store, &q);
    EXPECT_IDS(list, 6);
    ar_event_list_free(list);
    q.agent = "b";
    list = list_query(store, &q);
    EXPECT_IDS(list, 8);
    ar_event_list_free(list);

    r.keep_last = 0;
    assert_int_equal(ar_events_retain(&n, store, &r), AR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(count_agent(store, "a"), 0);
    assert_int_equal(count_agent(store, "b"), 0);
    ar_store_close(store);
}

static void test_retain_with_both_limits_deletes_the_union_once(void **state)
{
    (void)state;
    ar_store *store = open_store();
    int64_t now = wall_ms(), day = 86400 * 1000;
    for (int i = 0; i < 4; i++)
        append_ok(store, "a", 0, "log", now - 10 * day + i);    /* old: ids 1..4 */
    for (int i = 0; i < 4; i++)
        append_ok(store, "a", 0, "log", now + day + i);         /* new: ids 5..8 */
    ar_event_retention r = AR_EVENT_RETENTION_INIT;
    r.older_than = 86400;
    r.keep_last = 2;
    int64_t n = 0;
    assert_int_equal(ar_events_retain(&n, store, &r), AR_OK);
    assert_int_equal(n, 6);
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    ar_event_list *list = list_query(store, &q);
    EXPECT_IDS(list, 7, 8);
    ar_event_list_free(list);
    ar_store_close(store);
}

static void test_retain_with_no_limits_deletes_nothing(void **state)
{
    (void)state;
    ar_store *store = fixture();
    ar_event_retention r = AR_EVENT_RETENTION_INIT;
    int64_t n = 7;
    assert_int_equal(ar_events_retain(&n, store, &r), AR_OK);
    assert_int_equal(n, 0);
    r.older_than = -5;
    r.keep_last = -1;
    assert_int_equal(ar_events_retain(&n, store, &r), AR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(count_agent(store, "a"), 12);
    assert_int_equal(count_agent(store, "b"), 3);
    ar_store_close(store);
}

/* ---- query plans -------------------------------------------------------------------- */

static char *plan_of(ar_store *store, int shape, const ar_event_query *q, const int64_t *key, int asc)
{
    char *plan = NULL;
    int rc = ar_sqlite_events_plan(&plan, store, shape, q, key, asc);
    if (rc != AR_OK) {
        print_error("plan: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    return plan;
}

/* Every step of the plan that reads the events table is an index search
 * bounded by the agent; none scans the table. */
static void expect_agent_search(const char *plan, const char *what)
{
    int searches = 0;
    const char *line = plan;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        if (strstr(buf, "events") || strstr(buf, " ev ")) {
            if (strncmp(buf, "SEARCH events USING ", 20) != 0 || !strstr(buf, "(agent=?")) {
                print_error("%s: step \"%s\" is not an agent-bounded index search; plan:\n%s", what, buf, plan);
                fail();
            }
            searches++;
        }
        line += len + (end ? 1 : 0);
    }
    if (searches == 0) {
        print_error("%s: no search of events in the plan:\n%s", what, plan);
        fail();
    }
}

static void test_every_list_count_and_summary_shape_is_served_by_an_agent_index(void **state)
{
    (void)state;
    ar_store *store = fixture();
    const char *one[] = { "log" };
    const char *two[] = { "log", "output" };
    for (int shape = 0; shape < 10; shape++) {
        ar_event_query q = AR_EVENT_QUERY_INIT;
        q.agent = "a";
        switch (shape) {
        case 0: break;
        case 1: q.session = 1; break;
        case 2: q.types = one; q.n_types = 1; break;
        case 3: q.types = two; q.n_types = 2; break;
        case 4: q.since = 100; break;
        case 5: q.until = 900; break;
        case 6: q.since = 100; q.until = 900; break;
        case 7: q.session = 1; q.types = one; q.n_types = 1; break;
        case 8: q.session = 1; q.since = 100; q.until = 900; break;
        default: q.session = 1; q.types = two; q.n_types = 2; q.since = 100; q.until = 900; break;
        }
        char what[64];
        int64_t key = 5;
        for (int asc = 0; asc < 2; asc++) {
            for (int keyed = 0; keyed < 2; keyed++) {
                snprintf(what, sizeof what, "list shape %d asc %d key %d", shape, asc, keyed);
                char *plan = plan_of(store, AR_SQLITE_PLAN_LIST, &q, keyed ? &key : NULL, asc);
                expect_agent_search(plan, what);
                ar_free(plan);
            }
        }
        snprintf(what, sizeof what, "count shape %d", shape);
        char *plan = plan_of(store, AR_SQLITE_PLAN_COUNT, &q, NULL, 1);
        expect_agent_search(plan, what);
        ar_free(plan);
    }
    /* the plain shapes use the index made for them, in id order */
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    int64_t key = 5;
    char *plan = plan_of(store, AR_SQLITE_PLAN_LIST, &q, &key, 1);
    assert_non_null(strstr(plan, "events_by_agent (agent=? AND id>?)"));
    assert_null(strstr(plan, "TEMP B-TREE"));
    ar_free(plan);
    q.session = 3;
    plan = plan_of(store, AR_SQLITE_PLAN_LIST, &q, &key, 0);
    assert_non_null(strstr(plan, "events_by_session (agent=? AND session=? AND id<?)"));
    assert_null(strstr(plan, "TEMP B-TREE"));
    ar_free(plan);
    q.session = AR_UNSET;
    q.types = one;
    q.n_types = 1;
    plan = plan_of(store, AR_SQLITE_PLAN_LIST, &q, &key, 1);
    assert_non_null(strstr(plan, "events_by_type (agent=? AND type=? AND id>?)"));
    assert_null(strstr(plan, "TEMP B-TREE"));
    ar_free(plan);

    q = (ar_event_query)AR_EVENT_QUERY_INIT;
    q.agent = "a";
    plan = plan_of(store, AR_SQLITE_PLAN_SUMMARY, &q, NULL, 1);
    expect_agent_search(plan, "summary");
    ar_free(plan);
    ar_store_close(store);
}

static void test_retention_deletes_find_agents_and_rows_through_indexes(void **state)
{
    (void)state;
    ar_store *store = fixture();
    const int shapes[] = { AR_SQLITE_PLAN_RETAIN_AGE, AR_SQLITE_PLAN_RETAIN_KEEP };
    for (size_t i = 0; i < 2; i++) {
        char *plan = plan_of(store, shapes[i], NULL, NULL, 1);
        if (strstr(plan, "SCAN events") || strstr(plan, "SCAN ev ") || !strstr(plan, "(agent=? AND at<?)")) {
            print_error("retention plan %zu reads the table without an index:\n%s", i, plan);
            fail();
        }
        ar_free(plan);
    }
    ar_store_close(store);
}

/* ---- allocation failures ---------------------------------------------------------- */

typedef struct failing {
    long calls, fail_at;   /* fail_at 0: never */
} failing;

static void *f_malloc(void *ud, size_t n)
{
    failing *f = ud;
    if (f->fail_at && ++f->calls == f->fail_at)
        return NULL;
    return malloc(n);
}

static void *f_realloc(void *ud, void *p, size_t n)
{
    failing *f = ud;
    if (f->fail_at && ++f->calls == f->fail_at)
        return NULL;
    return realloc(p, n);
}

static void f_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

static void test_every_failed_allocation_is_reported_and_leaks_nothing(void **state)
{
    (void)state;
    failing f = { 0, 0 };
    ar_allocator a = { f_malloc, f_realloc, f_free, &f };
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.allocator = &a;
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, ":memory:", &opts), AR_OK);
    const char *types[] = { "log", "output" };
    for (int i = 0; i < 300; i++)
        append_ok(store, "a", 0, types[i % 2], i);
    for (int call = 0; call < 4; call++) {
        int ok = 0;
        for (long nth = 1; !ok; nth++) {
            assert_true(nth < 100);
            f.calls = 0;
            f.fail_at = nth;
            ar_event_query q = AR_EVENT_QUERY_INIT;
            q.agent = "a";
            q.types = types;
            q.n_types = 2;
            q.limit = 150;     /* grows the item array in the arena */
            ar_event_list *list = NULL;
            ar_event_summary *s = NULL;
            char *next = NULL;
            int rc;
            if (call == 0) {
                rc = ar_events_list(&list, &next, store, &q);
            } else if (call == 1) {
                q.before = "e1:200";
                rc = ar_events_list(&list, &next, store, &q);
            } else if (call == 2) {
                rc = ar_events_summary(&s, store, "a");
            } else {
                int64_t n = 0;
                rc = ar_events_count(&n, store, &q);
                if (rc == AR_OK)
                    assert_int_equal(n, 300);
            }
            f.fail_at = 0;
            if (rc == AR_ENOMEM) {
                assert_null(list);
                assert_null(s);
                assert_null(next);
                continue;
            }
            assert_int_equal(rc, AR_OK);
            ok = 1;
            if (call == 0) {
                assert_int_equal(list->n, 150);
                assert_int_equal(list->items[149].id, 150);
                assert_string_equal(next, "e1:150");
            } else if (call == 1) {
                assert_int_equal(list->n, 150);
                assert_int_equal(list->items[0].id, 51);
                assert_int_equal(list->items[149].id, 200);
                assert_string_equal(next, "e1:200");
            } else if (call == 2) {
                assert_int_equal(s->total, 300);
                assert_int_equal(s->n_types, 2);
            }
            ar_event_list_free(list);
            ar_event_summary_free(s);
            ar_free(next);
        }
    }
    ar_store_close(store);
}

/* ---- read-only stores ------------------------------------------------------------- */

static void test_a_read_only_store_lists_events_and_refuses_new_ones(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    char *path = test_location(&opts);
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, path, &opts), AR_OK);
    append_ok(store, "a", 0, "log", 1);
    ar_store_close(store);
    opts.readonly = 1;
    assert_int_equal(ar_store_open(&store, path, &opts), AR_OK);
    assert_int_equal(count_agent(store, "a"), 1);
    ar_event e = AR_EVENT_INIT;
    e.agent = "a";
    e.type = "log";
    assert_int_equal(ar_event_append(NULL, store, &e), AR_EPERM);
    int64_t n = 0;
    assert_int_equal(ar_events_delete(&n, store, "a"), AR_EPERM);
    assert_int_equal(count_agent(store, "a"), 1);
    ar_store_close(store);
    free(path);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_append_returns_increasing_ids_and_list_reads_back_every_field),
    cmocka_unit_test(test_content_with_nul_bytes_is_stored_and_listed_exactly),
    cmocka_unit_test(test_content_len_zero_or_nul_terminated_means_a_c_string),
    cmocka_unit_test(test_append_without_at_stamps_the_current_time),
    cmocka_unit_test(test_ids_are_never_reused_after_deletion),
    cmocka_unit_test(test_list_filters_by_session),
    cmocka_unit_test(test_list_filters_by_one_type_and_by_a_list_of_types),
    cmocka_unit_test(test_list_time_range_includes_since_and_excludes_until),
    cmocka_unit_test(test_list_descending_order_and_default_limit_of_100),
    cmocka_unit_test(test_count_applies_the_same_filters_as_list),
    cmocka_unit_test(test_paging_250_events_by_9_ascending_yields_each_once_in_order),
    cmocka_unit_test(test_paging_250_events_by_9_descending_yields_each_once_in_order),
    cmocka_unit_test(test_before_the_cursor_of_a_page_returns_the_page_before_it_ascending),
    cmocka_unit_test(test_before_the_cursor_of_a_page_returns_the_page_before_it_descending),
    cmocka_unit_test(test_walking_backwards_with_before_yields_each_once_ascending),
    cmocka_unit_test(test_walking_backwards_with_before_yields_each_once_descending),
    cmocka_unit_test(test_appending_between_pages_neither_repeats_nor_skips),
    cmocka_unit_test(test_limit_zero_gives_an_empty_page_and_no_cursor_in_every_direction),
    cmocka_unit_test(test_delete_summary_list_and_retain_of_one_agent_never_touch_another),
    cmocka_unit_test(test_bad_events_are_refused_and_nothing_is_stored),
    cmocka_unit_test(test_bad_queries_and_malformed_cursors_are_misuse),
    cmocka_unit_test(test_summary_counts_types_distinct_sessions_and_time_span),
    cmocka_unit_test(test_summary_of_an_agent_without_events_is_empty),
    cmocka_unit_test(test_retain_by_age_deletes_only_events_older_than_the_limit),
    cmocka_unit_test(test_retain_keep_last_keeps_the_newest_by_at_then_id),
    cmocka_unit_test(test_retain_with_both_limits_deletes_the_union_once),
    cmocka_unit_test(test_retain_with_no_limits_deletes_nothing),
    cmocka_unit_test(test_a_read_only_store_lists_events_and_refuses_new_ones),
};

/* Tests about SQLite files and SQLite itself (groups.def: SQLite only). */
static const struct CMUnitTest file_tests[] = {
    cmocka_unit_test(test_every_list_count_and_summary_shape_is_served_by_an_agent_index),
    cmocka_unit_test(test_retention_deletes_find_agents_and_rows_through_indexes),
    cmocka_unit_test(test_every_failed_allocation_is_reported_and_leaks_nothing),
};

TEST_GROUP(events_group, "events", tests);
TEST_GROUP(events_file_group, "events_file", file_tests);
