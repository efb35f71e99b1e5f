/* opts.c -- versioned option structs: their _init functions and the one
 * version check every function taking one runs. */
#include "internal.h"

#include <stddef.h>
#include <string.h>

int ar_opts_version_check(ar_err *err, const char *type, unsigned int version, unsigned int known,
                          const char *init)
{
    if (version == known)
        return AR_OK;
    return ar_fail(err, AR_EMISUSE, "%s version %u is not one this library knows (%u): "
                   "start it from %s or %s_init", type, version, known, init, type);
}

int ar_schema_name_check(ar_err *err, const char *name)
{
    size_t n = 0;
    for (const char *s = name; *s; s++, n++) {
        int alpha = (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_';
        if (!alpha && !(n > 0 && *s >= '0' && *s <= '9'))
            return ar_fail(err, AR_EMISUSE, "schema: \"%.80s\" is not a schema name (letters, digits and _, "
                           "not starting with a digit)", name);
    }
    if (n == 0)
        return ar_fail(err, AR_EMISUSE, "schema: the schema name is empty");
    if (n > AR_SCHEMA_NAME_MAX)
        return ar_fail(err, AR_EMISUSE, "schema: the schema name is %zu bytes long, more than %d",
                       n, AR_SCHEMA_NAME_MAX);
    return AR_OK;
}

/* Each _init fills *opts from its macro, so the two never differ. */
#define OPTS_INIT_FN(type, VERSION, INIT)                         \
    int type##_init(type *opts, unsigned int version)             \
    {                                                             \
        if (!opts || version != VERSION)                          \
            return AR_EMISUSE;                                    \
        type init = INIT;                                         \
        *opts = init;                                             \
        return AR_OK;                                             \
    }

/* Version 1 of ar_open_opts ends before `schema`: a program built with it
 * has only that much room, so only that much is written. */
int ar_open_opts_init(ar_open_opts *opts, unsigned int version)
{
    if (!opts || (version != 1 && version != AR_OPEN_OPTS_VERSION))
        return AR_EMISUSE;
    ar_open_opts init = AR_OPEN_OPTS_INIT;
    init.version = version;
    memcpy(opts, &init, version == 1 ? offsetof(ar_open_opts, schema) : sizeof init);
    return AR_OK;
}
OPTS_INIT_FN(ar_run_spec, AR_RUN_SPEC_VERSION, AR_RUN_SPEC_INIT)
OPTS_INIT_FN(ar_fork_opts, AR_FORK_OPTS_VERSION, AR_FORK_OPTS_INIT)

/* Version 1 of ar_run_query ends before `forked_from`. */
int ar_run_query_init(ar_run_query *opts, unsigned int version)
{
    if (!opts || (version != 1 && version != AR_RUN_QUERY_VERSION))
        return AR_EMISUSE;
    ar_run_query init = AR_RUN_QUERY_INIT;
    init.version = version;
    memcpy(opts, &init, version == 1 ? offsetof(ar_run_query, forked_from) : sizeof init);
    return AR_OK;
}
OPTS_INIT_FN(ar_event_query, AR_EVENT_QUERY_VERSION, AR_EVENT_QUERY_INIT)
OPTS_INIT_FN(ar_retention, AR_RETENTION_VERSION, AR_RETENTION_INIT)
OPTS_INIT_FN(ar_event_retention, AR_EVENT_RETENTION_VERSION, AR_EVENT_RETENTION_INIT)
