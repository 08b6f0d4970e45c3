/*
 * http.c — libmicrohttpd glue (see http.h).
 *
 * DESIGN: one daemon with an internal epoll thread pool and suspend/resume.
 * The access callback is called (1) with the headers: the request is routed,
 * authenticated and size-checked there, so a bad request is refused before its
 * body is read; (2) with each piece of body, appended up to the limit; (3) once
 * more when the body is complete: the handler runs. A handler that must wait
 * suspends the connection; the core thread that finishes the work sets the
 * answer and resumes it, and the callback's next call queues the answer.
 */
#include "http.h"
#include "http_route.h"
#include "log.h"
#include "mem.h"
#include "ratelimit.h"
#include "ulid.h"
#include "metrics.h"
#include "problem.h"
#include "timeutil.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct MHD_Daemon *daemon_; /* the one HTTP daemon */
static const sluice_config *cfg_;  /* borrowed for the daemon's life */
static atomic_int in_flight;       /* requests between arrival and completion */
static int bound_port_;            /* set at start-up */

int http_bound_port(void)
{
    return bound_port_;
}

const sluice_config *http_config(void)
{
    return cfg_;
}

int http_in_flight(void)
{
    return atomic_load(&in_flight);
}

/* ------------------------------------------------------------------ routing */

/* libmicrohttpd is told not to unescape (no_unescape): the path is routed as sent, so a
 * "%2F" inside a key stays inside its segment; each parameter and query value is decoded
 * here instead. Decodes %XX in place; returns the decoded length, which exceeds strlen(s)
 * when a %00 was decoded. */
size_t http_percent_decode(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
            char hex[3] = {r[1], r[2], 0};
            *w++ = (char)strtol(hex, NULL, 16);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

/* Whether a decoded value of `len` bytes is text PostgreSQL can hold: no NUL, valid UTF-8
 * (jansson's check: no overlong forms, surrogates or code points past U+10FFFF). */
bool http_text_ok(const char *s, size_t len)
{
    if (strlen(s) != len) return false;
    json_t *j = json_stringn(s, len);
    json_decref(j);
    return j != NULL;
}

/* Matches `path` against `pattern`; on success copies the decoded parameters into req and
 * sets *bad when one of them is not text (http_text_ok). */
static bool route_match(const char *pattern, const char *path, http_req *req, bool *bad)
{
    const char *p = pattern, *u = path;
    int n = 0;
    const char *seg[HTTP_MAX_PARAMS];
    size_t seg_len[HTTP_MAX_PARAMS];
    while (*p && *u) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            const char *seg_end = strchrnul(u, '/');
            size_t len = (size_t)(seg_end - u);
            if (len == 0 || n >= HTTP_MAX_PARAMS) return false;
            seg[n] = u;
            seg_len[n] = len;
            n++;
            p = close + 1;
            u = seg_end;
        } else {
            if (*p != *u) return false;
            p++;
            u++;
        }
    }
    if (*p || *u) return false;
    if (req) {
        size_t total = 0;
        for (int i = 0; i < n; i++)
            total += seg_len[i] + 1;
        req->param_buf = xmalloc(total + 1);
        char *w = req->param_buf;
        for (int i = 0; i < n; i++) {
            memcpy(w, seg[i], seg_len[i]);
            w[seg_len[i]] = '\0';
            if (!http_text_ok(w, http_percent_decode(w))) *bad = true;
            req->params[i] = w;
            w += seg_len[i] + 1;
        }
    }
    return true;
}

/* Finds the route; on a path match with another method fills `allow` (405). *bad is set
 * when a path parameter of the route found is not text. */
static bool (*fallback_serves)(const char *path); /* set at start-up */

void http_set_fallback_paths(bool (*serves)(const char *path))
{
    fallback_serves = serves;
}

