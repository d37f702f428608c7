/* fs.c — session setup, the loop, and the notifier thread (see fs.h).
 *
 * FUSE raises no inotify events for a daemon's own changes, so `inotifywait -e
 * modify,close_write output` would never fire.  The notifier makes them happen
 * the only way the kernel reports them: by changing the file through the mount.
 * While a reply grows it truncates `output` to its current size (a no-op for
 * us, IN_MODIFY for watchers), at most every NOTIFY_MS per context (longer
 * when a pass over many streaming contexts takes long); when the
 * reply ends it opens `output` for writing and closes it (IN_CLOSE_WRITE).  It
 * runs in its own thread, holding no lock, because those calls come back to our
 * own handlers; fs_io.c lets only this thread open `output` for writing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fs_impl.h"
#include "mcpfs/clock.h"
#include "mcpfs/log.h"

#define NOTIFY_MS 100   /* shortest time between two events of one context */
#define NOTIFY_BUSY 4   /* wait at least this many times the last pass's duration */

static int check_mountpoint(const char *path, char *why, size_t whylen)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		int e = errno;
		snprintf(why, whylen, "mount point '%s': %s", path, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, whylen, "mount point '%s' is not a directory", path);
		return -ENOTDIR;
	}
	DIR *d = opendir(path);
	struct dirent *de;
	int r = 0;
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			r = -ENOTEMPTY;
	if (d)
		closedir(d);
	if (r < 0)
		snprintf(why, whylen, "mount point '%s' is not empty", path);
	return r;
}

int fs_new(struct store *st, struct fuse_args *args, const char *mountpoint, struct fs **ret,
	   char *why, size_t whylen)
{
	int r = check_mountpoint(mountpoint, why, whylen);
	if (r < 0)
		return r;
	struct fs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->st = st;
	fs->uid = getuid();
	fs->gid = getgid();
	fs->mount_ms = clock_wall_ms();
	fs->mountpoint = realpath(mountpoint, NULL);
	pthread_mutex_init(&fs->park_lock, NULL);
	pthread_mutex_init(&fs->scratch_lock, NULL);
	pthread_mutex_init(&fs->note_lock, NULL);
	pthread_mutex_init(&fs->handles_lock, NULL);
	for (size_t i = 0; i < FS_HANDLE_LOCKS; i++) {
		pthread_mutex_init(&fs->handle_locks[i], NULL);
		pthread_cond_init(&fs->handle_conds[i], NULL);
	}
	pthread_cond_init(&fs->note_cond, NULL);
	map_init(&fs->parked);
	map_init(&fs->scratch_by_name);
	map_init(&fs->scratch_by_ino);
	map_init(&fs->touch);
	map_init(&fs->closed);
	fs->se = fs->mountpoint ? fuse_session_new(args, &fs_ops, sizeof(fs_ops), fs) : NULL;
	if (!fs->se) {
		snprintf(why, whylen, "cannot start a FUSE session for '%s'", mountpoint);
		fs_free(fs);
		return -EINVAL;
	}
	if (fuse_session_mount(fs->se, fs->mountpoint) != 0) {
		snprintf(why, whylen, "cannot mount on '%s' (is /dev/fuse there, and fusermount3?)",
			 mountpoint);
		fs_free(fs);
		return -EIO;
	}
	fs->mounted = true;
	if (store_observe(st, fs_on_change, fs) < 0 || fuse_set_signal_handlers(fs->se) != 0) {
		snprintf(why, whylen, "cannot set up the mount on '%s'", mountpoint);
		fs_free(fs);
		return -EIO;
	}
	*ret = fs;
	return 0;
}

int fs_daemonize(struct fs *fs, bool foreground)
{
	return fuse_daemonize(foreground) == 0 ? 0 : -EIO;
}

int fs_run(struct fs *fs, unsigned max_threads)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	fuse_loop_cfg_set_max_threads(cfg, max_threads);
	int r = fuse_session_loop_mt(fs->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return r < 0 ? r : 0;
}

void fs_unmount(struct fs *fs)
{
	if (fs && fs->mounted) {
		fuse_remove_signal_handlers(fs->se);
		fuse_session_unmount(fs->se);
		fs->mounted = false;
	}
}

