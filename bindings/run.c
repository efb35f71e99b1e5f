/* run.c -- runs: store:begin and store:resume, and the run handle (steps, checks, checkpoints, endings). */
#include "arl.h"

#include <string.h>

static arl_run *to_run(lua_State *L, int idx)
{
    return arl_checkudata(L, idx, ARL_RUN_MT);
}

static ar_run *check_run(lua_State *L, int idx)
{
    arl_run *r = to_run(L, idx);
    if (!r->run)
        luaL_error(L, "attempt to use a closed run");
    return r->run;
}

void arl_push_run(lua_State *L, ar_run *run, int store_idx)
{
    store_idx = lua_absindex(L, store_idx);
    arl_run *r = lua_newuserdatauv(L, sizeof *r, 1);
    r->run = run;
    luaL_setmetatable(L, ARL_RUN_MT);
    lua_pushvalue(L, store_idx); /* a run pins its store */
    lua_setiuservalue(L, -2, 1);
}

/* Fails with the run's last error; a misuse is about argument `arg`. */
static int run_fail(lua_State *L, int arg, ar_run *run, int rc)
{
    return arl_fail(L, arg, rc, ar_run_errmsg(run));
}

/* ---- starting a run: store:begin, store:resume ---------------------------- */

static const char *const spec_fields[] = {
    "agent", "goal", "user", "edition", "parent", "metadata", "budget", NULL
};

/* store:begin(spec) -> run */
static int l_begin(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    arl_checktype(L, 2, LUA_TTABLE);
    arl_check_fields(L, 2, 2, "run spec", spec_fields);
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = arl_field_text(L, 2, 2, "run spec", "agent", 1);
    spec.goal = arl_field_text(L, 2, 2, "run spec", "goal", 1);
    spec.user = arl_field_text(L, 2, 2, "run spec", "user", 0);
    spec.edition = arl_field_text(L, 2, 2, "run spec", "edition", 0);
    spec.parent = arl_field_text(L, 2, 2, "run spec", "parent", 0);
    if (lua_getfield(L, 2, "budget") != LUA_TNIL)
        arl_check_budget(L, 2, -1, &spec.budget);
    lua_pop(L, 1);
    spec.metadata = arl_field_json(L, 2, 2, "run spec", "metadata", arl_scratch(L));
    ar_run *run = NULL;
    /* the run handle's box exists before the run is begun */
    arl_push_run(L, NULL, 1);
    int rc = ar_run_begin(&run, store, &spec);
    if (rc)
        return arl_store_fail(L, 2, store, rc);
    ((arl_run *)lua_touserdata(L, -1))->run = run;
    return 1;
}

static const char *const resume_fields[] = { "budget", NULL };

/* store:resume(run_id [, {budget=}]) -> run */
static int l_resume(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    const char *id = arl_check_text(L, 2, 2, "run_id");
    ar_budget budget;
    int has_budget = 0;
    if (!lua_isnoneornil(L, 3)) {
        arl_checktype(L, 3, LUA_TTABLE);
        arl_check_fields(L, 3, 3, "resume options", resume_fields);
        if (lua_getfield(L, 3, "budget") != LUA_TNIL) {
            arl_check_budget(L, 3, -1, &budget);
            has_budget = 1;
        }
        lua_pop(L, 1);
    }
    arl_push_run(L, NULL, 1);
    ar_run *run = NULL;
    int rc = ar_run_resume(&run, store, id, has_budget ? &budget : NULL);
    if (rc)
        return arl_store_fail(L, has_budget ? 3 : 2, store, rc);
    ((arl_run *)lua_touserdata(L, -1))->run = run;
    return 1;
}

static const char *const fork_fields[] = { "at", "budget", "metadata", NULL };

