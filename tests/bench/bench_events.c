/* bench_events.c -- appending events one by one, and listing one agent's newest page as the table grows from 10k to 1M events. */
#include "bench.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 100                 /* events per listing */
#define LISTINGS 200             /* timed listings per table size */
#define WARMUP 20                /* untimed listings before them */
#define FILL_TXN 20000           /* rows per transaction of the bulk fill */
#define BASE_AT INT64_C(1700000000000)

/* The events table exactly as agentrun creates it, for the plain-SQLite side. */
static const char baseline_schema[] =
    "PRAGMA page_size = 8192;"
    "PRAGMA journal_mode = WAL;"
    "PRAGMA synchronous = NORMAL;"
    "CREATE TABLE events("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " agent TEXT NOT NULL, session INTEGER NOT NULL, type TEXT NOT NULL,"
    " content TEXT, metadata TEXT, run TEXT, at INTEGER NOT NULL);"
    "CREATE INDEX events_by_agent ON events(agent, id);"
    "CREATE INDEX events_by_session ON events(agent, session, id);"
    "CREATE INDEX events_by_type ON events(agent, type, id);"
    "CREATE INDEX events_by_at ON events(agent, at, id);"
    "CREATE INDEX events_by_run ON events(run) WHERE run IS NOT NULL;";

static const char insert_sql[] =
    "INSERT INTO events(agent, session, type, content, metadata, run, at) VALUES(?,?,?,?,?,?,?)";

/* Plain chat prose (no quotes or backslashes), cut to vary the content's length. */
static const char prose[] =
    "The customer asked whether the order can still be changed before it ships; I checked the warehouse "
    "queue and the parcel is not packed yet, so the address can be updated. I will confirm the new address "
    "with them, update the order, and send the tracking link once the label is printed tomorrow morning.";

static const char *const types[] = { "user_message", "assistant_message", "tool_call", "tool_result" };

/* One generated event with the buffers its strings point into. */
typedef struct gen_event {
    char agent[32], content[320], metadata[128];
    ar_event ev;
} gen_event;

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Event i of the timeline, owned by `agent`: about 200 bytes of content, a
 * small metadata object, one of four types, at 250 ms after the previous one. */
static void event_make(gen_event *g, int64_t i, int64_t agent)
{
    snprintf(g->agent, sizeof g->agent, "agent-%04" PRId64, agent);
    int head = snprintf(g->content, sizeof g->content, "Ticket %" PRId64 ": ", 10000 + i % 90000);
    size_t take = 150 + (size_t)(mix((uint64_t)i) % 100);
    if (take > sizeof prose - 1)
        take = sizeof prose - 1;
    memcpy(g->content + head, prose, take);
    g->content[(size_t)head + take] = '\0';
    snprintf(g->metadata, sizeof g->metadata,
             "{\"channel\":\"web\",\"model\":\"claude-sonnet-4\",\"tokens\":%d}", (int)(40 + i % 400));
    ar_event e = AR_EVENT_INIT;
    e.agent = g->agent;
    e.session = i / 5000;
    e.type = types[i % 4];
    e.content = g->content;
    e.metadata = g->metadata;
    e.at = BASE_AT + i * 250;
    g->ev = e;
}

/* The table's shape: the first n_small events put `focus` agents at exactly
 * PAGE events each (every other event) and spread the rest over the other
 * agents, so the 10k listing returns full pages as the 1M one does; after
 * that every event goes to a pseudo-random agent. */
typedef struct shape {
    int64_t agents, focus, n_small, n_api, n_total;
} shape;

static int64_t agent_of(const shape *s, int64_t i)
{
    if (i < s->n_small) {
        if (i % 2 == 0 && i / 2 < s->focus * PAGE)
            return (i / 2) % s->focus;
        return s->focus + (int64_t)(mix((uint64_t)i) % (uint64_t)(s->agents - s->focus));
    }
    return (int64_t)(mix((uint64_t)i) % (uint64_t)s->agents);
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
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    sq_ok(db, rc, path);
    if (setup)
        sq_ok(db, sqlite3_exec(db, setup, NULL, NULL, NULL), "setting up the connection");
    return db;
}

