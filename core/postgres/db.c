/* db.c -- the PostgreSQL backend: connection, schema and migrations,
 * transactions, errors, parameters and result values, and the backend's
 * table of functions. */
#include "pg.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define APPLICATION "agentrun"

/* The schema a store lives in. The first version made on PostgreSQL is 2,
 * the numbering SQLite files use, so that one number names one set of
 * tables on both backends. A change of schema edits this text and appends a
 * migration below. */
static const char schema_current[] =
    /* n is the id's tick: (created_at << 16) | sequence, so the table's key
     * order is the runs' time order */
    "CREATE TABLE runs("
    " n bigint PRIMARY KEY,"
    " id text NOT NULL,"
    " agent text NOT NULL, goal text NOT NULL, \"user\" text, edition text, parent text,"
    " status text NOT NULL,"
    " output text, error text, limit_name text,"
    " limit_value double precision, limit_reached double precision,"
    " budget text NOT NULL DEFAULT '{}',"
    " iterations bigint NOT NULL DEFAULT 0,"
    " input_tokens bigint NOT NULL DEFAULT 0, output_tokens bigint NOT NULL DEFAULT 0,"
    " cost_nanos bigint NOT NULL DEFAULT 0, counters text,"
    " elapsed_ms bigint NOT NULL DEFAULT 0,"
    " created_at bigint NOT NULL, finished_at bigint, updated_at bigint NOT NULL,"
    " metadata text,"
    /* the ownership epoch: resuming a run increments it, and each write of a
     * run handle requires the epoch its handle took (one writer per run) */
    " owner bigint NOT NULL DEFAULT 0,"
    /* a fork: the run (id) and the step it was forked after; a run that
     * waited: what it asked and the answer, JSON text */
    " forked_from text, forked_seq bigint, request text, response text);"
    /* each index ends with n, so a filtered listing is read in key order */
    "CREATE INDEX runs_by_agent ON runs(agent, n);"
    "CREATE INDEX runs_by_user ON runs(\"user\", n);"
    "CREATE INDEX runs_by_edition ON runs(edition, n) WHERE edition IS NOT NULL;"
    "CREATE INDEX runs_by_parent ON runs(parent, n) WHERE parent IS NOT NULL;"
    "CREATE INDEX runs_by_forked_from ON runs(forked_from, n) WHERE forked_from IS NOT NULL;"
    "CREATE TABLE steps("
    " run bigint NOT NULL, seq bigint NOT NULL,"
    " kind text NOT NULL, name text, content text,"
    " input_tokens bigint NOT NULL, output_tokens bigint NOT NULL,"
    " cost_nanos bigint NOT NULL, counters text,"
    " duration_ms bigint NOT NULL, at bigint NOT NULL,"
    " PRIMARY KEY (run, seq));"
    "CREATE TABLE checkpoints("
    " run bigint PRIMARY KEY, seq bigint NOT NULL, state text, at bigint NOT NULL);"
    /* content is bytea: event content may hold NUL bytes, which text cannot */
    "CREATE TABLE events("
    " id bigint PRIMARY KEY,"
    " agent text NOT NULL, session bigint NOT NULL, type text NOT NULL,"
    " content bytea, metadata text, run text, at bigint NOT NULL);"
    "CREATE INDEX events_by_agent ON events(agent, id);"
    "CREATE INDEX events_by_session ON events(agent, session, id);"
    "CREATE INDEX events_by_type ON events(agent, type, id);"
    "CREATE INDEX events_by_at ON events(agent, at, id);"
    "CREATE INDEX events_by_run ON events(run) WHERE run IS NOT NULL;"
    "CREATE TABLE meta(key text PRIMARY KEY, value text NOT NULL);"
    /* the high-water mark of runs begun live (runs.c): from the start, so
     * that records written whole before the first begin never set it */
    "INSERT INTO meta(key, value) VALUES('last_run_key', '0');";

/* Schema 2 -> 3: forks (forked_from, forked_seq) and runs waiting for a
 * response (request, response); every existing run has none of them. */
static const char schema_v2_to_v3[] =
    "ALTER TABLE runs ADD COLUMN forked_from text, ADD COLUMN forked_seq bigint,"
    " ADD COLUMN request text, ADD COLUMN response text;"
    "CREATE INDEX runs_by_forked_from ON runs(forked_from, n) WHERE forked_from IS NOT NULL;";

/* migrations[v - SCHEMA_FIRST] upgrades a schema from version v to v + 1,
 * all that a schema needs in the one transaction of prepare_schema(). */
#define SCHEMA_FIRST 2
static const char *const migrations[] = { schema_v2_to_v3 };
#define SCHEMA_VERSION (SCHEMA_FIRST + (int)(sizeof migrations / sizeof migrations[0]))

/* The advisory lock class (the first key); the second is the schema's hash. */
#define LOCK_SCHEMA 0x41520001

/* 32-bit FNV-1a of the schema name: the second key of the store's advisory locks. */
static int32_t schema_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return (int32_t)h;
}

/* ---- parameters and values -------------------------------------------------- */

static int next_param(pg_params *p)
{
    /* callers pass fixed lists far below the limit; a longer one is a bug */
    if (p->n >= PG_MAX_PARAMS)
        abort();
    return p->n++;
}

