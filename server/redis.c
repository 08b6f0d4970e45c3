/*
 * redis.c — Redis URLs and connections, one Redis or a cluster (see redis.h).
 */
#include "redis.h"
#include "log.h"
#include "redis_cluster.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct redis_conn {
    redisContext *one;      /* owned: one Redis, or NULL */
    redis_cluster *cluster; /* owned: a cluster, or NULL */
    bool failed;            /* a cluster command got no reply */
};

/* ------------------------------------------------------------------ one Redis */

static redisContext *connect_one(const char *url, int timeout_ms, const char *module)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c = NULL;
    char host[256] = "127.0.0.1", password[256] = "";
    int port = 6379, db = 0;
    if (strncmp(url, "unix://", 7) == 0) {
        char path[512];
        snprintf(path, sizeof path, "%s", url + 7);
        char *q = strchr(path, '?');
        if (q) {
            *q = '\0';
            if (strncmp(q + 1, "db=", 3) == 0) db = atoi(q + 4);
        }
        c = redisConnectUnixWithTimeout(path, tv);
    } else if (strncmp(url, "redis://", 8) == 0) {
        const char *p = url + 8;
        const char *at = strchr(p, '@');
        if (at) {
            const char *colon = memchr(p, ':', (size_t)(at - p));
            const char *pw = colon ? colon + 1 : p;
            snprintf(password, sizeof password, "%.*s", (int)(at - pw), pw);
            p = at + 1;
        }
        size_t hl = strcspn(p, ":/");
        if (hl) snprintf(host, sizeof host, "%.*s", (int)hl, p);
        p += hl;
        if (*p == ':') port = atoi(p + 1), p += 1 + strcspn(p + 1, "/");
        if (*p == '/' && p[1]) db = atoi(p + 1);
        c = redisConnectWithTimeout(host, port, tv);
    } else {
        log_error(module,
                  "SLUICE_REDIS_URL must start with redis://, unix:// or " REDIS_CLUSTER_SCHEME,
                  json_pack("{s:s}", "url", url));
        return NULL;
    }
    if (!c || c->err) {
        log_debug(module, "redis connect failed",
                  json_pack("{s:s}", "error", c ? c->errstr : "out of memory"));
        if (c) redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (password[0]) {
        redisReply *r = redisCommand(c, "AUTH %s", password);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        freeReplyObject(r);
        if (!ok) goto fail;
    }
    if (db) {
        redisReply *r = redisCommand(c, "SELECT %d", db);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        freeReplyObject(r);
        if (!ok) goto fail;
    }
    return c;
fail:
    log_warn(module, "redis AUTH/SELECT failed", NULL);
    redisFree(c);
    return NULL;
}

/* ------------------------------------------------------------------ connections */

bool redis_url_is_cluster(const char *url)
{
    return strncmp(url, REDIS_CLUSTER_SCHEME, strlen(REDIS_CLUSTER_SCHEME)) == 0;
}

redis_conn *redis_connect(const char *url, int timeout_ms, const char *module)
{
    redis_conn *r = NULL;
    if (redis_url_is_cluster(url)) {
        redis_cluster *c = redis_cluster_connect(url, timeout_ms, module);
        if (c) {
            r = xcalloc(1, sizeof *r);
            r->cluster = c;
        }
    } else {
        redisContext *c = connect_one(url, timeout_ms, module);
        if (c) {
            r = xcalloc(1, sizeof *r);
            r->one = c;
        }
    }
    return r;
}

void redis_free(redis_conn *r)
{
    if (!r) return;
    if (r->one) redisFree(r->one);
    redis_cluster_free(r->cluster);
    free(r);
}

bool redis_is_cluster(const redis_conn *r)
{
    return r->cluster != NULL;
}

bool redis_failed(const redis_conn *r)
{
    return r->one ? r->one->err != 0 : r->failed;
}

