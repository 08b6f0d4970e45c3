/*
 * bench/partitions/driver.c — the fixed-rate publisher of the append-latency curve
 * (bench/partitions/run.sh compiles it and runs it once per history size, against one sluice
 * it started). Owns the load and what is measured during it; nothing else uses it.
 *
 *   partitions-driver --port P --token T --run TAG --db DATABASE --pid SLUICE_PID
 *                     [--pg-pid POSTMASTER] [--redis-pid PID] [--rate 2000] [--conns 32]
 *                     [--seconds 20] [--warmup 5]
 *
 * Why a driver of its own, and in C: the question is how one append's latency changes with
 * the size of history, so the load must be the same at every size. wrk sends as fast as the
 * server answers (a faster server gets more load); this one is open-loop: event i is due at
 * t0 + i / rate whatever happened before. One thread holds --conns keep-alive HTTP/1.1
 * connections to 127.0.0.1 in an epoll set and wakes on a timerfd at each due time; a due
 * request that finds every connection busy waits in a FIFO for the next free one, and that
 * wait is part of its latency, so a stall of the server shows in the percentiles instead of
 * slowing the load down (no coordinated omission). It shares two cores with sluice and
 * PostgreSQL: a Node driver spent ~200 µs of CPU per request and fell tens of ms behind its
 * own schedule; this one a few µs.
 *
 * Each request POSTs one event (~600-byte envelope) as tenant `default`, in turn:
 *   0, 1  file.uploaded to its schema's stream, with a client `id` (a random UUID: the
 *         idempotency key event_ids checks and inserts at a random place);
 *   2     order.updated to stream `orders` with a `key` from the key space of the loaded
 *         history (run.sh: 'k<n>', n % 48 in 8..11, for tenant default in `orders`), so the
 *         appender looks up that key's newest version over the partitions; no client id;
 *   3     file.uploaded without a client id (Sluice makes a ULID).
 * Every event has a correlation_id, a user_id and a small metadata object.
 *
 * The first --warmup seconds are sent but not measured. Measured: every request of the next
 * --seconds; its latency runs from the moment it was taken off the schedule (at most a few
 * µs after it was due; the lateness is reported too) to the last byte of the answer. CPU
 * between the first measured request and the last measured answer, from /proc/<pid>/stat, in
 * µs per 201:
 *   sluice   --pid, all threads (utime+stime);
 *   pg_db    the PostgreSQL backends of database --db (sluice's connections), alive at both
 *            marks;
 *   pg_all   the postmaster --pg-pid and each child, with their exited children (cutime,
 *            cstime): the whole cluster, shared, so other clients' work counts too;
 *   redis    --redis-pid (the relay's XADDs; shared with other clients too);
 *   driver   this process (getrusage);
 * and the machine's busy cores (/proc/stat) and load average over the window: other work on
 * the machine skews latency, and this says how much there was.
 *
 * Prints one line, RESULT key=value ..., and exits 0; exit 1 when an answer is not a 201 or
 * a request fails (every event must be stored), 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1000
#define OUT_MAX 2048
#define IN_MAX 8192
#define KEYS 10000 /* keys of `orders` the keyed events pick from */

static int port, rate = 2000, n_conns = 32, seconds = 20, warmup = 5;
static int sluice_pid, pg_pid, redis_pid;
static const char *token, *run_tag, *db;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "partitions-driver: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
    exit(1);
}

/* ------------------------------------------------------------------ CPU from /proc */

/* utime+stime (+cutime+cstime with `children`) of `pid` in ticks; -1 when it is gone. */
static long long stat_ticks(int pid, bool children, int *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    /* fields from the 3rd (state): state ppid ... utime(14) stime(15) cutime(16) cstime(17) */
    long long v[16] = {0};
    int i = 0;
    char *save = NULL;
    for (char *tok = strtok_r(p + 2, " ", &save); tok && i < 16; tok = strtok_r(NULL, " ", &save))
        v[i++] = atoll(tok); /* v[0], the state letter, reads as 0 */
    if (i < 15) return -1;
    if (ppid) *ppid = (int)v[1];
    return v[11] + v[12] + (children ? v[13] + v[14] : 0);
}

