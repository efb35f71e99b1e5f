/* agentrun.h -- record AI-agent runs durably in SQLite: the public C API. */
#ifndef AGENTRUN_H
#define AGENTRUN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the functions the shared library exports; everything else in it is
 * built with hidden visibility. A build may define AR_API itself. */
#ifndef AR_API
#if defined(__GNUC__) || defined(__clang__)
#define AR_API __attribute__((visibility("default")))
#else
#define AR_API
#endif
#endif

#define AR_VERSION "0.1.0"
#define AR_SCHEMA_VERSION 3

/*
 * Conventions
 * -----------
 * - Functions return an int code: AR_OK (0) or one of the AR_E... codes below.
 *   Out-parameters come first and are named `out`; on failure they are set to
 *   NULL / 0. What comes back through `**out` is owned by the caller and is
 *   released with the matching *_free / *_close function.
 * - Every failing call leaves a message on the handle it was made on
 *   (ar_store_errmsg, ar_run_errmsg); the message stays until the next failing
 *   call on that handle. No error is sticky: a later call works as soon as the
 *   cause is gone.
 * - JSON crosses the API as UTF-8 text with an explicit length (a length of
 *   AR_NUL_TERMINATED means strlen). It is validated here: bad JSON, invalid
 *   UTF-8, integers outside +-2^53, nesting deeper than 512, NaN/Infinity are
 *   AR_EJSON and nothing is stored. Valid JSON is stored byte for byte as given.
 * - Strings that are not JSON (agent, goal, kind, ...) must be valid UTF-8
 *   without NUL bytes (AR_EMISUSE otherwise). Event content, which has a
 *   length, keeps NUL bytes, as strings inside JSON do (as \u0000). A run's
 *   error text is never refused: invalid bytes are replaced by U+FFFD.
 * - Every value is at most AR_VALUE_MAX bytes (AR_EJSON otherwise; nothing is
 *   written).
 * - A value damaged by another program (JSON that is not valid, text that is
 *   not UTF-8, an unknown status) makes each read that meets it return
 *   AR_ECORRUPT, with a message naming the run (and step), checkpoint or
 *   event, and the field: "run <id>: stored metadata is damaged: ...".
 * - Times are integer milliseconds since the Unix epoch (UTC).
 * - Cost is kept exactly in integer nano-units (1e-9): a cost crossing the API
 *   as a double is rounded to the nearest nano-unit (half away from zero), and
 *   reads back as the double nearest the nine-decimal value, so 10,000 steps of
 *   0.0001 sum to exactly 1.0 and 0.1 + 0.2 reads back as 0.3.
 * - Limits of totals: a step's cost and a run's cost total are in
 *   0..AR_MAX_COST; token counts, counters and their run totals (input,
 *   output, input + output, each extra counter) are in 0..AR_MAX_COUNT, where
 *   every figure is exact. A step or record that would take a total past its
 *   limit is AR_EMISUSE and nothing is stored: totals never wrap.
 * - Destructors accept NULL. Two stores in two threads work independently;
 *   one store must not be used by two threads at once. The only process-wide
 *   state is two lock-free counters that keep run ids in creation order.
 */

enum {
    AR_OK = 0,
    AR_EMISUSE,   /* bad argument: NULL where required, unknown value, negative limit, closed handle */
    AR_EJSON,     /* a value is not valid JSON, or larger than the store holds */
    AR_EBUSY,     /* the file stayed locked past the busy timeout */
    AR_EIO,       /* the file system failed a read, write or sync */
    AR_EFULL,     /* the disk (or the store's size limit) is full */
    AR_ECORRUPT,  /* the file is damaged or not an agentrun store */
    AR_ESTATE,    /* the operation does not fit the run's state (e.g. step on a finished run) */
    AR_ENOTFOUND, /* no run with that id */
    AR_EPERM,     /* no permission (read-only store, file mode) */
    AR_ENOMEM,    /* an allocation failed */
    AR_EBUDGET,   /* ar_run_check: a budget limit is reached */
    AR_EVERSION,  /* the file was written by a newer agentrun (or an older one, opened read-only) */
    AR_ECALLBACK  /* a caller's callback asked to stop (retention rule) */
};

/* The code's name: "EBUSY", "EJSON", ... ("OK" for 0, "EUNKNOWN" otherwise). Static text. */
AR_API const char *ar_code_name(int code);

#define AR_NUL_TERMINATED ((size_t)-1)
#define AR_MAX_COST 9e9                          /* the largest cost and cost total */
#define AR_MAX_COUNT INT64_C(9007199254740992)   /* 2^53: the largest count and count total */

/* The largest value a store holds, in bytes: 64 MiB (67,108,864). It bounds
 * each JSON value (step content, output, checkpoint state, metadata) and each
 * text (goal, names, event content). A larger value is refused with AR_EJSON
 * and nothing is written, as is a row whose values together are more than
 * the backend holds (SQLite: 1,000,000,000 bytes, which values within this
 * bound never reach). A failed run's error text is never refused: longer
 * text is cut at a character boundary and ends with " [cut from N bytes]",
 * N the length given. */
#define AR_VALUE_MAX ((size_t)64 << 20)
#define AR_UNSET INT64_MIN /* "not given" for optional int64 fields */

/*
 * Option structs
 * --------------
 * The structs a caller fills to ask for something (ar_open_opts, ar_run_spec,
 * ar_run_query, ar_event_query, ar_retention, ar_event_retention) begin with
 * a `version` field, so that later releases can add fields without breaking
 * programs built against this header. Start each one from its _INIT macro or
 * its _init function, which set `version` and every default, then set the
 * fields wanted. A function given such a struct with a version it does not
 * know (0, from a zeroed struct, included) returns AR_EMISUSE and does nothing.
 * Each _init function fills *opts like the macro and returns AR_OK, or
 * AR_EMISUSE (leaving *opts untouched) for a NULL opts or an unknown version.
 */

/* ------------------------------------------------------------------------- */
/* Allocation                                                                */

/* A store may use the caller's allocator (tests use it to fail the Nth
 * allocation). All three functions must be given, or none. */
typedef struct ar_allocator {
    void *(*malloc)(void *ud, size_t size);
    void *(*realloc)(void *ud, void *ptr, size_t size);
    void (*free)(void *ud, void *ptr);
    void *ud;
} ar_allocator;

/* ------------------------------------------------------------------------- */
/* Store                                                                     */

typedef struct ar_store ar_store;

enum { AR_DURABILITY_FULL = 0, AR_DURABILITY_NORMAL = 1 };

/* Version 2 added `schema`; a version-1 struct (without it) is still accepted. */
#define AR_OPEN_OPTS_VERSION 2
typedef struct ar_open_opts {
    unsigned int version;  /* AR_OPEN_OPTS_VERSION */
    int durability;        /* AR_DURABILITY_FULL: an acknowledged write survives power loss;
                              AR_DURABILITY_NORMAL: it survives a process crash */
    int busy_timeout_ms;   /* how long a call waits for another writer; >= 0 */
    int readonly;          /* open for reading only; the file must exist */
    const ar_allocator *allocator; /* NULL: malloc/realloc/free */
    const char *schema;    /* PostgreSQL: the schema holding the store, an identifier
                              ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes), created with its
                              tables when missing; NULL: "agentrun". Ignored by SQLite. */
} ar_open_opts;
#define AR_OPEN_OPTS_INIT { .version = AR_OPEN_OPTS_VERSION, .durability = AR_DURABILITY_FULL, \
    .busy_timeout_ms = 5000, .readonly = 0, .allocator = NULL, .schema = NULL }
