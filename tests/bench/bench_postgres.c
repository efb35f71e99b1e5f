/* bench_postgres.c -- the PostgreSQL backend against a raw libpq baseline on the same server: durable steps, many
 * writer processes, listing runs and events in big tables. The server is AGENTRUN_TEST_PG (make bench starts a
 * throwaway one); without it the cases say they were skipped. Each case works in schemas of its own and drops them. */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the server and the schemas ------------------------------------------ */

#define MAX_SCHEMAS 16

static char *schemas[MAX_SCHEMAS];     /* made by this process, dropped at exit if a case died */
static int n_schemas;
static pid_t owner_pid;                /* forked writers must not drop them */

static const char *server_url(const char *name)
{
    const char *url = getenv("AGENTRUN_TEST_PG");
    if (!url || !*url) {
        bench_note(name, "skipped: AGENTRUN_TEST_PG is not set and no server was started (make bench starts one)");
        return NULL;
    }
    return url;
}

/* The server's notices (a dropped schema's tables, ...) are not figures. */
static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *pq_connect(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (!c || PQstatus(c) != CONNECTION_OK)
        bench_die("postgresql: cannot connect to AGENTRUN_TEST_PG: %s", c ? PQerrorMessage(c) : "out of memory");
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

static void pq_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        bench_die("postgresql: %.200s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* One value of a one-row query, as text (malloc'ed). */
static char *pq_value(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        bench_die("postgresql: %s: %s", sql, PQerrorMessage(c));
    const char *v = PQgetvalue(r, 0, 0);
    char *out = bench_alloc(strlen(v) + 1);
    strcpy(out, v);
    PQclear(r);
    return out;
}

static void drop_schema(const char *url, const char *schema)
{
    PGconn *c = PQconnectdb(url);
    if (c && PQstatus(c) == CONNECTION_OK) {
        PQsetNoticeProcessor(c, quiet, NULL);
        char sql[160];
        snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS \"%s\" CASCADE", schema);
        PQclear(PQexec(c, sql));
    }
    PQfinish(c);
}

static void drop_left_schemas(void)
{
    const char *url = getenv("AGENTRUN_TEST_PG");
    if (getpid() != owner_pid || !url)
        return;
    for (int i = 0; i < n_schemas; i++) {
        if (schemas[i])
            drop_schema(url, schemas[i]);
        free(schemas[i]);
        schemas[i] = NULL;
    }
    n_schemas = 0;
}

/* A fresh schema name for this invocation (bench_<pid>_<tag>), dropped when
 * the case calls schema_done or, failing that, at exit. */
static const char *schema_new(const char *url, const char *tag)
{
    if (!owner_pid) {
        owner_pid = getpid();
        atexit(drop_left_schemas);
    }
    if (n_schemas == MAX_SCHEMAS)
        bench_die("postgresql: too many schemas at once");
    char *s = bench_alloc(64);
    snprintf(s, 64, "bench_%ld_%s", (long)getpid(), tag);
    drop_schema(url, s);
    schemas[n_schemas++] = s;
    return s;
}

static void schema_done(const char *url, const char *schema)
{
    drop_schema(url, schema);
    for (int i = 0; i < n_schemas; i++)
        if (schemas[i] == schema) {
            free(schemas[i]);
            schemas[i] = schemas[--n_schemas];
            schemas[n_schemas] = NULL;
            break;
        }
}

static ar_store *pg_store(const char *url, const char *schema, int durability)
{
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = durability;
    opts.schema = schema;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, url, &opts), store, "opening the PostgreSQL store");
    return store;
}

/* What the server's commits cost: fsync and synchronous_commit decide what
 * "durable" means in the figures. */
static void server_note(const char *url)
{
    static int shown;
    if (shown++)
        return;
    PGconn *c = pq_connect(url);
    char *ver = pq_value(c, "SHOW server_version"), *fs = pq_value(c, "SHOW fsync");
    char *sync = pq_value(c, "SHOW wal_sync_method");
    bench_note("postgres.server", "PostgreSQL %s, fsync %s (%s), Unix socket; durability full = synchronous_commit on",
               ver, fs, sync);
    free(ver);
    free(fs);
    free(sync);
    PQfinish(c);
}

/* ---- the raw libpq baseline ----------------------------------------------- */

/* The store's runs and steps tables, as the store creates them (less the
 * columns the step path does not touch), and the user index. */
