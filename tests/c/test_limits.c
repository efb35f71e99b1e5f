/* test_limits.c -- a value the store cannot hold is refused (AR_EJSON) before anything is written, at every writing entry point. */
#include "suite.h"

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlimit.h"

/* SQLITE_LIMIT_LENGTH while these tests run: the largest value and the
 * largest row the store's connection holds. */
#define LIMIT 4096

/* ---- values of a chosen size --------------------------------------------- */

/* n bytes of `c` (n >= 0), NUL-terminated. */
static char *text_of(size_t n, char c)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* A JSON string of exactly n bytes (n >= 2). */
static char *json_string_of(size_t n)
{
    char *s = text_of(n, 'j');
    s[0] = s[n - 1] = '"';
    return s;
}

/* A JSON object {"k":"mmm..."} of exactly n bytes (n >= 8). */
static char *json_object_of(size_t n)
{
    char *s = text_of(n, 'm');
    memcpy(s, "{\"k\":\"", 6);
    memcpy(s + n - 2, "\"}", 2);
    return s;
}

/* ---- the file, looked at from outside ------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* A digest of every row of every table of the store file, read through a
 * connection of its own: equal digests mean nothing was written. */
static uint64_t file_digest(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *tables = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name",
                                        -1, &tables, NULL), SQLITE_OK);
    uint64_t h = 0xcbf29ce484222325ULL;
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tables, 0);
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\" ORDER BY rowid", name);
        h = fnv(h, name, strlen(name));
        sqlite3_stmt *rows = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &rows, NULL), SQLITE_OK);
        int rc;
        while ((rc = sqlite3_step(rows)) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(rows); c++) {
                int type = sqlite3_column_type(rows, c);
                const void *v = sqlite3_column_blob(rows, c);
                h = fnv(h, &type, sizeof type);
                if (v)
                    h = fnv(h, v, (size_t)sqlite3_column_bytes(rows, c));
            }
            h = fnv(h, "\n", 1);
        }
        assert_int_equal(rc, SQLITE_DONE);
        sqlite3_finalize(rows);
    }
    sqlite3_finalize(tables);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return h;
}

/* ---- the fixture ------------------------------------------------------------ */

typedef struct fx {
    char *dir, *path;
    ar_store *store;
    ar_run *run;        /* a running run with `seq` steps */
    int64_t seq;
} fx;

static void step_small(fx *f)
{
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    s.content = "\"ok\"";
    int64_t seq = 0;
    int rc = ar_run_step(&seq, f->run, &s);
    if (rc != AR_OK) {
        print_error("small step: %s: %s\n", ar_code_name(rc), ar_run_errmsg(f->run));
        fail();
    }
    assert_int_equal(seq, f->seq + 1);
    f->seq = seq;
}

/* Replaces f->run by a fresh running run with one step. */
static void fresh_run(fx *f)
{
    ar_run_close(f->run);
    f->run = NULL;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "g";
    assert_int_equal(ar_run_begin(&f->run, f->store, &spec), AR_OK);
    f->seq = 0;
    step_small(f);
}