AR_API int ar_open_opts_init(ar_open_opts *opts, unsigned int version);

/* Opens (creating if missing, mode 0600) the store at `path`, or an in-memory
 * store for exactly ":memory:". `path` is always a file name, never an SQLite
 * URI: "file:x.db?mode=ro" is a file of that name, with its -wal and -shm
 * beside it. A PostgreSQL location (a "postgresql://" or "postgres://" URL,
 * or a libpq string beginning "host=", "dbname=", "service=" or "user=") is
 * never taken for a file name: it is served by the PostgreSQL backend, which
 * opens the store in opts->schema of that database (created when missing);
 * no message nor the store's path shows its password, and there AR_EIO
 * means the server cannot be reached, AR_EPERM that it refused the
 * connection. `opts` may be NULL for the defaults. Like sqlite3_open,
 * *out is set even on failure (unless memory ran out) so that the message can
 * be read with ar_store_errmsg; the caller then closes it.
 * A file of an older schema (1: agentrun 0.1, costs in micro-units) is
 * upgraded in place when opened writable, in one transaction: if the upgrade
 * fails, the file stays as it was. Opened read-only, such a file is refused
 * with AR_EVERSION (open it writable once to upgrade it).
 * A version-1 opts (made before `schema` was added) is accepted.
 * Returns AR_OK, AR_EMISUSE, AR_EIO, AR_EPERM, AR_ECORRUPT (not an agentrun
 * store), AR_EVERSION (newer schema, or older and read-only), AR_EBUSY, AR_ENOMEM. */
AR_API int ar_store_open(ar_store **out, const char *path, const ar_open_opts *opts);

/* Leaves the store's still-open runs `interrupted`, exactly as a crash and
 * ar_store_recover would (they can be resumed; a waiting run stays waiting); their handles then report
 * AR_INTERRUPTED and return AR_ESTATE. Releases the file and frees the
 * store. NULL is accepted. Called from a retention rule of this store, it is
 * put off until the scan has let go of the store: ar_store_retain then fails
 * with AR_ESTATE, deleting nothing, and frees the store before it returns
 * (see ar_store_retain). */
AR_API void ar_store_close(ar_store *store);

/* Non-zero while a retention rule of this store is running (during the scan
 * of ar_store_retain): the store can then be read but not written, see
 * ar_store_retain. 0 for NULL. */
AR_API int ar_store_in_rule(const ar_store *store);

/* The message of the last failing call on the store ("" if none; "no store"
 * for NULL). Owned by the store: its text changes with the next failing call
 * and is freed by ar_store_close. */
AR_API const char *ar_store_errmsg(const ar_store *store);
/* The code of the last failing call on the store (AR_OK if none; AR_EMISUSE for NULL). */
AR_API int ar_store_errcode(const ar_store *store);

typedef struct ar_store_info {
    const char *path;      /* the location as opened (a URL without its password); owned by the store */
    int schema_version;
    int64_t runs, steps, events;
    int64_t file_bytes, wal_bytes, free_bytes;  /* 0 where the backend has no such thing */
    const char *backend;   /* "sqlite" or "postgresql": the backend serving the store (static text) */
} ar_store_info;

/* Fills *out (required) with counts and sizes; out->path is the store's,
 * valid until ar_store_close, and out->backend names the backend that
 * serves the location. Returns AR_OK, AR_EMISUSE (NULL argument, store not
 * open) or a store error. */
AR_API int ar_store_info_get(ar_store_info *out, ar_store *store);

/* One problem ar_store_check found. The strings are valid while the
 * visitor runs. */
typedef struct ar_check_problem {
    const char *kind;      /* "file" (the store's own storage), "run", "step", "checkpoint" or "event" */
    const char *run_id;    /* the run of a run, step or checkpoint problem; NULL when its id is the damage */
    int64_t run_key;       /* that run's key (its id's tick), 0 for a file or event problem */
    int64_t seq;           /* a step's seq, an event's id; 0 otherwise */
    const char *field;     /* the damaged field ("metadata", "content", ...); NULL for a file problem */
    const char *message;   /* what is wrong, as a read of that row would report it */
} ar_check_problem;

/* What ar_store_check read. */
typedef struct ar_check_report {
    int64_t runs, steps, checkpoints, events;  /* rows read */
    int64_t problems;                          /* problems found (each given to the visitor) */
} ar_check_report;

typedef int (*ar_check_visit)(void *ud, const ar_check_problem *problem);

/* Checks the store: the storage itself where the backend can (SQLite's
 * integrity_check), then reads back every run, step, checkpoint and event,
 * checking each stored value as a read does (text, JSON, statuses, limits).
 * Each problem goes to `visit` (required): a damaged row is reported with
 * the first damaged field, and the check goes on with the next row. A
 * visitor returning non-zero stops the check, which returns that value.
 * *out (required) gets the counts. The store is only read. Returns AR_OK
 * (also when problems were found: out->problems says how many), AR_EMISUSE
 * (a NULL argument, store not open), or a store error that stopped the
 * read (a file too damaged to read is AR_ECORRUPT). */
AR_API int ar_store_check(ar_check_report *out, ar_store *store, ar_check_visit visit, void *ud);

/* ------------------------------------------------------------------------- */
/* Values shared by runs, steps and records                                  */

typedef enum ar_status {
    AR_RUNNING = 0,
    AR_COMPLETED,
    AR_BUDGET_EXHAUSTED,
    AR_FAILED,
    AR_INTERRUPTED,
    AR_WAITING      /* waiting for a response (ar_run_wait); not finished */
} ar_status;

/* "running", "completed", "budget_exhausted", "failed", "interrupted",
 * "waiting"; NULL if out of range. */
AR_API const char *ar_status_name(ar_status status);
/* Parses a status name into *out; returns AR_OK, or AR_EMISUSE for an
 * unknown or NULL name or a NULL out (*out unchanged). */
AR_API int ar_status_parse(ar_status *out, const char *name);

/* A named integer counter beyond input/output tokens, e.g. cache_read_tokens. */
typedef struct ar_counter {
    const char *name;
    int64_t value;
} ar_counter;

typedef struct ar_usage {
    int64_t input_tokens;
    int64_t output_tokens;
    int64_t total_tokens;   /* always input + output; on input 0 means "compute it" */
    double cost;
    size_t n_extra;         /* other counters, by name, each >= 0 */
    const ar_counter *extra;
} ar_usage;

/* Budget limits; AR_NO_LIMIT means no limit. Otherwise the integer limits are
 * in 0..AR_MAX_COUNT, max_cost in 0..AR_MAX_COST and max_seconds in 0..1e12
 * (AR_EMISUSE outside, with the range in the message). */
