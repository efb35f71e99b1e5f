/* test_json.c -- the JSON and UTF-8 validators: every accept/refuse rule. */
#include "suite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "jsonw.h"

/* Checks that text[0..len) is accepted (ok) or refused, naming the input and
 * the validator's message when it is not. */
static void expect_json(const char *text, size_t len, int ok, const char *file, int line)
{
    char err[160] = "";
    int rc = ar_json_validate(text, len, err, sizeof err);
    if (rc != 0 && rc != -1) {
        print_error("%s:%d: return code %d\n", file, line, rc);
        fail();
    }
    if ((rc == 0) != ok) {
        print_error("%s:%d: expected %s of \"%.*s\"%s (%s)\n", file, line,
                    ok ? "acceptance" : "refusal", (int)(len > 80 ? 80 : len), text,
                    len > 80 ? "..." : "", err);
        fail();
    }
    if (!ok && !strstr(err, "at byte") && strcmp(err, "empty input") != 0) {
        print_error("%s:%d: message without offset: %s\n", file, line, err);
        fail();
    }
}

/* Checks that text[0..len) is refused with exactly the message `want`. */
static void expect_error(const char *text, size_t len, const char *want,
                         const char *file, int line)
{
    char err[160] = "";
    int rc = ar_json_validate(text, len, err, sizeof err);
    if (rc != -1 || strcmp(err, want) != 0) {
        print_error("%s:%d: \"%.*s\": got %d \"%s\", want \"%s\"\n", file, line,
                    (int)(len > 80 ? 80 : len), text, rc, err, want);
        fail();
    }
}

/* String literals may hold NUL bytes, so their length is taken from sizeof. */
#define ACCEPT(lit) expect_json((lit), sizeof(lit) - 1, 1, __FILE__, __LINE__)
#define REFUSE(lit) expect_json((lit), sizeof(lit) - 1, 0, __FILE__, __LINE__)
#define ACCEPT_N(buf, n) expect_json((buf), (n), 1, __FILE__, __LINE__)
#define REFUSE_N(buf, n) expect_json((buf), (n), 0, __FILE__, __LINE__)
#define ERROR_IS(lit, msg) expect_error((lit), sizeof(lit) - 1, (msg), __FILE__, __LINE__)
#define ERROR_IS_N(buf, n, msg) expect_error((buf), (n), (msg), __FILE__, __LINE__)

/* A deterministic generator, so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* An exactly sized heap copy (no NUL after it), so ASan sees any over-read. */
static char *exact_copy(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    if (n)
        memcpy(p, s, n);
    return p;
}

/* A reference UTF-8 check written the slow, obvious way: decode, then test
 * the code point for overlong form, surrogate and range. */
static int reference_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned long cp, min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (i + n > len)
            return 0;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n;
    }
    return 1;
}

/* ---- structure ---------------------------------------------------------- */

static void test_scalars_at_top_level_are_accepted(void **state)
{
    (void)state;
    ACCEPT("true");
    ACCEPT("false");
    ACCEPT("null");
    ACCEPT("0");
    ACCEPT("-12.5e-3");
    ACCEPT("\"text\"");
    ACCEPT("\"\"");
}

static void test_containers_and_nesting_are_accepted(void **state)
{
    (void)state;
    ACCEPT("{}");
    ACCEPT("[]");
    ACCEPT("{ }");
    ACCEPT("[ \n ]");
    ACCEPT("[1,\"a\",true,false,null,{},[],{\"k\":[{\"x\":-0.5e+2}]}]");
    ACCEPT("{\"a\":{\"b\":{\"c\":[1,[2,[3]]]}},\"\":\"\",\"a\":2}");
    ACCEPT(" { \"a\" : [ 1 , 2 ] , \"b\" : { } } ");
}

static void test_surrounding_whitespace_is_accepted(void **state)
{
    (void)state;
    ACCEPT(" \t\r\n{\"a\":1}\n\r\t ");
    ACCEPT("\n1\n");
}

static void test_non_json_whitespace_is_refused(void **state)
{
    (void)state;
    REFUSE("\f1");
    REFUSE("1\v");
    REFUSE("\xC2\xA0" "1");             /* no-break space */
    REFUSE("\xEF\xBB\xBF{}");           /* a byte order mark is not JSON text */
    REFUSE("[1,\f2]");
}

static void test_empty_input_is_refused(void **state)
{
    (void)state;
    ERROR_IS("", "empty input");
    ERROR_IS(" \t\r\n", "empty input");
    char err[32] = "";
    assert_int_equal(ar_json_validate(NULL, 0, err, sizeof err), -1);
    assert_string_equal(err, "empty input");
}

static void test_trailing_characters_are_refused(void **state)
{
    (void)state;
    ERROR_IS("1 2", "trailing characters at byte 2");
    ERROR_IS("{} x", "trailing characters at byte 3");
    ERROR_IS("[]]", "trailing characters at byte 2");
    ERROR_IS("\"a\"\"b\"", "trailing characters at byte 3");
    ERROR_IS("null\0", "trailing characters at byte 4");
    REFUSE("{}{}");
    REFUSE("truefalse");
    ERROR_IS("0x10", "trailing characters at byte 1");
}

static void test_bad_separators_are_refused(void **state)
{
    (void)state;
    REFUSE("[1,]");
    REFUSE("[,1]");
    REFUSE("[1 2]");
    REFUSE("[1;2]");
    REFUSE("{\"a\":1,}");
    REFUSE("{,\"a\":1}");
    REFUSE("{\"a\" 1}");
    REFUSE("{\"a\"::1}");
    REFUSE("{\"a\":}");
    REFUSE("{\"a\",1}");
    REFUSE("{\"a\":1 \"b\":2}");
    REFUSE("{1:2}");
    REFUSE("{a:1}");
    REFUSE("{'a':1}");
    REFUSE("{null:1}");
    REFUSE("[\"a\":1]");
    ERROR_IS("{\"a\" 1}", "unexpected character '1' at byte 5");
    ERROR_IS("[1,]", "unexpected character ']' at byte 3");
}

