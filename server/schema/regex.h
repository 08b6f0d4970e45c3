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
 *
 * Those PCRE2 limits bound one start position, not one match: PCRE2 resets
 * its counter at every start position, and it counts backtracking, not the
 * characters a repeat scans, so a 100 KB subject can take seconds within them
 * (`(?=[a-z]*[0-9])` on "aaa…": n start positions × an n-character scan, with
 * the counter at 1). regex_search_metered measures the work itself (issue 13):
 * the translated pattern carries checkpoints (PCRE2 callouts) at its start,
 * after every `|` and every quantifier, and before every backreference, so
 * that every place a match can resume after backtracking, and every start
 * position, is followed by one. Each checkpoint costs 1 step plus the
 * distance, in bytes, from the previous checkpoint (plus, before a
 * backreference, the most it can compare; 4 times that when PCRE2's
 * interpreter runs the match), and each match 8 steps (the call)
 * plus one per 64 bytes of subject (PCRE2's start-of-match scans). The work
 * between two checkpoints is then bounded by the pattern's length plus the
 * steps charged, so a meter's steps bound the time of every match charged to
 * it: at most about 10 ns a step (bench/validation_attack measures it). An
 * anchored pattern (`^...`) needs no first checkpoint and, when it has no `|`
 * and ends in `quantifier)*$`, no last one; what the last would have metered
 * is charged ahead (a quarter step per byte of what is left of the subject,
 * by the checkpoint before it, or by the match), so `^[a-z]+$` runs with no
 * callout and `^[a-z]+/[a-z0-9.+-]+$` with one.
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
    REGEX_OVER_BUDGET = -2, /* regex_search_metered: the meter ran out */
};

/* Steps left for the matches of one piece of work (a request's validation).
 * Not shared between threads: one meter, one thread at a time. */
typedef struct regex_meter {
    long long left; /* steps still allowed; a match that needs more stops (REGEX_OVER_BUDGET) */
    /* one match may take at most match_steps + match_steps_per_byte per subject
     * byte (match_steps 0: no such cap); past that it stops (REGEX_TOO_COMPLEX) */
    long long match_steps;
    long long match_steps_per_byte;
    size_t last;    /* internal: the subject offset of the previous checkpoint */
    long long stop; /* internal: the match stops when left goes below this */
} regex_meter;

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

/* regex_search, charging the steps the match takes to `m` (NULL: unmetered,
 * exactly regex_search). When m->left cannot pay for the whole match the match
 * stops as soon as it is found out, m->left is negative (<= 0 when it was
 * already spent) and the answer is REGEX_OVER_BUDGET; a match past its own cap
 * (match_steps...) stops with REGEX_TOO_COMPLEX, its steps charged. Fixed
 * patterns (regex_new_pcre2) have no checkpoints: they pay the per-match
 * steps only. */
int regex_search_metered(const regex *r, const char *s, size_t len, regex_meter *m);

/* The pattern as the schema wrote it (borrowed from r). */
const char *regex_source(const regex *r);

void regex_free(regex *r);

/* True when `src` is a valid ECMA-262 pattern (format "regex"), including
 * the few valid patterns PCRE2 cannot run. */
bool regex_valid(const char *src, size_t len);

#endif
