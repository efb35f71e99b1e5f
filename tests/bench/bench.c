/* bench.c -- the benchmark: runner, shared helpers, and the core cases (steps, runs, stream, list) against a plain-SQLite baseline. */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/vfs.h>
#define TMPFS_MAGIC_NUMBER 0x01021994
#endif

typedef struct bench_case {
    const char *name;
    void (*fn)(const bench_env *env);
} bench_case;

#define X(name) { #name, bench_##name },
static const bench_case cases[] = {
#include "cases.def"
};
#undef X

static int n_pass, n_miss;
static char *bench_dir;            /* removed at exit */
static pid_t bench_pid;            /* the process that removes it */
static char *fixture_runs_path;    /* bench_fixture_runs: built once per invocation */
static int64_t fixture_runs_n, fixture_users_n;

/* ---- environment -------------------------------------------------------- */

int64_t bench_scaled(const bench_env *env, int64_t n, int64_t min)
{
    double v = (double)n * env->scale + 0.5;
    int64_t k = v >= 9e18 ? INT64_MAX : (int64_t)v;
    return k < min ? min : k;
}

/* ---- timing and statistics ---------------------------------------------- */

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double bench_us(int64_t from_ns, int64_t to_ns)
{
    return (double)(to_ns - from_ns) / 1000.0;
}

