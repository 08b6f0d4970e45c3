/*
 * bench/fanout/client.c — the WebSocket fan-out load client (bench/fanout/run.sh drives it).
 *
 * Why C with libwebsockets: the client shares the machine's two cores with Sluice, and at
 * 200,000 deliveries/s a JavaScript client would spend more CPU than the server it measures.
 * One lws service thread holds every subscriber socket; publisher threads POST events over
 * plain keep-alive HTTP/1.1 (blocking sockets: a handful of requests per tick, no library
 * needed). Every event carries its send time (CLOCK_MONOTONIC, same process), a step number and
 * a sequence number in `data`; each subscriber parses the position and the send time out of
 * the frame without a JSON parser.
 *
 *   fanout-client --http-port P --ws-port W --token T --pid SERVER_PID
 *                 [--subs 2000] [--rates 100[,200,...]] [--seconds 10] [--search]
 *                 [--type bench.tick] [--pad 100]
 *
 * It prints `key=value` lines that run.sh turns into the table:
 *   IDLE subs=N rss_before_kib=… rss_after_kib=… per_conn_bytes=…
 *   STEP rate=R subs=N secs=S published=… failed=… eps=… expected=… received=… drops=…
 *        disorder=… closed=… p50_ms=… p99_ms=… max_ms=… rss_kib=… client_cpu=…
 * A step fails when p99 >= 100 ms or anything was dropped; with --search the first rate is the
 * target step, and the rates after it are the search, which stops at its first failing step.
 */
#define _GNU_SOURCE
#include <libwebsockets.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_STEPS 32
#define HIST_FINE 1000    /* 10 µs buckets up to 10 ms */
#define HIST_COARSE 60000 /* then 1 ms buckets up to 70 s */
#define HIST_N (HIST_FINE + HIST_COARSE)
#define MAX_PENDING_CONNECTS 64
#define PUBLISHERS 4
#define TICK_NS 10000000LL /* one POST per 10 ms across all publishers */

typedef enum { C_NEW, C_CONNECTING, C_OPEN, C_SUBSCRIBED, C_CLOSED, C_FAILED } cstate;

typedef struct conn {
    struct lws *wsi;
    cstate state;
    bool sub_sent;
    long long last_pos;
    unsigned recv[MAX_STEPS];
    int close_code;
    char *frag;
    size_t frag_len, frag_cap;
} conn;

/* options */
static int http_port, ws_port, n_subs = 2000, secs = 10, pad_len = 100;
static int server_pid;
static const char *token, *ev_type = "bench.tick";
static int rates[MAX_STEPS], n_rates;
static bool search_mode;

/* state shared between the lws thread and the control thread */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static conn *conns;
static int n_subscribed, n_closed, n_failed, n_pending;
static unsigned long long disorder;
static uint32_t *hist[MAX_STEPS];
static unsigned long long hist_count[MAX_STEPS], hist_max_us[MAX_STEPS];
static atomic_bool want_connect, quit;
static struct lws_context *ctx;
static char first_error[300];

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &v) == 1) break;
    fclose(f);
    return v;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds of a process (utime + stime from /proc/PID/stat), or of its busiest thread. */
static double proc_cpu(const char *statpath)
{
    char buf[1024];
    FILE *f = fopen(statpath, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    unsigned long long ut = 0, st = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

#define MAX_TASKS 256
typedef struct { int tid; double cpu; } task_cpu;

static int server_tasks(task_cpu *out)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", server_pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < MAX_TASKS) {
        if (e->d_name[0] == '.') continue;
        char sp[300];
        snprintf(sp, sizeof sp, "/proc/%d/task/%s/stat", server_pid, e->d_name);
        out[n].tid = atoi(e->d_name);
        out[n].cpu = proc_cpu(sp);
        n++;
    }
    closedir(d);
    return n;
}

