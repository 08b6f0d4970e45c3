/*
 * http_stream.c — ring-buffered streaming bodies (see http_stream.h).
 *
 * Lifetime: the stream has two owners, the producer and libmicrohttpd's
 * response (freed through the content-reader free callback); whichever lets go
 * last frees it.
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
    pthread_cond_t space;        /* signalled when the reader takes bytes or goes away */
    char *ring;                  /* {lock} owned */
    size_t cap, start, len;      /* {lock} */
    bool ended;                  /* {lock} producer finished */
    bool gone;                   /* {lock} client / response gone */
    bool reader_suspended;       /* {lock} the reader suspended the connection */
    bool aborted;                /* {lock} http_stream_abort: end the answer as broken */
    int refs;                    /* {lock} */
    struct MHD_Connection *conn; /* borrowed */
};

static atomic_bool shutting_down;

void http_stream_shutdown(void)
{
    atomic_store(&shutting_down, true);
}

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

http_stream *http_stream_start(http_req *req, int status, const char *type, size_t ring_bytes)
{
    http_stream *s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->space, NULL);
    s->ring = xmalloc(ring_bytes);
    s->cap = ring_bytes;
    s->refs = 2;
    s->conn = req->conn;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, reader, s, reader_free);
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    http_reply_stream(req, status, resp);
    return s;
}

/* Resumes the connection if the reader is parked. Called with the lock held. */
static void wake_reader_locked(http_stream *s)
{
    if (s->reader_suspended && !s->gone) {
        s->reader_suspended = false;
        MHD_resume_connection(s->conn);
    }
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
