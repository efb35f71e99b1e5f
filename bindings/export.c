/* export.c -- store:export, store:import, store:copy and store:otlp: the
 * core streams, and the Lua write/read functions run under lua_pcall, so a
 * Lua error never crosses the core's C frames. */
#include "arl.h"

#include <stdlib.h>
#include <string.h>

/* A line being gathered from the core's pieces; owned by a box, so an error
 * raised meanwhile leaks nothing. */
typedef struct linebuf {
    char *data;
    size_t len, cap;
} linebuf;

static void linebuf_free(void *p)
{
    linebuf *b = p;
    free(b->data);
    free(b);
}

typedef struct cb_ctx {
    lua_State *L;
    int fn;             /* stack index of the Lua function */
    int err_slot;       /* stack index that receives its error */
    int line_slot;      /* stack index that anchors the line read last */
    linebuf *line;
    const char *what;   /* "write" or "read" */
    int failed;         /* the Lua function raised (its error is in err_slot) */
} cb_ctx;

/* Runs inside lua_pcall(ctx, fn): fn(line). */
static int write_trampoline(lua_State *L)
{
    cb_ctx *c = lua_touserdata(L, 1);
    lua_pushvalue(L, 2);
    lua_pushlstring(L, c->line->data, c->line->len);
    lua_call(L, 1, 0);
    return 0;
}

/* Calls f(ctx, fn) under lua_pcall; f's one result is left on the stack. */
static int call_protected(cb_ctx *c, lua_CFunction f)
{
    lua_State *L = c->L;
    if (!lua_checkstack(L, 6)) {
        lua_pushliteral(L, "Lua stack overflow");
        lua_replace(L, c->err_slot);
        c->failed = 1;
        return 1;
    }
    lua_pushcfunction(L, f);
    lua_pushlightuserdata(L, c);
    lua_pushvalue(L, c->fn);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        lua_replace(L, c->err_slot);
        c->failed = 1;
        return 1;
    }
    return 0;
}

/* The core's write function: gathers pieces into lines, hands each line
 * (without its "\n") to the Lua function. */
static int on_write(void *ud, const char *data, size_t len)
{
    cb_ctx *c = ud;
    linebuf *b = c->line;
    while (len) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (b->len + take > b->cap) {
            size_t cap = b->cap ? b->cap : 4096;
            while (cap < b->len + take)
                cap *= 2;
            char *grown = realloc(b->data, cap);
            if (!grown) {
                lua_pushliteral(c->L, "not enough memory");
                lua_replace(c->L, c->err_slot);
                c->failed = 1;
                return 1;
            }
            b->data = grown;
            b->cap = cap;
        }
        memcpy(b->data + b->len, data, take);
        b->len += take;
        if (!nl)
            break;
        if (call_protected(c, write_trampoline))
            return 1;
        lua_pop(c->L, 1);
        b->len = 0;
        data += take + 1;
        len -= take + 1;
    }
    return 0;
}

/* Runs inside lua_pcall(ctx, fn): returns fn(), a string or nil. */
static int read_trampoline(lua_State *L)
{
    lua_pushvalue(L, 2);
    lua_call(L, 0, 1);
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNIL)
        return luaL_error(L, "import: read must return a string or nil (got %s)", luaL_typename(L, -1));
    return 1;
}

static int on_read(void *ud, const char **line, size_t *len)
{
    cb_ctx *c = ud;
    if (call_protected(c, read_trampoline))
        return 1;
    lua_replace(c->L, c->line_slot); /* anchored until the next read */
    *line = NULL;
    *len = 0;
    if (lua_type(c->L, c->line_slot) == LUA_TSTRING)
        *line = lua_tolstring(c->L, c->line_slot, len);
    return 0;
}

static const char *const query_fields[] = {
    "agent", "user", "status", "edition", "parent", "since", "until", NULL
};

/* An export's run query (argument idx, may be nil): filters only. */
static void check_query(lua_State *L, int idx, const char *what, ar_run_query *q, ar_status *st)
{
    ar_run_query init = AR_RUN_QUERY_INIT;
    *q = init;
    if (lua_isnoneornil(L, idx))
        return;
    arl_checktype(L, idx, LUA_TTABLE);
    arl_check_fields(L, idx, idx, what, query_fields);
    q->agent = arl_field_text(L, idx, idx, what, "agent", 0);
    q->user = arl_field_text(L, idx, idx, what, "user", 0);
    q->edition = arl_field_text(L, idx, idx, what, "edition", 0);
    q->parent = arl_field_text(L, idx, idx, what, "parent", 0);
    if (lua_getfield(L, idx, "status") != LUA_TNIL) {
        char label[40];
        snprintf(label, sizeof label, "%s.status", what);
        q->n_status = arl_check_statuses(L, idx, -1, label, AR_RUN_QUERY_MAX_STATUSES, st);
        q->status = st;
    }
    lua_pop(L, 1);
    q->since = arl_field_int(L, idx, idx, what, "since", AR_UNSET, INT64_MIN + 1);
    q->until = arl_field_int(L, idx, idx, what, "until", AR_UNSET, INT64_MIN + 1);
}

