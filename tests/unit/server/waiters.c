/* Unit tests of server/waiters.c's reaper turn (waiters_reap; the reaper thread is not
 * started here, so each turn is the test's): long polls whose deadline passed are answered
 * as timeouts oldest first, at most 25 of one tenant's per turn, the rest in the next turns,
 * and another tenant's in the same turn are not held behind them. */
#include "waiters.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define A_POLLS 60
#define B_POLLS 3

typedef struct poll_rec {
    int index;         /* order of registration within its tenant */
    int answered_turn; /* the turn that answered it, 0 = not yet */
    bool timeout;      /* answered without an event */
} poll_rec;

static poll_rec a[A_POLLS], b[B_POLLS];
static int turn;

static void done(void *arg, const char *json, size_t len)
{
    (void)len;
    poll_rec *p = arg;
    p->answered_turn = turn;
    p->timeout = json == NULL;
}

static void add(const char *tenant, poll_rec *p, int index)
{
    filter f;
    memset(&f, 0, sizeof f);
    snprintf(f.tenant, sizeof f.tenant, "%s", tenant);
    p->index = index;
    /* 50 ms: still ahead when the store's (empty) answer is offered, so the waiter waits */
    waiter *w = waiters_add(&f, 0, 50, done, p);
    waiters_offer(w, NULL, 0);
}

static int answered_in(const poll_rec *ps, int n, int t)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += ps[i].answered_turn == t;
    return k;
}

Test(waiters, a_tenants_timeouts_are_paced_oldest_first_and_others_are_not_held)
{
    for (int i = 0; i < A_POLLS; i++)
        add("pace-a", &a[i], i);
    for (int i = 0; i < B_POLLS; i++)
        add("pace-b", &b[i], i);
    turn = 1;
    cr_assert_eq(waiters_reap(), 0, "nothing is due before the deadline");
    cr_assert_eq(answered_in(a, A_POLLS, 1) + answered_in(b, B_POLLS, 1), 0);

    usleep(80 * 1000);
    turn = 2;
    cr_assert_eq(waiters_reap(), A_POLLS - 25, "tenant pace-a's timeouts past 25 wait");
    cr_assert_eq(answered_in(a, A_POLLS, 2), 25);
    cr_assert_eq(answered_in(b, B_POLLS, 2), B_POLLS, "the other tenant's are answered at once");
    for (int i = 0; i < A_POLLS; i++)
        cr_assert_eq(a[i].answered_turn == 2, i < 25, "oldest first: poll %d", i);

    turn = 3;
    cr_assert_eq(waiters_reap(), A_POLLS - 50);
    cr_assert_eq(answered_in(a, A_POLLS, 3), 25);
    turn = 4;
    cr_assert_eq(waiters_reap(), 0);
    cr_assert_eq(answered_in(a, A_POLLS, 4), A_POLLS - 50);
    for (int i = 0; i < A_POLLS; i++)
        cr_assert(a[i].timeout, "poll %d answered as a timeout", i);
    for (int i = 0; i < B_POLLS; i++)
        cr_assert(b[i].timeout);
    turn = 5;
    cr_assert_eq(waiters_reap(), 0, "every waiter is gone");
}
