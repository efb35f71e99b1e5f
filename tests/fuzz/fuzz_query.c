/* fuzz_query.c -- libFuzzer: query and policy tables built from the input, given to the Lua store methods, never crash or change the store. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int luaopen_agentrun_core(lua_State *L);

/* Stack slots of the state made once. */
enum { MODULE = 1, STORE, CURSORS };

#define RUNS 24

static lua_State *L;

typedef struct input {
    const uint8_t *p, *end;
} input;

static unsigned byte(input *in)
{
    return in->p < in->end ? *in->p++ : 0;
}

/* Field names: every real one (runs and events queries, retention
 * policies) and a few near misses. */
static const char *const names[] = {
    "agent", "user", "status", "edition", "parent", "since", "until", "limit", "after", "before",
    "order", "session", "type", "older_than", "keep_last", "rule", "dry_run", "vacuum",
    "max_step", "Agent", "",
};
#define N_NAMES (sizeof names / sizeof names[0])

static const char *const texts[] = {
    "a", "b", "completed", "failed", "running", "interrupted", "budget_exhausted", "asc", "desc",
    "log", "output", "u1", "e1:3", "r1:0:", "", "\xff", "x\0y",
};
#define N_TEXTS (sizeof texts / sizeof texts[0])

static void push_value(input *in, int depth);

/* Rules for store:retain: verdicts good and bad, errors, and calls back into the store. */
static const char *const rules[] = {
    "return function(run, ...) return 'keep' end",
    "return function(run, ...) return 'delete' end",
    "return function(run, ...) return nil end",
    "return function(run, ...) return 'maybe' end",
    "return function(run, ...) return 42 end",
    "return function(run, ...) error('rule failed') end",
    "return function(run, ...) error({ code = 'X' }) end",
    "return function(run, ...) return run.age and run.age > 1e9 and 'delete' or 'keep' end",
    "return function(run, ...) local s = ... return nil end",
};
#define N_RULES (sizeof rules / sizeof rules[0])

static void push_rule(input *in)
{
    unsigned k = byte(in) % (N_RULES + 2);
    if (k < N_RULES) {
        if (luaL_loadstring(L, rules[k]) != LUA_OK)
            abort();
        lua_call(L, 0, 1);
        return;
    }
    /* a rule that reads from, or runs retention on, the same store while it is scanned */
    if (luaL_loadstring(L, k == N_RULES
            ? "local s = ... return function(run) s:count{} return 'keep' end"
            : "local s = ... return function(run) s:retain{ dry_run = true } return 'delete' end") != LUA_OK)
        abort();
    lua_pushvalue(L, STORE);
    lua_call(L, 1, 1);
}

static void push_value(input *in, int depth)
{
    luaL_checkstack(L, 6, "building a query");
    unsigned op = byte(in) % 12;
    if (depth > 3 && op >= 8)
        op = 0;
    switch (op) {
    case 0: lua_pushnil(L); break;
    case 1: lua_pushboolean(L, byte(in) & 1); break;
    case 2: lua_pushinteger(L, (lua_Integer)(int8_t)byte(in)); break;
    case 3: {
        int64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = (int64_t)((uint64_t)v << 8 | byte(in));
        lua_pushinteger(L, v);
        break;
    }
    case 4: {
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++)
            bits = bits << 8 | byte(in);
        double d;
        memcpy(&d, &bits, sizeof d);
        lua_pushnumber(L, d);
        break;
    }
    case 5: {
        unsigned k = byte(in) % N_TEXTS;
        lua_pushlstring(L, texts[k], k == N_TEXTS - 1 ? 3 : strlen(texts[k]));
        break;
    }
    case 6: {
        /* a cursor the store gave out earlier */
        lua_Integer n = (lua_Integer)lua_rawlen(L, CURSORS);
        if (n)
            lua_rawgeti(L, CURSORS, 1 + (lua_Integer)byte(in) % n);
        else
            lua_pushnil(L);
        break;
    }
    case 7: push_rule(in); break;
    default: {
        /* a list (of statuses, types, ...) or a nested table */
        lua_newtable(L);
        unsigned n = byte(in) % 4;
        for (unsigned i = 1; i <= n; i++) {
            push_value(in, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i);
        }
        if (op == 11) {
            lua_pushstring(L, names[byte(in) % N_NAMES]);
            push_value(in, depth + 1);
            lua_rawset(L, -3);
        }
        break;
    }
    }
}

