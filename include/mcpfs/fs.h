/* fs.h — the FUSE adapter: the store as a file tree (CONTRACT §2–§4).
 *
 * A thin layer on the core API using libfuse's low-level interface.  Handlers
 * never wait: a read of `output` that has to wait for the reply is parked and
 * answered later from whichever thread changes the turn (the store's observer),
 * and a FUSE interrupt answers it at once with EINTR.  The inotify events FUSE
 * does not raise for a daemon's own changes (IN_MODIFY on `output` and
 * `transcript`, IN_CLOSE_WRITE on `output` when a reply ends) are made by a
 * notifier thread, through the mount itself.  No entry is invalidated: the
 * kernel keeps a name it looked up for at most 1 s (fs_dir.c, ENTRY_TIMEOUT),
 * so a context deleted or renamed through the HTTP shim or MCP may keep its old
 * entry that long; what is then asked of it answers ENOENT.
 *
 * Threads: libfuse's session loop and workers (fs_run), the notifier
 * (fs_notifier_run); both are started by main.c.
 */
#ifndef MCPFS_FS_H
#define MCPFS_FS_H

#include <stdbool.h>
#include "mcpfs/store.h"

struct fs;
struct fuse_args;

/* Checks that mountpoint can be mounted on: an existing, empty directory.  0,
 * or -errno with why naming the value and what to do: -EBUSY "mount point '/x'
 * is already mounted (mcpfs)..." when an mcpfs is mounted there, -ENOTCONN
 * with the fusermount3 -uz advice when a dead FUSE mount (a crashed daemon)
 * is in the way, -ENOTEMPTY, -ENOTDIR, -ENOENT.  Reads /proc/self/mountinfo. */
int fs_mountpoint_check(const char *mountpoint, char *why, size_t whylen);

/* Creates the session and mounts at mountpoint (which must be an empty
 * directory).  args are the FUSE arguments (-o options not ours); consumed.
 * 0, or -errno with why naming the value: "mount point '/x' is not empty". */
int fs_new(struct store *st, struct fuse_args *args, const char *mountpoint, struct fs **ret,
	   char *why, size_t whylen);

/* Detaches from the terminal unless foreground (fuse_daemonize). */
int fs_daemonize(struct fs *fs, bool foreground);

/* Serves requests until unmounted or signalled (SIGINT, SIGTERM, SIGHUP). */
int fs_run(struct fs *fs, unsigned max_threads);

/* The notifier thread's body; returns after fs_notifier_stop(). */
void *fs_notifier_run(void *fs);
void fs_notifier_stop(struct fs *fs);

/* Unmounts (idempotent). */
void fs_unmount(struct fs *fs);

/* Frees; the session loop and the notifier must have returned.  NULL-safe. */
void fs_free(struct fs *fs);

#endif
