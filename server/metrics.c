/*
 * metrics.c — in-process metrics (see metrics.h), and the /metrics text of the
 * consumer-group gauges that groups.c reads from Redis.
 */
#include "metrics.h"
#include "groups.h"
#include "strmap.h"
#include "timeutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_BUCKETS 13
static const double bucket_le[N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1.0,   2.5,  5.0,   10.0};

typedef struct series {
    char *tenant, *stream, *type; /* owned */
    unsigned long long ok, failed;
    unsigned long long buckets[N_BUCKETS + 1]; /* last = +Inf */
    double sum;
    unsigned int sec_count[60]; /* published per second, over the last minute */
    long long sec_stamp[60];
} series;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static strmap all;        /* {lock} "tenant\x1fstream\x1ftype" → series */
static bool ready;        /* {lock} */
static strmap rejections; /* {lock} code → counter (heap unsigned long long) */
static unsigned long long batches, batch_events, batch_buckets[8]; /* {lock} */
static unsigned long long http_by_class[6];                        /* {lock} 1xx..5xx */
static unsigned long long partitions_created, partitions_dropped; /* {lock} */
static unsigned long long long_polls_paced;                       /* {lock} */

/* Commit-to-acknowledgement times per consumer group: retries make them long. */
#define N_ACK_BUCKETS 14
static const double ack_le[N_ACK_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                             1.0,   2.5,  5.0,   10.0, 30.0, 60.0, 300.0};
typedef struct ack_series {
    char *tenant, *stream, *group; /* owned */
    unsigned long long buckets[N_ACK_BUCKETS + 1];
    double sum;
} ack_series;
static strmap acks; /* {lock} "tenant\x1fstream\x1fgroup" → ack_series */

static void init_locked(void)
{
    if (ready) return;
    strmap_init(&acks);
    strmap_init(&all);
    strmap_init(&rejections);
    ready = true;
}

/* The series of a tenant's stream/type pair. Only a stored event opens one: a failed publish
 * to a pair that never stored anything (a stream name that exists nowhere) counts under the
 * tenant's _other, so label values stay the streams and types that exist. */
static series *series_locked(const char *tenant, const char *stream, const char *type, bool open)
{
    char key[480];
    snprintf(key, sizeof key, "%s\x1f%s\x1f%s", tenant, stream, type);
    series *s = strmap_get(&all, key);
    if (s) return s;
    if (!open || all.len >= METRICS_MAX_SERIES) {
        snprintf(key, sizeof key, "%s\x1f_other\x1f_other", tenant);
        s = strmap_get(&all, key);
        if (s) return s;
        stream = type = "_other";
    }
    s = xcalloc(1, sizeof *s);
    s->tenant = xstrdup(tenant);
    s->stream = xstrdup(stream);
    s->type = xstrdup(type);
    strmap_put(&all, key, s);
    return s;
}

void metrics_group_ack(const char *tenant, const char *stream, const char *group, double seconds)
{
    char key[400];
    snprintf(key, sizeof key, "%s\x1f%s\x1f%s", tenant, stream, group);
    pthread_mutex_lock(&lock);
    init_locked();
    ack_series *a = strmap_get(&acks, key);
    if (!a && acks.len < METRICS_MAX_SERIES) {
        a = xcalloc(1, sizeof *a);
        a->tenant = xstrdup(tenant);
        a->stream = xstrdup(stream);
        a->group = xstrdup(group);
        strmap_put(&acks, key, a);
    }
    if (a) {
        int b = 0;
        while (b < N_ACK_BUCKETS && seconds > ack_le[b]) b++;
        a->buckets[b]++;
        a->sum += seconds < 0 ? 0 : seconds;
    }
    pthread_mutex_unlock(&lock);
}

/* One series' labels, as metrics_labels writes them, in a buffer of the caller's. */
static const char *labels_of(buf *b, const char *const *pairs)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
    metrics_labels(b, pairs);
    return b->data ? b->data : "";
}

