/* error.c -- agentrun.Error objects, misuse errors that name their call, the text kept for a failure. */
#include "arl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

/* ---- misuse errors -------------------------------------------------------- */

/* The registry table that maps each binding function to its Lua name: "open"
 * for a module function, ":step" for a method (the colon: its first argument
 * is the handle). Lua finds a name only for a function called by name from
 * Lua code; called through pcall, a local or a wrapper it has none, and
 * luaL_argerror then prints '?'. */
#define NAMES_KEY "agentrun.names"

void arl_setfuncs(lua_State *L, const luaL_Reg *l, int methods)
{
    luaL_checkstack(L, 4, NULL);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, NAMES_KEY);
    for (; l->name; l++) {
        lua_pushcfunction(L, l->func);
        lua_pushvalue(L, -1);
        lua_setfield(L, -4, l->name);
        if (methods)
            lua_pushfstring(L, ":%s", l->name);
        else
            lua_pushstring(L, l->name);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
}

/* Pushes the Lua name of the running function as registered (with its colon
 * for a method), or the name Lua knows it by, or nil. */
static void push_running_name(lua_State *L)
{
    lua_Debug ar;
    if (!lua_getstack(L, 0, &ar)) {
        lua_pushnil(L);
        return;
    }
    lua_getinfo(L, "fn", &ar);
    lua_getfield(L, LUA_REGISTRYINDEX, NAMES_KEY);
    if (lua_istable(L, -1)) {
        lua_pushvalue(L, -2);
        lua_rawget(L, -2);
    } else {
        lua_pushnil(L);
    }
    if (lua_isnil(L, -1) && ar.name) {
        lua_pop(L, 1);
        lua_pushstring(L, ar.name);
    }
    lua_replace(L, -3);
    lua_pop(L, 1);
}

int arl_argerror(lua_State *L, int arg, const char *fmt, ...)
{
    luaL_checkstack(L, 8, NULL);
    va_list ap;
    va_start(ap, fmt);
    const char *detail = lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    push_running_name(L);
    const char *name = lua_tostring(L, -1);
    luaL_where(L, 1);
    const char *where = lua_tostring(L, -1);
    if (!name)
        lua_pushfstring(L, "%sbad argument #%d (%s)", where, arg, detail);
    else if (name[0] != ':')
        lua_pushfstring(L, "%sbad argument #%d to '%s' (%s)", where, arg, name, detail);
    else if (arg > 1)
        lua_pushfstring(L, "%sbad argument #%d to '%s' (%s)", where, arg - 1, name + 1, detail);
    else
        lua_pushfstring(L, "%scalling '%s' on bad self (%s)", where, name + 1, detail);
    return lua_error(L);
}

/* "<type> expected, got <type>" as luaL_typeerror words it. */
static int type_error(lua_State *L, int arg, const char *expected)
{
    const char *got;
    if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING)
        got = lua_tostring(L, -1);
    else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA)
        got = "light userdata";
    else
        got = luaL_typename(L, arg);
    return arl_argerror(L, arg, "%s expected, got %s", expected, got);
}

void *arl_checkudata(lua_State *L, int arg, const char *tname)
{
    void *p = luaL_testudata(L, arg, tname);
    if (!p)
        type_error(L, arg, tname);
    return p;
}

void arl_checktype(lua_State *L, int arg, int t)
{
    if (lua_type(L, arg) != t)
        type_error(L, arg, lua_typename(L, t));
}

void arl_checkany(lua_State *L, int arg)
{
    if (lua_type(L, arg) == LUA_TNONE)
        arl_argerror(L, arg, "value expected");
}

/* ---- the text of a failure ---------------------------------------------- */

/* Under lua_pcall: pushes what __tostring makes of the value at 1, or nothing. */
static int try_tostring(lua_State *L)
{
    if (luaL_getmetafield(L, 1, "__tostring") == LUA_TNIL)
        return 0;
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return lua_type(L, -1) == LUA_TSTRING ? 1 : 0;
}

/* Under lua_pcall: pushes the value's `message` field when it is a string, or nothing. */
static int try_message(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TTABLE)
        return 0;
    return lua_getfield(L, 1, "message") == LUA_TSTRING ? 1 : 0;
}

/* Calls fn(value at idx) protected; leaves its string result and returns 1,
 * or leaves nothing and returns 0 (no result, or an error). */
static int try_text(lua_State *L, lua_CFunction fn, int idx)
{
    lua_pushcfunction(L, fn);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

const char *arl_error_text(lua_State *L, int idx, const char *dflt)
{
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 6, NULL);
    int t = lua_type(L, idx);
    if (t == LUA_TNONE || t == LUA_TNIL)
        lua_pushstring(L, dflt);
    else if (t == LUA_TSTRING)
        lua_pushvalue(L, idx);
    else if (try_text(L, try_tostring, idx) || try_text(L, try_message, idx))
        ;
    else if (t == LUA_TNUMBER || t == LUA_TBOOLEAN)
        luaL_tolstring(L, idx, NULL); /* no __tostring: tried above */
    else
        lua_pushfstring(L, "(an error value of type %s, without a message)", lua_typename(L, t));
    return arl_nul_replaced(L);
}

const char *arl_nul_replaced(lua_State *L)
{
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (strlen(s) == n)
        return s;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        if (s[i])
            luaL_addchar(&b, s[i]);
        else
            luaL_addstring(&b, "\xEF\xBF\xBD");
    }
    luaL_pushresult(&b);
    lua_remove(L, -2);
    return lua_tostring(L, -1);
}