/* Inserts one event with a prepared statement (autocommit or inside a transaction). */
static void sq_insert(sqlite3 *db, sqlite3_stmt *st, const ar_event *e)
{
    sqlite3_bind_text(st, 1, e->agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, e->session);
    sqlite3_bind_text(st, 3, e->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, e->content, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, e->metadata, -1, SQLITE_STATIC);
    sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, e->at);
    sq_ok(db, sqlite3_step(st), "inserting an event");
    sqlite3_reset(st);
}

/* One side of the listing comparison: agentrun or plain SQLite, on the
 * small or the big table, each on a connection of its own. */
typedef struct lister {
    ar_store *store;           /* agentrun, or */
    sqlite3 *db;               /* plain SQLite with st prepared */
    sqlite3_stmt *st;
    int64_t agents;            /* listings pick agents in [0, agents) */
    uint64_t seed;
    double t[LISTINGS];
} lister;

/* Lists agent's newest PAGE events; dies unless they are PAGE events of that
 * agent, newest first. Returns the call's time in µs. */
static double list_agentrun(ar_store *store, const char *name)
{
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = name;
    q.order = AR_ORDER_DESC;
    q.limit = PAGE;
    ar_event_list *list = NULL;
    int64_t t0 = bench_now_ns();
    int rc = ar_events_list(&list, NULL, store, &q);
    double us = bench_us(t0, bench_now_ns());
    bench_check(rc, store, "listing events");
    if (list->n != PAGE)
        bench_die("listing %s gave %zu events, not %d", name, list->n, PAGE);
    for (size_t i = 0; i < list->n; i++) {
        if (strcmp(list->items[i].agent, name) != 0)
            bench_die("listing %s gave an event of %s", name, list->items[i].agent);
        if (i && list->items[i].id >= list->items[i - 1].id)
            bench_die("listing %s is not newest first", name);
    }
    ar_event_list_free(list);
    return us;
}

/* The same listing written by hand, every column of every row read. */
static double list_plain(sqlite3 *db, sqlite3_stmt *st, const char *name)
{
    int64_t t0 = bench_now_ns(), rows = 0, bytes = 0;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, PAGE);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 1; c <= 6; c++)
            if (sqlite3_column_text(st, c))
                bytes += sqlite3_column_bytes(st, c);
        rows++;
    }
    sq_ok(db, rc, "the plain listing");
    sqlite3_reset(st);
    double us = bench_us(t0, bench_now_ns());
    if (rows != PAGE || bytes == 0)
        bench_die("the plain listing of %s gave %" PRId64 " rows", name, rows);
    return us;
}

static void lister_open(lister *l, const char *path, int plain, int64_t agents, uint64_t seed)
{
    memset(l, 0, sizeof *l);
    l->agents = agents;
    l->seed = seed;
    if (plain) {
        l->db = sq_open(path, NULL);
        sq_ok(l->db, sqlite3_prepare_v2(l->db, "SELECT id, agent, session, type, content, metadata, run, at"
                                               " FROM events WHERE agent = ? ORDER BY id DESC LIMIT ?",
                                        -1, &l->st, NULL), "preparing the plain listing");
        return;
    }
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    bench_check(ar_store_open(&l->store, path, &opts), l->store, "opening the store to list");
}

/* Listing number i (its agent drawn from i and the seed); times it when slot >= 0. */
static void lister_run(lister *l, int64_t i, int slot)
{
    char name[32];
    snprintf(name, sizeof name, "agent-%04" PRId64, (int64_t)(mix(l->seed + (uint64_t)i) % (uint64_t)l->agents));
    double us = l->store ? list_agentrun(l->store, name) : list_plain(l->db, l->st, name);
    if (slot >= 0)
        l->t[slot] = us;
}

static void lister_close(lister *l)
{
    ar_store_close(l->store);
    sqlite3_finalize(l->st);
    sqlite3_close(l->db);
}

typedef struct latency {
    double median, p95;
} latency;

static latency lister_latency(lister *l)
{
    latency r;
    r.p95 = bench_percentile(l->t, LISTINGS, 95);
    r.median = bench_median(l->t, LISTINGS);
    return r;
}

/* Copies the live store at src (its writer stays open) into dst with the
 * online backup API: the same pages, so the same layout. */
static void snapshot(const char *src, const char *dst)
{
    sqlite3 *from = sq_open(src, NULL), *to = sq_open(dst, NULL);
    sqlite3_backup *b = sqlite3_backup_init(to, "main", from, "main");
    if (!b)
        bench_die("snapshot: %s", sqlite3_errmsg(to));
    int rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE)
        bench_die("snapshot of %s: %s", src, sqlite3_errstr(rc));
    sqlite3_close(from);
    sqlite3_close(to);
}

