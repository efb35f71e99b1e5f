/* record.c -- records given whole: store:write and the record factory core.make_record. */
#include "arl.h"

#include <stdio.h>
#include <string.h>

/* Room for the record factory's error message (the core cuts longer ones). */
#define FACTORY_ERR_MAX 512

static const char *const record_fields[] = {
    "id", "agent", "goal", "user", "edition", "parent", "status", "output", "error", "limit",
    "budget", "iterations", "usage", "latency_ms", "created_at", "finished_at", "updated_at",
    "metadata", "steps", "checkpoint", "forked_from", "request", "response", NULL
};
static const char *const forked_from_fields[] = { "run", "seq", NULL };
static const char *const limit_fields[] = { "name", "value", "reached", NULL };
static const char *const checkpoint_fields[] = { "state", "seq", NULL };

/* Encodes the value on top of the stack (errors name the path from `root`)
 * and returns its text, kept alive as keep[slot]. */
static const char *kept_json(lua_State *L, const char *root, int keep, int slot)
{
    arl_buf *b = arl_scratch(L);
    arl_json_encode(L, -1, root, b);
    const char *text = lua_pushlstring(L, b->data, b->len);
    lua_rawseti(L, keep, slot);
    return text;
}

/* Reads the record table at idx into *r. Encoded JSON and scratch arrays
 * are kept alive by a table pushed on the stack (pop it when done). */
static void read_record(lua_State *L, int idx, ar_record *r)
{
    idx = lua_absindex(L, idx);
    int arg = idx; /* the record is the argument at idx */
    arl_checktype(L, arg, LUA_TTABLE);
    arl_check_fields(L, arg, idx, "record", record_fields);
    ar_record init = AR_RECORD_INIT;
    *r = init;
    lua_newtable(L);
    int keep = lua_gettop(L), kept = 0;
    r->id = arl_field_text(L, arg, idx, "record", "id", 0);
    r->agent = arl_field_text(L, arg, idx, "record", "agent", 1);
    r->goal = arl_field_text(L, arg, idx, "record", "goal", 1);
    r->user = arl_field_text(L, arg, idx, "record", "user", 0);
    r->edition = arl_field_text(L, arg, idx, "record", "edition", 0);
    r->parent = arl_field_text(L, arg, idx, "record", "parent", 0);
    const char *status = arl_field_text(L, arg, idx, "record", "status", 1);
    if (ar_status_parse(&r->status, status)) /* "running" is a status: the core refuses it */
        arl_argerror(L, arg, "record.status must be completed, budget_exhausted, failed, interrupted or waiting "
                     "(got \"%s\")", status);
    /* a failure's text is never refused (SPEC §6): the core replaces invalid
     * UTF-8, and NUL bytes become U+FFFD here so that nothing is cut */
    int et = lua_getfield(L, idx, "error");
    if (et != LUA_TNIL) {
        if (et != LUA_TSTRING)
            arl_argerror(L, arg, "record.error must be a string (got %s)", lua_typename(L, et));
        r->error = arl_nul_replaced(L); /* error text is never refused, nor cut at a NUL */
        lua_rawseti(L, keep, ++kept);
    } else {
        lua_pop(L, 1);
    }
    if (lua_getfield(L, idx, "output") != LUA_TNIL)
        r->output = kept_json(L, "output", keep, ++kept);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "request") != LUA_TNIL)
        r->request = kept_json(L, "request", keep, ++kept);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "response") != LUA_TNIL)
        r->response = kept_json(L, "response", keep, ++kept);
    lua_pop(L, 1);
    int ft = lua_getfield(L, idx, "forked_from");
    if (ft != LUA_TNIL) {
        if (ft != LUA_TTABLE)
            arl_argerror(L, arg, "record.forked_from must be a table {run=, seq=} (got %s)", lua_typename(L, ft));
        int fi = lua_absindex(L, -1);
        arl_check_fields(L, arg, fi, "record.forked_from", forked_from_fields);
        r->forked_from = arl_field_text(L, arg, fi, "record.forked_from", "run", 1);
        r->forked_seq = arl_field_int(L, arg, fi, "record.forked_from", "seq", 0, 0);
    }
    lua_pop(L, 1);
    r->metadata = arl_field_json(L, arg, idx, "record", "metadata", arl_scratch(L));
    if (r->metadata) {
        lua_pushstring(L, r->metadata);
        r->metadata = lua_tostring(L, -1);
        lua_rawseti(L, keep, ++kept);
    }
    if (lua_getfield(L, idx, "limit") != LUA_TNIL) {
        if (!lua_istable(L, -1))
            arl_argerror(L, arg, "record.limit must be a table");
        int li = lua_absindex(L, -1);
        arl_check_fields(L, arg, li, "record.limit", limit_fields);
        r->limit.limit = arl_field_text(L, arg, li, "record.limit", "name", 1);
        r->limit.limit_value = arl_field_number(L, arg, li, "record.limit", "value", 0, 0);
        r->limit.value = arl_field_number(L, arg, li, "record.limit", "reached", r->limit.limit_value, 0);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "budget") != LUA_TNIL)
        arl_check_budget(L, arg, -1, &r->budget);
    lua_pop(L, 1);
    r->iterations = arl_field_int(L, arg, idx, "record", "iterations", -1, 0);
    r->created_at = arl_field_int(L, arg, idx, "record", "created_at", AR_UNSET, 0);
    r->finished_at = arl_field_int(L, arg, idx, "record", "finished_at", AR_UNSET, 0);
    r->updated_at = arl_field_int(L, arg, idx, "record", "updated_at", AR_UNSET, 0);
    r->latency_ms = arl_field_int(L, arg, idx, "record", "latency_ms", AR_UNSET, 0);
    int ct = lua_getfield(L, idx, "checkpoint");
    if (ct != LUA_TNIL) {
        if (ct != LUA_TTABLE)
            arl_argerror(L, arg, "record.checkpoint must be a table {state=, seq=} (got %s)", lua_typename(L, ct));
        int ci = lua_absindex(L, -1);
        arl_check_fields(L, arg, ci, "record.checkpoint", checkpoint_fields);
        if (lua_getfield(L, ci, "state") == LUA_TNIL)
            arl_argerror(L, arg, "record.checkpoint.state is required");
        r->checkpoint = kept_json(L, "checkpoint.state", keep, ++kept);
        lua_pop(L, 1);
        r->checkpoint_seq = arl_field_int(L, arg, ci, "record.checkpoint", "seq", AR_UNSET, 0);
    }
    lua_pop(L, 1);
    ar_counter *counters = lua_newuserdatauv(L, sizeof(ar_counter) * ARL_MAX_COUNTERS, 0);
    lua_rawseti(L, keep, ++kept);
    if (lua_getfield(L, idx, "usage") != LUA_TNIL) {
        if (!lua_istable(L, -1))
            arl_argerror(L, arg, "record.usage must be a table");
        r->usage.total_tokens = 0;
        arl_check_usage(L, arg, lua_absindex(L, -1), "record", &r->usage, counters, 1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "steps") != LUA_TNIL) {
        if (!lua_istable(L, -1))
            arl_argerror(L, arg, "record.steps must be a list of steps");
        int si = lua_absindex(L, -1);
        size_t n = lua_rawlen(L, si);
        ar_step *steps = lua_newuserdatauv(L, n ? n * sizeof *steps : 1, 0);
        lua_rawseti(L, keep, ++kept);
        for (size_t i = 0; i < n; i++) {
            char what[48];
            snprintf(what, sizeof what, "record.steps[%zu]", i + 1);
            lua_rawgeti(L, si, (lua_Integer)i + 1);
            ar_counter *sc = lua_newuserdatauv(L, sizeof(ar_counter) * ARL_MAX_COUNTERS, 0);
            lua_rawseti(L, keep, ++kept);
            arl_buf *b = arl_scratch(L);
            b->len = 0;
            arl_check_step(L, arg, -1, what, &steps[i], sc, b, 1);
            if (steps[i].content) {
                lua_pushlstring(L, b->data, b->len);
                steps[i].content = lua_tostring(L, -1);
                lua_rawseti(L, keep, ++kept);
            }
            lua_pop(L, 1);
        }
        r->steps = steps;
        r->n_steps = n;
    }
    lua_pop(L, 1);
}

