/* main.c — options to configuration, start-up errors, daemonizing, threads and
 * signals.
 *
 * Threads (the only place they are named): libfuse's session loop and its
 * workers (fs_run, at most FUSE_THREADS, never waiting on the model), the
 * network thread (claude_run: one curl multi handle for every call), the
 * commit threads (commit_run: fsync of replies' ends), the notifier (fs_notifier_run: inotify
 * events through the mount), and with
 * --http libmicrohttpd's pool and the shim's accept thread (shim_start) and
 * the shim's heartbeat timer (shim_stream_timer_run).  The store's lock is the one lock they share.
 * Threads start after fuse_daemonize(), since fork() keeps only the calling thread.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_opt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <limits.h>
#include <unistd.h>

#include "mcpfs/claude.h"
#include "mcpfs/fs.h"
#include "mcpfs/log.h"
#include "mcpfs/mcp.h"
#include "mcpfs/options.h"
#include "mcpfs/pg.h"
#include "mcpfs/prices.h"
#include "mcpfs/shim.h"
#include "mcpfs/storage_copy.h"
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
	/* O_NONBLOCK: a FIFO would block the open until a writer came. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(why, whylen, "cannot read API key file '%s': %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "API key file '%s' is not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_mode & 077) {
		snprintf(why, whylen,
			 "API key file '%s' is readable by group or others (mode %04o): "
			 "chmod 600 it",
			 path, (unsigned)(st.st_mode & 07777));
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

/* Two, so that one journal's slow fsync does not hold every other reply's end. */
#define COMMIT_THREADS 2

static void *commit_thread(void *st)
{
	commit_run(st);
	return NULL;
}

struct daemon {
	struct options opt;
	struct store *st;
	struct storage *engine; /* --store's, under st (freed after it); NULL: the state dir */
	struct claude *net;
	struct fs *fs;	   /* NULL with --no-mount */
	struct shim *shim; /* NULL without --http */
	pthread_t shim_timer;
	bool shim_timer_started;
	char *key;
	bool no_key;	      /* neither an API key nor an auth token */
	char where[PATH_MAX]; /* the state dir, or --store's URL with its password masked */
};

/* A mount point, or --no-mount with --http (which then runs in the foreground). */
static void setup_mode(struct daemon *d)
{
	char why[1024];
	if (d->opt.no_mount && !d->opt.http)
		die("--no-mount needs --http[=ADDR:PORT]");
	if (d->opt.no_mount && d->opt.mountpoint) {
		snprintf(why, sizeof(why), "--no-mount takes no mount point (got '%s')",
			 d->opt.mountpoint);
		die(why);
	}
	if (!d->opt.no_mount && !d->opt.mountpoint)
		die("no mount point given (see --help)");
	if (d->opt.no_mount)
		d->opt.foreground = true;
}

/* The price table: --prices=FILE, else the copy of data/prices.tsv built
 * into the binary (the same file is installed as DATADIR/mcpfs/prices.tsv,
 * for reading and for copying into a FILE of one's own). */
extern const char prices_builtin[];
extern const unsigned long prices_builtin_len;
static int load_prices(const char *path, struct prices *p, char *why, size_t whylen)
{
	if (path)
		return prices_load(path, p, why, whylen);
	return prices_parse(prices_builtin, prices_builtin_len, "built-in (data/prices.tsv)", p,
			    why, whylen);
}

/* The store: in the state dir, or with --store in PostgreSQL (CONTRACT §12).
 * An unreachable database fails here, before anything is mounted or bound, with
 * pg_store_new's one line naming the URL (password masked). */
static int open_store(struct daemon *d, char *why, size_t whylen)
{
	snprintf(d->where, sizeof(d->where), "%s", d->opt.state_dir);
	if (!d->opt.store)
		return store_open(d->opt.state_dir, d->opt.defaults, &d->st, why, whylen);
	struct storage *engine;
	int r = pg_store_new(d->opt.store, why, whylen, &engine);
	if (r < 0)
		return r;
	pg_mask_url(d->opt.store, d->where, sizeof(d->where));
	d->engine = engine;
	return store_open_on(engine, d->where, d->opt.defaults, &d->st, why, whylen);
}

