/*
 * routes.c — every route Sluice serves: method, path, handler, scope.
 * Routes are data; tests/unit/handlers/routes.c checks this table against
 * openapi/openapi.yaml. Exact paths come before parameterised ones.
 */
#include "handlers.h"
#include "../server/web.h"

const http_route http_routes[] = {
    {"GET", "/health", ops_health, SCOPE_NONE},
    {"GET", "/ready", ops_ready, SCOPE_NONE},
    {"GET", "/v1/info", ops_info, SCOPE_NONE},
    {"GET", "/openapi.yaml", ops_openapi, SCOPE_NONE},
    {"GET", "/metrics", ops_metrics, SCOPE_NONE},
    {"GET", "/v1/stats", ops_stats, SCOPE_READ},
    {"GET", "/", web_serve, SCOPE_NONE},
    {"POST", "/v1/events", events_publish, SCOPE_PUBLISH},
    {"GET", "/v1/events", events_list, SCOPE_READ},
    {"GET", "/v1/events/wait", events_wait, SCOPE_READ},
    {"GET", "/v1/events/{id}", events_get, SCOPE_READ},
    {"GET", "/v1/subscribe", subscribe_sse, SCOPE_SUBSCRIBE},
    {"GET", "/v1/streams", streams_list_handler, SCOPE_READ},
    {"GET", "/v1/streams/{stream}", streams_get_handler, SCOPE_READ},
    {"PUT", "/v1/streams/{stream}", streams_put_handler, SCOPE_ADMIN},
    {"GET", "/v1/streams/{stream}/keys/{key}", streams_key_history, SCOPE_READ},
    {"GET", "/v1/correlations/{correlation_id}", correlations_get, SCOPE_READ},
    {"GET", "/v1/streams/{stream}/groups", groups_list_handler, SCOPE_ADMIN},
    {"POST", "/v1/streams/{stream}/groups", groups_create_handler, SCOPE_ADMIN},
    {"DELETE", "/v1/streams/{stream}/groups/{group}", groups_delete_handler, SCOPE_ADMIN},
    {"POST", "/v1/streams/{stream}/groups/{group}/nack", groups_nack_handler, SCOPE_ADMIN},
    {"GET", "/v1/dead-letters", dead_letters_list, SCOPE_ADMIN},
    {"POST", "/v1/dead-letters/reprocess", dead_letters_reprocess_batch, SCOPE_ADMIN},
    {"GET", "/v1/dead-letters/{id}", dead_letters_get, SCOPE_ADMIN},
    {"POST", "/v1/dead-letters/{id}/reprocess", dead_letters_reprocess, SCOPE_ADMIN},
    {"POST", "/v1/dead-letters/{id}/discard", dead_letters_discard, SCOPE_ADMIN},
    {"POST", "/v1/projections", projections_create, SCOPE_ADMIN},
    {"GET", "/v1/projections", projections_list, SCOPE_READ},
    {"GET", "/v1/projections/{name}", projections_get, SCOPE_READ},
    {"DELETE", "/v1/projections/{name}", projections_delete, SCOPE_ADMIN},
    {"GET", "/v1/projections/{name}/state", projections_state, SCOPE_READ},
    {"POST", "/v1/projections/{name}/reset", projections_reset, SCOPE_ADMIN},
    {"POST", "/v1/replays", replays_create, SCOPE_ADMIN},
    {"GET", "/v1/replays/{id}", replays_get, SCOPE_ADMIN},
    {"DELETE", "/v1/replays/{id}", replays_cancel, SCOPE_ADMIN},
    {"GET", "/v1/schemas", schemas_list, SCOPE_READ},
    {"POST", "/v1/schemas", schemas_register, SCOPE_SCHEMAS},
    {"GET", "/v1/schemas/{type}", schemas_get, SCOPE_READ},
    {"DELETE", "/v1/schemas/{type}", schemas_deprecate, SCOPE_SCHEMAS},
    {"GET", "/v1/schemas/{type}/versions", schemas_versions, SCOPE_READ},
    {"GET", "/v1/schemas/{type}/versions/{n}", schemas_version, SCOPE_READ},
    {"PUT", "/v1/schemas/{type}/compatibility", schemas_set_compat, SCOPE_SCHEMAS},
    {"POST", "/v1/schemas/{type}/validate", schemas_validate, SCOPE_READ},
    {"POST", "/v1/keys", keys_create, SCOPE_ADMIN},
    {"GET", "/v1/keys", keys_list, SCOPE_ADMIN},
    {"DELETE", "/v1/keys/{id}", keys_delete, SCOPE_ADMIN},
};

const size_t http_routes_count = sizeof http_routes / sizeof http_routes[0];