/* Appends events n_api..n_total through one connection, FILL_TXN per transaction. */
static double bulk_fill(const char *path, const shape *s)
{
    int64_t t0 = bench_now_ns();
    sqlite3 *db = sq_open(path, "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -262144;");
    sqlite3_stmt *st = NULL;
    sq_ok(db, sqlite3_prepare_v2(db, insert_sql, -1, &st, NULL), "preparing the fill");
    gen_event g;
    for (int64_t i = s->n_api; i < s->n_total; i++) {
        if ((i - s->n_api) % FILL_TXN == 0)
            sq_ok(db, sqlite3_exec(db, i == s->n_api ? "BEGIN" : "COMMIT; BEGIN", NULL, NULL, NULL), "filling");
        event_make(&g, i, agent_of(s, i));
        sq_insert(db, st, &g.ev);
    }
    if (s->n_total > s->n_api)
        sq_ok(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), "filling");
    sqlite3_finalize(st);
    sq_ok(db, sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), "checkpointing");
    sqlite3_close(db);
    return bench_us(t0, bench_now_ns()) / 1e6;
}

/* Times the listings of the four sides (agentrun and plain SQLite, on the
 * small and the big table) in short blocks whose order rotates, so load from
 * other processes falls on all alike; each side is warmed up first. */
static void list_interleaved(lister *sides, int n_sides)
{
    for (int k = 0; k < n_sides; k++)
        for (int64_t i = 0; i < WARMUP; i++)
            lister_run(&sides[k], LISTINGS + i, -1);
    enum { BLOCK = 10 };
    for (int from = 0, b = 0; from < LISTINGS; from += BLOCK, b++)
        for (int k = 0; k < n_sides; k++) {
            lister *l = &sides[(b + k) % n_sides];
            for (int i = from; i < from + BLOCK && i < LISTINGS; i++)
                lister_run(l, i, i);
        }
}