/* store:fork(run_id [, {at=, budget=, metadata=}]) -> run */
static int l_fork(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    const char *id = arl_check_text(L, 2, 2, "run_id");
    ar_fork_opts opts = AR_FORK_OPTS_INIT;
    ar_budget budget;
    int arg = 2;
    if (!lua_isnoneornil(L, 3)) {
        arg = 3;
        arl_checktype(L, 3, LUA_TTABLE);
        arl_check_fields(L, 3, 3, "fork options", fork_fields);
        opts.at = arl_field_int(L, 3, 3, "fork options", "at", AR_UNSET, 0);
        if (lua_getfield(L, 3, "budget") != LUA_TNIL) {
            arl_check_budget(L, 3, -1, &budget);
            opts.budget = &budget;
        }
        lua_pop(L, 1);
        opts.metadata = arl_field_json(L, 3, 3, "fork options", "metadata", arl_scratch(L));
    }
    arl_push_run(L, NULL, 1);
    ar_run *run = NULL;
    int rc = ar_run_fork(&run, store, id, &opts);
    if (rc)
        return arl_store_fail(L, arg, store, rc);
    ((arl_run *)lua_touserdata(L, -1))->run = run;
    return 1;
}

/* store:respond(run_id, response) -> record */
static int l_respond(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    const char *id = arl_check_text(L, 2, 2, "run_id");
    if (lua_isnoneornil(L, 3))
        return arl_argerror(L, 3, "response is required (agentrun.null for JSON null)");
    arl_buf *b = arl_scratch(L);
    arl_json_encode(L, 3, "response", b);
    ar_record *r = NULL;
    int rc = ar_store_respond(&r, store, id, b->data, b->len);
    if (rc)
        return arl_store_fail(L, 3, store, rc);
    arl_push_owned_record(L, r, 0);
    return 1;
}

/* ---- the run handle ------------------------------------------------------ */

static int l_step(lua_State *L)
{
    ar_run *run = check_run(L, 1);
    ar_counter counters[ARL_MAX_COUNTERS];
    ar_step step;
    arl_check_step(L, 2, 2, "step", &step, counters, arl_scratch(L), 0);
    int64_t seq = 0;
    int rc = ar_run_step(&seq, run, &step);
    if (rc)
        return run_fail(L, 2, run, rc);
    lua_pushinteger(L, (lua_Integer)seq);
    return 1;
}

/* Raises BudgetExhausted for `why` on the run at index 1, or the run's
 * error for another failed check. */
static int check_failed(lua_State *L, ar_run *run, int rc, const ar_exhaustion *why)
{
    if (rc == AR_EBUDGET) {
        lua_getiuservalue(L, 1, 1);
        ar_store *store = arl_check_store(L, -1);
        return arl_raise_budget(L, store, ar_run_id(run), ar_run_iterations(run), ar_run_usage(run), why);
    }
    return run_fail(L, 1, run, rc);
}

static int l_check(lua_State *L)
{
    ar_run *run = check_run(L, 1);
    ar_exhaustion why;
    int rc = ar_run_check(&why, run);
    if (rc)
        return check_failed(L, run, rc, &why);
    return 0;
}

/* core.loop_check(run, calls): what agentrun.loop asks before each call of
 * its step function. run:check() first; then, since every call counts toward
 * max_steps whether or not it recorded a step, `calls` (the calls made,
 * each step the run had when the loop began counting as one) reaching
 * max_steps raises BudgetExhausted with value = calls. */
static int l_loop_check(lua_State *L)
{
    ar_run *run = check_run(L, 1);
    lua_Integer calls = lua_tointeger(L, 2);
    ar_exhaustion why;
    int rc = ar_run_check(&why, run);
    const ar_budget *b = ar_run_budget(run);
    if (rc == AR_OK && b->max_steps >= 0 && calls >= b->max_steps) {
        why = (ar_exhaustion){ "max_steps", (double)b->max_steps, (double)calls };
        rc = AR_EBUDGET;
    }
    if (rc)
        return check_failed(L, run, rc, &why);
    return 0;
}

static int l_checkpoint(lua_State *L)
{
    ar_run *run = check_run(L, 1);
    if (lua_isnoneornil(L, 2))
        arl_argerror(L, 2, "state is required");
    arl_buf *b = arl_scratch(L);
    arl_json_encode(L, 2, "state", b);
    int rc = ar_run_checkpoint(run, b->data, b->len);
    if (rc)
        return run_fail(L, 2, run, rc);
    return 0;
}

/* Pushes the final record of a finished run (or raises with the run's error). */
static int finished(lua_State *L, ar_run *run, int rc, ar_record *r)
{
    if (rc)
        return run_fail(L, 2, run, rc);
    arl_push_owned_record(L, r, 0);
    return 1;
}

