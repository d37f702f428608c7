/* options.c — the command line (see options.h).
 *
 * Every option is one row of cli_options: its long form, its `-o` form (so an
 * fstab line can say the same), its help and its default.  fuse_opt does the
 * matching; the rows' keys say what each one sets.  The same rows print --help
 * and, through the hidden --options-table=FORMAT, the man page's option list,
 * README's tables and the bash completion's words, so these cannot drift.
 */
#include <errno.h>
#include <fuse_opt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/options.h"
#include "mcpfs/settings.h"

enum {
	KEY_FOREGROUND = 1,
	KEY_DEBUG,
	KEY_STATE_DIR,
	KEY_MODEL,
	KEY_MAX_TOKENS,
	KEY_BUDGET,
	KEY_HTTP,
	KEY_HTTP_TOKEN,
	KEY_API_KEY_FILE,
	KEY_LOG_FILE,
	KEY_NO_MOUNT,
	KEY_VERSION,
	KEY_HELP,
	KEY_TABLE,
	KEY_MCP_STDIO,
	KEY_PRICES,
	KEY_STORE,
	KEY_IMPORT,
};

struct cli_option {
	const char *flag;   /* as on the command line */
	const char *o_name; /* as in -o NAME=VALUE, or NULL */
	const char *arg;    /* metavariable, NULL for a switch; "[=ADDR:PORT]" optional */
	const char *help;
	const char *defval;
	int key;
	const char *setting; /* the context setting it defaults, or NULL */
};

static const struct cli_option cli_options[] = {
    {"-f", NULL, NULL, "stay in the foreground, log to stderr", "daemonize, log to syslog",
     KEY_FOREGROUND, NULL},
    {"-d", NULL, NULL, "debug logging (implies -f)", "", KEY_DEBUG, NULL},
    {"--state-dir", "state_dir", "DIR", "where contexts are kept",
     "$MCPFS_STATE_DIR, else $XDG_STATE_HOME/mcpfs, else ~/.local/state/mcpfs", KEY_STATE_DIR,
     NULL},
    {"--model", "model", "ID", "default model of new contexts", SETTINGS_DEFAULT_MODEL, KEY_MODEL,
     "model"},
    {"--max-tokens", "max_tokens", "N", "default max_tokens", "4096", KEY_MAX_TOKENS, "max_tokens"},
    {"--budget-tokens", "budget_tokens", "N", "default pruning budget (tokens sent per call)",
     "100000", KEY_BUDGET, "budget_tokens"},
    {"--http", "http", "[=ADDR:PORT]", "also serve the HTTP shim", "127.0.0.1:61900", KEY_HTTP,
     NULL},
    {"--http-token-file", "http_token_file", "F", "require Authorization: Bearer <token>",
     "none (loopback only)", KEY_HTTP_TOKEN, NULL},
    {"--api-key-file", "api_key_file", "F",
     "read the API key from F (must not be group/world readable)", "$ANTHROPIC_API_KEY",
     KEY_API_KEY_FILE, NULL},
    {"--log-file", "log_file", "F", "log to F (appended) instead of syslog",
     "syslog when daemonized", KEY_LOG_FILE, NULL},
    {"--store", "store", "URL",
     "keep contexts in PostgreSQL, a libpq URI (doc/design/shared-store.md), instead of the "
     "state dir",
     "$MCPFS_STORE, else the state dir", KEY_STORE, NULL},
    {"--import", NULL, "DIR",
     "copy the contexts of state dir DIR into the --store database, then exit", "", KEY_IMPORT,
     NULL},
    {"--prices", "prices", "FILE",
     "price table for cost_usd and spend_limit_usd (format: DATADIR/mcpfs/prices.tsv)",
     "the table shipped with mcpfs", KEY_PRICES, NULL},
    {"--no-mount", NULL, NULL, "run only the HTTP shim (foreground)", "", KEY_NO_MOUNT, NULL},
    {"--mcp-stdio", NULL, NULL,
     "speak MCP on stdin/stdout, forwarding to a running shim (doc/mcp.md)", "", KEY_MCP_STDIO,
     NULL},
    {"--version", NULL, NULL, "print the version and exit", "", KEY_VERSION, NULL},
    {"--help", NULL, NULL, "print this help and exit", "", KEY_HELP, NULL},
};
#define N_OPTIONS (sizeof(cli_options) / sizeof(cli_options[0]))

/* fuse_opt templates: "--x=%s" and "--x %s" and "x=%s" for each row; they
 * only need to live while fuse_opt_parse runs. */