#define AR_NO_LIMIT (-1)
typedef struct ar_budget {
    int64_t max_steps;
    int64_t max_input_tokens;
    int64_t max_output_tokens;
    int64_t max_tokens;      /* input + output */
    double max_cost;
    double max_seconds;
} ar_budget;
#define AR_BUDGET_INIT { .max_steps = AR_NO_LIMIT, .max_input_tokens = AR_NO_LIMIT, \
    .max_output_tokens = AR_NO_LIMIT, .max_tokens = AR_NO_LIMIT, .max_cost = AR_NO_LIMIT, \
    .max_seconds = AR_NO_LIMIT }

/* Which limit was reached: limit is "max_steps", "max_input_tokens",
 * "max_output_tokens", "max_tokens", "max_cost" or "max_seconds"; limit_value
 * and value are in the limit's unit (steps, tokens, cost, seconds). */
typedef struct ar_exhaustion {
    const char *limit;
    double limit_value;
    double value;
} ar_exhaustion;

/* One step of a run. ar_run_step ignores seq and at. In a record's steps,
 * seq 0 means "not given" and any other seq must be the step's position
 * (steps number 1..n in order), and at AR_UNSET means the record's
 * finished_at. On output every pointer is owned by the object it came from. */
typedef struct ar_step {
    int64_t seq;
    const char *kind;        /* required, non-empty */
    const char *name;        /* NULL: none */
    const char *content;     /* JSON text; NULL: JSON null */
    size_t content_len;      /* bytes of content, or AR_NUL_TERMINATED */
    ar_usage usage;          /* usage.cost is the step's cost */
    int64_t duration_ms;     /* >= 0 */
    int64_t at;
} ar_step;
#define AR_STEP_INIT { .seq = 0, .kind = NULL, .name = NULL, .content = NULL, \
    .content_len = AR_NUL_TERMINATED, \
    .usage = { .input_tokens = 0, .output_tokens = 0, .total_tokens = 0, .cost = 0.0, \
               .n_extra = 0, .extra = NULL }, \
    .duration_ms = 0, .at = AR_UNSET }

/* ------------------------------------------------------------------------- */
/* Records                                                                   */

/* The one uniform record of a run. Records returned by the library own all
 * their strings and steps (free with ar_record_free). A caller may also fill
 * one (start from AR_RECORD_INIT) as the `fields` of the record factory or
 * for ar_store_write; then it only borrows. JSON fields (output, metadata,
 * checkpoint) are JSON text; metadata is an object.
 *
 * What a written record gives must agree with itself, or it is AR_EMISUSE
 * and nothing is stored: an id must be a valid agentrun id, and since an id
 * encodes the millisecond it was made in, a given created_at must be that
 * millisecond (left out, it is taken from the id); given iterations must be
 * the number of steps, and given usage (input, output, cost, every counter)
 * the sums of the steps'; latency_ms, when given, must be finished_at -
 * created_at, and updated_at, when given, not before finished_at. */
typedef struct ar_record {
    const char *id;          /* in fields: NULL for a new id, else kept */
    const char *agent;
    const char *goal;
    const char *user;
    const char *edition;
    const char *parent;
    ar_status status;
    const char *output;      /* JSON text of a completed run's output, or NULL */
    const char *error;       /* failed runs */
    ar_exhaustion limit;     /* budget_exhausted runs; limit.limit NULL otherwise */
    ar_budget budget;
    int64_t iterations;      /* in fields: negative means "count the steps" */
    ar_usage usage;          /* in fields: total_tokens < 0 means "sum the steps" */
    int64_t latency_ms;      /* finished_at - created_at, AR_UNSET while running */
    int64_t created_at;      /* in fields: AR_UNSET means the id's time, or now */
    int64_t finished_at;     /* AR_UNSET while running; in fields AR_UNSET means now */
    int64_t updated_at;      /* in fields: AR_UNSET means finished_at */
    const char *metadata;    /* JSON object text, or NULL */
    size_t n_steps;          /* steps, when asked for */
    const ar_step *steps;
    const char *checkpoint;  /* a checkpoint state to write with the record (JSON text), or
                                NULL; records read back (ar_store_get) leave it NULL */
    int64_t checkpoint_seq;  /* the step the checkpoint follows, 0..n_steps; AR_UNSET: the last */
    const char *forked_from; /* a fork: the run it was forked from (ar_run_fork), else NULL */
    int64_t forked_seq;      /* a fork: the step of that run it was forked after; 0 otherwise */
    const char *request;     /* a run that waited: what it asked (JSON text), else NULL */
    const char *response;    /* the answer it got (JSON text), NULL until given */
} ar_record;
#define AR_RECORD_INIT { .id = NULL, .agent = NULL, .goal = NULL, .user = NULL, .edition = NULL, \
    .parent = NULL, .status = AR_RUNNING, .output = NULL, .error = NULL, \
    .limit = { .limit = NULL, .limit_value = 0, .value = 0 }, .budget = AR_BUDGET_INIT, \
    .iterations = -1, \
    .usage = { .input_tokens = 0, .output_tokens = 0, .total_tokens = -1, .cost = 0.0, \
               .n_extra = 0, .extra = NULL }, \
    .latency_ms = AR_UNSET, .created_at = AR_UNSET, .finished_at = AR_UNSET, \
    .updated_at = AR_UNSET, .metadata = NULL, .n_steps = 0, .steps = NULL, \
    .checkpoint = NULL, .checkpoint_seq = AR_UNSET, .forked_from = NULL, .forked_seq = 0, \
    .request = NULL, .response = NULL }

AR_API void ar_record_free(ar_record *record);
/* Frees an array of records returned by a listing, and the array. */
AR_API void ar_records_free(ar_record **records, size_t n);

/* The record factory: builds a finished record from `fields` (id, agent,
 * goal, user, edition, parent, metadata, budget, steps, created_at,
 * finished_at, checkpoint; usage and iterations computed from the steps, and
 * checked against them when given), validating everything ar_run_step and
 * ar_run_begin would (steps whose totals would pass AR_MAX_COST or
 * AR_MAX_COUNT are AR_EMISUSE), and the rules of a written record above.
 * *out is a deep copy owned by the caller; `fields` is only read. Without an
 * id in fields the record has none until written. Returns AR_OK,
 * AR_EMISUSE, AR_EJSON, AR_ENOMEM. Error text is in `errbuf` (may be NULL)
 * of `errlen` bytes. */
AR_API int ar_record_completed(ar_record **out, const ar_record *fields,
                        const char *output_json, size_t output_len,
                        char *errbuf, size_t errlen);
AR_API int ar_record_budget_exhausted(ar_record **out, const ar_record *fields,
                               const ar_exhaustion *why, char *errbuf, size_t errlen);
AR_API int ar_record_failed(ar_record **out, const ar_record *fields, const char *error,
                     char *errbuf, size_t errlen);

/* Writes a finished (or interrupted, or waiting) record, all its steps and
 * its checkpoint in one transaction, checked as the factory checks its
 * fields; output only with a completed record, error only with a failed one,
 * limit only with a budget_exhausted one; a waiting record needs its request
 * and has no finished_at or latency_ms; forked_from must be a valid id and
 * forked_seq a step of the record (0..n_steps); a response needs a request. A record read back by ar_store_get and
 * written to another store reproduces the run: id, times, totals, steps.
 * *out receives the run id (caller frees with ar_free): the record's own
 * when it has one, else a new one. Returns AR_OK, AR_EMISUSE (not a
 * finished record, or a record that disagrees with itself), AR_EJSON,
 * AR_ESTATE (the store already holds a run with that id), or a store error;
 * on failure nothing is written. */
