/* jsonw.c -- the streaming JSON writer of the exports. */
#include "jsonw.h"

#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ar_jsonw_init(ar_jsonw *w, const ar_allocator *alloc, ar_write_fn write, void *ud, ar_err *err)
{
    memset(w, 0, sizeof *w);
    w->alloc = alloc;
    w->write = write;
    w->ud = ud;
    w->err = err;
}

static void hand_on(ar_jsonw *w, const char *s, size_t n)
{
    if (w->rc || n == 0)
        return;
    if (w->write(w->ud, s, n) != 0) {
        w->rc = ar_fail(w->err, AR_ECALLBACK, "the write function asked to stop");
        return;
    }
    w->bytes += n;
}

int ar_jsonw_flush(ar_jsonw *w)
{
    if (w->len) {
        hand_on(w, w->buf, w->len);
        w->len = 0;
    }
    return w->rc;
}

void ar_jsonw_release(ar_jsonw *w)
{
    ar_mem_free(w->alloc, w->buf);
    w->buf = NULL;
    w->len = 0;
}

void ar_jsonw_raw(ar_jsonw *w, const char *s, size_t n)
{
    if (w->rc)
        return;
    if (!w->buf && !(w->buf = ar_mem_alloc(w->alloc, AR_JSONW_CHUNK))) {
        w->rc = ar_fail(w->err, AR_ENOMEM, "out of memory writing the export");
        return;
    }
    if (w->len + n > AR_JSONW_CHUNK) {
        ar_jsonw_flush(w);
        if (n > AR_JSONW_CHUNK / 2) {
            /* a large value goes straight through, uncopied */
            hand_on(w, s, n);
            return;
        }
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

void ar_jsonw_lit(ar_jsonw *w, const char *s)
{
    ar_jsonw_raw(w, s, strlen(s));
}

void ar_jsonw_str(ar_jsonw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    ar_jsonw_raw(w, "\"", 1);
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        ar_jsonw_raw(w, s + from, i - from);
        from = i + 1;
        char esc[6] = { '\\', 0, 0, 0, 0, 0 };
        size_t k = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
            k = 6;
        }
        ar_jsonw_raw(w, esc, k);
    }
    ar_jsonw_raw(w, s + from, n - from);
    ar_jsonw_raw(w, "\"", 1);
}

void ar_jsonw_cstr(ar_jsonw *w, const char *s)
{
    ar_jsonw_str(w, s, strlen(s));
}

/* The decimal digits of v, written backwards ending just before `end`;
 * returns where they start. (snprintf costs several times more, and an
 * export writes a dozen numbers a step.) */
static char *digits_before(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

void ar_jsonw_int(ar_jsonw *w, int64_t v)
{
    char buf[24];
    char *end = buf + sizeof buf;
    char *p = digits_before(end, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
    if (v < 0)
        *--p = '-';
    ar_jsonw_raw(w, p, (size_t)(end - p));
}

size_t ar_double_text(char *buf, double v)
{
    if (!isfinite(v)) {
        /* never stored (the API refuses them); null keeps the line JSON */
        memcpy(buf, "null", 5);
        return 4;
    }
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, 32, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    /* a double reads back as a float, also when its value is integral */
    if (!strpbrk(buf, ".e")) {
        memcpy(buf + n, ".0", 3);
        n += 2;
    }
    return (size_t)n;
}

void ar_jsonw_double(ar_jsonw *w, double v)
{
    char buf[32];
    size_t n = ar_double_text(buf, v);
    ar_jsonw_raw(w, buf, n);
}

void ar_jsonw_nanos(ar_jsonw *w, int64_t nanos)
{
    char buf[48];
    uint64_t m = nanos < 0 ? (uint64_t)0 - (uint64_t)nanos : (uint64_t)nanos;
    char *end = buf + 24;
    char *p = digits_before(end, m / 1000000000u);
    if (nanos < 0)
        *--p = '-';
    uint64_t frac = m % 1000000000u;
    *end++ = '.';
    if (!frac) {
        /* a cost reads back as a float, also when it is a whole number */
        *end++ = '0';
    } else {
        /* nine digits with the leading zeros, less the trailing ones */
        char *stop = end + 9;
        for (char *q = stop; q > end; frac /= 10)
            *--q = (char)('0' + frac % 10);
        while (stop[-1] == '0')
            stop--;
        end = stop;
    }
    ar_jsonw_raw(w, p, (size_t)(end - p));
}

void ar_jsonw_json(ar_jsonw *w, const char *s, size_t n)
{
    /* valid JSON holds raw line breaks only as whitespace between tokens;
     * memchr finds them (most texts have none) far quicker than a byte loop */
    if (n == 0)
        return;
    const char *p = s, *end = s + n;
    /* the next of each kind (end: none left), searched for again only once
     * passed, so that text of many breaks of one kind stays linear */
    const char *nl = NULL, *cr = NULL;
    for (;;) {
        if (!nl || nl < p)
            nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            nl = end;
        if (!cr || cr < p)
            cr = memchr(p, '\r', (size_t)(end - p));
        if (!cr)
            cr = end;
        const char *at = nl < cr ? nl : cr;
        if (at == end)
            break;
        ar_jsonw_raw(w, p, (size_t)(at - p));
        ar_jsonw_raw(w, " ", 1);
        p = at + 1;
    }
    ar_jsonw_raw(w, p, (size_t)(end - p));
}

void ar_jsonw_key(ar_jsonw *w, int comma, const char *key)
{
    if (comma)
        ar_jsonw_raw(w, ",", 1);
    ar_jsonw_cstr(w, key);
    ar_jsonw_raw(w, ":", 1);
}
