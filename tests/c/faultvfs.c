/* faultvfs.c -- a test-only SQLite VFS shim: counts reads, writes, syncs and truncates and fails the chosen one. */
#include "faultvfs.h"

#include <sqlite3.h>
#include <string.h>

/* A file opened through the shim: the wrapped VFS's file follows it in the
 * same block (szOsFile covers both). */
typedef struct fv_file {
    sqlite3_file base;          /* pMethods: io_methods[real's iVersion] */
    sqlite3_file *real;
} fv_file;

static struct {
    sqlite3_vfs *base;          /* the VFS that was the default */
    int built, installed;
    unsigned ops;               /* kinds being counted */
    int armed, persistent, rc;
    long nth, count, fired;
    int skip_sync;
} fv;

static sqlite3_vfs shim;
static sqlite3_io_methods io_methods[4];

#define REAL(f) (((fv_file *)(f))->real)

/* Counts one operation of `kind`: the code it must fail with, or SQLITE_OK
 * to let it through. */
static int fault(unsigned kind, int natural)
{
    if (!(fv.ops & kind))
        return SQLITE_OK;
    fv.count++;
    if (!fv.armed || fv.nth <= 0)
        return SQLITE_OK;
    if (fv.count == fv.nth || (fv.persistent && fv.count > fv.nth)) {
        fv.fired++;
        return fv.rc ? fv.rc : natural;
    }
    return SQLITE_OK;
}

/* ---- file methods: count, maybe fail, else pass through ----------------- */

static int fv_close(sqlite3_file *f)
{
    sqlite3_file *r = REAL(f);
    return r->pMethods ? r->pMethods->xClose(r) : SQLITE_OK;
}

static int fv_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    int rc = fault(FAULTVFS_READ, SQLITE_IOERR_READ);
    if (rc) {
        memset(buf, 0, (size_t)n);
        return rc;
    }
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int fv_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    int rc = fault(FAULTVFS_WRITE, SQLITE_IOERR_WRITE);
    return rc ? rc : REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int fv_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    int rc = fault(FAULTVFS_TRUNCATE, SQLITE_IOERR_TRUNCATE);
    return rc ? rc : REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int fv_sync(sqlite3_file *f, int flags)
{
    int rc = fault(FAULTVFS_SYNC, SQLITE_IOERR_FSYNC);
    if (rc || fv.skip_sync)
        return rc;
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int fv_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int fv_lock(sqlite3_file *f, int level)
{
    return REAL(f)->pMethods->xLock(REAL(f), level);
}

static int fv_unlock(sqlite3_file *f, int level)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), level);
}

static int fv_check_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int fv_file_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int fv_sector_size(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int fv_device_characteristics(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int fv_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **out)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), region, size, extend, out);
}

static int fv_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void fv_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int fv_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int fv_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, out);
}

static int fv_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

/* ---- VFS methods: open wraps, the rest pass through --------------------- */

/* Opens the wrapped VFS's file behind ours. Our pMethods is set only when the
 * real one is, as SQLite calls xClose exactly when pMethods is not NULL. */
static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    (void)vfs;
    fv_file *p = (fv_file *)f;
    p->real = (sqlite3_file *)(p + 1);
    p->real->pMethods = NULL;
    int rc = fv.base->xOpen(fv.base, name, p->real, flags, out_flags);
    int v = p->real->pMethods ? p->real->pMethods->iVersion : 0;
    p->base.pMethods = v ? &io_methods[v > 3 ? 3 : v] : NULL;
    return rc;
}

static int fv_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return fv.base->xDelete(fv.base, name, sync_dir);
}

static int fv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return fv.base->xAccess(fv.base, name, flags, out);
}

static int fv_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return fv.base->xFullPathname(fv.base, name, n, out);
}

static void *fv_dlopen(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return fv.base->xDlOpen(fv.base, name);
}

static void fv_dlerror(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    fv.base->xDlError(fv.base, n, out);
}

static void (*fv_dlsym(sqlite3_vfs *vfs, void *lib, const char *sym))(void)
{
    (void)vfs;
    return fv.base->xDlSym(fv.base, lib, sym);
}

