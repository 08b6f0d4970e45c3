/*
 * relay_lag.c — owns the Redis side of the durable-publish benchmark (bench/run.sh): a
 * consumer that reads the relay's stream with blocking XREAD, as a worker would, and measures
 * for every entry the relay lag = the moment the entry reached this consumer - the event's
 * `time` (which Sluice sets when the commit storing the event starts, so the lag includes
 * that commit: it is an upper bound on commit -> Redis).
 *
 * Why a C client: it shares the two cores with wrk, Sluice, PostgreSQL and Redis, so it must
 * be cheap; hiredis is already one of Sluice's build dependencies.
 *
 * Usage: bench-relay-lag URL KEY AFTER_POSITION CTL_FILE
 *   URL             redis://host:port[/db] or unix:///path
 *   KEY             the stream (every event of the benchmark is in it)
 *   AFTER_POSITION  reads the entries after <AFTER_POSITION>-0
 * Prints "READY" once its first read is issued. On SIGUSR1 it reads a position N from
 * CTL_FILE and, once it has read the entry at N or later, prints one line for the entries
 * read since the previous report,
 *   LAG phase=K n=COUNT p50_ms=.. p99_ms=.. max_ms=.. first=POS last=POS missing=M extra=E
 * (missing: positions skipped; extra: entries at or before one already read), then starts the
 * next phase. SIGTERM or SIGINT ends it.
 */
#define _GNU_SOURCE
#include <hiredis.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t report_asked, stop_asked;

static void on_usr1(int sig)
{
    (void)sig;
    report_asked = 1;
}

static void on_stop(int sig)
{
    (void)sig;
    stop_asked = 1;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* The event's top-level "time" (the last one in the row: `data` comes before it), in ms since
 * the epoch; -1 when absent. */
static double event_time_ms(const char *json)
{
    const char *p = NULL, *q = json;
    while ((q = strstr(q, "\"time\":\""))) p = q++;
    if (!p) return -1;
    struct tm tm = {0};
    int ms = 0;
    if (sscanf(p + 8, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) * 1000.0 + ms;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double *lag;
    size_t n, cap;
    long long first, last, missing, extra;
} phase;

static void phase_add(phase *ph, long long pos, double lag)
{
    if (ph->n == ph->cap) {
        ph->cap = ph->cap ? ph->cap * 2 : 65536;
        ph->lag = realloc(ph->lag, ph->cap * sizeof *ph->lag);
        if (!ph->lag) {
            fprintf(stderr, "relay-lag: out of memory\n");
            exit(1);
        }
    }
    ph->lag[ph->n++] = lag;
    if (ph->first == 0) ph->first = pos;
}

static void phase_report(phase *ph, int k)
{
    double p50 = 0, p99 = 0, max = 0;
    if (ph->n) {
        qsort(ph->lag, ph->n, sizeof *ph->lag, cmp_double);
        p50 = ph->lag[(ph->n - 1) / 2];
        p99 = ph->lag[(size_t)((double)(ph->n - 1) * 0.99)];
        max = ph->lag[ph->n - 1];
    }
    printf("LAG phase=%d n=%zu p50_ms=%.1f p99_ms=%.1f max_ms=%.1f first=%lld last=%lld "
           "missing=%lld extra=%lld\n",
           k, ph->n, p50, p99, max, ph->first, ph->last, ph->missing, ph->extra);
    fflush(stdout);
    ph->n = 0;
    ph->first = 0;
    ph->missing = ph->extra = 0;
}

static redisContext *connect_url(const char *url)
{
    struct timeval tv = {5, 0};
    if (strncmp(url, "unix://", 7) == 0) return redisConnectUnixWithTimeout(url + 7, tv);
    if (strncmp(url, "redis://", 8) != 0) return NULL;
    char host[256];
    const char *h = url + 8, *at = strchr(h, '@');
    if (at) h = at + 1; /* no AUTH: the benchmark's Redis is the private one */
    size_t len = strcspn(h, ":/");
    if (len == 0 || len >= sizeof host) return NULL;
    memcpy(host, h, len);
    host[len] = '\0';
    int port = h[len] == ':' ? atoi(h + len + 1) : 6379;
    return redisConnectWithTimeout(host, port, tv);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s URL KEY AFTER_POSITION CTL_FILE\n", argv[0]);
        return 2;
    }
    const char *key = argv[2], *ctl = argv[4];
    long long last = atoll(argv[3]), target = -1;
    struct sigaction sa = {0};
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    redisContext *r = connect_url(argv[1]);
    if (!r || r->err) {
        fprintf(stderr, "relay-lag: cannot connect to %s: %s\n", argv[1],
                r ? r->errstr : "bad URL");
        return 1;
    }
    struct timeval rt = {5, 0};
    redisSetTimeout(r, rt);
    phase ph = {0};
    int k = 1;
    bool ready = false;
    while (!stop_asked) {
        char after[32];
        snprintf(after, sizeof after, "%lld-0", last);
        if (!ready) {
            printf("READY\n");
            fflush(stdout);
            ready = true;
        }
        redisReply *rep = redisCommand(r, "XREAD COUNT 1000 BLOCK 100 STREAMS %s %s", key, after);
        double arrived = now_ms();
        if (!rep) {
            fprintf(stderr, "relay-lag: redis: %s\n", r->errstr);
            return 1;
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "relay-lag: redis: %s\n", rep->str);
            return 1;
        }
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
            rep->element[0]->elements == 2) {
            redisReply *entries = rep->element[0]->element[1];
            for (size_t i = 0; i < entries->elements; i++) {
                redisReply *e = entries->element[i];
                long long pos = atoll(e->element[0]->str);
                redisReply *kv = e->element[1];
                const char *ev = NULL;
                for (size_t j = 0; j + 1 < kv->elements; j += 2)
                    if (strcmp(kv->element[j]->str, "event") == 0) ev = kv->element[j + 1]->str;
                double t = ev ? event_time_ms(ev) : -1;
                if (t < 0) {
                    fprintf(stderr, "relay-lag: entry %s has no event time\n", e->element[0]->str);
                    return 1;
                }
                if (pos <= last) ph.extra++;
                else ph.missing += pos - last - 1;
                phase_add(&ph, pos, arrived - t);
                if (pos > last) last = pos;
                ph.last = last;
            }
        }
        freeReplyObject(rep);
        if (report_asked) {
            report_asked = 0;
            FILE *f = fopen(ctl, "r");
            if (!f || fscanf(f, "%lld", &target) != 1) target = -1;
            if (f) fclose(f);
        }
        if (target >= 0 && last >= target) {
            phase_report(&ph, k++);
            target = -1;
        }
    }
    free(ph.lag);
    redisFree(r);
    return 0;
}
