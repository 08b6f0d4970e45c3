/*
 * config.c — the settings table, environment and flag parsing (see config.h).
 */
#include "config.h"
#include "mem.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { CFG_STR, CFG_INT, CFG_LL, CFG_BOOL, CFG_DOUBLE } cfg_kind;

typedef struct cfg_opt {
    const char *flag; /* --flag */
    const char *env;  /* SLUICE_* */
    cfg_kind kind;
    size_t offset;      /* into sluice_config */
    const char *def;    /* default, as text; NULL = unset */
    long long min, max; /* bounds for numbers */
    const char *help;
} cfg_opt;

#define OFF(f) offsetof(sluice_config, f)

static const cfg_opt options[] = {
    {"database-url", "SLUICE_DATABASE_URL", CFG_STR, OFF(database_url), NULL, 0, 0,
     "PostgreSQL URL (make run/make test start a private one and set this)"},
    {"read-database-url", "SLUICE_READ_DATABASE_URL", CFG_STR, OFF(read_database_url), NULL, 0,
     0, "a streaming replica's URL: history reads, NDJSON exports and catch-ups go there"},
    {"read-wait-ms", "SLUICE_READ_WAIT_MS", CFG_INT, OFF(read_wait_ms), "500", 0, 60000,
     "how long a read waits for the replica to replay what it must see, then reads the primary"},
    {"redis-url", "SLUICE_REDIS_URL", CFG_STR, OFF(redis_url), "redis://127.0.0.1:6379/0", 0, 0,
     "Redis URL: redis://host:port/db or unix:///path"},
    {"bind", "SLUICE_BIND", CFG_STR, OFF(bind), "127.0.0.1", 0, 0, "listen address"},
    {"http-port", "SLUICE_HTTP_PORT", CFG_INT, OFF(http_port), "8080", 0, 65535,
     "HTTP port (0 = pick a free port)"},
    {"ws-port", "SLUICE_WS_PORT", CFG_INT, OFF(ws_port), "8081", 0, 65535,
     "WebSocket port (0 = pick a free port)"},
    {"admin-token", "SLUICE_ADMIN_TOKEN", CFG_STR, OFF(admin_token), NULL, 0, 0,
     "bootstrap admin token (tenant default, every scope); generated at first start if unset"},
    {"auth", "SLUICE_AUTH", CFG_BOOL, OFF(auth), "on", 0, 0,
     "on|off — off only by explicit choice"},
    {"allow-unknown-types", "SLUICE_ALLOW_UNKNOWN_TYPES", CFG_BOOL, OFF(allow_unknown_types), "0",
     0, 0, "accept event types without a registered schema"},
    {"webhook-allow-private", "SLUICE_WEBHOOK_ALLOW_PRIVATE", CFG_BOOL,
     OFF(webhook_allow_private), "0", 0, 0,
     "webhooks may reach loopback and private addresses (link-local and cloud metadata never)"},
    {"redis-prefix", "SLUICE_REDIS_PREFIX", CFG_STR, OFF(redis_prefix), "sluice:", 0, 0,
     "prefix of Redis stream names"},
    {"partition-events", "SLUICE_PARTITION_EVENTS", CFG_LL, OFF(partition_events), "10000000",
     1000, LLONG_MAX / 4,
     "positions per partition of the event log; the leader creates the next partition ahead "
     "of need and retention drops whole expired partitions"},
    {"redis-maxlen", "SLUICE_REDIS_MAXLEN", CFG_LL, OFF(redis_maxlen), "1000000", 1, LLONG_MAX,
     "MAXLEN ~ trimming of Redis streams"},
    {"max-body-bytes", "SLUICE_MAX_BODY_BYTES", CFG_LL, OFF(max_body_bytes), "4194304", 64,
     1LL << 30, "largest request body (413 beyond)"},
    {"max-batch", "SLUICE_MAX_BATCH", CFG_INT, OFF(max_batch), "1000", 1, 100000,
     "events per publish request"},
    /* defaults: SCHEMA_DEFAULT_MAX_NODES / SCHEMA_DEFAULT_MAX_STEPS (schema/validator.h) */
    {"validation-max-nodes", "SLUICE_VALIDATION_MAX_NODES", CFG_LL, OFF(validation_max_nodes),
     "1000000", 1000, 1LL << 40,
     "per publish request: schema evaluations to validate its events (422 "
     "validation_too_costly beyond)"},
    {"validation-max-steps", "SLUICE_VALIDATION_MAX_STEPS", CFG_LL, OFF(validation_max_steps),
     "5000000", 1000, 1LL << 40,
     "per publish request: regex and string steps to validate its events (422 "
     "validation_too_costly beyond)"},
    {"log-level", "SLUICE_LOG_LEVEL", CFG_STR, OFF(log_level), "info", 0, 0,
     "debug|info|warn|error"},
    {"access-log", "SLUICE_ACCESS_LOG", CFG_BOOL, OFF(access_log), "on", 0, 0,
     "log every HTTP request (request id, route, status, duration, tenant) at info"},
    {"appender-queue", "SLUICE_APPENDER_QUEUE", CFG_INT, OFF(appender_queue), "50000", 1, 10000000,
     "events waiting for commit, at most (503 beyond)"},
    {"db-pool", "SLUICE_DB_POOL", CFG_INT, OFF(db_pool), "4", 1, 64,
     "PostgreSQL connections for reads and admin requests"},
    {"pool-queue", "SLUICE_POOL_QUEUE", CFG_INT, OFF(pool_queue), "4096", 1, 1000000,
     "reads and admin requests waiting for a SLUICE_DB_POOL connection, at most (503 "
     "overloaded + Retry-After beyond)"},
    {"http-threads", "SLUICE_HTTP_THREADS", CFG_INT, OFF(http_threads), "2", 1, 64,
     "libmicrohttpd threads"},
    {"http-epoll", "SLUICE_HTTP_EPOLL", CFG_BOOL, OFF(http_epoll), "off", 0, 0,
     "wait for HTTP sockets with epoll(7) instead of poll(2): on for thousands of open HTTP "
     "connections at once (SSE, idle keep-alives); off costs fewer system calls per request"},
    {"max-connections", "SLUICE_MAX_CONNECTIONS", CFG_INT, OFF(max_connections), "4096", 1, 1000000,
     "HTTP connections at once"},
    {"http-timeout-ms", "SLUICE_HTTP_TIMEOUT_MS", CFG_INT, OFF(http_timeout_ms), "30000", 1000,
     3600000,
     "a silent HTTP connection is closed after this; a request's headers must arrive "
     "within it (its body within it plus 1 s per 16 KiB)"},
    {"max-streams", "SLUICE_MAX_STREAMS", CFG_INT, OFF(max_streams), "16", 1, 1024,
     "concurrent NDJSON read streams"},
    {"ws-max-connections", "SLUICE_WS_MAX_CONNECTIONS", CFG_INT, OFF(ws_max_connections), "10000",
     1, 1000000, "WebSocket connections at once"},
    {"ws-queue-messages", "SLUICE_WS_QUEUE_MESSAGES", CFG_INT, OFF(ws_queue_messages), "4096", 16,
     10000000, "per WebSocket connection: unsent messages before closing it with 1013"},
    {"ws-queue-bytes", "SLUICE_WS_QUEUE_BYTES", CFG_LL, OFF(ws_queue_bytes), "8388608", 4096,
     1LL << 34, "per WebSocket connection: unsent bytes before closing it with 1013"},
    {"sse-max", "SLUICE_SSE_MAX", CFG_INT, OFF(sse_max), "256", 1, 100000,
     "Server-Sent Events subscribers at once"},
    {"tenant-ws-connections", "SLUICE_TENANT_WS_CONNECTIONS", CFG_INT, OFF(tenant_ws_connections),
     "10000", 1, 1000000, "per tenant: WebSocket connections at once (429 rate_limited beyond)"},
    {"tenant-streams", "SLUICE_TENANT_STREAMS", CFG_INT, OFF(tenant_streams), "1000", 1, 1000000,
     "per tenant: SSE and NDJSON streams at once (429 rate_limited beyond)"},
    {"tenant-long-polls", "SLUICE_TENANT_LONG_POLLS", CFG_INT, OFF(tenant_long_polls), "1000", 1,
     1000000, "per tenant: long polls (GET /v1/events/wait) at once (429 rate_limited beyond)"},
    {"tenant-catchups", "SLUICE_TENANT_CATCHUPS", CFG_INT, OFF(tenant_catchups), "64", 1, 100000,
     "per tenant: history catch-ups (WebSocket/SSE from_position) running at once"},
    {"tenant-replays", "SLUICE_TENANT_REPLAYS", CFG_INT, OFF(tenant_replays), "16", 1, 100000,
     "per tenant: replays running at once, over all instances (429 rate_limited beyond)"},
    {"max-catchups", "SLUICE_MAX_CATCHUPS", CFG_INT, OFF(max_catchups), "64", 1, 100000,
     "history catch-ups (WebSocket/SSE from_position) running at once over all tenants, each "
     "a thread (overloaded beyond: WebSocket error, SSE 503 + Retry-After)"},
    {"catchup-readers", "SLUICE_CATCHUP_READERS", CFG_INT, OFF(catchup_readers), "0", 0, 1024,
     "history pages read at once by catch-ups, over all tenants, turns fair by tenant "
     "(0 = half the cores, at least 1)"},
    {"rate-limit", "SLUICE_RATE_LIMIT", CFG_DOUBLE, OFF(rate_limit), "0", 0, 10000000,
     "requests per second per API key, token bucket (0 = off); 429 beyond"},
    {"rate-burst", "SLUICE_RATE_BURST", CFG_DOUBLE, OFF(rate_burst), "0", 0, 100000000,
     "the bucket's size (0 = twice the rate)"},
    {"web-dir", "SLUICE_WEB_DIR", CFG_STR, OFF(web_dir), NULL, 0, 0,
     "the dashboard's files (default: web/ beside the binary's directory)"},
    {"store-timeout-ms", "SLUICE_STORE_TIMEOUT_MS", CFG_INT, OFF(store_timeout_ms), "5000", 100,
     600000, "PostgreSQL round trips slower than this fail with 503"},
    {"drain-timeout-ms", "SLUICE_DRAIN_TIMEOUT_MS", CFG_INT, OFF(drain_timeout_ms), "10000", 0,
     600000, "on SIGTERM, how long in-flight requests may finish"},
    {"metrics-token", "SLUICE_METRICS_TOKEN", CFG_STR, OFF(metrics_token), NULL, 0, 0,
     "bearer token GET /metrics asks for (401 without it); unset: /metrics answers loopback "
     "callers only (403 to others)"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

int config_parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "on", "true", "yes"};
    static const char *const no[] = {"0", "off", "false", "no"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return 1;
        if (strcasecmp(s, no[i]) == 0) return 0;
    }
    return -1;
}

