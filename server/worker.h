/*
 * worker.h — one long-lived background thread of Sluice's: started once at start-up,
 * asked to stop, joined.
 *
 * The sweeper (groups.c), the projection and replay runners, the relay, retention and
 * the long-poll reaper each own one. Their loops poll worker_stopping() between steps
 * (or hand &w->stopping to a wait that watches it, such as eventlog_wait), so a stop is
 * a flag and a join: no thread is cancelled, and every one finishes its step first.
 * Also here: thread_start_detached, for the threads nobody joins (catch-ups, exports,
 * PostgreSQL cancel requests, SSE keep-alives), which end by themselves.
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef struct worker_thread {
    pthread_t thread;
    atomic_bool stopping; /* set by worker_stop; read by the thread's loop */
    bool running;         /* start/stop thread only */
} worker_thread;

/* Starts `main(NULL)` on a thread of its own. 0, or -1 if the thread cannot start. */
int worker_start(worker_thread *w, void *(*main)(void *));
/* Asks the thread to stop, then waits for it. Does nothing when it is not running. */
void worker_stop(worker_thread *w);

/* Starts `main(arg)` on a detached thread. 0, or -1 if the thread cannot start. */
int thread_start_detached(void *(*main)(void *), void *arg);

static inline bool worker_stopping(worker_thread *w)
{
    return atomic_load(&w->stopping);
}

#endif
