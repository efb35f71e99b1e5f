/* read.c -- reading runs back: store:get, the listings runs/count/stats, store:checkpoint. */
#include "arl.h"

#include <string.h>

static const char *const get_fields[] = { "steps", NULL };

/* store:get(id [, {steps=true}]) -> record | nil */
static int l_get(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    const char *id = arl_check_text(L, 2, 2, "id");
    int with_steps = 0;
    if (!lua_isnoneornil(L, 3)) {
        arl_checktype(L, 3, LUA_TTABLE);
        arl_check_fields(L, 3, 3, "get options", get_fields);
        with_steps = arl_field_bool(L, 3, 3, "get options", "steps", 0);
    }
    ar_record *r = NULL;
    int rc = ar_store_get(&r, store, id, with_steps);
    if (rc == AR_ENOTFOUND) {
        lua_pushnil(L);
        return 1;
    }
    if (rc)
        return arl_store_fail(L, 2, store, rc);
    arl_push_owned_record(L, r, with_steps);
    return 1;
}

static const char *const query_fields[] = {
    "agent", "user", "status", "edition", "parent", "forked_from", "since", "until", "limit", "after", "before",
    "order", NULL
};

/* Reads a runs query table at idx (may be nil) into *q; statuses go into st[ARL_STATUSES]. */
static void check_query(lua_State *L, int idx, ar_run_query *q, ar_status *st)
{
    ar_run_query init = AR_RUN_QUERY_INIT;
    *q = init;
    if (lua_isnoneornil(L, idx))
        return;
    arl_checktype(L, idx, LUA_TTABLE);
    arl_check_fields(L, idx, idx, "query", query_fields);
    q->agent = arl_field_text(L, idx, idx, "query", "agent", 0);
    q->user = arl_field_text(L, idx, idx, "query", "user", 0);
    q->edition = arl_field_text(L, idx, idx, "query", "edition", 0);
    q->parent = arl_field_text(L, idx, idx, "query", "parent", 0);
    q->forked_from = arl_field_text(L, idx, idx, "query", "forked_from", 0);
    if (lua_getfield(L, idx, "status") != LUA_TNIL) {
        q->n_status = arl_check_statuses(L, idx, -1, "query.status", AR_RUN_QUERY_MAX_STATUSES, st);
        q->status = st;
    }
    lua_pop(L, 1);
    arl_check_page(L, idx, "query", &q->since, &q->until, &q->limit, &q->after, &q->before, &q->order);
}

/* Holds an array of records until they are pushed (decoding may raise). */
typedef struct records_box {
    ar_record **list;
    size_t n;
} records_box;

static int records_box_gc(lua_State *L)
{
    records_box *b = lua_touserdata(L, 1);
    ar_records_free(b->list, b->n);
    b->list = NULL;
    b->n = 0;
    return 0;
}

