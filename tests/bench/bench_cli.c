/* bench_cli.c -- the agentrun command, timed as a user meets it: the whole
 * process (interpreter start, module load, open, query, output) of `agentrun
 * ls` on the store of 100,000 runs and of `agentrun show` of a 10,000-step run. */
#include "bench.h"

#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The command: $AR_BENCH_CLI, or bin/agentrun of the build this bench is in. */
static char *cli_path(void)
{
    const char *given = getenv("AR_BENCH_CLI");
    if (given && *given) {
        char *p = bench_alloc(strlen(given) + 1);
        strcpy(p, given);
        return p;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        bench_die("cannot find the agentrun command: set AR_BENCH_CLI");
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    char *p = bench_alloc(strlen(exe) + 32);
    sprintf(p, "%s/../bin/agentrun", exe);
    if (access(p, X_OK) != 0)
        bench_die("no agentrun command at %s (make builds it; or set AR_BENCH_CLI)", p);
    return p;
}

/* Runs argv[0] with its output to /dev/null and returns the wall time in
 * milliseconds; dies unless it exits 0. */
static double run_once(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int64_t t0 = bench_now_ns();
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        bench_die("cannot start %s: %s", argv[0], strerror(rc));
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char line[1024] = "";
        for (int i = 0; argv[i] && strlen(line) + strlen(argv[i]) + 2 < sizeof line; i++) {
            strcat(line, i ? " " : "");
            strcat(line, argv[i]);
        }
        bench_die("%s failed (status %d)", line, status);
    }
    return bench_us(t0, bench_now_ns()) / 1000.0;
}

/* The median of n timed runs, after two untimed ones (the page cache warm). */
static double median_ms(char *const argv[], int64_t n, double *p95)
{
    double *t = bench_alloc((size_t)n * sizeof *t);
    run_once(argv);
    run_once(argv);
    for (int64_t i = 0; i < n; i++)
        t[i] = run_once(argv);
    *p95 = bench_percentile(t, (size_t)n, 95);
    double med = bench_median(t, (size_t)n);
    free(t);
    return med;
}

void bench_cli(const bench_env *env)
{
    char *cli = cli_path();
    char n1[32], n2[32];
    int64_t runs;
    const char *runs_path = bench_fixture_runs(env, &runs, NULL, NULL);
    int64_t reps = bench_scaled(env, 20, 5);
    double p95;

    /* argv holds writable strings */
    char ls_word[] = "ls", show_word[] = "show";
    char *runs_arg = bench_alloc(strlen(runs_path) + 1);
    strcpy(runs_arg, runs_path);
    char *ls_argv[] = { cli, ls_word, runs_arg, NULL };
    double ls = median_ms(ls_argv, reps, &p95);
    bench_goal("cli.ls", ls <= 100, "median <= 100 ms",
               "agentrun ls (50 newest of %s runs), whole process  median %.1f ms  p95 %.1f ms",
               bench_num(n1, sizeof n1, (double)runs), ls, p95);

    /* one run of 10,000 steps (times the scale) of the usual ~1 KB payloads */
    int64_t steps = bench_scaled(env, 10000, 100);
    char *path = bench_path(env, "cli-show.db");
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, path, &opts), store, "opening the show store");
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "bench-agent";
    spec.goal = "a long run to show";
    ar_run *run = NULL;
    bench_check(ar_run_begin(&run, store, &spec), store, "beginning the run");
    char buf[BENCH_PAYLOAD_MAX];
    for (int64_t i = 0; i < steps; i++) {
        bench_step s;
        ar_step st;
        bench_step_make(&s, i, buf, sizeof buf);
        bench_step_to_ar(&st, &s);
        bench_check_run(ar_run_step(NULL, run, &st), run, "recording a step");
    }
    char id[64];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    bench_check_run(ar_run_complete(NULL, run, "\"done\"", AR_NUL_TERMINATED), run, "completing the run");
    ar_run_close(run);
    ar_store_close(store);

    char *show_argv[] = { cli, show_word, path, id, NULL };
    double show = median_ms(show_argv, reps, &p95);
    bench_goal("cli.show", show <= 300, "median <= 300 ms",
               "agentrun show of a %s-step run, whole process  median %.1f ms  p95 %.1f ms",
               bench_num(n2, sizeof n2, (double)steps), show, p95);

    bench_remove_store(path);
    free(path);
    free(runs_arg);
    free(cli);
}

