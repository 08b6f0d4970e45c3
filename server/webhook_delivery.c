/*
 * webhook_delivery.c — the leader's webhook deliveries (see webhook_delivery.h).
 */
#include "webhook_delivery.h"
#include "db.h"
#include "deliveries.h"
#include "destinations.h"
#include "eventlog.h"
#include "filter.h"
#include "hub.h"
#include "live_feed.h"
#include "locks.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "strmap.h"
#include "timeutil.h"
#include "webhook_sign.h"
#include "worker.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WH_IN_FLIGHT 16        /* deliveries in flight per webhook */
#define WH_WINDOW 1024         /* events read ahead per webhook */
#define WH_FEED 16384          /* live events waiting for the delivery thread */
#define WH_PAGE 1000           /* events per read of the log */
#define WH_BODY_CAP (64 * 1024) /* of an endpoint's answer */
#define WH_RELOAD_MS 1000      /* definitions are read again */
#define WH_SAVE_MS 250         /* checkpoints and counters are stored */
#define WH_RETRY_SCAN_MS 200   /* each webhook's retries are looked at */
#define WH_FAILING_PAUSE_MS (3600LL * 1000) /* failing everything this long pauses it */
#define WH_TIMEOUT_MS 10000    /* PostgreSQL */
#define WH_POLL_MS 20
#define WH_CHANNEL "sluice_webhooks" /* webhooks.c notifies every change of a definition */

static const sluice_config *cfg;
static worker_thread runner;

/* ------------------------------------------------------------------ metrics */

#define N_LAT 12
static const double lat_le[N_LAT] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

typedef struct hook_metrics {
    char tenant[ENVELOPE_TENANT_MAX + 1], name[72];
    unsigned long long delivered, failed, dead;
    unsigned long long lat[N_LAT + 1];
    double lat_sum;
    long long lag;
    bool paused, present;
} hook_metrics;

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static strmap metrics_map; /* {metrics_lock} "tenant\x1fname" → hook_metrics */
static bool metrics_ready;  /* {metrics_lock} */

static hook_metrics *metrics_of_locked(const char *tenant, const char *name)
{
    if (!metrics_ready) {
        strmap_init(&metrics_map);
        metrics_ready = true;
    }
    char key[160];
    snprintf(key, sizeof key, "%s\x1f%s", tenant, name);
    hook_metrics *m = strmap_get(&metrics_map, key);
    if (!m && metrics_map.len < 1000) {
        m = xcalloc(1, sizeof *m);
        snprintf(m->tenant, sizeof m->tenant, "%s", tenant);
        snprintf(m->name, sizeof m->name, "%s", name);
        strmap_put(&metrics_map, key, m);
    }
    return m;
}

/* Opens a series line: the metric's name and labels, the brace left open. */
static void labels(buf *out, const char *metric, const hook_metrics *m)
{
    const char *pairs[] = {"tenant", m->tenant, "webhook", m->name, NULL};
    buf_printf(out, "%s{", metric);
    metrics_labels(out, pairs);
}

void webhook_delivery_render_metrics(buf *out)
{
    pthread_mutex_lock(&metrics_lock);
    if (!metrics_ready) {
        pthread_mutex_unlock(&metrics_lock);
        return;
    }
    buf_puts(out, "# HELP sluice_webhook_deliveries_total Webhook delivery attempts by outcome "
                  "(delivered, failed, dead: the attempt that dead-lettered).\n"
                  "# TYPE sluice_webhook_deliveries_total counter\n");
    strmap_foreach(&metrics_map, i)
    {
        hook_metrics *m = metrics_map.slots[i].value;
        const char *names[] = {"delivered", "failed", "dead"};
        unsigned long long v[] = {m->delivered, m->failed, m->dead};
        for (int k = 0; k < 3; k++) {
            labels(out, "sluice_webhook_deliveries_total", m);
            buf_printf(out, ",outcome=\"%s\"} %llu\n", names[k], v[k]);
        }
    }
    buf_puts(out, "# HELP sluice_webhook_attempt_seconds Time from sending a webhook delivery to "
                  "its answer (or failure).\n# TYPE sluice_webhook_attempt_seconds histogram\n");
    buf lb;
    buf_init(&lb);
    strmap_foreach(&metrics_map, i)
    {
        hook_metrics *m = metrics_map.slots[i].value;
        const char *pairs[] = {"tenant", m->tenant, "webhook", m->name, NULL};
        lb.len = 0;
        metrics_labels(&lb, pairs);
        metrics_histogram(out, "sluice_webhook_attempt_seconds", lb.data, lat_le, N_LAT, m->lat,
                          m->lat_sum);
    }
    buf_dispose(&lb);
    static const char *const gauges[][2] = {
        {"sluice_webhook_lag", "Positions between the log's head and the webhook's checkpoint."},
        {"sluice_webhook_paused",
         "1 when the webhook is paused (by an operator, a 410 Gone, or an hour of failures)."},
    };
    for (int g = 0; g < 2; g++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g][0], gauges[g][1], gauges[g][0]);
        strmap_foreach(&metrics_map, i)
        {
            hook_metrics *m = metrics_map.slots[i].value;
            if (!m->present) continue;
            labels(out, gauges[g][0], m);
            buf_printf(out, "} %lld\n", g ? (long long)m->paused : m->lag);
        }
    }
    pthread_mutex_unlock(&metrics_lock);
}

