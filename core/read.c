/* read.c -- reading runs back: get, streamed steps, listings with keyset cursors, counts, stats. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#define STEP_BATCH 256
#define GET_FETCH_MAX 65536 /* steps sized up front by ar_store_get before it grows */

/* Steps fetched into an array in an arena: the visitor of steps_fetch. */
typedef struct step_fill {
    ar_arena *arena;
    const char *run_id;
    ar_err *err;
    ar_step *steps;
    size_t n, max;
} step_fill;

static int fill_step(void *ud, const ar_db_step_row *row)
{
    step_fill *f = ud;
    if (f->n == f->max)
        return ar_fail(f->err, AR_EIO, "the store returned more steps than were asked for");
    int rc = ar_row_to_step(row, f->run_id, f->arena, &f->steps[f->n], f->err);
    if (rc == AR_OK)
        f->n++;
    return rc;
}

int ar_store_steps_fetch(ar_store *store, int64_t key, const char *run_id, int64_t from, size_t max,
                       ar_arena *arena, ar_step **out, size_t *n, ar_err *err)
{
    *out = NULL;
    *n = 0;
    step_fill f = { arena, run_id, err, NULL, 0, max };
    if (max && !(f.steps = ar_arena_alloc(arena, max * sizeof *f.steps)))
        return ar_fail(err, AR_ENOMEM, "out of memory reading steps");
    int rc = store->be->steps_fetch(store->db, key, from, max, fill_step, &f, err);
    if (rc)
        return rc;
    *out = f.steps;
    *n = f.n;
    return AR_OK;
}

int ar_store_get(ar_record **out, ar_store *store, const char *id, int with_steps)
{
    int rc = ar_store_usable(store);
    if (out)
        *out = NULL;
    if (rc)
        return rc;
    if (!out || !id)
        return ar_fail(&store->err, AR_EMISUSE, "out and id are required");
    ar_record_box *box = ar_record_box_new(&store->alloc);
    if (!box)
        return ar_fail(&store->err, AR_ENOMEM, "out of memory reading a run");
    int64_t key;
    if ((rc = ar_store_load_run(store, id, box, &key, NULL, NULL)))
        goto cleanup;
    if (with_steps) {
        ar_step *steps;
        size_t n;
        /* iterations is the count, so one fetch does; but a record written
         * by an earlier version may claim more or fewer steps than it kept:
         * the first fetch is capped, and repeated larger while it comes back full. */
        size_t max = box->rec.iterations >= 0 && box->rec.iterations < GET_FETCH_MAX
                         ? (size_t)box->rec.iterations + 1 : GET_FETCH_MAX;
        for (;;) {
            if ((rc = ar_store_steps_fetch(store, key, box->rec.id, 1, max, &box->arena, &steps, &n, &store->err)))
                goto cleanup;
            if (n < max)
                break;
            max *= 4;
        }
        box->rec.steps = steps;
        box->rec.n_steps = n;
    }
    *out = &box->rec;
    return AR_OK;
cleanup:
    ar_record_free(&box->rec);
    return rc;
}

struct ar_step_iter {
    ar_store *store;        /* NULL once the store is closed */
    struct ar_step_iter *next, *prev;   /* in store->iters */
    ar_allocator alloc;     /* a copy: closing needs no store */
    ar_err err;
    int64_t key;
    char run_id[AR_ID_LEN + 1];
    int64_t next_seq;
    int64_t remaining;      /* < 0: no limit */
    ar_arena arena;
    ar_step *batch;
    size_t n, pos;
    int done;
};

