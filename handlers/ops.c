/*
 * ops.c — /health, /ready, /v1/info: what operators and load balancers ask.
 *
 * DESIGN (issue 13, sealed tenants): what answers without an API key reveals nothing of
 * anyone's data. /v1/info without a valid token is version and ports only (no head
 * position, lag, connections or limits); /metrics, which names tenants, streams and
 * groups, asks for SLUICE_METRICS_TOKEN when it is set and answers loopback callers only
 * when it is not; /v1/stats is the caller's tenant's series only.
 */
#include "handlers.h"
#include "../server/webhook_delivery.h"
#include "../server/appender.h"
#include "../server/db.h"
#include "../server/groups.h"
#include "../server/mem.h"
#include "../server/reads.h"
#include "../server/metrics.h"
#include "../server/redis.h"
#include "../server/relay.h"
#include "../server/ws.h"
#include "../server/store.h"
#include "../server/version.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OPS_CHECK_TIMEOUT_MS 1000

void ops_on_health(http_req *req)
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
    json_t *body =
        json_pack("{s:s,s:{s:s,s:s},s:o,s:I,s:i}", "status", pg ? "ready" : "not_ready", "checks",
                  "postgres", pg ? "ok" : "unavailable", "redis", redis ? "ok" : "unavailable",
                  "relay_lag", pg && redis ? json_integer(head - relayed) : json_null(),
                  "head_position", (json_int_t)head, "ws_connections", ws_connections());
    if (!pg) http_add_header(req, "Retry-After", "1");
    http_reply_json(req, pg ? 200 : 503, body);
    http_resume(req);
}

void ops_on_ready(http_req *req)
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
        SLUICE_VERSION, "http_port", http_bound_port(), "ws_port", ws_port(), "ws_path",
        "/v1/ws", "auth", cfg->auth ? "on" : "off", "head_position", (json_int_t)head, "limits",
        "max_body_bytes", (json_int_t)cfg->max_body_bytes, "max_batch", cfg->max_batch, "page_max",
        STORE_PAGE_MAX, "max_connections", cfg->max_connections, "redis_prefix", cfg->redis_prefix);
    json_object_set_new(body, "relay_lag",
                        relayed >= 0 ? json_integer(head - relayed) : json_null());
    json_object_set_new(body, "relay_leader", json_boolean(relay_is_leader()));
    json_object_set_new(body, "ws_connections", json_integer(ws_connections()));
    http_reply_json(req, 200, body);
    http_resume(req);
}

void ops_on_info(http_req *req)
{
    if (auth_authenticate(http_header(req, "Authorization"), &req->auth) < 0) {
        /* No valid token: what a client needs to find the API, nothing about the data. */
        const sluice_config *cfg = http_config();
        http_reply_json(req, 200,
                        json_pack("{s:s,s:s,s:i,s:i,s:s,s:s}", "name", "sluice", "version",
                                  SLUICE_VERSION, "http_port", http_bound_port(), "ws_port",
                                  ws_port(), "ws_path", "/v1/ws", "auth",
                                  cfg->auth ? "on" : "off"));
        return;
    }
    handler_run_on_pool(req, run_info, req, NULL);
}

extern const char openapi_yaml[];
extern const size_t openapi_yaml_len;

void ops_on_openapi(http_req *req)
{
    http_reply(req, 200, "application/yaml", xstrndup(openapi_yaml, openapi_yaml_len),
               openapi_yaml_len);
}

/* ------------------------------------------------------------------ metrics */

static void gauge_rows(buf *out, PGconn **conn, const char *help, const char *name, const char *sql,
                       int labels, const char *const *label_names)
{
    PGresult *r = db_exec(conn, sql, 0, NULL, OPS_CHECK_TIMEOUT_MS);
    buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
    for (int i = 0; db_ok(r) && i < PQntuples(r); i++) {
        buf_puts(out, name);
        if (labels) buf_puts(out, "{");
        for (int l = 0; l < labels; l++)
            buf_printf(out, "%s%s=\"%s\"", l ? "," : "", label_names[l], PQgetvalue(r, i, l));
        if (labels) buf_puts(out, "}");
        buf_printf(out, " %s\n", PQgetvalue(r, i, labels));
    }
    PQclear(r);
}

