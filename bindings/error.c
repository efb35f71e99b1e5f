/* error.c -- agentrun.Error objects: {code = "EJSON", message = "..."} tables. */
#include "arl.h"

#include <stdarg.h>
#include <stdio.h>

/* __tostring: "agentrun: CODE: message". Reads the fields raw, so a table
 * whose fields were replaced still prints (as "nil" or the value's text). */
static int error_tostring(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushliteral(L, "code");
    lua_rawget(L, 1);
    lua_pushliteral(L, "message");
    lua_rawget(L, 1);
    const char *code = luaL_tolstring(L, 2, NULL);
    const char *msg = luaL_tolstring(L, 3, NULL);
    lua_pushfstring(L, "agentrun: %s: %s", code, msg);
    return 1;
}

/* Pushes the Error metatable, creating it on first use so that an error can
 * be raised even before arl_open_error ran. */
static void push_error_mt(lua_State *L)
{
    if (luaL_newmetatable(L, ARL_ERROR_MT)) {
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
    }
}

/* Pushes {code = ar_code_name(code), message = msg} with the Error metatable.
 * Raises only a memory error. */
void arl_push_error(lua_State *L, int code, const char *msg)
{
    lua_createtable(L, 0, 2);
    lua_pushstring(L, ar_code_name(code));
    lua_setfield(L, -2, "code");
    lua_pushstring(L, msg ? msg : "");
    lua_setfield(L, -2, "message");
    push_error_mt(L);
    lua_setmetatable(L, -2);
}

/* Formats the message with printf rules (vsnprintf: %s, %d, %zu, %lld, ...;
 * not Lua's %I), of any length, and raises an Error object with it. Never
 * returns; the int return lets callers write `return arl_raise(...)`. */
int arl_raise(lua_State *L, int code, const char *fmt, ...)
{
    char local[512];
    const char *msg = local;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(local, sizeof local, fmt, ap);
    va_end(ap);
    if (n < 0) {
        msg = fmt;
    } else if ((size_t)n >= sizeof local) {
        /* A Lua-owned block: freed by the collector even though we longjmp. */
        char *big = lua_newuserdatauv(L, (size_t)n + 1, 0);
        vsnprintf(big, (size_t)n + 1, fmt, again);
        msg = big;
    }
    va_end(again);
    arl_push_error(L, code, msg);
    return lua_error(L);
}

/* Registers the Error metatable under ARL_ERROR_MT; leaves the stack as it
 * was. Raises only a memory error. */
void arl_open_error(lua_State *L)
{
    push_error_mt(L);
    lua_pop(L, 1);
}
