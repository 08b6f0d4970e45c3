/*
 * ws.c — the WebSocket server (see ws.h).
 */
#include "ws.h"
#include "auth.h"
#include "consume.h"
#include "hub.h"
#include "log.h"
#include "mem.h"
#include "problem.h"
#include "session.h"
#include "tenants.h"

#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define WS_PATH "/v1/ws"
#define WS_WRITE_ITEMS 256         /* messages coalesced into one write, at most */
#define WS_WRITE_BYTES (32 * 1024) /* ... and about this many bytes */
#define WS_CLOSE_TRY_AGAIN_LATER 1013
#define WS_MAX_FD_TABLE (1u << 20) /* descriptors lws may index directly (16 B each) */
/* A client message, reassembled from the pieces lws hands over (API.md: payload_too_large
 * past it). Pieces are at most one socket read (4 KiB); the buffer exists only while a
 * message that came in pieces is being collected. */
#define WS_MESSAGE_MAX (64 * 1024)
/* lws's receive buffer, allocated for every connection for its whole life: control frames
 * and one read's piece of a message. Small, so held connections cost little (issue 8: 64 KiB
 * here let repeated floods grow RSS to the limit times 70 KiB). */
#define WS_RX_BUFFER 4096
#define WS_TX_PACKET (64 * 1024) /* what one send() may take; lws keeps the rest for later */
#define WS_RETRY_AFTER "1"       /* seconds, on a 503 at the connection limit */
/* A connection must authenticate (?token= or a first auth message) within this, else it is
 * closed with 1008 (issue 13: an idle unauthenticated socket must not be held for ever). */
#define WS_AUTH_TIMEOUT_US (5 * LWS_USEC_PER_SEC)

/* Per connection: lws's per-session data holds a pointer to this heap object, which
 * other threads may still reference (through the session) after lws frees its own. */
typedef struct ws_conn {
    session *sess;              /* owned reference */
    struct lws *wsi;            /* lws thread only */
    bool authed;                /* lws thread only */
    int close_code;             /* lws thread only: close with this once the queue is written */
    atomic_bool on_ready;       /* on the ready stack, or about to be */
    atomic_bool gone;           /* lws has closed it (set on the lws thread) */
    atomic_int refs;            /* lws + the ready stack */
    struct ws_conn *ready_next; /* the pusher's until pushed, then the lws thread's */
    struct ws_conn *all_prev, *all_next; /* lws thread only: every open connection */
    char *rx;              /* lws thread only: a message arriving in pieces, or NULL */
    size_t rx_len, rx_cap; /* lws thread only: bytes of it so far, bytes allocated */
    bool rx_skip;          /* lws thread only: the message in progress is too large: drop it */
    auth_watch *watch;     /* lws thread only: its key's revocation watch, once authenticated */
    bool tenant_slot;      /* lws thread only: holds one of its tenant's WebSocket slots */
    atomic_bool revoked;   /* its key was revoked: close with 1008 at once */
} ws_conn;

typedef struct ws_pss {
    ws_conn *conn;
} ws_pss;

static const sluice_config *cfg;
static struct lws_context *context;
static pthread_t thread;
static atomic_bool stopping;
static bool running;
/* Connections with something to write, pushed by any thread (lock-free: the tail thread pushes
 * thousands per event), taken whole by the lws thread. */
static _Atomic(ws_conn *) ready_head;
static ws_conn *all_conns; /* lws thread only */
static atomic_int n_conns;
static atomic_llong n_slow;
static buf scratch; /* lws thread only: the frame being written */

int ws_connections(void)
{
    return atomic_load(&n_conns);
}

long long ws_slow_closes(void)
{
    return atomic_load(&n_slow);
}

static void conn_unref(ws_conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    session_unref(c->sess);
    free(c);
}

/* Any thread, s->lock held (session_wake_fn): the session's queue has turned non-empty, or
 * it must close. s->owner is read under that lock: a catch-up thread may outlive the
 * connection, which clears it when lws closes. */
