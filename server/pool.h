/*
 * pool.h — worker threads for PostgreSQL work that is not a publish.
 *
 * Reads, key administration and readiness checks must not run on a
 * libmicrohttpd thread (they wait on PostgreSQL), so handlers suspend the
 * request and submit a job here. Each worker owns one connection, opened lazily
 * and reopened after a failure. The queue is bounded (SLUICE_POOL_QUEUE jobs
 * waiting): a job that meets a full queue is refused at once, and its request is
 * answered 503 overloaded with Retry-After (handler_pool_full), never dropped.
 */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include <libpq-fe.h>

/* A job: runs on a worker thread; *conn is that worker's connection, or NULL when
 * PostgreSQL cannot be reached (the job must then answer 503). The job owns `arg`. */
typedef void (*pool_fn)(PGconn **conn, void *arg);

/* Starts `threads` workers; at most `queue_max` jobs wait for one. Returns 0 or -1.
 * Start-up only. */
int pool_start(const char *database_url, int threads, int queue_max)
    __attribute__((warn_unused_result));
/* Queues a job. Returns 0, or -1 when the queue is full or stopping (the caller keeps `arg`).
 * Any thread. */
int pool_submit(pool_fn fn, void *arg) __attribute__((warn_unused_result));
/* The read replica's workers (reads.c), connected to `database_url` as application_name
 * sluice-read; pool_submit_reads queues there (-1 as pool_submit, and when not started). */
int pool_start_reads(const char *database_url, int threads, int queue_max)
    __attribute__((warn_unused_result));
int pool_submit_reads(pool_fn fn, void *arg) __attribute__((warn_unused_result));
/* Queues a job to run after `delay_ms` (a worker is not held meanwhile). Returns 0 or -1
 * (stopping). For jobs that poll, such as waiting for a projection to catch up. When due,
 * the job joins the queue even if it is full (it was admitted already); once the pool is
 * stopping it runs on the timer thread with *conn NULL, as when PostgreSQL cannot be
 * reached, and must then answer (or give up) quickly. */
int pool_submit_after(int delay_ms, pool_fn fn, void *arg) __attribute__((warn_unused_result));
/* Runs every queued job, then stops the workers (the replica's first). */
void pool_stop(void);

#endif
