/* bench_lua.c -- the 10,000-step run driven from Lua, against the C path in the same invocation. */
#include "bench.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

/* The Lua side: payloads are decoded into tables up front (an agent has its
 * messages as tables already); each timed call records steps from..to with
 * step tables built in the loop, as an agent would. */
static const char lua_side[] =
    "local agentrun = require 'agentrun'\n"
    "local path, durability = ...\n"
    "local store = assert(agentrun.open(path, { durability = durability }))\n"
    "local run = store:begin { agent = 'bench', goal = 'lua steps' }\n"
    "local content, input, output, cost, duration = {}, {}, {}, {}, {}\n"
    "local side = {}\n"
    "function side.add(json, i, o, c, d)\n"
    "  local n = #content + 1\n"
    "  content[n], input[n], output[n], cost[n], duration[n] = agentrun.json_decode(json), i, o, c, d\n"
    "end\n"
    "function side.steps(from, to)\n"
    "  for n = from, to do\n"
    "    run:step { kind = 'llm', name = 'model-x', content = content[n],\n"
    "               usage = { input_tokens = input[n], output_tokens = output[n] },\n"
    "               cost = cost[n], duration_ms = duration[n] }\n"
    "  end\n"
    "end\n"
    "function side.finish() run:complete('done'); store:close() end\n"
    "return side\n";

static void lua_check(lua_State *L, int rc, const char *what)
{
    if (rc != LUA_OK)
        bench_die("%s: %s", what, lua_tostring(L, -1));
}

/* Calls side[name](...) with the arguments already pushed above it. */
static void call_side(lua_State *L, int side, const char *name, int nargs)
{
    lua_getfield(L, side, name);
    lua_insert(L, -1 - nargs);
    lua_check(L, lua_pcall(L, nargs, 0, 0), name);
}

static void lua_vs_c(const bench_env *env, int durability)
{
    const char *dname = durability == AR_DURABILITY_FULL ? "full" : "normal";
    int64_t n = bench_scaled(env, 10000, 100);
    int64_t block = n / 20 > 0 ? n / 20 : 1;
    char name[64];
    snprintf(name, sizeof name, "lua-%s.db", dname);
    char *lua_path = bench_path(env, name);
    snprintf(name, sizeof name, "c-%s.db", dname);
    char *c_path = bench_path(env, name);

    lua_State *L = luaL_newstate();
    if (!L)
        bench_die("no memory for a Lua state");
    luaL_openlibs(L);
    lua_check(L, luaL_loadbuffer(L, lua_side, sizeof lua_side - 1, "=bench_lua"), "loading the Lua side");
    lua_pushstring(L, lua_path);
    lua_pushstring(L, dname);
    lua_check(L, lua_pcall(L, 2, 1, 0), "starting the Lua side (is LUA_PATH/LUA_CPATH set? run it with make bench)");
    int side = lua_gettop(L);

    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = durability;
    ar_store *store = NULL;
    bench_check(ar_store_open(&store, c_path, &opts), store, "opening the C store");
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "bench";
    spec.goal = "c steps";
    ar_run *run = NULL;
    bench_check(ar_run_begin(&run, store, &spec), store, "beginning the C run");

    char (*payloads)[BENCH_PAYLOAD_MAX] = bench_alloc((size_t)n * BENCH_PAYLOAD_MAX);
    bench_step *steps = bench_alloc((size_t)n * sizeof *steps);
    for (int64_t i = 0; i < n; i++) {
        bench_step_make(&steps[i], i + 1, payloads[i], BENCH_PAYLOAD_MAX);
        lua_pushlstring(L, steps[i].content, steps[i].content_len);
        lua_pushinteger(L, steps[i].input_tokens);
        lua_pushinteger(L, steps[i].output_tokens);
        lua_pushnumber(L, steps[i].cost);
        lua_pushinteger(L, steps[i].duration_ms);
        call_side(L, side, "add", 5);
    }

    /* alternate blocks so both paths see the same disk and the same neighbours */
    double lua_us = 0, c_us = 0;
    for (int64_t from = 0; from < n; from += block) {
        int64_t to = from + block < n ? from + block : n;
        int64_t t0 = bench_now_ns();
        lua_pushinteger(L, from + 1);
        lua_pushinteger(L, to);
        call_side(L, side, "steps", 2);
        int64_t t1 = bench_now_ns();
        for (int64_t i = from; i < to; i++) {
            ar_step s;
            bench_step_to_ar(&s, &steps[i]);
            bench_check_run(ar_run_step(NULL, run, &s), run, "recording a C step");
        }
        int64_t t2 = bench_now_ns();
        lua_us += bench_us(t0, t1);
        c_us += bench_us(t1, t2);
    }
    call_side(L, side, "finish", 0);
    lua_close(L);
    bench_check_run(ar_run_complete(NULL, run, "\"done\"", AR_NUL_TERMINATED), run, "completing the C run");
    ar_run_close(run);
    ar_store_close(store);

    double per_lua = lua_us / (double)n, per_c = c_us / (double)n;
    char metric[64];
    snprintf(metric, sizeof metric, "lua.steps.%s", dname);
    bench_goal(metric, per_lua <= 1.3 * per_c, "<= 1.3",
               "lua %.1f us/step  c %.1f us/step  (%lld steps each, interleaved)  ratio %.2f",
               per_lua, per_c, (long long)n, per_lua / per_c);
    free(payloads);
    free(steps);
    bench_remove_store(lua_path);
    bench_remove_store(c_path);
    free(lua_path);
    free(c_path);
}

void bench_lua(const bench_env *env)
{
    lua_vs_c(env, AR_DURABILITY_FULL);
    lua_vs_c(env, AR_DURABILITY_NORMAL);
}
