/* export.h -- reading runs and steps in bounded pieces for the exports
 * (JSON Lines in export.c, OTLP in otlp.c); internal. */
#ifndef AR_EXPORT_H
#define AR_EXPORT_H

#include "internal.h"

/* Checks an export's run query (NULL: every run) and fills *out with its
 * filters, to be listed whole in id order; *filters is 0 when the query
 * selects every run. AR_EMISUSE on a bad query. */
int ar_export_query_check(ar_store *store, const ar_run_query *q, ar_run_query *out, int *filters);
/* The next page of runs of q (checked) after key *after (from the start when
 * NULL), ascending: *out[0..*n) owned by *page (ar_export_page_free). A page
 * shorter than its size is the last. */
int ar_export_runs_page(ar_store *store, const ar_run_query *q, const int64_t *after, ar_record ***out,
                        size_t *n, void **page);
void ar_export_page_free(ar_store *store, void *page);
/* The next batch of steps of run `key` from seq `from` into `arena`; a batch
 * shorter than its size is the last. */
int ar_export_steps_batch(ar_store *store, int64_t key, const char *run_id, int64_t from, ar_arena *arena,
                          ar_step **out, size_t *n);
#define AR_EXPORT_STEP_BATCH 256
#define AR_EXPORT_RUN_PAGE 64

#endif
