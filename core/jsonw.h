/* jsonw.h -- a streaming JSON writer over a caller's write function, shared
 * by the JSON Lines export and the OTLP export (internal).
 *
 * Output is gathered in a buffer of bounded size and handed to the write
 * function in pieces; large values go straight through. The first failure
 * sticks (w->rc) and every later call does nothing, so a writer runs a whole
 * line and checks once. */
#ifndef AR_JSONW_H
#define AR_JSONW_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define AR_JSONW_CHUNK 65536 /* bytes gathered before they are handed on */

typedef struct ar_jsonw {
    const ar_allocator *alloc;
    ar_write_fn write;
    void *ud;
    ar_err *err;
    char *buf;
    size_t len;
    int rc;
    uint64_t bytes;     /* handed on so far */
} ar_jsonw;

/* Starts a writer (its buffer is allocated at the first byte). */
void ar_jsonw_init(ar_jsonw *w, const ar_allocator *alloc, ar_write_fn write, void *ud, ar_err *err);
/* Hands on what is gathered; returns w->rc. */
int ar_jsonw_flush(ar_jsonw *w);
/* Frees the buffer (without flushing). */
void ar_jsonw_release(ar_jsonw *w);

void ar_jsonw_raw(ar_jsonw *w, const char *s, size_t n);
void ar_jsonw_lit(ar_jsonw *w, const char *s);
/* A JSON string of s[0..n): quotes, backslashes and control characters
 * escaped (NUL as \u0000), everything else as it is (s is valid UTF-8). */
void ar_jsonw_str(ar_jsonw *w, const char *s, size_t n);
void ar_jsonw_cstr(ar_jsonw *w, const char *s);
void ar_jsonw_int(ar_jsonw *w, int64_t v);
/* The shortest text that reads back as the same double, with ".0" when it
 * would read as an integer (a double reads back as a float). */
void ar_jsonw_double(ar_jsonw *w, double v);
/* nanos * 1e-9 written exactly as a decimal (a cost), ".0" when whole. */
void ar_jsonw_nanos(ar_jsonw *w, int64_t nanos);
/* Stored JSON text as it is, but for line breaks between tokens (the only
 * place valid JSON can hold them), which become spaces: one value, one line. */
void ar_jsonw_json(ar_jsonw *w, const char *s, size_t n);
/* `,"key":` (the comma when `comma`). */
void ar_jsonw_key(ar_jsonw *w, int comma, const char *key);

/* Formats the text of ar_jsonw_double into buf (>= 32 bytes). */
size_t ar_double_text(char *buf, double v);

#endif
