/* db.c -- the SQLite backend: opening, schema and migrations, transactions, info. */
#include "sq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AR_APPLICATION_ID 0x41477275 /* "AGru": marks a file as an agentrun store */

/* The current schema, made at once for a new file. An older file is brought
 * to the same tables by the migrations below, in place, in one transaction,
 * when it is opened writable. A change of schema edits this text and appends
 * a migration (tests/c/test_migrate.c checks that a new file and an upgraded
 * schema-1 file end with the same schema). */
static const char schema_current[] =
    /* n is the id's tick: (created_at << 16) | sequence. The table is thus in
     * time order, and an id is found by its key, with no index of its own. */
    "CREATE TABLE runs("
    " n INTEGER PRIMARY KEY,"
    " id TEXT NOT NULL,"
    " agent TEXT NOT NULL, goal TEXT NOT NULL, user TEXT, edition TEXT, parent TEXT,"
    " status TEXT NOT NULL,"
    " output TEXT, error TEXT, limit_name TEXT, limit_value REAL, limit_reached REAL,"
    " budget TEXT NOT NULL DEFAULT '{}',"
    " iterations INTEGER NOT NULL DEFAULT 0,"
    " input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,"
    " cost_nanos INTEGER NOT NULL DEFAULT 0, counters TEXT,"
    " elapsed_ms INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL, finished_at INTEGER, updated_at INTEGER NOT NULL,"
    " metadata TEXT,"
    /* the ownership epoch: resuming a run increments it, and each write of a
     * run handle requires the epoch its handle took (one writer per run) */
    " owner INTEGER NOT NULL DEFAULT 0,"
    /* a fork: the run (id) and the step it was forked after; a run that
     * waited: what it asked and the answer, JSON text */
    " forked_from TEXT, forked_seq INTEGER, request TEXT, response TEXT);"
    /* each index ends with n, so a filtered listing is read in time order */
    "CREATE INDEX runs_by_agent ON runs(agent);"
    "CREATE INDEX runs_by_user ON runs(user);"
    "CREATE INDEX runs_by_edition ON runs(edition) WHERE edition IS NOT NULL;"
    "CREATE INDEX runs_by_parent ON runs(parent) WHERE parent IS NOT NULL;"
    "CREATE INDEX runs_by_forked_from ON runs(forked_from) WHERE forked_from IS NOT NULL;"
    "CREATE TABLE steps("
    " n INTEGER PRIMARY KEY,"
    " run INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " kind TEXT NOT NULL, name TEXT, content TEXT,"
    " input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,"
    " cost_nanos INTEGER NOT NULL, counters TEXT,"
    " duration_ms INTEGER NOT NULL, at INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX steps_by_run ON steps(run, seq);"
    "CREATE TABLE checkpoints("
    " run INTEGER PRIMARY KEY, seq INTEGER NOT NULL, state TEXT, at INTEGER NOT NULL);"
    "CREATE TABLE events("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " agent TEXT NOT NULL, session INTEGER NOT NULL, type TEXT NOT NULL,"
    " content TEXT, metadata TEXT, run TEXT, at INTEGER NOT NULL);"
    "CREATE INDEX events_by_agent ON events(agent, id);"
    "CREATE INDEX events_by_session ON events(agent, session, id);"
    "CREATE INDEX events_by_type ON events(agent, type, id);"
    "CREATE INDEX events_by_at ON events(agent, at, id);"
    "CREATE INDEX events_by_run ON events(run) WHERE run IS NOT NULL;";

/* Schema 1 -> 2, one statement a line. Costs are kept in integer
 * nano-units (1e-9) instead of micro-units, so that a step of 0.0000004 is
 * not rounded away: stored costs are scaled by 1000 and read back the same.
 * A schema-1 cost outside 0..9e9 (only the old wrap-around of totals could
 * store one) becomes 9e9, the largest cost now kept. runs.owner, the run's
 * ownership epoch, starts at 0 for every run. */
#define SCALED_COST "CASE WHEN cost_nanos BETWEEN 0 AND 9000000000000000 THEN cost_nanos * 1000" \
    " ELSE 9000000000000000000 END"
