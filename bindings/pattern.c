/* pattern.c -- Lua's pattern functions (find, match, gmatch, gsub) for the policy sandbox, with their work charged.
 *
 * The string library's matcher backtracks: a pattern such as ("a*"):rep(30)
 * .. "b" takes time exponential in its length, all inside one VM
 * instruction, out of reach of an instruction budget. These functions match
 * exactly as the string library does (Lua 5.4, §6.4.1 of the manual) but
 * count every step of the matcher and every byte compared, and charge that
 * work to the running bounded call (arl_charge), which stops them once the
 * budget is spent. Outside a bounded call nothing is charged. */
#include "arl.h"

#include <ctype.h>
#include <string.h>

#define MAX_CAPTURES 32
#define MAX_DEPTH 200           /* nested matcher calls, as the string library allows */
#define CHARGE_EVERY 4096       /* steps counted before they are charged */
#define BYTES_PER_STEP 64       /* comparing this many bytes is one step */
#define ESC '%'
#define SPECIALS "^$*+?.([%-"

#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)

typedef struct matcher {
    lua_State *L;
    const char *src, *src_end;
    const char *pat_end;
    int depth;                  /* matcher calls still allowed */
    int level;                  /* captures open or closed so far */
    struct {
        const char *start;
        ptrdiff_t len;          /* or CAP_UNFINISHED, CAP_POSITION */
    } cap[MAX_CAPTURES];
    int64_t steps;              /* not yet charged */
} matcher;

static void charge_now(matcher *m)
{
    int64_t n = m->steps;
    m->steps = 0;
    arl_charge(m->L, n);
}

static void step(matcher *m, int64_t n)
{
    m->steps += n;
    if (m->steps >= CHARGE_EVERY)
        charge_now(m);
}

/* Past the single-character class that starts at p. */
static const char *class_end(matcher *m, const char *p)
{
    char c = *p++;
    if (c == ESC) {
        if (p >= m->pat_end)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c == '[') {
        if (p < m->pat_end && *p == '^')
            p++;
        /* the first character of a set is itself, even a ']' */
        do {
            if (p >= m->pat_end)
                luaL_error(m->L, "malformed pattern (missing ']')");
            c = *p++;
            if (c == ESC && p < m->pat_end)
                p++;
        } while (*p != ']');
        return p + 1;
    }
    return p;
}

/* Whether c is in the class named by letter cl (%a, %d, ...); any other cl is itself. */
static int class_match(int c, int cl)
{
    int in;
    switch (tolower(cl)) {
    case 'a': in = isalpha(c); break;
    case 'c': in = iscntrl(c); break;
    case 'd': in = isdigit(c); break;
    case 'g': in = isgraph(c); break;
    case 'l': in = islower(c); break;
    case 'p': in = ispunct(c); break;
    case 's': in = isspace(c); break;
    case 'u': in = isupper(c); break;
    case 'w': in = isalnum(c); break;
    case 'x': in = isxdigit(c); break;
    default: return cl == c;
    }
    if (isupper(cl))
        in = !in;
    return in != 0;
}

/* Whether c is in the set [p .. ec], p at '[' and ec at its ']'. */
static int set_match(int c, const char *p, const char *ec)
{
    int want = 1;
    if (*(p + 1) == '^') {
        want = 0;
        p++;
    }
    while (++p < ec) {
        if (*p == ESC) {
            p++;
            if (class_match(c, (unsigned char)*p))
                return want;
        } else if (*(p + 1) == '-' && p + 2 < ec) {
            p += 2;
            if ((unsigned char)*(p - 2) <= c && c <= (unsigned char)*p)
                return want;
        } else if ((unsigned char)*p == c) {
            return want;
        }
    }
    return !want;
}