double bench_mean(const double *v, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    return n ? sum / (double)n : 0.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_percentile(double *v, size_t n, double p)
{
    if (!n)
        return 0.0;
    qsort(v, n, sizeof *v, cmp_double);
    double rank = p / 100.0 * (double)n;
    size_t i = rank <= 1.0 ? 0 : (size_t)(rank + 0.999999) - 1;
    return v[i < n ? i : n - 1];
}

double bench_median(double *v, size_t n)
{
    if (!n)
        return 0.0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* ---- reporting ---------------------------------------------------------- */

static void vline(const char *name, const char *fmt, va_list ap)
{
    printf("%-18s ", name);
    vprintf(fmt, ap);
}

void bench_goal(const char *name, int pass, const char *goal, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(name, fmt, ap);
    va_end(ap);
    printf(" (goal %s) %s\n", goal, pass ? "PASS" : "MISS");
    fflush(stdout);
    if (pass)
        n_pass++;
    else
        n_miss++;
}

void bench_note(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(name, fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

const char *bench_num(char *buf, size_t cap, double v)
{
    char digits[32];
    int neg = v < 0;
    double a = neg ? -v : v;
    snprintf(digits, sizeof digits, "%.0f", a);
    size_t nd = strlen(digits), o = 0;
    if (neg && o + 1 < cap)
        buf[o++] = '-';
    for (size_t i = 0; i < nd && o + 1 < cap; i++) {
        buf[o++] = digits[i];
        size_t left = nd - i - 1;
        if (left && left % 3 == 0 && o + 1 < cap)
            buf[o++] = ',';
    }
    buf[o] = '\0';
    return buf;
}

/* ---- failures ----------------------------------------------------------- */

void bench_die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

void bench_check(int rc, const ar_store *store, const char *what)
{
    if (rc)
        bench_die("%s: %s: %s", what, ar_code_name(rc), ar_store_errmsg(store));
}

void bench_check_run(int rc, const ar_run *run, const char *what)
{
    if (rc)
        bench_die("%s: %s: %s", what, ar_code_name(rc), ar_run_errmsg(run));
}

void *bench_alloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        bench_die("out of memory (%zu bytes)", n);
    return p;
}

/* ---- files -------------------------------------------------------------- */

char *bench_path(const bench_env *env, const char *name)
{
    size_t n = strlen(env->dir) + strlen(name) + 2;
    char *p = bench_alloc(n);
    snprintf(p, n, "%s/%s", env->dir, name);
    return p;
}

void bench_remove_store(const char *path)
{
    static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
    char buf[4096];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(buf, sizeof buf, "%s%s", path, suffixes[i]);
        if (unlink(buf) != 0 && errno != ENOENT)
            bench_die("cannot remove %s: %s", buf, strerror(errno));
    }
}

static int64_t file_bytes(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

int64_t bench_store_bytes(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) != SQLITE_OK)
        bench_die("checkpointing %s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_close(db);
    char wal[4096];
    snprintf(wal, sizeof wal, "%s-wal", path);
    return file_bytes(path) + file_bytes(wal);
}

/* Removes the invocation's directory and everything in it (the bench makes no subdirectories). */
static void remove_bench_dir(void)
{
    /* a forked writer that exits leaves the directory to the bench */
    if (!bench_dir || getpid() != bench_pid)
        return;
    DIR *d = opendir(bench_dir);
    if (d) {
        struct dirent *e;
        char buf[4096];
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(buf, sizeof buf, "%s/%s", bench_dir, e->d_name);
            unlink(buf);
        }
        closedir(d);
    }
    if (rmdir(bench_dir) != 0)
        fprintf(stderr, "bench: could not remove %s: %s\n", bench_dir, strerror(errno));
    free(bench_dir);
    bench_dir = NULL;
    free(fixture_runs_path);
    fixture_runs_path = NULL;
}

/* ---- payloads ----------------------------------------------------------- */

/* Plain prose (no quotes or backslashes) cut to length to vary the payload's size. */
static const char filler[] =
    "If every caller assumes a single line, the fix belongs in the lexer rather than in the parser, "
    "and the regression test should cover a folded value, an empty value and a value that ends in a tab. "
    "After that I will rerun the focused test, read the diff once more, and only widen the change if "
    "another caller turns out to depend on the old behaviour. The fuzz corpus has three inputs with "
    "continuation lines; I will add them to the unit tests as well so the case cannot regress silently. "
    "Finally I will run the whole suite under the sanitizers before reporting back with a short summary "
    "of the cause, the fix and the tests that now pin it down, and a note on the two callers I checked.";

size_t bench_payload(char *buf, size_t cap, int64_t n)
{
    long long in = 1200 + (n * 31) % 800, out = 60 + (n * 17) % 140;
    char tail[512];
    int t = snprintf(tail, sizeof tail,
        "\"},{\"type\":\"tool_use\",\"id\":\"toolu_%012llx\",\"name\":\"run_shell\",\"input\":"
        "{\"command\":\"grep -rn \\\"parse_header\\\" src/ --include=*.c | head -n %d\","
        "\"timeout_ms\":%d,\"cwd\":\"/home/agent/work/project-%lld\"}}],"
        "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":%lld,\"output_tokens\":%lld}}",
        (unsigned long long)(n * 2654435761u) & 0xffffffffffffull, (int)(20 + n % 80),
        (int)(30000 + (n % 7) * 5000), (long long)(n % 13), in, out);
    int p = snprintf(buf, cap,
        "{\"role\":\"assistant\",\"model\":\"claude-sonnet-4\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"Step %lld. The header test still fails: the parser rejects a value folded onto a second line. "
        "Before changing it I want to see every caller of parse_header and how each one treats a "
        "continuation line, so I will search the source tree first. ",
        (long long)n);
    if (p < 0 || t < 0 || (size_t)p + (size_t)t + sizeof filler >= cap)
        bench_die("payload buffer too small (%zu bytes)", cap);
    /* 960..1087 bytes in all, about 1 KB on average */
    int64_t target = 960 + (n * 7919) % 128;
    int64_t k = target - p - t;
    if (k < 0)
        k = 0;
    if (k > (int64_t)sizeof filler - 1)
        k = (int64_t)sizeof filler - 1;
    memcpy(buf + p, filler, (size_t)k);
    memcpy(buf + p + k, tail, (size_t)t + 1);
    return (size_t)p + (size_t)k + (size_t)t;
}

void bench_step_make(bench_step *out, int64_t n, char *buf, size_t cap)
{
    out->kind = "llm";
    out->name = "claude-sonnet-4";
    out->content_len = bench_payload(buf, cap, n);
    out->content = buf;
    out->input_tokens = 1200 + (n * 31) % 800;
    out->output_tokens = 60 + (n * 17) % 140;
    out->cost = (double)(out->input_tokens * 3 + out->output_tokens * 15) / 1e6;
    out->duration_ms = 700 + (n * 13) % 900;
}

void bench_write_run(ar_store *store, const char *goal, const ar_step *steps, size_t n)
{
    ar_record rec = AR_RECORD_INIT;
    rec.agent = "bench-agent";
    rec.goal = goal;
    rec.status = AR_COMPLETED;
    rec.output = "\"done\"";
    rec.steps = steps;
    rec.n_steps = n;
    char *id = NULL;
    bench_check(ar_store_write(&id, store, &rec), store, "writing a run");
    ar_free(id);
}

void bench_step_to_ar(ar_step *out, const bench_step *s)
{
    ar_step init = AR_STEP_INIT;
    *out = init;
    out->kind = s->kind;
    out->name = s->name;
    out->content = s->content;
    out->content_len = s->content_len;
    out->usage.input_tokens = s->input_tokens;
    out->usage.output_tokens = s->output_tokens;
    out->usage.cost = s->cost;
    out->duration_ms = s->duration_ms;
}

/* ---- shared fixtures ---------------------------------------------------- */

/* Writes n finished runs, each a whole record in its own transaction. */
static void build_runs_store(const char *path, int64_t n, int64_t users)
{
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, path, &opts), store, "opening the fixture store");
    const int64_t base = INT64_C(1700000000000);
    for (int64_t r = 0; r < n; r++) {
        char agent[32], goal[64], user[32], c1[128], c2[128];
        snprintf(agent, sizeof agent, "agent-%d", (int)(r % 8));
        snprintf(goal, sizeof goal, "Answer support ticket %" PRId64, r);
        snprintf(user, sizeof user, "user-%04d", (int)(r % users));
        snprintf(c1, sizeof c1, "{\"role\":\"assistant\",\"content\":\"Looking up order %" PRId64 "\"}", r);
        snprintf(c2, sizeof c2, "{\"tool\":\"lookup_order\",\"result\":{\"order\":%" PRId64 ",\"status\":\"shipped\"}}", r);
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
        rec.agent = agent;
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
        bench_check(ar_store_write(&id, store, &rec), store, "writing a fixture run");
        ar_free(id);
    }
    ar_store_close(store);
}