static void test_mismatched_brackets_are_refused(void **state)
{
    (void)state;
    REFUSE("[}");
    REFUSE("{]");
    REFUSE("[{]}");
    REFUSE("{\"a\":[}]");
    REFUSE("]");
    REFUSE("}");
    ERROR_IS("[{\"a\":1]]", "unexpected character ']' at byte 7");
}

static void test_unterminated_input_is_refused(void **state)
{
    (void)state;
    ERROR_IS("[", "unexpected end of input at byte 1");
    ERROR_IS("[1,2", "unexpected end of input at byte 4");
    ERROR_IS("{\"a\":", "unexpected end of input at byte 5");
    ERROR_IS("{\"a\"", "unexpected end of input at byte 4");
    ERROR_IS("{", "unexpected end of input at byte 1");
    ERROR_IS("\"abc", "unterminated string at byte 0");
    ERROR_IS("[\"abc\\\"]", "unterminated string at byte 1");
    ERROR_IS("\"abc\\", "unterminated escape at byte 4");
}

static void test_literals_must_be_exact(void **state)
{
    (void)state;
    ACCEPT("[true,false,null]");
    REFUSE("tru");
    REFUSE("nul");
    REFUSE("fals");
    REFUSE("True");
    REFUSE("NULL");
    REFUSE("nulll");
    REFUSE("undefined");
    ERROR_IS("[tru]", "invalid literal at byte 1");
}

static void test_nan_and_infinity_are_refused(void **state)
{
    (void)state;
    ERROR_IS("NaN", "NaN/Infinity are not valid JSON at byte 0");
    ERROR_IS("Infinity", "NaN/Infinity are not valid JSON at byte 0");
    ERROR_IS("-Infinity", "NaN/Infinity are not valid JSON at byte 0");
    ERROR_IS("[1, NaN]", "NaN/Infinity are not valid JSON at byte 4");
    ERROR_IS("{\"x\":-Infinity}", "NaN/Infinity are not valid JSON at byte 5");
    REFUSE("-NaN");
    REFUSE("nan");
    REFUSE("inf");
    REFUSE("+Infinity");
}

static void test_the_length_bounds_the_text_not_a_nul(void **state)
{
    (void)state;
    const char *text = "[1]garbage";
    ACCEPT_N(text, 3);
    ERROR_IS_N(text, 2, "unexpected end of input at byte 2");
    ACCEPT_N("1]", 1);
    ERROR_IS("\"a\0b\"", "control character in string at byte 2");
    ERROR_IS("[1,\0]", "unexpected byte 0x00 at byte 3");
}

static void test_every_truncation_of_a_document_is_refused(void **state)
{
    (void)state;
    static const char doc[] =
        "{\"a\":[1,-2.5e+3,true,false,null,\"x\\u00e9\\uD83D\\uDE00\\n\xC3\xA9\xF0\x9F\x98\x80\"],"
        "\"b\":{\"c\":{}},\"d\":[[]],\"e\":0.125,\"f\":9007199254740992}";
    size_t n = sizeof doc - 1;
    char *full = exact_copy(doc, n);
    ACCEPT_N(full, n);
    free(full);
    for (size_t i = 0; i < n; i++) {
        char *cut = exact_copy(doc, i);
        REFUSE_N(cut, i);
        free(cut);
    }
}

/* ---- numbers ------------------------------------------------------------ */

static void test_well_formed_numbers_are_accepted(void **state)
{
    (void)state;
    ACCEPT("0");
    ACCEPT("-0");
    ACCEPT("-0.0");
    ACCEPT("0.5");
    ACCEPT("0e0");
    ACCEPT("0E+0");
    ACCEPT("1E-0");
    ACCEPT("-1.25e10");
    ACCEPT("123456789");
    ACCEPT("[0,-0,10,0.0]");
}

static void test_leading_zeros_are_refused(void **state)
{
    (void)state;
    ERROR_IS("01", "leading zero in number at byte 0");
    ERROR_IS("[-01]", "leading zero in number at byte 1");
    REFUSE("00");
    REFUSE("00.5");
    REFUSE("007e1");
    REFUSE("{\"a\":0123}");
}

static void test_malformed_numbers_are_refused(void **state)
{
    (void)state;
    ERROR_IS("-", "invalid number at byte 0");
    ERROR_IS("[1.]", "invalid number at byte 1");
    ERROR_IS("1e", "invalid number at byte 0");
    REFUSE("1e+");
    REFUSE("1E-");
    REFUSE("1.e3");
    REFUSE(".5");
    REFUSE("+1");
    REFUSE("--1");
    REFUSE("- 1");
    REFUSE("1.5.2");
    REFUSE("1e5e5");
    REFUSE("1e5.5");
    REFUSE("0x10");
    REFUSE("1_000");
}

static void test_integer_2_53_is_accepted(void **state)
{
    (void)state;
    ACCEPT("9007199254740992");
    ACCEPT("-9007199254740992");
    ACCEPT("9007199254740991");
    ACCEPT("-9007199254740991");
    ACCEPT("999999999999999");
    ACCEPT("1000000000000000");
    ACCEPT("[9007199254740992,-9007199254740992]");
}

static void test_integer_beyond_2_53_is_refused(void **state)
{
    (void)state;
    ERROR_IS("9007199254740993", "integer out of range (beyond +-2^53) at byte 0");
    ERROR_IS("[1,-9007199254740993]", "integer out of range (beyond +-2^53) at byte 3");
    REFUSE("9007199254741000");
    REFUSE("9099999999999999");
    REFUSE("9999999999999999");
    REFUSE("10000000000000000");
    REFUSE("-10000000000000000");
    REFUSE("18446744073709551616");
    REFUSE("123456789012345678901234567890");
}

