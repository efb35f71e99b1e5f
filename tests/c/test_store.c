/* test_store.c -- opening stores: options, file checks and modes, info, codes, error slots. */
#include "suite.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentrun.h"

/* Opens `path` and fails the test (with the store's message) unless it works. */
static ar_store *open_ok(const char *path, const ar_open_opts *opts)
{
    ar_store *store = NULL;
    int rc = ar_store_open(&store, path, opts);
    if (rc != AR_OK) {
        print_error("open %s: %s: %s\n", path, ar_code_name(rc), ar_store_errmsg(store));
        ar_store_close(store);
        fail();
    }
    assert_non_null(store);
    return store;
}

/* Begins a run of `agent` with goal "g" and fails the test unless it works. */
/* Records an "llm" step with `content` and returns its seq; fails the test otherwise. */
static int64_t step_ok(ar_run *run, const char *content)
{
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.content = content;
    int64_t seq = 0;
    int rc = ar_run_step(&seq, run, &step);
    if (rc != AR_OK) {
        print_error("step: %s: %s\n", ar_code_name(rc), ar_run_errmsg(run));
        fail();
    }
    return seq;
}

static void spit(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Runs SQL on a file through SQLite directly, as another program would. */
static void sql_on_file(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        print_error("%s: %s\n", sql, msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_close(db);
        fail();
    }
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The first column of the first row of `pragma` (any one-value query), read directly. */
static int64_t pragma_on_file(const char *path, const char *pragma)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, pragma, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Checks that opening `path` fails with `want` and leaves its bytes as they were. */
static void expect_refused_unchanged(const char *path, int want, const char *msg_part)
{
    size_t before_len, after_len;
    char *before = test_slurp(path, &before_len);
    ar_store *store = NULL;
    int rc = ar_store_open(&store, path, NULL);
    assert_string_equal(ar_code_name(rc), ar_code_name(want));
    assert_non_null(store);
    assert_int_equal(ar_store_errcode(store), want);
    if (msg_part && !strstr(ar_store_errmsg(store), msg_part)) {
        print_error("message \"%s\" lacks \"%s\"\n", ar_store_errmsg(store), msg_part);
        fail();
    }
    ar_run *run = NULL;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "g";
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_EMISUSE);
    assert_null(run);
    ar_store_close(store);
    char *after = test_slurp(path, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    char side[4200];
    snprintf(side, sizeof side, "%s-wal", path);
    assert_false(exists(side));
    snprintf(side, sizeof side, "%s-journal", path);
    assert_false(exists(side));
    free(before);
    free(after);
}

/* ---- opening ------------------------------------------------------------ */

static void test_open_options_default_to_full_durability_5s_timeout_read_write(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    assert_int_equal(opts.durability, AR_DURABILITY_FULL);
    assert_int_equal(opts.busy_timeout_ms, 5000);
    assert_int_equal(opts.readonly, 0);
    assert_null(opts.allocator);
    ar_store *store = test_store_open(NULL);
    ar_store_close(store);
}

static void test_memory_store_opens_with_schema_and_no_rows(void **state)
{
    (void)state;
    ar_store *store = open_ok(":memory:", NULL);
    ar_store_info info;
    memset(&info, 0xab, sizeof info);
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_string_equal(info.path, ":memory:");
    assert_int_equal(info.schema_version, AR_SCHEMA_VERSION);
    assert_int_equal(info.runs, 0);
    assert_int_equal(info.steps, 0);
    assert_int_equal(info.events, 0);
    assert_true(info.file_bytes > 0);
    assert_int_equal(info.file_bytes % 8192, 0);
    assert_int_equal(info.wal_bytes, 0);
    assert_int_equal(info.free_bytes, 0);
    assert_int_equal(ar_store_errcode(store), AR_OK);
    assert_string_equal(ar_store_errmsg(store), "");
    ar_store_close(store);
}

static int count_problem(void *ud, const ar_check_problem *p)
{
    (void)p;
    (*(int *)ud)++;
    return 0;
}

/* A sound store checks clean on every backend: every row read, none
 * reported; bad arguments are misuse. */
static void test_check_reads_every_row_of_a_sound_store(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    for (int k = 0; k < 3; k++) {
        ar_run *run = test_begin(store, "checked");
        ar_step st = AR_STEP_INIT;
        st.kind = "llm";
        st.content = "{\"k\":1}";
        st.content_len = AR_NUL_TERMINATED;
        for (int i = 0; i < 300; i++)
            assert_int_equal(ar_run_step(NULL, run, &st), AR_OK);
        assert_int_equal(ar_run_checkpoint(run, "[1]", AR_NUL_TERMINATED), AR_OK);
        assert_int_equal(ar_run_complete(NULL, run, NULL, 0), AR_OK);
        ar_run_close(run);
    }
    ar_event e = AR_EVENT_INIT;
    e.agent = "checked";
    e.type = "log";
    assert_int_equal(ar_event_append(NULL, store, &e), AR_OK);
    e.agent = "other";
    assert_int_equal(ar_event_append(NULL, store, &e), AR_OK);
    ar_check_report rep;
    int problems = 0;
    assert_int_equal(ar_store_check(&rep, store, count_problem, &problems), AR_OK);
    assert_int_equal(problems, 0);
    assert_int_equal(rep.problems, 0);
    assert_int_equal(rep.runs, 3);
    assert_int_equal(rep.steps, 900);
    assert_int_equal(rep.checkpoints, 3);
    assert_int_equal(rep.events, 2);
    assert_int_equal(ar_store_check(NULL, store, count_problem, &problems), AR_EMISUSE);
    assert_int_equal(ar_store_check(&rep, store, NULL, NULL), AR_EMISUSE);
    assert_int_equal(ar_store_check(&rep, NULL, count_problem, &problems), AR_EMISUSE);
    ar_store_close(store);
}

static void test_two_memory_stores_are_independent(void **state)
{
    (void)state;
    ar_store *a = open_ok(":memory:", NULL);
    ar_store *b = open_ok(":memory:", NULL);
    ar_run *run = test_begin(a, "only-in-a");
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, a), AR_OK);
    assert_int_equal(info.runs, 1);
    assert_int_equal(ar_store_info_get(&info, b), AR_OK);
    assert_int_equal(info.runs, 0);
    ar_run_close(run);
    ar_store_close(a);
    ar_store_close(b);
}

