/* module.c -- luaopen_agentrun_core: assembles the C part of require "agentrun". */
#include "arl.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

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

/* core.terminal(fd) -> is_tty, columns (nil when unknown): what the agentrun
 * command asks of its output, without starting a process to ask it. */
static int l_terminal(lua_State *L)
{
    lua_Integer fd = lua_tointeger(L, 1);
    if (lua_type(L, 1) != LUA_TNUMBER || fd < 0 || fd > 1024)
        arl_argerror(L, 1, "a file descriptor expected");
    int tty = isatty((int)fd);
    lua_pushboolean(L, tty);
    struct winsize ws;
    if (tty && ioctl((int)fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        lua_pushinteger(L, ws.ws_col);
    else
        lua_pushnil(L);
    return 2;
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

static const luaL_Reg box_meta[] = { { "__gc", box_gc }, { NULL, NULL } };

static const luaL_Reg module_functions[] = {
    { "sleep", l_sleep }, { "now", l_now }, { "error_text", l_error_text }, { "terminal", l_terminal },
    { NULL, NULL }
};

/* The functions of require "agentrun.core", by the file that holds them. */
static const luaL_Reg *const core_functions[] = {
    module_functions, arl_json_functions, arl_store_functions, arl_record_functions, arl_run_functions,
    arl_budget_functions, NULL
};

/* The store's methods, by concern. */
static const luaL_Reg *const store_methods[] = {
    arl_store_methods, arl_run_store_methods, arl_record_methods, arl_read_methods, arl_steps_methods,
    arl_events_methods, arl_retain_methods, arl_export_methods, NULL
};

static const luaL_Reg *const run_methods[] = { arl_run_methods, NULL };

/* Makes the metatable `name` of a handle type: the metamethods of `meta` and,
 * when `methods` lists any, an __index table holding all of them (passed as
 * the upvalue of `index` when the type has fields too). */
static void new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *const *methods,
                      lua_CFunction index)
{
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, meta, 0);
    if (methods) {
        lua_newtable(L);
        for (; *methods; methods++)
            arl_setfuncs(L, *methods, 1);
        if (index)
            lua_pushcclosure(L, index, 1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

int luaopen_agentrun_core(lua_State *L);

int luaopen_agentrun_core(lua_State *L)
{
    lua_newtable(L);
    int m = lua_gettop(L);
    arl_open_buffers(L);
    arl_open_json(L, m);
    arl_open_error(L);
    arl_open_budget(L);
    luaL_getmetatable(L, ARL_ERROR_MT);
    lua_setfield(L, m, "Error");
    luaL_newmetatable(L, "agentrun.BudgetExhausted");
    lua_pushcfunction(L, budget_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_setfield(L, m, "BudgetExhausted");
    new_class(L, BOX_MT, box_meta, NULL, NULL);
    new_class(L, ARL_STORE_MT, arl_store_meta, store_methods, NULL);
    new_class(L, ARL_RUN_MT, arl_run_meta, run_methods, arl_run_index);
    new_class(L, ARL_ITER_MT, arl_steps_meta, NULL, NULL);
    new_class(L, ARL_RECORDS_MT, arl_records_meta, NULL, NULL);
    for (const luaL_Reg *const *l = core_functions; *l; l++)
        arl_setfuncs(L, *l, 0);
    lua_createtable(L, 0, 4);
    arl_setfuncs(L, arl_pattern_functions, 0);
    lua_setfield(L, m, "patterns");
    lua_pushliteral(L, AR_VERSION);
    lua_setfield(L, m, "version");
    return 1;
}