/* Whether the subject character at s matches the class [p, ep). */
static int single_match(const matcher *m, const char *s, const char *p, const char *ep)
{
    if (s >= m->src_end)
        return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case ESC: return class_match(c, (unsigned char)*(p + 1));
    case '[': return set_match(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static const char *do_match(matcher *m, const char *s, const char *p);

/* %bxy at p: a balanced run from x to its matching y. */
static const char *balance(matcher *m, const char *s, const char *p)
{
    if (p >= m->pat_end - 1)
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->src_end || *s != *p)
        return NULL;
    char open = *p, close = *(p + 1);
    int depth = 1;
    while (++s < m->src_end) {
        step(m, 1);
        if (*s == close) {
            if (--depth == 0)
                return s + 1;
        } else if (*s == open) {
            depth++;
        }
    }
    return NULL;
}

/* The longest run of the class, then shorter ones, each tried against the rest. */
static const char *max_expand(matcher *m, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;
    while (single_match(m, s + i, p, ep)) {
        i++;
        step(m, 1);
    }
    for (; i >= 0; i--) {
        step(m, 1);
        const char *r = do_match(m, s + i, ep + 1);
        if (r)
            return r;
    }
    return NULL;
}

/* The shortest run of the class that lets the rest match. */
static const char *min_expand(matcher *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        step(m, 1);
        const char *r = do_match(m, s, ep + 1);
        if (r)
            return r;
        if (!single_match(m, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *start_capture(matcher *m, const char *s, const char *p, ptrdiff_t what)
{
    if (m->level >= MAX_CAPTURES)
        luaL_error(m->L, "too many captures");
    m->cap[m->level].start = s;
    m->cap[m->level].len = what;
    m->level++;
    const char *r = do_match(m, s, p);
    if (!r)
        m->level--;
    return r;
}

static const char *end_capture(matcher *m, const char *s, const char *p)
{
    int l = m->level - 1;
    while (l >= 0 && m->cap[l].len != CAP_UNFINISHED)
        l--;
    if (l < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->cap[l].len = s - m->cap[l].start;
    const char *r = do_match(m, s, p);
    if (!r)
        m->cap[l].len = CAP_UNFINISHED;
    return r;
}

/* The capture that %1..%9 at p refers to (0-based). */
static int back_reference(matcher *m, int digit)
{
    int l = digit - '1';
    if (l < 0 || l >= m->level || m->cap[l].len == CAP_UNFINISHED)
        luaL_error(m->L, "invalid capture index %%%d", l + 1);
    return l;
}

/* Matches the pattern from p against the subject from s: the end of the
 * match, or NULL. Plain items loop; items that may backtrack recurse. */
static const char *do_match(matcher *m, const char *s, const char *p)
{
    if (m->depth-- == 0)
        luaL_error(m->L, "pattern too complex");
    for (;;) {
        step(m, 1);
        if (p == m->pat_end)
            break;
        if (*p == '(') {
            s = *(p + 1) == ')' ? start_capture(m, s, p + 2, CAP_POSITION)
                                : start_capture(m, s, p + 1, CAP_UNFINISHED);
            break;
        }
        if (*p == ')') {
            s = end_capture(m, s, p + 1);
            break;
        }
        if (*p == '$' && p + 1 == m->pat_end) {
            s = s == m->src_end ? s : NULL;
            break;
        }
        if (*p == ESC && p + 1 < m->pat_end && *(p + 1) == 'b') {
            s = balance(m, s, p + 2);
            if (!s)
                break;
            p += 4;
            continue;
        }
        if (*p == ESC && p + 1 < m->pat_end && *(p + 1) == 'f') {
            p += 2;
            if (p >= m->pat_end || *p != '[')
                luaL_error(m->L, "missing '[' after '%%f' in pattern");
            const char *ep = class_end(m, p);
            int before = s == m->src ? '\0' : (unsigned char)*(s - 1);
            int here = s < m->src_end ? (unsigned char)*s : '\0';
            if (set_match(before, p, ep - 1) || !set_match(here, p, ep - 1)) {
                s = NULL;
                break;
            }
            p = ep;
            continue;
        }
        if (*p == ESC && p + 1 < m->pat_end && isdigit((unsigned char)*(p + 1))) {
            int l = back_reference(m, (unsigned char)*(p + 1));
            ptrdiff_t len = m->cap[l].len;
            /* a position capture has no text: it matches nothing */
            if (len >= 0)
                step(m, (int64_t)len / BYTES_PER_STEP);
            if (len >= 0 && m->src_end - s >= len && memcmp(m->cap[l].start, s, (size_t)len) == 0) {
                s += len;
                p += 2;
                continue;
            }
            s = NULL;
            break;
        }
        const char *ep = class_end(m, p);
        char q = ep < m->pat_end ? *ep : '\0';
        if (!single_match(m, s, p, ep)) {
            if (ep < m->pat_end && (q == '*' || q == '?' || q == '-')) {
                p = ep + 1; /* zero repetitions */
                continue;
            }
            s = NULL;
            break;
        }
        if (ep < m->pat_end && q == '?') {
            const char *r = do_match(m, s + 1, ep + 1);
            if (r) {
                s = r;
                break;
            }
            p = ep + 1;
            continue;
        }
        if (ep < m->pat_end && q == '+') {
            s = max_expand(m, s + 1, p, ep);
            break;
        }
        if (ep < m->pat_end && q == '*') {
            s = max_expand(m, s, p, ep);
            break;
        }
        if (ep < m->pat_end && q == '-') {
            s = min_expand(m, s, p, ep);
            break;
        }
        s++;
        p = ep;
    }
    m->depth++;
    return s;
}

static void matcher_init(matcher *m, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
    m->L = L;
    m->src = s;
    m->src_end = s + ls;
    m->pat_end = p + lp;
    m->steps = 0;
    m->level = 0;
    m->depth = MAX_DEPTH;
}

static void matcher_reset(matcher *m)
{
    m->level = 0;
}

/* Pushes capture i (or the whole match s..e when there is none and i is 0). */
static void push_capture(matcher *m, int i, const char *s, const char *e)
{
    if (i >= m->level) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t len = m->cap[i].len;
    if (len == CAP_UNFINISHED)
        luaL_error(m->L, "unfinished capture");
    if (len == CAP_POSITION)
        lua_pushinteger(m->L, (lua_Integer)(m->cap[i].start - m->src) + 1);
    else
        lua_pushlstring(m->L, m->cap[i].start, (size_t)len);
}

/* Pushes every capture, or the whole match when there is none and s is not NULL. */
static int push_captures(matcher *m, const char *s, const char *e)
{
    int n = m->level == 0 && s ? 1 : m->level;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

/* A string position as the string library reads `init`: 1-based, negative from the end. */
static size_t start_index(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

static int has_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++)
        if (p[i] && strchr(SPECIALS, p[i]))
            return 1;
    return 0;
}

/* Plain search of p in s, charged by the bytes compared. */
static const char *plain_find(matcher *m, const char *s, size_t ls, const char *p, size_t lp)
{
    if (lp == 0)
        return s;
    if (lp > ls)
        return NULL;
    const char *end = s + ls - lp + 1;
    while (s < end) {
        const char *hit = memchr(s, *p, (size_t)(end - s));
        step(m, (int64_t)((hit ? hit - s : end - s) / BYTES_PER_STEP) + 1);
        if (!hit)
            return NULL;
        step(m, (int64_t)(lp / BYTES_PER_STEP));
        if (memcmp(hit + 1, p + 1, lp - 1) == 0)
            return hit;
        s = hit + 1;
    }
    return NULL;
}

static int find_or_match(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_index(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) {
        lua_pushnil(L);
        return 1;
    }
    matcher m;
    matcher_init(&m, L, s, ls, p, lp);
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        const char *hit = plain_find(&m, s + init, ls - init, p, lp);
        charge_now(&m);
        if (!hit) {
            lua_pushnil(L);
            return 1;
        }
        lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
        lua_pushinteger(L, (lua_Integer)(hit - s + (ptrdiff_t)lp));
        return 2;
    }
    int anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    const char *from = s + init;
    do {
        matcher_reset(&m);
        const char *e = do_match(&m, from, p);
        if (e) {
            charge_now(&m);
            if (find) {
                lua_pushinteger(L, (lua_Integer)(from - s) + 1);
                lua_pushinteger(L, (lua_Integer)(e - s));
                return push_captures(&m, NULL, NULL) + 2;
            }
            return push_captures(&m, from, e);
        }
    } while (from++ < m.src_end && !anchor);
    charge_now(&m);
    lua_pushnil(L);
    return 1;
}

static int l_find(lua_State *L)
{
    return find_or_match(L, 1);
}

static int l_match(lua_State *L)
{
    return find_or_match(L, 0);
}

/* The state of a gmatch iterator; its subject and pattern are its upvalues. */
typedef struct gmatch_state {
    size_t pos;                 /* where the next match may start */
    ptrdiff_t last;             /* end of the last match, or -1 */
} gmatch_state;

static int gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
    matcher m;
    matcher_init(&m, L, s, ls, p, lp);
    for (const char *from = s + g->pos; from <= m.src_end; from++) {
        matcher_reset(&m);
        const char *e = do_match(&m, from, p);
        if (e && (g->last < 0 || e != s + g->last)) {
            g->pos = (size_t)(e - s);
            g->last = e - s;
            charge_now(&m);
            return push_captures(&m, from, e);
        }
    }
    g->pos = ls + 1;
    charge_now(&m);
    return 0;
}

static int l_gmatch(lua_State *L)
{
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    size_t init = start_index(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls)
        init = ls + 1;
    lua_settop(L, 2);
    gmatch_state *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->pos = init;
    g->last = -1;
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* Appends the replacement string (with %0..%9 and %%) for the match s..e. */
static void add_string(matcher *m, luaL_Buffer *b, const char *s, const char *e, int repl)
{
    size_t l;
    const char *r = lua_tolstring(m->L, repl, &l);
    const char *end = r + l;
    while (r < end) {
        const char *esc = memchr(r, ESC, (size_t)(end - r));
        if (!esc) {
            luaL_addlstring(b, r, (size_t)(end - r));
            break;
        }
        luaL_addlstring(b, r, (size_t)(esc - r));
        r = esc + 1;
        if (r < end && *r == ESC) {
            luaL_addchar(b, ESC);
        } else if (r < end && isdigit((unsigned char)*r)) {
            if (*r == '0')
                luaL_addlstring(b, s, (size_t)(e - s));
            else {
                push_capture(m, *r - '1', s, e);
                luaL_tolstring(m->L, -1, NULL);
                lua_remove(m->L, -2);
                luaL_addvalue(b);
            }
        } else {
            luaL_error(m->L, "invalid use of '%c' in replacement string", ESC);
        }
        r++;
    }
}

/* Appends the replacement of the match s..e: from the string, table or function at index 3. */
static void add_value(matcher *m, luaL_Buffer *b, const char *s, const char *e, int type)
{
    lua_State *L = m->L;
    if (type == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else if (type == LUA_TTABLE) {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_string(m, b, s, e, 3);
        return;
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return;
    }
    if (!lua_isstring(L, -1))
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
}

static int l_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int type = lua_type(L, 3);
    luaL_argexpected(L, type == LUA_TNUMBER || type == LUA_TSTRING || type == LUA_TFUNCTION || type == LUA_TTABLE,
                     3, "string/function/table");
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    int anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    matcher m;
    matcher_init(&m, L, s, ls, p, lp);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *from = s, *last = NULL;
    lua_Integer n = 0;
    while (n < max) {
        matcher_reset(&m);
        const char *e = do_match(&m, from, p);
        if (e && e != last) {
            n++;
            add_value(&m, &b, from, e, type);
            from = last = e;
        } else if (from < m.src_end) {
            luaL_addchar(&b, *from++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    charge_now(&m);
    luaL_addlstring(&b, from, (size_t)(m.src_end - from));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

const luaL_Reg arl_pattern_functions[] = {
    { "find", l_find }, { "match", l_match }, { "gmatch", l_gmatch }, { "gsub", l_gsub }, { NULL, NULL }
};