static int l_complete(lua_State *L)
{
    ar_run *run = check_run(L, 1);
    const char *out = NULL;
    size_t len = 0;
    if (!lua_isnoneornil(L, 2)) {
        arl_buf *b = arl_scratch(L);
        arl_json_encode(L, 2, "output", b);
        out = b->data;
        len = b->len;
    }
    ar_record *r = NULL;
    int rc = ar_run_complete(&r, run, out, len);
    return finished(L, run, rc, r);
}

/* run:wait(request) -> record of the now waiting run */
static int l_wait(lua_State *L)
{
    ar_run *run = check_run(L, 1);
    if (lua_isnoneornil(L, 2))
        return arl_argerror(L, 2, "request is required (agentrun.null for JSON null)");
    arl_buf *b = arl_scratch(L);
    arl_json_encode(L, 2, "request", b);
    ar_record *r = NULL;
    int rc = ar_run_wait(&r, run, b->data, b->len);
    return finished(L, run, rc, r);
}

static int l_fail(lua_State *L)
{
    ar_run *run = check_run(L, 1);
    const char *msg = arl_error_text(L, 2, "failed");
    ar_record *r = NULL;
    int rc = ar_run_fail(&r, run, msg);
    return finished(L, run, rc, r);
}

static int l_exhaust(lua_State *L)
{
    ar_run *run = check_run(L, 1);
    ar_exhaustion why = { NULL, 0, 0 }, *whyp = NULL;
    if (!lua_isnoneornil(L, 2)) {
        arl_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "limit") != LUA_TSTRING)
            arl_argerror(L, 2, "a BudgetExhausted error (with limit, limit_value, value) is expected");
        why.limit = lua_tostring(L, -1);
        lua_getfield(L, 2, "limit_value");
        why.limit_value = (double)lua_tonumber(L, -1);
        lua_getfield(L, 2, "value");
        why.value = (double)lua_tonumber(L, -1);
        lua_pop(L, 2); /* the limit string stays referenced by the table */
        whyp = &why;
    }
    ar_record *r = NULL;
    int rc = ar_run_exhaust(&r, run, whyp);
    return finished(L, run, rc, r);
}

/* __gc: a run still running is finished as failed. Never raises: during a
 * retention scan of its store, the core finishes it once the scan ends. */
static const char *const intent_fields[] = { "key", "name", "args", NULL };

/* run:intend{key=, name=, args=} -> seq */
static int l_intend(lua_State *L)
{
    ar_run *run = check_run(L, 1);
    arl_checktype(L, 2, LUA_TTABLE);
    arl_check_fields(L, 2, 2, "intent", intent_fields);
    const char *key = arl_field_text(L, 2, 2, "intent", "key", 1);
    const char *name = arl_field_text(L, 2, 2, "intent", "name", 1);
    arl_buf *b = arl_scratch(L);
    lua_getfield(L, 2, "args");
    arl_json_encode(L, lua_gettop(L), "args", b);
    lua_pop(L, 1);
    int64_t seq = 0;
    int rc = ar_run_intend(&seq, run, key, name, b->data, b->len);
    if (rc)
        return run_fail(L, 2, run, rc);
    lua_pushinteger(L, (lua_Integer)seq);
    return 1;
}

static const char *const settle_fields[] = { "failed", NULL };

