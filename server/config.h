/*
 * config.h — Sluice's configuration: one struct, filled from defaults, then
 * SLUICE_* environment variables, then command-line flags (flags win).
 *
 * Every setting is one row of the table in config.c, so `sluice --help`, the
 * environment and the flags can never disagree.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

typedef struct sluice_config {
    char *database_url; /* libpq connection URL */
    char *read_database_url; /* a streaming replica for history reads; NULL: none */
    int read_wait_ms;        /* a read waits this long for the replica, then reads the primary */
    char *redis_url;    /* redis://host:port/db or unix:///path */
    char *bind;         /* listen address for both ports */
    int http_port;      /* 0 = pick a free port */
    int ws_port;        /* 0 = pick a free port */
    char *admin_token;  /* bootstrap admin token; NULL = generated at first start */
    bool auth;          /* false only by explicit choice */
    bool allow_unknown_types;
    bool webhook_allow_private; /* webhooks may reach loopback and private addresses */
    char *redis_prefix;     /* Redis stream name prefix */
    long long redis_maxlen; /* MAXLEN ~ for Redis streams */
    long long partition_events; /* positions per partition of the event log */
    long long max_body_bytes;
    int max_batch;                  /* events per publish request */
    long long validation_max_nodes; /* per request: schema evaluations (issue 13) */
    long long validation_max_steps; /* per request: regex and string steps (issue 13) */
    char *log_level;
    bool access_log;           /* one log line per HTTP request */
    int appender_queue;        /* events waiting for a commit, at most */
    int db_pool;               /* PostgreSQL connections for reads and admin work */
    int pool_queue;            /* PostgreSQL jobs waiting for one of those, at most (503 beyond) */
    int http_threads;          /* libmicrohttpd thread pool size */
    bool http_epoll;           /* libmicrohttpd waits with epoll(7), else poll(2) */
    int max_connections;       /* HTTP connections at once */
    int http_timeout_ms;       /* idle connections close; a request must arrive within this */
    int max_streams;           /* concurrent NDJSON streams */
    int ws_max_connections;    /* WebSocket connections at once */
    int ws_queue_messages;     /* per WebSocket connection: unsent messages before 1013 */
    long long ws_queue_bytes;  /* per WebSocket connection: unsent bytes before 1013 */
    int sse_max;               /* SSE subscribers at once */
    int tenant_ws_connections; /* per tenant: authenticated WebSocket connections at once */
    int tenant_streams;        /* per tenant: SSE and NDJSON streams at once */
    int tenant_long_polls;     /* per tenant: long polls at once */
    int tenant_catchups;       /* per tenant: history catch-ups running at once */
    int tenant_replays;        /* per tenant: replays running at once (all instances) */
    int max_catchups;          /* history catch-ups running at once, over all tenants */
    int catchup_readers;       /* history pages read by catch-ups at once (0 = half the cores) */
    double rate_limit;         /* requests per second per API key; 0 = off */
    double rate_burst;         /* bucket size; 0 = twice the rate */
    char *web_dir;             /* the dashboard's files; NULL = next to the binary */
    int store_timeout_ms;      /* a PostgreSQL round trip slower than this fails with 503 */
    int drain_timeout_ms;      /* SIGTERM: how long in-flight requests may take */
    char *metrics_token;       /* bearer token /metrics asks for; NULL = loopback callers only */
} sluice_config;

/* Fills `cfg` from defaults, the environment and argv[first..argc).
 * Returns 0; 1 when --help was printed; -1 on a bad value (message on stderr).
 * The caller disposes with config_dispose. */
int config_load(sluice_config *cfg, int argc, char **argv, int first)
    __attribute__((warn_unused_result));
void config_dispose(sluice_config *cfg);
void config_print_help(FILE *out);

/* Parses "on|off|true|false|1|0|yes|no"; returns -1 on anything else. */
int config_parse_bool(const char *s);

#endif
