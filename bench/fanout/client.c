/*
 * bench/fanout/client.c — the WebSocket fan-out load client (bench/fanout/run.sh drives it).
 *
 * Why C, and why its own WebSocket framing: the client shares the machine's two cores with
 * Sluice, and at 200,000 deliveries/s whatever it spends is taken from the server it
 * measures. A JavaScript client would spend more CPU than the server; libwebsockets 4.1's
 * client (Debian 12's) runs every received payload byte through its parser's state machine,
 * which took about two thirds of this client's CPU at that rate. So one thread holds every
 * subscriber socket in an epoll set and speaks the small part of RFC 6455 a subscriber needs:
 * the upgrade request, masked text frames out (subscribe, pong, close), and whole frames in,
 * parsed a header at a time. Publisher threads POST events over plain keep-alive HTTP/1.1
 * (blocking sockets: a handful of requests per tick). Every event carries its send time
 * (CLOCK_MONOTONIC, same process), a step number and a sequence number in `data`; each
 * subscriber reads only the position and those numbers out of the frame (no JSON parser).
 *
 *   fanout-client --http-port P --ws-port W --token T --pid SERVER_PID
 *                 [--subs 2000] [--rates 100[,200,...]] [--seconds 10] [--search]
 *                 [--type bench.tick] [--pad 100] [--where JSON]
 *
 * --where gives every subscription that `where` list (JSON text, sent as is), so the same
 * run measures what the server's filter costs per delivery (run.sh picks conditions every
 * event meets, so the deliveries are the same as without it).
 *
 * It prints `key=value` lines that run.sh turns into the table:
 *   IDLE subs=N rss_before_kib=… rss_after_kib=… per_conn_bytes=…
 *   STEP rate=R subs=N secs=S published=… failed=… eps=… expected=… received=… drops=…
 *        disorder=… closed=… p50_ms=… p99_ms=… max_ms=… rss_kib=… client_cpu=…
 *        server_cpu=… server_thread_max=… server_cpu_s=… (the server's CPU seconds while
 *        publishing)
 * A step fails when p99 >= 100 ms or anything was dropped; with --search the first rate is the
 * target step, and the rates after it are the search, which stops at its first failing step.
 */
#define _GNU_SOURCE
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
#include <sys/epoll.h>
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

#define RX_INITIAL 16384 /* per subscriber; grown for a larger frame */

typedef enum { C_NEW, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_SUBSCRIBED, C_CLOSED, C_FAILED } cstate;

typedef struct conn {
    int fd;                  /* -1 when none; receiver thread */
    cstate state;            /* {mu} */
    long long last_pos;      /* {mu} */
    unsigned recv[MAX_STEPS]; /* {mu} events received per step */
    int close_code;          /* receiver thread: from the server's close frame */
    unsigned char *rx;       /* receiver thread: bytes received, not yet parsed */
    size_t rx_len, rx_cap;
    char *frag;              /* receiver thread: a fragmented message being assembled */
    size_t frag_len, frag_cap;
} conn;

/* options */
static int http_port, ws_port, n_subs = 2000, secs = 10, pad_len = 100;
static int server_pid;
static const char *token, *ev_type = "bench.tick";
static const char *where_json; /* --where: every subscription's `where` (JSON text), or NULL */
static int rates[MAX_STEPS], n_rates;
static bool search_mode;

/* state shared between the receiver thread and the control thread */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static conn *conns;
static int n_subscribed, n_closed, n_failed, n_pending;
static unsigned long long disorder;
static uint32_t *hist[MAX_STEPS];
static unsigned long long hist_count[MAX_STEPS], hist_max_us[MAX_STEPS];
static atomic_bool want_connect, quit;
static int epfd = -1;
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

/* ------------------------------------------------------------------ subscribers */

static void set_error(const char *what, const char *detail)
{
    pthread_mutex_lock(&mu);
    if (!first_error[0]) snprintf(first_error, sizeof first_error, "%s: %s", what, detail);
    pthread_mutex_unlock(&mu);
}

