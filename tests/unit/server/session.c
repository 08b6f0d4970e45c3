/* Unit tests of server/session.c: the bounded subscriber queue that the WebSocket and SSE
 * feeds write from (its bounds, its wake-ups, batched pops), fed by the real hub, and how
 * catch-up history shares it (session_push_history, on a thread of the test's own). Reading
 * history from PostgreSQL is covered by the integration tests. */
#include "auth.h"
#include "hub.h"
#include "mem.h"
#include "session.h"
#include "stored_event.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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
static stored_event *publish(long long position)
{
    char json[64];
    int n = snprintf(json, sizeof json, "{\"position\":%lld}", position);
    stored_event *e = stored_event_new(position, NULL, AUTH_DEFAULT_TENANT, "orders",
                                       "order.created", NULL, "corr", json, (size_t)n);
    hub_publish(&e, 1);
    return e;
}

static void subscribe_live(session *s, const char *id)
{
    filter f = {0};
    long long start = -1;
    cr_assert_eq(session_subscribe(s, id, &f, -1, &start), SESSION_SUBSCRIBED);
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
    stored_event *e = publish(hub_head() + 1);
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
    stored_event_unref(e);
    end_session(a);
    end_session(b);
}

Test(session, an_overflowed_queue_gives_nothing_more_and_keeps_the_last_position_sent)
{
    session *s = new_session(2, 1 << 20);
    subscribe_live(s, "s1");
    long long first = hub_head() + 1;
    stored_event *e = publish(first);
    session_item it;
    cr_assert(session_pop(s, &it));
    session_item_dispose(&it);
    cr_assert_eq(s->last_sent, first);
    stored_event_unref(e);
    for (int i = 1; i <= 3; i++)
        stored_event_unref(publish(first + i)); /* the third passes the bound */
    cr_assert(s->overflow);
    int woken = wakes;
    session_item items[8];
    bool overflow = false, more = false;
    cr_assert_eq(session_pop_batch(s, items, 8, 1 << 20, &overflow, &more), 0);
    cr_assert(overflow);
    cr_assert_eq(s->last_sent, first, "the close names the last position actually sent");
    stored_event_unref(publish(first + 4));
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

/* ------------------------------------------------------------------ history */

static stored_event *history_event(long long position)
{
    char json[64];
    int n = snprintf(json, sizeof json, "{\"position\":%lld}", position);
    return stored_event_new(position, NULL, AUTH_DEFAULT_TENANT, "orders", "order.created", NULL,
                            "corr", json, (size_t)n);
}

typedef struct history_job {
    session *s;
    int n; /* events to push, positions 1..n */
    int stall_ms;
    atomic_bool cancel;
    int pushed; /* how many were queued before it stopped */
} history_job;

/* A catch-up thread without PostgreSQL: pushes positions 1..n as history. */
static void *push_history(void *arg)
{
    history_job *j = arg;
    for (int i = 1; i <= j->n; i++) {
        stored_event *e = history_event(i);
        bool ok = session_push_history(j->s, "cu", e, &j->cancel, j->stall_ms);
        stored_event_unref(e);
        if (!ok) break;
        j->pushed++;
    }
    return NULL;
}

/* Waits (bounded: "no hang") until a catch-up is waiting for room; returns the queue length. */
static size_t wait_history_blocked(session *s)
{
    for (int i = 0; i < 10000; i++) {
        pthread_mutex_lock(&s->lock);
        bool waiting = s->history_waiting > 0 && s->q_len > 0;
        size_t len = s->q_len;
        pthread_mutex_unlock(&s->lock);
        if (waiting) return len;
        nanosleep(&(struct timespec){0, 1000000L}, NULL);
    }
    cr_assert_fail("the catch-up never waited for room");
    return 0;
}

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

Test(session, history_takes_at_most_half_the_queue_so_live_events_after_the_seam_fit)
{
    /* Issue 8: history filled the queue to its bound, so the first live batch after a
     * catch-up went live overflowed a reader that was reading, only slowly. */
    session *s = new_session(8, 1 << 20);
    history_job j = {.s = s, .n = 20, .stall_ms = 60000};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, push_history, &j), 0);
    cr_assert_eq(wait_history_blocked(s), 4, "history waits once it holds half of 8 messages");

    subscribe_live(s, "live");
    long long first = hub_head() + 1;
    for (int i = 0; i < 4; i++)
        stored_event_unref(publish(first + i));
    cr_assert_not(s->overflow, "a batch of live events fits beside the history");
    cr_assert_eq(s->q_len, 8);

    /* The reader takes everything, slowly: history goes on, in order, and nothing overflows. */
    int history = 0, live = 0;
    while (history < j.n) {
        session_item it;
        if (!session_pop(s, &it)) {
            sleep_ms(1);
            continue;
        }
        cr_assert_not_null(it.ev);
        if (strcmp(it.sub, "cu") == 0)
            cr_assert_eq(it.ev->position, ++history, "history in order");
        else
            cr_assert_eq(it.ev->position, first + live++);
        session_item_dispose(&it);
    }
    pthread_join(t, NULL);
    cr_assert_eq(j.pushed, 20);
    cr_assert_eq(live, 4);
    cr_assert_not(s->overflow);
    end_session(s);
}

