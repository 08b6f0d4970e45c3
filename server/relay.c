/*
 * relay.c — the Redis relay (see relay.h).
 */
#include "relay.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "redis.h"
#include "tail.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RELAY_LEADER_KEY "7341263004" /* session advisory lock: who relays */
#define RELAY_PAGE 500
#define RELAY_TIMEOUT_MS 10000
#define RELAY_REDIS_TIMEOUT_MS 2000

static const char *const relay_sql =
    "SELECT position, tenant_id, stream, id, type, row_to_json(e)::text FROM (SELECT position, "
    "id, type, stream, key, version, data, metadata, correlation_id, causation_id, user_id, "
    "source, schema_version, tenant_id, to_char(time AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS time FROM events WHERE position > $1 "
    "ORDER BY position LIMIT $2) e ORDER BY e.position";

static const sluice_config *cfg;
static pthread_t thread;
static atomic_bool stopping, leader;
static bool running;

bool relay_is_leader(void)
{
    return atomic_load(&leader);
}

char *relay_checkpoint_key(const sluice_config *c)
{
    return xasprintf("%srelay:position", c->redis_prefix);
}

long long relay_probe_checkpoint(const sluice_config *c, int timeout_ms)
{
    redisContext *r = redis_connect(c->redis_url, timeout_ms, "relay");
    if (!r) return -1;
    char *key = relay_checkpoint_key(c);
    redisReply *rep = redisCommand(r, "GET %s", key);
    free(key);
    long long pos = -1;
    if (rep && rep->type == REDIS_REPLY_NIL) pos = 0;
    else if (rep && rep->type == REDIS_REPLY_STRING) pos = strtoll(rep->str, NULL, 10);
    freeReplyObject(rep);
    redisFree(r);
    return pos;
}

static void sleep_ms(int ms)
{
    for (int i = 0; i < ms / 50 && !atomic_load(&stopping); i++) usleep(50 * 1000);
}

/* Reads the checkpoint; 0 when absent, -1 when Redis failed. */
static long long read_checkpoint(redisContext *r)
{
    char *key = relay_checkpoint_key(cfg);
    redisReply *rep = redisCommand(r, "GET %s", key);
    free(key);
    long long pos = -1;
    if (rep && rep->type == REDIS_REPLY_NIL) pos = 0;
    else if (rep && rep->type == REDIS_REPLY_STRING) pos = strtoll(rep->str, NULL, 10);
    freeReplyObject(rep);
    return pos;
}

/* Relays one page after *checkpoint. Returns rows relayed, -1 PostgreSQL failed,
 * -2 Redis failed (the caller reconnects; nothing is lost: the page is read again). */
static int relay_page(PGconn **pg, redisContext *r, long long *checkpoint)
{
    char after[24], limit[16];
    snprintf(after, sizeof after, "%lld", *checkpoint);
    snprintf(limit, sizeof limit, "%d", RELAY_PAGE);
    const char *p[] = {after, limit};
    PGresult *res = db_exec(pg, relay_sql, 2, p, RELAY_TIMEOUT_MS);
    if (!db_ok(res)) {
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res);
    if (n == 0) {
        PQclear(res);
        return 0;
    }
    char maxlen[24];
    snprintf(maxlen, sizeof maxlen, "%lld", cfg->redis_maxlen);
    for (int i = 0; i < n; i++) {
        const char *pos = PQgetvalue(res, i, 0), *tenant = PQgetvalue(res, i, 1);
        char *name = strcmp(tenant, "default") == 0
                         ? xasprintf("%s%s", cfg->redis_prefix, PQgetvalue(res, i, 2))
                         : xasprintf("%s%s:%s", cfg->redis_prefix, tenant, PQgetvalue(res, i, 2));
        char *entry = xasprintf("%s-0", pos);
        const char *argv[] = {"XADD", name, "MAXLEN", "~", maxlen, entry, "id",
                              PQgetvalue(res, i, 3), "type", PQgetvalue(res, i, 4), "position",
                              pos, "event", PQgetvalue(res, i, 5)};
        size_t argl[14];
        for (int k = 0; k < 14; k++) argl[k] = strlen(argv[k]);
        argl[13] = (size_t)PQgetlength(res, i, 5);
        redisAppendCommandArgv(r, 14, argv, argl);
        free(name);
        free(entry);
    }
    long long last = strtoll(PQgetvalue(res, n - 1, 0), NULL, 10);
    PQclear(res);
    char *key = relay_checkpoint_key(cfg);
    redisAppendCommand(r, "SET %s %lld", key, last);
    free(key);
    int rc = n;
    for (int i = 0; i <= n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(r, (void **)&rep) != REDIS_OK) {
            rc = -2; /* the connection is unusable: the rest of the replies are lost */
            break;
        }
        if (rep->type == REDIS_REPLY_ERROR && !strstr(rep->str, "equal or smaller")) {
            log_warn("relay", "redis refused an entry", json_pack("{s:s}", "error", rep->str));
            rc = -2;
        }
        freeReplyObject(rep);
    }
    if (rc > 0) *checkpoint = last;
    return rc;
}

