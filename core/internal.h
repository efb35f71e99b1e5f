/* internal.h -- the core's shared structures and helpers (not installed). */
#ifndef AR_INTERNAL_H
#define AR_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>

#include "agentrun.h"
#include "backend.h"

#define AR_ID_LEN 26
#define AR_ERRMSG_MAX 512
#define AR_COUNTER_NAME_MAX 64

/* An error slot: the code and message of the last failing call. */
typedef struct ar_err {
    int code;
    char msg[AR_ERRMSG_MAX];
} ar_err;

/* Sets the slot and returns `code`, so failures read `return ar_fail(...)`. */
int ar_fail(ar_err *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void ar_err_clear(ar_err *err);

/* ---- memory ------------------------------------------------------------- */

void *ar_mem_alloc(const ar_allocator *a, size_t n);
void *ar_mem_realloc(const ar_allocator *a, void *p, size_t n);
void ar_mem_free(const ar_allocator *a, void *p);
extern const ar_allocator ar_default_allocator;

/* A string handed to the caller (freed with ar_free): it carries its allocator. */
char *ar_out_strdup(const ar_allocator *a, const char *s, size_t n);
/* Memory handed to the caller (freed with ar_free). */
void *ar_out_alloc(const ar_allocator *a, size_t n);

/* An arena: many small allocations released together (records, listings). */
typedef struct ar_arena_block ar_arena_block;
typedef struct ar_arena {
    const ar_allocator *alloc;
    ar_arena_block *head;
} ar_arena;
void *ar_arena_alloc(ar_arena *arena, size_t n);
/* Copies s[0..n) plus a NUL; NULL stays NULL. Sets *failed on failure. */
char *ar_arena_strndup(ar_arena *arena, const char *s, size_t n, int *failed);
char *ar_arena_strdup(ar_arena *arena, const char *s, int *failed);
void ar_arena_release(ar_arena *arena);

/* A record owned by the library: the public record plus its arena. */
typedef struct ar_record_box {
    ar_allocator alloc;
    ar_arena arena;
    int64_t cost_nanos;       /* rec.usage.cost exactly, as stored (a double may not hold it) */
    ar_record rec;
} ar_record_box;
ar_record_box *ar_record_box_new(const ar_allocator *a);

/* ---- usage counters ----------------------------------------------------- */

/* Sums of a run: the named extra counters live in a small sorted array. */
typedef struct ar_totals {
    int64_t iterations;
    int64_t input_tokens, output_tokens;
    int64_t cost_nanos;
    size_t n_extra, cap_extra;
    ar_counter *extra;        /* names owned (allocated) */
} ar_totals;

void ar_totals_free(const ar_allocator *a, ar_totals *t);
/* AR_OK when adding one step's usage and cost to t keeps every total within
 * its limit (AR_MAX_COUNT, AR_MAX_COST); AR_EMISUSE otherwise, with a message
 * naming `what` (e.g. "step") and the total. */
int ar_totals_fit(ar_err *err, const char *what, const ar_totals *t, const ar_usage *u, int64_t cost_nanos);
/* Adds one step's usage into t (copying new counter names). AR_ENOMEM on
 * failure, t unchanged. Callers check ar_totals_fit first. */
int ar_totals_add(const ar_allocator *a, ar_totals *t, const ar_usage *u, int64_t cost_nanos);
/* Copies src into *dst (deep). */
int ar_totals_copy(const ar_allocator *a, ar_totals *dst, const ar_totals *src);
/* Writes extra counters as a JSON object into buf (grown); NULL/0 when none. */
int ar_counters_json(const ar_allocator *a, char **buf, size_t *cap, size_t *len,
                     const ar_counter *c, size_t n);
/* Parses a counters object into an empty t. AR_ECORRUPT for a value outside
 * 0..2^63 or a name given twice; AR_ENOMEM. */
int ar_counters_parse(const ar_allocator *a, ar_totals *t, const char *json, size_t len);

/* Checks usage for misuse (counts outside 0..AR_MAX_COUNT, input + output
 * past it, total mismatch, bad counter names); messages name `what.field`. */
int ar_usage_check(ar_err *err, const char *what, const ar_usage *u);

/* The one conversion of cost between the API's doubles and the stored
 * integer nano-units: AR_EMISUSE for NaN and anything outside 0..AR_MAX_COST. */
int ar_cost_to_nanos(int64_t *out, double cost);
/* The double nearest nanos * 1e-9. */
double ar_nanos_to_cost(int64_t nanos);

/* Budget <-> JSON text ({"max_steps":10,...}); "{}" when unlimited. */
int ar_budget_check(ar_err *err, const ar_budget *b);
size_t ar_budget_json(char *buf, size_t cap, const ar_budget *b);
/* Unknown limits are ignored; AR_ECORRUPT when the text is not an object or
 * a known limit is not a non-negative number; AR_ENOMEM when memory ran out. */
int ar_budget_parse(ar_budget *out, const char *json, size_t len);

/* Checks a limit against totals at `elapsed_ms`; fills *out on AR_EBUDGET. */
int ar_budget_reached(ar_exhaustion *out, const ar_budget *b, const ar_totals *t, int64_t elapsed_ms);
/* Normalises a limit name to its static text; NULL when unknown. */
const char *ar_limit_name(const char *name);

/* ---- store and runs ----------------------------------------------------- */

struct ar_store {
    ar_allocator alloc;
    const ar_backend *be;           /* the backend serving the location */
    ar_db *db;                      /* its open store; every call goes through be */
    ar_err err;
    int readonly;
    struct ar_run *runs;            /* open run handles, to finish on close */
    struct ar_step_iter *iters;     /* open step iterators, to detach on close */
    uint64_t prng;                  /* splitmix64 state: the random half of ids */
    int scanning;                   /* a retention scan (and so its rule) is running */
    int close_deferred;             /* ar_store_close was called during the scan */
};

struct ar_run {
    ar_store *store;                /* NULL once the store is closed */
    struct ar_run *next, *prev;
    ar_allocator alloc;
    int64_t key;                    /* the run's key in the store (its id's tick) */
    int64_t owner;                  /* the run's ownership epoch this handle holds */
    char id[AR_ID_LEN + 1];
    ar_status status;
    char lost[AR_ERRMSG_MAX];       /* why the run is no longer this handle's; "" while it is */
    ar_budget budget;
    ar_totals totals;
    int64_t created_at;
    int64_t elapsed_base_ms;        /* active time before this handle */
    int64_t opened_at;              /* when this handle started */
    ar_err err;
    ar_usage usage_view;
    char *scratch; size_t scratch_cap;   /* counters JSON */
    char *scratch2; size_t scratch2_cap;
    int close_deferred;             /* closed during a retention scan: finished after it */
    char *response;                 /* the answer a resumed waiting run got (JSON text), or NULL */
    int unsure;                     /* the last step's write failed after it may have reached the
                                       store: whether it is there is learnt before the next write */
    int finish_unsure;              /* a finish failed the same way: a retry that finds the run ended
                                       as it asked succeeds */
    struct ar_intent_map *intents;  /* the run's intent keys (intent.c); NULL until first used */
    int intents_loaded;             /* the map holds every key of the run (a begun run has none) */
};

/* The keys of a run's intents (intent.c). */
typedef struct ar_intent_map ar_intent_map;
void ar_intent_map_free(const ar_allocator *a, ar_intent_map *m);
/* AR_OK when the run can take a write (`what` names it; NULL for a read
 * such as a budget check); AR_ESTATE with the reason otherwise (run.c). A
 * step left unsure is not looked at (see ar_run_unsure_settle). */
int ar_run_writable(ar_run *run, const char *what);
/* Learns whether the step whose write failed unsure (run->unsure) is in
 * the store, and takes it into the run when it is; *same tells whether it
 * is `retry` (content of retry_len bytes, no usage), the step about to be
 * recorded. AR_OK with nothing done when no step is unsure (run.c). */
int ar_run_unsure_settle(ar_run *run, const ar_step *retry, size_t retry_len, int *same);

/* AR_OK when the store is open; AR_EMISUSE otherwise (NULL, or it failed to open). */
int ar_store_usable(ar_store *store);
/* AR_OK when an option struct's version is `known`; else AR_EMISUSE naming
 * the struct `type` and its initialiser `init` (implemented in opts.c). */
int ar_opts_version_check(ar_err *err, const char *type, unsigned int version, unsigned int known,
                          const char *init);
/* AR_OK when `name` can name a PostgreSQL schema of a store: an identifier
 * [A-Za-z_][A-Za-z0-9_]* of at most AR_SCHEMA_NAME_MAX bytes; AR_EMISUSE
 * otherwise (implemented in opts.c). */
#define AR_SCHEMA_NAME_MAX 63
int ar_schema_name_check(ar_err *err, const char *name);
/* AR_OK when the store is open and may be written: AR_ESTATE while a
 * retention scan runs on it, since a rule may read its store but not write
 * to it (`what` names the refused call in the message). */
int ar_store_writable(ar_store *store, const char *what);
/* The same refusal for a call made on something of the store (a run):
 * AR_OK when no retention scan runs on `store`, else AR_ESTATE in `err`. */
int ar_store_scan_check(const ar_store *store, struct ar_err *err, const char *what);
/* Closes the run handles whose ar_run_close came during a retention scan
 * (implemented in run.c). */
void ar_store_close_deferred_runs(ar_store *store);
/* Detaches the store's open step iterators: their next call fails with
 * AR_ESTATE and closing them still frees them (implemented in read.c). */
void ar_store_detach_iters(ar_store *store);

/* Whether a location names a PostgreSQL server (a postgresql:// or
 * postgres:// URL, or a libpq key=value string) rather than a file. */
int ar_location_is_postgres(const char *location);

/* ---- rows to records (rows.c): every value a backend hands back is
 * checked here, once. A damaged value fails with AR_ECORRUPT naming its row
 * ("run <id>", "run <id> step N", "event N") and field; AR_ENOMEM when
 * memory ran out. ---- */

/* Turns a run row into box->rec (strings in box's arena) and box->cost_nanos. */
int ar_row_to_record(const ar_db_run_row *row, ar_record_box *box, ar_err *err);
/* Turns a step row of run `run_id` into *out (strings in `arena`). */
int ar_row_to_step(const ar_db_step_row *row, const char *run_id, ar_arena *arena, ar_step *out, ar_err *err);
/* Turns an event row into *out (strings in `arena`). */
int ar_row_to_event(const ar_db_event_row *row, ar_arena *arena, ar_event *out, ar_err *err);
/* Checks a stored JSON text of `owner` (e.g. "run <id> checkpoint") named
 * `field`; SQL NULL passes. */
/* The field a damaged row's AR_ECORRUPT (as the conversions above word it)
 * names, into buf; 1 when err is such a failure, else 0 and buf "". */
int ar_row_damaged_field(const ar_err *err, char *buf, size_t cap);
int ar_row_json_check(ar_db_text t, const char *owner, const char *field, ar_err *err);
/* Checks a stored plain text (UTF-8, no NUL byte) and copies it into
 * `arena` as a C string (*out NULL for SQL NULL). */
int ar_row_text_copy(ar_db_text t, const char *owner, const char *field, ar_arena *arena, const char **out,
                     ar_err *err);
/* The public statistics from the backend's sums. */
void ar_stats_from_row(const ar_db_stats *in, ar_stats *out);

/* Loads run `id` (AR_ENOTFOUND when there is none) into box->rec; *key,
 * *elapsed_ms and *owner (each may be NULL) get the row's. */
int ar_store_load_run(ar_store *store, const char *id, ar_record_box *box, int64_t *key, int64_t *elapsed_ms,
                      int64_t *owner);
/* The key of run `id`: AR_OK, or AR_ENOTFOUND (err set) when there is none. */
int ar_store_run_key(ar_store *store, const char *id, int64_t *key);
/* Fetches up to `max` steps of run `key` (id `run_id`, for messages) from
 * seq `from` into `arena`: *out and *n (implemented in read.c). */
int ar_store_steps_fetch(ar_store *store, int64_t key, const char *run_id, int64_t from, size_t max,
                         ar_arena *arena, ar_step **out, size_t *n, ar_err *err);

/* The key of the intent a tool step settles (its content as ar_run_settle
 * writes it: {"intent":seq,"key":...,"result":...}), decoded into out (cap
 * bytes, at least the content's length + 1 to always fit): 1, or 0 when the
 * content is no such outcome (implemented in intent.c). */
int ar_intent_key_of(const char *content, size_t len, char *out, size_t cap);
int64_t ar_now_ms(void);
#define AR_ID_MAX_MS 0x7fffffffffffULL /* 47 bits of milliseconds: ticks stay positive */

/* Makes a run id and returns its tick, the run's key in the store. A run
 * begun now (`written` 0) takes the next tick of the process clock at `ms`
 * or later, and at `min_tick` or later (a key the backend asked for after a
 * conflict; 0 for none): its created_at is then tick >> 16. A record
 * written with its own created_at (`written` 1) keeps that millisecond
 * (min_tick is not used). */
int64_t ar_id_new(ar_store *store, int64_t ms, int written, int64_t min_tick, char out[AR_ID_LEN + 1]);
/* The smallest key of millisecond `ms` (keys are (created_at << 16) |
 * sequence): a time bound of a runs query as a key bound. 0 below 1,
 * INT64_MAX past the ids' range. */
int64_t ar_id_key_of_ms(int64_t ms);
/* The tick inside a well-formed id, or -1. */
int64_t ar_id_tick(const char *id);
int ar_id_valid(const char *id);

/* Validates a required/optional plain text field: UTF-8 without NUL
 * (AR_EMISUSE), at most AR_VALUE_MAX bytes (AR_EJSON). */
int ar_text_check(ar_err *err, const char *field, const char *s, int required, int nonempty);
/* Validates free text given with its length (event content): UTF-8, NUL
 * bytes allowed (AR_EMISUSE otherwise), at most AR_VALUE_MAX bytes (AR_EJSON). */
int ar_content_check(ar_err *err, const char *field, const char *s, size_t len);
/* Validates JSON text: AR_EJSON with the field name in the message, also
 * beyond AR_VALUE_MAX bytes. */
int ar_json_check(ar_err *err, const char *field, const char *json, size_t len, int object);

/* A failed run's error text as stored, which is never refused: invalid UTF-8
 * becomes U+FFFD, and text longer than `max` bytes (> 96) is cut at a
 * character boundary to end with " [cut from N bytes]" within `max`.
 * ar_error_text writes it, NUL-terminated, to dst, which holds
 * ar_error_room(error, max) bytes, and returns its length. */
size_t ar_error_room(const char *error, size_t max);
size_t ar_error_text(char *dst, const char *error, size_t max);

/* Validates an event as ar_event_append does and fills *row with it as it
 * is stored (content_len resolved, at defaulted to now). */
int ar_event_check(ar_err *err, const ar_event *event, ar_event *row);

/* Writes a whole record as ar_store_write does, and also a running one
 * (an export's, kept running as it was): *id gets its id. */
int ar_store_write_record(ar_store *store, const ar_record *record, int allow_running, char id[AR_ID_LEN + 1]);

/* Validates a step for ar_run_step / records. Sets *cost_nanos and *content_len. */
int ar_step_check(ar_err *err, const ar_step *s, int64_t *cost_nanos, size_t *content_len);

#endif
