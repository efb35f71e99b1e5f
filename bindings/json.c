/* json.c -- Lua values <-> JSON text: a strict encoder and an exact decoder.
 * What JSON text and UTF-8 are valid, and the limits, are the core's rules
 * (agentrun_json.h): the encoder applies the core's limits and UTF-8 check,
 * and the decoder reads only text the core's validator accepted. */
#include "arl.h"
#include "agentrun_json.h"

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- encoding ------------------------------------------------------------ */

/* One table on the path being encoded, and which of its children is being
 * encoded now (`key` when it is an object, else `index`). Frames live in the
 * C stack frames of encode_table, linked to their parent. */
typedef struct frame {
    const struct frame *up;
    const void *table;
    int depth;
    lua_Integer index;
    const char *key;
    size_t keylen;
} frame;

/* What one arl_json_encode call works with. */
typedef struct encoder {
    lua_State *L;
    arl_buf *b;
    const char *root;
    const void *array_mt;
} encoder;

static void encode_value(encoder *e, int idx, frame *up);

/* 1 when the key can be shown as ".key" in a path. */
static int is_identifier(const char *s, size_t n)
{
    if (n == 0 || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

/* Appends a frame's child selector to a path: [3], .name or ["odd key"]
 * (quotes and backslashes escaped, control bytes and, when the key is not
 * UTF-8, bytes >= 0x80 as \xHH so the message stays valid UTF-8). */
static void add_selector(luaL_Buffer *pb, const frame *f)
{
    char tmp[32];
    if (!f->key) {
        snprintf(tmp, sizeof tmp, "[%lld]", (long long)f->index);
        luaL_addstring(pb, tmp);
        return;
    }
    if (is_identifier(f->key, f->keylen)) {
        luaL_addchar(pb, '.');
        luaL_addlstring(pb, f->key, f->keylen);
        return;
    }
    int valid = ar_utf8_valid(f->key, f->keylen);
    luaL_addstring(pb, "[\"");
    for (size_t i = 0; i < f->keylen; i++) {
        unsigned char c = (unsigned char)f->key[i];
        if (c == '"' || c == '\\') {
            luaL_addchar(pb, '\\');
            luaL_addchar(pb, (char)c);
        } else if (c < 0x20 || c == 0x7F || (c >= 0x80 && !valid)) {
            snprintf(tmp, sizeof tmp, "\\x%02X", c);
            luaL_addstring(pb, tmp);
        } else {
            luaL_addchar(pb, (char)c);
        }
    }
    luaL_addstring(pb, "\"]");
}

/* Raises agentrun.Error EJSON "<path>: <what>", the path being the root
 * followed by the selectors of `at` and its parents (NULL: the root). */
static void fail(encoder *e, const frame *at, const char *what)
{
    lua_State *L = e->L;
    const frame *chain[AR_JSON_MAX_DEPTH];
    int n = 0;
    for (; at && n < AR_JSON_MAX_DEPTH; at = at->up)
        chain[n++] = at;
    luaL_checkstack(L, 8, NULL);
    luaL_Buffer pb;
    luaL_buffinit(L, &pb);
    luaL_addstring(&pb, e->root);
    while (n-- > 0)
        add_selector(&pb, chain[n]);
    luaL_addstring(&pb, ": ");
    luaL_addstring(&pb, what);
    luaL_pushresult(&pb);
    arl_raise(L, AR_EJSON, "%s", lua_tostring(L, -1));
}

/* Raises the error for a table key that is neither a string nor an integer. */
static void fail_key(encoder *e, const frame *at, int idx)
{
    char what[96];
    snprintf(what, sizeof what, "%s key (keys must be strings or array indices 1..n)",
             luaL_typename(e->L, idx));
    fail(e, at, what);
}

/* Appends s[0..len) as a JSON string. Returns 0, or -1 (appending nothing)
 * when s is not valid UTF-8. Raises a memory error. */
static int add_string(lua_State *L, arl_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (!ar_utf8_valid(s, len))
        return -1;
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
    if (b->cap - b->len < len + 2)
        arl_buf_grow(L, b, len + 2);
    arl_buf_addc(L, b, '"');
    for (; p < end; p++) {
        unsigned char c = *p;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        arl_buf_add(L, b, (const char *)run, (size_t)(p - run));
        char esc[6] = { '\\', 0, '0', '0', 0, 0 };
        size_t n = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        arl_buf_add(L, b, esc, n);
        run = p + 1;
    }
    arl_buf_add(L, b, (const char *)run, (size_t)(p - run));
    arl_buf_addc(L, b, '"');
    return 0;
}

/* Appends an integer's decimal digits. */
static void add_integer(lua_State *L, arl_buf *b, lua_Integer n)
{
    char tmp[24], *p = tmp + sizeof tmp;
    lua_Unsigned u = n < 0 ? 0u - (lua_Unsigned)n : (lua_Unsigned)n;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (n < 0)
        *--p = '-';
    arl_buf_add(L, b, p, (size_t)(tmp + sizeof tmp - p));
}

/* Writes the shortest %g text (15 to 17 digits) that strtod reads back as d,
 * a finite double, to out (>= 40 bytes) and returns its length. Both run in
 * the current locale; its decimal point is then replaced by '.', and ".0" is
 * added to integral values so that they read back as floats. */
static size_t format_double(double d, char *out)
{
    char tmp[40];
    for (int prec = 15;; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (prec >= 17 || strtod(tmp, NULL) == d)
            break;
    }
    size_t n = 0;
    int is_float = 0, in_point = 0;
    for (const char *s = tmp; *s; s++) {
        char c = *s;
        if ((c >= '0' && c <= '9') || c == '-' || c == '+') {
            out[n++] = c;
            in_point = 0;
        } else if (c == 'e' || c == 'E') {
            out[n++] = 'e';
            is_float = 1;
            in_point = 0;
        } else if (!in_point) {
            out[n++] = '.';
            is_float = in_point = 1;
        }
    }
    if (!is_float) {
        out[n++] = '.';
        out[n++] = '0';
    }
    return n;
}

/* Appends a number: integers within +-2^53, finite floats; else EJSON. */
static void encode_number(encoder *e, int idx, frame *up)
{
    lua_State *L = e->L;
    if (lua_isinteger(L, idx)) {
        lua_Integer n = lua_tointeger(L, idx);
        if (n > AR_JSON_MAX_INT || n < -AR_JSON_MAX_INT)
            fail(e, up, "integer out of range (beyond +-2^53)");
        add_integer(L, e->b, n);
        return;
    }
    double d = (double)lua_tonumber(L, idx);
    if (isnan(d))
        fail(e, up, "NaN is not valid JSON");
    if (isinf(d))
        fail(e, up, d > 0 ? "Infinity is not valid JSON" : "-Infinity is not valid JSON");
    char tmp[40];
    arl_buf_add(L, e->b, tmp, format_double(d, tmp));
}

/* Encodes an object whose first key/value pair lua_next just pushed; pops
 * every pair it visits. */
static void encode_object(encoder *e, int idx, frame *self)
{
    lua_State *L = e->L;
    arl_buf *b = e->b;
    arl_buf_addc(L, b, '{');
    int first = 1;
    do {
        if (lua_type(L, -2) != LUA_TSTRING) {
            if (lua_isinteger(L, -2))
                fail(e, self->up, "mixed keys (array and object)");
            fail_key(e, self->up, -2);
        }
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        self->key = k;
        self->keylen = kl;
        if (!first)
            arl_buf_addc(L, b, ',');
        first = 0;
        if (add_string(L, b, k, kl))
            fail(e, self, "invalid UTF-8 in key");
        arl_buf_addc(L, b, ':');
        encode_value(e, lua_gettop(L), self);
        lua_pop(L, 1);
    } while (lua_next(L, idx));
    arl_buf_addc(L, b, '}');
}

/* Encodes an array whose first key/value pair lua_next just pushed. Elements
 * met in order 1, 2, 3... are written during the traversal that checks the
 * keys are exactly 1..n; any others are fetched with lua_rawgeti after it. */
static void encode_array(encoder *e, int idx, frame *self)
{
    lua_State *L = e->L;
    arl_buf *b = e->b;
    lua_Integer next = 1, count = 0, max = 0;
    arl_buf_addc(L, b, '[');
    self->key = NULL;
    do {
        if (!lua_isinteger(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING)
                fail(e, self->up, "mixed keys (array and object)");
            fail_key(e, self->up, -2);
        }
        lua_Integer k = lua_tointeger(L, -2);
        if (k < 1)
            fail(e, self->up, "sparse array");
        count++;
        if (k > max)
            max = k;
        if (k == next) {
            if (k > 1)
                arl_buf_addc(L, b, ',');
            self->index = k;
            encode_value(e, lua_gettop(L), self);
            next++;
        }
        lua_pop(L, 1);
    } while (lua_next(L, idx));
    if (count != max)
        fail(e, self->up, "sparse array");
    for (lua_Integer i = next; i <= max; i++) {
        if (i > 1)
            arl_buf_addc(L, b, ',');
        lua_rawgeti(L, idx, i);
        self->index = i;
        encode_value(e, lua_gettop(L), self);
        lua_pop(L, 1);
    }
    arl_buf_addc(L, b, ']');
}

/* Encodes the table at idx (absolute), `up` being its parent's frame (NULL
 * at the root). Raises EJSON for cycles, depth, sparse or mixed keys. */
static void encode_table(encoder *e, int idx, frame *up)
{
    lua_State *L = e->L;
    const void *p = lua_topointer(L, idx);
    for (const frame *f = up; f; f = f->up)
        if (f->table == p)
            fail(e, up, "cycle: table refers to itself");
    frame self = { up, p, up ? up->depth + 1 : 1, 0, NULL, 0 };
    if (self.depth > AR_JSON_MAX_DEPTH) {
        char what[48];
        snprintf(what, sizeof what, "nested deeper than %d levels", AR_JSON_MAX_DEPTH);
        fail(e, up, what);
    }
    luaL_checkstack(L, 6, NULL);
    int marked = 0;
    if (lua_getmetatable(L, idx)) {
        marked = lua_topointer(L, -1) == e->array_mt;
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    if (!lua_next(L, idx)) {
        arl_buf_add(L, e->b, marked ? "[]" : "{}", 2);
        return;
    }
    if (lua_isinteger(L, -2))
        encode_array(e, idx, &self);
    else if (lua_type(L, -2) != LUA_TSTRING)
        fail_key(e, up, -2);
    else if (marked)
        fail(e, up, "mixed keys (array and object)");
    else
        encode_object(e, idx, &self);
}

/* Appends the value at idx (absolute); `up` is the frame of the table that
 * holds it, with the value's key set (NULL at the root). */
static void encode_value(encoder *e, int idx, frame *up)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        arl_buf_add(L, e->b, "null", 4);
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            arl_buf_add(L, e->b, "true", 4);
        else
            arl_buf_add(L, e->b, "false", 5);
        return;
    case LUA_TNUMBER:
        encode_number(e, idx, up);
        return;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (add_string(L, e->b, s, n))
            fail(e, up, "invalid UTF-8");
        return;
    }
    case LUA_TTABLE:
        encode_table(e, idx, up);
        return;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) {
            arl_buf_add(L, e->b, "null", 4);
            return;
        }
        break;
    default:
        break;
    }
    char what[64];
    snprintf(what, sizeof what, "cannot encode a %s", luaL_typename(L, idx));
    fail(e, up, what);
}

