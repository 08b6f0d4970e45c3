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
 *   - at most SCHEMA_MAX_ERRORS violations are listed;
 *   - the work of one call, or of every call sharing a schema_budget (the
 *     events of one publish request), is capped (issue 13): node evaluations
 *     and regex/string steps. Past either cap validation stops and the answer
 *     is "over budget" (schema_budget.over), not a violation of the value.
 *
 * The budget counts:
 *   - nodes: every evaluation of a schema object (as SCHEMA_MAX_EVALUATIONS
 *     does), every value walked under a `true` schema, and every value a
 *     const/enum/uniqueItems comparison or hash looks at;
 *   - steps: what regex_search_metered charges for `pattern` and
 *     `patternProperties` (regex.h: checkpoints and bytes scanned; at most
 *     SCHEMA_MATCH_STEPS + SCHEMA_MATCH_STEPS_PER_BYTE per subject byte per
 *     match, past which the match is a "too expensive" violation), plus
 *     SCHEMA_FORMAT_STEPS and one step a byte for a `format` check (16 for
 *     "regex", which compiles the value), and one step per
 *     SCHEMA_LENGTH_BYTES_PER_STEP bytes minLength/maxLength count.
 *   A step is at most about 10 ns of work, a node about 50 ns (measured by
 *   bench/validation_attack); the charges are set so that holds.
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

/* The budget of one call of schema_validate (and the defaults of
 * SLUICE_VALIDATION_MAX_NODES / SLUICE_VALIDATION_MAX_STEPS). */
#define SCHEMA_DEFAULT_MAX_NODES 1000000LL
#define SCHEMA_DEFAULT_MAX_STEPS 5000000LL
/* One regex match: at most this many steps plus so many per subject byte. */
#define SCHEMA_MATCH_STEPS 100000LL
#define SCHEMA_MATCH_STEPS_PER_BYTE 4
#define SCHEMA_FORMAT_STEPS 4
#define SCHEMA_LENGTH_BYTES_PER_STEP 64

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
 * deepest (SCHEMA_MAX_EVAL_DEPTH nested evaluations; about 1.5 MB under ASan).
 * The call's work is capped by a budget of the SCHEMA_DEFAULT_* caps
 * (schema_validate_budget with NULL). */
bool schema_validate(const schema *s, json_t *instance, const char *path_prefix, int index,
                     json_t *errors);

/* Which cap of a schema_budget ran out. */
typedef enum {
    SCHEMA_WITHIN_BUDGET = 0,
    SCHEMA_OVER_NODES = 1, /* max_nodes node evaluations */
    SCHEMA_OVER_STEPS = 2, /* max_steps regex/string steps */
} schema_over;

/* The work allowed to a series of validations (one request's events), and
 * what they used. Set max_nodes and max_steps (<= 0: the SCHEMA_DEFAULT_*)
 * and zero the rest; pass the same budget to every call. Not thread-safe:
 * one budget, one thread at a time. */
typedef struct schema_budget {
    long long max_nodes;
    long long max_steps;
    long long nodes;  /* used so far */
    long long steps;  /* used so far */
    schema_over over; /* set once a cap is reached: validation stopped there */
} schema_budget;

/* schema_validate, charging its work to `budget` (NULL: a budget of the
 * defaults for this call alone). When the budget runs out — during this call,
 * or before it — validation stops: the answer is false, budget->over says
 * which cap, and `errors` receives, instead of any violation this call found,
 * one entry {"index", "path": where validation stopped, "keyword": "maxNodes"
 * or "maxSteps", "message"}. The caller answers that as "too costly to
 * validate" (publish: 422 validation_too_costly), not as a violation. */
bool schema_validate_budget(const schema *s, json_t *instance, const char *path_prefix, int index,
                            json_t *errors, schema_budget *budget);

/* Frees `s` (NULL is fine). No validation may be running on it. */
void schema_free(schema *s);

/* The keyword names supported, NULL-terminated (for the README and the registry's 422). */
extern const char *const schema_supported_keywords[];

#endif
