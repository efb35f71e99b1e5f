/* rows.c -- rows as a backend loads them, turned into records, steps and
 * events. Every stored value is checked here, once for every backend: a
 * value damaged by another program (text that is not UTF-8 or holds a NUL
 * byte where the API hands out a C string, JSON that is not valid) fails the
 * read with AR_ECORRUPT naming the row and the field. */
#include "internal.h"
#include "json.h"

#include <stdio.h>
#include <string.h>

/* One row being read: the first failure sticks, and every later reader
 * returns NULL. */
typedef struct rowck {
    ar_arena *arena;
    const ar_allocator *alloc;
    ar_err *err;
    char owner[96];
    /* a step names itself only when a message needs it (a transcript reads
     * thousands of rows, and formatting each name would cost more than
     * checking the row) */
    const char *step_run;
    long long step_seq;
    int rc;
} rowck;

static const char *owner_of(rowck *r)
{
    if (!r->owner[0] && r->step_run)
        snprintf(r->owner, sizeof r->owner, "run %s step %lld", r->step_run, r->step_seq);
    return r->owner;
}

/* The one wording of a damaged row, which ar_row_damaged_field reads back. */
#define DAMAGED_MID ": stored "
#define DAMAGED_END " is damaged: "

static int damaged(rowck *r, const char *field, const char *why)
{
    if (r->rc == AR_OK)
        r->rc = ar_fail(r->err, AR_ECORRUPT, "%s" DAMAGED_MID "%s" DAMAGED_END "%s", owner_of(r), field, why);
    return r->rc;
}

static void nomem(rowck *r)
{
    if (r->rc == AR_OK)
        r->rc = ar_fail(r->err, AR_ENOMEM, "out of memory reading %s", owner_of(r));
}

/* t copied into the arena with a NUL after it; NULL stays NULL. */
static const char *keep(rowck *r, ar_db_text t)
{
    if (r->rc || !t.s)
        return NULL;
    int failed = 0;
    char *copy = ar_arena_strndup(r->arena, t.s, t.len, &failed);
    if (failed)
        nomem(r);
    return copy;
}

/* Text handed out as a C string: UTF-8 without NUL bytes. */
static const char *text(rowck *r, ar_db_text t, const char *field)
{
    if (r->rc || !t.s)
        return NULL;
    if (memchr(t.s, '\0', t.len)) {
        damaged(r, field, "it holds a NUL byte");
        return NULL;
    }
    if (!ar_utf8_valid(t.s, t.len)) {
        damaged(r, field, "it is not valid UTF-8");
        return NULL;
    }
    return keep(r, t);
}

/* Text handed out with its length (NUL bytes allowed): UTF-8. */
static const char *content(rowck *r, ar_db_text t, const char *field, size_t *len)
{
    *len = 0;
    if (r->rc || !t.s)
        return NULL;
    if (!ar_utf8_valid(t.s, t.len)) {
        damaged(r, field, "it is not valid UTF-8");
        return NULL;
    }
    const char *s = keep(r, t);
    if (s)
        *len = t.len;
    return s;
}

/* JSON text (an object when `object`). */
static const char *json(rowck *r, ar_db_text t, const char *field, int object, size_t *len)
{
    *len = 0;
    if (r->rc || !t.s)
        return NULL;
    char why[160];
    if (object ? ar_json_validate_object(t.s, t.len, why, sizeof why) : ar_json_validate(t.s, t.len, why, sizeof why)) {
        damaged(r, field, why);
        return NULL;
    }
    const char *s = keep(r, t);
    if (s)
        *len = t.len;
    return s;
}

/* A counters column (a JSON object of counter values) into the usage
 * extras, names in the row's arena. Judged by the parser, not by the API's
 * JSON rules: a schema-1 sum may be past 2^53 and still be read. */
static void counters(rowck *r, ar_db_text t, ar_usage *u)
{
    u->n_extra = 0;
    u->extra = NULL;
    size_t len;
    const char *s = content(r, t, "counters", &len);
    if (!s)
        return;
    ar_totals sums = { 0, 0, 0, 0, 0, 0, NULL };
    int rc = ar_counters_parse(r->alloc, &sums, s, len);
    if (rc == AR_ECORRUPT)
        damaged(r, "counters", "not an object of counts");
    else if (rc)
        nomem(r);
    if (rc == AR_OK && sums.n_extra) {
        ar_counter *c = ar_arena_alloc(r->arena, sums.n_extra * sizeof *c);
        int failed = !c;
        for (size_t i = 0; c && i < sums.n_extra; i++) {
            c[i].name = ar_arena_strdup(r->arena, sums.extra[i].name, &failed);
            c[i].value = sums.extra[i].value;
        }
        if (failed)
            nomem(r);
        u->extra = c;
        u->n_extra = sums.n_extra;
    }
    ar_totals_free(r->alloc, &sums);
}