void pg_p_int64(pg_params *p, int64_t v)
{
    int i = next_param(p);
    snprintf(p->num[i], sizeof p->num[i], "%lld", (long long)v);
    p->v[i] = p->num[i];
    p->len[i] = 0;
    p->fmt[i] = 0;
}

void pg_p_double(pg_params *p, double v)
{
    int i = next_param(p);
    snprintf(p->num[i], sizeof p->num[i], "%.17g", v);
    p->v[i] = p->num[i];
    p->len[i] = 0;
    p->fmt[i] = 0;
}

void pg_p_text(pg_params *p, const char *s)
{
    int i = next_param(p);
    p->v[i] = s;
    p->len[i] = 0;
    p->fmt[i] = 0;
}

/* The binary form of text is its bytes, so text given with a length needs
 * no terminating NUL; the server still checks its encoding. */
void pg_p_textn(pg_params *p, const char *s, size_t n)
{
    int i = next_param(p);
    p->v[i] = s ? (n ? s : "") : NULL;
    p->len[i] = (int)n;
    p->fmt[i] = 1;
}

void pg_p_bytes(pg_params *p, const char *s, size_t n)
{
    pg_p_textn(p, s, n);
}

ar_db_text pg_text(const PGresult *res, int row, int col)
{
    ar_db_text t = { NULL, 0 };
    if (PQgetisnull(res, row, col))
        return t;
    t.s = PQgetvalue(res, row, col);
    t.len = (size_t)PQgetlength(res, row, col);
    return t;
}

static uint64_t big_endian(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | b[i];
    return v;
}

int64_t pg_bigint(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return 0;
    const char *s = PQgetvalue(res, row, col);
    if (PQfformat(res, col) == 0)
        return (int64_t)strtoll(s, NULL, 10);
    int n = PQgetlength(res, row, col);
    uint64_t v = big_endian((const unsigned char *)s, n);
    if (n == 4)
        return (int32_t)(uint32_t)v;
    if (n == 2)
        return (int16_t)(uint16_t)v;
    return (int64_t)v;
}

int64_t pg_time(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? AR_UNSET : pg_bigint(res, row, col);
}

double pg_double(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return 0;
    const char *s = PQgetvalue(res, row, col);
    if (PQfformat(res, col) == 0)
        return strtod(s, NULL);
    int n = PQgetlength(res, row, col);
    uint64_t bits = big_endian((const unsigned char *)s, n);
    if (n == 4) {
        uint32_t b32 = (uint32_t)bits;
        float f;
        memcpy(&f, &b32, sizeof f);
        return f;
    }
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

void pg_run_row(const PGresult *res, int row, int c, ar_db_run_row *out)
{
    out->n = pg_bigint(res, row, c);
    out->id = pg_text(res, row, c + 1);
    out->agent = pg_text(res, row, c + 2);
    out->goal = pg_text(res, row, c + 3);
    out->user = pg_text(res, row, c + 4);
    out->edition = pg_text(res, row, c + 5);
    out->parent = pg_text(res, row, c + 6);
    out->status = pg_text(res, row, c + 7);
    out->output = pg_text(res, row, c + 8);
    out->error = pg_text(res, row, c + 9);
    out->limit_name = pg_text(res, row, c + 10);
    out->limit_value = pg_double(res, row, c + 11);
    out->limit_reached = pg_double(res, row, c + 12);
    out->budget = pg_text(res, row, c + 13);
    out->iterations = pg_bigint(res, row, c + 14);
    out->input_tokens = pg_bigint(res, row, c + 15);
    out->output_tokens = pg_bigint(res, row, c + 16);
    out->cost_nanos = pg_bigint(res, row, c + 17);
    out->counters = pg_text(res, row, c + 18);
    out->elapsed_ms = pg_bigint(res, row, c + 19);
    out->created_at = pg_time(res, row, c + 20);
    out->finished_at = pg_time(res, row, c + 21);
    out->updated_at = pg_time(res, row, c + 22);
    out->metadata = pg_text(res, row, c + 23);
    out->owner = pg_bigint(res, row, c + 24);
    out->forked_from = pg_text(res, row, c + 25);
    out->forked_seq = pg_bigint(res, row, c + 26);
    out->request = pg_text(res, row, c + 27);
    out->response = pg_text(res, row, c + 28);
}

/* ---- errors ------------------------------------------------------------------ */

/* libpq's message on one line, without its trailing newline. */
static void one_line(char *dst, size_t cap, const char *msg)
{
    size_t k = 0;
    for (const char *s = msg ? msg : ""; *s && k + 1 < cap; s++) {
        if (*s == '\n' || *s == '\t') {
            while (s[1] == '\n' || s[1] == '\t' || s[1] == ' ')
                s++;
            if (!s[1])
                break;
            if (k + 2 < cap) {
                dst[k++] = ';';
                dst[k++] = ' ';
            }
            continue;
        }
        dst[k++] = *s;
    }
    dst[k] = '\0';
}

/* Forgets a connection that failed: the next call connects again. Inside a
 * transaction, the transaction went with it. */
static void drop(ar_db *db)
{
    if (db->last) {
        PQclear(db->last);
        db->last = NULL;
    }
    if (db->conn)
        PQfinish(db->conn);
    db->conn = NULL;
    memset(db->prepared, 0, sizeof db->prepared);
    if (db->in_txn)
        db->txn_broken = 1;
}

int pg_fail(ar_db *db, const PGresult *res, const char *what, ar_err *err)
{
    char detail[400];
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!primary && res)
        primary = PQresultErrorMessage(res);
    if ((!primary || !*primary) && db->conn)
        primary = PQerrorMessage(db->conn);
    one_line(detail, sizeof detail, primary && *primary ? primary : "no answer from the server");
    int lost = !db->conn || PQstatus(db->conn) != CONNECTION_OK || !res || db->doomed ||
               (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0));
    if (lost) {
        db->ended = state && strncmp(state, "57P", 3) == 0;
        drop(db);
        return ar_fail(err, AR_EIO, "%s: the connection to the server was lost (%s)", what, detail);
    }
    if (db->scan_guard && PQtransactionStatus(db->conn) == PQTRANS_INERROR)
        PQclear(PQexec(db->conn, "ROLLBACK TO SAVEPOINT " PG_SCAN_SAVEPOINT));
    if (!state)
        return ar_fail(err, AR_EIO, "%s: %s", what, detail);
    if (strcmp(state, "55P03") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0)
        return ar_fail(err, AR_EBUSY, "%s: the store is locked by another writer (%s)", what, detail);
    if (strncmp(state, "53", 2) == 0)
        return ar_fail(err, AR_EFULL, "%s: the server is out of disk or memory (%s)", what, detail);
    if (strcmp(state, "42501") == 0 || strcmp(state, "25006") == 0)
        return ar_fail(err, AR_EPERM, "%s: not permitted (%s)", what, detail);
    if (strncmp(state, "54", 2) == 0 || strncmp(state, "22", 2) == 0)
        return ar_fail(err, AR_EJSON, "%s: a value is more than the store holds, or not text it can hold (%s)",
                       what, detail);
    if (strncmp(state, "23", 2) == 0)
        return ar_fail(err, AR_ESTATE, "%s: %s", what, detail);
    return ar_fail(err, AR_EIO, "%s: %s", what, detail);
}

