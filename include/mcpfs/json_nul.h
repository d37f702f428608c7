/* json_nul.h — NUL characters through cJSON.
 *
 * cJSON keeps strings NUL-terminated and without a length: the escape \u0000
 * decodes to a NUL that ends the string there, and a string holding a NUL byte
 * prints only up to it.  Text from the API or a journal may hold U+0000, and its
 * bytes after the NUL must not be lost.  So a NUL crosses cJSON as the byte
 * 0xFF, which valid UTF-8 never holds: text that is valid UTF-8 is marked
 * before cJSON sees it and unmarked after.
 *
 * Pure functions over caller-owned memory; libc only; thread-safe.
 */
#ifndef MCPFS_JSON_NUL_H
#define MCPFS_JSON_NUL_H

#include <stdbool.h>
#include <stddef.h>

#include "mcpfs/buf.h"

#define JSON_NUL_MARK '\xff'

/* Whether the JSON text s[0..n) holds a \u0000 escape (a cheap test first). */
bool json_nul_escaped(const char *s, size_t n);

/* Appends the JSON text s[0..n), which must be valid UTF-8, to out with every
 * \u0000 escape replaced by the mark (an escaped backslash before "u0000" is
 * none).  0, or buf_append's error. */
int json_nul_hide(const char *s, size_t n, struct buf *out);

/* Turns every mark in s[0..n) (decoded text) back into a NUL byte; or, before
 * cJSON prints text that is valid UTF-8 but for its NULs, every NUL into the
 * mark (json_nul_mark). */
void json_nul_show(char *s, size_t n);
void json_nul_mark(char *s, size_t n);

/* Appends JSON text printed by cJSON to out, every mark written as \u0000.
 * 0, or buf_append's error with out as it was. */
int json_nul_print(const char *s, size_t n, struct buf *out);

#endif
