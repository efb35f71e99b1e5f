/* faultvfs_lua.c -- test-only Lua module "faultvfs": lets Lua specs arm the fault VFS shim, lower
 * SQLite's length limit and write to a store file as another program would (never installed). */
#include <lua.h>
#include <lauxlib.h>

#include <sqlite3.h>

#include "faultvfs.h"
#include "sqlimit.h"

int luaopen_faultvfs(lua_State *L);

/* faultvfs.install(): makes the shim SQLite's default VFS, so stores opened
 * afterwards go through it. Raises when SQLite refuses. */
static int l_install(lua_State *L)
{
    int rc = faultvfs_install();
    if (rc != SQLITE_OK)
        return luaL_error(L, "faultvfs.install: %s", sqlite3_errstr(rc));
    return 0;
}

/* faultvfs.uninstall(): the wrapped VFS is the default again; disarms. */
static int l_uninstall(lua_State *L)
{
    (void)L;
    faultvfs_uninstall();
    return 0;
}

/* faultvfs.arm(kind, nth [, {persistent = bool, full = bool}]): from now on
 * the nth operation of `kind` ("read", "write", "sync", "truncate") fails,
 * and with persistent every later one too; with full, the failure is
 * SQLITE_FULL (a full disk) instead of the kind's I/O error. */
static int l_arm(lua_State *L)
{
    static const char *const kinds[] = { "read", "write", "sync", "truncate", NULL };
    static const unsigned bits[] = { FAULTVFS_READ, FAULTVFS_WRITE, FAULTVFS_SYNC, FAULTVFS_TRUNCATE };
    int kind = luaL_checkoption(L, 1, NULL, kinds);
    lua_Integer nth = luaL_checkinteger(L, 2);
    luaL_argcheck(L, nth >= 1, 2, "must be at least 1");
    int persistent = 0, full = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "persistent");
        persistent = lua_toboolean(L, -1);
        lua_getfield(L, 3, "full");
        full = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    faultvfs_arm(bits[kind], (long)nth, persistent, full ? SQLITE_FULL : 0);
    return 0;
}

/* faultvfs.clear(): no more failures (the count goes on). */
static int l_clear(lua_State *L)
{
    (void)L;
    faultvfs_clear();
    return 0;
}

/* faultvfs.count() -> operations of the armed kind since arm. */
static int l_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)faultvfs_count());
    return 1;
}

/* faultvfs.fired() -> failures injected since arm. */
static int l_fired(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)faultvfs_fired());
    return 1;
}

/* faultvfs.limit_length(bytes): stores opened from now on hold strings,
 * blobs and rows of at most `bytes` (SQLITE_LIMIT_LENGTH); 0 stops it. */
static int l_limit_length(lua_State *L)
{
    lua_Integer bytes = luaL_checkinteger(L, 1);
    luaL_argcheck(L, bytes >= 0 && bytes <= 0x7fffffff, 1, "must be in 0..2^31-1");
    int rc = sqlimit_length((int)bytes);
    if (rc != SQLITE_OK)
        return luaL_error(L, "faultvfs.limit_length: %s", sqlite3_errstr(rc));
    return 0;
}

/* faultvfs.exec(path, sql) -> rows changed: runs SQL on the file through a
 * connection of its own, as another program would; raises on failure. */
static int l_exec(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *sql = luaL_checkstring(L, 2);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    char *msg = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    int changed = db ? sqlite3_changes(db) : 0;
    if (rc != SQLITE_OK) {
        lua_pushfstring(L, "faultvfs.exec: %s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        sqlite3_close(db);
        return lua_error(L);
    }
    sqlite3_close(db);
    lua_pushinteger(L, changed);
    return 1;
}

int luaopen_faultvfs(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "install", l_install }, { "uninstall", l_uninstall }, { "arm", l_arm },
        { "clear", l_clear }, { "count", l_count }, { "fired", l_fired },
        { "limit_length", l_limit_length }, { "exec", l_exec }, { NULL, NULL }
    };
    luaL_newlib(L, fns);
    return 1;
}
