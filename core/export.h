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
/* The next page of runs of q (checked) after key *after (from the start when
 * NULL), ascending: *out[0..*n) owned by *page (ar_export_page_free). A page
 * shorter than its size is the last. */
int ar_export_runs_page(ar_export_io *io, const ar_run_query *q, const int64_t *after, ar_record ***out,
                        size_t *n, void **page);
void ar_export_page_free(ar_store *store, void *page);
/* The next batch of steps of run `key` from seq `from` into `arena`; a batch
 * shorter than its size is the last. */
int ar_export_steps_batch(ar_export_io *io, int64_t key, const char *run_id, int64_t from, ar_arena *arena,
                          ar_step **out, size_t *n);
#define AR_EXPORT_STEP_BATCH 256
#define AR_EXPORT_RUN_PAGE 64

#endif
