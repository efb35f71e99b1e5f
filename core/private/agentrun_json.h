/* agentrun_json.h -- the core's JSON and UTF-8 rules, as the Lua bindings use them.
 *
 * Internal: this header is not installed and is not part of the API; the
 * shared library does not export these functions (the bindings link the
 * static archive). It is the whole of what the bindings see of the core
 * beyond agentrun.h, so that they ask the core's rules instead of keeping
 * their own: a JSON value or a string one layer accepts, the other accepts. */
#ifndef AGENTRUN_JSON_H
#define AGENTRUN_JSON_H

#include <stddef.h>
#include <stdint.h>

#define AR_JSON_MAX_DEPTH 512                     /* containers nested deeper are refused */
#define AR_JSON_MAX_INT INT64_C(9007199254740992) /* 2^53: integer literals beyond +-it are refused */

/* Checks that text[0..len) is exactly one JSON value (RFC 8259, surrounding
 * whitespace allowed): valid UTF-8 (raw and in \u escapes: no lone
 * surrogates), nesting at most AR_JSON_MAX_DEPTH, integer literals (no
 * fraction, no exponent) within +-AR_JSON_MAX_INT, other numbers finite as a
 * double. \u0000 is allowed. Allocates nothing. Returns 0 when valid;
 * otherwise -1 and writes a short reason with its byte offset ("invalid
 * UTF-8 at byte 12") to errbuf (may be NULL). */
int ar_json_validate(const char *text, size_t len, char *errbuf, size_t errlen);

/* 1 when s[0..len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int ar_utf8_valid(const char *s, size_t len);

#endif