static const char pq_schema_sql[] =
    "CREATE TABLE runs("
    " n bigint PRIMARY KEY, id text NOT NULL, agent text NOT NULL, goal text NOT NULL, \"user\" text,"
    " status text NOT NULL, output text,"
    " iterations bigint NOT NULL DEFAULT 0, input_tokens bigint NOT NULL DEFAULT 0,"
    " output_tokens bigint NOT NULL DEFAULT 0, cost_nanos bigint NOT NULL DEFAULT 0, counters text,"
    " elapsed_ms bigint NOT NULL DEFAULT 0,"
    " created_at bigint NOT NULL, finished_at bigint, updated_at bigint NOT NULL, owner bigint NOT NULL DEFAULT 0);"
    "CREATE INDEX runs_by_user ON runs(\"user\", n);"
    "CREATE TABLE steps("
    " run bigint NOT NULL, seq bigint NOT NULL, kind text NOT NULL, name text, content text,"
    " input_tokens bigint NOT NULL, output_tokens bigint NOT NULL, cost_nanos bigint NOT NULL, counters text,"
    " duration_ms bigint NOT NULL, at bigint NOT NULL, PRIMARY KEY (run, seq));";

typedef struct pq_base {
    PGconn *c;
} pq_base;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connects into `schema` (creating it and the tables when `create`) and
 * prepares the statements. */
static void pq_base_open(pq_base *b, const char *url, const char *schema, int durability, int create)
{
    b->c = pq_connect(url);
    char sql[256];
    snprintf(sql, sizeof sql, "%s%s%sSET search_path = \"%s\"; SET synchronous_commit = %s",
             create ? "CREATE SCHEMA \"" : "", create ? schema : "", create ? "\"; " : "",
             schema, durability == AR_DURABILITY_NORMAL ? "off" : "on");
    pq_exec(b->c, sql);
    if (create)
        pq_exec(b->c, pq_schema_sql);
    static const char *const prep[][2] = {
        { "run", "INSERT INTO runs(n, id, agent, goal, \"user\", status, created_at, updated_at)"
                 " VALUES($1, $2, $3, $4, $5, 'running', $6, $6)" },
        { "step", "INSERT INTO steps(run, seq, kind, name, content, input_tokens, output_tokens, cost_nanos,"
                  " duration_ms, at) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)" },
        { "totals", "UPDATE runs SET iterations = iterations + 1, input_tokens = input_tokens + $2,"
                    " output_tokens = output_tokens + $3, cost_nanos = cost_nanos + $4, updated_at = $5"
                    " WHERE n = $1" },
        { "begin", "BEGIN" },
        { "commit", "COMMIT" },
    };
    for (size_t i = 0; i < sizeof prep / sizeof prep[0]; i++) {
        PGresult *r = PQprepare(b->c, prep[i][0], prep[i][1], 0, NULL);
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
            bench_die("baseline: preparing %s: %s", prep[i][0], PQerrorMessage(b->c));
        PQclear(r);
    }
    if (PQenterPipelineMode(b->c) != 1)
        bench_die("baseline: cannot enter pipeline mode: %s", PQerrorMessage(b->c));
}

static void pq_base_close(pq_base *b)
{
    PQfinish(b->c);
    b->c = NULL;
}

/* Reads the results of `n` queries and the sync that ends the pipeline. */
static void pq_drain(pq_base *b, int n, const char *what)
{
    for (int i = 0; i < n; i++) {
        PGresult *r = PQgetResult(b->c);
        ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            bench_die("baseline: %s: %s", what, PQerrorMessage(b->c));
        PQclear(r);
        if ((r = PQgetResult(b->c)) != NULL)   /* the NULL that ends each query's results */
            bench_die("baseline: %s: an unexpected result", what);
    }
    PGresult *r = PQgetResult(b->c);
    if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC)
        bench_die("baseline: %s: no sync: %s", what, PQerrorMessage(b->c));
    PQclear(r);
}

static void pq_send(pq_base *b, const char *name, int n, const char *const *v, const char *what)
{
    if (!PQsendQueryPrepared(b->c, name, n, v, NULL, NULL, 0))
        bench_die("baseline: %s: %s", what, PQerrorMessage(b->c));
}

static void pq_sync(pq_base *b, const char *what)
{
    if (!PQpipelineSync(b->c))
        bench_die("baseline: %s: %s", what, PQerrorMessage(b->c));
}

static int64_t pq_base_begin(pq_base *b, int64_t n, const char *user)
{
    char nb[24], idb[32], at[24];
    snprintf(nb, sizeof nb, "%" PRId64, n);
    snprintf(idb, sizeof idb, "run-%" PRId64, n);
    snprintf(at, sizeof at, "%" PRId64, wall_ms());
    const char *v[] = { nb, idb, "bench-agent", "Fix the failing header parser test", user, at };
    pq_send(b, "run", 6, v, "beginning a run");
    pq_sync(b, "beginning a run");
    pq_drain(b, 1, "beginning a run");
    return n;
}

/* One transaction that inserts the step and adds its usage to the run's
 * totals: BEGIN, INSERT, UPDATE, COMMIT sent at once, one round trip. */
