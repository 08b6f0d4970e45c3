/* Unit tests of server/hub.c: the in-process fan-out's subscription mechanics — a LIVE
 * subscription starts at the head, deliveries come in position order and only past the
 * cursor, CATCHING_UP subscriptions receive nothing until hub_try_go_live finds their
 * cursor at the head, hub_fall_behind stops deliveries, hub_remove unlinks, the batch
 * wakers run once per batch, and a tenant's events reach only that tenant's
 * subscriptions. The filter's own conditions (streams, types, key) are in the last
 * group, "hub_filter". The hub is process-wide state: every test removes what it adds
 * (the suites' fini), and positions are taken relative to the head found at the start. */
#include "hub.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define MAX_GOT 32

/* What one subscription received. */
typedef struct got {
    long long pos[MAX_GOT];
    int n;
    bool in_publish; /* hub_in_publish() held at every delivery */
} got;

static void record(hub_sub *s, stored_event *e)
{
    got *g = s->owner;
    cr_assert_lt(g->n, MAX_GOT);
    g->pos[g->n++] = e->position;
    if (!hub_in_publish()) g->in_publish = false;
}

/* A subscription and what it received. The suites' fini removes every one a test
 * added, so the hub is left empty: they live here, not on the test's stack. */
typedef struct sub {
    hub_sub hs;
    got g;
} sub;

static sub pool[16];
static int n_pool;

/* A subscription of `tenant`, not added yet. */
static sub *prepare(const char *tenant, hub_state state, long long cursor)
{
    cr_assert_lt(n_pool, 16);
    sub *s = &pool[n_pool++];
    memset(s, 0, sizeof *s);
    s->g.in_publish = true;
    snprintf(s->hs.filter.tenant, sizeof s->hs.filter.tenant, "%s", tenant);
    s->hs.state = state;
    s->hs.cursor = cursor;
    s->hs.deliver = record;
    s->hs.owner = &s->g;
    return s;
}

static sub *add(const char *tenant, hub_state state, long long cursor)
{
    sub *s = prepare(tenant, state, cursor);
    hub_add(&s->hs);
    return s;
}

static void remove_all(void)
{
    for (int i = 0; i < n_pool; i++) {
        hub_remove(&pool[i].hs);
        filter_dispose(&pool[i].hs.filter);
    }
    n_pool = 0;
}

/* Publishes one batch of events at `positions` (n of them) for `tenant`, stream "orders",
 * type "order.placed". */
static void publish_n(const char *tenant, const long long *positions, int n)
{
    stored_event *evs[MAX_GOT];
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "e-%lld", positions[i]);
        evs[i] =
            stored_event_new(positions[i], id, tenant, "orders", "order.placed", NULL, id, "{}", 2);
    }
    hub_publish(evs, n);
    for (int i = 0; i < n; i++)
        stored_event_unref(evs[i]);
}

static void publish1(const char *tenant, long long position)
{
    publish_n(tenant, &position, 1);
}

/* A head of our own, past whatever an earlier test in this process published. */
static long long fresh_head(void)
{
    long long h = hub_head() + 100;
    hub_set_head(h);
    cr_assert_eq(hub_head(), h);
    return h;
}

static void expect_got(const got *g, const long long *want, int n, const char *what)
{
    cr_expect_eq(g->n, n, "%s: %d deliveries, want %d", what, g->n, n);
    for (int i = 0; i < n && i < g->n; i++)
        cr_expect_eq(g->pos[i], want[i], "%s: delivery %d is position %lld, want %lld", what, i,
                     g->pos[i], want[i]);
}

TestSuite(hub, .fini = remove_all);

Test(hub, a_live_subscription_starts_at_the_head_and_receives_what_follows_in_order)
{
    long long h = fresh_head();
    sub *s = add("acme", HUB_LIVE, 3); /* the cursor it had is replaced by the head */
    cr_expect_eq(s->hs.cursor, h);
    publish_n("acme", (long long[]){h + 1, h + 2, h + 3}, 3);
    expect_got(&s->g, (long long[]){h + 1, h + 2, h + 3}, 3, "live");
    cr_expect_eq(s->hs.cursor, h + 3, "the cursor follows the deliveries");
    cr_expect_eq(hub_head(), h + 3);
    cr_expect(s->g.in_publish, "deliveries run inside hub_publish");
    cr_expect_not(hub_in_publish());
}

