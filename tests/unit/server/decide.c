/* Unit tests of appender_decide_request (server/appender.c, declared in appender_decide.h): the
 * appender's per-request decisions, without PostgreSQL. Each case seeds the batch state
 * as read_state() would find it in the store (client ids with their content hash, key
 * versions, the head), then decides its requests in order and checks every event's
 * outcome, position, version and problem code, each request's stored count and the head.
 * Covered: new events, idempotent replays, duplicate ids, expected versions, tenant and
 * stream scoping, events refused before submission, and the undo of an atomic request
 * that fails (its positions, key versions and client ids are given back). */
#include "appender_decide.h"
#include "mem.h"
#include "problem.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#define T1 "acme"
#define T2 "globex"
#define NOW "2024-05-01T12:00:00.000Z"
#define THEN "2024-04-01T08:00:00.000Z"

/* One event of a request: what the producer sent, then what appender_decide_request must make of
 * it. */
typedef struct ev_spec {
    const char *stream; /* NULL ends the request */
    const char *id;     /* NULL: an id Sluice assigns (no idempotency) */
    const char *hash;   /* content hash, with id */
    const char *tenant; /* NULL: T1 */
    const char *key;    /* NULL: no key */
    long long expected; /* expected_version; NO_EXPECT = not given */
    bool refused;       /* already failed before submission (e.g. a schema violation) */
    /* expected decision */
    event_outcome outcome;
    long long position, version;
    const char *code;       /* the problem's code, when failed */
    const char *out_stream; /* the stream after deciding, when not the one sent (a replay
                               answers with the stored one) */
    const char *replay_key; /* a replay's key: the stored one (NULL = none) */
} ev_spec;

#define NO_EXPECT -1
#define MAX_EVENTS 4
#define MAX_REQS 4

typedef struct req_spec {
    bool atomic;
    ev_spec ev[MAX_EVENTS + 1];
    size_t stored; /* appender_decide_request's answer */
} req_spec;

/* A client id already in the store. */
typedef struct stored_id {
    const char *tenant, *id, *hash, *stream, *key;
    long long position, version;
} stored_id;

/* A key's stored version. */
typedef struct stored_key {
    const char *tenant, *stream, *key;
    long long version;
} stored_key;

typedef struct decide_case {
    const char *name;
    long long head;
    stored_id ids[3];
    stored_key keys[3];
    req_spec reqs[MAX_REQS + 1]; /* a request without events ends the list */
    long long head_after;
} decide_case;

/* Shorthands for rows. */
#define NEW(pos) .outcome = EV_STORED, .position = (pos)
#define UNDONE .outcome = EV_PENDING, .position = 0, .version = 0
#define FAILED(c) .outcome = EV_FAILED, .position = 0, .version = 0, .code = (c)