struct templates {
	struct fuse_opt opt[N_OPTIONS * 3 + 5];
	char text[N_OPTIONS * 3][64];
};

static void build_templates(struct templates *tp)
{
	struct fuse_opt *templates = tp->opt;
	char(*template_text)[64] = tp->text;
	size_t t = 0;
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct cli_option *c = &cli_options[i];
		if (!c->arg || c->arg[0] == '[') {
			templates[t++] = (struct fuse_opt)FUSE_OPT_KEY(c->flag, c->key);
		}
		if (c->arg) {
			snprintf(template_text[t], 64, "%s=%%s", c->flag);
			templates[t] = (struct fuse_opt)FUSE_OPT_KEY(template_text[t], c->key);
			t++;
			if (c->arg[0] != '[') {
				snprintf(template_text[t], 64, "%s %%s", c->flag);
				templates[t] =
				    (struct fuse_opt)FUSE_OPT_KEY(template_text[t], c->key);
				t++;
			}
		}
		if (c->o_name) {
			snprintf(template_text[t], 64, c->arg ? "%s=%%s" : "%s", c->o_name);
			templates[t] = (struct fuse_opt)FUSE_OPT_KEY(template_text[t], c->key);
			t++;
		}
	}
	templates[t++] = (struct fuse_opt)FUSE_OPT_KEY("-h", KEY_HELP);
	templates[t++] = (struct fuse_opt)FUSE_OPT_KEY("-V", KEY_VERSION);
	/* Hidden: the build makes the man page and bash completion from it. */
	templates[t++] = (struct fuse_opt)FUSE_OPT_KEY("--options-table=%s", KEY_TABLE);
	templates[t] = (struct fuse_opt)FUSE_OPT_END;
}

struct parse_state {
	struct options *o;
	char *why;
	size_t whylen;
	int err;
};

static const struct cli_option *option_of(int key)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (cli_options[i].key == key)
			return &cli_options[i];
	return NULL;
}

/* The value of "x=v" or "--x v" forms (fuse_opt passes "x=v" or "--xv"). */
static const char *value_of(const char *arg, const struct cli_option *c)
{
	const char *eq = strchr(arg, '=');
	if (eq)
		return eq + 1;
	size_t n = strlen(c->flag);
	return !strncmp(arg, c->flag, n) ? arg + n : NULL;
}

static int set_string(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : -ENOMEM;
}

static int take_setting(struct parse_state *ps, const struct cli_option *c, const char *v)
{
	struct settings st;
	settings_init(&st);
	char why[256];
	if (settings_set(&st, c->setting, v, why, sizeof(why)) < 0) {
		snprintf(ps->why, ps->whylen, "%s: %s", c->flag, why);
		return -EINVAL;
	}
	size_t used = strlen(ps->o->defaults);
	snprintf(ps->o->defaults + used, sizeof(ps->o->defaults) - used, "%s = %s\n", c->setting,
		 v);
	return 0;
}

static int take_value(struct parse_state *ps, int key, const char *arg)
{
	const struct cli_option *c = option_of(key);
	const char *v = c && c->arg ? value_of(arg, c) : NULL;
	struct options *o = ps->o;
	if (c && c->arg && c->arg[0] != '[' && (!v || !*v)) {
		snprintf(ps->why, ps->whylen, "%s needs a value (%s)", c->flag, c->arg);
		return -EINVAL;
	}
	switch (key) {
	case KEY_FOREGROUND:
		o->foreground = true;
		return 0;
	case KEY_DEBUG:
		o->debug = o->foreground = true;
		return 0;
	case KEY_NO_MOUNT:
		o->no_mount = true;
		return 0;
	case KEY_MCP_STDIO:
		o->mcp_stdio = true;
		return 0;
	case KEY_VERSION:
		o->version = true;
		return 0;
	case KEY_HELP:
		o->help = true;
		return 0;
	case KEY_STATE_DIR:
		return set_string(&o->state_dir, v);
	case KEY_API_KEY_FILE:
		return set_string(&o->api_key_file, v);
	case KEY_LOG_FILE:
		return set_string(&o->log_file, v);
	case KEY_PRICES:
		return set_string(&o->prices, v);
	case KEY_STORE:
		return set_string(&o->store, v);
	case KEY_IMPORT:
		return set_string(&o->import_dir, v);
	case KEY_HTTP_TOKEN:
		return set_string(&o->http_token_file, v);
	case KEY_TABLE:
		return set_string(&o->table, strchr(arg, '=') + 1);
	case KEY_HTTP: {
		int r = set_string(&o->http, v && *v ? v : "127.0.0.1:61900");
		return r < 0 ? r : options_check_http(o->http, ps->why, ps->whylen);
	}
	default:
		return take_setting(ps, c, v);
	}
}

