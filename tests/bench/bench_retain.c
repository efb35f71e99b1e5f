/* bench_retain.c -- retention: events by age and by count against hand-written SQL, runs through a Lua rule. */
#include "bench.h"

#include <inttypes.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAY_MS INT64_C(86400000)
#define SPAN_MS (90 * DAY_MS)
#define AGE_LIMIT_S (30 * 86400.0)
/* No event is stamped in the GAP_MS after the 30-day line as it was when the
 * store was built, so the age cut deletes the same events until GAP_MS later. */
#define GAP_MS (6 * 3600 * INT64_C(1000))
#define KEEP_LAST 100
#define FILL_TXN 20000
#define REPS 2          /* measurements per side, in the order agentrun, baseline, baseline, agentrun */

/* The best single statements written by hand for the two jobs. The count cut
 * ranks each agent's events newest first over the (agent, at, id) index and
 * deletes by rowid in rowid order. */
static const char baseline_age_sql[] = "DELETE FROM events WHERE at < ?1";
static const char baseline_keep_sql[] =
    "DELETE FROM events WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER"
    " (PARTITION BY agent ORDER BY at DESC, id DESC) AS rk FROM events) WHERE rk > ?1)";

static const char prose[] =
    "The customer asked whether the order can still be changed before it ships; I checked the warehouse "
    "queue and the parcel is not packed yet, so the address can be updated. I will confirm the new address "
    "with them, update the order, and send the tracking link once the label is printed tomorrow morning.";

static const char *const types[] = { "user_message", "assistant_message", "tool_call", "tool_result" };

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Dies unless a SQLite call succeeded. */
static void sq_ok(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        bench_die("%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

static sqlite3 *sq_open(const char *path, const char *setup)
{
    sqlite3 *db = NULL;
    sq_ok(db, sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), path);
    if (setup)
        sq_ok(db, sqlite3_exec(db, setup, NULL, NULL, NULL), "setting up the connection");
    return db;
}

/* The first column of the first row of sql, an integer. */
static int64_t sq_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    sq_ok(db, sqlite3_prepare_v2(db, sql, -1, &st, NULL), sql);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        sq_ok(db, rc == SQLITE_DONE ? SQLITE_ERROR : rc, sql);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Copies a closed, checkpointed database file over dst (and drops dst's WAL). */
static void copy_store(const char *src, const char *dst)
{
    bench_remove_store(dst);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (!in || !out)
        bench_die("cannot copy %s to %s", src, dst);
    enum { CHUNK = 1 << 20 };
    char *buf = bench_alloc(CHUNK);
    size_t n;
    while ((n = fread(buf, 1, CHUNK, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            bench_die("cannot write %s", dst);
    if (ferror(in) || fclose(out) != 0)
        bench_die("cannot copy %s to %s", src, dst);
    fclose(in);
    free(buf);
}

/* ---- the events store ---------------------------------------------------- */

typedef struct source {
    char *path;
    int64_t n, agents;
    int64_t built_at;         /* wall clock ms the timestamps count back from */
    int64_t old;              /* events older than 30 days */
    int64_t beyond;           /* events beyond each agent's newest KEEP_LAST */
} source;

/* Event i's time: uniform over the 90 days before built_at, except for the
 * empty GAP_MS just after the 30-day line. */
static int64_t event_at(const source *s, int64_t i)
{
    int64_t start = s->built_at - SPAN_MS, line = s->built_at - 30 * DAY_MS;
    int64_t at = start + (int64_t)((double)i * (double)(SPAN_MS - GAP_MS) / (double)s->n);
    return at >= line ? at + GAP_MS : at;
}

/* Creates the store with agentrun, then fills it with plain SQLite: n events
 * of `agents` pseudo-random agents, in time order, about 200 bytes of content
 * each. Counts what each cut should delete as it goes. */
static void build_source(source *s)
{
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, s->path, &opts), store, "creating the events store");
    ar_store_close(store);

    sqlite3 *db = sq_open(s->path, "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -262144;");
    sqlite3_stmt *st = NULL;
    sq_ok(db, sqlite3_prepare_v2(db, "INSERT INTO events(agent, session, type, content, metadata, run, at)"
                                     " VALUES(?,?,?,?,?,NULL,?)", -1, &st, NULL), "preparing the fill");
    int64_t *per_agent = calloc((size_t)s->agents, sizeof *per_agent);
    if (!per_agent)
        bench_die("out of memory");
    int64_t line = s->built_at - 30 * DAY_MS;
    char agent[32], content[320], metadata[128];
    s->old = 0;
    for (int64_t i = 0; i < s->n; i++) {
        if (i % FILL_TXN == 0)
            sq_ok(db, sqlite3_exec(db, i ? "COMMIT; BEGIN" : "BEGIN", NULL, NULL, NULL), "filling");
        int64_t a = (int64_t)(mix((uint64_t)i) % (uint64_t)s->agents), at = event_at(s, i);
        per_agent[a]++;
        s->old += at < line;
        snprintf(agent, sizeof agent, "agent-%04" PRId64, a);
        int head = snprintf(content, sizeof content, "Ticket %" PRId64 ": ", 10000 + i % 90000);
        size_t take = 150 + (size_t)(mix((uint64_t)i + 7) % 100);
        memcpy(content + head, prose, take);
        content[(size_t)head + take] = '\0';
        snprintf(metadata, sizeof metadata, "{\"channel\":\"web\",\"tokens\":%d}", (int)(40 + i % 400));
        sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, i / 5000);
        sqlite3_bind_text(st, 3, types[i % 4], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, content, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, metadata, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, at);
        sq_ok(db, sqlite3_step(st), "inserting an event");
        sqlite3_reset(st);
    }
    sq_ok(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), "filling");
    sqlite3_finalize(st);
    sq_ok(db, sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), "checkpointing");
    sqlite3_close(db);
    s->beyond = 0;
    for (int64_t a = 0; a < s->agents; a++)
        s->beyond += per_agent[a] > KEEP_LAST ? per_agent[a] - KEEP_LAST : 0;
    free(per_agent);
}

