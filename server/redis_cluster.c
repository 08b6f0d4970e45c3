/*
 * redis_cluster.c — the Redis Cluster client (see redis_cluster.h).
 *
 * DESIGN: a cluster is a table of nodes (host, port, a blocking hiredis connection made on
 * first use) and a slot map, slot → node, read from CLUSTER SLOTS. A run assigns each
 * command to the node of its slot (or of an ASK), appends every node's share to that
 * node's connection, writes every connection out, then reads the replies in the order the
 * commands were given, each from its node; so the nodes work in parallel while one thread
 * waits. What a reply says decides the next round for its command:
 *   - MOVED slot host:port: the slot's owner changed (a failover, a resharding); the map
 *     entry is corrected and the command goes there next round;
 *   - ASK slot host:port: the slot is migrating and this key has left; next round the
 *     command goes there once, after ASKING;
 *   - TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN: not run; retried after a short pause
 *     (CLUSTERDOWN also marks the map stale);
 *   - a connection that fails: the node's connection is dropped and the map marked stale;
 *     its commands are retried only when they were not written, or the caller said they
 *     are harmless twice (`resend`).
 * A stale map is read again, at the start of the next round, from the first node that
 * answers: connected nodes first, then every node ever learnt, then the URL's seeds. A
 * run ends when every command has its reply or its time is up.
 */
#include "redis_cluster.h"
#include "log.h"
#include "mem.h"
#include "timeutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLUSTER_NO_NODE 0xFFFF
#define CLUSTER_MAX_NODES 1024 /* nodes learnt from maps and redirections */
#define CLUSTER_MAX_ROUNDS 64  /* redirections and retries of one run */
#define CLUSTER_PAUSE_MS 50    /* before retrying what a node could not run yet */

