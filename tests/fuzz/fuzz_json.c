/* fuzz_json.c -- libFuzzer: the API's JSON validator agrees with an independent strict reference on every input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the reference: a plain recursive-descent reading of RFC 8259 plus the
 * library's documented limits (json.h), written without looking at json.c -- */

typedef struct ref {
    const unsigned char *p, *end;
    int depth;
} ref;

static int value(ref *r);

static int is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}

static void spaces(ref *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

/* One multi-byte UTF-8 character: shortest form, not a surrogate, at most U+10FFFF. */
static int utf8_char(ref *r)
{
    unsigned c = *r->p, cp;
    ptrdiff_t more;
    if (c >= 0xC2 && c <= 0xDF) {
        more = 1;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        more = 2;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        more = 3;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (r->end - r->p <= more)
        return 0;
    for (ptrdiff_t i = 1; i <= more; i++) {
        unsigned b = r->p[i];
        if ((b & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (b & 0x3F);
    }
    if ((more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    r->p += more + 1;
    return 1;
}

/* Four hex digits: their value, or -1. */
static long hex4(ref *r)
{
    if (r->end - r->p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = *r->p++;
        int d = c >= '0' && c <= '9' ? (int)(c - '0') : c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10)
              : c >= 'A' && c <= 'F' ? (int)(c - 'A' + 10) : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static int string(ref *r)
{
    r->p++;
    while (r->p < r->end) {
        unsigned c = *r->p;
        if (c == '"') {
            r->p++;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c >= 0x80) {
            if (!utf8_char(r))
                return 0;
            continue;
        }
        r->p++;
        if (c != '\\')
            continue;
        if (r->p == r->end)
            return 0;
        c = *r->p++;
        if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't')
            continue;
        if (c != 'u')
            return 0;
        long u = hex4(r);
        if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF))
            return 0;
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u')
                return 0;
            r->p += 2;
            long low = hex4(r);
            if (low < 0xDC00 || low > 0xDFFF)
                return 0;
        }
    }
    return 0;
}

/* A number; integers (no fraction, no exponent) within +-2^53, others
 * finite as strtod reads them. */
static int number(ref *r)
{
    const unsigned char *start = r->p;
    if (*r->p == '-')
        r->p++;
    if (r->p == r->end || !is_digit(*r->p))
        return 0;
    const unsigned char *digits = r->p;
    if (*r->p == '0')
        r->p++;
    else
        while (r->p < r->end && is_digit(*r->p))
            r->p++;
    size_t n_digits = (size_t)(r->p - digits);
    int plain = 1;
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (r->p == r->end || !is_digit(*r->p))
            return 0;
        while (r->p < r->end && is_digit(*r->p))
            r->p++;
        plain = 0;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (r->p == r->end || !is_digit(*r->p))
            return 0;
        while (r->p < r->end && is_digit(*r->p))
            r->p++;
        plain = 0;
    }
    if (plain)
        return n_digits < 16 || (n_digits == 16 && memcmp(digits, "9007199254740992", 16) <= 0);
    size_t n = (size_t)(r->p - start);
    char *copy = malloc(n + 1);
    if (!copy)
        abort();
    memcpy(copy, start, n);
    copy[n] = '\0';
    double v = strtod(copy, NULL);
    free(copy);
    return isfinite(v);
}

static int literal(ref *r, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return 0;
    r->p += n;
    return 1;
}

/* An array or object, its members separated by commas. */
static int container(ref *r, int object)
{
    if (++r->depth > AR_JSON_MAX_DEPTH)
        return 0;
    r->p++;
    spaces(r);
    if (r->p < r->end && *r->p == (object ? '}' : ']')) {
        r->p++;
        r->depth--;
        return 1;
    }
    for (;;) {
        if (object) {
            if (r->p == r->end || *r->p != '"' || !string(r))
                return 0;
            spaces(r);
            if (r->p == r->end || *r->p != ':')
                return 0;
            r->p++;
            spaces(r);
        }
        if (!value(r))
            return 0;
        spaces(r);
        if (r->p == r->end)
            return 0;
        if (*r->p == ',') {
            r->p++;
            spaces(r);
            continue;
        }
        if (*r->p != (object ? '}' : ']'))
            return 0;
        r->p++;
        r->depth--;
        return 1;
    }
}

static int value(ref *r)
{
    if (r->p == r->end)
        return 0;
    switch (*r->p) {
    case '{': return container(r, 1);
    case '[': return container(r, 0);
    case '"': return string(r);
    case 't': return literal(r, "true");
    case 'f': return literal(r, "false");
    case 'n': return literal(r, "null");
    default: return *r->p == '-' || is_digit(*r->p) ? number(r) : 0;
    }
}

static int reference_valid(const unsigned char *text, size_t len, int *is_object)
{
    ref r = { text, text + len, 0 };
    spaces(&r);
    *is_object = r.p < r.end && *r.p == '{';
    if (!value(&r))
        return 0;
    spaces(&r);
    return r.p == r.end;
}

/* The first byte picks an error-buffer size (0 means none), so short and
 * absent buffers are exercised too; the rest is the JSON text. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t errlen = data[0] % 48;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    /* an exact-size copy, so that ASan sees any read past the end */
    char *copy = malloc(len ? len : 1);
    char *errbuf = errlen ? malloc(errlen) : NULL;
    if (!copy || (errlen && !errbuf))
        abort();
    memcpy(copy, text, len);
    int is_object = 0;
    int want = reference_valid((const unsigned char *)copy, len, &is_object) ? 0 : -1;
    int got = ar_json_validate(copy, len, errbuf, errlen);
    if (got != want) {
        fprintf(stderr, "ar_json_validate says %d, the reference %d, for %zu bytes: %.*s\n", got, want, len,
                (int)(len < 200 ? len : 200), copy);
        abort();
    }
    /* a refusal says why, terminated within the buffer */
    if (got != 0 && errlen && (memchr(errbuf, '\0', errlen) == NULL || (errlen > 1 && errbuf[0] == '\0')))
        abort();
    int got_object = ar_json_validate_object(copy, len, errbuf, errlen);
    if (got_object != (want == 0 && is_object ? 0 : -1)) {
        fprintf(stderr, "ar_json_validate_object says %d for %.*s\n", got_object, (int)(len < 200 ? len : 200), copy);
        abort();
    }
    free(copy);
    free(errbuf);
    return 0;
}
