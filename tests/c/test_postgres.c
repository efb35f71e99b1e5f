/* test_postgres.c -- the PostgreSQL backend through the public API: opening
 * (schemas, their meta record, another application's schema, a newer
 * version, refused and unreachable servers, the password kept out of sight),
 * one writer per run across connections, lock waits, and the connection
 * dropped between calls, during a call and during COMMIT, the server
 * stopped and started while a writer records. Needs a server
 * (AGENTRUN_TEST_PG, a libpq URL); skipped with a notice without one. The
 * restart test also needs the server's data directory
 * (AGENTRUN_TEST_PGDATA, run as its owner when we are root). */
#include "suite.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

/* Each test works in a schema of its own, dropped when it ends. Its
 * connections carry an application_name of their own, so that the test can
 * find (and end) the store's server session. */
typedef struct fixture {
    char schema[64];
    char app[64];
    char url[2048];     /* AGENTRUN_TEST_PG with the application name */
    PGconn *probe;      /* the test's own view of the server */
} fixture;

/* The server's connection parameters, as libpq reads AGENTRUN_TEST_PG. */
static const char *param(PQconninfoOption *opts, const char *key)
{
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, key) == 0)
            return o->val;
    return NULL;
}

/* A key=value location for the test server with the given user and password
 * (NULL: the server URL's own). */
static void location_as(char *out, size_t cap, const char *user, const char *password)
{
    PQconninfoOption *opts = PQconninfoParse(test_pg_url(), NULL);
    assert_non_null(opts);
    const char *host = param(opts, "host"), *port = param(opts, "port"), *dbname = param(opts, "dbname");
    snprintf(out, cap, "host='%s' port='%s' dbname='%s' user='%s' password='%s'", host ? host : "",
             port ? port : "5432", dbname ? dbname : "postgres",
             user ? user : (param(opts, "user") ? param(opts, "user") : ""),
             password ? password : (param(opts, "password") ? param(opts, "password") : ""));
    PQconninfoFree(opts);
}

static PGresult *probe_exec(fixture *f, const char *sql)
{
    PGresult *res = PQexec(f->probe, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        print_error("%s: %s", sql, PQerrorMessage(f->probe));
        PQclear(res);
        fail();
    }
    return res;
}

static void probe_do(fixture *f, const char *sql)
{
    PQclear(probe_exec(f, sql));
}

static int64_t probe_int(fixture *f, const char *sql)
{
    PGresult *res = probe_exec(f, sql);
    int64_t v = PQntuples(res) && !PQgetisnull(res, 0, 0) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -1;
    PQclear(res);
    return v;
}

static int setup(void **state)
{
    static int counter;
    if (!test_pg_url()) {
        static int told;
        if (!told++)
            print_message("AGENTRUN_TEST_PG is not set: the PostgreSQL tests are skipped\n");
        *state = NULL;
        return 0;
    }
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->schema, sizeof f->schema, "ar_pg_%ld_%d", (long)getpid(), ++counter);
    snprintf(f->app, sizeof f->app, "agentrun_test_%ld_%d", (long)getpid(), counter);
    location_as(f->url, sizeof f->url, NULL, NULL);
    size_t n = strlen(f->url);
    snprintf(f->url + n, sizeof f->url - n, " application_name='%s'", f->app);
    f->probe = PQconnectdb(test_pg_url());
    if (PQstatus(f->probe) != CONNECTION_OK) {
        print_error("connecting to AGENTRUN_TEST_PG: %s", PQerrorMessage(f->probe));
        PQfinish(f->probe);
        free(f);
        return -1;
    }
    PQclear(PQexec(f->probe, "SET client_min_messages = warning"));
    *state = f;
    return 0;
}

static void drop_schema(fixture *f, const char *schema)
{
    char sql[160];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS \"%s\" CASCADE", schema);
    PQclear(PQexec(f->probe, sql));
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f)
        return 0;
    if (PQtransactionStatus(f->probe) != PQTRANS_IDLE)
        PQclear(PQexec(f->probe, "ROLLBACK"));
    drop_schema(f, f->schema);
    char other[80];
    snprintf(other, sizeof other, "%s_b", f->schema);
    drop_schema(f, other);
    PQfinish(f->probe);
    free(f);
    return 0;
}

static fixture *need_server(void **state)
{
    if (!*state)
        skip();
    return *state;
}

static int open_in(ar_store **out, const char *location, const char *schema, int busy_ms)
{
    ar_open_opts o = AR_OPEN_OPTS_INIT;
    o.schema = schema;
    o.busy_timeout_ms = busy_ms;
    return ar_store_open(out, location, &o);
}

static ar_store *open_store(fixture *f, const char *schema, int busy_ms)
{
    ar_store *store = NULL;
    int rc = open_in(&store, f->url, schema, busy_ms);
    if (rc != AR_OK) {
        print_error("open: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        ar_store_close(store);
        fail();
    }
    return store;
}

static int step(ar_run *run, const char *content)
{
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    s.content = content;
    return ar_run_step(NULL, run, &s);
}

/* The pid of the store's server session (found by its application name). */
static int store_pid(fixture *f)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT pid FROM pg_stat_activity WHERE application_name = '%s'", f->app);
    return (int)probe_int(f, sql);
}

/* Writes a finished record whole, dated `ahead_ms` from now; returns its
 * created_at; its id goes to id_out. */
static int64_t write_dated(ar_store *store, int64_t ahead_ms, char *id_out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ar_record f = AR_RECORD_INIT;
    f.agent = "pg-agent";
    f.goal = "written";
    f.created_at = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + ahead_ms;
    f.finished_at = f.created_at;
    char *id = NULL;
    ar_record *rec = NULL;
    assert_int_equal(ar_record_completed(&rec, &f, NULL, 0, NULL, 0), AR_OK);
    assert_int_equal(ar_store_write(&id, store, rec), AR_OK);
    int64_t at = rec->created_at;
    snprintf(id_out, cap, "%s", id);
    ar_record_free(rec);
    ar_free(id);
    return at;
}

/* ---- opening ------------------------------------------------------------ */

