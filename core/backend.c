/* backend.c -- choosing the backend that serves a location. */
#include "internal.h"

#include <string.h>

/* The libpq "key=value" connection strings told apart from file names: a
 * store file is never named like one of these. */
static const char *const pg_prefixes[] = {
    "postgresql://", "postgres://", "host=", "dbname=", "service=", "user="
};

int ar_location_is_postgres(const char *location)
{
    for (size_t i = 0; location && i < sizeof pg_prefixes / sizeof pg_prefixes[0]; i++)
        if (strncmp(location, pg_prefixes[i], strlen(pg_prefixes[i])) == 0)
            return 1;
    return 0;
}

const ar_backend *ar_backend_for(const char *location)
{
    /* a PostgreSQL location is never taken for a file name: without a
     * backend for it, the store refuses to open (see ar_store_open) */
    if (ar_location_is_postgres(location))
        return NULL;
    return &ar_sqlite_backend;
}