AR_API int ar_store_write(char **out, ar_store *store, const ar_record *record);

/* Frees a string returned by the library (ids, cursors, checkpoint states);
 * not records, lists or summaries, which have their own functions. NULL is
 * accepted. Returned objects carry their allocator: they may be freed after
 * their store is closed. */
AR_API void ar_free(void *ptr);

/* ------------------------------------------------------------------------- */
/* Recording a run                                                           */

typedef struct ar_run ar_run;

#define AR_RUN_SPEC_VERSION 1
typedef struct ar_run_spec {
    unsigned int version;    /* AR_RUN_SPEC_VERSION */
    const char *agent;       /* required, non-empty */
    const char *goal;        /* required */
    const char *user;        /* optional */
    const char *edition;     /* optional */
    const char *parent;      /* optional parent run id */
    const char *metadata;    /* optional JSON object text */
    ar_budget budget;
} ar_run_spec;
#define AR_RUN_SPEC_INIT { .version = AR_RUN_SPEC_VERSION, .agent = NULL, .goal = NULL, \
    .user = NULL, .edition = NULL, .parent = NULL, .metadata = NULL, .budget = AR_BUDGET_INIT }
AR_API int ar_run_spec_init(ar_run_spec *opts, unsigned int version);

/* One writer per run. A handle owns its run until the run is resumed through
 * another handle (of this store or another, in this process or another).
 * From then on every write of the old handle (step, checkpoint, complete,
 * fail, exhaust, and the implicit finishes of ar_run_close and
 * ar_store_close) returns AR_ESTATE ("run <id> was resumed elsewhere") and
 * changes nothing; the new owner is never blocked by it. The same holds for
 * a handle whose run ar_store_recover marked interrupted without a resume:
 * its writes return AR_ESTATE ("run <id> is interrupted") and the run stays
 * interrupted, to be resumed. Either way the handle then reports
 * AR_INTERRUPTED and refuses every further write. The check is made in the
 * transaction of each write, against an ownership epoch in the store. */

/* Begins a run: its row is durable when this returns. *out is a handle owned
 * by the caller (ar_run_close); spec is required and only read. Failures are
 * reported on the store. Returns AR_OK, AR_EMISUSE, AR_EJSON, AR_ESTATE
 * (inside a retention rule), or a store error; on failure nothing is
 * written. */
AR_API int ar_run_begin(ar_run **out, ar_store *store, const ar_run_spec *spec);

/* Continues a budget_exhausted or interrupted run, or a waiting run that has
 * its response (ar_run_response then holds it), under the same id: seq,
 * usage and elapsed time continue. `budget` (may be NULL) replaces the old
 * one. The run is read and taken in one transaction, and the new handle
 * becomes its only writer (see "One writer per run" above). Returns AR_OK,
 * AR_ENOTFOUND, AR_ESTATE (other statuses; a waiting run without its
 * response: "still waiting for a response"), or a store error. */
AR_API int ar_run_resume(ar_run **out, ar_store *store, const char *run_id, const ar_budget *budget);

#define AR_FORK_OPTS_VERSION 1
typedef struct ar_fork_opts {
    unsigned int version;    /* AR_FORK_OPTS_VERSION */
    int64_t at;              /* the last step copied, 0..iterations; AR_UNSET: the run's last step */
    const ar_budget *budget; /* NULL: the run's budget */
    const char *metadata;    /* JSON object text replacing the run's metadata; NULL: the run's */
} ar_fork_opts;
#define AR_FORK_OPTS_INIT { .version = AR_FORK_OPTS_VERSION, .at = AR_UNSET, .budget = NULL, \
    .metadata = NULL }
AR_API int ar_fork_opts_init(ar_fork_opts *opts, unsigned int version);

/* Forks run `run_id` (time travel): begins a new run, with its own id, that
 * continues it as it stood after step `at`. The fork has the run's agent,
 * goal, user, edition, parent, metadata (opts->metadata replaces it) and
 * budget (opts->budget replaces it); its steps 1..at are copies of the run's
 * (seq, kind, name, content, usage, cost, duration and time), its usage and
 * iterations their sums, its checkpoint the run's when that follows a step
 * <= at; its record has forked_from = run_id and forked_seq = at. Any run can
 * be forked, whatever its status, also a fork; the run itself is never
 * changed. The copy is one transaction made by the store itself (the steps
 * never pass through memory, so a run of any length forks in bounded
 * memory): on failure nothing of the fork is there. *out is the new run's
 * handle (ar_run_close); out and run_id are required, opts may be NULL.
 * Returns AR_OK, AR_EMISUSE (at outside 0..iterations, a bad budget),
 * AR_EJSON (metadata), AR_ENOTFOUND, AR_ESTATE (inside a retention rule), or
 * a store error. */
AR_API int ar_run_fork(ar_run **out, ar_store *store, const char *run_id, const ar_fork_opts *opts);

/* Waits for a person: appends a step {kind "wait", content request} and sets
 * the run `waiting` with `request` (JSON text, required), in one
 * transaction, and releases the handle: every further write on it returns
 * AR_ESTATE. The run stays waiting whatever happens to the process: neither
 * ar_store_close, nor ar_store_recover, nor retention touch it. Once it has
 * its response (ar_store_respond) it can be resumed (ar_run_resume). The
 * time it waits does not count toward max_seconds. *out (may be NULL) gets
 * the record without steps. Returns AR_OK, AR_EMISUSE, AR_EJSON, AR_ESTATE
 * (the run is finished, or no longer this handle's), or a store error; on
 * failure nothing is written and the handle still holds the run. */
AR_API int ar_run_wait(ar_record **out, ar_run *run, const char *request_json, size_t len);

/* Answers a waiting run: appends a step {kind "response", content response}
 * and stores `response` (JSON text, required), in one transaction. Only one
 * answer is taken: of callers answering at once (any process), exactly one
 * succeeds and the others get AR_ESTATE. *out (may be NULL) gets the record
 * without steps. Returns AR_OK, AR_EMISUSE, AR_EJSON (nothing changed),
 * AR_ENOTFOUND, AR_ESTATE (the run is not waiting, or already has its
 * response), or a store error. */
AR_API int ar_store_respond(ar_record **out, ar_store *store, const char *run_id, const char *response_json,
                            size_t len);

/* Views of the run; owned by the run. usage->extra is valid until the next
 * step. ar_run_status is AR_INTERRUPTED once the handle has lost its run
 * (resumed elsewhere, marked interrupted, or its store closed). */
AR_API const char *ar_run_id(const ar_run *run);
AR_API ar_status ar_run_status(const ar_run *run);
AR_API int64_t ar_run_iterations(const ar_run *run);
AR_API const ar_usage *ar_run_usage(const ar_run *run);
AR_API const ar_budget *ar_run_budget(const ar_run *run);
AR_API int64_t ar_run_created_at(const ar_run *run);
AR_API const char *ar_run_errmsg(const ar_run *run);
/* The response (JSON text) of a run resumed after it waited, else NULL. */
AR_API const char *ar_run_response(const ar_run *run);

