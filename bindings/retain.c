/* retain.c -- store:retain(policy): built-in criteria plus a Lua rule, run under lua_pcall. */
#include "arl.h"

#include <string.h>

/* A rule call may run this many VM instructions, and the rule's calls in one
 * retain may together grow the Lua heap by this many bytes (what a rule keeps
 * from one call to the next counts). Past either, the rule fails. */
#define RULE_INSTRUCTION_BUDGET 1000000
#define RULE_MEMORY_BUDGET (64 * 1024 * 1024)

typedef struct rule_ctx {
    lua_State *L;
    int fn;             /* stack index of the rule function */
    int err_slot;       /* stack index that receives the rule's error */
    arl_account account;
    const ar_record *run;
    double age;
    int verdict;
} rule_ctx;

/* Runs inside lua_pcall: builds the run's table, calls the rule under its
 * budgets, reads its verdict. */
static int rule_trampoline(lua_State *L)
{
    rule_ctx *c = lua_touserdata(L, 2);
    lua_pushvalue(L, 1); /* the rule */
    arl_push_record(L, c->run, 0);
    lua_pushnumber(L, c->age);
    lua_setfield(L, -2, "age");
    if (arl_pcall_bounded(L, 1, 1, RULE_INSTRUCTION_BUDGET, &c->account, "retention rule") != LUA_OK)
        return lua_error(L);
    if (lua_isnil(L, -1)) {
        c->verdict = AR_RULE_UNDECIDED;
    } else {
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (v && strcmp(v, "keep") == 0)
            c->verdict = AR_RULE_KEEP;
        else if (v && strcmp(v, "delete") == 0)
            c->verdict = AR_RULE_DELETE;
        else
            return luaL_error(L, "retention rule must return \"keep\", \"delete\" or nil (got %s)",
                              arl_show_value(L, -1));
    }
    return 0;
}

/* The core's callback: never lets a Lua error cross the core's C frames. */
static int call_rule(void *ud, const ar_record *run, double age, int *verdict)
{
    rule_ctx *c = ud;
    lua_State *L = c->L;
    if (!lua_checkstack(L, 8)) {
        lua_pushliteral(L, "retention rule: Lua stack overflow");
        lua_replace(L, c->err_slot);
        return 1;
    }
    c->run = run;
    c->age = age;
    lua_pushcfunction(L, rule_trampoline);
    lua_pushvalue(L, c->fn);
    lua_pushlightuserdata(L, c);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        lua_replace(L, c->err_slot);
        return 1;
    }
    *verdict = c->verdict;
    return 0;
}

static const char *const policy_fields[] = {
    "older_than", "keep_last", "status", "rule", "dry_run", "vacuum", NULL
};

/* store:retain(policy) -> report */
static int l_retain(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    arl_checktype(L, 2, LUA_TTABLE);
    arl_check_fields(L, 2, 2, "retention policy", policy_fields);
    ar_retention p = AR_RETENTION_INIT;
    ar_status statuses[ARL_STATUSES];
    p.older_than = arl_field_number(L, 2, 2, "retention policy", "older_than", -1, 1);
    p.keep_last = arl_field_int(L, 2, 2, "retention policy", "keep_last", -1, 0);
    p.dry_run = arl_field_bool(L, 2, 2, "retention policy", "dry_run", 0);
    p.vacuum = arl_field_bool(L, 2, 2, "retention policy", "vacuum", 0);
    if (lua_getfield(L, 2, "status") != LUA_TNIL) {
        p.n_status = arl_check_statuses(L, 2, -1, "retention policy.status", 0, statuses);
        p.status = statuses; /* the core refuses "running" */
    }
    lua_pop(L, 1);
    lua_settop(L, 2);
    rule_ctx c = { L, 0, 0, { 0, 0 }, NULL, 0, AR_RULE_UNDECIDED };
    int t = lua_getfield(L, 2, "rule"); /* 3 */
    if (t != LUA_TNIL) {
        if (t != LUA_TFUNCTION)
            arl_argerror(L, 2, "retention policy.rule must be a function (got %s)", lua_typename(L, t));
        lua_pushnil(L); /* 4: the rule's error, if any */
        c.fn = 3;
        c.err_slot = 4;
        arl_account_open(L, &c.account, RULE_MEMORY_BUDGET);
        p.rule = call_rule;
        p.rule_ud = &c;
    }
    ar_retention_report r;
    int rc = ar_store_retain(&r, store, &p);
    if (rc == AR_ECALLBACK && c.err_slot) {
        lua_pushvalue(L, c.err_slot);
        return lua_error(L);
    }
    if (rc)
        return arl_store_fail(L, 2, store, rc);
    lua_createtable(L, 0, 8);
    arl_set_int(L, "considered", r.considered);
    arl_set_int(L, "deleted", r.deleted);
    arl_set_int(L, "kept_by_rule", r.kept_by_rule);
    arl_set_int(L, "deleted_by_rule", r.deleted_by_rule);
    arl_set_int(L, "steps_deleted", r.steps_deleted);
    arl_set_int(L, "bytes_before", r.bytes_before);
    arl_set_int(L, "bytes_after", r.bytes_after);
    lua_pushboolean(L, r.dry_run);
    lua_setfield(L, -2, "dry_run");
    return 1;
}

const luaL_Reg arl_retain_methods[] = { { "retain", l_retain }, { NULL, NULL } };
