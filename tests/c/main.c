/* main.c -- the C test runner: runs the groups on each backend (groups.def says
 * which), prints a count per backend and ends on "N passed, N failed". */
#include "suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

/* groups.def has one X(name, WHERE) line per test group. */
enum { ONCE, BOTH, SQLITE, POSTGRESQL };
#define X(g, where) extern const test_group g;
#include "groups.def"
#undef X
#define X(g, where) { &g, where },
static const struct {
    const test_group *group;
    int where;
} groups[] = {
#include "groups.def"
};
#undef X

static test_backend current = TEST_SQLITE;
static const char *pg_url;           /* AGENTRUN_TEST_PG */

const char *test_pg_url(void)
{
    return pg_url;
}

/* What the group now running made (removed when it ends). */
static char **made_dirs, **made_schemas;
static size_t n_dirs, n_schemas;

test_backend test_backend_current(void)
{
    return current;
}

const char *test_backend_name(void)
{
    return current == TEST_SQLITE ? "sqlite" : "postgresql";
}

static void remember(char ***list, size_t *n, char *s)
{
    char **grown = realloc(*list, (*n + 1) * sizeof **list);
    assert_non_null(grown);
    *list = grown;
    (*list)[(*n)++] = s;
}

char *test_location(ar_open_opts *opts)
{
    assert_non_null(opts);
    if (current == TEST_SQLITE) {
        char *dir = tmpdir_make();
        char *path = tmpdir_path(dir, "store.db");
        remember(&made_dirs, &n_dirs, dir);
        return path;
    }
#if AR_OPEN_OPTS_VERSION >= 2
    /* The process id keeps two runners sharing one server apart. */
    static size_t made;
    char name[64];
    snprintf(name, sizeof name, "test_%ld_%zu", (long)getpid(), ++made);
    char *schema = strdup(name);
    assert_non_null(schema);
    remember(&made_schemas, &n_schemas, schema);
    opts->schema = schema;
    char *url = strdup(pg_url);
    assert_non_null(url);
    return url;
#else
    fail_msg("this build's ar_open_opts has no schema");
    return NULL;
#endif
}

void test_same_store(ar_open_opts *to, const ar_open_opts *from)
{
#if AR_OPEN_OPTS_VERSION >= 2
    to->schema = from->schema;
#else
    (void)to;
    (void)from;
#endif
}

ar_store *test_store_open(const ar_open_opts *given)
{
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    if (given)
        opts = *given;
    char *location = test_location(&opts);
    ar_store *store = NULL;
    int rc = ar_store_open(&store, location, &opts);
    free(location);
    if (rc != AR_OK) {
        print_error("open a %s store: %s: %s\n", test_backend_name(), ar_code_name(rc), ar_store_errmsg(store));
        ar_store_close(store);
        fail();
    }
    return store;
}

ar_store *test_store_new(void)
{
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    return test_store_open(&opts);
}

/* A connection to the server under test for the runner's own use, or NULL
 * with the reason printed. */
static PGconn *pg_admin(void)
{
    PGconn *conn = PQconnectdb(pg_url);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "postgresql: cannot connect to AGENTRUN_TEST_PG: %s",
                conn ? PQerrorMessage(conn) : "out of memory\n");
        PQfinish(conn);
        return NULL;
    }
    /* the drops' "drop cascades to ..." notices would bury the counts */
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
    return conn;
}

/* Removes what the group made; returns the number of things left behind. */
static size_t remove_made(void)
{
    size_t left = 0;
    for (size_t i = 0; i < n_dirs; i++)
        tmpdir_remove(made_dirs[i]);
    free(made_dirs);
    made_dirs = NULL;
    n_dirs = 0;
    if (n_schemas) {
        PGconn *conn = pg_admin();
        for (size_t i = 0; i < n_schemas; i++) {
            if (conn) {
                /* A store a failed test left open holds no lock once idle;
                 * the timeout only keeps a stuck one from hanging the run. */
                char sql[160];
                snprintf(sql, sizeof sql, "SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS \"%s\" CASCADE",
                         made_schemas[i]);
                PGresult *res = PQexec(conn, sql);
                if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                    fprintf(stderr, "postgresql: could not drop schema %s: %s", made_schemas[i],
                            PQerrorMessage(conn));
                    left++;
                }
                PQclear(res);
            } else {
                left++;
            }
            free(made_schemas[i]);
        }
        PQfinish(conn);
        free(made_schemas);
        made_schemas = NULL;
        n_schemas = 0;
    }
    return left;
}