static int setup(void **state)
{
    if (sqlimit_length(LIMIT) != SQLITE_OK)
        return -1;
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->dir = tmpdir_make();
    f->path = tmpdir_path(f->dir, "limits.db");
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    if (ar_store_open(&f->store, f->path, &opts) != AR_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    ar_run_close(f->run);
    ar_store_close(f->store);
    free(f->path);
    tmpdir_remove(f->dir);
    free(f);
    sqlimit_length(0);
    return 0;
}

/* ---- the writing entry points, each with a value of n bytes ----------------- */

/* Each makes one call with a value (or values) of n bytes in all, returns its
 * code, and on AR_OK sets *exact when what it wrote reads back exactly. */
typedef int (*writer_fn)(fx *f, size_t n, int *exact);

static int begin_with(fx *f, const ar_run_spec *spec, const char *field, const char *want, int *exact)
{
    ar_run *run = NULL;
    int rc = ar_run_begin(&run, f->store, spec);
    if (rc)
        return rc;
    ar_record *r = NULL;
    assert_int_equal(ar_store_get(&r, f->store, ar_run_id(run), 0), AR_OK);
    const char *got = strcmp(field, "goal") == 0 ? r->goal : strcmp(field, "agent") == 0 ? r->agent
                    : strcmp(field, "user") == 0 ? r->user : r->metadata;
    *exact = got && strcmp(got, want) == 0;
    ar_record_free(r);
    ar_run_close(run);
    return AR_OK;
}

static int w_begin_goal(fx *f, size_t n, int *exact)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    char *goal = text_of(n, 'g');
    spec.agent = "a";
    spec.goal = goal;
    int rc = begin_with(f, &spec, "goal", goal, exact);
    free(goal);
    return rc;
}

static int w_begin_agent(fx *f, size_t n, int *exact)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    char *agent = text_of(n, 'a');
    spec.agent = agent;
    spec.goal = "g";
    int rc = begin_with(f, &spec, "agent", agent, exact);
    free(agent);
    return rc;
}

static int w_begin_user(fx *f, size_t n, int *exact)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    char *user = text_of(n, 'u');
    spec.agent = "a";
    spec.goal = "g";
    spec.user = user;
    int rc = begin_with(f, &spec, "user", user, exact);
    free(user);
    return rc;
}

static int w_begin_metadata(fx *f, size_t n, int *exact)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    char *meta = json_object_of(n);
    spec.agent = "a";
    spec.goal = "g";
    spec.metadata = meta;
    int rc = begin_with(f, &spec, "metadata", meta, exact);
    free(meta);
    return rc;
}

/* Each value fits alone; the row holding both may not. */
static int w_begin_goal_and_metadata(fx *f, size_t n, int *exact)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    char *goal = text_of(n / 2, 'g');
    char *meta = json_object_of(n - n / 2);
    spec.agent = "a";
    spec.goal = goal;
    spec.metadata = meta;
    int rc = begin_with(f, &spec, "goal", goal, exact);
    free(goal);
    free(meta);
    return rc;
}

/* Records `s` on f->run; on AR_OK *exact says whether the step reads back as
 * given (kind, name, content, counters). */
static int step_with(fx *f, const ar_step *s, int *exact)
{
    int64_t seq = 0;
    int rc = ar_run_step(&seq, f->run, s);
    if (rc)
        return rc;
    assert_int_equal(seq, f->seq + 1);
    f->seq = seq;
    ar_step_iter *it = NULL;
    const ar_step *got = NULL;
    assert_int_equal(ar_steps_open(&it, f->store, ar_run_id(f->run), seq, 1), AR_OK);
    assert_int_equal(ar_steps_next(&got, it), AR_OK);
    assert_non_null(got);
    *exact = strcmp(got->kind, s->kind) == 0 &&
             (s->name ? got->name && strcmp(got->name, s->name) == 0 : !got->name) &&
             (s->content ? got->content && strcmp(got->content, s->content) == 0 : !got->content) &&
             got->usage.n_extra == s->usage.n_extra;
    for (size_t i = 0; *exact && i < s->usage.n_extra; i++)
        *exact = strcmp(got->usage.extra[i].name, s->usage.extra[i].name) == 0 &&
                 got->usage.extra[i].value == s->usage.extra[i].value;
    ar_steps_close(it);
    return AR_OK;
}

static int w_step_content(fx *f, size_t n, int *exact)
{
    ar_step s = AR_STEP_INIT;
    char *content = json_string_of(n);
    s.kind = "llm";
    s.content = content;
    int rc = step_with(f, &s, exact);
    free(content);
    return rc;
}

static int w_step_name(fx *f, size_t n, int *exact)
{
    ar_step s = AR_STEP_INIT;
    char *name = text_of(n, 'n');
    s.kind = "tool";
    s.name = name;
    int rc = step_with(f, &s, exact);
    free(name);
    return rc;
}