static void *relay_main(void *unused)
{
    (void)unused;
    PGconn *pg = NULL;
    redisContext *r = NULL;
    long long checkpoint = -1;
    bool redis_down_logged = false;
    while (!atomic_load(&stopping)) {
        if (!pg) {
            atomic_store(&leader, false);
            checkpoint = -1;
            pg = db_connect(cfg->database_url, "relay");
            if (!pg) {
                sleep_ms(1000);
                continue;
            }
        }
        if (!atomic_load(&leader)) {
            PGresult *res = db_exec(&pg, "SELECT pg_try_advisory_lock(" RELAY_LEADER_KEY ")", 0,
                                    NULL, RELAY_TIMEOUT_MS);
            bool got = db_ok(res) && PQgetvalue(res, 0, 0)[0] == 't';
            PQclear(res);
            if (!got) {
                sleep_ms(1000);
                continue;
            }
            res = db_exec(&pg, "LISTEN " TAIL_CHANNEL, 0, NULL, RELAY_TIMEOUT_MS);
            PQclear(res);
            atomic_store(&leader, true);
            log_info("relay", "this instance is the relay leader", NULL);
        }
        if (!r) {
            r = redis_connect(cfg->redis_url, RELAY_REDIS_TIMEOUT_MS, "relay");
            if (!r) {
                if (!redis_down_logged)
                    log_warn("relay", "redis unreachable; events wait in PostgreSQL", NULL);
                redis_down_logged = true;
                sleep_ms(500);
                continue;
            }
            if (redis_down_logged) log_info("relay", "redis reachable again; relaying the backlog", NULL);
            redis_down_logged = false;
            checkpoint = -1;
        }
        if (checkpoint < 0 && (checkpoint = read_checkpoint(r)) < 0) {
            redisFree(r);
            r = NULL;
            continue;
        }
        int n = relay_page(&pg, r, &checkpoint);
        if (n == -2) {
            redisFree(r);
            r = NULL;
            continue;
        }
        if (n < 0) {
            PQfinish(pg); /* leadership goes with the session */
            pg = NULL;
            continue;
        }
        if (n == RELAY_PAGE) continue;
        /* A NOTIFY that arrived while the page was read is already in libpq's queue, not on
         * the socket: polling would sleep on it (up to a second of lag, issue 4). */
        PGnotify *queued;
        bool woken = false;
        while ((queued = PQnotifies(pg))) {
            PQfreemem(queued);
            woken = true;
        }
        if (woken) continue;
        struct pollfd p = {.fd = PQsocket(pg), .events = POLLIN};
        for (int waited = 0; waited < 1000 && !atomic_load(&stopping); waited += 100)
            if (poll(&p, 1, 100) > 0) break;
        if (!PQconsumeInput(pg)) {
            PQfinish(pg);
            pg = NULL;
            continue;
        }
        PGnotify *note;
        while ((note = PQnotifies(pg))) PQfreemem(note);
    }
    /* Shutdown: flush what was committed before the appender stopped (bounded). */
    if (pg && r && atomic_load(&leader) && checkpoint >= 0) {
        for (int i = 0; i < 20; i++)
            if (relay_page(&pg, r, &checkpoint) < RELAY_PAGE) break;
    }
    if (r) redisFree(r);
    PQfinish(pg);
    atomic_store(&leader, false);
    return NULL;
}

int relay_start(const sluice_config *c)
{
    cfg = c;
    if (pthread_create(&thread, NULL, relay_main, NULL) != 0) return -1;
    running = true;
    return 0;
}

void relay_stop(void)
{
    if (!running) return;
    atomic_store(&stopping, true);
    pthread_join(thread, NULL);
    running = false;
}
