/*
 * sse.h — the live feed as Server-Sent Events (GET /v1/subscribe), the
 * text/event-stream side of the subscriber sessions that ws.c serves over
 * WebSocket (session.h: bounded queue, catch-up, hub subscription).
 *
 * Frames: a hello `retry: 1000` + `: subscribed after N`; one
 * `id: <position>\nevent: event\ndata: <stored envelope>` per event; a control
 * message (say, a catch-up that failed) as `event: control`; `: keep-alive`
 * after 15 s without output. A queue past its bound ends the stream (the client
 * resumes with Last-Event-ID); a revoked key cuts it at once; shutdown ends it.
 *
 * DESIGN: no thread per subscriber. Each stream is a pulled body
 * (http_stream_pull): libmicrohttpd's content reader pops the session's queue
 * and formats frames on its own thread; with the queue empty the connection is
 * suspended, and the session's wake function (called by the hub or a catch-up
 * when the queue turns non-empty) resumes it. One ticker thread, running while
 * any stream is open, wakes the streams that owe a keep-alive.
 */
#ifndef SLUICE_SSE_H
#define SLUICE_SSE_H

#include "filter.h"
#include "http.h"

typedef enum sse_rc {
    SSE_STARTED,         /* the stream is the answer */
    SSE_FULL,            /* SLUICE_SSE_MAX subscribers already */
    SSE_REVOKED,         /* the key was revoked since the request was authenticated */
    SSE_CATCHUPS_FULL,   /* SLUICE_MAX_CATCHUPS catch-ups are running (SESSION_CATCHUPS_FULL) */
    SSE_TENANT_CATCHUPS, /* the tenant runs SLUICE_TENANT_CATCHUPS catch-ups
                            (SESSION_TENANT_CATCHUPS) */
} sse_rc;

/* MHD thread, in the handler: subscribes `req`'s tenant to the events `fl` matches (moved
 * in, whatever the outcome), after `from_position` (< 0: live only), and sets the stream as
 * the answer. On SSE_STARTED the stream owns one of the tenant's TENANT_STREAMS slots, which
 * the caller took, and gives it back when it ends; otherwise nothing is answered, and the
 * caller answers and keeps the slot. */
sse_rc sse_start(http_req *req, filter *fl, long long from_position)
    __attribute__((warn_unused_result));

#endif
