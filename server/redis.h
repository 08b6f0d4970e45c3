/*
 * redis.h — Sluice's Redis connection: one Redis or a Redis Cluster, from SLUICE_REDIS_URL.
 *
 * Accepts redis://[:password@]host[:port][/db], unix:///path[?db=N] and (issue 17)
 * redis+cluster://[[user]:password@]host:port,host:port (redis_cluster.h). Every
 * connection has connect and command timeouts, so an unreachable Redis is a quick
 * failure, never a hang.
 *
 * A redis_conn hides which kind it is: every command names the key it is about, which
 * picks the cluster node (one Redis ignores it). Every key a command touches must share
 * that key's hash slot; redis_side_key names the keys Sluice keeps beside a stream so they
 * do. A redis_conn belongs to one thread at a time.
 */
#ifndef SLUICE_REDIS_H
#define SLUICE_REDIS_H

#include "mem.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct redis_conn redis_conn;

/* Connects (and AUTH/SELECT as the URL says; a cluster: reads its slot map). Returns a
 * connection (caller frees with redis_free) or NULL (logged under `module`). Any thread. */
redis_conn *redis_connect(const char *url, int timeout_ms, const char *module);
void redis_free(redis_conn *r);
/* Whether the URL names a Redis Cluster. */
bool redis_url_is_cluster(const char *url);
bool redis_is_cluster(const redis_conn *r);
/* Whether the connection failed (a command got no reply): the caller drops it and
 * connects again. A cluster connection that only followed redirections has not failed. */
bool redis_failed(const redis_conn *r);

/* Runs one command about `key` (NULL: any node), hiredis-style format (%s, %b, %lld …).
 * Returns the reply (caller frees with freeReplyObject; may be an error reply) or NULL
 * when Redis did not answer (then redis_failed is true). */
redisReply *redis_command(redis_conn *r, const char *key, const char *fmt, ...);
/* The same with an argument vector (lens: each argument's length). */
redisReply *redis_command_argv(redis_conn *r, const char *key, int argc, const char **argv,
                               const size_t *lens);

/* The name of the key kept beside stream `key` with `suffix` (":due:<group>" …), in the
 * stream's hash slot (caller frees). One Redis: `key` + suffix, the names Sluice has
 * always used. A cluster (`cluster`): redis_cluster_side_key's "{<key>}<suffix>", whose
 * hash tag is the stream key itself. */
char *redis_side_key(bool cluster, const char *key, const char *suffix);

/* ------------------------------------------------------------------ pipelines */

/* Commands sent together: one pipeline to one Redis, or one per cluster node with every
 * node's written before any reply is read. Embedded: redis_batch_init/redis_batch_dispose. */
typedef struct redis_batch {
    buf text; /* every command, formatted */
    buf keys;  /* every command's key (its cluster slot is worked out only on a cluster) */
    struct redis_batch_cmd {
        size_t off, len;         /* in text */
        size_t key_off, key_len; /* in keys */
    } * cmds;                    /* owned */
    int n, cap;
    redisReply **replies; /* owned, after redis_batch_run: one per command, NULL = none */
} redis_batch;

void redis_batch_init(redis_batch *b);
/* Frees the commands and the replies. */
void redis_batch_dispose(redis_batch *b);
/* Adds a command about `key`, already formatted as RESP (copied). */
void redis_batch_add(redis_batch *b, const char *key, size_t key_len, const char *cmd, size_t len);
/* Records a command about `key` that the caller wrote as RESP straight into b->text, from
 * offset `start` (b->text.len before it began) to the end: no copy (the relay's XADDs). */
void redis_batch_added(redis_batch *b, const char *key, size_t key_len, size_t start);
/* Adds a command about `key` from an argument vector. */
void redis_batch_add_argv(redis_batch *b, const char *key, int argc, const char **argv,
                          const size_t *lens);
/* Sends the batch and reads every reply into b->replies. `resend` (cluster only): a
 * command whose connection failed after it was written is sent again — only for
 * commands that are harmless twice. Returns how many commands got no reply (then
 * redis_failed is true). */
int redis_batch_run(redis_conn *r, redis_batch *b, bool resend) __attribute__((warn_unused_result));

#endif