static void run_metrics(PGconn **conn, void *arg)
{
    http_req *req = arg;
    const sluice_config *cfg = http_config();
    buf out;
    buf_init(&out);
    metrics_render(&out);
    buf_printf(&out,
               "# HELP sluice_build_info Sluice's version.\n# TYPE sluice_build_info gauge\n"
               "sluice_build_info{version=\"%s\"} 1\n"
               "# HELP sluice_ws_connections Open WebSocket connections.\n"
               "# TYPE sluice_ws_connections gauge\nsluice_ws_connections %d\n"
               "# HELP sluice_ws_slow_closes_total WebSocket subscribers closed with 1013.\n"
               "# TYPE sluice_ws_slow_closes_total counter\nsluice_ws_slow_closes_total %lld\n"
               "# HELP sluice_relay_leader Whether this instance relays to Redis.\n"
               "# TYPE sluice_relay_leader gauge\nsluice_relay_leader %d\n",
               SLUICE_VERSION, ws_connections(), ws_slow_closes(), relay_is_leader() ? 1 : 0);
    long long head = *conn ? store_head(conn, OPS_CHECK_TIMEOUT_MS) : -1;
    long long relayed = relay_probe_checkpoint(cfg, OPS_CHECK_TIMEOUT_MS);
    if (head >= 0)
        buf_printf(&out,
                   "# HELP sluice_head_position The last committed position.\n"
                   "# TYPE sluice_head_position gauge\nsluice_head_position %lld\n",
                   head);
    if (head >= 0 && relayed >= 0)
        buf_printf(&out,
                   "# HELP sluice_relay_lag_events Committed events not yet in Redis.\n"
                   "# TYPE sluice_relay_lag_events gauge\nsluice_relay_lag_events %lld\n",
                   head - relayed);
    if (*conn) {
        static const char *const proj_labels[] = {"projection"};
        gauge_rows(&out, conn, "Events a projection has yet to apply.",
                   "sluice_projection_lag_events",
                   "SELECT name, greatest((SELECT coalesce(max(position), 0) FROM events) - "
                   "position, 0) FROM projections ORDER BY name LIMIT 500",
                   1, proj_labels);
        static const char *const dl_labels[] = {"source", "status"};
        gauge_rows(&out, conn, "Dead letters by source and status.", "sluice_dead_letters",
                   "SELECT CASE WHEN source = 'group' THEN 'group' WHEN source LIKE 'webhook:%' "
                   "THEN 'webhook' ELSE 'projection' END, status, "
                   "count(*) FROM dead_letters GROUP BY 1, 2 ORDER BY 1, 2",
                   2, dl_labels);
        metrics_render_groups(conn, &out);
        webhook_delivery_render_metrics(&out);
        reads_render_metrics(&out);
    }
    size_t len;
    char *body = buf_steal(&out, &len);
    http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
    http_resume(req);
}

/* Whether `authorization` is "Bearer <token>", compared in time that does not depend on
 * where the first difference is. */
static bool bearer_is(const char *authorization, const char *token)
{
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) return false;
    const char *given = authorization + 7;
    while (*given == ' ')
        given++;
    size_t n = strlen(given), m = strlen(token);
    unsigned char diff = n != m;
    for (size_t i = 0; i < m; i++)
        diff |= (unsigned char)(given[i < n ? i : 0] ^ token[i]);
    return diff == 0;
}

void ops_on_metrics(http_req *req)
{
    const sluice_config *cfg = http_config();
    if (cfg->metrics_token && *cfg->metrics_token) {
        if (!bearer_is(http_header(req, "Authorization"), cfg->metrics_token)) {
            http_add_header(req, "WWW-Authenticate", "Bearer realm=\"sluice-metrics\"");
            http_reply_error(
                req, "unauthenticated",
                "send Authorization: Bearer <the SLUICE_METRICS_TOKEN of this instance>");
            return;
        }
    } else if (!http_peer_is_loopback(req)) {
        http_reply_error(req, "forbidden",
                         "/metrics answers loopback callers only; set SLUICE_METRICS_TOKEN to "
                         "scrape it from elsewhere");
        return;
    }
    handler_run_on_pool(req, run_metrics, req, NULL);
}

void ops_on_stats(http_req *req)
{
    http_reply_json(req, 200, metrics_stats(req->auth.tenant));
}
