/*
 * handlers.h — the REST handlers, one file per resource. Each parses the
 * request, calls one core function, and answers (http.h explains the async
 * contract). The route table in routes.c maps paths and scopes to them.
 */
#ifndef SLUICE_HANDLERS_H
#define SLUICE_HANDLERS_H

#include "../server/http.h"
#include "../server/pool.h"

/* events.c */
void events_publish(http_req *req);
void events_get(http_req *req);
void events_list(http_req *req);
void events_wait(http_req *req);
/* streams.c */
void streams_list_handler(http_req *req);
void streams_get_handler(http_req *req);
void streams_put_handler(http_req *req);
void streams_key_history(http_req *req);
void correlations_get(http_req *req);
/* projections.c */
void projections_create(http_req *req);
void projections_list(http_req *req);
void projections_get(http_req *req);
void projections_state(http_req *req);
void projections_reset(http_req *req);
void projections_delete(http_req *req);
/* replays.c */
void replays_create(http_req *req);
void replays_get(http_req *req);
void replays_cancel(http_req *req);
/* groups.c */
void groups_create_handler(http_req *req);
void groups_list_handler(http_req *req);
void groups_delete_handler(http_req *req);
void groups_nack_handler(http_req *req);
/* dead_letters.c */
void dead_letters_list(http_req *req);
void dead_letters_get(http_req *req);
void dead_letters_reprocess(http_req *req);
void dead_letters_discard(http_req *req);
void dead_letters_reprocess_batch(http_req *req);
/* subscribe.c */
void subscribe_sse(http_req *req);
/* schemas.c */
void schemas_list(http_req *req);
void schemas_register(http_req *req);
void schemas_get(http_req *req);
void schemas_versions(http_req *req);
void schemas_version(http_req *req);
void schemas_set_compat(http_req *req);
void schemas_validate(http_req *req);
void schemas_deprecate(http_req *req);
/* keys.c */
void keys_create(http_req *req);
void keys_list(http_req *req);
void keys_delete(http_req *req);
/* ops.c */
void ops_health(http_req *req);
void ops_ready(http_req *req);
void ops_info(http_req *req);
void ops_openapi(http_req *req);
void ops_metrics(http_req *req);
void ops_stats(http_req *req);

/* common.c: shared request plumbing */
/* True when the Content-Type is absent or one of the NULL-terminated `types`;
 * otherwise answers 415 and returns false. */
bool handler_media_type_or_problem(http_req *req, const char *const *types);
/* Parses the body as JSON; on failure answers 400 invalid_json (with line and column)
 * and returns NULL. Caller owns the result. */
json_t *handler_json_body_or_problem(http_req *req);
/* Suspends `req` and runs `fn(conn, arg)` on the pool; answers 503 if the pool is full
 * (then `arg` is freed with `arg_free`). */
void handler_run_on_pool(http_req *req, pool_fn fn, void *arg, void (*arg_free)(void *arg));
/* In a pool job: answers 503 store_unavailable with Retry-After. */
void handler_store_unavailable(http_req *req);
/* 429 rate_limited + Retry-After: the tenant holds `what` up to its cap `setting` (n). */
void handler_tenant_full(http_req *req, int n, const char *what, const char *setting);

#endif
