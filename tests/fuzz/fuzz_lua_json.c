/* fuzz_lua_json.c -- libFuzzer: Lua values built from the input encode to valid JSON that decodes to the same value, or raise EJSON. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int luaopen_agentrun_core(lua_State *L);

#define MAX_BUILD_DEPTH 600     /* past the encoder's 512, so "too deep" is reached too */

/* Stack slots of the state made once: the module, the array metatable, the
 * list of tables made for the current input (targets of back references). */
enum { MODULE = 1, ARRAY_MT, MADE };

static lua_State *L;

typedef struct input {
    const uint8_t *p, *end;
} input;

static unsigned byte(input *in)
{
    return in->p < in->end ? *in->p++ : 0;
}

static uint64_t bytes8(input *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | byte(in);
    return v;
}

static void push_value(input *in, int depth);

/* Pushes a key for an object-ish table: mostly strings, sometimes integers,
 * floats or booleans (which make the table not an object). */
static void push_key(input *in)
{
    unsigned op = byte(in) % 8;
    if (op == 0) {
        lua_pushinteger(L, (lua_Integer)(byte(in) % 5) + 1);
    } else if (op == 1) {
        lua_pushnumber(L, (lua_Number)byte(in) / 2.0);
    } else if (op == 2) {
        lua_pushboolean(L, 1);
    } else {
        size_t n = byte(in) % 6;
        char key[8];
        for (size_t i = 0; i < n; i++)
            key[i] = (char)(op >= 6 ? byte(in) : 'a' + byte(in) % 4);
        lua_pushlstring(L, key, n);
    }
}

/* A new table, remembered for back references; it stays on the stack. */
static void new_table(void)
{
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawseti(L, MADE, (lua_Integer)lua_rawlen(L, MADE) + 1);
}

/* Pushes one Lua value described by the input. */
static void push_value(input *in, int depth)
{
    luaL_checkstack(L, 4, "building a value");
    unsigned op = byte(in) % 13;
    if (depth >= MAX_BUILD_DEPTH && op >= 7)
        op = 3;
    switch (op) {
    case 0: lua_pushnil(L); break;
    case 1: lua_pushboolean(L, byte(in) & 1); break;
    case 2: lua_pushinteger(L, (lua_Integer)bytes8(in)); break;
    case 3: lua_pushinteger(L, (lua_Integer)(int8_t)byte(in)); break;
    case 4: {
        uint64_t bits = bytes8(in);
        double d;
        memcpy(&d, &bits, sizeof d);
        lua_pushnumber(L, d);   /* NaN and infinities too */
        break;
    }
    case 5: lua_pushnumber(L, ((double)(int8_t)byte(in)) / 4.0); break;
    case 6: {
        size_t n = byte(in) % 12;
        char s[12];
        for (size_t i = 0; i < n; i++)
            s[i] = (char)byte(in);
        lua_pushlstring(L, s, n);
        break;
    }
    case 7:
    case 8: {
        /* a list: items 1..n, some of them nil (holes), maybe marked as an array */
        new_table();
        unsigned n = byte(in) % 6;
        for (unsigned i = 1; i <= n; i++) {
            push_value(in, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i);
        }
        if (op == 8) {
            lua_pushvalue(L, ARRAY_MT);
            lua_setmetatable(L, -2);
        }
        break;
    }
    case 9:
    case 10: {
        new_table();
        unsigned n = byte(in) % 5;
        for (unsigned i = 0; i < n; i++) {
            push_key(in);
            push_value(in, depth + 1);
            lua_rawset(L, -3);
        }
        break;
    }
    case 11: lua_getfield(L, MODULE, "null"); break;
    default: {
        /* a table made earlier: shared or, when it is an ancestor, a cycle */
        lua_Integer made = (lua_Integer)lua_rawlen(L, MADE);
        if (made == 0)
            lua_pushnil(L);
        else
            lua_rawgeti(L, MADE, 1 + (lua_Integer)byte(in) % made);
        break;
    }
    }
}

/* ---- a canonical text of an encodable value: object keys sorted, numbers
 * by value (so 2 and 2.0 agree), -0 as 0 --------------------------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static int is_array(int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    int yes = lua_rawequal(L, -1, ARRAY_MT);
    lua_pop(L, 1);
    return yes;
}

static int by_text(const void *a, const void *b)
{
    const buf *x = a, *y = b;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->p, y->p, n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

static void canon(int idx, buf *b);

static void canon_string(int idx, buf *b)
{
    size_t n;
    lua_pushvalue(L, idx);      /* a copy: converting a key in place would upset lua_next */
    const char *s = lua_tolstring(L, -1, &n);
    char head[32];
    snprintf(head, sizeof head, "s%zu:", n);
    put(b, head, strlen(head));
    put(b, s, n);
    lua_pop(L, 1);
}