/* Receiver thread: the connection is over (closed by the server, failed, or broken). */
static void conn_end(conn *c, bool failed, const char *why)
{
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    pthread_mutex_lock(&mu);
    if (c->state == C_CONNECTING || c->state == C_HANDSHAKE) n_pending--;
    if (c->state == C_SUBSCRIBED) n_subscribed--;
    if (failed) {
        c->state = C_FAILED;
        n_failed++;
    } else {
        c->state = C_CLOSED;
        n_closed++;
    }
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, "%s (close code %d)", why, c->close_code);
    pthread_mutex_unlock(&mu);
}

/* Sends one masked frame (RFC 6455 5.3: a client masks every frame) of at most 256 bytes.
 * Such a frame fits the socket's empty buffer, so a short write counts as a failure.
 * Returns 0 or -1. */
static int ws_send(conn *c, int opcode, const void *data, size_t len)
{
    unsigned char f[8 + 256];
    if (len > 256) return -1;
    size_t hl = 0;
    f[hl++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        f[hl++] = (unsigned char)(0x80 | len);
    } else {
        f[hl++] = 0x80 | 126;
        f[hl++] = (unsigned char)(len >> 8);
        f[hl++] = (unsigned char)len;
    }
    uint32_t r = (uint32_t)random();
    unsigned char *mask = f + hl;
    memcpy(mask, &r, 4);
    hl += 4;
    for (size_t i = 0; i < len; i++) f[hl + i] = ((const unsigned char *)data)[i] ^ mask[i & 3];
    ssize_t n = send(c->fd, f, hl + len, MSG_NOSIGNAL);
    return n == (ssize_t)(hl + len) ? 0 : -1;
}

static void base64_16(const unsigned char in[16], char out[25])
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < 15; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = t[v >> 18 & 63], out[o++] = t[v >> 12 & 63], out[o++] = t[v >> 6 & 63];
        out[o++] = t[v & 63];
    }
    unsigned v = (unsigned)in[15] << 16;
    out[o++] = t[v >> 18 & 63], out[o++] = t[v >> 12 & 63], out[o++] = '=', out[o++] = '=';
    out[o] = '\0';
}

/* Receiver thread: opens connections while fewer than MAX_PENDING_CONNECTS are in flight
 * (waves, so the server's accept backlog never overflows). */
static void open_wave(void)
{
    for (int i = 0; i < n_subs; i++) {
        pthread_mutex_lock(&mu);
        bool full = n_pending >= MAX_PENDING_CONNECTS;
        bool go = !full && conns[i].state == C_NEW;
        if (go) {
            conns[i].state = C_CONNECTING;
            n_pending++;
        }
        pthread_mutex_unlock(&mu);
        if (full) return;
        if (!go) continue;
        conn *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ws_port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        if (c->fd < 0 || (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) ||
            epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            set_error("connect", strerror(errno));
            conn_end(c, true, "connect failed");
        }
    }
}

/* Receiver thread: the connect finished; send the upgrade request. */
static void on_connected(conn *c)
{
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
        set_error("connect", strerror(err ? err : errno));
        conn_end(c, true, "connect failed");
        return;
    }
    unsigned char nonce[16];
    for (int i = 0; i < 16; i++) nonce[i] = (unsigned char)random();
    char key[25], req[1024];
    base64_16(nonce, key);
    int n = snprintf(req, sizeof req,
                     "GET /v1/ws?token=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "Origin: http://127.0.0.1\r\n\r\n",
                     token, ws_port, key);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (n >= (int)sizeof req || send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n ||
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        conn_end(c, true, "could not send the upgrade request");
        return;
    }
    pthread_mutex_lock(&mu);
    c->state = C_HANDSHAKE;
    pthread_mutex_unlock(&mu);
}

/* Receiver thread: the upgrade answer is in rx. Returns bytes consumed, 0 for "not yet", -1
 * when refused. */