static void render_acks_locked(buf *out)
{
    buf_puts(out, "# HELP sluice_group_commit_to_ack_seconds Time from an event's commit to its "
                  "acknowledgement through the consumer API, per consumer group.\n"
                  "# TYPE sluice_group_commit_to_ack_seconds histogram\n");
    buf lb;
    buf_init(&lb);
    strmap_foreach(&acks, i)
    {
        ack_series *a = acks.slots[i].value;
        const char *pairs[] = {"tenant", a->tenant, "stream", a->stream, "group", a->group, NULL};
        metrics_histogram(out, "sluice_group_commit_to_ack_seconds", labels_of(&lb, pairs), ack_le,
                          N_ACK_BUCKETS, a->buckets, a->sum);
    }
    buf_dispose(&lb);
}

void metrics_publish(const char *tenant, const char *stream, const char *type, double seconds,
                     bool ok)
{
    long long now = time_mono_ms() / 1000;
    pthread_mutex_lock(&lock);
    init_locked();
    series *s = series_locked(tenant, stream, type, ok);
    if (ok)
        s->ok++;
    else
        s->failed++;
    int b = 0;
    while (b < N_BUCKETS && seconds > bucket_le[b])
        b++;
    s->buckets[b]++;
    s->sum += seconds;
    int slot = (int)(now % 60);
    if (s->sec_stamp[slot] != now) {
        s->sec_stamp[slot] = now;
        s->sec_count[slot] = 0;
    }
    if (ok) s->sec_count[slot]++;
    pthread_mutex_unlock(&lock);
}

void metrics_rejection(const char *code)
{
    pthread_mutex_lock(&lock);
    init_locked();
    unsigned long long *c = strmap_get(&rejections, code);
    if (!c && rejections.len < 64) {
        c = xcalloc(1, sizeof *c);
        strmap_put(&rejections, code, c);
    }
    if (c) (*c)++;
    pthread_mutex_unlock(&lock);
}

void metrics_batch(int n)
{
    static const int le[7] = {1, 10, 50, 100, 500, 1000, 5000};
    pthread_mutex_lock(&lock);
    batches++;
    batch_events += (unsigned long long)n;
    int b = 0;
    while (b < 7 && n > le[b])
        b++;
    batch_buckets[b]++;
    pthread_mutex_unlock(&lock);
}

void metrics_partition_created(int n)
{
    pthread_mutex_lock(&lock);
    partitions_created += (unsigned long long)n;
    pthread_mutex_unlock(&lock);
}

void metrics_partition_dropped(void)
{
    pthread_mutex_lock(&lock);
    partitions_dropped++;
    pthread_mutex_unlock(&lock);
}

void metrics_long_polls_paced(int n)
{
    pthread_mutex_lock(&lock);
    long_polls_paced += (unsigned long long)n;
    pthread_mutex_unlock(&lock);
}

void metrics_http(int status)
{
    int c = status / 100;
    if (c < 1 || c > 5) c = 0;
    pthread_mutex_lock(&lock);
    http_by_class[c]++;
    pthread_mutex_unlock(&lock);
}

/* Label values are tenant, stream, type and webhook names ([A-Za-z0-9._:-]) or problem
 * codes: no escaping is needed, but quote, backslash and newline are escaped anyway. */
void metrics_label(buf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '"' || *v == '\\') buf_append(out, "\\", 1);
        if (*v == '\n') {
            buf_puts(out, "\\n");
            continue;
        }
        buf_append(out, v, 1);
    }
}

void metrics_labels(buf *out, const char *const *pairs)
{
    for (int i = 0; pairs[i]; i += 2) {
        buf_printf(out, "%s%s=\"", i ? "," : "", pairs[i]);
        metrics_label(out, pairs[i + 1]);
        buf_puts(out, "\"");
    }
}

void metrics_histogram(buf *out, const char *name, const char *labels, const double *le, int n,
                       const unsigned long long *counts, double sum)
{
    unsigned long long cum = 0;
    for (int b = 0; b <= n; b++) {
        cum += counts[b];
        if (b < n)
            buf_printf(out, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, le[b], cum);
        else
            buf_printf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, cum);
    }
    buf_printf(out, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, sum, name, labels, cum);
}