/* Appends a step; it is durable when this returns and *out (may be NULL) holds
 * its seq. Never refuses a step for budget reasons. A step that would take a
 * run total past AR_MAX_COST or AR_MAX_COUNT is AR_EMISUSE. On failure
 * nothing is written, the run is unchanged and takes further steps.
 * Returns AR_OK, AR_EMISUSE, AR_EJSON, AR_ESTATE (run finished, store
 * closed, or the run no longer this handle's), or a store error. */
AR_API int ar_run_step(int64_t *out, ar_run *run, const ar_step *step);

/* AR_OK when no limit is reached; AR_EBUDGET with *out filled (may be NULL)
 * when iterations >= max_steps, a token total >= its limit, cost >= max_cost
 * or elapsed >= max_seconds. Checked in that order. AR_ESTATE when finished. */
AR_API int ar_run_check(ar_exhaustion *out, ar_run *run);

/* Saves a resumable state (JSON text) after the latest step. Returns AR_OK,
 * AR_EMISUSE, AR_EJSON (not JSON, or larger than the store holds; nothing is
 * written), AR_ESTATE, or a store error. */
AR_API int ar_run_checkpoint(ar_run *run, const char *state_json, size_t len);

/* Finish the run. *out (may be NULL) receives the final record without steps.
 * A further step or finish returns AR_ESTATE. An output the store cannot hold
 * is AR_EJSON and leaves the run open. ar_run_fail never refuses its text
 * (NULL: "failed"): invalid UTF-8 becomes U+FFFD and text the store cannot
 * hold is cut at a character boundary, ending with " [cut from N bytes]". */
AR_API int ar_run_complete(ar_record **out, ar_run *run, const char *output_json, size_t len);
AR_API int ar_run_fail(ar_record **out, ar_run *run, const char *error);
AR_API int ar_run_exhaust(ar_record **out, ar_run *run, const ar_exhaustion *why);

/* Frees the handle; a run still running under it is first finished as
 * failed with "run closed before it finished" (a run the handle lost is
 * left as it is). NULL is accepted. Called from a retention rule of the
 * run's store, the finish (a write) is put off until the scan ends; the
 * handle must not be used again either way. */
AR_API void ar_run_close(ar_run *run);

/* ------------------------------------------------------------------------- */
/* Intents: tool calls that must not run twice                               */

/*
 * A tool call with a side effect is announced before it runs and settled
 * after: ar_run_intend records a step {kind "intent", name, content
 * {"key": key, "args": args}}, ar_run_settle a step {kind "tool", name (the
 * intent's), content {"intent": intent_seq, "key": key, "result": result}}
 * (with "failed": true for a failed call). The tool step's content carries
 * the link to its intent, so it survives every copy of the steps (export,
 * import, store_write). A key intended and never settled is one whose call
 * was cut off (the process died): after a resume the caller asks the outside
 * world what happened instead of calling the tool again.
 *
 * Both are steps like any other: durable when the call returns, fenced (a
 * handle whose run was resumed elsewhere gets AR_ESTATE and writes nothing),
 * counted in the run's iterations (and so toward max_steps) and never refused
 * for budget reasons. A handle knows the keys of its run: a run begun by it
 * has none, a resumed run's are read once, at its first intend or settle (one
 * pass over the steps); each call after that costs the same however long the
 * run is.
 */

/* Announces the call of tool `name` under `key` (unique in the run); *out
 * (may be NULL) gets the intent step's seq. key and name are required
 * non-empty UTF-8 without NUL (AR_EMISUSE); args is JSON text (NULL: JSON
 * null; AR_EJSON when invalid). A key already intended in the run, by this
 * handle or before a resume, is AR_ESTATE. Returns AR_OK, AR_EMISUSE,
 * AR_EJSON, AR_ESTATE, or a store error; on failure nothing is written. */
AR_API int ar_run_intend(int64_t *out, ar_run *run, const char *key, const char *name,
                         const char *args_json, size_t len);

/* Records the outcome of the call intended under `key`; *out (may be NULL)
 * gets the tool step's seq. result is JSON text (NULL: JSON null; AR_EJSON
 * when invalid); `failed` non-zero marks the call failed (result then
 * usually holds its error). A key never intended in the run, or already
 * settled, is AR_ESTATE. Returns AR_OK, AR_EMISUSE, AR_EJSON, AR_ESTATE, or
 * a store error; on failure nothing is written. */
AR_API int ar_run_settle(int64_t *out, ar_run *run, const char *key, const char *result_json, size_t len,
                         int failed);

typedef enum ar_intent_status { AR_INTENT_PENDING = 0, AR_INTENT_SETTLED, AR_INTENT_FAILED } ar_intent_status;
/* "pending", "settled", "failed" (static text; NULL for another value). */
AR_API const char *ar_intent_status_name(ar_intent_status status);

typedef struct ar_intent {
    const char *key, *name;
    const char *args;          /* JSON text */
    ar_intent_status status;
    const char *result;        /* JSON text; NULL while pending */
    int64_t intent_seq;        /* the intent step */
    int64_t result_seq;        /* the tool step; 0 while pending */
} ar_intent;
/* The intents of a run, returned by ar_store_intents; owns its strings. */
typedef struct ar_intent_list {
    size_t n;
    ar_intent *items;
} ar_intent_list;

/* The intents of run `run_id`, in the order they were made (intent_seq),
 * each with its outcome. Reads the run's steps once, in bounded batches.
 * *out is freed with ar_intent_list_free; out and run_id are required.
 * Returns AR_OK, AR_EMISUSE, AR_ENOTFOUND, or a store error (AR_ECORRUPT
 * for a damaged step). */
AR_API int ar_store_intents(ar_intent_list **out, ar_store *store, const char *run_id);
AR_API void ar_intent_list_free(ar_intent_list *list);

/* ------------------------------------------------------------------------- */
/* Reading                                                                   */

/* *out is the run, or NULL (with AR_ENOTFOUND) when there is none. With
 * `with_steps`, the record holds its whole transcript. *out is the caller's
 * (ar_record_free); out and id are required (AR_EMISUSE). Returns AR_OK,
 * AR_EMISUSE, AR_ENOTFOUND, or a store error. A damaged row (see the
 * conventions) is AR_ECORRUPT, here and in every read below. */
AR_API int ar_store_get(ar_record **out, ar_store *store, const char *id, int with_steps);

/* Streams a run's steps in seq order in bounded memory, from seq `from`
 * (inclusive; <= 1 for all), at most `limit` steps (< 0: all). *out is the
 * caller's (ar_steps_close); out and run_id are required. Returns AR_OK,
 * AR_EMISUSE, AR_ENOTFOUND, or a store error. The store tracks its open
 * iterators: closed first, it detaches them, and each then only fails
 * (AR_ESTATE) and closes. */
typedef struct ar_step_iter ar_step_iter;
AR_API int ar_steps_open(ar_step_iter **out, ar_store *store, const char *run_id, int64_t from, int64_t limit);
/* *out is the next step (owned by the iterator, valid until the next call),
 * or NULL at the end (AR_OK). Returns AR_OK; AR_EMISUSE (no message) when
 * out or iter is NULL; AR_ESTATE once the store is closed; or a store error,
 * after which a later call retries. The message of a failing call is on the
 * iterator (ar_steps_errmsg) and, for a store error, also on the store
 * (ar_store_errmsg). */