static decide_case cases[] = {
    {.name = "an event without id or key is stored at the next position, version 0",
     .head = 41,
     .reqs = {{.ev = {{.stream = "s", .expected = NO_EXPECT, NEW(42)}}, .stored = 1}},
     .head_after = 42},
    {.name = "events of one request take consecutive positions",
     .head = 0,
     .reqs = {{.atomic = true,
               .ev = {{.stream = "s", .expected = NO_EXPECT, NEW(1)},
                      {.stream = "s", .expected = NO_EXPECT, NEW(2)},
                      {.stream = "t", .expected = NO_EXPECT, NEW(3)}},
               .stored = 3}},
     .head_after = 3},
    {.name = "requests of one batch continue each other's positions",
     .head = 10,
     .reqs = {{.ev = {{.stream = "s", .expected = NO_EXPECT, NEW(11)}}, .stored = 1},
              {.ev = {{.stream = "s", .expected = NO_EXPECT, NEW(12)},
                      {.stream = "s", .expected = NO_EXPECT, NEW(13)}},
               .stored = 2}},
     .head_after = 13},
    {.name = "a new client id is stored",
     .head = 5,
     .reqs =
         {{.ev = {{.stream = "s", .id = "order-1", .hash = "h1", .expected = NO_EXPECT, NEW(6)}},
           .stored = 1}},
     .head_after = 6},
    {.name = "a new key starts at version 1; a stored key goes on from its version",
     .head = 100,
     .keys = {{T1, "orders", "o-1", 3}},
     .reqs =
         {{.ev =
               {{.stream = "orders", .key = "o-2", .expected = NO_EXPECT, NEW(101), .version = 1},
                {.stream = "orders", .key = "o-1", .expected = NO_EXPECT, NEW(102), .version = 4},
                {.stream = "orders", .key = "o-1", .expected = NO_EXPECT, NEW(103), .version = 5}},
           .stored = 3}},
     .head_after = 103},
    {.name = "a key's version is per stream",
     .head = 0,
     .keys = {{T1, "orders", "k", 7}},
     .reqs =
         {{.ev = {{.stream = "invoices", .key = "k", .expected = NO_EXPECT, NEW(1), .version = 1},
                  {.stream = "orders", .key = "k", .expected = NO_EXPECT, NEW(2), .version = 8}},
           .stored = 2}},
     .head_after = 2},
    {.name = "expected version equal to the stored one: stored at the next version",
     .head = 9,
     .keys = {{T1, "orders", "o-1", 3}},
     .reqs = {{.ev = {{.stream = "orders", .key = "o-1", .expected = 3, NEW(10), .version = 4}},
               .stored = 1}},
     .head_after = 10},
    {.name = "expected version 0 on a key never written: stored at version 1",
     .head = 9,
     .reqs = {{.ev = {{.stream = "orders", .key = "o-9", .expected = 0, NEW(10), .version = 1}},
               .stored = 1}},
     .head_after = 10},
    {.name = "expected version behind the stored one: version_conflict, nothing stored",
     .head = 9,
     .keys = {{T1, "orders", "o-1", 3}},
     .reqs =
         {{.ev = {{.stream = "orders", .key = "o-1", .expected = 2, FAILED("version_conflict")}},
           .stored = 0}},
     .head_after = 9},
    {.name = "expected version ahead of the stored one: version_conflict",
     .head = 9,
     .keys = {{T1, "orders", "o-1", 3}},
     .reqs =
         {{.ev = {{.stream = "orders", .key = "o-1", .expected = 4, FAILED("version_conflict")}},
           .stored = 0}},
     .head_after = 9},
    {.name = "expected version on a key never written, other than 0: version_conflict",
     .head = 0,
     .reqs =
         {{.ev = {{.stream = "orders", .key = "new", .expected = 1, FAILED("version_conflict")}},
           .stored = 0}},
     .head_after = 0},
    {.name = "expected versions see the versions earlier requests of the batch wrote",
     .head = 0,
     .reqs = {{.ev = {{.stream = "orders", .key = "k", .expected = 0, NEW(1), .version = 1}},
               .stored = 1},
              {.ev = {{.stream = "orders", .key = "k", .expected = 1, NEW(2), .version = 2}},
               .stored = 1},
              {.ev = {{.stream = "orders", .key = "k", .expected = 1, FAILED("version_conflict")}},
               .stored = 0}},
     .head_after = 2},
    {.name = "a stored id with the same content is replayed with the stored outcome",
     .head = 50,
     .ids = {{T1, "order-1", "h1", "orders", "o-1", 7, 2}},
     /* sent to another stream and key: a replay answers with what was stored */
     .reqs = {{.ev = {{.stream = "elsewhere",
                       .id = "order-1",
                       .hash = "h1",
                       .key = "x",
                       .expected = NO_EXPECT,
                       .outcome = EV_REPLAYED,
                       .position = 7,
                       .version = 2,
                       .out_stream = "orders",
                       .replay_key = "o-1"}},
               .stored = 0}},
     .head_after = 50},
    {.name = "a replay of an event stored without a key has no key",
     .head = 50,
     .ids = {{T1, "e-1", "h1", "s", NULL, 12, 0}},
     .reqs = {{.ev = {{.stream = "s",
                       .id = "e-1",
                       .hash = "h1",
                       .expected = NO_EXPECT,
                       .outcome = EV_REPLAYED,
                       .position = 12}},
               .stored = 0}},
     .head_after = 50},
    {.name = "a replay is not checked against its expected version again",
     .head = 50,
     .ids = {{T1, "order-1", "h1", "orders", "o-1", 7, 2}},
     .keys = {{T1, "orders", "o-1", 6}},
     .reqs = {{.ev = {{.stream = "orders",
                       .id = "order-1",
                       .hash = "h1",
                       .key = "o-1",
                       .expected = 1,
                       .outcome = EV_REPLAYED,
                       .position = 7,
                       .version = 2,
                       .replay_key = "o-1"}},
               .stored = 0}},
     .head_after = 50},
    {.name = "a stored id with other content: duplicate_id",
     .head = 50,
     .ids = {{T1, "order-1", "h1", "orders", "o-1", 7, 2}},
     .reqs = {{.ev = {{.stream = "orders",
                       .id = "order-1",
                       .hash = "h2",
                       .key = "o-1",
                       .expected = NO_EXPECT,
                       FAILED("duplicate_id")}},
               .stored = 0}},
     .head_after = 50},
    {.name = "an id stored earlier in the batch is replayed, or a duplicate",
     .head = 0,
     .reqs = {{.ev = {{.stream = "s",
                       .id = "a",
                       .hash = "h1",
                       .key = "k",
                       .expected = NO_EXPECT,
                       NEW(1),
                       .version = 1}},
               .stored = 1},
              {.ev = {{.stream = "s",
                       .id = "a",
                       .hash = "h1",
                       .key = "k",
                       .expected = NO_EXPECT,
                       .outcome = EV_REPLAYED,
                       .position = 1,
                       .version = 1,
                       .replay_key = "k"}},
               .stored = 0},
              {.ev = {{.stream = "s",
                       .id = "a",
                       .hash = "h2",
                       .key = "k",
                       .expected = NO_EXPECT,
                       FAILED("duplicate_id")}},
               .stored = 0}},
     .head_after = 1},
    {.name = "the same id twice in one request: the second is a replay of the first",
     .head = 3,
     .reqs = {{.ev = {{.stream = "s", .id = "a", .hash = "h1", .expected = NO_EXPECT, NEW(4)},
                      {.stream = "s",
                       .id = "a",
                       .hash = "h1",
                       .expected = NO_EXPECT,
                       .outcome = EV_REPLAYED,
                       .position = 4}},
               .stored = 1}},
     .head_after = 4},
    {.name = "ids and key versions are per tenant",
     .head = 20,
     .ids = {{T1, "order-1", "h1", "orders", NULL, 7, 0}},
     .keys = {{T1, "orders", "o-1", 3}},
     .reqs = {{.ev = {{.stream = "orders",
                       .id = "order-1",
                       .hash = "h2",
                       .tenant = T2,
                       .expected = NO_EXPECT,
                       NEW(21)},
                      {.stream = "orders",
                       .key = "o-1",
                       .tenant = T2,
                       .expected = 0,
                       NEW(22),
                       .version = 1}},
               .stored = 2}},
     .head_after = 22},
    {.name = "not atomic: a failed event leaves the others stored",
     .head = 0,
     .keys = {{T1, "orders", "k", 2}},
     .reqs = {{.ev = {{.stream = "s", .expected = NO_EXPECT, NEW(1)},
                      {.stream = "orders", .key = "k", .expected = 5, FAILED("version_conflict")},
                      {.stream = "orders", .key = "k", .expected = 2, NEW(2), .version = 3}},
               .stored = 2}},
     .head_after = 2},
    {.name = "not atomic: an event refused before submission is skipped",
     .head = 0,
     .reqs = {{.ev = {{.stream = "s", .expected = NO_EXPECT, NEW(1)},
                      {.stream = "s",
                       .refused = true,
                       .expected = NO_EXPECT,
                       FAILED("schema_violation")},
                      {.stream = "s", .expected = NO_EXPECT, NEW(2)}},
               .stored = 2}},
     .head_after = 2},
    {.name = "atomic: all stored when none fails",
     .head = 0,
     .keys = {{T1, "orders", "k", 2}},
     .reqs = {{.atomic = true,
               .ev = {{.stream = "orders", .key = "k", .expected = 2, NEW(1), .version = 3},
                      {.stream = "orders", .key = "k", .expected = 3, NEW(2), .version = 4}},
               .stored = 2}},
     .head_after = 2},
    {.name = "atomic: an event refused before submission stores none",
     .head = 8,
     .reqs = {{.atomic = true,
               .ev = {{.stream = "s", .expected = NO_EXPECT, UNDONE},
                      {.stream = "s",
                       .refused = true,
                       .expected = NO_EXPECT,
                       FAILED("schema_violation")}},
               .stored = 0}},
     .head_after = 8},
    /* The undo log: an atomic request that fails gives back its positions, key versions
     * and client ids, so the requests after it decide as if it had never come. */
    {.name = "undo: a failed atomic request gives back its positions",
     .head = 30,
     .keys = {{T1, "orders", "k", 1}},
     .reqs = {{.atomic = true,
               .ev = {{.stream = "s", .expected = NO_EXPECT, UNDONE},
                      {.stream = "s", .expected = NO_EXPECT, UNDONE},
                      {.stream = "orders", .key = "k", .expected = 0, FAILED("version_conflict")}},
               .stored = 0},
              {.ev = {{.stream = "s", .expected = NO_EXPECT, NEW(31)}}, .stored = 1}},
     .head_after = 31},
    {.name = "undo: key versions are restored, also after several steps on one key",
     .head = 0,
     .keys = {{T1, "orders", "k", 3}},
     .reqs = {{.atomic = true,
               .ev = {{.stream = "orders", .key = "k", .expected = 3, UNDONE},
                      {.stream = "orders", .key = "k", .expected = NO_EXPECT, UNDONE},
                      {.stream = "orders", .key = "new", .expected = NO_EXPECT, UNDONE},
                      {.stream = "orders", .key = "k", .expected = 3, FAILED("version_conflict")}},
               .stored = 0},
              {.ev = {{.stream = "orders", .key = "k", .expected = 3, NEW(1), .version = 4},
                      {.stream = "orders", .key = "new", .expected = 0, NEW(2), .version = 1}},
               .stored = 2}},
     .head_after = 2},
    {.name = "undo: client ids of a failed atomic request are not stored, so not replayed",
     .head = 0,
     .ids = {{T1, "taken", "h1", "s", NULL, 9, 0}},
     .reqs = {{.atomic = true,
               .ev = {{.stream = "s", .id = "fresh", .hash = "h1", .expected = NO_EXPECT, UNDONE},
                      {.stream = "s",
                       .id = "taken",
                       .hash = "h2",
                       .expected = NO_EXPECT,
                       FAILED("duplicate_id")}},
               .stored = 0},
              {.ev = {{.stream = "s", .id = "fresh", .hash = "h2", .expected = NO_EXPECT, NEW(1)}},
               .stored = 1}},
     .head_after = 1},
    {.name = "undo: a replay inside a failed atomic request is not reported as stored",
     .head = 20,
     .ids = {{T1, "old", "h1", "s", NULL, 9, 0}},
     .reqs = {{.atomic = true,
               .ev = {{.stream = "s",
                       .id = "old",
                       .hash = "h1",
                       .expected = NO_EXPECT,
                       UNDONE,
                       .out_stream = "s"},
                      {.stream = "orders", .key = "k", .expected = 4, FAILED("version_conflict")}},
               .stored = 0},
              /* the stored id itself is untouched by the undo */
              {.ev = {{.stream = "s",
                       .id = "old",
                       .hash = "h1",
                       .expected = NO_EXPECT,
                       .outcome = EV_REPLAYED,
                       .position = 9}},
               .stored = 0}},
     .head_after = 20},
    {.name = "undo: an atomic failure does not touch what earlier requests stored",
     .head = 0,
     .reqs = {{.ev = {{.stream = "orders",
                       .id = "a",
                       .hash = "h1",
                       .key = "k",
                       .expected = NO_EXPECT,
                       NEW(1),
                       .version = 1}},
               .stored = 1},
              {.atomic = true,
               .ev = {{.stream = "orders", .key = "k", .expected = 1, UNDONE},
                      {.stream = "orders",
                       .id = "a",
                       .hash = "h2",
                       .expected = NO_EXPECT,
                       FAILED("duplicate_id")}},
               .stored = 0},
              {.ev = {{.stream = "orders",
                       .id = "a",
                       .hash = "h1",
                       .key = "k",
                       .expected = NO_EXPECT,
                       .outcome = EV_REPLAYED,
                       .position = 1,
                       .version = 1,
                       .replay_key = "k"},
                      {.stream = "orders", .key = "k", .expected = 1, NEW(2), .version = 2}},
               .stored = 1}},
     .head_after = 2},
};

