/* store.c -- opening and closing a store, its error slot, info and status names. */
#include "internal.h"

#include <stdio.h>
#include <stddef.h>
#include <string.h>

static const char *const status_names[] = {
    "running", "completed", "budget_exhausted", "failed", "interrupted", "waiting"
};

const char *ar_status_name(ar_status status)
{
    if ((int)status < 0 || (size_t)status >= sizeof status_names / sizeof status_names[0])
        return NULL;
    return status_names[status];
}

int ar_status_parse(ar_status *out, const char *name)
{
    if (!out)
        return AR_EMISUSE;
    for (size_t i = 0; name && i < sizeof status_names / sizeof status_names[0]; i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *out = (ar_status)i;
            return AR_OK;
        }
    }
    return AR_EMISUSE;
}

int ar_store_open(ar_store **out, const char *path, const ar_open_opts *opts)
{
    ar_open_opts defaults = AR_OPEN_OPTS_INIT;
    if (!out)
        return AR_EMISUSE;
    *out = NULL;
    if (!opts)
        opts = &defaults;
    /* of a struct of an unknown version only `version` is read: the store
     * that carries the refusal comes from the default allocator */
    int known = opts->version == 1 || opts->version == AR_OPEN_OPTS_VERSION;
    const ar_allocator *a = known && opts->allocator ? opts->allocator : &ar_default_allocator;
    if (known && opts->allocator && (!a->malloc || !a->realloc || !a->free))
        return AR_EMISUSE;
    ar_store *store = ar_mem_alloc(a, sizeof *store);
    if (!store)
        return AR_ENOMEM;
    memset(store, 0, sizeof *store);
    store->alloc = *a;
    *out = store;
    if (!path)
        return ar_fail(&store->err, AR_EMISUSE, "path is required");
    if (!known)
        return ar_opts_version_check(&store->err, "ar_open_opts", opts->version, AR_OPEN_OPTS_VERSION,
                                     "AR_OPEN_OPTS_INIT");
    /* a version-1 struct ends before `schema`: only its own fields are read */
    ar_open_opts given = AR_OPEN_OPTS_INIT;
    memcpy(&given, opts, opts->version == 1 ? offsetof(ar_open_opts, schema) : sizeof given);
    given.version = AR_OPEN_OPTS_VERSION;
    opts = &given;
    int rc;
    if (opts->durability != AR_DURABILITY_FULL && opts->durability != AR_DURABILITY_NORMAL)
        return ar_fail(&store->err, AR_EMISUSE, "durability must be AR_DURABILITY_FULL or AR_DURABILITY_NORMAL");
    if (opts->busy_timeout_ms < 0)
        return ar_fail(&store->err, AR_EMISUSE, "busy_timeout must not be negative");
    store->readonly = opts->readonly != 0;
    const ar_backend *be = ar_backend_for(path);
    ar_db *db = NULL;
    rc = be->open(&db, path, opts, &store->alloc, &store->err);
    if (rc) {
        be->close(db);
        return rc;
    }
    store->be = be;
    store->db = db;
    return AR_OK;
}

/* Implemented in run.c: ends an open run with `end` and detaches it. */
void ar_run_detach(ar_run *run, ar_status end, const char *why);

void ar_store_close(ar_store *store)
{
    if (!store)
        return;
    /* the scan is stepping a statement of this connection: ar_store_retain
     * closes the store once the scan has let go of it */
    if (store->scanning) {
        store->close_deferred = 1;
        return;
    }
    ar_store_close_deferred_runs(store);
    /* as a crash followed by recover would: the runs stay resumable */
    while (store->runs)
        ar_run_detach(store->runs, AR_INTERRUPTED, NULL);
    ar_store_detach_iters(store);
    if (store->be)
        store->be->close(store->db);
    ar_allocator a = store->alloc;
    a.free(a.ud, store);
}

const char *ar_store_errmsg(const ar_store *store)
{
    return store ? store->err.msg : "no store";
}

int ar_store_errcode(const ar_store *store)
{
    return store ? store->err.code : AR_EMISUSE;
}