void metrics_render(buf *out)
{
    pthread_mutex_lock(&lock);
    init_locked();
    buf_puts(
        out,
        "# HELP sluice_events_published_total Events answered by POST /v1/events, by outcome.\n"
        "# TYPE sluice_events_published_total counter\n");
    strmap_foreach(&all, i)
    {
        series *s = all.slots[i].value;
        for (int k = 0; k < 2; k++) {
            buf_puts(out, "sluice_events_published_total{tenant=\"");
            metrics_label(out, s->tenant);
            buf_puts(out, "\",stream=\"");
            metrics_label(out, s->stream);
            buf_puts(out, "\",type=\"");
            metrics_label(out, s->type);
            buf_printf(out, "\",outcome=\"%s\"} %llu\n", k ? "failed" : "stored",
                       k ? s->failed : s->ok);
        }
    }
    buf_puts(out, "# HELP sluice_publish_duration_seconds Time from request to durable answer.\n"
                  "# TYPE sluice_publish_duration_seconds histogram\n");
    buf lb;
    buf_init(&lb);
    strmap_foreach(&all, i)
    {
        series *s = all.slots[i].value;
        const char *pairs[] = {"tenant", s->tenant, "stream", s->stream, "type", s->type, NULL};
        metrics_histogram(out, "sluice_publish_duration_seconds", labels_of(&lb, pairs), bucket_le,
                          N_BUCKETS, s->buckets, s->sum);
    }
    buf_dispose(&lb);
    buf_puts(out, "# HELP sluice_rejections_total Refused requests by problem code.\n"
                  "# TYPE sluice_rejections_total counter\n");
    strmap_foreach(&rejections, i)
    {
        buf_puts(out, "sluice_rejections_total{code=\"");
        metrics_label(out, rejections.slots[i].key);
        buf_printf(out, "\"} %llu\n", *(unsigned long long *)rejections.slots[i].value);
    }
    static const char *const le[8] = {"1", "10", "50", "100", "500", "1000", "5000", "+Inf"};
    buf_puts(out, "# HELP sluice_appender_batch_events Events per group commit.\n"
                  "# TYPE sluice_appender_batch_events histogram\n");
    unsigned long long cum = 0;
    for (int b = 0; b < 8; b++) {
        cum += batch_buckets[b];
        buf_printf(out, "sluice_appender_batch_events_bucket{le=\"%s\"} %llu\n", le[b], cum);
    }
    buf_printf(out,
               "sluice_appender_batch_events_sum %llu\nsluice_appender_batch_events_count %llu\n",
               batch_events, batches);
    buf_puts(out, "# HELP sluice_http_responses_total HTTP answers by status class.\n"
                  "# TYPE sluice_http_responses_total counter\n");
    for (int c = 1; c <= 5; c++)
        buf_printf(out, "sluice_http_responses_total{class=\"%dxx\"} %llu\n", c, http_by_class[c]);
    buf_printf(out,
               "# HELP sluice_partitions_created_total Event-log partitions this instance "
               "created.\n# TYPE sluice_partitions_created_total counter\n"
               "sluice_partitions_created_total %llu\n"
               "# HELP sluice_partitions_dropped_total Expired event-log partitions this instance "
               "dropped whole.\n# TYPE sluice_partitions_dropped_total counter\n"
               "sluice_partitions_dropped_total %llu\n",
               partitions_created, partitions_dropped);
    buf_printf(out,
               "# HELP sluice_long_poll_timeouts_paced_total Long-poll timeouts answered on a "
               "later turn of the reaper: their tenant had used its answers for that turn.\n"
               "# TYPE sluice_long_poll_timeouts_paced_total counter\n"
               "sluice_long_poll_timeouts_paced_total %llu\n",
               long_polls_paced);
    render_acks_locked(out);
    pthread_mutex_unlock(&lock);
}