/* Finds "key": in [p, end) and parses the integer after it (jsonb prints ": " with a space). */
static bool find_int(const char *p, const char *end, const char *key, long long *out)
{
    size_t kl = strlen(key);
    const char *q = memmem(p, (size_t)(end - p), key, kl);
    if (!q) return false;
    q += kl;
    while (q < end && (*q == ' ' || *q == ':')) q++;
    if (q >= end) return false;
    char *e = NULL;
    *out = strtoll(q, &e, 10);
    return e != q;
}

static void record(int step, long long us)
{
    if (step < 0 || step >= MAX_STEPS || !hist[step]) return;
    if (us < 0) us = 0;
    size_t b = us < 10000 ? (size_t)(us / 10) : HIST_FINE + (size_t)((us - 10000) / 1000);
    if (b >= HIST_N) b = HIST_N - 1;
    hist[step][b]++;
    hist_count[step]++;
    if ((unsigned long long)us > hist_max_us[step]) hist_max_us[step] = (unsigned long long)us;
}

static double hist_quantile(int step, double q)
{
    unsigned long long n = hist_count[step], want = (unsigned long long)(q * (double)n), seen = 0;
    if (!n) return 0;
    if (want >= n) want = n - 1;
    for (size_t b = 0; b < HIST_N; b++) {
        seen += hist[step][b];
        if (seen > want) {
            double lo_us = b < HIST_FINE ? b * 10.0 : 10000.0 + (b - HIST_FINE) * 1000.0;
            double w = b < HIST_FINE ? 10.0 : 1000.0;
            return (lo_us + w) / 1000.0; /* upper edge, ms */
        }
    }
    return hist_max_us[step] / 1000.0;
}

