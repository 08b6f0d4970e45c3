/*
 * envelope.h — the event envelope a producer sends, checked and normalised.
 *
 * envelope_parse() applies every rule of API.md's envelope table and reports
 * *all* violations (never just the first) as problem `errors` entries with a
 * JSON Pointer into the envelope and the batch index. A parsed event is what
 * the appender stores; its result fields are filled in by the appender.
 */
#ifndef SLUICE_ENVELOPE_H
#define SLUICE_ENVELOPE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define ENVELOPE_TYPE_MAX 128
#define ENVELOPE_KEY_MAX 256
#define ENVELOPE_STR_MAX 256
#define ENVELOPE_STREAM_MAX 128
#define ENVELOPE_ID_MAX 64
#define ENVELOPE_TENANT_MAX 64

/* Outcome of appending one event (filled by the appender). */
typedef enum {
    EV_PENDING = 0,  /* not decided yet */
    EV_STORED,       /* committed now: 201 */
    EV_REPLAYED,     /* same id and content already stored: 200 + Idempotent-Replay */
    EV_FAILED,       /* `problem` says why */
} event_outcome;

/* A published event on its way in: parsed and checked here, then decided and committed by
 * the appender, which fills in the results below. Once committed, readers see it as a
 * stored_event (stored_event.h): serialised once, shared by refcount. */
typedef struct incoming_event {
    char id[ENVELOPE_ID_MAX + 1];
    bool id_given;            /* the client chose the id (idempotency applies) */
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char *type;               /* owned */
    char *stream;             /* owned */
    bool stream_given;        /* the producer named the stream */
    char *key;                /* owned; NULL = no key */
    long long expected_version; /* -1 = not given */
    int schema_version;       /* 0 = latest */
    char *correlation_id;     /* owned; defaults to id */
    char *causation_id, *user_id, *source; /* owned; NULL = absent; source defaults to the
                                              publishing key's name */
    char occurred_at[32];     /* when it happened, by the producer: RFC 3339 UTC with
                                 milliseconds, as `time`; "" = not given (issue 15) */
    json_t *data;             /* owned reference */
    const char *data_pointer; /* static: where `data` is in the body as sent, "/data" (or
                                 "/payload" for a BaseEvent, baseevent.h); schema errors name it */
    json_t *metadata;         /* owned reference; NULL = absent */
    char hash_hex[65];        /* SHA-256 of the envelope as sent, when id_given: idempotency's
                                 "same content" ("" for ids Sluice assigns) */

    char *data_text;          /* owned: `data` as compact JSON, written once by
                                 envelope_serialize: the INSERT's parameter and the stored
                                 envelope's field */
    size_t data_len;
    char *metadata_text;      /* owned; NULL = absent */
    size_t metadata_len;

    /* Results, written by the appender thread before the request is resumed. */
    event_outcome outcome;
    long long position;
    long long version;        /* 0 = no key */
    char time[32];
    json_t *problem;          /* owned; set when outcome == EV_FAILED */
} incoming_event;

/* Checks one envelope, or a BaseEvent body (baseevent.h), which is mapped onto one first.
 * On success fills `ev` (caller disposes with envelope_dispose) and returns true. On
 * failure appends one entry per violation to `errors` (borrowed) with the given batch
 * `index` (-1 for a single event) and returns false; `ev` is then disposed already.
 * `tenant` is the caller's tenant; `key_name` the name of the caller's API key, the
 * default `source` (NULL or "" = none); both borrowed. Any thread. */
bool envelope_parse(json_t *in, int index, const char *tenant, const char *key_name,
                    incoming_event *ev, json_t *errors) __attribute__((warn_unused_result));
void envelope_dispose(incoming_event *ev);
/* Writes `data` and `metadata` as text (ev->data_text, ev->metadata_text), once the event
 * is accepted. On the publisher's thread, so the one appender thread only copies bytes. */
void envelope_serialize(incoming_event *ev);

/* True when `s` is a well-formed event type (dot notation, ≤ 128 characters). */
bool envelope_type_valid(const char *s);
/* True when `s` is a well-formed stream name. */
bool envelope_stream_valid(const char *s);
/* True when `s` is a well-formed client id (^[A-Za-z0-9._:-]{1,64}$). */
bool envelope_id_valid(const char *s);
/* Writes the RFC 3339 date-time `s` (with a time zone) as Sluice writes times into `out`:
 * UTC with milliseconds ("2024-03-01T09:30:00.125Z"; finer digits are dropped). False when
 * `s` is not an RFC 3339 date-time, or falls outside the years 0001 to 9999 in UTC. */
bool envelope_time_normalize(const char *s, char out[32]);
/* Number of code points in a valid UTF-8 string. */
size_t utf8_length(const char *s);

#endif
