/* convert.c -- Lua tables <-> the core's budgets, steps, usage and records. */
#include "arl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const budget_fields[] = {
    "max_steps", "max_input_tokens", "max_output_tokens", "max_tokens", "max_cost", "max_seconds", NULL
};

/* Budget limits are range-checked by the core, which states the range. A
 * negative one must not read as AR_NO_LIMIT (-1) there: it is passed as a
 * value that is out of range for certain. */
static int64_t budget_int(lua_State *L, int arg, int idx, const char *field)
{
    int64_t v = AR_NO_LIMIT;
    if (lua_getfield(L, idx, field) != LUA_TNIL) {
        char label[32];
        snprintf(label, sizeof label, "budget.%s", field);
        v = arl_to_count(L, arg, -1, label);
        if (v < 0)
            v = INT64_MIN;
    }
    lua_pop(L, 1);
    return v;
}

static double budget_real(lua_State *L, int arg, int idx, const char *field)
{
    int given = lua_getfield(L, idx, field) != LUA_TNIL;
    lua_pop(L, 1);
    if (!given)
        return AR_NO_LIMIT;
    double v = arl_field_number(L, arg, idx, "budget", field, AR_NO_LIMIT, 0);
    return v >= 0 ? v : -HUGE_VAL;
}

void arl_check_budget(lua_State *L, int arg, int idx, ar_budget *out)
{
    ar_budget b = AR_BUDGET_INIT;
    idx = lua_absindex(L, idx);
    if (lua_isnoneornil(L, idx)) {
        *out = b;
        return;
    }
    if (!lua_istable(L, idx))
        arl_argerror(L, arg, "budget must be a table (got %s)", luaL_typename(L, idx));
    arl_check_fields(L, arg, idx, "budget", budget_fields);
    b.max_steps = budget_int(L, arg, idx, "max_steps");
    b.max_input_tokens = budget_int(L, arg, idx, "max_input_tokens");
    b.max_output_tokens = budget_int(L, arg, idx, "max_output_tokens");
    b.max_tokens = budget_int(L, arg, idx, "max_tokens");
    b.max_cost = budget_real(L, arg, idx, "max_cost");
    b.max_seconds = budget_real(L, arg, idx, "max_seconds");
    *out = b;
}

static const char *const step_fields[] = {
    "kind", "name", "content", "usage", "cost", "duration_ms", NULL
};
static const char *const record_step_fields[] = {
    "kind", "name", "content", "usage", "cost", "duration_ms", "seq", "at", NULL
};

/* Reads a usage table: input/output tokens, a total that must add up, and
 * any other non-negative integer counters. */
void arl_check_usage(lua_State *L, int arg, int idx, const char *what, ar_usage *u,
                     ar_counter *counters, int with_cost)
{
    int has_total = 0;
    int64_t total = 0;
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            arl_argerror(L, arg, "%s.usage: counter names must be strings", what);
        const char *key = lua_tostring(L, -2);
        if (with_cost && strcmp(key, "cost") == 0) {
            /* its range is the core's to check */
            if (lua_type(L, -1) != LUA_TNUMBER)
                arl_argerror(L, arg, "%s.usage.cost must be a number (got %s)", what, luaL_typename(L, -1));
            u->cost = (double)lua_tonumber(L, -1);
            lua_pop(L, 1);
            continue;
        }
        if (strcmp(key, "cost") == 0)
            arl_argerror(L, arg, "%s.usage.cost: give cost as step.cost", what);
        char label[96];
        lua_pushfstring(L, "%s.usage.%s", what, key);
        strncpy(label, lua_tostring(L, -1), sizeof label - 1);
        label[sizeof label - 1] = '\0';
        lua_pop(L, 1);
        int64_t v = arl_to_count(L, arg, -1, label);
        if (strcmp(key, "input_tokens") == 0) {
            u->input_tokens = v;
        } else if (strcmp(key, "output_tokens") == 0) {
            u->output_tokens = v;
        } else if (strcmp(key, "total_tokens") == 0) {
            has_total = 1;
            total = v;
        } else {
            if (n == ARL_MAX_COUNTERS)
                arl_argerror(L, arg, "%s.usage has more than %d counters", what, ARL_MAX_COUNTERS);
            counters[n].name = key; /* the key string is held by the usage table */
            counters[n].value = v;
            n++;
        }
        lua_pop(L, 1);
    }
    /* unsigned: counts out of range (the core refuses them) must not overflow here */
    uint64_t sum = (uint64_t)u->input_tokens + (uint64_t)u->output_tokens;
    if (has_total && (uint64_t)total != sum)
        arl_argerror(L, arg, "%s.usage.total_tokens (%I) must equal input_tokens + output_tokens (%I)", what,
                     (lua_Integer)total, (lua_Integer)sum);
    u->n_extra = n;
    u->extra = n ? counters : NULL;
}