static void fv_dlclose(sqlite3_vfs *vfs, void *lib)
{
    (void)vfs;
    fv.base->xDlClose(fv.base, lib);
}

static int fv_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return fv.base->xRandomness(fv.base, n, out);
}

static int fv_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return fv.base->xSleep(fv.base, us);
}

static int fv_current_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return fv.base->xCurrentTime(fv.base, out);
}

static int fv_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return fv.base->xGetLastError ? fv.base->xGetLastError(fv.base, n, out) : 0;
}

static int fv_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return fv.base->xCurrentTimeInt64(fv.base, out);
}

/* Builds the shim over the current default VFS (once per process). */
static int build(void)
{
    sqlite3_vfs *base = sqlite3_vfs_find(NULL);
    if (!base)
        return SQLITE_ERROR;
    fv.base = base;
    memset(&shim, 0, sizeof shim);
    shim.iVersion = base->iVersion < 2 ? base->iVersion : 2;
    shim.szOsFile = (int)sizeof(fv_file) + base->szOsFile;
    shim.mxPathname = base->mxPathname;
    shim.zName = "faultvfs";
    shim.xOpen = fv_open;
    shim.xDelete = fv_delete;
    shim.xAccess = fv_access;
    shim.xFullPathname = fv_full_pathname;
    shim.xDlOpen = fv_dlopen;
    shim.xDlError = fv_dlerror;
    shim.xDlSym = fv_dlsym;
    shim.xDlClose = fv_dlclose;
    shim.xRandomness = fv_randomness;
    shim.xSleep = fv_sleep;
    shim.xCurrentTime = fv_current_time;
    shim.xGetLastError = fv_last_error;
    if (shim.iVersion >= 2)
        shim.xCurrentTimeInt64 = fv_current_time_int64;
    for (int v = 1; v <= 3; v++) {
        sqlite3_io_methods *m = &io_methods[v];
        m->iVersion = v;
        m->xClose = fv_close;
        m->xRead = fv_read;
        m->xWrite = fv_write;
        m->xTruncate = fv_truncate;
        m->xSync = fv_sync;
        m->xFileSize = fv_file_size;
        m->xLock = fv_lock;
        m->xUnlock = fv_unlock;
        m->xCheckReservedLock = fv_check_reserved;
        m->xFileControl = fv_file_control;
        m->xSectorSize = fv_sector_size;
        m->xDeviceCharacteristics = fv_device_characteristics;
        if (v >= 2) {
            m->xShmMap = fv_shm_map;
            m->xShmLock = fv_shm_lock;
            m->xShmBarrier = fv_shm_barrier;
            m->xShmUnmap = fv_shm_unmap;
        }
        if (v >= 3) {
            m->xFetch = fv_fetch;
            m->xUnfetch = fv_unfetch;
        }
    }
    fv.built = 1;
    return SQLITE_OK;
}

int faultvfs_install(void)
{
    if (fv.installed)
        return SQLITE_OK;
    int rc = fv.built ? SQLITE_OK : build();
    if (rc == SQLITE_OK)
        rc = sqlite3_vfs_register(&shim, 1);
    if (rc == SQLITE_OK)
        fv.installed = 1;
    return rc;
}

void faultvfs_uninstall(void)
{
    if (!fv.installed)
        return;
    sqlite3_vfs_register(fv.base, 1);
    fv.installed = 0;
    fv.ops = 0;
    fv.armed = 0;
    fv.skip_sync = 0;
}

const char *faultvfs_base_name(void)
{
    if (!fv.built && build() != SQLITE_OK)
        return NULL;
    return fv.base->zName;
}

void faultvfs_arm(unsigned ops, long nth, int persistent, int rc)
{
    fv.ops = ops & FAULTVFS_ALL;
    fv.nth = nth;
    fv.persistent = persistent;
    fv.rc = rc;
    fv.armed = 1;
    fv.count = 0;
    fv.fired = 0;
}

void faultvfs_clear(void)
{
    fv.armed = 0;
}

long faultvfs_count(void)
{
    return fv.count;
}

long faultvfs_fired(void)
{
    return fv.fired;
}

void faultvfs_skip_sync(int on)
{
    fv.skip_sync = on;
}
