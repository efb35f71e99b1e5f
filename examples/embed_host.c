/* embed_host.c -- a C host that runs a Lua agent script in its own Lua state, then reads the run back through the C API. */
#include <agentrun.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The C part of require "agentrun", linked into this program. */
int luaopen_agentrun_core(lua_State *L);

/* Message handler for lua_pcall: turns any error value (a string, an
 * agentrun.Error with __tostring, anything else) into text with a traceback. */
static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Runs `script` with `store_path` as its argument in a fresh Lua state where
 * require "agentrun" finds the Lua front end in `lua_dir` and the C part
 * linked into this program. Returns the run id the script returned
 * (malloc'ed), or NULL after printing why on stderr. */
static char *run_agent_script(const char *script, const char *store_path, const char *lua_dir)
{
    char *id = NULL;
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "embed_host: cannot create a Lua state\n");
        return NULL;
    }
    luaL_openlibs(L);

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_agentrun_core);
    lua_setfield(L, -2, "agentrun.core");
    lua_pop(L, 1);

    /* lua_dir first, so this tree's front end wins over an installed one */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", lua_dir, lua_dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);

    lua_pushcfunction(L, traceback);
    int handler = lua_gettop(L);
    if (luaL_loadfile(L, script) != LUA_OK) {
        fprintf(stderr, "embed_host: %s\n", lua_tostring(L, -1));
        goto cleanup;
    }
    lua_pushstring(L, store_path);
    if (lua_pcall(L, 1, 1, handler) != LUA_OK) {
        fprintf(stderr, "embed_host: the agent script failed: %s\n", lua_tostring(L, -1));
        goto cleanup;
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
        fprintf(stderr, "embed_host: %s returned %s, not a run id\n", script, luaL_typename(L, -1));
        goto cleanup;
    }
    id = strdup(lua_tostring(L, -1));
    if (id == NULL)
        fprintf(stderr, "embed_host: out of memory\n");

cleanup:
    lua_close(L);
    return id;
}

/* Prints one record and its transcript. */
static void print_record(const ar_record *r)
{
    printf("run %s: agent %s, status %s\n", r->id, r->agent, ar_status_name(r->status));
    printf("  goal:    %s\n", r->goal);
    printf("  steps:   %lld, tokens %lld in / %lld out, cost %.6f, latency %lld ms\n",
           (long long)r->iterations, (long long)r->usage.input_tokens,
           (long long)r->usage.output_tokens, r->usage.cost, (long long)r->latency_ms);
    if (r->output)
        printf("  output:  %s\n", r->output);
    if (r->error)
        printf("  error:   %s\n", r->error);
    for (size_t i = 0; i < r->n_steps; i++) {
        const ar_step *s = &r->steps[i];
        printf("  %3lld %-5s %-18s %s\n", (long long)s->seq, s->kind, s->name ? s->name : "",
               s->content ? s->content : "null");
    }
}

/* Reads the run back through the C API and prints it. Returns 0 when the run
 * is there and completed, 1 otherwise (after printing why). */
static int show_run(const char *store_path, const char *id)
{
    int status = 1;
    ar_record *rec = NULL;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.readonly = 1;
    ar_store *store = NULL;
    int rc = ar_store_open(&store, store_path, &opts);
    if (rc != AR_OK) {
        fprintf(stderr, "embed_host: cannot open %s: %s: %s\n", store_path, ar_code_name(rc),
                store ? ar_store_errmsg(store) : "out of memory");
        goto cleanup;
    }
    rc = ar_store_get(&rec, store, id, 1);
    if (rc != AR_OK) {
        fprintf(stderr, "embed_host: run %s: %s: %s\n", id, ar_code_name(rc), ar_store_errmsg(store));
        goto cleanup;
    }
    print_record(rec);
    if (rec->status != AR_COMPLETED) {
        fprintf(stderr, "embed_host: the run ended %s\n", ar_status_name(rec->status));
        goto cleanup;
    }
    status = 0;

cleanup:
    ar_record_free(rec);
    ar_store_close(store);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s STORE [SCRIPT [LUA_DIR]]\n"
                        "  SCRIPT defaults to examples/embed_agent.lua; LUA_DIR (where\n"
                        "  agentrun.lua is) to $AGENTRUN_LUA_DIR, else \"lua\".\n", argv[0]);
        return 2;
    }
    const char *store_path = argv[1];
    const char *script = argc > 2 ? argv[2] : "examples/embed_agent.lua";
    const char *lua_dir = argc > 3 ? argv[3] : getenv("AGENTRUN_LUA_DIR");
    if (lua_dir == NULL || *lua_dir == '\0')
        lua_dir = "lua";

    char *id = run_agent_script(script, store_path, lua_dir);
    if (id == NULL)
        return 1;
    int status = show_run(store_path, id);
    free(id);
    return status;
}