AR_API int ar_steps_next(const ar_step **out, ar_step_iter *iter);
/* The message of the iterator's last failing call ("" if none). Owned by the iterator. */
AR_API const char *ar_steps_errmsg(const ar_step_iter *iter);
/* Frees the iterator, whether or not its store is still open. NULL is accepted. */
AR_API void ar_steps_close(ar_step_iter *iter);

enum { AR_ORDER_DESC = 0, AR_ORDER_ASC = 1 };

/* The most statuses a run query may name (n_status), for every caller. */
#define AR_RUN_QUERY_MAX_STATUSES 16

/* Version 2 added `forked_from`; a version-1 struct (without it) is still accepted. */
#define AR_RUN_QUERY_VERSION 2
typedef struct ar_run_query {
    unsigned int version;   /* AR_RUN_QUERY_VERSION */
    const char *agent, *user, *edition, *parent;  /* NULL: any */
    const ar_status *status; size_t n_status;     /* n_status 0: any */
    int64_t since;          /* created_at >= since; AR_UNSET: no bound */
    int64_t until;          /* created_at < until; AR_UNSET: no bound */
    int64_t limit;          /* default 50; >= 0 */
    const char *after;      /* cursor: the items that follow it */
    const char *before;     /* cursor: the `limit` items that precede it */
    int order;              /* AR_ORDER_DESC (default) or AR_ORDER_ASC */
    const char *forked_from; /* the forks of this run id; NULL: any */
} ar_run_query;
#define AR_RUN_QUERY_INIT { .version = AR_RUN_QUERY_VERSION, .agent = NULL, .user = NULL, \
    .edition = NULL, .parent = NULL, .status = NULL, .n_status = 0, .since = AR_UNSET, \
    .until = AR_UNSET, .limit = 50, .after = NULL, .before = NULL, .order = AR_ORDER_DESC, \
    .forked_from = NULL }
AR_API int ar_run_query_init(ar_run_query *opts, unsigned int version);

/* Lists runs (records without steps) in the query's order by (created_at, id).
 * *out is an array of *n records (ar_records_free), an empty array for an
 * empty page; *next_cursor (may be NULL) receives the cursor for the
 * following page or NULL on the last page (ar_free). Passed as `after`, it
 * always moves past the page. limit 0 gives an empty page and no cursor;
 * INT64_MAX lists every run. out, n and query are required. Returns AR_OK,
 * AR_EMISUSE (a NULL argument, a bad filter, more than
 * AR_RUN_QUERY_MAX_STATUSES statuses, a
 * negative limit, after and before together, a malformed cursor), or a store
 * error. */
AR_API int ar_runs_list(ar_record ***out, size_t *n, char **next_cursor,
                 ar_store *store, const ar_run_query *query);
/* Counts the runs matching the query's filters (limit and cursors checked,
 * then ignored). out and query are required. Returns AR_OK, AR_EMISUSE (as
 * ar_runs_list), or a store error. */
AR_API int ar_runs_count(int64_t *out, ar_store *store, const ar_run_query *query);

/* The sums are exact; a token sum past INT64_MAX (possible only beyond 1,024
 * runs at AR_MAX_COUNT) reads as INT64_MAX, and a cost sum past 9.2e9 is the
 * nearest double to the exact sum. */
typedef struct ar_stats {
    int64_t runs;
    int64_t by_status[6];   /* indexed by ar_status */
    int64_t iterations, input_tokens, output_tokens, total_tokens;
    double cost;
    double avg_latency_ms;  /* mean over finished runs; 0 when none */
} ar_stats;
/* Fills *out with the statistics of the runs matching the query's filters,
 * in one statement: the number of runs, per status, the sums of iterations,
 * tokens and cost, and the mean latency of the finished runs (limit and
 * cursors checked, then ignored). out and query are required. Returns AR_OK,
 * AR_EMISUSE (as ar_runs_list), or a store error; on failure *out is all
 * zeroes. */
AR_API int ar_runs_stats(ar_stats *out, ar_store *store, const ar_run_query *query);

/* Clears `user` (required) on every run of that user, in one transaction;
 * *out (may be NULL) gets the count. Returns AR_OK, AR_EMISUSE, AR_ESTATE
 * (inside a retention rule), or a store error (nothing changed). */
AR_API int ar_store_forget_user(int64_t *out, ar_store *store, const char *user);

/* ------------------------------------------------------------------------- */
/* Checkpoints and recovery                                                  */

/* *out is the latest state (JSON text, ar_free) of the run and *seq (may be
 * NULL) the step it follows, or *out NULL and *seq 0 when the run has none.
 * out and run_id are required. Returns AR_OK, AR_EMISUSE, AR_ENOTFOUND, or a
 * store error. */
AR_API int ar_store_checkpoint(char **out, int64_t *seq, ar_store *store, const char *run_id);

/* Marks `running` runs with no activity for `stale_after_s` seconds as
 * interrupted; *out (may be NULL) gets the count. A handle still open on
 * such a run then gets AR_ESTATE for every write (see "One writer per run"). */
AR_API int ar_store_recover(int64_t *out, ar_store *store, double stale_after_s);

/* ------------------------------------------------------------------------- */
/* Events: a conversation stream per agent, independent of runs              */

typedef struct ar_event {
    int64_t id;             /* output only */
    const char *agent;      /* required */
    int64_t session;        /* >= 0 */
    const char *type;       /* required */
    const char *content;    /* UTF-8 text, NUL bytes included; may be NULL */
    const char *metadata;   /* JSON object text, may be NULL */
    const char *run;        /* optional run id */
    int64_t at;             /* AR_UNSET: now */
    size_t content_len;     /* bytes of content; AR_NUL_TERMINATED (or 0, for an
                               event filled without AR_EVENT_INIT) means strlen.
                               On output: its length (content is NUL-terminated too). */
} ar_event;
#define AR_EVENT_INIT { .id = 0, .agent = NULL, .session = 0, .type = NULL, .content = NULL, \
    .metadata = NULL, .run = NULL, .at = AR_UNSET, .content_len = AR_NUL_TERMINATED }

/* Appends an event; *out (may be NULL) gets its id, which increases and is
 * never reused. agent and type are required non-empty UTF-8 without NUL,
 * session >= 0 (AR_EMISUSE otherwise); content is any UTF-8 text, kept byte
 * for byte with its NUL bytes; metadata a JSON object (AR_EJSON otherwise). A
 * value over AR_VALUE_MAX bytes, or an event the store cannot hold, is
 * AR_EJSON. On failure nothing is stored. */
AR_API int ar_event_append(int64_t *out, ar_store *store, const ar_event *event);

/* The most types an event query may name (n_types), for every caller: far
 * beyond any real filter, and well inside what a backend binds in one query. */
#define AR_EVENT_QUERY_MAX_TYPES 1000

