/*
 * publish.h — a publish request from decoded JSON to its answer.
 *
 * Owns the rules of API.md's "Publishing" that sit above one event: single vs
 * batch, atomic vs partial (207), duplicate ids inside a batch, and the shape
 * and status of every answer (201, 200 + Idempotent-Replay, 207, 400, 409,
 * 503). The handler only decodes the body and moves bytes; the appender only
 * stores.
 */
#ifndef SLUICE_PUBLISH_H
#define SLUICE_PUBLISH_H

#include "appender.h"

#include <jansson.h>
#include <stdbool.h>

typedef struct publish_op publish_op;
/* Called once the answer is ready (on the appender thread, or the caller's). */
typedef void (*publish_done)(publish_op *op, void *arg);

/* The answer of a finished publish. */
typedef struct publish_answer {
    int status;   /* HTTP status */
    json_t *body; /* owned by the op until taken; NULL when `text` holds the answer */
    char *text;   /* the answer already serialised (large batches), owned until taken */
    size_t text_len;
    bool replay; /* send Idempotent-Replay: true */
} publish_answer;

/* What a publish request is checked with. */
typedef struct publish_opts {
    const char *tenant;   /* the caller's, borrowed */
    const char *key_name; /* the caller's API key's name, borrowed: the default `source`
                             (NULL or "" = none) */
    bool atomic;          /* ?atomic (batches only) */
    int max_batch;
    bool allow_unknown_types;
    size_t body_bytes; /* to bound a commit's size */
    /* the request's validation budget, shared by its events (0: the validator's defaults);
     * past it the request is answered 422 validation_too_costly (issue 13) */
    long long validation_max_nodes;
    long long validation_max_steps;
} publish_opts;

/* Checks `root` (borrowed; an envelope or an array of them): envelope rules, then the
 * registered schema of each event's type (validated with no lock, on the calling thread).
 * Returns an op (caller frees with publish_op_free after done). When nothing needs
 * storing (every event invalid) the answer is ready at once and publish_submit
 * calls done immediately. Any thread. */
publish_op *publish_prepare(json_t *root, const publish_opts *opts);
/* Hands the op to the appender; `done(op, arg)` is called exactly once, either here
 * (refused: queue full, store down) or on the appender thread after the commit. */
void publish_submit(publish_op *op, publish_done done, void *arg);
/* The answer, built on first call; valid after done. Call it on the thread that will
 * send the answer (the appender thread only reports outcomes). */
publish_answer *publish_result(publish_op *op);
void publish_op_free(publish_op *op);
/* The correlation id every event of the request shares (borrowed), or NULL (none valid,
 * or they differ): what the request log names. */
const char *publish_correlation(const publish_op *op);
/* Records the outcome of every event of a finished publish in the metrics. */
void publish_record_metrics(publish_op *op, double seconds);

#endif
