/* store.c -- the Lua store handle: open/close, recording entry points, reading. */
#include "arl.h"

#include <stdio.h>
#include <string.h>

#define AR_ERRMSG_MAX_LUA 512

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

/* Fails with the store's last error; a misuse is about argument `arg`. */
static int store_fail(lua_State *L, int arg, ar_store *store, int rc)
{
    return arl_fail(L, arg, rc, ar_store_errmsg(store));
}

/* ---- open and close ----------------------------------------------------- */

static const char *const open_fields[] = { "durability", "busy_timeout", "readonly", NULL };

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
    }
    /* the box exists, closed, before the store is acquired */
    arl_store *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->store = NULL;
    luaL_setmetatable(L, ARL_STORE_MT);
    ar_store *store = NULL;
    int rc = ar_store_open(&store, path, &opts);
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
        return store_fail(L, 1, store, rc);
    lua_createtable(L, 0, 10);
    lua_pushstring(L, info.backend);
    lua_setfield(L, -2, "backend");
    lua_pushstring(L, info.path);
    lua_setfield(L, -2, "path");
    lua_pushinteger(L, info.schema_version);
    lua_setfield(L, -2, "schema_version");
#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))
    SETI("runs", info.runs);
    SETI("steps", info.steps);
    SETI("events", info.events);
    SETI("file_bytes", info.file_bytes);
    SETI("wal_bytes", info.wal_bytes);
    SETI("free_bytes", info.free_bytes);
#undef SETI
    return 1;
}

/* ---- recording ---------------------------------------------------------- */

static const char *const spec_fields[] = {
    "agent", "goal", "user", "edition", "parent", "metadata", "budget", NULL
};

/* Encodes t[field] (a table) as a JSON object into buf; NULL when absent. */
static const char *json_field(lua_State *L, int arg, int idx, const char *field, arl_buf *buf)
{
    int t = lua_getfield(L, idx, field);
    const char *json = NULL;
    if (t != LUA_TNIL) {
        if (t != LUA_TTABLE)
            arl_argerror(L, arg, "%s must be a table (got %s)", field, lua_typename(L, t));
        buf->len = 0;
        arl_json_encode(L, -1, field, buf);
        arl_buf_add(L, buf, "", 1); /* the core takes it as a C string */
        json = buf->data;
    }
    lua_pop(L, 1);
    return json;
}

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
    spec.metadata = json_field(L, 2, 2, "metadata", arl_scratch(L));
    ar_run *run = NULL;
    /* the run handle's box exists before the run is begun */
    arl_push_run(L, NULL, 1);
    int rc = ar_run_begin(&run, store, &spec);
    if (rc)
        return store_fail(L, 2, store, rc);
    ((arl_run *)lua_touserdata(L, -1))->run = run;
    return 1;
}

static const char *const record_fields[] = {
    "id", "agent", "goal", "user", "edition", "parent", "status", "output", "error", "limit",
    "budget", "iterations", "usage", "latency_ms", "created_at", "finished_at", "updated_at",
    "metadata", "steps", "checkpoint", NULL
};
static const char *const limit_fields[] = { "name", "value", "reached", NULL };
static const char *const checkpoint_fields[] = { "state", "seq", NULL };

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
    if (ar_status_parse(&r->status, status) || r->status == AR_RUNNING)
        arl_argerror(L, arg, "record.status must be completed, budget_exhausted, failed or interrupted (got \"%s\")",
                     status);
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
    if (lua_getfield(L, idx, "output") != LUA_TNIL) {
        arl_buf *b = arl_scratch(L);
        arl_json_encode(L, -1, "output", b);
        lua_pushlstring(L, b->data, b->len);
        r->output = lua_tostring(L, -1);
        lua_rawseti(L, keep, ++kept);
    }
    lua_pop(L, 1);
    r->metadata = json_field(L, arg, idx, "metadata", arl_scratch(L));
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
        r->limit.limit_value = arl_field_number(L, arg, li, "record.limit", "value", 0);
        r->limit.value = arl_field_number(L, arg, li, "record.limit", "reached", r->limit.limit_value);
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
        arl_buf *b = arl_scratch(L);
        arl_json_encode(L, -1, "checkpoint.state", b);
        lua_pushlstring(L, b->data, b->len);
        r->checkpoint = lua_tostring(L, -1);
        lua_rawseti(L, keep, ++kept);
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
        return store_fail(L, 2, store, rc);
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
    char err[AR_ERRMSG_MAX_LUA];
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

