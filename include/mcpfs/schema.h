/* schema.h — the `schema` file of a context: a JSON Schema its replies must
 * follow (CONTRACT §8), sent as output_config.format {"type":"json_schema"}.
 *
 * mcpfs checks what it can check cheaply and the API would refuse anyway: the
 * text is JSON, the document is an object, and every `type` keyword where a
 * schema stands (the root, properties, items, anyOf, $defs, ...) names JSON
 * Schema types.  What only the API knows (its own subset of JSON Schema) is
 * the API's to refuse, and the turn fails with its message.
 *
 * Pure functions over caller-owned memory; thread-safe.
 */
#ifndef MCPFS_SCHEMA_H
#define MCPFS_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#define SCHEMA_MAX (64u << 10) /* bytes of a schema; more: -EFBIG at the write */

/* True when text is empty or only white space: no schema. */
bool schema_empty(const char *text, size_t len);

/* What a write can refuse before the text is whole: a first byte that is not
 * white space or '{' (no ending makes it an object).  0, -EINVAL + why. */
int schema_prefix_check(const char *text, size_t len, char *why, size_t whylen);

/* The whole text: empty (no schema), or a JSON object whose `type` keywords
 * are JSON Schema types ("object", "array", "string", "number", "integer",
 * "boolean", "null", or an array of them).  UTF-8 without NUL bytes, at most
 * SCHEMA_MAX bytes.  0, -EINVAL (-EILSEQ, -EFBIG) + why. */
int schema_check(const char *text, size_t len, char *why, size_t whylen);

#endif