static int w_step_kind(fx *f, size_t n, int *exact)
{
    ar_step s = AR_STEP_INIT;
    char *kind = text_of(n, 'k');
    s.kind = kind;
    int rc = step_with(f, &s, exact);
    free(kind);
    return rc;
}

static int w_step_content_and_name(fx *f, size_t n, int *exact)
{
    ar_step s = AR_STEP_INIT;
    char *content = json_string_of(n / 2);
    char *name = text_of(n - n / 2, 'n');
    s.kind = "tool";
    s.name = name;
    s.content = content;
    int rc = step_with(f, &s, exact);
    free(content);
    free(name);
    return rc;
}

/* Counters whose JSON ({"c00...01":1,...}) takes about n bytes. */
static int w_step_counters(fx *f, size_t n, int *exact)
{
    size_t k = n / 66 + 1;
    ar_counter *c = calloc(k, sizeof *c);
    char (*names)[64] = calloc(k, sizeof *names);
    assert_true(c && names);
    for (size_t i = 0; i < k; i++) {
        snprintf(names[i], sizeof names[i], "c%061zu", i);
        c[i].name = names[i];
        c[i].value = 1;
    }
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    s.usage.n_extra = k;
    s.usage.extra = c;
    int rc = step_with(f, &s, exact);
    free(c);
    free(names);
    return rc;
}

static int w_checkpoint(fx *f, size_t n, int *exact)
{
    char *state = json_object_of(n);
    int rc = ar_run_checkpoint(f->run, state, AR_NUL_TERMINATED);
    if (rc == AR_OK) {
        char *got = NULL;
        int64_t seq = 0;
        assert_int_equal(ar_store_checkpoint(&got, &seq, f->store, ar_run_id(f->run)), AR_OK);
        *exact = got && strcmp(got, state) == 0 && seq == f->seq;
        ar_free(got);
    }
    free(state);
    return rc;
}

static int w_complete(fx *f, size_t n, int *exact)
{
    char *output = json_string_of(n);
    ar_record *r = NULL;
    int rc = ar_run_complete(&r, f->run, output, AR_NUL_TERMINATED);
    if (rc == AR_OK) {
        ar_record *back = NULL;
        assert_int_equal(ar_store_get(&back, f->store, ar_run_id(f->run), 0), AR_OK);
        *exact = r->output && strcmp(r->output, output) == 0 && back->output &&
                 strcmp(back->output, output) == 0 && back->status == AR_COMPLETED;
        ar_record_free(back);
    }
    ar_record_free(r);
    free(output);
    return rc;
}

/* Writes a finished record whose goal, output, metadata and step content
 * share n bytes (`which` picks the field that gets them all, or 0 for all four). */
static int write_record(fx *f, size_t n, int which, int *exact)
{
    size_t share = which ? n : n / 4;
    char *goal = text_of(which == 0 || which == 1 ? share : 1, 'g');
    char *output = json_string_of(which == 0 || which == 2 ? share : 2);
    char *meta = json_object_of(which == 0 || which == 3 ? share : 8);
    char *content = json_string_of(which == 0 || which == 4 ? share : 2);
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.content = content;
    ar_record rec = AR_RECORD_INIT;
    rec.agent = "a";
    rec.goal = goal;
    rec.metadata = meta;
    rec.status = AR_COMPLETED;
    rec.output = output;
    rec.steps = &step;
    rec.n_steps = 1;
    char *id = NULL;
    int rc = ar_store_write(&id, f->store, &rec);
    if (rc == AR_OK) {
        ar_record *r = NULL;
        assert_int_equal(ar_store_get(&r, f->store, id, 1), AR_OK);
        *exact = strcmp(r->goal, goal) == 0 && r->output && strcmp(r->output, output) == 0 &&
                 r->metadata && strcmp(r->metadata, meta) == 0 && r->n_steps == 1 &&
                 r->steps[0].content && strcmp(r->steps[0].content, content) == 0;
        ar_record_free(r);
    }
    ar_free(id);
    free(goal);
    free(output);
    free(meta);
    free(content);
    return rc;
}