/* ---- connection -------------------------------------------------------------- */

static char *dup_n(const ar_allocator *a, const char *s, size_t n)
{
    char *d = ar_mem_alloc(a, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int is_url(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

/* Removes "password=value" (value bare or single-quoted, as libpq reads it)
 * from a key=value string. */
static void redact_keywords(char *s)
{
    char *p = s;
    while (*p) {
        while (isspace((unsigned char)*p))
            p++;
        char *start = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            p++;
        size_t klen = (size_t)(p - start);
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '=')
            break;
        p++;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\'') {
            for (p++; *p && *p != '\''; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (*p)
                p++;
        } else {
            while (*p && !isspace((unsigned char)*p))
                p++;
        }
        if (klen == 8 && strncmp(start, "password", 8) == 0) {
            while (isspace((unsigned char)*p))
                p++;
            memmove(start, p, strlen(p) + 1);
            p = start;
        }
    }
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

/* Removes the password of a URL: the ":secret" of "user:secret@host", and
 * any "password=" query parameter. */
static void redact_url(char *s)
{
    char *auth = strstr(s, "://") + 3;
    char *end = auth + strcspn(auth, "@/?");
    if (*end == '@') {
        char *colon = memchr(auth, ':', (size_t)(end - auth));
        if (colon)
            memmove(colon, end, strlen(end) + 1);
    }
    char *q = strchr(s, '?');
    while (q) {
        char *param = q + 1;
        char *next = param + strcspn(param, "&");
        if (strncmp(param, "password=", 9) == 0) {
            if (*next)
                memmove(param, next + 1, strlen(next + 1) + 1);
            else
                *(param[-1] == '?' || param[-1] == '&' ? param - 1 : param) = '\0';
            continue;
        }
        q = *next ? next : NULL;
    }
}

/* The location as users see it. If libpq reads a password that the text
 * edits above still show (a spelling they do not know), the location is
 * shown as its parts instead, without the password. */
static char *display_of(const ar_allocator *a, const char *location)
{
    char *d = dup_n(a, location, strlen(location));
    if (!d)
        return NULL;
    if (is_url(d))
        redact_url(d);
    else
        redact_keywords(d);
    PQconninfoOption *opts = PQconninfoParse(location, NULL);
    int leaks = !opts;
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val && strstr(d, o->val))
            leaks = 1;
    if (leaks) {
        const char *host = NULL, *port = NULL, *user = NULL, *dbname = NULL;
        for (PQconninfoOption *o = opts; o && o->keyword; o++) {
            if (strcmp(o->keyword, "host") == 0) host = o->val;
            else if (strcmp(o->keyword, "port") == 0) port = o->val;
            else if (strcmp(o->keyword, "user") == 0) user = o->val;
            else if (strcmp(o->keyword, "dbname") == 0) dbname = o->val;
        }
        char buf[1024];
        if (opts)
            snprintf(buf, sizeof buf, "postgresql://%s%s%s%s%s/%s", user ? user : "", user ? "@" : "",
                     host ? host : "", port ? ":" : "", port ? port : "", dbname ? dbname : "");
        else
            snprintf(buf, sizeof buf, "%s", "postgresql location (unreadable)");
        ar_mem_free(a, d);
        d = dup_n(a, buf, strlen(buf));
    }
    PQconninfoFree(opts);
    return d;
}

/* The parameters every connection is made with; the location's own come
 * after them and win. */
static PGconn *connect_raw(const ar_db *db, PGPing *ping)
{
    const char *const keys[] = { "fallback_application_name", "connect_timeout", "client_encoding", "dbname", NULL };
    const char *const vals[] = { APPLICATION, "10", "UTF8", db->conninfo, NULL };
    if (ping) {
        *ping = PQpingParams(keys, vals, 1);
        return NULL;
    }
    return PQconnectdbParams(keys, vals, 1);
}

/* Says why a connection could not be made: the server refused us
 * (authentication, no such role or database) or could not be reached. */
static int connect_failed(ar_db *db, PGconn *conn, PGPing ping, ar_err *err)
{
    char detail[400];
    one_line(detail, sizeof detail, conn ? PQerrorMessage(conn) : "out of memory");
    if (!conn)
        return ar_fail(err, AR_ENOMEM, "%s: out of memory connecting", db->display);
    if (PQconnectionNeedsPassword(conn))
        return ar_fail(err, AR_EPERM, "%s: the server asks for a password and none was given (%s)",
                       db->display, detail);
    /* the server's state when the attempt failed (NO_ATTEMPT: not asked
     * yet); asked later, a server that was starting up may take
     * connections and make that failure look like a refusal */
    if (ping == PQPING_NO_ATTEMPT)
        connect_raw(db, &ping);
    if (ping == PQPING_OK)
        return ar_fail(err, AR_EPERM, "%s: the server refused the connection (%s)", db->display, detail);
    return ar_fail(err, AR_EIO, "%s: cannot reach the server (%s)", db->display, detail);
}

/* Sets what each connection of the store needs and learns its session's
 * identity (for settling a write cut off later). */
static int session_setup(ar_db *db, ar_err *err)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SET search_path = pg_catalog, \"%s\"; SET synchronous_commit = %s; SET lock_timeout = %d;"
             " SET default_transaction_read_only = %s;"
             " SELECT pg_backend_pid(), backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()",
             db->schema, db->durability == AR_DURABILITY_NORMAL ? "off" : "on",
             /* 0 would mean "wait for ever"; 1 ms is the shortest wait */
             db->busy_timeout_ms > 0 ? db->busy_timeout_ms : 1, db->readonly ? "on" : "off");
    PGresult *res = PQexec(db->conn, sql);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        int rc = pg_fail(db, res, db->display, err);
        PQclear(res);
        return rc;
    }
    db->session.pid = PQbackendPID(db->conn);
    db->session.started[0] = '\0';
    if (PQntuples(res) == 1)
        snprintf(db->session.started, sizeof db->session.started, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    return AR_OK;
}

