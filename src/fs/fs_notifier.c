/* fs_notifier.c — the notifier thread: inotify events for the daemon's own
 * changes (see fs.h).
 *
 * FUSE raises no inotify events for a daemon's own changes, so `inotifywait -e
 * modify,close_write output` would never fire.  The notifier makes them happen
 * the only way the kernel reports them: by changing the file through the mount.
 * While a reply grows it truncates `output` to its current size and
 * `transcript` (no-ops for us, IN_MODIFY for watchers), at most every NOTIFY_MS
 * per context (longer when a pass over many streaming contexts takes long);
 * when the reply ends it opens `output` for writing and closes it
 * (IN_CLOSE_WRITE).  It
 * runs in its own thread, holding no lock, because those calls come back to our
 * own handlers; fs_io.c lets only this thread open `output` for writing.
 *
 * It never touches a path outside the mount: after `fusermount3 -uz` the mount
 * point is an ordinary directory again, where MOUNTPOINT/NAME/output may be a
 * user's file (which a truncate by path cut to the reply's size).  So each pass
 * opens the mount point, checks that it is this mount's root (device and inode,
 * read without a request: AT_STATX_DONT_SYNC), makes it the thread's working
 * directory (the thread has its own, CLONE_FS) and works by relative paths from
 * there; while the mount point is anything else the pass does nothing.  No
 * descriptor of the mount is kept between passes: one would keep a lazily
 * unmounted mount alive, and the daemon with it.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "fs_impl.h"
#include "mcpfs/clock.h"
#include "mcpfs/log.h"

#define NOTIFY_MS 100 /* shortest time between two events of one context */
#define NOTIFY_BUSY 4 /* wait at least this many times the last pass's duration */

void fs_notifier_add(struct fs *fs, uint64_t ctx, unsigned bits)
{
	pthread_mutex_lock(&fs->notifier_lock);
	uintptr_t old = (uintptr_t)map_get_id(&fs->touch, ctx);
	if ((old | bits) != old) {
		if (old)
			map_del_id(&fs->touch, ctx);
		map_put_id(&fs->touch, ctx, (void *)(old | bits));
	}
	/* Only an idle notifier is woken: one that waits out its pause after a
	 * pass finds the changes when it ends.  A wake-up per delta would cost a
	 * futex call here and a pass there per delta (bench/run, section 9). */
	if (fs->notifier_idle)
		pthread_cond_signal(&fs->notifier_cond);
	pthread_mutex_unlock(&fs->notifier_lock);
}

/* Raises the inotify events for one context's output and transcript. */
static void notify_output(struct fs *fs, uint64_t ctx, unsigned bits)
{
	char name[STORE_NAME_MAX + 1], path[STORE_NAME_MAX + 16];
	struct context_info ci;
	if (store_name(fs->st, ctx, name, sizeof(name)) < 0 || context_info(fs->st, ctx, &ci) < 0) {
		map_del_id(&fs->closed, ctx); /* deleted: ids are never reused */
		return;
	}
	/* Relative to the working directory, the mount's root (notifier_enter).
	 * Any size for the transcript: a truncate of a rendering changes nothing
	 * (fs_io_truncate_path), and 0 spares a rendering to learn its size. */
	snprintf(path, sizeof(path), "%s/transcript", name);
	if ((bits & NOTIFIER_TRANSCRIPT) && truncate(path, 0) < 0)
		return;
	if (!(bits & NOTIFIER_OUTPUT))
		return;
	snprintf(path, sizeof(path), "%s/output", name);
	if (truncate(path, (off_t)ci.output_size) < 0)
		return;
	/* One IN_CLOSE_WRITE per finished turn. */
	uintptr_t closed = (uintptr_t)map_get_id(&fs->closed, ctx);
	if (ci.idle && ci.turn && closed != ci.turn) {
		/* Raw calls, as in notifier_own_files(): a descriptor of this
		 * thread's own file table is no descriptor of the process, and a
		 * sanitizer that took it for one would lose track of the one with
		 * that number elsewhere (/dev/fuse, most often). */
		long fd = syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0)
			syscall(SYS_close, fd);
		map_del_id(&fs->closed, ctx);
		map_put_id(&fs->closed, ctx, (void *)(uintptr_t)ci.turn);
	}
}

/* The notifier's calls on our own mount must not outlive a SIGKILL.  Once a
 * worker has read such a request, the kernel waits uninterruptibly for the
 * reply; a killed process keeps its file table, and with it /dev/fuse (and the
 * flock'd state lock), until that thread returns, and the connection is only
 * aborted when /dev/fuse is closed: an unkillable zombie and a hung mount.
 * So this thread gets a file table of its own without /dev/fuse.  The other
 * descriptors it copies live as long as the daemon anyway.  A raw close: a
 * sanitizer's interceptor would take it for the whole process's. */
