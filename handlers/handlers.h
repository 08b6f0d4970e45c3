/*
 * handlers.h — the REST handlers, one file per resource. Each parses the
 * request, calls one core function, and answers (http.h explains the async
 * contract). The route table in routes.c maps paths and scopes to them.
 * A handler is named <resource>_on_<verb>, the resource being its file
 * (events_on_publish in events.c); core functions never contain "_on_".
 */
#ifndef SLUICE_HANDLERS_H
#define SLUICE_HANDLERS_H

#include "../server/filter.h"
#include "../server/http.h"
#include "../server/pool.h"
#include "../server/store.h"
#include "../server/status.h"

/* events.c */
void events_on_publish(http_req *req);
void events_on_get(http_req *req);
void events_on_list(http_req *req);
void events_on_wait(http_req *req);
/* streams.c */
void streams_on_list(http_req *req);
void streams_on_get(http_req *req);
void streams_on_put(http_req *req);
void streams_on_key_history(http_req *req);
void correlations_on_get(http_req *req);
/* projections.c */
void projections_on_create(http_req *req);
void projections_on_list(http_req *req);
void projections_on_get(http_req *req);
void projections_on_state(http_req *req);
void projections_on_reset(http_req *req);
void projections_on_delete(http_req *req);
/* replays.c */
void replays_on_create(http_req *req);
void replays_on_get(http_req *req);
void replays_on_cancel(http_req *req);
/* groups.c */
void groups_on_create(http_req *req);
void groups_on_list(http_req *req);
void groups_on_delete(http_req *req);
/* consume.c */
void consume_on_fetch(http_req *req);
void consume_on_ack(http_req *req);
void consume_on_nack(http_req *req);
void consume_on_extend(http_req *req);
/* webhooks.c */
void webhooks_on_create(http_req *req);
void webhooks_on_list(http_req *req);
void webhooks_on_get(http_req *req);
void webhooks_on_delete(http_req *req);
void webhooks_on_pause(http_req *req);
void webhooks_on_resume(http_req *req);
void webhooks_on_rotate_secret(http_req *req);
/* dead_letters.c */
void dead_letters_on_list(http_req *req);
void dead_letters_on_get(http_req *req);
void dead_letters_on_reprocess(http_req *req);
void dead_letters_on_discard(http_req *req);
void dead_letters_on_reprocess_batch(http_req *req);
/* subscribe.c */
void subscribe_on_sse(http_req *req);
/* schemas.c */
void schemas_on_list(http_req *req);
void schemas_on_register(http_req *req);
void schemas_on_get(http_req *req);
void schemas_on_versions(http_req *req);
void schemas_on_version(http_req *req);
void schemas_on_set_compat(http_req *req);
void schemas_on_validate(http_req *req);
void schemas_on_deprecate(http_req *req);
/* keys.c */
void keys_on_create(http_req *req);
void keys_on_list(http_req *req);
void keys_on_delete(http_req *req);
/* ops.c */
void ops_on_health(http_req *req);
void ops_on_ready(http_req *req);
void ops_on_info(http_req *req);
void ops_on_openapi(http_req *req);
void ops_on_metrics(http_req *req);
void ops_on_stats(http_req *req);

/* common.c: shared request plumbing */
/* True when the Content-Type is absent or one of the NULL-terminated `types`;
 * otherwise answers 415 and returns false. */
bool handler_media_type_or_problem(http_req *req, const char *const *types);
/* Parses the body as JSON; on failure answers 400 invalid_json (with line and column)
 * and returns NULL. Caller owns the result. */
json_t *handler_json_body_or_problem(http_req *req);
/* The body of `operation` (an operationId of openapi.yaml, reqschema.h): checks the media
 * type (application/json), parses the body and checks it against the operation's request
 * schema; on failure answers 415, 400 invalid_json or 400 invalid_request (each violation
 * in `errors`) and returns NULL. Caller owns the result. */
json_t *handler_checked_body_or_problem(http_req *req, const char *operation);
/* Suspends `req` and runs `fn(conn, arg)` on the pool; answers 503 if the pool is full
 * (then `arg` is freed with `arg_free`). */
void handler_run_on_pool(http_req *req, pool_fn fn, void *arg, void (*arg_free)(void *arg));
/* The same for a history read: on the read replica when one is configured and has what
 * the read must see (server/reads.h), else on the pool. */
void handler_run_read(http_req *req, pool_fn fn, void *arg, void (*arg_free)(void *arg));
/* 503 overloaded + Retry-After: SLUICE_POOL_QUEUE requests wait for PostgreSQL already. */
void handler_pool_full(http_req *req);
/* In a pool job: answers one page of `f` ({"events","next_after","has_more"}), or 503. */
void handler_reply_page(http_req *req, PGconn **conn, const read_filter *f);
/* In a pool job: answers 503 store_unavailable with Retry-After. */
void handler_store_unavailable(http_req *req);
/* In a pool job: answers a core call's status the way every handler does, taking
 * `answer` (the core's, may be NULL): SL_REFUSED sends it as the problem, SL_LIMITED sends
 * it with Retry-After, SL_UNAVAILABLE answers 503 store_unavailable. SL_NOT_FOUND and
 * SL_CONFLICT are worded by the caller before it gets here; given here they answer a
 * plain not_found or conflict. Not for SL_OK. */
void handler_answer_status(http_req *req, sl_status rc, json_t *answer);
/* 400 for a filter that does not parse: invalid_filter for its `where` part, `code`
 * (invalid_query, invalid_request) for the rest. */
void handler_filter_error(http_req *req, const filter_error *err, const char *code);
/* 429 rate_limited + Retry-After: the tenant holds `what` up to its cap `setting` (n). */
void handler_tenant_full(http_req *req, int n, const char *what, const char *setting);

#endif