static void wake(session *s)
{
    ws_conn *c = s->owner;
    if (!c || atomic_load(&c->gone) || atomic_exchange(&c->on_ready, true)) return;
    atomic_fetch_add(&c->refs, 1); /* the stack's */
    ws_conn *head = atomic_load(&ready_head);
    do
        c->ready_next = head;
    while (!atomic_compare_exchange_weak(&ready_head, &head, c));
    /* Inside a hub batch, on_hub_batch wakes lws once for all; others wake it here. */
    if (context && !hub_in_publish()) lws_cancel_service(context);
}

static void on_hub_batch(void)
{
    /* Only when the batch made a connection ready: lws_cancel_service is a system call, and
     * most batches find no WebSocket subscriber. */
    if (context && atomic_load(&ready_head)) lws_cancel_service(context);
}

/* lws thread: asks WRITEABLE for every connection on the ready stack. A wake that comes
 * after on_ready is cleared pushes the connection again; one before it is covered by the
 * WRITEABLE asked for here, which pops the queue later. */
static void drain_ready(void)
{
    ws_conn *c = atomic_exchange(&ready_head, NULL);
    while (c) {
        ws_conn *next = c->ready_next;
        atomic_store(&c->on_ready, false);
        if (!atomic_load(&c->gone)) lws_callback_on_writable(c->wsi);
        /* Revoked: WRITEABLE closes it with 1008; should the client read nothing (so never
         * writeable), lws drops it after a second. */
        if (!atomic_load(&c->gone) && atomic_load(&c->revoked))
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 1);
        conn_unref(c);
        c = next;
    }
}

static void send_error(ws_conn *c, const char *id, const char *code, const char *message)
{
    json_t *e = json_pack("{s:s,s:s,s:s}", "op", "error", "code", code, "message", message);
    if (id) json_object_set_new(e, "id", json_string(id));
    session_push_text(c->sess, json_dumps(e, JSON_COMPACT));
    json_decref(e);
}

/* Any thread, the watch lock held (auth.h): the connection's key was revoked; the lws thread
 * closes it with 1008 at its next turn. */
static void on_revoked(void *arg)
{
    ws_conn *c = arg;
    atomic_store(&c->revoked, true);
    pthread_mutex_lock(&c->sess->lock);
    wake(c->sess);
    pthread_mutex_unlock(&c->sess->lock);
}

/* What authenticate made of a token. */
typedef enum {
    WS_AUTHED = 0,           /* one of the tenant's WebSocket slots taken, the key watched */
    WS_UNAUTHENTICATED = -1, /* no such key, no subscribe scope, or revoked */
    WS_TENANT_FULL = -2,     /* the tenant holds SLUICE_TENANT_WS_CONNECTIONS already */
} ws_auth_rc;

static ws_auth_rc authenticate(ws_conn *c, const char *token)
{
    char header[600];
    snprintf(header, sizeof header, "Bearer %s", token ? token : "");
    auth_ctx a;
    if (auth_authenticate(header, &a) < 0 ||
        (!auth_has_scope(&a, SCOPE_SUBSCRIBE) && !auth_has_scope(&a, SCOPE_CONSUME)))
        return WS_UNAUTHENTICATED;
    if (!tenants_acquire(a.tenant, TENANT_WS)) return WS_TENANT_FULL;
    c->watch = auth_watch_add(&a, on_revoked, c);
    if (!c->watch) { /* revoked meanwhile */
        tenants_release(a.tenant, TENANT_WS);
        return WS_UNAUTHENTICATED;
    }
    c->tenant_slot = true;
    c->sess->auth = a;
    c->authed = true;
    return WS_AUTHED;
}

/* lws thread, at the upgrade: whether ?token= names a key whose tenant holds its cap of
 * WebSocket connections (then the upgrade is refused 429; authenticate takes the slot). */
static bool tenant_at_cap(struct lws *wsi)
{
    char argbuf[600], header[610];
    const char *token = lws_get_urlarg_by_name(wsi, "token=", argbuf, sizeof argbuf);
    if (!token) return false;
    snprintf(header, sizeof header, "Bearer %s", token);
    auth_ctx a;
    return auth_authenticate(header, &a) == 0 && tenants_full(a.tenant, TENANT_WS);
}

/* A subscribe message's filter members; the others (op, id, from_position, a first
 * message's token, anything a client adds) are not the filter's business. */
static const char *const subscribe_filter[] = {"streams", "types", "key", "where", NULL};
static const char *const subscribe_other[] = {"*", NULL};

