/* module.c -- luaopen_agentrun_core: assembles the C part of require "agentrun". */
#include "arl.h"

#include <errno.h>
#include <time.h>

/* core.sleep(ms): the loop's retry backoff. */
static int l_sleep(lua_State *L)
{
    lua_Integer ms = luaL_checkinteger(L, 1);
    luaL_argcheck(L, ms >= 0, 1, "must not be negative");
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

/* core.now() -> milliseconds since the epoch, the clock the store uses. */
static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    return 1;
}

static int budget_tostring(lua_State *L)
{
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "agentrun: EBUDGET: %s", luaL_optstring(L, -1, "budget exhausted"));
    return 1;
}

int luaopen_agentrun_core(lua_State *L);

int luaopen_agentrun_core(lua_State *L)
{
    lua_newtable(L);
    int m = lua_gettop(L);
    arl_open_json(L, m);
    arl_open_error(L);
    luaL_getmetatable(L, ARL_ERROR_MT);
    lua_setfield(L, m, "Error");
    luaL_newmetatable(L, "agentrun.BudgetExhausted");
    lua_pushcfunction(L, budget_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_setfield(L, m, "BudgetExhausted");
    arl_open_store(L, m);
    arl_open_run(L);
    lua_pushcfunction(L, l_sleep);
    lua_setfield(L, m, "sleep");
    lua_pushcfunction(L, l_now);
    lua_setfield(L, m, "now");
    lua_pushliteral(L, AR_VERSION);
    lua_setfield(L, m, "version");
    return 1;
}