/* A store of schema 2 (before forks and waits) is upgraded in place when
 * opened, and its runs read back, fork, wait and are answered. */
static void test_a_schema2_store_is_upgraded_and_reads_back(void **state)
{
    fixture *f = need_server(state);
    ar_store *store = open_store(f, f->schema, 5000);
    ar_run *run = test_begin(store, "old");
    assert_int_equal(step(run, "1"), AR_OK);
    assert_int_equal(step(run, "2"), AR_OK);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    assert_int_equal(ar_run_complete(NULL, run, "\"done\"", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(run);
    ar_store_close(store);
    char sql[512];
    snprintf(sql, sizeof sql, "DROP INDEX \"%s\".runs_by_forked_from;"
             "ALTER TABLE \"%s\".runs DROP COLUMN forked_from, DROP COLUMN forked_seq, DROP COLUMN request,"
             " DROP COLUMN response; UPDATE \"%s\".meta SET value = '2' WHERE key = 'schema_version'",
             f->schema, f->schema, f->schema);
    probe_do(f, sql);
    store = open_store(f, f->schema, 5000);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.schema_version, AR_SCHEMA_VERSION);
    ar_record *rec = test_get(store, id, 1);
    assert_int_equal(rec->status, AR_COMPLETED);
    assert_int_equal(rec->n_steps, 2);
    assert_null(rec->forked_from);
    assert_null(rec->request);
    ar_record_free(rec);
    ar_run *fork = NULL;
    assert_int_equal(ar_run_fork(&fork, store, id, NULL), AR_OK);
    assert_int_equal(ar_run_wait(NULL, fork, "\"ok?\"", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(ar_store_respond(NULL, store, ar_run_id(fork), "true", AR_NUL_TERMINATED), AR_OK);
    rec = test_get(store, ar_run_id(fork), 1);
    assert_string_equal(rec->forked_from, id);
    assert_int_equal(rec->forked_seq, 2);
    assert_string_equal(rec->response, "true");
    assert_int_equal(rec->n_steps, 4);
    ar_record_free(rec);
    ar_run_close(fork);
    ar_store_close(store);
}

static void test_open_creates_the_schema_with_its_meta_record_and_reopens_it(void **state)
{
    fixture *f = need_server(state);
    ar_store *store = open_store(f, f->schema, 5000);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_string_equal(info.backend, "postgresql");
    assert_int_equal(info.schema_version, AR_SCHEMA_VERSION);
    assert_int_equal(info.runs, 0);
    ar_run *run = test_begin(store, "pg-agent");
    assert_int_equal(step(run, "1"), AR_OK);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    assert_int_equal(ar_run_complete(NULL, run, "\"done\"", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(run);
    ar_store_close(store);

    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\".meta WHERE (key, value) IN "
             "(('application', 'agentrun'), ('schema_version', '3'))", f->schema);
    assert_int_equal(probe_int(f, sql), 2);

    store = open_store(f, f->schema, 5000);
    ar_record *rec = test_get(store, id, 1);
    assert_int_equal(rec->status, AR_COMPLETED);
    assert_int_equal(rec->n_steps, 1);
    ar_record_free(rec);
    ar_store_close(store);
}

static void test_two_schemas_of_one_database_are_independent_stores(void **state)
{
    fixture *f = need_server(state);
    char other[80];
    snprintf(other, sizeof other, "%s_b", f->schema);
    ar_store *a = open_store(f, f->schema, 5000), *b = open_store(f, other, 5000);
    ar_run *run = test_begin(a, "pg-agent");
    assert_int_equal(step(run, "{\"in\":\"a\"}"), AR_OK);
    ar_record *rec = NULL;
    assert_int_equal(ar_store_get(&rec, b, ar_run_id(run), 0), AR_ENOTFOUND);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, b), AR_OK);
    assert_int_equal(info.runs, 0);
    assert_int_equal(info.steps, 0);
    assert_int_equal(ar_store_info_get(&info, a), AR_OK);
    assert_int_equal(info.runs, 1);
    assert_int_equal(info.steps, 1);
    ar_run_close(run);
    ar_store_close(a);
    ar_store_close(b);
}

static void test_a_schema_name_that_is_no_identifier_is_misuse_and_creates_nothing(void **state)
{
    fixture *f = need_server(state);
    const char *bad[] = {
        "", "1abc", "a-b", "a b", "a\"b", "x;DROP SCHEMA public", "caf\xc3\xa9",
        "a234567890123456789012345678901234567890123456789012345678901234", /* 64 bytes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ar_store *store = NULL;
        int rc = open_in(&store, f->url, bad[i], 5000);
        if (rc != AR_EMISUSE) {
            print_error("schema \"%s\": %s\n", bad[i], ar_code_name(rc));
            fail();
        }
        assert_non_null(strstr(ar_store_errmsg(store), "schema"));
        ar_store_close(store);
    }
    assert_int_equal(probe_int(f, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'a%' AND "
                                  "(nspname LIKE '%-%' OR nspname LIKE '% %' OR nspname LIKE '%;%')"), 0);
    /* 63 bytes is the most PostgreSQL keeps */
    char longest[64];
    memset(longest, 'z', 63);
    longest[63] = '\0';
    ar_store *store = open_store(f, longest, 5000);
    ar_store_close(store);
    drop_schema(f, longest);
}

static void test_a_schema_of_another_application_is_ecorrupt_and_left_alone(void **state)
{
    fixture *f = need_server(state);
    char sql[512];
    snprintf(sql, sizeof sql, "CREATE SCHEMA \"%s\"; CREATE TABLE \"%s\".orders(id int)", f->schema, f->schema);
    probe_do(f, sql);
    ar_store *store = NULL;
    assert_int_equal(open_in(&store, f->url, f->schema, 5000), AR_ECORRUPT);
    assert_non_null(strstr(ar_store_errmsg(store), "not an agentrun store"));
    ar_store_close(store);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_tables WHERE schemaname = '%s'", f->schema);
    assert_int_equal(probe_int(f, sql), 1);

    /* a meta table naming another application */
    snprintf(sql, sizeof sql, "DROP TABLE \"%s\".orders; CREATE TABLE \"%s\".meta(key text primary key, value text);"
             "INSERT INTO \"%s\".meta VALUES('application', 'other'), ('schema_version', '2')",
             f->schema, f->schema, f->schema);
    probe_do(f, sql);
    assert_int_equal(open_in(&store, f->url, f->schema, 5000), AR_ECORRUPT);
    ar_store_close(store);
}

static void test_a_schema_made_by_a_newer_agentrun_is_eversion(void **state)
{
    fixture *f = need_server(state);
    ar_store *store = open_store(f, f->schema, 5000);
    ar_store_close(store);
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE \"%s\".meta SET value = '99' WHERE key = 'schema_version'", f->schema);
    probe_do(f, sql);
    assert_int_equal(open_in(&store, f->url, f->schema, 5000), AR_EVERSION);
    assert_non_null(strstr(ar_store_errmsg(store), "newer agentrun"));
    ar_store_close(store);
}

static void test_a_refused_login_is_eperm_and_no_message_shows_the_password(void **state)
{
    fixture *f = need_server(state);
    char loc[2048], url[2048];
    location_as(loc, sizeof loc, "agentrun_no_such_role", "s3cr3t-pw");
    PQconninfoOption *opts = PQconninfoParse(test_pg_url(), NULL);
    const char *host = param(opts, "host"), *port = param(opts, "port"), *dbname = param(opts, "dbname");
    snprintf(url, sizeof url, "postgresql://agentrun_no_such_role:s3cr3t-pw@/%s?host=%s&port=%s",
             dbname ? dbname : "postgres", host ? host : "", port ? port : "5432");
    PQconninfoFree(opts);
    const char *locations[] = { loc, url };
    for (size_t i = 0; i < 2; i++) {
        ar_store *store = NULL;
        int rc = open_in(&store, locations[i], f->schema, 5000);
        assert_int_equal(rc, AR_EPERM);
        const char *msg = ar_store_errmsg(store);
        assert_null(strstr(msg, "s3cr3t"));
        assert_non_null(strstr(msg, "refused"));
        ar_store_close(store);
    }
}

static void test_an_unreachable_server_is_eio(void **state)
{
    fixture *f = need_server(state);
    const char *locations[] = {
        "postgresql://me:s3cr3t-pw@/agentrun?host=/nonexistent-agentrun-dir",
        "host=/nonexistent-agentrun-dir dbname=agentrun password=s3cr3t-pw",
    };
    for (size_t i = 0; i < 2; i++) {
        ar_store *store = NULL;
        assert_int_equal(open_in(&store, locations[i], f->schema, 5000), AR_EIO);
        assert_non_null(strstr(ar_store_errmsg(store), "cannot reach the server"));
        assert_null(strstr(ar_store_errmsg(store), "s3cr3t"));
        ar_store_close(store);
    }
}

static void test_the_store_path_never_shows_the_password(void **state)
{
    fixture *f = need_server(state);
    PQconninfoOption *opts = PQconninfoParse(test_pg_url(), NULL);
    const char *given = param(opts, "password");
    /* a server that trusts the connection ignores a password it is given */
    char secret[256];
    snprintf(secret, sizeof secret, "%s", given && *given ? given : "s3cr3t-pw");
    const char *host = param(opts, "host"), *port = param(opts, "port"), *dbname = param(opts, "dbname");
    const char *user = param(opts, "user");
    char url[2048], kv[2048];
    snprintf(url, sizeof url, "postgresql://%s:%s@/%s?host=%s&port=%s", user ? user : "", secret,
             dbname ? dbname : "postgres", host ? host : "", port ? port : "5432");
    location_as(kv, sizeof kv, NULL, secret);
    char where[512];
    snprintf(where, sizeof where, "%s", host ? host : "");
    PQconninfoFree(opts);
    const char *locations[] = { url, kv };
    for (size_t i = 0; i < 2; i++) {
        ar_store *store = NULL;
        int rc = open_in(&store, locations[i], f->schema, 5000);
        if (rc != AR_OK) {
            print_error("open: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
            fail();
        }
        ar_store_info info;
        assert_int_equal(ar_store_info_get(&info, store), AR_OK);
        assert_null(strstr(info.path, secret));
        assert_non_null(strstr(info.path, where));
        ar_store_close(store);
    }
}

/* Concurrent first opens of one new schema all succeed, and make it once. */
static void test_concurrent_first_opens_of_one_schema_all_succeed(void **state)
{
    fixture *f = need_server(state);
    enum { N = 4 };
    pid_t kids[N];
    for (int i = 0; i < N; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0) {
            ar_store *store = NULL;
            int rc = open_in(&store, f->url, f->schema, 5000);
            ar_store_close(store);
            _exit(rc == AR_OK ? 0 : 10 + rc);
        }
    }
    for (int i = 0; i < N; i++) {
        int status = 0;
        assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    char sql[256];
    /* one of each meta row: application, schema_version, last_run_key */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\".meta", f->schema);
    assert_int_equal(probe_int(f, sql), 3);
}

/* ---- writing ------------------------------------------------------------ */

static void test_steps_round_trip_exactly(void **state)
{
    fixture *f = need_server(state);
    ar_store *store = open_store(f, f->schema, 5000);
    ar_run *run = test_begin(store, "pg-agent");
    ar_step s = AR_STEP_INIT;
    s.kind = "tool";
    s.name = "search";
    s.content = "{\"q\":\"caf\\u00e9 \\u0000\",\"n\":[1,2.5,true,null]}";
    s.usage.input_tokens = 12;
    s.usage.output_tokens = 30;
    s.usage.cost = 0.000000004;
    s.duration_ms = 17;
    int64_t seq = 0;
    assert_int_equal(ar_run_step(&seq, run, &s), AR_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(step(run, "\"two\""), AR_OK);
    assert_int_equal(ar_run_checkpoint(run, "{\"at\":2}", AR_NUL_TERMINATED), AR_OK);
    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->n_steps, 2);
    assert_string_equal(rec->steps[0].name, "search");
    assert_int_equal(rec->steps[0].content_len, strlen(s.content));
    assert_memory_equal(rec->steps[0].content, s.content, strlen(s.content));
    assert_int_equal(rec->steps[0].usage.input_tokens, 12);
    assert_exact(rec->steps[0].usage.cost, 0.000000004);
    assert_int_equal(rec->usage.output_tokens, 30);
    assert_int_equal(rec->iterations, 2);
    ar_record_free(rec);
    char *cp = NULL;
    int64_t cseq = 0;
    assert_int_equal(ar_store_checkpoint(&cp, &cseq, store, ar_run_id(run)), AR_OK);
    assert_string_equal(cp, "{\"at\":2}");
    assert_int_equal(cseq, 2);
    ar_free(cp);
    ar_run_close(run);
    ar_store_close(store);
}

/* One writer per run across connections: after another store recovered and
 * resumed the run, the first handle's writes are refused and change nothing. */
static void test_a_run_resumed_through_another_connection_fences_the_first_handle(void **state)
{
    fixture *f = need_server(state);
    ar_store *a = open_store(f, f->schema, 5000), *b = open_store(f, f->schema, 5000);
    ar_run *run = test_begin(a, "pg-agent");
    assert_int_equal(step(run, "1"), AR_OK);
    int64_t n = 0;
    assert_int_equal(ar_store_recover(&n, b, 0), AR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(step(run, "2"), AR_ESTATE);
    assert_non_null(strstr(ar_run_errmsg(run), "is interrupted"));
    ar_run *taken = NULL;
    assert_int_equal(ar_run_resume(&taken, b, ar_run_id(run), NULL), AR_OK);
    assert_int_equal(step(taken, "2"), AR_OK);
    assert_int_equal(step(run, "3"), AR_ESTATE);
    assert_int_equal(ar_run_complete(NULL, run, "1", AR_NUL_TERMINATED), AR_ESTATE);
    ar_record *rec = test_get(a, ar_run_id(run), 1);
    assert_int_equal(rec->status, AR_RUNNING);
    assert_int_equal(rec->n_steps, 2);
    assert_memory_equal(rec->steps[1].content, "2", 1);
    ar_record_free(rec);
    ar_run_close(run);
    ar_run_close(taken);
    ar_store_close(a);
    ar_store_close(b);
}

static void test_a_lock_held_past_busy_timeout_is_ebusy_and_not_sticky(void **state)
{
    fixture *f = need_server(state);
    ar_store *store = open_store(f, f->schema, 100);
    ar_run *run = test_begin(store, "pg-agent");
    assert_int_equal(step(run, "1"), AR_OK);
    char sql[256];
    snprintf(sql, sizeof sql, "BEGIN; SELECT * FROM \"%s\".runs FOR UPDATE", f->schema);
    probe_do(f, sql);
    assert_int_equal(step(run, "2"), AR_EBUSY);
    assert_int_equal(ar_store_errcode(store), AR_EBUSY);
    probe_do(f, "ROLLBACK");
    assert_int_equal(step(run, "2"), AR_OK);
    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->n_steps, 2);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

/* ---- the connection dropped ----------------------------------------------- */

static void test_a_connection_ended_between_calls_is_made_again_by_the_next_call(void **state)
{
    fixture *f = need_server(state);
    ar_store *store = open_store(f, f->schema, 5000);
    ar_run *run = test_begin(store, "pg-agent");
    assert_int_equal(step(run, "1"), AR_OK);
    for (int i = 0; i < 3; i++) {
        int pid = store_pid(f);
        assert_true(pid > 0);
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", pid);
        probe_do(f, sql);
        /* until the server has let it go */
        snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE pid = %d", pid);
        while (probe_int(f, sql) != 0)
            usleep(1000);
        int rc = step(run, "2");
        if (rc != AR_OK) {
            print_error("step after the session ended: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
            fail();
        }
        assert_int_not_equal(store_pid(f), pid);
    }
    assert_int_equal(test_stored_steps(store), 4);
    ar_run_close(run);
    ar_store_close(store);
}

typedef struct killer {
    const fixture *f;
    int wait_for_lock;  /* end the session once it waits for a lock */
    int stop;           /* random moments until told to stop */
    int kills;
    int last;           /* the pid it ended last */
    pthread_mutex_t mu;
} killer;

static int killer_stopped(killer *k)
{
    pthread_mutex_lock(&k->mu);
    int stop = k->stop;
    pthread_mutex_unlock(&k->mu);
    return stop;
}

static void *killer_main(void *ud)
{
    killer *k = ud;
    PGconn *c = PQconnectdb(test_pg_url());
    char sql[512];
    if (k->wait_for_lock)
        snprintf(sql, sizeof sql, "SELECT pid, pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity"
                 " WHERE application_name = '%s' AND wait_event_type = 'Lock' OFFSET 0) s", k->f->app);
    else
        snprintf(sql, sizeof sql, "SELECT pid, pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity"
                 " WHERE application_name = '%s' OFFSET 0) s", k->f->app);
    /* (OFFSET 0 keeps the filter inside: pg_terminate_backend is called only
     * for the rows it keeps) */
    unsigned seed = (unsigned)getpid();
    while (!killer_stopped(k)) {
        if (!k->wait_for_lock) {
            struct timespec ts = { 0, (long)(5000 + rand_r(&seed) % 60000) * 1000L };
            nanosleep(&ts, NULL);
        } else {
            usleep(2000);
        }
        PGresult *res = PQexec(c, sql);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0) {
            pthread_mutex_lock(&k->mu);
            k->kills += PQntuples(res);
            k->last = atoi(PQgetvalue(res, 0, 0));
            if (k->wait_for_lock)
                k->stop = 1;
            pthread_mutex_unlock(&k->mu);
        }
        PQclear(res);
    }
    PQfinish(c);
    return NULL;
}

/* The call made while the connection drops fails with EIO and writes
 * nothing; the run stays open and the same step then goes in. */
static void test_a_connection_ended_during_a_call_fails_that_call_only(void **state)
{
    fixture *f = need_server(state);
    ar_store *store = open_store(f, f->schema, 30000);
    ar_run *run = test_begin(store, "pg-agent");
    assert_int_equal(step(run, "1"), AR_OK);
    char sql[256];
    snprintf(sql, sizeof sql, "BEGIN; SELECT * FROM \"%s\".runs FOR UPDATE", f->schema);
    probe_do(f, sql);
    killer k = { f, 1, 0, 0, 0, PTHREAD_MUTEX_INITIALIZER };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, killer_main, &k), 0);
    /* waits for the probe's lock until the killer ends its session */
    int rc = step(run, "\"cut\"");
    pthread_join(t, NULL);
    probe_do(f, "ROLLBACK");
    assert_int_equal(k.kills, 1);
    assert_int_equal(rc, AR_EIO);
    assert_non_null(strstr(ar_store_errmsg(store), "connection"));
    assert_int_equal(step(run, "2"), AR_OK);
    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->n_steps, 2);
    assert_memory_equal(rec->steps[1].content, "2", 1);
    ar_record_free(rec);
    ar_run_close(run);
    ar_store_close(store);
}

