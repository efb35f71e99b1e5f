/* faultvfs.h -- a test-only SQLite VFS that fails chosen file operations (never built into the library). */
#ifndef AR_TEST_FAULTVFS_H
#define AR_TEST_FAULTVFS_H

/* The kinds of file operation the shim counts and can fail. */
enum {
    FAULTVFS_READ = 1,      /* xRead: fails with SQLITE_IOERR_READ */
    FAULTVFS_WRITE = 2,     /* xWrite: SQLITE_IOERR_WRITE */
    FAULTVFS_SYNC = 4,      /* xSync: SQLITE_IOERR_FSYNC */
    FAULTVFS_TRUNCATE = 8,  /* xTruncate: SQLITE_IOERR_TRUNCATE */
    FAULTVFS_ALL = 15
};

/* Registers the shim as SQLite's default VFS, wrapping the VFS that was the
 * default, so every connection opened afterwards (ar_store_open's too) goes
 * through it: the database, its -wal, journals and temp files. Nothing is
 * armed: operations pass straight through. Idempotent. Returns an SQLite code. */
int faultvfs_install(void);

/* Makes the wrapped VFS the default again and disarms. Connections opened
 * through the shim keep working (the shim stays registered under its name). */
void faultvfs_uninstall(void);

/* The wrapped VFS's name ("unix"): open a connection with it to look at a
 * file without going through the shim. */
const char *faultvfs_base_name(void);

/* Counts, from now on, the operations whose kind is in `ops`; the nth of them
 * (1-based) fails, and with `persistent` every later one too, until
 * faultvfs_clear. `rc` is the SQLite code to return (0: the kind's own
 * SQLITE_IOERR_... code; SQLITE_FULL on a write models a full disk). A failed
 * operation does nothing to the file. nth == 0 only counts. One thread only. */
void faultvfs_arm(unsigned ops, long nth, int persistent, int rc);

/* Stops failing operations; the counters keep counting. */
void faultvfs_clear(void);

/* Operations of the armed kinds seen since faultvfs_arm, and how many failed. */
long faultvfs_count(void);
long faultvfs_fired(void);

/* With `on`, xSync is counted (and can fail) but does not reach the disk:
 * sweeps that open hundreds of stores stay fast. Off after install. */
void faultvfs_skip_sync(int on);

#endif