static int on_option(void *data, const char *arg, int key, struct fuse_args *out)
{
	struct parse_state *ps = data;
	if (ps->err)
		return -1;
	if (key == FUSE_OPT_KEY_NONOPT) {
		struct options *o = ps->o;
		if (o->mountpoint && !o->source) {
			/* mount(8) and mount.fuse3 run "mcpfs SOURCE MOUNTPOINT -o ...". */
			o->source = o->mountpoint;
			o->mountpoint = NULL;
		}
		if (!o->mountpoint)
			return set_string(&o->mountpoint, arg) < 0 ? -1 : 0;
		snprintf(ps->why, ps->whylen,
			 "unexpected argument '%s' (at most SOURCE and MOUNTPOINT)", arg);
		ps->err = -EINVAL;
		return -1;
	}
	if (key == FUSE_OPT_KEY_OPT) {
		if (arg[0] == '-' && arg[1] != 'o') {
			snprintf(ps->why, ps->whylen, "unknown option '%s' (see --help)", arg);
			ps->err = -EINVAL;
			return -1;
		}
		/* x-* options of an fstab line are for other programs (systemd's
		 * x-systemd.*); mount(8) drops them, mount.fuse3 run by hand does not. */
		if (strncmp(arg, "x-", 2) == 0)
			return 0;
		return 1; /* an -o option of FUSE's: keep it */
	}
	int r = take_value(ps, key, arg);
	if (r < 0) {
		ps->err = r;
		return -1;
	}
	return 0;
}

int options_parse(struct fuse_args *args, struct options *o, char *why, size_t whylen)
{
	struct templates tp;
	build_templates(&tp);
	struct parse_state ps = {o, why, whylen, 0};
	snprintf(why, whylen, "invalid command line");
	if (fuse_opt_parse(args, &ps, tp.opt, on_option) != 0)
		return ps.err ? ps.err : -EINVAL;
	return 0;
}

int options_default_state_dir(struct options *o, char *why, size_t whylen)
{
	if (o->state_dir)
		return 0;
	const char *env = getenv("MCPFS_STATE_DIR"), *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	char path[PATH_MAX];
	if (env && *env)
		snprintf(path, sizeof(path), "%s", env);
	else if (xdg && *xdg)
		snprintf(path, sizeof(path), "%s/mcpfs", xdg);
	else if (home && *home)
		snprintf(path, sizeof(path), "%s/.local/state/mcpfs", home);
	else {
		snprintf(why, whylen,
			 "no state directory: set --state-dir, $MCPFS_STATE_DIR or $HOME");
		return -EINVAL;
	}
	return set_string(&o->state_dir, path);
}

int options_default_store(struct options *o)
{
	const char *env = getenv("MCPFS_STORE");
	if (o->store || !env || !*env)
		return 0;
	return set_string(&o->store, env);
}

int options_check_store(const struct options *o, char *why, size_t whylen)
{
	if (o->import_dir && !o->store) {
		snprintf(why, whylen,
			 "--import=%s needs --store=URL (or $MCPFS_STORE): the database "
			 "to copy into",
			 o->import_dir);
		return -EINVAL;
	}
	if (o->import_dir && (o->mountpoint || o->no_mount || o->http)) {
		snprintf(why, whylen,
			 "--import copies and exits: it takes no mount point, "
			 "--no-mount or --http%s%s%s",
			 o->mountpoint ? " (got '" : "", o->mountpoint ? o->mountpoint : "",
			 o->mountpoint ? "')" : "");
		return -EINVAL;
	}
	return 0;
}

int options_check_http(const char *addr, char *why, size_t whylen)
{
	const char *colon = strrchr(addr, ':');
	/* A bare port means the loopback address. */
	bool bare = !colon && addr[0] && strspn(addr, "0123456789") == strlen(addr);
	if (!bare && (!colon || colon == addr)) {
		snprintf(why, whylen, "--http: '%s' is not ADDR:PORT", addr);
		return -EINVAL;
	}
	const char *port_s = bare ? addr : colon + 1;
	char *end;
	errno = 0;
	long port = strtol(port_s, &end, 10);
	if (!*port_s || *end != '\0') {
		snprintf(why, whylen, "--http: port '%s' is not a number", port_s);
		return -EINVAL;
	}
	if (errno || port < 1 || port > 65535) {
		snprintf(why, whylen, "port %s is out of range 1-65535", port_s);
		return -EINVAL;
	}
	return 0;
}

