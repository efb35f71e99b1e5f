/* budget.c -- bounded calls: an instruction budget and a memory budget that the Lua code called cannot escape.
 *
 * The instruction budget is a count hook. Once spent, the hook fires at every
 * instruction and raises a memory error, not a runtime error: Lua calls no
 * message handler for a memory error, so an xpcall handler (which would run
 * with hooks off, since the error comes from inside a hook) never gets to
 * run, and each pcall that catches the error meets it again at its next
 * instruction. __close handlers run with hooks on and get one instruction.
 *
 * The memory budget is an allocator put in front of the state's own for the
 * call: it refuses what would take the state's heap past the account's limit
 * (Lua then collects garbage and asks again, so only live memory counts) and
 * it charges the instruction budget for the bytes it hands out, so work done
 * by allocating (string.rep, "..", string.format) is paid for too. Each
 * refusal makes Lua collect the whole heap before it gives up, so a call
 * that keeps asking (catching each memory error) is stopped after a few.
 * Library functions whose work is neither instructions nor allocation
 * charge it themselves (arl_charge). The allocator's state lives in a
 * userdata anchored in the registry, so a caller that kept the allocator
 * finds it valid later. */
#include "arl.h"

#include <string.h>

#define HOOK_STEP 1000          /* instructions between two looks at the budget */
#define BYTES_PER_INSTRUCTION 16 /* allocating this much costs one instruction */
#define MAX_REFUSALS 8          /* memory refusals a call may meet before it is stopped */

enum { RUNNING = 0, OVER_INSTRUCTIONS, OVER_MEMORY };
#define GATE_KEY "agentrun.budget_gate"

typedef struct guard guard;

/* The allocator in front of the state's own while a bounded call runs. */
typedef struct gate {
    lua_Alloc alloc;            /* the state's own allocator */
    void *ud;
    guard *active;              /* the innermost running call; NULL between calls */
    int64_t heap;               /* bytes the state holds, while a call runs */
} gate;

/* One bounded call. */
struct guard {
    guard *outer;               /* the bounded call this one runs inside, or NULL */
    lua_State *L;
    arl_account *account;
    int64_t limit, used;        /* instructions */
    int64_t bytes;              /* allocated bytes not yet charged */
    int tripped;                /* RUNNING, or the budget that ran out */
    int refusals;               /* allocations refused for an account */
    size_t refused;             /* the limit of the account that refused last */
};

static void *gated_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    gate *gt = ud;
    guard *in = gt->active;
    size_t old = ptr ? osize : 0;
    if (in && nsize > old) {
        size_t more = nsize - old;
        for (guard *g = in; g; g = g->outer) {
            if (g->tripped)
                return NULL;
            arl_account *a = g->account;
            if (a && gt->heap + (int64_t)more > a->base + (int64_t)a->limit) {
                in->refused = a->limit;
                if (++in->refusals >= MAX_REFUSALS)
                    in->tripped = OVER_MEMORY;
                return NULL;
            }
        }
        in->bytes += (int64_t)more;
        if (in->bytes >= BYTES_PER_INSTRUCTION) {
            in->used += in->bytes / BYTES_PER_INSTRUCTION;
            in->bytes %= BYTES_PER_INSTRUCTION;
            if (in->used > in->limit) {
                in->tripped = OVER_INSTRUCTIONS;
                return NULL;
            }
        }
    }
    void *p = gt->alloc(gt->ud, ptr, osize, nsize);
    if (in && (p || nsize == 0))
        gt->heap += (int64_t)nsize - (int64_t)old;
    return p;
}

/* The gate of L's state, made on first use. */
static gate *gate_of(lua_State *L)
{
    gate *gt;
    if (lua_getfield(L, LUA_REGISTRYINDEX, GATE_KEY) == LUA_TUSERDATA) {
        gt = lua_touserdata(L, -1);
    } else {
        gt = lua_newuserdatauv(L, sizeof *gt, 0);
        memset(gt, 0, sizeof *gt);
        lua_setfield(L, LUA_REGISTRYINDEX, GATE_KEY);
    }
    lua_pop(L, 1);
    return gt;
}

/* The running bounded call of L's state, or NULL. */
static guard *active_guard(lua_State *L)
{
    void *ud = NULL;
    return lua_getallocf(L, &ud) == gated_alloc ? ((gate *)ud)->active : NULL;
}

static int64_t heap_now(lua_State *L)
{
    void *ud = NULL;
    if (lua_getallocf(L, &ud) == gated_alloc && ((gate *)ud)->active)
        return ((gate *)ud)->heap;
    return (int64_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0);
}

void arl_account_open(lua_State *L, arl_account *account, size_t limit)
{
    account->limit = limit;
    account->base = heap_now(L);
}

static void budget_hook(lua_State *L, lua_Debug *ar);