/* What is left after a cut, to check both sides left the same events. */
typedef struct fingerprint {
    int64_t count, id_sum;
} fingerprint;

static fingerprint take_fingerprint(const char *path)
{
    sqlite3 *db = sq_open(path, NULL);
    fingerprint f = { sq_int(db, "SELECT count(*) FROM events"), sq_int(db, "SELECT sum(id) FROM events") };
    sqlite3_close(db);
    return f;
}

/* agentrun's cut on a fresh copy; returns its seconds, *deleted the count. */
static double agentrun_cut(const char *path, const ar_event_retention *policy, int64_t *deleted)
{
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, path, &opts), store, "opening the copy");
    int64_t t0 = bench_now_ns();
    bench_check(ar_events_retain(deleted, store, policy), store, "retaining events");
    double s = bench_us(t0, bench_now_ns()) / 1e6;
    ar_store_close(store);
    return s;
}

/* The hand-written statement on a fresh copy, with agentrun's pragmas for the
 * same durability; returns its seconds, *deleted the count. */
static double baseline_cut(const char *path, const char *sql, int64_t param, int64_t *deleted)
{
    sqlite3 *db = sq_open(path, "PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = 67108864;");
    sqlite3_stmt *st = NULL;
    sq_ok(db, sqlite3_prepare_v2(db, sql, -1, &st, NULL), "preparing the baseline cut");
    sqlite3_bind_int64(st, 1, param);
    int64_t t0 = bench_now_ns();
    sq_ok(db, sqlite3_step(st), "the baseline cut");
    *deleted = sqlite3_changes64(db);
    double s = bench_us(t0, bench_now_ns()) / 1e6;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return s;
}

/* Times one cut on both sides, REPS times each on fresh copies of the source
 * (agentrun, baseline, baseline, agentrun, ...), checks both deleted `expect`
 * events and left the same ones, and reports the better time of each side. */
static void compare_cut(const bench_env *env, const source *s, const char *metric, const char *what,
                        const ar_event_retention *policy, const char *sql, int64_t expect)
{
    char *work = bench_path(env, "retain-work.db");
    double best[2] = { 0, 0 };
    fingerprint left[2];
    for (int r = 0; r < 2 * REPS; r++) {
        int side = (r % 4 == 0 || r % 4 == 3) ? 0 : 1;
        copy_store(s->path, work);
        int64_t deleted = 0;
        double secs;
        if (side == 0) {
            secs = agentrun_cut(work, policy, &deleted);
        } else {
            /* the same cut-off as agentrun computes from its own clock */
            int64_t param = policy->older_than >= 0 ? wall_ms() - (int64_t)(policy->older_than * 1000.0)
                                                    : policy->keep_last;
            secs = baseline_cut(work, sql, param, &deleted);
        }
        if (deleted != expect)
            bench_die("%s: %s deleted %" PRId64 " events, expected %" PRId64, metric,
                      side ? "the baseline" : "agentrun", deleted, expect);
        fingerprint f = take_fingerprint(work);
        if (r < 2)
            left[side] = f;
        else if (f.count != left[side].count || f.id_sum != left[side].id_sum)
            bench_die("%s: two runs of the same side left different events", metric);
        if (r == 1 && (left[0].count != left[1].count || left[0].id_sum != left[1].id_sum))
            bench_die("%s: agentrun and the baseline left different events", metric);
        if (r < 2 || secs < best[side])
            best[side] = secs;
    }
    bench_remove_store(work);
    free(work);
    char n1[32], n2[32];
    double ratio = best[0] / best[1];
    bench_goal(metric, ratio <= 1.5, "<= 1.5",
               "%s: agentrun %.2f s  baseline %.2f s  ratio %.2f  (%s of %s events deleted; best of %d each)",
               what, best[0], best[1], ratio, bench_num(n1, sizeof n1, (double)expect),
               bench_num(n2, sizeof n2, (double)s->n), REPS);
}