const http_route *http_route_find(const char *method, const char *path, http_req *req, buf *allow,
                                  bool *bad)
{
    for (size_t i = 0; i < http_routes_count; i++) {
        const http_route *r = &http_routes[i];
        if (i >= http_routes_fallback) {
            /* The dashboard's files: a GET of a path no route has (a path that routes have
             * with other methods is their 405); never named in Allow. */
            if (allow->len || (strcmp(method, "GET") && strcmp(method, "HEAD"))) continue;
            if (fallback_serves && !fallback_serves(path)) continue;
            return r;
        }
        if (!route_match(r->pattern, path, NULL, NULL)) continue;
        if (strcmp(r->method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)) {
            (void)route_match(r->pattern, path, req, bad);
            return r;
        }
        /* Two routes of one method may match one path (/v1/events/wait and /v1/events/{id}):
         * the method is listed once. */
        bool listed = false;
        for (size_t k = 0; k < i && !listed; k++)
            listed = strcmp(http_routes[k].method, r->method) == 0 &&
                     route_match(http_routes[k].pattern, path, NULL, NULL);
        if (listed) continue;
        if (allow->len) buf_puts(allow, ", ");
        buf_puts(allow, r->method);
    }
    return NULL;
}

/* ------------------------------------------------------------------ answers */

void http_add_header(http_req *req, const char *name, const char *value)
{
    if (req->n_headers == req->cap_headers) {
        req->cap_headers = req->cap_headers ? req->cap_headers * 2 : 4;
        req->headers = xrealloc(req->headers, (size_t)req->cap_headers * sizeof *req->headers);
    }
    req->headers[req->n_headers].name = name;
    req->headers[req->n_headers].value = xstrdup(value);
    req->n_headers++;
}

void http_reply(http_req *req, int status, const char *type, char *body, size_t len)
{
    free(req->resp_body);
    req->status = status;
    req->resp_type = type;
    req->resp_body = body;
    req->resp_len = len;
}

void http_reply_json(http_req *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) {
        text = xstrdup("{\"code\":\"internal\",\"status\":500}");
        status = 500;
    }
    http_reply(req, status, "application/json", text, strlen(text));
}

void http_reply_problem(http_req *req, json_t *problem)
{
    const char *code = json_string_value(json_object_get(problem, "code"));
    if (code) metrics_rejection(code);
    int status = (int)json_integer_value(json_object_get(problem, "status"));
    char *text = json_dumps(problem, JSON_COMPACT);
    json_decref(problem);
    http_reply(req, status ? status : 500, "application/problem+json", text, strlen(text));
}

void http_reply_error(http_req *req, const char *code, const char *detail)
{
    http_reply_problem(req, problem_new(code, detail));
}

void http_reply_stream(http_req *req, int status, struct MHD_Response *resp)
{
    if (req->resp_stream) MHD_destroy_response(req->resp_stream);
    req->status = status;
    req->resp_stream = resp;
}

/* A value with a %XX is decoded into a copy, once: a name asked for again gets the same copy.
 * So the copies are at most one per query argument the request carries, which its request
 * line (32 KiB at most) bounds; no value is ever refused for want of room. */
const char *http_query(http_req *req, const char *name)
{
    const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!raw || !strchr(raw, '%')) return raw;
    for (int i = 0; i < req->n_decoded; i++)
        if (req->decoded[i].raw == raw) return req->decoded[i].value;
    if (req->n_decoded == req->cap_decoded) {
        req->cap_decoded = req->cap_decoded ? req->cap_decoded * 2 : 4;
        req->decoded = xrealloc(req->decoded, (size_t)req->cap_decoded * sizeof *req->decoded);
    }
    char *copy = xstrdup(raw);
    (void)http_percent_decode(copy);
    req->decoded[req->n_decoded].raw = raw;
    req->decoded[req->n_decoded].value = copy; /* freed with the request */
    req->n_decoded++;
    return copy;
}

