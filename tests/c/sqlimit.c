/* sqlimit.c -- a test-only door to SQLite's length limit on every connection opened (never built into the library). */
#include "sqlimit.h"

#include <sqlite3.h>

static int limit_bytes;

/* Called by SQLite for each new connection, before the caller sees it. */
static int apply_limit(sqlite3 *db, const char **errmsg, const struct sqlite3_api_routines *api)
{
    (void)errmsg;
    (void)api;
    if (limit_bytes > 0)
        sqlite3_limit(db, SQLITE_LIMIT_LENGTH, limit_bytes);
    return SQLITE_OK;
}

int sqlimit_length(int bytes)
{
    limit_bytes = bytes > 0 ? bytes : 0;
    if (limit_bytes)
        return sqlite3_auto_extension((void (*)(void))apply_limit);
    sqlite3_cancel_auto_extension((void (*)(void))apply_limit);
    return SQLITE_OK;
}