static void on_message(conn *c, const char *m, size_t n)
{
    long long t_recv = now_ns();
    const char *end = m + n;
    if (n > 12 && memcmp(m, "{\"op\":\"event\"", 13) == 0) {
        long long pos = 0, t = 0, step = -1;
        if (!find_int(m, end, "\"position\"", &pos) || !find_int(m, end, "\"bench_t\"", &t) ||
            !find_int(m, end, "\"bench_s\"", &step))
            return;
        pthread_mutex_lock(&mu);
        if (pos <= c->last_pos) disorder++;
        c->last_pos = pos;
        if (step >= 0 && step < MAX_STEPS) c->recv[step]++;
        record((int)step, (t_recv - t) / 1000);
        pthread_mutex_unlock(&mu);
    } else if (memmem(m, n, "\"subscribed\"", 12)) {
        pthread_mutex_lock(&mu);
        if (c->state == C_OPEN) {
            c->state = C_SUBSCRIBED;
            n_subscribed++;
        }
        pthread_mutex_unlock(&mu);
    } else if (memmem(m, n, "\"error\"", 7)) {
        pthread_mutex_lock(&mu);
        if (!first_error[0]) snprintf(first_error, sizeof first_error, "%.*s", (int)(n > 250 ? 250 : n), m);
        pthread_mutex_unlock(&mu);
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (!c) return 0;
        pthread_mutex_lock(&mu);
        if (!first_error[0])
            snprintf(first_error, sizeof first_error, "connect: %s", in ? (const char *)in : "?");
        c->state = C_FAILED;
        c->wsi = NULL;
        n_failed++;
        n_pending--;
        pthread_mutex_unlock(&mu);
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        pthread_mutex_lock(&mu);
        c->state = C_OPEN;
        n_pending--;
        pthread_mutex_unlock(&mu);
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!c->sub_sent) {
            char msg[LWS_PRE + 256];
            int n = snprintf(msg + LWS_PRE, sizeof msg - LWS_PRE,
                             "{\"op\":\"subscribe\",\"id\":\"b\",\"types\":[\"%s\"]}", ev_type);
            if (lws_write(wsi, (unsigned char *)msg + LWS_PRE, (size_t)n, LWS_WRITE_TEXT) < n) return -1;
            c->sub_sent = true;
        }
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        bool first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi);
        if (first && final) {
            on_message(c, in, len);
            return 0;
        }
        if (first) c->frag_len = 0;
        if (c->frag_len + len > c->frag_cap) {
            c->frag_cap = (c->frag_len + len) * 2;
            c->frag = realloc(c->frag, c->frag_cap);
            if (!c->frag) abort();
        }
        memcpy(c->frag + c->frag_len, in, len);
        c->frag_len += len;
        if (final) on_message(c, c->frag, c->frag_len);
        return 0;
    }
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c && len >= 2) c->close_code = ((unsigned char *)in)[0] << 8 | ((unsigned char *)in)[1];
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!c) return 0;
        pthread_mutex_lock(&mu);
        if (c->state == C_SUBSCRIBED) n_subscribed--;
        c->state = C_CLOSED;
        c->wsi = NULL;
        n_closed++;
        if (!first_error[0]) snprintf(first_error, sizeof first_error, "a subscriber was closed (code %d)", c->close_code);
        pthread_mutex_unlock(&mu);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (atomic_load(&want_connect)) {
            /* connect in waves so the server's accept backlog never overflows */
            static char path[600];
            snprintf(path, sizeof path, "/v1/ws?token=%s", token);
            for (int i = 0; i < n_subs; i++) {
                pthread_mutex_lock(&mu);
                bool go = conns[i].state == C_NEW && n_pending < MAX_PENDING_CONNECTS;
                if (go) {
                    conns[i].state = C_CONNECTING;
                    n_pending++;
                }
                bool full = n_pending >= MAX_PENDING_CONNECTS;
                pthread_mutex_unlock(&mu);
                if (go) {
                    struct lws_client_connect_info ci;
                    memset(&ci, 0, sizeof ci);
                    ci.context = ctx;
                    ci.address = "127.0.0.1";
                    ci.port = ws_port;
                    ci.path = path;
                    ci.host = "127.0.0.1";
                    ci.origin = "127.0.0.1";
                    ci.userdata = &conns[i];
                    ci.local_protocol_name = "bench";
                    ci.pwsi = &conns[i].wsi;
                    if (!lws_client_connect_via_info(&ci)) {
                        pthread_mutex_lock(&mu);
                        conns[i].state = C_FAILED;
                        n_failed++;
                        n_pending--;
                        pthread_mutex_unlock(&mu);
                    }
                }
                if (full) break;
            }
        }
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"bench", callback, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *lws_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&quit)) lws_service(ctx, 0);
    return NULL;
}

/* ------------------------------------------------------------------ publishing */

typedef struct pub_arg {
    int id, step, per_tick;
    long long tick_ns;
    long long t0, t_end;
    unsigned long long published, failed;
    char first_error[200];
} pub_arg;

static int http_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One POST on a keep-alive connection; returns the HTTP status or -1. */
static int http_post(int *fd, const char *body, size_t blen)
{
    static __thread char req[512];
    static __thread char resp[65536];
    for (int attempt = 0; attempt < 2; attempt++) {
        if (*fd < 0 && (*fd = http_connect()) < 0) return -1;
        int hl = snprintf(req, sizeof req,
                          "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                          "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                          token, blen);
        if (send(*fd, req, (size_t)hl, MSG_NOSIGNAL) != hl ||
            send(*fd, body, blen, MSG_NOSIGNAL) != (ssize_t)blen) {
            close(*fd);
            *fd = -1;
            continue;
        }
        size_t got = 0;
        char *hdr_end = NULL;
        while (!hdr_end) {
            ssize_t r = recv(*fd, resp + got, sizeof resp - 1 - got, 0);
            if (r <= 0) break;
            got += (size_t)r;
            resp[got] = '\0';
            hdr_end = strstr(resp, "\r\n\r\n");
        }
        if (!hdr_end) {
            close(*fd);
            *fd = -1;
            if (got == 0) continue; /* the server closed an idle keep-alive: retry once */
            return -1;
        }
        int status = 0;
        sscanf(resp, "HTTP/1.%*d %d", &status);
        long clen = 0;
        const char *cl = strcasestr(resp, "\r\nContent-Length:");
        if (cl) clen = strtol(cl + 17, NULL, 10);
        size_t have = got - (size_t)(hdr_end + 4 - resp);
        while ((long)have < clen) {
            ssize_t r = recv(*fd, resp, sizeof resp - 1, 0);
            if (r <= 0) {
                close(*fd);
                *fd = -1;
                return -1;
            }
            have += (size_t)r;
        }
        if (strcasestr(resp, "\r\nConnection: close")) {
            close(*fd);
            *fd = -1;
        }
        return status;
    }
    return -1;
}

