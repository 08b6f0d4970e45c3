/*
 * validator.h — JSON Schema 2020-12, compiled once, validated from any thread.
 *
 * Every event Sluice accepts is checked against its type's registered schema
 * (issue 3). A schema is compiled when it is registered into an immutable
 * graph of nodes: `$ref`s point at compiled nodes (cycles included), regexes
 * are compiled PCRE2 code, keywords are pre-sorted per node. Validating walks
 * that graph and the instance only — never the schema document — so any
 * number of HTTP threads can validate against one `schema` with no lock.
 *
 * Dialect: JSON Schema 2020-12 (core, applicator, unevaluated, validation,
 * format-assertion, meta-data, content as annotations). Every keyword in
 * schema_supported_keywords[] is implemented; any other keyword (including
 * $vocabulary and earlier drafts' keywords) makes schema_compile() answer
 * SCHEMA_UNSUPPORTED, never silently ignored. `format` is an assertion for the
 * names in format.h; other format names are SCHEMA_UNSUPPORTED. References
 * resolve inside the document ($id-relative URIs, JSON Pointers, $anchor,
 * $dynamicRef/$dynamicAnchor with dynamic scope) and to the embedded 2020-12
 * meta-schema; any other remote reference is SCHEMA_UNSUPPORTED. Regular
 * expressions are ECMA-262 (regex.h).
 *
 * Limits (all report rather than crash):
 *   - schema nesting deeper than SCHEMA_MAX_SCHEMA_DEPTH subschemas: SCHEMA_INVALID;
 *   - instance nesting deeper than SCHEMA_MAX_INSTANCE_DEPTH: a violation;
 *   - schema evaluation nested deeper than SCHEMA_MAX_EVAL_DEPTH (a `$ref`
 *     cycle that never moves into the instance): a violation;
 *   - more than SCHEMA_MAX_EVALUATIONS node evaluations for one value (nested
 *     anyOf/oneOf can be exponential in the schema's depth): a violation
 *     ("complexity"), so one event costs at most a few tens of milliseconds;
 *   - at most SCHEMA_MAX_ERRORS violations are listed.
 */
#ifndef SLUICE_SCHEMA_VALIDATOR_H
#define SLUICE_SCHEMA_VALIDATOR_H

#include <jansson.h>
#include <stdbool.h>

#define SCHEMA_MAX_ERRORS 100
#define SCHEMA_MAX_SCHEMA_DEPTH 64
#define SCHEMA_MAX_INSTANCE_DEPTH 128
#define SCHEMA_MAX_EVAL_DEPTH 1024
#define SCHEMA_MAX_EVALUATIONS 1000000

/* compiled, immutable, safe to use from many threads at once with no lock */
typedef struct schema schema;

typedef enum {
    SCHEMA_OK = 0,
    /* not a valid 2020-12 schema (bad keyword value, dangling $ref, too deep) */
    SCHEMA_INVALID = -1,
    /* valid, but uses a keyword, format, dialect or reference Sluice does not implement */
    SCHEMA_UNSUPPORTED = -2,
} schema_status;

/* Compiles `doc` (borrowed; the schema keeps its own copy). Returns the
 * compiled schema (free with schema_free) and sets *status to SCHEMA_OK.
 * On failure returns NULL, sets *status, and appends one entry per problem to
 * `errors` (a borrowed JSON array; may be NULL):
 *   {"path": JSON Pointer into the schema, "keyword", "message"}.
 * When a schema has both kinds of problem, SCHEMA_INVALID wins.
 * Annotations ($comment, title, description, default, examples, deprecated,
 * readOnly, writeOnly, contentMediaType, contentEncoding, contentSchema) are
 * accepted (their values' shapes checked) and do not affect validation;
 * `$schema` must name 2020-12; `$id` sets the base URI for references.
 * Any thread; allocation failure aborts (mem.h). */
schema *schema_compile(json_t *doc, schema_status *status, json_t *errors)
    __attribute__((warn_unused_result));

/* Validates `instance` (borrowed, not modified) against `s`. Returns true when
 * valid. When `errors` (a borrowed JSON array) is non-NULL, appends every
 * violation, up to SCHEMA_MAX_ERRORS, as
 *   {"index": index (omitted when index < 0),
 *    "path": path_prefix + JSON Pointer into the instance, e.g. "/data/file_size",
 *    "keyword": "type", "message": "expected integer, got string"}.
 * `path_prefix` may be NULL (""); a NULL `instance` is invalid ("no value").
 * Violations about a missing or forbidden
 * property (required, dependentRequired, additionalProperties: false,
 * unevaluatedProperties: false) point at that property's path. With `errors`
 * NULL the answer stops at the first violation. Strings in `instance` must be
 * valid UTF-8, as jansson guarantees for parsed JSON and json_string().
 * Any thread, concurrently on one schema; no lock. Stack: about 0.5 MB at the
 * deepest (SCHEMA_MAX_EVAL_DEPTH nested evaluations; about 1.5 MB under ASan). */
bool schema_validate(const schema *s, json_t *instance, const char *path_prefix, int index,
                     json_t *errors);

/* Frees `s` (NULL is fine). No validation may be running on it. */
void schema_free(schema *s);

/* The keyword names supported, NULL-terminated (for the README and the registry's 422). */
extern const char *const schema_supported_keywords[];

#endif