int ar_steps_open(ar_step_iter **out, ar_store *store, const char *run_id, int64_t from, int64_t limit)
{
    int rc = ar_store_usable(store);
    if (out)
        *out = NULL;
    if (rc)
        return rc;
    if (!out || !run_id)
        return ar_fail(&store->err, AR_EMISUSE, "out and run_id are required");
    int64_t key;
    if ((rc = ar_store_run_key(store, run_id, &key)))
        return rc;
    ar_step_iter *it = ar_mem_alloc(&store->alloc, sizeof *it);
    if (!it)
        return ar_fail(&store->err, AR_ENOMEM, "out of memory reading steps");
    memset(it, 0, sizeof *it);
    it->store = store;
    it->alloc = store->alloc;
    it->key = key;
    memcpy(it->run_id, run_id, AR_ID_LEN + 1);
    it->next_seq = from > 1 ? from : 1;
    it->remaining = limit;
    it->arena.alloc = &it->alloc;
    it->next = store->iters;
    if (store->iters)
        store->iters->prev = it;
    store->iters = it;
    *out = it;
    return AR_OK;
}

static void unlink_iter(ar_step_iter *it)
{
    if (!it->store)
        return;
    if (it->prev)
        it->prev->next = it->next;
    else
        it->store->iters = it->next;
    if (it->next)
        it->next->prev = it->prev;
    it->next = it->prev = NULL;
    it->store = NULL;
}

void ar_store_detach_iters(ar_store *store)
{
    while (store->iters)
        unlink_iter(store->iters);
}

int ar_steps_next(const ar_step **out, ar_step_iter *it)
{
    if (!out || !it)
        return AR_EMISUSE;
    *out = NULL;
    if (!it->store)
        return ar_fail(&it->err, AR_ESTATE, "the store is closed: the iterator can only be closed");
    if (it->pos == it->n) {
        if (it->done || it->remaining == 0)
            return AR_OK;
        ar_arena_release(&it->arena);
        it->batch = NULL;
        it->n = it->pos = 0;
        size_t want = STEP_BATCH;
        if (it->remaining > 0 && (uint64_t)it->remaining < want)
            want = (size_t)it->remaining;
        int rc = ar_store_steps_fetch(it->store, it->key, it->run_id, it->next_seq, want, &it->arena,
                             &it->batch, &it->n, &it->store->err);
        if (rc) {
            it->err = it->store->err;
            return rc;
        }
        if (it->n < want)
            it->done = 1;
        if (it->n == 0)
            return AR_OK;
        it->next_seq = it->batch[it->n - 1].seq + 1;
    }
    *out = &it->batch[it->pos++];
    if (it->remaining > 0)
        it->remaining--;
    return AR_OK;
}

void ar_steps_close(ar_step_iter *it)
{
    if (!it)
        return;
    unlink_iter(it);
    ar_allocator a = it->alloc;
    ar_arena_release(&it->arena);
    a.free(a.ud, it);
}

const char *ar_steps_errmsg(const ar_step_iter *it)
{
    return it ? it->err.msg : "no iterator";
}

/* ---- listings ----------------------------------------------------------- */

/* A cursor marks the position just after one run in the listing's order:
 * "r1:<created_at>:<id>" of that run (the id's key is the position). `after` gives the runs past it,
 * `before` the runs up to it, so before = next_cursor gives back the page
 * that cursor came from. */
static int cursor_parse(ar_err *err, const char *name, const char *c, int64_t *key)
{
    const char *p = c;
    if (strncmp(p, "r1:", 3) != 0)
        goto bad;
    p += 3;
    char *end;
    if (!(*p >= '0' && *p <= '9') && *p != '-')
        goto bad;
    long long t = strtoll(p, &end, 10);
    if (end == p || *end != ':')
        goto bad;
    p = end + 1;
    /* the position is the id's key; created_at is there for people reading it */
    (void)t;
    *key = ar_id_tick(p);
    if (*key < 0)
        goto bad;
    return AR_OK;
bad:
    return ar_fail(err, AR_EMISUSE, "%s is not a valid runs cursor (expected a next_cursor of a runs listing)", name);
}

/* A position after run r: its key, and its cursor text. */
typedef struct position {
    int64_t key;
    char text[96];
} position;

