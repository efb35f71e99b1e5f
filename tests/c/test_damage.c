/* test_damage.c -- a row damaged by another program fails each read that meets it with ECORRUPT naming the row and the field. */
#include "suite.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The read paths a damaged value can meet. */
enum {
    P_GET = 1,          /* ar_store_get without steps */
    P_LIST = 2,         /* ar_runs_list */
    P_RETAIN = 4,       /* ar_store_retain with a rule (dry run) */
    P_RESUME = 8,       /* ar_run_resume */
    P_GET_STEPS = 16,   /* ar_store_get with steps */
    P_ITER = 32,        /* ar_steps_open / ar_steps_next */
    P_CHECKPOINT = 64,  /* ar_store_checkpoint */
    P_EVENTS = 128,     /* ar_events_list */
    P_ALL = 255
};

#define RUN_PATHS (P_GET | P_LIST | P_RETAIN | P_RESUME | P_GET_STEPS)
#define STEP_PATHS (P_GET_STEPS | P_ITER)

typedef struct damage {
    const char *sql;        /* %1$s: the run's id, {event}: the event's id */
    const char *field;      /* the name the message must give */
    unsigned paths;         /* the reads that must fail */
    int step;               /* the message names step 2 */
    int event;              /* the message names the event, not the run */
} damage;

#define RUN_ROW "WHERE id = '{id}'"
#define STEP_ROW "WHERE run = (SELECT n FROM runs WHERE id = '{id}') AND seq = 2"

static const damage damages[] = {
    { "UPDATE runs SET metadata = '[1,2' " RUN_ROW, "metadata", RUN_PATHS, 0, 0 },
    { "UPDATE runs SET metadata = '[1,2]' " RUN_ROW, "metadata", RUN_PATHS, 0, 0 },
    { "UPDATE runs SET output = '{\"a\":' " RUN_ROW, "output", RUN_PATHS, 0, 0 },
    { "UPDATE runs SET output = '12345678901234567890' " RUN_ROW, "output", RUN_PATHS, 0, 0 },
    { "UPDATE runs SET budget = '[1,2' " RUN_ROW, "budget", RUN_PATHS, 0, 0 },
    { "UPDATE runs SET budget = '{\"max_steps\":\"ten\"}' " RUN_ROW, "budget", RUN_PATHS, 0, 0 },
    { "UPDATE runs SET counters = '{\"cache\":' " RUN_ROW, "counters", RUN_PATHS, 0, 0 },
    { "UPDATE runs SET counters = '{\"cache\":-4}' " RUN_ROW, "counters", RUN_PATHS, 0, 0 },
    { "UPDATE runs SET status = 'paused' " RUN_ROW, "status", P_GET | P_LIST | P_RESUME | P_GET_STEPS, 0, 0 },
    { "UPDATE runs SET limit_name = 'max_fun' " RUN_ROW, "limit", RUN_PATHS, 0, 0 },
    { "UPDATE runs SET goal = CAST(X'676FFF616C' AS TEXT) " RUN_ROW, "goal", RUN_PATHS, 0, 0 },
    { "UPDATE runs SET agent = CAST(X'61006263' AS TEXT) " RUN_ROW, "agent", RUN_PATHS, 0, 0 },
    { "UPDATE runs SET error = CAST(X'C0AF' AS TEXT) " RUN_ROW, "error", RUN_PATHS, 0, 0 },
    { "UPDATE steps SET content = '[1,2' " STEP_ROW, "content", STEP_PATHS, 1, 0 },
    { "UPDATE steps SET content = '\"a\" \"b\"' " STEP_ROW, "content", STEP_PATHS, 1, 0 },
    { "UPDATE steps SET counters = '[1]' " STEP_ROW, "counters", STEP_PATHS, 1, 0 },
    { "UPDATE steps SET kind = CAST(X'FF' AS TEXT) " STEP_ROW, "kind", STEP_PATHS, 1, 0 },
    { "UPDATE steps SET name = CAST(X'7400' AS TEXT) " STEP_ROW, "name", STEP_PATHS, 1, 0 },
    { "UPDATE checkpoints SET state = '{' WHERE run = (SELECT n FROM runs WHERE id = '{id}')", "state",
      P_CHECKPOINT, 0, 0 },
    { "UPDATE events SET metadata = '[1,2' WHERE id = {event}", "metadata", P_EVENTS, 0, 1 },
    { "UPDATE events SET metadata = '\"text\"' WHERE id = {event}", "metadata", P_EVENTS, 0, 1 },
    { "UPDATE events SET content = CAST(X'68FE' AS TEXT) WHERE id = {event}", "content", P_EVENTS, 0, 1 },
    { "UPDATE events SET type = CAST(X'FF' AS TEXT) WHERE id = {event}", "type", P_EVENTS, 0, 1 },
};

