/* fsync_fault.c — an LD_PRELOAD library for the tests: holds or fails fsync(2)
 * and fdatasync(2) of files whose path contains MCPFS_FAULT_MATCH, as told by
 * files in the directory MCPFS_FAULT_DIR, so that the daemon has no test hooks:
 *
 *   DIR/hold   while it exists, a matching sync waits (DIR/held exists while one
 *              does), then runs;
 *   DIR/fail   the next matching sync removes it and fails with EIO without
 *              syncing (one failure per file created).
 *
 * Built by the tests (tests/integration/test_journal_faults.py) with cc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int matches(int fd)
{
	const char *want = getenv("MCPFS_FAULT_MATCH");
	char link[64], path[PATH_MAX];
	ssize_t n;

	if (!want || !*want || !getenv("MCPFS_FAULT_DIR"))
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return 0;
	path[n] = '\0';
	return strstr(path, want) != NULL;
}

static void ctl_path(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", getenv("MCPFS_FAULT_DIR"), name);
}

/* 1 when the sync must fail, after any hold. */
static int fault(int fd)
{
	char hold[PATH_MAX], held[PATH_MAX], fail[PATH_MAX];
	struct timespec tick = {0, 5 * 1000 * 1000};

	if (!matches(fd))
		return 0;
	ctl_path(hold, sizeof(hold), "hold");
	ctl_path(held, sizeof(held), "held");
	ctl_path(fail, sizeof(fail), "fail");
	if (access(hold, F_OK) == 0) {
		int h = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (h >= 0)
			close(h);
		while (access(hold, F_OK) == 0)
			nanosleep(&tick, NULL);
		unlink(held);
	}
	return unlink(fail) == 0;
}

int fsync(int fd)
{
	static int (*real)(int);
	int saved = errno;

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	if (fault(fd)) {
		errno = EIO;
		return -1;
	}
	errno = saved;
	return real(fd);
}

int fdatasync(int fd)
{
	static int (*real)(int);
	int saved = errno;

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	if (fault(fd)) {
		errno = EIO;
		return -1;
	}
	errno = saved;
	return real(fd);
}
