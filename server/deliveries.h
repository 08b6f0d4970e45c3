/*
 * deliveries.h — one message of a consumer group, and every way it moves.
 *
 * A group's state lives in Redis, in the group's pending entries list (PEL), so
 * Redis workers (XREADGROUP/XACK) and the consumer API (consume.h) share it:
 *   - delivered to a worker:  pending with that consumer; its delivery count is
 *                             the number of deliveries so far;
 *   - waiting for a retry:    pending with "sluice-retry" (invisible to workers);
 *   - a dead letter:          pending with "sluice-dead", delivered no more.
 * Two hashes beside the stream hold what the PEL cannot say:
 *   - handback (`<stream>:handback:<group>`; on a Redis Cluster
 *     `{<stream>}:handback:<group>`, see below): an entry handed back into a Redis
 *     worker's PEL keeps its count until the worker re-reads it (XREADGROUP … 0
 *     counts then). The hash records the count at the hand-back, so a worker
 *     that reads only `>` is still charged the delivery: its attempts are
 *     max(count, handback + 1).
 *   - due (`<stream>:due:<group>`, or `{<stream>}:due:<group>`): a time (Unix
 *     ms) that overrides the policy — for a parked entry, when its retry is due
 *     (a nack's delay_ms); for a delivered one, its extended ack deadline
 *     (extend). Redis's XCLAIM TIME cannot set a delivery time in the future,
 *     hence the hash.
 * On a Redis Cluster (issue 17) a script's keys must share one hash slot; the stream's
 * own name (`sluice:orders`) has no hash tag, so Redis hashes all of it, and the hashes'
 * names carry that name as their tag (redis_side_key): all three land in the stream's
 * slot while the stream keeps the name Redis workers XREADGROUP.
 * Every move is a compare-and-swap in one Redis script: the entry moves only if
 * it is still pending with the owner and at the delivery count the caller saw,
 * so a nack racing the sweeper, two fetches racing for one retry, or a failover
 * mid-sweep move it once. Whoever parks, delivers or dead-letters an entry sets
 * its count to the attempts made so far and clears its hash fields.
 */
#ifndef SLUICE_DELIVERIES_H
#define SLUICE_DELIVERIES_H

#include "config.h"
#include "redis.h"
#include "status.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdbool.h>

#define DELIVERIES_RETRY_CONSUMER "sluice-retry"
#define DELIVERIES_DEAD_CONSUMER "sluice-dead"
/* Consumers of the consumer API appear in Redis under this prefix, so the sweeper never
 * hands a retry into the list of an API consumer that may not come back: API consumers
 * take due retries themselves when they fetch. */
#define DELIVERIES_API_PREFIX "api:"

typedef enum { RETRY_EXPONENTIAL, RETRY_LINEAR, RETRY_FIXED } retry_strategy;

typedef struct group_policy {
    int max_deliveries, base_delay_ms, max_delay_ms, ack_timeout_ms;
    bool jitter;
    retry_strategy strategy;
} group_policy;

/* "exponential", "linear", "fixed" (NULL/unknown: exponential), and back. */
retry_strategy deliveries_strategy(const char *name);
const char *deliveries_strategy_name(retry_strategy s);

/* The delay before retry number `attempt` (1 = after the first failed delivery):
 * exponential base·2^(attempt-1), linear base·attempt, fixed base; capped at max; with
 * jitter, within ±50 % of that, fixed per (position, attempt) so every reader agrees. */
long long deliveries_backoff_ms(const group_policy *p, long long attempt, long long position);

/* One group's names in Redis. */
typedef struct group_ref {
    const char *tenant, *stream, *group; /* borrowed */
    char *key;                           /* owned: the Redis stream */
    char *handback, *due;                /* owned: the hashes beside it */
} group_ref;

void group_ref_init(group_ref *g, const sluice_config *cfg, const char *tenant,
                    const char *stream, const char *group);
void group_ref_dispose(group_ref *g);

/* Where the caller saw an entry: it moves only if it is still there. */
typedef struct entry_seen {
    const char *owner;     /* the consumer it is pending with */
    long long deliveries;  /* its delivery count, or -1 for any */
    long long min_idle_ms; /* at least this idle */
} entry_seen;

/* What a move did. */
enum {
    MOVE_DONE = 1,
    MOVE_NOT_THERE = 0, /* moved or acknowledged by someone else meanwhile: left alone */
    MOVE_REDIS_ERROR = -1,
    MOVE_NO_GROUP = -2, /* the group does not exist in Redis */
};

