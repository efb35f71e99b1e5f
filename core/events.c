/* events.c -- conversation events per agent: validation, keyset cursors, listings, summary, retention. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* A listing and a summary handed to the caller: the public struct plus the
 * arena holding its array and strings, so freeing needs no store. */
typedef struct event_list_box {
    ar_allocator alloc;
    ar_arena arena;
    ar_event_list list;
} event_list_box;

typedef struct event_summary_box {
    ar_allocator alloc;
    ar_arena arena;
    ar_event_summary summary;
} event_summary_box;

/* ---- appending ------------------------------------------------------------ */

/* Appends one event; *out (may be NULL) gets its id, which is larger than
 * every id handed out before in this file and never reused. Returns
 * AR_EMISUSE (missing or empty agent/type, negative session, text that is not
 * UTF-8), AR_EJSON (metadata not a JSON object, a value over AR_VALUE_MAX, an
 * event the store cannot hold) or a store error; on failure nothing is
 * written. Content keeps its NUL bytes: it is bound with its length. */
int ar_event_check(ar_err *err, const ar_event *event, ar_event *row)
{
    int rc;
    if (!event)
        return ar_fail(err, AR_EMISUSE, "event is NULL");
    *row = *event;
    if (row->content && (row->content_len == AR_NUL_TERMINATED || row->content_len == 0))
        row->content_len = strlen(row->content);
    if ((rc = ar_text_check(err, "agent", event->agent, 1, 1)) ||
        (rc = ar_text_check(err, "type", event->type, 1, 1)) ||
        (row->content && (rc = ar_content_check(err, "content", row->content, row->content_len))) ||
        (rc = ar_text_check(err, "run", event->run, 0, 1)))
        return rc;
    if (event->session < 0)
        return ar_fail(err, AR_EMISUSE, "session must not be negative");
    if (event->metadata &&
        (rc = ar_json_check(err, "metadata", event->metadata, strlen(event->metadata), 1)))
        return rc;
    if (row->at == AR_UNSET)
        row->at = ar_now_ms();
    return AR_OK;
}

int ar_event_append(int64_t *out, ar_store *store, const ar_event *event)
{
    int rc = ar_store_writable(store, "append an event");
    if (out)
        *out = 0;
    if (rc)
        return rc;
    ar_err *err = &store->err;
    ar_event row;
    if ((rc = ar_event_check(err, event, &row)))
        return rc;
    int64_t id = 0;
    if ((rc = store->be->event_insert(store->db, &row, &id, err)))
        return rc;
    if (out)
        *out = id;
    return AR_OK;
}

/* ---- cursors ------------------------------------------------------------- */

/* Cursor text: "e1:<g>", g a decimal in [0, 2^63): the position between the
 * events with id <= g and those with id > g. A position does not depend on
 * the order, so a cursor means the same in ascending and descending listings,
 * and `before` with the cursor that fetched a page gives the page before it. */
static int cursor_parse(ar_err *err, const char *name, const char *text, int64_t *out)
{
    const char *p = text;
    uint64_t g = 0;
    if (strncmp(p, "e1:", 3) != 0)
        goto bad;
    p += 3;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '\0'))
        goto bad;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t digit = (uint64_t)(*p - '0');
        if (g > ((uint64_t)INT64_MAX - digit) / 10)
            goto bad;
        g = g * 10 + digit;
    }
    if (*p != '\0')
        goto bad;
    *out = (int64_t)g;
    return AR_OK;
bad:
    /* worded for every API: the Lua caller reads this message too */
    return ar_fail(err, AR_EMISUSE, "%s is not a valid events cursor (expected a next_cursor of an events listing)",
                   name);
}

static char *cursor_make(const ar_allocator *a, int64_t g)
{
    char text[32];
    int n = snprintf(text, sizeof text, "e1:%" PRId64, g);
    return ar_out_strdup(a, text, (size_t)n);
}

/* The position right after event `id` when walking in the given order. */
static int64_t position_after(int64_t id, int ascending)
{
    return ascending ? id : id - 1;
}

/* ---- queries -------------------------------------------------------------- */

/* Checks every field of a query, cursors included; AR_EMISUSE names the
 * field. *key gets the cursor's position, if there is one. */
