/* settings.h — the table of per-context settings, and its text and JSON forms.
 *
 * One table lists every key a context's `config` (and the root `.config`) knows:
 * name, type, default, bounds and a one-line help.  The command line's context
 * defaults (--model, --max-tokens, --budget-tokens), the `config` file, the HTTP
 * shim's JSON and the journal all go through it, so a key means the same thing
 * everywhere.  The system prompt is not a setting (it is multi-line text kept
 * beside the settings).
 *
 * Pure functions over caller-owned structs; thread-safe.
 */
#ifndef MCPFS_SETTINGS_H
#define MCPFS_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "mcpfs/buf.h"

#define SETTINGS_MODEL_MAX 128			   /* bytes of a model id */
#define SETTINGS_SYSTEM_MAX (1u << 20)		   /* bytes of a system prompt */
#define SETTINGS_TEXT_MAX (64u << 10)		   /* bytes of a config file */
#define SETTINGS_DEFAULT_MODEL "claude-sonnet-5-5" /* the one default model */
#define SETTINGS_PROMPT_MAX 2048		   /* bytes of summary_prompt (one line) */

struct settings {
	char model[SETTINGS_MODEL_MAX + 1];
	int64_t max_tokens;	 /* 1..1000000, default 4096 */
	double temperature;	 /* 0..1; NaN: not sent (the API's default) */
	int64_t budget_tokens;	 /* pruning budget, tokens per call; default 100000 */
	int64_t max_input_bytes; /* message size limit; default 1 MiB */
	int64_t max_retries;	 /* 0..10, default 2 */
	int64_t connect_timeout; /* seconds, 1..300, default 10 */
	int64_t idle_timeout;	 /* seconds without a byte on a stream, 1..3600, default 90 */
	int64_t thinking;	 /* SETTINGS_THINKING_OFF, _ON, or a budget >= 1024 and
				    < max_tokens; `thinking_budget` is its old spelling */
	int effort;		 /* enum settings_effort */
	bool prompt_cache;	 /* send cache_control breakpoints; default on */
	unsigned tools;		 /* SETTINGS_TOOL_* bits: server tools offered; default none */
	int prune;		 /* SETTINGS_PRUNE_*: what a cut does; default summarize */
	char summary_model[SETTINGS_MODEL_MAX + 1];   /* "" (`default`): the context's model */
	char summary_prompt[SETTINGS_PROMPT_MAX + 1]; /* "" (`default`): the built-in prompt */
	double spend_limit_usd; /* USD, 0..1e9; NaN: none (the default).  In the root
				   .config: the limit of all contexts together */
	bool response_cache;	/* answer a request seen before from the cache; default off */
};

/* prune: a cut folds the exchanges cut into the summary, or drops them. */
#define SETTINGS_PRUNE_SUMMARIZE 0
#define SETTINGS_PRUNE_DROP 1

/* Anthropic's server tools (`tools = web_search, web_fetch`). */
#define SETTINGS_TOOL_WEB_SEARCH 1u
#define SETTINGS_TOOL_WEB_FETCH 2u

#define SETTINGS_THINKING_OFF 0
#define SETTINGS_THINKING_ON (-1) /* think in the form the model takes */

/* output_config.effort; DEFAULT sends none. */
enum settings_effort {
	EFFORT_DEFAULT,
	EFFORT_LOW,
	EFFORT_MEDIUM,
	EFFORT_HIGH,
	EFFORT_XHIGH,
	EFFORT_MAX
};

/* The API's name of an effort level ("low"...), NULL for EFFORT_DEFAULT. */
const char *settings_effort_name(int effort);

/* The name of one SETTINGS_TOOL_* bit ("web_search"), NULL for anything else. */
const char *settings_tool_name(unsigned bit);

/* THINKING: off | on | a budget (min..max); EFFORT: a word of enum settings_effort;
 * TOOLS: web_search and/or web_fetch, comma-separated (JSON: an array of names). */
enum setting_type {
	SETTING_STRING,
	SETTING_INT,
	SETTING_DOUBLE,
	SETTING_BOOL,
	SETTING_THINKING,
	SETTING_EFFORT,
	SETTING_TOOLS, /* a comma-separated list of server tool names, "" none */
	SETTING_PRUNE, /* summarize | drop */
	SETTING_TEXT,  /* one line of UTF-8 text (max bytes); "" or "default": the default */
	SETTING_USD    /* an amount in USD, or none ("" too; JSON null): NaN */
};

struct setting_def {
	const char *key;
	enum setting_type type;
	const char *defval; /* default in its text form ("" for an unset double) */
	double min, max;    /* bounds of INT and DOUBLE; max bytes of STRING */
	const char *help;   /* one line, for --help, the man page and README */
};

/* The table, in the order settings are rendered.  *n receives its length. */
const struct setting_def *settings_table(size_t *n);

/* Fills s with the built-in defaults. */
void settings_init(struct settings *s);

/* Sets one key from its text form (surrounding white space ignored; a double
 * accepts "" or "default" for unset; a bool accepts on/off, true/false, yes/no,
 * 1/0).  On failure s is unchanged and why names the key and value:
 * "temperature: '7' is out of range 0-1".  0, -EINVAL. */
int settings_set(struct settings *s, const char *key, const char *value, char *why, size_t whylen);

/* Applies a config text to s: `key = value` lines, blank lines and `#` comments.
 * All or nothing: on failure s is unchanged and why names the line.  Keys not
 * named keep their value in s (start from the defaults to get "replace").
 * 0, -EINVAL, -EFBIG (text over SETTINGS_TEXT_MAX). */
int settings_parse(struct settings *s, const char *text, size_t len, char *why, size_t whylen);

/* Appends `key = value\n` for every key, in table order.  0, -EFBIG, -ENOMEM. */
int settings_render(const struct settings *s, struct buf *out);

/* Writes the value of one key in text form into out (NUL-terminated). */
void settings_format(const struct settings *s, const struct setting_def *d, char *out,
		     size_t outlen);

/* Checks cross-key rules (a thinking budget < max_tokens).  0, -EINVAL + why. */
int settings_check(const struct settings *s, char *why, size_t whylen);

/* A model id: 1..SETTINGS_MODEL_MAX bytes of [A-Za-z0-9._:@/-].  Surrounding white
 * space (a trailing newline) is the caller's to strip. */
bool settings_model_valid(const char *s, size_t len);

/* The model id written to a `model` file: surrounding white space (the
 * trailing newline) stripped, then checked with settings_model_valid.  *id and
 * *idlen receive the id inside text.  0, or -EINVAL and why: "invalid model id
 * 'x y'". */
int settings_model_text(const char *text, size_t len, const char **id, size_t *idlen, char *why,
			size_t whylen);

struct cJSON;

/* Adds every key to a cJSON object (numbers, strings, bools; unset temperature as
 * null).  0, -ENOMEM. */
int settings_to_json(const struct settings *s, struct cJSON *obj);

/* Applies the keys present in a cJSON object (unknown keys and wrong types fail).
 * All or nothing.  0, -EINVAL + why. */
int settings_from_json(struct settings *s, const struct cJSON *obj, char *why, size_t whylen);

#endif