/* The consumer-group gauges, in the order /metrics writes them. */
static const struct {
    const char *name, *help;
} group_gauge_defs[] = {
    {"sluice_group_pending",
     "Entries delivered to a consumer group and not yet acknowledged (its PEL, with parked ones)."},
    {"sluice_group_lag",
     "Entries in the stream the group has not been delivered yet (Redis's lag)."},
    {"sluice_group_retrying", "Pending entries waiting out their retry backoff."},
    {"sluice_group_dead", "Pending entries parked as dead letters."},
    {"sluice_group_consumers", "Workers in the group (Sluice's own parking consumers excluded)."},
};

/* Gauge m of group_gauge_defs for one group (-1: unknown, no sample). */
static long long group_gauge(const group_gauges *g, size_t m)
{
    switch (m) {
    case 0:
        return g->pending;
    case 1:
        return g->lag;
    case 2:
        return g->retrying;
    case 3:
        return g->dead;
    default:
        return g->consumers;
    }
}

void metrics_render_groups(PGconn **conn, buf *out)
{
    group_gauges *gs;
    int n = groups_gauges(conn, &gs);
    if (n < 0) return;
    for (size_t m = 0; m < sizeof group_gauge_defs / sizeof group_gauge_defs[0]; m++) {
        const char *name = group_gauge_defs[m].name;
        buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, group_gauge_defs[m].help, name);
        for (int i = 0; i < n; i++) {
            long long v = group_gauge(&gs[i], m);
            if (v < 0) continue;
            buf_printf(out, "%s{tenant=\"", name);
            metrics_label(out, gs[i].tenant);
            buf_puts(out, "\",stream=\"");
            metrics_label(out, gs[i].stream);
            buf_puts(out, "\",group=\"");
            metrics_label(out, gs[i].name);
            buf_printf(out, "\"} %lld\n", v);
        }
    }
    groups_gauges_free(gs, n);
}

/* The q-quantile from a histogram, interpolated inside its bucket, in ms. */
static double quantile_ms(const series *s, double q)
{
    unsigned long long total = 0;
    for (int b = 0; b <= N_BUCKETS; b++)
        total += s->buckets[b];
    if (!total) return 0;
    double rank = q * (double)total, cum = 0;
    for (int b = 0; b <= N_BUCKETS; b++) {
        if (cum + (double)s->buckets[b] >= rank && s->buckets[b]) {
            double lo = b ? bucket_le[b - 1] : 0,
                   hi = b < N_BUCKETS ? bucket_le[b] : bucket_le[N_BUCKETS - 1] * 2;
            double frac = (rank - cum) / (double)s->buckets[b];
            return (lo + (hi - lo) * frac) * 1000.0;
        }
        cum += (double)s->buckets[b];
    }
    return bucket_le[N_BUCKETS - 1] * 1000.0;
}

json_t *metrics_stats(const char *tenant)
{
    long long now = time_mono_ms() / 1000;
    json_t *list = json_array();
    pthread_mutex_lock(&lock);
    init_locked();
    strmap_foreach(&all, i)
    {
        series *s = all.slots[i].value;
        if (strcmp(s->tenant, tenant) != 0) continue; /* another tenant's: never shown */
        unsigned long long minute = 0;
        for (int k = 0; k < 60; k++)
            if (now - s->sec_stamp[k] < 60) minute += s->sec_count[k];
        unsigned long long n = s->ok + s->failed;
        json_array_append_new(list, json_pack("{s:s,s:s,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:I}", "stream",
                                              s->stream, "type", s->type, "published",
                                              (json_int_t)s->ok, "rejected", (json_int_t)s->failed,
                                              "p50_ms", quantile_ms(s, 0.50), "p95_ms",
                                              quantile_ms(s, 0.95), "p99_ms", quantile_ms(s, 0.99),
                                              "success_rate", n ? (double)s->ok / (double)n : 1.0,
                                              "error_rate", n ? (double)s->failed / (double)n : 0.0,
                                              "per_minute", (json_int_t)minute));
    }
    pthread_mutex_unlock(&lock);
    return json_pack("{s:i,s:o}", "window_seconds", 60, "stats", list);
}