/* A store file with one budget_exhausted run (three steps, a checkpoint,
 * usage counters, metadata) between two good runs, and one event. */
typedef struct fixture {
    char *dir, *path;
    char id[64];
    int64_t event_id;
} fixture;

static void make_store(fixture *f)
{
    f->dir = tmpdir_make();
    f->path = tmpdir_path(f->dir, "damaged.db");
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, f->path, NULL), AR_OK);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "goal";
    spec.metadata = "{\"tag\":1}";
    spec.budget.max_steps = 3;
    for (int k = 0; k < 3; k++) {
        ar_run *run = NULL;
        assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
        ar_counter c = { "cache", 2 };
        ar_step s = AR_STEP_INIT;
        s.kind = "llm";
        s.name = "model";
        s.content = "{\"text\":\"hi\"}";
        s.usage.input_tokens = 3;
        s.usage.n_extra = 1;
        s.usage.extra = &c;
        for (int i = 0; i < 3; i++)
            assert_int_equal(ar_run_step(NULL, run, &s), AR_OK);
        assert_int_equal(ar_run_checkpoint(run, "{\"at\":3}", AR_NUL_TERMINATED), AR_OK);
        if (k == 1)
            snprintf(f->id, sizeof f->id, "%s", ar_run_id(run));
        assert_int_equal(ar_run_exhaust(NULL, run, NULL), AR_OK);
        ar_run_close(run);
    }
    ar_event e = AR_EVENT_INIT;
    e.agent = "a";
    e.type = "output";
    e.content = "hello";
    e.metadata = "{\"k\":1}";
    assert_int_equal(ar_event_append(&f->event_id, store, &e), AR_OK);
    ar_store_close(store);
}

static void damage_file(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK || sqlite3_changes(db) != 1) {
        print_error("%s: %s (%d rows)\n", sql, msg ? msg : "ok", sqlite3_changes(db));
        sqlite3_free(msg);
        sqlite3_close(db);
        fail();
    }
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* `sql` with {id} and {event} replaced, into out[cap]. */
static void fill(char *out, size_t cap, const char *sql, const char *id, int64_t event_id)
{
    char event[32];
    snprintf(event, sizeof event, "%lld", (long long)event_id);
    size_t n = 0;
    for (const char *p = sql; *p; ) {
        const char *with = strncmp(p, "{id}", 4) == 0 ? id : strncmp(p, "{event}", 7) == 0 ? event : NULL;
        size_t skip = with ? (with == id ? 4 : 7) : 1;
        size_t len = with ? strlen(with) : 1;
        assert_true(n + len < cap);
        memcpy(out + n, with ? with : p, len);
        n += len;
        p += skip;
    }
    out[n] = '\0';
}

static int keep_all(void *ud, const ar_record *run, double age, int *verdict)
{
    (void)ud;
    (void)run;
    (void)age;
    *verdict = AR_RULE_KEEP;
    return 0;
}