static void setup(struct daemon *d, struct fuse_args *args)
{
	char why[1024];
	if (options_default_state_dir(&d->opt, why, sizeof(why)) < 0)
		die(why);
	setup_mode(d);
	/* First: a start-up error about the log file goes to the terminal, and
	 * the descriptor outlives fuse_daemonize()'s chdir("/"). */
	int r = d->opt.log_file ? log_open_file(d->opt.log_file) : 0;
	if (r < 0) {
		snprintf(why, sizeof(why), "cannot open log file '%s': %s", d->opt.log_file,
			 strerror(-r));
		die(why);
	}
	/* Before the state directory: mounting twice on one mount point says
	 * "already mounted", not that the state directory is in use. */
	if (!d->opt.no_mount && fs_mountpoint_check(d->opt.mountpoint, why, sizeof(why)) < 0)
		die(why);
	if (d->opt.api_key_file && !(d->key = read_key_file(d->opt.api_key_file, why, sizeof(why))))
		die(why);
	struct prices prices;
	if (load_prices(d->opt.prices, &prices, why, sizeof(why)) < 0)
		die(why);
	if (open_store(d, why, sizeof(why)) < 0) {
		prices_done(&prices);
		die(why);
	}
	store_set_prices(d->st, &prices);
	const char *key = d->key ? d->key : getenv("ANTHROPIC_API_KEY");
	const char *token = getenv("ANTHROPIC_AUTH_TOKEN");
	const char *base = getenv("ANTHROPIC_BASE_URL");
	struct claude_config cc = {base && *base ? base : NULL, key && *key ? key : NULL,
				   token && *token ? token : NULL};
	if (cc.base_url && claude_check_base_url(cc.base_url, why, sizeof(why)) < 0)
		die(why);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		die("cannot initialise libcurl");
	r = claude_new(&cc, d->st, &d->net);
	if (r == -EINVAL)
		die("invalid API key or token: it holds a control character (a newline?)");
	if (r < 0) {
		snprintf(why, sizeof(why), "cannot set up the API transport: %s", strerror(-r));
		die(why);
	}
	if (d->key)
		explicit_bzero(d->key, strlen(d->key));
	store_set_transport(d->st, claude_transport(), d->net);
	char shown[CLAUDE_URL_MAX + 64];
	claude_url_shown(cc.base_url ? cc.base_url : "https://api.anthropic.com", shown,
			 sizeof(shown));
	store_set_info(d->st, "base_url", shown);
	store_set_info(d->st, "api_key", cc.api_key || cc.auth_token ? "set" : "missing");
	d->no_key = !cc.api_key && !cc.auth_token;
	/* Bound before mounting: a port in use leaves nothing mounted behind. */
	struct shim_config hc = {d->opt.http, d->opt.http_token_file};
	if (d->opt.http && shim_new(d->st, &hc, &d->shim, why, sizeof(why)) < 0)
		die(why);
	store_set_info(d->st, "http", d->shim ? shim_address(d->shim) : "off");
	if (!d->opt.no_mount &&
	    fs_new(d->st, args, d->opt.mountpoint, &d->fs, why, sizeof(why)) < 0)
		die(why);
}

/* A missing key is no start-up error (CONTRACT §1): one line on the terminal,
 * and the same line in the log when that is elsewhere (syslog, --log-file). */
static void warn_no_key(const struct daemon *d)
{
	static const char msg[] = "no API key (ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN or "
				  "--api-key-file): the mount works, but every call fails until "
				  "a key is given";
	if (!d->opt.foreground || log_to_file())
		fprintf(stderr, "mcpfs: warning: %s\n", msg);
	log_warn("%s", msg);
}

/* libmicrohttpd's threads and the heartbeat timer; after daemonizing. */
static int shim_threads_start(struct daemon *d)
{
	char why[256];
	if (!d->shim)
		return 0;
	if (shim_start(d->shim, why, sizeof(why)) < 0) {
		log_error("%s", why);
		return -1;
	}
	if (pthread_create(&d->shim_timer, NULL, shim_stream_timer_run, d->shim) != 0) {
		log_error("cannot start threads");
		return -1;
	}
	d->shim_timer_started = true;
	log_info("serving HTTP on http://%s/", shim_address(d->shim));
	return 0;
}