#define AR_EVENT_QUERY_VERSION 1
typedef struct ar_event_query {
    unsigned int version;   /* AR_EVENT_QUERY_VERSION */
    const char *agent;      /* required */
    int64_t session;        /* AR_UNSET: any */
    const char *const *types; size_t n_types;
    int64_t since, until;   /* on at: since inclusive, until exclusive; AR_UNSET: no bound */
    int64_t limit;          /* default 100 */
    const char *after, *before;
    int order;              /* AR_ORDER_ASC (default) or AR_ORDER_DESC */
} ar_event_query;
#define AR_EVENT_QUERY_INIT { .version = AR_EVENT_QUERY_VERSION, .agent = NULL, .session = AR_UNSET, \
    .types = NULL, .n_types = 0, .since = AR_UNSET, .until = AR_UNSET, .limit = 100, \
    .after = NULL, .before = NULL, .order = AR_ORDER_ASC }
AR_API int ar_event_query_init(ar_event_query *opts, unsigned int version);

/* An array of events returned by ar_events_list; owns its strings. */
typedef struct ar_event_list {
    size_t n;
    ar_event *items;
} ar_event_list;
AR_API void ar_event_list_free(ar_event_list *list);

/* Lists one agent's events (query->agent required) in the query's order (by id). A cursor marks the
 * position between two events: `after` gives the events that follow it,
 * `before` the `limit` events that precede it (still in the query's order).
 * *next_cursor (may be NULL; ar_free) continues as `after`, always moving past
 * the page, NULL on the last page; limit 0 gives an empty page and no cursor.
 * Malformed cursors, after and before together, a negative limit or
 * session are AR_EMISUSE. *out is freed with ar_event_list_free; out and query
 * are required. Returns AR_OK, AR_EMISUSE, or a store error. */
AR_API int ar_events_list(ar_event_list **out, char **next_cursor, ar_store *store, const ar_event_query *query);
/* Counts the events matching the query's filters (limit and cursors checked,
 * then ignored). out and query are required. Returns AR_OK, AR_EMISUSE (as
 * ar_events_list), or a store error. */
AR_API int ar_events_count(int64_t *out, ar_store *store, const ar_event_query *query);

typedef struct ar_type_count { const char *type; int64_t count; } ar_type_count;
typedef struct ar_event_summary {
    int64_t total;
    size_t n_types; ar_type_count *by_type;
    int64_t sessions;
    int64_t first_at, last_at;   /* AR_UNSET when there are no events */
} ar_event_summary;
/* One agent's totals, computed in one statement: by_type sorted by type,
 * sessions = the number of distinct sessions. Free with ar_event_summary_free.
 * out and agent are required. Returns AR_OK, AR_EMISUSE, or a store error. */
AR_API int ar_events_summary(ar_event_summary **out, ar_store *store, const char *agent);
AR_API void ar_event_summary_free(ar_event_summary *summary);

/* Deletes every event of one agent (required) in one transaction; *out (may
 * be NULL) gets the count. Returns AR_OK, AR_EMISUSE, AR_ESTATE (inside a
 * retention rule), or a store error (nothing deleted). */
AR_API int ar_events_delete(int64_t *out, ar_store *store, const char *agent);

#define AR_EVENT_RETENTION_VERSION 1
typedef struct ar_event_retention {
    unsigned int version;   /* AR_EVENT_RETENTION_VERSION */
    double older_than;      /* seconds; < 0: no age limit */
    int64_t keep_last;      /* per agent, newest by at then id; < 0: no count limit */
} ar_event_retention;
#define AR_EVENT_RETENTION_INIT { .version = AR_EVENT_RETENTION_VERSION, .older_than = -1, .keep_last = -1 }
AR_API int ar_event_retention_init(ar_event_retention *opts, unsigned int version);
/* Deletes events older than older_than seconds (by at) and, per agent, all
 * but the newest keep_last (by at, then id), in one transaction; negative
 * values leave a criterion out. *out (may be NULL) gets the count. policy is
 * required. Returns AR_OK, AR_EMISUSE (older_than NaN or over 1e12),
 * AR_ESTATE (inside a retention rule), or a store error (nothing deleted). */
AR_API int ar_events_retain(int64_t *out, ar_store *store, const ar_event_retention *policy);

/* ------------------------------------------------------------------------- */
/* Export, import, copy (JSON Lines) and OpenTelemetry traces                */

/* Receives output: `len` bytes at `data` (not NUL-terminated), a piece of
 * the output stream. Every line ends with "\n", but a line may come in
 * several pieces. Returns 0 to go on; anything else stops the call, which
 * returns AR_ECALLBACK. */
typedef int (*ar_write_fn)(void *ud, const char *data, size_t len);

/* Gives the next line: *line (owned by the caller, valid until the next
 * call) and *len, without or with its "\n"; *line NULL at the end. Returns
 * 0, or anything else to stop the import with AR_ECALLBACK. */
typedef int (*ar_read_fn)(void *ud, const char **line, size_t *len);

typedef struct ar_export_report {
    int64_t runs, events;   /* lines written of each kind */
    int64_t bytes;          /* bytes handed to the write function */
} ar_export_report;

/* Writes the store's runs and events as JSON Lines (UTF-8, one object a
 * line, each line ending "\n"), streamed in bounded memory: runs are read a
 * page at a time and steps in batches, and output goes to `write` in pieces
 * of at most 64 KiB (a longer stored value, in one piece).
 *
 *   {"type":"agentrun","format":1,"exported_at":<ms>}
 *   {"type":"run", ...}      one a run, in id order
 *   {"type":"event", ...}    one an event, in id order
 *
 * The runs are those matching the query's filters (agent, user, edition,
 * parent, status, since, until; limit, cursors and order are not used: a
 * query selects every matching run, in id order). The events are those of
 * every agent that has a selected run; a query without any filter selects
 * the whole store, events of every agent included.
 *
 * A run line has these keys in this order, each optional one only when the
 * run has it: type, id, agent, goal, user?, edition?, parent?, status,
 * output?, error?, limit? {name, value, reached}, budget {max_steps?,
 * max_input_tokens?, max_output_tokens?, max_tokens?, max_cost?,
 * max_seconds?}, iterations, usage {input_tokens, output_tokens,
 * total_tokens, cost, other counters by name}, latency_ms?, created_at,
 * finished_at?, updated_at, metadata (an object, {} when none), forked_from?
 * {run, seq}, request?, response?,
 * checkpoint? {state, seq}, steps [{seq, kind, name?, content?, usage
 * {input_tokens, output_tokens, total_tokens, counters by name}, cost,
 * duration_ms, at}]. An event line: type, id, agent, session, event_type
 * (the event's own type: "type" names the line), content? (text), metadata
 * ({} when none), run?, at. JSON values (output, content, metadata, state)
 * are the stored text as it is, but for line breaks between tokens, which
 * become spaces; costs are exact decimals of the stored nano-units; other
 * numbers the shortest text that reads back the same.
 *
 * On SQLite the reads between two calls of write share one read
 * transaction. write may use the store (record, read), and what it records
 * is acknowledged at once, as anywhere else.
 *
 * out (may be NULL) gets the counts, also on failure (what was written).
 * query may be NULL (every run). Returns AR_OK, AR_EMISUSE (store not open,
 * no write function, bad query), AR_ECALLBACK (write asked to stop), or a
 * store error (a damaged row: AR_ECORRUPT naming it). */