static int w_write_goal(fx *f, size_t n, int *exact) { return write_record(f, n, 1, exact); }
static int w_write_output(fx *f, size_t n, int *exact) { return write_record(f, n, 2, exact); }
static int w_write_metadata(fx *f, size_t n, int *exact) { return write_record(f, n, 3, exact); }
static int w_write_step_content(fx *f, size_t n, int *exact) { return write_record(f, n, 4, exact); }
static int w_write_all_four(fx *f, size_t n, int *exact) { return write_record(f, n, 0, exact); }

/* Appends an event; on AR_OK compares the newest event of its agent with it. */
static int event_with(fx *f, const ar_event *e, int *exact)
{
    int64_t id = 0;
    int rc = ar_event_append(&id, f->store, e);
    if (rc)
        return rc;
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = e->agent;
    q.order = AR_ORDER_DESC;
    q.limit = 1;
    ar_event_list *list = NULL;
    assert_int_equal(ar_events_list(&list, NULL, f->store, &q), AR_OK);
    assert_int_equal(list->n, 1);
    const ar_event *got = &list->items[0];
    *exact = got->id == id && strcmp(got->agent, e->agent) == 0 && strcmp(got->type, e->type) == 0 &&
             (e->content ? got->content && strcmp(got->content, e->content) == 0 : !got->content) &&
             (e->metadata ? got->metadata && strcmp(got->metadata, e->metadata) == 0 : !got->metadata) &&
             (e->run ? got->run && strcmp(got->run, e->run) == 0 : !got->run);
    ar_event_list_free(list);
    return AR_OK;
}

static int w_event_content(fx *f, size_t n, int *exact)
{
    ar_event e = AR_EVENT_INIT;
    char *content = text_of(n, 'c');
    e.agent = "a";
    e.type = "output";
    e.content = content;
    int rc = event_with(f, &e, exact);
    free(content);
    return rc;
}

static int w_event_metadata(fx *f, size_t n, int *exact)
{
    ar_event e = AR_EVENT_INIT;
    char *meta = json_object_of(n);
    e.agent = "a";
    e.type = "output";
    e.metadata = meta;
    int rc = event_with(f, &e, exact);
    free(meta);
    return rc;
}

static int w_event_agent(fx *f, size_t n, int *exact)
{
    ar_event e = AR_EVENT_INIT;
    char *agent = text_of(n, 'a');
    e.agent = agent;
    e.type = "output";
    int rc = event_with(f, &e, exact);
    free(agent);
    return rc;
}

static int w_event_type(fx *f, size_t n, int *exact)
{
    ar_event e = AR_EVENT_INIT;
    char *type = text_of(n, 't');
    e.agent = "a";
    e.type = type;
    int rc = event_with(f, &e, exact);
    free(type);
    return rc;
}

static int w_event_run(fx *f, size_t n, int *exact)
{
    ar_event e = AR_EVENT_INIT;
    char *run = text_of(n, 'r');
    e.agent = "a";
    e.type = "output";
    e.run = run;
    int rc = event_with(f, &e, exact);
    free(run);
    return rc;
}

static int w_event_content_and_metadata(fx *f, size_t n, int *exact)
{
    ar_event e = AR_EVENT_INIT;
    char *content = text_of(n / 2, 'c');
    char *meta = json_object_of(n - n / 2);
    e.agent = "a";
    e.type = "output";
    e.content = content;
    e.metadata = meta;
    int rc = event_with(f, &e, exact);
    free(content);
    free(meta);
    return rc;
}

/* Replaces f->run by a running run whose goal is n bytes, so that the next
 * write to its row meets a row that is already large. */
