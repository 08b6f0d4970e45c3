/*
 * keys.c — /v1/keys: create, list and revoke API keys (admin scope). The create
 * body is checked against its schema in openapi.yaml (reqschema.h); what is left
 * here is who may create a key for which tenant.
 */
#include "handlers.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/reqschema.h"

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
    if (*conn && auth_key_create(conn, j->tenant, j->scopes, j->name, &answer) == SL_OK)
        http_reply_json(j->req, 201, answer);
    else
        handler_store_unavailable(j->req);
    http_resume(j->req);
    key_job_free(j);
}

void keys_on_create(http_req *req)
{
    json_t *root = handler_checked_body_or_problem(req, REQSCHEMA_KEY_CREATE);
    if (!root) return;
    const char *tenant = json_string_value(json_object_get(root, "tenant_id"));
    if (!tenant) tenant = req->auth.tenant;
    if (strcmp(tenant, req->auth.tenant) != 0 && strcmp(req->auth.tenant, AUTH_DEFAULT_TENANT) != 0) {
        json_decref(root);
        http_reply_error(req, "forbidden", "an admin key may create keys for its own tenant only");
        return;
    }
    key_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->caller = req->auth;
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(root, "scopes"), i, s) j->scopes |=
        auth_scope_from_name(json_string_value(s));
    j->name = xstrdup(json_string_value(json_object_get(root, "name")));
    json_decref(root);
    handler_run_on_pool(req, run_create, j, key_job_free);
}

static void run_list(PGconn **conn, void *arg)
{
    key_job *j = arg;
    json_t *answer = NULL;
    if (*conn && auth_key_list(conn, &j->caller, &answer) == SL_OK)
        http_reply_json(j->req, 200, answer);
    else
        handler_store_unavailable(j->req);
    http_resume(j->req);
    key_job_free(j);
}

void keys_on_list(http_req *req)
{
    key_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->caller = req->auth;
    handler_run_on_pool(req, run_list, j, key_job_free);
}

static void run_delete(PGconn **conn, void *arg)
{
    key_job *j = arg;
    sl_status rc = *conn ? auth_key_delete(conn, &j->caller, j->id) : SL_UNAVAILABLE;
    if (rc == SL_OK)
        http_reply(j->req, 204, NULL, xstrdup(""), 0);
    else if (rc == SL_NOT_FOUND)
        http_reply_problem(j->req, problem_newf("not_found", "no key with id '%s'", j->id));
    else
        handler_answer_status(j->req, rc, NULL);
    http_resume(j->req);
    key_job_free(j);
}

void keys_on_delete(http_req *req)
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