/* Builds the argument table: a few name = value fields. */
static void push_query(input *in)
{
    lua_newtable(L);
    unsigned n = byte(in) % 6;
    for (unsigned i = 0; i < n; i++) {
        lua_pushstring(L, names[byte(in) % N_NAMES]);
        push_value(in, 1);
        lua_rawset(L, -3);
    }
}

/* Counts the store's runs; the setup made RUNS and nothing may delete them. */
static lua_Integer count_runs(void)
{
    lua_getfield(L, STORE, "count");
    lua_pushvalue(L, STORE);
    lua_newtable(L);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        fprintf(stderr, "store:count{} failed after a fuzzed call: %s\n", luaL_tolstring(L, -1, NULL));
        abort();
    }
    lua_Integer n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return n;
}

static void setup(void)
{
    static const char script[] =
        "local core = ... "
        "local s = assert(core.open(':memory:')) "
        "for i = 1, 24 do "
        "  local r = s:begin { agent = i % 3 == 0 and 'b' or 'a', goal = 'g', user = 'u' .. (i % 2) } "
        "  r:step { kind = 'llm', usage = { input_tokens = i, output_tokens = 1 } } "
        "  if i % 4 == 0 then r:fail('boom') elseif i % 5 ~= 0 then r:complete(i) end "
        "  s:event { agent = 'a', type = i % 2 == 0 and 'log' or 'output', session = i % 3, run = r.id } "
        "end "
        "local cursors = {} "
        "local _, c = s:runs { limit = 3 } cursors[#cursors + 1] = c "
        "_, c = s:runs { limit = 5, order = 'asc' } cursors[#cursors + 1] = c "
        "_, c = s:events { agent = 'a', limit = 4 } cursors[#cursors + 1] = c "
        "return s, cursors";
    L = luaL_newstate();
    if (!L)
        abort();
    luaL_openlibs(L);
    luaL_requiref(L, "agentrun.core", luaopen_agentrun_core, 0);   /* MODULE */
    if (luaL_loadstring(L, script) != LUA_OK)
        abort();
    lua_pushvalue(L, MODULE);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
        fprintf(stderr, "setup: %s\n", lua_tostring(L, -1));
        abort();
    }
    if (count_runs() != RUNS)
        abort();
}

static const char *const methods[] = { "runs", "count", "stats", "events", "count_events", "retain" };

/* First byte: the method; the rest builds its argument table. retain is
 * always a dry run, so the store stays as the setup made it. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L)
        setup();
    input in = { data, data + size };
    lua_settop(L, CURSORS);
    unsigned m = byte(&in) % (sizeof methods / sizeof methods[0]);
    lua_getfield(L, STORE, methods[m]);
    lua_pushvalue(L, STORE);
    push_query(&in);
    if (m == 5) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "dry_run");
    }
    if (lua_pcall(L, 2, 2, 0) != LUA_OK) {
        /* refused: an agentrun.Error carries a code; other values are
         * plain misuse messages or a rule's own error, passed on */
        lua_getfield(L, MODULE, "Error");
        if (lua_getmetatable(L, -2) && lua_rawequal(L, -1, -2)) {
            lua_getfield(L, -3, "code");
            if (lua_type(L, -1) != LUA_TSTRING)
                abort();
        }
    }
    lua_settop(L, CURSORS);
    if (count_runs() != RUNS)
        abort();
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