static position position_of(const ar_record *r)
{
    position p;
    p.key = ar_id_tick(r->id);
    snprintf(p.text, sizeof p.text, "r1:%" PRId64 ":%s", r->created_at, r->id);
    return p;
}

/* Runs listed into an array of records: the visitor of runs_list. */
typedef struct run_fill {
    const ar_allocator *alloc;
    ar_err *err;
    ar_record **list;
    size_t n, cap;
} run_fill;

static int fill_run(void *ud, const ar_db_run_row *row)
{
    run_fill *f = ud;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        ar_record **grown = ar_out_alloc(f->alloc, cap * sizeof *grown);
        if (!grown)
            return ar_fail(f->err, AR_ENOMEM, "out of memory listing runs");
        if (f->n)
            memcpy(grown, f->list, f->n * sizeof *grown);
        ar_free(f->list);
        f->list = grown;
        f->cap = cap;
    }
    ar_record_box *box = ar_record_box_new(f->alloc);
    if (!box)
        return ar_fail(f->err, AR_ENOMEM, "out of memory listing runs");
    f->list[f->n++] = &box->rec;
    return ar_row_to_record(row, box, f->err);
}

/* Lists the runs of q past `key` (see the backend's runs_list) as records;
 * the array is from ar_out_alloc, never NULL on success. */
static int runs_list(ar_store *store, const ar_run_query *q, const int64_t *key, int inclusive, int asc,
                     int64_t limit, ar_record ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    run_fill f = { &store->alloc, &store->err, NULL, 0, 0 };
    size_t cap = limit > 0 && limit < 1024 ? (size_t)limit : 16;
    if (!(f.list = ar_out_alloc(&store->alloc, cap * sizeof *f.list)))
        return ar_fail(&store->err, AR_ENOMEM, "out of memory listing runs");
    f.cap = cap;
    int rc = store->be->runs_list(store->db, q, key, inclusive, asc, limit, fill_run, &f, &store->err);
    if (rc) {
        ar_records_free(f.list, f.n);
        return rc;
    }
    *out = f.list;
    *n = f.n;
    return AR_OK;
}

/* Whether any run of the query lies past position `k` in its order. */
static int any_past(ar_store *store, const ar_run_query *q, const int64_t *k, int asc, int *out)
{
    ar_record **one;
    size_t n;
    int rc = runs_list(store, q, k, 0, asc, 1, &one, &n);
    if (rc == AR_OK) {
        *out = n > 0;
        ar_records_free(one, n);
    }
    return rc;
}

/* Checks the query and copies it into *q, whole: a version-1 query ends
 * before forked_from, which then reads NULL. */
