/* baseline.c -- the plain-SQLite baseline the benchmark measures agentrun against. */
#include "bench.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <time.h>

/* The same shape of data agentrun keeps, without its extras: one secondary
 * index on runs (the user listing a product needs) and the (run, seq) index
 * that keeps a transcript in order. */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS runs("
    " id INTEGER PRIMARY KEY, agent TEXT NOT NULL, goal TEXT NOT NULL, user TEXT,"
    " status TEXT NOT NULL, output TEXT,"
    " iterations INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0,"
    " output_tokens INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, finished_at INTEGER);"
    "CREATE INDEX IF NOT EXISTS runs_by_user ON runs(user, created_at);"
    "CREATE TABLE IF NOT EXISTS steps("
    " id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " kind TEXT NOT NULL, name TEXT, content TEXT,"
    " input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost REAL NOT NULL,"
    " duration_ms INTEGER NOT NULL, at INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS steps_by_run ON steps(run_id, seq);";

enum { ST_BEGIN, ST_COMMIT, ST_RUN_INSERT, ST_STEP_INSERT, ST_TOTALS, ST_FINISH, ST_READ, ST_READ_ROWS, ST_COUNT };

static const char *const statements[ST_COUNT] = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "INSERT INTO runs(agent, goal, user, status, created_at, updated_at) VALUES(?, ?, ?, 'running', ?, ?)",
    "INSERT INTO steps(run_id, seq, kind, name, content, input_tokens, output_tokens, cost, duration_ms, at)"
    " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "UPDATE runs SET iterations = iterations + 1, input_tokens = input_tokens + ?,"
    " output_tokens = output_tokens + ?, cost = cost + ?, updated_at = ? WHERE id = ?",
    "UPDATE runs SET status = 'completed', output = ?, finished_at = ?, updated_at = ? WHERE id = ?",
    "SELECT content FROM steps WHERE run_id = ? ORDER BY seq",
    "SELECT seq, kind, name, content, input_tokens, output_tokens, cost, duration_ms, at"
    " FROM steps WHERE run_id = ? ORDER BY seq",
};

struct baseline {
    sqlite3 *conn;
    sqlite3_stmt *st[ST_COUNT];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static _Noreturn void fail(baseline *b, const char *what)
{
    bench_die("baseline: %s: %s", what, b->conn ? sqlite3_errmsg(b->conn) : "cannot open");
}

static void exec(baseline *b, const char *sql)
{
    if (sqlite3_exec(b->conn, sql, NULL, NULL, NULL) != SQLITE_OK)
        fail(b, sql);
}

/* Steps a statement that returns no rows and resets it; dies on an error. */
static void run_done(baseline *b, int slot, const char *what)
{
    sqlite3_stmt *st = b->st[slot];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        fail(b, what);
}

/* Opens the file with the settings agentrun gives its own files (page size
 * before WAL, since WAL fixes it) and prepares every statement once. */
baseline *baseline_open(const char *path, int durability)
{
    baseline *b = bench_alloc(sizeof *b);
    *b = (baseline){ 0 };
    if (sqlite3_open_v2(path, &b->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        fail(b, path);
    sqlite3_busy_timeout(b->conn, 5000);
    exec(b, "PRAGMA page_size = 8192");
    exec(b, "PRAGMA journal_mode = WAL");
    exec(b, durability == AR_DURABILITY_NORMAL ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL");
    exec(b, schema);
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3(b->conn, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &b->st[i], NULL) != SQLITE_OK)
            fail(b, statements[i]);
    return b;
}

void baseline_close(baseline *b)
{
    if (!b)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(b->st[i]);
    if (sqlite3_close(b->conn) != SQLITE_OK)
        fail(b, "closing");
    free(b);
}

int64_t baseline_begin(baseline *b, const char *agent, const char *goal, const char *user)
{
    sqlite3_stmt *st = b->st[ST_RUN_INSERT];
    int64_t now = now_ms();
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, goal, -1, SQLITE_STATIC);
    if (user)
        sqlite3_bind_text(st, 3, user, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, now);
    run_done(b, ST_RUN_INSERT, "beginning a run");
    return sqlite3_last_insert_rowid(b->conn);
}

void baseline_step(baseline *b, int64_t run, int64_t seq, const bench_step *s)
{
    int64_t now = now_ms();
    run_done(b, ST_BEGIN, "BEGIN");
    sqlite3_stmt *st = b->st[ST_STEP_INSERT];
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_text(st, 3, s->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, s->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, s->content, (int)s->content_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, s->input_tokens);
    sqlite3_bind_int64(st, 7, s->output_tokens);
    sqlite3_bind_double(st, 8, s->cost);
    sqlite3_bind_int64(st, 9, s->duration_ms);
    sqlite3_bind_int64(st, 10, now);
    run_done(b, ST_STEP_INSERT, "inserting a step");
    st = b->st[ST_TOTALS];
    sqlite3_bind_int64(st, 1, s->input_tokens);
    sqlite3_bind_int64(st, 2, s->output_tokens);
    sqlite3_bind_double(st, 3, s->cost);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, run);
    run_done(b, ST_TOTALS, "updating the run's totals");
    run_done(b, ST_COMMIT, "COMMIT");
}

void baseline_complete(baseline *b, int64_t run, const char *output)
{
    sqlite3_stmt *st = b->st[ST_FINISH];
    int64_t now = now_ms();
    sqlite3_bind_text(st, 1, output, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, run);
    run_done(b, ST_FINISH, "completing a run");
}

int64_t baseline_read(baseline *b, int64_t run, int64_t *rows)
{
    sqlite3_stmt *st = b->st[ST_READ];
    sqlite3_bind_int64(st, 1, run);
    int64_t bytes = 0, n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *text = sqlite3_column_text(st, 0);
        int len = sqlite3_column_bytes(st, 0);
        /* the first byte is read so the value is really fetched, as a caller would */
        if (text && len > 0 && text[0] == '{')
            bytes += len;
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        fail(b, "reading steps");
    *rows = n;
    return bytes;
}

int64_t baseline_read_rows(baseline *b, int64_t run, int64_t *rows)
{
    sqlite3_stmt *st = b->st[ST_READ_ROWS];
    sqlite3_bind_int64(st, 1, run);
    int64_t bytes = 0, n = 0, sum = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sum += sqlite3_column_int64(st, 0);
        const unsigned char *kind = sqlite3_column_text(st, 1), *name = sqlite3_column_text(st, 2);
        const unsigned char *text = sqlite3_column_text(st, 3);
        int len = sqlite3_column_bytes(st, 3);
        sum += sqlite3_column_int64(st, 4) + sqlite3_column_int64(st, 5) + (int64_t)sqlite3_column_double(st, 6) +
               sqlite3_column_int64(st, 7) + sqlite3_column_int64(st, 8);
        if (kind && name && text && len > 0 && text[0] == '{')
            bytes += len;
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        fail(b, "reading steps");
    /* keeps the integer columns' reads from being optimised away */
    if (sum == INT64_MIN)
        bytes = -1;
    *rows = n;
    return bytes;
}
