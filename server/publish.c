/*
 * publish.c — publish requests and their answers (see publish.h).
 */
#include "publish.h"
#include "log.h"
#include "mem.h"
#include "problem.h"

#include <search.h>
#include <stdlib.h>
#include <string.h>

struct publish_op {
    bool batch;            /* the body was an array */
    bool atomic;
    sluice_event *events;  /* owned, n of them */
    size_t n;
    bool *valid;           /* owned: envelope passed */
    json_t **invalid;      /* owned: per event, its envelope problem (partial batches) */
    json_t *errors;        /* owned: envelope errors of an atomic request */
    append_req areq;
    publish_done done;
    void *arg;
    publish_answer answer;
    bool ready;            /* answer decided before submission */
};

static json_t *event_answer(const sluice_event *ev)
{
    return json_pack("{s:s,s:I,s:s,s:o,s:o,s:s}", "id", ev->id, "position",
                     (json_int_t)ev->position, "stream", ev->stream, "key",
                     ev->key ? json_string(ev->key) : json_null(), "version",
                     ev->key ? json_integer(ev->version) : json_null(), "time", ev->time);
}

static void set_answer(publish_op *op, int status, json_t *body, bool replay)
{
    json_decref(op->answer.body);
    op->answer.status = status;
    op->answer.body = body;
    op->answer.replay = replay;
}

publish_op *publish_prepare(json_t *root, bool atomic, const char *tenant, int max_batch,
                            size_t body_bytes)
{
    publish_op *op = xcalloc(1, sizeof *op);
    op->batch = json_is_array(root);
    op->atomic = op->batch ? atomic : true;
    op->errors = json_array();
    if (op->batch) {
        size_t n = json_array_size(root);
        if (n == 0) {
            json_t *p = problem_new("invalid_envelope", "a batch holds at least one event");
            json_array_append_new(op->errors,
                                  problem_error(-1, "", "minItems", "the batch is empty"));
            json_object_set(p, "errors", op->errors);
            set_answer(op, 400, p, false);
            op->ready = true;
            return op;
        }
        if (n > (size_t)max_batch) {
            set_answer(op, 413,
                       problem_newf("payload_too_large",
                                    "a batch holds at most %d events (%zu sent)", max_batch, n),
                       false);
            op->ready = true;
            return op;
        }
        op->n = n;
    } else {
        op->n = 1;
    }
    op->events = xcalloc(op->n, sizeof *op->events);
    op->valid = xcalloc(op->n, sizeof *op->valid);
    op->invalid = xcalloc(op->n, sizeof *op->invalid);

    struct hsearch_data ids = {0};
    hcreate_r(op->n * 2 + 8, &ids);
    char **id_keys = xcalloc(op->n, sizeof *id_keys);
    size_t n_valid = 0;
    for (size_t i = 0; i < op->n; i++) {
        json_t *in = op->batch ? json_array_get(root, i) : root;
        int index = (int)i; /* a single event is index 0 */
        json_t *errs = json_array();
        bool ok = envelope_parse(in, index, tenant, &op->events[i], errs);
        if (ok && op->events[i].id_given) {
            ENTRY e = {.key = op->events[i].id, .data = NULL}, *found = NULL;
            if (hsearch_r(e, FIND, &found, &ids) && found) {
                json_array_append_new(errs, problem_error(index, "/id", "uniqueItems",
                                                          "this id appears twice in the batch"));
                event_dispose(&op->events[i]);
                ok = false;
            } else {
                id_keys[i] = xstrdup(op->events[i].id);
                e.key = id_keys[i];
                (void)hsearch_r(e, ENTER, &found, &ids);
            }
        }
        if (ok) {
            op->valid[i] = true;
            n_valid++;
        } else {
            if (!op->atomic) {
                json_t *p = problem_new("invalid_envelope", "the event envelope is invalid");
                json_object_set(p, "errors", errs);
                op->invalid[i] = p;
            }
            json_array_extend(op->errors, errs);
        }
        json_decref(errs);
    }
    hdestroy_r(&ids);
    for (size_t i = 0; i < op->n; i++) free(id_keys[i]);
    free(id_keys);

    if (op->atomic && json_array_size(op->errors)) {
        json_t *p = problem_newf("invalid_envelope",
                                 op->batch ? "%zu error(s) in the batch; nothing was stored"
                                           : "%zu error(s) in the envelope",
                                 json_array_size(op->errors));
        json_object_set(p, "errors", op->errors);
        set_answer(op, 400, p, false);
        op->ready = true;
        return op;
    }

    /* The events handed to the appender are the valid ones, packed. */
    sluice_event *packed = xcalloc(n_valid ? n_valid : 1, sizeof *packed);
    size_t k = 0;
    for (size_t i = 0; i < op->n; i++)
        if (op->valid[i]) packed[k++] = op->events[i];
    /* Keep the original slots pointing nowhere; answers are rebuilt in index order. */
    op->areq.events = packed;
    op->areq.n = n_valid;
    op->areq.atomic = op->atomic;
    op->areq.bytes = body_bytes;
    if (n_valid == 0) op->ready = true; /* a partial batch of only invalid events */
    return op;
}