static void test_large_numbers_with_fraction_or_exponent_are_accepted(void **state)
{
    (void)state;
    ACCEPT("9007199254740993.0");
    ACCEPT("9007199254740993e0");
    ACCEPT("1e16");
    ACCEPT("1e300");
    ACCEPT("-1e308");
    ACCEPT("1.7976931348623157e308");   /* DBL_MAX */
    ACCEPT("1.7976931348623158e308");   /* still rounds to DBL_MAX */
    ACCEPT("179769313486231570000000000000000e276");
    ACCEPT("1e-400");                   /* underflows to zero: finite */
    ACCEPT("-1e-99999999999999999999");
    ACCEPT("0e99999999999999999999");
    ACCEPT("0.0000e400");
    ACCEPT("0.001e310");                /* 1e307 */
}

static void test_numbers_overflowing_a_double_are_refused(void **state)
{
    (void)state;
    ERROR_IS("1e400", "number out of range (overflows a double) at byte 0");
    ERROR_IS("[-1e309]", "number out of range (overflows a double) at byte 1");
    REFUSE("1.7976931348623159e308");
    REFUSE("1.8e308");
    REFUSE("10e308");
    REFUSE("1e99999999999999999999");
    REFUSE("1E+400");
    REFUSE("0.01e311");                 /* 1e309 */
}

static void test_overflow_boundary_is_exact_for_long_literals(void **state)
{
    (void)state;
    /* 2^1024 - 2^970, the midpoint between DBL_MAX and 2^1024. */
    static const char mid[] =
        "17976931348623158079372897140530341507993413271003782693617377898044496829"
        "27647509466490179775872070963302864166928879109465555478519404026306574886"
        "71505820681908902000708383676273854845817711531764475730270069855571366959"
        "62284291481986083493647529271907416844436551070434271155969950809304288017"
        "7904174497792";
    char buf[1200];
    size_t n = sizeof mid - 1;
    assert_int_equal(n, 309);

    snprintf(buf, sizeof buf, "%s.0", mid);       /* the tie itself overflows */
    REFUSE_N(buf, strlen(buf));
    snprintf(buf, sizeof buf, "%.308s1.0", mid);  /* last digit 2 -> 1: below */
    ACCEPT_N(buf, strlen(buf));
    snprintf(buf, sizeof buf, "%s.000000000000000000000000000001", mid);
    REFUSE_N(buf, strlen(buf));
    snprintf(buf, sizeof buf, "%.308s1.99999999999999999999999999", mid);
    ACCEPT_N(buf, strlen(buf));
    snprintf(buf, sizeof buf, "0.%se309", mid);   /* same value, all fraction */
    REFUSE_N(buf, strlen(buf));
    snprintf(buf, sizeof buf, "0.000%.308s1e312", mid);
    ACCEPT_N(buf, strlen(buf));
    snprintf(buf, sizeof buf, "%.100s.%se209", mid, mid + 100);
    REFUSE_N(buf, strlen(buf));
    snprintf(buf, sizeof buf, "%.20se289", mid);  /* a prefix is below the tie */
    ACCEPT_N(buf, strlen(buf));

    /* 1 followed by 308 zeros is 1e308; one more zero is 1e309. */
    memset(buf, '0', 320);
    buf[0] = '1';
    memcpy(buf + 309, ".0", 2);
    ACCEPT_N(buf, 311);
    memcpy(buf + 309, "0.0", 3);
    REFUSE_N(buf, 312);
    /* A fraction thousands of digits long is still a small number. */
    char *big = malloc(5003);
    assert_non_null(big);
    memcpy(big, "0.", 2);
    memset(big + 2, '9', 5000);
    big[5002] = '\0';
    ACCEPT_N(big, 5002);
    /* Long significands balanced by large exponents: 1e200, 1e299, 1e309. */
    big[0] = '1';
    memset(big + 1, '0', 2000);
    memcpy(big + 2001, "e-1800", 6);
    ACCEPT_N(big, 2007);
    memcpy(big, "0.", 2);
    memset(big + 2, '0', 2000);
    memcpy(big + 2002, "1e2300", 6);
    ACCEPT_N(big, 2008);
    memcpy(big + 2002, "1e2310", 6);
    REFUSE_N(big, 2008);
    free(big);
}

static void test_finiteness_agrees_with_strtod(void **state)
{
    (void)state;
    static const char near[] = "179769313486231580793728971405303415";
    char num[160], err[160];
    for (int i = 0; i < 200000; i++) {
        /* Significands often close to DBL_MAX's, exponents around overflow. */
        char digits[48];
        size_t nd = 1 + rng() % 36;
        for (size_t k = 0; k < nd; k++)
            digits[k] = rng() % 2 ? near[k] : (char)('0' + rng() % 10);
        if (digits[0] == '0')
            digits[0] = '1';
        size_t n = 0, int_len = rng() % 3 == 0 ? 0 : 1 + rng() % nd;
        if (rng() % 2)
            num[n++] = '-';
        if (int_len == 0)
            num[n++] = '0';
        memcpy(num + n, digits, int_len);
        n += int_len;
        if (int_len < nd) {
            num[n++] = '.';
            if (int_len == 0)
                for (uint64_t z = rng() % 3; z > 0; z--)
                    num[n++] = '0';
            memcpy(num + n, digits + int_len, nd - int_len);
            n += nd - int_len;
        }
        n += (size_t)snprintf(num + n, sizeof num - n, "%se%d", rng() % 2 ? "" : "0",
                              (int)(308 - (int)int_len) + (int)(rng() % 7) - 3);
        num[n] = '\0';
        int finite = isfinite(strtod(num, NULL));
        int rc = ar_json_validate(num, n, err, sizeof err);
        if ((rc == 0) != finite) {
            print_error("%s: strtod finite %d, validator %d (%s)\n", num, finite, rc, err);
            fail();
        }
    }
    /* The 17-digit neighbours of DBL_MAX, at several scales. */
    for (int last = 0; last <= 9; last++) {
        for (int e = 290; e <= 294; e++) {
            int n = snprintf(num, sizeof num, "1797693134862315%de%d", last, e);
            int finite = isfinite(strtod(num, NULL));
            assert_int_equal(ar_json_validate(num, (size_t)n, NULL, 0) == 0, finite);
        }
    }
}