/* ---- reading ------------------------------------------------------------ */

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
        return store_fail(L, 2, store, rc);
    arl_push_owned_record(L, r, with_steps);
    return 1;
}

/* A steps iterator: closes its core iterator on exhaustion, error, GC or <close>. */
typedef struct arl_iter {
    ar_step_iter *it;
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
    luaL_setmetatable(L, ARL_ITER_MT);
    lua_pushvalue(L, store_idx);
    lua_setiuservalue(L, -2, 1);
    int rc = ar_steps_open(&b->it, store, id, from, limit);
    if (rc)
        store_fail(L, 2, store, rc);
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
        return store_fail(L, 1, s->store, rc);
    if (!step) {
        ar_steps_close(b->it);
        b->it = NULL;
        lua_pushnil(L);
        return 0;
    }
    arl_push_step(L, step);
    return 1;
}

static int iter_next(lua_State *L)
{
    iter_push_next(L, lua_upvalueindex(1));
    return 1;
}

static const char *const steps_fields[] = { "from", "limit", NULL };

/* store:steps(id [, {from=, limit=}]) -> iterator (for step in store:steps(id) do ... end) */
static int l_steps(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    const char *id = arl_check_text(L, 2, 2, "id");
    int64_t from = 1, limit = -1;
    if (!lua_isnoneornil(L, 3)) {
        arl_checktype(L, 3, LUA_TTABLE);
        arl_check_fields(L, 3, 3, "steps options", steps_fields);
        from = arl_field_int(L, 3, 3, "steps options", "from", 1, 1);
        limit = arl_field_int(L, 3, 3, "steps options", "limit", -1, 0);
    }
    push_iter(L, store, 1, id, from, limit);
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
    luaL_setmetatable(L, ARL_ITER_MT);
    int rc = ar_steps_open(&b->it, store, run_id, 1, -1);
    if (rc)
        return store_fail(L, 1, store, rc);
    lua_Integer i = 0;
    for (;;) {
        const ar_step *step = NULL;
        if ((rc = ar_steps_next(&step, b->it)))
            return store_fail(L, 1, store, rc);
        if (!step)
            break;
        arl_push_step(L, step);
        lua_rawseti(L, steps, ++i);
    }
    ar_steps_close(b->it);
    b->it = NULL;
    lua_settop(L, steps);
    lua_setfield(L, t, "steps");
    luaL_setmetatable(L, "agentrun.BudgetExhausted");
    return lua_error(L);
}

static const char *const query_fields[] = {
    "agent", "user", "status", "edition", "parent", "since", "until", "limit", "after", "before", "order", NULL
};

