/*
 * worker.c — start and stop of a background thread (see worker.h).
 */
#include "worker.h"

int worker_start(worker_thread *w, void *(*main)(void *))
{
    atomic_store(&w->stopping, false);
    if (pthread_create(&w->thread, NULL, main, NULL) != 0) return -1;
    w->running = true;
    return 0;
}

int thread_start_detached(void *(*main)(void *), void *arg)
{
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return -1;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &attr, main, arg);
    pthread_attr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

void worker_stop(worker_thread *w)
{
    if (!w->running) return;
    atomic_store(&w->stopping, true);
    pthread_join(w->thread, NULL);
    w->running = false;
}
