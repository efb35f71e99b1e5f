/* bench_export.c -- the JSON Lines export against a raw read of the same rows with plain SQLite. */
#include "bench.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT_STEPS 10
#define REPS 3

static int count_bytes(void *ud, const char *data, size_t len)
{
    (void)data;
    *(int64_t *)ud += (int64_t)len;
    return 0;
}

/* Every column of every run and of its steps, in the export's order (runs by
 * key, each run's steps by seq), each value fetched as the export needs it;
 * returns the bytes of the values read. */
static int64_t raw_read(const char *path, int64_t *runs_out)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        bench_die("raw read: cannot open %s", path);
    sqlite3_stmt *runs = NULL, *steps = NULL;
    if (sqlite3_prepare_v2(db, "SELECT * FROM runs ORDER BY n", -1, &runs, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT * FROM steps WHERE run = ? ORDER BY seq", -1, &steps, NULL) != SQLITE_OK)
        bench_die("raw read: %s", sqlite3_errmsg(db));
    int64_t bytes = 0, n = 0;
    while (sqlite3_step(runs) == SQLITE_ROW) {
        for (int c = 0, k = sqlite3_column_count(runs); c < k; c++) {
            if (sqlite3_column_type(runs, c) == SQLITE_TEXT) {
                sqlite3_column_text(runs, c);
                bytes += sqlite3_column_bytes(runs, c);
            } else {
                bytes += 8;
                (void)sqlite3_column_int64(runs, c);
            }
        }
        sqlite3_bind_int64(steps, 1, sqlite3_column_int64(runs, 0));
        while (sqlite3_step(steps) == SQLITE_ROW) {
            for (int c = 0, k = sqlite3_column_count(steps); c < k; c++) {
                if (sqlite3_column_type(steps, c) == SQLITE_TEXT) {
                    sqlite3_column_text(steps, c);
                    bytes += sqlite3_column_bytes(steps, c);
                } else {
                    bytes += 8;
                    (void)sqlite3_column_int64(steps, c);
                }
            }
        }
        sqlite3_reset(steps);
        n++;
    }
    sqlite3_finalize(runs);
    sqlite3_finalize(steps);
    sqlite3_close(db);
    *runs_out = n;
    return bytes;
}

void bench_export(const bench_env *env)
{
    int64_t n = bench_scaled(env, 10000, 20);
    char *path = bench_path(env, "export.agentrun.db");
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, path, &opts), store, "opening the export store");
    static char bufs[EXPORT_STEPS][BENCH_PAYLOAD_MAX];
    bench_step bs[EXPORT_STEPS];
    ar_step steps[EXPORT_STEPS];
    for (int64_t r = 0; r < n; r++) {
        for (int k = 0; k < EXPORT_STEPS; k++) {
            bench_step_make(&bs[k], r * EXPORT_STEPS + k + 1, bufs[k], sizeof bufs[k]);
            bench_step_to_ar(&steps[k], &bs[k]);
        }
        char goal[64];
        snprintf(goal, sizeof goal, "Answer support ticket %" PRId64, r);
        bench_write_run(store, goal, steps, EXPORT_STEPS);
    }
    ar_store_close(store);
    store = NULL;
    bench_check(ar_store_open(&store, path, &opts), store, "opening the export store");

    double ar_t[REPS], raw_t[REPS];
    int64_t out_bytes = 0, raw_bytes = 0, raw_runs = 0;
    for (int r = 0; r < REPS; r++) {
        for (int k = 0; k < 2; k++) {
            int side = (r + k) % 2;
            int64_t t0 = bench_now_ns();
            if (side == 0) {
                ar_export_report rep;
                out_bytes = 0;
                bench_check(ar_store_export(&rep, store, NULL, count_bytes, &out_bytes), store, "exporting");
                if (rep.runs != n)
                    bench_die("the export wrote %" PRId64 " runs of %" PRId64, rep.runs, n);
                ar_t[r] = bench_us(t0, bench_now_ns());
            } else {
                raw_bytes = raw_read(path, &raw_runs);
                if (raw_runs != n)
                    bench_die("the raw read found %" PRId64 " runs of %" PRId64, raw_runs, n);
                raw_t[r] = bench_us(t0, bench_now_ns());
            }
        }
    }
    ar_store_close(store);
    double ar_med = bench_median(ar_t, REPS), raw_med = bench_median(raw_t, REPS);
    double ar_mbs = (double)out_bytes / ar_med, raw_mbs = (double)raw_bytes / raw_med; /* bytes/µs = MB/s */
    double ratio = raw_med / ar_med;
    char n1[32];
    bench_goal("export", ratio >= 0.5, ">= 0.5",
               "agentrun %.1f MB/s (%.1f MB of JSON Lines in %.0f ms)  raw read of the same rows %.1f MB/s "
               "(%.0f ms)  speed ratio %.2f  (%s runs of %d steps, median of %d)",
               ar_mbs, (double)out_bytes / 1e6, ar_med / 1000, raw_mbs, raw_med / 1000, ratio,
               bench_num(n1, sizeof n1, (double)n), EXPORT_STEPS, REPS);
    bench_remove_store(path);
    free(path);
}