/* ------------------------------------------------------------------ webhooks in memory */

enum { SLOT_PENDING, SLOT_IN_FLIGHT, SLOT_DONE };

typedef struct slot {
    stored_event *ev;
    int state;
} slot;

typedef struct hook {
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char name[72];
    char *url;
    filter *match; /* NULL: every event of the tenant */
    group_policy policy;
    int timeout_ms, max_per_second;
    bool by_key;
    struct curl_slist *own_headers;
    char *secret, *previous; /* previous: NULL unless still signing */
    bool paused, seen;
    long long checkpoint, saved_checkpoint, cursor;
    slot window[WH_WINDOW];
    int w_start, w_len;
    int in_flight;
    strmap busy;        /* "stream\x1fkey" → int *: deliveries of that key in flight */
    strmap retry_keys;  /* keys with a row in webhook_retries (as of the last scan) */
    long long retry_scan_at;
    double tokens;
    long long tokens_at;
    long long delivered_add, failed_add; /* counters not stored yet */
    long long failing_since_ms;          /* 0: the last attempt succeeded */
    bool succeeded;                      /* a delivery since the last save */
    bool dirty;
    struct hook *next;
} hook;

/* One delivery attempt in flight. */
typedef struct attempt {
    hook *h;
    long long position;
    int attempt_no;       /* 1 for the first */
    bool from_retry;      /* a row of webhook_retries */
    char *dead_letter_id; /* a reprocessed dead letter, or NULL */
    stored_event *ev; /* a reference: its id, stream, key, type and the stored envelope */
    CURL *easy;
    struct curl_slist *headers;
    size_t answered; /* bytes of the answer read */
    long long started_ms;
    const char *forbidden; /* the connected address was refused */
    char errbuf[CURL_ERROR_SIZE];
    struct attempt *prev, *next; /* every attempt in flight */
} attempt;

static live_feed feed;     /* every tenant's committed events, while this instance leads */
static bool leading;       /* the thread's: the feed is subscribed */
static bool feed_live;     /* the thread's: the feed delivers every event after feed_pos */
static long long feed_pos; /* the thread's */
static hook *hooks;        /* the thread's */
static atomic_bool have_hooks; /* written by the thread: `hooks` is not empty */
static attempt *attempts;  /* the thread's: in flight */
static CURLM *multi;

static void hook_free(hook *h)
{
    free(h->url);
    if (h->match) {
        filter_dispose(h->match);
        free(h->match);
    }
    curl_slist_free_all(h->own_headers);
    free(h->secret);
    free(h->previous);
    for (int i = 0; i < h->w_len; i++)
        stored_event_unref(h->window[(h->w_start + i) % WH_WINDOW].ev);
    strmap_dispose(&h->busy, free);
    strmap_dispose(&h->retry_keys, free);
    free(h);
}

static hook *hook_find(const char *tenant, const char *name)
{
    for (hook *h = hooks; h; h = h->next)
        if (!strcmp(h->tenant, tenant) && !strcmp(h->name, name)) return h;
    return NULL;
}

static void key_of(char out[600], const char *stream, const char *key)
{
    snprintf(out, 600, "%s\x1f%s", stream, key ? key : "");
}

static void busy_add(hook *h, const char *stream, const char *key, int delta)
{
    char k[600];
    key_of(k, stream, key);
    int *n = strmap_get(&h->busy, k);
    if (!n) {
        n = xcalloc(1, sizeof *n);
        strmap_put(&h->busy, k, n);
    }
    *n += delta;
}

static bool key_busy(hook *h, const char *stream, const char *key)
{
    char k[600];
    key_of(k, stream, key);
    int *n = strmap_get(&h->busy, k);
    return (n && *n > 0) || strmap_get(&h->retry_keys, k);
}

/* ------------------------------------------------------------------ definitions */

/* Reads every webhook's definition: new ones start at their stored checkpoint, changed ones
 * take the new settings, deleted ones are dropped once nothing of theirs is in flight. */
