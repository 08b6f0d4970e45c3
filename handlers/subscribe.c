/*
 * subscribe.c — GET /v1/subscribe: the live feed as Server-Sent Events.
 *
 * Parses the query (the filter; from_position, or Last-Event-ID, which wins),
 * takes one of the tenant's stream slots (SLUICE_TENANT_STREAMS, shared with
 * NDJSON streams) and hands the request to server/sse.c, which owns the stream;
 * each refusal is answered here.
 */
#include "handlers.h"
#include "../server/problem.h"
#include "../server/sse.h"
#include "../server/tenants.h"

#include <stdlib.h>
#include <string.h>

static const char *query_arg(void *ctx, const char *name)
{
    return http_query(ctx, name);
}

void subscribe_on_sse(http_req *req)
{
    long long from_position = -1; /* live only */
    const char *from = http_header(req, "Last-Event-ID");
    if (!from) from = http_query(req, "from_position");
    char *end = NULL;
    if (from && (*from == '\0' || (from_position = strtoll(from, &end, 10)) < 0 || *end)) {
        http_reply_error(req, "invalid_query", "from_position / Last-Event-ID must be a position");
        return;
    }
    filter fl;
    memset(&fl, 0, sizeof fl); /* filter_parse_query adds to an empty filter */
    filter_error err;
    if (filter_parse_query(&fl, query_arg, req, &err) < 0) {
        handler_filter_error(req, &err, "invalid_query");
        return;
    }
    if (!tenants_acquire(req->auth.tenant, TENANT_STREAMS)) {
        filter_dispose(&fl);
        handler_tenant_full(req, tenants_cap(TENANT_STREAMS), "SSE/NDJSON streams open",
                            "SLUICE_TENANT_STREAMS");
        return;
    }
    sse_rc rc = sse_start(req, &fl, from_position);
    if (rc == SSE_STARTED) return; /* the stream has the slot */
    tenants_release(req->auth.tenant, TENANT_STREAMS);
    switch (rc) {
    case SSE_REVOKED:
        http_add_header(req, "WWW-Authenticate", "Bearer realm=\"sluice\"");
        http_reply_error(req, "unauthenticated", "the API key was revoked");
        break;
    case SSE_FULL:
        http_add_header(req, "Retry-After", "1");
        http_reply_error(req, "overloaded", "too many SSE subscribers; retry shortly");
        break;
    case SSE_TENANT_CATCHUPS:
        http_add_header(req, "Retry-After", "1");
        http_reply_problem(req, problem_newf("rate_limited",
                                             "this tenant runs %d history catch-ups already "
                                             "(SLUICE_TENANT_CATCHUPS); retry shortly",
                                             tenants_cap(TENANT_CATCHUPS)));
        break;
    default: /* SSE_CATCHUPS_FULL */
        http_add_header(req, "Retry-After", "1");
        http_reply_error(req, "overloaded",
                         "SLUICE_MAX_CATCHUPS history catch-ups are running already; retry "
                         "shortly");
        break;
    }
}
