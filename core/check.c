/* check.c -- ar_store_check: the storage's own integrity check, then every
 * row read back and checked as a read checks it, each damaged row reported
 * by its id and field and the scan going on past it. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* Rows read per backend call: bounded memory, whatever the store's size. */
#define CHECK_PAGE 256

typedef struct check {
    ar_store *store;
    ar_check_visit visit;
    void *ud;
    ar_check_report rep;
    ar_err row_err;                       /* a damaged row's failure, kept apart from the store's */
    /* the page of runs being checked */
    int64_t keys[CHECK_PAGE];
    char ids[CHECK_PAGE][AR_ID_LEN + 1];  /* "" when the run's id is damaged */
    size_t n;
    /* the run whose steps are being read */
    const char *run_id;
    int64_t run_key;
    int64_t next_seq;
    size_t fetched;
    ar_arena *arena;
} check;

static int report(check *c, const char *kind, const char *run_id, int64_t key, int64_t seq, const char *field,
                  const char *message)
{
    ar_check_problem p = { kind, run_id && run_id[0] ? run_id : NULL, key, seq, field, message };
    c->rep.problems++;
    int rc = c->visit(c->ud, &p);
    /* the visitor's code stops the check; its message is the caller's */
    if (rc)
        ar_fail(&c->store->err, rc, "the check was stopped by its visitor");
    return rc;
}

/* A conversion's failure: a damaged row is reported and the scan goes on;
 * anything else (memory) stops it, in the store's error slot. */
static int judged(check *c, int rc, const char *kind, const char *run_id, int64_t key, int64_t seq)
{
    if (rc == AR_OK)
        return AR_OK;
    if (rc == AR_ECORRUPT) {
        char field[64];
        ar_row_damaged_field(&c->row_err, field, sizeof field);
        return report(c, kind, run_id, key, seq, field[0] ? field : NULL, c->row_err.msg);
    }
    c->store->err = c->row_err;
    return rc;
}

static int file_problem(void *ud, const char *line)
{
    check *c = ud;
    return report(c, "file", NULL, 0, 0, NULL, line);
}

static int visit_run(void *ud, const ar_db_run_row *row)
{
    check *c = ud;
    if (c->n == CHECK_PAGE)
        return ar_fail(&c->store->err, AR_EIO, "the store returned more runs than were asked for");
    c->rep.runs++;
    c->keys[c->n] = row->n;
    c->ids[c->n][0] = '\0';
    ar_record_box *box = ar_record_box_new(&c->store->alloc);
    if (!box)
        return ar_fail(&c->store->err, AR_ENOMEM, "out of memory checking runs");
    int rc = ar_row_to_record(row, box, &c->row_err);
    /* a run whose id reads back is named by it, also when another field is damaged */
    if (row->id.s && row->id.len == AR_ID_LEN && !memchr(row->id.s, '\0', row->id.len)) {
        memcpy(c->ids[c->n], row->id.s, AR_ID_LEN);
        c->ids[c->n][AR_ID_LEN] = '\0';
        if (!ar_id_valid(c->ids[c->n]))
            c->ids[c->n][0] = '\0';
    }
    ar_record_free(&box->rec);
    int key_n = (int)c->n;
    c->n++;
    return judged(c, rc, "run", c->ids[key_n], row->n, 0);
}

static int visit_step(void *ud, const ar_db_step_row *row)
{
    check *c = ud;
    c->rep.steps++;
    c->fetched++;
    c->next_seq = row->seq + 1;
    ar_step s;
    int rc = ar_row_to_step(row, c->run_id[0] ? c->run_id : NULL, c->arena, &s, &c->row_err);
    return judged(c, rc, "step", c->run_id, c->run_key, row->seq);
}

