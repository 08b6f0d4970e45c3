/*
 * problem.c — the table of problem codes and the documents built from it.
 */
#include "problem.h"
#include "mem.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct problem_kind {
    const char *code;
    int status;
    const char *title;
} problem_kind;

static const problem_kind kinds[] = {
    {"invalid_json", 400, "The body is not valid JSON"},
    {"invalid_envelope", 400, "The event envelope is invalid"},
    {"invalid_query", 400, "A query parameter is invalid"},
    {"invalid_request", 400, "The request body is invalid"},
    {"invalid_filter", 400, "A filter condition is invalid"},
    {"unauthenticated", 401, "Authentication required"},
    {"forbidden", 403, "The token lacks the scope for this request"},
    {"not_found", 404, "Not found"},
    {"method_not_allowed", 405, "Method not allowed"},
    {"upgrade_required", 426, "Upgrade required"},
    {"version_conflict", 409, "Expected version does not match"},
    {"duplicate_id", 409, "An event with this id and different content exists"},
    {"conflict", 409, "Conflict"},
    {"stale_receipt", 409, "The receipt is stale"},
    {"forbidden_destination", 422, "The webhook destination is not allowed"},
    {"payload_too_large", 413, "Payload too large"},
    {"unsupported_media_type", 415, "Unsupported media type"},
    {"schema_violation", 422, "The event does not match its schema"},
    {"unknown_type", 422, "No schema is registered for this event type"},
    {"deprecated_type", 422, "This event type is deprecated"},
    {"unknown_schema_version", 422, "No such schema version for this event type"},
    {"validation_too_costly", 422, "Validating the request would take too much work"},
    {"unsupported_keyword", 422, "The schema uses a keyword Sluice does not implement"},
    {"invalid_schema", 422, "The schema is not a valid JSON Schema"},
    {"incompatible_schema", 409, "The schema is incompatible with earlier versions"},
    {"rate_limited", 429, "Too many requests"},
    {"internal", 500, "Internal error"},
    {"store_unavailable", 503, "The event store is unavailable"},
    {"overloaded", 503, "Sluice is at its limit for this kind of request"},
};

/* A JSON string of `s`, whose invalid UTF-8 bytes (input echoed in a message, a name cut
 * mid-character) become '?', so a problem document never loses a field. */
static json_t *safe_string(const char *s)
{
    json_t *j = json_string(s);
    if (j) return j;
    char *copy = xstrdup(s);
    for (unsigned char *p = (unsigned char *)copy; *p; p++)
        if (*p >= 0x80) *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

static const problem_kind *find(const char *code)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i].code, code) == 0) return &kinds[i];
    return NULL;
}

int problem_status(const char *code)
{
    const problem_kind *k = find(code);
    return k ? k->status : 500;
}

json_t *problem_new(const char *code, const char *detail)
{
    const problem_kind *k = find(code);
    if (!k) k = find("internal");
    char *type = xasprintf("https://sluice.dev/problems/%s", k->code);
    json_t *p = json_pack("{s:s,s:s,s:i,s:s}", "type", type, "title", k->title, "status", k->status,
                          "code", k->code);
    free(type);
    if (detail) json_object_set_new(p, "detail", safe_string(detail));
    return p;
}

json_t *problem_newf(const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return problem_new(code, tmp);
}

json_t *problem_error(int index, const char *path, const char *keyword, const char *message)
{
    json_t *e = json_object();
    if (index >= 0) json_object_set_new(e, "index", json_integer(index));
    json_object_set_new(e, "path", safe_string(path));
    json_object_set_new(e, "keyword", safe_string(keyword));
    json_object_set_new(e, "message", safe_string(message));
    return e;
}