const char *bench_fixture_runs(const bench_env *env, int64_t *n_runs, int64_t *n_users, double *build_s)
{
    if (build_s)
        *build_s = 0;
    if (!fixture_runs_path) {
        int64_t n = bench_scaled(env, 100000, 200);
        int64_t users = n / 100 > 0 ? n / 100 : 1;
        char *path = bench_path(env, "fixture-runs.db");
        int64_t t0 = bench_now_ns();
        build_runs_store(path, n, users);
        if (build_s)
            *build_s = bench_us(t0, bench_now_ns()) / 1e6;
        fixture_runs_path = path;
        fixture_runs_n = n;
        fixture_users_n = users;
    }
    if (n_runs)
        *n_runs = fixture_runs_n;
    if (n_users)
        *n_users = fixture_users_n;
    return fixture_runs_path;
}

/* ---- case helpers ------------------------------------------------------- */

static ar_store *open_store(const char *path, int durability)
{
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = durability;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, path, &opts), store, "opening the store");
    return store;
}

static ar_run *begin_run(ar_store *store, const char *goal, const char *user)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "bench-agent";
    spec.goal = goal;
    spec.user = user;
    ar_run *run = NULL;
    bench_check(ar_run_begin(&run, store, &spec), store, "beginning a run");
    return run;
}

static void step_run(ar_run *run, const bench_step *s)
{
    ar_step st;
    bench_step_to_ar(&st, s);
    bench_check_run(ar_run_step(NULL, run, &st), run, "recording a step");
}

static const char final_output[] = "\"The header parser now accepts folded values; tests added.\"";

static const char *durability_name(int durability)
{
    return durability == AR_DURABILITY_NORMAL ? "normal" : "full";
}

/* Short blocks of work (a few milliseconds) alternate between the two sides,
 * and which side goes first alternates too, so load from other processes
 * falls on both alike, also within the first and the last 10%. */
static int agentrun_turn(int64_t block, int side)
{
    return (block % 2 == 0) == (side == 0);
}

/* ---- case 1: one long run, each step durable before the next ------------ */

