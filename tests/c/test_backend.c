/* test_backend.c -- the storage interface: the SQLite backend fills the whole
 * table, the location picks the backend, and the core's side of the
 * contract (optional members, keys a backend asks for) holds. */
#include "suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Every member of the table, by name, with whether a backend must fill it. */
#define MEMBER(m, required) { #m, be->m != NULL, required }
typedef struct member {
    const char *name;
    int filled, required;
} member;

static void test_sqlite_backend_fills_every_required_member_of_this_version(void **state)
{
    (void)state;
    const ar_backend *be = &ar_sqlite_backend;
    assert_int_equal(be->version, AR_BACKEND_VERSION);
    assert_non_null(be->name);
    assert_string_equal(be->name, "sqlite");
    const member members[] = {
        MEMBER(open, 1), MEMBER(close, 1), MEMBER(display_path, 1), MEMBER(info, 1),
        MEMBER(txn_begin, 1), MEMBER(txn_commit, 1), MEMBER(txn_rollback, 1),
        MEMBER(run_insert, 1), MEMBER(step_insert, 1), MEMBER(step_append, 1), MEMBER(checkpoint_save, 1),
        MEMBER(run_touch, 1), MEMBER(run_finish, 1), MEMBER(run_reopen, 1),
        MEMBER(run_wait, 1), MEMBER(run_respond, 1), MEMBER(steps_sums, 1), MEMBER(fork_copy, 1),
        MEMBER(run_load, 1),
        MEMBER(run_exists, 1), MEMBER(steps_fetch, 1), MEMBER(runs_list, 1), MEMBER(runs_count, 1),
        MEMBER(runs_stats, 1), MEMBER(forget_user, 1), MEMBER(checkpoint_put, 1), MEMBER(checkpoint_get, 1),
        MEMBER(recover, 1), MEMBER(retain_scan, 1), MEMBER(retain_delete, 1), MEMBER(retain_count_steps, 1),
        MEMBER(sizes, 0), MEMBER(compact, 0), MEMBER(settle, 0),
        MEMBER(event_insert, 1), MEMBER(events_list, 1), MEMBER(events_count, 1), MEMBER(events_summary, 1),
        MEMBER(events_delete, 1), MEMBER(events_delete_before, 1), MEMBER(events_keep_last, 1),
        MEMBER(events_scan, 1), MEMBER(event_put, 1),
        MEMBER(integrity, 0), MEMBER(read_begin, 0), MEMBER(read_end, 0),
    };
    /* every function pointer of the struct is listed above: a member added
     * to the table without a line here fails this count */
    size_t pointers = (sizeof *be - offsetof(ar_backend, open)) / sizeof(void (*)(void));
    assert_int_equal(sizeof members / sizeof members[0], pointers);
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++) {
        if (members[i].required && !members[i].filled) {
            print_error("ar_sqlite_backend.%s is NULL\n", members[i].name);
            fail();
        }
    }
    /* an SQLite file has sizes, can be compacted, checks its own pages and
     * reads in snapshots */
    assert_non_null(be->sizes);
    assert_non_null(be->compact);
    assert_non_null(be->integrity);
    assert_non_null(be->read_begin);
    assert_non_null(be->read_end);
}

static void test_location_picks_the_backend(void **state)
{
    (void)state;
    const char *files[] = {
        "runs.db", "/tmp/agentrun/runs.db", "./postgresql.db", "postgresql.db", "postgres", "postgresql:x",
        "file:runs.db", "file::memory:", "file:/tmp/x.db?mode=memory", ":memory:", "hosts.db", "user.db",
        "dbname", "host", "data/host=1.db", " host=x", "",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (ar_backend_for(files[i]) != &ar_sqlite_backend) {
            print_error("\"%s\" is not served by the SQLite backend\n", files[i]);
            fail();
        }
        assert_false(ar_location_is_postgres(files[i]));
    }
    const char *servers[] = {
        "postgresql://user@localhost:5432/db", "postgresql:///db?host=/tmp", "postgres://h/db",
        "postgresql://", "host=/tmp dbname=agentrun", "host=localhost", "dbname=agentrun user=me",
        "service=prod", "user=me dbname=x",
    };
    for (size_t i = 0; i < sizeof servers / sizeof servers[0]; i++) {
        if (ar_backend_for(servers[i]) == &ar_sqlite_backend || !ar_location_is_postgres(servers[i])) {
            print_error("\"%s\" is taken for a file name\n", servers[i]);
            fail();
        }
    }
}

