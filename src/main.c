/* main.c — options to configuration, start-up errors, daemonizing, threads and
 * signals.
 *
 * Threads (the only place they are named): libfuse's session loop and its
 * workers (fs_run, at most FUSE_THREADS, never waiting on the model), the
 * network thread (claude_run: one curl multi handle for every call), and the
 * notifier (fs_notifier_run: inotify events through the mount).  The store's
 * lock is the one lock they share.  Threads start after fuse_daemonize(),
 * since fork() keeps only the calling thread.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_opt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcpfs/claude.h"
#include "mcpfs/fs.h"
#include "mcpfs/log.h"
#include "mcpfs/options.h"
#include "mcpfs/store.h"

#define FUSE_THREADS 32
#define KEY_MAX 4096

static void die(const char *why)
{
	fprintf(stderr, "mcpfs: %s\n", why);
	exit(1);
}

/* Reads the API key from a file that only its owner can read. */
static char *read_key_file(const char *path, char *why, size_t whylen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(why, whylen, "cannot read API key file '%s': %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (st.st_mode & 077) {
		snprintf(why, whylen, "API key file '%s' is readable by group or others (mode %04o): "
			 "chmod 600 it", path, (unsigned)(st.st_mode & 07777));
		close(fd);
		return NULL;
	}
	char *key = calloc(1, KEY_MAX + 1);
	ssize_t n = key ? read(fd, key, KEY_MAX) : -1;
	close(fd);
	while (n > 0 && (key[n - 1] == '\n' || key[n - 1] == '\r' || key[n - 1] == ' '))
		key[--n] = '\0';
	if (n <= 0) {
		snprintf(why, whylen, "API key file '%s' is empty", path);
		free(key);
		return NULL;
	}
	return key;
}

static void *net_thread(void *c)
{
	claude_run(c);
	return NULL;
}

struct daemon {
	struct options opt;
	struct store *st;
	struct claude *net;
	struct fs *fs;
	char *key;
};

static void setup(struct daemon *d, struct fuse_args *args)
{
	char why[1024];
	if (options_default_state_dir(&d->opt, why, sizeof(why)) < 0)
		die(why);
	if (!d->opt.mountpoint)
		die(d->opt.no_mount ? "--no-mount needs the HTTP shim, which this build does not have"
				    : "no mount point given (see --help)");
	if (d->opt.http)
		die("--http: the HTTP shim is not part of this build yet");
	if (d->opt.api_key_file && !(d->key = read_key_file(d->opt.api_key_file, why, sizeof(why))))
		die(why);
	if (store_open(d->opt.state_dir, d->opt.defaults, &d->st, why, sizeof(why)) < 0)
		die(why);
	const char *key = d->key ? d->key : getenv("ANTHROPIC_API_KEY");
	const char *token = getenv("ANTHROPIC_AUTH_TOKEN");
	const char *base = getenv("ANTHROPIC_BASE_URL");
	struct claude_config cc = {base && *base ? base : NULL, key && *key ? key : NULL,
				   token && *token ? token : NULL};
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		die("cannot initialise libcurl");
	if (claude_new(&cc, d->st, &d->net) < 0) {
		snprintf(why, sizeof(why), "invalid ANTHROPIC_BASE_URL '%s' (http:// or https://)",
			 base ? base : "");
		die(why);
	}
	if (d->key)
		explicit_bzero(d->key, strlen(d->key));
	store_set_transport(d->st, claude_transport(), d->net);
	store_set_info(d->st, "base_url", base && *base ? base : "https://api.anthropic.com");
	store_set_info(d->st, "api_key", cc.api_key || cc.auth_token ? "set" : "missing");
	store_set_info(d->st, "http", "off");
	if (fs_new(d->st, args, d->opt.mountpoint, &d->fs, why, sizeof(why)) < 0)
		die(why);
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct daemon d;
	char why[1024];
	memset(&d, 0, sizeof(d));
	if (options_parse(&args, &d.opt, why, sizeof(why)) < 0)
		die(why);
	if (d.opt.help || d.opt.version) {
		if (d.opt.help)
			options_print_help(stdout, "mcpfs");
		else
			printf("mcpfs %s\n", MCPFS_VERSION);
		fuse_opt_free_args(&args);
		options_done(&d.opt);
		return 0;
	}
	log_level = d.opt.debug ? LOG_DEBUG : LOG_INFO;
	fuse_opt_add_arg(&args, "-osubtype=mcpfs,fsname=mcpfs");
	setup(&d, &args);
	log_open(!d.opt.foreground);
	if (fs_daemonize(d.fs, d.opt.foreground) < 0)
		die("cannot daemonize");
	pthread_t net, notifier;
	if (pthread_create(&net, NULL, net_thread, d.net) != 0 ||
	    pthread_create(&notifier, NULL, fs_notifier_run, d.fs) != 0) {
		log_error("cannot start threads");
		fs_free(d.fs);
		return 1;
	}
	log_info("mounted on '%s', state in '%s'", d.opt.mountpoint, d.opt.state_dir);
	int r = fs_run(d.fs, FUSE_THREADS);
	/* Unmount first: the notifier may be inside a call on the mount, which
	 * returns once the connection is gone. */
	fs_unmount(d.fs);
	fs_stop_notifier(d.fs);
	pthread_join(notifier, NULL);
	claude_stop(d.net);
	pthread_join(net, NULL);
	store_set_transport(d.st, NULL, NULL);
	fs_free(d.fs);
	claude_free(d.net);
	store_free(d.st);
	fuse_opt_free_args(&args);
	free(d.key);
	options_done(&d.opt);
	curl_global_cleanup();
	log_info("unmounted");
	return r < 0 ? 1 : 0;
}
