/* events.c -- the Lua side of conversation events: append, list, count, summary, delete, retain. */
#include "arl.h"

#include <string.h>

static const char *const event_fields[] = {
    "agent", "type", "session", "content", "metadata", "run", "at", NULL
};

/* store:event(e) -> id */
static int l_event(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    arl_checktype(L, 2, LUA_TTABLE);
    arl_check_fields(L, 2, 2, "event", event_fields);
    ar_event e = AR_EVENT_INIT;
    e.agent = arl_field_text(L, 2, 2, "event", "agent", 1);
    e.type = arl_field_text(L, 2, 2, "event", "type", 1);
    e.session = arl_field_int(L, 2, 2, "event", "session", 0, 0);
    /* content is kept byte for byte, NUL bytes too: the core checks it */
    int t = lua_getfield(L, 2, "content");
    if (t == LUA_TSTRING)
        e.content = lua_tolstring(L, -1, &e.content_len);
    else if (t != LUA_TNIL)
        arl_argerror(L, 2, "event.content must be a string (got %s)", lua_typename(L, t));
    lua_pop(L, 1); /* the string stays referenced by the table */
    e.run = arl_field_text(L, 2, 2, "event", "run", 0);
    e.at = arl_field_int(L, 2, 2, "event", "at", AR_UNSET, 0);
    e.metadata = arl_field_json(L, 2, 2, "event", "metadata", arl_scratch(L));
    int64_t id = 0;
    int rc = ar_event_append(&id, store, &e);
    if (rc)
        return arl_store_fail(L, 2, store, rc);
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

static const char *const query_fields[] = {
    "agent", "session", "type", "since", "until", "limit", "after", "before", "order", NULL
};

/* Reads an events query at idx; type names are kept in types[AR_EVENT_QUERY_MAX_TYPES]. */
static void check_query(lua_State *L, int idx, ar_event_query *q, const char **types)
{
    ar_event_query init = AR_EVENT_QUERY_INIT;
    *q = init;
    arl_checktype(L, idx, LUA_TTABLE);
    arl_check_fields(L, idx, idx, "events query", query_fields);
    q->agent = arl_field_text(L, idx, idx, "events query", "agent", 1);
    q->session = arl_field_int(L, idx, idx, "events query", "session", AR_UNSET, 0);
    int t = lua_getfield(L, idx, "type");
    if (t == LUA_TSTRING) {
        types[0] = arl_check_text(L, idx, -1, "events query.type");
        q->types = types;
        q->n_types = 1;
    } else if (t == LUA_TTABLE) {
        size_t n = lua_rawlen(L, -1);
        if (n == 0 || n > AR_EVENT_QUERY_MAX_TYPES)
            arl_argerror(L, idx, "events query.type must list 1 to %d types", AR_EVENT_QUERY_MAX_TYPES);
        for (size_t i = 0; i < n; i++) {
            if (lua_rawgeti(L, -1, (lua_Integer)i + 1) != LUA_TSTRING)
                arl_argerror(L, idx, "events query.type[%d] must be a string", (int)i + 1);
            types[i] = arl_check_text(L, idx, -1, "events query.type");
            lua_pop(L, 1);
        }
        q->types = types;
        q->n_types = n;
    } else if (t != LUA_TNIL) {
        arl_argerror(L, idx, "events query.type must be a string or a list of strings (got %s)", lua_typename(L, t));
    }
    lua_pop(L, 1);
    arl_check_page(L, idx, "events query", &q->since, &q->until, &q->limit, &q->after, &q->before, &q->order);
}

static void push_event(lua_State *L, const ar_event *e)
{
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, (lua_Integer)e->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, e->agent);
    lua_setfield(L, -2, "agent");
    lua_pushinteger(L, (lua_Integer)e->session);
    lua_setfield(L, -2, "session");
    lua_pushstring(L, e->type);
    lua_setfield(L, -2, "type");
    if (e->content) {
        lua_pushlstring(L, e->content, e->content_len);
        lua_setfield(L, -2, "content");
    }
    if (e->metadata)
        arl_json_decode(L, e->metadata, strlen(e->metadata));
    else
        lua_newtable(L);
    lua_setfield(L, -2, "metadata");
    if (e->run) {
        lua_pushstring(L, e->run);
        lua_setfield(L, -2, "run");
    }
    lua_pushinteger(L, (lua_Integer)e->at);
    lua_setfield(L, -2, "at");
}