/* The steps and the checkpoint of the run at index i of the page. */
static int check_run(check *c, size_t i)
{
    ar_arena arena = { &c->store->alloc, NULL };
    char label[64];
    int rc;
    c->run_id = c->ids[i];
    c->run_key = c->keys[i];
    c->arena = &arena;
    c->next_seq = 1;
    do {
        c->fetched = 0;
        rc = c->store->be->steps_fetch(c->store->db, c->run_key, c->next_seq, CHECK_PAGE, visit_step, c,
                                       &c->store->err);
        ar_arena_release(&arena);
    } while (rc == AR_OK && c->fetched == CHECK_PAGE);
    if (rc)
        return rc;
    ar_db_text state = { NULL, 0 };
    int64_t seq = 0;
    if ((rc = c->store->be->checkpoint_get(c->store->db, c->run_key, &state, &seq, &c->store->err)))
        return rc;
    if (!state.s)
        return AR_OK;
    c->rep.checkpoints++;
    /* worded as store:checkpoint words it */
    if (c->run_id[0])
        snprintf(label, sizeof label, "run %s checkpoint", c->run_id);
    else
        snprintf(label, sizeof label, "run at key %lld checkpoint", (long long)c->run_key);
    rc = ar_row_json_check(state, label, "state", &c->row_err);
    return judged(c, rc, "checkpoint", c->run_id, c->run_key, 0);
}

typedef struct event_page {
    check *c;
    ar_arena *arena;
    int64_t last;
    size_t n;
} event_page;

static int visit_event(void *ud, const ar_db_event_row *row)
{
    event_page *p = ud;
    p->c->rep.events++;
    p->n++;
    p->last = row->id;
    ar_event e;
    int rc = ar_row_to_event(row, p->arena, &e, &p->c->row_err);
    return judged(p->c, rc, "event", NULL, 0, row->id);
}

int ar_store_check(ar_check_report *out, ar_store *store, ar_check_visit visit, void *ud)
{
    int rc = ar_store_usable(store);
    if (rc)
        return rc;
    if (!out || !visit)
        return ar_fail(&store->err, AR_EMISUSE, "%s is NULL", out ? "visit" : "out");
    memset(out, 0, sizeof *out);
    check *c = ar_mem_alloc(&store->alloc, sizeof *c);
    if (!c)
        return ar_fail(&store->err, AR_ENOMEM, "out of memory checking the store");
    memset(c, 0, sizeof *c);
    c->store = store;
    c->visit = visit;
    c->ud = ud;
    ar_err_clear(&c->row_err);
    ar_arena arena = { &store->alloc, NULL };

    if (store->be->integrity && (rc = store->be->integrity(store->db, file_problem, c, &store->err)))
        goto cleanup;

    /* runs a page at a time by key; each page's steps and checkpoints after it */
    ar_run_query every = AR_RUN_QUERY_INIT;
    int64_t after = 0;
    int more = 1;
    while (more) {
        c->n = 0;
        rc = store->be->runs_list(store->db, &every, c->rep.runs ? &after : NULL, 0, 1, CHECK_PAGE, visit_run, c,
                                  &store->err);
        if (rc)
            goto cleanup;
        for (size_t i = 0; i < c->n; i++)
            if ((rc = check_run(c, i)))
                goto cleanup;
        more = c->n == CHECK_PAGE;
        if (c->n)
            after = c->keys[c->n - 1];
    }

    /* every agent's events, by id */
    ar_event_query all = AR_EVENT_QUERY_INIT;
    event_page page = { c, &arena, 0, 0 };
    do {
        page.n = 0;
        rc = store->be->events_list(store->db, &all, c->rep.events ? &page.last : NULL, 1, CHECK_PAGE,
                                    visit_event, &page, &store->err);
        ar_arena_release(&arena);
    } while (rc == AR_OK && page.n == CHECK_PAGE);
    if (rc)
        goto cleanup;
    *out = c->rep;
cleanup:
    if (rc)
        *out = c->rep;
    ar_arena_release(&arena);
    ar_mem_free(&store->alloc, c);
    return rc;
}