/* Tables: arrays (marked, or keys exactly 1..n with n >= 1) as [..], the
 * rest as objects with their keys sorted. */
static void canon_table(int idx, buf *b)
{
    lua_Integer n = 0, count = 0;
    int integer_keys = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
        if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
            if (lua_tointeger(L, -1) > n)
                n = lua_tointeger(L, -1);
        } else {
            integer_keys = 0;
        }
    }
    if (is_array(idx) || (count > 0 && integer_keys && n == count)) {
        put(b, "[", 1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            canon(lua_gettop(L), b);
            lua_pop(L, 1);
            put(b, ",", 1);
        }
        put(b, "]", 1);
        return;
    }
    buf *items = calloc((size_t)count + 1, sizeof *items);
    if (!items)
        abort();
    size_t k = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        canon_string(lua_gettop(L) - 1, &items[k]);
        put(&items[k], "=", 1);
        canon(lua_gettop(L), &items[k]);
        lua_pop(L, 1);
        k++;
    }
    qsort(items, k, sizeof *items, by_text);
    put(b, "{", 1);
    for (size_t i = 0; i < k; i++) {
        put(b, items[i].p, items[i].n);
        put(b, ",", 1);
        free(items[i].p);
    }
    put(b, "}", 1);
    free(items);
}

static void canon(int idx, buf *b)
{
    char num[64];
    luaL_checkstack(L, 4, "canonical text");
    switch (lua_type(L, idx)) {
    case LUA_TNIL: put(b, "null", 4); break;
    case LUA_TLIGHTUSERDATA: put(b, "null", 4); break;
    case LUA_TBOOLEAN: put(b, lua_toboolean(L, idx) ? "true" : "false", lua_toboolean(L, idx) ? 4 : 5); break;
    case LUA_TNUMBER: {
        double d = lua_isinteger(L, idx) ? (double)lua_tointeger(L, idx) : lua_tonumber(L, idx);
        snprintf(num, sizeof num, "%.17g", d == 0 ? 0.0 : d);
        put(b, num, strlen(num));
        break;
    }
    case LUA_TSTRING: canon_string(idx, b); break;
    case LUA_TTABLE: canon_table(idx, b); break;
    default: abort(); /* nothing else is ever accepted */
    }
}

/* ---- the property ------------------------------------------------------- */

static void setup(void)
{
    L = luaL_newstate();
    if (!L)
        abort();
    luaL_openlibs(L);
    luaL_requiref(L, "agentrun.core", luaopen_agentrun_core, 0);    /* MODULE */
    lua_getfield(L, MODULE, "array");
    lua_newtable(L);
    lua_call(L, 1, 1);
    if (!lua_getmetatable(L, -1))                                    /* ARRAY_MT */
        abort();
    lua_remove(L, -2);
}

/* Calls module function `name` on the value at idx under pcall; leaves the
 * result (or the error) on the stack and returns the pcall status. */
static int call(const char *name, int idx)
{
    lua_getfield(L, MODULE, name);
    lua_pushvalue(L, idx);
    return lua_pcall(L, 1, 1, 0);
}

/* An encoding refusal must be an agentrun.Error with code EJSON. */
static void expect_ejson(int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE)
        abort();
    lua_getfield(L, MODULE, "Error");
    if (!lua_getmetatable(L, idx) || !lua_rawequal(L, -1, -2))
        abort();
    lua_pop(L, 2);
    lua_getfield(L, idx, "code");
    if (!lua_isstring(L, -1) || strcmp(lua_tostring(L, -1), "EJSON") != 0)
        abort();
    lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L)
        setup();
    input in = { data, data + size };
    lua_settop(L, ARRAY_MT);
    lua_newtable(L);                                                 /* MADE */
    push_value(&in, 0);
    int value = lua_gettop(L);
    if (call("json_encode", value) != LUA_OK) {
        expect_ejson(-1);
    } else {
        size_t len;
        const char *json = lua_tolstring(L, -1, &len);
        if (ar_json_validate(json, len, NULL, 0) != 0) {
            fprintf(stderr, "json_encode gave invalid JSON: %.*s\n", (int)(len < 300 ? len : 300), json);
            abort();
        }
        int text = lua_gettop(L);
        if (call("json_decode", text) != LUA_OK) {
            fprintf(stderr, "json_decode refused json_encode's output: %s\n", luaL_tolstring(L, -1, NULL));
            abort();
        }
        buf want = { NULL, 0, 0 }, got = { NULL, 0, 0 };
        canon(value, &want);
        canon(lua_gettop(L), &got);
        if (want.n != got.n || memcmp(want.p, got.p, want.n) != 0) {
            fprintf(stderr, "round trip changed the value:\n json %.*s\n want %s\n got  %s\n",
                    (int)(len < 300 ? len : 300), json, want.p, got.p);
            abort();
        }
        free(want.p);
        free(got.p);
    }
    lua_settop(L, ARRAY_MT);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