static long on_handshake(conn *c)
{
    const unsigned char *end = memmem(c->rx, c->rx_len, "\r\n\r\n", 4);
    if (!end) return c->rx_len > 8192 ? -1 : 0;
    if (c->rx_len < 12 || memcmp(c->rx, "HTTP/1.1 101", 12) != 0) {
        char line[120];
        size_t l = 0;
        while (l < c->rx_len && l < sizeof line - 1 && c->rx[l] != '\r') line[l] = (char)c->rx[l], l++;
        line[l] = '\0';
        set_error("upgrade refused", line);
        return -1;
    }
    char msg[4096];
    int n = where_json ? snprintf(msg, sizeof msg,
                                  "{\"op\":\"subscribe\",\"id\":\"b\",\"types\":[\"%s\"],\"where\":%s}",
                                  ev_type, where_json)
                       : snprintf(msg, sizeof msg, "{\"op\":\"subscribe\",\"id\":\"b\",\"types\":[\"%s\"]}",
                                  ev_type);
    if (n < 0 || (size_t)n >= sizeof msg) {
        set_error("subscribe", "the message is too long");
        return -1;
    }
    if (ws_send(c, 0x1, msg, (size_t)n) < 0) return -1;
    pthread_mutex_lock(&mu);
    c->state = C_OPEN;
    n_pending--;
    pthread_mutex_unlock(&mu);
    return (long)(end + 4 - c->rx);
}

/* Receiver thread: one whole frame from the server (which never masks). Returns -1 to end. */
static int on_frame(conn *c, int fin, int opcode, const unsigned char *p, size_t len)
{
    switch (opcode) {
    case 0x0: /* continuation */
    case 0x1: /* text */
    case 0x2: /* binary */
        if (opcode != 0 && fin && c->frag_len == 0) {
            on_message(c, (const char *)p, len);
            return 0;
        }
        if (opcode != 0) c->frag_len = 0;
        if (c->frag_len + len > c->frag_cap) {
            c->frag_cap = (c->frag_len + len) * 2;
            c->frag = realloc(c->frag, c->frag_cap);
            if (!c->frag) abort();
        }
        memcpy(c->frag + c->frag_len, p, len);
        c->frag_len += len;
        if (fin) {
            on_message(c, c->frag, c->frag_len);
            c->frag_len = 0;
        }
        return 0;
    case 0x8: /* close */
        if (len >= 2) c->close_code = p[0] << 8 | p[1];
        return -1;
    case 0x9: /* ping */
        return ws_send(c, 0xA, p, len);
    default: /* pong */
        return 0;
    }
}

/* Receiver thread: reads what the socket has and handles every whole frame in it. */
static void on_readable(conn *c)
{
    if (c->rx_cap - c->rx_len < 4096) {
        c->rx_cap = c->rx_cap ? c->rx_cap * 2 : RX_INITIAL;
        c->rx = realloc(c->rx, c->rx_cap);
        if (!c->rx) abort();
    }
    ssize_t r = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) {
        conn_end(c, false, "a subscriber was closed");
        return;
    }
    c->rx_len += (size_t)r;
    size_t off = 0;
    if (c->state == C_HANDSHAKE) {
        long n = on_handshake(c);
        if (n < 0) conn_end(c, true, "the WebSocket upgrade failed");
        if (n <= 0) return;
        off = (size_t)n;
    }
    while (c->rx_len - off >= 2) {
        const unsigned char *h = c->rx + off;
        size_t avail = c->rx_len - off, hl = 2, len = h[1] & 0x7f;
        if (h[1] & 0x80) {
            conn_end(c, false, "the server sent a masked frame");
            return;
        }
        if (len == 126) {
            if (avail < 4) break;
            len = (size_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 2; i < 10; i++) len = len << 8 | h[i];
            hl = 10;
        }
        if (avail < hl + len) {
            if (hl + len > c->rx_cap) { /* a frame larger than the buffer: make room */
                c->rx_cap = hl + len + 4096;
                memmove(c->rx, c->rx + off, avail);
                c->rx_len = avail;
                off = 0;
                c->rx = realloc(c->rx, c->rx_cap);
                if (!c->rx) abort();
            }
            break;
        }
        if (on_frame(c, h[0] & 0x80, h[0] & 0x0f, h + hl, len) < 0) {
            conn_end(c, false, "a subscriber was closed");
            return;
        }
        off += hl + len;
    }
    memmove(c->rx, c->rx + off, c->rx_len - off);
    c->rx_len -= off;
}