/* ------------------------------------------------------------------ slots and names */

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as the Redis Cluster spec defines. */
static uint16_t crc16(const char *p, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

/* The hash tag of key: sets *at and *len and returns true when the key has one. */
static bool hash_tag(const char *key, size_t len, size_t *at, size_t *tag_len)
{
    const char *open = memchr(key, '{', len);
    if (!open) return false;
    size_t from = (size_t)(open - key) + 1;
    const char *close = memchr(key + from, '}', len - from);
    if (!close || close == key + from) return false;
    *at = from;
    *tag_len = (size_t)(close - (key + from));
    return true;
}

unsigned redis_cluster_key_slot(const char *key, size_t len)
{
    size_t at, tag_len;
    if (hash_tag(key, len, &at, &tag_len)) return crc16(key + at, tag_len) & 16383;
    return crc16(key, len) & 16383;
}

char *redis_cluster_side_key(const char *key, const char *suffix)
{
    size_t at, tag_len;
    if (hash_tag(key, strlen(key), &at, &tag_len)) return xasprintf("%s%s", key, suffix);
    if (strchr(key, '}')) return NULL;
    return xasprintf("{%s}%s", key, suffix);
}

/* ------------------------------------------------------------------ nodes */

typedef struct cluster_node {
    char *host; /* owned */
    int port;
    redisContext *ctx; /* owned; NULL until used, or after it failed */
} cluster_node;

struct redis_cluster {
    cluster_node *nodes; /* owned; the URL's seeds first */
    int n_nodes, cap;
    uint16_t slots[REDIS_CLUSTER_SLOTS]; /* index into nodes, or CLUSTER_NO_NODE */
    bool stale;                          /* the map must be read again before use */
    int timeout_ms;
    char *user, *password; /* owned; NULL when the URL has none */
    const char *module;    /* borrowed: for logs */
};

/* The index of host:port, added when new; -1 when the table is full. */
static int node_index(redis_cluster *c, const char *host, size_t host_len, int port)
{
    for (int i = 0; i < c->n_nodes; i++)
        if (c->nodes[i].port == port && strlen(c->nodes[i].host) == host_len &&
            memcmp(c->nodes[i].host, host, host_len) == 0)
            return i;
    if (c->n_nodes == CLUSTER_MAX_NODES) return -1;
    if (c->n_nodes == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->nodes = xrealloc(c->nodes, (size_t)c->cap * sizeof *c->nodes);
    }
    c->nodes[c->n_nodes] = (cluster_node){xstrndup(host, host_len), port, NULL};
    return c->n_nodes++;
}

static void node_drop(cluster_node *n)
{
    if (n->ctx) redisFree(n->ctx);
    n->ctx = NULL;
}

/* Node i's connection, connecting (and AUTH) when it has none; NULL when it cannot. */
static redisContext *node_ctx(redis_cluster *c, int i)
{
    cluster_node *n = &c->nodes[i];
    if (n->ctx && !n->ctx->err) return n->ctx;
    node_drop(n);
    struct timeval tv = {.tv_sec = c->timeout_ms / 1000, .tv_usec = (c->timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(n->host, n->port, tv);
    if (!ctx || ctx->err) {
        log_debug(c->module, "redis cluster node unreachable",
                  json_pack("{s:s,s:i,s:s}", "host", n->host, "port", n->port, "error",
                            ctx ? ctx->errstr : "out of memory"));
        if (ctx) redisFree(ctx);
        return NULL;
    }
    redisSetTimeout(ctx, tv);
    if (c->password) {
        redisReply *r = c->user ? redisCommand(ctx, "AUTH %s %s", c->user, c->password)
                                : redisCommand(ctx, "AUTH %s", c->password);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        freeReplyObject(r);
        if (!ok) {
            log_warn(c->module, "redis cluster node refused AUTH",
                     json_pack("{s:s,s:i}", "host", n->host, "port", n->port));
            redisFree(ctx);
            return NULL;
        }
    }
    n->ctx = ctx;
    return ctx;
}

/* ------------------------------------------------------------------ the slot map */

/* Reads the slot map from CLUSTER SLOTS asked of node `from`. False when the node did not
 * answer with a map. */
static bool map_from(redis_cluster *c, int from)
{
    redisContext *ctx = node_ctx(c, from);
    if (!ctx) return false;
    redisReply *r = redisCommand(ctx, "CLUSTER SLOTS");
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0;
    if (!r || ctx->err) node_drop(&c->nodes[from]);
    if (!ok) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_warn(c->module, "redis cluster node refused CLUSTER SLOTS",
                     json_pack("{s:s}", "error", r->str));
        freeReplyObject(r);
        return false;
    }
    for (int s = 0; s < REDIS_CLUSTER_SLOTS; s++)
        c->slots[s] = CLUSTER_NO_NODE;
    for (size_t k = 0; k < r->elements; k++) {
        redisReply *e = r->element[k];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3) continue;
        redisReply *m = e->element[2];
        if (e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || m->type != REDIS_REPLY_ARRAY ||
            m->elements < 2 || m->element[0]->type != REDIS_REPLY_STRING ||
            m->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        if (lo < 0 || hi >= REDIS_CLUSTER_SLOTS || lo > hi) continue;
        /* An empty or "?" endpoint means "the address you reached me at". */
        const char *host = m->element[0]->str;
        size_t host_len = m->element[0]->len;
        if (host_len == 0 || (host_len == 1 && host[0] == '?')) {
            host = c->nodes[from].host;
            host_len = strlen(host);
        }
        int idx = node_index(c, host, host_len, (int)m->element[1]->integer);
        if (idx < 0) continue;
        for (long long s = lo; s <= hi; s++)
            c->slots[s] = (uint16_t)idx;
    }
    freeReplyObject(r);
    c->stale = false;
    return true;
}

/* Reads the slot map again from the first node that answers, before `deadline`. */
static bool map_refresh(redis_cluster *c, int64_t deadline)
{
    for (int pass = 0; pass < 2; pass++) /* connected nodes first, then the rest */
        for (int i = 0; i < c->n_nodes && time_mono_ms() < deadline; i++)
            if ((c->nodes[i].ctx != NULL) == (pass == 0) && map_from(c, i)) return true;
    return false;
}

/* ------------------------------------------------------------------ connecting */

/* Parses the URL's [[user]:password@] and host:port list into c. False when it has no
 * node. */
static bool parse_url(redis_cluster *c, const char *url)
{
    const char *p = url + strlen(REDIS_CLUSTER_SCHEME);
    const char *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p) c->user = xstrndup(p, (size_t)(colon - p));
            c->password = xstrndup(colon + 1, (size_t)(at - colon - 1));
        } else {
            c->password = xstrndup(p, (size_t)(at - p));
        }
        p = at + 1;
    }
    size_t end = strcspn(p, "/?");
    while (end > 0) {
        size_t item = strcspn(p, ",/?");
        if (item > end) item = end;
        const char *colon = memchr(p, ':', item);
        size_t host_len = colon ? (size_t)(colon - p) : item;
        int port = colon ? atoi(colon + 1) : 6379;
        if (host_len && port > 0 && port < 65536) (void)node_index(c, p, host_len, port);
        p += item;
        end -= item;
        if (end && *p == ',') p++, end--;
    }
    return c->n_nodes > 0;
}

