/*
 * keys.c — /v1/keys: create, list and revoke API keys (admin scope).
 */
#include "handlers.h"
#include "../server/mem.h"
#include "../server/problem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct key_job {
    http_req *req;
    auth_ctx caller;
    char tenant[ENVELOPE_TENANT_MAX + 1];
    unsigned scopes;
    char *name; /* owned; NULL = none */
    char *id;   /* owned (delete) */
} key_job;

static void key_job_free(void *arg)
{
    key_job *j = arg;
    free(j->name);
    free(j->id);
    free(j);
}

static void run_create(PGconn **conn, void *arg)
{
    key_job *j = arg;
    json_t *answer = NULL;
    if (*conn && auth_key_create(conn, j->tenant, j->scopes, j->name, &answer) == 0)
        http_reply_json(j->req, 201, answer);
    else
        handler_store_unavailable(j->req);
    http_resume(j->req);
    key_job_free(j);
}

void keys_create(http_req *req)
{
    static const char *const types[] = {"application/json", NULL};
    if (!handler_media_type_or_problem(req, types)) return;
    json_t *root = handler_json_body_or_problem(req);
    if (!root) return;
    json_t *errors = json_array();
    key_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->caller = req->auth;
    if (!json_is_object(root)) {
        json_array_append_new(errors, problem_error(-1, "", "type", "expected a JSON object"));
        goto answer;
    }
    const char *field;
    json_t *value;
    json_object_foreach(root, field, value) {
        if (strcmp(field, "tenant_id") && strcmp(field, "scopes") && strcmp(field, "name")) {
            char path[80];
            snprintf(path, sizeof path, "/%.60s", field);
            json_array_append_new(errors, problem_error(-1, path, "additionalProperties",
                                                        "unknown field; expected tenant_id, "
                                                        "scopes, name"));
        }
    }
    json_t *t = json_object_get(root, "tenant_id");
    const char *tenant = req->auth.tenant;
    if (t && !json_is_null(t)) {
        if (!json_is_string(t) || !auth_tenant_valid(json_string_value(t)))
            json_array_append_new(errors, problem_error(-1, "/tenant_id", "pattern",
                                                        "expected ^[A-Za-z0-9._-]{1,64}$"));
        else
            tenant = json_string_value(t);
    }
    if (strcmp(tenant, req->auth.tenant) != 0 && strcmp(req->auth.tenant, AUTH_DEFAULT_TENANT) != 0) {
        json_decref(root);
        json_decref(errors);
        key_job_free(j);
        http_reply_error(req, "forbidden", "an admin key may create keys for its own tenant only");
        return;
    }
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
    json_t *scopes = json_object_get(root, "scopes");
    if (!json_is_array(scopes) || json_array_size(scopes) == 0) {
        json_array_append_new(errors, problem_error(-1, "/scopes", "type",
                                                    "expected a non-empty array of scopes"));
    } else {
        size_t i;
        json_t *s;
        json_array_foreach(scopes, i, s) {
            unsigned bit = json_is_string(s) ? auth_scope_from_name(json_string_value(s)) : 0;
            if (!bit) {
                char path[32];
                snprintf(path, sizeof path, "/scopes/%zu", i);
                json_array_append_new(errors, problem_error(-1, path, "enum",
                                                            "expected one of publish, read, "
                                                            "subscribe, schemas, admin"));
            }
            j->scopes |= bit;
        }
    }
    json_t *name = json_object_get(root, "name");
    if (name && !json_is_null(name)) {
        if (!json_is_string(name) || json_string_length(name) > 256 ||
            strlen(json_string_value(name)) != json_string_length(name))
            json_array_append_new(errors, problem_error(-1, "/name", "type",
                                                        "expected a string of at most 256 bytes"));
        else
            j->name = xstrdup(json_string_value(name));
    }
answer:
    json_decref(root);
    if (json_array_size(errors)) {
        key_job_free(j);
        json_t *p = problem_new("invalid_request", "the key request is invalid");
        json_object_set_new(p, "errors", errors);
        http_reply_problem(req, p);
        return;
    }
    json_decref(errors);
    handler_run_on_pool(req, run_create, j, key_job_free);
}

static void run_list(PGconn **conn, void *arg)
{
    key_job *j = arg;
    json_t *answer = NULL;
    if (*conn && auth_key_list(conn, &j->caller, &answer) == 0)
        http_reply_json(j->req, 200, answer);
    else
        handler_store_unavailable(j->req);
    http_resume(j->req);
    key_job_free(j);
}

void keys_list(http_req *req)
{
    key_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->caller = req->auth;
    handler_run_on_pool(req, run_list, j, key_job_free);
}

static void run_delete(PGconn **conn, void *arg)
{
    key_job *j = arg;
    int rc = *conn ? auth_key_delete(conn, &j->caller, j->id) : -1;
    if (rc == 0)
        http_reply(j->req, 204, NULL, xstrdup(""), 0);
    else if (rc == -2)
        http_reply_problem(j->req, problem_newf("not_found", "no key with id '%s'", j->id));
    else
        handler_store_unavailable(j->req);
    http_resume(j->req);
    key_job_free(j);
}

void keys_delete(http_req *req)
{
    if (strcmp(req->params[0], AUTH_ADMIN_KEY_ID) == 0) {
        http_reply_error(req, "conflict",
                         "the bootstrap admin key is managed by SLUICE_ADMIN_TOKEN");
        return;
    }
    key_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->caller = req->auth;
    j->id = xstrdup(req->params[0]);
    handler_run_on_pool(req, run_delete, j, key_job_free);
}
