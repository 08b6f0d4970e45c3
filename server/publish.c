/*
 * publish.c — publish requests and their answers (see publish.h).
 */
#include "publish.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "problem.h"
#include "schema/registry.h"
#include "schema/validator.h"
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

struct publish_op {
    bool batch; /* the body was an array */
    bool atomic;
    incoming_event *events; /* owned, n of them */
    size_t n;
    bool *valid;      /* owned: envelope passed */
    json_t **invalid; /* owned: per event, its envelope problem (partial batches) */
    json_t *errors;   /* owned: envelope errors of an atomic request */
    append_req areq;
    publish_done done;
    void *arg;
    publish_answer answer;
    bool ready; /* answer decided before submission */
};

const char *publish_correlation(const publish_op *op)
{
    const char *shared = NULL;
    for (size_t i = 0; i < op->n; i++) {
        if (!op->valid[i] || !op->events[i].correlation_id) continue;
        if (shared && strcmp(shared, op->events[i].correlation_id)) return NULL;
        shared = op->events[i].correlation_id;
    }
    return shared;
}

static json_t *event_answer(const incoming_event *ev)
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

/* Codes of a refused event, most severe first: a request's answer takes the first. */
static const char *const refusal_order[] = {"invalid_envelope", "unknown_type", "deprecated_type",
                                            "unknown_schema_version", "schema_violation"};

static int severity(const char *code)
{
    for (int i = 0; i < (int)(sizeof refusal_order / sizeof refusal_order[0]); i++)
        if (strcmp(code, refusal_order[i]) == 0) return i;
    return 0;
}

/* Checks an event against its type's registered schema (the tenant's private type of that
 * name, else the global one); sets its stream and schema version. Returns NULL when it
 * passes, or the refusal code (errors appended). */
static const char *check_schema(incoming_event *ev, int index, bool allow_unknown, json_t *errors,
                                schema_budget *budget)
{
    registry_type *t = registry_get(ev->tenant, ev->type);
    const char *code = NULL;
    char msg[300];
    if (!t) {
        if (allow_unknown) return NULL;
        snprintf(msg, sizeof msg, "no schema is registered for type '%s' (POST /v1/schemas)",
                 ev->type);
        json_array_append_new(errors, problem_error(index, "/type", "unknown_type", msg));
        return "unknown_type";
    }
    int version = ev->schema_version ? ev->schema_version : t->n_versions;
    if (t->deprecated) {
        snprintf(msg, sizeof msg, "type '%s' is deprecated", ev->type);
        json_array_append_new(errors, problem_error(index, "/type", "deprecated", msg));
        code = "deprecated_type";
    } else if (version < 1 || version > t->n_versions || !t->versions[version - 1].compiled) {
        snprintf(msg, sizeof msg, "type '%s' has schema versions 1 to %d", ev->type, t->n_versions);
        json_array_append_new(errors, problem_error(index, "/schema_version", "enum", msg));
        code = "unknown_schema_version";
    } else {
        if (!ev->stream_given) {
            free(ev->stream);
            ev->stream = xstrdup(t->stream);
        }
        ev->schema_version = version;
        if (!schema_validate_budget(t->versions[version - 1].compiled, ev->data,
                                    ev->data_pointer, index, errors, budget))
            code = budget->over ? "validation_too_costly" : "schema_violation";
    }
    registry_release(t);
    return code;
}

/* Decides the answer before anything is submitted: the request is refused as a whole. */
static void answer_now(publish_op *op, int status, json_t *body)
{
    set_answer(op, status, body, false);
    op->ready = true;
}

/* Sets op->n from the request's shape. False when the batch's size alone refuses it (empty,
 * or over max_batch): the answer is decided. */
static bool size_request(publish_op *op, json_t *root, int max_batch)
{
    if (!op->batch) {
        op->n = 1;
        return true;
    }
    size_t n = json_array_size(root);
    if (n == 0) {
        json_t *p = problem_new("invalid_envelope", "a batch holds at least one event");
        json_array_append_new(op->errors, problem_error(-1, "", "minItems", "the batch is empty"));
        json_object_set(p, "errors", op->errors);
        answer_now(op, 400, p);
        return false;
    }
    if (n > (size_t)max_batch) {
        answer_now(op, 413,
                   problem_newf("payload_too_large", "a batch holds at most %d events (%zu sent)",
                                max_batch, n));
        return false;
    }
    op->n = n;
    return true;
}

/* Event i: its envelope, its id (unique in the request), its schema. NULL when it passes,
 * else its refusal code (errors appended to errs, the event disposed). */
