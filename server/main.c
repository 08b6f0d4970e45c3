/*
 * main.c — start-up, signals and the graceful drain.
 *
 *   sluice [serve]       migrate, then serve until SIGTERM/SIGINT
 *   sluice migrate       apply migrations and exit
 *   sluice keys create   create an API key and print it as JSON
 *
 * Signals are blocked in every thread and taken by sigwait() here, so no
 * handler ever runs inside library code. SIGTERM drains: stop accepting, let
 * requests in flight finish (their commits included) for up to
 * SLUICE_DRAIN_TIMEOUT_MS, stop the appender after its queue is empty, exit 0.
 *
 * Memory: jansson allocates through mem.h's xmalloc from before main (mem.c's
 * constructor), so one out-of-memory policy holds for every allocation.
 */
#include "appender.h"
#include "auth.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "http_stream.h"
#include "log.h"
#include "mem.h"
#include "migrate.h"
#include "partitions.h"
#include "consume.h"
#include "groups.h"
#include "sweeper.h"
#include "webhook_delivery.h"
#include "webhooks.h"
#include "pool.h"
#include "projections.h"
#include "ratelimit.h"
#include "relay.h"
#include "web.h"
#include "reqschema.h"
#include "replays.h"
#include "reads.h"
#include "retention.h"
#include "session.h"
#include "tenants.h"
#include "tail.h"
#include "waiters.h"
#include "ws.h"
#include "schema/registry.h"
#include "timeutil.h"
#include "version.h"

#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int require_database(const sluice_config *cfg)
{
    if (cfg->database_url && *cfg->database_url) return 0;
    fprintf(stderr, "sluice: SLUICE_DATABASE_URL is not set. `make run` starts a private "
                    "PostgreSQL and sets it; or point it at yours.\n");
    return -1;
}

static int run_migrations(const sluice_config *cfg)
{
    PGconn *conn = NULL;
    for (int attempt = 0; attempt < 10 && !conn; attempt++) {
        conn = db_connect(cfg->database_url, "migrate");
        if (!conn) sleep(1);
    }
    if (!conn) return -1;
    int rc = migrate_run(&conn);
    /* The partition the next appends go to exists before the appender takes any. */
    if (rc == 0 && partitions_ensure(&conn, 0, cfg->partition_events, 60000) < 0) rc = -1;
    PQfinish(conn);
    return rc;
}

static int cmd_keys_create(int argc, char **argv)
{
    const char *tenant = AUTH_DEFAULT_TENANT, *scopes_arg = NULL, *name = NULL;
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0, rc = 1;
    sluice_config cfg;
    PGconn *conn = NULL;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--tenant") == 0 && i + 1 < argc)
            tenant = argv[++i];
        else if (strcmp(argv[i], "--scopes") == 0 && i + 1 < argc)
            scopes_arg = argv[++i];
        else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else
            rest[n_rest++] = argv[i];
    }
    if (config_load(&cfg, n_rest, rest, 0) != 0) goto out_nocfg;
    if (require_database(&cfg) < 0) goto out;
    unsigned scopes = 0;
    if (!scopes_arg || !auth_tenant_valid(tenant)) goto usage;
    char *copy = xstrdup(scopes_arg), *save = NULL;
    for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        unsigned bit = auth_scope_from_name(s);
        if (!bit) {
            free(copy);
            goto usage;
        }
        scopes |= bit;
    }
    free(copy);
    if (run_migrations(&cfg) < 0) goto out;
    conn = db_connect(cfg.database_url, "keys");
    json_t *answer = NULL;
    if (!conn || auth_key_create(&conn, tenant, scopes, name, &answer) != SL_OK) {
        fprintf(stderr, "sluice: could not create the key\n");
        goto out;
    }
    char *text = json_dumps(answer, JSON_COMPACT);
    printf("%s\n", text);
    free(text);
    json_decref(answer);
    rc = 0;
    goto out;
usage:
    fprintf(stderr, "usage: sluice keys create --tenant T --scopes publish,read,subscribe,"
                    "schemas,admin,consume [--name N]\n");
    rc = 2;
out:
    PQfinish(conn);
    config_dispose(&cfg);
out_nocfg:
    free(rest);
    return rc;
}

static void drain(const sluice_config *cfg)
{
    log_info("main", "draining: no new connections; finishing requests in flight",
             json_pack("{s:i}", "in_flight", http_in_flight()));
    http_quiesce();
    waiters_stop();         /* long polls answer 204 now rather than hold the drain */
    http_stream_shutdown(); /* SSE and NDJSON streams end rather than hold the drain */
    int64_t deadline = time_mono_ms() + cfg->drain_timeout_ms;
    while (http_in_flight() > 0 && time_mono_ms() < deadline)
        usleep(20 * 1000);
    ws_stop(); /* every WebSocket closed with 1001 */
    appender_stop();
    relay_stop(); /* after the last commit: flushes it to Redis */
    retention_stop();
    projections_stop();
    replays_stop();
    consume_stop();
    webhook_delivery_stop();
    sweeper_stop();
    pool_stop();
    deadline = time_mono_ms() + 2000;
    while (http_in_flight() > 0 && time_mono_ms() < deadline)
        usleep(20 * 1000);
    http_stop();
    tail_stop();
    session_stop();
    registry_stop();
    reqschema_shutdown();
    auth_shutdown();
    web_unload();
}