/* The writer's session ended at random moments, COMMIT included, many
 * times: each step acknowledged is stored exactly once, with the content
 * of the attempt that was acknowledged; an attempt reported EIO is not
 * stored (its retry, with other content, is). */
static void test_sessions_ended_at_random_moments_lose_and_double_nothing(void **state)
{
    fixture *f = need_server(state);
    ar_store *store = open_store(f, f->schema, 5000);
    ar_run *run = test_begin(store, "pg-agent");
    /* at least MIN_STEPS steps, and on until the killer has ended MIN_KILLS
     * sessions (a fast server records many steps between two kills) */
    enum { MIN_STEPS = 100, MIN_KILLS = 20, MAX_STEPS = 20000 };
    static int attempts[MAX_STEPS + 1];
    memset(attempts, 0, sizeof attempts);
    int failures = 0, steps = 0;
    killer k = { f, 0, 0, 0, 0, PTHREAD_MUTEX_INITIALIZER };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, killer_main, &k), 0);
    for (int seq = 1;; ) {
        if (seq > MIN_STEPS) {
            pthread_mutex_lock(&k.mu);
            int kills = k.kills;
            pthread_mutex_unlock(&k.mu);
            if (kills >= MIN_KILLS || seq > MAX_STEPS)
                break;
        }
        char content[64];
        snprintf(content, sizeof content, "{\"seq\":%d,\"attempt\":%d}", seq, attempts[seq]);
        int rc = step(run, content);
        if (rc == AR_OK) {
            steps = seq++;
            continue;
        }
        if (rc != AR_EIO) {
            print_error("step %d: %s: %s\n", seq, ar_code_name(rc), ar_store_errmsg(store));
            fail();
        }
        attempts[seq]++;
        failures++;
    }
    pthread_mutex_lock(&k.mu);
    k.stop = 1;
    pthread_mutex_unlock(&k.mu);
    pthread_join(t, NULL);
    /* a session ended as the killer stopped takes the next call with it:
     * wait until the server has let it go, so that the reads below meet a
     * connection whose end has arrived (and is noticed before they run) */
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE pid = %d", k.last);
    while (k.last && probe_int(f, sql) != 0)
        usleep(1000);
    print_message("%d sessions ended, %d steps failed with EIO and were retried\n", k.kills, failures);
    assert_true(k.kills >= MIN_KILLS);
    ar_record *rec = test_get(store, ar_run_id(run), 1);
    assert_int_equal(rec->n_steps, steps);
    assert_int_equal(rec->iterations, steps);
    for (int i = 0; i < steps; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"seq\":%d,\"attempt\":%d}", i + 1, attempts[i + 1]);
        assert_int_equal(rec->steps[i].seq, i + 1);
        assert_int_equal(rec->steps[i].content_len, strlen(want));
        assert_memory_equal(rec->steps[i].content, want, strlen(want));
    }
    ar_record_free(rec);
    assert_int_equal(test_stored_steps(store), steps);
    ar_run_close(run);
    ar_store_close(store);
}