ParameterizedTestParameters(decide, cases)
{
    /* Criterion copies parameters into the test's own process, where the table's
     * pointers would not hold: the parameter is the row's index. */
    static size_t rows[sizeof cases / sizeof cases[0]];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        rows[i] = i;
    return cr_make_param_array(size_t, rows, sizeof rows / sizeof rows[0]);
}

static void seed(batch_ctx *b, const decide_case *c)
{
    char mk[MAP_KEY_MAX];
    for (size_t i = 0; i < sizeof c->ids / sizeof c->ids[0] && c->ids[i].id; i++) {
        const stored_id *d = &c->ids[i];
        id_state *s = appender_new_id_state(b);
        s->valid = true;
        snprintf(s->hash, sizeof s->hash, "%s", d->hash);
        s->position = d->position;
        s->version = d->version;
        s->stream = xstrdup(d->stream);
        s->key = d->key ? xstrdup(d->key) : NULL;
        snprintf(s->time, sizeof s->time, "%s", THEN);
        strmap_put(&b->ids, appender_id_map_key(mk, d->tenant, d->id), s);
    }
    for (size_t i = 0; i < sizeof c->keys / sizeof c->keys[0] && c->keys[i].key; i++) {
        const stored_key *d = &c->keys[i];
        key_state *k = appender_new_key_state(b);
        k->version = d->version;
        strmap_put(&b->keys, appender_key_map_key(mk, d->tenant, d->stream, d->key), k);
    }
}

