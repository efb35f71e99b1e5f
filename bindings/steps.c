/* steps.c -- streaming a run's steps: store:steps iterators and the transcript of a budget error. */
#include "arl.h"

#include <string.h>

/* A steps iterator: closes its core iterator on exhaustion, error, GC or <close>. */
typedef struct arl_iter {
    ar_step_iter *it;
    int raw; /* contents as JSON text (store:steps's `raw` option) */
} arl_iter;

static int iter_close(lua_State *L)
{
    arl_iter *b = arl_checkudata(L, 1, ARL_ITER_MT);
    ar_steps_close(b->it);
    b->it = NULL;
    return 0;
}

/* Pushes an iterator box over run `id`, pinning the store at store_idx. */
static arl_iter *push_iter(lua_State *L, ar_store *store, int store_idx, const char *id, int64_t from, int64_t limit)
{
    store_idx = lua_absindex(L, store_idx);
    arl_iter *b = lua_newuserdatauv(L, sizeof *b, 1);
    b->it = NULL;
    b->raw = 0;
    luaL_setmetatable(L, ARL_ITER_MT);
    lua_pushvalue(L, store_idx);
    lua_setiuservalue(L, -2, 1);
    int rc = ar_steps_open(&b->it, store, id, from, limit);
    if (rc)
        arl_store_fail(L, 2, store, rc);
    return b;
}

/* Pushes the next step of the box at idx, or nil (closing it) at the end. */
static int iter_push_next(lua_State *L, int idx)
{
    arl_iter *b = lua_touserdata(L, idx);
    if (!b->it) {
        lua_pushnil(L);
        return 0;
    }
    lua_getiuservalue(L, idx, 1);
    arl_store *s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!s || !s->store) {
        ar_steps_close(b->it);
        b->it = NULL;
        return luaL_error(L, "attempt to use a closed store");
    }
    const ar_step *step = NULL;
    int rc = ar_steps_next(&step, b->it);
    if (rc)
        return arl_store_fail(L, 1, s->store, rc);
    if (!step) {
        ar_steps_close(b->it);
        b->it = NULL;
        lua_pushnil(L);
        return 0;
    }
    arl_push_step(L, step, b->raw);
    return 1;
}

static int iter_next(lua_State *L)
{
    iter_push_next(L, lua_upvalueindex(1));
    return 1;
}

static const char *const steps_fields[] = { "from", "limit", "raw", NULL };

/* store:steps(id [, {from=, limit=, raw=}]) -> iterator (for step in store:steps(id) do ... end) */
static int l_steps(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    const char *id = arl_check_text(L, 2, 2, "id");
    int64_t from = 1, limit = -1;
    int raw = 0;
    if (!lua_isnoneornil(L, 3)) {
        arl_checktype(L, 3, LUA_TTABLE);
        arl_check_fields(L, 3, 3, "steps options", steps_fields);
        from = arl_field_int(L, 3, 3, "steps options", "from", 1, 1);
        limit = arl_field_int(L, 3, 3, "steps options", "limit", -1, 0);
        raw = arl_field_bool(L, 3, 3, "steps options", "raw", 0);
    }
    push_iter(L, store, 1, id, from, limit)->raw = raw;
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, iter_next, 1);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushvalue(L, -4); /* closing value: a `break` releases the iterator */
    return 4;
}

int arl_raise_budget(lua_State *L, ar_store *store, const char *run_id, int64_t iterations,
                     const ar_usage *usage, const ar_exhaustion *why)
{
    int integral = strcmp(why->limit, "max_cost") != 0 && strcmp(why->limit, "max_seconds") != 0;
    lua_createtable(L, 0, 10);
    int t = lua_gettop(L);
    lua_pushliteral(L, "EBUDGET");
    lua_setfield(L, t, "code");
    if (integral)
        lua_pushfstring(L, "budget exhausted: %s reached (%I >= %I)", why->limit,
                        (lua_Integer)why->value, (lua_Integer)why->limit_value);
    else
        lua_pushfstring(L, "budget exhausted: %s reached (%f >= %f)", why->limit, why->value, why->limit_value);
    lua_setfield(L, t, "message");
    lua_pushstring(L, why->limit);
    lua_setfield(L, t, "limit");
    if (integral) {
        lua_pushinteger(L, (lua_Integer)why->limit_value);
        lua_setfield(L, t, "limit_value");
        lua_pushinteger(L, (lua_Integer)why->value);
        lua_setfield(L, t, "value");
    } else {
        lua_pushnumber(L, why->limit_value);
        lua_setfield(L, t, "limit_value");
        lua_pushnumber(L, why->value);
        lua_setfield(L, t, "value");
    }
    lua_pushstring(L, run_id);
    lua_setfield(L, t, "run_id");
    lua_pushinteger(L, (lua_Integer)iterations);
    lua_setfield(L, t, "iterations");
    arl_push_usage(L, usage);
    lua_setfield(L, t, "usage");
    /* the partial transcript, streamed from the store (the whole one after a resume) */
    lua_createtable(L, (int)iterations, 0);
    luaL_setmetatable(L, ARL_ARRAY_MT);
    int steps = lua_gettop(L);
    arl_iter *b = lua_newuserdatauv(L, sizeof *b, 1);
    b->it = NULL;
    b->raw = 0;
    luaL_setmetatable(L, ARL_ITER_MT);
    int rc = ar_steps_open(&b->it, store, run_id, 1, -1);
    if (rc)
        return arl_store_fail(L, 1, store, rc);
    lua_Integer i = 0;
    for (;;) {
        const ar_step *step = NULL;
        if ((rc = ar_steps_next(&step, b->it)))
            return arl_store_fail(L, 1, store, rc);
        if (!step)
            break;
        arl_push_step(L, step, 0);
        lua_rawseti(L, steps, ++i);
    }
    ar_steps_close(b->it);
    b->it = NULL;
    lua_settop(L, steps);
    lua_setfield(L, t, "steps");
    luaL_setmetatable(L, "agentrun.BudgetExhausted");
    return lua_error(L);
}

const luaL_Reg arl_steps_meta[] = { { "__gc", iter_close }, { "__close", iter_close }, { NULL, NULL } };
const luaL_Reg arl_steps_methods[] = { { "steps", l_steps }, { NULL, NULL } };
