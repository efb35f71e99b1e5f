/* fuzz_cursor.c -- libFuzzer: any cursor text a caller passes back to a listing gives AR_OK or AR_EMISUSE, never a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentrun.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ar_store *store;
static char *real_cursor;       /* a genuine cursor, for the input to mutate */

/* A memory store with runs of two agents and a stream of events. */
static void setup(void)
{
    if (ar_store_open(&store, ":memory:", NULL) != AR_OK)
        abort();
    for (int i = 0; i < 30; i++) {
        ar_run_spec spec = AR_RUN_SPEC_INIT;
        spec.agent = i % 3 ? "a" : "b";
        spec.goal = "g";
        ar_run *run = NULL;
        if (ar_run_begin(&run, store, &spec) != AR_OK)
            abort();
        if (i % 4 && ar_run_complete(NULL, run, "1", AR_NUL_TERMINATED) != AR_OK)
            abort();
        ar_run_close(run);
        ar_event e = AR_EVENT_INIT;
        e.agent = "a";
        e.type = i % 2 ? "log" : "output";
        e.session = i % 3;
        e.at = 1000 + i / 2;
        if (ar_event_append(NULL, store, &e) != AR_OK)
            abort();
    }
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.limit = 5;
    ar_record **list = NULL;
    size_t n = 0;
    if (ar_runs_list(&list, &n, &real_cursor, store, &q) != AR_OK || !real_cursor)
        abort();
    ar_records_free(list, n);
}

/* A NUL-terminated string taken from the input up to the next 0xFF byte. */
static char *take(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *start = *p;
    while (*p < end && **p != 0xFF)
        (*p)++;
    size_t n = (size_t)(*p - start);
    if (*p < end)
        (*p)++;
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, start, n);
    s[n] = '\0';
    return s;
}

static void expect_ok_or_misuse(int rc, const char *what)
{
    if (rc != AR_OK && rc != AR_EMISUSE) {
        fprintf(stderr, "%s: %s: %s\n", what, ar_code_name(rc), ar_store_errmsg(store));
        abort();
    }
    if (rc == AR_EMISUSE && !ar_store_errmsg(store)[0])
        abort(); /* a refused cursor is explained */
}

/* Lists runs with the cursor(s), then follows next_cursor once. */
static void runs_with(const char *after, const char *before, int order, int64_t limit)
{
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.after = after;
    q.before = before;
    q.order = order;
    q.limit = limit;
    ar_record **list = NULL;
    size_t n = 0;
    char *next = NULL;
    int rc = ar_runs_list(&list, &n, &next, store, &q);
    expect_ok_or_misuse(rc, "ar_runs_list");
    if (rc != AR_OK) {
        if (list || n || next)
            abort(); /* out-parameters are cleared on failure */
        return;
    }
    if ((int64_t)n > limit)
        abort();
    ar_records_free(list, n);
    if (next) {
        q.after = next;
        q.before = NULL;
        if (ar_runs_list(&list, &n, NULL, store, &q) != AR_OK)
            abort(); /* the library's own cursor is always good */
        ar_records_free(list, n);
        ar_free(next);
    }
}

static void events_with(const char *after, const char *before, int order, int64_t limit)
{
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = "a";
    q.after = after;
    q.before = before;
    q.order = order;
    q.limit = limit;
    ar_event_list *list = NULL;
    char *next = NULL;
    int rc = ar_events_list(&list, &next, store, &q);
    expect_ok_or_misuse(rc, "ar_events_list");
    if (rc != AR_OK) {
        if (list || next)
            abort();
        return;
    }
    if ((int64_t)list->n > limit)
        abort();
    ar_event_list_free(list);
    if (next) {
        q.after = next;
        q.before = NULL;
        if (ar_events_list(&list, NULL, store, &q) != AR_OK)
            abort();
        ar_event_list_free(list);
        ar_free(next);
    }
}

/* Input: a flags byte, then the `after` text and the `before` text
 * separated by 0xFF. Flag bits: use after, use before, descending order,
 * start from a real cursor (the input then edits its tail). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store)
        setup();
    if (size == 0)
        return 0;
    unsigned flags = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    char *after = take(&p, end), *before = take(&p, end);
    if (flags & 8) {
        size_t keep = strlen(real_cursor) * (flags >> 4) / 16;
        size_t n = strlen(after);
        char *edited = malloc(keep + n + 1);
        if (!edited)
            abort();
        memcpy(edited, real_cursor, keep);
        memcpy(edited + keep, after, n + 1);
        free(after);
        after = edited;
    }
    int order = flags & 4 ? AR_ORDER_DESC : AR_ORDER_ASC;
    int64_t limit = 1 + (int64_t)(flags >> 5);
    const char *a = flags & 1 ? after : NULL, *b = flags & 2 ? before : NULL;
    runs_with(a, b, order, limit);
    events_with(a, b, order, limit);
    free(after);
    free(before);
    return 0;
}