/* Pushes the array metatable, creating it (with __name) on first use. */
static void push_array_mt(lua_State *L)
{
    luaL_newmetatable(L, ARL_ARRAY_MT);
}

/* See arl.h. Leaves the stack as it was; on error b holds a partial text. */
void arl_json_encode(lua_State *L, int idx, const char *root, arl_buf *b)
{
    encoder e = { L, b, root ? root : "value", NULL };
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 8, NULL);
    push_array_mt(L);
    e.array_mt = lua_topointer(L, -1);
    lua_pop(L, 1);
    encode_value(&e, idx, NULL);
}

/* ---- decoding ------------------------------------------------------------ */

/* What one decoding works with. The text was accepted by the core's
 * validator, so the reading below checks nothing it checked. */
typedef struct decoder {
    lua_State *L;
    const char *p, *end;
    int array_mt; /* stack index of the array metatable */
} decoder;

static void decode_value(decoder *d);

/* Moves d->p past JSON whitespace. */
static void skip_ws(decoder *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t'))
        d->p++;
}

/* The code unit of the 4 hex digits at p. */
static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* Appends the UTF-8 of the \u escape at d->p (after the 'u'), a surrogate
 * pair taken as one code point, and moves past it. */
static void decode_u_escape(decoder *d, luaL_Buffer *sb)
{
    unsigned cp = hex4(d->p);
    d->p += 4;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(d->p + 2) - 0xDC00);
        d->p += 6;
    }
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    luaL_addlstring(sb, u, n);
}