int ar_row_to_record(const ar_db_run_row *row, ar_record_box *box, ar_err *err)
{
    ar_record *rec = &box->rec;
    rowck r = { .arena = &box->arena, .alloc = &box->alloc, .err = err, .rc = AR_OK };
    snprintf(r.owner, sizeof r.owner, "run at key %lld", (long long)row->n);
    rec->id = text(&r, row->id, "id");
    if (rec->id)
        snprintf(r.owner, sizeof r.owner, "run %s", rec->id);
    rec->agent = text(&r, row->agent, "agent");
    rec->goal = text(&r, row->goal, "goal");
    rec->user = text(&r, row->user, "user");
    rec->edition = text(&r, row->edition, "edition");
    rec->parent = text(&r, row->parent, "parent");
    const char *status = text(&r, row->status, "status");
    if (r.rc == AR_OK && (!status || ar_status_parse(&rec->status, status)))
        damaged(&r, "status", "not a status name");
    size_t n;
    rec->output = json(&r, row->output, "output", 0, &n);
    rec->error = text(&r, row->error, "error");
    const char *limit = text(&r, row->limit_name, "limit");
    rec->limit.limit = ar_limit_name(limit);
    if (limit && !rec->limit.limit)
        damaged(&r, "limit", "not a budget limit name");
    rec->limit.limit_value = row->limit_value;
    rec->limit.value = row->limit_reached;
    /* judged by the parser: stored limits may be past today's ranges */
    const char *budget = content(&r, row->budget, "budget", &n);
    if (r.rc == AR_OK) {
        int brc = ar_budget_parse(&rec->budget, budget, n);
        if (brc == AR_ECORRUPT)
            damaged(&r, "budget", "not an object of non-negative limits");
        else if (brc)
            nomem(&r);
    }
    rec->iterations = row->iterations;
    rec->usage.input_tokens = row->input_tokens;
    rec->usage.output_tokens = row->output_tokens;
    rec->usage.total_tokens = row->input_tokens + row->output_tokens;
    box->cost_nanos = row->cost_nanos;
    rec->usage.cost = ar_nanos_to_cost(row->cost_nanos);
    counters(&r, row->counters, &rec->usage);
    rec->created_at = row->created_at;
    rec->finished_at = row->finished_at;
    rec->updated_at = row->updated_at;
    rec->latency_ms = row->finished_at == AR_UNSET ? AR_UNSET : row->finished_at - row->created_at;
    rec->metadata = json(&r, row->metadata, "metadata", 1, &n);
    rec->forked_from = text(&r, row->forked_from, "forked_from");
    rec->forked_seq = rec->forked_from ? row->forked_seq : 0;
    rec->request = json(&r, row->request, "request", 0, &n);
    rec->response = json(&r, row->response, "response", 0, &n);
    return r.rc;
}

int ar_row_to_step(const ar_db_step_row *row, const char *run_id, ar_arena *arena, ar_step *s, ar_err *err)
{
    rowck r = { .arena = arena, .alloc = arena->alloc, .err = err, .rc = AR_OK };
    r.step_run = run_id ? run_id : "?";
    r.step_seq = (long long)row->seq;
    memset(s, 0, sizeof *s);
    s->seq = row->seq;
    s->kind = text(&r, row->kind, "kind");
    if (r.rc == AR_OK && !s->kind)
        damaged(&r, "kind", "it is missing");
    s->name = text(&r, row->name, "name");
    s->content = json(&r, row->content, "content", 0, &s->content_len);
    s->usage.input_tokens = row->input_tokens;
    s->usage.output_tokens = row->output_tokens;
    s->usage.total_tokens = row->input_tokens + row->output_tokens;
    s->usage.cost = ar_nanos_to_cost(row->cost_nanos);
    counters(&r, row->counters, &s->usage);
    s->duration_ms = row->duration_ms;
    s->at = row->at;
    return r.rc;
}