static void pq_base_step(pq_base *b, int64_t run, int64_t seq, const bench_step *s)
{
    char rb[24], sb[24], in[24], out[24], cost[24], dur[24], at[24];
    snprintf(rb, sizeof rb, "%" PRId64, run);
    snprintf(sb, sizeof sb, "%" PRId64, seq);
    snprintf(in, sizeof in, "%" PRId64, s->input_tokens);
    snprintf(out, sizeof out, "%" PRId64, s->output_tokens);
    snprintf(cost, sizeof cost, "%lld", llround(s->cost * 1e9));
    snprintf(dur, sizeof dur, "%" PRId64, s->duration_ms);
    snprintf(at, sizeof at, "%" PRId64, wall_ms());
    const char *step[] = { rb, sb, s->kind, s->name, s->content, in, out, cost, dur, at };
    const char *totals[] = { rb, in, out, cost, at };
    pq_send(b, "begin", 0, NULL, "BEGIN");
    pq_send(b, "step", 10, step, "inserting a step");
    pq_send(b, "totals", 5, totals, "updating the run's totals");
    pq_send(b, "commit", 0, NULL, "COMMIT");
    pq_sync(b, "a step");
    pq_drain(b, 4, "a step");
}

/* ---- case: one long run, each step durable before the next ---------------- */

static void step_ar(ar_run *run, const bench_step *s)
{
    ar_step st;
    bench_step_to_ar(&st, s);
    bench_check_run(ar_run_step(NULL, run, &st), run, "recording a step");
}

static ar_run *run_begin(ar_store *store, const char *user)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "bench-agent";
    spec.goal = "Fix the failing header parser test";
    spec.user = user;
    ar_run *run = NULL;
    bench_check(ar_run_begin(&run, store, &spec), store, "beginning a run");
    return run;
}

void bench_postgres_steps(const bench_env *env)
{
    const char *url = server_url("postgres.steps");
    if (!url)
        return;
    server_note(url);
    const char *ar_schema = schema_new(url, "steps_ar"), *bl_schema = schema_new(url, "steps_bl");
    int64_t n = bench_scaled(env, 10000, 20);
    ar_store *store = pg_store(url, ar_schema, AR_DURABILITY_FULL);
    ar_run *run = run_begin(store, "user-0001");
    pq_base bl;
    pq_base_open(&bl, url, bl_schema, AR_DURABILITY_FULL, 1);
    int64_t bl_run = pq_base_begin(&bl, 1, "user-0001");

    double *t_ar = bench_alloc((size_t)n * sizeof *t_ar), *t_bl = bench_alloc((size_t)n * sizeof *t_bl);
    char buf[BENCH_PAYLOAD_MAX];
    /* short blocks alternate between the sides, and so does which goes first,
     * so load from other processes falls on both alike */
    int64_t block = n / 200 > 0 ? n / 200 : 1;
    for (int64_t start = 0, b = 0; start < n; start += block, b++) {
        int64_t end = start + block < n ? start + block : n;
        for (int side = 0; side < 2; side++) {
            int ours = (b % 2 == 0) == (side == 0);
            for (int64_t i = start; i < end; i++) {
                bench_step s;
                bench_step_make(&s, i + 1, buf, sizeof buf);
                int64_t t0 = bench_now_ns();
                if (ours)
                    step_ar(run, &s);
                else
                    pq_base_step(&bl, bl_run, i + 1, &s);
                (ours ? t_ar : t_bl)[i] = bench_us(t0, bench_now_ns());
            }
        }
    }
    bench_check_run(ar_run_complete(NULL, run, "\"done\"", AR_NUL_TERMINATED), run, "completing the run");
    ar_run_close(run);
    ar_store_close(store);
    pq_base_close(&bl);

    size_t tenth = (size_t)(n / 10);
    double ar_mean = bench_mean(t_ar, (size_t)n), bl_mean = bench_mean(t_bl, (size_t)n);
    double ar_first = bench_mean(t_ar, tenth), ar_last = bench_mean(t_ar + n - (int64_t)tenth, tenth);
    double bl_first = bench_mean(t_bl, tenth), bl_last = bench_mean(t_bl + n - (int64_t)tenth, tenth);
    double ratio = ar_mean / bl_mean, drift = ar_last / ar_first;
    char n1[32], n2[32];
    bench_goal("postgres.steps.full", ratio <= 1.25, "<= 1.25",
               "agentrun %s steps/s  %.1f µs/step  raw libpq (pipelined) %.1f µs/step  ratio %.2f  (%s steps)",
               bench_num(n1, sizeof n1, 1e6 / ar_mean), ar_mean, bl_mean, ratio, bench_num(n2, sizeof n2, (double)n));
    bench_goal("postgres.steps.full.drift", drift <= 1.2, "<= 1.2",
               "agentrun first 10%% %.1f µs/step  last 10%% %.1f µs/step  ratio %.2f  (baseline %.2f)",
               ar_first, ar_last, drift, bl_last / bl_first);
    free(t_ar);
    free(t_bl);
    schema_done(url, ar_schema);
    schema_done(url, bl_schema);
}

