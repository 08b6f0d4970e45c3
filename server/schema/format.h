/*
 * format.h — the JSON Schema `format` values Sluice asserts.
 *
 * Sluice treats `format` as an assertion, not an annotation (issue 3): an event
 * whose `file_id` is declared `"format": "uuid"` and is not a UUID is rejected.
 * A format name not listed in format_names[] is refused when the schema is
 * compiled (SCHEMA_UNSUPPORTED), never silently ignored.
 *
 * Each checker is a pure function of its bytes: any thread, no allocation
 * except `regex` (which compiles and frees the pattern) and the first use of
 * the Unicode tables behind IDNA checks (initialised once).
 */
#ifndef SLUICE_SCHEMA_FORMAT_H
#define SLUICE_SCHEMA_FORMAT_H

#include <stdbool.h>
#include <stddef.h>

/* True when `s` (UTF-8, `len` bytes, may contain NUL) is valid for the format. */
typedef bool (*format_fn)(const char *s, size_t len);

/* The checker for `name`, or NULL when Sluice does not assert that format. */
format_fn format_lookup(const char *name);

/* What a valid value of an asserted format looks like, for messages:
 * "RFC 3339, e.g. 2024-03-18T09:41:07Z". Static; "" for unknown names. */
const char *format_hint(const char *name);

/* The asserted format names, NULL-terminated (for documentation and errors). */
extern const char *const format_names[];

#endif