/* Raises a memory error: the guard refuses every allocation once tripped. */
static void raise_unhandled(lua_State *L, guard *g)
{
    if (!g->tripped)
        g->tripped = OVER_INSTRUCTIONS;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    lua_newuserdatauv(L, 1, 0);
    /* not reached: the allocation above fails */
    lua_pop(L, 1);
    luaL_error(L, "budget exceeded");
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    guard *g = active_guard(L);
    if (!g) {
        /* a thread made during a bounded call, run after it */
        lua_sethook(L, NULL, 0, 0);
        return;
    }
    if (!g->tripped && (g->used += HOOK_STEP) <= g->limit)
        return;
    raise_unhandled(L, g);
}

void arl_charge(lua_State *L, int64_t n)
{
    guard *g = active_guard(L);
    if (!g)
        return;
    if (!g->tripped && n >= 0 && n <= g->limit - g->used) {
        g->used += n;
        return;
    }
    raise_unhandled(L, g);
}

int arl_pcall_bounded(lua_State *L, int nargs, int nresults, int64_t instructions, arl_account *account,
                      const char *who)
{
    gate *gt = gate_of(L);
    void *ud = NULL;
    lua_Alloc current = lua_getallocf(L, &ud);
    int install = current != gated_alloc;
    if (install) {
        gt->alloc = current;
        gt->ud = ud;
        gt->heap = heap_now(L);
    }
    guard g = { gt->active, L, account, instructions, 0, 0, RUNNING, 0, 0 };
    lua_Hook hook = lua_gethook(L);
    int mask = lua_gethookmask(L), count = lua_gethookcount(L);
    gt->active = &g;
    if (install)
        lua_setallocf(L, gated_alloc, gt);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_STEP);
    int base = lua_gettop(L) - nargs - 1;
    int status = lua_pcall(L, nargs, nresults, 0);
    lua_sethook(L, hook, mask, count);
    gt->active = g.outer;
    if (install)
        lua_setallocf(L, gt->alloc, gt->ud);
    /* checked after the call too: a C function called directly runs no instruction */
    if (g.tripped == OVER_INSTRUCTIONS) {
        lua_settop(L, base);
        lua_pushfstring(L, "%s exceeded its budget of %I instructions", who, (lua_Integer)instructions);
        return LUA_ERRRUN;
    }
    if (g.tripped == OVER_MEMORY) {
        lua_settop(L, base);
        lua_pushfstring(L, "%s exceeded its memory budget of %I bytes", who, (lua_Integer)g.refused);
        return LUA_ERRRUN;
    }
    if (status == LUA_ERRMEM && g.refused) {
        lua_pop(L, 1);
        lua_pushfstring(L, "%s exceeded its memory budget of %I bytes", who, (lua_Integer)g.refused);
        return LUA_ERRRUN;
    }
    return status;
}

/* core.bounded_call(who, instructions, memory_bytes, fn, ...) -> true, results... | false, err:
 * fn(...) under both budgets, with a memory account of its own. */
static int l_bounded_call(lua_State *L)
{
    const char *who = luaL_checkstring(L, 1);
    lua_Integer instructions = luaL_checkinteger(L, 2);
    lua_Integer memory = luaL_checkinteger(L, 3);
    luaL_argcheck(L, instructions > 0, 2, "must be positive");
    luaL_argcheck(L, memory > 0, 3, "must be positive");
    luaL_checktype(L, 4, LUA_TFUNCTION);
    arl_account account;
    arl_account_open(L, &account, (size_t)memory);
    int nargs = lua_gettop(L) - 4;
    int status = arl_pcall_bounded(L, nargs, LUA_MULTRET, (int64_t)instructions, &account, who);
    lua_pushboolean(L, status == LUA_OK);
    lua_replace(L, 3);
    return lua_gettop(L) - 2;
}

/* The function in upvalue 1, called with this call's arguments; each value
 * it returns costs one instruction (a call returning a million values does a
 * million steps of work in one instruction). */
static int per_value_call(lua_State *L)
{
    int nargs = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, nargs, LUA_MULTRET);
    arl_charge(L, lua_gettop(L));
    return lua_gettop(L);
}

/* core.per_value(fn) -> fn that charges one instruction per value it returns. */
static int l_per_value(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_pushcclosure(L, per_value_call, 1);
    return 1;
}

/* core.charge(n): n instructions of work done outside the VM, against the running budget. */
static int l_charge(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0, 1, "must not be negative");
    arl_charge(L, (int64_t)n);
    return 0;
}

/* See arl.h: the gate is made early, before any bounded call needs it. */
void arl_open_budget(lua_State *L)
{
    gate_of(L);
}

const luaL_Reg arl_budget_functions[] = {
    { "bounded_call", l_bounded_call }, { "charge", l_charge }, { "per_value", l_per_value }, { NULL, NULL }
};
