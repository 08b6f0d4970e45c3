/*
 * consume.h — the consumer API: workers take a group's messages through Sluice,
 * over HTTP (fetch, ack, nack, extend) or a WebSocket (the consume op), with a
 * `consume` key and no Redis access.
 *
 * It is the same Redis consumer group that Redis workers read (groups.h), so
 * retries, dead letters and the sweeper are shared. An API consumer "w1" is the
 * Redis consumer "api:w1" (deliveries.h says why). A fetch takes, for up to
 * `max` messages: the group's retries that are due (parked under sluice-retry),
 * then new events (XREADGROUP … >). Each delivery sets the message's delivery
 * count to its attempt number, and its receipt names the position, the attempt
 * and the consumer: an ack, nack or extend acts only if the message is still
 * pending with that consumer at that attempt, so once the sweeper has timed a
 * delivery out (and perhaps handed it to someone else) its receipt is stale and
 * acknowledges nothing. Events that do not pass the group's filter are
 * acknowledged for the group and never delivered through the API.
 *
 * Waiting costs no thread: a fetch that finds nothing and may wait, and every
 * WebSocket consume subscription, are served by one consume thread, woken by
 * the relay after each write to Redis (on the leader) and every 200 ms
 * otherwise (retries coming due, other instances' relays).
 */
#ifndef SLUICE_CONSUME_H
#define SLUICE_CONSUME_H

#include "config.h"
#include "envelope.h"
#include "groups.h"
#include "session.h"
#include "status.h"

#include <jansson.h>
#include <libpq-fe.h>

#define CONSUME_MAX_MESSAGES 1000 /* per fetch, and in flight per WebSocket consumer */
#define CONSUME_MAX_WAIT_MS 60000

/* A receipt is "<position>.<attempt>.<commit ms>.<consumer>": where the delivery stands
 * (position, delivery count, the API consumer) and when its event was committed (for the
 * commit-to-ack histogram). Opaque to clients. */
typedef struct consume_receipt {
    long long position, attempt, commit_ms;
    char owner[80]; /* the Redis consumer: "api:<consumer>" */
} consume_receipt;
/* False when `s` is not a receipt (NULL included). */
bool consume_receipt_parse(const char *s, consume_receipt *out);

int consume_start(const sluice_config *cfg) __attribute__((warn_unused_result));
/* Answers every waiting fetch (an empty list) and ends every WebSocket consumer. */
void consume_stop(void);
/* New entries may be in Redis (the relay wrote some). Any thread. */
void consume_wake(void);

/* Who fetches from which group. */
typedef struct consume_who {
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char *stream, *group, *consumer; /* owned */
} consume_who;
void consume_who_dispose(consume_who *w);

/* Pool thread: one fetch of up to `max` messages now. SL_OK with *body
 * ({"messages":[…]}, caller frees) and *n messages; SL_NOT_FOUND (no such group),
 * SL_UNAVAILABLE (PostgreSQL or Redis). When n is 0 and the caller will wait, *def is the
 * group's definition to wait with (moved to consume_wait); otherwise NULL.
 * An HTTP thread calls it (and consume_ack) with `conn` NULL: then SL_AGAIN, with nothing
 * delivered to the caller, means it needs PostgreSQL or a patient Redis call, so run it on
 * the pool (a read that timed out may still run in Redis: its messages come back after
 * ack_timeout_ms, as after any lost answer). */
sl_status consume_fetch(PGconn **conn, const consume_who *who, int max, char **body, int *n,
                        group_def **def);

/* Called once with the answer's body ({"messages":[…]}, possibly empty; owned), or NULL
 * when the wait was cancelled. Runs on the consume thread or in consume_cancel's caller. */
typedef void (*consume_done_fn)(void *arg, char *body);
/* Waits (no thread) until messages come or `wait_ms` passes. Takes `who` and `def`. */
void consume_wait(consume_who *who, group_def *def, int max, int wait_ms, consume_done_fn done,
                  void *arg);
/* Ends the wait whose arg is `arg` (its done gets NULL) if it is still waiting. Any thread. */
void consume_cancel(void *arg);

/* Pool thread (or an HTTP thread, as consume_fetch says). `req` has passed its request
 * schema. SL_OK with *answer, SL_NOT_FOUND,
 * SL_UNAVAILABLE, or SL_REFUSED with the problem in *answer (a receipt that is not one, or
 * is stale for a nack). */
sl_status consume_ack(PGconn **conn, const consume_who *who, json_t *req, json_t **answer);
sl_status consume_nack(PGconn **conn, const consume_who *who, json_t *req, json_t **answer);
sl_status consume_extend(PGconn **conn, const consume_who *who, json_t *req, json_t **answer);

/* WebSocket (lws thread): starts consume subscription `id` of session `s` (which must hold
 * the consume scope); the consume thread answers {"op":"consuming"} or an error, then
 * pushes {"op":"message",…} frames, keeping at most max_in_flight unacknowledged. */
void consume_ws_start(session *s, const char *id, const char *stream, const char *group,
                      const char *consumer, int max_in_flight);
/* {"op":"ack","receipts":[…]} and {"op":"nack","receipt",…} frames of session `s`: answered
 * with {"op":"acked"} / {"op":"nacked"} or an error. `msg` is borrowed. */
void consume_ws_frame(session *s, json_t *msg);
/* Ends consume subscription `id` of `s`; false when it has none of that id. */
bool consume_ws_stop(session *s, const char *id);
/* The session is closing: ends all of its consume subscriptions. */
void consume_ws_close(session *s);

#endif