/* ---- strings ------------------------------------------------------------ */

static void test_valid_escapes_are_accepted(void **state)
{
    (void)state;
    ACCEPT("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"");
    ACCEPT("\"\\u00e9\\u00E9\\uFFFF\\uffff\\u0041\"");
    ACCEPT("\"\\uD83D\\uDE00\"");               /* a surrogate pair */
    ACCEPT("\"\\uDBFF\\uDFFF\\uD800\\uDC00\"");
    ACCEPT("{\"\\u0000\":\"\\u0000\"}");         /* NUL by escape is allowed */
    ACCEPT("\"\\uD7FF\\uE000\"");
}

static void test_bad_escapes_are_refused(void **state)
{
    (void)state;
    ERROR_IS("\"\\a\"", "invalid escape at byte 1");
    ERROR_IS("[\"ok\",\"\\x41\"]", "invalid escape at byte 7");
    REFUSE("\"\\U0041\"");
    REFUSE("\"\\'\"");
    REFUSE("\"\\0\"");
    REFUSE("\"\\\xC3\xA9\"");
    ERROR_IS("\"\\u12\"", "invalid \\u escape at byte 1");
    ERROR_IS("\"\\u12G4\"", "invalid \\u escape at byte 1");
    REFUSE("\"\\u 123\"");
    REFUSE("\"\\u-123\"");
    ERROR_IS("\"\\uD800\\u12\"", "invalid \\u escape at byte 7");
}

static void test_lone_surrogate_escapes_are_refused(void **state)
{
    (void)state;
    ERROR_IS("\"\\uD800\"", "lone surrogate in \\u escape at byte 1");
    ERROR_IS("\"ab\\uDC00\"", "lone surrogate in \\u escape at byte 3");
    REFUSE("\"\\uDFFF\"");
    REFUSE("\"\\uDBFF\"");
    REFUSE("\"\\uD800x\"");
    REFUSE("\"\\uD800\\u0041\"");
    REFUSE("\"\\uD800\\uD800\"");               /* high then high */
    REFUSE("\"\\uD800\\uE000\"");
    REFUSE("\"\\uDC00\\uD800\"");               /* pair in the wrong order */
    REFUSE("\"\\uDC00\\uDC00\"");               /* low then low */
    REFUSE("\"\\uD800\\n\"");
    REFUSE("\"\\uD83D");
    REFUSE("\"\\uD83D\\");
    REFUSE("\"\\uD83D\\uDE0");
}

static void test_control_characters_in_strings_are_refused(void **state)
{
    (void)state;
    char buf[8];
    for (int c = 0; c < 0x20; c++) {
        int n = snprintf(buf, sizeof buf, "[\"a%c\"]", c ? c : 'X');
        if (c == 0)
            buf[3] = '\0';
        ERROR_IS_N(buf, (size_t)n, "control character in string at byte 3");
    }
    ACCEPT("\"\x7f\"");                          /* DEL is allowed */
    ACCEPT("\" ~\"");
}

static void test_raw_utf8_in_strings_is_accepted(void **state)
{
    (void)state;
    ACCEPT("\"\xC2\x80\"");                     /* U+0080 */
    ACCEPT("\"\xDF\xBF\"");                     /* U+07FF */
    ACCEPT("\"\xE0\xA0\x80\"");                 /* U+0800 */
    ACCEPT("\"\xED\x9F\xBF\"");                 /* U+D7FF */
    ACCEPT("\"\xEE\x80\x80\"");                 /* U+E000 */
    ACCEPT("\"\xEF\xBF\xBF\"");                 /* U+FFFF */
    ACCEPT("\"\xF0\x90\x80\x80\"");             /* U+10000 */
    ACCEPT("\"\xF4\x8F\xBF\xBF\"");             /* U+10FFFF */
    ACCEPT("{\"cl\xC3\xA9\":\"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80\"}");
}

static void test_invalid_utf8_in_strings_is_refused(void **state)
{
    (void)state;
    /* lone continuation bytes */
    ERROR_IS("\"\x80\"", "invalid UTF-8 at byte 1");
    ERROR_IS("[\"ab\xBF\"]", "invalid UTF-8 at byte 4");
    /* overlong forms */
    REFUSE("\"\xC0\xAF\"");
    REFUSE("\"\xC1\xBF\"");
    REFUSE("\"\xE0\x80\xAF\"");
    REFUSE("\"\xE0\x9F\xBF\"");
    REFUSE("\"\xF0\x80\x80\xAF\"");
    REFUSE("\"\xF0\x8F\xBF\xBF\"");
    /* UTF-16 surrogates encoded in UTF-8 */
    ERROR_IS("\"x\xED\xA0\x80\"", "invalid UTF-8 at byte 2");
    REFUSE("\"\xED\xBF\xBF\"");
    REFUSE("\"\xED\xA0\xBD\xED\xB8\x80\"");     /* CESU-8 pair */
    /* beyond U+10FFFF */
    REFUSE("\"\xF4\x90\x80\x80\"");
    REFUSE("\"\xF5\x80\x80\x80\"");
    REFUSE("\"\xF7\xBF\xBF\xBF\"");
    REFUSE("\"\xF8\x88\x80\x80\x80\"");
    REFUSE("\"\xFE\"");
    REFUSE("\"\xFF\"");
    /* truncated sequences and missing continuations */
    ERROR_IS("\"\xC3\"", "invalid UTF-8 at byte 1");
    REFUSE("\"\xE2\x82\"");
    REFUSE("\"\xF0\x9F\x98\"");
    REFUSE("\"\xE2\x82\x41\"");
    REFUSE("\"\xC3\xC3\xA9\"");
    /* truncated at the very end of the buffer */
    REFUSE("\"\xF0\x9F");
}

static void test_invalid_utf8_outside_strings_is_refused(void **state)
{
    (void)state;
    ERROR_IS("[\xC3\xA9]", "unexpected byte 0xC3 at byte 1");
    REFUSE("\xFF");
    REFUSE("{\"a\":1}\x80");
    REFUSE("{\"a\":1\xC2\xA0}");
}

static void test_utf8_in_strings_matches_the_reference_decoder(void **state)
{
    (void)state;
    /* Every 1- and 2-byte sequence, then every 3-byte one with a non-ASCII
     * lead, each inside quotes. */
    unsigned char buf[8];
    buf[0] = '"';
    for (unsigned a = 0x20; a < 0x100; a++) {
        for (unsigned b = 0x20; b < 0x100; b++) {
            if (a == '"' || a == '\\' || b == '"' || b == '\\')
                continue;
            buf[1] = (unsigned char)a;
            buf[2] = (unsigned char)b;
            buf[3] = '"';
            int want = reference_utf8_valid(buf + 1, 2);
            assert_int_equal(ar_json_validate((char *)buf, 4, NULL, 0) == 0, want);
            assert_int_equal(ar_utf8_valid((char *)buf + 1, 2), want);
        }
    }
    for (unsigned a = 0xC0; a < 0x100; a++)
        for (unsigned b = 0x20; b < 0x100; b++)
            for (unsigned c = 0x20; c < 0x100; c++) {
                if (b == '"' || b == '\\' || c == '"' || c == '\\')
                    continue;
                buf[1] = (unsigned char)a;
                buf[2] = (unsigned char)b;
                buf[3] = (unsigned char)c;
                buf[4] = '"';
                int want = reference_utf8_valid(buf + 1, 3);
                if ((ar_json_validate((char *)buf, 5, NULL, 0) == 0) != want
                    || ar_utf8_valid((char *)buf + 1, 3) != want) {
                    print_error("%02X %02X %02X: want %d\n", a, b, c, want);
                    fail();
                }
            }
    /* 4-byte leads with every second byte and edge values after it. */
    static const unsigned char edges[] = { 0x41, 0x7F, 0x80, 0x8F, 0x90, 0xBF, 0xC0, 0xFF };
    for (unsigned a = 0xF0; a < 0x100; a++)
        for (unsigned b = 0x20; b < 0x100; b++)
            for (size_t c = 0; c < sizeof edges; c++)
                for (size_t d = 0; d < sizeof edges; d++) {
                    if (b == '"' || b == '\\')
                        continue;
                    buf[1] = (unsigned char)a;
                    buf[2] = (unsigned char)b;
                    buf[3] = edges[c];
                    buf[4] = edges[d];
                    buf[5] = '"';
                    int want = reference_utf8_valid(buf + 1, 4);
                    assert_int_equal(ar_json_validate((char *)buf, 6, NULL, 0) == 0, want);
                    assert_int_equal(ar_utf8_valid((char *)buf + 1, 4), want);
                }
}

static void test_string_fast_path_sees_special_bytes_at_every_position(void **state)
{
    (void)state;
    char buf[64], want[64];
    for (size_t pos = 0; pos < 24; pos++) {
        buf[0] = '"';
        memset(buf + 1, 'a', 24);
        buf[25] = '"';
        size_t n = 26, at = pos + 1;

        buf[at] = 0x1F;
        snprintf(want, sizeof want, "control character in string at byte %zu", at);
        ERROR_IS_N(buf, n, want);
        buf[at] = (char)0x80;
        snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", at);
        ERROR_IS_N(buf, n, want);
        buf[at] = (char)0xFF;
        ERROR_IS_N(buf, n, want);
        buf[at] = '\\';
        if (at + 1 < n - 1)
            snprintf(want, sizeof want, "invalid escape at byte %zu", at);
        else                            /* it escapes the closing quote */
            snprintf(want, sizeof want, "unterminated string at byte 0");
        ERROR_IS_N(buf, n, want);
        buf[at] = '"';
        snprintf(want, sizeof want, "trailing characters at byte %zu", at + 1);
        ERROR_IS_N(buf, n, want);
        buf[at] = 0x7F;
        ACCEPT_N(buf, n);
        buf[at] = ' ';
        ACCEPT_N(buf, n);
        buf[at] = '~';
        ACCEPT_N(buf, n);
    }
}

static void test_strings_agree_with_utf8_valid_on_random_bytes(void **state)
{
    (void)state;
    unsigned char buf[64];
    for (int i = 0; i < 100000; i++) {
        size_t n = 1 + rng() % 40;
        buf[0] = '"';
        for (size_t k = 1; k <= n; k++) {
            unsigned char c;
            do
                c = (unsigned char)(rng() % 3 ? 0x80 + rng() % 0x80 : 0x20 + rng() % 0x60);
            while (c == '"' || c == '\\');
            buf[k] = c;
        }
        buf[n + 1] = '"';
        int want = reference_utf8_valid(buf + 1, n);
        assert_int_equal(ar_utf8_valid((char *)buf + 1, n), want);
        assert_int_equal(ar_json_validate((char *)buf, n + 2, NULL, 0) == 0, want);
    }
}

static void test_large_string_value_is_accepted(void **state)
{
    (void)state;
    size_t n = (size_t)64 << 20;
    char *buf = malloc(n);
    assert_non_null(buf);
    static const char chunk[] = "The quick brown fox \\n caf\xC3\xA9 \xF0\x9F\x98\x80 \\u00e9 jumps. ";
    size_t c = sizeof chunk - 1;
    memcpy(buf, "{\"s\":\"", 6);
    size_t i = 6;
    while (i + c < n - 2) {
        memcpy(buf + i, chunk, c);
        i += c;
    }
    while (i < n - 2)
        buf[i++] = 'x';
    memcpy(buf + n - 2, "\"}", 2);
    ACCEPT_N(buf, n);
    assert_int_equal(ar_json_validate_object(buf, n, NULL, 0), 0);

    /* One bad byte near the end is still found, at its offset. */
    char want[80];
    buf[n - 5] = (char)0xC0;
    snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", n - 5);
    ERROR_IS_N(buf, n, want);
    buf[n - 5] = '\n';
    snprintf(want, sizeof want, "control character in string at byte %zu", n - 5);
    ERROR_IS_N(buf, n, want);
    free(buf);
}

/* ---- depth -------------------------------------------------------------- */

/* Writes `levels` nested containers around 0 into buf and returns the length:
 * arrays, objects, or alternating (kind 0, 1, 2). */
static size_t nest(char *buf, size_t levels, int kind)
{
    size_t n = 0;
    for (size_t i = 0; i < levels; i++) {
        int object = kind == 1 || (kind == 2 && i % 3 == 1);
        if (object) {
            memcpy(buf + n, "{\"k\":", 5);
            n += 5;
        } else {
            buf[n++] = '[';
        }
    }
    buf[n++] = '0';
    for (size_t i = levels; i-- > 0;) {
        int object = kind == 1 || (kind == 2 && i % 3 == 1);
        buf[n++] = object ? '}' : ']';
    }
    return n;
}

static void test_nesting_of_512_is_accepted(void **state)
{
    (void)state;
    char *buf = malloc(16384);
    assert_non_null(buf);
    for (int kind = 0; kind < 3; kind++) {
        size_t n = nest(buf, AR_JSON_MAX_DEPTH, kind);
        ACCEPT_N(buf, n);
    }
    free(buf);
}

static void test_nesting_of_513_is_refused(void **state)
{
    (void)state;
    char *buf = malloc(16384);
    assert_non_null(buf);
    size_t n = nest(buf, AR_JSON_MAX_DEPTH + 1, 0);
    ERROR_IS_N(buf, n, "nesting deeper than 512 at byte 512");
    n = nest(buf, AR_JSON_MAX_DEPTH + 1, 1);
    ERROR_IS_N(buf, n, "nesting deeper than 512 at byte 2560");
    n = nest(buf, AR_JSON_MAX_DEPTH + 1, 2);
    REFUSE_N(buf, n);
    n = nest(buf, 5000, 0);
    REFUSE_N(buf, n);
    free(buf);
}

static void test_depth_is_released_when_containers_close(void **state)
{
    (void)state;
    /* 511 levels holding two siblings 1 deep each: never beyond 512. */
    char *buf = malloc(16384);
    assert_non_null(buf);
    size_t n = 0;
    for (int i = 0; i < 511; i++)
        buf[n++] = '[';
    memcpy(buf + n, "[1],{\"a\":2},[]", 14);
    n += 14;
    for (int i = 0; i < 511; i++)
        buf[n++] = ']';
    ACCEPT_N(buf, n);
    free(buf);
}

static void test_deep_mixed_nesting_checks_each_closing_bracket(void **state)
{
    (void)state;
    char *buf = malloc(16384);
    assert_non_null(buf);
    size_t n = nest(buf, 500, 2);
    ACCEPT_N(buf, n);
    /* Swap each closing bracket for the other kind: always refused. */
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != ']' && buf[i] != '}')
            continue;
        char was = buf[i];
        buf[i] = was == ']' ? '}' : ']';
        REFUSE_N(buf, n);
        buf[i] = was;
    }
    free(buf);
}

