/*
 * redis_cluster.h — Sluice's own small Redis Cluster client (issue 17).
 *
 * Owns everything that only a Redis Cluster needs: the hash slot of a key (CRC16 with
 * hash tags), the names of the keys kept beside a stream so they share its slot, the slot
 * map (CLUSTER SLOTS) with one hiredis connection per master, and the running of commands
 * against it: pipelined per node with every node in flight at once, MOVED (the map is
 * corrected) and ASK (ASKING, once) followed, and a failed node's slots rediscovered from
 * any node that answers, within a bounded time.
 *
 * Why a file of our own: hiredis has no cluster client and Debian has no hiredis-cluster
 * package, and Sluice needs little of one: commands whose keys all hash to one slot, sync
 * connections, and one pipeline (the relay's XADDs). redis.h is the only caller; the
 * rest of Sluice sees a redis_conn and never knows which kind it has.
 *
 * Threads: a redis_cluster belongs to the thread that uses it (like a redisContext).
 */
#ifndef SLUICE_REDIS_CLUSTER_H
#define SLUICE_REDIS_CLUSTER_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#define REDIS_CLUSTER_SLOTS 16384
#define REDIS_CLUSTER_SCHEME "redis+cluster://"

/* The hash slot of a key, as Redis Cluster computes it: CRC16 (XMODEM) of the key, or of
 * its hash tag — what lies between the first '{' and the first '}' after it, when that is
 * not empty — modulo 16384. */
unsigned redis_cluster_key_slot(const char *key, size_t len);

/* The name of a key kept beside `key` (suffix appended), in the same slot (caller frees):
 * `key` + suffix when `key` has a hash tag (the first tag stays the first), else
 * "{" key "}" + suffix, since a key without a tag hashes by its whole name.
 * E.g. "sluice:orders", ":due:billing" → "{sluice:orders}:due:billing". NULL when no
 * such name exists (a key without a tag but with a '}', which would end the tag early). */
char *redis_cluster_side_key(const char *key, const char *suffix);

typedef struct redis_cluster redis_cluster;

/* Connects to the cluster of a redis+cluster://[[user]:password@]host:port,host:port URL:
 * asks the seeds in turn for the slot map. Returns the cluster (caller frees with
 * redis_cluster_free) or NULL (logged under `module`). timeout_ms bounds each connect and
 * command, and each redis_cluster_run as a whole. */
redis_cluster *redis_cluster_connect(const char *url, int timeout_ms, const char *module);
void redis_cluster_free(redis_cluster *c);

/* One command for redis_cluster_run: RESP text (borrowed) and its key's slot (-1: any
 * node). */
typedef struct redis_cluster_cmd {
    const char *data; /* borrowed: the formatted command */
    size_t len;
    int slot;
} redis_cluster_cmd;

/* Runs cmds[0..n): each node's share is pipelined, in the given order, every node's share
 * is written before any reply is read; MOVED, ASK, TRYAGAIN and CLUSTERDOWN are followed
 * or waited out, and a node that fails has the slot map rediscovered, all within the
 * timeout. replies[i] gets command i's reply (caller frees; an error reply other than a
 * redirection is a reply) or NULL when it got none. `resend`: a command whose connection
 * failed after it was written is sent again (only for commands that are harmless twice,
 * like the relay's XADDs with explicit ids); without it, such a command gets NULL.
 * Returns how many commands got no reply. */
int redis_cluster_run(redis_cluster *c, const redis_cluster_cmd *cmds, int n, redisReply **replies,
                      bool resend) __attribute__((warn_unused_result));

#endif
