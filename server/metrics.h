/*
 * metrics.h — counters and histograms for /metrics (Prometheus text format)
 * and /v1/stats (seed 003's EventPerformanceMetrics).
 *
 * Recording is cheap and thread-safe (one short mutex hold per publish
 * request). Series are per tenant (issue 13: /v1/stats shows the caller's
 * tenant only; /metrics, an operator's, labels them with tenant). Label values
 * are bounded: a tenant's stream/type pairs past METRICS_MAX_SERIES share its
 * series stream="_other",type="_other", and problem codes are Sluice's fixed
 * set; no ids and no payload values become labels.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include "mem.h"

#include <libpq-fe.h>
#include <stdbool.h>

#define METRICS_MAX_SERIES 500

/* One event's publish: its tenant, stream and type, the request's latency, and whether it
 * was stored (or replayed). */
void metrics_publish(const char *tenant, const char *stream, const char *type, double seconds,
                     bool ok);
/* A refused request, by problem code. */
void metrics_rejection(const char *code);
/* The appender committed a batch of n events. */
void metrics_batch(int n);
/* An HTTP request finished with a status. */
void metrics_http(int status);
/* Event-log partitions created ahead of need, and expired ones dropped (partitions.c). */
void metrics_partition_created(int n);
void metrics_partition_dropped(void);
/* Long-poll timeouts put off to a later reaper turn (waiters.c's per-tenant pacing). */
void metrics_long_polls_paced(int n);

/* A consumer-API acknowledgement in a group, `seconds` after its event was committed (seed
 * 003's "time from event publish to completion"). */
void metrics_group_ack(const char *tenant, const char *stream, const char *group,
                       double seconds);

/* Appends `v` as a label value (quote, backslash and newline escaped). */
void metrics_label(buf *out, const char *v);
/* Appends the labels `name="value",…` of a NULL-terminated list of name, value pairs. */
void metrics_labels(buf *out, const char *const *pairs);
/* Appends one histogram series: name_bucket{labels,le="…"} for each of the `n` bounds in `le`
 * and +Inf (cumulative; `counts` has n + 1 entries, the last above every bound), then
 * name_sum and name_count. `labels` is metrics_labels' text. */
void metrics_histogram(buf *out, const char *name, const char *labels, const double *le, int n,
                       const unsigned long long *counts, double sum);

/* Appends the process's metrics (text format) to out. */
void metrics_render(buf *out);
/* Appends the consumer-group gauges (groups_gauges: pending, lag, retrying, dead, consumers
 * per group, labelled tenant/stream/group); nothing when PostgreSQL fails. Pool thread. */
void metrics_render_groups(PGconn **conn, buf *out);
/* {"window_seconds":60,"stats":[…]} for /v1/stats: `tenant`'s series only (caller owns). */
json_t *metrics_stats(const char *tenant);

#endif