/* ---- messages and entry points ----------------------------------------- */

static void test_error_messages_name_the_problem_and_offset(void **state)
{
    (void)state;
    ERROR_IS("{\"a\":[1,2,x]}", "unexpected character 'x' at byte 10");
    ERROR_IS("[1,\x01]", "unexpected byte 0x01 at byte 3");
    ERROR_IS("{'a':1}", "unexpected byte 0x27 at byte 1");
    ERROR_IS("{\"a\":\"b\xC3\"}", "invalid UTF-8 at byte 7");
    ERROR_IS("[1] 2", "trailing characters at byte 4");
    ERROR_IS("{\"a\":-}", "invalid number at byte 5");
}

static void test_error_buffer_is_optional_and_bounded(void **state)
{
    (void)state;
    assert_int_equal(ar_json_validate("[x]", 3, NULL, 0), -1);
    assert_int_equal(ar_json_validate("[x]", 3, NULL, 100), -1);
    char err[8];
    memset(err, '#', sizeof err);
    assert_int_equal(ar_json_validate("[x]", 3, err, 0), -1);
    assert_int_equal(err[0], '#');
    assert_int_equal(ar_json_validate("[x]", 3, err, sizeof err), -1);
    assert_string_equal(err, "unexpec");
    assert_int_equal(ar_json_validate("[x]", 3, err, 1), -1);
    assert_string_equal(err, "");
    memset(err, '#', sizeof err);
    assert_int_equal(ar_json_validate("[1]", 3, err, sizeof err), 0);
    assert_int_equal(err[0], '#');               /* untouched on success */
}

