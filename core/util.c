/* util.c -- errors, memory, arenas, ids and time for the core. */
#include "internal.h"
#include "json.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- codes and errors --------------------------------------------------- */

const char *ar_code_name(int code)
{
    static const char *const names[] = {
        "OK", "EMISUSE", "EJSON", "EBUSY", "EIO", "EFULL", "ECORRUPT", "ESTATE",
        "ENOTFOUND", "EPERM", "ENOMEM", "EBUDGET", "EVERSION", "ECALLBACK"
    };
    if (code < 0 || (size_t)code >= sizeof names / sizeof names[0])
        return "EUNKNOWN";
    return names[code];
}

int ar_fail(ar_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void ar_err_clear(ar_err *err)
{
    err->code = AR_OK;
    err->msg[0] = '\0';
}

/* ---- memory ------------------------------------------------------------- */

static void *std_malloc(void *ud, size_t n) { (void)ud; return malloc(n); }
static void *std_realloc(void *ud, void *p, size_t n) { (void)ud; return realloc(p, n); }
static void std_free(void *ud, void *p) { (void)ud; free(p); }

const ar_allocator ar_default_allocator = { std_malloc, std_realloc, std_free, NULL };

void *ar_mem_alloc(const ar_allocator *a, size_t n)
{
    return a->malloc(a->ud, n ? n : 1);
}

void *ar_mem_realloc(const ar_allocator *a, void *p, size_t n)
{
    return a->realloc(a->ud, p, n ? n : 1);
}

void ar_mem_free(const ar_allocator *a, void *p)
{
    if (p)
        a->free(a->ud, p);
}

/* Strings handed out carry their allocator in a header so ar_free needs no store. */
typedef struct out_header {
    ar_allocator alloc;
    max_align_t align;
} out_header;

void *ar_out_alloc(const ar_allocator *a, size_t n)
{
    out_header *h = ar_mem_alloc(a, sizeof *h + n);
    if (!h)
        return NULL;
    h->alloc = *a;
    return h + 1;
}

char *ar_out_strdup(const ar_allocator *a, const char *s, size_t n)
{
    char *p = ar_out_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void ar_free(void *ptr)
{
    if (!ptr)
        return;
    out_header *h = (out_header *)ptr - 1;
    ar_allocator a = h->alloc;
    a.free(a.ud, h);
}

/* ---- arenas ------------------------------------------------------------- */

struct ar_arena_block {
    ar_arena_block *next;
    size_t used, cap;
    max_align_t data[];
};

void *ar_arena_alloc(ar_arena *arena, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    ar_arena_block *b = arena->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 8192 ? n : 8192;
        b = ar_mem_alloc(arena->alloc, sizeof *b + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        if (arena->head && n > 8192) {
            /* keep filling the current block: link the big one behind it */
            b->next = arena->head->next;
            arena->head->next = b;
            b->used = n;
            return b->data;
        }
        b->next = arena->head;
        arena->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

char *ar_arena_strndup(ar_arena *arena, const char *s, size_t n, int *failed)
{
    if (!s)
        return NULL;
    char *p = ar_arena_alloc(arena, n + 1);
    if (!p) {
        *failed = 1;
        return NULL;
    }
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *ar_arena_strdup(ar_arena *arena, const char *s, int *failed)
{
    return s ? ar_arena_strndup(arena, s, strlen(s), failed) : NULL;
}

void ar_arena_release(ar_arena *arena)
{
    ar_arena_block *b = arena->head;
    while (b) {
        ar_arena_block *next = b->next;
        ar_mem_free(arena->alloc, b);
        b = next;
    }
    arena->head = NULL;
}

ar_record_box *ar_record_box_new(const ar_allocator *a)
{
    ar_record_box *box = ar_mem_alloc(a, sizeof *box);
    if (!box)
        return NULL;
    box->alloc = *a;
    box->arena.alloc = &box->alloc;
    box->arena.head = NULL;
    box->cost_nanos = 0;
    ar_record init = AR_RECORD_INIT;
    box->rec = init;
    return box;
}

void ar_record_free(ar_record *record)
{
    if (!record)
        return;
    ar_record_box *box = (ar_record_box *)((char *)record - offsetof(ar_record_box, rec));
    ar_allocator a = box->alloc;
    ar_arena_release(&box->arena);
    a.free(a.ud, box);
}

void ar_records_free(ar_record **records, size_t n)
{
    if (!records)
        return;
    for (size_t i = 0; i < n; i++)
        ar_record_free(records[i]);
    ar_free(records); /* allocated by ar_out_alloc */
}

/* ---- time and ids ------------------------------------------------------- */

int64_t ar_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* The process-wide state, both atomic so stores in different threads never
 * wait on each other: the clock gives runs begun now ticks in creation order
 * across every store of the process (SPEC 6); the sequence orders records
 * written with a time of their own within their millisecond. */
static _Atomic uint64_t id_clock;
static _Atomic uint64_t id_written_seq;

/* A tick is (milliseconds << 16) | a 16-bit sequence. An id is the tick and
 * 64 random bits in 26 base32 digits, so ids sort like their ticks, and the
 * tick is the run's key in the store. */
int64_t ar_id_new(ar_store *store, int64_t ms, int written, int64_t min_tick, char out[AR_ID_LEN + 1])
{
    if (store->prng == 0) {
        uint64_t seed = (uint64_t)ar_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)store;
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            uint64_t r;
            if (read(fd, &r, sizeof r) == (ssize_t)sizeof r)
                seed ^= r;
            close(fd);
        }
        store->prng = seed | 1;
    }
    uint64_t t = (ms < 0 ? 0 : (uint64_t)ms) & AR_ID_MAX_MS;
    uint64_t tick;
    if (written) {
        /* a record's own time never moves the clock of runs begun now */
        tick = (t << 16) | (atomic_fetch_add_explicit(&id_written_seq, 1, memory_order_relaxed) & 0xffff);
    } else {
        uint64_t want = t << 16, last = atomic_load_explicit(&id_clock, memory_order_relaxed);
        /* a key the store asked for moves the clock on, so later runs follow it too */
        uint64_t floor = min_tick > 0 ? (uint64_t)min_tick : 0;
        if (floor > ((uint64_t)AR_ID_MAX_MS << 16))
            floor = (uint64_t)AR_ID_MAX_MS << 16;
        if (want < floor)
            want = floor;
        do
            tick = want > last ? want : last + 1;
        while (!atomic_compare_exchange_weak_explicit(&id_clock, &last, tick,
                                                      memory_order_relaxed, memory_order_relaxed));
    }
    /* 128 bits: tick (64) | random (64); 26 base32 digits, the top 2 bits zero */
    uint64_t hi64 = tick;
    uint64_t lo64 = splitmix64(&store->prng);
    for (int i = AR_ID_LEN - 1; i >= 0; i--) {
        out[i] = crockford[lo64 & 31];
        lo64 = (lo64 >> 5) | ((hi64 & 31) << 59);
        hi64 >>= 5;
    }
    out[AR_ID_LEN] = '\0';
    return (int64_t)tick;
}

int64_t ar_id_key_of_ms(int64_t ms)
{
    if (ms <= 0)
        return 0;
    if ((uint64_t)ms > AR_ID_MAX_MS)
        return INT64_MAX;
    return ms << 16;
}

int64_t ar_id_tick(const char *id)
{
    if (!ar_id_valid(id))
        return -1;
    uint64_t hi = 0, lo = 0;
    for (size_t i = 0; i < AR_ID_LEN; i++) {
        uint64_t d = (uint64_t)(strchr(crockford, id[i]) - crockford);
        hi = (hi << 5) | (lo >> 59);
        lo = (lo << 5) | d;
    }
    return hi > (uint64_t)INT64_MAX ? -1 : (int64_t)hi;
}

int ar_id_valid(const char *id)
{
    if (!id || strlen(id) != AR_ID_LEN)
        return 0;
    for (size_t i = 0; i < AR_ID_LEN; i++)
        if (!strchr(crockford, id[i]) || id[i] == '\0')
            return 0;
    return id[0] <= '7';
}

/* ---- field checks ------------------------------------------------------- */

/* The one bound on a value's size (see AR_VALUE_MAX), for every field. */
static int size_check(ar_err *err, const char *field, size_t n)
{
    if (n > AR_VALUE_MAX)
        return ar_fail(err, AR_EJSON, "%s is %zu bytes, more than a store holds in one value (%zu)",
                       field, n, AR_VALUE_MAX);
    return AR_OK;
}

int ar_text_check(ar_err *err, const char *field, const char *s, int required, int nonempty)
{
    if (!s)
        return required ? ar_fail(err, AR_EMISUSE, "%s is required", field) : AR_OK;
    size_t n = strlen(s);
    if (nonempty && n == 0)
        return ar_fail(err, AR_EMISUSE, "%s must not be empty", field);
    if (!ar_utf8_valid(s, n))
        return ar_fail(err, AR_EMISUSE, "%s is not valid UTF-8", field);
    return size_check(err, field, n);
}

int ar_content_check(ar_err *err, const char *field, const char *s, size_t len)
{
    int rc = size_check(err, field, len);
    if (rc == AR_OK && !ar_utf8_valid(s, len))
        rc = ar_fail(err, AR_EMISUSE, "%s is not valid UTF-8", field);
    return rc;
}

/* Room for " [cut from N bytes]" with any size_t N. */
#define CUT_MARK_ROOM 48

size_t ar_error_room(const char *error, size_t max)
{
    size_t n = strlen(error);
    return 3 * (n < max ? n : max) + CUT_MARK_ROOM + 1;
}

size_t ar_error_text(char *dst, const char *error, size_t max)
{
    size_t n = strlen(error);
    size_t take = n < max ? n : max;
    size_t len = ar_utf8_sanitize(dst, error, take);
    if (len <= max && take == n) {
        dst[len] = '\0';
        return len;
    }
    /* keep whole characters only: back off continuation bytes */
    size_t keep = max > CUT_MARK_ROOM ? max - CUT_MARK_ROOM : 0;
    if (keep >= len)
        keep = len;
    else
        while (keep > 0 && ((unsigned char)dst[keep] & 0xC0) == 0x80)
            keep--;
    int w = snprintf(dst + keep, CUT_MARK_ROOM + 1, " [cut from %zu bytes]", n);
    return keep + (w > 0 ? (size_t)w : 0);
}

int ar_json_check(ar_err *err, const char *field, const char *json, size_t len, int object)
{
    int rc = size_check(err, field, len);
    if (rc)
        return rc;
    char why[160];
    int bad = object ? ar_json_validate_object(json, len, why, sizeof why)
                     : ar_json_validate(json, len, why, sizeof why);
    if (bad)
        return ar_fail(err, AR_EJSON, "%s: %s", field, why);
    return AR_OK;
}

/* ---- cost and budgets --------------------------------------------------- */

#define NANOS_PER_UNIT INT64_C(1000000000)

int ar_cost_to_nanos(int64_t *out, double cost)
{
    if (!(cost >= 0.0 && cost <= AR_MAX_COST))
        return AR_EMISUSE;
    /* whole units and the fraction apart are exact (cost < 2^63), so the one
     * rounding left is the fraction's scaling, far below half a nano-unit */
    int64_t whole = (int64_t)cost;
    double frac = cost - (double)whole;
    *out = whole * NANOS_PER_UNIT + (int64_t)(frac * 1e9 + 0.5);
    return AR_OK;
}

double ar_nanos_to_cost(int64_t nanos)
{
    /* below 2^53 the integer is exact as a double: one correctly rounded
     * division gives the double nearest the nine-decimal value */
    if (nanos >= -AR_MAX_COUNT && nanos <= AR_MAX_COUNT)
        return (double)nanos / 1e9;
    return (double)(nanos / NANOS_PER_UNIT) + (double)(nanos % NANOS_PER_UNIT) / 1e9;
}

static const char *const limit_names[] = {
    "max_steps", "max_input_tokens", "max_output_tokens", "max_tokens", "max_cost", "max_seconds"
};

const char *ar_limit_name(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof limit_names / sizeof limit_names[0]; i++)
        if (strcmp(name, limit_names[i]) == 0)
            return limit_names[i];
    return NULL;
}

#define MAX_SECONDS 1e12

/* A limit above what a total can reach would never trigger; above 2^53 it
 * would not even read back exactly from the stored budget. */
int ar_budget_check(ar_err *err, const ar_budget *b)
{
    const int64_t ints[] = { b->max_steps, b->max_input_tokens, b->max_output_tokens, b->max_tokens };
    for (size_t i = 0; i < 4; i++)
        if (ints[i] != AR_NO_LIMIT && !(ints[i] >= 0 && ints[i] <= AR_MAX_COUNT))
            return ar_fail(err, AR_EMISUSE, "budget.%s must be an integer in 0..2^53", limit_names[i]);
    if (b->max_cost != AR_NO_LIMIT && !(b->max_cost >= 0.0 && b->max_cost <= AR_MAX_COST))
        return ar_fail(err, AR_EMISUSE, "budget.max_cost must be a number in 0..9e9");
    if (b->max_seconds != AR_NO_LIMIT && !(b->max_seconds >= 0.0 && b->max_seconds <= MAX_SECONDS))
        return ar_fail(err, AR_EMISUSE, "budget.max_seconds must be a number in 0..1e12");
    return AR_OK;
}

size_t ar_budget_json(char *buf, size_t cap, const ar_budget *b)
{
    size_t n = 0;
    int first = 1;
#define PUT(...) do { int w_ = snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__); \
                      if (w_ > 0) n += (size_t)w_; } while (0)
    PUT("{");
    const int64_t ints[] = { b->max_steps, b->max_input_tokens, b->max_output_tokens, b->max_tokens };
    for (size_t i = 0; i < 4; i++) {
        if (ints[i] >= 0) {
            PUT("%s\"%s\":%lld", first ? "" : ",", limit_names[i], (long long)ints[i]);
            first = 0;
        }
    }
    if (b->max_cost >= 0) {
        /* one stored past today's range (schema 1 allowed it) is kept as it is */
        int64_t m = 0;
        double cost = ar_cost_to_nanos(&m, b->max_cost) == AR_OK ? ar_nanos_to_cost(m) : b->max_cost;
        PUT("%s\"max_cost\":%.17g", first ? "" : ",", cost);
        first = 0;
    }
    if (b->max_seconds >= 0)
        PUT("%s\"max_seconds\":%.17g", first ? "" : ",", b->max_seconds);
    PUT("}");
#undef PUT
    return n;
}

int ar_budget_reached(ar_exhaustion *out, const ar_budget *b, const ar_totals *t, int64_t elapsed_ms)
{
    ar_exhaustion e = { NULL, 0, 0 };
    int64_t total = t->input_tokens + t->output_tokens;
    /* a max_cost past what a total can reach (a stored schema-1 budget) is never reached */
    int64_t max_cost_nanos = 0;
    int cost_limited = b->max_cost >= 0 && ar_cost_to_nanos(&max_cost_nanos, b->max_cost) == AR_OK;
    if (b->max_steps >= 0 && t->iterations >= b->max_steps)
        e = (ar_exhaustion){ "max_steps", (double)b->max_steps, (double)t->iterations };
    else if (b->max_input_tokens >= 0 && t->input_tokens >= b->max_input_tokens)
        e = (ar_exhaustion){ "max_input_tokens", (double)b->max_input_tokens, (double)t->input_tokens };
    else if (b->max_output_tokens >= 0 && t->output_tokens >= b->max_output_tokens)
        e = (ar_exhaustion){ "max_output_tokens", (double)b->max_output_tokens, (double)t->output_tokens };
    else if (b->max_tokens >= 0 && total >= b->max_tokens)
        e = (ar_exhaustion){ "max_tokens", (double)b->max_tokens, (double)total };
    else if (cost_limited && t->cost_nanos >= max_cost_nanos)
        e = (ar_exhaustion){ "max_cost", ar_nanos_to_cost(max_cost_nanos), ar_nanos_to_cost(t->cost_nanos) };
    else if (b->max_seconds >= 0 && (double)elapsed_ms / 1000.0 >= b->max_seconds)
        e = (ar_exhaustion){ "max_seconds", b->max_seconds, (double)elapsed_ms / 1000.0 };
    if (!e.limit)
        return AR_OK;
    if (out)
        *out = e;
    return AR_EBUDGET;
}