static void free_list(void *p)
{
    ar_event_list_free(p);
}

static void free_summary(void *p)
{
    ar_event_summary_free(p);
}

/* store:events(query) -> list, next_cursor */
static int l_events(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    ar_event_query q;
    const char *types[AR_EVENT_QUERY_MAX_TYPES];
    check_query(L, 2, &q, types);
    void **list_slot = arl_box(L, free_list);
    int box = lua_gettop(L);
    void **cursor_slot = arl_box(L, ar_free);
    ar_event_list *list = NULL;
    char *cursor = NULL;
    int rc = ar_events_list(&list, &cursor, store, &q);
    *list_slot = list;
    *cursor_slot = cursor;
    if (rc)
        return arl_store_fail(L, 2, store, rc);
    if (cursor) {
        lua_pushstring(L, cursor);
    } else {
        lua_pushnil(L);
    }
    int cur = lua_gettop(L);
    lua_createtable(L, (int)list->n, 0);
    luaL_setmetatable(L, ARL_ARRAY_MT);
    for (size_t i = 0; i < list->n; i++) {
        push_event(L, &list->items[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_pushvalue(L, cur);
    arl_unbox(L, box);
    arl_unbox(L, box + 1);
    return 2;
}

static int l_count_events(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    ar_event_query q;
    const char *types[AR_EVENT_QUERY_MAX_TYPES];
    check_query(L, 2, &q, types);
    int64_t n = 0;
    int rc = ar_events_count(&n, store, &q);
    return arl_push_count(L, 2, store, rc, n);
}

/* store:event_summary(agent) -> {total, by_type, sessions, first_at, last_at} */
static int l_event_summary(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    const char *agent = arl_check_text(L, 2, 2, "agent");
    void **slot = arl_box(L, free_summary);
    int box = lua_gettop(L);
    ar_event_summary *s = NULL;
    int rc = ar_events_summary(&s, store, agent);
    *slot = s;
    if (rc)
        return arl_store_fail(L, 2, store, rc);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)s->total);
    lua_setfield(L, -2, "total");
    lua_pushinteger(L, (lua_Integer)s->sessions);
    lua_setfield(L, -2, "sessions");
    if (s->first_at != AR_UNSET) {
        lua_pushinteger(L, (lua_Integer)s->first_at);
        lua_setfield(L, -2, "first_at");
        lua_pushinteger(L, (lua_Integer)s->last_at);
        lua_setfield(L, -2, "last_at");
    }
    lua_createtable(L, 0, (int)s->n_types);
    for (size_t i = 0; i < s->n_types; i++) {
        lua_pushinteger(L, (lua_Integer)s->by_type[i].count);
        lua_setfield(L, -2, s->by_type[i].type);
    }
    lua_setfield(L, -2, "by_type");
    arl_unbox(L, box);
    return 1;
}

static int l_delete_events(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    const char *agent = arl_check_text(L, 2, 2, "agent");
    int64_t n = 0;
    int rc = ar_events_delete(&n, store, agent);
    return arl_push_count(L, 2, store, rc, n);
}

static const char *const retain_fields[] = { "older_than", "keep_last", NULL };

/* store:retain_events{older_than=, keep_last=} -> count deleted */
static int l_retain_events(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    arl_checktype(L, 2, LUA_TTABLE);
    arl_check_fields(L, 2, 2, "retain_events policy", retain_fields);
    ar_event_retention p = AR_EVENT_RETENTION_INIT;
    p.older_than = arl_field_number(L, 2, 2, "retain_events policy", "older_than", -1, 1);
    p.keep_last = arl_field_int(L, 2, 2, "retain_events policy", "keep_last", -1, 0);
    int64_t n = 0;
    int rc = ar_events_retain(&n, store, &p);
    return arl_push_count(L, 2, store, rc, n);
}

const luaL_Reg arl_events_methods[] = {
    { "event", l_event }, { "events", l_events }, { "count_events", l_count_events },
    { "event_summary", l_event_summary }, { "delete_events", l_delete_events },
    { "retain_events", l_retain_events }, { NULL, NULL }
};
