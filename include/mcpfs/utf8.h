/* utf8.h — UTF-8 validation.
 *
 * Strict RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
 * Pure functions, thread-safe.
 */
#ifndef MCPFS_UTF8_H
#define MCPFS_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when the n bytes are entirely valid UTF-8. */
bool utf8_valid(const char *s, size_t n);

/* Length of the longest prefix of s that does not end inside a multi-byte
 * sequence: what can be forwarded now without ever splitting a character.
 * Invalid bytes are not held back (they count as complete). */
size_t utf8_complete_prefix(const char *s, size_t n);

/* Length of the longest prefix of s that is whole valid UTF-8.  Below n, the
 * byte there starts either an invalid sequence (*cut false: the text is
 * invalid whatever follows) or a valid sequence that the end of s cuts short
 * (*cut true: more bytes may complete it).  A writer's text is checked with it
 * as it arrives, resuming from the last boundary it returned. */
size_t utf8_valid_prefix(const char *s, size_t n, bool *cut);

/* True when the bytes are only ASCII white space (or n is 0). */
bool utf8_blank(const char *s, size_t n);

#endif