static int query_check(ar_err *err, const ar_event_query *q, int64_t *key)
{
    int rc;
    if (!q)
        return ar_fail(err, AR_EMISUSE, "query is NULL");
    if ((rc = ar_opts_version_check(err, "ar_event_query", q->version, AR_EVENT_QUERY_VERSION,
                                    "AR_EVENT_QUERY_INIT")))
        return rc;
    if ((rc = ar_text_check(err, "agent", q->agent, 1, 1)))
        return rc;
    if (q->session != AR_UNSET && q->session < 0)
        return ar_fail(err, AR_EMISUSE, "session must not be negative");
    if (q->n_types && !q->types)
        return ar_fail(err, AR_EMISUSE, "types is NULL with n_types > 0");
    if (q->n_types > AR_EVENT_QUERY_MAX_TYPES)
        return ar_fail(err, AR_EMISUSE, "too many types in the query (at most %d)", AR_EVENT_QUERY_MAX_TYPES);
    for (size_t i = 0; i < q->n_types; i++) {
        char field[32];
        snprintf(field, sizeof field, "types[%zu]", i);
        if ((rc = ar_text_check(err, field, q->types[i], 1, 1)))
            return rc;
    }
    if (q->limit < 0)
        return ar_fail(err, AR_EMISUSE, "limit must not be negative");
    if (q->order != AR_ORDER_ASC && q->order != AR_ORDER_DESC)
        return ar_fail(err, AR_EMISUSE, "order must be AR_ORDER_ASC or AR_ORDER_DESC");
    if (q->after && q->before)
        return ar_fail(err, AR_EMISUSE, "after and before cannot be given together");
    if (q->after)
        return cursor_parse(err, "after", q->after, key);
    if (q->before)
        return cursor_parse(err, "before", q->before, key);
    return AR_OK;
}

static void reverse(ar_event *items, size_t n)
{
    for (size_t i = 0; i < n / 2; i++) {
        ar_event t = items[i];
        items[i] = items[n - 1 - i];
        items[n - 1 - i] = t;
    }
}

/* Events listed into an array in an arena: the visitor of events_list. */
typedef struct event_fill {
    ar_arena *arena;
    ar_err *err;
    ar_event *items;
    size_t n, cap;
    int64_t limit;
} event_fill;

static int fill_event(void *ud, const ar_db_event_row *row)
{
    event_fill *f = ud;
    if (f->n == f->cap) {
        /* the old array stays in the arena: at most as much again is wasted */
        size_t cap = f->cap ? 2 * f->cap : (f->limit < 64 ? (size_t)f->limit + 1 : 64);
        ar_event *grown = ar_arena_alloc(f->arena, cap * sizeof *grown);
        if (!grown)
            return ar_fail(f->err, AR_ENOMEM, "out of memory listing events");
        if (f->n)
            memcpy(grown, f->items, f->n * sizeof *grown);
        f->items = grown;
        f->cap = cap;
    }
    int rc = ar_row_to_event(row, f->arena, &f->items[f->n], f->err);
    if (rc == AR_OK)
        f->n++;
    return rc;
}

/* Lists the events of q past `key` (see the backend's events_list) into `arena`. */
static int events_list(ar_store *store, const ar_event_query *q, const int64_t *key, int asc, int64_t limit,
                       ar_arena *arena, ar_event **out, size_t *n)
{
    event_fill f = { arena, &store->err, NULL, 0, 0, limit };
    *out = NULL;
    *n = 0;
    int rc = store->be->events_list(store->db, q, key, asc, limit, fill_event, &f, &store->err);
    if (rc)
        return rc;
    *out = f.items;
    *n = f.n;
    return AR_OK;
}

/* Whether any event matching q follows position g in q's order. */
static int follows(ar_store *store, const ar_event_query *q, int64_t g, int *out)
{
    ar_arena scratch = { &store->alloc, NULL };
    ar_event *items;
    size_t n;
    int rc = events_list(store, q, &g, q->order == AR_ORDER_ASC, 1, &scratch, &items, &n);
    ar_arena_release(&scratch);
    *out = rc == AR_OK && n > 0;
    return rc;
}

/* Lists one page of an agent's events in the query's order (by id). `after`
 * takes the events that follow the cursor, `before` the `limit` events that
 * precede it (still in the query's order). *next_cursor (may be NULL) gets
 * the cursor of the following page, or NULL when no event follows this one
 * or the page is empty because limit is 0.
 * *out is freed with ar_event_list_free. Returns AR_EMISUSE (bad query or
 * cursor), AR_ENOMEM or a store error, with *out NULL. */
