/*
 * export.h — history export: every match of a read filter as NDJSON, at
 * constant memory (GET /v1/events with Accept: application/x-ndjson).
 *
 * Each export has a thread and a PostgreSQL connection of its own (at most
 * SLUICE_MAX_STREAMS at once), so a slow reader never holds a pool worker; rows
 * go through a fixed ring (http_stream.h, push mode), so a result of any size
 * costs the ring's memory and a slow client slows only its own export. The key
 * is watched: revoked, the export stops and its answer is cut at once (the
 * client sees a broken body, not a complete one). Shutdown ends every export.
 */
#ifndef SLUICE_EXPORT_H
#define SLUICE_EXPORT_H

#include "http.h"
#include "store.h"

typedef enum export_rc {
    EXPORT_STARTED,   /* the request is the export's: it answers */
    EXPORT_FULL,      /* SLUICE_MAX_STREAMS exports are running */
    EXPORT_REVOKED,   /* the key was revoked since the request was authenticated */
    EXPORT_NO_THREAD, /* no thread could be started */
} export_rc;

/* MHD thread, in the handler: exports every match of `f` (moved in, whatever the outcome)
 * as the answer to `req`. On EXPORT_STARTED the request is suspended and the export owns one
 * of the tenant's TENANT_STREAMS slots, which the caller took, and gives it back when it
 * ends; should PostgreSQL be unreachable before the first row, the export's thread calls
 * `unavailable(req)` to set the answer (then resumes the request). Otherwise nothing is
 * answered, and the caller answers (at once, in the handler) and keeps the slot. */
export_rc export_ndjson(http_req *req, read_filter *f, void (*unavailable)(http_req *req))
    __attribute__((warn_unused_result));

#endif