static void on_subscribe(ws_conn *c, json_t *msg, const char *id)
{
    if (!auth_has_scope(&c->sess->auth, SCOPE_SUBSCRIBE)) {
        send_error(c, id, "forbidden", "subscribe needs a key with the subscribe scope");
        return;
    }
    json_t *fp = json_object_get(msg, "from_position");
    long long from = -1;
    if (fp && !json_is_null(fp)) {
        if (!json_is_integer(fp) || json_integer_value(fp) < 0) {
            send_error(c, id, "invalid_request", "from_position must be a non-negative integer");
            return;
        }
        from = (long long)json_integer_value(fp);
    }
    filter f = {0};
    filter_error err;
    if (filter_parse_json(&f, msg, subscribe_filter, subscribe_other, &err) < 0) {
        send_error(c, id, err.where ? "invalid_filter" : "invalid_request", err.message);
        return;
    }
    long long start = 0;
    session_subscribe_rc rc = session_subscribe(c->sess, id, &f, from, &start);
    filter_dispose(&f);
    if (rc == SESSION_DUPLICATE_ID)
        send_error(c, id, "conflict", "a subscription with this id exists");
    else if (rc == SESSION_TOO_MANY)
        send_error(c, id, "rate_limited", "at most 16 subscriptions per connection");
    else if (rc == SESSION_CATCHUPS_FULL)
        send_error(c, id, "overloaded",
                   "SLUICE_MAX_CATCHUPS history catch-ups are running already; retry");
    else if (rc == SESSION_TENANT_CATCHUPS)
        send_error(c, id, "rate_limited",
                   "this tenant runs SLUICE_TENANT_CATCHUPS history catch-ups already; retry");
    else
        session_push_text(
            c->sess,
            xasprintf("{\"op\":\"subscribed\",\"id\":\"%s\",\"position\":%lld}", id, start));
}

/* {"op":"consume","id","stream","group","consumer","max_in_flight"}: the consumer API over this
 * connection (consume.h); the key needs the consume scope. */
static void on_consume(ws_conn *c, json_t *msg, const char *id)
{
    const char *stream = json_string_value(json_object_get(msg, "stream"));
    const char *group = json_string_value(json_object_get(msg, "group"));
    const char *consumer = json_string_value(json_object_get(msg, "consumer"));
    json_t *mif = json_object_get(msg, "max_in_flight");
    json_int_t max = mif ? json_integer_value(mif) : 10;
    if (!auth_has_scope(&c->sess->auth, SCOPE_CONSUME))
        send_error(c, id, "forbidden", "consume needs a key with the consume scope");
    else if (!stream || !envelope_stream_valid(stream))
        send_error(c, id, "invalid_request", "stream must be a stream name");
    else if (!group || !envelope_id_valid(group))
        send_error(c, id, "invalid_request", "group must be a group name");
    else if (!consumer || !envelope_id_valid(consumer))
        send_error(c, id, "invalid_request", "consumer must match ^[A-Za-z0-9._:-]{1,64}$");
    else if ((mif && !json_is_integer(mif)) || max < 1 || max > CONSUME_MAX_MESSAGES)
        send_error(c, id, "invalid_request", "max_in_flight must be an integer from 1 to 1000");
    else
        consume_ws_start(c->sess, id, stream, group, consumer, (int)max);
}

/* lws thread: one client message. Every answer is queued; a message that must end the
 * connection (not JSON before authenticating, a bad key, the tenant at its cap) sets
 * c->close_code, and on_writeable closes with it once the error before it is written. */
