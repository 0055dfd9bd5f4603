#include <sqlite3.h>

/* sqlite3_db_config is variadic, which Swift cannot call: one non-variadic wrapper per use. */

/* Do not checkpoint (nor delete) the WAL when the last connection closes
   (https://sqlite.org/c3ref/c_dbconfig_defensive.html#sqlitedbconfignockptonclose). */
static inline int deployctl_no_checkpoint_on_close(sqlite3 *db) {
    return sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)0);
}

/* Turn the firing of triggers on or off for this connection only
   (https://sqlite.org/c3ref/c_dbconfig_defensive.html#sqlitedbconfigenabletrigger): a restore that
   rewrites rows must not run the application's triggers. */
static inline int deployctl_enable_triggers(sqlite3 *db, int on) {
    int now = -1;
    int rc = sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, on, &now);
    return rc == SQLITE_OK && now == on ? SQLITE_OK : SQLITE_ERROR;
}

/* sync_file_range(2) is declared by <fcntl.h> only under _GNU_SOURCE, which Swift's Glibc module
   is not built with: glibc's prototype (64-bit off_t), for CopyTargetVFS. */
int sync_file_range(int fd, long offset, long nbytes, unsigned int flags);
#define DEPLOYCTL_SYNC_FILE_RANGE_WRITE 2
