/*
 * ops.c — /health, /ready, /v1/info: what operators and load balancers ask.
 */
#include "handlers.h"
#include "../server/appender.h"
#include "../server/mem.h"
#include "../server/redis.h"
#include "../server/relay.h"
#include "../server/ws.h"
#include "../server/store.h"
#include "../server/version.h"

#include <stdlib.h>

#define OPS_CHECK_TIMEOUT_MS 1000

void ops_health(http_req *req)
{
    http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void run_ready(PGconn **conn, void *arg)
{
    http_req *req = arg;
    const sluice_config *cfg = http_config();
    long long head = *conn ? store_head(conn, OPS_CHECK_TIMEOUT_MS) : -1;
    bool pg = head >= 0 && appender_connected();
    long long relayed = relay_probe_checkpoint(cfg, OPS_CHECK_TIMEOUT_MS);
    bool redis = relayed >= 0;
    /* Publishing needs PostgreSQL only; a Redis outage delays fan-out, never a publish. */
    json_t *body = json_pack("{s:s,s:{s:s,s:s},s:o,s:I,s:i}", "status", pg ? "ready" : "not_ready",
                             "checks", "postgres", pg ? "ok" : "unavailable", "redis",
                             redis ? "ok" : "unavailable", "relay_lag",
                             pg && redis ? json_integer(head - relayed) : json_null(),
                             "head_position", (json_int_t)head, "ws_connections",
                             ws_connections());
    if (!pg) http_add_header(req, "Retry-After", "1");
    http_reply_json(req, pg ? 200 : 503, body);
    http_resume(req);
}

void ops_ready(http_req *req)
{
    handler_run_on_pool(req, run_ready, req, NULL);
}

static void run_info(PGconn **conn, void *arg)
{
    http_req *req = arg;
    const sluice_config *cfg = http_config();
    long long head = *conn ? store_head(conn, cfg->store_timeout_ms) : -1;
    if (head < 0) {
        handler_store_unavailable(req);
        http_resume(req);
        return;
    }
    long long relayed = relay_probe_checkpoint(cfg, OPS_CHECK_TIMEOUT_MS);
    json_t *body = json_pack(
        "{s:s,s:s,s:i,s:i,s:s,s:s,s:I,s:{s:I,s:i,s:i,s:i},s:s}", "name", "sluice", "version",
        SLUICE_VERSION, "http_port", http_bound_port(), "ws_port", http_ws_port(), "ws_path",
        "/v1/ws", "auth", cfg->auth ? "on" : "off", "head_position", (json_int_t)head, "limits",
        "max_body_bytes", (json_int_t)cfg->max_body_bytes, "max_batch", cfg->max_batch,
        "page_max", STORE_PAGE_MAX, "max_connections", cfg->max_connections, "redis_prefix",
        cfg->redis_prefix);
    json_object_set_new(body, "relay_lag", relayed >= 0 ? json_integer(head - relayed) : json_null());
    json_object_set_new(body, "relay_leader", json_boolean(relay_is_leader()));
    json_object_set_new(body, "ws_connections", json_integer(ws_connections()));
    http_reply_json(req, 200, body);
    http_resume(req);
}

void ops_info(http_req *req)
{
    handler_run_on_pool(req, run_info, req, NULL);
}

extern const char openapi_yaml[];
extern const size_t openapi_yaml_len;

void ops_openapi(http_req *req)
{
    http_reply(req, 200, "application/yaml", xstrndup(openapi_yaml, openapi_yaml_len),
               openapi_yaml_len);
}
