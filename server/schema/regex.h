/*
 * regex.h — ECMA-262 regular expressions for JSON Schema, run by PCRE2.
 *
 * JSON Schema says `pattern`, `patternProperties` and `format: "regex"` use
 * ECMA-262 syntax with the `u` flag. Sluice runs them with PCRE2, so this module
 * translates an ECMA pattern into an equivalent PCRE2 pattern first (issue 3):
 * `\s` and `.` get ECMA's Unicode sets, `\d \w \b` stay ASCII (no PCRE2_UCP),
 * `\u` escapes and surrogate pairs become code points, `$` never matches before
 * a trailing newline, and syntax ECMA rejects (`(?i)`, `(?P<n>)`, `\a`, lone
 * braces, possessive quantifiers) is refused. What PCRE2 cannot run at all
 * (variable-width lookbehind, lone surrogates) is refused with a reason.
 *
 * A compiled regex is immutable: any number of threads may match it at once.
 * Matching is bounded (PCRE2 match and depth limits), so a pathological
 * pattern/subject pair answers REGEX_TOO_COMPLEX instead of burning a core.
 */
#ifndef SLUICE_SCHEMA_REGEX_H
#define SLUICE_SCHEMA_REGEX_H

#include <stdbool.h>
#include <stddef.h>

typedef struct regex regex;

enum {
    REGEX_NO_MATCH = 0,
    REGEX_MATCH = 1,
    REGEX_TOO_COMPLEX = -1, /* the match or depth limit was hit */
};

/* Compiles the ECMA-262 pattern `src` (UTF-8, `len` bytes; may contain NUL).
 * Returns the compiled regex (free with regex_free), or NULL when `src` is not
 * a valid ECMA-262 `u`-mode pattern or PCRE2 cannot run it; then *err (if
 * non-NULL) receives a message for people (caller frees) and *unsupported (if
 * non-NULL) tells the two apart: true when the pattern is valid ECMA-262 that
 * PCRE2 cannot run (variable-width lookbehind, lone surrogates). Any thread. */
regex *regex_new(const char *src, size_t len, char **err, bool *unsupported)
    __attribute__((warn_unused_result));

/* Compiles `pcre2_pattern` as PCRE2 syntax, untranslated (UTF mode) — for
 * Sluice's own fixed patterns, never a schema's. Aborts if it does not compile
 * (a bug). Free with regex_free. */
regex *regex_new_pcre2(const char *pcre2_pattern);

/* Searches `s` (`len` bytes, which must be valid UTF-8 — as every jansson
 * string is — since it is not checked again) for a match anywhere, as ECMA's
 * RegExp.prototype.test does. Returns REGEX_MATCH, REGEX_NO_MATCH or
 * REGEX_TOO_COMPLEX. `r` is only read: safe from many threads at once. */
int regex_search(const regex *r, const char *s, size_t len);

/* The pattern as the schema wrote it (borrowed from r). */
const char *regex_source(const regex *r);

void regex_free(regex *r);

/* True when `src` is a valid ECMA-262 pattern (format "regex"), including
 * the few valid patterns PCRE2 cannot run. */
bool regex_valid(const char *src, size_t len);

#endif