static void *receiver(void *arg)
{
    (void)arg;
    struct epoll_event evs[256];
    while (!atomic_load(&quit)) {
        if (atomic_load(&want_connect)) open_wave();
        int n = epoll_wait(epfd, evs, 256, 20);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c->fd < 0) continue; /* ended earlier in this batch */
            if (c->state == C_CONNECTING) on_connected(c);
            else on_readable(c);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ publishing */

typedef struct pub_arg {
    int id, step, rate, per_tick; /* per_tick: the most events one tick sends */
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
        /* at 100 ticks/s, tick k sends the events that bring the total to (k+1) x rate / 100 */
        int count = p->rate >= 100 ? (int)((k + 1) * p->rate / 100 - k * p->rate / 100) : 1;
        long long t = now_ns();
        size_t n = 0;
        if (count > 1) body[n++] = '[';
        for (int i = 0; i < count; i++) {
            n += (size_t)snprintf(body + n, cap - n,
                                  "%s{\"type\":\"%s\",\"data\":{\"bench_t\":%lld,\"bench_s\":%d,"
                                  "\"bench_i\":%llu,\"pad\":\"%s\"}}",
                                  i ? "," : "", ev_type, t, p->step, seq++, pad);
        }
        if (count > 1) body[n++] = ']';
        int st = http_post(&fd, body, n);
        if (st == 201) {
            p->published += (unsigned long long)count;
        } else {
            p->failed += (unsigned long long)count;
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
    int per_tick = rate >= 100 ? (rate + 99) / 100 : 1;
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
        args[i].rate = rate;
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
           "rss_kib=%ld client_cpu=%.0f%% server_cpu=%.0f%% server_thread_max=%.0f%% "
           "server_cpu_s=%.3f\n",
           rate, subs_at_start, secs, published, failed, eps, expected, received, drops, dis, closed,
           p50, p99, mx, rss_peak, 100.0 * cpu / wall, 100.0 * scpu / pub_wall, 100.0 * busiest / pub_wall,
           scpu);
    fflush(stdout);
    free(alive);
    return failed == 0 && drops == 0 && dis == 0 && p99 < 100.0 && subs_at_start == n_subs;
}

static void usage(void)
{
    fprintf(stderr, "usage: fanout-client --http-port P --ws-port W --token T --pid SERVER_PID "
                    "[--subs N] [--rates R1,R2,...] [--seconds S] [--search] [--type T] [--pad N] "
                    "[--where JSON]\n");
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
        else if (!strcmp(a, "--where")) where_json = v, i++;
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
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        perror("fanout-client: epoll_create1");
        return 1;
    }
    srandom((unsigned)now_ns());
    conns = calloc((size_t)n_subs, sizeof *conns);
    for (int i = 0; i < n_subs; i++) conns[i].fd = -1;

    long rss_before = rss_kib(server_pid);
    pthread_t lt;
    pthread_create(&lt, NULL, receiver, NULL);
    atomic_store(&want_connect, true);
    long long deadline = now_ns() + 120 * 1000000000LL;
    int last = -1;
    for (;;) {
        pthread_mutex_lock(&mu);
        int subs = n_subscribed, bad = n_failed + n_closed;
        pthread_mutex_unlock(&mu);
        if (subs + bad >= n_subs) break;
        if (now_ns() > deadline) break;
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
    pthread_join(lt, NULL);
    for (int i = 0; i < n_subs; i++) {
        if (conns[i].fd >= 0) close(conns[i].fd);
        free(conns[i].rx);
        free(conns[i].frag);
    }
    close(epfd);
    free(conns);
    for (int s = 0; s < MAX_STEPS; s++) free(hist[s]);
    return rc;
}