/* Whether child `pid` of the postmaster serves database `db`:
 * its title is "postgres: <user> <database> <host(port)> <state>". */
static bool serves_db(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (buf[i] == 0) buf[i] = ' ';
    char *save = NULL, *w = strtok_r(buf, " ", &save);
    for (int i = 0; w && i < 2; i++)
        w = strtok_r(NULL, " ", &save);
    return w && strcmp(w, db) == 0;
}

#define MAX_BACKENDS 256
typedef struct {
    int64_t t;
    long long sluice, pg_all, redis;
    double driver; /* ticks */
    int nb;
    int bpid[MAX_BACKENDS];
    long long bticks[MAX_BACKENDS];
    long long busy, total;
    double load;
} cpu_mark;

static void mark(cpu_mark *m)
{
    memset(m, 0, sizeof *m);
    long hz = sysconf(_SC_CLK_TCK);
    m->sluice = stat_ticks(sluice_pid, false, NULL);
    m->redis = redis_pid ? stat_ticks(redis_pid, false, NULL) : -1;
    m->pg_all = pg_pid ? stat_ticks(pg_pid, true, NULL) : -1;
    if (pg_pid && m->pg_all >= 0) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!isdigit((unsigned char)e->d_name[0])) continue;
            int pid = atoi(e->d_name), ppid = 0;
            long long t = stat_ticks(pid, true, &ppid);
            if (t < 0 || ppid != pg_pid) continue;
            m->pg_all += t;
            if (m->nb < MAX_BACKENDS && serves_db(pid)) {
                m->bpid[m->nb] = pid;
                m->bticks[m->nb++] = stat_ticks(pid, false, NULL);
            }
        }
        if (d) closedir(d);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    m->driver = ((double)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
                 (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6) * (double)hz;
    FILE *f = fopen("/proc/stat", "r");
    long long v[8] = {0};
    if (f) {
        if (fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]) != 8)
            memset(v, 0, sizeof v);
        fclose(f);
    }
    for (int i = 0; i < 8; i++)
        m->total += v[i];
    m->busy = m->total - v[3] - v[4];
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &m->load) != 1) m->load = 0;
        fclose(f);
    }
    m->t = now_ns();
}

/* "µs per event" of a tick difference, or "?" */
static void us_per(char *out, size_t cap, double a, double b, long n)
{
    if (a < 0 || b < 0 || n <= 0)
        snprintf(out, cap, "?");
    else
        snprintf(out, cap, "%.1f", (b - a) * 1e6 / (double)sysconf(_SC_CLK_TCK) / (double)n);
}

/* ------------------------------------------------------------------ the events */

static uint64_t rng = 88172645463325252ULL;
static uint64_t rnd(void)
{ /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ULL;
}

static const char *const file_data =
    "\"user_id\":\"user_01HZX3K7Q9M2V8R4T6Y1B5N0CW\","
    "\"contextual_core_id\":\"core_01HZX3K7QA7F2D9G4J8L1P6S3E\","
    "\"filename\":\"uploads/2024/q3/quarterly-business-review-2024-q3-final-version-with-appendix-"
    "and-speaker-notes-for-the-board-meeting-in-october-approved-by-finance-and-legal-v12.pdf\","
    "\"file_size\":48213377,\"mime_type\":\"application/pdf\",\"is_browser_viewable\":true}";
static const char *const note =
    "Customer asked to split the delivery in two; second parcel after the holidays, same address.";
static const char *const statuses[] = {"open", "paid", "shipped", "closed"};

