/* suite.h -- how C test files register their cmocka groups with the runner. */
#ifndef AR_TEST_SUITE_H
#define AR_TEST_SUITE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agentrun.h"

typedef struct test_group {
    const char *name;
    const struct CMUnitTest *tests;
    size_t n;
} test_group;

/* Each tests/c/test_*.c defines its `const test_group <name>_group` (and
 * `<name>_file_group` for its tests that are about SQLite files) with
 * TEST_GROUP and adds a line X(<name>_group, WHERE) to tests/c/groups.def,
 * which says on which backends each group runs. */
#define TEST_GROUP(var, label, array) \
    const test_group var = { label, array, sizeof(array) / sizeof((array)[0]) }

/* Exact floating-point equality that prints both values when it fails. */
#define assert_exact(a, b) do { \
        double a_ = (a), b_ = (b); \
        if (a_ != b_) { \
            print_error("%s = %.17g, want %.17g\n", #a, a_, b_); \
            fail(); \
        } \
    } while (0)

/* The backend the runner is running the groups on: SQLite always, then
 * PostgreSQL when AGENTRUN_TEST_PG names a server (a libpq URL). */
typedef enum test_backend { TEST_SQLITE, TEST_POSTGRESQL } test_backend;
test_backend test_backend_current(void);
const char *test_backend_name(void);
/* The server the PostgreSQL tests use (AGENTRUN_TEST_PG), or NULL. */
const char *test_pg_url(void);

/* A location for a new, empty store on the backend under test (malloc'ed):
 * a file in a fresh temporary directory on SQLite; on PostgreSQL the
 * server's URL, and opts->schema is set to a fresh schema name, so every
 * open of that store must use opts (or options made from them with
 * test_same_store). The directory or schema goes when the group ends.
 * opts must be initialised (AR_OPEN_OPTS_INIT). */
char *test_location(ar_open_opts *opts);
/* Makes `to` open the same store as `from` (the schema, on PostgreSQL),
 * leaving its other options. */
void test_same_store(ar_open_opts *to, const ar_open_opts *from);
/* A new, empty store on the backend under test opened with opts (NULL: the
 * defaults); fails the test unless AR_OK. */
ar_store *test_store_open(const ar_open_opts *opts);
/* A new, empty store with durability normal, so long loops stay quick. */
ar_store *test_store_new(void);

/* The run `id` read back (fails the test unless AR_OK); ar_record_free it. */
ar_record *test_get(ar_store *store, const char *id, int with_steps);
/* The number of steps the store holds, from ar_store_info_get. */
int64_t test_stored_steps(ar_store *store);
/* Begins a run of `agent` (goal "g"); fails the test, naming the store's
 * error, when it cannot. */
ar_run *test_begin(ar_store *store, const char *agent);

/* The whole file at path (malloc'ed, NUL-terminated); *len gets its size. */
char *test_slurp(const char *path, size_t *len);

/* A fresh temporary directory for a test's files (removed by tmpdir_remove). */
char *tmpdir_make(void);
void tmpdir_remove(char *dir);
/* dir + "/" + name, malloc'ed. */
char *tmpdir_path(const char *dir, const char *name);

#endif
