/* buffer.c -- growable byte buffers and the module's two scratch buffers. */
#include "arl.h"

#include <stdlib.h>
#include <string.h>

#define SCRATCH2_KEY "agentrun.scratch2"
#define BUF_MT "agentrun.buffer"

/* __gc of a buffer box: frees its bytes; safe to run twice. */
static int buf_gc(lua_State *L)
{
    arl_buf *b = luaL_checkudata(L, 1, BUF_MT);
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    return 0;
}

/* The buffer stored in the registry under `key`, created empty on first use,
 * returned with len = 0. Raises only a memory error. */
static arl_buf *scratch(lua_State *L, const char *key)
{
    arl_buf *b;
    if (lua_getfield(L, LUA_REGISTRYINDEX, key) == LUA_TUSERDATA) {
        b = lua_touserdata(L, -1);
    } else {
        lua_pop(L, 1);
        b = lua_newuserdatauv(L, sizeof *b, 0);
        b->data = NULL;
        b->len = b->cap = 0;
        if (luaL_newmetatable(L, BUF_MT)) {
            lua_pushcfunction(L, buf_gc);
            lua_setfield(L, -2, "__gc");
        }
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, key);
    }
    lua_pop(L, 1);
    b->len = 0;
    return b;
}

/* See arl.h. */
arl_buf *arl_scratch(lua_State *L)
{
    return scratch(L, ARL_SCRATCH);
}

/* See arl.h. */
arl_buf *arl_scratch2(lua_State *L)
{
    return scratch(L, SCRATCH2_KEY);
}

/* See arl.h: doubles the capacity until n more bytes fit; b is unchanged
 * when it raises. */
void arl_buf_grow(lua_State *L, arl_buf *b, size_t n)
{
    size_t need = b->len + n;
    if (need < n)
        goto nomem;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < need)
        cap = cap > (size_t)-1 / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        goto nomem;
    b->data = p;
    b->cap = cap;
    return;
nomem:
    lua_pushliteral(L, "not enough memory");
    lua_error(L);
}

/* See arl.h. */
void arl_buf_add(lua_State *L, arl_buf *b, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (b->cap - b->len < n)
        arl_buf_grow(L, b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

/* See arl.h. */
void arl_buf_addc(lua_State *L, arl_buf *b, char c)
{
    if (b->len == b->cap)
        arl_buf_grow(L, b, 1);
    b->data[b->len++] = c;
}

/* See arl.h. */
void arl_open_buffers(lua_State *L)
{
    scratch(L, ARL_SCRATCH);
    scratch(L, SCRATCH2_KEY);
}
