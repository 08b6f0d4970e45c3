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

void worker_stop(worker_thread *w)
{
    if (!w->running) return;
    atomic_store(&w->stopping, true);
    pthread_join(w->thread, NULL);
    w->running = false;
}