static void test_new_file_is_created_with_mode_0600(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "new.db");
    mode_t old = umask(0);
    ar_store *store = NULL;
    int rc = ar_store_open(&store, path, NULL);
    umask(old);
    assert_int_equal(rc, AR_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_mode & 07777, 0600);
    ar_store_close(store);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    free(path);
    tmpdir_remove(dir);
}

static void test_reopened_file_keeps_runs_and_steps(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    char *path = test_location(&opts);
    ar_store *store = open_ok(path, &opts);
    ar_run *run = test_begin(store, "keeper");
    assert_int_equal(step_ok(run, "{\"n\":1}"), 1);
    assert_int_equal(step_ok(run, "[2]"), 2);
    char id[64];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    assert_int_equal(ar_run_complete(NULL, run, "\"done\"", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(run);
    ar_store_close(store);

    store = open_ok(path, &opts);
    ar_record *rec = NULL;
    assert_int_equal(ar_store_get(&rec, store, id, 1), AR_OK);
    assert_string_equal(rec->id, id);
    assert_string_equal(rec->agent, "keeper");
    assert_int_equal(rec->status, AR_COMPLETED);
    assert_string_equal(rec->output, "\"done\"");
    assert_int_equal(rec->iterations, 2);
    assert_int_equal(rec->n_steps, 2);
    assert_string_equal(rec->steps[0].content, "{\"n\":1}");
    assert_string_equal(rec->steps[1].content, "[2]");
    ar_record_free(rec);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.runs, 1);
    assert_int_equal(info.steps, 2);
    ar_store_close(store);
    free(path);
}

static void test_info_counts_rows_and_reports_the_real_file_sizes(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "info.db");
    ar_store *store = open_ok(path, NULL);
    ar_run *a = test_begin(store, "a");
    ar_run *b = test_begin(store, "b");
    for (int i = 0; i < 3; i++)
        step_ok(a, "\"x\"");
    step_ok(b, NULL);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_string_equal(info.path, path);
    assert_int_equal(info.schema_version, AR_SCHEMA_VERSION);
    assert_int_equal(info.runs, 2);
    assert_int_equal(info.steps, 4);
    assert_int_equal(info.events, 0);
    assert_int_equal(info.free_bytes, 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(info.file_bytes, sb.st_size);
    char *wal = tmpdir_path(dir, "info.db-wal");
    assert_int_equal(stat(wal, &sb), 0);
    assert_true(sb.st_size > 0);
    assert_int_equal(info.wal_bytes, sb.st_size);
    assert_int_equal(ar_store_info_get(NULL, store), AR_EMISUSE);
    assert_int_equal(ar_store_info_get(&info, NULL), AR_EMISUSE);
    ar_run_close(a);
    ar_run_close(b);
    ar_store_close(store);
    free(wal);
    free(path);
    tmpdir_remove(dir);
}

static void test_normal_durability_records_and_reopens_with_full(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    char *path = test_location(&opts);
    opts.durability = AR_DURABILITY_NORMAL;
    opts.busy_timeout_ms = 0;
    ar_store *store = open_ok(path, &opts);
    ar_run *run = test_begin(store, "n");
    step_ok(run, "1");
    ar_run_close(run);
    ar_store_close(store);
    ar_open_opts full = AR_OPEN_OPTS_INIT;
    test_same_store(&full, &opts);
    store = open_ok(path, &full);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.runs, 1);
    assert_int_equal(info.steps, 1);
    ar_store_close(store);
    free(path);
}