const char *http_header(http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

typedef struct header_iter {
    void (*each)(const char *name, const char *value, void *arg);
    void *arg;
} header_iter;

static enum MHD_Result on_header_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    (void)kind;
    header_iter *it = cls;
    it->each(key, value ? value : "", it->arg);
    return MHD_YES;
}

void http_each_header(http_req *req, void (*each)(const char *name, const char *value, void *arg),
                      void *arg)
{
    header_iter it = {each, arg};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, on_header_value, &it);
}

bool http_addr_is_loopback(const struct sockaddr *sa)
{
    if (!sa) return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a6)) return true;
        return IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127;
    }
    return false;
}

bool http_peer_is_loopback(http_req *req)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return info && http_addr_is_loopback(info->client_addr);
}

void http_suspend(http_req *req)
{
    req->suspended = true;
    MHD_suspend_connection(req->conn);
}

void http_resume(http_req *req)
{
    MHD_resume_connection(req->conn);
}

/* The answer's headers, or the name of the first one libmicrohttpd refused (a value with a
 * line break, a header it manages itself), or NULL when all went on. */
static const char *add_headers(http_req *req, struct MHD_Response *resp, const char *type)
{
    if (type && MHD_add_response_header(resp, "Content-Type", type) != MHD_YES)
        return "Content-Type";
    for (int i = 0; i < req->n_headers; i++)
        if (MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value) != MHD_YES)
            return req->headers[i].name;
    return NULL;
}

/* An answer whose header would not go on is not sent without it: it is replaced by a 500
 * (the X-Request-Id still names the request), and the log says which header and why. */
static struct MHD_Response *refuse_answer(http_req *req, struct MHD_Response *resp,
                                          const char *header)
{
    log_error("http", "a header of the answer was refused; answering 500 instead",
              json_pack("{s:s,s:s,s:s,s:i}", "request_id", req->request_id, "route",
                        req->route ? req->route->pattern : req->path, "header", header, "status",
                        req->status));
    MHD_destroy_response(resp);
    metrics_rejection("internal");
    json_t *p =
        problem_newf("internal", "Sluice could not build this answer (its %s header)", header);
    char *text = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", "application/problem+json");
    req->status = 500;
    return resp;
}

