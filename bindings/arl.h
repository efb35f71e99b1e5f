/* arl.h -- shared declarations of the Lua binding's C files (internal). */
#ifndef ARL_H
#define ARL_H

#include <lua.h>
#include <lauxlib.h>
#include <stddef.h>

#include "agentrun.h"

/* Registry keys / metatable names. */
#define ARL_STORE_MT "agentrun.store"
#define ARL_RUN_MT   "agentrun.run"
#define ARL_ITER_MT  "agentrun.steps_iter"
#define ARL_ERROR_MT "agentrun.Error"       /* metatable of agentrun.Error objects */
#define ARL_ARRAY_MT "agentrun.array"       /* marks a table as a JSON array */
#define ARL_SCRATCH  "agentrun.scratch"     /* the scratch buffer userdata */

/* ---- errors (bindings/error.c) ------------------------------------------ */

/* Pushes an agentrun.Error object {code = "EJSON", message = msg}. */
void arl_push_error(lua_State *L, int code, const char *msg);
/* Raises an agentrun.Error object; never returns. */
int arl_raise(lua_State *L, int code, const char *fmt, ...);
/* Registers the Error metatable (with __tostring "agentrun: CODE: message"). */
void arl_open_error(lua_State *L);

/* ---- JSON <-> Lua values (bindings/json.c) ------------------------------ */

/* A growable byte buffer. The scratch buffer is owned by a userdata in the
 * registry, so a Lua error raised while it is in use leaks nothing. */
typedef struct arl_buf {
    char *data;
    size_t len, cap;
} arl_buf;

/* The module's scratch buffer, emptied (len = 0), kept across calls. */
arl_buf *arl_scratch(lua_State *L);
/* A second, independent scratch buffer (for calls that encode two values). */
arl_buf *arl_scratch2(lua_State *L);
/* Appends bytes; raises a memory error when it cannot grow. */
void arl_buf_add(lua_State *L, arl_buf *b, const char *s, size_t n);

/* Appends the JSON text of the Lua value at `idx` to `b`. Rules: nil ->
 * null; booleans; integers within +-2^53; finite floats (shortest text that
 * reads back to the same double); strings must be valid UTF-8 (NUL bytes kept
 * as \u0000); tables are arrays when they have the agentrun.array metatable
 * or their keys are exactly 1..n (n >= 1), objects when every key is a
 * string, and an empty table is an object; agentrun.null -> null. Anything
 * else raises agentrun.Error EJSON naming the path from `root`, e.g.
 * "content.tool_calls[3].args: NaN is not valid JSON". Cycles and nesting
 * deeper than 512 are EJSON. Metamethods are not called (raw access). */
void arl_json_encode(lua_State *L, int idx, const char *root, arl_buf *b);

/* Pushes the Lua value of the JSON text: objects -> tables, arrays -> tables
 * with the agentrun.array metatable, integers -> integers, other numbers ->
 * floats, null -> agentrun.null (nil at the top level). Raises
 * agentrun.Error ECORRUPT when the text is not valid JSON. */
void arl_json_decode(lua_State *L, const char *json, size_t len);

/* Registers the array metatable, agentrun.null and the scratch buffers, and
 * sets agentrun.array / agentrun.null / agentrun.json_encode /
 * agentrun.json_decode on the module table at `module_idx`. */
void arl_open_json(lua_State *L, int module_idx);

#endif