int ar_events_list(ar_event_list **out, char **next_cursor, ar_store *store, const ar_event_query *q)
{
    int rc = ar_store_usable(store);
    if (out)
        *out = NULL;
    if (next_cursor)
        *next_cursor = NULL;
    if (rc)
        return rc;
    ar_err *err = &store->err;
    if (!out)
        return ar_fail(err, AR_EMISUSE, "out is required");
    int asc = q && q->order == AR_ORDER_ASC;
    int64_t g = asc ? 0 : INT64_MAX;    /* where the page starts: before every event in q's order */
    if ((rc = query_check(err, q, &g)))
        return rc;
    int backwards = q->before != NULL;
    /* a page before the cursor is read walking the other way, then turned round */
    int sql_asc = backwards ? !asc : asc;
    int64_t fetch = backwards || q->limit == INT64_MAX ? q->limit : q->limit + 1;

    event_list_box *box = ar_mem_alloc(&store->alloc, sizeof *box);
    if (!box)
        return ar_fail(err, AR_ENOMEM, "out of memory listing events");
    box->alloc = store->alloc;
    box->arena.alloc = &box->alloc;
    box->arena.head = NULL;
    box->list.n = 0;
    box->list.items = NULL;
    /* an empty page has no position to continue from: a cursor would give
     * a paging loop this same page again and again */
    if (q->limit == 0) {
        *out = &box->list;
        return AR_OK;
    }
    char *cursor = NULL;
    ar_event *items;
    size_t n;
    int more = 0;
    if ((rc = events_list(store, q, q->after || q->before ? &g : NULL, sql_asc, fetch, &box->arena, &items, &n)))
        goto cleanup;
    if (backwards) {
        reverse(items, n);
    } else {
        more = (int64_t)n > q->limit;
        if (more)
            n = (size_t)q->limit;
    }
    /* the page ends after its last event; an empty page ends where it starts */
    int64_t end = n ? position_after(items[n - 1].id, asc) : g;
    if (backwards && next_cursor && (rc = follows(store, q, end, &more)))
        goto cleanup;
    if (more && next_cursor && !(cursor = cursor_make(&store->alloc, end))) {
        rc = ar_fail(err, AR_ENOMEM, "out of memory listing events");
        goto cleanup;
    }
    box->list.items = n ? items : NULL;
    box->list.n = n;
    *out = &box->list;
    if (next_cursor)
        *next_cursor = cursor;
    return AR_OK;
cleanup:
    ar_event_list_free(&box->list);
    return rc;
}

void ar_event_list_free(ar_event_list *list)
{
    if (!list)
        return;
    event_list_box *box = (event_list_box *)((char *)list - offsetof(event_list_box, list));
    ar_allocator a = box->alloc;
    ar_arena_release(&box->arena);
    a.free(a.ud, box);
}

/* Counts the events matching the query's filters (limit, order and cursors
 * are checked but do not count). */
int ar_events_count(int64_t *out, ar_store *store, const ar_event_query *q)
{
    int rc = ar_store_usable(store);
    if (out)
        *out = 0;
    int64_t key;
    if (rc || (rc = query_check(&store->err, q, &key)))
        return rc;
    if (!out)
        return ar_fail(&store->err, AR_EMISUSE, "out is required");
    return store->be->events_count(store->db, q, out, &store->err);
}

/* Types counted into an array in an arena: the visitor of events_summary. */
typedef struct type_fill {
    ar_arena *arena;
    ar_err *err;
    char owner[80];
    ar_type_count *types;
    size_t n, cap;
} type_fill;

static int fill_type(void *ud, ar_db_text type, int64_t count)
{
    type_fill *f = ud;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        ar_type_count *grown = ar_arena_alloc(f->arena, cap * sizeof *grown);
        if (!grown)
            return ar_fail(f->err, AR_ENOMEM, "out of memory summarising events");
        if (f->n)
            memcpy(grown, f->types, f->n * sizeof *grown);
        f->types = grown;
        f->cap = cap;
    }
    ar_type_count *tc = &f->types[f->n];
    int rc = ar_row_text_copy(type, f->owner, "type", f->arena, &tc->type, f->err);
    if (rc)
        return rc;
    if (!tc->type)
        return ar_fail(f->err, AR_ECORRUPT, "%s: stored type is damaged: it is missing", f->owner);
    tc->count = count;
    f->n++;
    return AR_OK;
}