/* The first quote or backslash at or after p (the text holds one). */
static const char *string_stop(const char *p)
{
    while (*p != '"' && *p != '\\')
        p++;
    return p;
}

/* Pushes the string at d->p (at the opening quote). Strings without escapes
 * are pushed straight from the text; others are built in a luaL_Buffer. */
static void decode_string(decoder *d)
{
    const char *s = ++d->p, *q = string_stop(s);
    if (*q == '"') {
        lua_pushlstring(d->L, s, (size_t)(q - s));
        d->p = q + 1;
        return;
    }
    luaL_Buffer sb;
    luaL_buffinit(d->L, &sb);
    for (;;) {
        luaL_addlstring(&sb, s, (size_t)(q - s));
        d->p = q + 1;
        if (*q == '"')
            break;
        char c = *d->p++;
        switch (c) {
        case 'b': luaL_addchar(&sb, '\b'); break;
        case 'f': luaL_addchar(&sb, '\f'); break;
        case 'n': luaL_addchar(&sb, '\n'); break;
        case 'r': luaL_addchar(&sb, '\r'); break;
        case 't': luaL_addchar(&sb, '\t'); break;
        case 'u': decode_u_escape(d, &sb); break;
        default: luaL_addchar(&sb, c); break; /* " \ / stand for themselves */
        }
        s = d->p;
        q = string_stop(s);
    }
    luaL_pushresult(&sb);
}

