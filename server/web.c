/*
 * web.c — static dashboard files (see web.h).
 */
#include "web.h"
#include "log.h"
#include "mem.h"
#include "problem.h"
#include "strmap.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WEB_MAX_FILES 512
#define WEB_MAX_FILE_BYTES (8 << 20)

typedef struct web_file {
    char *data;
    size_t len;
    const char *type; /* static */
} web_file;

static strmap files; /* "/path" → web_file; written at start-up only */
static bool loaded;


static const char *content_type(const char *name)
{
    static const char *const map[][2] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".json", "application/json"}, {".svg", "image/svg+xml"}, {".png", "image/png"},
        {".ico", "image/x-icon"}, {".txt", "text/plain; charset=utf-8"},
        {".map", "application/json"}, {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(dot, map[i][0]) == 0) return map[i][1];
    return "application/octet-stream";
}

static void load_dir(const char *root, const char *rel, int depth)
{
    if (depth > 6) return;
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s%s", root, rel);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && files.len < WEB_MAX_FILES) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "node_modules") == 0) continue;
        char sub[PATH_MAX], full[PATH_MAX * 3];
        snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name);
        snprintf(full, sizeof full, "%s%s", root, sub);
        struct stat st;
        if (stat(full, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            load_dir(root, sub, depth + 1);
            continue;
        }
        if (!S_ISREG(st.st_mode) || st.st_size > WEB_MAX_FILE_BYTES) continue;
        FILE *f = fopen(full, "rb");
        if (!f) continue;
        web_file *w = xcalloc(1, sizeof *w);
        w->len = (size_t)st.st_size;
        w->data = xmalloc(w->len + 1);
        w->len = fread(w->data, 1, w->len, f);
        fclose(f);
        w->type = content_type(e->d_name);
        strmap_put(&files, sub, w);
    }
    closedir(d);
}

int web_load(const char *dir)
{
    strmap_init(&files);
    loaded = true;
    char root[PATH_MAX + 16];
    if (dir) {
        snprintf(root, sizeof root, "%s", dir);
    } else {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(root, sizeof root, "%s/../web", exe);
        struct stat st;
        if (stat(root, &st) != 0) snprintf(root, sizeof root, "%s/web", exe);
    }
    load_dir(root, "", 0);
    if (files.len == 0)
        log_warn("web", "no dashboard files found; / answers 404", json_pack("{s:s}", "dir", root));
    else
        log_debug("web", "dashboard loaded", json_pack("{s:s,s:i}", "dir", root, "files", (int)files.len));
    return (int)files.len;
}

static void free_file(void *p)
{
    web_file *w = p;
    free(w->data);
    free(w);
}

void web_unload(void)
{
    if (loaded) strmap_dispose(&files, free_file);
    loaded = false;
}

static web_file *find(const char *path)
{
    if (!loaded) return NULL;
    if (strcmp(path, "/") == 0) path = "/index.html";
    return strmap_get(&files, path);
}

bool web_lookup(const char *path)
{
    return find(path) != NULL;
}

void web_on_get(http_req *req)
{
    web_file *w = find(req->path);
    if (!w) {
        http_reply_problem(req, problem_newf("not_found", "no route for %s", req->path));
        return;
    }
    http_add_header(req, "Cache-Control", "no-cache");
    http_reply(req, 200, w->type, xstrndup(w->data, w->len), w->len);
}
