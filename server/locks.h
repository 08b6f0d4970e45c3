/*
 * locks.h — every PostgreSQL advisory-lock key Sluice takes, in one named list.
 *
 * Why one list: each key is a role (the event log's append order, a leader role,
 * migrations). Two roles sharing a key would silently make one instance's relay
 * block another's projections; a reader checks here that every key is distinct.
 * Transaction-level keys (pg_advisory_xact_lock) serialise a write; session-level
 * keys (pg_try_advisory_lock on a connection kept open) name the leader of a role:
 * the role moves to another instance when the connection that holds it closes.
 */
#ifndef SLUICE_LOCKS_H
#define SLUICE_LOCKS_H

#define LOCK_MIGRATE "7341263001"       /* session: one instance migrates at a time */
#define LOCK_EVENT_LOG "7341263002"     /* xact: appends take positions in commit order */
#define LOCK_REGISTRY "7341263003"      /* xact: schema registrations */
#define LOCK_RELAY "7341263004"         /* leader: the Redis relay */
#define LOCK_RETENTION "7341263005"     /* leader: retention */
#define LOCK_PROJECTIONS "7341263006"   /* leader: the projection runner */
#define LOCK_REPLAYS "7341263007"       /* leader: replays */
#define LOCK_GROUPS "7341263008"        /* leader: the consumer-group sweeper */
#define LOCK_REPLAY_CREATE "7341263009" /* xact: a replay's per-tenant cap is counted and kept */
#define LOCK_WEBHOOKS "7341263010"      /* leader: webhook deliveries */
#define LOCK_PARTITIONS "7341263011"    /* xact: one instance adds a partition at a time */

#endif
