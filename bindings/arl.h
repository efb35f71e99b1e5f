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
#define ARL_RECORDS_MT "agentrun.records_box"  /* a listing's records until they are pushed */
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

/* Misuse errors name their call as Lua's own do, however the call is made
 * (by name, through pcall, a local or a wrapper): "bad argument #1 to 'step'
 * (step.kind is required)". Methods count their arguments after the handle;
 * a handle of the wrong kind gives "calling 'step' on bad self (...)". */

/* Sets the functions of `l` in the table at the top of the stack and
 * records their names; `methods`: their first argument is a handle. */
void arl_setfuncs(lua_State *L, const luaL_Reg *l, int methods);
/* Raises a plain error about argument `arg` (its stack index) of the running
 * function, the detail formatted by lua_pushfstring rules (%s %d %I %f);
 * never returns. */
int arl_argerror(lua_State *L, int arg, const char *fmt, ...);
/* luaL_checkudata, luaL_checktype and luaL_checkany through arl_argerror. */
void *arl_checkudata(lua_State *L, int arg, const char *tname);
void arl_checktype(lua_State *L, int arg, int t);
void arl_checkany(lua_State *L, int arg);
/* Pushes the text kept for a failure value at idx and returns it: a string
 * as it is, nil as `dflt`, a value with __tostring by it, a table with a
 * string `message` by that, anything else named by its type (never
 * "table: 0x..."); NUL bytes become U+FFFD so nothing is cut. Never raises
 * but for memory: a failing __tostring falls back to the message or type. */
const char *arl_error_text(lua_State *L, int idx, const char *dflt);
/* Replaces the string on top of the stack by a copy whose NUL bytes are
 * U+FFFD (the same string when it has none) and returns it. */
const char *arl_nul_replaced(lua_State *L);

/* ---- byte buffers (bindings/buffer.c) ----------------------------------- */

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
/* Makes room for n more bytes; raises "not enough memory" when it cannot. */
void arl_buf_grow(lua_State *L, arl_buf *b, size_t n);
/* Makes the scratch buffers, early, so that they are finalized after (and
 * can still be used by) the __gc of objects made later. */
void arl_open_buffers(lua_State *L);

/* Appends n bytes (n may be 0) / one byte; raise a memory error when the
 * buffer cannot grow. */
void arl_buf_add(lua_State *L, arl_buf *b, const char *s, size_t n);
void arl_buf_addc(lua_State *L, arl_buf *b, char c);

