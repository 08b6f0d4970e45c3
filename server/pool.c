/*
 * pool.c — the PostgreSQL worker pool (see pool.h).
 *
 * The queue's bound (SLUICE_POOL_QUEUE) refuses new work. A delayed job is work already
 * admitted (a projection read polling for its position, a dead-letter batch being
 * reprocessed): when it falls due it joins the queue even if the queue is full, rather
 * than run without a connection and be answered as though PostgreSQL were down. There is
 * one per such request or batch at most, so the bound is passed by at most that many.
 */
#include "pool.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "timeutil.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define POOL_RECHECK_IDLE_MS 100 /* a connection idle this long is checked before a job */

typedef struct pool_job {
    pool_fn fn;
    void *arg;
    struct pool_job *next;
} pool_job;

/* A set of workers, their connections' server and their queue: the primary's, and the read
 * replica's (reads.c) when SLUICE_READ_DATABASE_URL is set. */
typedef struct pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pool_job *head, *tail; /* {lock} FIFO */
    int queued;            /* {lock} */
    int queue_limit;
    bool stopping; /* {lock} */
    pthread_t *threads;
    int n_threads;
    char *url;
    const char *module; /* in logs; "read" is also the replica connections' application_name */
} pool;

static pool primary = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, .module = "pool"};
static pool reads = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, .module = "read"};

/* Delayed jobs: a short list, scanned by the timer thread every 10 ms. */
typedef struct pool_timer {
    int64_t due; /* monotonic ms */
    pool_fn fn;
    void *arg;
    struct pool_timer *next;
} pool_timer;
static pthread_mutex_t timer_lock = PTHREAD_MUTEX_INITIALIZER;
static pool_timer *timers;    /* {timer_lock} */
static pthread_t timer_thread;
static bool timer_running;
static bool timers_stopping; /* {timer_lock} */

/* Queues a job on `p`; `admitted` (a delayed job falling due) passes a full queue. Returns 0,
 * or -1 when the queue is full or the pool stopping (the caller keeps `arg`). */
static int submit(pool *p, pool_fn fn, void *arg, bool admitted)
{
    pool_job *job = xmalloc(sizeof *job);
    job->fn = fn;
    job->arg = arg;
    job->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->stopping || !p->n_threads || (!admitted && p->queued >= p->queue_limit)) {
        pthread_mutex_unlock(&p->lock);
        free(job);
        return -1;
    }
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    p->queued++;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static void *timer_main(void *unused)
{
    (void)unused;
    for (;;) {
        usleep(10 * 1000);
        int64_t now = time_mono_ms();
        pool_timer *due = NULL;
        pthread_mutex_lock(&timer_lock);
        bool stop = timers_stopping;
        for (pool_timer **pp = &timers; *pp;) {
            pool_timer *t = *pp;
            if (stop || t->due <= now) {
                *pp = t->next;
                t->next = due;
                due = t;
            } else {
                pp = &t->next;
            }
        }
        pthread_mutex_unlock(&timer_lock);
        while (due) {
            pool_timer *next = due->next;
            /* When stopping, the job still runs (its request must be answered). */
            if (submit(&primary, due->fn, due->arg, true) != 0)
                due->fn(&(PGconn *){NULL}, due->arg);
            free(due);
            due = next;
        }
        if (stop) break;
    }
    return NULL;
}

int pool_submit_after(int delay_ms, pool_fn fn, void *arg)
{
    pool_timer *t = xmalloc(sizeof *t);
    t->due = time_mono_ms() + delay_ms;
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_lock(&timer_lock);
    if (timers_stopping) {
        pthread_mutex_unlock(&timer_lock);
        free(t);
        return -1;
    }
    t->next = timers;
    timers = t;
    pthread_mutex_unlock(&timer_lock);
    return 0;
}

static void *worker(void *arg)
{
    pool *p = arg;
    PGconn *conn = NULL;
    int64_t next_attempt = 0, last_job_end = 0;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stopping) pthread_cond_wait(&p->cond, &p->lock);
        pool_job *job = p->head;
        if (!job) {
            pthread_mutex_unlock(&p->lock);
            break;
        }
        p->head = job->next;
        if (!p->head) p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);

        /* The server closed it while idle (a restart): looked at (a poll(2)) only after an
         * idle spell, not between jobs that follow each other — a restart takes longer than
         * POOL_RECHECK_IDLE_MS, and a job that finds the connection broken drops it. */
        if (conn && time_mono_ms() - last_job_end >= POOL_RECHECK_IDLE_MS && !db_alive(conn)) {
            PQfinish(conn);
            conn = NULL;
            next_attempt = 0;
        }
        if (!conn && time_mono_ms() >= next_attempt) {
            conn = db_connect(p->url, p->module);
            if (!conn) next_attempt = time_mono_ms() + 1000; /* don't stall every job on connects */
        }
        job->fn(&conn, job->arg);
        free(job);
        last_job_end = time_mono_ms();
    }
    PQfinish(conn);
    return NULL;
}

static int start(pool *p, const char *database_url, int n, int queue_max)
{
    p->url = xstrdup(database_url);
    p->queue_limit = queue_max;
    p->threads = xcalloc((size_t)n, sizeof *p->threads);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) return -1;
        p->n_threads++;
    }
    return 0;
}

int pool_start(const char *database_url, int n, int queue_max)
{
    if (start(&primary, database_url, n, queue_max) < 0) return -1;
    if (pthread_create(&timer_thread, NULL, timer_main, NULL) != 0) return -1;
    timer_running = true;
    return 0;
}

int pool_start_reads(const char *database_url, int n, int queue_max)
{
    return start(&reads, database_url, n, queue_max);
}

int pool_submit(pool_fn fn, void *arg)
{
    return submit(&primary, fn, arg, false);
}

int pool_submit_reads(pool_fn fn, void *arg)
{
    return submit(&reads, fn, arg, false);
}

static void stop(pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    p->threads = NULL;
    p->n_threads = 0;
    free(p->url);
    p->url = NULL;
}

void pool_stop(void)
{
    /* Delayed jobs first: the timer hands them over (or runs them without a connection). The
     * replica's readers next: a read waiting for the replica may still hand its job to the
     * primary's. */
    pthread_mutex_lock(&timer_lock);
    timers_stopping = true;
    pthread_mutex_unlock(&timer_lock);
    if (timer_running) pthread_join(timer_thread, NULL);
    timer_running = false;
    stop(&reads);
    stop(&primary);
}
