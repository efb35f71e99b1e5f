/* test_examples.c -- runs the built examples (embed_host, agent_loop.lua, show_store.lua, tools.lua,
 * fork.lua) and checks what they stored. */
#define _GNU_SOURCE /* dladdr, RTLD_DEFAULT: finding the sanitizer runtimes to hand to lua5.4 */
#include "suite.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agentrun.h"

/* The build directory: $AR_BUILD (set by make test-c), else the one this
 * runner was built in ($BUILD/tests/c_tests), else "build". Static text. */
static const char *build_dir(void)
{
    static char dir[4096];
    const char *env = getenv("AR_BUILD");
    if (env && *env)
        return env;
    if (dir[0])
        return dir;
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n > 0) {
        dir[n] = '\0';
        for (int up = 0; up < 2; up++) {
            char *slash = strrchr(dir, '/');
            if (slash)
                *slash = '\0';
        }
        if (dir[0])
            return dir;
    }
    snprintf(dir, sizeof dir, "build");
    return dir;
}

/* Appends the file holding `symbol` (when this process has it) to the
 * colon-separated list `out`. */
static void add_runtime_of(const char *symbol, char *out, size_t cap)
{
    void *addr = dlsym(RTLD_DEFAULT, symbol);
    Dl_info info;
    if (addr == NULL || dladdr(addr, &info) == 0 || info.dli_fname == NULL)
        return;
    if (strstr(out, info.dli_fname))
        return;
    size_t len = strlen(out);
    snprintf(out + len, cap - len, "%s%s", len ? ":" : "", info.dli_fname);
}

/* In a sanitizer build the Lua module is instrumented but lua5.4 is not: the
 * interpreter must preload the runtimes this runner uses (as make check does
 * for the Lua suite). Returns that preload list, "" in an ordinary build. */
static const char *sanitizer_preload(void)
{
    static char list[2048];
    list[0] = '\0';
    add_runtime_of("__asan_init", list, sizeof list);
    add_runtime_of("__ubsan_handle_add_overflow", list, sizeof list);
    return list;
}

/* Runs argv (argv[0] looked up in PATH) with stdout and stderr going to the
 * file `log`, and returns its exit status (-1 when it did not exit). With
 * `lua`, the child gets what the Lua interpreter needs to load this build's
 * module when make test-c did not set it up. */