static void events_retention(const bench_env *env)
{
    source s;
    s.path = bench_path(env, "retain-source.db");
    s.n = bench_scaled(env, 1000000, 1000);
    s.agents = bench_scaled(env, 1000, 5);
    s.built_at = wall_ms();
    int64_t t0 = bench_now_ns();
    build_source(&s);
    char n1[32], n2[32];
    bench_note("retain.build", "%s events of %s agents over 90 days, inserted with plain SQLite into an agentrun "
               "store (%d per transaction), in %.1f s", bench_num(n1, sizeof n1, (double)s.n),
               bench_num(n2, sizeof n2, (double)s.agents), FILL_TXN, bench_us(t0, bench_now_ns()) / 1e6);

    ar_event_retention age = AR_EVENT_RETENTION_INIT;
    age.older_than = AGE_LIMIT_S;
    compare_cut(env, &s, "retain.age", "older than 30 days", &age, baseline_age_sql, s.old);
    ar_event_retention keep = AR_EVENT_RETENTION_INIT;
    keep.keep_last = KEEP_LAST;
    compare_cut(env, &s, "retain.keep", "keep_last 100 per agent", &keep, baseline_keep_sql, s.beyond);
    if (wall_ms() - s.built_at >= GAP_MS)
        bench_die("retain: the age cut ran more than %d hours after the store was built", (int)(GAP_MS / 3600000));
    bench_remove_store(s.path);
    free(s.path);
}

/* ---- runs through a Lua rule --------------------------------------------- */

/* The rule reads what a real one would (status, usage, metadata, age) and
 * decides nothing, so every run is considered and none deleted. */
static const char lua_side[] =
    "local agentrun = require 'agentrun'\n"
    "local path = ...\n"
    "local store = assert(agentrun.open(path, { durability = 'normal' }))\n"
    "local side = {}\n"
    "function side.inspect()\n"
    "  local seen, tokens, tagged, old = 0, 0, 0, 0\n"
    "  local report = store:retain { dry_run = true, rule = function(run)\n"
    "    seen = seen + 1\n"
    "    if run.status == 'completed' then tokens = tokens + run.usage.total_tokens end\n"
    "    if run.metadata.tier == 'gold' then tagged = tagged + 1 end\n"
    "    if run.age > 7 * 86400 then old = old + 1 end\n"
    "    return nil\n"
    "  end }\n"
    "  return report.considered, seen, report.deleted, tokens, old\n"
    "end\n"
    "function side.keep(n)\n"
    "  local report = store:retain { keep_last = n }\n"
    "  return report.considered, report.deleted, report.steps_deleted\n"
    "end\n"
    "function side.close() store:close() end\n"
    "return side\n";

static void lua_check(lua_State *L, int rc, const char *what)
{
    if (rc != LUA_OK)
        bench_die("%s: %s", what, lua_tostring(L, -1));
}

/* Calls side[name](...) with the arguments already pushed above it; leaves nret results. */
static void call_side(lua_State *L, int side, const char *name, int nargs, int nret)
{
    lua_getfield(L, side, name);
    lua_insert(L, -1 - nargs);
    lua_check(L, lua_pcall(L, nargs, nret, 0), name);
}

/* A C rule that decides nothing, to show what the Lua rule adds. */
static int c_rule(void *ud, const ar_record *run, double age, int *verdict)
{
    int64_t *tokens = ud;
    if (run->status == AR_COMPLETED && age > 0)
        *tokens += run->usage.input_tokens + run->usage.output_tokens;
    *verdict = AR_RULE_UNDECIDED;
    return 0;
}