void fs_note(struct fs *fs, uint64_t ctx, unsigned bits)
{
	pthread_mutex_lock(&fs->note_lock);
	uintptr_t old = (uintptr_t)map_get_id(&fs->touch, ctx);
	if (old)
		map_del_id(&fs->touch, ctx);
	map_put_id(&fs->touch, ctx, (void *)(old | bits));
	pthread_cond_signal(&fs->note_cond);
	pthread_mutex_unlock(&fs->note_lock);
}

/* Raises the inotify events for one context's output. */
static void notify_output(struct fs *fs, uint64_t ctx)
{
	char name[STORE_NAME_MAX + 1], path[4400];
	struct context_info ci;
	if (store_name(fs->st, ctx, name, sizeof(name)) < 0 || context_info(fs->st, ctx, &ci) < 0) {
		map_del_id(&fs->closed, ctx);  /* deleted: ids are never reused */
		return;
	}
	snprintf(path, sizeof(path), "%s/%s/output", fs->mountpoint, name);
	if (truncate(path, (off_t)ci.output_size) < 0)
		return;
	/* One IN_CLOSE_WRITE per finished turn. */
	uintptr_t closed = (uintptr_t)map_get_id(&fs->closed, ctx);
	if (ci.idle && ci.turn && closed != ci.turn) {
		/* Raw calls, as in notifier_own_files(): a descriptor of this
		 * thread's own file table is no descriptor of the process, and a
		 * sanitizer that took it for one would lose track of the one with
		 * that number elsewhere (/dev/fuse, most often). */
		long fd = syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CLOEXEC);
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
static void notifier_own_files(struct fs *fs)
{
	int dev = fuse_session_fd(fs->se);
	if (unshare(CLONE_FILES) < 0) {
		log_warn("notifier: cannot unshare its file table: %s", strerror(errno));
		return;
	}
	if (dev >= 0)
		syscall(SYS_close, dev);
}

void *fs_notifier_run(void *arg)
{
	struct fs *fs = arg;
	fs->notifier_tid = gettid();
	notifier_own_files(fs);
	pthread_mutex_lock(&fs->note_lock);
	while (!fs->note_stop) {
		if (!fs->touch.count) {
			pthread_cond_wait(&fs->note_cond, &fs->note_lock);
			continue;
		}
		struct map pending = fs->touch;
		map_init(&fs->touch);
		pthread_mutex_unlock(&fs->note_lock);
		int64_t pass_start = clock_mono_ms();
		for (size_t i = 0; i < pending.nslots; i++)
			for (struct map_node *n = pending.slots[i]; n; n = n->next) {
				uint64_t id;
				memcpy(&id, n->key, sizeof(id));
				if ((uintptr_t)n->value & NOTE_MODIFY)
					notify_output(fs, id);
			}
		map_done(&pending);
		/* Coalesce: changes in the next NOTIFY_MS make one event per context.
		 * Each event is a truncate through the mount (~4 FUSE round trips), so
		 * with many streams at once a pass can take a large share of a core:
		 * wait NOTIFY_BUSY times as long as the pass took, which keeps the
		 * notifier under ~1/(NOTIFY_BUSY+1) of a core (bench/run, section 3). */
		int64_t wait_ms = (clock_mono_ms() - pass_start) * NOTIFY_BUSY;
		if (wait_ms < NOTIFY_MS)
			wait_ms = NOTIFY_MS;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += wait_ms / 1000;
		ts.tv_nsec += (wait_ms % 1000) * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_mutex_lock(&fs->note_lock);
		if (!fs->note_stop)
			pthread_cond_timedwait(&fs->note_cond, &fs->note_lock, &ts);
	}
	pthread_mutex_unlock(&fs->note_lock);
	return NULL;
}

void fs_stop_notifier(struct fs *fs)
{
	pthread_mutex_lock(&fs->note_lock);
	fs->note_stop = true;
	pthread_cond_signal(&fs->note_cond);
	pthread_mutex_unlock(&fs->note_lock);
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	fs_unmount(fs);
	if (fs->se)
		fuse_session_destroy(fs->se);
	fs_handles_free(fs);
	/* Requests still parked belong to the session just destroyed. */
	for (size_t i = 0; i < fs->parked.nslots; i++)
		for (struct map_node *n = fs->parked.slots[i]; n; n = n->next)
			for (struct parked *p = n->value, *next; p; p = next) {
				next = p->next;
				free(p);
			}
	map_done(&fs->parked);
	map_done(&fs->touch);
	map_done(&fs->closed);
	fs_scratch_free_all(fs);
	free(fs->mountpoint);
	free(fs);
}