static void test_bad_durability_is_misuse_and_creates_no_file(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "bad.db");
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = 2;
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, path, &opts), AR_EMISUSE);
    assert_non_null(store);
    assert_int_equal(ar_store_errcode(store), AR_EMISUSE);
    assert_non_null(strstr(ar_store_errmsg(store), "durability"));
    ar_store_close(store);
    opts.durability = -1;
    assert_int_equal(ar_store_open(&store, path, &opts), AR_EMISUSE);
    ar_store_close(store);
    assert_false(exists(path));
    free(path);
    tmpdir_remove(dir);
}

static void test_negative_busy_timeout_is_misuse(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    char *location = test_location(&opts);
    opts.busy_timeout_ms = -1;
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, location, &opts), AR_EMISUSE);
    assert_non_null(store);
    assert_non_null(strstr(ar_store_errmsg(store), "busy_timeout"));
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_EMISUSE);
    ar_store_close(store);
    opts.busy_timeout_ms = 0;
    store = open_ok(location, &opts);
    ar_store_close(store);
    free(location);
}

static void *never_malloc(void *ud, size_t n) { (void)ud; (void)n; return NULL; }

static void test_incomplete_allocator_is_misuse(void **state)
{
    (void)state;
    ar_allocator partial = { never_malloc, NULL, NULL, NULL };
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    char *location = test_location(&opts);
    opts.allocator = &partial;
    ar_store *store = (ar_store *)&partial;
    assert_int_equal(ar_store_open(&store, location, &opts), AR_EMISUSE);
    assert_null(store);
    free(location);
}

static void test_missing_path_or_out_is_misuse(void **state)
{
    (void)state;
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, NULL, NULL), AR_EMISUSE);
    assert_non_null(store);
    assert_int_equal(ar_store_errcode(store), AR_EMISUSE);
    assert_non_null(strstr(ar_store_errmsg(store), "path"));
    ar_store_close(store);
    assert_int_equal(ar_store_open(NULL, ":memory:", NULL), AR_EMISUSE);
}

static void test_readonly_store_reads_but_refuses_writes_with_eperm(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    char *path = test_location(&opts);
    ar_store *store = open_ok(path, &opts);
    ar_run *run = test_begin(store, "writer");
    step_ok(run, "\"s\"");
    char id[64];
    snprintf(id, sizeof id, "%s", ar_run_id(run));
    ar_run_close(run);
    ar_store_close(store);

    opts.readonly = 1;
    store = open_ok(path, &opts);
    ar_record *rec = NULL;
    assert_int_equal(ar_store_get(&rec, store, id, 1), AR_OK);
    assert_string_equal(rec->agent, "writer");
    assert_int_equal(rec->n_steps, 1);
    ar_record_free(rec);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "a";
    spec.goal = "g";
    run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_EPERM);
    assert_null(run);
    assert_int_equal(ar_store_errcode(store), AR_EPERM);
    int64_t n = -1;
    assert_int_equal(ar_store_forget_user(&n, store, "u"), AR_EPERM);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.runs, 1);
    ar_store_close(store);
    free(path);
}