static void reload(PGconn **conn)
{
    PGresult *r = db_exec(conn,
                          "SELECT tenant_id, name, url, filter::text, max_deliveries, strategy, "
                          "base_delay_ms, max_delay_ms, jitter, timeout_ms, max_per_second, "
                          "ordering, headers::text, secret, CASE WHEN previous_until > now() THEN "
                          "previous_secret END, status, checkpoint, extract(epoch from "
                          "failing_since) * 1000 FROM webhooks",
                          0, NULL, WH_TIMEOUT_MS);
    if (!db_ok(r)) {
        PQclear(r);
        return;
    }
    for (hook *h = hooks; h; h = h->next) h->seen = false;
    for (int i = 0; i < PQntuples(r); i++) {
        hook *h = hook_find(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        if (!h) {
            h = xcalloc(1, sizeof *h);
            snprintf(h->tenant, sizeof h->tenant, "%s", PQgetvalue(r, i, 0));
            snprintf(h->name, sizeof h->name, "%s", PQgetvalue(r, i, 1));
            strmap_init(&h->busy);
            strmap_init(&h->retry_keys);
            h->checkpoint = h->saved_checkpoint = h->cursor = strtoll(PQgetvalue(r, i, 16), NULL, 10);
            h->failing_since_ms =
                PQgetisnull(r, i, 17) ? 0 : (long long)strtod(PQgetvalue(r, i, 17), NULL);
            h->next = hooks;
            hooks = h;
        }
        h->seen = true;
        free(h->url);
        h->url = xstrdup(PQgetvalue(r, i, 2));
        if (h->match) {
            filter_dispose(h->match);
            free(h->match);
            h->match = NULL;
        }
        if (!PQgetisnull(r, i, 3)) {
            json_t *fj = json_loads(PQgetvalue(r, i, 3), 0, NULL);
            static const char *const members[] = {"streams", "types", "where", NULL};
            filter_error err;
            h->match = xcalloc(1, sizeof *h->match);
            if (filter_parse_json(h->match, fj, members, NULL, &err) < 0) {
                free(h->match);
                h->match = NULL;
            } else {
                snprintf(h->match->tenant, sizeof h->match->tenant, "%s", h->tenant);
            }
            json_decref(fj);
        }
        h->policy = (group_policy){atoi(PQgetvalue(r, i, 4)), atoi(PQgetvalue(r, i, 6)),
                                   atoi(PQgetvalue(r, i, 7)), 0, PQgetvalue(r, i, 8)[0] == 't',
                                   deliveries_strategy(PQgetvalue(r, i, 5))};
        h->timeout_ms = atoi(PQgetvalue(r, i, 9));
        h->max_per_second = PQgetisnull(r, i, 10) ? 0 : atoi(PQgetvalue(r, i, 10));
        h->by_key = !strcmp(PQgetvalue(r, i, 11), "key");
        curl_slist_free_all(h->own_headers);
        h->own_headers = NULL;
        json_t *hj = json_loads(PQgetvalue(r, i, 12), 0, NULL);
        const char *hk;
        json_t *hv;
        json_object_foreach(hj, hk, hv)
        {
            if (!json_is_string(hv)) continue;
            char *line = xasprintf("%s: %s", hk, json_string_value(hv));
            h->own_headers = curl_slist_append(h->own_headers, line);
            free(line);
        }
        json_decref(hj);
        free(h->secret);
        h->secret = xstrdup(PQgetvalue(r, i, 13));
        free(h->previous);
        h->previous = PQgetisnull(r, i, 14) ? NULL : xstrdup(PQgetvalue(r, i, 14));
        h->paused = strcmp(PQgetvalue(r, i, 15), "active") != 0;
    }
    PQclear(r);
    /* Deleted: dropped once nothing of theirs is in flight. */
    for (hook **p = &hooks; *p;) {
        hook *h = *p;
        if (h->seen || h->in_flight) {
            p = &h->next;
            continue;
        }
        *p = h->next;
        pthread_mutex_lock(&metrics_lock);
        hook_metrics *m = metrics_of_locked(h->tenant, h->name);
        if (m) m->present = false;
        pthread_mutex_unlock(&metrics_lock);
        hook_free(h);
    }
    atomic_store(&have_hooks, hooks != NULL);
    /* Keep-alive: an idle connection for each delivery that may be in flight, so that a
     * webhook sending one at a time reuses its connection (libcurl keeps 4 per easy handle
     * in flight by default, and closes the rest as soon as they are idle). */
    long n = 0;
    for (hook *h = hooks; h; h = h->next) n += WH_IN_FLIGHT;
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, n > WH_IN_FLIGHT ? n : (long)WH_IN_FLIGHT);
}

/* Whether a definition changed since the last look (a NOTIFY on WH_CHANNEL: a pause, a
 * rotation, a deletion, on any instance). Looked at after each read of the log, before
 * anything is sent: a change committed before an event was is seen before that event goes. */
static bool definitions_changed(PGconn **conn)
{
    if (!*conn || !PQconsumeInput(*conn)) return false;
    bool any = false;
    PGnotify *n;
    while ((n = PQnotifies(*conn))) {
        any = true;
        PQfreemem(n);
    }
    return any;
}

/* Stores what changed of a webhook: checkpoint (only forwards), counters, failing_since,
 * and the last success or failure. */
static void save(PGconn **conn, hook *h, const char *last_failure_json)
{
    if (!h->dirty && !last_failure_json) return;
    bool success = h->succeeded;
    char cp[24], d[24], f[24], fs[24];
    snprintf(cp, sizeof cp, "%lld", h->checkpoint);
    snprintf(d, sizeof d, "%lld", h->delivered_add);
    snprintf(f, sizeof f, "%lld", h->failed_add);
    snprintf(fs, sizeof fs, "%lld", h->failing_since_ms);
    const char *p[] = {h->tenant, h->name, cp, d, f, fs, last_failure_json, success ? "t" : "f"};
    PGresult *r = db_exec(conn,
                          "UPDATE webhooks SET checkpoint = greatest(checkpoint, $3::bigint), "
                          "delivered = delivered + $4::bigint, failed = failed + $5::bigint, "
                          "failing_since = CASE WHEN $6::bigint = 0 THEN NULL ELSE "
                          "to_timestamp($6::bigint / 1000.0) END, last_failure = coalesce("
                          "$7::jsonb, last_failure), last_success_at = CASE WHEN $8::boolean THEN "
                          "now() ELSE last_success_at END WHERE tenant_id = $1 AND name = $2",
                          8, p, WH_TIMEOUT_MS);
    if (db_ok(r)) {
        h->saved_checkpoint = h->checkpoint;
        h->delivered_add = h->failed_add = 0;
        h->dirty = h->succeeded = false;
    }
    PQclear(r);
}

