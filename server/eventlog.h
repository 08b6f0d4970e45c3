/*
 * eventlog.h — the one reader of the event log, and the stored envelope's shape.
 *
 * Why one module: the stored envelope (its columns, their order, the time format),
 * the read-after-position page and the LISTEN/NOTIFY wake-up are the same for every
 * reader: the tail (other instances' commits), the relay's and the subscribers'
 * catch-up reads, the store's history pages, dead letters. Kept here once, the text
 * an event has in memory after its commit (eventlog_committed, built by the appender)
 * and the text a catch-up reads back from PostgreSQL carry the same fields in the
 * same order.
 *
 * The wake-up: each appender commits with `NOTIFY sluice_events, '<instance>'`.
 * A reader that LISTENs and waits with eventlog_wait() learns whether a commit of
 * *another* instance (or another writer) happened; its own instance's commits reach
 * it from memory. A notification that arrived while a page was being read is already
 * queued inside libpq, not on the socket: eventlog_wait() takes those first.
 */
#ifndef SLUICE_EVENTLOG_H
#define SLUICE_EVENTLOG_H

#include "envelope.h"
#include "stored_event.h"

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>

#define EVENTLOG_CHANNEL "sluice_events"
/* Definition changes (projections created or reset), on a channel of their own: the
 * projections runner listens to commits only while a projection is defined, so with none
 * a commit does not wake its PostgreSQL backend and its thread for nothing. */
#define EVENTLOG_CONTROL_CHANNEL "sluice_definitions"

/* The stored envelope's columns, in the order of its JSON fields; row_to_json over a
 * subquery selecting them gives the stored envelope's text. `time` is Sluice's ingestion
 * time, `occurred_at` the producer's occurrence time (null when it gave none; issue 15). */
#define EVENTLOG_COLUMNS                                                                           \
    "position, id, type, stream, key, version, data, metadata, correlation_id, causation_id, "     \
    "user_id, source, schema_version, tenant_id, "                                                 \
    "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS time, "             \
    "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS occurred_at"

/* This process's instance id (a ULID made at start): the payload of its NOTIFYs. */
const char *eventlog_instance(void);

/* The committed event `ev` (outcome EV_STORED, position/version/time set) as a shared
 * event whose text is the stored envelope, written once, without jansson: `data` and
 * `metadata` come from ev->data_text / ev->metadata_text. */
stored_event *eventlog_committed(const incoming_event *ev);

/* Reads up to `limit` events after position `after` (all tenants), in order, into
 * *out (a new array the caller frees, each event unref'd). Returns how many, or -1
 * when the read failed (logged; *conn may be NULL after it). */
int eventlog_read(PGconn **conn, long long after, int limit, int timeout_ms, stored_event ***out)
    __attribute__((warn_unused_result));

struct filter;

/* As eventlog_read, but only the events `f` chooses (its tenant always), found by the
 * filter's SQL (filter.h: the same choice as filter_matches), so a narrow subscription over
 * a long history reads what it wants through an index, not every event of every tenant. */
int eventlog_read_matching(PGconn **conn, const struct filter *f, long long after, int limit,
                           int timeout_ms, stored_event ***out) __attribute__((warn_unused_result));

/* The last committed position (0 for an empty log), or -1. */
long long eventlog_head(PGconn **conn, int timeout_ms);

/* LISTENs on the channel. False when the connection failed (then *conn is NULL). */
bool eventlog_listen(PGconn **conn, int timeout_ms);
/* LISTEN (`on`) or UNLISTEN `channel` (EVENTLOG_CHANNEL, EVENTLOG_CONTROL_CHANNEL). False
 * when the statement failed (a broken connection: *conn is NULL). */
bool eventlog_listen_to(PGconn **conn, const char *channel, bool on, int timeout_ms);

/* Which notifications on the channel count for a waiter. */
typedef enum {
    EVENTLOG_WAKE_ANY,     /* every one: a commit of any instance, a definition change */
    EVENTLOG_WAKE_FOREIGN, /* not this process's own commits, which reach its readers from
                              memory */
} eventlog_wake;

/* Reads what the connection has received without waiting and takes the queued
 * notifications: 1 when one counts (as eventlog_wait), 0 when none, -1 when the
 * connection broke (*conn closed, NULL). */
int eventlog_notified(PGconn **conn, eventlog_wake which);

/* Waits up to `ms` for a notification that counts (`which`). Returns 1 when one arrived,
 * 0 when the wait ended without one, -1 when the connection broke (*conn closed, NULL).
 * Polls in 100 ms steps so a set `stopping` ends it early. */
int eventlog_wait(PGconn **conn, int ms, eventlog_wake which, const atomic_bool *stopping);

#endif
