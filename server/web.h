/*
 * web.h — the dashboard's static files (web/), served at / and by path.
 *
 * The files are read once at start-up into memory (the dashboard is small and
 * changes only with a release), so serving one is a lookup and a buffer, with
 * no file I/O on a libmicrohttpd thread and no path ever joined from user input.
 */
#ifndef SLUICE_WEB_H
#define SLUICE_WEB_H

#include "http.h"

/* Loads every file under `dir` (NULL: web/ beside the binary's directory). Returns the
 * number of files; a missing directory is logged and serves nothing. */
int web_load(const char *dir);
void web_unload(void);
/* True when `path` names a loaded file ("/" is index.html). */
bool web_lookup(const char *path);
/* The handler for loaded files (no authentication: the page asks for a token itself):
 * the last rows of the route table (handlers/routes.c). 404 for a name that is no file. */
void web_on_get(http_req *req);

#endif