static void pause_hook(PGconn **conn, hook *h, const char *why)
{
    const char *p[] = {h->tenant, h->name, why};
    PGresult *r = db_exec(conn,
                          "UPDATE webhooks SET status = 'paused', paused_reason = $3 WHERE "
                          "tenant_id = $1 AND name = $2",
                          3, p, WH_TIMEOUT_MS);
    PQclear(r);
    h->paused = true;
    log_warn("webhooks", "webhook paused",
             json_pack("{s:s,s:s,s:s}", "tenant", h->tenant, "webhook", h->name, "why", why));
}

/* ------------------------------------------------------------------ sending */

static size_t on_answer(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    attempt *a = arg;
    a->answered += size * n;
    return a->answered > WH_BODY_CAP ? 0 : size * n; /* enough: the status line decides */
}

/* libcurl, once connected, before the request is sent: the address it connected to must
 * be one a webhook may reach (a name may resolve elsewhere than at registration). */
static int before_request(void *arg, char *conn_primary_ip, char *conn_local_ip,
                          int conn_primary_port, int conn_local_port)
{
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    attempt *a = arg;
    const char *why = NULL;
    if (destinations_ip_ok(conn_primary_ip, cfg->webhook_allow_private, &why))
        return CURL_PREREQFUNC_OK;
    a->forbidden = why;
    return CURL_PREREQFUNC_ABORT;
}

static void attempt_free(attempt *a)
{
    if (a->prev) a->prev->next = a->next;
    else if (attempts == a) attempts = a->next;
    if (a->next) a->next->prev = a->prev;
    if (a->easy) {
        curl_multi_remove_handle(multi, a->easy);
        curl_easy_cleanup(a->easy);
    }
    curl_slist_free_all(a->headers);
    free(a->dead_letter_id);
    if (a->ev) stored_event_unref(a->ev);
    free(a);
}

/* Signs and sends one attempt. */
static void send_attempt(hook *h, attempt *a)
{
    long long ts = (long long)(time_now_ms() / 1000);
    char sig[WEBHOOK_SIGNATURE_MAX], old[WEBHOOK_SIGNATURE_MAX];
    char line[64 + 2 * WEBHOOK_SIGNATURE_MAX + 80];
    bool ok = webhook_sign(h->secret, a->ev->id, ts, a->ev->json, a->ev->json_len, sig);
    if (ok && h->previous && webhook_sign(h->previous, a->ev->id, ts, a->ev->json, a->ev->json_len, old))
        snprintf(line, sizeof line, "webhook-signature: %s %s", sig, old);
    else
        snprintf(line, sizeof line, "webhook-signature: %s", ok ? sig : "");
    a->headers = curl_slist_append(a->headers, "Content-Type: application/json");
    a->headers = curl_slist_append(a->headers, "Expect:");
    char *idh = xasprintf("webhook-id: %s", a->ev->id);
    a->headers = curl_slist_append(a->headers, idh);
    free(idh);
    char tsh[64];
    snprintf(tsh, sizeof tsh, "webhook-timestamp: %lld", ts);
    a->headers = curl_slist_append(a->headers, tsh);
    a->headers = curl_slist_append(a->headers, line);
    for (struct curl_slist *s = h->own_headers; s; s = s->next)
        a->headers = curl_slist_append(a->headers, s->data);
    CURL *e = curl_easy_init();
    a->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, h->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, a->ev->json);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)a->ev->json_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, a->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)h->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(h->timeout_ms < 5000 ? h->timeout_ms : 5000));
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "Sluice-Webhooks/1");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, before_request);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, a);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, a->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, a);
    a->started_ms = time_mono_ms();
    a->next = attempts;
    if (attempts) attempts->prev = a;
    attempts = a;
    h->in_flight++;
    if (h->by_key) busy_add(h, a->ev->stream, a->ev->key, 1);
    curl_multi_add_handle(multi, e);
}

/* Whether the rate limit lets one more delivery go now (takes a token). */
static bool take_token(hook *h)
{
    if (h->max_per_second <= 0) return true;
    long long now = time_mono_ms();
    h->tokens += (double)(now - h->tokens_at) * h->max_per_second / 1000.0;
    if (h->tokens > h->max_per_second) h->tokens = h->max_per_second;
    h->tokens_at = now;
    if (h->tokens < 1) return false;
    h->tokens -= 1;
    return true;
}

static attempt *attempt_from_event(hook *h, stored_event *e)
{
    attempt *a = xcalloc(1, sizeof *a);
    a->h = h;
    a->position = e->position;
    a->attempt_no = 1;
    a->ev = stored_event_ref(e);
    return a;
}

/* ------------------------------------------------------------------ failures */

/* Where a failed attempt goes: a retry after its backoff (webhook_retries), or — after
 * max_deliveries — a dead letter. Then the event leaves the window. */