static void steps_at(const bench_env *env, int durability)
{
    const char *dname = durability_name(durability);
    int64_t n = bench_scaled(env, 10000, 20);
    char name[64];
    snprintf(name, sizeof name, "steps-%s.agentrun.db", dname);
    char *ar_path = bench_path(env, name);
    snprintf(name, sizeof name, "steps-%s.baseline.db", dname);
    char *bl_path = bench_path(env, name);

    ar_store *store = open_store(ar_path, durability);
    ar_run *run = begin_run(store, "Fix the failing header parser test", "user-0001");
    baseline *bl = baseline_open(bl_path, durability);
    int64_t bl_run = baseline_begin(bl, "bench-agent", "Fix the failing header parser test", "user-0001");

    double *t_ar = bench_alloc((size_t)n * sizeof *t_ar), *t_bl = bench_alloc((size_t)n * sizeof *t_bl);
    char buf[BENCH_PAYLOAD_MAX];
    int64_t payload = 0, block = n / 200 > 0 ? n / 200 : 1;
    for (int64_t start = 0, b = 0; start < n; start += block, b++) {
        int64_t end = start + block < n ? start + block : n;
        for (int side = 0; side < 2; side++) {
            int ours = agentrun_turn(b, side);
            for (int64_t i = start; i < end; i++) {
                bench_step s;
                bench_step_make(&s, i + 1, buf, sizeof buf);
                int64_t t0 = bench_now_ns();
                if (ours)
                    step_run(run, &s);
                else
                    baseline_step(bl, bl_run, i + 1, &s);
                double us = bench_us(t0, bench_now_ns());
                if (ours) {
                    t_ar[i] = us;
                    payload += (int64_t)s.content_len;
                } else {
                    t_bl[i] = us;
                }
            }
        }
    }
    bench_check_run(ar_run_complete(NULL, run, final_output, AR_NUL_TERMINATED), run, "completing the run");
    ar_run_close(run);
    ar_store_close(store);
    baseline_complete(bl, bl_run, final_output);
    baseline_close(bl);
    int64_t ar_bytes = bench_store_bytes(ar_path), bl_bytes = bench_store_bytes(bl_path);

    size_t tenth = (size_t)(n / 10);
    double ar_mean = bench_mean(t_ar, (size_t)n), bl_mean = bench_mean(t_bl, (size_t)n);
    double ar_first = bench_mean(t_ar, tenth), ar_last = bench_mean(t_ar + n - (int64_t)tenth, tenth);
    double bl_first = bench_mean(t_bl, tenth), bl_last = bench_mean(t_bl + n - (int64_t)tenth, tenth);
    double ratio = ar_mean / bl_mean, drift = ar_last / ar_first;
    double size_ratio = (double)ar_bytes / (double)payload, bl_size_ratio = (double)bl_bytes / (double)payload;
    char line[32], n1[32], n2[32], n3[32];

    snprintf(line, sizeof line, "steps.%s", dname);
    bench_goal(line, ratio <= 1.25, "<= 1.25",
               "agentrun %s steps/s  %.1f µs/step  baseline %.1f µs/step  ratio %.2f",
               bench_num(n1, sizeof n1, 1e6 / ar_mean), ar_mean, bl_mean, ratio);
    snprintf(line, sizeof line, "steps.%s.drift", dname);
    bench_goal(line, drift <= 1.2, "<= 1.2",
               "agentrun first 10%% %.1f µs/step  last 10%% %.1f µs/step  ratio %.2f  (baseline %.2f)",
               ar_first, ar_last, drift, bl_last / bl_first);
    snprintf(line, sizeof line, "steps.%s.size", dname);
    bench_goal(line, size_ratio <= 1.3, "<= 1.3",
               "agentrun %s bytes for %s payload bytes  ratio %.2f  (baseline %s bytes, %.2f)",
               bench_num(n1, sizeof n1, (double)ar_bytes), bench_num(n2, sizeof n2, (double)payload),
               size_ratio, bench_num(n3, sizeof n3, (double)bl_bytes), bl_size_ratio);

    free(t_ar);
    free(t_bl);
    bench_remove_store(ar_path);
    bench_remove_store(bl_path);
    free(ar_path);
    free(bl_path);
}

void bench_steps(const bench_env *env)
{
    steps_at(env, AR_DURABILITY_FULL);
    steps_at(env, AR_DURABILITY_NORMAL);
}

/* ---- case 2: many short runs -------------------------------------------- */

#define RUN_STEPS 10

