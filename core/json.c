/* json.c -- single-pass, allocation-free validation of JSON text and UTF-8. */
#include "json.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Decimal digits of 2^1024 - 2^970, the midpoint between DBL_MAX and 2^1024:
 * a correctly rounding strtod turns any value at or above it into infinity
 * (a tie goes to the even significand, which is the overflow). */
static const char overflow_digits[] =
    "17976931348623158079372897140530341507993413271003782693617377898044496829"
    "27647509466490179775872070963302864166928879109465555478519404026306574886"
    "71505820681908902000708383676273854845817711531764475730270069855571366959"
    "62284291481986083493647529271907416844436551070434271155969950809304288017"
    "7904174497792";
#define OVERFLOW_MAGNITUDE 309 /* overflow_digits has this many digits */

/* Digits of 2^53: integer literals above it in absolute value are refused. */
static const char max_int_digits[] = "9007199254740992";

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

typedef struct parse {
    const unsigned char *base; /* start of the text, for byte offsets */
    char *errbuf;
    size_t errlen;
} parse;

/* Writes "<what> at byte <offset of at>" to the error buffer; returns -1. */
static int fail(const parse *ps, const char *what, const unsigned char *at)
{
    if (ps->errbuf && ps->errlen)
        snprintf(ps->errbuf, ps->errlen, "%s at byte %zu", what, (size_t)(at - ps->base));
    return -1;
}

/* Reports the byte at `at` as unexpected (or the end of input when at == end). */
static int fail_unexpected(const parse *ps, const unsigned char *at, const unsigned char *end)
{
    if (at == end)
        return fail(ps, "unexpected end of input", at);
    if (!ps->errbuf || !ps->errlen)
        return -1;
    size_t off = (size_t)(at - ps->base);
    if (*at >= 0x20 && *at < 0x7f && *at != '\'')
        snprintf(ps->errbuf, ps->errlen, "unexpected character '%c' at byte %zu", *at, off);
    else
        snprintf(ps->errbuf, ps->errlen, "unexpected byte 0x%02X at byte %zu", *at, off);
    return -1;
}

/* Non-zero when the 8 bytes in w contain a zero byte (exact, no false hits). */
static inline uint64_t has_zero_byte(uint64_t w)
{
    return (w - ONES) & ~w & HIGHS;
}

/* Non-zero when any of the 8 bytes in w is not plain string content: a quote,
 * a backslash, a control character or a non-ASCII byte. */
static inline uint64_t has_special_byte(uint64_t w)
{
    return (w & HIGHS)
        | ((w - ONES * 0x20) & ~w & HIGHS)
        | has_zero_byte(w ^ (ONES * '"'))
        | has_zero_byte(w ^ (ONES * '\\'));
}

/* Length of the well-formed UTF-8 sequence at p (avail > 0 bytes readable), or
 * 0 when ill-formed; *bad then receives the length of the maximal subpart
 * (a valid prefix of some sequence, at least 1 byte) that is in error. */