Test(hub, batches_deliver_in_position_order_to_every_subscription)
{
    long long h = fresh_head();
    sub *a = add("acme", HUB_LIVE, 0);
    sub *b = add("acme", HUB_LIVE, 0);
    publish_n("acme", (long long[]){h + 1, h + 2}, 2);
    publish_n("acme", (long long[]){h + 3}, 1);
    publish_n("acme", (long long[]){h + 4, h + 5, h + 6}, 3);
    long long want[] = {h + 1, h + 2, h + 3, h + 4, h + 5, h + 6};
    expect_got(&a->g, want, 6, "a");
    expect_got(&b->g, want, 6, "b");
}

Test(hub, events_at_or_below_the_head_are_not_published_again)
{
    long long h = fresh_head();
    sub *s = add("acme", HUB_LIVE, 0);
    publish_n("acme", (long long[]){h - 1, h, h + 1}, 3);
    expect_got(&s->g, (long long[]){h + 1}, 1, "after a re-sent batch");
    publish1("acme", h + 1);
    expect_got(&s->g, (long long[]){h + 1}, 1, "the same event twice");
    cr_expect_eq(hub_head(), h + 1);
}

Test(hub, set_head_never_moves_the_head_back)
{
    long long h = fresh_head();
    hub_set_head(h - 50);
    cr_expect_eq(hub_head(), h);
}

Test(hub, a_catching_up_subscription_keeps_its_cursor_and_receives_nothing)
{
    long long h = fresh_head();
    sub *s = add("acme", HUB_CATCHING_UP, h - 10);
    cr_expect_eq(s->hs.cursor, h - 10, "added as it is: its owner reads the log from there");
    publish_n("acme", (long long[]){h + 1, h + 2}, 2);
    cr_expect_eq(s->g.n, 0);
    cr_expect_eq(s->hs.cursor, h - 10);
    cr_expect_eq(s->hs.state, HUB_CATCHING_UP);
}

Test(hub, go_live_only_once_the_cursor_reaches_the_head)
{
    long long h = fresh_head();
    sub *s = add("acme", HUB_CATCHING_UP, h - 10);
    cr_expect_not(hub_try_go_live(&s->hs, h - 1), "one event short of the head");
    cr_expect_eq(s->hs.state, HUB_CATCHING_UP);
    cr_expect_eq(s->hs.cursor, h - 1, "the cursor records what was read");
    publish1("acme", h + 1);
    cr_expect_eq(s->g.n, 0);
    cr_expect_not(hub_try_go_live(&s->hs, h), "the head moved on meanwhile");
    cr_expect(hub_try_go_live(&s->hs, h + 1));
    cr_expect_eq(s->hs.state, HUB_LIVE);
    publish1("acme", h + 2);
    expect_got(&s->g, (long long[]){h + 2}, 1, "after going live");
}

Test(hub, go_live_never_moves_the_cursor_back)
{
    long long h = fresh_head();
    sub *s = add("acme", HUB_CATCHING_UP, h);
    cr_expect(hub_try_go_live(&s->hs, h - 5), "its cursor is at the head already");
    cr_expect_eq(s->hs.cursor, h);
}

/* The seam: the owner's read of the log may already hold events the hub has not seen
 * yet; they are not delivered again. */
Test(hub, a_subscription_that_read_past_the_head_receives_only_past_its_cursor)
{
    long long h = fresh_head();
    sub *s = add("acme", HUB_CATCHING_UP, h - 3);
    cr_expect(hub_try_go_live(&s->hs, h + 2));
    cr_expect_eq(s->hs.cursor, h + 2);
    publish_n("acme", (long long[]){h + 1, h + 2, h + 3, h + 4}, 4);
    expect_got(&s->g, (long long[]){h + 3, h + 4}, 2, "past the read");
}

Test(hub, fall_behind_stops_deliveries_until_live_again)
{
    long long h = fresh_head();
    sub *s = add("acme", HUB_LIVE, 0);
    publish1("acme", h + 1);
    hub_fall_behind(&s->hs, h + 1);
    cr_expect_eq(s->hs.state, HUB_CATCHING_UP);
    cr_expect_eq(s->hs.cursor, h + 1);
    publish_n("acme", (long long[]){h + 2, h + 3}, 2);
    expect_got(&s->g, (long long[]){h + 1}, 1, "while behind");
    cr_expect_not(hub_try_go_live(&s->hs, h + 2));
    cr_expect(hub_try_go_live(&s->hs, h + 3));
    publish1("acme", h + 4);
    expect_got(&s->g, (long long[]){h + 1, h + 4}, 2, "live again");
}