/* A record written whole with a date a minute ahead keeps its id, and runs
 * begun after it still take their ids (and created_at) from the clock: a
 * written record never moves the order of runs begun live. */
static void test_a_record_written_ahead_does_not_push_new_runs_into_the_future(void **state)
{
    fixture *f = need_server(state);
    ar_store *store = open_store(f, f->schema, 5000);
    ar_run *first = test_begin(store, "pg-agent");
    char ahead_id[64];
    int64_t ahead = write_dated(store, 60000, ahead_id, sizeof ahead_id);
    for (int i = 0; i < 3; i++) {
        ar_run *run = test_begin(store, "pg-agent");
        ar_record *rec = test_get(store, ar_run_id(run), 0);
        assert_true(rec->created_at < ahead);
        assert_true(strcmp(ar_run_id(run), ahead_id) < 0);
        ar_record_free(rec);
        ar_run_close(run);
    }
    ar_run_close(first);
    ar_store_close(store);
}

/* A schema made before the counter of live runs existed (meta without its
 * row) opens and takes new runs after every run already there. */
static void test_a_store_without_the_run_counter_takes_new_runs_after_its_runs(void **state)
{
    fixture *f = need_server(state);
    ar_store *store = open_store(f, f->schema, 5000);
    ar_run *run = test_begin(store, "pg-agent");
    char *old = strdup(ar_run_id(run));
    ar_run_close(run);
    char sql[160];
    snprintf(sql, sizeof sql, "DELETE FROM \"%s\".meta WHERE key = 'last_run_key'", f->schema);
    probe_do(f, sql);
    ar_store_close(store);
    store = open_store(f, f->schema, 5000);
    run = test_begin(store, "pg-agent");
    assert_true(strcmp(ar_run_id(run), old) > 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\".meta WHERE key = 'last_run_key'", f->schema);
    assert_int_equal(probe_int(f, sql), 1);
    ar_run_close(run);
    free(old);
    ar_store_close(store);
}