static void record_failure(PGconn **conn, hook *h, attempt *a, const char *error)
{
    char pos[24], att[24], due[24];
    snprintf(pos, sizeof pos, "%lld", a->position);
    snprintf(att, sizeof att, "%d", a->attempt_no);
    bool dead = a->attempt_no >= h->policy.max_deliveries;
    if (!dead) {
        long long delay = deliveries_backoff_ms(&h->policy, a->attempt_no, a->position);
        snprintf(due, sizeof due, "%lld", delay);
        const char *p[] = {h->tenant, h->name, pos, att, due, error};
        PGresult *r = db_exec(conn,
                              "INSERT INTO webhook_retries (tenant_id, webhook, position, attempts, "
                              "next_at, errors) VALUES ($1, $2, $3::bigint, $4::int, now() + "
                              "$5::bigint * interval '1 millisecond', jsonb_build_array("
                              "jsonb_build_object('time', now(), 'attempt', $4::int, 'error', "
                              "$6::text))) ON CONFLICT (tenant_id, webhook, position) DO UPDATE SET "
                              "attempts = EXCLUDED.attempts, next_at = EXCLUDED.next_at, errors = "
                              "webhook_retries.errors || EXCLUDED.errors",
                              6, p, WH_TIMEOUT_MS);
        PQclear(r);
        char k[600];
        key_of(k, a->ev->stream, a->ev->key);
        if (!strmap_get(&h->retry_keys, k)) strmap_put(&h->retry_keys, k, xstrdup("1"));
        return;
    }
    char *source = xasprintf("webhook:%s", h->name);
    const char *p[] = {h->tenant, source, a->ev->stream, h->name, a->ev->id, pos, att, error, a->ev->type,
                       a->ev->json};
    PGresult *r = db_exec(
        conn,
        "WITH f AS (DELETE FROM webhook_retries WHERE tenant_id = $1 AND webhook = $4 AND "
        "position = $6::bigint RETURNING errors) "
        "INSERT INTO dead_letters (tenant_id, source, stream, group_name, consumer, event_id, "
        "event_position, delivery_count, errors, type, event, history) VALUES ($1, $2, $3, NULL, "
        "NULL, $5, $6::bigint, $7::int, coalesce((SELECT errors FROM f), '[]'::jsonb) || "
        "jsonb_build_array(jsonb_build_object('time', now(), 'attempt', $7::int, 'error', "
        "$8::text)), $9, $10::jsonb, jsonb_build_array(jsonb_build_object('time', now(), "
        "'status', 'open', 'note', 'dead-lettered after ' || $7 || ' attempts'))) "
        "ON CONFLICT (tenant_id, source, event_position) WHERE source LIKE 'webhook:%' DO UPDATE "
        "SET status = 'open', delivery_count = dead_letters.delivery_count + "
        "EXCLUDED.delivery_count, errors = dead_letters.errors || EXCLUDED.errors, "
        "last_failed_at = now(), history = dead_letters.history || EXCLUDED.history",
        10, p, WH_TIMEOUT_MS);
    if (!db_ok(r)) db_log_error("webhooks", "writing a dead letter failed", r);
    PQclear(r);
    free(source);
    pthread_mutex_lock(&metrics_lock);
    hook_metrics *m = metrics_of_locked(h->tenant, h->name);
    if (m) m->dead++;
    pthread_mutex_unlock(&metrics_lock);
}

/* A delivered retry leaves webhook_retries; a reprocessed dead letter is resolved. */
static void retry_delivered(PGconn **conn, hook *h, attempt *a)
{
    char pos[24];
    snprintf(pos, sizeof pos, "%lld", a->position);
    const char *p[] = {h->tenant, h->name, pos};
    PGresult *r = db_exec(conn,
                          "DELETE FROM webhook_retries WHERE tenant_id = $1 AND webhook = $2 AND "
                          "position = $3::bigint",
                          3, p, WH_TIMEOUT_MS);
    PQclear(r);
    if (!a->dead_letter_id) return;
    const char *q[] = {h->tenant, a->dead_letter_id};
    r = db_exec(conn,
                "UPDATE dead_letters SET status = 'resolved', history = history || "
                "jsonb_build_array(jsonb_build_object('time', now(), 'status', 'resolved', "
                "'note', 'delivered after reprocessing')) WHERE tenant_id = $1 AND id = "
                "$2::bigint AND status = 'reprocessing'",
                2, q, WH_TIMEOUT_MS);
    PQclear(r);
}

/* The window slot of `position`, or NULL. */
static slot *slot_of(hook *h, long long position)
{
    for (int i = 0; i < h->w_len; i++) {
        slot *s = &h->window[(h->w_start + i) % WH_WINDOW];
        if (s->ev->position == position) return s;
    }
    return NULL;
}

