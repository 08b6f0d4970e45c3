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

typedef struct pool_job {
    pool_fn fn;
    void *arg;
    struct pool_job *next;
} pool_job;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static pool_job *head, *tail; /* {lock} FIFO */
static int queued;            /* {lock} */
static int queue_limit;
static bool stopping;         /* {lock} */
static pthread_t *threads;
static int n_threads;
static char *url;

/* Delayed jobs: a short list, scanned by the timer thread every 10 ms. */
typedef struct pool_timer {
    int64_t due; /* monotonic ms */
    pool_fn fn;
    void *arg;
    struct pool_timer *next;
} pool_timer;
static pool_timer *timers;    /* {lock} */
static pthread_t timer_thread;
static bool timer_running;

/* Queues a job; `admitted` (a delayed job falling due) passes a full queue. Returns 0, or
 * -1 when the queue is full or the pool stopping (the caller keeps `arg`). */
static int submit(pool_fn fn, void *arg, bool admitted)
{
    pool_job *job = xmalloc(sizeof *job);
    job->fn = fn;
    job->arg = arg;
    job->next = NULL;
    pthread_mutex_lock(&lock);
    if (stopping || (!admitted && queued >= queue_limit)) {
        pthread_mutex_unlock(&lock);
        free(job);
        return -1;
    }
    if (tail)
        tail->next = job;
    else
        head = job;
    tail = job;
    queued++;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    return 0;
}

static void *timer_main(void *unused)
{
    (void)unused;
    for (;;) {
        usleep(10 * 1000);
        int64_t now = time_mono_ms();
        pool_timer *due = NULL;
        pthread_mutex_lock(&lock);
        bool stop = stopping;
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
        pthread_mutex_unlock(&lock);
        while (due) {
            pool_timer *next = due->next;
            /* When stopping, the job still runs (its request must be answered). */
            if (submit(due->fn, due->arg, true) != 0) due->fn(&(PGconn *){NULL}, due->arg);
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
    pthread_mutex_lock(&lock);
    if (stopping) {
        pthread_mutex_unlock(&lock);
        free(t);
        return -1;
    }
    t->next = timers;
    timers = t;
    pthread_mutex_unlock(&lock);
    return 0;
}

static void *worker(void *unused)
{
    (void)unused;
    PGconn *conn = NULL;
    int64_t next_attempt = 0;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!head && !stopping) pthread_cond_wait(&cond, &lock);
        pool_job *job = head;
        if (!job) {
            pthread_mutex_unlock(&lock);
            break;
        }
        head = job->next;
        if (!head) tail = NULL;
        queued--;
        pthread_mutex_unlock(&lock);

        if (conn && !db_alive(conn)) { /* the server closed it while idle (restart) */
            PQfinish(conn);
            conn = NULL;
            next_attempt = 0;
        }
        if (!conn && time_mono_ms() >= next_attempt) {
            conn = db_connect(url, "pool");
            if (!conn) next_attempt = time_mono_ms() + 1000; /* don't stall every job on connects */
        }
        job->fn(&conn, job->arg);
        free(job);
    }
    PQfinish(conn);
    return NULL;
}

int pool_start(const char *database_url, int n, int queue_max)
{
    url = xstrdup(database_url);
    queue_limit = queue_max;
    threads = xcalloc((size_t)n, sizeof *threads);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&threads[i], NULL, worker, NULL) != 0) return -1;
        n_threads++;
    }
    if (pthread_create(&timer_thread, NULL, timer_main, NULL) != 0) return -1;
    timer_running = true;
    return 0;
}

int pool_submit(pool_fn fn, void *arg)
{
    return submit(fn, arg, false);
}

void pool_stop(void)
{
    /* Delayed jobs first: the timer hands them over (or runs them without a connection). */
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_mutex_unlock(&lock);
    if (timer_running) pthread_join(timer_thread, NULL);
    timer_running = false;
    pthread_mutex_lock(&lock);
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n_threads; i++) pthread_join(threads[i], NULL);
    free(threads);
    threads = NULL;
    n_threads = 0;
    free(url);
    url = NULL;
}
