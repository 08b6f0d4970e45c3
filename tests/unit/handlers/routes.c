/* Unit tests of handlers/routes.c: the route table and openapi/openapi.yaml agree,
 * both ways (like pgbouncer's optscan.sh checks options against the docs). */
#include "../../../server/http.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_OPS 256

typedef struct op {
    char method[16];
    char path[128];
} op;

/* Reads "  /path:" and "    get:" lines of the paths section. */
static int read_openapi(op *ops)
{
    FILE *f = fopen("openapi/openapi.yaml", "r");
    cr_assert_not_null(f, "run from the repository root");
    char line[512], path[128] = "";
    int n = 0;
    bool in_paths = false;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "paths:", 6) == 0) {
            in_paths = true;
            continue;
        }
        if (in_paths && isalpha((unsigned char)line[0])) break;
        if (!in_paths) continue;
        if (strncmp(line, "  /", 3) == 0) {
            sscanf(line + 2, "%127[^:]", path);
        } else if (strncmp(line, "    ", 4) == 0 && line[4] != ' ') {
            char m[16];
            if (sscanf(line + 4, "%15[a-z]:", m) == 1 &&
                (!strcmp(m, "get") || !strcmp(m, "post") || !strcmp(m, "put") ||
                 !strcmp(m, "delete") || !strcmp(m, "patch"))) {
                for (char *c = m; *c; c++) *c = (char)toupper((unsigned char)*c);
                snprintf(ops[n].method, sizeof ops[n].method, "%s", m);
                snprintf(ops[n].path, sizeof ops[n].path, "%s", path);
                n++;
            }
        }
    }
    fclose(f);
    return n;
}

Test(routes, every_route_is_documented_in_openapi)
{
    op ops[MAX_OPS];
    int n = read_openapi(ops);
    /* The fallback rows (the dashboard's files by path) are described by GET /'s operation:
     * OpenAPI has no template for a path of several segments. */
    for (size_t i = 0; i < http_routes_fallback; i++) {
        bool found = false;
        for (int k = 0; k < n; k++)
            if (!strcmp(ops[k].method, http_routes[i].method) &&
                !strcmp(ops[k].path, http_routes[i].pattern))
                found = true;
        cr_assert(found, "%s %s is served but not in openapi/openapi.yaml", http_routes[i].method,
                  http_routes[i].pattern);
    }
}

Test(routes, every_documented_operation_is_served)
{
    op ops[MAX_OPS];
    int n = read_openapi(ops);
    cr_assert_gt(n, 0);
    for (int k = 0; k < n; k++) {
        bool found = false;
        for (size_t i = 0; i < http_routes_count; i++)
            if (!strcmp(ops[k].method, http_routes[i].method) &&
                !strcmp(ops[k].path, http_routes[i].pattern))
                found = true;
        cr_assert(found, "%s %s is in openapi/openapi.yaml but not served", ops[k].method,
                  ops[k].path);
    }
}