Test(hub, a_removed_subscription_receives_nothing_and_the_others_go_on)
{
    long long h = fresh_head();
    sub *a = add("acme", HUB_LIVE, 0);
    sub *b = add("acme", HUB_LIVE, 0);
    sub *c = add("acme", HUB_LIVE, 0);
    hub_remove(&b->hs); /* the middle of the list */
    cr_expect_null(b->hs.prev);
    cr_expect_null(b->hs.next);
    publish1("acme", h + 1);
    hub_remove(&c->hs); /* the first (the last added) */
    publish1("acme", h + 2);
    hub_remove(&a->hs); /* the only one left */
    publish1("acme", h + 3);
    expect_got(&a->g, (long long[]){h + 1, h + 2}, 2, "a");
    expect_got(&b->g, NULL, 0, "b");
    expect_got(&c->g, (long long[]){h + 1}, 1, "c");
    hub_remove(&a->hs);                /* removing twice is harmless */
    sub *d = add("acme", HUB_LIVE, 0); /* the list is still sound */
    publish1("acme", h + 4);
    expect_got(&d->g, (long long[]){h + 4}, 1, "d");
    expect_got(&a->g, (long long[]){h + 1, h + 2}, 2, "a after removal");
}

static int wakes;
static int deliveries_seen_at_wake;
static got *watched;

static void waker(void)
{
    wakes++;
    cr_expect_not(hub_in_publish(), "wakers run after the deliveries");
    deliveries_seen_at_wake = watched ? watched->n : -1;
}

Test(hub, the_wakers_run_once_per_batch_after_its_deliveries)
{
    static bool registered; /* wakers cannot be unregistered: once per process */
    if (!registered) hub_add_batch_waker(waker);
    registered = true;
    long long h = fresh_head();
    sub *s = add("acme", HUB_LIVE, 0);
    watched = &s->g;
    int before = wakes;
    publish_n("acme", (long long[]){h + 1, h + 2, h + 3}, 3);
    cr_expect_eq(wakes, before + 1, "one wake for a batch of three");
    cr_expect_eq(deliveries_seen_at_wake, 3);
    publish1("globex", h + 4); /* delivered to nobody: the wakers still run */
    cr_expect_eq(wakes, before + 2);
    publish_n("acme", NULL, 0);
    cr_expect_eq(wakes, before + 3, "an empty batch wakes too");
    watched = NULL;
}

Test(hub, an_event_reaches_only_its_tenants_subscriptions)
{
    long long h = fresh_head();
    sub *a = add("acme", HUB_LIVE, 0);
    sub *b = add("globex", HUB_LIVE, 0);
    sub *all = prepare("", HUB_LIVE, 0);
    all->hs.filter.any_tenant = true; /* the Redis relay */
    hub_add(&all->hs);
    stored_event *evs[4] = {
        stored_event_new(h + 1, "a1", "acme", "orders", "order.placed", NULL, "a1", "{}", 2),
        stored_event_new(h + 2, "g1", "globex", "orders", "order.placed", NULL, "g1", "{}", 2),
        stored_event_new(h + 3, "a2", "acme", "orders", "order.placed", NULL, "a2", "{}", 2),
        /* a tenant whose name starts like another's */
        stored_event_new(h + 4, "a3", "acme2", "orders", "order.placed", NULL, "a3", "{}", 2),
    };
    hub_publish(evs, 4);
    for (int i = 0; i < 4; i++)
        stored_event_unref(evs[i]);
    expect_got(&a->g, (long long[]){h + 1, h + 3}, 2, "acme");
    expect_got(&b->g, (long long[]){h + 2}, 1, "globex");
    expect_got(&all->g, (long long[]){h + 1, h + 2, h + 3, h + 4}, 4, "any tenant");
    cr_expect_eq(b->hs.cursor, h + 2, "the cursor moves only with deliveries");
}

Test(hub, a_subscription_without_a_tenant_receives_nothing)
{
    long long h = fresh_head();
    sub *s = add("", HUB_LIVE, 0);
    publish1("acme", h + 1);
    cr_expect_eq(s->g.n, 0);
}

/* ---- hub_filter: the filter's own conditions, as a subscription's query string gives
 * them (filter.h). */

typedef struct query {
    const char *stream, *type, *key;
} query;

