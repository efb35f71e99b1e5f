/* json.h -- validation of JSON text and UTF-8 at the API boundary (internal). */
#ifndef AR_JSON_H
#define AR_JSON_H

#include <stddef.h>

/* The limits, ar_json_validate and ar_utf8_valid: the part the bindings use too. */
#include "private/agentrun_json.h"

/* Same as ar_json_validate, and the value must be an object. */
int ar_json_validate_object(const char *text, size_t len, char *errbuf, size_t errlen);

/* Writes s[0..len) to dst with each invalid UTF-8 sequence replaced by U+FFFD
 * (EF BF BD) and returns the bytes written. dst must hold 3 * len bytes; it is
 * not NUL-terminated. */
size_t ar_utf8_sanitize(char *dst, const char *s, size_t len);

#endif