redis_cluster *redis_cluster_connect(const char *url, int timeout_ms, const char *module)
{
    redis_cluster *c = xcalloc(1, sizeof *c);
    c->timeout_ms = timeout_ms;
    c->module = module;
    c->stale = true;
    if (!parse_url(c, url)) {
        log_error(module, "SLUICE_REDIS_URL names no node (redis+cluster://host:port,…)",
                  json_pack("{s:s}", "url", url));
        redis_cluster_free(c);
        return NULL;
    }
    if (!map_refresh(c, time_mono_ms() + timeout_ms)) {
        log_debug(module, "no redis cluster node answered with its slots", NULL);
        redis_cluster_free(c);
        return NULL;
    }
    return c;
}

void redis_cluster_free(redis_cluster *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_nodes; i++) {
        node_drop(&c->nodes[i]);
        free(c->nodes[i].host);
    }
    free(c->nodes);
    free(c->user);
    free(c->password);
    free(c);
}

/* ------------------------------------------------------------------ running commands */

/* A node named by a MOVED or ASK error ("MOVED 3999 127.0.0.1:6381"): its index, or -1. */
static int redirect_node(redis_cluster *c, const redisReply *r, int *slot)
{
    const char *sp = strchr(r->str, ' ');
    if (!sp) return -1;
    *slot = atoi(sp + 1);
    const char *addr = strchr(sp + 1, ' ');
    if (!addr || *slot < 0 || *slot >= REDIS_CLUSTER_SLOTS) return -1;
    addr++;
    const char *colon = strrchr(addr, ':');
    if (!colon) return -1;
    return node_index(c, addr, (size_t)(colon - addr), atoi(colon + 1));
}

static bool error_is(const redisReply *r, const char *word)
{
    size_t n = strlen(word);
    return r->type == REDIS_REPLY_ERROR && r->len >= n && strncmp(r->str, word, n) == 0 &&
           (r->len == n || r->str[n] == ' ');
}

/* What became of one command in a round. */
enum { CMD_PENDING, CMD_SENT, CMD_DONE };