/* ---- retention ------------------------------------------------------------ */

typedef struct reading_rule {
    fixture *f;
    ar_store *store;
    int calls, failed_code, later_ok, give_up;
    char failed_msg[256];
} reading_rule;

/* Reads each run with its steps; on the first call the steps table is
 * locked by another connection, so that read fails (lock timeout). The rule
 * catches that failure and keeps the run, or (give_up) fails itself. */
static int read_each_run(void *ud, const ar_record *run, double age, int *verdict)
{
    (void)age;
    reading_rule *r = ud;
    int first = r->calls++ == 0;
    if (first) {
        char sql[160];
        snprintf(sql, sizeof sql, "BEGIN; LOCK TABLE \"%s\".steps IN ACCESS EXCLUSIVE MODE", r->f->schema);
        probe_do(r->f, sql);
    }
    ar_record *rec = NULL;
    int rc = ar_store_get(&rec, r->store, run->id, 1);
    ar_record_free(rec);
    if (first) {
        probe_do(r->f, "ROLLBACK");
        r->failed_code = rc;
        snprintf(r->failed_msg, sizeof r->failed_msg, "%s", ar_store_errmsg(r->store));
        if (r->give_up)
            return 7;
    } else if (rc == AR_OK) {
        r->later_ok++;
    }
    *verdict = AR_RULE_KEEP;
    return 0;
}

