/* export.c -- the JSON Lines export: runs (with steps and checkpoint) and
 * events, streamed in bounded memory. The line of a run is made in one
 * place (put_run_fields): a field added to records is added there. */
#include "internal.h"
#include "export.h"
#include "jsonw.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_PAGE AR_EXPORT_RUN_PAGE /* runs read at a time */
#define STEP_BATCH AR_EXPORT_STEP_BATCH /* steps read at a time */
#define EVENT_PAGE 256  /* events read at a time */

/* ---- reading in pages ---------------------------------------------------- */

typedef struct run_page {
    const ar_allocator *alloc;
    ar_err *err;
    ar_record *recs[RUN_PAGE];
    size_t n;
} run_page;

static int page_run(void *ud, const ar_db_run_row *row)
{
    run_page *pg = ud;
    if (pg->n == RUN_PAGE)
        return ar_fail(pg->err, AR_EIO, "the store returned more runs than were asked for");
    ar_record_box *box = ar_record_box_new(pg->alloc);
    if (!box)
        return ar_fail(pg->err, AR_ENOMEM, "out of memory reading runs");
    pg->recs[pg->n++] = &box->rec;
    return ar_row_to_record(row, box, pg->err);
}

static void page_release(run_page *pg)
{
    for (size_t i = 0; i < pg->n; i++)
        ar_record_free(pg->recs[i]);
    pg->n = 0;
}

static int io_write(void *ud, const char *data, size_t len)
{
    ar_export_io *io = ud;
    ar_export_io_end(io);
    return io->write(io->ud, data, len);
}

void ar_export_io_init(ar_export_io *io, ar_jsonw *w, ar_store *store, ar_write_fn write, void *ud)
{
    io->store = store;
    io->write = write;
    io->ud = ud;
    io->reading = 0;
    ar_jsonw_init(w, &store->alloc, io_write, io, &store->err);
}

int ar_export_io_read(ar_export_io *io)
{
    ar_store *store = io->store;
    if (io->reading || !store->be->read_begin)
        return AR_OK;
    return store->be->read_begin(store->db, &io->reading, &store->err);
}

void ar_export_io_end(ar_export_io *io)
{
    if (io->reading) {
        io->store->be->read_end(io->store->db);
        io->reading = 0;
    }
}

static void page_free(ar_store *store, void *page);

/* The next page of runs of q (checked) after key *after (from the start when
 * NULL), ascending: *out[0..*n) owned by *page (page_free). A page shorter
 * than its size is the last. */
static int runs_page(ar_export_io *io, const ar_run_query *q, const int64_t *after, ar_record ***out, size_t *n,
                     void **page)
{
    ar_store *store = io->store;
    run_page *pg = ar_mem_alloc(&store->alloc, sizeof *pg);
    *out = NULL;
    *n = 0;
    *page = NULL;
    if (!pg)
        return ar_fail(&store->err, AR_ENOMEM, "out of memory reading runs");
    pg->alloc = &store->alloc;
    pg->err = &store->err;
    pg->n = 0;
    int rc = ar_export_io_read(io);
    if (rc == AR_OK)
        rc = store->be->runs_list(store->db, q, after, 0, 1, RUN_PAGE, page_run, pg, &store->err);
    if (rc) {
        page_free(store, pg);
        return rc;
    }
    *out = pg->recs;
    *n = pg->n;
    *page = pg;
    return AR_OK;
}

static void page_free(ar_store *store, void *page)
{
    if (!page)
        return;
    page_release(page);
    ar_mem_free(&store->alloc, page);
}

/* The next batch of steps of run `key` from seq `from` into `arena`; a batch
 * shorter than its size is the last. */
static int steps_batch(ar_export_io *io, int64_t key, const char *run_id, int64_t from, ar_arena *arena,
                       ar_step **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int rc = ar_export_io_read(io);
    if (rc)
        return rc;
    return ar_store_steps_fetch(io->store, key, run_id, from, STEP_BATCH, arena, out, n, &io->store->err);
}

/* One run through the walker: its head, its steps a batch at a time, its end. */
static int walk_run(ar_export_io *io, ar_jsonw *w, ar_record *r, const ar_export_walker *wk)
{
    int rc = wk->run(io, w, r, wk->ud);
    if (rc)
        return rc;
    ar_arena arena = { &io->store->alloc, NULL };
    int64_t key = ar_id_tick(r->id), from = 1;
    for (;;) {
        ar_step *steps;
        size_t n;
        if ((rc = steps_batch(io, key, r->id, from, &arena, &steps, &n)))
            break;
        for (size_t i = 0; i < n; i++)
            wk->step(w, &steps[i], from == 1 && i == 0, wk->ud);
        if (n)
            from = steps[n - 1].seq + 1;
        ar_arena_release(&arena);
        if ((rc = w->rc) || n < STEP_BATCH)
            break;
    }
    ar_arena_release(&arena);
    if (rc)
        return rc;
    wk->run_end(w, wk->ud);
    return w->rc;
}