static size_t utf8_sequence(const unsigned char *p, size_t avail, size_t *bad)
{
    unsigned char lead = p[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (lead < 0x80)
        return 1;
    if (lead < 0xC2) {
        n = 0;                          /* continuation byte or C0/C1 overlong */
    } else if (lead < 0xE0) {
        n = 2;
    } else if (lead < 0xF0) {
        n = 3;
        if (lead == 0xE0)
            lo = 0xA0;                  /* overlong below U+0800 */
        else if (lead == 0xED)
            hi = 0x9F;                  /* surrogates U+D800..U+DFFF */
    } else if (lead < 0xF5) {
        n = 4;
        if (lead == 0xF0)
            lo = 0x90;                  /* overlong below U+10000 */
        else if (lead == 0xF4)
            hi = 0x8F;                  /* above U+10FFFF */
    } else {
        n = 0;
    }
    if (n == 0) {
        *bad = 1;
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (i >= avail || p[i] < lo || p[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return n;
}

/* The first byte at or after p that is not JSON whitespace (or end). */
static const unsigned char *skip_space(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* 1 for an ASCII decimal digit (isdigit depends on the locale). */
static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* The value of the 4 hex digits at p, or -1 when there are not 4 of them. */
static long hex4(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Checks the escape at p (a backslash) and returns the byte after it, or NULL
 * with the error reported. A \u high surrogate must be followed by a \u low
 * surrogate; a low surrogate on its own is refused. */
static const unsigned char *scan_escape(const parse *ps, const unsigned char *p,
                                        const unsigned char *end)
{
    if (end - p < 2) {
        fail(ps, "unterminated escape", p);
        return NULL;
    }
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return p + 2;
    case 'u':
        break;
    default:
        fail(ps, "invalid escape", p);
        return NULL;
    }
    long u = hex4(p + 2, end);
    if (u < 0) {
        fail(ps, "invalid \\u escape", p);
        return NULL;
    }
    if (u < 0xD800 || u > 0xDFFF)
        return p + 6;
    if (u >= 0xDC00 || end - p < 8 || p[6] != '\\' || p[7] != 'u') {
        fail(ps, "lone surrogate in \\u escape", p);
        return NULL;
    }
    long low = hex4(p + 8, end);
    if (low < 0) {
        fail(ps, "invalid \\u escape", p + 6);
        return NULL;
    }
    if (low < 0xDC00 || low > 0xDFFF) {
        fail(ps, "lone surrogate in \\u escape", p);
        return NULL;
    }
    return p + 12;
}

/* Checks the string whose opening quote is at p; returns the byte after the
 * closing quote, or NULL with the error reported. */
static const unsigned char *scan_string(const parse *ps, const unsigned char *p,
                                        const unsigned char *end)
{
    const unsigned char *open = p++;
    for (;;) {
        /* Most string content is plain ASCII: skip it a word at a time. */
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (has_special_byte(w))
                break;
            p += 8;
        }
        if (p == end) {
            fail(ps, "unterminated string", open);
            return NULL;
        }
        unsigned char c = *p;
        if (c == '"')
            return p + 1;
        if (c == '\\') {
            p = scan_escape(ps, p, end);
            if (!p)
                return NULL;
        } else if (c < 0x20) {
            fail(ps, "control character in string", p);
            return NULL;
        } else if (c < 0x80) {
            p++;
        } else {
            size_t bad, n = utf8_sequence(p, (size_t)(end - p), &bad);
            if (n == 0) {
                fail(ps, "invalid UTF-8", p);
                return NULL;
            }
            p += n;
        }
    }
}

/* 1 when the decimal number with integer digits [i0, i1), fraction digits
 * [f0, f1) and exponent exp is finite as a double, exactly as a correctly
 * rounding strtod decides, without its locale or a terminated copy. */
static int decimal_is_finite(const unsigned char *i0, const unsigned char *i1,
                             const unsigned char *f0, const unsigned char *f1,
                             int64_t exp)
{
    /* The value lies in [10^(m-1), 10^m): only m == 309 needs the digits. */
    const unsigned char *d = i0;
    int64_t m;
    while (d < i1 && *d == '0')
        d++;
    if (d < i1) {
        m = (int64_t)(i1 - d) + exp;
    } else {
        d = f0;
        while (d < f1 && *d == '0')
            d++;
        if (d == f1)
            return 1;                   /* zero, whatever the exponent */
        m = exp - (int64_t)(d - f0);
    }
    if (m != OVERFLOW_MAGNITUDE)
        return m < OVERFLOW_MAGNITUDE;
    /* Compare the significant digits, integer part then fraction, with the
     * midpoint's; all 309 equal means at or above it. */
    const unsigned char *stop = d < i1 ? i1 : f1;
    size_t k = 0;
    while (k < OVERFLOW_MAGNITUDE) {
        if (d == stop) {
            if (stop == f1)
                break;
            d = f0;
            stop = f1;
            continue;
        }
        if (*d != (unsigned char)overflow_digits[k])
            return *d < (unsigned char)overflow_digits[k];
        d++;
        k++;
    }
    /* The digits ran out equal to a prefix: finite only if the rest of the
     * midpoint is not all zeros (an exact tie overflows). */
    for (; k < OVERFLOW_MAGNITUDE; k++)
        if (overflow_digits[k] != '0')
            return 1;
    return 0;
}

/* 1 when `word` starts at p (within end). */
static int starts_with(const unsigned char *p, const unsigned char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - p) >= n && memcmp(p, word, n) == 0;
}

/* Checks the number at p (a '-' or a digit); returns the byte after it, or
 * NULL with the error reported. */
static const unsigned char *scan_number(const parse *ps, const unsigned char *p,
                                        const unsigned char *end)
{
    const unsigned char *start = p;
    if (*p == '-') {
        p++;
        if (starts_with(p, end, "Infinity") || starts_with(p, end, "NaN")) {
            fail(ps, "NaN/Infinity are not valid JSON", start);
            return NULL;
        }
    }
    if (p == end || !is_digit(*p)) {
        fail(ps, "invalid number", start);
        return NULL;
    }
    const unsigned char *int0 = p;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p)) {
            fail(ps, "leading zero in number", start);
            return NULL;
        }
    } else {
        while (p < end && is_digit(*p))
            p++;
    }
    const unsigned char *int1 = p, *frac0 = p, *frac1 = p;
    int plain = 1;
    if (p < end && *p == '.') {
        frac0 = ++p;
        while (p < end && is_digit(*p))
            p++;
        frac1 = p;
        if (frac0 == frac1) {
            fail(ps, "invalid number", start);
            return NULL;
        }
        plain = 0;
    }
    int64_t exp = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int negative = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            negative = *p++ == '-';
        if (p == end || !is_digit(*p)) {
            fail(ps, "invalid number", start);
            return NULL;
        }
        /* Saturates: beyond 10^15 the exponent decides alone either way. */
        for (; p < end && is_digit(*p); p++)
            if (exp < 1000000000000000LL)
                exp = exp * 10 + (*p - '0');
        if (negative)
            exp = -exp;
        plain = 0;
    }
    if (plain) {
        size_t n = (size_t)(int1 - int0), max = sizeof max_int_digits - 1;
        if (n > max || (n == max && memcmp(int0, max_int_digits, max) > 0)) {
            fail(ps, "integer out of range (beyond +-2^53)", start);
            return NULL;
        }
    } else if (!decimal_is_finite(int0, int1, frac0, frac1, exp)) {
        fail(ps, "number out of range (overflows a double)", start);
        return NULL;
    }
    return p;
}