static void runs_at(const bench_env *env, int durability)
{
    const char *dname = durability_name(durability);
    int64_t n = bench_scaled(env, 10000, 20);
    char name[64];
    snprintf(name, sizeof name, "runs-%s.agentrun.db", dname);
    char *ar_path = bench_path(env, name);
    snprintf(name, sizeof name, "runs-%s.baseline.db", dname);
    char *bl_path = bench_path(env, name);
    ar_store *store = open_store(ar_path, durability);
    baseline *bl = baseline_open(bl_path, durability);

    static char bufs[RUN_STEPS][BENCH_PAYLOAD_MAX];
    bench_step steps[RUN_STEPS];
    double ar_us = 0, bl_us = 0;
    int64_t block = n / 400 > 0 ? n / 400 : 1;
    for (int64_t start = 0, b = 0; start < n; start += block, b++) {
        int64_t end = start + block < n ? start + block : n;
        for (int side = 0; side < 2; side++) {
            int ours = agentrun_turn(b, side);
            for (int64_t r = start; r < end; r++) {
                char goal[64], user[32];
                snprintf(goal, sizeof goal, "Answer support ticket %" PRId64, r);
                snprintf(user, sizeof user, "user-%04d", (int)(r % 1000));
                for (int k = 0; k < RUN_STEPS; k++)
                    bench_step_make(&steps[k], r * RUN_STEPS + k + 1, bufs[k], sizeof bufs[k]);
                int64_t t0 = bench_now_ns();
                if (ours) {
                    ar_run *run = begin_run(store, goal, user);
                    for (int k = 0; k < RUN_STEPS; k++)
                        step_run(run, &steps[k]);
                    bench_check_run(ar_run_complete(NULL, run, final_output, AR_NUL_TERMINATED), run,
                                    "completing a run");
                    ar_run_close(run);
                    ar_us += bench_us(t0, bench_now_ns());
                } else {
                    int64_t id = baseline_begin(bl, "bench-agent", goal, user);
                    for (int k = 0; k < RUN_STEPS; k++)
                        baseline_step(bl, id, k + 1, &steps[k]);
                    baseline_complete(bl, id, final_output);
                    bl_us += bench_us(t0, bench_now_ns());
                }
            }
        }
    }
    ar_store_close(store);
    baseline_close(bl);

    double ar_rate = (double)n / (ar_us / 1e6), bl_rate = (double)n / (bl_us / 1e6), ratio = ar_rate / bl_rate;
    char line[32], n1[32], n2[32], n3[32];
    snprintf(line, sizeof line, "runs.%s", dname);
    bench_goal(line, ratio >= 0.9, ">= 0.9",
               "agentrun %s runs/s  baseline %s runs/s  ratio %.2f  (%s runs of %d steps)",
               bench_num(n1, sizeof n1, ar_rate), bench_num(n2, sizeof n2, bl_rate), ratio,
               bench_num(n3, sizeof n3, (double)n), RUN_STEPS);
    bench_remove_store(ar_path);
    bench_remove_store(bl_path);
    free(ar_path);
    free(bl_path);
}

void bench_runs(const bench_env *env)
{
    runs_at(env, AR_DURABILITY_FULL);
    runs_at(env, AR_DURABILITY_NORMAL);
}

/* ---- case 3a: streaming a long transcript ------------------------------- */

/* Streams every step of the run through the public iterator; returns content bytes. */
static int64_t stream_run(ar_store *store, const char *id, int64_t *rows)
{
    ar_step_iter *it = NULL;
    bench_check(ar_steps_open(&it, store, id, 1, -1), store, "opening the step stream");
    int64_t bytes = 0, n = 0;
    const ar_step *s;
    for (;;) {
        bench_check(ar_steps_next(&s, it), store, "streaming steps");
        if (!s)
            break;
        if (s->content && s->content_len > 0 && s->content[0] == '{')
            bytes += (int64_t)s->content_len;
        n++;
    }
    ar_steps_close(it);
    *rows = n;
    return bytes;
}

