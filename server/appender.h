/*
 * appender.h — group commit: the one thread that writes events to PostgreSQL.
 *
 * Publish requests queue here; the appender drains whatever has arrived into
 * one transaction (one commit per batch, not per event), assigns positions
 * gap-free in commit order under pg_advisory_xact_lock, checks idempotency and
 * expected versions, commits, and only then reports each request's outcome.
 * One request's conflict never fails another's: decisions are made per request
 * in C before the single INSERT.
 */
#ifndef SLUICE_APPENDER_H
#define SLUICE_APPENDER_H

#include "config.h"
#include "envelope.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct append_req append_req;
/* Called on the appender thread once every event of `r` has its outcome. */
typedef void (*append_done)(append_req *r);

struct append_req {
    incoming_event *events; /* borrowed from the submitter until done() */
    size_t n;
    bool atomic;          /* all events or none */
    size_t bytes;         /* approximate size, to bound a commit's statement */
    append_done done;
    void *arg;            /* the submitter's */
    append_req *next;     /* queue link, appender's */
};

/* Connects and starts the thread. Returns 0 or -1 (logged). Start-up only. */
int appender_start(const sluice_config *cfg) __attribute__((warn_unused_result));
/* What appender_submit did with a request. */
typedef enum {
    APPEND_QUEUED = 0,
    APPEND_QUEUE_FULL = -1, /* SLUICE_APPENDER_QUEUE events wait already */
    APPEND_STORE_DOWN = -2, /* PostgreSQL is unreachable */
    APPEND_STOPPING = -3,   /* Sluice is shutting down */
} appender_submit_rc;

/* Queues `r`. Unless APPEND_QUEUED, `r` is untouched and done() will not be called. Any
 * thread. */
appender_submit_rc appender_submit(append_req *r) __attribute__((warn_unused_result));
/* Commits what is queued, then stops the thread. */
void appender_stop(void);
/* The last position this instance committed (0 before any). */
long long appender_head(void);
/* Whether the appender's PostgreSQL connection is up. */
bool appender_connected(void);
/* When this appender last committed events (time_mono_ms), 0 before the first. */
long long appender_last_commit_ms(void);

#endif