/* Sets up the slots of a callback: the function at fn_arg, then an error
 * slot, a line slot and the line buffer's box on top of the stack. */
static void ctx_open(lua_State *L, cb_ctx *c, int fn_arg, const char *what, int with_buffer)
{
    arl_checktype(L, fn_arg, LUA_TFUNCTION);
    memset(c, 0, sizeof *c);
    c->L = L;
    c->fn = fn_arg;
    c->what = what;
    lua_pushnil(L);
    c->err_slot = lua_gettop(L);
    lua_pushnil(L);
    c->line_slot = lua_gettop(L);
    if (with_buffer) {
        void **slot = arl_box(L, linebuf_free);
        linebuf *b = calloc(1, sizeof *b);
        if (!b)
            luaL_error(L, "not enough memory");
        *slot = b;
        c->line = b;
    }
}

/* The end of a streaming call: the Lua function's own error, or the store's. */
static int finish(lua_State *L, cb_ctx *c, arl_store *s, int rc, int arg)
{
    s->busy--;
    if (rc == AR_ECALLBACK && c->failed) {
        lua_pushvalue(L, c->err_slot);
        return lua_error(L);
    }
    if (rc)
        return arl_store_fail(L, arg, s->store, rc);
    return 0;
}

static arl_store *busy_store(lua_State *L)
{
    arl_check_store(L, 1);
    arl_store *s = lua_touserdata(L, 1);
    return s;
}

/* store:export(query, write) -> {runs=, events=, bytes=} */
static int l_export(lua_State *L)
{
    arl_store *s = busy_store(L);
    ar_run_query q;
    ar_status st[ARL_STATUSES];
    check_query(L, 2, "query", &q, st);
    cb_ctx c;
    ctx_open(L, &c, 3, "write", 1);
    ar_export_report rep;
    s->busy++;
    int rc = ar_store_export(&rep, s->store, &q, on_write, &c);
    finish(L, &c, s, rc, 2);
    lua_createtable(L, 0, 3);
    arl_set_int(L, "runs", rep.runs);
    arl_set_int(L, "events", rep.events);
    arl_set_int(L, "bytes", rep.bytes);
    return 1;
}

static void push_import_report(lua_State *L, const ar_import_report *rep)
{
    lua_createtable(L, 0, 4);
    arl_set_int(L, "runs", rep->runs);
    arl_set_int(L, "events", rep->events);
    arl_set_int(L, "skipped", rep->skipped);
    arl_set_int(L, "lines", rep->lines);
}

/* store:import(read) -> {runs=, events=, skipped=, lines=} */
static int l_import(lua_State *L)
{
    arl_store *s = busy_store(L);
    cb_ctx c;
    ctx_open(L, &c, 2, "read", 0);
    ar_import_report rep;
    s->busy++;
    int rc = ar_store_import(&rep, s->store, on_read, &c);
    finish(L, &c, s, rc, 1);
    push_import_report(L, &rep);
    return 1;
}

/* store:copy(dest) -> {runs=, events=, skipped=, lines=}: every run and event of store into dest. */
static int l_copy(lua_State *L)
{
    ar_store *src = arl_check_store(L, 1);
    ar_store *dest = arl_check_store(L, 2);
    ar_import_report rep;
    int rc = ar_store_copy(&rep, dest, src);
    if (rc)
        return arl_store_fail(L, 2, dest, rc);
    push_import_report(L, &rep);
    return 1;
}

static const char *const otlp_fields[] = { "content", NULL };

/* store:otlp(query, write [, {content=true}]) -> {runs=, bytes=} */
static int l_otlp(lua_State *L)
{
    arl_store *s = busy_store(L);
    ar_run_query q;
    ar_status st[ARL_STATUSES];
    check_query(L, 2, "query", &q, st);
    int flags = 0;
    if (!lua_isnoneornil(L, 4)) {
        arl_checktype(L, 4, LUA_TTABLE);
        arl_check_fields(L, 4, 4, "otlp options", otlp_fields);
        if (arl_field_bool(L, 4, 4, "otlp options", "content", 0))
            flags |= AR_OTLP_CONTENT;
    }
    lua_settop(L, 3);
    cb_ctx c;
    ctx_open(L, &c, 3, "write", 1);
    ar_export_report rep;
    s->busy++;
    int rc = ar_store_otlp(&rep, s->store, &q, flags, on_write, &c);
    finish(L, &c, s, rc, 2);
    lua_createtable(L, 0, 2);
    arl_set_int(L, "runs", rep.runs);
    arl_set_int(L, "bytes", rep.bytes);
    return 1;
}

const luaL_Reg arl_export_methods[] = {
    { "export", l_export }, { "import", l_import }, { "copy", l_copy }, { "otlp", l_otlp }, { NULL, NULL }
};
