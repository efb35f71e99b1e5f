/* record_run.c -- a host program that records a run through the C API and prints it back. */
#include <agentrun.h>

#include <stdio.h>
#include <stdlib.h>

static int check(int rc, ar_store *store, const char *what)
{
    if (rc != AR_OK)
        fprintf(stderr, "%s: %s: %s\n", what, ar_code_name(rc), ar_store_errmsg(store));
    return rc;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "record_run.db";
    ar_store *store = NULL;
    if (check(ar_store_open(&store, path, NULL), store, "open")) {
        ar_store_close(store);
        return 1;
    }

    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "support-bot";
    spec.goal = "Where is my order #1234?";
    spec.user = "user-42";
    spec.metadata = "{\"channel\":\"email\"}";
    spec.budget.max_steps = 10;
    spec.budget.max_cost = 0.05;
    ar_run *run = NULL;
    if (check(ar_run_begin(&run, store, &spec), store, "begin")) {
        ar_store_close(store);
        return 1;
    }

    /* a model call that asks for a tool, the tool's result, and the answer */
    ar_counter cache[] = { { "cache_read_tokens", 120 } };
    ar_step steps[3] = { AR_STEP_INIT, AR_STEP_INIT, AR_STEP_INIT };
    steps[0].kind = "llm";
    steps[0].name = "fake-model-1";
    steps[0].content = "{\"role\":\"assistant\",\"tool_calls\":[{\"name\":\"lookup_order\",\"args\":{\"id\":1234}}]}";
    steps[0].usage = (ar_usage){ 350, 40, 0, 0.0012, 1, cache };
    steps[0].duration_ms = 420;
    steps[1].kind = "tool";
    steps[1].name = "lookup_order";
    steps[1].content = "{\"status\":\"shipped\",\"eta\":\"2026-11-24\"}";
    steps[1].duration_ms = 12;
    steps[2].kind = "llm";
    steps[2].name = "fake-model-1";
    steps[2].content = "{\"role\":\"assistant\",\"content\":\"Your order shipped; it arrives on Nov 24.\"}";
    steps[2].usage = (ar_usage){ 420, 25, 0, 0.0013, 0, NULL };
    steps[2].duration_ms = 380;

    for (int i = 0; i < 3; i++) {
        ar_exhaustion why;
        if (ar_run_check(&why, run) == AR_EBUDGET) {
            ar_run_exhaust(NULL, run, &why);
            break;
        }
        int64_t seq;
        if (ar_run_step(&seq, run, &steps[i]) != AR_OK) {
            fprintf(stderr, "step: %s\n", ar_run_errmsg(run));
            ar_run_close(run);
            ar_store_close(store);
            return 1;
        }
    }
    ar_record *final = NULL;
    if (ar_run_complete(&final, run, "\"Your order shipped; it arrives on Nov 24.\"", AR_NUL_TERMINATED) != AR_OK)
        fprintf(stderr, "complete: %s\n", ar_run_errmsg(run));
    ar_record_free(final);
    char id[32];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    ar_run_close(run);

    /* read it back, with its transcript */
    ar_record *rec = NULL;
    if (check(ar_store_get(&rec, store, id, 1), store, "get")) {
        ar_store_close(store);
        return 1;
    }
    printf("run %s  agent=%s  status=%s\n", rec->id, rec->agent, ar_status_name(rec->status));
    printf("  goal:   %s\n", rec->goal);
    printf("  output: %s\n", rec->output ? rec->output : "null");
    printf("  steps=%lld  tokens=%lld in + %lld out = %lld  cost=%.6f  latency=%lld ms\n",
           (long long)rec->iterations, (long long)rec->usage.input_tokens,
           (long long)rec->usage.output_tokens, (long long)rec->usage.total_tokens,
           rec->usage.cost, (long long)rec->latency_ms);
    for (size_t i = 0; i < rec->usage.n_extra; i++)
        printf("  %s=%lld\n", rec->usage.extra[i].name, (long long)rec->usage.extra[i].value);
    for (size_t i = 0; i < rec->n_steps; i++) {
        const ar_step *s = &rec->steps[i];
        printf("  #%lld %-5s %-14s %.*s\n", (long long)s->seq, s->kind, s->name ? s->name : "-",
               (int)s->content_len, s->content ? s->content : "null");
    }
    ar_record_free(rec);

    ar_run_query q = AR_RUN_QUERY_INIT;
    q.agent = "support-bot";
    int64_t count = 0;
    ar_stats stats;
    if (!check(ar_runs_count(&count, store, &q), store, "count") &&
        !check(ar_runs_stats(&stats, store, &q), store, "stats"))
        printf("store %s: %lld run(s) of support-bot, %lld completed, cost %.6f in all\n", path,
               (long long)count, (long long)stats.by_status[AR_COMPLETED], stats.cost);
    ar_store_close(store);
    return 0;
}