/* The body of request i into `out`; its length. */
static int body(char *out, size_t cap, long i)
{
    char common[256];
    snprintf(common, sizeof common,
             "\"correlation_id\":\"corr-%s-%ld\",\"user_id\":\"user_%05ld\","
             "\"metadata\":{\"client\":\"bench/partitions\",\"region\":\"%s\",\"trace_id\":\"%s-%ld\"}",
             run_tag, i >> 2, (i * 7) % 5000, (i & 1) ? "us-east-1" : "eu-west-1", run_tag, i);
    int kind = (int)(i % 4);
    if (kind == 2) {
        long j = (long)(rnd() % KEYS);
        long key = 48 * j + 8 + j % 4;
        return snprintf(out, cap,
                        "{\"type\":\"order.updated\",\"stream\":\"orders\",\"key\":\"k%ld\",%s,"
                        "\"data\":{\"order_id\":\"k%ld\",\"status\":\"%s\",\"amount_cents\":%ld,"
                        "\"currency\":\"EUR\",\"items\":%ld,\"note\":\"%s\"}}",
                        key, common, key, statuses[i % 4], (i * 7919) % 100000, i % 7 + 1, note);
    }
    char id[64] = "";
    if (kind < 2) {
        uint64_t a = rnd(), b = rnd();
        snprintf(id, sizeof id, "\"id\":\"%08x-%04x-4%03x-a%03x-%012llx\",", (unsigned)(a >> 32),
                 (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff, (unsigned)(b >> 48) & 0xfff,
                 (unsigned long long)(b & 0xffffffffffffULL));
    }
    return snprintf(out, cap, "{%s\"type\":\"file.uploaded\",%s,\"data\":{\"file_id\":\"f_%s_%ld\",%s}",
                    id, common, run_tag, i, file_data);
}

/* ------------------------------------------------------------------ connections */

typedef struct {
    int fd;
    bool busy;
    long req;         /* the request in flight */
    int64_t start_ns; /* when it left the schedule */
    char out[OUT_MAX];
    size_t out_len, out_off;
    char in[IN_MAX];
    size_t in_len;
} conn;

static conn conns[MAX_CONNS];
static int ep;

static void conn_open(conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0) die("non-blocking");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    c->busy = false;
    c->in_len = 0;
}

/* ------------------------------------------------------------------ the run */

static long total, warm;  /* requests in all; the first `warm` are not measured */
static long next_req;     /* the next request of the schedule */
static int64_t t0;        /* when request 0 was due */
static long *queue;       /* due requests waiting for a connection (FIFO ring) */
static int64_t *queued_at;
static long q_head, q_len;
static int64_t *lat;      /* latency of each measured request, ns */
static long measured, created, bad, failures, done_all;
static int64_t *lateness; /* per request: taken off the schedule minus due */
static cpu_mark mark_a, mark_b;
static bool marked_a, marked_b;
static char first_error[256];
static char header_fmt[512];

static int64_t due(long i)
{
    return t0 + (int64_t)((double)i * 1e9 / rate);
}

static void flush_out(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            return;
        }
        if (w < 0) die("send");
        c->out_off += (size_t)w;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void start(conn *c, long i, int64_t start_ns)
{
    if (i == warm && !marked_a) {
        mark(&mark_a);
        marked_a = true;
    }
    char b[OUT_MAX - 512];
    int n = body(b, sizeof b, i);
    if (n <= 0 || (size_t)n >= sizeof b) die("an event did not fit its buffer");
    int h = snprintf(c->out, sizeof c->out, header_fmt, n);
    memcpy(c->out + h, b, (size_t)n);
    c->out_len = (size_t)h + (size_t)n;
    c->out_off = 0;
    c->busy = true;
    c->req = i;
    c->start_ns = start_ns;
    c->in_len = 0;
    flush_out(c);
}

static conn *idle_conn(void)
{
    for (int k = 0; k < n_conns; k++)
        if (!conns[k].busy) return &conns[k];
    return NULL;
}

static void finished(conn *c, int status)
{
    int64_t t = now_ns();
    long i = c->req;
    c->busy = false;
    done_all++;
    if (status != 201) {
        bad++;
        if (!first_error[0])
            snprintf(first_error, sizeof first_error, "%d %.200s", status, c->in);
    }
    if (i >= warm) {
        lat[measured++] = t - c->start_ns;
        if (status == 201) created++;
        if (measured == total - warm && !marked_b) {
            mark(&mark_b);
            marked_b = true;
        }
    }
    if (q_len) { /* the oldest waiting request goes next, its wait counted */
        long q = queue[q_head];
        int64_t at = queued_at[q_head];
        q_head = (q_head + 1) % total;
        q_len--;
        start(c, q, at);
    }
}