static void shim_threads_stop(struct daemon *d)
{
	shim_stop(d->shim);
	if (d->shim_timer_started)
		pthread_join(d->shim_timer, NULL);
	d->shim_timer_started = false;
}

/* --no-mount: the signals that stop the daemon are taken by sigwait, so they
 * are blocked before any thread starts (threads inherit the mask). */
/* The store keeps a quarter of the soft limit of descriptors for open
 * journals (store.h, STORE_JOURNALS_OPEN_*), and many streams and connections
 * want their own: the usual soft limit of 1024 is raised to the hard one, far
 * higher.  Nothing here uses select(), whose sets end at 1024 (curl polls,
 * libmicrohttpd uses epoll). */
static void raise_nofile_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the limit of open files: %s", strerror(errno));
	}
}

static void block_stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static int wait_for_stop(const sigset_t *set)
{
	int sig = 0;
	sigwait(set, &sig);
	log_info("stopping on signal %d", sig);
	return 0;
}

/* --mcp-stdio: the bridge to a running shim; no state directory, no mount,
 * no daemon.  Exits when stdin ends. */
static int run_mcp_stdio(struct options *o, struct fuse_args *args)
{
	char why[1024] = "";
	if (o->mountpoint || o->no_mount) {
		snprintf(why, sizeof(why),
			 "--mcp-stdio takes no mount point and no --no-mount%s%s%s",
			 o->mountpoint ? " (got '" : "", o->mountpoint ? o->mountpoint : "",
			 o->mountpoint ? "')" : "");
		die(why);
	}
	log_level = o->debug ? LOG_DEBUG : LOG_WARNING;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int r = mcp_bridge_run(o->http, o->http_token_file, why, sizeof(why));
	curl_global_cleanup();
	fuse_opt_free_args(args);
	options_done(o);
	if (r < 0)
		die(why);
	return 0;
}

static void import_note(void *data, const char *name, enum storage_copy_outcome what,
			const char *why)
{
	static const char *const said[] = {"copied", "resumed", "already there", "skipped"};
	FILE *out = what == STORAGE_COPY_SKIPPED ? stderr : stdout;
	fprintf(out, "%s'%s': %s%s%s\n", what == STORAGE_COPY_SKIPPED ? "mcpfs: " : "", name,
		said[what], why ? ": " : "", why ? why : "");
}

/* --store=URL --import=DIR: the contexts of a state dir copied into the
 * database (storage_copy.h: idempotent, resumable), then exit.  Exit 1 when a
 * context was skipped (each named on stderr) or the copy stopped. */