static const char schema_v1_to_v2[] =
    "ALTER TABLE runs RENAME COLUMN cost_micros TO cost_nanos;"
    "ALTER TABLE steps RENAME COLUMN cost_micros TO cost_nanos;"
    "UPDATE runs SET cost_nanos = " SCALED_COST ";"
    "UPDATE steps SET cost_nanos = " SCALED_COST ";"
    "ALTER TABLE runs ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;";

/* Schema 2 -> 3: forks (forked_from, forked_seq) and runs waiting for a
 * response (request, response); every existing run has none of them. */
static const char schema_v2_to_v3[] =
    "ALTER TABLE runs ADD COLUMN forked_from TEXT;"
    "ALTER TABLE runs ADD COLUMN forked_seq INTEGER;"
    "ALTER TABLE runs ADD COLUMN request TEXT;"
    "ALTER TABLE runs ADD COLUMN response TEXT;"
    "CREATE INDEX runs_by_forked_from ON runs(forked_from) WHERE forked_from IS NOT NULL;";

/* migrations[v - 1] upgrades a file from version v to v + 1. All that a file
 * needs run in the one transaction of migrate(). */
static const char *const migrations[] = { schema_v1_to_v2, schema_v2_to_v3 };
#define SCHEMA_VERSION (1 + (int)(sizeof migrations / sizeof migrations[0]))

int sq_fail(ar_db *db, ar_err *err, int rc, const char *what)
{
    int code;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = AR_EBUSY; break;
    case SQLITE_FULL: code = AR_EFULL; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: code = AR_ECORRUPT; break;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH: code = AR_EPERM; break;
    case SQLITE_NOMEM: code = AR_ENOMEM; break;
    case SQLITE_TOOBIG: code = AR_EJSON; break;
    case SQLITE_CONSTRAINT: code = AR_ESTATE; break;
    default: code = AR_EIO; break;
    }
    const char *detail = db && db->conn ? sqlite3_errmsg(db->conn) : sqlite3_errstr(rc);
    if (code == AR_EBUSY)
        return ar_fail(err, code, "%s: the store is locked by another writer (%s)", what, detail);
    if (code == AR_EFULL)
        return ar_fail(err, code, "%s: the disk or the store is full (%s)", what, detail);
    /* SQLite's own text may name what it failed to do, not why */
    if (code == AR_ENOMEM)
        return ar_fail(err, code, "%s: out of memory (%s)", what, detail);
    if (code == AR_EJSON)
        return ar_fail(err, code, "%s: a value, or the values of one row together, are more than the store "
                       "holds (%d bytes)", what, db && db->conn ? sqlite3_limit(db->conn, SQLITE_LIMIT_LENGTH, -1) : 0);
    if (rc == SQLITE_READONLY_DIRECTORY || rc == SQLITE_READONLY_CANTINIT)
        return ar_fail(err, code, "%s: the store's directory is not writable, and SQLite must create "
                       "the -wal and -shm files beside the store even to read it (%s)", what, detail);
    return ar_fail(err, code, "%s: %s", what, detail);
}

sqlite3_stmt *sq_stmt(ar_db *db, int slot, const char *sql, ar_err *err)
{
    if (db->stmt[slot])
        return db->stmt[slot];
    int rc = sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, &db->stmt[slot], NULL);
    if (rc != SQLITE_OK) {
        sq_fail(db, err, rc, "preparing a statement");
        sqlite3_finalize(db->stmt[slot]);
        db->stmt[slot] = NULL;
    }
    return db->stmt[slot];
}

void sq_bind_int64(sqlite3_stmt *st, int i, int64_t v, int *rc)
{
    if (*rc == SQLITE_OK)
        *rc = sqlite3_bind_int64(st, i, v);
}

void sq_bind_double(sqlite3_stmt *st, int i, double v, int *rc)
{
    if (*rc == SQLITE_OK)
        *rc = sqlite3_bind_double(st, i, v);
}

void sq_bind_text(sqlite3_stmt *st, int i, const char *s, int *rc)
{
    sq_bind_textn(st, i, s, s ? strlen(s) : 0, rc);
}

void sq_bind_textn(sqlite3_stmt *st, int i, const char *s, size_t n, int *rc)
{
    if (*rc == SQLITE_OK)
        *rc = s ? sqlite3_bind_text64(st, i, s, n, SQLITE_STATIC, SQLITE_UTF8) : sqlite3_bind_null(st, i);
}