int ar_row_to_event(const ar_db_event_row *row, ar_arena *arena, ar_event *e, ar_err *err)
{
    rowck r = { .arena = arena, .alloc = arena->alloc, .err = err, .rc = AR_OK };
    snprintf(r.owner, sizeof r.owner, "event %lld", (long long)row->id);
    size_t metadata_len;
    memset(e, 0, sizeof *e);
    e->id = row->id;
    e->agent = text(&r, row->agent, "agent");
    e->session = row->session;
    e->type = text(&r, row->type, "type");
    if (r.rc == AR_OK && (!e->agent || !e->type))
        damaged(&r, e->agent ? "type" : "agent", "it is missing");
    e->content = content(&r, row->content, "content", &e->content_len);
    e->metadata = json(&r, row->metadata, "metadata", 1, &metadata_len);
    e->run = text(&r, row->run, "run");
    e->at = row->at;
    return r.rc;
}

int ar_row_damaged_field(const ar_err *err, char *buf, size_t cap)
{
    if (cap == 0)
        return 0;
    buf[0] = '\0';
    if (err->code != AR_ECORRUPT)
        return 0;
    const char *mid = strstr(err->msg, DAMAGED_MID);
    if (!mid)
        return 0;
    const char *field = mid + strlen(DAMAGED_MID);
    const char *end = strstr(field, DAMAGED_END);
    if (!end || (size_t)(end - field) >= cap)
        return 0;
    memcpy(buf, field, (size_t)(end - field));
    buf[end - field] = '\0';
    return 1;
}

int ar_row_json_check(ar_db_text t, const char *owner, const char *field, ar_err *err)
{
    rowck r = { .arena = NULL, .alloc = NULL, .err = err, .rc = AR_OK };
    snprintf(r.owner, sizeof r.owner, "%s", owner);
    char why[160];
    if (t.s && ar_json_validate(t.s, t.len, why, sizeof why))
        damaged(&r, field, why);
    return r.rc;
}

int ar_row_text_copy(ar_db_text t, const char *owner, const char *field, ar_arena *arena, const char **out,
                     ar_err *err)
{
    rowck r = { .arena = arena, .alloc = arena->alloc, .err = err, .rc = AR_OK };
    snprintf(r.owner, sizeof r.owner, "%s", owner);
    *out = text(&r, t, field);
    return r.rc;
}

static int64_t sum_saturated(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

void ar_stats_from_row(const ar_db_stats *in, ar_stats *out)
{
    memset(out, 0, sizeof *out);
    out->runs = in->runs;
    for (int k = 0; k <= AR_WAITING; k++)
        out->by_status[k] = in->by_status[k];
    out->iterations = in->iterations;
    out->input_tokens = in->input_tokens;
    out->output_tokens = in->output_tokens;
    out->total_tokens = sum_saturated(in->input_tokens, in->output_tokens);
    /* a saturated nano sum is past what int64 holds: its nearest double instead */
    out->cost = in->cost_nanos == INT64_MAX || in->cost_nanos == INT64_MIN ? in->cost_approx / 1e9
                                                                           : ar_nanos_to_cost(in->cost_nanos);
    out->avg_latency_ms = in->avg_latency_ms;
}

int ar_store_load_run(ar_store *store, const char *id, ar_record_box *box, int64_t *key, int64_t *elapsed_ms,
                      int64_t *owner)
{
    int64_t n = ar_id_tick(id);
    if (n < 0)
        return ar_fail(&store->err, AR_ENOTFOUND, "no run with id %s", id);
    ar_db_run_row row;
    int rc = store->be->run_load(store->db, n, id, &row, &store->err);
    if (rc)
        return rc;
    if ((rc = ar_row_to_record(&row, box, &store->err)))
        return rc;
    if (key)
        *key = row.n;
    if (elapsed_ms)
        *elapsed_ms = row.elapsed_ms;
    if (owner)
        *owner = row.owner;
    return AR_OK;
}

int ar_store_run_key(ar_store *store, const char *id, int64_t *key)
{
    int64_t n = ar_id_tick(id);
    if (n < 0)
        return ar_fail(&store->err, AR_ENOTFOUND, "no run with id %s", id);
    int rc = store->be->run_exists(store->db, n, id, &store->err);
    if (rc == AR_OK)
        *key = n;
    return rc;
}