static void runs_retention(const bench_env *env)
{
    int64_t runs, users;
    double build_s;
    const char *fixture = bench_fixture_runs(env, &runs, &users, &build_s);
    char n1[32], n2[32], n3[32], n4[32];
    if (build_s > 0)
        bench_note("retain.fixture", "%s runs written whole in %.1f s", bench_num(n1, sizeof n1, (double)runs),
                   build_s);
    char *path = bench_path(env, "retain-runs.db");
    copy_store(fixture, path);

    /* what the checks expect: the runs' tokens, and per agent the runs beyond keep */
    sqlite3 *db = sq_open(path, NULL);
    int64_t expect_tokens = sq_int(db, "SELECT sum(input_tokens + output_tokens) FROM runs WHERE status = 'completed'");
    int64_t keep = runs / 16 > 1 ? runs / 16 : 1;
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT coalesce(sum(c - %" PRId64 "), 0) FROM (SELECT count(*) AS c FROM runs"
             " GROUP BY agent) WHERE c > %" PRId64, keep, keep);
    int64_t expect_deleted = sq_int(db, sql);
    sqlite3_close(db);

    lua_State *L = luaL_newstate();
    if (!L)
        bench_die("no memory for a Lua state");
    luaL_openlibs(L);
    lua_check(L, luaL_loadbuffer(L, lua_side, sizeof lua_side - 1, "=bench_retain"), "loading the Lua side");
    lua_pushstring(L, path);
    lua_check(L, lua_pcall(L, 1, 1, 0), "starting the Lua side (is LUA_PATH/LUA_CPATH set? run it with make bench)");
    int side = lua_gettop(L);

    enum { PASSES = 3 };
    double t[PASSES];
    for (int i = 0; i < PASSES; i++) {
        int64_t t0 = bench_now_ns();
        call_side(L, side, "inspect", 0, 5);
        t[i] = bench_us(t0, bench_now_ns()) / 1e6;
        int64_t considered = lua_tointeger(L, -5), seen = lua_tointeger(L, -4), deleted = lua_tointeger(L, -3);
        int64_t tokens = lua_tointeger(L, -2), old = lua_tointeger(L, -1);
        lua_pop(L, 5);
        if (considered != runs || seen != runs || deleted != 0 || tokens != expect_tokens || old != runs)
            bench_die("retain.rule: considered %" PRId64 ", the rule saw %" PRId64 " (%" PRId64 " old), %" PRId64
                      " deleted, %" PRId64 " tokens; expected %" PRId64 " runs, 0 deleted, %" PRId64 " tokens",
                      considered, seen, old, deleted, tokens, runs, expect_tokens);
    }
    double med = bench_median(t, PASSES), rate = (double)runs / med;
    bench_goal("retain.rule", rate >= 200000, ">= 200,000/s",
               "Lua rule reading status, usage, metadata and age of every run (dry run)  %s runs in %.2f s  "
               "%s runs/s  (median of %d)", bench_num(n1, sizeof n1, (double)runs), med,
               bench_num(n2, sizeof n2, rate), PASSES);

    /* the same scan with a C rule, on a connection of its own */
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, path, &opts), store, "opening the runs store");
    ar_retention policy = AR_RETENTION_INIT;
    int64_t c_tokens = 0;
    policy.rule = c_rule;
    policy.rule_ud = &c_tokens;
    policy.dry_run = 1;
    ar_retention_report report;
    int64_t t0 = bench_now_ns();
    bench_check(ar_store_retain(&report, store, &policy), store, "retaining runs with a C rule");
    double c_s = bench_us(t0, bench_now_ns()) / 1e6;
    ar_store_close(store);
    if (report.considered != runs || c_tokens != expect_tokens)
        bench_die("retain.rule.c: considered %" PRId64 " of %" PRId64, report.considered, runs);
    bench_note("retain.rule.c", "the same dry run with a C rule  %.2f s  %s runs/s", c_s,
               bench_num(n1, sizeof n1, (double)runs / c_s));

    lua_pushinteger(L, keep);
    t0 = bench_now_ns();
    call_side(L, side, "keep", 1, 3);
    double keep_s = bench_us(t0, bench_now_ns()) / 1e6;
    int64_t considered = lua_tointeger(L, -3), deleted = lua_tointeger(L, -2), steps = lua_tointeger(L, -1);
    lua_pop(L, 3);
    if (considered != runs || deleted != expect_deleted)
        bench_die("retain.keep_last: considered %" PRId64 ", deleted %" PRId64 "; expected %" PRId64 " and %" PRId64,
                  considered, deleted, runs, expect_deleted);
    bench_note("retain.runs", "store:retain{keep_last = %s} over %s runs: %s runs and %s steps deleted in %.2f s",
               bench_num(n1, sizeof n1, (double)keep), bench_num(n2, sizeof n2, (double)runs),
               bench_num(n3, sizeof n3, (double)deleted), bench_num(n4, sizeof n4, (double)steps), keep_s);
    call_side(L, side, "close", 0, 0);
    lua_close(L);
    bench_remove_store(path);
    free(path);
}

void bench_retain(const bench_env *env)
{
    events_retention(env);
    runs_retention(env);
}
