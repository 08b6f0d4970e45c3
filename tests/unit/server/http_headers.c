/* Unit tests of server/http.c's answer headers: however many a request adds, every one is
 * kept, in order (they go on the answer in queue_answer, which needs a live connection). */
#include "http.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const names[] = {"Allow",
                                    "Retry-After",
                                    "WWW-Authenticate",
                                    "Connection",
                                    "Idempotent-Replay",
                                    "Cache-Control",
                                    "X-One",
                                    "X-Two",
                                    "X-Three",
                                    "X-Four",
                                    "X-Five",
                                    "X-Six"};

Test(http_headers, every_header_added_is_kept_in_order)
{
    http_req *req = calloc(1, sizeof *req);
    size_t n = sizeof names / sizeof names[0];
    for (size_t i = 0; i < n; i++) {
        char value[16];
        snprintf(value, sizeof value, "v%zu", i);
        http_add_header(req, names[i], value);
    }
    cr_assert_eq(req->n_headers, (int)n);
    for (size_t i = 0; i < n; i++) {
        char value[16];
        snprintf(value, sizeof value, "v%zu", i);
        cr_assert_str_eq(req->headers[i].name, names[i]);
        cr_assert_str_eq(req->headers[i].value, value, "header %zu", i);
    }
    for (int i = 0; i < req->n_headers; i++)
        free(req->headers[i].value);
    free(req->headers);
    free(req);
}

Test(http_headers, the_value_is_copied)
{
    http_req *req = calloc(1, sizeof *req);
    char value[] = "1";
    http_add_header(req, "Retry-After", value);
    value[0] = '9';
    cr_assert_str_eq(req->headers[0].value, "1");
    free(req->headers[0].value);
    free(req->headers);
    free(req);
}