/* Parks the entry under sluice-retry after `attempts` deliveries. Its retry is due after
 * the policy's backoff, or at `due_ms` (Unix ms) when that is > 0. */
int deliveries_park(redis_conn *r, const group_ref *g, long long position, entry_seen seen,
                    long long attempts, long long due_ms);
/* Hands a parked entry back to Redis worker `worker` (its next XREADGROUP … 0 is the
 * delivery; see handback above). */
int deliveries_hand_back(redis_conn *r, const group_ref *g, long long position, entry_seen seen,
                         const char *worker);
/* Delivers a parked entry to `consumer` as delivery number `attempt`: *entry is the XCLAIM
 * reply (an array of one [id, fields] entry; caller frees) when MOVE_DONE. */
int deliveries_take(redis_conn *r, const group_ref *g, long long position, entry_seen seen,
                    const char *consumer, long long attempt, redisReply **entry);
/* Puts a dead letter back under sluice-retry with no deliveries, due at once (reprocess):
 * the next fetch or sweep delivers it as attempt 1. Only from sluice-dead, so a second
 * reprocess of the same letter finds it gone and delivers nothing twice. */
int deliveries_revive(redis_conn *r, const group_ref *g, long long position);

/* A Redis stream entry of Sluice's (fields id, type, position, event), viewed in place. */
typedef struct entry_view {
    long long position;
    const char *id, *type; /* borrowed from the reply */
    const char *json;      /* borrowed: the stored envelope */
    size_t json_len;
} entry_view;

/* Views one [id, [field, value, …]] entry of an XREADGROUP/XCLAIM reply. False when it is
 * not one of Sluice's entries (or was trimmed away: a nil). */
bool deliveries_entry_view(const redisReply *entry, entry_view *out);

/* Records why delivery `delivery` of an entry failed, for its dead letter's history. */
void deliveries_record_failure(PGconn **conn, const group_ref *g, long long position,
                               const char *consumer, const char *error, long long delivery);

/* Parks the entry as a dead letter (under sluice-dead, count `attempts`) if it is still
 * where `seen` says, then writes (or reopens) its row with every failure recorded and
 * `error` (if any). MOVE_DONE, MOVE_NOT_THERE, MOVE_REDIS_ERROR or -3: the row could not
 * be written (the sweeper's recovery step writes it later). */
int deliveries_dead_letter(PGconn **conn, redis_conn *r, const group_ref *g, long long position,
                           const char *consumer, long long attempts, entry_seen seen,
                           const char *error);

/* One receipt-checked action on delivered entries: each (position, owner, count) acts only
 * if still pending with that owner at that count. out[i] is 1 (done) or 0 (stale).
 * DELIVERIES_ACK acknowledges; DELIVERIES_EXTEND restarts the ack timer and, when
 * deadline_ms > 0, holds the timeout off until then. 0, or -1 on a Redis error. */
typedef enum { DELIVERIES_ACK, DELIVERIES_EXTEND } deliveries_action;
typedef struct delivery_ref {
    long long position, count;
    const char *owner;
} delivery_ref;
int deliveries_apply(redis_conn *r, const group_ref *g, deliveries_action action,
                     const delivery_ref *refs, int n, long long deadline_ms, int *out);

/* The values of `field`s (entry ids "<position>-0") in hash `hash`: out[i] = value, or -1
 * when absent. 0, or -1 on a Redis error. */
int deliveries_marks(redis_conn *r, const char *hash, const long long *positions, int n,
                     long long *out);
/* A fetch's first look, in one round trip: when retries are parked, *out is {1, [parked
 * entries as XPENDING lists them, at most `scan`]} and 1 is returned; otherwise `consumer`
 * reads up to `count` new entries (XREADGROUP … >), *out is {0, that answer} and 0 is
 * returned. MOVE_NO_GROUP or MOVE_REDIS_ERROR (*out NULL). Caller frees *out. */
int deliveries_look(redis_conn *r, const group_ref *g, const char *consumer, int count, int scan,
                    redisReply **out);
/* Forgets the fields of hash `hash` (g->handback or g->due) whose entries are no longer
 * pending (a Redis worker's XACK leaves them behind): one HSCAN step of about `budget`
 * fields from *cursor (0 = start; 0 again when the scan is done). */
void deliveries_forget_settled(redis_conn *r, const group_ref *g, const char *hash,
                               long long *cursor, int budget);

#endif
