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

typedef struct box {
    void *p;
    void (*release)(void *);
} box;

#define BOX_MT "agentrun.box"

static int box_gc(lua_State *L)
{
    box *b = luaL_checkudata(L, 1, BOX_MT);
    if (b->p)
        b->release(b->p);
    b->p = NULL;
    return 0;
}

void **arl_box(lua_State *L, void (*release)(void *))
{
    box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->p = NULL;
    b->release = release;
    luaL_setmetatable(L, BOX_MT);
    return &b->p;
}

void arl_unbox(lua_State *L, int idx)
{
    box *b = luaL_checkudata(L, idx, BOX_MT);
    if (b->p)
        b->release(b->p);
    b->p = NULL;
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
    luaL_newmetatable(L, BOX_MT);
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    arl_open_store(L, m);
    arl_open_run(L, m);
    arl_open_events(L);
    arl_open_retain(L);
    lua_pushcfunction(L, l_sleep);
    lua_setfield(L, m, "sleep");
    lua_pushcfunction(L, l_now);
    lua_setfield(L, m, "now");
    lua_pushliteral(L, AR_VERSION);
    lua_setfield(L, m, "version");
    return 1;
}