/* An attempt finished: delivered, or failed (retried or dead-lettered). */
static void finish(PGconn **conn, attempt *a, CURLcode code)
{
    hook *h = a->h;
    long status = 0;
    curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &status);
    double secs = (double)(time_mono_ms() - a->started_ms) / 1000.0;
    bool capped = code == CURLE_WRITE_ERROR && a->answered > WH_BODY_CAP;
    bool ok = (code == CURLE_OK || capped) && status >= 200 && status < 300;
    h->in_flight--;
    if (h->by_key) busy_add(h, a->ev->stream, a->ev->key, -1);
    char error[512];
    if (ok)
        error[0] = 0;
    else if (a->forbidden)
        snprintf(error, sizeof error, "forbidden destination: the endpoint's address is %s",
                 a->forbidden);
    else if (code != CURLE_OK && !capped)
        snprintf(error, sizeof error, "%s", a->errbuf[0] ? a->errbuf : curl_easy_strerror(code));
    else
        snprintf(error, sizeof error, "the endpoint answered HTTP %ld", status);
    pthread_mutex_lock(&metrics_lock);
    hook_metrics *m = metrics_of_locked(h->tenant, h->name);
    if (m) {
        int b = 0;
        while (b < N_LAT && secs > lat_le[b]) b++;
        m->lat[b]++;
        m->lat_sum += secs;
        if (ok)
            m->delivered++;
        else
            m->failed++;
    }
    pthread_mutex_unlock(&metrics_lock);
    char *last_failure = NULL;
    if (ok) {
        h->delivered_add++;
        h->succeeded = true;
        h->failing_since_ms = 0;
        if (a->from_retry) retry_delivered(conn, h, a);
        char k[600];
        key_of(k, a->ev->stream, a->ev->key);
        if (h->by_key && strmap_get(&h->retry_keys, k)) h->retry_scan_at = 0; /* its next, now */
    } else {
        h->failed_add++;
        if (!h->failing_since_ms) h->failing_since_ms = time_now_ms();
        record_failure(conn, h, a, error);
        json_t *lf = json_pack("{s:I,s:s,s:i}", "position", (json_int_t)a->position, "error",
                               error, "attempt", a->attempt_no);
        char now[32];
        time_now_rfc3339(now);
        json_object_set_new(lf, "time", json_string(now));
        last_failure = json_dumps(lf, JSON_COMPACT);
        json_decref(lf);
        if (status == 410) pause_hook(conn, h, "the endpoint answered 410 Gone");
        else if (time_now_ms() - h->failing_since_ms > WH_FAILING_PAUSE_MS)
            pause_hook(conn, h, "every delivery failed for an hour");
    }
    if (!a->from_retry) {
        slot *s = slot_of(h, a->position);
        if (s) s->state = SLOT_DONE;
    }
    h->dirty = true;
    if (last_failure) save(conn, h, last_failure); /* successes are stored with the checkpoint */
    free(last_failure);
    attempt_free(a);
}

/* ------------------------------------------------------------------ a round */

/* Gives `e` to `h`, whose cursor moves over it: into the window when it passes the filter. */
static void offer(hook *h, stored_event *e)
{
    h->cursor = e->position;
    if (strcmp(e->tenant, h->tenant) || (h->match && !filter_matches(h->match, e))) return;
    slot *s = &h->window[(h->w_start + h->w_len++) % WH_WINDOW];
    s->ev = stored_event_ref(e);
    s->state = SLOT_PENDING;
}

static bool takes_events(const hook *h)
{
    return h->seen && !h->paused && h->w_len < WH_WINDOW;
}

/* Reads the log once from the lowest cursor of the webhooks that need it (every one while
 * the feed is not live; those behind it while it is) and gives each webhook the events
 * after its cursor, as far as its window has room. A webhook whose window is mostly full
 * waits for a quarter of it to free: a read is worth its page. */
static void read_events(PGconn **conn)
{
    long long head = hub_head(), low = -1;
    int room = 0;
    for (hook *h = hooks; h; h = h->next) {
        int free_slots = WH_WINDOW - h->w_len;
        if (takes_events(h) && (h->w_len == 0 || free_slots >= WH_WINDOW / 4) && h->cursor < head &&
            (!feed_live || h->cursor < feed_pos) && (low < 0 || h->cursor < low)) {
            low = h->cursor;
            if (free_slots > room) room = free_slots;
        }
    }
    if (low < 0) return;
    stored_event **evs = NULL;
    int n = eventlog_read(conn, low, room < WH_PAGE ? room : WH_PAGE, WH_TIMEOUT_MS, &evs);
    /* The page is every event after `low`: a webhook whose cursor is below it (one that
     * waits for room) would skip some, so it takes none. */
    for (hook *h = hooks; h && n > 0; h = h->next) {
        if (h->cursor < low) continue;
        for (int i = 0; i < n && takes_events(h); i++)
            if (evs[i]->position > h->cursor) offer(h, evs[i]);
    }
    for (int i = 0; i < n; i++) stored_event_unref(evs[i]);
    free(evs);
}

/* The live feed. Not live: it goes live at the furthest cursor when that is the hub's head.
 * Live: each event goes to the webhooks that have everything before it (cursor at the feed's
 * position) and room; any other webhook is behind and reads the log (read_events). */
static void take_live(void)
{
    if (!feed_live) {
        long long reach = -1;
        for (hook *h = hooks; h; h = h->next)
            if (h->seen && !h->paused && h->cursor > reach) reach = h->cursor;
        if (reach < 0) reach = hub_head(); /* nothing to deliver: start at the head */
        if (live_feed_try_go_live(&feed, reach)) {
            feed_live = true;
            feed_pos = reach;
        }
        return;
    }
    stored_event *evs[WH_PAGE];
    int n = live_feed_take(&feed, evs, WH_PAGE, 0);
    if (n < 0) { /* overflowed: every webhook reads the log until the feed is live again */
        feed_live = false;
        live_feed_fall_behind(&feed, feed_pos);
        return;
    }
    for (int i = 0; i < n; i++) {
        stored_event *e = evs[i];
        for (hook *h = hooks; h; h = h->next)
            if (takes_events(h) && h->cursor >= feed_pos && h->cursor < e->position) offer(h, e);
        feed_pos = e->position;
        stored_event_unref(e);
    }
}