static void test_validate_object_accepts_only_objects(void **state)
{
    (void)state;
    char err[160];
    assert_int_equal(ar_json_validate_object("{}", 2, err, sizeof err), 0);
    assert_int_equal(ar_json_validate_object(" {\"a\":[1]} ", 11, err, sizeof err), 0);
    static const char *const others[] = { "[]", "1", "\"x\"", "null", "true", " [{}]" };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        assert_int_equal(ar_json_validate_object(others[i], strlen(others[i]), err, sizeof err), -1);
        assert_non_null(strstr(err, "expected a JSON object at byte"));
        assert_int_equal(ar_json_validate(others[i], strlen(others[i]), NULL, 0), 0);
    }
    assert_int_equal(ar_json_validate_object(" [1]", 4, err, sizeof err), -1);
    assert_string_equal(err, "expected a JSON object at byte 1");
    assert_int_equal(ar_json_validate_object("", 0, err, sizeof err), -1);
    assert_string_equal(err, "empty input");
    assert_int_equal(ar_json_validate_object("{\"a\":1e400}", 11, err, sizeof err), -1);
    assert_string_equal(err, "number out of range (overflows a double) at byte 5");
    assert_int_equal(ar_json_validate_object("{} {}", 5, err, sizeof err), -1);
    assert_string_equal(err, "trailing characters at byte 3");
}