/* Reads a runs query table at idx (may be nil) into *q; statuses go into st[16]. */
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
    if (lua_getfield(L, idx, "status") != LUA_TNIL) {
        q->n_status = arl_check_statuses(L, idx, -1, "query.status", st);
        q->status = st;
    }
    lua_pop(L, 1);
    q->since = arl_field_int(L, idx, idx, "query", "since", AR_UNSET, INT64_MIN + 1);
    q->until = arl_field_int(L, idx, idx, "query", "until", AR_UNSET, INT64_MIN + 1);
    q->limit = arl_field_int(L, idx, idx, "query", "limit", 50, 0);
    q->after = arl_field_text(L, idx, idx, "query", "after", 0);
    q->before = arl_field_text(L, idx, idx, "query", "before", 0);
    const char *order = arl_field_text(L, idx, idx, "query", "order", 0);
    if (order && strcmp(order, "asc") == 0)
        q->order = AR_ORDER_ASC;
    else if (order && strcmp(order, "desc") != 0)
        arl_argerror(L, idx, "query.order must be \"asc\" or \"desc\" (got \"%s\")", order);
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
    ar_status st[16];
    check_query(L, 2, &q, st);
    records_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->list = NULL;
    b->n = 0;
    luaL_setmetatable(L, "agentrun.records_box");
    char *cursor = NULL;
    int rc = ar_runs_list(&b->list, &b->n, &cursor, store, &q);
    if (rc)
        return store_fail(L, 2, store, rc);
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
    ar_status st[16];
    check_query(L, 2, &q, st);
    int64_t n = 0;
    int rc = ar_runs_count(&n, store, &q);
    if (rc)
        return store_fail(L, 2, store, rc);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int l_stats(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    ar_run_query q;
    ar_status st[16];
    check_query(L, 2, &q, st);
    ar_stats s;
    int rc = ar_runs_stats(&s, store, &q);
    if (rc)
        return store_fail(L, 2, store, rc);
    lua_createtable(L, 0, 8);
#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))
    SETI("runs", s.runs);
    lua_createtable(L, 0, 5);
    for (int i = 0; i < 5; i++) {
        lua_pushinteger(L, (lua_Integer)s.by_status[i]);
        lua_setfield(L, -2, ar_status_name((ar_status)i));
    }
    lua_setfield(L, -2, "by_status");
    SETI("iterations", s.iterations);
    SETI("input_tokens", s.input_tokens);
    SETI("output_tokens", s.output_tokens);
    SETI("total_tokens", s.total_tokens);
#undef SETI
    lua_pushnumber(L, s.cost);
    lua_setfield(L, -2, "cost");
    lua_pushnumber(L, s.avg_latency_ms);
    lua_setfield(L, -2, "avg_latency_ms");
    return 1;
}

static int l_forget_user(lua_State *L)
{
    ar_store *store = arl_check_store(L, 1);
    const char *user = arl_check_text(L, 2, 2, "user");
    int64_t n = 0;
    int rc = ar_store_forget_user(&n, store, user);
    if (rc)
        return store_fail(L, 2, store, rc);
    lua_pushinteger(L, (lua_Integer)n);
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
        return store_fail(L, 2, store, rc);
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
        return store_fail(L, has_budget ? 3 : 2, store, rc);
    ((arl_run *)lua_touserdata(L, -1))->run = run;
    return 1;
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
    double stale = arl_field_number(L, 2, 2, "recover options", "stale_after", 0);
    int64_t n = 0;
    int rc = ar_store_recover(&n, store, stale);
    if (rc)
        return store_fail(L, 2, store, rc);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static const luaL_Reg store_methods[] = {
    { "close", l_close }, { "info", l_info }, { "begin", l_begin }, { "write", l_write },
    { "get", l_get }, { "steps", l_steps }, { "runs", l_runs }, { "count", l_count },
    { "stats", l_stats }, { "forget_user", l_forget_user }, { "checkpoint", l_checkpoint },
    { "resume", l_resume }, { "recover", l_recover }, { NULL, NULL }
};

void arl_open_store(lua_State *L, int module_idx)
{
    module_idx = lua_absindex(L, module_idx);
    luaL_newmetatable(L, ARL_STORE_MT);
    lua_newtable(L);
    arl_setfuncs(L, store_methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newmetatable(L, ARL_ITER_MT);
    lua_pushcfunction(L, iter_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, iter_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);

    luaL_newmetatable(L, "agentrun.records_box");
    lua_pushcfunction(L, records_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    static const luaL_Reg functions[] = { { "open", l_open }, { "make_record", l_make_record }, { NULL, NULL } };
    lua_pushvalue(L, module_idx);
    arl_setfuncs(L, functions, 0);
    lua_pop(L, 1);
}