/* Pushes the float of the number text s[0..n), read with strtod whatever
 * the locale's decimal point. */
static void push_float(lua_State *L, const char *s, size_t n)
{
    char local[64];
    const char *text = local;
    int pushed = 0;
    if (n < sizeof local) {
        memcpy(local, s, n);
        local[n] = '\0';
    } else {
        text = lua_pushlstring(L, s, n);
        pushed = 1;
    }
    char *endp;
    double v = strtod(text, &endp);
    if (endp != text + n) {
        const char *dp = localeconv()->decimal_point;
        const char *fixed = luaL_gsub(L, text, ".", dp && *dp ? dp : ".");
        v = strtod(fixed, NULL);
        lua_pop(L, 1);
    }
    if (pushed)
        lua_pop(L, 1);
    lua_pushnumber(L, (lua_Number)v);
}

/* Pushes the number at d->p: an integer for an integer literal (within
 * +-AR_JSON_MAX_INT, so it fits), else a float. */
static void decode_number(decoder *d)
{
    const char *s = d->p, *digits = *s == '-' ? s + 1 : s;
    int is_int = 1;
    for (d->p = digits; d->p < d->end; d->p++) {
        char c = *d->p;
        if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')
            is_int = 0;
        else if (c < '0' || c > '9')
            break;
    }
    if (!is_int) {
        push_float(d->L, s, (size_t)(d->p - s));
        return;
    }
    lua_Integer n = 0;
    for (const char *q = digits; q < d->p; q++)
        n = n * 10 + (*q - '0');
    lua_pushinteger(d->L, digits != s ? -n : n);
}

/* Counts one more level of nesting on the Lua stack (a plain "stack
 * overflow" error when the stack cannot grow). */
static void enter(decoder *d)
{
    luaL_checkstack(d->L, 4, "decoding JSON");
    d->p++;
    skip_ws(d);
}

/* Pushes the object at d->p (at '{') as a plain table. */
static void decode_object(decoder *d)
{
    lua_State *L = d->L;
    enter(d);
    lua_newtable(L);
    if (*d->p == '}') {
        d->p++;
        return;
    }
    for (;;) {
        skip_ws(d);
        decode_string(d);
        skip_ws(d);
        d->p++; /* ':' */
        decode_value(d);
        lua_rawset(L, -3);
        skip_ws(d);
        if (*d->p++ == '}')
            return;
    }
}