static size_t count_events(const req_spec *r)
{
    size_t n = 0;
    while (n < MAX_EVENTS && r->ev[n].stream)
        n++;
    return n;
}

static void build(incoming_event *evs, const req_spec *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const ev_spec *s = &r->ev[i];
        incoming_event *ev = &evs[i];
        memset(ev, 0, sizeof *ev);
        snprintf(ev->tenant, sizeof ev->tenant, "%s", s->tenant ? s->tenant : T1);
        ev->id_given = s->id != NULL;
        snprintf(ev->id, sizeof ev->id, "%s", s->id ? s->id : "01HXSLUICEASSIGNED00000000");
        snprintf(ev->hash_hex, sizeof ev->hash_hex, "%s", s->hash ? s->hash : "");
        ev->type = xstrdup("order.placed");
        ev->stream = xstrdup(s->stream);
        ev->key = s->key ? xstrdup(s->key) : NULL;
        ev->expected_version = s->expected;
        if (s->refused) {
            ev->outcome = EV_FAILED;
            ev->problem = problem_new("schema_violation", "refused before submission");
        }
    }
}

static void check_event(const decide_case *c, size_t r, size_t i, const incoming_event *ev)
{
    const ev_spec *s = &c->reqs[r].ev[i];
    cr_expect_eq(ev->outcome, s->outcome, "%s: request %zu event %zu: outcome %d, want %d", c->name,
                 r, i, (int)ev->outcome, (int)s->outcome);
    cr_expect_eq(ev->position, s->position, "%s: request %zu event %zu: position %lld, want %lld",
                 c->name, r, i, ev->position, s->position);
    cr_expect_eq(ev->version, s->version, "%s: request %zu event %zu: version %lld, want %lld",
                 c->name, r, i, ev->version, s->version);
    if (s->outcome == EV_FAILED) {
        const char *code = json_string_value(json_object_get(ev->problem, "code"));
        cr_expect(code && strcmp(code, s->code) == 0, "%s: request %zu event %zu: code %s, want %s",
                  c->name, r, i, code ? code : "(none)", s->code);
    } else {
        cr_expect_null(ev->problem, "%s: request %zu event %zu has a problem", c->name, r, i);
    }
    if (s->outcome == EV_STORED)
        cr_expect_str_eq(ev->time, NOW,
                         "%s: request %zu event %zu: a stored event has the "
                         "batch's time",
                         c->name, r, i);
    if (s->outcome == EV_REPLAYED) {
        /* the stored event's time: an earlier commit's, or this batch's */
        const char *want = NOW;
        for (size_t k = 0; k < sizeof c->ids / sizeof c->ids[0] && c->ids[k].id; k++)
            if (!strcmp(c->ids[k].id, s->id) && !strcmp(c->ids[k].tenant, ev->tenant)) want = THEN;
        cr_expect_str_eq(ev->time, want,
                         "%s: request %zu event %zu: a replay has the stored "
                         "time",
                         c->name, r, i);
    }
    const char *want_stream = s->out_stream ? s->out_stream : s->stream;
    cr_expect_str_eq(ev->stream, want_stream, "%s: request %zu event %zu: stream", c->name, r, i);
    const char *want_key = s->outcome == EV_REPLAYED ? s->replay_key : s->key;
    if (want_key)
        cr_expect(ev->key && strcmp(ev->key, want_key) == 0,
                  "%s: request %zu event %zu: key %s, "
                  "want %s",
                  c->name, r, i, ev->key ? ev->key : "(none)", want_key);
    else
        cr_expect_null(ev->key, "%s: request %zu event %zu: key %s, want none", c->name, r, i,
                       ev->key);
}