static const char *check_event(publish_op *op, size_t i, json_t *in, const publish_opts *opts,
                               strmap *ids, schema_budget *budget, json_t *errs)
{
    int index = (int)i; /* a single event is index 0 */
    incoming_event *ev = &op->events[i];
    if (!envelope_parse(in, index, opts->tenant, opts->key_name, ev, errs))
        return "invalid_envelope";
    if (ev->id_given) {
        if (strmap_get(ids, ev->id)) {
            json_array_append_new(errs, problem_error(index, "/id", "uniqueItems",
                                                      "this id appears twice in the batch"));
            envelope_dispose(ev);
            return "invalid_envelope";
        }
        strmap_put(ids, ev->id, ev);
    }
    const char *code = check_schema(ev, index, opts->allow_unknown_types, errs, budget);
    if (code) envelope_dispose(ev);
    return code;
}

/* Validation stopped at event `index`: the whole request is refused, atomic or not. */
static void refuse_too_costly(publish_op *op, const publish_opts *opts, schema_over over, int index,
                              json_t *errs)
{
    bool steps = over == SCHEMA_OVER_STEPS;
    long long max = steps ? (opts->validation_max_steps > 0 ? opts->validation_max_steps
                                                            : SCHEMA_DEFAULT_MAX_STEPS)
                          : (opts->validation_max_nodes > 0 ? opts->validation_max_nodes
                                                            : SCHEMA_DEFAULT_MAX_NODES);
    const char *limit = steps ? "SLUICE_VALIDATION_MAX_STEPS" : "SLUICE_VALIDATION_MAX_NODES";
    json_t *p = problem_newf(
        "validation_too_costly",
        "validating this request takes more than %lld %s (%s); Sluice stopped at event %d "
        "and stored nothing: send fewer events per request, or smaller values",
        max, steps ? "regex and string steps" : "schema evaluations", limit, index);
    json_object_set_new(p, "limit", json_string(limit));
    json_object_set_new(p, "max", json_integer(max));
    json_object_set(p, "errors", errs);
    answer_now(op, problem_status("validation_too_costly"), p);
}

/* What checking the events found. */
typedef struct tally {
    size_t n_valid;
    const char *worst; /* the most severe refusal code so far, or NULL */
} tally;

/* Files event i as valid (serialized for the appender) or as refused with `code` (its errors
 * join the request's; a partial batch keeps its own problem for the event's answer). */
static void record_event(publish_op *op, size_t i, const char *code, json_t *errs, tally *t)
{
    if (!code) {
        envelope_serialize(&op->events[i]);
        op->valid[i] = true;
        t->n_valid++;
        return;
    }
    if (!t->worst || severity(code) < severity(t->worst)) t->worst = code;
    if (!op->atomic) {
        json_t *p = problem_new(code, code[0] == 'i' ? "the event envelope is invalid"
                                                     : "the event was refused");
        json_object_set(p, "errors", errs);
        op->invalid[i] = p;
    }
    json_array_extend(op->errors, errs);
}

/* Checks every event of the request in order. False when validation got too costly: the
 * answer is decided. */
static bool check_events(publish_op *op, json_t *root, const publish_opts *opts, tally *t)
{
    strmap ids; /* the request's client ids, to refuse one that appears twice */
    strmap_init(&ids);
    schema_budget budget = {.max_nodes = opts->validation_max_nodes,
                            .max_steps = opts->validation_max_steps};
    bool checked = true;
    for (size_t i = 0; i < op->n && checked; i++) {
        json_t *in = op->batch ? json_array_get(root, i) : root;
        json_t *errs = json_array();
        const char *code = check_event(op, i, in, opts, &ids, &budget, errs);
        if (budget.over) {
            refuse_too_costly(op, opts, budget.over, (int)i, errs);
            checked = false;
        } else {
            record_event(op, i, code, errs, t);
        }
        json_decref(errs);
    }
    strmap_dispose(&ids, NULL);
    return checked;
}

publish_op *publish_prepare(json_t *root, const publish_opts *opts)
{
    publish_op *op = xcalloc(1, sizeof *op);
    op->batch = json_is_array(root);
    op->atomic = op->batch ? opts->atomic : true;
    op->errors = json_array();
    if (!size_request(op, root, opts->max_batch)) return op;
    op->events = xcalloc(op->n, sizeof *op->events);
    op->valid = xcalloc(op->n, sizeof *op->valid);
    op->invalid = xcalloc(op->n, sizeof *op->invalid);

    tally t = {0, NULL};
    if (!check_events(op, root, opts, &t)) return op;
    size_t n_valid = t.n_valid;
    if (op->atomic && json_array_size(op->errors)) {
        json_t *p = problem_newf(t.worst,
                                 op->batch ? "%zu error(s) in the batch; nothing was stored"
                                           : "%zu error(s) in the event",
                                 json_array_size(op->errors));
        json_object_set(p, "errors", op->errors);
        answer_now(op, problem_status(t.worst), p);
        return op;
    }

    /* The events handed to the appender are the valid ones, packed. */
    incoming_event *packed = xcalloc(n_valid ? n_valid : 1, sizeof *packed);
    size_t k = 0;
    for (size_t i = 0; i < op->n; i++)
        if (op->valid[i]) packed[k++] = op->events[i];
    /* `packed` takes the valid events over: it owns their strings from here (publish_op_free
     * disposes of them there). The valid slots of op->events still point at the same
     * strings, borrowed, and are never disposed of; only publish_correlation reads them,
     * before submission, since the appender may replace a packed event's stream and key.
     * Answers are rebuilt in index order from op->valid and `packed`. */
    op->areq.events = packed;
    op->areq.n = n_valid;
    op->areq.atomic = op->atomic;
    op->areq.bytes = opts->body_bytes;
    if (n_valid == 0) op->ready = true; /* a partial batch of only invalid events */
    return op;
}