/* A read made by a retention rule that fails on the server (here a lock
 * wait past busy_timeout) leaves the scan usable: the rule sees the read's
 * own error, its later reads work, and retention finishes with the rule's
 * verdicts; a rule that gives up on that error stops retention with
 * ECALLBACK, deleting nothing. */
static void test_a_failed_read_in_a_retention_rule_leaves_the_scan_usable(void **state)
{
    fixture *f = need_server(state);
    ar_store *store = open_store(f, f->schema, 200);
    enum { RUNS = 3 };
    for (int i = 0; i < RUNS; i++) {
        ar_run *run = test_begin(store, "pg-agent");
        assert_int_equal(step(run, "1"), AR_OK);
        ar_record *done = NULL;
        assert_int_equal(ar_run_complete(&done, run, "1", 1), AR_OK);
        ar_record_free(done);
        ar_run_close(run);
    }
    for (int give_up = 0; give_up <= 1; give_up++) {
        reading_rule r = { f, store, 0, 0, 0, give_up, "" };
        ar_retention policy = AR_RETENTION_INIT;
        policy.rule = read_each_run;
        policy.rule_ud = &r;
        ar_retention_report report;
        int rc = ar_store_retain(&report, store, &policy);
        assert_int_equal(r.failed_code, AR_EBUSY);
        assert_null(strstr(r.failed_msg, "aborted"));
        if (give_up) {
            assert_int_equal(rc, AR_ECALLBACK);
            assert_non_null(strstr(ar_store_errmsg(store), "the retention rule failed"));
            assert_int_equal(r.calls, 1);
        } else {
            if (rc != AR_OK)
                print_error("retain: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
            assert_int_equal(rc, AR_OK);
            assert_int_equal(r.calls, RUNS);
            assert_int_equal(r.later_ok, RUNS - 1);
            assert_int_equal(report.considered, RUNS);
            assert_int_equal(report.kept_by_rule, RUNS);
            assert_int_equal(report.deleted, 0);
        }
    }
    /* the store goes on working */
    ar_run *run = test_begin(store, "pg-agent");
    assert_int_equal(step(run, "1"), AR_OK);
    ar_run_close(run);
    ar_store_close(store);
}

/* ---- the server stopped and started while a writer records ------------------ */

/* How to stop and start the test server: its data directory (env
 * AGENTRUN_TEST_PGDATA, set by the scripts that start a throwaway server),
 * the pg_ctl beside the postgres binary named in its postmaster.opts, run
 * as the directory's owner when we are root, and the server's options from
 * that file. 0 when there is none (a server given by the user). */
typedef struct server_ctl {
    char data[1024];
    char pg_ctl[2200];      /* the command prefix, owner included */
    char opts[2048];        /* the postgres arguments after its path */
} server_ctl;

static int server_ctl_find(server_ctl *c)
{
    const char *data = getenv("AGENTRUN_TEST_PGDATA");
    if (!data || !*data || strlen(data) >= sizeof c->data || strchr(data, '\''))
        return 0;
    snprintf(c->data, sizeof c->data, "%s", data);
    char path[1100];
    snprintf(path, sizeof path, "%s/postmaster.opts", data);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    char line[2048];
    char *got = fgets(line, sizeof line, fp);
    fclose(fp);
    if (!got)
        return 0;
    line[strcspn(line, "\n")] = '\0';
    char *space = strchr(line, ' '), *slash = NULL;
    for (char *q = line; space && q < space; q++)
        if (*q == '/')
            slash = q;
    if (!slash || strchr(space, '\''))
        return 0;
    /* pg_ctl gives the data directory itself (-D): the other arguments */
    const char *args = space + 1;
    if (strncmp(args, "\"-D\" \"", 6) == 0 && strchr(args + 6, '"'))
        args = strchr(args + 6, '"') + 1 + (strchr(args + 6, '"')[1] == ' ');
    snprintf(c->opts, sizeof c->opts, "%s", args);
    *slash = '\0';
    struct stat st;
    if (stat(data, &st) != 0)
        return 0;
    const struct passwd *owner = getuid() == 0 && st.st_uid != 0 ? getpwuid(st.st_uid) : NULL;
    snprintf(c->pg_ctl, sizeof c->pg_ctl, "%s%s%s'%s/pg_ctl'", owner ? "runuser -u '" : "",
             owner ? owner->pw_name : "", owner ? "' -- " : "", line);
    return 1;
}

static void server_ctl_run(const server_ctl *c, const char *action)
{
    char cmd[8192];
    if (strcmp(action, "stop") == 0)
        snprintf(cmd, sizeof cmd, "%s -D '%s' -m immediate -w -t 60 stop >/dev/null", c->pg_ctl, c->data);
    else
        snprintf(cmd, sizeof cmd, "%s -D '%s' -w -t 60 -l '%s/restart.log' -o '%s' start >/dev/null", c->pg_ctl,
                 c->data, c->data, c->opts);
    int rc = system(cmd);
    if (rc != 0) {
        print_error("%s: exit status %d\n", cmd, rc);
        fail();
    }
}

/* The most steps the writer records (and its log holds). */
enum { WRITER_MAX = 1 << 20 };

/* The writer, in a child process: begins a run and records steps until
 * `stop` exists, retrying a step that failed with EIO with the same step
 * (its outcome may be unknown: the retry learns it); each acknowledged step
 * is logged "A seq attempts", each EIO "E seq". Any other failure ends it
 * with status 3 (logged "X code message"). */
static void writer_main(fixture *f, const char *log_path, const char *stop)
{
    /* a crash of the writer is its own (a core dump, status by signal), not
     * reported as the parent's test by the handlers the child inherited */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    ar_store *store = NULL;
    ar_open_opts o = AR_OPEN_OPTS_INIT;
    o.schema = f->schema;
    o.durability = AR_DURABILITY_FULL;
    if (fd < 0 || ar_store_open(&store, f->url, &o) != AR_OK)
        _exit(2);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "pg-agent";
    spec.goal = "record through restarts";
    ar_run *run = NULL;
    if (ar_run_begin(&run, store, &spec) != AR_OK)
        _exit(2);
    dprintf(fd, "R %s\n", ar_run_id(run));
    int attempt = 0;
    /* (and at the log's capacity: the parent then sees it end early) */
    for (int seq = 1; access(stop, F_OK) != 0 && seq < WRITER_MAX;) {
        char content[64];
        snprintf(content, sizeof content, "{\"seq\":%d}", seq);
        int rc = step(run, content);
        if (rc == AR_OK) {
            dprintf(fd, "A %d %d\n", seq, attempt);
            seq++;
            attempt = 0;
        } else if (rc == AR_EIO) {
            dprintf(fd, "E %d\n", seq);
            attempt++;
            usleep(5000);
        } else {
            dprintf(fd, "X %s %s\n", ar_code_name(rc), ar_store_errmsg(store));
            _exit(3);
        }
    }
    ar_run_close(run);
    ar_store_close(store);
    close(fd);
    _exit(0);
}

/* What the writer's log says so far. */
typedef struct writer_log {
    char run[64];
    int acked, failures;
    int attempts[WRITER_MAX]; /* the failed calls before each acknowledged seq */
} writer_log;

static void writer_log_read(const char *path, writer_log *w)
{
    memset(w, 0, sizeof *w);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return;
    char line[600];
    while (fgets(line, sizeof line, fp)) {
        int seq, attempt;
        if (line[0] == 'R')
            sscanf(line, "R %63s", w->run);
        else if (line[0] == 'E')
            w->failures++;
        else if (sscanf(line, "A %d %d", &seq, &attempt) == 2 && seq == w->acked + 1 && seq < WRITER_MAX)
            w->attempts[w->acked = seq] = attempt;
    }
    fclose(fp);
}

/* Waits until the writer's log satisfies want (checked against `base`), or
 * fails when the writer has ended. */
static void writer_wait(pid_t pid, const char *path, writer_log *w, int (*want)(const writer_log *, int),
                        int base)
{
    for (;;) {
        writer_log_read(path, w);
        if (want(w, base))
            return;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            /* its last line says why ("X code message") */
            size_t len;
            char *text = test_slurp(path, &len);
            const char *last = text ? strrchr(text, 'X') : NULL;
            print_error("the writer ended early (status %d): %s\n", status, last ? last : "(no reason logged)");
            free(text);
            fail();
        }
        usleep(2000);
    }
}

