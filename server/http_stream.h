/*
 * http_stream.h — streaming HTTP bodies at bounded memory, in two modes.
 *
 * Push: a core thread (say, an NDJSON read) writes into a fixed ring;
 * libmicrohttpd's content-reader callback drains it. When the ring is empty the
 * callback suspends the connection instead of waiting, and the producer resumes
 * it after its next write, so no libmicrohttpd thread ever blocks. When the ring
 * is full the producer waits: a slow client slows its own producer and nothing
 * else, and memory stays at the ring's size whatever the result's size.
 *
 * Pull: no producer thread at all. The content-reader callback asks the owner's
 * fill function for the next bytes, on the libmicrohttpd thread; when fill has
 * nothing, the connection is suspended until the owner calls http_stream_wake
 * (from any thread: a queue turned non-empty, a timer fired). A stream that waits
 * costs a suspended connection and no thread (the SSE feed, server/sse.c).
 */
#ifndef SLUICE_HTTP_STREAM_H
#define SLUICE_HTTP_STREAM_H

#include "http.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct http_stream http_stream;

/* ---- push mode ---- */

/* Creates a stream for `req` and sets it as the answer with `status` and content type
 * `type` (static). The returned stream is the producer's: finish with http_stream_end.
 * Any thread that holds the suspended request, as with http_reply_*: the producer's own
 * thread (the NDJSON export), which then calls http_resume. */
http_stream *http_stream_start(http_req *req, int status, const char *type, size_t ring_bytes);
/* Producer: copies `n` bytes in, waiting while the ring is full. Returns 0, or -1 when the
 * client has gone or Sluice is stopping (stop producing). n == 0 only asks that. */
int http_stream_write(http_stream *s, const char *data, size_t n);

/* ---- pull mode ---- */

#define HTTP_STREAM_END (-1)    /* fill: the body is complete */
#define HTTP_STREAM_BROKEN (-2) /* fill: end the answer as broken (see http_stream_abort) */

typedef struct http_stream_source {
    /* libmicrohttpd thread, never two calls at once for one stream: writes at most `max`
     * bytes of the body to `out` and returns how many; or 0 when there is nothing now (the
     * connection waits for http_stream_wake), HTTP_STREAM_END or HTTP_STREAM_BROKEN.
     * `stopping`: Sluice is stopping; write out what is half sent, then end. */
    long (*fill)(void *arg, char *out, size_t max, bool stopping);
    /* libmicrohttpd thread, exactly once, after the last fill: the response is gone (sent
     * whole, the client went, or it was never sent). The owner then lets go of the stream
     * with http_stream_end. Called with no lock of this module held. */
    void (*done)(void *arg);
    void *arg;
} http_stream_source;

/* MHD thread (the handler) or a thread that holds the suspended request: sets a pulled
 * body as the answer to `req`, with `status` and content type `type` (static). The stream
 * is also the owner's until it calls http_stream_end (after `done`, or instead of ever
 * letting the answer go out: then `done` still comes, once libmicrohttpd drops it). */
http_stream *http_stream_pull(http_req *req, int status, const char *type,
                              const http_stream_source *src);
/* Any thread, while the owner holds the stream: fill has something new; a connection that
 * waits runs again (a wake that comes while fill runs makes the reader ask once more).
 * Never blocks: it takes only the stream's lock and libmicrohttpd's, so it may be called
 * with the caller's own locks held (a session's wake function does). */
void http_stream_wake(http_stream *s);

/* ---- both modes ---- */

/* Producer or owner: lets go of the stream. Push mode: the body is complete. */
void http_stream_end(http_stream *s);
/* Any thread, while the producer or owner holds the stream (before http_stream_end): ends
 * the answer as broken (the connection closes without the body's end, so the client sees
 * an error, not a complete body), at once, even to a client that reads nothing; a
 * producer's writes fail from now on (a waiting one returns), fill is not called again.
 * For a revoked key. */
void http_stream_abort(http_stream *s);
/* Shutdown: tells every producer to stop at its next write, and runs every waiting pulled
 * stream once more with `stopping` set, so each ends. */
void http_stream_shutdown(void);

#endif