static void test_readonly_open_of_a_missing_file_fails_and_creates_nothing(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "missing.db");
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.readonly = 1;
    ar_store *store = NULL;
    int rc = ar_store_open(&store, path, &opts);
    assert_true(rc == AR_EIO || rc == AR_EPERM);
    assert_int_equal(ar_store_errcode(store), rc);
    assert_non_null(strstr(ar_store_errmsg(store), path));
    ar_store_close(store);
    assert_false(exists(path));
    free(path);
    tmpdir_remove(dir);
}

static void test_a_directory_is_refused(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    ar_store *store = NULL;
    int rc = ar_store_open(&store, dir, NULL);
    assert_true(rc == AR_EIO || rc == AR_EPERM);
    assert_int_equal(ar_store_errcode(store), rc);
    assert_non_null(strstr(ar_store_errmsg(store), "directory"));
    ar_store_close(store);
    tmpdir_remove(dir);
}

static void test_a_missing_directory_is_refused(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "no/such/dir/x.db");
    ar_store *store = NULL;
    int rc = ar_store_open(&store, path, NULL);
    assert_true(rc == AR_EIO || rc == AR_EPERM);
    ar_store_close(store);
    free(path);
    tmpdir_remove(dir);
}

/* ---- locations are file names, never SQLite URIs ------------------------ */

/* Each entry of `dir` starts with one of names[0..n) (the file or its -wal,
 * -shm): nothing else was created. */
static void only_these_files(const char *dir, const char *const *names, size_t n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int known = 0;
        for (size_t i = 0; i < n && !known; i++) {
            size_t len = strlen(names[i]);
            known = strncmp(de->d_name, names[i], len) == 0 &&
                    (de->d_name[len] == '\0' || strcmp(de->d_name + len, "-wal") == 0 ||
                     strcmp(de->d_name + len, "-shm") == 0);
        }
        if (!known) {
            print_error("%s holds a stray file \"%s\"\n", dir, de->d_name);
            fail();
        }
    }
    closedir(d);
}

/* Names relative to the working directory that SQLite would read as URIs
 * ("file:..."), or as its in-memory database, open stores of those very
 * names: a second open finds the runs of the first, both read-write and
 * read-only, and no other file appears. */
/* Runs a test in a fresh temporary directory as the working directory;
 * teardown goes back and removes it, also when the test fails. */
typedef struct in_tmpdir {
    char cwd[4096];
    char *dir;
} in_tmpdir;

static int enter_tmpdir(void **state)
{
    in_tmpdir *t = calloc(1, sizeof *t);
    if (!t || !getcwd(t->cwd, sizeof t->cwd))
        return -1;
    t->dir = tmpdir_make();
    *state = t;
    return chdir(t->dir);
}

static int leave_tmpdir(void **state)
{
    in_tmpdir *t = *state;
    int rc = chdir(t->cwd);
    tmpdir_remove(t->dir);
    free(t);
    return rc;
}

static void test_names_that_look_like_sqlite_uris_are_plain_file_names(void **state)
{
    (void)state;
    static const char *const names[] = {
        "file:uri.db?mode=ro", "file::memory:?cache=shared", "file:x.db?vfs=none&mode=memory",
        "file:", "file:a%20b.db", "sub/file:y.db?mode=ro",
    };
    size_t n = sizeof names / sizeof names[0];
    assert_int_equal(mkdir("sub", 0700), 0);
    for (size_t i = 0; i < n; i++) {
        ar_store *store = open_ok(names[i], NULL);
        ar_run *run = test_begin(store, "a");
        step_ok(run, "\"x\"");
        assert_int_equal(ar_run_complete(NULL, run, NULL, 0), AR_OK);
        ar_run_close(run);
        ar_store_info info;
        assert_int_equal(ar_store_info_get(&info, store), AR_OK);
        assert_string_equal(info.path, names[i]);
        assert_true(info.file_bytes > 0);
        ar_store_close(store);
        struct stat sb;
        assert_int_equal(stat(names[i], &sb), 0);
        assert_true(sb.st_size > 0);
        ar_open_opts ro = AR_OPEN_OPTS_INIT;
        ro.readonly = 1;
        for (int k = 0; k < 2; k++) {
            store = open_ok(names[i], k ? &ro : NULL);
            int64_t runs = 0;
            ar_run_query q = AR_RUN_QUERY_INIT;
            assert_int_equal(ar_runs_count(&runs, store, &q), AR_OK);
            assert_int_equal(runs, 1);
            ar_store_close(store);
        }
    }
    /* read-only names that do not exist: refused, and nothing is created */
    ar_open_opts ro = AR_OPEN_OPTS_INIT;
    ro.readonly = 1;
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, "file:missing.db?mode=rwc", &ro), AR_EIO);
    ar_store_close(store);
    assert_false(exists("file:missing.db?mode=rwc"));
    assert_false(exists("missing.db"));
    static const char *const top[] = { "file:uri.db?mode=ro", "file::memory:?cache=shared",
                                       "file:x.db?vfs=none&mode=memory", "file:", "file:a%20b.db", "sub" };
    only_these_files(".", top, sizeof top / sizeof top[0]);
    static const char *const in_sub[] = { "file:y.db?mode=ro" };
    only_these_files("sub", in_sub, 1);
}