static int set_value(sluice_config *cfg, const cfg_opt *o, const char *value, const char *origin)
{
    char *field = (char *)cfg + o->offset;
    switch (o->kind) {
    case CFG_STR: {
        char **p = (char **)field;
        free(*p);
        *p = xstrdup(value);
        return 0;
    }
    case CFG_BOOL: {
        int b = config_parse_bool(value);
        if (b < 0) break;
        *(bool *)field = b;
        return 0;
    }
    case CFG_DOUBLE: {
        char *end = NULL;
        double v = strtod(value, &end);
        if (!*value || *end || v < (double)o->min || v > (double)o->max) break;
        *(double *)field = v;
        return 0;
    }
    case CFG_INT:
    case CFG_LL: {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || !*value || *end || v < o->min || v > o->max) break;
        if (o->kind == CFG_INT)
            *(int *)field = (int)v;
        else
            *(long long *)field = v;
        return 0;
    }
    }
    fprintf(stderr, "sluice: invalid value '%s' for %s\n", value, origin);
    return -1;
}

void config_print_help(FILE *out)
{
    fprintf(out, "usage: sluice [serve] [flags]     migrate, then serve\n"
                 "       sluice migrate [flags]     apply migrations and exit\n"
                 "       sluice keys create --tenant T --scopes publish,read[,...] [--name N]\n\n"
                 "Every flag is also an environment variable:\n\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const cfg_opt *o = &options[i];
        fprintf(out, "  --%-22s %-28s %s (default: %s)\n", o->flag, o->env, o->help,
                o->def ? o->def : "unset");
    }
}

void config_dispose(sluice_config *cfg)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].kind == CFG_STR) {
            char **p = (char **)((char *)cfg + options[i].offset);
            free(*p);
            *p = NULL;
        }
    }
}

int config_load(sluice_config *cfg, int argc, char **argv, int first)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].def && set_value(cfg, &options[i], options[i].def, "default") < 0) return -1;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *v = getenv(options[i].env);
        if (v && *v && set_value(cfg, &options[i], v, options[i].env) < 0) return -1;
    }
    for (int a = first; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            config_print_help(stdout);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "sluice: unexpected argument '%s' (see --help)\n", arg);
            return -1;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const cfg_opt *o = NULL;
        for (size_t i = 0; i < N_OPTIONS; i++)
            if (strlen(options[i].flag) == nlen && strncmp(options[i].flag, name, nlen) == 0)
                o = &options[i];
        if (!o) {
            fprintf(stderr, "sluice: unknown flag '%s' (see --help)\n", arg);
            return -1;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (a + 1 >= argc) {
                fprintf(stderr, "sluice: flag '%s' needs a value\n", arg);
                return -1;
            }
            value = argv[++a];
        }
        if (set_value(cfg, o, value, arg) < 0) return -1;
    }
    return 0;
}
