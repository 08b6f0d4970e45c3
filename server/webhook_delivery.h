/*
 * webhook_delivery.h — the leader's webhook deliveries.
 *
 * One thread, on the instance that holds the webhooks advisory lock, delivers
 * every active webhook with libcurl's multi interface (connections kept alive
 * per destination, timeout_ms per attempt, no redirects, answers read up to
 * 64 KiB, the connected address checked by destinations.h before a byte is
 * sent). Per webhook:
 *   - a window of the events after its checkpoint, read from the log once per
 *     round for every webhook (one page from the lowest cursor) and filtered;
 *   - at most 16 deliveries in flight, max_per_second as a token bucket;
 *   - retries first: failed attempts wait in webhook_retries for their backoff
 *     (the consumer groups' rules, deliveries.h); after max_deliveries the event
 *     is a dead letter with source webhook:<name>; a reprocessed dead letter is
 *     a retry that resolves the letter when delivered;
 *   - ordering "key": one delivery per (stream, key) at a time, in position
 *     order: an event whose key is busy waits in webhook_retries behind it, so
 *     the window — and every other key — moves on;
 *   - the checkpoint advances over events delivered, filtered out, retried or
 *     dead-lettered, and is stored four times a second: a new leader repeats
 *     what was in flight and what was delivered in the last quarter second
 *     (at least once, nothing skipped).
 * A change of a definition (pause, rotation, deletion — on any instance) is a NOTIFY
 * the thread looks for after each read of the log, before it sends anything.
 * A 410 Gone pauses the webhook; so does an endpoint that failed everything for
 * an hour. Each delivery is signed (webhook_sign.h) with the secret, and with the
 * previous one too during a rotation.
 */
#ifndef SLUICE_WEBHOOK_DELIVERY_H
#define SLUICE_WEBHOOK_DELIVERY_H

#include "config.h"
#include "mem.h"

int webhook_delivery_start(const sluice_config *cfg) __attribute__((warn_unused_result));
void webhook_delivery_stop(void);

/* Appends the webhook metrics of this instance (text format): deliveries by outcome, the
 * attempt latency histogram, lag and paused per webhook (the leader's; others have none). */
void webhook_delivery_render_metrics(buf *out);

#endif