static int p_big_goal(fx *f, size_t n, int *exact)
{
    (void)exact;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    char *goal = text_of(n, 'g');
    spec.agent = "a";
    spec.goal = goal;
    ar_run *run = NULL;
    int rc = ar_run_begin(&run, f->store, &spec);
    free(goal);
    if (rc == AR_OK) {
        ar_run_close(f->run);
        f->run = run;
        f->seq = 0;
    }
    return rc;
}

static int w_exhaust(fx *f, size_t n, int *exact)
{
    (void)n;
    ar_exhaustion why = { "max_steps", 1, 1 };
    ar_record *r = NULL;
    int rc = ar_run_exhaust(&r, f->run, &why);
    if (rc == AR_OK)
        *exact = r->status == AR_BUDGET_EXHAUSTED && r->limit.limit && strcmp(r->limit.limit, "max_steps") == 0;
    ar_record_free(r);
    return rc;
}

static int w_complete_small(fx *f, size_t n, int *exact)
{
    (void)n;
    ar_record *r = NULL;
    int rc = ar_run_complete(&r, f->run, "\"done\"", AR_NUL_TERMINATED);
    if (rc == AR_OK)
        *exact = r->status == AR_COMPLETED && strcmp(r->output, "\"done\"") == 0;
    ar_record_free(r);
    return rc;
}

/* Error text is never refused for its own size; a row too large even for a
 * short text is refused as any other write. */
static int w_fail_small(fx *f, size_t n, int *exact)
{
    (void)n;
    ar_record *r = NULL;
    int rc = ar_run_fail(&r, f->run, "boom");
    if (rc == AR_OK)
        *exact = r->status == AR_FAILED && strcmp(r->error, "boom") == 0;
    ar_record_free(r);
    return rc;
}

/* A user name no run can have: nothing to forget, or refused. */
static int w_forget_user(fx *f, size_t n, int *exact)
{
    char *user = text_of(n, 'f');
    int64_t count = -1;
    int rc = ar_store_forget_user(&count, f->store, user);
    *exact = rc == AR_OK && count == 0;
    free(user);
    return rc;
}

typedef struct writer {
    const char *name;
    writer_fn fn;
    writer_fn prepare;  /* run before the file is looked at; a refusal skips the case */
    size_t min;     /* the smallest n it makes */
    size_t over;    /* n beyond which one row would have to hold more than
                       LIMIT, so the call must be refused (0: LIMIT) */
} writer;

static const writer writers[] = {
    { "begin goal", w_begin_goal, NULL, 0, 0 },
    { "begin agent", w_begin_agent, NULL, 1, 0 },
    { "begin user", w_begin_user, NULL, 0, 0 },
    { "begin metadata", w_begin_metadata, NULL, 8, 0 },
    { "begin goal + metadata", w_begin_goal_and_metadata, NULL, 16, 0 },
    { "step content", w_step_content, NULL, 2, 0 },
    { "step name", w_step_name, NULL, 0, 0 },
    { "step kind", w_step_kind, NULL, 1, 0 },
    { "step content + name", w_step_content_and_name, NULL, 4, 0 },
    { "step counters", w_step_counters, NULL, 0, 0 },
    { "checkpoint", w_checkpoint, NULL, 8, 0 },
    { "complete", w_complete, NULL, 2, 0 },
    { "write goal", w_write_goal, NULL, 8, 0 },
    { "write output", w_write_output, NULL, 8, 0 },
    { "write metadata", w_write_metadata, NULL, 8, 0 },
    { "write step content", w_write_step_content, NULL, 8, 0 },
    { "write all four", w_write_all_four, NULL, 32, LIMIT * 4 / 3 },  /* 3/4 in the run's row */
    { "event content", w_event_content, NULL, 0, 0 },
    { "event metadata", w_event_metadata, NULL, 8, 0 },
    { "event agent", w_event_agent, NULL, 1, 0 },
    { "event type", w_event_type, NULL, 1, 0 },
    { "event run", w_event_run, NULL, 1, 0 },
    { "event content + metadata", w_event_content_and_metadata, NULL, 16, 0 },
    { "forget_user", w_forget_user, NULL, 1, 0 },
    /* a write to a run whose row is already large; nothing of n bytes is
     * given, so nothing must be refused for n > LIMIT (those runs never begin) */
    { "exhaust a large run", w_exhaust, p_big_goal, 0, SIZE_MAX },
    { "complete a large run", w_complete_small, p_big_goal, 0, SIZE_MAX },
    { "fail a large run", w_fail_small, p_big_goal, 0, SIZE_MAX },
};

