/* fs.c — session setup, the loop, mounting and unmounting, the adapter's end
 * (see fs.h).  The notifier thread is fs_notifier.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "fs_impl.h"
#include "mcpfs/clock.h"
#include "mcpfs/log.h"

/* The file system type mounted exactly at path ("fuse.mcpfs"), from
 * /proc/self/mountinfo, or "" (path is no mount point).  The last mount there
 * wins: it is the one a lookup sees. */
static void mounted_type(const char *path, char *type, size_t len)
{
	type[0] = '\0';
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	while (f && fgets(line, sizeof(line), f)) {
		/* "36 35 98:0 / /mnt/x rw,noatime - fuse.mcpfs mcpfs rw,..."; the
		 * mount point escapes space, tab, newline and backslash as \ooo. */
		char mnt[PATH_MAX], fstype[64], *sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(sep + 3, "%63s", fstype) != 1)
			continue;
		char *o = mnt;
		for (const char *p = mnt; *p; p++) {
			if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] && p[3]) {
				*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
				p += 3;
			} else {
				*o++ = *p;
			}
		}
		*o = '\0';
		if (!strcmp(mnt, path))
			snprintf(type, len, "%s", fstype);
	}
	if (f)
		fclose(f);
}

int fs_mountpoint_check(const char *path, char *why, size_t whylen)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		int e = errno;
		if (e == ENOTCONN)
			snprintf(why, whylen,
				 "mount point '%s': %s (an mcpfs that stopped without "
				 "unmounting?): run 'fusermount3 -uz %s' and mount again",
				 path, strerror(e), path);
		else
			snprintf(why, whylen, "mount point '%s': %s", path, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, whylen, "mount point '%s' is not a directory", path);
		return -ENOTDIR;
	}
	char real[PATH_MAX], type[64] = "";
	if (realpath(path, real))
		mounted_type(real, type, sizeof(type));
	if (!strcmp(type, "fuse.mcpfs")) {
		snprintf(why, whylen,
			 "mount point '%s' is already mounted (mcpfs): unmount it "
			 "first with 'fusermount3 -u %s'",
			 path, path);
		return -EBUSY;
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
	int r = fs_mountpoint_check(mountpoint, why, whylen);
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
	pthread_mutex_init(&fs->notifier_lock, NULL);
	pthread_mutex_init(&fs->handles_lock, NULL);
	for (size_t i = 0; i < FS_HANDLE_LOCKS; i++) {
		pthread_mutex_init(&fs->handle_locks[i], NULL);
		pthread_cond_init(&fs->handle_conds[i], NULL);
	}
	pthread_cond_init(&fs->notifier_cond, NULL);
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
	/* The root's device, from the mount alone: a request could not be served
	 * before the session loop runs. */
	struct statx sx;
	if (statx(AT_FDCWD, fs->mountpoint, AT_STATX_DONT_SYNC, STATX_INO, &sx) == 0 &&
	    sx.stx_ino == FUSE_ROOT_ID) {
		fs->dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
		fs->have_dev = true;
	}
	if (store_observe(st, fs_park_on_change, fs) < 0 || fuse_set_signal_handlers(fs->se) != 0) {
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
		fs_park_drain(fs); /* answered while /dev/fuse is still open */
		fuse_remove_signal_handlers(fs->se);
		fuse_session_unmount(fs->se);
		fs->mounted = false;
	}
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	fs_unmount(fs);
	fs_park_drain(fs); /* nothing left after fs_unmount's */
	if (fs->se)
		fuse_session_destroy(fs->se);
	fs_io_free_all(fs);
	map_done(&fs->parked);
	map_done(&fs->touch);
	map_done(&fs->closed);
	fs_scratch_free_all(fs);
	free(fs->mountpoint);
	free(fs);
}
