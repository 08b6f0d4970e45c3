/*
 * common.c — request plumbing shared by the handlers (see handlers.h).
 */
#include "handlers.h"
#include "../server/jsonparse.h"
#include "../server/log.h"
#include "../server/mem.h"
#include "../server/problem.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool handler_media_type_or_problem(http_req *req, const char *const *types)
{
    const char *ct = http_header(req, "Content-Type");
    if (!ct || !*ct) return true;
    size_t n = strcspn(ct, "; ");
    for (const char *const *t = types; *t; t++)
        if (strlen(*t) == n && strncasecmp(ct, *t, n) == 0) return true;
    http_reply_problem(req, problem_newf("unsupported_media_type",
                                         "Content-Type %.*s is not accepted here; send %s",
                                         (int)(n > 100 ? 100 : n), ct, types[0]));
    return false;
}

json_t *handler_json_body_or_problem(http_req *req)
{
    json_error_t err;
    json_t *root = jsonparse_body(req->body, req->body_len, &err);
    if (root) return root;
    json_t *p = problem_newf("invalid_json", "%s", err.text);
    json_object_set_new(p, "line", json_integer(err.line));
    json_object_set_new(p, "column", json_integer(err.column));
    http_reply_problem(req, p);
    return NULL;
}

void handler_store_unavailable(http_req *req)
{
    http_add_header(req, "Retry-After", "1");
    http_reply_error(req, "store_unavailable", "PostgreSQL is unavailable; retry shortly");
}

void handler_tenant_full(http_req *req, int n, const char *what, const char *setting)
{
    http_add_header(req, "Retry-After", "1");
    http_reply_problem(req, problem_newf("rate_limited",
                                         "this tenant has %d %s (%s); retry after one ends", n,
                                         what, setting));
}

void handler_run_on_pool(http_req *req, pool_fn fn, void *arg, void (*arg_free)(void *arg))
{
    http_suspend(req);
    if (pool_submit(fn, arg) == 0) return;
    if (arg_free) arg_free(arg);
    http_add_header(req, "Retry-After", "1");
    http_reply_error(req, "overloaded", "too many requests are waiting for PostgreSQL");
    http_resume(req);
}
