/* store.c -- the Lua store handle: open, close, info, and the store-wide maintenance calls. */
#include "arl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static arl_store *to_store(lua_State *L, int idx)
{
    return arl_checkudata(L, idx, ARL_STORE_MT);
}

ar_store *arl_check_store(lua_State *L, int idx)
{
    arl_store *s = to_store(L, idx);
    if (!s->store)
        luaL_error(L, "attempt to use a closed store");
    return s->store;
}

int arl_fail(lua_State *L, int arg, int rc, const char *msg)
{
    if (rc == AR_EMISUSE)
        return arl_argerror(L, arg, "%s", msg);
    return arl_raise(L, rc, "%s", msg);
}

int arl_store_fail(lua_State *L, int arg, ar_store *store, int rc)
{
    return arl_fail(L, arg, rc, ar_store_errmsg(store));
}

int arl_push_count(lua_State *L, int arg, ar_store *store, int rc, int64_t n)
{
    if (rc)
        return arl_store_fail(L, arg, store, rc);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* ---- open and close ----------------------------------------------------- */

static const char *const open_fields[] = { "durability", "busy_timeout", "readonly", "schema", NULL };

/* agentrun.open(path [, opts]) -> store | nil, message, code */
static int l_open(lua_State *L)
{
    const char *path = arl_check_text(L, 1, 1, "path");
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    if (!lua_isnoneornil(L, 2)) {
        arl_checktype(L, 2, LUA_TTABLE);
        arl_check_fields(L, 2, 2, "open options", open_fields);
        const char *d = arl_field_text(L, 2, 2, "open options", "durability", 0);
        if (d && strcmp(d, "full") == 0)
            opts.durability = AR_DURABILITY_FULL;
        else if (d && strcmp(d, "normal") == 0)
            opts.durability = AR_DURABILITY_NORMAL;
        else if (d)
            arl_argerror(L, 2, "open options.durability must be \"full\" or \"normal\" (got \"%s\")", d);
        int64_t t = arl_field_int(L, 2, 2, "open options", "busy_timeout", 5000, 0);
        opts.busy_timeout_ms = t > 0x7fffffff ? 0x7fffffff : (int)t;
        opts.readonly = arl_field_bool(L, 2, 2, "open options", "readonly", 0);
        opts.schema = arl_field_text(L, 2, 2, "open options", "schema", 0);
    }
    /* the box exists, closed, before the store is acquired */
    arl_store *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->store = NULL;
    s->busy = 0;
    luaL_setmetatable(L, ARL_STORE_MT);
    ar_store *store = NULL;
    int rc = ar_store_open(&store, path, &opts);
    /* a schema that is no identifier is a bad option value, raised as the
     * others are; the core's check says why */
    if (rc == AR_EMISUSE && opts.schema && store && strncmp(ar_store_errmsg(store), "schema:", 7) == 0) {
        lua_pushfstring(L, "open options.%s", ar_store_errmsg(store));
        ar_store_close(store);
        return arl_argerror(L, 2, "%s", lua_tostring(L, -1));
    }
    if (rc != AR_OK) {
        lua_pushnil(L);
        lua_pushstring(L, store ? ar_store_errmsg(store) : "out of memory");
        lua_pushstring(L, ar_code_name(rc));
        ar_store_close(store);
        return 3;
    }
    s->store = store;
    return 1;
}

/* __gc: never raises (the core puts off a close it cannot make now). */
static int l_gc(lua_State *L)
{
    arl_store *s = to_store(L, 1);
    if (s->store) {
        ar_store *store = s->store;
        s->store = NULL;
        ar_store_close(store);
    }
    return 0;
}

/* store:close() and __close. Closing twice is harmless; closing from one of
 * the store's own retention rules raises ESTATE and leaves it open. */
static int l_close(lua_State *L)
{
    arl_store *s = to_store(L, 1);
    if (s->store && ar_store_in_rule(s->store))
        return arl_raise(L, AR_ESTATE, "cannot close the store: a retention rule of this store is running, "
                         "and a rule may read its store but not close it");
    if (s->store && s->busy)
        return arl_raise(L, AR_ESTATE, "cannot close the store: it is exporting or importing, and its "
                         "write or read function may use it but not close it");
    return l_gc(L);
}

static int l_tostring(lua_State *L)
{
    arl_store *s = to_store(L, 1);
    if (!s->store)
        lua_pushliteral(L, "agentrun.store (closed)");
    else {
        ar_store_info info;
        int ok = ar_store_info_get(&info, s->store) == AR_OK;
        lua_pushfstring(L, "agentrun.store (%s)", ok ? info.path : "?");
    }
    return 1;
}

static int l_info(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    ar_store_info info;
    int rc = ar_store_info_get(&info, store);
    if (rc)
        return arl_store_fail(L, 1, store, rc);
    lua_createtable(L, 0, 10);
    lua_pushstring(L, info.backend);
    lua_setfield(L, -2, "backend");
    lua_pushstring(L, info.path);
    lua_setfield(L, -2, "path");
    lua_pushinteger(L, info.schema_version);
    lua_setfield(L, -2, "schema_version");
    arl_set_int(L, "runs", info.runs);
    arl_set_int(L, "steps", info.steps);
    arl_set_int(L, "events", info.events);
    arl_set_int(L, "file_bytes", info.file_bytes);
    arl_set_int(L, "wal_bytes", info.wal_bytes);
    arl_set_int(L, "free_bytes", info.free_bytes);
    return 1;
}

/* ---- maintenance -------------------------------------------------------- */

static int l_forget_user(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    const char *user = arl_check_text(L, 2, 2, "user");
    int64_t n = 0;
    int rc = ar_store_forget_user(&n, store, user);
    return arl_push_count(L, 2, store, rc, n);
}

static const char *const recover_fields[] = { "stale_after", NULL };

static int l_recover(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    arl_checktype(L, 2, LUA_TTABLE);
    arl_check_fields(L, 2, 2, "recover options", recover_fields);
    lua_getfield(L, 2, "stale_after");
    if (lua_isnil(L, -1))
        arl_argerror(L, 2, "recover options.stale_after is required");
    lua_pop(L, 1);
    double stale = arl_field_number(L, 2, 2, "recover options", "stale_after", 0, 0);
    int64_t n = 0;
    int rc = ar_store_recover(&n, store, stale);
    return arl_push_count(L, 2, store, rc, n);
}

/* ---- check --------------------------------------------------------------- */

/* The problems of a check, kept in C memory while the check runs (no Lua
 * call may raise inside the core's scan), then handed to Lua. */
typedef struct check_problem {
    char kind[16];
    char run_id[32];
    int64_t run_key, seq;
    char field[48];
    char message[512];
} check_problem;

typedef struct check_list {
    check_problem *items;
    size_t n, cap;
} check_list;

static void copy_text(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static int keep_problem(void *ud, const ar_check_problem *p)
{
    check_list *list = ud;
    if (list->n == list->cap) {
        size_t cap = list->cap ? 2 * list->cap : 16;
        check_problem *grown = realloc(list->items, cap * sizeof *grown);
        if (!grown)
            return AR_ENOMEM;
        list->items = grown;
        list->cap = cap;
    }
    check_problem *c = &list->items[list->n++];
    copy_text(c->kind, sizeof c->kind, p->kind);
    copy_text(c->run_id, sizeof c->run_id, p->run_id);
    c->run_key = p->run_key;
    c->seq = p->seq;
    copy_text(c->field, sizeof c->field, p->field);
    copy_text(c->message, sizeof c->message, p->message);
    return 0;
}

/* Builds the report table from the kept problems (run under lua_pcall: the
 * list is freed whatever happens). */
static int push_check(lua_State *L)
{
    const check_list *list = lua_touserdata(L, 1);
    const ar_check_report *rep = lua_touserdata(L, 2);
    lua_createtable(L, 0, 7);
    lua_pushboolean(L, rep->problems == 0);
    lua_setfield(L, -2, "ok");
    arl_set_int(L, "runs", rep->runs);
    arl_set_int(L, "steps", rep->steps);
    arl_set_int(L, "checkpoints", rep->checkpoints);
    arl_set_int(L, "events", rep->events);
    lua_createtable(L, (int)list->n, 0);
    for (size_t i = 0; i < list->n; i++) {
        const check_problem *c = &list->items[i];
        int event = strcmp(c->kind, "event") == 0;
        lua_createtable(L, 0, 6);
        lua_pushstring(L, c->kind);
        lua_setfield(L, -2, "kind");
        if (event) {
            arl_set_int(L, "id", c->seq);
        } else if (c->run_id[0]) {
            lua_pushstring(L, c->run_id);
            lua_setfield(L, -2, "id");
        }
        if (c->run_key)
            arl_set_int(L, "key", c->run_key);
        if (!event && c->seq)
            arl_set_int(L, "seq", c->seq);
        if (c->field[0]) {
            lua_pushstring(L, c->field);
            lua_setfield(L, -2, "field");
        }
        lua_pushstring(L, c->message);
        lua_setfield(L, -2, "message");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "problems");
    return 1;
}

static int l_check(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    check_list list = { NULL, 0, 0 };
    ar_check_report rep;
    int rc = ar_store_check(&rep, store, keep_problem, &list);
    if (rc) {
        free(list.items);
        if (rc == AR_ENOMEM)
            return arl_raise(L, AR_ENOMEM, "out of memory keeping the problems of a check");
        return arl_store_fail(L, 1, store, rc);
    }
    lua_pushcfunction(L, push_check);
    lua_pushlightuserdata(L, &list);
    lua_pushlightuserdata(L, &rep);
    int st = lua_pcall(L, 2, 1, 0);
    free(list.items);
    if (st != LUA_OK)
        return lua_error(L);
    return 1;
}

const luaL_Reg arl_store_meta[] = {
    { "__gc", l_gc }, { "__close", l_close }, { "__tostring", l_tostring }, { NULL, NULL }
};

const luaL_Reg arl_store_methods[] = {
    { "close", l_close }, { "info", l_info }, { "forget_user", l_forget_user }, { "recover", l_recover },
    { "check", l_check }, { NULL, NULL }
};

const luaL_Reg arl_store_functions[] = { { "open", l_open }, { NULL, NULL } };
