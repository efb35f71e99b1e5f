/* main.c -- the C test runner: runs every group, ends on "N passed, N failed". */
#include "suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* groups.def has one X(name) line per test group. */
#define X(g) extern const test_group g;
#include "groups.def"
#undef X
#define X(g) &g,
static const test_group *const groups[] = {
#include "groups.def"
};
#undef X

char *tmpdir_make(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/agentrun-test-XXXXXX", base && *base ? base : "/tmp");
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    return strdup(dir);
}

void tmpdir_remove(char *dir)
{
    if (!dir)
        return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
}

char *tmpdir_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

ar_store *test_mem_store(void)
{
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, ":memory:", &opts), AR_OK);
    return store;
}

ar_record *test_get(ar_store *store, const char *id, int with_steps)
{
    ar_record *rec = NULL;
    int rc = ar_store_get(&rec, store, id, with_steps);
    if (rc != AR_OK) {
        print_error("get %s: %s: %s\n", id, ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    return rec;
}

int64_t test_stored_steps(ar_store *store)
{
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, store), AR_OK);
    return info.steps;
}

char *test_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv)
{
    /* An optional argument selects groups whose name contains it. */
    const char *only = argc > 1 ? argv[1] : NULL;
    size_t total = 0, failed = 0;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        const test_group *g = groups[i];
        if (only && !strstr(g->name, only))
            continue;
        int f = _cmocka_run_group_tests(g->name, g->tests, g->n, NULL, NULL);
        total += g->n;
        failed += (size_t)f;
    }
    printf("%zu passed, %zu failed\n", total - failed, failed);
    return failed ? 1 : 0;
}