/* ---- files that are not our stores -------------------------------------- */

static void test_random_bytes_are_refused_as_corrupt_and_left_unchanged(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "noise.bin");
    unsigned char noise[8192];
    uint64_t x = 0x243F6A8885A308D3ULL;
    for (size_t i = 0; i < sizeof noise; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise[i] = (unsigned char)x;
    }
    spit(path, noise, sizeof noise);
    expect_refused_unchanged(path, AR_ECORRUPT, "not an agentrun store");
    free(path);
    tmpdir_remove(dir);
}

static void test_a_text_file_is_refused_as_corrupt_and_left_unchanged(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "notes.txt");
    const char text[] = "these are my notes, not a database\n";
    spit(path, text, sizeof text - 1);
    expect_refused_unchanged(path, AR_ECORRUPT, "not an agentrun store");
    free(path);
    tmpdir_remove(dir);
}

static void test_another_applications_database_is_refused_and_left_unchanged(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "other.db");
    sql_on_file(path, "CREATE TABLE contacts(name TEXT, phone TEXT);"
                      "INSERT INTO contacts VALUES('ada', '555-0100');");
    expect_refused_unchanged(path, AR_ECORRUPT, "another application");
    /* still the other program's data */
    assert_int_equal(pragma_on_file(path, "SELECT count(*) FROM contacts"), 1);
    free(path);
    tmpdir_remove(dir);
}

static void test_a_foreign_application_id_is_refused_even_without_tables(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "foreign.db");
    sql_on_file(path, "PRAGMA application_id = 1234; PRAGMA user_version = 7;");
    expect_refused_unchanged(path, AR_ECORRUPT, "another application");
    free(path);
    tmpdir_remove(dir);
}

static void test_a_newer_schema_is_refused_with_eversion(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "future.db");
    ar_store *store = open_ok(path, NULL);
    ar_store_close(store);
    int64_t app_id = pragma_on_file(path, "PRAGMA application_id");
    assert_true(app_id != 0);
    assert_int_equal(pragma_on_file(path, "PRAGMA user_version"), AR_SCHEMA_VERSION);

    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", AR_SCHEMA_VERSION + 1);
    sql_on_file(path, sql);
    expect_refused_unchanged(path, AR_EVERSION, "newer");

    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.readonly = 1;
    assert_int_equal(ar_store_open(&store, path, &opts), AR_EVERSION);
    assert_non_null(strstr(ar_store_errmsg(store), "newer"));
    ar_store_close(store);
    assert_int_equal(pragma_on_file(path, "PRAGMA user_version"), AR_SCHEMA_VERSION + 1);
    assert_int_equal(pragma_on_file(path, "PRAGMA application_id"), app_id);
    free(path);
    tmpdir_remove(dir);
}

static void test_our_application_id_with_a_newer_version_is_eversion(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *ours = tmpdir_path(dir, "ours.db");
    char *path = tmpdir_path(dir, "made-by-hand.db");
    ar_store *store = open_ok(ours, NULL);
    ar_store_close(store);
    int64_t app_id = pragma_on_file(ours, "PRAGMA application_id");
    char sql[160];
    snprintf(sql, sizeof sql, "PRAGMA application_id = %lld; PRAGMA user_version = %d;"
             "CREATE TABLE runs_v9(x);", (long long)app_id, AR_SCHEMA_VERSION + 8);
    sql_on_file(path, sql);
    expect_refused_unchanged(path, AR_EVERSION, "newer");
    free(ours);
    free(path);
    tmpdir_remove(dir);
}

static void test_an_empty_file_becomes_a_store(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "empty.db");
    spit(path, "", 0);
    ar_store *store = open_ok(path, NULL);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.schema_version, AR_SCHEMA_VERSION);
    ar_store_close(store);
    free(path);
    tmpdir_remove(dir);
}