/* ---- case: many writer processes, each its own run ----------------------- */

#define WRITERS 16

typedef struct writer_result {
    int64_t start_ns, end_ns, steps;
} writer_result;

/* In a forked writer: failures end the process (its parent reports them);
 * exit handlers (the bench's temp dir, the schemas) are the parent's. */
static _Noreturn void child_fail(const char *what, const char *msg)
{
    fprintf(stderr, "bench: writer %ld: %s: %s\n", (long)getpid(), what, msg ? msg : "");
    _exit(1);
}

/* The same writer on the raw libpq baseline (tables made by the parent). */
static void child_run_raw(const char *url, const char *schema, int64_t steps, int wid, int ready_fd, int go_fd,
                          int result_fd)
{
    pq_base b;
    pq_base_open(&b, url, schema, AR_DURABILITY_FULL, 0);
    char user[32], c = 1, buf[BENCH_PAYLOAD_MAX];
    snprintf(user, sizeof user, "user-%04d", wid);
    int64_t run = pq_base_begin(&b, wid + 1, user);
    if (write(ready_fd, &c, 1) != 1)
        child_fail("signalling ready", strerror(errno));
    while (read(go_fd, &c, 1) < 0 && errno == EINTR)
        ;
    writer_result res = { bench_now_ns(), 0, steps };
    for (int64_t i = 0; i < steps; i++) {
        bench_step s;
        bench_step_make(&s, i + 1, buf, sizeof buf);
        pq_base_step(&b, run, i + 1, &s);
    }
    res.end_ns = bench_now_ns();
    if (write(result_fd, &res, sizeof res) != (ssize_t)sizeof res)
        child_fail("reporting", strerror(errno));
    _exit(0);
}

static void child_run(const char *location, const char *schema, int64_t steps, int wid, int ready_fd, int go_fd,
                      int result_fd)
{
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_FULL;
    opts.schema = schema;
    opts.busy_timeout_ms = 60000;
    ar_store *store = NULL;
    if (ar_store_open(&store, location, &opts) != AR_OK)
        child_fail("opening the store", store ? ar_store_errmsg(store) : "");
    char user[32];
    snprintf(user, sizeof user, "user-%04d", wid);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "bench-agent";
    spec.goal = "Fix the failing header parser test";
    spec.user = user;
    ar_run *run = NULL;
    if (ar_run_begin(&run, store, &spec) != AR_OK)
        child_fail("beginning a run", ar_store_errmsg(store));
    char c = 1, buf[BENCH_PAYLOAD_MAX];
    if (write(ready_fd, &c, 1) != 1)
        child_fail("signalling ready", strerror(errno));
    /* the parent closes its end of the go pipe when every writer is ready */
    while (read(go_fd, &c, 1) < 0 && errno == EINTR)
        ;
    writer_result res = { bench_now_ns(), 0, steps };
    for (int64_t i = 0; i < steps; i++) {
        bench_step s;
        bench_step_make(&s, i + 1, buf, sizeof buf);
        ar_step st;
        bench_step_to_ar(&st, &s);
        if (ar_run_step(NULL, run, &st) != AR_OK)
            child_fail("recording a step", ar_run_errmsg(run));
    }
    res.end_ns = bench_now_ns();
    ar_run_complete(NULL, run, "\"done\"", AR_NUL_TERMINATED);
    ar_run_close(run);
    ar_store_close(store);
    if (write(result_fd, &res, sizeof res) != (ssize_t)sizeof res)
        child_fail("reporting", strerror(errno));
    _exit(0);
}

/* Forks `writers` processes that each record `steps` durable steps of a run
 * of their own, all starting together; returns the aggregate steps/s (all
 * steps over the span from the first start to the last end). */