/* run:settle(key, result [, {failed=}]) -> seq */
static int l_settle(lua_State *L)
{
    ar_run *run = check_run(L, 1);
    const char *key = arl_check_text(L, 2, 2, "key");
    int failed = 0;
    if (!lua_isnoneornil(L, 4)) {
        arl_checktype(L, 4, LUA_TTABLE);
        arl_check_fields(L, 4, 4, "settle options", settle_fields);
        int t = lua_getfield(L, 4, "failed");
        if (t != LUA_TNIL && t != LUA_TBOOLEAN)
            arl_argerror(L, 4, "settle options.failed must be a boolean, got %s", luaL_typename(L, -1));
        failed = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    arl_buf *b = arl_scratch(L);
    lua_settop(L, 4);
    arl_json_encode(L, 3, "result", b);
    int64_t seq = 0;
    int rc = ar_run_settle(&seq, run, key, b->data, b->len, failed);
    if (rc)
        return run_fail(L, 3, run, rc);
    lua_pushinteger(L, (lua_Integer)seq);
    return 1;
}

static int l_gc(lua_State *L)
{
    arl_run *r = to_run(L, 1);
    if (r->run) {
        ar_run *run = r->run;
        r->run = NULL;
        ar_run_close(run);
    }
    return 0;
}

/* run:close() and __close(run, err): a run still running is finished as
 * failed, with the error that closed its scope when there is one. That is a
 * write, refused (ESTATE, the run left open) from a retention rule of its store. */
static int l_close(lua_State *L)
{
    arl_run *r = to_run(L, 1);
    if (!r->run)
        return 0;
    if (ar_run_status(r->run) == AR_RUNNING) {
        lua_getiuservalue(L, 1, 1);
        arl_store *s = luaL_testudata(L, -1, ARL_STORE_MT);
        if (s && s->store && ar_store_in_rule(s->store))
            return arl_raise(L, AR_ESTATE, "cannot close a running run: a retention rule of its store is "
                             "running, and a rule may read its store but not write to it");
        lua_pop(L, 1);
    }
    ar_run *run = r->run;
    r->run = NULL;
    if (ar_run_status(run) == AR_RUNNING && !lua_isnoneornil(L, 2)) {
        const char *msg = arl_error_text(L, 2, "run closed before it finished");
        ar_run_fail(NULL, run, msg);
    }
    ar_run_close(run);
    return 0;
}

static int l_tostring(lua_State *L)
{
    arl_run *r = to_run(L, 1);
    if (!r->run)
        lua_pushliteral(L, "agentrun.run (closed)");
    else
        lua_pushfstring(L, "agentrun.run (%s, %s)", ar_run_id(r->run), ar_status_name(ar_run_status(r->run)));
    return 1;
}

/* The run's __index (upvalue 1: its method table): the methods, then run.id,
 * run.status, run.iterations, run.usage, run.budget, run.created_at as
 * read-only views. */
int arl_run_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL || lua_type(L, 2) != LUA_TSTRING)
        return 1;
    const char *key = lua_tostring(L, 2);
    ar_run *run = check_run(L, 1);
    if (strcmp(key, "id") == 0)
        lua_pushstring(L, ar_run_id(run));
    else if (strcmp(key, "status") == 0)
        lua_pushstring(L, ar_status_name(ar_run_status(run)));
    else if (strcmp(key, "iterations") == 0)
        lua_pushinteger(L, (lua_Integer)ar_run_iterations(run));
    else if (strcmp(key, "usage") == 0)
        arl_push_usage(L, ar_run_usage(run));
    else if (strcmp(key, "budget") == 0)
        arl_push_budget(L, ar_run_budget(run));
    else if (strcmp(key, "created_at") == 0)
        lua_pushinteger(L, (lua_Integer)ar_run_created_at(run));
    else if (strcmp(key, "response") == 0 && ar_run_response(run))
        arl_json_decode(L, ar_run_response(run), strlen(ar_run_response(run)));
    else
        lua_pushnil(L);
    return 1;
}

static int l_newindex(lua_State *L)
{
    return luaL_error(L, "run fields are read-only (cannot set '%s')", luaL_tolstring(L, 2, NULL));
}

const luaL_Reg arl_run_meta[] = {
    { "__newindex", l_newindex }, { "__gc", l_gc }, { "__close", l_close }, { "__tostring", l_tostring },
    { NULL, NULL }
};

const luaL_Reg arl_run_methods[] = {
    { "step", l_step }, { "check", l_check }, { "checkpoint", l_checkpoint },
    { "complete", l_complete }, { "fail", l_fail }, { "exhaust", l_exhaust }, { "wait", l_wait },
    { "intend", l_intend }, { "settle", l_settle }, { "close", l_close }, { NULL, NULL }
};

const luaL_Reg arl_run_store_methods[] = {
    { "begin", l_begin }, { "resume", l_resume }, { "fork", l_fork }, { "respond", l_respond }, { NULL, NULL }
};

const luaL_Reg arl_run_functions[] = { { "loop_check", l_loop_check }, { NULL, NULL } };