int ar_export_walk(ar_export_io *io, ar_jsonw *w, const ar_run_query *q, const ar_export_walker *wk, int64_t *runs)
{
    int64_t key = 0;
    int started = 0, rc;
    while ((rc = w->rc) == AR_OK) {
        ar_record **recs;
        size_t n;
        void *page;
        if ((rc = runs_page(io, q, started ? &key : NULL, &recs, &n, &page)))
            break;
        started = 1;
        for (size_t i = 0; rc == AR_OK && i < n; i++)
            if ((rc = walk_run(io, w, recs[i], wk)) == AR_OK)
                (*runs)++;
        if (n)
            key = ar_id_tick(recs[n - 1]->id);
        page_free(io->store, page);
        if (rc || n < RUN_PAGE)
            break;
    }
    return rc;
}

int ar_export_query_check(ar_store *store, const ar_run_query *q, ar_run_query *out, int *filters)
{
    ar_err *err = &store->err;
    ar_run_query all = AR_RUN_QUERY_INIT;
    int rc;
    if (!q)
        q = &all;
    if ((rc = ar_opts_version_check(err, "ar_run_query", q->version, AR_RUN_QUERY_VERSION, "AR_RUN_QUERY_INIT")))
        return rc;
    if ((rc = ar_text_check(err, "agent", q->agent, 0, 0)) ||
        (rc = ar_text_check(err, "user", q->user, 0, 0)) ||
        (rc = ar_text_check(err, "edition", q->edition, 0, 0)) ||
        (rc = ar_text_check(err, "parent", q->parent, 0, 0)))
        return rc;
    if (q->n_status && !q->status)
        return ar_fail(err, AR_EMISUSE, "status is NULL with n_status > 0");
    if (q->n_status > AR_RUN_QUERY_MAX_STATUSES)
        return ar_fail(err, AR_EMISUSE, "too many statuses in the query (at most %d)", AR_RUN_QUERY_MAX_STATUSES);
    for (size_t i = 0; i < q->n_status; i++)
        if (!ar_status_name(q->status[i]))
            return ar_fail(err, AR_EMISUSE, "unknown status %d", (int)q->status[i]);
    *out = *q;
    out->limit = INT64_MAX;
    out->after = out->before = NULL;
    out->order = AR_ORDER_ASC;
    *filters = q->agent || q->user || q->edition || q->parent || q->n_status || q->since != AR_UNSET ||
               q->until != AR_UNSET;
    return AR_OK;
}

/* ---- the lines ------------------------------------------------------------ */

static void put_usage(ar_jsonw *w, const ar_usage *u, int64_t cost_nanos, int with_cost)
{
    ar_jsonw_lit(w, "{\"input_tokens\":");
    ar_jsonw_int(w, u->input_tokens);
    ar_jsonw_lit(w, ",\"output_tokens\":");
    ar_jsonw_int(w, u->output_tokens);
    ar_jsonw_lit(w, ",\"total_tokens\":");
    ar_jsonw_int(w, u->input_tokens + u->output_tokens);
    if (with_cost) {
        ar_jsonw_lit(w, ",\"cost\":");
        ar_jsonw_nanos(w, cost_nanos);
    }
    for (size_t i = 0; i < u->n_extra; i++) {
        ar_jsonw_key(w, 1, u->extra[i].name);
        ar_jsonw_int(w, u->extra[i].value);
    }
    ar_jsonw_lit(w, "}");
}

static void put_budget(ar_jsonw *w, const ar_budget *b)
{
    static const char *const names[] = { "max_steps", "max_input_tokens", "max_output_tokens", "max_tokens" };
    const int64_t ints[] = { b->max_steps, b->max_input_tokens, b->max_output_tokens, b->max_tokens };
    int comma = 0;
    ar_jsonw_lit(w, "{");
    for (size_t i = 0; i < 4; i++) {
        if (ints[i] >= 0) {
            ar_jsonw_key(w, comma, names[i]);
            ar_jsonw_int(w, ints[i]);
            comma = 1;
        }
    }
    if (b->max_cost >= 0) {
        ar_jsonw_key(w, comma, "max_cost");
        ar_jsonw_double(w, b->max_cost);
        comma = 1;
    }
    if (b->max_seconds >= 0) {
        ar_jsonw_key(w, comma, "max_seconds");
        ar_jsonw_double(w, b->max_seconds);
    }
    ar_jsonw_lit(w, "}");
}