static void on_message(ws_conn *c, const char *data, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(data, len, 0, &jerr);
    if (!json_is_object(msg)) {
        json_decref(msg);
        send_error(c, NULL, "invalid_json", "messages are JSON objects with an \"op\"");
        if (!c->authed) c->close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION;
        return;
    }
    const char *op = json_string_value(json_object_get(msg, "op"));
    json_t *idv = json_object_get(msg, "id");
    const char *id = json_string_value(idv);
    if (!c->authed) {
        const char *token = json_string_value(json_object_get(msg, "token"));
        ws_auth_rc arc = authenticate(c, token);
        if (arc == WS_TENANT_FULL) {
            send_error(c, id, "rate_limited",
                       "this tenant has SLUICE_TENANT_WS_CONNECTIONS WebSocket connections open");
            c->close_code = WS_CLOSE_TRY_AGAIN_LATER; /* after the error is written */
            json_decref(msg);
            return;
        }
        if (arc < 0) {
            send_error(c, id, "unauthenticated",
                       "send ?token= or a first message {\"op\":\"auth\",\"token\":\"…\"} "
                       "with a key that has the subscribe or consume scope");
            c->close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION; /* after the error is written */
            json_decref(msg);
            return;
        }
        if (op && strcmp(op, "auth") == 0) {
            session_push_text(c->sess, xstrdup("{\"op\":\"authenticated\"}"));
            json_decref(msg);
            return;
        }
    }
    if (!op) {
        send_error(c, id, "invalid_request", "missing \"op\"");
    } else if (strcmp(op, "ping") == 0) {
        session_push_text(c->sess, xstrdup("{\"op\":\"pong\"}"));
    } else if (strcmp(op, "auth") == 0) {
        session_push_text(c->sess, xstrdup("{\"op\":\"authenticated\"}"));
    } else if (strcmp(op, "ack") == 0 || strcmp(op, "nack") == 0) {
        consume_ws_frame(c->sess, msg);
    } else if (strcmp(op, "subscribe") == 0 || strcmp(op, "unsubscribe") == 0 ||
               strcmp(op, "consume") == 0) {
        if (!id || !envelope_id_valid(id)) { /* ids are echoed into JSON: keep them plain */
            send_error(c, NULL, "invalid_request", "id must match ^[A-Za-z0-9._:-]{1,64}$");
        } else if (op[0] == 's') {
            on_subscribe(c, msg, id);
        } else if (op[0] == 'c') {
            on_consume(c, msg, id);
        } else if (session_unsubscribe(c->sess, id) < 0 && !consume_ws_stop(c->sess, id)) {
            send_error(c, id, "not_found", "no subscription with this id");
        } else {
            session_push_text(c->sess, xasprintf("{\"op\":\"unsubscribed\",\"id\":\"%s\"}", id));
        }
    } else {
        send_error(c, id, "invalid_request", "op must be auth, subscribe, unsubscribe, consume, ack, nack or ping");
    }
    json_decref(msg);
}

static void rx_reset(ws_conn *c)
{
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
}

/* lws thread: one piece of a client message, as lws hands them over: a message (one frame or
 * several, RFC 6455 section 5.4) comes in pieces of at most one socket read. `first` marks a
 * message's first piece, `final` its last. A message in one piece is parsed where it lies;
 * one in several is collected first, in a buffer that exists only until it is whole. A
 * message past WS_MESSAGE_MAX is answered with one payload_too_large error and the rest of it
 * is dropped. A message closes the connection only through on_message's c->close_code. */
static void on_piece(ws_conn *c, const char *data, size_t len, bool first, bool final)
{
    if (first) { /* a new message: whatever was in progress is over */
        rx_reset(c);
        c->rx_skip = false;
    }
    if (c->rx_skip) {
        if (final) c->rx_skip = false;
        return;
    }
    if (c->close_code) return; /* closing: ignore the rest */
    if (first && final && len <= WS_MESSAGE_MAX) {
        on_message(c, data, len);
        return;
    }
    if (len > WS_MESSAGE_MAX - c->rx_len) {
        rx_reset(c);
        c->rx_skip = !final;
        send_error(c, NULL, "payload_too_large", "messages are at most 64 KiB");
        return;
    }
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap * 2 : 8192;
        while (cap < c->rx_len + len)
            cap *= 2;
        if (cap > WS_MESSAGE_MAX) cap = WS_MESSAGE_MAX;
        c->rx = xrealloc(c->rx, cap);
        c->rx_cap = cap;
    }
    if (len) memcpy(c->rx + c->rx_len, data, len);
    c->rx_len += len;
    if (!final) return;
    on_message(c, c->rx, c->rx_len);
    rx_reset(c);
}

/* Appends `it` as one WebSocket text frame (RFC 6455 section 5.2: FIN, opcode text,
 * unmasked as a server's are): one message per frame, as API.md promises. */