/* Notices a connection the server closed while it was idle (a terminated
 * backend, a restart): reading what is waiting finds the end of it. */
static void notice_drop(ar_db *db)
{
    /* a healthy idle connection has nothing to read: one poll() and done;
     * a closed one has the server's last message, then its end */
    struct pollfd pfd = { db->conn ? PQsocket(db->conn) : -1, POLLIN, 0 };
    for (int i = 0; i < 4 && db->conn && PQstatus(db->conn) == CONNECTION_OK && pfd.fd >= 0 &&
                    poll(&pfd, 1, 0) > 0; i++)
        /* PQisBusy parses what was read: a FATAL sent to an idle
         * session reaches notice() and marks the connection doomed */
        if (!PQconsumeInput(db->conn) || (PQisBusy(db->conn), db->doomed))
            break;
    if (db->conn && (PQstatus(db->conn) != CONNECTION_OK || db->doomed))
        drop(db);
}

/* Server notices are not the application's to see on its stderr. The last
 * words of a session the server ends while it is idle (FATAL) arrive this
 * way too, possibly before the end of the connection does: they mark the
 * connection as gone. */
static void notice(void *ud, const PGresult *res)
{
    ar_db *db = ud;
    const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (severity && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0))
        db->doomed = 1;
}

int pg_connect(ar_db *db, ar_err *err)
{
    notice_drop(db);
    if (db->conn)
        return AR_OK;
    if (db->in_txn)
        return ar_fail(err, AR_EIO, "%s: the connection to the server was lost during the transaction; "
                       "nothing of it was written", db->display);
    PGconn *conn = connect_raw(db, NULL);
    PGPing ping = PQPING_NO_ATTEMPT;
    if (conn && PQstatus(conn) != CONNECTION_OK && !PQconnectionNeedsPassword(conn) &&
        (connect_raw(db, &ping), ping == PQPING_OK)) {
        /* refused by a server that takes connections now: it may have been
         * starting up (recovering after a crash) or going down, which is no
         * refusal of us; the attempt made now tells */
        PQfinish(conn);
        conn = connect_raw(db, NULL);
    }
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        int rc = connect_failed(db, conn, ping, err);
        PQfinish(conn);
        return rc;
    }
    db->doomed = 0;
    PQsetNoticeReceiver(conn, notice, db);
    db->conn = conn;
    memset(db->prepared, 0, sizeof db->prepared);
    int rc = session_setup(db, err);
    if (rc)
        drop(db);
    return rc;
}

