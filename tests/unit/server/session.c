/* Unit tests of server/session.c: the bounded subscriber queue that the WebSocket and SSE
 * feeds write from (its bounds, its wake-ups, batched pops), fed by the real hub. Live
 * subscriptions only: catch-up reads PostgreSQL and is covered by the integration tests. */
#include "auth.h"
#include "hub.h"
#include "mem.h"
#include "session.h"
#include "sevent.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static int wakes;

static void count_wake(session *s)
{
    (void)s;
    wakes++;
}

static session *new_session(size_t max_messages, size_t max_bytes)
{
    wakes = 0;
    session *s = session_new(max_messages, max_bytes, count_wake, NULL);
    snprintf(s->auth.tenant, sizeof s->auth.tenant, "%s", AUTH_DEFAULT_TENANT);
    return s;
}

static void end_session(session *s)
{
    session_close(s);
    session_unref(s);
}

/* Publishes one event at `position` through the hub; returns the caller's reference. */
static sevent *publish(long long position)
{
    char json[64];
    int n = snprintf(json, sizeof json, "{\"position\":%lld}", position);
    sevent *e = sevent_new(position, AUTH_DEFAULT_TENANT, "orders", "order.created", NULL, "corr",
                           json, (size_t)n);
    hub_publish(&e, 1);
    return e;
}

static void subscribe_live(session *s, const char *id)
{
    hub_filter f = {0};
    long long start = -1;
    cr_assert_eq(session_subscribe(s, id, &f, -1, &start), 0);
}

Test(session, popped_texts_give_their_bytes_back)
{
    /* 40 control messages of 30 bytes through a 100-byte bound, each taken before the next */
    session *s = new_session(16, 100);
    for (int i = 0; i < 40; i++) {
        session_push_text(s, xasprintf("{\"op\":\"pong\",\"n\":%08d,\"x\":1}", i));
        session_item it;
        cr_assert(session_pop(s, &it));
        session_item_dispose(&it);
    }
    cr_assert_not(s->overflow, "the byte bound counts only what is queued");
    cr_assert_eq(s->q_bytes, 0);
    end_session(s);
}

Test(session, wakes_the_owner_once_when_the_queue_turns_non_empty)
{
    session *s = new_session(16, 1 << 20);
    session_push_text(s, xstrdup("{\"op\":\"a\"}"));
    session_push_text(s, xstrdup("{\"op\":\"b\"}"));
    session_push_text(s, xstrdup("{\"op\":\"c\"}"));
    cr_assert_eq(wakes, 1, "the owner takes items until the queue is empty: one wake is enough");
    session_item items[8];
    bool overflow = true, more = true;
    cr_assert_eq(session_pop_batch(s, items, 8, 1 << 20, &overflow, &more), 3);
    cr_assert_not(overflow);
    cr_assert_not(more);
    for (int i = 0; i < 3; i++)
        session_item_dispose(&items[i]);
    session_push_text(s, xstrdup("{\"op\":\"d\"}"));
    cr_assert_eq(wakes, 2, "an emptied queue wakes its owner again");
    end_session(s);
}

Test(session, batch_pops_in_order_up_to_the_byte_budget)
{
    session *s = new_session(16, 1 << 20);
    const char *texts[] = {"{\"op\":\"0\"}", "{\"op\":\"1\"}", "{\"op\":\"2\"}", "{\"op\":\"3\"}",
                           "{\"op\":\"4\"}"}; /* 10 bytes each */
    for (int i = 0; i < 5; i++)
        session_push_text(s, xstrdup(texts[i]));
    session_item items[8];
    bool overflow, more;
    cr_assert_eq(session_pop_batch(s, items, 8, 25, &overflow, &more), 3,
                 "takes items until they hold the budget");
    cr_assert(more);
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(items[i].text, texts[i]);
        session_item_dispose(&items[i]);
    }
    cr_assert_eq(session_pop_batch(s, items, 8, 1, &overflow, &more), 1,
                 "the first item is taken whatever its size");
    cr_assert_str_eq(items[0].text, texts[3]);
    session_item_dispose(&items[0]);
    cr_assert_eq(session_pop_batch(s, items, 1, 1 << 20, &overflow, &more), 1, "at most max");
    cr_assert_str_eq(items[0].text, texts[4]);
    cr_assert_not(more);
    session_item_dispose(&items[0]);
    cr_assert_eq(session_pop_batch(s, items, 8, 1 << 20, &overflow, &more), 0);
    end_session(s);
}

Test(session, events_are_shared_by_every_subscriber_not_copied)
{
    session *a = new_session(16, 1 << 20), *b = new_session(16, 1 << 20);
    subscribe_live(a, "sa");
    subscribe_live(b, "sb");
    sevent *e = publish(hub_head() + 1);
    session_item ia, ib;
    cr_assert(session_pop(a, &ia));
    cr_assert(session_pop(b, &ib));
    cr_assert_eq(ia.ev, e, "one serialisation, shared");
    cr_assert_eq(ib.ev, e);
    cr_assert_str_eq(ia.sub, "sa");
    cr_assert_str_eq(ib.sub, "sb");
    cr_assert_eq(atomic_load(&e->refs), 3);
    session_item_dispose(&ia);
    session_item_dispose(&ib);
    cr_assert_eq(atomic_load(&e->refs), 1);
    sevent_unref(e);
    end_session(a);
    end_session(b);
}

Test(session, an_overflowed_queue_gives_nothing_more_and_keeps_the_last_position_sent)
{
    session *s = new_session(2, 1 << 20);
    subscribe_live(s, "s1");
    long long first = hub_head() + 1;
    sevent *e = publish(first);
    session_item it;
    cr_assert(session_pop(s, &it));
    session_item_dispose(&it);
    cr_assert_eq(s->last_sent, first);
    sevent_unref(e);
    for (int i = 1; i <= 3; i++)
        sevent_unref(publish(first + i)); /* the third passes the bound */
    cr_assert(s->overflow);
    int woken = wakes;
    session_item items[8];
    bool overflow = false, more = false;
    cr_assert_eq(session_pop_batch(s, items, 8, 1 << 20, &overflow, &more), 0);
    cr_assert(overflow);
    cr_assert_eq(s->last_sent, first, "the close names the last position actually sent");
    sevent_unref(publish(first + 4));
    cr_assert_gt(wakes, woken, "an overflowed owner is woken to close");
    end_session(s);
}

Test(session, a_closed_session_takes_nothing)
{
    session *s = new_session(16, 1 << 20);
    session_close(s);
    session_push_text(s, xstrdup("{\"op\":\"late\"}")); /* freed, not queued (LeakSanitizer) */
    cr_assert_eq(s->q_len, 0);
    cr_assert_eq(s->q_bytes, 0);
    session_unref(s);
}