/* Pushes the array at d->p (at '[') as a table with the array metatable. */
static void decode_array(decoder *d)
{
    lua_State *L = d->L;
    enter(d);
    lua_newtable(L);
    lua_pushvalue(L, d->array_mt);
    lua_setmetatable(L, -2);
    if (*d->p == ']') {
        d->p++;
        return;
    }
    for (lua_Integer i = 1;; i++) {
        decode_value(d);
        lua_rawseti(L, -2, i);
        skip_ws(d);
        if (*d->p++ == ']')
            return;
    }
}

/* Pushes the value at d->p (after optional whitespace). */
static void decode_value(decoder *d)
{
    skip_ws(d);
    switch (*d->p) {
    case '{':
        decode_object(d);
        break;
    case '[':
        decode_array(d);
        break;
    case '"':
        decode_string(d);
        break;
    case 't':
        d->p += 4;
        lua_pushboolean(d->L, 1);
        break;
    case 'f':
        d->p += 5;
        lua_pushboolean(d->L, 0);
        break;
    case 'n':
        d->p += 4;
        lua_pushlightuserdata(d->L, NULL);
        break;
    default:
        decode_number(d);
    }
}

/* Pushes exactly one value, or raises: text the core's validator refuses is
 * EJSON for the caller's own text (`given`), ECORRUPT for data read from the
 * store, with the validator's reason and byte offset. */
static void decode(lua_State *L, const char *json, size_t len, int given)
{
    char why[128];
    if (ar_json_validate(json, len, why, sizeof why) != 0) {
        if (given)
            arl_raise(L, AR_EJSON, "text is not valid JSON: %s", why);
        arl_raise(L, AR_ECORRUPT, "stored JSON is invalid: %s", why);
    }
    luaL_checkstack(L, 8, NULL);
    push_array_mt(L);
    decoder d = { L, json, json + len, lua_gettop(L) };
    decode_value(&d);
    if (lua_islightuserdata(L, -1) && lua_touserdata(L, -1) == NULL) {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    lua_remove(L, d.array_mt);
}

/* See arl.h. */
void arl_json_decode(lua_State *L, const char *json, size_t len)
{
    decode(L, json, len, 0);
}

/* ---- module functions ---------------------------------------------------- */

/* agentrun.array([t]) -> t marked as a JSON array (a new table when t is
 * absent). Plain error when t is not a table or has another metatable. */
static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        arl_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
    }
    push_array_mt(L);
    if (lua_getmetatable(L, 1)) {
        if (!lua_rawequal(L, -1, -2))
            return arl_argerror(L, 1, "table already has a metatable");
        lua_settop(L, 1);
        return 1;
    }
    lua_setmetatable(L, 1);
    return 1;
}

/* agentrun.json_encode(v) -> JSON text; raises agentrun.Error EJSON with a
 * path rooted at "value". */
static int l_json_encode(lua_State *L)
{
    arl_checkany(L, 1);
    lua_settop(L, 1);
    arl_buf *b = arl_scratch(L);
    arl_json_encode(L, 1, "value", b);
    lua_pushlstring(L, b->data, b->len);
    return 1;
}

/* agentrun.json_decode(s) -> value (nil for "null"); raises agentrun.Error
 * EJSON, with the byte where it goes wrong, for text that is not JSON, and a
 * misuse error for a value that is not a string. */
static int l_json_decode(lua_State *L)
{
    int t = lua_type(L, 1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        return arl_argerror(L, 1, "string expected, got %s", t == LUA_TNONE ? "no value" : luaL_typename(L, 1));
    size_t n;
    const char *s = lua_tolstring(L, 1, &n);
    decode(L, s, n, 1);
    return 1;
}

/* See arl.h. */
void arl_open_json(lua_State *L, int module_idx)
{
    module_idx = lua_absindex(L, module_idx);
    push_array_mt(L);
    lua_pop(L, 1);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, module_idx, "null");
}

const luaL_Reg arl_json_functions[] = {
    { "array", l_array }, { "json_encode", l_json_encode }, { "json_decode", l_json_decode }, { NULL, NULL }
};
