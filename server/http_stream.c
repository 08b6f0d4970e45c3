/*
 * http_stream.c — streaming bodies, pushed through a ring or pulled (see http_stream.h).
 *
 * Lifetime: the stream has two owners, the producer (or, pulled, the owner) and
 * libmicrohttpd's response (freed through the content-reader free callback);
 * whichever lets go last frees it.
 *
 * Waking a pulled stream without losing a wake: the reader clears `woken`, calls
 * fill without the lock (fill takes the owner's locks, and http_stream_wake is
 * called under them: holding ours across fill would invert that order), and
 * suspends only if no wake came meanwhile; otherwise it asks fill again.
 * http_stream_wake sets `woken` and resumes a suspended reader. Every waiting
 * pulled stream is on one list, so that shutdown can run each once more.
 */
#include "http_stream.h"
#include "mem.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct http_stream {
    pthread_mutex_t lock;
    pthread_cond_t space;        /* push: signalled when the reader takes bytes or goes away */
    char *ring;                  /* {lock} push: owned */
    size_t cap, start, len;      /* {lock} push */
    bool ended;                  /* {lock} push: producer finished */
    bool gone;                   /* {lock} client / response gone */
    bool reader_suspended;       /* {lock} the reader suspended the connection */
    bool aborted;                /* {lock} http_stream_abort: end the answer as broken */
    bool woken;                  /* {lock} pull: a wake came since the reader last asked fill */
    int refs;                    /* {lock} */
    struct MHD_Connection *conn; /* borrowed */
    http_stream_source src;      /* pull mode when src.fill is set */
    http_stream *prev, *next;    /* {pull_lock} pull: on the list while the response lives */
};

static atomic_bool shutting_down;
static pthread_mutex_t pull_lock = PTHREAD_MUTEX_INITIALIZER;
static http_stream *pull_head; /* {pull_lock} */

static void unref_unlock(http_stream *s)
{
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (!last) return;
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->space);
    free(s->ring);
    free(s);
}

/* Resumes the connection if the reader is parked. Called with the lock held. */
static void wake_reader_locked(http_stream *s)
{
    if (s->reader_suspended && !s->gone) {
        s->reader_suspended = false;
        MHD_resume_connection(s->conn);
    }
}

void http_stream_shutdown(void)
{
    atomic_store(&shutting_down, true);
    pthread_mutex_lock(&pull_lock);
    for (http_stream *s = pull_head; s; s = s->next)
        http_stream_wake(s);
    pthread_mutex_unlock(&pull_lock);
}

/* ------------------------------------------------------------------ push */

