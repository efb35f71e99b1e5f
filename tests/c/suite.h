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

/* Each tests/c/test_*.c defines one `const test_group <name>_group` with
 * TEST_GROUP and adds a line X(<name>_group) to tests/c/groups.def. */
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

/* An in-memory store with durability normal, so long loops stay quick. */
ar_store *test_mem_store(void);

/* The run `id` read back (fails the test unless AR_OK); ar_record_free it. */
ar_record *test_get(ar_store *store, const char *id, int with_steps);
/* The number of steps the store holds, from ar_store_info_get. */
int64_t test_stored_steps(ar_store *store);

/* The whole file at path (malloc'ed, NUL-terminated); *len gets its size. */
char *test_slurp(const char *path, size_t *len);

/* A fresh temporary directory for a test's files (removed by tmpdir_remove). */
char *tmpdir_make(void);
void tmpdir_remove(char *dir);
/* dir + "/" + name, malloc'ed. */
char *tmpdir_path(const char *dir, const char *name);

#endif