static void *publisher(void *arg)
{
    pub_arg *p = arg;
    int fd = -1;
    size_t cap = (size_t)p->per_tick * (size_t)(pad_len + 200) + 64;
    char *body = malloc(cap);
    char *pad = malloc((size_t)pad_len + 1);
    memset(pad, 'x', (size_t)pad_len);
    pad[pad_len] = '\0';
    unsigned long long seq = 0;
    for (long long k = p->id;; k += PUBLISHERS) {
        long long due = p->t0 + k * p->tick_ns;
        if (due >= p->t_end) break;
        long long now = now_ns();
        if (due > now) {
            struct timespec ts = {(due - now) / 1000000000LL, (due - now) % 1000000000LL};
            nanosleep(&ts, NULL);
        }
        long long t = now_ns();
        size_t n = 0;
        if (p->per_tick > 1) body[n++] = '[';
        for (int i = 0; i < p->per_tick; i++) {
            n += (size_t)snprintf(body + n, cap - n,
                                  "%s{\"type\":\"%s\",\"data\":{\"bench_t\":%lld,\"bench_s\":%d,"
                                  "\"bench_i\":%llu,\"pad\":\"%s\"}}",
                                  i ? "," : "", ev_type, t, p->step, seq++, pad);
        }
        if (p->per_tick > 1) body[n++] = ']';
        int st = http_post(&fd, body, n);
        if (st == 201) {
            p->published += (unsigned long long)p->per_tick;
        } else {
            p->failed += (unsigned long long)p->per_tick;
            if (!p->first_error[0]) snprintf(p->first_error, sizeof p->first_error, "POST answered %d", st);
        }
    }
    if (fd >= 0) close(fd);
    free(body);
    free(pad);
    return NULL;
}

/* ------------------------------------------------------------------ control */

static int alive_subscribed(void)
{
    pthread_mutex_lock(&mu);
    int n = n_subscribed;
    pthread_mutex_unlock(&mu);
    return n;
}