/* ---- JSON <-> Lua values (bindings/json.c) ------------------------------ */

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
 * agentrun.Error ECORRUPT when the text is not valid JSON: it is data read
 * from the store (agentrun.json_decode raises EJSON for its caller's text). */
void arl_json_decode(lua_State *L, const char *json, size_t len);

/* Registers the array metatable and sets agentrun.null on the module table
 * at `module_idx`. */
void arl_open_json(lua_State *L, int module_idx);

/* ---- handles (bindings/store.c, bindings/run.c) ------------------------- */

/* A store userdata; store is NULL once closed. */
typedef struct arl_store {
    ar_store *store;
    int busy;       /* exports or imports of it calling back into Lua: close() is refused meanwhile */
} arl_store;

/* A run userdata (user value 1 pins its store userdata); run is NULL once closed. */
typedef struct arl_run {
    ar_run *run;
} arl_run;

/* The open store at idx; a closed one raises a plain error (misuse). */
ar_store *arl_check_store(lua_State *L, int idx);

/* Turns a failed core call into a Lua error: AR_EMISUSE raises a plain
 * misuse error about argument `arg` (arl_argerror), every other code an
 * agentrun.Error. */
int arl_fail(lua_State *L, int arg, int rc, const char *msg);
/* arl_fail with the store's last error message. */
int arl_store_fail(lua_State *L, int arg, ar_store *store, int rc);
/* The end of a call that counts: for rc AR_OK pushes n and returns 1, else
 * fails as arl_store_fail. */
int arl_push_count(lua_State *L, int arg, ar_store *store, int rc, int64_t n);

/* Pushes a run userdata for `run`, pinning the store userdata at store_idx. */
void arl_push_run(lua_State *L, ar_run *run, int store_idx);
/* Raises agentrun.BudgetExhausted for `why` on `run` (steps read from the store). */
int arl_raise_budget(lua_State *L, ar_store *store, const char *run_id, int64_t iterations,
                     const ar_usage *usage, const ar_exhaustion *why);

/* ---- the module's tables (assembled in bindings/module.c) ---------------- */

/* Each file contributes its functions as luaL_Reg lists and module.c builds
 * every table from them, in one place: the module table, core.patterns, and
 * one metatable per handle type (its metamethods, and an __index holding the
 * methods of all the lists given for that type). No file changes a table
 * another file made, and the order the files are opened in does not matter. */
extern const luaL_Reg arl_json_functions[];    /* json.c: array, json_encode, json_decode */
extern const luaL_Reg arl_store_functions[];   /* store.c: open */
extern const luaL_Reg arl_record_functions[];  /* record.c: make_record */
extern const luaL_Reg arl_run_functions[];     /* run.c: loop_check */
extern const luaL_Reg arl_budget_functions[];  /* budget.c: bounded_call, charge, per_value */
extern const luaL_Reg arl_pattern_functions[]; /* pattern.c: core.patterns */

/* The store handle: its metamethods (store.c) and its methods, by concern. */
extern const luaL_Reg arl_store_meta[];
extern const luaL_Reg arl_store_methods[];     /* store.c: close, info, forget_user, recover */
extern const luaL_Reg arl_run_store_methods[]; /* run.c: begin, resume */
extern const luaL_Reg arl_record_methods[];    /* record.c: write */
extern const luaL_Reg arl_read_methods[];      /* read.c: get, runs, count, stats, checkpoint */
extern const luaL_Reg arl_steps_methods[];     /* steps.c: steps */
extern const luaL_Reg arl_events_methods[];    /* events.c: event, events, ... retain_events */
extern const luaL_Reg arl_retain_methods[];    /* retain.c: retain */
extern const luaL_Reg arl_export_methods[];    /* export.c: export, import, copy, otlp */

/* The run handle: metamethods, methods, and an __index function that serves
 * the methods (its upvalue) and then the run's read-only fields. */
extern const luaL_Reg arl_run_meta[];
extern const luaL_Reg arl_run_methods[];
int arl_run_index(lua_State *L);

/* The steps iterator's box (steps.c): __gc and __close; the box that holds a
 * listing's records while they are pushed (read.c): __gc. */
extern const luaL_Reg arl_steps_meta[];
extern const luaL_Reg arl_records_meta[];

/* ---- budgets of untrusted Lua code (bindings/budget.c) ------------------- */

/* Memory a series of bounded calls may take: the state's heap may grow by
 * `limit` bytes past what it held when the account was opened. */
typedef struct arl_account {
    size_t limit;
    int64_t base;
} arl_account;
void arl_account_open(lua_State *L, arl_account *account, size_t limit);

/* Calls the function below the `nargs` arguments at the top of the stack,
 * as lua_pcall(L, nargs, nresults, 0) does, with at most `instructions` VM
 * instructions (allocation and arl_charge count too) and the memory of
 * `account` (NULL: none but an outer call's). Nothing the function does
 * escapes either budget: message handlers, metamethods and __close
 * handlers are counted, and a pcall cannot catch the error for good.
 * Returns the lua_pcall status; when a budget ran out the error object is
 * "<who> exceeded its budget of N instructions" or "<who> exceeded its memory
 * budget of N bytes". L's hook is put back afterwards. Calls nest. */
int arl_pcall_bounded(lua_State *L, int nargs, int nresults, int64_t instructions, arl_account *account,
                      const char *who);
/* Charges n instructions of work done by a library function to the running
 * bounded call (none: nothing happens); raises a memory error past its budget. */
void arl_charge(lua_State *L, int64_t n);
/* Makes the state's budget gate (a registry value the bounded calls share). */
void arl_open_budget(lua_State *L);

/* ---- argument tables (bindings/args.c) ---------------------------------- */

/* Each check raises through arl_argerror about argument `arg` (the argument
 * the checked value belongs to); `idx` is where the value is on the stack. */

/* Raises when the table at idx has a key not in `allowed` (NULL-terminated)
 * or a non-string key: "unknown field 'max_step' in budget". */
void arl_check_fields(lua_State *L, int arg, int idx, const char *what, const char *const *allowed);
/* Field readers: raise naming what.field on a wrong type.
 * Strings must be valid UTF-8 without NUL bytes. */
const char *arl_field_text(lua_State *L, int arg, int idx, const char *what, const char *field, int required);
/* A table field (or absent: NULL) as the text of a JSON object, encoded into
 * buf (emptied first) and NUL-terminated for the core; encoding errors name
 * the path from `field`. The text lives in buf until buf is used again. */
const char *arl_field_json(lua_State *L, int arg, int idx, const char *what, const char *field, arl_buf *buf);
int64_t arl_field_int(lua_State *L, int arg, int idx, const char *what, const char *field, int64_t dflt,
                      int64_t min);
/* Any number; with `nonneg`, a negative one raises (where the C API reads a
 * negative value as "none", which Lua callers say with nil). NaN,
 * infinities and values past a field's range are left to the core, which
 * checks and states each field's range. */
double arl_field_number(lua_State *L, int arg, int idx, const char *what, const char *field, double dflt,
                        int nonneg);
int arl_field_bool(lua_State *L, int arg, int idx, const char *what, const char *field, int dflt);
/* Reads the fields every listing's query table (argument idx) has: since,
 * until, limit, after, before and order ("asc" or "desc"); an absent one
 * keeps the value it has (the query's default). */
void arl_check_page(lua_State *L, int idx, const char *what, int64_t *since, int64_t *until, int64_t *limit,
                    const char **after, const char **before, int *order);
/* Checks the value at idx is an integer (floats with an integral value
 * accepted; past int64 they saturate). The core checks the range. */
int64_t arl_to_count(lua_State *L, int arg, int idx, const char *what);
/* Checks the value at idx is plain text (a string, UTF-8, no NUL). */
const char *arl_check_text(lua_State *L, int arg, int idx, const char *what);
/* Pushes and returns a short text naming the value at idx by its type and,
 * for a string, number or boolean, its value: `string "nil"`, `number 1`,
 * `boolean false`, `nil`, `a table value`. Never runs a metamethod. */
const char *arl_show_value(lua_State *L, int idx);

/* ---- ownership boxes (bindings/module.c) -------------------------------- */

/* Pushes an empty userdata that will own a pointer and free it with
 * `release` when collected, so a Lua error raised while the pointer's
 * contents are pushed leaks nothing. Make the box first, then store the
 * pointer in the returned slot right after the call that allocates it. */
void **arl_box(lua_State *L, void (*release)(void *));
/* Releases the box's pointer now (idempotent). */
void arl_unbox(lua_State *L, int idx);

/* ---- values (bindings/convert.c) ---------------------------------------- */

#define ARL_MAX_COUNTERS 64

/* Reads a budget table (unknown fields and negative limits raise). */
void arl_check_budget(lua_State *L, int arg, int idx, ar_budget *out);
/* Reads a step table into *out; content is JSON-encoded into `content`,
 * extra usage counters go into counters[ARL_MAX_COUNTERS]. Pointers borrow
 * from the Lua values and the buffer. `in_record`: the step belongs to a
 * record being written, so `seq` and `at` are allowed too. */
void arl_check_step(lua_State *L, int arg, int idx, const char *what, ar_step *out,
                    ar_counter *counters, arl_buf *content, int in_record);
/* Reads a usage table at idx (absolute): tokens, other counters and, when
 * `with_cost`, a cost; total_tokens must equal input + output. */
void arl_check_usage(lua_State *L, int arg, int idx, const char *what, ar_usage *u,
                     ar_counter *counters, int with_cost);
/* t[k] = v for the table on top of the stack. */
void arl_set_int(lua_State *L, const char *k, int64_t v);
void arl_set_num(lua_State *L, const char *k, double v);
void arl_push_usage(lua_State *L, const ar_usage *u);
void arl_push_budget(lua_State *L, const ar_budget *b);
/* Pushes a step table; with raw, its content as the stored JSON text in
 * `content_json` instead of decoded in `content`. */
void arl_push_step(lua_State *L, const ar_step *s, int raw);
/* Pushes a record table (with `steps` when the record has them or with_steps). */
void arl_push_record(lua_State *L, const ar_record *r, int with_steps);
/* Pushes the record table of r and frees r, also when pushing raises
 * (corrupt JSON, no memory): r is boxed until it is pushed. */
void arl_push_owned_record(lua_State *L, ar_record *r, int with_steps);
/* How many distinct statuses there are (ar_status values). */
#define ARL_STATUSES (AR_INTERRUPTED + 1)
/* Reads statuses (a status name or a non-empty list of them, at most `max`
 * long unless max is 0) at idx into out[ARL_STATUSES], each status once;
 * returns how many. */
size_t arl_check_statuses(lua_State *L, int arg, int idx, const char *what, size_t max, ar_status *out);

#endif