static enum MHD_Result queue_answer(http_req *req)
{
    struct MHD_Response *resp = req->resp_stream;
    const char *type = NULL; /* a stream's response carries its type already */
    req->resp_stream = NULL;
    if (!resp) {
        resp =
            MHD_create_response_from_buffer(req->resp_len, req->resp_body, MHD_RESPMEM_MUST_FREE);
        req->resp_body = NULL;
        type = req->resp_type;
    }
    const char *refused = add_headers(req, resp, type);
    if (refused) resp = refuse_answer(req, resp, refused);
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    metrics_http(req->status);
    req->answered_status = req->status;
    enum MHD_Result r = MHD_queue_response(req->conn, (unsigned)req->status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* ------------------------------------------------------------------ deadlines */

/* DESIGN (issue 8, slowloris): libmicrohttpd's connection timeout is an idle timeout, which
 * every byte received restarts, so a client that trickles its headers or its body would
 * hold a connection for ever. So each connection is also watched from accept to close:
 * while a request is arriving it must arrive by a deadline, its headers within
 * SLUICE_HTTP_TIMEOUT_MS of the connection opening (or of the previous answer, on a
 * kept-alive connection), its body within that plus one second per 16 KiB received. The
 * watcher thread shuts down the socket of a connection past its deadline; libmicrohttpd
 * then closes it as it would for a client that went away. A watch is removed in
 * libmicrohttpd's CLOSED notification, which comes before it closes the socket, so under
 * watch_lock a watched descriptor is always still that connection's. */

#define HTTP_BODY_BYTES_PER_S (16 * 1024)  /* a body's deadline grows by 1 s per 16 KiB */
#define HTTP_CONNECTION_MEMORY (32 * 1024) /* per connection: request line, headers, buffers */

typedef struct conn_watch {
    struct conn_watch *prev, *next; /* {watch_lock} */
    int fd;                         /* the connection's socket, open until CLOSED */
    int64_t since_ms;               /* {watch_lock} monotonic: the request began arriving */
    long long body_bytes;           /* {watch_lock} of the request arriving */
    bool arriving;                  /* {watch_lock} a request is arriving: the deadline runs */
    bool cut;                       /* {watch_lock} its socket has been shut down */
} conn_watch;

static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t watch_changed = PTHREAD_COND_INITIALIZER;
static conn_watch *watch_head; /* {watch_lock} every open connection */
static bool watch_stopping;    /* {watch_lock} */
static bool watch_running;     /* start/stop thread only */
static pthread_t watch_thread;

/* libmicrohttpd thread: a connection opens or closes. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_watch *w = xcalloc(1, sizeof *w);
        w->fd = info ? (int)info->connect_fd : -1;
        w->since_ms = time_mono_ms();
        w->arriving = w->fd >= 0;
        pthread_mutex_lock(&watch_lock);
        w->next = watch_head;
        if (watch_head) watch_head->prev = w;
        watch_head = w;
        pthread_mutex_unlock(&watch_lock);
        *socket_context = w;
        return;
    }
    conn_watch *w = *socket_context;
    if (!w) return;
    pthread_mutex_lock(&watch_lock);
    if (w->prev)
        w->prev->next = w->next;
    else
        watch_head = w->next;
    if (w->next) w->next->prev = w->prev;
    pthread_mutex_unlock(&watch_lock);
    free(w);
    *socket_context = NULL;
}

static conn_watch *watch_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

/* libmicrohttpd thread: `bytes` more of the body arrived. */
static void watch_body(struct MHD_Connection *conn, size_t bytes)
{
    conn_watch *w = watch_of(conn);
    if (!w) return;
    pthread_mutex_lock(&watch_lock);
    w->body_bytes += (long long)bytes;
    pthread_mutex_unlock(&watch_lock);
}

/* libmicrohttpd thread: the request has arrived whole (`arrived`), or its answer has gone
 * and the next request on the connection may begin. */
static void watch_request(struct MHD_Connection *conn, bool arrived)
{
    conn_watch *w = watch_of(conn);
    if (!w) return;
    pthread_mutex_lock(&watch_lock);
    w->arriving = !arrived && w->fd >= 0;
    w->since_ms = time_mono_ms();
    w->body_bytes = 0;
    pthread_mutex_unlock(&watch_lock);
}

/* Watcher thread: shuts down the sockets of requests past their deadline. */
static void *watch_main(void *unused)
{
    (void)unused;
    long period_ms = cfg_->http_timeout_ms / 4;
    if (period_ms > 1000) period_ms = 1000;
    pthread_mutex_lock(&watch_lock);
    while (!watch_stopping) {
        int64_t now = time_mono_ms();
        int cut = 0;
        for (conn_watch *w = watch_head; w; w = w->next) {
            if (!w->arriving || w->cut) continue;
            int64_t deadline =
                w->since_ms + cfg_->http_timeout_ms + w->body_bytes * 1000 / HTTP_BODY_BYTES_PER_S;
            if (now < deadline) continue;
            w->cut = true;
            (void)shutdown(w->fd, SHUT_RDWR);
            cut++;
        }
        if (cut) {
            pthread_mutex_unlock(&watch_lock);
            log_info(
                "http", "closed connections whose requests arrived too slowly",
                json_pack("{s:i,s:i}", "connections", cut, "timeout_ms", cfg_->http_timeout_ms));
            pthread_mutex_lock(&watch_lock);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += period_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        (void)pthread_cond_timedwait(&watch_changed, &watch_lock, &ts);
    }
    pthread_mutex_unlock(&watch_lock);
    return NULL;
}

/* ------------------------------------------------------------------ callbacks */

void http_set_correlation(http_req *req, const char *correlation_id)
{
    free(req->correlation_id);
    req->correlation_id = correlation_id ? xstrdup(correlation_id) : NULL;
}

static void req_free(http_req *req)
{
    if (req->state_free) req->state_free(req->state);
    free(req->correlation_id);
    free(req->path);
    free(req->param_buf);
    free(req->body);
    free(req->resp_body);
    if (req->resp_stream) MHD_destroy_response(req->resp_stream);
    for (int i = 0; i < req->n_headers; i++)
        free(req->headers[i].value);
    free(req->headers);
    for (int i = 0; i < req->n_decoded; i++)
        free(req->decoded[i].value);
    free(req->decoded);
    free(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    http_req *req = *con_cls;
    if (!req) return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug("http", "request ended early",
                  json_pack("{s:s,s:s,s:i}", "method", req->method, "path", req->path, "reason",
                            (int)toe));
    if (cfg_->access_log && log_enabled(LOG_INFO)) {
        /* A read filtered by correlation id names it too (a valid, decoded query value). */
        const char *cid = req->correlation_id;
        if (!cid && req->route && req->answered_status < 400)
            cid = http_query(req, "correlation_id");
        json_t *fields = json_pack(
            "{s:s,s:s,s:s,s:i,s:I,s:s}", "request_id", req->request_id, "method", req->method,
            "route", req->route ? req->route->pattern : req->path, "status", req->answered_status,
            "duration_ms", (json_int_t)(time_mono_ms() - req->started_ms), "tenant",
            req->auth.tenant[0] ? req->auth.tenant : "-");
        if (cid) json_object_set_new(fields, "correlation_id", json_string(cid));
        log_emit_buffered(LOG_INFO, "http", "request", fields);
    }
    req_free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&in_flight, 1);
    watch_request(conn, false); /* the next request on this connection may begin */
}

/* First call: route, authenticate, check the declared size. Returns true when an
 * answer is already set (an early refusal). */
static bool request_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 31) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

typedef struct arg_check {
    const char *bad; /* the first parameter whose value is not text, or NULL */
} arg_check;

static enum MHD_Result on_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    arg_check *c = cls;
    if (!value) return MHD_YES;
    char *copy = xstrdup(value);
    bool ok = http_text_ok(copy, http_percent_decode(copy));
    free(copy);
    if (ok) return MHD_YES;
    c->bad = key;
    return MHD_NO;
}

/* The name of the first query parameter whose decoded value is not text, or NULL. */
static const char *first_bad_query_arg(http_req *req)
{
    arg_check c = {NULL};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, on_query_arg, &c);
    return c.bad;
}