static bool run_step(int step, int rate)
{
    /* 100 ticks/s in all (one POST each, a batch above 100 events/s); fewer below */
    int per_tick = rate >= 100 ? rate / 100 : 1;
    long long tick_ns = rate >= 100 ? TICK_NS : 1000000000LL / rate;
    hist[step] = calloc(HIST_N, sizeof(uint32_t));
    bool *alive = calloc((size_t)n_subs, sizeof(bool));
    pthread_mutex_lock(&mu);
    int subs_at_start = 0;
    for (int i = 0; i < n_subs; i++)
        if (conns[i].state == C_SUBSCRIBED) alive[i] = true, subs_at_start++;
    pthread_mutex_unlock(&mu);

    pub_arg args[PUBLISHERS];
    pthread_t th[PUBLISHERS];
    long long t0 = now_ns() + 50000000LL;
    double cpu0 = cpu_seconds();
    char sstat[64];
    snprintf(sstat, sizeof sstat, "/proc/%d/stat", server_pid);
    double scpu0 = proc_cpu(sstat);
    static task_cpu tasks0[MAX_TASKS], tasks1[MAX_TASKS];
    int nt0 = server_tasks(tasks0);
    for (int i = 0; i < PUBLISHERS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].id = i;
        args[i].step = step;
        args[i].per_tick = per_tick;
        args[i].tick_ns = tick_ns;
        args[i].t0 = t0;
        args[i].t_end = t0 + (long long)secs * 1000000000LL;
        pthread_create(&th[i], NULL, publisher, &args[i]);
    }
    long rss_peak = 0;
    for (int i = 0; i < PUBLISHERS; i++) {
        for (;;) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            if (pthread_timedjoin_np(th[i], NULL, &ts) == 0) break;
            long r = rss_kib(server_pid);
            if (r > rss_peak) rss_peak = r;
        }
    }
    long long t_pub_end = now_ns();
    double scpu = proc_cpu(sstat) - scpu0;
    int nt1 = server_tasks(tasks1);
    double busiest = 0;
    for (int i = 0; i < nt1; i++)
        for (int j = 0; j < nt0; j++)
            if (tasks1[i].tid == tasks0[j].tid && tasks1[i].cpu - tasks0[j].cpu > busiest)
                busiest = tasks1[i].cpu - tasks0[j].cpu;
    double pub_wall = (t_pub_end - t0) / 1e9;
    unsigned long long published = 0, failed = 0;
    for (int i = 0; i < PUBLISHERS; i++) {
        published += args[i].published;
        failed += args[i].failed;
        if (args[i].first_error[0]) fprintf(stderr, "fanout-client: publisher %d: %s\n", i, args[i].first_error);
    }
    /* drain: wait until every subscriber alive at the start has the step's events, or nothing
     * more has arrived for 5 s (what is still missing then counts as dropped); ≤ 180 s */
    unsigned long long expected = published * (unsigned long long)subs_at_start, received = 0, prev = 0;
    long long last_progress = now_ns();
    for (int w = 0; w < 1800; w++) {
        received = 0;
        pthread_mutex_lock(&mu);
        for (int i = 0; i < n_subs; i++)
            if (alive[i]) received += conns[i].recv[step];
        pthread_mutex_unlock(&mu);
        if (received >= expected) break;
        if (received != prev) prev = received, last_progress = now_ns();
        else if (now_ns() - last_progress > 5000000000LL) break;
        usleep(100000);
    }
    double cpu = cpu_seconds() - cpu0;
    double wall = (now_ns() - t0) / 1e9;
    pthread_mutex_lock(&mu);
    double p50 = hist_quantile(step, 0.50), p99 = hist_quantile(step, 0.99);
    double mx = hist_max_us[step] / 1000.0;
    int closed = n_closed;
    unsigned long long dis = disorder;
    pthread_mutex_unlock(&mu);
    unsigned long long drops = expected > received ? expected - received : 0;
    double eps = published / ((t_pub_end - t0) / 1e9);
    long r = rss_kib(server_pid);
    if (r > rss_peak) rss_peak = r;
    printf("STEP rate=%d subs=%d secs=%d published=%llu failed=%llu eps=%.1f expected=%llu "
           "received=%llu drops=%llu disorder=%llu closed=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f "
           "rss_kib=%ld client_cpu=%.0f%% server_cpu=%.0f%% server_thread_max=%.0f%%\n",
           rate, subs_at_start, secs, published, failed, eps, expected, received, drops, dis, closed,
           p50, p99, mx, rss_peak, 100.0 * cpu / wall, 100.0 * scpu / pub_wall, 100.0 * busiest / pub_wall);
    fflush(stdout);
    free(alive);
    return failed == 0 && drops == 0 && dis == 0 && p99 < 100.0 && subs_at_start == n_subs;
}

