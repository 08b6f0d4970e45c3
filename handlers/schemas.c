/*
 * schemas.c — /v1/schemas: the registry's REST face. Reads are answered from
 * the in-memory registry; writes go to a pool worker. Every route acts for the
 * caller's tenant: reads see its private types and the global ones, writes go to its
 * own namespace (registry.h).
 */
#include "handlers.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/reqschema.h"
#include "../server/schema/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static registry_type *type_or_problem(http_req *req, const char *type)
{
    registry_type *t = registry_get(req->auth.tenant, type);
    if (!t)
        http_reply_problem(
            req, problem_newf("not_found", "no schema is registered for type '%s'", type));
    return t;
}

void schemas_on_list(http_req *req)
{
    http_reply_json(req, 200, registry_list_json(req->auth.tenant));
}

void schemas_on_get(http_req *req)
{
    registry_type *t = type_or_problem(req, req->params[0]);
    if (!t) return;
    http_reply_json(req, 200, registry_type_json(t, true));
    registry_release(t);
}

void schemas_on_versions(http_req *req)
{
    registry_type *t = type_or_problem(req, req->params[0]);
    if (!t) return;
    json_t *versions = json_array();
    for (int i = 0; i < t->n_versions; i++)
        json_array_append_new(versions, json_pack("{s:i,s:s}", "version", t->versions[i].version,
                                                  "created_at", t->versions[i].created_at));
    http_reply_json(req, 200, json_pack("{s:s,s:o}", "type", t->type, "versions", versions));
    registry_release(t);
}

/* A version number as written in a URL: 1 to 6 digits, nothing else. → the number or -1. */
static long version_number(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 6 || strspn(s, "0123456789") != n) return -1;
    return strtol(s, NULL, 10);
}

void schemas_on_version(http_req *req)
{
    registry_type *t = type_or_problem(req, req->params[0]);
    if (!t) return;
    long n = version_number(req->params[1]);
    if (n < 1 || n > t->n_versions) {
        http_reply_problem(req, problem_newf("not_found", "type '%s' has versions 1 to %d", t->type,
                                             t->n_versions));
    } else {
        registry_version *v = &t->versions[n - 1];
        http_reply_json(req, 200,
                        json_pack("{s:s,s:i,s:s,s:O,s:s}", "type", t->type, "version", v->version,
                                  "stream", t->stream, "schema", v->doc, "created_at",
                                  v->created_at));
    }
    registry_release(t);
}

void schemas_on_validate(http_req *req)
{
    static const char *const types[] = {"application/json", NULL};
    if (!handler_media_type_or_problem(req, types)) return;
    registry_type *t = type_or_problem(req, req->params[0]);
    if (!t) return;
    const char *vq = http_query(req, "version");
    long n = vq ? version_number(vq) : t->n_versions;
    if (n < 0) {
        http_reply_error(req, "invalid_query", "version must be a positive integer");
        registry_release(t);
        return;
    }
    json_t *data = handler_json_body_or_problem(req);
    if (data) {
        if (n < 1 || n > t->n_versions || !t->versions[n - 1].compiled) {
            http_reply_problem(req, problem_newf("unknown_schema_version",
                                                 "type '%s' has versions 1 to %d", t->type,
                                                 t->n_versions));
        } else {
            json_t *errors = json_array();
            schema_budget budget = {.max_nodes = http_config()->validation_max_nodes,
                                    .max_steps = http_config()->validation_max_steps};
            bool valid =
                schema_validate_budget(t->versions[n - 1].compiled, data, "", -1, errors, &budget);
            if (budget.over) { /* as a publish of it would be answered (issue 13) */
                bool steps = budget.over == SCHEMA_OVER_STEPS;
                json_t *p = problem_newf(
                    "validation_too_costly",
                    "validating this value takes more than %lld %s (%s); Sluice stopped there",
                    steps ? budget.max_steps : budget.max_nodes,
                    steps ? "regex and string steps" : "schema evaluations",
                    steps ? "SLUICE_VALIDATION_MAX_STEPS" : "SLUICE_VALIDATION_MAX_NODES");
                json_object_set_new(p, "limit",
                                    json_string(steps ? "SLUICE_VALIDATION_MAX_STEPS"
                                                      : "SLUICE_VALIDATION_MAX_NODES"));
                json_object_set_new(p, "max",
                                    json_integer(steps ? budget.max_steps : budget.max_nodes));
                json_object_set_new(p, "errors", errors);
                http_reply_problem(req, p);
            } else {
                http_reply_json(req, 200,
                                json_pack("{s:b,s:i,s:o}", "valid", valid, "version", (int)n,
                                          "errors", errors));
            }
        }
        json_decref(data);
    }
    registry_release(t);
}

/* ------------------------------------------------------------------ writes */

typedef enum { W_REGISTER, W_COMPAT, W_DEPRECATE } write_kind;

typedef struct write_job {
    http_req *req;
    write_kind kind;
    char tenant[sizeof((auth_ctx *)0)->tenant]; /* the caller's: the namespace written */
    char *type;                                 /* owned; compat/deprecate */
    json_t *body;                               /* owned; register/compat */
} write_job;

static void write_job_free(void *arg)
{
    write_job *j = arg;
    free(j->type);
    json_decref(j->body);
    free(j);
}

static void run_write(PGconn **conn, void *arg)
{
    write_job *j = arg;
    json_t *answer = NULL;
    registry_outcome out = REG_STORE_DOWN;
    if (*conn) {
        if (j->kind == W_REGISTER)
            out = registry_register(conn, j->tenant, j->body, &answer);
        else if (j->kind == W_COMPAT)
            out = registry_set_compat(conn, j->tenant, j->type, j->body, &answer);
        else
            out = registry_deprecate(conn, j->tenant, j->type, &answer);
    }
    if (out == REG_STORE_DOWN) {
        json_decref(answer);
        handler_store_unavailable(j->req);
    } else if (out == REG_REFUSED) {
        http_reply_problem(j->req, answer);
    } else {
        http_reply_json(j->req, (int)out, answer);
    }
    http_resume(j->req);
    write_job_free(j);
}

/* `body`: the request body (owned), NULL for a write that takes none. */
static void start_write(http_req *req, write_kind kind, json_t *body)
{
    write_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->kind = kind;
    snprintf(j->tenant, sizeof j->tenant, "%s", req->auth.tenant);
    if (req->params[0]) j->type = xstrdup(req->params[0]);
    j->body = body;
    handler_run_on_pool(req, run_write, j, write_job_free);
}

void schemas_on_register(http_req *req)
{
    static const char *const types[] = {"application/json", NULL};
    if (!handler_media_type_or_problem(req, types)) return;
    json_t *body = handler_json_body_or_problem(req);
    if (body) start_write(req, W_REGISTER, body);
}

void schemas_on_set_compat(http_req *req)
{
    json_t *body = handler_checked_body_or_problem(req, REQSCHEMA_SCHEMA_COMPAT);
    if (body) start_write(req, W_COMPAT, body);
}

void schemas_on_deprecate(http_req *req)
{
    start_write(req, W_DEPRECATE, NULL);
}
