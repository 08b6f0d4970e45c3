/*
 * status.h — what a core operation answers the handler that called it.
 *
 * The core functions behind the REST handlers (dead letters, groups,
 * projections, replays, the event store, streams, API keys) return one of
 * these, and the handler turns it into HTTP (handlers/common.c's
 * handler_answer_status for the answers every handler gives alike). A status
 * names an outcome, never a count: functions that return how many, or a
 * position, say so, and helpers whose outcomes are of another kind have enums
 * of their own (db_stream_rc, store_stream_rc, appender_submit_rc, …).
 */
#ifndef SLUICE_STATUS_H
#define SLUICE_STATUS_H

typedef enum {
    SL_OK = 0,
    SL_UNAVAILABLE = -1, /* PostgreSQL or Redis unavailable: 503 store_unavailable */
    SL_NOT_FOUND = -2,   /* 404; the handler says what is missing */
    SL_CONFLICT = -3,    /* 409; the handler says what conflicts */
    SL_REFUSED = -4,     /* *answer is the problem to send */
    SL_LIMITED = -5,     /* a tenant limit: 429 with Retry-After, *answer is the problem */
    SL_AGAIN = -6,       /* not done here, nothing answered: run it where it may block */
} sl_status;

#endif
