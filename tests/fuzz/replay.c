/* replay.c — runs a fuzz target over its corpus, without libFuzzer.
 *
 * Linked with one fuzz_<target>.c into test_fuzz_<target> (tests/fuzz/meson.build),
 * it feeds every file of the directories named on the command line, or of CORPUS
 * when there are none, to LLVMFuzzerTestOneInput, in name order.  A plain file
 * named on the command line is replayed alone (reproducing a crash).  Each input
 * is handed over in a heap copy of its exact size, so a sanitizer build catches
 * a read past its end.  A failed invariant aborts; the name of the input being
 * replayed is printed first.  Ends with "N passed, 0 failed" (N inputs); an
 * empty or unreadable corpus fails, since a replay of nothing proves nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

#ifndef CORPUS
#error "CORPUS must name the corpus directory"
#endif

/* The input being replayed, for the message of a crash. */
static const char *current;

/* Provided by ASan and UBSan when linked in: runs before a sanitizer exits. */
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

static void say_current(void)
{
	static const char head[] = "replay: crashed on input ";
	ssize_t w;

	if (!current)
		return;
	w = write(STDERR_FILENO, head, sizeof(head) - 1);
	w = write(STDERR_FILENO, current, strlen(current));
	w = write(STDERR_FILENO, "\n", 1);
	(void)w;
}

static void on_fatal_signal(int sig)
{
	say_current();
	signal(sig, SIG_DFL);
	raise(sig);
}

static int read_file(const char *path, uint8_t **data, size_t *size)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	int r = 0;

	*data = NULL;
	*size = 0;
	if (!f)
		return -errno;
	if (fstat(fileno(f), &st) < 0 || st.st_size < 0) {
		r = -errno;
		goto out;
	}
	*size = (size_t)st.st_size;
	*data = malloc(*size ? *size : 1);
	if (!*data) {
		r = -ENOMEM;
		goto out;
	}
	if (*size && fread(*data, 1, *size, f) != *size)
		r = -EIO;
out:
	if (r < 0) {
		free(*data);
		*data = NULL;
	}
	fclose(f);
	return r;
}

/* Replays one file; 0, or -errno when it cannot be read. */
static int replay_file(const char *path)
{
	uint8_t *data;
	size_t size;
	int r = read_file(path, &data, &size);

	if (r < 0) {
		fprintf(stderr, "replay: cannot read '%s': %s\n", path, strerror(-r));
		return r;
	}
	current = path;
	LLVMFuzzerTestOneInput(data, size);
	current = NULL;
	free(data);
	return 0;
}

static int skip_dots(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Replays every file of dir; adds to *count.  0, or -errno. */
static int replay_dir(const char *dir, size_t *count)
{
	struct dirent **names;
	int n = scandir(dir, &names, skip_dots, alphasort), r = 0;

	if (n < 0) {
		fprintf(stderr, "replay: cannot read directory '%s': %s\n", dir, strerror(errno));
		return -errno;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (r == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			r = replay_file(path);
			*count += r == 0;
		}
		free(names[i]);
	}
	free(names);
	return r;
}

int main(int argc, char **argv)
{
	static const int fatal[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
	size_t count = 0;
	int r = 0;

	for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
		signal(fatal[i], on_fatal_signal);
	if (__sanitizer_set_death_callback)
		__sanitizer_set_death_callback(say_current);
	if (argc < 2)
		r = replay_dir(CORPUS, &count);
	for (int i = 1; i < argc && r == 0; i++) {
		struct stat st;

		if (stat(argv[i], &st) == 0 && S_ISREG(st.st_mode)) {
			r = replay_file(argv[i]);
			count += r == 0;
		} else {
			r = replay_dir(argv[i], &count);
		}
	}
	if (r == 0 && count == 0) {
		fprintf(stderr, "replay: no input to replay\n");
		r = -ENOENT;
	}
	printf("%zu passed, %d failed\n", count, r < 0);
	return r < 0;
}