static int64_t cost_nanos_of(double cost)
{
    int64_t n = 0;
    ar_cost_to_nanos(&n, cost);
    return n;
}

/* Every field of a run as read back, in the documented order (see
 * ar_store_export), without the closing brace: the checkpoint and the steps
 * follow. Optional fields only when the run has them. */
static void put_run_fields(ar_jsonw *w, const ar_record *r, int64_t cost_nanos)
{
    ar_jsonw_lit(w, "{\"type\":\"run\",\"id\":");
    ar_jsonw_cstr(w, r->id);
    ar_jsonw_lit(w, ",\"agent\":");
    ar_jsonw_cstr(w, r->agent);
    ar_jsonw_lit(w, ",\"goal\":");
    ar_jsonw_cstr(w, r->goal);
    if (r->user) {
        ar_jsonw_lit(w, ",\"user\":");
        ar_jsonw_cstr(w, r->user);
    }
    if (r->edition) {
        ar_jsonw_lit(w, ",\"edition\":");
        ar_jsonw_cstr(w, r->edition);
    }
    if (r->parent) {
        ar_jsonw_lit(w, ",\"parent\":");
        ar_jsonw_cstr(w, r->parent);
    }
    ar_jsonw_lit(w, ",\"status\":");
    ar_jsonw_cstr(w, ar_status_name(r->status));
    if (r->output) {
        ar_jsonw_lit(w, ",\"output\":");
        ar_jsonw_json(w, r->output, strlen(r->output));
    }
    if (r->error) {
        ar_jsonw_lit(w, ",\"error\":");
        ar_jsonw_cstr(w, r->error);
    }
    if (r->limit.limit) {
        ar_jsonw_lit(w, ",\"limit\":{\"name\":");
        ar_jsonw_cstr(w, r->limit.limit);
        ar_jsonw_lit(w, ",\"value\":");
        ar_jsonw_double(w, r->limit.limit_value);
        ar_jsonw_lit(w, ",\"reached\":");
        ar_jsonw_double(w, r->limit.value);
        ar_jsonw_lit(w, "}");
    }
    ar_jsonw_lit(w, ",\"budget\":");
    put_budget(w, &r->budget);
    ar_jsonw_lit(w, ",\"iterations\":");
    ar_jsonw_int(w, r->iterations);
    ar_jsonw_lit(w, ",\"usage\":");
    put_usage(w, &r->usage, cost_nanos, 1);
    if (r->latency_ms != AR_UNSET) {
        ar_jsonw_lit(w, ",\"latency_ms\":");
        ar_jsonw_int(w, r->latency_ms);
    }
    ar_jsonw_lit(w, ",\"created_at\":");
    ar_jsonw_int(w, r->created_at);
    if (r->finished_at != AR_UNSET) {
        ar_jsonw_lit(w, ",\"finished_at\":");
        ar_jsonw_int(w, r->finished_at);
    }
    ar_jsonw_lit(w, ",\"updated_at\":");
    ar_jsonw_int(w, r->updated_at);
    ar_jsonw_lit(w, ",\"metadata\":");
    if (r->metadata)
        ar_jsonw_json(w, r->metadata, strlen(r->metadata));
    else
        ar_jsonw_lit(w, "{}");
    if (r->forked_from) {
        ar_jsonw_lit(w, ",\"forked_from\":{\"run\":");
        ar_jsonw_cstr(w, r->forked_from);
        ar_jsonw_lit(w, ",\"seq\":");
        ar_jsonw_int(w, r->forked_seq);
        ar_jsonw_lit(w, "}");
    }
    if (r->request) {
        ar_jsonw_lit(w, ",\"request\":");
        ar_jsonw_json(w, r->request, strlen(r->request));
    }
    if (r->response) {
        ar_jsonw_lit(w, ",\"response\":");
        ar_jsonw_json(w, r->response, strlen(r->response));
    }
}