/* Every writing entry point, with values from small to four times the limit:
 * each call either stores exactly (and small values always do), or fails
 * with AR_EJSON leaving the file as it was and the run open for its next
 * step. A value over the limit can never be stored exactly, so it is refused. */
static void test_every_writer_stores_exactly_or_refuses_with_ejson_and_writes_nothing(void **state)
{
    fx *f = *state;
    const size_t sizes[] = { 16, LIMIT / 4, LIMIT / 2, LIMIT - 64, LIMIT, LIMIT + 1, 2 * LIMIT, 4 * LIMIT };
    for (size_t w = 0; w < sizeof writers / sizeof writers[0]; w++) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t n = sizes[k] < writers[w].min ? writers[w].min : sizes[k];
            fresh_run(f);
            int exact = 0;
            if (writers[w].prepare && writers[w].prepare(f, n, &exact) != AR_OK)
                continue;
            uint64_t before = file_digest(f->path);
            int rc = writers[w].fn(f, n, &exact);
            if (rc == AR_OK && !exact) {
                print_error("%s, %zu bytes: acknowledged but not read back exactly\n", writers[w].name, n);
                fail();
            }
            if (rc == AR_OK && n > (writers[w].over ? writers[w].over : LIMIT)) {
                print_error("%s, %zu bytes: acknowledged a value over the limit\n", writers[w].name, n);
                fail();
            }
            if (rc != AR_OK && n <= LIMIT / 4) {
                print_error("%s, %zu bytes: refused a small value: %s: %s\n", writers[w].name, n,
                            ar_code_name(rc), ar_store_errmsg(f->store));
                fail();
            }
            if (rc != AR_OK) {
                if (rc != AR_EJSON) {
                    print_error("%s, %zu bytes: %s (%s / %s), want EJSON\n", writers[w].name, n, ar_code_name(rc),
                                ar_store_errmsg(f->store), ar_run_errmsg(f->run));
                    fail();
                }
                if (file_digest(f->path) != before) {
                    print_error("%s, %zu bytes: refused, but the file changed\n", writers[w].name, n);
                    fail();
                }
            }
            /* the run takes its next step as if nothing had happened */
            if (ar_run_status(f->run) == AR_RUNNING)
                step_small(f);
        }
    }
}

/* Error text is never refused: what the store cannot hold is cut at a
 * character boundary and marked, and the run is failed. */
static void test_fail_stores_error_text_over_the_limit_cut_and_marked(void **state)
{
    fx *f = *state;
    const size_t sizes[] = { LIMIT - 64, LIMIT + 1, 4 * LIMIT, 64 * LIMIT };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        fresh_run(f);
        /* two-byte characters, so a cut in the middle of one would show */
        size_t n = sizes[k];
        char *error = text_of(n, 'e');
        for (size_t i = 0; i + 1 < n; i += 2)
            memcpy(error + i, "\xC3\xA9", 2);
        ar_record *r = NULL;
        int rc = ar_run_fail(&r, f->run, error);
        if (rc != AR_OK) {
            print_error("fail, %zu bytes: %s: %s\n", n, ar_code_name(rc), ar_run_errmsg(f->run));
            fail();
        }
        assert_int_equal(r->status, AR_FAILED);
        ar_record *back = NULL;
        assert_int_equal(ar_store_get(&back, f->store, ar_run_id(f->run), 0), AR_OK);
        assert_string_equal(back->error, r->error);
        size_t len = strlen(back->error);
        if (strcmp(back->error, error) != 0) {
            /* a prefix of whole characters, then the marker */
            const char *mark = strstr(back->error, " [cut from ");
            assert_non_null(mark);
            size_t kept = (size_t)(mark - back->error);
            assert_true(kept > 0 && kept % 2 == 0);
            assert_memory_equal(back->error, error, kept);
            assert_true(len <= LIMIT);
            assert_true(n > LIMIT - 256);
        }
        ar_record_free(back);
        ar_record_free(r);
        free(error);
    }
}