/* Holds an event behind an earlier one of its key: it waits in webhook_retries (attempts 0,
 * due now) and goes when the key is free, in position order. */
static bool hold_back(PGconn **conn, hook *h, const stored_event *e)
{
    char pos[24];
    snprintf(pos, sizeof pos, "%lld", e->position);
    const char *p[] = {h->tenant, h->name, pos};
    PGresult *r = db_exec(conn,
                          "INSERT INTO webhook_retries (tenant_id, webhook, position, attempts, "
                          "next_at) VALUES ($1, $2, $3::bigint, 0, now()) ON CONFLICT DO NOTHING",
                          3, p, WH_TIMEOUT_MS);
    bool ok = db_ok(r);
    PQclear(r);
    if (ok) {
        char k[600];
        key_of(k, e->stream, e->key);
        if (!strmap_get(&h->retry_keys, k)) strmap_put(&h->retry_keys, k, xstrdup("1"));
    }
    return ok;
}

/* Whether an attempt for `position` of `h` is in flight. */
static bool in_flight(const hook *h, long long position)
{
    for (const attempt *a = attempts; a; a = a->next)
        if (a->h == h && a->position == position) return true;
    return false;
}

/* Due retries of `h` (and events held behind their key), oldest first. */
static void send_retries(PGconn **conn, hook *h)
{
    long long now = time_mono_ms();
    if (now < h->retry_scan_at) return;
    h->retry_scan_at = now + WH_RETRY_SCAN_MS;
    const char *p[] = {h->tenant, h->name};
    PGresult *r = db_exec(conn,
                          "SELECT r.position, r.attempts, r.dead_letter_id, r.next_at <= now(), "
                          "x.id, x.stream, x.key, x.type, row_to_json(x)::text FROM "
                          "webhook_retries r CROSS JOIN LATERAL (SELECT " EVENTLOG_COLUMNS
                          " FROM events e WHERE e.tenant_id = r.tenant_id AND e.position = "
                          "r.position) x WHERE r.tenant_id = $1 AND r.webhook = $2 ORDER BY "
                          "r.position LIMIT 500",
                          2, p, WH_TIMEOUT_MS);
    if (!db_ok(r)) {
        PQclear(r);
        return;
    }
    strmap_dispose(&h->retry_keys, free);
    strmap_init(&h->retry_keys);
    strmap seen_keys; /* keys whose earlier retry did not go now: later ones wait */
    strmap_init(&seen_keys);
    for (int i = 0; i < PQntuples(r); i++) {
        char k[600];
        key_of(k, PQgetvalue(r, i, 5), PQgetisnull(r, i, 6) ? NULL : PQgetvalue(r, i, 6));
        if (!strmap_get(&h->retry_keys, k)) strmap_put(&h->retry_keys, k, xstrdup("1"));
        long long pos = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        bool due = PQgetvalue(r, i, 3)[0] == 't';
        bool key_waits = h->by_key && (strmap_get(&seen_keys, k) || (strmap_get(&h->busy, k) &&
                                                                     *(int *)strmap_get(&h->busy, k) > 0));
        bool go = due && !key_waits && !h->paused && h->in_flight < WH_IN_FLIGHT &&
                  !in_flight(h, pos) && take_token(h);
        if (!go) {
            if (h->by_key && !strmap_get(&seen_keys, k)) strmap_put(&seen_keys, k, xstrdup("1"));
            continue;
        }
        if (h->by_key) strmap_put(&seen_keys, k, xstrdup("1"));
        attempt *a = xcalloc(1, sizeof *a);
        a->h = h;
        a->position = pos;
        a->attempt_no = atoi(PQgetvalue(r, i, 1)) + 1;
        a->from_retry = true;
        a->dead_letter_id = PQgetisnull(r, i, 2) ? NULL : xstrdup(PQgetvalue(r, i, 2));
        a->ev = stored_event_new(pos, PQgetvalue(r, i, 4), h->tenant, PQgetvalue(r, i, 5),
                                 PQgetvalue(r, i, 7), PQgetisnull(r, i, 6) ? NULL : PQgetvalue(r, i, 6),
                                 NULL, PQgetvalue(r, i, 8), (size_t)PQgetlength(r, i, 8));
        send_attempt(h, a);
    }
    strmap_dispose(&seen_keys, free);
    PQclear(r);
}

/* The window's pending events, in order, as far as the in-flight limit and the rate let. */
static void send_window(PGconn **conn, hook *h)
{
    for (int i = 0; i < h->w_len && !h->paused; i++) {
        slot *s = &h->window[(h->w_start + i) % WH_WINDOW];
        if (s->state != SLOT_PENDING) continue;
        if (h->by_key && key_busy(h, s->ev->stream, s->ev->key)) {
            if (hold_back(conn, h, s->ev)) s->state = SLOT_DONE;
            continue;
        }
        if (h->in_flight >= WH_IN_FLIGHT || !take_token(h)) break;
        s->state = SLOT_IN_FLIGHT;
        send_attempt(h, attempt_from_event(h, s->ev));
    }
}

