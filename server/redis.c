/*
 * redis.c — Redis URLs and connections (see redis.h).
 */
#include "redis.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

redisContext *redis_connect(const char *url, int timeout_ms, const char *module)
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
        log_error(module, "SLUICE_REDIS_URL must start with redis:// or unix://",
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

bool redis_ping(const char *url, int timeout_ms)
{
    redisContext *c = redis_connect(url, timeout_ms, "redis");
    if (!c) return false;
    redisReply *r = redisCommand(c, "PING");
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    redisFree(c);
    return ok;
}
