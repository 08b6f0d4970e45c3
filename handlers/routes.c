/*
 * routes.c — every route Sluice serves: method, path, handler, scope.
 * Routes are data; tests/unit/handlers/routes.c checks this table against
 * openapi/openapi.yaml. Exact paths come before parameterised ones.
 */
#include "handlers.h"
#include "../server/web.h"

const http_route http_routes[] = {
    {"GET", "/health", ops_on_health, SCOPE_NONE},
    {"GET", "/ready", ops_on_ready, SCOPE_NONE},
    {"GET", "/v1/info", ops_on_info, SCOPE_NONE},
    {"GET", "/openapi.yaml", ops_on_openapi, SCOPE_NONE},
    {"GET", "/metrics", ops_on_metrics, SCOPE_NONE},
    {"GET", "/v1/stats", ops_on_stats, SCOPE_READ},
    {"GET", "/", web_on_get, SCOPE_NONE},
    {"POST", "/v1/events", events_on_publish, SCOPE_PUBLISH},
    {"GET", "/v1/events", events_on_list, SCOPE_READ},
    {"GET", "/v1/events/wait", events_on_wait, SCOPE_READ},
    {"GET", "/v1/events/{id}", events_on_get, SCOPE_READ},
    {"GET", "/v1/subscribe", subscribe_on_sse, SCOPE_SUBSCRIBE},
    {"GET", "/v1/streams", streams_on_list, SCOPE_READ},
    {"GET", "/v1/streams/{stream}", streams_on_get, SCOPE_READ},
    {"PUT", "/v1/streams/{stream}", streams_on_put, SCOPE_ADMIN},
    {"GET", "/v1/streams/{stream}/keys/{key}", streams_on_key_history, SCOPE_READ},
    {"GET", "/v1/correlations/{correlation_id}", correlations_on_get, SCOPE_READ},
    {"GET", "/v1/streams/{stream}/groups", groups_on_list, SCOPE_ADMIN},
    {"POST", "/v1/streams/{stream}/groups", groups_on_create, SCOPE_ADMIN},
    {"DELETE", "/v1/streams/{stream}/groups/{group}", groups_on_delete, SCOPE_ADMIN},
    {"GET", "/v1/webhooks", webhooks_on_list, SCOPE_ADMIN},
    {"POST", "/v1/webhooks", webhooks_on_create, SCOPE_ADMIN},
    {"GET", "/v1/webhooks/{name}", webhooks_on_get, SCOPE_ADMIN},
    {"DELETE", "/v1/webhooks/{name}", webhooks_on_delete, SCOPE_ADMIN},
    {"POST", "/v1/webhooks/{name}/pause", webhooks_on_pause, SCOPE_ADMIN},
    {"POST", "/v1/webhooks/{name}/resume", webhooks_on_resume, SCOPE_ADMIN},
    {"POST", "/v1/webhooks/{name}/rotate-secret", webhooks_on_rotate_secret, SCOPE_ADMIN},
    {"POST", "/v1/streams/{stream}/groups/{group}/fetch", consume_on_fetch, SCOPE_CONSUME},
    {"POST", "/v1/streams/{stream}/groups/{group}/ack", consume_on_ack, SCOPE_CONSUME},
    {"POST", "/v1/streams/{stream}/groups/{group}/nack", consume_on_nack, SCOPE_CONSUME},
    {"POST", "/v1/streams/{stream}/groups/{group}/extend", consume_on_extend, SCOPE_CONSUME},
    {"GET", "/v1/dead-letters", dead_letters_on_list, SCOPE_ADMIN},
    {"POST", "/v1/dead-letters/reprocess", dead_letters_on_reprocess_batch, SCOPE_ADMIN},
    {"GET", "/v1/dead-letters/{id}", dead_letters_on_get, SCOPE_ADMIN},
    {"POST", "/v1/dead-letters/{id}/reprocess", dead_letters_on_reprocess, SCOPE_ADMIN},
    {"POST", "/v1/dead-letters/{id}/discard", dead_letters_on_discard, SCOPE_ADMIN},
    {"POST", "/v1/projections", projections_on_create, SCOPE_ADMIN},
    {"GET", "/v1/projections", projections_on_list, SCOPE_READ},
    {"GET", "/v1/projections/{name}", projections_on_get, SCOPE_READ},
    {"DELETE", "/v1/projections/{name}", projections_on_delete, SCOPE_ADMIN},
    {"GET", "/v1/projections/{name}/state", projections_on_state, SCOPE_READ},
    {"POST", "/v1/projections/{name}/reset", projections_on_reset, SCOPE_ADMIN},
    {"POST", "/v1/replays", replays_on_create, SCOPE_ADMIN},
    {"GET", "/v1/replays/{id}", replays_on_get, SCOPE_ADMIN},
    {"DELETE", "/v1/replays/{id}", replays_on_cancel, SCOPE_ADMIN},
    {"GET", "/v1/schemas", schemas_on_list, SCOPE_READ},
    {"POST", "/v1/schemas", schemas_on_register, SCOPE_SCHEMAS},
    {"GET", "/v1/schemas/{type}", schemas_on_get, SCOPE_READ},
    {"DELETE", "/v1/schemas/{type}", schemas_on_deprecate, SCOPE_SCHEMAS},
    {"GET", "/v1/schemas/{type}/versions", schemas_on_versions, SCOPE_READ},
    {"GET", "/v1/schemas/{type}/versions/{n}", schemas_on_version, SCOPE_READ},
    {"PUT", "/v1/schemas/{type}/compatibility", schemas_on_set_compat, SCOPE_SCHEMAS},
    {"POST", "/v1/schemas/{type}/validate", schemas_on_validate, SCOPE_READ},
    {"POST", "/v1/keys", keys_on_create, SCOPE_ADMIN},
    {"GET", "/v1/keys", keys_on_list, SCOPE_ADMIN},
    {"DELETE", "/v1/keys/{id}", keys_on_delete, SCOPE_ADMIN},
    /* The dashboard's other files (web.h), last: a GET of a file of web/, whatever its
     * segments (web/vendor/…); any other path is the router's 404 (main.c tells http.c
     * which paths are files: http_set_fallback_paths). */
    {"GET", "/{file}", web_on_get, SCOPE_NONE},
};

const size_t http_routes_count = sizeof http_routes / sizeof http_routes[0];
const size_t http_routes_fallback = http_routes_count - 1;
