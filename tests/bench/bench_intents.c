/* bench_intents.c -- a tool call made through an intent (intend before, settle after) against one durable step. */
#include "bench.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ar_run *begin(ar_store *store)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "bench-agent";
    spec.goal = "Refund the customers whose parcels were lost";
    ar_run *run = NULL;
    bench_check(ar_run_begin(&run, store, &spec), store, "beginning a run");
    return run;
}

/* Both sides record the same result bytes: one side as a tool step, the
 * other as the settle of an intent made just before; blocks alternate so
 * that load from other processes falls on both alike. */
static void intents_at(const bench_env *env, int durability)
{
    const char *dname = durability == AR_DURABILITY_NORMAL ? "normal" : "full";
    int64_t n = bench_scaled(env, 2000, 20);
    char name[64];
    snprintf(name, sizeof name, "intents-%s.agentrun.db", dname);
    char *path = bench_path(env, name);
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = durability;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, path, &opts), store, "opening the store");
    ar_run *plain = begin(store), *tools = begin(store);

    double *t_step = bench_alloc((size_t)n * sizeof *t_step), *t_tool = bench_alloc((size_t)n * sizeof *t_tool);
    char buf[BENCH_PAYLOAD_MAX], key[32], args[64];
    int64_t block = n / 100 > 0 ? n / 100 : 1;
    for (int64_t start = 0, b = 0; start < n; start += block, b++) {
        int64_t end = start + block < n ? start + block : n;
        for (int side = 0; side < 2; side++) {
            int tool_side = (b % 2 == 0) == (side == 0);
            for (int64_t i = start; i < end; i++) {
                size_t len = bench_payload(buf, sizeof buf, i + 1);
                int64_t t0 = bench_now_ns();
                if (tool_side) {
                    snprintf(key, sizeof key, "refund-%" PRId64, i);
                    snprintf(args, sizeof args, "{\"order\":\"A%06" PRId64 "\",\"amount\":20}", i);
                    bench_check_run(ar_run_intend(NULL, tools, key, "refund", args, AR_NUL_TERMINATED), tools,
                                    "recording an intent");
                    /* the tool itself would run here */
                    bench_check_run(ar_run_settle(NULL, tools, key, buf, len, 0), tools, "settling an intent");
                    t_tool[i] = bench_us(t0, bench_now_ns());
                } else {
                    ar_step st = AR_STEP_INIT;
                    st.kind = "tool";
                    st.name = "refund";
                    st.content = buf;
                    st.content_len = len;
                    bench_check_run(ar_run_step(NULL, plain, &st), plain, "recording a step");
                    t_step[i] = bench_us(t0, bench_now_ns());
                }
            }
        }
    }
    ar_run_close(plain);
    ar_run_close(tools);
    ar_store_close(store);

    double step_mean = bench_mean(t_step, (size_t)n), tool_mean = bench_mean(t_tool, (size_t)n);
    double ratio = tool_mean / step_mean;
    char line[32];
    snprintf(line, sizeof line, "intents.%s", dname);
    bench_goal(line, ratio <= 2.2, "<= 2.2",
               "intend+settle %.1f µs/call  one step %.1f µs  ratio %.2f  (%" PRId64 " calls)", tool_mean,
               step_mean, ratio, n);
    free(t_step);
    free(t_tool);
    bench_remove_store(path);
    free(path);
}

void bench_intents(const bench_env *env)
{
    intents_at(env, AR_DURABILITY_FULL);
    intents_at(env, AR_DURABILITY_NORMAL);
}
