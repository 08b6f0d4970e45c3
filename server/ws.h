/*
 * ws.h — the WebSocket server at /v1/ws on SLUICE_WS_PORT (libwebsockets).
 *
 * Protocol (API.md "Live subscriptions"): JSON text frames; auth by ?token= or
 * a first {"op":"auth","token":…} message (scope `subscribe`, tenant-scoped);
 * subscribe / unsubscribe / ping; events as {"op":"event","sub":…,"event":…}.
 * A subscription with from_position gets history first, then live events,
 * with no gap and no duplicate at the seam (hub.h).
 *
 * DESIGN: libwebsockets runs on one thread of its own and is the only thread
 * that touches a `struct lws`. Other threads (the tail, via the hub; a
 * subscription's catch-up reader) only append to a connection's bounded queue
 * under its lock, put the connection on a ready list and call
 * lws_cancel_service(); the lws thread then asks for WRITEABLE and writes from
 * there. A queue past its bound (messages or bytes) closes the connection with
 * 1013 and a reason naming the last position sent, so memory never grows with
 * a slow reader. Committed events are shared by refcount, never copied per
 * subscriber.
 */
#ifndef SLUICE_WS_H
#define SLUICE_WS_H

#include "config.h"

/* Starts the server thread; *port gets the bound port. Returns 0 or -1 (logged). */
int ws_start(const sluice_config *cfg, int *port) __attribute__((warn_unused_result));
/* Closes every connection with 1001 and stops the thread. */
void ws_stop(void);
/* The port bound by ws_start (0 before), as GET /v1/info names it. Any thread. */
int ws_port(void);
/* Open connections and connections closed for being too slow (for /metrics, /v1/info). */
int ws_connections(void);
long long ws_slow_closes(void);

#endif