int sq_bound(ar_db *db, sqlite3_stmt *st, int rc, ar_err *err, const char *what)
{
    if (rc == SQLITE_OK)
        return AR_OK;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return sq_fail(db, err, rc, what);
}

ar_db_text sq_col_text(sqlite3_stmt *st, int col, int *nomem)
{
    ar_db_text t = { NULL, 0 };
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return t;
    t.s = (const char *)sqlite3_column_text(st, col);
    if (!t.s)
        *nomem = 1;
    else
        t.len = (size_t)sqlite3_column_bytes(st, col);
    return t;
}

int64_t sq_col_time(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? AR_UNSET : sqlite3_column_int64(st, col);
}

int sq_nomem(ar_err *err, const char *what)
{
    return ar_fail(err, AR_ENOMEM, "out of memory %s", what);
}

int sq_hold(ar_db *db, ar_db_text *const *texts, size_t n, ar_err *err)
{
    size_t need = 1;
    for (size_t i = 0; i < n; i++)
        need += texts[i]->s ? texts[i]->len + 1 : 0;
    if (need > db->hold_cap) {
        char *grown = ar_mem_realloc(db->alloc, db->hold, need);
        if (!grown)
            return ar_fail(err, AR_ENOMEM, "out of memory reading a row");
        db->hold = grown;
        db->hold_cap = need;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (!texts[i]->s)
            continue;
        memcpy(db->hold + at, texts[i]->s, texts[i]->len);
        db->hold[at + texts[i]->len] = '\0';
        texts[i]->s = db->hold + at;
        at += texts[i]->len + 1;
    }
    return AR_OK;
}

int sq_exec(ar_db *db, const char *sql, ar_err *err)
{
    int rc = sqlite3_exec(db->conn, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? AR_OK : sq_fail(db, err, rc, "store");
}

/* Runs a cached statement with no parameters and no rows. */
static int exec_cached(ar_db *db, int slot, const char *sql, ar_err *err, const char *what)
{
    sqlite3_stmt *st = sq_stmt(db, slot, sql, err);
    if (!st)
        return err->code;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? AR_OK : sq_fail(db, err, rc, what);
}

int sq_txn_begin(ar_db *db, ar_err *err)
{
    return exec_cached(db, SQ_BEGIN, "BEGIN IMMEDIATE", err, "starting a write");
}

int sq_txn_commit(ar_db *db, ar_err *err)
{
    int rc = exec_cached(db, SQ_COMMIT, "COMMIT", err, "committing");
    if (rc)
        sq_txn_rollback(db);
    return rc;
}

/* A deferred transaction that only reads: its first SELECT takes the WAL
 * read snapshot, which the later ones share; other connections write on. */
static int sq_read_begin(ar_db *db, int *begun, ar_err *err)
{
    *begun = 0;
    if (!sqlite3_get_autocommit(db->conn))
        return AR_OK;
    int rc = exec_cached(db, SQ_READ_BEGIN, "BEGIN DEFERRED", err, "starting a read");
    *begun = rc == AR_OK;
    return rc;
}

static void sq_read_end(ar_db *db)
{
    /* it wrote nothing: a COMMIT that fails leaves nothing to lose */
    ar_err ignored;
    if (!sqlite3_get_autocommit(db->conn) && exec_cached(db, SQ_COMMIT, "COMMIT", &ignored, "ending a read"))
        sq_txn_rollback(db);
}

void sq_txn_rollback(ar_db *db)
{
    if (!sqlite3_get_autocommit(db->conn)) {
        ar_err ignored;
        exec_cached(db, SQ_ROLLBACK, "ROLLBACK", &ignored, "rolling back");
        if (!sqlite3_get_autocommit(db->conn))
            sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
    }
}

static int pragma_int(ar_db *db, const char *sql, int64_t *out, ar_err *err)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            *out = 0;
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? AR_OK : sq_fail(db, err, rc, "reading the store header");
}

/* Brings a file at `version` up to SCHEMA_VERSION inside one transaction.
 * Another process may have done it meanwhile: the version is read again
 * under the write lock. */