AR_API int ar_store_export(ar_export_report *out, ar_store *store, const ar_run_query *query,
                           ar_write_fn write, void *ud);

typedef struct ar_import_report {
    int64_t runs, events;   /* imported */
    int64_t skipped;        /* runs already in the store (by id), and events already there
                               (the same event under the same id) */
    int64_t lines;          /* lines read */
} ar_import_report;

/* Reads JSON Lines as ar_store_export writes them (the header line first;
 * blank lines are ignored) and stores each line in one transaction: a run
 * with its id, times, totals, steps and checkpoint (any status, running
 * included), an event with its id. A run whose id is in the store is
 * skipped; an event whose id is taken is skipped when the stored event is
 * the same, and appended with a new id otherwise. Importing an export into
 * an empty store and exporting that gives the same bytes (exported_at
 * aside). A bad line (not JSON, not a known line type, a missing field, a
 * wrong type, a record that disagrees with itself) stops the import with
 * AR_EJSON and a message "line N: ..."; nothing of that line is stored and
 * the lines before it stay imported. out (may be NULL) gets the counts, also
 * on failure. Returns AR_OK, AR_EMISUSE, AR_EJSON, AR_ECALLBACK (read asked
 * to stop), AR_ESTATE (inside a retention rule, or another run holds the
 * id's tick), or a store error. */
AR_API int ar_store_import(ar_import_report *out, ar_store *store, ar_read_fn read, void *ud);

/* Copies every run and event of `src` into `dest` (export piped into
 * import, streamed: one run in memory at a time); the two stores then
 * export the same bytes. out (may be NULL) gets the import's counts.
 * Returns as ar_store_export and ar_store_import (errors are on dest's or
 * src's handle, whichever failed; `dest` gets a copy of src's message). */
AR_API int ar_store_copy(ar_import_report *out, ar_store *dest, ar_store *src);

/* Options of ar_store_otlp. */
#define AR_OTLP_CONTENT 1   /* put step content, goal, output and error in span events */

/* Writes the selected runs (as ar_store_export selects them; no events) as
 * OTLP/JSON trace export requests, one a run and a line, each the body of a
 * POST /v1/traces: a resource (service.name = the agent) with one scope
 * ("agentrun") whose spans follow the OpenTelemetry GenAI conventions. The
 * run is a root span "invoke_agent {agent}" (gen_ai.operation.name,
 * gen_ai.agent.name, gen_ai.agent.id and gen_ai.conversation.id = the run
 * id, summed gen_ai.usage.*, status ERROR with error.type for a failed run,
 * OK for a completed one); each step a child span: "chat {name}" for an llm
 * step (gen_ai.request.model = name), "execute_tool {name}" for a tool step
 * (gen_ai.tool.name), "{kind}" otherwise, with its tokens
 * (gen_ai.usage.input_tokens, output_tokens, cache_read.input_tokens from
 * cache_read_tokens) and agentrun.* attributes (seq, cost, other counters).
 * A step ends at its `at` and starts duration_ms before; the run spans
 * created_at to finished_at (updated_at while running). Trace and span ids
 * are derived from the run id and seq, so they are the same at every
 * export. flags: 0 or AR_OTLP_CONTENT. out (may be NULL) gets the count of
 * runs written in out->runs. Returns as ar_store_export. */
AR_API int ar_store_otlp(ar_export_report *out, ar_store *store, const ar_run_query *query, int flags,
                         ar_write_fn write, void *ud);

/* ------------------------------------------------------------------------- */
/* Retention of runs                                                         */

enum { AR_RULE_UNDECIDED = 0, AR_RULE_KEEP = 1, AR_RULE_DELETE = 2 };

/* Called for each considered run (a record without steps, valid during the
 * call; age in seconds since finished_at). Sets *verdict to AR_RULE_KEEP,
 * AR_RULE_DELETE or AR_RULE_UNDECIDED and returns 0; a non-zero return stops
 * retention with AR_ECALLBACK and nothing is deleted.
 * A rule may read the store it runs on (ar_store_get, ar_runs_list, ...) but
 * not write to it: every writing call on the store or on its runs
 * (ar_run_begin, ar_run_resume, ar_run_step, ar_run_checkpoint, the three
 * finishes, ar_store_write, ar_event_append, ar_events_delete,
 * ar_events_retain, ar_store_forget_user, ar_store_recover, ar_store_retain)
 * returns AR_ESTATE and writes nothing. ar_run_close of a running run is put
 * off until the scan ends. ar_store_close is put off too, and then fails the
 * retention with AR_ESTATE. Other stores, even on the same file, are not
 * affected; what they write meanwhile is not scanned. */
typedef int (*ar_rule_fn)(void *ud, const ar_record *run, double age, int *verdict);

#define AR_RETENTION_VERSION 1
typedef struct ar_retention {
    unsigned int version;   /* AR_RETENTION_VERSION */
    double older_than;      /* seconds since finished_at; < 0: no age criterion */
    int64_t keep_last;      /* newest finished runs kept per agent; < 0: no count criterion */
    const ar_status *status; size_t n_status;  /* statuses considered; 0: all finished */
    ar_rule_fn rule; void *rule_ud;
    int dry_run;
    int vacuum;
} ar_retention;
#define AR_RETENTION_INIT { .version = AR_RETENTION_VERSION, .older_than = -1, .keep_last = -1, \
    .status = NULL, .n_status = 0, .rule = NULL, .rule_ud = NULL, .dry_run = 0, .vacuum = 0 }
AR_API int ar_retention_init(ar_retention *opts, unsigned int version);

typedef struct ar_retention_report {
    int64_t considered, deleted, kept_by_rule, deleted_by_rule, steps_deleted;
    int64_t bytes_before, bytes_after;
    int dry_run;
} ar_retention_report;

/* Applies the policy to the finished runs (any status but running): one
 * read of the runs finished when it begins, which calls the rule on each
 * considered run and decides, then the deletion in short transactions (and
 * the vacuum). Runs finished after the read began are not considered.
 * A run is deleted with its steps and checkpoint, in batches of at most 500
 * runs (fewer once a batch holds about 20,000 steps), one transaction each.
 * out and policy are required; `policy` is only read.
 * Returns AR_OK with *out filled; AR_EMISUSE (NULL argument, bad policy);
 * AR_EPERM (read-only store, unless dry_run); AR_ECALLBACK (the rule failed
 * or gave an unknown verdict: nothing deleted); AR_ESTATE when called from
 * one of this store's rules, or when the rule closed the store: nothing is
 * deleted and the store is freed before this returns, so it must not be
 * used again (not even for ar_store_errmsg); or a store error. A store error
 * during the scan deletes nothing. During the deletion, the failed batch is
 * rolled back but the batches before it stay deleted (whole runs, never half
 * of one), and the message ends "(N runs were deleted before this failure)";
 * a failed vacuum leaves every planned run deleted. On every failure *out is
 * zeroed, so the report of a partial deletion is lost: apply the same policy
 * again to finish. */
AR_API int ar_store_retain(ar_retention_report *out, ar_store *store, const ar_retention *policy);

#ifdef __cplusplus
}
#endif
#endif