static void append_frame(buf *b, const session_item *it)
{
    static const char ev_head[] = "{\"op\":\"event\",\"sub\":\"";
    static const char ev_mid[] = "\",\"event\":";
    size_t sub_len = it->ev ? strlen(it->sub) : 0;
    size_t len = it->ev ? sizeof ev_head - 1 + sub_len + sizeof ev_mid - 1 + it->ev->json_len + 1
                        : strlen(it->text);
    unsigned char h[10];
    size_t hl;
    h[0] = 0x80 | 0x1;
    if (len < 126) {
        h[1] = (unsigned char)len;
        hl = 2;
    } else if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    buf_append(b, (const char *)h, hl);
    if (it->ev) {
        buf_append(b, ev_head, sizeof ev_head - 1);
        buf_append(b, it->sub, sub_len);
        buf_append(b, ev_mid, sizeof ev_mid - 1);
        buf_append(b, it->ev->json, it->ev->json_len);
        buf_append(b, "}", 1);
    } else {
        buf_append(b, it->text, len);
    }
}

/* lws thread: writes what is queued, several messages (each its own frame) coalesced into
 * one socket write, so a subscriber that fell behind catches up in fewer system calls rather
 * than one per message. -1 closes. */
static int on_writeable(ws_conn *c)
{
    if (atomic_load(&stopping)) {
        lws_close_reason(c->wsi, LWS_CLOSE_STATUS_GOINGAWAY,
                         (unsigned char *)"server shutting down", 20);
        return -1;
    }
    if (atomic_load(&c->revoked)) { /* whatever is queued is not for it any more */
        lws_close_reason(c->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                         (unsigned char *)"api key revoked", 15);
        return -1;
    }
    session_item items[WS_WRITE_ITEMS];
    bool overflow = false, more = false;
    size_t n = session_pop_batch(c->sess, items, WS_WRITE_ITEMS, WS_WRITE_BYTES, &overflow, &more);
    if (overflow) {
        pthread_mutex_lock(&c->sess->lock);
        long long last = c->sess->last_sent;
        pthread_mutex_unlock(&c->sess->lock);
        char reason[100];
        int len = snprintf(reason, sizeof reason, "slow consumer; last position %lld", last);
        atomic_fetch_add(&n_slow, 1);
        lws_close_reason(c->wsi, (enum lws_close_status)WS_CLOSE_TRY_AGAIN_LATER,
                         (unsigned char *)reason, (size_t)len);
        return -1;
    }
    if (n == 0) {
        if (c->close_code) { /* the last words are out: now close */
            bool limited = c->close_code == WS_CLOSE_TRY_AGAIN_LATER;
            lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                             (unsigned char *)(limited ? "rate limited" : "unauthenticated"),
                             limited ? 12 : 15);
            return -1;
        }
        return 0;
    }
    scratch.len = 0;
    for (size_t i = 0; i < n; i++) {
        append_frame(&scratch, &items[i]);
        session_item_dispose(&items[i]);
    }
    /* Whole frames, so lws sends the bytes as they are (what the socket does not take now,
     * lws keeps and sends before anything else). */
    if (lws_write(c->wsi, (unsigned char *)scratch.data, scratch.len, LWS_WRITE_RAW) <
        (int)scratch.len)
        return -1;
    /* More queued, or a close due after these: come back. Otherwise the next message wakes
     * the connection (wake()). */
    if (more || c->close_code) lws_callback_on_writable(c->wsi);
    return 0;
}

static bool path_ok(struct lws *wsi)
{
    char uri[128];
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0) return false;
    return strcmp(uri, WS_PATH) == 0;
}

/* lws thread: answers a request that will not become a WebSocket with `status` and
 * `problem` (taken; an RFC 9457 document, as every Sluice error), `headers` ("Name: value\r\n"
 * lines, or "") added, and asks for the connection to close after it. The answer is a few
 * hundred bytes to a socket that has sent only its request: the kernel takes it whole.
 * Returns -1, what the callback returns to close. */