/* AR_OK when the store is open; AR_EMISUSE otherwise (NULL, or it failed to open). */
int ar_store_usable(ar_store *store)
{
    if (!store)
        return AR_EMISUSE;
    if (!store->db)
        return ar_fail(&store->err, AR_EMISUSE, "the store is not open");
    return AR_OK;
}

int ar_store_scan_check(const ar_store *store, ar_err *err, const char *what)
{
    if (!store->scanning)
        return AR_OK;
    return ar_fail(err, AR_ESTATE, "cannot %s: a retention rule of this store is running, "
                   "and a rule may read its store but not write to it", what);
}

int ar_store_writable(ar_store *store, const char *what)
{
    int rc = ar_store_usable(store);
    return rc ? rc : ar_store_scan_check(store, &store->err, what);
}

int ar_store_in_rule(const ar_store *store)
{
    return store && store->scanning;
}

int ar_store_info_get(ar_store_info *out, ar_store *store)
{
    int rc = ar_store_usable(store);
    if (rc)
        return rc;
    if (!out)
        return ar_fail(&store->err, AR_EMISUSE, "out is NULL");
    ar_store_info info;
    memset(&info, 0, sizeof info);
    memset(out, 0, sizeof *out);
    ar_db_sizes sizes = { 0, 0, 0 };
    if ((rc = store->be->info(store->db, &info, &store->err)) ||
        (store->be->sizes && (rc = store->be->sizes(store->db, &sizes, &store->err))))
        return rc;
    info.path = store->be->display_path(store->db);
    info.backend = store->be->name;
    info.file_bytes = sizes.file_bytes;
    info.wal_bytes = sizes.wal_bytes;
    info.free_bytes = sizes.free_bytes;
    *out = info;
    return AR_OK;
}

int ar_store_forget_user(int64_t *out, ar_store *store, const char *user)
{
    int64_t n = 0;
    int rc = ar_store_writable(store, "forget a user");
    if (out)
        *out = 0;
    if (rc || (rc = ar_text_check(&store->err, "user", user, 1, 1)))
        return rc;
    if ((rc = store->be->forget_user(store->db, user, ar_now_ms(), &n, &store->err)))
        return rc;
    if (out)
        *out = n;
    return AR_OK;
}

int ar_store_recover(int64_t *out, ar_store *store, double stale_after_s)
{
    int64_t n = 0;
    int rc = ar_store_writable(store, "recover runs");
    if (out)
        *out = 0;
    if (rc)
        return rc;
    if (!(stale_after_s >= 0.0) || stale_after_s > 1e12)
        return ar_fail(&store->err, AR_EMISUSE, "stale_after must be a non-negative number of seconds");
    int64_t now = ar_now_ms();
    if ((rc = store->be->recover(store->db, now - (int64_t)(stale_after_s * 1000.0), now, &n, &store->err)))
        return rc;
    if (out)
        *out = n;
    return AR_OK;
}

int ar_store_checkpoint(char **out, int64_t *seq, ar_store *store, const char *run_id)
{
    int64_t key, s = 0;
    int rc = ar_store_usable(store);
    if (out)
        *out = NULL;
    if (seq)
        *seq = 0;
    if (rc)
        return rc;
    if (!out || !run_id)
        return ar_fail(&store->err, AR_EMISUSE, "out and run_id are required");
    if ((rc = ar_store_run_key(store, run_id, &key)))
        return rc;
    ar_db_text state = { NULL, 0 };
    if ((rc = store->be->checkpoint_get(store->db, key, &state, &s, &store->err)))
        return rc;
    if (!state.s)
        return AR_OK;
    char owner[AR_ID_LEN + 32];
    snprintf(owner, sizeof owner, "run %s checkpoint", run_id);
    if ((rc = ar_row_json_check(state, owner, "state", &store->err)))
        return rc;
    if (!(*out = ar_out_strdup(&store->alloc, state.s, state.len)))
        return ar_fail(&store->err, AR_ENOMEM, "out of memory reading the checkpoint");
    if (seq)
        *seq = s;
    return AR_OK;
}
