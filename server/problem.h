/*
 * problem.h — RFC 9457 problem documents, the one place errors become JSON.
 *
 * Every error Sluice answers is built here from a stable machine-readable
 * `code` (API.md): the code decides the HTTP status, the title and the type URI.
 */
#ifndef SLUICE_PROBLEM_H
#define SLUICE_PROBLEM_H

#include <jansson.h>

/* Returns a new problem document (caller owns the reference) for `code`,
 * with `detail` (may be NULL). An unknown code becomes a 500 "internal". */
json_t *problem_new(const char *code, const char *detail);
json_t *problem_newf(const char *code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The HTTP status a code answers with (500 for unknown codes). */
int problem_status(const char *code);
/* One entry of a problem's `errors` list (caller owns). index < 0 omits it. */
json_t *problem_error(int index, const char *path, const char *keyword, const char *message);

#endif