static double writers_rate(const char *location, const char *schema, int raw, int writers, int64_t steps)
{
    int ready[2], go[2], result[2];
    if (pipe(ready) || pipe(go) || pipe(result))
        bench_die("pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pids[WRITERS];
    for (int w = 0; w < writers; w++) {
        pid_t pid = fork();
        if (pid < 0)
            bench_die("fork: %s", strerror(errno));
        if (pid == 0) {
            close(ready[0]);
            close(go[1]);
            close(result[0]);
            (raw ? child_run_raw : child_run)(location, schema, steps, w, ready[1], go[0], result[1]);
        }
        pids[w] = pid;
    }
    close(ready[1]);
    close(go[0]);
    close(result[1]);
    int got = 0;
    char c;
    while (got < writers) {
        ssize_t k = read(ready[0], &c, 1);
        if (k == 1)
            got++;
        else if (k == 0 || errno != EINTR)
            break;
    }
    close(go[1]);
    int64_t first = INT64_MAX, last = 0, total = 0;
    writer_result res;
    int reported = 0;
    for (;;) {
        ssize_t k = read(result[0], &res, sizeof res);
        if (k == 0)
            break;
        if (k < 0 && errno == EINTR)
            continue;
        if (k != (ssize_t)sizeof res)
            break;
        reported++;
        total += res.steps;
        first = res.start_ns < first ? res.start_ns : first;
        last = res.end_ns > last ? res.end_ns : last;
    }
    close(ready[0]);
    close(result[0]);
    int failed = 0;
    for (int w = 0; w < writers; w++) {
        int status;
        while (waitpid(pids[w], &status, 0) < 0 && errno == EINTR)
            ;
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    if (failed || got < writers || reported < writers)
        bench_die("writers on %s: %d of %d writers failed", schema ? "PostgreSQL" : "SQLite", writers - reported,
                  writers);
    return (double)total / (bench_us(first, last) / 1e6);
}

void bench_postgres_writers(const bench_env *env)
{
    const char *url = server_url("postgres.writers");
    int64_t one = bench_scaled(env, 2000, 20), each = bench_scaled(env, 400, 10);
    char n1[32], n2[32], n3[32], n4[32];
    if (url) {
        server_note(url);
        /* each figure in a fresh schema, so neither side writes into the other's tables */
        const char *s1 = schema_new(url, "writers_1"), *s16 = schema_new(url, "writers_16");
        const char *b1 = schema_new(url, "writers_raw1"), *b16 = schema_new(url, "writers_raw16");
        ar_store_close(pg_store(url, s1, AR_DURABILITY_FULL));
        ar_store_close(pg_store(url, s16, AR_DURABILITY_FULL));
        pq_base bl;
        pq_base_open(&bl, url, b1, AR_DURABILITY_FULL, 1);
        pq_base_close(&bl);
        pq_base_open(&bl, url, b16, AR_DURABILITY_FULL, 1);
        pq_base_close(&bl);
        /* the store and the raw baseline take turns, one writer then sixteen */
        double r1 = writers_rate(url, s1, 0, 1, one);
        double raw1 = writers_rate(url, b1, 1, 1, one);
        double r16 = writers_rate(url, s16, 0, WRITERS, each);
        double raw16 = writers_rate(url, b16, 1, WRITERS, each);
        bench_goal("postgres.writers", r16 >= 2.5 * r1, ">= 2.5",
                   "%d processes %s durable steps/s  one process %s steps/s  ratio %.2f  (%s steps each; one: %s)",
                   WRITERS, bench_num(n1, sizeof n1, r16), bench_num(n2, sizeof n2, r1), r16 / r1,
                   bench_num(n3, sizeof n3, (double)each), bench_num(n4, sizeof n4, (double)one));
        bench_note("postgres.writers.raw", "raw libpq (pipelined): %d processes %s durable steps/s  one process %s "
                   "steps/s  ratio %.2f", WRITERS, bench_num(n1, sizeof n1, raw16), bench_num(n2, sizeof n2, raw1),
                   raw16 / raw1);
        schema_done(url, s1);
        schema_done(url, s16);
        schema_done(url, b1);
        schema_done(url, b16);
    }
    /* the same on one SQLite file, for comparison: its writers take turns */
    char *p1 = bench_path(env, "writers-1.db"), *p16 = bench_path(env, "writers-16.db");
    {
        ar_open_opts opts = AR_OPEN_OPTS_INIT;
        ar_store *st = NULL;
        bench_check(ar_store_open(&st, p1, &opts), st, "creating the SQLite store");
        ar_store_close(st);
        st = NULL;
        bench_check(ar_store_open(&st, p16, &opts), st, "creating the SQLite store");
        ar_store_close(st);
    }
    double q1 = writers_rate(p1, NULL, 0, 1, one);
    double q16 = writers_rate(p16, NULL, 0, WRITERS, each);
    bench_note("postgres.writers.sqlite", "for comparison, SQLite (one file): %d processes %s durable steps/s  "
               "one process %s steps/s  ratio %.2f", WRITERS, bench_num(n1, sizeof n1, q16),
               bench_num(n2, sizeof n2, q1), q16 / q1);
    bench_remove_store(p1);
    bench_remove_store(p16);
    free(p1);
    free(p16);
}

/* ---- case: the newest runs of one user among many ------------------------- */

/* n finished runs across `users` users, each written whole by the store's
 * own writer (2 small steps each), created_at one second apart. */
static void fill_runs(ar_store *store, int64_t n, int64_t users)
{
    const int64_t base = INT64_C(1700000000000);
    for (int64_t r = 0; r < n; r++) {
        char goal[64], user[32], c1[128], c2[128];
        snprintf(goal, sizeof goal, "Answer support ticket %" PRId64, r);
        snprintf(user, sizeof user, "user-%04d", (int)(r % users));
        snprintf(c1, sizeof c1, "{\"role\":\"assistant\",\"content\":\"Looking up order %" PRId64 "\"}", r);
        snprintf(c2, sizeof c2, "{\"tool\":\"lookup_order\",\"result\":{\"order\":%" PRId64 "}}", r);
        ar_step steps[2] = { AR_STEP_INIT, AR_STEP_INIT };
        steps[0].kind = "llm";
        steps[0].name = "claude-sonnet-4";
        steps[0].content = c1;
        steps[0].usage.input_tokens = 900 + r % 100;
        steps[0].usage.output_tokens = 40;
        steps[0].usage.cost = 0.0033;
        steps[0].duration_ms = 900;
        steps[1].kind = "tool";
        steps[1].name = "lookup_order";
        steps[1].content = c2;
        steps[1].duration_ms = 40;
        ar_record rec = AR_RECORD_INIT;
        rec.agent = "bench-agent";
        rec.goal = goal;
        rec.user = user;
        rec.status = AR_COMPLETED;
        rec.output = "\"Your order has shipped.\"";
        rec.created_at = base + r * 1000;
        rec.finished_at = rec.created_at + 1000 + r % 3000;
        steps[0].at = rec.created_at;
        steps[1].at = rec.created_at + 900;
        rec.steps = steps;
        rec.n_steps = 2;
        char *id = NULL;
        bench_check(ar_store_write(&id, store, &rec), store, "writing a run");
        ar_free(id);
    }
}

static double list_runs_once(ar_store *store, const char *user, int64_t limit, size_t expect)
{
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.user = user;
    q.limit = limit;
    ar_record **list = NULL;
    size_t count = 0;
    char *cursor = NULL;
    int64_t t0 = bench_now_ns();
    int rc = ar_runs_list(&list, &count, &cursor, store, &q);
    double us = bench_us(t0, bench_now_ns());
    bench_check(rc, store, "listing runs");
    if (count != expect)
        bench_die("listing %s gave %zu runs, not %zu", user, count, expect);
    for (size_t i = 0; i < count; i++) {
        if (!list[i]->user || strcmp(list[i]->user, user) != 0)
            bench_die("listing %s gave a run of %s", user, list[i]->user ? list[i]->user : "(none)");
        if (i && list[i]->created_at > list[i - 1]->created_at)
            bench_die("listing %s is not newest first", user);
    }
    ar_records_free(list, count);
    ar_free(cursor);
    return us;
}

void bench_postgres_list(const bench_env *env)
{
    const char *url = server_url("postgres.list");
    if (!url)
        return;
    server_note(url);
    const char *schema = schema_new(url, "list");
    int64_t n = bench_scaled(env, 100000, 200), users = n / 100 > 0 ? n / 100 : 1;
    ar_store *store = pg_store(url, schema, AR_DURABILITY_NORMAL);
    int64_t t0 = bench_now_ns();
    fill_runs(store, n, users);
    double fill_s = bench_us(t0, bench_now_ns()) / 1e6;
    char n1[32], n2[32], n3[32];
    bench_note("postgres.list.build", "%s runs of %s users written whole by the store in %.1f s (%s runs/s, "
               "durability normal)", bench_num(n1, sizeof n1, (double)n), bench_num(n2, sizeof n2, (double)users),
               fill_s, bench_num(n3, sizeof n3, (double)n / fill_s));
    const int64_t limit = 50;
    size_t expect = (size_t)(n / users < limit ? n / users : limit);
    int64_t k = bench_scaled(env, 200, 20);
    double *t = bench_alloc((size_t)k * sizeof *t);
    char user[32];
    for (int64_t i = 0; i < 10; i++) {
        snprintf(user, sizeof user, "user-%04d", (int)((i * 101) % users));
        list_runs_once(store, user, limit, expect);
    }
    for (int64_t i = 0; i < k; i++) {
        snprintf(user, sizeof user, "user-%04d", (int)((i * 37) % users));
        t[i] = list_runs_once(store, user, limit, expect);
    }
    ar_store_close(store);
    double p95 = bench_percentile(t, (size_t)k, 95), med = bench_median(t, (size_t)k);
    bench_goal("postgres.list", med <= 2000, "median <= 2000 µs",
               "agentrun %" PRId64 " newest runs of one user (%s runs, %s users)  median %.0f µs  p95 %.0f µs",
               limit, bench_num(n1, sizeof n1, (double)n), bench_num(n2, sizeof n2, (double)users), med, p95);
    free(t);
    schema_done(url, schema);
}

/* ---- case: one agent's newest events, 10k against 1M ---------------------- */

#define EV_PAGE 100
#define EV_LISTINGS 200
#define EV_API 1000          /* events appended through the store before the bulk fill */

/* Plain chat prose, cut to vary the content's length (as bench_events). */
static const char ev_prose[] =
    "The customer asked whether the order can still be changed before it ships; I checked the warehouse "
    "queue and the parcel is not packed yet, so the address can be updated. I will confirm the new address "
    "with them, update the order, and send the tracking link once the label is printed tomorrow morning.";
static const char *const ev_types[] = { "user_message", "assistant_message", "tool_call", "tool_result" };

/* Event i (1-based, its id) of a table whose agents take turns. */
static void ev_make(ar_event *e, char *agent, char *content, char *meta, int64_t i, int64_t agents)
{
    snprintf(agent, 32, "agent-%04" PRId64, i % agents);
    snprintf(content, 400, "Ticket %" PRId64 ": %.*s", 10000 + i % 90000, (int)(150 + i % 100), ev_prose);
    snprintf(meta, 128, "{\"channel\":\"web\",\"tokens\":%d}", (int)(40 + i % 400));
    ar_event ev = AR_EVENT_INIT;
    ev.agent = agent;
    ev.session = i / 5000;
    ev.type = ev_types[i % 4];
    ev.content = content;
    ev.metadata = meta;
    ev.at = INT64_C(1700000000000) + i * 250;
    *e = ev;
}

/* A store of n events over `agents` agents: the first EV_API appended by the
 * store, the rest inserted in one statement as the store writes them (the
 * same columns, ids in order, the id counter in meta moved past them). */
static ar_store *fill_events(const char *url, const char *schema, int64_t n, int64_t agents)
{
    ar_store *store = pg_store(url, schema, AR_DURABILITY_NORMAL);
    char agent[32], content[400], meta[128];
    int64_t api = n < EV_API ? n : EV_API;
    for (int64_t i = 1; i <= api; i++) {
        ar_event e;
        ev_make(&e, agent, content, meta, i, agents);
        int64_t id = 0;
        bench_check(ar_event_append(&id, store, &e), store, "appending an event");
        if (id != i)
            bench_die("the store gave event %" PRId64 " the id %" PRId64, i, id);
    }
    PGconn *c = pq_connect(url);
    char sql[512], rows[1536];
    snprintf(sql, sizeof sql, "SET search_path = \"%s\"; SET synchronous_commit = off", schema);
    pq_exec(c, sql);
    /* event g as the store writes it (ev_make's values; content as bytes) */
    snprintf(rows, sizeof rows,
             "SELECT g, 'agent-' || lpad((g %% %" PRId64 ")::text, 4, '0'), g / 5000,"
             " (ARRAY['user_message','assistant_message','tool_call','tool_result'])[g %% 4 + 1],"
             " convert_to('Ticket ' || (10000 + g %% 90000) || ': ' || left('%s', (150 + g %% 100)::int), 'UTF8'),"
             " '{\"channel\":\"web\",\"tokens\":' || (40 + g %% 400) || '}', NULL::text, 1700000000000 + g * 250"
             " FROM generate_series($1::bigint, $2::bigint) g", agents, ev_prose);
    /* the generated rows are exactly those the store appended ... */
    char *sqlv = bench_alloc(strlen(rows) + 256), lo[24], hi[24];
    sprintf(sqlv, "SELECT count(*) FROM (%s EXCEPT SELECT id, agent, session, type, content, metadata, run, at"
                  " FROM events) d", rows);
    snprintf(lo, sizeof lo, "1");
    snprintf(hi, sizeof hi, "%" PRId64, api);
    const char *v[] = { lo, hi };
    PGresult *r = PQexecParams(c, sqlv, 2, NULL, v, NULL, NULL, 0);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), "0") != 0)
        bench_die("postgresql: the generated events differ from the store's: %s",
                  r && PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : PQerrorMessage(c));
    PQclear(r);
    /* ... so the rest are inserted the same way, and the id counter moved past them */
    sprintf(sqlv, "INSERT INTO events(id, agent, session, type, content, metadata, run, at) %s", rows);
    snprintf(lo, sizeof lo, "%" PRId64, api + 1);
    snprintf(hi, sizeof hi, "%" PRId64, n);
    r = PQexecParams(c, sqlv, 2, NULL, v, NULL, NULL, 0);
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
        bench_die("postgresql: filling events: %s", PQerrorMessage(c));
    PQclear(r);
    free(sqlv);
    pq_exec(c, "UPDATE meta SET value = (SELECT max(id) FROM events)::text WHERE key = 'last_event_id'");
    PQfinish(c);
    ar_store_info info;
    bench_check(ar_store_info_get(&info, store), store, "reading the store's info");
    if (info.events != n)
        bench_die("the events store holds %" PRId64 " events, not %" PRId64, info.events, n);
    return store;
}

