/* args.c -- checking the tables and arguments Lua callers pass: types, unknown fields, ranges. */
#include "arl.h"

#include <string.h>

/* The core's UTF-8 rule (core/private): text the core would refuse is refused here. */
#include "agentrun_json.h"

/* Every check here raises through arl_argerror: the message names the
 * running function and `arg`, the argument the checked value belongs to. */

void arl_check_fields(lua_State *L, int arg, int idx, const char *what, const char *const *allowed)
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            arl_argerror(L, arg, "%s: field names must be strings (got a %s key)", what, luaL_typename(L, -1));
        const char *key = lua_tostring(L, -1);
        int known = 0;
        for (const char *const *a = allowed; *a && !known; a++)
            known = strcmp(*a, key) == 0;
        if (!known)
            arl_argerror(L, arg, "unknown field '%s' in %s", key, what);
    }
}

/* Checks the string at idx is storable text. */
static const char *text_at(lua_State *L, int arg, int idx, const char *what, const char *field)
{
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (strlen(s) != n)
        arl_argerror(L, arg, "%s%s%s contains a NUL byte", what, field ? "." : "", field ? field : "");
    if (!ar_utf8_valid(s, n))
        arl_argerror(L, arg, "%s%s%s is not valid UTF-8", what, field ? "." : "", field ? field : "");
    return s;
}

const char *arl_check_text(lua_State *L, int arg, int idx, const char *what)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        arl_argerror(L, arg, "%s must be a string (got %s)", what, luaL_typename(L, idx));
    return text_at(L, arg, idx, what, NULL);
}

/* Pushes t[field]; returns its type. */
static int get(lua_State *L, int idx, const char *field)
{
    return lua_getfield(L, idx, field);
}

const char *arl_field_text(lua_State *L, int arg, int idx, const char *what, const char *field, int required)
{
    int t = get(L, idx, field);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        if (required)
            arl_argerror(L, arg, "%s.%s is required", what, field);
        return NULL;
    }
    if (t != LUA_TSTRING)
        arl_argerror(L, arg, "%s.%s must be a string (got %s)", what, field, lua_typename(L, t));
    /* the string stays referenced by the table, so popping it is safe */
    const char *s = text_at(L, arg, -1, what, field);
    lua_pop(L, 1);
    return s;
}

const char *arl_field_json(lua_State *L, int arg, int idx, const char *what, const char *field, arl_buf *buf)
{
    int t = get(L, idx, field);
    const char *json = NULL;
    if (t != LUA_TNIL) {
        if (t != LUA_TTABLE)
            arl_argerror(L, arg, "%s.%s must be a table (got %s)", what, field, lua_typename(L, t));
        buf->len = 0;
        arl_json_encode(L, -1, field, buf);
        arl_buf_add(L, buf, "", 1); /* the core takes it as a C string */
        json = buf->data;
    }
    lua_pop(L, 1);
    return json;
}

/* Longest part of a string shown in a message. */
#define SHOW_MAX 48

const char *arl_show_value(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return lua_pushliteral(L, "nil");
    case LUA_TBOOLEAN:
        return lua_pushstring(L, lua_toboolean(L, idx) ? "boolean true" : "boolean false");
    case LUA_TNUMBER:
        /* a copy, so the number itself is not turned into a string */
        lua_pushvalue(L, idx);
        lua_pushfstring(L, "number %s", lua_tostring(L, -1));
        lua_remove(L, -2);
        return lua_tostring(L, -1);
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (n <= SHOW_MAX)
            return lua_pushfstring(L, "string \"%s\"", s);
        lua_pushlstring(L, s, SHOW_MAX);
        lua_pushfstring(L, "string \"%s...\" (%I bytes)", lua_tostring(L, -1), (lua_Integer)n);
        lua_remove(L, -2);
        return lua_tostring(L, -1);
    }
    default:
        return lua_pushfstring(L, "a %s value", luaL_typename(L, idx));
    }
}

int64_t arl_to_count(lua_State *L, int arg, int idx, const char *what)
{
    int isint = 0;
    lua_Integer v = 0;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        v = lua_tointegerx(L, idx, &isint);
        /* a float past int64 (1e300, math.huge; all integral) is still a
         * count given: out of the core's range, which the core then states */
        lua_Number f = lua_tonumber(L, idx);
        if (!isint && (f >= 0x1p63 || f < -0x1p63)) {
            v = f > 0 ? LUA_MAXINTEGER : LUA_MININTEGER;
            isint = 1;
        }
    }
    if (!isint)
        arl_argerror(L, arg, "%s must be an integer (got %s)", what,
                     lua_type(L, idx) == LUA_TNUMBER ? "a non-integral number" : luaL_typename(L, idx));
    return (int64_t)v;
}

int64_t arl_field_int(lua_State *L, int arg, int idx, const char *what, const char *field, int64_t dflt, int64_t min)
{
    int t = get(L, idx, field);
    int64_t v = dflt;
    if (t != LUA_TNIL) {
        int isint = 0;
        lua_Integer x = t == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
        if (!isint)
            arl_argerror(L, arg, "%s.%s must be an integer (got %s)", what, field,
                         t == LUA_TNUMBER ? "a non-integral number" : lua_typename(L, t));
        if (x < min)
            arl_argerror(L, arg, "%s.%s must be >= %I", what, field, (lua_Integer)min);
        v = (int64_t)x;
    }
    lua_pop(L, 1);
    return v;
}

double arl_field_number(lua_State *L, int arg, int idx, const char *what, const char *field, double dflt,
                        int nonneg)
{
    int t = get(L, idx, field);
    double v = dflt;
    if (t != LUA_TNIL) {
        if (t != LUA_TNUMBER)
            arl_argerror(L, arg, "%s.%s must be a number (got %s)", what, field, lua_typename(L, t));
        v = (double)lua_tonumber(L, -1);
        if (nonneg && v < 0)
            arl_argerror(L, arg, "%s.%s must not be negative", what, field);
    }
    lua_pop(L, 1);
    return v;
}

int arl_field_bool(lua_State *L, int arg, int idx, const char *what, const char *field, int dflt)
{
    int t = get(L, idx, field);
    int v = dflt;
    if (t != LUA_TNIL) {
        if (t != LUA_TBOOLEAN)
            arl_argerror(L, arg, "%s.%s must be a boolean (got %s)", what, field, lua_typename(L, t));
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

void arl_check_page(lua_State *L, int idx, const char *what, int64_t *since, int64_t *until, int64_t *limit,
                    const char **after, const char **before, int *order)
{
    *since = arl_field_int(L, idx, idx, what, "since", *since, INT64_MIN + 1);
    *until = arl_field_int(L, idx, idx, what, "until", *until, INT64_MIN + 1);
    *limit = arl_field_int(L, idx, idx, what, "limit", *limit, 0);
    *after = arl_field_text(L, idx, idx, what, "after", 0);
    *before = arl_field_text(L, idx, idx, what, "before", 0);
    const char *o = arl_field_text(L, idx, idx, what, "order", 0);
    if (o && strcmp(o, "asc") == 0)
        *order = AR_ORDER_ASC;
    else if (o && strcmp(o, "desc") == 0)
        *order = AR_ORDER_DESC;
    else if (o)
        arl_argerror(L, idx, "%s.order must be \"asc\" or \"desc\" (got \"%s\")", what, o);
}