char *tmpdir_make(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/agentrun-test-XXXXXX", base && *base ? base : "/tmp");
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    return strdup(dir);
}

void tmpdir_remove(char *dir)
{
    if (!dir)
        return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
}

char *tmpdir_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

ar_record *test_get(ar_store *store, const char *id, int with_steps)
{
    ar_record *rec = NULL;
    int rc = ar_store_get(&rec, store, id, with_steps);
    if (rc != AR_OK) {
        print_error("get %s: %s: %s\n", id, ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    return rec;
}

ar_run *test_begin(ar_store *store, const char *agent)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = agent;
    spec.goal = "g";
    ar_run *run = NULL;
    int rc = ar_run_begin(&run, store, &spec);
    if (rc != AR_OK) {
        print_error("begin: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    return run;
}

int64_t test_stored_steps(ar_store *store)
{
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    return info.steps;
}

char *test_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/* Runs the groups meant for `backend` on it (or, with `once`, the groups
 * that run once, on SQLite); adds to *total and *failed and prints the
 * pass's own count. */
static void run_backend(test_backend backend, int once, const char *only, size_t *total, size_t *failed)
{
    current = backend;
    size_t n = 0, f = 0;
    if (backend == TEST_POSTGRESQL) {
#if AR_OPEN_OPTS_VERSION < 2
        printf("postgresql: skipped: this build has no PostgreSQL backend (ar_open_opts has no schema)\n");
        return;
#else
        PGconn *conn = pg_admin();
        if (!conn) {
            printf("postgresql: 0 passed, 1 failed\n");
            (*failed)++;
            (*total)++;
            return;
        }
        PQfinish(conn);
#endif
    }
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        const test_group *g = groups[i].group;
        if (only && !strstr(g->name, only))
            continue;
        int where = groups[i].where;
        if (once ? where != ONCE
                 : backend == TEST_SQLITE ? where != BOTH && where != SQLITE : where != BOTH && where != POSTGRESQL)
            continue;
        /* cmocka names the group; the backend goes in front. */
        char label[128];
        snprintf(label, sizeof label, "%s: %s", test_backend_name(), g->name);
        f += (size_t)_cmocka_run_group_tests(label, g->tests, g->n, NULL, NULL);
        n += g->n;
        size_t left = remove_made();
        if (left) {
            print_error("%s: %zu stores left behind\n", g->name, left);
            f++;
            n++;
        }
    }
    printf("%s: %zu passed, %zu failed\n", once ? "once" : test_backend_name(), n - f, f);
    *total += n;
    *failed += f;
}

int main(int argc, char **argv)
{
    /* An optional argument selects groups whose name contains it. */
    const char *only = argc > 1 ? argv[1] : NULL;
    const char *url = getenv("AGENTRUN_TEST_PG");
    pg_url = url && *url ? url : NULL;
    size_t total = 0, failed = 0;
    run_backend(TEST_SQLITE, 0, only, &total, &failed);
    if (pg_url)
        run_backend(TEST_POSTGRESQL, 0, only, &total, &failed);
    else
        printf("postgresql: skipped: AGENTRUN_TEST_PG is not set (make test starts a server)\n");
    /* last: some of them move the process's id clock ahead (a key another
     * host took), which would put the runs of the passes after them in the
     * future */
    run_backend(TEST_SQLITE, 1, only, &total, &failed);
    printf("%zu passed, %zu failed\n", total - failed, failed);
    free(made_dirs);
    free(made_schemas);
    return failed ? 1 : 0;
}