void arl_check_step(lua_State *L, int arg, int idx, const char *what, ar_step *out,
                    ar_counter *counters, arl_buf *content, int in_record)
{
    ar_step s = AR_STEP_INIT;
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx))
        arl_argerror(L, arg, "%s must be a table (got %s)", what, luaL_typename(L, idx));
    arl_check_fields(L, arg, idx, what, in_record ? record_step_fields : step_fields);
    s.kind = arl_field_text(L, arg, idx, what, "kind", 1); /* the core refuses an empty one */
    s.name = arl_field_text(L, arg, idx, what, "name", 0);
    if (lua_getfield(L, idx, "usage") != LUA_TNIL) {
        if (!lua_istable(L, -1))
            arl_argerror(L, arg, "%s.usage must be a table (got %s)", what, luaL_typename(L, -1));
        arl_check_usage(L, arg, lua_absindex(L, -1), what, &s.usage, counters, 0);
    }
    lua_pop(L, 1);
    s.usage.cost = arl_field_number(L, arg, idx, what, "cost", 0.0, 0);
    s.duration_ms = arl_field_int(L, arg, idx, what, "duration_ms", 0, 0);
    if (in_record) {
        s.seq = arl_field_int(L, arg, idx, what, "seq", 0, 1);
        s.at = arl_field_int(L, arg, idx, what, "at", AR_UNSET, 0);
    }
    if (lua_getfield(L, idx, "content") != LUA_TNIL) {
        char root[64];
        lua_pushfstring(L, "%s.content", what);
        strncpy(root, lua_tostring(L, -1), sizeof root - 1);
        root[sizeof root - 1] = '\0';
        lua_pop(L, 1);
        content->len = 0;
        arl_json_encode(L, -1, root, content);
        s.content = content->data;
        s.content_len = content->len;
    }
    lua_pop(L, 1);
    *out = s;
}

void arl_set_int(lua_State *L, const char *k, int64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

void arl_set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, (lua_Number)v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, k);
    }
}

/* Sets t[k] to the decoded JSON text, when there is some. */
static void set_json(lua_State *L, const char *k, const char *json, size_t len)
{
    if (json) {
        arl_json_decode(L, json, len);
        lua_setfield(L, -2, k);
    }
}

static void set_time(lua_State *L, const char *k, int64_t v)
{
    if (v != AR_UNSET)
        arl_set_int(L, k, v);
}

void arl_push_usage(lua_State *L, const ar_usage *u)
{
    lua_createtable(L, 0, 4 + (int)u->n_extra);
    arl_set_int(L, "input_tokens", u->input_tokens);
    arl_set_int(L, "output_tokens", u->output_tokens);
    arl_set_int(L, "total_tokens", u->input_tokens + u->output_tokens);
    arl_set_num(L, "cost", u->cost);
    for (size_t i = 0; i < u->n_extra; i++)
        arl_set_int(L, u->extra[i].name, u->extra[i].value);
}

void arl_push_budget(lua_State *L, const ar_budget *b)
{
    lua_createtable(L, 0, 6);
    if (b->max_steps >= 0) arl_set_int(L, "max_steps", b->max_steps);
    if (b->max_input_tokens >= 0) arl_set_int(L, "max_input_tokens", b->max_input_tokens);
    if (b->max_output_tokens >= 0) arl_set_int(L, "max_output_tokens", b->max_output_tokens);
    if (b->max_tokens >= 0) arl_set_int(L, "max_tokens", b->max_tokens);
    if (b->max_cost >= 0) arl_set_num(L, "max_cost", b->max_cost);
    if (b->max_seconds >= 0) arl_set_num(L, "max_seconds", b->max_seconds);
}

void arl_push_step(lua_State *L, const ar_step *s, int raw)
{
    lua_createtable(L, 0, 8);
    arl_set_int(L, "seq", s->seq);
    set_str(L, "kind", s->kind);
    set_str(L, "name", s->name);
    if (!raw) {
        set_json(L, "content", s->content, s->content_len);
    } else if (s->content) {
        lua_pushlstring(L, s->content, s->content_len);
        lua_setfield(L, -2, "content_json");
    }
    ar_usage u = s->usage;
    arl_push_usage(L, &u);
    lua_pushnil(L);
    lua_setfield(L, -2, "cost"); /* a step's cost is its own field */
    lua_setfield(L, -2, "usage");
    arl_set_num(L, "cost", s->usage.cost);
    arl_set_int(L, "duration_ms", s->duration_ms);
    arl_set_int(L, "at", s->at);
}

