/* bench.h -- what the benchmark's case files share: the environment, timing, reporting, files, payloads, the baseline. */
#ifndef AR_BENCH_H
#define AR_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "agentrun.h"

/*
 * Adding a case
 * -------------
 * Write `void bench_<name>(const bench_env *env)` in a new .c file in
 * tests/bench/ and add one line X(<name>) to tests/bench/cases.def. `bench <text>`
 * runs only the cases whose name contains <text>. A case prints its figures
 * with bench_goal (one line per figure, PASS/MISS against its goal) or
 * bench_note (no goal), scales its counts with bench_scaled, keeps its files
 * under env->dir (bench_path) and removes them when done (bench_remove_store).
 * A real error (not a missed goal) ends the program with bench_die, which
 * exits non-zero; the temp dir is removed on every exit.
 */

typedef struct bench_env {
    const char *dir;   /* this invocation's temp dir, on disk; removed at exit */
    double scale;      /* AR_BENCH_SCALE: counts are multiplied by it (1.0 = the goals' sizes) */
} bench_env;

/* The cases, declared from cases.def. */
#define X(name) void bench_##name(const bench_env *env);
#include "cases.def"
#undef X

/* `n` times the scale, rounded, and at least `min`. */
int64_t bench_scaled(const bench_env *env, int64_t n, int64_t min);

/* ---- timing and statistics ---------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);
/* Microseconds between two bench_now_ns readings. */
double bench_us(int64_t from_ns, int64_t to_ns);

double bench_mean(const double *v, size_t n);
/* The p-th percentile (0..100, nearest rank) of v; sorts v in place. 0 when n is 0. */
double bench_percentile(double *v, size_t n, double p);
/* The median of v; sorts v in place. */
double bench_median(double *v, size_t n);

/* ---- reporting ---------------------------------------------------------- */

/* Prints one figure: "<name> <body> (goal <goal>) PASS|MISS" and counts it
 * for the summary. `goal` is the goal's text ("<= 1.25"); `pass` is whether
 * the figure meets it. */
void bench_goal(const char *name, int pass, const char *goal, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Prints a figure without a goal: "<name> <body>". */
void bench_note(const char *name, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* `v` rounded to an integer with thousands separators ("9,812"), in buf. */
const char *bench_num(char *buf, size_t cap, double v);

/* ---- failures ----------------------------------------------------------- */

/* Prints "bench: <message>" on stderr and exits with status 1. */
_Noreturn void bench_die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Dies naming `what` with the code and the store's message unless rc is AR_OK. */
void bench_check(int rc, const ar_store *store, const char *what);
/* The same for a call made on a run handle. */
void bench_check_run(int rc, const ar_run *run, const char *what);
/* malloc that dies when memory runs out. */
void *bench_alloc(size_t n);

/* ---- files -------------------------------------------------------------- */

/* env->dir + "/" + name (malloc'ed; free it). */
char *bench_path(const bench_env *env, const char *name);
/* Removes a database file and its -wal and -shm files (missing ones are fine). */
void bench_remove_store(const char *path);
/* The size of a closed database file after its WAL is checkpointed into it
 * (PRAGMA wal_checkpoint(TRUNCATE)), plus whatever WAL remains. */
int64_t bench_store_bytes(const char *path);

/* ---- payloads ----------------------------------------------------------- */

#define BENCH_PAYLOAD_MAX 2048

/* One step as both sides record it (the baseline and agentrun get the same bytes). */
typedef struct bench_step {
    const char *kind, *name;
    const char *content; size_t content_len;
    int64_t input_tokens, output_tokens;
    double cost;
    int64_t duration_ms;
} bench_step;

/* Writes step n's payload into buf (at least BENCH_PAYLOAD_MAX bytes): an
 * assistant message JSON with a tool call and usage, about 1 KB, varying in
 * text and length with n. Returns its length (NUL-terminated as well). */
size_t bench_payload(char *buf, size_t cap, int64_t n);
/* Fills *out for step n: an "llm" step whose content is bench_payload(n) in buf. */
void bench_step_make(bench_step *out, int64_t n, char *buf, size_t cap);
/* Writes a completed run of agent "bench-agent" with these steps
 * (ar_store_write); dies on an error. */
void bench_write_run(ar_store *store, const char *goal, const ar_step *steps, size_t n);
/* The same step as agentrun takes it (pointers borrowed from s). */
void bench_step_to_ar(ar_step *out, const bench_step *s);

/* ---- shared fixtures ---------------------------------------------------- */

/* A store of 100,000 finished runs (times the scale) across 1,000 users
 * ("user-0000" ...; 100 runs each, 2 small steps each), created_at one second
 * apart. Built on the first call (durability normal) and reused by later
 * calls in the same invocation; *n_runs and *n_users (may be NULL) receive its
 * size, *build_s (may be NULL) the seconds the build took (0 when reused).
 * The path is owned by the bench; treat the file as read-only (copy it to
 * change it). */
const char *bench_fixture_runs(const bench_env *env, int64_t *n_runs, int64_t *n_users, double *build_s);

/* ---- the plain-SQLite baseline (baseline.c) ----------------------------- */

/* What a careful engineer would write with plain SQLite for the same job:
 * WAL, agentrun's page size and synchronous setting, runs and steps tables,
 * cached prepared statements, one transaction per step that inserts the step
 * and updates the run's totals. Every function dies (bench_die) on an error. */
typedef struct baseline baseline;

/* Opens (creating) the baseline database at path with AR_DURABILITY_FULL or _NORMAL. */
baseline *baseline_open(const char *path, int durability);
void baseline_close(baseline *b);
/* Inserts a running run (durable when it returns); returns its id. */
int64_t baseline_begin(baseline *b, const char *agent, const char *goal, const char *user);
/* Appends step `seq` of `run` and adds its usage to the run's totals, in one transaction. */
void baseline_step(baseline *b, int64_t run, int64_t seq, const bench_step *s);
/* Marks the run completed with output (JSON text). */
void baseline_complete(baseline *b, int64_t run, const char *output);
/* Reads the run's step contents in seq order (SELECT content ... ORDER BY seq,
 * each value fetched with sqlite3_column_text); returns the total content
 * bytes and sets *rows to the number of steps. */
int64_t baseline_read(baseline *b, int64_t run, int64_t *rows);
/* The same reading every column of each step (seq, kind, name, content,
 * usage, cost, duration, at) as ar_steps_next returns them, without copying. */
int64_t baseline_read_rows(baseline *b, int64_t run, int64_t *rows);

#endif