void options_print_help(FILE *out, const char *prog)
{
	fprintf(out,
		"usage: %s [OPTIONS] [SOURCE] MOUNTPOINT\n"
		"       %s [OPTIONS] --no-mount --http[=ADDR:PORT]\n"
		"       %s --mcp-stdio [--http=ADDR:PORT] [--http-token-file=F]\n\n"
		"Every conversation with Claude is a directory of MOUNTPOINT.  SOURCE, which\n"
		"mount(8) and fstab put first, is ignored: write mcpfs.\n\noptions:\n",
		prog, prog, prog);
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct cli_option *c = &cli_options[i];
		char left[64], oform[64] = "";
		snprintf(left, sizeof(left), "%s%s%s", c->flag,
			 c->arg && c->arg[0] != '[' ? "=" : "", c->arg ? c->arg : "");
		if (c->o_name)
			snprintf(oform, sizeof(oform), " (-o %s%s)", c->o_name, c->arg ? "=…" : "");
		fprintf(out, "  %-28s %s%s\n", left, c->help, oform);
		if (c->defval[0])
			fprintf(out, "  %-28s default: %s\n", "", c->defval);
	}
	fprintf(out, "  %-28s any other -o option goes to FUSE (allow_other, ...)\n",
		"-o OPT[,OPT]");
	fprintf(out,
		"\nenvironment: ANTHROPIC_API_KEY (sent as x-api-key), ANTHROPIC_AUTH_TOKEN "
		"(bearer),\n  ANTHROPIC_BASE_URL (default https://api.anthropic.com), "
		"MCPFS_STATE_DIR, MCPFS_STORE\n\nkeys of .config and of each context's config:\n");
	size_t n;
	const struct setting_def *d = settings_table(&n);
	for (size_t i = 0; i < n; i++)
		fprintf(out, "  %-18s %s (default: %s)\n", d[i].key, d[i].help,
			d[i].defval[0] ? d[i].defval : "the API's");
}

/* --- the tables for the man page, README and the bash completion ------------- */

/* "--state-dir=DIR", "--http[=ADDR:PORT]", "-f". */
static void usage_of(const struct cli_option *c, char *out, size_t len)
{
	snprintf(out, len, "%s%s%s", c->flag, c->arg && c->arg[0] != '[' ? "=" : "",
		 c->arg ? c->arg : "");
}

/* The metavariable without "[=" and "]": "ADDR:PORT". */
static void arg_of(const struct cli_option *c, char *out, size_t len)
{
	const char *a = c->arg ? c->arg : "";
	if (a[0] == '[')
		snprintf(out, len, "%.*s", (int)strlen(a) - 3, a + 2);
	else
		snprintf(out, len, "%s", a);
}

/* "state_dir=DIR", "http=ADDR:PORT", "" without an -o form. */
static void oform_of(const struct cli_option *c, char *out, size_t len)
{
	char arg[32];
	arg_of(c, arg, sizeof(arg));
	if (!c->o_name)
		out[0] = '\0';
	else
		snprintf(out, len, "%s%s%s", c->o_name, arg[0] ? "=" : "", arg);
}

static const char *key_default(const struct setting_def *d)
{
	return d->defval[0] ? d->defval : "the API's";
}

/* scdoc text: its markup characters escaped. */
static void scdoc_put(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '*' || *s == '_' || *s == '\\')
			fputc('\\', out);
		fputc(*s, out);
	}
}

static void print_tsv(FILE *out)
{
	char u[128], o[128];
	for (size_t i = 0; i < N_OPTIONS; i++) {
		usage_of(&cli_options[i], u, sizeof(u));
		oform_of(&cli_options[i], o, sizeof(o));
		fprintf(out, "option\t%s\t%s\t%s\t%s\n", u, o, cli_options[i].help,
			cli_options[i].defval);
	}
	size_t n;
	const struct setting_def *d = settings_table(&n);
	for (size_t i = 0; i < n; i++)
		fprintf(out, "key\t%s\t%s\t%s\n", d[i].key, key_default(&d[i]), d[i].help);
}