/* An answer is whole: its status and body, once Content-Length bytes followed the headers. */
static void on_readable(conn *c)
{
    for (;;) {
        if (c->in_len >= IN_MAX - 1) die("an answer did not fit its buffer");
        ssize_t r = recv(c->fd, c->in + c->in_len, IN_MAX - 1 - c->in_len, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r <= 0) { /* closed: reopened; a request in flight on it failed */
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            bool was_busy = c->busy;
            conn_open(c);
            if (was_busy) {
                failures++;
                if (!first_error[0]) snprintf(first_error, sizeof first_error, "connection closed");
                c->busy = true;
                c->in[0] = 0;
                finished(c, 0);
            }
            return;
        }
        c->in_len += (size_t)r;
        c->in[c->in_len] = 0;
        char *end = strstr(c->in, "\r\n\r\n");
        if (!end) continue;
        size_t head = (size_t)(end + 4 - c->in);
        long cl = 0;
        for (char *h = strchr(c->in, '\n'); h && h < end; h = strchr(h + 1, '\n'))
            if (strncasecmp(h + 1, "content-length:", 15) == 0) cl = atol(h + 16);
        if (c->in_len < head + (size_t)cl) continue;
        int status = atoi(c->in + 9); /* "HTTP/1.1 201 ..." */
        if (c->busy) finished(c, status);
        return;
    }
}