static const char *query_arg(void *ctx, const char *name)
{
    const query *q = ctx;
    if (strcmp(name, "stream") == 0) return q->stream;
    if (strcmp(name, "type") == 0) return q->type;
    if (strcmp(name, "key") == 0) return q->key;
    return NULL;
}

static const char *str(const char *s)
{
    return s ? s : "";
}

static sub *add_filtered(query q)
{
    sub *s = prepare("acme", HUB_LIVE, 0);
    filter_error err;
    cr_assert_eq(filter_parse_query(&s->hs.filter, query_arg, &q, &err), 0, "%s", err.message);
    hub_add(&s->hs);
    return s;
}

/* One event of tenant acme per row, published at h+1, h+2, … */
typedef struct row {
    const char *stream, *type, *key;
} row;

static const row rows[] = {
    {"orders", "order.placed", "o-1"},    /* h+1 */
    {"orders", "order.shipped", "o-2"},   /* h+2 */
    {"invoices", "invoice.sent", "o-1"},  /* h+3 */
    {"orders", "order.placed.v2", NULL},  /* h+4 */
    {"ordersx", "orderly.placed", "o-1"}, /* h+5 */
    {"invoices", "order.placed", "o-10"}, /* h+6 */
};
#define N_ROWS (int)(sizeof rows / sizeof rows[0])

static void publish_rows(long long h)
{
    stored_event *evs[N_ROWS];
    for (int i = 0; i < N_ROWS; i++)
        evs[i] = stored_event_new(h + 1 + i, "x", "acme", rows[i].stream, rows[i].type, rows[i].key,
                                  "c", "{}", 2);
    hub_publish(evs, N_ROWS);
    for (int i = 0; i < N_ROWS; i++)
        stored_event_unref(evs[i]);
}

TestSuite(hub_filter, .fini = remove_all);

Test(hub_filter, streams_types_and_keys_select_what_is_delivered)
{
    long long h = fresh_head();
    static const struct {
        query q;
        int want[N_ROWS]; /* offsets from h; 0 ends */
    } cases[] = {
        {{NULL, NULL, NULL}, {1, 2, 3, 4, 5, 6}},
        {{"orders", NULL, NULL}, {1, 2, 4}},
        {{"orders,invoices", NULL, NULL}, {1, 2, 3, 4, 6}},
        {{NULL, "order.placed", NULL}, {1, 6}},
        {{NULL, "order.*", NULL}, {1, 2, 4, 6}},
        {{NULL, "order.placed.*", NULL}, {4}},
        {{NULL, "*", NULL}, {1, 2, 3, 4, 5, 6}},
        {{NULL, "invoice.sent,order.shipped", NULL}, {2, 3}},
        {{NULL, NULL, "o-1"}, {1, 3, 5}},
        {{"orders", "order.*", "o-1"}, {1}},
        {{"invoices", "order.placed", NULL}, {6}},
        {{"payments", NULL, NULL}, {0}},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    sub *subs[N];
    for (int i = 0; i < N; i++)
        subs[i] = add_filtered(cases[i].q);
    publish_rows(h);
    for (int i = 0; i < N; i++) {
        long long want[N_ROWS];
        int k = 0;
        while (k < N_ROWS && cases[i].want[k]) {
            want[k] = h + cases[i].want[k];
            k++;
        }
        char what[128];
        snprintf(what, sizeof what, "stream=%s type=%s key=%s", str(cases[i].q.stream),
                 str(cases[i].q.type), str(cases[i].q.key));
        expect_got(&subs[i]->g, want, k, what);
    }
}

Test(hub_filter, the_tenant_holds_whatever_else_matches)
{
    long long h = fresh_head();
    sub *s = add_filtered((query){"orders", "order.*", NULL});
    stored_event *e =
        stored_event_new(h + 1, "x", "globex", "orders", "order.placed", NULL, "c", "{}", 2);
    hub_publish(&e, 1);
    stored_event_unref(e);
    cr_expect_eq(s->g.n, 0);
}

Test(hub_filter, malformed_entries_are_refused)
{
    const query bad[] = {
        {NULL, "order.", NULL},
        {NULL, ".*", NULL},
        {"bad stream", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        filter f = {0};
        filter_error err;
        query q = bad[i];
        cr_expect_neq(filter_parse_query(&f, query_arg, &q, &err), 0, "stream=%s type=%s",
                      str(q.stream), str(q.type));
        filter_dispose(&f);
    }
}
