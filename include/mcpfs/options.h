/* options.h — the command line: one table of options that parses argv and
 * `-o` (fstab) options alike and prints --help.  main.c only (it is the edge
 * that prints start-up errors); not part of any library. */
#ifndef MCPFS_OPTIONS_H
#define MCPFS_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>

struct fuse_args;

struct options {
	char *source; /* mount(8)'s SOURCE before the mount point; ignored */
	char *mountpoint;
	char *state_dir;
	char *api_key_file;
	char *log_file; /* --log-file: lines appended there, or NULL */
	char *prices;	/* --prices: the price table's path, or NULL (the built-in one) */
	char *http;	/* ADDR:PORT, or NULL when the shim is off */
	char *http_token_file;
	char *store;	  /* --store: a libpq URI or conninfo (passwords inside!), or NULL */
	char *import_dir; /* --import: a state dir to copy into the store, or NULL */
	bool foreground;
	bool debug;
	bool no_mount;
	bool mcp_stdio; /* --mcp-stdio: the MCP stdio bridge, nothing else */
	bool help;
	bool version;
	char *table;	    /* --options-table=FORMAT (hidden), or NULL */
	char defaults[512]; /* `key = value` lines for new contexts' defaults */
};

/* Parses args (removing ours, keeping FUSE's -o options in args).  Up to two
 * arguments that are not options: "MOUNTPOINT", or "SOURCE MOUNTPOINT" as mount(8)
 * and mount.fuse3 pass them (SOURCE is kept in o->source and otherwise ignored).
 * `-o x-*` options (fstab's, for other programs) are dropped.  0, or -EINVAL
 * with why naming the option and value. */
int options_parse(struct fuse_args *args, struct options *o, char *why, size_t whylen);

/* Fills the state directory default from the environment when none was given:
 * $MCPFS_STATE_DIR, else $XDG_STATE_HOME/mcpfs, else ~/.local/state/mcpfs. */
int options_default_state_dir(struct options *o, char *why, size_t whylen);

/* Fills the store from $MCPFS_STORE when --store was not given (an empty
 * value is none).  0, -ENOMEM. */
int options_default_store(struct options *o);

/* --import's company: it needs a store and runs alone (no mount point,
 * --no-mount or --http).  0, or -EINVAL with why. */
int options_check_store(const struct options *o, char *why, size_t whylen);

/* Checks an ADDR:PORT of --http.  0, or -EINVAL with why:
 * "port 619009 is out of range 1-65535". */
int options_check_http(const char *addr, char *why, size_t whylen);

void options_print_help(FILE *out, const char *prog);

/* Prints the option table and the config keys in FORMAT, all from the tables
 * that --help prints: "tsv" (`option` and `key` rows, tab-separated: the tests
 * compare README with it), "markdown" (README's two tables), "scdoc" and
 * "scdoc-keys" (the man page's OPTIONS and CONFIGURATION KEYS sections), "bash"
 * (the word lists of the bash completion).  0, or -EINVAL for another FORMAT. */
int options_print_table(FILE *out, const char *format);
void options_done(struct options *o);

#endif