ParameterizedTest(size_t *row, decide, cases)
{
    const decide_case *c = &cases[*row];
    batch_ctx b;
    appender_batch_init(&b);
    seed(&b, c);
    long long head = c->head;
    char now[32] = NOW;
    for (size_t r = 0; r < MAX_REQS && count_events(&c->reqs[r]); r++) {
        size_t n = count_events(&c->reqs[r]);
        incoming_event evs[MAX_EVENTS];
        build(evs, &c->reqs[r], n);
        append_req req = {.events = evs, .n = n, .atomic = c->reqs[r].atomic};
        size_t stored = appender_decide_request(&b, &req, &head, now);
        cr_expect_eq(stored, c->reqs[r].stored, "%s: request %zu stored %zu, want %zu", c->name, r,
                     stored, c->reqs[r].stored);
        for (size_t i = 0; i < n; i++)
            check_event(c, r, i, &evs[i]);
        for (size_t i = 0; i < n; i++)
            envelope_dispose(&evs[i]);
    }
    cr_expect_eq(head, c->head_after, "%s: head %lld, want %lld", c->name, head, c->head_after);
    appender_batch_dispose(&b);
}

/* The problem documents carry what a client needs to recover. */
Test(decide, a_version_conflict_names_the_current_and_expected_versions)
{
    batch_ctx b;
    appender_batch_init(&b);
    char mk[MAP_KEY_MAX];
    key_state *k = appender_new_key_state(&b);
    k->version = 3;
    strmap_put(&b.keys, appender_key_map_key(mk, T1, "orders", "o-1"), k);
    incoming_event ev;
    req_spec spec = {.ev = {{.stream = "orders", .key = "o-1", .expected = 1}}};
    build(&ev, &spec, 1);
    append_req req = {.events = &ev, .n = 1};
    long long head = 0;
    char now[32] = NOW;
    cr_assert_eq(appender_decide_request(&b, &req, &head, now), 0);
    cr_assert_eq(ev.outcome, EV_FAILED);
    cr_expect_eq(json_integer_value(json_object_get(ev.problem, "status")), 409);
    cr_expect_eq(json_integer_value(json_object_get(ev.problem, "current_version")), 3);
    cr_expect_eq(json_integer_value(json_object_get(ev.problem, "expected_version")), 1);
    envelope_dispose(&ev);
    appender_batch_dispose(&b);
}

Test(decide, a_duplicate_id_names_the_stored_position)
{
    batch_ctx b;
    appender_batch_init(&b);
    char mk[MAP_KEY_MAX];
    id_state *s = appender_new_id_state(&b);
    s->valid = true;
    snprintf(s->hash, sizeof s->hash, "h1");
    s->position = 77;
    s->stream = xstrdup("s");
    strmap_put(&b.ids, appender_id_map_key(mk, T1, "order-1"), s);
    incoming_event ev;
    req_spec spec = {.ev = {{.stream = "s", .id = "order-1", .hash = "h2", .expected = -1}}};
    build(&ev, &spec, 1);
    append_req req = {.events = &ev, .n = 1};
    long long head = 80;
    char now[32] = NOW;
    cr_assert_eq(appender_decide_request(&b, &req, &head, now), 0);
    cr_assert_eq(ev.outcome, EV_FAILED);
    cr_expect_eq(json_integer_value(json_object_get(ev.problem, "status")), 409);
    cr_expect_eq(json_integer_value(json_object_get(ev.problem, "position")), 77);
    cr_expect_eq(head, 80);
    envelope_dispose(&ev);
    appender_batch_dispose(&b);
}