static int run_program(const char *const argv[], const char *log, int lua)
{
    char cpath[4200];
    snprintf(cpath, sizeof cpath, "%s/lua/?.so;;", build_dir());
    const char *preload = lua ? sanitizer_preload() : "";
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            _exit(126);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
        if (lua) {
            setenv("LUA_PATH", "lua/?.lua;lua/?/init.lua;;", 0);
            setenv("LUA_CPATH", cpath, 0);
            if (*preload) {
                /* lua5.4 itself is not instrumented: its leaks are not ours */
                setenv("LD_PRELOAD", preload, 1);
                setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
            }
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The whole file as a NUL-terminated malloc'ed string ("" if it is missing). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return strdup("");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* Fails the test, showing the program's output, unless it exited with `want`. */
static void expect_exit(int got, int want, const char *log)
{
    if (got != want) {
        char *out = slurp(log);
        print_error("exit status %d, expected %d; output:\n%s\n", got, want, out);
        free(out);
        fail();
    }
}

/* Fails the test unless the file `log` contains `text`. */
static void expect_output(const char *log, const char *text)
{
    char *out = slurp(log);
    if (strstr(out, text) == NULL) {
        print_error("output lacks \"%s\":\n%s\n", text, out);
        free(out);
        fail();
    }
    free(out);
}

static ar_store *open_ok(const char *path)
{
    ar_store *store = NULL;
    int rc = ar_store_open(&store, path, NULL);
    if (rc != AR_OK) {
        print_error("open %s: %s: %s\n", path, ar_code_name(rc), ar_store_errmsg(store));
        ar_store_close(store);
        fail();
    }
    return store;
}

/* All runs of the store, oldest first; *n gets their number. */
static ar_record **list_runs(ar_store *store, size_t *n)
{
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.order = AR_ORDER_ASC;
    q.limit = 100;
    ar_record **runs = NULL;
    assert_int_equal(ar_runs_list(&runs, n, NULL, store, &q), AR_OK);
    return runs;
}

static char *embed_host_path(void)
{
    char *path = malloc(4200);
    assert_non_null(path);
    snprintf(path, 4200, "%s/examples/embed_host", build_dir());
    return path;
}

static void test_embed_host_records_a_completed_run_that_the_c_api_reads_back(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *db = tmpdir_path(dir, "embed.db");
    char *log = tmpdir_path(dir, "out.txt");
    char *host = embed_host_path();
    const char *argv[] = { host, db, "examples/embed_agent.lua", "lua", NULL };

    expect_exit(run_program(argv, log, 0), 0, log);

    ar_store *store = open_ok(db);
    size_t n = 0;
    ar_record **runs = list_runs(store, &n);
    assert_int_equal(n, 1);
    ar_record *rec = NULL;
    assert_int_equal(ar_store_get(&rec, store, runs[0]->id, 1), AR_OK);
    assert_string_equal(rec->agent, "embedded-agent");
    assert_int_equal(rec->status, AR_COMPLETED);
    assert_string_equal(rec->output, "\"21 C is 69.8 F.\"");
    assert_int_equal(rec->iterations, 3);
    assert_int_equal(rec->usage.input_tokens, 280);
    assert_int_equal(rec->usage.output_tokens, 43);
    assert_int_equal(rec->usage.total_tokens, 323);
    assert_true(rec->usage.cost == 0.001485);
    assert_int_equal(rec->n_steps, 3);
    assert_string_equal(rec->steps[0].kind, "llm");
    assert_string_equal(rec->steps[1].kind, "tool");
    assert_string_equal(rec->steps[1].name, "convert");
    assert_string_equal(rec->steps[2].kind, "llm");

    /* the host printed the run it read back through the C API */
    char line[128];
    snprintf(line, sizeof line, "run %s: agent embedded-agent, status completed", rec->id);
    expect_output(log, line);
    expect_output(log, "tokens 280 in / 43 out, cost 0.001485");

    ar_record_free(rec);
    ar_records_free(runs, n);
    ar_store_close(store);
    free(host);
    free(log);
    free(db);
    tmpdir_remove(dir);
}

/* Writes `text` to the file `path`. */
static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void test_embed_host_exits_with_1_and_reports_a_script_error_with_its_traceback(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *db = tmpdir_path(dir, "embed.db");
    char *log = tmpdir_path(dir, "out.txt");
    char *script = tmpdir_path(dir, "bad.lua");
    char *host = embed_host_path();
    write_file(script, "local function deep() error('boom from the agent') end\ndeep()\n");
    const char *argv[] = { host, db, script, "lua", NULL };

    expect_exit(run_program(argv, log, 0), 1, log);
    expect_output(log, "the agent script failed: ");
    expect_output(log, "bad.lua:1: boom from the agent");
    expect_output(log, "stack traceback:");
    expect_output(log, "in local 'deep'");

    free(host);
    free(script);
    free(log);
    free(db);
    tmpdir_remove(dir);
}

static void test_embed_host_reports_an_agentrun_error_object_by_its_text(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *db = tmpdir_path(dir, "embed.db");
    char *log = tmpdir_path(dir, "out.txt");
    char *script = tmpdir_path(dir, "nan.lua");
    char *host = embed_host_path();
    write_file(script, "return require('agentrun').json_encode({ x = 0/0 })\n");
    const char *argv[] = { host, db, script, "lua", NULL };

    expect_exit(run_program(argv, log, 0), 1, log);
    expect_output(log, "the agent script failed: agentrun: EJSON: ");

    free(host);
    free(script);
    free(log);
    free(db);
    tmpdir_remove(dir);
}

static void test_embed_host_exits_with_1_when_the_script_returns_no_run_id(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *db = tmpdir_path(dir, "embed.db");
    char *log = tmpdir_path(dir, "out.txt");
    char *script = tmpdir_path(dir, "none.lua");
    char *host = embed_host_path();
    write_file(script, "return 42\n");
    const char *argv[] = { host, db, script, "lua", NULL };

    expect_exit(run_program(argv, log, 0), 1, log);
    expect_output(log, "returned number, not a run id");

    free(host);
    free(script);
    free(log);
    free(db);
    tmpdir_remove(dir);
}

static void test_agent_loop_example_records_a_completed_an_exhausted_and_a_failed_run(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *db = tmpdir_path(dir, "demo.db");
    char *log = tmpdir_path(dir, "out.txt");
    const char *argv[] = { "lua5.4", "examples/agent_loop.lua", db, NULL };

    expect_exit(run_program(argv, log, 1), 0, log);
    expect_output(log, "why it ended");

    ar_store *store = open_ok(db);
    size_t n = 0;
    ar_record **runs = list_runs(store, &n);
    assert_int_equal(n, 3);

    assert_int_equal(runs[0]->status, AR_COMPLETED);
    assert_int_equal(runs[0]->iterations, 5);
    assert_string_equal(runs[0]->output, "\"About 166 days (2400 / (96 * 0.05 + 24 * 0.4) = 166.7).\"");

    assert_int_equal(runs[1]->status, AR_BUDGET_EXHAUSTED);
    assert_int_equal(runs[1]->iterations, 20);
    assert_string_equal(runs[1]->limit.limit, "max_cost");
    assert_true(runs[1]->limit.limit_value == 0.012);
    assert_true(runs[1]->limit.value >= 0.012);
    assert_null(runs[1]->output);

    assert_int_equal(runs[2]->status, AR_FAILED);
    assert_int_equal(runs[2]->iterations, 4);
    assert_string_equal(runs[2]->error, "tool calculator failed: division by zero in \"0 / 0\"");

    /* the failed run's transcript ends on the tool error it recorded */
    ar_record *failed = NULL;
    assert_int_equal(ar_store_get(&failed, store, runs[2]->id, 1), AR_OK);
    assert_int_equal(failed->n_steps, 4);
    assert_string_equal(failed->steps[0].kind, "llm");
    assert_string_equal(failed->steps[1].kind, "tool");
    assert_string_equal(failed->steps[1].name, "lookup");
    assert_string_equal(failed->steps[2].kind, "llm");
    assert_string_equal(failed->steps[3].kind, "error");
    assert_string_equal(failed->steps[3].name, "calculator");

    ar_record_free(failed);
    ar_records_free(runs, n);
    ar_store_close(store);
    free(log);
    free(db);
    tmpdir_remove(dir);
}

static void test_show_store_example_lists_the_runs_and_the_latest_transcript(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *db = tmpdir_path(dir, "demo.db");
    char *log = tmpdir_path(dir, "out.txt");
    const char *loop_argv[] = { "lua5.4", "examples/agent_loop.lua", db, NULL };
    const char *show_argv[] = { "lua5.4", "examples/show_store.lua", db, NULL };

    expect_exit(run_program(loop_argv, log, 1), 0, log);
    expect_exit(run_program(show_argv, log, 1), 0, log);
    expect_output(log, "(schema 3): 3 runs, 29 steps, 0 events");
    expect_output(log, "Totals: 3 runs (budget_exhausted 1, completed 1, failed 1), 29 steps");
    expect_output(log, "(failed): What was the average refund per returned unit in the Lisbon pilot?");
    expect_output(log, "ended: tool calculator failed: division by zero");

    free(log);
    free(db);
    tmpdir_remove(dir);
}

static void test_fork_example_retries_a_failed_run_from_the_step_before_it_went_wrong(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *db = tmpdir_path(dir, "fork.db");
    char *log = tmpdir_path(dir, "out.txt");
    const char *argv[] = { "lua5.4", "examples/fork.lua", db, NULL };

    expect_exit(run_program(argv, log, 1), 0, log);
    expect_output(log, "error: lookup: no fact about \"hieght of everest\"");
    expect_output(log, "output: 3 facts found");
    expect_output(log, "(copied)");

    ar_store *store = open_ok(db);
    size_t n = 0;
    ar_record **runs = list_runs(store, &n);
    assert_int_equal(n, 2);
    assert_int_equal(runs[0]->status, AR_FAILED);
    assert_int_equal(runs[0]->iterations, 5);
    assert_int_equal(runs[1]->status, AR_COMPLETED);
    assert_string_equal(runs[1]->forked_from, runs[0]->id);
    assert_int_equal(runs[1]->forked_seq, 4);
    assert_int_equal(runs[1]->iterations, 7);
    assert_string_equal(runs[1]->metadata, "{\"prompt\":\"careful\"}");
    ar_records_free(runs, n);
    ar_store_close(store);
    free(log);
    free(db);
    tmpdir_remove(dir);
}

/* approval.lua: planned and waiting in one process, answered in a second,
 * resumed in a third that refunds once through ctx:tool. */
static void test_approval_example_waits_for_a_person_and_refunds_once_after_the_answer(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *db = tmpdir_path(dir, "approval.db");
    char *log = tmpdir_path(dir, "out.txt");
    char *refunds = tmpdir_path(dir, "approval.db.refunds");
    const char *argv[] = { "lua5.4", "examples/approval.lua", db, NULL };

    expect_exit(run_program(argv, log, 1), 0, log);
    expect_output(log, "is waiting, asking \"Refund this order?\"");
    expect_output(log, "is completed: refunded 59.90, approved by ops@example.com");
    expect_output(log, "refunds made: 1");

    size_t len = 0;
    char *text = test_slurp(refunds, &len);
    assert_non_null(text);
    assert_string_equal(text, "refunded 59.90 to ana@example.com for A-1042\n");
    free(text);
    ar_store *store = open_ok(db);
    size_t n = 0;
    ar_record **runs = list_runs(store, &n);
    assert_int_equal(n, 1);
    assert_int_equal(runs[0]->status, AR_COMPLETED);
    /* (the answer's members in whatever order the Lua table gave them) */
    assert_non_null(runs[0]->response);
    assert_non_null(strstr(runs[0]->response, "\"approved\":true"));
    assert_non_null(strstr(runs[0]->response, "\"by\":\"ops@example.com\""));
    /* the plan, the wait, the answer, then the refund announced and settled */
    ar_record *rec = NULL;
    assert_int_equal(ar_store_get(&rec, store, runs[0]->id, 1), AR_OK);
    const char *kinds[] = { "llm", "wait", "response", "intent", "tool" };
    assert_int_equal(rec->n_steps, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(rec->steps[i].kind, kinds[i]);
    ar_record_free(rec);
    ar_records_free(runs, n);
    ar_store_close(store);
    free(refunds);
    free(log);
    free(db);
    tmpdir_remove(dir);
}

static void test_show_store_example_exits_with_1_on_a_missing_store(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *db = tmpdir_path(dir, "missing.db");
    char *log = tmpdir_path(dir, "out.txt");
    const char *argv[] = { "lua5.4", "examples/show_store.lua", db, NULL };

    expect_exit(run_program(argv, log, 1), 1, log);
    expect_output(log, "show_store: cannot open ");
    assert_int_equal(access(db, F_OK), -1);

    free(log);
    free(db);
    tmpdir_remove(dir);
}

static void test_tools_example_calls_each_tool_once_across_a_crash_and_a_resume(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *db = tmpdir_path(dir, "tools.db");
    char *log = tmpdir_path(dir, "out.txt");
    const char *argv[] = { "lua5.4", "examples/tools.lua", db, NULL };

    expect_exit(run_program(argv, log, 1), 0, log);
    expect_output(log, "charge   charge_card   pending");
    expect_output(log, "on_pending: charge was cut off; the ledger shows it went through");
    expect_output(log, "run completed: seat 14C on LX 318, paid 420.00");
    expect_output(log, "the card was charged 1 time(s)");

    ar_store *store = open_ok(db);
    size_t n = 0;
    ar_record **runs = list_runs(store, &n);
    assert_int_equal(n, 1);
    assert_int_equal(runs[0]->status, AR_COMPLETED);
    ar_intent_list *intents = NULL;
    assert_int_equal(ar_store_intents(&intents, store, runs[0]->id), AR_OK);
    assert_int_equal(intents->n, 3);
    for (size_t i = 0; i < intents->n; i++)
        assert_int_equal(intents->items[i].status, AR_INTENT_SETTLED);
    assert_string_equal(intents->items[1].key, "charge");
    assert_string_equal(intents->items[1].result, "{\"charged\":420}");
    ar_intent_list_free(intents);
    ar_records_free(runs, n);
    ar_store_close(store);
    free(log);
    free(db);
    tmpdir_remove(dir);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_embed_host_records_a_completed_run_that_the_c_api_reads_back),
    cmocka_unit_test(test_embed_host_exits_with_1_and_reports_a_script_error_with_its_traceback),
    cmocka_unit_test(test_embed_host_reports_an_agentrun_error_object_by_its_text),
    cmocka_unit_test(test_embed_host_exits_with_1_when_the_script_returns_no_run_id),
    cmocka_unit_test(test_agent_loop_example_records_a_completed_an_exhausted_and_a_failed_run),
    cmocka_unit_test(test_show_store_example_lists_the_runs_and_the_latest_transcript),
    cmocka_unit_test(test_show_store_example_exits_with_1_on_a_missing_store),
    cmocka_unit_test(test_tools_example_calls_each_tool_once_across_a_crash_and_a_resume),
    cmocka_unit_test(test_fork_example_retries_a_failed_run_from_the_step_before_it_went_wrong),
    cmocka_unit_test(test_approval_example_waits_for_a_person_and_refunds_once_after_the_answer),
};

TEST_GROUP(examples_group, "examples", tests);