static double list_events_once(ar_store *store, int64_t agent)
{
    char name[32];
    snprintf(name, sizeof name, "agent-%04" PRId64, agent);
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = name;
    q.order = AR_ORDER_DESC;
    q.limit = EV_PAGE;
    ar_event_list *list = NULL;
    int64_t t0 = bench_now_ns();
    int rc = ar_events_list(&list, NULL, store, &q);
    double us = bench_us(t0, bench_now_ns());
    bench_check(rc, store, "listing events");
    if (list->n != EV_PAGE)
        bench_die("listing %s gave %zu events, not %d", name, list->n, EV_PAGE);
    for (size_t i = 0; i < list->n; i++)
        if (strcmp(list->items[i].agent, name) != 0 || (i && list->items[i].id >= list->items[i - 1].id))
            bench_die("listing %s gave a wrong page", name);
    ar_event_list_free(list);
    return us;
}

void bench_postgres_events(const bench_env *env)
{
    const char *url = server_url("postgres.events");
    if (!url)
        return;
    server_note(url);
    int64_t n_small = bench_scaled(env, 10000, 2 * EV_PAGE), n_big = bench_scaled(env, 1000000, 4 * EV_PAGE);
    /* two full pages per agent in the small table; 1,000 agents in the big one */
    int64_t a_small = n_small / (2 * EV_PAGE), a_big = bench_scaled(env, 1000, 2);
    if (n_big / a_big < 2 * EV_PAGE)
        a_big = n_big / (2 * EV_PAGE);
    const char *s_small = schema_new(url, "events_10k"), *s_big = schema_new(url, "events_1m");
    int64_t t0 = bench_now_ns();
    ar_store *small = fill_events(url, s_small, n_small, a_small);
    ar_store *big = fill_events(url, s_big, n_big, a_big);
    char n1[32], n2[32];
    bench_note("postgres.events.fill", "%s and %s events (the first %d of each appended by the store, the rest "
               "inserted in one statement as it writes them) in %.1f s", bench_num(n1, sizeof n1, (double)n_small),
               bench_num(n2, sizeof n2, (double)n_big), EV_API, bench_us(t0, bench_now_ns()) / 1e6);
    double t_small[EV_LISTINGS], t_big[EV_LISTINGS];
    for (int i = 0; i < 20; i++) {
        list_events_once(small, i % a_small);
        list_events_once(big, (i * 7) % a_big);
    }
    enum { BLOCK = 10 };
    for (int from = 0, b = 0; from < EV_LISTINGS; from += BLOCK, b++)
        for (int side = 0; side < 2; side++) {
            int is_big = (b % 2 == 0) == (side == 0);
            for (int i = from; i < from + BLOCK; i++) {
                if (is_big)
                    t_big[i] = list_events_once(big, ((int64_t)i * 37) % a_big);
                else
                    t_small[i] = list_events_once(small, ((int64_t)i * 37) % a_small);
            }
        }
    ar_store_close(small);
    ar_store_close(big);
    double p95_s = bench_percentile(t_small, EV_LISTINGS, 95), med_s = bench_median(t_small, EV_LISTINGS);
    double p95_b = bench_percentile(t_big, EV_LISTINGS, 95), med_b = bench_median(t_big, EV_LISTINGS);
    bench_note("postgres.events.list.small", "agentrun newest %d of one agent, %s events (%s agents)  median %.0f µs  "
               "p95 %.0f µs", EV_PAGE, bench_num(n1, sizeof n1, (double)n_small),
               bench_num(n2, sizeof n2, (double)a_small), med_s, p95_s);
    bench_note("postgres.events.list.big", "agentrun newest %d of one agent, %s events (%s agents)  median %.0f µs  "
               "p95 %.0f µs", EV_PAGE, bench_num(n1, sizeof n1, (double)n_big),
               bench_num(n2, sizeof n2, (double)a_big), med_b, p95_b);
    bench_goal("postgres.events.list", med_b <= 2 * med_s, "<= 2",
               "median at %s / median at %s events  %.2f  (p95 %.2f)", bench_num(n1, sizeof n1, (double)n_big),
               bench_num(n2, sizeof n2, (double)n_small), med_b / med_s, p95_b / p95_s);
    schema_done(url, s_small);
    schema_done(url, s_big);
}