/* Builds the answer from the appender's outcomes. */
static void build_answer(publish_op *op)
{
    sluice_event *packed = op->areq.events;
    if (!op->batch) {
        sluice_event *ev = &packed[0];
        if (ev->outcome == EV_FAILED) {
            json_t *p = json_incref(ev->problem);
            set_answer(op, (int)json_integer_value(json_object_get(p, "status")), p, false);
        } else {
            set_answer(op, ev->outcome == EV_REPLAYED ? 200 : 201, event_answer(ev),
                       ev->outcome == EV_REPLAYED);
        }
        return;
    }
    if (!op->atomic) {
        json_t *results = json_array();
        size_t k = 0;
        for (size_t i = 0; i < op->n; i++) {
            json_t *r;
            if (!op->valid[i]) {
                r = json_pack("{s:I,s:i,s:O}", "index", (json_int_t)i, "status", 400, "problem",
                              op->invalid[i]);
            } else {
                sluice_event *ev = &packed[k++];
                if (ev->outcome == EV_FAILED) {
                    r = json_pack("{s:I,s:O,s:O}", "index", (json_int_t)i, "status",
                                  json_object_get(ev->problem, "status"), "problem", ev->problem);
                } else {
                    r = event_answer(ev);
                    json_object_set_new(r, "index", json_integer((json_int_t)i));
                    json_object_set_new(r, "status",
                                        json_integer(ev->outcome == EV_REPLAYED ? 200 : 201));
                }
            }
            json_array_append_new(results, r);
        }
        set_answer(op, 207, json_pack("{s:o}", "results", results), false);
        return;
    }
    /* Atomic batch: every event stored (or replayed), or none. */
    json_t *errors = json_array();
    const char *code = NULL;
    bool all_replayed = true;
    for (size_t i = 0; i < op->areq.n; i++) {
        sluice_event *ev = &packed[i];
        if (ev->outcome != EV_REPLAYED) all_replayed = false;
        if (ev->outcome != EV_FAILED) continue;
        const char *c = json_string_value(json_object_get(ev->problem, "code"));
        if (!code || strcmp(c, "store_unavailable") == 0 || strcmp(c, "internal") == 0) code = c;
        json_t *e = problem_error((int)i, strcmp(c, "version_conflict") == 0 ? "/expected_version"
                                                                             : "/id",
                                  c, json_string_value(json_object_get(ev->problem, "detail")));
        json_object_set_new(e, "code", json_string(c));
        json_t *cv = json_object_get(ev->problem, "current_version");
        if (cv) json_object_set(e, "current_version", cv);
        json_array_append_new(errors, e);
    }
    if (code) {
        json_t *p = problem_newf(code, "%zu event(s) of the batch failed; nothing was stored",
                                 json_array_size(errors));
        json_object_set_new(p, "errors", errors);
        set_answer(op, (int)json_integer_value(json_object_get(p, "status")), p, false);
        return;
    }
    json_decref(errors);
    json_t *events = json_array();
    for (size_t i = 0; i < op->areq.n; i++) json_array_append_new(events, event_answer(&packed[i]));
    set_answer(op, all_replayed ? 200 : 201, json_pack("{s:o}", "events", events), all_replayed);
}

static void on_appended(append_req *r)
{
    publish_op *op = r->arg;
    build_answer(op);
    op->done(op, op->arg);
}

void publish_submit(publish_op *op, publish_done done, void *arg)
{
    op->done = done;
    op->arg = arg;
    if (op->ready) {
        if (!op->answer.body) build_answer(op);
        done(op, arg);
        return;
    }
    op->areq.done = on_appended;
    op->areq.arg = op;
    int rc = appender_submit(&op->areq);
    if (rc == 0) return;
    json_t *p = rc == -1   ? problem_new("store_unavailable",
                                         "the commit queue is full; retry after a moment")
                : rc == -2 ? problem_new("store_unavailable", "PostgreSQL is unreachable")
                           : problem_new("store_unavailable", "Sluice is shutting down");
    set_answer(op, 503, p, false);
    done(op, arg);
}

publish_answer *publish_result(publish_op *op)
{
    return &op->answer;
}

void publish_op_free(publish_op *op)
{
    if (!op) return;
    if (op->areq.events) {
        for (size_t i = 0; i < op->areq.n; i++) event_dispose(&op->areq.events[i]);
        free(op->areq.events);
    } else {
        for (size_t i = 0; i < op->n; i++)
            if (op->valid && op->valid[i]) event_dispose(&op->events[i]);
    }
    for (size_t i = 0; i < op->n; i++) json_decref(op->invalid ? op->invalid[i] : NULL);
    free(op->events);
    free(op->valid);
    free(op->invalid);
    json_decref(op->errors);
    json_decref(op->answer.body);
    free(op);
}