/* The checkpoint moves over the done events at the front of the window. */
static void advance(hook *h)
{
    while (h->w_len && h->window[h->w_start].state == SLOT_DONE) {
        slot *s = &h->window[h->w_start];
        h->checkpoint = s->ev->position;
        stored_event_unref(s->ev);
        s->ev = NULL;
        h->w_start = (h->w_start + 1) % WH_WINDOW;
        h->w_len--;
    }
    if (!h->w_len && h->cursor > h->checkpoint) h->checkpoint = h->cursor;
    if (h->checkpoint != h->saved_checkpoint) h->dirty = true;
}

static void collect(PGconn **conn)
{
    int running = 0, left = 0;
    curl_multi_perform(multi, &running);
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        attempt *a = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&a);
        if (a) finish(conn, a, msg->data.result);
    }
}

static void publish_gauges(void)
{
    long long head = hub_head();
    pthread_mutex_lock(&metrics_lock);
    for (hook *h = hooks; h; h = h->next) {
        hook_metrics *m = metrics_of_locked(h->tenant, h->name);
        if (!m) continue;
        m->present = true;
        m->paused = h->paused;
        m->lag = head > h->checkpoint ? head - h->checkpoint : 0;
    }
    pthread_mutex_unlock(&metrics_lock);
}

/* Ends every attempt in flight (leadership lost or stopping): their events are delivered
 * again from the checkpoint by whoever leads next. */
static void drop_all(void)
{
    if (leading) live_feed_stop(&feed);
    leading = feed_live = false;
    while (attempts) attempt_free(attempts);
    while (hooks) {
        hook *h = hooks;
        hooks = h->next;
        hook_free(h);
    }
    atomic_store(&have_hooks, false);
}

/* The tail thread, when the feed stops being empty: the delivery loop wakes at once, when
 * there is a webhook to deliver to (without one it drains the feed on its 20 ms tick; a
 * wake-up per committed batch cost a system call each). */
static void wake_loop(void *m)
{
    if (atomic_load(&have_hooks)) curl_multi_wakeup(m);
}

static void *delivery_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL;
    bool leader = false;
    long long reload_at = 0, save_at = 0;
    while (!worker_stopping(&runner)) {
        if (!conn || !leader) {
            if (!conn && !(conn = db_connect(cfg->database_url, "webhooks"))) {
                usleep(500 * 1000);
                continue;
            }
            PGresult *l = db_exec(&conn, "SELECT pg_try_advisory_lock(" LOCK_WEBHOOKS ")", 0, NULL,
                                  WH_TIMEOUT_MS);
            leader = db_ok(l) && PQgetvalue(l, 0, 0)[0] == 't';
            PQclear(l);
            if (!leader) {
                usleep(500 * 1000);
                continue;
            }
            PGresult *li = db_exec(&conn, "LISTEN " WH_CHANNEL, 0, NULL, WH_TIMEOUT_MS);
            PQclear(li);
            log_info("webhooks", "this instance delivers webhooks", NULL);
            live_feed_start(&feed);
            leading = true;
            reload_at = 0;
        }
        long long now = time_mono_ms();
        if (now >= reload_at) {
            reload(&conn);
            reload_at = now + WH_RELOAD_MS;
        }
        take_live();
        if (conn) read_events(&conn);
        if (definitions_changed(&conn)) {
            reload(&conn);
            reload_at = now + WH_RELOAD_MS;
        }
        for (hook *h = hooks; h && conn; h = h->next) {
            if (!h->seen || h->paused) continue;
            send_retries(&conn, h);
            send_window(&conn, h);
        }
        collect(&conn);
        for (hook *h = hooks; h; h = h->next) advance(h);
        if (now >= save_at && conn) {
            for (hook *h = hooks; h; h = h->next) save(&conn, h, NULL);
            publish_gauges();
            save_at = now + WH_SAVE_MS;
        }
        int numfds = 0;
        curl_multi_poll(multi, NULL, 0, WH_POLL_MS, &numfds);
        if (!conn) { /* PostgreSQL went away: so did the lock */
            leader = false;
            drop_all();
        }
    }
    for (hook *h = hooks; h && conn; h = h->next) {
        advance(h);
        save(&conn, h, NULL);
    }
    drop_all();
    PQfinish(conn);
    return NULL;
}

int webhook_delivery_start(const sluice_config *c)
{
    cfg = c;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return -1;
    multi = curl_multi_init();
    if (!multi) return -1;
    live_feed_init(&feed, WH_FEED, wake_loop, multi);
    return worker_start(&runner, delivery_main);
}

void webhook_delivery_stop(void)
{
    worker_stop(&runner);
    live_feed_dispose(&feed);
    if (multi) curl_multi_cleanup(multi);
    multi = NULL;
    curl_global_cleanup();
    pthread_mutex_lock(&metrics_lock);
    if (metrics_ready) strmap_dispose(&metrics_map, free);
    metrics_ready = false;
    pthread_mutex_unlock(&metrics_lock);
}
