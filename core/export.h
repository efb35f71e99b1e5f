/* export.h -- reading runs and steps in bounded pieces for the exports
 * (JSON Lines in export.c, OTLP in otlp.c); internal. */
#ifndef AR_EXPORT_H
#define AR_EXPORT_H

#include "internal.h"

#include "jsonw.h"

/* An export's output and its reads. The reads share one read snapshot of
 * the store (ar_backend.read_begin; one transaction instead of one per
 * statement, several times quicker on SQLite), taken at the first read and
 * ended before each call of the caller's write function, which may use the
 * store, and at the end. */
typedef struct ar_export_io {
    ar_store *store;
    ar_write_fn write;  /* the caller's */
    void *ud;
    int reading;        /* a snapshot is held */
} ar_export_io;

/* Sets up io, and w to write through it. */
void ar_export_io_init(ar_export_io *io, ar_jsonw *w, ar_store *store, ar_write_fn write, void *ud);
/* Takes the snapshot unless it is held: before every read. */
int ar_export_io_read(ar_export_io *io);
/* Ends the snapshot if it is held. */
void ar_export_io_end(ar_export_io *io);

/* Checks an export's run query (NULL: every run) and fills *out with its
 * filters, to be listed whole in id order; *filters is 0 when the query
 * selects every run. AR_EMISUSE on a bad query. */
int ar_export_query_check(ar_store *store, const ar_run_query *q, ar_run_query *out, int *filters);

/* What a walk over the selected runs writes: for each run, `run` (its part
 * before its steps; it may read through io), `step` for each of its steps
 * in seq order (first: the run's first), `run_end` after them. */
typedef struct ar_export_walker {
    int (*run)(ar_export_io *io, ar_jsonw *w, ar_record *r, void *ud);
    void (*step)(ar_jsonw *w, const ar_step *s, int first, void *ud);
    void (*run_end)(ar_jsonw *w, void *ud);
    void *ud;
} ar_export_walker;

/* Walks the runs q (checked) selects, in id order, a page of runs and a
 * batch of steps at a time, writing each through wk into w; *runs counts
 * the runs written whole. Stops at the first failure, also of w. */
int ar_export_walk(ar_export_io *io, ar_jsonw *w, const ar_run_query *q, const ar_export_walker *wk, int64_t *runs);

#define AR_EXPORT_STEP_BATCH 256
#define AR_EXPORT_RUN_PAGE 64

#endif