enum expect { EXPECT_VALUE, EXPECT_KEY, AFTER_VALUE };

/* The validator behind both entry points; want_object refuses any top-level
 * value but an object. Containers are tracked in a bit set (1 = object), so
 * nothing recurses and nothing is allocated. */
static int validate(const char *text, size_t len, int want_object,
                    char *errbuf, size_t errlen)
{
    assert(text || len == 0);
    const unsigned char *base = (const unsigned char *)text;
    const unsigned char *end = base + len, *p;
    parse ps = { base, errbuf, errlen };
    unsigned char objects[AR_JSON_MAX_DEPTH / 8] = { 0 };
    size_t depth = 0;
    enum expect state = EXPECT_VALUE;

    if (!text || (p = skip_space(base, end)) == end) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "empty input");
        return -1;
    }
    if (want_object && *p != '{')
        return fail(&ps, "expected a JSON object", p);

    for (;;) {
        if (state == EXPECT_VALUE) {
            if (p == end)
                return fail_unexpected(&ps, p, end);
            switch (*p) {
            case '{':
            case '[':
                if (depth == AR_JSON_MAX_DEPTH)
                    return fail(&ps, "nesting deeper than 512", p);
                if (*p == '{')
                    objects[depth / 8] |= (unsigned char)(1u << (depth % 8));
                else
                    objects[depth / 8] &= (unsigned char)~(1u << (depth % 8));
                depth++;
                state = *p == '{' ? EXPECT_KEY : EXPECT_VALUE;
                p = skip_space(p + 1, end);
                if (p < end && *p == (state == EXPECT_KEY ? '}' : ']')) {
                    p++;
                    depth--;
                    state = AFTER_VALUE;
                }
                continue;
            case '"':
                p = scan_string(&ps, p, end);
                break;
            case '-': case '0': case '1': case '2': case '3': case '4':
            case '5': case '6': case '7': case '8': case '9':
                p = scan_number(&ps, p, end);
                break;
            case 't':
                if (!starts_with(p, end, "true"))
                    return fail(&ps, "invalid literal", p);
                p += 4;
                break;
            case 'f':
                if (!starts_with(p, end, "false"))
                    return fail(&ps, "invalid literal", p);
                p += 5;
                break;
            case 'n':
                if (!starts_with(p, end, "null"))
                    return fail(&ps, "invalid literal", p);
                p += 4;
                break;
            default:
                if (starts_with(p, end, "NaN") || starts_with(p, end, "Infinity"))
                    return fail(&ps, "NaN/Infinity are not valid JSON", p);
                return fail_unexpected(&ps, p, end);
            }
            if (!p)
                return -1;
            state = AFTER_VALUE;
        } else if (state == EXPECT_KEY) {
            if (p == end || *p != '"')
                return fail_unexpected(&ps, p, end);
            p = scan_string(&ps, p, end);
            if (!p)
                return -1;
            p = skip_space(p, end);
            if (p == end || *p != ':')
                return fail_unexpected(&ps, p, end);
            p = skip_space(p + 1, end);
            state = EXPECT_VALUE;
        } else {
            p = skip_space(p, end);
            if (depth == 0)
                return p == end ? 0 : fail(&ps, "trailing characters", p);
            if (p == end)
                return fail_unexpected(&ps, p, end);
            size_t top = depth - 1;
            int in_object = (objects[top / 8] >> (top % 8)) & 1;
            if (*p == ',') {
                p = skip_space(p + 1, end);
                state = in_object ? EXPECT_KEY : EXPECT_VALUE;
            } else if (*p == (in_object ? '}' : ']')) {
                p++;
                depth--;
            } else {
                return fail_unexpected(&ps, p, end);
            }
        }
    }
}

