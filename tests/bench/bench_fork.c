/* bench_fork.c -- forking a run half-way against writing the same steps whole. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>

#define REPS 3

/* A record of n ~1 KB steps (payloads in *bufs, freed by the caller). */
static ar_record record_of(int64_t n, char **bufs, ar_step **steps)
{
    *bufs = bench_alloc((size_t)n * BENCH_PAYLOAD_MAX);
    *steps = bench_alloc((size_t)n * sizeof **steps);
    for (int64_t k = 0; k < n; k++) {
        bench_step s;
        bench_step_make(&s, k + 1, *bufs + k * BENCH_PAYLOAD_MAX, BENCH_PAYLOAD_MAX);
        bench_step_to_ar(&(*steps)[k], &s);
    }
    ar_record r = AR_RECORD_INIT;
    r.agent = "bench-fork";
    r.goal = "fork half-way";
    r.status = AR_FAILED;
    r.error = "went wrong";
    r.steps = *steps;
    r.n_steps = (size_t)n;
    return r;
}

void bench_fork(const bench_env *env)
{
    int64_t n = bench_scaled(env, 10000, 10);
    int64_t at = n / 2;
    char *path = bench_path(env, "fork.db");
    bench_remove_store(path);
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, path, &opts), store, "open");
    char *bufs;
    ar_step *steps;
    ar_record whole = record_of(n, &bufs, &steps);
    char *id = NULL;
    bench_check(ar_store_write(&id, store, &whole), store, "write the run");
    ar_record half = whole;
    half.n_steps = (size_t)at;

    double fork_us[REPS], write_us[REPS];
    for (int i = 0; i < REPS; i++) {
        ar_fork_opts fo = AR_FORK_OPTS_INIT;
        fo.at = at;
        ar_run *f = NULL;
        int64_t t0 = bench_now_ns();
        bench_check(ar_run_fork(&f, store, id, &fo), store, "fork");
        int64_t t1 = bench_now_ns();
        fork_us[i] = bench_us(t0, t1);
        if (ar_run_iterations(f) != at)
            bench_die("the fork has %lld steps, not %lld", (long long)ar_run_iterations(f), (long long)at);
        bench_check_run(ar_run_complete(NULL, f, NULL, 0), f, "complete the fork");
        ar_run_close(f);

        char *wid = NULL;
        t0 = bench_now_ns();
        bench_check(ar_store_write(&wid, store, &half), store, "write half the run");
        t1 = bench_now_ns();
        write_us[i] = bench_us(t0, t1);
        ar_free(wid);
    }
    double fork_med = bench_median(fork_us, REPS), write_med = bench_median(write_us, REPS);
    char a[32], b[32];
    bench_note("fork_at_half", "fork at step %s of a %s-step run: %.1f ms (median of %d)",
               bench_num(a, sizeof a, (double)at), bench_num(b, sizeof b, (double)n), fork_med / 1000, REPS);
    bench_note("fork_write_half", "store:write of those %s steps whole: %.1f ms", bench_num(a, sizeof a, (double)at),
               write_med / 1000);
    double ratio = fork_med / write_med;
    bench_goal("fork_ratio", ratio <= 1.0, "<= 1.0", "fork / write of the same steps: %.2f", ratio);

    ar_free(id);
    free(steps);
    free(bufs);
    ar_store_close(store);
    bench_remove_store(path);
    free(path);
}
