/*
 * http.h — the libmicrohttpd glue: routing, authentication, bodies, answers.
 *
 * A handler is called on a libmicrohttpd thread once the whole body has arrived
 * (bounded by SLUICE_MAX_BODY_BYTES). It must not wait: it answers at once with
 * http_reply_*, or calls http_suspend() and hands the request to a core thread,
 * which fills in the answer with http_reply_* and then calls http_resume().
 * Every allocation of a request hangs off its http_req and is freed once, in
 * libmicrohttpd's request-completed callback.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include "auth.h"
#include "config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct MHD_Connection;
struct MHD_Response;
typedef struct http_req http_req;
typedef void (*http_handler)(http_req *req);

/* One row of the route table (handlers/routes.c). */
typedef struct http_route {
    const char *method;  /* "GET", "POST", … */
    const char *pattern; /* "/v1/events/{id}": {name} matches one path segment */
    http_handler handler;
    unsigned scope; /* SCOPE_* needed; SCOPE_NONE = no authentication */
} http_route;

extern const http_route http_routes[];
extern const size_t http_routes_count;
/* The rows from this index on are fallbacks (the dashboard's files): they answer a GET of
 * any path no other row takes (several segments too: web/vendor/…), and are never named in
 * a 405's Allow. */
extern const size_t http_routes_fallback;
/* Which paths the fallback rows answer (main.c: web_lookup, the dashboard's files), so that
 * any other path is the router's own 404, answered from the headers like every refusal.
 * Unset (NULL): every path. Start-up only. */
void http_set_fallback_paths(bool (*serves)(const char *path));

#define HTTP_MAX_PARAMS 4

/* A header added to the answer (http_add_header). */
typedef struct http_out_header {
    const char *name; /* static string */
    char *value;      /* owned */
} http_out_header;

/* A query value decoded on demand (http_query), kept for the request's life. */
typedef struct http_decoded {
    const char *raw; /* libmicrohttpd's value, borrowed: the cache key */
    char *value;     /* owned: raw with %XX decoded */
} http_decoded;

struct http_req {
    struct MHD_Connection *conn;         /* borrowed from libmicrohttpd */
    const char *method;                  /* borrowed */
    char *path;                          /* owned */
    const http_route *route;             /* borrowed, static */
    const char *params[HTTP_MAX_PARAMS]; /* path parameters, point into param_buf */
    char *param_buf;                     /* owned */
    char *body;                          /* owned, NUL-terminated */
    size_t body_len;
    bool body_too_large; /* over the limit: the rest is discarded, 413 */
    auth_ctx auth;       /* who is asking */
    bool dispatched;     /* the handler has been called */
    bool suspended;      /* waiting for a core thread; MHD thread only */
    int status;          /* the answer, once ready */
    char *resp_body;     /* owned until queued */
    size_t resp_len;
    const char *resp_type;            /* static string */
    struct MHD_Response *resp_stream; /* a streaming answer, owned until queued */
    http_out_header *headers;         /* owned: grown as headers are added, none ever dropped */
    int n_headers, cap_headers;
    void (*finalize)(http_req *req); /* if set, builds the answer on the MHD thread once resumed */
    void *state;                     /* a handler's async state, owned via state_free */
    void (*state_free)(void *state);
    long long started_ms;  /* monotonic, for logs */
    http_decoded *decoded; /* owned: one per distinct query value decoded, none dropped */
    int n_decoded, cap_decoded;
    int answered_status;  /* the status queued, for the request log */
    char request_id[32];  /* X-Request-Id: the client's, or a ULID */
    char *correlation_id; /* owned: the flow the request concerns, for the log */
};

/* Starts the HTTP daemon; *bound_port gets the port. Returns 0 or -1 (logged). */
int http_start(const sluice_config *cfg, int *bound_port) __attribute__((warn_unused_result));
/* Stops accepting connections (SIGTERM drain); requests in flight go on. */
void http_quiesce(void);
/* Number of requests between arrival and completion. */
int http_in_flight(void);
void http_stop(void);
/* The ports actually bound (after 0 = pick a free port). */
int http_bound_port(void);
/* Borrowed config (valid while running). */
const sluice_config *http_config(void);

/* ---- for handlers (MHD thread) and core threads (after http_suspend) ---- */

/* Answer with `body` (takes ownership; malloc'd). */
void http_reply(http_req *req, int status, const char *type, char *body, size_t len);
/* Answer with JSON (steals the reference). */
void http_reply_json(http_req *req, int status, json_t *body);
/* Answer with a problem document (steals the reference); status from its code. */
void http_reply_problem(http_req *req, json_t *problem);
/* Shorthand: problem_new(code, detail) answered. */
void http_reply_error(http_req *req, const char *code, const char *detail);
/* Answer with a streaming body (takes ownership of the response). */
void http_reply_stream(http_req *req, int status, struct MHD_Response *resp);
/* Adds a header to the answer (name static; value copied). Any number: none is dropped. */
void http_add_header(http_req *req, const char *name, const char *value);

/* Names the correlation id the request concerns (the events it publishes, the flow it
 * reads), for the request log; NULL clears it. Copied. Before the answer is queued. */
void http_set_correlation(http_req *req, const char *correlation_id);

/* MHD thread only: a query argument, percent-decoded (decoded once, when first asked for;
 * there is no limit on how many), or a request header. Borrowed for the request's life;
 * NULL when absent. */
const char *http_query(http_req *req, const char *name);
const char *http_header(http_req *req, const char *name);

/* MHD thread only: whether the peer connects from a loopback address (127.0.0.0/8, ::1, or
 * ::ffff:127.0.0.0/104). */
bool http_peer_is_loopback(http_req *req);
struct sockaddr;
/* The same test on an address (AF_INET or AF_INET6; false for anything else or NULL). */
bool http_addr_is_loopback(const struct sockaddr *sa);

/* MHD thread only: calls each(name, value, arg) for every request header. */
void http_each_header(http_req *req, void (*each)(const char *name, const char *value, void *arg),
                      void *arg);

/* MHD thread only: parks the request until http_resume. */
void http_suspend(http_req *req);
/* Any thread, after the answer is set: wakes the request. Do not touch req afterwards. */
void http_resume(http_req *req);

#endif