/* ---- running statements ----------------------------------------------------- */

static void clear_last(ar_db *db)
{
    if (db->last) {
        PQclear(db->last);
        db->last = NULL;
    }
}

/* Keeps a good result in db->last, or maps a bad one to its code. */
static int take(ar_db *db, PGresult *r, PGresult **res, const char *what, ar_err *err)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = pg_fail(db, r, what, err);
        PQclear(r);
        return rc;
    }
    db->last = r;
    if (res)
        *res = r;
    return AR_OK;
}

int pg_run(ar_db *db, int slot, const char *sql, const pg_params *p, int binary, PGresult **res,
           const char *what, ar_err *err)
{
    clear_last(db);
    db->sent_flag = 0;
    db->ended = 0;
    int rc = pg_connect(db, err);
    if (rc)
        return rc;
    char name[16];
    snprintf(name, sizeof name, "ar%d", slot);
    if (!db->prepared[slot]) {
        PGresult *r = PQprepare(db->conn, name, sql, 0, NULL);
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = pg_fail(db, r, what, err);
            PQclear(r);
            return rc;
        }
        PQclear(r);
        db->prepared[slot] = 1;
    }
    db->sent = db->session;
    db->sent_flag = 1;
    PGresult *r = PQexecPrepared(db->conn, name, p ? p->n : 0, p ? p->v : NULL, p ? p->len : NULL,
                                 p ? p->fmt : NULL, binary);
    return take(db, r, res, what, err);
}

int pg_run_sql(ar_db *db, const char *sql, const pg_params *p, int binary, PGresult **res,
               const char *what, ar_err *err)
{
    clear_last(db);
    db->sent_flag = 0;
    db->ended = 0;
    int rc = pg_connect(db, err);
    if (rc)
        return rc;
    db->sent = db->session;
    db->sent_flag = 1;
    PGresult *r = PQexecParams(db->conn, sql, p ? p->n : 0, NULL, p ? p->v : NULL, p ? p->len : NULL,
                               p ? p->fmt : NULL, binary);
    return take(db, r, res, what, err);
}

int pg_exec(ar_db *db, const char *sql, const char *what, ar_err *err)
{
    clear_last(db);
    int rc = pg_connect(db, err);
    if (rc)
        return rc;
    return take(db, PQexec(db->conn, sql), NULL, what, err);
}

/* ---- settling a write cut off --------------------------------------------------- */

int pg_cut_off(ar_db *db, pg_session *old)
{
    if (db->conn || !db->sent_flag)
        return 0;
    *old = db->sent;
    return 1;
}

/* Whether session `old` has ended, asked on a connection made now: AR_OK
 * with *ended, or the failure to ask. Past half the wait it ends the
 * session itself, once (*terminated): a session the server has not seen end
 * (a lost network) would hold its transaction undecided. */
static int session_ended(ar_db *db, const pg_session *old, int waited, int *terminated, int *ended,
                         const char *what, ar_err *e)
{
    int rc = pg_connect(db, e);
    if (rc)
        return rc;
    pg_params q = { 0 };
    pg_p_int64(&q, old->pid);
    pg_p_text(&q, old->started);
    PGresult *res = NULL;
    rc = pg_run(db, PG_SESSION_ALIVE,
                "SELECT 1 FROM pg_stat_activity WHERE pid = $1::int AND backend_start::text = $2", &q, 0, &res,
                what, e);
    if (rc)
        return rc;
    *ended = PQntuples(res) == 0;
    if (!*ended && waited >= db->busy_timeout_ms / 2 && !*terminated) {
        *terminated = 1;
        pg_run(db, PG_SESSION_END, "SELECT pg_terminate_backend($1::int)", &q, 0, NULL, what, e);
    }
    if (!*ended)
        rc = ar_fail(e, AR_EIO, "the session it was sent on has not ended");
    return rc;
}

/* Sleeps before the next try: pauses growing to 50 ms; 0 once the store's
 * busy timeout is spent (*waited counts the pauses). */