static int migrate(ar_db *db, ar_err *err)
{
    int rc = sq_txn_begin(db, err);
    if (rc)
        return rc;
    int64_t version = 0;
    if ((rc = pragma_int(db, "PRAGMA user_version", &version, err)))
        goto cleanup;
    if (version == 0 && (rc = sq_exec(db, schema_current, err)))
        goto cleanup;
    for (int64_t v = version; v >= 1 && v < SCHEMA_VERSION; v++)
        if ((rc = sq_exec(db, migrations[v - 1], err)))
            goto cleanup;
    if (version < SCHEMA_VERSION) {
        char sql[96];
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d",
                 AR_APPLICATION_ID, SCHEMA_VERSION);
        if ((rc = sq_exec(db, sql, err)))
            goto cleanup;
    }
    return sq_txn_commit(db, err);
cleanup:
    sq_txn_rollback(db);
    return rc;
}

/* Creates a missing file with mode 0600 (runs hold prompts and outputs). */
static int create_private(const char *path, ar_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        return AR_OK;
    }
    if (errno == EEXIST)
        return AR_OK;
    return ar_fail(err, errno == EACCES || errno == EROFS ? AR_EPERM : AR_EIO,
                   "cannot create %s: %s", path, strerror(errno));
}

static int check_path(const char *path, int readonly, ar_err *err)
{
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode))
            return ar_fail(err, AR_EIO, "cannot open %s: it is a directory", path);
        return AR_OK;
    }
    if (errno != ENOENT)
        return ar_fail(err, errno == EACCES ? AR_EPERM : AR_EIO, "cannot open %s: %s", path, strerror(errno));
    if (readonly)
        return ar_fail(err, AR_EIO, "cannot open %s read-only: no such file", path);
    return create_private(path, err);
}

/* Reads application_id, user_version and the number of schema objects in
 * one read transaction, so from one snapshot: read one by one, a file that
 * another process is creating could look half made (schema present,
 * application_id 0). On failure the transaction is left open for the caller
 * to read the error; closing the connection rolls it back. */
static int header_read(ar_db *db, int64_t *app_id, int64_t *version, int64_t *objects, ar_err *err)
{
    int rc;
    if ((rc = sq_exec(db, "BEGIN", err)) ||
        (rc = pragma_int(db, "PRAGMA application_id", app_id, err)) ||
        (rc = pragma_int(db, "PRAGMA user_version", version, err)) ||
        (rc = pragma_int(db, "SELECT count(*) FROM sqlite_schema", objects, err)))
        return rc;
    return sq_exec(db, "COMMIT", err);
}

/* Reads the header and decides whether the file is a store this library can use. */
static int check_header(ar_db *db, const char *path, int64_t *version, ar_err *err)
{
    int64_t app_id = 0, objects = 0;
    int rc;
    if ((rc = header_read(db, &app_id, version, &objects, err))) {
        /* a database header over missing or scribbled pages: a damaged store, not a foreign file */
        if (rc == AR_ECORRUPT && sqlite3_errcode(db->conn) == SQLITE_CORRUPT)
            return ar_fail(err, AR_ECORRUPT, "%s is damaged (truncated or overwritten): %s", path,
                           sqlite3_errmsg(db->conn));
        if (rc == AR_ECORRUPT)
            return ar_fail(err, AR_ECORRUPT, "%s is not an agentrun store (not a database file)", path);
        return rc;
    }
    if (*version == 0 && objects == 0 && app_id == 0)
        return AR_OK; /* new, empty */
    if (app_id != AR_APPLICATION_ID)
        return ar_fail(err, AR_ECORRUPT, "%s is not an agentrun store (another application's database)", path);
    if (*version > SCHEMA_VERSION)
        return ar_fail(err, AR_EVERSION,
                       "%s was created by a newer agentrun (schema %lld; this library knows up to %d)",
                       path, (long long)*version, SCHEMA_VERSION);
    return AR_OK;
}

/* Switches the file to WAL. The switch needs the file to itself, and SQLite
 * reports another opener's lock at once instead of calling the busy handler,
 * so the busy timeout is honoured here. */