/* store:write(record) -> id */
static int l_write(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    ar_record r;
    read_record(L, 2, &r);
    char *id = NULL;
    int rc = ar_store_write(&id, store, &r);
    if (rc)
        return arl_store_fail(L, 2, store, rc);
    lua_pushstring(L, id);
    ar_free(id);
    return 1;
}

/* core.make_record(fields) -> record: the record factory. fields.status picks
 * completed / budget_exhausted (fields.limit) / failed (fields.error). */
static int l_make_record(lua_State *L)
{
    ar_record f;
    read_record(L, 1, &f);
    char err[FACTORY_ERR_MAX];
    ar_record *r = NULL;
    int rc;
    if (f.status == AR_COMPLETED)
        rc = ar_record_completed(&r, &f, f.output, AR_NUL_TERMINATED, err, sizeof err);
    else if (f.status == AR_BUDGET_EXHAUSTED)
        rc = ar_record_budget_exhausted(&r, &f, &f.limit, err, sizeof err);
    else if (f.status == AR_FAILED)
        rc = ar_record_failed(&r, &f, f.error, err, sizeof err);
    else
        return arl_argerror(L, 1, "record.status must be completed, budget_exhausted or failed");
    if (rc)
        return arl_fail(L, 1, rc, err);
    arl_push_owned_record(L, r, 1);
    return 1;
}

const luaL_Reg arl_record_methods[] = { { "write", l_write }, { NULL, NULL } };
const luaL_Reg arl_record_functions[] = { { "make_record", l_make_record }, { NULL, NULL } };