static int acked_past(const writer_log *w, int base) { return w->acked >= base; }
static int failed_past(const writer_log *w, int base) { return w->failures > base; }

/* The server stopped (immediate: no shutdown, crash recovery at start) and
 * started again, several times, while a writer records with durability
 * full: calls made while it is down fail with EIO (a step cut off in flight
 * among them, its outcome unknown until the server is back), the writer
 * goes on by itself once it is back, retrying the step that failed, and the
 * run holds every acknowledged step once, and nothing else. */
static void test_the_server_restarted_while_a_writer_records_loses_and_doubles_nothing(void **state)
{
    fixture *f = need_server(state);
    server_ctl ctl;
    if (!server_ctl_find(&ctl)) {
        print_message("AGENTRUN_TEST_PGDATA does not name the test server's data directory: "
                      "the restart test is skipped\n");
        skip();
    }
    ar_store_close(open_store(f, f->schema, 5000));     /* the schema, made before the writer starts */
    char *dir = tmpdir_make();
    char *log_path = tmpdir_path(dir, "acked.log"), *stop = tmpdir_path(dir, "stop");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        writer_main(f, log_path, stop);
    static writer_log w;
    writer_wait(pid, log_path, &w, acked_past, 20);
    enum { RESTARTS = 3 };
    for (int i = 0; i < RESTARTS; i++) {
        server_ctl_run(&ctl, "stop");
        /* a call made while the server is down has failed (EIO) */
        writer_wait(pid, log_path, &w, failed_past, w.failures);
        server_ctl_run(&ctl, "start");
        /* and recording goes on by itself */
        writer_wait(pid, log_path, &w, acked_past, w.acked + 20);
    }
    FILE *fp = fopen(stop, "w");
    assert_non_null(fp);
    fclose(fp);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    writer_log_read(log_path, &w);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        size_t len;
        char *text = test_slurp(log_path, &len);
        print_error("the writer failed (status %d); its log ends: %s\n", status,
                    text && strlen(text) > 300 ? text + strlen(text) - 300 : text);
        free(text);
        fail();
    }
    print_message("%d restarts, %d steps acknowledged, %d calls failed with EIO\n", RESTARTS, w.acked, w.failures);
    PQreset(f->probe);
    assert_int_equal(PQstatus(f->probe), CONNECTION_OK);
    probe_do(f, "SET client_min_messages = warning");
    ar_store *store = open_store(f, f->schema, 5000);
    ar_record *rec = test_get(store, w.run, 1);
    assert_int_equal(rec->n_steps, w.acked);
    assert_int_equal(rec->iterations, w.acked);
    for (int i = 0; i < w.acked; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"seq\":%d}", i + 1);
        assert_int_equal(rec->steps[i].seq, i + 1);
        assert_int_equal(rec->steps[i].content_len, strlen(want));
        assert_memory_equal(rec->steps[i].content, want, strlen(want));
    }
    ar_record_free(rec);
    assert_int_equal(test_stored_steps(store), w.acked);
    ar_store_close(store);
    unlink(log_path);
    unlink(stop);
    free(log_path);
    free(stop);
    tmpdir_remove(dir);
}