/* The peak resident set size in MB of `agentrun ARGS...` (output to
 * /dev/null), as /usr/bin/time -v reports it ("Maximum resident set size"). */
static double peak_rss_mb(const bench_env *env, char *cli, char *const args[])
{
    char *report = bench_path(env, "time-v.txt");
    char time_word[] = "/usr/bin/time", v_word[] = "-v", o_word[] = "-o";
    char *argv[16] = { time_word, v_word, o_word, report, cli };
    int n = 5;
    for (int i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    if (access(time_word, X_OK) != 0)
        bench_die("no /usr/bin/time (Debian package time; make deps installs it)");
    run_once(argv);
    FILE *f = fopen(report, "r");
    if (!f)
        bench_die("cannot read %s", report);
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, " Maximum resident set size (kbytes): %ld", &kb) == 1)
            break;
    fclose(f);
    remove(report);
    free(report);
    if (kb < 0)
        bench_die("/usr/bin/time -v printed no maximum resident set size");
    return (double)kb / 1024.0;
}

/* `agentrun export` of 100,000 runs of 10 steps (times the scale) streams:
 * its peak RSS stays under 64 MB. Beside it, the same command's `ls` of the
 * same store: the process's floor (interpreter, module, SQLite cache). */
void bench_cli_export(const bench_env *env)
{
    char *cli = cli_path();
    int64_t n = bench_scaled(env, 100000, 200);
    enum { STEPS = 10 };
    char *path = bench_path(env, "cli-export.db");
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, path, &opts), store, "opening the export store");
    int64_t t0 = bench_now_ns();
    char text[STEPS][160];
    ar_step steps[STEPS];
    for (int64_t r = 0; r < n; r++) {
        for (int k = 0; k < STEPS; k++) {
            int len = snprintf(text[k], sizeof text[k],
                               "{\"role\":\"assistant\",\"text\":\"step %d of run %" PRId64
                               ": looked the order up and wrote back\"}", k + 1, r);
            steps[k] = (ar_step)AR_STEP_INIT;
            steps[k].kind = k % 3 == 2 ? "tool" : "llm";
            steps[k].content = text[k];
            steps[k].content_len = (size_t)len;
            steps[k].usage.input_tokens = 100 + k;
            steps[k].usage.output_tokens = 20 + k;
        }
        bench_write_run(store, "Answer a support ticket", steps, STEPS);
    }
    ar_store_close(store);
    double build_s = bench_us(t0, bench_now_ns()) / 1e6;

    char export_word[] = "export", ls_word[] = "ls";
    char *export_args[] = { export_word, path, NULL };
    char *ls_args[] = { ls_word, path, NULL };
    double ls_mb = peak_rss_mb(env, cli, ls_args);
    t0 = bench_now_ns();
    double export_mb = peak_rss_mb(env, cli, export_args);
    double export_s = bench_us(t0, bench_now_ns()) / 1e6;
    char n1[32];
    bench_goal("cli.export.rss", export_mb < 64, "peak RSS < 64 MB",
               "agentrun export of %s runs of %d steps  peak RSS %.1f MB in %.1f s  (agentrun ls of the "
               "same store %.1f MB; store built in %.0f s)",
               bench_num(n1, sizeof n1, (double)n), STEPS, export_mb, export_s, ls_mb, build_s);
    bench_remove_store(path);
    free(path);
    free(cli);
}