static int cmd_serve(sluice_config *cfg)
{
    if (require_database(cfg) < 0) return 1;
    if (run_migrations(cfg) < 0) {
        log_error("main", "migrations failed; not serving", NULL);
        return 1;
    }
    if (auth_init(cfg->database_url, cfg->admin_token, cfg->auth) < 0) {
        log_error("main", "cannot load API keys", NULL);
        return 1;
    }
    if (registry_start(cfg->database_url) < 0) {
        log_error("main", "cannot load the schema registry", NULL);
        return 1;
    }
    if (reqschema_init() < 0) {
        log_error("main", "cannot compile the request schemas of openapi/openapi.yaml", NULL);
        return 1;
    }
    if (appender_start(cfg) < 0) {
        log_error("main", "cannot start the appender", NULL);
        return 1;
    }
    if (pool_start(cfg->database_url, cfg->db_pool, cfg->pool_queue) < 0 || reads_start(cfg) < 0)
        return 1;
    session_init(cfg->database_url, cfg->max_catchups);
    groups_init(cfg);
    webhooks_init(cfg);
    tenants_configure(cfg);
    session_set_catchup_readers(cfg->catchup_readers);
    if (tail_start(cfg->database_url) < 0) {
        log_error("main", "cannot start following the event log", NULL);
        return 1;
    }
    if (relay_start(cfg) < 0 || waiters_start() < 0 || retention_start(cfg) < 0 ||
        projections_start(cfg->database_url) < 0 || replays_start(cfg) < 0 || sweeper_start(cfg) < 0 ||
        consume_start(cfg) < 0 || webhook_delivery_start(cfg) < 0)
        return 1;
    int ws_bound = 0;
    if (ws_start(cfg, &ws_bound) < 0) return 1;
    ratelimit_configure(cfg->rate_limit, cfg->rate_burst);
    (void)web_load(cfg->web_dir);
    http_set_fallback_paths(web_lookup);
    int port = 0;
    if (http_start(cfg, &port) < 0) return 1;
    log_info("main", "listening",
             json_pack("{s:s,s:i,s:i,s:s,s:s}", "bind", cfg->bind, "http_port", port, "ws_port",
                       ws_port(), "version", SLUICE_VERSION, "auth",
                       cfg->auth ? "on" : "off"));
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    sigwait(&set, &sig);
    log_info("main", "signal received",
             json_pack("{s:s}", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
    drain(cfg);
    log_info("main", "stopped", NULL);
    return 0;
}

/* jemalloc's settings, read at its start (the release binary links jemalloc: Makefile;
 * MALLOC_CONF in the environment still overrides them). A 100-event publish allocates and
 * frees 64-256 KiB buffers (the body, the statement's parameters, the answer) on every
 * request; above jemalloc's default 32 KiB thread cache they went back to the arena and
 * were purged with madvise, ~700 calls and 9,000 page faults a second, a third of Sluice's
 * CPU in batches: they are cached per thread up to 256 KiB. Dirty pages are returned
 * after 1 s: longer (30 s) saved no measurable CPU more and let 500 unauthenticated slow
 * connections, reconnecting as they are cut, grow RSS by 70-80 MiB (bench/unauth, target
 * < 50; 31 MiB with 1 s). Measured in README "Benchmarks". */
const char *malloc_conf = "tcache_max:262144,dirty_decay_ms:1000,muzzy_decay_ms:0";

int main(int argc, char **argv)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits this */
    signal(SIGPIPE, SIG_IGN);
    /* Thousands of subscribers need thousands of descriptors: take the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }

    const char *cmd = argc > 1 && argv[1][0] != '-' ? argv[1] : "serve";
    int first = argc > 1 && argv[1][0] != '-' ? 2 : 1;
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("sluice %s\n", SLUICE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "keys") == 0) {
        if (argc < 3 || strcmp(argv[2], "create") != 0) {
            fprintf(stderr, "usage: sluice keys create --tenant T --scopes ... [--name N]\n");
            return 2;
        }
        return cmd_keys_create(argc, argv);
    }
    if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "migrate") != 0) {
        fprintf(stderr, "sluice: unknown command '%s' (see --help)\n", cmd);
        return 2;
    }
    sluice_config cfg;
    int rc = config_load(&cfg, argc, argv, first);
    if (rc != 0) {
        config_dispose(&cfg);
        return rc > 0 ? 0 : 2;
    }
    if (log_set_level(cfg.log_level) < 0) {
        fprintf(stderr, "sluice: SLUICE_LOG_LEVEL must be debug, info, warn or error\n");
        config_dispose(&cfg);
        return 2;
    }
    if (strcmp(cmd, "migrate") == 0) {
        rc = require_database(&cfg) < 0 || run_migrations(&cfg) < 0 ? 1 : 0;
        if (rc == 0) log_info("main", "migrations applied", NULL);
    } else {
        rc = cmd_serve(&cfg);
    }
    config_dispose(&cfg);
    return rc;
}
