/*
 * groups.h — consumer groups: their definitions (PostgreSQL) and their Redis
 * groups, the admin API, and the nack of a Redis worker by event id.
 *
 * A group is a Redis consumer group on the stream's Redis stream, so plain Redis
 * workers (XREADGROUP/XACK) and the consumer API (consume.h) share it; every move
 * of one of its messages is in deliveries.h, and the leader's sweeper (sweeper.h)
 * turns failed deliveries into retries and dead letters. PostgreSQL keeps each
 * group's policy, filter and acknowledged floor: a group that Redis lost (a
 * restart without persistence, a failover to a stale replica) is recreated at
 * that floor, so nothing unacknowledged is lost.
 */
#ifndef SLUICE_GROUPS_H
#define SLUICE_GROUPS_H

#include "config.h"
#include "deliveries.h"
#include "filter.h"
#include "mem.h"
#include "status.h"

#include <jansson.h>
#include <libpq-fe.h>

/* Start-up: the configuration every call uses. */
void groups_init(const sluice_config *cfg);

/* A group's definition as PostgreSQL keeps it. */
typedef struct group_def {
    char *tenant, *stream, *name; /* owned */
    group_policy policy;
    filter *match;         /* owned: the group's filter for consumer-API deliveries, or NULL */
    char start[32];        /* "$", "0" or a position */
    long long acked_floor; /* -1: not measured yet */
} group_def;

/* Loads one group's definition. SL_OK, SL_NOT_FOUND or SL_UNAVAILABLE. Pool thread. */
sl_status groups_load(PGconn **conn, const char *tenant, const char *stream, const char *name,
                      group_def *out);
/* Every group's definition (at most 10,000): returns how many, or -1 when PostgreSQL failed.
 * Free with groups_defs_free. */
int groups_load_all(PGconn **conn, group_def **out);
void group_def_dispose(group_def *d);
void groups_defs_free(group_def *defs, int n);
/* Whether the event of a Redis entry passes the group's filter. True when it has none. */
bool groups_filter_passes(const group_def *d, const entry_view *v);
/* Recreates in Redis a group Redis does not have (d->acked_floor, else its start), logged.
 * SL_OK (recreated, or there already), SL_UNAVAILABLE. */
sl_status groups_restore(redis_conn *r, const group_def *d);
/* Stores the acknowledged floor (only upwards). */
void groups_save_floor(PGconn **conn, const group_def *d, long long floor);

/* Pool thread. Each returns SL_OK with *answer (caller owns; none for delete),
 * SL_UNAVAILABLE (PostgreSQL or Redis), SL_NOT_FOUND, SL_CONFLICT (create: the group exists)
 * or SL_REFUSED (*answer is the problem). `stream` is a valid stream name
 * (envelope_stream_valid); a request body `req` has passed its request schema (reqschema.h:
 * REQSCHEMA_GROUP_CREATE, REQSCHEMA_GROUP_NACK). groups_create creates the Redis group
 * (XGROUP CREATE … MKSTREAM), then stores its policy. */
sl_status groups_create(PGconn **conn, const char *tenant, const char *stream, json_t *req,
                        json_t **answer);
sl_status groups_list(PGconn **conn, const char *tenant, const char *stream, json_t **answer);
sl_status groups_delete(PGconn **conn, const char *tenant, const char *stream, const char *name);
sl_status groups_nack(PGconn **conn, const char *tenant, const char *stream, const char *group,
                      json_t *req, json_t **answer);

/* Reprocesses dead letter `position` of a group: due for redelivery at once with a fresh
 * delivery count (deliveries_revive). SL_OK, SL_UNAVAILABLE (Redis down) or SL_NOT_FOUND
 * (not a dead letter of the group any more). */
sl_status groups_redeliver(const char *tenant, const char *stream, const char *group,
                           long long position);
/* Acknowledges entry `position` in the group (discarding a dead letter). SL_OK or
 * SL_UNAVAILABLE. */
sl_status groups_ack(const char *tenant, const char *stream, const char *group, long long position);

/* One consumer group's gauges as Redis has them now; -1 where Redis did not answer. */
typedef struct group_gauges {
    char *tenant, *stream, *name; /* owned */
    long long pending;            /* delivered, not acknowledged (parked entries included) */
    long long lag;                /* in the stream, not delivered to the group yet */
    long long retrying;           /* parked under sluice-retry, waiting out their backoff */
    long long dead;               /* parked under sluice-dead */
    long long consumers;          /* workers (Sluice's own parking consumers excluded) */
} group_gauges;

/* The gauges of every consumer group (admin-created names, at most 500 groups, ordered by
 * tenant, stream and name) in *out: returns how many, or -1 when PostgreSQL failed (*out is
 * then NULL). Free with groups_gauges_free. Any instance; one Redis round trip per group and
 * gauge. metrics.c writes them as /metrics text. */
int groups_gauges(PGconn **conn, group_gauges **out);
void groups_gauges_free(group_gauges *gauges, int n);

#endif