/* A PostgreSQL location never becomes a file of that name, and the refusal
 * (or the connection failure) never shows the password. */
static void test_postgres_location_opens_no_file_and_hides_the_password(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    const char *locations[] = {
        "postgresql://me:s3cr3t@/agentrun?host=/nonexistent-agentrun-socket-dir",
        "host=/nonexistent-agentrun-socket-dir dbname=agentrun password=s3cr3t",
    };
    for (size_t i = 0; i < sizeof locations / sizeof locations[0]; i++) {
        ar_open_opts o = AR_OPEN_OPTS_INIT;
        o.busy_timeout_ms = 100;
        ar_store *store = NULL;
        int rc = ar_store_open(&store, locations[i], &o);
        assert_int_not_equal(rc, AR_OK);
        assert_null(strstr(ar_store_errmsg(store), "s3cr3t"));
        ar_store_close(store);
        assert_int_equal(access("postgresql:", F_OK), -1);
        assert_int_equal(access(locations[i], F_OK), -1);
    }
    assert_int_equal(chdir(cwd), 0);
    tmpdir_remove(dir);
}

static void test_info_names_the_backend_and_the_location(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "info.db");
    const char *locations[] = { ":memory:", path };
    for (size_t i = 0; i < 2; i++) {
        ar_store *store = NULL;
        assert_int_equal(ar_store_open(&store, locations[i], NULL), AR_OK);
        ar_store_info info;
        assert_int_equal(ar_store_info_get(&info, store), AR_OK);
        assert_string_equal(info.backend, "sqlite");
        assert_string_equal(info.path, locations[i]);
        assert_int_equal(info.schema_version, AR_SCHEMA_VERSION);
        assert_true(info.file_bytes > 0);
        ar_store_close(store);
    }
    free(path);
    tmpdir_remove(dir);
}

/* The SQLite backend with its optional members left out, as a backend
 * without sizes or compaction has them. */
static ar_backend bare;