static void usage(void)
{
    fprintf(stderr, "usage: fanout-client --http-port P --ws-port W --token T --pid SERVER_PID "
                    "[--subs N] [--rates R1,R2,...] [--seconds S] [--search] [--type T] [--pad N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    const char *rates_arg = "100";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--search")) search_mode = true;
        else if (!v) usage();
        else if (!strcmp(a, "--http-port")) http_port = atoi(v), i++;
        else if (!strcmp(a, "--ws-port")) ws_port = atoi(v), i++;
        else if (!strcmp(a, "--token")) token = v, i++;
        else if (!strcmp(a, "--pid")) server_pid = atoi(v), i++;
        else if (!strcmp(a, "--subs")) n_subs = atoi(v), i++;
        else if (!strcmp(a, "--seconds")) secs = atoi(v), i++;
        else if (!strcmp(a, "--rates")) rates_arg = v, i++;
        else if (!strcmp(a, "--type")) ev_type = v, i++;
        else if (!strcmp(a, "--pad")) pad_len = atoi(v), i++;
        else usage();
    }
    if (!http_port || !ws_port || !token || !server_pid || n_subs < 1 || secs < 1) usage();
    char *ra = strdup(rates_arg), *save = NULL;
    for (char *t = strtok_r(ra, ",", &save); t && n_rates < MAX_STEPS; t = strtok_r(NULL, ",", &save))
        if (atoi(t) > 0) rates[n_rates++] = atoi(t);
    free(ra);
    if (!n_rates) usage();

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.fd_limit_per_thread = (unsigned)n_subs + 256;
    info.timeout_secs = 60;
    ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "fanout-client: lws_create_context failed\n");
        return 1;
    }
    conns = calloc((size_t)n_subs, sizeof *conns);

    long rss_before = rss_kib(server_pid);
    pthread_t lt;
    pthread_create(&lt, NULL, lws_thread, NULL);
    atomic_store(&want_connect, true);
    long long deadline = now_ns() + 120 * 1000000000LL;
    int last = -1;
    for (;;) {
        pthread_mutex_lock(&mu);
        int subs = n_subscribed, bad = n_failed + n_closed, pend = n_pending;
        pthread_mutex_unlock(&mu);
        if (subs + bad >= n_subs) break;
        if (now_ns() > deadline) break;
        if (pend < MAX_PENDING_CONNECTS) lws_cancel_service(ctx); /* open the next wave */
        if (subs / 500 != last / 500) {
            fprintf(stderr, "fanout-client: %d subscribed\n", subs);
            last = subs;
        }
        usleep(20000);
    }
    atomic_store(&want_connect, false);
    sleep(2); /* let the server settle before measuring */
    long rss_after = rss_kib(server_pid);
    int subs = alive_subscribed();
    printf("IDLE subs=%d failed=%d rss_before_kib=%ld rss_after_kib=%ld per_conn_bytes=%.0f\n", subs,
           n_failed + n_closed, rss_before, rss_after,
           subs > 0 ? (rss_after - rss_before) * 1024.0 / subs : 0.0);
    fflush(stdout);
    int rc = 0;
    if (subs < n_subs) {
        fprintf(stderr, "fanout-client: only %d of %d subscribers are up; first error: %s\n", subs, n_subs,
                first_error);
        rc = 1;
    } else {
        for (int s = 0; s < n_rates; s++) {
            bool ok = run_step(s, rates[s]);
            if (!ok && first_error[0]) fprintf(stderr, "fanout-client: %s\n", first_error);
            /* with --search the first rate is the target step: the search starts after it */
            if (!ok && search_mode && s > 0) break;
            sleep(1);
        }
    }
    atomic_store(&quit, true);
    lws_cancel_service(ctx);
    pthread_join(lt, NULL);
    lws_context_destroy(ctx);
    for (int i = 0; i < n_subs; i++) free(conns[i].frag);
    free(conns);
    for (int s = 0; s < MAX_STEPS; s++) free(hist[s]);
    return rc;
}