char *redis_side_key(bool cluster, const char *key, const char *suffix)
{
    char *name = cluster ? redis_cluster_side_key(key, suffix) : NULL;
    /* A prefix with a '}' and no hash tag has no same-slot name: relay_start refuses it
     * with a cluster URL, so this is one Redis. */
    return name ? name : xasprintf("%s%s", key, suffix);
}

/* ------------------------------------------------------------------ commands */

/* Runs one formatted command (takes nothing; `cmd` borrowed). */
static redisReply *run_formatted(redis_conn *r, const char *key, const char *cmd, size_t len)
{
    redisReply *rep = NULL;
    if (r->one) {
        if (redisAppendFormattedCommand(r->one, cmd, len) != REDIS_OK ||
            redisGetReply(r->one, (void **)&rep) != REDIS_OK)
            rep = NULL;
        return rep;
    }
    redis_cluster_cmd c = {cmd, len, key ? (int)redis_cluster_key_slot(key, strlen(key)) : -1};
    if (redis_cluster_run(r->cluster, &c, 1, &rep, false) > 0) r->failed = true;
    return rep;
}

redisReply *redis_command(redis_conn *r, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0) return NULL;
    redisReply *rep = run_formatted(r, key, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rep;
}

redisReply *redis_command_argv(redis_conn *r, const char *key, int argc, const char **argv,
                               const size_t *lens)
{
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) return NULL;
    redisReply *rep = run_formatted(r, key, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rep;
}

/* ------------------------------------------------------------------ pipelines */

void redis_batch_init(redis_batch *b)
{
    memset(b, 0, sizeof *b);
    buf_init(&b->text);
    buf_init(&b->keys);
}

void redis_batch_dispose(redis_batch *b)
{
    for (int i = 0; b->replies && i < b->n; i++)
        freeReplyObject(b->replies[i]);
    free(b->replies);
    free(b->cmds);
    buf_dispose(&b->text);
    buf_dispose(&b->keys);
    memset(b, 0, sizeof *b);
}

void redis_batch_added(redis_batch *b, const char *key, size_t key_len, size_t start)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->cmds = xrealloc(b->cmds, (size_t)b->cap * sizeof *b->cmds);
    }
    b->cmds[b->n++] = (struct redis_batch_cmd){start, b->text.len - start, b->keys.len, key_len};
    buf_append(&b->keys, key, key_len);
}

void redis_batch_add(redis_batch *b, const char *key, size_t key_len, const char *cmd, size_t len)
{
    size_t start = b->text.len;
    buf_append(&b->text, cmd, len);
    redis_batch_added(b, key, key_len, start);
}

void redis_batch_add_argv(redis_batch *b, const char *key, int argc, const char **argv,
                          const size_t *lens)
{
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) abort(); /* hiredis formats into memory: out of memory */
    redis_batch_add(b, key, strlen(key), cmd, (size_t)len);
    redisFreeCommand(cmd);
}

int redis_batch_run(redis_conn *r, redis_batch *b, bool resend)
{
    b->replies = xcalloc((size_t)(b->n ? b->n : 1), sizeof *b->replies);
    if (b->n == 0) return 0;
    if (r->one) {
        int missing = b->n;
        if (redisAppendFormattedCommand(r->one, b->text.data, b->text.len) != REDIS_OK)
            return missing;
        for (int i = 0; i < b->n; i++, missing--)
            if (redisGetReply(r->one, (void **)&b->replies[i]) != REDIS_OK) {
                b->replies[i] = NULL;
                break; /* the connection is unusable: the rest of the replies are lost */
            }
        return missing;
    }
    redis_cluster_cmd *cmds = xmalloc((size_t)b->n * sizeof *cmds);
    for (int i = 0; i < b->n; i++)
        cmds[i] = (redis_cluster_cmd){
            b->text.data + b->cmds[i].off, b->cmds[i].len,
            (int)redis_cluster_key_slot(b->keys.data + b->cmds[i].key_off, b->cmds[i].key_len)};
    int missing = redis_cluster_run(r->cluster, cmds, b->n, b->replies, resend);
    free(cmds);
    if (missing > 0) r->failed = true;
    return missing;
}