/* The library's own bound holds with SQLite's default limit too: a value
 * over AR_VALUE_MAX is refused before any work is done with it. */
static void test_values_over_ar_value_max_are_refused_with_ejson(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    size_t n = (size_t)AR_VALUE_MAX + 1;
    char *big = text_of(n, 'x');
    char *json = json_string_of(n);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = big;
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_EJSON);
    assert_non_null(strstr(ar_store_errmsg(store), "goal"));
    spec.goal = "g";
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    s.content = json;
    assert_int_equal(ar_run_step(NULL, run, &s), AR_EJSON);
    assert_non_null(strstr(ar_run_errmsg(run), "step.content"));
    assert_int_equal(ar_run_checkpoint(run, json, n), AR_EJSON);
    assert_int_equal(ar_run_complete(NULL, run, json, n), AR_EJSON);
    ar_event e = AR_EVENT_INIT;
    e.agent = "a";
    e.type = "output";
    e.content = big;
    assert_int_equal(ar_event_append(NULL, store, &e), AR_EJSON);
    assert_non_null(strstr(ar_store_errmsg(store), "content"));
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.runs, 1);
    assert_int_equal(info.steps, 0);
    assert_int_equal(info.events, 0);
    ar_record *r = NULL;
    assert_int_equal(ar_run_fail(&r, run, big), AR_OK);
    assert_true(strlen(r->error) <= AR_VALUE_MAX);
    assert_non_null(strstr(r->error, " [cut from "));
    ar_record_free(r);
    ar_run_close(run);
    free(big);
    free(json);
    ar_store_close(store);
}

/* SPEC: single values up to 64 MB are stored and read back exactly. */
static void test_a_value_of_exactly_ar_value_max_is_stored_and_read_back(void **state)
{
    (void)state;
    assert_true(AR_VALUE_MAX >= 64 * 1000 * 1000);
    ar_store *store = test_store_new();
    char *json = json_string_of(AR_VALUE_MAX);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "g";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    s.content = json;
    s.content_len = AR_VALUE_MAX;
    int64_t seq = 0;
    assert_int_equal(ar_run_step(&seq, run, &s), AR_OK);
    ar_step_iter *it = NULL;
    const ar_step *got = NULL;
    assert_int_equal(ar_steps_open(&it, store, ar_run_id(run), seq, 1), AR_OK);
    assert_int_equal(ar_steps_next(&got, it), AR_OK);
    assert_non_null(got);
    assert_int_equal(got->content_len, AR_VALUE_MAX);
    assert_memory_equal(got->content, json, AR_VALUE_MAX);
    ar_steps_close(it);
    ar_run_close(run);
    free(json);
    ar_store_close(store);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_every_writer_stores_exactly_or_refuses_with_ejson_and_writes_nothing,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_fail_stores_error_text_over_the_limit_cut_and_marked, setup, teardown),
    cmocka_unit_test(test_values_over_ar_value_max_are_refused_with_ejson),
    cmocka_unit_test(test_a_value_of_exactly_ar_value_max_is_stored_and_read_back),
};

TEST_GROUP(limits_group, "limits", tests);