static int query_check(ar_store *store, const ar_run_query *in, ar_run_query *q)
{
    ar_err *err = &store->err;
    int rc;
    if (!in)
        return ar_fail(err, AR_EMISUSE, "query is NULL");
    if (in->version != 1 &&
        (rc = ar_opts_version_check(err, "ar_run_query", in->version, AR_RUN_QUERY_VERSION, "AR_RUN_QUERY_INIT")))
        return rc;
    ar_run_query init = AR_RUN_QUERY_INIT;
    *q = init;
    memcpy(q, in, in->version == 1 ? offsetof(ar_run_query, forked_from) : sizeof *q);
    if ((rc = ar_text_check(err, "agent", q->agent, 0, 0)) ||
        (rc = ar_text_check(err, "forked_from", q->forked_from, 0, 0)) ||
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
    if (q->limit < 0)
        return ar_fail(err, AR_EMISUSE, "limit must not be negative");
    if (q->order != AR_ORDER_ASC && q->order != AR_ORDER_DESC)
        return ar_fail(err, AR_EMISUSE, "order must be AR_ORDER_ASC or AR_ORDER_DESC");
    if (q->after && q->before)
        return ar_fail(err, AR_EMISUSE, "after and before cannot be given together");
    return AR_OK;
}

int ar_runs_list(ar_record ***out, size_t *n, char **next_cursor, ar_store *store, const ar_run_query *query)
{
    ar_run_query qq, *q = &qq;
    int rc = ar_store_usable(store);
    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (next_cursor)
        *next_cursor = NULL;
    if (rc)
        return rc;
    if (!out || !n)
        return ar_fail(&store->err, AR_EMISUSE, "out and n are required");
    if ((rc = query_check(store, query, q)))
        return rc;
    int64_t key;
    const int64_t *keyp = NULL;
    int asc = q->order == AR_ORDER_ASC;
    int backwards = q->before != NULL;
    if (q->after || q->before) {
        if ((rc = cursor_parse(&store->err, q->after ? "after" : "before", q->after ? q->after : q->before, &key)))
            return rc;
        keyp = &key;
    }
    /* an empty page has no position to continue from: a cursor would give
     * a paging loop this same page again and again */
    if (q->limit == 0) {
        if (!(*out = ar_out_alloc(&store->alloc, sizeof **out)))
            return ar_fail(&store->err, AR_ENOMEM, "out of memory listing runs");
        return AR_OK;
    }
    /* `before` walks the other way from the cursor, taking the run the
     * cursor stands after, and the page is turned around; one run more than
     * the page tells whether another page follows (the largest limit is all) */
    int sql_asc = backwards ? !asc : asc;
    int64_t fetch = backwards || q->limit == INT64_MAX ? q->limit : q->limit + 1;
    ar_record **list;
    size_t count;
    if ((rc = runs_list(store, q, keyp, backwards, sql_asc, fetch, &list, &count)))
        return rc;
    int more = 0;
    if (backwards) {
        for (size_t i = 0; i < count / 2; i++) {
            ar_record *t = list[i];
            list[i] = list[count - 1 - i];
            list[count - 1 - i] = t;
        }
    } else if ((int64_t)count > q->limit) {
        ar_record_free(list[--count]);
        more = 1;
    }
    /* the position the following page starts from: after this page's last
     * run, or where the query started when the page is empty */
    position from;
    const int64_t *fromp = keyp;
    const char *from_text = q->after ? q->after : q->before;
    if (count > 0) {
        from = position_of(list[count - 1]);
        fromp = &from.key;
        from_text = from.text;
    }
    if (backwards && fromp && (rc = any_past(store, q, fromp, asc, &more))) {
        ar_records_free(list, count);
        return rc;
    }
    if (more && fromp && next_cursor &&
        !(*next_cursor = ar_out_strdup(&store->alloc, from_text, strlen(from_text)))) {
        ar_records_free(list, count);
        return ar_fail(&store->err, AR_ENOMEM, "out of memory listing runs");
    }
    *out = list;
    *n = count;
    return AR_OK;
}

int ar_runs_count(int64_t *out, ar_store *store, const ar_run_query *query)
{
    ar_run_query qq, *q = &qq;
    int rc = ar_store_usable(store);
    if (out)
        *out = 0;
    if (rc || (rc = query_check(store, query, q)))
        return rc;
    if (!out)
        return ar_fail(&store->err, AR_EMISUSE, "out is required");
    return store->be->runs_count(store->db, q, out, &store->err);
}

int ar_runs_stats(ar_stats *out, ar_store *store, const ar_run_query *query)
{
    ar_run_query qq, *q = &qq;
    /* out-parameters read 0 on failure, as everywhere in the API */
    if (out)
        memset(out, 0, sizeof *out);
    int rc = ar_store_usable(store);
    if (rc || (rc = query_check(store, query, q)))
        return rc;
    if (!out)
        return ar_fail(&store->err, AR_EMISUSE, "out is required");
    ar_db_stats sums;
    memset(&sums, 0, sizeof sums);
    if ((rc = store->be->runs_stats(store->db, q, &sums, &store->err)))
        return rc;
    ar_stats_from_row(&sums, out);
    return AR_OK;
}
