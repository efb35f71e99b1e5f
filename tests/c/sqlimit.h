/* sqlimit.h -- a test-only door to SQLite's length limit on every connection opened (never built into the library). */
#ifndef AR_TEST_SQLIMIT_H
#define AR_TEST_SQLIMIT_H

/* From now on every SQLite connection opened in this process (a store's and
 * a test's own) gets SQLITE_LIMIT_LENGTH = `bytes`: the largest string, blob
 * or row it holds. Done through sqlite3_auto_extension, so the library needs
 * no door of its own. `bytes` 0 stops it: connections opened afterwards get
 * SQLite's default; those already open keep their limit. Returns an SQLite code. */
int sqlimit_length(int bytes);

#endif