/* The stored rows of the schema's runs, steps and checkpoints, as one text
 * (malloc'ed): what must not change when a fork fails. */
static char *rows_text(fixture *f)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT coalesce((SELECT string_agg(r::text, E'\\n' ORDER BY n) FROM \"%s\".runs r), '') || '|' ||"
             " coalesce((SELECT string_agg(s::text, E'\\n' ORDER BY run, seq) FROM \"%s\".steps s), '') || '|' ||"
             " coalesce((SELECT string_agg(c::text, E'\\n' ORDER BY run) FROM \"%s\".checkpoints c), '')",
             f->schema, f->schema, f->schema);
    PGresult *res = probe_exec(f, sql);
    char *t = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    assert_non_null(t);
    return t;
}

/* A fork the server refuses half-way (a trigger raising "out of disk" at the
 * 200th step copied, then at the checkpoint's copy) is one transaction:
 * it fails with the server's reason and leaves every row as it was; once the
 * server accepts, the same fork succeeds. */
static void test_a_fork_the_server_refuses_half_way_leaves_every_row_as_it_was(void **state)
{
    fixture *f = *state;
    if (!f)
        skip();
    ar_store *store = open_store(f, f->schema, 0);
    ar_run *run = NULL;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "cut";
    spec.goal = "g";
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    for (int i = 1; i <= 400; i++) {
        char content[32];
        snprintf(content, sizeof content, "\"step %d\"", i);
        assert_int_equal(step(run, content), AR_OK);
        if (i == 100)
            assert_int_equal(ar_run_checkpoint(run, "{\"page\":1}", AR_NUL_TERMINATED), AR_OK);
    }
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    assert_int_equal(ar_run_fail(NULL, run, "wrong turn"), AR_OK);
    ar_run_close(run);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "CREATE FUNCTION \"%s\".refuse() RETURNS trigger LANGUAGE plpgsql AS"
             " $$BEGIN RAISE EXCEPTION 'no room left' USING ERRCODE = 'disk_full'; END$$",
             f->schema);
    probe_do(f, sql);
    char *before = rows_text(f);
    const char *tables[] = { "steps", "checkpoints" };
    for (int t = 0; t < 2; t++) {
        snprintf(sql, sizeof sql,
                 "CREATE TRIGGER refuse BEFORE INSERT ON \"%s\".%s FOR EACH ROW WHEN (NEW.seq %s)"
                 " EXECUTE FUNCTION \"%s\".refuse()",
                 f->schema, tables[t], t == 0 ? "= 200" : ">= 1", f->schema);
        probe_do(f, sql);
        ar_run *fork = NULL;
        ar_fork_opts o = AR_FORK_OPTS_INIT;
        o.at = 350;
        int rc = ar_run_fork(&fork, store, id, &o);
        assert_int_equal(rc, AR_EFULL);
        assert_null(fork);
        assert_non_null(strstr(ar_store_errmsg(store), "out of disk"));
        char *now = rows_text(f);
        assert_string_equal(before, now);
        free(now);
        snprintf(sql, sizeof sql, "DROP TRIGGER refuse ON \"%s\".%s", f->schema, tables[t]);
        probe_do(f, sql);
    }
    ar_run *fork = NULL;
    ar_fork_opts o = AR_FORK_OPTS_INIT;
    o.at = 350;
    assert_int_equal(ar_run_fork(&fork, store, id, &o), AR_OK);
    ar_run_close(fork);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\".steps", f->schema);
    assert_int_equal(probe_int(f, sql), 750);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\".checkpoints", f->schema);
    assert_int_equal(probe_int(f, sql), 2);
    free(before);
    ar_store_close(store);
}

#define PG_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static const struct CMUnitTest tests[] = {
    PG_TEST(test_open_creates_the_schema_with_its_meta_record_and_reopens_it),
    PG_TEST(test_a_schema2_store_is_upgraded_and_reads_back),
    PG_TEST(test_two_schemas_of_one_database_are_independent_stores),
    PG_TEST(test_a_schema_name_that_is_no_identifier_is_misuse_and_creates_nothing),
    PG_TEST(test_a_schema_of_another_application_is_ecorrupt_and_left_alone),
    PG_TEST(test_a_schema_made_by_a_newer_agentrun_is_eversion),
    PG_TEST(test_a_refused_login_is_eperm_and_no_message_shows_the_password),
    PG_TEST(test_an_unreachable_server_is_eio),
    PG_TEST(test_the_store_path_never_shows_the_password),
    PG_TEST(test_concurrent_first_opens_of_one_schema_all_succeed),
    PG_TEST(test_steps_round_trip_exactly),
    PG_TEST(test_a_record_written_ahead_does_not_push_new_runs_into_the_future),
    PG_TEST(test_a_store_without_the_run_counter_takes_new_runs_after_its_runs),
    PG_TEST(test_a_run_resumed_through_another_connection_fences_the_first_handle),
    PG_TEST(test_a_lock_held_past_busy_timeout_is_ebusy_and_not_sticky),
    PG_TEST(test_a_connection_ended_between_calls_is_made_again_by_the_next_call),
    PG_TEST(test_a_connection_ended_during_a_call_fails_that_call_only),
    PG_TEST(test_sessions_ended_at_random_moments_lose_and_double_nothing),
    PG_TEST(test_a_failed_read_in_a_retention_rule_leaves_the_scan_usable),
    PG_TEST(test_the_server_restarted_while_a_writer_records_loses_and_doubles_nothing),
    PG_TEST(test_a_fork_the_server_refuses_half_way_leaves_every_row_as_it_was),
};

TEST_GROUP(postgres_group, "postgres", tests);