/* See json.h: one JSON value, any kind. */
int ar_json_validate(const char *text, size_t len, char *errbuf, size_t errlen)
{
    return validate(text, len, 0, errbuf, errlen);
}

/* See json.h: one JSON value, which must be an object; a value of another
 * kind is refused at its first byte without scanning the rest. */
int ar_json_validate_object(const char *text, size_t len, char *errbuf, size_t errlen)
{
    return validate(text, len, 1, errbuf, errlen);
}

/* See json.h: strict UTF-8, with plain ASCII skipped a word at a time. */
int ar_utf8_valid(const char *s, size_t len)
{
    assert(s || len == 0);
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (w & HIGHS)
                break;
            p += 8;
        }
        if (p == end)
            break;
        size_t bad, n = utf8_sequence(p, (size_t)(end - p), &bad);
        if (n == 0)
            return 0;
        p += n;
    }
    return 1;
}

/* See json.h: each maximal invalid subpart (the Unicode-recommended unit)
 * becomes one U+FFFD; valid runs are copied in one piece. */
size_t ar_utf8_sanitize(char *dst, const char *s, size_t len)
{
    assert(dst || len == 0);
    assert(s || len == 0);
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
    size_t out = 0;
    while (p < end) {
        size_t bad, n = utf8_sequence(p, (size_t)(end - p), &bad);
        if (n) {
            p += n;
            continue;
        }
        if (p > run) {
            memcpy(dst + out, run, (size_t)(p - run));
            out += (size_t)(p - run);
        }
        memcpy(dst + out, "\xEF\xBF\xBD", 3);
        out += 3;
        p += bad;
        run = p;
    }
    if (p > run) {
        memcpy(dst + out, run, (size_t)(p - run));
        out += (size_t)(p - run);
    }
    return out;
}