static int refuse(struct lws *wsi, int status, const char *reason, const char *headers,
                  json_t *problem)
{
    char *body = json_dumps(problem, JSON_COMPACT);
    json_decref(problem);
    unsigned char out[LWS_PRE + 1024]; /* lws's room before what it sends, then the answer */
    int n = snprintf((char *)out + LWS_PRE, sizeof out - LWS_PRE,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\n"
                     "Content-Length: %zu\r\n%sConnection: close\r\n\r\n%s",
                     status, reason, strlen(body), headers, body);
    free(body);
    if (n > 0 && (size_t)n < sizeof out - LWS_PRE)
        (void)lws_write(wsi, out + LWS_PRE, (size_t)n, LWS_WRITE_HTTP);
    return -1;
}

/* lws thread: a plain HTTP request (no Upgrade) on the WebSocket port: 426 naming the
 * protocol at /v1/ws, 404 elsewhere, at once rather than after lws's idle timeout. */
static int refuse_http(struct lws *wsi, const char *path, size_t len)
{
    if (len == strlen(WS_PATH) && memcmp(path, WS_PATH, len) == 0) {
        return refuse(wsi, 426, "Upgrade Required", "Upgrade: websocket\r\n",
                      problem_new("upgrade_required",
                                  "this is a WebSocket endpoint: send a WebSocket upgrade"));
    }
    return refuse(wsi, 404, "Not Found", "",
                  problem_new("not_found", "this port serves WebSockets at /v1/ws only"));
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    ws_pss *pss = user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        drain_ready();
        if (atomic_load(&stopping))
            for (ws_conn *c = all_conns; c; c = c->all_next)
                lws_callback_on_writable(c->wsi);
        return 0;
    case LWS_CALLBACK_HTTP:
        return refuse_http(wsi, in ? in : "", in ? len : 0);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (!path_ok(wsi))
            return refuse(wsi, 404, "Not Found", "",
                          problem_new("not_found", "WebSockets are served at /v1/ws only"));
        if (atomic_load(&n_conns) >= cfg->ws_max_connections)
            return refuse(wsi, 503, "Service Unavailable", "Retry-After: " WS_RETRY_AFTER "\r\n",
                          problem_new("overloaded", "too many WebSocket connections; retry later"));
        if (tenant_at_cap(wsi))
            return refuse(wsi, 429, "Too Many Requests", "Retry-After: " WS_RETRY_AFTER "\r\n",
                          problem_new("rate_limited",
                                      "this tenant has SLUICE_TENANT_WS_CONNECTIONS WebSocket "
                                      "connections open; retry after one closes"));
        return 0;
    case LWS_CALLBACK_ESTABLISHED: {
        /* Events are small frames that must leave at once: no Nagle delay. */
        int one = 1;
        (void)setsockopt(lws_get_socket_fd(wsi), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ws_conn *c = xcalloc(1, sizeof *c);
        atomic_init(&c->refs, 1);
        c->wsi = wsi;
        c->sess = session_new((size_t)cfg->ws_queue_messages, (size_t)cfg->ws_queue_bytes, wake, c);
        pss->conn = c;
        c->all_next = all_conns;
        if (all_conns) all_conns->all_prev = c;
        all_conns = c;
        atomic_fetch_add(&n_conns, 1);
        char argbuf[600];
        const char *token = lws_get_urlarg_by_name(wsi, "token=", argbuf, sizeof argbuf);
        ws_auth_rc arc = token ? authenticate(c, token) : WS_AUTHED;
        if (arc == WS_TENANT_FULL) { /* taken since the upgrade's check */
            lws_close_reason(wsi, (enum lws_close_status)WS_CLOSE_TRY_AGAIN_LATER,
                             (unsigned char *)"rate limited", 12);
            return -1;
        }
        if (arc < 0) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                             (unsigned char *)"unauthenticated", 15);
            return -1;
        }
        if (!c->authed) lws_set_timer_usecs(wsi, WS_AUTH_TIMEOUT_US); /* LWS_CALLBACK_TIMER */
        return 0;
    }
    case LWS_CALLBACK_TIMER: /* the authentication deadline */
        if (pss->conn && !pss->conn->authed && !pss->conn->close_code) {
            send_error(pss->conn, NULL, "unauthenticated",
                       "authenticate within 5 s: ?token= or a first message "
                       "{\"op\":\"auth\",\"token\":\"…\"}");
            pss->conn->close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION; /* after the error */
        }
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (!pss->conn) return -1;
        on_piece(pss->conn, in, len, lws_is_first_fragment(wsi), lws_is_final_fragment(wsi));
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pss->conn ? on_writeable(pss->conn) : -1;
    case LWS_CALLBACK_CLOSED: {
        ws_conn *c = pss->conn;
        if (!c) return 0;
        pss->conn = NULL;
        rx_reset(c);
        consume_ws_close(c->sess);
        session_close(c->sess);
        pthread_mutex_lock(&c->sess->lock);
        c->sess->owner = NULL; /* producers that outlive the connection stop waking it */
        pthread_mutex_unlock(&c->sess->lock);
        atomic_store(&c->gone, true); /* drain_ready (this thread) skips it from now on */
        auth_watch_remove(c->watch);  /* on_revoked does not run from here on */
        if (c->tenant_slot) tenants_release(c->sess->auth.tenant, TENANT_WS);
        if (c->all_prev)
            c->all_prev->all_next = c->all_next;
        else
            all_conns = c->all_next;
        if (c->all_next) c->all_next->all_prev = c->all_prev;
        atomic_fetch_sub(&n_conns, 1);
        conn_unref(c);
        return 0;
    }
    default:
        return 0;
    }
}

