/* testing.h -- a door into the SQLite backend for the tests (not installed,
 * not part of the public API): what only an SQLite file has. */
#ifndef AR_SQLITE_TESTING_H
#define AR_SQLITE_TESTING_H

#include <stdint.h>

#include "agentrun.h"

/* The statements ar_sqlite_events_plan explains. */
enum {
    AR_SQLITE_PLAN_LIST, AR_SQLITE_PLAN_COUNT, AR_SQLITE_PLAN_SUMMARY,
    AR_SQLITE_PLAN_RETAIN_AGE, AR_SQLITE_PLAN_RETAIN_KEEP
};

/* The EXPLAIN QUERY PLAN text (one step per line; ar_free) of the very SQL
 * the SQLite backend runs for an events listing (q, key, ascending), a count
 * (q), the summary (q->agent) or an events retention delete (q may be NULL).
 * AR_EMISUSE when the store is not open or not an SQLite file; the message
 * is the store's (ar_store_errmsg). */
int ar_sqlite_events_plan(char **out, ar_store *store, int shape, const ar_event_query *q, const int64_t *key,
                          int ascending);

#endif