static void arm(int tfd, int64_t at)
{
    struct itimerspec its = {0};
    its.it_value.tv_sec = at / 1000000000LL;
    its.it_value.tv_nsec = at % 1000000000LL;
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(const int64_t *v, long n, double p)
{
    if (n <= 0) return 0;
    long k = (long)(p * (double)n + 0.999999) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return (double)v[k] / 1e6;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--token")) token = v;
        else if (!strcmp(k, "--run")) run_tag = v;
        else if (!strcmp(k, "--db")) db = v;
        else if (!strcmp(k, "--pid")) sluice_pid = atoi(v);
        else if (!strcmp(k, "--pg-pid")) pg_pid = atoi(v);
        else if (!strcmp(k, "--redis-pid")) redis_pid = atoi(v);
        else if (!strcmp(k, "--rate")) rate = atoi(v);
        else if (!strcmp(k, "--conns")) n_conns = atoi(v);
        else if (!strcmp(k, "--seconds")) seconds = atoi(v);
        else if (!strcmp(k, "--warmup")) warmup = atoi(v);
        else {
            fprintf(stderr, "partitions-driver: unknown option %s\n", k);
            return 2;
        }
    }
    if (port <= 0 || !token || !run_tag || !db || sluice_pid <= 0 || rate <= 0 || n_conns <= 0 ||
        n_conns > MAX_CONNS || seconds <= 0 || warmup < 0) {
        fprintf(stderr, "usage: partitions-driver --port P --token T --run TAG --db DB --pid PID "
                        "[--pg-pid P] [--redis-pid P] [--rate N] [--conns N] [--seconds S] [--warmup S]\n");
        return 2;
    }
    snprintf(header_fmt, sizeof header_fmt,
             "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
             "Content-Type: application/json\r\nContent-Length: %%d\r\n\r\n",
             port, token);
    rng ^= (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    warm = (long)warmup * rate;
    total = warm + (long)seconds * rate;
    queue = calloc((size_t)total, sizeof *queue);
    queued_at = calloc((size_t)total, sizeof *queued_at);
    lateness = calloc((size_t)total, sizeof *lateness);
    lat = calloc((size_t)(total - warm), sizeof *lat);
    if (!queue || !queued_at || !lateness || !lat) die("out of memory");

    ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    for (int k = 0; k < n_conns; k++)
        conn_open(&conns[k]);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (tfd < 0) die("timerfd_create");
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    int64_t deadline = 0;
    t0 = now_ns() + 1000000; /* the connections are open: the schedule starts in 1 ms */
    arm(tfd, t0);
    struct epoll_event evs[64];
    while (done_all < total) {
        int n = epoll_wait(ep, evs, 64, 1000);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            if (!c) {
                uint64_t x;
                if (read(tfd, &x, sizeof x) < 0 && errno != EAGAIN) die("timerfd read");
                continue;
            }
            if (evs[k].events & EPOLLOUT) flush_out(c);
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
        }
        int64_t t = now_ns();
        while (next_req < total && due(next_req) <= t) {
            long i = next_req++;
            lateness[i] = t - due(i);
            conn *c = idle_conn();
            if (c) {
                start(c, i, t);
            } else {
                long tail = (q_head + q_len) % total;
                queue[tail] = i;
                queued_at[tail] = t;
                q_len++;
            }
        }
        if (next_req < total) {
            arm(tfd, due(next_req));
        } else if (!deadline) {
            deadline = t + 60 * 1000000000LL;
        } else if (t > deadline) {
            fprintf(stderr, "partitions-driver: answers still missing 60 s after the last request\n");
            break;
        }
    }
    if (!marked_b) {
        mark(&mark_b);
        marked_b = true;
    }

    qsort(lat, (size_t)measured, sizeof *lat, cmp64);
    qsort(lateness, (size_t)next_req, sizeof *lateness, cmp64);
    double secs = (double)(mark_b.t - mark_a.t) / 1e9;
    double mean = 0;
    for (long k = 0; k < measured; k++)
        mean += (double)lat[k] / 1e6;
    mean = measured ? mean / (double)measured : 0;
    char s_us[32], dbu[32], pga[32], rdu[32], dru[32];
    us_per(s_us, sizeof s_us, (double)mark_a.sluice, (double)mark_b.sluice, created);
    long long db_ticks = 0;
    for (int b = 0; b < mark_b.nb; b++)
        for (int a = 0; a < mark_a.nb; a++)
            if (mark_a.bpid[a] == mark_b.bpid[b]) db_ticks += mark_b.bticks[b] - mark_a.bticks[a];
    us_per(dbu, sizeof dbu, pg_pid ? 0 : -1, (double)db_ticks, created);
    us_per(pga, sizeof pga, (double)mark_a.pg_all, (double)mark_b.pg_all, created);
    us_per(rdu, sizeof rdu, (double)mark_a.redis, (double)mark_b.redis, created);
    us_per(dru, sizeof dru, mark_a.driver, mark_b.driver, created);
    double busy = (double)sysconf(_SC_NPROCESSORS_ONLN) * (double)(mark_b.busy - mark_a.busy) /
                  (double)(mark_b.total - mark_a.total > 0 ? mark_b.total - mark_a.total : 1);
    printf("RESULT sent=%ld measured=%ld created=%ld bad=%ld failures=%ld eps=%.0f p50_ms=%.2f "
           "p99_ms=%.2f p999_ms=%.2f max_ms=%.2f mean_ms=%.2f late_p99_ms=%.2f late_max_ms=%.2f "
           "sluice_us=%s pg_db_us=%s pg_all_us=%s redis_us=%s driver_us=%s busy_cores=%.2f "
           "load=%.2f-%.2f\n",
           next_req, measured, created, bad, failures, secs > 0 ? (double)created / secs : 0,
           pct_ms(lat, measured, 0.50), pct_ms(lat, measured, 0.99), pct_ms(lat, measured, 0.999),
           measured ? (double)lat[measured - 1] / 1e6 : 0, mean, pct_ms(lateness, next_req, 0.99),
           next_req ? (double)lateness[next_req - 1] / 1e6 : 0, s_us, dbu, pga, rdu, dru, busy,
           mark_a.load, mark_b.load);
    fflush(stdout);
    if (bad || failures || created != total - warm) {
        fprintf(stderr, "partitions-driver: %ld of %ld requests were not answered 201 (%ld failed); first: %s\n",
                bad + (total - done_all), total, failures, first_error[0] ? first_error : "-");
        return 1;
    }
    return 0;
}