/* Builds the answer from the appender's outcomes. */
static void build_answer(publish_op *op)
{
    incoming_event *packed = op->areq.events;
    if (!op->batch) {
        incoming_event *ev = &packed[0];
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
                r = json_pack("{s:I,s:O,s:O}", "index", (json_int_t)i, "status",
                              json_object_get(op->invalid[i], "status"), "problem", op->invalid[i]);
            } else {
                incoming_event *ev = &packed[k++];
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
        incoming_event *ev = &packed[i];
        if (ev->outcome != EV_REPLAYED) all_replayed = false;
        if (ev->outcome != EV_FAILED) continue;
        const char *c = json_string_value(json_object_get(ev->problem, "code"));
        if (!code || strcmp(c, "store_unavailable") == 0 || strcmp(c, "internal") == 0) code = c;
        json_t *e =
            problem_error((int)i, strcmp(c, "version_conflict") == 0 ? "/expected_version" : "/id",
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
    /* The common large answer is written directly, not through a jansson tree. */
    buf out;
    buf_init(&out);
    buf_puts(&out, "{\"events\":[");
    for (size_t i = 0; i < op->areq.n; i++) {
        incoming_event *ev = &packed[i];
        if (i) buf_puts(&out, ",");
        buf_puts(&out, "{\"id\":");
        buf_json_string(&out, ev->id);
        buf_printf(&out, ",\"position\":%lld,\"stream\":", ev->position);
        buf_json_string(&out, ev->stream);
        if (ev->key) {
            buf_puts(&out, ",\"key\":");
            buf_json_string(&out, ev->key);
            buf_printf(&out, ",\"version\":%lld", ev->version);
        } else {
            buf_puts(&out, ",\"key\":null,\"version\":null");
        }
        buf_printf(&out, ",\"time\":\"%s\"}", ev->time);
    }
    buf_puts(&out, "]}");
    json_decref(op->answer.body);
    op->answer.status = all_replayed ? 200 : 201;
    op->answer.replay = all_replayed;
    op->answer.body = NULL;
    op->answer.text = buf_steal(&out, &op->answer.text_len);
}

static void on_appended(append_req *r)
{
    publish_op *op = r->arg;
    op->done(op, op->arg); /* the answer is built by publish_result, on the caller's thread */
}

void publish_submit(publish_op *op, publish_done done, void *arg)
{
    op->done = done;
    op->arg = arg;
    if (op->ready) {
        done(op, arg);
        return;
    }
    op->areq.done = on_appended;
    op->areq.arg = op;
    appender_submit_rc rc = appender_submit(&op->areq);
    if (rc == APPEND_QUEUED) return;
    json_t *p =
        rc == APPEND_QUEUE_FULL
            ? problem_new("store_unavailable", "the commit queue is full; retry after a moment")
        : rc == APPEND_STORE_DOWN ? problem_new("store_unavailable", "PostgreSQL is unreachable")
                                  : problem_new("store_unavailable", "Sluice is shutting down");
    set_answer(op, 503, p, false);
    done(op, arg);
}

publish_answer *publish_result(publish_op *op)
{
    if (!op->answer.body && !op->answer.text) build_answer(op);
    return &op->answer;
}

void publish_op_free(publish_op *op)
{
    if (!op) return;
    if (op->areq.events) {
        for (size_t i = 0; i < op->areq.n; i++)
            envelope_dispose(&op->areq.events[i]);
        free(op->areq.events);
    } else {
        for (size_t i = 0; i < op->n; i++)
            if (op->valid && op->valid[i]) envelope_dispose(&op->events[i]);
    }
    for (size_t i = 0; i < op->n; i++)
        json_decref(op->invalid ? op->invalid[i] : NULL);
    free(op->events);
    free(op->valid);
    free(op->invalid);
    json_decref(op->errors);
    json_decref(op->answer.body);
    free(op->answer.text);
    free(op);
}

void publish_record_metrics(publish_op *op, double seconds)
{
    for (size_t i = 0; i < op->areq.n; i++) {
        const incoming_event *ev = &op->areq.events[i];
        metrics_publish(ev->tenant, ev->stream, ev->type, seconds,
                        ev->outcome == EV_STORED || ev->outcome == EV_REPLAYED);
    }
}
