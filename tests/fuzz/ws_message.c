/*
 * tests/fuzz/ws_message.c — the WebSocket message parser (issue 8).
 *
 * The parser is on_message() in server/ws.c, a static function, so this file includes
 * server/ws.c itself and is linked without ws.o (tests/fuzz/fuzz.mk). No lws context is
 * started: on_message only needs a connection whose session queue collects the answers.
 * (A `ws_parse_message()` in ws.h would let this target link against ws.o instead.)
 *
 * Input: client text frames separated by '\n' (at most 64), handled in order on one
 * authenticated connection (tenant "default", every scope), as the lws thread would — each
 * in 1 to 4 pieces through on_piece(), the reassembly of what lws delivers; after
 * each frame the hub publishes two committed events, so live subscriptions made by the
 * frames receive them through their filters. The first frame also goes to a connection
 * that has not authenticated (auth is on, no key is known: it must be refused). Catch-up
 * readers are disabled (session_init(…, 0)), so no thread or PostgreSQL is involved.
 *
 * Checked: every message queued for the client, control answers and event frames as
 * on_writeable() assembles them, is a JSON object with a string "op"; an authenticated
 * connection is never closed for a message; the session never holds more than 16
 * subscriptions; closing the session leaves nothing subscribed in the hub (LeakSanitizer).
 */
#include "../../server/ws.c"
#include "fuzz.h"
#include "stored_event.h"

#include <stdint.h>

#define FUZZ_MAX_FRAMES 64

static long long next_position; /* the hub's head only grows, across inputs */

static void fuzz_wake(session *s)
{
    (void)s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* No catch-up reader may start (they read PostgreSQL): a subscription from a position
     * below the hub's head is refused with "overloaded", the answer to a full server. */
    session_init("postgresql:///sluice-fuzz-unused", 0);
    return 0;
}

static void check_frame(const char *text, size_t len, const char *what)
{
    json_error_t err;
    json_t *m = json_loadb(text, len, 0, &err);
    if (!json_is_object(m))
        fuzz_fail("%s is not a JSON object (%s): %.*s", what, err.text, (int)len, text);
    if (!json_is_string(json_object_get(m, "op")))
        fuzz_fail("%s has no op: %.*s", what, (int)len, text);
    json_decref(m);
}

/* Takes every queued item, as on_writeable() would write it, and checks it. */
static void drain(session *s)
{
    session_item it;
    buf frame;
    buf_init(&frame);
    while (session_pop(s, &it)) {
        frame.len = 0;
        if (it.ev) {
            buf_puts(&frame, "{\"op\":\"event\",\"sub\":\"");
            buf_puts(&frame, it.sub);
            buf_puts(&frame, "\",\"event\":");
            buf_append(&frame, it.ev->json, it.ev->json_len);
            buf_puts(&frame, "}");
            check_frame(frame.data, frame.len, "an event frame");
        } else {
            check_frame(it.text, strlen(it.text), "a control message");
        }
        session_item_dispose(&it);
    }
    buf_dispose(&frame);
}

static void publish_events(void)
{
    static const char *const types[] = {"order.created", "user.login", "file.uploaded",
                                        "order.shipped"};
    static const char *const streams[] = {"orders", "user.events", "contextual.events", "orders"};
    stored_event *ev[2];
    for (int i = 0; i < 2; i++) {
        long long pos = ++next_position;
        char json[64];
        int n = snprintf(json, sizeof json, "{\"position\":%lld}", pos);
        ev[i] = stored_event_new(pos, NULL, "default", streams[pos % 4], types[pos % 4],
                                 pos % 3 ? "k1" : NULL, "corr", json, (size_t)n);
    }
    hub_publish(ev, 2);
    stored_event_unref(ev[0]);
    stored_event_unref(ev[1]);
}

static ws_conn *conn_new(bool authed)
{
    ws_conn *c = calloc(1, sizeof *c);
    c->sess = session_new(1024, 1 << 20, fuzz_wake, c);
    if (authed) {
        snprintf(c->sess->auth.tenant, sizeof c->sess->auth.tenant, "%s", AUTH_DEFAULT_TENANT);
        snprintf(c->sess->auth.key_id, sizeof c->sess->auth.key_id, "fuzz");
        c->sess->auth.scopes = SCOPE_ALL;
        c->authed = true;
    }
    atomic_init(&c->refs, 1);
    return c;
}

static void conn_close(ws_conn *c)
{
    rx_reset(c);
    consume_ws_close(c->sess); /* no consume thread here: its consumers are freed at once */
    session_close(c->sess);
    drain(c->sess);
    session_unref(c->sess);
    free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *nl = memchr(p, '\n', size);

    ws_conn *anon = conn_new(false);
    on_message(anon, p, nl ? (size_t)(nl - p) : size);
    fuzz_check(anon->close_code, "an unauthenticated connection must be closed");
    fuzz_check(!anon->authed, "no key is known, yet the connection authenticated");
    drain(anon->sess);
    conn_close(anon);

    ws_conn *c = conn_new(true);
    for (int frames = 0; p <= end && frames < FUZZ_MAX_FRAMES; frames++) {
        nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        /* As libwebsockets hands it over: in 1 to 4 pieces (on_piece reassembles them). */
        size_t pieces = 1 + len % 4, step = len / pieces, off = 0;
        for (size_t i = 0; i < pieces; i++) {
            size_t n = i + 1 == pieces ? len - off : step;
            on_piece(c, p + off, n, i == 0, i + 1 == pieces);
            off += n;
        }
        fuzz_check(!c->close_code, "an authenticated connection closed on a message");
        fuzz_check(c->rx_len == 0, "a complete message left %zu bytes in the reassembly buffer",
                   c->rx_len);
        fuzz_check(c->sess->n_subs <= SESSION_MAX_SUBS, "%d subscriptions", c->sess->n_subs);
        publish_events();
        drain(c->sess);
        if (!nl) break;
        p = nl + 1;
    }
    conn_close(c);
    return 0;
}
