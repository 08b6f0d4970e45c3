/*
 * common.c — request plumbing shared by the handlers (see handlers.h).
 */
#include "handlers.h"
#include "../server/jsonparse.h"
#include "../server/log.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/reads.h"
#include "../server/reqschema.h"

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

json_t *handler_checked_body_or_problem(http_req *req, const char *operation)
{
    static const char *const types[] = {"application/json", NULL};
    if (!handler_media_type_or_problem(req, types)) return NULL;
    json_t *root = handler_json_body_or_problem(req);
    if (!root) return NULL;
    /* A filter's `where` is checked by the filter's own parser first: a bad condition is
     * 400 invalid_filter naming it (where[N]), as on every other reader. */
    filter probe = {0};
    filter_error ferr;
    if (filter_parse_where(&probe, json_object_get(json_object_get(root, "filter"), "where"),
                           &ferr) < 0) {
        filter_dispose(&probe);
        json_decref(root);
        handler_filter_error(req, &ferr, "invalid_request");
        return NULL;
    }
    filter_dispose(&probe);
    json_t *problem = reqschema_check(operation, root);
    if (!problem) return root;
    json_decref(root);
    http_reply_problem(req, problem);
    return NULL;
}

void handler_reply_page(http_req *req, PGconn **conn, const read_filter *f)
{
    buf out;
    buf_init(&out);
    if (*conn && store_read_page(conn, http_config()->store_timeout_ms, f, &out) == SL_OK) {
        size_t len;
        char *body = buf_steal(&out, &len);
        http_reply(req, 200, "application/json", body, len);
    } else {
        handler_store_unavailable(req);
    }
    buf_dispose(&out);
}

void handler_store_unavailable(http_req *req)
{
    http_add_header(req, "Retry-After", "1");
    http_reply_error(req, "store_unavailable", "PostgreSQL is unavailable; retry shortly");
}

void handler_answer_status(http_req *req, sl_status rc, json_t *answer)
{
    switch (rc) {
    case SL_REFUSED:
        http_reply_problem(req, answer);
        return;
    case SL_LIMITED:
        http_add_header(req, "Retry-After", "1");
        http_reply_problem(req, answer);
        return;
    case SL_NOT_FOUND: /* the caller words these two; a plain answer when it did not */
        http_reply_error(req, "not_found", "no such resource");
        break;
    case SL_CONFLICT:
        http_reply_error(req, "conflict", "the request conflicts with the resource's state");
        break;
    case SL_OK: /* the caller's to answer: never reached */
    case SL_AGAIN:
    case SL_UNAVAILABLE:
        handler_store_unavailable(req);
        break;
    }
    json_decref(answer);
}

void handler_filter_error(http_req *req, const filter_error *err, const char *code)
{
    http_reply_error(req, err->where ? "invalid_filter" : code, err->message);
}

void handler_tenant_full(http_req *req, int n, const char *what, const char *setting)
{
    http_add_header(req, "Retry-After", "1");
    http_reply_problem(req, problem_newf("rate_limited",
                                         "this tenant has %d %s (%s); retry after one ends", n,
                                         what, setting));
}

void handler_pool_full(http_req *req)
{
    http_add_header(req, "Retry-After", "1");
    http_reply_problem(req, problem_newf("overloaded",
                                         "%d requests are waiting for PostgreSQL already "
                                         "(SLUICE_POOL_QUEUE); retry shortly",
                                         http_config()->pool_queue));
}

/* Suspends `req` and queues `fn` with `submit`; a full queue is answered 503 at once. */
static void run_via(int (*submit)(pool_fn fn, void *arg), http_req *req, pool_fn fn, void *arg,
                    void (*arg_free)(void *arg))
{
    http_suspend(req);
    if (submit(fn, arg) == 0) return;
    if (arg_free) arg_free(arg);
    handler_pool_full(req);
    http_resume(req);
}

void handler_run_on_pool(http_req *req, pool_fn fn, void *arg, void (*arg_free)(void *arg))
{
    run_via(pool_submit, req, fn, arg, arg_free);
}

void handler_run_read(http_req *req, pool_fn fn, void *arg, void (*arg_free)(void *arg))
{
    run_via(reads_submit, req, fn, arg, arg_free);
}