static void print_markdown(FILE *out)
{
	char u[128], o[128];
	fprintf(out, "| option | `-o` form (fstab) | meaning | default |\n|---|---|---|---|\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct cli_option *c = &cli_options[i];
		usage_of(c, u, sizeof(u));
		oform_of(c, o, sizeof(o));
		const char *tick = o[0] ? "`" : "";
		fprintf(out, "| `%s` | %s%s%s | %s | %s |\n", u, tick, o, tick, c->help, c->defval);
	}
	size_t n;
	const struct setting_def *d = settings_table(&n);
	fprintf(out, "\n| key | default | meaning |\n|---|---|---|\n");
	for (size_t i = 0; i < n; i++)
		fprintf(out, "| `%s` | %s | %s |\n", d[i].key, key_default(&d[i]), d[i].help);
}

/* *--state-dir*=_DIR_, *-o state_dir*=_DIR_ */
static void scdoc_option(FILE *out, const struct cli_option *c)
{
	char arg[64];
	arg_of(c, arg, sizeof(arg));
	fputc('*', out);
	scdoc_put(out, c->flag);
	fputc('*', out);
	if (arg[0]) {
		fputs(c->arg[0] == '[' ? "[=_" : "=_", out);
		scdoc_put(out, arg);
		fputs(c->arg[0] == '[' ? "_]" : "_", out);
	}
	if (c->o_name) {
		fputs(", *-o ", out);
		scdoc_put(out, c->o_name);
		fputc('*', out);
		if (arg[0]) {
			fputs("=_", out);
			scdoc_put(out, arg);
			fputc('_', out);
		}
	}
	fputs("\n\t", out);
	scdoc_put(out, c->help);
	fputc('.', out);
	if (c->defval[0]) {
		fputs(" Default: ", out);
		scdoc_put(out, c->defval);
		fputc('.', out);
	}
	fputs("\n\n", out);
}

static void print_scdoc(FILE *out, bool keys)
{
	if (!keys) {
		for (size_t i = 0; i < N_OPTIONS; i++)
			scdoc_option(out, &cli_options[i]);
		return;
	}
	size_t n;
	const struct setting_def *d = settings_table(&n);
	for (size_t i = 0; i < n; i++) {
		fputc('*', out);
		scdoc_put(out, d[i].key);
		fputs("* (default: ", out);
		scdoc_put(out, key_default(&d[i]));
		fputs(")\n\t", out);
		scdoc_put(out, d[i].help);
		fputs(".\n\n", out);
	}
}

/* Shell words: flags (with "=" when they take a value), -o names, and which of
 * them take a directory or a file. */
static void print_bash(FILE *out)
{
	const char *lists[4] = {"_mcpfs_flags", "_mcpfs_o_names", "_mcpfs_dir_args",
				"_mcpfs_file_args"};
	for (int l = 0; l < 4; l++) {
		fprintf(out, "%s='", lists[l]);
		const char *sep = "";
		for (size_t i = 0; i < N_OPTIONS; i++) {
			const struct cli_option *c = &cli_options[i];
			bool dir = c->arg && !strcmp(c->arg, "DIR");
			bool file = c->arg && !strcmp(c->arg, "F");
			if (l == 0 && c->arg && c->arg[0] == '[')
				fprintf(out, "%s%s %s=", sep, c->flag, c->flag);
			else if (l == 0)
				fprintf(out, "%s%s%s", sep, c->flag, c->arg ? "=" : "");
			else if (l == 1 && c->o_name)
				fprintf(out, "%s%s%s", sep, c->o_name, c->arg ? "=" : "");
			else if ((l == 2 && dir) || (l == 3 && file))
				fprintf(out, "%s%s%s%s", sep, c->flag, c->o_name ? " " : "",
					c->o_name ? c->o_name : "");
			else
				continue;
			sep = " ";
		}
		fprintf(out, "'\n");
	}
}

int options_print_table(FILE *out, const char *format)
{
	if (!strcmp(format, "tsv"))
		print_tsv(out);
	else if (!strcmp(format, "markdown"))
		print_markdown(out);
	else if (!strcmp(format, "scdoc") || !strcmp(format, "scdoc-keys"))
		print_scdoc(out, !strcmp(format, "scdoc-keys"));
	else if (!strcmp(format, "bash"))
		print_bash(out);
	else
		return -EINVAL;
	return 0;
}

void options_done(struct options *o)
{
	free(o->source);
	free(o->mountpoint);
	free(o->table);
	free(o->state_dir);
	free(o->api_key_file);
	free(o->log_file);
	free(o->prices);
	free(o->store);
	free(o->import_dir);
	free(o->http);
	free(o->http_token_file);
}