/* ---- UTF-8 helpers ------------------------------------------------------ */

static void test_utf8_valid_accepts_well_formed_text(void **state)
{
    (void)state;
    static const char ok[] = "plain ascii \x7f\x01 caf\xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x98\x80 "
                             "\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xF4\x8F\xBF\xBF";
    assert_int_equal(ar_utf8_valid(ok, sizeof ok - 1), 1);
    assert_int_equal(ar_utf8_valid("", 0), 1);
    assert_int_equal(ar_utf8_valid(NULL, 0), 1);
    assert_int_equal(ar_utf8_valid("a\0b", 3), 1);   /* NUL is valid UTF-8 */
}

static void test_utf8_valid_refuses_each_error_class(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\x80", "abc\xBF", "\xC0\x80", "\xC1\xBF", "\xE0\x9F\xBF", "\xF0\x8F\xBF\xBF",
        "\xED\xA0\x80", "\xED\xBF\xBF", "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFF",
        "\xC3", "\xE2\x82", "\xF0\x9F\x98", "\xE2\x82\x41", "\xF8\x88\x80\x80\x80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (ar_utf8_valid(bad[i], strlen(bad[i])) != 0) {
            print_error("case %zu accepted\n", i);
            fail();
        }
    }
    /* An error after a long ASCII run, at each alignment. */
    char buf[40];
    for (size_t pos = 0; pos < 24; pos++) {
        memset(buf, 'a', sizeof buf);
        buf[pos] = (char)0x80;
        assert_int_equal(ar_utf8_valid(buf, sizeof buf), 0);
        buf[pos] = 'a';
        assert_int_equal(ar_utf8_valid(buf, sizeof buf), 1);
    }
}

/* Sanitizes `in` and checks the output equals `want`. */
static void expect_sanitized(const char *in, size_t n, const char *want, size_t wn)
{
    char *out = malloc(3 * n + 1);
    assert_non_null(out);
    size_t got = ar_utf8_sanitize(out, in, n);
    assert_int_equal(got, wn);
    assert_memory_equal(out, want, wn);
    free(out);
}

#define SANITIZED(in, want) expect_sanitized((in), sizeof(in) - 1, (want), sizeof(want) - 1)
#define FFFD "\xEF\xBF\xBD"

static void test_utf8_sanitize_copies_valid_text_unchanged(void **state)
{
    (void)state;
    SANITIZED("", "");
    SANITIZED("hello", "hello");
    SANITIZED("caf\xC3\xA9 \xF0\x9F\x98\x80 a\0b", "caf\xC3\xA9 \xF0\x9F\x98\x80 a\0b");
    SANITIZED(FFFD, FFFD);
}

