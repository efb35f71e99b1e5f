/* module.c -- luaopen_agentrun_core: assembles the C part of require "agentrun". */
#include "arl.h"

#include <errno.h>
#include <time.h>

/* core.sleep(ms): the loop's retry backoff. */
static int l_sleep(lua_State *L)
{
    lua_Integer ms = lua_tointeger(L, 1);
    if (lua_type(L, 1) != LUA_TNUMBER || ms < 0)
        arl_argerror(L, 1, "milliseconds must be a non-negative integer");
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

/* core.error_text(v) -> the text a failed run keeps for the error value v
 * (see arl_error_text): the loop and the record factory use it too. */
static int l_error_text(lua_State *L)
{
    arl_error_text(L, 1, "failed");
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
    static const luaL_Reg functions[] = {
        { "sleep", l_sleep }, { "now", l_now }, { "error_text", l_error_text }, { NULL, NULL }
    };
    lua_pushvalue(L, m);
    arl_setfuncs(L, functions, 0);
    lua_pop(L, 1);
    arl_open_budget(L, m);
    arl_open_patterns(L, m);
    lua_pushliteral(L, AR_VERSION);
    lua_setfield(L, m, "version");
    return 1;
}