Test(session, an_event_larger_than_the_history_share_still_goes_into_an_empty_queue)
{
    session *s = new_session(8, 100); /* the share is 50 bytes; each event is about 15 */
    stored_event *e = history_event(1);
    atomic_bool cancel = false;
    cr_assert(session_push_history(s, "cu", e, &cancel, 60000));
    cr_assert_eq(s->q_len, 1);
    stored_event_unref(e);
    char big[80];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    session_item it;
    cr_assert(session_pop(s, &it));
    session_item_dispose(&it);
    stored_event *large = stored_event_new(2, NULL, AUTH_DEFAULT_TENANT, "orders", "order.created",
                                           NULL, "corr", big, strlen(big));
    cr_assert(session_push_history(s, "cu", large, &cancel, 60000), "an empty queue takes it");
    stored_event_unref(large);
    cr_assert_not(s->overflow);
    end_session(s);
}

Test(session, a_reader_that_keeps_taking_is_never_cut_however_slow)
{
    /* 100 events through a queue of 4, one taken every 5 ms: 500 ms in all, longer than the
     * 100 ms stall bound, yet never 100 ms without a take. */
    session *s = new_session(4, 1 << 20);
    history_job j = {.s = s, .n = 100, .stall_ms = 100};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, push_history, &j), 0);
    int taken = 0;
    while (taken < j.n) {
        session_item it;
        if (session_pop(s, &it)) {
            cr_assert_eq(it.ev->position, ++taken);
            session_item_dispose(&it);
        }
        sleep_ms(5);
        cr_assert_not(s->overflow, "cut after %d events", taken);
    }
    pthread_join(t, NULL);
    cr_assert_eq(j.pushed, 100);
    end_session(s);
}

Test(session, a_reader_that_stops_taking_is_cut_after_the_stall_time)
{
    session *s = new_session(4, 1 << 20);
    history_job j = {.s = s, .n = 100, .stall_ms = 50};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, push_history, &j), 0);
    pthread_join(t, NULL); /* returns: the catch-up gave up, it did not wait for ever */
    cr_assert_eq(j.pushed, 2, "history filled its share, then waited");
    cr_assert(s->overflow, "the owner is told to close the stalled reader");
    end_session(s);
}

Test(session, a_cancelled_catch_up_stops_waiting)
{
    session *s = new_session(4, 1 << 20);
    history_job j = {.s = s, .n = 100, .stall_ms = 60000};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, push_history, &j), 0);
    (void)wait_history_blocked(s);
    atomic_store(&j.cancel, true);
    pthread_join(t, NULL);
    cr_assert_eq(j.pushed, 2);
    cr_assert_not(s->overflow, "a cancelled catch-up does not cut the reader");
    end_session(s);
}

Test(session, a_live_subscription_starts_at_the_hub_head_exactly)
{
    session *s = new_session(16, 1 << 20);
    long long before = hub_head();
    stored_event_unref(publish(before + 1));
    filter f = {0};
    long long start = -1;
    cr_assert_eq(session_subscribe(s, "live", &f, -1, &start), SESSION_SUBSCRIBED);
    cr_assert_eq(start, before + 1, "after everything the hub has seen");
    stored_event_unref(publish(before + 2));
    session_item it;
    cr_assert(session_pop(s, &it));
    cr_assert_eq(it.ev->position, before + 2, "the first event after its start");
    session_item_dispose(&it);
    cr_assert_not(session_pop(s, &it));
    end_session(s);
}