static void test_utf8_sanitize_replaces_each_maximal_invalid_subpart(void **state)
{
    (void)state;
    /* The example of the Unicode Standard, chapter 3 (U+FFFD substitution). */
    SANITIZED("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64",
              "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d");
    SANITIZED("\xED\xA0\x80", FFFD FFFD FFFD);   /* a surrogate: no valid prefix */
    SANITIZED("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD);
    SANITIZED("\xC0\xAF", FFFD FFFD);
    SANITIZED("x\xE2\x82", "x" FFFD);            /* truncated at the end */
    SANITIZED("\xE2\x82\x41", FFFD "A");
    SANITIZED("\xF0\x9F\x98", FFFD);
    SANITIZED("\xFF\xFE", FFFD FFFD);
    SANITIZED("\x80\x80\x80", FFFD FFFD FFFD);   /* worst case: 3 bytes per byte */
}

static int contains_fffd(const char *s, size_t n)
{
    for (size_t i = 0; i + 3 <= n; i++)
        if (memcmp(s + i, FFFD, 3) == 0)
            return 1;
    return 0;
}

static void test_utf8_sanitize_output_is_always_valid(void **state)
{
    (void)state;
    unsigned char in[64];
    char out[3 * sizeof in];
    for (int i = 0; i < 100000; i++) {
        size_t n = rng() % sizeof in;
        for (size_t k = 0; k < n; k++)
            in[k] = (unsigned char)(rng() % 2 ? 0x80 + rng() % 0x80 : rng() % 0x100);
        size_t got = ar_utf8_sanitize(out, (char *)in, n);
        assert_true(got <= 3 * n);
        assert_int_equal(ar_utf8_valid(out, got), 1);
        if (reference_utf8_valid(in, n)) {
            assert_int_equal(got, n);
            assert_memory_equal(out, in, n);
        } else {
            assert_true(contains_fffd(out, got));
        }
    }
}

/* ---- the export's number writer ---------------------------------------- */

static int into_text(void *ud, const char *data, size_t len)
{
    char *out = ud;
    size_t n = strlen(out);
    assert_true(n + len < 128);
    memcpy(out + n, data, len);
    out[n + len] = '\0';
    return 0;
}

/* What ar_jsonw_int or (nanos) ar_jsonw_nanos writes for v. */
static void jsonw_number(char *out, int nanos, int64_t v)
{
    ar_jsonw w;
    ar_err err;
    out[0] = '\0';
    ar_jsonw_init(&w, &ar_default_allocator, into_text, out, &err);
    if (nanos)
        ar_jsonw_nanos(&w, v);
    else
        ar_jsonw_int(&w, v);
    assert_int_equal(ar_jsonw_flush(&w), AR_OK);
    ar_jsonw_release(&w);
}

static void test_the_export_writes_integers_and_nano_units_exactly(void **state)
{
    (void)state;
    static const struct { int nanos; int64_t v; const char *text; } cases[] = {
        { 0, 0, "0" }, { 0, 7, "7" }, { 0, -1, "-1" }, { 0, 1234567890123, "1234567890123" },
        { 0, INT64_MAX, "9223372036854775807" }, { 0, INT64_MIN, "-9223372036854775808" },
        { 1, 0, "0.0" }, { 1, 1, "0.000000001" }, { 1, 100, "0.0000001" }, { 1, 1500000000, "1.5" },
        { 1, 3000000000, "3.0" }, { 1, -2500000000, "-2.5" }, { 1, -1, "-0.000000001" },
        { 1, 123456789012, "123.456789012" }, { 1, 1000000001, "1.000000001" },
        { 1, INT64_MAX, "9223372036.854775807" }, { 1, INT64_MIN, "-9223372036.854775808" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[128];
        jsonw_number(out, cases[i].nanos, cases[i].v);
        if (strcmp(out, cases[i].text) != 0) {
            print_error("%s(%lld): got %s, want %s\n", cases[i].nanos ? "nanos" : "int", (long long)cases[i].v,
                        out, cases[i].text);
            fail();
        }
    }
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_the_export_writes_integers_and_nano_units_exactly),
    cmocka_unit_test(test_scalars_at_top_level_are_accepted),
    cmocka_unit_test(test_containers_and_nesting_are_accepted),
    cmocka_unit_test(test_surrounding_whitespace_is_accepted),
    cmocka_unit_test(test_non_json_whitespace_is_refused),
    cmocka_unit_test(test_empty_input_is_refused),
    cmocka_unit_test(test_trailing_characters_are_refused),
    cmocka_unit_test(test_bad_separators_are_refused),
    cmocka_unit_test(test_mismatched_brackets_are_refused),
    cmocka_unit_test(test_unterminated_input_is_refused),
    cmocka_unit_test(test_literals_must_be_exact),
    cmocka_unit_test(test_nan_and_infinity_are_refused),
    cmocka_unit_test(test_the_length_bounds_the_text_not_a_nul),
    cmocka_unit_test(test_every_truncation_of_a_document_is_refused),
    cmocka_unit_test(test_well_formed_numbers_are_accepted),
    cmocka_unit_test(test_leading_zeros_are_refused),
    cmocka_unit_test(test_malformed_numbers_are_refused),
    cmocka_unit_test(test_integer_2_53_is_accepted),
    cmocka_unit_test(test_integer_beyond_2_53_is_refused),
    cmocka_unit_test(test_large_numbers_with_fraction_or_exponent_are_accepted),
    cmocka_unit_test(test_numbers_overflowing_a_double_are_refused),
    cmocka_unit_test(test_overflow_boundary_is_exact_for_long_literals),
    cmocka_unit_test(test_finiteness_agrees_with_strtod),
    cmocka_unit_test(test_valid_escapes_are_accepted),
    cmocka_unit_test(test_bad_escapes_are_refused),
    cmocka_unit_test(test_lone_surrogate_escapes_are_refused),
    cmocka_unit_test(test_control_characters_in_strings_are_refused),
    cmocka_unit_test(test_raw_utf8_in_strings_is_accepted),
    cmocka_unit_test(test_invalid_utf8_in_strings_is_refused),
    cmocka_unit_test(test_invalid_utf8_outside_strings_is_refused),
    cmocka_unit_test(test_utf8_in_strings_matches_the_reference_decoder),
    cmocka_unit_test(test_string_fast_path_sees_special_bytes_at_every_position),
    cmocka_unit_test(test_strings_agree_with_utf8_valid_on_random_bytes),
    cmocka_unit_test(test_large_string_value_is_accepted),
    cmocka_unit_test(test_nesting_of_512_is_accepted),
    cmocka_unit_test(test_nesting_of_513_is_refused),
    cmocka_unit_test(test_depth_is_released_when_containers_close),
    cmocka_unit_test(test_deep_mixed_nesting_checks_each_closing_bracket),
    cmocka_unit_test(test_error_messages_name_the_problem_and_offset),
    cmocka_unit_test(test_error_buffer_is_optional_and_bounded),
    cmocka_unit_test(test_validate_object_accepts_only_objects),
    cmocka_unit_test(test_utf8_valid_accepts_well_formed_text),
    cmocka_unit_test(test_utf8_valid_refuses_each_error_class),
    cmocka_unit_test(test_utf8_sanitize_copies_valid_text_unchanged),
    cmocka_unit_test(test_utf8_sanitize_replaces_each_maximal_invalid_subpart),
    cmocka_unit_test(test_utf8_sanitize_output_is_always_valid),
};

TEST_GROUP(json_group, "json", tests);