void bench_stream(const bench_env *env)
{
    int64_t n = bench_scaled(env, 10000, 20);
    char *ar_path = bench_path(env, "stream.agentrun.db"), *bl_path = bench_path(env, "stream.baseline.db");
    ar_store *store = open_store(ar_path, AR_DURABILITY_NORMAL);
    ar_run *run = begin_run(store, "Fix the failing header parser test", "user-0001");
    baseline *bl = baseline_open(bl_path, AR_DURABILITY_NORMAL);
    int64_t bl_run = baseline_begin(bl, "bench-agent", "Fix the failing header parser test", "user-0001");
    char buf[BENCH_PAYLOAD_MAX], id[64];
    int64_t payload = 0;
    for (int64_t i = 0; i < n; i++) {
        bench_step s;
        bench_step_make(&s, i + 1, buf, sizeof buf);
        step_run(run, &s);
        baseline_step(bl, bl_run, i + 1, &s);
        payload += (int64_t)s.content_len;
    }
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    bench_check_run(ar_run_complete(NULL, run, final_output, AR_NUL_TERMINATED), run, "completing the run");
    ar_run_close(run);
    ar_store_close(store);
    baseline_close(bl);

    /* fresh connections: the reads start from the OS page cache, not SQLite's */
    store = open_store(ar_path, AR_DURABILITY_NORMAL);
    bl = baseline_open(bl_path, AR_DURABILITY_NORMAL);
    enum { REPS = 7, SIDES = 3 };
    static const char *const side_names[SIDES] = { "agentrun", "baseline", "baseline (every column)" };
    double t[SIDES][REPS];
    for (int r = 0; r < REPS; r++) {
        /* the order of the three readers rotates from one repetition to the next */
        for (int k = 0; k < SIDES; k++) {
            int side = (r + k) % SIDES;
            int64_t rows = 0, bytes, t0 = bench_now_ns();
            if (side == 0)
                bytes = stream_run(store, id, &rows);
            else if (side == 1)
                bytes = baseline_read(bl, bl_run, &rows);
            else
                bytes = baseline_read_rows(bl, bl_run, &rows);
            t[side][r] = bench_us(t0, bench_now_ns());
            if (rows != n || bytes != payload)
                bench_die("%s read %" PRId64 " steps of %" PRId64 " bytes; %" PRId64 " of %" PRId64 " were written",
                          side_names[side], rows, bytes, n, payload);
        }
    }
    ar_store_close(store);
    baseline_close(bl);

    double ar_med = bench_median(t[0], REPS), bl_med = bench_median(t[1], REPS), rows_med = bench_median(t[2], REPS);
    /* The transcript is every field of every step, so the goal's raw read is
     * the baseline reading every column without copying; reading the content
     * column alone is shown beside it. */
    double ratio = ar_med / rows_med;
    char n1[32];
    bench_goal("stream", ratio <= 1.3, "<= 1.3",
               "agentrun %s steps in %.2f ms (%.2f µs/step)  baseline (every column) %.2f ms  ratio %.2f  (median of %d)",
               bench_num(n1, sizeof n1, (double)n), ar_med / 1000, ar_med / (double)n, rows_med / 1000, ratio, REPS);
    bench_note("stream.content", "baseline reading the content column alone %.2f ms  agentrun/that %.2f",
               bl_med / 1000, ar_med / bl_med);
    bench_remove_store(ar_path);
    bench_remove_store(bl_path);
    free(ar_path);
    free(bl_path);
}

/* ---- case 3b: listing one user's newest runs ---------------------------- */

/* Lists the newest `limit` runs of `user`, checking they are that user's and newest first. */
static double list_once(ar_store *store, const char *user, int64_t limit, size_t expect)
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