void arl_push_record(lua_State *L, const ar_record *r, int with_steps)
{
    lua_createtable(L, 0, 24);
    set_str(L, "id", r->id);
    set_str(L, "agent", r->agent);
    set_str(L, "goal", r->goal);
    set_str(L, "user", r->user);
    set_str(L, "edition", r->edition);
    set_str(L, "parent", r->parent);
    set_str(L, "status", ar_status_name(r->status));
    set_json(L, "output", r->output, r->output ? strlen(r->output) : 0);
    set_str(L, "error", r->error);
    if (r->limit.limit) {
        lua_createtable(L, 0, 3);
        set_str(L, "name", r->limit.limit);
        arl_set_num(L, "value", r->limit.limit_value);
        arl_set_num(L, "reached", r->limit.value);
        lua_setfield(L, -2, "limit");
    }
    arl_push_budget(L, &r->budget);
    lua_setfield(L, -2, "budget");
    arl_set_int(L, "iterations", r->iterations);
    arl_push_usage(L, &r->usage);
    lua_setfield(L, -2, "usage");
    set_time(L, "latency_ms", r->latency_ms);
    set_time(L, "created_at", r->created_at);
    set_time(L, "finished_at", r->finished_at);
    set_time(L, "updated_at", r->updated_at);
    if (r->metadata)
        set_json(L, "metadata", r->metadata, strlen(r->metadata));
    else {
        lua_newtable(L);
        lua_setfield(L, -2, "metadata");
    }
    if (r->checkpoint) {
        lua_createtable(L, 0, 2);
        set_json(L, "state", r->checkpoint, strlen(r->checkpoint));
        arl_set_int(L, "seq", r->checkpoint_seq);
        lua_setfield(L, -2, "checkpoint");
    }
    if (r->forked_from) {
        lua_createtable(L, 0, 2);
        set_str(L, "run", r->forked_from);
        arl_set_int(L, "seq", r->forked_seq);
        lua_setfield(L, -2, "forked_from");
    }
    set_json(L, "request", r->request, r->request ? strlen(r->request) : 0);
    set_json(L, "response", r->response, r->response ? strlen(r->response) : 0);
    if (with_steps || r->steps) {
        lua_createtable(L, (int)r->n_steps, 0);
        luaL_setmetatable(L, ARL_ARRAY_MT);
        for (size_t i = 0; i < r->n_steps; i++) {
            arl_push_step(L, &r->steps[i], 0);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "steps");
    }
}

static void free_record(void *p)
{
    ar_record_free(p);
}

void arl_push_owned_record(lua_State *L, ar_record *r, int with_steps)
{
    void **slot = arl_box(L, free_record);
    *slot = r;
    arl_push_record(L, r, with_steps);
    *slot = NULL;
    ar_record_free(r);
    lua_remove(L, -2);
}

size_t arl_check_statuses(lua_State *L, int arg, int idx, const char *what, size_t max, ar_status *out)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        if (ar_status_parse(&out[0], lua_tostring(L, idx)))
            arl_argerror(L, arg, "%s: unknown status '%s'", what, lua_tostring(L, idx));
        return 1;
    }
    if (!lua_istable(L, idx))
        arl_argerror(L, arg, "%s must be a status name or a list of them (got %s)", what, luaL_typename(L, idx));
    size_t n = lua_rawlen(L, idx);
    if (n == 0)
        arl_argerror(L, arg, "%s must list at least one status", what);
    if (max && n > max)
        arl_argerror(L, arg, "%s must list 1 to %d statuses", what, (int)max);
    /* the list names a set: each status once in out, whatever the list repeats */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TSTRING)
            arl_argerror(L, arg, "%s[%d] must be a status name (got %s)", what, (int)i + 1, arl_show_value(L, -1));
        ar_status st;
        if (ar_status_parse(&st, lua_tostring(L, -1)))
            arl_argerror(L, arg, "%s[%d]: unknown status '%s'", what, (int)i + 1, lua_tostring(L, -1));
        lua_pop(L, 1);
        size_t j = 0;
        while (j < k && out[j] != st)
            j++;
        if (j == k)
            out[k++] = st;
    }
    return k;
}