static bool notifier_own_files(struct fs *fs)
{
	int dev = fuse_session_fd(fs->se);
	if (unshare(CLONE_FILES | CLONE_FS) < 0) {
		log_warn("notifier: cannot unshare its file table: %s", strerror(errno));
		return false;
	}
	if (dev >= 0)
		syscall(SYS_close, dev);
	return true;
}

/* Makes the mount's root this thread's working directory: 0, or -ESTALE when
 * the mount point is not this mount (lazily unmounted, or mounted over). */
static int notifier_enter(struct fs *fs)
{
	struct statx sx;
	long fd = syscall(SYS_openat, AT_FDCWD, fs->mountpoint,
			  O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = -ESTALE;
	if (syscall(SYS_statx, (int)fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_INO, &sx) ==
		0 &&
	    sx.stx_ino == FUSE_ROOT_ID && makedev(sx.stx_dev_major, sx.stx_dev_minor) == fs->dev)
		r = syscall(SYS_fchdir, (int)fd) == 0 ? 0 : -errno;
	syscall(SYS_close, fd);
	return r;
}

/* Leaves the mount, so that no reference to it outlives the pass. */
static void notifier_leave(void)
{
	if (chdir("/") < 0)
		log_debug("notifier: chdir /: %s", strerror(errno));
}

/* Waits on notifier_cond until mono_ms (CLOCK_MONOTONIC) or a signal. */
static void notifier_wait_until(struct fs *fs, int64_t mono_ms)
{
	int64_t wait_ms = mono_ms - clock_mono_ms();
	if (wait_ms <= 0)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += wait_ms / 1000;
	ts.tv_nsec += (wait_ms % 1000) * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_cond_timedwait(&fs->notifier_cond, &fs->notifier_lock, &ts);
}

void *fs_notifier_run(void *arg)
{
	struct fs *fs = arg;
	fs->notifier_tid = gettid();
	/* Without a working directory of its own it cannot work relative to the
	 * mount's root without moving the whole daemon's: it then raises no events. */
	bool can = notifier_own_files(fs) && fs->have_dev;
	int64_t next_pass = 0; /* no pass before this (clock_mono_ms) */
	pthread_mutex_lock(&fs->notifier_lock);
	while (!fs->notifier_stop) {
		if (!fs->touch.count) {
			fs->notifier_idle = true;
			pthread_cond_wait(&fs->notifier_cond, &fs->notifier_lock);
			fs->notifier_idle = false;
			continue;
		}
		if (clock_mono_ms() < next_pass) {
			/* Woken only by fs_notifier_stop meanwhile. */
			notifier_wait_until(fs, next_pass);
			continue;
		}
		struct map pending = fs->touch;
		map_init(&fs->touch);
		pthread_mutex_unlock(&fs->notifier_lock);
		int64_t pass_start = clock_mono_ms();
		bool inside = can && notifier_enter(fs) == 0;
		for (size_t i = 0; inside && i < pending.nslots; i++)
			for (struct map_node *n = pending.slots[i]; n; n = n->next) {
				uint64_t id;
				memcpy(&id, n->key, sizeof(id));
				unsigned bits = (unsigned)(uintptr_t)n->value;
				if (bits & (NOTIFIER_OUTPUT | NOTIFIER_TRANSCRIPT))
					notify_output(fs, id, bits);
			}
		if (inside)
			notifier_leave();
		map_done(&pending);
		/* Coalesce: changes in the next NOTIFY_MS make one event per context.
		 * Each event is a truncate through the mount (~4 FUSE round trips), so
		 * with many streams at once a pass can take a large share of a core:
		 * wait NOTIFY_BUSY times as long as the pass took, which keeps the
		 * notifier under ~1/(NOTIFY_BUSY+1) of a core (bench/run, section 3). */
		int64_t now = clock_mono_ms(), wait_ms = (now - pass_start) * NOTIFY_BUSY;
		next_pass = now + (wait_ms < NOTIFY_MS ? NOTIFY_MS : wait_ms);
		pthread_mutex_lock(&fs->notifier_lock);
	}
	pthread_mutex_unlock(&fs->notifier_lock);
	return NULL;
}

void fs_notifier_stop(struct fs *fs)
{
	pthread_mutex_lock(&fs->notifier_lock);
	fs->notifier_stop = true;
	pthread_cond_signal(&fs->notifier_cond);
	pthread_mutex_unlock(&fs->notifier_lock);
}