/* ---- locking ------------------------------------------------------------ */

static void test_a_write_blocked_past_the_timeout_is_ebusy_and_not_sticky(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *path = tmpdir_path(dir, "busy.db");
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.busy_timeout_ms = 0;
    ar_store *store = open_ok(path, &opts);
    ar_run *run = test_begin(store, "a");

    sqlite3 *other = NULL;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    ar_counter extra[] = { { "cache_read_tokens", 4 } };
    ar_step step = AR_STEP_INIT;
    step.kind = "llm";
    step.usage.input_tokens = 5;
    step.usage.n_extra = 1;
    step.usage.extra = extra;
    int64_t seq = -1;
    assert_int_equal(ar_run_step(&seq, run, &step), AR_EBUSY);
    assert_int_equal(seq, 0);
    assert_non_null(strstr(ar_run_errmsg(run), "locked"));
    assert_int_equal(ar_run_iterations(run), 0);
    assert_int_equal(ar_run_usage(run)->input_tokens, 0);
    assert_int_equal(ar_run_usage(run)->n_extra, 0);
    ar_run *second = NULL;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "b";
    spec.goal = "g";
    assert_int_equal(ar_run_begin(&second, store, &spec), AR_EBUSY);
    assert_int_equal(ar_store_errcode(store), AR_EBUSY);
    assert_null(second);

    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(other), SQLITE_OK);

    /* the same step, retried, is the first step */
    assert_int_equal(ar_run_step(&seq, run, &step), AR_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(ar_run_usage(run)->input_tokens, 5);
    assert_int_equal(ar_run_usage(run)->n_extra, 1);
    assert_int_equal(ar_run_usage(run)->extra[0].value, 4);
    second = test_begin(store, "b");
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    assert_int_equal(info.runs, 2);
    assert_int_equal(info.steps, 1);
    ar_run_close(second);
    ar_run_close(run);
    ar_store_close(store);
    free(path);
    tmpdir_remove(dir);
}

/* ---- codes, messages, destructors --------------------------------------- */

static void test_every_code_has_its_name(void **state)
{
    (void)state;
    assert_string_equal(ar_code_name(AR_OK), "OK");
    assert_string_equal(ar_code_name(AR_EMISUSE), "EMISUSE");
    assert_string_equal(ar_code_name(AR_EJSON), "EJSON");
    assert_string_equal(ar_code_name(AR_EBUSY), "EBUSY");
    assert_string_equal(ar_code_name(AR_EIO), "EIO");
    assert_string_equal(ar_code_name(AR_EFULL), "EFULL");
    assert_string_equal(ar_code_name(AR_ECORRUPT), "ECORRUPT");
    assert_string_equal(ar_code_name(AR_ESTATE), "ESTATE");
    assert_string_equal(ar_code_name(AR_ENOTFOUND), "ENOTFOUND");
    assert_string_equal(ar_code_name(AR_EPERM), "EPERM");
    assert_string_equal(ar_code_name(AR_ENOMEM), "ENOMEM");
    assert_string_equal(ar_code_name(AR_EBUDGET), "EBUDGET");
    assert_string_equal(ar_code_name(AR_EVERSION), "EVERSION");
    assert_string_equal(ar_code_name(AR_ECALLBACK), "ECALLBACK");
    assert_string_equal(ar_code_name(AR_ECALLBACK + 1), "EUNKNOWN");
    assert_string_equal(ar_code_name(-1), "EUNKNOWN");
}

static void test_status_names_round_trip(void **state)
{
    (void)state;
    const char *names[] = { "running", "completed", "budget_exhausted", "failed", "interrupted", "waiting" };
    for (int i = 0; i < 6; i++) {
        assert_string_equal(ar_status_name((ar_status)i), names[i]);
        ar_status s = (ar_status)99;
        assert_int_equal(ar_status_parse(&s, names[i]), AR_OK);
        assert_int_equal(s, i);
    }
    assert_null(ar_status_name((ar_status)6));
    assert_null(ar_status_name((ar_status)-1));
    ar_status s = AR_FAILED;
    assert_int_equal(ar_status_parse(&s, "Running"), AR_EMISUSE);
    assert_int_equal(ar_status_parse(&s, ""), AR_EMISUSE);
    assert_int_equal(ar_status_parse(&s, NULL), AR_EMISUSE);
    assert_int_equal(s, AR_FAILED);
}

