/*
 * pool.c — the PostgreSQL worker pool (see pool.h).
 */
#include "pool.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "timeutil.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

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
    return 0;
}

int pool_submit(pool_fn fn, void *arg)
{
    pool_job *job = xmalloc(sizeof *job);
    job->fn = fn;
    job->arg = arg;
    job->next = NULL;
    pthread_mutex_lock(&lock);
    if (stopping || queued >= queue_limit) {
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

void pool_stop(void)
{
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n_threads; i++) pthread_join(threads[i], NULL);
    free(threads);
    threads = NULL;
    n_threads = 0;
    free(url);
    url = NULL;
}