/* store:runs(query) -> list, next_cursor */
static int l_runs(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    ar_run_query q;
    ar_status st[ARL_STATUSES];
    check_query(L, 2, &q, st);
    records_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->list = NULL;
    b->n = 0;
    luaL_setmetatable(L, ARL_RECORDS_MT);
    char *cursor = NULL;
    int rc = ar_runs_list(&b->list, &b->n, &cursor, store, &q);
    if (rc)
        return arl_store_fail(L, 2, store, rc);
    if (cursor) {
        lua_pushstring(L, cursor);
        ar_free(cursor);
    } else {
        lua_pushnil(L);
    }
    int cur = lua_gettop(L);
    lua_createtable(L, (int)b->n, 0);
    luaL_setmetatable(L, ARL_ARRAY_MT);
    for (size_t i = 0; i < b->n; i++) {
        arl_push_record(L, b->list[i], 0);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_pushvalue(L, cur);
    ar_records_free(b->list, b->n);
    b->list = NULL;
    b->n = 0;
    return 2;
}

static int l_count(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    ar_run_query q;
    ar_status st[ARL_STATUSES];
    check_query(L, 2, &q, st);
    int64_t n = 0;
    int rc = ar_runs_count(&n, store, &q);
    return arl_push_count(L, 2, store, rc, n);
}

static int l_stats(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    ar_run_query q;
    ar_status st[ARL_STATUSES];
    check_query(L, 2, &q, st);
    ar_stats s;
    int rc = ar_runs_stats(&s, store, &q);
    if (rc)
        return arl_store_fail(L, 2, store, rc);
    lua_createtable(L, 0, 8);
    arl_set_int(L, "runs", s.runs);
    lua_createtable(L, 0, AR_WAITING + 1);
    for (int i = 0; i <= AR_WAITING; i++) {
        lua_pushinteger(L, (lua_Integer)s.by_status[i]);
        lua_setfield(L, -2, ar_status_name((ar_status)i));
    }
    lua_setfield(L, -2, "by_status");
    arl_set_int(L, "iterations", s.iterations);
    arl_set_int(L, "input_tokens", s.input_tokens);
    arl_set_int(L, "output_tokens", s.output_tokens);
    arl_set_int(L, "total_tokens", s.total_tokens);
    lua_pushnumber(L, s.cost);
    lua_setfield(L, -2, "cost");
    lua_pushnumber(L, s.avg_latency_ms);
    lua_setfield(L, -2, "avg_latency_ms");
    return 1;
}

/* store:checkpoint(run_id) -> state, seq | nil */
static int l_checkpoint(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    const char *id = arl_check_text(L, 2, 2, "run_id");
    char *state = NULL;
    int64_t seq = 0;
    int rc = ar_store_checkpoint(&state, &seq, store, id);
    if (rc)
        return arl_store_fail(L, 2, store, rc);
    if (!state) {
        lua_pushnil(L);
        return 1;
    }
    /* the text is copied first so a decoding error leaks nothing */
    lua_pushstring(L, state);
    ar_free(state);
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    arl_json_decode(L, s, n);
    lua_pushinteger(L, (lua_Integer)seq);
    return 2;
}

static void release_intents(void *p) { ar_intent_list_free(p); }

/* store:intents(run_id) -> list of {key, name, args, status, result,
 * intent_seq, result_seq}, in intent_seq order (result and result_seq nil
 * while pending). */
static int l_intents(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    const char *id = arl_check_text(L, 2, 2, "run_id");
    void **slot = arl_box(L, release_intents);
    ar_intent_list *list = NULL;
    int rc = ar_store_intents(&list, store, id);
    if (rc)
        return arl_store_fail(L, 2, store, rc);
    *slot = list;
    lua_createtable(L, (int)list->n, 0);
    for (size_t i = 0; i < list->n; i++) {
        const ar_intent *x = &list->items[i];
        lua_createtable(L, 0, 7);
        lua_pushstring(L, x->key);
        lua_setfield(L, -2, "key");
        lua_pushstring(L, x->name);
        lua_setfield(L, -2, "name");
        arl_json_decode(L, x->args, strlen(x->args));
        lua_setfield(L, -2, "args");
        lua_pushstring(L, ar_intent_status_name(x->status));
        lua_setfield(L, -2, "status");
        if (x->result) {
            arl_json_decode(L, x->result, strlen(x->result));
            lua_setfield(L, -2, "result");
            lua_pushinteger(L, (lua_Integer)x->result_seq);
            lua_setfield(L, -2, "result_seq");
        }
        lua_pushinteger(L, (lua_Integer)x->intent_seq);
        lua_setfield(L, -2, "intent_seq");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    arl_unbox(L, -2);
    return 1;
}

const luaL_Reg arl_records_meta[] = { { "__gc", records_box_gc }, { NULL, NULL } };

const luaL_Reg arl_read_methods[] = {
    { "get", l_get }, { "runs", l_runs }, { "count", l_count }, { "stats", l_stats },
    { "checkpoint", l_checkpoint }, { "intents", l_intents }, { NULL, NULL }
};
