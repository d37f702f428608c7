/* options.h — the command line: one table of options that parses argv and
 * `-o` (fstab) options alike and prints --help.  main.c only (it is the edge
 * that prints start-up errors); not part of any library. */
#ifndef MCPFS_OPTIONS_H
#define MCPFS_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>

struct fuse_args;

struct options {
	char *mountpoint;
	char *state_dir;
	char *api_key_file;
	char *http;             /* ADDR:PORT, or NULL when the shim is off */
	char *http_token_file;
	bool foreground;
	bool debug;
	bool no_mount;
	bool help;
	bool version;
	char defaults[512];     /* `key = value` lines for new contexts' defaults */
};

/* Parses args (removing ours, keeping FUSE's -o options in args).  0, or -EINVAL
 * with why naming the option and value. */
int options_parse(struct fuse_args *args, struct options *o, char *why, size_t whylen);

/* Fills the state directory default from the environment when none was given:
 * $MCPFS_STATE_DIR, else $XDG_STATE_HOME/mcpfs, else ~/.local/state/mcpfs. */
int options_default_state_dir(struct options *o, char *why, size_t whylen);

/* Checks an ADDR:PORT of --http.  0, or -EINVAL with why:
 * "port 619009 is out of range 1-65535". */
int options_check_http(const char *addr, char *why, size_t whylen);

void options_print_help(FILE *out, const char *prog);
void options_done(struct options *o);

#endif