/* libmicrohttpd thread: copies what is there, or suspends until the producer writes. */
static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    http_stream *s = cls;
    pthread_mutex_lock(&s->lock);
    if (s->aborted) { /* libmicrohttpd closes the connection without the last chunk */
        pthread_mutex_unlock(&s->lock);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (s->len == 0) {
        if (s->ended) {
            pthread_mutex_unlock(&s->lock);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        s->reader_suspended = true;
        MHD_suspend_connection(s->conn);
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    size_t n = s->len < max ? s->len : max;
    size_t first = s->cap - s->start < n ? s->cap - s->start : n;
    memcpy(out, s->ring + s->start, first);
    memcpy(out + first, s->ring, n - first);
    s->start = (s->start + n) % s->cap;
    s->len -= n;
    pthread_cond_signal(&s->space);
    pthread_mutex_unlock(&s->lock);
    return (ssize_t)n;
}

static void reader_free(void *cls)
{
    http_stream *s = cls;
    pthread_mutex_lock(&s->lock);
    s->gone = true;
    pthread_cond_signal(&s->space);
    unref_unlock(s);
}

static http_stream *stream_new(http_req *req, int status, const char *type,
                               MHD_ContentReaderCallback read, MHD_ContentReaderFreeCallback fr,
                               const http_stream_source *src, size_t ring_bytes)
{
    http_stream *s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->space, NULL);
    if (ring_bytes) s->ring = xmalloc(ring_bytes);
    s->cap = ring_bytes;
    s->refs = 2;
    s->conn = req->conn;
    if (src) {
        s->src = *src;
        pthread_mutex_lock(&pull_lock);
        s->next = pull_head;
        if (pull_head) pull_head->prev = s;
        pull_head = s;
        pthread_mutex_unlock(&pull_lock);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, read, s, fr);
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    http_reply_stream(req, status, resp);
    return s;
}

http_stream *http_stream_start(http_req *req, int status, const char *type, size_t ring_bytes)
{
    return stream_new(req, status, type, reader, reader_free, NULL, ring_bytes ? ring_bytes : 1);
}

int http_stream_write(http_stream *s, const char *data, size_t n)
{
    pthread_mutex_lock(&s->lock);
    if (n == 0) { /* a probe: is the client still there, is Sluice still running? */
        bool alive = !s->gone && !s->aborted && !atomic_load(&shutting_down);
        pthread_mutex_unlock(&s->lock);
        return alive ? 0 : -1;
    }
    while (n > 0) {
        while (s->len == s->cap && !s->gone && !s->aborted && !atomic_load(&shutting_down)) {
            wake_reader_locked(s);
            pthread_cond_wait(&s->space, &s->lock);
        }
        if (s->gone || s->aborted || atomic_load(&shutting_down)) {
            pthread_mutex_unlock(&s->lock);
            return -1;
        }
        size_t end = (s->start + s->len) % s->cap;
        size_t room = s->cap - s->len;
        size_t chunk = n < room ? n : room;
        size_t first = s->cap - end < chunk ? s->cap - end : chunk;
        memcpy(s->ring + end, data, first);
        memcpy(s->ring, data + first, chunk - first);
        s->len += chunk;
        data += chunk;
        n -= chunk;
    }
    wake_reader_locked(s);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* ------------------------------------------------------------------ pull */

/* libmicrohttpd thread: asks fill for bytes; with none, suspends until http_stream_wake. */
static ssize_t pull_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    http_stream *s = cls;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (s->aborted) {
            pthread_mutex_unlock(&s->lock);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        s->woken = false;
        pthread_mutex_unlock(&s->lock);
        long n = s->src.fill(s->src.arg, out, max, atomic_load(&shutting_down));
        if (n > 0) return (ssize_t)n;
        if (n == HTTP_STREAM_END) return MHD_CONTENT_READER_END_OF_STREAM;
        if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
        pthread_mutex_lock(&s->lock);
        if (s->woken || s->aborted) { /* something came while fill ran: ask again */
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        s->reader_suspended = true;
        MHD_suspend_connection(s->conn);
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
}

static void pull_reader_free(void *cls)
{
    http_stream *s = cls;
    pthread_mutex_lock(&pull_lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        pull_head = s->next;
    if (s->next) s->next->prev = s->prev;
    pthread_mutex_unlock(&pull_lock);
    http_stream_source src = s->src;
    pthread_mutex_lock(&s->lock);
    s->gone = true;
    unref_unlock(s); /* the owner's reference keeps it until done lets go */
    src.done(src.arg);
}

http_stream *http_stream_pull(http_req *req, int status, const char *type,
                              const http_stream_source *src)
{
    return stream_new(req, status, type, pull_reader, pull_reader_free, src, 0);
}

void http_stream_wake(http_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->woken = true;
    wake_reader_locked(s);
    pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------ both */

void http_stream_abort(http_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->aborted = true;
    pthread_cond_broadcast(&s->space);
    if (!s->gone) {
        /* A parked reader runs again and ends the answer; one that waits for the socket (a
         * client that reads nothing) would wait for the idle timeout, so the socket is shut
         * down as well, which libmicrohttpd sees at once. While the response lives (!gone)
         * its connection and descriptor do: libmicrohttpd destroys the response before it
         * closes the socket. */
        wake_reader_locked(s);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci && ci->connect_fd != MHD_INVALID_SOCKET) (void)shutdown(ci->connect_fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&s->lock);
}

void http_stream_end(http_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->ended = true;
    wake_reader_locked(s);
    unref_unlock(s);
}