static void test_errmsg_keeps_the_last_failure_until_the_next(void **state)
{
    (void)state;
    ar_store *store = test_store_open(NULL);
    assert_int_equal(ar_store_errcode(store), AR_OK);
    assert_string_equal(ar_store_errmsg(store), "");

    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.goal = "g";
    ar_run *run = NULL;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_EMISUSE);
    assert_int_equal(ar_store_errcode(store), AR_EMISUSE);
    assert_string_equal(ar_store_errmsg(store), "agent is required");

    run = test_begin(store, "ok");
    assert_int_equal(ar_store_errcode(store), AR_EMISUSE);
    assert_string_equal(ar_store_errmsg(store), "agent is required");

    ar_record *rec = NULL;
    assert_int_equal(ar_store_get(&rec, store, "01ARZ3NDEKTSV4RRFFQ69G5FAV", 0), AR_ENOTFOUND);
    assert_int_equal(ar_store_errcode(store), AR_ENOTFOUND);
    assert_non_null(strstr(ar_store_errmsg(store), "01ARZ3NDEKTSV4RRFFQ69G5FAV"));

    assert_string_equal(ar_store_errmsg(NULL), "no store");
    assert_int_equal(ar_store_errcode(NULL), AR_EMISUSE);
    ar_run_close(run);
    ar_store_close(store);
}

static void test_destructors_accept_null(void **state)
{
    (void)state;
    ar_store_close(NULL);
    ar_run_close(NULL);
    ar_record_free(NULL);
    ar_records_free(NULL, 0);
    ar_records_free(NULL, 3);
    ar_free(NULL);
    ar_steps_close(NULL);
    assert_string_equal(ar_run_errmsg(NULL), "no run");
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_open_options_default_to_full_durability_5s_timeout_read_write),
    cmocka_unit_test(test_reopened_file_keeps_runs_and_steps),
    cmocka_unit_test(test_normal_durability_records_and_reopens_with_full),
    cmocka_unit_test(test_negative_busy_timeout_is_misuse),
    cmocka_unit_test(test_incomplete_allocator_is_misuse),
    cmocka_unit_test(test_missing_path_or_out_is_misuse),
    cmocka_unit_test(test_readonly_store_reads_but_refuses_writes_with_eperm),
    cmocka_unit_test(test_every_code_has_its_name),
    cmocka_unit_test(test_status_names_round_trip),
    cmocka_unit_test(test_errmsg_keeps_the_last_failure_until_the_next),
    cmocka_unit_test(test_destructors_accept_null),
};

/* Tests about SQLite files and SQLite itself (groups.def: SQLite only). */
static const struct CMUnitTest file_tests[] = {
    cmocka_unit_test(test_memory_store_opens_with_schema_and_no_rows),
    cmocka_unit_test(test_two_memory_stores_are_independent),
    cmocka_unit_test(test_new_file_is_created_with_mode_0600),
    cmocka_unit_test_setup_teardown(test_names_that_look_like_sqlite_uris_are_plain_file_names,
                                    enter_tmpdir, leave_tmpdir),
    cmocka_unit_test(test_info_counts_rows_and_reports_the_real_file_sizes),
    cmocka_unit_test(test_check_reads_every_row_of_a_sound_store),
    cmocka_unit_test(test_bad_durability_is_misuse_and_creates_no_file),
    cmocka_unit_test(test_readonly_open_of_a_missing_file_fails_and_creates_nothing),
    cmocka_unit_test(test_a_directory_is_refused),
    cmocka_unit_test(test_a_missing_directory_is_refused),
    cmocka_unit_test(test_random_bytes_are_refused_as_corrupt_and_left_unchanged),
    cmocka_unit_test(test_a_text_file_is_refused_as_corrupt_and_left_unchanged),
    cmocka_unit_test(test_another_applications_database_is_refused_and_left_unchanged),
    cmocka_unit_test(test_a_foreign_application_id_is_refused_even_without_tables),
    cmocka_unit_test(test_a_newer_schema_is_refused_with_eversion),
    cmocka_unit_test(test_our_application_id_with_a_newer_version_is_eversion),
    cmocka_unit_test(test_an_empty_file_becomes_a_store),
    cmocka_unit_test(test_a_write_blocked_past_the_timeout_is_ebusy_and_not_sticky),
};

TEST_GROUP(store_group, "store", tests);
TEST_GROUP(store_file_group, "store_file", file_tests);