static int pause_more(const ar_db *db, int *waited, int *pause)
{
    if (*waited >= db->busy_timeout_ms)
        return 0;
    struct timespec ts = { *pause / 1000, (long)(*pause % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
    *waited += *pause;
    *pause = *pause < 50 ? *pause * 2 : 50;
    return 1;
}

int pg_settle(ar_db *db, const pg_session *cut, int slot, const char *sql, const pg_params *p,
              const char *what, ar_err *err)
{
    pg_session old = *cut;
    /* the server ended the session itself (terminated, shut down): what it
     * committed is visible already, and nothing else will commit */
    int ended = db->ended;
    char why[AR_ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", err->msg);
    int waited = 0, pause = 1, terminated = 0;
    ar_err e;
    ar_err_clear(&e);
    do {
        int rc = ended ? pg_connect(db, &e) : session_ended(db, &old, waited, &terminated, &ended, what, &e);
        if (rc == AR_OK && ended) {
            PGresult *res = NULL;
            rc = pg_run(db, slot, sql, p, 0, &res, what, &e);
            if (rc == AR_OK && PQntuples(res) > 0) {
                ar_err_clear(err);
                return AR_OK;
            }
            if (rc == AR_OK)
                return ar_fail(err, AR_EIO, "%s; it was not written", why);
        }
    } while (pause_more(db, &waited, &pause));
    /* the next write of the run handle learns it (pg_settle_pending) */
    db->unsure = ended ? 0 : 1;
    db->unsure_session = old;
    return ar_fail(err, AR_EIO, "%s; whether it was written is not known yet: the server could not be asked "
                   "within the busy timeout (%s)", why, e.msg);
}

int pg_settle_pending(ar_db *db, ar_err *err)
{
    if (!db->unsure)
        return AR_OK;
    int waited = 0, pause = 1, terminated = 0, ended = 0;
    ar_err e;
    ar_err_clear(&e);
    int rc;
    /* an unreachable server fails the call at once, as any call */
    while ((rc = session_ended(db, &db->unsure_session, waited, &terminated, &ended, "settling a write", &e)) ==
           AR_EIO && db->conn && pause_more(db, &waited, &pause))
        ;
    if (rc == AR_OK) {
        db->unsure = 0;
        return AR_OK;
    }
    return ar_fail(err, rc, "%s: a write cut off earlier may still be committed; its outcome is not known yet (%s)",
                   db->display, e.msg);
}

/* ---- transactions ---------------------------------------------------------------- */

static void lock_keys(const ar_db *db, int which, int64_t *k1, int64_t *k2);

int pg_txn_begin_locked(ar_db *db, int lock, ar_err *err)
{
    if (db->in_txn)
        return ar_fail(err, AR_EMISUSE, "a transaction is already open on this store");
    clear_last(db);
    int rc = pg_connect(db, err);
    if (rc)
        return rc;
    db->in_txn = 1;
    db->txn_broken = 0;
    /* one round trip: the lock (its keys are numbers made here) and the
     * transaction's id, which tells the outcome of a COMMIT cut off */
    char sql[160] = "BEGIN;";
    if (lock >= 0) {
        int64_t k1, k2;
        lock_keys(db, lock, &k1, &k2);
        snprintf(sql, sizeof sql, "BEGIN; SELECT pg_advisory_xact_lock(%lld, %lld);", (long long)k1, (long long)k2);
    }
    strcat(sql, " SELECT pg_current_xact_id()::text");
    PGresult *res = NULL;
    if ((rc = take(db, PQexec(db->conn, sql), &res, lock >= 0 ? "waiting for the store's lock" : "starting a write",
                   err))) {
        pg_txn_rollback(db);
        return rc;
    }
    snprintf(db->xid, sizeof db->xid, "%s", PQgetvalue(res, 0, 0));
    clear_last(db);
    return AR_OK;
}

int pg_txn_begin(ar_db *db, ar_err *err)
{
    return pg_txn_begin_locked(db, -1, err);
}

int pg_txn_commit(ar_db *db, ar_err *err)
{
    if (!db->in_txn)
        return ar_fail(err, AR_EMISUSE, "no transaction is open on this store");
    if (db->txn_broken || !db->conn) {
        pg_txn_rollback(db);
        return ar_fail(err, AR_EIO, "%s: the connection to the server was lost during the transaction; "
                       "nothing of it was written", db->display);
    }
    PGresult *res = NULL;
    int rc = pg_run(db, PG_COMMIT, "COMMIT", NULL, 0, &res, "committing", err);
    if (rc == AR_OK) {
        /* COMMIT of a transaction that failed earlier rolls it back */
        int rolled_back = strcmp(PQcmdStatus(res), "ROLLBACK") == 0;
        clear_last(db);
        db->in_txn = 0;
        if (rolled_back)
            return ar_fail(err, AR_EIO, "committing: the transaction had failed and was rolled back");
        return AR_OK;
    }
    pg_session old;
    int cut = pg_cut_off(db, &old);
    db->in_txn = 0;
    db->txn_broken = 0;
    if (!cut) {
        pg_txn_rollback(db);
        return rc;
    }
    pg_params p = { 0 };
    pg_p_text(&p, db->xid);
    return pg_settle(db, &old, PG_XACT_STATUS, "SELECT 1 WHERE pg_xact_status($1::xid8) = 'committed'", &p,
                     "committing", err);
}

void pg_txn_rollback(ar_db *db)
{
    int was = db->in_txn;
    db->in_txn = 0;
    db->txn_broken = 0;
    clear_last(db);
    if (!was || !db->conn)
        return;
    PGTransactionStatusType ts = PQtransactionStatus(db->conn);
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
        PGresult *r = PQexec(db->conn, "ROLLBACK");
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
            drop(db);
        PQclear(r);
    }
}

/* ---- opening ------------------------------------------------------------------------ */

/* The schema's state: whether it exists, how many relations it holds, and
 * its meta rows when it has a meta table. */
typedef struct schema_state {
    int exists;
    int64_t relations;
    int has_meta;
    char application[64];
    int64_t version;
} schema_state;

static int schema_read(ar_db *db, schema_state *s, ar_err *err)
{
    memset(s, 0, sizeof *s);
    pg_params p = { 0 };
    pg_p_text(&p, db->schema);
    PGresult *res = NULL;
    int rc = pg_run_sql(db,
        "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = $1),"
        " (SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace"
        "   WHERE s.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')),"
        " (SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace"
        "   WHERE s.nspname = $1 AND c.relname = 'meta' AND c.relkind = 'r')",
        &p, 0, &res, db->display, err);
    if (rc)
        return rc;
    s->exists = pg_bigint(res, 0, 0) > 0;
    s->relations = pg_bigint(res, 0, 1);
    s->has_meta = pg_bigint(res, 0, 2) > 0;
    if (!s->has_meta)
        return AR_OK;
    rc = pg_run_sql(db,
        "SELECT (SELECT value FROM meta WHERE key = 'application'),"
        " (SELECT value FROM meta WHERE key = 'schema_version')", NULL, 0, &res, db->display, err);
    if (rc)
        return rc;
    if (!PQgetisnull(res, 0, 0))
        snprintf(s->application, sizeof s->application, "%s", PQgetvalue(res, 0, 0));
    s->version = PQgetisnull(res, 0, 1) ? 0 : strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    return AR_OK;
}

/* Decides from its state whether the schema is a store this library can
 * use: *create is set when it must be made (missing or empty). */
static int schema_judge(ar_db *db, const schema_state *s, int *create, ar_err *err)
{
    *create = 0;
    if (!s->has_meta) {
        if (s->relations > 0)
            return ar_fail(err, AR_ECORRUPT, "%s: schema \"%s\" holds other tables and is not an agentrun store",
                           db->display, db->schema);
        if (db->readonly)
            return ar_fail(err, s->exists ? AR_ECORRUPT : AR_EIO,
                           "%s: %s \"%s\" holds no agentrun store (open it writable once to create it)",
                           db->display, "schema", db->schema);
        *create = 1;
        return AR_OK;
    }
    if (strcmp(s->application, APPLICATION) != 0 || s->version < SCHEMA_FIRST)
        return ar_fail(err, AR_ECORRUPT, "%s: schema \"%s\" is not an agentrun store (another application's tables)",
                       db->display, db->schema);
    if (s->version > SCHEMA_VERSION)
        return ar_fail(err, AR_EVERSION,
                       "%s: schema \"%s\" was created by a newer agentrun (schema %lld; this library knows up to %d)",
                       db->display, db->schema, (long long)s->version, SCHEMA_VERSION);
    if (s->version < SCHEMA_VERSION && db->readonly)
        return ar_fail(err, AR_EVERSION,
                       "%s: schema \"%s\" is in version %lld, made by an older agentrun: open it writable once "
                       "to upgrade it to %d, then it can be opened read-only",
                       db->display, db->schema, (long long)s->version, SCHEMA_VERSION);
    return AR_OK;
}

static void lock_keys(const ar_db *db, int which, int64_t *k1, int64_t *k2)
{
    (void)which; /* one class so far */
    *k1 = LOCK_SCHEMA;
    *k2 = schema_hash(db->schema);
}

int pg_lock_store(ar_db *db, int which, const char *what, ar_err *err)
{
    int64_t k1, k2;
    lock_keys(db, which, &k1, &k2);
    pg_params p = { 0 };
    pg_p_int64(&p, k1);
    pg_p_int64(&p, k2);
    return pg_run(db, PG_LOCK, "SELECT pg_advisory_xact_lock($1::int, $2::int)", &p, 0, NULL, what, err);
}

/* Creates or upgrades the schema in one transaction, under the store's
 * advisory lock, so that concurrent first opens make it once: each reads
 * the state again once it holds the lock. */
static int prepare_schema(ar_db *db, ar_err *err)
{
    int rc = pg_txn_begin(db, err);
    if (rc)
        return rc;
    schema_state s;
    int create;
    char sql[256];
    if ((rc = pg_lock_store(db, PG_LOCK_SCHEMA, db->display, err)) ||
        (rc = schema_read(db, &s, err)) || (rc = schema_judge(db, &s, &create, err)))
        goto cleanup;
    if (create) {
        snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS \"%s\"", db->schema);
        if ((rc = pg_exec(db, sql, db->display, err)))
            goto cleanup;
        /* made in the store's schema whatever else search_path names */
        snprintf(sql, sizeof sql, "SET LOCAL search_path = \"%s\", pg_catalog", db->schema);
        if ((rc = pg_exec(db, sql, db->display, err)) || (rc = pg_exec(db, schema_current, db->display, err)))
            goto cleanup;
        s.version = SCHEMA_VERSION;
        pg_params p = { 0 };
        pg_p_text(&p, APPLICATION);
        if ((rc = pg_run_sql(db, "INSERT INTO meta(key, value) VALUES('application', $1)", &p, 0, NULL,
                             db->display, err)))
            goto cleanup;
    } else {
        snprintf(sql, sizeof sql, "SET LOCAL search_path = \"%s\", pg_catalog", db->schema);
        if ((rc = pg_exec(db, sql, db->display, err)))
            goto cleanup;
        for (int64_t v = s.version; v < SCHEMA_VERSION; v++)
            if ((rc = pg_exec(db, migrations[v - SCHEMA_FIRST], db->display, err)))
                goto cleanup;
    }
    pg_params p = { 0 };
    pg_p_int64(&p, SCHEMA_VERSION);
    if ((rc = pg_run_sql(db, "INSERT INTO meta(key, value) VALUES('schema_version', $1)"
                             " ON CONFLICT (key) DO UPDATE SET value = excluded.value", &p, 0, NULL,
                         db->display, err)))
        goto cleanup;
    return pg_txn_commit(db, err);
cleanup:
    pg_txn_rollback(db);
    return rc;
}

/* Checks the store's schema, making or upgrading it when it must and may. */
static int open_schema(ar_db *db, ar_err *err)
{
    schema_state s;
    int create, rc;
    if ((rc = schema_read(db, &s, err)) || (rc = schema_judge(db, &s, &create, err)))
        return rc;
    if (create || s.version < SCHEMA_VERSION)
        return prepare_schema(db, err);
    return AR_OK;
}

int pg_open(ar_db **out, const char *location, const ar_open_opts *opts, const ar_allocator *alloc, ar_err *err)
{
    *out = NULL;
    ar_db *db = ar_mem_alloc(alloc, sizeof *db);
    if (!db)
        return ar_fail(err, AR_ENOMEM, "out of memory opening a PostgreSQL store");
    memset(db, 0, sizeof *db);
    *out = db;
    db->alloc = alloc;
    db->readonly = opts->readonly;
    db->durability = opts->durability;
    db->busy_timeout_ms = opts->busy_timeout_ms;
    const char *schema = opts->version >= 2 && opts->schema ? opts->schema : "agentrun";
    if (!(db->display = display_of(alloc, location)) || !(db->conninfo = dup_n(alloc, location, strlen(location))) ||
        !(db->schema = dup_n(alloc, schema, strlen(schema))))
        return ar_fail(err, AR_ENOMEM, "out of memory opening a PostgreSQL store");
    int rc = ar_schema_name_check(err, schema);
    if (rc)
        return rc;
    PQconninfoOption *parsed = PQconninfoParse(location, NULL);
    if (!parsed)
        return ar_fail(err, AR_EMISUSE, "%s: not a PostgreSQL URL or connection string libpq can read", db->display);
    PQconninfoFree(parsed);
    if ((rc = pg_connect(db, err)))
        return rc;
    return open_schema(db, err);
}

void pg_close(ar_db *db)
{
    if (!db)
        return;
    if (db->in_txn)
        pg_txn_rollback(db);
    clear_last(db);
    if (db->conn)
        PQfinish(db->conn);
    ar_mem_free(db->alloc, db->conninfo);
    ar_mem_free(db->alloc, db->display);
    ar_mem_free(db->alloc, db->schema);
    ar_mem_free(db->alloc, db);
}

const char *pg_display_path(ar_db *db)
{
    return db->display;
}

int pg_info(ar_db *db, ar_store_info *out, ar_err *err)
{
    PGresult *res = NULL;
    int rc = pg_run_sql(db,
        "SELECT (SELECT value FROM meta WHERE key = 'schema_version'), (SELECT count(*) FROM runs),"
        " (SELECT count(*) FROM steps), (SELECT count(*) FROM events)", NULL, 0, &res, "reading the store's counts",
        err);
    if (rc)
        return rc;
    out->schema_version = PQgetisnull(res, 0, 0) ? 0 : atoi(PQgetvalue(res, 0, 0));
    out->runs = pg_bigint(res, 0, 1);
    out->steps = pg_bigint(res, 0, 2);
    out->events = pg_bigint(res, 0, 3);
    clear_last(db);
    return AR_OK;
}

/* ---- the table ---------------------------------------------------------------------- */

const ar_backend ar_postgres_backend = {
    .version = AR_BACKEND_VERSION,
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .display_path = pg_display_path,
    .info = pg_info,
    .txn_begin = pg_txn_begin,
    .txn_commit = pg_txn_commit,
    .txn_rollback = pg_txn_rollback,
    .run_insert = pg_run_insert,
    .step_insert = pg_step_insert,
    .step_append = pg_step_append,
    .checkpoint_save = pg_checkpoint_save,
    .run_touch = pg_run_touch,
    .run_finish = pg_run_finish,
    .run_reopen = pg_run_reopen,
    .run_wait = pg_run_wait,
    .run_respond = pg_run_respond,
    .steps_sums = pg_steps_sums,
    .fork_copy = pg_fork_copy,
    .run_load = pg_run_load,
    .run_exists = pg_run_exists,
    .steps_fetch = pg_steps_fetch,
    .runs_list = pg_runs_list,
    .runs_count = pg_runs_count,
    .runs_stats = pg_runs_stats,
    .forget_user = pg_forget_user,
    .checkpoint_put = pg_checkpoint_put,
    .checkpoint_get = pg_checkpoint_get,
    .recover = pg_recover,
    .retain_scan = pg_retain_scan,
    .retain_delete = pg_retain_delete,
    .retain_count_steps = pg_retain_count_steps,
    .sizes = pg_sizes,
    .compact = pg_compact,
    .settle = pg_settle_pending,
    .event_insert = pg_event_insert,
    .events_list = pg_events_list,
    .events_count = pg_events_count,
    .events_summary = pg_events_summary,
    .events_delete = pg_events_delete,
    .events_delete_before = pg_events_delete_before,
    .events_keep_last = pg_events_keep_last,
};