/* Runs read path `p` once; returns its code. */
static int read_path(ar_store *store, const fixture *f, unsigned p)
{
    int rc = AR_OK;
    switch (p) {
    case P_GET:
    case P_GET_STEPS: {
        ar_record *r = NULL;
        rc = ar_store_get(&r, store, f->id, p == P_GET_STEPS);
        ar_record_free(r);
        break;
    }
    case P_LIST: {
        ar_record **list = NULL;
        size_t n = 0;
        ar_run_query q = AR_RUN_QUERY_INIT;
        rc = ar_runs_list(&list, &n, NULL, store, &q);
        ar_records_free(list, n);
        break;
    }
    case P_RETAIN: {
        ar_retention policy = AR_RETENTION_INIT;
        ar_retention_report report;
        policy.rule = keep_all;
        policy.dry_run = 1;
        rc = ar_store_retain(&report, store, &policy);
        break;
    }
    case P_RESUME: {
        ar_run *run = NULL;
        rc = ar_run_resume(&run, store, f->id, NULL);
        if (run) {
            /* leave the run resumable for the next path */
            ar_exhaustion why = { "max_steps", 3, 3 };
            assert_int_equal(ar_run_exhaust(NULL, run, &why), AR_OK);
            ar_run_close(run);
        }
        break;
    }
    case P_ITER: {
        ar_step_iter *it = NULL;
        const ar_step *s = NULL;
        rc = ar_steps_open(&it, store, f->id, 1, -1);
        while (rc == AR_OK && (rc = ar_steps_next(&s, it)) == AR_OK && s)
            ;
        ar_steps_close(it);
        break;
    }
    case P_CHECKPOINT: {
        char *state = NULL;
        int64_t seq = 0;
        rc = ar_store_checkpoint(&state, &seq, store, f->id);
        ar_free(state);
        break;
    }
    case P_EVENTS: {
        ar_event_list *list = NULL;
        ar_event_query q = AR_EVENT_QUERY_INIT;
        q.agent = "a";
        rc = ar_events_list(&list, NULL, store, &q);
        ar_event_list_free(list);
        break;
    }
    }
    return rc;
}

/* Every read path meets every kind of damage: those that read the damaged
 * value fail with ECORRUPT, naming the run (and step) or the event and the
 * field; the others read the store as before. */
static void test_each_damaged_field_fails_its_reads_with_ecorrupt_naming_the_row_and_field(void **state)
{
    (void)state;
    for (size_t d = 0; d < sizeof damages / sizeof damages[0]; d++) {
        fixture f;
        make_store(&f);
        char sql[512];
        fill(sql, sizeof sql, damages[d].sql, f.id, f.event_id);
        damage_file(f.path, sql);
        ar_store *store = NULL;
        assert_int_equal(ar_store_open(&store, f.path, NULL), AR_OK);
        for (unsigned p = 1; p < P_ALL; p <<= 1) {
            int rc = read_path(store, &f, p);
            const char *msg = ar_store_errmsg(store);
            if (!(damages[d].paths & p)) {
                if (rc != AR_OK) {
                    print_error("%s: read %u failed: %s: %s\n", sql, p, ar_code_name(rc), msg);
                    fail();
                }
                continue;
            }
            char owner[96];
            if (damages[d].event)
                snprintf(owner, sizeof owner, "event %lld", (long long)f.event_id);
            else if (damages[d].step)
                snprintf(owner, sizeof owner, "run %s step 2", f.id);
            else
                snprintf(owner, sizeof owner, "run %s", f.id);
            char field[64];
            snprintf(field, sizeof field, " %s ", damages[d].field);
            if (rc != AR_ECORRUPT || !strstr(msg, owner) || !strstr(msg, field)) {
                print_error("%s: read %u: %s: \"%s\", want ECORRUPT naming \"%s\" and \"%s\"\n", sql, p,
                            ar_code_name(rc), msg, owner, damages[d].field);
                fail();
            }
        }
        ar_store_close(store);
        free(f.path);
        tmpdir_remove(f.dir);
    }
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_each_damaged_field_fails_its_reads_with_ecorrupt_naming_the_row_and_field),
};

TEST_GROUP(damage_group, "damage", tests);
