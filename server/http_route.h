/*
 * http_route.h — how http.c routes a request and decodes what it carries.
 *
 * libmicrohttpd is told not to unescape: the path is routed as sent (a "%2F"
 * inside a key stays inside its segment), then each path parameter and query
 * value is percent-decoded here and checked to be text PostgreSQL can hold.
 * Pure functions of http.c, declared here so they can be tested without a
 * daemon (tests/unit/handlers/http_decode.c).
 */
#ifndef SLUICE_HTTP_ROUTE_H
#define SLUICE_HTTP_ROUTE_H

#include "http.h"
#include "mem.h"

#include <stdbool.h>
#include <stddef.h>

/* Decodes %XX in place (anything else, '+' included, is kept as is); returns the decoded
 * length, which exceeds strlen(s) when a %00 was decoded. */
size_t http_percent_decode(char *s);
/* Whether a decoded value of `len` bytes is text PostgreSQL can hold: no NUL, valid UTF-8. */
bool http_text_ok(const char *s, size_t len);
/* Finds the route of `method` (HEAD is served by GET routes) and `path` in http_routes and
 * fills req->params (decoded, in req->param_buf, which the caller frees); *bad is set when
 * one is not text. NULL when there is none; then `allow` lists the methods of the routes
 * whose pattern matches the path (empty: 404; otherwise 405). */
const http_route *http_route_find(const char *method, const char *path, http_req *req, buf *allow,
                                  bool *bad);

#endif