void bench_events(const bench_env *env)
{
    shape s;
    s.agents = bench_scaled(env, 1000, 10);
    s.n_small = bench_scaled(env, 10000, 2 * PAGE);
    s.n_api = bench_scaled(env, 100000, s.n_small);
    s.n_total = bench_scaled(env, 1000000, s.n_api);
    s.focus = s.n_small / (2 * PAGE);
    if (s.focus > s.agents / 2)
        s.focus = s.agents / 2;
    if (s.n_total / s.agents < 2 * PAGE)
        bench_die("events: too few events per agent at this scale (%" PRId64 " events, %" PRId64 " agents)",
                  s.n_total, s.agents);
    char *ar_path = bench_path(env, "events.agentrun.db"), *bl_path = bench_path(env, "events.baseline.db");
    char *small_path = bench_path(env, "events.small.db");

    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, ar_path, &opts), store, "opening the events store");
    sqlite3 *bl = sq_open(bl_path, baseline_schema);
    sqlite3_stmt *bl_insert = NULL;
    sq_ok(bl, sqlite3_prepare_v2(bl, insert_sql, -1, &bl_insert, NULL), "preparing the baseline insert");

    /* short blocks alternate between the two sides, and so does which goes
     * first, so load from other processes falls on both alike; the blocks
     * end exactly at n_small, where the small table is copied */
    int64_t block = s.n_small / 20 > 0 ? s.n_small / 20 : 1;
    double ar_us = 0, bl_us = 0;
    gen_event g;
    for (int64_t from = 0, b = 0; from < s.n_api; b++) {
        int64_t to = from + block < s.n_api ? from + block : s.n_api;
        if (from < s.n_small && to > s.n_small)
            to = s.n_small;
        for (int side = 0; side < 2; side++) {
            int agentrun = (b % 2 == 0) == (side == 0);
            int64_t t0 = bench_now_ns();
            for (int64_t i = from; i < to; i++) {
                event_make(&g, i, agent_of(&s, i));
                if (agentrun)
                    bench_check(ar_event_append(NULL, store, &g.ev), store, "appending an event");
                else
                    sq_insert(bl, bl_insert, &g.ev);
            }
            *(agentrun ? &ar_us : &bl_us) += bench_us(t0, bench_now_ns());
        }
        if (to == s.n_small)
            snapshot(ar_path, small_path);
        from = to;
    }
    ar_store_close(store);
    sqlite3_finalize(bl_insert);
    sqlite3_close(bl);
    bench_remove_store(bl_path);

    char n1[32], n2[32], n3[32], n4[32];
    double ar_rate = (double)s.n_api / (ar_us / 1e6), bl_rate = (double)s.n_api / (bl_us / 1e6);
    bench_note("events.append", "agentrun %s events appended one by one (durability normal, ~200 B content + "
               "metadata, %s agents)  %s events/s  baseline %s/s  time ratio %.2f",
               bench_num(n1, sizeof n1, (double)s.n_api), bench_num(n2, sizeof n2, (double)s.agents),
               bench_num(n3, sizeof n3, ar_rate), bench_num(n4, sizeof n4, bl_rate), bl_rate / ar_rate);

    double fill_s = bulk_fill(ar_path, &s);
    bench_note("events.fill", "events %s..%s inserted with plain SQLite into the agentrun store, %d per transaction, "
               "in %.1f s", bench_num(n1, sizeof n1, (double)s.n_api), bench_num(n2, sizeof n2, (double)s.n_total),
               FILL_TXN, fill_s);
    ar_store_info info;
    store = NULL;
    bench_check(ar_store_open(&store, ar_path, &opts), store, "reopening the events store");
    bench_check(ar_store_info_get(&info, store), store, "reading the store's info");
    ar_store_close(store);
    if (info.events != s.n_total)
        bench_die("the store holds %" PRId64 " events, not %" PRId64, info.events, s.n_total);
    store = NULL;
    bench_check(ar_store_open(&store, small_path, &opts), store, "opening the small store");
    bench_check(ar_store_info_get(&info, store), store, "reading the small store's info");
    ar_store_close(store);
    if (info.events != s.n_small)
        bench_die("the small store holds %" PRId64 " events, not %" PRId64, info.events, s.n_small);

    /* the small table's listings pick among the agents with full pages there */
    enum { AR_SMALL, AR_BIG, SQ_SMALL, SQ_BIG, SIDES };
    lister sides[SIDES];
    lister_open(&sides[AR_SMALL], small_path, 0, s.focus, 1);
    lister_open(&sides[AR_BIG], ar_path, 0, s.agents, 2);
    lister_open(&sides[SQ_SMALL], small_path, 1, s.focus, 1);
    lister_open(&sides[SQ_BIG], ar_path, 1, s.agents, 2);
    list_interleaved(sides, SIDES);
    latency lat[SIDES];
    for (int k = 0; k < SIDES; k++) {
        lat[k] = lister_latency(&sides[k]);
        lister_close(&sides[k]);
    }

    bench_note("events.list.small", "agentrun newest %d of one agent, table of %s events (%" PRId64
               " agents with %d events of %s)  median %.0f µs  p95 %.0f µs  plain SQLite %.0f µs", PAGE,
               bench_num(n1, sizeof n1, (double)s.n_small), s.focus, PAGE,
               bench_num(n2, sizeof n2, (double)s.agents), lat[AR_SMALL].median, lat[AR_SMALL].p95,
               lat[SQ_SMALL].median);
    bench_note("events.list.big", "agentrun newest %d of one agent, table of %s events (%s agents)  median %.0f µs  "
               "p95 %.0f µs  plain SQLite %.0f µs", PAGE, bench_num(n1, sizeof n1, (double)s.n_total),
               bench_num(n2, sizeof n2, (double)s.agents), lat[AR_BIG].median, lat[AR_BIG].p95, lat[SQ_BIG].median);
    double ratio = lat[AR_BIG].median / lat[AR_SMALL].median;
    bench_goal("events.list", ratio <= 2.0, "<= 2",
               "median at %s / median at %s events  %.2f  (p95 %.2f; plain SQLite %.2f)",
               bench_num(n1, sizeof n1, (double)s.n_total), bench_num(n2, sizeof n2, (double)s.n_small), ratio,
               lat[AR_BIG].p95 / lat[AR_SMALL].p95, lat[SQ_BIG].median / lat[SQ_SMALL].median);
    bench_remove_store(ar_path);
    bench_remove_store(small_path);
    free(ar_path);
    free(bl_path);
    free(small_path);
}
