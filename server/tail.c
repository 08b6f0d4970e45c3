/*
 * tail.c — the feed (see tail.h).
 *
 * DESIGN: a ring of local batches (appender → tail thread, under `lock`) and an
 * eventfd that wakes the thread's poll() beside the LISTEN socket, so one wait
 * covers both sources. The tail thread alone calls hub_publish, so the hub's head
 * only ever moves forward from one place.
 */
#include "tail.h"
#include "db.h"
#include "eventlog.h"
#include "hub.h"
#include "log.h"
#include "mem.h"
#include "timeutil.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define TAIL_PAGE 1000
#define TAIL_TIMEOUT_MS 10000
#define TAIL_RING 1024     /* local batches waiting for the tail thread */
#define TAIL_CHECK_MS 1000 /* a read without a notification, for one that was missed */

typedef struct local_batch {
    stored_event **evs;
    int n;
} local_batch;

static char *url;
static pthread_t thread;
static atomic_bool stopping;
static bool running;
static int wake_fd = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static local_batch ring[TAIL_RING]; /* {lock} */
static size_t ring_head, ring_len;  /* {lock} */
static atomic_bool missed;          /* a local batch was let go: read the log */

static void batch_free(local_batch *b)
{
    for (int i = 0; i < b->n; i++)
        stored_event_unref(b->evs[i]);
    free(b->evs);
    b->evs = NULL;
    b->n = 0;
}

void tail_committed(stored_event **events, int n)
{
    local_batch b = {.evs = events, .n = n};
    pthread_mutex_lock(&lock);
    bool taken = running && ring_len < TAIL_RING;
    if (taken) ring[(ring_head + ring_len++) % TAIL_RING] = b;
    pthread_mutex_unlock(&lock);
    if (!taken) {
        batch_free(&b);
        atomic_store(&missed, true);
    }
    uint64_t one = 1;
    if (wake_fd >= 0) (void)!write(wake_fd, &one, sizeof one);
}

/* Reads and publishes the log after the hub's head, up to `until` (0 = to the end).
 * Returns 0 when done, -1 when the read failed (the connection may be gone). */
static int read_log(PGconn **conn, long long until)
{
    for (;;) {
        long long head = hub_head();
        if (until && head >= until) return 0;
        int limit = TAIL_PAGE;
        if (until && until - head < limit) limit = (int)(until - head);
        stored_event **evs;
        int n = eventlog_read(conn, head, limit, TAIL_TIMEOUT_MS, &evs);
        if (n < 0) return -1;
        if (n) hub_publish(evs, n);
        for (int i = 0; i < n; i++)
            stored_event_unref(evs[i]);
        free(evs);
        if (n < limit) return 0;
    }
}

/* Publishes the local batches in order. A gap before one is read from the log first;
 * when that read fails the batch waits for the next turn. */
static void drain_local(PGconn **conn)
{
    for (;;) {
        pthread_mutex_lock(&lock);
        local_batch b = ring_len ? ring[ring_head] : (local_batch){0};
        pthread_mutex_unlock(&lock);
        if (!b.n) return;
        long long first = b.evs[0]->position;
        if (first > hub_head() + 1 && (!*conn || read_log(conn, first - 1) < 0)) return;
        hub_publish(b.evs, b.n);
        pthread_mutex_lock(&lock);
        ring_head = (ring_head + 1) % TAIL_RING;
        ring_len--;
        pthread_mutex_unlock(&lock);
        batch_free(&b);
    }
}

static bool connect_listen(PGconn **conn)
{
    *conn = db_connect(url, "tail");
    if (*conn && eventlog_listen(conn, TAIL_TIMEOUT_MS)) return true;
    PQfinish(*conn);
    *conn = NULL;
    return false;
}

static void *tail_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL;
    bool read_due = true;
    int64_t last_read = 0, last_connect = 0;
    while (!atomic_load(&stopping)) {
        if (!conn && time_mono_ms() - last_connect >= 500) {
            last_connect = time_mono_ms();
            if (connect_listen(&conn)) read_due = true; /* notifications may have been missed */
        }
        drain_local(&conn);
        if (atomic_exchange(&missed, false)) read_due = true;
        if (time_mono_ms() - last_read >= TAIL_CHECK_MS) read_due = true;
        if (read_due && conn) {
            last_read = time_mono_ms();
            read_due = read_log(&conn, 0) < 0;
            continue; /* local batches may have queued meanwhile */
        }
        struct pollfd p[2] = {{.fd = wake_fd, .events = POLLIN},
                              {.fd = conn ? PQsocket(conn) : -1, .events = POLLIN}};
        if (poll(p, 2, 100) <= 0) continue;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            (void)!read(wake_fd, &v, sizeof v);
        }
        if (conn && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            int woken = eventlog_notified(&conn, EVENTLOG_WAKE_FOREIGN);
            if (woken) read_due = true; /* another instance committed (or the link broke) */
        }
    }
    PQfinish(conn);
    return NULL;
}

int tail_start(const char *database_url)
{
    url = xstrdup(database_url);
    PGconn *conn = db_connect(url, "tail");
    if (!conn) return -1;
    long long head = eventlog_head(&conn, TAIL_TIMEOUT_MS);
    PQfinish(conn);
    if (head < 0) return -1;
    hub_set_head(head);
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) return -1;
    pthread_mutex_lock(&lock);
    running = true;
    pthread_mutex_unlock(&lock);
    if (pthread_create(&thread, NULL, tail_main, NULL) != 0) {
        running = false;
        return -1;
    }
    return 0;
}

void tail_stop(void)
{
    if (!running) return;
    atomic_store(&stopping, true);
    pthread_join(thread, NULL);
    pthread_mutex_lock(&lock);
    running = false;
    while (ring_len) {
        batch_free(&ring[ring_head]);
        ring_head = (ring_head + 1) % TAIL_RING;
        ring_len--;
    }
    pthread_mutex_unlock(&lock);
    close(wake_fd);
    wake_fd = -1;
    free(url);
    url = NULL;
}