int redis_cluster_run(redis_cluster *c, const redis_cluster_cmd *cmds, int n, redisReply **replies,
                      bool resend)
{
    int *node = xcalloc((size_t)(n ? n : 1), sizeof *node); /* this round's node */
    int *ask = xcalloc((size_t)(n ? n : 1), sizeof *ask);   /* ASK's node, or -1 */
    char *state = xcalloc((size_t)(n ? n : 1), 1);
    for (int i = 0; i < n; i++) {
        replies[i] = NULL;
        ask[i] = -1;
    }
    int left = n;
    int64_t deadline = time_mono_ms() + c->timeout_ms;
    for (int round = 0; left > 0 && round < CLUSTER_MAX_ROUNDS; round++) {
        if (round > 0 && time_mono_ms() >= deadline) break;
        bool pause = false;
        if (c->stale && !map_refresh(c, deadline)) pause = true;
        /* Append each command to its node's connection. */
        int any = -1;
        for (int i = 0; i < n; i++) {
            if (state[i] != CMD_PENDING) continue;
            int to = ask[i];
            if (to < 0 && cmds[i].slot >= 0) {
                to = c->slots[cmds[i].slot];
                if (to == CLUSTER_NO_NODE) to = -1;
            } else if (to < 0) {
                if (any < 0)
                    for (int s = 0; s < REDIS_CLUSTER_SLOTS && any < 0; s += 1024)
                        if (c->slots[s] != CLUSTER_NO_NODE) any = c->slots[s];
                to = any;
            }
            redisContext *ctx = to >= 0 ? node_ctx(c, to) : NULL;
            if (!ctx) { /* no owner known, or it cannot be reached: read the map again */
                c->stale = true;
                pause = true;
                ask[i] = -1;
                node[i] = -1;
                continue;
            }
            if (ask[i] >= 0) redisAppendCommand(ctx, "ASKING");
            redisAppendFormattedCommand(ctx, cmds[i].data, cmds[i].len);
            node[i] = to;
            state[i] = CMD_SENT;
        }
        /* Write every node's share before reading any reply. */
        for (int k = 0; k < c->n_nodes; k++) {
            redisContext *ctx = c->nodes[k].ctx;
            int done = 0;
            while (ctx && !ctx->err && !done)
                if (redisBufferWrite(ctx, &done) != REDIS_OK) break;
        }
        for (int i = 0; i < n; i++) {
            if (state[i] != CMD_SENT) continue;
            cluster_node *nd = &c->nodes[node[i]];
            redisReply *r = NULL;
            bool got = nd->ctx != NULL;
            if (got && ask[i] >= 0) { /* the ASKING before it */
                got = redisGetReply(nd->ctx, (void **)&r) == REDIS_OK;
                freeReplyObject(r);
                r = NULL;
            }
            ask[i] = -1;
            if (got) got = redisGetReply(nd->ctx, (void **)&r) == REDIS_OK;
            if (!got) { /* the connection failed: this and the node's later replies are lost */
                if (nd->ctx)
                    log_debug(c->module, "redis cluster node failed",
                              json_pack("{s:s,s:i,s:s}", "host", nd->host, "port", nd->port,
                                        "error", nd->ctx->errstr));
                node_drop(nd);
                c->stale = true;
                if (resend) {
                    state[i] = CMD_PENDING;
                } else {
                    state[i] = CMD_DONE;
                    left--;
                }
                continue;
            }
            int slot;
            if (error_is(r, "MOVED")) {
                int to = redirect_node(c, r, &slot);
                if (to >= 0)
                    c->slots[slot] = (uint16_t)to;
                else
                    c->stale = true;
                state[i] = CMD_PENDING;
            } else if (error_is(r, "ASK")) {
                ask[i] = redirect_node(c, r, &slot);
                state[i] = CMD_PENDING;
            } else if (error_is(r, "TRYAGAIN") || error_is(r, "CLUSTERDOWN") ||
                       error_is(r, "LOADING") || error_is(r, "MASTERDOWN")) {
                if (error_is(r, "CLUSTERDOWN")) c->stale = true;
                pause = true;
                state[i] = CMD_PENDING;
            } else {
                replies[i] = r;
                r = NULL;
                state[i] = CMD_DONE;
                left--;
            }
            freeReplyObject(r);
        }
        if (left > 0 && pause) {
            int64_t wait = deadline - time_mono_ms();
            if (wait > CLUSTER_PAUSE_MS) wait = CLUSTER_PAUSE_MS;
            if (wait > 0) usleep((useconds_t)wait * 1000);
        }
    }
    free(node);
    free(ask);
    free(state);
    return left;
}
