/*
 * http_stream.h — a streaming HTTP body fed by a core thread, at bounded memory.
 *
 * The producer (say, an NDJSON read) writes into a fixed ring; libmicrohttpd's
 * content-reader callback drains it. When the ring is empty the callback
 * suspends the connection instead of waiting, and the producer resumes it
 * after its next write, so no libmicrohttpd thread ever blocks. When the ring
 * is full the producer waits: a slow client slows its own producer and nothing
 * else, and memory stays at the ring's size whatever the result's size.
 */
#ifndef SLUICE_HTTP_STREAM_H
#define SLUICE_HTTP_STREAM_H

#include "http.h"

#include <stddef.h>

typedef struct http_stream http_stream;

/* Creates a stream for `req` and sets it as the answer with `status` and content type
 * `type` (static). The returned stream is the producer's: finish with http_stream_end.
 * MHD thread (in the handler). */
http_stream *http_stream_start(http_req *req, int status, const char *type, size_t ring_bytes);
/* Producer: copies `n` bytes in, waiting while the ring is full. Returns 0, or -1 when the
 * client has gone or Sluice is stopping (stop producing). n == 0 only asks that. */
int http_stream_write(http_stream *s, const char *data, size_t n);
/* Producer: the body is complete; the stream is no longer the producer's. */
void http_stream_end(http_stream *s);
/* Any thread, while the producer holds the stream (before http_stream_end): ends the answer
 * as broken (the connection closes without the body's end, so the client sees an error, not
 * a complete body), at once, even to a client that reads nothing; the producer's writes
 * fail from now on (a waiting one returns). For a revoked key (issue 13). */
void http_stream_abort(http_stream *s);
/* Tells every producer to stop at its next write (shutdown). */
void http_stream_shutdown(void);

#endif
