/* json.h -- validation of JSON text and UTF-8 at the API boundary (internal). */
#ifndef AR_JSON_H
#define AR_JSON_H

#include <stddef.h>

#define AR_JSON_MAX_DEPTH 512
#define AR_JSON_MAX_INT 9007199254740992.0 /* 2^53 */

/* Checks that text[0..len) is exactly one JSON value (RFC 8259, surrounding
 * whitespace allowed): valid UTF-8 (raw and in \u escapes: no lone
 * surrogates), nesting at most AR_JSON_MAX_DEPTH, integer literals (no
 * fraction, no exponent) within +-2^53. \u0000 is allowed. Allocates nothing.
 * Returns 0 when valid; otherwise -1 and writes a short reason with its byte
 * offset ("invalid UTF-8 at byte 12") to errbuf (may be NULL). */
int ar_json_validate(const char *text, size_t len, char *errbuf, size_t errlen);

/* Same as ar_json_validate, and the value must be an object. */
int ar_json_validate_object(const char *text, size_t len, char *errbuf, size_t errlen);

/* 1 when s[0..len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int ar_utf8_valid(const char *s, size_t len);

/* Writes s[0..len) to dst with each invalid UTF-8 sequence replaced by U+FFFD
 * (EF BF BD) and returns the bytes written. dst must hold 3 * len bytes; it is
 * not NUL-terminated. */
size_t ar_utf8_sanitize(char *dst, const char *s, size_t len);

#endif
