/*
 * redis.h — connecting to Redis from a SLUICE_REDIS_URL.
 *
 * Accepts redis://[:password@]host[:port][/db] and unix:///path[?db=N]. Every
 * connection has connect and command timeouts, so an unreachable Redis is a
 * quick failure, never a hang.
 */
#ifndef SLUICE_REDIS_H
#define SLUICE_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>

/* Connects (and AUTH/SELECT as the URL says). Returns a context (caller frees with
 * redisFree) or NULL (logged under `module`). Any thread. */
redisContext *redis_connect(const char *url, int timeout_ms, const char *module);
/* True when Redis answers PING within the timeout. */
bool redis_ping(const char *url, int timeout_ms);

#endif