/* Whether the request announces a body: Content-Length above 0, or any Transfer-Encoding
 * (chunked). */
static bool declares_body(http_req *req)
{
    const char *cl = http_header(req, "Content-Length");
    if (cl && strtoll(cl, NULL, 10) != 0) return true;
    return http_header(req, "Transfer-Encoding") != NULL;
}

/* DESIGN (issue 13): a route that takes no body (GET, HEAD, DELETE: every route that needs no
 * token is among them) refuses one from the headers, and, as after every answer given from
 * the headers to a request that announced a body, the connection closes after the answer, so
 * nobody can make Sluice keep (or even read) body bytes it has no use for; a route that takes
 * one authenticates from the headers before any byte of it is kept. An unauthenticated peer so
 * pins no more than its headers in libmicrohttpd's per-connection pool (32 KiB at most). */
static bool refuse_body(http_req *req)
{
    const char *m = req->route->method;
    if (strcmp(m, "GET") && strcmp(m, "HEAD") && strcmp(m, "DELETE")) return false;
    if (!declares_body(req)) return false;
    http_reply_problem(req, problem_newf("payload_too_large",
                                         "%s %s takes no body: send no Content-Length above 0 "
                                         "and no Transfer-Encoding",
                                         req->method, req->route->pattern));
    return true;
}

