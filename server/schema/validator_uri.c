/*
 * validator_uri.c — the URI arithmetic `$id` and `$ref` need (RFC 3986 §5).
 *
 * A schema's `$id`s set base URIs and its `$ref`s are URI references resolved
 * against them; two references name the same schema when their resolved URIs
 * are equal as strings. This file resolves and splits; it never fetches.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "validator_internal.h"

typedef struct uri_parts {
    const char *scheme; /* NULL when absent */
    size_t scheme_len;
    const char *auth; /* NULL when absent (present but empty is "") */
    size_t auth_len;
    const char *path; /* never NULL */
    size_t path_len;
    const char *query; /* NULL when absent; excludes '?' */
    size_t query_len;
    const char *frag; /* NULL when absent; excludes '#' */
    size_t frag_len;
} uri_parts;

static void uri_parse(const char *s, uri_parts *u)
{
    memset(u, 0, sizeof *u);
    const char *p = s;
    const char *colon = strpbrk(p, ":/?#");
    if (colon && *colon == ':' && colon > p) {
        bool ok = (p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z');
        for (const char *q = p; ok && q < colon; q++)
            ok = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
                 *q == '+' || *q == '-' || *q == '.';
        if (ok) {
            u->scheme = p;
            u->scheme_len = (size_t)(colon - p);
            p = colon + 1;
        }
    }
    if (p[0] == '/' && p[1] == '/') {
        p += 2;
        u->auth = p;
        u->auth_len = strcspn(p, "/?#");
        p += u->auth_len;
    }
    u->path = p;
    u->path_len = strcspn(p, "?#");
    p += u->path_len;
    if (*p == '?') {
        u->query = ++p;
        u->query_len = strcspn(p, "#");
        p += u->query_len;
    }
    if (*p == '#') {
        u->frag = ++p;
        u->frag_len = strlen(p);
    }
}

/* RFC 3986 §5.2.4, appending to `out`. */
static void remove_dot_segments(const char *in, size_t n, buf *out)
{
    char *tmp = xstrndup(in, n);
    const char *p = tmp;
    while (*p) {
        if (strncmp(p, "../", 3) == 0) {
            p += 3;
        } else if (strncmp(p, "./", 2) == 0) {
            p += 2;
        } else if (strncmp(p, "/./", 3) == 0) {
            p += 2;
        } else if (strcmp(p, "/.") == 0) {
            p = "/";
        } else if (strncmp(p, "/../", 4) == 0 || strcmp(p, "/..") == 0) {
            p = p[3] ? p + 3 : "/";
            while (out->len > 0 && out->data[out->len - 1] != '/')
                out->len--;
            if (out->len > 0) out->len--;
            if (out->data) out->data[out->len] = '\0';
        } else if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0) {
            break;
        } else {
            size_t seg = (*p == '/') ? 1 + strcspn(p + 1, "/") : strcspn(p, "/");
            buf_append(out, p, seg);
            p += seg;
        }
    }
    free(tmp);
}

static void append_part(buf *b, const char *lead, const char *s, size_t n)
{
    if (lead) buf_puts(b, lead);
    buf_append(b, s, n);
}

char *validator_uri_resolve(const char *base, const char *ref)
{
    uri_parts b, r;
    uri_parse(base, &b);
    uri_parse(ref, &r);
    buf out;
    buf_init(&out);
    buf path;
    buf_init(&path);
    const uri_parts *auth_from, *query_from;
    if (r.scheme) {
        append_part(&out, NULL, r.scheme, r.scheme_len);
        buf_puts(&out, ":");
        auth_from = &r;
        remove_dot_segments(r.path, r.path_len, &path);
        query_from = &r;
    } else {
        if (b.scheme) {
            append_part(&out, NULL, b.scheme, b.scheme_len);
            buf_puts(&out, ":");
        }
        if (r.auth) {
            auth_from = &r;
            remove_dot_segments(r.path, r.path_len, &path);
            query_from = &r;
        } else {
            auth_from = &b;
            if (r.path_len == 0) {
                buf_append(&path, b.path, b.path_len);
                query_from = r.query ? &r : &b;
            } else {
                if (r.path[0] == '/') {
                    remove_dot_segments(r.path, r.path_len, &path);
                } else {
                    buf merged;
                    buf_init(&merged);
                    if (b.auth && b.path_len == 0) {
                        buf_puts(&merged, "/");
                    } else {
                        const char *slash = NULL;
                        for (size_t i = 0; i < b.path_len; i++)
                            if (b.path[i] == '/') slash = b.path + i;
                        if (slash) buf_append(&merged, b.path, (size_t)(slash - b.path) + 1);
                    }
                    buf_append(&merged, r.path, r.path_len);
                    remove_dot_segments(merged.data, merged.len, &path);
                    buf_dispose(&merged);
                }
                query_from = &r;
            }
        }
    }
    if (auth_from->auth) append_part(&out, "//", auth_from->auth, auth_from->auth_len);
    if (path.len) buf_append(&out, path.data, path.len);
    if (query_from->query) append_part(&out, "?", query_from->query, query_from->query_len);
    if (r.frag) append_part(&out, "#", r.frag, r.frag_len);
    buf_dispose(&path);
    if (!out.data) buf_puts(&out, "");
    return buf_steal(&out, NULL);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

char *validator_uri_split(const char *uri, char **fragment)
{
    const char *hash = strchr(uri, '#');
    if (!hash) {
        *fragment = NULL;
        return xstrdup(uri);
    }
    const char *f = hash + 1;
    size_t n = strlen(f);
    char *dec = xmalloc(n + 1), *d = dec;
    for (size_t i = 0; i < n; i++) {
        if (f[i] == '%' && i + 2 < n && hexval((unsigned char)f[i + 1]) >= 0 &&
            hexval((unsigned char)f[i + 2]) >= 0) {
            *d++ = (char)(hexval((unsigned char)f[i + 1]) * 16 + hexval((unsigned char)f[i + 2]));
            i += 2;
        } else {
            *d++ = f[i];
        }
    }
    *d = '\0';
    *fragment = dec;
    return xstrndup(uri, (size_t)(hash - uri));
}

bool validator_uri_is_absolute(const char *uri)
{
    uri_parts u;
    uri_parse(uri, &u);
    return u.scheme != NULL;
}