static void put_step(ar_jsonw *w, const ar_step *s, int comma)
{
    ar_jsonw_lit(w, comma ? ",{\"seq\":" : "{\"seq\":");
    ar_jsonw_int(w, s->seq);
    ar_jsonw_lit(w, ",\"kind\":");
    ar_jsonw_cstr(w, s->kind);
    if (s->name) {
        ar_jsonw_lit(w, ",\"name\":");
        ar_jsonw_cstr(w, s->name);
    }
    if (s->content) {
        ar_jsonw_lit(w, ",\"content\":");
        ar_jsonw_json(w, s->content, s->content_len);
    }
    ar_jsonw_lit(w, ",\"usage\":");
    put_usage(w, &s->usage, 0, 0);
    ar_jsonw_lit(w, ",\"cost\":");
    ar_jsonw_nanos(w, cost_nanos_of(s->usage.cost));
    ar_jsonw_lit(w, ",\"duration_ms\":");
    ar_jsonw_int(w, s->duration_ms);
    ar_jsonw_lit(w, ",\"at\":");
    ar_jsonw_int(w, s->at);
    ar_jsonw_lit(w, "}");
}

static void put_event(ar_jsonw *w, const ar_event *e)
{
    ar_jsonw_lit(w, "{\"type\":\"event\",\"id\":");
    ar_jsonw_int(w, e->id);
    ar_jsonw_lit(w, ",\"agent\":");
    ar_jsonw_cstr(w, e->agent);
    ar_jsonw_lit(w, ",\"session\":");
    ar_jsonw_int(w, e->session);
    ar_jsonw_lit(w, ",\"event_type\":");
    ar_jsonw_cstr(w, e->type);
    if (e->content) {
        ar_jsonw_lit(w, ",\"content\":");
        ar_jsonw_str(w, e->content, e->content_len);
    }
    ar_jsonw_lit(w, ",\"metadata\":");
    if (e->metadata)
        ar_jsonw_json(w, e->metadata, strlen(e->metadata));
    else
        ar_jsonw_lit(w, "{}");
    if (e->run) {
        ar_jsonw_lit(w, ",\"run\":");
        ar_jsonw_cstr(w, e->run);
    }
    ar_jsonw_lit(w, ",\"at\":");
    ar_jsonw_int(w, e->at);
    ar_jsonw_lit(w, "}\n");
}

/* ---- the agents whose events go with the runs ----------------------------- */

typedef struct agent_set {
    const ar_allocator *alloc;
    char **names;   /* sorted */
    size_t n, cap;
} agent_set;

static int agent_find(const agent_set *s, const char *name, size_t *at)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->names[mid], name);
        if (c == 0) {
            *at = mid;
            return 1;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = lo;
    return 0;
}

static int agent_add(agent_set *s, const char *name)
{
    size_t at;
    if (agent_find(s, name, &at))
        return AR_OK;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        char **grown = ar_mem_realloc(s->alloc, s->names, cap * sizeof *grown);
        if (!grown)
            return AR_ENOMEM;
        s->names = grown;
        s->cap = cap;
    }
    size_t len = strlen(name);
    char *copy = ar_mem_alloc(s->alloc, len + 1);
    if (!copy)
        return AR_ENOMEM;
    memcpy(copy, name, len + 1);
    memmove(s->names + at + 1, s->names + at, (s->n - at) * sizeof *s->names);
    s->names[at] = copy;
    s->n++;
    return AR_OK;
}

static void agent_set_free(agent_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        ar_mem_free(s->alloc, s->names[i]);
    ar_mem_free(s->alloc, s->names);
}

/* Events read a page at a time into an arena (written once the read is over,
 * so the write function never runs inside a backend's scan). */
typedef struct event_fill {
    ar_arena *arena;
    ar_err *err;
    ar_event *items;
    size_t n;
    int64_t last;
} event_fill;

static int fill_event(void *ud, const ar_db_event_row *row)
{
    event_fill *f = ud;
    if (f->n == EVENT_PAGE)
        return ar_fail(f->err, AR_EIO, "the store returned more events than were asked for");
    f->last = row->id;
    int rc = ar_row_to_event(row, f->arena, &f->items[f->n], f->err);
    if (rc == AR_OK)
        f->n++;
    return rc;
}

static int export_events(ar_export_io *io, ar_jsonw *w, const agent_set *agents, int all, int64_t *count)
{
    ar_store *store = io->store;
    ar_arena arena = { &store->alloc, NULL };
    int64_t after = 0;
    int rc = AR_OK;
    if (!all && agents->n == 0)
        return AR_OK;
    for (;;) {
        event_fill f = { &arena, &store->err, NULL, 0, 0 };
        if (!(f.items = ar_arena_alloc(&arena, EVENT_PAGE * sizeof *f.items))) {
            rc = ar_fail(&store->err, AR_ENOMEM, "out of memory reading events");
            break;
        }
        if ((rc = ar_export_io_read(io)) ||
            (rc = store->be->events_scan(store->db, after ? &after : NULL, EVENT_PAGE, fill_event, &f, &store->err)))
            break;
        size_t at;
        for (size_t i = 0; i < f.n; i++) {
            if (!all && !agent_find(agents, f.items[i].agent, &at))
                continue;
            put_event(w, &f.items[i]);
            (*count)++;
        }
        ar_arena_release(&arena);
        /* a filtered export may scan many pages writing nothing: the
         * snapshot is not held across the whole table */
        ar_export_io_end(io);
        if ((rc = w->rc) || f.n < EVENT_PAGE)
            break;
        after = f.last;
    }
    ar_arena_release(&arena);
    return rc;
}