static int wal_enable(ar_db *db, int timeout_ms, ar_err *err)
{
    int waited = 0;
    for (;;) {
        int rc = sqlite3_exec(db->conn, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            return AR_OK;
        if ((rc & 0xff) != SQLITE_BUSY || waited >= timeout_ms)
            return sq_fail(db, err, rc, "switching the store to WAL");
        int slept = sqlite3_sleep(1);
        waited += slept > 0 ? slept : 1;
    }
}

/* The name SQLite opens for `path`. A build may read names that begin with
 * "file:" as URIs (Debian's does, for every connection), which would open
 * another file, or memory, than the one created and checked here; with
 * "./" in front such a name is a plain relative file name again, the same
 * file. *owned gets what to free (NULL when `path` itself is the name). */
static const char *sqlite_name(const char *path, const ar_allocator *alloc, char **owned)
{
    *owned = NULL;
    if (strncmp(path, "file:", 5) != 0)
        return path;
    size_t n = strlen(path);
    if (!(*owned = ar_mem_alloc(alloc, n + 3)))
        return NULL;
    memcpy(*owned, "./", 2);
    memcpy(*owned + 2, path, n + 1);
    return *owned;
}

static void sq_close(ar_db *db);

static int sq_open(ar_db **out, const char *path, const ar_open_opts *opts,
                   const ar_allocator *alloc, ar_err *err)
{
    *out = NULL;
    ar_db *db = ar_mem_alloc(alloc, sizeof *db);
    if (!db)
        return ar_fail(err, AR_ENOMEM, "out of memory opening %s", path);
    memset(db, 0, sizeof *db);
    db->alloc = alloc;
    db->readonly = opts->readonly;
    int memory = strcmp(path, ":memory:") == 0;
    int rc = memory ? AR_OK : check_path(path, opts->readonly, err);
    if (rc)
        goto fail;
    int flags = (opts->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    char *owned;
    const char *name = sqlite_name(path, alloc, &owned);
    if (!name) {
        rc = ar_fail(err, AR_ENOMEM, "out of memory opening %s", path);
        goto fail;
    }
    int src = sqlite3_open_v2(name, &db->conn, flags, NULL);
    ar_mem_free(alloc, owned);
    if (src != SQLITE_OK) {
        rc = sq_fail(db, err, src, path);
        if (rc == AR_EIO && src == SQLITE_CANTOPEN)
            rc = ar_fail(err, access(path, F_OK) == 0 ? AR_EPERM : AR_EIO, "cannot open %s", path);
        goto fail;
    }
    sqlite3_busy_timeout(db->conn, opts->busy_timeout_ms);
    int64_t version = 0;
    if ((rc = check_header(db, path, &version, err)))
        goto fail;
    if (version == 0 && opts->readonly) {
        rc = ar_fail(err, AR_ECORRUPT, "%s is not an agentrun store (empty file opened read-only)", path);
        goto fail;
    }
    /* an older schema reads differently (costs in micro-units before 2); it
     * is upgraded by a writable open, never read half-understood */
    if (version < SCHEMA_VERSION && opts->readonly) {
        rc = ar_fail(err, AR_EVERSION,
                     "%s is in schema %lld, made by an older agentrun: open it writable once to upgrade it "
                     "to schema %d, then it can be opened read-only", path, (long long)version, SCHEMA_VERSION);
        goto fail;
    }
    if (!opts->readonly) {
        if (version == 0 && (rc = sq_exec(db, "PRAGMA page_size = 8192", err)))
            goto fail;
        if (!memory && (rc = wal_enable(db, opts->busy_timeout_ms, err)))
            goto fail;
    }
    rc = sq_exec(db, opts->durability == AR_DURABILITY_NORMAL ? "PRAGMA synchronous = NORMAL"
                                                               : "PRAGMA synchronous = FULL", err);
    if (rc || (rc = sq_exec(db, "PRAGMA journal_size_limit = 67108864", err)))
        goto fail;
    if (!opts->readonly && version < SCHEMA_VERSION && (rc = migrate(db, err)))
        goto fail;
    size_t n = strlen(path);
    if (!(db->path = ar_mem_alloc(alloc, n + 1))) {
        rc = ar_fail(err, AR_ENOMEM, "out of memory opening %s", path);
        goto fail;
    }
    memcpy(db->path, path, n + 1);
    *out = db;
    return AR_OK;
fail:
    /* the caller closes what *out holds, as for every backend */
    *out = db;
    return rc;
}

static void sq_close(ar_db *db)
{
    if (!db)
        return;
    /* rolling back may prepare the cached ROLLBACK: finalize after it, or
     * close_v2 would leave a zombie connection holding the file */
    if (db->conn)
        sq_txn_rollback(db);
    for (int i = 0; i < SQ_COUNT; i++)
        sqlite3_finalize(db->stmt[i]);
    if (db->conn)
        sqlite3_close_v2(db->conn);
    ar_mem_free(db->alloc, db->path);
    ar_mem_free(db->alloc, db->hold);
    ar_mem_free(db->alloc, db);
}

static const char *sq_display_path(ar_db *db)
{
    return db->path;
}

static int sq_info(ar_db *db, ar_store_info *out, ar_err *err)
{
    int64_t version = 0;
    int rc;
    if ((rc = pragma_int(db, "PRAGMA user_version", &version, err)) ||
        (rc = pragma_int(db, "SELECT count(*) FROM runs", &out->runs, err)) ||
        (rc = pragma_int(db, "SELECT count(*) FROM steps", &out->steps, err)) ||
        (rc = pragma_int(db, "SELECT count(*) FROM events", &out->events, err)))
        return rc;
    out->schema_version = (int)version;
    return AR_OK;
}

int sq_sizes(ar_db *db, ar_db_sizes *out, ar_err *err)
{
    int64_t page_size = 0, pages = 0, free_pages = 0;
    int rc;
    memset(out, 0, sizeof *out);
    if ((rc = pragma_int(db, "PRAGMA page_size", &page_size, err)) ||
        (rc = pragma_int(db, "PRAGMA page_count", &pages, err)) ||
        (rc = pragma_int(db, "PRAGMA freelist_count", &free_pages, err)))
        return rc;
    /* an in-memory store has no file to measure: its pages are its size */
    out->file_bytes = pages * page_size;
    out->free_bytes = free_pages * page_size;
    if (strcmp(db->path, ":memory:") == 0)
        return AR_OK;
    struct stat sb;
    if (stat(db->path, &sb) != 0)
        return ar_fail(err, AR_EIO, "cannot measure %s: %s", db->path, strerror(errno));
    out->file_bytes = (int64_t)sb.st_size;
    char wal[4096];
    int len = snprintf(wal, sizeof wal, "%s-wal", db->path);
    /* no WAL file (yet, or any more) takes no room */
    if (len > 0 && (size_t)len < sizeof wal && stat(wal, &sb) == 0)
        out->wal_bytes = (int64_t)sb.st_size;
    return AR_OK;
}

/* PRAGMA integrity_check: one row "ok", or a row per problem found. */
int sq_integrity(ar_db *db, int (*visit)(void *ud, const char *problem), void *ud, ar_err *err)
{
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(db->conn, "PRAGMA integrity_check", -1, &st, NULL);
    int rc = AR_OK;
    if (src != SQLITE_OK) {
        rc = sq_fail(db, err, src, "checking the file's integrity");
        goto cleanup;
    }
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(st, 0);
        if (!line) {
            rc = sq_fail(db, err, SQLITE_NOMEM, "checking the file's integrity");
            goto cleanup;
        }
        if (strcmp(line, "ok") != 0 && (rc = visit(ud, line)))
            goto cleanup;
    }
    if (src != SQLITE_DONE)
        rc = sq_fail(db, err, src, "checking the file's integrity");
cleanup:
    sqlite3_finalize(st);
    return rc;
}

const ar_backend ar_sqlite_backend = {
    AR_BACKEND_VERSION,
    "sqlite",
    sq_open, sq_close, sq_display_path, sq_info,
    sq_txn_begin, sq_txn_commit, sq_txn_rollback,
    sq_run_insert, sq_step_insert,
    sq_step_append, sq_checkpoint_save, sq_run_touch, sq_run_finish, sq_run_reopen,
    sq_run_wait, sq_run_respond, sq_steps_sums, sq_fork_copy,
    sq_run_load, sq_run_exists, sq_steps_fetch,
    sq_runs_list, sq_runs_count, sq_runs_stats, sq_forget_user,
    sq_checkpoint_put, sq_checkpoint_get, sq_recover,
    sq_retain_scan, sq_retain_delete, sq_retain_count_steps, sq_sizes, sq_compact, NULL,
    sq_event_insert, sq_events_list, sq_events_count, sq_events_summary,
    sq_events_delete, sq_events_delete_before, sq_events_keep_last,
    sq_events_scan, sq_event_put,
    sq_integrity,
    sq_read_begin, sq_read_end,
};