static int run_import(struct options *o, struct fuse_args *args)
{
	char why[1024], masked[PATH_MAX];
	struct storage *from = NULL, *to = NULL;
	struct storage_copy_report rep;
	int r = storage_journal_dir_open(o->import_dir, why, sizeof(why), &from);
	if (r == 0)
		r = pg_store_new(o->store, why, sizeof(why), &to);
	if (r == 0)
		r = storage_copy(from, to, import_note, NULL, &rep, why, sizeof(why));
	pg_mask_url(o->store, masked, sizeof(masked));
	storage_free(from);
	storage_free(to);
	fuse_opt_free_args(args);
	if (r < 0) {
		fprintf(stderr, "mcpfs: import from '%s': %s\n", o->import_dir, why);
		options_done(o);
		return 1;
	}
	printf("imported '%s' into %s: %llu copied, %llu resumed, %llu already there, "
	       "%llu skipped; %llu records\n",
	       o->import_dir, masked, (unsigned long long)rep.copied,
	       (unsigned long long)rep.resumed, (unsigned long long)rep.present,
	       (unsigned long long)rep.skipped, (unsigned long long)rep.records);
	options_done(o);
	return rep.skipped ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct daemon d;
	char why[1024];
	memset(&d, 0, sizeof(d));
	if (options_parse(&args, &d.opt, why, sizeof(why)) < 0)
		die(why);
	if (d.opt.table) {
		int r = options_print_table(stdout, d.opt.table);
		if (r < 0) {
			snprintf(why, sizeof(why),
				 "--options-table: unknown format '%s' "
				 "(tsv, markdown, scdoc, scdoc-keys, bash)",
				 d.opt.table);
			die(why);
		}
		fuse_opt_free_args(&args);
		options_done(&d.opt);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	if (d.opt.help || d.opt.version) {
		if (d.opt.help)
			options_print_help(stdout, "mcpfs");
		else
			printf("mcpfs %s\n", MCPFS_VERSION);
		fuse_opt_free_args(&args);
		options_done(&d.opt);
		return 0;
	}
	if (d.opt.mcp_stdio)
		return run_mcp_stdio(&d.opt, &args);
	if (options_default_store(&d.opt) < 0)
		die("out of memory");
	if (options_check_store(&d.opt, why, sizeof(why)) < 0)
		die(why);
	if (d.opt.import_dir)
		return run_import(&d.opt, &args);
	log_level = d.opt.debug ? LOG_DEBUG : LOG_INFO;
	raise_nofile_limit();
	fuse_opt_add_arg(&args, "-osubtype=mcpfs,fsname=mcpfs");
	setup(&d, &args);
	log_open(!d.opt.foreground);
	if (d.no_key)
		warn_no_key(&d);
	if (d.fs && fs_daemonize(d.fs, d.opt.foreground) < 0)
		die("cannot daemonize");
	sigset_t stop_signals;
	if (!d.fs)
		block_stop_signals(&stop_signals);
	if (store_start(d.st, why, sizeof(why)) < 0) {
		log_error("%s", why);
		fs_free(d.fs);
		return 1;
	}
	pthread_t net, notifier = 0, commit[COMMIT_THREADS];
	int commits = 0;
	while (commits < COMMIT_THREADS &&
	       pthread_create(&commit[commits], NULL, commit_thread, d.st) == 0)
		commits++;
	if (pthread_create(&net, NULL, net_thread, d.net) != 0 ||
	    (d.fs && pthread_create(&notifier, NULL, fs_notifier_run, d.fs) != 0)) {
		log_error("cannot start threads");
		fs_free(d.fs);
		return 1;
	}
	if (shim_threads_start(&d) < 0) {
		fs_free(d.fs);
		return 1;
	}
	int r;
	if (d.fs) {
		log_info("mounted on '%s', state in '%s'", d.opt.mountpoint, d.where);
		r = fs_run(d.fs, FUSE_THREADS);
	} else {
		log_info("no mount; state in '%s'", d.where);
		r = wait_for_stop(&stop_signals);
	}
	/* HTTP first: its streams hold turns, and no request may start while
	 * the rest goes down. */
	shim_threads_stop(&d);
	/* No new calls from here: turns still queued load as interrupted next
	 * time instead of failing against a stopped transport.  Before the
	 * unmount: the end of each call in flight answers its parked readers
	 * through /dev/fuse, which the unmount closes. */
	store_set_transport(d.st, NULL, NULL);
	claude_stop(d.net);
	pthread_join(net, NULL);
	/* The ends of those calls are made durable, and their readers answered,
	 * before the unmount. */
	commit_threads_stop(d.st);
	for (int i = 0; i < commits; i++)
		pthread_join(commit[i], NULL);
	/* Then unmount, and only then stop the notifier: it may be inside a call
	 * on the mount, which returns once the connection is gone. */
	if (d.fs) {
		fs_unmount(d.fs);
		fs_notifier_stop(d.fs);
		pthread_join(notifier, NULL);
	}
	fs_free(d.fs);
	claude_free(d.net);
	shim_free(d.shim);
	store_free(d.st);
	storage_free(d.engine);
	fuse_opt_free_args(&args);
	free(d.key);
	options_done(&d.opt);
	curl_global_cleanup();
	log_info(d.opt.no_mount ? "stopped" : "unmounted");
	return r < 0 ? 1 : 0;
}