static bool on_headers(http_req *req, const char *method, const char *url)
{
    const char *rid = http_header(req, "X-Request-Id");
    if (request_id_ok(rid))
        snprintf(req->request_id, sizeof req->request_id, "%s", rid);
    else
        ulid_new(req->request_id);
    buf allow;
    buf_init(&allow);
    bool bad_param = false;
    req->route = http_route_find(method, url, req, &allow, &bad_param);
    if (!req->route) {
        if (allow.len) {
            http_add_header(req, "Allow", allow.data);
            http_reply_problem(req, problem_newf("method_not_allowed",
                                                 "%s is not allowed here; allowed: %s", method,
                                                 allow.data));
        } else {
            http_reply_problem(req, problem_newf("not_found", "no route for %s", url));
        }
        buf_dispose(&allow);
        return true;
    }
    buf_dispose(&allow);
    if (refuse_body(req)) return true;
    if (req->route->scope != SCOPE_NONE) {
        if (auth_authenticate(http_header(req, "Authorization"), &req->auth) < 0) {
            http_add_header(req, "WWW-Authenticate", "Bearer realm=\"sluice\"");
            http_reply_error(req, "unauthenticated",
                             "send Authorization: Bearer <token> with a valid API key");
            return true;
        }
        if (!auth_has_scope(&req->auth, req->route->scope)) {
            json_t *names = auth_scope_names(req->route->scope);
            char *need = json_dumps(names, JSON_COMPACT);
            http_reply_problem(req,
                               problem_newf("forbidden", "this request needs the scope %s", need));
            free(need);
            json_decref(names);
            return true;
        }
        int retry = 0;
        if (!ratelimit_take(req->auth.key_id, &retry)) {
            char ra[16];
            snprintf(ra, sizeof ra, "%d", retry);
            http_add_header(req, "Retry-After", ra);
            http_reply_problem(req, problem_newf("rate_limited",
                                                 "this API key is limited to %g requests per "
                                                 "second; retry after %d s",
                                                 cfg_->rate_limit, retry));
            return true;
        }
    }
    /* Stored names and values are UTF-8 text without NUL. A path parameter that is not
     * text names nothing (404); a query value that is not filters by nothing that can
     * exist (400). Neither reaches PostgreSQL, which would refuse it with an error. */
    if (bad_param) {
        http_reply_error(req, "not_found",
                         "no such resource: a path parameter is not UTF-8 text (or holds a NUL)");
        return true;
    }
    const char *bad_arg = first_bad_query_arg(req);
    if (bad_arg) {
        http_reply_problem(req, problem_newf("invalid_query",
                                             "query parameter '%.64s' is not UTF-8 text (or "
                                             "holds a NUL)",
                                             bad_arg));
        return true;
    }
    const char *cl = http_header(req, "Content-Length");
    if (cl && strtoll(cl, NULL, 10) > cfg_->max_body_bytes) {
        http_reply_problem(req,
                           problem_newf("payload_too_large", "the body may be at most %lld bytes",
                                        cfg_->max_body_bytes));
        return true;
    }
    return false;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)version;
    http_req *req = *con_cls;
    if (!req) {
        atomic_fetch_add(&in_flight, 1);
        req = xcalloc(1, sizeof *req);
        req->conn = conn;
        req->method = method;
        req->path = xstrdup(url);
        req->started_ms = time_mono_ms();
        *con_cls = req;
        if (on_headers(req, method, url)) {
            req->dispatched = true;
            watch_request(conn, true);
            /* Refused from the headers: a body it announced is never read, and the
             * connection closes after the answer rather than wait for that body. */
            if (declares_body(req)) http_add_header(req, "Connection", "close");
            return queue_answer(req);
        }
        return MHD_YES;
    }
    if (*upload_size && req->dispatched) { /* answered from the headers: keep nothing */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        watch_body(conn, *upload_size);
        if (!req->body_too_large) {
            if (req->body_len + *upload_size > (size_t)cfg_->max_body_bytes) {
                req->body_too_large = true;
                free(req->body);
                req->body = NULL;
                req->body_len = 0;
            } else {
                req->body = xrealloc(req->body, req->body_len + *upload_size + 1);
                memcpy(req->body + req->body_len, upload_data, *upload_size);
                req->body_len += *upload_size;
                req->body[req->body_len] = '\0';
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (!req->dispatched) {
        req->dispatched = true;
        watch_request(conn, true);
        if (req->body_too_large) {
            http_reply_problem(req, problem_newf("payload_too_large",
                                                 "the body may be at most %lld bytes",
                                                 cfg_->max_body_bytes));
            return queue_answer(req);
        }
        if (!req->body) req->body = xstrdup("");
        req->route->handler(req);
        if (req->suspended) return MHD_YES;
        return queue_answer(req);
    }
    /* Resumed: the core thread has set the answer, or left finalize to build it here. */
    req->suspended = false;
    if (req->finalize) {
        void (*finalize)(http_req *) = req->finalize;
        req->finalize = NULL;
        finalize(req);
    }
    return queue_answer(req);
}

/* ------------------------------------------------------------------ daemon */

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_debug("http", "libmicrohttpd", json_pack("{s:s}", "detail", msg));
}

int http_start(const sluice_config *cfg, int *bound_port)
{
    cfg_ = cfg;
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)cfg->http_port);
    if (inet_pton(AF_INET, cfg->bind, &addr.sin_addr) != 1) {
        log_error("http", "SLUICE_BIND is not an IPv4 address",
                  json_pack("{s:s}", "bind", cfg->bind));
        return -1;
    }
    /* poll(2) by default: libmicrohttpd takes a suspended connection out of its epoll set
     * and puts it back on resume, two epoll_ctl calls for every request the appender or the
     * pool answers (all of them); a poll set is rebuilt from the live connections each turn,
     * which costs more only with thousands of open connections (SLUICE_HTTP_EPOLL=on). */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD |
                     (cfg->http_epoll ? MHD_USE_EPOLL : MHD_USE_POLL) | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    /* Idle connections close after the timeout (whole seconds for libmicrohttpd); the
     * watcher enforces the request deadlines. A request's line and headers must fit in
     * the connection's 32 KiB memory pool: past that libmicrohttpd answers 414 or 431. */
    unsigned idle_s = (unsigned)((cfg->http_timeout_ms + 999) / 1000);
    daemon_ = MHD_start_daemon(
        flags, (uint16_t)cfg->http_port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        idle_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_MEMORY,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        NULL, MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, NULL, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
    if (!daemon_) {
        log_error("http", "cannot start the HTTP server (port in use?)",
                  json_pack("{s:s,s:i}", "bind", cfg->bind, "port", cfg->http_port));
        return -1;
    }
    watch_stopping = false;
    if (pthread_create(&watch_thread, NULL, watch_main, NULL) != 0) {
        log_error("http", "cannot start the request-deadline thread", NULL);
        MHD_stop_daemon(daemon_);
        daemon_ = NULL;
        return -1;
    }
    watch_running = true;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = info ? info->port : cfg->http_port;
    bound_port_ = *bound_port;
    return 0;
}

void http_quiesce(void)
{
    if (daemon_) {
        MHD_socket s = MHD_quiesce_daemon(daemon_);
        if (s != MHD_INVALID_SOCKET) close(s);
    }
}

void http_stop(void)
{
    if (daemon_) MHD_stop_daemon(daemon_);
    daemon_ = NULL;
    if (watch_running) {
        pthread_mutex_lock(&watch_lock);
        watch_stopping = true;
        pthread_cond_signal(&watch_changed);
        pthread_mutex_unlock(&watch_lock);
        pthread_join(watch_thread, NULL);
        watch_running = false;
    }
}