/* Summarises one agent's events, read in one snapshot: total, count per type
 * (sorted by type), number of distinct sessions, first and last `at`
 * (AR_UNSET without events). *out is freed with ar_event_summary_free. */
int ar_events_summary(ar_event_summary **out, ar_store *store, const char *agent)
{
    int rc = ar_store_usable(store);
    if (out)
        *out = NULL;
    if (rc)
        return rc;
    if (!out)
        return ar_fail(&store->err, AR_EMISUSE, "out is required");
    if ((rc = ar_text_check(&store->err, "agent", agent, 1, 1)))
        return rc;
    event_summary_box *box = ar_mem_alloc(&store->alloc, sizeof *box);
    if (!box)
        return ar_fail(&store->err, AR_ENOMEM, "out of memory summarising events");
    box->alloc = store->alloc;
    box->arena.alloc = &box->alloc;
    box->arena.head = NULL;
    type_fill f = { &box->arena, &store->err, "", NULL, 0, 0 };
    snprintf(f.owner, sizeof f.owner, "an event of agent %.48s", agent);
    ar_event_summary *sum = &box->summary;
    memset(sum, 0, sizeof *sum);
    if ((rc = store->be->events_summary(store->db, agent, &sum->total, &sum->sessions, &sum->first_at,
                                        &sum->last_at, fill_type, &f, &store->err)) == AR_OK) {
        sum->by_type = f.n ? f.types : NULL;
        sum->n_types = f.n;
    }
    if (rc) {
        ar_arena_release(&box->arena);
        ar_mem_free(&store->alloc, box);
        return rc;
    }
    *out = &box->summary;
    return AR_OK;
}

void ar_event_summary_free(ar_event_summary *summary)
{
    if (!summary)
        return;
    event_summary_box *box = (event_summary_box *)((char *)summary - offsetof(event_summary_box, summary));
    ar_allocator a = box->alloc;
    ar_arena_release(&box->arena);
    a.free(a.ud, box);
}

/* ---- deleting ------------------------------------------------------------- */

/* Deletes every event of `agent` and no other; *out (may be NULL) gets the count. */
int ar_events_delete(int64_t *out, ar_store *store, const char *agent)
{
    int rc = ar_store_writable(store, "delete events");
    if (out)
        *out = 0;
    if (rc || (rc = ar_text_check(&store->err, "agent", agent, 1, 1)))
        return rc;
    int64_t n = 0;
    if ((rc = store->be->events_delete(store->db, agent, &n, &store->err)))
        return rc;
    if (out)
        *out = n;
    return AR_OK;
}

/* Applies the age and per-agent count limits in one transaction: an event
 * goes when its `at` is more than older_than seconds ago, or when it is not
 * among its agent's keep_last newest (by at, then id). Negative values leave
 * a criterion out; with both out nothing is deleted. *out (may be NULL) gets
 * the count. AR_EMISUSE for a NaN or huge older_than; on a store error
 * nothing is deleted. */
int ar_events_retain(int64_t *out, ar_store *store, const ar_event_retention *policy)
{
    int rc = ar_store_writable(store, "apply event retention");
    if (out)
        *out = 0;
    if (rc)
        return rc;
    ar_err *err = &store->err;
    if (!policy)
        return ar_fail(err, AR_EMISUSE, "policy is NULL");
    if ((rc = ar_opts_version_check(err, "ar_event_retention", policy->version, AR_EVENT_RETENTION_VERSION,
                                    "AR_EVENT_RETENTION_INIT")))
        return rc;
    if (policy->older_than != policy->older_than || policy->older_than > 1e12)
        return ar_fail(err, AR_EMISUSE, "older_than must be a number of seconds (negative: no age limit)");
    int by_age = policy->older_than >= 0, by_count = policy->keep_last >= 0;
    if (!by_age && !by_count)
        return AR_OK;
    int64_t aged = 0, beyond = 0;
    const ar_backend *be = store->be;
    if ((rc = be->txn_begin(store->db, err)))
        return rc;
    if (by_age && (rc = be->events_delete_before(store->db, ar_now_ms() - (int64_t)(policy->older_than * 1000.0),
                                                 &aged, err)))
        goto cleanup;
    if (by_count && (rc = be->events_keep_last(store->db, policy->keep_last, &beyond, err)))
        goto cleanup;
    if ((rc = be->txn_commit(store->db, err)))
        return rc;
    if (out)
        *out = aged + beyond;
    return AR_OK;
cleanup:
    be->txn_rollback(store->db);
    return rc;
}