static void test_core_reads_absent_sizes_as_zero_and_skips_compaction(void **state)
{
    (void)state;
    bare = ar_sqlite_backend;
    bare.sizes = NULL;
    bare.compact = NULL;
    ar_store *store = test_store_new();
    const ar_backend *real = store->be;
    store->be = &bare;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "g";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    assert_int_equal(ar_run_complete(NULL, run, "1", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(run);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.runs, 1);
    assert_int_equal(info.file_bytes, 0);
    assert_int_equal(info.wal_bytes, 0);
    assert_int_equal(info.free_bytes, 0);
    ar_retention policy = AR_RETENTION_INIT;
    policy.keep_last = 0;
    policy.vacuum = 1;
    ar_retention_report report;
    assert_int_equal(ar_store_retain(&report, store, &policy), AR_OK);
    assert_int_equal(report.deleted, 1);
    assert_int_equal(report.bytes_before, 0);
    assert_int_equal(report.bytes_after, 0);
    store->be = real;
    ar_store_close(store);
}

/* A backend whose writers are on many hosts refuses a key below the
 * newest one it holds and names the smallest it takes: here the SQLite
 * backend behind such a floor, raised once. */
static int64_t floor_key;
static int refusals;

static int insert_above_floor(ar_db *db, const ar_db_run *run, int64_t *min_key, ar_err *err)
{
    if (!run->written && run->n < floor_key) {
        refusals++;
        *min_key = floor_key;
        return AR_DB_CONFLICT;
    }
    return ar_sqlite_backend.run_insert(db, run, min_key, err);
}

static void test_begin_takes_the_key_the_backend_asks_for(void **state)
{
    (void)state;
    static ar_backend ordered;
    ordered = ar_sqlite_backend;
    ordered.run_insert = insert_above_floor;
    ar_store *store = test_store_new();
    const ar_backend *real = store->be;
    store->be = &ordered;
    /* a key ahead of this clock, as another host's may be; only a little
     * ahead, since the process's id clock then runs from there for every
     * store of this process (the later tests' runs among them) */
    floor_key = (ar_now_ms() + 50) << 16;
    refusals = 0;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "g";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    assert_int_equal(refusals, 1);
    int64_t tick = ar_id_tick(ar_run_id(run));
    assert_true(tick >= floor_key);
    assert_int_equal(ar_run_created_at(run), tick >> 16);
    ar_record *r = test_get(store, ar_run_id(run), 0);
    assert_int_equal(r->created_at, tick >> 16);
    ar_record_free(r);
    /* the clock moved on with it: the next run follows without a refusal */
    ar_run *next = NULL;
    assert_int_equal(ar_run_begin(&next, store, &spec), AR_OK);
    assert_int_equal(refusals, 1);
    assert_true(ar_id_tick(ar_run_id(next)) > tick);
    ar_run_close(next);
    ar_run_close(run);
    store->be = real;
    ar_store_close(store);
}

/* A record written whole dated a minute ahead leaves the runs begun after
 * it dated by the clock (as on PostgreSQL, tests/c/test_postgres.c). */
static void test_a_record_written_ahead_does_not_move_new_runs(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_record fields = AR_RECORD_INIT;
    fields.agent = "a";
    fields.goal = "g";
    fields.created_at = ar_now_ms() + 60000;
    fields.finished_at = fields.created_at;
    ar_record *rec = NULL;
    assert_int_equal(ar_record_completed(&rec, &fields, NULL, 0, NULL, 0), AR_OK);
    char *id = NULL;
    assert_int_equal(ar_store_write(&id, store, rec), AR_OK);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "live";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    ar_record *got = test_get(store, ar_run_id(run), 0);
    assert_true(got->created_at < fields.created_at);
    assert_true(strcmp(ar_run_id(run), id) < 0);
    ar_record_free(got);
    ar_run_close(run);
    ar_record_free(rec);
    ar_free(id);
    ar_store_close(store);
}

/* A record written whole keeps its id: a taken key is refused, never moved. */
static void test_written_record_keeps_its_key(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_record fields = AR_RECORD_INIT;
    fields.agent = "a";
    fields.goal = "g";
    ar_record *rec = NULL;
    char errbuf[256];
    assert_int_equal(ar_record_completed(&rec, &fields, "1", AR_NUL_TERMINATED, errbuf, sizeof errbuf), AR_OK);
    char *id = NULL;
    assert_int_equal(ar_store_write(&id, store, rec), AR_OK);
    ar_record_free(rec);
    fields.id = id;
    fields.created_at = ar_id_tick(id) >> 16;
    assert_int_equal(ar_record_completed(&rec, &fields, "2", AR_NUL_TERMINATED, errbuf, sizeof errbuf), AR_OK);
    char *again = NULL;
    assert_int_equal(ar_store_write(&again, store, rec), AR_ESTATE);
    assert_non_null(strstr(ar_store_errmsg(store), "already in the store"));
    assert_null(again);
    ar_record_free(rec);
    int64_t n = 0;
    ar_run_query q = AR_RUN_QUERY_INIT;
    assert_int_equal(ar_runs_count(&n, store, &q), AR_OK);
    assert_int_equal(n, 1);
    ar_free(id);
    ar_store_close(store);
}

/* The tick a conflict asks for: at or after it, and the clock follows. */
static void test_id_new_honours_a_minimum_tick(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    char id[AR_ID_LEN + 1];
    int64_t now = ar_now_ms();
    /* a little ahead: the process's id clock moves there for good */
    int64_t floor = ((now + 20) << 16) | 7;
    int64_t tick = ar_id_new(store, now, 0, floor, id);
    assert_true(tick >= floor);
    assert_int_equal(ar_id_tick(id), tick);
    int64_t later = ar_id_new(store, now, 0, 0, id);
    assert_true(later > tick);
    /* a written record keeps its millisecond whatever the floor */
    int64_t written = ar_id_new(store, 1000, 1, floor, id);
    assert_int_equal(written >> 16, 1000);
    ar_store_close(store);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_sqlite_backend_fills_every_required_member_of_this_version),
    cmocka_unit_test(test_location_picks_the_backend),
    cmocka_unit_test(test_postgres_location_opens_no_file_and_hides_the_password),
    cmocka_unit_test(test_info_names_the_backend_and_the_location),
    cmocka_unit_test(test_core_reads_absent_sizes_as_zero_and_skips_compaction),
    cmocka_unit_test(test_begin_takes_the_key_the_backend_asks_for),
    cmocka_unit_test(test_written_record_keeps_its_key),
    cmocka_unit_test(test_a_record_written_ahead_does_not_move_new_runs),
    cmocka_unit_test(test_id_new_honours_a_minimum_tick),
};

TEST_GROUP(backend_group, "backend", tests);