void bench_list(const bench_env *env)
{
    int64_t runs, users;
    double build_s;
    const char *path = bench_fixture_runs(env, &runs, &users, &build_s);
    char n1[32], n2[32], n3[32];
    if (build_s > 0)
        bench_note("list.build", "%s runs of %s users written whole in %.1f s (%s runs/s, durability normal)",
                   bench_num(n1, sizeof n1, (double)runs), bench_num(n2, sizeof n2, (double)users), build_s,
                   bench_num(n3, sizeof n3, (double)runs / build_s));
    ar_store *store = open_store(path, AR_DURABILITY_NORMAL);
    const int64_t limit = 50;
    int64_t per_user = runs / users;
    size_t expect = (size_t)(per_user < limit ? per_user : limit);
    int64_t n = bench_scaled(env, 200, 20);
    double *t = bench_alloc((size_t)n * sizeof *t);
    char user[32];
    for (int64_t i = 0; i < 10; i++) {
        snprintf(user, sizeof user, "user-%04d", (int)((i * 101) % users));
        list_once(store, user, limit, expect);
    }
    for (int64_t i = 0; i < n; i++) {
        snprintf(user, sizeof user, "user-%04d", (int)((i * 37) % users));
        t[i] = list_once(store, user, limit, expect);
    }
    ar_store_close(store);
    double p95 = bench_percentile(t, (size_t)n, 95), med = bench_median(t, (size_t)n);
    bench_goal("list", med <= 1000, "median <= 1000 µs",
               "agentrun %" PRId64 " newest runs of one user (store of %s runs, %s users)  median %.0f µs  p95 %.0f µs",
               limit, bench_num(n1, sizeof n1, (double)runs), bench_num(n2, sizeof n2, (double)users), med, p95);
    free(t);
}

/* ---- runner ------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench [-l] [case-substring ...]\n"
               "  runs the cases whose name contains any of the substrings (all when none)\n"
               "  -l  lists the cases\n"
               "environment: AR_BENCH_SCALE (default 1.0) scales the counts;\n"
               "  AR_BENCH_DIR (else TMPDIR, else the binary's directory) holds the files\n");
}

static int selected(const char *name, int argc, char **argv)
{
    if (argc < 2)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i]))
            return 1;
    return 0;
}

/* Where the temp dir goes: on disk, since durable commits are what is measured. */
static char *base_dir(const char *argv0)
{
    const char *env = getenv("AR_BENCH_DIR");
    if (!env || !*env)
        env = getenv("TMPDIR");
    if (env && *env) {
        char *d = bench_alloc(strlen(env) + 1);
        strcpy(d, env);
        return d;
    }
    const char *slash = strrchr(argv0, '/');
    size_t n = slash ? (size_t)(slash - argv0) : 1;
    char *d = bench_alloc(n + 1);
    memcpy(d, slash ? argv0 : ".", n);
    d[n] = '\0';
    return d;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "-l") == 0) {
            for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
                printf("%s\n", cases[k].name);
            return 0;
        }
        if (argv[i][0] == '-') {
            usage(stderr);
            return 2;
        }
    }
    bench_env env = { NULL, 1.0 };
    const char *scale = getenv("AR_BENCH_SCALE");
    if (scale && *scale) {
        char *end;
        env.scale = strtod(scale, &end);
        if (*end || !(env.scale > 0) || env.scale > 1000)
            bench_die("AR_BENCH_SCALE must be a number in (0, 1000], not '%s'", scale);
    }
    int any = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        any |= selected(cases[k].name, argc, argv);
    if (!any)
        bench_die("no case matches; the cases are listed by bench -l");

    char *base = base_dir(argv[0]);
    size_t n = strlen(base) + 32;
    char *tmpl = bench_alloc(n);
    snprintf(tmpl, n, "%s/agentrun-bench-XXXXXX", base);
    free(base);
    if (!mkdtemp(tmpl))
        bench_die("cannot create a temp dir %s: %s", tmpl, strerror(errno));
    bench_dir = tmpl;
    bench_pid = getpid();
    atexit(remove_bench_dir);
    env.dir = bench_dir;

    const char *fs = "";
#if defined(__linux__)
    struct statfs sf;
    if (statfs(env.dir, &sf) == 0 && sf.f_type == TMPFS_MAGIC_NUMBER)
        fs = "  (tmpfs: syncs cost nothing here; set AR_BENCH_DIR to a disk)";
#endif
    printf("agentrun %s bench  scale %.2f  sqlite %s  dir %s%s\n", AR_VERSION, env.scale, sqlite3_libversion(),
           env.dir, fs);
    fflush(stdout);
    int64_t t0 = bench_now_ns();
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        if (selected(cases[k].name, argc, argv))
            cases[k].fn(&env);
    double secs = bench_us(t0, bench_now_ns()) / 1e6;
    printf("summary            %d PASS, %d MISS of %d goals in %.0f s (a MISS is reported, not an error)\n",
           n_pass, n_miss, n_pass + n_miss, secs);
    return 0;
}