/* The JSON Lines walk: the agents of the selected runs (for their events,
 * when the query filters), and each run's line. */
typedef struct line_walk {
    agent_set *agents;  /* NULL: every agent's events go out */
} line_walk;

/* A run's line up to its steps: its fields and its checkpoint. */
static int line_run(ar_export_io *io, ar_jsonw *w, ar_record *r, void *ud)
{
    line_walk *lw = ud;
    ar_store *store = io->store;
    if (lw->agents && agent_add(lw->agents, r->agent))
        return ar_fail(&store->err, AR_ENOMEM, "out of memory exporting runs");
    ar_record_box *box = (ar_record_box *)((char *)r - offsetof(ar_record_box, rec));
    put_run_fields(w, r, box->cost_nanos);
    ar_db_text state;
    int64_t seq = 0;
    int rc = ar_export_io_read(io);
    if (rc || (rc = store->be->checkpoint_get(store->db, ar_id_tick(r->id), &state, &seq, &store->err)))
        return rc;
    if (state.s) {
        char owner[64];
        snprintf(owner, sizeof owner, "run %s checkpoint", r->id);
        if ((rc = ar_row_json_check(state, owner, "state", &store->err)))
            return rc;
        /* copied: the text is the backend's until the next call on the
         * store, which the write function may make */
        int failed = 0;
        ar_arena copy = { &store->alloc, NULL };
        const char *text = ar_arena_strndup(&copy, state.s, state.len, &failed);
        if (failed)
            return ar_fail(&store->err, AR_ENOMEM, "out of memory reading run %s checkpoint", r->id);
        ar_jsonw_lit(w, ",\"checkpoint\":{\"state\":");
        ar_jsonw_json(w, text, state.len);
        ar_arena_release(&copy);
        ar_jsonw_lit(w, ",\"seq\":");
        ar_jsonw_int(w, seq);
        ar_jsonw_lit(w, "}");
    }
    ar_jsonw_lit(w, ",\"steps\":[");
    return w->rc;
}

static void line_step(ar_jsonw *w, const ar_step *s, int first, void *ud)
{
    (void)ud;
    put_step(w, s, !first);
}

static void line_end(ar_jsonw *w, void *ud)
{
    (void)ud;
    ar_jsonw_lit(w, "]}\n");
}

/* ---- the call ------------------------------------------------------------- */

int ar_store_export(ar_export_report *out, ar_store *store, const ar_run_query *query, ar_write_fn write, void *ud)
{
    ar_export_report rep = { 0, 0, 0 };
    if (out)
        *out = rep;
    int rc = ar_store_usable(store);
    if (rc)
        return rc;
    if (!write)
        return ar_fail(&store->err, AR_EMISUSE, "write is required");
    ar_run_query q;
    int filters;
    if ((rc = ar_export_query_check(store, query, &q, &filters)))
        return rc;
    ar_jsonw w;
    ar_export_io io;
    ar_export_io_init(&io, &w, store, write, ud);
    agent_set agents = { &store->alloc, NULL, 0, 0 };
    ar_jsonw_lit(&w, "{\"type\":\"agentrun\",\"format\":1,\"exported_at\":");
    ar_jsonw_int(&w, ar_now_ms());
    ar_jsonw_lit(&w, "}\n");
    line_walk lw = { filters ? &agents : NULL };
    const ar_export_walker wk = { line_run, line_step, line_end, &lw };
    rc = ar_export_walk(&io, &w, &q, &wk, &rep.runs);
    if (rc == AR_OK)
        rc = export_events(&io, &w, &agents, !filters, &rep.events);
    if (rc == AR_OK)
        rc = ar_jsonw_flush(&w);
    ar_export_io_end(&io);
    rep.bytes = (int64_t)w.bytes;
    ar_jsonw_release(&w);
    agent_set_free(&agents);
    if (out)
        *out = rep;
    return rc;
}
