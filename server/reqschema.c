/*
 * reqschema.c — request-body schemas from the embedded OpenAPI document,
 * compiled at start-up and checked per request (see reqschema.h).
 */
#include "reqschema.h"
#include "log.h"
#include "mem.h"
#include "problem.h"
#include "schema/validator.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* build/gen/openapi_json.c (scripts/embed-openapi-json.py) */
extern const char openapi_json[];
extern const size_t openapi_json_len;

#define COMPONENT_PREFIX "#/components/schemas/"
#define LOCAL_PREFIX "#/$defs/"
/* How deep a request schema nests; deeper is not walked for references. */
#define MAX_SCHEMA_NESTING 64

typedef struct op_schema {
    char *operation; /* operationId; owned */
    schema *s;       /* owned */
} op_schema;

/* Written by reqschema_init before any thread checks, read-only afterwards. */
static op_schema *ops;
static size_t nops;

/* Rewrites every `#/components/schemas/X…` reference under `v` to `#/$defs/X…` and copies
 * each component it names (and those they name) into `defs` once. */
static void localise(json_t *v, json_t *components, json_t *defs, int depth)
{
    if (depth > MAX_SCHEMA_NESTING) return;
    if (json_is_array(v)) {
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) localise(m, components, defs, depth + 1);
        return;
    }
    if (!json_is_object(v)) return;
    const char *k;
    json_t *m;
    json_object_foreach(v, k, m)
    {
        const char *ref = json_string_value(m);
        if (strcmp(k, "$ref") != 0 || !ref ||
            strncmp(ref, COMPONENT_PREFIX, strlen(COMPONENT_PREFIX)) != 0) {
            localise(m, components, defs, depth + 1);
            continue;
        }
        const char *rest = ref + strlen(COMPONENT_PREFIX);
        char *name = xstrndup(rest, strcspn(rest, "/"));
        char *local = xasprintf(LOCAL_PREFIX "%s", rest);
        json_string_set(m, local); /* `ref` is gone from here on */
        free(local);
        json_t *target = json_object_get(components, name);
        if (target && !json_object_get(defs, name)) {
            json_t *copy = json_deep_copy(target);
            json_object_set_new(defs, name, copy); /* before the walk: cycles end here */
            localise(copy, components, defs, 0);
        }
        /* an unknown component stays a dangling reference: schema_compile reports it */
        free(name);
    }
}

/* The operation's request schema as a document of its own (caller owns). */
static json_t *standalone(json_t *body_schema, json_t *components)
{
    json_t *doc = json_deep_copy(body_schema);
    json_t *defs = json_object(); /* the components it reaches */
    localise(doc, components, defs, 0);
    if (json_object_size(defs)) {
        json_t *own = json_object_get(doc, "$defs");
        if (json_is_object(own))
            json_object_update_missing(own, defs);
        else
            json_object_set(doc, "$defs", defs);
    }
    json_decref(defs);
    return doc;
}

static int compile_one(const char *operation, json_t *body_schema, json_t *components)
{
    json_t *doc = standalone(body_schema, components);
    json_t *errors = json_array();
    schema_status st;
    schema *s = schema_compile(doc, &st, errors);
    json_decref(doc);
    if (!s) {
        log_error("reqschema", "a request schema of openapi/openapi.yaml does not compile",
                  json_pack("{s:s,s:o}", "operation", operation, "errors", errors));
        return -1;
    }
    json_decref(errors);
    ops = xrealloc(ops, (nops + 1) * sizeof *ops);
    ops[nops].operation = xstrdup(operation);
    ops[nops].s = s;
    nops++;
    return 0;
}

int reqschema_init(void)
{
    if (ops) return 0;
    json_error_t err;
    json_t *doc = json_loadb(openapi_json, openapi_json_len, 0, &err);
    if (!doc) {
        log_error("reqschema", "the embedded OpenAPI document is not JSON",
                  json_pack("{s:s,s:i}", "error", err.text, "line", err.line));
        return -1;
    }
    json_t *components = json_object_get(json_object_get(doc, "components"), "schemas");
    json_t *paths = json_object_get(doc, "paths");
    const char *path, *method;
    json_t *item, *op;
    int rc = 0;
    json_object_foreach(paths, path, item)
    {
        json_object_foreach(item, method, op)
        {
            json_t *body = json_object_get(
                json_object_get(json_object_get(json_object_get(op, "requestBody"), "content"),
                                "application/json"),
                "schema");
            const char *id = json_string_value(json_object_get(op, "operationId"));
            if (!body) continue;
            if (!id) {
                log_error("reqschema", "an operation with a JSON body has no operationId",
                          json_pack("{s:s,s:s}", "path", path, "method", method));
                rc = -1;
                continue;
            }
            if (compile_one(id, body, components) < 0) rc = -1;
        }
    }
    json_decref(doc);
    if (rc < 0) reqschema_shutdown();
    return rc;
}

void reqschema_shutdown(void)
{
    for (size_t i = 0; i < nops; i++) {
        free(ops[i].operation);
        schema_free(ops[i].s);
    }
    free(ops);
    ops = NULL;
    nops = 0;
}

static const schema *find(const char *operation)
{
    for (size_t i = 0; i < nops; i++)
        if (strcmp(ops[i].operation, operation) == 0) return ops[i].s;
    return NULL;
}

bool reqschema_known(const char *operation)
{
    return find(operation) != NULL;
}

/* The JSON integer equal to `v` when `v` is an integral real that fits an int64 (caller
 * owns), else NULL. */
static json_t *integer_of(json_t *v)
{
    if (!json_is_real(v)) return NULL;
    double d = json_real_value(v);
    if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0) return NULL;
    return json_integer((json_int_t)d);
}

static void integral_reals_to_integers(json_t *v, int depth)
{
    if (depth > SCHEMA_MAX_INSTANCE_DEPTH) return;
    if (json_is_object(v)) {
        for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
            json_t *m = json_object_iter_value(it), *n = integer_of(m);
            if (n)
                json_object_iter_set_new(v, it, n);
            else
                integral_reals_to_integers(m, depth + 1);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *m = json_array_get(v, i), *n = integer_of(m);
            if (n)
                json_array_set_new(v, i, n);
            else
                integral_reals_to_integers(m, depth + 1);
        }
    }
}

json_t *reqschema_check(const char *operation, json_t *body)
{
    const schema *s = find(operation);
    if (!s) {
        log_error("reqschema", "no request schema for this operation",
                  json_pack("{s:s}", "operation", operation));
        return problem_newf("internal", "no request schema for %s", operation);
    }
    integral_reals_to_integers(body, 0);
    json_t *errors = json_array();
    if (schema_validate(s, body, "", -1, errors)) {
        json_decref(errors);
        return NULL;
    }
    json_t *p = problem_newf("invalid_request",
                             "the body does not match the request schema of %s (GET "
                             "/openapi.yaml); errors lists each violation",
                             operation);
    json_object_set_new(p, "errors", errors);
    return p;
}