static struct lws_protocols protocols[] = {
    {"sluice", callback, sizeof(ws_pss), WS_RX_BUFFER, 0, NULL, WS_TX_PACKET},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *ws_main(void *unused)
{
    (void)unused;
    while (!atomic_load(&stopping) || atomic_load(&n_conns) > 0) {
        if (lws_service(context, 1000) < 0) break;
    }
    return NULL;
}

static void lws_log(int level, const char *line)
{
    char msg[300];
    snprintf(msg, sizeof msg, "%s", line);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    if (level & LLL_ERR)
        log_warn("ws", "libwebsockets", json_pack("{s:s}", "detail", msg));
    else
        log_debug("ws", "libwebsockets", json_pack("{s:s}", "detail", msg));
}

static atomic_int bound_port; /* set by ws_start */

int ws_port(void)
{
    return atomic_load(&bound_port);
}

int ws_start(const sluice_config *c, int *port)
{
    cfg = c;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = c->ws_port;
    info.iface = c->bind;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
    /* lws looks a socket up by descriptor on every event. When fd_limit_per_thread is below
     * the process's descriptor limit it switches to a linear search of its whole table
     * (O(connections) per event: most of the loop's time at a few thousand subscribers), so
     * ask for at least the limit itself: the table is then indexed directly. */
    unsigned fds = (unsigned)c->ws_max_connections + 64;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > fds &&
        rl.rlim_cur <= WS_MAX_FD_TABLE)
        fds = (unsigned)rl.rlim_cur;
    info.fd_limit_per_thread = fds;
    info.timeout_secs = 30;
    info.ka_time = 60;
    info.ka_probes = 3;
    info.ka_interval = 10;
    context = lws_create_context(&info);
    if (!context) {
        log_error("ws", "cannot create the WebSocket context", NULL);
        return -1;
    }
    struct lws_vhost *vh = lws_create_vhost(context, &info);
    if (!vh) {
        log_error("ws", "cannot listen for WebSockets (port in use?)",
                  json_pack("{s:s,s:i}", "bind", c->bind, "port", c->ws_port));
        lws_context_destroy(context);
        context = NULL;
        return -1;
    }
    *port = lws_get_vhost_listen_port(vh);
    atomic_store(&bound_port, *port);
    buf_init(&scratch);
    hub_add_batch_waker(on_hub_batch);
    if (pthread_create(&thread, NULL, ws_main, NULL) != 0) return -1;
    running = true;
    return 0;
}

void ws_stop(void)
{
    if (!running) return;
    atomic_store(&stopping, true);
    lws_cancel_service(context);
    /* ws_main returns once every connection has been closed with 1001. */
    for (int i = 0; i < 100 && atomic_load(&n_conns) > 0; i++) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
        lws_cancel_service(context);
    }
    struct lws_context *ctx = context;
    if (atomic_load(&n_conns) > 0) lws_cancel_service(ctx);
    pthread_join(thread, NULL);
    context = NULL;
    lws_context_destroy(ctx);
    running = false;
    buf_dispose(&scratch);
}
